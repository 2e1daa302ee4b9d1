//! `_Py_DebugOffsets` (CPython 3.13+, `Include/internal/pycore_runtime.h`):
//! the interpreter publishes the offsets of its own structs at the start of
//! `_PyRuntime`, for debuggers and profilers. Read from the target's memory
//! (or from the module file's initialized `.data`, which holds the same
//! bytes), it tells the layout of the very build that runs.
//!
//! The struct is a sequence of `uint64_t` after an 8-byte cookie; each
//! `uint64_t` position below is named by its member path in the C struct,
//! which the DWARF test checks against real builds.

use super::{Field, Row};

/// The first 8 bytes of `_PyRuntime` on 3.13+.
pub const DEBUG_OFFSETS_COOKIE: &[u8; 8] = b"xdebugpy";

/// How many bytes of `_PyRuntime` the 3.13 layout needs.
pub const DEBUG_OFFSETS_LEN: usize = 584;

/// Why `_Py_DebugOffsets` could not be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DebugOffsetsError {
    #[error("_PyRuntime does not start with the debug offsets cookie")]
    NoCookie,
    #[error("debug offsets are truncated ({0} bytes)")]
    Truncated(usize),
    #[error("debug offsets of Python {major}.{minor} have a layout pyattach does not know")]
    UnknownLayout { major: u32, minor: u32 },
    #[error("free-threaded builds are not supported")]
    FreeThreaded,
}

/// Byte positions of the members of `_Py_DebugOffsets` in the 3.13 layout.
pub mod pos {
    pub const VERSION: usize = 8;
    pub const FREE_THREADED: usize = 16;
    pub const RUNTIME_INTERPRETERS_HEAD: usize = 24 + 16;
    const INTERP: usize = 48;
    pub const INTERP_NEXT: usize = INTERP + 16;
    pub const INTERP_THREADS_HEAD: usize = INTERP + 24;
    pub const INTERP_IMPORTS_MODULES: usize = INTERP + 40;
    pub const INTERP_CEVAL_GIL: usize = INTERP + 64;
    pub const INTERP_GIL_RUNTIME_STATE: usize = INTERP + 72;
    pub const INTERP_GIL_LOCKED: usize = INTERP + 88;
    pub const INTERP_GIL_HOLDER: usize = INTERP + 96;
    const TSTATE: usize = 152;
    pub const TSTATE_NEXT: usize = TSTATE + 16;
    pub const TSTATE_INTERP: usize = TSTATE + 24;
    pub const TSTATE_CURRENT_FRAME: usize = TSTATE + 32;
    pub const TSTATE_THREAD_ID: usize = TSTATE + 40;
    pub const TSTATE_NATIVE_THREAD_ID: usize = TSTATE + 48;
    const FRAME: usize = 224;
    pub const FRAME_PREVIOUS: usize = FRAME + 8;
    pub const FRAME_EXECUTABLE: usize = FRAME + 16;
    pub const FRAME_INSTR_PTR: usize = FRAME + 24;
    pub const FRAME_LOCALSPLUS: usize = FRAME + 32;
    pub const FRAME_OWNER: usize = FRAME + 40;
    const CODE: usize = 272;
    pub const CODE_FILENAME: usize = CODE + 8;
    pub const CODE_NAME: usize = CODE + 16;
    pub const CODE_QUALNAME: usize = CODE + 24;
    pub const CODE_LINETABLE: usize = CODE + 32;
    pub const CODE_FIRSTLINENO: usize = CODE + 40;
    pub const CODE_ARGCOUNT: usize = CODE + 48;
    pub const CODE_LOCALSPLUSNAMES: usize = CODE + 56;
    pub const CODE_LOCALSPLUSKINDS: usize = CODE + 64;
    pub const CODE_CODE_ADAPTIVE: usize = CODE + 72;
    pub const PYOBJECT_OB_TYPE: usize = 352 + 8;
    pub const TYPE_TP_NAME: usize = 368 + 8;
    pub const TYPE_TP_FLAGS: usize = 368 + 24;
    pub const TUPLE_OB_ITEM: usize = 400 + 8;
    pub const TUPLE_OB_SIZE: usize = 400 + 16;
    pub const LIST_OB_ITEM: usize = 424 + 8;
    pub const DICT_MA_KEYS: usize = 448 + 8;
    pub const DICT_MA_VALUES: usize = 448 + 16;
    pub const FLOAT_OB_FVAL: usize = 472 + 8;
    pub const LONG_LV_TAG: usize = 488 + 8;
    pub const LONG_OB_DIGIT: usize = 488 + 16;
    pub const BYTES_OB_SVAL: usize = 512 + 16;
    pub const UNICODE_STATE: usize = 536 + 8;
    pub const UNICODE_LENGTH: usize = 536 + 16;
    pub const UNICODE_ASCIIOBJECT_SIZE: usize = 536 + 24;
}

