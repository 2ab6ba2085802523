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

pub mod baseline;
pub mod entity;

use std::collections::VecDeque;
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
pub use entity::{EntityConfig, EntityTable};

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
            value: a.to_string(),
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

/// An entity value from the request, at most 128 bytes: a longer one keeps its first 96 and
/// a hash of the whole, so distinct values stay distinct and a 60 KB user name costs nothing.
fn bounded(v: String) -> String {
    if v.len() <= 128 {
        return v;
    }
    let h = hash_of(v.as_str());
    format!("{}...{h:016x}", crate::catalog::cap_str(v, 96))
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

/// A CIDR block of trusted proxies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    bits: u8,
}

impl Cidr {
    pub fn parse(s: &str) -> Option<Cidr> {
        let (a, b) = s.split_once('/').unwrap_or((s, ""));
        let net: IpAddr = a.trim().parse().ok()?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let bits = if b.is_empty() { max } else { b.trim().parse().ok()? };
        (bits <= max).then_some(Cidr { net, bits })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.net, ip) {
            (IpAddr::V4(n), IpAddr::V4(i)) => {
                let m = if self.bits == 0 {
                    0
                } else {
                    u32::MAX << (32 - self.bits as u32)
                };
                (u32::from(n) & m) == (u32::from(i) & m)
            }
            (IpAddr::V6(n), IpAddr::V6(i)) => {
                let m = if self.bits == 0 {
                    0
                } else {
                    u128::MAX << (128 - self.bits as u32)
                };
                (u128::from(n) & m) == (u128::from(i) & m)
            }
            _ => false,
        }
    }
}

/// The client address of a transaction: the TCP peer, or when the peer is a trusted proxy,
/// the right-most address in X-Forwarded-For (or `Forwarded: for=`) that is not itself a
/// trusted proxy (as nginx's `real_ip_recursive`). A header from an untrusted peer is ignored.
pub fn client_ip(meta: &FlowMeta, tx: &Transaction, trusted: &[Cidr]) -> IpAddr {
    if trusted.is_empty() || !trusted.iter().any(|c| c.contains(meta.src)) {
        return meta.src;
    }
    let Some(q) = &tx.request else { return meta.src };
    // Every X-Forwarded-For line, in order, is one list (RFC 9110 §5.3): a proxy such as
    // HAProxy appends its own line, so the first (client-written) line must not win.
    let mut hops: Vec<IpAddr> = Vec::new();
    for x in q.header_values("x-forwarded-for") {
        hops.extend(x.split(',').filter_map(|h| parse_hop(h.trim())));
    }
    if hops.is_empty() {
        for f in q.header_values("forwarded") {
            for el in f.split(',') {
                for pair in el.split(';') {
                    if let Some((k, v)) = pair.trim().split_once('=')
                        && k.trim().eq_ignore_ascii_case("for")
                        && let Some(ip) = parse_hop(v.trim().trim_matches('"'))
                    {
                        hops.push(ip);
                    }
                }
            }
        }
    }
    for h in hops.iter().rev() {
        if !trusted.iter().any(|c| c.contains(*h)) {
            return *h;
        }
    }
    hops.first().copied().unwrap_or(meta.src)
}

fn parse_hop(h: &str) -> Option<IpAddr> {
    if let Ok(ip) = h.parse() {
        return Some(ip);
    }
    if let Some(v6) = h.strip_prefix('[') {
        return v6.split(']').next()?.parse().ok();
    }
    h.rsplit_once(':').and_then(|(a, _)| a.parse().ok())
}

/// Who calls each endpoint with and without credentials, kept by the capture thread, which
/// sees every transaction in packet-time order: the auth-bypass verdict must not depend on
/// which worker shard got there first.
pub struct AuthTracker {
    map: HashMap<u64, AuthProfile>,
    cfg: crate::worker::BypassConfig,
    cap: usize,
}

#[derive(Default)]
struct AuthProfile {
    authd: u64,
    auth_clients: crate::catalog::Distinct,
    open_clients: crate::catalog::Distinct,
}

impl AuthTracker {
    pub fn new(cfg: crate::worker::BypassConfig) -> Self {
        AuthTracker {
            map: HashMap::new(),
            cfg,
            cap: 100_000,
        }
    }

