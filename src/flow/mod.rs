//! Flow table and TCP connection tracking.
//!
//! A flow is the 5-tuple of a TCP connection, both directions. Direction 0 is the sender of the
//! first packet seen; which side is the client comes from the handshake (SYN / SYN-ACK) or, for
//! a flow picked up mid-stream, from which side speaks HTTP requests first. Each direction owns
//! a [`Stream`]; its in-order bytes go straight into the flow's HTTP [`Conn`].
//!
//! Caps: at most `max_flows` flows; when full, the least recently seen sixteenth of the table is
//! flushed and evicted at once (amortised O(1) per new flow, counted). Flows idle longer than
//! `idle_timeout` (packet time) are flushed and removed; closed flows (FIN both ways, or RST)
//! linger `closed_timeout` to absorb retransmissions. At end of input everything is flushed.
//!
//! Port reuse: a SYN on a closed flow starts a new one. A SYN (no ACK) on a flow still open, with
//! an ISN far from the sender's sequence space, is a new connection whose predecessor's close the
//! capture lost: it is held back until the peer's SYN-ACK acknowledges it (or the sender goes on
//! from it), then the old flow is flushed and a new one (new flow id, new HTTP state) starts. A
//! forged SYN the server does not answer changes nothing.

pub mod community_id;
pub mod preface;
pub mod socks;

use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::sync::Arc;

use hashbrown::HashMap;

use crate::capture::Ts;
use crate::decode::{TcpSegment, tcp_flags};
use crate::http::conn::Conn;
use crate::http::{HttpAnomaly, HttpConfig, Transaction};
use crate::reassembly::{Budget, Chunk, Notes, ReassemblyConfig, ReassemblyStats, Stream};
use preface::Preface;

#[derive(Debug, Clone)]
pub struct FlowConfig {
    /// Most flows tracked at once. Default 262,144.
    pub max_flows: usize,
    /// A flow with no packet for this long is flushed and removed. Default 300 s.
    pub idle_timeout: Ts,
    /// A closed flow (FIN both ways or RST) is removed after this long. Default 10 s.
    pub closed_timeout: Ts,
    /// Stream and HTTP anomalies reported per flow as events (counters are exact). Default 32.
    pub max_anomalies_per_flow: u32,
}

impl Default for FlowConfig {
    fn default() -> Self {
        FlowConfig {
            max_flows: 262_144,
            idle_timeout: 300_000_000_000,
            closed_timeout: 10_000_000_000,
            max_anomalies_per_flow: 32,
        }
    }
}

/// A SYN this far (sequence numbers, either way) from where its sender's stream is, is not a
/// retransmission: beyond any unscaled window.
const REUSE_DISTANCE: u32 = 1 << 16;

/// Addresses of a flow as they appear in events: `src` is the client.
#[derive(Debug, Clone)]
pub struct FlowMeta {
    pub flow_id: u64,
    pub community_id: Arc<str>,
    pub src: IpAddr,
    pub sport: u16,
    pub dst: IpAddr,
    pub dport: u16,
}

/// A stream-level anomaly (EVE `anomaly.type` "stream") or an HTTP one ("applayer").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowAnomaly {
    Gap,
    OverlapConflict,
    Http(HttpAnomaly),
}

/// What the flow layer hands on.
#[derive(Debug)]
pub enum FlowOutput {
    Http {
        meta: FlowMeta,
        /// Boxed where the HTTP/1 queue starts it: a pointer moves on to the event and the
        /// batch, not the whole transaction.
        tx: Box<Transaction>,
    },
    /// A TLS handshake (SNI, version, fingerprints, certificate), once per connection.
    Tls {
        ts: Ts,
        meta: FlowMeta,
        tls: Box<crate::tls::TlsInfo>,
    },
    Anomaly {
        ts: Ts,
        meta: FlowMeta,
        what: FlowAnomaly,
    },
}

/// An address and port.
type Endpoint = (IpAddr, u16);

/// The two endpoints of a flow, the lower first (tuple order: IPv4 before IPv6, then address
/// bytes, then port). Hashed for the table by [`Hash`] below: an IPv4 pair as two words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct FlowKey {
    lo: (IpAddr, u16),
    hi: (IpAddr, u16),
}

impl FlowKey {
    #[inline]
    fn new(a: (IpAddr, u16), b: (IpAddr, u16)) -> Self {
        let a_first = match (a.0, b.0) {
            // (the tuple order for two IPv4 endpoints: address bytes, then port)
            (IpAddr::V4(x), IpAddr::V4(y)) => {
                ((u64::from(x.to_bits()) << 16) | u64::from(a.1)) <= ((u64::from(y.to_bits()) << 16) | u64::from(b.1))
            }
            _ => a <= b,
        };
        if a_first {
            FlowKey { lo: a, hi: b }
        } else {
            FlowKey { lo: b, hi: a }
        }
    }
}

impl Hash for FlowKey {
    /// Equal keys write the same words: an IPv4 pair as its two addresses and two ports, one
    /// word each (not a discriminant, an address and a port per endpoint); anything else as
    /// its endpoints. (The flow id hashes the endpoints themselves: [`flow_id`].)
    #[inline]
    fn hash<H: Hasher>(&self, h: &mut H) {
        match (self.lo.0, self.hi.0) {
            (IpAddr::V4(x), IpAddr::V4(y)) => {
                h.write_u64((u64::from(x.to_bits()) << 32) | u64::from(y.to_bits()));
                h.write_u32((u32::from(self.lo.1) << 16) | u32::from(self.hi.1));
            }
            _ => {
                self.lo.hash(h);
                self.hi.hash(h);
            }
        }
    }
}

struct Flow {
    id: u64,
    /// addr[d] is the sender of direction d.
    addr: [(IpAddr, u16); 2],
    streams: [Stream; 2],
    /// Boxed: most flows of a SYN flood or a scan never carry data.
    conn: Option<Box<Conn>>,
    /// SOCKS and TLS before (or instead of) HTTP.
    pre: Preface,
    /// Direction of the client, from the handshake.
    syn_client: Option<usize>,
    /// Last acknowledgement number sent by direction d (it acknowledges direction d^1).
    ack: [Option<u32>; 2],
    eof: [bool; 2],
    last_seen: Ts,
    closed_at: Option<Ts>,
    pkts: u64,
    /// Directions seen (bit d: a packet from direction d).
    dirs: u8,
    anomalies: u32,
    cid: Option<Arc<str>>,
    /// A SYN far from the sequence space (direction, ISN), waiting for the peer to answer it.
    reuse: Option<(usize, u32)>,
}

