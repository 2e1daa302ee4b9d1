//! Python's own `repr()` of simple values, from what was read of them:
//! the text a user would see in the target itself is evidence in an
//! incident, so each rule below is CPython's (`Objects/bytesobject.c`
//! `PyBytes_Repr`, `Objects/unicodeobject.c` `unicode_repr`, 2.7's
//! `unicodeescape_string`, `Python/pystrtod.c` `format_float_short`,
//! `Objects/longobject.c`), not an approximation of it.
//!
//! Printable characters of a 3.x `str` are decided by Unicode general
//! category, as `str.isprintable` does; the table is the crate's (Unicode
//! 16), so a character assigned after the target's Unicode version (say a
//! Unicode 15 emoji in a 3.8 target) shows as itself where that target
//! would escape it.

use unicode_general_category::{get_general_category, GeneralCategory as C};

const HEX: &[u8; 16] = b"0123456789abcdef";

/// The quote `repr` picks: `'` unless the text has a `'` and no `"`.
fn quote_for(units: impl Iterator<Item = u32> + Clone) -> u32 {
    let has = |c: u32| units.clone().any(|u| u == c);
    if has('\'' as u32) && !has('"' as u32) {
        '"' as u32
    } else {
        '\'' as u32
    }
}

fn push_hex(out: &mut String, prefix: &str, v: u32, digits: u32) {
    out.push_str(prefix);
    for i in (0..digits).rev() {
        out.push(HEX[(v >> (i * 4) & 0xf) as usize] as char);
    }
}

/// Escapes shared by every flavour: the quote, backslash, `\t\n\r`, and
/// the other ASCII controls and DEL as `\xhh`. `None` for printable ASCII
/// and everything above DEL.
fn push_common(out: &mut String, c: u32, quote: u32) -> bool {
    match c {
        _ if c == quote || c == '\\' as u32 => {
            out.push('\\');
            out.push(char::from_u32(c).unwrap_or('?'));
        }
        0x09 => out.push_str("\\t"),
        0x0a => out.push_str("\\n"),
        0x0d => out.push_str("\\r"),
        0..=0x1f | 0x7f => push_hex(out, "\\x", c, 2),
        _ => return false,
    }
    true
}

/// A byte (or a 2.7 `unicode` character below 256): printable ASCII as
/// itself, the rest escaped.
fn push_byte(out: &mut String, c: u32, quote: u32) {
    if !push_common(out, c, quote) {
        if c < 0x7f {
            out.push(c as u8 as char);
        } else {
            push_hex(out, "\\x", c, 2);
        }
    }
}

/// `repr` of `bytes` (3.x, `prefix` "b") or of a 2.7 `str` (`prefix` "").
/// `complete` is false when `b` is only the start of the object: the
/// closing quote is then left off (the caller marks the cut).
pub fn bytes(b: &[u8], prefix: &str, complete: bool) -> String {
    let q = quote_for(b.iter().map(|&c| c as u32));
    let mut out = String::with_capacity(b.len() + 3);
    out.push_str(prefix);
    out.push(q as u8 as char);
    for &c in b {
        push_byte(&mut out, c as u32, q);
    }
    if complete {
        out.push(q as u8 as char);
    }
    out
}

/// `str.isprintable` of one code point (`Py_UNICODE_ISPRINTABLE`): not
/// in Cc, Cf, Cs, Co, Cn, Zl, Zp, Zs, except the space.
pub fn printable(c: u32) -> bool {
    if c == ' ' as u32 {
        return true;
    }
    // Lone surrogates are no `char`: category Cs.
    let Some(ch) = char::from_u32(c) else {
        return false;
    };
    !matches!(
        get_general_category(ch),
        C::Control
            | C::Format
            | C::Surrogate
            | C::PrivateUse
            | C::Unassigned
            | C::LineSeparator
            | C::ParagraphSeparator
            | C::SpaceSeparator
    )
}

fn push_escaped_wide(out: &mut String, c: u32) {
    if c <= 0xff {
        push_hex(out, "\\x", c, 2);
    } else if c <= 0xffff {
        push_hex(out, "\\u", c, 4);
    } else {
        push_hex(out, "\\U", c, 8);
    }
}

