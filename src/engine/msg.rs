//! What travels between shards and out of the engine: matches, profile facts, endpoint
//! calls, alerts.

use std::borrow::Cow;

use super::*;

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

/// A match as the window owner reads it: borrowed from the transaction's view when the owner
/// is this shard (most matches: nothing is copied unless a window keeps it), or from a [`Hit`]
/// another shard sent.
pub(super) struct HitRef<'a> {
    pub(super) rule: &'a str,
    pub(super) rule_idx: usize,
    /// `id_hash` of the rule's id, the key and `per`: the parts of the window id (see
    /// [`super::window_id`]).
    pub(super) rule_h: u64,
    pub(super) key_h: u64,
    pub(super) per_h: u64,
    pub(super) key: &'a EntityKey,
    pub(super) endpoint: &'a str,
    pub(super) per: &'a str,
    pub(super) host: &'a str,
    pub(super) ts: Ts,
    pub(super) distinct: Option<u64>,
    pub(super) value: Option<&'a str>,
    pub(super) personal: bool,
    pub(super) status: u16,
    pub(super) ctx: HitCtx<'a>,
}

/// Where a match's evidence (sample, flow, HTTP facts) comes from.
pub(super) enum HitCtx<'a> {
    Here {
        v: &'a View<'a>,
        detail: &'a Option<String>,
    },
    Sent(&'a Hit),
}

impl HitCtx<'_> {
    pub(super) fn sample(&self) -> Sample {
        match self {
            HitCtx::Here { v, detail } => v.sample((*detail).clone()),
            HitCtx::Sent(h) => h.sample.clone(),
        }
    }

    pub(super) fn meta(&self) -> FlowMeta {
        match self {
            HitCtx::Here { v, .. } => v.meta.clone(),
            HitCtx::Sent(h) => h.meta.clone(),
        }
    }

    pub(super) fn http(&self) -> HttpBrief {
        match self {
            HitCtx::Here { v, .. } => v.http_brief(),
            HitCtx::Sent(h) => h.http.clone(),
        }
    }
}

impl Hit {
    pub(super) fn borrowed(&self) -> HitRef<'_> {
        HitRef {
            rule: &self.rule,
            rule_idx: self.rule_idx,
            rule_h: id_hash(self.rule.as_str()),
            key_h: id_hash(&self.key),
            per_h: id_hash(self.per.as_str()),
            key: &self.key,
            endpoint: &self.endpoint,
            per: &self.per,
            host: &self.host,
            ts: self.ts,
            distinct: self.distinct,
            value: self.value.as_deref(),
            personal: self.personal,
            status: self.sample.status,
            ctx: HitCtx::Sent(self),
        }
    }
}

/// A transaction's facts for an entity profile, on its way to the owner.
/// Borrowed from the transaction where it is applied (most calls), owned on the way to
/// another shard ([`Obs::into_owned`]).
#[derive(Debug, Clone)]
pub struct Obs<'a> {
    pub key: Cow<'a, EntityKey>,
    pub ts: Ts,
    pub client: IpAddr,
    pub endpoint: Cow<'a, str>,
    pub status: u16,
    pub user_agent: Option<Cow<'a, str>>,
    pub principal: Option<Cow<'a, str>>,
    pub auth_failure: bool,
    /// A failed login attempt (not just any 401).
    pub login_failure: bool,
    pub login_success: bool,
    pub authenticated: bool,
    /// The flow, for an account-takeover alert raised from this call.
    pub meta: Cow<'a, FlowMeta>,
    /// A login's account name and its sample and HTTP facts (logins only).
    pub login: Option<Box<LoginFacts>>,
}

impl Obs<'_> {
    /// This observation with nothing borrowed, to send to another shard.
    pub fn into_owned(self) -> Obs<'static> {
        Obs {
            key: Cow::Owned(self.key.into_owned()),
            ts: self.ts,
            client: self.client,
            endpoint: Cow::Owned(self.endpoint.into_owned()),
            status: self.status,
            user_agent: self.user_agent.map(|u| Cow::Owned(u.into_owned())),
            principal: self.principal.map(|p| Cow::Owned(p.into_owned())),
            auth_failure: self.auth_failure,
            login_failure: self.login_failure,
            login_success: self.login_success,
            authenticated: self.authenticated,
            meta: Cow::Owned(self.meta.into_owned()),
            login: self.login,
        }
    }
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
    Obs(Box<Obs<'static>>),
    Ep(Box<EpObs>),
}

/// What the engine asks its worker to write.
#[derive(Debug)]
pub enum Out {
    Alert(Box<Alert>),
    Entity(Box<entity::EntityReport>),
}

/// Where a baseline finding came from.
pub(super) struct Ctx<'a> {
    pub(super) ts: Ts,
    pub(super) host: &'a str,
    pub(super) endpoint: &'a str,
    pub(super) sample: Sample,
    pub(super) meta: &'a FlowMeta,
    pub(super) http: HttpBrief,
}

impl<'a> Ctx<'a> {
    pub(super) fn of(v: &'a View<'a>) -> Ctx<'a> {
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
