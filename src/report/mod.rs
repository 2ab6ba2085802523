//! The forensic HTML report (`apitap report FILE... -o report.html`, `replay --report PATH`).
//!
//! A sink like the others: it reads the EVE lines the run writes (so its numbers are the JSON
//! events' numbers), folds them into bounded tallies, and when the run ends renders one
//! self-contained page through a `minijinja` template: inline CSS, a little inline JS, an SVG
//! timeline drawn here, no request to any server (a Content-Security-Policy forbids them).
//!
//! Bounded: clients, per-address profiles, attackers, endpoints and timeline buckets all have
//! caps (the timeline doubles its bucket width when full); tables show the top N and say how
//! many more there are.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

const TEMPLATE: &str = include_str!("report.html");

const MAX_CLIENTS: usize = 100_000;
const MAX_PROFILES: usize = 50_000;
const MAX_ATTACKERS: usize = 10_000;
const MAX_SET: usize = 64;
const MAX_SAMPLES: usize = 8;
const MAX_BUCKETS: usize = 200_000;
const TOP_ATTACKERS: usize = 50;
const TOP_ENDPOINTS: usize = 100;
const TOP_ROWS: usize = 30;
const BINS: i64 = 240;

/// A set that keeps at most [`MAX_SET`] values and counts the rest.
#[derive(Debug, Default, Clone)]
struct Capped {
    v: BTreeSet<String>,
    more: u64,
}

impl Capped {
    fn add(&mut self, s: &str) {
        if self.v.contains(s) {
            return;
        }
        if self.v.len() < MAX_SET {
            self.v.insert(s.to_string());
        } else {
            self.more += 1;
        }
    }
    fn json(&self, n: usize) -> Value {
        let shown: Vec<&String> = self.v.iter().take(n).collect();
        let more = self.more + (self.v.len() - shown.len()) as u64;
        json!({"items": shown, "more": more})
    }
}

/// What the `http` events say about one client address.
#[derive(Debug, Default)]
struct Profile {
    requests: u64,
    first: i64,
    last: i64,
    statuses: BTreeMap<String, u64>,
    endpoints: Capped,
    agents: Capped,
    auth: BTreeMap<String, u64>,
}

#[derive(Debug, Default)]
struct Indicator {
    count: u64,
    first: String,
    last: String,
}

#[derive(Debug, Default)]
struct Attacker {
    kind: String,
    value: String,
    risk: f64,
    alerts: u64,
    indicators: BTreeMap<String, Indicator>,
    endpoints: Capped,
    first: String,
    last: String,
    samples: Vec<Value>,
    /// The last `entity` event about it.
    entity: Value,
}

#[derive(Debug, Default)]
struct Timeline {
    /// Seconds per bucket; doubles when there are too many buckets.
    width: i64,
    /// bucket start -> (requests, errors)
    req: BTreeMap<i64, (u64, u64)>,
    /// alert type -> bucket start -> count
    alerts: BTreeMap<String, BTreeMap<i64, u64>>,
}

impl Timeline {
    fn key(&mut self, t: i64) -> i64 {
        if self.width == 0 {
            self.width = 1;
        }
        if self.req.len() > MAX_BUCKETS {
            self.width *= 2;
            let w = self.width;
            let mut r = BTreeMap::new();
            for (k, (a, b)) in std::mem::take(&mut self.req) {
                let e: &mut (u64, u64) = r.entry(k.div_euclid(w) * w).or_default();
                e.0 += a;
                e.1 += b;
            }
            self.req = r;
            for m in self.alerts.values_mut() {
                let mut r = BTreeMap::new();
                for (k, n) in std::mem::take(m) {
                    *r.entry(k.div_euclid(w) * w).or_default() += n;
                }
                *m = r;
            }
        }
        t.div_euclid(self.width) * self.width
    }
}

