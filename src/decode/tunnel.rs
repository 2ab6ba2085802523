//! Headers of the tunnels and link layers a mirror brings besides VXLAN/GRE/ERSPAN: GTP-U,
//! Teredo, AYIYA, GRE in UDP, LLC/SNAP, 802.11 data frames (plain or under radiotap).
//!
//! Each function only looks at a header and says where the inner packet starts (a sub-slice of
//! its input) or why there is none; [`super::Decoder`] dispatches and counts. Every read is
//! length-checked: nothing here panics or allocates, whatever the bytes.

use super::Skip;

/// UDP ports: GTP-U (3GPP TS 29.281), Teredo (RFC 4380), AYIYA, GRE in UDP (RFC 8086).
pub const GTPU_PORT: u16 = 2152;
pub const TEREDO_PORT: u16 = 3544;
pub const AYIYA_PORT: u16 = 5072;
pub const GRE_UDP_PORT: u16 = 4754;

/// GTP-U extension headers followed at most (each is at least 4 bytes; a chain longer than
/// this is a crafted packet).
const GTPU_MAX_EXT: usize = 16;

/// What a GTP-U packet carries.
#[derive(Debug, PartialEq, Eq)]
pub enum Gtpu<'a> {
    /// A G-PDU: the user's IP packet.
    Pdu(&'a [u8]),
    /// A signalling message (echo, error indication, end marker): no user data.
    Signalling,
}

/// GTPv1-U (TS 29.281 §5): flags (version 1, PT 1, E/S/PN), type, length, TEID; with any of
/// E/S/PN the 4-byte sequence/N-PDU/next-extension word; then the extension header chain
/// (length in 4-byte units, last byte the next type, 0 ends it).
pub fn gtpu(d: &[u8]) -> Result<Gtpu<'_>, Skip> {
    let h = d.get(..8).ok_or(Skip::TunnelMalformed)?;
    if h[0] >> 5 != 1 || h[0] & 0x10 == 0 {
        // GTP' or version 0/2 on the GTP-U port: not user plane.
        return Err(Skip::TunnelMalformed);
    }
    let len = u16::from_be_bytes([h[2], h[3]]) as usize;
    // Bytes after the mandatory 8; a capture cut short keeps what it has.
    let body = &d[8..(8 + len).min(d.len())];
    let mut p = body;
    if h[0] & 0x07 != 0 {
        let opt = p.get(..4).ok_or(Skip::TunnelMalformed)?;
        let mut next = opt[3];
        p = &p[4..];
        let mut n = 0;
        while next != 0 {
            n += 1;
            if n > GTPU_MAX_EXT {
                return Err(Skip::TunnelMalformed);
            }
            let l = *p.first().ok_or(Skip::TunnelMalformed)? as usize * 4;
            if l == 0 || p.len() < l {
                return Err(Skip::TunnelMalformed);
            }
            next = p[l - 1];
            p = &p[l..];
        }
    }
    match h[1] {
        0xFF => match p.first().map(|b| b >> 4) {
            Some(4) | Some(6) => Ok(Gtpu::Pdu(p)),
            _ => Err(Skip::TunnelMalformed),
        },
        _ => Ok(Gtpu::Signalling),
    }
}

/// Teredo (RFC 4380 §5.1.1): optional authentication indication (0x0001, id-len, au-len,
/// client id, authentication value, 8-byte nonce, confirmation byte), optional origin
/// indication (0x0000, port, address: 8 bytes), then an IPv6 packet whose payload length fits.
/// `None` when the datagram does not look like Teredo (any UDP on the port is not).
pub fn teredo(d: &[u8]) -> Option<&[u8]> {
    let mut p = d;
    if p.starts_with(&[0x00, 0x01]) {
        let h = p.get(..4)?;
        let n = 4 + h[2] as usize + h[3] as usize + 8 + 1;
        p = p.get(n..)?;
    }
    if p.starts_with(&[0x00, 0x00]) {
        p = p.get(8..)?;
    }
    let ip6 = p.get(..40)?;
    if ip6[0] >> 4 != 6 {
        return None;
    }
    let plen = u16::from_be_bytes([ip6[4], ip6[5]]) as usize;
    // The IPv6 packet must be the rest of the datagram (as Suricata checks): a random UDP
    // payload starting with a 6 nibble is not taken for a tunnel.
    if 40 + plen != p.len() {
        return None;
    }
    Some(p)
}

