//! Decode layer: link layer -> VLAN/MPLS -> tunnels -> IP (+ fragments) -> TCP segment.
//!
//! Input is a borrowed [`Frame`]; output is a [`TcpSegment`] handed to a callback, borrowing
//! either the frame or, for a reassembled IP datagram, the fragment table's buffer. Every frame
//! that does not yield a TCP segment is counted once under a [`Skip`] reason; nothing here panics
//! on any input (lengths are checked before every read) and nothing allocates per packet except
//! fragment reassembly, which is capped. Tunnels (VXLAN, GRE, ERSPAN II/III, GTP-U, Teredo,
//! AYIYA, GRE in UDP; LLC/SNAP and 802.11 data frames, see [`tunnel`]) are unwrapped and the
//! inner flow is what is analysed; nesting is limited to [`MAX_DEPTH`] levels.
//!
//! TCP checksums are validated as configured ([`ChecksumMode`], `reassembly.checksums`): a
//! segment with a bad checksum never reached the server's stack, so it must not reach
//! reassembly either (an evasion: data only the sensor sees). Mirror copies of traffic whose
//! sender offloads checksums carry bad ones everywhere, which `auto` detects.

pub mod frag;
pub mod tunnel;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use etherparse::{Ipv4HeaderSlice, Ipv6HeaderSlice, TcpHeaderSlice};

use crate::capture::{Frame, Ts};
use frag::{FragKey, FragTable};

/// Tunnels nested deeper than this are skipped (a crafted packet cannot recurse forever).
pub const MAX_DEPTH: u8 = 6;

/// libpcap link types we read.
pub mod linktype {
    pub const NULL: u32 = 0;
    pub const ETHERNET: u32 = 1;
    pub const RAW_OLD: u32 = 12;
    pub const RAW_OLD2: u32 = 14;
    pub const RAW: u32 = 101;
    pub const LOOP: u32 = 108;
    pub const LINUX_SLL: u32 = 113;
    pub const IPV4: u32 = 228;
    pub const IPV6: u32 = 229;
    pub const LINUX_SLL2: u32 = 276;
    pub const C_HDLC: u32 = 104;
    pub const NFLOG: u32 = 239;
    pub const IEEE802_11: u32 = 105;
    pub const IEEE802_11_RADIOTAP: u32 = 127;
}

/// TCP flag bits as on the wire.
pub mod tcp_flags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const ACK: u8 = 0x10;
}

/// One TCP segment, decoded.
#[derive(Debug, Clone, Copy)]
pub struct TcpSegment<'a> {
    pub ts: Ts,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub sport: u16,
    pub dport: u16,
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    /// Payload bytes that were captured.
    pub payload: &'a [u8],
    /// Payload bytes the IP header declares but the capture cut off (snap length). The stream
    /// treats them as a gap right after `payload`.
    pub missing: u32,
}

/// Why a frame produced no TCP segment. Each frame is counted under exactly one reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub enum Skip {
    UnknownLinktype,
    LinkTruncated,
    EthertypeOther,
    IpTruncated,
    IpMalformed,
    IpVersionOther,
    Ipv6ExtTruncated,
    Esp,
    FragmentHeld,
    FragmentDropped,
    /// Overlapping IP fragments with different bytes: the datagram is dropped, as Linux does.
    FragmentOverlapConflict,
    /// A TCP segment whose checksum is wrong, refused (see [`ChecksumMode`]).
    TcpBadChecksum,
    Udp,
    Icmp,
    IpProtoOther,
    TcpTruncated,
    TunnelMalformed,
    TunnelTooDeep,
    /// An encrypted 802.11 data frame (WEP/WPA): nothing to read without keys.
    WifiProtected,
    /// 802.11 management, control, null-data and aggregate frames.
    WifiNonData,
    /// A radiotap frame whose flags say its FCS was bad (corrupted in the air).
    WifiBadFcs,
}

impl Skip {
    pub const ALL: [Skip; 21] = [
        Skip::UnknownLinktype,
        Skip::LinkTruncated,
        Skip::EthertypeOther,
        Skip::IpTruncated,
        Skip::IpMalformed,
        Skip::IpVersionOther,
        Skip::Ipv6ExtTruncated,
        Skip::Esp,
        Skip::FragmentHeld,
        Skip::FragmentDropped,
        Skip::FragmentOverlapConflict,
        Skip::TcpBadChecksum,
        Skip::Udp,
        Skip::Icmp,
        Skip::IpProtoOther,
        Skip::TcpTruncated,
        Skip::TunnelMalformed,
        Skip::TunnelTooDeep,
        Skip::WifiProtected,
        Skip::WifiNonData,
        Skip::WifiBadFcs,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Skip::UnknownLinktype => "unknown_linktype",
            Skip::LinkTruncated => "link_truncated",
            Skip::EthertypeOther => "ethertype_other",
            Skip::IpTruncated => "ip_truncated",
            Skip::IpMalformed => "ip_malformed",
            Skip::IpVersionOther => "ip_version_other",
            Skip::Ipv6ExtTruncated => "ipv6_ext_truncated",
            Skip::Esp => "esp",
            Skip::FragmentHeld => "fragment_held",
            Skip::FragmentDropped => "fragment_dropped",
            Skip::FragmentOverlapConflict => "fragment_overlap_conflict",
            Skip::TcpBadChecksum => "tcp_bad_checksum",
            Skip::Udp => "udp",
            Skip::Icmp => "icmp",
            Skip::IpProtoOther => "ip_proto_other",
            Skip::TcpTruncated => "tcp_truncated",
            Skip::TunnelMalformed => "tunnel_malformed",
            Skip::TunnelTooDeep => "tunnel_too_deep",
            Skip::WifiProtected => "wifi_protected",
            Skip::WifiNonData => "wifi_non_data",
            Skip::WifiBadFcs => "wifi_bad_fcs",
        }
    }

    /// Reasons that are anomalies (malformed or truncated input), not merely traffic we ignore.
    pub fn is_anomaly(self) -> bool {
        matches!(
            self,
            Skip::LinkTruncated
                | Skip::IpTruncated
                | Skip::IpMalformed
                | Skip::Ipv6ExtTruncated
                | Skip::TcpTruncated
                | Skip::TunnelMalformed
                | Skip::TunnelTooDeep
                | Skip::FragmentDropped
                | Skip::FragmentOverlapConflict
                | Skip::TcpBadChecksum
        )
    }
}

/// Decoder counters (reported in `stats`).
#[derive(Debug, Default, Clone)]
pub struct DecodeStats {
    pub frames: u64,
    pub bytes: u64,
    pub tcp: u64,
    pub ipv4: u64,
    pub ipv6: u64,
    pub vlan: u64,
    pub mpls: u64,
    pub vxlan: u64,
    pub gre: u64,
    pub erspan: u64,
    /// UDP tunnels: GTP-U G-PDUs, Teredo, AYIYA, GRE in UDP (also counted in `gre`).
    pub gtpu: u64,
    pub teredo: u64,
    pub ayiya: u64,
    pub gre_udp: u64,
    /// 802.3 frames with an LLC/SNAP header, and 802.11 data frames decoded.
    pub llc_snap: u64,
    pub wifi: u64,
    pub fragments: u64,
    pub reassembled: u64,
    /// TCP checksums computed, and found wrong (refused or not, see [`ChecksumMode`]).
    pub checksum_checked: u64,
    pub checksum_bad: u64,
    /// Segments `auto` takes unchecked: checksums holding only the pseudo-header sum (offloaded
    /// by the sending host) and super-segments bigger than a frame.
    pub checksum_offloaded: u64,
    /// Whether bad checksums are being refused now (`auto` turns it on and off).
    pub checksum_validation: bool,
    pub skipped: [u64; Skip::ALL.len()],
}

