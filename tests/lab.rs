//! The attack lab (capture-samples/lab): real tools and scripted attackers against a JSON API
//! behind nginx, with ~20 benign clients, one address per attack, and a labels file naming the
//! indicator types each attack should raise. This scorer replays every lab capture and
//! reports, per attack, which expected types fired and how soon after the attack's first
//! request (for `account_takeover`, after the attacker's first successful login, from the
//! server's access log), and every alert on a benign address.
//!
//! It also measures, per seed, the precision of each indicator type (the share of its alerts
//! raised on attacker addresses: on attackers whose labels expect that type, and on any
//! attacker), the number of alerts on benign addresses (with the benign user's persona) and the
//! alerts per attacker (count and per type). Seeds are split into tuning seeds and held-out
//! seeds (`HELD_OUT`), reported separately: a held-out seed is scored, never tuned on.
//!
//! `cargo test --release --test lab -- --nocapture` prints the tables. `APITAP_LAB_SEEDS=8,9`
//! scores only those seeds (e.g. to look at tuning seeds without seeing the held-out ones).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// Seeds made after the benign users got the habits of real ones (issue 11) and kept out of
/// tuning: their scores are reported apart from the tuning seeds'. Every other seed is a tuning
/// seed (1-7 were made with simpler benign users; 8 and 9 with the same users as 10 to 13).
/// 12 and 13 were made later, with the detection as it was at `7e34ddc`, and first scored then.
const HELD_OUT: &[u64] = &[10, 11, 12, 13, 14, 15];

/// The seed of `lab-N.pcap.gz`.
fn seed_of(p: &Path) -> Option<u64> {
    let name = p.file_name()?.to_str()?;
    name.strip_prefix("lab-")?.strip_suffix(".pcap.gz")?.parse().ok()
}

fn set_of(seed: u64) -> &'static str {
    if HELD_OUT.contains(&seed) { "held-out" } else { "tuning" }
}

/// The running test's name (the test harness names each test's thread after it).
fn test_name() -> String {
    std::thread::current().name().unwrap_or("test").to_string()
}

/// Every lab capture, by seed; only the seeds listed in `APITAP_LAB_SEEDS` (comma-separated)
/// when it is set.
fn labs() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("capture-samples/lab");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    v.retain(|p| seed_of(p).is_some());
    if let Ok(only) = std::env::var("APITAP_LAB_SEEDS") {
        let only: BTreeSet<u64> = only.split(',').filter_map(|x| x.trim().parse().ok()).collect();
        v.retain(|p| seed_of(p).is_some_and(|s| only.contains(&s)));
        eprintln!("APITAP_LAB_SEEDS: scoring seeds {only:?} only");
    }
    v.sort_by_key(|p| seed_of(p));
    v
}

/// RFC 3339 with microseconds (`2026-11-29T05:50:07.123456+0000`) to Unix seconds.
fn unix(ts: &str) -> f64 {
    let n = |a: usize, b: usize| ts.get(a..b).and_then(|s| s.parse::<i64>().ok()).unwrap_or(0);
    let (y, m, d) = (n(0, 4), n(5, 7), n(8, 10));
    let (yy, mm) = if m <= 2 { (y - 1, m + 9) } else { (y, m - 3) };
    let era = yy.div_euclid(400);
    let yoe = yy - era * 400;
    let doy = (153 * mm + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    (days * 86_400 + n(11, 13) * 3600 + n(14, 16) * 60 + n(17, 19)) as f64 + n(20, 26) as f64 / 1e6
}

/// Alerts of one indicator type on one seed, by who they were raised on.
#[derive(Default, Clone, Copy)]
struct TypeCount {
    total: usize,
    /// on an attacker whose labels expect this type
    on_expected: usize,
    /// on any attacker address
    on_attacker: usize,
    on_benign: usize,
}

impl TypeCount {
    fn add(&mut self, o: &TypeCount) {
        self.total += o.total;
        self.on_expected += o.on_expected;
        self.on_attacker += o.on_attacker;
        self.on_benign += o.on_benign;
    }
}

fn ratio(n: usize, d: usize) -> String {
    if d == 0 {
        "-".into()
    } else {
        format!("{:.3}", n as f64 / d as f64)
    }
}

struct Score {
    seed: u64,
    table: Vec<String>,
    missed: Vec<String>,
    slow: Vec<String>,
    benign_alerts: Vec<String>,
    /// indicator type -> counts
    per_type: BTreeMap<String, TypeCount>,
    /// (attack name, address, alerts, alerts per type)
    per_attacker: Vec<(String, String, usize, BTreeMap<String, usize>)>,
    alerts: usize,
    /// alerts on addresses that are neither benign nor attackers
    unlabeled: usize,
}

/// `lab-N.pcap.gz` -> `lab-N.<ext>`
fn beside(pcap: &Path, ext: &str) -> PathBuf {
    let name = pcap
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    pcap.with_file_name(format!("{}.{ext}", name.trim_end_matches(".pcap.gz")))
}

fn gunzip(p: &Path) -> String {
    use std::io::Read;
    let mut s = String::new();
    if let Ok(f) = std::fs::File::open(p) {
        let _ = flate2::read::GzDecoder::new(f).read_to_string(&mut s);
    }
    s
}

/// What the alerts of one replay say, by address and by type.
struct Tally {
    /// address -> type -> first alert time
    fired: BTreeMap<String, BTreeMap<String, f64>>,
    /// address -> one line per alert (type, signature, evidence)
    by_addr_sigs: BTreeMap<String, Vec<String>>,
    /// address -> type -> alerts
    counts: BTreeMap<String, BTreeMap<String, usize>>,
    per_type: BTreeMap<String, TypeCount>,
    alerts: usize,
    unlabeled: usize,
}

/// The addresses of the labels' `benign` list or `attacks` objects.
fn label_addrs(labels: &Value, k: &str) -> BTreeSet<String> {
    labels[k]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().or_else(|| v["address"].as_str()))
        .map(str::to_string)
        .collect()
}

