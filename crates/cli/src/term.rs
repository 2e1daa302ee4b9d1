//! Text that came from the target, made safe for the user's terminal.
//!
//! Everything pyattach reads from a target (thread and file names, reprs,
//! paths under `/proc/PID/root`, symbol names, what the bootstrap sends) is
//! written by a process that may be compromised, to a terminal whose user is
//! often root. A control character in it is an instruction to the terminal:
//! `ESC ] 0 ;` sets the window title, `ESC [ 2 J` clears the screen, OSC 52
//! writes the clipboard, and an 8-bit C1 byte such as 0x9b is a CSI of its
//! own on terminals that take them. So such characters are shown, never
//! sent: as `\x1b` (C0, DEL, and bytes that are not UTF-8) or `\u{9b}` (C1),
//! the way GNU `ls` quotes a file name holding them.
//!
//! Two grains: [`field`] for a value that stands on one line of pyattach's
//! own layout (a newline in a thread name would forge a line of the dump),
//! and [`text`] and [`Escaping`] for whole messages, which keep their
//! newlines and tabs.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::ser::{Formatter, PrettyFormatter};

/// `s` with every control character escaped, newline and tab included.
pub fn field(s: &str) -> Cow<'_, str> {
    escape(s, false)
}

/// `s` with every control character escaped but newline and tab.
pub fn text(s: &str) -> Cow<'_, str> {
    escape(s, true)
}

/// Bytes (maybe not UTF-8) as [`text`] would show them.
pub fn bytes(b: &[u8]) -> Cow<'_, str> {
    if let Ok(s) = std::str::from_utf8(b) {
        return text(s);
    }
    let mut out = String::with_capacity(b.len() + 16);
    for chunk in b.utf8_chunks() {
        out.push_str(&text(chunk.valid()));
        for byte in chunk.invalid() {
            let _ = write!(out, "\\x{byte:02x}");
        }
    }
    Cow::Owned(out)
}

fn unsafe_char(c: char, keep_layout: bool) -> bool {
    match c {
        '\n' | '\t' => !keep_layout,
        // C0 and DEL, then C1.
        '\0'..='\x1f' | '\x7f' | '\u{80}'..='\u{9f}' => true,
        _ => false,
    }
}

fn escape(s: &str, keep_layout: bool) -> Cow<'_, str> {
    if !s.chars().any(|c| unsafe_char(c, keep_layout)) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        if !unsafe_char(c, keep_layout) {
            out.push(c);
        } else if (c as u32) < 0x80 {
            let _ = write!(out, "\\x{:02x}", c as u32);
        } else {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        }
    }
    Cow::Owned(out)
}

static ESCAPE_OUTPUT: AtomicBool = AtomicBool::new(false);

/// `--escape-output`: what the user's own code and the prompt print is
/// escaped too (by default it passes through as a terminal would show it:
/// it is the user's output, colours and all).
pub fn set_escape_output(on: bool) {
    ESCAPE_OUTPUT.store(on, Ordering::Relaxed);
}

/// Output of the session's code: as it came, or as [`bytes`] shows it
/// with `--escape-output`.
pub fn output(b: &[u8]) -> Cow<'_, [u8]> {
    if ESCAPE_OUTPUT.load(Ordering::Relaxed) {
        match bytes(b) {
            Cow::Borrowed(s) => Cow::Borrowed(s.as_bytes()),
            Cow::Owned(s) => Cow::Owned(s.into_bytes()),
        }
    } else {
        Cow::Borrowed(b)
    }
}

/// A writer that passes on what it is given as [`bytes`] shows it: for
/// output that pyattach lays out without escape sequences of its own
/// (`info`, messages), so that no field of it can be forgotten.
pub struct Escaping<W: Write>(pub W);

impl<W: Write> Write for Escaping<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // `write!` hands over whole `str` pieces, so a character is never
        // cut between two calls.
        self.0.write_all(bytes(buf).as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

/// `value` as pretty JSON whose strings escape DEL and C1 too (`\u007f`,
/// `\u009b`): JSON itself escapes only C0, and `--json` output is read on
/// terminals as often as by programs. It still parses to the same strings.
pub fn write_json<W: Write, T: serde::Serialize>(w: &mut W, value: &T) -> io::Result<()> {
    let mut ser = serde_json::Serializer::with_formatter(&mut *w, SafeJson(PrettyFormatter::new()));
    value.serialize(&mut ser).map_err(io::Error::from)?;
    writeln!(w)
}

/// serde_json's pretty layout, with [`write_json`]'s string escapes.
struct SafeJson<'a>(PrettyFormatter<'a>);

impl Formatter for SafeJson<'_> {
    fn write_string_fragment<W: ?Sized + Write>(&mut self, w: &mut W, s: &str) -> io::Result<()> {
        let mut rest = s;
        while let Some(i) = rest.find(|c| matches!(c, '\x7f' | '\u{80}'..='\u{9f}')) {
            let c = rest[i..].chars().next().unwrap_or('\0');
            w.write_all(&rest.as_bytes()[..i])?;
            write!(w, "\\u{:04x}", c as u32)?;
            rest = &rest[i + c.len_utf8()..];
        }
        w.write_all(rest.as_bytes())
    }

    fn begin_array<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.begin_array(w)
    }
    fn end_array<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.end_array(w)
    }
    fn begin_array_value<W: ?Sized + Write>(&mut self, w: &mut W, first: bool) -> io::Result<()> {
        self.0.begin_array_value(w, first)
    }
    fn end_array_value<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.end_array_value(w)
    }
    fn begin_object<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.begin_object(w)
    }
    fn end_object<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.end_object(w)
    }
    fn begin_object_key<W: ?Sized + Write>(&mut self, w: &mut W, first: bool) -> io::Result<()> {
        self.0.begin_object_key(w, first)
    }
    fn begin_object_value<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.begin_object_value(w)
    }
    fn end_object_value<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.end_object_value(w)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_borrowed() {
        assert!(matches!(field("main.py:12 ünïcode"), Cow::Borrowed(_)));
        assert!(matches!(text("a\n\tb"), Cow::Borrowed(_)));
    }

    #[test]
    fn controls_are_shown_not_sent() {
        let evil = "evil\x1b]0;PWNED\x07\x1b[2Jname";
        assert_eq!(field(evil), "evil\\x1b]0;PWNED\\x07\\x1b[2Jname");
        assert_eq!(field("a\nb\tc\x7f"), "a\\x0ab\\x09c\\x7f");
        assert_eq!(text("a\nb\tc\r"), "a\nb\tc\\x0d");
        assert_eq!(field("x\u{9b}31m"), "x\\u{9b}31m");
    }

    #[test]
    fn bytes_that_are_not_utf8_are_escaped() {
        assert_eq!(bytes(b"ok\x9b2J\xff\n"), "ok\\x9b2J\\xff\n");
        assert_eq!(bytes("é\x1b".as_bytes()), "é\\x1b");
    }

    #[test]
    fn json_escapes_del_and_c1_and_still_round_trips() {
        let name = "a\x1b[2J\u{9b}1m\x7fé";
        let mut out = Vec::new();
        write_json(&mut out, &serde_json::json!({ "name": name })).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text, "{\n  \"name\": \"a\\u001b[2J\\u009b1m\\u007fé\"\n}\n");
        let back: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back["name"], name);
    }

    #[test]
    fn escaping_writer() {
        let mut w = Escaping(Vec::new());
        let name = "t\x1b[31m";
        writeln!(w, "name {name}").unwrap();
        assert_eq!(String::from_utf8(w.0).unwrap(), "name t\\x1b[31m\n");
    }
}
