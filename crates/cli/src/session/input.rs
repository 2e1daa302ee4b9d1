//! Reading the lines the target asks for: with rustyline (history, line
//! editing, Tab completion answered by the target) on a terminal, plainly
//! from stdin otherwise (`echo 'print(1)' | pyattach PID`).
//!
//! Lines go to the target one at a time, as CPython's classic prompt
//! (`code.InteractiveConsole`, and the readline prompt of 3.12 and
//! before) takes them: typeahead, a paste and a bracketed paste alike run
//! line by line, each under the "more input?" rule, never compiled as one
//! block (3.13's new REPL does that; the classic rule is the one every
//! version shares). Nothing read is dropped: rustyline keeps what it read
//! past a line for the next one (its `buffer-redux` feature), and a
//! multi-line paste is handed out a line per request.

use std::collections::VecDeque;
use std::io::BufRead;
use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use inject::run::{Channel, ToTarget};
use rustyline::completion::Completer;
use rustyline::error::ReadlineError;
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::history::DefaultHistory;
use rustyline::validate::Validator;
use rustyline::{CompletionType, Config, Context, Editor, Helper};

pub enum Line {
    Text(String),
    Interrupted,
    Eof,
}

enum Source {
    Editor {
        ed: Box<Editor<TargetCompleter, DefaultHistory>>,
        history: Option<PathBuf>,
    },
    Plain,
}

pub struct Input {
    source: Source,
    /// The lines of a multi-line paste not yet handed out.
    pending: VecDeque<String>,
    /// Lines read so far (for messages).
    count: u64,
    /// Lines skipped as not UTF-8 (the messages stop after a few).
    skipped: u64,
}

/// After this many messages about lines that are not UTF-8, one says that
/// further ones are skipped without a message (200 KB of binary noise
/// must not bury the terminal).
const SKIP_MESSAGES: u64 = 5;

impl Input {
    pub fn new(
        tty: bool,
        repl: bool,
        writer: Arc<Mutex<Channel>>,
        completions: mpsc::Receiver<Vec<String>>,
    ) -> Input {
        let source = if tty {
            editor(repl, writer, completions)
        } else {
            Source::Plain
        };
        Input {
            source,
            pending: VecDeque::new(),
            count: 0,
            skipped: 0,
        }
    }

    /// A line for the target. `echoed`: the prompt is already on screen
    /// (printed by the target's code).
    pub fn read(&mut self, prompt: &str, echoed: bool) -> Line {
        // The rest of a paste is on screen already.
        if let Some(l) = self.pending.pop_front() {
            return Line::Text(l);
        }
        loop {
            let got = match &mut self.source {
                Source::Plain => read_plain(),
                Source::Editor { ed, .. } => read_editor(ed, prompt, echoed),
            };
            match got {
                Got::Text(text) => {
                    self.count += 1;
                    let mut lines = split_lines(&text);
                    let first = lines.pop_front().unwrap_or_default();
                    self.pending = lines;
                    return Line::Text(first);
                }
                Got::NotUtf8(e) => {
                    self.count += 1;
                    self.skipped += 1;
                    if self.skipped <= SKIP_MESSAGES {
                        eprintln!(
                            "pyattach: input line {} is not valid UTF-8 ({e}); it was not sent",
                            self.count
                        );
                    }
                    if self.skipped == SKIP_MESSAGES {
                        eprintln!("pyattach: further lines that are not UTF-8 are skipped without a message");
                    }
                }
                Got::Interrupted => return Line::Interrupted,
                Got::Eof => return Line::Eof,
            }
        }
    }

    pub fn save_history(&mut self) {
        if let Source::Editor {
            ed,
            history: Some(h),
        } = &mut self.source
        {
            let _ = ed.save_history(h);
        }
    }
}

fn editor(
    repl: bool,
    writer: Arc<Mutex<Channel>>,
    completions: mpsc::Receiver<Vec<String>>,
) -> Source {
    // As readline: Tab completes the common prefix, a second Tab lists
    // the candidates. Bracketed paste stays on (rustyline's default), so
    // a pasted Tab is text, not a completion request.
    let config = Config::builder()
        .completion_type(CompletionType::List)
        .build();
    let Ok(mut ed) = Editor::<TargetCompleter, DefaultHistory>::with_config(config) else {
        return Source::Plain;
    };
    ed.set_helper(Some(TargetCompleter {
        writer,
        completions: Mutex::new(completions),
    }));
    let history = repl
        .then(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".pyattach_history")))
        .flatten();
    if let Some(h) = &history {
        let _ = ed.load_history(h);
    }
    Source::Editor {
        ed: Box::new(ed),
        history,
    }
}

enum Got {
    Text(String),
    NotUtf8(String),
    Interrupted,
    Eof,
}

