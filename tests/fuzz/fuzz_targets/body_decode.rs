//! Any bytes as a gzip or deflate body: decoding never panics and never exceeds its cap.
#![no_main]
use apitap::http::body::{Decoded, decode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for enc in ["gzip", "deflate", "x-gzip", "br"] {
        if let Decoded::Done(v) = decode(enc, data, 4096) {
            assert!(v.len() <= 4096);
        }
    }
});
