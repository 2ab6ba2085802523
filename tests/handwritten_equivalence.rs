//! The crates compared with apitap's hand-written helpers in benches/handwritten.rs give the
//! same answers on the bench's inputs (so the bench compares the same job), and where their
//! semantics differ from apitap's, how. Also the HyperLogLogs' error and bytes of state
//! (`cargo test --release --test handwritten_equivalence -- --nocapture hll`).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use apitap::catalog::Distinct;
use apitap::rules::Glob;
use hyperloglogplus::HyperLogLog;

#[path = "../benches/handwritten_crates.rs"]
mod crates;
#[path = "../benches/handwritten_inputs.rs"]
mod inputs;

use crates::{Cardinality, globset_glob, hllpf, hllplus, jiff_push, pe_decode_plus, time_push};

/// Live heap bytes of this thread (tests run on threads of their own).
struct Counting;

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let _ = LIVE.try_with(|c| c.set(c.get() + l.size() as isize));
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        let _ = LIVE.try_with(|c| c.set(c.get() - l.size() as isize));
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        let _ = LIVE.try_with(|c| c.set(c.get() + new as isize - l.size() as isize));
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn live() -> isize {
    LIVE.with(|c| c.get())
}

#[test]
fn time_and_jiff_write_eve_timestamps_as_push_ts_does() {
    let mut all: Vec<u64> = [
        inputs::api_times(20_000),
        inputs::lab_times(20_000),
        inputs::sparse_times(20_000),
    ]
    .concat();
    // epoch, ends of seconds, leap days, centuries, the last u64 nanosecond (year 2554)
    all.extend([
        0,
        999_999_999,
        1_000_000_000,
        951_782_400_000_000_000,   // 2000-02-29
        1_709_164_799_999_999_999, // 2024-02-28T23:59:59.999999999
        1_709_251_200_000_000_000, // 2024-03-01
        4_107_542_400_000_000_000, // 2100-03-01
        u64::MAX,
    ]);
    let (mut h, mut t, mut j) = (Vec::new(), Vec::new(), Vec::new());
    for &ns in &all {
        h.clear();
        t.clear();
        j.clear();
        apitap::util::push_ts(&mut h, ns);
        time_push(&mut t, ns);
        jiff_push(&mut j, ns);
        assert_eq!(
            String::from_utf8_lossy(&t),
            String::from_utf8_lossy(&h),
            "time, ns {ns}"
        );
        assert_eq!(
            String::from_utf8_lossy(&j),
            String::from_utf8_lossy(&h),
            "jiff, ns {ns}"
        );
        assert_eq!(h.len(), 31);
    }
    assert_eq!(apitap::util::fmt_ts(u64::MAX), "2554-07-21T23:34:33.709551+0000");
}

#[test]
fn percent_encoding_decodes_as_percent_decode_lossy_does() {
    let mut parts = inputs::decoded_parts(inputs::URLS);
    parts.extend(inputs::decoded_parts(inputs::ESCAPED_URLS));
    // invalid and cut escapes stay, `%2B` is a `+` (not a space), invalid UTF-8 becomes U+FFFD
    for s in [
        "",
        "%",
        "%4",
        "%4g",
        "%zz%41",
        "a+b%2B",
        "%e9t%C3%A9",
        "+%20+",
        "%%41",
        "%25%32%35",
        "x%",
    ] {
        parts.push(s.to_string());
    }
    let escaped = parts.iter().filter(|p| p.contains(['%', '+'])).count();
    assert!(escaped > 60, "the inputs hold escapes: {escaped}");
    for p in &parts {
        let hand = apitap::redact::percent_decode_lossy(p);
        assert_eq!(pe_decode_plus(p), hand, "{p:?}");
        // the crate borrows whenever the hand-written one does (and also when a `%` decodes nothing)
        if matches!(hand, std::borrow::Cow::Borrowed(_)) {
            assert!(matches!(pe_decode_plus(p), std::borrow::Cow::Borrowed(_)), "{p:?}");
        }
        assert_eq!(
            percent_encoding::percent_decode_str(p).decode_utf8_lossy(),
            apitap::http2::grpc::percent_decode(p),
            "grpc {p:?}"
        );
    }
}

#[test]
fn the_bench_globs_are_the_default_rule_packs() {
    let pack = include_str!("../src/rules/default.toml");
    for g in inputs::LOGIN_GLOBS.iter().chain(inputs::ID_GLOBS) {
        assert!(
            pack.contains(&format!("\"{g}\"")),
            "{g} is not in the default rules any more"
        );
    }
}

