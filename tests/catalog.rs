//! The API catalog from real captures: the routes of the sample API server (integers, UUIDs,
//! query filters, JSON bodies) come out as exactly its templates and methods, typed, with
//! nothing spurious; 404-only guesses stay apart; the OpenAPI export validates as 3.1 (with the
//! `openapi-spec-validator` Python package; skipped, saying so, when it is not installed).

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

fn catalog(sample: &str, format: &str) -> Value {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("capture-samples")
        .join(sample);
    let out = Command::new(env!("CARGO_BIN_EXE_apitap"))
        .args(["catalog", "--format", format])
        .arg(&p)
        .output()
        .expect("apitap");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("json")
}

/// The raw catalog's entry for `METHOD /template` (null when absent).
fn endpoint(c: &Value, name: &str) -> Value {
    c["endpoints"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["endpoint"] == name)
        .cloned()
        .unwrap_or_default()
}

#[test]
fn api_server_routes_are_exactly_the_templates() {
    let c = catalog("http-mixed-api.pcap", "json");
    let got: BTreeSet<String> = c["endpoints"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| e["endpoint"].as_str().unwrap_or("").to_string())
        .collect();
    // api_server.py's routes that this capture exercises
    let want: BTreeSet<String> = [
        "GET /api/health",
        "GET /api/users/{id}",
        "GET /api/orders/{uuid}",
        "DELETE /api/orders/{uuid}",
        "GET /api/products",
        "POST /api/login",
        "POST /api/orders",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(got, want);
    let ep = |name: &str| endpoint(&c, name);
    assert_eq!(ep("GET /api/users/{id}")["path_params"][0]["type"], "integer");
    assert_eq!(ep("GET /api/orders/{uuid}")["path_params"][0]["format"], "uuid");
    assert_eq!(ep("GET /api/products")["query_params"]["limit"]["type"], "integer");
    assert_eq!(ep("GET /api/products")["query_params"]["q"]["type"], "string");
    assert_eq!(ep("POST /api/login")["request_body"]["type"], "object");
    assert!(ep("POST /api/login")["request_body"]["properties"]["password"].is_object());
    assert!(
        ep("GET /api/users/{id}")["sensitive"]
            .as_array()
            .is_some_and(|a| a.contains(&Value::from("email")))
    );
    let total: u64 = c["endpoints"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| e["count"].as_u64().unwrap_or(0))
        .sum::<u64>()
        + c["not_found_only"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| e["count"].as_u64().unwrap_or(0))
            .sum::<u64>();
    assert_eq!(total, 705, "every transaction is in the catalog");
}

#[test]
fn openapi_export_validates_as_3_1() {
    let doc = catalog("http-keepalive.pcap", "openapi");
    assert_eq!(doc["openapi"], "3.1.0");
    let has = Command::new("python3")
        .args(["-c", "import openapi_spec_validator"])
        .status()
        .is_ok_and(|s| s.success());
    if !has {
        eprintln!(
            "SKIPPED: OpenAPI validation: python3 with openapi-spec-validator not installed (the README's second \
             command installs it)"
        );
        return;
    }
    for sample in ["http-keepalive.pcap", "http-mixed-api.pcap", "http-ipv6.pcap"] {
        let doc = catalog(sample, "openapi");
        let dir = tempfile::tempdir().expect("tmp");
        let p = dir.path().join("openapi.json");
        std::fs::write(&p, serde_json::to_vec(&doc).expect("json")).expect("write");
        let out = Command::new("python3")
            .args([
                "-c",
                "import json,sys; from openapi_spec_validator import validate; validate(json.load(open(sys.argv[1])))",
            ])
            .arg(&p)
            .output()
            .expect("python3");
        assert!(
            out.status.success(),
            "{sample}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn http_events_carry_their_endpoint() {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("capture-samples/http-mixed-api.pcap");
    let out = Command::new(env!("CARGO_BIN_EXE_apitap"))
        .args(["replay", "-q"])
        .arg(&p)
        .output()
        .expect("apitap");
    let text = String::from_utf8_lossy(&out.stdout);
    let e: Value = text
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("json"))
        .find(|e| e["http"]["url"].as_str().is_some_and(|u| u.starts_with("/api/users/")))
        .expect("a users call");
    assert_eq!(e["api"]["endpoint"], "GET /api/users/{id}");
}

fn replay(args: &[&str]) -> Vec<Value> {
    let out = Command::new(env!("CARGO_BIN_EXE_apitap"))
        .args(["replay", "-q", "--no-progress"])
        .args(args)
        .output()
        .expect("apitap");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("json"))
        .collect()
}

fn sample(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("capture-samples")
        .join(name)
        .to_string_lossy()
        .into_owned()
}

/// `endpoint` events: one when an endpoint first answers something other than 404 (once, even
/// with several shards), and a snapshot of every endpoint at exit; 404-only guesses never.
#[test]
fn endpoint_events_first_seen_once_and_snapshot_at_exit() {
    for workers in ["1", "3"] {
        let ev = replay(&[&sample("http-mixed-api.pcap"), "--workers", workers]);
        let of = |reason: &str| -> Vec<String> {
            let mut v: Vec<String> = ev
                .iter()
                .filter(|e| e["event_type"] == "endpoint" && e["endpoint"]["reason"] == reason)
                .map(|e| e["endpoint"]["endpoint"].as_str().unwrap_or("").to_string())
                .collect();
            v.sort();
            v
        };
        let first = of("first_seen");
        let dedup: BTreeSet<&String> = first.iter().collect();
        assert_eq!(first.len(), dedup.len(), "announced twice: {first:?}");
        assert_eq!(first.len(), 7, "{first:?}");
        assert!(
            !first.iter().any(|e| e.contains("missing")),
            "a 404-only path: {first:?}"
        );
        let snap = of("snapshot");
        assert_eq!(snap.len(), 7, "{snap:?}");
        let users = ev
            .iter()
            .find(|e| {
                e["event_type"] == "endpoint"
                    && e["endpoint"]["reason"] == "snapshot"
                    && e["endpoint"]["endpoint"] == "GET /api/users/{id}"
            })
            .expect("users snapshot");
        assert!(users["endpoint"]["count"].as_u64().unwrap_or(0) > 10);
        assert!(users["endpoint"]["latency_ms"]["p50"].is_number());
    }
}

/// Against a reference spec: documented, shadow (not in the spec) and zombie (deprecated,
/// still called), in the catalog, the OpenAPI export and the endpoint events.
#[test]
fn reference_spec_marks_shadow_and_zombie_endpoints() {
    let dir = tempfile::tempdir().expect("tmp");
    let spec = dir.path().join("spec.yaml");
    std::fs::write(
        &spec,
        "openapi: 3.0.3\ninfo: {title: shop, version: '1'}\nservers:\n  - url: http://10.0.0.1:8080/api\npaths:\n  /users/{userId}:\n    get: {responses: {'200': {description: ok}}}\n  /products:\n    get: {responses: {'200': {description: ok}}}\n  /orders:\n    post:\n      deprecated: true\n      responses: {'201': {description: ok}}\n",
    )
    .expect("write");
    let spec = spec.to_string_lossy().into_owned();
    let out = Command::new(env!("CARGO_BIN_EXE_apitap"))
        .args([
            "catalog",
            "--format",
            "json",
            "--spec",
            &spec,
            &sample("http-mixed-api.pcap"),
        ])
        .output()
        .expect("apitap");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let c: Value = serde_json::from_slice(&out.stdout).expect("json");
    let status = |name: &str| endpoint(&c, name)["spec"].clone();
    assert_eq!(status("GET /api/users/{id}"), "documented");
    assert_eq!(status("GET /api/products"), "documented");
    assert_eq!(status("POST /api/orders"), "zombie");
    assert_eq!(status("POST /api/login"), "shadow");
    assert_eq!(status("GET /api/orders/{uuid}"), "shadow");
    let ev = replay(&["--spec", &spec, &sample("http-mixed-api.pcap")]);
    let zombie = ev
        .iter()
        .find(|e| e["event_type"] == "endpoint" && e["endpoint"]["endpoint"] == "POST /api/orders")
        .expect("orders endpoint event");
    assert_eq!(zombie["endpoint"]["spec"], "zombie");
    // A broken spec is one clear line and exit 2.
    std::fs::write(dir.path().join("bad.yaml"), "paths: {}\n").expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_apitap"))
        .args(["replay", "-q", "--spec"])
        .arg(dir.path().join("bad.yaml"))
        .arg(sample("http-keepalive.pcap"))
        .output()
        .expect("apitap");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.yaml") && err.contains("not an OpenAPI document"),
        "{err}"
    );
}

