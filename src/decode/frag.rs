//! IPv4 and IPv6 fragment reassembly under a global memory cap.
//!
//! Fragments are keyed by (source, destination, protocol, identification). Overlaps that carry
//! the same bytes are harmless (retransmissions): first data wins. Overlaps whose bytes differ
//! drop the whole datagram, as Linux does (RFC 5722 for IPv6; Linux for IPv4 as well): a server
//! on Linux never sees it. They are counted and reported ([`Insert::Conflict`]). A datagram is
//! complete when the last fragment (MF clear) has been seen and no hole remains. Datagrams that
//! stay incomplete past the timeout, or that would push the table past its memory cap, are
//! dropped and counted; the largest datagram accepted is 65,535 bytes of payload.
//!
//! The memory cap counts what a datagram really costs ([`FragTable::memory`]): its table slot
//! and bookkeeping ([`DATAGRAM_OVERHEAD`]) plus its buffers' capacity, so a flood of tiny first
//! fragments is held to the cap, not to the cap divided by eight bytes.

use std::net::IpAddr;

use hashbrown::HashMap;

use crate::capture::Ts;

const MAX_DATAGRAM: usize = 65_535;
/// Fragments of one datagram; past it a datagram is dropped (a "tiny fragments" flood).
const MAX_PIECES: usize = 128;

/// What a datagram costs besides its buffers: its hash-table slot (key and value) counted twice,
/// because the table may have just doubled, plus 16 B of control bytes and allocation rounding.
pub const DATAGRAM_OVERHEAD: usize = 2 * std::mem::size_of::<(FragKey, Datagram)>() + 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FragKey {
    src: IpAddr,
    dst: IpAddr,
    proto: u8,
    id: u32,
}

impl FragKey {
    pub fn new(src: IpAddr, dst: IpAddr, proto: u8, id: u32) -> Self {
        FragKey { src, dst, proto, id }
    }
}

pub struct Datagram {
    first: Ts,
    data: Vec<u8>,
    /// Received byte ranges, sorted and merged.
    have: Vec<(usize, usize)>,
    total: Option<usize>,
    pieces: usize,
}

impl Datagram {
    /// Memory this datagram holds, for the cap.
    fn cost(&self) -> usize {
        DATAGRAM_OVERHEAD + self.data.capacity() + self.have.capacity() * std::mem::size_of::<(usize, usize)>()
    }
}

pub enum Insert {
    Held,
    Dropped,
    /// Overlapping fragments with different bytes: the datagram was dropped.
    Conflict,
    Complete(Vec<u8>),
}

#[derive(Debug, Default, Clone, Copy)]
pub struct FragStats {
    pub timeouts: u64,
    pub memcap_drops: u64,
    pub invalid: u64,
    pub overlaps: u64,
    /// Datagrams dropped because overlapping fragments carried different bytes.
    pub overlap_conflicts: u64,
}

pub struct FragTable {
    map: HashMap<FragKey, Datagram>,
    mem: usize,
    cap: usize,
    timeout: Ts,
    last_sweep: Ts,
    /// No held datagram started before this (a lower bound): a sweep before `oldest + timeout`
    /// would free nothing, so a full table does not sweep on every new fragment.
    oldest: Ts,
    /// Sweeps done (each walks the whole table).
    sweeps: u64,
    spare: Vec<u8>,
    pub stats: FragStats,
}

impl FragTable {
    pub fn new(cap: usize, timeout: Ts) -> Self {
        FragTable {
            map: HashMap::new(),
            mem: 0,
            cap,
            timeout,
            last_sweep: 0,
            oldest: Ts::MAX,
            sweeps: 0,
            spare: Vec::new(),
            stats: FragStats::default(),
        }
    }

    /// Memory held for incomplete datagrams (slots, bookkeeping and buffers), bytes.
    pub fn memory(&self) -> usize {
        self.mem
    }

