//! Thread topology and the replay run.
//!
//! One capture thread (the caller) owns files, decoding, flows, reassembly and HTTP parsing. It
//! hands owned events in batches over bounded crossbeam channels to N worker shards, chosen by
//! the entity (client address) hash so one entity's events always land on the same shard; the
//! workers format JSON lines and pass them to one sink thread that writes them. In a replay
//! nothing is dropped: a full channel makes the reader wait. The final `stats` event is written
//! after every worker has drained, so it is the last line.

use std::io::{self, IsTerminal};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError, bounded, unbounded};
use serde_json::json;
use tracing::{info, warn};

use crate::capture::file::CaptureFile;
use crate::capture::live;
use crate::capture::{Frame, Ts};
use crate::catalog::Catalog;
use crate::config::Config;
use crate::decode::{Decoder, Outcome, Skip};
use crate::engine::{Cross, Engine, client_ip, shard_of_ip};
use crate::event::{AnomalyEvent, Event, Formatter};
use crate::flow::{FlowOutput, FlowTable};
use crate::worker::{Shared, Worker};

use crate::redact::Redactor;

mod afpacket;
use crate::sink::{Batch, SinkHandle, SinkOptions, SinkSpec};

/// Errors that end a run, by exit code.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// Bad input file: exit 1.
    #[error("{0}")]
    Input(String),
    /// Usage or configuration error: exit 2.
    #[error("{0}")]
    Usage(String),
    /// Writing the output failed: exit 1.
    #[error("output: {0}")]
    Output(io::Error),
}

/// What a run did, for the exit summary and for tests.
#[derive(Debug, Default)]
pub struct Summary {
    pub packets: u64,
    pub bytes: u64,
    pub transactions: u64,
    pub events: EventCounts,
    pub truncated_files: u64,
    pub seconds: f64,
    pub stats: serde_json::Value,
    /// The merged API catalog, when profiling was on.
    pub catalog: Option<Catalog>,
    /// The riskiest entities at the end of the run, riskiest first (at most 5).
    pub top_entities: Vec<crate::worker::TopEntity>,
}

#[derive(Debug, Default, Clone, Copy)]
pub struct EventCounts {
    pub http: u64,
    pub anomaly: u64,
    pub stats: u64,
    pub tls: u64,
}

const BATCH: usize = 256;
/// Analysed on the capture thread ([`crate::worker::Inline`]): fewer events per batch, so a
/// batch's events are still in cache when the analysis reads them.
const INLINE_BATCH: usize = 32;

pub use crate::worker::Mode;

/// Events lost between the flow thread and the sinks (live only).
#[derive(Debug, Default)]
struct Drops {
    worker_queue: AtomicU64,
}

struct Pipeline {
    /// This thread's CPU mask from before a replay pinned it, put back on drop.
    _unpin: Option<crate::affinity::Restore>,
    mode: Mode,
    shards: Vec<Sender<Vec<Event>>>,
    batches: Vec<Vec<Event>>,
    /// Batches the workers are done with, handed back so their events are freed on this
    /// thread (see [`Pipeline::spare`]).
    spent: Receiver<Vec<Event>>,
    workers: Vec<JoinHandle<Option<Catalog>>>,
    /// A replay on one CPU: the only shard, run on this thread (see [`crate::worker::Inline`]).
    inline: Option<crate::worker::Inline>,
    /// The workers' catalogs, merged once they have drained.
    catalog: Option<Catalog>,
    sinks: Arc<Vec<SinkHandle>>,
    fmt: Arc<Formatter>,
    counts: EventCounts,
    drops: Arc<Drops>,
    /// Taken at finish, so the sinks have one owner again.
    shared: Option<Arc<Shared>>,
    counters: Arc<crate::worker::WorkerCounters>,
    trusted: Vec<crate::engine::Cidr>,
    /// Endpoint auth profiles for the auth-bypass detector (rules on).
    auth: Option<crate::engine::AuthTracker>,
    ticks: u64,
    /// Packet time of the last event, for the final snapshot.
    last_ts: Ts,
    /// Fleet counters (`[fleet]` on).
    fleet: Option<Arc<crate::fleet::FleetCounters>>,
    /// Live: the workers' queue budget, and what each shard's open batch holds against it.
    queue: Arc<crate::worker::QueueBudget>,
    pending: Vec<usize>,
    /// Events are counted against `queue` (live); fixed at start, unlike `mode` at shutdown.
    account: bool,
}

