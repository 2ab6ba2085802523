//! Integration test over the external corpus in `../shared/corpus/` (captures and
//! expectations taken from Suricata's suricata-verify and Arkime's test suites).
//!
//! 1. Every case's capture is replayed through the `apitap` binary (with a per-case
//!    timeout): no case may panic, die on a signal or hang, and every output line must
//!    be a JSON object with an `event_type`.
//! 2. Every case whose `expected.applicability` starts with `direct` is checked against
//!    its expectations (`http_transactions`, `http_transactions_min`, `fields`,
//!    Arkime `sessions`).
//! 3. A summary is printed (run with `--nocapture`); the test fails when a case crashed
//!    or a direct case fails and is not listed in [`EXPLAINED`].
//!
//! The test is skipped (with a message) when the corpus folder is absent.
//! `CORPUS_ONLY=<substring>` restricts the run to matching case ids.
//!
//! Test-level equivalences (not apitap differences, so not in `EXPLAINED`):
//! - Suricata logs `http.length: 0` for a request that got no response; apitap leaves
//!   `length` (and `status`) out. Expected `length: 0` matches an absent length when the
//!   event has no status.
//! - An alert's `http` object is a snapshot taken when the alert fired, so `length` is
//!   not compared for `event_type: alert` entries; alert/fileinfo entries only need one
//!   http event with their http fields (endpoints in either direction).
//! - Arkime's `http_transactions` counts requests: it is compared with the http events
//!   that carry a method. Arkime sessions that are not HTTP (TLS SNI, QUIC hosts) or are
//!   HTTP/2 are not compared. Arkime paths are URLs without the query string.
//! - Keys apitap does not produce (`tx_id`, `flow.*`, `alert.*`, `status_string`,
//!   `http.content_range`, ...) are ignored; `http.*_headers` cases run with --log-headers.

use std::collections::BTreeSet;
use std::fs;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Per-case wall-clock limit for one replay.
const CASE_TIMEOUT: Duration = Duration::from_secs(20);

/// Per-case memory bound (peak RSS); the corpus captures are all small (< 3 MB).
const CASE_MAX_RSS_KB: u64 = 1 << 20;

/// Direct cases where apitap differs from the source project's expectation for a
/// defensible reason. A mismatch is still reported for these, but does not fail the test.
/// apitap bugs do NOT belong here.
const EXPLAINED: &[(&str, &str)] = &[
    // --- protocols / encapsulations outside apitap's scope
    (
        "other/arkime/sctp-www.pcap",
        "both HTTP sessions run over SCTP, apitap reads HTTP over TCP only (Arkime's own request count is 0/null too)",
    ),
    (
        "other/arkime/gre-erspan-vxlan.pcap",
        "innermost tunnel is VXLAN-GPE (UDP 4790, next-protocol header); apitap decodes VXLAN on UDP 4789 only, like Suricata's default; the session is a lone response anyway",
    ),
    // --- HTTP/0.9 and non-HTTP/1.x request lines
    (
        "suricata-verify/http-not09",
        "request line `GET /` has no version and is followed by a header line without a colon; the server answered HTTP/0.9-style (bare body). apitap rejects both sides as non-HTTP/1.x and reports INVALID_REQUEST_LINE and INVALID_RESPONSE_LINE anomalies instead of a transaction (Suricata's libhtp is lenient)",
    ),
    // --- counting / reporting policy
    (
        "other/arkime/arkime_synthetic.pcap",
        "Arkime's request counters (22) skip the RPC_IN_DATA/RPC_OUT_DATA requests (3 sessions, Arkime parsed no method) and the split WebSocket upgrade GET; apitap logs those 4 transactions (26). All HTTP sessions' method/host/path/status sets match",
    ),
    (
        "other/arkime/http-100-continue.pcap",
        "Arkime lists the interim `100 Continue` among status codes; apitap (like Suricata) reports one transaction with its final status (404)",
    ),
];

/// Keys of the EVE `http` object that apitap can produce (the rest of Suricata's keys,
/// e.g. `content_range`, `status_string`, are not checked).
const APITAP_HTTP_KEYS: &[&str] = &[
    "hostname",
    "http_port",
    "url",
    "http_method",
    "protocol",
    "status",
    "length",
    "http_user_agent",
    "http_content_type",
    "http_refer",
    "redirect",
    "xff",
    "request_headers",
    "response_headers",
];