    /// Fold one transaction in. True when it is a 2xx without credentials on a protected
    /// endpoint: one that saw `min_calls` calls with credentials and whose clients nearly all
    /// used them (at most `1 - share` of them, and at least one, got a 2xx without). Counted in
    /// clients, not calls, so one bypasser's volume cannot make the endpoint look public.
    pub fn observe(&mut self, meta: &FlowMeta, tx: &Transaction, client: IpAddr) -> bool {
        let Some(q) = &tx.request else { return false };
        let creds = crate::redact::Redactor::has_credentials(q);
        let ok = tx.response.as_ref().is_some_and(|r| (200..300).contains(&r.status));
        // This runs on the capture thread: template a path only when the answer can matter.
        if !creds && (!ok || self.map.is_empty()) {
            return false;
        }
        let Some((host, method, tpl)) = crate::catalog::endpoint_of(tx, meta) else {
            return false;
        };
        let key = hash_of(&(host, method, tpl));
        if creds {
            // Only endpoints called with credentials are tracked: a catch-all answering 200
            // to random paths cannot fill the table. Full: new endpoints go untracked.
            if !self.map.contains_key(&key) && self.map.len() >= self.cap {
                return false;
            }
            let p = self.map.entry(key).or_default();
            p.authd += 1;
            p.auth_clients.add(client);
            return false;
        }
        let Some(p) = self.map.get_mut(&key).filter(|_| ok) else {
            return false;
        };
        let open_allowed = ((1.0 - self.cfg.share) * p.auth_clients.estimate() as f64).max(1.0);
        if p.open_clients.estimate() as f64 > open_allowed {
            // already public: nothing to judge (the count goes on, as the allowance grows with
            // the clients that use credentials)
            p.open_clients.add(client);
            return false;
        }
        // Attack traffic (an injection payload, an attack tool, an SSRF probe) answered 2xx
        // without credentials does not teach the profile that the endpoint is public: an
        // early injection tool must not hide a later bypass. It is judged, not learned from.
        let attack = flagged_request(tx);
        if !attack {
            p.open_clients.add(client);
        }
        let open = p.open_clients.estimate() as f64 + attack as u64 as f64;
        if open > open_allowed {
            return false;
        }
        // A well-known protected endpoint; or, on one seen only a few times with credentials,
        // a response that hands someone's personal data to a caller without any: evidence that
        // does not depend on how many calls the profile has learned from.
        p.authd >= self.cfg.min_calls || (p.authd >= PERSONAL_MIN_CALLS && personal_data(tx))
    }
}

/// Calls with credentials after which personal data served without credentials is a bypass.
const PERSONAL_MIN_CALLS: u64 = 2;

/// Does the response carry personal data (e-mail addresses, phone numbers, cards, ids)?
fn personal_data(tx: &Transaction) -> bool {
    use crate::catalog::sensitive::Sensitive;
    tx.response.as_ref().is_some_and(|r| {
        crate::catalog::sensitive::scan_response(r)
            .iter()
            .any(|k| !matches!(k, Sensitive::Jwt | Sensitive::ApiKey))
    })
}

/// A request the classifiers flag as an attack on its own (injection, attack tool, SSRF).
/// Run on the capture thread only for the few transactions whose verdict matters there.
fn flagged_request(tx: &Transaction) -> bool {
    // (no site: a link back to the site is rare in this narrow case, and counting it as an
    // attack only keeps that call out of the profile)
    crate::detect::classify(tx, &Inputs::of(tx), &Default::default()).attack()
}

/// One transaction as the engine sees it.
pub struct View<'a> {
    pub meta: &'a FlowMeta,
    pub tx: &'a Transaction,
    pub auth: &'a Auth,
    pub client: IpAddr,
    pub host: &'a str,
    /// `METHOD /template`
    pub endpoint: &'a str,
    pub path: &'a str,
    pub url: String,
    /// The endpoint nearly always sees credentials and this call had none yet got a 2xx.
    pub auth_bypass: bool,
    /// The site's own origins (configured), besides its Host and address.
    pub site_origins: &'a [String],
    inputs: std::cell::OnceCell<Inputs>,
    verdicts: std::cell::OnceCell<Verdicts>,
    body: std::cell::OnceCell<Option<serde_json::Value>>,
    sensitive: std::cell::OnceCell<std::collections::BTreeSet<crate::catalog::sensitive::Sensitive>>,
}

