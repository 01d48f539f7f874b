//! A web server's answer (status, Content-Range, Content-Length, Retry-After, Location) is
//! checked without panicking, and an accepted 206 always matches the range asked.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shoal_webseed::response::{check_response, Accept, ResponseHead};
use shoal_webseed::retry::parse_retry_after;

fuzz_target!(|data: &[u8]| {
    if data.len() < 26 {
        return;
    }
    let num = |i: usize| u64::from_le_bytes(data[i..i + 8].try_into().unwrap());
    let status = u16::from_le_bytes([data[0], data[1]]);
    let (offset, len, file_len) = (num(2) % (1 << 40), num(10) % (1 << 30) + 1, num(18));
    let text = String::from_utf8_lossy(&data[26..]);
    let mut parts = text.split('\n');
    let content_range = parts.next();
    let retry_after = parts.next();
    let location = parts.next();
    let content_length = parts.next().and_then(|v| v.parse().ok());
    let head = ResponseHead {
        status,
        content_range,
        content_length,
        retry_after,
        location,
    };
    if let Ok(Accept::Partial) = check_response(&head, offset, len, file_len, num(18)) {
        assert_eq!(status, 206);
    }
    if let Some(v) = retry_after {
        let _ = parse_retry_after(v, num(18));
    }
});
