//! Python thread names from `threading._active` (ident → Thread), read from
//! memory: `sys.modules['threading'].__dict__['_active']`, then each
//! Thread's `_name` attribute (`_Thread__name` on 2.7).
//!
//! Dicts have a layout per version: 2.7's open table of (hash, key, value);
//! 3.6–3.10's keys object with an index array sized by `dk_size`; 3.11+'s
//! with `dk_log2_index_bytes` and 16-byte entries for str-only keys.
//! Instance attributes live in a `__dict__` at `tp_dictoffset` (≤3.10), or,
//! from 3.11, in values that share the keys cached on the type
//! (`ht_cached_keys`): behind the object (3.11, 3.12) or inline after it
//! (3.13), unless a real dict was made.

use std::collections::HashMap;

use symbols::offsets::{Field, Offsets};

use super::mem::{le_u64, MAX_READ};
use super::objects::Objects;

/// Most entries read from one dict.
const MAX_ENTRIES: u64 = 1 << 16;

pub struct DictLayout {
    v: (u32, u32),
    ob_type: u64,
    used: u64,
    keys: u64,
    values: u64,
    mask: u64,
    table: u64,
    dk_size: u64,
    dk_log2_size: u64,
    dk_log2_index_bytes: u64,
    dk_kind: u64,
    dk_nentries: u64,
    dk_indices: u64,
    values_values: u64,
    module_dict: u64,
    tp_dictoffset: u64,
    tp_basicsize: u64,
    cached_keys: u64,
    long_digits: u64,
    long_tag: Option<u64>,
    int_value: Option<u64>,
    /// (size, key, value) of an entry with a hash, and (3.11+) of a
    /// str-keyed dict's entry.
    entry: (u64, u64, u64),
    uentry: (u64, u64, u64),
}

impl DictLayout {
    pub fn new(o: &Offsets) -> Option<DictLayout> {
        let g = |f| o.get(f).filter(|&x| x < 1 << 16);
        let v = (o.major, o.minor);
        let py2 = o.major == 2;
        let new = v >= (3, 11);
        Some(DictLayout {
            v,
            ob_type: g(Field::ObType)?,
            // `ma_used` follows the header (and `_Py_DebugOffsets` does
            // not have it).
            used: g(Field::DictUsed).unwrap_or(g(Field::ObType)? + 8),
            keys: if py2 { 0 } else { g(Field::DictKeys)? },
            values: if py2 { 0 } else { g(Field::DictValues)? },
            mask: if py2 { g(Field::DictMask)? } else { 0 },
            table: if py2 { g(Field::DictTable)? } else { 0 },
            dk_size: if !py2 && !new { g(Field::KeysSize)? } else { 0 },
            dk_log2_size: if new { g(Field::KeysLog2Size)? } else { 0 },
            dk_log2_index_bytes: if new {
                g(Field::KeysLog2IndexBytes)?
            } else {
                0
            },
            dk_kind: if new { g(Field::KeysKind)? } else { 0 },
            dk_nentries: if py2 { 0 } else { g(Field::KeysNentries)? },
            dk_indices: if py2 { 0 } else { g(Field::KeysIndices)? },
            values_values: if new { g(Field::DictValuesValues)? } else { 0 },
            module_dict: g(Field::ModuleDict)?,
            tp_dictoffset: g(Field::TypeDictoffset)?,
            tp_basicsize: g(Field::TypeBasicsize)?,
            cached_keys: if new {
                g(Field::HeapTypeCachedKeys)?
            } else {
                0
            },
            long_digits: g(Field::LongDigits)?,
            long_tag: g(Field::LongTag),
            int_value: g(Field::IntValue),
            entry: (
                g(Field::DictEntrySize)?,
                g(Field::DictEntryKey)?,
                g(Field::DictEntryValue)?,
            ),
            uentry: if new {
                (
                    g(Field::DictUnicodeEntrySize)?,
                    g(Field::DictUnicodeEntryKey)?,
                    g(Field::DictUnicodeEntryValue)?,
                )
            } else {
                (0, 0, 0)
            },
        })
    }
}

impl DictLayout {
    /// The offset of `ma_used`, the number of items.
    pub fn used(&self) -> u64 {
        self.used
    }
}

/// Whether the dict at `d` (3.x) has a split table (`ma_values` set).
pub fn is_split(l: &DictLayout, o: &Objects, d: u64) -> Result<bool, String> {
    Ok(l.v.0 == 3 && o.r.u64(d.wrapping_add(l.values))? != 0)
}

