//! The rule language (SPEC §7): granular match criteria with a threshold, at a scope, for an
//! entity. Rules are TOML; a default pack is compiled in (`apitap rules default`), a file adds
//! to it or replaces it (`--rules FILE`, `rules.replace_defaults`).
//!
//! ```toml
//! [groups]
//! login = ["POST */login", "POST */signin", "POST */token"]
//!
//! [[rule]]
//! id = "http-404-burst"            # unique; the key of the rule's state across reloads
//! sid = 9100001                     # EVE alert.signature_id
//! signature = "More than ten 404 responses within ten seconds"
//! type = "forced_browsing"          # indicator.type
//! kind = "attack"                   # or "compromise"
//! severity = 2                      # 1 high .. 3 low
//! risk = 10                         # risk points added to the entity per alert
//! owasp = ["API9:2023"]
//! mitre = ["T1595.003"]
//! entity = "ip"                     # ip | principal | api_key | user_agent | a field, or a list
//! scope = { host = "api.example.com", group = "login", endpoint = "GET /users/{id}" }
//! match = { status = "404" }
//! threshold = { count = 10, window = 10 }   # more than 10 within 10 s (packet time)
//! ```
//!
//! `match` keys (all must hold; `all`, `any`, `not` combine sub-tables): `method`, `path`
//! (glob on the decoded path), `endpoint` (glob on `METHOD /template`), `status` (`404`,
//! `400-499`, or a list), `header` (present), `header_absent`, `header_match` (`{name, regex}`),
//! `query` / `body` / `param` (a name that must be present, or `{name, regex}`),
//! `request_bytes`, `response_bytes`, `latency_ms` (`">1000"`, `"<10"`, `"100-200"`), `auth`
//! (scheme or list; `none` for unauthenticated), `content_type` (glob on the request's,
//! `response_content_type` on the response's), `detector` (a built-in classifier, see
//! [`crate::detect`]), `grpc_status` (a gRPC call's status code: `5`, `"1-16"`, or a list;
//! never matches a call without one, nor a request that is not gRPC).
//!
//! `threshold`: `count` (fires when more than `count` matches fall within `window` seconds),
//! optionally `distinct` = the field whose distinct values are counted instead (`path.<param>`,
//! `query.<name>`, `body.<name>`, `param.<name>`, `path`, `endpoint`, `user_agent`,
//! `principal`, `ip`, `header.<name>`), and `per = "endpoint"` for one window per endpoint
//! (distinct ids on one template). `count = 0` fires on every first match of an episode.
//! An alert opens an episode for (rule, entity); it re-alerts only when the count has grown
//! `escalate` times (default 4; 0 never) or after `quiet` seconds without a match (default:
//! the window, at least 60).

pub mod glob;

use std::collections::HashMap;

use regex::Regex;
use toml::Value;

pub use glob::Glob;

/// The default rule pack, compiled into the binary.
pub const DEFAULT_RULES: &str = include_str!("default.toml");

/// `indicator.type` values (SPEC §5).
pub const INDICATOR_TYPES: [&str; 14] = [
    "brute_force",
    "credential_stuffing",
    "account_takeover",
    "enumeration",
    "forced_browsing",
    "injection",
    "ssrf",
    "rate_abuse",
    "error_spike",
    "latency_anomaly",
    "data_exposure",
    "auth_bypass",
    "scanner",
    "risk_threshold",
];

/// What an entity is keyed by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntityKind {
    /// The client address (from X-Forwarded-For when the peer is a trusted proxy).
    Ip,
    /// `api.auth.principal` (JWT sub, Basic user, keyed hash of a token or cookie).
    Principal,
    /// The keyed hash of an API key.
    ApiKey,
    UserAgent,
    /// A request field (`param.username`, `body.email`, `header.x-device-id`, ...): one
    /// account attacked from many addresses.
    Field(String, Field),
}

impl EntityKind {
    pub fn as_str(&self) -> &str {
        match self {
            EntityKind::Ip => "ip",
            EntityKind::Principal => "principal",
            EntityKind::ApiKey => "api_key",
            EntityKind::UserAgent => "user_agent",
            EntityKind::Field(name, _) => name,
        }
    }

