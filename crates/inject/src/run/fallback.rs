//! The new-thread fallback of an injection.

use std::time::Duration;

use symbols::Interpreter;

use crate::catalogue;

/// The new-thread fallback: `pthread_create` of a function that takes the
/// GIL with `PyGILState_Ensure` and runs the bootstrap. Started only from a
/// thread parked in a plain blocking syscall (not a futex: it could be
/// waiting for a libc lock that pthread_create needs), and only once the
/// GIL exists (`PyEval_ThreadsInitialized`: on 2.7 a process that never
/// started a thread has none, and a second thread would run unserialised).
#[derive(Clone, Copy)]
pub(super) struct Fallback {
    create: u64,
    detach: Option<u64>,
    pub ensure: u64,
    pub release: u64,
    initialized: Option<u64>,
}

/// Syscalls a thread can be parked in while holding no libc lock.
const PARKED: &[i64] = &[
    libc::SYS_read,
    libc::SYS_poll,
    libc::SYS_select,
    libc::SYS_nanosleep,
    libc::SYS_accept,
    libc::SYS_recvfrom,
    libc::SYS_recvmsg,
    libc::SYS_wait4,
    libc::SYS_clock_nanosleep,
    libc::SYS_epoll_wait,
    libc::SYS_waitid,
    libc::SYS_pselect6,
    libc::SYS_ppoll,
    libc::SYS_epoll_pwait,
    libc::SYS_accept4,
    libc::SYS_epoll_pwait2,
];

impl Fallback {
    pub fn find(py: &Interpreter) -> Option<Fallback> {
        let f = |n: &str| py.symbol(n).map(|s| s.addr.0);
        let libc = |n: &str| {
            py.symbol_in("libc", n)
                .or_else(|| py.symbol_in("libpthread", n))
        };
        Some(Fallback {
            create: libc("pthread_create")?.addr.0,
            detach: libc("pthread_detach").map(|s| s.addr.0),
            ensure: f(catalogue::NEW_THREAD[0])?,
            release: f(catalogue::NEW_THREAD[1])?,
            initialized: f(catalogue::THREADS_INITIALIZED),
        })
    }

    /// Starts the thread; false if no suitable caller or the GIL is absent.
    pub fn start(&self, st: &mut attach::Stopped, thread_fn: u64, out: u64) -> bool {
        let caller = st.threads().into_iter().find(|&tid| {
            st.regs(tid)
                .ok()
                .and_then(|r| r.syscall())
                .is_some_and(|nr| PARKED.contains(&nr))
        });
        let Some(tid) = caller else {
            return false;
        };
        st.set_call_timeout(Duration::from_millis(500));
        if let Some(init) = self.initialized {
            if !st.call(tid, init, &[]).is_ok_and(|r| r as i32 != 0) {
                return false;
            }
        }
        if !st
            .call(tid, self.create, &[out, 0, thread_fn, 0])
            .is_ok_and(|r| r as i32 == 0)
        {
            return false;
        }
        if let (Some(detach), Ok(Some(t))) = (self.detach, read_u64(st.memory(), out)) {
            let _ = st.call(tid, detach, &[t]);
        }
        true
    }
}

fn read_u64(mem: &attach::ProcessMemory, addr: u64) -> attach::Result<Option<u64>> {
    let mut b = [0u8; 8];
    mem.read(addr, &mut b)?;
    Ok(Some(u64::from_le_bytes(b)))
}
