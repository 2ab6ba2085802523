//! The API catalog: endpoints (host + method + path template) and what each one looks like.
//!
//! Each worker shard profiles the transactions it sees into its own [`Catalog`]; catalogs merge
//! for output ([`Catalog::merge`]). Bounds: at most `max_hosts` hosts and
//! `max_endpoints_per_host` endpoints per host (the rest fold into one overflow endpoint per
//! host), `max_params` query/body parameter names per endpoint, bounded sets everywhere; an
//! endpoint also remembers its last JSON response body of at most 512 bytes and that body's
//! schema (see `BodyMemo`).
//! Learned parameters: at export, where a position under the same prefix shows more than
//! `learn_threshold` distinct literal values, those values fold into one `{param}` (user
//! names, slugs). Endpoints that only ever answered 404 (a scanner's guesses) are kept apart
//! from the real ones.

pub mod openapi;
pub mod schema;
pub mod sensitive;
pub mod spec;
pub mod template;

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::net::IpAddr;

use serde_json::{Value, json};

use crate::capture::Ts;
use crate::flow::FlowMeta;
use crate::http::{Message, Transaction};
use crate::redact::{Auth, percent_decode_lossy, query_pairs};
use schema::Schema;
use sensitive::Sensitive;
use template::ParamKind;

#[derive(Debug, Clone)]
pub struct CatalogConfig {
    /// Hosts tracked. Default 256.
    pub max_hosts: usize,
    /// Endpoints per host; more fold into an overflow endpoint. Default 2,000.
    pub max_endpoints_per_host: usize,
    /// Query and body parameter names kept per endpoint. Default 64.
    pub max_params: usize,
    /// Distinct literal values at one position before it becomes `{param}`. Default 20.
    pub learn_threshold: usize,
}

impl Default for CatalogConfig {
    fn default() -> Self {
        CatalogConfig {
            max_hosts: 256,
            max_endpoints_per_host: 2000,
            max_params: 64,
            learn_threshold: 20,
        }
    }
}

/// A bounded log-scale latency histogram (microseconds): 4 buckets per power of two.
#[derive(Debug, Clone, Default)]
pub struct Latency {
    buckets: BTreeMap<u16, u64>,
    n: u64,
}

impl Latency {
    fn bucket(us: u64) -> u16 {
        if us < 4 {
            return us as u16;
        }
        let lz = 63 - us.leading_zeros() as u64;
        let frac = (us >> (lz - 2)) & 3;
        (lz * 4 + frac) as u16
    }

    fn value(b: u16) -> u64 {
        if b < 4 {
            return b as u64;
        }
        let (e, f) = ((b / 4) as u64, (b % 4) as u64);
        (1u64 << e) + (f << (e - 2))
    }

    pub fn add(&mut self, us: u64) {
        *self.buckets.entry(Self::bucket(us)).or_default() += 1;
        self.n += 1;
    }

    pub fn merge(&mut self, o: &Latency) {
        for (b, c) in &o.buckets {
            *self.buckets.entry(*b).or_default() += c;
        }
        self.n += o.n;
    }

    /// The `q` quantile (0..1), in microseconds (bucket lower bound).
    pub fn quantile(&self, q: f64) -> Option<u64> {
        if self.n == 0 {
            return None;
        }
        let want = ((self.n as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (b, c) in &self.buckets {
            seen += c;
            if seen >= want {
                return Some(Self::value(*b));
            }
        }
        None
    }
}

/// HyperLogLog with 256 registers (about 6.5% error): distinct clients in 256 bytes.
#[derive(Debug, Clone)]
pub struct Distinct([u8; 256]);

impl Default for Distinct {
    fn default() -> Self {
        Distinct([0; 256])
    }
}

impl Distinct {
    pub fn add(&mut self, v: impl Hash) {
        self.add_hash(Self::hash(v));
    }

    /// The hash [`Distinct::add`] takes of `v` (the same in every process: a caller may keep it).
    pub fn hash(v: impl Hash) -> u64 {
        let mut h = DefaultHasher::new();
        v.hash(&mut h);
        h.finish()
    }

    /// [`Distinct::add`] of a value whose [`Distinct::hash`] is `x`.
    #[inline]
    pub fn add_hash(&mut self, x: u64) {
        let idx = (x >> 56) as usize;
        let rank = ((x << 8) | 0x80).leading_zeros() as u8 + 1;
        self.0[idx] = self.0[idx].max(rank);
    }

    pub fn merge(&mut self, o: &Distinct) {
        for (a, b) in self.0.iter_mut().zip(o.0.iter()) {
            *a = (*a).max(*b);
        }
    }

    pub fn estimate(&self) -> u64 {
        let m = 256.0f64;
        let sum: f64 = self.0.iter().map(|r| pow2_neg(*r)).sum();
        let raw = 0.7213 / (1.0 + 1.079 / m) * m * m / sum;
        let zeros = self.0.iter().filter(|r| **r == 0).count();
        if raw <= 2.5 * m && zeros > 0 {
            (m * (m / zeros as f64).ln()).round() as u64
        } else {
            raw.round() as u64
        }
    }
}

/// `2f64.powi(-(r as i32))` from the exponent's bits: a power of two is exact either way
/// (`powi` multiplies twos, then takes the reciprocal), without a `powi` call per register
/// (256 per estimate). Held to `powi` by `powers_of_two_from_bits_are_powi`.
#[inline]
fn pow2_neg(r: u8) -> f64 {
    f64::from_bits((1023 - r as u64) << 52)
}

/// The [`Distinct::hash`] of recent client addresses: a direct-mapped memo (an API's callers
/// come back, and SipHash on every call costs more than the rest of the count). Every slot
/// holds an address and its own hash, so a hit is always right and a miss only costs the hash.
#[derive(Clone)]
pub struct ClientHashes(Box<[(IpAddr, u64); CLIENT_SLOTS]>);

const CLIENT_SLOTS: usize = 64;

impl Default for ClientHashes {
    fn default() -> Self {
        let ip = IpAddr::from([0u8; 4]);
        ClientHashes(Box::new([(ip, Distinct::hash(ip)); CLIENT_SLOTS]))
    }
}

impl std::fmt::Debug for ClientHashes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientHashes")
    }
}

impl ClientHashes {
    /// [`Distinct::hash`] of `ip`.
    #[inline]
    pub fn get(&mut self, ip: IpAddr) -> u64 {
        let slot = match ip {
            IpAddr::V4(a) => {
                let o = a.octets();
                o[3] ^ o[2].rotate_left(3)
            }
            IpAddr::V6(a) => {
                let o = a.octets();
                o[15] ^ o[14].rotate_left(3)
            }
        } as usize
            % CLIENT_SLOTS;
        let e = &mut self.0[slot];
        if e.0 != ip {
            *e = (ip, Distinct::hash(ip));
        }
        e.1
    }
}

#[derive(Debug, Clone, Default)]
pub struct Sizes {
    pub min: u64,
    pub max: u64,
    pub sum: u64,
    pub n: u64,
}

impl Sizes {
    fn add(&mut self, v: u64) {
        self.min = if self.n == 0 { v } else { self.min.min(v) };
        self.max = self.max.max(v);
        self.sum += v;
        self.n += 1;
    }

    fn merge(&mut self, o: &Sizes) {
        if o.n == 0 {
            return;
        }
        self.min = if self.n == 0 { o.min } else { self.min.min(o.min) };
        self.max = self.max.max(o.max);
        self.sum += o.sum;
        self.n += o.n;
    }

    fn json(&self) -> Value {
        json!({"min": self.min, "max": self.max, "mean": self.sum.checked_div(self.n).unwrap_or(0)})
    }
}

/// What one endpoint looks like.
#[derive(Debug, Clone, Default)]
pub struct Endpoint {
    pub host: String,
    pub method: String,
    pub template: String,
    pub count: u64,
    pub first: Ts,
    pub last: Ts,
    pub status: BTreeMap<u16, u64>,
    pub latency: Latency,
    pub request_size: Sizes,
    pub response_size: Sizes,
    pub request_types: BTreeSet<String>,
    pub response_types: BTreeSet<String>,
    pub query: BTreeMap<String, Schema>,
    pub request_body: Option<Schema>,
    pub response_body: BTreeMap<u16, Schema>,
    pub auth: BTreeMap<&'static str, u64>,
    pub authenticated: u64,
    pub sensitive: BTreeSet<Sensitive>,
    pub clients: Distinct,
    /// Fields dropped at a cap.
    pub truncated: bool,
    /// The last request and response content types added to the sets, as sent.
    types_seen: [TypeMemo; 2],
    /// The last JSON response body sampled, and its schema once it came again.
    body_memo: BodyMemo,
}

/// The last JSON response body an endpoint sampled (at most [`BodyMemo::MAX`] bytes) and,
/// once the same bytes came again, their schema: an endpoint that answers the same document
/// again (a product page, a setting, an error) merges the kept schema instead of reading the
/// text again (a document's schema depends on its text and `max_params` alone, and merging
/// it is what `Schema::merge_json_text` does: held by `merging_the_text_is_merging_its_schema`
/// and `a_remembered_body_merges_as_its_text`). A cache: it never changes what is learned.
/// Bounds: the body's exact bytes (no spare room) and one schema, itself bounded by
/// `max_params` as the endpoint's own are. A copy of an endpoint (the catalog's learning and
/// merging at a snapshot) starts with an empty memo: nothing is copied for it.
#[derive(Debug, Default)]
struct BodyMemo {
    body: Box<[u8]>,
    /// `max_params` the body was (or would be) read with.
    max_params: usize,
    /// The body's schema (`Some(None)`: it does not parse), worked out when it came again.
    schema: Option<Option<Schema>>,
}