impl Pipeline {
    fn start(cfg: &Config, mode: Mode, reopen: Arc<AtomicU64>) -> Result<Self, AppError> {
        // A replay's threads pinned (see `crate::affinity`): this, the capture thread, first,
        // so the output threads started below share its CPU; each worker moves to its own.
        let pins = if mode == Mode::Replay {
            crate::affinity::plan(cfg.pin_threads, &crate::affinity::allowed_cpus(), cfg.workers)
        } else {
            None
        };
        // (unpinned again when the pipeline is dropped)
        let unpin = pins
            .as_ref()
            .and_then(|p| crate::affinity::pin_current_restoring(p.capture));
        let fmt = Arc::new(Formatter {
            host: cfg.sensor_name.clone(),
            redactor: Redactor::new(&cfg.hash_key),
            log_headers: cfg.log_headers,
            types: cfg.event_types,
        });
        let opts = SinkOptions {
            sensor_name: cfg.sensor_name.clone(),
            facility: cfg.syslog_facility,
            queue: cfg.sink_queue,
            fatal_errors: mode == Mode::Replay,
            truncate_files: mode == Mode::Replay,
        };
        let mut sinks = Vec::new();
        for s in &cfg.sinks {
            let spec: SinkSpec = s.parse().map_err(|e| AppError::Usage(format!("output {s:?}: {e}")))?;
            let h = SinkHandle::start(&spec, &opts, reopen.clone())
                .map_err(|e| AppError::Usage(format!("output {spec}: cannot open: {e}")))?;
            sinks.push(h);
        }
        if let Some(p) = &cfg.report_path {
            let spec = SinkSpec::Report(p.into(), cfg.report_sources.clone());
            let h = SinkHandle::start(&spec, &opts, reopen.clone())
                .map_err(|e| AppError::Usage(format!("report {p}: cannot write: {e}")))?;
            sinks.push(h);
        }
        let sinks = Arc::new(sinks);
        let drops = Arc::new(Drops::default());
        let n = cfg.workers.max(1);
        let rules = if cfg.rules_enabled {
            Some(Arc::new(cfg.load_rules().map_err(|e| AppError::Usage(e.to_string()))?))
        } else {
            None
        };
        let spec = match &cfg.spec_path {
            Some(p) => Some(Arc::new(
                crate::catalog::spec::Spec::from_file(p).map_err(AppError::Usage)?,
            )),
            None => None,
        };
        let shared = Shared::new(
            fmt.clone(),
            sinks.clone(),
            mode,
            cfg.http.decompress.then_some(cfg.http.body_depth),
            n,
            cfg.catalog_path.clone(),
            rules.clone().unwrap_or_default(),
            &cfg.engine,
            cfg.catalog.max_hosts * cfg.catalog.max_endpoints_per_host,
            cfg.endpoint_events && cfg.profile,
        );
        let mut shared = shared;
        let queue = Arc::new(crate::worker::QueueBudget::new(cfg.capture.worker_queue));
        shared.queue = queue.clone();
        let fleet = match cfg.fleet.redis {
            Some(_) => {
                let out = crate::fleet::Output {
                    fmt: fmt.clone(),
                    sinks: sinks.clone(),
                    mode,
                    counters: shared.counters.clone(),
                };
                let f = crate::fleet::Fleet::start(&cfg.fleet, &cfg.sensor_name, &cfg.hash_key, out)
                    .map_err(AppError::Usage)?;
                let c = f.counters.clone();
                shared.fleet = Some(f);
                Some(c)
            }
            None => None,
        };
        let shared = Arc::new(shared);
        let mut shards = Vec::new();
        let mut workers = Vec::new();
        // Replay: unbounded (the capture thread waits for the slowest shard, which bounds what
        // is in flight); live: bounded, a full queue drops and counts.
        let (cross_tx, cross_rx): (Vec<_>, Vec<_>) = (0..n)
            .map(|_| match mode {
                Mode::Replay => unbounded::<Vec<Cross>>(),
                Mode::Live => bounded::<Vec<Cross>>(1024),
            })
            .unzip();
        // Live, the byte budget bounds what waits; the batch count only stops runaway small
        // batches. Replay: the reader waits for a shard with this many batches queued.
        let depth = match mode {
            Mode::Replay => 32,
            Mode::Live => 4096,
        };
        // Two spent batches per shard in flight back at most: what they hold waits there only
        // until the next batch goes out.
        let (spent_tx, spent) = bounded::<Vec<Event>>(2 * n);
        let mut inline = None;
        for (i, crx) in cross_rx.into_iter().enumerate() {
            let (tx, rx) = bounded::<Vec<Event>>(depth);
            let catalog = cfg.profile.then(|| {
                let mut c = Catalog::new(cfg.catalog.clone());
                c.spec = spec.clone();
                c
            });
            let engine = rules.as_ref().map(|r| Engine::new(r.clone(), cfg.engine.clone(), i, n));
            let w = Worker::new(i, shared.clone(), catalog, engine);
            if mode == Mode::Replay && cfg.workers == 0 {
                inline = Some(crate::worker::Inline::new(w));
                break;
            }
            let peers = cross_tx.clone();
            let spent_tx = spent_tx.clone();
            let pin = pins.as_ref().and_then(|p| p.workers.get(i).copied());
            shards.push(tx);
            workers.push(
                std::thread::Builder::new()
                    .name(format!("apitap-worker-{i}"))
                    .spawn(move || {
                        if let Some(cpu) = pin {
                            crate::affinity::pin_current(cpu);
                        }
                        w.run(rx, crx, peers, spent_tx)
                    })
                    .map_err(|e| AppError::Usage(format!("cannot start a worker thread: {e}")))?,
            );
        }
        drop(cross_tx);
        let auth = cfg.rules_enabled.then(|| {
            crate::engine::AuthTracker::new(cfg.bypass).with_fleet(shared.fleet.as_ref().and_then(|f| f.auth_link()))
        });
        if let Some(p) = &pins {
            tracing::debug!(
                "threads pinned: capture and output on CPU {}, workers on {:?}",
                p.capture,
                p.workers
            );
        }
        Ok(Pipeline {
            _unpin: unpin,
            mode,
            shards,
            batches: (0..n).map(|_| Vec::with_capacity(BATCH)).collect(),
            spent,
            workers,
            inline,
            catalog: None,
            sinks,
            fmt,
            counts: EventCounts::default(),
            drops,
            counters: shared.counters.clone(),
            shared: Some(shared),
            trusted: cfg.engine.trusted_proxies.clone(),
            auth,
            ticks: 0,
            last_ts: 0,
            fleet,
            queue,
            pending: vec![0; n],
            account: mode == Mode::Live,
        })
    }