#[test]
fn globset_and_wildmatch_match_as_glob_does_on_the_default_globs() {
    let pats: Vec<&str> = inputs::LOGIN_GLOBS
        .iter()
        .chain(inputs::ID_GLOBS)
        .copied()
        .chain([inputs::WILD_GLOB, "*", "", "GET /", "* /api/*/{id}", "?ET *", "*s*s*"])
        .collect();
    let mut texts: Vec<&str> = inputs::ENDPOINTS.to_vec();
    texts.extend(inputs::URLS);
    texts.extend(["", "POST /login", "POST login", "GET /api/v1/users/{uuid}"]);
    let mut hits = 0;
    for p in &pats {
        let (hand, wild, gs) = (
            Glob::new(p),
            wildmatch::WildMatch::new(p),
            globset_glob(p).compile_matcher(),
        );
        for t in &texts {
            let want = hand.matches(t);
            hits += want as usize;
            assert_eq!(wild.matches(t), want, "wildmatch {p:?} {t:?}");
            assert_eq!(gs.is_match(t), want, "globset {p:?} {t:?}");
        }
    }
    assert!(hits > 300, "the globs match some of the inputs: {hits}");
}

/// Where the crates read a glob otherwise than apitap does (what an adapter must handle).
#[test]
fn glob_crates_differ_on_braces_double_stars_and_multibyte_question_marks() {
    // globset: `{a,b}` is an alternation; `{id}` unescaped is the word `id`
    let raw = globset::GlobBuilder::new("*{id}*")
        .literal_separator(false)
        .build()
        .unwrap()
        .compile_matcher();
    assert!(raw.is_match("GET /api/v1/users/id"));
    assert!(!Glob::new("*{id}*").matches("GET /api/v1/users/id"));
    // globset: `/**/` matches zero directories as well, apitap's `**` is two stars
    let dbl = globset_glob("/api/**/x").compile_matcher();
    assert!(dbl.is_match("/api/x"));
    assert!(!Glob::new("/api/**/x").matches("/api/x"));
    // wildmatch: `?` is one character, apitap's one byte
    assert!(wildmatch::WildMatch::new("/caf?").matches("/café"));
    assert!(!Glob::new("/caf?").matches("/café"));
}

/// Error and bytes of state of each HyperLogLog at 10, 1k and 100k distinct values: apitap's
/// 256-byte `Distinct` against the crates set to the same 256 registers.
#[test]
fn hll_error_and_bytes_of_state() {
    let size_of_after = |f: &mut dyn FnMut() -> Box<dyn std::any::Any>| {
        let before = live();
        let held = f();
        let heap = live() - before;
        drop(held);
        heap as usize
    };
    let runs = 20u64;
    eprintln!("n        | sketch                 | mean abs error | bytes of state");
    for n in [10usize, 1_000, 100_000] {
        let mut err = [0f64; 4];
        for seed in 0..runs {
            let vals = inputs::distinct_values(n, seed);
            let (mut a, mut b, mut p, mut c) = (Distinct::default(), hllpf(), hllplus(), Cardinality::new());
            for v in &vals {
                a.add(*v);
                b.insert(v);
                p.insert(v);
                c.insert(v);
            }
            let est = [a.estimate() as f64, b.count(), p.count(), c.estimate() as f64];
            for (e, x) in err.iter_mut().zip(est) {
                *e += (x - n as f64).abs() / n as f64 / runs as f64;
            }
        }
        let vals = inputs::distinct_values(n, 0);
        // everything the sketch holds once filled: its own size plus the heap it owns (the
        // boxes' own allocation is the sketch's size, counted once)
        let bytes = [
            size_of_after(&mut || {
                let mut h = Box::<Distinct>::default();
                vals.iter().for_each(|v| h.add(*v));
                h
            }),
            size_of_after(&mut || {
                let mut h = Box::new(hllpf());
                vals.iter().for_each(|v| h.insert(v));
                h
            }),
            size_of_after(&mut || {
                let mut h = Box::new(hllplus());
                vals.iter().for_each(|v| h.insert(v));
                h.count();
                h
            }),
            size_of_after(&mut || {
                let mut h = Box::new(Cardinality::new());
                vals.iter().for_each(|v| h.insert(v));
                h
            }),
        ];
        let names = [
            "apitap Distinct",
            "hyperloglogplus PF",
            "hyperloglogplus ++",
            "cardinality-estimator",
        ];
        for i in 0..4 {
            eprintln!("{n:<8} | {:<22} | {:>13.2}% | {}", names[i], err[i] * 100.0, bytes[i]);
        }
        // 256 registers: standard error 1.04/16 = 6.5%; the mean absolute error is ~0.8 of it
        for (i, e) in err.iter().enumerate() {
            assert!(*e < 0.08, "{} at {n}: mean error {:.3}", names[i], e);
        }
        assert_eq!(bytes[0], 256, "Distinct is 256 bytes and owns no heap");
    }
}
