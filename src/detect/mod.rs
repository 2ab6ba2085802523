//! Built-in classifiers of one transaction, used by rules as `match = { detector = "NAME" }`.
//!
//! Payload classifiers look at the request as the application would see it: the path, query
//! names and values, header values (not `Authorization` or `Cookie`) and the body, each
//! percent-decoded twice (`%2527` is `'`) with `+` as a space, lowercased. They score evidence
//! and fire on a score, not on one character: a lone apostrophe in `O'Brien` is not SQL
//! injection, `' or 1=1--` is.

pub mod payload;
pub mod ssrf;

use crate::catalog::sensitive::Sensitive;
use crate::http::Transaction;
use crate::redact::percent_decode_lossy;

/// A classifier a rule can ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Detector {
    /// Any of the injection classifiers below.
    Injection,
    Sqli,
    Nosqli,
    Cmdi,
    Traversal,
    Xss,
    Ssti,
    Ldap,
    Jndi,
    /// A parameter carrying a URL or host that points inside (loopback, private, link-local,
    /// metadata) or a dangerous scheme (file:, gopher:, dict:).
    Ssrf,
    /// A known attack tool's user agent.
    ScannerUa,
    /// A login attempt: a request to a login-like endpoint (path ends in login, signin,
    /// token, session, auth, authenticate; method POST).
    Login,
    /// A failed authentication: 401, or a login attempt answered 400/403/422/200 whose body
    /// says the credentials were wrong.
    AuthFailure,
    /// A successful login: a login attempt answered 2xx that is not a failure.
    LoginSuccess,
    /// Sensitive data (e-mail, phone, card, national id, keys) in the response body.
    SensitiveResponse,
    /// A 2xx without credentials on an endpoint whose clients nearly all use credentials (the
    /// catalog's clients with and without, after `auth_bypass_min_calls` calls with).
    AuthBypass,
}

impl Detector {
    pub const NAMES: [&'static str; 16] = [
        "injection",
        "sqli",
        "nosqli",
        "cmdi",
        "traversal",
        "xss",
        "ssti",
        "ldap",
        "jndi",
        "ssrf",
        "scanner_ua",
        "login",
        "auth_failure",
        "login_success",
        "sensitive_response",
        "auth_bypass",
    ];
    const ALL: [Detector; 16] = [
        Detector::Injection,
        Detector::Sqli,
        Detector::Nosqli,
        Detector::Cmdi,
        Detector::Traversal,
        Detector::Xss,
        Detector::Ssti,
        Detector::Ldap,
        Detector::Jndi,
        Detector::Ssrf,
        Detector::ScannerUa,
        Detector::Login,
        Detector::AuthFailure,
        Detector::LoginSuccess,
        Detector::SensitiveResponse,
        Detector::AuthBypass,
    ];

    pub fn parse(s: &str) -> Option<Detector> {
        Detector::NAMES.iter().position(|n| *n == s).map(|i| Detector::ALL[i])
    }

    pub fn as_str(self) -> &'static str {
        Detector::NAMES[self as usize]
    }
}

/// Percent-decode twice and turn `+` into a space, lowercased.
pub fn normalize(s: &str) -> String {
    let once = percent_decode_lossy(&s.replace('+', " ")).into_owned();
    let twice = if once.contains('%') {
        percent_decode_lossy(&once).into_owned()
    } else {
        once
    };
    twice.to_lowercase()
}

/// What the classifiers look at, built once per transaction.
#[derive(Debug, Default)]
pub struct Inputs {
    /// (where, normalized text): `path`, `query:NAME`, `header:NAME`, `body`.
    pub parts: Vec<(String, String)>,
}

/// Headers whose values are credentials: never scanned, never quoted as evidence (with the
/// redactor's API-key headers).
const SECRET_HEADERS: [&str; 4] = ["authorization", "cookie", "proxy-authorization", "x-api-key"];

