//! Community ID v1 (https://github.com/corelight/community-id-spec): a flow hash that Zeek,
//! Suricata and most SIEMs compute the same way, so apitap events join theirs.

use std::net::IpAddr;

use base64::Engine;

fn bytes(ip: &IpAddr) -> ([u8; 16], usize) {
    let mut b = [0u8; 16];
    match ip {
        IpAddr::V4(v) => {
            b[..4].copy_from_slice(&v.octets());
            (b, 4)
        }
        IpAddr::V6(v) => {
            b.copy_from_slice(&v.octets());
            (b, 16)
        }
    }
}

/// `1:<base64(sha1(seed, saddr, daddr, proto, 0, sport, dport))>` with the endpoints ordered.
pub fn v1(seed: u16, src: IpAddr, dst: IpAddr, proto: u8, sport: u16, dport: u16) -> String {
    let (sb, sl) = bytes(&src);
    let (db, dl) = bytes(&dst);
    let ordered = (&sb[..sl], sport) <= (&db[..dl], dport);
    let (a, al, ap, b, bl, bp) = if ordered {
        (sb, sl, sport, db, dl, dport)
    } else {
        (db, dl, dport, sb, sl, sport)
    };
    let mut h = sha1_smol::Sha1::new();
    h.update(&seed.to_be_bytes());
    h.update(&a[..al]);
    h.update(&b[..bl]);
    h.update(&[proto, 0]);
    h.update(&ap.to_be_bytes());
    h.update(&bp.to_be_bytes());
    format!(
        "1:{}",
        base64::engine::general_purpose::STANDARD.encode(h.digest().bytes())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_spec_vector_in_both_directions() {
        // Test vector from the Community ID spec's baseline (tcp.pcap).
        let a: IpAddr = "128.232.110.120".parse().unwrap();
        let b: IpAddr = "66.35.250.204".parse().unwrap();
        assert_eq!(v1(0, a, b, 6, 34855, 80), "1:LQU9qZlK+B5F3KDmev6m5PMibrg=");
        assert_eq!(v1(0, b, a, 6, 80, 34855), "1:LQU9qZlK+B5F3KDmev6m5PMibrg=");
    }
}
