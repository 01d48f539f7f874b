//! Tracker replies and requests are untrusted: every parser gives a value or an error.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = shoal_tracker::parse_http_announce(data);
    let _ = shoal_tracker::parse_http_scrape(data);
    let _ = shoal_tracker::parse_udp_response(data);
    let _ = shoal_tracker::parse_udp_request(data);
    let _ = shoal_tracker::parse_announce_query(data);
});
