//! Events that cross threads, and their EVE-shaped JSON lines (SPEC §5).
//!
//! Field names and types follow Suricata's EVE wherever EVE has the field; apitap's own data
//! sits under `api` (and, later, `indicator`). Every string that may hold a secret passes
//! through the [`Redactor`] on its way out. One event is one line, written whole.

use std::io::Write;
use std::net::IpAddr;

use serde::Serialize;

use crate::capture::Ts;
use crate::flow::{FlowAnomaly, FlowMeta};
use crate::http::{Message, Transaction};
use crate::redact::Redactor;

/// An event on its way to the sink.
#[derive(Debug)]
pub enum Event {
    Http {
        meta: FlowMeta,
        tx: Transaction,
        /// A 2xx without credentials on an endpoint that requires them (set by the capture
        /// thread's [`crate::engine::AuthTracker`]).
        auth_bypass: bool,
    },
    Anomaly(AnomalyEvent),
    Stats {
        ts: Ts,
        stats: serde_json::Value,
    },
    /// Catalog snapshot time: every shard gets one (packet time in a replay).
    Tick {
        ts: Ts,
        seq: u64,
    },
}

impl Event {
    /// The entity this event belongs to (client address), for sharding.
    pub fn entity(&self) -> Option<IpAddr> {
        match self {
            Event::Http { meta, .. } => Some(meta.src),
            Event::Anomaly(a) => a.meta.as_ref().map(|m| m.src),
            Event::Stats { .. } | Event::Tick { .. } => None,
        }
    }
}

#[derive(Debug)]
pub struct AnomalyEvent {
    pub ts: Ts,
    pub meta: Option<FlowMeta>,
    /// EVE `anomaly.type`: `decode`, `stream` or `applayer`.
    pub atype: &'static str,
    pub event: &'static str,
    pub layer: &'static str,
    pub app_proto: Option<&'static str>,
}

impl AnomalyEvent {
    pub fn from_flow(ts: Ts, meta: FlowMeta, what: FlowAnomaly) -> Self {
        let (atype, event, layer, app_proto) = match what {
            FlowAnomaly::Gap => ("stream", "REASSEMBLY_GAP", "tcp", None),
            FlowAnomaly::OverlapConflict => ("stream", "REASSEMBLY_OVERLAP_DIFFERENT_DATA", "tcp", None),
            FlowAnomaly::Http(a) => ("applayer", a.as_str(), "proto_parser", Some("http")),
        };
        AnomalyEvent {
            ts,
            meta: Some(meta),
            atype,
            event,
            layer,
            app_proto,
        }
    }
}

/// Formats events as JSON lines.
pub struct Formatter {
    pub host: String,
    pub redactor: Redactor,
    pub log_headers: bool,
    /// Event types written (as Suricata's eve-log `types`); the others are skipped.
    pub types: EventTypes,
}

/// A set of event types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventTypes(u8);

impl EventTypes {
    pub const NAMES: [&'static str; 6] = ["http", "alert", "anomaly", "endpoint", "entity", "stats"];

    pub fn all() -> Self {
        EventTypes(0x3f)
    }

    /// From names; an unknown name is an error naming it.
    pub fn parse<S: AsRef<str>>(names: &[S]) -> Result<Self, String> {
        let mut m = 0;
        for n in names {
            let n = n.as_ref();
            let i = Self::NAMES
                .iter()
                .position(|x| *x == n)
                .ok_or_else(|| format!("{n:?} is not one of {}", Self::NAMES.join(", ")))?;
            m |= 1 << i;
        }
        Ok(EventTypes(m))
    }

    pub fn has(self, name: &str) -> bool {
        Self::NAMES
            .iter()
            .position(|x| *x == name)
            .is_some_and(|i| self.0 & (1 << i) != 0)
    }
}

#[derive(Serialize)]
struct Common<'a> {
    timestamp: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    flow_id: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    community_id: Option<&'a str>,
    event_type: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    src_ip: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    src_port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dest_ip: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dest_port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    proto: Option<&'static str>,
    host: &'a str,
}

