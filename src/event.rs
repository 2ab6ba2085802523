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
use crate::util::{Cursor, trim_fast};

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
                self.http_line(meta, tx, auth.as_ref(), endpoint.as_deref(), None, out);
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
        auth: &crate::redact::Auth,
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
    /// Written through a [`Cursor`] (the buffer's length and room kept in registers), each key
    /// with the punctuation around it as one constant.
    fn http_line(
        &self,
        meta: &FlowMeta,
        tx: &Transaction,
        auth: Option<&crate::redact::Auth>,
        endpoint: Option<&str>,
        url: Option<&str>,
        out: &mut Vec<u8>,
    ) {
        let q = tx.request.as_ref();
        let r = tx.response.as_ref();
        // room for the keys, numbers and timestamps, and the usual values, up front (a value
        // that needs more makes it as it is written)
        let mut w = Cursor::new(out, 1024 + q.map_or(0, |m| m.uri.len() * 2));
        let w = &mut w;
        w.put_ts(b"{\"timestamp\":\"", tx.start());
        flow_head(w, meta, &self.host);

        // http: EVE's fields
        let mut some = false;
        let (hostname, http_port) = q
            .and_then(|m| m.header("host"))
            .map(split_host_port)
            .unwrap_or((None, None));
        if let Some(h) = hostname {
            w.key(&mut some, b",\"hostname\":\"");
            w.json_body_then(h, b"\"");
        }
        if let Some(p) = http_port {
            w.key(&mut some, b",\"http_port\":");
            w.u64(p.into());
        }
        if let Some(m) = q {
            w.key(&mut some, b",\"url\":\"");
            match url {
                Some(u) => w.json_body(u),
                None => w.json_body(&self.redactor.url(&m.uri)),
            }
            w.byte(b'"');
        }
        if let Some(ua) = q.and_then(|m| m.header("user-agent")) {
            w.key(&mut some, b",\"http_user_agent\":\"");
            w.json_body_then(ua, b"\"");
        }
        if let Some(c) = r.and_then(|m| m.header("content-type")) {
            w.key(&mut some, b",\"http_content_type\":\"");
            w.json_body_then(trim_fast(crate::util::before_semicolon(c)), b"\"");
        }
        if let Some(v) = q.and_then(|m| m.header("referer")) {
            w.key(&mut some, b",\"http_refer\":\"");
            w.json_body_then(v, b"\"");
        }
        // every X-Forwarded-For line, in order, as one list (a proxy appends its own), each
        // escaped in place: escaping is byte by byte and `, ` needs none, so this is the
        // escaped text of the joined list
        // (most requests have none: one quick lookup before walking every line)
        if let Some(m) = q.filter(|m| m.header("x-forwarded-for").is_some()) {
            let mut lines = m.header_values("x-forwarded-for");
            if let Some(one) = lines.next() {
                w.key(&mut some, b",\"xff\":\"");
                w.json_body(one);
                for l in lines {
                    w.put(b", ");
                    w.json_body(l);
                }
                w.byte(b'"');
            }
        }
        if let Some(m) = q {
            w.key(&mut some, b",\"http_method\":\"");
            w.json_body_then(&m.method, b"\"");
        }
        if let Some(v) = r.and_then(|m| m.header("location")) {
            w.key(&mut some, b",\"redirect\":\"");
            w.json_body_then(v, b"\"");
        }
        if let Some(m) = q.or(r) {
            w.key(&mut some, b",\"protocol\":\"");
            w.put_var(m.protocol().as_bytes());
            w.byte(b'"');
        }
        if let Some(m) = r {
            w.key(&mut some, b",\"status\":");
            w.u64(m.status.into());
        }
        // Suricata writes 0 for a request without a response
        w.key(&mut some, b",\"length\":");
        w.u64(r.map_or(0, |m| m.body_len));
        if self.log_headers {
            for (name, m) in [
                (&b",\"request_headers\":["[..], q),
                (&b",\"response_headers\":["[..], r),
            ] {
                let Some(m) = m.filter(|m| !m.headers.is_empty()) else {
                    continue;
                };
                // (after `length`: never the object's first key)
                w.put_var(name);
                for (i, (n, v)) in m.headers.iter().enumerate() {
                    if i > 0 {
                        w.byte(b',');
                    }
                    w.put(b"{\"name\":");
                    w.json_str(n);
                    w.put(b",\"value\":");
                    w.json_str(&self.redactor.header(n, v));
                    w.byte(b'}');
                }
                w.byte(b']');
            }
        }

        // api: apitap's own
        w.put(b"},\"api\":{");
        let mut some = false;
        if let Some(m) = q {
            w.key(&mut some, b",\"path\":\"");
            w.json_body_then(target_path(&m.uri), b"\"");
        }
        if let Some(e) = endpoint {
            w.key(&mut some, b",\"endpoint\":\"");
            w.json_body_then(e, b"\"");
        }
        if let Some(m) = q {
            w.key(&mut some, b",\"request_body_bytes\":");
            w.u64(m.body_len);
        }
        if let Some(m) = r {
            w.key(&mut some, b",\"response_body_bytes\":");
            w.u64(m.body_len);
        }
        if let Some(l) = tx.latency_us() {
            w.key(&mut some, b",\"latency_us\":");
            w.u64(l);
        }
        w.key(&mut some, b",\"auth\":{\"scheme\":\"");
        match auth {
            Some(a) => {
                w.json_body(a.scheme);
                if let Some(p) = &a.principal {
                    w.put(b"\",\"principal\":\"");
                    w.json_body(p);
                }
            }
            None => w.put(b"none"),
        }
        // (after `auth`, every key has its comma)
        w.put(b"\"},\"gap\":");
        w.bool(tx.gap);
        w.put(b",\"truncated\":");
        w.bool(tx.truncated);
        w.put(b",\"times\":{");
        let mut some = false;
        if let Some(m) = q {
            w.put_ts(b"\"request_start\":\"", m.start);
            w.put_ts(b"\",\"request_end\":\"", m.end);
            w.byte(b'"');
            some = true;
        }
        if let Some(m) = r {
            w.key(&mut some, b",\"response_start\":\"");
            w.ts(m.start);
            w.put_ts(b"\",\"response_end\":\"", m.end);
            w.byte(b'"');
        }
        w.byte(b'}');
        // SPEC §4b: a gRPC call's service, method, status and message counts
        if let Some(g) = tx.grpc.as_deref() {
            w.put(b",\"grpc\":{\"service\":");
            w.json_str(&g.service);
            w.put(b",\"method\":");
            w.json_str(&g.method);
            if let Some(st) = g.status {
                w.put_u64(b",\"status\":", st.into());
            }
            if let Some(m) = &g.message {
                w.put(b",\"message\":");
                w.json_str(m);
            }
            w.put_u64(b",\"request_messages\":", g.request_messages);
            w.put_u64(b",\"response_messages\":", g.response_messages);
            w.put_u64(b",\"request_message_bytes\":", g.request_message_bytes);
            w.put_u64(b",\"response_message_bytes\":", g.response_message_bytes);
            w.put(b",\"compressed\":");
            w.bool(g.compressed);
            w.byte(b'}');
        }
        w.put(b"}}\n");
    }
}