/// Top-level EVE keys that apitap produces and that expectations may constrain.
const APITAP_TOP_KEYS: &[&str] = &["src_ip", "src_port", "dest_ip", "dest_port", "proto"];

/// Shorthand field names of the manifest's `fields` entries -> key in the `http` object.
const FIELD_MAP: &[(&str, &str)] = &[
    ("method", "http_method"),
    ("uri", "url"),
    ("host", "hostname"),
    ("status", "status"),
    ("length", "length"),
    ("protocol", "protocol"),
    ("user_agent", "http_user_agent"),
    ("content_type", "http_content_type"),
    ("referer", "http_refer"),
    ("redirect", "redirect"),
];

#[derive(Default)]
struct CaseResult {
    id: String,
    direct: bool,
    /// Panic, signal, timeout, unexpected exit code, invalid output.
    crash: Option<String>,
    /// Expectation mismatches (direct cases only).
    mismatches: Vec<String>,
    http_events: usize,
    exit_code: Option<i32>,
    peak_rss_kb: u64,
}

struct RunOutput {
    exit_code: Option<i32>,
    events: Vec<Value>,
    /// Peak resident set size seen while polling (Linux /proc; 0 elsewhere).
    peak_rss_kb: u64,
}

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus")
}

#[test]
fn corpus() {
    let dir = corpus_dir();
    let manifest_path = dir.join("MANIFEST.json");
    if !manifest_path.is_file() {
        eprintln!(
            "SKIPPED: corpus: {} not found (no ../shared/corpus/MANIFEST.json next to the repo)",
            dir.display()
        );
        return;
    }
    let manifest: Value = serde_json::from_str(&fs::read_to_string(&manifest_path).expect("read corpus MANIFEST.json"))
        .expect("corpus MANIFEST.json is JSON");
    let cases = manifest.as_array().expect("MANIFEST.json is an array");
    let only = std::env::var("CORPUS_ONLY").ok();

    let tmp = tempfile::tempdir().expect("tempdir");
    let mut results: Vec<CaseResult> = Vec::new();
    for case in cases {
        let id = case["id"].as_str().unwrap_or("?").to_string();
        if let Some(filter) = &only {
            if !id.contains(filter.as_str()) {
                continue;
            }
        }
        results.push(run_case(&dir, tmp.path(), case));
    }

    // ---- report ----
    let explained = |id: &str| EXPLAINED.iter().find(|(c, _)| *c == id).map(|(_, r)| *r);
    let n_exit1 = results.iter().filter(|r| r.exit_code == Some(1)).count();
    let mut n_crash = 0;
    let mut n_direct = 0;
    let mut n_pass = 0;
    let mut n_explained = 0;
    let mut n_fail = 0;
    let mut failing_ids = Vec::new();
    eprintln!();
    eprintln!("corpus: per-case results (only non-passing cases are listed)");
    for r in &results {
        if let Some(c) = &r.crash {
            n_crash += 1;
            eprintln!("  CRASH     {}: {}", r.id, c);
        }
        if !r.direct {
            continue;
        }
        n_direct += 1;
        if r.crash.is_none() && r.mismatches.is_empty() {
            n_pass += 1;
            if let Some(reason) = explained(&r.id) {
                eprintln!("  STALE     {}: listed in EXPLAINED ({reason}) but passes", r.id);
            }
            continue;
        }
        let why = if let Some(c) = &r.crash {
            c.clone()
        } else {
            r.mismatches.join("; ")
        };
        match explained(&r.id) {
            Some(reason) if r.crash.is_none() => {
                n_explained += 1;
                eprintln!("  EXPLAINED {}: {} [http={}] -- {}", r.id, why, r.http_events, reason);
            }
            _ => {
                n_fail += 1;
                failing_ids.push(r.id.clone());
                eprintln!(
                    "  FAIL      {}: {} [http={} exit={:?}]",
                    r.id, why, r.http_events, r.exit_code
                );
            }
        }
    }
    for (id, _) in EXPLAINED {
        if !results.iter().any(|r| r.id == *id) && only.is_none() {
            eprintln!("  UNKNOWN   {id}: listed in EXPLAINED but not a corpus case");
        }
    }
    eprintln!();
    eprintln!("corpus summary");
    eprintln!("  {:<28} {:>5}", "cases run", results.len());
    eprintln!("  {:<28} {:>5}", "panics/crashes/timeouts", n_crash);
    eprintln!("  {:<28} {:>5}", "exit 1 (unreadable capture)", n_exit1);
    if let Some(r) = results.iter().max_by_key(|r| r.peak_rss_kb) {
        eprintln!(
            "  {:<28} {:>5} ({})",
            "max peak RSS seen, MiB",
            r.peak_rss_kb >> 10,
            r.id
        );
    }
    eprintln!("  {:<28} {:>5}", "direct cases", n_direct);
    eprintln!("  {:<28} {:>5}", "  passing", n_pass);
    eprintln!("  {:<28} {:>5}", "  explained (differ, ok)", n_explained);
    eprintln!("  {:<28} {:>5}", "  failing", n_fail);
    eprintln!();

    assert_eq!(
        n_crash, 0,
        "corpus: {n_crash} case(s) crashed, hung or wrote invalid output"
    );
    assert_eq!(
        n_fail, 0,
        "corpus: {n_fail} direct case(s) fail without an explanation: {failing_ids:?}"
    );
}

