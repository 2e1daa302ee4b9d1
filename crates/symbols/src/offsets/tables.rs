//! One table per CPython minor version: each row is a field, its offset
//! (or size) on 64-bit release builds, and the C member it mirrors, spelled
//! as in DWARF (struct tag or typedef, then members). Reviewed against the
//! headers of each version (`Include/cpython/pystate.h`, `frameobject.h`,
//! `code.h`, `internal/pycore_*.h`) and checked row by row against the DWARF
//! of real builds by `tests/offsets_dwarf.rs`.
//!
//! Adding a version: copy the nearest table, adjust the member names to the
//! new headers, run `PYATTACH_BLESS_OFFSETS=1 cargo test -p pyattach-symbols
//! --test offsets_dwarf -- --nocapture` against a build with DWARF, and
//! review every changed value against the headers.

use super::{Field, Row};

macro_rules! table {
    ($($f:ident = $v:expr => $m:literal;)*) => {
        &[$(Row { field: Field::$f, value: $v, member: $m },)*]
    };
}

/// The table for `major.minor`, if pyattach has one.
pub fn table(major: u32, minor: u32) -> Option<&'static [Row]> {
    Some(match (major, minor) {
        (2, 7) => V2_7,
        (3, 6) => V3_6,
        (3, 7) => V3_7,
        (3, 8) => V3_8,
        (3, 9) => V3_9,
        (3, 10) => V3_10,
        (3, 11) => V3_11,
        (3, 12) => V3_12,
        (3, 13) => V3_13,
        (3, 14) => V3_14,
        (3, 15) => V3_15,
        _ => return None,
    })
}

/// Every version with a table.
pub const VERSIONS: &[(u32, u32)] = &[
    (2, 7),
    (3, 6),
    (3, 7),
    (3, 8),
    (3, 9),
    (3, 10),
    (3, 11),
    (3, 12),
    (3, 13),
    (3, 14),
    (3, 15),
];

pub const V2_7: &[Row] = table! {
    InterpNext = 0 => "_is.next";
    InterpTstateHead = 8 => "_is.tstate_head";
    InterpModules = 16 => "_is.modules";
    TstateNext = 0 => "_ts.next";
    TstateInterp = 8 => "_ts.interp";
    TstateFrame = 16 => "_ts.frame";
    TstateThreadId = 144 => "_ts.thread_id";
    FrameBack = 24 => "_frame.f_back";
    FrameCode = 32 => "_frame.f_code";
    FrameLasti = 120 => "_frame.f_lasti";
    FrameLocalsplus = 376 => "_frame.f_localsplus";
    CodeArgcount = 16 => "PyCodeObject.co_argcount";
    CodeNlocals = 20 => "PyCodeObject.co_nlocals";
    CodeFlags = 28 => "PyCodeObject.co_flags";
    CodeFilename = 80 => "PyCodeObject.co_filename";
    CodeName = 88 => "PyCodeObject.co_name";
    CodeFirstlineno = 96 => "PyCodeObject.co_firstlineno";
    CodeLinetable = 104 => "PyCodeObject.co_lnotab";
    CodeVarnames = 56 => "PyCodeObject.co_varnames";
    CodeCellvars = 72 => "PyCodeObject.co_cellvars";
    CodeFreevars = 64 => "PyCodeObject.co_freevars";
    ObType = 8 => "_object.ob_type";
    VarSize = 16 => "PyVarObject.ob_size";
    TypeName = 24 => "_typeobject.tp_name";
    TypeFlags = 168 => "_typeobject.tp_flags";
    TypeDictoffset = 288 => "_typeobject.tp_dictoffset";
    TypeBasicsize = 32 => "_typeobject.tp_basicsize";
    TupleItems = 24 => "PyTupleObject.ob_item";
    ListItems = 24 => "PyListObject.ob_item";
    FloatValue = 16 => "PyFloatObject.ob_fval";
    ModuleDict = 16 => "PyModuleObject.md_dict";
    BytesData = 36 => "PyStringObject.ob_sval";
    UnicodeLength = 16 => "PyUnicodeObject.length";
    UnicodeData = 24 => "PyUnicodeObject.str";
    UnicodeCharSize = 4 => "sizeof(Py_UNICODE)";
    IntValue = 16 => "PyIntObject.ob_ival";
    LongDigits = 24 => "_longobject.ob_digit";
    DictUsed = 24 => "PyDictObject.ma_used";
    DictMask = 32 => "PyDictObject.ma_mask";
    DictTable = 40 => "PyDictObject.ma_table";
    DictEntrySize = 24 => "sizeof(PyDictEntry)";
    DictEntryKey = 8 => "PyDictEntry.me_key";
    DictEntryValue = 16 => "PyDictEntry.me_value";
    CellRef = 16 => "PyCellObject.ob_ref";
};

