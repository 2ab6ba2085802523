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
pub const URLISH: [&str; 16] = [
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
/// Does a parameter name hold one of [`URLISH`]? One pass over the name (it is asked for
/// most JSON values, and sixteen substring searches cost more than the rest of the value).
pub fn urlish(name: &str) -> bool {
    static AC: std::sync::LazyLock<Option<aho_corasick::AhoCorasick>> =
        std::sync::LazyLock::new(|| aho_corasick::AhoCorasick::new(URLISH).ok());
    match &*AC {
        Some(ac) => ac.is_match(name),
        None => URLISH.iter().any(|u| name.contains(u)),
    }
}

const HOSTS: [&str; 6] = [
    "localhost",
    "metadata.google.internal",
    "metadata",
    "instance-data",
    "kubernetes.default",
    "metadata.azure.com",
];

/// Cloud metadata services: the SSRF target that matters most, wherever it is named.
const METADATA: [&str; 6] = [
    "169.254.169.254",
    "fd00:ec2::254",
    "100.100.100.200",
    "metadata.google.internal",
    "metadata.azure.com",
    "instance-data",
];

/// The request headers this classifier reads (lowercase): context (`referer`, `origin`) and
/// the ones proxies route by.
pub const READS_HEADERS: [&str; 5] = [
    "referer",
    "origin",
    "x-forwarded-host",
    "x-original-url",
    "x-rewrite-url",
];

/// Where SSRF is looked for, per input (documented in the README, "Detections"):
/// - query and body parameters: a URL (any parameter) or a host (URL-ish names) that points
///   inside, unless it names the site itself (the request's Host or server address on a web
///   port, or a configured site origin): a link back to the site is not a probe;
/// - `X-Forwarded-Host`, `X-Original-URL`, `X-Rewrite-URL` (routing headers some proxies and
///   frameworks act on): the same test;
/// - `Referer` and `Origin` are context a browser sends about the page it is on, and intranet
///   pages are private addresses: only a dangerous scheme or a cloud metadata address there;
/// - other headers: never (payloads in them are the injection classifiers' business).
pub fn scan(inputs: &Inputs) -> Option<String> {
    for (at, text) in &inputs.parts {
        // the name after the label's last colon (labels are short: a plain loop, not a vector
        // search and its setup); read before the value only for a header, else after the
        // value could be a target (most are not)
        let name_of = || {
            at.bytes()
                .rposition(|b| b == b':')
                .map_or(at.as_ref(), |i| &at[i + 1..])
        };
        let header = at.starts_with("header:");
        let known = if header {
            let name = name_of();
            if !READS_HEADERS.contains(&name) {
                continue;
            }
            Some(name)
        } else {
            None
        };
        if !may_target(text) {
            continue; // neither a URL nor a host: most values, one byte search
        }
        let name = known.unwrap_or_else(name_of);
        let context_header = header && matches!(name, "referer" | "origin");
        // the name only matters for a bare host (target's one use of it): asked last
        let urlish_name = !context_header && looks_like_host(text.trim()) && urlish(name);
        let Some(t) = target(text, urlish_name) else {
            continue;
        };
        let hit = if context_header {
            // `Origin: file://` or `null` is what a local app or file page sends
            t.metadata || (t.dangerous_scheme && name == "referer")
        } else {
            t.dangerous_scheme || t.metadata || !inputs.is_site(&t.host, t.port)
        };
        if hit {
            return Some(format!("{at}: {}", excerpt(text)));
        }
    }
    None
}

/// Could [`target`] find anything in `v`, under any name? A URL needs a colon, a host that
/// [`looks_like_host`] a dot, a colon or a bracket, unless it is a bare internal name
/// (`localhost`, `metadata`, `instance-data`). False proves `target` answers `None`.
pub(super) fn may_target(v: &str) -> bool {
    // values are short: a plain loop, not a vector search and its setup
    may_target_with(v, v.bytes().any(|b| matches!(b, b':' | b'.' | b'[')))
}

/// [`may_target`] of a value whose byte classes ([`super::class::of`]) are `c`: the table pass
/// already made tells whether it holds a `:`, `.` or `[`, so no second walk over its bytes.
pub(super) fn may_target_classed(v: &str, c: u16) -> bool {
    may_target_with(v, c & super::class::TARGET != 0)
}

/// [`may_target`], told whether `v` holds a `:`, `.` or `[`.
#[inline]
fn may_target_with(v: &str, target_byte: bool) -> bool {
    if target_byte {
        return true;
    }
    match v.as_bytes().first() {
        // an ASCII first byte that is no space starts the trimmed value: every internal name
        // starts with `l`, `m`, `i` or `k`
        Some(&b) if b.is_ascii() && !(b as char).is_whitespace() && !matches!(b, b'l' | b'm' | b'i' | b'k') => false,
        _ => {
            let t = v.trim();
            let h = t.split(['/', '?', '#']).next().unwrap_or("");
            HOSTS.contains(&h)
        }
    }
}

/// What an internal URL or host value points at.
#[derive(Debug, PartialEq, Eq)]
pub struct Target {
    pub host: String,
    /// The explicit port, else the scheme's (80 for http, 443 for https), else none.
    pub port: Option<u16>,
    pub dangerous_scheme: bool,
    pub metadata: bool,
}

/// The value as evidence: credentials in the URL replaced, at most 96 characters.
fn excerpt(s: &str) -> String {
    super::strip_userinfo(s)
        .chars()
        .take(96)
        .filter(|c| !c.is_control())
        .collect()
}

/// Does `v` (lowercased) point inside?
pub fn internal(v: &str, urlish_name: bool) -> bool {
    target(v, urlish_name).is_some()
}

fn looks_like_host(v: &str) -> bool {
    let h = v.split(['/', '?', '#']).next().unwrap_or("");
    h.starts_with('[')
        || HOSTS.iter().any(|n| {
            h.strip_prefix(n)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with(':'))
        })
        || (h.contains(['.', ':']) && h.bytes().any(|b| b.is_ascii_digit() || b.is_ascii_alphabetic()))
}

