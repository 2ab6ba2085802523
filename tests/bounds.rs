//! Bounded memory against hostile traffic: each test generates a capture that pushes one cap
//! far past its limit, replays it, and checks that apitap's own memory (peak anonymous RSS,
//! sampled while it runs) stays
//! under a bound far below what the traffic would take unbounded, and that the overflow is
//! counted or reported.

mod common;

use std::io::Write;

use common::{Conv, PcapWriter, final_stats, run_measured, run_peak, tcp_frame};

fn cfg_file(dir: &std::path::Path, toml: &str) -> String {
    let p = dir.join("apitap.toml");
    std::fs::write(&p, toml).expect("config");
    p.to_string_lossy().into_owned()
}

#[test]
fn syn_flood_from_a_million_spoofed_sources() {
    let dir = tempfile::tempdir().expect("tmp");
    let cap = dir.path().join("synflood.pcap");
    let mut w = PcapWriter::create(&cap);
    for i in 0..1_000_000u32 {
        let src = [11, (i >> 16) as u8, (i >> 8) as u8, i as u8];
        w.frame(&tcp_frame(
            src,
            [10, 0, 0, 1],
            1024 + (i % 50000) as u16,
            80,
            i,
            0,
            0x02,
            b"",
        ));
    }
    w.finish();
    let conf = cfg_file(dir.path(), "[flow]\nmax_flows = 65536\n");
    let (st, out, err, peak_kb) = run_measured(&["replay", cap.to_str().unwrap_or_default(), "-q", "--config", &conf]);
    assert!(st.success(), "{err}");
    let s = final_stats(&out);
    assert_eq!(s["flow"]["created"], 1_000_000);
    assert!(
        s["flow"]["evicted"].as_u64().unwrap_or(0) >= 1_000_000 - 65_536,
        "{}",
        s["flow"]
    );
    // Unbounded, a million flows take several hundred MB; capped at 65,536 far less.
    assert!(peak_kb < 120 * 1024, "peak anonymous RSS {peak_kb} KiB");
}

#[test]
fn out_of_order_segments_in_five_thousand_flows() {
    let dir = tempfile::tempdir().expect("tmp");
    let cap = dir.path().join("ooo.pcap");
    let mut w = PcapWriter::create(&cap);
    let seg = vec![b'x'; 40_000];
    for i in 0..5_000u32 {
        let c = [12, (i >> 16) as u8, (i >> 8) as u8, i as u8];
        w.frame(&tcp_frame(c, [10, 0, 0, 1], 2000, 80, 100, 0, 0x02, b""));
        // a hole of 1000 bytes before each 40 KB segment
        w.frame(&tcp_frame(c, [10, 0, 0, 1], 2000, 80, 101 + 1000, 0, 0x18, &seg));
    }
    w.finish();
    let conf = cfg_file(dir.path(), "[reassembly]\nmax_ooo_total = 8388608\n");
    let (st, out, err, peak_kb) = run_measured(&["replay", cap.to_str().unwrap_or_default(), "-q", "--config", &conf]);
    assert!(st.success(), "{err}");
    let s = final_stats(&out);
    assert!(
        s["reassembly"]["cap_skips"].as_u64().unwrap_or(0) > 4_000,
        "{}",
        s["reassembly"]
    );
    assert!(s["reassembly"]["gaps"].as_u64().unwrap_or(0) >= 5_000);
    // 200 MB would wait in buffers unbounded; the cap is 8 MiB
    assert!(peak_kb < 80 * 1024, "peak anonymous RSS {peak_kb} KiB");
}

#[test]
fn endless_pipelined_requests_without_responses() {
    let dir = tempfile::tempdir().expect("tmp");
    let cap = dir.path().join("pipeline.pcap");
    let mut w = PcapWriter::create(&cap);
    let mut c = Conv::open(&mut w, [10, 0, 0, 2], [10, 0, 0, 1], 40000, 80);
    let batch: Vec<u8> = b"GET /p HTTP/1.1\r\nHost: a\r\n\r\n".repeat(50);
    for _ in 0..1200 {
        c.client(&mut w, &batch);
    }
    w.finish();
    let (st, out, err, peak_kb) = run_measured(&["replay", cap.to_str().unwrap_or_default(), "-q"]);
    assert!(st.success(), "{err}");
    let s = final_stats(&out);
    // every request is reported (answered or not), the queue never holds more than 64
    assert_eq!(s["http"]["transactions"], 60_000);
    assert!(
        s["events"]["anomalies_suppressed"].as_u64().unwrap_or(0) > 0,
        "{}",
        s["events"]
    );
    assert!(out.contains("TOO_MANY_PIPELINED_REQUESTS"));
    assert!(peak_kb < 100 * 1024, "peak anonymous RSS {peak_kb} KiB");
}

