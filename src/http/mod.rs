//! HTTP/1.x over a reassembled TCP flow.
//!
//! [`half::Half`] parses one direction into messages (httparse heads, RFC 9112 body framing,
//! bounded body inspection); [`conn::Conn`] pairs requests with responses in order and hands
//! out finished [`Transaction`]s. Everything here is fed by [`crate::reassembly::Chunk`]s and
//! keeps to documented caps: a head longer than `max_head` or a pipeline deeper than
//! `max_pending` is an anomaly, never unbounded growth.

pub mod body;
pub mod conn;
pub mod half;

use crate::capture::Ts;

/// HTTP layer caps and switches.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Body bytes kept per message for inspection (after decoding), bytes. Default 64 KiB.
    pub body_depth: usize,
    /// Longest request or response head (start line + headers), bytes. Default 32 KiB.
    pub max_head: usize,
    /// Requests waiting for their responses per connection. Default 64.
    pub max_pending: usize,
    /// Decode gzip/deflate bodies for inspection (output capped at `body_depth`). Default on.
    pub decompress: bool,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            body_depth: 64 << 10,
            max_head: 32 << 10,
            max_pending: 64,
            decompress: true,
        }
    }
}

/// A parsed request or response. Owned: it leaves the capture thread inside a transaction.
#[derive(Debug, Clone, Default)]
pub struct Message {
    /// Request method (empty for a response).
    pub method: String,
    /// Request target as sent (empty for a response).
    pub uri: String,
    /// Response status (0 for a request).
    pub status: u16,
    pub reason: String,
    /// Minor version: `HTTP/1.<minor>`.
    pub minor: u8,
    pub headers: Vec<(String, String)>,
    /// Body bytes on the wire after removing chunked framing (still content-encoded).
    pub body_len: u64,
    /// The first `body_depth` bytes of the body, decoded if it was gzip/deflate.
    pub body: Vec<u8>,
    /// The body was decoded from gzip/deflate for inspection.
    pub body_decoded: bool,
    pub start: Ts,
    pub end: Ts,
    /// Part of the message was lost (a reassembly gap).
    pub gap: bool,
    /// The message ended before its framing said it would.
    pub truncated: bool,
}

impl Message {
    /// Decode a gzip/deflate body prefix in place (output capped at `cap` bytes). Returns
    /// false when the body claimed an encoding but did not decode.
    pub fn decode_body(&mut self, cap: usize) -> bool {
        if self.body_decoded || self.body.is_empty() {
            return true;
        }
        let Some(enc) = self.header("content-encoding") else {
            return true;
        };
        match body::decode(enc, &self.body, cap) {
            body::Decoded::Done(v) => {
                self.body = v;
                self.body_decoded = true;
                true
            }
            body::Decoded::Failed => false,
            body::Decoded::NotEncoded => true,
        }
    }

    /// First header with this name (ASCII case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn protocol(&self) -> &'static str {
        match self.minor {
            0 => "HTTP/1.0",
            _ => "HTTP/1.1",
        }
    }
}

/// One request and its response, either possibly missing (lost, or cut by the end of input).
#[derive(Debug, Clone, Default)]
pub struct Transaction {
    pub request: Option<Message>,
    pub response: Option<Message>,
    /// Some bytes of this transaction never reached the sensor (a message is missing or has a
    /// hole).
    pub gap: bool,
    /// A message ended before its framing said it would.
    pub truncated: bool,
}

impl Transaction {
    pub fn new(request: Option<Message>, response: Option<Message>, lost: bool) -> Self {
        let any = |f: fn(&Message) -> bool| request.as_ref().is_some_and(f) || response.as_ref().is_some_and(f);
        let gap = lost || request.is_none() || any(|m| m.gap);
        let truncated = any(|m| m.truncated);
        Transaction {
            request,
            response,
            gap,
            truncated,
        }
    }

    /// Decode both bodies for inspection (see [`Message::decode_body`]); false if one failed.
    pub fn decode_bodies(&mut self, cap: usize) -> bool {
        let a = self.request.as_mut().is_none_or(|m| m.decode_body(cap));
        let b = self.response.as_mut().is_none_or(|m| m.decode_body(cap));
        a && b
    }

    /// Request start, else response start.
    pub fn start(&self) -> Ts {
        self.request.as_ref().or(self.response.as_ref()).map_or(0, |m| m.start)
    }

    /// Wire latency: request end to response start, microseconds.
    pub fn latency_us(&self) -> Option<u64> {
        let (q, r) = (self.request.as_ref()?, self.response.as_ref()?);
        Some(r.start.saturating_sub(q.end) / 1000)
    }
}

/// HTTP-layer anomalies, as EVE `anomaly.event` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpAnomaly {
    InvalidRequest,
    InvalidResponse,
    HeadTooLong,
    TooManyHeaders,
    ContentLengthAndChunked,
    MultipleContentLength,
    InvalidContentLength,
    UnknownTransferEncoding,
    InvalidChunk,
    TooManyPipelined,
    ResponseWithoutRequest,
    BodyDecodeError,
    ObsFold,
    Gap,
}

