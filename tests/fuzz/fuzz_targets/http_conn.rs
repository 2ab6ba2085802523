//! Any bytes, split into chunks for either direction with gaps, through the HTTP connection
//! parser: never a panic, kept bodies within the inspection depth.
#![no_main]
use apitap::http::HttpConfig;
use apitap::http::conn::Conn;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let cfg = HttpConfig { body_depth: 256, max_head: 1024, max_pending: 8, decompress: true };
    let mut c = Conn::new(if data.first().is_some_and(|b| b & 1 == 1) { Some(0) } else { None }, &cfg);
    let mut pos = [0u64; 2];
    for (i, part) in data.split(|b| *b == 0).enumerate() {
        let dir = i & 1;
        if part.first() == Some(&0xFF) {
            c.gap(dir, part.len() as u64, i as u64, &cfg);
        } else {
            pos[dir] += part.len() as u64;
            c.data(dir, part, i as u64, Some(pos[dir ^ 1]), &cfg);
        }
    }
    c.flush(u64::MAX / 4, &cfg);
    let (mut t, mut a) = (Vec::new(), Vec::new());
    c.take(&mut t, &mut a);
    for mut tx in t {
        tx.decode_bodies(cfg.body_depth);
        for m in tx.request.iter().chain(tx.response.iter()) {
            assert!(m.body.len() <= cfg.body_depth);
        }
    }
});
