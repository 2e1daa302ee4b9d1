//! A small DWARF reader for the offset tests: struct member offsets and type
//! sizes by C name, e.g. `_ts.next`, `pyruntimestate.interpreters.head`,
//! `sizeof(PyASCIIObject)`, and bit positions of bitfields,
//! `bit(PyASCIIObject.state.kind)`. Member paths go through embedded structs and
//! anonymous unions; names may be struct tags or typedefs.

use gimli::{AttributeValue, EndianSlice, RunTimeEndian, UnitOffset};
use object::{Object, ObjectSection};
use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

type R<'a> = EndianSlice<'a, RunTimeEndian>;

#[derive(Debug, Clone)]
struct Node {
    tag: gimli::DwTag,
    name: Option<String>,
    ty: Option<UnitOffset>,
    member_offset: Option<u64>,
    bit_offset: Option<u64>,
    byte_size: Option<u64>,
    declaration: bool,
    children: Vec<UnitOffset>,
}

/// What one path resolved to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolved {
    Offset(u64),
    Size(u64),
}

impl Resolved {
    pub fn value(self) -> u64 {
        match self {
            Resolved::Offset(v) | Resolved::Size(v) => v,
        }
    }
}

/// Resolves every path in `paths` against the DWARF of the ELF file `data`.
/// Paths that no compilation unit can resolve are missing from the result.
pub fn resolve(data: &[u8], paths: &[String]) -> HashMap<String, Resolved> {
    let file = object::File::parse(data).expect("parse ELF");
    let endian = if file.is_little_endian() {
        RunTimeEndian::Little
    } else {
        RunTimeEndian::Big
    };
    let mut sections: HashMap<&'static str, Cow<[u8]>> = HashMap::new();
    let load = |id: gimli::SectionId| -> Result<Cow<[u8]>, gimli::Error> {
        Ok(match file.section_by_name(id.name()) {
            Some(s) => s.uncompressed_data().unwrap_or(Cow::Borrowed(&[][..])),
            None => Cow::Borrowed(&[][..]),
        })
    };
    for id in [
        gimli::SectionId::DebugInfo,
        gimli::SectionId::DebugAbbrev,
        gimli::SectionId::DebugStr,
        gimli::SectionId::DebugLineStr,
        gimli::SectionId::DebugStrOffsets,
        gimli::SectionId::DebugAddr,
        gimli::SectionId::DebugRngLists,
        gimli::SectionId::DebugLine,
    ] {
        sections.insert(id.name(), load(id).unwrap());
    }
    let dwarf = gimli::Dwarf::load(|id| -> Result<R, gimli::Error> {
        let d = sections.get(id.name()).map(|c| &c[..]).unwrap_or(&[]);
        Ok(EndianSlice::new(d, endian))
    })
    .expect("load DWARF");

    let mut out = HashMap::new();
    let mut pending: Vec<&String> = paths.iter().collect();
    let mut units = dwarf.units();
    while let Some(header) = units.next().expect("unit header") {
        if pending.is_empty() {
            break;
        }
        let unit = dwarf.unit(header).expect("unit");
        let roots: HashSet<&str> = pending.iter().map(|p| root_name(p)).collect();
        let nodes = collect(&dwarf, &unit, &roots);
        pending.retain(|p| match resolve_one(&nodes, p) {
            Some(r) => {
                out.insert((*p).clone(), r);
                false
            }
            None => true,
        });
    }
    out
}

fn root_name(path: &str) -> &str {
    let p = path
        .strip_prefix("sizeof(")
        .or_else(|| path.strip_prefix("bit("))
        .and_then(|s| s.strip_suffix(')'))
        .unwrap_or(path);
    p.split('.').next().unwrap()
}

struct Nodes {
    map: HashMap<UnitOffset, Node>,
    /// Named, complete structs/unions/typedefs/base types at any depth.
    by_name: HashMap<String, Vec<UnitOffset>>,
}