    /// A second way into the same worker shards and sinks, for another capture thread
    /// (af_packet): its own batches, event counts and auth tracker; no workers of its own.
    fn front(&self, cfg: &Config) -> Pipeline {
        Pipeline {
            _unpin: None,
            mode: self.mode,
            shards: self.shards.clone(),
            batches: (0..self.shards.len()).map(|_| Vec::with_capacity(BATCH)).collect(),
            // (a batch another front made may come back here: freed across threads, as before)
            spent: self.spent.clone(),
            workers: Vec::new(),
            inline: None,
            catalog: None,
            sinks: self.sinks.clone(),
            fmt: self.fmt.clone(),
            counts: EventCounts::default(),
            drops: self.drops.clone(),
            shared: None,
            counters: self.counters.clone(),
            trusted: self.trusted.clone(),
            auth: self.auth.is_some().then(|| {
                let link = self
                    .shared
                    .as_ref()
                    .and_then(|s| s.fleet.as_ref())
                    .and_then(|f| f.auth_link());
                crate::engine::AuthTracker::new(cfg.bypass).with_fleet(link)
            }),
            ticks: 0,
            last_ts: 0,
            fleet: self.fleet.clone(),
            queue: self.queue.clone(),
            pending: vec![0; self.shards.len()],
            account: self.account,
        }
    }

    /// SIGHUP: read the rule file again; a bad file keeps the rules running (and says why).
    /// Windows and entity risk carry on for rules that keep their id.
    fn reload_rules(&self, cfg: &Config) {
        let (Some(sh), true) = (&self.shared, cfg.rules_enabled) else {
            return;
        };
        match cfg.load_rules() {
            Ok(r) => {
                info!("SIGHUP: {} rules loaded", r.rules.len());
                sh.swap_rules(Arc::new(r));
            }
            Err(e) => warn!("SIGHUP: keeping the current rules: {e}"),
        }
    }

    /// A catalog snapshot point for every shard.
    fn tick(&mut self, ts: Ts) -> Result<(), AppError> {
        self.ticks += 1;
        for s in 0..self.batches.len() {
            let ev = Event::Tick { ts, seq: self.ticks };
            if self.account {
                self.pending[s] += crate::worker::queued_size(&ev);
            }
            self.batches[s].push(ev);
            self.send(s)?;
        }
        Ok(())
    }

    fn push(&mut self, ev: Event) -> Result<(), AppError> {
        match &ev {
            Event::Http { .. } => self.counts.http += 1,
            Event::Anomaly(_) => self.counts.anomaly += 1,
            Event::Tls(_) => self.counts.tls += 1,
            Event::Stats { .. } => self.counts.stats += 1,
            Event::Tick { .. } => {}
        }
        // The entity's shard: the client address, or behind a trusted proxy the forwarded one
        // (one shard: nothing to work out).
        let shard = if self.batches.len() <= 1 {
            0
        } else {
            let ip = match &ev {
                Event::Http { meta, tx, .. } if !self.trusted.is_empty() => Some(client_ip(meta, tx, &self.trusted)),
                _ => ev.entity(),
            };
            ip.map_or(0, |ip| shard_of_ip(ip, self.batches.len()))
        };
        if self.account {
            self.pending[shard] += crate::worker::queued_size(&ev);
        }
        self.batches[shard].push(ev);
        let full = if self.inline.is_some() { INLINE_BATCH } else { BATCH };
        if self.batches[shard].len() >= full {
            self.send(shard)?;
        }
        Ok(())
    }

    /// Hand the shard's batch over (live: whatever is ready; replay: everything, waiting).
    fn flush(&mut self) -> Result<(), AppError> {
        for s in 0..self.batches.len() {
            if !self.batches[s].is_empty() {
                self.send(s)?;
            }
        }
        Ok(())
    }

    /// An empty batch for the next events: one the workers handed back, its events dropped
    /// here. The allocator frees a block fastest on the thread that made it (a worker freeing
    /// the capture thread's strings and buffers pays for a cross-thread free on every one),
    /// and the freed blocks are warm for the next transactions this thread builds.
    fn spare(&mut self) -> Vec<Event> {
        let mut spare = None;
        while let Ok(mut b) = self.spent.try_recv() {
            b.clear();
            if spare.is_none() {
                spare = Some(b);
            }
        }
        spare.unwrap_or_else(|| Vec::with_capacity(BATCH))
    }

    fn send(&mut self, shard: usize) -> Result<(), AppError> {
        if let Some(w) = &mut self.inline {
            let b = &mut self.batches[shard];
            let alive = w.batch(b);
            b.clear();
            // A worker only goes away when a sink failed; the sink's error is reported at finish.
            return if alive {
                Ok(())
            } else {
                Err(AppError::Output(io::Error::other("output closed")))
            };
        }
        let fresh = self.spare();
        let b = std::mem::replace(&mut self.batches[shard], fresh);
        let bytes = std::mem::take(&mut self.pending[shard]);
        match self.mode {
            // A worker only goes away when a sink failed; the sink's error is reported at join.
            Mode::Replay => {
                if self.account {
                    // (live, at shutdown: waits, but the worker gives the bytes back all the same)
                    self.queue.used.fetch_add(bytes, Ordering::AcqRel);
                }
                self.shards[shard]
                    .send(b)
                    .map_err(|_| AppError::Output(io::Error::other("output closed")))
            }
            Mode::Live => {
                if !self.queue.take(bytes) {
                    self.drops.worker_queue.fetch_add(b.len() as u64, Ordering::Relaxed);
                    return Ok(());
                }
                if let Err(TrySendError::Full(b) | TrySendError::Disconnected(b)) = self.shards[shard].try_send(b) {
                    self.queue.give(bytes);
                    self.drops.worker_queue.fetch_add(b.len() as u64, Ordering::Relaxed);
                }
                Ok(())
            }
        }
    }