#[derive(Debug, Default, Clone, Copy)]
pub struct FlowStats {
    pub created: u64,
    pub closed: u64,
    pub timed_out: u64,
    pub evicted: u64,
    pub midstream: u64,
    pub transactions: u64,
    pub anomalies_suppressed: u64,
    /// Connections whose first bytes were not HTTP (parsing stopped).
    pub not_http: u64,
    /// Open flows ended by a new connection on the same ports (a lost FIN or RST).
    pub reused: u64,
    /// Responses skipped because their request was evicted from a too-deep pipeline (counted
    /// when the flow ends).
    pub pipeline_evicted_responses: u64,
    /// Connections through a granted SOCKS tunnel, and TLS handshakes reported (and those
    /// whose bytes broke the parser's limits or were not TLS after all).
    pub socks: u64,
    pub tls: u64,
    pub tls_malformed: u64,
    /// Flows that ended having seen packets from one direction only: a one-sided tap, a scan,
    /// or a capture that split a connection's directions (an asymmetric fanout hash).
    pub one_way: u64,
}

pub struct FlowTable {
    map: HashMap<FlowKey, Box<Flow>>,
    pub cfg: FlowConfig,
    pub rcfg: ReassemblyConfig,
    pub hcfg: HttpConfig,
    budget: Budget,
    pub rstats: ReassemblyStats,
    pub stats: FlowStats,
    last_sweep: Ts,
    /// A flow's finished transactions on their way to `out` (kept: no allocation per call).
    /// (boxed on purpose: the box made by the HTTP queue moves on as it is)
    #[allow(clippy::vec_box)]
    txs: Vec<Box<Transaction>>,
}

impl FlowTable {
    pub fn new(cfg: FlowConfig, rcfg: ReassemblyConfig, hcfg: HttpConfig) -> Self {
        FlowTable {
            map: HashMap::new(),
            cfg,
            rcfg,
            hcfg,
            budget: Budget::default(),
            rstats: ReassemblyStats::default(),
            stats: FlowStats::default(),
            last_sweep: 0,
            txs: Vec::new(),
        }
    }

    pub fn active(&self) -> usize {
        self.map.len()
    }

    /// Out-of-order bytes buffered over all flows.
    pub fn buffered_bytes(&self) -> usize {
        self.budget.used
    }

    pub fn process(&mut self, seg: &TcpSegment<'_>, out: &mut Vec<FlowOutput>) {
        self.process_with(seg, out, true)
    }

    /// [`FlowTable::process`]; `fast` false: every segment takes the rare path's lookups (the
    /// reference the tests hold the common path to).
    #[inline(always)]
    fn process_with(&mut self, seg: &TcpSegment<'_>, out: &mut Vec<FlowOutput>, fast: bool) {
        let a = (seg.src, seg.sport);
        let b = (seg.dst, seg.dport);
        let key = FlowKey::new(a, b);
        if seg.ts.saturating_sub(self.last_sweep) >= 1_000_000_000 {
            self.sweep(seg.ts, out);
        }
        let syn_only = seg.flags & (tcp_flags::SYN | tcp_flags::ACK) == tcp_flags::SYN;
        // The common packet: its flow exists, it is no lone SYN and no port reuse is pending.
        // Nothing below but the lookup applies to it: one lookup, not three.
        let flow = match self.map.get_mut(&key) {
            Some(f) if fast && !syn_only && f.reuse.is_none() => f,
            _ => {
                if !self.lookup_slow(key, seg, out) {
                    return;
                }
                // (made or kept by `lookup_slow`: a second lookup, on the rare path only)
                let Some(f) = self.map.get_mut(&key) else {
                    return;
                };
                f
            }
        };
        let d = if flow.addr[0] == a { 0 } else { 1 };
        flow.pkts += 1;
        flow.dirs |= 1 << d;
        flow.last_seen = seg.ts;
        let ctx = Ctx {
            rcfg: &self.rcfg,
            hcfg: &self.hcfg,
            budget: &mut self.budget,
            st: &mut self.rstats,
        };
        let mut notes = flow.segment(d, seg, ctx, &mut self.stats);
        // A hole the peer has acknowledged is lost from our copy: skip it once the reorder
        // window has passed.
        for dir in [d, d ^ 1] {
            let ctx = Ctx {
                rcfg: &self.rcfg,
                hcfg: &self.hcfg,
                budget: &mut self.budget,
                st: &mut self.rstats,
            };
            let n = flow.stale(dir, seg.ts, ctx);
            notes.gap |= n.gap;
            notes.conflict |= n.conflict;
        }
        let closing = flow.closed_at.is_none() && (seg.flags & tcp_flags::RST != 0 || (flow.eof[0] && flow.eof[1]));
        if closing {
            flow.closed_at = Some(seg.ts);
            self.stats.closed += 1;
            let ctx = Ctx {
                rcfg: &self.rcfg,
                hcfg: &self.hcfg,
                budget: &mut self.budget,
                st: &mut self.rstats,
            };
            let n = flow.flush(seg.ts, ctx);
            notes.gap |= n.gap;
        }
        // (most packets, a body segment among them, end no message and note nothing)
        if !flow.quiet(notes) {
            flow.collect(seg.ts, notes, &self.cfg, &mut self.stats, &mut self.txs, out);
        }
    }

    /// The flow of a segment, for every case but the common one (see [`FlowTable::process`]):
    /// port reuse, a lone SYN, a new flow (evicting when the table is full). `None`: the
    /// segment is only noted (a far SYN waiting for its answer); true: the flow is in the table.
    fn lookup_slow(&mut self, key: FlowKey, seg: &TcpSegment<'_>, out: &mut Vec<FlowOutput>) -> bool {
        let a = (seg.src, seg.sport);
        let b = (seg.dst, seg.dport);
        // Port reuse: a fresh SYN on a closed flow starts a new one; on an open flow, a SYN far
        // from the sequence space waits for the peer's answer (see the module doc).
        // (client, server, the client's ISN) of a confirmed new connection
        let mut restart: Option<(Endpoint, Endpoint, u32)> = None;
        if let Some(f) = self.map.get_mut(&key) {
            let d = if f.addr[0] == a { 0 } else { 1 };
            let syn_only = seg.flags & (tcp_flags::SYN | tcp_flags::ACK) == tcp_flags::SYN;
            if syn_only && f.closed_at.is_some() {
                if let Some(f) = self.map.remove(&key) {
                    self.finish(f, seg.ts, out);
                }
            } else if syn_only && f.far_syn(d, seg.seq) {
                f.reuse = Some((d, seg.seq));
                f.last_seen = seg.ts;
                return false;
            } else if let Some((c, isn)) = f.reuse {
                let answered = d != c
                    && seg.flags & (tcp_flags::SYN | tcp_flags::ACK) == tcp_flags::SYN | tcp_flags::ACK
                    && seg.ack == isn.wrapping_add(1);
                let went_on = d == c && seg.flags & tcp_flags::SYN == 0 && seg.seq == isn.wrapping_add(1);
                if answered || went_on {
                    restart = Some((f.addr[c], f.addr[c ^ 1], isn));
                }
            }
        }
        if let Some((client, server, isn)) = restart {
            if let Some(f) = self.map.remove(&key) {
                self.stats.reused += 1;
                self.finish(f, seg.ts, out);
            }
            self.stats.created += 1;
            let mut f = Flow::new(&key, [client, server], seg.ts);
            f.syn_client = Some(0);
            f.streams[0].init(isn);
            self.map.insert(key, Box::new(f));
        }
        if self.map.len() >= self.cfg.max_flows && !self.map.contains_key(&key) {
            self.evict(seg.ts, out);
        }
        // (one lookup for the flow, found or made)
        let created = &mut self.stats.created;
        self.map.entry(key).or_insert_with(|| {
            *created += 1;
            Box::new(Flow::new(&key, [a, b], seg.ts))
        });
        true
    }

