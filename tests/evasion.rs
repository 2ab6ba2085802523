//! Evasion cases from other projects' suites (`../shared/corpus`, skipped with a message when
//! absent): conflicting TCP overlaps are reported as REASSEMBLY_OVERLAP_DIFFERENT_DATA, a
//! duplicate Content-Length as MULTIPLE_CONTENT_LENGTH, and injected RST/FIN/SYN-ACK before
//! the real handshake (Suricata's bug 3286 "evasion" captures) do not hide the transaction.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

fn run(case: &str) -> Option<(usize, BTreeMap<String, usize>, Vec<serde_json::Value>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/corpus/suricata-verify")
        .join(case);
    let pcap = std::fs::read_dir(&dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "pcap"))?;
    let out = Command::new(env!("CARGO_BIN_EXE_apitap"))
        .args(["replay", "-q"])
        .arg(&pcap)
        .output()
        .expect("apitap");
    assert!(out.status.success(), "{case}");
    let mut anomalies = BTreeMap::new();
    let mut http = Vec::new();
    for l in String::from_utf8_lossy(&out.stdout).lines() {
        let e: serde_json::Value = serde_json::from_str(l).expect("json");
        if e["event_type"] == "anomaly" {
            *anomalies
                .entry(e["anomaly"]["event"].as_str().unwrap_or("").to_string())
                .or_default() += 1;
        } else if e["event_type"] == "http" {
            http.push(e);
        }
    }
    Some((http.len(), anomalies, http))
}

#[test]
fn evasion_cases_from_the_corpus() {
    if !Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus").exists() {
        eprintln!("SKIPPED: evasion_cases_from_the_corpus: ../shared/corpus not found (the external corpus)");
        return;
    }
    for case in [
        "eve-overlap-payload-01",
        "eve-overlap-payload-04-partial-overlap",
        "eve-payload-01-tcp-exact-overlap",
        "eve-payload-04-partial-overlap",
    ] {
        let (_, a, _) = run(case).expect(case);
        assert!(
            a.get("REASSEMBLY_OVERLAP_DIFFERENT_DATA").is_some_and(|n| *n >= 1),
            "{case}: {a:?}"
        );
    }
    let (n, a, _) = run("http-multiple-cl").expect("http-multiple-cl");
    assert!(n >= 1 && a.contains_key("MULTIPLE_CONTENT_LENGTH"), "{a:?}");
    for case in [
        "bug-3286-01-no-evasion",
        "bug-3286-02-linux-evasion",
        "bug-3286-03-windows-evasion",
    ] {
        let (n, _, http) = run(case).expect(case);
        assert_eq!(n, 1, "{case}");
        assert_eq!(
            (http[0]["http"]["status"].as_u64(), http[0]["http"]["length"].as_u64()),
            (Some(200), Some(14)),
            "{case}"
        );
    }
}