/// Each position above with the `_Py_DebugOffsets` member it must be, for
/// the DWARF test.
pub const LAYOUT: &[(usize, &str)] = &[
    (pos::VERSION, "_Py_DebugOffsets.version"),
    (pos::FREE_THREADED, "_Py_DebugOffsets.free_threaded"),
    (
        pos::RUNTIME_INTERPRETERS_HEAD,
        "_Py_DebugOffsets.runtime_state.interpreters_head",
    ),
    (pos::INTERP_NEXT, "_Py_DebugOffsets.interpreter_state.next"),
    (
        pos::INTERP_THREADS_HEAD,
        "_Py_DebugOffsets.interpreter_state.threads_head",
    ),
    (
        pos::INTERP_IMPORTS_MODULES,
        "_Py_DebugOffsets.interpreter_state.imports_modules",
    ),
    (
        pos::INTERP_CEVAL_GIL,
        "_Py_DebugOffsets.interpreter_state.ceval_gil",
    ),
    (
        pos::INTERP_GIL_RUNTIME_STATE,
        "_Py_DebugOffsets.interpreter_state.gil_runtime_state",
    ),
    (
        pos::INTERP_GIL_LOCKED,
        "_Py_DebugOffsets.interpreter_state.gil_runtime_state_locked",
    ),
    (
        pos::INTERP_GIL_HOLDER,
        "_Py_DebugOffsets.interpreter_state.gil_runtime_state_holder",
    ),
    (pos::TSTATE_NEXT, "_Py_DebugOffsets.thread_state.next"),
    (pos::TSTATE_INTERP, "_Py_DebugOffsets.thread_state.interp"),
    (
        pos::TSTATE_CURRENT_FRAME,
        "_Py_DebugOffsets.thread_state.current_frame",
    ),
    (
        pos::TSTATE_THREAD_ID,
        "_Py_DebugOffsets.thread_state.thread_id",
    ),
    (
        pos::TSTATE_NATIVE_THREAD_ID,
        "_Py_DebugOffsets.thread_state.native_thread_id",
    ),
    (
        pos::FRAME_PREVIOUS,
        "_Py_DebugOffsets.interpreter_frame.previous",
    ),
    (
        pos::FRAME_EXECUTABLE,
        "_Py_DebugOffsets.interpreter_frame.executable",
    ),
    (
        pos::FRAME_INSTR_PTR,
        "_Py_DebugOffsets.interpreter_frame.instr_ptr",
    ),
    (
        pos::FRAME_LOCALSPLUS,
        "_Py_DebugOffsets.interpreter_frame.localsplus",
    ),
    (pos::FRAME_OWNER, "_Py_DebugOffsets.interpreter_frame.owner"),
    (pos::CODE_FILENAME, "_Py_DebugOffsets.code_object.filename"),
    (pos::CODE_NAME, "_Py_DebugOffsets.code_object.name"),
    (pos::CODE_QUALNAME, "_Py_DebugOffsets.code_object.qualname"),
    (
        pos::CODE_LINETABLE,
        "_Py_DebugOffsets.code_object.linetable",
    ),
    (
        pos::CODE_FIRSTLINENO,
        "_Py_DebugOffsets.code_object.firstlineno",
    ),
    (pos::CODE_ARGCOUNT, "_Py_DebugOffsets.code_object.argcount"),
    (
        pos::CODE_LOCALSPLUSNAMES,
        "_Py_DebugOffsets.code_object.localsplusnames",
    ),
    (
        pos::CODE_LOCALSPLUSKINDS,
        "_Py_DebugOffsets.code_object.localspluskinds",
    ),
    (
        pos::CODE_CODE_ADAPTIVE,
        "_Py_DebugOffsets.code_object.co_code_adaptive",
    ),
    (pos::PYOBJECT_OB_TYPE, "_Py_DebugOffsets.pyobject.ob_type"),
    (pos::TYPE_TP_NAME, "_Py_DebugOffsets.type_object.tp_name"),
    (pos::TYPE_TP_FLAGS, "_Py_DebugOffsets.type_object.tp_flags"),
    (pos::TUPLE_OB_ITEM, "_Py_DebugOffsets.tuple_object.ob_item"),
    (pos::TUPLE_OB_SIZE, "_Py_DebugOffsets.tuple_object.ob_size"),
    (pos::LIST_OB_ITEM, "_Py_DebugOffsets.list_object.ob_item"),
    (pos::DICT_MA_KEYS, "_Py_DebugOffsets.dict_object.ma_keys"),
    (
        pos::DICT_MA_VALUES,
        "_Py_DebugOffsets.dict_object.ma_values",
    ),
    (pos::FLOAT_OB_FVAL, "_Py_DebugOffsets.float_object.ob_fval"),
    (pos::LONG_LV_TAG, "_Py_DebugOffsets.long_object.lv_tag"),
    (pos::LONG_OB_DIGIT, "_Py_DebugOffsets.long_object.ob_digit"),
    (pos::BYTES_OB_SVAL, "_Py_DebugOffsets.bytes_object.ob_sval"),
    (pos::UNICODE_STATE, "_Py_DebugOffsets.unicode_object.state"),
    (
        pos::UNICODE_LENGTH,
        "_Py_DebugOffsets.unicode_object.length",
    ),
    (
        pos::UNICODE_ASCIIOBJECT_SIZE,
        "_Py_DebugOffsets.unicode_object.asciiobject_size",
    ),
];

