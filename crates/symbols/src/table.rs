//! A symbol table extracted once from an ELF file. The names live in one
//! buffer; the name index (hash) and the address index (sorted) are each
//! built only when first asked for, so a 40,000-symbol debug file consulted
//! only to symbolize a few addresses never hashes a name.

use std::collections::HashMap;
use std::sync::OnceLock;

/// One defined symbol as the file states it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    pub value: u64,
    pub size: u64,
    pub global: bool,
    pub func: bool,
}

#[derive(Debug, Default)]
pub(crate) struct SymbolTable {
    names: String,
    /// `(start, len)` of the name in `names`, and the symbol.
    entries: Vec<(usize, usize, Entry)>,
    by_name: OnceLock<HashMap<Box<str>, usize>>,
    by_addr: OnceLock<Vec<(u64, u64, usize)>>,
}

impl SymbolTable {
    /// Adds a definition (in file order).
    pub fn insert(&mut self, name: &str, entry: Entry) {
        let start = self.names.len();
        self.names.push_str(name);
        self.entries.push((start, name.len(), entry));
    }

    fn name(&self, i: usize) -> &str {
        let (start, len, _) = self.entries[i];
        &self.names[start..start + len]
    }

    /// The name index. A global definition wins over a local one of the
    /// same name (a `static` helper in one file must not hide the API
    /// function); otherwise the first one stays.
    ///
    /// GCC's LTO renames a static function `f` to `f.lto_priv.0` (Debian's
    /// python3.11 has `drop_gil.lto_priv.0`): the same function under a
    /// unique name, so `f` is indexed too, never over a real `f`. Clones
    /// such as `.constprop`/`.isra` have other calling conventions and are
    /// not aliased.
    fn by_name(&self) -> &HashMap<Box<str>, usize> {
        self.by_name.get_or_init(|| {
            let mut map: HashMap<Box<str>, usize> = HashMap::with_capacity(self.entries.len());
            let mut aliases = Vec::new();
            for i in 0..self.entries.len() {
                let name = self.name(i);
                let global = self.entries[i].2.global;
                match map.get_mut(name) {
                    Some(old) if !self.entries[*old].2.global && global => *old = i,
                    Some(_) => {}
                    None => {
                        map.insert(name.into(), i);
                    }
                }
                if name.contains('.') {
                    if let Some((base, _)) = name.split_once(".lto_priv.") {
                        aliases.push((base, i));
                    }
                }
            }
            for (base, i) in aliases {
                if !base.is_empty() && !map.contains_key(base) {
                    map.insert(base.into(), i);
                }
            }
            map
        })
    }

    pub fn get(&self, name: &str) -> Option<&Entry> {
        self.by_name().get(name).map(|&i| &self.entries[i].2)
    }

    /// Number of definitions.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// The sized function symbol whose range holds `value`, with its name.
    pub fn containing(&self, value: u64) -> Option<(&str, &Entry)> {
        let index = self.by_addr.get_or_init(|| {
            let mut v: Vec<(u64, u64, usize)> = self
                .entries
                .iter()
                .enumerate()
                .filter(|(_, (_, _, e))| e.func && e.size > 0)
                .map(|(i, (_, _, e))| (e.value, e.size, i))
                .collect();
            v.sort_unstable();
            v
        });
        let i = index.partition_point(|(start, _, _)| *start <= value);
        let &(start, size, idx) = index.get(i.checked_sub(1)?)?;
        (value < start.saturating_add(size)).then(|| (self.name(idx), &self.entries[idx].2))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(value: u64, size: u64, global: bool) -> Entry {
        Entry {
            value,
            size,
            global,
            func: true,
        }
    }

    #[test]
    fn global_wins_and_containing_finds_ranges() {
        let mut t = SymbolTable::default();
        t.insert("f", e(0x100, 0x10, false));
        t.insert("f", e(0x200, 0x10, true));
        t.insert("f", e(0x300, 0x10, true));
        t.insert("g", e(0x110, 0x20, true));
        assert_eq!(t.get("f").unwrap().value, 0x200);
        assert_eq!(t.containing(0x205).unwrap().0, "f");
        assert_eq!(t.containing(0x12f).unwrap().0, "g");
        assert!(t.containing(0x130).is_none());
        assert!(t.containing(0x10).is_none());
        assert!(t.get("h").is_none());
    }

    #[test]
    fn lto_private_names_are_aliased() {
        let mut t = SymbolTable::default();
        t.insert("drop_gil.lto_priv.0", e(0x400, 0x20, false));
        t.insert("take_gil.constprop.0", e(0x500, 0x20, false));
        t.insert("f.lto_priv.1", e(0x700, 0x10, false));
        t.insert("f", e(0x600, 0x10, true));
        assert_eq!(t.get("drop_gil").unwrap().value, 0x400);
        assert!(t.get("take_gil").is_none());
        assert_eq!(t.get("f").unwrap().value, 0x600);
        assert_eq!(t.containing(0x405).unwrap().0, "drop_gil.lto_priv.0");
    }
}
