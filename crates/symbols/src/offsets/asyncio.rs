//! The `_asyncio` module's structs (`Modules/_asynciomodule.c`), one table
//! per minor version, for `dump --tasks`. They live in the `_asyncio`
//! extension module, not in libpython, so `tests/offsets_dwarf.rs` checks
//! them against the DWARF of `lib-dynload/_asyncio*.so` of each pyenv build.
//! 3.14 moved native tasks into per-thread lists (`task_node`; the heads
//! are in the main tables); 3.14's rows are checked against the debug file
//! of Debian sid's `_asyncio` module, 3.15's (built into the executable)
//! against the executable's.

use super::tables::rows;
use super::{Field, Row};

/// The `_asyncio` table for `major.minor`, if pyattach has one.
pub fn table(major: u32, minor: u32) -> Option<&'static [Row]> {
    Some(match (major, minor) {
        (3, 7) => V3_7,
        (3, 8) => V3_8,
        (3, 9) => V3_9,
        (3, 10) => V3_10,
        // 3.12's TaskObj is 3.11's.
        (3, 11) | (3, 12) => V3_11,
        (3, 13) => V3_13,
        // 3.15's TaskObj is 3.14's (both checked against DWARF).
        (3, 14) | (3, 15) => V3_14,
        _ => return None,
    })
}

pub const V3_7: &[Row] = rows! {
    TaskLoop = 16 => "TaskObj.task_loop";
    TaskCallback0 = 24 => "TaskObj.task_callback0";
    TaskCallbacks = 40 => "TaskObj.task_callbacks";
    TaskState = 72 => "TaskObj.task_state";
    TaskFutWaiter = 104 => "TaskObj.task_fut_waiter";
    TaskCoro = 112 => "TaskObj.task_coro";
    FutureIterFuture = 16 => "futureiterobject.future";
};

pub const V3_8: &[Row] = rows! {
    TaskLoop = 16 => "TaskObj.task_loop";
    TaskCallback0 = 24 => "TaskObj.task_callback0";
    TaskCallbacks = 40 => "TaskObj.task_callbacks";
    TaskState = 72 => "TaskObj.task_state";
    TaskFutWaiter = 104 => "TaskObj.task_fut_waiter";
    TaskCoro = 112 => "TaskObj.task_coro";
    TaskName = 120 => "TaskObj.task_name";
    FutureIterFuture = 16 => "futureiterobject.future";
};

pub const V3_9: &[Row] = rows! {
    TaskLoop = 16 => "TaskObj.task_loop";
    TaskCallback0 = 24 => "TaskObj.task_callback0";
    TaskCallbacks = 40 => "TaskObj.task_callbacks";
    TaskState = 80 => "TaskObj.task_state";
    TaskFutWaiter = 144 => "TaskObj.task_fut_waiter";
    TaskCoro = 152 => "TaskObj.task_coro";
    TaskName = 160 => "TaskObj.task_name";
    FutureIterFuture = 16 => "futureiterobject.future";
};

pub const V3_10: &[Row] = rows! {
    TaskLoop = 16 => "TaskObj.task_loop";
    TaskCallback0 = 24 => "TaskObj.task_callback0";
    TaskCallbacks = 40 => "TaskObj.task_callbacks";
    TaskState = 88 => "TaskObj.task_state";
    TaskFutWaiter = 152 => "TaskObj.task_fut_waiter";
    TaskCoro = 160 => "TaskObj.task_coro";
    TaskName = 168 => "TaskObj.task_name";
    FutureIterFuture = 16 => "futureiterobject.future";
};

pub const V3_11: &[Row] = rows! {
    TaskLoop = 16 => "TaskObj.task_loop";
    TaskCallback0 = 24 => "TaskObj.task_callback0";
    TaskCallbacks = 40 => "TaskObj.task_callbacks";
    TaskState = 88 => "TaskObj.task_state";
    TaskFutWaiter = 128 => "TaskObj.task_fut_waiter";
    TaskCoro = 136 => "TaskObj.task_coro";
    TaskName = 144 => "TaskObj.task_name";
    FutureIterFuture = 16 => "futureiterobject.future";
};

pub const V3_13: &[Row] = rows! {
    TaskLoop = 16 => "TaskObj.task_loop";
    TaskCallback0 = 24 => "TaskObj.task_callback0";
    TaskCallbacks = 40 => "TaskObj.task_callbacks";
    TaskState = 96 => "TaskObj.task_state";
    TaskFutWaiter = 112 => "TaskObj.task_fut_waiter";
    TaskCoro = 120 => "TaskObj.task_coro";
    TaskName = 128 => "TaskObj.task_name";
    FutureIterFuture = 16 => "futureiterobject.future";
};

pub const V3_14: &[Row] = rows! {
    TaskLoop = 16 => "TaskObj.task_loop";
    TaskCallback0 = 24 => "TaskObj.task_callback0";
    TaskCallbacks = 40 => "TaskObj.task_callbacks";
    TaskState = 104 => "TaskObj.task_state";
    TaskFutWaiter = 120 => "TaskObj.task_fut_waiter";
    TaskCoro = 128 => "TaskObj.task_coro";
    TaskName = 136 => "TaskObj.task_name";
    TaskNode = 152 => "TaskObj.task_node";
    FutureIterFuture = 16 => "futureiterobject.future";
};
