//! The Python text handed to `PyRun_SimpleString`: the embedded bootstrap
//! (`bootstrap.py`) wrapped so that it runs in a fresh namespace and can
//! never raise into the target's code.

/// The bootstrap's source, embedded in the binary.
pub const SOURCE: &str = include_str!("bootstrap.py");

/// What the bootstrap does once it runs in the target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Run this code in `__main__`'s globals in the injected thread.
    Run { code: String },
    /// Open an interactive session in a thread of its own.
    Repl,
}

/// How the bootstrap reaches pyattach.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChannelParams {
    /// A `socketpair`; pyattach takes its end with `pidfd_getfd`.
    Pair,
    /// Connect to this unix socket (a path in the target's mount namespace).
    Unix { path: String },
}

/// Everything the bootstrap is told.
#[derive(Clone, Debug)]
pub struct Params {
    /// Unique per injection: the bootstrap runs once per nonce, and pyattach
    /// recognises its channel by it.
    pub nonce: String,
    /// Secret the bootstrap sends back in its hello (checked on the unix
    /// socket, where someone else could connect).
    pub token: String,
    pub mode: Mode,
    pub channel: ChannelParams,
    /// How long the bootstrap waits for pyattach's ack before it gives up
    /// and leaves (pyattach may have been killed).
    pub wait_secs: f64,
}

/// The text to pass to `PyRun_SimpleString`. It defines no name in
/// `__main__` and a bare `except:` catches everything, including old-style
/// class exceptions of Python 2.
pub fn script(p: &Params) -> String {
    // The compiled bootstrap is kept in sys._pyattach_code under a hash of
    // its source: compiling it costs milliseconds with the GIL held, and
    // every later injection of the same pyattach reuses it.
    format!(
        "try:\n exec((lambda d,k,s:d.get(k) or d.setdefault(k,compile(s,'<pyattach>','exec',0,True)))\
(__import__('sys').__dict__.setdefault('_pyattach_code',{{}}),{key},{src}),\
{{'__name__':'__pyattach__','P':{params}}})\nexcept:\n pass\n",
        key = py_str(source_key().as_bytes()),
        src = py_str(SOURCE.as_bytes()),
        params = params_literal(p),
    )
}

/// [`script`] without the bootstrap's source: the text takes it from the
/// target's own memory at `source_at` (where pyattach wrote [`SOURCE`],
/// readable, [`SOURCE`]`.len()` bytes), and only when no earlier injection
/// left it compiled in the target. Compiling a wrapper that holds the 19 KB
/// source as a literal took ~0.3 ms with the GIL held on every injection.
/// The address is written at a fixed width, so the text's length does not
/// depend on it.
pub fn script_at(p: &Params, source_at: u64) -> String {
    // /proc/self/mem read unbuffered (a buffered read would run past the
    // pages); ctypes where /proc is not mounted.
    format!(
        "try:
 import sys
 d=sys.__dict__.setdefault('_pyattach_code',{{}})
 c=d.get({key})
 if c is None:
  a,n=0x{source_at:016x},{len}
  s=b''
  try:
   f=open('/proc/self/mem','rb',0)
   try:
    f.seek(a)
    while len(s)<n:
     b=f.read(n-len(s))
     if not b:
      break
     s+=b
   finally:
    f.close()
  except Exception:
   s=b''
  if len(s)!=n:
   import ctypes
   s=ctypes.string_at(a,n)
  c=d.setdefault({key},compile(s,'<pyattach>','exec',0,True))
 exec(c,{{'__name__':'__pyattach__','P':{params}}})
except:
 pass
",
        key = py_str(source_key().as_bytes()),
        len = SOURCE.len(),
        params = params_literal(p),
    )
}

/// The bootstrap's `P`: a Python dict literal of the session's parameters,
/// the same for both ways of passing the source.
fn params_literal(p: &Params) -> String {
    let (mode, code) = match &p.mode {
        Mode::Run { code } => ("run", code.as_str()),
        Mode::Repl => ("repl", ""),
    };
    let (chan, path) = match &p.channel {
        ChannelParams::Pair => ("pair", ""),
        ChannelParams::Unix { path } => ("unix", path.as_str()),
    };
    format!(
        "{{'nonce':{nonce},'token':{token},'mode':{mode},'chan':{chan},'path':{path},'code':b{code},'wait':{wait:?}}}",
        nonce = py_str(p.nonce.as_bytes()),
        token = py_str(p.token.as_bytes()),
        mode = py_str(mode.as_bytes()),
        chan = py_str(chan.as_bytes()),
        path = py_str(path.as_bytes()),
        code = py_str(code.as_bytes()),
        wait = p.wait_secs,
    )
}

/// FNV-1a of the bootstrap's source: the key of its compiled code in the
/// target (a changed bootstrap never reuses an old one).
fn source_key() -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in SOURCE.as_bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// A single-quoted Python literal of `bytes`, pure ASCII, valid as `str`
/// on 2.7 and 3.x (and as `bytes` with a `b` prefix).
fn py_str(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() + 2);
    out.push('\'');
    for &c in bytes {
        match c {
            b'\\' => out.push_str("\\\\"),
            b'\'' => out.push_str("\\'"),
            b'\n' => out.push_str("\\n"),
            0x20..=0x7e => out.push(c as char),
            _ => out.push_str(&format!("\\x{c:02x}")),
        }
    }
    out.push('\'');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_escape_everything_but_printable_ascii() {
        assert_eq!(py_str(b"a'b\\c\n\x00\xc3\xa9"), r"'a\'b\\c\n\x00\xc3\xa9'");
    }

    #[test]
    fn script_is_ascii_and_holds_no_nul() {
        let s = script(&Params {
            nonce: "n".into(),
            token: "t".into(),
            mode: Mode::Run {
                code: "print('é')\0".into(),
            },
            channel: ChannelParams::Pair,
            wait_secs: 2.0,
        });
        assert!(s.is_ascii());
        assert!(!s.contains('\0'));
        assert!(s.starts_with("try:\n exec((lambda d,k,s:"));
    }

    #[test]
    fn script_at_holds_no_source_and_its_length_does_not_depend_on_the_address() {
        let p = Params {
            nonce: "n".into(),
            token: "t".into(),
            mode: Mode::Repl,
            channel: ChannelParams::Pair,
            wait_secs: 2.0,
        };
        let (a, b) = (script_at(&p, 0), script_at(&p, 0x7fff_1234_5000));
        assert_eq!(a.len(), b.len());
        assert!(b.contains("0x00007fff12345000"));
        assert!(a.len() < 2000 && a.is_ascii() && !a.contains('\0'));
    }
}
