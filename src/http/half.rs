//! One direction of an HTTP/1.x connection: a byte stream in, messages out.
//!
//! States: `Idle` (between messages, or holding a partial head in `buf`), `Body` (framed by
//! Content-Length, chunked or connection close), `Resync` (sync lost after a gap or a malformed
//! head: scanning for the next line that starts a message), `Tunnel` (after Upgrade/CONNECT) and
//! `Dead` (not HTTP). Heads are parsed by httparse straight from the segment when they fit in
//! it, else from `buf`, which never grows past `max_head`. Body bytes are counted, and the first
//! `body_depth` of them kept for inspection.

use std::mem::MaybeUninit;

use super::{
    Headers, HttpAnomaly, HttpConfig, Known, Message, NameIndex, eq_ignore_case, is_tchar, parse_version,
    starts_request, starts_response,
};
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
    /// An HTTP/0.9 request: the reply has no head and ends with the connection.
    Http09,
    /// A request never seen (lost, or before the capture): the response's framing is a guess.
    Unknown,
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
    /// The kind of the request the next response will answer, without claiming it.
    fn next_response_kind(&self) -> Option<ReqKind>;
    /// A message is complete (or cut short and flagged): take it out of `msg`
    /// (`std::mem::take`: the parser builds its next message in place, from what is left). By
    /// reference, so the message is moved once, parser to transaction, not through a copy.
    fn done(&mut self, role: Role, msg: &mut Message, end_off: u64);
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
    /// The head passed `max_head`: its message was reported with the headers that fit; the
    /// rest of the head is skipped (newline state: 0 mid-line, 1 after LF, 2 after LF CR),
    /// then the body framed by `after_skip`.
    SkipHead(u8),
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
/// Head bytes skipped past `max_head` before giving up on finding its end.
const MAX_SKIP_HEAD: u64 = 1 << 20;
/// How far into the first chunk of a direction junk before the first message is skipped.
const MAX_JUNK: usize = 64 << 10;

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
    /// Text bytes seen before the first message (junk a server would skip: an anomaly when a
    /// message follows), and whether the last junk chunk ended mid-line.
    junk: u64,
    junk_midline: bool,
    /// Keep the current message's body for inspection (by its content type).
    inspect: bool,
    /// Offset in `buf` up to which the end of the head has been looked for.
    scan: HeadScan,
    /// Body framing to apply once a head cut at `max_head` ends (`None`: message done).
    after_skip: Option<Framing>,
    skipped: u64,
    /// The current response answers a request never seen: its body may be absent (a HEAD).
    guess_body: bool,
}

