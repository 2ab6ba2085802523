//! Replays every bundled capture in `capture-samples/` and compares apitap's `http` events with
//! the access log the real server wrote while the capture was taken (the ground truth):
//! method, URI, status, client address and port, request and response body lengths, exactly.
//!
//! For captures impaired after the fact (loss, reordering, duplication, as a suffering mirror
//! port delivers them), the sidecar `NAME.impair.json` lists the packets that were dropped: on
//! every connection that lost no payload, the comparison stays exact; on a connection that did,
//! every transaction is either reported exactly or the loss is visible as `gap: true`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

const KEY: &str = "samples-test-key";

fn samples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("capture-samples")
}

/// Run apitap on `files`; returns (exit code, stdout lines as JSON, stderr).
pub fn apitap(args: &[&str]) -> (i32, Vec<Value>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_apitap"))
        .args(args)
        .env("APITAP_HASH_KEY", KEY)
        .output()
        .expect("run apitap");
    let lines = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    (
        out.status.code().unwrap_or(-1),
        lines,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn read_jsonl(p: &Path) -> Vec<Value> {
    std::fs::read_to_string(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{}: bad line ({e}): {l}", p.display())))
        .collect()
}

/// A transaction as both sides can state it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Tx {
    client: String,
    port: u64,
    method: String,
    uri: String,
    status: u64,
    req_body: u64,
    resp_body: u64,
}

fn expected(entry: &Value) -> Tx {
    let r = apitap::redact::Redactor::new(KEY.as_bytes());
    let uri = entry["uri"].as_str().unwrap_or_default();
    Tx {
        client: entry["client_ip"].as_str().unwrap_or_default().to_string(),
        port: entry["client_port"].as_u64().unwrap_or(0),
        method: entry["method"].as_str().unwrap_or_default().to_string(),
        uri: r.url(uri).into_owned(),
        status: entry["status"].as_u64().unwrap_or(0),
        req_body: entry["req_body_bytes"].as_u64().unwrap_or(0),
        resp_body: entry["resp_body_bytes"].as_u64().unwrap_or(0),
    }
}

fn reported(ev: &Value) -> Tx {
    Tx {
        client: ev["src_ip"].as_str().unwrap_or_default().to_string(),
        port: ev["src_port"].as_u64().unwrap_or(0),
        method: ev["http"]["http_method"].as_str().unwrap_or_default().to_string(),
        uri: ev["http"]["url"].as_str().unwrap_or_default().to_string(),
        status: ev["http"]["status"].as_u64().unwrap_or(0),
        req_body: ev["api"]["request_body_bytes"].as_u64().unwrap_or(0),
        resp_body: ev["api"]["response_body_bytes"].as_u64().unwrap_or(0),
    }
}

fn captures() -> Vec<(PathBuf, PathBuf)> {
    let mut v = Vec::new();
    let Ok(rd) = std::fs::read_dir(samples_dir()) else {
        return v;
    };
    for e in rd.flatten() {
        let p = e.path();
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
        let stem = ["pcap.gz", "pcapng", "pcap"]
            .iter()
            .find_map(|ext| name.strip_suffix(&format!(".{ext}")));
        if let Some(stem) = stem {
            let log = samples_dir().join(format!("{stem}.access.jsonl"));
            if log.exists() && !name.starts_with("bad-") {
                v.push((p, log));
            }
        }
    }
    v.sort();
    v
}

/// Client ports of connections that lost payload bytes, from the impairment sidecar.
fn lossy_ports(capture: &Path) -> Option<BTreeSet<u64>> {
    let name = capture.file_name()?.to_str()?;
    let stem = name.split('.').next()?;
    let side = samples_dir().join(format!("{stem}.impair.json"));
    let v: Value = serde_json::from_str(&std::fs::read_to_string(side).ok()?).ok()?;
    let mut ports = BTreeSet::new();
    for d in v["dropped"].as_array().into_iter().flatten() {
        if d["payload_len"].as_u64().unwrap_or(0) > 0 {
            // Either end may be the client; the server ports are the well-known ones.
            for k in ["src_port", "dst_port"] {
                if let Some(p) = d[k].as_u64() {
                    ports.insert(p);
                }
            }
        }
    }
    Some(ports)
}

#[test]
fn every_sample_matches_its_access_log() {
    let caps = captures();
    assert!(
        !caps.is_empty(),
        "no capture-samples with access logs found in {}",
        samples_dir().display()
    );
    let mut failures = Vec::new();
    for (cap, log) in &caps {
        let (code, events, stderr) = apitap(&["replay", cap.to_str().unwrap_or_default(), "--no-progress", "-q"]);
        let name = cap.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if code != 0 {
            failures.push(format!("{name}: exit {code}: {stderr}"));
            continue;
        }
        let http: Vec<&Value> = events.iter().filter(|e| e["event_type"] == "http").collect();
        let want: Vec<Tx> = read_jsonl(log)
            .iter()
            .filter(|e| e["before_capture"] != true)
            .map(expected)
            .collect();
        let lossy = lossy_ports(cap);
        let mut left: BTreeMap<Tx, usize> = BTreeMap::new();
        for t in &want {
            *left.entry(t.clone()).or_default() += 1;
        }
        let mut unexplained = Vec::new();
        let mut gap_ports = BTreeSet::new();
        for ev in &http {
            let t = reported(ev);
            match left.get_mut(&t) {
                Some(n) if *n > 0 => *n -= 1,
                _ => {
                    if ev["api"]["gap"] == true || ev["api"]["truncated"] == true {
                        gap_ports.insert(t.port);
                    } else {
                        unexplained.push(format!("reported but not in the access log: {t:?}"));
                    }
                }
            }
        }
        for ev in &http {
            if ev["api"]["gap"] == true {
                gap_ports.insert(ev["src_port"].as_u64().unwrap_or(0));
            }
        }
        for (t, n) in left {
            if n == 0 {
                continue;
            }
            let lost_here = lossy.as_ref().is_some_and(|p| p.contains(&t.port));
            if !(lost_here && gap_ports.contains(&t.port)) {
                unexplained.push(format!("in the access log but not reported ({n}x): {t:?}"));
            }
        }
        if lossy.is_none() && http.iter().any(|e| e["api"]["gap"] == true) {
            unexplained.push("gap: true on a capture that lost nothing".into());
        }
        eprintln!(
            "{name}: {} logged, {} http events, {} unexplained",
            want.len(),
            http.len(),
            unexplained.len()
        );
        for u in unexplained.iter().take(5) {
            failures.push(format!("{name}: {u}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn bad_files_get_one_clear_line_and_exit_1() {
    let d = samples_dir();
    for (f, why) in [
        ("bad-magic.pcap", "not a pcap or pcapng file"),
        ("bad-empty.pcap", "empty file"),
        ("bad-short-header.pcap", "truncated file header"),
        ("does-not-exist.pcap", "cannot read"),
    ] {
        let p = d.join(f);
        if f != "does-not-exist.pcap" && !p.exists() {
            panic!("{} missing", p.display());
        }
        let (code, lines, err) = apitap(&["replay", p.to_str().unwrap_or_default(), "--no-progress"]);
        assert_eq!(code, 1, "{f}: {err}");
        assert!(lines.is_empty(), "{f}: no output expected");
        let err = err.trim();
        assert_eq!(err.lines().count(), 1, "{f}: one line, got: {err}");
        assert!(err.contains(f) && err.contains(why), "{f}: {err}");
    }
}

#[test]
fn truncated_file_is_read_up_to_the_cut_with_a_warning() {
    // cut inside a record header: everything before it is read
    let p = samples_dir().join("bad-truncated-header.pcap");
    let (code, lines, err) = apitap(&["replay", p.to_str().unwrap_or_default(), "--no-progress"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("file ends inside a record header"), "{err}");
    assert!(lines.iter().any(|e| e["event_type"] == "http"));
    // cut inside a packet
    let p = samples_dir().join("bad-truncated.pcap");
    let (code, lines, err) = apitap(&["replay", p.to_str().unwrap_or_default(), "--no-progress"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("bad-truncated.pcap") && err.contains("read up to there"),
        "{err}"
    );
    let stats = lines.iter().rfind(|e| e["event_type"] == "stats").expect("final stats");
    assert_eq!(stats["stats"]["capture"]["truncated_files"], 1);
    assert!(stats["stats"]["capture"]["packets"].as_u64().unwrap_or(0) > 0);
}

#[test]
fn impossible_record_length_stops_the_walk_with_a_warning() {
    let p = samples_dir().join("bad-huge-caplen.pcap");
    let (code, lines, err) = apitap(&["replay", p.to_str().unwrap_or_default(), "--no-progress", "-q"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("corrupt record"), "{err}");
    let stats = lines.iter().rfind(|e| e["event_type"] == "stats").expect("final stats");
    assert_eq!(stats["stats"]["capture"]["truncated_files"], 1);
}

#[test]
fn snaplen_cut_capture_counts_gaps_and_never_invents_bodies() {
    let p = samples_dir().join("bad-snaplen.pcap");
    let (code, lines, err) = apitap(&["replay", p.to_str().unwrap_or_default(), "--no-progress", "-q"]);
    assert_eq!(code, 0, "{err}");
    let stats = lines.iter().rfind(|e| e["event_type"] == "stats").expect("final stats");
    assert!(
        stats["stats"]["reassembly"]["gap_bytes"].as_u64().unwrap_or(0) > 0,
        "cut bytes are gaps"
    );
    for e in lines.iter().filter(|e| e["event_type"] == "http") {
        // Whatever was reported from a cut capture must say so.
        assert!(
            e["api"]["gap"] == true || e["api"]["truncated"] == true || e["http"]["length"] == 0,
            "{e}"
        );
    }
}

#[test]
fn usage_errors_exit_2() {
    let (code, _, err) = apitap(&["replay", "--no-such-flag", "x.pcap"]);
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = apitap(&["replay"]);
    assert_eq!(code, 2, "{err}");
    let any = samples_dir().join("bad-magic.pcap");
    let (code, _, err) = apitap(&[
        "replay",
        any.to_str().unwrap_or_default(),
        "-o",
        "/nonexistent-dir/out.json",
    ]);
    // Input is checked before output: a bad file wins over a bad output path.
    assert_eq!(code, 1, "{err}");
}

/// Every `http`, `anomaly` and `alert` event validates against Suricata's EVE schema once
/// apitap's own keys (`api`, `indicator`) are removed (SPEC §5). Uses `../shared/eve-schema.json`.
#[test]
fn events_validate_against_the_eve_schema() {
    let schema_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/eve-schema.json");
    let Ok(text) = std::fs::read_to_string(&schema_path) else {
        eprintln!("SKIPPED: EVE schema validation: {} not found", schema_path.display());
        return;
    };
    let schema: Value = serde_json::from_str(&text).expect("schema is JSON");
    let validator = jsonschema::validator_for(&schema).expect("schema compiles");
    let mut checked = 0;
    let mut alerts = 0;
    let mut inputs: Vec<PathBuf> = captures().into_iter().map(|(c, _)| c).collect();
    inputs.push(samples_dir().join("bad-snaplen.pcap"));
    // the attack lab: alerts of every kind
    inputs.push(samples_dir().join("lab/lab-1.pcap.gz"));
    for cap in inputs {
        let (_, events, _) = apitap(&[
            "replay",
            cap.to_str().unwrap_or_default(),
            "--no-progress",
            "-q",
            "--log-headers",
        ]);
        for mut e in events {
            if !["http", "anomaly", "alert"].iter().any(|t| e["event_type"] == *t) {
                continue;
            }
            if e["event_type"] == "alert" {
                assert!(e["indicator"]["type"].is_string(), "{e}");
                alerts += 1;
            }
            if let Some(o) = e.as_object_mut() {
                o.remove("api");
                o.remove("indicator");
            }
            let errs: Vec<String> = validator
                .iter_errors(&e)
                .map(|er| format!("{er} at {}", er.instance_path()))
                .collect();
            assert!(errs.is_empty(), "{}: {e}\n{}", cap.display(), errs.join("\n"));
            checked += 1;
        }
    }
    assert!(checked > 100, "only {checked} events checked");
    assert!(alerts > 0, "no alert was checked");
}

/// Replay output does not depend on the number of worker shards (order aside).
#[test]
fn output_is_the_same_whatever_the_worker_count() {
    let p = samples_dir().join("http-mixed-api.pcap");
    let run = |w: &str| {
        let (code, lines, err) = apitap(&[
            "replay",
            p.to_str().unwrap_or_default(),
            "-q",
            "--no-progress",
            "--workers",
            w,
        ]);
        assert_eq!(code, 0, "{err}");
        let mut v: Vec<String> = lines
            .iter()
            .filter(|e| e["event_type"] != "stats")
            .map(|e| e.to_string())
            .collect();
        v.sort();
        v
    };
    let one = run("1");
    assert!(one.len() > 700);
    assert_eq!(one, run("4"));
}

/// `--workers 0` (a replay analysing on the capture thread, the default on one CPU) writes the
/// same lines in the same order as one worker thread: the same shard, run in another place.
#[test]
fn replay_on_the_capture_thread_writes_what_one_worker_writes() {
    let mut inputs: Vec<PathBuf> = captures().into_iter().map(|(c, _)| c).collect();
    // alerts of every kind, entity events, endpoint snapshots
    inputs.push(samples_dir().join("lab/lab-1.pcap.gz"));
    let mut lines = 0;
    for cap in inputs {
        let run = |w: &str| {
            let (code, events, err) = apitap(&[
                "replay",
                cap.to_str().unwrap_or_default(),
                "-q",
                "--no-progress",
                "--log-headers",
                "--workers",
                w,
            ]);
            assert_eq!(code, 0, "{}: {err}", cap.display());
            // (stats carry timings)
            events
                .into_iter()
                .filter(|e| e["event_type"] != "stats")
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
        };
        let thread = run("1");
        let inline = run("0");
        assert_eq!(inline.len(), thread.len(), "{}", cap.display());
        for (i, (a, b)) in inline.iter().zip(&thread).enumerate() {
            assert_eq!(a, b, "{}: line {i}", cap.display());
        }
        lines += thread.len();
    }
    assert!(lines > 5000, "only {lines} lines compared");
}
