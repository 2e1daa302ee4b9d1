//! The `--locals` repr of one object read from memory: exactly what
//! `repr()` prints in the target for None, bool, int/long, float, str,
//! bytes, 2.7's str and unicode, and tuples, lists, dicts, sets and
//! frozensets of those (nested a few levels), cut at [`MAX_REPR`]
//! characters with a visible `…`. What cannot be rendered exactly is
//! shown as `<tuple len=3>` or `<T object at 0x…>`, never as a guess.

use symbols::offsets::{Field, Offsets};

use super::mem::le_u64;
use super::names::{self, DictLayout};
use super::objects::{Objects, MAX_STR};
use super::repr;

/// Longest repr shown, in characters.
pub const MAX_REPR: usize = 80;
/// Containers nested deeper than this are not rendered.
const MAX_DEPTH: usize = 4;
/// Most digits of an int rendered (30 bits each: 13,500 decimal digits).
const MAX_INT_DIGITS: usize = 1500;

/// The offsets values need.
pub struct ValueLayout {
    py2: bool,
    v312: bool,
    v311: bool,
    tuple_items: u64,
    list_items: u64,
    long_digits: u64,
    long_tag: Option<u64>,
    int_value: Option<u64>,
    float_value: u64,
    /// `PySetObject`'s fields after the object header: `fill`, `used`,
    /// `mask`, `table` (the same in 2.7 and every 3.x).
    ob_type: u64,
    tp_name: u64,
    set_used: u64,
    set_mask: u64,
    set_table: u64,
    dict: Option<DictLayout>,
}

impl ValueLayout {
    pub fn new(o: &Offsets) -> Option<ValueLayout> {
        let g = |f| o.get(f).filter(|&x| x < 1 << 16);
        let head = g(Field::ObType)? + 8;
        Some(ValueLayout {
            py2: o.major == 2,
            v312: (o.major, o.minor) >= (3, 12),
            v311: (o.major, o.minor) >= (3, 11),
            tuple_items: g(Field::TupleItems)?,
            list_items: g(Field::ListItems)?,
            long_digits: g(Field::LongDigits)?,
            long_tag: g(Field::LongTag),
            int_value: g(Field::IntValue),
            float_value: g(Field::FloatValue)?,
            ob_type: head - 8,
            tp_name: g(Field::TypeName)?,
            set_used: head + 8,
            set_mask: head + 16,
            set_table: head + 24,
            dict: DictLayout::new(o),
        })
    }
}

/// Why rendering stopped early.
enum Stop {
    /// The text is longer than is shown: what was written is its start.
    Cut,
    /// Something in it cannot be rendered exactly.
    Inexact,
}

fn cut(s: &str) -> String {
    let mut t: String = s.chars().take(MAX_REPR - 1).collect();
    t.push('…');
    t
}

/// `repr()` of the object at `v`, whose type is named `t`.
pub fn repr(l: &ValueLayout, o: &Objects, v: u64, t: &str) -> String {
    let mut out = String::new();
    match (Render { l, o }).value(v, t, 0, &mut out) {
        Ok(()) if out.chars().count() <= MAX_REPR => out,
        Ok(()) | Err(Stop::Cut) => cut(&out),
        Err(Stop::Inexact) => match t {
            "tuple" | "list" | "dict" | "set" | "frozenset" => match len(l, o, v, t) {
                Some(n) => format!("<{t} len={n}>"),
                None => format!("<{t} object at {v:#x}>"),
            },
            _ => format!("<{t} object at {v:#x}>"),
        },
    }
}

fn len(l: &ValueLayout, o: &Objects, v: u64, t: &str) -> Option<u64> {
    match t {
        "tuple" | "list" => o.var_size(v).ok().map(|n| n as u64),
        "dict" => o.r.u64(v.wrapping_add(l.dict.as_ref()?.used())).ok(),
        _ => o.r.u64(v.wrapping_add(l.set_used)).ok(),
    }
}

struct Render<'a, 'b> {
    l: &'a ValueLayout,
    o: &'a Objects<'b>,
}

