//! Binary protocol frames: check, then parse as a request and as a response (walking every
//! value and scan key, and decoding the body as a typed value), frame after frame.
#![no_main]

use flin_net::binary::{self, parse_request, parse_response, MAX_REQUEST_BODY_BYTES};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut start = 0;
    while let Ok(len) = binary::check(&data[start..], MAX_REQUEST_BODY_BYTES) {
        assert!(len >= binary::HEADER_LEN && start + len <= data.len());
        let frame = &data[start..start + len];
        let _ = parse_request(frame).map(|request| format!("{:?}", request.op));
        if let Ok(response) = parse_response(frame) {
            let _ = response.values().map(|values| values.count());
            let _ = response.scan_page().map(|page| page.keys.count());
            let _ = response.typed_value();
        }
        start += len;
    }
});
