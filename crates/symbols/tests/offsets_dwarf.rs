//! Every row of every offset table equals what DWARF says of the member it
//! names, in the pyenv builds of each version (shared libpython with DWARF)
//! and in Debian's python3.11 through its `python3.11-dbg` debug file; and
//! 3.13's `_Py_DebugOffsets`, read from the file, agree with DWARF too.
//!
//! `PYATTACH_BLESS_OFFSETS=1` prints each table as DWARF gives it, to help
//! write a new table (review every value against the headers).

#[path = "offsets_dwarf/dwarf.rs"]
mod dwarf;

use object::{Object, ObjectSection, ObjectSymbol};
use std::path::{Path, PathBuf};
use symbols::offsets::{tables, Field, Offsets, Row};

fn pyenv_root() -> PathBuf {
    std::env::var_os("PYENV_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".pyenv")
        })
}

/// The libpython of a pyenv build (`libpython3.6m.so.1.0` on 3.6–3.7).
fn pyenv_libpython(version: &str) -> Option<PathBuf> {
    let mut it = version.split('.');
    let (maj, min) = (it.next()?, it.next()?);
    let lib = pyenv_root().join("versions").join(version).join("lib");
    [
        format!("libpython{maj}.{min}.so.1.0"),
        format!("libpython{maj}.{min}m.so.1.0"),
    ]
    .into_iter()
    .map(|n| lib.join(n))
    .find(|p| p.exists())
}

fn bless() -> bool {
    std::env::var_os("PYATTACH_BLESS_OFFSETS").is_some()
}

/// Checks `rows` against DWARF in `data`; returns the mismatches.
fn check_rows(what: &str, data: &[u8], rows: &[Row]) -> Vec<String> {
    let paths: Vec<String> = rows.iter().map(|r| r.member.to_string()).collect();
    let found = dwarf::resolve(data, &paths);
    let mut bad = Vec::new();
    for r in rows {
        match found.get(r.member) {
            Some(v) if v.value() == r.value => {}
            Some(v) => bad.push(format!(
                "{what}: {:?} is {} in the table but {} in DWARF ({})",
                r.field,
                r.value,
                v.value(),
                r.member
            )),
            None => bad.push(format!("{what}: {:?}: DWARF has no {}", r.field, r.member)),
        }
        if bless() {
            let v = found.get(r.member).map(|v| v.value().to_string());
            println!(
                "    {:?} = {} => {:?};",
                r.field,
                v.unwrap_or_else(|| "MISSING".into()),
                r.member
            );
        }
    }
    bad
}

/// [`check_rows`] on the file at `path`, framed as a table to paste when
/// blessing.
fn check_table(what: &str, (maj, min): (u32, u32), path: &Path, rows: &[Row]) -> Vec<String> {
    let data = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    if bless() {
        println!("pub const V{maj}_{min}: &[Row] = table! {{");
    }
    let bad = check_rows(what, &data, rows);
    if bless() {
        println!("}};");
    }
    bad
}

#[test]
fn every_table_row_matches_dwarf_of_pyenv_builds() {
    let mut bad = Vec::new();
    let mut checked = 0;
    for v in testsupport::PYENV_VERSIONS {
        let Some(lib) = pyenv_libpython(v) else {
            testsupport::note(&format!("pyenv {v} has no shared libpython"));
            continue;
        };
        let mut it = v.split('.').map(|p| p.parse::<u32>().unwrap());
        let (maj, min) = (it.next().unwrap(), it.next().unwrap());
        let rows = tables::table(maj, min).unwrap_or_else(|| panic!("no table for {v}"));
        bad.extend(check_table(v, (maj, min), &lib, rows));
        checked += 1;
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
    eprintln!("checked the tables of {checked} pyenv builds against DWARF");
}

/// The `_asyncio` extension module of a pyenv build.
fn pyenv_asyncio(version: &str) -> Option<PathBuf> {
    let mut it = version.split('.');
    let (maj, min) = (it.next()?, it.next()?);
    let dir = pyenv_root()
        .join("versions")
        .join(version)
        .join(format!("lib/python{maj}.{min}/lib-dynload"));
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("_asyncio.") && n.ends_with(".so"))
        })
}