    pub fn insert(&mut self, ts: Ts, key: FragKey, off: usize, more: bool, data: &[u8]) -> Insert {
        if ts.saturating_sub(self.last_sweep) > 1_000_000_000 {
            self.sweep(ts);
        }
        let end = off + data.len();
        // A non-final fragment must carry a multiple of 8 bytes; nothing may pass 64 KiB.
        if end > MAX_DATAGRAM || (more && !data.len().is_multiple_of(8)) || (data.is_empty() && more) {
            self.stats.invalid += 1;
            self.drop_key(&key);
            return Insert::Dropped;
        }
        if !self.map.contains_key(&key) {
            let need = DATAGRAM_OVERHEAD + end + 4 * std::mem::size_of::<(usize, usize)>();
            if self.mem + need > self.cap {
                if ts.saturating_sub(self.oldest) > self.timeout {
                    self.sweep(ts);
                }
                if self.mem + need > self.cap {
                    self.stats.memcap_drops += 1;
                    return Insert::Dropped;
                }
            }
            // The spare buffer is reused only if its capacity fits under the cap.
            let mut buf = if self.mem + need + self.spare.capacity() <= self.cap {
                std::mem::take(&mut self.spare)
            } else {
                Vec::new()
            };
            buf.clear();
            let dg = Datagram {
                first: ts,
                data: buf,
                have: Vec::new(),
                total: None,
                pieces: 0,
            };
            self.mem += dg.cost();
            self.oldest = self.oldest.min(ts);
            self.map.insert(key, dg);
        }
        let Some(dg) = self.map.get_mut(&key) else {
            return Insert::Dropped;
        };
        dg.pieces += 1;
        let grow = end.saturating_sub(dg.data.capacity());
        if dg.pieces > MAX_PIECES || self.mem + grow > self.cap {
            self.stats.memcap_drops += 1;
            self.drop_key(&key);
            return Insert::Dropped;
        }
        if !more {
            if dg.total.is_some_and(|t| t != end) || dg.have.last().is_some_and(|&(_, e)| e > end) {
                self.stats.invalid += 1;
                self.drop_key(&key);
                return Insert::Dropped;
            }
            dg.total = Some(end);
        } else if dg.total.is_some_and(|t| end > t) {
            self.stats.invalid += 1;
            self.drop_key(&key);
            return Insert::Dropped;
        }
        // Bytes already held must match: a difference drops the datagram (as Linux does).
        let mut overlapped = false;
        for &(s, e) in dg.have.iter() {
            let (os, oe) = (s.max(off), e.min(end));
            if os >= oe {
                continue;
            }
            overlapped = true;
            if dg.data[os..oe] != data[os - off..oe - off] {
                self.stats.overlaps += 1;
                self.stats.overlap_conflicts += 1;
                self.drop_key(&key);
                return Insert::Conflict;
            }
        }
        let before = dg.cost();
        if end > dg.data.len() {
            dg.data.reserve_exact(end - dg.data.len());
            dg.data.resize(end, 0);
        }
        // Same bytes where they overlap: copy the new range whole.
        dg.data[off..end].copy_from_slice(data);
        if overlapped {
            self.stats.overlaps += 1;
        }
        merge(&mut dg.have, off, end);
        self.mem = self.mem - before + dg.cost();
        if let Some(t) = dg.total
            && dg.have.len() == 1
            && dg.have[0] == (0, t)
            && let Some(dg) = self.map.remove(&key)
        {
            self.mem -= dg.cost();
            let mut out = dg.data;
            out.truncate(t);
            return Insert::Complete(out);
        }
        Insert::Held
    }

    /// Give a finished buffer back so the next datagram reuses its allocation.
    pub fn recycle(&mut self, buf: Vec<u8>) {
        if buf.capacity() <= MAX_DATAGRAM && buf.capacity() > self.spare.capacity() {
            self.spare = buf;
        }
    }

    fn drop_key(&mut self, key: &FragKey) {
        if let Some(dg) = self.map.remove(key) {
            self.mem -= dg.cost();
        }
    }

    fn sweep(&mut self, now: Ts) {
        self.last_sweep = now;
        self.sweeps += 1;
        let timeout = self.timeout;
        let mut freed = 0;
        let mut n = 0;
        let mut oldest = Ts::MAX;
        self.map.retain(|_, dg| {
            let keep = now.saturating_sub(dg.first) <= timeout;
            if keep {
                oldest = oldest.min(dg.first);
            } else {
                freed += dg.cost();
                n += 1;
            }
            keep
        });
        self.oldest = oldest;
        self.mem -= freed;
        self.stats.timeouts += n;
        // Give back the slots of a flood that is over.
        if self.map.capacity() > 1024 && self.map.len() * 8 < self.map.capacity() {
            self.map.shrink_to(self.map.len() * 2);
        }
    }
}