#[derive(Serialize)]
struct HeaderKv<'a> {
    name: &'a str,
    value: std::borrow::Cow<'a, str>,
}

#[derive(Serialize)]
struct HttpObj<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    hostname: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    http_port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    url: Option<std::borrow::Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    http_user_agent: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    http_content_type: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    http_refer: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    xff: Option<std::borrow::Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    http_method: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    redirect: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    protocol: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    length: Option<u64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    request_headers: Vec<HeaderKv<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    response_headers: Vec<HeaderKv<'a>>,
}

#[derive(Serialize)]
struct AuthObj {
    scheme: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    principal: Option<String>,
}

#[derive(Serialize)]
struct Times {
    #[serde(skip_serializing_if = "Option::is_none")]
    request_start: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_end: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_start: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_end: Option<String>,
}

#[derive(Serialize)]
struct ApiObj<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    path: Option<&'a str>,
    /// Method and path template (`GET /users/{id}`), by the catalog's rules.
    #[serde(skip_serializing_if = "Option::is_none")]
    endpoint: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_body_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_body_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    latency_us: Option<u64>,
    auth: AuthObj,
    gap: bool,
    truncated: bool,
    times: Times,
    /// SPEC §4b: a gRPC call's service, method, status and message counts.
    #[serde(skip_serializing_if = "Option::is_none")]
    grpc: Option<GrpcObj<'a>>,
}

#[derive(Serialize)]
struct GrpcObj<'a> {
    service: &'a str,
    method: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<&'a str>,
    request_messages: u64,
    response_messages: u64,
    request_message_bytes: u64,
    response_message_bytes: u64,
    compressed: bool,
}

#[derive(Serialize)]
struct HttpEvent<'a> {
    #[serde(flatten)]
    common: Common<'a>,
    http: HttpObj<'a>,
    api: ApiObj<'a>,
}

#[derive(Serialize)]
struct AnomalyObj {
    #[serde(rename = "type")]
    atype: &'static str,
    event: &'static str,
    layer: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    app_proto: Option<&'static str>,
}

#[derive(Serialize)]
struct AnomalyOut<'a> {
    #[serde(flatten)]
    common: Common<'a>,
    anomaly: AnomalyObj,
}

#[derive(Serialize)]
struct StatsOut<'a> {
    #[serde(flatten)]
    common: Common<'a>,
    stats: &'a serde_json::Value,
}

