//! TCP reassembly of one direction of a flow.
//!
//! Sequence numbers are compared modulo 2^32 (RFC 1982 style, via a signed 32-bit distance), so
//! wraparound needs no special case. Bytes are addressed by a 64-bit stream offset that never
//! wraps. In-order data goes straight to the consumer from the packet buffer (the fast path:
//! no copy into a stream buffer). Out-of-order data is copied into a small ordered buffer,
//! capped per stream and globally ([`Budget`]).
//!
//! Overlap policy: **first data wins** (BSD). Bytes already delivered or already buffered are
//! kept; a later segment only contributes bytes nobody sent before. A retransmission whose
//! overlapping bytes differ from what was kept is a *conflicting overlap* (an evasion attempt or
//! a broken mirror) and is reported. Delivered bytes are remembered in a ring of
//! `overlap_window` bytes per direction for that comparison.
//!
//! Gaps: a hole (bytes the mirror lost) is skipped, and reported to the consumer as
//! [`Chunk::Gap`], when (a) the out-of-order buffer passes its per-stream or global cap, (b) the
//! peer has acknowledged past the hole and `reorder_packets` more packets of the flow went by
//! without filling it, or (c) the stream is flushed (close, timeout, end of input). Bytes the
//! capture cut off (snap length) are gaps too.

use std::collections::BTreeMap;

/// Segments starting further ahead than this (bytes) are ignored: the largest scaled TCP
/// window is 1 GiB, but on a mirror anything beyond a few MiB ahead is forged or corrupt.
const MAX_AHEAD: i64 = 64 << 20;

/// A piece of the reassembled byte stream, in order.
#[derive(Debug, PartialEq, Eq)]
pub enum Chunk<'a> {
    Data(&'a [u8]),
    /// `n` bytes were lost: the stream skips them.
    Gap(u64),
    /// The data that follows was carried by a segment acknowledging this sequence number of
    /// the other direction (lets the consumer order the two directions, see http::conn).
    Ack(u32),
}

#[derive(Debug, Clone)]
pub struct ReassemblyConfig {
    /// Out-of-order bytes buffered per direction before the first hole is skipped. Default 256 KiB.
    pub max_ooo_per_stream: usize,
    /// Out-of-order bytes buffered over all flows. Default 64 MiB.
    pub max_ooo_total: usize,
    /// Delivered bytes kept per direction to check retransmissions for conflicts. Default 256.
    pub overlap_window: usize,
    /// Packets of the flow to wait, once the peer acked past a hole, before skipping it. Default 16.
    pub reorder_packets: u64,
}

impl Default for ReassemblyConfig {
    fn default() -> Self {
        ReassemblyConfig {
            max_ooo_per_stream: 256 << 10,
            max_ooo_total: 64 << 20,
            overlap_window: 256,
            reorder_packets: 16,
        }
    }
}

/// Global accounting of buffered out-of-order bytes.
#[derive(Debug, Default)]
pub struct Budget {
    pub used: usize,
}

#[derive(Debug, Default, Clone, Copy)]
pub struct ReassemblyStats {
    pub segments: u64,
    pub bytes: u64,
    pub retransmits: u64,
    pub overlaps: u64,
    pub overlap_conflicts: u64,
    pub ooo_segments: u64,
    pub gaps: u64,
    pub gap_bytes: u64,
    pub cap_skips: u64,
    pub out_of_window: u64,
}

/// What a call noticed, for the flow to turn into anomalies.
#[derive(Debug, Default, Clone, Copy)]
pub struct Notes {
    pub conflict: bool,
    pub gap: bool,
}

#[derive(Default)]
pub struct Stream {
    started: bool,
    next_seq: u32,
    /// Stream offset of `next_seq`.
    off: u64,
    /// Out-of-order bytes by stream offset, with the acknowledgement their segment carried.
    ooo: BTreeMap<u64, (Vec<u8>, Option<u32>)>,
    ooo_bytes: usize,
    hist: Vec<u8>,
    hist_from: u64,
    fin_seq: Option<u32>,
    fin_done: bool,
    hole_since: u64,
    /// Acknowledgement carried by the segment being processed (set by [`Stream::note_ack`]).
    seg_ack: Option<u32>,
}