    fn parse(s: &str) -> Option<EntityKind> {
        Some(match s {
            "ip" => EntityKind::Ip,
            "principal" => EntityKind::Principal,
            "api_key" => EntityKind::ApiKey,
            "user_agent" => EntityKind::UserAgent,
            f => match Field::parse(f)? {
                Field::Ip | Field::Principal | Field::UserAgent => return None,
                // a secret would land in the clear in indicator.entity: use api_key/principal
                Field::Query(n) | Field::Body(n) | Field::Param(n) | Field::Header(n)
                    if n.split('.').any(|seg| {
                        crate::redact::is_secret_param(seg)
                            || crate::redact::is_key_header(seg)
                            || ["authorization", "cookie", "proxy-authorization"]
                                .contains(&seg.to_ascii_lowercase().as_str())
                    }) =>
                {
                    return None;
                }
                x => EntityKind::Field(f.to_string(), x),
            },
        })
    }
}

/// A numeric range, inclusive.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Range {
    pub lo: f64,
    pub hi: f64,
}

impl Range {
    fn parse(s: &str) -> Option<Range> {
        let s = s.trim();
        let num = |x: &str| x.trim().parse::<f64>().ok();
        if let Some(x) = s.strip_prefix(">=") {
            return Some(Range {
                lo: num(x)?,
                hi: f64::INFINITY,
            });
        }
        if let Some(x) = s.strip_prefix('>') {
            return Some(Range {
                lo: num(x)? + f64::EPSILON * 4.0 + 1e-9,
                hi: f64::INFINITY,
            });
        }
        if let Some(x) = s.strip_prefix("<=") {
            return Some(Range {
                lo: f64::NEG_INFINITY,
                hi: num(x)?,
            });
        }
        if let Some(x) = s.strip_prefix('<') {
            return Some(Range {
                lo: f64::NEG_INFINITY,
                hi: num(x)? - 1e-9,
            });
        }
        if let Some((a, b)) = s.split_once('-')
            && !a.trim().is_empty()
        {
            return Some(Range {
                lo: num(a)?,
                hi: num(b)?,
            });
        }
        let v = num(s)?;
        Some(Range { lo: v, hi: v })
    }

    pub fn contains(&self, v: f64) -> bool {
        v >= self.lo && v <= self.hi
    }
}

/// Where a parameter is looked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamLoc {
    Query,
    Body,
    Either,
}

/// A compiled match condition.
#[derive(Debug, Clone)]
pub enum Cond {
    All(Vec<Cond>),
    Any(Vec<Cond>),
    Not(Box<Cond>),
    Method(Vec<String>),
    Path(Glob),
    Endpoint(Glob),
    Status(Vec<(u16, u16)>),
    /// gRPC status codes (inclusive ranges).
    GrpcStatus(Vec<(u32, u32)>),
    HeaderPresent(String),
    HeaderAbsent(String),
    HeaderMatch(String, Regex),
    Param(ParamLoc, String, Option<Regex>),
    RequestBytes(Range),
    ResponseBytes(Range),
    LatencyMs(Range),
    Auth(Vec<String>),
    ContentType(Glob),
    ResponseContentType(Glob),
    Detector(crate::detect::Detector),
}

/// A field whose distinct values a threshold counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field {
    PathParam(String),
    Query(String),
    Body(String),
    Param(String),
    Path,
    Endpoint,
    UserAgent,
    Principal,
    Ip,
    Header(String),
}

impl Field {
    /// A field whose values are secrets (a password, a token): counted, never listed.
    pub fn is_secret(&self) -> bool {
        match self {
            Field::Query(n) | Field::Body(n) | Field::Param(n) | Field::Header(n) => {
                let last = n.rsplit('.').next().unwrap_or(n).to_ascii_lowercase();
                crate::redact::is_secret_param(&last)
                    || crate::redact::is_key_header(&last)
                    || [
                        "pass",
                        "secret",
                        "token",
                        "cookie",
                        "authorization",
                        "credential",
                        "pwd",
                        "pin",
                    ]
                    .iter()
                    .any(|w| last.contains(w))
            }
            Field::Principal => false,
            _ => false,
        }
    }