impl Formatter {
    fn common<'a>(&'a self, ts: Ts, event_type: &'static str, meta: Option<&'a FlowMeta>) -> Common<'a> {
        Common {
            timestamp: fmt_ts(ts),
            flow_id: meta.map(|m| m.flow_id),
            community_id: meta.map(|m| &*m.community_id),
            event_type,
            src_ip: meta.map(|m| m.src.to_string()),
            src_port: meta.map(|m| m.sport),
            dest_ip: meta.map(|m| m.dst.to_string()),
            dest_port: meta.map(|m| m.dport),
            proto: meta.map(|_| "TCP"),
            host: &self.host,
        }
    }

    /// Append one JSON line for `ev` to `out` (nothing if its type is not written).
    pub fn write(&self, ev: &Event, out: &mut Vec<u8>) {
        let t = match ev {
            Event::Http { .. } => "http",
            Event::Anomaly(_) => "anomaly",
            Event::Stats { .. } => "stats",
            Event::Tick { .. } => return,
        };
        if !self.types.has(t) {
            return;
        }
        let r = match ev {
            Event::Http { meta, tx, .. } => {
                let auth = tx.request.as_ref().map(|m| self.redactor.auth(m));
                let endpoint = tx.request.as_ref().map(|m| {
                    format!(
                        "{} {}",
                        m.method,
                        crate::catalog::template::template(target_path(&m.uri)).0
                    )
                });
                serde_json::to_writer(&mut *out, &self.http(meta, tx, auth, endpoint))
            }
            Event::Tick { .. } => return,
            Event::Anomaly(a) => serde_json::to_writer(
                &mut *out,
                &AnomalyOut {
                    common: self.common(a.ts, "anomaly", a.meta.as_ref()),
                    anomaly: AnomalyObj {
                        atype: a.atype,
                        event: a.event,
                        layer: a.layer,
                        app_proto: a.app_proto,
                    },
                },
            ),
            Event::Stats { ts, stats } => serde_json::to_writer(
                &mut *out,
                &StatsOut {
                    common: self.common(*ts, "stats", None),
                    stats,
                },
            ),
        };
        // Serialising owned, valid data into a Vec cannot fail; keep the line whole regardless.
        if r.is_err() {
            out.extend_from_slice(b"{}");
        }
        let _ = out.write_all(b"\n");
    }

    /// An `http` line with the auth and endpoint the worker already worked out.
    pub fn write_http(
        &self,
        meta: &FlowMeta,
        tx: &Transaction,
        auth: crate::redact::Auth,
        endpoint: Option<String>,
        out: &mut Vec<u8>,
    ) {
        if !self.types.has("http") {
            return;
        }
        if serde_json::to_writer(&mut *out, &self.http(meta, tx, Some(auth), endpoint)).is_err() {
            out.extend_from_slice(b"{}");
        }
        out.push(b'\n');
    }

    fn http<'a>(
        &'a self,
        meta: &'a FlowMeta,
        tx: &'a Transaction,
        auth: Option<crate::redact::Auth>,
        endpoint: Option<String>,
    ) -> HttpEvent<'a> {
        let q = tx.request.as_ref();
        let r = tx.response.as_ref();
        let host_hdr = q.and_then(|m| m.header("host"));
        let (hostname, http_port) = host_hdr.map(split_host_port).unwrap_or((None, None));
        let headers = |m: Option<&'a Message>| -> Vec<HeaderKv<'a>> {
            if !self.log_headers {
                return Vec::new();
            }
            m.map(|m| {
                m.headers
                    .iter()
                    .map(|(n, v)| HeaderKv {
                        name: n,
                        value: self.redactor.header(n, v),
                    })
                    .collect()
            })
            .unwrap_or_default()
        };
        HttpEvent {
            common: self.common(tx.start(), "http", Some(meta)),
            http: HttpObj {
                hostname,
                http_port,
                url: q.map(|m| self.redactor.url(&m.uri)),
                http_user_agent: q.and_then(|m| m.header("user-agent")),
                http_content_type: r
                    .and_then(|m| m.header("content-type"))
                    .map(|c| c.split(';').next().unwrap_or(c).trim()),
                http_refer: q.and_then(|m| m.header("referer")),
                // every X-Forwarded-For line, in order, as one list (a proxy appends its own)
                xff: q.and_then(|m| {
                    let lines: Vec<&str> = m.header_values("x-forwarded-for").collect();
                    match lines.as_slice() {
                        [] => None,
                        [one] => Some(std::borrow::Cow::Borrowed(*one)),
                        _ => Some(std::borrow::Cow::Owned(lines.join(", "))),
                    }
                }),
                http_method: q.map(|m| m.method.as_str()),
                redirect: r.and_then(|m| m.header("location")),
                protocol: q.or(r).map(|m| m.protocol()),
                status: r.map(|m| m.status),
                // Suricata writes 0 for a request without a response
                length: Some(r.map_or(0, |m| m.body_len)),
                request_headers: headers(q),
                response_headers: headers(r),
            },
            api: ApiObj {
                path: q.map(|m| target_path(&m.uri)),
                endpoint,
                request_body_bytes: q.map(|m| m.body_len),
                response_body_bytes: r.map(|m| m.body_len),
                latency_us: tx.latency_us(),
                auth: match auth {
                    Some(a) => AuthObj {
                        scheme: a.scheme,
                        principal: a.principal,
                    },
                    None => AuthObj {
                        scheme: "none",
                        principal: None,
                    },
                },
                gap: tx.gap,
                truncated: tx.truncated,
                times: Times {
                    request_start: q.map(|m| fmt_ts(m.start)),
                    request_end: q.map(|m| fmt_ts(m.end)),
                    response_start: r.map(|m| fmt_ts(m.start)),
                    response_end: r.map(|m| fmt_ts(m.end)),
                },
                grpc: tx.grpc.as_deref().map(|g| GrpcObj {
                    service: &g.service,
                    method: &g.method,
                    status: g.status,
                    message: g.message.as_deref(),
                    request_messages: g.request_messages,
                    response_messages: g.response_messages,
                    request_message_bytes: g.request_message_bytes,
                    response_message_bytes: g.response_message_bytes,
                    compressed: g.compressed,
                }),
            },
        }
    }
}