impl HttpAnomaly {
    pub fn as_str(self) -> &'static str {
        match self {
            HttpAnomaly::InvalidRequest => "INVALID_REQUEST_LINE_OR_HEADER",
            HttpAnomaly::InvalidResponse => "INVALID_RESPONSE_LINE_OR_HEADER",
            HttpAnomaly::HeadTooLong => "HEADER_TOO_LONG",
            HttpAnomaly::TooManyHeaders => "TOO_MANY_HEADERS",
            HttpAnomaly::ContentLengthAndChunked => "REQUEST_SMUGGLING_CL_TE",
            HttpAnomaly::MultipleContentLength => "MULTIPLE_CONTENT_LENGTH",
            HttpAnomaly::InvalidContentLength => "INVALID_CONTENT_LENGTH",
            HttpAnomaly::UnknownTransferEncoding => "UNKNOWN_TRANSFER_ENCODING",
            HttpAnomaly::InvalidChunk => "INVALID_CHUNK",
            HttpAnomaly::TooManyPipelined => "TOO_MANY_PIPELINED_REQUESTS",
            HttpAnomaly::ResponseWithoutRequest => "UNSOLICITED_RESPONSE",
            HttpAnomaly::BodyDecodeError => "BODY_DECODE_ERROR",
            HttpAnomaly::ObsFold => "OBSOLETE_LINE_FOLDING",
            HttpAnomaly::Gap => "GAP_IN_MESSAGE",
        }
    }
}

/// Is a body of this content type worth keeping for inspection (parameters, credentials,
/// attack payloads, sensitive data)? Media, fonts and archives are counted, not kept.
/// No content type: kept (API clients often omit it).
pub fn worth_inspecting(content_type: Option<&str>) -> bool {
    let Some(ct) = content_type else { return true };
    let ct = ct.trim_start();
    const SKIP: &[&str] = &[
        "image/",
        "video/",
        "audio/",
        "font/",
        "application/octet-stream",
        "application/zip",
        "application/gzip",
        "application/x-gzip",
        "application/pdf",
        "application/wasm",
        "application/vnd.ms-fontobject",
        "application/x-tar",
        "application/x-7z",
        "application/javascript",
        "text/javascript",
        "text/css",
        "application/font",
    ];
    !SKIP
        .iter()
        // bytes, not str: a header value can hold a multi-byte character anywhere
        .any(|p| ct.len() >= p.len() && ct.as_bytes()[..p.len()].eq_ignore_ascii_case(p.as_bytes()))
}

/// Known request methods, for probing a stream and resynchronising after a gap.
pub(crate) const METHODS: &[&[u8]] = &[
    b"GET",
    b"POST",
    b"PUT",
    b"DELETE",
    b"HEAD",
    b"OPTIONS",
    b"PATCH",
    b"CONNECT",
    b"TRACE",
    b"PROPFIND",
    b"PROPPATCH",
    b"MKCOL",
    b"COPY",
    b"MOVE",
    b"LOCK",
    b"UNLOCK",
    b"REPORT",
    b"SEARCH",
    b"PURGE",
];

/// Does `d` start like a request line? A known method and a space, or any upper-case token
/// (`[A-Z][A-Z_-]{2,19}`, extension methods such as `RPC_IN_DATA`) followed by a space and a
/// target that starts like one (`/`, `*`, `http`). `None` when too short to tell.
pub(crate) fn starts_request(d: &[u8]) -> Option<bool> {
    let mut short = false;
    for m in METHODS {
        let n = m.len();
        if d.len() > n {
            if &d[..n] == *m && d[n] == b' ' {
                return Some(true);
            }
        } else if m.starts_with(d) {
            short = true;
        }
    }
    let tok = d
        .iter()
        .take(21)
        .take_while(|b| b.is_ascii_uppercase() || **b == b'_' || **b == b'-')
        .count();
    if tok == d.len() && tok <= 20 {
        return if d.first().is_none_or(|b| b.is_ascii_uppercase()) {
            None
        } else {
            Some(false)
        };
    }
    if short {
        return None;
    }
    if !(3..=20).contains(&tok) || !d[0].is_ascii_uppercase() || d[tok] != b' ' {
        return Some(false);
    }
    match d.get(tok + 1) {
        None => None,
        Some(b'/') | Some(b'*') | Some(b'h') => Some(true),
        Some(_) => Some(false),
    }
}

/// Does `d` start like a status line (`HTTP/1.`)? `None` when too short to tell.
pub(crate) fn starts_response(d: &[u8]) -> Option<bool> {
    const P: &[u8] = b"HTTP/1.";
    if d.len() >= P.len() {
        Some(&d[..P.len()] == P)
    } else if P.starts_with(d) {
        None
    } else {
        Some(false)
    }
}

#[cfg(test)]
mod tests {

    /// Found by the `analysis` fuzz target: a Content-Type with a multi-byte character inside
    /// the first bytes made the prefix comparison slice a `str` mid-character (a panic on the
    /// capture thread from one header).
    #[test]
    fn content_types_with_multibyte_characters() {
        assert!(worth_inspecting(Some("appl\u{fffd}cation/json")));
        assert!(worth_inspecting(Some("\u{fffd}\u{fffd}\u{fffd}")));
        assert!(!worth_inspecting(Some("image/png")));
    }

    use super::*;

    #[test]
    fn request_and_status_line_probes() {
        assert_eq!(starts_request(b"GET / HTTP/1.1"), Some(true));
        assert_eq!(starts_request(b"RPC_IN_DATA /rpc/rpcproxy.dll HTTP/1.1"), Some(true));
        assert_eq!(starts_request(b"BREW http://pot/ HTTP/1.1"), Some(true));
        assert_eq!(starts_request(b"GE"), None);
        assert_eq!(starts_request(b"SSH-2.0-OpenSSH_9.2"), Some(false));
        assert_eq!(starts_request(b"\x16\x03\x01\x02\x00"), Some(false));
        assert_eq!(starts_request(b"EHLO mail.example"), Some(false));
        assert_eq!(starts_request(b"HTTP/1.1 200 OK"), Some(false));
        assert_eq!(starts_response(b"HTTP/1.1 200 OK"), Some(true));
        assert_eq!(starts_response(b"HTT"), None);
        assert_eq!(starts_response(b"220 smtp ready"), Some(false));
    }
}