impl Render<'_, '_> {
    /// Appends the repr of `v` (type `t`) to `out`.
    fn value(&self, v: u64, t: &str, depth: usize, out: &mut String) -> Result<(), Stop> {
        let (l, o) = (self.l, self.o);
        let e = |_| Stop::Inexact;
        match t {
            "NoneType" => out.push_str("None"),
            "bool" => {
                let (_, d) = self.int(v).map_err(e)?;
                out.push_str(if d.iter().all(|&x| x == 0) {
                    "False"
                } else {
                    "True"
                });
            }
            "int" | "long" => {
                let (neg, d) = self.int(v).map_err(e)?;
                out.push_str(&repr::int(neg, &d));
                if l.py2 && t == "long" {
                    out.push('L');
                }
            }
            "float" => {
                let b = o.r.bytes(v.wrapping_add(l.float_value), 8).map_err(e)?;
                out.push_str(&repr::float(f64::from_le_bytes(
                    b[..8].try_into().map_err(|_| Stop::Inexact)?,
                )));
            }
            "bytes" | "str" if t == "bytes" || l.py2 => {
                let n = o.var_size(v).map_err(e)?.max(0) as usize;
                let b = o.bytes(v, MAX_STR).map_err(e)?;
                let complete = b.len() == n;
                out.push_str(&repr::bytes(&b, if l.py2 { "" } else { "b" }, complete));
                if !complete {
                    return Err(Stop::Cut);
                }
            }
            "str" | "unicode" => {
                let (units, n, narrow) = o.code_units(v, MAX_STR).map_err(e)?;
                let complete = units.len() == n;
                out.push_str(&if l.py2 {
                    repr::unicode2(&units, narrow, complete)
                } else {
                    repr::str3(&units, complete)
                });
                if !complete {
                    return Err(Stop::Cut);
                }
            }
            "tuple" | "list" | "dict" | "set" | "frozenset" if depth < MAX_DEPTH => {
                return self.container(v, t, depth, out)
            }
            _ => return Err(Stop::Inexact),
        }
        Ok(())
    }