/// The kept body prefix believes an announced length up to this many times the body bytes
/// that came (see [`Half::take_body`]).
const RESERVE_AHEAD: usize = 4;

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
            junk: 0,
            junk_midline: false,
            inspect: true,
            scan: HeadScan::default(),
            after_skip: None,
            skipped: 0,
            guess_body: false,
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

    /// Part of a message head has arrived, not all of it.
    pub fn head_in_progress(&self) -> bool {
        self.st == St::Idle && !self.buf.is_empty()
    }

    /// Stream offset of the next byte (data and gaps fed so far).
    pub fn pos(&self) -> u64 {
        self.pos
    }

    /// Parse `d`. Returns how many bytes at its end were left unparsed because the connection
    /// switched protocols (Upgrade, CONNECT) or is not HTTP.
    pub fn feed(&mut self, mut d: &[u8], ts: Ts, cfg: &HttpConfig, ev: &mut dyn Events) -> usize {
        self.pos += d.len() as u64;
        let end_pos = self.pos;
        while !d.is_empty() {
            match self.st {
                St::Idle => self.head(&mut d, ts, end_pos, cfg, ev),
                St::Body(f) => self.body(f, &mut d, ts, end_pos, cfg, ev),
                St::SkipHead(nl) => self.skip_head(nl, &mut d, ts, end_pos, cfg, ev),
                St::Resync => {
                    if !self.resync(&mut d, ev) {
                        return 0;
                    }
                }
                St::Tunnel | St::Dead => return d.len(),
            }
        }
        0
    }

    /// A piece of a body that does not end it (most segments of a large response): counted,
    /// kept up to `body_depth`, and nothing else happens (no event, no state but the framing's
    /// count). Returns false, having done nothing, when `d` is not that: [`Half::feed`] it.
    #[inline]
    pub fn body_piece(&mut self, d: &[u8], cfg: &HttpConfig) -> bool {
        let n = d.len() as u64;
        let (next, coming) = match self.st {
            _ if self.guess_body => return false,
            St::Body(Framing::Length(rem)) if n < rem => (Framing::Length(rem - n), rem),
            St::Body(Framing::Chunked(Chunked::Data(rem))) if n < rem => {
                (Framing::Chunked(Chunked::Data(rem - n)), rem)
            }
            St::Body(Framing::Close) => (Framing::Close, 0),
            _ => return false,
        };
        self.pos += n;
        self.take_body(d, coming, cfg);
        self.st = St::Body(next);
        true
    }

    /// Parse again after `n` bytes were handled elsewhere (a connection taken for HTTP/2 by its
    /// frame layout that turned out not to be): look for the next message start.
    pub fn resume(&mut self, n: u64) {
        self.pos += n;
        self.buf.clear();
        if self.st != St::Dead {
            self.st = St::Resync;
        }
        // as after a gap: the next chunk may start a message
        self.line_start = true;
    }

    /// Has this direction ever found an HTTP/1 message start?
    pub fn ever_synced(&self) -> bool {
        self.ever_synced
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
            St::SkipHead(_) if self.after_skip.is_some() => {
                self.after_skip = None;
                self.cur.gap = true;
                self.cur.truncated = true;
                self.finish(ts, cfg, ev);
            }
            St::SkipHead(_) | St::Idle | St::Resync => {}
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
            St::SkipHead(_) if self.after_skip.is_some() => {
                self.after_skip = None;
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
        let mut scan = HeadScan::default();
        let mut msg = Message::default();
        match parse_head(role, &b, &mut scan, &mut msg, ev) {
            Parsed::Complete(_) => {
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

    /// The first bytes of a direction: junk before the first message is skipped (an anomaly)
    /// when a message starts at a later line of this chunk; a direction that shows no message
    /// start at all is not HTTP (TLS, SSH, SMTP...): the connection is dropped quietly, counted,
    /// not an anomaly. Returns false when parsing stops. (Out of line, as every path
    /// [`Half::feed`] takes rarely: its loop then keeps fewer values at hand.)
    #[cold]
    #[inline(never)]
    fn first_message(&mut self, d: &mut &[u8], ev: &mut dyn Events) -> bool {
        // after a junk chunk that ended mid-line, the rest of that line is junk too
        let start = if self.junk_midline { next_line(d, 0) } else { 0 };
        if start == 0 && self.classify(d) != Some(None) {
            if self.junk > 0 {
                ev.anomaly(HttpAnomaly::JunkBeforeMessage);
            }
            return true;
        }
        let limit = d.len().min(MAX_JUNK);
        let mut i = if start == 0 { next_line(d, 0) } else { start };
        while i < limit {
            match self.classify(&d[i..]) {
                Some(Some(_)) => {
                    ev.anomaly(HttpAnomaly::JunkBeforeMessage);
                    *d = &d[i..];
                    return true;
                }
                Some(None) => i = next_line(d, i),
                // a line cut by the end of the chunk that may start a message: the head
                // parser holds it until it is whole
                None => {
                    self.junk += i as u64;
                    ev.anomaly(HttpAnomaly::JunkBeforeMessage);
                    *d = &d[i..];
                    return true;
                }
            }
        }
        // Text lines with no message start (a stray line sent alone in its own segment): a
        // server would skip them, so wait for a message up to MAX_JUNK bytes. Binary bytes
        // (TLS, SSH's key exchange...) are not HTTP.
        let texty = d.iter().all(|b| matches!(b, b'\t' | b'\n' | b'\r' | 0x20..=0x7e));
        if texty && self.junk + (d.len() as u64) <= MAX_JUNK as u64 {
            self.junk += d.len() as u64;
            self.junk_midline = !d.ends_with(b"\n");
            *d = &d[d.len()..];
            return false;
        }
        self.st = St::Dead;
        ev.not_http();
        false
    }

    fn head(&mut self, d: &mut &[u8], ts: Ts, end_pos: u64, cfg: &HttpConfig, ev: &mut dyn Events) {
        if self.buf.is_empty() {
            // Blank lines between messages are allowed (RFC 9112 §2.2).
            let skip = d.iter().take_while(|b| **b == b'\r' || **b == b'\n').count();
            if d[..skip].contains(&b'\n') {
                self.junk_midline = false; // the junk line ended here
            }
            *d = &d[skip..];
            if d.is_empty() {
                return;
            }
            self.head_ts = ts;
            self.scan = HeadScan::default();
        }
        let Some(role) = self.role else {
            self.st = St::Resync;
            return;
        };
        if role == Role::Response
            && self.buf.is_empty()
            && starts_response(d) == Some(false)
            && ev.next_response_kind() == Some(ReqKind::Http09)
        {
            self.http09_reply(ts, ev);
            return;
        }
        if !self.ever_synced && self.buf.is_empty() && !self.first_message(d, ev) {
            return;
        }
        let old = self.buf.len();
        let from_buf = old > 0;
        if from_buf {
            self.buf.extend_from_slice(d);
        }
        let src: &[u8] = if from_buf { &self.buf } else { d };
        // (the message is built in `cur`, not moved there: a head is parsed once per message)
        match parse_head(role, src, &mut self.scan, &mut self.cur, ev) {
            Parsed::Complete(n) => {
                // A header continued on the next line (obs-fold, RFC 9112 §5.2): parsers
                // disagree on it, a classic smuggling vector. httparse tolerates it; we report it.
                let head = &src[..n.min(src.len())];
                // (a request head httparse took strictly has no folded line: it refuses one;
                // nor has a head the plain parser took, request or response)
                let strict_request = role == Role::Request && self.scan.strict;
                debug_assert!(!(self.scan.plain && has_obs_fold(head)));
                if !strict_request && !self.scan.plain && has_obs_fold(head) {
                    ev.anomaly(HttpAnomaly::ObsFold);
                }
                let used = if from_buf { n.saturating_sub(old) } else { n };
                *d = &d[used.min(d.len())..];
                self.buf.clear();
                self.cur.start = self.head_ts;
                self.cur.end = ts;
                self.ever_synced = true;
                let head_end = end_pos - d.len() as u64;
                self.start_body(role, ts, head_end, cfg, ev);
            }
            Parsed::Partial => {
                if !from_buf {
                    self.buf.extend_from_slice(d);
                }
                *d = &[];
                if self.buf.len() > cfg.max_head {
                    self.head_too_long(role, ts, cfg, ev);
                }
            }
            Parsed::Error(a) => {
                ev.anomaly(a);
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

    /// An HTTP/0.9 reply: no head, the body runs until the connection closes.
    #[cold]
    #[inline(never)]
    fn http09_reply(&mut self, ts: Ts, ev: &mut dyn Events) {
        let msg = Message {
            http09: true,
            start: ts,
            end: ts,
            ..Message::default()
        };
        ev.response_head(&msg);
        self.cur = msg;
        self.inspect = true;
        self.guess_body = false;
        self.ever_synced = true;
        self.st = St::Body(Framing::Close);
    }

    /// The head passed `max_head` without ending: report the message with the start line and
    /// the headers that fit (truncated, HEADER_TOO_LONG), skip the rest of the head, then
    /// follow the body framing those headers give.
    #[cold]
    #[inline(never)]
    fn head_too_long(&mut self, role: Role, ts: Ts, cfg: &HttpConfig, ev: &mut dyn Events) {
        ev.anomaly(HttpAnomaly::HeadTooLong);
        let mut b = std::mem::take(&mut self.buf);
        let Some(last_lf) = memchr::memrchr(b'\n', &b) else {
            self.st = St::Resync;
            self.line_start = false;
            return;
        };
        let nl = match &b[last_lf + 1..] {
            [] => 1,
            [b'\r'] => 2,
            _ => 0,
        };
        b.truncate(last_lf + 1);
        b.extend_from_slice(b"\r\n");
        let mut scan = HeadScan::default();
        let mut msg = Message::default();
        let Parsed::Complete(_) = parse_head(role, &b, &mut scan, &mut msg, ev) else {
            self.st = St::Resync;
            self.line_start = false;
            return;
        };
        msg.start = self.head_ts;
        msg.end = ts;
        msg.truncated = true;
        self.ever_synced = true;
        let pos = self.pos;
        self.cur = msg;
        self.start_body(role, ts, pos, cfg, ev);
        self.after_skip = match self.st {
            St::Body(f) => Some(f),
            St::Idle => None,
            _ => return,
        };
        self.skipped = 0;
        self.st = St::SkipHead(nl);
    }

    #[cold]
    #[inline(never)]
    fn skip_head(&mut self, mut nl: u8, d: &mut &[u8], ts: Ts, end_pos: u64, cfg: &HttpConfig, ev: &mut dyn Events) {
        let mut i = 0;
        let end = loop {
            if i >= d.len() {
                break None;
            }
            if nl == 0 {
                match memchr::memchr(b'\n', &d[i..]) {
                    Some(j) => {
                        i += j + 1;
                        nl = 1;
                    }
                    None => {
                        i = d.len();
                    }
                }
                continue;
            }
            let b = d[i];
            i += 1;
            nl = match (nl, b) {
                (_, b'\n') => break Some(i),
                (1, b'\r') => 2,
                _ => 0,
            };
        };
        let used = end.unwrap_or(d.len());
        self.skipped += used as u64;
        *d = &d[used..];
        if end.is_some() {
            self.trailer_bytes = 0;
            self.st = match self.after_skip.take() {
                Some(f) => St::Body(f),
                None => St::Idle,
            };
            return;
        }
        self.st = St::SkipHead(nl);
        if self.skipped > MAX_SKIP_HEAD {
            if self.after_skip.take().is_some() {
                self.cur.truncated = true;
                self.finish_at(ts, end_pos - d.len() as u64, cfg, ev);
            }
            self.st = St::Resync;
            self.line_start = false;
        }
    }

    /// The head in `cur` is complete: report it and frame its body.
    fn start_body(&mut self, role: Role, ts: Ts, head_end: u64, cfg: &HttpConfig, ev: &mut dyn Events) {
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
                    self.guess_body = kind == ReqKind::Unknown;
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
        if self.guess_body && self.body_or_response(d, ts, end_pos, cfg, ev) {
            return;
        }
        match f {
            Framing::Length(rem) => {
                let take = rem.min(d.len() as u64) as usize;
                self.take_body(&d[..take], rem, cfg);
                *d = &d[take..];
                if rem == take as u64 {
                    self.finish_at(ts, end_pos - d.len() as u64, cfg, ev);
                } else {
                    self.st = St::Body(Framing::Length(rem - take as u64));
                }
            }
            Framing::Close => {
                self.take_body(d, 0, cfg);
                *d = &[];
            }
            Framing::Chunked(Chunked::Data(rem)) => {
                let take = rem.min(d.len() as u64) as usize;
                self.take_body(&d[..take], rem, cfg);
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
            Framing::Chunked(c @ (Chunked::Size | Chunked::Trailers)) => self.chunk_line(c, d, ts, end_pos, cfg, ev),
        }
    }

    /// A chunk-size line or a trailer line (of chunked framing `c`) from `d`, held in `buf`
    /// until its LF comes. (Out of line: chunked bodies are the rarer framing.)
    #[inline(never)]
    fn chunk_line(&mut self, c: Chunked, d: &mut &[u8], ts: Ts, end_pos: u64, cfg: &HttpConfig, ev: &mut dyn Events) {
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
            Ok(0) => self.st = St::Body(Framing::Chunked(Chunked::Trailers)),
            Ok(n) => self.st = St::Body(Framing::Chunked(Chunked::Data(n))),
            Err(a) => {
                if a != HttpAnomaly::InvalidChunk {
                    ev.anomaly(a);
                }
                self.chunk_error(ts, cfg, ev)
            }
        }
    }

    /// The request was never seen: if it was a HEAD, the "body" is the next response. Take
    /// the reading that shows more messages, and say so. True: `d` starts the next response
    /// (this message finished without a body).
    #[cold]
    #[inline(never)]
    fn body_or_response(&mut self, d: &[u8], ts: Ts, end_pos: u64, cfg: &HttpConfig, ev: &mut dyn Events) -> bool {
        match starts_response(d) {
            None if d.len() < 8 => false,
            Some(true) => {
                self.guess_body = false;
                ev.anomaly(HttpAnomaly::ResponseWithoutBody);
                self.finish_at(ts, end_pos - d.len() as u64, cfg, ev);
                true
            }
            _ => {
                self.guess_body = false;
                false
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

    /// Count body bytes `b`, keeping those within `body_depth` when inspected. `coming`: body
    /// bytes the framing announces from `b` on (the rest of a Content-Length body or of a
    /// chunk; 0 when unknown): when the kept prefix must grow, it grows to hold what is
    /// announced, up to `body_depth`, instead of doubling segment by segment, each
    /// reallocation copying what was kept so far. An announced length is only a claim: the
    /// prefix reserves at most [`RESERVE_AHEAD`] times the bytes that came, so a client that
    /// announces bodies and sends a byte of each on thousands of connections makes apitap
    /// hold a few bytes per connection, not `body_depth`. A 64 KiB body in full-size
    /// segments is kept in three allocations (the doubling it replaces took about ten).
    fn take_body(&mut self, b: &[u8], coming: u64, cfg: &HttpConfig) {
        self.cur.body_len += b.len() as u64;
        let room = if self.inspect {
            cfg.body_depth.saturating_sub(self.cur.body.len())
        } else {
            0
        };
        if room > 0 {
            let n = room.min(b.len());
            let body = &mut self.cur.body;
            let (len, cap) = (body.len(), body.capacity());
            if cap - len < n {
                let announced = len + (coming.min(room as u64) as usize).max(n);
                let believed = announced.min((len + n).saturating_mul(RESERVE_AHEAD));
                // at least doubling (many small pieces cost amortised O(1) per byte), never
                // past body_depth
                let to = (2 * cap).max(believed).min(len + room).max(len + n);
                body.reserve_exact(to - len);
            }
            body.extend_from_slice(&b[..n]);
        }
    }

    fn finish(&mut self, ts: Ts, cfg: &HttpConfig, ev: &mut dyn Events) {
        let pos = self.pos;
        self.finish_at(ts, pos, cfg, ev);
    }

    fn finish_at(&mut self, ts: Ts, end_off: u64, _cfg: &HttpConfig, ev: &mut dyn Events) {
        self.cur.end = ts;
        // Content-encoded bodies are decoded later, off the capture thread
        // (Transaction::decode_bodies, called by the workers).
        if self.st != St::Tunnel {
            self.st = St::Idle;
        }
        match self.role {
            Some(role) => ev.done(role, &mut self.cur, end_off),
            None => self.cur = Message::default(),
        }
    }

    /// Look for the start of a message at a line start. Returns true when found (state Idle,
    /// `d` positioned at it); false when `d` is used up.
    #[cold]
    #[inline(never)]
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
        self.scan = HeadScan::default();
        if self.role.is_none() {
            self.role = Some(role);
            ev.role_found(role);
        }
        self.st = St::Idle;
    }
}

/// Does a line of `head` start with a space or a tab (a header continued, obs-fold)? Two
/// vector scans for the pairs, not one call per line.
fn has_obs_fold(head: &[u8]) -> bool {
    use std::sync::LazyLock;
    static SP: LazyLock<memchr::memmem::Finder<'static>> = LazyLock::new(|| memchr::memmem::Finder::new(b"\n "));
    static TAB: LazyLock<memchr::memmem::Finder<'static>> = LazyLock::new(|| memchr::memmem::Finder::new(b"\n\t"));
    SP.find(head).is_some() || TAB.find(head).is_some()
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

/// A chunk-size line's size: hex digits, leading zeros allowed (nginx takes
/// `00000000000000027`), extensions after `;` ignored. Above 2^63-1 is an overflow.
fn parse_chunk_size(line: &[u8]) -> Result<u64, HttpAnomaly> {
    let hex = line.split(|b| *b == b';').next().unwrap_or(&[]);
    let hex = hex.trim_ascii();
    if hex.is_empty() || !hex.iter().all(u8::is_ascii_hexdigit) {
        return Err(HttpAnomaly::InvalidChunk);
    }
    let sig = &hex[hex.iter().take_while(|b| **b == b'0').count()..];
    if sig.len() > 16 {
        return Err(HttpAnomaly::ChunkSizeOverflow);
    }
    let v = sig
        .iter()
        .fold(0u64, |v, b| (v << 4) | (*b as char).to_digit(16).unwrap_or(0) as u64);
    if v > i64::MAX as u64 {
        return Err(HttpAnomaly::ChunkSizeOverflow);
    }
    Ok(v)
}

enum Parsed {
    /// The message is in the caller's `out`; the head's length.
    Complete(usize),
    Partial,
    Error(HttpAnomaly),
}

/// Parse a head once it is complete. The start line is read by hand, as leniently as nginx
/// reads it (any token as a method, `HTTP/1.2`, `HTTP/1.01`, spaces after the version, spaces
/// inside the target, HTTP/0.9 lines without a version, a lower-case `http/1.1` or a
/// non-numeric status in a status line), the headers by httparse. `scan`: how far a previous
/// call on the same (grown) buffer looked for the end of the head, so a head that arrives in
/// many segments is scanned once, not from byte 0 on every segment. The message is written
/// to `out` when the head is complete (`out` untouched otherwise).
fn parse_head(role: Role, src: &[u8], sc: &mut HeadScan, out: &mut Message, ev: &mut dyn Events) -> Parsed {
    if !sc.tried {
        // Fast path, the common case: an ordinary head, whole in one segment.
        sc.tried = true;
        if let Some(n) = plain_parse_into(role, src, out) {
            sc.strict = true;
            sc.plain = true;
            return Parsed::Complete(n);
        }
        match httparse_parse_into(role, src, out) {
            Ok(Some(n)) => {
                sc.strict = true;
                return Parsed::Complete(n);
            }
            Ok(None) => {}
            Err(a) => return Parsed::Error(a),
        }
    }
    let lf = match sc.line_end {
        Some(lf) => lf,
        None => {
            let from = sc.from.min(src.len());
            let Some(j) = memchr::memchr(b'\n', &src[from..]) else {
                sc.from = src.len();
                return Parsed::Partial;
            };
            sc.line_end = Some(from + j);
            from + j
        }
    };
    let line = trim_cr(&src[..lf]);
    let start = match role {
        Role::Request => request_line(line),
        Role::Response => status_line(line),
    };
    let Some(start) = start else {
        return Parsed::Error(match role {
            Role::Request => HttpAnomaly::InvalidRequest,
            Role::Response => HttpAnomaly::InvalidResponse,
        });
    };
    if start.http09 {
        ev.anomaly(HttpAnomaly::UnusualStartLine);
        *out = start.message();
        return Parsed::Complete(lf + 1);
    }
    let Some(end) = head_end(src, sc.from.max(lf), &mut sc.from) else {
        return Parsed::Partial;
    };
    let head = &src[..end];
    if !start.unusual {
        // httparse on the whole head, strict about headers.
        match strict_parse_into(role, head, out) {
            Ok(Some(_)) => {
                sc.strict = true;
                return Parsed::Complete(end);
            }
            Ok(None) => {}
            Err(a) => return Parsed::Error(a),
        }
    } else if start.status == 0 && role == Role::Response {
        ev.anomaly(HttpAnomaly::InvalidStatus);
    } else {
        ev.anomaly(HttpAnomaly::UnusualStartLine);
    }
    // The start line httparse refuses, or headers it would drop (a control byte in a value,
    // nginx passes them on): parse the headers alone, control bytes masked, values kept.
    let mut msg = start.message();
    match lenient_headers(&src[lf + 1..end], role, ev) {
        Ok(h) => msg.headers = h,
        Err(a) => return Parsed::Error(a),
    }
    *out = msg;
    Parsed::Complete(end)
}

/// Where a head that arrives in pieces has been looked at: httparse is tried once on the
/// first piece; after that only new bytes are scanned (for the end of the first line, then
/// for the blank line), and the head is parsed once, when complete.
#[derive(Debug, Default, Clone, Copy)]
struct HeadScan {
    tried: bool,
    line_end: Option<usize>,
    /// Offset from which to look again.
    from: usize,
    /// The head was parsed by [`strict_parse_into`].
    strict: bool,
    /// ... by its plain parser, [`plain_parse_into`], from the first piece: no line of the
    /// head starts with a space or a tab (it refuses a folded line, in either role).
    plain: bool,
}

/// Index just past the blank line that ends a head (`\n\n` or `\n\r\n`), looking for LFs from
/// `from`; when not found, `scan` is where to look again once more bytes arrived.
fn head_end(src: &[u8], from: usize, scan: &mut usize) -> Option<usize> {
    let from = from.min(src.len());
    for i in memchr::memchr_iter(b'\n', &src[from..]).map(|j| from + j) {
        match (src.get(i + 1), src.get(i + 2)) {
            (Some(b'\n'), _) => return Some(i + 2),
            (Some(b'\r'), Some(b'\n')) => return Some(i + 3),
            (None, _) | (Some(b'\r'), None) => {
                *scan = i;
                return None;
            }
            _ => {}
        }
    }
    *scan = src.len();
    None
}

/// A start line read by hand, borrowed from the head (owned only when it is used).
#[derive(Default)]
struct StartLine<'a> {
    method: &'a [u8],
    target: &'a [u8],
    reason: &'a [u8],
    status: u16,
    minor: u8,
    http09: bool,
    /// Something httparse would refuse: parse the headers on their own.
    unusual: bool,
}

impl StartLine<'_> {
    fn message(&self) -> Message {
        let s = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        Message {
            method: s(self.method),
            uri: s(self.target),
            reason: s(self.reason),
            status: self.status,
            minor: self.minor,
            http09: self.http09,
            ..Message::default()
        }
    }
}

/// `method SP+ target SP+ HTTP/x.y SP*`, or HTTP/0.9 `GET SP+ target` (no version). The
/// target is everything between the method and the version (nginx takes a space inside it).
/// `None`: not a request line.
fn request_line(line: &[u8]) -> Option<StartLine<'_>> {
    let tok = line.iter().take_while(|b| is_tchar(**b)).count();
    if tok == 0 || line.get(tok).is_some_and(|b| *b != b' ' && *b != b'\t') {
        return None;
    }
    let method = &line[..tok];
    let rest = line[tok..].trim_ascii();
    let (target, version) = match rest.iter().rposition(|b| *b == b' ' || *b == b'\t') {
        Some(i) if parse_version(&rest[i + 1..]).is_some() => (rest[..i].trim_ascii(), parse_version(&rest[i + 1..])),
        None if parse_version(rest).is_some() => (&rest[..0], parse_version(rest)),
        _ => (rest, None),
    };
    let mut sl = StartLine {
        method,
        target,
        ..StartLine::default()
    };
    let clean = |v: &[u8]| v.len() == 8 && &v[..7] == b"HTTP/1." && (v[7] == b'0' || v[7] == b'1');
    sl.unusual = match version {
        // HTTP/0.9 (nginx takes it for GET only); a bare token is not a request line
        None if target.is_empty() || !(method == b"GET" || target[0] == b'/') => return None,
        None => {
            sl.http09 = true;
            true
        }
        Some((major, minor)) => {
            sl.minor = if major == 1 { minor } else { 1 };
            let vword = &rest[rest.len() - 8.min(rest.len())..];
            !clean(vword)
                || target.is_empty()
                || target.iter().any(|b| *b == b' ' || *b == b'\t')
                || !line.ends_with(vword)
        }
    };
    Some(sl)
}

/// `HTTP/x.y SP+ status [SP reason]`, version in any case; a status that is not three digits
/// (`2XX`) is kept as 0 with an anomaly. `None`: no version first.
fn status_line(line: &[u8]) -> Option<StartLine<'_>> {
    let mut it = line.splitn(2, |b| *b == b' ' || *b == b'\t');
    let vword = it.next()?;
    let (major, minor) = parse_version(vword)?;
    let rest = it.next().unwrap_or(&[]).trim_ascii_start();
    let code_len = rest.iter().take_while(|b| **b != b' ' && **b != b'\t').count();
    let code = &rest[..code_len];
    let reason = rest[code_len..].trim_ascii();
    let status = if code.len() == 3 && code.iter().all(u8::is_ascii_digit) {
        code.iter().fold(0u16, |a, b| a * 10 + u16::from(b - b'0'))
    } else {
        0
    };
    Some(StartLine {
        reason: if status == 0 { rest.trim_ascii_end() } else { reason },
        status,
        minor: if major == 1 { minor } else { 1 },
        unusual: status == 0 || !(vword == b"HTTP/1.1" || vword == b"HTTP/1.0"),
        ..StartLine::default()
    })
}

fn parser_config(lenient: bool) -> httparse::ParserConfig {
    let mut c = httparse::ParserConfig::default();
    c.allow_spaces_after_header_name_in_responses(true)
        .allow_obsolete_multiline_headers_in_responses(true)
        .allow_multiple_spaces_in_request_line_delimiters(true)
        .allow_multiple_spaces_in_response_status_delimiters(true)
        .ignore_invalid_headers_in_responses(lenient)
        .ignore_invalid_headers_in_requests(lenient);
    c
}

/// The headers httparse found in `head` (the head's bytes, which hold every name and value).
/// A head that is valid UTF-8 as a whole (nearly all are) is checked once, and its header
/// block copied once: each line is then a pair of ranges of that copy, its value trimmed by
/// moving the range. Otherwise each line is copied on its own, made UTF-8.
fn owned_headers(h: &[httparse::Header<'_>], head: &[u8]) -> Headers {
    let base = head.as_ptr() as usize;
    let off = |p: *const u8| (p as usize).wrapping_sub(base);
    let block = h
        .first()
        .and_then(|f| Some((off(f.name.as_ptr()), std::str::from_utf8(head).ok()?)))
        .and_then(|(from, text)| Some((from, text.get(from..)?)));
    let Some((from, block)) = block else {
        let bytes = h.iter().map(|h| h.name.len() + h.value.len()).sum();
        let mut out = Headers::with_capacity(h.len(), bytes);
        for h in h {
            push_value(&mut out, h.name, h.value);
        }
        return out;
    };
    let mut out = Headers::from_block(block, h.len(), 0);
    let b = block.as_bytes();
    // a character starts at `i` (or `i` is the end)
    let boundary = |i: usize| b.get(i).is_none_or(|c| (*c as i8) >= -0x40);
    for h in h {
        // names and values start and end next to ASCII bytes (`:`, whitespace, CR, LF): in a
        // valid UTF-8 head they are valid slices of it (checked all the same)
        let n = off(h.name.as_ptr()).wrapping_sub(from);
        let v = off(h.value.as_ptr()).wrapping_sub(from);
        let (ne, ve) = (n.wrapping_add(h.name.len()), v.wrapping_add(h.value.len()));
        if n <= ne
            && ne <= b.len()
            && v <= ve
            && ve <= b.len()
            && boundary(n)
            && boundary(ne)
            && boundary(v)
            && boundary(ve)
        {
            let (v, ve) = trim_span(block, v, ve);
            out.push_span(n, ne, v, ve);
        } else {
            push_value(&mut out, h.name, h.value);
        }
    }
    out
}

/// [`trim_value`] of `s[a..b]` (character boundaries), as a range of `s`.
#[inline]
fn trim_span(s: &str, a: usize, b: usize) -> (usize, usize) {
    let visible = |c: u8| c > b' ' && c < 0x80;
    let by = s.as_bytes();
    if a < b && visible(by[a]) && visible(by[b - 1]) {
        return (a, b);
    }
    let t = trim_value(&s[a..b]);
    let t0 = t.as_ptr() as usize - s.as_ptr() as usize;
    (t0, t0 + t.len())
}

/// `v.trim()`, without looking at characters when both ends are visible ASCII.
#[inline]
fn trim_value(v: &str) -> &str {
    let visible = |b: u8| b > b' ' && b < 0x80;
    match v.as_bytes() {
        [f, .., l] if visible(*f) && visible(*l) => v,
        [f] if visible(*f) => v,
        _ => v.trim(),
    }
}

/// A header line with its value trimmed and made UTF-8 (invalid bytes replaced).
pub(super) fn push_value(out: &mut Headers, name: &str, value: &[u8]) {
    match std::str::from_utf8(value) {
        Ok(v) => out.push(name, trim_value(v)),
        Err(_) => out.push(name, String::from_utf8_lossy(value).trim()),
    }
}

/// httparse on an ordinary head: the head's length, its message written to `out` (every
/// field: nothing of what `out` held stays); `Ok(None)` when the head is not complete or
/// httparse refuses something (the caller looks further; `out` untouched), `Err` only for too
/// many headers. Written in place, not returned: a message is a few hundred bytes, and the
/// head parser runs for every one.
fn strict_parse_into(role: Role, head: &[u8], out: &mut Message) -> Result<Option<usize>, HttpAnomaly> {
    if let Some(n) = plain_parse_into(role, head, out) {
        return Ok(Some(n));
    }
    httparse_parse_into(role, head, out)
}

/// RFC 9110 `tchar` (httparse's token map: method and header name bytes).
static TCHAR: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        t[i] = b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'!' | b'#' | b'$' | b'%' | b'&' | b'\'' | b'*' | b'+' | b'-' | b'.' | b'^' | b'_' | b'`' | b'|' | b'~'
            );
        i += 1;
    }
    t
};

/// Byte classes of a plain head, for [`run_end`]: printable ASCII (0x20..=0x7e, reasons),
/// visible ASCII (0x21..=0x7e, a request target), RFC 9110 `tchar` ([`TCHAR`]: methods and
/// header names), printable ASCII or a tab (header values), and letters, digits and `-` (a
/// part of `tchar` that most names and methods are made of, cheaper to test: see
/// [`token_end`]).
const PRINTABLE: u8 = 0;
const VISIBLE: u8 = 1;
const TOKEN: u8 = 2;
const TEXT: u8 = 3;
const NAME: u8 = 4;

/// Is `c` of class `C`? (the byte-by-byte reference of [`run_end`])
#[inline(always)]
fn in_class<const C: u8>(c: u8) -> bool {
    match C {
        PRINTABLE => (0x20..0x7f).contains(&c),
        VISIBLE => (0x21..0x7f).contains(&c),
        TEXT => (0x20..0x7f).contains(&c) || c == b'\t',
        NAME => c.is_ascii_alphanumeric() || c == b'-',
        _ => TCHAR[usize::from(c)],
    }
}

/// Index of the first byte of `b[i..]` not of class `C`, or `b.len()`: one byte at a time
/// (the reference, and the path for inputs shorter than a vector).
#[inline(always)]
fn run_end_bytewise<const C: u8>(b: &[u8], i: usize) -> usize {
    let Some(tail) = b.get(i..) else {
        return b.len();
    };
    i + tail.iter().position(|c| !in_class::<C>(*c)).unwrap_or(tail.len())
}

/// Index of the first byte of `b[i..]` not of class `C`, or `b.len()`. Sixteen bytes per
/// step (SSE2, in every x86_64): the head parser spends most of its time walking names,
/// targets and values, one table lookup and branch per byte before. The last block is the
/// last 16 bytes of `b`, its bits before `i` shifted out: no copy, no read past `b`.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn run_end<const C: u8>(b: &[u8], mut i: usize) -> usize {
    use std::arch::x86_64::{__m128i, _mm_loadu_si128};
    let len = b.len();
    if i >= len {
        return len;
    }
    if len < 16 {
        return run_end_bytewise::<C>(b, i);
    }
    loop {
        let at = i.min(len - 16);
        // SAFETY: `at + 16 <= len`: the 16 bytes are in `b`; an unaligned load needs no
        // alignment.
        let v = unsafe { _mm_loadu_si128(b.as_ptr().add(at).cast::<__m128i>()) };
        // SAFETY: SSE2 is in every x86_64 CPU (the target's baseline).
        let ok = unsafe { block_in_class::<C>(v) };
        let stop = (!ok & 0xffff) >> (i - at);
        if stop != 0 {
            return i + stop.trailing_zeros() as usize;
        }
        i = at + 16;
        if i >= len {
            return len;
        }
    }
}

/// Bit k set: byte k of `v` is of class `C` (see [`run_end`]).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse2")]
#[inline]
fn block_in_class<const C: u8>(v: std::arch::x86_64::__m128i) -> u32 {
    use std::arch::x86_64::{
        _mm_and_si128, _mm_andnot_si128, _mm_cmpeq_epi8, _mm_cmpgt_epi8, _mm_cmplt_epi8, _mm_movemask_epi8,
        _mm_or_si128, _mm_set1_epi8,
    };
    // signed compares: bytes of 0x80 and up are negative, below every ASCII range
    let within = |lo: u8, hi: u8| {
        _mm_and_si128(
            _mm_cmpgt_epi8(v, _mm_set1_epi8(lo as i8 - 1)),
            _mm_cmplt_epi8(v, _mm_set1_epi8(hi as i8 + 1)),
        )
    };
    let ok = match C {
        PRINTABLE => within(0x20, 0x7e),
        VISIBLE => within(0x21, 0x7e),
        TEXT => _mm_or_si128(within(0x20, 0x7e), _mm_cmpeq_epi8(v, _mm_set1_epi8(b'\t' as i8))),
        NAME => {
            // `| 0x20` maps exactly the letters, and nothing else, into `a`..=`z`
            let l = _mm_or_si128(v, _mm_set1_epi8(0x20));
            let letter = _mm_and_si128(
                _mm_cmpgt_epi8(l, _mm_set1_epi8(b'a' as i8 - 1)),
                _mm_cmplt_epi8(l, _mm_set1_epi8(b'z' as i8 + 1)),
            );
            let dash = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'-' as i8));
            _mm_or_si128(_mm_or_si128(letter, within(b'0', b'9')), dash)
        }
        _ => {
            // visible, but not a delimiter: `"(),/` `:;<=>?@` `[\\]` `{}`
            let eq = |c: u8| _mm_cmpeq_epi8(v, _mm_set1_epi8(c as i8));
            let delim = _mm_or_si128(
                _mm_or_si128(
                    _mm_or_si128(within(b':', b'@'), within(b'[', b']')),
                    _mm_or_si128(within(b'(', b')'), eq(b'"')),
                ),
                _mm_or_si128(_mm_or_si128(eq(b','), eq(b'/')), _mm_or_si128(eq(b'{'), eq(b'}'))),
            );
            _mm_andnot_si128(delim, within(0x21, 0x7e))
        }
    };
    _mm_movemask_epi8(ok) as u32
}

