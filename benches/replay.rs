//! Whole-pipeline replay benchmark, per stage, against a bare walk of the same file (the
//! floor), for each capture given, in the same run:
//!
//! - bare walk: read the file (as a replay does) and visit every packet record;
//! - decode + reassembly + HTTP: the pipeline with no analysis and no event written;
//! - + JSON: `http` lines formatted and written to a file;
//! - + catalog: the API profiler on;
//! - + rules, detectors, entity risk: everything on (the default replay).
//!
//! The process is pinned to one core (CPU 0) for all of these, and the analysis runs on the
//! capture thread (`workers = 0`, what a replay does by default on one CPU): µs per
//! transaction per stage is the difference between two rows. One more pinned row runs the
//! whole replay with a worker thread sharing the core (what `workers = 1` costs there). The
//! last rows run the whole replay unpinned with one and with two workers (where cores are free,
//! more workers add throughput).
//!
//! Make the captures first (real nginx + API clients in network namespaces):
//!     sudo capture-samples/make-bench-capture.sh target/bench/mixed.pcap
//!     sudo capture-samples/make-api-bench-capture.sh target/bench/api.pcap
//! then: `cargo bench --bench replay` (APITAP_BENCH_PCAP=a.pcap,b.pcap for others;
//! APITAP_BENCH_RUNS=N, default 5, medians reported).

use std::time::Instant;

use apitap::app;

// The same allocator as the apitap binary.
#[global_allocator]
static GLOBAL: apitap::alloc::Mi = apitap::alloc::Mi;
use apitap::capture::file::CaptureFile;
use apitap::config::Config;
use apitap::event::EventTypes;

