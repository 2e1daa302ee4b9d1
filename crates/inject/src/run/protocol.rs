//! The framed protocol between pyattach and the bootstrap: one byte of
//! kind, a 4-byte big-endian length, the payload. The Python side is in
//! `bootstrap/session.py`; the kinds here must match it.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;

/// Largest payload accepted from the target; anything bigger means the
/// stream is not (or no longer) the bootstrap's. Output frames (`O`, `E`:
/// a `print` of a large string is one frame) are passed on in pieces of
/// [`CHUNK`], never held whole.
const MAX_FRAME: usize = 64 << 20;

/// Largest frame of the other kinds (prompts, completions, stacks): held
/// whole, so kept well below what a session may hold in memory.
const MAX_CONTROL: usize = 8 << 20;

/// The piece of an output frame [`Channel::recv`] returns at a time.
const CHUNK: usize = 256 << 10;

/// A message from the bootstrap.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FromTarget {
    /// `H`: nonce and token, the first frame on a fresh channel.
    Hello { nonce: String, token: String },
    /// `O`: bytes the session's code wrote to `sys.stdout`.
    Stdout(Vec<u8>),
    /// `E`: bytes written to `sys.stderr` (tracebacks too).
    Stderr(Vec<u8>),
    /// `S`: every thread's stack, sent when an interactive session opens.
    Stacks(String),
    /// `Q`: the target waits for a line; the payload is the prompt (empty
    /// when the code reads `sys.stdin`, e.g. pdb after printing `(Pdb) `).
    WantLine(String),
    /// `C`: answer to [`ToTarget::Complete`].
    Completions(Vec<String>),
    /// `R`: `--run` finished; `true` if the code raised. A prompt sends
    /// it (`false`) when the user left, and only then.
    Finished { raised: bool },
    /// `I`: the session's code starts running in this thread (its tid as
    /// the target sees it), or (`None`) has stopped; for Ctrl-C, which may
    /// have to cut a blocking call short (`interrupt_blocked`).
    Executing(Option<i32>),
    /// `B`: code of another session (a manhole connection `--stop` ends)
    /// still runs in this thread, KeyboardInterrupt pending there: cut its
    /// blocking call short (`interrupt_blocked`) so that it ends.
    Blocked(i32),
    /// `X`: the bootstrap could not go on (no thread could be started, an
    /// import was refused); the payload says why. The session ends: the
    /// bootstrap has undone what it changed.
    Failed(String),
}

/// A message to the bootstrap.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ToTarget {
    /// `A`: pyattach holds its end of the channel.
    Ack,
    /// `D`: a line of input (newline added if missing).
    Line(String),
    /// `Z`: end of input (Ctrl-D).
    Eof,
    /// `T`: complete this text in the target's `__main__`.
    Complete(String),
    /// `K`: Ctrl-C: KeyboardInterrupt in the session's running code, or a
    /// cancelled line at a prompt.
    Interrupt,
}

/// Reads a frame's kind and length; `Ok(None)` at a clean end of stream.
/// The target is untrusted: a length past the cap of its kind ends the
/// channel before anything is allocated.
fn read_head(r: &mut impl Read) -> io::Result<Option<(u8, usize)>> {
    let mut head = [0u8; 5];
    match r.read_exact(&mut head[..1]) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    r.read_exact(&mut head[1..]).map_err(mid_frame)?;
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    let cap = if is_output(head[0]) {
        MAX_FRAME
    } else {
        MAX_CONTROL
    };
    if len > cap {
        return Err(bad(format!(
            "the target sent a frame of {len} bytes (kind {:#04x}; at most {cap})",
            head[0]
        )));
    }
    Ok(Some((head[0], len)))
}

fn is_output(kind: u8) -> bool {
    matches!(kind, b'O' | b'E')
}

/// `len` bytes, allocated as they arrive (a length the target claims and
/// never sends costs nothing).
fn read_payload(r: &mut impl Read, len: usize) -> io::Result<Vec<u8>> {
    let mut payload = Vec::new();
    r.take(len as u64).read_to_end(&mut payload)?;
    if payload.len() < len {
        return Err(mid_frame(io::ErrorKind::UnexpectedEof.into()));
    }
    Ok(payload)
}

