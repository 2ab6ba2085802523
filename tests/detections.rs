//! Detectors that need an endpoint's history, on generated captures: the auth-bypass detector
//! (a 2xx without credentials on an endpoint whose clients use credentials) and its near miss
//! (a public endpoint some clients happen to call with a token).

mod common;

use common::{Conv, PcapWriter};
use serde_json::Value;

fn replay(cap: &std::path::Path) -> Vec<Value> {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_apitap"))
        .args(["replay", "-q", "--no-progress", "--types", "alert"])
        .arg(cap)
        .output()
        .expect("apitap");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect()
}

/// `clients` addresses call `path` with a bearer token; then 10.9.9.9 calls it without one,
/// three times, getting 200; `open_callers` other addresses also called it without a token.
fn scenario(path: &str, clients: u8, open_callers: u8) -> Vec<Value> {
    let dir = tempfile::tempdir().expect("tmp");
    let cap = dir.path().join("c.pcap");
    let mut w = PcapWriter::create(&cap);
    let ok = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}";
    for c in 0..clients {
        let mut conv = Conv::open(&mut w, [10, 1, 0, c], [10, 0, 0, 1], 5000, 80);
        for i in 0..3 {
            conv.client(
                &mut w,
                format!("GET {path}/{i} HTTP/1.1\r\nHost: api\r\nAuthorization: Bearer tok{c}\r\n\r\n").as_bytes(),
            );
            conv.server(&mut w, ok);
        }
    }
    for c in 0..open_callers {
        let mut conv = Conv::open(&mut w, [10, 2, 0, c], [10, 0, 0, 1], 5000, 80);
        conv.client(&mut w, format!("GET {path}/7 HTTP/1.1\r\nHost: api\r\n\r\n").as_bytes());
        conv.server(&mut w, ok);
    }
    let mut conv = Conv::open(&mut w, [10, 9, 9, 9], [10, 0, 0, 1], 5000, 80);
    for i in 0..3 {
        conv.client(
            &mut w,
            format!("GET {path}/{} HTTP/1.1\r\nHost: api\r\n\r\n", 100 + i).as_bytes(),
        );
        conv.server(&mut w, ok);
    }
    w.finish();
    replay(&cap)
}

fn bypass_alerts(alerts: &[Value]) -> Vec<&Value> {
    alerts
        .iter()
        .filter(|a| a["indicator"]["type"] == "auth_bypass")
        .collect()
}

#[test]
fn unauthenticated_success_on_a_protected_endpoint_is_an_auth_bypass() {
    let alerts = scenario("/api/reports", 12, 0);
    let b = bypass_alerts(&alerts);
    assert_eq!(b.len(), 1, "{alerts:#?}");
    assert_eq!(b[0]["src_ip"], "10.9.9.9");
    assert_eq!(b[0]["indicator"]["kind"], "compromise");
    assert_eq!(b[0]["indicator"]["endpoint"], "GET /api/reports/{id}");
}

#[test]
fn a_public_endpoint_some_clients_call_with_a_token_is_not_a_bypass() {
    // many other clients already got a 200 without credentials: the endpoint is public
    let alerts = scenario("/api/products", 12, 8);
    assert!(bypass_alerts(&alerts).is_empty(), "{alerts:#?}");
    // too little history to know what the endpoint needs
    let alerts = scenario("/api/reports", 2, 0);
    assert!(bypass_alerts(&alerts).is_empty(), "{alerts:#?}");
}

/// `apitap rules default` prints a pack that `apitap rules check` accepts; a bad rule file
/// gets one line naming the file, the line, the rule and the key, and exit 2; replay refuses
/// to start with it.
#[test]
fn rules_default_and_check_on_the_command_line() {
    let bin = env!("CARGO_BIN_EXE_apitap");
    let out = std::process::Command::new(bin)
        .args(["rules", "default"])
        .output()
        .expect("apitap");
    assert!(out.status.success());
    let dir = tempfile::tempdir().expect("tmp");
    let good = dir.path().join("good.toml");
    std::fs::write(&good, &out.stdout).expect("write");
    let out = std::process::Command::new(bin)
        .args(["rules", "check"])
        .arg(&good)
        .output()
        .expect("apitap");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok"));
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[[rule]]\nid = \"mine\"\nsid = 1\ntype = \"scanner\"\n\n[[rule]]\nid = \"typo\"\nsid = 2\ntype = \"scanner\"\nmatch = { stauts = 404 }\n",
    )
    .expect("write");
    let out = std::process::Command::new(bin)
        .args(["rules", "check"])
        .arg(&bad)
        .output()
        .expect("apitap");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("bad.toml: line 10: rule \"typo\": match.stauts: unknown criterion"),
        "{err}"
    );
    let cap = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("capture-samples/http-keepalive.pcap");
    let out = std::process::Command::new(bin)
        .args(["replay", "-q", "--rules"])
        .arg(&bad)
        .arg(&cap)
        .output()
        .expect("apitap");
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty(), "no output before the rules are good");
}
