//! Fleet state through Redis (`[fleet] redis = "redis://HOST:PORT"`): sensors that see one
//! attacker count it as one attacker and alert once.
//!
//! What is shared today:
//! - distinct counts of the distinct-count rules (credential stuffing: user names per client;
//!   object enumeration...): each hit adds its value's hash to a HyperLogLog per (rule,
//!   entity, window bucket) (`PFADD`), and the fleet-wide count is the union of this bucket
//!   and the one before (`PFCOUNT`), so a window of W seconds is counted over 1 to 2 W;
//! - the alert claim: an episode alerts once across the fleet. Before an alert is written the
//!   fleet thread takes `SET PREFIX:claim:KEY SENSOR NX PX T` (T: the rule's window or quiet
//!   period, at least 60 s); a sensor that does not get it drops its alert (`suppressed`);
//! - the sensors that saw the entity (`SADD`), listed in the alert's `indicator.fleet.sensors`.
//!
//! Nothing of this runs on a capture or worker thread: a worker hands a hit or an alert to
//! the one fleet thread over a bounded queue and moves on (a replay waits instead, so it is
//! exact). Each message costs one pipelined round trip, two when it claims.
//!
//! Redis unreachable or failing: the sensor goes on with its local state (its own alerts are
//! written as they are; hits below the local threshold are not shared), counts
//! `fleet.unavailable`, logs once, and reconnects with backoff (100 ms doubling to 30 s).
//! Keys are hashes of the rule and the entity (`PREFIX:hll:...`, `PREFIX:claim:...`,
//! `PREFIX:sensors:...`) and members are hashes of the values: no user name, address or
//! token is stored in Redis in the clear.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError, bounded};
use serde_json::json;
use tracing::{info, warn};

use crate::app::Mode;
use crate::engine::Alert;
use crate::event::Formatter;
use crate::sink::{Batch, SinkHandle};
use crate::worker::WorkerCounters;

/// `[fleet]` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetConfig {
    /// `redis://[:PASSWORD@]HOST:PORT[/DB]`; none: fleet off.
    pub redis: Option<String>,
    /// Messages queued for the fleet thread (live: a full queue is counted, not waited for).
    pub queue: usize,
    /// Prefix of every key, so several fleets can share one Redis.
    pub prefix: String,
}

impl Default for FleetConfig {
    fn default() -> Self {
        FleetConfig {
            redis: None,
            queue: 4096,
            prefix: "apitap".into(),
        }
    }
}

/// Check a fleet Redis URL (one line naming what is wrong).
pub fn check_url(url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("redis://")
        .ok_or_else(|| format!("{:?} is not a redis://HOST:PORT URL", redact_url(url)))?;
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    match hostport.rsplit_once(':') {
        Some((h, p)) if !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0) => {}
        _ => return Err(format!("{:?}: the address is not HOST:PORT", redact_url(url))),
    }
    redis::Client::open(url)
        .map(|_| ())
        .map_err(|e| format!("{:?}: {e}", redact_url(url)))
}

/// The URL without its password, for messages.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(a)) if a > s => format!("{}***{}", &url[..s + 3], &url[a..]),
        _ => url.to_string(),
    }
}

/// A distinct-count hit, with the alert it would raise.
#[derive(Debug)]
pub struct FleetHit {
    pub alert: Box<Alert>,
    /// The local window crossed its threshold: an alert even without the fleet.
    pub fire: bool,
    /// Hash of the distinct value.
    pub distinct: u64,
    pub window_ns: u64,
    /// The rule alerts above this many distinct values.
    pub threshold: u64,
    pub quiet_ns: u64,
}

/// Counters for `stats.fleet`.
#[derive(Debug, Default)]
pub struct FleetCounters {
    /// Hits and alerts settled through Redis.
    pub shared: AtomicU64,
    /// Messages handled with local state only, Redis being unreachable or failing.
    pub unavailable: AtomicU64,
    /// Messages not handed to the fleet thread: its queue was full (live).
    pub queue_full: AtomicU64,
    /// Alerts this sensor claimed and wrote.
    pub claimed: AtomicU64,
    /// Alerts dropped: another sensor (or an earlier alert here) holds the episode's claim.
    pub suppressed: AtomicU64,
    pub round_trips: AtomicU64,
    pub reconnects: AtomicU64,
}