impl Inputs {
    pub fn of(tx: &Transaction) -> Inputs {
        let mut parts = Vec::new();
        let Some(q) = &tx.request else {
            return Inputs { parts };
        };
        let (path, query) = q.uri.split_once('?').unwrap_or((&q.uri, ""));
        parts.push(("path".to_string(), normalize(path)));
        for (k, v) in crate::redact::query_pairs(query) {
            let k = normalize(k);
            parts.push((format!("query:{k}"), normalize(v)));
            if k.contains(['$', '[', '(', '<', '\'']) {
                parts.push(("query-name".to_string(), k));
            }
        }
        for (n, v) in &q.headers {
            let n = n.to_ascii_lowercase();
            if SECRET_HEADERS.contains(&n.as_str())
                || crate::redact::is_key_header(&n)
                || n == "host"
                || n == "content-length"
            {
                continue;
            }
            parts.push((format!("header:{n}"), normalize(v)));
        }
        if !q.body.is_empty() {
            let text = String::from_utf8_lossy(&q.body);
            let ct = q.header("content-type").unwrap_or("").to_ascii_lowercase();
            if ct.contains("x-www-form-urlencoded") {
                for (k, v) in crate::redact::query_pairs(&text) {
                    parts.push((format!("body:{}", normalize(k)), normalize(v)));
                }
            } else if let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) {
                // JSON: the values the application reads, not the quotes and braces around them
                let mut n = 0;
                json_leaves(&v, "", 0, &mut n, &mut parts);
            } else {
                parts.push(("body".to_string(), text.to_lowercase()));
            }
        }
        Inputs { parts }
    }
}

/// String leaves of a JSON body as `body:KEY` parts (and keys that look like operators, as
/// NoSQL injection puts them), bounded in depth and count.
fn json_leaves(v: &serde_json::Value, key: &str, depth: usize, n: &mut usize, out: &mut Vec<(String, String)>) {
    if depth > 12 || *n > 256 {
        return;
    }
    *n += 1;
    match v {
        serde_json::Value::String(s) => out.push((format!("body:{key}"), normalize(s))),
        serde_json::Value::Array(a) => a.iter().for_each(|x| json_leaves(x, key, depth + 1, n, out)),
        serde_json::Value::Object(o) => {
            for (k, x) in o {
                if k.starts_with('$') {
                    out.push(("body-key".to_string(), format!("{{\"{}\":", k.to_lowercase())));
                }
                json_leaves(x, k, depth + 1, n, out);
            }
        }
        _ => {}
    }
}

/// The classifiers' verdicts on one transaction, with a short evidence string for each.
#[derive(Debug, Default)]
pub struct Verdicts {
    hits: Vec<(Detector, String)>,
}

impl Verdicts {
    pub fn has(&self, d: Detector) -> bool {
        match d {
            Detector::Injection => self.hits.iter().any(|(h, _)| h.is_injection()),
            _ => self.hits.iter().any(|(h, _)| *h == d),
        }
    }

    /// The evidence of `d` (for injection: the first injection classifier that fired).
    pub fn evidence(&self, d: Detector) -> Option<(&'static str, &str)> {
        self.hits
            .iter()
            .find(|(h, _)| *h == d || (d == Detector::Injection && h.is_injection()))
            .map(|(h, e)| (h.as_str(), e.as_str()))
    }

    pub fn names(&self) -> Vec<&'static str> {
        self.hits.iter().map(|(h, _)| h.as_str()).collect()
    }
}

impl Detector {
    fn is_injection(self) -> bool {
        matches!(
            self,
            Detector::Sqli
                | Detector::Nosqli
                | Detector::Cmdi
                | Detector::Traversal
                | Detector::Xss
                | Detector::Ssti
                | Detector::Ldap
                | Detector::Jndi
        )
    }
}

/// Login-like endpoints by their path's last literal segment.
pub fn is_login_path(path: &str) -> bool {
    let last = path
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or("")
        .to_ascii_lowercase();
    let last = last.split(['.', ';']).next().unwrap_or("");
    matches!(
        last,
        "login"
            | "signin"
            | "sign-in"
            | "sign_in"
            | "logon"
            | "token"
            | "session"
            | "sessions"
            | "auth"
            | "authenticate"
            | "oauth2"
            | "j_security_check"
    )
}

/// Words in a response body that say the credentials were wrong.
fn failure_body(body: &[u8]) -> bool {
    let t = String::from_utf8_lossy(&body[..body.len().min(2048)]).to_lowercase();
    [
        "invalid",
        "incorrect",
        "wrong",
        "failed",
        "denied",
        "unauthorized",
        "bad credentials",
        "not match",
    ]
    .iter()
    .any(|w| t.contains(w))
}

