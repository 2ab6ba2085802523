//! The rule engine and entity risk (SPEC §7), one per worker shard.
//!
//! Matching runs where the transaction is (the shard of its client address). Threshold
//! windows, risk and profiles live with the entity's *owner* shard: an address's own shard,
//! or for principals, API keys and user agents the shard their key hashes to; a match for an
//! entity owned elsewhere travels there as a small [`Cross`] message. All time is packet time.
//!
//! Bounds: a window holds at most `count + 1` timestamps or distinct values; the state table
//! and the entity table are capped, and when full the least risky, longest idle sixteenth is
//! evicted (counted), so a flood of spoofed sources cannot exhaust memory.

mod auth;
pub mod baseline;
mod client;
mod dense;
pub mod entity;
mod msg;
mod plan;
mod view;
mod window;

use std::hash::{DefaultHasher, Hash, Hasher};
use std::net::IpAddr;
use std::sync::Arc;

use hashbrown::HashMap;

use crate::capture::Ts;
use crate::detect::{Detector, Inputs, Verdicts};
use crate::flow::FlowMeta;
use crate::http::Transaction;
use crate::redact::Auth;
use crate::rules::{Cond, EntityKind, Field, ParamLoc, Rule, RuleSet};
pub use auth::{AuthTracker, BypassConfig};
pub use client::{Cidr, client_ip};
pub use entity::{EntityConfig, EntityTable};
pub use msg::{Alert, Cross, EpObs, Hit, HttpBrief, LoginFacts, Obs, Out, Sample};
use msg::{Ctx, HitCtx, HitRef};
pub use view::{KeyBufs, View};
use window::Window;
pub use window::{EXACT_DISTINCT, MAX_VALUES};

/// An entity: what a rule counts by. `kind` is `ip`, `principal`, ... or a `+`-joined list.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EntityKey {
    /// `ip`, `principal`, ... (borrowed: no allocation per key) or a composed kind.
    pub kind: std::borrow::Cow<'static, str>,
    pub value: String,
}

impl EntityKey {
    pub fn ip(a: IpAddr) -> EntityKey {
        EntityKey {
            kind: "ip".into(),
            value: crate::util::ip_string(a),
        }
    }

    /// The shard that owns this entity's state. An address is owned where its transactions
    /// go, which is the shard the capture thread chose for it (`shard_of_ip`): here.
    pub fn shard(&self, n: usize, own: usize) -> usize {
        if n <= 1 || self.kind == "ip" {
            return own;
        }
        (hash_of(self) % n as u64) as usize
    }
}

/// The shard of a client address: the capture thread and the engine agree on it.
pub fn shard_of_ip(ip: IpAddr, n: usize) -> usize {
    let mut h = DefaultHasher::new();
    ip.hash(&mut h);
    (h.finish() % n.max(1) as u64) as usize
}

fn hash_of<T: Hash + ?Sized>(v: &T) -> u64 {
    let mut h = DefaultHasher::new();
    v.hash(&mut h);
    h.finish()
}

/// The hash of a part of a window id (a rule's id, an [`EntityKey`], `per`): foldhash with a
/// fixed seed, several times cheaper than SipHash on these short texts. Window ids are map
/// keys inside one engine (never written out, never sent between sensors; a cross-shard hit
/// carries its texts and its receiver hashes them with this same function): only their
/// distinctness matters (`window_ids_are_distinct_for_distinct_rules_entities_and_endpoints`).
fn id_hash<T: Hash + ?Sized>(v: &T) -> u64 {
    use std::hash::BuildHasher;
    foldhash::fast::FixedState::with_seed(0x6170_6974_6170).hash_one(v)
}

/// murmur3's 64-bit finaliser: a bijection (xor-shifts and odd multipliers), so distinct
/// inputs give distinct outputs.
fn mix(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
}