pub const V3_6: &[Row] = table! {
    InterpNext = 0 => "_is.next";
    InterpTstateHead = 8 => "_is.tstate_head";
    InterpModules = 16 => "_is.modules";
    TstateNext = 8 => "_ts.next";
    TstateInterp = 16 => "_ts.interp";
    TstateFrame = 24 => "_ts.frame";
    TstateThreadId = 152 => "_ts.thread_id";
    FrameBack = 24 => "_frame.f_back";
    FrameCode = 32 => "_frame.f_code";
    FrameLasti = 120 => "_frame.f_lasti";
    FrameLocalsplus = 376 => "_frame.f_localsplus";
    CodeArgcount = 16 => "PyCodeObject.co_argcount";
    CodeNlocals = 24 => "PyCodeObject.co_nlocals";
    CodeFlags = 32 => "PyCodeObject.co_flags";
    CodeFilename = 96 => "PyCodeObject.co_filename";
    CodeName = 104 => "PyCodeObject.co_name";
    CodeFirstlineno = 36 => "PyCodeObject.co_firstlineno";
    CodeLinetable = 112 => "PyCodeObject.co_lnotab";
    CodeVarnames = 64 => "PyCodeObject.co_varnames";
    CodeCellvars = 80 => "PyCodeObject.co_cellvars";
    CodeFreevars = 72 => "PyCodeObject.co_freevars";
    ObType = 8 => "_object.ob_type";
    VarSize = 16 => "PyVarObject.ob_size";
    TypeName = 24 => "_typeobject.tp_name";
    TypeFlags = 168 => "_typeobject.tp_flags";
    TypeDictoffset = 288 => "_typeobject.tp_dictoffset";
    TypeBasicsize = 32 => "_typeobject.tp_basicsize";
    TupleItems = 24 => "PyTupleObject.ob_item";
    ListItems = 24 => "PyListObject.ob_item";
    FloatValue = 16 => "PyFloatObject.ob_fval";
    ModuleDict = 16 => "PyModuleObject.md_dict";
    BytesData = 32 => "PyBytesObject.ob_sval";
    UnicodeLength = 16 => "PyASCIIObject.length";
    UnicodeState = 32 => "PyASCIIObject.state";
    UnicodeAsciiSize = 48 => "sizeof(PyASCIIObject)";
    UnicodeCompactSize = 72 => "sizeof(PyCompactUnicodeObject)";
    UnicodeData = 72 => "PyUnicodeObject.data";
    LongDigits = 24 => "_longobject.ob_digit";
    DictUsed = 16 => "PyDictObject.ma_used";
    DictKeys = 32 => "PyDictObject.ma_keys";
    DictValues = 40 => "PyDictObject.ma_values";
    KeysSize = 8 => "_dictkeysobject.dk_size";
    KeysNentries = 32 => "_dictkeysobject.dk_nentries";
    KeysIndices = 40 => "_dictkeysobject.dk_indices";
    DictEntrySize = 24 => "sizeof(PyDictKeyEntry)";
    DictEntryKey = 8 => "PyDictKeyEntry.me_key";
    DictEntryValue = 16 => "PyDictKeyEntry.me_value";
    CellRef = 16 => "PyCellObject.ob_ref";
};

pub const V3_7: &[Row] = table! {
    RuntimeInterpretersHead = 24 => "pyruntimestate.interpreters.head";
    RuntimeGil = 1264 => "pyruntimestate.ceval.gil";
    RuntimeTstateCurrent = 1480 => "pyruntimestate.gilstate.tstate_current";
    InterpId = 16 => "_is.id";
    InterpNext = 0 => "_is.next";
    InterpTstateHead = 8 => "_is.tstate_head";
    InterpModules = 40 => "_is.modules";
    GilLocked = 16 => "_gil_runtime_state.locked";
    GilLastHolder = 8 => "_gil_runtime_state.last_holder";
    TstateNext = 8 => "_ts.next";
    TstateInterp = 16 => "_ts.interp";
    TstateFrame = 24 => "_ts.frame";
    TstateThreadId = 176 => "_ts.thread_id";
    FrameBack = 24 => "_frame.f_back";
    FrameCode = 32 => "_frame.f_code";
    FrameLasti = 104 => "_frame.f_lasti";
    FrameLocalsplus = 360 => "_frame.f_localsplus";
    CodeArgcount = 16 => "PyCodeObject.co_argcount";
    CodeNlocals = 24 => "PyCodeObject.co_nlocals";
    CodeFlags = 32 => "PyCodeObject.co_flags";
    CodeFilename = 96 => "PyCodeObject.co_filename";
    CodeName = 104 => "PyCodeObject.co_name";
    CodeFirstlineno = 36 => "PyCodeObject.co_firstlineno";
    CodeLinetable = 112 => "PyCodeObject.co_lnotab";
    CodeVarnames = 64 => "PyCodeObject.co_varnames";
    CodeCellvars = 80 => "PyCodeObject.co_cellvars";
    CodeFreevars = 72 => "PyCodeObject.co_freevars";
    ObType = 8 => "_object.ob_type";
    VarSize = 16 => "PyVarObject.ob_size";
    TypeName = 24 => "_typeobject.tp_name";
    TypeFlags = 168 => "_typeobject.tp_flags";
    TypeDictoffset = 288 => "_typeobject.tp_dictoffset";
    TypeBasicsize = 32 => "_typeobject.tp_basicsize";
    TupleItems = 24 => "PyTupleObject.ob_item";
    ListItems = 24 => "PyListObject.ob_item";
    FloatValue = 16 => "PyFloatObject.ob_fval";
    ModuleDict = 16 => "PyModuleObject.md_dict";
    BytesData = 32 => "PyBytesObject.ob_sval";
    UnicodeLength = 16 => "PyASCIIObject.length";
    UnicodeState = 32 => "PyASCIIObject.state";
    UnicodeAsciiSize = 48 => "sizeof(PyASCIIObject)";
    UnicodeCompactSize = 72 => "sizeof(PyCompactUnicodeObject)";
    UnicodeData = 72 => "PyUnicodeObject.data";
    LongDigits = 24 => "_longobject.ob_digit";
    DictUsed = 16 => "PyDictObject.ma_used";
    DictKeys = 32 => "PyDictObject.ma_keys";
    DictValues = 40 => "PyDictObject.ma_values";
    KeysSize = 8 => "_dictkeysobject.dk_size";
    KeysNentries = 32 => "_dictkeysobject.dk_nentries";
    KeysIndices = 40 => "_dictkeysobject.dk_indices";
    DictEntrySize = 24 => "sizeof(PyDictKeyEntry)";
    DictEntryKey = 8 => "PyDictKeyEntry.me_key";
    DictEntryValue = 16 => "PyDictKeyEntry.me_value";
    CellRef = 16 => "PyCellObject.ob_ref";
};