fn read_plain() -> Got {
    let mut buf = Vec::new();
    loop {
        match std::io::stdin().lock().read_until(b'\n', &mut buf) {
            Ok(0) => return Got::Eof,
            Ok(_) => break,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                eprintln!("pyattach: reading stdin: {e}");
                return Got::Eof;
            }
        }
    }
    if buf.last() == Some(&b'\n') {
        buf.pop();
    }
    match String::from_utf8(buf) {
        Ok(s) => Got::Text(s),
        Err(e) => Got::NotUtf8(describe_bad_utf8(e.as_bytes(), e.utf8_error())),
    }
}

fn read_editor(
    ed: &mut Editor<TargetCompleter, DefaultHistory>,
    prompt: &str,
    echoed: bool,
) -> Got {
    if echoed && !prompt.is_empty() {
        // Rewrite the prompt in place so the editor knows it.
        print!("\r");
    }
    match ed.readline(prompt) {
        Ok(l) => {
            if !l.trim().is_empty() {
                let _ = ed.add_history_entry(l.as_str());
            }
            Got::Text(l)
        }
        Err(ReadlineError::Interrupted) => Got::Interrupted,
        // rustyline stops at the first byte that cannot start or continue
        // a UTF-8 character; what it had read of the line is gone.
        Err(ReadlineError::Io(e)) if e.kind() == std::io::ErrorKind::InvalidData => {
            println!();
            Got::NotUtf8("a byte that is not UTF-8 was typed".into())
        }
        Err(ReadlineError::Eof) => Got::Eof,
        Err(e) => {
            eprintln!("pyattach: reading the terminal: {e}");
            Got::Eof
        }
    }
}

/// Where in `line` the first bad byte is, for the message.
fn describe_bad_utf8(line: &[u8], e: std::str::Utf8Error) -> String {
    let at = e.valid_up_to();
    match line.get(at) {
        Some(b) => format!("byte {b:#04x} at column {}", at + 1),
        None => "it ends inside a character".into(),
    }
}

/// The lines of what was read (without its own terminator): one, or
/// several for a paste in the editor (each `\n` in it ends a line, and the
/// Enter that submitted it ends the last one, as if it had been typed).
fn split_lines(text: &str) -> VecDeque<String> {
    text.split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l).to_string())
        .collect()
}

/// Tab completion answered by the target (names in its `__main__`,
/// attributes of its objects).
pub struct TargetCompleter {
    writer: Arc<Mutex<Channel>>,
    completions: Mutex<mpsc::Receiver<Vec<String>>>,
}

impl Completer for TargetCompleter {
    type Candidate = String;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _ctx: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<String>)> {
        let start = line[..pos]
            .rfind(|c: char| !(c.is_alphanumeric() || c == '_' || c == '.'))
            .map_or(0, |i| i + 1);
        let text = &line[start..pos];
        let rx = self.completions.lock().unwrap();
        while rx.try_recv().is_ok() {}
        if self
            .writer
            .lock()
            .unwrap()
            .send(&ToTarget::Complete(text.to_string()))
            .is_err()
        {
            return Ok((start, Vec::new()));
        }
        let found = rx.recv_timeout(Duration::from_secs(2)).unwrap_or_default();
        Ok((start, shown(found)))
    }
}

/// The candidates that may reach the terminal: the target answers with
/// names from its own objects (a `__dir__` may return any string), and a
/// candidate is both listed and typed into the line, so one holding a
/// control character (an escape sequence, C1, DEL) is left out, never
/// shown; no Python name holds one.
fn shown(mut candidates: Vec<String>) -> Vec<String> {
    candidates.retain(|c| !c.chars().any(char::is_control));
    candidates
}

impl Hinter for TargetCompleter {
    type Hint = String;
}
impl Highlighter for TargetCompleter {}
impl Validator for TargetCompleter {}
impl Helper for TargetCompleter {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_with_control_characters_are_left_out() {
        let got = shown(vec![
            "evil_name".into(),
            "ev\x1b]0;PWNED\x07il".into(),
            "c1\u{9b}31m".into(),
            "del\x7f".into(),
            "caf\u{e9}".into(),
        ]);
        assert_eq!(got, ["evil_name", "caf\u{e9}"]);
    }

    #[test]
    fn a_paste_is_split_into_the_lines_typed() {
        assert_eq!(split_lines("x = 1"), ["x = 1"]);
        // A pasted block with its blank line, then Enter: the final empty
        // line is what Enter adds after the paste's own newline.
        assert_eq!(
            split_lines("def f():\n    return 1\n\nf()\n"),
            ["def f():", "    return 1", "", "f()", ""]
        );
        assert_eq!(split_lines("a\r\nb"), ["a", "b"]);
    }

    #[test]
    fn a_bad_byte_is_located() {
        let b = b"print(\xff)".to_vec();
        let e = String::from_utf8(b).unwrap_err();
        assert_eq!(
            describe_bad_utf8(e.as_bytes(), e.utf8_error()),
            "byte 0xff at column 7"
        );
    }
}