/// Snapshots follow packet time: with a 1 s interval a replay writes several, and the catalog
/// file (`--catalog`) is a complete OpenAPI document after the run.
#[test]
fn snapshots_follow_packet_time_and_the_catalog_file_is_written() {
    let dir = tempfile::tempdir().expect("tmp");
    let cfg = dir.path().join("c.toml");
    std::fs::write(&cfg, "[catalog]\nsnapshot_interval = 1\n").expect("write");
    let file = dir.path().join("openapi.json");
    let ev = replay(&[
        "--config",
        &cfg.to_string_lossy(),
        "--catalog",
        &file.to_string_lossy(),
        &sample("http-mixed-api.pcap"),
    ]);
    let times: BTreeSet<String> = ev
        .iter()
        .filter(|e| e["event_type"] == "endpoint" && e["endpoint"]["reason"] == "snapshot")
        .map(|e| e["timestamp"].as_str().unwrap_or("").to_string())
        .collect();
    assert!(times.len() >= 2, "snapshots at {times:?}");
    let doc: Value = serde_json::from_slice(&std::fs::read(&file).expect("catalog file")).expect("json");
    assert_eq!(doc["openapi"], "3.1.0");
    assert!(doc["paths"]["/api/users/{id}"]["get"].is_object());
    assert!(!dir.path().join("openapi.json.tmp").exists());
}

