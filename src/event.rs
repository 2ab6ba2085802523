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
use crate::http::Transaction;
use crate::redact::Redactor;

/// An event on its way to the sink.
#[derive(Debug)]
pub enum Event {
    Http {
        meta: FlowMeta,
        /// Boxed once by the capture thread's HTTP layer (see [`crate::flow::FlowOutput`]).
        tx: Box<Transaction>,
        /// A 2xx without credentials on an endpoint that requires them (set by the capture
        /// thread's [`crate::engine::AuthTracker`]).
        auth_bypass: bool,
        /// (host, method, template) when the capture thread already worked it out.
        endpoint: Option<Box<crate::catalog::EndpointId>>,
    },
    Anomaly(AnomalyEvent),
    /// A TLS handshake (EVE `tls`).
    Tls(Box<TlsEvent>),
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

/// One connection's TLS handshake, as the flow layer saw it.
#[derive(Debug)]
pub struct TlsEvent {
    pub ts: Ts,
    pub meta: FlowMeta,
    pub tls: crate::tls::TlsInfo,
}

impl Event {
    /// The entity this event belongs to (client address), for sharding.
    pub fn entity(&self) -> Option<IpAddr> {
        match self {
            Event::Http { meta, .. } => Some(meta.src),
            Event::Anomaly(a) => a.meta.as_ref().map(|m| m.src),
            Event::Tls(t) => Some(t.meta.src),
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
    pub const NAMES: [&'static str; 7] = ["http", "alert", "anomaly", "endpoint", "entity", "stats", "tls"];

    pub fn all() -> Self {
        EventTypes(0x7f)
    }

    /// From names; an unknown name is an error naming it.
    pub fn parse<S: AsRef<str>>(names: &[S]) -> Result<Self, String> {
        let mut m = 0;
        for n in names {
            let n = n.as_ref();
            let i = Self::NAMES.iter().position(|x| *x == n).ok_or_else(|| {
                // `alerts` -> did you mean `alert`?
                let near = Self::NAMES
                    .iter()
                    .find(|x| n.trim_end_matches('s').eq_ignore_ascii_case(x) || n.eq_ignore_ascii_case(x));
                let hint = near.map(|x| format!(" (did you mean {x:?}?)")).unwrap_or_default();
                format!("{n:?} is not one of {}{hint}", Self::NAMES.join(", "))
            })?;
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
struct TlsOut<'a> {
    #[serde(flatten)]
    common: Common<'a>,
    tls: &'a crate::tls::TlsInfo,
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
            src_ip: meta.map(|m| crate::util::ip_string(m.src)),
            src_port: meta.map(|m| m.sport),
            dest_ip: meta.map(|m| crate::util::ip_string(m.dst)),
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
            Event::Tls(_) => "tls",
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
                self.http_line(meta, tx, auth, endpoint.as_deref(), None, out);
                return;
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
            Event::Tls(t) => serde_json::to_writer(
                &mut *out,
                &TlsOut {
                    common: self.common(t.ts, "tls", Some(&t.meta)),
                    tls: &t.tls,
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

    /// An `http` line with the auth, endpoint and redacted URL the worker already worked out.
    pub fn write_http(
        &self,
        meta: &FlowMeta,
        tx: &Transaction,
        auth: crate::redact::Auth,
        endpoint: Option<&str>,
        url: Option<&str>,
        out: &mut Vec<u8>,
    ) {
        if !self.types.has("http") {
            return;
        }
        self.http_line(meta, tx, Some(auth), endpoint, url, out);
    }

    /// The `http` line, written field by field (the most frequent event: serde's generic
    /// machinery and the temporary strings cost more than the rest of formatting). Keys and
    /// their order are the contract (SPEC §5): absent values are left out, as before.
    fn http_line(
        &self,
        meta: &FlowMeta,
        tx: &Transaction,
        auth: Option<crate::redact::Auth>,
        endpoint: Option<&str>,
        url: Option<&str>,
        out: &mut Vec<u8>,
    ) {
        use crate::util::{push_ip, push_json_body, push_json_str as js, push_ts, push_u64};
        // a string value whose key literal ends with its opening quote
        let jq = |out: &mut Vec<u8>, s: &str| {
            push_json_body(out, s);
            out.push(b'"');
        };
        let q = tx.request.as_ref();
        let r = tx.response.as_ref();
        out.extend_from_slice(b"{\"timestamp\":\"");
        push_ts(out, tx.start());
        out.extend_from_slice(b"\",\"flow_id\":");
        push_u64(out, meta.flow_id);
        out.extend_from_slice(b",\"community_id\":\"");
        push_json_body(out, &meta.community_id);
        out.extend_from_slice(b"\",\"event_type\":\"http\",\"src_ip\":\"");
        push_ip(out, meta.src);
        out.extend_from_slice(b"\",\"src_port\":");
        push_u64(out, meta.sport.into());
        out.extend_from_slice(b",\"dest_ip\":\"");
        push_ip(out, meta.dst);
        out.extend_from_slice(b"\",\"dest_port\":");
        push_u64(out, meta.dport.into());
        out.extend_from_slice(b",\"proto\":\"TCP\",\"host\":\"");
        push_json_body(out, &self.host);

        // http: EVE's fields
        out.extend_from_slice(b"\",\"http\":{");
        let mut keys = Keys::default();
        let mut key = |out: &mut Vec<u8>, k: &[u8]| keys.key(out, k);
        let (hostname, http_port) = q
            .and_then(|m| m.header("host"))
            .map(split_host_port)
            .unwrap_or((None, None));
        if let Some(h) = hostname {
            key(out, b",\"hostname\":\"");
            jq(out, h);
        }
        if let Some(p) = http_port {
            key(out, b",\"http_port\":");
            push_u64(out, p.into());
        }
        if let Some(m) = q {
            key(out, b",\"url\":\"");
            match url {
                Some(u) => jq(out, u),
                None => jq(out, &self.redactor.url(&m.uri)),
            }
        }
        if let Some(ua) = q.and_then(|m| m.header("user-agent")) {
            key(out, b",\"http_user_agent\":\"");
            jq(out, ua);
        }
        if let Some(c) = r.and_then(|m| m.header("content-type")) {
            key(out, b",\"http_content_type\":\"");
            jq(out, crate::util::before_semicolon(c).trim());
        }
        if let Some(v) = q.and_then(|m| m.header("referer")) {
            key(out, b",\"http_refer\":\"");
            jq(out, v);
        }
        // every X-Forwarded-For line, in order, as one list (a proxy appends its own)
        // (most requests have none: one quick lookup before walking every line)
        if let Some(m) = q.filter(|m| m.header("x-forwarded-for").is_some()) {
            let mut lines = m.header_values("x-forwarded-for");
            if let Some(one) = lines.next() {
                key(out, b",\"xff\":");
                match lines.next() {
                    None => js(out, one),
                    Some(two) => {
                        let mut all = format!("{one}, {two}");
                        for l in lines {
                            all.push_str(", ");
                            all.push_str(l);
                        }
                        js(out, &all);
                    }
                }
            }
        }
        if let Some(m) = q {
            key(out, b",\"http_method\":\"");
            jq(out, &m.method);
        }
        if let Some(v) = r.and_then(|m| m.header("location")) {
            key(out, b",\"redirect\":\"");
            jq(out, v);
        }
        if let Some(m) = q.or(r) {
            key(out, b",\"protocol\":\"");
            jq(out, m.protocol());
        }
        if let Some(m) = r {
            key(out, b",\"status\":");
            push_u64(out, m.status.into());
        }
        // Suricata writes 0 for a request without a response
        key(out, b",\"length\":");
        push_u64(out, r.map_or(0, |m| m.body_len));
        if self.log_headers {
            for (name, m) in [
                (&b",\"request_headers\":["[..], q),
                (&b",\"response_headers\":["[..], r),
            ] {
                let Some(m) = m.filter(|m| !m.headers.is_empty()) else {
                    continue;
                };
                key(out, name);
                for (i, (n, v)) in m.headers.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    out.extend_from_slice(b"{\"name\":");
                    js(out, n);
                    out.extend_from_slice(b",\"value\":");
                    js(out, &self.redactor.header(n, v));
                    out.push(b'}');
                }
                out.push(b']');
            }
        }

        // api: apitap's own
        out.extend_from_slice(b"},\"api\":{");
        let mut keys = Keys::default();
        let mut key = |out: &mut Vec<u8>, k: &[u8]| keys.key(out, k);
        if let Some(m) = q {
            key(out, b",\"path\":\"");
            jq(out, target_path(&m.uri));
        }
        if let Some(e) = endpoint {
            key(out, b",\"endpoint\":\"");
            jq(out, e);
        }
        if let Some(m) = q {
            key(out, b",\"request_body_bytes\":");
            push_u64(out, m.body_len);
        }
        if let Some(m) = r {
            key(out, b",\"response_body_bytes\":");
            push_u64(out, m.body_len);
        }
        if let Some(l) = tx.latency_us() {
            key(out, b",\"latency_us\":");
            push_u64(out, l);
        }
        key(out, b",\"auth\":{\"scheme\":\"");
        match &auth {
            Some(a) => {
                push_json_body(out, a.scheme);
                if let Some(p) = &a.principal {
                    out.extend_from_slice(b"\",\"principal\":\"");
                    push_json_body(out, p);
                }
            }
            None => out.extend_from_slice(b"none"),
        }
        out.extend_from_slice(b"\"}");
        key(out, b",\"gap\":");
        out.extend_from_slice(if tx.gap { b"true" } else { b"false" });
        key(out, b",\"truncated\":");
        out.extend_from_slice(if tx.truncated { b"true" } else { b"false" });
        key(out, b",\"times\":{");
        let mut times = Keys::default();
        for (k, t) in [
            (&b",\"request_start\":\""[..], q.map(|m| m.start)),
            (b",\"request_end\":\"", q.map(|m| m.end)),
            (b",\"response_start\":\"", r.map(|m| m.start)),
            (b",\"response_end\":\"", r.map(|m| m.end)),
        ] {
            let Some(t) = t else { continue };
            times.key(out, k);
            push_ts(out, t);
            out.push(b'"');
        }
        out.push(b'}');
        // SPEC §4b: a gRPC call's service, method, status and message counts
        if let Some(g) = tx.grpc.as_deref() {
            out.extend_from_slice(b",\"grpc\":{\"service\":");
            js(out, &g.service);
            out.extend_from_slice(b",\"method\":");
            js(out, &g.method);
            if let Some(st) = g.status {
                out.extend_from_slice(b",\"status\":");
                push_u64(out, st.into());
            }
            if let Some(m) = &g.message {
                out.extend_from_slice(b",\"message\":");
                js(out, m);
            }
            for (k, v) in [
                ("request_messages", g.request_messages),
                ("response_messages", g.response_messages),
                ("request_message_bytes", g.request_message_bytes),
                ("response_message_bytes", g.response_message_bytes),
            ] {
                out.extend_from_slice(b",\"");
                out.extend_from_slice(k.as_bytes());
                out.extend_from_slice(b"\":");
                push_u64(out, v);
            }
            out.extend_from_slice(if g.compressed {
                b",\"compressed\":true}"
            } else {
                b",\"compressed\":false}"
            });
        }
        out.extend_from_slice(b"}}\n");
    }
}

pub use crate::util::{fmt_ts, split_host_port, target_path};

/// The keys of one JSON object written by hand. A key comes as its whole text with the comma
/// before it (`,"key":`, one copy), the comma left off for the object's first key.
#[derive(Default)]
struct Keys {
    some: bool,
}

impl Keys {
    #[inline]
    fn key(&mut self, out: &mut Vec<u8>, k: &[u8]) {
        let k = if self.some { k } else { k.get(1..).unwrap_or_default() };
        self.some = true;
        out.extend_from_slice(k);
    }
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
                "type": r.key.kind, "value": r.key.value, "reason": r.reason,
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

    #[test]
    fn keys_leave_the_comma_off_the_first_key_of_each_object_only() {
        let mut out = b"{".to_vec();
        let mut k = Keys::default();
        k.key(&mut out, b",\"a\":");
        out.push(b'1');
        k.key(&mut out, b",\"b\":{");
        let mut inner = Keys::default();
        inner.key(&mut out, b",\"c\":\"");
        out.extend_from_slice(b"x\"");
        inner.key(&mut out, b",\"d\":\"");
        out.extend_from_slice(b"y\"}}");
        assert_eq!(String::from_utf8(out).unwrap(), r#"{"a":1,"b":{"c":"x","d":"y"}}"#);
    }

    #[test]
    fn http_line_string_fields_round_trip_hostile_text_through_a_json_parser() {
        use crate::http::Message;
        use std::sync::Arc;
        // quotes, backslashes, control characters, non-ASCII, U+2028, odd lengths
        let nasty = [
            "",
            "a",
            "\"",
            "\\",
            "a\"b\\c\u{1}\u{1f}\n\r\t",
            "é€😀\u{2028}\u{7f}",
            "0123456789abcdefg\"",
            "ab\u{0}",
        ];
        for (i, n) in nasty.iter().enumerate() {
            let host = format!("h{n}.example");
            let ua = format!("ua/{n}");
            let q = Message {
                method: format!("GE{n}T"),
                uri: format!("/p{n}/x?a=1"),
                headers: vec![
                    ("Host".to_string(), host.clone()),
                    ("User-Agent".to_string(), ua.clone()),
                    ("Referer".to_string(), n.to_string()),
                ]
                .into(),
                start: 1_700_000_000_123_456_789 + i as u64,
                end: 1_700_000_001_000_000_000,
                minor: 1,
                ..Default::default()
            };
            let r = Message {
                status: 200,
                headers: vec![
                    ("Content-Type".to_string(), format!("app/{n}; charset=x")),
                    ("Location".to_string(), n.to_string()),
                ]
                .into(),
                body_len: 3,
                start: 1_700_000_002_000_000_000,
                end: 1_700_000_002_000_999_999,
                minor: 1,
                ..Default::default()
            };
            let meta = FlowMeta {
                flow_id: 7,
                community_id: Arc::from(format!("1:{n}")),
                src: "10.0.0.200".parse().unwrap(),
                sport: 40000,
                dst: "192.168.1.9".parse().unwrap(),
                dport: 8080,
            };
            let tx = Transaction::new(Some(q), Some(r), false);
            let f = Formatter {
                host: format!("sensor{n}"),
                redactor: Redactor::new(b"k"),
                log_headers: false,
                types: EventTypes::all(),
            };
            let auth = crate::redact::Auth {
                scheme: "bearer",
                principal: Some(format!("p{n}")),
            };
            let ep = format!("GET /e{n}");
            let mut out = Vec::new();
            f.write_http(&meta, &tx, auth, Some(&ep), None, &mut out);
            assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 1, "one line for {n:?}");
            let v: serde_json::Value = serde_json::from_slice(&out).unwrap_or_else(|e| panic!("{n:?}: {e}"));
            let (h, a) = (&v["http"], &v["api"]);
            let trimmed = format!("app/{n}");
            for (got, want) in [
                (&v["community_id"], format!("1:{n}")),
                (&v["host"], format!("sensor{n}")),
                (&v["src_ip"], "10.0.0.200".to_string()),
                (&v["dest_ip"], "192.168.1.9".to_string()),
                (&v["timestamp"], fmt_ts(1_700_000_000_123_456_789 + i as u64)),
                (&h["hostname"], host.clone()),
                (&h["url"], format!("/p{n}/x?a=1")),
                (&h["http_user_agent"], ua.clone()),
                (&h["http_content_type"], trimmed.trim().to_string()),
                (&h["http_method"], format!("GE{n}T")),
                (&h["protocol"], "HTTP/1.1".to_string()),
                (&a["path"], format!("/p{n}/x")),
                (&a["endpoint"], ep.clone()),
                (&a["auth"]["scheme"], "bearer".to_string()),
                (&a["auth"]["principal"], format!("p{n}")),
                (&a["times"]["response_end"], fmt_ts(1_700_000_002_000_999_999)),
            ] {
                assert_eq!(got.as_str(), Some(want.as_str()), "{n:?}: {v}");
            }
            // empty header values are still written (as before): the value or nothing
            for (got, key) in [(&h["http_refer"], "http_refer"), (&h["redirect"], "redirect")] {
                assert_eq!(got.as_str(), Some(*n), "{key} {n:?}");
            }
            assert_eq!(v["flow_id"], 7);
            assert_eq!(h["status"], 200);
            assert_eq!(h["length"], 3);
        }
    }
}
