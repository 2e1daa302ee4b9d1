//! Which kernel thread each thread state belongs to, as the kernel says it,
//! not as the thread state claims.
//!
//! A thread state's `native_thread_id` (3.11+) is written once, when the
//! thread starts, in the target's own pid namespace: it is stale in a child
//! that forked without CPython's after-fork code (a uWSGI worker keeps the
//! master's pid there), and it is another number than the host's in a
//! container. The thread states a fork copied from the parent's other
//! threads (2.7 keeps them all; so does any child that skips
//! `PyOS_AfterFork_Child`) name threads the child does not have. So the
//! thread state's `thread_id`, the `pthread_t`, decides: it is the address
//! of the thread's `struct pthread`, which the kernel holds as the thread's
//! thread pointer (`fs_base`), read exactly from each stopped thread's
//! registers; without a freeze, it is read from the tid glibc keeps in that
//! struct (updated by fork), in the target's namespace, and mapped to the
//! host's through each task's `NSpid`.

use std::collections::{HashMap, HashSet};

use super::mem::Memory;
use super::procfs::{self, KernelThread};

/// What the kernel knows of one thread state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Identity {
    /// The host's tid (as `/proc` and `ps -L` here show it).
    pub tid: Option<i32>,
    /// The tid in the target's pid namespace, when it differs.
    pub ns_tid: Option<i32>,
    /// No thread of the process is this thread state's: the thread it was
    /// made for is gone (a fork copied it from the parent, or the thread
    /// ended without clearing it).
    pub stale: bool,
}

/// One thread state, as read: its `pthread_t` and the `native_thread_id`
/// it claims (3.11+, in the target's namespace).
#[derive(Clone, Copy, Debug)]
pub struct Claim {
    pub thread_id: u64,
    pub native_id: Option<i32>,
}

/// The identity of each of `claims`, in order. `thread_pointers` (thread
/// pointer → host tid) is given when the threads were stopped and their
/// registers read.
pub fn identify(
    claims: &[Claim],
    kernel: &HashMap<i32, KernelThread>,
    mem: &dyn Memory,
    thread_pointers: Option<&HashMap<u64, i32>>,
) -> Vec<Identity> {
    let to_host: HashMap<i32, i32> = kernel.iter().map(|(&h, k)| (k.ns_tid, h)).collect();
    let with_ns = |tid: i32| Identity {
        tid: Some(tid),
        ns_tid: kernel
            .get(&tid)
            .map(|k| k.ns_tid)
            .filter(|&n| n != tid && n > 0),
        stale: false,
    };
    // A thread state with no `pthread_t` yet (made for a thread that has
    // not started running) names no thread, and is not stale either.
    let unbound = Identity::default();
    if let Some(tp) =
        thread_pointers.filter(|tp| claims.iter().any(|c| tp.contains_key(&c.thread_id)))
    {
        return claims
            .iter()
            .map(|c| match tp.get(&c.thread_id) {
                Some(&tid) => with_ns(tid),
                None if c.thread_id == 0 => unbound,
                None => Identity {
                    stale: true,
                    ..unbound
                },
            })
            .collect();
    }
    // The claimed id, when it names a thread of the process (translated
    // from the target's namespace); else what glibc's struct says.
    let claimed: Vec<Option<i32>> = claims
        .iter()
        .map(|c| c.native_id.and_then(|n| to_host.get(&n).copied()))
        .collect();
    let ids: Vec<u64> = claims
        .iter()
        .zip(&claimed)
        .filter(|(_, h)| h.is_none())
        .map(|(c, _)| c.thread_id)
        .collect();
    let ns_tids: HashSet<i32> = to_host.keys().copied().collect();
    let structs = if ids.is_empty() {
        None
    } else {
        procfs::map_pthreads(mem, &ids, &ns_tids)
    };
    claims
        .iter()
        .zip(claimed)
        .map(|(c, h)| {
            let from_struct = || {
                structs
                    .as_ref()
                    .and_then(|m| m.get(&c.thread_id))
                    .and_then(|n| to_host.get(n).copied())
            };
            match h.or_else(from_struct) {
                Some(tid) => with_ns(tid),
                None if c.thread_id == 0 => unbound,
                None => Identity {
                    stale: structs.is_some(),
                    ..unbound
                },
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    struct NoMemory;

    impl Memory for NoMemory {
        fn read(&self, _: u64, _: &mut [u8]) -> Result<(), String> {
            Err("unmapped".into())
        }
    }

    fn kernel(pairs: &[(i32, i32)]) -> HashMap<i32, KernelThread> {
        pairs
            .iter()
            .map(|&(host, ns)| {
                (
                    host,
                    KernelThread {
                        ns_tid: ns,
                        ..KernelThread::default()
                    },
                )
            })
            .collect()
    }

    #[test]
    fn thread_pointers_decide_over_a_stale_native_id() {
        // A uWSGI worker: the thread state claims the master's pid.
        let k = kernel(&[(6630, 6630)]);
        let claims = [Claim {
            thread_id: 0x7f00,
            native_id: Some(6624),
        }];
        let tp = HashMap::from([(0x7f00, 6630)]);
        let ids = identify(&claims, &k, &NoMemory, Some(&tp));
        assert_eq!(ids[0].tid, Some(6630));
        assert!(!ids[0].stale);
    }

    #[test]
    fn fork_leftovers_are_stale_and_unbound_states_are_not() {
        let k = kernel(&[(900, 900)]);
        let claims = [
            Claim {
                thread_id: 0x1000,
                native_id: None,
            },
            Claim {
                thread_id: 0x2000,
                native_id: None,
            },
            Claim {
                thread_id: 0,
                native_id: None,
            },
        ];
        let tp = HashMap::from([(0x2000, 900)]);
        let ids = identify(&claims, &k, &NoMemory, Some(&tp));
        assert!(ids[0].stale && ids[0].tid.is_none());
        assert_eq!(ids[1].tid, Some(900));
        assert!(!ids[2].stale && ids[2].tid.is_none());
    }

    #[test]
    fn namespace_ids_map_to_the_hosts() {
        // `unshare --pid`: the target sees itself as 1 and 2.
        let k = kernel(&[(4000, 1), (4001, 2)]);
        let claims = [
            Claim {
                thread_id: 0x1000,
                native_id: Some(1),
            },
            Claim {
                thread_id: 0x2000,
                native_id: Some(2),
            },
        ];
        let ids = identify(&claims, &k, &NoMemory, None);
        assert_eq!(ids[0].tid, Some(4000));
        assert_eq!(ids[0].ns_tid, Some(1));
        assert_eq!(ids[1].tid, Some(4001));
        assert_eq!(ids[1].ns_tid, Some(2));
        // Nothing readable to decide by: not called stale.
        let ids = identify(
            &[Claim {
                thread_id: 0x3000,
                native_id: Some(77),
            }],
            &k,
            &NoMemory,
            None,
        );
        assert_eq!(ids[0], Identity::default());
    }
}
