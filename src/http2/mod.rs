//! HTTP/2 in the clear (h2c, RFC 9113) over a reassembled TCP flow, for a passive observer.
//!
//! [`H2Conn`] takes the bytes of both directions (as [`crate::http::conn::Conn`] hands them on
//! once it has recognised HTTP/2: the client preface, an `Upgrade: h2c` answered 101, or, for a
//! connection picked up mid-stream, the frame layout itself) and hands out one
//! [`Transaction`] per stream, with the same [`Message`]s as HTTP/1.x: `:method`, `:path`,
//! `:status` fill the start-line fields, `:authority` becomes a `host` header, so the catalog,
//! rules and detectors see HTTP/2 exactly as HTTP/1.
//!
//! Frames: DATA (padding), HEADERS (priority, padding) + CONTINUATION, PUSH_PROMISE (the pushed
//! response is a transaction), RST_STREAM, SETTINGS (header table size), GOAWAY; others are
//! skipped. Header blocks go through one [`hpack::Decoder`] per direction.
//!
//! Losses: a hole inside a DATA frame is counted and the layout stays in sync; a hole that
//! crosses a frame boundary makes the direction resynchronise on the frame layout and its HPACK
//! table partly unknown (see [`hpack`]): transactions whose headers refer to what was lost are
//! `gap`, the others stay exact.
//!
//! Caps: a header block (with its CONTINUATIONs) is kept up to `max_head` bytes, past it the
//! block is dropped (HEADER_TOO_LONG or HTTP2_CONTINUATION_FLOOD, the table marked unknown);
//! the decoded header list is cut at `max_head`; at most `max_pending` open streams per
//! connection (past it the oldest is reported as it is, HTTP2_TOO_MANY_STREAMS); body bytes
//! kept for inspection are `body_depth` per message and [`MAX_KEPT_BODY`] per connection.

pub mod grpc;
pub mod hpack;
mod huffman_table;

use hashbrown::HashMap;

use crate::capture::Ts;
use crate::http::{Headers, HttpAnomaly, HttpConfig, Message, Transaction, worth_inspecting};

/// RFC 9113 §3.4 client connection preface.
pub const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Body bytes kept for inspection across the open streams of one connection.
pub const MAX_KEPT_BODY: usize = 1 << 20;

/// Stream ids remembered after they were reported.
const CLOSED_KEPT: usize = 64;

/// CONTINUATION frames accepted for one header block (an empty CONTINUATION flood costs no
/// memory but unbounded work otherwise).
const MAX_CONTINUATIONS: u32 = 256;

/// Payload kept for the control frames we read (SETTINGS, RST_STREAM, GOAWAY...).
const MAX_CONTROL: usize = 4096;

/// Frame layout used to find frames in bytes of unknown alignment: a frame this long is
/// possible (up to 2^24-1) but not believed while resynchronising.
const SYNC_MAX_LEN: u32 = 1 << 20;

mod ty {
    pub const DATA: u8 = 0;
    pub const HEADERS: u8 = 1;
    pub const PRIORITY: u8 = 2;
    pub const RST_STREAM: u8 = 3;
    pub const SETTINGS: u8 = 4;
    pub const PUSH_PROMISE: u8 = 5;
    pub const PING: u8 = 6;
    pub const GOAWAY: u8 = 7;
    pub const WINDOW_UPDATE: u8 = 8;
    pub const CONTINUATION: u8 = 9;
}

mod flag {
    pub const END_STREAM: u8 = 0x1;
    pub const ACK: u8 = 0x1;
    pub const END_HEADERS: u8 = 0x4;
    pub const PADDED: u8 = 0x8;
    pub const PRIORITY: u8 = 0x20;
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Frame {
    len: u32,
    typ: u8,
    flags: u8,
    sid: u32,
    /// The reserved bit of the stream id was set.
    reserved: bool,
}

impl Frame {
    fn parse(h: &[u8; 9]) -> Frame {
        Frame {
            len: u32::from_be_bytes([0, h[0], h[1], h[2]]),
            typ: h[3],
            flags: h[4],
            sid: u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff,
            reserved: h[5] & 0x80 != 0,
        }
    }

    /// Does the frame break RFC 9113's rules on stream ids and fixed lengths?
    fn valid(&self) -> bool {
        let on_stream = self.sid != 0;
        match self.typ {
            ty::DATA | ty::HEADERS | ty::CONTINUATION => on_stream,
            ty::PRIORITY => on_stream && self.len == 5,
            ty::RST_STREAM => on_stream && self.len == 4,
            ty::PUSH_PROMISE => on_stream && self.len >= 4,
            ty::SETTINGS => !on_stream && self.len.is_multiple_of(6) && (self.flags & flag::ACK == 0 || self.len == 0),
            ty::PING => !on_stream && self.len == 8,
            ty::GOAWAY => !on_stream && self.len >= 8,
            ty::WINDOW_UPDATE => self.len == 4,
            _ => true,
        }
    }

