//! Any byte string given to the ELF parsing of `symbols` (headers, symbol
//! tables, relocations, `.gnu_debugdata`, version detection) must produce a
//! result or an error, never a panic or a hang.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = symbols::inspect_bytes(data.to_vec());
});