/// The part of an `http` line its flow and the sensor fix, from the flow id to the opening of
/// `http` (`","flow_id":...,"host":"...","http":{`). (Written into a buffer of its own, never
/// the line's cursor: a cursor handed to a call stays in memory for the rest of the line.)
fn write_flow_head(w: &mut Cursor, meta: &FlowMeta, host: &str) {
    w.put_u64(b"\",\"flow_id\":", meta.flow_id);
    w.put(b",\"community_id\":\"");
    w.json_body(&meta.community_id);
    w.put(b"\",\"event_type\":\"http\",\"src_ip\":\"");
    w.ip(meta.src);
    w.put_u64(b"\",\"src_port\":", meta.sport.into());
    w.put(b",\"dest_ip\":\"");
    w.ip(meta.dst);
    w.put_u64(b"\",\"dest_port\":", meta.dport.into());
    w.put(b",\"proto\":\"TCP\",\"host\":\"");
    w.json_body(host);
    w.put(b"\",\"http\":{");
}

/// A flow's [`write_flow_head`] text, kept for its next transactions, with everything the
/// text was made from (compared whole on each use, so the text is the one they would make).
struct FlowHead {
    flow_id: u64,
    community_id: std::sync::Arc<str>,
    src: IpAddr,
    sport: u16,
    dst: IpAddr,
    dport: u16,
    host: Box<str>,
    text: Vec<u8>,
}

