//! A symbol table extracted once from an ELF file: the string table as the
//! file has it, and one fixed-size record per defined symbol pointing into
//! it. Names stay bytes (nothing is validated or copied per name).
//!
//! Most tables answer a handful of names in a run (discovery asks libpython's
//! `.symtab` for one or two names it lacks), so the first lookups scan the
//! records, comparing bytes (tens of microseconds for 15,000 symbols); only
//! a table asked more than [`SCANS_BEFORE_INDEX`] times gets a hash index.
//! The address index (sorted) is built only when first asked for, so a
//! 40,000-symbol debug file consulted only to symbolize a few addresses
//! never hashes a name.

use hashbrown::HashTable;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

/// Lookups answered by a linear scan before the name index is built.
const SCANS_BEFORE_INDEX: u32 = 8;

/// GCC's LTO suffix for a renamed static function (see [`SymbolTable::get`]).
const LTO_PRIV: &[u8] = b".lto_priv.";

/// One defined symbol as the file states it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    pub value: u64,
    pub size: u64,
    pub global: bool,
    pub func: bool,
}

#[derive(Debug)]
struct Record {
    /// Where the name starts in `strings`; it ends at a NUL or an `@` (a
    /// `.symtab` may spell out a version, `name@VERSION`), found only when
    /// the whole name is needed: a scan compares the key in place.
    start: u32,
    entry: Entry,
}

/// Whether `b` ends a name.
fn ends_name(b: Option<&u8>) -> bool {
    matches!(b, None | Some(0 | b'@'))
}

#[derive(Debug, Default)]
pub(crate) struct SymbolTable {
    strings: Vec<u8>,
    records: Vec<Record>,
    lookups: AtomicU32,
    /// `(record, key length)` slots: see [`SymbolTable::key`].
    by_name: OnceLock<HashTable<(u32, u32)>>,
    by_addr: OnceLock<Vec<(u64, u64, u32)>>,
}

fn hash(name: &[u8]) -> u64 {
    rustc_hash::FxBuildHasher.hash_one(name)
}

impl SymbolTable {
    /// An empty table over the string table `strings`.
    pub fn new(strings: Vec<u8>) -> Self {
        SymbolTable {
            strings,
            ..Default::default()
        }
    }

    /// Adds a definition (in file order) whose name starts at `offset` in
    /// the string table. An empty or out-of-range name is ignored.
    pub fn insert_at(&mut self, offset: u32, entry: Entry) {
        if ends_name(self.strings.get(offset as usize)) {
            return;
        }
        self.records.push(Record {
            start: offset,
            entry,
        });
    }

    fn name(&self, i: usize) -> &[u8] {
        let rest = &self.strings[self.records[i].start as usize..];
        &rest[..memchr::memchr2(0, b'@', rest).unwrap_or(rest.len())]
    }

    /// The definition of `name`. A global definition wins over a local one
    /// of the same name (a `static` helper in one file must not hide the API
    /// function); otherwise the first one stays.
    ///
    /// GCC's LTO renames a static function `f` to `f.lto_priv.0` (Debian's
    /// python3.11 has `drop_gil.lto_priv.0`): the same function under a
    /// unique name, so it answers to `f` too, never over a real `f`. Clones
    /// such as `.constprop`/`.isra` have other calling conventions and are
    /// not aliased.
    pub fn get(&self, name: &str) -> Option<&Entry> {
        let key = name.as_bytes();
        let i = match self.by_name.get() {
            Some(index) => self.find(index, key),
            None if self.lookups.fetch_add(1, Ordering::Relaxed) < SCANS_BEFORE_INDEX => {
                self.scan(key)
            }
            None => self.find(self.index(), key),
        }?;
        Some(&self.records[i].entry)
    }

    /// One pass over the records: the same answer as the index.
    fn scan(&self, key: &[u8]) -> Option<usize> {
        if key.is_empty() || memchr::memchr2(0, b'@', key).is_some() {
            return None; // no name holds these
        }
        let mut exact: Option<usize> = None;
        let mut alias = None;
        let can_alias = memchr::memmem::find(key, LTO_PRIV).is_none();
        for (i, r) in self.records.iter().enumerate() {
            let rest = &self.strings[r.start as usize..];
            if !rest.starts_with(key) {
                continue;
            }
            let after = &rest[key.len()..];
            if ends_name(after.first()) {
                match exact {
                    None if r.entry.global => return Some(i),
                    None => exact = Some(i),
                    Some(_) if r.entry.global => return Some(i),
                    Some(_) => {}
                }
            } else if can_alias && alias.is_none() && after.starts_with(LTO_PRIV) {
                // `starts_with` stays within one NUL-terminated name: the
                // suffix holds no NUL.
                alias = Some(i);
            }
        }
        exact.or(alias)
    }

    /// The key of an index slot: the record's name, or the first `len`
    /// bytes of it for an LTO alias.
    fn key(&self, (i, len): (u32, u32)) -> &[u8] {
        &self.name(i as usize)[..len as usize]
    }

    fn find(&self, index: &HashTable<(u32, u32)>, key: &[u8]) -> Option<usize> {
        index
            .find(hash(key), |&slot| self.key(slot) == key)
            .map(|&(i, _)| i as usize)
    }