impl<'a> View<'a> {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        meta: &'a FlowMeta,
        tx: &'a Transaction,
        auth: &'a Auth,
        client: IpAddr,
        host: &'a str,
        endpoint: &'a str,
        url: String,
    ) -> Self {
        let path = tx
            .request
            .as_ref()
            .map(|q| crate::event::target_path(&q.uri))
            .unwrap_or("");
        View {
            meta,
            tx,
            auth,
            client,
            host,
            endpoint,
            path,
            url,
            auth_bypass: false,
            site_origins: &[],
            inputs: Default::default(),
            verdicts: Default::default(),
            body: Default::default(),
            sensitive: Default::default(),
        }
    }

    pub fn verdicts(&self) -> &Verdicts {
        self.verdicts.get_or_init(|| {
            let inputs = self
                .inputs
                .get_or_init(|| Inputs::of_site(self.tx, Some((self.meta.dst, self.meta.dport)), self.site_origins));
            crate::detect::classify(self.tx, inputs, self.sensitive())
        })
    }

    /// Sensitive data kinds in the response, scanned once for the catalog and the detectors.
    pub fn sensitive(&self) -> &std::collections::BTreeSet<crate::catalog::sensitive::Sensitive> {
        self.sensitive.get_or_init(|| {
            self.tx
                .response
                .as_ref()
                .map(crate::catalog::sensitive::scan_response)
                .unwrap_or_default()
        })
    }

    /// The response status; for a gRPC call that failed (HTTP 200, grpc-status not OK), the
    /// HTTP status its code maps to (UNAVAILABLE 503, NOT_FOUND 404...), so baselines and
    /// entity profiles count a gRPC error as they count an HTTP one (SPEC §4b).
    pub fn status(&self) -> u16 {
        let s = self.tx.response.as_ref().map(|r| r.status).unwrap_or(0);
        match self.tx.grpc.as_deref().and_then(|g| g.http_status()) {
            Some(e) if s == 200 => e,
            _ => s,
        }
    }

    /// This transaction as alert evidence.
    fn sample(&self, detail: Option<String>) -> Sample {
        Sample {
            url: self.url.clone(),
            flow_id: self.meta.flow_id,
            status: self.status(),
            detail,
        }
    }

    /// The HTTP facts an alert carries in EVE's `http` object.
    fn http_brief(&self) -> HttpBrief {
        let q = self.tx.request.as_ref();
        HttpBrief {
            hostname: q.and_then(|q| q.header("host")).map(str::to_string),
            url: self.url.clone(),
            method: q.map(|q| q.method.clone()).unwrap_or_default(),
            status: self.tx.response.as_ref().map(|r| r.status),
            user_agent: self.header("user-agent").map(str::to_string),
        }
    }

    fn header(&self, name: &str) -> Option<&'a str> {
        self.tx.request.as_ref().and_then(|q| q.header(name))
    }

    fn json_body(&self) -> Option<&serde_json::Value> {
        self.body
            .get_or_init(|| {
                let q = self.tx.request.as_ref()?;
                if q.body.is_empty() {
                    return None;
                }
                let ct = q.header("content-type").unwrap_or("").to_ascii_lowercase();
                if ct.contains("x-www-form-urlencoded") {
                    let text = String::from_utf8_lossy(&q.body);
                    let m: serde_json::Map<String, serde_json::Value> = crate::redact::query_pairs(&text)
                        .take(256)
                        .map(|(k, v)| {
                            (
                                crate::redact::percent_decode_lossy(k).into_owned(),
                                serde_json::Value::String(crate::redact::percent_decode_lossy(v).into_owned()),
                            )
                        })
                        .collect();
                    return Some(serde_json::Value::Object(m));
                }
                serde_json::from_slice(&q.body).ok()
            })
            .as_ref()
    }

    fn query(&self, name: &str) -> Option<String> {
        let q = self.tx.request.as_ref()?;
        let (_, qs) = q.uri.split_once('?')?;
        crate::redact::query_pairs(qs)
            .find(|(k, _)| crate::redact::percent_decode_lossy(k) == name)
            .map(|(_, v)| crate::redact::percent_decode_lossy(v).into_owned())
    }

    fn body_field(&self, name: &str) -> Option<String> {
        let mut v = self.json_body()?;
        for part in name.split('.') {
            v = v.get(part)?;
        }
        Some(match v {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        })
    }

    /// The value of a path parameter by its template name (`id`, `uuid`, `param`, ...) or
    /// its position among the parameters (`0`, `1`).
    fn path_param(&self, name: &str) -> Option<String> {
        let tpl = self.endpoint.split_once(' ').map(|(_, t)| t)?;
        let idx: Option<usize> = name.parse().ok();
        let mut k = 0;
        for (t, p) in tpl.split('/').zip(self.path.split('/')) {
            if t.starts_with('{') {
                if idx == Some(k) || t.trim_matches(['{', '}']) == name {
                    return Some(p.to_string());
                }
                k += 1;
            }
        }
        None
    }

    /// The account a login names (`username`, `email`, `login`, ... in the body or query): a
    /// login name is not a secret, and it is what a responder needs.
    pub fn login_account(&self) -> Option<String> {
        const NAMES: [&str; 8] = [
            "username",
            "user",
            "email",
            "login",
            "user_name",
            "account",
            "userid",
            "mail",
        ];
        // a name is a string or a number; an object (`"user": {"email", "password"}`) is not
        NAMES
            .iter()
            .find_map(|n| self.body_field(n).or_else(|| self.query(n)))
            .filter(|a| !a.is_empty() && !a.starts_with(['{', '[']))
            .map(|a| a.chars().take(128).filter(|c| !c.is_control()).collect())
    }

    pub fn field(&self, f: &Field) -> Option<String> {
        match f {
            Field::PathParam(n) => self.path_param(n),
            Field::Query(n) => self.query(n),
            Field::Body(n) => self.body_field(n),
            Field::Param(n) => self.query(n).or_else(|| self.body_field(n)),
            Field::Path => Some(self.path.to_string()),
            Field::Endpoint => Some(self.endpoint.to_string()),
            Field::UserAgent => self.header("user-agent").map(str::to_string),
            Field::Principal => self.auth.principal.clone(),
            Field::Ip => Some(self.client.to_string()),
            Field::Header(n) => self.header(n).map(str::to_string),
        }
    }

    fn entity(&self, kinds: &[EntityKind]) -> Option<EntityKey> {
        let mut kind = String::new();
        let mut value = String::new();
        for k in kinds {
            let v = match k {
                EntityKind::Ip => self.client.to_string(),
                EntityKind::Principal => bounded(self.auth.principal.clone()?),
                EntityKind::ApiKey if self.auth.scheme == "api_key" => bounded(self.auth.principal.clone()?),
                EntityKind::ApiKey => return None,
                EntityKind::UserAgent => bounded(self.header("user-agent")?.to_string()),
                EntityKind::Field(_, f) => bounded(self.field(f).filter(|v| !v.is_empty())?),
            };
            if !kind.is_empty() {
                kind.push('+');
                value.push('|');
            }
            kind.push_str(k.as_str());
            value.push_str(&v);
        }
        Some(EntityKey {
            kind: if kinds.len() == 1 {
                kind_name(&kinds[0])
            } else {
                kind.into()
            },
            value,
        })
    }

    pub fn matches(&self, c: &Cond) -> bool {
        let q = self.tx.request.as_ref();
        let r = self.tx.response.as_ref();
        match c {
            Cond::All(v) => v.iter().all(|c| self.matches(c)),
            Cond::Any(v) => v.iter().any(|c| self.matches(c)),
            Cond::Not(c) => !self.matches(c),
            Cond::Method(m) => q.is_some_and(|q| m.contains(&q.method)),
            Cond::Path(g) => g.matches(&crate::redact::percent_decode_lossy(self.path)),
            Cond::Endpoint(g) => g.matches(self.endpoint),
            Cond::Status(rs) => r.is_some_and(|r| rs.iter().any(|(a, b)| (*a..=*b).contains(&r.status))),
            Cond::GrpcStatus(rs) => {
                let code = self.tx.grpc.as_deref().and_then(|g| g.status);
                code.is_some_and(|c| rs.iter().any(|(a, b)| (*a..=*b).contains(&c)))
            }
            Cond::HeaderPresent(h) => self.header(h).is_some(),
            Cond::HeaderAbsent(h) => self.header(h).is_none(),
            Cond::HeaderMatch(h, re) => self.header(h).is_some_and(|v| re.is_match(v)),
            Cond::Param(loc, name, re) => {
                let v = match loc {
                    ParamLoc::Query => self.query(name),
                    ParamLoc::Body => self.body_field(name),
                    ParamLoc::Either => self.query(name).or_else(|| self.body_field(name)),
                };
                match (v, re) {
                    (Some(v), Some(re)) => re.is_match(&v),
                    (Some(_), None) => true,
                    (None, _) => false,
                }
            }
            Cond::RequestBytes(rg) => q.is_some_and(|q| rg.contains(q.body_len as f64)),
            Cond::ResponseBytes(rg) => r.is_some_and(|r| rg.contains(r.body_len as f64)),
            Cond::LatencyMs(rg) => self.tx.latency_us().is_some_and(|l| rg.contains(l as f64 / 1000.0)),
            Cond::Auth(schemes) => schemes.iter().any(|s| s == self.auth.scheme),
            Cond::ContentType(g) => q
                .and_then(|q| q.header("content-type"))
                .is_some_and(|c| g.matches(c.split(';').next().unwrap_or("").trim().to_ascii_lowercase().as_str())),
            Cond::ResponseContentType(g) => r
                .and_then(|r| r.header("content-type"))
                .is_some_and(|c| g.matches(c.split(';').next().unwrap_or("").trim().to_ascii_lowercase().as_str())),
            Cond::Detector(Detector::AuthBypass) => self.auth_bypass,
            Cond::Detector(d) => self.verdicts().has(*d),
        }
    }

    fn in_scope(&self, r: &Rule) -> bool {
        // `host = "api.example.com"` also covers `api.example.com:8443`
        let bare = match self.host.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') && p.bytes().all(|b| b.is_ascii_digit()) => h,
            _ => self.host,
        };
        (r.scope.hosts.is_empty() || r.scope.hosts.iter().any(|g| g.matches(self.host) || g.matches(bare)))
            && (r.scope.endpoints.is_empty() || r.scope.endpoints.iter().any(|g| g.matches(self.endpoint)))
    }
}