// ---------------------------------------------------------------------------------------
// Running apitap
// ---------------------------------------------------------------------------------------

fn run_case(dir: &Path, tmp: &Path, case: &Value) -> CaseResult {
    let id = case["id"].as_str().unwrap_or("?").to_string();
    let expected = &case["expected"];
    let direct = expected["applicability"]
        .as_str()
        .is_some_and(|a| a.starts_with("direct"));
    let mut result = CaseResult {
        id: id.clone(),
        direct,
        ..Default::default()
    };
    let pcap = dir.join(case["pcap"].as_str().unwrap_or(""));
    // Header expectations (`http.request_headers...`) need apitap's --log-headers.
    let log_headers = expected.to_string().contains("_headers");
    let slug: String = id
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let out_path = tmp.join(format!("{slug}.json"));
    let err_path = tmp.join(format!("{slug}.stderr"));

    match run_apitap(&pcap, &out_path, &err_path, log_headers) {
        Err(crash) => {
            result.crash = Some(crash);
        }
        Ok(run) => {
            result.exit_code = run.exit_code;
            result.peak_rss_kb = run.peak_rss_kb;
            result.http_events = run.events.iter().filter(|e| e["event_type"] == "http").count();
            if direct {
                if run.exit_code != Some(0) {
                    result
                        .mismatches
                        .push(format!("exit code {:?} on a direct case", run.exit_code));
                }
                check_expectations(expected, &run.events, &mut result.mismatches);
            }
        }
    }
    result
}

