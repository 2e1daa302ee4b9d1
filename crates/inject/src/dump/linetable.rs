//! Line numbers from CPython's line tables, one decoder per format. Each
//! mirrors the CPython function named in its comment; all are total over
//! arbitrary bytes (garbage gives `None` or a wrong line, never a panic).

/// The format of a code object's line table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `co_lnotab` (2.7–3.9), line increments unsigned (2.7) or signed (3.6+).
    Lnotab { signed: bool },
    /// `co_linetable` of 3.10 (PEP 626): `(byte delta, line delta)` pairs.
    Linetable310,
    /// The location table of 3.11+.
    Locations,
}

/// The line of `offset` (in bytes for the first two formats, in code units
/// for `Locations`); a negative offset means "not started yet", which
/// CPython reports as the first line.
pub fn line_for(format: Format, table: &[u8], first_line: i32, offset: i64) -> Option<i32> {
    if offset < 0 {
        return Some(first_line);
    }
    match format {
        Format::Lnotab { signed } => Some(lnotab(table, first_line, offset as u64, signed)),
        Format::Linetable310 => linetable_310(table, first_line, offset as u64),
        Format::Locations => locations(table, first_line, offset as u64),
    }
}

/// `PyCode_Addr2Line` of 2.7–3.9 (`Objects/lnotab_notes.txt`).
fn lnotab(t: &[u8], first_line: i32, lasti: u64, signed: bool) -> i32 {
    let mut line = first_line;
    let mut addr = 0u64;
    for pair in t.chunks_exact(2) {
        addr += pair[0] as u64;
        if addr > lasti {
            break;
        }
        line = line.wrapping_add(if signed {
            pair[1] as i8 as i32
        } else {
            pair[1] as i32
        });
    }
    line
}

/// `PyCode_Addr2Line` of 3.10 (`advance()` in `Objects/codeobject.c`):
/// ranges `[start, start + sdelta)` in bytes; `ldelta == -128` is no line.
fn linetable_310(t: &[u8], first_line: i32, addrq: u64) -> Option<i32> {
    let mut line = first_line;
    let mut end = 0u64;
    for pair in t.chunks_exact(2) {
        let start = end;
        end += pair[0] as u64;
        let ldelta = pair[1] as i8;
        let this = if ldelta == -128 {
            None
        } else {
            line = line.wrapping_add(ldelta as i32);
            Some(line)
        };
        if start <= addrq && addrq < end {
            return this;
        }
    }
    None
}

/// The 3.11+ location table (`InternalDocs/code_objects.md`,
/// `_PyLineTable_NextAddressRange`): entries `1 CCCC LLL` of `LLL + 1` code
/// units; the code tells how the line changes and which column bytes follow.
fn locations(t: &[u8], first_line: i32, index: u64) -> Option<i32> {
    let mut line = first_line;
    let mut addr = 0u64;
    let mut i = 0usize;
    while i < t.len() {
        let b = t[i];
        i += 1;
        let code = (b >> 3) & 15;
        let len = (b & 7) as u64 + 1;
        let this = match code {
            15 => None,
            14 => {
                line = line.wrapping_add(svarint(t, &mut i)?);
                varint(t, &mut i)?; // end line delta
                varint(t, &mut i)?; // column + 1
                varint(t, &mut i)?; // end column + 1
                Some(line)
            }
            13 => {
                line = line.wrapping_add(svarint(t, &mut i)?);
                Some(line)
            }
            10..=12 => {
                line = line.wrapping_add(code as i32 - 10);
                i += 2;
                Some(line)
            }
            _ => {
                i += 1;
                Some(line)
            }
        };
        if addr <= index && index < addr + len {
            return this;
        }
        addr += len;
    }
    None
}

/// 6-bit chunks, least significant first, bit 6 set on all but the last.
fn varint(t: &[u8], i: &mut usize) -> Option<u32> {
    let mut v = 0u32;
    let mut shift = 0;
    loop {
        let b = *t.get(*i)?;
        *i += 1;
        v |= ((b & 63) as u32).checked_shl(shift)?;
        shift += 6;
        if b & 64 == 0 || shift > 30 {
            return Some(v);
        }
    }
}

fn svarint(t: &[u8], i: &mut usize) -> Option<i32> {
    let v = varint(t, i)?;
    Some(if v & 1 != 0 {
        -((v >> 1) as i32)
    } else {
        (v >> 1) as i32
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lnotab_walks_until_past_the_offset() {
        // line 10 at 0, +2 lines at byte 6, -1 line (signed) at byte 10.
        let t = [6, 2, 4, 0xff];
        let f = Format::Lnotab { signed: true };
        assert_eq!(line_for(f, &t, 10, 0), Some(10));
        assert_eq!(line_for(f, &t, 10, 6), Some(12));
        assert_eq!(line_for(f, &t, 10, 9), Some(12));
        assert_eq!(line_for(f, &t, 10, 10), Some(11));
        // 2.7 reads the same byte as +255.
        assert_eq!(
            line_for(Format::Lnotab { signed: false }, &t, 10, 10),
            Some(267)
        );
        assert_eq!(line_for(f, &t, 10, -1), Some(10));
    }

    #[test]
    fn linetable_310_ranges_and_no_line() {
        // [0,4) line 5; [4,6) no line; [6,10) line 5+3.
        let t = [4, 0, 2, 0x80, 4, 3];
        let f = Format::Linetable310;
        assert_eq!(line_for(f, &t, 5, 0), Some(5));
        assert_eq!(line_for(f, &t, 5, 5), None);
        assert_eq!(line_for(f, &t, 5, 8), Some(8));
        assert_eq!(line_for(f, &t, 5, 10), None);
    }

    #[test]
    fn locations_every_entry_kind() {
        let t = [
            0x80 | (13 << 3),
            2, // 1 unit, no columns, line +1 → 11
            0x80 | (11 << 3) | 1,
            4,
            8, // 2 units, one-line form, +1 → 12
            0x80 | (3 << 3),
            7,                // 1 unit, short form, line 12
            0x80 | (15 << 3), // 1 unit, no location
            0x80 | (14 << 3) | 2,
            5,
            0,
            1,
            2, // 3 units, long form, -2 → 10
        ];
        let f = Format::Locations;
        assert_eq!(line_for(f, &t, 10, 0), Some(11));
        assert_eq!(line_for(f, &t, 10, 1), Some(12));
        assert_eq!(line_for(f, &t, 10, 2), Some(12));
        assert_eq!(line_for(f, &t, 10, 3), Some(12));
        assert_eq!(line_for(f, &t, 10, 4), None);
        assert_eq!(line_for(f, &t, 10, 5), Some(10));
        assert_eq!(line_for(f, &t, 10, 7), Some(10));
        assert_eq!(line_for(f, &t, 10, 8), None);
    }

    #[test]
    fn garbage_never_panics() {
        let junk: Vec<u8> = (0..=255u8).cycle().take(2000).collect();
        for f in [
            Format::Lnotab { signed: true },
            Format::Linetable310,
            Format::Locations,
        ] {
            for off in [0i64, 1, 77, 999, 5000] {
                let _ = line_for(f, &junk, 1, off);
                let _ = line_for(f, &junk[..3], 1, off);
            }
        }
        let mut i = 0;
        assert!(varint(&[0xff; 10], &mut i).is_some());
    }
}
