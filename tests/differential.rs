//! The differential harness (`capture-samples/differential/diff.py`) on a fixed seed: a few
//! hundred generated request shapes sent over real TCP to nginx and Apache httpd in network
//! namespaces, captured with tcpdump, replayed through this build. Every request a server logged
//! must be an `http` event with the same method, target and status.
//!
//! Needs root and the tools the README's second command installs (iproute2, nginx, apache2,
//! tcpdump, ethtool, python3); without them the test prints "SKIPPED: ..." and passes.

mod common;
use common::have;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const SEED: &str = "1";
const CASES: &str = "300";

fn skip_reason() -> Option<String> {
    if unsafe { libc::geteuid() } != 0 {
        return Some("needs root (network namespaces, tcpdump)".into());
    }
    for t in ["ip", "ss", "nginx", "apache2", "tcpdump", "ethtool", "python3"] {
        if !have(t) {
            return Some(format!("{t} not installed (the README's second command installs it)"));
        }
    }
    None
}

fn script() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("capture-samples/differential/diff.py")
}

/// Run the harness with `args`; (exit code, stdout, stderr). Killed after four minutes.
fn harness(args: &[&str]) -> (i32, String, String) {
    let dir = tempfile::tempdir().expect("tmp");
    let (out_p, err_p) = (dir.path().join("out"), dir.path().join("err"));
    let mut child = Command::new("python3")
        .arg(script())
        .args(args)
        .stdout(Stdio::from(std::fs::File::create(&out_p).expect("out")))
        .stderr(Stdio::from(std::fs::File::create(&err_p).expect("err")))
        .spawn()
        .expect("python3");
    let t = Instant::now();
    let code = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s.code().unwrap_or(-1);
        }
        if t.elapsed() > Duration::from_secs(240) {
            // SIGTERM: the harness removes its namespaces on the way out
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let _ = child.wait();
            panic!(
                "differential harness still running after 240 s: {}",
                std::fs::read_to_string(&err_p).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    (
        code,
        std::fs::read_to_string(out_p).unwrap_or_default(),
        std::fs::read_to_string(err_p).unwrap_or_default(),
    )
}

#[test]
fn every_request_nginx_and_apache_logged_is_reported_with_the_same_method_target_and_status() {
    if let Some(why) = skip_reason() {
        eprintln!("SKIPPED: differential harness: {why}");
        return;
    }
    let work = tempfile::tempdir().expect("tmp");
    let w = work.path().to_str().expect("utf-8 path");
    let bin = env!("CARGO_BIN_EXE_apitap");
    let (code, out, err) = harness(&[
        "--seed",
        SEED,
        "--cases",
        CASES,
        "--tag",
        &format!("df-t{}", std::process::id() % 100_000),
        "--time-limit",
        "120",
        "--apitap",
        bin,
        "--work",
        w,
    ]);
    let summary: Value = serde_json::from_str(
        &std::fs::read_to_string(work.path().join("summary.json"))
            .unwrap_or_else(|e| panic!("no summary.json ({e}); exit {code}\nstdout:\n{out}\nstderr:\n{err}")),
    )
    .expect("summary.json is JSON");
    assert_eq!(
        summary["capture_drops"], 0,
        "tcpdump dropped packets: the run proves nothing\n{err}"
    );
    for server in ["nginx", "apache"] {
        let s = &summary["servers"][server];
        let logged = s["logged"].as_u64().unwrap_or(0);
        assert!(
            logged >= 300,
            "{server} logged only {logged} requests: the run proves nothing\n{out}\n{err}"
        );
        assert_eq!(s["client_errors"], 0, "{server}: client errors\n{out}\n{err}");
    }
    if code != 0 {
        // keep the captures, logs and disagreements.jsonl for whoever reads the failure
        let kept = work.keep();
        panic!(
            "apitap disagrees with the servers (exit {code}); work dir kept: {}\n{out}\n{err}",
            kept.display()
        );
    }
    for server in ["nginx", "apache"] {
        let s = &summary["servers"][server];
        assert_eq!(
            (s["missing"].as_u64(), s["mismatched"].as_u64()),
            (Some(0), Some(0)),
            "{server}\n{out}"
        );
        assert_eq!(s["matched"], s["logged"], "{server}\n{out}");
        assert_eq!(s["server_unparsed_silent"], 0, "{server}: a 400 left no trace\n{out}");
    }
}

/// The comparison itself can fail: the same kind of run compared against a stand-in "apitap" that
/// reports nothing (`true`) must exit 1 with every logged request missing.
#[test]
fn the_harness_fails_when_apitap_reports_nothing() {
    if let Some(why) = skip_reason() {
        eprintln!("SKIPPED: differential harness self-test: {why}");
        return;
    }
    let work = tempfile::tempdir().expect("tmp");
    let w = work.path().to_str().expect("utf-8 path");
    // `true replay -q FILE` prints nothing and succeeds: a sensor that sees nothing
    let stub = ["/bin/true", "/usr/bin/true"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("true(1)");
    let (code, out, err) = harness(&[
        "--seed",
        "2",
        "--cases",
        "20",
        "--tag",
        &format!("df-u{}", std::process::id() % 100_000),
        "--apitap",
        stub,
        "--work",
        w,
    ]);
    assert_eq!(code, 1, "a silent sensor must fail the comparison\n{out}\n{err}");
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(work.path().join("summary.json")).expect("summary.json"))
            .expect("JSON");
    for server in ["nginx", "apache"] {
        let s = &summary["servers"][server];
        assert!(
            s["logged"].as_u64().unwrap_or(0) > 0,
            "{server}: nothing logged\n{out}\n{err}"
        );
        assert_eq!(
            s["missing"], s["logged"],
            "{server}: every logged request is missing\n{out}"
        );
        assert_eq!(s["matched"], 0, "{server}\n{out}");
    }
}