    /// Flush and remove flows idle past their timeout.
    pub fn sweep(&mut self, now: Ts, out: &mut Vec<FlowOutput>) {
        self.last_sweep = now;
        let (idle, closed) = (self.cfg.idle_timeout, self.cfg.closed_timeout);
        let mut expired: Vec<(Ts, FlowKey)> = self
            .map
            .iter()
            .filter(|(_, f)| {
                let age = now.saturating_sub(f.last_seen);
                if f.closed_at.is_some() {
                    age > closed
                } else {
                    age > idle
                }
            })
            .map(|(k, f)| (f.last_seen, *k))
            .collect();
        in_replay_order(&mut expired);
        for (_, k) in expired {
            if let Some(f) = self.map.remove(&k) {
                if f.closed_at.is_none() {
                    self.stats.timed_out += 1;
                }
                self.finish(f, now, out);
            }
        }
    }

    /// End of input: flush every flow.
    pub fn flush_all(&mut self, now: Ts, out: &mut Vec<FlowOutput>) {
        let mut all: Vec<(Ts, FlowKey)> = self.map.iter().map(|(k, f)| (f.last_seen, *k)).collect();
        in_replay_order(&mut all);
        for (_, k) in all {
            if let Some(f) = self.map.remove(&k) {
                self.finish(f, now, out);
            }
        }
    }

    /// Table full: flush and evict the least recently seen sixteenth.
    fn evict(&mut self, now: Ts, out: &mut Vec<FlowOutput>) {
        let mut seen: Vec<Ts> = self.map.values().map(|f| f.last_seen).collect();
        let n = (seen.len() / 16).max(1);
        let (_, cut, _) = seen.select_nth_unstable(n - 1);
        let cut = *cut;
        let mut victims: Vec<(Ts, FlowKey)> = self
            .map
            .iter()
            .filter(|(_, f)| f.last_seen <= cut)
            .map(|(k, f)| (f.last_seen, *k))
            .collect();
        in_replay_order(&mut victims);
        victims.truncate(n);
        for (_, k) in victims {
            if let Some(f) = self.map.remove(&k) {
                self.stats.evicted += 1;
                self.finish(f, now, out);
            }
        }
    }

    fn finish(&mut self, mut f: Box<Flow>, now: Ts, out: &mut Vec<FlowOutput>) {
        let ts = f.last_seen.min(now).max(f.last_seen);
        let ctx = Ctx {
            rcfg: &self.rcfg,
            hcfg: &self.hcfg,
            budget: &mut self.budget,
            st: &mut self.rstats,
        };
        let notes = f.flush(ts, ctx);
        f.collect(ts, notes, &self.cfg, &mut self.stats, &mut self.txs, out);
        self.stats.socks += f.pre.socks_version().is_some() as u64;
        self.stats.one_way += (f.dirs != 3) as u64;
        if let Some(c) = f.conn.as_ref() {
            self.stats.not_http += c.not_http() as u64;
            self.stats.pipeline_evicted_responses += c.evicted_responses();
        }
        for s in &mut f.streams {
            s.discard(&mut self.budget);
        }
    }
}

struct Ctx<'a> {
    rcfg: &'a ReassemblyConfig,
    hcfg: &'a HttpConfig,
    budget: &'a mut Budget,
    st: &'a mut ReassemblyStats,
}

impl Flow {
    fn new(key: &FlowKey, addr: [(IpAddr, u16); 2], ts: Ts) -> Self {
        Flow {
            id: flow_id(key, ts),
            addr,
            streams: [Stream::default(), Stream::default()],
            conn: None,
            pre: Preface::new(None),
            syn_client: None,
            ack: [None, None],
            eof: [false, false],
            last_seen: ts,
            closed_at: None,
            pkts: 0,
            dirs: 0,
            anomalies: 0,
            cid: None,
            reuse: None,
        }
    }

    /// Is a SYN from direction `d` with this sequence number far from that direction's stream
    /// (not a retransmission of its SYN)?
    fn far_syn(&self, d: usize, seq: u32) -> bool {
        let s = &self.streams[d];
        match s.seq_map() {
            Some((_, next)) => s.isn() != Some(seq) && (seq.wrapping_sub(next) as i32).unsigned_abs() > REUSE_DISTANCE,
            None => false,
        }
    }

    fn segment(&mut self, d: usize, seg: &TcpSegment<'_>, ctx: Ctx<'_>, fstats: &mut FlowStats) -> Notes {
        let syn = seg.flags & tcp_flags::SYN != 0;
        let ack = seg.flags & tcp_flags::ACK != 0;
        if syn {
            self.streams[d].init(seg.seq);
            if self.syn_client.is_none() && self.conn.is_none() {
                self.syn_client = Some(if ack { d ^ 1 } else { d });
            }
        }
        if ack {
            self.ack[d] = Some(seg.ack);
            // A peer that answered a SYN twice: follow the ISN this side acknowledges.
            self.streams[d ^ 1].confirm(seg.ack);
        }
        let has_data = !seg.payload.is_empty() || seg.missing > 0;
        if has_data && self.conn.is_none() {
            if self.syn_client.is_none() {
                fstats.midstream += 1;
            }
            self.conn = Some(Box::new(Conn::new(self.syn_client, ctx.hcfg)));
            self.pre = Preface::new(self.syn_client);
        }
        // SYN consumes one sequence number: its data (TCP Fast Open) starts at seq + 1.
        let seq = if syn { seg.seq.wrapping_add(1) } else { seg.seq };
        let fin = seg.flags & tcp_flags::FIN != 0;
        self.streams[d].note_ack(if ack { Some(seg.ack) } else { None });
        let map = self.streams[d ^ 1].seq_map();
        let ts = seg.ts;
        let Flow {
            streams,
            conn,
            pkts,
            pre,
            ..
        } = self;
        let hcfg = ctx.hcfg;
        let mut feed = Feed::new(conn, pre, d, ts, hcfg, map);
        let notes = streams[d].segment(
            seq,
            seg.payload,
            seg.missing,
            fin,
            *pkts,
            ctx.rcfg,
            ctx.budget,
            ctx.st,
            &mut |c| feed.chunk(c),
        );
        self.check_eof(d, ts, hcfg);
        notes
    }

