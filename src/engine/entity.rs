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

use hashbrown::HashMap;

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

#[derive(Debug, Default)]
struct Profile {
    first: Ts,
    last: Ts,
    requests: u64,
    errors: u64,
    /// (status, count), at most 16: a small vector, not a tree node per entity.
    statuses: Vec<(u16, u64)>,
    endpoints: Vec<String>,
    endpoints_more: u64,
    user_agents: Vec<String>,
    addresses: Vec<IpAddr>,
    principals: Vec<String>,
    auth_failures: u64,
    auth_successes: u64,
    unauthenticated: u64,
    indicators: Vec<Indicator>,
}

#[derive(Debug, Default)]
struct Entity {
    risk: f64,
    risk_ts: Ts,
    level: usize,
    fail_run: u32,
    fail_last: Ts,
    /// The current run of failed logins: accounts tried, latest samples (only entities that
    /// fail to log in pay for it).
    fail_detail: Option<Box<FailRun>>,
    profile: Box<Profile>,
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

pub struct EntityTable {
    cfg: EntityConfig,
    map: HashMap<EntityKey, Entity>,
    pending: Vec<(Alert, EntityReport)>,
    pub evictions: u64,
    /// Fleet on (`[fleet]`): every risk increment, for the fleet-wide score (the worker
    /// drains it).
    pub fleet_risk: Option<Vec<crate::fleet::FleetRisk>>,
}

impl EntityTable {
    pub fn new(cfg: EntityConfig) -> Self {
        EntityTable {
            cfg,
            map: HashMap::new(),
            pending: Vec::new(),
            evictions: 0,
            fleet_risk: None,
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
        self.map.is_empty()
    }

    fn decay(&self, e: &Entity, now: Ts) -> f64 {
        if now <= e.risk_ts || e.risk == 0.0 {
            return e.risk;
        }
        let dt = (now - e.risk_ts) as f64 / 1e9;
        e.risk * 0.5f64.powf(dt / self.cfg.half_life_s.max(1e-3))
    }

    /// The entity's risk now.
    /// Does the entity carry attack indicators now (decayed risk of at least
    /// [`FLAGGED_RISK`])? Its traffic then teaches no baseline.
    pub fn flagged(&self, k: &EntityKey, now: Ts) -> bool {
        self.risk(k, now) >= FLAGGED_RISK
    }

    pub fn risk(&self, k: &EntityKey, now: Ts) -> f64 {
        self.map.get(k).map_or(0.0, |e| self.decay(e, now))
    }

    fn entry(&mut self, k: &EntityKey, ts: Ts) -> &mut Entity {
        if !self.map.contains_key(k) && self.map.len() >= self.cfg.max_entities {
            self.evict(ts);
        }
        self.map.entry_ref(k).or_insert_with(|| Entity {
            profile: Box::new(Profile {
                first: ts,
                ..Profile::default()
            }),
            ..Entity::default()
        })
    }

    /// Drop the sixteenth with the least (decayed) risk, idle longest first.
    fn evict(&mut self, now: Ts) {
        let n = (self.map.len() / 16).max(1);
        let mut scored: Vec<(u64, Ts, EntityKey)> = self
            .map
            .iter()
            .map(|(k, e)| ((self.decay(e, now) * 1000.0) as u64, e.profile.last, k.clone()))
            .collect();
        let n = n.min(scored.len());
        scored.select_nth_unstable(n - 1);
        for (_, _, k) in scored.into_iter().take(n) {
            self.map.remove(&k);
            self.evictions += 1;
        }
    }

    /// Fold a transaction into the entity's profile. Returns an account-takeover alert when a
    /// success follows a run of failures.
    pub fn observe(&mut self, o: &Obs) -> Option<Alert> {
        let (takeover_window_s, takeover_failures) = (self.cfg.takeover_window_s, self.cfg.takeover_failures);
        let e = self.entry(&o.key, o.ts);
        let p = &mut e.profile;
        p.first = p.first.min(o.ts);
        p.last = p.last.max(o.ts);
        p.requests += 1;
        if o.status >= 400 {
            p.errors += 1;
        }
        let full = p.statuses.len() >= MAX_LIST;
        match p.statuses.iter_mut().find(|(s, _)| *s == o.status) {
            Some((_, n)) => *n += 1,
            None if !full => {
                if p.statuses.is_empty() {
                    p.statuses.reserve_exact(1);
                }
                p.statuses.push((o.status, 1))
            }
            None => {}
        }
        // (a value already listed is not copied: most calls repeat the last one's)
        if !p.endpoints.contains(&o.endpoint) && !push_bounded(&mut p.endpoints, o.endpoint.clone(), MAX_ENDPOINTS) {
            p.endpoints_more += 1;
        }
        if let Some(ua) = &o.user_agent {
            let cut = cut_chars(ua, 200);
            if !p.user_agents.iter().any(|u| u == cut) {
                push_bounded(&mut p.user_agents, cut.to_string(), MAX_LIST / 2);
            }
        }
        push_bounded(&mut p.addresses, o.client, MAX_LIST);
        if let Some(pr) = &o.principal
            && !p.principals.contains(pr)
        {
            push_bounded(&mut p.principals, pr.clone(), MAX_LIST / 2);
        }
        if !o.authenticated {
            p.unauthenticated += 1;
        }
        let window = takeover_window_s.saturating_mul(1_000_000_000);
        if o.auth_failure {
            p.auth_failures += 1;
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
        p.auth_successes += 1;
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
            key: o.key.clone(),
            risk: rule.risk,
            entity_risk,
            host: o
                .login
                .as_ref()
                .and_then(|l| l.http.hostname.clone())
                .unwrap_or_default(),
            endpoint: o.endpoint.clone(),
            window_s: takeover_window_s as f64,
            count: run as u64 + 1,
            distinct: (tried > 0).then_some(tried),
            first,
            last: o.ts,
            owasp: rule.owasp.clone(),
            mitre: rule.mitre.clone(),
            samples,
            meta: Some(o.meta.clone()),
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
        let now_risk = self.map.get(k).map_or(0.0, |e| self.decay(e, ts));
        let e = self.entry(k, ts);
        e.risk = now_risk + r.risk;
        e.risk_ts = ts;
        let p = &mut e.profile;
        let n = p.indicators.len();
        match p.indicators.iter_mut().find(|i| i.itype == r.itype) {
            Some(i) => {
                i.count += 1;
                i.last = ts;
                push_bounded(&mut i.sids, r.sid, 8);
            }
            None if n < 16 => p.indicators.push(Indicator {
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
        while e.level > 0 && now_risk < thresholds[e.level - 1] / 2.0 {
            e.level -= 1;
        }
        let risk = e.risk;
        let mut crossed = None;
        while e.level < thresholds.len() && risk >= thresholds[e.level] {
            e.level += 1;
            crossed = Some(e.level);
        }
        if let Some(level) = crossed {
            let report = report(k, e, ts, thresholds[level - 1]);
            let compromise = e.profile.indicators.iter().any(|i| i.compromise);
            let types: Vec<&'static str> = e.profile.indicators.iter().map(|i| i.itype).collect();
            let alert = Alert {
                ts,
                sid: 9_199_000 + level as u64,
                rev: 1,
                signature: format!(
                    "APITAP entity risk crossed {} ({})",
                    thresholds[level - 1],
                    types.join(", ")
                ),
                category: if compromise {
                    "Indicator of compromise"
                } else {
                    "Indicator of attack"
                },
                severity: if level >= 2 { 1 } else { 2 },
                itype: "risk_threshold",
                compromise,
                key: k.clone(),
                risk: 0.0,
                entity_risk: risk,
                host: String::new(),
                endpoint: String::new(),
                window_s: half_life,
                count: e.profile.indicators.iter().map(|i| i.count).sum(),
                distinct: Some(types.len() as u64),
                first: e.profile.first,
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
            };
            self.pending.push((alert, report));
        }
        if let (Some(q), Some(e)) = (self.fleet_risk.as_mut(), self.map.get(k))
            && r.risk > 0.0
        {
            q.push(crate::fleet::FleetRisk {
                inc: r.risk,
                ts,
                half_life_s: half_life,
                thresholds,
                report: Box::new(report(k, e, ts, 0.0)),
            });
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
        let mut v: Vec<(&EntityKey, &Entity)> = self
            .map
            .iter()
            .filter(|(_, e)| !e.profile.indicators.is_empty())
            .collect();
        let n = v.len();
        v.sort_by(|a, b| b.1.risk.total_cmp(&a.1.risk).then_with(|| a.0.value.cmp(&b.0.value)));
        let out = v
            .into_iter()
            .take(cap)
            .map(|(k, e)| {
                let mut r = report(k, e, e.profile.last, 0.0);
                r.risk = self.decay(e, e.profile.last);
                r.reason = "final";
                r
            })
            .collect::<Vec<_>>();
        let left = (n - out.len()) as u64;
        (out, left)
    }
}

fn report(k: &EntityKey, e: &Entity, ts: Ts, threshold: f64) -> EntityReport {
    let p = &e.profile;
    EntityReport {
        ts,
        key: k.clone(),
        risk: e.risk,
        level: e.level,
        threshold,
        first: p.first,
        last: p.last.max(ts),
        requests: p.requests,
        errors: p.errors,
        statuses: p.statuses.iter().copied().collect(),
        endpoints: p.endpoints.clone(),
        endpoints_more: p.endpoints_more,
        user_agents: p.user_agents.clone(),
        addresses: p.addresses.clone(),
        principals: p.principals.clone(),
        auth_failures: p.auth_failures,
        auth_successes: p.auth_successes,
        unauthenticated: p.unauthenticated,
        indicators: p.indicators.clone(),
        reason: "threshold",
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
