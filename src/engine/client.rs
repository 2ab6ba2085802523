//! The client behind a transaction: the TCP peer, or the address a trusted proxy names.

use super::*;

/// A CIDR block of trusted proxies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    bits: u8,
}

impl Cidr {
    pub fn parse(s: &str) -> Option<Cidr> {
        let (a, b) = s.split_once('/').unwrap_or((s, ""));
        let net: IpAddr = a.trim().parse().ok()?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let bits = if b.is_empty() { max } else { b.trim().parse().ok()? };
        (bits <= max).then_some(Cidr { net, bits })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.net, ip) {
            (IpAddr::V4(n), IpAddr::V4(i)) => {
                let m = if self.bits == 0 {
                    0
                } else {
                    u32::MAX << (32 - self.bits as u32)
                };
                (u32::from(n) & m) == (u32::from(i) & m)
            }
            (IpAddr::V6(n), IpAddr::V6(i)) => {
                let m = if self.bits == 0 {
                    0
                } else {
                    u128::MAX << (128 - self.bits as u32)
                };
                (u128::from(n) & m) == (u128::from(i) & m)
            }
            _ => false,
        }
    }
}

/// The client address of a transaction: the TCP peer, or when the peer is a trusted proxy,
/// the right-most address in X-Forwarded-For (or `Forwarded: for=`) that is not itself a
/// trusted proxy (as nginx's `real_ip_recursive`). A header from an untrusted peer is ignored.
pub fn client_ip(meta: &FlowMeta, tx: &Transaction, trusted: &[Cidr]) -> IpAddr {
    if trusted.is_empty() || !trusted.iter().any(|c| c.contains(meta.src)) {
        return meta.src;
    }
    let Some(q) = &tx.request else { return meta.src };
    // Every X-Forwarded-For line, in order, is one list (RFC 9110 §5.3): a proxy such as
    // HAProxy appends its own line, so the first (client-written) line must not win.
    let mut hops: Vec<IpAddr> = Vec::new();
    for x in q.header_values("x-forwarded-for") {
        hops.extend(x.split(',').filter_map(|h| parse_hop(h.trim())));
    }
    if hops.is_empty() {
        for f in q.header_values("forwarded") {
            for el in f.split(',') {
                for pair in el.split(';') {
                    if let Some((k, v)) = pair.trim().split_once('=')
                        && k.trim().eq_ignore_ascii_case("for")
                        && let Some(ip) = parse_hop(v.trim().trim_matches('"'))
                    {
                        hops.push(ip);
                    }
                }
            }
        }
    }
    for h in hops.iter().rev() {
        if !trusted.iter().any(|c| c.contains(*h)) {
            return *h;
        }
    }
    hops.first().copied().unwrap_or(meta.src)
}

fn parse_hop(h: &str) -> Option<IpAddr> {
    if let Ok(ip) = h.parse() {
        return Some(ip);
    }
    if let Some(v6) = h.strip_prefix('[') {
        return v6.split(']').next()?.parse().ok();
    }
    h.rsplit_once(':').and_then(|(a, _)| a.parse().ok())
}