impl Clone for BodyMemo {
    /// An empty memo (see the type): a cache, so a copy that remembers nothing learns the same.
    fn clone(&self) -> Self {
        BodyMemo::default()
    }
}

impl BodyMemo {
    /// Longest body kept (a small API answer; a longer one is read each time).
    const MAX: usize = 512;

    /// `merge_body_schema(e, m, ct, cfg)`, through the memo for a JSON body.
    fn merge(&mut self, e: &mut Schema, m: &Message, ct: Option<&str>, cfg: &CatalogConfig) {
        if m.body.len() > Self::MAX || !json_body(m, ct.unwrap_or_default()) {
            return merge_body_schema(e, m, ct, cfg);
        }
        if self.max_params == cfg.max_params && *self.body == m.body[..] {
            // (the second time: read once more, to keep; then never again)
            if let Some(s) = self
                .schema
                .get_or_insert_with(|| Schema::of_json_text(&m.body, cfg.max_params))
            {
                e.merge(s);
            }
            return;
        }
        e.merge_json_text(&m.body, cfg.max_params);
        self.body = Box::from(&m.body[..]);
        self.max_params = cfg.max_params;
        self.schema = None;
    }
}

/// A `Content-Type` value as sent whose media type was added to an endpoint's set of types:
/// the same value again (nearly every call) is neither parsed nor looked up in the set (a
/// set only grows: a type in it, or a set full, stays so). Only a media type borrowed from
/// the value (lowercase already) is kept, as its place in the value; values over
/// [`TypeMemo::MAX`] bytes never.
#[derive(Debug, Clone, Default)]
struct TypeMemo {
    raw: String,
    start: usize,
    end: usize,
}

impl TypeMemo {
    const MAX: usize = 128;

    /// [`content_type_ref`] of `m`, and whether it is the remembered one (already added).
    fn get<'m>(&self, m: &'m Message) -> (Option<Cow<'m, str>>, bool) {
        let Some(raw) = m.header("content-type") else {
            return (None, false);
        };
        if !self.raw.is_empty() && raw == self.raw {
            return (raw.get(self.start..self.end).map(Cow::Borrowed), true);
        }
        (content_type_of(raw), false)
    }

    /// `ct`, the [`content_type_ref`] of `m`, was just added to the set: remembered when
    /// it is a piece of the value.
    fn note(&mut self, m: &Message, ct: Option<&Cow<'_, str>>) {
        if let (Some(raw), Some(Cow::Borrowed(c))) = (m.header("content-type"), ct)
            && raw.len() <= Self::MAX
        {
            let start = (c.as_ptr() as usize).wrapping_sub(raw.as_ptr() as usize);
            if raw.get(start..start + c.len()) == Some(*c) {
                self.raw.clear();
                self.raw.push_str(raw);
                (self.start, self.end) = (start, start + c.len());
            }
        }
    }
}

/// A message's media type, lowercased, without parameters; borrowed from the header when it
/// is already lowercase (nearly always).
#[cfg(test)]
fn content_type_ref(m: &Message) -> Option<Cow<'_, str>> {
    content_type_of(m.header("content-type")?)
}

/// [`content_type_ref`] of a `Content-Type` value.
fn content_type_of(v: &str) -> Option<Cow<'_, str>> {
    let c = media_type(v);
    if c.is_empty() {
        None
    } else if has_ascii_upper(c.as_bytes()) {
        Some(Cow::Owned(c.to_ascii_lowercase()))
    } else {
        Some(Cow::Borrowed(c))
    }
}

/// `before_semicolon(c).trim()`: a short value's `;` found by a plain loop (no vector search
/// set up for 16 to 30 bytes), and nothing trimmed when both ends are printable ASCII (no
/// whitespace, ASCII or other, can be there; the usual case). Held to the old way by
/// `media_type_is_before_semicolon_trimmed`.
fn media_type(c: &str) -> &str {
    let b = c.as_bytes();
    let end = if b.len() <= 32 {
        b.iter().position(|&x| x == b';')
    } else {
        memchr::memchr(b';', b)
    };
    let t = &c[..end.unwrap_or(b.len())];
    match (t.as_bytes().first(), t.as_bytes().last()) {
        (Some(f), Some(l)) if f.is_ascii_graphic() && l.is_ascii_graphic() => t,
        _ => t.trim(),
    }
}

/// Whether some byte of `b` is an ASCII capital: eight bytes at a time (a media type is
/// 16 to 30 bytes, and a byte loop paid a compare and a branch for each), the last few
/// bytes one by one (a padded copy of each word cost a `memcpy` call).
fn has_ascii_upper(b: &[u8]) -> bool {
    const L: u64 = 0x0101_0101_0101_0101;
    const H: u64 = 0x8080_8080_8080_8080;
    let mut words = b.chunks_exact(8);
    let found = words.by_ref().any(|c| {
        let Ok(a) = <[u8; 8]>::try_from(c) else { return true };
        let w = u64::from_le_bytes(a);
        // per byte, the high bit: `A` <= byte <= `Z` (exact: no carry crosses a byte)
        let x = w & !H;
        (x + (0x80 - b'A' as u64) * L) & !(x + (0x80 - b'Z' as u64 - 1) * L) & !w & H != 0
    });
    found || words.remainder().iter().any(u8::is_ascii_uppercase)
}

/// Add a content type to a profile's set of at most 8, copying it only when it is new.
fn add_type(set: &mut BTreeSet<String>, ct: Option<Cow<'_, str>>) {
    if let Some(ct) = ct
        && set.len() < 8
        && !set.contains(ct.as_ref())
    {
        set.insert(ct.into_owned());
    }
}

impl Endpoint {
    /// Profile one transaction. True when this made the endpoint real: its first answer other
    /// than 404 (a scanner's guesses never become endpoints).
    fn observe(
        &mut self,
        tx: &Transaction,
        client_hash: u64,
        auth: &Auth,
        sens: &BTreeSet<Sensitive>,
        cfg: &CatalogConfig,
    ) -> bool {
        let was_real = self.is_real();
        // Body schemas from the first 64 calls, then one in 32: a schema settles quickly and
        // parsing every 64 KiB body is most of the profiler's cost.
        let sample_body = self.count < 64 || self.count.is_multiple_of(32);
        let ts = tx.start();
        self.first = if self.count == 0 { ts } else { self.first.min(ts) };
        self.last = self.last.max(ts);
        self.count += 1;
        self.clients.add_hash(client_hash);
        *self.auth.entry(auth.scheme).or_default() += 1;
        if auth.scheme != "none" {
            self.authenticated += 1;
        }
        if let Some(l) = tx.latency_us() {
            self.latency.add(l);
        }
        if let Some(q) = &tx.request {
            self.request_size.add(q.body_len);
            let (ct, seen) = self.types_seen[0].get(q);
            if let Some((_, qs)) = crate::util::split_query(&q.uri) {
                for (k, v) in query_pairs(qs) {
                    let k = percent_decode_lossy(k);
                    let v = percent_decode_lossy(v);
                    let room = self.query.len() < cfg.max_params;
                    match self.query.get_mut(k.as_ref()) {
                        Some(e) => e.merge_text(&v),
                        None if room => {
                            self.query.insert(k.into_owned(), Schema::of_text(&v));
                        }
                        None => self.truncated = true,
                    }
                }
            }
            if sample_body {
                match &mut self.request_body {
                    Some(e) => merge_body_schema(e, q, ct.as_deref(), cfg),
                    None => self.request_body = body_schema(q, ct.as_deref(), cfg),
                }
            }
            // (a request without a content type, most of them, has none to note or add)
            if !seen && ct.is_some() {
                self.types_seen[0].note(q, ct.as_ref());
                add_type(&mut self.request_types, ct);
            }
        }
        if let Some(r) = &tx.response {
            *self.status.entry(r.status).or_default() += 1;
            self.response_size.add(r.body_len);
            let (ct, seen) = self.types_seen[1].get(r);
            if sample_body {
                // (a schema that would find no room is not worked out)
                if let Some(e) = self.response_body.get_mut(&r.status) {
                    self.body_memo.merge(e, r, ct.as_deref(), cfg);
                } else if self.response_body.len() < 16
                    && let Some(s) = body_schema(r, ct.as_deref(), cfg)
                {
                    self.response_body.insert(r.status, s);
                }
            }
            if !seen && ct.is_some() {
                self.types_seen[1].note(r, ct.as_ref());
                add_type(&mut self.response_types, ct);
            }
            self.sensitive.extend(sens.iter().copied());
        }
        !was_real && self.is_real()
    }

    /// Answered something other than 404 at least once.
    pub fn is_real(&self) -> bool {
        self.status.keys().any(|s| *s != 404)
    }

