//! Fleet state through Redis (`[fleet] redis = "redis://HOST:PORT"`): sensors that see one
//! attacker count it as one attacker and alert once.
//!
//! What is shared today:
//! - distinct counts of the distinct-count rules (credential stuffing: user names per client;
//!   object enumeration...): each hit adds its value's hash to a HyperLogLog per (rule,
//!   entity, window bucket) (`PFADD`), and the fleet-wide count is the union of this bucket
//!   and the one before (`PFCOUNT`), so a window of W seconds is counted over 1 to 2 W;
//! - the alert claim: an episode alerts once across the fleet. Before an alert is written the
//!   fleet thread runs [`CLAIM`] (a Lua script, atomic in Redis) on `PREFIX:claim:KEY`: the
//!   first alert of an episode takes it, later ones of the same episode (by packet time and
//!   the rule's quiet period) are dropped (`suppressed`), escalations within an episode too;
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
            sha: String::new(),
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
    /// SHA1 of [`CLAIM`], loaded at each connect.
    sha: String,
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
            let first = match rx.recv_timeout(Duration::from_millis(500)) {
                Ok(m) => m,
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                    if self.con.is_none() && Instant::now() >= self.retry_at {
                        self.connect();
                    }
                    continue;
                }
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
            };
            // Whatever else is queued goes in the same round trips.
            let mut batch = vec![first];
            while batch.len() < BATCH {
                match rx.try_recv() {
                    Ok(m) => batch.push(m),
                    Err(_) => break,
                }
            }
            if self.con.is_none() && Instant::now() >= self.retry_at {
                self.connect();
            }
            let r = match self.con.as_mut() {
                Some(c) => settle(c, &self.sha, &batch, &self.prefix, &self.sensor, &self.counters),
                None => Err(None),
            };
            match r {
                Ok(claims) => {
                    self.counters.shared.fetch_add(batch.len() as u64, Ordering::Relaxed);
                    for (alert, fleet) in claims {
                        self.counters.claimed.fetch_add(1, Ordering::Relaxed);
                        self.emit(&alert, Some(fleet));
                    }
                }
                Err(e) => {
                    if let Some(e) = e {
                        self.down(&e.to_string());
                    }
                    self.counters
                        .unavailable
                        .fetch_add(batch.len() as u64, Ordering::Relaxed);
                    for m in batch {
                        match m {
                            Msg::Alert(a) => self.emit(&a, None),
                            Msg::Hit(h) if h.fire => self.emit(&h.alert, None),
                            Msg::Hit(_) => {}
                        }
                    }
                }
            }
        }
    }

    fn connect(&mut self) {
        let con = self
            .client
            .get_connection_with_timeout(Duration::from_secs(1))
            .and_then(|mut c| {
                c.set_read_timeout(Some(Duration::from_secs(1)))?;
                c.set_write_timeout(Some(Duration::from_secs(1)))?;
                let sha: String = redis::cmd("SCRIPT").arg("LOAD").arg(CLAIM).query(&mut c)?;
                Ok((c, sha))
            });
        match con {
            Ok((c, sha)) => {
                self.sha = sha;
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

/// The episode claim, atomic in Redis. The key holds `LAST COUNT SENSOR`: the packet time (ms)
/// of the episode's latest alert or claim attempt, the count of the alert that took it, and the
/// sensor that alerted. An alert whose episode began after LAST + quiet opens a new episode and
/// takes the claim (1). Within the episode only an escalation gets through: a sensor's own
/// engine alerts again when its count grew (4x by default), so an alert that may escalate
/// (ARGV[7] = 1) with at least twice the alerted count takes the claim again; anything else is
/// already alerted (0) and only moves LAST on. Packet time, not the key's expiry, ends an
/// episode, so a replay of hours of traffic in seconds keeps its episodes apart; the expiry
/// only clears idle keys.
const CLAIM: &str = r#"
local v = redis.call('GET', KEYS[1])
local first, last, quiet = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local count, esc = tonumber(ARGV[6]), ARGV[7] == '1'
if v then
  local a, b, who = string.match(v, '^(%d+) (%d+) (.*)$')
  local held, n = tonumber(a) or 0, tonumber(b) or 0
  if first <= held + quiet and not (esc and count >= 2 * n) then
    if last > held then
      redis.call('SET', KEYS[1], ARGV[3] .. ' ' .. b .. ' ' .. who, 'PX', ARGV[5])
    end
    return 0
  end
end
redis.call('SET', KEYS[1], ARGV[3] .. ' ' .. ARGV[6] .. ' ' .. ARGV[1], 'PX', ARGV[5])
return 1
"#;

/// An alert asking for its episode's claim: (alert, may escalate, quiet ms, key hash,
/// fleet-wide count, the count it stands for).
type Claim<'a> = (&'a Alert, bool, u64, String, Option<u64>, u64);

/// Messages settled per round trip at most.
const BATCH: usize = 256;

/// Settle a batch of messages with Redis in at most two pipelined round trips: the distinct
/// counts first, then the claims of the alerts and of the hits over the fleet threshold.
/// Returns the alerts this sensor claimed (to write, with the fleet's view); Err: Redis
/// failed (Some) or is down (None).
fn settle(
    c: &mut redis::Connection,
    sha: &str,
    batch: &[Msg],
    prefix: &str,
    sensor: &str,
    n: &FleetCounters,
) -> Result<Vec<(Box<Alert>, serde_json::Value)>, Option<io::Error>> {
    let err = |e: redis::RedisError| Some(io::Error::other(e.to_string()));
    let rk_of = |a: &Alert| key_hash(&[&a.rule_id, &a.sid.to_string(), &a.key.kind, &a.key.value]);
    // 1. distinct counts: per (rule, entity, bucket) key of the batch, one PFADD of all its
    // values, the fleet-wide count after them, and the expiries.
    let mut keys: Vec<(String, String, String, u64, Vec<String>)> = Vec::new(); // cur, prev, rk, keep ms, values
    let mut key_of: Vec<usize> = Vec::new(); // per hit, its index in keys
    for m in batch {
        let Msg::Hit(h) = m else { continue };
        let a = &h.alert;
        let rk = rk_of(a);
        let w = h.window_ns.max(1_000_000_000);
        let bucket = a.last / w;
        let cur = format!("{prefix}:hll:{rk}:{bucket}");
        let i = match keys.iter().position(|k| k.0 == cur) {
            Some(i) => i,
            None => {
                let prev = format!("{prefix}:hll:{rk}:{}", bucket.saturating_sub(1));
                keys.push((cur, prev, rk, 2 * ms(w) + 60_000, Vec::new()));
                keys.len() - 1
            }
        };
        keys[i].4.push(format!("{:016x}", h.distinct));
        key_of.push(i);
    }
    let mut pipe = redis::pipe();
    for (cur, prev, rk, keep, values) in &keys {
        let sensors = format!("{prefix}:sensors:{rk}");
        pipe.cmd("PFADD")
            .arg(cur)
            .arg(values)
            .ignore()
            .cmd("PEXPIRE")
            .arg(cur)
            .arg(*keep)
            .ignore()
            .cmd("PFCOUNT")
            .arg(cur)
            .arg(prev)
            .cmd("SADD")
            .arg(&sensors)
            .arg(sensor)
            .ignore()
            .cmd("PEXPIRE")
            .arg(&sensors)
            .arg(*keep)
            .ignore();
    }
    let counts: Vec<u64> = if keys.is_empty() {
        Vec::new()
    } else {
        n.round_trips.fetch_add(1, Ordering::Relaxed);
        pipe.query(c).map_err(err)?
    };
    // 2. claims: (alert, may escalate, quiet ms, key hash, fleet-wide count, count it stands
    // for). A hit over the
    // fleet threshold asks once per key and batch; an alert of the local engine always asks.
    // (A key whose local window crossed in this batch claims with that alert instead.)
    let mut claims: Vec<Claim<'_>> = Vec::new();
    let mut asked: Vec<usize> = batch
        .iter()
        .filter_map(|m| match m {
            Msg::Hit(h) => Some(h),
            _ => None,
        })
        .zip(&key_of)
        .filter(|(h, _)| h.fire)
        .map(|(_, i)| *i)
        .collect();
    let mut hit_no = 0;
    for m in batch {
        match m {
            Msg::Hit(h) => {
                let i = key_of[hit_no];
                hit_no += 1;
                let count = counts.get(i).copied().unwrap_or(0);
                let over = count > h.threshold && !asked.contains(&i);
                if h.fire || over {
                    if !h.fire {
                        asked.push(i);
                    }
                    let w = h.window_ns.max(1_000_000_000);
                    // A claim over the fleet threshold stands for a local crossing (threshold
                    // + 1 hits) when a later local alert asks whether it escalates.
                    let n_alerted = if h.fire {
                        h.alert.count
                    } else {
                        h.alert.count.max(h.threshold + 1)
                    };
                    claims.push((
                        &h.alert,
                        h.fire,
                        ms(h.quiet_ns.max(w)),
                        keys[i].2.clone(),
                        Some(count),
                        n_alerted,
                    ));
                }
            }
            Msg::Alert(a) => claims.push((
                a,
                true,
                ((a.window_s * 1000.0) as u64).max(1000),
                rk_of(a),
                None,
                a.count,
            )),
        }
    }
    if claims.is_empty() {
        return Ok(Vec::new());
    }
    let mut pipe = redis::pipe();
    for (alert, fire, quiet_ms, rk, _, n_alerted) in &claims {
        let sensors = format!("{prefix}:sensors:{rk}");
        // Idle keys go after the quiet period or 10 minutes of wall time, whichever is longer.
        let px = (*quiet_ms).max(600_000);
        pipe.cmd("SADD")
            .arg(&sensors)
            .arg(sensor)
            .ignore()
            .cmd("EVALSHA")
            .arg(sha)
            .arg(1)
            .arg(format!("{prefix}:claim:{rk}"))
            .arg(sensor)
            .arg(alert.first / 1_000_000)
            .arg(alert.last / 1_000_000)
            .arg(*quiet_ms)
            .arg(px)
            .arg(*n_alerted)
            .arg(if *fire { "1" } else { "0" })
            .cmd("SMEMBERS")
            .arg(&sensors);
    }
    n.round_trips.fetch_add(1, Ordering::Relaxed);
    let replies: Vec<redis::Value> = pipe.query(c).map_err(err)?;
    let mut out = Vec::new();
    for ((alert, _, _, _, count, _), pair) in claims.iter().zip(replies.chunks(2)) {
        let [got, names] = pair else { break };
        let bad = |e: redis::ParsingError| Some(io::Error::other(e.to_string()));
        let got: i64 = redis::from_redis_value(got.clone()).map_err(bad)?;
        if got != 1 {
            n.suppressed.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let mut names: Vec<String> = redis::from_redis_value(names.clone()).map_err(bad)?;
        names.sort();
        let mut a = Box::new((*alert).clone());
        if let Some(c) = count
            && a.distinct.is_some()
        {
            a.distinct = Some(a.distinct.unwrap_or(0).max(*c));
            a.distinct_estimated = true;
        }
        let info = json!({"sensors": names, "claimed_by": sensor, "distinct": count});
        out.push((a, info));
    }
    Ok(out)
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
