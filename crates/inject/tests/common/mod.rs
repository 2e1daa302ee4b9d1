//! Helpers shared by the inject tests that run code in a target.

use inject::run::{Channel, FromTarget};

/// Reads a `--run` session to its end: the code's output (stdout and
/// stderr, in order) and whether it raised. Panics on anything a `--run`
/// session does not send.
pub fn output_of(ch: &mut Channel) -> (String, Option<bool>) {
    let (mut out, mut raised) = (String::new(), None);
    while let Some(msg) = ch.recv().expect("frame") {
        match msg {
            FromTarget::Stdout(b) | FromTarget::Stderr(b) => {
                out.push_str(&String::from_utf8_lossy(&b))
            }
            FromTarget::Finished { raised: r } => raised = Some(r),
            FromTarget::Executing(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    (out, raised)
}
