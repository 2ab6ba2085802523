//! SSRF: a parameter whose value is a URL (or, for URL-ish parameter names, a host) that points
//! at loopback, private, link-local, CGNAT or cloud-metadata addresses, or uses a scheme that
//! reaches internal services (`file:`, `gopher:`, `dict:`, `ldap:`, `tftp:`, `jar:`, `netdoc:`).
//! Obfuscated address forms are undone first: decimal (`2130706433`), hex (`0x7f000001`),
//! octal (`0177.0.0.1`), short (`127.1`), IPv4-mapped IPv6 (`[::ffff:127.0.0.1]`), userinfo
//! tricks (`http://good.example@127.0.0.1/`).

use std::net::{Ipv4Addr, Ipv6Addr};

use super::Inputs;

const SCHEMES: [&str; 8] = [
    "file:", "gopher:", "dict:", "ldap:", "tftp:", "jar:", "netdoc:", "expect:",
];
const URLISH: [&str; 16] = [
    "url",
    "uri",
    "link",
    "href",
    "src",
    "callback",
    "webhook",
    "dest",
    "destination",
    "redirect",
    "target",
    "host",
    "domain",
    "endpoint",
    "proxy",
    "next",
];
const HOSTS: [&str; 6] = [
    "localhost",
    "metadata.google.internal",
    "metadata",
    "instance-data",
    "kubernetes.default",
    "metadata.azure.com",
];

/// The first value that points inside, as `where: value`.
pub fn scan(inputs: &Inputs) -> Option<String> {
    for (at, text) in &inputs.parts {
        let name = at.rsplit(':').next().unwrap_or("");
        let urlish_name = URLISH.iter().any(|u| name.contains(u));
        if at == "body" {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(text) {
                let mut found = None;
                walk(&v, "", 0, &mut 0, &mut |k, s| {
                    if found.is_none() && internal(s, URLISH.iter().any(|u| k.contains(u))) {
                        found = Some(format!("body.{k}: {}", excerpt(s)));
                    }
                });
                if found.is_some() {
                    return found;
                }
                continue;
            }
        }
        if at.starts_with("header:")
            && !matches!(
                name,
                "x-forwarded-host" | "referer" | "x-original-url" | "x-rewrite-url"
            )
        {
            continue;
        }
        if internal(text, urlish_name) {
            return Some(format!("{at}: {}", excerpt(text)));
        }
    }
    None
}

/// The value as evidence: credentials in the URL replaced, at most 96 characters.
fn excerpt(s: &str) -> String {
    super::strip_userinfo(s)
        .chars()
        .take(96)
        .filter(|c| !c.is_control())
        .collect()
}

fn walk(v: &serde_json::Value, key: &str, depth: usize, budget: &mut usize, f: &mut dyn FnMut(&str, &str)) {
    if depth > 16 || *budget > 512 {
        return;
    }
    *budget += 1;
    match v {
        serde_json::Value::String(s) => f(key, &s.to_lowercase()),
        serde_json::Value::Array(a) => a.iter().for_each(|x| walk(x, key, depth + 1, budget, f)),
        serde_json::Value::Object(o) => o
            .iter()
            .for_each(|(k, x)| walk(x, &k.to_lowercase(), depth + 1, budget, f)),
        _ => {}
    }
}

/// Does `v` (lowercased) point inside?
pub fn internal(v: &str, urlish_name: bool) -> bool {
    let v = v.trim();
    if SCHEMES.iter().any(|s| v.starts_with(s)) {
        return true;
    }
    let rest = match v.split_once("://") {
        Some((scheme, rest)) if scheme.chars().all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c)) => rest,
        _ if urlish_name => v,
        _ => return false,
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let hostport = authority.rsplit('@').next().unwrap_or("");
    let host = if let Some(h) = hostport.strip_prefix('[') {
        h.split(']').next().unwrap_or("")
    } else {
        hostport.split(':').next().unwrap_or("")
    };
    internal_host(host.trim_end_matches('.'))
}

fn internal_host(h: &str) -> bool {
    if h.is_empty() {
        return false;
    }
    if HOSTS.contains(&h) || h.ends_with(".localhost") || h.ends_with(".internal") || h.ends_with(".local") {
        return true;
    }
    if let Ok(a) = h.parse::<Ipv6Addr>() {
        if let Some(v4) = a.to_ipv4_mapped() {
            return internal_v4(v4);
        }
        let s = a.segments();
        return a.is_loopback() || a.is_unspecified() || (s[0] & 0xfe00) == 0xfc00 || (s[0] & 0xffc0) == 0xfe80;
    }
    parse_v4_loose(h).is_some_and(internal_v4)
}

fn internal_v4(a: Ipv4Addr) -> bool {
    let o = a.octets();
    a.is_loopback() || a.is_private() || a.is_link_local() || a.is_unspecified() || (o[0] == 100 && (o[1] & 0xc0) == 64)
}

/// IPv4 as inet_aton reads it: 1 to 4 parts, each decimal, hex (0x) or octal (leading 0).
fn parse_v4_loose(h: &str) -> Option<Ipv4Addr> {
    let parts: Vec<&str> = h.split('.').collect();
    if parts.is_empty() || parts.len() > 4 {
        return None;
    }
    let mut nums = Vec::with_capacity(4);
    for p in &parts {
        let n = if let Some(x) = p.strip_prefix("0x") {
            u64::from_str_radix(x, 16).ok()?
        } else if p.len() > 1 && p.starts_with('0') {
            u64::from_str_radix(&p[1..], 8).ok()?
        } else {
            p.parse::<u64>().ok()?
        };
        nums.push(n);
    }
    let last = *nums.last()?;
    let head = &nums[..nums.len() - 1];
    if head.iter().any(|n| *n > 255) {
        return None;
    }
    let rest_bits = 8 * (4 - head.len() as u32);
    if rest_bits < 64 && last >= (1u64 << rest_bits) {
        return None;
    }
    let mut v: u32 = 0;
    for (i, n) in head.iter().enumerate() {
        v |= (*n as u32) << (24 - 8 * i as u32);
    }
    Some(Ipv4Addr::from(v | last as u32))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_targets_in_every_disguise() {
        for u in [
            "http://169.254.169.254/latest/meta-data/",
            "http://127.0.0.1:8080/admin",
            "http://2130706433/",
            "http://0x7f000001/",
            "http://0177.0.0.1/",
            "http://127.1/",
            "http://[::ffff:127.0.0.1]/",
            "http://[::1]:80/",
            "http://10.1.2.3/",
            "http://good.example@192.168.0.1/",
            "http://metadata.google.internal/computeMetadata/v1/",
            "gopher://127.0.0.1:6379/_flushall",
            "file:///etc/passwd",
            "dict://localhost:11211/stat",
        ] {
            assert!(internal(u, false), "{u}");
        }
        assert!(internal("localhost:6379", true));
    }

    #[test]
    fn external_and_non_urls_pass() {
        for u in [
            "https://example.com/hook",
            "http://93.184.216.34/",
            "https://hooks.slack.com/services/x",
            "127.0.0.1",
            "hello world",
            "http://8.8.8.8/",
        ] {
            assert!(!internal(u, false), "{u}");
        }
        assert!(!internal("example.com", true));
    }

    #[test]
    fn evidence_never_quotes_credentials() {
        let inputs = Inputs {
            parts: vec![("query:webhook".into(), "http://admin:s3cret@10.0.0.5/x".into())],
        };
        let e = scan(&inputs).expect("ssrf");
        assert!(!e.contains("s3cret") && e.contains("***@10.0.0.5"), "{e}");
    }
}
