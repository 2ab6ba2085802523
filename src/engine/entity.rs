//! Entities: risk that decays, and the attacker profile that links what one entity did.
//!
//! Risk: each alert adds its rule's points to the entity's risk, which halves every
//! `half_life` seconds of packet time. Crossing a threshold (default 50, 100, 200) raises a
//! `risk_threshold` alert and an `entity` event carrying the profile; the level drops again
//! once the risk has decayed below half of it, so a later escalation alerts again.
//!
//! Profile: requests, errors, statuses, endpoints touched, auth outcomes, user agents, the
//! addresses behind a principal and the principals behind an address, and the indicators
//! fired, each list bounded. The table is capped; when full, the sixteenth with the least
//! risk (then idle longest) is evicted and counted.

use std::collections::BTreeMap;
use std::net::IpAddr;

use super::dense::{Dense, Keyed, Strings};
use super::{Alert, EXACT_DISTINCT, EntityKey, MAX_VALUES, Obs, Sample};
use crate::capture::Ts;
use crate::rules::Rule;

#[derive(Debug, Clone)]
pub struct EntityConfig {
    /// Entities tracked per shard. Default 100,000.
    pub max_entities: usize,
    /// Seconds for risk to halve. Default 900.
    pub half_life_s: f64,
    /// Risk levels that raise a `risk_threshold` alert. Default [50, 100, 200].
    pub thresholds: Vec<f64>,
    /// Failed authentications, then a success within `takeover_window_s`: account takeover.
    /// Default 5.
    pub takeover_failures: u32,
    /// Default 600.
    pub takeover_window_s: u64,
    /// Risk points of an account takeover. Default 50.
    pub takeover_risk: f64,
}

impl Default for EntityConfig {
    fn default() -> Self {
        EntityConfig {
            max_entities: 100_000,
            half_life_s: 900.0,
            thresholds: vec![50.0, 100.0, 200.0],
            takeover_failures: 5,
            takeover_window_s: 600,
            takeover_risk: 50.0,
        }
    }
}

const MAX_LIST: usize = 16;
/// Risk from which an entity's traffic is kept out of the learned baselines (one forced-
/// browsing or scanner alert, for about a half-life).
pub const FLAGGED_RISK: f64 = 10.0;
const MAX_ENDPOINTS: usize = 32;

#[derive(Debug, Clone, Default)]
pub struct Indicator {
    pub itype: &'static str,
    pub count: u64,
    pub first: Ts,
    pub last: Ts,
    pub sids: Vec<u64>,
    pub compromise: bool,
}

/// The profile of one entity, in 64 bytes with its key: what nearly every entity has (one
/// status, endpoint, user agent, address and principal, counters) sits inline, the first item
/// of each list; the rest of each list, risk, indicators and login runs live in [`Rare`],
/// allocated only for the entities that need it. Strings are ids into the table's shared
/// [`Strings`]. Aligned to its cache line, so a lookup's key compare loads the whole record.
#[derive(Debug)]
#[repr(align(64))]
struct Entity {
    /// The compact key (see [`EntityTable::compact`]).
    key: u64,
    first: Ts,
    last: Ts,
    /// Low 32 bits of the requests, errors and unauthenticated counts (high halves in
    /// [`Rare::wide`]).
    requests: u32,
    errors: u32,
    unauthenticated: u32,
    /// The first endpoint, user agent and principal ([`NONE`]: none yet).
    endpoint: u32,
    user_agent: u32,
    principal: u32,
    /// The first address, when it is an IPv4 one ([`HAS_ADDR`]).
    addr: u32,
    /// The first status seen ([`HAS_STATUS`]); its count is what the others do not account for.
    status: u16,
    flags: u8,
    rare: Option<Box<Rare>>,
}

const NONE: u32 = u32::MAX;
const HAS_STATUS: u8 = 1;
const HAS_ADDR: u8 = 2;
/// [`Rare::wide`] slots.
const W_REQUESTS: usize = 0;
const W_ERRORS: usize = 1;
const W_UNAUTH: usize = 2;

impl Keyed for Entity {
    type K = u64;
    fn key(&self) -> u64 {
        self.key
    }
}

/// What few entities need: the tails of the lists, risk and indicators, login failures.
#[derive(Debug, Default)]
struct Rare {
    /// The high halves of the inline 32-bit counters.
    wide: [u32; 3],
    risk: f64,
    risk_ts: Ts,
    level: usize,
    fail_run: u32,
    fail_last: Ts,
    /// The current run of failed logins: accounts tried, latest samples (only entities that
    /// fail to log in pay for it).
    fail_detail: Option<Box<FailRun>>,
    /// (status, count) after the first status.
    statuses: Vec<(u16, u64)>,
    /// Requests whose status did not fit the list (so the first status's count is exact).
    statuses_uncounted: u64,
    endpoints: Vec<u32>,
    endpoints_more: u64,
    user_agents: Vec<u32>,
    /// All the addresses after an inline first one (or all of them when the first was IPv6).
    addresses: Vec<IpAddr>,
    principals: Vec<u32>,
    auth_failures: u64,
    auth_successes: u64,
    indicators: Vec<Indicator>,
}

impl Entity {
    fn new(key: u64, ts: Ts) -> Entity {
        Entity {
            key,
            first: ts,
            last: 0,
            requests: 0,
            errors: 0,
            unauthenticated: 0,
            endpoint: NONE,
            user_agent: NONE,
            principal: NONE,
            addr: 0,
            status: 0,
            flags: 0,
            rare: None,
        }
    }

    fn rare(&mut self) -> &mut Rare {
        self.rare.get_or_insert_with(Default::default)
    }

    fn risk(&self) -> f64 {
        self.rare.as_ref().map_or(0.0, |r| r.risk)
    }

    fn indicators(&self) -> &[Indicator] {
        self.rare.as_ref().map_or(&[], |r| &r.indicators)
    }

    fn total(&self, lo: u32, w: usize) -> u64 {
        lo as u64 + ((self.rare.as_ref().map_or(0, |r| r.wide[w]) as u64) << 32)
    }

    fn bump(lo: &mut u32, rare: &mut Option<Box<Rare>>, w: usize) {
        if *lo == u32::MAX {
            *lo = 0;
            rare.get_or_insert_with(Default::default).wide[w] += 1;
        } else {
            *lo += 1;
        }
    }