/// `v` (lowercased) as a URL (or, for a URL-ish parameter name, a bare host) that points inside
/// or uses a dangerous scheme; `None` for anything else.
pub fn target(v: &str, urlish_name: bool) -> Option<Target> {
    let v = v.trim();
    // a scheme and `://` both need a colon; without one only a bare host under a URL-ish
    // name is left (most values: one byte search and done)
    if !urlish_name && memchr::memchr(b':', v.as_bytes()).is_none() {
        return None;
    }
    if SCHEMES.iter().any(|s| v.starts_with(s)) {
        return Some(Target {
            host: String::new(),
            port: None,
            dangerous_scheme: true,
            metadata: false,
        });
    }
    let (scheme, rest) = match v.split_once("://") {
        Some((scheme, rest)) if scheme.chars().all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c)) => {
            (scheme, rest)
        }
        // a bare value under a URL-ish name must look like a host: a dotted address or name,
        // `host:port`, a bracketed IPv6 literal or a known internal name (`color_link=000000`
        // and `targetflags=0` are not addresses)
        _ if urlish_name && looks_like_host(v) => ("", v),
        _ => return None,
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let hostport = authority.rsplit('@').next().unwrap_or("");
    let (host, port) = if let Some(h) = hostport.strip_prefix('[') {
        let (h, after) = h.split_once(']').unwrap_or((h, ""));
        (h, after.strip_prefix(':'))
    } else {
        match hostport.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        }
    };
    let host = host.trim_end_matches('.');
    if !internal_host(host) {
        return None;
    }
    let port = match port {
        Some(p) => p.parse().ok(),
        None => match scheme {
            "http" | "ws" => Some(80),
            "https" | "wss" => Some(443),
            _ => None,
        },
    };
    let canon = canonical_host(host);
    Some(Target {
        metadata: METADATA.contains(&canon.as_str()) || METADATA.contains(&host),
        host: canon,
        port,
        dangerous_scheme: false,
    })
}

