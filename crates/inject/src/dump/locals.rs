//! `--locals`: each frame's local names with their values' reprs, read
//! from memory and rendered as `repr()` would (`value.rs`).

use symbols::offsets::{Field, Offsets};

use super::mem::le_u64;
use super::objects::Objects;
use super::value::{self, ValueLayout};
use super::Local;

/// Most locals shown per frame.
pub const MAX_LOCALS: usize = 256;

/// `co_localspluskinds` bits (3.11+, `Include/internal/pycore_code.h`).
const CO_FAST_CELL: u8 = 0x40;
const CO_FAST_FREE: u8 = 0x80;
const CO_FAST_HIDDEN: u8 = 0x10;

/// The offsets locals need, when the version has them all.
pub struct LocalsLayout {
    /// 3.14+: `localsplus` holds `_PyStackRef`s, whose low bits are tags.
    stackrefs: bool,
    /// `f_localsplus` (≤3.10) or `localsplus` (3.11+).
    frame_localsplus: u64,
    /// `co_varnames` (≤3.10) or `co_localsplusnames` (3.11+).
    code_names: u64,
    /// `co_localspluskinds` (3.11+).
    code_kinds: Option<u64>,
    /// `co_nlocals` (≤3.10).
    code_nlocals: Option<u64>,
    /// `co_cellvars` and `co_freevars` (≤3.10).
    code_cells: Option<[u64; 2]>,
    code_argcount: u64,
    tuple_items: u64,
    cell_ref: u64,
    values: ValueLayout,
}

impl LocalsLayout {
    pub fn new(o: &Offsets) -> Option<LocalsLayout> {
        let v = (o.major, o.minor);
        let g = |f| o.get(f).filter(|&x| x < 1 << 16);
        let new_style = v >= (3, 11);
        Some(LocalsLayout {
            stackrefs: v >= (3, 14),
            frame_localsplus: g(if new_style {
                Field::IframeLocalsplus
            } else {
                Field::FrameLocalsplus
            })?,
            code_names: g(if new_style {
                Field::CodeLocalsplusnames
            } else {
                Field::CodeVarnames
            })?,
            code_kinds: if new_style {
                Some(g(Field::CodeLocalspluskinds)?)
            } else {
                None
            },
            code_nlocals: if new_style {
                None
            } else {
                Some(g(Field::CodeNlocals)?)
            },
            code_cells: if new_style {
                None
            } else {
                Some([g(Field::CodeCellvars)?, g(Field::CodeFreevars)?])
            },
            code_argcount: g(Field::CodeArgcount)?,
            tuple_items: g(Field::TupleItems)?,
            cell_ref: g(Field::CellRef)?,
            values: ValueLayout::new(o)?,
        })
    }
}

/// A local's name, whether it is an argument, and whether its slot holds a
/// cell (whose content is the value).
#[derive(Clone, Debug)]
pub struct LocalName {
    /// Its slot in `f_localsplus`/`localsplus`.
    pub slot: usize,
    pub name: String,
    pub is_arg: bool,
    pub cell: bool,
}

/// The local names of the code object at `code`.
pub fn names(l: &LocalsLayout, o: &Objects, code: &[u8]) -> Result<Vec<LocalName>, String> {
    let argcount = le_u64(code, l.code_argcount as usize) as u32 as usize;
    let names_tuple = le_u64(code, l.code_names as usize);
    let n = o.var_size(names_tuple)?;
    if !(0..=4096).contains(&n) {
        return Err(format!("implausible number of locals {n}"));
    }
    let n = (n as usize).min(MAX_LOCALS);
    let (count, kinds) = match (l.code_nlocals, l.code_kinds) {
        (Some(nl), _) => ((le_u64(code, nl as usize) as u32 as usize).min(n), None),
        (None, Some(k)) => {
            let kinds = o.bytes(le_u64(code, k as usize), n)?;
            (n.min(kinds.len()), Some(kinds))
        }
        _ => (0, None),
    };
    let ptrs =
        o.r.bytes(names_tuple.wrapping_add(l.tuple_items), count * 8)?;
    let mut out = Vec::new();
    for i in 0..count {
        let kind = kinds.as_ref().map_or(0, |k| k[i]);
        if kind & CO_FAST_HIDDEN != 0 {
            continue;
        }
        out.push(LocalName {
            slot: i,
            name: o.string(le_u64(&ptrs, i * 8))?,
            is_arg: i < argcount,
            cell: kind & (CO_FAST_CELL | CO_FAST_FREE) != 0,
        });
    }
    // ≤3.10: the cells of `co_cellvars` then `co_freevars` follow the
    // locals.
    if let (Some(_), Some(cells)) = (l.code_nlocals, l.code_cells) {
        let mut slot = count;
        for off in cells {
            let t = le_u64(code, off as usize);
            let k = o.var_size(t)?;
            if !(0..=4096).contains(&k) {
                return Err(format!("implausible number of cells {k}"));
            }
            let ptrs = o.r.bytes(t.wrapping_add(l.tuple_items), k as usize * 8)?;
            for j in 0..k as usize {
                if out.len() >= MAX_LOCALS {
                    break;
                }
                out.push(LocalName {
                    slot,
                    name: o.string(le_u64(&ptrs, j * 8))?,
                    is_arg: false,
                    cell: true,
                });
                slot += 1;
            }
        }
    }
    Ok(out)
}

/// The locals of the frame at `frame` whose code has `names`.
pub fn read(
    l: &LocalsLayout,
    o: &Objects,
    frame: u64,
    names: &[LocalName],
) -> Result<Vec<Local>, String> {
    let n_slots = names.iter().map(|n| n.slot + 1).max().unwrap_or(0);
    let slots =
        o.r.bytes(frame.wrapping_add(l.frame_localsplus), n_slots * 8)?;
    let mut out: Vec<Local> = Vec::new();
    for n in names {
        let mut v = le_u64(&slots, n.slot * 8);
        if l.stackrefs {
            v &= !7;
        }
        if n.cell && v != 0 && o.type_name(v).as_deref() == Some("cell") {
            v = o.r.u64(v.wrapping_add(l.cell_ref)).unwrap_or(0);
        }
        let (type_name, repr) = if v == 0 {
            (None, None)
        } else {
            let t = o.type_name(v).unwrap_or_else(|| "?".into());
            let r = value::repr(&l.values, o, v, &t);
            (Some(t), Some(r))
        };
        let local = Local {
            name: n.name.clone(),
            type_name,
            repr,
            is_arg: n.is_arg,
        };
        // An argument that is also a cell (≤3.10) has two slots: the cell
        // holds the current value.
        match out.iter_mut().find(|x| x.name == local.name) {
            Some(prev) if local.repr.is_some() => {
                prev.type_name = local.type_name;
                prev.repr = local.repr;
            }
            Some(_) => {}
            None => out.push(local),
        }
    }
    Ok(out)
}
