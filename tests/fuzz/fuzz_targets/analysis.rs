//! Any bytes parsed as HTTP (both directions) and every transaction through the worker-side
//! analysis with the default rules: classifiers, sensitive-data scan, catalog profiling and
//! export, rules, windows, entity risk and baselines. Never a panic; tables within their caps.
#![no_main]
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use apitap::catalog::{Catalog, CatalogConfig};
use apitap::engine::{Engine, EngineConfig, View};
use apitap::http::HttpConfig;
use apitap::http::conn::Conn;
use apitap::rules::{DEFAULT_RULES, RuleSet};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let cfg = HttpConfig { body_depth: 2048, max_head: 4096, max_pending: 8, decompress: true };
    let mut c = Conn::new(Some(0), &cfg);
    let mut pos = [0u64; 2];
    for (i, part) in data.split(|b| *b == 0).enumerate() {
        let dir = i & 1;
        pos[dir] += part.len() as u64;
        c.data(dir, part, i as u64 * 1_000_000_000, Some(pos[dir ^ 1]), &cfg);
    }
    c.flush(u64::MAX / 4, &cfg);
    let (mut txs, mut an) = (Vec::new(), Vec::new());
    c.take(&mut txs, &mut an);
    let rules = Arc::new(RuleSet::parse("default", DEFAULT_RULES).expect("default rules"));
    let ecfg = EngineConfig { max_states: 64, ..EngineConfig::default() };
    let mut engine = Engine::new(rules, ecfg, 0, 2);
    let mut catalog = Catalog::new(CatalogConfig { max_endpoints_per_host: 8, ..CatalogConfig::default() });
    let red = apitap::redact::Redactor::new(b"k");
    for (i, mut tx) in txs.into_iter().enumerate() {
        tx.decode_bodies(cfg.body_depth);
        let meta = apitap::flow::FlowMeta {
            flow_id: i as u64,
            community_id: Arc::from("1:x"),
            src: IpAddr::V4(Ipv4Addr::new(10, 0, 0, (i % 7) as u8)),
            sport: 1000,
            dst: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 200)),
            dport: 80,
        };
        let Some(q) = tx.request.as_ref() else { continue };
        let auth = red.auth(q);
        let Some(e) = apitap::catalog::endpoint_of(&tx, &meta) else { continue };
        let (host, m, t) = e.parts();
        let ep = format!("{m} {t}");
        let url = red.url(&q.uri).into_owned();
        let v = View::new(&meta, &tx, &auth, meta.src, host, &ep, &url);
        catalog.observe_at((host, m, t), &tx, &meta, &auth, v.sensitive());
        let (mut out, mut cross) = (Vec::new(), Vec::new());
        engine.on_tx(&v, &mut out, &mut cross);
        for (_, m) in &cross {
            engine.on_cross(m, &mut out);
        }
    }
    let _ = apitap::catalog::openapi::document(&catalog);
    let st = engine.snapshot_stats();
    assert!(st.states <= 64 + 1);
});