    /// Stricter: what a frame found in bytes of unknown alignment must look like (known type,
    /// only defined flags, reserved bit clear, a believable length).
    fn plausible(&self) -> bool {
        let flags = match self.typ {
            ty::DATA => 0x09,
            ty::HEADERS => 0x2d,
            ty::SETTINGS | ty::PING => 0x01,
            ty::PUSH_PROMISE => 0x0c,
            ty::CONTINUATION => 0x04,
            ty::PRIORITY | ty::RST_STREAM | ty::GOAWAY | ty::WINDOW_UPDATE => 0,
            _ => return false,
        };
        self.valid() && !self.reserved && self.flags & !flags == 0 && self.len <= SYNC_MAX_LEN
    }
}

fn header_at(b: &[u8]) -> Option<Frame> {
    let h: &[u8; 9] = b.get(..9)?.try_into().ok()?;
    Some(Frame::parse(h))
}

/// Where in `b` (bytes of unknown alignment) an HTTP/2 frame starts, judged by the layout:
/// plausible frame headers, each length leading to the next. The first offset whose chain of
/// frames ends exactly at the end of `b` wins (segments usually end at a frame boundary; a
/// SETTINGS payload can look like a frame or two, rarely like a chain that ends right);
/// else the first whose first two frames chain (or, unless `strict`, a single frame at offset
/// 0 that runs past the end).
pub fn find_frames(b: &[u8], strict: bool) -> Option<usize> {
    // a believable length (< 2^20) starts with a byte <= 0x10: text is passed over at once
    let cands = || (0..b.len().saturating_sub(8)).filter(|&k| b[k] <= 0x10);
    if let Some(k) = cands().find(|&k| chain(&b[k..]) == Chain::Exact) {
        return Some(k);
    }
    cands().find(|&k| match chain(&b[k..]) {
        Chain::Exact | Chain::Two => true,
        Chain::One => k == 0 && !strict,
        Chain::No => false,
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chain {
    /// Frames that end exactly at the end of the bytes (two or more, or one with a payload).
    Exact,
    /// At least two frames chain.
    Two,
    /// One plausible frame header, running past the end.
    One,
    No,
}

fn chain(b: &[u8]) -> Chain {
    let mut off = 0usize;
    let mut n = 0;
    while let Some(f) = header_at(&b[off..]) {
        if !f.plausible() {
            return if n >= 2 { Chain::Two } else { Chain::No };
        }
        n += 1;
        off += 9 + f.len as usize;
        if off == b.len() {
            return if n >= 2 || f.len > 0 { Chain::Exact } else { Chain::One };
        }
        if off > b.len() {
            break;
        }
    }
    match n {
        0 => Chain::No,
        1 => Chain::One,
        _ => Chain::Two,
    }
}

/// Does `d` start with a SETTINGS frame (not an ACK), as a server's first bytes do?
pub fn starts_settings(d: &[u8]) -> bool {
    header_at(d).is_some_and(|f| f.typ == ty::SETTINGS && f.flags & flag::ACK == 0 && f.plausible())
}

/// Does a direction start with (a prefix of) the client preface?
pub fn starts_preface(d: &[u8]) -> bool {
    let n = d.len().min(PREFACE.len());
    n >= 4 && d[..n] == PREFACE[..n]
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum St {
    /// Skipping the client preface (bytes matched so far); a direction that does not start
    /// with it starts with a frame.
    Preface(usize),
    Head,
    /// A frame whose payload is kept in `buf` (`keep`) or skipped.
    Payload {
        keep: bool,
    },
    /// DATA payload: waiting for the pad length (`pad == None`), then data, then padding.
    Data,
    Resync,
}

/// A header block being assembled (HEADERS or PUSH_PROMISE, then CONTINUATIONs).
#[derive(Debug, Default)]
struct Block {
    bytes: Vec<u8>,
    sid: u32,
    /// The stream the block opens: the promised one for a PUSH_PROMISE.
    target: u32,
    end_stream: bool,
    push: bool,
    continuations: u32,
    /// Dropped (too long, or damaged by a loss): the rest of it is skipped.
    broken: bool,
    start: Ts,
}

struct Dir {
    st: St,
    hpack: hpack::Decoder,
    hdr: [u8; 9],
    hdr_n: usize,
    frame: Frame,
    /// Payload bytes of the current frame not yet consumed.
    left: u32,
    buf: Vec<u8>,
    /// DATA: pad length read (or the frame is not padded).
    pad: Option<u8>,
    block: Option<Block>,
    frame_ts: Ts,
}

impl Dir {
    fn new(st: St, known: bool) -> Self {
        let mut hpack = hpack::Decoder::new();
        if !known {
            hpack.lose();
        }
        Dir {
            st,
            hpack,
            hdr: [0; 9],
            hdr_n: 0,
            frame: Frame::default(),
            left: 0,
            buf: Vec::new(),
            pad: None,
            block: None,
            frame_ts: 0,
        }
    }
}

#[derive(Default)]
struct Stream {
    /// The message each direction sends on this stream (`msg[client]` is the request).
    msg: [Option<Message>; 2],
    done: [bool; 2],
    grpc: [grpc::Framer; 2],
    is_grpc: bool,
    gap: bool,
    /// Bytes of body kept by its messages (counted against [`MAX_KEPT_BODY`]).
    kept: usize,
    /// Its request came in a PUSH_PROMISE from direction `pushed_by`.
    pushed_by: Option<usize>,
    /// Direction d lost bytes before this stream's message in it began: if that message never
    /// shows up complete, it may have been in the hole.
    maybe_lost: [bool; 2],
}

/// Counters of one connection, added to the flow stats when it ends.
#[derive(Debug, Clone, Copy, Default)]
pub struct H2Stats {
    pub streams: u64,
    pub frames: u64,
    pub resyncs: u64,
    /// Streams reported whose headers were not known at all (dropped, not reported).
    pub unknown_streams: u64,
}

struct Shared {
    streams: HashMap<u32, Stream>,
    out: Vec<Transaction>,
    anomalies: Vec<HttpAnomaly>,
    client: Option<usize>,
    kept: usize,
    stats: H2Stats,
    /// Open streams kept (`max_pending`).
    max_streams: usize,
    /// Recognised by the frame layout alone: no anomaly is reported, and the first frame error
    /// ends it (`failed`: the connection is not HTTP/2 after all), until a header block decodes
    /// into a request or a response.
    tentative: bool,
    failed: bool,
    /// The last streams reported (most recent last, at most [`CLOSED_KEPT`]): frames that
    /// still come for them (the answer to a request the client reset, crossing its
    /// RST_STREAM) are decoded for the table and otherwise ignored, not a new stream.
    closed: std::collections::VecDeque<u32>,
}

pub struct H2Conn {
    dirs: [Dir; 2],
    s: Shared,
}

/// How a direction starts when HTTP/2 is recognised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// At the first byte of the connection: the client preface (for the client) or a frame.
    Beginning,
    /// Somewhere in the middle: find the frame layout, the table is unknown.
    Midstream,
}

impl H2Conn {
    pub fn new(client: Option<usize>, start: [Start; 2], cfg: &HttpConfig) -> Self {
        let dir = |s: Start| match s {
            Start::Beginning => Dir::new(St::Preface(0), true),
            Start::Midstream => Dir::new(St::Resync, false),
        };
        H2Conn {
            dirs: [dir(start[0]), dir(start[1])],
            s: Shared {
                streams: HashMap::new(),
                out: Vec::new(),
                anomalies: Vec::new(),
                client,
                kept: 0,
                stats: H2Stats::default(),
                max_streams: cfg.max_pending.max(1),
                tentative: false,
                failed: false,
                closed: std::collections::VecDeque::new(),
            },
        }
    }

    /// After `Upgrade: h2c` answered 101: the HTTP/1.1 request is stream 1's, the client sends
    /// the preface next, the server's frames follow its 101.
    pub fn upgraded(client: usize, mut request: Message, cfg: &HttpConfig) -> Self {
        let mut c = H2Conn::new(Some(client), [Start::Beginning, Start::Beginning], cfg);
        c.dirs[client ^ 1].st = St::Head;
        request.h2 = true;
        let st = Stream {
            msg: {
                let mut m: [Option<Message>; 2] = Default::default();
                m[client] = Some(request);
                m
            },
            done: {
                let mut d = [false; 2];
                d[client] = true;
                d
            },
            ..Stream::default()
        };
        c.s.streams.insert(1, st);
        c.s.mark_grpc(1);
        c
    }

    pub fn client(&self) -> Option<usize> {
        self.s.client
    }

    /// Recognised by its frame layout only (a flow joined late, or a server speaking first):
    /// until a header block confirms it, a frame error means it was not HTTP/2 ([`Self::failed`]).
    pub fn set_tentative(&mut self) {
        self.s.tentative = true;
    }

    /// A tentative HTTP/2 connection broke the frame rules: it is something else.
    pub fn failed(&self) -> bool {
        self.s.failed
    }

    /// Still unconfirmed: no request or response seen yet.
    pub fn tentative(&self) -> bool {
        self.s.tentative
    }

    pub fn stats(&self) -> H2Stats {
        self.s.stats
    }

    pub fn take(&mut self, txs: &mut Vec<Transaction>, anomalies: &mut Vec<HttpAnomaly>) {
        txs.append(&mut self.s.out);
        anomalies.append(&mut self.s.anomalies);
    }

    pub fn has_output(&self) -> bool {
        !self.s.out.is_empty() || !self.s.anomalies.is_empty()
    }

    pub fn data(&mut self, dir: usize, mut d: &[u8], ts: Ts, cfg: &HttpConfig) {
        let dir = dir & 1;
        while !d.is_empty() && !self.s.failed {
            let dr = &mut self.dirs[dir];
            match dr.st {
                St::Preface(n) => {
                    let m = d.iter().zip(&PREFACE[n..]).take_while(|(a, b)| a == b).count();
                    if n + m == PREFACE.len() {
                        d = &d[m..];
                        dr.st = St::Head;
                        self.s.tentative = false;
                        if self.s.client.is_none() {
                            self.s.client = Some(dir);
                        }
                    } else if m == d.len() {
                        dr.st = St::Preface(n + m);
                        return;
                    } else if n == 0 {
                        dr.st = St::Head;
                    } else {
                        self.s.anomaly(HttpAnomaly::H2Frame);
                        self.lose(dir, ts);
                    }
                }
                St::Head => {
                    let n = (9 - dr.hdr_n).min(d.len());
                    dr.hdr[dr.hdr_n..dr.hdr_n + n].copy_from_slice(&d[..n]);
                    dr.hdr_n += n;
                    d = &d[n..];
                    if dr.hdr_n == 9 {
                        dr.hdr_n = 0;
                        let f = Frame::parse(&dr.hdr);
                        self.begin_frame(dir, f, ts, cfg);
                    }
                }
                St::Payload { keep } => {
                    let n = (dr.left as usize).min(d.len());
                    if keep {
                        dr.buf.extend_from_slice(&d[..n]);
                    }
                    dr.left -= n as u32;
                    d = &d[n..];
                    if dr.left == 0 {
                        self.end_frame(dir, ts, cfg);
                    }
                }
                St::Data => {
                    let n = self.data_bytes(dir, d, ts, cfg);
                    d = &d[n..];
                }
                St::Resync => match find_frames(d, false) {
                    Some(k) => {
                        d = &d[k..];
                        dr.st = St::Head;
                        dr.hdr_n = 0;
                    }
                    None => return,
                },
            }
        }
    }

    /// `n` bytes of direction `dir` were lost.
    pub fn gap(&mut self, dir: usize, n: u64, ts: Ts) {
        let dir = dir & 1;
        if self.s.failed {
            return;
        }
        let dr = &mut self.dirs[dir];
        if n == 0 {
            return;
        }
        match dr.st {
            St::Data if n <= dr.left as u64 && dr.pad.is_some() => {
                let pad = dr.pad.unwrap_or(0) as u64;
                let data_left = (dr.left as u64).saturating_sub(pad);
                let lost_data = n.min(data_left);
                dr.left -= n as u32;
                let sid = dr.frame.sid;
                let s = &mut self.s;
                if let Some(st) = s.streams.get_mut(&sid) {
                    st.gap = true;
                    st.grpc[dir].gap(lost_data);
                    if let Some(m) = st.msg[dir].as_mut() {
                        m.gap = true;
                        m.body_len += lost_data;
                    }
                }
                if dr.left == 0 {
                    self.end_data(dir, ts);
                }
            }
            St::Payload { .. } if n < dr.left as u64 => {
                dr.left -= n as u32;
                dr.st = St::Payload { keep: false };
                if matches!(dr.frame.typ, ty::HEADERS | ty::CONTINUATION | ty::PUSH_PROMISE) {
                    // the block's fields (and its table insertions) are gone
                    dr.hpack.lose();
                    if let Some(b) = dr.block.as_mut() {
                        b.broken = true;
                    }
                    let sid = dr.frame.sid;
                    self.s.stream_gap(sid, dir);
                } else if dr.frame.typ != ty::DATA {
                    dr.buf.clear();
                }
            }
            _ => self.lose(dir, ts),
        }
    }

    /// The direction lost its frame layout: resynchronise, table unknown, every stream with a
    /// message still open in this direction marked.
    fn lose(&mut self, dir: usize, _ts: Ts) {
        let dr = &mut self.dirs[dir];
        dr.st = St::Resync;
        dr.hdr_n = 0;
        dr.buf.clear();
        dr.block = None;
        dr.hpack.lose();
        self.s.stats.resyncs += 1;
        self.s.anomaly(HttpAnomaly::Gap);
        for st in self.s.streams.values_mut() {
            if st.done[dir] {
                continue;
            }
            match st.msg[dir].as_mut() {
                Some(m) => {
                    st.gap = true;
                    st.grpc[dir].lost = true;
                    m.gap = true;
                }
                None => st.maybe_lost[dir] = true,
            }
        }
    }

    pub fn eof(&mut self, dir: usize, _ts: Ts) {
        let dr = &mut self.dirs[dir & 1];
        dr.buf = Vec::new();
        dr.block = None;
    }

    /// End of the flow: every open stream is reported as it is.
    pub fn flush(&mut self, ts: Ts) {
        let mut ids: Vec<u32> = self.s.streams.keys().copied().collect();
        ids.sort_unstable();
        for id in ids {
            self.s.finish(id, ts, true);
        }
    }

    fn begin_frame(&mut self, dir: usize, f: Frame, ts: Ts, cfg: &HttpConfig) {
        self.s.stats.frames += 1;
        let dr = &mut self.dirs[dir];
        dr.frame = f;
        dr.frame_ts = ts;
        dr.left = f.len;
        dr.buf.clear();
        if !f.valid() {
            self.s.anomaly(HttpAnomaly::H2Frame);
            self.lose(dir, ts);
            return;
        }
        if let Some(b) = dr.block.as_ref()
            && (f.typ != ty::CONTINUATION || f.sid != b.sid)
        {
            // RFC 9113 §6.10: nothing may come between a block's frames
            let sid = b.sid;
            dr.block = None;
            dr.hpack.lose();
            self.s.anomaly(HttpAnomaly::H2Frame);
            self.s.stream_gap(sid, dir);
        }
        let dr = &mut self.dirs[dir];
        dr.st = match f.typ {
            ty::DATA => {
                dr.pad = if f.flags & flag::PADDED != 0 { None } else { Some(0) };
                St::Data
            }
            ty::HEADERS | ty::PUSH_PROMISE | ty::CONTINUATION => {
                let have = dr.block.as_ref().map_or(0, |b| b.bytes.len());
                let keep = (have + f.len as usize) <= cfg.max_head;
                St::Payload { keep }
            }
            ty::SETTINGS | ty::RST_STREAM | ty::GOAWAY => St::Payload {
                keep: f.len as usize <= MAX_CONTROL,
            },
            _ => St::Payload { keep: false },
        };
        if f.typ == ty::DATA && f.len == 0 {
            self.end_data(dir, ts);
        } else if f.len == 0 {
            self.end_frame(dir, ts, cfg);
        }
    }

    /// DATA payload bytes; returns how many of `d` were consumed.
    fn data_bytes(&mut self, dir: usize, d: &[u8], ts: Ts, cfg: &HttpConfig) -> usize {
        let dr = &mut self.dirs[dir];
        let mut used = 0;
        let pad = match dr.pad {
            Some(p) => p,
            None => {
                let p = d[0];
                dr.pad = Some(p);
                dr.left -= 1;
                used = 1;
                if p as u32 > dr.left {
                    self.s.anomaly(HttpAnomaly::H2Frame);
                    self.lose(dir, ts);
                    return used;
                }
                p
            }
        };
        let data_left = dr.left.saturating_sub(pad as u32) as usize;
        let rest = &d[used..];
        let n = data_left.min(rest.len());
        if n > 0 {
            let sid = dr.frame.sid;
            self.s.body(sid, dir, &rest[..n], ts, cfg);
        }
        // padding after the data
        let dr = &mut self.dirs[dir];
        let after = rest.len() - n;
        let pad_left = (dr.left as usize - n).min(after);
        let consumed = n + pad_left;
        dr.left -= consumed as u32;
        used += consumed;
        if dr.left == 0 {
            self.end_data(dir, ts);
        }
        used
    }

    fn end_data(&mut self, dir: usize, ts: Ts) {
        let dr = &mut self.dirs[dir];
        dr.st = St::Head;
        let f = dr.frame;
        if f.flags & flag::END_STREAM != 0 {
            self.s.end_stream(f.sid, dir, ts);
        }
    }

    fn end_frame(&mut self, dir: usize, ts: Ts, cfg: &HttpConfig) {
        let dr = &mut self.dirs[dir];
        dr.st = St::Head;
        let f = dr.frame;
        let kept = dr.buf.len() == f.len as usize;
        let p = std::mem::take(&mut dr.buf);
        match f.typ {
            ty::HEADERS | ty::PUSH_PROMISE => {
                let mut b = Block {
                    sid: f.sid,
                    target: f.sid,
                    end_stream: f.typ == ty::HEADERS && f.flags & flag::END_STREAM != 0,
                    push: f.typ == ty::PUSH_PROMISE,
                    start: dr.frame_ts,
                    ..Block::default()
                };
                match fragment(&f, &p) {
                    Some((frag, promised)) if kept => {
                        b.bytes.extend_from_slice(frag);
                        if let Some(pid) = promised {
                            b.target = pid;
                        }
                    }
                    _ => {
                        b.broken = true;
                        if !kept && f.len as usize > cfg.max_head {
                            self.s.anomaly(HttpAnomaly::HeadTooLong);
                        } else if kept {
                            self.s.anomaly(HttpAnomaly::H2Frame);
                        }
                    }
                }
                dr.buf = p;
                dr.buf.clear();
                dr.block = Some(b);
                if f.flags & flag::END_HEADERS != 0 {
                    self.complete_block(dir, ts, cfg);
                }
            }
            ty::CONTINUATION => {
                let Some(b) = dr.block.as_mut() else {
                    // a CONTINUATION without its HEADERS (or after a dropped one)
                    self.s.anomaly(HttpAnomaly::H2Frame);
                    return;
                };
                b.continuations += 1;
                if b.continuations > MAX_CONTINUATIONS && !b.broken {
                    b.broken = true;
                    b.bytes = Vec::new();
                    self.s.anomaly(HttpAnomaly::H2ContinuationFlood);
                }
                if !b.broken {
                    if kept {
                        b.bytes.extend_from_slice(&p);
                    } else {
                        b.broken = true;
                        b.bytes = Vec::new();
                        self.s.anomaly(HttpAnomaly::H2ContinuationFlood);
                    }
                }
                dr.buf = p;
                dr.buf.clear();
                if f.flags & flag::END_HEADERS != 0 {
                    self.complete_block(dir, ts, cfg);
                }
            }
            ty::RST_STREAM => self.s.finish(f.sid, ts, true),
            ty::SETTINGS if kept && f.flags & flag::ACK == 0 => {
                for e in p.chunks_exact(6) {
                    let id = u16::from_be_bytes([e[0], e[1]]);
                    let v = u32::from_be_bytes([e[2], e[3], e[4], e[5]]);
                    if id == 1 {
                        // the table this side keeps for the headers the peer sends
                        self.dirs[dir ^ 1].hpack.limit = v as usize;
                    }
                }
                self.dirs[dir].buf = p;
            }
            _ => self.dirs[dir].buf = p,
        }
    }

    fn complete_block(&mut self, dir: usize, ts: Ts, cfg: &HttpConfig) {
        let dr = &mut self.dirs[dir];
        let Some(b) = dr.block.take() else { return };
        if b.broken {
            dr.hpack.lose();
            self.s.stream_gap(b.target, dir);
            if b.end_stream {
                self.s.end_stream(b.target, dir, ts);
            }
            return;
        }
        let mut fields: Vec<(String, String)> = Vec::new();
        let r = dr.hpack.decode(&b.bytes, cfg.max_head, &mut |n, v| {
            fields.push((
                String::from_utf8_lossy(n).into_owned(),
                String::from_utf8_lossy(v).into_owned(),
            ))
        });
        let unknown = match r {
            Ok(info) => {
                if info.dropped > 0 {
                    self.s.anomaly(HttpAnomaly::HeadTooLong);
                }
                if info.oversized_table {
                    self.s.anomaly(HttpAnomaly::HpackTableSize);
                }
                info.unknown > 0
            }
            Err(_) => {
                dr.hpack.lose();
                self.s.anomaly(HttpAnomaly::HpackError);
                true
            }
        };
        let side = if b.push { dir ^ 1 } else { dir };
        self.s
            .headers(b.target, side, fields, unknown, b.push, b.start, ts, cfg);
        if b.end_stream {
            self.s.end_stream(b.target, dir, ts);
        }
        if b.push && self.s.client.is_none() {
            self.s.client = Some(dir ^ 1);
        }
    }
}

/// The header block fragment of a HEADERS or PUSH_PROMISE payload (padding and priority
/// removed), and the promised stream id.
fn fragment<'a>(f: &Frame, p: &'a [u8]) -> Option<(&'a [u8], Option<u32>)> {
    let mut b = p;
    let mut pad = 0usize;
    if f.flags & flag::PADDED != 0 {
        pad = *b.first()? as usize;
        b = &b[1..];
    }
    let mut promised = None;
    if f.typ == ty::PUSH_PROMISE {
        let id = b.get(..4)?;
        promised = Some(u32::from_be_bytes([id[0], id[1], id[2], id[3]]) & 0x7fff_ffff);
        b = &b[4..];
    } else if f.flags & flag::PRIORITY != 0 {
        b = b.get(5..)?;
    }
    let end = b.len().checked_sub(pad)?;
    Some((&b[..end], promised))
}

impl Shared {
    fn anomaly(&mut self, a: HttpAnomaly) {
        if !self.tentative {
            self.anomalies.push(a);
        } else if matches!(a, HttpAnomaly::H2Frame | HttpAnomaly::HpackError) {
            self.failed = true;
        }
    }

    fn stream(&mut self, sid: u32, ts: Ts) -> &mut Stream {
        if !self.streams.contains_key(&sid) {
            if self.streams.len() >= self.max_streams {
                self.anomaly(HttpAnomaly::H2TooManyStreams);
                if let Some(old) = self.streams.keys().min().copied() {
                    self.finish(old, ts, true);
                }
            }
            self.stats.streams += 1;
        }
        self.streams.entry(sid).or_default()
    }

    fn is_closed(&self, sid: u32) -> bool {
        !self.streams.contains_key(&sid) && self.closed.contains(&sid)
    }

    fn stream_gap(&mut self, sid: u32, dir: usize) {
        if self.is_closed(sid) {
            return;
        }
        if let Some(st) = self.streams.get_mut(&sid) {
            st.gap = true;
            if let Some(m) = st.msg[dir].as_mut() {
                m.gap = true;
            }
        } else if sid != 0 {
            // headers of a stream we never saw were lost
            let st = self.streams.entry(sid).or_default();
            st.gap = true;
        }
    }

    fn mark_grpc(&mut self, sid: u32) {
        if let Some(st) = self.streams.get_mut(&sid) {
            st.is_grpc = st
                .msg
                .iter()
                .flatten()
                .any(|m| m.header("content-type").is_some_and(grpc::is_grpc));
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn headers(
        &mut self,
        sid: u32,
        dir: usize,
        fields: Vec<(String, String)>,
        unknown: bool,
        push: bool,
        start: Ts,
        ts: Ts,
        cfg: &HttpConfig,
    ) {
        let mut m = Message {
            h2: true,
            minor: 0,
            start,
            end: ts,
            gap: unknown,
            ..Message::default()
        };
        let mut authority = None;
        let mut pseudo = false;
        let mut headers = Vec::with_capacity(fields.len() + 1);
        for (n, v) in fields {
            match n.as_str() {
                ":method" => (m.method, pseudo) = (v, true),
                ":path" => (m.uri, pseudo) = (v, true),
                ":authority" => (authority, pseudo) = (Some(v), true),
                ":status" => {
                    m.status = v.trim().parse().unwrap_or(0);
                    pseudo = true;
                    if m.status == 0 {
                        self.anomaly(HttpAnomaly::InvalidStatus);
                    }
                }
                ":scheme" | ":protocol" => pseudo = true,
                _ => headers.push((n, v)),
            }
        }
        let bytes = headers.iter().map(|(n, v)| n.len() + v.len()).sum::<usize>();
        m.headers = Headers::with_capacity(headers.len() + 1, bytes + authority.as_ref().map_or(0, |a| a.len() + 4));
        if let Some(a) = authority
            && !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("host"))
        {
            m.headers.push("host", &a);
        }
        m.headers.extend(headers.iter().map(|(n, v)| (n.as_str(), v.as_str())));
        if (!m.method.is_empty() && !m.uri.is_empty()) || (100..600).contains(&m.status) {
            // a request or a response: this is HTTP/2
            self.tentative = false;
        }
        if (100..200).contains(&m.status) || self.is_closed(sid) {
            // interim response (103 Early Hints): not the answer; or a stream already reported
            return;
        }
        if m.status != 0 && self.client.is_none() {
            self.client = Some(dir ^ 1);
        }
        if !m.method.is_empty() && self.client.is_none() {
            self.client = Some(dir);
        }
        let st = self.stream(sid, ts);
        if push {
            st.pushed_by = Some(dir ^ 1);
            st.done[dir] = true;
        }
        match st.msg[dir].as_mut() {
            Some(prev) if !pseudo && (prev.status != 0 || !prev.method.is_empty()) => {
                // trailers; all of a stream's header lines together are held to `max_head`
                // (HPACK references make a few wire bytes into kilobytes of headers)
                if prev.headers.bytes() + m.headers.bytes() > cfg.max_head {
                    self.anomaly(HttpAnomaly::HeadTooLong);
                    return;
                }
                prev.headers.extend(m.headers.iter());
                prev.gap |= m.gap;
                prev.end = ts;
            }
            Some(prev) if prev.status == 0 && prev.method.is_empty() => {
                // data came first (its headers were lost): keep what was counted
                m.body_len = prev.body_len;
                m.body = std::mem::take(&mut prev.body);
                m.gap = true;
                *prev = m;
            }
            Some(_) => {
                // a second header block with pseudo-headers: malformed, keep the first
                st.gap |= unknown;
                self.anomaly(HttpAnomaly::H2Frame);
                return;
            }
            None => st.msg[dir] = Some(m),
        }
        if unknown {
            st.gap = true;
        }
        let _ = cfg;
        self.mark_grpc(sid);
    }

    fn body(&mut self, sid: u32, dir: usize, d: &[u8], ts: Ts, cfg: &HttpConfig) {
        if self.is_closed(sid) {
            return;
        }
        let room = MAX_KEPT_BODY.saturating_sub(self.kept);
        let st = self.stream(sid, ts);
        if st.is_grpc {
            st.grpc[dir].data(d);
        }
        let m = st.msg[dir].get_or_insert_with(|| {
            // DATA on a stream whose headers we never saw
            Message {
                h2: true,
                start: ts,
                gap: true,
                ..Message::default()
            }
        });
        if m.gap && m.method.is_empty() && m.status == 0 {
            st.gap = true;
        }
        m.body_len += d.len() as u64;
        m.end = ts;
        let mut added = 0;
        if m.body.len() < cfg.body_depth && worth_inspecting(m.header("content-type")) {
            let n = (cfg.body_depth - m.body.len()).min(d.len()).min(room);
            m.body.extend_from_slice(&d[..n]);
            added = n;
        }
        st.kept += added;
        self.kept += added;
    }

    fn end_stream(&mut self, sid: u32, dir: usize, ts: Ts) {
        let Some(st) = self.streams.get_mut(&sid) else { return };
        st.done[dir] = true;
        if let Some(m) = st.msg[dir].as_mut() {
            m.end = ts;
        }
        if st.done[0] && st.done[1] {
            self.finish(sid, ts, false);
        }
    }

    /// Report a stream (both ends done, reset, evicted or the flow ended).
    fn finish(&mut self, sid: u32, _ts: Ts, cut: bool) {
        let Some(mut st) = self.streams.remove(&sid) else {
            return;
        };
        if self.closed.len() >= CLOSED_KEPT {
            self.closed.pop_front();
        }
        self.closed.push_back(sid);
        self.kept = self.kept.saturating_sub(st.kept);
        for d in 0..2 {
            st.gap |= st.maybe_lost[d] && !st.done[d];
        }
        let [a, b] = std::mem::take(&mut st.msg);
        let mut msgs = [a, b];
        if cut {
            for (m, done) in msgs.iter_mut().zip(st.done) {
                if let Some(m) = m.as_mut().filter(|_| !done) {
                    m.truncated = true;
                }
            }
        }
        // which is the request: the one with a method, else the client's
        let req_dir = match (&msgs[0], &msgs[1]) {
            (Some(m), _) if !m.method.is_empty() => 0,
            (_, Some(m)) if !m.method.is_empty() => 1,
            (_, Some(m)) if m.status != 0 => 0,
            (Some(m), _) if m.status != 0 => 1,
            _ => self.client.unwrap_or(0),
        };
        let mut req = msgs[req_dir].take();
        let mut resp = msgs[req_dir ^ 1].take();
        if req.as_ref().is_some_and(|m| m.method.is_empty()) {
            req = None;
            st.gap = true;
        }
        if resp.as_ref().is_some_and(|m| m.status == 0) {
            resp = None;
            st.gap = true;
        }
        if req.is_none() && resp.is_none() {
            self.stats.unknown_streams += 1;
            return;
        }
        let g = st.is_grpc.then(|| {
            let path = req.as_ref().map_or("", |m| m.uri.as_str());
            let (service, method) = grpc::split_path(path);
            let trailer = |n: &'static str| resp.as_ref().and_then(|m| m.header_values(n).last());
            let (fq, fr) = (&st.grpc[req_dir], &st.grpc[req_dir ^ 1]);
            Box::new(grpc::Grpc {
                service,
                method,
                status: trailer("grpc-status").and_then(|s| s.trim().parse().ok()),
                message: trailer("grpc-message")
                    .filter(|m| !m.is_empty())
                    .map(grpc::percent_decode),
                request_messages: fq.messages,
                response_messages: fr.messages,
                request_message_bytes: fq.bytes,
                response_message_bytes: fr.bytes,
                compressed: fq.compressed || fr.compressed,
            })
        });
        let mut tx = Transaction::new(req, resp, st.gap);
        tx.grpc = g;
        self.out.push(tx);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::conn::Conn;

    fn frame(typ: u8, flags: u8, sid: u32, p: &[u8]) -> Vec<u8> {
        let mut v = (p.len() as u32).to_be_bytes()[1..].to_vec();
        v.extend_from_slice(&[typ, flags]);
        v.extend_from_slice(&sid.to_be_bytes());
        v.extend_from_slice(p);
        v
    }

    /// A literal field without indexing, literal name (RFC 7541 §6.2.2).
    fn lit(n: &str, v: &str) -> Vec<u8> {
        let mut b = vec![0x00, n.len() as u8];
        b.extend_from_slice(n.as_bytes());
        b.push(v.len() as u8);
        b.extend_from_slice(v.as_bytes());
        b
    }

    /// A literal with incremental indexing, literal name: it enters the dynamic table.
    fn idx(n: &str, v: &str) -> Vec<u8> {
        let mut b = lit(n, v);
        b[0] = 0x40;
        b
    }

    fn cat(parts: &[&[u8]]) -> Vec<u8> {
        parts.concat()
    }

    type Line = (String, String, u16, u64, u64, bool, bool);

    fn line(t: &Transaction) -> Line {
        let q = t.request.as_ref();
        let r = t.response.as_ref();
        (
            q.map_or(String::new(), |m| m.method.clone()),
            q.map_or(String::new(), |m| m.uri.clone()),
            r.map_or(0, |m| m.status),
            q.map_or(0, |m| m.body_len),
            r.map_or(0, |m| m.body_len),
            t.gap,
            t.truncated,
        )
    }

    fn l(m: &str, u: &str, s: u16, qb: u64, rb: u64) -> Line {
        (m.into(), u.into(), s, qb, rb, false, false)
    }

    fn run_cfg(
        chunks: &[(usize, Vec<u8>)],
        client: Option<usize>,
        cfg: &HttpConfig,
    ) -> (Vec<Transaction>, Vec<HttpAnomaly>) {
        let mut c = Conn::new(client, cfg);
        for (i, (d, b)) in chunks.iter().enumerate() {
            c.data(*d, b, i as u64 * 1000, None, cfg);
        }
        c.flush(1 << 40, cfg);
        let (mut t, mut a) = (vec![], vec![]);
        c.take(&mut t, &mut a);
        let mut t: Vec<Transaction> = t.into_iter().map(|b| *b).collect();
        t.sort_by_key(|t| t.request.as_ref().map(|m| m.uri.clone()));
        (t, a)
    }

    fn run(chunks: &[(usize, Vec<u8>)]) -> (Vec<Transaction>, Vec<HttpAnomaly>) {
        run_cfg(chunks, Some(0), &HttpConfig::default())
    }

    /// A prior-knowledge conversation with every framing feature: HEADERS with priority and
    /// padding, a block split over CONTINUATION, padded DATA, trailers, interleaved streams,
    /// dynamic table references across blocks.
    fn conversation() -> (Vec<u8>, Vec<u8>) {
        let settings = frame(ty::SETTINGS, 0, 0, &[0, 1, 0, 0, 0x10, 0, 0, 3, 0, 0, 0, 100]);
        let mut h1 = vec![3u8]; // pad length
        h1.extend_from_slice(&[0, 0, 0, 0, 16]); // priority
        h1.extend(cat(&[
            &[0x82, 0x86],
            &lit(":path", "/a?x=1"),
            &idx(":authority", "api.example"),
        ]));
        h1.extend_from_slice(&[0, 0, 0]);
        let req1 = frame(
            ty::HEADERS,
            flag::END_STREAM | flag::END_HEADERS | flag::PADDED | flag::PRIORITY,
            1,
            &h1,
        );
        // stream 3: POST, its block in HEADERS + CONTINUATION; :authority from the table (62)
        let block3 = cat(&[
            &[0x83, 0x86, 0xbe],
            &lit(":path", "/b"),
            &lit("content-type", "application/json"),
        ]);
        let (b3a, b3b) = block3.split_at(4);
        let mut data3 = vec![2u8];
        data3.extend_from_slice(b"{\"k\":1}");
        data3.extend_from_slice(&[0, 0]);
        let client = cat(&[
            PREFACE,
            &settings,
            &req1,
            &frame(ty::HEADERS, 0, 3, b3a),
            &frame(ty::CONTINUATION, flag::END_HEADERS, 3, b3b),
            &frame(ty::DATA, flag::PADDED, 3, &data3),
            &frame(ty::DATA, flag::END_STREAM, 3, b""),
        ]);
        let resp3 = cat(&[&idx(":status", "201"), &lit("content-type", "application/json")]);
        let server = cat(&[
            &frame(ty::SETTINGS, 0, 0, &[]),
            &frame(ty::SETTINGS, flag::ACK, 0, &[]),
            &frame(ty::HEADERS, flag::END_HEADERS, 3, &resp3),
            &frame(ty::HEADERS, flag::END_HEADERS, 1, &[0x88]),
            &frame(ty::DATA, 0, 3, b"{\"id\":7}"),
            &frame(ty::DATA, flag::END_STREAM, 1, b"hello"),
            &frame(
                ty::HEADERS,
                flag::END_HEADERS | flag::END_STREAM,
                3,
                &lit("x-trailer", "t"),
            ),
            &frame(ty::GOAWAY, 0, 0, &[0, 0, 0, 3, 0, 0, 0, 0]),
        ]);
        (client, server)
    }

    #[test]
    fn prior_knowledge_streams_are_transactions() {
        let (c, s) = conversation();
        let (t, a) = run(&[(0, c), (1, s)]);
        assert_eq!(a, vec![]);
        assert_eq!(
            t.iter().map(line).collect::<Vec<_>>(),
            vec![l("GET", "/a?x=1", 200, 0, 5), l("POST", "/b", 201, 7, 8)]
        );
        let q = t[1].request.as_ref().unwrap();
        assert_eq!(q.header("host"), Some("api.example"));
        assert_eq!(q.protocol(), "HTTP/2");
        assert_eq!(t[1].response.as_ref().unwrap().header("x-trailer"), Some("t"));
        assert!(t.iter().all(|t| t.grpc.is_none()));
    }

    /// Any split of either direction into two chunks gives the same transactions.
    #[test]
    fn split_at_every_offset_gives_the_same_transactions() {
        let (c, s) = conversation();
        let whole: Vec<Line> = run(&[(0, c.clone()), (1, s.clone())]).0.iter().map(line).collect();
        for i in 0..=c.len() {
            let (t, a) = run(&[(0, c[..i].to_vec()), (0, c[i..].to_vec()), (1, s.clone())]);
            assert_eq!(t.iter().map(line).collect::<Vec<_>>(), whole, "client split at {i}");
            assert!(a.is_empty());
        }
        for i in 0..=s.len() {
            let (t, _) = run(&[(0, c.clone()), (1, s[..i].to_vec()), (1, s[i..].to_vec())]);
            assert_eq!(t.iter().map(line).collect::<Vec<_>>(), whole, "server split at {i}");
        }
    }

    /// A flow joined late: the frames are found by their layout; a block that refers to an
    /// entry inserted before the join is `gap`, one made of static entries and literals is exact.
    #[test]
    fn midstream_join_finds_frames_and_marks_unknown_headers() {
        let (c, s) = conversation();
        // drop the preface, SETTINGS and 3 bytes of the first HEADERS frame
        let cut = PREFACE.len() + 9 + 12 + 3;
        let (t, _) = run_cfg(&[(0, c[cut..].to_vec()), (1, s.clone())], None, &HttpConfig::default());
        let got: Vec<Line> = t.iter().map(line).collect();
        // stream 1's request is lost: its response alone, gap; stream 3 used table entry 62
        // (the lost :authority), so it is reported, gap, with everything else exact
        assert_eq!(
            got,
            vec![
                (String::new(), String::new(), 200, 0, 5, true, false),
                ("POST".into(), "/b".into(), 201, 7, 8, true, false)
            ]
        );
        assert_eq!(t[1].request.as_ref().unwrap().header("host"), None);
    }

    /// Lost bytes inside a DATA frame keep the layout; a loss across frames resynchronises.
    #[test]
    fn losses_inside_data_stay_in_sync_and_across_frames_resync() {
        let cfg = HttpConfig::default();
        let (c, s) = conversation();
        let mut conn = Conn::new(Some(0), &cfg);
        conn.data(0, &c, 0, None, &cfg);
        // the server's first 3 frames (SETTINGS, ACK, HEADERS 3) and 2 bytes of HEADERS 1
        let resp3_len = 9 + 0 + 9 + 9 + 5 + 18;
        let _ = resp3_len;
        let head = 9 + 9;
        conn.data(1, &s[..head], 1, None, &cfg);
        // lose the HEADERS of stream 3 entirely (a frame boundary crossed)
        let h3 = 9 + u32::from_be_bytes([0, s[head], s[head + 1], s[head + 2]]) as usize;
        conn.gap(1, h3 as u64, 2, &cfg);
        conn.data(1, &s[head + h3..], 3, None, &cfg);
        conn.flush(4, &cfg);
        let (mut t, mut a) = (vec![], vec![]);
        conn.take(&mut t, &mut a);
        let mut t: Vec<Transaction> = t.into_iter().map(|b| *b).collect();
        t.sort_by_key(|t| t.request.as_ref().map(|m| m.uri.clone()));
        let got: Vec<Line> = t.iter().map(line).collect();
        // stream 1 is exact (its block is a static reference); stream 3's response head is
        // lost: request exact, response unknown, gap
        assert_eq!(
            got,
            vec![
                l("GET", "/a?x=1", 200, 0, 5),
                ("POST".into(), "/b".into(), 0, 7, 0, true, false)
            ]
        );
        assert!(a.contains(&HttpAnomaly::Gap));

        // a hole inside the 8-byte DATA of stream 3: counted, layout kept
        let mut conn = Conn::new(Some(0), &cfg);
        conn.data(0, &c, 0, None, &cfg);
        let at = s.windows(8).position(|w| w == b"{\"id\":7}").unwrap();
        conn.data(1, &s[..at + 2], 1, None, &cfg);
        conn.gap(1, 3, 2, &cfg);
        conn.data(1, &s[at + 5..], 3, None, &cfg);
        conn.flush(4, &cfg);
        let (mut t, mut a) = (vec![], vec![]);
        conn.take(&mut t, &mut a);
        let mut t: Vec<Transaction> = t.into_iter().map(|b| *b).collect();
        t.sort_by_key(|t| t.request.as_ref().map(|m| m.uri.clone()));
        let got: Vec<Line> = t.iter().map(line).collect();
        assert_eq!(
            got,
            vec![
                l("GET", "/a?x=1", 200, 0, 5),
                ("POST".into(), "/b".into(), 201, 7, 8, true, false)
            ]
        );
        assert!(a.is_empty(), "{a:?}");
    }

    #[test]
    fn upgrade_h2c_makes_the_http1_request_stream_one() {
        let req = b"GET /up HTTP/1.1\r\nHost: h\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n".to_vec();
        let sw = b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n".to_vec();
        let server = cat(&[
            &sw,
            &frame(ty::SETTINGS, 0, 0, &[]),
            &frame(ty::HEADERS, flag::END_HEADERS, 1, &[0x88]),
            &frame(ty::DATA, flag::END_STREAM, 1, b"upgraded"),
            &frame(ty::HEADERS, flag::END_HEADERS, 3, &[0x8d]),
            &frame(ty::DATA, flag::END_STREAM, 3, b"nf"),
        ]);
        let client = cat(&[
            PREFACE,
            &frame(ty::SETTINGS, 0, 0, &[]),
            &frame(
                ty::HEADERS,
                flag::END_HEADERS | flag::END_STREAM,
                3,
                &cat(&[&[0x82], &lit(":path", "/two")]),
            ),
        ]);
        // the server's 101 and first frames arrive in one chunk, split in two
        let (t, a) = run(&[
            (0, req),
            (1, server[..sw.len() + 5].to_vec()),
            (1, server[sw.len() + 5..].to_vec()),
            (0, client),
        ]);
        assert!(a.is_empty(), "{a:?}");
        let got: Vec<Line> = t.iter().map(line).collect();
        assert_eq!(got, vec![l("GET", "/two", 404, 0, 2), l("GET", "/up", 200, 0, 8)]);
        assert!(t.iter().all(|t| t.request.as_ref().unwrap().protocol() == "HTTP/2"));
        assert_eq!(t[1].request.as_ref().unwrap().header("host"), Some("h"));
    }

    #[test]
    fn push_promise_reset_and_grpc_trailers_only() {
        let promise = cat(&[
            &[0, 0, 0, 2],
            &[0x82],
            &lit(":path", "/style.css"),
            &lit(":authority", "h"),
        ]);
        let grpc_req = cat(&[
            &[0x83],
            &lit(":path", "/pkg.Svc/Get"),
            &lit("content-type", "application/grpc"),
        ]);
        let mut msg = vec![0u8, 0, 0, 0, 3];
        msg.extend_from_slice(b"abc");
        let client = cat(&[
            PREFACE,
            &frame(
                ty::HEADERS,
                flag::END_HEADERS | flag::END_STREAM,
                1,
                &cat(&[&[0x82], &lit(":path", "/page")]),
            ),
            &frame(
                ty::HEADERS,
                flag::END_HEADERS | flag::END_STREAM,
                3,
                &cat(&[&[0x82], &lit(":path", "/slow")]),
            ),
            &frame(ty::HEADERS, flag::END_HEADERS, 5, &grpc_req),
            &frame(ty::DATA, flag::END_STREAM, 5, &msg),
        ]);
        let trailers_only = cat(&[
            &[0x88],
            &lit("content-type", "application/grpc"),
            &lit("grpc-status", "5"),
            &lit("grpc-message", "not%20found"),
        ]);
        let server = cat(&[
            &frame(ty::PUSH_PROMISE, flag::END_HEADERS, 1, &promise),
            &frame(ty::HEADERS, flag::END_HEADERS, 1, &[0x88]),
            &frame(ty::HEADERS, flag::END_HEADERS, 2, &[0x88]),
            &frame(ty::DATA, flag::END_STREAM, 2, b"css"),
            &frame(ty::DATA, flag::END_STREAM, 1, b"page"),
            &frame(ty::HEADERS, flag::END_HEADERS, 3, &[0x88]),
            &frame(ty::DATA, 0, 3, b"par"),
            &frame(ty::RST_STREAM, 0, 3, &[0, 0, 0, 8]),
            &frame(ty::HEADERS, flag::END_HEADERS | flag::END_STREAM, 5, &trailers_only),
        ]);
        let (t, a) = run(&[(0, client), (1, server)]);
        assert!(a.is_empty(), "{a:?}");
        let got: Vec<Line> = t.iter().map(line).collect();
        assert_eq!(
            got,
            vec![
                l("GET", "/page", 200, 0, 4),
                l("POST", "/pkg.Svc/Get", 200, 3 + 5, 0),
                ("GET".into(), "/slow".into(), 200, 0, 3, false, true),
                l("GET", "/style.css", 200, 0, 3),
            ]
        );
        let g = t[1].grpc.as_deref().unwrap();
        assert_eq!((g.service.as_str(), g.method.as_str()), ("pkg.Svc", "Get"));
        assert_eq!((g.status, g.message.as_deref()), (Some(5), Some("not found")));
        assert_eq!(
            (g.request_messages, g.response_messages, g.request_message_bytes),
            (1, 0, 3)
        );
        assert!(g.is_error());
    }

    #[test]
    fn trailer_blocks_past_max_head_are_an_anomaly_not_memory() {
        let cfg = HttpConfig {
            max_head: 1000,
            ..HttpConfig::default()
        };
        let pad = "p".repeat(100);
        let mut client = cat(&[
            PREFACE,
            &frame(ty::HEADERS, flag::END_HEADERS, 1, &cat(&[&[0x82], &lit(":path", "/a")])),
        ]);
        // each block is under max_head alone; together they are not
        for _ in 0..30 {
            client.extend(frame(ty::HEADERS, flag::END_HEADERS, 1, &lit("x-pad", &pad)));
        }
        client.extend(frame(
            ty::HEADERS,
            flag::END_HEADERS | flag::END_STREAM,
            1,
            &lit("x-end", "1"),
        ));
        let server = frame(ty::HEADERS, flag::END_HEADERS | flag::END_STREAM, 1, &[0x88]);
        let (t, a) = run_cfg(&[(0, client), (1, server)], Some(0), &cfg);
        assert!(a.contains(&HttpAnomaly::HeadTooLong), "{a:?}");
        assert_eq!(t.len(), 1);
        let q = t[0].request.as_ref().unwrap();
        assert_eq!(q.uri, "/a");
        assert!(q.headers.bytes() <= 1000, "{} bytes of headers kept", q.headers.bytes());
        assert!(q.header_values("x-pad").count() >= 5);
    }

    #[test]
    fn continuation_flood_and_stream_cap_are_anomalies_not_memory() {
        let mut client = PREFACE.to_vec();
        client.extend(frame(ty::HEADERS, 0, 1, &[0x82]));
        for _ in 0..1000 {
            client.extend(frame(ty::CONTINUATION, 0, 1, &[0x84; 200]));
        }
        client.extend(frame(
            ty::CONTINUATION,
            flag::END_HEADERS | flag::END_STREAM,
            1,
            &[0x84],
        ));
        // afterwards, a clean stream made of static references and literals is exact
        client.extend(frame(
            ty::HEADERS,
            flag::END_HEADERS | flag::END_STREAM,
            3,
            &cat(&[&[0x82], &lit(":path", "/ok")]),
        ));
        let server = cat(&[
            &frame(ty::HEADERS, flag::END_HEADERS | flag::END_STREAM, 1, &[0x88]),
            &frame(ty::HEADERS, flag::END_HEADERS | flag::END_STREAM, 3, &[0x88]),
        ]);
        let (t, a) = run(&[(0, client), (1, server)]);
        assert!(a.contains(&HttpAnomaly::H2ContinuationFlood), "{a:?}");
        assert_eq!(
            t.iter().map(line).collect::<Vec<_>>().last(),
            Some(&l("GET", "/ok", 200, 0, 0))
        );

        let cfg = HttpConfig {
            max_pending: 4,
            ..HttpConfig::default()
        };
        let mut client = PREFACE.to_vec();
        for i in 0..10u32 {
            client.extend(frame(
                ty::HEADERS,
                flag::END_HEADERS | flag::END_STREAM,
                2 * i + 1,
                &[0x82, 0x84],
            ));
        }
        let (t, a) = run_cfg(&[(0, client)], Some(0), &cfg);
        assert_eq!(t.len(), 10);
        assert_eq!(a.iter().filter(|a| **a == HttpAnomaly::H2TooManyStreams).count(), 6);
    }

    #[test]
    fn frame_layout_detection() {
        let (c, s) = conversation();
        assert_eq!(find_frames(&s, true), Some(0));
        assert_eq!(find_frames(&c[PREFACE.len()..], true), Some(0));
        assert_eq!(find_frames(&c[PREFACE.len() + 3..], true), Some(9 + 12 - 3));
        assert_eq!(find_frames(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", true), None);
        assert_eq!(find_frames(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", true), None);
        assert!(starts_preface(b"PRI * HTTP/2.0\r\n"));
        assert!(!starts_preface(b"POST / HTTP/1.1\r\n"));
    }

    /// Arbitrary bytes after a preface, whole or split, never panic and stay bounded.
    #[test]
    fn arbitrary_frames_never_panic() {
        use proptest::prelude::*;
        let cfg = HttpConfig {
            max_head: 512,
            max_pending: 8,
            body_depth: 64,
            decompress: false,
        };
        proptest!(ProptestConfig::with_cases(400), |(a in proptest::collection::vec(any::<u8>(), 0..600),
                                                     b in proptest::collection::vec(any::<u8>(), 0..600),
                                                     cut in 0usize..600, gap in 0u64..50)| {
            let mut c = Conn::new(Some(0), &cfg);
            let mut ca = PREFACE.to_vec();
            ca.extend_from_slice(&a);
            let cut = cut.min(ca.len());
            c.data(0, &ca[..cut], 0, None, &cfg);
            c.gap(0, gap, 1, &cfg);
            c.data(0, &ca[cut..], 2, None, &cfg);
            c.data(1, &b, 3, None, &cfg);
            c.gap(1, gap, 4, &cfg);
            c.data(1, &a, 5, None, &cfg);
            c.flush(6, &cfg);
            let (mut t, mut an) = (vec![], vec![]);
            c.take(&mut t, &mut an);
            let t: Vec<Transaction> = t.into_iter().map(|b| *b).collect();
            prop_assert!(t.len() <= 1 + a.len() / 9 + b.len() / 9 + 8);
        });
    }
}

#[cfg(test)]
mod detection_tests {
    use super::*;
    use crate::http::conn::Conn;

    fn frame(typ: u8, flags: u8, sid: u32, p: &[u8]) -> Vec<u8> {
        let mut v = (p.len() as u32).to_be_bytes()[1..].to_vec();
        v.extend_from_slice(&[typ, flags]);
        v.extend_from_slice(&sid.to_be_bytes());
        v.extend_from_slice(p);
        v
    }

    fn run(client: Option<usize>, chunks: &[(usize, Vec<u8>)]) -> (Conn, Vec<Transaction>, Vec<HttpAnomaly>) {
        let cfg = HttpConfig::default();
        let mut c = Conn::new(client, &cfg);
        for (i, (d, b)) in chunks.iter().enumerate() {
            c.data(*d, b, i as u64, None, &cfg);
        }
        c.flush(99, &cfg);
        let (mut t, mut a) = (vec![], vec![]);
        c.take(&mut t, &mut a);
        let t: Vec<Transaction> = t.into_iter().map(|b| *b).collect();
        (c, t, a)
    }

    /// Found on the Arkime corpus capture: a TLS ClientHello and SMB at the first byte of a
    /// connection whose handshake was seen hold byte runs that chain like frames further in.
    /// A connection's first byte must be the preface or a frame: they stay "not HTTP", quietly.
    #[test]
    fn binary_protocols_at_a_connection_start_are_not_http2() {
        let hex = |h: &str| {
            (0..h.len() / 2)
                .map(|i| u8::from_str_radix(&h[2 * i..2 * i + 2], 16).unwrap())
                .collect::<Vec<u8>>()
        };
        let hello = hex(
            "16030100450100004103030000000000000000000000000000000000000000000000000000000000000000000002c02f010000160000000e000c000009746573742e636f6d",
        );
        let smb = hex(
            "00000068fe534d4240000000000000000000010000000000000000000100000000000000000000000000000000000000000000000000000000000000000000000000000024000200000000000000000000000000000000000000000000000000000000000000000002021002",
        );
        assert!(
            find_frames(&hello, true).is_some_and(|k| k > 0),
            "the case needs a frame-like run inside"
        );
        let (c, t, a) = run(Some(0), &[(0, smb)]);
        assert!(t.is_empty() && a.is_empty(), "{a:?}");
        assert!(c.not_http());
        let (c, t, a) = run(Some(0), &[(0, hello)]);
        assert!(t.is_empty() && a.is_empty(), "{a:?}");
        assert!(c.not_http());
    }

    /// A flow joined in the middle of an HTTP/1 binary body that happens to chain like frames:
    /// the tentative HTTP/2 breaks a frame rule, HTTP/1 parsing resumes and finds the next
    /// request, and no HTTP/2 anomaly is reported.
    #[test]
    fn a_false_frame_layout_falls_back_to_http1() {
        let mut body = frame(ty::WINDOW_UPDATE, 0, 0, &[0, 0, 1, 0]);
        body.extend(frame(ty::WINDOW_UPDATE, 0, 0, &[0, 0, 1, 0]));
        // then a PING of the wrong length: not HTTP/2
        body.extend(frame(ty::PING, 0, 0, &[1, 2, 3]));
        let (c, t, a) = run(
            None,
            &[
                (0, body),
                (0, b"GET /next HTTP/1.1\r\nHost: h\r\n\r\n".to_vec()),
                (1, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec()),
            ],
        );
        assert!(a.is_empty(), "{a:?}");
        let got: Vec<(String, u16)> = t
            .iter()
            .map(|t| {
                (
                    t.request.as_ref().map_or(String::new(), |m| m.uri.clone()),
                    t.response.as_ref().map_or(0, |m| m.status),
                )
            })
            .collect();
        assert_eq!(got, vec![("/next".to_string(), 200)]);
        assert!(!c.not_http());
    }
}

#[cfg(test)]
mod server_first_tests {
    use super::*;
    use crate::http::conn::Conn;

    /// suricata-verify http2-errorcode: the server sends its SETTINGS before the client's
    /// preface arrives (a 9-byte segment at the connection's first byte). It was taken for a
    /// binary non-HTTP server and the whole connection dropped.
    #[test]
    fn a_server_speaking_first_with_settings_is_http2() {
        let cfg = HttpConfig::default();
        let mut c = Conn::new(Some(0), &cfg);
        c.data(1, &[0, 0, 0, 4, 0, 0, 0, 0, 0], 1, None, &cfg);
        let mut q = PREFACE.to_vec();
        q.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
        q.extend_from_slice(&[0, 0, 2, 1, 5, 0, 0, 0, 1, 0x82, 0x84]);
        c.data(0, &q, 2, None, &cfg);
        c.data(1, &[0, 0, 1, 1, 5, 0, 0, 0, 1, 0x88], 3, None, &cfg);
        c.flush(4, &cfg);
        let (mut t, mut a) = (vec![], vec![]);
        c.take(&mut t, &mut a);
        let t: Vec<Transaction> = t.into_iter().map(|b| *b).collect();
        assert!(a.is_empty(), "{a:?}");
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].response.as_ref().map(|m| m.status), Some(200));
        assert!(!t[0].gap);
        assert!(!c.not_http());
    }
}

#[cfg(test)]
mod reset_tests {
    use super::*;
    use crate::http::conn::Conn;

    fn frame(typ: u8, flags: u8, sid: u32, p: &[u8]) -> Vec<u8> {
        let mut v = (p.len() as u32).to_be_bytes()[1..].to_vec();
        v.extend_from_slice(&[typ, flags]);
        v.extend_from_slice(&sid.to_be_bytes());
        v.extend_from_slice(p);
        v
    }

    /// suricata-verify dns-over-http2: the client resets stream 7 while the server's answer is
    /// already on its way. The answer must not become a second, request-less transaction; its
    /// header block still feeds the table (the next block refers to what it inserted).
    #[test]
    fn an_answer_crossing_a_reset_is_not_a_new_stream() {
        let cfg = HttpConfig::default();
        let mut c = Conn::new(Some(0), &cfg);
        let mut q = PREFACE.to_vec();
        q.extend(frame(ty::HEADERS, 5, 7, &[0x82, 0x84]));
        q.extend(frame(ty::RST_STREAM, 0, 7, &[0, 0, 0, 8]));
        q.extend(frame(ty::HEADERS, 5, 9, &[0x82, 0x84]));
        c.data(0, &q, 1, None, &cfg);
        // 0x48 0x03 "203": :status 203 with incremental indexing (entry 62); then 0xbe uses it
        let mut r = frame(ty::HEADERS, 4, 7, &[0x48, 3, b'2', b'0', b'3']);
        r.extend(frame(ty::DATA, 1, 7, b"late"));
        r.extend(frame(ty::HEADERS, 5, 9, &[0xbe]));
        c.data(1, &r, 2, None, &cfg);
        c.flush(3, &cfg);
        let (mut t, mut a) = (vec![], vec![]);
        c.take(&mut t, &mut a);
        let t: Vec<Transaction> = t.into_iter().map(|b| *b).collect();
        assert!(a.is_empty(), "{a:?}");
        let got: Vec<(u16, bool)> = t
            .iter()
            .map(|t| (t.response.as_ref().map_or(0, |m| m.status), t.gap))
            .collect();
        assert_eq!(got, vec![(0, false), (203, false)]);
    }
}
