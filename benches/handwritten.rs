//! The hand-written helpers against the well-kept crates that do the same job, on realistic
//! inputs (issue 13): EVE timestamps (`time`, `jiff`), percent-decoding (`percent-encoding`),
//! globs (`globset`, `wildmatch`) and the HyperLogLog (`hyperloglogplus`,
//! `cardinality-estimator`). Every group has the same throughput unit (one input), so the
//! ratios crate/hand-written read straight off one run. tests/handwritten_equivalence.rs checks
//! that both sides give the same answers on these inputs (and lists where their semantics differ).
//!
//! Run: `cargo bench --bench handwritten -- --warm-up-time 1 --measurement-time 3`
//! The HyperLogLogs' error and bytes of state: `cargo test --release --test
//! handwritten_equivalence -- --nocapture hll`.
//! The results and the decisions are in the README ("Hand-written helpers and crates").

use std::hint::black_box;

use apitap::catalog::Distinct;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use hyperloglogplus::HyperLogLog;

#[path = "handwritten_crates.rs"]
mod crates;
#[path = "handwritten_inputs.rs"]
mod inputs;

use crates::{Cardinality, TIME_FMT, globset_glob, hllpf, hllplus, jiff_push, pe_decode_plus, time_push};

fn bench_timestamps(c: &mut Criterion) {
    for (name, ts) in [
        ("ts_api", inputs::api_times(10_000)),
        ("ts_lab", inputs::lab_times(10_000)),
        ("ts_sparse", inputs::sparse_times(10_000)),
    ] {
        let mut g = c.benchmark_group(name);
        g.throughput(Throughput::Elements(ts.len() as u64));
        let mut out = Vec::with_capacity(64);
        // the production writer: a buffer per event, reused
        g.bench_function("hand_push_ts", |b| {
            b.iter(|| {
                for &t in &ts {
                    out.clear();
                    apitap::util::push_ts(&mut out, black_box(t));
                }
                black_box(out.len())
            })
        });
        g.bench_function("time", |b| {
            b.iter(|| {
                for &t in &ts {
                    out.clear();
                    time_push(&mut out, black_box(t));
                }
                black_box(out.len())
            })
        });
        g.bench_function("jiff", |b| {
            b.iter(|| {
                for &t in &ts {
                    out.clear();
                    jiff_push(&mut out, black_box(t));
                }
                black_box(out.len())
            })
        });
        g.finish();
    }
    // Without the per-second cache: a `String` per timestamp on both sides.
    let ts = inputs::lab_times(10_000);
    let mut g = c.benchmark_group("ts_string");
    g.throughput(Throughput::Elements(ts.len() as u64));
    g.bench_function("hand_fmt_ts", |b| {
        b.iter(|| {
            ts.iter()
                .map(|&t| apitap::util::fmt_ts(black_box(t)).len())
                .sum::<usize>()
        })
    });
    g.bench_function("time", |b| {
        b.iter(|| {
            ts.iter()
                .map(|&t| {
                    let d = time::OffsetDateTime::from_unix_timestamp_nanos(black_box(t) as i128).unwrap();
                    d.format(TIME_FMT).unwrap().len()
                })
                .sum::<usize>()
        })
    });
    g.bench_function("jiff", |b| {
        b.iter(|| {
            ts.iter()
                .map(|&t| {
                    let mut s = Vec::with_capacity(31);
                    jiff_push(&mut s, black_box(t));
                    String::from_utf8(s).unwrap().len()
                })
                .sum::<usize>()
        })
    });
    g.finish();
}

fn bench_percent(c: &mut Criterion) {
    for (name, parts) in [
        ("pct_mix", inputs::decoded_parts(inputs::URLS)),
        (
            "pct_escaped",
            inputs::decoded_parts(inputs::ESCAPED_URLS)
                .into_iter()
                .filter(|p| p.contains(['%', '+']))
                .collect(),
        ),
    ] {
        let mut g = c.benchmark_group(name);
        g.throughput(Throughput::Elements(parts.len() as u64));
        g.bench_function("hand", |b| {
            b.iter(|| {
                parts
                    .iter()
                    .map(|p| apitap::redact::percent_decode_lossy(black_box(p)).len())
                    .sum::<usize>()
            })
        });
        g.bench_function("percent_encoding", |b| {
            b.iter(|| parts.iter().map(|p| pe_decode_plus(black_box(p)).len()).sum::<usize>())
        });
        // gRPC's decoder (no `+`): always an owned String
        g.bench_function("hand_grpc", |b| {
            b.iter(|| {
                parts
                    .iter()
                    .map(|p| apitap::http2::grpc::percent_decode(black_box(p)).len())
                    .sum::<usize>()
            })
        });
        g.bench_function("percent_encoding_grpc", |b| {
            b.iter(|| {
                parts
                    .iter()
                    .map(|p| {
                        percent_encoding::percent_decode_str(black_box(p))
                            .decode_utf8_lossy()
                            .into_owned()
                            .len()
                    })
                    .sum::<usize>()
            })
        });
        g.finish();
    }
}