/// Pin this thread (and the threads it starts later) to `cpu`.
fn pin(cpu: Option<usize>) {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; sched_setaffinity reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        match cpu {
            Some(c) => libc::CPU_SET(c, &mut set),
            None => {
                // every online CPU (not `available_parallelism`: it counts this thread's mask,
                // one CPU after a pinned row, which kept the "2 cores" rows on CPU 0)
                let online = libc::sysconf(libc::_SC_NPROCESSORS_ONLN).max(1) as usize;
                for c in 0..online.min(libc::CPU_SETSIZE as usize) {
                    libc::CPU_SET(c, &mut set);
                }
            }
        }
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// Before a timed run: a new output file, and the last runs' output on disk. Truncating the
/// last run's file (hundreds of MB) is that run's cleanup, ~15% of a replay's time if counted
/// in the next; and the kernel writing back a gigabyte of earlier runs' output takes the free
/// core the unpinned rows are meant to use.
fn fresh_output(out: &std::path::Path) {
    let _ = std::fs::remove_file(out);
    // SAFETY: sync(2) takes no arguments and cannot fail.
    unsafe { libc::sync() };
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn bench(path: &str, runs: usize) {
    let out = std::env::temp_dir().join("apitap-bench-out.json");
    // Warm the page cache so every row reads from memory.
    let _ = std::fs::read(path);
    let full = Config {
        sinks: vec![out.to_string_lossy().into_owned()],
        workers: 0,
        progress: false,
        summary: false,
        stats_interval_s: 0,
        ..Config::default()
    };
    let stages: Vec<(&str, Config)> = vec![
        (
            "decode + reassembly + HTTP",
            Config {
                profile: false,
                rules_enabled: false,
                event_types: EventTypes::parse::<&str>(&[]).unwrap_or(EventTypes::all()),
                ..full.clone()
            },
        ),
        (
            "+ JSON (http lines to a file)",
            Config {
                profile: false,
                rules_enabled: false,
                ..full.clone()
            },
        ),
        (
            "+ catalog",
            Config {
                rules_enabled: false,
                ..full.clone()
            },
        ),
        ("+ rules, detectors, entity risk", full.clone()),
    ];
    let (mut packets, mut bytes, mut transactions) = (0u64, 0u64, 0u64);
    let mut bare = Vec::new();
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); stages.len()];
    let mut one_thread = Vec::new();
    let mut two_cores = Vec::new();
    let mut two_workers = Vec::new();
    for _ in 0..runs {
        pin(Some(0));
        let t = Instant::now();
        let f = CaptureFile::open(path).expect("open capture");
        let mut r = f.reader();
        let (mut n, mut b) = (0u64, 0u64);
        while let Some(fr) = r.next_frame() {
            n += 1;
            b += fr.orig_len as u64;
            std::hint::black_box(fr.data.first());
        }
        bare.push(t.elapsed().as_secs_f64());
        (packets, bytes) = (n, b);
        for (i, (_, cfg)) in stages.iter().enumerate() {
            fresh_output(&out);
            let t = Instant::now();
            let s = app::replay(cfg, &[path.to_string()]).expect("replay");
            times[i].push(t.elapsed().as_secs_f64());
            transactions = s.transactions;
        }
        let one = Config {
            workers: 1,
            ..full.clone()
        };
        fresh_output(&out);
        let t = Instant::now();
        app::replay(&one, &[path.to_string()]).expect("replay");
        one_thread.push(t.elapsed().as_secs_f64());
        pin(None);
        fresh_output(&out);
        let t = Instant::now();
        app::replay(&one, &[path.to_string()]).expect("replay");
        two_cores.push(t.elapsed().as_secs_f64());
        let two = Config {
            workers: 2,
            ..full.clone()
        };
        fresh_output(&out);
        let t = Instant::now();
        app::replay(&two, &[path.to_string()]).expect("replay");
        two_workers.push(t.elapsed().as_secs_f64());
    }
    let out_bytes = std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0);
    let _ = std::fs::remove_file(&out);
    let b = median(&mut bare);
    let tx = transactions.max(1) as f64;
    println!(
        "\n{path}: {packets} packets, {:.1} MB, {transactions} http transactions; output {:.1} MB; median of {runs} runs",
        bytes as f64 / 1e6,
        out_bytes as f64 / 1e6
    );
    println!(
        "{:<34} {:>8} {:>8} {:>12} {:>12} {:>10} {:>9}",
        "pinned to one core", "s", "x bare", "packets/s", "tx/s", "us/tx", "stage us"
    );
    println!(
        "{:<34} {:>8.3} {:>8.2} {:>12.0} {:>12} {:>10} {:>9}",
        "bare walk",
        b,
        1.0,
        packets as f64 / b,
        "-",
        "-",
        "-"
    );
    let mut prev = b;
    for (i, (name, _)) in stages.iter().enumerate() {
        let s = median(&mut times[i]);
        println!(
            "{:<34} {:>8.3} {:>8.2} {:>12.0} {:>12.0} {:>10.2} {:>9.2}",
            name,
            s,
            s / b,
            packets as f64 / s,
            tx / s,
            s * 1e6 / tx,
            (s - prev) * 1e6 / tx
        );
        prev = s;
    }
    let s = median(&mut one_thread);
    println!(
        "{:<34} {:>8.3} {:>8.2} {:>12.0} {:>12.0} {:>10.2} {:>9}",
        "whole, 1 core, 1 worker thread",
        s,
        s / b,
        packets as f64 / s,
        tx / s,
        s * 1e6 / tx,
        "-"
    );
    let s = median(&mut two_cores);
    println!(
        "{:<34} {:>8.3} {:>8.2} {:>12.0} {:>12.0} {:>10.2} {:>9}",
        "whole replay, 2 cores (1 worker)",
        s,
        s / b,
        packets as f64 / s,
        tx / s,
        s * 1e6 / tx,
        "-"
    );
    let s = median(&mut two_workers);
    println!(
        "{:<34} {:>8.3} {:>8.2} {:>12.0} {:>12.0} {:>10.2} {:>9}",
        "whole replay, 2 cores (2 workers)",
        s,
        s / b,
        packets as f64 / s,
        tx / s,
        s * 1e6 / tx,
        "-"
    );
}

fn main() {
    // as the apitap binary does before its threads start (see memtune)
    apitap::memtune::disable_thp();
    let paths =
        std::env::var("APITAP_BENCH_PCAP").unwrap_or_else(|_| "target/bench/mixed.pcap,target/bench/api.pcap".into());
    let runs: usize = std::env::var("APITAP_BENCH_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5)
        .max(1);
    for path in paths.split(',').filter(|p| !p.is_empty()) {
        if !std::path::Path::new(path).exists() {
            eprintln!(
                "replay bench: {path} not found; make it with capture-samples/make-bench-capture.sh or \
                 make-api-bench-capture.sh (skipping)"
            );
            continue;
        }
        bench(path, runs);
    }
}
