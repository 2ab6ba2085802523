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
use crate::http::{HttpAnomaly, HttpConfig, Message, Transaction, worth_inspecting};

/// RFC 9113 §3.4 client connection preface.
pub const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Body bytes kept for inspection across the open streams of one connection.
pub const MAX_KEPT_BODY: usize = 1 << 20;

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
            ty::SETTINGS => !on_stream && self.len % 6 == 0 && (self.flags & flag::ACK == 0 || self.len == 0),
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
/// a plausible frame header whose length leads to another plausible one (or exactly to the
/// end of `b`). `strict`: two frames needed, or one that fills `b` from its first byte.
pub fn find_frames(b: &[u8], strict: bool) -> Option<usize> {
    // a believable length (< 2^20) starts with a byte <= 0x10: text is passed over at once
    (0..b.len().saturating_sub(8)).find(|&k| b[k] <= 0x10 && chain(&b[k..], strict || k > 0))
}

fn chain(b: &[u8], need_two: bool) -> bool {
    let mut off = 0usize;
    let mut n = 0;
    while let Some(f) = header_at(&b[off..]) {
        if !f.plausible() {
            return false;
        }
        n += 1;
        off += 9 + f.len as usize;
        if off == b.len() {
            return n >= 2 || off > 9 || !need_two;
        }
        if off > b.len() || n >= 3 {
            return n >= 2 || !need_two;
        }
    }
    // a header cut by the end of `b`
    n >= 2
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
        while !d.is_empty() {
            let dr = &mut self.dirs[dir];
            match dr.st {
                St::Preface(n) => {
                    let m = d.iter().zip(&PREFACE[n..]).take_while(|(a, b)| a == b).count();
                    if n + m == PREFACE.len() {
                        d = &d[m..];
                        dr.st = St::Head;
                        if self.s.client.is_none() {
                            self.s.client = Some(dir);
                        }
                    } else if m == d.len() {
                        dr.st = St::Preface(n + m);
                        return;
                    } else if n == 0 {
                        dr.st = St::Head;
                    } else {
                        self.s.anomalies.push(HttpAnomaly::H2Frame);
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
        self.s.anomalies.push(HttpAnomaly::Gap);
        for st in self.s.streams.values_mut() {
            if !st.done[dir] {
                st.gap = true;
                st.grpc[dir].lost = true;
                if let Some(m) = st.msg[dir].as_mut() {
                    m.gap = true;
                }
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
            self.s.anomalies.push(HttpAnomaly::H2Frame);
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
            self.s.anomalies.push(HttpAnomaly::H2Frame);
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
                    self.s.anomalies.push(HttpAnomaly::H2Frame);
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
                            self.s.anomalies.push(HttpAnomaly::HeadTooLong);
                        } else if kept {
                            self.s.anomalies.push(HttpAnomaly::H2Frame);
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
                    self.s.anomalies.push(HttpAnomaly::H2Frame);
                    return;
                };
                b.continuations += 1;
                if b.continuations > MAX_CONTINUATIONS && !b.broken {
                    b.broken = true;
                    b.bytes = Vec::new();
                    self.s.anomalies.push(HttpAnomaly::H2ContinuationFlood);
                }
                if !b.broken {
                    if kept {
                        b.bytes.extend_from_slice(&p);
                    } else {
                        b.broken = true;
                        b.bytes = Vec::new();
                        self.s.anomalies.push(HttpAnomaly::H2ContinuationFlood);
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
                    self.s.anomalies.push(HttpAnomaly::HeadTooLong);
                }
                if info.oversized_table {
                    self.s.anomalies.push(HttpAnomaly::HpackTableSize);
                }
                info.unknown > 0
            }
            Err(_) => {
                dr.hpack.lose();
                self.s.anomalies.push(HttpAnomaly::HpackError);
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
    fn stream(&mut self, sid: u32, ts: Ts) -> &mut Stream {
        if !self.streams.contains_key(&sid) {
            if self.streams.len() >= self.max_streams {
                self.anomalies.push(HttpAnomaly::H2TooManyStreams);
                if let Some(old) = self.streams.keys().min().copied() {
                    self.finish(old, ts, true);
                }
            }
            self.stats.streams += 1;
        }
        self.streams.entry(sid).or_default()
    }

    fn stream_gap(&mut self, sid: u32, dir: usize) {
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
                        self.anomalies.push(HttpAnomaly::InvalidStatus);
                    }
                }
                ":scheme" | ":protocol" => pseudo = true,
                _ => headers.push((n, v)),
            }
        }
        if let Some(a) = authority
            && !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("host"))
        {
            headers.insert(0, ("host".to_string(), a));
        }
        m.headers = headers;
        if (100..200).contains(&m.status) {
            // interim response (103 Early Hints): not the answer
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
                // trailers
                prev.headers.extend(m.headers);
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
                self.anomalies.push(HttpAnomaly::H2Frame);
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
        self.kept = self.kept.saturating_sub(st.kept);
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
