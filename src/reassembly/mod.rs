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
//! The out-of-order buffer is a `BTreeMap` keyed by stream offset, entries never overlapping:
//! an insertion looks at its predecessor and at the entries inside its own range only, so it
//! costs O(log n + k) for k entries it overlaps (each of which shares at least a byte with the
//! new payload): linear in the bytes fed, never a scan of the whole buffer. Small pieces that
//! extend the entry before them (same acknowledgement) are appended to it. Caps count what an
//! entry really costs ([`entry_cost`]: payload allocation plus the map slot), not payload bytes
//! alone, so a flood of one-byte segments cannot hold a hundred times the cap.
//!
//! An in-order segment that covers buffered bytes does not replace them: those bytes came first,
//! so they are delivered and the segment's overlapping bytes are compared with them (a
//! difference is a conflicting overlap), as for any other overlap.
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

/// Pieces are appended to the buffered entry that ends where they start while it stays under
/// this many bytes (fewer entries, fewer map slots; a bounded copy).
const MERGE_LIMIT: usize = 4096;

/// Bytes one out-of-order entry costs besides its payload allocation: its `BTreeMap` slot (key
/// and value, 40 B) counted twice, because B-tree nodes are only guaranteed half full (5 of 11
/// slots), plus 16 B for the share of internal nodes and the allocation's rounding: 112 B for a
/// one-byte entry. Measured (test `ooo_one_byte_timing`): 75 to 131 B of resident memory per
/// one-byte entry for 10,000 to 250,000 entries.
pub const ENTRY_OVERHEAD: usize = 2 * std::mem::size_of::<(u64, Seg)>() + 16;

/// What a buffered entry with a payload allocation of `cap` bytes costs, for the caps: the map
/// overhead plus the allocation rounded up to 16 bytes (small allocator size classes).
pub fn entry_cost(cap: usize) -> usize {
    ENTRY_OVERHEAD + cap.max(1).next_multiple_of(16)
}

/// A piece of the reassembled byte stream, in order.
#[derive(Debug, PartialEq, Eq)]
pub enum Chunk<'a> {
    /// Bytes, and the acknowledgement (a sequence number of the other direction) carried by
    /// the segment they came in, when it carried one (lets the consumer order the two
    /// directions, see http::conn). Data without one follows the last one given.
    Data(&'a [u8], Option<u32>),
    /// `n` bytes were lost: the stream skips them.
    Gap(u64),
}

#[derive(Debug, Clone)]
pub struct ReassemblyConfig {
    /// Memory for out-of-order data per direction (payload plus [`ENTRY_OVERHEAD`] per buffered
    /// segment) before the first hole is skipped. Default 256 KiB.
    pub max_ooo_per_stream: usize,
    /// The same over all flows. Default 64 MiB.
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

/// Global accounting of out-of-order buffer memory ([`entry_cost`] per entry).
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

/// One buffered out-of-order piece and the acknowledgement its segment carried.
#[derive(Debug)]
pub struct Seg {
    data: Vec<u8>,
    ack: Option<u32>,
}

#[derive(Default)]
pub struct Stream {
    started: bool,
    next_seq: u32,
    /// Stream offset of `next_seq`.
    off: u64,
    /// Out-of-order bytes by stream offset; entries never overlap.
    ooo: BTreeMap<u64, Seg>,
    /// Memory the entries cost ([`entry_cost`]).
    ooo_bytes: usize,
    /// Initial sequence number from a SYN, and the previous candidate when a second SYN(-ACK)
    /// came with another one before any data ([`Stream::confirm`] picks between them).
    isn: Option<u32>,
    alt_isn: Option<u32>,
    /// The last delivered bytes, the one at stream offset `o` at `(o + hist_rot) % len`.
    hist: Vec<u8>,
    hist_rot: u64,
    hist_from: u64,
    fin_seq: Option<u32>,
    fin_done: bool,
    hole_since: u64,
    /// Acknowledgement carried by the segment being processed (set by [`Stream::note_ack`]).
    seg_ack: Option<u32>,
}

impl Stream {
    /// The SYN told us the initial sequence number. Before any byte flowed, a SYN with another
    /// ISN replaces it and the old one stays a candidate (a server that answered a SYN twice).
    pub fn init(&mut self, isn: u32) {
        if !self.started || (self.off == 0 && self.ooo.is_empty()) {
            if self.isn.is_some_and(|i| i != isn) {
                self.alt_isn = self.isn;
            }
            self.started = true;
            self.isn = Some(isn);
            self.next_seq = isn.wrapping_add(1);
        }
    }

