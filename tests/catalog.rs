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
    let ep = |name: &str| {
        c["endpoints"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|e| e["endpoint"] == name)
            .cloned()
            .unwrap_or_default()
    };
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
        eprintln!("openapi validation skipped: python3 with openapi-spec-validator not installed");
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
