//! The Python text handed to `PyRun_SimpleString`: the embedded bootstrap
//! (`bootstrap/*.py`) wrapped so that it runs in a fresh namespace and can
//! never raise into the target's code.

/// The bootstrap's source, embedded in the binary: one Python module kept
/// in several files by what each part does (see `bootstrap/session.py`'s
/// header for the protocol), concatenated in this order.
pub const SOURCE: &str = concat!(
    include_str!("bootstrap/signals.py"),
    include_str!("bootstrap/session.py"),
    include_str!("bootstrap/util.py"),
    include_str!("bootstrap/streams.py"),
    include_str!("bootstrap/run.py"),
    include_str!("bootstrap/repl.py"),
    include_str!("bootstrap/main.py"),
);

/// The length of the source's first part, `bootstrap/signals.py`, which
/// the loader compiles and runs first and alone: from its end on, signal
/// handlers wait while the rest is compiled and run (see [`load`]).
const FIRST_PART: usize = include_str!("bootstrap/signals.py").len();

/// What the bootstrap does once it runs in the target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Run this code in `__main__`'s globals, in the thread `runner` says.
    Run { code: String, runner: Runner },
    /// Open an interactive session in a thread of its own.
    Repl,
}

impl Mode {
    /// `--run CODE` as it runs by default: in a thread of its own.
    pub fn run(code: impl Into<String>) -> Mode {
        Mode::Run {
            code: code.into(),
            runner: Runner::OwnThread,
        }
    }
}

/// Which thread of the target runs `--run` code.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Runner {
    /// A thread the bootstrap starts for it; the thread that ran the
    /// bootstrap goes back to the application at once. Code that spins
    /// for seconds, or waits for a lock that thread holds, would
    /// otherwise stall that thread (often a server's accept loop).
    #[default]
    OwnThread,
    /// The thread that ran the bootstrap (the caught one), for code that
    /// needs its context: `--thread TID`, or pdb, which stops in the frame
    /// that thread was executing. It is held for as long as the code runs.
    Caught,
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

/// The parameters as the bootstrap's `start` reads them (see the top of
/// `bootstrap/session.py`): `nonce NUL token NUL mode NUL chan NUL path NUL wait NUL
/// code`. Read from the target's memory rather than written into the text:
/// compiling a dict literal of them (and of the code to run, however long)
/// held the GIL for as long again as the rest of the text.
pub fn params_blob(p: &Params) -> Vec<u8> {
    let (mode, code) = match &p.mode {
        Mode::Run {
            code,
            runner: Runner::OwnThread,
        } => ("run", code.as_str()),
        Mode::Run {
            code,
            runner: Runner::Caught,
        } => ("run-here", code.as_str()),
        Mode::Repl => ("repl", ""),
    };
    let (chan, path) = match &p.channel {
        ChannelParams::Pair => ("pair", ""),
        ChannelParams::Unix { path } => ("unix", path.as_str()),
    };
    let wait = format!("{:?}", p.wait_secs);
    let mut out = Vec::new();
    for field in [
        p.nonce.as_str(),
        p.token.as_str(),
        mode,
        chan,
        path,
        wait.as_str(),
    ] {
        out.extend_from_slice(field.as_bytes());
        out.push(0);
    }
    out.extend_from_slice(code.as_bytes());
    out
}

/// The text to pass to `PyRun_SimpleString`, self-contained: the
/// bootstrap's source and the parameters are literals in it. Slow to
/// compile (19 KB) the first time in a process, but needs nothing else;
/// for tests that have the target run the text itself.
pub fn script(p: &Params) -> String {
    let blob = format!("b{}", py_str(&params_blob(p)));
    let loader = format!(
        "{prelude}{load}start(*A)\n",
        prelude = loader_prelude(),
        load = load(&py_str(SOURCE.as_bytes())),
    );
    entry(&format!("{blob},-1"), &loader)
}

/// The length of [`payload`]'s bytes (they do not depend on the address).
pub fn payload_len(p: &Params) -> usize {
    payload(p, 0).len()
}