    pub fn merge(&mut self, o: &Endpoint) {
        if o.count == 0 {
            return;
        }
        self.first = if self.count == 0 {
            o.first
        } else {
            self.first.min(o.first)
        };
        self.last = self.last.max(o.last);
        self.count += o.count;
        for (k, v) in &o.status {
            *self.status.entry(*k).or_default() += v;
        }
        self.latency.merge(&o.latency);
        self.request_size.merge(&o.request_size);
        self.response_size.merge(&o.response_size);
        self.request_types.extend(o.request_types.iter().cloned());
        self.response_types.extend(o.response_types.iter().cloned());
        for (k, s) in &o.query {
            match self.query.get_mut(k) {
                Some(e) => e.merge(s),
                None => {
                    self.query.insert(k.clone(), s.clone());
                }
            }
        }
        match (&mut self.request_body, &o.request_body) {
            (Some(a), Some(b)) => a.merge(b),
            (None, Some(b)) => self.request_body = Some(b.clone()),
            _ => {}
        }
        for (k, s) in &o.response_body {
            match self.response_body.get_mut(k) {
                Some(e) => e.merge(s),
                None => {
                    self.response_body.insert(*k, s.clone());
                }
            }
        }
        for (k, v) in &o.auth {
            *self.auth.entry(k).or_default() += v;
        }
        self.authenticated += o.authenticated;
        self.sensitive.extend(o.sensitive.iter().copied());
        self.clients.merge(&o.clients);
        self.truncated |= o.truncated;
    }

    /// Only ever answered 404: a guess, not an endpoint.
    pub fn not_found_only(&self) -> bool {
        !self.status.is_empty() && self.status.keys().all(|s| *s == 404)
    }

    /// Path parameters of the template, in order.
    pub fn path_params(&self) -> Vec<(String, ParamKind)> {
        self.template
            .split('/')
            .filter_map(|seg| ParamKind::from_placeholder(seg).map(|k| (seg.trim_matches(['{', '}']).to_string(), k)))
            .collect()
    }

    pub fn json(&self) -> Value {
        let ms = |q: f64| self.latency.quantile(q).map(|us| us as f64 / 1000.0);
        json!({
            "host": self.host, "method": self.method, "template": self.template,
            "endpoint": format!("{} {}", self.method, self.template),
            "count": self.count,
            "first_seen": crate::util::fmt_ts(self.first), "last_seen": crate::util::fmt_ts(self.last),
            "status": self.status.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
            "latency_ms": {"p50": ms(0.5), "p90": ms(0.9), "p99": ms(0.99)},
            "request_bytes": self.request_size.json(), "response_bytes": self.response_size.json(),
            "request_content_types": self.request_types, "response_content_types": self.response_types,
            "path_params": self.path_params().iter().map(|(n, k)| json!({"name": n, "type": k.openapi().0, "format": k.openapi().1})).collect::<Vec<_>>(),
            "query_params": self.query.iter().map(|(k, s)| (k.clone(), s.json())).collect::<serde_json::Map<_, _>>(),
            "request_body": self.request_body.as_ref().map(|s| s.json()),
            "auth": self.auth,
            "authenticated_share": if self.count > 0 { self.authenticated as f64 / self.count as f64 } else { 0.0 },
            "sensitive": self.sensitive.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
            "distinct_clients": self.clients.estimate(),
            "truncated": self.truncated,
        })
    }
}

/// `e.merge(&s)` for the [`body_schema`] `s` of a message, if it has one: a JSON body's
/// schema is merged as it is read (see `Schema::merge_json_text`).
fn merge_body_schema(e: &mut Schema, m: &Message, ct: Option<&str>, cfg: &CatalogConfig) {
    if json_body(m, ct.unwrap_or_default()) {
        e.merge_json_text(&m.body, cfg.max_params);
    } else if let Some(s) = body_schema(m, ct, cfg) {
        e.merge(&s);
    }
}

/// Is the body read as JSON: a JSON media type, or none and the text starts like a document.
fn json_body(m: &Message, ct: &str) -> bool {
    !m.body.is_empty() && (ct.contains("json") || (ct.is_empty() && matches!(m.body.first(), Some(b'{') | Some(b'['))))
}

/// The schema of a message's body, whose [`content_type_ref`] is `ct`.
fn body_schema(m: &Message, ct: Option<&str>, cfg: &CatalogConfig) -> Option<Schema> {
    if m.body.is_empty() {
        return None;
    }
    let ct = ct.unwrap_or_default();
    if json_body(m, ct) {
        // (read straight off the text: no `Value` built to be dropped)
        return Schema::of_json_text(&m.body, cfg.max_params);
    }
    if ct == "application/x-www-form-urlencoded" {
        let text = String::from_utf8_lossy(&m.body);
        let mut obj = serde_json::Map::new();
        for (k, v) in query_pairs(&text).take(cfg.max_params) {
            obj.insert(
                percent_decode_lossy(k).into_owned(),
                Value::String(percent_decode_lossy(v).into_owned()),
            );
        }
        return Some(Schema::of_json(&Value::Object(obj), cfg.max_params));
    }
    None
}

#[derive(Debug, Clone, Default)]
struct HostEntry {
    /// By (method, template); looked up without copying the key ([`EpRef`]), put in order
    /// only for export.
    endpoints: hashbrown::HashMap<(String, String), Endpoint>,
    overflow: Endpoint,
}

/// A borrowed (method, template) that finds its owned key in [`HostEntry::endpoints`]: a
/// tuple of two strings hashes as its two `str`s, so this hashes the same.
#[derive(Hash)]
struct EpRef<'a>(&'a str, &'a str);

impl hashbrown::Equivalent<(String, String)> for EpRef<'_> {
    fn equivalent(&self, k: &(String, String)) -> bool {
        self.0 == k.0 && self.1 == k.1
    }
}

/// An endpoint that just became real ([`Catalog::observe_at`]), lent with its standing
/// against the reference spec (if one was given): what its `endpoint` event says.
#[derive(Debug, Clone, Copy)]
pub struct Fresh<'a> {
    pub endpoint: &'a Endpoint,
    pub spec: Option<spec::SpecStatus>,
}

impl<'a> Fresh<'a> {
    /// [`Endpoint::json`] with its `spec` standing.
    pub fn json(&self) -> Value {
        let mut v = self.endpoint.json();
        if let Some(s) = self.spec {
            v["spec"] = json!(s.as_str());
        }
        v
    }

    /// [`Fresh::json`] with `reason` added, to be written without the `Value` (a new
    /// endpoint's event; see [`EndpointJson`]).
    pub fn with_reason(&self, reason: &'a str) -> EndpointJson<'a> {
        EndpointJson {
            e: self.endpoint,
            spec: self.spec.map(|s| s.as_str()),
            reason: Some(reason),
        }
    }
}

/// [`Endpoint::json`] (with `spec` and `reason` when given) written as JSON text straight
/// from the endpoint: the same keys in the same (name) order, the same values, the same
/// bytes as the `Value` serialized, without a `Value` tree of some sixty nodes built and
/// dropped for each new endpoint, nor serde's byte-by-byte escaping of every key (a capture
/// of many endpoints paid ~45k instructions for each event). Held to the `Value` byte for
/// byte by `endpoint_json_written_directly_is_the_value_written`.
pub struct EndpointJson<'a> {
    pub e: &'a Endpoint,
    pub spec: Option<&'a str>,
    pub reason: Option<&'a str>,
}