/// The id of the window of (rule, entity, per), from the three hashed apart (`id_hash` of the
/// rule's id, of the [`EntityKey`] and of `per`): a match hashes its entity and endpoint once
/// for every rule that counts it, not once per rule. With two parts fixed, distinct hashes of
/// the third give distinct ids (each step is a bijection).
fn window_id(rule_h: u64, key_h: u64, per_h: u64) -> u64 {
    mix(rule_h ^ mix(key_h ^ mix(per_h)))
}

/// An entity value from the request, at most 128 bytes: a longer one keeps its first 96 and
/// a hash of the whole, so distinct values stay distinct and a 60 KB user name costs nothing.
fn bounded(v: String) -> String {
    if v.len() <= 128 {
        return v;
    }
    let h = hash_of(v.as_str());
    format!("{}...{h:016x}", crate::catalog::cap_str(v, 96))
}

/// [`bounded`] without a copy when the value is short enough (nearly always).
fn bounded_ref(v: &str) -> std::borrow::Cow<'_, str> {
    if v.len() <= 128 {
        v.into()
    } else {
        bounded(v.to_string()).into()
    }
}

/// The name of a single entity kind, borrowed when it is a fixed one.
fn kind_name(k: &EntityKind) -> std::borrow::Cow<'static, str> {
    match k {
        EntityKind::Ip => "ip".into(),
        EntityKind::Principal => "principal".into(),
        EntityKind::ApiKey => "api_key".into(),
        EntityKind::UserAgent => "user_agent".into(),
        EntityKind::Field(name, _) => name.clone().into(),
    }
}

/// Engine settings.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// (rule, entity) window states per shard. Default 200,000.
    pub max_states: usize,
    pub entity: EntityConfig,
    pub trusted_proxies: Vec<Cidr>,
    pub baseline: baseline::BaselineConfig,
    /// The site's own origins (`detectors.site_origins`): URLs naming them are links, not
    /// SSRF targets.
    pub site_origins: Vec<String>,
    /// Fleet state on (`[fleet]`): distinct-count hits go to [`Engine::fleet_hits`].
    pub fleet: bool,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            max_states: 200_000,
            entity: EntityConfig::default(),
            trusted_proxies: Vec::new(),
            baseline: baseline::BaselineConfig::default(),
            site_origins: Vec::new(),
            fleet: false,
        }
    }
}

/// Counters for `stats`.
#[derive(Debug, Default, Clone, Copy)]
pub struct EngineStats {
    pub matches: u64,
    pub alerts: u64,
    pub state_evictions: u64,
    pub entity_evictions: u64,
    pub states: u64,
    pub entities: u64,
}

pub struct Engine {
    pub rules: Arc<RuleSet>,
    cfg: EngineConfig,
    /// Windows by a hash of (rule id, entity, per): a lookup allocates nothing.
    states: dense::Dense<Window>,
    pub entities: EntityTable,
    baselines: baseline::Baselines,
    pub stats: EngineStats,
    shard: usize,
    shards: usize,
    /// Fleet on: every distinct-count hit, as the alert it would raise, for the fleet to count
    /// across sensors and to claim (the worker drains it after each transaction).
    pub fleet_hits: Vec<crate::fleet::FleetHit>,
    /// The rule set compiled for matching (per rule its condition's id: rules with equal
    /// conditions share one), for the rule set it was made for.
    /// (boxed: taken out and put back on every call, a pointer moves, not the plan)
    plan: Option<Box<plan::Plan>>,
    /// The rules matching the current call (a buffer kept from call to call).
    matched: Vec<u32>,
    /// The endpoint baselines' key of the current call (a buffer reused, not one per call).
    ep_key: String,
}

/// Counted fields whose values [`Engine::on_tx`] keeps for the other rules counting them.
const FIELD_MEMO: usize = 8;

/// A counted field's value in a transaction: its hash, and the value as an alert lists it
/// (none for a secret field or an object's text). `None`: the transaction has none.
type DistinctValue<'v> = Option<(u64, Option<std::borrow::Cow<'v, str>>)>;

