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

/// How many bytes of `_PyRuntime` the largest layout below needs.
pub const DEBUG_OFFSETS_LEN: usize = 760;

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

/// Byte positions of the members of `_Py_DebugOffsets` that pyattach
/// reads, in one minor version's layout. CPython adds members to the
/// struct's sections from one minor version to the next (3.14: the
/// interpreter's `threads_main`, the frame's `stackpointer`; 3.15: the
/// thread state's `base_frame` and GIL fields, the type's `tp_basicsize`),
/// so each version has its own positions.
#[derive(Debug, Clone, Copy)]
pub struct Layout {
    pub minor: u32,
    pub version: usize,
    pub free_threaded: usize,
    pub runtime_interpreters_head: usize,
    pub interp_id: usize,
    pub interp_next: usize,
    pub interp_threads_head: usize,
    pub interp_imports_modules: usize,
    pub interp_ceval_gil: usize,
    pub interp_gil_runtime_state: usize,
    pub interp_gil_locked: usize,
    pub interp_gil_holder: usize,
    pub tstate_next: usize,
    pub tstate_interp: usize,
    pub tstate_current_frame: usize,
    pub tstate_thread_id: usize,
    pub tstate_native_thread_id: usize,
    pub frame_previous: usize,
    pub frame_executable: usize,
    pub frame_instr_ptr: usize,
    pub frame_localsplus: usize,
    pub frame_owner: usize,
    pub code_filename: usize,
    pub code_name: usize,
    pub code_qualname: usize,
    pub code_linetable: usize,
    pub code_firstlineno: usize,
    pub code_argcount: usize,
    pub code_localsplusnames: usize,
    pub code_localspluskinds: usize,
    pub code_code_adaptive: usize,
    pub pyobject_ob_type: usize,
    pub type_tp_name: usize,
    pub type_tp_flags: usize,
    pub tuple_ob_item: usize,
    pub tuple_ob_size: usize,
    pub list_ob_item: usize,
    pub dict_ma_keys: usize,
    pub dict_ma_values: usize,
    pub float_ob_fval: usize,
    pub long_lv_tag: usize,
    pub long_ob_digit: usize,
    pub bytes_ob_sval: usize,
    pub unicode_state: usize,
    pub unicode_length: usize,
    pub unicode_asciiobject_size: usize,
}

/// The start of each section of the struct (each begins with its `size`
/// member, except the first); the members are at fixed places inside it
/// in every version so far.
struct Sections {
    minor: u32,
    interp: usize,
    /// 3.14+: `threads_main` after `threads_head` moves what follows.
    interp_shift: usize,
    tstate: usize,
    /// 3.15+: `base_frame` and two profiling fields before `thread_id`.
    tstate_shift: usize,
    frame: usize,
    code: usize,
    pyobject: usize,
    type_: usize,
    tuple: usize,
    list: usize,
    dict: usize,
    float: usize,
    long: usize,
    bytes: usize,
    unicode: usize,
}

const fn layout(s: Sections) -> Layout {
    let i = s.interp;
    let is = s.interp_shift;
    let t = s.tstate;
    Layout {
        minor: s.minor,
        version: 8,
        free_threaded: 16,
        runtime_interpreters_head: 24 + 16,
        interp_id: i + 8,
        interp_next: i + 16,
        interp_threads_head: i + 24,
        interp_imports_modules: i + 40 + is,
        interp_ceval_gil: i + 64 + is,
        interp_gil_runtime_state: i + 72 + is,
        interp_gil_locked: i + 88 + is,
        interp_gil_holder: i + 96 + is,
        tstate_next: t + 16,
        tstate_interp: t + 24,
        tstate_current_frame: t + 32,
        tstate_thread_id: t + 40 + s.tstate_shift,
        tstate_native_thread_id: t + 48 + s.tstate_shift,
        frame_previous: s.frame + 8,
        frame_executable: s.frame + 16,
        frame_instr_ptr: s.frame + 24,
        frame_localsplus: s.frame + 32,
        frame_owner: s.frame + 40,
        code_filename: s.code + 8,
        code_name: s.code + 16,
        code_qualname: s.code + 24,
        code_linetable: s.code + 32,
        code_firstlineno: s.code + 40,
        code_argcount: s.code + 48,
        code_localsplusnames: s.code + 56,
        code_localspluskinds: s.code + 64,
        code_code_adaptive: s.code + 72,
        pyobject_ob_type: s.pyobject + 8,
        type_tp_name: s.type_ + 8,
        type_tp_flags: s.type_ + 24,
        tuple_ob_item: s.tuple + 8,
        tuple_ob_size: s.tuple + 16,
        list_ob_item: s.list + 8,
        dict_ma_keys: s.dict + 8,
        dict_ma_values: s.dict + 16,
        float_ob_fval: s.float + 8,
        long_lv_tag: s.long + 8,
        long_ob_digit: s.long + 16,
        bytes_ob_sval: s.bytes + 16,
        unicode_state: s.unicode + 8,
        unicode_length: s.unicode + 16,
        unicode_asciiobject_size: s.unicode + 24,
    }
}

