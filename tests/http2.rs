//! HTTP/2 (h2c) and gRPC captures from real servers (`capture-samples/make-h2-samples.sh`):
//! apitap's `http` events against the servers' own logs, exactly (method, path, status, body
//! sizes, client port, protocol, and for gRPC the status, message and message counts), and
//! copies impaired here as a mirror impairs them (a lost segment, a capture that starts in the
//! middle of the connections): every transaction reported is then exact or marked `gap: true`,
//! and the connections that lost nothing stay exact.
//!
//! The captures are committed, so these tests need no tool. With root and the tools,
//! `fresh_captures_match_their_logs` also rebuilds them from scratch and compares again.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

const KEY: &str = "h2-test-key";
const SAMPLES: [&str; 4] = ["h2c-nginx", "h2c-h2load", "h2c-upgrade", "grpc"];

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("capture-samples")
}

fn apitap(pcap: &Path) -> Vec<Value> {
    let out = Command::new(env!("CARGO_BIN_EXE_apitap"))
        .args(["replay", pcap.to_str().unwrap_or_default(), "--no-progress", "-q"])
        .env("APITAP_HASH_KEY", KEY)
        .output()
        .expect("run apitap");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect()
}

fn log_lines(p: &Path) -> Vec<Value> {
    std::fs::read_to_string(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("log line"))
        .collect()
}

/// What both the log and apitap state about one transaction.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Tx {
    port: u64,
    method: String,
    uri: String,
    status: u64,
    req: u64,
    resp: u64,
    grpc: Option<(i64, String, u64, u64)>,
}

fn logged(e: &Value) -> Tx {
    let r = apitap::redact::Redactor::new(KEY.as_bytes());
    Tx {
        port: e["client_port"].as_u64().unwrap_or(0),
        method: e["method"].as_str().unwrap_or_default().into(),
        uri: r.url(e["uri"].as_str().unwrap_or_default()).into_owned(),
        status: e["status"].as_u64().unwrap_or(0),
        req: e["req_body_bytes"].as_u64().unwrap_or(0),
        resp: e["resp_body_bytes"].as_u64().unwrap_or(0),
        grpc: e.get("grpc_status").map(|s| {
            (
                s.as_i64().unwrap_or(-1),
                e["grpc_message"].as_str().unwrap_or_default().into(),
                e["request_messages"].as_u64().unwrap_or(0),
                e["response_messages"].as_u64().unwrap_or(0),
            )
        }),
    }
}

fn reported(e: &Value) -> Tx {
    let g = &e["api"]["grpc"];
    Tx {
        port: e["src_port"].as_u64().unwrap_or(0),
        method: e["http"]["http_method"].as_str().unwrap_or_default().into(),
        uri: e["http"]["url"].as_str().unwrap_or_default().into(),
        status: e["http"]["status"].as_u64().unwrap_or(0),
        req: e["api"]["request_body_bytes"].as_u64().unwrap_or(0),
        resp: e["api"]["response_body_bytes"].as_u64().unwrap_or(0),
        grpc: g.is_object().then(|| {
            (
                g["status"].as_i64().unwrap_or(-1),
                g["message"].as_str().unwrap_or_default().into(),
                g["request_messages"].as_u64().unwrap_or(0),
                g["response_messages"].as_u64().unwrap_or(0),
            )
        }),
    }
}

fn http(events: &[Value]) -> Vec<&Value> {
    events.iter().filter(|e| e["event_type"] == "http").collect()
}

/// Compare; `lossy`: client ports whose connections were impaired (there a transaction may be
/// missing or `gap`, never wrong). Returns (exact, gap) counts.
fn compare(name: &str, events: &[Value], log: &[Value], lossy: Option<&dyn Fn(u64) -> bool>) -> (usize, usize) {
    let mut left: BTreeMap<Tx, usize> = BTreeMap::new();
    for e in log {
        *left.entry(logged(e)).or_default() += 1;
    }
    let (mut exact, mut gap) = (0, 0);
    let mut bad = Vec::new();
    for e in http(events) {
        let t = reported(e);
        assert_eq!(e["http"]["protocol"], "HTTP/2", "{name}: {e}");
        match left.get_mut(&t) {
            Some(n) if *n > 0 => {
                *n -= 1;
                exact += 1;
            }
            _ if e["api"]["gap"] == true && lossy.is_some_and(|f| f(t.port)) => gap += 1,
            _ => bad.push(format!("reported, not logged: {t:?} gap={}", e["api"]["gap"])),
        }
    }
    for (t, n) in left {
        if n > 0 && !lossy.is_some_and(|f| f(t.port)) {
            bad.push(format!("logged, not reported ({n}x): {t:?}"));
        }
    }
    assert!(bad.is_empty(), "{name}:\n{}", bad.join("\n"));
    (exact, gap)
}