    /// Tuples, lists, dicts and sets, item by item until the text is
    /// longer than shown.
    fn container(&self, v: u64, t: &str, depth: usize, out: &mut String) -> Result<(), Stop> {
        let (l, o) = (self.l, self.o);
        let e = |_| Stop::Inexact;
        // Enough items to fill the text: each takes one character at least.
        let most = MAX_REPR;
        let (open, close, items): (&str, &str, Vec<(u64, Option<u64>)>) = match t {
            "tuple" | "list" => {
                let n = o.var_size(v).map_err(e)?;
                if !(0..=1 << 28).contains(&n) {
                    return Err(Stop::Inexact);
                }
                let base = if t == "tuple" {
                    v.wrapping_add(l.tuple_items)
                } else {
                    o.r.u64(v.wrapping_add(l.list_items)).map_err(e)?
                };
                let k = (n as usize).min(most);
                let b = o.r.bytes(base, k * 8).map_err(e)?;
                let items = (0..k).map(|i| (le_u64(&b, i * 8), None)).collect();
                match (t, n) {
                    ("tuple", 1) => ("(", ",)", items),
                    ("tuple", _) => ("(", ")", items),
                    _ => ("[", "]", items),
                }
            }
            "dict" => {
                let dl = l.dict.as_ref().ok_or(Stop::Inexact)?;
                // A split table (3.11+) is iterated in the order of its
                // values, which the items below do not follow.
                if l.v311 && names::is_split(dl, o, v).map_err(e)? {
                    return Err(Stop::Inexact);
                }
                let items = names::items(dl, o, v).map_err(e)?;
                (
                    "{",
                    "}",
                    items.into_iter().map(|(k, x)| (k, Some(x))).collect(),
                )
            }
            _ => {
                let keys = self.set_keys(v)?;
                let frozen = t == "frozenset";
                let (open, close) = match (l.py2, frozen, keys.is_empty()) {
                    (true, false, _) => ("set([", "])"),
                    (true, true, _) => ("frozenset([", "])"),
                    (false, false, true) => ("set(", ")"),
                    (false, true, true) => ("frozenset(", ")"),
                    (false, false, false) => ("{", "}"),
                    (false, true, false) => ("frozenset({", "})"),
                };
                (open, close, keys.into_iter().map(|k| (k, None)).collect())
            }
        };
        let total = len(l, o, v, t).unwrap_or(items.len() as u64);
        out.push_str(open);
        for (i, (k, val)) in items.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            self.item(*k, depth, out)?;
            if let Some(x) = val {
                out.push_str(": ");
                self.item(*x, depth, out)?;
            }
            if out.chars().count() > MAX_REPR {
                return Err(Stop::Cut);
            }
        }
        if (items.len() as u64) < total {
            return Err(Stop::Inexact);
        }
        out.push_str(close);
        Ok(())
    }

    fn item(&self, v: u64, depth: usize, out: &mut String) -> Result<(), Stop> {
        if v == 0 {
            return Err(Stop::Inexact);
        }
        let t = self.o.type_name(v).ok_or(Stop::Inexact)?;
        self.value(v, &t, depth + 1, out)
    }

    /// Whether a set entry's key is the dummy that marks a deleted entry:
    /// on 3.x an object of type `<dummy key> type`, on 2.7 a `str` that
    /// reads `<dummy key>`. A real element of that value makes the count
    /// of keys differ from `used`, and the set is then not rendered.
    fn is_dummy(&self, k: u64) -> bool {
        let o = self.o;
        if self.l.py2 {
            o.type_name(k).as_deref() == Some("str")
                && o.bytes(k, 16).is_ok_and(|b| b == b"<dummy key>")
        } else {
            o.r.u64(k.wrapping_add(self.l.ob_type))
                .and_then(|t| o.r.u64(t.wrapping_add(self.l.tp_name)))
                .and_then(|n| o.r.c_string(n, 32))
                .is_ok_and(|n| n == "<dummy key> type")
        }
    }

    /// The keys of a set in table order, as `repr` iterates it, without
    /// the dummies of deleted entries.
    fn set_keys(&self, v: u64) -> Result<Vec<u64>, Stop> {
        let (l, o) = (self.l, self.o);
        let e = |_| Stop::Inexact;
        let used = o.r.u64(v.wrapping_add(l.set_used)).map_err(e)?;
        let mask = o.r.u64(v.wrapping_add(l.set_mask)).map_err(e)?;
        if mask >= 1 << 16 || used > mask {
            return Err(Stop::Inexact);
        }
        let table = o.r.u64(v.wrapping_add(l.set_table)).map_err(e)?;
        let b = o.r.bytes(table, (mask as usize + 1) * 16).map_err(e)?;
        // setentry: {hash, key} on 2.7, {key, hash} on 3.x.
        let key_at = if l.py2 { 8 } else { 0 };
        let keys: Vec<u64> = (0..=mask as usize)
            .map(|i| le_u64(&b, i * 16 + key_at))
            .filter(|&k| k != 0 && !self.is_dummy(k))
            .collect();
        if keys.len() as u64 != used {
            return Err(Stop::Inexact);
        }
        Ok(keys)
    }

    /// Sign and 30-bit digits (least significant first) of an int.
    fn int(&self, v: u64) -> Result<(bool, Vec<u32>), String> {
        let (l, o) = (self.l, self.o);
        if let (true, Some(iv)) = (l.py2, l.int_value) {
            if o.type_name(v).as_deref() != Some("long") {
                let x = o.r.u64(v.wrapping_add(iv))? as i64;
                let m = x.unsigned_abs();
                let d = vec![
                    (m & 0x3fff_ffff) as u32,
                    (m >> 30 & 0x3fff_ffff) as u32,
                    (m >> 60) as u32,
                ];
                return Ok((x < 0, d));
            }
        }
        let (ndigits, negative) = match (l.v312, l.long_tag) {
            (true, Some(tag)) => {
                // lv_tag: number of digits << 3 | sign (0 +, 1 zero, 2 -).
                let t = o.r.u64(v.wrapping_add(tag))?;
                ((t >> 3) as usize, t & 3 == 2)
            }
            _ => {
                let s = o.var_size(v)?;
                (s.unsigned_abs() as usize, s < 0)
            }
        };
        if ndigits > MAX_INT_DIGITS {
            return Err(format!("{ndigits} digits"));
        }
        let b = o.r.bytes(v.wrapping_add(l.long_digits), ndigits * 4)?;
        Ok((
            negative,
            b.chunks_exact(4)
                .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        ))
    }
}
