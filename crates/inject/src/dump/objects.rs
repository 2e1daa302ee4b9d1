//! Decoding Python objects read from memory: `str` of every layout (2.7
//! `PyStringObject`/`unicode`; 3.x compact ASCII, compact and legacy
//! unicode of kinds 1/2/4) as text or as the code units `repr` needs
//! (lone surrogates included), `bytes`, and type names.

use std::cell::RefCell;
use std::collections::HashMap;

use symbols::offsets::{consts, Field, Offsets};

use super::mem::{le_u32, le_u64, Reader};

/// Longest string decoded, in characters; longer ones are cut.
pub const MAX_STR: usize = 4096;

/// Object decoders for one interpreter version.
pub struct Objects<'a> {
    pub r: Reader<'a>,
    py2: bool,
    ob_type: u64,
    var_size: u64,
    tp_name: u64,
    bytes_data: u64,
    uni_length: u64,
    uni_state: u64,
    uni_ascii_size: u64,
    uni_compact_size: u64,
    uni_data: u64,
    uni_char_size: u64,
    type_names: RefCell<HashMap<u64, Option<String>>>,
}

fn need(o: &Offsets, f: Field) -> Result<u64, String> {
    match o.get(f) {
        Some(v) if v < 1 << 16 => Ok(v),
        Some(v) => Err(format!("implausible offset {v} for {}", f.name())),
        None => Err(format!(
            "no offset for {} in {}.{}",
            f.name(),
            o.major,
            o.minor
        )),
    }
}

impl<'a> Objects<'a> {
    pub fn new(r: Reader<'a>, o: &Offsets) -> Result<Self, String> {
        let py2 = o.major == 2;
        Ok(Objects {
            r,
            py2,
            ob_type: need(o, Field::ObType)?,
            var_size: need(o, Field::VarSize)?,
            tp_name: need(o, Field::TypeName)?,
            bytes_data: need(o, Field::BytesData)?,
            uni_length: need(o, Field::UnicodeLength)?,
            uni_state: if py2 {
                0
            } else {
                need(o, Field::UnicodeState)?
            },
            uni_ascii_size: if py2 {
                0
            } else {
                need(o, Field::UnicodeAsciiSize)?
            },
            // Not in `_Py_DebugOffsets`: a compact non-ASCII string has
            // `utf8_length` and `utf8` after the ASCII header.
            uni_compact_size: if py2 {
                0
            } else {
                o.get(Field::UnicodeCompactSize)
                    .filter(|&v| v < 1 << 16)
                    .unwrap_or(need(o, Field::UnicodeAsciiSize)? + 16)
            },
            uni_data: o
                .get(Field::UnicodeData)
                .filter(|&v| v < 1 << 16)
                .unwrap_or(0),
            uni_char_size: o
                .get(Field::UnicodeCharSize)
                .filter(|&v| v == 2 || v == 4)
                .unwrap_or(4),
            type_names: RefCell::new(HashMap::new()),
        })
    }

    /// 2.7's `Py_UNICODE` is 2 or 4 bytes depending on the build
    /// (`--enable-unicode=ucs4`), which the exported names tell.
    pub fn set_unicode_char_size(&mut self, n: u64) {
        self.uni_char_size = n;
    }

    /// The `tp_name` of an object's type (cached per type).
    pub fn type_name(&self, obj: u64) -> Option<String> {
        let ty = self.r.u64(obj.wrapping_add(self.ob_type)).ok()?;
        if let Some(n) = self.type_names.borrow().get(&ty) {
            return n.clone();
        }
        let name = self
            .r
            .u64(ty.wrapping_add(self.tp_name))
            .and_then(|p| self.r.c_string(p, 128))
            .ok()
            .filter(|n| !n.is_empty() && n.bytes().all(|c| c.is_ascii_graphic()));
        self.type_names.borrow_mut().insert(ty, name.clone());
        name
    }

    /// `ob_size` of a variable-size object.
    pub fn var_size(&self, obj: u64) -> Result<i64, String> {
        Ok(self.r.u64(obj.wrapping_add(self.var_size))? as i64)
    }

    /// The contents of a `bytes` (3.x) or `str` (2.7) object, at most `max`.
    pub fn bytes(&self, obj: u64, max: usize) -> Result<Vec<u8>, String> {
        let n = self.var_size(obj)?;
        if n < 0 || n as usize > super::mem::MAX_READ {
            return Err(format!("implausible bytes size {n} at {obj:#x}"));
        }
        self.r
            .bytes(obj.wrapping_add(self.bytes_data), (n as usize).min(max))
    }