/// Everything the report needs, folded from EVE events.
#[derive(Debug, Default)]
pub struct Report {
    pub sources: Vec<String>,
    events: BTreeMap<String, u64>,
    first: Option<(i64, String)>,
    last: Option<(i64, String)>,
    http: u64,
    status_classes: BTreeMap<String, u64>,
    clients: HashSet<String>,
    clients_over: bool,
    profiles: HashMap<String, Profile>,
    profiles_over: u64,
    timeline: Timeline,
    alert_types: BTreeMap<String, (u64, BTreeMap<u64, u64>)>,
    signatures: BTreeMap<(u64, String), u64>,
    anomalies: BTreeMap<String, u64>,
    attackers: HashMap<String, Attacker>,
    attackers_over: u64,
    endpoints: BTreeMap<String, Value>,
    attacked: HashMap<String, u64>,
    stats: Value,
}

/// `2026-11-29T09:04:33.234603+0000` -> Unix seconds.
pub fn parse_ts(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 19 {
        return None;
    }
    let n = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d, h, mi, se) = (n(0..4)?, n(5..7)?, n(8..10)?, n(11..13)?, n(14..16)?, n(17..19)?);
    let mut off = 0;
    if let Some(p) = s[19..].find(['+', '-']).map(|p| p + 19)
        && let (Some(oh), Some(om)) = (n(p + 1..p + 3), n(p + 3..p + 5))
    {
        off = (oh * 3600 + om * 60) * if b[p] == b'-' { -1 } else { 1 };
    }
    Some(days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + se - off)
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Unix seconds -> `2026-11-29 09:04:33` (UTC); `date` false: `09:04:33`.
pub fn fmt_ts(t: i64, date: bool) -> String {
    let (y, m, d) = civil_from_days(t.div_euclid(86_400));
    let s = t.rem_euclid(86_400);
    let hms = format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60);
    if date {
        format!("{y:04}-{m:02}-{d:02} {hms}")
    } else {
        hms
    }
}

/// An EVE timestamp as `YYYY-MM-DD HH:MM:SS` (UTC), or as it came if it does not parse.
fn short_ts(s: &str) -> String {
    parse_ts(s).map_or_else(|| s.to_string(), |t| fmt_ts(t, true))
}

fn str_of<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    path.iter().fold(v, |v, k| &v[*k]).as_str().unwrap_or("")
}

fn bump(m: &mut BTreeMap<String, u64>, k: &str, n: u64) {
    if let Some(v) = m.get_mut(k) {
        *v += n;
    } else if m.len() < 256 {
        m.insert(k.to_string(), n);
    } else {
        *m.entry("other".into()).or_default() += n;
    }
}

impl Report {
    pub fn new(sources: Vec<String>) -> Self {
        Report {
            sources,
            ..Default::default()
        }
    }

    /// Fold one EVE event in.
    pub fn observe(&mut self, e: &Value) {
        let et = str_of(e, &["event_type"]);
        bump(&mut self.events, et, 1);
        let ts_s = str_of(e, &["timestamp"]);
        let ts = parse_ts(ts_s);
        if let Some(t) = ts
            && et != "stats"
        {
            if self.first.as_ref().is_none_or(|(f, _)| t < *f) {
                self.first = Some((t, ts_s.to_string()));
            }
            if self.last.as_ref().is_none_or(|(l, _)| t > *l) {
                self.last = Some((t, ts_s.to_string()));
            }
        }
        match et {
            "http" => self.http(e, ts.unwrap_or(0)),
            "alert" => self.alert(e, ts.unwrap_or(0), ts_s),
            "entity" => self.entity(e),
            "endpoint" => {
                let ep = &e["endpoint"];
                let k = format!("{} {}", str_of(ep, &["host"]), str_of(ep, &["endpoint"]));
                if self.endpoints.contains_key(&k) || self.endpoints.len() < 20_000 {
                    self.endpoints.insert(k, ep.clone());
                }
            }
            "anomaly" => {
                let a = &e["anomaly"];
                let k = format!("{}: {}", str_of(a, &["type"]), str_of(a, &["event"]));
                bump(&mut self.anomalies, &k, 1);
            }
            "stats" => self.stats = e["stats"].clone(),
            _ => {}
        }
    }