pub const V3_8: &[Row] = table! {
    RuntimeInterpretersHead = 32 => "pyruntimestate.interpreters.head";
    RuntimeGil = 1152 => "pyruntimestate.ceval.gil";
    RuntimeTstateCurrent = 1368 => "pyruntimestate.gilstate.tstate_current";
    InterpId = 16 => "_is.id";
    InterpNext = 0 => "_is.next";
    InterpTstateHead = 8 => "_is.tstate_head";
    InterpModules = 56 => "_is.modules";
    GilLocked = 16 => "_gil_runtime_state.locked";
    GilLastHolder = 8 => "_gil_runtime_state.last_holder";
    TstateNext = 8 => "_ts.next";
    TstateInterp = 16 => "_ts.interp";
    TstateFrame = 24 => "_ts.frame";
    TstateThreadId = 176 => "_ts.thread_id";
    FrameBack = 24 => "_frame.f_back";
    FrameCode = 32 => "_frame.f_code";
    FrameLasti = 104 => "_frame.f_lasti";
    FrameLocalsplus = 360 => "_frame.f_localsplus";
    CodeArgcount = 16 => "PyCodeObject.co_argcount";
    CodeNlocals = 28 => "PyCodeObject.co_nlocals";
    CodeFlags = 36 => "PyCodeObject.co_flags";
    CodeFilename = 104 => "PyCodeObject.co_filename";
    CodeName = 112 => "PyCodeObject.co_name";
    CodeFirstlineno = 40 => "PyCodeObject.co_firstlineno";
    CodeLinetable = 120 => "PyCodeObject.co_lnotab";
    CodeVarnames = 72 => "PyCodeObject.co_varnames";
    CodeCellvars = 88 => "PyCodeObject.co_cellvars";
    CodeFreevars = 80 => "PyCodeObject.co_freevars";
    ObType = 8 => "_object.ob_type";
    VarSize = 16 => "PyVarObject.ob_size";
    TypeName = 24 => "_typeobject.tp_name";
    TypeFlags = 168 => "_typeobject.tp_flags";
    TypeDictoffset = 288 => "_typeobject.tp_dictoffset";
    TypeBasicsize = 32 => "_typeobject.tp_basicsize";
    TupleItems = 24 => "PyTupleObject.ob_item";
    ListItems = 24 => "PyListObject.ob_item";
    FloatValue = 16 => "PyFloatObject.ob_fval";
    ModuleDict = 16 => "PyModuleObject.md_dict";
    BytesData = 32 => "PyBytesObject.ob_sval";
    UnicodeLength = 16 => "PyASCIIObject.length";
    UnicodeState = 32 => "PyASCIIObject.state";
    UnicodeAsciiSize = 48 => "sizeof(PyASCIIObject)";
    UnicodeCompactSize = 72 => "sizeof(PyCompactUnicodeObject)";
    UnicodeData = 72 => "PyUnicodeObject.data";
    LongDigits = 24 => "_longobject.ob_digit";
    DictUsed = 16 => "PyDictObject.ma_used";
    DictKeys = 32 => "PyDictObject.ma_keys";
    DictValues = 40 => "PyDictObject.ma_values";
    KeysSize = 8 => "_dictkeysobject.dk_size";
    KeysNentries = 32 => "_dictkeysobject.dk_nentries";
    KeysIndices = 40 => "_dictkeysobject.dk_indices";
    DictEntrySize = 24 => "sizeof(PyDictKeyEntry)";
    DictEntryKey = 8 => "PyDictKeyEntry.me_key";
    DictEntryValue = 16 => "PyDictKeyEntry.me_value";
    CellRef = 16 => "PyCellObject.ob_ref";
};

pub const V3_9: &[Row] = table! {
    RuntimeInterpretersHead = 32 => "pyruntimestate.interpreters.head";
    RuntimeGil = 352 => "pyruntimestate.ceval.gil";
    RuntimeTstateCurrent = 568 => "pyruntimestate.gilstate.tstate_current";
    InterpId = 24 => "_is.id";
    InterpNext = 0 => "_is.next";
    InterpTstateHead = 8 => "_is.tstate_head";
    InterpModules = 856 => "_is.modules";
    GilLocked = 16 => "_gil_runtime_state.locked";
    GilLastHolder = 8 => "_gil_runtime_state.last_holder";
    TstateNext = 8 => "_ts.next";
    TstateInterp = 16 => "_ts.interp";
    TstateFrame = 24 => "_ts.frame";
    TstateThreadId = 176 => "_ts.thread_id";
    FrameBack = 24 => "_frame.f_back";
    FrameCode = 32 => "_frame.f_code";
    FrameLasti = 104 => "_frame.f_lasti";
    FrameLocalsplus = 360 => "_frame.f_localsplus";
    CodeArgcount = 16 => "PyCodeObject.co_argcount";
    CodeNlocals = 28 => "PyCodeObject.co_nlocals";
    CodeFlags = 36 => "PyCodeObject.co_flags";
    CodeFilename = 104 => "PyCodeObject.co_filename";
    CodeName = 112 => "PyCodeObject.co_name";
    CodeFirstlineno = 40 => "PyCodeObject.co_firstlineno";
    CodeLinetable = 120 => "PyCodeObject.co_lnotab";
    CodeVarnames = 72 => "PyCodeObject.co_varnames";
    CodeCellvars = 88 => "PyCodeObject.co_cellvars";
    CodeFreevars = 80 => "PyCodeObject.co_freevars";
    ObType = 8 => "_object.ob_type";
    VarSize = 16 => "PyVarObject.ob_size";
    TypeName = 24 => "_typeobject.tp_name";
    TypeFlags = 168 => "_typeobject.tp_flags";
    TypeDictoffset = 288 => "_typeobject.tp_dictoffset";
    TypeBasicsize = 32 => "_typeobject.tp_basicsize";
    TupleItems = 24 => "PyTupleObject.ob_item";
    ListItems = 24 => "PyListObject.ob_item";
    FloatValue = 16 => "PyFloatObject.ob_fval";
    ModuleDict = 16 => "PyModuleObject.md_dict";
    BytesData = 32 => "PyBytesObject.ob_sval";
    UnicodeLength = 16 => "PyASCIIObject.length";
    UnicodeState = 32 => "PyASCIIObject.state";
    UnicodeAsciiSize = 48 => "sizeof(PyASCIIObject)";
    UnicodeCompactSize = 72 => "sizeof(PyCompactUnicodeObject)";
    UnicodeData = 72 => "PyUnicodeObject.data";
    LongDigits = 24 => "_longobject.ob_digit";
    DictUsed = 16 => "PyDictObject.ma_used";
    DictKeys = 32 => "PyDictObject.ma_keys";
    DictValues = 40 => "PyDictObject.ma_values";
    KeysSize = 8 => "_dictkeysobject.dk_size";
    KeysNentries = 32 => "_dictkeysobject.dk_nentries";
    KeysIndices = 40 => "_dictkeysobject.dk_indices";
    DictEntrySize = 24 => "sizeof(PyDictKeyEntry)";
    DictEntryKey = 8 => "PyDictKeyEntry.me_key";
    DictEntryValue = 16 => "PyDictKeyEntry.me_value";
    CellRef = 16 => "PyCellObject.ob_ref";
};