/// Run every classifier over one transaction.
pub fn classify(tx: &Transaction, inputs: &Inputs, sensitive: &std::collections::BTreeSet<Sensitive>) -> Verdicts {
    let mut v = Verdicts::default();
    for (d, e) in payload::scan(inputs) {
        v.hits.push((d, e));
    }
    if let Some(e) = ssrf::scan(inputs) {
        v.hits.push((Detector::Ssrf, e));
    }
    let q = tx.request.as_ref();
    if let Some(ua) = q.and_then(|q| q.header("user-agent")) {
        if let Some(tool) = scanner_tool(ua) {
            v.hits.push((Detector::ScannerUa, tool.to_string()));
        }
    }
    let status = tx.response.as_ref().map(|r| r.status).unwrap_or(0);
    // A refresh-token grant (OAuth `grant_type=refresh_token`, no password) renews a session;
    // it is not someone logging in. A stray `refresh_token` field does not switch login
    // detection off.
    let refresh = q.is_some_and(|q| {
        let b = &q.body;
        let grant = memchr::memmem::find(b, b"grant_type=refresh_token").is_some()
            || memchr::memmem::find(b, b"\"grant_type\":\"refresh_token\"").is_some()
            || memchr::memmem::find(b, b"\"grant_type\": \"refresh_token\"").is_some();
        grant && memchr::memmem::find(b, b"password").is_none()
    });
    let login = !refresh && q.is_some_and(|q| q.method == "POST" && is_login_path(crate::event::target_path(&q.uri)));
    if login {
        v.hits.push((Detector::Login, String::new()));
    }
    let body = tx.response.as_ref().map(|r| r.body.as_slice()).unwrap_or(&[]);
    let failed = status == 401 || (login && matches!(status, 200 | 400 | 403 | 422) && failure_body(body));
    if failed {
        v.hits.push((Detector::AuthFailure, status.to_string()));
    } else if login && (200..300).contains(&status) {
        v.hits.push((Detector::LoginSuccess, status.to_string()));
    }
    // Personal data and private keys; tokens are what login endpoints are for.
    let kinds: Vec<&str> = sensitive
        .iter()
        .filter(|k| !matches!(k, Sensitive::Jwt | Sensitive::ApiKey))
        .map(|k| k.as_str())
        .collect();
    if !kinds.is_empty() {
        v.hits.push((Detector::SensitiveResponse, kinds.join(",")));
    }
    v
}

/// Known attack tools by their user agent: (substring, tool).
const TOOLS: [(&str, &str); 22] = [
    ("sqlmap", "sqlmap"),
    ("nikto", "nikto"),
    ("gobuster", "gobuster"),
    ("fuzz faster u fool", "ffuf"),
    ("ffuf", "ffuf"),
    ("wfuzz", "wfuzz"),
    ("dirbuster", "dirbuster"),
    ("feroxbuster", "feroxbuster"),
    ("(hydra)", "hydra"),
    ("nmap scripting engine", "nmap"),
    ("masscan", "masscan"),
    ("nuclei", "nuclei"),
    ("zgrab", "zgrab"),
    ("acunetix", "acunetix"),
    ("netsparker", "netsparker"),
    ("burpcollaborator", "burp"),
    ("w3af", "w3af"),
    ("arachni", "arachni"),
    ("wpscan", "wpscan"),
    ("openvas", "openvas"),
    ("commix", "commix"),
    ("jaeles", "jaeles"),
];

/// All the tools' markers in one case-insensitive pass (the regex crate's literal prefilter),
/// instead of 22 substring searches per request.
static TOOL_SET: std::sync::LazyLock<regex::RegexSet> = std::sync::LazyLock::new(|| {
    regex::RegexSet::new(TOOLS.iter().map(|(s, _)| format!("(?i){}", regex::escape(s))))
        .unwrap_or_else(|_| regex::RegexSet::empty())
});

pub fn scanner_tool(ua: &str) -> Option<&'static str> {
    TOOL_SET.matches(ua).iter().next().map(|i| TOOLS[i].1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_paths_and_tools() {
        assert!(is_login_path("/api/v1/login"));
        assert!(is_login_path("/oauth/token"));
        assert!(!is_login_path("/api/v1/users/login-history"));
        assert_eq!(scanner_tool("sqlmap/1.7.2#stable (https://sqlmap.org)"), Some("sqlmap"));
        assert_eq!(scanner_tool("Mozilla/5.0 (Hydra)"), Some("hydra"));
        assert_eq!(scanner_tool("Fuzz Faster U Fool v1.1.0"), Some("ffuf"));
        assert_eq!(scanner_tool("Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0"), None);
        assert_eq!(normalize("%2527%20OR+1%3D1"), "' or 1=1");
    }
}

/// Is this part the value of a secret-named field (a password, a token)? Its text is scanned
/// but never quoted as evidence.
pub fn secret_part(at: &str) -> bool {
    let name = at.rsplit(':').next().unwrap_or("");
    crate::redact::is_secret_param(name) || crate::redact::is_key_header(name)
}

/// `scheme://user:pass@host/...` with the credentials replaced by `***`.
pub fn strip_userinfo(s: &str) -> String {
    if let Some(i) = s.find("://") {
        let rest = &s[i + 3..];
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        if let Some(at) = rest[..end].rfind('@') {
            return format!("{}***{}", &s[..i + 3], &rest[at..]);
        }
    }
    s.to_string()
}
