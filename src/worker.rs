//! A worker shard: body decoding, the catalog profiler, the rule engine and entity risk, and
//! JSON formatting, for the transactions of the client addresses hashed to it.
//!
//! Shards talk to each other only through [`Cross`] messages (matches and profile facts for
//! entities another shard owns) on unbounded channels: a shard never blocks on another, so
//! they cannot deadlock; the messages are small and bounded by the transactions in flight.
//! Catalog snapshots: on a `Tick` every shard merges its catalog into the tick's slot; the
//! last one to arrive writes the `endpoint` snapshot events (and the catalog file).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use crossbeam_channel::{Receiver, Sender, select};
use hashbrown::{HashMap, HashSet};

use crate::capture::Ts;
use crate::catalog::Catalog;
use crate::detect::Detector;
use crate::engine::{Cidr, Cross, Engine, EngineConfig, Out, View, client_ip};
use crate::event::{AnomalyEvent, Event, Formatter};
use crate::flow::FlowAnomaly;
use crate::http::HttpAnomaly;
use crate::redact::Auth;
use crate::rules::RuleSet;
use crate::sink::{Batch, SinkHandle};

/// Events the workers made, for `stats`.
#[derive(Debug, Default)]
pub struct WorkerCounters {
    pub anomaly: AtomicU64,
    pub endpoint: AtomicU64,
    pub alert: AtomicU64,
    pub entity: AtomicU64,
    pub cross_messages: AtomicU64,
    /// Live: messages lost because the owner shard's queue was full.
    pub cross_dropped: AtomicU64,
    pub rule_matches: AtomicU64,
    pub state_evictions: AtomicU64,
    pub entity_evictions: AtomicU64,
    /// Entities and rule window states held now (the sum over shards).
    pub entities: AtomicU64,
    pub states: AtomicU64,
    /// Alerts by indicator type, for stats and the exit summary.
    pub alert_types: Mutex<std::collections::BTreeMap<&'static str, u64>>,
    /// The riskiest entities at the end of the run (each shard's top few), for the summary.
    pub top_entities: Mutex<Vec<TopEntity>>,
}

/// One line of the exit summary's top entities.
#[derive(Debug, Clone)]
pub struct TopEntity {
    pub risk: f64,
    pub kind: String,
    pub value: String,
    pub requests: u64,
    pub indicators: Vec<(&'static str, u64)>,
}

/// Entities a shard reports at the end of the run (riskiest first).
const FINAL_ENTITIES: usize = 1000;

pub use crate::engine::BypassConfig;

/// Replay waits for the slowest stage; live drops (and counts) instead of blocking capture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Replay,
    Live,
}

/// What every shard shares.
pub struct Shared {
    pub fmt: Arc<Formatter>,
    pub sinks: Arc<Vec<SinkHandle>>,
    pub mode: Mode,
    /// Decode bodies up to this depth for inspection.
    pub decode: Option<usize>,
    pub counters: Arc<WorkerCounters>,
    /// Endpoints already announced (hash of host, method, template), bounded.
    seen: Mutex<HashSet<u64>>,
    seen_cap: usize,
    snapshots: Mutex<HashMap<u64, (usize, Catalog)>>,
    pub shards: usize,
    pub catalog_path: Option<String>,
    pub rules: RwLock<Arc<RuleSet>>,
    pub rules_gen: AtomicU64,
    pub trusted: Vec<Cidr>,
    pub site_origins: Vec<String>,
    pub endpoint_events: bool,
    /// Fleet state through Redis (`[fleet]`): alerts are claimed fleet-wide before they are written.
    pub fleet: Option<crate::fleet::Fleet>,
    /// Live: bytes of events handed to the workers and not yet done (`capture.worker_queue`).
    pub queue: Arc<QueueBudget>,
}

/// Live: what the events waiting for the workers hold, against a budget in bytes. A burst
/// faster than the workers waits here (as packets wait in the kernel ring); beyond the budget
/// the capture thread drops whole batches and counts them (`stats.drops.worker_queue`).
#[derive(Debug)]
pub struct QueueBudget {
    pub used: std::sync::atomic::AtomicUsize,
    pub limit: usize,
}

impl QueueBudget {
    pub fn new(limit: usize) -> Self {
        QueueBudget {
            used: std::sync::atomic::AtomicUsize::new(0),
            limit,
        }
    }