impl FleetCounters {
    pub fn json(&self) -> serde_json::Value {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        json!({
            "shared": l(&self.shared), "unavailable": l(&self.unavailable), "queue_full": l(&self.queue_full),
            "claimed": l(&self.claimed), "suppressed": l(&self.suppressed), "round_trips": l(&self.round_trips),
            "reconnects": l(&self.reconnects),
        })
    }
}

enum Msg {
    Hit(FleetHit),
    Alert(Box<Alert>),
}

/// The worker side: a queue to the fleet thread.
pub struct Fleet {
    tx: Option<Sender<Msg>>,
    thread: Option<JoinHandle<()>>,
    mode: Mode,
    pub counters: Arc<FleetCounters>,
}

/// Where the fleet thread writes the alerts it raises.
pub struct Output {
    pub fmt: Arc<Formatter>,
    pub sinks: Arc<Vec<SinkHandle>>,
    pub mode: Mode,
    pub counters: Arc<WorkerCounters>,
}

impl Fleet {
    /// Start the fleet thread. Redis being down is not an error (the thread retries); a bad
    /// URL is.
    pub fn start(cfg: &FleetConfig, sensor: &str, out: Output) -> Result<Fleet, String> {
        let url = cfg.redis.clone().ok_or("fleet: no redis URL")?;
        check_url(&url).map_err(|e| format!("fleet.redis: {e}"))?;
        let client = redis::Client::open(url.as_str()).map_err(|e| format!("fleet.redis: {e}"))?;
        let (tx, rx) = bounded(cfg.queue.max(1));
        let counters = Arc::new(FleetCounters::default());
        let mode = out.mode;
        let st = Thread {
            client,
            name: redact_url(&url),
            sensor: sensor.to_string(),
            prefix: cfg.prefix.clone(),
            out,
            counters: counters.clone(),
            con: None,
            backoff: Duration::from_millis(100),
            retry_at: Instant::now(),
            down_logged: false,
            ever_up: false,
        };
        let thread = std::thread::Builder::new()
            .name("apitap-fleet".into())
            .spawn(move || st.run(rx))
            .map_err(|e| format!("fleet: cannot start its thread: {e}"))?;
        Ok(Fleet {
            tx: Some(tx),
            thread: Some(thread),
            mode,
            counters,
        })
    }

    fn send(&self, m: Msg) -> Result<(), Msg> {
        let Some(tx) = &self.tx else { return Err(m) };
        if self.mode == Mode::Replay {
            return tx.send(m).map_err(|e| e.0);
        }
        tx.try_send(m).map_err(|e| match e {
            TrySendError::Full(m) | TrySendError::Disconnected(m) => m,
        })
    }

    /// Hand a distinct-count hit over. Returns its alert when it must be written here (the
    /// queue was full and the local window crossed).
    pub fn hit(&self, h: FleetHit) -> Option<Box<Alert>> {
        match self.send(Msg::Hit(h)) {
            Ok(()) => None,
            Err(Msg::Hit(h)) => {
                self.counters.queue_full.fetch_add(1, Ordering::Relaxed);
                h.fire.then_some(h.alert)
            }
            Err(Msg::Alert(a)) => Some(a),
        }
    }

    /// Hand an alert over for its claim. Returns it when it must be written here.
    pub fn alert(&self, a: Box<Alert>) -> Option<Box<Alert>> {
        match self.send(Msg::Alert(a)) {
            Ok(()) => None,
            Err(Msg::Alert(a)) => {
                self.counters.queue_full.fetch_add(1, Ordering::Relaxed);
                Some(a)
            }
            Err(Msg::Hit(h)) => Some(h.alert),
        }
    }
}

impl Drop for Fleet {
    /// Let the fleet thread settle what is queued (so a replay's alerts come before its last
    /// stats), then join it.
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Thread {
    client: redis::Client,
    name: String,
    sensor: String,
    prefix: String,
    out: Output,
    counters: Arc<FleetCounters>,
    con: Option<redis::Connection>,
    backoff: Duration,
    retry_at: Instant,
    down_logged: bool,
    ever_up: bool,
}

/// A short stable hash of the key parts (no value in the clear in Redis).
fn key_hash(parts: &[&str]) -> String {
    let mut h = sha1_smol::Sha1::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update(&[0]);
    }
    h.digest().to_string()[..20].to_string()
}