/// TCP checksum validation (`reassembly.checksums`), as Suricata's `checksum-validation`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ChecksumMode {
    /// Watch the first [`AUTO_SAMPLE`] checksums without refusing anything: if at least one in
    /// ten is bad, the capture carries offloaded checksums and nothing is validated; otherwise
    /// bad checksums are refused from then on, until a run of [`AUTO_BAD_RUN`] bad ones in a row
    /// shows offloaded traffic after all (validation stops for good). A checksum field holding
    /// just the pseudo-header sum (a capture on a host that offloads checksums) is taken as
    /// good, and a segment bigger than a standard frame ([`MAX_WIRE_TCP`]: a TSO or GRO
    /// super-segment of the capturing host) is not checked.
    #[default]
    Auto,
    /// Always refuse segments with a bad checksum.
    Yes,
    /// Never compute checksums.
    No,
}

impl ChecksumMode {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "auto" => Some(ChecksumMode::Auto),
            "yes" => Some(ChecksumMode::Yes),
            "no" => Some(ChecksumMode::No),
            _ => None,
        }
    }
}

/// Checksums `auto` looks at before deciding.
pub const AUTO_SAMPLE: u64 = 64;
/// Bad checksums in a row that switch `auto` validation off once on.
pub const AUTO_BAD_RUN: u32 = 32;

/// TCP bytes (header and payload) of the largest segment a 1500-byte Ethernet frame carries;
/// `auto` does not check bigger ones (host-side super-segments).
pub const MAX_WIRE_TCP: usize = 1500 - 20;

/// Where `auto` stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Validation {
    Deciding,
    On,
    Off,
}

/// Decoder configuration.
#[derive(Debug, Clone)]
pub struct DecodeConfig {
    /// UDP destination ports decoded as VXLAN. Default: [4789].
    pub vxlan_ports: Vec<u16>,
    /// Memory cap for IP fragments awaiting reassembly (buffers, table slots and bookkeeping,
    /// see [`frag::DATAGRAM_OVERHEAD`]), bytes. Default 16 MiB.
    pub frag_memory: usize,
    /// A datagram whose fragments do not all arrive within this time is dropped. Default 30 s.
    pub frag_timeout: Ts,
    /// TCP checksum validation. Default auto.
    pub checksums: ChecksumMode,
}

impl Default for DecodeConfig {
    fn default() -> Self {
        DecodeConfig {
            vxlan_ports: vec![4789],
            frag_memory: 16 << 20,
            frag_timeout: 30_000_000_000,
            checksums: ChecksumMode::Auto,
        }
    }
}

pub struct Decoder {
    cfg: DecodeConfig,
    pub frags: FragTable,
    pub stats: DecodeStats,
    validation: Validation,
    bad_run: u32,
}

/// What one frame came to.
pub enum Outcome {
    Tcp,
    Skipped(Skip),
}

#[derive(Clone, Copy)]
struct IpMeta {
    src: IpAddr,
    dst: IpAddr,
}

impl Decoder {
    pub fn new(cfg: DecodeConfig) -> Self {
        let frags = FragTable::new(cfg.frag_memory, cfg.frag_timeout);
        let validation = match cfg.checksums {
            ChecksumMode::Auto => Validation::Deciding,
            ChecksumMode::Yes => Validation::On,
            ChecksumMode::No => Validation::Off,
        };
        let stats = DecodeStats {
            checksum_validation: validation == Validation::On,
            ..DecodeStats::default()
        };
        Decoder {
            cfg,
            frags,
            stats,
            validation,
            bad_run: 0,
        }
    }