    /// Add string `s` to the list whose first item is `*first` and tail `tail`, at most `cap`
    /// items. Ok(true): added, Ok(false): listed already, Err: full.
    /// `hint`: see [`Strings::find_hinted`].
    #[allow(clippy::too_many_arguments)]
    fn push_str(
        strings: &mut Strings,
        first: &mut u32,
        rare: &mut Option<Box<Rare>>,
        tail: fn(&mut Rare) -> &mut Vec<u32>,
        s: &str,
        cap: usize,
        hint: &mut u32,
    ) -> Result<bool, ()> {
        // most calls repeat the first value: one compare, no hash (and the id is left in
        // `hint`: the call's other profile then finds the same text at its first try)
        if *first != NONE && strings.get(*first) == s {
            *hint = *first;
            return Ok(false);
        }
        // (an empty list takes it: interned, not looked up first as well)
        if *first == NONE {
            *first = strings.intern(s);
            *hint = *first;
            return Ok(true);
        }
        let id = strings.find_hinted(s, hint);
        if let Some(id) = id
            && (*first == id || rare.as_mut().is_some_and(|r| tail(r).contains(&id)))
        {
            return Ok(false);
        }
        let n = 1 + rare.as_mut().map_or(0, |r| tail(r).len());
        if n >= cap {
            return Err(());
        }
        let id = strings.intern(s);
        *hint = id;
        let v = tail(rare.get_or_insert_with(Default::default));
        if v.is_empty() {
            v.reserve_exact(1);
        }
        v.push(id);
        Ok(true)
    }

    /// [`Entity::push_str`] for a list whose overflow is not counted (user agents, principals):
    /// a full list takes nothing, listed or not, so it is not searched (an address behind
    /// which many principals log in would look each one up on every call).
    #[allow(clippy::too_many_arguments)]
    fn add_str(
        strings: &mut Strings,
        first: &mut u32,
        rare: &mut Option<Box<Rare>>,
        tail: fn(&mut Rare) -> &mut Vec<u32>,
        s: &str,
        cap: usize,
        hint: &mut u32,
    ) {
        if *first != NONE && 1 + rare.as_mut().map_or(0, |r| tail(r).len()) >= cap {
            return;
        }
        let _ = Entity::push_str(strings, first, rare, tail, s, cap, hint);
    }

    fn list(&self, strings: &Strings, first: u32, tail: fn(&Rare) -> &Vec<u32>) -> Vec<String> {
        let mut out = Vec::new();
        if first != NONE {
            out.push(strings.get(first).to_string());
        }
        if let Some(r) = &self.rare {
            out.extend(tail(r).iter().map(|i| strings.get(*i).to_string()));
        }
        out
    }

    /// Every string id the entity holds besides its key.
    fn ids(&self) -> impl Iterator<Item = u32> + '_ {
        let tails = self
            .rare
            .iter()
            .flat_map(|r| r.endpoints.iter().chain(&r.user_agents).chain(&r.principals).copied());
        [self.endpoint, self.user_agent, self.principal]
            .into_iter()
            .filter(|i| *i != NONE)
            .chain(tails)
    }
}

#[derive(Debug, Default)]
struct FailRun {
    first: Ts,
    /// Hashes of the accounts tried, exact up to [`EXACT_DISTINCT`] (then saturating).
    hashes: hashbrown::HashSet<u64>,
    accounts: Vec<String>,
    samples: Vec<Sample>,
}

/// An `entity` event's content.
#[derive(Debug, Clone)]
pub struct EntityReport {
    pub ts: Ts,
    pub key: EntityKey,
    pub risk: f64,
    pub level: usize,
    pub threshold: f64,
    pub first: Ts,
    pub last: Ts,
    pub requests: u64,
    pub errors: u64,
    pub statuses: BTreeMap<u16, u64>,
    pub endpoints: Vec<String>,
    pub endpoints_more: u64,
    pub user_agents: Vec<String>,
    pub addresses: Vec<IpAddr>,
    pub principals: Vec<String>,
    pub auth_failures: u64,
    pub auth_successes: u64,
    pub unauthenticated: u64,
    pub indicators: Vec<Indicator>,
    /// `threshold` (risk crossed a level) or `final` (the end of the run).
    pub reason: &'static str,
}