/// The lab's JSON API (capture-samples/lab/lab_api.py) while gobuster, ffuf, nmap, sqlmap,
/// wfuzz and scripted attackers hammer it: the catalog has exactly its routes. Attack
/// traffic (injection payloads, attack tools' user agents) does not define endpoints, and
/// 404-only guesses stay apart.
#[test]
fn lab_catalog_has_exactly_the_api_routes_under_attack() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("capture-samples/lab");
    let mut labs: Vec<_> = std::fs::read_dir(&dir)
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    labs.retain(|p: &std::path::PathBuf| p.to_string_lossy().ends_with(".pcap.gz"));
    labs.sort();
    if labs.is_empty() {
        eprintln!("SKIPPED: lab catalog: no lab captures in capture-samples/lab");
        return;
    }
    let want: BTreeSet<String> = [
        "POST /api/v1/login",
        "GET /api/v1/users/{id}",
        "GET /api/v1/users/lookup",
        "GET /api/v1/products",
        "GET /api/v1/products/{id}",
        "GET /api/v1/orders/{uuid}",
        "POST /api/v1/orders",
        "GET /api/v1/export",
        "GET /api/v1/admin/stats",
        "GET /api/v1/reports/{id}",
        "POST /api/v1/webhooks",
        "GET /api/v1/health",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    // Seeds from 8 on have benign users with real habits (lab_clients.py personas): they also
    // use the routes below (lab_api.py's route table), the login page, and CORS preflights.
    let personas: BTreeSet<String> = [
        "GET /",
        "GET /login",
        "POST /api/v1/oauth/token",
        "GET /api/v1/users/search",
        "PATCH /api/v1/users/{id}",
        "POST /api/v1/products/{id}/reviews",
        "POST /api/v1/contact",
        "GET /api/v1/webhooks",
        "DELETE /api/v1/webhooks/{id}",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for p in labs {
        let labels: Value = serde_json::from_slice(
            &std::fs::read(p.to_string_lossy().replace(".pcap.gz", ".labels.json")).expect("labels"),
        )
        .expect("labels json");
        let mut want = want.clone();
        if labels.get("benign_personas").is_some() {
            want.extend(personas.iter().cloned());
        }
        let out = Command::new(env!("CARGO_BIN_EXE_apitap"))
            .args(["catalog", "--format", "json"])
            .arg(&p)
            .output()
            .expect("apitap");
        assert!(out.status.success());
        let c: Value = serde_json::from_slice(&out.stdout).expect("json");
        let got: BTreeSet<String> = c["endpoints"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| e["endpoint"].as_str().unwrap_or("").to_string())
            .collect();
        let tp = got.intersection(&want).count() as f64;
        println!(
            "{}: precision {:.3}, recall {:.3} ({} endpoints, {} attack transactions left out, {} 404-only guesses)",
            p.display(),
            tp / got.len().max(1) as f64,
            tp / want.len() as f64,
            got.len(),
            c["excluded_attack_transactions"],
            c["not_found_only"].as_array().map_or(0, |a| a.len())
        );
        // CORS preflights (OPTIONS) are served for whatever URL a page is about to call
        let got_routes: BTreeSet<String> = got.iter().filter(|e| !e.starts_with("OPTIONS ")).cloned().collect();
        assert_eq!(got_routes, want, "{}", p.display());
        for o in got.iter().filter(|e| e.starts_with("OPTIONS ")) {
            let route = o.trim_start_matches("OPTIONS ");
            assert!(
                want.iter().any(|w| w.ends_with(&format!(" {route}"))),
                "{o}: a preflight for no route"
            );
        }
        let ep = |name: &str| endpoint(&c, name);
        assert_eq!(ep("GET /api/v1/users/{id}")["path_params"][0]["type"], "integer");
        assert_eq!(ep("GET /api/v1/orders/{uuid}")["path_params"][0]["format"], "uuid");
        assert_eq!(
            ep("GET /api/v1/users/lookup")["query_params"]["email"]["format"],
            "email"
        );
        assert!(ep("GET /api/v1/users/{id}")["auth"]["bearer"].as_u64().unwrap_or(0) > 0);
        assert!(ep("POST /api/v1/login")["request_body"]["properties"]["username"].is_object());
    }
}