#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
fn run_end<const C: u8>(b: &[u8], i: usize) -> usize {
    run_end_bytewise::<C>(b, i)
}

/// [`run_end`] of [`TOKEN`]: over the letters, digits and dashes first (fewer vector
/// operations per block), then, only if a name goes on with another `tchar` (`_`, `.`, ...),
/// over the rest of the token.
#[inline(always)]
fn token_end(b: &[u8], i: usize) -> usize {
    let e = run_end::<NAME>(b, i);
    match b.get(e) {
        Some(&c) if TCHAR[usize::from(c)] => run_end::<TOKEN>(b, e),
        _ => e,
    }
}

/// Index of the first byte of `b[i..]` that is not printable ASCII (0x20..=0x7e), or
/// `b.len()`.
#[inline(always)]
fn printable_run(b: &[u8], i: usize) -> usize {
    run_end::<PRINTABLE>(b, i)
}

/// The common head parsed without httparse: `METHOD SP target SP HTTP/1.x CRLF` or
/// `HTTP/1.x SP ddd SP reason CRLF`, then `name: value CRLF` lines (names of `tchar`s, values
/// of printable ASCII and tabs) and `CRLF`, every byte ASCII. Anything else (a bare LF, a
/// folded line, a space before a colon, a control or non-ASCII byte, more than
/// `MAX_HEADERS` lines, the end of `b` before the end of the head) is `None`, and httparse
/// decides as before: on the heads taken here both give the same message (see the tests).
/// Each line is walked once: its name (a vector run), the spaces after the colon, its value
/// up to the first byte that is neither printable nor a tab (a vector run, which must be the
/// CR of a CRLF); the name's presence bit and known-name index are noted on the way, so the
/// headers are built without another look at the names.
fn plain_parse_into(role: Role, b: &[u8], out: &mut Message) -> Option<usize> {
    let crlf = |i: usize| b.get(i..i + 2) == Some(b"\r\n");
    let version = |i: usize| match b.get(i..i + 8)? {
        b"HTTP/1.1" => Some(1u8),
        b"HTTP/1.0" => Some(0u8),
        _ => None,
    };
    // the start line: (method end, target start and end, status, reason start and end, minor)
    let (i, method_end, target, status, reason, minor) = match role {
        Role::Request => {
            let m = token_end(b, 0);
            if m == 0 || b.get(m) != Some(&b' ') {
                return None;
            }
            let t = m + 1;
            let te = run_end::<VISIBLE>(b, t);
            if te == t || b.get(te) != Some(&b' ') {
                return None;
            }
            let minor = version(te + 1)?;
            if !crlf(te + 9) {
                return None;
            }
            (te + 11, m, (t, te), 0, (0, 0), minor)
        }
        Role::Response => {
            let minor = version(0)?;
            let code = b.get(8..13)?;
            if code[0] != b' ' || code[4] != b' ' || !code[1..4].iter().all(u8::is_ascii_digit) {
                return None;
            }
            let status = code[1..4].iter().fold(0u16, |a, d| a * 10 + u16::from(d - b'0'));
            // (a reason that starts with a space: httparse skips the spaces; left to it)
            if b.get(13) == Some(&b' ') {
                return None;
            }
            let re = printable_run(b, 13);
            if !crlf(re) {
                return None;
            }
            (re + 2, 0, (0, 0), status, (13, re), minor)
        }
    };
    let block = i;
    let mut lines: Vec<[u32; 4]> = Vec::with_capacity(8);
    let mut names = NameIndex::default();
    let i = block + header_lines(b.get(block..)?, &mut lines, &mut names)?;
    let head = &b[..i];
    debug_assert!(head.is_ascii());
    // SAFETY: every byte of `head` was checked above to be ASCII (a `tchar`, printable
    // ASCII, a tab, a space, CR or LF), so it is valid UTF-8.
    let text = unsafe { std::str::from_utf8_unchecked(head) };
    let headers = if lines.is_empty() {
        Headers::default()
    } else {
        Headers::from_token_lines(text[block..].to_string(), lines, names)
    };
    let (method, uri) = (&text[..method_end], &text[target.0..target.1]);
    set_head(out, method, uri, status, &text[reason.0..reason.1], minor, headers);
    Some(i)
}