    fn http(&mut self, e: &Value, t: i64) {
        self.http += 1;
        let status = e["http"]["status"].as_u64();
        let class = status.map_or("no response".to_string(), |s| format!("{}xx", s / 100));
        bump(&mut self.status_classes, &class, 1);
        let error = status.is_none_or(|s| s >= 400);
        let k = self.timeline.key(t);
        let b = self.timeline.req.entry(k).or_default();
        b.0 += 1;
        b.1 += u64::from(error);
        let ip = str_of(e, &["src_ip"]);
        if !self.clients.contains(ip) {
            if self.clients.len() < MAX_CLIENTS {
                self.clients.insert(ip.to_string());
            } else {
                self.clients_over = true;
            }
        }
        if !self.profiles.contains_key(ip) {
            if self.profiles.len() >= MAX_PROFILES {
                self.profiles_over += 1;
                return;
            }
            self.profiles.insert(
                ip.to_string(),
                Profile {
                    first: t,
                    last: t,
                    ..Default::default()
                },
            );
        }
        let Some(p) = self.profiles.get_mut(ip) else { return };
        p.requests += 1;
        p.first = p.first.min(t);
        p.last = p.last.max(t);
        bump(&mut p.statuses, &status.map_or("none".into(), |s| s.to_string()), 1);
        p.endpoints.add(str_of(e, &["api", "endpoint"]));
        let ua = str_of(e, &["http", "http_user_agent"]);
        if !ua.is_empty() {
            p.agents.add(ua);
        }
        bump(&mut p.auth, str_of(e, &["api", "auth", "scheme"]), 1);
    }

    fn attacker(&mut self, kind: &str, value: &str) -> Option<&mut Attacker> {
        let k = format!("{kind}:{value}");
        if !self.attackers.contains_key(&k) {
            if self.attackers.len() >= MAX_ATTACKERS {
                self.attackers_over += 1;
                return None;
            }
            self.attackers.insert(
                k.clone(),
                Attacker {
                    kind: kind.into(),
                    value: value.into(),
                    ..Default::default()
                },
            );
        }
        self.attackers.get_mut(&k)
    }

    fn alert(&mut self, e: &Value, t: i64, ts: &str) {
        let ind = &e["indicator"];
        let ty = match str_of(ind, &["type"]) {
            "" => "other",
            s => s,
        };
        let sev = e["alert"]["severity"].as_u64().unwrap_or(0);
        let a = self.alert_types.entry(ty.to_string()).or_default();
        a.0 += 1;
        *a.1.entry(sev).or_default() += 1;
        // One row per signature id: risk alerts name their indicators in parentheses.
        let text = str_of(e, &["alert", "signature"]);
        let sig = (
            e["alert"]["signature_id"].as_u64().unwrap_or(0),
            text.split(" (").next().unwrap_or(text).to_string(),
        );
        if self.signatures.contains_key(&sig) || self.signatures.len() < 1000 {
            *self.signatures.entry(sig).or_default() += 1;
        }
        let k = self.timeline.key(t);
        if self.timeline.alerts.contains_key(ty) || self.timeline.alerts.len() < 32 {
            *self
                .timeline
                .alerts
                .entry(ty.to_string())
                .or_default()
                .entry(k)
                .or_default() += 1;
        }
        let endpoint = str_of(ind, &["endpoint"]);
        if !endpoint.is_empty() {
            let key = format!("{} {}", str_of(ind, &["host"]), endpoint);
            if self.attacked.contains_key(&key) || self.attacked.len() < 20_000 {
                *self.attacked.entry(key).or_default() += 1;
            }
        }
        let (kind, value) = (str_of(ind, &["entity", "type"]), str_of(ind, &["entity", "value"]));
        let (kind, value) = if value.is_empty() {
            ("ip", str_of(e, &["src_ip"]))
        } else {
            (kind, value)
        };
        let risk = ind["entity_risk"].as_f64().unwrap_or(0.0);
        let sample = json!({
            "ts": short_ts(ts),
            "type": ty,
            "signature": str_of(e, &["alert", "signature"]),
            "url": str_of(e, &["http", "url"]),
            "method": str_of(e, &["http", "http_method"]),
            "status": e["http"]["status"],
            "detail": ind["evidence"]["samples"][0]["detail"],
            "flow_id": e["flow_id"],
            "community_id": e["community_id"],
        });
        let Some(at) = self.attacker(kind, value) else { return };
        at.alerts += 1;
        at.risk = at.risk.max(risk);
        if !endpoint.is_empty() {
            at.endpoints.add(endpoint);
        }
        if at.first.is_empty() || ts < at.first.as_str() {
            at.first = ts.to_string();
        }
        if ts > at.last.as_str() {
            at.last = ts.to_string();
        }
        let i = at.indicators.entry(ty.to_string()).or_default();
        i.count += 1;
        if i.first.is_empty() {
            i.first = ts.to_string();
        }
        i.last = ts.to_string();
        if at.samples.len() < MAX_SAMPLES && !at.samples.iter().any(|s| s["type"] == ty) {
            at.samples.push(sample);
        }
    }