/// AYIYA ("Anything In Anything", SixXS draft): id length/type, signature length/hash,
/// auth method/opcode, next header, epoch; then identity (2^idlen bytes) and signature
/// (siglen * 4 bytes). Opcode 1 (forward) carries IPv4 (4) or IPv6 (41).
pub fn ayiya(d: &[u8]) -> Result<Option<&[u8]>, Skip> {
    let h = d.get(..8).ok_or(Skip::TunnelMalformed)?;
    let idlen = 1usize << (h[0] >> 4);
    let siglen = (h[1] >> 4) as usize * 4;
    let opcode = h[2] & 0x0F;
    let next = h[3];
    let p = d.get(8 + idlen + siglen..).ok_or(Skip::TunnelMalformed)?;
    if opcode != 1 {
        return Ok(None); // heartbeats and queries
    }
    match (next, p.first().map(|b| b >> 4)) {
        (4, Some(4)) | (41, Some(6)) => Ok(Some(p)),
        (4 | 41, _) => Err(Skip::TunnelMalformed),
        _ => Ok(None),
    }
}

/// IEEE 802.2 LLC with a SNAP header (AA AA 03, OUI, type): the ethertype and what follows.
/// `None` for other LLC (spanning tree, NetBIOS...).
pub fn llc_snap(d: &[u8]) -> Result<Option<(u16, &[u8])>, Skip> {
    let h = d.get(..3).ok_or(Skip::LinkTruncated)?;
    if h != [0xAA, 0xAA, 0x03] {
        return Ok(None);
    }
    let s = d.get(3..8).ok_or(Skip::LinkTruncated)?;
    Ok(Some((u16::from_be_bytes([s[3], s[4]]), &d[8..])))
}

/// What an 802.11 frame holds.
#[derive(Debug, PartialEq, Eq)]
pub enum Wifi<'a> {
    /// A data frame's body (LLC/SNAP and the packet).
    Data(&'a [u8]),
    /// A protected (encrypted) data frame: nothing to read without keys.
    Protected,
    /// Management, control, null data and A-MSDU frames.
    Other,
}

/// An IEEE 802.11 MAC frame (no FCS): data and QoS data frames give their body.
pub fn ieee80211(d: &[u8]) -> Result<Wifi<'_>, Skip> {
    let fc = d.get(..2).ok_or(Skip::LinkTruncated)?;
    let ftype = (fc[0] >> 2) & 0x03;
    let subtype = fc[0] >> 4;
    if fc[0] & 0x03 != 0 {
        return Ok(Wifi::Other); // protocol version other than 0
    }
    if ftype != 2 {
        return Ok(Wifi::Other);
    }
    if subtype & 0x04 != 0 {
        return Ok(Wifi::Other); // (QoS) null data: no body
    }
    let (to_ds, from_ds) = (fc[1] & 0x01 != 0, fc[1] & 0x02 != 0);
    let qos = subtype & 0x08 != 0;
    let mut hl = 24;
    if to_ds && from_ds {
        hl += 6; // address 4
    }
    if qos {
        let q = d.get(hl..hl + 2).ok_or(Skip::LinkTruncated)?;
        if q[0] & 0x80 != 0 {
            return Ok(Wifi::Other); // A-MSDU aggregate
        }
        hl += 2;
        if fc[1] & 0x80 != 0 {
            hl += 4; // HT control
        }
    }
    let body = d.get(hl..).ok_or(Skip::LinkTruncated)?;
    if fc[1] & 0x40 != 0 {
        return Ok(Wifi::Protected);
    }
    Ok(Wifi::Data(body))
}