/// `repr` of a 3.x `str` given its code points (lone surrogates
/// included, which a Rust string cannot hold).
pub fn str3(units: &[u32], complete: bool) -> String {
    let q = quote_for(units.iter().copied());
    let mut out = String::with_capacity(units.len() + 2);
    out.push(q as u8 as char);
    for &c in units {
        if push_common(&mut out, c, q) {
            continue;
        }
        match char::from_u32(c) {
            Some(ch) if c < 0x7f || printable(c) => out.push(ch),
            _ => push_escaped_wide(&mut out, c),
        }
    }
    if complete {
        out.push(q as u8 as char);
    }
    out
}

/// `repr` of a 2.7 `unicode` given its code units: UCS-4, or UCS-2 on a
/// narrow build (`narrow`), where a surrogate pair is one `\U` escape.
/// Everything outside printable ASCII is escaped.
pub fn unicode2(units: &[u32], narrow: bool, complete: bool) -> String {
    let q = quote_for(units.iter().copied());
    let mut out = String::with_capacity(units.len() + 3);
    out.push('u');
    out.push(q as u8 as char);
    let mut i = 0;
    while i < units.len() {
        let c = units[i];
        i += 1;
        if narrow && (0xd800..0xdc00).contains(&c) {
            if let Some(&lo) = units.get(i).filter(|&&lo| (0xdc00..0xe000).contains(&lo)) {
                i += 1;
                let cp = 0x10000 + ((c - 0xd800) << 10) + (lo - 0xdc00);
                push_hex(&mut out, "\\U", cp, 8);
                continue;
            }
        }
        if c >= 0x10000 {
            push_hex(&mut out, "\\U", c, 8);
        } else if c >= 0x100 {
            push_hex(&mut out, "\\u", c, 4);
        } else {
            push_byte(&mut out, c, q);
        }
    }
    if complete {
        out.push(q as u8 as char);
    }
    out
}

/// `repr` of a float with `float_repr_style == 'short'` (2.7 and every
/// 3.x on x86-64): the shortest digits that round-trip (Rust's `{:e}`
/// gives those), positional when the decimal exponent is in [-4, 16),
/// else `1e+100`, `1.5e-05`; integral values keep a `.0`.
pub fn float(f: f64) -> String {
    if f.is_nan() {
        return "nan".into();
    }
    if f.is_infinite() {
        return if f < 0.0 { "-inf" } else { "inf" }.into();
    }
    let sci = format!("{:e}", f.abs());
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(|c| c.is_ascii_digit()).collect();
    let mut out = String::new();
    if f.is_sign_negative() {
        out.push('-');
    }
    if (-4..16).contains(&exp) {
        if exp >= 0 {
            let int_len = exp as usize + 1;
            if digits.len() <= int_len {
                out.push_str(&digits);
                out.extend(std::iter::repeat_n('0', int_len - digits.len()));
                out.push_str(".0");
            } else {
                out.push_str(&digits[..int_len]);
                out.push('.');
                out.push_str(&digits[int_len..]);
            }
        } else {
            out.push_str("0.");
            out.extend(std::iter::repeat_n('0', (-exp - 1) as usize));
            out.push_str(&digits);
        }
    } else {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        out.push('e');
        out.push(if exp < 0 { '-' } else { '+' });
        out.push_str(&format!("{:02}", exp.unsigned_abs()));
    }
    out
}