    fn parse(s: &str) -> Option<Field> {
        let (a, b) = s.split_once('.').map_or((s, ""), |(a, b)| (a, b));
        Some(match (a, b) {
            ("path", "") => Field::Path,
            ("path", n) => Field::PathParam(n.to_string()),
            ("query", n) if !n.is_empty() => Field::Query(n.to_string()),
            ("body", n) if !n.is_empty() => Field::Body(n.to_string()),
            ("param", n) if !n.is_empty() => Field::Param(n.to_string()),
            ("header", n) if !n.is_empty() => Field::Header(n.to_ascii_lowercase()),
            ("endpoint", "") => Field::Endpoint,
            ("user_agent", "") => Field::UserAgent,
            ("principal", "") => Field::Principal,
            ("ip", "") => Field::Ip,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone)]
pub struct Threshold {
    /// Fires when more than this many matches (or distinct values) fall in the window.
    pub count: u64,
    pub window_ns: u64,
    pub distinct: Option<Field>,
    /// One window per endpoint (`per = "endpoint"`), e.g. distinct ids on one template.
    pub per_endpoint: bool,
    /// `found = true`: only answers that found something count: a 2xx, and other answers
    /// (the route's own 404 for a missing object) once the window saw a 2xx. A stream of 404
    /// guesses at paths that are not routes is forced browsing, not enumeration.
    /// `found = "personal"`: the same, once the window saw a 2xx carrying personal data
    /// (someone's e-mail, phone, card): walking a public catalogue is not enumeration.
    pub found: Found,
}

/// What a window must have seen before its matches count (`threshold.found`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Found {
    #[default]
    Anything,
    Success,
    Personal,
}

/// Where a rule applies.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    pub hosts: Vec<Glob>,
    /// Endpoint globs (`METHOD /template`), from `endpoint` and `group`; empty: every endpoint.
    pub endpoints: Vec<Glob>,
}

#[derive(Debug, Clone)]
pub struct Rule {
    pub id: String,
    pub sid: u64,
    pub rev: u64,
    pub signature: String,
    pub itype: &'static str,
    pub compromise: bool,
    pub severity: u8,
    pub risk: f64,
    pub owasp: Vec<String>,
    pub mitre: Vec<String>,
    pub entity: Vec<EntityKind>,
    pub scope: Scope,
    pub cond: Cond,
    pub threshold: Threshold,
    pub quiet_ns: u64,
    /// Re-alert within an episode when the count has grown this many times since the last
    /// alert (`escalate = 4`: at 4x, 16x, ...); 0 or 1: one alert per episode. Default 4.
    pub escalate: u64,
    /// `enabled = false` turns a rule (a default one, by its id) off.
    pub enabled: bool,
}

impl Rule {
    pub fn category(&self) -> &'static str {
        if self.compromise {
            "Indicator of compromise"
        } else {
            "Indicator of attack"
        }
    }
}

/// A set of compiled rules.
#[derive(Debug, Clone, Default)]
pub struct RuleSet {
    pub rules: Vec<Rule>,
}

/// A rule file error: file, rule, key, line.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct RuleError(pub String);

const SEC: f64 = 1e9;

impl RuleSet {
    /// The built-in pack.
    pub fn defaults() -> RuleSet {
        // The pack is tested; a failure here is a build defect, reported rather than panicking.
        RuleSet::parse("<default rules>", DEFAULT_RULES).unwrap_or_else(|e| {
            tracing::error!("default rules: {e}");
            RuleSet::default()
        })
    }

    pub fn from_file(path: &str) -> Result<RuleSet, RuleError> {
        let text = std::fs::read_to_string(path).map_err(|e| RuleError(format!("{path}: cannot read: {e}")))?;
        RuleSet::parse(path, &text)
    }

    /// `base` with `extra`'s rules (from `path`) added; a rule of `extra` with the id of a
    /// base rule replaces it.
    pub fn extend(mut self, extra: RuleSet, path: &str) -> Result<RuleSet, RuleError> {
        for r in extra.rules {
            match self.rules.iter_mut().find(|x| x.id == r.id) {
                Some(x) => *x = r,
                None => self.rules.push(r),
            }
        }
        check_unique_sids(&self.rules, &format!("{path} (with the built-in pack)"))?;
        Ok(self)
    }