/// The [`DistinctValue`] of field `f`, whose value in the call is `x`.
fn distinct_value<'v>(x: Option<std::borrow::Cow<'v, str>>, f: &Field) -> DistinctValue<'v> {
    let x = x?;
    let h = hash_of(&*x);
    // listed only when it is a plain value of a field that is not a secret (an object's text
    // could hold a password)
    let listed = (!f.is_secret() && !x.starts_with(['{', '['])).then(|| {
        // a short printable ASCII value (ids, names) is listed as it is
        if x.len() <= 64 && x.bytes().all(|b| b.is_ascii() && !b.is_ascii_control()) {
            x
        } else {
            std::borrow::Cow::Owned(x.chars().take(64).filter(|c| !c.is_control()).collect())
        }
    });
    Some((h, listed))
}

/// Per rule, an id shared by the rules whose conditions are the same (compared by their
/// compiled form's text: patterns, globs, ranges).
fn cond_ids(rules: &RuleSet) -> Vec<u32> {
    let mut seen: HashMap<String, u32> = HashMap::new();
    rules
        .rules
        .iter()
        .map(|r| {
            let n = seen.len() as u32;
            *seen.entry(format!("{:?}", r.cond)).or_insert(n)
        })
        .collect()
}

const SAMPLES: usize = 5;

impl Engine {
    pub fn new(rules: Arc<RuleSet>, cfg: EngineConfig, shard: usize, shards: usize) -> Self {
        Engine {
            entities: EntityTable::new(cfg.entity.clone()).with_fleet(cfg.fleet),
            baselines: baseline::Baselines::new(cfg.baseline.clone()),
            rules,
            cfg,
            states: Default::default(),
            stats: EngineStats::default(),
            shard,
            shards: shards.max(1),
            fleet_hits: Vec::new(),
            plan: None,
            matched: Vec::new(),
            ep_key: String::new(),
        }
    }

    /// Swap in reloaded rules; windows of rules that kept their id carry on.
    pub fn reload(&mut self, rules: Arc<RuleSet>) {
        self.states.retain(
            |w| {
                rules
                    .rules
                    .iter()
                    .any(|r| id_hash(r.id.as_str()) & window::RULE_BITS == w.rule & window::RULE_BITS && r.enabled)
            },
            drop,
        );
        self.rules = rules;
    }

