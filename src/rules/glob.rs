//! Globs for paths, endpoints and hosts: `*` matches any run of characters (slashes too), `?`
//! one character; everything else is literal and case-sensitive (methods, paths). Matching is
//! linear in practice: the classic two-pointer algorithm with one backtrack point.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob(String);

impl Glob {
    pub fn new(p: &str) -> Glob {
        Glob(p.to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn matches(&self, s: &str) -> bool {
        let (p, s) = (self.0.as_bytes(), s.as_bytes());
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
    }
}