impl Thread {
    fn run(mut self, rx: Receiver<Msg>) {
        self.connect();
        loop {
            let m = match rx.recv_timeout(Duration::from_millis(500)) {
                Ok(m) => m,
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                    if self.con.is_none() {
                        self.connect();
                    }
                    continue;
                }
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
            };
            if self.con.is_none() && Instant::now() >= self.retry_at {
                self.connect();
            }
            let r = match self.con.as_mut() {
                Some(c) => settle(c, &m, &self.prefix, &self.sensor, &self.counters),
                None => Err(None),
            };
            match r {
                Ok(Some((alert, fleet))) => {
                    self.counters.shared.fetch_add(1, Ordering::Relaxed);
                    self.counters.claimed.fetch_add(1, Ordering::Relaxed);
                    self.emit(&alert, Some(fleet));
                }
                Ok(None) => {
                    self.counters.shared.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    if let Some(e) = e {
                        self.down(&e.to_string());
                    }
                    self.counters.unavailable.fetch_add(1, Ordering::Relaxed);
                    match m {
                        Msg::Alert(a) => self.emit(&a, None),
                        Msg::Hit(h) if h.fire => self.emit(&h.alert, None),
                        Msg::Hit(_) => {}
                    }
                }
            }
        }
    }

    fn connect(&mut self) {
        match self.client.get_connection_with_timeout(Duration::from_secs(1)) {
            Ok(c) => {
                let _ = c.set_read_timeout(Some(Duration::from_secs(1)));
                let _ = c.set_write_timeout(Some(Duration::from_secs(1)));
                if self.ever_up {
                    info!("fleet: redis {} is back; sharing again", self.name);
                    self.counters.reconnects.fetch_add(1, Ordering::Relaxed);
                } else {
                    info!("fleet: sharing state through redis {}", self.name);
                }
                self.ever_up = true;
                self.down_logged = false;
                self.backoff = Duration::from_millis(100);
                self.con = Some(c);
            }
            Err(e) => self.down(&e.to_string()),
        }
    }

    /// Redis failed: local state from here on, one log line per outage, retry with backoff.
    fn down(&mut self, why: &str) {
        self.con = None;
        if !self.down_logged {
            warn!(
                "fleet: redis {} unavailable ({why}); going on with local state, retrying",
                self.name
            );
            self.down_logged = true;
        }
        self.retry_at = Instant::now() + self.backoff;
        self.backoff = (self.backoff * 2).min(Duration::from_secs(30));
    }

    /// Write one alert to every sink, with what the fleet knows about it.
    fn emit(&self, a: &Alert, fleet: Option<serde_json::Value>) {
        let mut buf = Vec::new();
        self.out.fmt.write_alert(a, &mut buf);
        if buf.is_empty() {
            return; // alerts not among output.types
        }
        // The fleet's view goes under `indicator.fleet` (apitap's own key, SPEC §5).
        if let Some(f) = fleet
            && let Ok(mut v) = serde_json::from_slice::<serde_json::Value>(&buf)
            && v["indicator"].is_object()
        {
            v["indicator"]["fleet"] = f;
            buf = v.to_string().into_bytes();
            buf.push(b'\n');
        }
        self.out.counters.alert.fetch_add(1, Ordering::Relaxed);
        let events = memchr::memchr_iter(b'\n', &buf).count() as u64;
        let b = Arc::new(Batch { bytes: buf, events });
        for s in self.out.sinks.iter() {
            s.send(&b, self.out.mode == Mode::Replay);
        }
    }
}

fn ms(ns: u64) -> u64 {
    (ns / 1_000_000).max(1)
}