/// An end of stream inside a frame is the target's doing, not a clean end.
fn mid_frame(e: io::Error) -> io::Error {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        bad("the target closed the channel in the middle of a frame".into())
    } else {
        e
    }
}

/// Reads one whole frame; `Ok(None)` at a clean end of stream.
pub fn read_frame(r: &mut impl Read) -> io::Result<Option<FromTarget>> {
    let Some((kind, len)) = read_head(r)? else {
        return Ok(None);
    };
    let payload = read_payload(r, len)?;
    decode(kind, payload).map(Some)
}

fn decode(kind: u8, payload: Vec<u8>) -> io::Result<FromTarget> {
    let text = |p: Vec<u8>| String::from_utf8_lossy(&p).into_owned();
    Ok(match kind {
        b'H' => {
            let t = text(payload);
            let (nonce, token) = t.split_once(' ').unwrap_or((&t, ""));
            FromTarget::Hello {
                nonce: nonce.to_string(),
                token: token.to_string(),
            }
        }
        b'O' => FromTarget::Stdout(payload),
        b'E' => FromTarget::Stderr(payload),
        b'S' => FromTarget::Stacks(text(payload)),
        b'Q' => FromTarget::WantLine(text(payload)),
        b'C' => FromTarget::Completions(
            text(payload)
                .split('\n')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect(),
        ),
        b'R' => FromTarget::Finished {
            raised: payload != b"ok",
        },
        b'X' => FromTarget::Failed(text(payload)),
        b'I' => FromTarget::Executing(text(payload).trim().parse().ok().filter(|&t: &i32| t > 0)),
        b'B' => match text(payload).trim().parse() {
            Ok(t) if t > 0 => FromTarget::Blocked(t),
            _ => return Err(bad("the target sent a bad thread id".into())),
        },
        k => {
            return Err(bad(format!(
                "the target sent a frame of unknown kind {k:#04x}"
            )))
        }
    })
}

/// Writes one frame in a single `write_all`, so frames from several
/// threads sharing a stream never interleave.
pub fn write_frame(w: &mut impl Write, msg: &ToTarget) -> io::Result<()> {
    let (kind, payload): (u8, &[u8]) = match msg {
        ToTarget::Ack => (b'A', b""),
        ToTarget::Line(l) => (b'D', l.as_bytes()),
        ToTarget::Eof => (b'Z', b""),
        ToTarget::Complete(t) => (b'T', t.as_bytes()),
        ToTarget::Interrupt => (b'K', b""),
    };
    let mut buf = Vec::with_capacity(6 + payload.len());
    buf.push(kind);
    let newline = matches!(msg, ToTarget::Line(l) if !l.ends_with('\n'));
    let len = payload.len() + usize::from(newline);
    buf.extend_from_slice(&(len as u32).to_be_bytes());
    buf.extend_from_slice(payload);
    if newline {
        buf.push(b'\n');
    }
    w.write_all(&buf)
}

/// The frames the bootstrap's hello starts with, for recognising a channel
/// end by peeking at it: kind `H`, any length, then the nonce.
pub fn hello_prefix_matches(peeked: &[u8], nonce: &str) -> bool {
    peeked.len() >= 5 + nonce.len()
        && peeked[0] == b'H'
        && &peeked[5..5 + nonce.len()] == nonce.as_bytes()
}