/// The first `n` characters of `s`.
fn cut_chars(s: &str, n: usize) -> &str {
    // no more bytes than n: no more characters either (the user agents of nearly every call)
    if s.len() <= n {
        return s;
    }
    match s.char_indices().nth(n) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

fn push_bounded<T: PartialEq>(v: &mut Vec<T>, x: T, cap: usize) -> bool {
    if v.contains(&x) {
        return true;
    }
    if v.is_empty() {
        v.reserve_exact(1); // most entities are seen with one of each
    }
    if v.len() < cap {
        v.push(x);
        return true;
    }
    false
}

/// Entity kinds with a fixed code in a compact key; other kinds are shared strings.
const KINDS: [&str; 5] = ["ip", "principal", "api_key", "user_agent", "endpoint"];
/// Kind codes from here on are a shared string's id plus this.
const KIND_STRINGS: u64 = 8;
/// A compact key with this bit is an IPv4 address entity (the address in the low 32 bits).
const KEY_V4: u64 = 1 << 63;

/// The IPv4 address of an `ip` entity whose value is written as [`EntityKey::ip`] writes it.
fn v4_of(k: &EntityKey) -> Option<u32> {
    if k.kind != "ip" || k.value.len() > 15 {
        return None;
    }
    // only the canonical form (four decimal octets, no leading zeros), the one `ip_string`
    // writes, so the value is rebuilt exactly from the address
    let a = canonical_v4(k.value.as_bytes())?;
    debug_assert_eq!(crate::util::ip_string(IpAddr::V4(a.into())), k.value);
    Some(a)
}

/// `s.parse::<Ipv4Addr>()` for at most 15 bytes, by hand: std's parser costs several hundred
/// instructions and runs for every address observation (twice a call with a principal).
fn canonical_v4(s: &[u8]) -> Option<u32> {
    let (mut a, mut i) = (0u32, 0usize);
    for octet in 0..4 {
        if octet > 0 {
            if s.get(i) != Some(&b'.') {
                return None;
            }
            i += 1;
        }
        let start = i;
        let mut v = 0u32;
        while i < s.len() && i - start < 3 && s[i].is_ascii_digit() {
            v = v * 10 + (s[i] - b'0') as u32;
            i += 1;
        }
        // 1 to 3 digits, at most 255, no leading zero
        if i == start || v > 255 || (i - start > 1 && s[start] == b'0') {
            return None;
        }
        a = a << 8 | v;
    }
    (i == s.len()).then_some(a)
}

pub struct EntityTable {
    cfg: EntityConfig,
    map: Dense<Entity>,
    strings: Strings,
    pending: Vec<(Alert, EntityReport)>,
    pub evictions: u64,
    /// Fleet on (`[fleet]`): every risk increment, for the fleet-wide score (the worker
    /// drains it).
    pub fleet_risk: Option<Vec<crate::fleet::FleetRisk>>,
    /// The compact key and position of the entity observed last (the call's address, which
    /// [`EntityTable::flagged_ip`] asks about next): checked, so a stale pair is only a miss.
    last: (u64, u32),
    /// The ids the endpoint, user agent and principal last looked up had (checked before use:
    /// [`Strings::find_hinted`]).
    hints: [u32; 3],
}

impl EntityTable {
    pub fn new(cfg: EntityConfig) -> Self {
        EntityTable {
            cfg,
            map: Dense::default(),
            strings: Strings::default(),
            pending: Vec::new(),
            evictions: 0,
            fleet_risk: None,
            last: (0, u32::MAX),
            hints: [u32::MAX; 3],
        }
    }

    /// Share risk increments with the fleet (see [`EntityTable::fleet_risk`]).
    pub fn with_fleet(mut self, on: bool) -> Self {
        self.fleet_risk = on.then(Vec::new);
        self
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.len() == 0
    }

    /// The compact key of `k` if every string in it is known (else no entity has it).
    /// Kind (a code, or a shared string's id plus [`KIND_STRINGS`]) in bits 32..63 and the
    /// value's string id in the low 32, or [`KEY_V4`] and the address: equal keys, equal
    /// compact keys.
    fn compact(&self, k: &EntityKey) -> Option<u64> {
        if let Some(a) = v4_of(k) {
            return Some(KEY_V4 | a as u64);
        }
        let kind = match KINDS.iter().position(|x| *x == k.kind) {
            Some(i) => i as u64,
            None => self.strings.find(&k.kind)? as u64 + KIND_STRINGS,
        };
        Some(kind << 32 | self.strings.find(&k.value)? as u64)
    }

    /// The compact key of `k`, its strings interned (one reference each).
    fn compact_interned(&mut self, k: &EntityKey) -> u64 {
        if let Some(a) = v4_of(k) {
            return KEY_V4 | a as u64;
        }
        let kind = match KINDS.iter().position(|x| *x == k.kind) {
            Some(i) => i as u64,
            None => self.strings.intern(&k.kind) as u64 + KIND_STRINGS,
        };
        kind << 32 | self.strings.intern(&k.value) as u64
    }

    fn key_of(&self, c: u64) -> EntityKey {
        if c & KEY_V4 != 0 {
            return EntityKey::ip(IpAddr::V4((c as u32).into()));
        }
        let kind = c >> 32;
        EntityKey {
            kind: if kind < KIND_STRINGS {
                std::borrow::Cow::Borrowed(KINDS[kind as usize])
            } else {
                self.strings.get((kind - KIND_STRINGS) as u32).to_string().into()
            },
            value: self.strings.get(c as u32).to_string(),
        }
    }

    fn get(&self, k: &EntityKey) -> Option<&Entity> {
        self.map.get(self.compact(k)?)
    }

    fn decay(&self, e: &Entity, now: Ts) -> f64 {
        let Some(r) = &e.rare else { return 0.0 };
        if now <= r.risk_ts || r.risk == 0.0 {
            return r.risk;
        }
        let dt = (now - r.risk_ts) as f64 / 1e9;
        r.risk * 0.5f64.powf(dt / self.cfg.half_life_s.max(1e-3))
    }

    /// The entity's risk now.
    /// Does the entity carry attack indicators now (decayed risk of at least
    /// [`FLAGGED_RISK`])? Its traffic then teaches no baseline.
    pub fn flagged(&self, k: &EntityKey, now: Ts) -> bool {
        self.risk(k, now) >= FLAGGED_RISK
    }

    /// [`EntityTable::flagged`] for the `ip` entity of `ip`, without writing its key.
    pub fn flagged_ip(&self, ip: IpAddr, now: Ts) -> bool {
        match ip {
            IpAddr::V4(a) => {
                let c = KEY_V4 | u32::from(a) as u64;
                let e = match self.last {
                    (k, i) if k == c && (i as usize) < self.map.len() && self.map.at(i).key == c => {
                        Some(self.map.at(i))
                    }
                    _ => self.map.get(c),
                };
                e.is_some_and(|e| self.decay(e, now) >= FLAGGED_RISK)
            }
            IpAddr::V6(_) => self.flagged(&EntityKey::ip(ip), now),
        }
    }

    pub fn risk(&self, k: &EntityKey, now: Ts) -> f64 {
        self.get(k).map_or(0.0, |e| self.decay(e, now))
    }

    /// The entity's position, created when new.
    fn entry(&mut self, k: &EntityKey, ts: Ts) -> u32 {
        self.entry_at(k, None, ts)
    }

    /// [`EntityTable::entry`], given `k`'s compact key when the caller knows it.
    fn entry_at(&mut self, k: &EntityKey, compact: Option<u64>, ts: Ts) -> u32 {
        if let Some(i) = compact.or_else(|| self.compact(k)).and_then(|c| self.map.find(c)) {
            return i;
        }
        if self.map.len() >= self.cfg.max_entities {
            self.evict(ts);
        }
        let c = self.compact_interned(k);
        self.map.insert_new(Entity::new(c, ts))
    }

    /// Drop the sixteenth with the least (decayed) risk, idle longest first.
    fn evict(&mut self, now: Ts) {
        let n = (self.map.len() / 16).max(1);
        let mut scored: Vec<(u64, Ts, EntityKey, u64)> = self
            .map
            .iter()
            .map(|e| ((self.decay(e, now) * 1000.0) as u64, e.last, self.key_of(e.key), e.key))
            .collect();
        let n = n.min(scored.len());
        if n == 0 {
            return;
        }
        scored.select_nth_unstable(n - 1);
        for (_, _, _, c) in scored.into_iter().take(n) {
            if let Some(e) = self.map.remove(c) {
                self.release(e);
            }
            self.evictions += 1;
        }
    }

    /// Let go of the strings a removed entity held.
    fn release(&mut self, e: Entity) {
        for i in e.ids() {
            self.strings.release(i);
        }
        if e.key & KEY_V4 == 0 {
            let kind = e.key >> 32;
            if kind >= KIND_STRINGS {
                self.strings.release((kind - KIND_STRINGS) as u32);
            }
            self.strings.release(e.key as u32);
        }
    }

    /// Where the strings last held the endpoint being observed (see `Strings::find_hinted`):
    /// a caller that knows the call's endpoint record sets it first and keeps it after.
    pub(super) fn endpoint_hint(&mut self) -> &mut u32 {
        &mut self.hints[0]
    }

    /// Fold a transaction into the entity's profile. Returns an account-takeover alert when a
    /// success follows a run of failures.
    pub fn observe(&mut self, o: &Obs) -> Option<Alert> {
        self.observe_at(o, None)
    }

    /// [`EntityTable::observe`] of a call's own address: `o.key` is `EntityKey::ip(o.client)`,
    /// whose compact key an IPv4 address gives without reading the key's text back.
    pub(super) fn observe_client(&mut self, o: &Obs) -> Option<Alert> {
        let compact = match o.client {
            IpAddr::V4(a) => Some(KEY_V4 | u32::from(a) as u64),
            IpAddr::V6(_) => None,
        };
        debug_assert_eq!(compact.map(|c| c as u32), v4_of(&o.key), "{:?}", o.key);
        self.observe_at(o, compact)
    }

    fn observe_at(&mut self, o: &Obs, compact: Option<u64>) -> Option<Alert> {
        let (takeover_window_s, takeover_failures) = (self.cfg.takeover_window_s, self.cfg.takeover_failures);
        let i = self.entry_at(&o.key, compact, o.ts);
        self.last = (self.map.at(i).key, i);
        let (strings, hints) = (&mut self.strings, &mut self.hints);
        let e = self.map.at_mut(i);
        e.first = e.first.min(o.ts);
        e.last = e.last.max(o.ts);
        Entity::bump(&mut e.requests, &mut e.rare, W_REQUESTS);
        if o.status >= 400 {
            Entity::bump(&mut e.errors, &mut e.rare, W_ERRORS);
        }
        if e.flags & HAS_STATUS == 0 {
            e.flags |= HAS_STATUS;
            e.status = o.status;
        } else if e.status != o.status {
            let r = e.rare();
            let full = 1 + r.statuses.len() >= MAX_LIST;
            match r.statuses.iter_mut().find(|(s, _)| *s == o.status) {
                Some((_, n)) => *n += 1,
                None if !full => {
                    if r.statuses.is_empty() {
                        r.statuses.reserve_exact(1);
                    }
                    r.statuses.push((o.status, 1))
                }
                None => r.statuses_uncounted += 1,
            }
        }
        // (a value already listed is not copied: most calls repeat the last one's)
        if Entity::push_str(
            strings,
            &mut e.endpoint,
            &mut e.rare,
            |r| &mut r.endpoints,
            &o.endpoint,
            MAX_ENDPOINTS,
            &mut hints[0],
        )
        .is_err()
        {
            e.rare().endpoints_more += 1;
        }
        if let Some(ua) = &o.user_agent {
            let cut = cut_chars(ua, 200);
            Entity::add_str(
                strings,
                &mut e.user_agent,
                &mut e.rare,
                |r| &mut r.user_agents,
                cut,
                MAX_LIST / 2,
                &mut hints[1],
            );
        }
        let has_addr = e.flags & HAS_ADDR != 0;
        let listed = (has_addr && o.client == IpAddr::V4(e.addr.into()))
            || e.rare.as_ref().is_some_and(|r| r.addresses.contains(&o.client));
        if !listed {
            match o.client {
                IpAddr::V4(a) if !has_addr && e.rare.as_ref().is_none_or(|r| r.addresses.is_empty()) => {
                    e.flags |= HAS_ADDR;
                    e.addr = a.into();
                }
                ip => {
                    let r = e.rare();
                    if (has_addr as usize) + r.addresses.len() < MAX_LIST {
                        push_bounded(&mut r.addresses, ip, MAX_LIST);
                    }
                }
            }
        }
        if let Some(pr) = &o.principal {
            Entity::add_str(
                strings,
                &mut e.principal,
                &mut e.rare,
                |r| &mut r.principals,
                pr,
                MAX_LIST / 2,
                &mut hints[2],
            );
        }
        if !o.authenticated {
            Entity::bump(&mut e.unauthenticated, &mut e.rare, W_UNAUTH);
        }
        let window = takeover_window_s.saturating_mul(1_000_000_000);
        if o.auth_failure {
            let e = e.rare();
            e.auth_failures += 1;
            // Only failed logins make a takeover run (not an expired token's 401s).
            if o.login_failure {
                if o.ts.saturating_sub(e.fail_last) > window {
                    e.fail_run = 0;
                    e.fail_detail = None;
                }
                e.fail_run += 1;
                e.fail_last = o.ts;
                if let Some(l) = &o.login {
                    let d = e.fail_detail.get_or_insert_with(|| {
                        Box::new(FailRun {
                            first: o.ts,
                            ..FailRun::default()
                        })
                    });
                    if let Some(a) = &l.account {
                        if d.hashes.len() < EXACT_DISTINCT {
                            d.hashes.insert(super::hash_of(a.as_str()));
                        }
                        if d.accounts.len() < MAX_VALUES && !d.accounts.contains(a) {
                            d.accounts.push(a.clone());
                        }
                    }
                    if d.samples.len() >= 4 {
                        d.samples.remove(0);
                    }
                    d.samples.push(l.sample.clone());
                }
            }
            return None;
        }
        if !o.login_success {
            return None;
        }
        let e = e.rare();
        e.auth_successes += 1;
        let run = e.fail_run;
        let recent = o.ts.saturating_sub(e.fail_last) <= window;
        e.fail_run = 0;
        let detail = e.fail_detail.take();
        if run < takeover_failures || !recent || takeover_failures == 0 {
            return None;
        }
        let detail = detail.unwrap_or_default();
        let (tried, estimated) = (detail.hashes.len() as u64, detail.hashes.len() >= EXACT_DISTINCT);
        let first = if detail.first > 0 { detail.first } else { o.ts };
        let mut samples = detail.samples;
        if let Some(l) = &o.login {
            samples.push(l.sample.clone());
        }
        let rule = takeover_rule(&self.cfg);
        let entity_risk = self.add_risk(&o.key, o.ts, &rule);
        Some(Alert {
            ts: o.ts,
            sid: rule.sid,
            rev: 1,
            signature: rule.signature.clone(),
            category: rule.category(),
            severity: 1,
            itype: rule.itype,
            compromise: true,
            key: o.key.clone().into_owned(),
            risk: rule.risk,
            entity_risk,
            host: o
                .login
                .as_ref()
                .and_then(|l| l.http.hostname.clone())
                .unwrap_or_default(),
            endpoint: o.endpoint.to_string(),
            window_s: takeover_window_s as f64,
            count: run as u64 + 1,
            distinct: (tried > 0).then_some(tried),
            first,
            last: o.ts,
            owasp: rule.owasp.clone(),
            mitre: rule.mitre.clone(),
            samples,
            meta: Some(o.meta.clone().into_owned()),
            http: o.login.as_ref().map(|l| l.http.clone()),
            rule_id: rule.id.clone(),
            distinct_estimated: estimated,
            values: detail.accounts,
            account: o.login.as_ref().and_then(|l| l.account.clone()),
        })
    }

    /// Add a rule's risk to the entity (after decay) and record the indicator; crossing a
    /// threshold queues a `risk_threshold` alert and an `entity` report. Returns the risk.
    pub fn add_risk(&mut self, k: &EntityKey, ts: Ts, r: &Rule) -> f64 {
        let thresholds = self.cfg.thresholds.clone();
        let half_life = self.cfg.half_life_s;
        let now_risk = self.get(k).map_or(0.0, |e| self.decay(e, ts));
        let i = self.entry(k, ts);
        let e = self.map.at_mut(i);
        let x = e.rare();
        x.risk = now_risk + r.risk;
        x.risk_ts = ts;
        let n = x.indicators.len();
        match x.indicators.iter_mut().find(|i| i.itype == r.itype) {
            Some(i) => {
                i.count += 1;
                i.last = ts;
                push_bounded(&mut i.sids, r.sid, 8);
            }
            None if n < 16 => x.indicators.push(Indicator {
                itype: r.itype,
                count: 1,
                first: ts,
                last: ts,
                sids: vec![r.sid],
                compromise: r.compromise,
            }),
            None => {}
        }
        // Hysteresis: the level drops once risk decayed below half its threshold.
        while x.level > 0 && now_risk < thresholds[x.level - 1] / 2.0 {
            x.level -= 1;
        }
        let risk = x.risk;
        let mut crossed = None;
        while x.level < thresholds.len() && risk >= thresholds[x.level] {
            x.level += 1;
            crossed = Some(x.level);
        }
        if let Some(level) = crossed {
            let e = self.map.at(i);
            let report = self.report(k.clone(), e, ts, thresholds[level - 1]);
            let alert = risk_alert(&report, ts, level, thresholds[level - 1], risk, half_life);
            self.pending.push((alert, report));
        }
        if self.fleet_risk.is_some() && r.risk > 0.0 {
            let report = self.report(k.clone(), self.map.at(i), ts, 0.0);
            if let Some(q) = self.fleet_risk.as_mut() {
                q.push(crate::fleet::FleetRisk {
                    inc: r.risk,
                    ts,
                    half_life_s: half_life,
                    thresholds,
                    report: Box::new(report),
                });
            }
        }
        risk
    }

    pub fn take_escalations(&mut self) -> Vec<(Alert, EntityReport)> {
        std::mem::take(&mut self.pending)
    }

    /// The end of a run: the profile of every entity that carried an indicator, with its true
    /// totals (the threshold reports are snapshots taken when risk crossed a level), riskiest
    /// first, at most `cap` of them; the second value counts those left out.
    pub fn final_reports(&self, cap: usize) -> (Vec<EntityReport>, u64) {
        let mut v: Vec<(EntityKey, &Entity)> = self
            .map
            .iter()
            .filter(|e| !e.indicators().is_empty())
            .map(|e| (self.key_of(e.key), e))
            .collect();
        let n = v.len();
        v.sort_by(|a, b| {
            b.1.risk()
                .total_cmp(&a.1.risk())
                .then_with(|| a.0.value.cmp(&b.0.value))
        });
        let out = v
            .into_iter()
            .take(cap)
            .map(|(k, e)| {
                let mut r = self.report(k, e, e.last, 0.0);
                r.risk = self.decay(e, e.last);
                r.reason = "final";
                r
            })
            .collect::<Vec<_>>();
        let left = (n - out.len()) as u64;
        (out, left)
    }

    fn report(&self, key: EntityKey, e: &Entity, ts: Ts, threshold: f64) -> EntityReport {
        let rare = e.rare.as_deref();
        let requests = e.total(e.requests, W_REQUESTS);
        let mut statuses: BTreeMap<u16, u64> = rare.map(|r| r.statuses.iter().copied().collect()).unwrap_or_default();
        if e.flags & HAS_STATUS != 0 {
            let others: u64 = statuses.values().sum::<u64>() + rare.map_or(0, |r| r.statuses_uncounted);
            statuses.insert(e.status, requests - others);
        }
        let mut addresses = Vec::new();
        if e.flags & HAS_ADDR != 0 {
            addresses.push(IpAddr::V4(e.addr.into()));
        }
        if let Some(r) = rare {
            addresses.extend_from_slice(&r.addresses);
        }
        let s = &self.strings;
        EntityReport {
            ts,
            key,
            risk: e.risk(),
            level: rare.map_or(0, |r| r.level),
            threshold,
            first: e.first,
            last: e.last.max(ts),
            requests,
            errors: e.total(e.errors, W_ERRORS),
            statuses,
            endpoints: e.list(s, e.endpoint, |r| &r.endpoints),
            endpoints_more: rare.map_or(0, |r| r.endpoints_more),
            user_agents: e.list(s, e.user_agent, |r| &r.user_agents),
            addresses,
            principals: e.list(s, e.principal, |r| &r.principals),
            auth_failures: rare.map_or(0, |r| r.auth_failures),
            auth_successes: rare.map_or(0, |r| r.auth_successes),
            unauthenticated: e.total(e.unauthenticated, W_UNAUTH),
            indicators: e.indicators().to_vec(),
            reason: "threshold",
        }
    }
}

/// The `risk_threshold` alert of an entity whose risk reached `risk` at `ts`, crossing
/// `level` (its threshold `threshold`), from the entity's report: the local engine's and the
/// fleet's (a level crossed fleet-wide) are the same alert.
pub fn risk_alert(p: &EntityReport, ts: Ts, level: usize, threshold: f64, risk: f64, half_life_s: f64) -> Alert {
    let compromise = p.indicators.iter().any(|i| i.compromise);
    let types: Vec<&'static str> = p.indicators.iter().map(|i| i.itype).collect();
    Alert {
        ts,
        sid: 9_199_000 + level as u64,
        rev: 1,
        signature: format!("APITAP entity risk crossed {threshold} ({})", types.join(", ")),
        category: if compromise {
            "Indicator of compromise"
        } else {
            "Indicator of attack"
        },
        severity: if level >= 2 { 1 } else { 2 },
        itype: "risk_threshold",
        compromise,
        key: p.key.clone(),
        risk: 0.0,
        entity_risk: risk,
        host: String::new(),
        endpoint: String::new(),
        window_s: half_life_s,
        count: p.indicators.iter().map(|i| i.count).sum(),
        distinct: Some(types.len() as u64),
        first: p.first,
        last: ts,
        owasp: Vec::new(),
        mitre: Vec::new(),
        samples: Vec::new(),
        meta: None,
        http: None,
        rule_id: "risk-threshold".into(),
        distinct_estimated: false,
        values: Vec::new(),
        account: None,
    }
}

fn takeover_rule(cfg: &EntityConfig) -> Rule {
    let sig = format!(
        "APITAP Successful login after {} or more failed authentications",
        cfg.takeover_failures
    );
    builtin(
        "account-takeover",
        9_100_300,
        "account_takeover",
        &sig,
        cfg.takeover_risk,
        1,
        true,
        &["API2:2023"],
        &["T1078", "T1110"],
    )
}

/// The rule record of a built-in detector (its sid, type, tags and risk).
#[allow(clippy::too_many_arguments)]
pub fn builtin(
    id: &str,
    sid: u64,
    itype: &'static str,
    signature: &str,
    risk: f64,
    severity: u8,
    compromise: bool,
    owasp: &[&str],
    mitre: &[&str],
) -> Rule {
    Rule {
        id: id.into(),
        sid,
        rev: 1,
        signature: signature.into(),
        itype,
        compromise,
        severity,
        risk,
        owasp: owasp.iter().map(|s| s.to_string()).collect(),
        mitre: mitre.iter().map(|s| s.to_string()).collect(),
        entity: vec![crate::rules::EntityKind::Ip],
        scope: Default::default(),
        cond: crate::rules::Cond::All(Vec::new()),
        threshold: crate::rules::Threshold {
            count: 0,
            window_ns: 0,
            distinct: None,
            per_endpoint: false,
            found: crate::rules::Found::Anything,
        },
        quiet_ns: 0,
        escalate: crate::rules::DEFAULT_ESCALATE,
        enabled: true,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::flow::FlowMeta;

    const S: u64 = 1_000_000_000;

    fn obs(key: EntityKey, i: u64, client: IpAddr, endpoint: &str, status: u16) -> Obs<'static> {
        Obs {
            key: std::borrow::Cow::Owned(key),
            ts: 1_000 * S + i * S,
            client,
            endpoint: endpoint.to_string().into(),
            status,
            user_agent: Some(format!("ua-{}", i % 11).into()),
            principal: Some(format!("user-{}", i % 9).into()),
            auth_failure: false,
            login_failure: false,
            login_success: false,
            authenticated: i % 4 != 0,
            meta: std::borrow::Cow::Owned(FlowMeta {
                flow_id: i,
                community_id: Arc::from("1:x"),
                src: client,
                sport: 40000,
                dst: IpAddr::from([10, 0, 0, 1]),
                dport: 80,
            }),
            login: None,
        }
    }

    fn rule() -> Rule {
        builtin("r", 1, "scanner", "s", 60.0, 2, false, &[], &[])
    }

    /// Past every list's cap: the compact profile (first items inline, the rest apart, the
    /// first status's count derived) reports what a plain list per field reports.
    #[test]
    fn a_compact_profile_reports_every_list_and_count_as_kept() {
        let mut t = EntityTable::new(EntityConfig::default());
        let key = EntityKey {
            kind: "principal".into(),
            value: "alice".into(),
        };
        let mut want_status: BTreeMap<u16, u64> = BTreeMap::new();
        let (mut eps, mut uas, mut addrs, mut prs) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let (mut more, mut errors) = (0, 0);
        for i in 0..200u64 {
            // the first address is IPv6: every address then goes to the list apart
            let client = if i == 0 {
                "2001:db8::1".parse().expect("v6")
            } else {
                IpAddr::from([10, 1, 0, (i % 20) as u8])
            };
            let status = [200, 200, 404, 500][i as usize % 4] + (i as u16 / 10);
            let ep = format!("GET /e{}", i % 45);
            let o = obs(key.clone(), i, client, &ep, status);
            errors += (status >= 400) as u64;
            if want_status.contains_key(&status) || want_status.len() < 16 {
                *want_status.entry(status).or_default() += 1;
            }
            if !eps.contains(&ep) {
                if eps.len() < 32 {
                    eps.push(ep);
                } else {
                    more += 1;
                }
            }
            let ua = o.user_agent.clone().expect("ua").into_owned();
            if !uas.contains(&ua) && uas.len() < 8 {
                uas.push(ua);
            }
            if !addrs.contains(&client) && addrs.len() < 16 {
                addrs.push(client);
            }
            let p = o.principal.clone().expect("principal").into_owned();
            if !prs.contains(&p) && prs.len() < 8 {
                prs.push(p);
            }
            assert!(t.observe(&o).is_none());
        }
        t.add_risk(&key, 1_200 * S, &rule());
        let (reports, left) = t.final_reports(10);
        assert_eq!((reports.len(), left), (1, 0));
        let r = &reports[0];
        assert_eq!(r.key, key);
        assert_eq!((r.requests, r.errors, r.unauthenticated), (200, errors, 50));
        assert_eq!(errors, 100);
        assert_eq!(r.statuses, want_status);
        assert_eq!((&r.endpoints, r.endpoints_more), (&eps, more));
        assert_eq!((&r.user_agents, &r.addresses, &r.principals), (&uas, &addrs, &prs));
        assert_eq!((r.first, r.last), (1_000 * S, 1_199 * S));
        assert_eq!(r.indicators.len(), 1);
    }

    #[test]
    fn counters_past_four_billion_carry_into_their_high_halves() {
        let mut t = EntityTable::new(EntityConfig::default());
        let ip = IpAddr::from([10, 2, 0, 1]);
        let key = EntityKey::ip(ip);
        t.observe(&obs(key.clone(), 0, ip, "GET /a", 500));
        let i = t.map.find(t.compact(&key).expect("known")).expect("entity");
        let e = t.map.at_mut(i);
        (e.requests, e.errors, e.unauthenticated) = (u32::MAX, u32::MAX, u32::MAX);
        t.observe(&obs(key.clone(), 4, ip, "GET /a", 500));
        t.observe(&obs(key.clone(), 5, ip, "GET /a", 200));
        t.add_risk(&key, 1_010 * S, &rule());
        let r = &t.final_reports(1).0[0];
        let big = u32::MAX as u64;
        assert_eq!((r.requests, r.errors, r.unauthenticated), (big + 2, big + 1, big + 1));
        assert_eq!(r.statuses.get(&500), Some(&(big + 1)));
        assert_eq!(r.addresses, vec![ip], "the inline IPv4 address");
    }

    /// The records' sizes, which the per-client memory figures rest on (64-bit targets).
    #[test]
    fn entity_baseline_and_window_records_stay_compact() {
        use std::mem::size_of;
        let sizes = (
            size_of::<Entity>(),
            super::super::baseline::RATE_RECORD,
            size_of::<super::super::window::Window>(),
            size_of::<super::super::window::Episode>(),
        );
        eprintln!("entity, rate, window, episode: {sizes:?}");
        assert!(
            sizes.0 <= 64 && sizes.1 <= 32 && sizes.2 <= 64 && sizes.3 <= 80,
            "{sizes:?}"
        );
    }

    /// A full table evicts; the strings only evicted entities held go with them.
    #[test]
    fn evicted_entities_let_go_of_their_strings() {
        let mut t = EntityTable::new(EntityConfig {
            max_entities: 32,
            ..EntityConfig::default()
        });
        for i in 0..1000u64 {
            let key = EntityKey {
                kind: "api_key".into(),
                value: format!("k{i}"),
            };
            let mut o = obs(key, i, IpAddr::from([10, 3, 0, 1]), &format!("GET /only/{i}"), 200);
            o.user_agent = Some(format!("agent {i}").into());
            o.principal = None;
            t.observe(&o);
        }
        assert!(
            t.len() <= 32 && t.evictions >= 968,
            "{} kept, {} evicted",
            t.len(),
            t.evictions
        );
        // each entity holds its value, endpoint and agent: nothing else is left
        assert_eq!(t.strings.len(), 3 * t.len());
        // the newest are kept and still found
        let last = EntityKey {
            kind: "api_key".into(),
            value: "k999".into(),
        };
        assert!(t.get(&last).is_some());
        assert_eq!(t.key_of(t.compact(&last).expect("known")), last);
    }

    /// Observing a call's own address by the address (`observe_client`) builds the profiles,
    /// takeover alerts and evictions that observing it by its key text builds, IPv4 and IPv6.
    #[test]
    fn observing_the_client_by_its_address_is_observing_it_by_its_key() {
        let cfg = EntityConfig {
            max_entities: 40,
            takeover_failures: 2,
            ..EntityConfig::default()
        };
        let (mut by_key, mut by_addr) = (EntityTable::new(cfg.clone()), EntityTable::new(cfg));
        let r = rule();
        let mut alerts = 0;
        for i in 0..2000u64 {
            let n = (i * 7919) % 61;
            let client = if n % 5 == 0 {
                IpAddr::from([0x2001, 0xdb8, 0, 0, 0, 0, 0, n as u16])
            } else {
                IpAddr::from([10, 4, (n / 3) as u8, n as u8])
            };
            let mut o = obs(EntityKey::ip(client), i, client, &format!("GET /e{}", i % 37), 200);
            o.auth_failure = i % 4 != 3;
            o.login_failure = o.auth_failure;
            o.login_success = i % 4 == 3;
            let (a, b) = (by_key.observe(&o), by_addr.observe_client(&o));
            assert_eq!(format!("{a:?}"), format!("{b:?}"), "call {i}");
            alerts += a.is_some() as usize;
            if i % 9 == 0 {
                by_key.add_risk(&o.key, o.ts, &r);
                by_addr.add_risk(&o.key, o.ts, &r);
            }
        }
        let (a, b) = (by_key.final_reports(100), by_addr.final_reports(100));
        assert_eq!(format!("{a:?}"), format!("{b:?}"));
        assert_eq!((by_key.len(), by_key.evictions), (by_addr.len(), by_addr.evictions));
        assert!(
            alerts > 0 && by_key.evictions > 0 && !a.0.is_empty(),
            "{alerts} {}",
            by_key.evictions
        );
    }

    /// Whatever the endpoint hint a caller sets (the one an endpoint record kept, stale,
    /// freed, another text's, out of range), the profiles, evictions and strings are those of
    /// a table left to its own hints; and after a call the hint names the call's endpoint.
    #[test]
    fn any_endpoint_hint_builds_the_same_profiles() {
        let cfg = EntityConfig {
            max_entities: 30,
            ..EntityConfig::default()
        };
        let (mut own, mut told) = (EntityTable::new(cfg.clone()), EntityTable::new(cfg));
        // per endpoint, the hint its record would keep
        let mut kept = [u32::MAX; 23];
        for i in 0..3000u64 {
            let n = (i * 7919) % 47;
            let client = IpAddr::from([10, 5, 0, n as u8]);
            let e = (i * 31 % 23) as usize;
            let endpoint = format!("GET /e{e}");
            let mut o = obs(EntityKey::ip(client), i, client, &endpoint, 200);
            let principal = EntityKey {
                kind: "principal".into(),
                value: format!("user-{}", i % 9),
            };
            *told.endpoint_hint() = match i % 5 {
                0 => (i * 13 % 80) as u32,
                1 => u32::MAX,
                _ => kept[e],
            };
            for t in [&mut own, &mut told] {
                o.key = std::borrow::Cow::Owned(principal.clone());
                t.observe(&o);
                o.key = std::borrow::Cow::Owned(EntityKey::ip(client));
                t.observe_client(&o);
            }
            kept[e] = *told.endpoint_hint();
            assert_eq!(told.strings.get(kept[e]), endpoint, "call {i}");
        }
        let (a, b) = (own.final_reports(100), told.final_reports(100));
        assert_eq!(format!("{a:?}"), format!("{b:?}"));
        assert_eq!(
            (own.len(), own.evictions, own.strings.len()),
            (told.len(), told.evictions, told.strings.len())
        );
        assert!(own.evictions > 0);
    }

    /// Adding to a list whose overflow is not counted leaves the list, the shared strings and
    /// their references as pushing does, through the first item, repeats, a full list and
    /// values seen before and after it filled.
    #[test]
    fn adding_to_a_full_uncounted_list_is_pushing_to_it() {
        let (mut sa, mut sb) = (Strings::default(), Strings::default());
        let (mut fa, mut fb) = (NONE, NONE);
        let (mut ra, mut rb): (Option<Box<Rare>>, Option<Box<Rare>>) = (None, None);
        let tail: fn(&mut Rare) -> &mut Vec<u32> = |r| &mut r.principals;
        let (mut ha, mut hb) = (u32::MAX, u32::MAX);
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for i in 0..5000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // mostly the first few values, now and then one of many others
            let v = if i % 3 == 0 { x % 40 } else { x % 5 };
            let s = format!("user-{v}");
            let _ = Entity::push_str(&mut sa, &mut fa, &mut ra, tail, &s, MAX_LIST / 2, &mut ha);
            Entity::add_str(&mut sb, &mut fb, &mut rb, tail, &s, MAX_LIST / 2, &mut hb);
            let list = |st: &Strings, f: u32, r: &Option<Box<Rare>>| {
                let mut out = vec![st.get(f).to_string()];
                out.extend(
                    r.iter()
                        .flat_map(|r| r.principals.iter().map(|i| st.get(*i).to_string())),
                );
                out
            };
            assert_eq!(list(&sa, fa, &ra), list(&sb, fb, &rb), "call {i}");
            assert_eq!(sa.len(), sb.len());
        }
        assert_eq!(
            1 + rb.as_ref().map_or(0, |r| r.principals.len()),
            MAX_LIST / 2,
            "the list filled"
        );
        // letting go of every reference frees every string: the reference counts matched too
        for (st, f, r) in [(&mut sa, fa, &ra), (&mut sb, fb, &rb)] {
            st.release(f);
            for i in r.iter().flat_map(|r| r.principals.iter().copied()) {
                st.release(i);
            }
            assert_eq!(st.len(), 0);
        }
    }

    /// The hand-written parser of an `ip` entity's value takes exactly what std's takes.
    #[test]
    fn canonical_v4_parses_what_std_parses() {
        let std_v4 = |b: &[u8]| {
            std::str::from_utf8(b)
                .ok()
                .and_then(|s| s.parse::<std::net::Ipv4Addr>().ok())
                .map(u32::from)
        };
        let mut cases: Vec<Vec<u8>> = [
            "0.0.0.0",
            "255.255.255.255",
            "256.1.1.1",
            "1.2.3",
            "1.2.3.4.",
            ".1.2.3.4",
            "1..2.3",
            "01.2.3.4",
            "1.2.3.04",
            "00.0.0.0",
            "1.2.3.4 ",
            " 1.2.3.4",
            "1.2.3.-4",
            "+1.2.3.4",
            "1234.1.1.1",
            "1.2.3.1000",
            "10.0.0.1",
            "192.168.100.200",
            "",
            ".",
            "...",
            "1.2.3.4\0",
            "１.2.3.4",
            "0x1.2.3.4",
            "1.2.3.4a",
        ]
        .iter()
        .map(|s| s.as_bytes().to_vec())
        .collect();
        cases.push(vec![b'1', b'.', 0xff, b'.', b'3', b'.', b'4']);
        // random strings over digits and dots, and some hostile bytes
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..200_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let n = (x % 16) as usize;
            let s = (0..n)
                .map(|k| {
                    let r = (x >> (4 + k * 3)) as usize ^ k.wrapping_mul(x as usize >> 9);
                    const ALPHABET: &[u8] = b"0123456789...0125\x00\xff";
                    ALPHABET[r % ALPHABET.len()]
                })
                .collect();
            cases.push(s);
        }
        // every address written canonically parses back to itself
        for a in [0u32, 1, 0x0a00_0001, 0xc0a8_64c8, 0xffff_ffff, 0x0100_0000, 0x6465_0a00] {
            cases.push(crate::util::ip_string(IpAddr::V4(a.into())).into_bytes());
        }
        let mut valid = 0;
        for c in &cases {
            assert_eq!(super::canonical_v4(c), std_v4(c), "{:?}", String::from_utf8_lossy(c));
            valid += std_v4(c).is_some() as usize;
        }
        assert!(valid > 100, "only {valid} valid addresses generated");
    }

    /// Asked right after an observation (the position remembered) or about any other address,
    /// through evictions that move entities, `flagged_ip` answers what a lookup by key answers.
    #[test]
    fn flagged_ip_after_an_observation_is_the_lookup_by_key() {
        let mut t = EntityTable::new(EntityConfig {
            max_entities: 48,
            ..EntityConfig::default()
        });
        let ip = |n: u64| IpAddr::from([10, 9, (n / 256) as u8, (n % 256) as u8]);
        let r = rule();
        let mut flagged = 0;
        for i in 0..3000u64 {
            let n = (i * 7919) % 97;
            let o = obs(EntityKey::ip(ip(n)), i, ip(n), "GET /x", 200);
            t.observe(&o);
            if n % 5 == 0 {
                t.add_risk(&EntityKey::ip(ip(n)), o.ts, &r);
            }
            for m in [n, (n + 1) % 97, (n * 3) % 97, 96] {
                let (a, b) = (t.flagged_ip(ip(m), o.ts), t.flagged(&EntityKey::ip(ip(m)), o.ts));
                assert_eq!(a, b, "call {i}, address {m}");
                flagged += a as usize;
            }
        }
        assert!(
            t.evictions > 0 && flagged > 0,
            "{} evictions, {flagged} flagged",
            t.evictions
        );
    }
}