#[test]
fn asyncio_tables_match_dwarf_of_pyenv_builds() {
    let mut bad = Vec::new();
    let mut checked = 0;
    for v in testsupport::PYENV_VERSIONS {
        let mut it = v.split('.').map(|p| p.parse::<u32>().unwrap());
        let (maj, min) = (it.next().unwrap(), it.next().unwrap());
        let Some(rows) = symbols::offsets::asyncio::table(maj, min) else {
            continue;
        };
        let Some(so) = pyenv_asyncio(v) else {
            testsupport::note(&format!("pyenv {v} has no _asyncio module"));
            continue;
        };
        bad.extend(check_table(v, (maj, min), &so, rows));
        checked += 1;
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
    assert!(
        checked > 0,
        "no pyenv build with an _asyncio module to check"
    );
    eprintln!("checked the _asyncio tables of {checked} pyenv builds against DWARF");
}

/// The bytes at the start of `_PyRuntime` in the file's initialized data.
fn runtime_bytes_in_file(data: &[u8], len: usize) -> Option<Vec<u8>> {
    let file = object::File::parse(data).ok()?;
    let sym = file
        .symbols()
        .chain(file.dynamic_symbols())
        .find(|s| s.name() == Ok("_PyRuntime"))?;
    let section = file.section_by_index(sym.section_index()?).ok()?;
    let bytes = section.data_range(sym.address(), len as u64).ok()??;
    Some(bytes.to_vec())
}

#[test]
fn debug_offsets_of_3_13_match_dwarf_and_the_table() {
    let Some(lib) = pyenv_libpython("3.13.0") else {
        testsupport::note("pyenv 3.13.0 has no shared libpython");
        return;
    };
    let data = std::fs::read(&lib).unwrap();
    let bytes = runtime_bytes_in_file(&data, symbols::offsets::DEBUG_OFFSETS_LEN)
        .expect("_PyRuntime in the file's data");
    // The positions pyattach reads are where the C struct has its members.
    check_positions("3.13.0", &data, &symbols::offsets::debug::LAYOUT_3_13);
    let from_debug = Offsets::from_debug_offsets(&bytes).expect("parse debug offsets");
    // The `_asyncio` rows are checked against their own module below.
    let asyncio = symbols::offsets::asyncio::table(3, 13).unwrap_or(&[]);
    let rows: Vec<Row> = from_debug
        .rows()
        .iter()
        .filter(|r| !asyncio.contains(r))
        .copied()
        .collect();
    let bad = check_rows("3.13.0 debug offsets", &data, &rows);
    assert!(bad.is_empty(), "{}", bad.join("\n"));
    let table = Offsets::for_version(3, 13).unwrap();
    for r in from_debug.rows() {
        if let Some(t) = table.get(r.field) {
            assert_eq!(
                t, r.value,
                "table and debug offsets differ on {:?}",
                r.field
            );
        }
    }
}

/// The positions pyattach reads in `layout` are where the C struct of the
/// build whose DWARF is `data` has its members.
fn check_positions(what: &str, data: &[u8], layout: &symbols::offsets::debug::Layout) {
    let members = symbols::offsets::debug::members(layout);
    let paths: Vec<String> = members.iter().map(|(_, m)| m.to_string()).collect();
    let found = dwarf::resolve(data, &paths);
    for (pos, member) in members {
        assert_eq!(
            found.get(member).map(|v| v.value()),
            Some(pos as u64),
            "{what}: position of {member}"
        );
    }
}

#[test]
fn tables_and_debug_offsets_of_3_14_and_3_15_match_their_debug_files() {
    use symbols::offsets::debug::{LAYOUT_3_14, LAYOUT_3_15};
    let Some(root) = testsupport::sid_root() else {
        return testsupport::note(
            "the sid root with Python 3.14 and 3.15 is missing (scripts/setup)",
        );
    };
    for (v, minor, layout) in [("3.14", 14, &LAYOUT_3_14), ("3.15", 15, &LAYOUT_3_15)] {
        let exe = root.join(format!("usr/bin/python{v}"));
        let data = std::fs::read(&exe).unwrap_or_else(|e| panic!("{}: {e}", exe.display()));
        let id = build_id(&data).expect("build-id");
        let debug = root.join(format!(
            "usr/lib/debug/.build-id/{}/{}.debug",
            &id[..2],
            &id[2..]
        ));
        let dbg = std::fs::read(&debug).unwrap_or_else(|e| panic!("{}: {e}", debug.display()));
        check_positions(v, &dbg, layout);
        let bad = check_rows(v, &dbg, tables::table(3, minor).unwrap());
        assert!(bad.is_empty(), "{}", bad.join("\n"));
        // The executable's own bytes parse with that layout.
        let bytes = runtime_bytes_in_file(&data, symbols::offsets::DEBUG_OFFSETS_LEN)
            .expect("_PyRuntime in the file's data");
        let offsets = Offsets::from_debug_offsets(&bytes).expect("parse debug offsets");
        let asyncio = symbols::offsets::asyncio::table(3, minor).expect("an _asyncio table");
        let rows: Vec<Row> = offsets
            .rows()
            .iter()
            .filter(|r| !asyncio.contains(r))
            .copied()
            .collect();
        let bad = check_rows(v, &dbg, &rows);
        assert!(bad.is_empty(), "{}", bad.join("\n"));
        // `_asyncio`: a module of its own on 3.14, built in on 3.15.
        let module = root.join(format!(
            "usr/lib/python{v}/lib-dynload/_asyncio.cpython-3{minor}-x86_64-linux-gnu.so"
        ));
        let adbg = match std::fs::read(&module) {
            Ok(m) => {
                let id = build_id(&m).expect("build-id of _asyncio");
                let p = root.join(format!(
                    "usr/lib/debug/.build-id/{}/{}.debug",
                    &id[..2],
                    &id[2..]
                ));
                std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
            }
            Err(_) => dbg.clone(),
        };
        let bad = check_rows(&format!("{v} _asyncio"), &adbg, asyncio);
        assert!(bad.is_empty(), "{}", bad.join("\n"));
    }
}

/// Debian's debug builds (`python3.13d`…`python3.15d`, `--with-pydebug`
/// without `Py_TRACE_REFS`): the dump reads them with their own
/// `_Py_DebugOffsets` over the release build's table, which holds only if
/// every row of both is where the debug build's DWARF puts it.
#[test]
fn the_release_tables_fit_the_debug_builds_of_3_13_to_3_15() {
    let Some(root) = testsupport::sid_root() else {
        return testsupport::note("the sid root is missing (scripts/setup)");
    };
    for (v, minor) in [("3.13", 13), ("3.14", 14), ("3.15", 15)] {
        let exe = root.join(format!("usr/bin/python{v}d"));
        let Ok(data) = std::fs::read(&exe) else {
            testsupport::note(&format!("{} is missing (python{v}-dbg)", exe.display()));
            continue;
        };
        // Not stripped: the executable carries its own DWARF.
        let dbg = &data;
        let what = format!("{v}d");
        let asyncio = symbols::offsets::asyncio::table(3, minor).unwrap_or(&[]);
        // dump --tasks refuses debug builds: their interpreter state puts
        // asyncio_tasks_head elsewhere (3.14d: 8 bytes on).
        let core = |rows: &[Row]| -> Vec<Row> {
            rows.iter()
                .filter(|r| !asyncio.contains(r) && r.field != Field::InterpAsyncioTasksHead)
                .cloned()
                .collect()
        };
        let bad = check_rows(&what, dbg, &core(tables::table(3, minor).unwrap()));
        assert!(bad.is_empty(), "{}", bad.join("\n"));
        let bytes = runtime_bytes_in_file(&data, symbols::offsets::DEBUG_OFFSETS_LEN)
            .expect("_PyRuntime in the file's data");
        let offsets = Offsets::from_debug_offsets(&bytes).expect("parse debug offsets");
        let bad = check_rows(&what, dbg, &core(offsets.rows()));
        assert!(bad.is_empty(), "{}", bad.join("\n"));
    }
}

#[test]
fn debug_offsets_reject_garbage() {
    use symbols::offsets::DebugOffsetsError;
    assert_eq!(
        Offsets::from_debug_offsets(&[0u8; 600]).unwrap_err(),
        DebugOffsetsError::NoCookie
    );
    let mut b = vec![0u8; 600];
    b[..8].copy_from_slice(b"xdebugpy");
    assert_eq!(
        Offsets::from_debug_offsets(&b[..100]).unwrap_err(),
        DebugOffsetsError::Truncated(100)
    );
    // A layout to come is not guessed at.
    let mut b = vec![0u8; symbols::offsets::DEBUG_OFFSETS_LEN];
    b[..8].copy_from_slice(b"xdebugpy");
    b[8..16].copy_from_slice(&0x031000f0u64.to_le_bytes());
    assert!(matches!(
        Offsets::from_debug_offsets(&b).unwrap_err(),
        DebugOffsetsError::UnknownLayout {
            major: 3,
            minor: 16
        }
    ));
}

/// The build-id of an ELF file, as lowercase hex.
fn build_id(data: &[u8]) -> Option<String> {
    let file = object::File::parse(data).ok()?;
    let id = file.build_id().ok()??;
    Some(id.iter().map(|b| format!("{b:02x}")).collect())
}

#[test]
fn debian_python3_11_uses_the_3_11_table() {
    let exe = PathBuf::from("/usr/bin/python3.11");
    let Ok(data) = std::fs::read(&exe) else {
        testsupport::note("/usr/bin/python3.11 is missing");
        return;
    };
    let id = build_id(&data).expect("build-id");
    let debug = PathBuf::from(format!(
        "/usr/lib/debug/.build-id/{}/{}.debug",
        &id[..2],
        &id[2..]
    ));
    let Ok(dbg) = std::fs::read(&debug) else {
        testsupport::note(&format!("{} is missing (python3.11-dbg)", debug.display()));
        return;
    };
    let bad = check_rows("debian 3.11", &dbg, tables::table(3, 11).unwrap());
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

#[test]
fn unicode_state_bits_match_dwarf() {
    use symbols::offsets::consts::UNICODE_STATE_BITS;
    let paths: Vec<String> = UNICODE_STATE_BITS
        .iter()
        .map(|(_, p)| p.to_string())
        .collect();
    let mut checked = 0;
    for v in testsupport::PYENV_VERSIONS
        .iter()
        .filter(|v| v.starts_with("3."))
    {
        let Some(lib) = pyenv_libpython(v) else {
            continue;
        };
        let data = std::fs::read(&lib).unwrap();
        let found = dwarf::resolve(&data, &paths);
        for (bit, path) in UNICODE_STATE_BITS {
            assert_eq!(
                found.get(*path).map(|r| r.value()),
                Some(*bit as u64),
                "{v}: {path}"
            );
        }
        checked += 1;
    }
    if checked == 0 {
        testsupport::note("no pyenv 3.x build with a shared libpython");
    }
}