pub const V3_10: &[Row] = table! {
    RuntimeInterpretersHead = 32 => "pyruntimestate.interpreters.head";
    RuntimeGil = 352 => "pyruntimestate.ceval.gil";
    RuntimeTstateCurrent = 568 => "pyruntimestate.gilstate.tstate_current";
    InterpId = 24 => "_is.id";
    InterpNext = 0 => "_is.next";
    InterpTstateHead = 8 => "_is.tstate_head";
    InterpModules = 856 => "_is.modules";
    GilLocked = 16 => "_gil_runtime_state.locked";
    GilLastHolder = 8 => "_gil_runtime_state.last_holder";
    TstateNext = 8 => "_ts.next";
    TstateInterp = 16 => "_ts.interp";
    TstateFrame = 24 => "_ts.frame";
    TstateThreadId = 176 => "_ts.thread_id";
    FrameBack = 24 => "_frame.f_back";
    FrameCode = 32 => "_frame.f_code";
    FrameLasti = 96 => "_frame.f_lasti";
    FrameLocalsplus = 352 => "_frame.f_localsplus";
    CodeArgcount = 16 => "PyCodeObject.co_argcount";
    CodeNlocals = 28 => "PyCodeObject.co_nlocals";
    CodeFlags = 36 => "PyCodeObject.co_flags";
    CodeFilename = 104 => "PyCodeObject.co_filename";
    CodeName = 112 => "PyCodeObject.co_name";
    CodeFirstlineno = 40 => "PyCodeObject.co_firstlineno";
    CodeLinetable = 120 => "PyCodeObject.co_linetable";
    CodeVarnames = 72 => "PyCodeObject.co_varnames";
    CodeCellvars = 88 => "PyCodeObject.co_cellvars";
    CodeFreevars = 80 => "PyCodeObject.co_freevars";
    ObType = 8 => "_object.ob_type";
    VarSize = 16 => "PyVarObject.ob_size";
    TypeName = 24 => "_typeobject.tp_name";
    TypeFlags = 168 => "_typeobject.tp_flags";
    TypeDictoffset = 288 => "_typeobject.tp_dictoffset";
    TypeBasicsize = 32 => "_typeobject.tp_basicsize";
    TupleItems = 24 => "PyTupleObject.ob_item";
    ListItems = 24 => "PyListObject.ob_item";
    FloatValue = 16 => "PyFloatObject.ob_fval";
    ModuleDict = 16 => "PyModuleObject.md_dict";
    BytesData = 32 => "PyBytesObject.ob_sval";
    UnicodeLength = 16 => "PyASCIIObject.length";
    UnicodeState = 32 => "PyASCIIObject.state";
    UnicodeAsciiSize = 48 => "sizeof(PyASCIIObject)";
    UnicodeCompactSize = 72 => "sizeof(PyCompactUnicodeObject)";
    UnicodeData = 72 => "PyUnicodeObject.data";
    LongDigits = 24 => "_longobject.ob_digit";
    DictUsed = 16 => "PyDictObject.ma_used";
    DictKeys = 32 => "PyDictObject.ma_keys";
    DictValues = 40 => "PyDictObject.ma_values";
    KeysSize = 8 => "_dictkeysobject.dk_size";
    KeysNentries = 32 => "_dictkeysobject.dk_nentries";
    KeysIndices = 40 => "_dictkeysobject.dk_indices";
    DictEntrySize = 24 => "sizeof(PyDictKeyEntry)";
    DictEntryKey = 8 => "PyDictKeyEntry.me_key";
    DictEntryValue = 16 => "PyDictKeyEntry.me_value";
    CellRef = 16 => "PyCellObject.ob_ref";
};