/// The header lines of a plain head, `b` from just past the start line: each line's ranges
/// (in `b`) in `lines`, its name noted in `names`; the index just past the blank line that
/// ends the head. `None`: not a plain head, or not all of it in `b` (see
/// [`plain_parse_into`]). A function of its own: the line loop keeps its few values in
/// registers.
#[inline(never)]
fn header_lines(b: &[u8], lines: &mut Vec<[u32; 4]>, names: &mut NameIndex) -> Option<usize> {
    let mut i = 0;
    loop {
        // a line starts at `i` (`None`: the head goes on past `b`)
        if *b.get(i)? == b'\r' {
            // the blank line that ends the head (a CR alone is no name byte: refused)
            return (b.get(i + 1) == Some(&b'\n')).then_some(i + 2);
        }
        if lines.len() == MAX_HEADERS {
            return None;
        }
        let ne = token_end(b, i);
        if ne == i || b.get(ne) != Some(&b':') {
            return None;
        }
        let mut v = ne + 1;
        while let Some(b' ' | b'\t') = b.get(v) {
            v += 1;
        }
        let e = run_end::<TEXT>(b, v);
        if b.get(e..e + 2) != Some(b"\r\n") {
            return None;
        }
        // a folded line (obs-fold): left to httparse
        if let Some(b' ' | b'\t') = b.get(e + 2) {
            return None;
        }
        let mut ve = e;
        while ve > v && matches!(b.get(ve - 1), Some(b' ' | b'\t')) {
            ve -= 1;
        }
        names.note_token(lines.len(), b.get(i..ne)?);
        let at = |x: usize| x as u32;
        lines.push([at(i), at(ne), at(v), at(ve)]);
        i = e + 2;
    }
}

