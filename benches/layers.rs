//! Per-layer throughput: decode, reassembly and HTTP parsing, in bytes per second.
//! Inputs are built once outside the timed loop. Run: `cargo bench --bench layers`.

use std::hint::black_box;

use apitap::capture::Frame;
use apitap::decode::{DecodeConfig, Decoder};
use apitap::http::HttpConfig;
use apitap::http::conn::Conn;
use apitap::reassembly::{Budget, Chunk, ReassemblyConfig, ReassemblyStats, Stream};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

#[path = "../tests/common/mod.rs"]
mod common;

fn frame(seq: u32, payload: &[u8]) -> Vec<u8> {
    common::tcp_frame([10, 0, 0, 1], [10, 0, 0, 2], 40000, 80, seq, 1, 0x18, payload)
}

/// A keep-alive conversation: request/response pairs with JSON bodies of a few hundred bytes.
fn conversation(n: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
    (0..n)
        .map(|i| {
            let q = format!("GET /api/users/{i}?fields=name,email HTTP/1.1\r\nHost: api.example\r\nUser-Agent: bench/1.0\r\nAccept: application/json\r\nAuthorization: Bearer abc.def.ghi\r\n\r\n");
            let body = format!("{{\"id\":{i},\"name\":\"user {i}\",\"email\":\"u{i}@example.com\",\"pad\":\"{}\"}}", "x".repeat(3000));
            let r = format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len());
            (q.into_bytes(), r.into_bytes())
        })
        .collect()
}

fn bench_decode(c: &mut Criterion) {
    let payload = vec![b'x'; 1448];
    let frames: Vec<Vec<u8>> = (0..1000u32).map(|i| frame(1 + i * 1448, &payload)).collect();
    let bytes: usize = frames.iter().map(|f| f.len()).sum();
    let mut g = c.benchmark_group("decode");
    g.throughput(Throughput::Bytes(bytes as u64));
    g.bench_function("eth_ipv4_tcp_1500", |b| {
        let mut d = Decoder::new(DecodeConfig::default());
        b.iter(|| {
            let mut n = 0usize;
            for f in &frames {
                let fr = Frame {
                    ts: 1,
                    linktype: 1,
                    data: f,
                    orig_len: f.len() as u32,
                };
                d.decode(&fr, &mut |s| n += s.payload.len());
            }
            black_box(n)
        })
    });
    g.finish();
}

fn bench_reassembly(c: &mut Criterion) {
    let seg = vec![b'y'; 1448];
    let n = 1000u32;
    let mut g = c.benchmark_group("reassembly");
    g.throughput(Throughput::Bytes(seg.len() as u64 * n as u64));
    let cfg = ReassemblyConfig::default();
    g.bench_function("in_order", |b| {
        b.iter(|| {
            let mut s = Stream::default();
            let (mut budget, mut st) = (Budget::default(), ReassemblyStats::default());
            s.init(0);
            let mut total = 0usize;
            for i in 0..n {
                s.segment(
                    1 + i * 1448,
                    &seg,
                    0,
                    false,
                    i as u64,
                    &cfg,
                    &mut budget,
                    &mut st,
                    &mut |c| {
                        if let Chunk::Data(d, _) = c {
                            total += d.len()
                        }
                    },
                );
            }
            black_box(total)
        })
    });
    g.bench_function("pairs_swapped", |b| {
        b.iter(|| {
            let mut s = Stream::default();
            let (mut budget, mut st) = (Budget::default(), ReassemblyStats::default());
            s.init(0);
            let mut total = 0usize;
            for i in (0..n).step_by(2) {
                for j in [i + 1, i] {
                    s.segment(
                        1 + j * 1448,
                        &seg,
                        0,
                        false,
                        j as u64,
                        &cfg,
                        &mut budget,
                        &mut st,
                        &mut |c| {
                            if let Chunk::Data(d, _) = c {
                                total += d.len()
                            }
                        },
                    );
                }
            }
            black_box(total)
        })
    });
    g.finish();

    // One-byte segments with a hole after each (the worst case for the out-of-order buffer),
    // then one segment filling everything: was quadratic in the number buffered (80,000 took
    // 5-27 s), now O(log n) per insertion.
    let holes = 50_000u32;
    let mut g = c.benchmark_group("reassembly_ooo");
    g.throughput(Throughput::Elements(holes as u64));
    g.sample_size(10);
    let big = ReassemblyConfig {
        max_ooo_per_stream: usize::MAX,
        max_ooo_total: usize::MAX,
        ..ReassemblyConfig::default()
    };
    let fill = vec![b'z'; 2 * holes as usize + 10];
    g.bench_function("one_byte_segments_with_holes_50k", |b| {
        b.iter(|| {
            let mut s = Stream::default();
            let (mut budget, mut st) = (Budget::default(), ReassemblyStats::default());
            s.init(0);
            let mut total = 0usize;
            let mut count = |c: Chunk<'_>| {
                if let Chunk::Data(d, _) = c {
                    total += d.len()
                }
            };
            for i in 0..holes {
                s.segment(
                    10 + 2 * i,
                    b"x",
                    0,
                    false,
                    i as u64,
                    &big,
                    &mut budget,
                    &mut st,
                    &mut count,
                );
            }
            s.segment(1, &fill, 0, false, holes as u64, &big, &mut budget, &mut st, &mut count);
            black_box(total)
        })
    });
    g.finish();
}