/// What pyattach writes into the target at address `at`, for
/// `PyRun_SimpleString(at)`: the text, its NUL, the parameters' blob
/// ([`params_blob`]) and the bootstrap's source ([`SOURCE`]).
///
/// The text calls the bootstrap's `start`, compiled and defined by an
/// earlier injection of this pyattach, with the blob's address and
/// length; only when there is none yet does it read the source from
/// memory, compile it and define it (milliseconds, once per process). So
/// the text is short and the same for every injection (a few tens of
/// microseconds to compile, with the GIL held), whatever the code to run.
/// It binds no name in `__main__`, whose globals `PyRun_SimpleString`
/// runs it in, and lets no exception out. Addresses and lengths are
/// written at a fixed width, in hexadecimal (a decimal with leading zeros
/// is octal to Python 2 and an error to Python 3).
pub fn payload(p: &Params, at: u64) -> Vec<u8> {
    let blob = params_blob(p);
    // The text's length does not depend on the addresses.
    let text_len = |blob_at: u64, src_at: u64| text_at(blob_at, blob.len(), src_at).len();
    let n = text_len(0, 0);
    let blob_at = at + n as u64 + 1;
    let src_at = blob_at + blob.len() as u64;
    let text = text_at(blob_at, blob.len(), src_at);
    debug_assert_eq!(text.len(), n);
    let mut out = Vec::with_capacity(n + 1 + blob.len() + SOURCE.len());
    out.extend_from_slice(text.as_bytes());
    out.push(0);
    out.extend_from_slice(&blob);
    out.extend_from_slice(SOURCE.as_bytes());
    out
}

/// Where [`payload`] written at `at` puts the parameters' blob, and its
/// length: the arguments of the bootstrap's `start`.
pub fn blob_at(p: &Params, at: u64) -> (u64, u64) {
    let len = params_blob(p).len();
    (at + text_at(0, len, 0).len() as u64 + 1, len as u64)
}

/// The key of this bootstrap in the target's `sys._pyattach_code`.
pub fn key() -> &'static str {
    source_key()
}

/// [`payload`]'s text: the blob at `blob_at` (`blob_len` bytes), the
/// source at `src_at`.
fn text_at(blob_at: u64, blob_len: usize, src_at: u64) -> String {
    let args = format!("0x{blob_at:016x},0x{blob_len:08x}");
    // /proc/self/mem read unbuffered (a buffered read would run past the
    // end); ctypes where /proc is not mounted.
    let loader = format!(
        "{prelude}def m(a,n):
 import os
 s=b''
 try:
  f=os.open('/proc/self/mem',os.O_RDONLY)
  try:
   os.lseek(f,a,0)
   while len(s)<n:
    c=os.read(f,n-len(s))
    if not c:break
    s+=c
  finally:os.close(f)
 except Exception:s=b''
 if len(s)!=n:
  import ctypes
  s=ctypes.string_at(a,n)
 return s
{load}start(*A)
",
        prelude = loader_prelude(),
        load = load(&format!(
            "m(0x{src_at:016x},0x{src_len:08x})",
            src_len = SOURCE.len()
        )),
    );
    entry(&args, &loader)
}

/// The loader's lines that define the bootstrap from its source (`src`, an
/// expression). A Python signal handler runs in the main thread wherever
/// it is, and its exception (SIGTERM's SystemExit) would end in this text
/// and be lost: so the source's first part (`bootstrap/signals.py`, quick
/// to compile) goes first, and its last line defers the handlers until
/// `loaded` (called whether the rest could be defined or not: an import
/// may be refused), which also hands over an exception a handler raised
/// before (`E`), to be raised again once the thread is back in the
/// application.
fn load(src: &str) -> String {
    format!(
        "E=None
try:
 s={src}
 exec(compile(s[:{FIRST_PART}],'<pyattach>','exec',0,True))
except BaseException as e:E=e
try:
 if 'loaded' in globals():exec(compile(s[{FIRST_PART}:],'<pyattach>','exec',0,True))
finally:
 if 'loaded' in globals():loaded(E)
"
    )
}

/// The first lines of a loader: the names the bootstrap's module expects
/// in its namespace.
fn loader_prelude() -> String {
    format!("__name__='__pyattach__'\nK='{}'\n", source_key())
}