pub const V3_11: &[Row] = table! {
    RuntimeInterpretersHead = 40 => "pyruntimestate.interpreters.head";
    RuntimeGil = 360 => "pyruntimestate.ceval.gil";
    RuntimeTstateCurrent = 576 => "pyruntimestate.gilstate.tstate_current";
    InterpId = 48 => "_is.id";
    InterpNext = 0 => "_is.next";
    InterpTstateHead = 16 => "_is.threads.head";
    InterpModules = 888 => "_is.modules";
    GilLocked = 16 => "_gil_runtime_state.locked";
    GilLastHolder = 8 => "_gil_runtime_state.last_holder";
    TstateNext = 8 => "_ts.next";
    TstateInterp = 16 => "_ts.interp";
    TstateCframe = 56 => "_ts.cframe";
    CframeCurrentFrame = 8 => "_PyCFrame.current_frame";
    TstateThreadId = 152 => "_ts.thread_id";
    TstateNativeThreadId = 160 => "_ts.native_thread_id";
    IframePrevious = 48 => "_PyInterpreterFrame.previous";
    IframeCode = 32 => "_PyInterpreterFrame.f_code";
    IframeInstr = 56 => "_PyInterpreterFrame.prev_instr";
    IframeLocalsplus = 72 => "_PyInterpreterFrame.localsplus";
    IframeOwner = 69 => "_PyInterpreterFrame.owner";
    IframeIsEntry = 68 => "_PyInterpreterFrame.is_entry";
    CodeArgcount = 56 => "PyCodeObject.co_argcount";
    CodeNlocals = 80 => "PyCodeObject.co_nlocals";
    CodeFlags = 48 => "PyCodeObject.co_flags";
    CodeFilename = 112 => "PyCodeObject.co_filename";
    CodeName = 120 => "PyCodeObject.co_name";
    CodeQualname = 128 => "PyCodeObject.co_qualname";
    CodeFirstlineno = 72 => "PyCodeObject.co_firstlineno";
    CodeLinetable = 136 => "PyCodeObject.co_linetable";
    CodeCodeAdaptive = 184 => "PyCodeObject.co_code_adaptive";
    CodeLocalsplusnames = 96 => "PyCodeObject.co_localsplusnames";
    CodeLocalspluskinds = 104 => "PyCodeObject.co_localspluskinds";
    ObType = 8 => "_object.ob_type";
    VarSize = 16 => "PyVarObject.ob_size";
    TypeName = 24 => "_typeobject.tp_name";
    TypeFlags = 168 => "_typeobject.tp_flags";
    TypeDictoffset = 288 => "_typeobject.tp_dictoffset";
    TypeBasicsize = 32 => "_typeobject.tp_basicsize";
    HeapTypeCachedKeys = 872 => "_heaptypeobject.ht_cached_keys";
    TupleItems = 24 => "PyTupleObject.ob_item";
    ListItems = 24 => "PyListObject.ob_item";
    FloatValue = 16 => "PyFloatObject.ob_fval";
    ModuleDict = 16 => "PyModuleObject.md_dict";
    BytesData = 32 => "PyBytesObject.ob_sval";
    UnicodeLength = 16 => "PyASCIIObject.length";
    UnicodeState = 32 => "PyASCIIObject.state";
    UnicodeAsciiSize = 48 => "sizeof(PyASCIIObject)";
    UnicodeCompactSize = 72 => "sizeof(PyCompactUnicodeObject)";
    UnicodeData = 72 => "PyUnicodeObject.data";
    LongDigits = 24 => "_longobject.ob_digit";
    DictUsed = 16 => "PyDictObject.ma_used";
    DictKeys = 32 => "PyDictObject.ma_keys";
    DictValues = 40 => "PyDictObject.ma_values";
    KeysLog2Size = 8 => "_dictkeysobject.dk_log2_size";
    KeysLog2IndexBytes = 9 => "_dictkeysobject.dk_log2_index_bytes";
    KeysKind = 10 => "_dictkeysobject.dk_kind";
    KeysNentries = 24 => "_dictkeysobject.dk_nentries";
    DictValuesValues = 0 => "_dictvalues.values";
    KeysIndices = 32 => "_dictkeysobject.dk_indices";
    DictEntrySize = 24 => "sizeof(PyDictKeyEntry)";
    DictEntryKey = 8 => "PyDictKeyEntry.me_key";
    DictEntryValue = 16 => "PyDictKeyEntry.me_value";
    DictUnicodeEntrySize = 16 => "sizeof(PyDictUnicodeEntry)";
    DictUnicodeEntryKey = 0 => "PyDictUnicodeEntry.me_key";
    DictUnicodeEntryValue = 8 => "PyDictUnicodeEntry.me_value";
    CellRef = 16 => "PyCellObject.ob_ref";
};