    fn sink_stats(&self) -> serde_json::Value {
        let m: serde_json::Map<String, serde_json::Value> = self
            .sinks
            .iter()
            .map(|s| {
                let st = &s.stats;
                (
                    s.name.clone(),
                    json!({
                        "written": st.written.load(Ordering::Relaxed),
                        "dropped": st.dropped.load(Ordering::Relaxed),
                        "errors": st.errors.load(Ordering::Relaxed),
                        "reconnects": st.reconnects.load(Ordering::Relaxed),
                        "queued": s.queued(),
                    }),
                )
            })
            .collect();
        serde_json::Value::Object(m)
    }

    /// Drain the workers, then write `last` (the final stats) to every sink and close them.
    fn finish(mut self, last: impl FnOnce(&Pipeline) -> Event) -> Result<Option<Catalog>, AppError> {
        let mode = self.mode;
        self.mode = Mode::Replay; // at shutdown nothing more is dropped: wait for the workers
        let mut res = self.flush();
        self.mode = mode;
        // the auth tracker tells the fleet what it still holds, and lets go of the fleet's
        // queue, so the fleet thread can end
        drop(self.auth.take());
        drop(std::mem::take(&mut self.shards));
        let joined = self.workers.drain(..).map(|w| w.join().ok().flatten());
        let inline = self.inline.take().map(|w| w.finish());
        for c in joined.chain(inline).flatten() {
            match &mut self.catalog {
                Some(m) => m.merge(&c),
                None => self.catalog = Some(c),
            }
        }
        let mut buf = Vec::new();
        let mut events = 1;
        if let (Some(c), Some(sh)) = (&self.catalog, &self.shared) {
            buf = sh.write_snapshot(c, self.last_ts, "snapshot");
            events += buf.iter().filter(|b| **b == b'\n').count() as u64;
        }
        self.shared = None;
        let last = last(&self);
        self.fmt.write(&last, &mut buf);
        let b = Arc::new(Batch {
            bytes: buf,
            events,
            back: None,
        });
        // Live: a sink stuck in a write (a pipe nobody reads) must not hold the exit hostage.
        let deadline = (mode == Mode::Live).then(|| Instant::now() + Duration::from_secs(5));
        for s in self.sinks.iter() {
            match mode {
                Mode::Replay => {
                    s.send(&b, true);
                }
                Mode::Live => {
                    s.send_timeout(&b, Duration::from_secs(2));
                }
            }
        }
        let sinks = Arc::try_unwrap(self.sinks).map_err(|_| AppError::Output(io::Error::other("sink still shared")))?;
        for s in sinks {
            let name = s.name.clone();
            match s.finish(deadline) {
                Ok(()) => {}
                Err(e) if mode == Mode::Live => warn!("sink {name}: {e}"),
                Err(e) if res.is_ok() => res = Err(AppError::Output(io::Error::new(e.kind(), format!("{name}: {e}")))),
                Err(_) => {}
            }
        }
        res.map(|()| self.catalog.take())
    }
}

/// Capture-thread state: decoder, flow table, counters.
struct Capture {
    cfg: Config,
    decoder: Decoder,
    flows: FlowTable,
    out: Vec<FlowOutput>,
    packets: u64,
    last_ts: Ts,
    next_stats: Option<Ts>,
    next_snapshot: Option<Ts>,
    decode_anomalies: [u64; Skip::ALL.len()],
    truncated_files: u64,
    files: u64,
    /// Frames left out by the replay filters (--bpf, --since, --until).
    filtered: u64,
    started: Instant,
    /// Stats intervals follow packet time (replay); live uses the wall clock.
    packet_time_stats: bool,
    /// TLS connections by server name (SNI), bounded.
    tls_names: crate::tls::NameCounts,
}

impl Capture {
    fn new(cfg: &Config) -> Self {
        Capture {
            cfg: cfg.clone(),
            decoder: Decoder::new(cfg.decode.clone()),
            flows: FlowTable::new(cfg.flow.clone(), cfg.reassembly.clone(), cfg.http.clone()),
            out: Vec::new(),
            packets: 0,
            last_ts: 0,
            next_stats: None,
            next_snapshot: None,
            decode_anomalies: [0; Skip::ALL.len()],
            tls_names: crate::tls::NameCounts::default(),
            truncated_files: 0,
            files: 0,
            filtered: 0,
            started: Instant::now(),
            packet_time_stats: true,
        }
    }

    #[inline]
    fn packet(&mut self, frame: &Frame<'_>, p: &mut Pipeline) -> Result<(), AppError> {
        self.packets += 1;
        // Packet time only moves forward (a capture merged out of order must not rewind timers).
        self.last_ts = self.last_ts.max(frame.ts);
        let Capture {
            decoder, flows, out, ..
        } = self;
        let outcome = decoder.decode(frame, &mut |seg| flows.process(seg, out));
        if let Outcome::Skipped(s) = outcome
            && s.is_anomaly()
            && self.decode_anomalies[s as usize] < self.cfg.max_decode_anomalies
        {
            self.decode_anomalies[s as usize] += 1;
            p.push(Event::Anomaly(AnomalyEvent {
                ts: frame.ts,
                meta: None,
                atype: "decode",
                event: s.as_str(),
                layer: "decode",
                app_proto: None,
            }))?;
        }
        if !self.out.is_empty() {
            self.forward(p)?;
        }
        if self.packet_time_stats && self.cfg.snapshot_interval_s > 0 && self.cfg.profile {
            let iv = self.cfg.snapshot_interval_s.saturating_mul(1_000_000_000);
            if due(&mut self.next_snapshot, self.last_ts, iv) {
                p.tick(self.last_ts)?;
            }
        }
        if self.packet_time_stats && self.cfg.stats_interval_s > 0 {
            let iv = self.cfg.stats_interval_s.saturating_mul(1_000_000_000);
            if due(&mut self.next_stats, self.last_ts, iv) {
                let stats = self.stats(p, None);
                p.push(Event::Stats {
                    ts: self.last_ts,
                    stats,
                })?;
            }
        }
        Ok(())
    }