/// A few words on what was seen, for `indicator.evidence`.
#[derive(Debug, Clone)]
pub struct Sample {
    pub url: String,
    pub flow_id: u64,
    pub status: u16,
    pub detail: Option<String>,
}

/// The HTTP facts of the transaction that raised an alert (EVE puts them in `http`).
#[derive(Debug, Clone, Default)]
pub struct HttpBrief {
    pub hostname: Option<String>,
    pub url: String,
    pub method: String,
    pub status: Option<u16>,
    pub user_agent: Option<String>,
}

/// A match on its way to the owner of its entity's state.
#[derive(Debug, Clone)]
pub struct Hit {
    pub rule: String,
    /// The rule's index in the sender's rule set (checked against the id).
    pub rule_idx: usize,
    pub key: EntityKey,
    /// The transaction's `METHOD /template`.
    pub endpoint: String,
    /// The window's extra key: the endpoint when `threshold.per = "endpoint"`, else empty.
    pub per: String,
    pub host: String,
    pub ts: Ts,
    pub distinct: Option<u64>,
    /// The distinct value itself, for the alert's list of values (not for secret fields).
    pub value: Option<String>,
    /// The response carried personal data (`threshold.found = "personal"`).
    pub personal: bool,
    pub sample: Sample,
    pub meta: FlowMeta,
    pub http: HttpBrief,
}