    fn stale(&mut self, d: usize, ts: Ts, ctx: Ctx<'_>) -> Notes {
        if self.streams[d].buffered() == 0 {
            return Notes::default();
        }
        let hcfg = ctx.hcfg;
        let map = self.streams[d ^ 1].seq_map();
        let Flow {
            streams,
            conn,
            pkts,
            ack,
            pre,
            ..
        } = self;
        let mut feed = Feed::new(conn, pre, d, ts, hcfg, map);
        let notes = streams[d].check_stale(*pkts, ack[d ^ 1], ctx.rcfg, ctx.budget, ctx.st, &mut |c| feed.chunk(c));
        self.check_eof(d, ts, hcfg);
        notes
    }

    fn check_eof(&mut self, d: usize, ts: Ts, hcfg: &HttpConfig) {
        if self.streams[d].finished() && !self.eof[d] {
            self.eof[d] = true;
            if let Some(c) = self.conn.as_mut() {
                c.eof(d, ts, hcfg);
            }
        }
    }

    /// Deliver everything buffered (skipping holes) and close the HTTP connection.
    fn flush(&mut self, ts: Ts, ctx: Ctx<'_>) -> Notes {
        let mut notes = Notes::default();
        let hcfg = ctx.hcfg;
        for d in 0..2 {
            let map = self.streams[d ^ 1].seq_map();
            let Flow { streams, conn, pre, .. } = self;
            let mut feed = Feed::new(conn, pre, d, ts, hcfg, map);
            let n = streams[d].flush(ctx.budget, ctx.st, &mut |c| feed.chunk(c));
            notes.gap |= n.gap;
        }
        if let Some(c) = self.conn.as_mut() {
            c.flush(ts, hcfg);
        }
        self.eof = [true, true];
        notes
    }

    fn meta(&mut self) -> FlowMeta {
        let client = self
            .conn
            .as_ref()
            .and_then(|c| c.client())
            .or(self.syn_client)
            .or(self.pre.tls_client())
            .unwrap_or(0);
        let (src, dst) = (self.addr[client], self.addr[client ^ 1]);
        let cid = self
            .cid
            .get_or_insert_with(|| community_id::v1(0, src.0, dst.0, 6, src.1, dst.1).into())
            .clone();
        FlowMeta {
            flow_id: self.id,
            community_id: cid,
            src: src.0,
            sport: src.1,
            dst: dst.0,
            dport: dst.1,
        }
    }

    /// Nothing for [`Flow::collect`] to hand on: no TLS handshake to look for, no transaction
    /// or HTTP anomaly waiting, no gap or conflict noted.
    #[inline]
    fn quiet(&self, notes: Notes) -> bool {
        !notes.gap && !notes.conflict && self.pre.passthrough() && self.conn.as_ref().is_none_or(|c| !c.has_output())
    }

    #[allow(clippy::vec_box)] // (the boxes move on into `out` as they are)
    fn collect(
        &mut self,
        ts: Ts,
        notes: Notes,
        cfg: &FlowConfig,
        st: &mut FlowStats,
        txs: &mut Vec<Box<Transaction>>,
        out: &mut Vec<FlowOutput>,
    ) {
        if !self.pre.passthrough() {
            let end = self.eof[0] && self.eof[1];
            if let Some(t) = self.pre.take_tls(end) {
                st.tls += 1;
                st.tls_malformed += self.pre.tls_malformed() as u64;
                let meta = self.meta();
                out.push(FlowOutput::Tls {
                    ts: t.ts,
                    meta,
                    tls: Box::new(t.info),
                });
            }
        }
        txs.clear();
        let mut http_anoms = Vec::new();
        if let Some(c) = self.conn.as_mut() {
            if !c.has_output() && !notes.gap && !notes.conflict {
                return;
            }
            c.take(txs, &mut http_anoms);
        } else if !notes.gap && !notes.conflict {
            return;
        }
        let meta = self.meta();
        let mut anomaly = |what: FlowAnomaly, out: &mut Vec<FlowOutput>| {
            if self.anomalies < cfg.max_anomalies_per_flow {
                self.anomalies += 1;
                out.push(FlowOutput::Anomaly {
                    ts,
                    meta: meta.clone(),
                    what,
                });
            } else {
                st.anomalies_suppressed += 1;
            }
        };
        if notes.conflict {
            anomaly(FlowAnomaly::OverlapConflict, out);
        }
        if notes.gap {
            anomaly(FlowAnomaly::Gap, out);
        }
        for a in http_anoms {
            anomaly(FlowAnomaly::Http(a), out);
        }
        st.transactions += txs.len() as u64;
        if let Some(target) = self.pre.socks_target() {
            // Through SOCKS, the host is the tunnel's target when the request does not name one.
            for tx in txs.iter_mut() {
                if let Some(q) = tx.request.as_mut()
                    && q.header("host").is_none()
                {
                    q.headers.push("Host", target);
                }
            }
        }
        // (the last transaction takes `meta` itself: one copy of the community id fewer)
        let last = txs.pop();
        for tx in txs.drain(..) {
            out.push(FlowOutput::Http { meta: meta.clone(), tx });
        }
        if let Some(tx) = last {
            out.push(FlowOutput::Http { meta, tx });
        }
    }
}

/// Hands one direction's reassembled chunks to the flow's HTTP connection. Each piece of data
/// comes with the acknowledgement its segment carried ([`Chunk::Data`]), mapped here to an
/// offset of the other direction, so a response can wait for its request (http::conn).
struct Feed<'a> {
    conn: &'a mut Option<Box<Conn>>,
    pre: &'a mut Preface,
    dir: usize,
    ts: Ts,
    hcfg: &'a HttpConfig,
    /// (offset, next_seq) of the other direction's stream.
    map: Option<(u64, u32)>,
    ack_off: Option<u64>,
}