    fn forward(&mut self, p: &mut Pipeline) -> Result<(), AppError> {
        for o in self.out.drain(..) {
            // (each event built in the call: one move fewer of a transaction)
            match o {
                FlowOutput::Http { meta, tx } => {
                    let mut endpoint = None;
                    let auth_bypass = match &mut p.auth {
                        Some(a) => {
                            let client = client_ip(&meta, &tx, &p.trusted);
                            a.observe(&meta, &tx, client, &mut endpoint)
                        }
                        None => false,
                    };
                    p.push(Event::Http {
                        meta,
                        tx,
                        auth_bypass,
                        endpoint: endpoint.map(Box::new),
                    })?;
                }
                FlowOutput::Anomaly { ts, meta, what } => {
                    p.push(Event::Anomaly(AnomalyEvent::from_flow(ts, meta, what)))?
                }
                FlowOutput::Tls { ts, meta, tls } => {
                    self.tls_names.add(tls.sni.as_deref());
                    p.push(Event::Tls(Box::new(crate::event::TlsEvent { ts, meta, tls: *tls })))?;
                }
            }
        }
        Ok(())
    }

    fn stats(&self, p: &Pipeline, live: Option<&[live::Reader]>) -> serde_json::Value {
        let events = p.counts;
        let d = &self.decoder.stats;
        let r = &self.flows.rstats;
        let f = &self.flows.stats;
        let fr = &self.decoder.frags.stats;
        let wc = &p.counters;
        let skipped: serde_json::Map<String, serde_json::Value> = Skip::ALL
            .iter()
            .filter(|s| d.skipped[**s as usize] > 0)
            .map(|s| (s.as_str().to_string(), json!(d.skipped[*s as usize])))
            .collect();
        json!({
            "capture": {"files": self.files, "packets": self.packets, "bytes": d.bytes, "truncated_files": self.truncated_files, "filtered": self.filtered},
            "decoder": {
                "tcp": d.tcp, "ipv4": d.ipv4, "ipv6": d.ipv6, "vlan": d.vlan, "mpls": d.mpls,
                "vxlan": d.vxlan, "gre": d.gre, "erspan": d.erspan,
                "gtpu": d.gtpu, "teredo": d.teredo, "ayiya": d.ayiya, "gre_udp": d.gre_udp, "llc_snap": d.llc_snap, "wifi": d.wifi,
                "fragments": d.fragments, "reassembled": d.reassembled,
                "frag_timeouts": fr.timeouts, "frag_memcap_drops": fr.memcap_drops, "frag_invalid": fr.invalid, "frag_overlaps": fr.overlaps, "frag_overlap_conflicts": fr.overlap_conflicts,
                "checksum_checked": d.checksum_checked, "checksum_bad": d.checksum_bad, "checksum_offloaded": d.checksum_offloaded, "checksum_validation": d.checksum_validation,
                "skipped": skipped,
            },
            "flow": {
                "active": self.flows.active(), "created": f.created, "closed": f.closed, "timed_out": f.timed_out,
                "evicted": f.evicted, "midstream": f.midstream, "not_http": f.not_http, "reused": f.reused,
                "pipeline_evicted_responses": f.pipeline_evicted_responses, "one_way": f.one_way,
            },
            "reassembly": {
                "segments": r.segments, "bytes": r.bytes, "retransmits": r.retransmits, "overlaps": r.overlaps,
                "overlap_conflicts": r.overlap_conflicts, "out_of_order": r.ooo_segments, "gaps": r.gaps,
                "gap_bytes": r.gap_bytes, "cap_skips": r.cap_skips, "out_of_window": r.out_of_window,
            },
            "http": {"transactions": f.transactions},
            "tunnel": {"socks": f.socks},
            "tls": {"flows": f.tls, "malformed": f.tls_malformed, "by_sni": self.tls_names.top(crate::tls::TOP_NAMES)},
            "memory": {"ooo_bytes": self.flows.buffered_bytes(), "frag_bytes": self.decoder.frags.memory(), "flows": self.flows.active(), "worker_queue_bytes": p.queue.used.load(Ordering::Relaxed)},
            "events": {
                "http": events.http, "anomaly": events.anomaly + wc.anomaly.load(Ordering::Relaxed), "stats": events.stats + 1, "tls": events.tls,
                "alert": wc.alert.load(Ordering::Relaxed), "entity": wc.entity.load(Ordering::Relaxed),
                "endpoint": wc.endpoint.load(Ordering::Relaxed), "anomalies_suppressed": f.anomalies_suppressed,
                "alert_types": wc.alert_types.lock().map(|m| json!(*m)).unwrap_or_default(),
            },
            "engine": {
                "rule_matches": wc.rule_matches.load(Ordering::Relaxed), "cross_shard_messages": wc.cross_messages.load(Ordering::Relaxed),
                "cross_shard_dropped": wc.cross_dropped.load(Ordering::Relaxed),
                "entities": wc.entities.load(Ordering::Relaxed), "states": wc.states.load(Ordering::Relaxed), "entity_evictions": wc.entity_evictions.load(Ordering::Relaxed),
                "state_evictions": wc.state_evictions.load(Ordering::Relaxed),
            },
            "drops": {"worker_queue": p.drops.worker_queue.load(Ordering::Relaxed), "sinks": p.sink_stats()},
            "fleet": p.fleet.as_ref().map(|f| f.json()),
            "interfaces": live.map(|rs| rs.iter().map(|r| {
                let st = &r.stats;
                (r.name.clone(), json!({
                    "packets": st.packets.load(Ordering::Relaxed),
                    "received": st.received.load(Ordering::Relaxed),
                    "kernel_dropped": st.kernel_dropped.load(Ordering::Relaxed),
                    "if_dropped": st.if_dropped.load(Ordering::Relaxed),
                    "queue_dropped": st.queue_drops.load(Ordering::Relaxed),
                }))
            }).collect::<serde_json::Map<_, _>>()),
        })
    }
}