/// A transaction's facts for an entity profile, on its way to the owner.
#[derive(Debug, Clone)]
pub struct Obs {
    pub key: EntityKey,
    pub ts: Ts,
    pub client: IpAddr,
    pub endpoint: String,
    pub status: u16,
    pub user_agent: Option<String>,
    pub principal: Option<String>,
    pub auth_failure: bool,
    /// A failed login attempt (not just any 401).
    pub login_failure: bool,
    pub login_success: bool,
    pub authenticated: bool,
    /// The flow, for an account-takeover alert raised from this call.
    pub meta: FlowMeta,
    /// A login's account name and its sample and HTTP facts (logins only).
    pub login: Option<Box<LoginFacts>>,
}

/// What an account-takeover alert tells about the logins that made it.
#[derive(Debug, Clone)]
pub struct LoginFacts {
    pub account: Option<String>,
    pub sample: Sample,
    pub http: HttpBrief,
}

/// One call of an endpoint, for its error and latency baselines (kept by the endpoint's
/// owner shard: its calls come from clients on every shard).
#[derive(Debug, Clone)]
pub struct EpObs {
    /// `host METHOD /template`
    pub key: String,
    pub host: String,
    pub endpoint: String,
    pub ts: Ts,
    pub status: u16,
    pub latency_us: Option<u64>,
    /// Not flagged: the call may teach the endpoint's baseline.
    pub clean: bool,
    pub sample: Sample,
    pub meta: FlowMeta,
    pub http: HttpBrief,
}

/// Messages between shards.
#[derive(Debug, Clone)]
pub enum Cross {
    Hit(Box<Hit>),
    Obs(Box<Obs>),
    Ep(Box<EpObs>),
}

/// What the engine asks its worker to write.
#[derive(Debug)]
pub enum Out {
    Alert(Box<Alert>),
    Entity(Box<entity::EntityReport>),
}

/// Where a baseline finding came from.
struct Ctx<'a> {
    ts: Ts,
    host: &'a str,
    endpoint: &'a str,
    sample: Sample,
    meta: &'a FlowMeta,
    http: HttpBrief,
}

impl<'a> Ctx<'a> {
    fn of(v: &'a View<'a>) -> Ctx<'a> {
        Ctx {
            ts: v.tx.start(),
            host: v.host,
            endpoint: v.endpoint,
            sample: v.sample(None),
            meta: v.meta,
            http: v.http_brief(),
        }
    }
}

/// An alert, ready to format.
#[derive(Debug, Clone)]
pub struct Alert {
    pub ts: Ts,
    pub sid: u64,
    pub rev: u64,
    pub signature: String,
    pub category: &'static str,
    pub severity: u8,
    pub itype: &'static str,
    pub compromise: bool,
    pub key: EntityKey,
    pub risk: f64,
    pub entity_risk: f64,
    pub host: String,
    pub endpoint: String,
    pub window_s: f64,
    pub count: u64,
    pub distinct: Option<u64>,
    pub first: Ts,
    pub last: Ts,
    pub owasp: Vec<String>,
    pub mitre: Vec<String>,
    pub samples: Vec<Sample>,
    pub meta: Option<FlowMeta>,
    pub http: Option<HttpBrief>,
    pub rule_id: String,
    /// `distinct` is a HyperLogLog estimate (past [`EXACT_DISTINCT`] values), not a count.
    pub distinct_estimated: bool,
    /// The distinct values (accounts, ids) seen, the first [`MAX_VALUES`].
    pub values: Vec<String>,
    /// The account an account-takeover alert is about.
    pub account: Option<String>,
}