    /// Take `bytes` from the budget; false (nothing taken) when they do not fit. A batch larger
    /// than the whole budget still goes when nothing else is waiting.
    pub fn take(&self, bytes: usize) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                (u == 0 || u.saturating_add(bytes) <= self.limit).then(|| u.saturating_add(bytes))
            })
            .is_ok()
    }

    pub fn give(&self, bytes: usize) {
        let _ = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| Some(u.saturating_sub(bytes)));
    }
}

/// About what an event holds in memory while it waits for a worker: the event itself and its
/// messages' strings, header lines and bodies. The capture thread and the worker both compute it
/// on the same, not yet touched, event, so what one adds the other takes back exactly.
pub fn queued_size(ev: &Event) -> usize {
    fn msg(m: &Option<crate::http::Message>) -> usize {
        m.as_ref().map_or(0, |m| {
            std::mem::size_of::<crate::http::Message>()
                + m.method.len()
                + m.uri.len()
                + m.reason.len()
                + m.headers.bytes()
                + m.headers.len() * 16
                + m.body.len()
        })
    }
    std::mem::size_of::<Event>()
        + match ev {
            Event::Http { tx, endpoint, .. } => {
                // (the transaction is boxed: its own bytes are outside the event)
                std::mem::size_of::<crate::http::Transaction>()
                    + msg(&tx.request)
                    + msg(&tx.response)
                    + endpoint
                        .as_ref()
                        .map_or(0, |e| std::mem::size_of_val(&**e) + e.text().len())
            }
            Event::Tls(_) => std::mem::size_of::<crate::event::TlsEvent>(),
            _ => 0,
        }
}

impl Shared {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        fmt: Arc<Formatter>,
        sinks: Arc<Vec<SinkHandle>>,
        mode: Mode,
        decode: Option<usize>,
        shards: usize,
        catalog_path: Option<String>,
        rules: Arc<RuleSet>,
        engine: &EngineConfig,
        seen_cap: usize,
        endpoint_events: bool,
    ) -> Self {
        Shared {
            fmt,
            sinks,
            mode,
            decode,
            counters: Arc::new(WorkerCounters::default()),
            seen: Mutex::new(HashSet::new()),
            seen_cap,
            snapshots: Mutex::new(HashMap::new()),
            shards,
            catalog_path,
            rules: RwLock::new(rules),
            rules_gen: AtomicU64::new(0),
            trusted: engine.trusted_proxies.clone(),
            site_origins: engine.site_origins.clone(),
            endpoint_events,
            fleet: None,
            queue: Arc::new(QueueBudget::new(usize::MAX)),
        }
    }

    /// Replace the rules (SIGHUP); the shards pick them up at their next batch.
    pub fn swap_rules(&self, r: Arc<RuleSet>) {
        if let Ok(mut g) = self.rules.write() {
            *g = r;
        }
        self.rules_gen.fetch_add(1, Ordering::Release);
    }

    /// Hand a batch of lines to every sink. False when every sink is gone (replay: stop).
    pub fn send(&self, bytes: Vec<u8>) -> bool {
        self.send_back(bytes, None)
    }

    /// [`Shared::send`], the emptied buffer handed to `back` once written.
    pub fn send_back(&self, bytes: Vec<u8>, back: Option<&Sender<Vec<u8>>>) -> bool {
        if self.sinks.is_empty() || bytes.is_empty() {
            return true;
        }
        // Lines, as written: types filtered out by `output.types` never were.
        let events = memchr::memchr_iter(b'\n', &bytes).count() as u64;
        let b = Arc::new(Batch {
            bytes,
            events,
            back: back.cloned(),
        });
        let mut alive = false;
        for s in self.sinks.iter() {
            alive |= s.send(&b, self.mode == Mode::Replay);
        }
        alive
    }

    /// `endpoint` events for every endpoint of a merged catalog, and the catalog file.
    pub fn write_snapshot(&self, c: &Catalog, ts: Ts, reason: &str) -> Vec<u8> {
        let mut out = Vec::new();
        if self.endpoint_events {
            let (real, _) = c.endpoints();
            for e in &real {
                self.fmt.write_endpoint(ts, c.endpoint_json(e), reason, &mut out);
                self.counters.endpoint.fetch_add(1, Ordering::Relaxed);
            }
        }
        if let Some(p) = &self.catalog_path {
            let doc = crate::catalog::openapi::document(c);
            if let Err(e) = write_atomically(p, &doc) {
                tracing::warn!("catalog {p}: {e}");
            }
        }
        out
    }
}

