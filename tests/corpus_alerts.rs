//! Alerts on the external corpus (`../shared/corpus`): captures of real networks and other
//! projects' test traffic. Every alert apitap raised on it was read and judged (the table is in
//! the README, "Detections"); the captures judged to hold attacks are listed in
//! [`ATTACKS`] with what they hold. Every other capture is benign traffic for apitap's
//! purposes, and must raise no attack-type alert: before the detectors learned to read
//! targets rather than context, 88 SSRF alerts came out of them (a browser's Referer naming an
//! intranet server, `color_link=000000`, an `Origin: file://`).
//!
//! Skipped, with a message, when the corpus folder is absent.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

/// Captures judged to hold real attacks (case id prefix -> what), with the alert types they
/// may raise.
const ATTACKS: &[(&str, &str, &[&str])] = &[
    (
        "suricata-verify/bug-4199",
        "DVWA: `cat /etc/passwd` posted to a command-exec page; stored XSS `<script>alert(/xss/)</script>`",
        &["injection"],
    ),
    (
        "suricata-verify/bug-814",
        "nikto scan (its user agent)",
        &["scanner", "forced_browsing", "risk_threshold"],
    ),
    (
        "suricata-verify/compress_ipv6-0",
        "nikto scan over IPv6",
        &["scanner", "forced_browsing", "risk_threshold"],
    ),
    (
        "suricata-verify/netflow_compress_ipv6",
        "nikto scan over IPv6",
        &["scanner", "forced_browsing", "risk_threshold"],
    ),
    (
        "suricata-verify/detect-engine-proto",
        "`?page=../../../etc/passwd` file inclusion probe",
        &["injection"],
    ),
    (
        "suricata-verify/tcp-fastopen-",
        "`?page=../../../etc/passwd` in TFO data",
        &["injection"],
    ),
    (
        "suricata-verify/http-protocol-nodup",
        "nmap http scripts: FrontPage and CGI probing, 404 bursts",
        &["scanner", "forced_browsing", "risk_threshold"],
    ),
    (
        "suricata-verify/output-multi-eve",
        "Log4Shell `${jndi:ldap://...}` in a login form",
        &["injection"],
    ),
    (
        "suricata-verify/vxlan-non-zero-reserved-fields",
        "`/?cmd=/etc/passwd` probe",
        &["injection"],
    ),
];

#[test]
fn corpus_captures_judged_benign_raise_no_attack_alert() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus");
    let Ok(manifest) = std::fs::read(dir.join("MANIFEST.json")) else {
        eprintln!(
            "SKIPPED: corpus_captures_judged_benign_raise_no_attack_alert: {} is absent",
            dir.display()
        );
        return;
    };
    let cases: Vec<Value> = serde_json::from_slice(&manifest).expect("MANIFEST.json");
    let mut pcaps: BTreeMap<String, String> = BTreeMap::new(); // pcap -> first case id
    for c in &cases {
        let (Some(id), Some(p)) = (c["id"].as_str(), c["pcap"].as_str()) else {
            continue;
        };
        pcaps.entry(p.to_string()).or_insert_with(|| id.to_string());
    }
    let mut bad = Vec::new();
    let mut attack_captures = 0;
    for (pcap, id) in &pcaps {
        let judged = ATTACKS.iter().find(|(p, _, _)| id.starts_with(p));
        let out = Command::new(env!("CARGO_BIN_EXE_apitap"))
            .args(["replay", "-q", "--no-progress", "--types", "alert", "--workers", "1"])
            .arg(dir.join(pcap))
            .output()
            .expect("apitap");
        for l in String::from_utf8_lossy(&out.stdout).lines() {
            let Ok(e) = serde_json::from_str::<Value>(l) else {
                continue;
            };
            let t = e["indicator"]["type"].as_str().unwrap_or("").to_string();
            match judged {
                Some((_, _, allowed)) if allowed.contains(&t.as_str()) => attack_captures += 1,
                _ => bad.push(format!(
                    "{id}: {t} {} {}",
                    e["indicator"]["entity"]["value"], e["indicator"]["evidence"]["samples"][0]["detail"]
                )),
            }
        }
    }
    eprintln!(
        "{} corpus captures replayed, {attack_captures} alerts on captures judged to hold attacks",
        pcaps.len()
    );
    assert!(attack_captures > 0, "the attacks in the corpus must still be seen");
    assert!(bad.is_empty(), "alerts on captures judged benign:\n{}", bad.join("\n"));
}
