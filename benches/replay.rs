//! Whole-pipeline replay benchmark: a large mixed capture through decode, reassembly, HTTP,
//! JSON formatting and a file sink, against a bare loop that only walks the same file's packet
//! records (the floor). Prints packets/s and Gbit/s per core and the ratio to the bare walk.
//!
//! Make the capture first (real nginx + API server + wrk/ab/curl in network namespaces):
//!     sudo capture-samples/make-bench-capture.sh target/bench/mixed.pcap
//! then: `cargo bench --bench replay` (or APITAP_BENCH_PCAP=path cargo bench --bench replay).

use std::time::Instant;

use apitap::app;

// The same allocator as the apitap binary.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use apitap::capture::file::CaptureFile;
use apitap::config::Config;

fn main() {
    let path = std::env::var("APITAP_BENCH_PCAP").unwrap_or_else(|_| "target/bench/mixed.pcap".into());
    if !std::path::Path::new(&path).exists() {
        eprintln!("replay bench: {path} not found; make it with capture-samples/make-bench-capture.sh (skipping)");
        return;
    }
    let runs: usize = std::env::var("APITAP_BENCH_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let out = std::env::temp_dir().join("apitap-bench-out.json");

    // Warm the page cache so both loops read from memory.
    let _ = std::fs::read(&path);

    let mut bare = Vec::new();
    let mut full = Vec::new();
    // The same replay without rules, and without the catalog either: what each stage costs.
    let mut no_rules = Vec::new();
    let mut decode_only = Vec::new();
    let (mut packets, mut bytes) = (0u64, 0u64);
    let mut transactions = 0;
    for _ in 0..runs {
        // Bare walk: open (map) the file and visit every packet record, touching its bytes' length.
        let t = Instant::now();
        let f = CaptureFile::open(&path).expect("open capture");
        let mut r = f.reader();
        let (mut n, mut b) = (0u64, 0u64);
        while let Some(fr) = r.next_frame() {
            n += 1;
            b += fr.orig_len as u64;
            std::hint::black_box(fr.data.first());
        }
        bare.push(t.elapsed().as_secs_f64());
        packets = n;
        bytes = b;

        // Whole pipeline, one worker, output to a file.
        let cfg = Config {
            sinks: vec![out.to_string_lossy().into_owned()],
            workers: 1,
            progress: false,
            summary: false,
            stats_interval_s: 0,
            ..Config::default()
        };
        let t = Instant::now();
        let s = app::replay(&cfg, std::slice::from_ref(&path)).expect("replay");
        full.push(t.elapsed().as_secs_f64());
        transactions = s.transactions;
        let c2 = Config {
            rules_enabled: false,
            ..cfg.clone()
        };
        let t = Instant::now();
        app::replay(&c2, std::slice::from_ref(&path)).expect("replay");
        no_rules.push(t.elapsed().as_secs_f64());
        let c3 = Config {
            profile: false,
            ..c2.clone()
        };
        let t = Instant::now();
        app::replay(&c3, std::slice::from_ref(&path)).expect("replay");
        decode_only.push(t.elapsed().as_secs_f64());
    }
    let med = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    let (b, f) = (med(&mut bare), med(&mut full));
    let out_bytes = std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0);
    println!(
        "capture: {path}: {packets} packets, {:.1} MB, {transactions} http transactions; output {:.1} MB",
        bytes as f64 / 1e6,
        out_bytes as f64 / 1e6
    );
    println!(
        "bare walk : {:>8.3} s  {:>10.0} packets/s  {:>6.2} Gbit/s",
        b,
        packets as f64 / b,
        bytes as f64 * 8.0 / b / 1e9
    );
    println!(
        "replay    : {:>8.3} s  {:>10.0} packets/s  {:>6.2} Gbit/s  ({} transactions/s)",
        f,
        packets as f64 / f,
        bytes as f64 * 8.0 / f / 1e9,
        (transactions as f64 / f) as u64
    );
    println!("ratio replay/bare: {:.2}x (median of {runs} runs)", f / b);
    let (nr, d) = (med(&mut no_rules), med(&mut decode_only));
    println!(
        "without rules   : {:>8.3} s  {:.2}x the bare walk; without rules and catalog: {:.3} s  {:.2}x",
        nr,
        nr / b,
        d,
        d / b
    );
    let _ = std::fs::remove_file(&out);
}