    pub fn parse(path: &str, text: &str) -> Result<RuleSet, RuleError> {
        let doc: toml::Table = toml::from_str(text).map_err(|e| {
            let line = e
                .span()
                .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
            let msg = e.message().trim().replace('\n', " ");
            match line {
                Some(l) => RuleError(format!("{path}: line {l}: {msg}")),
                None => RuleError(format!("{path}: {msg}")),
            }
        })?;
        for k in doc.keys() {
            if k != "rule" && k != "groups" {
                return Err(RuleError(format!(
                    "{path}: line {}: unknown top-level key `{k}` (expected `rule` or `groups`)",
                    line_of(text, k)
                )));
            }
        }
        let mut groups: HashMap<String, Vec<Glob>> = HashMap::new();
        if let Some(g) = doc.get("groups") {
            let t = g
                .as_table()
                .ok_or_else(|| RuleError(format!("{path}: `groups` must be a table of endpoint lists")))?;
            for (name, v) in t {
                let list = str_list(v).ok_or_else(|| {
                    RuleError(format!(
                        "{path}: line {}: groups.{name}: must be a list of endpoint globs",
                        line_of(text, name)
                    ))
                })?;
                groups.insert(name.clone(), list.iter().map(|s| Glob::new(s)).collect());
            }
        }
        let mut rules = Vec::new();
        if let Some(rs) = doc.get("rule") {
            let arr = rs
                .as_array()
                .ok_or_else(|| RuleError(format!("{path}: `rule` must be an array of tables ([[rule]])")))?;
            for (i, r) in arr.iter().enumerate() {
                let t = r
                    .as_table()
                    .ok_or_else(|| RuleError(format!("{path}: rule #{}: not a table", i + 1)))?;
                let id = t.get("id").and_then(Value::as_str).unwrap_or("").to_string();
                let at = if id.is_empty() {
                    format!("{path}: rule #{}", i + 1)
                } else {
                    format!("{path}: line {}: rule {id:?}", id_line(text, &id))
                };
                let rule = compile_rule(t, &groups).map_err(|e| {
                    // Point at the offending key's line when it can be found in this rule.
                    match key_line(text, i, &e) {
                        Some(l) if !id.is_empty() => RuleError(format!("{path}: line {l}: rule {id:?}: {e}")),
                        _ => RuleError(format!("{at}: {e}")),
                    }
                })?;
                if rules.iter().any(|x: &Rule| x.id == rule.id) {
                    return Err(RuleError(format!("{at}: id: duplicate rule id")));
                }
                rules.push(rule);
            }
        }
        check_unique_sids(&rules, path)?;
        Ok(RuleSet { rules })
    }
}

fn check_unique_sids(rules: &[Rule], path: &str) -> Result<(), RuleError> {
    let mut seen = HashMap::new();
    for r in rules {
        if let Some(other) = seen.insert(r.sid, &r.id) {
            return Err(RuleError(format!(
                "{path}: rule {:?}: sid: {} is also the sid of rule {other:?}",
                r.id, r.sid
            )));
        }
    }
    Ok(())
}

/// The line of the key an error names (`match.stauts: ...` -> the line with `stauts`), looked
/// for between the `n`-th `[[rule]]` header and the next one.
fn key_line(text: &str, n: usize, err: &str) -> Option<usize> {
    let path = err.split(':').next()?;
    let key = path.rsplit(['.', '[']).next()?.trim_end_matches(']');
    if key.is_empty() || key.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let headers: Vec<usize> = text
        .lines()
        .enumerate()
        .filter(|(_, l)| l.trim_start().starts_with("[[rule]]"))
        .map(|(i, _)| i)
        .collect();
    let start = *headers.get(n)?;
    let end = headers.get(n + 1).copied().unwrap_or(usize::MAX);
    text.lines()
        .enumerate()
        .skip(start)
        .take_while(|(i, _)| *i < end)
        .find(|(_, l)| {
            l.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .any(|w| w == key)
        })
        .map(|(i, _)| i + 1)
}

/// The line of `id = "ID"` (either quote style, any spacing), for error messages.
fn id_line(text: &str, id: &str) -> usize {
    text.lines()
        .position(|l| {
            let l = l.trim_start();
            l.strip_prefix("id")
                .map(str::trim_start)
                .and_then(|r| r.strip_prefix('='))
                .map(|r| r.trim().trim_matches(['"', '\'']))
                .is_some_and(|v| v == id)
        })
        .map_or(0, |i| i + 1)
}

/// The line where `needle` first appears (1-based), for error messages.
fn line_of(text: &str, needle: &str) -> usize {
    text.find(needle).map_or(0, |i| text[..i].matches('\n').count() + 1)
}

fn str_list(v: &Value) -> Option<Vec<String>> {
    match v {
        Value::String(s) => Some(vec![s.clone()]),
        Value::Array(a) => a.iter().map(|x| x.as_str().map(str::to_string)).collect(),
        _ => None,
    }
}

fn num(v: &Value) -> Option<f64> {
    match v {
        Value::Integer(i) => Some(*i as f64),
        Value::Float(f) => Some(*f),
        _ => None,
    }
}

const RULE_KEYS: [&str; 17] = [
    "id",
    "sid",
    "rev",
    "signature",
    "type",
    "kind",
    "severity",
    "risk",
    "owasp",
    "mitre",
    "entity",
    "scope",
    "match",
    "threshold",
    "quiet",
    "escalate",
    "enabled",
];

