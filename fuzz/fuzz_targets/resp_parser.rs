//! RESP requests as a connection receives them: the resumable checker fed in chunks (sizes from
//! the first input byte) must find the same commands and the same error as when fed whole.
#![no_main]

use flin_net::resp::{self, Checker};
use flin_net::Error;
use libfuzzer_sys::fuzz_target;

fn commands(input: &[u8], chunk: usize) -> (Vec<Vec<Vec<u8>>>, Option<String>) {
    let mut buf = Vec::new();
    let (mut start, mut fed) = (0, 0);
    let mut checker = Checker::new();
    let mut ranges = Vec::new();
    let mut found = Vec::new();
    while fed < input.len() {
        let more = &input[fed..(fed + chunk).min(input.len())];
        buf.extend_from_slice(more);
        fed += more.len();
        loop {
            match checker.check(&buf[start..]) {
                Ok(frame) => {
                    assert!(frame.len <= buf.len() - start);
                    resp::parse(&mut buf[start..], &frame, &mut ranges);
                    assert_eq!(ranges.len(), frame.argc);
                    let bytes = &buf[start..start + frame.len];
                    found.push(ranges.iter().map(|r| bytes[r.clone()].to_vec()).collect());
                    start += frame.len;
                }
                Err(Error::Incomplete) => break,
                Err(error) => return (found, Some(error.to_string())),
            }
        }
    }
    (found, None)
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, input)) = data.split_first() else {
        return;
    };
    let chunk = (first as usize % 16) + 1;
    assert_eq!(commands(input, input.len().max(1)), commands(input, chunk));
});