/// Write a document next to `path` and rename it over, so readers never see half a file.
pub fn write_atomically(path: &str, doc: &serde_json::Value) -> std::io::Result<()> {
    if path == "-" || path.is_empty() {
        return Ok(()); // stdout gets the catalog once, at exit
    }
    let tmp = format!("{path}.tmp");
    let text = serde_json::to_string_pretty(doc).map_err(std::io::Error::other)? + "\n";
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

/// One shard's state.
pub struct Worker {
    pub id: usize,
    pub shared: Arc<Shared>,
    pub catalog: Option<Catalog>,
    pub engine: Option<Engine>,
    rules_seen: u64,
    cross_out: Vec<(usize, Cross)>,
    outs: Vec<Out>,
    /// The current call's principal and entity keys, in buffers kept from call to call.
    principal_buf: String,
    keys: crate::engine::KeyBufs,
    /// Fleet on: messages for the fleet thread, handed over once per batch.
    outbox: crate::fleet::Outbox,
    /// The engine counters last added to the shared ones (shards publish differences), and when.
    published: crate::engine::EngineStats,
    published_at: std::time::Instant,
}

fn none_auth() -> Auth {
    Auth {
        scheme: "none",
        principal: None,
    }
}

impl Worker {
    pub fn new(id: usize, shared: Arc<Shared>, catalog: Option<Catalog>, engine: Option<Engine>) -> Self {
        Worker {
            id,
            shared,
            catalog,
            engine,
            rules_seen: 0,
            cross_out: Vec::new(),
            outs: Vec::new(),
            principal_buf: String::new(),
            keys: Default::default(),
            outbox: Default::default(),
            published: Default::default(),
            published_at: std::time::Instant::now(),
        }
    }

    fn reload_rules(&mut self) {
        let g = self.shared.rules_gen.load(Ordering::Acquire);
        if g == self.rules_seen {
            return;
        }
        self.rules_seen = g;
        if let (Some(e), Ok(r)) = (self.engine.as_mut(), self.shared.rules.read()) {
            e.reload(r.clone());
        }
    }

    /// Process one batch of events into lines.
    fn batch(&mut self, batch: &mut [Event], bytes: &mut Vec<u8>) {
        self.reload_rules();
        let sh = self.shared.clone();
        for ev in batch.iter_mut() {
            match ev {
                Event::Tick { ts, seq } => {
                    self.tick(*ts, *seq, bytes);
                    continue;
                }
                Event::Http {
                    meta,
                    tx,
                    auth_bypass,
                    endpoint: known,
                } => {
                    if let Some(cap) = sh.decode
                        && !tx.decode_bodies(cap)
                    {
                        let a = AnomalyEvent::from_flow(
                            tx.start(),
                            meta.clone(),
                            FlowAnomaly::Http(HttpAnomaly::BodyDecodeError),
                        );
                        sh.fmt.write(&Event::Anomaly(a), bytes);
                        sh.counters.anomaly.fetch_add(1, Ordering::Relaxed);
                    }
                    let auth = tx
                        .request
                        .as_ref()
                        .map(|q| sh.fmt.redactor.auth_in(q, &mut self.principal_buf))
                        .unwrap_or_else(none_auth);
                    // borrowed: the event goes back to the capture thread, which frees it
                    let made;
                    let ep = match known.as_deref() {
                        Some(e) => Some(e),
                        None => {
                            made = crate::catalog::endpoint_of(tx, meta);
                            made.as_ref()
                        }
                    };
                    let endpoint = ep.map(|e| e.method_template());
                    let analyse = self.catalog.is_some() || self.engine.is_some();
                    // redacted once, for the analysis and the http line
                    let red_url = tx.request.as_ref().map(|q| sh.fmt.redactor.url(&q.uri));
                    if let (Some(e), Some(endpoint), true) = (ep, endpoint, analyse) {
                        let (host, m, t) = e.parts();
                        let tx: &crate::http::Transaction = tx;
                        let client = client_ip(meta, tx, &sh.trusted);
                        let url = red_url.as_deref().map_or("", |u| crate::detect::cut(u, 512));
                        let mut v = View::new(meta, tx, &auth, client, host, endpoint, url);
                        if self.engine.is_some() {
                            v.set_keys(&mut self.keys);
                        }
                        v.auth_bypass = *auth_bypass;
                        v.site_origins = &sh.site_origins;
                        if let Some(c) = self.catalog.as_mut() {
                            // Attack traffic (injection payloads, known attack tools) does not
                            // define the API.
                            let vd = v.verdicts();
                            if vd.has(Detector::Injection) || vd.has(Detector::ScannerUa) {
                                c.excluded += 1;
                            } else if let Some(j) = c.observe_at((host, m, t), tx, meta, &auth, v.sensitive())
                                && sh.endpoint_events
                                && first_time(&sh, host, m, t)
                            {
                                sh.fmt.write_fresh_endpoint(tx.start(), &j, "first_seen", bytes);
                                sh.counters.endpoint.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        if let Some(engine) = self.engine.as_mut() {
                            engine.on_tx(&v, &mut self.outs, &mut self.cross_out);
                        }
                    }
                    sh.fmt.write_http(meta, tx, &auth, endpoint, red_url.as_deref(), bytes);
                    auth.give_back(&mut self.principal_buf);
                    self.flush_outs(bytes);
                }
                other => sh.fmt.write(other, bytes),
            }
        }
    }

    fn flush_outs(&mut self, bytes: &mut Vec<u8>) {
        // Fleet on: window hits, risk increments, alerts and entity events go to the fleet
        // thread, gathered in the outbox and handed over once per batch of transactions
        // (see `flush_fleet`).
        if self.shared.fleet.is_some() {
            let ob = &mut self.outbox;
            if let Some(e) = self.engine.as_mut() {
                for h in e.fleet_hits.drain(..) {
                    ob.hit(h);
                }
                for r in e.entities.fleet_risk.iter_mut().flat_map(|q| q.drain(..)) {
                    ob.risk(r);
                }
            }
            let mut outs = std::mem::take(&mut self.outs).into_iter().peekable();
            while let Some(o) = outs.next() {
                match o {
                    Out::Alert(a) => {
                        // a risk_threshold alert's entity event is written with it, if claimed
                        let e = match outs.peek() {
                            Some(Out::Entity(r)) if a.itype == "risk_threshold" && r.key == a.key => {
                                match outs.next() {
                                    Some(Out::Entity(r)) => Some(r),
                                    _ => None,
                                }
                            }
                            _ => None,
                        };
                        ob.alert(a, e);
                    }
                    // the entity event names the sensors that saw the entity
                    Out::Entity(r) => ob.entity(r),
                }
            }
        }
        self.write_outs(bytes);
    }

    /// Write the alerts and entity events in `outs`.
    fn write_outs(&mut self, bytes: &mut Vec<u8>) {
        for o in self.outs.drain(..) {
            match o {
                Out::Alert(a) => {
                    self.shared.fmt.write_alert(&a, bytes);
                    self.shared.counters.alert.fetch_add(1, Ordering::Relaxed);
                    if let Ok(mut m) = self.shared.counters.alert_types.lock() {
                        *m.entry(a.itype).or_default() += 1;
                    }
                }
                Out::Entity(r) => {
                    self.shared.fmt.write_entity(&r, bytes);
                    self.shared.counters.entity.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    /// Hand the outbox to the fleet thread; what comes back (its queue was full) is written
    /// here.
    fn flush_fleet(&mut self, bytes: &mut Vec<u8>) {
        let Some(f) = &self.shared.fleet else { return };
        if self.outbox.is_empty() {
            return;
        }
        for r in f.send_outbox(&mut self.outbox) {
            match r {
                crate::fleet::Returned::Alert(a, e) => {
                    self.outs.push(Out::Alert(a));
                    if let Some(e) = e {
                        self.outs.push(Out::Entity(e));
                    }
                }
                crate::fleet::Returned::Entity(r) => self.outs.push(Out::Entity(r)),
            }
        }
        self.write_outs(bytes);
    }

    fn tick(&mut self, ts: Ts, seq: u64, bytes: &mut Vec<u8>) {
        let sh = self.shared.clone();
        let Some(cat) = &self.catalog else { return };
        let merged = {
            let Ok(mut slots) = sh.snapshots.lock() else { return };
            let slot = slots.entry(seq).or_insert_with(|| (0, Catalog::new(cat.cfg.clone())));
            slot.1.merge(cat);
            slot.0 += 1;
            let done = slot.0 >= sh.shards;
            // Live: a shard whose queue was full never saw some tick; forget snapshots that
            // newer ones overtook instead of keeping their catalogs forever. (A replay never
            // drops a tick, and its shards may lag each other by many ticks.)
            if sh.mode == Mode::Live {
                slots.retain(|k, _| *k >= seq.saturating_sub(2));
            }
            if !done {
                return;
            }
            slots.remove(&seq).map(|s| s.1)
        };
        if let Some(m) = merged {
            bytes.extend_from_slice(&sh.write_snapshot(&m, ts, "snapshot"));
        }
    }

    /// Apply messages from other shards.
    fn cross(&mut self, msgs: Vec<Cross>, bytes: &mut Vec<u8>) {
        self.reload_rules();
        if let Some(e) = self.engine.as_mut() {
            for m in &msgs {
                e.on_cross(m, &mut self.outs);
            }
        }
        self.flush_outs(bytes);
    }

    fn send_cross(&mut self, peers: &[Sender<Vec<Cross>>]) {
        if self.cross_out.is_empty() {
            return;
        }
        let mut per: Vec<Vec<Cross>> = (0..peers.len()).map(|_| Vec::new()).collect();
        for (to, m) in self.cross_out.drain(..) {
            if let Some(v) = per.get_mut(to) {
                v.push(m);
            }
        }
        for (to, v) in per.into_iter().enumerate() {
            if v.is_empty() {
                continue;
            }
            let n = v.len() as u64;
            self.shared.counters.cross_messages.fetch_add(n, Ordering::Relaxed);
            match self.shared.mode {
                // Replay: the capture thread waits for the slowest shard, so what is in flight
                // between shards is bounded by the shards' own queues (the channels are
                // unbounded: a blocking send between shards could deadlock).
                Mode::Replay => {
                    let _ = peers[to].send(v);
                }
                // Live: bounded channels; a shard that falls behind loses messages (counted),
                // never blocks another.
                Mode::Live => {
                    if peers[to].try_send(v).is_err() {
                        self.shared.counters.cross_dropped.fetch_add(n, Ordering::Relaxed);
                    }
                }
            }
        }
    }

    /// The end of the run (replay's end, live shutdown): every entity that carried an
    /// indicator gets an `entity` event with its true totals (`reason: final`).
    fn final_entities(&mut self) {
        let Some(e) = self.engine.as_ref() else { return };
        let (reports, left) = e.entities.final_reports(FINAL_ENTITIES);
        if left > 0 {
            tracing::info!(
                "shard {}: {left} more entities with indicators not reported at exit",
                self.id
            );
        }
        let mut bytes = Vec::new();
        for r in &reports {
            // fleet on: written by the fleet thread, naming the sensors that saw the entity
            if let Some(f) = &self.shared.fleet
                && f.entity(Box::new(r.clone())).is_none()
            {
                continue;
            }
            self.shared.fmt.write_entity(r, &mut bytes);
            self.shared.counters.entity.fetch_add(1, Ordering::Relaxed);
        }
        if let Ok(mut top) = self.shared.counters.top_entities.lock() {
            top.extend(reports.iter().take(10).map(|r| TopEntity {
                risk: r.risk,
                kind: r.key.kind.to_string(),
                value: r.key.value.clone(),
                requests: r.requests,
                indicators: r.indicators.iter().map(|i| (i.itype, i.count)).collect(),
            }));
        }
        self.shared.send(bytes);
    }

    /// Add what changed in the engine's counters since the last call to the shared ones (the
    /// table sizes too: a shrinking table adds a wrapped difference, so the sum stays right).
    /// Called about once a second while running, so live `stats` and metrics move.
    fn publish_stats(&mut self) {
        self.published_at = std::time::Instant::now();
        if let Some(e) = self.engine.as_mut() {
            let st = e.snapshot_stats();
            let old = std::mem::replace(&mut self.published, st);
            let c = &self.shared.counters;
            let add = |a: &AtomicU64, new: u64, old: u64| {
                if new != old {
                    a.fetch_add(new.wrapping_sub(old), Ordering::Relaxed);
                }
            };
            add(&c.rule_matches, st.matches, old.matches);
            add(&c.state_evictions, st.state_evictions, old.state_evictions);
            add(&c.entity_evictions, st.entity_evictions, old.entity_evictions);
            add(&c.entities, st.entities, old.entities);
            add(&c.states, st.states, old.states);
        }
    }

    /// One batch from the capture thread: analysed into lines, its queue bytes given back (the
    /// messages for other shards wait in `cross_out`). `per_event` sizes the next batch's
    /// output buffer.
    fn step(&mut self, b: &mut [Event], bytes: &mut Vec<u8>, per_event: &mut usize) {
        // (worked out before the batch touches the events, as the capture thread did)
        let queued = match self.shared.mode {
            Mode::Live => b.iter().map(queued_size).sum(),
            Mode::Replay => 0,
        };
        bytes.reserve(b.len() * *per_event);
        let before = bytes.len();
        self.batch(b, bytes);
        self.shared.queue.give(queued);
        if !b.is_empty() {
            *per_event = ((bytes.len() - before) / b.len() + 128).clamp(256, 16 * 1024);
        }
    }

    /// Hand a batch's lines to the sinks (and the fleet's leftovers); about once a second the
    /// counters are published. False when a replay's sinks are all gone.
    fn hand_over(&mut self, mut bytes: Vec<u8>, back: &Sender<Vec<u8>>) -> bool {
        self.flush_fleet(&mut bytes);
        if !self.shared.send_back(bytes, Some(back)) && self.shared.mode == Mode::Replay {
            return false;
        }
        if self.published_at.elapsed() >= std::time::Duration::from_secs(1) {
            self.publish_stats();
        }
        true
    }

    /// The shard's end: what the fleet still holds, the final entity reports, the counters.
    fn end(mut self) -> Option<Catalog> {
        let mut bytes = Vec::new();
        self.flush_fleet(&mut bytes);
        self.shared.send(bytes);
        self.final_entities();
        self.publish_stats();
        self.catalog
    }

    /// The shard's loop: events from the capture thread and messages from the other shards
    /// until both are done. Returns the shard's catalog for the final merge.
    pub fn run(
        mut self,
        rx: Receiver<Vec<Event>>,
        cross_rx: Receiver<Vec<Cross>>,
        peers: Vec<Sender<Vec<Cross>>>,
        spent: Sender<Vec<Event>>,
    ) -> Option<Catalog> {
        let mut peers = Some(peers);
        let mut main_open = true;
        // Output bytes per event in the last batch (with a margin): the next batch's buffer is
        // made that size at once, not grown by doubling (each doubling copies it all).
        let mut per_event = 700;
        // Output buffers come back once the sinks wrote them (see `Batch::back`).
        let (back, returned) = crossbeam_channel::bounded::<Vec<u8>>(4);
        loop {
            let mut bytes = returned.try_recv().unwrap_or_default();
            if main_open {
                select! {
                    recv(rx) -> m => match m {
                        Ok(mut b) => {
                            self.step(&mut b, &mut bytes, &mut per_event);
                            // back to the capture thread, which made what the events hold and
                            // frees it cheaper (when its queue is full they are freed here)
                            let _ = spent.try_send(b);
                        }
                        Err(_) => {
                            main_open = false;
                            // Our last messages go out, then we stop being a sender: the
                            // others' cross channels close once every shard got here.
                            if let Some(p) = &peers {
                                let p = p.clone();
                                self.send_cross(&p);
                            }
                            peers = None;
                            continue;
                        }
                    },
                    recv(cross_rx) -> m => match m {
                        Ok(msgs) => self.cross(msgs, &mut bytes),
                        Err(_) => continue,
                    },
                }
                if let Some(p) = &peers {
                    let p = p.clone();
                    self.send_cross(&p);
                }
            } else {
                match cross_rx.recv() {
                    Ok(msgs) => self.cross(msgs, &mut bytes),
                    Err(_) => break,
                }
            }
            if !self.hand_over(bytes, &back) {
                break;
            }
        }
        self.end()
    }
}

/// A replay's only shard run on the capture thread (one CPU for the process): each batch is
/// analysed as it fills, while its events are still in cache, with no thread switch between
/// the reader and the shard. Same shard, same order of events, same lines as a worker thread.
pub struct Inline {
    worker: Worker,
    per_event: usize,
    /// Lines of the batches analysed since the sinks were last handed some.
    pending: Vec<u8>,
    back: Sender<Vec<u8>>,
    returned: Receiver<Vec<u8>>,
}

/// The lines of several small batches go to the sinks together, once this many bytes are
/// waiting: each hand-over may wake a sink thread, and on one CPU that is a thread switch.
const INLINE_HAND_OVER: usize = 256 << 10;

impl Inline {
    pub fn new(worker: Worker) -> Self {
        let (back, returned) = crossbeam_channel::bounded::<Vec<u8>>(4);
        Inline {
            worker,
            per_event: 700,
            pending: Vec::new(),
            back,
            returned,
        }
    }

    /// Analyse a batch; its lines go to the sinks with the next ones (see [`INLINE_HAND_OVER`]).
    /// False when the sinks are all gone.
    pub fn batch(&mut self, b: &mut [Event]) -> bool {
        if self.pending.capacity() == 0 {
            // A buffer the sinks gave back, else one made at its working size at once: grown
            // by doubling from empty it was copied whole at every step.
            self.pending = self
                .returned
                .try_recv()
                .unwrap_or_else(|_| Vec::with_capacity(INLINE_HAND_OVER + INLINE_HAND_OVER / 4));
        }
        self.worker.step(b, &mut self.pending, &mut self.per_event);
        if self.pending.len() < INLINE_HAND_OVER {
            return true;
        }
        let bytes = std::mem::take(&mut self.pending);
        self.worker.hand_over(bytes, &self.back)
    }

    /// The lines still waiting, then the shard's end ([`Worker::end`]).
    pub fn finish(mut self) -> Option<Catalog> {
        let bytes = std::mem::take(&mut self.pending);
        self.worker.hand_over(bytes, &self.back);
        self.worker.end()
    }
}

fn first_time(sh: &Shared, host: &str, method: &str, tpl: &str) -> bool {
    use std::hash::{DefaultHasher, Hash, Hasher};
    let mut h = DefaultHasher::new();
    (host, method, tpl).hash(&mut h);
    let k = h.finish();
    let Ok(mut seen) = sh.seen.lock() else { return false };
    if seen.len() >= sh.seen_cap {
        return false;
    }
    seen.insert(k)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_budget_refuses_what_does_not_fit_and_takes_it_once_given_back() {
        let q = QueueBudget::new(1000);
        assert!(q.take(600));
        assert!(!q.take(500), "600 + 500 is over the budget");
        assert_eq!(q.used.load(Ordering::Relaxed), 600, "a refused take holds nothing");
        assert!(q.take(400));
        q.give(600);
        assert!(q.take(500));
        q.give(400);
        q.give(500);
        assert_eq!(q.used.load(Ordering::Relaxed), 0);
        // a batch larger than the whole budget still goes when nothing waits, never beside another
        assert!(q.take(5000));
        assert!(!q.take(1));
        q.give(5000);
        // giving back more than is held (never by the pipeline) does not wrap around
        q.give(10);
        assert_eq!(q.used.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn queued_size_counts_what_a_transaction_holds() {
        use crate::http::{Message, Transaction};
        let ip: std::net::IpAddr = [10, 0, 0, 1].into();
        let meta = crate::flow::FlowMeta {
            flow_id: 1,
            community_id: "1:x".into(),
            src: ip,
            sport: 40000,
            dst: ip,
            dport: 80,
        };
        let ev = |body: usize, uri: &str| {
            let q = Message {
                method: "POST".into(),
                uri: uri.into(),
                body: vec![b'x'; body],
                ..Message::default()
            };
            Event::Http {
                meta: meta.clone(),
                tx: Box::new(Transaction::new(Some(q), None, false)),
                auth_bypass: false,
                endpoint: None,
            }
        };
        let small = queued_size(&ev(0, "/a"));
        assert!(small >= std::mem::size_of::<Event>() + std::mem::size_of::<Transaction>());
        assert_eq!(queued_size(&ev(10_000, "/a")), small + 10_000);
        assert_eq!(queued_size(&ev(0, "/a/b/c")), small + 4);
        let tick = Event::Tick { ts: 1, seq: 1 };
        assert_eq!(queued_size(&tick), std::mem::size_of::<Event>());
    }
}