impl<'a> Feed<'a> {
    fn new(
        conn: &'a mut Option<Box<Conn>>,
        pre: &'a mut Preface,
        dir: usize,
        ts: Ts,
        hcfg: &'a HttpConfig,
        map: Option<(u64, u32)>,
    ) -> Self {
        Feed {
            conn,
            pre,
            dir,
            ts,
            hcfg,
            map,
            ack_off: None,
        }
    }

    fn chunk(&mut self, c: Chunk<'_>) {
        let Some(conn) = self.conn.as_mut() else { return };
        let (dir, ts, hcfg) = (self.dir, self.ts, self.hcfg);
        if self.pre.passthrough() {
            match c {
                Chunk::Data(b, ack) => {
                    if let Some(a) = ack {
                        self.ack_off = self.map.map(|(off, next)| seq_offset(off, next, a));
                    }
                    conn.data(dir, b, ts, self.ack_off, hcfg)
                }
                Chunk::Gap(n) => conn.gap(dir, n, ts, hcfg),
            }
            return;
        }
        match c {
            Chunk::Data(b, ack) => {
                if let Some(a) = ack {
                    // Offsets of the other direction as the HTTP parser counts them (without
                    // the SOCKS handshake).
                    let cut = self.pre.stripped[dir ^ 1];
                    self.ack_off = self.map.map(|(off, next)| seq_offset(off, next, a).saturating_sub(cut));
                }
                let ack_off = self.ack_off;
                let mut to_http = |d: usize, x: &[u8]| {
                    let ack = if d == dir { ack_off } else { None };
                    conn.data(d, x, ts, ack, hcfg)
                };
                self.pre.data(dir, b, ts, &mut to_http);
                if let Some(c) = self.pre.take_switch() {
                    // Reverse SOCKS: the side that opened SOCKS is the client of the tunnel.
                    **conn = Conn::new(Some(c), hcfg);
                }
            }
            Chunk::Gap(n) => self.pre.gap(dir, n, &mut |n| conn.gap(dir, n, ts, hcfg)),
        }
    }
}

/// Stream offset of sequence number `seq`, given a stream's (offset, next_seq) snapshot.
fn seq_offset(off: u64, next: u32, seq: u32) -> u64 {
    (off as i64 + seq.wrapping_sub(next) as i32 as i64).max(0) as u64
}

/// A flow id stable for a given flow and start time, below 2^53 so JSON readers keep it exact.
/// Flows ended together (a sweep, an eviction, the end of input) end in the order they were
/// last seen, then by address: not in the flow table's hash order, which a random seed changes
/// from run to run. The same file replays to the same lines in the same order.
fn in_replay_order(flows: &mut [(Ts, FlowKey)]) {
    flows.sort_unstable();
}

fn flow_id(k: &FlowKey, ts: Ts) -> u64 {
    let mut h = Fnv(0xcbf2_9ce4_8422_2325);
    // (the endpoints, as a derived `Hash` of the key writes them: ids stay what they were)
    (k.lo, k.hi).hash(&mut h);
    ts.hash(&mut h);
    spread_id(h.0)
}

/// A flow id from its key's hash: the splitmix64 finaliser spreads the bits, cut to 53 (an id
/// a JSON reader's double holds exactly).
fn spread_id(mut x: u64) -> u64 {
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^= x >> 31;
    x & ((1 << 53) - 1)
}