impl Stream {
    /// The SYN told us the initial sequence number.
    pub fn init(&mut self, isn: u32) {
        if !self.started || self.off == 0 {
            self.started = true;
            self.next_seq = isn.wrapping_add(1);
        }
    }

    /// Stream offset of the next expected byte (bytes delivered plus bytes skipped).
    pub fn offset(&self) -> u64 {
        self.off
    }

    /// True once every byte up to the FIN has been delivered or skipped.
    pub fn finished(&self) -> bool {
        self.fin_done
    }

    /// (offset, next expected sequence number), to map acknowledgements to offsets while the
    /// stream itself is borrowed elsewhere.
    pub fn seq_map(&self) -> Option<(u64, u32)> {
        self.started.then_some((self.off, self.next_seq))
    }

    pub fn buffered(&self) -> usize {
        self.ooo_bytes
    }

    /// The next segment fed carries this acknowledgement (for [`Chunk::Ack`]).
    pub fn note_ack(&mut self, ack: Option<u32>) {
        self.seg_ack = ack;
    }

    /// Feed one segment. `missing` bytes after `payload` were cut off by the capture.
    #[allow(clippy::too_many_arguments)]
    pub fn segment(
        &mut self,
        seq: u32,
        mut payload: &[u8],
        mut missing: u32,
        fin: bool,
        pkt_no: u64,
        cfg: &ReassemblyConfig,
        budget: &mut Budget,
        st: &mut ReassemblyStats,
        out: &mut dyn FnMut(Chunk<'_>),
    ) -> Notes {
        let mut notes = Notes::default();
        let len = payload.len() as u64 + missing as u64;
        if !self.started {
            self.started = true;
            self.next_seq = seq;
        }
        if fin && self.fin_seq.is_none() {
            self.fin_seq = Some(seq.wrapping_add(len as u32));
        }
        if len == 0 {
            self.check_fin();
            return notes;
        }
        st.segments += 1;
        st.bytes += len;
        if self.hist.is_empty() && cfg.overlap_window > 0 {
            self.set_overlap_window(cfg.overlap_window);
        }
        let mut rel = seq.wrapping_sub(self.next_seq) as i32 as i64;
        if rel < 0 {
            let back = (-rel) as u64;
            let seen = back.min(payload.len() as u64) as usize;
            st.overlaps += 1;
            if self.conflicts(self.off - back.min(self.off), &payload[..seen]) {
                st.overlap_conflicts += 1;
                notes.conflict = true;
            }
            if back >= len {
                st.retransmits += 1;
                self.check_fin();
                return notes;
            }
            if back as usize >= payload.len() {
                missing -= (back - payload.len() as u64) as u32;
                payload = &[];
            } else {
                payload = &payload[back as usize..];
            }
            rel = 0;
        }
        if rel > MAX_AHEAD {
            // Far beyond any window: a forged or corrupt segment, not data we lost.
            st.out_of_window += 1;
            return notes;
        }
        if rel == 0 {
            let ack = self.seg_ack;
            self.deliver(payload, missing, ack, st, out);
            self.drain(st, budget, &mut notes, out);
        } else {
            st.ooo_segments += 1;
            if self.ooo.is_empty() {
                self.hole_since = pkt_no;
            }
            let at = self.off + rel as u64;
            if self.insert_ooo(at, payload, budget) {
                st.overlap_conflicts += 1;
                notes.conflict = true;
            }
            while self.ooo_bytes > cfg.max_ooo_per_stream || (budget.used > cfg.max_ooo_total && !self.ooo.is_empty()) {
                st.cap_skips += 1;
                self.skip_hole(st, budget, &mut notes, out);
            }
        }
        self.check_fin();
        notes
    }

    /// Called for every packet of the flow: skip a hole the peer has acknowledged once enough
    /// packets went by without the missing bytes showing up (the mirror lost them).
    pub fn check_stale(
        &mut self,
        pkt_no: u64,
        peer_ack: Option<u32>,
        cfg: &ReassemblyConfig,
        budget: &mut Budget,
        st: &mut ReassemblyStats,
        out: &mut dyn FnMut(Chunk<'_>),
    ) -> Notes {
        let mut notes = Notes::default();
        if self.ooo.is_empty() || pkt_no.saturating_sub(self.hole_since) < cfg.reorder_packets {
            return notes;
        }
        if let Some(ack) = peer_ack {
            if (ack.wrapping_sub(self.next_seq) as i32) > 0 {
                self.skip_hole(st, budget, &mut notes, out);
                self.hole_since = pkt_no;
                self.check_fin();
            }
        }
        notes
    }

    /// Skip every remaining hole and deliver all buffered data (close, timeout, end of input).
    pub fn flush(&mut self, budget: &mut Budget, st: &mut ReassemblyStats, out: &mut dyn FnMut(Chunk<'_>)) -> Notes {
        let mut notes = Notes::default();
        while !self.ooo.is_empty() {
            self.skip_hole(st, budget, &mut notes, out);
        }
        self.check_fin();
        notes
    }

    /// Release buffered bytes without delivering them (flow evicted under memory pressure).
    pub fn discard(&mut self, budget: &mut Budget) {
        budget.used -= self.ooo_bytes;
        self.ooo_bytes = 0;
        self.ooo.clear();
    }

    fn check_fin(&mut self) {
        if let Some(f) = self.fin_seq {
            if !self.fin_done && (f.wrapping_sub(self.next_seq) as i32) <= 0 {
                self.fin_done = true;
            }
        }
    }

    fn deliver(
        &mut self,
        payload: &[u8],
        missing: u32,
        ack: Option<u32>,
        st: &mut ReassemblyStats,
        out: &mut dyn FnMut(Chunk<'_>),
    ) {
        if !payload.is_empty() {
            if let Some(a) = ack {
                out(Chunk::Ack(a));
            }
            out(Chunk::Data(payload));
            self.remember(payload);
            self.next_seq = self.next_seq.wrapping_add(payload.len() as u32);
            self.off += payload.len() as u64;
        }
        if missing > 0 {
            st.gaps += 1;
            st.gap_bytes += missing as u64;
            out(Chunk::Gap(missing as u64));
            self.next_seq = self.next_seq.wrapping_add(missing);
            self.off += missing as u64;
            self.hist_from = self.off;
        }
    }

    fn drain(
        &mut self,
        st: &mut ReassemblyStats,
        budget: &mut Budget,
        notes: &mut Notes,
        out: &mut dyn FnMut(Chunk<'_>),
    ) {
        while let Some(entry) = self.ooo.first_entry() {
            let at = *entry.key();
            if at > self.off {
                break;
            }
            let (data, ack) = entry.remove();
            self.ooo_bytes -= data.len();
            budget.used -= data.len();
            let end = at + data.len() as u64;
            if end <= self.off {
                continue;
            }
            let skip = (self.off - at) as usize;
            if skip > 0 && self.conflicts(at, &data[..skip]) {
                st.overlap_conflicts += 1;
                notes.conflict = true;
            }
            self.deliver(&data[skip..], 0, ack, st, out);
        }
    }

    fn skip_hole(
        &mut self,
        st: &mut ReassemblyStats,
        budget: &mut Budget,
        notes: &mut Notes,
        out: &mut dyn FnMut(Chunk<'_>),
    ) {
        let Some((&at, _)) = self.ooo.first_key_value() else {
            return;
        };
        if at > self.off {
            let n = at - self.off;
            st.gaps += 1;
            st.gap_bytes += n;
            notes.gap = true;
            out(Chunk::Gap(n));
            self.next_seq = self.next_seq.wrapping_add(n as u32);
            self.off = at;
            self.hist_from = at;
        }
        self.drain(st, budget, notes, out);
    }

    /// Insert out-of-order bytes at stream offset `at`; bytes already buffered win. Returns
    /// whether the new bytes disagree with buffered ones.
    fn insert_ooo(&mut self, at: u64, data: &[u8], budget: &mut Budget) -> bool {
        let end = at + data.len() as u64;
        let mut conflict = false;
        let mut pieces: Vec<(u64, u64)> = Vec::new();
        let mut cur = at;
        for (&s, (v, _)) in self.ooo.range(..end) {
            let e = s + v.len() as u64;
            if e <= cur {
                continue;
            }
            let (os, oe) = (s.max(at), e.min(end));
            if oe > os {
                let a = &data[(os - at) as usize..(oe - at) as usize];
                let b = &v[(os - s) as usize..(oe - s) as usize];
                conflict |= a != b;
            }
            if s > cur {
                pieces.push((cur, s.min(end)));
            }
            cur = cur.max(e);
        }
        if cur < end {
            pieces.push((cur, end));
        }
        for (s, e) in pieces {
            let v = data[(s - at) as usize..(e - at) as usize].to_vec();
            self.ooo_bytes += v.len();
            budget.used += v.len();
            self.ooo.insert(s, (v, self.seg_ack));
        }
        conflict
    }

    fn remember(&mut self, d: &[u8]) {
        let w = self.hist.len();
        if w == 0 {
            return;
        }
        // Keep the last `w` bytes: at most two copies into the ring, never a loop per byte.
        let tail = &d[d.len().saturating_sub(w)..];
        let start = ((self.off + (d.len() - tail.len()) as u64) % w as u64) as usize;
        let first = (w - start).min(tail.len());
        self.hist[start..start + first].copy_from_slice(&tail[..first]);
        let rest = tail.len() - first;
        self.hist[..rest].copy_from_slice(&tail[first..]);
    }

    /// Enable the retransmission check with a window of `w` bytes (allocated once).
    pub fn set_overlap_window(&mut self, w: usize) {
        if self.hist.len() != w {
            self.hist = vec![0; w];
            self.hist_from = self.off;
        }
    }

    /// Do `bytes`, claimed to sit at stream offset `at` (all before `self.off`), differ from
    /// what was delivered? Only bytes still in the window are compared.
    fn conflicts(&self, at: u64, bytes: &[u8]) -> bool {
        let w = self.hist.len() as u64;
        if w == 0 {
            return false;
        }
        let lo = self.hist_from.max(self.off.saturating_sub(w));
        bytes.iter().enumerate().any(|(i, b)| {
            let o = at + i as u64;
            o >= lo && o < self.off && self.hist[(o % w) as usize] != *b
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Rig {
        s: Stream,
        cfg: ReassemblyConfig,
        b: Budget,
        st: ReassemblyStats,
        out: Vec<u8>,
        gaps: Vec<u64>,
        pkt: u64,
    }

    impl Rig {
        fn new(isn: u32) -> Self {
            let mut s = Stream::default();
            s.init(isn);
            s.set_overlap_window(64);
            Rig {
                s,
                cfg: ReassemblyConfig::default(),
                b: Budget::default(),
                st: Default::default(),
                out: vec![],
                gaps: vec![],
                pkt: 0,
            }
        }
        fn seg(&mut self, seq: u32, d: &[u8]) -> Notes {
            self.pkt += 1;
            let (out, gaps) = (&mut self.out, &mut self.gaps);
            self.s.segment(
                seq,
                d,
                0,
                false,
                self.pkt,
                &self.cfg,
                &mut self.b,
                &mut self.st,
                &mut |c| match c {
                    Chunk::Data(d) => out.extend_from_slice(d),
                    Chunk::Gap(n) => gaps.push(n),
                    Chunk::Ack(_) => {}
                },
            )
        }
        fn flush(&mut self) {
            let (out, gaps) = (&mut self.out, &mut self.gaps);
            self.s.flush(&mut self.b, &mut self.st, &mut |c| match c {
                Chunk::Data(d) => out.extend_from_slice(d),
                Chunk::Gap(n) => gaps.push(n),
                Chunk::Ack(_) => {}
            });
        }
    }

    #[test]
    fn in_order_and_reordered_with_wraparound() {
        let isn = u32::MAX - 5;
        let mut r = Rig::new(isn);
        let base = isn.wrapping_add(1);
        r.seg(base.wrapping_add(4), b"efgh");
        r.seg(base.wrapping_add(8), b"ijkl");
        assert!(r.out.is_empty());
        r.seg(base, b"abcd");
        assert_eq!(r.out, b"abcdefghijkl");
        assert_eq!(r.b.used, 0);
    }

    #[test]
    fn first_data_wins_and_conflicts_are_flagged() {
        let mut r = Rig::new(0);
        r.seg(1, b"hello world");
        let n = r.seg(1, b"hello world");
        assert!(!n.conflict);
        let n = r.seg(7, b"WORLD!!");
        assert!(n.conflict);
        assert_eq!(r.out, b"hello world!!");
        // conflicting out-of-order overlap: buffered bytes win
        let mut r = Rig::new(0);
        r.seg(5, b"XXXX");
        let n = r.seg(3, b"yyYYYY");
        assert!(n.conflict);
        r.seg(1, b"ab");
        assert_eq!(r.out, b"abyyXXXX");
    }

    #[test]
    fn hole_skipped_on_flush_and_cap() {
        let mut r = Rig::new(0);
        r.seg(1, b"ab");
        r.seg(6, b"fg");
        r.flush();
        assert_eq!(r.out, b"abfg");
        assert_eq!(r.gaps, vec![3]);

        let mut r = Rig::new(0);
        r.cfg.max_ooo_per_stream = 4;
        r.seg(1, b"a");
        r.seg(10, b"xyz");
        assert_eq!(r.gaps.len(), 0);
        r.seg(20, b"12");
        assert_eq!(r.gaps, vec![8], "only the first hole is skipped to get under the cap");
        assert_eq!(r.out, b"axyz");
        r.flush();
        assert_eq!(r.gaps, vec![8, 7]);
        assert_eq!(r.out, b"axyz12");
        assert_eq!(r.b.used, 0);
    }

    #[test]
    fn acked_hole_is_skipped_after_reorder_window() {
        let mut r = Rig::new(0);
        r.cfg.reorder_packets = 2;
        r.seg(1, b"a");
        r.seg(5, b"efg");
        let (out, gaps) = (&mut r.out, &mut r.gaps);
        let mut sink = |c: Chunk<'_>| match c {
            Chunk::Data(d) => out.extend_from_slice(d),
            Chunk::Gap(n) => gaps.push(n),
            Chunk::Ack(_) => {}
        };
        r.s.check_stale(3, Some(8), &r.cfg, &mut r.b, &mut r.st, &mut sink);
        r.s.check_stale(5, Some(8), &r.cfg, &mut r.b, &mut r.st, &mut sink);
        assert_eq!(r.gaps, vec![3]);
        assert_eq!(r.out, b"aefg");
        // too early: fewer than reorder_packets packets since the hole appeared
        let mut r = Rig::new(0);
        r.cfg.reorder_packets = 2;
        r.seg(1, b"a");
        r.seg(5, b"efg");
        let (out, gaps) = (&mut r.out, &mut r.gaps);
        let mut sink = |c: Chunk<'_>| match c {
            Chunk::Data(d) => out.extend_from_slice(d),
            Chunk::Gap(n) => gaps.push(n),
            Chunk::Ack(_) => {}
        };
        r.s.check_stale(3, Some(8), &r.cfg, &mut r.b, &mut r.st, &mut sink);
        assert!(r.gaps.is_empty(), "skipped too early");
    }
}