fn compile_rule(t: &toml::Table, groups: &HashMap<String, Vec<Glob>>) -> Result<Rule, String> {
    for k in t.keys() {
        if !RULE_KEYS.contains(&k.as_str()) {
            return Err(format!("unknown key `{k}` (expected one of {})", RULE_KEYS.join(", ")));
        }
    }
    let s = |k: &str| t.get(k).and_then(Value::as_str);
    let id = s("id")
        .filter(|x| !x.is_empty())
        .ok_or("id: required, a non-empty string")?;
    if !id.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
        return Err("id: only letters, digits, '-', '_' and '.'".into());
    }
    let sid = t
        .get("sid")
        .and_then(Value::as_integer)
        .filter(|x| *x > 0)
        .ok_or("sid: required, a positive integer")? as u64;
    let rev = match t.get("rev") {
        None => 1,
        Some(v) => v.as_integer().filter(|x| *x > 0).ok_or("rev: a positive integer")? as u64,
    };
    let itype_s = s("type").ok_or("type: required, one of the indicator types")?;
    let itype = INDICATOR_TYPES
        .iter()
        .find(|x| **x == itype_s)
        .ok_or_else(|| format!("type: {itype_s:?} is not one of {}", INDICATOR_TYPES.join(", ")))?;
    let compromise = match s("kind").unwrap_or("attack") {
        "attack" => false,
        "compromise" => true,
        k => return Err(format!("kind: {k:?} must be \"attack\" or \"compromise\"")),
    };
    let severity = match t.get("severity") {
        None => 2,
        Some(v) => v
            .as_integer()
            .filter(|x| (1..=3).contains(x))
            .ok_or("severity: 1 (high) to 3 (low)")? as u8,
    };
    let risk = match t.get("risk") {
        None => 10.0,
        Some(v) => num(v)
            .filter(|x| *x >= 0.0)
            .ok_or("risk: a number of points, 0 or more")?,
    };
    let list = |k: &str| -> Result<Vec<String>, String> {
        t.get(k).map_or(Ok(Vec::new()), |v| {
            str_list(v).ok_or(format!("{k}: a string or a list of strings"))
        })
    };
    let owasp = list("owasp")?;
    let mitre = list("mitre")?;
    let ent = t.get("entity").map_or(Some(vec!["ip".to_string()]), str_list);
    let entity: Vec<EntityKind> = ent
        .ok_or("entity: a kind or a list of kinds")?
        .iter()
        .map(|e| {
            EntityKind::parse(e).ok_or_else(|| {
                format!("entity: {e:?} is not ip, principal, api_key, user_agent or a field (param.NAME, body.NAME, query.NAME, header.NAME, path.NAME) that is not a secret")
            })
        })
        .collect::<Result<_, _>>()?;
    if entity.is_empty() {
        return Err("entity: at least one kind".into());
    }
    let mut scope = Scope::default();
    if let Some(sc) = t.get("scope") {
        let sc = sc.as_table().ok_or("scope: a table (host, group, endpoint)")?;
        for (k, v) in sc {
            let l = str_list(v).ok_or_else(|| format!("scope.{k}: a string or a list of strings"))?;
            match k.as_str() {
                "host" => scope.hosts.extend(l.iter().map(|h| Glob::new(&h.to_ascii_lowercase()))),
                "endpoint" => scope.endpoints.extend(l.iter().map(|e| Glob::new(e))),
                "group" => {
                    for g in l {
                        let eps = groups
                            .get(&g)
                            .ok_or_else(|| format!("scope.group: no group {g:?} in [groups]"))?;
                        scope.endpoints.extend(eps.iter().cloned());
                    }
                }
                _ => return Err(format!("scope: unknown key `{k}` (host, group, endpoint)")),
            }
        }
    }
    let cond = match t.get("match") {
        None => Cond::All(Vec::new()),
        Some(m) => compile_cond(m, "match")?,
    };
    let th = t
        .get("threshold")
        .map(|v| v.as_table().ok_or("threshold: a table (count, window, distinct)"));
    let (count, window_ns, distinct, per_endpoint, found) = match th {
        None => (0, 60 * SEC as u64, None, false, Found::Anything),
        Some(th) => {
            let th = th?;
            for k in th.keys() {
                if !["count", "window", "distinct", "per", "found"].contains(&k.as_str()) {
                    return Err(format!(
                        "threshold: unknown key `{k}` (count, window, distinct, per, found)"
                    ));
                }
            }
            let count = match th.get("count") {
                None => 0,
                Some(v) => v
                    .as_integer()
                    .filter(|x| *x >= 0)
                    .ok_or("threshold.count: an integer, 0 or more")? as u64,
            };
            let window = match th.get("window") {
                None => 60.0,
                Some(v) => num(v)
                    .filter(|x| *x > 0.0 && *x <= 7.0 * 86400.0)
                    .ok_or("threshold.window: seconds, more than 0, at most a week")?,
            };
            let distinct = match th.get("distinct") {
                None => None,
                Some(v) => {
                    let f = v.as_str().ok_or("threshold.distinct: a field name")?;
                    Some(Field::parse(f).ok_or_else(|| {
                        format!("threshold.distinct: {f:?} is not path[.NAME], query.NAME, body.NAME, param.NAME, header.NAME, endpoint, user_agent, principal or ip")
                    })?)
                }
            };
            let per_endpoint = match th.get("per").map(|v| v.as_str()) {
                None => false,
                Some(Some("endpoint")) => true,
                Some(Some("entity")) => false,
                _ => return Err("threshold.per: \"endpoint\" or \"entity\"".into()),
            };
            let found = match th.get("found") {
                None => Found::Anything,
                Some(toml::Value::Boolean(b)) => {
                    if *b {
                        Found::Success
                    } else {
                        Found::Anything
                    }
                }
                Some(toml::Value::String(s)) if s == "personal" => Found::Personal,
                _ => return Err("threshold.found: true, false or \"personal\"".into()),
            };
            (count, (window * SEC) as u64, distinct, per_endpoint, found)
        }
    };
    let quiet_ns = match t.get("quiet") {
        None => window_ns.max(60 * SEC as u64),
        Some(v) => (num(v).filter(|x| *x >= 0.0).ok_or("quiet: seconds, 0 or more")? * SEC) as u64,
    };
    let escalate = match t.get("escalate") {
        None => DEFAULT_ESCALATE,
        Some(v) => v
            .as_integer()
            .filter(|x| (0..=1_000_000).contains(x))
            .ok_or("escalate: an integer factor, 0 (never) to 1000000")? as u64,
    };
    let enabled = match t.get("enabled") {
        None => true,
        Some(v) => v.as_bool().ok_or("enabled: true or false")?,
    };
    Ok(Rule {
        id: id.to_string(),
        sid,
        rev,
        signature: s("signature").unwrap_or(id).to_string(),
        itype,
        compromise,
        severity,
        risk,
        owasp,
        mitre,
        entity,
        scope,
        cond,
        threshold: Threshold {
            count,
            window_ns,
            distinct,
            per_endpoint,
            found,
        },
        quiet_ns,
        escalate,
        enabled,
    })
}