/// Run `apitap replay`; Err(reason) for a crash, a hang or invalid output.
fn run_apitap(pcap: &Path, out_path: &Path, err_path: &Path, log_headers: bool) -> Result<RunOutput, String> {
    let stderr_file = fs::File::create(err_path).map_err(|e| format!("stderr file: {e}"))?;
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_apitap"));
    cmd.arg("replay")
        .arg(pcap)
        .arg("-o")
        .arg(out_path)
        .arg("--no-progress")
        .arg("-q");
    if log_headers {
        cmd.arg("--log-headers");
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(stderr_file));
    let start = Instant::now();
    let mut child = cmd.spawn().map_err(|e| format!("spawn apitap: {e}"))?;
    let status_path = format!("/proc/{}/status", child.id());
    let mut peak_rss_kb = 0u64;
    let status = loop {
        if let Some(hwm) = read_vm_hwm_kb(&status_path) {
            peak_rss_kb = peak_rss_kb.max(hwm);
        }
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) => {
                if start.elapsed() > CASE_TIMEOUT {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!("timeout: still running after {CASE_TIMEOUT:?}, killed"));
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => return Err(format!("wait: {e}")),
        }
    };
    let stderr = fs::read_to_string(err_path).unwrap_or_default();
    let stderr_tail: String = stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .take(3)
        .collect::<Vec<_>>()
        .join(" | ");
    if stderr.contains("panicked at") {
        return Err(format!("panic (exit {:?}): {stderr_tail}", status.code()));
    }
    let code = match status.code() {
        None => {
            #[cfg(unix)]
            {
                use std::os::unix::process::ExitStatusExt;
                return Err(format!("killed by signal {:?}: {stderr_tail}", status.signal()));
            }
            #[cfg(not(unix))]
            return Err(format!("no exit code: {stderr_tail}"));
        }
        Some(c) => c,
    };
    match code {
        0 | 1 => {}
        101 => return Err(format!("panic (exit 101): {stderr_tail}")),
        c => return Err(format!("unexpected exit code {c}: {stderr_tail}")),
    }
    if peak_rss_kb > CASE_MAX_RSS_KB {
        return Err(format!(
            "memory: peak RSS {} MiB > {} MiB",
            peak_rss_kb >> 10,
            CASE_MAX_RSS_KB >> 10
        ));
    }
    let text = fs::read_to_string(out_path).unwrap_or_default();
    let _ = fs::remove_file(out_path);
    let mut events = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let v: Value = serde_json::from_str(line).map_err(|e| {
            format!(
                "output line {} is not JSON ({e}): {}",
                n + 1,
                line.chars().take(120).collect::<String>()
            )
        })?;
        if !v.get("event_type").is_some_and(Value::is_string) {
            return Err(format!("output line {} has no string event_type", n + 1));
        }
        events.push(v);
    }
    Ok(RunOutput {
        exit_code: Some(code),
        events,
        peak_rss_kb,
    })
}

