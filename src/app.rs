//! Thread topology and the replay run.
//!
//! One capture thread (the caller) owns files, decoding, flows, reassembly and HTTP parsing. It
//! hands owned events in batches over bounded crossbeam channels to N worker shards, chosen by
//! the entity (client address) hash so one entity's events always land on the same shard; the
//! workers format JSON lines and pass them to one sink thread that writes them. In a replay
//! nothing is dropped: a full channel makes the reader wait. The final `stats` event is written
//! after every worker has drained, so it is the last line.

use std::fs::File;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::{self, BufWriter, IsTerminal, Write};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender, bounded};
use serde_json::json;
use tracing::warn;

use crate::capture::file::CaptureFile;
use crate::capture::{Frame, Ts};
use crate::config::Config;
use crate::decode::{Decoder, Outcome, Skip};
use crate::event::{AnomalyEvent, Event, Formatter};
use crate::flow::{FlowOutput, FlowTable};
use crate::redact::Redactor;

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
#[derive(Debug, Default, Clone)]
pub struct Summary {
    pub packets: u64,
    pub bytes: u64,
    pub transactions: u64,
    pub events: EventCounts,
    pub truncated_files: u64,
    pub seconds: f64,
    pub stats: serde_json::Value,
}

#[derive(Debug, Default, Clone, Copy)]
pub struct EventCounts {
    pub http: u64,
    pub anomaly: u64,
    pub stats: u64,
}

const BATCH: usize = 256;

struct Pipeline {
    shards: Vec<Sender<Vec<Event>>>,
    batches: Vec<Vec<Event>>,
    workers: Vec<JoinHandle<()>>,
    sink_tx: Sender<Vec<u8>>,
    sink: JoinHandle<io::Result<()>>,
    fmt: Arc<Formatter>,
    counts: EventCounts,
}

impl Pipeline {
    fn start(cfg: &Config, out: Box<dyn Write + Send>) -> Self {
        let fmt = Arc::new(Formatter {
            host: cfg.sensor_name.clone(),
            redactor: Redactor::new(&cfg.hash_key),
            log_headers: cfg.log_headers,
        });
        let (sink_tx, sink_rx) = bounded::<Vec<u8>>(64);
        let sink = std::thread::Builder::new()
            .name("apitap-sink".into())
            .spawn(move || sink_loop(out, sink_rx))
            .expect("spawning the sink thread");
        let mut shards = Vec::new();
        let mut workers = Vec::new();
        for i in 0..cfg.workers.max(1) {
            let (tx, rx) = bounded::<Vec<Event>>(32);
            let fmt = fmt.clone();
            let stx = sink_tx.clone();
            shards.push(tx);
            workers.push(
                std::thread::Builder::new()
                    .name(format!("apitap-worker-{i}"))
                    .spawn(move || worker_loop(rx, fmt, stx))
                    .expect("spawning a worker thread"),
            );
        }
        let n = shards.len();
        Pipeline {
            shards,
            batches: (0..n).map(|_| Vec::with_capacity(BATCH)).collect(),
            workers,
            sink_tx,
            sink,
            fmt,
            counts: EventCounts::default(),
        }
    }

    fn push(&mut self, ev: Event) -> Result<(), AppError> {
        match &ev {
            Event::Http { .. } => self.counts.http += 1,
            Event::Anomaly(_) => self.counts.anomaly += 1,
            Event::Stats { .. } => self.counts.stats += 1,
        }
        let shard = match ev.entity() {
            Some(ip) => {
                let mut h = DefaultHasher::new();
                ip.hash(&mut h);
                (h.finish() % self.shards.len() as u64) as usize
            }
            None => 0,
        };
        self.batches[shard].push(ev);
        if self.batches[shard].len() >= BATCH {
            self.send(shard)?;
        }
        Ok(())
    }

    fn send(&mut self, shard: usize) -> Result<(), AppError> {
        let b = std::mem::replace(&mut self.batches[shard], Vec::with_capacity(BATCH));
        // A worker only goes away when the sink failed; the sink's error is reported at join.
        self.shards[shard]
            .send(b)
            .map_err(|_| AppError::Output(io::Error::other("output closed")))
    }

