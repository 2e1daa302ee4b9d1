//! The plan of an injection, made before the target is held: which entry
//! points to hook and how their first instructions move, which C API the
//! trampolines call, and the layout of the pages (data, then one code
//! page). Pure: it takes symbol addresses, the entries' bytes and the
//! bootstrap's parameters, and says what to write where, so it is tested
//! offline (the tests below); `arm` carries it out.

use super::bootstrap::{self, Params};
use super::detour::{self, Code, Layout, Relocated};
use super::fallback::Fallback;
use crate::catalogue;

/// Where in the code page the strings the trampolines pass begin (the
/// page's last 64 bytes).
const STRINGS_AT: u64 = 4096 - 64;

/// One entry point to hook: its address and its relocated prologue.
pub(super) struct Site {
    pub name: &'static str,
    pub entry: u64,
    pub reloc: Relocated,
}

/// What an entry point holds now, as read from the target.
pub(super) struct EntryCode {
    /// The first 32 bytes at the entry.
    pub code: Vec<u8>,
    /// True if they begin with a `jmp` out of the interpreter's module (a
    /// detour of a pyattach killed before it restored the entry).
    pub foreign_jump: bool,
    /// The entry's bytes in the module's file, read only when
    /// `foreign_jump` (`None`: unreadable).
    pub file: Option<Vec<u8>>,
}

/// The entries chosen and those left out.
#[derive(Default)]
pub(super) struct Sites {
    pub sites: Vec<Site>,
    /// Every entry with a symbol, hooked or not (a later run's reclaim
    /// looks for jumps from each of them).
    pub entries: Vec<u64>,
    /// "name: why" for each entry that cannot be hooked.
    pub skipped: Vec<String>,
    /// Entries where an earlier pyattach's detour was found and replaced.
    pub replaced: Vec<String>,
}

