//! Fleet state through Redis (`[fleet] redis = "redis://HOST:PORT"`, or a list of Redis
//! Cluster nodes, see [`con`]): sensors that see one attacker count it as one attacker and
//! alert once.
//!
//! What is shared:
//! - rule windows: a distinct-count rule's hit adds its value's hash to a HyperLogLog per
//!   (rule, entity, window bucket) (`PFADD`); a count-only rule's hits add to a counter
//!   (`INCRBY`). The fleet-wide count is this bucket and the one before (`PFCOUNT` of both,
//!   or the two counters), so a window of W seconds is counted over 1 to 2 W;
//! - the alert claim: an episode alerts once across the fleet. Before an alert is written the
//!   fleet thread runs [`CLAIM`] (a Lua script, atomic in Redis) on `PREFIX:{KEY}:claim`: the
//!   first alert of an episode takes it, later ones of the same episode (by packet time and
//!   the rule's quiet period) are dropped (`suppressed`), escalations within an episode not;
//! - entity risk: each risk increment runs [`RISK`] on `PREFIX:{ENTITY}:risk` (decay by
//!   packet time with the local half-life, add, level with the local hysteresis); the one
//!   increment that crosses a level fleet-wide claims the `risk_threshold` alert;
//! - the sensors that saw the entity (`SADD`), listed in the alert's `indicator.fleet.sensors`
//!   and the `entity` event's `entity.fleet.sensors`.
//!
//! Nothing of this runs on a capture or worker thread: a worker hands a hit or an alert to
//! the one fleet thread over a bounded queue and moves on (a replay waits instead, so it is
//! exact). A batch of messages costs one pipelined round trip, two when it claims.
//!
//! Redis unreachable or failing: the sensor goes on with its local state (its own alerts are
//! written as they are; hits below the local threshold are not shared), counts
//! `fleet.unavailable`, logs once, and reconnects with backoff (100 ms doubling to 30 s).
//! Keys are hashes of the rule and the entity inside a hash tag (`PREFIX:{HASH}:hll:BUCKET`,
//! `...:cnt:BUCKET`, `...:claim`, `...:sensors`, `...:risk`: one cluster slot per rule and
//! entity) and members are hashes of the values: no user name, address or token is stored
//! in Redis in the clear.

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
use crate::engine::entity::EntityReport;
use crate::event::Formatter;
use crate::sink::{Batch, SinkHandle};
use crate::worker::WorkerCounters;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

pub mod con;
pub use con::Target;
use con::{Client, Con, Script};

/// `[fleet]` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetConfig {
    /// `redis://[:PASSWORD@]HOST:PORT[/DB]`, or a list of Redis Cluster nodes; none: fleet off.
    pub redis: Option<Target>,
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

/// A rule window's hit (a distinct-count rule's, or a count-only rule's with a threshold).
/// Most hits are light: the alert they would raise is built only where the fleet thread may
/// need it (a local crossing, and the episode's first hit and every power-of-two count, which
/// the fleet thread keeps as the template of a fleet-wide crossing).
#[derive(Debug)]
pub struct FleetHit {
    /// The alert: always on a local crossing (`fire`), on template hits, else none.
    pub alert: Option<Box<Alert>>,
    /// The rule and entity, as [`hit_id`] names them (the fleet thread's template key).
    pub id: u64,
    /// Packet time of the hit, and the episode's count and distinct count with it.
    pub ts: u64,
    pub count: u64,
    /// Hits this message stands for (light count-only hits of one bucket are merged).
    pub hits: u64,
    pub distinct_count: Option<u64>,
    /// The local window crossed its threshold: an alert even without the fleet.
    pub fire: bool,
    /// Hash of the distinct value; none: a count-only rule (each hit counts).
    pub distinct: Option<u64>,
    pub window_ns: u64,
    /// The rule alerts above this many distinct values (or hits).
    pub threshold: u64,
    pub quiet_ns: u64,
}

/// The id of a rule (by id and sid), entity and window (`per`: a rule counted per endpoint
/// has one per endpoint) in [`FleetHit::id`] (process-local).
pub fn hit_id(rule_id: &str, sid: u64, key: &crate::engine::EntityKey, per: &str) -> u64 {
    local_hash(&(rule_id, sid, &key.kind, &key.value, per))
}

/// Does an episode's hit number `count` carry its alert as the fleet thread's template?
pub fn template_hit(count: u64) -> bool {
    count.is_power_of_two()
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
    /// Hits below the local threshold not sent: their episode is already alerted fleet-wide.
    pub skipped: AtomicU64,
}

impl FleetCounters {
    pub fn json(&self) -> serde_json::Value {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        json!({
            "shared": l(&self.shared), "unavailable": l(&self.unavailable), "queue_full": l(&self.queue_full),
            "claimed": l(&self.claimed), "suppressed": l(&self.suppressed), "round_trips": l(&self.round_trips),
            "reconnects": l(&self.reconnects), "skipped": l(&self.skipped),
        })
    }
}

/// An entity's risk increment (an alert's risk points), shared so that risk spread over
/// sensors adds up to one fleet-wide score with the local engine's decay.
#[derive(Debug)]
pub struct FleetRisk {
    /// Risk points added.
    pub inc: f64,
    /// Packet time of the increment.
    pub ts: u64,
    /// The local engine's `[entity] half_life` and `thresholds`.
    pub half_life_s: f64,
    pub thresholds: Vec<f64>,
    /// The entity's local profile after the increment (for the alert and the `entity`
    /// event written if the fleet-wide score crosses a level here).
    pub report: Box<EntityReport>,
}

/// An endpoint's auth profile as the fleet sees it (every sensor's calls on it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FleetAuth {
    /// Calls with credentials.
    pub authd: u64,
    /// Clients that called it with credentials (estimated).
    pub auth_clients: u64,
    /// Clients that had a 2xx without credentials (estimated).
    pub open_clients: u64,
}

/// What one capture thread learned about an endpoint's auth profile since it last told
/// the fleet.
#[derive(Debug)]
pub struct AuthNote {
    pub endpoint: crate::catalog::EndpointId,
    /// Calls with credentials.
    pub authd: u64,
    /// Clients seen calling with credentials, and with a 2xx without (each listed once).
    pub auth_clients: Vec<std::net::IpAddr>,
    pub open_clients: Vec<std::net::IpAddr>,
}

/// Fleet auth profiles asked for, by the capture thread's key for the endpoint.
pub type AuthAnswer = Vec<(u64, FleetAuth)>;

enum Msg {
    Hit(FleetHit),
    /// Endpoint auth profiles: what a capture thread learned, and the profiles it asks for
    /// (answered on `reply`).
    Auth {
        notes: Vec<AuthNote>,
        ask: Vec<(u64, crate::catalog::EndpointId)>,
        reply: Option<Sender<AuthAnswer>>,
    },
    /// The sensor is done: settle what came before, then end (capture threads' auth links
    /// may still hold the queue).
    Stop,
    /// A worker's messages of one batch of transactions, in order (one queue operation and
    /// one wake-up for all of them).
    Many(Vec<Msg>),
    /// An alert, with the `entity` event that goes with it (a `risk_threshold` alert's).
    Alert(Box<Alert>, Option<Box<EntityReport>>),
    Entity(Box<EntityReport>),
    Risk(FleetRisk),
}