pub const V3_12: &[Row] = table! {
    RuntimeInterpretersHead = 40 => "pyruntimestate.interpreters.head";
    InterpId = 8 => "_is.id";
    InterpNext = 0 => "_is.next";
    InterpTstateHead = 72 => "_is.threads.head";
    InterpModules = 944 => "_is.imports.modules";
    InterpGil = 384 => "_is.ceval.gil";
    GilLocked = 16 => "_gil_runtime_state.locked";
    GilLastHolder = 8 => "_gil_runtime_state.last_holder";
    TstateNext = 8 => "_ts.next";
    TstateInterp = 16 => "_ts.interp";
    TstateCframe = 56 => "_ts.cframe";
    CframeCurrentFrame = 0 => "_PyCFrame.current_frame";
    TstateThreadId = 136 => "_ts.thread_id";
    TstateNativeThreadId = 144 => "_ts.native_thread_id";
    IframePrevious = 8 => "_PyInterpreterFrame.previous";
    IframeCode = 0 => "_PyInterpreterFrame.f_code";
    IframeInstr = 56 => "_PyInterpreterFrame.prev_instr";
    IframeLocalsplus = 72 => "_PyInterpreterFrame.localsplus";
    IframeOwner = 70 => "_PyInterpreterFrame.owner";
    CodeArgcount = 52 => "PyCodeObject.co_argcount";
    CodeNlocals = 80 => "PyCodeObject.co_nlocals";
    CodeFlags = 48 => "PyCodeObject.co_flags";
    CodeFilename = 112 => "PyCodeObject.co_filename";
    CodeName = 120 => "PyCodeObject.co_name";
    CodeQualname = 128 => "PyCodeObject.co_qualname";
    CodeFirstlineno = 68 => "PyCodeObject.co_firstlineno";
    CodeLinetable = 136 => "PyCodeObject.co_linetable";
    CodeCodeAdaptive = 192 => "PyCodeObject.co_code_adaptive";
    CodeLocalsplusnames = 96 => "PyCodeObject.co_localsplusnames";
    CodeLocalspluskinds = 104 => "PyCodeObject.co_localspluskinds";
    ObType = 8 => "_object.ob_type";
    VarSize = 16 => "PyVarObject.ob_size";
    TypeName = 24 => "_typeobject.tp_name";
    TypeFlags = 168 => "_typeobject.tp_flags";
    TypeDictoffset = 288 => "_typeobject.tp_dictoffset";
    TypeBasicsize = 32 => "_typeobject.tp_basicsize";
    HeapTypeCachedKeys = 880 => "_heaptypeobject.ht_cached_keys";
    TupleItems = 24 => "PyTupleObject.ob_item";
    ListItems = 24 => "PyListObject.ob_item";
    FloatValue = 16 => "PyFloatObject.ob_fval";
    ModuleDict = 16 => "PyModuleObject.md_dict";
    BytesData = 32 => "PyBytesObject.ob_sval";
    UnicodeLength = 16 => "PyASCIIObject.length";
    UnicodeState = 32 => "PyASCIIObject.state";
    UnicodeAsciiSize = 40 => "sizeof(PyASCIIObject)";
    UnicodeCompactSize = 56 => "sizeof(PyCompactUnicodeObject)";
    UnicodeData = 56 => "PyUnicodeObject.data";
    LongTag = 16 => "_longobject.long_value.lv_tag";
    LongDigits = 24 => "_longobject.long_value.ob_digit";
    DictUsed = 16 => "PyDictObject.ma_used";
    DictKeys = 32 => "PyDictObject.ma_keys";
    DictValues = 40 => "PyDictObject.ma_values";
    KeysLog2Size = 8 => "_dictkeysobject.dk_log2_size";
    KeysLog2IndexBytes = 9 => "_dictkeysobject.dk_log2_index_bytes";
    KeysKind = 10 => "_dictkeysobject.dk_kind";
    KeysNentries = 24 => "_dictkeysobject.dk_nentries";
    DictValuesValues = 0 => "_dictvalues.values";
    KeysIndices = 32 => "_dictkeysobject.dk_indices";
    DictEntrySize = 24 => "sizeof(PyDictKeyEntry)";
    DictEntryKey = 8 => "PyDictKeyEntry.me_key";
    DictEntryValue = 16 => "PyDictKeyEntry.me_value";
    DictUnicodeEntrySize = 16 => "sizeof(PyDictUnicodeEntry)";
    DictUnicodeEntryKey = 0 => "PyDictUnicodeEntry.me_key";
    DictUnicodeEntryValue = 8 => "PyDictUnicodeEntry.me_value";
    CellRef = 16 => "PyCellObject.ob_ref";
};

pub const V3_13: &[Row] = table! {
    RuntimeInterpretersHead = 632 => "pyruntimestate.interpreters.head";
    InterpId = 7272 => "_is.id";
    InterpNext = 7264 => "_is.next";
    InterpTstateHead = 7344 => "_is.threads.head";
    InterpModules = 7656 => "_is.imports.modules";
    InterpGil = 16 => "_is.ceval.gil";
    GilLocked = 16 => "_gil_runtime_state.locked";
    GilLastHolder = 8 => "_gil_runtime_state.last_holder";
    TstateNext = 8 => "_ts.next";
    TstateInterp = 16 => "_ts.interp";
    TstateCurrentFrame = 72 => "_ts.current_frame";
    TstateThreadId = 152 => "_ts.thread_id";
    TstateNativeThreadId = 160 => "_ts.native_thread_id";
    IframePrevious = 8 => "_PyInterpreterFrame.previous";
    IframeCode = 0 => "_PyInterpreterFrame.f_executable";
    IframeInstr = 56 => "_PyInterpreterFrame.instr_ptr";
    IframeLocalsplus = 72 => "_PyInterpreterFrame.localsplus";
    IframeOwner = 70 => "_PyInterpreterFrame.owner";
    CodeArgcount = 52 => "PyCodeObject.co_argcount";
    CodeNlocals = 80 => "PyCodeObject.co_nlocals";
    CodeFlags = 48 => "PyCodeObject.co_flags";
    CodeFilename = 112 => "PyCodeObject.co_filename";
    CodeName = 120 => "PyCodeObject.co_name";
    CodeQualname = 128 => "PyCodeObject.co_qualname";
    CodeFirstlineno = 68 => "PyCodeObject.co_firstlineno";
    CodeLinetable = 136 => "PyCodeObject.co_linetable";
    CodeCodeAdaptive = 200 => "PyCodeObject.co_code_adaptive";
    CodeLocalsplusnames = 96 => "PyCodeObject.co_localsplusnames";
    CodeLocalspluskinds = 104 => "PyCodeObject.co_localspluskinds";
    ObType = 8 => "_object.ob_type";
    VarSize = 16 => "PyVarObject.ob_size";
    TypeName = 24 => "_typeobject.tp_name";
    TypeFlags = 168 => "_typeobject.tp_flags";
    TypeDictoffset = 288 => "_typeobject.tp_dictoffset";
    TypeBasicsize = 32 => "_typeobject.tp_basicsize";
    HeapTypeCachedKeys = 880 => "_heaptypeobject.ht_cached_keys";
    TupleItems = 24 => "PyTupleObject.ob_item";
    ListItems = 24 => "PyListObject.ob_item";
    FloatValue = 16 => "PyFloatObject.ob_fval";
    ModuleDict = 16 => "PyModuleObject.md_dict";
    BytesData = 32 => "PyBytesObject.ob_sval";
    UnicodeLength = 16 => "PyASCIIObject.length";
    UnicodeState = 32 => "PyASCIIObject.state";
    UnicodeAsciiSize = 40 => "sizeof(PyASCIIObject)";
    UnicodeCompactSize = 56 => "sizeof(PyCompactUnicodeObject)";
    UnicodeData = 56 => "PyUnicodeObject.data";
    LongTag = 16 => "_longobject.long_value.lv_tag";
    LongDigits = 24 => "_longobject.long_value.ob_digit";
    DictUsed = 16 => "PyDictObject.ma_used";
    DictKeys = 32 => "PyDictObject.ma_keys";
    DictValues = 40 => "PyDictObject.ma_values";
    KeysLog2Size = 8 => "_dictkeysobject.dk_log2_size";
    KeysLog2IndexBytes = 9 => "_dictkeysobject.dk_log2_index_bytes";
    KeysKind = 10 => "_dictkeysobject.dk_kind";
    KeysNentries = 24 => "_dictkeysobject.dk_nentries";
    DictValuesValues = 8 => "_dictvalues.values";
    KeysIndices = 32 => "_dictkeysobject.dk_indices";
    DictEntrySize = 24 => "sizeof(PyDictKeyEntry)";
    DictEntryKey = 8 => "PyDictKeyEntry.me_key";
    DictEntryValue = 16 => "PyDictKeyEntry.me_value";
    DictUnicodeEntrySize = 16 => "sizeof(PyDictUnicodeEntry)";
    DictUnicodeEntryKey = 0 => "PyDictUnicodeEntry.me_key";
    DictUnicodeEntryValue = 8 => "PyDictUnicodeEntry.me_value";
    CellRef = 16 => "PyCellObject.ob_ref";
};