impl EndpointJson<'_> {
    /// Append the object to `out`.
    pub fn write(&self, out: &mut Vec<u8>) {
        use crate::util::{push_json_str, push_u64};
        let e = self.e;
        // (keys in byte order, as a `Value`'s map holds them)
        out.extend_from_slice(b"{\"auth\":{");
        for (i, (k, v)) in e.auth.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            push_json_str(out, k);
            out.push(b':');
            push_u64(out, *v);
        }
        out.extend_from_slice(b"},\"authenticated_share\":");
        let share = if e.count > 0 {
            e.authenticated as f64 / e.count as f64
        } else {
            0.0
        };
        push_f64(out, Some(share));
        out.extend_from_slice(b",\"count\":");
        push_u64(out, e.count);
        out.extend_from_slice(b",\"distinct_clients\":");
        push_u64(out, e.clients.estimate());
        out.extend_from_slice(b",\"endpoint\":\"");
        crate::util::push_json_body(out, &e.method);
        out.push(b' ');
        crate::util::push_json_body(out, &e.template);
        out.extend_from_slice(b"\",\"first_seen\":\"");
        crate::util::push_ts(out, e.first);
        out.extend_from_slice(b"\",\"host\":");
        push_json_str(out, &e.host);
        out.extend_from_slice(b",\"last_seen\":\"");
        crate::util::push_ts(out, e.last);
        let ms = |q: f64| e.latency.quantile(q).map(|us| us as f64 / 1000.0);
        out.extend_from_slice(b"\",\"latency_ms\":{\"p50\":");
        push_f64(out, ms(0.5));
        out.extend_from_slice(b",\"p90\":");
        push_f64(out, ms(0.9));
        out.extend_from_slice(b",\"p99\":");
        push_f64(out, ms(0.99));
        out.extend_from_slice(b"},\"method\":");
        push_json_str(out, &e.method);
        out.extend_from_slice(b",\"path_params\":[");
        for (i, (n, k)) in e.path_params().iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            let (t, f) = k.openapi();
            out.extend_from_slice(b"{\"format\":");
            match f {
                Some(f) => push_json_str(out, f),
                None => out.extend_from_slice(b"null"),
            }
            out.extend_from_slice(b",\"name\":");
            push_json_str(out, n);
            out.extend_from_slice(b",\"type\":");
            push_json_str(out, t);
            out.push(b'}');
        }
        out.extend_from_slice(b"],\"query_params\":");
        schema::write_json_map(&e.query, out);
        if let Some(r) = self.reason {
            out.extend_from_slice(b",\"reason\":");
            push_json_str(out, r);
        }
        out.extend_from_slice(b",\"request_body\":");
        match &e.request_body {
            Some(s) => s.write_json(out),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"request_bytes\":");
        write_sizes(out, &e.request_size);
        out.extend_from_slice(b",\"request_content_types\":");
        write_strs(out, e.request_types.iter().map(String::as_str));
        out.extend_from_slice(b",\"response_bytes\":");
        write_sizes(out, &e.response_size);
        out.extend_from_slice(b",\"response_content_types\":");
        write_strs(out, e.response_types.iter().map(String::as_str));
        out.extend_from_slice(b",\"sensitive\":");
        write_strs(out, e.sensitive.iter().map(|s| s.as_str()));
        if let Some(sp) = self.spec {
            out.extend_from_slice(b",\"spec\":");
            push_json_str(out, sp);
        }
        out.extend_from_slice(b",\"status\":{");
        // keyed by the status as text, in the text's order (a `Value`'s map): three-digit
        // codes (all real ones) sort as numbers and as text alike
        let write_status = |out: &mut Vec<u8>, i: usize, k: &str, v: u64| {
            if i > 0 {
                out.push(b',');
            }
            out.push(b'"');
            out.extend_from_slice(k.as_bytes());
            out.extend_from_slice(b"\":");
            push_u64(out, v);
        };
        if e.status.keys().all(|k| (100..1000).contains(k)) {
            for (i, (k, v)) in e.status.iter().enumerate() {
                write_status(out, i, itoa::Buffer::new().format(*k), *v);
            }
        } else {
            let mut by_text: Vec<(String, u64)> = e.status.iter().map(|(k, v)| (k.to_string(), *v)).collect();
            by_text.sort_unstable_by(|a, b| a.0.cmp(&b.0));
            for (i, (k, v)) in by_text.iter().enumerate() {
                write_status(out, i, k, *v);
            }
        }
        out.extend_from_slice(b"},\"template\":");
        push_json_str(out, &e.template);
        out.extend_from_slice(b",\"truncated\":");
        out.extend_from_slice(if e.truncated { b"true" } else { b"false" });
        out.push(b'}');
    }
}

/// A float as a `Value` holding it is written (`null` for none, or one not finite).
fn push_f64(out: &mut Vec<u8>, f: Option<f64>) {
    if serde_json::to_writer(&mut *out, &f.and_then(|f| f.is_finite().then_some(f))).is_err() {
        out.extend_from_slice(b"null");
    }
}

/// [`Sizes::json`] as text.
fn write_sizes(out: &mut Vec<u8>, z: &Sizes) {
    out.extend_from_slice(b"{\"max\":");
    crate::util::push_u64(out, z.max);
    out.extend_from_slice(b",\"mean\":");
    crate::util::push_u64(out, z.sum.checked_div(z.n).unwrap_or(0));
    out.extend_from_slice(b",\"min\":");
    crate::util::push_u64(out, z.min);
    out.push(b'}');
}

/// A list of strings as a JSON array.
fn write_strs<'s>(out: &mut Vec<u8>, items: impl Iterator<Item = &'s str>) {
    out.push(b'[');
    for (i, s) in items.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        crate::util::push_json_str(out, s);
    }
    out.push(b']');
}

/// The catalog of one shard, or a merged one.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    pub cfg: CatalogConfig,
    hosts: BTreeMap<String, HostEntry>,
    /// Transactions whose host was beyond `max_hosts`.
    pub hosts_overflow: u64,
    /// The reference spec, for shadow and zombie marking.
    pub spec: Option<std::sync::Arc<spec::Spec>>,
    /// Transactions left out as attack traffic (injection payloads, attack tools).
    pub excluded: u64,
    /// The client-count hashes of recent clients (a memo, never merged).
    client_hashes: ClientHashes,
}

/// An endpoint: (host, method, rule-based template), held as one text `host METHOD template`
/// (one allocation per call, not three; the text is also the endpoint baselines' key, and its
/// tail `METHOD template` the `endpoint` of an http line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointId {
    text: String,
    /// Where the host ends (the space after it) and where the method does.
    host_end: usize,
    method_end: usize,
}

impl EndpointId {
    pub fn new(host: &str, method: &str, template: &str) -> Self {
        let mut text = String::with_capacity(host.len() + method.len() + template.len() + 2);
        text.extend([host, " ", method, " ", template]);
        EndpointId {
            text,
            host_end: host.len(),
            method_end: host.len() + 1 + method.len(),
        }
    }

    pub fn host(&self) -> &str {
        &self.text[..self.host_end]
    }

    pub fn method(&self) -> &str {
        &self.text[self.host_end + 1..self.method_end]
    }

    pub fn template(&self) -> &str {
        &self.text[self.method_end + 1..]
    }

    /// (host, method, template)
    pub fn parts(&self) -> (&str, &str, &str) {
        (self.host(), self.method(), self.template())
    }

    /// `METHOD template`
    pub fn method_template(&self) -> &str {
        &self.text[self.host_end + 1..]
    }

    /// `host METHOD template`
    pub fn text(&self) -> &str {
        &self.text
    }
}

/// The endpoint a transaction belongs to: (host, method, rule-based template).
pub fn endpoint_of(tx: &Transaction, meta: &FlowMeta) -> Option<EndpointId> {
    use std::fmt::Write;
    let q = tx.request.as_ref()?;
    let path = crate::util::target_path(&q.uri);
    let method = crate::detect::cut(&q.method, MAX_METHOD);
    let mut text = String::new();
    match q.header("host").map(str::trim) {
        // Cut before copying, so a hostile host is never copied whole (ASCII lowercasing keeps
        // every byte's length and boundaries: the same cut either way).
        Some(h) if !h.is_empty() => {
            let h = crate::detect::cut(h, MAX_HOST);
            // (room for the template's parameter names too: one allocation)
            text.reserve(h.len() + method.len() + path.len() + 24);
            text.push_str(h);
            text.make_ascii_lowercase();
        }
        _ => {
            text.reserve(48 + method.len() + path.len() + 24);
            let _ = write!(text, "{}:{}", meta.dst, meta.dport);
            let end = crate::detect::cut(&text, MAX_HOST).len();
            text.truncate(end);
        }
    }
    let host_end = text.len();
    text.push(' ');
    text.push_str(method);
    let method_end = text.len();
    text.push(' ');
    // (target_path cut the query and fragment)
    template::template_clean_path_into(path, &mut text);
    if text.len() - (method_end + 1) > MAX_TEMPLATE {
        let t = cap_template(text[method_end + 1..].to_string());
        text.truncate(method_end + 1);
        text.push_str(&t);
    }
    Some(EndpointId {
        text,
        host_end,
        method_end,
    })
}

/// Longest host, method and template kept: a hostile request line cannot make every
/// endpoint, window key and profile entry 32 KiB long.
pub const MAX_HOST: usize = 255;
pub const MAX_METHOD: usize = 32;
pub const MAX_TEMPLATE: usize = 256;

/// `s` cut to at most `max` bytes at a character boundary.
pub fn cap_str(mut s: String, max: usize) -> String {
    let end = crate::detect::cut(&s, max).len();
    s.truncate(end);
    s
}

/// A template longer than [`MAX_TEMPLATE`] keeps its leading segments and ends in `/{...}`.
fn cap_template(t: String) -> String {
    if t.len() <= MAX_TEMPLATE {
        return t;
    }
    let cut = cap_str(t, MAX_TEMPLATE - 6);
    let base = match cut.rfind('/') {
        Some(i) if i > 0 => &cut[..i],
        _ => "",
    };
    format!("{base}/{{...}}")
}

impl Catalog {
    pub fn new(cfg: CatalogConfig) -> Self {
        Catalog {
            cfg,
            hosts: BTreeMap::new(),
            hosts_overflow: 0,
            spec: None,
            excluded: 0,
            client_hashes: Default::default(),
        }
    }

    /// Profile one transaction into its endpoint. Returns the endpoint when this transaction
    /// made it real (first seen answering something other than 404), for an `endpoint` event.
    pub fn observe(&mut self, tx: &Transaction, meta: &FlowMeta, auth: &Auth) -> Option<Value> {
        let ep = endpoint_of(tx, meta)?;
        let sens = tx.response.as_ref().map(sensitive::scan_response).unwrap_or_default();
        self.observe_at(ep.parts(), tx, meta, auth, &sens).map(|f| f.json())
    }