#[test]
fn h2c_and_grpc_samples_match_their_server_logs_exactly() {
    for name in SAMPLES {
        let events = apitap(&dir().join(format!("{name}.pcap")));
        let log = log_lines(&dir().join(format!("{name}.access.jsonl")));
        let (exact, gap) = compare(name, &events, &log, None);
        assert_eq!((exact, gap), (log.len(), 0), "{name}");
        let anomalies: Vec<&Value> = events.iter().filter(|e| e["event_type"] == "anomaly").collect();
        assert!(anomalies.is_empty(), "{name}: {anomalies:?}");
        eprintln!("{name}: {exact} transactions exact");
    }
}

#[test]
fn grpc_calls_show_service_method_status_and_message_counts() {
    let events = apitap(&dir().join("grpc.pcap"));
    let calls: Vec<&Value> = http(&events).into_iter().map(|e| &e["api"]["grpc"]).collect();
    assert_eq!(calls.len(), 7);
    assert!(calls.iter().all(|g| g["service"] == "lab.Echo"));
    let fail = calls.iter().find(|g| g["method"] == "Fail").expect("Fail call");
    assert_eq!(
        (fail["status"].as_u64(), fail["message"].as_str()),
        (Some(5), Some("no such thing: 42"))
    );
    assert_eq!(fail["response_messages"], 0);
    let stream = calls.iter().find(|g| g["method"] == "Stream").expect("Stream call");
    assert_eq!(stream["response_messages"], 4);
    assert_eq!(stream["compressed"], false);
    // the catalog lists the calls as POST /service/method with their status mix
    let endpoints: Vec<&Value> = events.iter().filter(|e| e["event_type"] == "endpoint").collect();
    assert!(
        endpoints
            .iter()
            .any(|e| e["endpoint"]["endpoint"] == "POST /lab.Echo/Say"),
        "{endpoints:?}"
    );
}

// --- impaired copies -----------------------------------------------------------------------

struct Pcap {
    header: Vec<u8>,
    records: Vec<Vec<u8>>,
    /// Big-endian record headers.
    be: bool,
}

fn read_pcap(p: &Path) -> Pcap {
    let b = std::fs::read(p).expect("read pcap");
    let be = b[..4] == [0xa1, 0xb2, 0xc3, 0xd4] || b[..4] == [0xa1, 0xb2, 0x3c, 0x4d];
    let u32_at = |i: usize| {
        let a = [b[i], b[i + 1], b[i + 2], b[i + 3]];
        if be {
            u32::from_be_bytes(a)
        } else {
            u32::from_le_bytes(a)
        }
    };
    let mut records = Vec::new();
    let mut i = 24;
    while i + 16 <= b.len() {
        let n = u32_at(i + 8) as usize;
        records.push(b[i..i + 16 + n].to_vec());
        i += 16 + n;
    }
    Pcap {
        header: b[..24].to_vec(),
        records,
        be,
    }
}

fn write_pcap(p: &Path, pc: &Pcap, keep: impl Fn(usize) -> bool) {
    let mut out = pc.header.clone();
    for (i, r) in pc.records.iter().enumerate() {
        if keep(i) {
            out.extend_from_slice(r);
        }
    }
    std::fs::write(p, out).expect("write pcap");
    let _ = pc.be;
}

/// (client port, TCP payload length) of an Ethernet/IPv4/TCP record, the client being the
/// side whose port is not the server's.
fn tcp_of(r: &[u8], server_ports: &[u16]) -> Option<(u16, usize)> {
    let f = r.get(16..)?;
    if f.get(12..14)? != [0x08, 0x00] {
        return None;
    }
    let ip = f.get(14..)?;
    let ihl = (ip[0] & 0x0f) as usize * 4;
    let total = u16::from_be_bytes([ip[2], ip[3]]) as usize;
    let tcp = ip.get(ihl..)?;
    let (sp, dp) = (
        u16::from_be_bytes([tcp[0], tcp[1]]),
        u16::from_be_bytes([tcp[2], tcp[3]]),
    );
    let doff = (tcp[12] >> 4) as usize * 4;
    let client = if server_ports.contains(&sp) { dp } else { sp };
    Some((client, total.saturating_sub(ihl + doff)))
}