/// `VmHWM` (peak RSS, kB) of a running process, from /proc/<pid>/status.
fn read_vm_hwm_kb(status_path: &str) -> Option<u64> {
    let text = fs::read_to_string(status_path).ok()?;
    let line = text.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

// ---------------------------------------------------------------------------------------
// Expectations
// ---------------------------------------------------------------------------------------

fn check_expectations(expected: &Value, events: &[Value], out: &mut Vec<String>) {
    let http: Vec<&Value> = events.iter().filter(|e| e["event_type"] == "http").collect();

    // Arkime's figure is a sum of per-method *request* counters: compare it with the
    // events that carry a request (apitap also logs responses whose request it never
    // saw, e.g. after a mid-stream pickup; Arkime counts no request for those).
    let requests_only = expected["http_transactions_source"]
        .as_str()
        .is_some_and(|s| s.contains("requests, not responses"));
    if let Some(n) = expected["http_transactions"].as_u64() {
        let got = if requests_only {
            http.iter().filter(|e| e["http"].get("http_method").is_some()).count()
        } else {
            http.len()
        };
        if got as u64 != n {
            let what = if requests_only { " (events with a request)" } else { "" };
            out.push(format!("http_transactions: expected {n}, got {got}{what}"));
        }
    }
    if let Some(n) = expected["http_transactions_min"].as_u64() {
        if (http.len() as u64) < n {
            out.push(format!("http_transactions_min: expected >= {n}, got {}", http.len()));
        }
    }

    let has_sessions = expected["sessions"].is_array();
    if let Some(fields) = expected["fields"].as_array() {
        for (i, entry) in fields.iter().enumerate() {
            let et = entry["event_type"].as_str();
            if et.is_none() && has_sessions {
                // Arkime tuples are derived from the per-session sets, checked below.
                continue;
            }
            check_field_entry(i, entry, &http, out);
        }
    }

    if let Some(sessions) = expected["sessions"].as_array() {
        for s in sessions {
            check_session(s, &http, out);
        }
    }
}

/// A predicate built from one `fields` entry: (key path into the event, expected value).
type Constraint = (String, Value);

fn field_constraints(entry: &Value, http_only_keys: bool) -> Vec<Constraint> {
    let mut cs = Vec::new();
    for (short, key) in FIELD_MAP {
        if let Some(v) = entry.get(*short) {
            if !v.is_null() {
                cs.push((format!("http.{key}"), v.clone()));
            }
        }
    }
    if let Some(om) = entry["other_match"].as_object() {
        for (k, v) in om {
            if k == "http" {
                if let Some(obj) = v.as_object() {
                    for (hk, hv) in obj {
                        if APITAP_HTTP_KEYS.contains(&hk.as_str()) {
                            cs.push((format!("http.{hk}"), hv.clone()));
                        }
                    }
                }
            } else if let Some(rest) = k.strip_prefix("http.") {
                let first = rest.split(['.', '[']).next().unwrap_or("");
                if APITAP_HTTP_KEYS.contains(&first) {
                    cs.push((k.clone(), v.clone()));
                }
            } else if !http_only_keys && APITAP_TOP_KEYS.contains(&k.as_str()) {
                cs.push((k.clone(), v.clone()));
            }
        }
    }
    cs
}

/// Does the entry say anything about an HTTP transaction?
fn carries_http(entry: &Value) -> bool {
    FIELD_MAP
        .iter()
        .any(|(short, _)| entry.get(*short).is_some_and(|v| !v.is_null()))
        || entry["other_match"]
            .as_object()
            .is_some_and(|om| om.keys().any(|k| k == "http" || k.starts_with("http.")))
}

fn check_field_entry(i: usize, entry: &Value, http: &[&Value], out: &mut Vec<String>) {
    let et = entry["event_type"].as_str().unwrap_or("(none)");
    if et == "http" {
        let cs = field_constraints(entry, false);
        let n = http.iter().filter(|e| matches_all(e, &cs)).count() as u64;
        let want = entry["count"].as_u64().unwrap_or(1);
        if n != want {
            out.push(format!(
                "fields[{i}] http {}: expected count {want}, got {n}{}",
                describe(&cs),
                nearest(http, &cs)
            ));
        }
    } else if carries_http(entry) {
        // No rules in apitap: the transaction the alert/fileinfo refers to must exist.
        // Endpoints may be logged in either direction (alerts on responses).
        let mut cs = field_constraints(entry, true);
        if et == "alert" {
            // An alert's `http` object is a snapshot taken when the alert fired (often
            // mid-response), so its `length` is not the transaction's final body length.
            cs.retain(|(k, _)| k != "http.length");
        }
        let ends = endpoint_constraints(entry);
        let n = http
            .iter()
            .filter(|e| matches_all(e, &cs) && endpoints_match(e, &ends))
            .count();
        if n == 0 {
            out.push(format!(
                "fields[{i}] {et} needs an http event {}: none{}",
                describe(&cs),
                nearest(http, &cs)
            ));
        }
    }
}

fn endpoint_constraints(entry: &Value) -> Vec<(&'static str, Value)> {
    let mut v = Vec::new();
    if let Some(om) = entry["other_match"].as_object() {
        for k in ["src_ip", "src_port", "dest_ip", "dest_port"] {
            if let Some(x) = om.get(k) {
                v.push((k, x.clone()));
            }
        }
    }
    v
}

fn endpoints_match(e: &Value, ends: &[(&'static str, Value)]) -> bool {
    let swap = |k: &str| match k {
        "src_ip" => "dest_ip",
        "dest_ip" => "src_ip",
        "src_port" => "dest_port",
        _ => "src_port",
    };
    let fwd = ends.iter().all(|(k, v)| value_matches(k, v, lookup(e, k).as_ref()));
    let rev = ends
        .iter()
        .all(|(k, v)| value_matches(k, v, lookup(e, swap(k)).as_ref()));
    fwd || rev
}

fn matches_all(e: &Value, cs: &[Constraint]) -> bool {
    cs.iter().all(|(k, v)| constraint_holds(e, k, v))
}

fn constraint_holds(e: &Value, k: &str, v: &Value) -> bool {
    let actual = lookup(e, k);
    if value_matches(k, v, actual.as_ref()) {
        return true;
    }
    // Equivalence: Suricata always logs `length` (0 when no response body was seen);
    // apitap leaves `length` out when it saw no response at all (no status either).
    k == "http.length" && v.as_u64() == Some(0) && actual.is_none() && e["http"].get("status").is_none()
}

fn describe(cs: &[Constraint]) -> String {
    let parts: Vec<String> = cs
        .iter()
        .map(|(k, v)| format!("{}={}", k.trim_start_matches("http."), short(v)))
        .collect();
    format!("{{{}}}", parts.join(","))
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 60 {
        format!("{}...", s.chars().take(57).collect::<String>())
    } else {
        s
    }
}

/// For a failed match: which constraints the best-matching http event violates.
fn nearest(http: &[&Value], cs: &[Constraint]) -> String {
    let best = http
        .iter()
        .max_by_key(|e| cs.iter().filter(|(k, v)| constraint_holds(e, k, v)).count());
    match best {
        None => " (no http events)".to_string(),
        Some(e) => {
            let diffs: Vec<String> = cs
                .iter()
                .filter(|(k, v)| !constraint_holds(e, k, v))
                .map(|(k, _)| {
                    format!(
                        "{} is {}",
                        k.trim_start_matches("http."),
                        lookup(e, k).as_ref().map(short).unwrap_or_else(|| "absent".into())
                    )
                })
                .collect();
            if diffs.is_empty() {
                String::new()
            } else {
                format!(" (closest event: {})", diffs.join(", "))
            }
        }
    }
}

/// Resolve `a.b[2].c` / `a.b.__len` (length of an array/object) in an event.
fn lookup(e: &Value, path: &str) -> Option<Value> {
    let mut cur = e;
    for part in path.split('.') {
        if part == "__len" {
            let n = cur.as_array().map(|a| a.len()).or(cur.as_object().map(|o| o.len()))?;
            return Some(Value::from(n));
        }
        let (name, idx) = match part.find('[') {
            Some(p) => (&part[..p], Some(&part[p..])),
            None => (part, None),
        };
        if !name.is_empty() {
            cur = cur.get(name)?;
        }
        if let Some(mut idx) = idx {
            while let Some(rest) = idx.strip_prefix('[') {
                let end = rest.find(']')?;
                let n: usize = rest[..end].parse().ok()?;
                cur = cur.get(n)?;
                idx = &rest[end + 1..];
            }
        }
    }
    Some(cur.clone())
}

fn value_matches(key: &str, expected: &Value, actual: Option<&Value>) -> bool {
    let key_last = key.rsplit('.').next().unwrap_or(key);
    match (expected, actual) {
        (Value::Null, None) | (Value::Null, Some(Value::Null)) => true,
        (_, None) => false,
        (Value::Number(a), Some(Value::Number(b))) => a.as_f64() == b.as_f64(),
        (Value::String(a), Some(Value::String(b))) => {
            if key_last.ends_with("_ip") {
                match (a.parse::<IpAddr>(), b.parse::<IpAddr>()) {
                    (Ok(x), Ok(y)) => x == y,
                    _ => a == b,
                }
            } else if key_last == "proto" {
                a.eq_ignore_ascii_case(b)
            } else {
                a == b
            }
        }
        (Value::Number(a), Some(Value::String(b))) | (Value::String(b), Some(Value::Number(a))) => a.to_string() == *b,
        (Value::Object(o), Some(act)) => o.iter().all(|(k, v)| value_matches(k, v, act.get(k))),
        (a, Some(b)) => a == b,
    }
}

// ---------------------------------------------------------------------------------------
// Arkime per-session sets
// ---------------------------------------------------------------------------------------

/// "ip:port" where IPv6 addresses contain colons: split at the last colon.
fn parse_endpoint(s: &str) -> Option<(IpAddr, u16)> {
    let (ip, port) = s.rsplit_once(':')?;
    let ip = ip.trim_start_matches('[').trim_end_matches(']');
    Some((ip.parse().ok()?, port.parse().ok()?))
}

fn event_endpoints(e: &Value) -> Option<((IpAddr, u16), (IpAddr, u16))> {
    let ip = |k: &str| e[k].as_str()?.parse::<IpAddr>().ok();
    let port = |k: &str| e[k].as_u64().and_then(|p| u16::try_from(p).ok());
    Some(((ip("src_ip")?, port("src_port")?), (ip("dest_ip")?, port("dest_port")?)))
}

/// Host without a port; IPv6 literals keep/lose brackets consistently; lower-case.
fn normalize_host(h: &str) -> String {
    let h = h.trim().to_ascii_lowercase();
    if let Some(rest) = h.strip_prefix('[') {
        if let Some(end) = rest.find(']') {
            return rest[..end].to_string();
        }
    }
    match h.rsplit_once(':') {
        // exactly one colon: host:port
        Some((host, port)) if !host.contains(':') && port.chars().all(|c| c.is_ascii_digit()) => host.to_string(),
        _ => h,
    }
}

fn check_session(s: &Value, http: &[&Value], out: &mut Vec<String>) {
    let src = s["src"].as_str().unwrap_or("");
    let dst = s["dst"].as_str().unwrap_or("");
    if let Some(protos) = s["protocols"].as_array() {
        let has = |p: &str| protos.iter().any(|x| x == p);
        // Not an HTTP session (its `hosts` are a TLS SNI / QUIC name), or HTTP/2, which
        // is out of apitap's scope (the manifest files "HTTP/2 counted as http" under
        // config-dependent).
        if !has("http") || has("http2") {
            return;
        }
    }
    let (Some(a), Some(b)) = (parse_endpoint(src), parse_endpoint(dst)) else {
        out.push(format!("session {src}->{dst}: cannot parse endpoints"));
        return;
    };
    let evs: Vec<&Value> = http
        .iter()
        .copied()
        .filter(|e| event_endpoints(e).is_some_and(|(x, y)| (x == a && y == b) || (x == b && y == a)))
        .collect();
    let label = format!("session {src}->{dst}");

    let strs = |key: &str| -> BTreeSet<String> {
        evs.iter()
            .filter_map(|e| e["http"][key].as_str().map(str::to_string))
            .collect()
    };
    let mut missing: Vec<String> = Vec::new();

    if let Some(ms) = s["methods"].as_array() {
        let have = strs("http_method");
        for m in ms.iter().filter_map(Value::as_str) {
            if !have.contains(m) {
                missing.push(format!("method {m}"));
            }
        }
    }
    if let Some(ps) = s["paths"].as_array() {
        // Arkime's http.path is the request target without the query string.
        let mut have: BTreeSet<String> = BTreeSet::new();
        for e in &evs {
            if let Some(u) = e["http"]["url"].as_str() {
                have.insert(u.split('?').next().unwrap_or(u).to_string());
            }
            if let Some(p) = e["api"]["path"].as_str() {
                have.insert(p.to_string());
            }
        }
        for p in ps.iter().filter_map(Value::as_str) {
            if !have.contains(p) {
                missing.push(format!("path {p}"));
            }
        }
    }
    if let Some(cs) = s["status_codes"].as_array() {
        let have: BTreeSet<u64> = evs.iter().filter_map(|e| e["http"]["status"].as_u64()).collect();
        for c in cs.iter().filter_map(Value::as_u64) {
            if !have.contains(&c) {
                missing.push(format!("status {c}"));
            }
        }
    }
    if let Some(hs) = s["hosts"].as_array() {
        let have: BTreeSet<String> = strs("hostname").iter().map(|h| normalize_host(h)).collect();
        let no_host = evs
            .iter()
            .any(|e| e["http"]["hostname"].as_str().is_none_or(|h| h.is_empty()));
        for h in hs.iter().filter_map(Value::as_str) {
            let n = normalize_host(h);
            let ok = if n.is_empty() { no_host } else { have.contains(&n) };
            if !ok {
                missing.push(format!("host {h:?}"));
            }
        }
    }
    if !missing.is_empty() {
        let have_desc: Vec<String> = evs
            .iter()
            .map(|e| {
                format!(
                    "{} {} {} {}",
                    e["http"]["http_method"].as_str().unwrap_or("-"),
                    e["http"]["hostname"].as_str().unwrap_or("-"),
                    short(&e["http"]["url"]),
                    e["http"]["status"]
                )
            })
            .collect();
        out.push(format!(
            "{label}: missing {} (apitap has {} event(s){}{})",
            missing.join(", "),
            evs.len(),
            if have_desc.is_empty() { "" } else { ": " },
            have_desc.join(" / ")
        ));
    }
}