/// Counts the alerts (apitap's JSON lines) by address and type, and each type's alerts by who
/// they were raised on: an attacker expecting the type, any attacker, a benign user, or an
/// address the labels do not know.
fn tally(labels: &Value, alerts_jsonl: &str) -> Tally {
    let benign_addrs = label_addrs(labels, "benign");
    let attacker_addrs = label_addrs(labels, "attacks");
    // attacker address -> the types its labels expect
    let mut expects: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for a in labels["attacks"].as_array().into_iter().flatten() {
        let set = expects
            .entry(a["address"].as_str().unwrap_or("").to_string())
            .or_default();
        set.extend(
            a["expected"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(str::to_string),
        );
    }
    // address -> type -> first alert time
    let mut fired: BTreeMap<String, BTreeMap<String, f64>> = BTreeMap::new();
    let mut by_addr_sigs: BTreeMap<String, Vec<String>> = BTreeMap::new();
    // address -> type -> alerts
    let mut counts: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
    let mut per_type: BTreeMap<String, TypeCount> = BTreeMap::new();
    let (mut alerts, mut unlabeled) = (0, 0);
    for l in alerts_jsonl.lines() {
        let e: Value = serde_json::from_str(l).expect("json");
        let addr = e["src_ip"].as_str().unwrap_or("").to_string();
        let t = e["indicator"]["type"].as_str().unwrap_or("").to_string();
        let ts = unix(e["timestamp"].as_str().unwrap_or(""));
        let first = fired.entry(addr.clone()).or_default().entry(t.clone()).or_insert(ts);
        *first = first.min(ts);
        alerts += 1;
        *counts.entry(addr.clone()).or_default().entry(t.clone()).or_default() += 1;
        let c = per_type.entry(t.clone()).or_default();
        c.total += 1;
        if attacker_addrs.contains(&addr) {
            c.on_attacker += 1;
            if expects.get(&addr).is_some_and(|x| x.contains(&t)) {
                c.on_expected += 1;
            }
        } else if benign_addrs.contains(&addr) {
            c.on_benign += 1;
        } else {
            unlabeled += 1;
        }
        by_addr_sigs.entry(addr).or_default().push(format!(
            "[{t}] sid {} {} | {}",
            e["alert"]["signature_id"],
            e["alert"]["signature"].as_str().unwrap_or(""),
            evidence_summary(&e)
        ));
    }
    Tally {
        fired,
        by_addr_sigs,
        counts,
        per_type,
        alerts,
        unlabeled,
    }
}

fn score(pcap: &Path) -> Score {
    let labels: Value =
        serde_json::from_slice(&std::fs::read(beside(pcap, "labels.json")).expect("labels beside the capture"))
            .expect("labels json");
    let out = Command::new(env!("CARGO_BIN_EXE_apitap"))
        .args(["replay", "-q", "--no-progress", "--types", "alert", "--workers", "1"])
        .arg(pcap)
        .output()
        .expect("apitap");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let Tally {
        fired,
        by_addr_sigs,
        counts,
        per_type,
        alerts,
        unlabeled,
    } = tally(&labels, &String::from_utf8_lossy(&out.stdout));
    let benign_addrs = label_addrs(&labels, "benign");
    let seed = labels["seed"].as_u64().unwrap_or(0);
    // The takeover itself: an attacker's first successful login (the server's own log).
    let mut logins: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    {
        let text = gunzip(&beside(pcap, "access.jsonl.gz"));
        for l in text.lines() {
            let Ok(e) = serde_json::from_str::<Value>(l) else {
                continue;
            };
            let ok = e["status"].as_u64().is_some_and(|s| (200..300).contains(&s));
            if ok && e["method"] == "POST" && e["uri"].as_str().is_some_and(|u| u.contains("login")) {
                logins
                    .entry(e["client_ip"].as_str().unwrap_or("").to_string())
                    .or_default()
                    .push(e["ts"].as_f64().unwrap_or(0.0));
            }
        }
    }
    let mut s = Score {
        seed,
        table: Vec::new(),
        missed: Vec::new(),
        slow: Vec::new(),
        benign_alerts: Vec::new(),
        per_type,
        per_attacker: Vec::new(),
        alerts,
        unlabeled,
    };
    for a in labels["attacks"].as_array().into_iter().flatten() {
        let addr = a["address"].as_str().unwrap_or("");
        let name = a["name"].as_str().unwrap_or("");
        let start = a["start"].as_f64().unwrap_or(0.0);
        let got = fired.get(addr).cloned().unwrap_or_default();
        let mut cells = Vec::new();
        for t in a["expected"].as_array().into_iter().flatten().filter_map(Value::as_str) {
            match got.get(t) {
                Some(ts) => {
                    // A compromise is timed from the moment it happened, an attack from its start.
                    let t0 = if t == "account_takeover" {
                        logins
                            .get(addr)
                            .and_then(|v| v.iter().copied().filter(|x| *x >= start).reduce(f64::min))
                            .unwrap_or(start)
                    } else {
                        start
                    };
                    let dt = ts - t0;
                    cells.push(format!("{t} {dt:.1}s"));
                    if dt > 10.0 && name != "low-and-slow" {
                        s.slow.push(format!("seed {seed} {name}: {t} after {dt:.1} s"));
                    }
                }
                None => {
                    cells.push(format!("{t} MISSED"));
                    s.missed.push(format!("seed {seed} {name} ({addr}): {t}"));
                }
            }
        }
        let expected: BTreeSet<&str> = a["expected"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let mine = counts.get(addr).cloned().unwrap_or_default();
        s.per_attacker
            .push((name.to_string(), addr.to_string(), mine.values().sum(), mine));
        let extra: Vec<&String> = got.keys().filter(|k| !expected.contains(k.as_str())).collect();
        s.table.push(format!(
            "| {seed} | {name} | {} | {} | {} |",
            a["tool"].as_str().unwrap_or(""),
            cells.join(", "),
            extra.iter().map(|x| x.as_str()).collect::<Vec<_>>().join(", ")
        ));
    }
    for b in &benign_addrs {
        let persona = labels["benign_personas"][b.as_str()].as_str().unwrap_or("user");
        for sig in by_addr_sigs.get(b).into_iter().flatten() {
            s.benign_alerts
                .push(format!("seed {seed} benign {b} ({persona}): {sig}"));
        }
    }
    s
}

/// What an alert saw, in one line: the rule, the endpoint and the first samples' details.
fn evidence_summary(e: &Value) -> String {
    let ind = &e["indicator"];
    let ev = &ind["evidence"];
    let mut parts = vec![format!(
        "rule {} endpoint {:?} count {}",
        ev["rule"].as_str().unwrap_or("-"),
        ind["endpoint"].as_str().unwrap_or(""),
        ind["count"]
    )];
    for smp in ev["samples"].as_array().into_iter().flatten().take(2) {
        let d = smp["detail"].as_str().or_else(|| smp["url"].as_str()).unwrap_or("");
        parts.push(d.chars().take(160).collect());
    }
    if ev["samples"].as_array().is_none_or(|v| v.is_empty())
        && let Some(u) = e["http"]["url"].as_str()
    {
        parts.push(format!("url {}", u.chars().take(160).collect::<String>()));
    }
    parts.join(" | ")
}

/// Precision per indicator type, benign alert count and alerts per attacker, per seed and per
/// set (tuning / held-out), as Markdown tables.
fn print_precision(scores: &[Score]) {
    println!();
    println!(
        "Precision per indicator type (on-attacker precision = alerts of the type on attacker addresses / all alerts of the type; expected = on attackers whose labels expect the type)"
    );
    println!();
    println!(
        "| set | seed | type | alerts | on attackers expecting it | on any attacker | on benign | precision (expected) | precision (any attacker) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let mut sets: BTreeMap<&str, BTreeMap<String, TypeCount>> = BTreeMap::new();
    for s in scores {
        let set = set_of(s.seed);
        for (t, c) in &s.per_type {
            println!(
                "| {set} | {} | {t} | {} | {} | {} | {} | {} | {} |",
                s.seed,
                c.total,
                c.on_expected,
                c.on_attacker,
                c.on_benign,
                ratio(c.on_expected, c.total),
                ratio(c.on_attacker, c.total)
            );
            sets.entry(set).or_default().entry(t.clone()).or_default().add(c);
        }
    }
    for (set, types) in &sets {
        for (t, c) in types {
            println!(
                "| {set} | all | {t} | {} | {} | {} | {} | {} | {} |",
                c.total,
                c.on_expected,
                c.on_attacker,
                c.on_benign,
                ratio(c.on_expected, c.total),
                ratio(c.on_attacker, c.total)
            );
        }
    }
    println!();
    println!(
        "| set | seed | alerts | on benign | on unlabeled addresses | attackers | alerts per attacker (mean) | max (attack) |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for s in scores {
        let benign: usize = s.per_type.values().map(|c| c.on_benign).sum();
        let n = s.per_attacker.len();
        let sum: usize = s.per_attacker.iter().map(|a| a.2).sum();
        let max = s.per_attacker.iter().max_by_key(|a| a.2);
        println!(
            "| {} | {} | {} | {benign} | {} | {n} | {} | {} |",
            set_of(s.seed),
            s.seed,
            s.alerts,
            s.unlabeled,
            ratio(sum, n),
            max.map(|a| format!("{} ({})", a.2, a.0)).unwrap_or_default()
        );
    }
    println!();
    println!("| set | seed | attack | address | alerts | per type |");
    println!("|---|---|---|---|---|---|");
    for s in scores {
        for (name, addr, n, by) in &s.per_attacker {
            let by: Vec<String> = by.iter().map(|(t, k)| format!("{t} {k}")).collect();
            println!(
                "| {} | {} | {name} | {addr} | {n} | {} |",
                set_of(s.seed),
                s.seed,
                by.join(", ")
            );
        }
    }
}

#[test]
fn lab_attacks_are_detected_and_benign_clients_are_not() {
    let labs = labs();
    if labs.is_empty() {
        eprintln!("SKIPPED: {}: no lab captures in capture-samples/lab", test_name());
        return;
    }
    let mut missed = Vec::new();
    let mut slow = Vec::new();
    let mut benign = Vec::new();
    let scores: Vec<Score> = labs.iter().map(|p| score(p)).collect();
    println!("| set | seed | attack | tool | expected types: time to first alert | other types |");
    println!("|---|---|---|---|---|---|");
    for s in &scores {
        for r in &s.table {
            println!("| {} {r}", set_of(s.seed));
        }
        missed.extend(s.missed.iter().cloned());
        slow.extend(s.slow.iter().cloned());
        benign.extend(s.benign_alerts.iter().cloned());
    }
    print_precision(&scores);
    println!();
    for x in missed.iter().chain(&slow).chain(&benign) {
        println!("{x}");
    }
    assert!(missed.is_empty(), "missed: {missed:#?}");
    assert!(slow.is_empty(), "later than 10 s: {slow:#?}");
    assert!(benign.is_empty(), "alerts on benign clients: {benign:#?}");
}

/// The seed rule ("more than ten 404 responses within ten seconds") on real content-discovery
/// tools (gobuster, ffuf) against the lab's real server: it fires for the tools' addresses and
/// for none of the benign clients, although some of them hit an occasional 404.
#[test]
fn seed_rule_fires_for_content_discovery_tools_not_for_ordinary_404s() {
    let labs = labs();
    if labs.is_empty() {
        eprintln!("SKIPPED: {}: no lab captures in capture-samples/lab", test_name());
        return;
    }
    let mut benign_404 = 0;
    for p in &labs {
        let labels: Value =
            serde_json::from_slice(&std::fs::read(beside(p, "labels.json")).expect("labels")).expect("json");
        let out = Command::new(env!("CARGO_BIN_EXE_apitap"))
            .args(["replay", "-q", "--no-progress", "--types", "alert"])
            .arg(p)
            .output()
            .expect("apitap");
        let fired: BTreeSet<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|e| e["alert"]["signature_id"] == 9100001)
            .map(|e| e["src_ip"].as_str().unwrap_or("").to_string())
            .collect();
        for a in labels["attacks"].as_array().into_iter().flatten() {
            if ["gobuster", "ffuf"].contains(&a["tool"].as_str().unwrap_or("")) {
                assert!(
                    fired.contains(a["address"].as_str().unwrap_or("")),
                    "{}: {a}",
                    p.display()
                );
            }
        }
        let benign: BTreeSet<&str> = labels["benign"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        assert!(
            fired.iter().all(|ip| !benign.contains(ip.as_str())),
            "{}: {fired:?}",
            p.display()
        );
        for l in gunzip(&beside(p, "access.jsonl.gz")).lines() {
            let e: Value = serde_json::from_str(l).expect("json");
            if e["status"] == 404 && benign.contains(e["client_ip"].as_str().unwrap_or("")) {
                benign_404 += 1;
            }
        }
    }
    assert!(
        benign_404 > 0,
        "the benign clients never hit a 404: the near miss is untested"
    );
}

/// Sharding does not change what is detected: the same (type, address, signature) alerts with
/// one, two or four workers on every lab (matches for principals and endpoints travel to their
/// owner shard; endpoint auth profiles are kept by the capture thread, in packet order).
#[test]
fn the_same_alerts_whatever_the_worker_count() {
    let labs = labs();
    if labs.is_empty() {
        eprintln!("SKIPPED: {}: no lab captures in capture-samples/lab", test_name());
        return;
    }
    for p in labs {
        let run = |w: &str| -> BTreeSet<(String, String, u64)> {
            let out = Command::new(env!("CARGO_BIN_EXE_apitap"))
                .args(["replay", "-q", "--no-progress", "--types", "alert", "--workers", w])
                .arg(&p)
                .output()
                .expect("apitap");
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .map(|e| {
                    (
                        e["indicator"]["type"].as_str().unwrap_or("").to_string(),
                        e["src_ip"].as_str().unwrap_or("").to_string(),
                        e["alert"]["signature_id"].as_u64().unwrap_or(0),
                    )
                })
                .collect()
        };
        let one = run("1");
        assert!(one.len() > 30, "{one:?}");
        assert_eq!(one, run("2"), "{}", p.display());
        assert_eq!(one, run("4"), "{}", p.display());
    }
}

/// The scorer's own arithmetic: each type's alerts split by who they were raised on, so the
/// two precisions of a type (on attackers expecting it, on any attacker) can differ and a
/// benign alert lowers both.
#[test]
fn precision_counts_each_alert_by_the_address_it_was_raised_on() {
    let labels = serde_json::json!({
        "seed": 99,
        "benign": ["10.0.0.2"],
        "attacks": [
            {"address": "10.0.0.5", "name": "sqlmap", "expected": ["injection", "scanner"]},
            {"address": "10.0.0.6", "name": "hydra", "expected": ["brute_force"]}
        ]
    });
    let alert = |ip: &str, t: &str| {
        format!(
            r#"{{"src_ip":"{ip}","timestamp":"2026-11-29T09:04:57.950822+0000","alert":{{"signature_id":1,"signature":"s"}},"indicator":{{"type":"{t}","evidence":{{"rule":"r","samples":[{{"detail":"d"}}]}}}}}}"#
        )
    };
    let lines = [
        alert("10.0.0.5", "injection"),
        alert("10.0.0.5", "injection"),
        alert("10.0.0.6", "injection"),
        alert("10.0.0.2", "injection"),
        alert("10.0.0.6", "brute_force"),
        alert("10.0.0.9", "ssrf"),
    ]
    .join("\n");
    let t = tally(&labels, &lines);
    let inj = t.per_type["injection"];
    assert_eq!(
        (inj.total, inj.on_expected, inj.on_attacker, inj.on_benign),
        (4, 2, 3, 1)
    );
    assert_eq!(ratio(inj.on_expected, inj.total), "0.500");
    assert_eq!(ratio(inj.on_attacker, inj.total), "0.750");
    let bf = t.per_type["brute_force"];
    assert_eq!((bf.total, bf.on_expected, bf.on_attacker, bf.on_benign), (1, 1, 1, 0));
    assert_eq!((t.alerts, t.unlabeled), (6, 1));
    assert_eq!(t.counts["10.0.0.6"].values().sum::<usize>(), 2);
    assert_eq!(t.by_addr_sigs["10.0.0.2"].len(), 1);
    assert!(t.by_addr_sigs["10.0.0.2"][0].contains("[injection]"));
    assert_eq!(ratio(0, 0), "-");
    assert_eq!(seed_of(Path::new("x/lab-11.pcap.gz")), Some(11));
    assert_eq!(seed_of(Path::new("x/lab-11.labels.json")), None);
    assert_eq!(set_of(10), "held-out");
    assert_eq!(set_of(13), "held-out");
    assert_eq!(set_of(8), "tuning");
}

/// The benign users of seeds 8 and later do carry the traps issue 11 asks for (a seed made again
/// with the old clients, or a client change that loses one, fails here): every persona is
/// there, and the capture holds browsers' Referer and Origin on the site's own address, a
/// back office preflight, an OAuth refresh after an expired token, free text with SQL words,
/// apostrophes and `<3`, the customers' webhook URLs and one on the site itself, and the
/// partner's last (empty) catalogue page. Reads the captures and logs only, not apitap's alerts.
#[test]
fn new_seeds_carry_every_benign_trap() {
    let mut checked = 0;
    for p in labs() {
        let labels: Value =
            serde_json::from_slice(&std::fs::read(beside(&p, "labels.json")).expect("labels")).expect("json");
        let Some(personas) = labels["benign_personas"].as_object() else {
            continue; // seeds 1-7: the simpler benign users
        };
        let seed = labels["seed"].as_u64().unwrap_or(0);
        let have: BTreeSet<&str> = personas.values().filter_map(Value::as_str).collect();
        for want in ["web", "mobile", "integrator", "partner", "backoffice", "monitor"] {
            assert!(have.contains(want), "seed {seed}: no {want} persona in {have:?}");
        }
        let pcap = {
            use std::io::Read;
            let mut v = Vec::new();
            let f = std::fs::File::open(&p).expect("capture");
            flate2::read::GzDecoder::new(f).read_to_end(&mut v).expect("gzip");
            v
        };
        let count = |needle: &str| pcap.windows(needle.len()).filter(|w| *w == needle.as_bytes()).count();
        for (needle, min) in [
            ("\r\nReferer: http://10.77.0.1/", 200),
            ("\r\nOrigin: http://10.77.0.1\r\n", 200),
            ("\r\nOrigin: http://10.77.0.1:8080\r\n", 50),
            ("OPTIONS /api/v1/", 20),
            ("grant_type=refresh_token", 3),
            ("\"error\":\"invalid_token\"", 3),
            ("return_to=http", 3),
            ("hooks.example.com", 1),
            ("\"url\": \"http://10.77.0.1/", 2),
            ("callback_url", 10),
            ("page=11&per_page=20", 2),
            ("<3 ", 5),
            ("/api/v1/users/search?name=", 10),
        ] {
            let n = count(needle);
            assert!(
                n >= min,
                "seed {seed}: {needle:?} {n} times in the capture, expected at least {min}"
            );
        }
        let words = count("drop+table") + count("drop%20table") + count("select+pro") + count("select%20pro");
        assert!(words > 0, "seed {seed}: no SQL words in the search box");
        let apostrophes = count("O'") + count("O%27") + count("d'Al") + count("dad's");
        assert!(
            apostrophes >= 10,
            "seed {seed}: {apostrophes} names or words with an apostrophe"
        );
        // typos then success, in the server's own log: a benign 404 then a 200 from the same user
        let benign: BTreeSet<&str> = personas.keys().map(String::as_str).collect();
        let mut last_404: BTreeSet<String> = BTreeSet::new();
        let mut recovered = 0;
        for l in gunzip(&beside(&p, "access.jsonl.gz")).lines() {
            let Ok(e) = serde_json::from_str::<Value>(l) else {
                continue;
            };
            let ip = e["client_ip"].as_str().unwrap_or("");
            if !benign.contains(ip) {
                continue;
            }
            match e["status"].as_u64() {
                Some(404) => {
                    last_404.insert(ip.to_string());
                }
                Some(200) if last_404.remove(ip) => recovered += 1,
                _ => {}
            }
        }
        assert!(
            recovered >= 10,
            "seed {seed}: only {recovered} benign 404s followed by a 200"
        );
        checked += 1;
    }
    if checked == 0 {
        eprintln!("SKIPPED: no lab capture made with the new benign users (seed 8 or later)");
    }
}