fn bad(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// An open channel to a bootstrap running in the target.
#[derive(Debug)]
pub struct Channel {
    stream: UnixStream,
    /// The kind of the output frame being passed on, and its bytes left.
    output: Option<(u8, usize)>,
}

impl Channel {
    pub(crate) fn new(stream: UnixStream) -> Channel {
        Channel {
            stream,
            output: None,
        }
    }

    /// The next message, `None` when the target closed the channel. An
    /// output frame comes as several `Stdout`/`Stderr` messages of at most
    /// 256 KiB each, so a flood is never held whole.
    pub fn recv(&mut self) -> io::Result<Option<FromTarget>> {
        let (kind, left) = match self.output.take() {
            Some(o) => o,
            None => match read_head(&mut self.stream)? {
                None => return Ok(None),
                Some((kind, len)) if !is_output(kind) => {
                    let payload = read_payload(&mut self.stream, len)?;
                    return decode(kind, payload).map(Some);
                }
                Some(o) => o,
            },
        };
        let n = left.min(CHUNK);
        let piece = read_payload(&mut self.stream, n)?;
        if left > n {
            self.output = Some((kind, left - n));
        }
        decode(kind, piece).map(Some)
    }

    pub fn send(&mut self, msg: &ToTarget) -> io::Result<()> {
        write_frame(&mut self.stream, msg)
    }

    /// Closes the channel both ways, for every handle on it: the target's
    /// end of the session sees it closed and stops, as when pyattach exits,
    /// but while pyattach is still here to take its pages back.
    pub fn shutdown(&self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
    }

    /// A second handle on the same channel, e.g. to send Ctrl-C from a
    /// signal-watching thread while another thread reads.
    pub fn try_clone(&self) -> io::Result<Channel> {
        Ok(Channel {
            stream: self.stream.try_clone()?,
            output: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_through_the_wire_format() {
        let mut buf = Vec::new();
        write_frame(&mut buf, &ToTarget::Line("x = 1".into())).unwrap();
        assert_eq!(buf, b"D\0\0\0\x06x = 1\n");
        let wire = b"H\0\0\0\x03n tO\0\0\0\x02hiR\0\0\0\x06raisedX\0\0\0\x02no";
        let mut r = &wire[..];
        assert_eq!(
            read_frame(&mut r).unwrap(),
            Some(FromTarget::Hello {
                nonce: "n".into(),
                token: "t".into()
            })
        );
        assert_eq!(
            read_frame(&mut r).unwrap(),
            Some(FromTarget::Stdout(b"hi".to_vec()))
        );
        assert_eq!(
            read_frame(&mut r).unwrap(),
            Some(FromTarget::Finished { raised: true })
        );
        assert_eq!(
            read_frame(&mut r).unwrap(),
            Some(FromTarget::Failed("no".into()))
        );
        assert_eq!(read_frame(&mut r).unwrap(), None);
    }

    #[test]
    fn hostile_frames_are_refused_before_anything_is_allocated() {
        let err = |wire: &[u8]| read_frame(&mut &wire[..]).unwrap_err().to_string();
        assert!(err(b"O\xff\xff\xff\xff").contains("4294967295 bytes"));
        assert!(err(b"S\x01\0\0\0").contains("16777216 bytes"));
        assert!(err(b"Z\0\0\0\0").contains("unknown kind 0x5a"));
        assert!(err(b"O\0\0\x10\0abc").contains("middle of a frame"));
        assert!(err(b"O\0").contains("middle of a frame"));
    }

    #[test]
    fn output_frames_come_in_pieces() {
        let (mut a, b) = UnixStream::pair().unwrap();
        let mut ch = Channel::new(b);
        let big = vec![b'x'; CHUNK * 2 + 5];
        let mut wire = vec![b'O'];
        wire.extend_from_slice(&(big.len() as u32).to_be_bytes());
        wire.extend_from_slice(&big);
        wire.extend_from_slice(b"R\0\0\0\x02ok");
        std::thread::spawn(move || a.write_all(&wire));
        let mut got = Vec::new();
        loop {
            match ch.recv().unwrap().unwrap() {
                FromTarget::Stdout(b) => {
                    assert!(b.len() <= CHUNK);
                    got.extend_from_slice(&b);
                }
                FromTarget::Finished { raised } => {
                    assert!(!raised);
                    break;
                }
                m => panic!("{m:?}"),
            }
        }
        assert_eq!(got, big);
    }

    #[test]
    fn hello_is_recognised_by_its_nonce() {
        assert!(hello_prefix_matches(b"H\0\0\0\x05abc t", "abc"));
        assert!(!hello_prefix_matches(b"H\0\0\0\x05abd t", "abc"));
        assert!(!hello_prefix_matches(b"H\0\0", "abc"));
    }
}