struct Fnv(u64);

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= *b as u64;
            self.0 = self.0.wrapping_mul(0x100_0000_01b3);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::v4;

    /// The key as it was: endpoints in tuple order, hashed by `derive(Hash)`.
    #[derive(Hash)]
    struct DerivedKey {
        lo: (IpAddr, u16),
        hi: (IpAddr, u16),
    }

    /// The key orders its endpoints as tuples do, equal keys hash alike in the table, and flow
    /// ids are what the derived hash of the key gave (the same lines for the same capture).
    #[test]
    fn flow_key_orders_as_tuples_and_ids_stay() {
        let mut seed = 0x0123_4567_89ab_cdef_u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let build = std::hash::BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default();
        use std::hash::BuildHasher;
        for i in 0..20_000 {
            let mut ep = || {
                let r = next();
                // few distinct values, so equal addresses and ports come up often
                let ip = match r % 3 {
                    0 => v4([10, 0, (r >> 8) as u8 % 3, (r >> 16) as u8 % 3]),
                    1 => v4([(r >> 8) as u8, (r >> 16) as u8, (r >> 24) as u8, (r >> 32) as u8]),
                    _ => crate::decode::v6([(r >> 8) as u8 % 2; 16]),
                };
                (ip, [80, 443, 40000, (r >> 40) as u16][(r >> 4) as usize % 4])
            };
            let (a, b) = (ep(), ep());
            let k = FlowKey::new(a, b);
            let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
            assert_eq!((k.lo, k.hi), (lo, hi), "{a:?} {b:?}");
            assert_eq!(FlowKey::new(b, a), k);
            assert_eq!(build.hash_one(FlowKey::new(b, a)), build.hash_one(k));
            let ts = i as Ts * 1_000_003;
            let mut h = Fnv(0xcbf2_9ce4_8422_2325);
            DerivedKey { lo, hi }.hash(&mut h);
            ts.hash(&mut h);
            assert_eq!(flow_id(&k, ts), spread_id(h.0));
        }
    }

    const C: [u8; 4] = [10, 0, 0, 2];
    const S: [u8; 4] = [10, 0, 0, 1];

    /// A segment of the one test connection (client 10.0.0.2:40000, server 10.0.0.1:80).
    pub(super) fn seg<'a>(
        ts: Ts,
        from_client: bool,
        seq: u32,
        ack: u32,
        flags: u8,
        payload: &'a [u8],
    ) -> TcpSegment<'a> {
        let (src, dst, sport, dport) = if from_client {
            (v4(C), v4(S), 40000, 80)
        } else {
            (v4(S), v4(C), 80, 40000)
        };
        TcpSegment {
            ts,
            src,
            dst,
            sport,
            dport,
            seq,
            ack,
            flags,
            payload,
            missing: 0,
        }
    }

    fn table() -> FlowTable {
        FlowTable::new(
            FlowConfig::default(),
            ReassemblyConfig::default(),
            HttpConfig::default(),
        )
    }

    fn http(out: &[FlowOutput]) -> Vec<(String, String, u16, u64, bool)> {
        out.iter()
            .filter_map(|o| match o {
                FlowOutput::Http { meta, tx } => Some((
                    format!("{}:{}", meta.src, meta.sport),
                    tx.request.as_ref().map_or(String::new(), |m| m.uri.clone()),
                    tx.response.as_ref().map_or(0, |m| m.status),
                    tx.response.as_ref().map_or(0, |m| m.body_len),
                    tx.gap,
                )),
                _ => None,
            })
            .collect()
    }

    const REQ: &[u8] = b"GET /api/users/7 HTTP/1.1\r\nHost: api\r\n\r\n";
    const RESP: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
    const A: u8 = tcp_flags::ACK;
    const PA: u8 = tcp_flags::ACK | 0x08;

    /// Handshake, request split in two segments at `cut`, response, FIN both ways.
    fn conversation(cut: usize, reorder: bool) -> Vec<FlowOutput> {
        let mut t = table();
        let mut out = Vec::new();
        let (ci, si) = (1000u32, 5000u32);
        t.process(&seg(1, true, ci, 0, tcp_flags::SYN, b""), &mut out);
        t.process(&seg(2, false, si, ci + 1, tcp_flags::SYN | A, b""), &mut out);
        t.process(&seg(3, true, ci + 1, si + 1, A, b""), &mut out);
        let (a, b) = REQ.split_at(cut);
        let s1 = seg(4, true, ci + 1, si + 1, PA, a);
        let s2 = seg(5, true, ci + 1 + a.len() as u32, si + 1, PA, b);
        if reorder {
            t.process(&s2, &mut out);
            t.process(&s1, &mut out);
        } else {
            t.process(&s1, &mut out);
            t.process(&s2, &mut out);
        }
        let ra = ci + 1 + REQ.len() as u32;
        t.process(&seg(6, false, si + 1, ra, PA, RESP), &mut out);
        t.process(
            &seg(7, true, ra, si + 1 + RESP.len() as u32, A | tcp_flags::FIN, b""),
            &mut out,
        );
        t.process(
            &seg(8, false, si + 1 + RESP.len() as u32, ra + 1, A | tcp_flags::FIN, b""),
            &mut out,
        );
        assert_eq!(t.stats.closed, 1);
        out
    }

    #[test]
    fn request_split_at_every_offset_and_reordered_gives_the_same_event() {
        let want = vec![("10.0.0.2:40000".to_string(), "/api/users/7".to_string(), 200, 5, false)];
        for cut in 0..=REQ.len() {
            for reorder in [false, true] {
                assert_eq!(http(&conversation(cut, reorder)), want, "cut {cut} reorder {reorder}");
            }
        }
    }

    #[test]
    fn midstream_pickup_finds_the_client_from_the_data() {
        let mut t = table();
        let mut out = Vec::new();
        // The server's packet is seen first: direction 0 is the server, yet src is the client.
        t.process(&seg(1, false, 9000, 100, PA, b"tail of an old response body"), &mut out);
        t.process(&seg(2, true, 100, 9029, PA, REQ), &mut out);
        t.process(&seg(3, false, 9029, 100 + REQ.len() as u32, PA, RESP), &mut out);
        t.flush_all(4, &mut out);
        assert_eq!(
            http(&out),
            vec![("10.0.0.2:40000".to_string(), "/api/users/7".to_string(), 200, 5, false)]
        );
        assert_eq!(t.stats.midstream, 1);
    }

    #[test]
    fn lost_segment_inside_a_body_is_a_gap_not_a_desync() {
        let mut t = table();
        let mut out = Vec::new();
        t.process(&seg(1, true, 100, 0, tcp_flags::SYN, b""), &mut out);
        t.process(&seg(2, false, 900, 101, tcp_flags::SYN | A, b""), &mut out);
        t.process(&seg(3, true, 101, 901, PA, REQ), &mut out);
        let head = b"HTTP/1.1 200 OK\r\nContent-Length: 30\r\n\r\n";
        t.process(&seg(4, false, 901, 101 + REQ.len() as u32, PA, head), &mut out);
        let body_at = 901 + head.len() as u32;
        // 10 body bytes lost, 20 arrive
        t.process(
            &seg(5, false, body_at + 10, 101 + REQ.len() as u32, PA, &[b'x'; 20]),
            &mut out,
        );
        // next request and response on the same connection
        let r2 = b"GET /next HTTP/1.1\r\n\r\n";
        t.process(&seg(6, true, 101 + REQ.len() as u32, body_at + 30, PA, r2), &mut out);
        t.flush_all(7, &mut out);
        let got = http(&out);
        assert_eq!(
            got[0],
            ("10.0.0.2:40000".to_string(), "/api/users/7".to_string(), 200, 30, true)
        );
        assert_eq!(got[1].1, "/next");
        assert!(out.iter().any(|o| matches!(
            o,
            FlowOutput::Anomaly {
                what: FlowAnomaly::Gap,
                ..
            }
        )));
    }

    #[test]
    fn flow_table_cap_evicts_and_counts() {
        let mut t = FlowTable::new(
            FlowConfig {
                max_flows: 64,
                ..FlowConfig::default()
            },
            ReassemblyConfig::default(),
            HttpConfig::default(),
        );
        let mut out = Vec::new();
        for i in 0..10_000u32 {
            let mut s = seg(i as u64, true, i, 0, tcp_flags::SYN, b"");
            s.sport = (i % 60000) as u16;
            s.src = v4([10, 1, (i >> 8) as u8, i as u8]);
            t.process(&s, &mut out);
            assert!(t.active() <= 64);
        }
        assert!(t.stats.evicted >= 10_000 - 64);
    }

    /// Flows ended together leave in the order they were last seen (then by address), whatever
    /// the table's hash order: the end of input, an idle sweep and an eviction alike.
    #[test]
    fn flows_ended_together_leave_in_the_order_they_were_last_seen() {
        // client ports in an order unrelated to time; each flow's last packet at its own time
        let ports: Vec<u16> = (0..300u32).map(|i| (1024 + (i * 7919) % 60000) as u16).collect();
        let open = |t: &mut FlowTable, out: &mut Vec<FlowOutput>| {
            for (i, p) in ports.iter().enumerate() {
                let req = format!("GET /r/{i} HTTP/1.1\r\nHost: a\r\n\r\n");
                let mut s = seg(1_000 + i as Ts, true, 7, 0, PA, req.as_bytes());
                s.sport = *p;
                t.process(&s, out);
            }
        };
        let uris = |out: &[FlowOutput]| -> Vec<String> { http(out).into_iter().map(|h| h.1).collect() };
        let want: Vec<String> = (0..300).map(|i| format!("/r/{i}")).collect();

        let mut t = table();
        let mut out = Vec::new();
        open(&mut t, &mut out);
        assert!(uris(&out).is_empty(), "no request ended before the flush");
        t.flush_all(10_000, &mut out);
        assert_eq!(uris(&out), want, "end of input");

        let mut t = table();
        let mut out = Vec::new();
        open(&mut t, &mut out);
        let idle = t.cfg.idle_timeout;
        t.sweep(1_000 + 300 + idle + 1_000_000, &mut out);
        assert_eq!(uris(&out), want, "idle sweep");

        let mut t = FlowTable::new(
            FlowConfig {
                max_flows: 300,
                ..FlowConfig::default()
            },
            ReassemblyConfig::default(),
            HttpConfig::default(),
        );
        let mut out = Vec::new();
        open(&mut t, &mut out);
        let mut s = seg(5_000, true, 7, 0, tcp_flags::SYN, b"");
        s.sport = 1;
        t.process(&s, &mut out);
        // a sixteenth evicted, the oldest first
        assert_eq!(uris(&out), want[..300 / 16], "eviction");
    }

    fn flow_ids(out: &[FlowOutput]) -> Vec<u64> {
        out.iter()
            .filter_map(|o| match o {
                FlowOutput::Http { meta, .. } => Some(meta.flow_id),
                _ => None,
            })
            .collect()
    }

    /// Handshake from `ci`/`si`, one request and its response; no FIN (the mirror lost it).
    fn exchange(t: &mut FlowTable, ts: Ts, ci: u32, si: u32, req: &[u8], out: &mut Vec<FlowOutput>) {
        t.process(&seg(ts, true, ci, 0, tcp_flags::SYN, b""), out);
        t.process(&seg(ts + 1, false, si, ci + 1, tcp_flags::SYN | A, b""), out);
        t.process(&seg(ts + 2, true, ci + 1, si + 1, A, b""), out);
        t.process(&seg(ts + 3, true, ci + 1, si + 1, PA, req), out);
        let ra = ci + 1 + req.len() as u32;
        t.process(&seg(ts + 4, false, si + 1, ra, PA, RESP), out);
        t.process(&seg(ts + 5, true, ra, si + 1 + RESP.len() as u32, A, b""), out);
    }

    #[test]
    fn port_reused_after_a_lost_fin_starts_a_new_connection() {
        let mut t = table();
        let mut out = Vec::new();
        exchange(&mut t, 10, 1000, 5000, REQ, &mut out);
        let second = b"GET /second?cmd=;cat%20/etc/passwd HTTP/1.1\r\nHost: api\r\n\r\n";
        // same ports, new ISNs far from the old sequence space, no FIN or RST seen in between
        exchange(&mut t, 1_000_000_000, 3_000_000_000, 77_000_000, second, &mut out);
        t.flush_all(2_000_000_000, &mut out);
        let got = http(&out);
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(got[0].1, "/api/users/7");
        assert_eq!((got[1].1.as_str(), got[1].2), ("/second?cmd=;cat%20/etc/passwd", 200));
        let ids = flow_ids(&out);
        assert_ne!(ids[0], ids[1], "the new connection has its own flow id");
        assert_eq!(t.stats.reused, 1);
    }

    #[test]
    fn unanswered_far_syn_on_an_open_flow_changes_nothing() {
        let mut t = table();
        let mut out = Vec::new();
        exchange(&mut t, 10, 1000, 5000, REQ, &mut out);
        // a forged SYN nobody answers, then the old connection goes on
        t.process(&seg(20, true, 3_000_000_000, 0, tcp_flags::SYN, b""), &mut out);
        let c = 1001 + REQ.len() as u32;
        let s = 5001 + RESP.len() as u32;
        t.process(&seg(21, true, c, s, PA, b"GET /more HTTP/1.1\r\n\r\n"), &mut out);
        t.process(&seg(22, false, s, c + 22, PA, RESP), &mut out);
        t.flush_all(30, &mut out);
        let got = http(&out);
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!((got[1].1.as_str(), got[1].2), ("/more", 200));
        let ids = flow_ids(&out);
        assert_eq!(ids[0], ids[1]);
        assert_eq!(t.stats.reused, 0);
    }

    #[test]
    fn server_answering_a_syn_twice_is_followed_where_the_client_acks() {
        let mut t = table();
        let mut out = Vec::new();
        let (ci, s1, s2) = (1000u32, 5000u32, 900_000_000u32);
        t.process(&seg(1, true, ci, 0, tcp_flags::SYN, b""), &mut out);
        t.process(&seg(2, false, s1, ci + 1, tcp_flags::SYN | A, b""), &mut out);
        t.process(&seg(3, false, s2, ci + 1, tcp_flags::SYN | A, b""), &mut out);
        // the client acknowledges the first SYN-ACK: that is the connection
        t.process(&seg(4, true, ci + 1, s1 + 1, A, b""), &mut out);
        t.process(&seg(5, true, ci + 1, s1 + 1, PA, REQ), &mut out);
        t.process(&seg(6, false, s1 + 1, ci + 1 + REQ.len() as u32, PA, RESP), &mut out);
        t.flush_all(7, &mut out);
        assert_eq!(
            http(&out),
            vec![("10.0.0.2:40000".to_string(), "/api/users/7".to_string(), 200, 5, false)]
        );
    }

    #[test]
    fn flows_seen_from_one_direction_only_are_counted() {
        let mut t = table();
        let mut out = Vec::new();
        // The client's half of a connection (as a ring would see it if the fanout split it)...
        t.process(&seg(1, true, 1000, 0, tcp_flags::SYN, b""), &mut out);
        t.process(&seg(3, true, 1001, 5001, PA, REQ), &mut out);
        t.flush_all(10, &mut out);
        assert_eq!(t.stats.one_way, 1);
        // ...and a whole one.
        let mut t = table();
        t.process(&seg(1, true, 1000, 0, tcp_flags::SYN, b""), &mut out);
        t.process(&seg(2, false, 5000, 1001, tcp_flags::SYN | A, b""), &mut out);
        t.flush_all(10, &mut out);
        assert_eq!((t.stats.one_way, t.stats.created), (0, 1));
    }
}