/// The decimal text of an int given its magnitude in CPython's 30-bit
/// digits, least significant first.
pub fn int(negative: bool, digits: &[u32]) -> String {
    // Repeated division by 10^9 of the base-2^30 number.
    let mut n: Vec<u32> = digits.iter().map(|d| d & 0x3fff_ffff).collect();
    while n.last() == Some(&0) {
        n.pop();
    }
    let mut chunks = Vec::new();
    while !n.is_empty() {
        let mut rem: u64 = 0;
        for d in n.iter_mut().rev() {
            let cur = (rem << 30) | *d as u64;
            *d = (cur / 1_000_000_000) as u32;
            rem = cur % 1_000_000_000;
        }
        chunks.push(rem as u32);
        while n.last() == Some(&0) {
            n.pop();
        }
    }
    let mut out = String::new();
    if negative && !chunks.is_empty() {
        out.push('-');
    }
    match chunks.split_last() {
        None => out.push('0'),
        Some((top, rest)) => {
            out.push_str(&top.to_string());
            for c in rest.iter().rev() {
                out.push_str(&format!("{c:09}"));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u(s: &str) -> Vec<u32> {
        s.chars().map(|c| c as u32).collect()
    }

    #[test]
    fn bytes_as_python_prints_them() {
        assert_eq!(bytes(b"\xff\x7f\x80", "b", true), r"b'\xff\x7f\x80'");
        assert_eq!(bytes(b"it's", "b", true), r#"b"it's""#);
        assert_eq!(bytes(b"'\"", "b", true), r#"b'\'"'"#);
        assert_eq!(bytes(b"\t\n\r\\\x00~", "b", true), r"b'\t\n\r\\\x00~'");
        assert_eq!(bytes(b"\xe9", "", true), r"'\xe9'");
        assert_eq!(bytes(b"ab", "b", false), "b'ab");
    }

    #[test]
    fn str_as_python_prints_it() {
        assert_eq!(str3(&u("wé λ😀"), true), "'wé λ😀'");
        assert_eq!(
            str3(&u("\x7f\u{80}\u{a0}\u{ad}"), true),
            r"'\x7f\x80\xa0\xad'"
        );
        assert_eq!(
            str3(&u("\u{2028}\u{2029}\u{3000}"), true),
            r"'\u2028\u2029\u3000'"
        );
        assert_eq!(str3(&[0xd800, 0x61], true), r"'\ud800a'");
        assert_eq!(str3(&u("\u{e000}\u{f0000}"), true), r"'\ue000\U000f0000'");
        assert_eq!(str3(&u("it's"), true), r#""it's""#);
        assert_eq!(str3(&u("'\""), true), r#"'\'"'"#);
        assert_eq!(str3(&u("\0\t\\"), true), r"'\x00\t\\'");
    }

    #[test]
    fn unicode_of_python_2() {
        assert_eq!(
            unicode2(&u("é€😀a"), false, true),
            r"u'\xe9\u20ac\U0001f600a'"
        );
        assert_eq!(
            unicode2(&[0xd83d, 0xde00, 0xd800], true, true),
            r"u'\U0001f600\ud800'"
        );
        assert_eq!(unicode2(&u("it's\x7f"), false, true), r#"u"it's\x7f""#);
    }

    #[test]
    fn floats_as_python_prints_them() {
        for (f, want) in [
            (f64::NAN, "nan"),
            (f64::INFINITY, "inf"),
            (f64::NEG_INFINITY, "-inf"),
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (1.5, "1.5"),
            (1e100, "1e+100"),
            (1e-5, "1e-05"),
            (1.5e-5, "1.5e-05"),
            (1e-4, "0.0001"),
            (0.1, "0.1"),
            (1e15, "1000000000000000.0"),
            (1e16, "1e+16"),
            (123456789012345680.0, "1.2345678901234568e+17"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
            (5e-324, "5e-324"),
            (-2.5e-7, "-2.5e-07"),
            (12345.678, "12345.678"),
        ] {
            assert_eq!(float(f), want, "{f:e}");
        }
    }

    #[test]
    fn ints_of_any_size() {
        assert_eq!(int(false, &[]), "0");
        assert_eq!(int(true, &[7]), "-7");
        // 2**40 = 1024 * 2**30.
        assert_eq!(int(false, &[0, 1024]), "1099511627776");
        // 10**30 in 30-bit digits.
        let mut d = Vec::new();
        let mut x: u128 = 10u128.pow(30);
        while x > 0 {
            d.push((x & 0x3fff_ffff) as u32);
            x >>= 30;
        }
        assert_eq!(int(true, &d), format!("-{}", 10u128.pow(30)));
    }
}