/// The path of a request target: without query or fragment, and for the absolute form
/// (`http://user:pass@host/p`, proxies) without scheme, credentials and authority.
pub fn target_path(uri: &str) -> &str {
    // RFC 9112 §3.2: origin-form (`/p?q`), absolute-form (`scheme://authority/p?q`, the scheme at
    // the very start), authority-form (`host:port`, CONNECT) and asterisk-form (`*`). A `://`
    // further in (a URL inside the query, `/fetch?url=http://h/x`) is data, not the target's
    // authority: only a target that does not start with `/` can be absolute-form.
    let p = if uri.starts_with('/') {
        uri
    } else {
        match absolute_rest(uri) {
            Some(rest) => rest.find(['/', '?', '#']).map_or("/", |i| match rest.as_bytes()[i] {
                b'/' => &rest[i..],
                _ => "/",
            }),
            None => uri,
        }
    };
    p.split(['?', '#']).next().unwrap_or("")
}

/// `scheme://rest` with an RFC 3986 scheme (ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )) at the
/// start: `rest`.
pub fn absolute_rest(uri: &str) -> Option<&str> {
    let (scheme, rest) = uri.split_once("://")?;
    let mut b = scheme.bytes();
    let first_ok = b.next().is_some_and(|c| c.is_ascii_alphabetic());
    (first_ok && b.all(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.'))).then_some(rest)
}

/// `example.com:8080` -> (example.com, 8080); `[::1]:80` -> ([::1], 80).
pub(crate) fn split_host_port(h: &str) -> (Option<&str>, Option<u16>) {
    let h = h.trim();
    if h.starts_with('[') {
        // An IPv6 literal keeps its brackets, as in a URL (and as Suricata logs it).
        if let Some(end) = h.find(']') {
            let port = h[end + 1..].strip_prefix(':').and_then(|p| p.parse().ok());
            return (Some(&h[..=end]), port);
        }
    }
    match h.rsplit_once(':') {
        Some((name, port)) if !name.contains(':') => match port.parse() {
            Ok(p) => (Some(name), Some(p)),
            Err(_) => (Some(h), None),
        },
        _ => (Some(h), None),
    }
}

/// EVE timestamp: `2026-11-29T05:50:07.123456+0000` (UTC, microseconds). Written digit by
/// digit into a fixed buffer: five of these per http event, so no `format!` machinery.
pub fn fmt_ts(ns: Ts) -> String {
    let secs = (ns / 1_000_000_000) as i64;
    let micros = ((ns % 1_000_000_000) / 1000) as u32;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400) as u32;
    let (y, m, d) = civil_from_days(days);
    let mut b = *b"0000-00-00T00:00:00.000000+0000";
    let mut put = |at: usize, width: usize, mut v: u32| {
        for k in (at..at + width).rev() {
            b[k] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, 4, y.clamp(0, 9999) as u32);
    put(5, 2, m);
    put(8, 2, d);
    put(11, 2, rem / 3600);
    put(14, 2, (rem % 3600) / 60);
    put(17, 2, rem % 60);
    put(20, 6, micros);
    b.iter().map(|c| *c as char).collect()
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// `endpoint`, `alert` and `entity` lines: rarer than `http`, built as JSON values.
impl Formatter {
    fn head(&self, ts: Ts, event_type: &str) -> serde_json::Map<String, serde_json::Value> {
        let mut m = serde_json::Map::new();
        m.insert("timestamp".into(), fmt_ts(ts).into());
        m.insert("event_type".into(), event_type.into());
        m
    }

    fn line(&self, mut m: serde_json::Map<String, serde_json::Value>, out: &mut Vec<u8>) {
        m.insert("host".into(), self.host.clone().into());
        if serde_json::to_writer(&mut *out, &m).is_err() {
            out.extend_from_slice(b"{}");
        }
        out.push(b'\n');
    }

    /// A catalog entry (`reason`: `first_seen` or `snapshot`).
    pub fn write_endpoint(&self, ts: Ts, mut endpoint: serde_json::Value, reason: &str, out: &mut Vec<u8>) {
        if !self.types.has("endpoint") {
            return;
        }
        let mut m = self.head(ts, "endpoint");
        endpoint["reason"] = reason.into();
        m.insert("endpoint".into(), endpoint);
        self.line(m, out);
    }

    /// An EVE alert with apitap's `indicator`.
    pub fn write_alert(&self, a: &crate::engine::Alert, out: &mut Vec<u8>) {
        if !self.types.has("alert") {
            return;
        }
        use serde_json::json;
        let mut m = self.head(a.ts, "alert");
        let entity_ip: Option<IpAddr> = (a.key.kind == "ip").then(|| a.key.value.parse().ok()).flatten();
        if let Some(meta) = &a.meta {
            m.insert("flow_id".into(), meta.flow_id.into());
            m.insert("community_id".into(), (*meta.community_id).into());
            let src = entity_ip.unwrap_or(meta.src);
            m.insert("src_ip".into(), src.to_string().into());
            if src == meta.src {
                m.insert("src_port".into(), meta.sport.into());
            }
            m.insert("dest_ip".into(), meta.dst.to_string().into());
            m.insert("dest_port".into(), meta.dport.into());
            m.insert("proto".into(), "TCP".into());
            m.insert("app_proto".into(), "http".into());
        } else if let Some(ip) = entity_ip {
            m.insert("src_ip".into(), ip.to_string().into());
        }
        m.insert(
            "alert".into(),
            json!({
                "action": "allowed", "gid": 1, "signature_id": a.sid, "rev": a.rev,
                "signature": a.signature, "category": a.category, "severity": a.severity,
                "metadata": {"tag": [a.itype]},
            }),
        );
        if let Some(h) = &a.http {
            let mut o = serde_json::Map::new();
            if let Some(hn) = &h.hostname {
                o.insert("hostname".into(), split_host_port(hn).0.unwrap_or(hn).into());
            }
            o.insert("url".into(), h.url.clone().into());
            o.insert("http_method".into(), h.method.clone().into());
            if let Some(s) = h.status {
                o.insert("status".into(), s.into());
            }
            if let Some(ua) = &h.user_agent {
                o.insert("http_user_agent".into(), ua.clone().into());
            }
            m.insert("http".into(), serde_json::Value::Object(o));
        }
        let samples: Vec<serde_json::Value> = a
            .samples
            .iter()
            .map(|s| json!({"url": s.url, "status": s.status, "flow_id": s.flow_id, "detail": s.detail}))
            .collect();
        let mut flow_ids: Vec<u64> = a.samples.iter().map(|s| s.flow_id).collect();
        flow_ids.sort_unstable();
        flow_ids.dedup();
        let mut evidence = json!({"rule": a.rule_id, "count": a.count, "samples": samples});
        if let Some(d) = a.distinct {
            evidence["distinct"] = d.into();
            if a.distinct_estimated {
                // past the exact bound: a HyperLogLog estimate, said to be one
                evidence["distinct_estimated"] = true.into();
            }
        }
        if !a.values.is_empty() {
            evidence["values"] = a.values.clone().into();
        }
        if let Some(acc) = &a.account {
            evidence["account"] = acc.clone().into();
        }
        let r2 = |x: f64| (x * 100.0).round() / 100.0;
        m.insert(
            "indicator".into(),
            json!({
                "kind": if a.compromise { "compromise" } else { "attack" },
                "type": a.itype,
                "entity": {"type": a.key.kind, "value": a.key.value},
                "risk": r2(a.risk), "entity_risk": r2(a.entity_risk),
                "host": a.host, "endpoint": a.endpoint,
                "window_s": a.window_s, "count": a.count,
                "owasp": a.owasp, "mitre": a.mitre,
                "first_seen": fmt_ts(a.first), "last_seen": fmt_ts(a.last),
                "evidence": evidence, "flow_ids": flow_ids,
            }),
        );
        self.line(m, out);
    }

    /// An attacker-centric profile, when an entity's risk escalates.
    pub fn write_entity(&self, r: &crate::engine::entity::EntityReport, out: &mut Vec<u8>) {
        if !self.types.has("entity") {
            return;
        }
        use serde_json::json;
        let mut m = self.head(r.ts, "entity");
        if r.key.kind == "ip" {
            m.insert("src_ip".into(), r.key.value.clone().into());
        }
        let r2 = |x: f64| (x * 100.0).round() / 100.0;
        m.insert(
            "entity".into(),
            json!({
                "type": r.key.kind, "value": r.key.value,
                "risk": r2(r.risk), "level": r.level, "threshold": r.threshold,
                "first_seen": fmt_ts(r.first), "last_seen": fmt_ts(r.last),
                "requests": r.requests, "errors": r.errors,
                "error_ratio": if r.requests > 0 { r2(r.errors as f64 / r.requests as f64) } else { 0.0 },
                "statuses": r.statuses.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
                "endpoints": r.endpoints, "endpoints_more": r.endpoints_more,
                "auth": {"failures": r.auth_failures, "successes": r.auth_successes, "unauthenticated": r.unauthenticated},
                "user_agents": r.user_agents,
                "addresses": r.addresses.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
                "principals": r.principals,
                "indicators": r.indicators.iter().map(|i| json!({
                    "type": i.itype, "kind": if i.compromise { "compromise" } else { "attack" },
                    "count": i.count, "first_seen": fmt_ts(i.first), "last_seen": fmt_ts(i.last),
                    "signature_ids": i.sids,
                })).collect::<Vec<_>>(),
            }),
        );
        self.line(m, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_eve_shaped() {
        assert_eq!(fmt_ts(0), "1970-01-01T00:00:00.000000+0000");
        assert_eq!(fmt_ts(1_795_931_407_123_456_789), "2026-11-29T05:50:07.123456+0000");
        assert_eq!(fmt_ts(951_782_400_000_000_000), "2000-02-29T00:00:00.000000+0000");
    }

    #[test]
    fn target_paths() {
        assert_eq!(target_path("/a/b?c=1#f"), "/a/b");
        assert_eq!(target_path("http://u:p@h:8080/x/y?z"), "/x/y");
        assert_eq!(target_path("http://h"), "/");
        assert_eq!(target_path("*"), "*");
        assert_eq!(target_path("http://h?x=1"), "/");
        assert_eq!(target_path("example.com:443"), "example.com:443");
    }

    #[test]
    fn a_url_in_the_query_is_not_the_target() {
        // origin-form: the path is everything before `?`, whatever the query holds
        assert_eq!(
            target_path("/api/fetch?url=http://169.254.169.254/latest/meta-data/"),
            "/api/fetch"
        );
        assert_eq!(target_path("/r?next=https://a.example/b#c"), "/r");
        assert_eq!(target_path("/a/http://b/c"), "/a/http://b/c");
        // absolute-form only with a scheme at the very start
        assert_eq!(target_path("https://api.example/v1/x?u=http://i/j"), "/v1/x");
        assert_eq!(target_path("1http://h/x"), "1http://h/x");
    }

    #[test]
    fn host_and_port_split() {
        assert_eq!(split_host_port("a.example:8080"), (Some("a.example"), Some(8080)));
        assert_eq!(split_host_port("[::1]:80"), (Some("[::1]"), Some(80)));
        assert_eq!(split_host_port("a.example"), (Some("a.example"), None));
    }
}