/// An address in its usual text form (`0x7f000001` and `127.1` -> `127.0.0.1`), a name as is.
pub fn canonical_host(h: &str) -> String {
    if let Ok(a) = h.parse::<Ipv6Addr>() {
        return match a.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => a.to_string(),
        };
    }
    match parse_v4_loose(h) {
        Some(a) => a.to_string(),
        None => h.to_string(),
    }
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
        // numbers and flags under URL-ish names are not addresses
        for v in ["000000", "0", "1", "2130706433", "ff0000"] {
            assert!(!internal(v, true), "{v}");
        }
        assert!(internal("127.0.0.1:6379", true));
        assert!(internal("[::1]", true));
        assert!(internal("metadata", true));
    }

    #[test]
    fn a_local_apps_origin_is_not_a_probe() {
        let site = [("192.168.43.1", 80)];
        assert_eq!(scan(&inputs(&[("header:origin", "file://")], &site)), None);
        assert_eq!(scan(&inputs(&[("query:color_link", "000000")], &site)), None);
        assert_eq!(scan(&inputs(&[("body:targetstoreflags", "0")], &site)), None);
    }

    fn inputs<'a>(parts: &[(&str, &'a str)], site: &[(&str, u16)]) -> Inputs<'a> {
        Inputs {
            parts: parts.iter().map(|(a, b)| (a.to_string().into(), (*b).into())).collect(),
            site: site.iter().map(|(h, p)| (h.to_string(), *p)).collect(),
            site_from: None,
            ua_tool: None,
        }
    }

    #[test]
    fn referer_and_origin_naming_the_site_are_context_not_targets() {
        let site = [("10.77.0.10", 80)];
        for (h, v) in [
            ("header:referer", "http://10.77.0.10/"),
            ("header:referer", "http://10.77.0.10/shop/cart?x=1"),
            ("header:origin", "http://10.77.0.10"),
            // an intranet page linking to another intranet site, and a developer's local app
            (
                "header:referer",
                "http://splunk.corp.internal:8000/en-us/app/launcher/home",
            ),
            ("header:referer", "http://192.168.1.20/sites/team/default.aspx"),
            ("header:origin", "http://localhost:3000"),
        ] {
            assert_eq!(scan(&inputs(&[(h, v)], &site)), None, "{h}: {v}");
        }
        // but a metadata address or a dangerous scheme is a probe wherever it sits
        assert!(scan(&inputs(&[("header:referer", "http://169.254.169.254/latest/")], &site)).is_some());
        assert!(scan(&inputs(&[("header:referer", "gopher://127.0.0.1:6379/_x")], &site)).is_some());
    }

    #[test]
    fn a_link_back_to_the_site_is_not_a_probe() {
        let site = [("10.77.0.10", 80)];
        for v in [
            "http://10.77.0.10/cart",
            "https://10.77.0.10/cart",
            "http://10.77.0.10:80/x",
            "10.77.0.10",
        ] {
            assert_eq!(scan(&inputs(&[("query:next", v)], &site)), None, "{v}");
            assert_eq!(scan(&inputs(&[("body:callback_url", v)], &site)), None, "{v}");
        }
        // another port on the site's own address, another internal host, loopback: probes
        for v in [
            "http://10.77.0.10:6379/",
            "http://10.77.0.11/",
            "http://127.0.0.1/admin",
        ] {
            assert!(scan(&inputs(&[("query:url", v)], &site)).is_some(), "{v}");
        }
        // the metadata service never belongs to the site
        let meta_site = [("169.254.169.254", 80)];
        assert!(
            scan(&inputs(
                &[("query:url", "http://169.254.169.254/latest/meta-data/")],
                &meta_site
            ))
            .is_some()
        );
    }

    #[test]
    fn evidence_never_quotes_credentials() {
        let inputs = Inputs {
            parts: vec![("query:webhook".into(), "http://admin:s3cret@10.0.0.5/x".into())],
            ..Inputs::default()
        };
        let e = scan(&inputs).expect("ssrf");
        assert!(!e.contains("s3cret") && e.contains("***@10.0.0.5"), "{e}");
    }
}

#[cfg(test)]
mod urlish_tests {
    #[test]
    fn urlish_is_any_urlish_substring() {
        for n in [
            "url",
            "callback_url",
            "redirect_uri",
            "x",
            "",
            "webhookTarget",
            "hostname",
            "nexturl",
            "page",
            "dst",
            "Host",
        ] {
            assert_eq!(super::urlish(n), super::URLISH.iter().any(|u| n.contains(u)), "{n}");
        }
    }
}

/// The prefilter against the parse it skips: the same answers with and without it.
#[cfg(test)]
mod prefilter_tests {
    use super::*;

    const VALUES: [&str; 44] = [
        "",
        " ",
        "x",
        "localhost",
        " localhost ",
        "localhost/x",
        "localhost?x",
        "localhost#x",
        "LOCALHOST",
        "metadata",
        "metadata/computemetadata",
        "instance-data",
        "instance-data/latest",
        "kubernetes",
        "local",
        "localhostx",
        "xlocalhost",
        "127.0.0.1",
        "10.0.0.1:80",
        "[::1]",
        "[::ffff:127.0.0.1]:80",
        "::1",
        "2130706433",
        "0x7f000001",
        "http://127.0.0.1/",
        "file:///etc/passwd",
        "gopher://x",
        "dict:x",
        "example.com",
        "http://example.com",
        "a.b",
        "/api/v1/users/97118",
        "shop-client/2.0",
        "application/json",
        "000000",
        "metadata.google.internal",
        "kubernetes.default",
        "x.localhost",
        "svc.internal",
        "printer.local",
        "\u{3000}localhost\u{3000}",
        "localhost\t",
        "ｌocalhost",
        "instance-data\n",
    ];