    /// [`Catalog::observe`] with the endpoint ([`endpoint_of`]) and the response's sensitive
    /// data already worked out by the caller (the worker needs both anyway); the new endpoint
    /// is lent, not made into a `Value` (its event is written straight from it).
    pub fn observe_at(
        &mut self,
        (host, method, tpl): (&str, &str, &str),
        tx: &Transaction,
        meta: &FlowMeta,
        auth: &Auth,
        sens: &BTreeSet<Sensitive>,
    ) -> Option<Fresh<'_>> {
        let cfg = self.cfg.clone();
        // one search for a known host and one hash for a known endpoint (nearly every call);
        // a new one is then added
        let h = match self.hosts.get_mut(host) {
            Some(h) => h,
            None => {
                if self.hosts.len() >= cfg.max_hosts {
                    self.hosts_overflow += 1;
                    return None;
                }
                self.hosts.entry(host.to_string()).or_default()
            }
        };
        let room = h.endpoints.len() < cfg.max_endpoints_per_host;
        let (fits, ep) = match h.endpoints.get_mut(&EpRef(method, tpl)) {
            Some(e) => (true, e),
            None if room => {
                let e = Endpoint {
                    host: host.to_string(),
                    method: method.to_string(),
                    template: tpl.to_string(),
                    ..Endpoint::default()
                };
                (
                    true,
                    h.endpoints.entry((method.to_string(), tpl.to_string())).or_insert(e),
                )
            }
            None => {
                if h.overflow.count == 0 {
                    h.overflow = Endpoint {
                        host: host.to_string(),
                        method: "*".into(),
                        template: "/{overflow}".into(),
                        ..Endpoint::default()
                    };
                }
                (false, &mut h.overflow)
            }
        };
        let new = ep.observe(tx, self.client_hashes.get(meta.src), auth, sens, &cfg);
        if !(new && fits) {
            return None;
        }
        // (found again to be lent: once per endpoint)
        let endpoint = self.hosts.get(host)?.endpoints.get(&EpRef(method, tpl))?;
        let spec = self
            .spec
            .as_ref()
            .map(|s| s.status(&endpoint.method, &endpoint.template));
        Some(Fresh { endpoint, spec })
    }

    /// Where an endpoint stands against the reference spec, if one was given.
    pub fn spec_status(&self, e: &Endpoint) -> Option<spec::SpecStatus> {
        let s = self.spec.as_ref()?;
        (e.template != "/{overflow}").then(|| s.status(&e.method, &e.template))
    }

    /// An endpoint as JSON, with its standing against the reference spec.
    pub fn endpoint_json(&self, e: &Endpoint) -> Value {
        let mut v = e.json();
        if let Some(st) = self.spec_status(e) {
            v["spec"] = json!(st.as_str());
        }
        v
    }

    /// Endpoints held (before learning), for memory accounting.
    pub fn len(&self) -> usize {
        self.hosts.values().map(|h| h.endpoints.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn merge(&mut self, o: &Catalog) {
        self.hosts_overflow += o.hosts_overflow;
        self.excluded += o.excluded;
        if self.spec.is_none() {
            self.spec = o.spec.clone();
        }
        for (host, oh) in &o.hosts {
            if !self.hosts.contains_key(host) && self.hosts.len() >= self.cfg.max_hosts {
                self.hosts_overflow += oh.endpoints.values().map(|e| e.count).sum::<u64>();
                continue;
            }
            let h = self.hosts.entry(host.clone()).or_default();
            for (k, e) in &oh.endpoints {
                h.endpoints
                    .entry(k.clone())
                    .or_insert_with(|| Endpoint {
                        host: e.host.clone(),
                        method: e.method.clone(),
                        template: e.template.clone(),
                        ..Endpoint::default()
                    })
                    .merge(e);
            }
            if h.overflow.count == 0 {
                h.overflow = oh.overflow.clone();
            } else {
                h.overflow.merge(&oh.overflow);
            }
        }
    }

    /// Endpoints after learning parameters: (real endpoints, 404-only guesses).
    pub fn endpoints(&self) -> (Vec<Endpoint>, Vec<Endpoint>) {
        let (mut real, mut guesses) = (Vec::new(), Vec::new());
        for h in self.hosts.values() {
            let mut by_method: BTreeMap<&str, Vec<&Endpoint>> = BTreeMap::new();
            // in (method, template) order, as the learning and the export have always seen them
            let mut all: Vec<(&(String, String), &Endpoint)> = h.endpoints.iter().collect();
            all.sort_unstable_by(|a, b| a.0.cmp(b.0));
            for (_, e) in all {
                by_method.entry(&e.method).or_default().push(e);
            }
            for eps in by_method.values() {
                // Learn on the endpoints that answered something other than 404 only.
                let (ok, nf): (Vec<&Endpoint>, Vec<&Endpoint>) = eps.iter().partition(|e| !e.not_found_only());
                real.extend(learn(&ok, self.cfg.learn_threshold));
                guesses.extend(nf.into_iter().cloned());
            }
            if h.overflow.count > 0 {
                real.push(h.overflow.clone());
            }
        }
        (real, guesses)
    }

    /// The raw catalog as JSON.
    pub fn json(&self) -> Value {
        let (real, guesses) = self.endpoints();
        json!({
            "endpoints": real.iter().map(|e| self.endpoint_json(e)).collect::<Vec<_>>(),
            "not_found_only": guesses.iter().map(|e| json!({"host": e.host, "endpoint": format!("{} {}", e.method, e.template), "count": e.count})).collect::<Vec<_>>(),
            "hosts_overflow": self.hosts_overflow,
            "excluded_attack_transactions": self.excluded,
        })
    }
}

/// Fold positions with more than `threshold` distinct literal values under one prefix into
/// `{param}`, merging the endpoints that differ only there.
fn learn(eps: &[&Endpoint], threshold: usize) -> Vec<Endpoint> {
    let mut cur: Vec<Endpoint> = eps.iter().map(|e| (*e).clone()).collect();
    let max_depth = cur.iter().map(|e| e.template.split('/').count()).max().unwrap_or(0);
    let mut folds: Vec<bool> = Vec::new();
    for pos in 1..max_depth {
        // Group by everything but the segment at `pos`: the text before it and the text after
        // it name the segment count and every other segment, so no key is built.
        folds.clear();
        {
            let mut groups: hashbrown::HashMap<(&str, &str), hashbrown::HashSet<&str>> = hashbrown::HashMap::new();
            let mut keys: Vec<Option<(&str, &str)>> = Vec::with_capacity(cur.len());
            for e in &cur {
                let key = literal_segment(&e.template, pos).map(|(a, b)| {
                    let k = (&e.template[..a], &e.template[b..]);
                    groups.entry(k).or_default().insert(&e.template[a..b]);
                    k
                });
                keys.push(key);
            }
            let mut any = false;
            for k in keys {
                let f = k.is_some_and(|k| groups[&k].len() > threshold);
                any |= f;
                folds.push(f);
            }
            if !any {
                continue;
            }
        }
        let mut merged: BTreeMap<String, Endpoint> = BTreeMap::new();
        for (mut e, fold) in cur.drain(..).zip(folds.iter().copied()) {
            if fold && let Some((a, b)) = literal_segment(&e.template, pos) {
                e.template = format!("{}{{param}}{}", &e.template[..a], &e.template[b..]);
            }
            match merged.get_mut(&e.template) {
                Some(m) => m.merge(&e),
                None => {
                    merged.insert(e.template.clone(), e);
                }
            }
        }
        cur = merged.into_values().collect();
    }
    fold_sibling_params(cur)
}

/// The byte span of segment `pos` of a `/`-separated template, if there is one and it is a
/// literal (not already a `{param}`).
fn literal_segment(t: &str, pos: usize) -> Option<(usize, usize)> {
    let mut start = 0;
    for _ in 0..pos {
        start += t[start..].find('/')? + 1;
    }
    let end = t[start..].find('/').map_or(t.len(), |i| start + i);
    (!t[start..end].starts_with('{')).then_some((start, end))
}

/// Endpoints that differ only in the kind of a parameter at the same position
/// (`/orders/{uuid}` and `/orders/{token}`, a mistyped id on the same route) are one route:
/// they merge into the most called one's template.
fn fold_sibling_params(eps: Vec<Endpoint>) -> Vec<Endpoint> {
    let shape = |t: &str| -> String {
        t.split('/')
            .map(|s| if s.starts_with('{') { "{}" } else { s })
            .collect::<Vec<_>>()
            .join("/")
    };
    let mut groups: BTreeMap<String, Vec<Endpoint>> = BTreeMap::new();
    for e in eps {
        groups.entry(shape(&e.template)).or_default().push(e);
    }
    let mut out = Vec::new();
    for (_, mut g) in groups {
        // the most called first (ties: the template's order, for a stable result)
        g.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.template.cmp(&b.template)));
        let mut it = g.into_iter();
        if let Some(mut head) = it.next() {
            for e in it {
                head.merge(&e);
            }
            out.push(head);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, Ipv4Addr};
    use std::sync::Arc;

    fn tx(method: &str, uri: &str, status: u16, body: &str, ct: &str) -> Transaction {
        let q = Message {
            method: method.into(),
            uri: uri.into(),
            headers: vec![("Host".into(), "api.example".into())].into(),
            ..Default::default()
        };
        let r = Message {
            status,
            headers: vec![("Content-Type".into(), ct.into())].into(),
            body: body.as_bytes().to_vec(),
            body_len: body.len() as u64,
            ..Default::default()
        };
        Transaction::new(Some(q), Some(r), false)
    }

    fn meta(i: u8) -> FlowMeta {
        FlowMeta {
            flow_id: 1,
            community_id: Arc::from("1:x"),
            src: IpAddr::V4(Ipv4Addr::new(10, 0, 0, i)),
            sport: 1,
            dst: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
            dport: 80,
        }
    }

    #[test]
    fn a_mistyped_id_on_a_route_is_the_same_route() {
        let mut c = Catalog::new(CatalogConfig::default());
        let none = Auth {
            scheme: "none",
            principal: None,
        };
        for i in 0..5 {
            let uuid = format!("6c906c4a-147a-489e-9ed1-7f7fe3ff5d{i:02}");
            c.observe(
                &tx("GET", &format!("/api/v1/orders/{uuid}"), 200, "{}", "application/json"),
                &meta(1),
                &none,
            );
        }
        // a truncated uuid is no uuid: a token-like segment on the same route, answered 401
        c.observe(
            &tx(
                "GET",
                "/api/v1/orders/6c906c4a-147a-489e-9ed1-7f7fe3ff5d",
                401,
                "{}",
                "application/json",
            ),
            &meta(1),
            &none,
        );
        let (real, _) = c.endpoints();
        let t: Vec<&str> = real.iter().map(|e| e.template.as_str()).collect();
        assert_eq!(t, ["/api/v1/orders/{uuid}"]);
        assert_eq!(real[0].count, 6);
    }

    /// The learning as first written (a key of every segment per endpoint and position), kept
    /// as the model the faster one must equal.
    fn learn_model(eps: &[&Endpoint], threshold: usize) -> Vec<Endpoint> {
        let mut cur: Vec<Endpoint> = eps.iter().map(|e| (*e).clone()).collect();
        let max_depth = cur.iter().map(|e| e.template.split('/').count()).max().unwrap_or(0);
        for pos in 1..max_depth {
            let mut groups: BTreeMap<(usize, Vec<String>), BTreeSet<String>> = BTreeMap::new();
            for e in &cur {
                let segs: Vec<&str> = e.template.split('/').collect();
                if pos >= segs.len() || segs[pos].starts_with('{') {
                    continue;
                }
                let mut key: Vec<String> = segs.iter().map(|s| s.to_string()).collect();
                key[pos] = String::new();
                groups
                    .entry((segs.len(), key))
                    .or_default()
                    .insert(segs[pos].to_string());
            }
            let fold: BTreeSet<(usize, Vec<String>)> = groups
                .into_iter()
                .filter(|(_, v)| v.len() > threshold)
                .map(|(k, _)| k)
                .collect();
            if fold.is_empty() {
                continue;
            }
            let mut merged: BTreeMap<String, Endpoint> = BTreeMap::new();
            for mut e in cur.drain(..) {
                let segs: Vec<&str> = e.template.split('/').collect();
                if pos < segs.len() && !segs[pos].starts_with('{') {
                    let mut key: Vec<String> = segs.iter().map(|s| s.to_string()).collect();
                    key[pos] = String::new();
                    if fold.contains(&(segs.len(), key)) {
                        let mut t: Vec<String> = segs.iter().map(|s| s.to_string()).collect();
                        t[pos] = "{param}".into();
                        e.template = t.join("/");
                    }
                }
                match merged.get_mut(&e.template) {
                    Some(m) => m.merge(&e),
                    None => {
                        merged.insert(e.template.clone(), e);
                    }
                }
            }
            cur = merged.into_values().collect();
        }
        fold_sibling_params(cur)
    }

    #[test]
    fn learning_equals_the_first_written_learning_on_random_trees() {
        // Small alphabets so groups collide, with empty segments, trailing slashes, params
        // already in place and depths from 1 to 6; thresholds around the group sizes.
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = |n: u64| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng % n
        };
        let words = [
            "a", "b", "users", "", "{id}", "{param}", "x1", "x2", "x3", "v1", "orders", "{uuid}",
        ];
        let mut folded = 0;
        for round in 0..300 {
            let threshold = next(4) as usize;
            let n = 1 + next(60) as usize;
            let mut set: BTreeMap<String, Endpoint> = BTreeMap::new();
            for _ in 0..n {
                let depth = 1 + next(6) as usize;
                let mut t = String::new();
                for _ in 0..depth {
                    t.push('/');
                    if next(3) == 0 {
                        t.push_str(&format!("w{}", next(8)));
                    } else {
                        t.push_str(words[next(words.len() as u64) as usize]);
                    }
                }
                let e = set.entry(t.clone()).or_insert_with(|| Endpoint {
                    host: "h".into(),
                    method: "GET".into(),
                    template: t,
                    ..Endpoint::default()
                });
                e.count += 1 + next(5);
            }
            let eps: Vec<&Endpoint> = set.values().collect();
            let got: Vec<(String, u64)> = learn(&eps, threshold)
                .into_iter()
                .map(|e| (e.template, e.count))
                .collect();
            let want: Vec<(String, u64)> = learn_model(&eps, threshold)
                .into_iter()
                .map(|e| (e.template, e.count))
                .collect();
            folded += usize::from(want.len() < eps.len());
            assert_eq!(got, want, "round {round}, threshold {threshold}");
        }
        assert!(folded > 100, "only {folded} of 300 rounds folded anything");
    }

    #[test]
    fn a_literal_segment_is_found_by_position() {
        assert_eq!(literal_segment("/a/b/c", 1), Some((1, 2)));
        assert_eq!(literal_segment("/a/b/c", 3), Some((5, 6)));
        assert_eq!(literal_segment("/a/b/c", 4), None);
        assert_eq!(literal_segment("/a//c", 2), Some((3, 3)));
        assert_eq!(literal_segment("/a/", 2), Some((3, 3)));
        assert_eq!(literal_segment("/a/{id}/c", 2), None);
        assert_eq!(literal_segment("", 1), None);
    }

    #[test]
    fn templates_learned_params_and_404s_kept_apart() {
        let mut c = Catalog::new(CatalogConfig::default());
        let none = Auth {
            scheme: "none",
            principal: None,
        };
        for i in 0..50u8 {
            c.observe(
                &tx(
                    "GET",
                    &format!("/users/{i}"),
                    200,
                    r#"{"id":1,"email":"a@example.com"}"#,
                    "application/json",
                ),
                &meta(i),
                &none,
            );
            c.observe(
                &tx("GET", &format!("/profiles/user{i}name"), 200, "{}", "application/json"),
                &meta(i),
                &none,
            );
            c.observe(
                &tx("GET", &format!("/admin{i}.php"), 404, "", "text/html"),
                &meta(i),
                &none,
            );
        }
        c.observe(&tx("GET", "/health", 200, "ok", "text/plain"), &meta(1), &none);
        let (real, guesses) = c.endpoints();
        let names: BTreeSet<String> = real.iter().map(|e| format!("{} {}", e.method, e.template)).collect();
        assert_eq!(
            names,
            ["GET /health", "GET /profiles/{param}", "GET /users/{id}"]
                .iter()
                .map(|s| s.to_string())
                .collect()
        );
        assert_eq!(guesses.len(), 50);
        let users = real.iter().find(|e| e.template == "/users/{id}").expect("users");
        assert_eq!(users.count, 50);
        assert!(users.sensitive.contains(&Sensitive::Email));
        let est = users.clients.estimate();
        assert!((45..=55).contains(&est), "distinct clients {est}");
    }

    #[test]
    fn endpoints_per_host_are_capped() {
        let mut c = Catalog::new(CatalogConfig {
            max_endpoints_per_host: 10,
            ..CatalogConfig::default()
        });
        let none = Auth {
            scheme: "none",
            principal: None,
        };
        for i in 0..1000 {
            c.observe(&tx("GET", &format!("/p{i}x/a"), 200, "", "text/plain"), &meta(1), &none);
        }
        let (real, _) = c.endpoints();
        assert!(real.len() <= 11);
        assert!(real.iter().any(|e| e.template == "/{overflow}" && e.count == 990));
    }

    #[test]
    fn hostile_lengths_are_capped() {
        let long = format!("/a/{}/b", "x".repeat(40_000));
        let mut t = tx("GET", &long, 200, "", "text/plain");
        if let Some(q) = t.request.as_mut() {
            q.headers = vec![("Host".into(), "h".repeat(10_000))].into();
            q.method = "M".repeat(500);
        }
        let ep = endpoint_of(&t, &meta(1)).expect("endpoint");
        let (h, m, tpl) = ep.parts();
        assert_eq!((h.len(), m.len()), (MAX_HOST, MAX_METHOD));
        assert_eq!(tpl, "/a/{...}");
        assert_eq!(cap_str("ééé".into(), 3), "é");
    }

    /// [`endpoint_of`] as it was, three strings: the reference for the one-text form.
    fn endpoint_of_reference(tx: &Transaction, meta: &FlowMeta) -> Option<(String, String, String)> {
        let q = tx.request.as_ref()?;
        let host = match q.header("host").map(str::trim) {
            Some(h) if !h.is_empty() => crate::detect::cut(h, MAX_HOST).to_ascii_lowercase(),
            _ => cap_str(format!("{}:{}", meta.dst, meta.dport), MAX_HOST),
        };
        let path = crate::util::target_path(&q.uri);
        Some((
            host,
            cap_str(q.method.clone(), MAX_METHOD),
            cap_template(template::template_clean_path(path)),
        ))
    }

    #[test]
    fn endpoint_of_gives_the_three_strings_it_replaced() {
        let hosts = [
            None,
            Some(String::new()),
            Some("  ".into()),
            Some("API.Example.COM".into()),
            Some("a b c".into()),
            Some(" h:8080 ".into()),
            Some(format!("{}É{}", "A".repeat(253), "b".repeat(40))),
            Some("h".repeat(400)),
        ];
        let methods = ["GET", "", "M E", &"M".repeat(40), "PÖST"];
        let paths = [
            "/",
            "",
            "/api/v1/users/123/orders/9?x=1#f",
            "/a b/ /c",
            "/x/550e8400-e29b-41d4-a716-446655440000/1/2/3/4/5/6/7/8/9/10",
            &format!("/a/{}/b", "x".repeat(600)),
            &"/1".repeat(200),
            &format!("/{}", "é".repeat(200)),
            "*",
        ];
        for h in &hosts {
            for m in methods {
                for p in paths {
                    let mut t = tx("GET", p, 200, "", "text/plain");
                    if let Some(q) = t.request.as_mut() {
                        q.headers = h
                            .iter()
                            .map(|h| ("Host".to_string(), h.clone()))
                            .collect::<Vec<_>>()
                            .into();
                        q.method = m.to_string();
                    }
                    let want = endpoint_of_reference(&t, &meta(1)).expect("reference");
                    let got = endpoint_of(&t, &meta(1)).expect("endpoint");
                    assert_eq!(got.parts(), (&*want.0, &*want.1, &*want.2), "{h:?} {m:?} {p:?}");
                    assert_eq!(got.method_template(), format!("{} {}", want.1, want.2));
                    assert_eq!(got.text(), format!("{} {} {}", want.0, want.1, want.2));
                    assert_eq!(got, EndpointId::new(&want.0, &want.1, &want.2));
                }
            }
        }
    }

    #[test]
    fn host_cut_before_lowercasing_matches_cut_after() {
        for host in [
            "API.Example.COM",
            "  h.example:8080 ",
            "\tÉté.Example\t",
            "",
            "   ",
            &format!("{}É{}", "A".repeat(253), "b".repeat(40)),
            &format!("{}\u{1F600}x", "Z".repeat(254)),
        ] {
            let mut t = tx("GET", "/x", 200, "", "text/plain");
            if let Some(q) = t.request.as_mut() {
                q.headers = vec![("Host".into(), host.to_string())].into();
            }
            let ep = endpoint_of(&t, &meta(1)).expect("endpoint");
            let (h, _, _) = ep.parts();
            let trimmed = host.trim().to_ascii_lowercase();
            let want = if trimmed.is_empty() {
                cap_str(format!("{}:{}", meta(1).dst, meta(1).dport), MAX_HOST)
            } else {
                cap_str(trimmed, MAX_HOST)
            };
            assert_eq!(h, want, "{host:?}");
        }
    }

    #[test]
    fn latency_quantiles_are_close() {
        let mut l = Latency::default();
        for us in 1..=1000u64 {
            l.add(us * 10);
        }
        let p50 = l.quantile(0.5).unwrap_or(0);
        assert!((4000..=5000).contains(&p50), "{p50}");
        let p99 = l.quantile(0.99).unwrap_or(0);
        assert!((8000..=9900).contains(&p99), "{p99}");
    }

    /// The memo of client hashes answers what hashing the address answers, for addresses
    /// that share a slot, come back after being pushed out, or differ only in family.
    #[test]
    fn remembered_client_hashes_equal_the_hash_of_the_address() {
        let mut m = ClientHashes::default();
        let mut seed = 11u64;
        let mut next = || {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            seed >> 24
        };
        let mut ips: Vec<IpAddr> = vec![
            IpAddr::from([0u8; 4]),
            IpAddr::from([0u16; 8]),
            IpAddr::from([10, 0, 0, 1]),
            IpAddr::from([0, 0, 0, 0, 0, 0xffff, 0x0a00, 1]),
            IpAddr::from([10, 0, 1, 1]),
            IpAddr::from([11, 0, 0, 1]),
        ];
        for _ in 0..400 {
            let x = next();
            ips.push(if x % 3 == 0 {
                IpAddr::from(std::net::Ipv6Addr::from((x as u128) << 64 | x as u128))
            } else {
                IpAddr::from([10, (x >> 16) as u8 % 4, (x >> 8) as u8 % 4, x as u8])
            });
        }
        for round in 0..3 {
            for ip in &ips {
                assert_eq!(m.get(*ip), Distinct::hash(*ip), "{ip} round {round}");
            }
        }
        // counted through the memo or not, the same registers
        let (mut a, mut b) = (Distinct::default(), Distinct::default());
        for ip in &ips {
            a.add(*ip);
            b.add_hash(m.get(*ip));
        }
        assert_eq!(format!("{a:?}"), format!("{b:?}"));
    }

    /// The capitals test read eight bytes at a time says what a byte loop says, for every
    /// byte value at every place of a word and lengths across word ends.
    #[test]
    fn ascii_capitals_found_by_words_as_by_bytes() {
        for len in 0..=19usize {
            for at in 0..len.max(1) {
                for c in 0..=255u8 {
                    let mut b = b"application/jsonx!".repeat(2)[..len].to_vec();
                    if len > 0 {
                        b[at] = c;
                    }
                    assert_eq!(
                        has_ascii_upper(&b),
                        b.iter().any(u8::is_ascii_uppercase),
                        "{c:#x} at {at} of {len}"
                    );
                }
            }
        }
    }

    /// The remembered content type gives what parsing every message gives, and the sets
    /// of types end as adding every message's type leaves them: values repeated, changed,
    /// in capitals, with parameters and spaces, empty, absent, overlong and not ASCII, more
    /// distinct types than a set holds.
    #[test]
    fn remembered_content_types_are_the_parsed_ones() {
        let mut pool: Vec<String> = [
            "application/json",
            "application/json; charset=utf-8",
            " application/json ",
            "Application/JSON",
            "text/plain;charset=UTF-8",
            "",
            " ",
            ";",
            "application/x-www-form-urlencoded",
            "caf\u{e9}/cr\u{e8}me",
            "\u{a0}text/html\u{a0}",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        pool.push(format!("application/{}", "x".repeat(200)));
        pool.push(format!("application/{}", "y".repeat(TypeMemo::MAX - 12)));
        pool.push(format!("application/{}", "z".repeat(TypeMemo::MAX - 11)));
        for i in 0..12 {
            pool.push(format!("application/v{i}+json"));
        }
        let msg = |ct: Option<&str>| Message {
            headers: ct
                .map(|c| vec![("Content-Type".to_string(), c.to_string())])
                .unwrap_or_default()
                .into(),
            ..Default::default()
        };
        let mut seed = 0x5851_f42d_4c95_7f2du64;
        let mut from_memo = 0;
        for round in 0..400 {
            let (mut memo, mut set, mut want) = (TypeMemo::default(), BTreeSet::new(), BTreeSet::new());
            for _ in 0..200 {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                // one of a few values (or none) in most rounds: repeats; one of the whole pool
                // in the others: a full set
                let n = if round % 3 == 0 { pool.len() } else { 4 };
                let i = (seed >> 8) as usize % (n + 1);
                let m = msg(pool.get(i).map(String::as_str));
                let (ct, seen) = memo.get(&m);
                assert_eq!(ct, content_type_ref(&m), "{:?}", pool.get(i));
                from_memo += seen as usize;
                if !seen {
                    memo.note(&m, ct.as_ref());
                    add_type(&mut set, ct);
                }
                add_type(&mut want, content_type_ref(&m));
                assert_eq!(set, want);
            }
        }
        assert!(from_memo > 5_000, "{from_memo}");
    }

    #[test]
    fn media_type_is_before_semicolon_trimmed() {
        let mut cts: Vec<String> = [
            "application/json",
            "application/json; charset=utf-8",
            " application/json ;x",
            "\tapplication/json\r",
            ";",
            "",
            " ",
            "a",
            "application/json\u{a0}",
            "\u{2003}text/html",
            "text/plain\u{85}; q",
            "x;y;z",
            "\u{b}x\u{c}",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        // every byte at each end, and values on both sides of the 32-byte loop
        for b in 0..=127u8 {
            let c = b as char;
            cts.push(format!("{c}application/json"));
            cts.push(format!("application/json{c}"));
            cts.push(format!("application/vnd.example.v1+json{c}; x"));
            cts.push(format!("application/vnd.example.v1+jsonx{c}"));
        }
        for n in 28..40 {
            cts.push(format!("{};{}", "a".repeat(n), " b"));
            cts.push(format!("{} ", "a".repeat(n)));
        }
        for c in &cts {
            assert_eq!(media_type(c), crate::util::before_semicolon(c).trim(), "{c:?}");
        }
    }

    #[test]
    fn powers_of_two_from_bits_are_powi() {
        for r in 0..=255u8 {
            assert_eq!(pow2_neg(r).to_bits(), 2f64.powi(-(r as i32)).to_bits(), "{r}");
        }
        // an estimate over registers of every value is the one `powi` gives
        let mut d = Distinct::default();
        for (i, x) in d.0.iter_mut().enumerate() {
            *x = (i * 37 % 64) as u8;
        }
        let m = 256.0f64;
        let sum: f64 = d.0.iter().map(|r| 2f64.powi(-(*r as i32))).sum();
        let raw = 0.7213 / (1.0 + 1.079 / m) * m * m / sum;
        assert_eq!(d.estimate(), raw.round() as u64);
    }

    /// The direct writer of a new endpoint's JSON against the `Value` it replaced, with
    /// `reason` and `spec` added as they were, over endpoints profiled from varied (and
    /// hostile) calls: odd statuses (two, four and five digits sort as text), escapes in
    /// every string, query and body schemas, latencies, auth schemes, sensitive kinds.
    #[test]
    fn endpoint_json_written_directly_is_the_value_written() {
        fn step(r: &mut u64) -> u64 {
            *r ^= *r << 13;
            *r ^= *r >> 7;
            *r ^= *r << 17;
            *r
        }
        let mut r = 0x2545_f491_4f6c_dd1du64;
        let statuses = [200u16, 404, 500, 99, 1000, 0, 65535, 201, 302, 50];
        let paths = [
            "/a/1",
            "/a/b?x=1&y=a%40b.io&x=2.5",
            "/q\"u\\o\u{1}te/\u{7f}?k=\u{8}&=",
            "/users/550e8400-e29b-41d4-a716-446655440000/x/2024-01-02/a@b.example",
            "/",
            "/caf\u{e9}/\u{2028}?\u{e9}=true",
        ];
        let bodies = [
            "",
            "{\"a\":1,\"b\":\"x@y.io\",\"c\":[1,2.5,null]}",
            "[{\"id\":\"550e8400-e29b-41d4-a716-446655440000\"}]",
            "not json",
            "{\"t\":\"\\u0001\\\"\",\"n\":{\"d\":\"2024-01-02\"}}",
            "+14155550100 4111111111111111 eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln",
        ];
        let cts = [
            "application/json",
            "text/plain",
            "application/x-www-form-urlencoded",
            "",
        ];
        let schemes = ["none", "bearer", "basic", "api_key"];
        let spec = std::sync::Arc::new(
            spec::Spec::parse(r#"{"openapi":"3.0.0","paths":{"/a/{id}":{"get":{}},"/":{"post":{"deprecated":true}}}}"#)
                .expect("spec"),
        );
        let mut checked = 0;
        for round in 0..40 {
            let mut c = Catalog::new(CatalogConfig {
                max_params: 1 + round % 5,
                ..CatalogConfig::default()
            });
            if round % 2 == 0 {
                c.spec = Some(spec.clone());
            }
            for i in 0..200u64 {
                let pick = |r: &mut u64, n: usize| (step(r) % n as u64) as usize;
                let method = ["GET", "POST", "PUT", "D\"EL"][pick(&mut r, 4)];
                let mut t = tx(
                    method,
                    paths[pick(&mut r, paths.len())],
                    statuses[pick(&mut r, statuses.len())],
                    bodies[pick(&mut r, bodies.len())],
                    cts[pick(&mut r, cts.len())],
                );
                if let Some(q) = &mut t.request {
                    let b = bodies[pick(&mut r, bodies.len())];
                    q.body = b.as_bytes().to_vec();
                    q.body_len = b.len() as u64;
                    q.headers = vec![
                        (
                            "Host".into(),
                            ["api.example", "h\"\\x", "caf\u{e9}.example"][pick(&mut r, 3)].into(),
                        ),
                        ("Content-Type".into(), cts[pick(&mut r, cts.len())].into()),
                    ]
                    .into();
                    q.start = i * 1_000_000_007;
                    q.end = q.start + step(&mut r) % 5_000_000_000;
                }
                if let Some(a) = &mut t.response {
                    a.start = i * 1_000_000_007 + step(&mut r) % 1_000_000;
                    a.end = a.start + step(&mut r) % 3_000_000_000;
                }
                let auth = Auth {
                    scheme: schemes[pick(&mut r, schemes.len())],
                    principal: None,
                };
                let Some(ep) = endpoint_of(&t, &meta((i % 7) as u8)) else {
                    continue;
                };
                let sens = t.response.as_ref().map(sensitive::scan_response).unwrap_or_default();
                if let Some(f) = c.observe_at(ep.parts(), &t, &meta((i % 7) as u8), &auth, &sens) {
                    let reason = ["first_seen", "snap\"shot"][i as usize % 2];
                    let mut want = f.json();
                    want["reason"] = reason.into();
                    let want = serde_json::to_vec(&want).expect("value");
                    let mut got = Vec::new();
                    f.with_reason(reason).write(&mut got);
                    assert_eq!(String::from_utf8_lossy(&got), String::from_utf8_lossy(&want));
                    checked += 1;
                }
            }
            // and every endpoint as profiled further (many statuses, merged schemas)
            let (real, guesses) = c.endpoints();
            for e in real.iter().chain(&guesses) {
                let spec_status = c.spec_status(e);
                let f = Fresh {
                    endpoint: e,
                    spec: spec_status,
                };
                let want = serde_json::to_vec(&c.endpoint_json(e)).expect("value");
                let mut got = Vec::new();
                EndpointJson {
                    e,
                    spec: spec_status.map(|s| s.as_str()),
                    reason: None,
                }
                .write(&mut got);
                assert_eq!(String::from_utf8_lossy(&got), String::from_utf8_lossy(&want));
                assert_eq!(serde_json::to_vec(&f.json()).expect("fresh"), want);
                checked += 1;
            }
        }
        assert!(checked > 500, "{checked}");
    }

    /// Merging through the memo gives the schema that reading every body gives, over runs
    /// of repeated, alternating, invalid, non-JSON, too long and empty bodies, with the
    /// content type and `max_params` changing under it.
    #[test]
    fn a_remembered_body_merges_as_its_text() {
        fn step(r: &mut u64) -> u64 {
            *r ^= *r << 13;
            *r ^= *r >> 7;
            *r ^= *r << 17;
            *r
        }
        let long = format!("{{\"a\":\"{}\",\"b\":1}}", "x".repeat(600));
        let bodies: Vec<String> = vec![
            r#"{"id":1,"email":"a@b.io","tags":["x"],"geo":{"lat":1.5}}"#.into(),
            r#"{"id":"x","note":null,"geo":{"lat":2,"lon":"3"},"tags":[1,{"a":1}]}"#.into(),
            r#"[{"id":1},{"id":"2024-01-02"}]"#.into(),
            r#"{"a":1,"a":"dup","b":{"c":[1,2.5]},"z":true,"y":false,"x":null}"#.into(),
            "{\"a\":1".into(),
            "not json".into(),
            "a=1&b=x%40y.io".into(),
            "".into(),
            "42".into(),
            long,
        ];
        let cts = [
            Some("application/json"),
            None,
            Some("application/x-www-form-urlencoded"),
            Some("text/plain"),
        ];
        let mut r = 0x853c_49e6_748f_ea9bu64;
        // (merges that went through a kept schema: the memo's own way must be taken)
        let mut through_memo = 0;
        for round in 0..300 {
            let (mut memo, mut want, mut got) = (BodyMemo::default(), Schema::default(), Schema::default());
            for _ in 0..40 {
                let cfg = CatalogConfig {
                    max_params: if step(&mut r).is_multiple_of(10) {
                        1 + round % 3
                    } else {
                        64
                    },
                    ..CatalogConfig::default()
                };
                // mostly repeats of the last body or two
                let b = &bodies[(step(&mut r) % if round % 2 == 0 { 3 } else { bodies.len() as u64 }) as usize];
                let m = Message {
                    status: 200,
                    body: b.as_bytes().to_vec(),
                    body_len: b.len() as u64,
                    ..Default::default()
                };
                let ct = cts[(step(&mut r) % cts.len() as u64) as usize];
                merge_body_schema(&mut want, &m, ct, &cfg);
                let kept = memo.schema.is_some() && *memo.body == m.body[..];
                memo.merge(&mut got, &m, ct, &cfg);
                through_memo += usize::from(kept && memo.schema.is_some());
                assert_eq!(got, want, "round {round}");
            }
        }
        assert!(through_memo > 200, "only {through_memo} merges used a kept schema");
        // a copy of an endpoint remembers nothing (nothing copied for the memo)
        let mut memo = BodyMemo::default();
        let m = Message {
            body: b"{\"a\":1}".to_vec(),
            ..Default::default()
        };
        let mut s = Schema::default();
        for _ in 0..2 {
            memo.merge(&mut s, &m, Some("application/json"), &CatalogConfig::default());
        }
        assert!(memo.schema.is_some() && !memo.body.is_empty());
        let copy = memo.clone();
        assert!(copy.schema.is_none() && copy.body.is_empty());
    }
}
