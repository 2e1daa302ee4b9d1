//! CPython struct offsets, per version.
//!
//! Reading stacks from outside needs to know where, say, `PyThreadState.next`
//! sits in the target's build. Two sources, in this order:
//! - `_Py_DebugOffsets` (3.13+), which CPython itself writes at the start of
//!   `_PyRuntime` with the cookie `xdebugpy` ([`Offsets::from_debug_offsets`]);
//!   it overrides the table entries it covers.
//! - A table per minor version (2.7, 3.6–3.13) in [`tables`]: one row per
//!   field, naming the C member it mirrors (as pystack's `py_thread_v` does),
//!   so the tables are easy to review against CPython's headers. The test
//!   `tests/offsets_dwarf.rs` checks every row against the DWARF of real
//!   builds, so a wrong offset cannot hide.
//!
//! Offsets are for 64-bit little-endian release builds (x86_64, aarch64), the
//! ones pyattach supports. Debug (`Py_DEBUG`/`Py_TRACE_REFS`) and
//! free-threaded builds have other layouts and are refused by the caller.
//!
//! ```
//! use symbols::offsets::{Field, Offsets};
//! let o = Offsets::for_version(3, 12).unwrap();
//! assert_eq!(o.get(Field::TstateNext), Some(8));
//! ```

pub mod asyncio;
pub mod debug;
pub mod tables;

pub use debug::{DebugOffsetsError, DEBUG_OFFSETS_COOKIE, DEBUG_OFFSETS_LEN};