#[test]
fn ten_gigabyte_chunk_is_counted_not_kept() {
    let dir = tempfile::tempdir().expect("tmp");
    let cap = dir.path().join("bigchunk.pcap");
    let mut w = PcapWriter::create(&cap);
    let mut c = Conv::open(&mut w, [10, 0, 0, 2], [10, 0, 0, 1], 40001, 80);
    c.client(&mut w, b"GET /download HTTP/1.1\r\nHost: a\r\n\r\n");
    // one chunk announced as 10 GiB (0x280000000 bytes); 42 MB of it is in the capture
    c.server(
        &mut w,
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n280000000\r\n",
    );
    let data = vec![b'{'; 1400];
    for _ in 0..30_000 {
        c.server(&mut w, &data);
    }
    w.finish();
    let (st, out, err, peak_kb) = run_measured(&["replay", cap.to_str().unwrap_or_default(), "-q"]);
    assert!(st.success(), "{err}");
    let http: Vec<serde_json::Value> = out
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["event_type"] == "http")
        .collect();
    assert_eq!(http.len(), 1);
    assert_eq!(http[0]["api"]["response_body_bytes"], 42_000_000u64);
    assert_eq!(http[0]["api"]["truncated"], true);
    assert!(peak_kb < 60 * 1024, "peak anonymous RSS {peak_kb} KiB");
}

#[test]
fn header_flood_is_cut_at_max_head() {
    let dir = tempfile::tempdir().expect("tmp");
    let cap = dir.path().join("headers.pcap");
    let mut w = PcapWriter::create(&cap);
    let mut c = Conv::open(&mut w, [10, 0, 0, 2], [10, 0, 0, 1], 40002, 80);
    c.client(&mut w, b"GET / HTTP/1.1\r\n");
    // long header lines: the 32 KiB head limit is reached before the 128-header one
    let mut line = b"X-Flood: ".to_vec();
    line.extend(vec![b'a'; 4000]);
    line.extend(b"\r\n");
    let lines = line.repeat(10);
    for _ in 0..2_000 {
        c.client(&mut w, &lines);
    }
    w.finish();
    let (st, out, err, peak_kb) = run_measured(&["replay", cap.to_str().unwrap_or_default(), "-q"]);
    assert!(st.success(), "{err}");
    assert!(out.contains("HEADER_TOO_LONG"), "an anomaly reports the flood");
    assert!(peak_kb < 60 * 1024, "peak anonymous RSS {peak_kb} KiB");
}

#[test]
fn gzip_bomb_decodes_only_to_the_inspection_depth() {
    let dir = tempfile::tempdir().expect("tmp");
    let cap = dir.path().join("bomb.pcap");
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..512 {
        enc.write_all(&zeros).expect("gzip");
    }
    let bomb = enc.finish().expect("gzip"); // 512 MiB of zeros in well under 1 MiB
    let mut w = PcapWriter::create(&cap);
    let mut c = Conv::open(&mut w, [10, 0, 0, 2], [10, 0, 0, 1], 40003, 80);
    c.client(&mut w, b"GET /data HTTP/1.1\r\nHost: a\r\n\r\n");
    c.server(
        &mut w,
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\nContent-Length: {}\r\n\r\n",
            bomb.len()
        )
        .as_bytes(),
    );
    for part in bomb.chunks(1400) {
        c.server(&mut w, part);
    }
    w.finish();
    let (st, out, err, peak_kb) = run_measured(&["replay", cap.to_str().unwrap_or_default(), "-q"]);
    assert!(st.success(), "{err}");
    assert!(out.contains(&format!("\"response_body_bytes\":{}", bomb.len())));
    assert!(peak_kb < 60 * 1024, "peak anonymous RSS {peak_kb} KiB");
}

#[test]
fn fragment_flood_stays_within_the_fragment_cap() {
    let dir = tempfile::tempdir().expect("tmp");
    let cap = dir.path().join("frags.pcap");
    let mut w = PcapWriter::create(&cap);
    // 100,000 datagrams, each a first fragment of 1,480 bytes whose rest never comes: 148 MB
    // would wait unbounded; the cap is 4 MiB.
    let payload = vec![0u8; 1480];
    for i in 0..100_000u32 {
        let mut f = tcp_frame(
            [13, (i >> 16) as u8, (i >> 8) as u8, i as u8],
            [10, 0, 0, 1],
            5000,
            80,
            1,
            0,
            0x18,
            &payload[20..],
        );
        // IP id = i, More Fragments set, offset 0
        f[18] = (i >> 8) as u8;
        f[19] = i as u8;
        f[20] = 0x20;
        f[21] = 0;
        w.frame(&f);
    }
    w.finish();
    let conf = cfg_file(dir.path(), "[decode]\nfrag_memory = 4194304\n");
    let (st, out, err, peak_kb) = run_measured(&["replay", cap.to_str().unwrap_or_default(), "-q", "--config", &conf]);
    assert!(st.success(), "{err}");
    let s = final_stats(&out);
    assert!(
        s["decoder"]["frag_memcap_drops"].as_u64().unwrap_or(0) > 50_000,
        "{}",
        s["decoder"]
    );
    assert!(s["memory"]["frag_bytes"].as_u64().unwrap_or(u64::MAX) <= 4_194_304);
    assert!(peak_kb < 60 * 1024, "peak anonymous RSS {peak_kb} KiB");
}