/// Distinct values are counted exactly up to this many per episode, then estimated.
pub const EXACT_DISTINCT: usize = 256;
/// Distinct values listed in an alert.
pub const MAX_VALUES: usize = 10;

/// Sliding-window state of one (rule, entity[, endpoint]).
#[derive(Debug, Default)]
struct Window {
    /// The rule's id (the map is keyed by a hash of rule, entity and `per`).
    rule: String,
    times: VecDeque<Ts>,
    distinct: HashMap<u64, Ts>,
    last: Ts,
    episode: Option<Episode>,
    /// `threshold.found`: the window saw a 2xx (the route is real).
    found: bool,
}

#[derive(Debug, Default)]
struct Episode {
    first: Ts,
    count: u64,
    alerted_at: u64,
    samples: Vec<Sample>,
    /// The episode's distinct values: exact while few (the window's own set forgets), then
    /// a HyperLogLog. Only kept once the episode has alerted (attackers, not every browser).
    seen: hashbrown::HashSet<u64>,
    hll: Option<Box<crate::catalog::Distinct>>,
    values: Vec<String>,
}

impl Episode {
    fn add_distinct(&mut self, d: u64) {
        match &mut self.hll {
            Some(h) => h.add(d),
            None => {
                self.seen.insert(d);
                if self.seen.len() > EXACT_DISTINCT {
                    let mut h = Box::<crate::catalog::Distinct>::default();
                    for x in self.seen.drain() {
                        h.add(x);
                    }
                    self.seen.shrink_to_fit();
                    self.hll = Some(h);
                }
            }
        }
    }

    /// (distinct values, estimated?)
    fn distinct(&self) -> (u64, bool) {
        match &self.hll {
            Some(h) => (h.estimate().max(EXACT_DISTINCT as u64), true),
            None => (self.seen.len() as u64, false),
        }
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
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            max_states: 200_000,
            entity: EntityConfig::default(),
            trusted_proxies: Vec::new(),
            baseline: baseline::BaselineConfig::default(),
            site_origins: Vec::new(),
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
    states: HashMap<u64, Window>,
    pub entities: EntityTable,
    baselines: baseline::Baselines,
    pub stats: EngineStats,
    shard: usize,
    shards: usize,
}

const SAMPLES: usize = 5;

impl Engine {
    pub fn new(rules: Arc<RuleSet>, cfg: EngineConfig, shard: usize, shards: usize) -> Self {
        Engine {
            entities: EntityTable::new(cfg.entity.clone()),
            baselines: baseline::Baselines::new(cfg.baseline.clone()),
            rules,
            cfg,
            states: HashMap::new(),
            stats: EngineStats::default(),
            shard,
            shards: shards.max(1),
        }
    }

    /// Swap in reloaded rules; windows of rules that kept their id carry on.
    pub fn reload(&mut self, rules: Arc<RuleSet>) {
        self.states
            .retain(|_, w| rules.rules.iter().any(|r| r.id == w.rule && r.enabled));
        self.rules = rules;
    }