#[cfg(test)]
mod collect_tests {
    use super::*;
    use crate::decode::v4;

    use super::tests::seg;

    /// Several transactions finished by one segment leave in order, each with the flow's meta
    /// (the last one takes the meta itself, the others a copy).
    #[test]
    fn transactions_finished_together_keep_their_order_and_the_same_meta() {
        let mut t = FlowTable::new(
            FlowConfig::default(),
            ReassemblyConfig::default(),
            HttpConfig::default(),
        );
        let mut out = Vec::new();
        let (ci, si) = (1000u32, 5000u32);
        let ack = tcp_flags::ACK;
        let pa = tcp_flags::ACK | 0x08;
        let req: &[u8] = b"GET /a HTTP/1.1\r\nHost: h\r\n\r\nGET /b HTTP/1.1\r\nHost: h\r\n\r\nGET /c HTTP/1.1\r\n\r\n";
        let resp: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\naHTTP/1.1 201 OK\r\nContent-Length: 0\r\n\r\nHTTP/1.1 404 No\r\nContent-Length: 2\r\n\r\nno";
        t.process(&seg(1, true, ci, 0, tcp_flags::SYN, b""), &mut out);
        t.process(&seg(2, false, si, ci + 1, tcp_flags::SYN | ack, b""), &mut out);
        t.process(&seg(3, true, ci + 1, si + 1, ack, b""), &mut out);
        t.process(&seg(4, true, ci + 1, si + 1, pa, req), &mut out);
        assert!(out.is_empty());
        t.process(&seg(5, false, si + 1, ci + 1 + req.len() as u32, pa, resp), &mut out);
        let got: Vec<_> = out
            .iter()
            .map(|o| match o {
                FlowOutput::Http { meta, tx } => (
                    meta.clone(),
                    tx.request.as_ref().map(|q| q.uri.clone()),
                    tx.response.as_ref().map(|r| r.status),
                ),
                _ => panic!("only transactions expected"),
            })
            .collect();
        assert_eq!(got.len(), 3);
        let uris: Vec<_> = got.iter().map(|g| (g.1.clone().unwrap_or_default(), g.2)).collect();
        assert_eq!(
            uris,
            [
                ("/a".to_string(), Some(200)),
                ("/b".to_string(), Some(201)),
                ("/c".to_string(), Some(404))
            ]
        );
        for g in &got {
            assert_eq!(g.0.flow_id, got[0].0.flow_id);
            assert_eq!(g.0.community_id, got[0].0.community_id);
            assert!(!g.0.community_id.is_empty());
            assert_eq!((g.0.src, g.0.sport, g.0.dport), (v4([10, 0, 0, 2]), 40000, 80));
        }
    }

