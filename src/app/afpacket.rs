//! The live run on AF_PACKET rings: `capture.threads` capture threads per interface, each with
//! its own ring (one fanout group per interface), decoder, flow table, reassembly and HTTP
//! state, feeding the same worker shards through its own [`Pipeline::front`]. The calling
//! thread owns the pipeline: it reloads rules on SIGHUP, sends catalog ticks and the periodic
//! `stats` (the capture threads' counters added up), and finishes the run once every capture
//! thread has flushed its flows.
//!
//! The endpoint auth profiles behind auth-bypass are per capture thread: each sees the flows
//! the kernel's hash gives it, a share of every endpoint's traffic. With `[fleet]` on they are
//! shared through Redis, so the rings (and the sensors) add up to one profile per endpoint.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use tracing::{info, warn};

use super::{AppError, Capture, EventCounts, MetricsFeed, Mode, Pipeline, Signals, Summary, drop_privileges};
use crate::capture::Ts;
use crate::capture::afpacket::{Ring, fanout_group};
use crate::config::Config;
use crate::event::Event;

/// Counters of one ring (one capture thread), from its reads and the socket's statistics.
#[derive(Default)]
struct RingCounters {
    /// Packets read from the ring.
    packets: AtomicU64,
    /// `tp_packets`, `tp_drops`, `tp_freeze_q_cnt` added up.
    received: AtomicU64,
    kernel_dropped: AtomicU64,
    freeze_q: AtomicU64,
}

impl RingCounters {
    fn get(&self) -> [u64; 4] {
        [&self.packets, &self.received, &self.kernel_dropped, &self.freeze_q].map(|c| c.load(Ordering::Relaxed))
    }
}

struct RingThread {
    handle: JoinHandle<Value>,
    /// The thread's latest stats (per-capture part), refreshed every second.
    snap: Arc<Mutex<Value>>,
}

/// Stats sections that come from state shared by every capture thread (taken once, not added).
/// `events.anomaly` mixes both: the thread's own anomalies are added from `front.anomaly`.
const SHARED: &[&str] = &[
    "engine",
    "drops",
    "fleet",
    "interfaces",
    "events.alert",
    "events.entity",
    "events.endpoint",
    "events.stats",
    "events.anomaly",
    "front",
];

/// Add the numbers of `src` into `dst`, key by key (other values: `src` wins), skipping the
/// shared sections.
fn add_stats(dst: &mut Value, src: &Value, path: &str) {
    let (Value::Object(d), Value::Object(s)) = (&mut *dst, src) else {
        return;
    };
    for (k, v) in s {
        let p = if path.is_empty() {
            k.clone()
        } else {
            format!("{path}.{k}")
        };
        if SHARED.contains(&p.as_str()) {
            continue;
        }
        match (d.get_mut(k), v) {
            (Some(Value::Number(a)), Value::Number(b)) => {
                let sum = match (a.as_u64(), b.as_u64()) {
                    (Some(x), Some(y)) => json!(x.saturating_add(y)),
                    _ => json!(a.as_f64().unwrap_or(0.0) + b.as_f64().unwrap_or(0.0)),
                };
                d.insert(k.clone(), sum);
            }
            (Some(a @ Value::Object(_)), Value::Object(_)) => add_stats(a, v, &p),
            _ => {
                d.insert(k.clone(), v.clone());
            }
        }
    }
}

fn wall_ns() -> Ts {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as Ts)
        .unwrap_or(0)
}

#[allow(clippy::too_many_arguments)]
fn ring_loop(
    mut ring: Ring,
    cfg: Config,
    mut front: Pipeline,
    stop: Arc<AtomicBool>,
    rc: Arc<RingCounters>,
    snap: Arc<Mutex<Value>>,
) -> Value {
    let mut cap = Capture::new(&cfg);
    cap.packet_time_stats = false;
    let tmo = cfg.capture.block_timeout_ms as i32;
    let mut last_tick = Instant::now();
    let mut last_stats = Instant::now();
    let mut failed = false;
    let mut stop_at: Option<Instant> = None;
    let read_stats = |ring: &mut Ring| {
        let (p, d, f) = ring.read_stats();
        rc.received.fetch_add(p, Ordering::Relaxed);
        rc.kernel_dropped.fetch_add(d, Ordering::Relaxed);
        rc.freeze_q.fetch_add(f, Ordering::Relaxed);
    };
    loop {
        // On stop, read what the ring already holds (a block that is not full is handed over
        // after the block timeout), at most 2 s on a wire that does not go quiet.
        if stop_at.is_none() && stop.load(Ordering::Relaxed) {
            stop_at = Some(Instant::now());
        }
        let wait = if stop_at.is_some() { tmo + 50 } else { 100 };
        let n = ring.next_block(wait, &mut |f| {
            if !failed && cap.packet(f, &mut front).is_err() {
                failed = true;
            }
        });
        rc.packets.fetch_add(n as u64, Ordering::Relaxed);
        if let Some(t) = stop_at
            && (n == 0 || t.elapsed() >= Duration::from_secs(2))
        {
            break;
        }
        if failed {
            warn!("af_packet capture thread: the pipeline closed; stopping");
            break;
        }
        if last_tick.elapsed() >= Duration::from_millis(200) {
            last_tick = Instant::now();
            // Idle flows time out on the clock too when the wire goes quiet.
            let now = wall_ns();
            if now > cap.last_ts + 1_000_000_000 {
                cap.flows.sweep(now.max(cap.last_ts), &mut cap.out);
                let _ = cap.forward(&mut front);
            }
            let _ = front.flush();
        }
        if last_stats.elapsed() >= Duration::from_secs(1) {
            last_stats = Instant::now();
            read_stats(&mut ring);
            if let Ok(mut s) = snap.lock() {
                *s = thread_stats(&cap, &front);
            }
        }
    }
    read_stats(&mut ring);
    let ts = cap.last_ts;
    cap.flows.flush_all(ts, &mut cap.out);
    // At shutdown nothing more is dropped: wait for the workers.
    front.mode = Mode::Replay;
    let _ = cap.forward(&mut front);
    let _ = front.flush();
    let mut v = thread_stats(&cap, &front);
    v["last_ts"] = json!(ts);
    v
}