/// Is a periodic job due at packet time `now`? The first call only schedules. A crafted
/// capture can carry timestamps near the end of time: the schedule saturates there and never
/// fires again rather than wrap around and fire on every packet.
fn due(next: &mut Option<Ts>, now: Ts, iv: u64) -> bool {
    match *next {
        None => {
            *next = Some(now.checked_add(iv).unwrap_or(Ts::MAX));
            false
        }
        Some(t) if now >= t && t != Ts::MAX => {
            *next = Some(now.checked_add(iv).unwrap_or(Ts::MAX));
            true
        }
        _ => false,
    }
}

/// Stop and reopen requests from signals (SIGINT/SIGTERM, SIGHUP).
#[derive(Clone, Default)]
pub struct Signals {
    pub stop: Arc<AtomicBool>,
    pub hup: Arc<AtomicBool>,
    /// Bumped on each SIGHUP; sinks reopen when it changes.
    pub reopen: Arc<AtomicU64>,
}

impl Signals {
    /// Install handlers: SIGINT/SIGTERM set `stop`, SIGHUP sets `hup`.
    pub fn install() -> Result<Self, AppError> {
        let s = Signals::default();
        let e = |e: io::Error| AppError::Usage(format!("cannot install signal handlers: {e}"));
        for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            signal_hook::flag::register(sig, s.stop.clone()).map_err(e)?;
        }
        signal_hook::flag::register(signal_hook::consts::SIGHUP, s.hup.clone()).map_err(e)?;
        Ok(s)
    }

    /// Turn a pending SIGHUP into a reopen request for the sinks. True if there was one.
    fn poll_hup(&self) -> bool {
        if self.hup.swap(false, Ordering::Relaxed) {
            info!("SIGHUP: reopening output files");
            self.reopen.fetch_add(1, Ordering::Relaxed);
            return true;
        }
        false
    }
}

fn finish_run(
    mut cap: Capture,
    p: Pipeline,
    readers: Option<&[live::Reader]>,
    res: Result<(), AppError>,
) -> Result<Summary, AppError> {
    let ts = cap.last_ts;
    cap.flows.flush_all(ts, &mut cap.out);
    let mut p = p;
    let mut res = res;
    if res.is_ok() {
        res = cap.forward(&mut p);
    }
    let mut events = p.counts;
    events.stats += 1;
    p.last_ts = ts;
    // The last stats are taken once the workers have drained, so their drops are in them.
    let mut stats = serde_json::Value::Null;
    let counters = p.counters.clone();
    let fin = p.finish(|p| {
        stats = cap.stats(p, readers);
        Event::Stats {
            ts,
            stats: stats.clone(),
        }
    });
    res?;
    let catalog = fin?;
    let mut top_entities = counters.top_entities.lock().map(|t| t.clone()).unwrap_or_default();
    top_entities.sort_by(|a, b| b.risk.total_cmp(&a.risk).then_with(|| a.value.cmp(&b.value)));
    top_entities.truncate(5);
    Ok(Summary {
        catalog,
        top_entities,
        packets: cap.packets,
        bytes: cap.decoder.stats.bytes,
        transactions: cap.flows.stats.transactions,
        events,
        truncated_files: cap.truncated_files,
        seconds: cap.started.elapsed().as_secs_f64(),
        stats,
    })
}

/// Open every file (so a bad one fails the run before any output), then replay them in order.
/// Nothing is dropped: a slow sink makes the reader wait. `signals` may stop it early (the
/// flows seen so far are flushed).
pub fn replay(cfg: &Config, files: &[String]) -> Result<Summary, AppError> {
    replay_with(cfg, files, &Signals::default())
}