#[test]
fn tiny_fragment_flood_stays_within_the_fragment_cap_in_real_memory() {
    let dir = tempfile::tempdir().expect("tmp");
    let cap = dir.path().join("tinyfrags.pcap");
    let mut w = PcapWriter::create(&cap);
    // 1,000,000 datagrams, each a first fragment of 8 bytes whose rest never comes. Counting
    // bytes alone, 16 MiB holds two million of them, ~49 times the cap in real memory (each
    // costs its table slot and bookkeeping); counting what they cost, the cap holds.
    for i in 0..1_000_000u32 {
        let mut f = tcp_frame(
            [14, (i >> 16) as u8, (i >> 8) as u8, i as u8],
            [10, 0, 0, 1],
            5000,
            80,
            1,
            0,
            0x02,
            b"",
        );
        f.truncate(14 + 20 + 8);
        f[16] = 0;
        f[17] = 28;
        f[18] = (i >> 8) as u8;
        f[19] = i as u8;
        f[20] = 0x20;
        f[21] = 0;
        w.frame(&f);
    }
    w.finish();
    // One millisecond between packets: a timeout longer than the flood keeps every datagram waiting.
    let conf = cfg_file(dir.path(), "[decode]\nfrag_memory = 16777216\nfrag_timeout = 100000\n");
    let (st, out, err, peak_kb) = run_measured(&["replay", cap.to_str().unwrap_or_default(), "-q", "--config", &conf]);
    assert!(st.success(), "{err}");
    let s = final_stats(&out);
    assert!(
        s["decoder"]["frag_memcap_drops"].as_u64().unwrap_or(0) > 500_000,
        "{}",
        s["decoder"]
    );
    assert!(s["memory"]["frag_bytes"].as_u64().unwrap_or(u64::MAX) <= 16 << 20);
    // 16 MiB of fragments plus the process itself (the 4 MiB flood above peaks under 60 MiB).
    eprintln!("tiny fragment flood: peak anonymous RSS {peak_kb} KiB");
    assert!(peak_kb < 90 * 1024, "peak anonymous RSS {peak_kb} KiB");
}

/// A scanner's flood: one million distinct random word-like paths (not templated by the
/// rules), every one answered 200 (the worst case: a 404 would be kept apart anyway), over
/// 1,000 keep-alive connections. The catalog folds what exceeds the per-host cap into the
/// overflow endpoint, so memory stays flat.
#[test]
fn a_million_distinct_random_paths() {
    let dir = tempfile::tempdir().expect("tmp");
    let cap = dir.path().join("paths.pcap");
    let mut w = PcapWriter::create(&cap);
    let mut rng: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut word = || {
        let mut s = String::new();
        for _ in 0..10 {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            s.push((b'a' + (rng % 26) as u8) as char);
        }
        s
    };
    for c in 0..1000u32 {
        let mut conv = Conv::open(&mut w, [13, 0, (c >> 8) as u8, c as u8], [10, 0, 0, 1], 3000, 80);
        for _ in 0..1000 {
            conv.client(
                &mut w,
                format!("GET /{}/{} HTTP/1.1\r\nHost: api\r\n\r\n", word(), word()).as_bytes(),
            );
            conv.server(&mut w, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
        }
    }
    w.finish();
    let catalog = dir.path().join("catalog.json");
    let (st, out, err, peak_kb) = run_measured(&[
        "replay",
        cap.to_str().unwrap_or_default(),
        "-q",
        "--types",
        "stats",
        "--catalog",
        catalog.to_str().unwrap_or_default(),
    ]);
    assert!(st.success(), "{err}");
    assert_eq!(final_stats(&out)["http"]["transactions"], 1_000_000);
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&catalog).expect("catalog")).expect("json");
    let paths = doc["paths"].as_object().map_or(0, |m| m.len());
    // learned: /{param}/{param}; the rest of the first 2,000 distinct prefixes, and the overflow
    assert!(paths <= 2_001, "{paths} paths");
    assert!(peak_kb < 150 * 1024, "peak anonymous RSS {peak_kb} KiB");
    eprintln!(
        "1M random paths: {paths} paths in the catalog, peak anonymous RSS {} MiB",
        peak_kb / 1024
    );
}

