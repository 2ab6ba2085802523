//! Secrets stay in: a capture full of bearer tokens, Basic credentials, API keys, session
//! cookies and password fields is replayed with headers logged, to stdout and to a file sink,
//! and no output line contains any of those secrets in the clear (nor their base64 forms).

use std::process::Command;

/// Ethernet/IPv4/TCP frame (checksums left zero: a sensor never verifies them).
fn frame(c2s: bool, seq: u32, ack: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
    let (src, dst, sp, dp) = if c2s {
        ([10, 9, 0, 2], [10, 9, 0, 1], 41000u16, 80u16)
    } else {
        ([10, 9, 0, 1], [10, 9, 0, 2], 80, 41000)
    };
    let total = 40 + payload.len();
    let mut f = vec![0u8; 12];
    f.extend([
        0x08,
        0x00,
        0x45,
        0,
        (total >> 8) as u8,
        total as u8,
        0,
        1,
        0x40,
        0,
        64,
        6,
        0,
        0,
    ]);
    f.extend(src);
    f.extend(dst);
    f.extend(sp.to_be_bytes());
    f.extend(dp.to_be_bytes());
    f.extend(seq.to_be_bytes());
    f.extend(ack.to_be_bytes());
    f.extend([0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
    f.extend(payload);
    f
}

/// A classic pcap of one connection carrying `exchanges` (request, response) in order.
fn pcap(exchanges: &[(String, String)]) -> Vec<u8> {
    let mut out = vec![
        0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 1, 0, 0, 0,
    ];
    let mut t = 1_700_000_000u32;
    let mut rec = |f: Vec<u8>| {
        t += 1;
        out.extend(t.to_le_bytes());
        out.extend(0u32.to_le_bytes());
        out.extend((f.len() as u32).to_le_bytes());
        out.extend((f.len() as u32).to_le_bytes());
        out.extend(f);
    };
    let (mut cs, mut ss) = (1000u32, 9000u32);
    rec(frame(true, cs, 0, 0x02, b""));
    rec(frame(false, ss, cs + 1, 0x12, b""));
    cs += 1;
    ss += 1;
    rec(frame(true, cs, ss, 0x10, b""));
    for (q, r) in exchanges {
        rec(frame(true, cs, ss, 0x18, q.as_bytes()));
        cs += q.len() as u32;
        rec(frame(false, ss, cs, 0x18, r.as_bytes()));
        ss += r.len() as u32;
    }
    rec(frame(true, cs, ss, 0x11, b""));
    rec(frame(false, ss, cs + 1, 0x11, b""));
    out
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
    ]
}

#[test]
fn no_secret_leaves_in_the_clear_in_any_event_or_sink() {
    let dir = tempfile::tempdir().expect("tmp");
    let cap = dir.path().join("secrets.pcap");
    std::fs::write(&cap, pcap(&exchanges())).expect("write pcap");
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
        9,
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
