//! Property tests: hostile bytes at every layer never panic and never break the caps.
//! (Fuzz targets go deeper; these run in CI on every change.)

use apitap::capture::Frame;
use apitap::capture::file::CaptureFile;
use apitap::decode::{DecodeConfig, Decoder};
use apitap::flow::{FlowConfig, FlowTable};
use apitap::http::HttpConfig;
use apitap::http::conn::Conn;
use apitap::reassembly::ReassemblyConfig;
use proptest::prelude::*;

mod common;

fn eth_ipv4_tcp(seq: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
    common::tcp_frame([10, 0, 0, 1], [10, 0, 0, 2], 40000, 80, seq, 0, flags, payload)
}

fn run_frames(frames: &[(u32, Vec<u8>)]) {
    let mut d = Decoder::new(DecodeConfig::default());
    let fcfg = FlowConfig {
        max_flows: 64,
        ..FlowConfig::default()
    };
    let rcfg = ReassemblyConfig {
        max_ooo_per_stream: 4096,
        max_ooo_total: 16384,
        ..ReassemblyConfig::default()
    };
    let mut flows = FlowTable::new(fcfg, rcfg.clone(), HttpConfig::default());
    let mut out = Vec::new();
    for (i, (lt, data)) in frames.iter().enumerate() {
        let fr = Frame {
            ts: i as u64 * 1000,
            linktype: *lt,
            data,
            orig_len: data.len() as u32,
        };
        d.decode(&fr, &mut |s| flows.process(s, &mut out));
        assert!(flows.buffered_bytes() <= rcfg.max_ooo_total + 65_536);
        assert!(flows.active() <= 64);
    }
    flows.flush_all(u64::MAX / 2, &mut out);
    assert_eq!(flows.buffered_bytes(), 0);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_frames_never_panic(frames in prop::collection::vec((prop::sample::select(vec![0u32, 1, 101, 113, 276, 12345]), prop::collection::vec(any::<u8>(), 0..200)), 1..40)) {
        run_frames(&frames);
    }

    #[test]
    fn bit_flipped_and_truncated_tcp_frames_never_panic(
        flips in prop::collection::vec((0usize..120, any::<u8>()), 0..6),
        cut in 0usize..120,
        seqs in prop::collection::vec(any::<u32>(), 1..12),
    ) {
        let mut frames = Vec::new();
        for (i, s) in seqs.iter().enumerate() {
            let mut f = eth_ipv4_tcp(*s, if i == 0 { 0x02 } else { 0x18 }, b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello");
            for (pos, x) in &flips {
                if let Some(b) = f.get_mut(*pos) { *b ^= *x; }
            }
            if i % 3 == 2 { f.truncate(cut.min(f.len())); }
            frames.push((1, f));
        }
        run_frames(&frames);
    }

    #[test]
    fn arbitrary_http_bytes_never_panic(chunks in prop::collection::vec((0usize..2, prop::collection::vec(any::<u8>(), 0..300), any::<bool>(), 0u64..5000), 1..30)) {
        let cfg = HttpConfig { body_depth: 128, max_head: 512, max_pending: 4, decompress: true };
        let mut c = Conn::new(None, &cfg);
        for (i, (dir, bytes, gap, n)) in chunks.iter().enumerate() {
            if *gap { c.gap(*dir, *n, i as u64, &cfg) } else { c.data(*dir, bytes, i as u64, Some(*n), &cfg) }
        }
        c.flush(1 << 40, &cfg);
        let (mut t, mut a) = (Vec::new(), Vec::new());
        c.take(&mut t, &mut a);
        for tx in &t {
            for m in tx.request.iter().chain(tx.response.iter()) {
                prop_assert!(m.body.len() <= 128);
            }
        }
    }

    #[test]
    fn http_like_bytes_never_panic(parts in prop::collection::vec(prop::sample::select(vec![
        "GET / HTTP/1.1\r\n", "HTTP/1.1 200 OK\r\n", "Content-Length: 3\r\n", "Transfer-Encoding: chunked\r\n",
        "\r\n", "abc", "5\r\nhello\r\n", "0\r\n\r\n", "HEAD /x HTTP/1.0\r\n", "HTTP/1.1 100 Continue\r\n\r\n",
        "Content-Length: 99999999999999999999\r\n", "ffffffffffffffff\r\n", "Upgrade: x\r\n", "HTTP/1.1 101 S\r\n",
        "CONNECT a:443 HTTP/1.1\r\n", "\n", "Content-Encoding: gzip\r\n",
    ]), 1..40), dirs in prop::collection::vec(0usize..2, 40)) {
        let cfg = HttpConfig::default();
        let mut c = Conn::new(Some(0), &cfg);
        for (i, p) in parts.iter().enumerate() {
            c.data(dirs[i], p.as_bytes(), i as u64, None, &cfg);
        }
        c.flush(1 << 40, &cfg);
    }

    #[test]
    fn arbitrary_capture_files_never_panic(mut bytes in prop::collection::vec(any::<u8>(), 0..400), kind in 0u8..3) {
        // Give the walker a valid header half of the time so it reaches the records.
        match kind {
            0 => { let mut h = vec![0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 1, 0, 0, 0]; h.append(&mut bytes); bytes = h; }
            1 => { let mut h = vec![0x0a, 0x0d, 0x0d, 0x0a, 28, 0, 0, 0, 0x4d, 0x3c, 0x2b, 0x1a, 1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 28, 0, 0, 0]; h.append(&mut bytes); bytes = h; }
            _ => {}
        }
        if let Ok(f) = CaptureFile::from_bytes("prop", bytes) {
            let mut r = f.reader();
            let mut n = 0;
            while r.next_frame().is_some() { n += 1; prop_assert!(n < 10_000); }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// A rule file of any shape is accepted or refused with a message naming the file; the
    /// parser never panics.
    #[test]
    fn rule_files_never_panic(text in "(\\[\\[rule\\]\\]\n|id = \"[a-z]{1,4}\"\n|sid = [0-9]{1,3}\n|type = \"(scanner|enumeration|nope)\"\n|match = \\{ [a-z_]{1,12} = \"[ -~]{0,12}\" \\}\n|threshold = \\{ count = [0-9]{1,3}, window = [0-9]{1,4}, distinct = \"[a-z._]{1,12}\" \\}\n|entity = \"[a-z._]{1,12}\"\n|[ -~]{0,20}\n){0,12}") {
        if let Err(e) = apitap::rules::RuleSet::parse("p.toml", &text) {
            prop_assert!(e.0.starts_with("p.toml"), "{}", e.0);
        }
    }

    /// The classifiers and the sensitive-data scan read any request and response bytes.
    #[test]
    fn classifiers_never_panic(uri in "/[ -~]{0,80}", hv in "[ -~]{0,80}", body in proptest::collection::vec(any::<u8>(), 0..600)) {
        let q = apitap::http::Message {
            method: "POST".into(),
            uri,
            headers: vec![("User-Agent".into(), hv.clone()), ("Content-Type".into(), "application/json".into()), ("Referer".into(), hv)].into(),
            body_len: body.len() as u64,
            body: body.clone(),
            ..Default::default()
        };
        let r = apitap::http::Message {
            status: 200,
            headers: vec![("Content-Type".into(), "text/plain".into())].into(),
            body_len: body.len() as u64,
            body,
            ..Default::default()
        };
        let tx = apitap::http::Transaction::new(Some(q), Some(r), false);
        let sens = apitap::catalog::sensitive::scan_response(tx.response.as_ref().expect("response"));
        let inputs = apitap::detect::Inputs::of(&tx);
        let _ = apitap::detect::classify(&tx, &inputs, &sens);
    }
}

proptest! {
    /// RFC 9112 origin-form: the path is everything before `?`. Whatever query is appended
    /// (URLs with `://` and `/` included), `api.path` and `api.endpoint` do not change.
    #[test]
    fn appending_a_query_never_changes_path_or_endpoint(
        segs in proptest::collection::vec("[A-Za-z0-9._~:@!$&'()*+,;=%-]{0,12}", 1..6),
        query in "[ -~]{0,80}",
    ) {
        let path = format!("/{}", segs.join("/"));
        let with_query = format!("{path}?{query}");
        let p0 = apitap::util::target_path(&path);
        let p1 = apitap::util::target_path(&with_query);
        prop_assert_eq!(p0, p1);
        let t0 = apitap::catalog::template::template(p0).0;
        let t1 = apitap::catalog::template::template(p1).0;
        prop_assert_eq!(t0, t1);
        let url_query = format!("{path}?url=http://169.254.169.254/{query}");
        prop_assert_eq!(apitap::util::target_path(&url_query), p0);
    }
}
