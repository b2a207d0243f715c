//! Hint files: the bytes as read from disk (header, footer and checksum checks, then entries),
//! and the same bytes as entries inside a valid header and footer, so the entry decoder is
//! reached past the checksum.
#![no_main]

use flin_engine::fuzzing::{decode_hint, decode_hint_entries};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = decode_hint(data, 1);
    let _ = decode_hint_entries(data);
});