    /// A text object: `str` on 3.x; `str` or `unicode` on 2.7.
    pub fn string(&self, obj: u64) -> Result<String, String> {
        if obj == 0 {
            return Err("NULL string".into());
        }
        if self.py2 {
            return match self.type_name(obj).as_deref() {
                Some("unicode") => self.unicode_py2(obj),
                _ => Ok(String::from_utf8_lossy(&self.bytes(obj, MAX_STR)?).into_owned()),
            };
        }
        self.unicode_py3(obj)
    }

    fn unicode_py2(&self, obj: u64) -> Result<String, String> {
        let (raw, kind, _) = self.unicode_raw_py2(obj, MAX_STR)?;
        Ok(decode_kind(&raw, kind))
    }

    fn unicode_raw_py2(&self, obj: u64, max: usize) -> Result<(Vec<u8>, u8, usize), String> {
        let len = self.r.u64(obj.wrapping_add(self.uni_length))? as usize;
        if len > super::mem::MAX_READ {
            return Err(format!("implausible string length {len} at {obj:#x}"));
        }
        let data = self.r.u64(obj.wrapping_add(self.uni_data))?;
        let n = len.min(max);
        let raw = self.r.bytes(data, n * self.uni_char_size as usize)?;
        Ok((raw, self.uni_char_size as u8, len))
    }

    fn unicode_py3(&self, obj: u64) -> Result<String, String> {
        let (raw, kind, _) = self.unicode_raw_py3(obj, MAX_STR)?;
        Ok(decode_kind(&raw, kind))
    }

    /// The first `max` code units of a 3.x `str`, their kind, and the
    /// string's length.
    fn unicode_raw_py3(&self, obj: u64, max: usize) -> Result<(Vec<u8>, u8, usize), String> {
        // One read covers the header of every layout.
        let head = self.r.bytes(obj, self.uni_compact_size as usize + 8)?;
        let len = le_u64(&head, self.uni_length as usize) as usize;
        let state = le_u32(&head, self.uni_state as usize);
        // interned:2, kind:3, compact:1, ascii:1 (3.3–3.13).
        let kind = ((state >> consts::UNICODE_KIND_SHIFT) & 7) as u8;
        let compact = state & (1 << consts::UNICODE_COMPACT_BIT) != 0;
        let ascii = state & (1 << consts::UNICODE_ASCII_BIT) != 0;
        if !matches!(kind, 1 | 2 | 4) {
            return Err(format!("string at {obj:#x} has kind {kind}"));
        }
        if len > super::mem::MAX_READ {
            return Err(format!("implausible string length {len} at {obj:#x}"));
        }
        let data = if compact && ascii {
            obj.wrapping_add(self.uni_ascii_size)
        } else if compact {
            obj.wrapping_add(self.uni_compact_size)
        } else {
            le_u64(&head, self.uni_data as usize)
        };
        let n = len.min(max);
        let raw = self.r.bytes(data, n * kind as usize)?;
        Ok((raw, kind, len))
    }

    /// The first `max` code units of a text object (`str` on 3.x, `unicode`
    /// on 2.7) as they are stored, lone surrogates included, and its
    /// length in code units; with whether they are 2.7's UCS-2, where a
    /// surrogate pair is one character.
    pub fn code_units(&self, obj: u64, max: usize) -> Result<(Vec<u32>, usize, bool), String> {
        let (raw, kind, len) = if self.py2 {
            self.unicode_raw_py2(obj, max)?
        } else {
            self.unicode_raw_py3(obj, max)?
        };
        let units = match kind {
            1 => raw.iter().map(|&b| b as u32).collect(),
            2 => raw
                .chunks_exact(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]) as u32)
                .collect(),
            _ => raw
                .chunks_exact(4)
                .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        };
        Ok((units, len, self.py2 && kind == 2))
    }
}

/// Latin-1 (1), UCS-2 (2) or UCS-4 (4) code units to a Rust string.
pub fn decode_kind(raw: &[u8], kind: u8) -> String {
    match kind {
        1 => raw.iter().map(|&b| b as char).collect(),
        2 => raw
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .map(|u| char::from_u32(u as u32).unwrap_or('\u{fffd}'))
            .collect(),
        _ => raw
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .map(|u| char::from_u32(u).unwrap_or('\u{fffd}'))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::decode_kind;

    #[test]
    fn kinds_decode_to_utf8() {
        assert_eq!(decode_kind(&[0x6e, 0xe4], 1), "nä");
        assert_eq!(decode_kind(&[0xbb, 0x03], 2), "λ");
        assert_eq!(decode_kind(&[0x00, 0xf6, 0x01, 0x00], 4), "😀");
        // Lone surrogates (UCS-2) and out-of-range UCS-4 become U+FFFD.
        assert_eq!(decode_kind(&[0x00, 0xd8], 2), "\u{fffd}");
        assert_eq!(decode_kind(&[0xff, 0xff, 0xff, 0xff], 4), "\u{fffd}");
    }
}