impl FlowHead {
    #[inline(always)]
    fn is_for(&self, meta: &FlowMeta, host: &str) -> bool {
        self.flow_id == meta.flow_id
            && self.sport == meta.sport
            && self.dport == meta.dport
            && self.src == meta.src
            && self.dst == meta.dst
            && (std::sync::Arc::ptr_eq(&self.community_id, &meta.community_id)
                || *self.community_id == *meta.community_id)
            && *self.host == *host
    }
}

/// Slots of the per-thread cache of flow heads, in pairs (two-way by flow id, the older of a
/// pair replaced): a keep-alive connection's calls come interleaved with other connections',
/// so the last flow alone would seldom be the next one. ~250 bytes a slot in use.
const FLOW_HEADS: usize = 512;

/// Heads longer than this are written, not kept (a very long sensor name).
const FLOW_HEAD_MAX: usize = 512;

/// The cache: its slots, and per pair which slot was used less recently.
type FlowHeads = (Vec<Option<FlowHead>>, Vec<u8>);

thread_local! {
    static HEADS: std::cell::RefCell<FlowHeads> = const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
}

/// The pair of slots a flow's head may sit in.
#[inline(always)]
fn flow_head_pair(flow_id: u64) -> usize {
    (flow_id.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32) as usize % (FLOW_HEADS / 2)
}

/// [`write_flow_head`] from the per-thread cache when this flow's last line made it (the
/// flow id, addresses, ports, community id and sensor name written once per connection
/// instead of once per call). Per thread, so the workers never contend; bounded.
#[inline(always)]
fn flow_head(w: &mut Cursor, meta: &FlowMeta, host: &str) {
    let pair = flow_head_pair(meta.flow_id);
    HEADS.with(|c| {
        // (a writer never runs inside another on one thread; `try_` keeps that from being
        // a panic if it ever did)
        let Ok(mut c) = c.try_borrow_mut() else {
            let mut text = Vec::new();
            write_flow_head(&mut Cursor::new(&mut text, 0), meta, host);
            return w.put_var(&text);
        };
        let (slots, older) = &mut *c;
        if slots.is_empty() {
            slots.resize_with(FLOW_HEADS, || None);
            older.resize(FLOW_HEADS / 2, 0);
        }
        for k in 0..2 {
            if let Some(h) = &slots[2 * pair + k]
                && h.is_for(meta, host)
            {
                w.put_var(&h.text);
                older[pair] = 1 - k as u8;
                return;
            }
        }
        // an empty slot of the pair, else its older one
        let k = (0..2)
            .find(|&k| slots[2 * pair + k].is_none())
            .unwrap_or(older[pair] as usize & 1);
        let slot = &mut slots[2 * pair + k];
        let mut text = match slot.take() {
            Some(old) => old.text,
            None => Vec::with_capacity(192),
        };
        text.clear();
        write_flow_head(&mut Cursor::new(&mut text, 0), meta, host);
        w.put_var(&text);
        if text.len() <= FLOW_HEAD_MAX {
            *slot = Some(FlowHead {
                flow_id: meta.flow_id,
                community_id: meta.community_id.clone(),
                src: meta.src,
                sport: meta.sport,
                dst: meta.dst,
                dport: meta.dport,
                host: host.into(),
                text,
            });
            older[pair] = 1 - k as u8;
        }
    })
}

