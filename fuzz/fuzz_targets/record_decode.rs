//! Segment bytes as recovery scans them (CRC checked) and as compaction reads batch members
//! (CRC not checked, so the fuzzer gets past the checksum to the length and batch logic), and
//! the segment header. `flin_engine::fuzzing` asserts the decoders' postconditions.
#![no_main]

use flin_engine::fuzzing::{decode_segment_header, scan_records};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for verify_crc in [false, true] {
        let (_, end) = scan_records(data, verify_crc);
        assert!(end.offset <= data.len());
    }
    let _ = decode_segment_header(data);
});