fn bench_globs(c: &mut Criterion) {
    let eps = inputs::ENDPOINTS;
    let hand_login: Vec<apitap::rules::Glob> = inputs::LOGIN_GLOBS
        .iter()
        .map(|p| apitap::rules::Glob::new(p))
        .collect();
    let wild_login: Vec<wildmatch::WildMatch> = inputs::LOGIN_GLOBS
        .iter()
        .map(|p| wildmatch::WildMatch::new(p))
        .collect();
    let gs_login: Vec<globset::GlobMatcher> = inputs::LOGIN_GLOBS
        .iter()
        .map(|p| globset_glob(p).compile_matcher())
        .collect();
    let mut set = globset::GlobSetBuilder::new();
    for p in inputs::LOGIN_GLOBS {
        set.add(globset_glob(p));
    }
    let gs_set = set.build().unwrap();

    let mut g = c.benchmark_group("glob_login_scope");
    g.throughput(Throughput::Elements(eps.len() as u64));
    g.bench_function("hand", |b| {
        b.iter(|| {
            eps.iter()
                .filter(|e| hand_login.iter().any(|g| g.matches(black_box(e))))
                .count()
        })
    });
    g.bench_function("wildmatch", |b| {
        b.iter(|| {
            eps.iter()
                .filter(|e| wild_login.iter().any(|g| g.matches(black_box(e))))
                .count()
        })
    });
    g.bench_function("globset_matchers", |b| {
        b.iter(|| {
            eps.iter()
                .filter(|e| gs_login.iter().any(|g| g.is_match(black_box(e))))
                .count()
        })
    });
    g.bench_function("globset_set", |b| {
        b.iter(|| eps.iter().filter(|e| gs_set.is_match(black_box(e))).count())
    });
    g.finish();

    for (name, pat) in [("glob_id", inputs::ID_GLOBS[0]), ("glob_wild", inputs::WILD_GLOB)] {
        let hand = apitap::rules::Glob::new(pat);
        let wild = wildmatch::WildMatch::new(pat);
        let gs = globset_glob(pat).compile_matcher();
        let mut g = c.benchmark_group(name);
        g.throughput(Throughput::Elements(eps.len() as u64));
        g.bench_function("hand", |b| {
            b.iter(|| eps.iter().filter(|e| hand.matches(black_box(e))).count())
        });
        g.bench_function("wildmatch", |b| {
            b.iter(|| eps.iter().filter(|e| wild.matches(black_box(e))).count())
        });
        g.bench_function("globset", |b| {
            b.iter(|| eps.iter().filter(|e| gs.is_match(black_box(e))).count())
        });
        if name == "glob_id" {
            // where the hand-written star-only path spends its time: the middle piece's search
            let f = memchr::memmem::Finder::new(b"{id}");
            g.bench_function("part_memmem_find", |b| {
                b.iter(|| eps.iter().filter(|e| f.find(black_box(e).as_bytes()).is_some()).count())
            });
            // the hand-written star-only path with the empty prefix and suffix not compared
            // (`starts_with(b"")` calls libc's memcmp, ~85% of `hand` here under perf)
            let pieces = ["", "{id}", ""];
            let star_only = |s: &[u8]| {
                let (first, last) = (pieces[0].as_bytes(), pieces[2].as_bytes());
                if s.len() < first.len() + last.len()
                    || (!first.is_empty() && !s.starts_with(first))
                    || (!last.is_empty() && !s.ends_with(last))
                {
                    return false;
                }
                f.find(&s[first.len()..s.len() - last.len()]).is_some()
            };
            g.bench_function("hand_without_empty_compares", |b| {
                b.iter(|| eps.iter().filter(|e| star_only(black_box(e).as_bytes())).count())
            });
            g.bench_function("part_naive_scan", |b| {
                b.iter(|| {
                    eps.iter()
                        .filter(|e| black_box(e).as_bytes().windows(4).any(|w| w == b"{id}"))
                        .count()
                })
            });
        }
        g.finish();
    }
}

fn bench_hll(c: &mut Criterion) {
    for n in [10usize, 1_000, 100_000] {
        let vals = inputs::distinct_values(n, 1);
        let mut g = c.benchmark_group(format!("hll_{n}"));
        g.throughput(Throughput::Elements(n as u64));
        if n >= 100_000 {
            g.sample_size(20);
        }
        g.bench_function("hand", |b| {
            b.iter(|| {
                let mut h = Distinct::default();
                for v in &vals {
                    h.add(black_box(*v));
                }
                h.estimate()
            })
        });
        g.bench_function("hyperloglogplus_pf", |b| {
            b.iter(|| {
                let mut h = hllpf();
                for v in &vals {
                    h.insert(black_box(v));
                }
                h.count()
            })
        });
        g.bench_function("hyperloglogplus_plus", |b| {
            b.iter(|| {
                let mut h = hllplus();
                for v in &vals {
                    h.insert(black_box(v));
                }
                h.count()
            })
        });
        g.bench_function("cardinality_estimator", |b| {
            b.iter(|| {
                let mut h = Cardinality::new();
                for v in &vals {
                    h.insert(black_box(v));
                }
                h.estimate()
            })
        });
        g.finish();
    }
}

criterion_group!(benches, bench_timestamps, bench_percent, bench_globs, bench_hll);
criterion_main!(benches);