/// Chooses the sites among `names` (see `catalogue::hook_entries`):
/// `lookup` gives a symbol's address, `read` what its entry holds.
pub(super) fn sites<E>(
    names: &[&'static str],
    lookup: impl Fn(&str) -> Option<u64>,
    mut read: impl FnMut(u64) -> Result<EntryCode, E>,
) -> Result<Sites, E> {
    let mut out = Sites::default();
    for &name in names {
        let Some(entry) = lookup(name) else {
            out.skipped.push(format!("{name}: no symbol"));
            continue;
        };
        out.entries.push(entry);
        let now = read(entry)?;
        let mut code = now.code;
        if now.foreign_jump {
            // Take the original bytes from the module's file; the entry
            // gets them back at the end.
            match now.file {
                Some(orig) if orig.first() != Some(&0xe9) => {
                    out.replaced.push(name.to_string());
                    code = orig;
                }
                _ => {
                    out.skipped
                        .push(format!("{name}: {}", detour::DetourError::AlreadyPatched));
                    continue;
                }
            }
        }
        match detour::relocate(entry, &code) {
            Ok(reloc) => out.sites.push(Site { name, entry, reloc }),
            Err(e) => out.skipped.push(format!("{name}: {e}")),
        }
    }
    Ok(out)
}

/// The C API the trampolines call besides `PyRun_SimpleString` (public,
/// exported by every build; without one of them they do without).
#[derive(Clone, Copy, Default)]
pub(super) struct Api {
    /// `PyRun_SimpleString`.
    pub run: u64,
    /// `PySys_GetObject`, `PyDict_GetItemString`, `PyObject_CallFunction`,
    /// `Py_DecRef`, `PyErr_Clear`: the direct call of a bootstrap already
    /// defined in the target.
    pub fast: Option<[u64; 5]>,
    pub keep_error: Option<detour::KeepError>,
    /// `Py_AddPendingCall`.
    pub pending: Option<u64>,
    /// Running a signal handler already due first (see
    /// `catalogue::DUE_SIGNALS`), in that order.
    pub signals: Option<[u64; 5]>,
    /// Python 2 only (see `catalogue::IMPORT_LOCK`): where the import
    /// lock's holder is kept, and `PyThread_get_thread_ident`.
    pub import_lock: Option<(u64, u64)>,
}

impl Api {
    pub fn find(run: u64, lookup: impl Fn(&str) -> Option<u64>) -> Api {
        let all =
            |names: &[&str]| -> Option<Vec<u64>> { names.iter().map(|n| lookup(n)).collect() };
        let fast = all(&catalogue::FAST_CALL).map(|f| [f[0], f[1], f[2], f[3], f[4]]);
        let keep_error = all(&catalogue::KEEP_ERROR).map(|f| detour::KeepError {
            fetch: f[0],
            restore: f[1],
            exc_info: all(&catalogue::KEEP_EXC_INFO).map(|g| (g[0], g[1])),
        });
        Api {
            run,
            fast,
            keep_error,
            pending: lookup(catalogue::PENDING_CALL),
            signals: all(&catalogue::DUE_SIGNALS).map(|f| [f[0], f[1], f[2], f[3], f[4]]),
            import_lock: all(&catalogue::IMPORT_LOCK).map(|f| (f[0], f[1])),
        }
    }
}

/// Everything to write, wherever the pages land.
pub(super) struct Plan {
    pub sites: Vec<Site>,
    pub api: Api,
    pub fallback: Option<Fallback>,
    pub params: Params,
    /// Only this thread may claim (`--thread`).
    pub only_tid: Option<i32>,
    /// The stacks' table (see `stacks::table`), after the payload.
    pub table: Vec<u8>,
    payload_len: usize,
    /// The data pages' length and the whole mapping's (a code page more).
    pub data_len: u64,
    pub total: u64,
}

/// What goes into the target once its pages are at a known address.
pub(super) struct Image {
    /// Data pages then code page, written in one go at the base.
    pub bytes: Vec<u8>,
    pub layout: Layout,
    pub code: Code,
    /// The code page alone (written on its own under MDWE).
    pub page: Vec<u8>,
    /// Where remote calls return (the call stub in the code page).
    pub call_stub: u64,
}

impl Plan {
    pub fn new(
        sites: Vec<Site>,
        api: Api,
        fallback: Option<Fallback>,
        params: Params,
        only_tid: Option<i32>,
        table: Vec<u8>,
    ) -> Plan {
        let payload_len = bootstrap::payload_len(&params);
        let data_len = detour::data_len_for(payload_len.next_multiple_of(16) + table.len());
        Plan {
            sites,
            api,
            fallback,
            params,
            only_tid,
            table,
            payload_len,
            data_len,
            total: data_len + 4096,
        }
    }

    /// The trampolines' view of pages at `base`.
    pub fn layout_at(&self, base: u64) -> Layout {
        let code = base + self.data_len;
        let (name, fmt, fmt_exc, main_name, key) = detour::fast_strings_at(code + STRINGS_AT);
        let (blob, blob_len) = bootstrap::blob_at(&self.params, base + detour::SCRIPT);
        Layout {
            data: base,
            code,
            run: self.api.run,
            only_tid: self.only_tid,
            stacks: Some(base + detour::SCRIPT + self.payload_len.next_multiple_of(16) as u64),
            ensure: self.fallback.map_or(0, |f| f.ensure),
            release: self.fallback.map_or(0, |f| f.release),
            fast: self.api.fast.map(|f| detour::Fast {
                sys_get: f[0],
                dict_get: f[1],
                call: f[2],
                decref: f[3],
                clear: f[4],
                name,
                key,
                fmt,
                fmt_exc,
                blob,
                blob_len,
            }),
            keep_error: self.api.keep_error,
            signals: self.api.signals.map(|f| detour::Signals {
                check: f[0],
                normalize: f[1],
                add_module: f[2],
                get_dict: f[3],
                run_string: f[4],
                main_name,
            }),
            import_lock: self.api.import_lock,
        }
    }

    fn code_at(&self, base: u64) -> (Layout, Code) {
        let layout = self.layout_at(base);
        let pairs: Vec<(u64, &Relocated)> =
            self.sites.iter().map(|s| (s.entry, &s.reloc)).collect();
        let code = detour::code(&layout, &pairs);
        (layout, code)
    }

    /// True if the trampolines fit in one page with the call stub and the
    /// strings (their size does not depend on where they go: checked at
    /// the first entry's own page).
    pub fn fits(&self) -> bool {
        let Some(first) = self.sites.first() else {
            return false;
        };
        code_page(&self.code_at(first.entry & !0xfff).1).2
    }

    /// The bytes for pages at `base`.
    pub fn image(&self, base: u64) -> Image {
        let (layout, code) = self.code_at(base);
        let mut payload = bootstrap::payload(&self.params, base + detour::SCRIPT);
        debug_assert_eq!(payload.len(), self.payload_len);
        // The data pages (the payload, then the stacks' table), then the
        // code page.
        payload.resize(self.payload_len.next_multiple_of(16), 0);
        payload.extend_from_slice(&self.table);
        let mut bytes = detour::data(&payload, std::process::id());
        let (page, stub_at, _) = code_page(&code);
        bytes.extend_from_slice(&page);
        Image {
            bytes,
            call_stub: layout.code + stub_at,
            layout,
            code,
            page,
        }
    }
}

/// The code page: the trampolines, then the code remote calls return into
/// (no page of its own to map and unmap), then, in its last bytes, the
/// strings the trampolines pass. Returns the page, where the call stub
/// is in it, and whether everything fit.
fn code_page(code: &Code) -> (Vec<u8>, u64, bool) {
    let mut page = code.bytes.clone();
    page.resize(page.len().next_multiple_of(16), 0xcc);
    let stub_at = page.len() as u64;
    page.extend_from_slice(attach::CALL_STUB);
    let fits = page.len() as u64 <= STRINGS_AT;
    page.resize(STRINGS_AT as usize, 0xcc);
    page.extend_from_slice(&detour::fast_strings(bootstrap::key()));
    (page, stub_at, fits)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::bootstrap::{ChannelParams, Mode};
    use std::collections::HashMap;

    /// `endbr64; push rbp; mov rbp, rsp; push rbx; sub rsp, 8` and filler:
    /// a prologue as compilers write it.
    const PROLOGUE: [u8; 32] = [
        0xf3, 0x0f, 0x1e, 0xfa, 0x55, 0x48, 0x89, 0xe5, 0x53, 0x48, 0x83, 0xec, 0x08, 0x90, 0x90,
        0x90, 0x90, 0x90, 0x90, 0x90, 0x90, 0x90, 0x90, 0x90, 0x90, 0x90, 0x90, 0x90, 0x90, 0x90,
        0x90, 0x90,
    ];

    fn jump_away() -> Vec<u8> {
        let mut b = vec![0xe9, 0x00, 0x10, 0x00, 0x40];
        b.resize(32, 0x90);
        b
    }

    fn symbols() -> HashMap<&'static str, u64> {
        [
            ("PyEval_SaveThread", 0x55_0000_1000),
            ("PyErr_CheckSignals", 0x55_0000_2000),
            ("PyRun_SimpleString", 0x55_0000_3000),
            ("PySys_GetObject", 0x55_0000_3100),
            ("PyDict_GetItemString", 0x55_0000_3200),
            ("PyObject_CallFunction", 0x55_0000_3300),
            ("Py_DecRef", 0x55_0000_3400),
            ("PyErr_Clear", 0x55_0000_3500),
            ("Py_AddPendingCall", 0x55_0000_3600),
        ]
        .into_iter()
        .collect()
    }

    fn read_as(
        at: HashMap<u64, EntryCode>,
    ) -> impl FnMut(u64) -> Result<EntryCode, std::convert::Infallible> {
        let mut at = at;
        move |a| Ok(at.remove(&a).expect("an entry read once"))
    }

    fn plain(code: &[u8]) -> EntryCode {
        EntryCode {
            code: code.to_vec(),
            foreign_jump: false,
            file: None,
        }
    }

    #[test]
    fn entries_without_a_symbol_are_skipped_and_others_relocated() {
        let syms = symbols();
        let reads = [
            (0x55_0000_1000, plain(&PROLOGUE)),
            (0x55_0000_2000, plain(&PROLOGUE)),
        ];
        let s = sites(
            &[
                "PyEval_SaveThread",
                "PyErr_CheckSignals",
                "PyEval_ReleaseThread",
            ],
            |n| syms.get(n).copied(),
            read_as(reads.into_iter().collect()),
        )
        .unwrap();
        let names: Vec<_> = s.sites.iter().map(|s| s.name).collect();
        assert_eq!(names, ["PyEval_SaveThread", "PyErr_CheckSignals"]);
        assert_eq!(s.entries, [0x55_0000_1000, 0x55_0000_2000]);
        assert_eq!(s.skipped, ["PyEval_ReleaseThread: no symbol"]);
        assert!(s
            .sites
            .iter()
            .all(|s| s.reloc.len >= 5 && s.reloc.original == PROLOGUE[..s.reloc.len]));
    }

    #[test]
    fn a_detour_left_by_a_killed_run_is_replaced_from_the_file_or_skipped() {
        let syms = symbols();
        let reads = [
            (
                0x55_0000_1000,
                EntryCode {
                    code: jump_away(),
                    foreign_jump: true,
                    file: Some(PROLOGUE.to_vec()),
                },
            ),
            (
                0x55_0000_2000,
                EntryCode {
                    code: jump_away(),
                    foreign_jump: true,
                    file: None,
                },
            ),
        ];
        let s = sites(
            &["PyEval_SaveThread", "PyErr_CheckSignals"],
            |n| syms.get(n).copied(),
            read_as(reads.into_iter().collect()),
        )
        .unwrap();
        assert_eq!(s.replaced, ["PyEval_SaveThread"]);
        assert_eq!(s.sites.len(), 1);
        assert_eq!(s.sites[0].reloc.original, PROLOGUE[..s.sites[0].reloc.len]);
        assert_eq!(s.entries.len(), 2, "both are looked at by a reclaim");
        assert!(
            s.skipped[0].starts_with("PyErr_CheckSignals: "),
            "{:?}",
            s.skipped
        );
    }

    fn plan() -> Plan {
        let syms = symbols();
        let lookup = |n: &str| syms.get(n).copied();
        let reads = [
            (0x55_0000_1000, plain(&PROLOGUE)),
            (0x55_0000_2000, plain(&PROLOGUE)),
        ];
        let s = sites(
            &["PyEval_SaveThread", "PyErr_CheckSignals"],
            lookup,
            read_as(reads.into_iter().collect()),
        )
        .unwrap();
        let api = Api::find(syms["PyRun_SimpleString"], lookup);
        let params = Params {
            nonce: "0123456789abcdef".into(),
            token: "0123456789abcdef0123456789abcdef".into(),
            mode: Mode::run("print(1)"),
            channel: ChannelParams::Pair,
            wait_secs: 0.8,
            wakeup_fd_fn: 0,
            trip_flags: None,
        };
        let table = vec![0u8; 32];
        Plan::new(s.sites, api, None, params, None, table)
    }

    #[test]
    fn the_api_is_found_by_name_and_missing_parts_do_without() {
        let p = plan();
        assert_eq!(p.api.run, 0x55_0000_3000);
        assert_eq!(p.api.pending, Some(0x55_0000_3600));
        assert_eq!(p.api.fast.unwrap()[4], 0x55_0000_3500);
        assert!(
            p.api.keep_error.is_none(),
            "PyErr_Fetch is not in the table"
        );
    }

    #[test]
    fn the_pages_hold_payload_table_and_one_code_page_at_any_base() {
        let p = plan();
        assert!(p.fits());
        assert_eq!(p.data_len % 4096, 0);
        assert_eq!(p.total, p.data_len + 4096);
        // Anywhere within a jump of the entries (map_near's promise).
        for base in [0x55_0001_0000u64, 0x55_4000_0000] {
            let img = p.image(base);
            // The code page ends with the strings (the rest of it stays as
            // mapped).
            let len = img.bytes.len() as u64;
            assert!(len <= p.total && len > p.data_len + STRINGS_AT, "{len}");
            assert_eq!(img.layout.data, base);
            assert_eq!(img.layout.code, base + p.data_len);
            assert_eq!(&img.bytes[p.data_len as usize..], &img.page[..]);
            // The header a later pyattach recognises the pages by.
            let at = detour::MAGIC_AT as usize;
            assert_eq!(&img.bytes[at..at + 8], detour::MAGIC);
            // The text for PyRun_SimpleString, then the table after it.
            let table = img.layout.stacks.unwrap() - base;
            assert!(table > detour::SCRIPT && table + 32 <= p.data_len);
            assert_eq!(table % 16, 0);
            // One trampoline per site, in the code page; the call stub too.
            assert_eq!(img.code.tramps.len(), 2);
            let page = img.layout.code..img.layout.code + 4096;
            assert!(img.code.tramps.iter().all(|t| page.contains(t)));
            assert!(page.contains(&img.call_stub));
            let stub = (img.call_stub - img.layout.code) as usize;
            assert_eq!(
                &img.page[stub..stub + attach::CALL_STUB.len()],
                attach::CALL_STUB
            );
        }
    }
}