    /// The name index, with the precedence [`SymbolTable::get`] describes.
    fn index(&self) -> &HashTable<(u32, u32)> {
        self.by_name.get_or_init(|| {
            let mut index = HashTable::with_capacity(self.records.len());
            let mut aliases = Vec::new();
            let rehash = |&slot: &(u32, u32)| hash(self.key(slot));
            for (i, r) in self.records.iter().enumerate() {
                let name = self.name(i);
                let h = hash(name);
                match index.find_mut(h, |&slot| self.key(slot) == name) {
                    Some(old) if !self.records[old.0 as usize].entry.global && r.entry.global => {
                        *old = (i as u32, name.len() as u32)
                    }
                    Some(_) => {}
                    None => {
                        index.insert_unique(h, (i as u32, name.len() as u32), rehash);
                    }
                }
                if let Some(at) = memchr::memmem::find(name, LTO_PRIV) {
                    if at > 0 {
                        aliases.push((i as u32, at as u32));
                    }
                }
            }
            for slot in aliases {
                let base = self.key(slot);
                let h = hash(base);
                if index.find(h, |&s| self.key(s) == base).is_none() {
                    index.insert_unique(h, slot, rehash);
                }
            }
            index
        })
    }

    /// Number of definitions.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// The sized function symbol whose range holds `value`, with its name.
    pub fn containing(&self, value: u64) -> Option<(&[u8], &Entry)> {
        let index = self.by_addr.get_or_init(|| {
            let mut v: Vec<(u64, u64, u32)> = self
                .records
                .iter()
                .enumerate()
                .filter(|(_, r)| r.entry.func && r.entry.size > 0)
                .map(|(i, r)| (r.entry.value, r.entry.size, i as u32))
                .collect();
            v.sort_unstable();
            v
        });
        let i = index.partition_point(|(start, _, _)| *start <= value);
        let &(start, size, idx) = index.get(i.checked_sub(1)?)?;
        (value < start.saturating_add(size))
            .then(|| (self.name(idx as usize), &self.records[idx as usize].entry))
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

    /// A table from `(name, entry)` pairs, names laid out as in a string
    /// table (each NUL-terminated).
    fn table(defs: &[(&str, Entry)]) -> SymbolTable {
        let mut strings = vec![0u8];
        let mut offsets = Vec::new();
        for (n, _) in defs {
            offsets.push(strings.len() as u32);
            strings.extend_from_slice(n.as_bytes());
            strings.push(0);
        }
        let mut t = SymbolTable::new(strings);
        for ((_, entry), off) in defs.iter().zip(offsets) {
            t.insert_at(off, entry.clone());
        }
        t
    }

    /// Asks each name through the scan and then through the index: both
    /// must agree.
    fn both(t: &SymbolTable, names: &[&str]) -> Vec<Option<u64>> {
        let scanned: Vec<_> = names
            .iter()
            .map(|n| t.scan(n.as_bytes()).map(|i| t.records[i].entry.value))
            .collect();
        let indexed: Vec<_> = names
            .iter()
            .map(|n| {
                t.find(t.index(), n.as_bytes())
                    .map(|i| t.records[i].entry.value)
            })
            .collect();
        assert_eq!(scanned, indexed, "scan and index disagree on {names:?}");
        scanned
    }

    #[test]
    fn global_wins_and_containing_finds_ranges() {
        let t = table(&[
            ("f", e(0x100, 0x10, false)),
            ("f", e(0x200, 0x10, true)),
            ("f", e(0x300, 0x10, true)),
            ("g", e(0x110, 0x20, true)),
            ("l", e(0x800, 0x10, false)),
            ("l", e(0x900, 0x10, false)),
            ("v@GLIBC_2.2.5", e(0xa00, 0x10, true)),
        ]);
        assert_eq!(
            both(&t, &["f", "g", "h", "l", "v", "", "v@GLIBC_2.2.5"]),
            [
                Some(0x200),
                Some(0x110),
                None,
                Some(0x800),
                Some(0xa00),
                None,
                None
            ]
        );
        assert_eq!(t.get("f").unwrap().value, 0x200);
        assert_eq!(t.containing(0x205).unwrap().0, b"f");
        assert_eq!(t.containing(0x12f).unwrap().0, b"g");
        assert!(t.containing(0x130).is_none());
        assert!(t.containing(0x10).is_none());
        assert!(t.get("h").is_none());
    }

    #[test]
    fn lto_private_names_are_aliased() {
        let t = table(&[
            ("drop_gil.lto_priv.0", e(0x400, 0x20, false)),
            ("take_gil.constprop.0", e(0x500, 0x20, false)),
            ("f.lto_priv.1", e(0x700, 0x10, false)),
            ("f", e(0x600, 0x10, true)),
            ("g.lto_priv.0", e(0xb00, 0x10, false)),
            ("g.lto_priv.1", e(0xc00, 0x10, false)),
            (".lto_priv.0", e(0xd00, 0x10, false)),
        ]);
        assert_eq!(
            both(&t, &["drop_gil", "take_gil", "f", "g", "g.lto_priv.1", "d"]),
            [
                Some(0x400),
                None,
                Some(0x600),
                Some(0xb00),
                Some(0xc00),
                None
            ]
        );
        assert_eq!(t.containing(0x405).unwrap().0, b"drop_gil.lto_priv.0");
    }

    #[test]
    fn many_lookups_switch_to_the_index_with_the_same_answers() {
        let t = table(&[("a", e(1, 1, true)), ("b.lto_priv.0", e(2, 1, false))]);
        for _ in 0..3 * SCANS_BEFORE_INDEX {
            assert_eq!(t.get("a").map(|e| e.value), Some(1));
            assert_eq!(t.get("b").map(|e| e.value), Some(2));
            assert!(t.get("c").is_none());
        }
        assert!(t.by_name.get().is_some());
    }

    #[test]
    fn bad_offsets_and_unterminated_names() {
        let mut t = SymbolTable::new(b"\0abc".to_vec());
        t.insert_at(99, e(1, 1, true));
        t.insert_at(0, e(2, 1, true));
        t.insert_at(1, e(3, 1, true));
        assert_eq!(t.len(), 1);
        assert_eq!(t.get("abc").unwrap().value, 3);
    }
}