    fn entity(&mut self, e: &Value) {
        let en = &e["entity"];
        let (kind, value) = (str_of(en, &["type"]), str_of(en, &["value"]));
        let risk = en["risk"].as_f64().unwrap_or(0.0);
        let Some(at) = self.attacker(kind, value) else { return };
        at.risk = at.risk.max(risk);
        at.entity = en.clone();
    }

    /// The page.
    pub fn render(&self) -> Result<String, String> {
        let mut env = minijinja::Environment::new();
        env.add_template("report.html", TEMPLATE).map_err(|e| e.to_string())?;
        let t = env.get_template("report.html").map_err(|e| e.to_string())?;
        t.render(minijinja::value::Serde(self.context()))
            .map_err(|e| e.to_string())
    }

    fn context(&self) -> Value {
        let span = match (&self.first, &self.last) {
            (Some((a, _)), Some((b, _))) => b - a,
            _ => 0,
        };
        let st = &self.stats;
        let alerts_total: u64 = self.alert_types.values().map(|a| a.0).sum();
        let mut alert_types: Vec<Value> = self
            .alert_types
            .iter()
            .map(|(t, (n, sev))| {
                json!({"type": t, "count": n,
                "severity": sev.iter().map(|(s, n)| format!("{s}: {n}")).collect::<Vec<_>>().join(", ")})
            })
            .collect();
        alert_types.sort_by(|a, b| b["count"].as_u64().cmp(&a["count"].as_u64()));
        let mut sigs: Vec<(&(u64, String), &u64)> = self.signatures.iter().collect();
        sigs.sort_by(|a, b| b.1.cmp(a.1));
        let signatures = top(
            sigs.iter()
                .map(|((id, s), n)| json!({"id": id, "signature": s, "count": n}))
                .collect(),
            TOP_ROWS,
        );
        let mut an: Vec<(&String, &u64)> = self.anomalies.iter().collect();
        an.sort_by(|a, b| b.1.cmp(a.1));
        let anomalies = top(
            an.iter().map(|(k, n)| json!({"what": k, "count": n})).collect(),
            TOP_ROWS,
        );
        let skipped: Vec<Value> = st["decoder"]["skipped"]
            .as_object()
            .map(|m| m.iter().map(|(k, v)| json!({"reason": k, "count": v})).collect())
            .unwrap_or_default();
        let mut attackers: Vec<&Attacker> = self
            .attackers
            .values()
            .filter(|a| a.alerts > 0 || a.risk > 0.0)
            .collect();
        attackers.sort_by(|a, b| {
            b.risk
                .total_cmp(&a.risk)
                .then(b.alerts.cmp(&a.alerts))
                .then(a.value.cmp(&b.value))
        });
        let n_attackers = attackers.len() as u64 + self.attackers_over;
        let attackers: Vec<Value> = attackers
            .iter()
            .take(TOP_ATTACKERS)
            .enumerate()
            .map(|(i, a)| self.attacker_json(i + 1, a))
            .collect();
        let mut eps: Vec<&Value> = self.endpoints.values().collect();
        eps.sort_by(|a, b| b["count"].as_u64().cmp(&a["count"].as_u64()));
        let endpoints: Vec<Value> = eps
            .iter()
            .take(TOP_ENDPOINTS)
            .map(|ep| {
                let key = format!("{} {}", str_of(ep, &["host"]), str_of(ep, &["endpoint"]));
                let statuses = ep["status"]
                    .as_object()
                    .map(|m| {
                        m.iter()
                            .map(|(k, v)| format!("{k}: {v}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    })
                    .unwrap_or_default();
                let sensitive = ep["sensitive"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .map(|s| {
                                s.as_str()
                                    .map(str::to_string)
                                    .unwrap_or_else(|| s["kind"].as_str().unwrap_or("").to_string())
                            })
                            .collect::<Vec<_>>()
                            .join(", ")
                    })
                    .unwrap_or_default();
                json!({
                    "host": ep["host"], "endpoint": ep["endpoint"], "count": ep["count"],
                    "auth_share": format!("{:.0}%", ep["authenticated_share"].as_f64().unwrap_or(0.0) * 100.0),
                    "sensitive": sensitive, "statuses": statuses,
                    "p50": ep["latency_ms"]["p50"], "p99": ep["latency_ms"]["p99"],
                    "spec": ep["spec"], "attacked": self.attacked.get(&key).copied().unwrap_or(0),
                })
            })
            .collect();
        let date =
            span >= 86_400 || self.first.as_ref().map(|f| f.0 / 86_400) != self.last.as_ref().map(|l| l.0 / 86_400);
        json!({
            "sources": self.sources,
            "generated": fmt_ts(
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0),
                true,
            ),
            "first": self.first.as_ref().map(|f| fmt_ts(f.0, true)),
            "last": self.last.as_ref().map(|l| fmt_ts(l.0, true)),
            "span": human_span(span),
            "packets": st["capture"]["packets"], "bytes": st["capture"]["bytes"],
            "transactions": st["http"]["transactions"],
            "http": self.http,
            "clients": self.clients.len(), "clients_over": self.clients_over,
            "endpoints_total": self.endpoints.len(),
            "endpoints_more": self.endpoints.len().saturating_sub(TOP_ENDPOINTS),
            "events": self.events,
            "alerts": alerts_total,
            "alert_types": alert_types,
            "signatures": signatures,
            "status_classes": self.status_classes,
            "anomalies_total": self.events.get("anomaly").copied().unwrap_or(0),
            "anomalies": anomalies,
            "gaps": st["reassembly"]["gaps"], "gap_bytes": st["reassembly"]["gap_bytes"],
            "overlap_conflicts": st["reassembly"]["overlap_conflicts"],
            "skipped": skipped,
            "attackers_total": n_attackers,
            "attackers_more": n_attackers.saturating_sub(attackers.len() as u64),
            "attackers": attackers,
            "endpoints": endpoints,
            "timeline": self.svg(date),
        })
    }

    fn attacker_json(&self, rank: usize, a: &Attacker) -> Value {
        let en = &a.entity;
        let prof = (a.kind == "ip").then(|| self.profiles.get(&a.value)).flatten();
        let indicators: Vec<Value> = a
            .indicators
            .iter()
            .map(|(t, i)| json!({"type": t, "count": i.count, "first": short_ts(&i.first), "last": short_ts(&i.last)}))
            .collect();
        let list = |v: &Value| -> Vec<String> {
            v.as_array()
                .map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_string)).collect())
                .unwrap_or_default()
        };
        let (requests, first, last, statuses, endpoints, agents, auth) = match prof {
            Some(p) => (
                json!(p.requests),
                fmt_ts(p.first, true),
                fmt_ts(p.last, true),
                p.statuses
                    .iter()
                    .map(|(k, v)| format!("{k}: {v}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                p.endpoints.json(20),
                p.agents.json(4),
                p.auth
                    .iter()
                    .map(|(k, v)| format!("{k}: {v}"))
                    .collect::<Vec<_>>()
                    .join(", "),
            ),
            None => (
                en["requests"].clone(),
                short_ts(&a.first),
                short_ts(&a.last),
                en["statuses"]
                    .as_object()
                    .map(|m| {
                        m.iter()
                            .map(|(k, v)| format!("{k}: {v}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    })
                    .unwrap_or_default(),
                a.endpoints.json(20),
                json!({"items": list(&en["user_agents"]), "more": 0}),
                String::new(),
            ),
        };
        json!({
            "rank": rank,
            "kind": a.kind, "value": a.value,
            "risk": format!("{:.0}", a.risk),
            "alerts": a.alerts,
            "indicators": indicators,
            "requests": requests, "first": first, "last": last,
            "statuses": statuses,
            "endpoints": endpoints,
            "attacked_endpoints": a.endpoints.json(20),
            "agents": agents,
            "auth": auth,
            "auth_outcomes": en["auth"],
            "addresses": list(&en["addresses"]),
            "principals": list(&en["principals"]),
            "accounts": list(&en["accounts"]),
            "samples": a.samples,
        })
    }

    /// Requests and errors per bucket as bars, alert markers per type above them.
    fn svg(&self, date: bool) -> String {
        let tl = &self.timeline;
        let (Some(&lo), Some(&hi)) = (tl.req.keys().next(), tl.req.keys().next_back()) else {
            return "<p>No HTTP transactions.</p>".into();
        };
        let w0 = tl.width.max(1);
        let span = hi - lo + w0;
        // Bin width: a round number of seconds giving at most BINS bins.
        let nice = [
            1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21_600, 43_200, 86_400,
        ];
        let bw = nice
            .iter()
            .copied()
            .find(|b| *b >= w0 && span / b < BINS)
            .unwrap_or_else(|| (span / BINS + 1).max(w0));
        let start = lo.div_euclid(bw) * bw;
        let n = ((hi - start) / bw + 1) as usize;
        let mut bins = vec![(0u64, 0u64); n];
        for (k, (r, e)) in &tl.req {
            let i = ((k - start) / bw) as usize;
            if let Some(b) = bins.get_mut(i) {
                b.0 += r;
                b.1 += e;
            }
        }
        let max = bins.iter().map(|b| b.0).max().unwrap_or(1).max(1);
        let (w, h, left, top, rows) = (900.0, 200.0, 120.0, 12.0, tl.alerts.len() as f64);
        let marks_h = rows * 14.0;
        let plot_top = top + marks_h + 8.0;
        let bar_w = w / n as f64;
        let total_h = plot_top + h + 40.0;
        let mut s = format!(
            "<svg id=\"timeline\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {} {total_h}\" role=\"img\" aria-label=\"requests and errors per {} over the capture\">",
            w + left + 40.0,
            human_span(bw)
        );
        // y axis
        for f in [0.0, 0.5, 1.0] {
            let y = plot_top + h - h * f;
            s += &format!(
                "<line x1=\"{left}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\" class=\"grid\"/><text x=\"{}\" y=\"{:.1}\" class=\"axis\" text-anchor=\"end\">{}</text>",
                left + w,
                left - 4.0,
                y + 4.0,
                (max as f64 * f).round() as u64
            );
        }
        for (i, (r, e)) in bins.iter().enumerate() {
            if *r == 0 {
                continue;
            }
            let x = left + i as f64 * bar_w;
            let rh = h * *r as f64 / max as f64;
            let eh = h * *e as f64 / max as f64;
            let t0 = start + i as i64 * bw;
            s += &format!(
                "<g><title>{} +{}: {r} requests, {e} errors</title><rect class=\"req\" x=\"{x:.2}\" y=\"{:.2}\" width=\"{:.2}\" height=\"{rh:.2}\"/>",
                fmt_ts(t0, date),
                human_span(bw),
                plot_top + h - rh,
                (bar_w - 0.5).max(0.5)
            );
            if *e > 0 {
                s += &format!(
                    "<rect class=\"err\" x=\"{x:.2}\" y=\"{:.2}\" width=\"{:.2}\" height=\"{eh:.2}\"/>",
                    plot_top + h - eh,
                    (bar_w - 0.5).max(0.5)
                );
            }
            s += "</g>";
        }
        // alert markers, one row per type
        for (row, (ty, m)) in tl.alerts.iter().enumerate() {
            let y = top + row as f64 * 14.0 + 7.0;
            let c = row % 8;
            s += &format!(
                "<text x=\"{}\" y=\"{:.1}\" class=\"axis\" text-anchor=\"end\">{}</text>",
                left - 4.0,
                y + 4.0,
                esc(ty)
            );
            let mut per: BTreeMap<usize, u64> = BTreeMap::new();
            for (k, n) in m {
                *per.entry(((k - start).max(0) / bw) as usize).or_default() += n;
            }
            for (i, n) in per {
                let x = left + (i as f64 + 0.5) * bar_w;
                s += &format!(
                    "<circle class=\"mark c{c}\" cx=\"{x:.2}\" cy=\"{y:.1}\" r=\"{:.1}\"><title>{} {}: {n} alerts</title></circle>",
                    (2.0 + (n as f64).log2()).min(6.0),
                    fmt_ts(start + i as i64 * bw, date),
                    esc(ty)
                );
            }
        }
        // x axis: 6 labels
        for k in 0..=5 {
            let i = (n as f64 * k as f64 / 5.0) as i64;
            let x = left + i as f64 * bar_w;
            s += &format!(
                "<text x=\"{x:.1}\" y=\"{:.1}\" class=\"axis\" text-anchor=\"middle\">{}</text>",
                plot_top + h + 16.0,
                fmt_ts(start + i * bw, date)
            );
        }
        s += &format!(
            "<text x=\"{}\" y=\"{:.1}\" class=\"axis\">bars: requests per {} (red: errors, status 4xx/5xx or no response); dots: alerts (UTC)</text></svg>",
            left,
            plot_top + h + 34.0,
            human_span(bw)
        );
        s
    }
}

fn top(mut v: Vec<Value>, n: usize) -> Value {
    let more = v.len().saturating_sub(n);
    v.truncate(n);
    json!({"rows": v, "more": more})
}

fn human_span(s: i64) -> String {
    match s {
        s if s < 120 => format!("{s} s"),
        s if s < 7200 => format!("{} min", s / 60),
        s if s < 172_800 => format!("{:.1} h", s as f64 / 3600.0),
        s => format!("{:.1} days", s as f64 / 86_400.0),
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The report as a sink: EVE lines in, the HTML file written at the end of the run.
pub struct ReportSink {
    path: PathBuf,
    report: Report,
}

impl ReportSink {
    /// Check now that the path can be written (an unwritable path fails the start).
    pub fn create(path: &Path, sources: &[String]) -> io::Result<Self> {
        File::create(path)?;
        Ok(ReportSink {
            path: path.to_path_buf(),
            report: Report::new(sources.to_vec()),
        })
    }
}

impl crate::sink::Sink for ReportSink {
    fn write_lines(&mut self, lines: &[u8]) -> io::Result<()> {
        for l in lines.split(|b| *b == b'\n') {
            if let Ok(v) = serde_json::from_slice::<Value>(l) {
                self.report.observe(&v);
            }
        }
        Ok(())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
    fn finish(&mut self) -> io::Result<()> {
        let html = self.report.render().map_err(io::Error::other)?;
        let tmp = self.path.with_extension("html.tmp");
        let r = File::create(&tmp)
            .and_then(|mut f| f.write_all(html.as_bytes()).and_then(|_| f.sync_all()))
            .and_then(|_| std::fs::rename(&tmp, &self.path));
        if let Err(e) = &r {
            tracing::warn!("report {}: {e}", self.path.display());
            let _ = std::fs::remove_file(&tmp);
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_parse_with_their_offset_and_format_back() {
        let t = parse_ts("2026-11-29T09:04:33.234603+0000").unwrap();
        assert_eq!(fmt_ts(t, true), "2026-11-29 09:04:33");
        assert_eq!(parse_ts("2026-11-29T10:04:33+0100"), Some(t));
        assert_eq!(parse_ts("1970-01-01T00:00:00+0000"), Some(0));
        assert_eq!(parse_ts("garbage"), None);
        assert_eq!(parse_ts("2026-11-29T09:04:3"), None);
    }

    #[test]
    fn report_escapes_what_traffic_wrote() {
        let mut r = Report::new(vec!["x.pcap".into()]);
        r.observe(
            &json!({"event_type": "alert", "timestamp": "2026-11-29T09:04:33+0000", "src_ip": "10.0.0.9",
            "http": {"url": "/<script>alert(1)</script>"},
            "indicator": {"type": "<img src=x>", "entity": {"type": "ip", "value": "10.0.0.9"}, "endpoint": "GET /a"},
            "alert": {"signature": "s\"ig", "severity": 1}}),
        );
        r.observe(
            &json!({"event_type": "http", "timestamp": "2026-11-29T09:04:33+0000", "src_ip": "10.0.0.9",
            "http": {"status": 200, "http_user_agent": "<b>ua</b>"}, "api": {"endpoint": "GET /a"}}),
        );
        let h = r.render().unwrap();
        assert!(!h.contains("<script>alert"), "unescaped URL");
        assert!(!h.contains("<img src=x>"), "unescaped alert type");
        assert!(!h.contains("<b>ua</b>"), "unescaped user agent");
        assert!(h.contains("&lt;img src=x&gt;"));
    }

    #[test]
    fn timeline_reads_at_five_minutes_and_at_a_day() {
        for (span, step, want_bw) in [(300i64, 1i64, "per 2 s"), (86_400, 10, "per 10 min")] {
            let mut r = Report::new(Vec::new());
            let t0 = parse_ts("2026-11-29T00:00:00+0000").unwrap();
            for i in (0..span).step_by(step as usize) {
                let ts = format!("{}+0000", fmt_ts(t0 + i, true).replace(' ', "T"));
                r.observe(&json!({"event_type": "http", "timestamp": ts, "src_ip": "10.0.0.1",
                    "http": {"status": if i % 7 == 0 { 500 } else { 200 }}, "api": {"endpoint": "GET /"}}));
            }
            let svg = r.svg(span >= 86_400);
            let bars = svg.matches("<rect class=\"req\"").count();
            assert!((30..=BINS as usize).contains(&bars), "{span} s: {bars} bars");
            assert!(svg.contains(want_bw), "{span} s: {}", &svg[svg.len() - 200..]);
            assert!(svg.contains("<rect class=\"err\""));
            if span >= 86_400 {
                assert!(svg.contains(">2026-11-29 00:00:00<"), "a day's axis names dates");
            }
        }
    }

    #[test]
    fn timeline_buckets_coarsen_instead_of_growing() {
        let mut r = Report::new(Vec::new());
        for i in 0..(MAX_BUCKETS as i64 * 3) {
            let k = r.timeline.key(i);
            *r.timeline.req.entry(k).or_default() = (1, 0);
        }
        assert!(r.timeline.req.len() <= MAX_BUCKETS + 1, "{}", r.timeline.req.len());
        assert!(r.timeline.width >= 2);
        assert!(r.svg(true).matches("<rect class=\"req\"").count() <= BINS as usize + 1);
    }
}