fn merge(have: &mut Vec<(usize, usize)>, s: usize, e: usize) {
    have.push((s, e));
    have.sort_unstable();
    let mut out: Vec<(usize, usize)> = Vec::with_capacity(have.len());
    for &(a, b) in have.iter() {
        match out.last_mut() {
            Some(last) if a <= last.1 => last.1 = last.1.max(b),
            _ => out.push((a, b)),
        }
    }
    *have = out;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn key() -> FragKey {
        FragKey::new(IpAddr::V4(Ipv4Addr::LOCALHOST), IpAddr::V4(Ipv4Addr::LOCALHOST), 6, 7)
    }

    #[test]
    fn out_of_order_fragments_reassemble() {
        let mut t = FragTable::new(1 << 20, 30_000_000_000);
        let data: Vec<u8> = (0..40u8).collect();
        assert!(matches!(t.insert(1, key(), 24, false, &data[24..]), Insert::Held));
        assert!(matches!(t.insert(1, key(), 0, true, &data[..16]), Insert::Held));
        match t.insert(1, key(), 16, true, &data[16..24]) {
            Insert::Complete(v) => assert_eq!(v, data),
            _ => panic!("not complete"),
        }
        assert_eq!(t.memory(), 0);
    }

    #[test]
    fn overlap_with_the_same_bytes_reassembles() {
        let mut t = FragTable::new(1 << 20, 30_000_000_000);
        let data: Vec<u8> = (0..24u8).collect();
        t.insert(1, key(), 0, true, &data[..16]);
        match t.insert(1, key(), 8, false, &data[8..]) {
            Insert::Complete(v) => assert_eq!(v, data),
            _ => panic!("not complete"),
        }
        assert_eq!((t.stats.overlaps, t.stats.overlap_conflicts), (1, 0));
        assert_eq!(t.memory(), 0);
    }

    #[test]
    fn overlapping_fragments_with_different_bytes_drop_the_datagram() {
        let mut t = FragTable::new(1 << 20, 30_000_000_000);
        t.insert(1, key(), 0, true, &[1u8; 16]);
        assert!(matches!(t.insert(1, key(), 8, false, &[2u8; 16]), Insert::Conflict));
        assert_eq!(t.stats.overlap_conflicts, 1);
        assert_eq!(t.memory(), 0, "the datagram is gone");
        // the rest of the dropped datagram does not complete it
        assert!(matches!(t.insert(1, key(), 16, false, &[1u8; 8]), Insert::Held));
    }

    #[test]
    fn tiny_fragment_flood_is_charged_what_it_holds() {
        let cap = 1 << 20;
        let mut t = FragTable::new(cap, 30_000_000_000);
        for id in 0..100_000u32 {
            let k = FragKey::new(IpAddr::V4(Ipv4Addr::LOCALHOST), IpAddr::V4(Ipv4Addr::LOCALHOST), 6, id);
            t.insert(1, k, 0, true, &[0u8; 8]);
            assert!(t.memory() <= cap);
        }
        // each held datagram owns at least its slot and its 8 bytes
        let floor = t.map.len() * (std::mem::size_of::<(FragKey, Datagram)>() + 8);
        assert!(
            floor <= cap,
            "{} datagrams hold at least {floor} B under a {cap} B cap",
            t.map.len()
        );
        assert!(t.stats.memcap_drops > 90_000);
    }

    #[test]
    fn memory_cap_holds() {
        let mut t = FragTable::new(10_000, 30_000_000_000);
        for id in 0..1000u32 {
            let k = FragKey::new(IpAddr::V4(Ipv4Addr::LOCALHOST), IpAddr::V4(Ipv4Addr::LOCALHOST), 6, id);
            t.insert(1, k, 0, true, &[0u8; 1000]);
            assert!(t.memory() <= 10_000);
        }
        assert!(t.stats.memcap_drops > 0);
    }

    #[test]
    fn full_table_does_not_sweep_on_every_new_datagram() {
        let mut t = FragTable::new(1 << 20, 30_000_000_000);
        for id in 0..200_000u32 {
            let k = FragKey::new(IpAddr::V4(Ipv4Addr::LOCALHOST), IpAddr::V4(Ipv4Addr::LOCALHOST), 6, id);
            // one new datagram per microsecond: the table is full long before any can expire
            t.insert(1_000 * id as u64, k, 0, true, &[0u8; 8]);
        }
        assert!(t.stats.memcap_drops > 150_000);
        assert!(t.sweeps <= 2, "{} sweeps of the whole table", t.sweeps);
    }
}