/// Settle one message with Redis. Ok(Some(alert, fleet info)): this sensor claimed the episode
/// and writes the alert; Ok(None): nothing to write (below the fleet threshold, or claimed
/// elsewhere); Err: Redis failed (Some) or is down (None).
fn settle(
    c: &mut redis::Connection,
    m: &Msg,
    prefix: &str,
    sensor: &str,
    n: &FleetCounters,
) -> Result<Option<(Box<Alert>, serde_json::Value)>, Option<io::Error>> {
    let err = |e: redis::RedisError| Some(io::Error::other(e.to_string()));
    let (alert, fire, claim_ms, rk, count) = match m {
        Msg::Hit(h) => {
            let a = &h.alert;
            let rk = key_hash(&[&a.rule_id, &a.key.kind, &a.key.value]);
            let w = h.window_ns.max(1_000_000_000);
            let bucket = a.last / w;
            let cur = format!("{prefix}:hll:{rk}:{bucket}");
            let prev = format!("{prefix}:hll:{rk}:{}", bucket.saturating_sub(1));
            let sensors = format!("{prefix}:sensors:{rk}");
            let keep = 2 * ms(w) + 60_000;
            let (count,): (u64,) = redis::pipe()
                .cmd("PFADD")
                .arg(&cur)
                .arg(format!("{:016x}", h.distinct))
                .ignore()
                .cmd("PEXPIRE")
                .arg(&cur)
                .arg(keep)
                .ignore()
                .cmd("PFCOUNT")
                .arg(&cur)
                .arg(&prev)
                .cmd("SADD")
                .arg(&sensors)
                .arg(sensor)
                .ignore()
                .cmd("PEXPIRE")
                .arg(&sensors)
                .arg(keep)
                .ignore()
                .query(c)
                .map_err(err)?;
            n.round_trips.fetch_add(1, Ordering::Relaxed);
            (a, h.fire, ms(w.max(h.quiet_ns)).max(60_000), rk, Some(count))
        }
        Msg::Alert(a) => {
            let rk = key_hash(&[&a.rule_id, &a.key.kind, &a.key.value]);
            let w = (a.window_s * 1000.0) as u64;
            (a, true, w.max(60_000), rk, None)
        }
    };
    let over = match (m, count) {
        (Msg::Hit(h), Some(c)) => c > h.threshold,
        _ => false,
    };
    if !fire && !over {
        return Ok(None);
    }
    let claim = format!("{prefix}:claim:{rk}");
    let sensors = format!("{prefix}:sensors:{rk}");
    let (got, mut names): (Option<String>, Vec<String>) = redis::pipe()
        .cmd("SADD")
        .arg(&sensors)
        .arg(sensor)
        .ignore()
        .cmd("SET")
        .arg(&claim)
        .arg(sensor)
        .arg("NX")
        .arg("PX")
        .arg(claim_ms)
        .cmd("SMEMBERS")
        .arg(&sensors)
        .query(c)
        .map_err(err)?;
    n.round_trips.fetch_add(1, Ordering::Relaxed);
    if got.is_none() {
        n.suppressed.fetch_add(1, Ordering::Relaxed);
        return Ok(None);
    }
    names.sort();
    let mut a = alert.clone();
    if let Some(c) = count
        && a.distinct.is_some()
    {
        a.distinct = Some(a.distinct.unwrap_or(0).max(c));
        a.distinct_estimated = true;
    }
    let info = json!({"sensors": names, "claimed_by": sensor, "distinct": count});
    Ok(Some((a, info)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fleet_urls_are_checked_and_passwords_hidden() {
        assert!(check_url("redis://127.0.0.1:6379").is_ok());
        assert!(check_url("redis://:pw@cache:6380/0").is_ok());
        for bad in ["127.0.0.1:6379", "http://h:1", "redis://h", "redis://:1", "redis://h:0"] {
            assert!(check_url(bad).is_err(), "{bad}");
        }
        let e = check_url("redis://:s3cret@h").unwrap_err();
        assert!(!e.contains("s3cret"), "{e}");
        assert_eq!(redact_url("redis://:s3cret@h:1"), "redis://***@h:1");
    }

    #[test]
    fn key_hashes_hide_the_entity_and_separate_parts() {
        let a = key_hash(&["r", "ip", "10.0.0.1"]);
        assert_eq!(a.len(), 20);
        assert!(!a.contains("10.0.0.1"));
        assert_ne!(key_hash(&["ab", "c"]), key_hash(&["a", "bc"]));
    }
}