/// Debian's 3.14.10 (its debug file's DWARF; checked by the tests where
/// the sid root is built). Where `_Py_DebugOffsets` gives a member, the
/// target's own value is used instead.
pub const V3_14: &[Row] = table! {
RuntimeInterpretersHead = 808 => "pyruntimestate.interpreters.head";
    InterpId = 7280 => "_is.id";
    InterpNext = 7272 => "_is.next";
    InterpTstateHead = 7344 => "_is.threads.head";
    InterpModules = 7688 => "_is.imports.modules";
    InterpGil = 16 => "_is.ceval.gil";
    GilLocked = 16 => "_gil_runtime_state.locked";
    GilLastHolder = 8 => "_gil_runtime_state.last_holder";
    TstateNext = 8 => "_ts.next";
    TstateInterp = 16 => "_ts.interp";
    TstateCurrentFrame = 72 => "_ts.current_frame";
    TstateThreadId = 152 => "_ts.thread_id";
    TstateNativeThreadId = 160 => "_ts.native_thread_id";
    IframePrevious = 8 => "_PyInterpreterFrame.previous";
    IframeCode = 0 => "_PyInterpreterFrame.f_executable";
    IframeInstr = 56 => "_PyInterpreterFrame.instr_ptr";
    IframeLocalsplus = 80 => "_PyInterpreterFrame.localsplus";
    IframeOwner = 74 => "_PyInterpreterFrame.owner";
    CodeArgcount = 52 => "PyCodeObject.co_argcount";
    CodeNlocals = 80 => "PyCodeObject.co_nlocals";
    CodeFlags = 48 => "PyCodeObject.co_flags";
    CodeFilename = 112 => "PyCodeObject.co_filename";
    CodeName = 120 => "PyCodeObject.co_name";
    CodeQualname = 128 => "PyCodeObject.co_qualname";
    CodeFirstlineno = 68 => "PyCodeObject.co_firstlineno";
    CodeLinetable = 136 => "PyCodeObject.co_linetable";
    CodeCodeAdaptive = 208 => "PyCodeObject.co_code_adaptive";
    CodeLocalsplusnames = 96 => "PyCodeObject.co_localsplusnames";
    CodeLocalspluskinds = 104 => "PyCodeObject.co_localspluskinds";
    ObType = 8 => "_object.ob_type";
    VarSize = 16 => "PyVarObject.ob_size";
    TypeName = 24 => "_typeobject.tp_name";
    TypeFlags = 168 => "_typeobject.tp_flags";
    TypeDictoffset = 288 => "_typeobject.tp_dictoffset";
    TypeBasicsize = 32 => "_typeobject.tp_basicsize";
    HeapTypeCachedKeys = 880 => "_heaptypeobject.ht_cached_keys";
    TupleItems = 32 => "PyTupleObject.ob_item";
    ListItems = 24 => "PyListObject.ob_item";
    FloatValue = 16 => "PyFloatObject.ob_fval";
    ModuleDict = 16 => "PyModuleObject.md_dict";
    BytesData = 32 => "PyBytesObject.ob_sval";
    UnicodeLength = 16 => "PyASCIIObject.length";
    UnicodeState = 32 => "PyASCIIObject.state";
    UnicodeAsciiSize = 40 => "sizeof(PyASCIIObject)";
    UnicodeCompactSize = 56 => "sizeof(PyCompactUnicodeObject)";
    UnicodeData = 56 => "PyUnicodeObject.data";
    LongTag = 16 => "_longobject.long_value.lv_tag";
    LongDigits = 24 => "_longobject.long_value.ob_digit";
    DictUsed = 16 => "PyDictObject.ma_used";
    DictKeys = 32 => "PyDictObject.ma_keys";
    DictValues = 40 => "PyDictObject.ma_values";
    KeysLog2Size = 8 => "_dictkeysobject.dk_log2_size";
    KeysLog2IndexBytes = 9 => "_dictkeysobject.dk_log2_index_bytes";
    KeysKind = 10 => "_dictkeysobject.dk_kind";
    KeysNentries = 24 => "_dictkeysobject.dk_nentries";
    DictValuesValues = 8 => "_dictvalues.values";
    KeysIndices = 32 => "_dictkeysobject.dk_indices";
    DictEntrySize = 24 => "sizeof(PyDictKeyEntry)";
    DictEntryKey = 8 => "PyDictKeyEntry.me_key";
    DictEntryValue = 16 => "PyDictKeyEntry.me_value";
    DictUnicodeEntrySize = 16 => "sizeof(PyDictUnicodeEntry)";
    DictUnicodeEntryKey = 0 => "PyDictUnicodeEntry.me_key";
    DictUnicodeEntryValue = 8 => "PyDictUnicodeEntry.me_value";
    CellRef = 16 => "PyCellObject.ob_ref";
};