/// [`strict_parse_into`] by httparse alone.
fn httparse_parse_into(role: Role, head: &[u8], out: &mut Message) -> Result<Option<usize>, HttpAnomaly> {
    let mut hs = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let res = match role {
        Role::Request => {
            let mut req = httparse::Request::new(&mut []);
            parser_config(false)
                .parse_request_with_uninit_headers(&mut req, head, &mut hs)
                .map(|st| match st {
                    httparse::Status::Complete(n) => {
                        let headers = owned_headers(req.headers, &head[..n]);
                        let (method, uri) = (req.method.unwrap_or(""), req.path.unwrap_or(""));
                        set_head(out, method, uri, 0, "", req.version.unwrap_or(1), headers);
                        Some(n)
                    }
                    httparse::Status::Partial => None,
                })
        }
        Role::Response => {
            let mut resp = httparse::Response::new(&mut []);
            parser_config(false)
                .parse_response_with_uninit_headers(&mut resp, head, &mut hs)
                .map(|st| match st {
                    httparse::Status::Complete(n) => {
                        let headers = owned_headers(resp.headers, &head[..n]);
                        let (code, reason) = (resp.code.unwrap_or(0), resp.reason.unwrap_or(""));
                        set_head(out, "", "", code, reason, resp.version.unwrap_or(1), headers);
                        Some(n)
                    }
                    httparse::Status::Partial => None,
                })
        }
    };
    match res {
        Ok(m) => Ok(m),
        Err(httparse::Error::TooManyHeaders) => Err(HttpAnomaly::TooManyHeaders),
        Err(_) => Ok(None),
    }
}

/// `*m = Message { method, uri, status, reason, minor, headers, ..Message::default() }`, field
/// by field (the message is not built aside and moved in). Every field is named: a field added
/// to [`Message`] does not compile here until it is reset too.
fn set_head(m: &mut Message, method: &str, uri: &str, status: u16, reason: &str, minor: u8, headers: Headers) {
    let Message {
        method: m_method,
        uri: m_uri,
        status: m_status,
        reason: m_reason,
        minor: m_minor,
        headers: m_headers,
        body_len,
        body,
        body_decoded,
        start,
        end,
        gap,
        truncated,
        http09,
        h2,
    } = m;
    *m_method = method.to_string();
    *m_uri = uri.to_string();
    *m_status = status;
    *m_reason = reason.to_string();
    *m_minor = minor;
    *m_headers = headers;
    *body_len = 0;
    *body = Vec::new();
    *body_decoded = false;
    *start = 0;
    *end = 0;
    *gap = false;
    *truncated = false;
    *http09 = false;
    *h2 = false;
}

#[cfg(test)]
/// [`plain_parse_into`] as it was before it noted names while parsing and scanned a line
/// in one run (the reference of the equivalence test): `METHOD SP target SP HTTP/1.x CRLF` or
/// `HTTP/1.x SP ddd SP reason CRLF`, then `name: value CRLF` lines (names of `tchar`s, values
/// of printable ASCII and tabs) and `CRLF`, every byte ASCII. Anything else (a bare LF, a
/// folded line, a space before a colon, a control or non-ASCII byte, more than
/// `MAX_HEADERS` lines, the end of `b` before the end of the head) is `None`, and httparse
/// decides as before: on the heads taken here both give the same message (see the tests).
fn plain_parse_into_old(role: Role, b: &[u8], out: &mut Message) -> Option<usize> {
    let crlf = |i: usize| b.get(i..i + 2) == Some(b"\r\n");
    let version = |i: usize| match b.get(i..i + 8)? {
        b"HTTP/1.1" => Some(1u8),
        b"HTTP/1.0" => Some(0u8),
        _ => None,
    };
    // the start line: (method end, target start and end, status, reason start and end, minor)
    let (mut i, method_end, target, status, reason, minor) = match role {
        Role::Request => {
            let m = run_end::<TOKEN>(b, 0);
            if m == 0 || b.get(m) != Some(&b' ') {
                return None;
            }
            let t = m + 1;
            let te = run_end::<VISIBLE>(b, t);
            if te == t || b.get(te) != Some(&b' ') {
                return None;
            }
            let minor = version(te + 1)?;
            if !crlf(te + 9) {
                return None;
            }
            (te + 11, m, (t, te), 0, (0, 0), minor)
        }
        Role::Response => {
            let minor = version(0)?;
            let code = b.get(8..13)?;
            if code[0] != b' ' || code[4] != b' ' || !code[1..4].iter().all(u8::is_ascii_digit) {
                return None;
            }
            let status = code[1..4].iter().fold(0u16, |a, d| a * 10 + u16::from(d - b'0'));
            // (a reason that starts with a space: httparse skips the spaces; left to it)
            if b.get(13) == Some(&b' ') {
                return None;
            }
            let re = printable_run(b, 13);
            if !crlf(re) {
                return None;
            }
            (re + 2, 0, (0, 0), status, (13, re), minor)
        }
    };
    let block = i;
    let mut spans: Vec<[u32; 4]> = Vec::with_capacity(8);
    loop {
        let rest = b.get(i..)?;
        if rest.starts_with(b"\r\n") {
            i += 2;
            break;
        }
        if spans.len() == MAX_HEADERS {
            return None;
        }
        // (`None`: the head goes on past `b`)
        let ne = run_end::<TOKEN>(rest, 0);
        if ne == rest.len() {
            return None;
        }
        if ne == 0 || rest[ne] != b':' {
            return None;
        }
        let mut j = ne + 1;
        while let Some(b' ' | b'\t') = rest.get(j) {
            j += 1;
        }
        let v = j;
        loop {
            j = printable_run(rest, j);
            match rest.get(j..j + 2) {
                Some(b"\r\n") => break,
                Some([b'\t', _]) => j += 1,
                _ => return None,
            }
        }
        let ve = v + rest[v..j]
            .iter()
            .rposition(|c| *c != b' ' && *c != b'\t')
            .map_or(0, |p| p + 1);
        // a folded line (obs-fold): left to httparse
        if let Some(b' ' | b'\t') = rest.get(j + 2) {
            return None;
        }
        let at = |x: usize| (i + x - block) as u32;
        spans.push([at(0), at(ne), at(v), at(ve)]);
        i += j + 2;
    }
    let head = &b[..i];
    debug_assert!(head.is_ascii());
    // SAFETY: every byte of `head` was checked above to be ASCII (a `tchar`, printable
    // ASCII, a tab, a space, CR or LF), so it is valid UTF-8.
    let text = unsafe { std::str::from_utf8_unchecked(head) };
    let headers = if spans.is_empty() {
        Headers::default()
    } else {
        Headers::from_ascii_spans(text[block..].to_string(), spans)
    };
    let (method, uri) = (&text[..method_end], &text[target.0..target.1]);
    set_head(out, method, uri, status, &text[reason.0..reason.1], minor, headers);
    Some(i)
}

/// [`strict_parse_into`] a fresh message (the tests' form).
#[cfg(test)]
fn strict_parse(role: Role, head: &[u8]) -> Result<Option<(Message, usize)>, HttpAnomaly> {
    let mut m = Message::default();
    strict_parse_into(role, head, &mut m).map(|r| r.map(|n| (m, n)))
}

/// Is this byte one httparse refuses in a header value that nginx passes on?
fn masked(b: u8) -> bool {
    (b < 0x20 && b != b'\t' && b != b'\r' && b != b'\n') || b == 0x7f
}