    /// Decode one frame; every TCP segment found is passed to `on_tcp`.
    pub fn decode(&mut self, frame: &Frame<'_>, on_tcp: &mut dyn FnMut(&TcpSegment<'_>)) -> Outcome {
        self.stats.frames += 1;
        self.stats.bytes += frame.orig_len as u64;
        let r = self.link(frame.ts, frame.linktype, frame.data, 0, on_tcp);
        match r {
            Ok(()) => {
                self.stats.tcp += 1;
                Outcome::Tcp
            }
            Err(s) => {
                self.stats.skipped[s as usize] += 1;
                Outcome::Skipped(s)
            }
        }
    }

    fn link(
        &mut self,
        ts: Ts,
        lt: u32,
        d: &[u8],
        depth: u8,
        on_tcp: &mut dyn FnMut(&TcpSegment<'_>),
    ) -> Result<(), Skip> {
        match lt {
            linktype::ETHERNET => self.ethernet(ts, d, depth, on_tcp),
            linktype::RAW | linktype::RAW_OLD | linktype::RAW_OLD2 | linktype::IPV4 | linktype::IPV6 => {
                self.ip(ts, d, depth, on_tcp)
            }
            linktype::NULL | linktype::LOOP => {
                let h = d.get(..4).ok_or(Skip::LinkTruncated)?;
                // Address family in host byte order (NULL) or network order (LOOP): accept both.
                let le = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
                let af = if le <= 0xff {
                    le
                } else {
                    u32::from_be_bytes([h[0], h[1], h[2], h[3]])
                };
                match af {
                    2 | 10 | 24 | 28 | 30 => self.ip(ts, &d[4..], depth, on_tcp),
                    _ => Err(Skip::EthertypeOther),
                }
            }
            linktype::LINUX_SLL => {
                let h = d.get(..16).ok_or(Skip::LinkTruncated)?;
                self.ethertype(ts, u16::from_be_bytes([h[14], h[15]]), &d[16..], depth, on_tcp)
            }
            linktype::C_HDLC => {
                // Cisco HDLC: address, control, then an Ethernet type.
                let h = d.get(..4).ok_or(Skip::LinkTruncated)?;
                self.ethertype(ts, u16::from_be_bytes([h[2], h[3]]), &d[4..], depth, on_tcp)
            }
            linktype::NFLOG => {
                // Linux NFLOG: 4-byte header, then TLVs (host byte order); type 9 is the packet.
                let mut p = d.get(4..).ok_or(Skip::LinkTruncated)?;
                while p.len() >= 4 {
                    let len = u16::from_le_bytes([p[0], p[1]]) as usize;
                    let ty = u16::from_le_bytes([p[2], p[3]]);
                    if len < 4 || len > p.len() {
                        return Err(Skip::LinkTruncated);
                    }
                    if ty == 9 {
                        return self.ip(ts, &p[4..len], depth, on_tcp);
                    }
                    p = p.get((len + 3) & !3..).unwrap_or(&[]);
                }
                Err(Skip::EthertypeOther)
            }
            linktype::LINUX_SLL2 => {
                let h = d.get(..20).ok_or(Skip::LinkTruncated)?;
                self.ethertype(ts, u16::from_be_bytes([h[0], h[1]]), &d[20..], depth, on_tcp)
            }
            linktype::IEEE802_11 => self.wifi(ts, d, depth, on_tcp),
            linktype::IEEE802_11_RADIOTAP => match tunnel::radiotap(d)? {
                Some(f) => self.wifi(ts, f, depth, on_tcp),
                None => Err(Skip::WifiBadFcs),
            },
            _ => Err(Skip::UnknownLinktype),
        }
    }

    /// An 802.11 frame: a data frame's LLC/SNAP body goes on by its ethertype.
    fn wifi(&mut self, ts: Ts, d: &[u8], depth: u8, on_tcp: &mut dyn FnMut(&TcpSegment<'_>)) -> Result<(), Skip> {
        match tunnel::ieee80211(d)? {
            tunnel::Wifi::Data(body) => {
                self.stats.wifi += 1;
                match tunnel::llc_snap(body)? {
                    Some((et, p)) => self.ethertype(ts, et, p, depth, on_tcp),
                    None => Err(Skip::EthertypeOther),
                }
            }
            tunnel::Wifi::Protected => Err(Skip::WifiProtected),
            tunnel::Wifi::Other => Err(Skip::WifiNonData),
        }
    }

    fn ethernet(&mut self, ts: Ts, d: &[u8], depth: u8, on_tcp: &mut dyn FnMut(&TcpSegment<'_>)) -> Result<(), Skip> {
        let h = d.get(..14).ok_or(Skip::LinkTruncated)?;
        let et = u16::from_be_bytes([h[12], h[13]]);
        if et == 0x0800 {
            // The common frame, untagged IPv4: straight on (what `ethertype` does for it).
            return self.ip(ts, &d[14..], depth, on_tcp);
        }
        self.ethertype(ts, et, &d[14..], depth, on_tcp)
    }

    fn ethertype(
        &mut self,
        ts: Ts,
        mut et: u16,
        mut d: &[u8],
        depth: u8,
        on_tcp: &mut dyn FnMut(&TcpSegment<'_>),
    ) -> Result<(), Skip> {
        // 802.1Q / 802.1ad / QinQ: any number of tags, bounded by the frame length.
        while matches!(et, 0x8100 | 0x88A8 | 0x9100 | 0x9200) {
            let t = d.get(..4).ok_or(Skip::LinkTruncated)?;
            self.stats.vlan += 1;
            et = u16::from_be_bytes([t[2], t[3]]);
            d = &d[4..];
        }
        match et {
            0x0800 | 0x86DD => self.ip(ts, d, depth, on_tcp),
            // An 802.3 length field: LLC, and with SNAP an ethertype after all.
            0..=1500 => match tunnel::llc_snap(d)? {
                Some((et, p)) if et > 1500 => {
                    self.stats.llc_snap += 1;
                    self.ethertype(ts, et, p, depth, on_tcp)
                }
                _ => Err(Skip::EthertypeOther),
            },
            0x8864 => {
                // PPPoE session: 6-byte header, then the PPP protocol field (1 byte when
                // compressed: an odd first byte).
                let h = d.get(..7).ok_or(Skip::LinkTruncated)?;
                let (proto, skip) = if h[6] & 1 == 1 {
                    (h[6] as u16, 7)
                } else {
                    let p = d.get(6..8).ok_or(Skip::LinkTruncated)?;
                    (u16::from_be_bytes([p[0], p[1]]), 8)
                };
                match proto {
                    0x21 | 0x57 => self.ip(ts, &d[skip..], depth, on_tcp),
                    _ => Err(Skip::EthertypeOther),
                }
            }
            0x8847 | 0x8848 => {
                // MPLS label stack; after bottom of stack, IPv4/IPv6 by version nibble, or a
                // pseudowire control word (0000) followed by Ethernet.
                self.stats.mpls += 1;
                loop {
                    let l = d.get(..4).ok_or(Skip::LinkTruncated)?;
                    d = &d[4..];
                    if l[2] & 0x01 != 0 {
                        break;
                    }
                }
                match d.first().map(|b| b >> 4) {
                    Some(4) | Some(6) => self.ip(ts, d, depth, on_tcp),
                    Some(0) => self.ethernet(ts, d.get(4..).ok_or(Skip::LinkTruncated)?, depth, on_tcp),
                    _ => Err(Skip::EthertypeOther),
                }
            }
            _ => Err(Skip::EthertypeOther),
        }
    }

    fn ip(&mut self, ts: Ts, d: &[u8], depth: u8, on_tcp: &mut dyn FnMut(&TcpSegment<'_>)) -> Result<(), Skip> {
        match d.first().map(|b| b >> 4) {
            Some(4) => self.ipv4(ts, d, depth, on_tcp),
            Some(6) => self.ipv6(ts, d, depth, on_tcp),
            Some(_) => Err(Skip::IpVersionOther),
            None => Err(Skip::IpTruncated),
        }
    }

    fn ipv4(&mut self, ts: Ts, d: &[u8], depth: u8, on_tcp: &mut dyn FnMut(&TcpSegment<'_>)) -> Result<(), Skip> {
        let h = Ipv4HeaderSlice::from_slice(d).map_err(|e| match e {
            etherparse::err::ipv4::HeaderSliceError::Len(_) => Skip::IpTruncated,
            _ => Skip::IpMalformed,
        })?;
        self.stats.ipv4 += 1;
        let hl = h.slice().len();
        let total = h.total_len() as usize;
        if total < hl {
            return Err(Skip::IpMalformed);
        }
        let meta = IpMeta {
            src: IpAddr::V4(h.source_addr()),
            dst: IpAddr::V4(h.destination_addr()),
        };
        let proto = h.protocol().0;
        // Ethernet padding beyond total_len is dropped; a snap-length cut leaves `missing` bytes.
        let avail = &d[hl..total.min(d.len())];
        let declared = total - hl;
        let off = h.fragments_offset().value() as usize * 8;
        if h.more_fragments() || off != 0 {
            self.stats.fragments += 1;
            if avail.len() < declared {
                return Err(Skip::FragmentDropped);
            }
            let key = FragKey::new(meta.src, meta.dst, proto, h.identification() as u32);
            return self.fragment(ts, key, off, h.more_fragments(), avail, meta, proto, depth, on_tcp);
        }
        self.l4(ts, meta, proto, avail, declared, depth, on_tcp)
    }

    fn ipv6(&mut self, ts: Ts, d: &[u8], depth: u8, on_tcp: &mut dyn FnMut(&TcpSegment<'_>)) -> Result<(), Skip> {
        let h = Ipv6HeaderSlice::from_slice(d).map_err(|e| match e {
            etherparse::err::ipv6::HeaderSliceError::Len(_) => Skip::IpTruncated,
            _ => Skip::IpMalformed,
        })?;
        self.stats.ipv6 += 1;
        let meta = IpMeta {
            src: IpAddr::V6(h.source_addr()),
            dst: IpAddr::V6(h.destination_addr()),
        };
        let plen = h.payload_length() as usize;
        let body = &d[40..];
        // payload_length 0 is a jumbogram (or unset by the capture point): use what we have.
        let declared_total = if plen == 0 { body.len() } else { plen };
        let mut p = &body[..declared_total.min(body.len())];
        let mut consumed = 0usize;
        let mut nh = h.next_header().0;
        let mut frag: Option<(usize, bool, u32)> = None;
        loop {
            match nh {
                0 | 43 | 60 | 135 | 139 | 140 => {
                    let e = p.get(..2).ok_or(Skip::Ipv6ExtTruncated)?;
                    let len = (e[1] as usize + 1) * 8;
                    if p.len() < len {
                        return Err(Skip::Ipv6ExtTruncated);
                    }
                    nh = e[0];
                    p = &p[len..];
                    consumed += len;
                }
                51 => {
                    let e = p.get(..2).ok_or(Skip::Ipv6ExtTruncated)?;
                    let len = (e[1] as usize + 2) * 4;
                    if p.len() < len {
                        return Err(Skip::Ipv6ExtTruncated);
                    }
                    nh = e[0];
                    p = &p[len..];
                    consumed += len;
                }
                44 => {
                    let e = p.get(..8).ok_or(Skip::Ipv6ExtTruncated)?;
                    let fo = u16::from_be_bytes([e[2], e[3]]);
                    let id = u32::from_be_bytes([e[4], e[5], e[6], e[7]]);
                    frag = Some(((fo >> 3) as usize * 8, fo & 1 != 0, id));
                    nh = e[0];
                    p = &p[8..];
                    consumed += 8;
                }
                50 => return Err(Skip::Esp),
                _ => break,
            }
        }
        let declared = declared_total.saturating_sub(consumed);
        if let Some((off, more, id)) = frag
            && (off != 0 || more)
        {
            self.stats.fragments += 1;
            if p.len() < declared {
                return Err(Skip::FragmentDropped);
            }
            let key = FragKey::new(meta.src, meta.dst, nh, id);
            return self.fragment(ts, key, off, more, p, meta, nh, depth, on_tcp);
        }
        self.l4(ts, meta, nh, p, declared, depth, on_tcp)
    }

    #[allow(clippy::too_many_arguments)]
    fn fragment(
        &mut self,
        ts: Ts,
        key: FragKey,
        off: usize,
        more: bool,
        data: &[u8],
        meta: IpMeta,
        proto: u8,
        depth: u8,
        on_tcp: &mut dyn FnMut(&TcpSegment<'_>),
    ) -> Result<(), Skip> {
        match self.frags.insert(ts, key, off, more, data) {
            frag::Insert::Held => Err(Skip::FragmentHeld),
            frag::Insert::Dropped => Err(Skip::FragmentDropped),
            frag::Insert::Conflict => Err(Skip::FragmentOverlapConflict),
            frag::Insert::Complete(buf) => {
                self.stats.reassembled += 1;
                let r = self.l4(ts, meta, proto, &buf, buf.len(), depth, on_tcp);
                self.frags.recycle(buf);
                r
            }
        }
    }

    /// What an IP packet carries (`d`: what was captured of the `declared` payload bytes).
    /// (TCP inlined into the IP layers, the rest not: the common packet makes no call here)
    #[allow(clippy::too_many_arguments)]
    #[inline]
    fn l4(
        &mut self,
        ts: Ts,
        meta: IpMeta,
        proto: u8,
        d: &[u8],
        declared: usize,
        depth: u8,
        on_tcp: &mut dyn FnMut(&TcpSegment<'_>),
    ) -> Result<(), Skip> {
        if proto == 6 {
            self.tcp(ts, meta, d, declared, on_tcp)
        } else {
            self.l4_other(ts, proto, d, depth, on_tcp)
        }
    }

    /// A TCP segment: its header read, its checksum checked when it was captured whole, then
    /// handed to `on_tcp`.
    #[inline]
    fn tcp(
        &mut self,
        ts: Ts,
        meta: IpMeta,
        d: &[u8],
        declared: usize,
        on_tcp: &mut dyn FnMut(&TcpSegment<'_>),
    ) -> Result<(), Skip> {
        let t = TcpHeaderSlice::from_slice(d).map_err(|_| Skip::TcpTruncated)?;
        let hl = t.slice().len();
        let payload = &d[hl..];
        let missing = declared.saturating_sub(hl).saturating_sub(payload.len()) as u32;
        // Only a segment captured whole can be checked.
        if self.validation != Validation::Off && missing == 0 && declared == d.len() && !self.checksum_ok(meta, d) {
            return Err(Skip::TcpBadChecksum);
        }
        let b = t.slice();
        on_tcp(&TcpSegment {
            ts,
            src: meta.src,
            dst: meta.dst,
            sport: t.source_port(),
            dport: t.destination_port(),
            seq: t.sequence_number(),
            ack: t.acknowledgment_number(),
            flags: b[13],
            payload,
            missing,
        });
        Ok(())
    }

    /// [`Decoder::l4`] for all but TCP.
    #[inline(never)]
    fn l4_other(
        &mut self,
        ts: Ts,
        proto: u8,
        d: &[u8],
        depth: u8,
        on_tcp: &mut dyn FnMut(&TcpSegment<'_>),
    ) -> Result<(), Skip> {
        match proto {
            17 => {
                let u = d.get(..8).ok_or(Skip::Udp)?;
                let sport = u16::from_be_bytes([u[0], u[1]]);
                let dport = u16::from_be_bytes([u[2], u[3]]);
                if self.cfg.vxlan_ports.contains(&dport) {
                    if depth >= MAX_DEPTH {
                        return Err(Skip::TunnelTooDeep);
                    }
                    // VXLAN: flags(1) with I bit, reserved(3), VNI(3), reserved(1); then Ethernet.
                    let v = d.get(8..16).ok_or(Skip::TunnelMalformed)?;
                    if v[0] & 0x08 == 0 {
                        return Err(Skip::TunnelMalformed);
                    }
                    self.stats.vxlan += 1;
                    return self.ethernet(ts, &d[16..], depth + 1, on_tcp);
                }
                self.udp_tunnel(ts, sport, dport, d, depth, on_tcp)
            }
            47 => {
                if depth >= MAX_DEPTH {
                    return Err(Skip::TunnelTooDeep);
                }
                self.gre(ts, d, depth + 1, on_tcp)
            }
            4 | 41 => {
                if depth >= MAX_DEPTH {
                    return Err(Skip::TunnelTooDeep);
                }
                self.ip(ts, d, depth + 1, on_tcp)
            }
            1 | 58 => Err(Skip::Icmp),
            _ => Err(Skip::IpProtoOther),
        }
    }

    /// GTP-U, Teredo, AYIYA and GRE in UDP (`d`: the UDP header and what follows).
    fn udp_tunnel(
        &mut self,
        ts: Ts,
        sport: u16,
        dport: u16,
        d: &[u8],
        depth: u8,
        on_tcp: &mut dyn FnMut(&TcpSegment<'_>),
    ) -> Result<(), Skip> {
        let either = |p: u16| sport == p || dport == p;
        let tunnel = either(tunnel::GTPU_PORT) || either(tunnel::TEREDO_PORT) || either(tunnel::AYIYA_PORT);
        if !tunnel && dport != tunnel::GRE_UDP_PORT {
            return Err(Skip::Udp);
        }
        if depth >= MAX_DEPTH {
            return Err(Skip::TunnelTooDeep);
        }
        // The UDP length bounds the payload (Ethernet padding is not part of it).
        let ulen = u16::from_be_bytes([d[4], d[5]]) as usize;
        if ulen < 8 {
            return Err(Skip::TunnelMalformed);
        }
        let p = &d[8..ulen.min(d.len())];
        if either(tunnel::GTPU_PORT) {
            return match tunnel::gtpu(p)? {
                tunnel::Gtpu::Pdu(ip) => {
                    self.stats.gtpu += 1;
                    self.ip(ts, ip, depth + 1, on_tcp)
                }
                tunnel::Gtpu::Signalling => Err(Skip::Udp),
            };
        }
        if dport == tunnel::GRE_UDP_PORT {
            self.stats.gre_udp += 1;
            return self.gre(ts, p, depth + 1, on_tcp);
        }
        if either(tunnel::AYIYA_PORT) {
            return match tunnel::ayiya(p)? {
                Some(ip) => {
                    self.stats.ayiya += 1;
                    self.ip(ts, ip, depth + 1, on_tcp)
                }
                None => Err(Skip::Udp),
            };
        }
        match tunnel::teredo(p) {
            Some(ip6) => {
                self.stats.teredo += 1;
                self.ip(ts, ip6, depth + 1, on_tcp)
            }
            None => Err(Skip::Udp),
        }
    }

    /// Check a whole TCP segment's checksum and update the `auto` decision; false = refuse it.
    fn checksum_ok(&mut self, meta: IpMeta, tcp: &[u8]) -> bool {
        if self.cfg.checksums == ChecksumMode::Auto && tcp.len() > MAX_WIRE_TCP {
            // Larger than any standard frame: a super-segment of the capturing host (TSO on
            // send, GRO on receive), whose checksum the NIC computes or already checked.
            self.stats.checksum_offloaded += 1;
            return true;
        }
        self.stats.checksum_checked += 1;
        let good = match tcp_checksum(meta.src, meta.dst, tcp) {
            Checksum::Good => true,
            // The sending host's NIC fills it in: the server did get those bytes.
            Checksum::Partial if self.cfg.checksums == ChecksumMode::Auto => {
                self.stats.checksum_offloaded += 1;
                return true;
            }
            Checksum::Partial | Checksum::Bad => false,
        };
        if !good {
            self.stats.checksum_bad += 1;
        }
        match self.validation {
            Validation::Deciding => {
                if self.stats.checksum_checked >= AUTO_SAMPLE {
                    let offloaded = self.stats.checksum_bad * 10 >= self.stats.checksum_checked;
                    self.validation = if offloaded { Validation::Off } else { Validation::On };
                    self.stats.checksum_validation = !offloaded;
                }
                true
            }
            Validation::On if good => {
                self.bad_run = 0;
                true
            }
            Validation::On => {
                self.bad_run += 1;
                if self.cfg.checksums == ChecksumMode::Auto && self.bad_run >= AUTO_BAD_RUN {
                    self.validation = Validation::Off;
                    self.stats.checksum_validation = false;
                }
                false
            }
            Validation::Off => true,
        }
    }

    /// GRE (RFC 2784/2890), carrying IP, transparent Ethernet bridging, or ERSPAN I/II/III.
    fn gre(&mut self, ts: Ts, d: &[u8], depth: u8, on_tcp: &mut dyn FnMut(&TcpSegment<'_>)) -> Result<(), Skip> {
        let h = d.get(..4).ok_or(Skip::TunnelMalformed)?;
        let flags = u16::from_be_bytes([h[0], h[1]]);
        let proto = u16::from_be_bytes([h[2], h[3]]);
        if flags & 0x0007 != 0 {
            // Version 1 is PPTP's enhanced GRE: not a mirror encapsulation.
            return Err(Skip::TunnelMalformed);
        }
        let mut hl = 4;
        if flags & 0x8000 != 0 {
            hl += 4; // checksum + reserved
        }
        if flags & 0x2000 != 0 {
            hl += 4; // key
        }
        let seq_present = flags & 0x1000 != 0;
        if seq_present {
            hl += 4;
        }
        let p = d.get(hl..).ok_or(Skip::TunnelMalformed)?;
        self.stats.gre += 1;
        match proto {
            0x0800 | 0x86DD => self.ip(ts, p, depth, on_tcp),
            0x6558 => self.ethernet(ts, p, depth, on_tcp),
            0x88BE => {
                self.stats.erspan += 1;
                // Type I has no sequence number and no ERSPAN header; type II has an 8-byte one.
                if seq_present {
                    self.ethernet(ts, p.get(8..).ok_or(Skip::TunnelMalformed)?, depth, on_tcp)
                } else {
                    self.ethernet(ts, p, depth, on_tcp)
                }
            }
            0x22EB => {
                self.stats.erspan += 1;
                // Type III: 12-byte header; the O bit announces an 8-byte platform sub-header.
                let e = p.get(..12).ok_or(Skip::TunnelMalformed)?;
                let skip = if e[11] & 0x01 != 0 { 20 } else { 12 };
                self.ethernet(ts, p.get(skip..).ok_or(Skip::TunnelMalformed)?, depth, on_tcp)
            }
            _ => Err(Skip::EthertypeOther),
        }
    }
}

/// Is the TCP checksum of `tcp` (header and payload, whole) right for these addresses?
pub fn tcp_checksum_valid(src: IpAddr, dst: IpAddr, tcp: &[u8]) -> bool {
    tcp_checksum(src, dst, tcp) == Checksum::Good
}

/// What a TCP segment's checksum field holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checksum {
    Good,
    /// Only the pseudo-header sum: the sender's stack left the rest to its NIC (checksum
    /// offload, CHECKSUM_PARTIAL), as a capture on the sending host shows it.
    Partial,
    Bad,
}

/// Check a whole TCP segment (header and payload) against its pseudo-header.
pub fn tcp_checksum(src: IpAddr, dst: IpAddr, tcp: &[u8]) -> Checksum {
    let len = tcp.len() as u64;
    let mut acc = 6 + (len >> 16) + (len & 0xffff);
    match (src, dst) {
        // (IPv4, nearly every packet: the two addresses as 32-bit words, no carry in 64 bits;
        // 2^32 is 1 modulo 2^16 - 1, so this is the sum `ones_sum` gives of their padded words)
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            acc += u64::from(u32::from_be_bytes(s.octets())) + u64::from(u32::from_be_bytes(d.octets()));
        }
        _ => {
            for a in [src, dst] {
                acc = match a {
                    IpAddr::V4(a) => ones_sum(acc, &a.octets()),
                    IpAddr::V6(a) => ones_sum(acc, &a.octets()),
                };
            }
        }
    }
    let pseudo = fold(acc);
    if fold(acc + u64::from(data_sum(tcp))) == 0xffff {
        return Checksum::Good;
    }
    match tcp.get(16..18) {
        Some(c) if u16::from_be_bytes([c[0], c[1]]) == pseudo => Checksum::Partial,
        _ => Checksum::Bad,
    }
}

/// One's complement sum of big-endian 64-bit words (a trailing partial word padded with zeros)
/// added to `acc`, with end-around carry; [`fold`] turns it into the 16-bit sum (2^64 and 2^32
/// are 1 modulo 2^16 - 1, so the word size does not change the sum: RFC 1071 §2).
fn ones_sum(acc: u64, d: &[u8]) -> u64 {
    let add = |s: u64, w: u64| {
        let (v, c) = s.overflowing_add(w);
        v + c as u64
    };
    let mut s = acc;
    let mut words = d.chunks_exact(8);
    for w in &mut words {
        s = add(s, u64::from_be_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]));
    }
    let r = words.remainder();
    if !r.is_empty() {
        let mut w = [0u8; 8];
        w[..r.len()].copy_from_slice(r);
        s = add(s, u64::from_be_bytes(w));
    }
    s
}

/// The one's complement sum of `d` as big-endian 16-bit words (a trailing odd byte padded
/// with zero), folded to 16 bits: `fold(ones_sum(0, d))`, computed faster. The bytes are read
/// as little-endian 64-bit words added into a 128-bit sum (no carry to fold per word) and the
/// result byte-swapped: the sum does not depend on byte order (RFC 1071 §2(B)).
fn data_sum(d: &[u8]) -> u16 {
    #[inline(always)]
    fn le(w: &[u8]) -> u128 {
        u128::from(u64::from_le_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]))
    }
    let mut s: u128 = 0;
    let mut blocks = d.chunks_exact(32);
    for b in &mut blocks {
        s += le(&b[0..8]) + le(&b[8..16]) + le(&b[16..24]) + le(&b[24..32]);
    }
    let mut words = blocks.remainder().chunks_exact(8);
    for w in &mut words {
        s += le(w);
    }
    // the last 1 to 7 bytes as a little-endian word padded with zeros (a few shifts: cheaper
    // than the library copy into a padded word that most segments paid for)
    let r = words.remainder();
    s += u128::from(r.iter().rev().fold(0u64, |w, &b| (w << 8) | u64::from(b)));
    // 2^64 is 1 modulo 2^16 - 1: add the halves (at most 2^65), then once more
    let x = (s as u64 as u128) + (s >> 64);
    let x = (x as u64).wrapping_add((x >> 64) as u64);
    fold(x).swap_bytes()
}

/// `acc` folded to 16 bits with end-around carry (0 only for 0). Four fixed steps, no loop:
/// 64 -> at most 33 bits -> 18 -> 17 -> 16; each keeps the value modulo 2^16 - 1 and keeps a
/// non-zero value non-zero, so this is what folding until it fits gives.
#[inline]
fn fold(acc: u64) -> u16 {
    let x = (acc & 0xffff_ffff) + (acc >> 32);
    let x = (x & 0xffff) + (x >> 16);
    let x = (x & 0xffff) + (x >> 16);
    let x = (x & 0xffff) + (x >> 16);
    x as u16
}

pub fn v4(a: [u8; 4]) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(a))
}

pub fn v6(a: [u8; 16]) -> IpAddr {
    IpAddr::V6(Ipv6Addr::from(a))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Build Ethernet/IPv4/TCP bytes (no checksums: a sensor never verifies them).
    pub fn eth_ipv4_tcp(src: [u8; 4], dst: [u8; 4], sp: u16, dp: u16, seq: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; 12];
        f.extend([0x08, 0x00]);
        f.extend(ipv4_tcp(src, dst, sp, dp, seq, flags, payload));
        f
    }

    pub fn ipv4_tcp(src: [u8; 4], dst: [u8; 4], sp: u16, dp: u16, seq: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
        let total = 20 + 20 + payload.len();
        let mut f = vec![0x45, 0, (total >> 8) as u8, total as u8, 0, 1, 0x40, 0, 64, 6, 0, 0];
        f.extend(src);
        f.extend(dst);
        f.extend(sp.to_be_bytes());
        f.extend(dp.to_be_bytes());
        f.extend(seq.to_be_bytes());
        f.extend(0u32.to_be_bytes());
        f.extend([0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
        f.extend(payload);
        f
    }

    fn run(lt: u32, data: &[u8]) -> (Vec<(IpAddr, u16, Vec<u8>, u32)>, DecodeStats) {
        let mut d = Decoder::new(DecodeConfig::default());
        let mut got = Vec::new();
        let fr = Frame {
            ts: 1,
            linktype: lt,
            data,
            orig_len: data.len() as u32,
        };
        d.decode(&fr, &mut |s| got.push((s.src, s.dport, s.payload.to_vec(), s.missing)));
        (got, d.stats)
    }

    #[test]
    fn ethernet_vlan_qinq_vxlan_gre_erspan() {
        let inner = eth_ipv4_tcp([10, 0, 0, 1], [10, 0, 0, 2], 1234, 80, 1, 0x18, b"GET /");
        let (g, _) = run(1, &inner);
        assert_eq!(g, vec![(v4([10, 0, 0, 1]), 80, b"GET /".to_vec(), 0)]);

        // QinQ: outer 802.1ad + inner 802.1Q
        let mut q = inner[..12].to_vec();
        q.extend([0x88, 0xA8, 0, 200, 0x81, 0x00, 0, 100]);
        q.extend(&inner[12..]);
        let (g, s) = run(1, &q);
        assert_eq!(g.len(), 1);
        assert_eq!(s.vlan, 2);

        // VXLAN in UDP 4789 in IPv4 in Ethernet
        let mut udp = vec![0x30, 0x39, 0x12, 0xB5, 0, 0, 0, 0, 0x08, 0, 0, 0, 0, 0, 42, 0];
        udp.extend(&inner);
        let total = 20 + udp.len();
        let mut outer = vec![0u8; 12];
        outer.extend([
            0x08,
            0x00,
            0x45,
            0,
            (total >> 8) as u8,
            total as u8,
            0,
            0,
            0,
            0,
            64,
            17,
            0,
            0,
        ]);
        outer.extend([192, 168, 0, 1, 192, 168, 0, 2]);
        outer.extend(&udp);
        let (g, s) = run(1, &outer);
        assert_eq!((g.len(), s.vxlan), (1, 1));

        // ERSPAN II: GRE with S bit, proto 0x88BE, 8-byte ERSPAN header
        for (flags, proto, hdr) in [
            (0x1000u16, 0x88BEu16, vec![0u8; 12]),
            (0x0000u16, 0x22EBu16, vec![0u8; 12]),
            (0x0000u16, 0x6558u16, vec![]),
        ] {
            let mut gre = flags.to_be_bytes().to_vec();
            gre.extend(proto.to_be_bytes());
            if flags & 0x1000 != 0 {
                gre.truncate(4);
                gre.extend(7u32.to_be_bytes());
                gre.extend(&hdr[..8]);
            } else {
                gre.extend(&hdr);
            }
            gre.extend(&inner);
            let total = 20 + gre.len();
            let mut o = vec![0u8; 12];
            o.extend([
                0x08,
                0x00,
                0x45,
                0,
                (total >> 8) as u8,
                total as u8,
                0,
                0,
                0,
                0,
                64,
                47,
                0,
                0,
            ]);
            o.extend([192, 168, 0, 1, 192, 168, 0, 2]);
            o.extend(&gre);
            let (g, s) = run(1, &o);
            assert_eq!(g.len(), 1, "gre proto {proto:#x}");
            assert_eq!(s.gre, 1);
        }
    }

    /// IPv4/UDP around `payload` (checksum 0).
    fn ipv4_udp(sp: u16, dp: u16, payload: &[u8]) -> Vec<u8> {
        let total = 28 + payload.len();
        let mut f = vec![0x45, 0, (total >> 8) as u8, total as u8, 0, 1, 0, 0, 64, 17, 0, 0];
        f.extend([192, 0, 2, 1, 192, 0, 2, 2]);
        f.extend(sp.to_be_bytes());
        f.extend(dp.to_be_bytes());
        f.extend(((8 + payload.len()) as u16).to_be_bytes());
        f.extend([0, 0]);
        f.extend(payload);
        f
    }

    fn gtpu_pdu(ip: &[u8]) -> Vec<u8> {
        let mut g = vec![0x30, 0xFF];
        g.extend((ip.len() as u16).to_be_bytes());
        g.extend(7u32.to_be_bytes());
        g.extend(ip);
        g
    }

    #[test]
    fn udp_tunnels_nest_until_the_depth_limit() {
        let ip = ipv4_tcp([10, 0, 0, 1], [10, 0, 0, 2], 1234, 80, 1, 0x18, b"GET /");
        let mut p = ip.clone();
        for depth in 1..=MAX_DEPTH as usize + 1 {
            p = ipv4_udp(2152, 2152, &gtpu_pdu(&p));
            let (g, s) = run(101, &p);
            if depth <= MAX_DEPTH as usize {
                assert_eq!((g.len(), s.gtpu), (1, depth as u64), "depth {depth}");
            } else {
                assert!(g.is_empty());
                assert_eq!(s.skipped[Skip::TunnelTooDeep as usize], 1);
            }
        }
        // GRE in UDP carrying IPv4; AYIYA and GTP-U signalling are UDP, not anomalies
        let mut gre = vec![0, 0, 0x08, 0x00];
        gre.extend(&ip);
        let (g, s) = run(101, &ipv4_udp(50000, 4754, &gre));
        assert_eq!((g.len(), s.gre_udp, s.gre), (1, 1, 1));
        let (_, s) = run(101, &ipv4_udp(2152, 2152, &[0x32, 1, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0]));
        assert_eq!(s.skipped[Skip::Udp as usize], 1);
        // a broken GTP-U header is malformed (an anomaly), not silently dropped
        let (_, s) = run(
            101,
            &ipv4_udp(2152, 2152, &[0x34, 0xFF, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0x85]),
        );
        assert_eq!(s.skipped[Skip::TunnelMalformed as usize], 1);
        assert!(Skip::TunnelMalformed.is_anomaly() && !Skip::WifiProtected.is_anomaly());
    }

    #[test]
    fn snaplen_cut_reports_missing_bytes() {
        let f = eth_ipv4_tcp([10, 0, 0, 1], [10, 0, 0, 2], 1234, 80, 1, 0x18, b"0123456789");
        let (g, _) = run(1, &f[..f.len() - 4]);
        assert_eq!(g[0].2, b"012345");
        assert_eq!(g[0].3, 4);
    }

    #[test]
    fn sll_sll2_raw_null() {
        let ip = ipv4_tcp([10, 0, 0, 1], [10, 0, 0, 2], 1, 80, 1, 0x18, b"x");
        let mut sll = vec![0u8; 14];
        sll.extend([0x08, 0x00]);
        sll.extend(&ip);
        assert_eq!(run(113, &sll).0.len(), 1);
        let mut sll2 = vec![0x08, 0x00];
        sll2.extend([0u8; 18]);
        sll2.extend(&ip);
        assert_eq!(run(276, &sll2).0.len(), 1);
        assert_eq!(run(101, &ip).0.len(), 1);
        let mut null = 2u32.to_le_bytes().to_vec();
        null.extend(&ip);
        assert_eq!(run(0, &null).0.len(), 1);
    }

    #[test]
    fn pppoe_chdlc_nflog() {
        let ip = ipv4_tcp([10, 0, 0, 1], [10, 0, 0, 2], 1, 80, 1, 0x18, b"x");
        for ppp in [vec![0x21u8], vec![0x00, 0x21]] {
            let mut f = vec![0u8; 12];
            f.extend([0x88, 0x64, 0x11, 0x00, 0x00, 0x01, 0, 0]);
            f.extend(&ppp);
            f.extend(&ip);
            assert_eq!(run(1, &f).0.len(), 1);
        }
        let mut h = vec![0x0f, 0x00, 0x08, 0x00];
        h.extend(&ip);
        assert_eq!(run(104, &h).0.len(), 1);
        let mut n = vec![2, 0, 0, 0, 8, 0, 1, 0, 0, 0, 0, 0];
        n.extend(((ip.len() + 4) as u16).to_le_bytes());
        n.extend(9u16.to_le_bytes());
        n.extend(&ip);
        assert_eq!(run(239, &n).0.len(), 1);
    }

    #[test]
    fn unknown_things_are_counted_not_fatal() {
        let (g, s) = run(1, &[0u8; 5]);
        assert!(g.is_empty());
        assert_eq!(s.skipped[Skip::LinkTruncated as usize], 1);
        let (_, s) = run(9999, &[0u8; 64]);
        assert_eq!(s.skipped[Skip::UnknownLinktype as usize], 1);
    }

    /// An IPv4 fragment of a TCP segment (`body` = TCP header and payload bytes from `off`).
    fn ipv4_frag(id: u16, off: usize, more: bool, body: &[u8]) -> Vec<u8> {
        let total = 20 + body.len();
        let fo = (off / 8) as u16 | if more { 0x2000 } else { 0 };
        let mut f = vec![0u8; 12];
        f.extend([0x08, 0x00, 0x45, 0, (total >> 8) as u8, total as u8]);
        f.extend(id.to_be_bytes());
        f.extend(fo.to_be_bytes());
        f.extend([64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]);
        f.extend(body);
        f
    }

    #[test]
    fn overlapping_fragments_with_different_data_are_dropped_and_reported() {
        let seg = ipv4_tcp(
            [10, 0, 0, 1],
            [10, 0, 0, 2],
            1234,
            80,
            1,
            0x18,
            b"GET /aaaaaaaaaaaaaaaaaaaaaaa HTTP/1.1\r\n\r\n",
        );
        let tcp = &seg[20..];
        let mut d = Decoder::new(DecodeConfig::default());
        let mut got = Vec::new();
        let feed = |d: &mut Decoder, f: &[u8], got: &mut Vec<Vec<u8>>| {
            let fr = Frame {
                ts: 1,
                linktype: 1,
                data: f,
                orig_len: f.len() as u32,
            };
            match d.decode(&fr, &mut |s| got.push(s.payload.to_vec())) {
                Outcome::Tcp => None,
                Outcome::Skipped(s) => Some(s),
            }
        };
        assert_eq!(
            feed(&mut d, &ipv4_frag(9, 0, true, &tcp[..32]), &mut got),
            Some(Skip::FragmentHeld)
        );
        // a second copy of bytes 24..40 that says something else
        let mut forged = tcp[24..40].to_vec();
        forged[2] = b'X';
        assert_eq!(
            feed(&mut d, &ipv4_frag(9, 24, true, &forged), &mut got),
            Some(Skip::FragmentOverlapConflict)
        );
        assert!(Skip::FragmentOverlapConflict.is_anomaly());
        assert_eq!(d.frags.stats.overlap_conflicts, 1);
        assert!(got.is_empty());
        // the same overlap with the same bytes reassembles
        let mut d = Decoder::new(DecodeConfig::default());
        assert_eq!(
            feed(&mut d, &ipv4_frag(9, 0, true, &tcp[..32]), &mut got),
            Some(Skip::FragmentHeld)
        );
        assert_eq!(
            feed(&mut d, &ipv4_frag(9, 24, true, &tcp[24..40]), &mut got),
            Some(Skip::FragmentHeld)
        );
        assert_eq!(feed(&mut d, &ipv4_frag(9, 40, false, &tcp[40..]), &mut got), None);
        assert_eq!(got, vec![tcp[20..].to_vec()]);
    }

    /// Set the TCP checksum of an Ethernet/IPv4/TCP frame built by [`eth_ipv4_tcp`] (the
    /// reference one's complement sum, 16 bits at a time, as RFC 1071 writes it).
    fn with_checksum(mut f: Vec<u8>) -> Vec<u8> {
        let tcp_at = 14 + 20;
        let len = f.len() - tcp_at;
        let mut sum: u32 = 6 + len as u32;
        let mut words: Vec<u8> = f[26..34].to_vec();
        words.extend(&f[tcp_at..]);
        if words.len() % 2 == 1 {
            words.push(0);
        }
        for w in words.chunks(2) {
            sum += u16::from_be_bytes([w[0], w[1]]) as u32;
        }
        while sum >> 16 != 0 {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        let c = !(sum as u16);
        f[tcp_at + 16..tcp_at + 18].copy_from_slice(&c.to_be_bytes());
        f
    }

    fn decode_all(cfg: DecodeConfig, frames: &[Vec<u8>]) -> (usize, Decoder) {
        let mut d = Decoder::new(cfg);
        let mut n = 0;
        for f in frames {
            let fr = Frame {
                ts: 1,
                linktype: 1,
                data: f,
                orig_len: f.len() as u32,
            };
            d.decode(&fr, &mut |_| n += 1);
        }
        (n, d)
    }

    #[test]
    fn tcp_checksum_matches_the_reference_sum() {
        for len in [0usize, 1, 2, 3, 7, 1448] {
            let payload: Vec<u8> = (0..len).map(|i| (i * 31 + 7) as u8).collect();
            let f = with_checksum(eth_ipv4_tcp([10, 0, 0, 1], [10, 0, 0, 2], 1234, 80, 99, 0x18, &payload));
            assert!(
                tcp_checksum_valid(v4([10, 0, 0, 1]), v4([10, 0, 0, 2]), &f[34..]),
                "len {len}"
            );
            let mut bad = f.clone();
            let last = bad.len() - 1;
            bad[last] ^= 0x40;
            assert!(
                !tcp_checksum_valid(v4([10, 0, 0, 1]), v4([10, 0, 0, 2]), &bad[34..]),
                "len {len}"
            );
        }
    }

    #[test]
    fn bad_checksum_segment_is_refused_where_the_mirror_has_good_ones() {
        let good: Vec<Vec<u8>> = (0..100u32)
            .map(|i| with_checksum(eth_ipv4_tcp([10, 0, 0, 1], [10, 0, 0, 2], 1234, 80, i, 0x18, b"data")))
            .collect();
        let mut forged = with_checksum(eth_ipv4_tcp([10, 0, 0, 1], [10, 0, 0, 2], 1234, 80, 500, 0x18, b"evil"));
        let n = forged.len();
        forged[n - 1] = b'L';
        let mut frames = good.clone();
        frames.push(forged.clone());
        // yes: refused; auto: refused once the capture showed good checksums; no: taken
        for (mode, want, refused) in [
            (ChecksumMode::Yes, 100, 1),
            (ChecksumMode::Auto, 100, 1),
            (ChecksumMode::No, 101, 0),
        ] {
            let cfg = DecodeConfig {
                checksums: mode,
                ..DecodeConfig::default()
            };
            let (n, d) = decode_all(cfg, &frames);
            assert_eq!(n, want, "{mode:?}");
            assert_eq!(d.stats.skipped[Skip::TcpBadChecksum as usize], refused, "{mode:?}");
        }
    }

    #[test]
    fn auto_checksums_stop_on_a_capture_of_offloaded_checksums() {
        // every checksum wrong (offloaded at the sender): auto takes everything
        let frames: Vec<Vec<u8>> = (0..300u32)
            .map(|i| eth_ipv4_tcp([10, 0, 0, 1], [10, 0, 0, 2], 1234, 80, i, 0x18, b"data"))
            .collect();
        let (n, d) = decode_all(DecodeConfig::default(), &frames);
        assert_eq!(n, 300);
        assert!(!d.stats.checksum_validation);
        // good at first, then offloaded: a run of bad ones switches validation off
        let mut frames: Vec<Vec<u8>> = (0..100u32)
            .map(|i| with_checksum(eth_ipv4_tcp([10, 0, 0, 1], [10, 0, 0, 2], 1234, 80, i, 0x18, b"data")))
            .collect();
        frames.extend((0..100u32).map(|i| eth_ipv4_tcp([10, 0, 0, 1], [10, 0, 0, 2], 1234, 80, i, 0x18, b"data")));
        let (n, d) = decode_all(DecodeConfig::default(), &frames);
        assert_eq!(n, 200 - AUTO_BAD_RUN as usize);
        assert!(!d.stats.checksum_validation);
    }

    #[test]
    fn offloaded_partial_checksum_is_taken_by_auto_and_refused_by_yes() {
        let mut frames: Vec<Vec<u8>> = (0..100u32)
            .map(|i| with_checksum(eth_ipv4_tcp([10, 0, 0, 1], [10, 0, 0, 2], 1234, 80, i, 0x18, b"data")))
            .collect();
        // a super-segment sent by the capturing host: its checksum field holds the pseudo-header
        // sum (192.168.56.101 -> .1, 2928 bytes of TCP: 0xfd2d, as in a real capture)
        let mut tso = eth_ipv4_tcp(
            [192, 168, 56, 101],
            [192, 168, 56, 1],
            443,
            49368,
            3066,
            0x10,
            &[7u8; 2908],
        );
        tso[34 + 16..34 + 18].copy_from_slice(&0xfd2du16.to_be_bytes());
        assert_eq!(
            tcp_checksum(v4([192, 168, 56, 101]), v4([192, 168, 56, 1]), &tso[34..]),
            Checksum::Partial
        );
        frames.push(tso);
        // and a small one: 10.0.0.1 -> 10.0.0.2, 24 bytes of TCP: pseudo-header sum 0x1421
        let mut small = eth_ipv4_tcp([10, 0, 0, 1], [10, 0, 0, 2], 1234, 80, 200, 0x18, b"tiny");
        small[34 + 16..34 + 18].copy_from_slice(&0x1421u16.to_be_bytes());
        frames.push(small);
        let (n, d) = decode_all(DecodeConfig::default(), &frames);
        assert_eq!((n, d.stats.checksum_offloaded, d.stats.checksum_bad), (102, 2, 0));
        let cfg = DecodeConfig {
            checksums: ChecksumMode::Yes,
            ..DecodeConfig::default()
        };
        assert_eq!(decode_all(cfg, &frames).0, 100);
    }

    #[test]
    fn super_segment_of_the_capturing_host_is_not_checked_by_auto() {
        let mut frames: Vec<Vec<u8>> = (0..100u32)
            .map(|i| with_checksum(eth_ipv4_tcp([10, 0, 0, 1], [10, 0, 0, 2], 1234, 80, i, 0x18, b"data")))
            .collect();
        // GRO on the receiving host merged two segments: the checksum field is the first one's
        let mut gro = with_checksum(eth_ipv4_tcp(
            [10, 0, 0, 2],
            [10, 0, 0, 1],
            80,
            1234,
            7,
            0x10,
            &[1u8; 2896],
        ));
        let n = gro.len();
        gro[n - 1] = 2;
        frames.push(gro);
        let (n, d) = decode_all(DecodeConfig::default(), &frames);
        assert_eq!((n, d.stats.checksum_offloaded, d.stats.checksum_bad), (101, 1, 0));
        let cfg = DecodeConfig {
            checksums: ChecksumMode::Yes,
            ..DecodeConfig::default()
        };
        assert_eq!(decode_all(cfg, &frames).0, 100);
    }

    /// The 16-bit one's complement sum of RFC 793, word by word, as the reference.
    fn reference_checksum(src: IpAddr, dst: IpAddr, tcp: &[u8]) -> Checksum {
        let mut pseudo = Vec::new();
        for a in [src, dst] {
            match a {
                IpAddr::V4(a) => pseudo.extend_from_slice(&a.octets()),
                IpAddr::V6(a) => pseudo.extend_from_slice(&a.octets()),
            }
        }
        let mut sum: u32 = 6 + (tcp.len() as u32 >> 16) + (tcp.len() as u32 & 0xffff);
        let words = |d: &[u8], sum: &mut u32| {
            for w in d.chunks(2) {
                *sum += u32::from(w[0]) << 8 | u32::from(*w.get(1).unwrap_or(&0));
                *sum = (*sum & 0xffff) + (*sum >> 16);
            }
        };
        words(&pseudo, &mut sum);
        let p = sum as u16;
        words(tcp, &mut sum);
        if sum == 0xffff {
            Checksum::Good
        } else if tcp.len() >= 18 && u16::from_be_bytes([tcp[16], tcp[17]]) == p {
            Checksum::Partial
        } else {
            Checksum::Bad
        }
    }

    /// The 128-bit little-endian sum gives the big-endian word sum, on every length (odd ones
    /// too), random bytes, all-zero and all-0xff segments, right and wrong checksums.
    #[test]
    fn fast_checksum_sum_agrees_with_the_word_by_word_reference() {
        let mut seed = 0x1234_5678_u64;
        let mut next = move || {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (seed >> 33) as u32
        };
        let addrs = [
            (v4([10, 0, 0, 1]), v4([10, 0, 0, 2])),
            (v4([255, 255, 255, 255]), v4([0, 0, 0, 0])),
            (
                v6([0xfe; 16]),
                v6([0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]),
            ),
        ];
        let mut tried = [0usize; 3];
        for len in (0..700).chain([1447, 1448, 1460, 9000, 65535, 65536 + 33]) {
            for fill in 0..4 {
                let mut d: Vec<u8> = match fill {
                    0 => (0..len).map(|_| next() as u8).collect(),
                    1 => vec![0; len],
                    2 => vec![0xff; len],
                    _ => (0..len).map(|i| if i % 3 == 0 { 0xff } else { next() as u8 }).collect(),
                };
                assert_eq!(data_sum(&d), fold(ones_sum(0, &d)), "len {len} fill {fill}");
                let (s, t) = addrs[(len + fill) % 3];
                // a right checksum, a pseudo-header-only one, and the field as it was
                if len >= 18 {
                    match next() % 3 {
                        0 => {
                            d[16] = 0;
                            d[17] = 0;
                            let mut sum = 6 + (len as u64 >> 16) + (len as u64 & 0xffff);
                            for a in [s, t] {
                                sum = match a {
                                    IpAddr::V4(a) => ones_sum(sum, &a.octets()),
                                    IpAddr::V6(a) => ones_sum(sum, &a.octets()),
                                };
                            }
                            let c = !fold(ones_sum(sum, &d));
                            d[16..18].copy_from_slice(&c.to_be_bytes());
                        }
                        1 => {
                            let mut sum = 6 + (len as u64 >> 16) + (len as u64 & 0xffff);
                            for a in [s, t] {
                                sum = match a {
                                    IpAddr::V4(a) => ones_sum(sum, &a.octets()),
                                    IpAddr::V6(a) => ones_sum(sum, &a.octets()),
                                };
                            }
                            d[16..18].copy_from_slice(&fold(sum).to_be_bytes());
                        }
                        _ => {}
                    }
                }
                let want = reference_checksum(s, t, &d);
                tried[want as usize] += 1;
                assert_eq!(tcp_checksum(s, t, &d), want, "len {len} fill {fill}");
            }
        }
        assert!(tried.iter().all(|n| *n > 50), "{tried:?}");
    }

    /// The four-step fold is the fold-until-it-fits loop, on edge values (0, carries into
    /// every 16-bit lane, all ones) and random ones.
    #[test]
    fn fixed_fold_is_the_loop() {
        fn by_loop(mut acc: u64) -> u16 {
            while acc >> 16 != 0 {
                acc = (acc & 0xffff) + (acc >> 16);
            }
            acc as u16
        }
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut edge = vec![0, 1, 0xffff, 0x1_0000, 0x1_fffe, 0x1_ffff, u64::MAX, u64::MAX - 1];
        for sh in 0..64 {
            edge.extend([1 << sh, (1 << sh) - 1, u64::MAX >> sh, u64::MAX << sh]);
        }
        for i in 0..100_000 {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let x = if i < edge.len() {
                edge[i]
            } else {
                seed >> (seed as u32 % 48)
            };
            assert_eq!(fold(x), by_loop(x), "{x:#x}");
        }
    }
}
