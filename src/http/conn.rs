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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReqState {
    Lost,
    InProgress,
    Done,
}

struct Entry {
    req: Option<Message>,
    state: ReqState,
    kind: ReqKind,
    /// Client-stream offset just past the request (known once it is complete).
    end_off: Option<u64>,
    resp_started: bool,
    resp: Option<Message>,
    /// Its response was lost in a gap.
    resp_lost: bool,
}

impl Entry {
    fn new(state: ReqState, kind: ReqKind) -> Self {
        Entry {
            req: None,
            state,
            kind,
            end_off: None,
            resp_started: false,
            resp: None,
            resp_lost: false,
        }
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

pub struct Conn {
    halves: [Half; 2],
    client: Option<usize>,
    q: Q,
    deferred: Option<Deferred>,
}

/// Everything but the two parsers, so a parser can report into it while borrowed.
struct Q {
    pending: VecDeque<Entry>,
    out: Vec<Transaction>,
    anomalies: Vec<HttpAnomaly>,
    resp_gap: bool,
    tunnel: bool,
    not_http: bool,
    role_found: Option<Role>,
    /// Offset in the client's stream acknowledged by the packet being processed (server side).
    ack_off: Option<u64>,
    max_pending: usize,
}

impl Conn {
    /// `client`: the direction index (0 or 1) whose sender is the client, if the handshake
    /// told us; otherwise the first message seen decides.
    pub fn new(client: Option<usize>, cfg: &HttpConfig) -> Self {
        let role = |d: usize| client.map(|c| if c == d { Role::Request } else { Role::Response });
        Conn {
            halves: [Half::new(role(0)), Half::new(role(1))],
            client,
            deferred: None,
            q: Q {
                pending: VecDeque::new(),
                out: Vec::new(),
                anomalies: Vec::new(),
                resp_gap: false,
                tunnel: false,
                not_http: false,
                role_found: None,
                ack_off: None,
                max_pending: cfg.max_pending,
            },
        }
    }

    pub fn client(&self) -> Option<usize> {
        self.client
    }

    /// The connection turned out not to speak HTTP.
    pub fn not_http(&self) -> bool {
        self.q.not_http
    }

    /// Finished transactions and anomalies since the last call.
    pub fn take(&mut self, txs: &mut Vec<Transaction>, anomalies: &mut Vec<HttpAnomaly>) {
        txs.append(&mut self.q.out);
        anomalies.append(&mut self.q.anomalies);
    }

    pub fn has_output(&self) -> bool {
        !self.q.out.is_empty() || !self.q.anomalies.is_empty()
    }

    /// Bytes of direction `dir`. `ack_off`: the offset of the other direction's stream that this
    /// packet acknowledges (used when `dir` carries responses).
    pub fn data(&mut self, dir: usize, d: &[u8], ts: Ts, ack_off: Option<u64>, cfg: &HttpConfig) {
        if self.q.tunnel {
            return;
        }
        let dir = dir & 1;
        if self.should_defer(dir, ack_off) {
            self.defer(dir, ts, Held::Data(d.to_vec(), ack_off), ack_off, cfg);
            return;
        }
        self.feed(dir, d, ts, ack_off, cfg);
        self.try_release(cfg);
    }

    fn feed(&mut self, dir: usize, d: &[u8], ts: Ts, ack_off: Option<u64>, cfg: &HttpConfig) {
        self.q.ack_off = ack_off;
        self.halves[dir].feed(d, ts, cfg, &mut self.q);
        self.after(dir);
    }

    pub fn gap(&mut self, dir: usize, n: u64, ts: Ts, cfg: &HttpConfig) {
        if self.q.tunnel {
            return;
        }
        let dir = dir & 1;
        if self.deferred.as_ref().is_some_and(|df| df.dir == dir) {
            self.defer(dir, ts, Held::Gap(n), None, cfg);
            return;
        }
        self.halves[dir].gap(n, ts, cfg, &mut self.q);
        self.after(dir);
        self.try_release(cfg);
    }

    pub fn eof(&mut self, dir: usize, ts: Ts, cfg: &HttpConfig) {
        // Whatever waited for the other side is processed before a side closes.
        self.release(cfg);
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
                    self.halves[df.dir].gap(n, ts, cfg, &mut self.q);
                    self.after(df.dir);
                }
            }
        }
    }

    /// End of the flow: close both directions and emit everything still pending, requests
    /// without responses included.
    pub fn flush(&mut self, ts: Ts, cfg: &HttpConfig) {
        self.release(cfg);
        // Responses first: a close-delimited response ends with the connection.
        let order = match self.client {
            Some(c) => [c ^ 1, c],
            None => [0, 1],
        };
        for d in order {
            self.halves[d].eof(ts, cfg, &mut self.q);
        }
        self.q.pop_ready();
        // Requests still unanswered when the response side lost bytes: their responses were
        // most likely in the hole.
        let resp_gap = self.q.resp_gap;
        while let Some(mut e) = self.q.pending.pop_front() {
            e.resp_lost |= resp_gap && e.resp.is_none();
            if e.req.is_some() || e.resp.is_some() {
                let lost = e.resp_lost;
                self.q.out.push(Transaction::new(e.req, e.resp, lost));
            }
        }
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
    fn pop_ready(&mut self) {
        while let Some(f) = self.pending.front() {
            if f.state == ReqState::InProgress || f.resp.is_none() {
                break;
            }
            if let Some(e) = self.pending.pop_front() {
                let lost = e.resp_lost;
                self.out.push(Transaction::new(e.req, e.resp, lost));
            }
        }
    }

    fn first_unanswered(&self) -> Option<usize> {
        self.pending.iter().position(|e| !e.resp_started)
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
        while let Some(i) = self.first_unanswered() {
            if !self.later_request_received(i, ack) {
                break;
            }
            match self.pending[i].state {
                ReqState::Lost => {
                    self.pending.remove(i);
                }
                ReqState::Done if self.resp_gap => {
                    // Its response was in the bytes the response side lost.
                    self.pending[i].resp_started = true;
                    self.pending[i].resp_lost = true;
                    self.pending[i].resp = None;
                    if let Some(e) = self.pending.remove(i) {
                        self.out.push(Transaction::new(e.req, None, true));
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
        let kind = if msg.method.eq_ignore_ascii_case("HEAD") {
            ReqKind::Head
        } else if msg.method.eq_ignore_ascii_case("CONNECT") {
            ReqKind::Connect
        } else {
            ReqKind::Other
        };
        if self.pending.len() >= self.max_pending {
            self.anomalies.push(HttpAnomaly::TooManyPipelined);
            if let Some(e) = self.pending.pop_front() {
                let lost = e.resp_lost;
                if e.req.is_some() || e.resp.is_some() {
                    self.out.push(Transaction::new(e.req, e.resp, lost));
                }
            }
        }
        self.pending.push_back(Entry::new(ReqState::InProgress, kind));
    }

    fn response_head(&mut self, _msg: &Message) -> ReqKind {
        self.realign();
        let i = match self.first_unanswered() {
            Some(i) => i,
            None => {
                // A response to a request we never saw (capture started mid-connection, or the
                // request was lost).
                self.pending.push_back(Entry::new(ReqState::Lost, ReqKind::Other));
                self.pending.len() - 1
            }
        };
        self.pending[i].resp_started = true;
        self.pending[i].kind
    }

    fn done(&mut self, role: Role, msg: Message, end_off: u64) {
        match role {
            Role::Request => match self.pending.iter_mut().rev().find(|e| e.state == ReqState::InProgress) {
                Some(e) => {
                    e.req = Some(msg);
                    e.state = ReqState::Done;
                    e.end_off = Some(end_off);
                }
                None => {
                    let mut e = Entry::new(ReqState::Done, ReqKind::Other);
                    e.req = Some(msg);
                    e.end_off = Some(end_off);
                    self.pending.push_back(e);
                }
            },
            Role::Response => match self
                .pending
                .iter_mut()
                .find(|e| e.resp_started && e.resp.is_none() && !e.resp_lost)
            {
                Some(e) => e.resp = Some(msg),
                None => {
                    let mut e = Entry::new(ReqState::Lost, ReqKind::Other);
                    e.resp_started = true;
                    e.resp = Some(msg);
                    self.pending.push_back(e);
                }
            },
        }
        self.pop_ready();
    }

    fn lost(&mut self, role: Role, _at_off: u64) {
        match role {
            Role::Request => {
                if self
                    .pending
                    .back()
                    .is_none_or(|e| e.state != ReqState::Lost || e.resp_started)
                {
                    if self.pending.len() >= self.max_pending {
                        return;
                    }
                    self.pending.push_back(Entry::new(ReqState::Lost, ReqKind::Other));
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

    fn run(chunks: &[(usize, &[u8])]) -> Vec<Transaction> {
        let cfg = HttpConfig::default();
        let mut c = Conn::new(Some(0), &cfg);
        for (i, (d, b)) in chunks.iter().enumerate() {
            c.data(*d, b, i as u64 * 1000, None, &cfg);
        }
        c.flush(99_000, &cfg);
        let (mut t, mut a) = (vec![], vec![]);
        c.take(&mut t, &mut a);
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