/// The text: call the bootstrap's `start` with `args` if an earlier
/// injection defined it, else run `loader` (which defines it and calls
/// it) in a fresh namespace, where `A` holds the arguments. One expression
/// (tried a second time if the first raised: a signal handler that ran at
/// its first instruction): it runs in `__main__`'s globals, where it must
/// bind no name; and the lookup raises nothing,
/// since the code runs inside and an exception being handled around it
/// would become the context of the code's own (chained into its
/// tracebacks, what `sys.exc_info()` and a bare `raise` see). A bare
/// `except:` catches everything, old-style class exceptions of Python 2
/// included; `start` itself never raises. A handler's exception in the
/// first try is given to `start` in the second, which has it raised again
/// in the application (`bootstrap/signals.py`).
///
/// It names no global or builtin either: `__main__` may define its own
/// `compile`, `eval`, `getattr` or `__import__` (a build script, a
/// calculator), which would shadow the builtins of that name. The builtins
/// come from a generator expression's frame (`f_builtins`, where CPython
/// itself looks builtins up, unshadowed by globals) and are passed to a
/// lambda whose parameter is local to it.
fn entry(args: &str, loader: &str) -> String {
    // `r`: a second try, when a signal handler raised in the first (its
    // exception goes to `start`, to be raised again in the application).
    let call = format!(
        "(lambda B,r:(B['getattr'](B['__import__']('sys'),'_pyattach_code',{{}}).get('{key}') or \
(lambda *a:B['eval'](B['compile']({loader},'<pyattach>','exec'),{{'__builtins__':B,'A':a}})))\
({args},r and B['__import__']('sys').exc_info()[1] or None))((i for i in()).gi_frame.f_builtins,",
        key = source_key(),
        loader = py_str(loader.as_bytes()),
    );
    format!("try:{call}0)\nexcept:\n try:{call}1)\n except:pass\n")
}

/// FNV-1a of the bootstrap's source: the key of its compiled code in the
/// target (a changed bootstrap never reuses an old one).
/// Hashed once: the payload's text names it several times.
fn source_key() -> &'static str {
    static KEY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    KEY.get_or_init(|| {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for &b in SOURCE.as_bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        format!("{h:016x}")
    })
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

    fn params(mode: Mode) -> Params {
        Params {
            nonce: "n".into(),
            token: "t".into(),
            mode,
            channel: ChannelParams::Pair,
            wait_secs: 2.0,
        }
    }

    #[test]
    fn script_is_ascii_and_holds_no_nul() {
        let s = script(&params(Mode::run("print('é')\0")));
        assert!(s.is_ascii());
        assert!(!s.contains('\0'));
        assert!(s.starts_with(
            "try:(lambda B,r:(B['getattr'](B['__import__']('sys'),'_pyattach_code',{}).get('"
        ));
    }

    #[test]
    fn the_blob_ends_with_the_code_whatever_it_holds() {
        let b = params_blob(&params(Mode::run("a\0b")));
        // nonce, token, mode, chan, path (none), wait, then the code.
        assert_eq!(b, [&b"n\0t\0run\0pair\0\0"[..], b"2.0\0a\0b"].concat());
        let b = params_blob(&params(Mode::Run {
            code: "c".into(),
            runner: Runner::Caught,
        }));
        assert!(b.starts_with(b"n\0t\0run-here\0"));
    }

    #[test]
    fn payload_text_is_short_and_its_length_does_not_depend_on_the_address() {
        let long = params(Mode::run("x = 1\n".repeat(10_000)));
        let (a, b) = (payload(&long, 0), payload(&long, 0x7fff_1234_5000));
        assert_eq!(a.len(), b.len());
        assert_eq!(a.len(), payload_len(&long));
        let text_len = b.iter().position(|&c| c == 0).unwrap();
        let text = std::str::from_utf8(&b[..text_len]).unwrap();
        // The code and the source are not in the text (and neither is the
        // text's length tied to them). Twice the loader's call (the second
        // try), each under 1.5 KB.
        assert!(
            text.len() < 3000 && text.is_ascii(),
            "{} {text}",
            text.len()
        );
        assert!(!text.contains("x = 1"));
        assert_eq!(
            payload(&params(Mode::Repl), 0).iter().position(|&c| c == 0),
            Some(text_len)
        );
        // The blob right after the NUL (its address is in the text), then
        // the source.
        let blob_at = 0x7fff_1234_5000 + text_len as u64 + 1;
        assert!(text.contains(&format!("(0x{blob_at:016x},0x")));
        let blob = params_blob(&long);
        assert_eq!(&b[text_len + 1..text_len + 1 + blob.len()], &blob[..]);
        assert!(b.ends_with(SOURCE.as_bytes()));
    }
}