fn u8_at(o: &Objects, a: u64) -> Result<u8, String> {
    Ok(o.r.bytes(a, 1)?[0])
}

/// `(key, value)` of each entry of a keys object (3.6+); values are 0 for
/// the shared keys of a split table.
fn keys_entries(l: &DictLayout, o: &Objects, keys: u64) -> Result<Vec<(u64, u64)>, String> {
    let n = o.r.u64(keys.wrapping_add(l.dk_nentries))?;
    if n > MAX_ENTRIES {
        return Err(format!("implausible dict size {n}"));
    }
    let (entries_at, (entry, key_at, value_at)) = if l.v >= (3, 11) {
        let ix = u8_at(o, keys.wrapping_add(l.dk_log2_index_bytes))?;
        let log2 = u8_at(o, keys.wrapping_add(l.dk_log2_size))?;
        let kind = u8_at(o, keys.wrapping_add(l.dk_kind))?;
        if ix > 40 || log2 > 40 {
            return Err("implausible dict keys".into());
        }
        let unicode = kind != 0;
        (
            keys.wrapping_add(l.dk_indices).wrapping_add(1 << ix),
            if unicode { l.uentry } else { l.entry },
        )
    } else {
        let size = o.r.u64(keys.wrapping_add(l.dk_size))?;
        if size > MAX_ENTRIES * 4 {
            return Err(format!("implausible dict size {size}"));
        }
        let ix = if size <= 0xff {
            1
        } else if size <= 0xffff {
            2
        } else {
            4
        };
        (
            keys.wrapping_add(l.dk_indices).wrapping_add(size * ix),
            l.entry,
        )
    };
    let len = (n * entry) as usize;
    if len > MAX_READ {
        return Err("dict too large".into());
    }
    let b = o.r.bytes(entries_at, len)?;
    Ok((0..n as usize)
        .map(|i| {
            let e = i * entry as usize;
            (
                le_u64(&b, e + key_at as usize),
                le_u64(&b, e + value_at as usize),
            )
        })
        .collect())
}

/// The values of a split table or of an instance's values array.
fn split_values(l: &DictLayout, o: &Objects, values: u64, n: usize) -> Result<Vec<u64>, String> {
    let b = o.r.bytes(values.wrapping_add(l.values_values), n * 8)?;
    Ok((0..n).map(|i| le_u64(&b, i * 8)).collect())
}

/// `(key, value)` of each live item of the dict at `d`.
pub fn items(l: &DictLayout, o: &Objects, d: u64) -> Result<Vec<(u64, u64)>, String> {
    let mut out = if l.v.0 == 2 {
        let mask = o.r.u64(d.wrapping_add(l.mask))?;
        if mask >= MAX_ENTRIES {
            return Err(format!("implausible dict mask {mask}"));
        }
        let table = o.r.u64(d.wrapping_add(l.table))?;
        let (size, k, v) = l.entry;
        let (size, k, v) = (size as usize, k as usize, v as usize);
        let b = o.r.bytes(table, (mask as usize + 1) * size)?;
        (0..=mask as usize)
            .map(|i| (le_u64(&b, i * size + k), le_u64(&b, i * size + v)))
            .collect()
    } else {
        let keys = o.r.u64(d.wrapping_add(l.keys))?;
        let mut e = keys_entries(l, o, keys)?;
        let values = o.r.u64(d.wrapping_add(l.values))?;
        if values != 0 {
            let v = split_values(l, o, values, e.len())?;
            for (i, item) in e.iter_mut().enumerate() {
                item.1 = v[i];
            }
        }
        e
    };
    out.retain(|&(k, v)| k != 0 && v != 0);
    Ok(out)
}

/// The value of the str key `name` in the dict at `d`.
pub fn lookup(l: &DictLayout, o: &Objects, d: u64, name: &str) -> Result<Option<u64>, String> {
    Ok(find(o, &items(l, o, d)?, name))
}

fn find(o: &Objects, items: &[(u64, u64)], name: &str) -> Option<u64> {
    // The keys' pages in one batch: `sys.modules` has hundreds of keys,
    // each a string on a page of its own.
    o.r.prefetch(&items.iter().map(|&(k, _)| (k, 64)).collect::<Vec<_>>());
    items
        .iter()
        .find(|(k, _)| o.string(*k).is_ok_and(|s| s == name))
        .map(|&(_, v)| v)
}