/// The worker side: a queue to the fleet thread.
pub struct Fleet {
    tx: Option<Sender<Msg>>,
    /// The capture threads' auth profile messages: a queue of their own, which the fleet
    /// thread waits on while it gathers a batch (an ask is answered at once; a worker's send
    /// wakes nobody).
    ask_tx: Option<Sender<Msg>>,
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
    /// `hash_key` keys the hashes that name Redis keys and members (the fleet's sensors share
    /// one, as they share `hash_key`).
    pub fn start(cfg: &FleetConfig, sensor: &str, hash_key: &[u8], out: Output) -> Result<Fleet, String> {
        let target = cfg.redis.clone().ok_or("fleet: no redis URL")?;
        target.check().map_err(|e| format!("fleet.redis: {e}"))?;
        let client = Client::open(&target).map_err(|e| format!("fleet.redis: {e}"))?;
        if hash_key == crate::config::DEFAULT_HASH_KEY {
            warn!(
                "fleet: hash_key is not set: Redis key names are hashed with the public default key, \
                 so an address or a user name in them can be found again by hashing guesses"
            );
        }
        let (tx, rx) = bounded(cfg.queue.max(1));
        let (ask_tx, ask_rx) = bounded(cfg.queue.max(1));
        let counters = Arc::new(FleetCounters::default());
        let mode = out.mode;
        let st = Thread {
            client,
            name: target.name(),
            sensor: sensor.to_string(),
            prefix: cfg.prefix.clone(),
            out,
            counters: counters.clone(),
            con: None,
            backoff: Duration::from_millis(100),
            retry_at: Instant::now(),
            down_logged: false,
            ever_up: false,
            scripts: Scripts {
                claim: Script::new(CLAIM),
                risk: Script::new(RISK),
            },
            memo: Memo::new(hash_key),
        };
        let thread = std::thread::Builder::new()
            .name("apitap-fleet".into())
            .spawn(move || st.run(rx, ask_rx))
            .map_err(|e| format!("fleet: cannot start its thread: {e}"))?;
        Ok(Fleet {
            tx: Some(tx),
            ask_tx: Some(ask_tx),
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
}

/// A capture thread's way to the fleet's endpoint auth profiles (auth-bypass): it tells the
/// fleet what it saw and asks for the fleet-wide profiles of the endpoints it judges. A replay
/// waits for the answer (exact, as the fleet's other state); live, the answer comes later and
/// the verdict meanwhile rests on the local profile.
pub struct AuthLink {
    tx: Sender<Msg>,
    mode: Mode,
    counters: Arc<FleetCounters>,
    reply_tx: Sender<AuthAnswer>,
    reply_rx: Receiver<AuthAnswer>,
}

/// How long a replay waits for the fleet's answer before it judges on local state.
const ASK_WAIT: Duration = Duration::from_secs(10);

impl Fleet {
    /// A link for one capture thread's auth tracker.
    pub fn auth_link(&self) -> Option<AuthLink> {
        let (reply_tx, reply_rx) = bounded(64);
        Some(AuthLink {
            tx: self.ask_tx.clone()?,
            mode: self.mode,
            counters: self.counters.clone(),
            reply_tx,
            reply_rx,
        })
    }
}

impl AuthLink {
    /// Replay: each call settles in the fleet in order, and an ask is answered here (None:
    /// Redis is down, judge locally). Live: never waits; a full queue loses the notes
    /// (counted) and answers come through [`AuthLink::answers`].
    pub fn send(&self, notes: Vec<AuthNote>, ask: Vec<(u64, crate::catalog::EndpointId)>) -> Option<AuthAnswer> {
        if notes.is_empty() && ask.is_empty() {
            return None;
        }
        let asking = !ask.is_empty();
        let want: Vec<u64> = ask.iter().map(|(k, _)| *k).collect();
        let m = Msg::Auth {
            notes,
            ask,
            reply: asking.then(|| self.reply_tx.clone()),
        };
        if self.mode == Mode::Replay {
            // answers that came after their ask gave up (they still hold good profiles; live,
            // every answer is taken by `answers`)
            let mut got: AuthAnswer = self.reply_rx.try_iter().flatten().collect();
            self.tx.send(m).ok()?;
            if !asking {
                return (!got.is_empty()).then_some(got);
            }
            // the answer to this ask: the one holding its keys (a late one to an earlier ask
            // is folded in on the way)
            let until = Instant::now() + ASK_WAIT;
            while let Some(left) = until.checked_duration_since(Instant::now()) {
                let Ok(a) = self.reply_rx.recv_timeout(left) else { break };
                let mine = a.iter().any(|(k, _)| want.contains(k)) || (a.is_empty() && !want.is_empty());
                got.extend(a);
                if mine {
                    break;
                }
            }
            return Some(got);
        }
        if self.tx.try_send(m).is_err() {
            self.counters.queue_full.fetch_add(1, Ordering::Relaxed);
        }
        None
    }

    /// Live: the answers that came since the last call.
    pub fn answers(&self) -> impl Iterator<Item = AuthAnswer> + '_ {
        self.reply_rx.try_iter()
    }

    pub fn replay(&self) -> bool {
        self.mode == Mode::Replay
    }
}

/// A worker's messages for the fleet, gathered over one batch of transactions and handed
/// over at once ([`Fleet::send_outbox`]).
#[derive(Default)]
pub struct Outbox {
    msgs: Vec<Msg>,
    /// Per hit id, the light count-only hit in `msgs` that later ones of its bucket join.
    light: hashbrown::HashMap<u64, usize>,
}

/// What a worker must write itself: the fleet thread's queue was full (live).
pub enum Returned {
    Alert(Box<Alert>, Option<Box<EntityReport>>),
    Entity(Box<EntityReport>),
}

impl Outbox {
    pub fn hit(&mut self, h: FleetHit) {
        let light = h.alert.is_none() && !h.fire && h.distinct.is_none();
        if light {
            let w = h.window_ns.max(1_000_000_000);
            if let Some(&i) = self.light.get(&h.id)
                && let Some(Msg::Hit(p)) = self.msgs.get_mut(i)
                && p.ts / w == h.ts / w
            {
                // one INCRBY either way: the later hit's time and count stand for both
                p.hits += h.hits;
                p.ts = h.ts;
                p.count = h.count;
                return;
            }
            self.light.insert(h.id, self.msgs.len());
        }
        self.msgs.push(Msg::Hit(h));
    }
    pub fn risk(&mut self, r: FleetRisk) {
        self.msgs.push(Msg::Risk(r));
    }
    pub fn alert(&mut self, a: Box<Alert>, e: Option<Box<EntityReport>>) {
        self.msgs.push(Msg::Alert(a, e));
    }
    pub fn entity(&mut self, r: Box<EntityReport>) {
        self.msgs.push(Msg::Entity(r));
    }
    pub fn is_empty(&self) -> bool {
        self.msgs.is_empty()
    }
}

impl Fleet {
    /// Hand what the outbox holds over as one message. Returns what must be written here:
    /// the queue was full (live), so the alerts of local crossings and the entity events are
    /// written without the fleet (the rest is lost to it, counted).
    pub fn send_outbox(&self, o: &mut Outbox) -> Vec<Returned> {
        let msgs = std::mem::take(&mut o.msgs);
        o.light.clear();
        let n = msgs.len() as u64;
        let m = match <[Msg; 1]>::try_from(msgs) {
            Ok([one]) => one,
            Err(msgs) if msgs.is_empty() => return Vec::new(),
            Err(msgs) => Msg::Many(msgs),
        };
        let back = match self.send(m) {
            Ok(()) => return Vec::new(),
            Err(Msg::Many(v)) => v,
            Err(m) => vec![m],
        };
        self.counters.queue_full.fetch_add(n, Ordering::Relaxed);
        back.into_iter()
            .filter_map(|m| match m {
                Msg::Hit(FleetHit {
                    fire: true,
                    alert: Some(a),
                    ..
                }) => Some(Returned::Alert(a, None)),
                Msg::Alert(a, e) => Some(Returned::Alert(a, e)),
                Msg::Entity(r) => Some(Returned::Entity(r)),
                _ => None,
            })
            .collect()
    }

    /// Hand an `entity` event over, to be written naming the sensors that saw the entity.
    /// Returns it when it must be written here (the queue was full).
    pub fn entity(&self, r: Box<EntityReport>) -> Option<Box<EntityReport>> {
        match self.send(Msg::Entity(r)) {
            Ok(()) => None,
            Err(Msg::Entity(r)) => {
                self.counters.queue_full.fetch_add(1, Ordering::Relaxed);
                Some(r)
            }
            Err(_) => None,
        }
    }
}

impl Drop for Fleet {
    /// Let the fleet thread settle what is queued (so a replay's alerts come before its last
    /// stats), then join it.
    fn drop(&mut self) {
        drop(self.ask_tx.take());
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(Msg::Stop);
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Thread {
    client: Client,
    name: String,
    sensor: String,
    prefix: String,
    out: Output,
    counters: Arc<FleetCounters>,
    con: Option<Con>,
    backoff: Duration,
    retry_at: Instant,
    down_logged: bool,
    ever_up: bool,
    scripts: Scripts,
    memo: Memo,
}

/// What the fleet thread remembers between batches, bounded (cleared when full).
struct Memo {
    /// The keyed hash behind every Redis key name (`hash_key`).
    mac: Hmac<Sha256>,
    /// The keyed hash of set members (distinct values, clients): SipHash-2-4, ~30x cheaper
    /// than the HMAC per value, with a key derived from `hash_key`.
    sip: siphasher::sip::SipHasher24,
    /// Key hashes by a local hash of their parts: one HMAC per rule and entity, not per hit.
    hashes: hashbrown::HashMap<u64, String>,
    /// Per claim key hash: its episode is held (by this sensor or another) until this packet
    /// time (ms). A hit below the local threshold in a held episode is not sent: it could
    /// only be suppressed.
    held: hashbrown::HashMap<String, u64>,
    /// Per hit id, the alert of the episode's last template hit with its rule and entity key
    /// hashes (see [`FleetHit`]).
    templates: hashbrown::HashMap<u64, Box<Alert>>,
    /// Per hit id, its rule and entity key hashes (kept longer than templates: a light hit
    /// whose template was let go is still counted).
    ids: hashbrown::HashMap<u64, (String, String)>,
    /// Keys whose expiry was refreshed, and when (see [`Memo::due`]).
    touched: hashbrown::HashMap<String, Instant>,
}

/// How often a key written in every batch gets its expiry refreshed (and this sensor added to
/// a set of sensors again).
const TOUCH_EVERY: Duration = Duration::from_secs(20);

/// Entries of each [`Memo`] map at most.
const MEMO_CAP: usize = 65_536;
/// Hit ids whose key hashes are kept, and template alerts (each up to a few KB with its
/// samples), at most.
const IDS_CAP: usize = 262_144;
const TEMPLATES_CAP: usize = 8_192;

/// Let one entry go when `m` holds `cap` (an arbitrary one: the others stay).
fn make_room<V>(m: &mut hashbrown::HashMap<u64, V>, cap: usize) {
    if m.len() >= cap
        && let Some(k) = m.keys().next().copied()
    {
        m.remove(&k);
    }
}

impl Memo {
    fn new(hash_key: &[u8]) -> Memo {
        // cannot fail: HMAC takes keys of any length
        let mac = <Hmac<Sha256> as KeyInit>::new_from_slice(hash_key).expect("HMAC takes a key of any length");
        let mut k = mac.clone();
        k.update(b"apitap fleet members");
        let d = k.finalize().into_bytes();
        let mut sk = [0u8; 16];
        sk.copy_from_slice(&d[..16]);
        Memo {
            mac,
            sip: siphasher::sip::SipHasher24::new_with_key(&sk),
            hashes: Default::default(),
            held: Default::default(),
            touched: Default::default(),
            templates: Default::default(),
            ids: Default::default(),
        }
    }

    fn hash(&mut self, parts: &[&str]) -> String {
        let h = local_hash(&parts);
        if self.hashes.len() >= MEMO_CAP {
            self.hashes.clear();
        }
        let mac = &self.mac;
        self.hashes.entry(h).or_insert_with(|| key_hash(mac, parts)).clone()
    }

    fn entity(&mut self, k: &crate::engine::EntityKey) -> String {
        self.hash(&[&k.kind, &k.value])
    }

    /// True when `key`'s expiry (and this sensor's membership, for a set of sensors) was not
    /// refreshed within TOUCH_EVERY (wall time): a key written in every batch gets its
    /// `PEXPIRE` and `SADD` once in a while, not each time. Every expiry it guards is at least
    /// a minute, and the memo is cleared when Redis comes back (it may have lost them).
    fn due(&mut self, key: &str) -> bool {
        let now = Instant::now();
        if let Some(at) = self.touched.get(key)
            && now.duration_since(*at) < TOUCH_EVERY
        {
            return false;
        }
        if self.touched.len() >= MEMO_CAP {
            self.touched.clear();
        }
        self.touched.insert(key.to_string(), now);
        true
    }

    /// A set member's keyed hash (16 hex digits).
    fn member(&self, v: &[u8]) -> String {
        hex(&self.sip.hash(v).to_be_bytes())
    }

    fn endpoint(&mut self, ep: &crate::catalog::EndpointId) -> String {
        let (host, method, tpl) = ep.parts();
        self.hash(&["auth", host, method, tpl])
    }

    fn rule(&mut self, a: &Alert) -> String {
        self.hash(&[&a.rule_id, itoa::Buffer::new().format(a.sid), &a.key.kind, &a.key.value])
    }

    fn hold(&mut self, rk: &str, until_ms: u64) {
        if self.held.len() >= MEMO_CAP {
            self.held.clear();
        }
        let u = self.held.entry(rk.to_string()).or_default();
        *u = (*u).max(until_ms);
    }
}

struct Scripts {
    claim: Script,
    risk: Script,
}

/// A key of one rule and entity (or one entity): `PREFIX:{HASH}:WHAT`. The hash tag `{HASH}`
/// puts every key of one (rule, entity) in one Redis Cluster slot, so a command or a script
/// with several of them (`PFCOUNT` of two buckets, the claim) works in a cluster.
fn key(prefix: &str, hash: &str, what: &str) -> String {
    crate::util::concat(&[prefix, ":{", hash, "}:", what])
}

/// Lower-case hex digits of `b`.
fn hex(b: &[u8]) -> String {
    const D: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(b.len() * 2);
    for x in b {
        s.push(D[(x >> 4) as usize] as char);
        s.push(D[(x & 15) as usize] as char);
    }
    s
}

/// A short keyed hash of the key parts (HMAC-SHA256 with `hash_key`, 80 bits): no value in
/// the clear in Redis, and none found again by hashing guesses (an IPv4 address, a user name)
/// without the key.
fn key_hash(mac: &Hmac<Sha256>, parts: &[&str]) -> String {
    let mut m = mac.clone();
    for p in parts {
        m.update(p.as_bytes());
        m.update(&[0]);
    }
    let d = m.finalize().into_bytes();
    hex(&d[..10])
}

impl Thread {
    fn run(mut self, rx: Receiver<Msg>, ask_rx: Receiver<Msg>) {
        self.connect();
        let mut ask_rx = Some(ask_rx);
        loop {
            let never = crossbeam_channel::never();
            let asks = ask_rx.as_ref().unwrap_or(&never);
            let first = crossbeam_channel::select! {
                recv(rx) -> m => match m {
                    Ok(m) => m,
                    Err(_) => break,
                },
                recv(asks) -> m => match m {
                    Ok(m) => m,
                    Err(_) => {
                        ask_rx = None; // every capture thread is done
                        continue;
                    }
                },
                default(Duration::from_millis(500)) => {
                    if self.con.is_none() && Instant::now() >= self.retry_at {
                        self.connect();
                    }
                    continue;
                }
            };
            // Whatever else comes within LINGER goes in the same round trips. The thread waits
            // on the capture threads' queue only, so a worker's send wakes nobody (one wake-up
            // per batch, not per message), and stops waiting once a capture thread waits for
            // an answer (an auth profile asked for in a replay).
            let waited = |m: &Msg| matches!(m, Msg::Auth { reply: Some(_), .. } | Msg::Stop);
            let mut stop = matches!(first, Msg::Stop);
            let mut done = waited(&first);
            let mut batch = Vec::new();
            if !stop {
                push_flat(&mut batch, first);
            }
            let until = Instant::now() + LINGER;
            loop {
                for q in [Some(&rx), ask_rx.as_ref()].into_iter().flatten() {
                    while batch.len() < BATCH && !stop {
                        match q.try_recv() {
                            Ok(Msg::Stop) => stop = true,
                            Ok(m) => {
                                done |= waited(&m);
                                push_flat(&mut batch, m);
                            }
                            Err(_) => break,
                        }
                    }
                }
                let now = Instant::now();
                if done || stop || batch.len() >= BATCH || now >= until {
                    break;
                }
                match &ask_rx {
                    Some(a) => match a.recv_timeout(until - now) {
                        Ok(m) => {
                            done |= waited(&m);
                            push_flat(&mut batch, m);
                        }
                        Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
                        Err(crossbeam_channel::RecvTimeoutError::Disconnected) => ask_rx = None,
                    },
                    None => std::thread::sleep(until - now),
                }
            }
            if stop {
                // the capture threads' last notes, sent before the Stop
                if let Some(a) = &ask_rx {
                    batch.extend(a.try_iter());
                }
            }
            if batch.is_empty() {
                if stop {
                    break;
                }
                continue;
            }
            if self.con.is_none() && Instant::now() >= self.retry_at {
                self.connect();
            }
            let r = match self.con.as_mut() {
                Some(c) => settle(
                    c,
                    &self.scripts,
                    &mut self.memo,
                    &mut batch,
                    &self.prefix,
                    &self.sensor,
                    &self.counters,
                ),
                None => Err(None),
            };
            match r {
                Ok(writes) => {
                    self.counters.shared.fetch_add(batch.len() as u64, Ordering::Relaxed);
                    for w in writes {
                        match w {
                            Write::Alert(alert, fleet) => {
                                self.counters.claimed.fetch_add(1, Ordering::Relaxed);
                                self.emit(&alert, Some(fleet));
                            }
                            Write::Entity(r, fleet) => self.emit_entity(&r, Some(fleet)),
                        }
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
                            Msg::Alert(a, e) => {
                                self.emit(&a, None);
                                if let Some(e) = e {
                                    self.emit_entity(&e, None);
                                }
                            }
                            Msg::Hit(FleetHit {
                                fire: true,
                                alert: Some(a),
                                ..
                            }) => self.emit(&a, None),
                            Msg::Hit(_) | Msg::Risk(_) => {}
                            // no fleet profile: the capture thread judges on its own
                            Msg::Auth { reply, .. } => {
                                if let Some(r) = reply {
                                    let _ = r.try_send(Vec::new());
                                }
                            }
                            Msg::Entity(r) => self.emit_entity(&r, None),
                            Msg::Stop | Msg::Many(_) => {}
                        }
                    }
                }
            }
            if stop {
                break;
            }
        }
    }

    fn connect(&mut self) {
        match self.client.connect(&[&self.scripts.claim, &self.scripts.risk]) {
            Ok(c) => {
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
                // Redis may have lost its keys: expiries and sensor sets are refreshed anew
                self.memo.touched.clear();
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
        if let Some(f) = fleet {
            put_fleet(&mut buf, "indicator", &f);
        }
        self.out.counters.alert.fetch_add(1, Ordering::Relaxed);
        let events = memchr::memchr_iter(b'\n', &buf).count() as u64;
        let b = Arc::new(Batch {
            bytes: buf,
            events,
            back: None,
        });
        for s in self.out.sinks.iter() {
            s.send(&b, self.out.mode == Mode::Replay);
        }
    }
}

impl Thread {
    /// Write one `entity` event, with the fleet's view under `entity.fleet` (the event is
    /// apitap's own shape, SPEC §5).
    fn emit_entity(&self, r: &EntityReport, fleet: Option<serde_json::Value>) {
        let mut buf = Vec::new();
        self.out.fmt.write_entity(r, &mut buf);
        if buf.is_empty() {
            return; // entity events not among output.types
        }
        if let Some(f) = fleet {
            put_fleet(&mut buf, "entity", &f);
        }
        self.out.counters.entity.fetch_add(1, Ordering::Relaxed);
        let b = Arc::new(Batch {
            bytes: buf,
            events: 1,
            back: None,
        });
        for s in self.out.sinks.iter() {
            s.send(&b, self.out.mode == Mode::Replay);
        }
    }
}

/// Put `"fleet": f` first in the event line's object `key` (its first `"key":{` that is a
/// key, after `{` or `,`: inside a string every quote is escaped), without parsing the line
/// again. False when the line has no such object.
fn put_fleet(line: &mut Vec<u8>, key: &str, f: &serde_json::Value) -> bool {
    let pat = format!("\"{key}\":{{");
    let mut from = 0;
    while let Some(i) = memchr::memmem::find(&line[from..], pat.as_bytes()).map(|i| i + from) {
        if i == 0 || !matches!(line[i - 1], b'{' | b',') {
            from = i + 1;
            continue;
        }
        let at = i + pat.len();
        let mut ins = format!("\"fleet\":{f}").into_bytes();
        if line.get(at) != Some(&b'}') {
            ins.push(b',');
        }
        line.splice(at..at, ins);
        return true;
    }
    false
}

/// Add `m` to a batch, a worker's [`Msg::Many`] as its messages.
fn push_flat(batch: &mut Vec<Msg>, m: Msg) {
    match m {
        Msg::Many(v) => batch.extend(v),
        m => batch.push(m),
    }
}

/// A hash of `v` local to this process (map keys of the fleet thread's memo and batches; never
/// sent to Redis): foldhash with a seed fixed per process, several times cheaper than SipHash.
fn local_hash(v: &impl std::hash::Hash) -> u64 {
    use std::hash::BuildHasher;
    static SEED: std::sync::OnceLock<hashbrown::DefaultHashBuilder> = std::sync::OnceLock::new();
    SEED.get_or_init(Default::default).hash_one(v)
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

/// An entity's fleet-wide risk, atomic in Redis. KEYS[1] holds `SCORE TS LEVEL` (the score at
/// packet time TS in ms, and the threshold level reached), KEYS[2] the set of sensors that
/// saw the entity (one hash tag: one slot). The stored score decays by packet time with the
/// local engine's half-life (ARGV[3] ms), the increment ARGV[2] is added, and the level moves
/// as the local engine's does: down once the decayed score is below half its threshold, up
/// past each threshold (ARGV[6]...) the new score reaches. Returns {score, level crossed by
/// this increment or 0}: only the increment that crosses a level fleet-wide gets it. An
/// increment older than the stored time adds without decay.
const RISK: &str = r#"
local ts, inc, hl = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local score, at, level = 0, ts, 0
local v = redis.call('GET', KEYS[1])
if v then
  local a, b, c = string.match(v, '^(%S+) (%d+) (%d+)$')
  score, at, level = tonumber(a) or 0, tonumber(b) or ts, tonumber(c) or 0
end
local now = score
if ts > at then
  now = score * math.pow(0.5, (ts - at) / hl)
  at = ts
end
local n = #ARGV - 5
-- a level stored by a sensor with more thresholds (or before a reload) is read as the top one
if level > n then level = n end
while level > 0 and now < tonumber(ARGV[5 + level]) / 2 do
  level = level - 1
end
local new = now + inc
local crossed = 0
while level < n and new >= tonumber(ARGV[6 + level]) do
  level = level + 1
  crossed = level
end
redis.call('SET', KEYS[1], string.format('%.6f', new) .. ' ' .. at .. ' ' .. level, 'PX', ARGV[5])
redis.call('SADD', KEYS[2], ARGV[4])
redis.call('PEXPIRE', KEYS[2], ARGV[5])
return {string.format('%.3f', new), crossed}
"#;

/// What a settled batch writes: an alert this sensor claimed, or an `entity` event, each with
/// the fleet's view of it.
enum Write {
    Alert(Box<Alert>, serde_json::Value),
    Entity(Box<EntityReport>, serde_json::Value),
}

/// An alert asking for its episode's claim.
struct Claim<'a> {
    alert: std::borrow::Cow<'a, Alert>,
    /// A local alert that may escalate within its episode.
    esc: bool,
    quiet_ms: u64,
    /// The claim's key hash (rule and entity).
    rk: String,
    /// The set of sensors listed with it (added to first when `sadd`).
    sensors: String,
    sadd: bool,
    /// Fleet-wide distinct count or risk, for the alert's `indicator.fleet`.
    count: Option<u64>,
    risk: Option<f64>,
    /// The count it stands for (for a later escalation).
    n_alerted: u64,
    /// The `entity` event to write with it when claimed.
    entity: Option<Box<EntityReport>>,
}

/// A rule window's key in one batch.
struct Win {
    /// This bucket's key and the one before (one hash tag).
    cur: String,
    prev: String,
    /// The rule and entity's key hash.
    rk: String,
    /// Expiry, ms (two windows and a minute).
    keep: u64,
    /// Distinct values to add (distinct-count rules).
    values: Vec<String>,
    /// Hits to add (count-only rules).
    hits: u64,
    distinct: bool,
}

/// Messages settled per round trip at most.
const BATCH: usize = 512;

/// How long the fleet thread waits for more messages to fill a batch (fewer round trips;
/// an alert raised through the fleet comes this much later).
const LINGER: Duration = Duration::from_millis(2);

/// How long (wall time) idle keys stay: at least this.
const KEEP_MS: u64 = 600_000;

/// How long (wall time) an endpoint's auth profile stays after its last call: a day, so
/// a sensor that restarts finds what the fleet learned.
const AUTH_KEEP_MS: u64 = 86_400_000;

/// Settle a batch of messages with Redis in at most two pipelined round trips: the distinct
/// counts, the sensors that saw each entity and the risk increments first, then the claims
/// of the alerts, of the hits over the fleet threshold and of the risk levels crossed
/// fleet-wide. Returns what to write (alerts this sensor claimed and `entity` events, with
/// the fleet's view); Err: Redis failed (Some) or is down (None).
fn settle(
    c: &mut Con,
    scripts: &Scripts,
    memo: &mut Memo,
    batch: &mut [Msg],
    prefix: &str,
    sensor: &str,
    n: &FleetCounters,
) -> Result<Vec<Write>, Option<io::Error>> {
    let err = |e: redis::RedisError| Some(io::Error::other(e.to_string()));
    let bad = |e: redis::ParsingError| Some(io::Error::other(e.to_string()));
    // 1. rule windows: per (rule, entity, bucket) key of the batch, one PFADD of all its
    // distinct values (or one INCRBY of its hits, for a count-only rule), the fleet-wide count
    // of this bucket and the one before after them, and the expiries.
    let mut keys: Vec<Win> = Vec::new();
    let mut key_of: Vec<Option<usize>> = Vec::new(); // per hit, its index in keys (none: skipped)
    let mut held_hits: Vec<bool> = Vec::new(); // per hit: its episode is held, no claim
    // the entities of the batch: this sensor saw them
    let mut ents: Vec<String> = Vec::new();
    // Per batch, by local hashes (no string built or hashed again per hit): the entities
    // seen, the (rule, entity) key hashes and the window keys.
    let mut ent_seen: hashbrown::HashSet<u64> = hashbrown::HashSet::new();
    // per hit id: the (rule, entity) key hash and the entity's
    let mut rks: hashbrown::HashMap<u64, (String, String)> = hashbrown::HashMap::new();
    let mut key_index: hashbrown::HashMap<(u64, u64, u64), usize> = hashbrown::HashMap::new();
    let mut saw = |ek: &str| {
        if ent_seen.insert(local_hash(&ek)) {
            ents.push(ek.to_string());
        }
    };
    // Template hits leave their alert with the memo, for a fleet-wide crossing of a later
    // light hit of the same episode; every hit with an alert leaves its key hashes.
    for m in batch.iter_mut() {
        if let Msg::Hit(h) = m
            && let Some(a) = &h.alert
        {
            if !memo.ids.contains_key(&h.id) {
                let v = (memo.rule(a), memo.entity(&a.key));
                make_room(&mut memo.ids, IDS_CAP);
                memo.ids.insert(h.id, v);
            }
            if !h.fire
                && let Some(a) = h.alert.take()
            {
                make_room(&mut memo.templates, TEMPLATES_CAP);
                memo.templates.insert(h.id, a);
            }
        }
    }
    let batch: &[Msg] = batch;
    for m in batch {
        match m {
            Msg::Hit(h) => {
                if !rks.contains_key(&h.id) {
                    let Some(v) = memo.ids.get(&h.id).cloned() else {
                        // its key hashes were let go (the memo was full): not shared
                        n.skipped.fetch_add(1, Ordering::Relaxed);
                        key_of.push(None);
                        held_hits.push(false);
                        continue;
                    };
                    rks.insert(h.id, v);
                }
                let (rk, ek) = &rks[&h.id];
                saw(ek);
                // An episode alerted fleet-wide: a count-only hit is not sent (it could only be
                // suppressed); a distinct value still is (the engine sends each value once per
                // bucket), without a claim.
                let held = !h.fire && memo.held.get(rk.as_str()).is_some_and(|u| h.ts / 1_000_000 <= *u);
                if held && h.distinct.is_none() {
                    n.skipped.fetch_add(1, Ordering::Relaxed);
                    key_of.push(None);
                    held_hits.push(false);
                    continue;
                }
                held_hits.push(held);
                let w = h.window_ns.max(1_000_000_000);
                let bucket = h.ts / w;
                let kind = if h.distinct.is_some() { "hll" } else { "cnt" };
                let i = *key_index
                    .entry((h.id, w, bucket * 2 + h.distinct.is_some() as u64))
                    .or_insert_with(|| {
                        keys.push(Win {
                            cur: key(
                                prefix,
                                rk,
                                &crate::util::concat(&[kind, ":", itoa::Buffer::new().format(bucket)]),
                            ),
                            prev: key(
                                prefix,
                                rk,
                                &crate::util::concat(&[
                                    kind,
                                    ":",
                                    itoa::Buffer::new().format(bucket.saturating_sub(1)),
                                ]),
                            ),
                            rk: rk.clone(),
                            keep: 2 * ms(w) + 60_000,
                            values: Vec::new(),
                            hits: 0,
                            distinct: h.distinct.is_some(),
                        });
                        keys.len() - 1
                    });
                if let Some(d) = h.distinct {
                    // keyed: a guessable value (a user name) is not found from its hash
                    keys[i].values.push(memo.member(&d.to_le_bytes()));
                }
                keys[i].hits += h.hits;
                key_of.push(Some(i));
            }
            Msg::Alert(a, _) => saw(&memo.entity(&a.key)),
            Msg::Entity(r) => saw(&memo.entity(&r.key)),
            Msg::Risk(r) => saw(&memo.entity(&r.report.key)),
            Msg::Auth { .. } | Msg::Stop | Msg::Many(_) => {}
        }
    }
    let mut pipe = c.pipe();
    for k in &keys {
        let sensors = key(prefix, &k.rk, "sensors");
        if k.distinct {
            pipe.cmd("PFADD").arg(&k.cur).arg(&k.values);
            if memo.due(&k.cur) {
                pipe.cmd("PEXPIRE").arg(&k.cur).arg(k.keep);
            }
            // cur and prev share the hash tag: one slot, so one PFCOUNT of both works in a
            // cluster
            pipe.get("PFCOUNT").arg(&k.cur).arg(&k.prev);
        } else {
            pipe.get("INCRBY").arg(&k.cur).arg(k.hits);
            if memo.due(&k.cur) {
                pipe.cmd("PEXPIRE").arg(&k.cur).arg(k.keep);
            }
            pipe.get("GET").arg(&k.prev);
        }
        if memo.due(&sensors) {
            pipe.cmd("SADD").arg(&sensors).arg(sensor);
            pipe.cmd("PEXPIRE").arg(&sensors).arg(k.keep);
        }
    }
    for ek in &ents {
        let sensors = key(prefix, ek, "sensors");
        if memo.due(&sensors) {
            pipe.cmd("SADD").arg(&sensors).arg(sensor);
            pipe.cmd("PEXPIRE").arg(&sensors).arg(KEEP_MS);
        }
    }
    // entity events: the sensors that saw the entity (after this batch's SADD)
    for m in batch {
        if let Msg::Entity(r) = m {
            pipe.get("SMEMBERS").arg(key(prefix, &memo.entity(&r.key), "sensors"));
        }
    }
    // risk increments: the fleet-wide score (one script per increment, in batch order)
    for m in batch {
        if let Msg::Risk(r) = m {
            let ek = memo.entity(&r.report.key);
            let hl_ms = (r.half_life_s * 1000.0).max(1.0);
            // idle scores go once decayed to under 1/256
            let px = ((hl_ms * 8.0) as u64).max(KEEP_MS);
            let cmd = pipe.script(
                &scripts.risk,
                &[&key(prefix, &ek, "risk"), &key(prefix, &ek, "sensors")],
            );
            cmd.arg(r.ts / 1_000_000)
                .arg(format!("{}", r.inc))
                .arg(format!("{hl_ms}"))
                .arg(sensor)
                .arg(px);
            for t in &r.thresholds {
                cmd.arg(format!("{t}"));
            }
        }
    }
    // endpoint auth profiles: what the capture threads saw, then the profiles they ask for
    for m in batch {
        if let Msg::Auth { notes, ask, .. } = m {
            for note in notes {
                let eh = memo.endpoint(&note.endpoint);
                if note.authd > 0 {
                    let k = key(prefix, &eh, "auth:n");
                    pipe.cmd("INCRBY").arg(&k).arg(note.authd);
                    if memo.due(&k) {
                        pipe.cmd("PEXPIRE").arg(&k).arg(AUTH_KEEP_MS);
                    }
                }
                for (what, clients) in [("auth:ac", &note.auth_clients), ("auth:oc", &note.open_clients)] {
                    if clients.is_empty() {
                        continue;
                    }
                    let k = key(prefix, &eh, what);
                    let members: Vec<String> = clients
                        .iter()
                        .map(|ip| match ip {
                            std::net::IpAddr::V4(a) => memo.member(&a.octets()),
                            std::net::IpAddr::V6(a) => memo.member(&a.octets()),
                        })
                        .collect();
                    pipe.cmd("PFADD").arg(&k).arg(members);
                    if memo.due(&k) {
                        pipe.cmd("PEXPIRE").arg(&k).arg(AUTH_KEEP_MS);
                    }
                }
            }
            for (_, ep) in ask {
                let eh = memo.endpoint(ep);
                pipe.get("GET").arg(key(prefix, &eh, "auth:n"));
                pipe.get("PFCOUNT").arg(key(prefix, &eh, "auth:ac"));
                pipe.get("PFCOUNT").arg(key(prefix, &eh, "auth:oc"));
            }
        }
    }
    // attacker profiles: each entity report of the batch is this sensor's profile of the
    // entity (the last one wins); the fleet's merged profile goes with its `entity` event
    let mut profiles: Vec<(String, &EntityReport)> = Vec::new();
    for m in batch {
        let r = match m {
            Msg::Entity(r) | Msg::Alert(_, Some(r)) => &**r,
            Msg::Risk(r) => &*r.report,
            _ => continue,
        };
        let ek = memo.entity(&r.key);
        match profiles.iter_mut().find(|(k, _)| *k == ek) {
            Some(p) => p.1 = r,
            None => profiles.push((ek, r)),
        }
    }
    for (ek, r) in &profiles {
        let k = key(prefix, ek, "profile");
        pipe.cmd("HSET").arg(&k).arg(sensor).arg(profile_of(r));
        pipe.cmd("PEXPIRE").arg(&k).arg(PROFILE_KEEP_MS);
        pipe.get("HGETALL").arg(&k);
    }
    let replies = if pipe.is_empty() {
        Vec::new()
    } else {
        n.round_trips.fetch_add(1, Ordering::Relaxed);
        pipe.query(c).map_err(err)?
    };
    let mut replies = replies.into_iter();
    let mut counts: Vec<u64> = Vec::with_capacity(keys.len());
    for k in &keys {
        let v = replies.next().ok_or(None)?;
        let mut c: u64 = redis::from_redis_value(v).map_err(bad)?;
        if !k.distinct {
            let v = replies.next().ok_or(None)?;
            let prev: Option<u64> = redis::from_redis_value(v).map_err(bad)?;
            c += prev.unwrap_or(0);
        }
        counts.push(c);
    }
    let mut writes = Vec::new();
    for m in batch {
        if let Msg::Entity(r) = m {
            let v = replies.next().ok_or(None)?;
            let mut names: Vec<String> = redis::from_redis_value(v).map_err(bad)?;
            names.sort();
            writes.push(Write::Entity(r.clone(), json!({ "sensors": names })));
        }
    }
    // 2. claims. A hit over the fleet threshold asks once per key and batch; an alert of the
    // local engine always asks; so does a risk level crossed fleet-wide by an increment of
    // this sensor. (A key whose local window crossed in this batch claims with that alert.)
    let mut claims: Vec<Claim<'_>> = Vec::new();
    let mut asked: Vec<usize> = batch
        .iter()
        .filter_map(|m| match m {
            Msg::Hit(h) => Some(h),
            _ => None,
        })
        .zip(&key_of)
        .filter(|(h, _)| h.fire)
        .filter_map(|(_, i)| *i)
        .collect();
    let mut hit_no = 0;
    for m in batch {
        match m {
            Msg::Hit(h) => {
                let Some(i) = key_of.get(hit_no).copied().flatten() else {
                    hit_no += 1;
                    continue;
                };
                let held = held_hits.get(hit_no).copied().unwrap_or(false);
                hit_no += 1;
                let count = counts.get(i).copied().unwrap_or(0);
                let over = count > h.threshold && !asked.contains(&i) && !held;
                if h.fire || over {
                    let w = h.window_ns.max(1_000_000_000);
                    // A claim over the fleet threshold stands for a local crossing (threshold
                    // + 1 hits) when a later local alert asks whether it escalates.
                    let n_alerted = if h.fire { h.count } else { h.count.max(h.threshold + 1) };
                    let alert = match &h.alert {
                        Some(a) => std::borrow::Cow::Borrowed(&**a),
                        // a fleet-wide crossing: the episode's template, brought up to now
                        None => {
                            let Some(t) = memo.templates.get(&h.id) else { continue };
                            let mut a = (**t).clone();
                            a.ts = h.ts;
                            a.last = h.ts;
                            a.count = h.count;
                            if h.distinct_count.is_some() {
                                a.distinct = h.distinct_count;
                            }
                            std::borrow::Cow::Owned(a)
                        }
                    };
                    if !h.fire {
                        asked.push(i);
                    }
                    claims.push(Claim {
                        alert,
                        esc: h.fire,
                        quiet_ms: ms(h.quiet_ns.max(w)),
                        sensors: key(prefix, &keys[i].rk, "sensors"),
                        rk: keys[i].rk.clone(),
                        sadd: false,
                        count: Some(count),
                        risk: None,
                        n_alerted,
                        entity: None,
                    });
                }
            }
            Msg::Alert(a, e) => {
                let rk = memo.rule(a);
                claims.push(Claim {
                    alert: std::borrow::Cow::Borrowed(a),
                    esc: true,
                    quiet_ms: ((a.window_s * 1000.0) as u64).max(1000),
                    sensors: key(prefix, &rk, "sensors"),
                    rk,
                    sadd: true,
                    count: None,
                    risk: None,
                    n_alerted: a.count,
                    entity: e.clone(),
                });
            }
            Msg::Entity(_) | Msg::Auth { .. } | Msg::Stop | Msg::Many(_) => {}
            Msg::Risk(r) => {
                let v = replies.next().ok_or(None)?;
                let (score, level): (String, usize) = redis::from_redis_value(v).map_err(bad)?;
                let score: f64 = score.parse().unwrap_or(0.0);
                if level == 0 || level > r.thresholds.len() {
                    continue;
                }
                let (alert, report) = risk_alert(r, level, score);
                let ek = memo.entity(&r.report.key);
                let n_alerted = alert.count;
                claims.push(Claim {
                    quiet_ms: ((r.half_life_s * 1000.0) as u64).max(1000),
                    rk: memo.rule(&alert),
                    alert: std::borrow::Cow::Owned(alert),
                    esc: false,
                    sensors: key(prefix, &ek, "sensors"),
                    sadd: false,
                    count: None,
                    risk: Some(score),
                    n_alerted,
                    entity: Some(report),
                });
            }
        }
    }
    for m in batch {
        if let Msg::Auth { ask, reply, .. } = m {
            let mut answer = Vec::with_capacity(ask.len());
            for (k, _) in ask {
                let mut next = || -> Result<redis::Value, Option<io::Error>> { replies.next().ok_or(None) };
                let authd: Option<u64> = redis::from_redis_value(next()?).map_err(bad)?;
                let auth_clients: u64 = redis::from_redis_value(next()?).map_err(bad)?;
                let open_clients: u64 = redis::from_redis_value(next()?).map_err(bad)?;
                let f = FleetAuth {
                    authd: authd.unwrap_or(0),
                    auth_clients,
                    open_clients,
                };
                answer.push((*k, f));
            }
            if let Some(r) = reply {
                // never blocks: an answer nobody waits for any more is dropped
                let _ = r.try_send(answer);
            }
        }
    }
    let mut merged: hashbrown::HashMap<String, serde_json::Value> = hashbrown::HashMap::new();
    for (ek, _) in &profiles {
        let v = replies.next().ok_or(None)?;
        let per_sensor: Vec<(String, String)> = redis::from_redis_value(v).map_err(bad)?;
        merged.insert(ek.clone(), merge_profiles(&per_sensor));
    }
    let with_profile = |memo: &mut Memo, r: &EntityReport, info: &mut serde_json::Value| {
        if let (Some(p), Some(o)) = (merged.get(&memo.entity(&r.key)), info.as_object_mut())
            && let Some(p) = p.as_object()
        {
            o.extend(p.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
    };
    for w in &mut writes {
        if let Write::Entity(r, info) = w {
            with_profile(memo, r, info);
        }
    }
    if claims.is_empty() {
        return Ok(writes);
    }
    let mut pipe = c.pipe();
    for cl in &claims {
        // Idle keys go after the quiet period or 10 minutes of wall time, whichever is longer.
        let px = cl.quiet_ms.max(KEEP_MS);
        if cl.sadd {
            pipe.cmd("SADD").arg(&cl.sensors).arg(sensor);
        }
        pipe.script(&scripts.claim, &[&key(prefix, &cl.rk, "claim")])
            .arg(sensor)
            .arg(cl.alert.first / 1_000_000)
            .arg(cl.alert.last / 1_000_000)
            .arg(cl.quiet_ms)
            .arg(px)
            .arg(cl.n_alerted)
            .arg(if cl.esc { "1" } else { "0" });
        pipe.get("SMEMBERS").arg(&cl.sensors);
    }
    n.round_trips.fetch_add(1, Ordering::Relaxed);
    let replies: Vec<redis::Value> = pipe.query(c).map_err(err)?;
    for (cl, pair) in claims.into_iter().zip(replies.chunks(2)) {
        let [got, names] = pair else { break };
        let got: i64 = redis::from_redis_value(got.clone()).map_err(bad)?;
        // claimed here or held elsewhere: the episode is alerted until its quiet period ends
        memo.hold(&cl.rk, cl.alert.last / 1_000_000 + cl.quiet_ms);
        if got != 1 {
            n.suppressed.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let mut names: Vec<String> = redis::from_redis_value(names.clone()).map_err(bad)?;
        names.sort();
        let mut a = Box::new(cl.alert.into_owned());
        if let Some(c) = cl.count
            && a.distinct.is_some()
        {
            a.distinct = Some(a.distinct.unwrap_or(0).max(c));
            a.distinct_estimated = true;
        }
        let mut info = json!({"sensors": names, "claimed_by": sensor});
        if let Some(c) = cl.count {
            info[if a.distinct.is_some() { "distinct" } else { "count" }] = json!(c);
        }
        if let Some(r) = cl.risk {
            info["risk"] = json!(r);
        }
        let mut einfo = json!({"sensors": info["sensors"]});
        if let Some(r) = cl.risk {
            einfo["risk"] = json!(r);
        }
        writes.push(Write::Alert(a, info));
        if let Some(r) = cl.entity {
            with_profile(memo, &r, &mut einfo);
            writes.push(Write::Entity(r, einfo));
        }
    }
    Ok(writes)
}

/// One sensor's profile of an entity, as stored in the fleet's hash (bounded: counts, times
/// in ms, indicator types, at most PROFILE_ENDPOINTS endpoint templates as the catalog names
/// them; no address, user name or user agent).
fn profile_of(r: &EntityReport) -> String {
    let ms = |ns: u64| ns / 1_000_000;
    let ind: serde_json::Map<String, serde_json::Value> = r
        .indicators
        .iter()
        .map(|i| (i.itype.to_string(), json!([i.count, ms(i.first), ms(i.last)])))
        .collect();
    let ep: Vec<&String> = r.endpoints.iter().take(PROFILE_ENDPOINTS).collect();
    json!({
        "r": r.requests, "e": r.errors, "f": ms(r.first), "l": ms(r.last),
        "a": [r.auth_failures, r.auth_successes, r.unauthenticated],
        "i": ind, "ep": ep,
    })
    .to_string()
}

/// Endpoints kept per sensor's profile and in the merged one.
const PROFILE_ENDPOINTS: usize = 16;

/// How long (wall time) an attacker profile stays after its last update: a day.
const PROFILE_KEEP_MS: u64 = 86_400_000;

/// The fleet's profile of an entity from every sensor's (`HGETALL`: sensor, profile): counts
/// added up, the earliest first and latest last time, indicators by type with the sensors
/// that saw each, endpoints (bounded). A profile that does not parse is left out.
fn merge_profiles(per_sensor: &[(String, String)]) -> serde_json::Value {
    use std::collections::BTreeMap;
    let (mut req, mut err, mut first, mut last) = (0u64, 0u64, u64::MAX, 0u64);
    let mut auth = [0u64; 3];
    let mut ind: BTreeMap<String, (u64, u64, u64, Vec<&str>)> = BTreeMap::new();
    let mut eps: std::collections::BTreeSet<String> = Default::default();
    let mut sensors = 0;
    for (sensor, p) in per_sensor {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(p) else {
            continue;
        };
        let n = |v: &serde_json::Value| v.as_u64().unwrap_or(0);
        sensors += 1;
        req += n(&v["r"]);
        err += n(&v["e"]);
        first = first.min(v["f"].as_u64().unwrap_or(u64::MAX));
        last = last.max(n(&v["l"]));
        for (j, a) in auth.iter_mut().enumerate() {
            *a += n(&v["a"][j]);
        }
        if let Some(m) = v["i"].as_object() {
            for (t, x) in m {
                let e = ind.entry(t.clone()).or_insert((0, u64::MAX, 0, Vec::new()));
                e.0 += n(&x[0]);
                e.1 = e.1.min(x[1].as_u64().unwrap_or(u64::MAX));
                e.2 = e.2.max(n(&x[2]));
                e.3.push(sensor);
            }
        }
        for ep in v["ep"].as_array().into_iter().flatten() {
            if let Some(ep) = ep.as_str()
                && eps.len() < PROFILE_ENDPOINTS
            {
                eps.insert(ep.to_string());
            }
        }
    }
    let ts = |ms: u64| crate::util::fmt_ts(ms.saturating_mul(1_000_000));
    if sensors == 0 {
        return json!({});
    }
    let mut indicators: Vec<serde_json::Value> = ind
        .into_iter()
        .map(|(t, (c, f, l, mut s))| {
            s.sort_unstable();
            json!({"type": t, "count": c, "first_seen": ts(f), "last_seen": ts(l), "sensors": s})
        })
        .collect();
    indicators.sort_by(|a, b| b["count"].as_u64().cmp(&a["count"].as_u64()));
    json!({
        "requests": req, "errors": err, "first_seen": ts(first), "last_seen": ts(last),
        "auth": {"failures": auth[0], "successes": auth[1], "unauthenticated": auth[2]},
        "indicators": indicators, "endpoints": eps,
    })
}

/// The `risk_threshold` alert (as the local engine writes it) and the `entity` event of a
/// level crossed fleet-wide at `score`.
fn risk_alert(r: &FleetRisk, level: usize, score: f64) -> (Alert, Box<EntityReport>) {
    let p = &r.report;
    let threshold = r.thresholds.get(level - 1).copied().unwrap_or(0.0);
    let alert = crate::engine::entity::risk_alert(p, r.ts, level, threshold, score, r.half_life_s);
    let mut report = p.clone();
    report.risk = score;
    report.level = level;
    report.threshold = threshold;
    report.reason = "threshold";
    (alert, report)
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
    fn fleet_view_goes_into_the_named_object_not_into_a_string() {
        let f = json!({"sensors": ["a", "b"]});
        let mut l = br#"{"http":{"url":"/x?\"indicator\":{"},"indicator":{"type":"t"}}"#.to_vec();
        assert!(put_fleet(&mut l, "indicator", &f));
        let v: serde_json::Value = serde_json::from_slice(&l).unwrap();
        assert_eq!(v["indicator"]["fleet"]["sensors"][1], "b");
        assert_eq!(v["indicator"]["type"], "t");
        assert_eq!(v["http"]["url"], "/x?\"indicator\":{");
        let mut e = br#"{"entity":{}}"#.to_vec();
        assert!(put_fleet(&mut e, "entity", &f));
        assert!(serde_json::from_slice::<serde_json::Value>(&e).unwrap()["entity"]["fleet"].is_object());
        let mut n = br#"{"event_type":"stats"}"#.to_vec();
        assert!(!put_fleet(&mut n, "entity", &f));
    }

    #[test]
    fn key_hashes_hide_the_entity_and_separate_parts() {
        let k = Memo::new(b"fleet key").mac;
        let a = key_hash(&k, &["r", "ip", "10.0.0.1"]);
        assert_eq!(a.len(), 20);
        assert!(!a.contains("10.0.0.1"));
        assert_ne!(key_hash(&k, &["ab", "c"]), key_hash(&k, &["a", "bc"]));
        // keyed: another fleet's key names the same entity differently
        assert_ne!(a, key_hash(&Memo::new(b"other key").mac, &["r", "ip", "10.0.0.1"]));
        assert_eq!(a, key_hash(&Memo::new(b"fleet key").mac, &["r", "ip", "10.0.0.1"]));
    }

    fn light(id: u64, ts: u64, count: u64) -> FleetHit {
        FleetHit {
            alert: None,
            id,
            ts,
            count,
            hits: 1,
            distinct_count: None,
            fire: false,
            distinct: None,
            window_ns: 60_000_000_000,
            threshold: 8,
            quiet_ns: 0,
        }
    }

    #[test]
    fn light_count_hits_of_one_bucket_are_merged_in_the_outbox() {
        let mut o = Outbox::default();
        let s = 1_000_000_000;
        o.hit(light(1, 120 * s, 1));
        o.hit(light(2, 121 * s, 1)); // another rule or entity: its own message
        o.hit(light(1, 130 * s, 2));
        o.hit(light(1, 185 * s, 3)); // the next 60 s bucket (180-240 s): a message of its own
        let hits: Vec<(u64, u64, u64)> = o
            .msgs
            .iter()
            .map(|m| match m {
                Msg::Hit(h) => (h.id, h.hits, h.count),
                _ => panic!("only hits were added"),
            })
            .collect();
        assert_eq!(hits, vec![(1, 2, 2), (2, 1, 1), (1, 1, 3)]);
        // a distinct hit carries its value: never merged
        let mut d = light(1, 120 * s, 4);
        d.distinct = Some(7);
        o.hit(d);
        assert_eq!(o.msgs.len(), 4);
    }

    #[test]
    fn hit_ids_tell_rules_entities_and_endpoint_windows_apart() {
        let k = crate::engine::EntityKey::ip("10.0.0.1".parse().unwrap());
        let k2 = crate::engine::EntityKey::ip("10.0.0.2".parse().unwrap());
        let a = hit_id("r", 1, &k, "GET /a");
        assert_eq!(a, hit_id("r", 1, &k, "GET /a"));
        assert_ne!(
            a,
            hit_id("r", 1, &k, "GET /b"),
            "per-endpoint windows of one rule and entity"
        );
        assert_ne!(a, hit_id("r", 2, &k, "GET /a"));
        assert_ne!(a, hit_id("r", 1, &k2, "GET /a"));
    }
}
