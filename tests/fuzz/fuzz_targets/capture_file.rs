//! Any bytes as a capture file: the pcap/pcapng walker never panics and always ends.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(f) = apitap::capture::file::CaptureFile::from_bytes("fuzz", data.to_vec()) {
        let mut r = f.reader();
        let mut n = 0usize;
        while r.next_frame().is_some() {
            n += 1;
            assert!(n <= data.len());
        }
    }
});