/// The attribute `name` of the instance at `obj` (a plain Python class).
pub fn attribute(l: &DictLayout, o: &Objects, obj: u64, name: &str) -> Result<Option<u64>, String> {
    let ty = o.r.u64(obj.wrapping_add(l.ob_type))?;
    let off = o.r.u64(ty.wrapping_add(l.tp_dictoffset))? as i64;
    // A positive offset is a `__dict__` slot of the object's own (every
    // class up to 3.10; from 3.11, a subclass of a C type that has one,
    // such as `_asyncio.Future` up to 3.12); others manage their dict.
    if l.v < (3, 11) || off > 0 {
        if off <= 0 || off > 1 << 16 {
            return Ok(None);
        }
        let d = o.r.u64(obj.wrapping_add(off as u64))?;
        return if d == 0 {
            Ok(None)
        } else {
            lookup(l, o, d, name)
        };
    }
    // The managed dict pointer sits three words before the object.
    let dv = o.r.u64(obj.wrapping_sub(24))?;
    let values = if l.v >= (3, 13) {
        if dv != 0 {
            return lookup(l, o, dv, name);
        }
        let basic = o.r.u64(ty.wrapping_add(l.tp_basicsize))?;
        obj.wrapping_add(basic)
    } else if l.v == (3, 12) {
        if dv & 1 == 0 {
            return if dv == 0 {
                Ok(None)
            } else {
                lookup(l, o, dv, name)
            };
        }
        // Stored as `values - 1` (`_PyDictOrValues_SetValues`).
        dv.wrapping_add(1)
    } else {
        if dv != 0 {
            return lookup(l, o, dv, name);
        }
        o.r.u64(obj.wrapping_sub(32))?
    };
    if values == 0 {
        return Ok(None);
    }
    let keys = o.r.u64(ty.wrapping_add(l.cached_keys))?;
    let entries = keys_entries(l, o, keys)?;
    let Some(i) = entries
        .iter()
        .position(|(k, _)| o.string(*k).is_ok_and(|s| s == name))
    else {
        return Ok(None);
    };
    let v = split_values(l, o, values, i + 1)?;
    Ok(Some(v[i]).filter(|&x| x != 0))
}

/// A Python int as u64 (thread idents).
pub(super) fn int_u64(l: &DictLayout, o: &Objects, v: u64) -> Result<u64, String> {
    if let (2, Some(iv)) = (l.v.0, l.int_value) {
        if o.type_name(v).as_deref() == Some("int") {
            return o.r.u64(v.wrapping_add(iv));
        }
    }
    let n = match l.long_tag.filter(|_| l.v >= (3, 12)) {
        Some(tag) => (o.r.u64(v.wrapping_add(tag))? >> 3) as usize,
        None => o.var_size(v)?.unsigned_abs() as usize,
    };
    if n > 3 {
        return Err("int too big for an ident".into());
    }
    let b = o.r.bytes(v.wrapping_add(l.long_digits), n * 4)?;
    let mut x: u128 = 0;
    for i in (0..n).rev() {
        let d = u32::from_le_bytes(b[i * 4..i * 4 + 4].try_into().unwrap()) & 0x3fff_ffff;
        x = (x << 30) | d as u128;
    }
    Ok(x as u64)
}

/// The address of `threading._active` through `sys.modules` of the
/// interpreter whose modules dict is at `modules`.
pub fn active_dict(l: &DictLayout, o: &Objects, modules: u64) -> Result<Option<u64>, String> {
    let Some(threading) = lookup(l, o, modules, "threading")? else {
        return Ok(None);
    };
    let d = o.r.u64(threading.wrapping_add(l.module_dict))?;
    lookup(l, o, d, "_active")
}

/// ident → name for every thread in `threading._active`.
pub fn thread_names(l: &DictLayout, o: &Objects, active: u64) -> HashMap<u64, String> {
    let attr = if l.v.0 == 2 { "_Thread__name" } else { "_name" };
    let mut out = HashMap::new();
    let Ok(items) = items(l, o, active) else {
        return out;
    };
    for (k, thread) in items.into_iter().take(100_000) {
        let Ok(ident) = int_u64(l, o, k) else {
            continue;
        };
        if let Ok(Some(n)) = attribute(l, o, thread, attr) {
            if let Ok(s) = o.string(n) {
                out.insert(ident, s);
            }
        }
    }
    out
}