    /// The peer acknowledged `ack`. While no byte has flowed, an acknowledgement of the other
    /// candidate ISN means that is the connection the peer follows: follow it too.
    pub fn confirm(&mut self, ack: u32) {
        if self.off != 0 || !self.ooo.is_empty() || ack == self.next_seq {
            return;
        }
        if let Some(alt) = self.alt_isn
            && alt.wrapping_add(1) == ack
        {
            self.alt_isn = self.isn;
            self.isn = Some(alt);
            self.next_seq = ack;
        }
    }

    /// The initial sequence number of the SYN, if one was seen.
    pub fn isn(&self) -> Option<u32> {
        self.isn
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

    /// The next segment fed carries this acknowledgement (for [`Chunk::Data`]).
    pub fn note_ack(&mut self, ack: Option<u32>) {
        self.seg_ack = ack;
    }

    /// Feed one segment. `missing` bytes after `payload` were cut off by the capture.
    /// (inlined: one caller per packet, [`crate::flow`]'s, and ten arguments to pass)
    #[allow(clippy::too_many_arguments)]
    #[inline]
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
            if self.ooo.is_empty() {
                // The fast path: straight from the packet, nothing buffered to compare with
                // (nor after it: nothing to drain).
                self.deliver(payload, missing, ack, st, out);
            } else {
                self.deliver_over_buffered(payload, missing as u64, ack, st, budget, &mut notes, out);
                self.drain(st, budget, &mut notes, out);
            }
        } else {
            st.ooo_segments += 1;
            if self.ooo.is_empty() {
                self.hole_since = pkt_no;
            }
            let at = self.off + rel as u64;
            if self.insert_ooo(at, payload, budget, st) {
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
        if let Some(ack) = peer_ack
            && (ack.wrapping_sub(self.next_seq) as i32) > 0
        {
            self.skip_hole(st, budget, &mut notes, out);
            self.hole_since = pkt_no;
            self.check_fin();
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
        if let Some(f) = self.fin_seq
            && !self.fin_done
            && (f.wrapping_sub(self.next_seq) as i32) <= 0
        {
            self.fin_done = true;
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
            out(Chunk::Data(payload, ack));
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
            let Seg { data, ack } = entry.remove();
            self.release(data.capacity(), budget);
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

    /// An in-order segment (starting at `self.off`) when out-of-order bytes are buffered: the
    /// buffered bytes it covers were first, so they are delivered instead of its own and compared
    /// with them; its bytes in between go out straight from the packet (no copy).
    #[allow(clippy::too_many_arguments)]
    #[inline(never)]
    fn deliver_over_buffered(
        &mut self,
        mut p: &[u8],
        mut missing: u64,
        ack: Option<u32>,
        st: &mut ReassemblyStats,
        budget: &mut Budget,
        notes: &mut Notes,
        out: &mut dyn FnMut(Chunk<'_>),
    ) {
        loop {
            let left = p.len() as u64 + missing;
            if left == 0 {
                return;
            }
            let next = self.ooo.first_key_value().map(|(&s, _)| s);
            let Some(s) = next.filter(|&s| s >= self.off && s < self.off + left) else {
                self.deliver(p, missing as u32, ack, st, out);
                return;
            };
            // The segment's own bytes up to the buffered entry (some of them may be cut off).
            let before = s - self.off;
            if before > 0 {
                let take = before.min(p.len() as u64) as usize;
                let cut = before - take as u64;
                self.deliver(&p[..take], cut as u32, ack, st, out);
                p = &p[take..];
                missing -= cut;
            }
            let Some(Seg { data, ack: seg_ack }) = self.ooo.remove(&s) else {
                return;
            };
            self.release(data.capacity(), budget);
            let covered = (data.len() as u64).min(p.len() as u64 + missing);
            let seen = (covered as usize).min(p.len());
            st.overlaps += 1;
            if data[..seen] != p[..seen] {
                st.overlap_conflicts += 1;
                notes.conflict = true;
            }
            self.deliver(&data, 0, seg_ack, st, out);
            p = &p[seen..];
            missing -= covered - seen as u64;
        }
    }

    /// Forget one entry's cost.
    fn release(&mut self, cap: usize, budget: &mut Budget) {
        let c = entry_cost(cap);
        self.ooo_bytes -= c;
        budget.used -= c;
    }

    /// Insert out-of-order bytes at stream offset `at`; bytes already buffered win. Returns
    /// whether the new bytes disagree with buffered ones. Only the entry before `at` and the
    /// entries starting inside the new range are visited.
    #[inline(never)]
    fn insert_ooo(&mut self, at: u64, data: &[u8], budget: &mut Budget, st: &mut ReassemblyStats) -> bool {
        if self.ooo.is_empty() {
            // The usual case (one segment overtook another): nothing to compare or merge with.
            self.add(at, data.to_vec(), self.seg_ack, budget);
            return false;
        }
        let end = at + data.len() as u64;
        let mut conflict = false;
        let mut overlapped = false;
        let mut cur = at;
        if let Some((&s, seg)) = self.ooo.range(..=at).next_back() {
            let e = s + seg.data.len() as u64;
            if e > at {
                let oe = e.min(end);
                overlapped = true;
                conflict |= data[..(oe - at) as usize] != seg.data[(at - s) as usize..(oe - s) as usize];
                cur = oe;
            }
        }
        // Holes of [cur, end) between the entries starting inside it.
        let mut pieces: Vec<(u64, u64)> = Vec::new();
        if cur < end {
            // An entry starting at `at` was the predecessor; one starting at its end was not.
            let from = if cur > at { cur } else { at + 1 };
            for (&s, seg) in self.ooo.range(from..end) {
                let e = s + seg.data.len() as u64;
                let oe = e.min(end);
                overlapped = true;
                conflict |= data[(s - at) as usize..(oe - at) as usize] != seg.data[..(oe - s) as usize];
                if s > cur {
                    pieces.push((cur, s));
                }
                cur = oe;
            }
            if cur < end {
                pieces.push((cur, end));
            }
        }
        if overlapped {
            st.overlaps += 1;
        }
        let ack = self.seg_ack;
        for (s, e) in pieces {
            self.put(s, &data[(s - at) as usize..(e - at) as usize], ack, budget);
        }
        conflict
    }

    /// Buffer `bytes` at offset `s` (a hole: nothing buffered there), appended to the entry that
    /// ends at `s` when that one is small and carried the same acknowledgement.
    fn put(&mut self, s: u64, bytes: &[u8], ack: Option<u32>, budget: &mut Budget) {
        if let Some((&ps, prev)) = self.ooo.range_mut(..s).next_back()
            && ps + prev.data.len() as u64 == s
            && prev.ack == ack
            && prev.data.len() + bytes.len() <= MERGE_LIMIT
        {
            let before = entry_cost(prev.data.capacity());
            prev.data.extend_from_slice(bytes);
            let after = entry_cost(prev.data.capacity());
            self.ooo_bytes += after - before;
            budget.used += after - before;
            return;
        }
        self.add(s, bytes.to_vec(), ack, budget);
    }

    /// A new entry at offset `s` (nothing buffered overlaps it).
    fn add(&mut self, s: u64, data: Vec<u8>, ack: Option<u32>, budget: &mut Budget) {
        let c = entry_cost(data.capacity());
        self.ooo_bytes += c;
        budget.used += c;
        self.ooo.insert(s, Seg { data, ack });
    }

    fn remember(&mut self, d: &[u8]) {
        let w = self.hist.len();
        if w == 0 {
            return;
        }
        if d.len() >= w {
            // The window is this segment's tail (a full-size segment): one copy, the ring
            // starting at it.
            self.hist.copy_from_slice(&d[d.len() - w..]);
            let first = self.off + (d.len() - w) as u64;
            self.hist_rot = match first % w as u64 {
                0 => 0,
                r => w as u64 - r,
            };
            return;
        }
        // Keep the last `w` bytes: at most two copies into the ring, never a loop per byte.
        let start = ((self.off + self.hist_rot) % w as u64) as usize;
        let first = (w - start).min(d.len());
        self.hist[start..start + first].copy_from_slice(&d[..first]);
        let rest = d.len() - first;
        self.hist[..rest].copy_from_slice(&d[first..]);
    }

    /// Enable the retransmission check with a window of `w` bytes (allocated once).
    pub fn set_overlap_window(&mut self, w: usize) {
        if self.hist.len() != w {
            self.hist = vec![0; w];
            self.hist_rot = 0;
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
            o >= lo && o < self.off && self.hist[((o + self.hist_rot) % w) as usize] != *b
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
                    Chunk::Data(d, _) => out.extend_from_slice(d),
                    Chunk::Gap(n) => gaps.push(n),
                },
            )
        }
        fn flush(&mut self) {
            let (out, gaps) = (&mut self.out, &mut self.gaps);
            self.s.flush(&mut self.b, &mut self.st, &mut |c| match c {
                Chunk::Data(d, _) => out.extend_from_slice(d),
                Chunk::Gap(n) => gaps.push(n),
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
        // room for one entry of three bytes, not two entries
        r.cfg.max_ooo_per_stream = entry_cost(3) + 1;
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
            Chunk::Data(d, _) => out.extend_from_slice(d),
            Chunk::Gap(n) => gaps.push(n),
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
            Chunk::Data(d, _) => out.extend_from_slice(d),
            Chunk::Gap(n) => gaps.push(n),
        };
        r.s.check_stale(3, Some(8), &r.cfg, &mut r.b, &mut r.st, &mut sink);
        assert!(r.gaps.is_empty(), "skipped too early");
    }

    #[test]
    fn in_order_segment_over_buffered_bytes_keeps_them_and_flags_the_difference() {
        // "EFGH" was buffered first; the in-order segment claims "abcdXXXXij" over it.
        let mut r = Rig::new(0);
        r.seg(5, b"EFGH");
        let n = r.seg(1, b"abcdXXXXij");
        assert!(n.conflict, "the covering segment differs from the buffered bytes");
        assert_eq!(r.out, b"abcdEFGHij");
        assert_eq!(r.b.used, 0);
        assert_eq!(r.s.buffered(), 0);
        // the same bytes again: an overlap, no conflict
        let mut r = Rig::new(0);
        r.seg(5, b"efgh");
        r.seg(12, b"l");
        let n = r.seg(1, b"abcdefghijklm");
        assert!(!n.conflict);
        assert_eq!(r.out, b"abcdefghijklm");
        assert_eq!(r.b.used, 0);
    }

    #[test]
    fn buffered_bytes_fill_a_snaplen_cut_of_the_in_order_segment() {
        let mut r = Rig::new(0);
        r.seg(7, b"gh");
        let (out, gaps) = (&mut r.out, &mut r.gaps);
        r.s.segment(1, b"abcd", 6, false, 9, &r.cfg, &mut r.b, &mut r.st, &mut |c| match c {
            Chunk::Data(d, _) => out.extend_from_slice(d),
            Chunk::Gap(n) => gaps.push(n),
        });
        assert_eq!(r.out, b"abcdgh");
        assert_eq!(r.gaps, vec![2, 2]);
        assert_eq!(r.s.offset(), 10);
    }

    /// A tiny deterministic generator (xorshift) for the model test.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    #[test]
    fn random_overlapping_segments_match_a_first_data_wins_model() {
        for seed in 1..200u64 {
            let mut rng = Rng(seed * 0x9E37_79B9_7F4A_7C15);
            let mut r = Rig::new(u32::MAX - 50);
            r.s.set_overlap_window(4096);
            let base = (u32::MAX - 50).wrapping_add(1);
            let mut model: BTreeMap<u64, u8> = BTreeMap::new();
            let mut conflict = false;
            let mut flagged = false;
            for _ in 0..60 {
                let at = rng.next() % 300;
                let len = 1 + rng.next() % 24;
                let fill = b'a' + (rng.next() % 3) as u8;
                let data: Vec<u8> = (0..len).map(|i| fill + ((at + i) % 7) as u8).collect();
                for (i, b) in data.iter().enumerate() {
                    let o = at + i as u64;
                    match model.get(&o) {
                        Some(old) => conflict |= old != b,
                        None => {
                            model.insert(o, *b);
                        }
                    }
                }
                flagged |= r.seg(base.wrapping_add(at as u32), &data).conflict;
            }
            r.flush();
            let want: Vec<u8> = model.values().copied().collect();
            assert_eq!(r.out, want, "seed {seed}");
            assert_eq!(flagged, conflict, "seed {seed}");
            assert_eq!(r.b.used, 0);
        }
    }

    /// The ring of delivered bytes holds the last `overlap_window` bytes of the stream, whether
    /// segments are shorter than the window (copied in at the ring's position) or longer (the
    /// ring restarts at their tail): every byte of the window compares equal, and a changed one
    /// is a conflict.
    #[test]
    fn overlap_ring_holds_the_last_window_of_the_stream() {
        for (seed, w) in (1..40u64).zip([1usize, 7, 16, 64, 100].into_iter().cycle()) {
            let mut rng = Rng(seed * 0x9E37_79B9_7F4A_7C15);
            let mut r = Rig::new(7);
            r.s.set_overlap_window(w);
            let mut stream: Vec<u8> = Vec::new();
            for _ in 0..300 {
                let len = 1 + (rng.next() % (3 * w as u64 + 2)) as usize;
                let data: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
                r.seg(8u32.wrapping_add(stream.len() as u32), &data);
                stream.extend(&data);
                let off = stream.len() as u64;
                assert_eq!(r.s.offset(), off);
                let lo = off.saturating_sub(w as u64);
                for at in lo..off {
                    let mut b = stream[at as usize..].to_vec();
                    assert!(!r.s.conflicts(at, &b), "seed {seed} at {at}");
                    let i = (rng.next() % b.len() as u64) as usize;
                    b[i] ^= 1;
                    assert!(r.s.conflicts(at, &b), "seed {seed} at {at} flip {i}");
                }
            }
        }
    }

    #[test]
    fn one_byte_segments_are_charged_what_they_cost() {
        let mut r = Rig::new(0);
        r.cfg.max_ooo_per_stream = usize::MAX;
        for i in 0..1000u32 {
            r.seg(10 + 2 * i, b"x");
        }
        assert_eq!(r.s.buffered(), 1000 * entry_cost(1));
        assert!(r.s.buffered() >= 1000 * 96);
        assert_eq!(r.b.used, r.s.buffered());
        // under the default 256 KiB cap a flood of one-byte segments with holes is cut short
        let mut r = Rig::new(0);
        for i in 0..100_000u32 {
            r.seg(10 + 2 * i, b"x");
            assert!(r.s.buffered() <= r.cfg.max_ooo_per_stream);
        }
        assert!(r.st.cap_skips > 90_000);
        assert!(r.s.buffered() <= 256 << 10);
    }

    #[test]
    fn adjacent_small_out_of_order_pieces_share_one_entry() {
        let mut r = Rig::new(0);
        for i in 0..2000u32 {
            r.seg(10 + i, b"y");
        }
        // one entry of at most MERGE_LIMIT bytes, not 2000 map slots
        assert_eq!(r.s.ooo.len(), 1);
        assert!(r.s.buffered() <= entry_cost(4096));
        r.seg(1, b"abcdefghi");
        assert_eq!(r.out.len(), 9 + 2000);
        assert_eq!(r.b.used, 0);
    }

    #[test]
    fn second_syn_ack_with_another_isn_follows_the_acknowledged_one() {
        let mut s = Stream::default();
        s.init(1000);
        s.init(5000);
        assert_eq!(s.seq_map(), Some((0, 5001)));
        s.confirm(1001);
        assert_eq!(s.seq_map(), Some((0, 1001)));
        assert_eq!(s.isn(), Some(1000));
        // an acknowledgement of neither changes nothing
        s.confirm(77);
        assert_eq!(s.seq_map(), Some((0, 1001)));
    }

    /// Resident memory of this process, bytes (Linux; 0 elsewhere).
    fn rss() -> usize {
        std::fs::read_to_string("/proc/self/statm")
            .ok()
            .and_then(|s| s.split_whitespace().nth(1)?.parse::<usize>().ok())
            .map_or(0, |p| p * 4096)
    }

    /// Timing of the out-of-order path (not an assertion): one-byte segments with holes.
    /// Run: cargo test --release --lib ooo_one_byte_timing -- --ignored --nocapture
    #[test]
    #[ignore]
    fn ooo_one_byte_timing() {
        for n in [10_000u32, 80_000, 250_000] {
            let mut r = Rig::new(0);
            r.cfg.max_ooo_per_stream = usize::MAX;
            r.cfg.max_ooo_total = usize::MAX;
            let rss0 = rss();
            let t = std::time::Instant::now();
            for i in 0..n {
                r.seg(10 + 2 * i, b"x");
            }
            let fill = t.elapsed();
            let held = rss().saturating_sub(rss0);
            let charged = r.s.buffered();
            r.seg(1, &vec![b'z'; 2 * n as usize + 10]);
            eprintln!(
                "{n} one-byte segments with holes: insert {:.3} s, total {:.3} s; resident growth {} B/entry, charged {} B/entry",
                fill.as_secs_f64(),
                t.elapsed().as_secs_f64(),
                held / n as usize,
                charged / n as usize,
            );
            assert_eq!(r.b.used, 0);
        }
    }
}
