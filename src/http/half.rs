//! One direction of an HTTP/1.x connection: a byte stream in, messages out.
//!
//! States: `Idle` (between messages, or holding a partial head in `buf`), `Body` (framed by
//! Content-Length, chunked or connection close), `Resync` (sync lost after a gap or a malformed
//! head: scanning for the next line that starts a message), `Tunnel` (after Upgrade/CONNECT) and
//! `Dead` (not HTTP). Heads are parsed by httparse straight from the segment when they fit in
//! it, else from `buf`, which never grows past `max_head`. Body bytes are counted, and the first
//! `body_depth` of them kept for inspection.

use std::mem::MaybeUninit;

use super::{HttpAnomaly, HttpConfig, Message, starts_request, starts_response};
use crate::capture::Ts;

/// Which kind of messages this direction carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Request,
    Response,
}

/// What the request a response answers tells about the response's framing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReqKind {
    Head,
    Connect,
    Other,
}

/// The connection's side of the conversation, as one direction's parser sees it.
pub trait Events {
    /// A direction whose role was unknown found its first message.
    fn role_found(&mut self, role: Role);
    /// A request head is complete (its body may follow).
    fn request_head(&mut self, msg: &Message, end_off: u64);
    /// A response head is complete: which request does it answer?
    fn response_head(&mut self, msg: &Message) -> ReqKind;
    /// A message is complete (or cut short and flagged).
    fn done(&mut self, role: Role, msg: Message, end_off: u64);
    /// Bytes between messages were lost: whole messages may be missing.
    fn lost(&mut self, role: Role, at_off: u64);
    fn anomaly(&mut self, a: HttpAnomaly);
    /// Upgrade (101) or CONNECT established: stop parsing both directions.
    fn tunnel(&mut self);
    /// The connection does not speak HTTP: stop parsing both directions.
    fn not_http(&mut self);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunked {
    Size,
    Data(u64),
    DataEnd,
    Trailers,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Length(u64),
    Chunked(Chunked),
    Close,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum St {
    Idle,
    Body(Framing),
    Resync,
    Tunnel,
    Dead,
}

/// Bytes without a message start, in both directions of a connection picked up mid-stream,
/// before it is declared not HTTP (a large body in flight can take a while to end).
const PROBE_LIMIT: u64 = 1 << 20;
const MAX_CHUNK_LINE: usize = 1024;
const MAX_TRAILERS: usize = 8 << 10;
const MAX_HEADERS: usize = 128;

pub struct Half {
    role: Option<Role>,
    st: St,
    buf: Vec<u8>,
    cur: Message,
    head_ts: Ts,
    /// Stream offset of the next byte fed (data and gaps).
    pos: u64,
    /// Resync may take position 0 of the next chunk as a line start.
    line_start: bool,
    trailer_bytes: usize,
    ever_synced: bool,
    /// Keep the current message's body for inspection (by its content type).
    inspect: bool,
}

impl Half {
    pub fn new(role: Option<Role>) -> Self {
        Half {
            role,
            st: if role.is_some() { St::Idle } else { St::Resync },
            buf: Vec::new(),
            cur: Message::default(),
            head_ts: 0,
            pos: 0,
            line_start: true,
            trailer_bytes: 0,
            ever_synced: false,
            inspect: true,
        }
    }

    /// This direction has shown `PROBE_LIMIT` bytes without a single HTTP message start.
    pub fn probe_exhausted(&self) -> bool {
        !self.ever_synced && self.pos > PROBE_LIMIT
    }

    /// Stop parsing (the connection is not HTTP).
    pub fn set_dead(&mut self) {
        self.st = St::Dead;
        self.buf = Vec::new();
    }

    /// The other direction found its role: this one has the opposite.
    pub fn set_role(&mut self, role: Role) {
        if self.role.is_none() {
            self.role = Some(role);
        }
    }

    pub fn set_tunnel(&mut self) {
        self.st = St::Tunnel;
        self.buf = Vec::new();
    }

    /// Between messages, nothing partial held: the next byte starts a message.
    pub fn at_message_start(&self) -> bool {
        self.st == St::Idle && self.buf.is_empty()
    }

    /// Stream offset of the next byte (data and gaps fed so far).
    pub fn pos(&self) -> u64 {
        self.pos
    }

    pub fn feed(&mut self, mut d: &[u8], ts: Ts, cfg: &HttpConfig, ev: &mut dyn Events) {
        self.pos += d.len() as u64;
        let end_pos = self.pos;
        while !d.is_empty() {
            match self.st {
                St::Idle => self.head(&mut d, ts, end_pos, cfg, ev),
                St::Body(f) => self.body(f, &mut d, ts, end_pos, cfg, ev),
                St::Resync => {
                    if !self.resync(&mut d, ev) {
                        return;
                    }
                }
                St::Tunnel | St::Dead => return,
            }
        }
    }

    /// `n` bytes were lost at the current position.
    pub fn gap(&mut self, n: u64, ts: Ts, cfg: &HttpConfig, ev: &mut dyn Events) {
        let at = self.pos;
        self.pos += n;
        let role = self.role;
        match self.st {
            St::Tunnel | St::Dead => return,
            St::Body(Framing::Length(rem)) if n <= rem => {
                self.cur.gap = true;
                self.cur.body_len += n;
                if n == rem {
                    self.finish(ts, cfg, ev);
                } else {
                    self.st = St::Body(Framing::Length(rem - n));
                }
                return;
            }
            St::Body(Framing::Chunked(Chunked::Data(rem))) if n <= rem => {
                self.cur.gap = true;
                self.cur.body_len += n;
                self.st = St::Body(Framing::Chunked(if n == rem {
                    Chunked::DataEnd
                } else {
                    Chunked::Data(rem - n)
                }));
                return;
            }
            St::Body(Framing::Close) => {
                self.cur.gap = true;
                self.cur.body_len += n;
                return;
            }
            St::Body(Framing::Length(rem)) => {
                // The body ends inside the hole; what follows it is lost too.
                self.cur.gap = true;
                self.cur.body_len += rem;
                self.finish(ts, cfg, ev);
            }
            St::Body(Framing::Chunked(_)) => {
                self.cur.gap = true;
                self.cur.truncated = true;
                self.finish(ts, cfg, ev);
            }
            St::Idle | St::Resync => {}
        }
        self.buf.clear();
        self.st = St::Resync;
        self.line_start = true;
        if let Some(r) = role {
            ev.lost(r, at);
        }
    }

    /// The direction closed (FIN, RST, or end of input).
    pub fn eof(&mut self, ts: Ts, cfg: &HttpConfig, ev: &mut dyn Events) {
        if self.st == St::Idle && !self.buf.is_empty() {
            self.partial_head_at_eof(ts, cfg, ev);
        }
        match self.st {
            St::Body(Framing::Close) => self.finish(ts, cfg, ev),
            St::Body(_) => {
                self.cur.truncated = true;
                self.finish(ts, cfg, ev);
            }
            _ => {}
        }
        self.buf = Vec::new();
        if !matches!(self.st, St::Tunnel | St::Dead) {
            self.st = St::Idle;
        }
    }

    /// The stream ended inside a head: if the start line and the headers so far parse once the
    /// head is closed, report the message as truncated (it was sent, just cut); else an anomaly.
    fn partial_head_at_eof(&mut self, ts: Ts, cfg: &HttpConfig, ev: &mut dyn Events) {
        let Some(role) = self.role else { return };
        let mut b = std::mem::take(&mut self.buf);
        while b.last().is_some_and(|c| *c == b'\r' || *c == b'\n') {
            b.pop();
        }
        b.extend_from_slice(b"\r\n\r\n");
        let parsed = match role {
            Role::Request => parse_request(&b),
            Role::Response => parse_response(&b),
        };
        match parsed {
            Ok(Some((mut msg, _))) => {
                msg.start = self.head_ts;
                msg.end = ts;
                msg.truncated = true;
                let pos = self.pos;
                if role == Role::Request {
                    ev.request_head(&msg, pos);
                } else if (100..200).contains(&msg.status) || ev.response_head(&msg) == ReqKind::Connect {
                    return;
                }
                self.cur = msg;
                self.finish(ts, cfg, ev);
            }
            _ => ev.anomaly(match role {
                Role::Request => HttpAnomaly::InvalidRequest,
                Role::Response => HttpAnomaly::InvalidResponse,
            }),
        }
    }

    fn head(&mut self, d: &mut &[u8], ts: Ts, end_pos: u64, cfg: &HttpConfig, ev: &mut dyn Events) {
        if self.buf.is_empty() {
            // Blank lines between messages are allowed (RFC 9112 §2.2).
            let skip = d.iter().take_while(|b| **b == b'\r' || **b == b'\n').count();
            *d = &d[skip..];
            if d.is_empty() {
                return;
            }
            self.head_ts = ts;
        }
        let Some(role) = self.role else {
            self.st = St::Resync;
            return;
        };
        if !self.ever_synced && self.buf.is_empty() && self.classify(d) == Some(None) {
            // The first bytes of this direction are not HTTP (TLS, SSH, SMTP...): stop
            // parsing the connection quietly; it is counted, not an anomaly.
            self.st = St::Dead;
            ev.not_http();
            return;
        }
        let old = self.buf.len();
        let from_buf = old > 0;
        if from_buf {
            self.buf.extend_from_slice(d);
        }
        let src: &[u8] = if from_buf { &self.buf } else { d };
        let parsed = match role {
            Role::Request => parse_request(src),
            Role::Response => parse_response(src),
        };
        match parsed {
            Ok(Some((mut msg, n))) => {
                // A header continued on the next line (obs-fold, RFC 9112 §5.2): parsers
                // disagree on it, a classic smuggling vector. httparse tolerates it; we report it.
                let head = &src[..n.min(src.len())];
                if memchr::memmem::find(head, b"\n ")
                    .or_else(|| memchr::memmem::find(head, b"\n\t"))
                    .is_some()
                {
                    ev.anomaly(HttpAnomaly::ObsFold);
                }
                let used = if from_buf { n.saturating_sub(old) } else { n };
                *d = &d[used.min(d.len())..];
                self.buf.clear();
                msg.start = self.head_ts;
                msg.end = ts;
                self.ever_synced = true;
                let head_end = end_pos - d.len() as u64;
                self.start_body(role, msg, ts, head_end, cfg, ev);
            }
            Ok(None) => {
                if !from_buf {
                    self.buf.extend_from_slice(d);
                }
                *d = &[];
                if self.buf.len() > cfg.max_head {
                    ev.anomaly(HttpAnomaly::HeadTooLong);
                    self.buf.clear();
                    self.st = St::Resync;
                    self.line_start = false;
                }
            }
            Err(a) => {
                ev.anomaly(match (a, role) {
                    (HttpAnomaly::TooManyHeaders, _) => a,
                    (_, Role::Request) => HttpAnomaly::InvalidRequest,
                    (_, Role::Response) => HttpAnomaly::InvalidResponse,
                });
                // Rescan the bytes of this chunk, past the first, for the next message.
                if from_buf {
                    *d = &[];
                }
                self.buf.clear();
                self.st = St::Resync;
                self.line_start = false;
            }
        }
    }

    fn start_body(&mut self, role: Role, msg: Message, ts: Ts, head_end: u64, cfg: &HttpConfig, ev: &mut dyn Events) {
        self.cur = msg;
        self.inspect = super::worth_inspecting(self.cur.header("content-type"));
        let framing = match role {
            Role::Request => {
                ev.request_head(&self.cur, head_end);
                match message_framing(&self.cur, ev) {
                    Some(f) => f,
                    None => Framing::Length(0),
                }
            }
            Role::Response => {
                let status = self.cur.status;
                if (100..200).contains(&status) && status != 101 {
                    // Interim response (100 Continue, 103 Early Hints): not a transaction.
                    self.st = St::Idle;
                    return;
                }
                let kind = ev.response_head(&self.cur);
                if status == 101 || (kind == ReqKind::Connect && (200..300).contains(&status)) {
                    self.st = St::Tunnel;
                    self.finish(ts, cfg, ev);
                    ev.tunnel();
                    return;
                }
                if kind == ReqKind::Head || status == 204 || status == 304 {
                    Framing::Length(0)
                } else {
                    message_framing(&self.cur, ev).unwrap_or(Framing::Close)
                }
            }
        };
        if framing == Framing::Length(0) {
            self.finish(ts, cfg, ev);
        } else {
            self.trailer_bytes = 0;
            self.st = St::Body(framing);
        }
    }

    fn body(&mut self, f: Framing, d: &mut &[u8], ts: Ts, end_pos: u64, cfg: &HttpConfig, ev: &mut dyn Events) {
        match f {
            Framing::Length(rem) => {
                let take = rem.min(d.len() as u64) as usize;
                self.take_body(&d[..take], cfg);
                *d = &d[take..];
                if rem == take as u64 {
                    self.finish_at(ts, end_pos - d.len() as u64, cfg, ev);
                } else {
                    self.st = St::Body(Framing::Length(rem - take as u64));
                }
            }
            Framing::Close => {
                self.take_body(d, cfg);
                *d = &[];
            }
            Framing::Chunked(Chunked::Data(rem)) => {
                let take = rem.min(d.len() as u64) as usize;
                self.take_body(&d[..take], cfg);
                *d = &d[take..];
                let next = if rem == take as u64 {
                    Chunked::DataEnd
                } else {
                    Chunked::Data(rem - take as u64)
                };
                self.st = St::Body(Framing::Chunked(next));
            }
            Framing::Chunked(Chunked::DataEnd) => match d[0] {
                b'\r' => *d = &d[1..],
                b'\n' => {
                    *d = &d[1..];
                    self.st = St::Body(Framing::Chunked(Chunked::Size));
                }
                _ => {
                    ev.anomaly(HttpAnomaly::InvalidChunk);
                    self.st = St::Body(Framing::Chunked(Chunked::Size));
                }
            },
            Framing::Chunked(c @ (Chunked::Size | Chunked::Trailers)) => {
                let Some(i) = memchr::memchr(b'\n', d) else {
                    self.buf.extend_from_slice(d);
                    if c == Chunked::Trailers {
                        self.trailer_bytes += d.len();
                    }
                    *d = &[];
                    if self.buf.len() > MAX_CHUNK_LINE || self.trailer_bytes > MAX_TRAILERS {
                        self.chunk_error(ts, cfg, ev);
                    }
                    return;
                };
                self.buf.extend_from_slice(&d[..i]);
                *d = &d[i + 1..];
                let line = trim_cr(&self.buf);
                if c == Chunked::Trailers {
                    self.trailer_bytes += line.len() + 2;
                    let empty = line.is_empty();
                    self.buf.clear();
                    if empty {
                        self.finish_at(ts, end_pos - d.len() as u64, cfg, ev);
                    } else if self.trailer_bytes > MAX_TRAILERS {
                        self.chunk_error(ts, cfg, ev);
                    }
                    return;
                }
                let size = parse_chunk_size(line);
                self.buf.clear();
                match size {
                    Some(0) => self.st = St::Body(Framing::Chunked(Chunked::Trailers)),
                    Some(n) => self.st = St::Body(Framing::Chunked(Chunked::Data(n))),
                    None => self.chunk_error(ts, cfg, ev),
                }
            }
        }
    }

    fn chunk_error(&mut self, ts: Ts, cfg: &HttpConfig, ev: &mut dyn Events) {
        ev.anomaly(HttpAnomaly::InvalidChunk);
        self.cur.truncated = true;
        self.finish(ts, cfg, ev);
        self.buf.clear();
        self.st = St::Resync;
        self.line_start = false;
    }

    fn take_body(&mut self, b: &[u8], cfg: &HttpConfig) {
        self.cur.body_len += b.len() as u64;
        let room = if self.inspect {
            cfg.body_depth.saturating_sub(self.cur.body.len())
        } else {
            0
        };
        if room > 0 {
            self.cur.body.extend_from_slice(&b[..room.min(b.len())]);
        }
    }

    fn finish(&mut self, ts: Ts, cfg: &HttpConfig, ev: &mut dyn Events) {
        let pos = self.pos;
        self.finish_at(ts, pos, cfg, ev);
    }

    fn finish_at(&mut self, ts: Ts, end_off: u64, _cfg: &HttpConfig, ev: &mut dyn Events) {
        let mut msg = std::mem::take(&mut self.cur);
        msg.end = ts;
        // Content-encoded bodies are decoded later, off the capture thread
        // (Transaction::decode_bodies, called by the workers).
        if self.st != St::Tunnel {
            self.st = St::Idle;
        }
        if let Some(role) = self.role {
            ev.done(role, msg, end_off);
        }
    }

    /// Look for the start of a message at a line start. Returns true when found (state Idle,
    /// `d` positioned at it); false when `d` is used up.
    fn resync(&mut self, d: &mut &[u8], ev: &mut dyn Events) -> bool {
        // A candidate cut at the end of the previous chunk waits in `buf` (a few bytes).
        if !self.buf.is_empty() {
            let mut probe = std::mem::take(&mut self.buf);
            let add = d.len().min(16);
            probe.extend_from_slice(&d[..add]);
            match self.classify(&probe) {
                Some(Some(role)) => {
                    probe.truncate(probe.len() - add);
                    self.buf = probe;
                    self.synced(role, ev);
                    return true;
                }
                Some(None) => {}
                None => {
                    // still too short to tell: keep waiting
                    self.buf = probe;
                    *d = &[];
                    return false;
                }
            }
        }
        let mut i = if self.line_start { 0 } else { next_line(d, 0) };
        while i < d.len() {
            match self.classify(&d[i..]) {
                Some(Some(role)) => {
                    *d = &d[i..];
                    self.synced(role, ev);
                    return true;
                }
                Some(None) => i = next_line(d, i),
                None => {
                    self.buf.extend_from_slice(&d[i..]);
                    break;
                }
            }
        }
        self.line_start = d.last() == Some(&b'\n');
        *d = &[];
        false
    }

    /// Is this the start of a message this direction may carry? `None`: too short to tell.
    fn classify(&self, d: &[u8]) -> Option<Option<Role>> {
        let req = || starts_request(d);
        let resp = || starts_response(d);
        match self.role {
            Some(Role::Request) => req().map(|b| b.then_some(Role::Request)),
            Some(Role::Response) => resp().map(|b| b.then_some(Role::Response)),
            None => match (req(), resp()) {
                (Some(true), _) => Some(Some(Role::Request)),
                (_, Some(true)) => Some(Some(Role::Response)),
                (Some(false), Some(false)) => Some(None),
                _ => None,
            },
        }
    }

    fn synced(&mut self, role: Role, ev: &mut dyn Events) {
        if self.role.is_none() {
            self.role = Some(role);
            ev.role_found(role);
        }
        self.st = St::Idle;
    }
}

/// Index just past the next `\n` at or after `from` (or `d.len()`).
fn next_line(d: &[u8], from: usize) -> usize {
    match memchr::memchr(b'\n', &d[from..]) {
        Some(j) => from + j + 1,
        None => d.len(),
    }
}

fn trim_cr(l: &[u8]) -> &[u8] {
    l.strip_suffix(b"\r").unwrap_or(l)
}

fn parse_chunk_size(line: &[u8]) -> Option<u64> {
    let hex = line.split(|b| *b == b';').next().unwrap_or(&[]);
    let hex = hex.trim_ascii();
    if hex.is_empty() || hex.len() > 15 {
        return None;
    }
    let mut v: u64 = 0;
    for b in hex {
        v = v * 16 + (*b as char).to_digit(16)? as u64;
    }
    Some(v)
}

fn parser_config() -> httparse::ParserConfig {
    let mut c = httparse::ParserConfig::default();
    c.allow_spaces_after_header_name_in_responses(true)
        .allow_obsolete_multiline_headers_in_responses(true)
        .allow_multiple_spaces_in_request_line_delimiters(true)
        .allow_multiple_spaces_in_response_status_delimiters(true)
        .ignore_invalid_headers_in_responses(true)
        .ignore_invalid_headers_in_requests(true);
    c
}

fn map_err(e: httparse::Error) -> HttpAnomaly {
    match e {
        httparse::Error::TooManyHeaders => HttpAnomaly::TooManyHeaders,
        _ => HttpAnomaly::InvalidRequest,
    }
}

fn owned_headers(h: &[httparse::Header<'_>]) -> Vec<(String, String)> {
    h.iter()
        .map(|h| (h.name.to_string(), String::from_utf8_lossy(h.value).trim().to_string()))
        .collect()
}

fn parse_request(src: &[u8]) -> Result<Option<(Message, usize)>, HttpAnomaly> {
    let mut hs = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    match parser_config()
        .parse_request_with_uninit_headers(&mut req, src, &mut hs)
        .map_err(map_err)?
    {
        httparse::Status::Partial => Ok(None),
        httparse::Status::Complete(n) => Ok(Some((
            Message {
                method: req.method.unwrap_or("").to_string(),
                uri: req.path.unwrap_or("").to_string(),
                minor: req.version.unwrap_or(1),
                headers: owned_headers(req.headers),
                ..Message::default()
            },
            n,
        ))),
    }
}

fn parse_response(src: &[u8]) -> Result<Option<(Message, usize)>, HttpAnomaly> {
    let mut hs = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut []);
    match parser_config()
        .parse_response_with_uninit_headers(&mut resp, src, &mut hs)
        .map_err(map_err)?
    {
        httparse::Status::Partial => Ok(None),
        httparse::Status::Complete(n) => Ok(Some((
            Message {
                status: resp.code.unwrap_or(0),
                reason: resp.reason.unwrap_or("").to_string(),
                minor: resp.version.unwrap_or(1),
                headers: owned_headers(resp.headers),
                ..Message::default()
            },
            n,
        ))),
    }
}

/// Body framing from Transfer-Encoding / Content-Length (RFC 9112 §6.3). `None`: neither.
fn message_framing(m: &Message, ev: &mut dyn Events) -> Option<Framing> {
    let mut te: Option<&str> = None;
    let mut cl: Option<u64> = None;
    let mut cl_bad = false;
    for (n, v) in &m.headers {
        if n.eq_ignore_ascii_case("transfer-encoding") {
            te = Some(v);
        } else if n.eq_ignore_ascii_case("content-length") {
            for part in v.split(',') {
                match part.trim().parse::<u64>() {
                    Ok(x) => match cl {
                        Some(c) if c != x => {
                            ev.anomaly(HttpAnomaly::MultipleContentLength);
                        }
                        Some(_) => {}
                        None => cl = Some(x),
                    },
                    Err(_) => cl_bad = true,
                }
            }
        }
    }
    if let Some(te) = te {
        if cl.is_some() || cl_bad {
            ev.anomaly(HttpAnomaly::ContentLengthAndChunked);
        }
        let last = te.rsplit(',').next().unwrap_or("").trim();
        if last.eq_ignore_ascii_case("chunked") {
            return Some(Framing::Chunked(Chunked::Size));
        }
        ev.anomaly(HttpAnomaly::UnknownTransferEncoding);
        return if m.status != 0 {
            Some(Framing::Close)
        } else {
            Some(Framing::Length(0))
        };
    }
    if cl_bad && cl.is_none() {
        ev.anomaly(HttpAnomaly::InvalidContentLength);
        return Some(Framing::Length(0));
    }
    cl.map(Framing::Length)
}
