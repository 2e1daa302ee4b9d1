//! A symbol table extracted once from an ELF file: name lookup by hash, and
//! address lookup (what function holds this address) through a sorted index
//! built only when first asked for.

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
    by_name: HashMap<Box<str>, Entry>,
    by_addr: OnceLock<Vec<(u64, u64, Box<str>)>>,
}

impl SymbolTable {
    /// Adds a definition. A global definition wins over a local one of the
    /// same name (a `static` helper in one file must not hide the API
    /// function); otherwise the first one stays.
    ///
    /// GCC's LTO renames a static function `f` to `f.lto_priv.0` (Debian's
    /// python3.11 has `drop_gil.lto_priv.0`): the same function under a
    /// unique name, so `f` is indexed too (never over a real `f`). Clones
    /// such as `.constprop`/`.isra` have other calling conventions and are
    /// not aliased.
    pub fn insert(&mut self, name: &str, entry: Entry) {
        if let Some((base, _)) = name.split_once(".lto_priv.") {
            if !base.is_empty() && !self.by_name.contains_key(base) {
                self.by_name.insert(
                    base.into(),
                    Entry {
                        global: false,
                        ..entry.clone()
                    },
                );
            }
        }
        match self.by_name.get_mut(name) {
            Some(old) if !old.global && entry.global => *old = entry,
            Some(_) => {}
            None => {
                self.by_name.insert(name.into(), entry);
            }
        }
    }

    pub fn get(&self, name: &str) -> Option<&Entry> {
        self.by_name.get(name)
    }

    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    /// The sized function symbol whose range holds `value`, with its name.
    pub fn containing(&self, value: u64) -> Option<(&str, &Entry)> {
        let index = self.by_addr.get_or_init(|| {
            let mut v: Vec<(u64, u64, Box<str>)> = self
                .by_name
                .iter()
                .filter(|(_, e)| e.func && e.size > 0)
                .map(|(n, e)| (e.value, e.size, n.clone()))
                .collect();
            v.sort();
            v
        });
        let i = index.partition_point(|(start, _, _)| *start <= value);
        let (start, size, name) = index.get(i.checked_sub(1)?)?;
        if value < start.saturating_add(*size) {
            let e = self.by_name.get(name)?;
            Some((name, e))
        } else {
            None
        }
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
    }

    #[test]
    fn lto_private_names_are_aliased() {
        let mut t = SymbolTable::default();
        t.insert("drop_gil.lto_priv.0", e(0x400, 0x20, false));
        t.insert("take_gil.constprop.0", e(0x500, 0x20, false));
        t.insert("f", e(0x600, 0x10, true));
        t.insert("f.lto_priv.1", e(0x700, 0x10, false));
        assert_eq!(t.get("drop_gil").unwrap().value, 0x400);
        assert!(t.get("take_gil").is_none());
        assert_eq!(t.get("f").unwrap().value, 0x600);
    }
}