    /// Run the rules over one transaction. Hits for entities owned here are applied at once;
    /// the others come back as messages for their owners.
    pub fn on_tx(&mut self, v: &View<'_>, out: &mut Vec<Out>, cross: &mut Vec<(usize, Cross)>) {
        // Entity profiles: the address always (owned here), the principal where it lives.
        let vd = v.verdicts();
        let (fail, ok) = (vd.has(Detector::AuthFailure), vd.has(Detector::LoginSuccess));
        let base = Obs {
            key: EntityKey::ip(v.client),
            ts: v.tx.start(),
            client: v.client,
            endpoint: v.endpoint.to_string(),
            status: v.status(),
            user_agent: v.header("user-agent").map(str::to_string),
            principal: v.auth.principal.clone().map(bounded),
            auth_failure: fail,
            login_failure: fail && vd.has(Detector::Login),
            login_success: ok,
            authenticated: v.auth.scheme != "none",
            meta: v.meta.clone(),
            login: vd.has(Detector::Login).then(|| {
                Box::new(LoginFacts {
                    account: v.login_account(),
                    sample: v.sample(None),
                    http: v.http_brief(),
                })
            }),
        };
        if let Some(p) = &v.auth.principal {
            let key = EntityKey {
                kind: "principal".into(),
                value: bounded(p.clone()),
            };
            let owner = key.shard(self.shards, self.shard);
            let o = Obs { key, ..base.clone() };
            if owner == self.shard {
                self.observe(&o, out);
            } else {
                cross.push((owner, Cross::Obs(Box::new(o))));
            }
        }
        self.observe(&base, out);
        self.detect_baselines(v, out, cross);
        let rules = self.rules.clone();
        for (rule_idx, r) in rules.rules.iter().enumerate().filter(|(_, r)| r.enabled) {
            if !v.in_scope(r) || !v.matches(&r.cond) {
                continue;
            }
            let Some(key) = v.entity(&r.entity) else { continue };
            self.stats.matches += 1;
            let (distinct, value) = match &r.threshold.distinct {
                Some(f) => match v.field(f) {
                    Some(x) => {
                        // listed only when it is a plain value of a field that is not a secret
                        // (an object's text could hold a password)
                        let listed = (!f.is_secret() && !x.starts_with(['{', '[']))
                            .then(|| x.chars().take(64).filter(|c| !c.is_control()).collect());
                        (Some(hash_of(x.as_str())), listed)
                    }
                    None => continue, // nothing to count
                },
                None => (None, None),
            };
            let detail = match &r.cond {
                Cond::Detector(d) => v.verdicts().evidence(*d).map(|(n, e)| format!("{n}: {e}")),
                _ => None,
            };
            let hit = Hit {
                rule: r.id.clone(),
                rule_idx,
                endpoint: v.endpoint.to_string(),
                per: if r.threshold.per_endpoint {
                    v.endpoint.to_string()
                } else {
                    String::new()
                },
                host: v.host.to_string(),
                ts: v.tx.start(),
                distinct,
                value,
                personal: r.threshold.found == crate::rules::Found::Personal
                    && v.verdicts().has(Detector::SensitiveResponse),
                sample: v.sample(detail),
                meta: v.meta.clone(),
                http: v.http_brief(),
                key,
            };
            let owner = hit.key.shard(self.shards, self.shard);
            if owner == self.shard {
                self.apply(&hit, out);
            } else {
                cross.push((owner, Cross::Hit(Box::new(hit))));
            }
        }
    }