fn bench_http(c: &mut Criterion) {
    let conv = conversation(200);
    let bytes: usize = conv.iter().map(|(q, r)| q.len() + r.len()).sum();
    let mut g = c.benchmark_group("http");
    g.throughput(Throughput::Bytes(bytes as u64));
    let cfg = HttpConfig::default();
    g.bench_function("keepalive_json_1448_segments", |b| {
        b.iter(|| {
            let mut conn = Conn::new(Some(0), &cfg);
            for (q, r) in &conv {
                for c in q.chunks(1448) {
                    conn.data(0, c, 1, None, &cfg);
                }
                for c in r.chunks(1448) {
                    conn.data(1, c, 2, None, &cfg);
                }
            }
            conn.flush(3, &cfg);
            let (mut t, mut a) = (Vec::new(), Vec::new());
            conn.take(&mut t, &mut a);
            assert_eq!(t.len(), conv.len());
            black_box(t.len())
        })
    });
    g.finish();
}

/// One API transaction (JSON request and response) through the classifiers and the whole
/// worker-side analysis: catalog profiling, rules and entity risk with the default pack.
fn bench_analysis(c: &mut Criterion) {
    use apitap::catalog::{Catalog, CatalogConfig};
    use apitap::engine::{Engine, EngineConfig, View};
    use apitap::http::{Message, Transaction};
    use apitap::rules::RuleSet;
    use std::net::{IpAddr, Ipv4Addr};
    use std::sync::Arc;

    let body = br#"{"username":"alice","password":"x","items":[{"sku":"A-1","qty":2},{"sku":"B-7","qty":1}],"note":"O'Brien"}"#;
    let resp = br#"{"id":42,"name":"Alice","email":"alice@example.com","phone":"+14155550123","orders":[1,2,3]}"#;
    let tx = |i: u64| {
        let q = Message {
            method: "POST".into(),
            uri: format!("/api/v1/orders/{i}?expand=items&limit=10"),
            headers: vec![
                ("Host".into(), "api.example".into()),
                ("User-Agent".into(), "okhttp/4.11.0".into()),
                ("Authorization".into(), "Bearer abc.def.ghi".into()),
                ("Content-Type".into(), "application/json".into()),
            ]
            .into(),
            body: body.to_vec(),
            body_len: body.len() as u64,
            start: i * 1_000_000,
            end: i * 1_000_000,
            minor: 1,
            ..Default::default()
        };
        let r = Message {
            status: 200,
            headers: vec![("Content-Type".into(), "application/json".into())].into(),
            body: resp.to_vec(),
            body_len: resp.len() as u64,
            start: i * 1_000_000 + 500_000,
            end: i * 1_000_000 + 500_000,
            minor: 1,
            ..Default::default()
        };
        Transaction::new(Some(q), Some(r), false)
    };
    let meta = apitap::flow::FlowMeta {
        flow_id: 1,
        community_id: Arc::from("1:x"),
        src: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)),
        sport: 40000,
        dst: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
        dport: 80,
    };
    let red = apitap::redact::Redactor::new(b"k");
    let mut g = c.benchmark_group("analysis");
    g.throughput(Throughput::Elements(1));
    let t0 = tx(1);
    g.bench_function("classify_api_transaction", |b| {
        b.iter(|| {
            let inputs = apitap::detect::Inputs::of(&t0);
            let sens = apitap::catalog::sensitive::scan_response(t0.response.as_ref().expect("response"));
            std::hint::black_box(apitap::detect::classify(&t0, &inputs, &sens));
        })
    });
    let rules = Arc::new(RuleSet::parse("default", apitap::rules::DEFAULT_RULES).expect("rules"));
    let mut engine = Engine::new(rules, EngineConfig::default(), 0, 1);
    let mut catalog = Catalog::new(CatalogConfig::default());
    let mut i = 0u64;
    g.bench_function("catalog_rules_entity_per_transaction", |b| {
        b.iter(|| {
            i += 1;
            let t = tx(i % 5000);
            let auth = red.auth(t.request.as_ref().expect("request"));
            let e = apitap::catalog::endpoint_of(&t, &meta).expect("endpoint");
            let (host, m, tpl) = e.parts();
            let ep = format!("{m} {tpl}");
            let v = View::new(&meta, &t, &auth, meta.src, host, &ep, "/api/v1/orders");
            catalog.observe_at((host, m, tpl), &t, &meta, &auth, v.sensitive());
            let (mut out, mut cross) = (Vec::new(), Vec::new());
            engine.on_tx(&v, &mut out, &mut cross);
            std::hint::black_box(out.len());
        })
    });
    // The worker's stages one at a time (the per-stage split of benches/replay.rs, without
    // the capture thread): catalog profiling, rules and entity risk, and the http line.
    let mut catalog = Catalog::new(CatalogConfig::default());
    let mut i = 0u64;
    g.bench_function("catalog_per_transaction", |b| {
        b.iter(|| {
            i += 1;
            let t = tx(i % 5000);
            let auth = red.auth(t.request.as_ref().expect("request"));
            let e = apitap::catalog::endpoint_of(&t, &meta).expect("endpoint");
            let (host, m, tpl) = e.parts();
            let sens = apitap::catalog::sensitive::scan_response(t.response.as_ref().expect("response"));
            std::hint::black_box(catalog.observe_at((host, m, tpl), &t, &meta, &auth, &sens));
        })
    });
    let rules = Arc::new(RuleSet::parse("default", apitap::rules::DEFAULT_RULES).expect("rules"));
    let mut engine = Engine::new(rules, EngineConfig::default(), 0, 1);
    g.bench_function("rules_detectors_entity_per_transaction", |b| {
        b.iter(|| {
            i += 1;
            let t = tx(i % 5000);
            let auth = red.auth(t.request.as_ref().expect("request"));
            let e = apitap::catalog::endpoint_of(&t, &meta).expect("endpoint");
            let (host, m, tpl) = e.parts();
            let ep = format!("{m} {tpl}");
            let v = View::new(&meta, &t, &auth, meta.src, host, &ep, "/api/v1/orders");
            let (mut out, mut cross) = (Vec::new(), Vec::new());
            engine.on_tx(&v, &mut out, &mut cross);
            std::hint::black_box(out.len());
        })
    });
    let fmt = apitap::event::Formatter {
        host: "sensor".into(),
        redactor: apitap::redact::Redactor::new(b"k"),
        log_headers: false,
        types: apitap::event::EventTypes::all(),
    };
    let mut line = Vec::with_capacity(2048);
    g.bench_function("json_http_line", |b| {
        b.iter(|| {
            line.clear();
            let auth = fmt.redactor.auth(t0.request.as_ref().expect("request"));
            fmt.write_http(&meta, &t0, &auth, Some("POST /api/v1/orders/{id}"), None, &mut line);
            std::hint::black_box(line.len());
        })
    });
    g.finish();
}

criterion_group!(benches, bench_decode, bench_reassembly, bench_http, bench_analysis);
criterion_main!(benches);