fn collect(dwarf: &gimli::Dwarf<R>, unit: &gimli::Unit<R>, roots: &HashSet<&str>) -> Nodes {
    let mut map: HashMap<UnitOffset, Node> = HashMap::new();
    let mut by_name: HashMap<String, Vec<UnitOffset>> = HashMap::new();
    let mut stack: Vec<(isize, UnitOffset)> = Vec::new();
    let mut cursor = unit.entries();
    let mut any_root = false;
    while let Some(e) = cursor.next_dfs().expect("dfs") {
        let depth = e.depth();
        let tag = e.tag();
        let keep = matches!(
            tag,
            gimli::DW_TAG_structure_type
                | gimli::DW_TAG_union_type
                | gimli::DW_TAG_typedef
                | gimli::DW_TAG_member
                | gimli::DW_TAG_base_type
                | gimli::DW_TAG_pointer_type
                | gimli::DW_TAG_const_type
                | gimli::DW_TAG_volatile_type
                | gimli::DW_TAG_array_type
                | gimli::DW_TAG_enumeration_type
                | gimli::DW_TAG_atomic_type
        );
        while let Some(&(d, _)) = stack.last() {
            if d >= depth {
                stack.pop();
            } else {
                break;
            }
        }
        if !keep {
            continue;
        }
        let name = match e.attr_value(gimli::DW_AT_name) {
            Some(v) => dwarf
                .attr_string(unit, v)
                .ok()
                .map(|s| s.to_string_lossy().into_owned()),
            None => None,
        };
        let ty = match e.attr_value(gimli::DW_AT_type) {
            Some(AttributeValue::UnitRef(o)) => Some(o),
            _ => None,
        };
        let member_offset = match e.attr_value(gimli::DW_AT_data_member_location) {
            Some(AttributeValue::Udata(v)) => Some(v),
            Some(AttributeValue::Sdata(v)) => Some(v as u64),
            Some(AttributeValue::Data1(v)) => Some(v as u64),
            Some(AttributeValue::Data2(v)) => Some(v as u64),
            Some(AttributeValue::Data4(v)) => Some(v as u64),
            Some(AttributeValue::Data8(v)) => Some(v),
            None if tag == gimli::DW_TAG_member => Some(0), // union members
            _ => None,
        };
        let byte_size = e
            .attr_value(gimli::DW_AT_byte_size)
            .and_then(|v| v.udata_value());
        let bit_offset = e
            .attr_value(gimli::DW_AT_data_bit_offset)
            .and_then(|v| v.udata_value());
        let declaration = matches!(
            e.attr_value(gimli::DW_AT_declaration),
            Some(AttributeValue::Flag(true))
        );
        let off = e.offset();
        if let Some(n) = &name {
            if roots.contains(n.as_str()) && !declaration {
                any_root = true;
            }
            if tag != gimli::DW_TAG_member && !declaration {
                by_name.entry(n.clone()).or_default().push(off);
            }
        }
        if let Some(&(_, parent)) = stack.last() {
            if tag == gimli::DW_TAG_member {
                if let Some(p) = map.get_mut(&parent) {
                    p.children.push(off);
                }
            }
        }
        map.insert(
            off,
            Node {
                tag,
                name,
                ty,
                member_offset,
                bit_offset,
                byte_size,
                declaration,
                children: Vec::new(),
            },
        );
        if e.has_children() {
            stack.push((depth, off));
        }
    }
    if !any_root {
        map.clear();
        by_name.clear();
    }
    Nodes { map, by_name }
}

/// Follows typedefs and qualifiers to the underlying type.
fn strip(nodes: &Nodes, mut off: UnitOffset) -> Option<UnitOffset> {
    for _ in 0..32 {
        let n = nodes.map.get(&off)?;
        match n.tag {
            gimli::DW_TAG_typedef
            | gimli::DW_TAG_const_type
            | gimli::DW_TAG_volatile_type
            | gimli::DW_TAG_atomic_type => off = n.ty?,
            _ => return Some(off),
        }
    }
    None
}

fn find_member(
    nodes: &Nodes,
    st: UnitOffset,
    name: &str,
) -> Option<(u64, UnitOffset, Option<u64>)> {
    let n = nodes.map.get(&st)?;
    if n.declaration {
        return None;
    }
    for c in &n.children {
        let m = nodes.map.get(c)?;
        let moff = m.member_offset.unwrap_or(0);
        if m.name.as_deref() == Some(name) {
            return Some((moff, m.ty?, m.bit_offset));
        }
        if m.name.is_none() {
            // Anonymous struct or union: look inside.
            if let Some(inner) = m.ty.and_then(|t| strip(nodes, t)) {
                if let Some((o, t, b)) = find_member(nodes, inner, name) {
                    return Some((moff + o, t, b));
                }
            }
        }
    }
    None
}

fn resolve_one(nodes: &Nodes, path: &str) -> Option<Resolved> {
    let (sizeof, p) = match path
        .strip_prefix("sizeof(")
        .and_then(|s| s.strip_suffix(')'))
    {
        Some(p) => (true, p),
        None => (false, path),
    };
    let (bits, p) = match p.strip_prefix("bit(").and_then(|s| s.strip_suffix(')')) {
        Some(p) => (true, p),
        None => (false, p),
    };
    let mut parts = p.split('.');
    let root = parts.next()?;
    for cand in nodes.by_name.get(root)? {
        let Some(mut ty) = strip(nodes, *cand) else {
            continue;
        };
        let tn = nodes.map.get(&ty)?;
        if tn.declaration {
            continue;
        }
        let mut off = 0u64;
        let mut bit = None;
        let mut ok = true;
        for part in parts.clone() {
            match find_member(nodes, ty, part).and_then(|(o, t, b)| Some((o, strip(nodes, t)?, b)))
            {
                Some((o, t, b)) => {
                    off += o;
                    ty = t;
                    bit = b;
                }
                None => {
                    ok = false;
                    break;
                }
            }
        }
        if !ok {
            continue;
        }
        if bits {
            return bit.map(Resolved::Offset);
        }
        if sizeof {
            let n = nodes.map.get(&ty)?;
            if let Some(s) = n.byte_size {
                return Some(Resolved::Size(s));
            }
            if n.tag == gimli::DW_TAG_pointer_type {
                return Some(Resolved::Size(8));
            }
            continue;
        }
        return Some(Resolved::Offset(off));
    }
    None
}