pub fn replay_with(cfg: &Config, files: &[String], sig: &Signals) -> Result<Summary, AppError> {
    let with_sources;
    let cfg = if cfg.report_path.is_some() && cfg.report_sources.is_empty() {
        let mut c = cfg.clone();
        c.report_sources = files.to_vec();
        with_sources = c;
        &with_sources
    } else {
        cfg
    };
    let caps = files
        .iter()
        .map(|f| CaptureFile::open(f).map_err(|e| AppError::Input(e.to_string())))
        .collect::<Result<Vec<_>, _>>()?;
    let total: u64 = caps.iter().map(|c| c.len() as u64).sum();
    let bar = (cfg.progress && io::stderr().is_terminal()).then(|| {
        let b = indicatif::ProgressBar::new(total);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} ({bytes_per_sec}, {eta})",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b
    });
    let mut filter =
        crate::capture::filter::FrameFilter::new(&cfg.capture.bpf, cfg.since, cfg.until).map_err(AppError::Usage)?;
    let mut p = Pipeline::start(cfg, Mode::Replay, sig.reopen.clone())?;
    let mut cap = Capture::new(cfg);
    let mut done: u64 = 0;
    let mut res = Ok(());
    'files: for f in &caps {
        cap.files += 1;
        let mut r = f.reader();
        let mut n: u32 = 0;
        while let Some(frame) = r.next_frame() {
            if let Some(f) = &mut filter
                && !f.pass(&frame)
            {
                cap.filtered = f.filtered;
                continue;
            }
            if let Err(e) = cap.packet(&frame, &mut p) {
                res = Err(e);
                break 'files;
            }
            n = n.wrapping_add(1);
            if n.is_multiple_of(16384) {
                if let Some(b) = &bar {
                    b.set_position(done + r.offset() as u64);
                }
                if sig.stop.load(Ordering::Relaxed) {
                    warn!("stopped by signal; flushing what was read");
                    break 'files;
                }
            }
        }
        if let Some(s) = r.stopped() {
            cap.truncated_files += 1;
            warn!("{}: {} at byte {}; read up to there", f.name, s.reason, s.offset);
        }
        done += f.len() as u64;
    }
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    finish_run(cap, p, None, res)
}

/// Become `user` (its uid and primary group, no supplementary groups): the capture handles
/// and outputs are already open, so nothing privileged is needed any more. Files reopened on
/// SIGHUP must then be writable by that user.
fn drop_privileges(user: &str) -> Result<(), AppError> {
    let name = std::ffi::CString::new(user).map_err(|_| AppError::Usage(format!("user {user:?}: bad name")))?;
    // SAFETY: getpwnam returns a pointer to static storage or null; read at once, one thread
    // calls it during start-up.
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    if pw.is_null() {
        return Err(AppError::Usage(format!("user {user:?}: no such user")));
    }
    let (uid, gid) = unsafe { ((*pw).pw_uid, (*pw).pw_gid) };
    let fail = |what: &str| {
        AppError::Usage(format!(
            "cannot switch to user {user:?}: {what}: {}",
            io::Error::last_os_error()
        ))
    };
    // SAFETY: plain system calls; glibc applies set*id to every thread of the process.
    unsafe {
        if libc::setgroups(0, std::ptr::null()) != 0 {
            return Err(fail("setgroups"));
        }
        if libc::setgid(gid) != 0 {
            return Err(fail("setgid"));
        }
        if libc::setuid(uid) != 0 {
            return Err(fail("setuid"));
        }
    }
    Ok(())
}

/// The Prometheus endpoint of a live run (`metrics.listen`), whatever the capture method: it
/// serves the very object the run writes as a `stats` event, taken about once a second.
struct MetricsFeed {
    metrics: Arc<crate::metrics::Metrics>,
    /// Stopped (and joined) on drop.
    _server: crate::metrics::Server,
    last: Option<Instant>,
}

impl MetricsFeed {
    /// Bind the listen address, if one is set (a busy port: a usage error, before capture).
    fn start(cfg: &Config) -> Result<Option<MetricsFeed>, AppError> {
        let Some(a) = cfg.metrics_listen else {
            return Ok(None);
        };
        let metrics = Arc::new(crate::metrics::Metrics::default());
        let server = crate::metrics::Server::start(a, metrics.clone())
            .map_err(|e| AppError::Usage(format!("metrics {a}: cannot listen: {e}")))?;
        info!("metrics at http://{}/metrics", server.addr);
        Ok(Some(MetricsFeed {
            metrics,
            _server: server,
            last: None,
        }))
    }

    /// Publish `stats()` if the last snapshot is a second old (or there is none yet).
    fn feed(&mut self, stats: impl FnOnce() -> serde_json::Value) {
        if self.last.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
            self.last = Some(Instant::now());
            self.metrics.publish(stats());
        }
    }
}

