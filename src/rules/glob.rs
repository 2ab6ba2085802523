//! Globs for paths, endpoints and hosts: `*` matches any run of characters (slashes too), `?`
//! one character; everything else is literal and case-sensitive (methods, paths). Matching is
//! linear in practice: the classic two-pointer algorithm with one backtrack point.

#[derive(Debug, Clone)]
pub struct Glob {
    pat: String,
    /// Without `?`: the literal pieces between the stars, matched in one left-to-right pass
    /// (a prefix, a suffix and substrings between: the leftmost occurrence of each middle piece
    /// is always the best choice when `*` is the only wildcard).
    pieces: Option<Vec<String>>,
    /// A searcher per middle piece, built once (building one costs more than most searches).
    finders: Vec<memchr::memmem::Finder<'static>>,
}

impl PartialEq for Glob {
    fn eq(&self, o: &Glob) -> bool {
        self.pat == o.pat
    }
}

impl Eq for Glob {}

impl Glob {
    pub fn new(p: &str) -> Glob {
        let pieces: Option<Vec<String>> = (!p.contains('?')).then(|| p.split('*').map(str::to_string).collect());
        let finders = match &pieces {
            Some(v) if v.len() > 2 => v[1..v.len() - 1]
                .iter()
                .map(|m| memchr::memmem::Finder::new(m.as_bytes()).into_owned())
                .collect(),
            _ => Vec::new(),
        };
        Glob {
            pat: p.to_string(),
            pieces,
            finders,
        }
    }

    pub fn as_str(&self) -> &str {
        &self.pat
    }

    pub fn matches(&self, s: &str) -> bool {
        match &self.pieces {
            Some(p) => self.match_pieces(p, s.as_bytes()),
            None => self.match_wild(s),
        }
    }

    fn match_pieces(&self, p: &[String], s: &[u8]) -> bool {
        let (first, last) = (p[0].as_bytes(), p[p.len() - 1].as_bytes());
        if p.len() == 1 {
            return s == first;
        }
        // (an empty prefix or suffix, as in `*{id}*`, is not compared: a zero-length memcmp
        // call cost more than the substring search itself)
        if s.len() < first.len() + last.len()
            || (!first.is_empty() && !s.starts_with(first))
            || (!last.is_empty() && !s.ends_with(last))
        {
            return false;
        }
        let mut rest = &s[first.len()..s.len() - last.len()];
        for f in &self.finders {
            let n = f.needle().len();
            if n == 0 {
                continue;
            }
            match f.find(rest) {
                Some(i) => rest = &rest[i + n..],
                None => return false,
            }
        }
        true
    }

    /// With `?`: the classic two-pointer algorithm with one backtrack point.
    fn match_wild(&self, s: &str) -> bool {
        let (p, s) = (self.pat.as_bytes(), s.as_bytes());
        let (mut pi, mut si) = (0, 0);
        let mut star: Option<(usize, usize)> = None;
        while si < s.len() {
            if pi < p.len() && (p[pi] == b'?' || p[pi] == s[si]) {
                pi += 1;
                si += 1;
            } else if pi < p.len() && p[pi] == b'*' {
                star = Some((pi, si));
                pi += 1;
            } else if let Some((sp, ss)) = star {
                pi = sp + 1;
                si = ss + 1;
                star = Some((sp, ss + 1));
            } else {
                return false;
            }
        }
        while pi < p.len() && p[pi] == b'*' {
            pi += 1;
        }
        pi == p.len()
    }
}

#[cfg(test)]
mod tests {
    use super::Glob;

    #[test]
    fn globs() {
        assert!(Glob::new("POST */login").matches("POST /api/v1/login"));
        assert!(!Glob::new("POST */login").matches("GET /api/v1/login"));
        assert!(Glob::new("/api/*").matches("/api/x/y"));
        assert!(Glob::new("GET /users/{id}").matches("GET /users/{id}"));
        assert!(Glob::new("a?c").matches("abc"));
        assert!(!Glob::new("a?c").matches("ac"));
        assert!(Glob::new("*").matches(""));
        assert!(!Glob::new("").matches("x"));
        assert!(Glob::new("*a*a*a*b").matches(&"a".repeat(50).replace("aaaaa", "aaaab")));
        assert!(Glob::new("*{id}*").matches("GET /users/{id}"));
        assert!(!Glob::new("*{id}*").matches("GET /users/{uuid}"));
        assert!(Glob::new("ab*ab").matches("ab"[..].repeat(2).as_str()));
        assert!(!Glob::new("ab*ab").matches("aba"));
        assert!(Glob::new("a*").matches("a"));
        assert!(!Glob::new("a*b*c").matches("acb"));
    }

    /// The star-only fast path agrees with the general algorithm on every pattern and text
    /// over a small alphabet (both up to length 6).
    #[test]
    fn star_only_globs_agree_with_the_general_matcher() {
        let alpha = ['a', 'b', '*'];
        let words = |n: usize, al: &[char]| -> Vec<String> {
            let mut out = vec![String::new()];
            let mut cur = vec![String::new()];
            for _ in 0..n {
                cur = cur
                    .iter()
                    .flat_map(|w| al.iter().map(move |c| format!("{w}{c}")))
                    .collect();
                out.extend(cur.iter().cloned());
            }
            out
        };
        let texts = words(6, &['a', 'b']);
        for p in words(5, &alpha) {
            let g = Glob::new(&p);
            for t in &texts {
                assert_eq!(g.matches(t), g.match_wild(t), "pattern {p:?} text {t:?}");
            }
        }
    }
}