/// `stats.interfaces`: per interface the totals of its rings (the keys libpcap's readers have,
/// so the metrics are the same series) and each ring's own counters: packets read, the
/// socket's `tp_packets`, `tp_drops` and `tp_freeze_q_cnt`, and, from the thread's latest
/// snapshot, the flows it tracked and those it saw from one direction only (both directions of
/// a connection hashed to one ring leave none that the capture itself does not have).
fn interfaces(cfg: &Config, counters: &[Arc<RingCounters>], snaps: &[Value]) -> Value {
    let k = cfg.capture.threads.max(1);
    let m: serde_json::Map<String, Value> = cfg
        .capture
        .interfaces
        .iter()
        .enumerate()
        .map(|(ii, name)| {
            let mut total = [0u64; 4];
            let rings: Vec<Value> = (ii * k..(ii + 1) * k)
                .map(|i| {
                    let c = counters.get(i).map_or([0; 4], |c| c.get());
                    for (t, x) in total.iter_mut().zip(c) {
                        *t += x;
                    }
                    let flow = snaps.get(i).map_or(&Value::Null, |s| &s["flow"]);
                    json!({
                        "packets": c[0], "received": c[1], "kernel_dropped": c[2], "freeze_q_cnt": c[3],
                        "flows": flow["created"].as_u64().unwrap_or(0),
                        "one_way_flows": flow["one_way"].as_u64().unwrap_or(0),
                    })
                })
                .collect();
            let v = json!({
                "method": "af_packet",
                "threads": k,
                "packets": total[0],
                "received": total[1],
                "kernel_dropped": total[2],
                "freeze_q_cnt": total[3],
                "if_dropped": 0,
                "queue_dropped": 0,
                "rings": rings,
            });
            (name.clone(), v)
        })
        .collect();
    Value::Object(m)
}

fn thread_stats(cap: &Capture, front: &Pipeline) -> Value {
    let mut v = cap.stats(front, None);
    v["front"] = json!({"anomaly": front.counts.anomaly, "tls": front.counts.tls});
    v
}

