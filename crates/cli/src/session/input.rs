//! Reading the lines the target asks for: with rustyline (history, line
//! editing, Tab completion answered by the target) on a terminal, plainly
//! from stdin otherwise (`echo 'print(1)' | pyattach PID`).

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
use rustyline::{Context, Editor, Helper};

pub enum Line {
    Text(String),
    Interrupted,
    Eof,
}

pub enum Input {
    Editor {
        ed: Box<Editor<TargetCompleter, DefaultHistory>>,
        history: Option<PathBuf>,
    },
    Plain,
}

impl Input {
    pub fn new(
        tty: bool,
        repl: bool,
        writer: Arc<Mutex<Channel>>,
        completions: mpsc::Receiver<Vec<String>>,
    ) -> Input {
        if !tty {
            return Input::Plain;
        }
        let Ok(mut ed) = Editor::<TargetCompleter, DefaultHistory>::new() else {
            return Input::Plain;
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
        Input::Editor {
            ed: Box::new(ed),
            history,
        }
    }

    /// A line for the target. `echoed`: the prompt is already on screen
    /// (printed by the target's code).
    pub fn read(&mut self, prompt: &str, echoed: bool) -> Line {
        match self {
            Input::Plain => {
                let mut s = String::new();
                match std::io::stdin().lock().read_line(&mut s) {
                    Ok(0) | Err(_) => Line::Eof,
                    Ok(_) => Line::Text(s),
                }
            }
            Input::Editor { ed, .. } => {
                if echoed && !prompt.is_empty() {
                    // Rewrite the prompt in place so the editor knows it.
                    print!("\r");
                }
                match ed.readline(prompt) {
                    Ok(l) => {
                        if !l.trim().is_empty() {
                            let _ = ed.add_history_entry(l.as_str());
                        }
                        Line::Text(l)
                    }
                    Err(ReadlineError::Interrupted) => Line::Interrupted,
                    Err(_) => Line::Eof,
                }
            }
        }
    }

    pub fn save_history(&mut self) {
        if let Input::Editor {
            ed,
            history: Some(h),
        } = self
        {
            let _ = ed.save_history(h);
        }
    }
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
        Ok((start, found))
    }
}

impl Hinter for TargetCompleter {
    type Hint = String;
}
impl Highlighter for TargetCompleter {}
impl Validator for TargetCompleter {}
impl Helper for TargetCompleter {}