pub use crate::util::{fmt_ts, split_host_port, target_path};

/// The keys of one JSON object written by hand. A key comes as its whole text with the comma
/// before it (`,"key":`, one copy), the comma left off for the object's first key.
#[cfg(test)]
#[derive(Default)]
struct Keys {
    some: bool,
}

#[cfg(test)]
impl Keys {
    #[inline]
    fn key(&mut self, out: &mut Vec<u8>, k: &[u8]) {
        let k = if self.some { k } else { k.get(1..).unwrap_or_default() };
        self.some = true;
        out.extend_from_slice(k);
    }
}

/// The old `http` writer, kept for the equivalence tests.
#[cfg(test)]
mod reference {
    use super::*;

    /// The `http` line as it was written before the cursor (straight `Vec` pushes, the
    /// comma of each first key left off by [`Keys`]): the reference the fast writer is held to.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn http_line_reference(
        f: &Formatter,
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
        push_json_body(out, &f.host);

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
                None => jq(out, &f.redactor.url(&m.uri)),
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
        if f.log_headers {
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
                    js(out, &f.redactor.header(n, v));
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

    /// [`Formatter::write_endpoint`] of an endpoint that just became real, written straight
    /// from it (no `Value` built): the same line byte for byte.
    pub fn write_fresh_endpoint(&self, ts: Ts, e: &crate::catalog::Fresh<'_>, reason: &str, out: &mut Vec<u8>) {
        if !self.types.has("endpoint") {
            return;
        }
        // (keys in name order, as the `Value` map of `write_endpoint` has them)
        out.extend_from_slice(b"{\"endpoint\":");
        e.with_reason(reason).write(out);
        out.extend_from_slice(b",\"event_type\":\"endpoint\",\"host\":");
        crate::util::push_json_str(out, &self.host);
        out.extend_from_slice(b",\"timestamp\":\"");
        crate::util::push_ts(out, ts);
        out.extend_from_slice(b"\"}\n");
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
            f.write_http(&meta, &tx, &auth, Some(&ep), None, &mut out);
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

    /// A small deterministic generator (no crate needed for a few thousand cases).
    fn lcg(x: &mut u64) -> u64 {
        *x = x
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        *x >> 33
    }

    /// Values for every string field: hostile bytes, non-ASCII, whitespace to trim, colons
    /// and brackets for the host split, query secrets for the URL redaction, and long ones.
    pub(super) fn field_values() -> Vec<String> {
        let mut v: Vec<String> = [
            "",
            "a",
            "\"",
            "\\",
            "a\"b\\c\u{1}\u{1f}\n\r\t",
            "é€😀\u{2028}\u{7f}",
            "0123456789abcdefg\"",
            "ab\u{0}",
            " padded\t",
            "\u{a0}nbsp\u{85}",
            "\u{3000}",
            "api.example:8080",
            "[::1]:443",
            "[fe80::1]",
            "h:x",
            "a:b:c",
            ":",
            "/p?token=s3cr3t&x=1",
            "/p?a=1&api_key=&password=hunter2",
            "http://user:pw@h.example/p?key=k#f",
            "application/json; charset=utf-8",
            "text/plain ;x",
            "GET",
            "/",
            "*",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        for n in [15, 16, 17, 31, 32, 33, 64, 100, 1000, 5000] {
            v.push("x".repeat(n));
            v.push(format!("{}\u{1}", "é".repeat(n / 2)));
        }
        v
    }

    /// One transaction from the generator: each part present or absent, each value picked.
    pub(super) fn crafted(x: &mut u64, vals: &[String]) -> (FlowMeta, Transaction, Option<crate::redact::Auth>, bool) {
        use crate::http::Message;
        use std::sync::Arc;
        let pick = |x: &mut u64| vals[lcg(x) as usize % vals.len()].clone();
        let times = [
            0u64,
            1,
            999,
            1_700_000_000_123_456_789,
            1_700_000_000_123_456_000,
            1_704_067_199_999_999_999,
            u64::MAX,
        ];
        let t = |x: &mut u64| times[lcg(x) as usize % times.len()].wrapping_add(lcg(x) % 3 * 1000);
        let headers = |x: &mut u64, names: &[&str]| -> crate::http::Headers {
            let mut h = Vec::new();
            for n in names {
                // absent, once, or (X-Forwarded-For especially) several times
                for _ in 0..lcg(x) % 4 {
                    let name = if lcg(x) % 2 == 0 {
                        n.to_string()
                    } else {
                        n.to_uppercase()
                    };
                    h.push((name, pick(x)));
                }
            }
            h.into()
        };
        let q = (lcg(x) % 5 != 0).then(|| Message {
            method: pick(x),
            uri: pick(x),
            headers: headers(
                x,
                &[
                    "host",
                    "user-agent",
                    "referer",
                    "x-forwarded-for",
                    "authorization",
                    "cookie",
                    "x-api-key",
                ],
            ),
            body_len: lcg(x) % 100_000,
            start: t(x),
            end: t(x),
            minor: (lcg(x) % 2) as u8,
            http09: lcg(x) % 7 == 0,
            h2: lcg(x) % 7 == 0,
            ..Default::default()
        });
        let r = (lcg(x) % 4 != 0).then(|| Message {
            status: [0u16, 9, 10, 99, 100, 200, 404, 999, 65535][lcg(x) as usize % 9],
            headers: headers(x, &["content-type", "location", "set-cookie"]),
            body_len: [0, 1, 9, 10, 111, u64::MAX][lcg(x) as usize % 6],
            start: t(x),
            end: t(x),
            minor: (lcg(x) % 2) as u8,
            ..Default::default()
        });
        let mut tx = Transaction::new(q, r, lcg(x) % 5 == 0);
        tx.truncated ^= lcg(x) % 6 == 0;
        if lcg(x) % 5 == 0 {
            tx.grpc = Some(Box::new(crate::http2::grpc::Grpc {
                service: pick(x),
                method: pick(x),
                status: (lcg(x) % 2 == 0).then(|| lcg(x) as u32),
                message: (lcg(x) % 2 == 0).then(|| pick(x)),
                request_messages: lcg(x),
                response_messages: lcg(x) % 3,
                request_message_bytes: lcg(x) << 20,
                response_message_bytes: 0,
                compressed: lcg(x) % 2 == 0,
            }));
        }
        let ips = [
            "0.0.0.0",
            "10.0.0.1",
            "192.168.100.255",
            "255.255.255.255",
            "::1",
            "fe80::1:2",
            "::ffff:1.2.3.4",
        ];
        let ip = |x: &mut u64| ips[lcg(x) as usize % ips.len()].parse().unwrap();
        let meta = FlowMeta {
            flow_id: [0, 9, 142_925_496_641_790, u64::MAX][lcg(x) as usize % 4],
            community_id: Arc::from(pick(x)),
            src: ip(x),
            sport: [0u16, 80, 56949, 65535][lcg(x) as usize % 4],
            dst: ip(x),
            dport: [0u16, 443, 8080][lcg(x) as usize % 3],
        };
        let auth = match lcg(x) % 3 {
            0 => None,
            1 => Some(crate::redact::Auth {
                scheme: "none",
                principal: None,
            }),
            _ => Some(crate::redact::Auth {
                scheme: "bearer",
                principal: Some(pick(x)),
            }),
        };
        (meta, tx, auth, lcg(x) % 2 == 0)
    }

    #[test]
    fn cursor_written_http_line_is_the_old_line_byte_for_byte_on_crafted_and_hostile_transactions() {
        let vals = field_values();
        let mut x = 11u64;
        for case in 0..6000 {
            let (meta, tx, auth, log_headers) = crafted(&mut x, &vals);
            let f = Formatter {
                host: vals[lcg(&mut x) as usize % vals.len()].clone(),
                redactor: Redactor::new(b"k"),
                log_headers,
                types: EventTypes::all(),
            };
            let endpoint = (lcg(&mut x) % 3 != 0).then(|| vals[lcg(&mut x) as usize % vals.len()].clone());
            let url = (lcg(&mut x) % 2 == 0).then(|| vals[lcg(&mut x) as usize % vals.len()].clone());
            // after other lines, in buffers of every state: empty, nearly full, roomy
            let before = b"{\"earlier\":1}\n".repeat(lcg(&mut x) as usize % 3);
            let mut want = before.clone();
            reference::http_line_reference(
                &f,
                &meta,
                &tx,
                auth.clone(),
                endpoint.as_deref(),
                url.as_deref(),
                &mut want,
            );
            for cap in [0, before.len(), want.len() - 1, want.len(), 1 << 16] {
                let mut got = Vec::with_capacity(cap);
                got.extend_from_slice(&before);
                f.http_line(&meta, &tx, auth.as_ref(), endpoint.as_deref(), url.as_deref(), &mut got);
                assert_eq!(
                    String::from_utf8_lossy(&got),
                    String::from_utf8_lossy(&want),
                    "case {case} cap {cap}"
                );
                assert_eq!(got, want, "case {case} cap {cap}");
            }
            // and the line is JSON
            let line = &want[before.len()..];
            serde_json::from_slice::<serde_json::Value>(line)
                .unwrap_or_else(|e| panic!("case {case}: {e}: {}", String::from_utf8_lossy(line)));
        }
    }

    #[test]
    fn trim_fast_is_trim() {
        for s in field_values().iter().map(String::as_str).chain([
            " ", "\t", "a ", " a", "\u{85}a", "a\u{85}", "\u{a0}", "\u{1c}a", "a\u{1f}", "\u{7f}", "ab", "a",
        ]) {
            assert_eq!(trim_fast(s), s.trim(), "{s:?}");
        }
    }
}

#[cfg(test)]
mod flow_head_tests {
    use super::*;
    use std::sync::Arc;

    fn head_fresh(meta: &FlowMeta, host: &str) -> Vec<u8> {
        let mut v = Vec::new();
        write_flow_head(&mut Cursor::new(&mut v, 0), meta, host);
        v
    }

    fn head_cached(meta: &FlowMeta, host: &str) -> Vec<u8> {
        let mut v = b"x".to_vec();
        flow_head(&mut Cursor::new(&mut v, 0), meta, host);
        v.remove(0);
        v
    }

    #[test]
    fn cached_flow_heads_are_the_written_ones_whatever_changes_between_calls() {
        // three flow ids that share a pair of slots (one of them pushes another out)
        let a = 1_000u64;
        let b = (a + 1..).find(|&i| flow_head_pair(i) == flow_head_pair(a)).unwrap();
        let c = (b + 1..).find(|&i| flow_head_pair(i) == flow_head_pair(a)).unwrap();
        let base = FlowMeta {
            flow_id: a,
            community_id: Arc::from("1:abc="),
            src: "10.0.0.1".parse().unwrap(),
            sport: 40000,
            dst: "10.0.0.2".parse().unwrap(),
            dport: 80,
        };
        let mut variants = vec![base.clone()];
        for id in [b, c] {
            let mut m = base.clone();
            m.flow_id = id;
            variants.push(m);
        }
        let mut m = base.clone();
        m.community_id = Arc::from("1:abc="); // same text, another allocation
        variants.push(m);
        let mut m = base.clone();
        m.community_id = Arc::from("1:abd=");
        variants.push(m);
        let mut m = base.clone();
        m.community_id = Arc::from("1:\"\\\u{1}é");
        variants.push(m);
        let mut m = base.clone();
        m.src = "10.0.0.3".parse().unwrap();
        variants.push(m);
        let mut m = base.clone();
        m.dst = "::1".parse().unwrap();
        variants.push(m);
        let mut m = base.clone();
        m.src = "fe80::1:2".parse().unwrap();
        variants.push(m);
        let mut m = base.clone();
        m.sport = 40001;
        variants.push(m);
        let mut m = base.clone();
        m.dport = 8080;
        variants.push(m);
        let long_host = "s".repeat(FLOW_HEAD_MAX + 1);
        let hosts = ["vm", "vn", "", "h\"\\\n", "é", long_host.as_str()];
        // every variant after every other, with every host, twice over
        for _ in 0..2 {
            for x in &variants {
                for y in &variants {
                    for hx in hosts {
                        for hy in hosts {
                            for (m, h) in [(x, hx), (y, hy), (x, hx), (x, hy), (y, hx)] {
                                assert_eq!(
                                    String::from_utf8_lossy(&head_cached(m, h)),
                                    String::from_utf8_lossy(&head_fresh(m, h)),
                                    "{m:?} {h:?}"
                                );
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn a_line_made_from_a_cached_flow_head_is_the_old_line() {
        let f = Formatter {
            host: "vm".into(),
            redactor: Redactor::new(b"k"),
            log_headers: false,
            types: EventTypes::all(),
        };
        let vals = tests::field_values();
        let mut x = 5u64;
        let mut metas = Vec::new();
        for _ in 0..40 {
            let (meta, ..) = tests::crafted(&mut x, &vals);
            metas.push(meta);
        }
        for round in 0..3000 {
            let (_, tx, auth, _) = tests::crafted(&mut x, &vals);
            // flows come back, as a keep-alive connection's calls do
            let meta = &metas[round * 7 % metas.len()];
            let mut want = Vec::new();
            reference::http_line_reference(&f, meta, &tx, auth.clone(), Some("GET /x"), None, &mut want);
            let mut got = Vec::new();
            f.http_line(meta, &tx, auth.as_ref(), Some("GET /x"), None, &mut got);
            assert_eq!(
                String::from_utf8_lossy(&got),
                String::from_utf8_lossy(&want),
                "round {round}"
            );
        }
    }

    #[test]
    fn fresh_endpoint_line_is_the_value_line() {
        use crate::http::Message;
        let mut c = crate::catalog::Catalog::new(Default::default());
        let none = crate::redact::Auth {
            scheme: "none",
            principal: None,
        };
        let meta = FlowMeta {
            flow_id: 7,
            community_id: Arc::from("1:x"),
            src: "10.0.0.200".parse().unwrap(),
            sport: 40000,
            dst: "192.168.1.9".parse().unwrap(),
            dport: 8080,
        };
        let mut lines = 0;
        for (i, path) in ["/a/1", "/b\"q", "/caf\u{e9}/x?y=1", "/"].iter().enumerate() {
            let q = Message {
                method: "GET".into(),
                uri: (*path).into(),
                headers: vec![("Host".into(), "h.example".into())].into(),
                start: 1_700_000_000_123_456_789 + i as u64,
                ..Default::default()
            };
            let r = Message {
                status: 200,
                headers: vec![("Content-Type".into(), "application/json".into())].into(),
                body: b"{\"a\":1}".to_vec(),
                body_len: 7,
                ..Default::default()
            };
            let tx = Transaction::new(Some(q), Some(r), false);
            let ep = crate::catalog::endpoint_of(&tx, &meta).expect("endpoint");
            let Some(fresh) = c.observe_at(ep.parts(), &tx, &meta, &none, &Default::default()) else {
                continue;
            };
            for host in ["vm", "s\"e\\n"] {
                let f = Formatter {
                    host: host.into(),
                    redactor: Redactor::new(b"k"),
                    log_headers: false,
                    types: EventTypes::all(),
                };
                let (mut want, mut got) = (Vec::new(), Vec::new());
                f.write_endpoint(tx.start(), fresh.json(), "first_seen", &mut want);
                f.write_fresh_endpoint(tx.start(), &fresh, "first_seen", &mut got);
                assert_eq!(String::from_utf8_lossy(&got), String::from_utf8_lossy(&want));
                lines += 1;
            }
        }
        assert_eq!(lines, 8);
    }
}