/// 3.13 (checked against the pyenv build's DWARF by the tests).
pub const LAYOUT_3_13: Layout = layout(Sections {
    minor: 13,
    interp: 48,
    interp_shift: 0,
    tstate: 152,
    tstate_shift: 0,
    frame: 224,
    code: 272,
    pyobject: 352,
    type_: 368,
    tuple: 400,
    list: 424,
    dict: 448,
    float: 472,
    long: 488,
    bytes: 512,
    unicode: 536,
});

/// 3.14 (Debian's 3.14.10 with its debug file; a set object section
/// comes after the list's).
pub const LAYOUT_3_14: Layout = layout(Sections {
    minor: 14,
    interp: 48,
    interp_shift: 8,
    tstate: 176,
    tstate_shift: 0,
    frame: 248,
    code: 312,
    pyobject: 400,
    type_: 416,
    tuple: 448,
    list: 472,
    dict: 528,
    float: 552,
    long: 568,
    bytes: 592,
    unicode: 616,
});

/// 3.15 (Debian's 3.15.2 with its debug file; the type section grew and a
/// heap type section follows it).
pub const LAYOUT_3_15: Layout = layout(Sections {
    minor: 15,
    interp: 48,
    interp_shift: 8,
    tstate: 176,
    tstate_shift: 24,
    frame: 312,
    code: 376,
    pyobject: 464,
    type_: 480,
    tuple: 544,
    list: 568,
    dict: 624,
    float: 648,
    long: 664,
    bytes: 688,
    unicode: 712,
});

/// The layout of 3.`minor`, if pyattach knows it.
pub fn layout_of(minor: u32) -> Option<&'static Layout> {
    [&LAYOUT_3_13, &LAYOUT_3_14, &LAYOUT_3_15]
        .into_iter()
        .find(|l| l.minor == minor)
}