/// Re-alert factor within an episode (`escalate`): a handful of alerts per attacker, not one
/// more each time a count doubles.
pub const DEFAULT_ESCALATE: u64 = 4;

fn regex(v: &str, at: &str) -> Result<Regex, String> {
    regex::RegexBuilder::new(v)
        .size_limit(1 << 20)
        .build()
        .map_err(|e| format!("{at}: bad regex: {}", e.to_string().lines().last().unwrap_or("")))
}

fn name_and_regex(v: &Value, at: &str) -> Result<(String, Option<Regex>), String> {
    match v {
        Value::String(n) => Ok((n.clone(), None)),
        Value::Table(t) => {
            for k in t.keys() {
                if k != "name" && k != "regex" {
                    return Err(format!("{at}: unknown key `{k}` (name, regex)"));
                }
            }
            let n = t
                .get("name")
                .and_then(Value::as_str)
                .ok_or(format!("{at}.name: required"))?;
            let r = match t.get("regex") {
                Some(r) => Some(regex(r.as_str().ok_or(format!("{at}.regex: a string"))?, at)?),
                None => None,
            };
            Ok((n.to_string(), r))
        }
        _ => Err(format!("{at}: a name or {{name, regex}}")),
    }
}

fn compile_cond(v: &Value, at: &str) -> Result<Cond, String> {
    let t = v.as_table().ok_or_else(|| format!("{at}: a table of criteria"))?;
    let mut all = Vec::new();
    for (k, v) in t {
        let here = format!("{at}.{k}");
        let strs = || str_list(v).ok_or_else(|| format!("{here}: a string or a list of strings"));
        let range = || -> Result<Range, String> {
            let s = match v {
                Value::String(s) => s.clone(),
                Value::Integer(i) => i.to_string(),
                _ => {
                    return Err(format!(
                        "{here}: a number or a range like \">1000\", \"<10\", \"100-200\""
                    ));
                }
            };
            Range::parse(&s).ok_or_else(|| format!("{here}: {s:?} is not a number or range"))
        };
        let c = match k.as_str() {
            "all" | "any" => {
                let arr = v.as_array().ok_or_else(|| format!("{here}: a list of tables"))?;
                let subs = arr
                    .iter()
                    .enumerate()
                    .map(|(i, x)| compile_cond(x, &format!("{here}[{i}]")))
                    .collect::<Result<Vec<_>, _>>()?;
                if k == "all" { Cond::All(subs) } else { Cond::Any(subs) }
            }
            "not" => Cond::Not(Box::new(compile_cond(v, &here)?)),
            "method" => Cond::Method(strs()?.iter().map(|m| m.to_ascii_uppercase()).collect()),
            "path" => Cond::Path(Glob::new(v.as_str().ok_or_else(|| format!("{here}: a glob"))?)),
            "endpoint" => Cond::Endpoint(Glob::new(v.as_str().ok_or_else(|| format!("{here}: a glob"))?)),
            "status" => {
                let items: Vec<String> = match v {
                    Value::Integer(i) => vec![i.to_string()],
                    Value::Array(a) => a
                        .iter()
                        .map(|x| match x {
                            Value::Integer(i) => Some(i.to_string()),
                            Value::String(s) => Some(s.clone()),
                            _ => None,
                        })
                        .collect::<Option<_>>()
                        .ok_or_else(|| format!("{here}: statuses or ranges"))?,
                    Value::String(s) => vec![s.clone()],
                    _ => return Err(format!("{here}: a status, a range \"400-499\" or a list")),
                };
                let mut out = Vec::new();
                for it in items {
                    let (a, b) = it.split_once('-').unwrap_or((&it, &it));
                    let p = |x: &str| x.trim().parse::<u16>().ok().filter(|s| (100..=999).contains(s));
                    match (p(a), p(b)) {
                        (Some(a), Some(b)) if a <= b => out.push((a, b)),
                        _ => return Err(format!("{here}: {it:?} is not a status or a range like \"400-499\"")),
                    }
                }
                Cond::Status(out)
            }
            "grpc_status" => {
                let items: Vec<String> = match v {
                    Value::Integer(i) => vec![i.to_string()],
                    Value::String(s) => vec![s.clone()],
                    Value::Array(a) => a
                        .iter()
                        .map(|x| match x {
                            Value::Integer(i) => Some(i.to_string()),
                            Value::String(s) => Some(s.clone()),
                            _ => None,
                        })
                        .collect::<Option<_>>()
                        .ok_or_else(|| format!("{here}: gRPC codes or ranges"))?,
                    _ => return Err(format!("{here}: a gRPC code, a range \"1-16\" or a list")),
                };
                let mut out = Vec::new();
                for it in items {
                    let (a, b) = it.split_once('-').unwrap_or((&it, &it));
                    let p = |x: &str| x.trim().parse::<u32>().ok().filter(|c| *c <= 16);
                    match (p(a), p(b)) {
                        (Some(a), Some(b)) if a <= b => out.push((a, b)),
                        _ => return Err(format!("{here}: {it:?} is not a gRPC code (0-16) or a range")),
                    }
                }
                Cond::GrpcStatus(out)
            }
            "header" => Cond::All(
                strs()?
                    .into_iter()
                    .map(|h| Cond::HeaderPresent(h.to_ascii_lowercase()))
                    .collect(),
            ),
            "header_absent" => Cond::All(
                strs()?
                    .into_iter()
                    .map(|h| Cond::HeaderAbsent(h.to_ascii_lowercase()))
                    .collect(),
            ),
            "header_match" => {
                let (n, r) = name_and_regex(v, &here)?;
                Cond::HeaderMatch(n.to_ascii_lowercase(), r.ok_or(format!("{here}.regex: required"))?)
            }
            "query" | "body" | "param" => {
                let (n, r) = name_and_regex(v, &here)?;
                let loc = match k.as_str() {
                    "query" => ParamLoc::Query,
                    "body" => ParamLoc::Body,
                    _ => ParamLoc::Either,
                };
                Cond::Param(loc, n, r)
            }
            "request_bytes" => Cond::RequestBytes(range()?),
            "response_bytes" => Cond::ResponseBytes(range()?),
            "latency_ms" => Cond::LatencyMs(range()?),
            "auth" => {
                let l = strs()?;
                for a in &l {
                    if !["none", "basic", "bearer", "api_key", "cookie"].contains(&a.as_str()) {
                        return Err(format!("{here}: {a:?} is not none, basic, bearer, api_key or cookie"));
                    }
                }
                Cond::Auth(l)
            }
            "content_type" => Cond::ContentType(Glob::new(
                &v.as_str().ok_or(format!("{here}: a glob"))?.to_ascii_lowercase(),
            )),
            "response_content_type" => Cond::ResponseContentType(Glob::new(
                &v.as_str().ok_or(format!("{here}: a glob"))?.to_ascii_lowercase(),
            )),
            "detector" => {
                let d = v.as_str().ok_or(format!("{here}: a detector name"))?;
                Cond::Detector(crate::detect::Detector::parse(d).ok_or_else(|| {
                    format!(
                        "{here}: {d:?} is not one of {}",
                        crate::detect::Detector::NAMES.join(", ")
                    )
                })?)
            }
            _ => return Err(format!("{here}: unknown criterion")),
        };
        all.push(c);
    }
    Ok(if all.len() == 1 {
        all.pop().unwrap_or(Cond::All(Vec::new()))
    } else {
        Cond::All(all)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_pack_compiles() {
        let r = RuleSet::parse("default", DEFAULT_RULES).unwrap();
        assert!(r.rules.len() >= 5);
        assert!(
            r.rules
                .iter()
                .any(|r| r.id == "http-404-burst" && r.threshold.count == 10)
        );
    }

    #[test]
    fn errors_name_the_rule_the_key_and_the_line() {
        let t = "[[rule]]\nid = \"a\"\nsid = 1\ntype = \"scanner\"\nmatch = { status = \"4x4\" }\n";
        let e = RuleSet::parse("r.toml", t).unwrap_err().0;
        assert!(e.starts_with("r.toml: line 5: rule \"a\": match.status"), "{e}");
        let t = "[[rule]]\nid = 'x'\nsid = 1\ntype = \"scanner\"\n[[rule]]\nsignature = \"b\"\nid='b'\nsid = 2\ntype = \"nope\"\n";
        let e = RuleSet::parse("r.toml", t).unwrap_err().0;
        assert!(e.starts_with("r.toml: line 9: rule \"b\": type"), "{e}");
        let t = "[[rule]]\nid = \"a\"\nsid = 1\ntype = \"nope\"\n";
        assert!(RuleSet::parse("r.toml", t).unwrap_err().0.contains("type: \"nope\""));
        let t = "[[rule]]\nid = \"a\"\nsid = 1\ntype = \"scanner\"\ncolour = 3\n";
        assert!(
            RuleSet::parse("r.toml", t)
                .unwrap_err()
                .0
                .contains("unknown key `colour`")
        );
        let t = "[[rule]]\nid = \"a\"\nsid = 1\ntype = \"scanner\"\nmatch = { header_match = { name = \"x\", regex = \"(\" } }\n";
        assert!(RuleSet::parse("r.toml", t).unwrap_err().0.contains("bad regex"));
        let t =
            "[[rule]]\nid = \"a\"\nsid = 1\ntype = \"scanner\"\n[[rule]]\nid = \"b\"\nsid = 1\ntype = \"scanner\"\n";
        assert!(RuleSet::parse("r.toml", t).unwrap_err().0.contains("sid: 1 is also"));
        let t = "[[rule]]\nid = \"a\"\nsid = 1\ntype = \"scanner\"\nscope = { group = \"x\" }\n";
        assert!(RuleSet::parse("r.toml", t).unwrap_err().0.contains("no group \"x\""));
        let t = "[[rule]\n";
        assert!(RuleSet::parse("r.toml", t).unwrap_err().0.starts_with("r.toml: line 1"));
        // a secret as an entity would print it in the clear: refused, nested or not
        for e in [
            "param.password",
            "body.user.password",
            "header.x-api-key",
            "query.creds.token",
        ] {
            let t = format!("[[rule]]\nid = \"a\"\nsid = 1\ntype = \"scanner\"\nentity = \"{e}\"\n");
            assert!(
                RuleSet::parse("r.toml", &t).unwrap_err().0.contains("not a secret"),
                "{e}"
            );
        }
        let t = "[[rule]]\nid = \"a\"\nsid = 1\ntype = \"scanner\"\nentity = \"param.username\"\n";
        assert!(RuleSet::parse("r.toml", t).is_ok());
    }

    #[test]
    fn ranges() {
        assert!(Range::parse(">1000").unwrap().contains(1001.0));
        assert!(!Range::parse(">1000").unwrap().contains(1000.0));
        assert!(Range::parse("100-200").unwrap().contains(150.0));
        assert!(Range::parse("<10").unwrap().contains(9.0));
        assert!(!Range::parse("<10").unwrap().contains(10.0));
        assert!(Range::parse("abc").is_none());
    }
}