    /// The learned-baseline detectors: rate and volume per address (owned here), errors and
    /// latency per endpoint (owned by the shard the endpoint hashes to).
    fn detect_baselines(&mut self, v: &View<'_>, out: &mut Vec<Out>, cross: &mut Vec<(usize, Cross)>) {
        let ts = v.tx.start();
        let client = EntityKey::ip(v.client);
        // Only clean traffic teaches the baselines: not a flagged request (injection, an
        // attack tool), nor one from an address with attack indicators (forced browsing...).
        let clean = !v.verdicts().attack() && !self.entities.flagged(&client, ts);
        if let Some(f) = self.baselines.rate(v.client, ts, clean) {
            self.finding(client.clone(), f, Ctx::of(v), out);
        }
        let bytes = v.tx.response.as_ref().map_or(0, |r| r.body_len);
        if let Some(f) = self.baselines.volume(v.client, ts, bytes, clean) {
            self.finding(client, f, Ctx::of(v), out);
        }
        let key = format!("{} {}", v.host, v.endpoint);
        let owner = if self.shards <= 1 {
            self.shard
        } else {
            (hash_of(key.as_str()) % self.shards as u64) as usize
        };
        if owner == self.shard {
            for f in self.baselines.endpoint(&key, ts, v.status(), v.tx.latency_us(), clean) {
                let k = EntityKey {
                    kind: "endpoint".into(),
                    value: key.clone(),
                };
                self.finding(k, f, Ctx::of(v), out);
            }
        } else {
            let o = EpObs {
                key,
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
            Cross::Hit(h) => self.apply(h, out),
            Cross::Obs(o) => self.observe(o, out),
            Cross::Ep(o) => self.endpoint_call(o, out),
        }
    }

    fn observe(&mut self, o: &Obs, out: &mut Vec<Out>) {
        if let Some(ato) = self.entities.observe(o) {
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

    /// Count a match in its window; alert when the threshold is crossed.
    fn apply(&mut self, h: &Hit, out: &mut Vec<Out>) {
        let rules = self.rules.clone();
        let r = match rules.rules.get(h.rule_idx).filter(|r| r.id == h.rule && r.enabled) {
            Some(r) => r,
            // sent before a reload renumbered the rules, or the rule went away
            None => match rules.rules.iter().find(|r| r.id == h.rule && r.enabled) {
                Some(r) => r,
                None => return,
            },
        };
        if self.states.len() >= self.cfg.max_states {
            self.evict_states(h.ts);
        }
        let w = self
            .states
            .entry(hash_of(&(&h.rule, &h.key, &h.per)))
            .or_insert_with(|| Window {
                rule: h.rule.clone(),
                ..Window::default()
            });
        let th = &r.threshold;
        let cutoff = h.ts.saturating_sub(th.window_ns);
        // The episode ends after a quiet period; the window itself only ever forgets what
        // fell out of it.
        if w.episode.is_some() && h.ts.saturating_sub(w.last) > r.quiet_ns {
            w.episode = None;
        }
        w.last = w.last.max(h.ts);
        if th.found != crate::rules::Found::Anything {
            let ok = (200..300).contains(&h.sample.status);
            if ok && (th.found == crate::rules::Found::Success || h.personal) {
                w.found = true;
            } else if !w.found {
                return; // nothing found yet: a guess, or a public object, not someone's
            }
        }
        let level = match h.distinct {
            None => {
                while w.times.front().is_some_and(|t| *t < cutoff) {
                    w.times.pop_front();
                }
                if w.times.len() as u64 > th.count {
                    w.times.pop_front();
                }
                w.times.push_back(h.ts);
                w.times.len() as u64
            }
            Some(d) => {
                // at most count + 1 entries: pruning every time is cheap
                w.distinct.retain(|_, t| *t >= cutoff);
                if let Some(t) = w.distinct.get_mut(&d) {
                    *t = (*t).max(h.ts);
                } else if (w.distinct.len() as u64) <= th.count {
                    w.distinct.insert(d, h.ts);
                }
                w.distinct.len() as u64
            }
        };
        let ep = w.episode.get_or_insert(Episode {
            first: h.ts,
            ..Episode::default()
        });
        ep.count += 1;
        if let Some(v) = &h.value
            && ep.values.len() < MAX_VALUES
            && !ep.values.contains(v)
        {
            ep.values.push(v.clone());
        }
        // The most recent samples, so an escalation shows what happens now.
        if ep.samples.len() >= SAMPLES {
            ep.samples.remove(0);
        }
        ep.samples.push(h.sample.clone());
        let crossed = level > th.count;
        if let Some(d) = h.distinct {
            if ep.alerted_at == 0 {
                if crossed {
                    // the window's values so far open the episode's own count
                    for k in w.distinct.keys() {
                        ep.add_distinct(*k);
                    }
                }
            } else {
                ep.add_distinct(d);
            }
        }
        // One alert per episode, and again only on escalation (the count grew `escalate`
        // times since the last alert; 0 or 1: never within an episode).
        let fire = if ep.alerted_at == 0 {
            crossed
        } else {
            r.escalate >= 2 && ep.count >= ep.alerted_at.saturating_mul(r.escalate)
        };
        if !fire {
            return;
        }
        ep.alerted_at = ep.count;
        let (first, count, samples) = (ep.first, ep.count, ep.samples.clone());
        let (nd, estimated) = ep.distinct();
        let distinct = h.distinct.map(|_| nd);
        let values = ep.values.clone();
        let entity_risk = self.entities.add_risk(&h.key, h.ts, r);
        self.stats.alerts += 1;
        out.push(Out::Alert(Box::new(Alert {
            ts: h.ts,
            sid: r.sid,
            rev: r.rev,
            signature: r.signature.clone(),
            category: r.category(),
            severity: r.severity,
            itype: r.itype,
            compromise: r.compromise,
            key: h.key.clone(),
            risk: r.risk,
            entity_risk,
            host: h.host.clone(),
            endpoint: h.endpoint.clone(),
            window_s: th.window_ns as f64 / 1e9,
            count,
            distinct,
            first,
            last: h.ts,
            owasp: r.owasp.clone(),
            mitre: r.mitre.clone(),
            samples,
            meta: Some(h.meta.clone()),
            http: Some(h.http.clone()),
            rule_id: r.id.clone(),
            distinct_estimated: estimated && distinct.is_some(),
            values,
            account: None,
        })));
        self.escalate(out);
    }

    /// Evict the sixteenth of window states idle longest.
    fn evict_states(&mut self, _now: Ts) {
        let n = (self.states.len() / 16).max(1);
        let mut lasts: Vec<Ts> = self.states.values().map(|w| w.last).collect();
        let idx = n.min(lasts.len()) - 1;
        lasts.select_nth_unstable(idx);
        let cut = lasts[idx];
        let before = self.states.len();
        let mut left = n;
        self.states.retain(|_, w| {
            if left > 0 && w.last <= cut {
                left -= 1;
                false
            } else {
                true
            }
        });
        self.stats.state_evictions += (before - self.states.len()) as u64;
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