    /// The common packet's single lookup changes nothing: random traffic over a few reused
    /// port pairs (lone SYNs near and far, SYN-ACKs answering them, data, FIN, RST, a table
    /// small enough to evict) gives the same outputs and counters as the rare path's lookups.
    #[test]
    fn single_lookup_for_the_common_packet_gives_what_the_full_lookup_gives() {
        let mut seed = 7u64;
        let mut next = || {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (seed >> 33) as u32
        };
        let cfg = FlowConfig {
            max_flows: 3,
            ..FlowConfig::default()
        };
        let mut fast = FlowTable::new(cfg.clone(), ReassemblyConfig::default(), HttpConfig::default());
        let mut slow = FlowTable::new(cfg, ReassemblyConfig::default(), HttpConfig::default());
        let (mut fo, mut so) = (Vec::new(), Vec::new());
        let req = b"GET /a HTTP/1.1\r\nHost: h\r\n\r\n";
        let resp = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        // per port: client and server next sequence numbers
        let mut next_seq = [[1000u32, 5000u32]; 5];
        let mut ts = 1_000_000u64;
        for _ in 0..20_000 {
            let r = next();
            let port = (r % 5) as usize;
            let client = (r >> 3) & 1 == 0;
            let (src, dst, sport, dport) = if client {
                (v4([10, 0, 0, 2]), v4([10, 0, 0, 1]), 40000 + port as u16, 80)
            } else {
                (v4([10, 0, 0, 1]), v4([10, 0, 0, 2]), 80, 40000 + port as u16)
            };
            let d = usize::from(!client);
            let kind = (r >> 4) % 16;
            let far = (r >> 8) & 1 == 1;
            let (flags, payload): (u8, &[u8]) = match kind {
                0 => (tcp_flags::SYN, &[]),
                1 => (tcp_flags::SYN | tcp_flags::ACK, &[]),
                2 => (tcp_flags::FIN | tcp_flags::ACK, &[]),
                3 if (r >> 9) % 4 == 0 => (tcp_flags::RST, &[]),
                4..=9 => (tcp_flags::ACK | 0x08, if client { &req[..] } else { &resp[..] }),
                _ => (tcp_flags::ACK, &[]),
            };
            let mut seq = next_seq[port][d];
            if far && flags & tcp_flags::SYN != 0 {
                seq = seq.wrapping_add(0x4000_0000 + r);
            }
            let ack = next_seq[port][d ^ 1];
            let segment = TcpSegment {
                ts,
                src,
                dst,
                sport,
                dport,
                seq,
                ack,
                flags,
                payload,
                missing: 0,
            };
            let adv = payload.len() as u32 + u32::from(flags & (tcp_flags::SYN | tcp_flags::FIN) != 0);
            next_seq[port][d] = seq.wrapping_add(adv);
            if flags & tcp_flags::SYN != 0 && far {
                next_seq[port][d] = seq.wrapping_add(1);
            }
            // (distinct times: the flows evicted are the same whatever the table's order)
            ts += 1 + u64::from(r % 3_000_000);
            fast.process_with(&segment, &mut fo, true);
            slow.process_with(&segment, &mut so, false);
        }
        fast.flush_all(ts, &mut fo);
        slow.flush_all(ts, &mut so);
        assert!(fo.len() > 100, "{}", fo.len());
        // Flows are swept, evicted and flushed in the order of their table, which is seeded
        // per table: compare each flow's outputs in order, the flows in a fixed order.
        let by_flow = |v: &[FlowOutput]| {
            let mut v: Vec<_> = v
                .iter()
                .map(|o| {
                    let m = match o {
                        FlowOutput::Http { meta, .. }
                        | FlowOutput::Tls { meta, .. }
                        | FlowOutput::Anomaly { meta, .. } => meta,
                    };
                    ((m.src, m.sport, m.dst, m.dport), format!("{o:?}"))
                })
                .collect();
            v.sort_by_key(|(k, _)| *k);
            v
        };
        assert_eq!(by_flow(&fo), by_flow(&so));
        assert_eq!(format!("{:?}", fast.stats), format!("{:?}", slow.stats));
        assert_eq!(format!("{:?}", fast.rstats), format!("{:?}", slow.rstats));
        assert!(fast.stats.reused > 0 && fast.stats.evicted > 0, "{:?}", fast.stats);
    }
}