/// Headers of a head whose start line or header bytes httparse refuses: the header block is
/// copied behind a plain request line with control bytes masked, parsed by httparse (invalid
/// lines skipped, obs-fold tolerated), and each value taken back from the original bytes.
fn lenient_headers(block: &[u8], role: Role, ev: &mut dyn Events) -> Result<Headers, HttpAnomaly> {
    const LINE: &[u8] = b"HTTP/1.1 200 OK\r\n";
    let mut copy = Vec::with_capacity(LINE.len() + block.len());
    copy.extend_from_slice(LINE);
    let mut ctl = false;
    for (i, &b) in block.iter().enumerate() {
        // a CR not followed by LF is a control byte inside a line too
        let bare_cr = b == b'\r' && block.get(i + 1) != Some(&b'\n');
        if masked(b) || bare_cr {
            ctl = true;
            copy.push(b'!');
        } else {
            copy.push(b);
        }
    }
    if ctl {
        ev.anomaly(HttpAnomaly::HeaderControlChar);
    }
    let mut hs = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut []);
    match parser_config(true).parse_response_with_uninit_headers(&mut resp, &copy, &mut hs) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Ok(Headers::default()),
        Err(httparse::Error::TooManyHeaders) => return Err(HttpAnomaly::TooManyHeaders),
        Err(_) => {
            return Err(match role {
                Role::Request => HttpAnomaly::InvalidRequest,
                Role::Response => HttpAnomaly::InvalidResponse,
            });
        }
    }
    let base = copy.as_ptr() as usize + LINE.len();
    let mut out = Headers::with_capacity(resp.headers.len(), block.len());
    for h in resp.headers.iter() {
        let off = (h.value.as_ptr() as usize).saturating_sub(base);
        let v = block.get(off..off + h.value.len()).unwrap_or(h.value);
        push_value(&mut out, h.name, v);
    }
    Ok(out)
}

/// A Content-Length value: decimal digits only (no sign), at most 2^63-1 (as nginx's off_t).
fn parse_content_length(s: &str) -> Option<u64> {
    let s = trim_value(s);
    if s.is_empty() {
        return None;
    }
    // digits only; past u64 is an overflow, as `str::parse` says
    s.bytes()
        .try_fold(0u64, |v, b| {
            if !b.is_ascii_digit() {
                return None;
            }
            v.checked_mul(10)?.checked_add(u64::from(b - b'0'))
        })
        .filter(|v| *v <= i64::MAX as u64)
}

/// `b` as a number when it is 1 to 18 ASCII digits (below 10^18: no overflow, and below
/// i64::MAX), else `None` ([`parse_content_length`] decides).
#[inline]
fn plain_digits(b: &[u8]) -> Option<u64> {
    if b.is_empty() || b.len() > 18 {
        return None;
    }
    b.iter().try_fold(0u64, |v, c| {
        let d = c.wrapping_sub(b'0');
        (d < 10).then_some(v * 10 + u64::from(d))
    })
}

/// Body framing from Transfer-Encoding / Content-Length (RFC 9112 §6.3). `None`: neither.
fn message_framing(m: &Message, ev: &mut dyn Events) -> Option<Framing> {
    let mut te: Option<&str> = None;
    let mut cl: Option<u64> = None;
    let mut cl_bad = false;
    // (neither name present, the common request: no framing header to look for)
    if !m.headers.may_contain(b"transfer-encoding") && !m.headers.may_contain(b"content-length") {
        return None;
    }
    let mut note = |x: Option<u64>| match x {
        Some(x) => match cl {
            Some(c) if c != x => {
                ev.anomaly(HttpAnomaly::MultipleContentLength);
            }
            Some(_) => {}
            None => cl = Some(x),
        },
        None => cl_bad = true,
    };
    let mut content_length = |v: &str| {
        // (one value of a few digits, the common case: nothing to split, trim or check for
        // overflow; what `parse_content_length` gives for it)
        if let Some(x) = plain_digits(v.as_bytes()) {
            note(Some(x));
        } else if v.as_bytes().contains(&b',') {
            for part in v.split(',') {
                note(parse_content_length(part));
            }
        } else {
            note(parse_content_length(v));
        }
    };
    match (
        m.headers.known(Known::TransferEncoding),
        m.headers.known(Known::ContentLength),
    ) {
        // At most one line of each (the common case): their values from the index, as the
        // walk below would find them.
        (Some((t, false)), Some((c, false))) => {
            te = t;
            if let Some(v) = c {
                content_length(v);
            }
        }
        _ => {
            for (n, v) in &m.headers {
                if eq_ignore_case(n.as_bytes(), b"transfer-encoding") {
                    te = Some(v);
                } else if eq_ignore_case(n.as_bytes(), b"content-length") {
                    content_length(v);
                }
            }
        }
    }
    framing_of(te, cl, cl_bad, m.status != 0, ev)
}