    /// Drain the workers, then write `last` (the final stats) and close the sink.
    fn finish(mut self, last: Event) -> Result<(), AppError> {
        let mut res = Ok(());
        for s in 0..self.shards.len() {
            if !self.batches[s].is_empty() && res.is_ok() {
                res = self.send(s);
            }
        }
        drop(std::mem::take(&mut self.shards));
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
        let mut buf = Vec::new();
        self.fmt.write(&last, &mut buf);
        let _ = self.sink_tx.send(buf);
        drop(self.sink_tx);
        match self.sink.join() {
            Ok(Ok(())) => res,
            Ok(Err(e)) => Err(AppError::Output(e)),
            Err(_) => Err(AppError::Output(io::Error::other("sink thread panicked"))),
        }
    }
}

fn worker_loop(rx: Receiver<Vec<Event>>, fmt: Arc<Formatter>, tx: Sender<Vec<u8>>) {
    for batch in rx {
        let mut buf = Vec::with_capacity(batch.len() * 700);
        for ev in &batch {
            fmt.write(ev, &mut buf);
        }
        if tx.send(buf).is_err() {
            return;
        }
    }
}

fn sink_loop(out: Box<dyn Write + Send>, rx: Receiver<Vec<u8>>) -> io::Result<()> {
    let mut w = BufWriter::with_capacity(1 << 20, out);
    for buf in rx {
        w.write_all(&buf)?;
    }
    w.flush()
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
    decode_anomalies: [u64; Skip::ALL.len()],
    truncated_files: u64,
    files: u64,
    started: Instant,
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
            decode_anomalies: [0; Skip::ALL.len()],
            truncated_files: 0,
            files: 0,
            started: Instant::now(),
        }
    }

    #[inline]
    fn packet(&mut self, frame: &Frame<'_>, p: &mut Pipeline) -> Result<(), AppError> {
        self.packets += 1;
        // Packet time only moves forward (a capture merged out of order must not rewind timers).
        self.last_ts = self.last_ts.max(frame.ts);
        let Capture {
            decoder,
            flows,
            out,
            ..
        } = self;
        let outcome = decoder.decode(frame, &mut |seg| flows.process(seg, out));
        if let Outcome::Skipped(s) = outcome {
            if s.is_anomaly() && self.decode_anomalies[s as usize] < self.cfg.max_decode_anomalies {
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
        }
        if !self.out.is_empty() {
            self.forward(p)?;
        }
        if self.cfg.stats_interval_s > 0 {
            let iv = self.cfg.stats_interval_s * 1_000_000_000;
            match self.next_stats {
                None => self.next_stats = Some(self.last_ts + iv),
                Some(t) if self.last_ts >= t => {
                    self.next_stats = Some(self.last_ts + iv);
                    let stats = self.stats(p.counts);
                    p.push(Event::Stats {
                        ts: self.last_ts,
                        stats,
                    })?;
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn forward(&mut self, p: &mut Pipeline) -> Result<(), AppError> {
        for o in self.out.drain(..) {
            let ev = match o {
                FlowOutput::Http { meta, tx } => Event::Http { meta, tx },
                FlowOutput::Anomaly { ts, meta, what } => {
                    Event::Anomaly(AnomalyEvent::from_flow(ts, meta, what))
                }
            };
            p.push(ev)?;
        }
        Ok(())
    }

    fn stats(&self, events: EventCounts) -> serde_json::Value {
        let d = &self.decoder.stats;
        let r = &self.flows.rstats;
        let f = &self.flows.stats;
        let fr = &self.decoder.frags.stats;
        let skipped: serde_json::Map<String, serde_json::Value> = Skip::ALL
            .iter()
            .filter(|s| d.skipped[**s as usize] > 0)
            .map(|s| (s.as_str().to_string(), json!(d.skipped[*s as usize])))
            .collect();
        json!({
            "capture": {"files": self.files, "packets": self.packets, "bytes": d.bytes, "truncated_files": self.truncated_files},
            "decoder": {
                "tcp": d.tcp, "ipv4": d.ipv4, "ipv6": d.ipv6, "vlan": d.vlan, "mpls": d.mpls,
                "vxlan": d.vxlan, "gre": d.gre, "erspan": d.erspan,
                "fragments": d.fragments, "reassembled": d.reassembled,
                "frag_timeouts": fr.timeouts, "frag_memcap_drops": fr.memcap_drops, "frag_invalid": fr.invalid, "frag_overlaps": fr.overlaps,
                "skipped": skipped,
            },
            "flow": {
                "active": self.flows.active(), "created": f.created, "closed": f.closed, "timed_out": f.timed_out,
                "evicted": f.evicted, "midstream": f.midstream, "not_http": f.not_http,
            },
            "reassembly": {
                "segments": r.segments, "bytes": r.bytes, "retransmits": r.retransmits, "overlaps": r.overlaps,
                "overlap_conflicts": r.overlap_conflicts, "out_of_order": r.ooo_segments, "gaps": r.gaps,
                "gap_bytes": r.gap_bytes, "cap_skips": r.cap_skips, "out_of_window": r.out_of_window,
            },
            "http": {"transactions": f.transactions},
            "memory": {"ooo_bytes": self.flows.buffered_bytes(), "frag_bytes": self.decoder.frags.memory(), "flows": self.flows.active()},
            "events": {"http": events.http, "anomaly": events.anomaly, "stats": events.stats + 1, "anomalies_suppressed": f.anomalies_suppressed},
            "drops": {"events": 0},
        })
    }
}

/// Open every file (so a bad one fails the run before any output), then replay them in order.
pub fn replay(cfg: &Config, files: &[String]) -> Result<Summary, AppError> {
    let caps = files
        .iter()
        .map(|f| CaptureFile::open(f).map_err(|e| AppError::Input(e.to_string())))
        .collect::<Result<Vec<_>, _>>()?;
    let out: Box<dyn Write + Send> = if cfg.output == "-" {
        Box::new(io::stdout())
    } else {
        Box::new(
            File::create(&cfg.output)
                .map_err(|e| AppError::Usage(format!("{}: cannot write: {e}", cfg.output)))?,
        )
    };
    let total: u64 = caps.iter().map(|c| c.len() as u64).sum();
    let bar = (cfg.progress && io::stderr().is_terminal()).then(|| {
        let b = indicatif::ProgressBar::new(total);
        b.set_style(
            indicatif::ProgressStyle::with_template("{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} ({bytes_per_sec}, {eta})")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b
    });
    let mut p = Pipeline::start(cfg, out);
    let mut cap = Capture::new(cfg);
    let mut done: u64 = 0;
    let mut res = Ok(());
    'files: for f in &caps {
        cap.files += 1;
        let mut r = f.reader();
        let mut n: u32 = 0;
        while let Some(frame) = r.next_frame() {
            if let Err(e) = cap.packet(&frame, &mut p) {
                res = Err(e);
                break 'files;
            }
            n = n.wrapping_add(1);
            if n % 16384 == 0 {
                if let Some(b) = &bar {
                    b.set_position(done + r.offset() as u64);
                }
            }
        }
        if let Some(s) = r.stopped() {
            cap.truncated_files += 1;
            warn!(
                "{}: {} at byte {}; read up to there",
                f.name, s.reason, s.offset
            );
        }
        done += f.len() as u64;
    }
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    let ts = cap.last_ts;
    cap.flows.flush_all(ts, &mut cap.out);
    if res.is_ok() {
        res = cap.forward(&mut p);
    }
    let stats = cap.stats(p.counts);
    let mut events = p.counts;
    events.stats += 1;
    let last = Event::Stats {
        ts,
        stats: stats.clone(),
    };
    let fin = p.finish(last);
    res?;
    fin?;
    Ok(Summary {
        packets: cap.packets,
        bytes: cap.decoder.stats.bytes,
        transactions: cap.flows.stats.transactions,
        events,
        truncated_files: cap.truncated_files,
        seconds: cap.started.elapsed().as_secs_f64(),
        stats,
    })
}

/// The human summary printed to stderr at exit.
pub fn print_summary(s: &Summary) {
    let skipped = s.stats["decoder"]["skipped"].as_object().map(|m| {
        m.iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    });
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
        skipped
            .filter(|x| !x.is_empty())
            .unwrap_or_else(|| "none".into())
    );
}