pub(super) fn live(cfg: &Config, sig: &Signals, mut metrics: Option<&mut MetricsFeed>) -> Result<Summary, AppError> {
    let k = cfg.capture.threads.max(1);
    let rc = cfg.capture.ring();
    // Every ring is opened before anything starts, so a bad interface fails the run at once.
    let mut rings = Vec::new();
    for (ii, iface) in cfg.capture.interfaces.iter().enumerate() {
        let g = fanout_group(ii);
        for _ in 0..k {
            rings.push((
                ii,
                Ring::open(iface, &rc, &cfg.capture.bpf, g).map_err(AppError::Input)?,
            ));
        }
    }
    // Ring i is thread i % k of interface i / k.
    let counters: Vec<Arc<RingCounters>> = rings.iter().map(|_| Arc::default()).collect();
    let mut p = Pipeline::start(cfg, Mode::Live, sig.reopen.clone())?;
    if let Some(u) = &cfg.user {
        drop_privileges(u)?;
        info!("running as user {u}");
    }
    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    for (i, (_, ring)) in rings.into_iter().enumerate() {
        let snap = Arc::new(Mutex::new(Value::Null));
        let (front, c, st, rc, sn) = (
            p.front(cfg),
            cfg.clone(),
            stop.clone(),
            counters[i].clone(),
            snap.clone(),
        );
        let handle = std::thread::Builder::new()
            .name(format!("apitap-ring-{i}"))
            .spawn(move || ring_loop(ring, c, front, st, rc, sn))
            .map_err(|e| AppError::Usage(format!("cannot start a capture thread: {e}")))?;
        threads.push(RingThread { handle, snap });
    }
    info!(
        "capturing on {} (af_packet, {k} thread{} per interface)",
        cfg.capture.interfaces.join(", "),
        if k == 1 { "" } else { "s" }
    );
    let base = Capture::new(cfg);
    let merged = |p: &Pipeline, snaps: &[Value]| -> Value {
        let mut v = base.stats(p, None);
        let mut anomalies = v["events"]["anomaly"].as_u64().unwrap_or(0);
        for s in snaps {
            add_stats(&mut v, s, "");
            anomalies += s["front"]["anomaly"].as_u64().unwrap_or(0);
        }
        v["events"]["anomaly"] = json!(anomalies);
        if let Value::Object(m) = &mut v {
            m.remove("last_ts");
        }
        v["interfaces"] = interfaces(cfg, &counters, snaps);
        v
    };
    let iv = Duration::from_secs(cfg.stats_interval_s);
    let mut next_stats = Instant::now() + iv;
    let snap_iv = Duration::from_secs(cfg.snapshot_interval_s.max(1));
    let mut next_snapshot = Instant::now() + snap_iv;
    let mut res = Ok(());
    while !sig.stop.load(Ordering::Relaxed) && threads.iter().all(|t| !t.handle.is_finished()) {
        std::thread::sleep(Duration::from_millis(100));
        if sig.poll_hup() {
            p.reload_rules(cfg);
        }
        if cfg.profile && cfg.snapshot_interval_s > 0 && Instant::now() >= next_snapshot {
            next_snapshot = Instant::now() + snap_iv;
            if let Err(e) = p.tick(wall_ns()) {
                res = Err(e);
                break;
            }
        }
        let snaps = || -> Vec<Value> {
            threads
                .iter()
                .map(|t| t.snap.lock().map(|v| v.clone()).unwrap_or(Value::Null))
                .collect()
        };
        if let Some(m) = metrics.as_deref_mut() {
            m.feed(|| merged(&p, &snaps()));
        }
        if cfg.stats_interval_s > 0 && Instant::now() >= next_stats {
            next_stats = Instant::now() + iv;
            let stats = merged(&p, &snaps());
            if let Err(e) = p.push(Event::Stats { ts: wall_ns(), stats }) {
                res = Err(e);
                break;
            }
            let _ = p.flush();
        }
    }
    stop.store(true, Ordering::Relaxed);
    sig.stop.store(true, Ordering::Relaxed);
    let finals: Vec<Value> = threads
        .into_iter()
        .map(|t| t.handle.join().unwrap_or(Value::Null))
        .collect();
    let ts = finals
        .iter()
        .filter_map(|v| v["last_ts"].as_u64())
        .max()
        .unwrap_or(0)
        .max(wall_ns());
    p.last_ts = ts;
    let mut stats = Value::Null;
    let main_counts = p.counts;
    let counters = p.counters.clone();
    let fin = p.finish(|p| {
        stats = merged(p, &finals);
        Event::Stats {
            ts,
            stats: stats.clone(),
        }
    });
    res?;
    let catalog = fin?;
    let n = |v: &Value| v.as_u64().unwrap_or(0);
    let events = EventCounts {
        http: n(&stats["events"]["http"]),
        anomaly: finals.iter().map(|v| n(&v["front"]["anomaly"])).sum(),
        stats: main_counts.stats + 1,
        tls: finals.iter().map(|v| n(&v["front"]["tls"])).sum(),
    };
    info!("stopped capture on {}", cfg.capture.interfaces.join(", "));
    Ok(Summary {
        catalog,
        packets: n(&stats["capture"]["packets"]),
        bytes: n(&stats["capture"]["bytes"]),
        transactions: n(&stats["http"]["transactions"]),
        events,
        truncated_files: 0,
        seconds: base.started.elapsed().as_secs_f64(),
        stats,
        top_entities: {
            let mut t = counters.top_entities.lock().map(|t| t.clone()).unwrap_or_default();
            t.sort_by(|a, b| b.risk.total_cmp(&a.risk).then_with(|| a.value.cmp(&b.value)));
            t.truncate(5);
            t
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thread_stats_add_up_but_shared_sections_do_not() {
        let mut a = json!({"capture": {"packets": 3}, "engine": {"rule_matches": 7},
            "events": {"http": 2, "alert": 1}, "decoder": {"checksum_validation": "auto"}});
        let b = json!({"capture": {"packets": 4}, "engine": {"rule_matches": 7},
            "events": {"http": 5, "alert": 1}, "decoder": {"checksum_validation": "on"}});
        add_stats(&mut a, &b, "");
        assert_eq!(a["capture"]["packets"], 7);
        assert_eq!(a["events"]["http"], 7);
        assert_eq!(a["events"]["alert"], 1);
        assert_eq!(a["engine"]["rule_matches"], 7);
        assert_eq!(a["decoder"]["checksum_validation"], "on");
    }
}