/// The framing a message's last transfer-encoding line (`te`) and its content-length values
/// (`cl`: the first valid one; `cl_bad`: an invalid one was seen) give, with their anomalies.
fn framing_of(te: Option<&str>, cl: Option<u64>, cl_bad: bool, response: bool, ev: &mut dyn Events) -> Option<Framing> {
    if let Some(te) = te {
        if cl.is_some() || cl_bad {
            ev.anomaly(HttpAnomaly::ContentLengthAndChunked);
        }
        let last = te.rsplit(',').next().unwrap_or("").trim();
        if last.eq_ignore_ascii_case("chunked") {
            return Some(Framing::Chunked(Chunked::Size));
        }
        ev.anomaly(HttpAnomaly::UnknownTransferEncoding);
        return if response {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// What the head parser made of header values before it checked a head's UTF-8 once:
    /// each value on its own, made UTF-8 (lossy), trimmed.
    fn reference(head: &[u8]) -> Vec<(String, String)> {
        let mut hs = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut resp = httparse::Response::new(&mut hs);
        let r = parser_config(false).parse_response(&mut resp, head);
        assert!(matches!(r, Ok(httparse::Status::Complete(_))), "{r:?}");
        resp.headers
            .iter()
            .map(|h| (h.name.to_string(), String::from_utf8_lossy(h.value).trim().to_string()))
            .collect()
    }

    #[test]
    fn header_values_are_trimmed_and_made_utf8_as_one_by_one() {
        let values: &[&[u8]] = &[
            b"plain",
            b"",
            b"a b",
            b"\ttab\t",
            b"x\xc2\x85",
            b"\xc2\xa0nbsp\xc2\xa0",
            b"\xe3\x80\x80ideographic space\xe3\x80\x80",
            b"caf\xc3\xa9",
            b"\xc3\xa9",
            b"\xe2\x80\xa8",
            b"~",
            b"folded\r\n continued",
        ];
        for v in values {
            for other in [&b"ok"[..], b"bad \xff byte"] {
                let mut head = b"HTTP/1.1 200 OK\r\nA: ".to_vec();
                head.extend_from_slice(v);
                head.extend_from_slice(b"\r\nB: ");
                head.extend_from_slice(other);
                head.extend_from_slice(b"\r\nC:  x  \r\n\r\nbody");
                let want = reference(&head);
                let Ok(Some((msg, n))) = strict_parse(Role::Response, &head) else {
                    panic!("{head:?}");
                };
                assert_eq!(n, head.len() - 4);
                let got: Vec<(String, String)> = msg
                    .headers
                    .iter()
                    .map(|(a, b)| (a.to_string(), b.to_string()))
                    .collect();
                assert_eq!(got, want, "{head:?}");
            }
        }
    }

    #[test]
    fn content_length_values_parse_as_str_parse_says() {
        let reference = |s: &str| {
            let s = s.trim();
            if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            s.parse::<u64>().ok().filter(|v| *v <= i64::MAX as u64)
        };
        for s in [
            "0",
            "00012",
            " 42 ",
            "\u{a0}7",
            "+1",
            "-1",
            "1 2",
            "",
            "  ",
            "9223372036854775807",
            "9223372036854775808",
            "18446744073709551615",
            "18446744073709551616",
            "99999999999999999999999",
            "1x",
            "\u{663}",
        ] {
            assert_eq!(parse_content_length(s), reference(s), "{s:?}");
        }
    }

    /// The digits-only shortcut gives what the full Content-Length parse gives, where it
    /// answers: every short string of digits and odd bytes, and lengths around 18 digits.
    #[test]
    fn plain_digits_agree_with_the_content_length_parse() {
        let alphabet: &[u8] = b"0123456789 ,+-\t/:x\xff";
        let mut seed = 23u64;
        let mut answered = 0;
        for _ in 0..200_000 {
            let len = (tests::lcg(&mut seed) % 22) as usize;
            let b: Vec<u8> = (0..len)
                .map(|_| match tests::lcg(&mut seed) % 4 {
                    0 => alphabet[(tests::lcg(&mut seed) as usize) % alphabet.len()],
                    _ => b'0' + (tests::lcg(&mut seed) % 10) as u8,
                })
                .collect();
            if let Some(x) = plain_digits(&b) {
                answered += 1;
                let s = std::str::from_utf8(&b).unwrap();
                assert_eq!(Some(x), parse_content_length(s), "{s:?}");
                assert!(!b.contains(&b','));
            }
        }
        assert!(answered > 10_000, "{answered}");
        for c in 0..=255u8 {
            let b = [b'1', c];
            assert_eq!(plain_digits(&b).is_some(), c.is_ascii_digit(), "{c:#x}");
        }
        assert_eq!(plain_digits(b"999999999999999999"), Some(999_999_999_999_999_999));
        assert_eq!(plain_digits(b"1000000000000000000"), None);
        assert_eq!(plain_digits(b""), None);
    }

    #[test]
    fn obs_fold_is_a_line_that_starts_with_a_space_or_a_tab() {
        for (head, want) in [
            (&b"A: b\r\n c\r\n\r\n"[..], true),
            (b"A: b\n\tc\n\n", true),
            (b"A: b\r\nC: d\r\n\r\n", false),
            (b"A: b \r\n", false),
            (b"\n", false),
            (b"", false),
        ] {
            let reference = memchr::memchr_iter(b'\n', head).any(|i| matches!(head.get(i + 1), Some(b' ' | b'\t')));
            assert_eq!(has_obs_fold(head), want, "{head:?}");
            assert_eq!(reference, want, "{head:?}");
        }
    }

    /// The obs-fold scan is skipped for request heads httparse took strictly: it refuses any
    /// line that starts with a space or a tab there, wherever the fold is and whatever follows.
    #[test]
    fn strict_request_parse_refuses_every_folded_line() {
        let lines = [
            "GET /x HTTP/1.1",
            "Host: a",
            "X-Long: some value here",
            "Empty:",
            "Cookie: a=b; c=d",
            "User-Agent: t/1.0",
        ];
        let mut seed = 5u64;
        let mut next = || {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (seed >> 33) as usize
        };
        let mut folded = 0;
        for _ in 0..3000 {
            let n = 2 + next() % 5;
            let mut head = String::from(lines[0]);
            for _ in 1..n {
                head.push_str(if next().is_multiple_of(4) { "\n" } else { "\r\n" });
                if next().is_multiple_of(3) {
                    head.push_str([" ", "\t", "  ", " \t"][next() % 4]);
                }
                head.push_str(lines[1 + next() % (lines.len() - 1)]);
            }
            head.push_str("\r\n\r\n");
            let b = head.as_bytes();
            if has_obs_fold(b) {
                folded += 1;
                assert!(!matches!(strict_parse(Role::Request, b), Ok(Some(_))), "{head:?}");
            } else {
                assert!(matches!(strict_parse(Role::Request, b), Ok(Some(_))), "{head:?}");
            }
        }
        assert!(folded > 500, "{folded}");
    }

    /// A head is parsed straight into the half's current message, whatever that held before
    /// (an interim response, a message from a test): the result is the message a fresh parse
    /// gives, field for field, on requests and responses, strict and lenient heads alike.
    #[test]
    fn head_parsed_in_place_leaves_nothing_of_the_previous_message() {
        let dirty = || Message {
            method: "OLD".into(),
            uri: "/old".into(),
            status: 103,
            reason: "Early".into(),
            minor: 0,
            headers: [("x-old", "1")].into_iter().collect(),
            body_len: 9,
            body: b"old body".to_vec(),
            body_decoded: true,
            start: 5,
            end: 6,
            gap: true,
            truncated: true,
            http09: true,
            h2: true,
        };
        let heads: &[(Role, &[u8])] = &[
            (
                Role::Request,
                b"GET /a?b=1 HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer x\r\n\r\n",
            ),
            (Role::Request, b"POST /p HTTP/1.0\r\nContent-Length: 3\r\n\r\nabc"),
            (Role::Request, b"GET /sp ace HTTP/1.1\r\nA: b\r\n\r\n"),
            (Role::Request, b"GET /ctl HTTP/1.1\r\nA: b\x01c\r\n\r\n"),
            (Role::Request, b"GET /09\r\n"),
            (Role::Request, b"PUT /\xff\xfe HTTP/1.1\r\nX: caf\xc3\xa9\r\n\r\n"),
            (
                Role::Response,
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n{}",
            ),
            (Role::Response, b"HTTP/1.1 404 \r\n\r\n"),
            (Role::Response, b"HTTP/1.0 2XX Odd\r\nA: b\r\n\r\n"),
            (Role::Response, b"HTTP/1.1 200 OK\r\nA: b\r\n folded\r\n\r\n"),
            (Role::Response, b"http/1.1 301 Moved\r\nLocation: /x\r\n\r\n"),
        ];
        let mut ev = Anoms::default();
        for (role, head) in heads {
            let mut fresh = Message::default();
            let mut reused = dirty();
            let a = parse_head(*role, head, &mut HeadScan::default(), &mut fresh, &mut ev);
            let b = parse_head(*role, head, &mut HeadScan::default(), &mut reused, &mut ev);
            let (Parsed::Complete(na), Parsed::Complete(nb)) = (a, b) else {
                panic!("not complete: {head:?}");
            };
            assert_eq!(na, nb, "{head:?}");
            assert_eq!(format!("{fresh:?}"), format!("{reused:?}"), "{head:?}");
            assert_eq!(fresh.headers, reused.headers, "{head:?}");
        }
        // strict: the fields httparse gives, and the rest as a new message has them
        let mut m = dirty();
        let head = b"DELETE /x/1 HTTP/1.0\r\nHost: a\r\n\r\n";
        assert_eq!(strict_parse_into(Role::Request, head, &mut m), Ok(Some(head.len())));
        let want = Message {
            method: "DELETE".into(),
            uri: "/x/1".into(),
            minor: 0,
            headers: [("Host", "a")].into_iter().collect(),
            ..Message::default()
        };
        assert_eq!(
            format!(
                "{:?}",
                (&m.method, &m.uri, m.status, &m.reason, m.minor, &m.body, m.body_len)
            ),
            format!(
                "{:?}",
                (
                    &want.method,
                    &want.uri,
                    want.status,
                    &want.reason,
                    want.minor,
                    &want.body,
                    want.body_len
                )
            )
        );
        assert_eq!(m.headers, want.headers);
        assert!(!(m.body_decoded || m.gap || m.truncated || m.http09 || m.h2) && m.start == 0 && m.end == 0);
        // a head httparse leaves incomplete or refuses leaves the message as it was
        let mut m = dirty();
        assert_eq!(
            strict_parse_into(Role::Request, b"GET / HTTP/1.1\r\nHost", &mut m),
            Ok(None)
        );
        assert_eq!(format!("{m:?}"), format!("{:?}", dirty()));
    }

    /// Records anomalies (for the framing comparison; elsewhere ignored).
    #[derive(Default)]
    struct Anoms(Vec<HttpAnomaly>);

    impl Events for Anoms {
        fn role_found(&mut self, _: Role) {}
        fn request_head(&mut self, _: &Message, _: u64) {}
        fn response_head(&mut self, _: &Message) -> ReqKind {
            ReqKind::Other
        }
        fn next_response_kind(&self) -> Option<ReqKind> {
            None
        }
        fn done(&mut self, _: Role, m: &mut Message, _: u64) {
            drop(std::mem::take(m));
        }
        fn lost(&mut self, _: Role, _: u64) {}
        fn anomaly(&mut self, a: HttpAnomaly) {
            self.0.push(a);
        }
        fn tunnel(&mut self) {}
        fn not_http(&mut self) {}
    }

    /// The plain head parser is a shortcut only: on every head it takes (ordinary and
    /// hostile bytes alike: control bytes, bare CR or LF, folds, spaces before a colon,
    /// non-ASCII, cut heads, 128 and 129 lines) httparse gives the same message and length,
    /// field for field; and it does take the ordinary heads.
    #[test]
    fn plain_head_parse_gives_what_httparse_gives() {
        let bases: [(Role, &[u8]); 6] = [
            (
                Role::Request,
                b"GET /api/v1/users/97118?x=1 HTTP/1.1\r\nHost: api.shop.example\r\nUser-Agent: shop-client/2.0\r\nAccept: application/json\r\nAuthorization: Bearer tok097118f6430da6e1282b11\r\n\r\n",
            ),
            (
                Role::Request,
                b"POST /a HTTP/1.0\r\nContent-Type: application/json\r\nContent-Length: 2\r\nX-Empty:\r\nX-Tab:\tv\tw\t\r\n\r\n{}",
            ),
            (
                Role::Response,
                b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Sun, 29 Nov 2026 21:23:12 GMT\r\nContent-Type: application/json\r\nContent-Length: 111\r\nConnection: keep-alive\r\n\r\n{\"a\":1}",
            ),
            (Role::Response, b"HTTP/1.0 404 \r\nA:  b  \r\n\r\n"),
            (Role::Response, b"HTTP/1.1 204 No Content  \r\n\r\n"),
            (Role::Request, b"M-SEARCH * HTTP/1.1\r\nST: ssdp:all\r\nMAN: \"ssdp:discover\"\r\n\r\n"),
        ];
        let mut heads: Vec<(Role, Vec<u8>)> = bases.iter().map(|(r, h)| (*r, h.to_vec())).collect();
        // 128 and 129 header lines
        for n in [128, 129] {
            let mut h = b"GET / HTTP/1.1\r\n".to_vec();
            for i in 0..n {
                h.extend_from_slice(format!("X-{i}: {i}\r\n").as_bytes());
            }
            h.extend_from_slice(b"\r\n");
            heads.push((Role::Request, h));
        }
        let odd: &[u8] = b"\t \r\n\x00\x01\x0b\x7f\x80\xc3\xa9\xff:;\"(/@aAzZ09-";
        let mut seed = 99u64;
        for (role, h) in bases {
            for _ in 0..4000 {
                let mut m = h.to_vec();
                for _ in 0..1 + lcg(&mut seed) % 3 {
                    if m.is_empty() {
                        break;
                    }
                    let at = (lcg(&mut seed) as usize) % m.len();
                    match lcg(&mut seed) % 4 {
                        0 => m[at] = odd[(lcg(&mut seed) as usize) % odd.len()],
                        1 => m.insert(at, odd[(lcg(&mut seed) as usize) % odd.len()]),
                        2 => {
                            m.remove(at);
                        }
                        _ => m.truncate(at),
                    }
                }
                heads.push((role, m));
            }
        }
        let mut plain = 0;
        for (role, h) in &heads {
            let mut a = Message::default();
            let Some(n) = plain_parse_into(*role, h, &mut a) else {
                continue;
            };
            plain += 1;
            let mut b = Message::default();
            assert_eq!(httparse_parse_into(*role, h, &mut b), Ok(Some(n)), "{h:?}");
            assert_eq!(
                (&a.method, &a.uri, a.status, &a.reason, a.minor),
                (&b.method, &b.uri, b.status, &b.reason, b.minor),
                "{h:?}"
            );
            assert_eq!(a.headers, b.headers, "{h:?}");
            assert_eq!(a.headers.bytes(), b.headers.bytes(), "{h:?}");
            for (name, _) in b.headers.iter() {
                assert_eq!(a.header(name), b.header(name), "{name:?} in {h:?}");
            }
        }
        // the six ordinary heads and the 128-line one, and many of their variants
        for (role, h) in heads.iter().take(7) {
            assert!(plain_parse_into(*role, h, &mut Message::default()).is_some(), "{h:?}");
        }
        assert!(plain > 3000, "{plain}");
    }

    /// The plain parser that walks each line once and notes names on the way gives what the
    /// one before it gave (kept above, under `cfg(test)`), to the bytes of the headers' buffer
    /// and index: `None` on the same heads, else the same length and message. Heads: ordinary
    /// ones, every byte value put at every offset of them (and inserted there), cuts at every
    /// offset, random mutations biased to the bytes a head parser decides on, and random
    /// buffers. A head it takes has no folded line (the obs-fold scan is skipped for it).
    #[test]
    fn plain_parse_matches_the_parse_it_replaced() {
        let bases: [(Role, &[u8]); 7] = [
            (
                Role::Request,
                b"GET /api/v1/users/97118?x=1 HTTP/1.1\r\nHost: api.shop.example\r\nUser-Agent: shop-client/2.0\r\nAccept: application/json\r\nAuthorization: Bearer tok097118f6430da6e1282b11\r\n\r\n",
            ),
            (
                Role::Request,
                b"POST /a HTTP/1.0\r\ncontent-type: application/json\r\nCONTENT-LENGTH: 2\r\nX-Empty:\r\nX-Tab:\tv\tw\t\r\nx_y.z: 1\r\n\r\n{}",
            ),
            (
                Role::Response,
                b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Sun, 29 Nov 2026 21:23:12 GMT\r\nContent-Type: application/json\r\nContent-Length: 111\r\nConnection: keep-alive\r\nSet-Cookie: a=b\r\nset-cookie: c=d\r\n\r\n{\"a\":1}",
            ),
            (Role::Response, b"HTTP/1.0 404 \r\nA:  b  \r\nTransfer-Encoding: chunked\r\n\r\n"),
            (Role::Response, b"HTTP/1.1 204 No Content  \r\n\r\n"),
            (Role::Request, b"M-SEARCH * HTTP/1.1\r\nST: ssdp:all\r\nMAN: \"ssdp:discover\"\r\n\r\n"),
            (
                Role::Request,
                b"GET / HTTP/1.1\r\nHost:a\r\nX-Forwarded-For: 1.2.3.4\r\nCookie: k=v\r\nReferer: /r\r\nLocation: /l\r\nContent-Encoding: gzip\r\n\r\n",
            ),
        ];
        let check = |role: Role, h: &[u8]| -> bool {
            let (mut a, mut b) = (Message::default(), Message::default());
            let (na, nb) = (plain_parse_into(role, h, &mut a), plain_parse_into_old(role, h, &mut b));
            assert_eq!(na, nb, "{role:?} {h:?}");
            if let Some(n) = na {
                assert_eq!(format!("{a:?}"), format!("{b:?}"), "{h:?}");
                assert!(!has_obs_fold(&h[..n]), "{h:?}");
            }
            na.is_some()
        };
        let mut taken = 0;
        for (role, h) in bases {
            assert!(check(role, h), "{h:?}");
            for at in 0..=h.len() {
                check(role, &h[..at]);
                for c in 0..=255u8 {
                    let mut m = h.to_vec();
                    if at < m.len() {
                        m[at] = c;
                        taken += usize::from(check(role, &m));
                        m[at] = h[at];
                    }
                    m.insert(at, c);
                    taken += usize::from(check(role, &m));
                }
            }
        }
        let odd: &[u8] = b"\t \r\n\x00\x01\x0b\x7f\x80\xc3\xa9\xff:;\"(/@aAzZ09-_.~";
        let mut seed = 11u64;
        for (role, h) in bases {
            for _ in 0..3000 {
                let mut m = h.to_vec();
                for _ in 0..1 + lcg(&mut seed) % 4 {
                    if m.is_empty() {
                        break;
                    }
                    let at = (lcg(&mut seed) as usize) % m.len();
                    let c = match lcg(&mut seed) % 3 {
                        0 => lcg(&mut seed) as u8,
                        _ => odd[(lcg(&mut seed) as usize) % odd.len()],
                    };
                    match lcg(&mut seed) % 4 {
                        0 => m[at] = c,
                        1 => m.insert(at, c),
                        2 => {
                            m.remove(at);
                        }
                        _ => m.truncate(at),
                    }
                }
                taken += usize::from(check(role, &m));
            }
        }
        // random buffers behind a start line, of text, tokens and line ends
        let alphabet: &[u8] = b"aZ-:: \t\r\n\r\nxY09_.\x01\xff";
        for _ in 0..20000 {
            let role = if lcg(&mut seed).is_multiple_of(2) {
                Role::Request
            } else {
                Role::Response
            };
            let mut m = match role {
                Role::Request => b"GET / HTTP/1.1\r\n".to_vec(),
                Role::Response => b"HTTP/1.1 200 OK\r\n".to_vec(),
            };
            for _ in 0..lcg(&mut seed) % 80 {
                m.push(alphabet[(lcg(&mut seed) as usize) % alphabet.len()]);
            }
            if lcg(&mut seed).is_multiple_of(2) {
                m.extend_from_slice(b"\r\n\r\n");
            }
            taken += usize::from(check(role, &m));
            let raw: Vec<u8> = (0..lcg(&mut seed) % 64).map(|_| lcg(&mut seed) as u8).collect();
            check(role, &raw);
        }
        // 128 and 129 header lines
        for n in [128, 129] {
            let mut h = b"GET / HTTP/1.1\r\n".to_vec();
            for i in 0..n {
                h.extend_from_slice(format!("X-{i}: {i}\r\n").as_bytes());
            }
            h.extend_from_slice(b"\r\n");
            assert_eq!(check(Role::Request, &h), n == 128);
        }
        assert!(taken > 20000, "{taken}");
    }

    /// Body framing read from the header index gives the framing and the anomalies a walk
    /// over every line gives (duplicates, lists, bad values, TE with CL, any case).
    #[test]
    fn framing_from_the_index_agrees_with_a_walk_over_the_lines() {
        let reference = |m: &Message, ev: &mut Anoms| -> Option<Framing> {
            let mut te: Option<&str> = None;
            let mut cl: Option<u64> = None;
            let mut cl_bad = false;
            for (n, v) in &m.headers {
                if n.eq_ignore_ascii_case("transfer-encoding") {
                    te = Some(v);
                } else if n.eq_ignore_ascii_case("content-length") {
                    for part in v.split(',') {
                        match parse_content_length(part) {
                            Some(x) => match cl {
                                Some(c) if c != x => ev.anomaly(HttpAnomaly::MultipleContentLength),
                                Some(_) => {}
                                None => cl = Some(x),
                            },
                            None => cl_bad = true,
                        }
                    }
                }
            }
            // (what the values decide is shared: the walk is what the index stands in for)
            framing_of(te, cl, cl_bad, m.status != 0, ev)
        };
        let lines: &[(&str, &str)] = &[
            ("Content-Length", "5"),
            ("content-length", "7"),
            ("CONTENT-LENGTH", "5, 5"),
            ("Content-Length", "5,6"),
            ("Content-Length", "x"),
            ("Content-Length", ""),
            ("Transfer-Encoding", "chunked"),
            ("transfer-encoding", "gzip"),
            ("Transfer-Encoding", "gzip, chunked"),
            ("Host", "a"),
            ("Upgrade", "h2c"),
            ("Content-Lengths", "9"),
            ("X", "y"),
        ];
        let mut seed = 3u64;
        for round in 0..3000 {
            let n = (lcg(&mut seed) % 5) as usize;
            let mut h = Headers::default();
            if round % 7 == 0 {
                // past 255 lines: no index, a walk
                for i in 0..256 {
                    h.push("X-Pad", &i.to_string());
                }
            }
            for _ in 0..n {
                let (a, b) = lines[(lcg(&mut seed) as usize) % lines.len()];
                h.push(a, b);
            }
            for status in [0u16, 200] {
                let m = Message {
                    status,
                    headers: h.clone(),
                    ..Message::default()
                };
                let (mut x, mut y) = (Anoms::default(), Anoms::default());
                assert_eq!(message_framing(&m, &mut x), reference(&m, &mut y), "{:?}", m.headers);
                assert_eq!(x.0, y.0, "{:?}", m.headers);
            }
        }
    }

    pub(super) fn lcg(seed: &mut u64) -> u64 {
        *seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        *seed >> 33
    }
}

/// The head parser's 16-bytes-at-a-time runs (capfast6) stop where the byte-by-byte walk does.
#[cfg(test)]
mod run_tests {
    use super::*;

    fn check_all(b: &[u8]) {
        for i in 0..=b.len() + 1 {
            assert_eq!(
                run_end::<PRINTABLE>(b, i),
                run_end_bytewise::<PRINTABLE>(b, i),
                "{b:?} from {i}"
            );
            assert_eq!(
                run_end::<VISIBLE>(b, i),
                run_end_bytewise::<VISIBLE>(b, i),
                "{b:?} from {i}"
            );
            assert_eq!(
                run_end::<TOKEN>(b, i),
                run_end_bytewise::<TOKEN>(b, i),
                "{b:?} from {i}"
            );
            assert_eq!(run_end::<TEXT>(b, i), run_end_bytewise::<TEXT>(b, i), "{b:?} from {i}");
            assert_eq!(run_end::<NAME>(b, i), run_end_bytewise::<NAME>(b, i), "{b:?} from {i}");
            if i <= b.len() {
                assert_eq!(token_end(b, i), run_end_bytewise::<TOKEN>(b, i), "{b:?} from {i}");
            }
        }
    }

    #[test]
    fn vector_runs_stop_at_the_byte_the_bytewise_walk_stops_at() {
        // every byte value, at every offset of runs shorter than, as long as and longer than
        // a vector, after a run of each class
        for len in [1usize, 7, 15, 16, 17, 31, 32, 33, 40] {
            for fill in [b'a', b' ', b'\t', b'-', b'~', b'Z', b'5', b'_'] {
                for c in 0..=255u8 {
                    for at in [0, len / 2, len - 1] {
                        let mut b = vec![fill; len];
                        b[at] = c;
                        check_all(&b);
                    }
                }
            }
        }
        // the class of each byte, as the scalar tables say
        for c in 0..=255u8 {
            let b = [c; 20];
            assert_eq!(
                run_end::<TEXT>(&b, 0) == 20,
                (0x20..0x7f).contains(&c) || c == b'\t',
                "{c:#x}"
            );
            assert_eq!(
                run_end::<NAME>(&b, 0) == 20,
                c.is_ascii_alphanumeric() || c == b'-',
                "{c:#x}"
            );
            // (letters, digits and `-` are `tchar`s)
            assert!(!in_class::<NAME>(c) || TCHAR[usize::from(c)], "{c:#x}");
            assert_eq!(run_end::<TOKEN>(&b, 0) == 20, TCHAR[usize::from(c)], "{c:#x}");
            assert_eq!(run_end::<PRINTABLE>(&b, 0) == 20, (0x20..0x7f).contains(&c), "{c:#x}");
            assert_eq!(run_end::<VISIBLE>(&b, 0) == 20, (0x21..0x7f).contains(&c), "{c:#x}");
        }
        // random bytes, biased to ASCII
        let mut seed = 7u64;
        for _ in 0..3000 {
            let n = (tests::lcg(&mut seed) % 70) as usize;
            let b: Vec<u8> = (0..n)
                .map(|_| match tests::lcg(&mut seed) % 8 {
                    0 => tests::lcg(&mut seed) as u8,
                    _ => 0x20 + (tests::lcg(&mut seed) % 0x5f) as u8,
                })
                .collect();
            check_all(&b);
        }
    }
}