/// Each position of `l` with the `_Py_DebugOffsets` member it must be, for
/// the DWARF test.
pub fn members(l: &Layout) -> Vec<(usize, &'static str)> {
    vec![
        (l.version, "_Py_DebugOffsets.version"),
        (l.free_threaded, "_Py_DebugOffsets.free_threaded"),
        (
            l.runtime_interpreters_head,
            "_Py_DebugOffsets.runtime_state.interpreters_head",
        ),
        (l.interp_id, "_Py_DebugOffsets.interpreter_state.id"),
        (l.interp_next, "_Py_DebugOffsets.interpreter_state.next"),
        (
            l.interp_threads_head,
            "_Py_DebugOffsets.interpreter_state.threads_head",
        ),
        (
            l.interp_imports_modules,
            "_Py_DebugOffsets.interpreter_state.imports_modules",
        ),
        (
            l.interp_ceval_gil,
            "_Py_DebugOffsets.interpreter_state.ceval_gil",
        ),
        (
            l.interp_gil_runtime_state,
            "_Py_DebugOffsets.interpreter_state.gil_runtime_state",
        ),
        (
            l.interp_gil_locked,
            "_Py_DebugOffsets.interpreter_state.gil_runtime_state_locked",
        ),
        (
            l.interp_gil_holder,
            "_Py_DebugOffsets.interpreter_state.gil_runtime_state_holder",
        ),
        (l.tstate_next, "_Py_DebugOffsets.thread_state.next"),
        (l.tstate_interp, "_Py_DebugOffsets.thread_state.interp"),
        (
            l.tstate_current_frame,
            "_Py_DebugOffsets.thread_state.current_frame",
        ),
        (
            l.tstate_thread_id,
            "_Py_DebugOffsets.thread_state.thread_id",
        ),
        (
            l.tstate_native_thread_id,
            "_Py_DebugOffsets.thread_state.native_thread_id",
        ),
        (
            l.frame_previous,
            "_Py_DebugOffsets.interpreter_frame.previous",
        ),
        (
            l.frame_executable,
            "_Py_DebugOffsets.interpreter_frame.executable",
        ),
        (
            l.frame_instr_ptr,
            "_Py_DebugOffsets.interpreter_frame.instr_ptr",
        ),
        (
            l.frame_localsplus,
            "_Py_DebugOffsets.interpreter_frame.localsplus",
        ),
        (l.frame_owner, "_Py_DebugOffsets.interpreter_frame.owner"),
        (l.code_filename, "_Py_DebugOffsets.code_object.filename"),
        (l.code_name, "_Py_DebugOffsets.code_object.name"),
        (l.code_qualname, "_Py_DebugOffsets.code_object.qualname"),
        (l.code_linetable, "_Py_DebugOffsets.code_object.linetable"),
        (
            l.code_firstlineno,
            "_Py_DebugOffsets.code_object.firstlineno",
        ),
        (l.code_argcount, "_Py_DebugOffsets.code_object.argcount"),
        (
            l.code_localsplusnames,
            "_Py_DebugOffsets.code_object.localsplusnames",
        ),
        (
            l.code_localspluskinds,
            "_Py_DebugOffsets.code_object.localspluskinds",
        ),
        (
            l.code_code_adaptive,
            "_Py_DebugOffsets.code_object.co_code_adaptive",
        ),
        (l.pyobject_ob_type, "_Py_DebugOffsets.pyobject.ob_type"),
        (l.type_tp_name, "_Py_DebugOffsets.type_object.tp_name"),
        (l.type_tp_flags, "_Py_DebugOffsets.type_object.tp_flags"),
        (l.tuple_ob_item, "_Py_DebugOffsets.tuple_object.ob_item"),
        (l.tuple_ob_size, "_Py_DebugOffsets.tuple_object.ob_size"),
        (l.list_ob_item, "_Py_DebugOffsets.list_object.ob_item"),
        (l.dict_ma_keys, "_Py_DebugOffsets.dict_object.ma_keys"),
        (l.dict_ma_values, "_Py_DebugOffsets.dict_object.ma_values"),
        (l.float_ob_fval, "_Py_DebugOffsets.float_object.ob_fval"),
        (l.long_lv_tag, "_Py_DebugOffsets.long_object.lv_tag"),
        (l.long_ob_digit, "_Py_DebugOffsets.long_object.ob_digit"),
        (l.bytes_ob_sval, "_Py_DebugOffsets.bytes_object.ob_sval"),
        (l.unicode_state, "_Py_DebugOffsets.unicode_object.state"),
        (l.unicode_length, "_Py_DebugOffsets.unicode_object.length"),
        (
            l.unicode_asciiobject_size,
            "_Py_DebugOffsets.unicode_object.asciiobject_size",
        ),
    ]
}

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
    let hex = u64_at(b, 8);
    let major = ((hex >> 24) & 0xff) as u32;
    let minor = ((hex >> 16) & 0xff) as u32;
    let l = match layout_of(minor) {
        Some(l) if major == 3 => l,
        _ => return Err(DebugOffsetsError::UnknownLayout { major, minor }),
    };
    if u64_at(b, l.free_threaded) != 0 {
        return Err(DebugOffsetsError::FreeThreaded);
    }
    let v = |p| u64_at(b, p);
    let gil = v(l.interp_gil_runtime_state);
    let row = |field, value, member| Row {
        field,
        value,
        member,
    };
    let rows = vec![
        row(
            Field::RuntimeInterpretersHead,
            v(l.runtime_interpreters_head),
            "pyruntimestate.interpreters.head",
        ),
        row(Field::InterpId, v(l.interp_id), "_is.id"),
        row(Field::InterpNext, v(l.interp_next), "_is.next"),
        row(
            Field::InterpTstateHead,
            v(l.interp_threads_head),
            "_is.threads.head",
        ),
        row(
            Field::InterpModules,
            v(l.interp_imports_modules),
            "_is.imports.modules",
        ),
        row(Field::InterpGil, v(l.interp_ceval_gil), "_is.ceval.gil"),
        // The debug offsets give the GIL's members from the start of the
        // interpreter (its own `_gil`); pyattach follows `ceval.gil`, so it
        // needs them relative to the GIL struct.
        row(
            Field::GilLocked,
            v(l.interp_gil_locked).wrapping_sub(gil),
            "_gil_runtime_state.locked",
        ),
        row(
            Field::GilLastHolder,
            v(l.interp_gil_holder).wrapping_sub(gil),
            "_gil_runtime_state.last_holder",
        ),
        row(Field::TstateNext, v(l.tstate_next), "_ts.next"),
        row(Field::TstateInterp, v(l.tstate_interp), "_ts.interp"),
        row(
            Field::TstateCurrentFrame,
            v(l.tstate_current_frame),
            "_ts.current_frame",
        ),
        row(
            Field::TstateThreadId,
            v(l.tstate_thread_id),
            "_ts.thread_id",
        ),
        row(
            Field::TstateNativeThreadId,
            v(l.tstate_native_thread_id),
            "_ts.native_thread_id",
        ),
        row(
            Field::IframePrevious,
            v(l.frame_previous),
            "_PyInterpreterFrame.previous",
        ),
        row(
            Field::IframeCode,
            v(l.frame_executable),
            "_PyInterpreterFrame.f_executable",
        ),
        row(
            Field::IframeInstr,
            v(l.frame_instr_ptr),
            "_PyInterpreterFrame.instr_ptr",
        ),
        row(
            Field::IframeLocalsplus,
            v(l.frame_localsplus),
            "_PyInterpreterFrame.localsplus",
        ),
        row(
            Field::IframeOwner,
            v(l.frame_owner),
            "_PyInterpreterFrame.owner",
        ),
        row(
            Field::CodeFilename,
            v(l.code_filename),
            "PyCodeObject.co_filename",
        ),
        row(Field::CodeName, v(l.code_name), "PyCodeObject.co_name"),
        row(
            Field::CodeQualname,
            v(l.code_qualname),
            "PyCodeObject.co_qualname",
        ),
        row(
            Field::CodeLinetable,
            v(l.code_linetable),
            "PyCodeObject.co_linetable",
        ),
        row(
            Field::CodeFirstlineno,
            v(l.code_firstlineno),
            "PyCodeObject.co_firstlineno",
        ),
        row(
            Field::CodeArgcount,
            v(l.code_argcount),
            "PyCodeObject.co_argcount",
        ),
        row(
            Field::CodeLocalsplusnames,
            v(l.code_localsplusnames),
            "PyCodeObject.co_localsplusnames",
        ),
        row(
            Field::CodeLocalspluskinds,
            v(l.code_localspluskinds),
            "PyCodeObject.co_localspluskinds",
        ),
        row(
            Field::CodeCodeAdaptive,
            v(l.code_code_adaptive),
            "PyCodeObject.co_code_adaptive",
        ),
        row(Field::ObType, v(l.pyobject_ob_type), "_object.ob_type"),
        row(Field::TypeName, v(l.type_tp_name), "_typeobject.tp_name"),
        row(Field::TypeFlags, v(l.type_tp_flags), "_typeobject.tp_flags"),
        row(
            Field::TupleItems,
            v(l.tuple_ob_item),
            "PyTupleObject.ob_item",
        ),
        row(Field::VarSize, v(l.tuple_ob_size), "PyVarObject.ob_size"),
        row(Field::ListItems, v(l.list_ob_item), "PyListObject.ob_item"),
        row(Field::DictKeys, v(l.dict_ma_keys), "PyDictObject.ma_keys"),
        row(
            Field::DictValues,
            v(l.dict_ma_values),
            "PyDictObject.ma_values",
        ),
        row(
            Field::FloatValue,
            v(l.float_ob_fval),
            "PyFloatObject.ob_fval",
        ),
        row(
            Field::LongTag,
            v(l.long_lv_tag),
            "_longobject.long_value.lv_tag",
        ),
        row(
            Field::LongDigits,
            v(l.long_ob_digit),
            "_longobject.long_value.ob_digit",
        ),
        row(
            Field::BytesData,
            v(l.bytes_ob_sval),
            "PyBytesObject.ob_sval",
        ),
        row(
            Field::UnicodeState,
            v(l.unicode_state),
            "PyASCIIObject.state",
        ),
        row(
            Field::UnicodeLength,
            v(l.unicode_length),
            "PyASCIIObject.length",
        ),
        row(
            Field::UnicodeAsciiSize,
            v(l.unicode_asciiobject_size),
            "sizeof(PyASCIIObject)",
        ),
    ];
    Ok(Parsed { major, minor, rows })
}
