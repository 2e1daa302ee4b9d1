//! Running code inside the target: the bootstrap that a GIL-holding thread
//! is made to run, the channel it opens back to pyattach, and the framed
//! protocol spoken over it.
//!
//! ```no_run
//! use inject::run::{ChannelKind, Mode, Rendezvous};
//! use std::time::{Duration, Instant};
//! let mut rv = Rendezvous::prepare(1234, ChannelKind::Auto)?;
//! let params = rv.params(Mode::run("print(1)"), Duration::from_secs(2));
//! let text = inject::run::bootstrap::script(&params); // for PyRun_SimpleString
//! // ... get a thread of the target to run `text` ...
//! let channel = rv.wait(Instant::now() + Duration::from_secs(5))?;
//! # Ok::<(), inject::run::RunError>(())
//! ```

mod arm;
pub mod bootstrap;
mod channel;
mod detour;
mod error;
mod fallback;
mod hooks;
mod inject;
mod leftover;
mod nudge;
mod orphan;
mod plan;
pub mod protocol;
mod seccomp;
mod stacks;
mod unblock;

pub use bootstrap::{ChannelParams, Mode, Params, Runner};
pub use channel::{ChannelKind, Rendezvous};
pub use error::RunError;
pub use inject::{start, start_in, Options, Report};
pub use leftover::Leftover;
pub use protocol::{Channel, FromTarget, ToTarget};
pub use unblock::{interrupt_blocked, Unblocked};
