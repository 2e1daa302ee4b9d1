//! The offsets the walk needs, resolved once per dump from the version's
//! table (or `_Py_DebugOffsets`) and checked to be plausible.

use symbols::offsets::{Field, Offsets};

use super::linetable::Format;

/// How frames are laid out in a version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Style {
    /// `PyFrameObject` chain (≤3.10).
    FrameObject,
    /// `_PyInterpreterFrame` chain (3.11+).
    Interpreter,
}

/// The offsets the walk needs, resolved once.
pub(super) struct Layout {
    pub(super) minor: (u32, u32),
    pub(super) style: Style,
    /// `interp->id` (3.7+).
    pub(super) interp_id: Option<u64>,
    pub(super) interp_next: u64,
    pub(super) interp_tstate_head: u64,
    pub(super) interp_gil: Option<u64>,
    pub(super) gil_locked: Option<u64>,
    pub(super) gil_last_holder: Option<u64>,
    pub(super) tstate_next: u64,
    pub(super) tstate_thread_id: u64,
    pub(super) tstate_native_id: Option<u64>,
    pub(super) tstate_len: usize,
    /// ≤3.10: `frame`; 3.11–3.12: `cframe`; 3.13: `current_frame`.
    pub(super) tstate_frame: u64,
    pub(super) cframe_current: Option<u64>,
    pub(super) frame_back: u64,
    pub(super) frame_code: u64,
    pub(super) frame_instr: u64,
    pub(super) frame_owner: Option<u64>,
    /// `is_entry` (3.11).
    pub(super) frame_is_entry: Option<u64>,
    pub(super) frame_len: usize,
    /// `f_localsplus` or `localsplus`: the first local.
    pub(super) frame_localsplus: Option<u64>,
    pub(super) code_filename: u64,
    pub(super) code_name: u64,
    pub(super) code_qualname: Option<u64>,
    pub(super) code_firstlineno: u64,
    pub(super) code_linetable: u64,
    pub(super) code_adaptive: Option<u64>,
    pub(super) code_len: usize,
    pub(super) format: Format,
}

/// Offsets beyond this are garbage (they may come from the target's memory).
pub(super) const MAX_OFFSET: u64 = 1 << 16;

pub(super) fn need(o: &Offsets, f: Field) -> Result<u64, String> {
    match o.get(f) {
        Some(v) if v < MAX_OFFSET => Ok(v),
        Some(v) => Err(format!("implausible offset {v} for {}", f.name())),
        None => Err(format!(
            "no offset for {} in {}.{}",
            f.name(),
            o.major,
            o.minor
        )),
    }
}

pub(super) fn opt(o: &Offsets, f: Field) -> Option<u64> {
    o.get(f).filter(|&v| v < MAX_OFFSET)
}

impl Layout {
    pub(super) fn new(o: &Offsets) -> Result<Layout, String> {
        let v = (o.major, o.minor);
        let style = if v >= (3, 11) {
            Style::Interpreter
        } else {
            Style::FrameObject
        };
        let (tstate_frame, cframe_current) = if v <= (3, 10) {
            (need(o, Field::TstateFrame)?, None)
        } else if v <= (3, 12) {
            (
                need(o, Field::TstateCframe)?,
                Some(need(o, Field::CframeCurrentFrame)?),
            )
        } else {
            (need(o, Field::TstateCurrentFrame)?, None)
        };
        let (frame_back, frame_code, frame_instr, frame_owner) = match style {
            Style::FrameObject => (
                need(o, Field::FrameBack)?,
                need(o, Field::FrameCode)?,
                need(o, Field::FrameLasti)?,
                None,
            ),
            Style::Interpreter => (
                need(o, Field::IframePrevious)?,
                need(o, Field::IframeCode)?,
                need(o, Field::IframeInstr)?,
                opt(o, Field::IframeOwner),
            ),
        };
        let format = if v >= (3, 11) {
            Format::Locations
        } else if v == (3, 10) {
            Format::Linetable310
        } else {
            Format::Lnotab {
                signed: v >= (3, 6),
            }
        };
        let tstate_next = need(o, Field::TstateNext)?;
        let tstate_thread_id = need(o, Field::TstateThreadId)?;
        let tstate_native_id = opt(o, Field::TstateNativeThreadId);
        let tstate_len = [
            tstate_next,
            tstate_thread_id,
            tstate_native_id.unwrap_or(0),
            tstate_frame,
        ]
        .into_iter()
        .max()
        .unwrap() as usize
            + 8;
        let frame_is_entry = opt(o, Field::IframeIsEntry);
        let frame_len = [
            frame_back,
            frame_code,
            frame_instr,
            frame_owner.unwrap_or(0),
            frame_is_entry.unwrap_or(0),
        ]
        .into_iter()
        .max()
        .unwrap() as usize
            + 8;
        let code_filename = need(o, Field::CodeFilename)?;
        let code_name = need(o, Field::CodeName)?;
        let code_qualname = opt(o, Field::CodeQualname);
        let code_firstlineno = need(o, Field::CodeFirstlineno)?;
        let code_linetable = need(o, Field::CodeLinetable)?;
        let code_adaptive = if style == Style::Interpreter {
            Some(need(o, Field::CodeCodeAdaptive)?)
        } else {
            None
        };
        let code_len = [
            code_filename,
            code_name,
            code_qualname.unwrap_or(0),
            code_firstlineno,
            code_linetable,
            opt(o, Field::CodeArgcount).unwrap_or(0),
            opt(o, Field::CodeNlocals).unwrap_or(0),
            opt(o, Field::CodeVarnames).unwrap_or(0),
            opt(o, Field::CodeLocalsplusnames).unwrap_or(0),
            opt(o, Field::CodeLocalspluskinds).unwrap_or(0),
            opt(o, Field::CodeCellvars).unwrap_or(0),
            opt(o, Field::CodeFreevars).unwrap_or(0),
        ]
        .into_iter()
        .max()
        .unwrap() as usize
            + 8;
        Ok(Layout {
            minor: v,
            style,
            interp_id: opt(o, Field::InterpId),
            interp_next: need(o, Field::InterpNext)?,
            interp_tstate_head: need(o, Field::InterpTstateHead)?,
            interp_gil: opt(o, Field::InterpGil),
            gil_locked: opt(o, Field::GilLocked),
            gil_last_holder: opt(o, Field::GilLastHolder),
            tstate_next,
            tstate_thread_id,
            tstate_native_id,
            tstate_len,
            tstate_frame,
            cframe_current,
            frame_back,
            frame_code,
            frame_instr,
            frame_owner,
            frame_is_entry,
            frame_len,
            frame_localsplus: match style {
                Style::FrameObject => opt(o, Field::FrameLocalsplus),
                Style::Interpreter => opt(o, Field::IframeLocalsplus),
            },
            code_filename,
            code_name,
            code_qualname,
            code_firstlineno,
            code_linetable,
            code_adaptive,
            code_len,
            format,
        })
    }
}