    #[test]
    fn values_the_prefilter_drops_have_no_target() {
        for v in VALUES {
            if !may_target(v) {
                for urlish_name in [false, true] {
                    assert_eq!(target(v, urlish_name), None, "{v:?}");
                }
                assert!(!looks_like_host(v.trim()), "{v:?}");
            }
        }
        // what it keeps: every form the parse knows
        for v in ["localhost", " metadata", "instance-data/x", "127.1", "[::1]", "a:b"] {
            assert!(may_target(v), "{v:?}");
        }
    }

    #[test]
    fn may_target_is_the_byte_search_and_the_bare_name_rule() {
        let slow = |v: &str| {
            memchr::memchr3(b':', b'.', b'[', v.as_bytes()).is_some() || {
                let h = v.trim().split(['/', '?', '#']).next().unwrap_or("");
                HOSTS.contains(&h)
            }
        };
        let mut all: Vec<String> = VALUES.iter().map(|v| v.to_string()).collect();
        for h in HOSTS {
            for pre in ["", " ", "\t", "\u{b}", "\u{c}", "\r\n", "\u{a0}", "\u{2003}", "x", "/"] {
                for post in ["", " ", "/a", "?q", "#f", "x", "\u{b}"] {
                    all.push(format!("{pre}{h}{post}"));
                }
            }
        }
        for v in &all {
            assert_eq!(may_target(v), slow(v), "{v:?}");
        }
        for n in HOSTS {
            assert!(matches!(n.as_bytes()[0], b'l' | b'm' | b'i' | b'k'), "{n}");
        }
    }

    #[test]
    fn scan_with_the_prefilter_is_scan_without() {
        let names = [
            "query:url",
            "query:next",
            "query:q",
            "body:callback_url",
            "body:host",
            "body:x",
            "path",
            "header:referer",
            "header:origin",
            "header:x-forwarded-host",
            "header:user-agent",
            "query-name",
        ];
        let sites: [&[(&str, u16)]; 2] = [&[], &[("127.0.0.1", 80), ("localhost", 80)]];
        for site in sites {
            for n in names {
                for v in VALUES {
                    let i = Inputs {
                        parts: vec![(n.to_string().into(), v.into())],
                        site: site.iter().map(|(h, p)| (h.to_string(), *p)).collect(),
                        site_from: None,
                        ua_tool: None,
                    };
                    assert_eq!(scan(&i), scan_unfiltered(&i), "{n} {v:?}");
                }
            }
        }
    }

    fn scan_unfiltered(inputs: &Inputs) -> Option<String> {
        for (at, text) in &inputs.parts {
            // labels are short: a plain loop, not a vector search and its setup
            let name = at
                .bytes()
                .rposition(|b| b == b':')
                .map_or(at.as_ref(), |i| &at[i + 1..]);
            let header = at.starts_with("header:");
            if header && !READS_HEADERS.contains(&name) {
                continue;
            }
            let context_header = header && matches!(name, "referer" | "origin");
            // the name only matters for a bare host (target's one use of it): asked last
            let urlish_name = !context_header && looks_like_host(text.trim()) && urlish(name);
            let Some(t) = target(text, urlish_name) else {
                continue;
            };
            let hit = if context_header {
                // `Origin: file://` or `null` is what a local app or file page sends
                t.metadata || (t.dangerous_scheme && name == "referer")
            } else {
                t.dangerous_scheme || t.metadata || !inputs.is_site(&t.host, t.port)
            };
            if hit {
                return Some(format!("{at}: {}", excerpt(text)));
            }
        }
        None
    }

    #[test]
    fn may_target_from_the_byte_classes_is_may_target() {
        let mut all: Vec<String> = VALUES.iter().map(|v| v.to_string()).collect();
        for b in 0..=255u8 {
            for v in [
                vec![b],
                vec![b'x', b],
                vec![b'l', b'o', b, b'c'],
                b"localhost".iter().copied().chain([b]).collect(),
            ] {
                all.push(String::from_utf8_lossy(&v).into_owned());
            }
        }
        for h in HOSTS {
            for pre in ["", " ", "\u{a0}", "x"] {
                for post in ["", "/a", ".", ":8", "[", "\u{2003}"] {
                    all.push(format!("{pre}{h}{post}"));
                }
            }
        }
        for v in &all {
            let c = crate::detect::class::of(v.as_bytes());
            assert_eq!(may_target_classed(v, c), may_target(v), "{v:?}");
        }
    }
}