    /// Run the rules over one transaction. Hits for entities owned here are applied at once;
    /// the others come back as messages for their owners.
    pub fn on_tx(&mut self, v: &View<'_>, out: &mut Vec<Out>, cross: &mut Vec<(usize, Cross)>) {
        // Entity profiles: the address always (owned here), the principal where it lives.
        let vd = v.verdicts();
        let rules = self.rules.clone();
        // (taken out while the rules run: applying a hit borrows the engine)
        let mut plan = match self.plan.take() {
            Some(p) if Arc::ptr_eq(&p.rules, &rules) => p,
            _ => Box::new(plan::Plan::new(rules.clone())),
        };
        // The call's endpoint record, found once: it also keeps where the entity table holds
        // the endpoint's text, so the profiles find it without hashing it again.
        let ep = plan.endpoint(v.host, v.endpoint);
        *self.entities.endpoint_hint() = *plan.ent_hint(ep);
        let (fail, ok) = (vd.has(Detector::AuthFailure), vd.has(Detector::LoginSuccess));
        let mut base = Obs {
            key: std::borrow::Cow::Borrowed(v.ip_entity()),
            ts: v.tx.start(),
            client: v.client,
            endpoint: v.endpoint.into(),
            status: v.status(),
            user_agent: v.header("user-agent").map(Into::into),
            principal: v.principal_entity().map(|k| k.value.as_str().into()),
            auth_failure: fail,
            login_failure: fail && vd.has(Detector::Login),
            login_success: ok,
            authenticated: v.auth.scheme != "none",
            meta: std::borrow::Cow::Borrowed(v.meta),
            login: vd.has(Detector::Login).then(|| {
                Box::new(LoginFacts {
                    account: v.login_account(),
                    sample: v.sample(None),
                    http: v.http_brief(),
                })
            }),
        };
        if let Some(key) = v.principal_entity() {
            let owner = key.shard(self.shards, self.shard);
            // the same facts under the principal's key (borrowed: nothing copied unless it
            // travels to another shard)
            let ip_key = std::mem::replace(&mut base.key, std::borrow::Cow::Borrowed(key));
            if owner == self.shard {
                self.observe(&base, out);
            } else {
                cross.push((owner, Cross::Obs(Box::new(base.clone().into_owned()))));
            }
            base.key = ip_key;
        }
        // (the address's own key: its compact form is the address, not read back from text)
        let ato = self.entities.observe_client(&base);
        *plan.ent_hint(ep) = *self.entities.endpoint_hint();
        self.took_over(ato, out);
        self.detect_baselines(v, plan.base_hint(ep), out, cross);
        // Rules that share a condition (the same walk counted over a minute and over an hour,
        // by address and by principal) evaluate it once per transaction.
        // The rules that match, found through the plan's index (their conditions evaluated
        // once each, only where the endpoint and the call's facts leave a match possible).
        let mut matched = std::mem::take(&mut self.matched);
        plan.matching_at(v, ep, &mut matched);
        // Per transaction, read once for every rule that needs them: the distinct values of
        // the counted fields (by field id, the first FIELD_MEMO), the hashes of the address
        // and principal entities and of the endpoint (window ids).
        let mut fields: [Option<DistinctValue<'_>>; FIELD_MEMO] = Default::default();
        let (mut ip_h, mut principal_h, mut ep_h) = (None, None, None);
        for &rule_idx in &matched {
            let rule_idx = rule_idx as usize;
            let r = &rules.rules[rule_idx];
            let Some(key) = v.entity(&r.entity) else { continue };
            self.stats.matches += 1;
            let spare;
            let (distinct, value) = match &r.threshold.distinct {
                Some(f) => {
                    let fid = plan.field_ids[rule_idx];
                    let dv = match fields.get_mut(fid as usize) {
                        Some(slot) => slot.get_or_insert_with(|| distinct_value(plan.field(ep, fid, f, v), f)),
                        None => {
                            spare = distinct_value(plan.field(ep, fid, f, v), f);
                            &spare
                        }
                    };
                    match dv {
                        Some((h, listed)) => (Some(*h), listed.as_deref()),
                        None => continue, // nothing to count
                    }
                }
                None => (None, None),
            };
            let detail = match &r.cond {
                Cond::Detector(d) => v.verdicts().evidence(*d).map(|(n, e)| format!("{n}: {e}")),
                _ => None,
            };
            let (per, per_h) = if r.threshold.per_endpoint {
                (v.endpoint, *ep_h.get_or_insert_with(|| id_hash(v.endpoint)))
            } else {
                ("", plan.empty_h)
            };
            // the address and the principal are the same key for every rule counting by them
            let key_h = match &r.entity[..] {
                [EntityKind::Ip] => *ip_h.get_or_insert_with(|| id_hash(&*key)),
                [EntityKind::Principal] => *principal_h.get_or_insert_with(|| id_hash(&*key)),
                _ => id_hash(&*key),
            };
            let personal =
                r.threshold.found == crate::rules::Found::Personal && v.verdicts().has(Detector::SensitiveResponse);
            let owner = key.shard(self.shards, self.shard);
            if owner == self.shard {
                // applied here: nothing copied unless the window keeps it
                self.apply(
                    HitRef {
                        rule: &r.id,
                        rule_idx,
                        rule_h: plan.rule_h[rule_idx],
                        key_h,
                        per_h,
                        key: &key,
                        endpoint: v.endpoint,
                        per,
                        host: v.host,
                        ts: v.tx.start(),
                        distinct,
                        value,
                        personal,
                        status: v.status(),
                        ctx: HitCtx::Here { v, detail: &detail },
                    },
                    out,
                );
            } else {
                let hit = Hit {
                    rule: r.id.clone(),
                    rule_idx,
                    endpoint: v.endpoint.to_string(),
                    per: per.to_string(),
                    host: v.host.to_string(),
                    ts: v.tx.start(),
                    distinct,
                    value: value.map(str::to_string),
                    personal,
                    sample: v.sample(detail),
                    meta: v.meta.clone(),
                    http: v.http_brief(),
                    key: key.into_owned(),
                };
                cross.push((owner, Cross::Hit(Box::new(hit))));
            }
        }
        self.plan = Some(plan);
        self.matched = matched;
    }

    /// The learned-baseline detectors: rate and volume per address (owned here), errors and
    /// latency per endpoint (owned by the shard the endpoint hashes to).
    /// `hint`: where the endpoint's window was at its last call (see
    /// [`baseline::Baselines::endpoint_hinted`]).
    fn detect_baselines(&mut self, v: &View<'_>, hint: &mut u32, out: &mut Vec<Out>, cross: &mut Vec<(usize, Cross)>) {
        let ts = v.tx.start();
        let client = || v.ip_key();
        // Only clean traffic teaches the baselines: not a flagged request (injection, an
        // attack tool), nor one from an address with attack indicators (forced browsing...).
        let clean = !v.verdicts().attack() && !self.entities.flagged_ip(v.client, ts);
        if let Some(f) = self.baselines.rate(v.client, ts, clean) {
            self.finding(client(), f, Ctx::of(v), out);
        }
        let bytes = v.tx.response.as_ref().map_or(0, |r| r.body_len);
        if let Some(f) = self.baselines.volume(v.client, ts, bytes, clean) {
            self.finding(client(), f, Ctx::of(v), out);
        }
        // `host METHOD /template`, written into a buffer kept from call to call (copied only
        // for an endpoint owned by another shard or a finding's key)
        let mut key = std::mem::take(&mut self.ep_key);
        key.clear();
        key.push_str(v.host);
        key.push(' ');
        key.push_str(v.endpoint);
        let owner = if self.shards <= 1 {
            self.shard
        } else {
            (hash_of(key.as_str()) % self.shards as u64) as usize
        };
        if owner == self.shard {
            for f in self
                .baselines
                .endpoint_hinted(&key, hint, ts, v.status(), v.tx.latency_us(), clean)
            {
                let k = EntityKey {
                    kind: "endpoint".into(),
                    value: key.clone(),
                };
                self.finding(k, f, Ctx::of(v), out);
            }
        } else {
            let o = EpObs {
                key: key.clone(),
                host: v.host.to_string(),
                endpoint: v.endpoint.to_string(),
                ts,
                status: v.status(),
                latency_us: v.tx.latency_us(),
                clean,
                sample: v.sample(None),
                meta: v.meta.clone(),
                http: v.http_brief(),
            };
            cross.push((owner, Cross::Ep(Box::new(o))));
        }
        self.ep_key = key;
    }

    fn endpoint_call(&mut self, o: &EpObs, out: &mut Vec<Out>) {
        for f in self.baselines.endpoint(&o.key, o.ts, o.status, o.latency_us, o.clean) {
            let key = EntityKey {
                kind: "endpoint".into(),
                value: o.key.clone(),
            };
            let ctx = Ctx {
                ts: o.ts,
                host: &o.host,
                endpoint: &o.endpoint,
                sample: o.sample.clone(),
                meta: &o.meta,
                http: o.http.clone(),
            };
            self.finding(key, f, ctx, out);
        }
    }

    /// An alert for a baseline detector's finding.
    fn finding(&mut self, key: EntityKey, f: baseline::Finding, c: Ctx<'_>, out: &mut Vec<Out>) {
        let ts = c.ts;
        {
            let (rule, count, detail) = match f {
                baseline::Finding::Rate(n, p99, own) => (
                    entity::builtin(
                        "rate-abuse",
                        9_100_070,
                        "rate_abuse",
                        "APITAP Request rate far above the client's own and its peers' baseline",
                        20.0,
                        2,
                        false,
                        &["API4:2023"],
                        &["T1499.002"],
                    ),
                    n,
                    format!(
                        "{n} requests in {} s; peers' p90 {p99:.0}, own mean {own:.1}",
                        self.cfg.baseline.rate_bucket_s
                    ),
                ),
                baseline::Finding::Volume(n, p90, own) => (
                    entity::builtin(
                        "data-volume",
                        9_100_081,
                        "data_exposure",
                        "APITAP Client pulling far more response data than its peers and its own usual",
                        20.0,
                        2,
                        false,
                        &["API3:2023"],
                        &["T1530", "T1119"],
                    ),
                    n,
                    format!(
                        "{n} response bytes in {} s; peers' p90 {p90:.0}, own mean {own:.0}",
                        self.cfg.baseline.volume_bucket_s
                    ),
                ),
                baseline::Finding::Errors(r, b, n) => (
                    entity::builtin(
                        "error-spike",
                        9_100_091,
                        "error_spike",
                        "APITAP Endpoint error rate far above its baseline",
                        10.0,
                        2,
                        false,
                        &["API8:2023"],
                        &["T1499"],
                    ),
                    n,
                    format!("error ratio {r:.2} over {n} calls; baseline {b:.3}"),
                ),
                baseline::Finding::Latency(p, b, n) => (
                    entity::builtin(
                        "latency-anomaly",
                        9_100_092,
                        "latency_anomaly",
                        "APITAP Endpoint p95 latency far above its baseline",
                        10.0,
                        2,
                        false,
                        &["API4:2023"],
                        &["T1499"],
                    ),
                    n,
                    format!("p95 {p:.0} ms over {n} calls; baseline {b:.0} ms"),
                ),
            };
            let entity_risk = self.entities.add_risk(&key, ts, &rule);
            self.stats.alerts += 1;
            out.push(Out::Alert(Box::new(Alert {
                ts,
                sid: rule.sid,
                rev: 1,
                signature: rule.signature.clone(),
                category: rule.category(),
                severity: rule.severity,
                itype: rule.itype,
                compromise: false,
                key,
                risk: rule.risk,
                entity_risk,
                host: c.host.to_string(),
                endpoint: c.endpoint.to_string(),
                window_s: if rule.id == "data-volume" {
                    self.cfg.baseline.volume_bucket_s
                } else if rule.itype == "rate_abuse" {
                    self.cfg.baseline.rate_bucket_s
                } else {
                    self.cfg.baseline.endpoint_bucket_s
                } as f64,
                count,
                distinct: None,
                first: ts,
                last: ts,
                owasp: rule.owasp.clone(),
                mitre: rule.mitre.clone(),
                samples: vec![Sample {
                    detail: Some(detail),
                    ..c.sample
                }],
                meta: Some(c.meta.clone()),
                http: Some(c.http),
                rule_id: rule.id.clone(),
                distinct_estimated: false,
                values: Vec::new(),
                account: None,
            })));
        }
        self.escalate(out);
    }

    /// A message from another shard.
    pub fn on_cross(&mut self, m: &Cross, out: &mut Vec<Out>) {
        match m {
            Cross::Hit(h) => self.apply(h.borrowed(), out),
            Cross::Obs(o) => self.observe(o, out),
            Cross::Ep(o) => self.endpoint_call(o, out),
        }
    }

    fn observe(&mut self, o: &Obs, out: &mut Vec<Out>) {
        let ato = self.entities.observe(o);
        self.took_over(ato, out);
    }

    fn took_over(&mut self, ato: Option<Alert>, out: &mut Vec<Out>) {
        if let Some(ato) = ato {
            // A success right after a run of failures: the engine's own detector.
            out.push(Out::Alert(Box::new(ato)));
            self.stats.alerts += 1;
            self.escalate(out);
        }
    }

    fn escalate(&mut self, out: &mut Vec<Out>) {
        for (alert, report) in self.entities.take_escalations() {
            out.push(Out::Alert(Box::new(alert)));
            out.push(Out::Entity(Box::new(report)));
            self.stats.alerts += 1;
        }
    }

    pub fn snapshot_stats(&mut self) -> EngineStats {
        self.stats.states = self.states.len() as u64;
        self.stats.entities = self.entities.len() as u64;
        self.stats.entity_evictions = self.entities.evictions;
        self.stats
    }
}

#[cfg(test)]
mod tests;