macro_rules! fields {
    ($($(#[$m:meta])* $name:ident,)*) => {
        /// One offset (or size) pyattach needs. Which C member each stands
        /// for in a given version is in that version's table.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
        pub enum Field { $($(#[$m])* $name,)* }

        impl Field {
            /// Every field, in declaration order.
            pub const ALL: &'static [Field] = &[$(Field::$name,)*];
            /// The field's name, as used in messages and `pyattach info`.
            pub fn name(self) -> &'static str {
                match self { $(Field::$name => stringify!($name),)* }
            }
        }
    };
}

fields! {
    // `_PyRuntimeState` (3.7+).
    /// `_PyRuntime.interpreters.head`: the first interpreter.
    RuntimeInterpretersHead,
    /// `_PyRuntime.ceval.gil` (3.7–3.11): the GIL, one per process.
    RuntimeGil,
    /// `_PyRuntime.gilstate.tstate_current` (3.7–3.11): the thread state
    /// holding the GIL (NULL while it is released).
    RuntimeTstateCurrent,
    // `PyInterpreterState`.
    /// `interp->id` (3.7+): 0 for the main interpreter.
    InterpId,
    InterpNext,
    InterpTstateHead,
    /// `sys.modules`, to find `threading` for thread names.
    InterpModules,
    /// `interp->ceval.gil` (3.12+): pointer to the GIL this interpreter uses.
    InterpGil,
    // `struct _gil_runtime_state`, relative to its start (3.6+).
    GilLocked,
    GilLastHolder,
    // `PyThreadState`.
    TstateNext,
    TstateInterp,
    /// `tstate->frame` (≤3.10): the innermost `PyFrameObject`.
    TstateFrame,
    /// `tstate->cframe` (3.11–3.12): pointer to a `_PyCFrame`.
    TstateCframe,
    /// `_PyCFrame.current_frame` (3.11–3.12).
    CframeCurrentFrame,
    /// `tstate->current_frame` (3.13+).
    TstateCurrentFrame,
    /// `tstate->thread_id`: the `pthread_t` of the thread.
    TstateThreadId,
    /// `tstate->native_thread_id` (3.8+): the kernel's tid.
    TstateNativeThreadId,
    // `PyFrameObject` (≤3.10).
    FrameBack,
    FrameCode,
    /// Byte offset of the last instruction (≤3.9), code-unit index (3.10).
    FrameLasti,
    FrameLocalsplus,
    // `_PyInterpreterFrame` (3.11+).
    IframePrevious,
    /// `f_code` (3.11–3.12) or `f_executable` (3.13+).
    IframeCode,
    /// `prev_instr` (3.11–3.12) or `instr_ptr` (3.13+).
    IframeInstr,
    IframeLocalsplus,
    IframeOwner,
    /// `is_entry` (3.11 only).
    IframeIsEntry,
    // `PyCodeObject`.
    CodeArgcount,
    CodeNlocals,
    CodeFlags,
    CodeFilename,
    CodeName,
    /// `co_qualname` (3.11+).
    CodeQualname,
    CodeFirstlineno,
    /// `co_lnotab` (≤3.9) or `co_linetable` (3.10+).
    CodeLinetable,
    /// `co_code_adaptive` (3.11+): the instructions, inline in the object.
    CodeCodeAdaptive,
    /// `co_varnames` (≤3.10).
    CodeVarnames,
    /// `co_cellvars` and `co_freevars` (≤3.10): names of the cell slots
    /// that follow the locals in `f_localsplus`.
    CodeCellvars,
    CodeFreevars,
    /// `co_localsplusnames` (3.11+).
    CodeLocalsplusnames,
    /// `co_localspluskinds` (3.11+).
    CodeLocalspluskinds,
    // Objects.
    ObType,
    VarSize,
    TypeName,
    TypeFlags,
    TypeDictoffset,
    /// `tp_basicsize`: where 3.13's inline attribute values start.
    TypeBasicsize,
    /// `PyHeapTypeObject.ht_cached_keys` (3.11+): the shared keys of the
    /// instances' attribute values.
    HeapTypeCachedKeys,
    TupleItems,
    ListItems,
    /// `ob_sval` of `bytes` (3.x) or `str` (2.7).
    BytesData,
    UnicodeLength,
    /// `PyASCIIObject.state` bitfield (3.3+).
    UnicodeState,
    /// `sizeof(PyASCIIObject)`: where compact ASCII data starts.
    UnicodeAsciiSize,
    /// `sizeof(PyCompactUnicodeObject)`: where other compact data starts.
    UnicodeCompactSize,
    /// `PyUnicodeObject.data` (3.x legacy strings) or `.str` (2.7).
    UnicodeData,
    /// `sizeof(Py_UNICODE)` (2.7: 2 or 4 by build).
    UnicodeCharSize,
    /// `PyIntObject.ob_ival` (2.7).
    IntValue,
    /// `_PyLongValue.lv_tag` (3.12+); older versions use `VarSize`.
    LongTag,
    LongDigits,
    FloatValue,
    DictUsed,
    DictKeys,
    DictValues,
    /// `ma_mask` (2.7).
    DictMask,
    /// `ma_table` (2.7).
    DictTable,
    /// `dk_size` (3.6–3.10).
    KeysSize,
    /// `dk_log2_size` (3.11+).
    KeysLog2Size,
    /// `dk_log2_index_bytes` (3.11+).
    KeysLog2IndexBytes,
    /// `dk_kind` (3.11+).
    KeysKind,
    KeysNentries,
    KeysIndices,
    /// `_dictvalues.values` (3.11+): the values of a split dict or of an
    /// instance's attributes.
    DictValuesValues,
    ModuleDict,
    /// The size of a dict entry with a hash (2.7 `PyDictEntry`, 3.x
    /// `PyDictKeyEntry`), and where its key and value sit.
    DictEntrySize,
    DictEntryKey,
    DictEntryValue,
    /// 3.11+: the size of an entry of a str-keyed dict
    /// (`PyDictUnicodeEntry`, no hash), and where its key and value sit.
    DictUnicodeEntrySize,
    DictUnicodeEntryKey,
    DictUnicodeEntryValue,
    /// `PyCellObject.ob_ref`: the value of a cell variable.
    CellRef,
    // Sets, weak references, bound methods, types (for `dump --tasks`).
    /// `PySetObject.mask`: the table has `mask + 1` entries.
    SetMask,
    SetTable,
    /// `sizeof(setentry)` and where its key sits.
    SetEntrySize,
    SetEntryKey,
    /// `PyWeakReference.wr_object`: the referent (`None` once it died).
    WeakrefObject,
    /// `PyMethodObject.im_self`: the instance a bound method is bound to.
    MethodSelf,
    /// `tp_base`: the base type (to tell a subclass of `_asyncio.Task`).
    TypeBase,
    // Generators and coroutines (`PyCoroObject` shares `PyGenObject`'s head).
    /// `gi_frame` (≤3.10): the frame, a `PyFrameObject`.
    GenFrame,
    /// `gi_iframe` (3.11+): the `_PyInterpreterFrame` inside the object.
    GenIframe,
    /// `gi_frame_state` (3.11+): created, suspended, running, completed.
    GenFrameState,
    /// `f_stacktop` (≤3.9): the top of a suspended frame's value stack
    /// (NULL while it runs); what it awaits sits just below.
    FrameStacktop,
    /// `f_stackdepth` and `f_valuestack` (3.10).
    FrameStackdepth,
    FrameValuestack,
    /// `stacktop` (3.11–3.13): the stack depth above `localsplus`.
    IframeStacktop,
    /// `stackpointer` (3.14+): just above the top of the frame's stack.
    IframeStackpointer,
    /// `_PyThreadStateImpl.asyncio_tasks_head` (3.14+): the list of the
    /// thread's native asyncio tasks, linked through `TaskObj.task_node`.
    TstateAsyncioTasksHead,
    /// `interp->asyncio_tasks_head` (3.14+): tasks of threads that ended.
    InterpAsyncioTasksHead,
    /// `_PyThreadStateImpl.asyncio_running_loop` and `…_task` (3.14+): the
    /// loop the thread runs and the task it runs now.
    TstateAsyncioRunningLoop,
    TstateAsyncioRunningTask,
    // `_asyncio` (Modules/_asynciomodule.c), rows in `tables::asyncio`.
    /// `TaskObj.task_loop` (`fut_loop` of the Future head).
    TaskLoop,
    TaskCallback0,
    /// A list of `(callback, context)` tuples besides the first.
    TaskCallbacks,
    /// `fut_state`: pending 0, cancelled 1, finished 2.
    TaskState,
    TaskFutWaiter,
    TaskCoro,
    /// `task_name` (3.8+).
    TaskName,
    /// `task_node` (3.14+): the task's links in its thread's list.
    TaskNode,
    /// `futureiterobject.future`: what `await future` iterates.
    FutureIterFuture,
}

/// One row of a table: a field, its value, and the C member (or
/// `sizeof(type)`) it mirrors, written as DWARF names it: struct tag or
/// typedef, then member names through embedded structs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Row {
    pub field: Field,
    pub value: u64,
    pub member: &'static str,
}

/// Where a set of offsets came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OffsetsSource {
    /// pyattach's table for this minor version.
    Table,
    /// `_Py_DebugOffsets` in the target, over the table.
    DebugOffsets,
}

/// The offsets for one interpreter.
#[derive(Clone, Debug)]
pub struct Offsets {
    pub major: u32,
    pub minor: u32,
    pub source: OffsetsSource,
    rows: Vec<Row>,
}

impl Offsets {
    /// The table for `major.minor`, or `None` if pyattach has none.
    pub fn for_version(major: u32, minor: u32) -> Option<Offsets> {
        let rows = tables::table(major, minor)?;
        let mut rows = rows.to_vec();
        rows.extend_from_slice(asyncio::table(major, minor).unwrap_or(&[]));
        Some(Offsets {
            major,
            minor,
            source: OffsetsSource::Table,
            rows,
        })
    }

    /// Offsets from the `_Py_DebugOffsets` bytes at the start of
    /// `_PyRuntime` (3.13+), over the table of the same version when there
    /// is one. `bytes` must hold at least [`debug::DEBUG_OFFSETS_LEN`]
    /// bytes.
    pub fn from_debug_offsets(bytes: &[u8]) -> Result<Offsets, DebugOffsetsError> {
        let parsed = debug::parse(bytes)?;
        let mut out = Offsets::for_version(parsed.major, parsed.minor).unwrap_or(Offsets {
            major: parsed.major,
            minor: parsed.minor,
            source: OffsetsSource::DebugOffsets,
            rows: Vec::new(),
        });
        out.source = OffsetsSource::DebugOffsets;
        for row in parsed.rows {
            match out.rows.iter_mut().find(|r| r.field == row.field) {
                Some(r) => *r = row,
                None => out.rows.push(row),
            }
        }
        Ok(out)
    }

    /// The value of `field`, or `None` where the version has no such member.
    pub fn get(&self, field: Field) -> Option<u64> {
        self.rows.iter().find(|r| r.field == field).map(|r| r.value)
    }

    /// Drops `field`, for a build known to differ from the table there (the
    /// reader then does without it rather than trust a wrong value).
    pub fn remove(&mut self, field: Field) {
        self.rows.retain(|r| r.field != field);
    }

    /// Every row, for review and for the DWARF check.
    pub fn rows(&self) -> &[Row] {
        &self.rows
    }
}

/// The version-dependent constants that are not struct offsets.
pub mod consts {
    /// `_PyInterpreterFrame.owner` of a shim frame owned by the C stack
    /// (3.12–3.13), which holds no Python code.
    pub const FRAME_OWNED_BY_CSTACK: u8 = 3;

    /// Bit positions in `PyASCIIObject.state` (3.3–3.13): `interned:2,
    /// kind:3, compact:1, ascii:1`. Checked against DWARF by the tests.
    pub const UNICODE_KIND_SHIFT: u32 = 2;
    pub const UNICODE_COMPACT_BIT: u32 = 5;
    pub const UNICODE_ASCII_BIT: u32 = 6;

    /// Each constant with the bitfield member whose DWARF bit offset it
    /// must equal.
    pub const UNICODE_STATE_BITS: &[(u32, &str)] = &[
        (UNICODE_KIND_SHIFT, "bit(PyASCIIObject.state.kind)"),
        (UNICODE_COMPACT_BIT, "bit(PyASCIIObject.state.compact)"),
        (UNICODE_ASCII_BIT, "bit(PyASCIIObject.state.ascii)"),
    ];
}