const SERVER_PORTS: [u16; 3] = [8081, 8082, 50051];

/// One segment with payload lost in the middle of each capture (every third one too, for the
/// larger captures): transactions on the connection that lost it are exact or `gap`, all
/// others exact.
#[test]
fn a_lost_segment_gives_exact_or_gap_transactions() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (mut exact_total, mut gap_total) = (0, 0);
    for name in SAMPLES {
        let pc = read_pcap(&dir().join(format!("{name}.pcap")));
        let log = log_lines(&dir().join(format!("{name}.access.jsonl")));
        let with_data: Vec<(usize, u16)> = pc
            .records
            .iter()
            .enumerate()
            .filter_map(|(i, r)| tcp_of(r, &SERVER_PORTS).filter(|(_, n)| *n > 0).map(|(p, _)| (i, p)))
            .collect();
        for pick in [with_data.len() / 2, with_data.len() / 3, 2 * with_data.len() / 3] {
            let (drop, port) = with_data[pick];
            let out = tmp.path().join(format!("{name}-loss-{pick}.pcap"));
            write_pcap(&out, &pc, |i| i != drop);
            let events = apitap(&out);
            let lossy = |p: u64| p == port as u64;
            let (e, g) = compare(&format!("{name} without record {drop}"), &events, &log, Some(&lossy));
            let on_lossy = log.iter().filter(|l| l["client_port"] == port).count();
            assert!(e >= log.len() - on_lossy, "{name}: only {e} exact");
            exact_total += e;
            gap_total += g;
        }
    }
    eprintln!("lost segment: {exact_total} exact, {gap_total} gap");
}

/// The capture starts in the middle of the connections (the first third of the records cut,
/// handshakes and prefaces gone): frames are found by their layout; what is reported is exact
/// or `gap`, and the transactions that start after the cut are all reported.
#[test]
fn a_capture_started_midstream_gives_exact_or_gap_transactions() {
    let tmp = tempfile::tempdir().expect("tempdir");
    for name in SAMPLES {
        let pc = read_pcap(&dir().join(format!("{name}.pcap")));
        let log = log_lines(&dir().join(format!("{name}.access.jsonl")));
        let cut = pc.records.len() / 3;
        let out = tmp.path().join(format!("{name}-mid.pcap"));
        write_pcap(&out, &pc, |i| i >= cut);
        let events = apitap(&out);
        let all = |_: u64| true;
        let (e, g) = compare(&format!("{name} from record {cut}"), &events, &log, Some(&all));
        eprintln!("{name} from record {cut}: {e} exact, {g} gap of {} logged", log.len());
        assert!(e + g > 0, "{name}: nothing reported after a midstream start");
    }
}

/// With root and the tools (nginx, tcpdump, curl, nghttp2-client, python h2 and grpcio),
/// rebuild the captures from real servers and compare them with their fresh logs.
#[test]
fn fresh_captures_match_their_logs() {
    let missing: Vec<&str> = ["ip", "nginx", "tcpdump", "curl", "h2load", "nghttp", "python3"]
        .into_iter()
        .filter(|t| !common::have(t))
        .collect();
    if !missing.is_empty() {
        eprintln!("SKIPPED: fresh h2c/gRPC captures: {} not installed", missing.join(", "));
        return;
    }
    let py = Command::new("python3").args(["-c", "import h2, grpc"]).status();
    if !py.is_ok_and(|s| s.success()) {
        eprintln!("SKIPPED: fresh h2c/gRPC captures: python packages h2 and grpcio not installed");
        return;
    }
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIPPED: fresh h2c/gRPC captures: needs root (network namespaces, tcpdump)");
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let st = Command::new("bash")
        .arg(dir().join("make-h2-samples.sh"))
        .env("OUT", tmp.path())
        .status()
        .expect("run make-h2-samples.sh");
    assert!(st.success(), "make-h2-samples.sh failed");
    for name in SAMPLES {
        let events = apitap(&tmp.path().join(format!("{name}.pcap")));
        let log = log_lines(&tmp.path().join(format!("{name}.access.jsonl")));
        assert!(!log.is_empty(), "{name}: empty log");
        let (exact, _) = compare(&format!("fresh {name}"), &events, &log, None);
        assert_eq!(exact, log.len(), "fresh {name}");
    }
}