pub(super) struct Parsed {
    pub major: u32,
    pub minor: u32,
    pub rows: Vec<Row>,
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(w)
}

pub(super) fn parse(b: &[u8]) -> Result<Parsed, DebugOffsetsError> {
    if b.len() < 8 || &b[..8] != DEBUG_OFFSETS_COOKIE {
        return Err(DebugOffsetsError::NoCookie);
    }
    if b.len() < DEBUG_OFFSETS_LEN {
        return Err(DebugOffsetsError::Truncated(b.len()));
    }
    // PY_VERSION_HEX: 0xMMmmppLS.
    let hex = u64_at(b, pos::VERSION);
    let major = ((hex >> 24) & 0xff) as u32;
    let minor = ((hex >> 16) & 0xff) as u32;
    if (major, minor) != (3, 13) {
        return Err(DebugOffsetsError::UnknownLayout { major, minor });
    }
    if u64_at(b, pos::FREE_THREADED) != 0 {
        return Err(DebugOffsetsError::FreeThreaded);
    }
    let v = |p| u64_at(b, p);
    let gil = v(pos::INTERP_GIL_RUNTIME_STATE);
    let row = |field, value, member| Row {
        field,
        value,
        member,
    };
    let rows = vec![
        row(
            Field::RuntimeInterpretersHead,
            v(pos::RUNTIME_INTERPRETERS_HEAD),
            "pyruntimestate.interpreters.head",
        ),
        row(Field::InterpNext, v(pos::INTERP_NEXT), "_is.next"),
        row(
            Field::InterpTstateHead,
            v(pos::INTERP_THREADS_HEAD),
            "_is.threads.head",
        ),
        row(
            Field::InterpModules,
            v(pos::INTERP_IMPORTS_MODULES),
            "_is.imports.modules",
        ),
        row(Field::InterpGil, v(pos::INTERP_CEVAL_GIL), "_is.ceval.gil"),
        // The debug offsets give the GIL's members from the start of the
        // interpreter (its own `_gil`); pyattach follows `ceval.gil`, so it
        // needs them relative to the GIL struct.
        row(
            Field::GilLocked,
            v(pos::INTERP_GIL_LOCKED).wrapping_sub(gil),
            "_gil_runtime_state.locked",
        ),
        row(
            Field::GilLastHolder,
            v(pos::INTERP_GIL_HOLDER).wrapping_sub(gil),
            "_gil_runtime_state.last_holder",
        ),
        row(Field::TstateNext, v(pos::TSTATE_NEXT), "_ts.next"),
        row(Field::TstateInterp, v(pos::TSTATE_INTERP), "_ts.interp"),
        row(
            Field::TstateCurrentFrame,
            v(pos::TSTATE_CURRENT_FRAME),
            "_ts.current_frame",
        ),
        row(
            Field::TstateThreadId,
            v(pos::TSTATE_THREAD_ID),
            "_ts.thread_id",
        ),
        row(
            Field::TstateNativeThreadId,
            v(pos::TSTATE_NATIVE_THREAD_ID),
            "_ts.native_thread_id",
        ),
        row(
            Field::IframePrevious,
            v(pos::FRAME_PREVIOUS),
            "_PyInterpreterFrame.previous",
        ),
        row(
            Field::IframeCode,
            v(pos::FRAME_EXECUTABLE),
            "_PyInterpreterFrame.f_executable",
        ),
        row(
            Field::IframeInstr,
            v(pos::FRAME_INSTR_PTR),
            "_PyInterpreterFrame.instr_ptr",
        ),
        row(
            Field::IframeLocalsplus,
            v(pos::FRAME_LOCALSPLUS),
            "_PyInterpreterFrame.localsplus",
        ),
        row(
            Field::IframeOwner,
            v(pos::FRAME_OWNER),
            "_PyInterpreterFrame.owner",
        ),
        row(
            Field::CodeFilename,
            v(pos::CODE_FILENAME),
            "PyCodeObject.co_filename",
        ),
        row(Field::CodeName, v(pos::CODE_NAME), "PyCodeObject.co_name"),
        row(
            Field::CodeQualname,
            v(pos::CODE_QUALNAME),
            "PyCodeObject.co_qualname",
        ),
        row(
            Field::CodeLinetable,
            v(pos::CODE_LINETABLE),
            "PyCodeObject.co_linetable",
        ),
        row(
            Field::CodeFirstlineno,
            v(pos::CODE_FIRSTLINENO),
            "PyCodeObject.co_firstlineno",
        ),
        row(
            Field::CodeArgcount,
            v(pos::CODE_ARGCOUNT),
            "PyCodeObject.co_argcount",
        ),
        row(
            Field::CodeLocalsplusnames,
            v(pos::CODE_LOCALSPLUSNAMES),
            "PyCodeObject.co_localsplusnames",
        ),
        row(
            Field::CodeLocalspluskinds,
            v(pos::CODE_LOCALSPLUSKINDS),
            "PyCodeObject.co_localspluskinds",
        ),
        row(
            Field::CodeCodeAdaptive,
            v(pos::CODE_CODE_ADAPTIVE),
            "PyCodeObject.co_code_adaptive",
        ),
        row(Field::ObType, v(pos::PYOBJECT_OB_TYPE), "_object.ob_type"),
        row(Field::TypeName, v(pos::TYPE_TP_NAME), "_typeobject.tp_name"),
        row(
            Field::TypeFlags,
            v(pos::TYPE_TP_FLAGS),
            "_typeobject.tp_flags",
        ),
        row(
            Field::TupleItems,
            v(pos::TUPLE_OB_ITEM),
            "PyTupleObject.ob_item",
        ),
        row(Field::VarSize, v(pos::TUPLE_OB_SIZE), "PyVarObject.ob_size"),
        row(
            Field::ListItems,
            v(pos::LIST_OB_ITEM),
            "PyListObject.ob_item",
        ),
        row(
            Field::DictKeys,
            v(pos::DICT_MA_KEYS),
            "PyDictObject.ma_keys",
        ),
        row(
            Field::DictValues,
            v(pos::DICT_MA_VALUES),
            "PyDictObject.ma_values",
        ),
        row(
            Field::FloatValue,
            v(pos::FLOAT_OB_FVAL),
            "PyFloatObject.ob_fval",
        ),
        row(
            Field::LongTag,
            v(pos::LONG_LV_TAG),
            "_longobject.long_value.lv_tag",
        ),
        row(
            Field::LongDigits,
            v(pos::LONG_OB_DIGIT),
            "_longobject.long_value.ob_digit",
        ),
        row(
            Field::BytesData,
            v(pos::BYTES_OB_SVAL),
            "PyBytesObject.ob_sval",
        ),
        row(
            Field::UnicodeState,
            v(pos::UNICODE_STATE),
            "PyASCIIObject.state",
        ),
        row(
            Field::UnicodeLength,
            v(pos::UNICODE_LENGTH),
            "PyASCIIObject.length",
        ),
        row(
            Field::UnicodeAsciiSize,
            v(pos::UNICODE_ASCIIOBJECT_SIZE),
            "sizeof(PyASCIIObject)",
        ),
    ];
    Ok(Parsed { major, minor, rows })
}
