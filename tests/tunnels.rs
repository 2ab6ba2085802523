//! Tunnels, SOCKS and TLS on the bundled captures (see capture-samples/README.md):
//! the re-encapsulated samples are counted under their encapsulation, SOCKS tunnels from real
//! curl and real SOCKS servers are analysed with the target as host, and the TLS handshakes of
//! real curl/openssl connections give what tshark and openssl say they hold
//! (`tls-openssl.expected.json`, written by make-tunnel-samples.sh). The transactions of every
//! sample are compared with their access logs by tests/samples.rs.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn sample(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("capture-samples").join(name)
}

fn replay(p: &Path, extra: &[&str]) -> Vec<Value> {
    let out = Command::new(env!("CARGO_BIN_EXE_apitap"))
        .args(["replay", p.to_str().unwrap_or_default(), "--no-progress", "-q"])
        .args(extra)
        .env("APITAP_HASH_KEY", "tunnels-test-key")
        .output()
        .expect("run apitap");
    assert!(
        out.status.success(),
        "{}: {}",
        p.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

fn of_type<'a>(ev: &'a [Value], t: &str) -> Vec<&'a Value> {
    ev.iter().filter(|e| e["event_type"] == t).collect()
}

fn last_stats(ev: &[Value]) -> &Value {
    &of_type(ev, "stats").last().expect("a stats event")["stats"]
}

#[test]
fn each_tunnel_sample_is_counted_under_its_encapsulation() {
    // (sample, decoder counter, frames carrying TCP in it, http events)
    for (name, counter, tcp, http) in [
        ("gtpu-http.pcap", "gtpu", 241, 37),
        ("ayiya-http.pcap", "ayiya", 241, 37),
        ("greudp-http.pcap", "gre_udp", 241, 37),
        ("teredo-http.pcap", "teredo", 438, 44),
        ("llcsnap-http.pcap", "llc_snap", 112, 15),
        ("radiotap-http.pcap", "wifi", 241, 37),
        ("wifi-http.pcap", "wifi", 241, 37),
    ] {
        let ev = replay(&sample(name), &[]);
        let d = &last_stats(&ev)["decoder"];
        assert!(
            d[counter].as_u64().unwrap_or(0) >= tcp,
            "{name}: {counter} = {}",
            d[counter]
        );
        assert_eq!(d["tcp"], tcp, "{name}");
        assert_eq!(of_type(&ev, "http").len(), http, "{name}");
        assert!(
            of_type(&ev, "anomaly").is_empty(),
            "{name}: {:?}",
            of_type(&ev, "anomaly")
        );
        if counter == "wifi" {
            // the beacon and the encrypted data frame encap.py adds: skipped, counted
            assert_eq!(d["skipped"]["wifi_protected"], 1, "{name}");
            assert_eq!(d["skipped"]["wifi_non_data"], 1, "{name}");
        }
    }
}