/// Capture from interfaces until SIGINT/SIGTERM; then flush every flow and event and return.
/// A full queue anywhere drops (and counts) rather than stall capture.
pub fn live(cfg: &Config, sig: &Signals) -> Result<Summary, AppError> {
    let with_sources;
    let cfg = if cfg.report_path.is_some() && cfg.report_sources.is_empty() {
        let mut c = cfg.clone();
        c.report_sources = cfg
            .capture
            .interfaces
            .iter()
            .map(|i| format!("live capture on {i}"))
            .collect();
        with_sources = c;
        &with_sources
    } else {
        cfg
    };
    if cfg.capture.interfaces.is_empty() {
        return Err(AppError::Usage(
            "live: no interface (use -i IFACE or capture.interfaces)".into(),
        ));
    }
    // Bound before capture starts: a busy port is a usage error, before any packet is read.
    let mut metrics = MetricsFeed::start(cfg)?;
    if cfg.capture.method == crate::config::CaptureMethod::AfPacket {
        return afpacket::live(cfg, sig, metrics.as_mut());
    }
    let (tx, rx) = bounded::<live::PacketBatch>(cfg.capture.queue);
    let mut readers = Vec::new();
    for i in &cfg.capture.interfaces {
        match live::start(i, &cfg.capture, tx.clone(), sig.stop.clone()) {
            Ok(r) => readers.push(r),
            Err(e) => {
                sig.stop.store(true, Ordering::Relaxed);
                for r in readers {
                    r.join();
                }
                return Err(AppError::Input(e));
            }
        }
    }
    drop(tx);
    info!("capturing on {}", cfg.capture.interfaces.join(", "));
    let mut p = Pipeline::start(cfg, Mode::Live, sig.reopen.clone())?;
    if let Some(u) = &cfg.user {
        if let Err(e) = drop_privileges(u) {
            sig.stop.store(true, Ordering::Relaxed);
            return Err(e);
        }
        info!("running as user {u}");
    }
    let mut cap = Capture::new(cfg);
    cap.packet_time_stats = false;
    let iv = Duration::from_secs(cfg.stats_interval_s);
    let mut next_stats = Instant::now() + iv;
    let snap_iv = Duration::from_secs(cfg.snapshot_interval_s.max(1));
    let mut next_snapshot = Instant::now() + snap_iv;
    let mut last_tick = Instant::now();
    let mut res = Ok(());
    loop {
        if sig.poll_hup() {
            p.reload_rules(cfg);
        }
        let stopping = sig.stop.load(Ordering::Relaxed);
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(b) => {
                for f in b.frames() {
                    if let Err(e) = cap.packet(&f, &mut p) {
                        res = Err(e);
                        break;
                    }
                }
            }
            Err(RecvTimeoutError::Timeout) if stopping => break,
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        if res.is_err() {
            break;
        }
        if last_tick.elapsed() >= Duration::from_millis(200) {
            last_tick = Instant::now();
            // Idle flows time out on the clock too when the wire goes quiet.
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos() as Ts)
                .unwrap_or(0);
            if now > cap.last_ts + 1_000_000_000 {
                cap.flows.sweep(now.max(cap.last_ts), &mut cap.out);
                if let Err(e) = cap.forward(&mut p) {
                    res = Err(e);
                    break;
                }
            }
            // Hand over partly filled batches so events flow on a quiet wire.
            if let Err(e) = p.flush() {
                res = Err(e);
                break;
            }
            if cfg.profile && cfg.snapshot_interval_s > 0 && Instant::now() >= next_snapshot {
                next_snapshot = Instant::now() + snap_iv;
                if let Err(e) = p.tick(cap.last_ts.max(now)) {
                    res = Err(e);
                    break;
                }
            }
            if let Some(m) = &mut metrics {
                m.feed(|| cap.stats(&p, Some(&readers)));
            }
            if cfg.stats_interval_s > 0 && Instant::now() >= next_stats {
                next_stats = Instant::now() + iv;
                let stats = cap.stats(&p, Some(&readers));
                let ts = cap.last_ts.max(now);
                if let Err(e) = p.push(Event::Stats { ts, stats }) {
                    res = Err(e);
                    break;
                }
            }
        }
    }
    sig.stop.store(true, Ordering::Relaxed);
    // Readers hand over their last batch, then exit; drain what they sent.
    while let Ok(b) = rx.recv_timeout(Duration::from_millis(300)) {
        for f in b.frames() {
            let _ = cap.packet(&f, &mut p);
        }
    }
    let names: Vec<String> = readers.iter().map(|r| r.name.clone()).collect();
    let out = finish_run(cap, p, Some(&readers), res);
    for r in readers {
        r.join();
    }
    drop(metrics);
    info!("stopped capture on {}", names.join(", "));
    out
}

/// Write a JSON document (the catalog) to `path` (`-`: stdout), pretty-printed.
pub fn write_document(path: &str, doc: &serde_json::Value) -> Result<(), AppError> {
    let text = serde_json::to_string_pretty(doc).map_err(|e| AppError::Output(io::Error::other(e)))? + "\n";
    if path == "-" || path.is_empty() {
        use std::io::Write;
        io::stdout().lock().write_all(text.as_bytes()).map_err(AppError::Output)
    } else {
        std::fs::write(path, text).map_err(|e| AppError::Output(io::Error::new(e.kind(), format!("{path}: {e}"))))
    }
}

/// The human summary printed to stderr at exit.
pub fn print_summary(s: &Summary) {
    let skipped = s.stats["decoder"]["skipped"]
        .as_object()
        .map(|m| m.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", "));
    let r = &s.stats["reassembly"];
    eprintln!(
        "apitap: {} packets ({:.1} MB) in {:.2} s: {} http transactions, {} anomalies; reassembly gaps {}, overlap conflicts {}; skipped: {}",
        s.packets,
        s.bytes as f64 / 1e6,
        s.seconds,
        s.transactions,
        s.events.anomaly,
        r["gaps"],
        r["overlap_conflicts"],
        skipped.filter(|x| !x.is_empty()).unwrap_or_else(|| "none".into())
    );
    if let Some(m) = s.stats["events"]["alert_types"].as_object()
        && !m.is_empty()
    {
        let mut v: Vec<(&String, u64)> = m.iter().map(|(k, n)| (k, n.as_u64().unwrap_or(0))).collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
        let total: u64 = v.iter().map(|x| x.1).sum();
        let list = v.iter().map(|(k, n)| format!("{k} {n}")).collect::<Vec<_>>().join(", ");
        eprintln!("apitap: {total} alerts: {list}");
    }
    let filtered = s.stats["capture"]["filtered"].as_u64().unwrap_or(0);
    if filtered > 0 {
        eprintln!("apitap: {filtered} packets left out by --bpf/--since/--until");
    }
    for (i, t) in s.top_entities.iter().enumerate() {
        let ind = t
            .indicators
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect::<Vec<_>>()
            .join(", ");
        eprintln!(
            "apitap: top entity #{}: {} {} risk {:.0}, {} requests; {ind}",
            i + 1,
            t.kind,
            t.value,
            t.risk,
            t.requests
        );
    }
}