/// One million distinct client addresses, each with one request answered 404 (the seed
/// rule's match): the entity and window tables stay at their caps, evictions are counted.
#[test]
fn a_million_distinct_entities() {
    let dir = tempfile::tempdir().expect("tmp");
    let cap = dir.path().join("entities.pcap");
    let mut w = PcapWriter::create(&cap);
    for i in 0..1_000_000u32 {
        let c = [14, (i >> 16) as u8, (i >> 8) as u8, i as u8];
        // picked up mid-stream: the request, then the response
        w.frame(&tcp_frame(
            c,
            [10, 0, 0, 1],
            4000,
            80,
            1,
            1,
            0x18,
            b"GET /x HTTP/1.1\r\nHost: api\r\n\r\n",
        ));
        w.frame(&tcp_frame(
            [10, 0, 0, 1],
            c,
            80,
            4000,
            1,
            31,
            0x18,
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
        ));
    }
    w.finish();
    let conf = cfg_file(
        dir.path(),
        "[flow]\nmax_flows = 16384\n[entity]\nmax_entities = 100000\n[rules]\nmax_states = 100000\n",
    );
    let (st, out, err, peak_kb) = run_measured(&[
        "replay",
        cap.to_str().unwrap_or_default(),
        "-q",
        "--types",
        "stats,alert",
        "--workers",
        "1",
        "--config",
        &conf,
    ]);
    assert!(st.success(), "{err}");
    let s = final_stats(&out);
    assert_eq!(s["http"]["transactions"], 1_000_000, "{}", s["http"]);
    let e = &s["engine"];
    assert!(e["entities"].as_u64().unwrap_or(u64::MAX) <= 100_000, "{e}");
    assert!(e["entity_evictions"].as_u64().unwrap_or(0) >= 900_000, "{e}");
    // An entity with its profile and window state: unbounded, a million entities and their
    // rule windows would take close to a gigabyte; capped at 100,000 (plus 16,384 flows) the
    // replay peaks at about 200 MiB (202 MiB measured in session 7).
    assert!(peak_kb < 400 * 1024, "peak anonymous RSS {peak_kb} KiB");
    eprintln!("1M entities: {e}, peak anonymous RSS {} MiB", peak_kb / 1024);
}

#[test]
fn a_replayed_capture_does_not_stay_resident_behind_the_reader() {
    // 400 MB of ordinary keep-alive traffic: the file is read a chunk at a time into one
    // reused buffer, so the replay holds none of the file mapped (file-backed RSS is the
    // executable's pages) and little of it on the heap, not the whole file.
    let dir = tempfile::tempdir().expect("tmp");
    let cap = dir.path().join("big.pcap");
    let mut w = PcapWriter::create(&cap);
    let body = vec![b'a'; 1400];
    let resp = [b"HTTP/1.1 200 OK\r\nContent-Length: 140000\r\n\r\n".as_slice()].concat();
    for f in 0..28u32 {
        let mut v = Conv::open(&mut w, [10, 1, (f >> 8) as u8, f as u8], [10, 0, 0, 1], 40000, 80);
        for _ in 0..100 {
            v.client(&mut w, b"GET /big HTTP/1.1\r\nHost: a\r\n\r\n");
            v.server(&mut w, &resp);
            for _ in 0..100 {
                v.server(&mut w, &body);
            }
        }
    }
    w.finish();
    let size = std::fs::metadata(&cap).expect("size").len();
    assert!(size > 350 << 20, "{size}");
    let (st, out, err, peak_kb) = run_peak(
        &["replay", cap.to_str().unwrap_or_default(), "-q", "--types", "stats"],
        "RssFile:",
    );
    assert!(st.success(), "{err}");
    assert_eq!(final_stats(&out)["http"]["transactions"].as_u64(), Some(2800));
    eprintln!("peak file-backed RSS {peak_kb} KiB for a {} MiB capture", size >> 20);
    assert!(
        peak_kb < 32 * 1024,
        "peak file-backed RSS {peak_kb} KiB for a {} MiB capture",
        size >> 20
    );
    let (st, _, err, anon_kb) = run_measured(&["replay", cap.to_str().unwrap_or_default(), "-q", "--types", "stats"]);
    assert!(st.success(), "{err}");
    eprintln!("peak anonymous RSS {anon_kb} KiB");
    // nor on the heap: ~50 MiB alone, up to the 128 MiB worker queue more when the worker
    // lags (tests running beside it), never the 393 MiB file
    assert!(anon_kb < 200 * 1024, "peak anonymous RSS {anon_kb} KiB");
}