#[test]
fn http_through_socks_is_analysed_with_the_target_as_host() {
    let ev = replay(&sample("socks-http.pcap"), &["--log-headers"]);
    let http = of_type(&ev, "http");
    assert_eq!(http.len(), 6);
    let hosts: Vec<&str> = http
        .iter()
        .map(|e| e["http"]["hostname"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        hosts,
        ["10.0.0.1", "api.lab", "api.lab", "api.lab", "10.0.0.1", "api.lab"],
        "the Host header curl sent through each tunnel"
    );
    // the proxy's port is the flow's destination; the tunnel target is the request's host
    let ports: Vec<u64> = http.iter().map(|e| e["dest_port"].as_u64().unwrap_or(0)).collect();
    assert_eq!(ports, [1080, 1080, 1080, 1082, 1081, 1081]);
    assert!(of_type(&ev, "anomaly").is_empty(), "{:?}", of_type(&ev, "anomaly"));
    assert_eq!(last_stats(&ev)["tunnel"]["socks"], 6);
    // the SOCKS5 user/password of the 1082 proxy never appears
    let all: String = ev.iter().map(|e| e.to_string()).collect();
    assert!(
        !all.contains("s3cret-pass") && !all.contains("bob"),
        "SOCKS credentials leaked"
    );
}

#[test]
fn tls_handshakes_give_what_the_client_and_server_sent() {
    let exp: Value =
        serde_json::from_str(&std::fs::read_to_string(sample("tls-openssl.expected.json")).expect("expected file"))
            .expect("JSON");
    let ev = replay(&sample("tls-openssl.pcap"), &[]);
    let tls = of_type(&ev, "tls");
    let conns = exp["connections"].as_array().expect("connections");
    assert_eq!(tls.len(), conns.len());
    assert!(of_type(&ev, "http").is_empty());
    assert!(of_type(&ev, "anomaly").is_empty(), "{:?}", of_type(&ev, "anomaly"));
    let cert = &exp["certificate"];
    for c in conns {
        let port = c["client_port"].as_u64().expect("port");
        let e = tls
            .iter()
            .find(|e| e["src_port"] == port)
            .unwrap_or_else(|| panic!("no tls event for client port {port}"));
        let t = &e["tls"];
        assert_eq!(t["sni"], c["sni"], "{port}");
        assert_eq!(t["version"], c["version"], "{port}");
        assert_eq!(t["ja3"]["string"], c["ja3_string"], "{port}");
        assert_eq!(t["ja3"]["hash"], c["ja3_hash"], "{port}");
        assert_eq!(t["ja3s"]["string"], c["ja3s_string"], "{port}");
        assert_eq!(t["ja3s"]["hash"], c["ja3s_hash"], "{port}");
        assert_eq!(t["ja4"], c["ja4"], "{port}");
        if c["version"] == "TLS 1.3" {
            assert!(t.get("subject").is_none(), "TLS 1.3 certificates are encrypted: {t}");
        } else {
            for k in ["subject", "issuerdn", "notbefore", "notafter"] {
                assert_eq!(t[k], cert[k], "{port} {k}");
            }
            assert_eq!(
                t["serial"].as_str().unwrap_or("").replace(':', ""),
                cert["serial"].as_str().unwrap_or("-"),
                "{port}"
            );
        }
    }
    let st = last_stats(&ev);
    assert_eq!(st["tls"]["flows"], conns.len());
    assert_eq!(st["tls"]["by_sni"]["api.lab"], conns.len());
    // only TLS events were asked for: nothing else but them
    let only = replay(&sample("tls-openssl.pcap"), &["--types", "tls"]);
    assert_eq!(only.len(), conns.len());
}

#[test]
fn tls_events_validate_against_the_eve_schema() {
    let schema_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/eve-schema.json");
    let Ok(text) = std::fs::read_to_string(&schema_path) else {
        eprintln!("SKIPPED: EVE schema validation: {} not found", schema_path.display());
        return;
    };
    let schema: Value = serde_json::from_str(&text).expect("schema is JSON");
    let validator = jsonschema::validator_for(&schema).expect("schema compiles");
    let ev = replay(&sample("tls-openssl.pcap"), &[]);
    let tls = of_type(&ev, "tls");
    assert!(!tls.is_empty());
    for e in tls {
        let errs: Vec<String> = validator
            .iter_errors(e)
            .map(|er| format!("{er} at {}", er.instance_path()))
            .collect();
        assert!(errs.is_empty(), "{e}\n{}", errs.join("\n"));
    }
}

/// The external corpus cases that exercise these tunnels (skipped without the corpus).
#[test]
fn corpus_tunnel_cases_are_decoded() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus");
    if !dir.join("MANIFEST.json").is_file() {
        eprintln!("SKIPPED: corpus tunnel cases: {} not found", dir.display());
        return;
    }
    // (capture, decoder counter that must be > 0 or "", expected (method, host, url) requests)
    type Case<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str, &'a str)]);
    let cases: &[Case] = &[
        (
            "suricata-verify/decode-teredo-01/input.pcap",
            "teredo",
            &[("POST", "download913.avast.com", "/cgi-bin/iavs4stats.cgi")],
        ),
        (
            "other/arkime/80211http/80211http.pcap",
            "wifi",
            &[
                ("GET", "qq.com", "/"),
                ("GET", "qq.com", "/favicon.ico"),
                ("POST", "qq.com", "/post.php"),
            ],
        ),
        (
            "other/arkime/socks-http-example/socks-http-example.pcap",
            "",
            &[("GET", "www.example.com", "/"); 3],
        ),
        (
            "other/arkime/socks-http-pass/socks-http-pass.pcap",
            "",
            &[("GET", "www.example.com", "/")],
        ),
        (
            "other/arkime/socks5-http-302/socks5-http-302.pcap",
            "",
            &[("GET", "www.google.com", "/")],
        ),
        (
            "other/arkime/socks5-http-302-frag/socks5-http-302-frag.pcap",
            "",
            &[("GET", "www.google.com", "/")],
        ),
        // reverse SOCKS5: the connecting agent sends 6 bytes, the side it reached opens SOCKS
        (
            "other/arkime/socks5-reverse/socks5-reverse.pcap",
            "",
            &[(
                "GET",
                "www.google.com",
                "/search?client=firefox&rls=en&q=sheepskin%20boots&start=0&num=10&hl=en&gl=us&uule=xxxxxxxxxxxxxxxxxxxxxxxxxxxx",
            )],
        ),
        ("other/arkime/arkime_synthetic/arkime_synthetic.pcap", "gtpu", &[]),
    ];
    for (pcap, counter, want) in cases {
        let p = dir.join(pcap);
        if !p.is_file() {
            eprintln!("SKIPPED: {pcap}: not in this corpus");
            continue;
        }
        let ev = replay(&p, &[]);
        if !counter.is_empty() {
            let n = last_stats(&ev)["decoder"][*counter].as_u64().unwrap_or(0);
            assert!(n > 0, "{pcap}: decoder.{counter} = 0");
        }
        let http = of_type(&ev, "http");
        for (m, h, u) in *want {
            let n_want = want.iter().filter(|w| w == &&(*m, *h, *u)).count();
            let n = http
                .iter()
                .filter(|e| e["http"]["http_method"] == *m && e["http"]["hostname"] == *h && e["http"]["url"] == *u)
                .count();
            assert!(n >= n_want, "{pcap}: {m} {h}{u}: {n} of {n_want}");
        }
    }
}