/// A radiotap header (radiotap.org): version 0, length, presence bitmaps. Returns the 802.11
/// frame, without its FCS when the Flags field says one is there, or `None` when the flags
/// mark the FCS bad (the frame was corrupted in the air).
pub fn radiotap(d: &[u8]) -> Result<Option<&[u8]>, Skip> {
    let h = d.get(..8).ok_or(Skip::LinkTruncated)?;
    if h[0] != 0 {
        return Err(Skip::LinkTruncated);
    }
    let len = u16::from_le_bytes([h[2], h[3]]) as usize;
    if len < 8 || d.len() < len {
        return Err(Skip::LinkTruncated);
    }
    let hdr = &d[..len];
    let present = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
    // Skip extended bitmaps (bit 31 chains another 32-bit word).
    let mut off = 8;
    let mut w = present;
    while w & 0x8000_0000 != 0 {
        let x = hdr.get(off..off + 4).ok_or(Skip::LinkTruncated)?;
        w = u32::from_le_bytes([x[0], x[1], x[2], x[3]]);
        off += 4;
    }
    let mut flags = 0u8;
    if present & 0x02 != 0 {
        if present & 0x01 != 0 {
            // TSFT: 8 bytes, 8-aligned
            off = (off + 7) & !7;
            off += 8;
        }
        flags = *hdr.get(off).ok_or(Skip::LinkTruncated)?;
    }
    if flags & 0x40 != 0 {
        return Ok(None); // bad FCS
    }
    let mut f = &d[len..];
    if flags & 0x10 != 0 {
        f = f.get(..f.len().saturating_sub(4)).unwrap_or(&[]);
    }
    Ok(Some(f))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gtpu_with_extension_headers_gives_the_inner_packet() {
        // E flag, seq word with next type 0x85 (PDU session container), one 4-byte ext.
        let inner = [0x45u8, 0, 0, 20];
        let mut g = vec![0x34, 0xFF, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0x85, 1, 0x10, 0x09, 0x00];
        g.extend(inner);
        let n = (g.len() - 8) as u16;
        g[2..4].copy_from_slice(&n.to_be_bytes());
        assert_eq!(gtpu(&g), Ok(Gtpu::Pdu(&inner[..])));
        // an extension of length 0 would loop forever: malformed
        let mut bad = g.clone();
        bad[12] = 0;
        assert_eq!(gtpu(&bad), Err(Skip::TunnelMalformed));
        // echo request
        assert_eq!(gtpu(&[0x32, 1, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0]), Ok(Gtpu::Signalling));
        assert_eq!(gtpu(&[0x30, 0xFF]), Err(Skip::TunnelMalformed));
    }

    #[test]
    fn teredo_origin_and_auth_indications_are_skipped() {
        let mut ip6 = vec![0x60u8, 0, 0, 0, 0, 4, 59, 64];
        ip6.extend([0u8; 32]);
        ip6.extend([1, 2, 3, 4]);
        assert_eq!(teredo(&ip6), Some(&ip6[..]));
        let mut o = vec![0, 0, 0x12, 0x34, 1, 2, 3, 4];
        o.extend(&ip6);
        assert_eq!(teredo(&o), Some(&ip6[..]));
        let mut a = vec![0, 1, 2, 1, 0xaa, 0xbb, 0xcc];
        a.extend([9u8; 9]);
        a.extend(&o);
        assert_eq!(teredo(&a), Some(&ip6[..]));
        // payload length that does not fit: not Teredo
        assert_eq!(teredo(&ip6[..ip6.len() - 1]), None);
        assert_eq!(teredo(&[0, 1, 255, 255]), None);
    }

    #[test]
    fn ayiya_forward_carries_ip() {
        let mut a = vec![0x41u8, 0x52, 0x11, 41, 0, 0, 0, 0];
        a.extend([7u8; 16]); // identity: 2^4 bytes
        a.extend([8u8; 20]); // signature: 5 * 4
        a.extend([0x60, 0, 0, 0]);
        assert_eq!(ayiya(&a), Ok(Some(&[0x60u8, 0, 0, 0][..])));
        a[2] = 0x12; // heartbeat
        assert_eq!(ayiya(&a), Ok(None));
        assert_eq!(ayiya(&a[..30]), Err(Skip::TunnelMalformed));
    }

    #[test]
    fn random_headers_never_panic() {
        let mut x = 0x1234_5678_9ABC_DEF1u64;
        let mut rnd = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..20_000 {
            let n = (rnd() % 96) as usize;
            let b: Vec<u8> = (0..n).map(|_| rnd() as u8 % 16).collect();
            let _ = gtpu(&b);
            let _ = teredo(&b);
            let _ = ayiya(&b);
            let _ = llc_snap(&b);
            let _ = ieee80211(&b);
            let _ = radiotap(&b);
        }
    }

    #[test]
    fn wifi_qos_data_protected_and_radiotap_fcs() {
        // QoS data, FromDS, 24 + 2 bytes
        let mut f = vec![0x88u8, 0x02];
        f.extend([0u8; 22]);
        f.extend([0, 0]);
        f.extend([0xAA, 0xAA, 3, 0, 0, 0, 8, 0, 0x45]);
        let Ok(Wifi::Data(b)) = ieee80211(&f) else {
            panic!("data frame not decoded")
        };
        assert_eq!(llc_snap(b), Ok(Some((0x0800, &[0x45u8][..]))));
        let mut p = f.clone();
        p[1] |= 0x40;
        assert_eq!(ieee80211(&p), Ok(Wifi::Protected));
        assert_eq!(ieee80211(&[0x80, 0]), Ok(Wifi::Other)); // beacon
        // radiotap: present = TSFT | Flags, flags = FCS at end
        let mut r = vec![0u8, 0, 17, 0, 0x03, 0, 0, 0];
        r.extend([0u8; 8]);
        r.push(0x10);
        r.extend(&f);
        r.extend([1, 2, 3, 4]);
        assert_eq!(radiotap(&r), Ok(Some(&f[..])));
        r[16] = 0x50; // bad FCS
        assert_eq!(radiotap(&r), Ok(None));
        assert!(radiotap(&r[..10]).is_err());
    }
}