/// Debian's 3.15.2, as [`V3_14`].
pub const V3_15: &[Row] = table! {
RuntimeInterpretersHead = 936 => "pyruntimestate.interpreters.head";
    InterpId = 7272 => "_is.id";
    InterpNext = 7264 => "_is.next";
    InterpTstateHead = 7336 => "_is.threads.head";
    InterpModules = 7592 => "_is.imports.modules";
    InterpGil = 16 => "_is.ceval.gil";
    GilLocked = 16 => "_gil_runtime_state.locked";
    GilLastHolder = 8 => "_gil_runtime_state.last_holder";
    TstateNext = 8 => "_ts.next";
    TstateInterp = 16 => "_ts.interp";
    TstateCurrentFrame = 72 => "_ts.current_frame";
    TstateThreadId = 176 => "_ts.thread_id";
    TstateNativeThreadId = 184 => "_ts.native_thread_id";
    IframePrevious = 8 => "_PyInterpreterFrame.previous";
    IframeCode = 0 => "_PyInterpreterFrame.f_executable";
    IframeInstr = 56 => "_PyInterpreterFrame.instr_ptr";
    IframeLocalsplus = 80 => "_PyInterpreterFrame.localsplus";
    IframeOwner = 74 => "_PyInterpreterFrame.owner";
    CodeArgcount = 52 => "PyCodeObject.co_argcount";
    CodeNlocals = 80 => "PyCodeObject.co_nlocals";
    CodeFlags = 48 => "PyCodeObject.co_flags";
    CodeFilename = 112 => "PyCodeObject.co_filename";
    CodeName = 120 => "PyCodeObject.co_name";
    CodeQualname = 128 => "PyCodeObject.co_qualname";
    CodeFirstlineno = 68 => "PyCodeObject.co_firstlineno";
    CodeLinetable = 136 => "PyCodeObject.co_linetable";
    CodeCodeAdaptive = 208 => "PyCodeObject.co_code_adaptive";
    CodeLocalsplusnames = 96 => "PyCodeObject.co_localsplusnames";
    CodeLocalspluskinds = 104 => "PyCodeObject.co_localspluskinds";
    ObType = 8 => "_object.ob_type";
    VarSize = 16 => "PyVarObject.ob_size";
    TypeName = 24 => "_typeobject.tp_name";
    TypeFlags = 168 => "_typeobject.tp_flags";
    TypeDictoffset = 288 => "_typeobject.tp_dictoffset";
    TypeBasicsize = 32 => "_typeobject.tp_basicsize";
    HeapTypeCachedKeys = 888 => "_heaptypeobject.ht_cached_keys";
    TupleItems = 32 => "PyTupleObject.ob_item";
    ListItems = 24 => "PyListObject.ob_item";
    FloatValue = 16 => "PyFloatObject.ob_fval";
    ModuleDict = 16 => "PyModuleObject.md_dict";
    BytesData = 32 => "PyBytesObject.ob_sval";
    UnicodeLength = 16 => "PyASCIIObject.length";
    UnicodeState = 32 => "PyASCIIObject.state";
    UnicodeAsciiSize = 40 => "sizeof(PyASCIIObject)";
    UnicodeCompactSize = 56 => "sizeof(PyCompactUnicodeObject)";
    UnicodeData = 56 => "PyUnicodeObject.data";
    LongTag = 16 => "_longobject.long_value.lv_tag";
    LongDigits = 24 => "_longobject.long_value.ob_digit";
    DictUsed = 16 => "PyDictObject.ma_used";
    DictKeys = 32 => "PyDictObject.ma_keys";
    DictValues = 40 => "PyDictObject.ma_values";
    KeysLog2Size = 8 => "_dictkeysobject.dk_log2_size";
    KeysLog2IndexBytes = 9 => "_dictkeysobject.dk_log2_index_bytes";
    KeysKind = 10 => "_dictkeysobject.dk_kind";
    KeysNentries = 24 => "_dictkeysobject.dk_nentries";
    DictValuesValues = 8 => "_dictvalues.values";
    KeysIndices = 32 => "_dictkeysobject.dk_indices";
    DictEntrySize = 24 => "sizeof(PyDictKeyEntry)";
    DictEntryKey = 8 => "PyDictKeyEntry.me_key";
    DictEntryValue = 16 => "PyDictKeyEntry.me_value";
    DictUnicodeEntrySize = 16 => "sizeof(PyDictUnicodeEntry)";
    DictUnicodeEntryKey = 0 => "PyDictUnicodeEntry.me_key";
    DictUnicodeEntryValue = 8 => "PyDictUnicodeEntry.me_value";
    CellRef = 16 => "PyCellObject.ob_ref";
};
