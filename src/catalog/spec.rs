//! A reference OpenAPI document (2.0 or 3.x, JSON or YAML) to hold the observed catalog
//! against: endpoints seen but not documented are *shadow* APIs, documented operations marked
//! `deprecated` that are still called are *zombie* APIs.
//!
//! Paths match segment by segment: a documented `{param}` matches any observed segment (a
//! literal or a parameter), a documented literal matches the same literal or an observed
//! parameter whose type accepts it would be guesswork, so it must be equal. The path of each
//! `servers[].url` (3.x) or `basePath` (2.0) is a prefix the observed paths carry.

use serde_json::Value;

/// How an observed endpoint stands against the reference spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpecStatus {
    Documented,
    /// Seen on the wire, not in the spec.
    Shadow,
    /// In the spec as deprecated, still called.
    Zombie,
}

impl SpecStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SpecStatus::Documented => "documented",
            SpecStatus::Shadow => "shadow",
            SpecStatus::Zombie => "zombie",
        }
    }
}

#[derive(Debug, Clone)]
struct Operation {
    method: String,
    segments: Vec<Option<String>>,
    deprecated: bool,
}

/// The operations of a reference spec.
#[derive(Debug, Clone, Default)]
pub struct Spec {
    ops: Vec<Operation>,
}

const METHODS: [&str; 8] = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];

impl Spec {
    /// Read a spec file; the error names the file and what is wrong.
    pub fn from_file(path: &str) -> Result<Spec, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: cannot read: {e}"))?;
        Spec::parse(&text).map_err(|e| format!("{path}: {e}"))
    }

    pub fn parse(text: &str) -> Result<Spec, String> {
        let doc: Value = if text.trim_start().starts_with('{') {
            serde_json::from_str(text).map_err(|e| format!("not valid JSON: {e}"))?
        } else {
            serde_norway::from_str(text).map_err(|e| format!("not valid YAML: {e}"))?
        };
        if doc.get("openapi").is_none() && doc.get("swagger").is_none() {
            return Err("not an OpenAPI document (no `openapi` or `swagger` key)".into());
        }
        let paths = doc.get("paths").and_then(Value::as_object).ok_or("no `paths` object")?;
        let mut prefixes: Vec<String> = doc
            .get("servers")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|s| s.get("url")?.as_str()).map(url_path).collect())
            .unwrap_or_default();
        if let Some(b) = doc.get("basePath").and_then(Value::as_str) {
            prefixes.push(url_path(b));
        }
        if prefixes.is_empty() {
            prefixes.push(String::new());
        }
        prefixes.sort();
        prefixes.dedup();
        let mut ops = Vec::new();
        for (path, item) in paths {
            let Some(item) = item.as_object() else { continue };
            for m in METHODS {
                let Some(op) = item.get(m) else { continue };
                let deprecated = op.get("deprecated").and_then(Value::as_bool).unwrap_or(false);
                for pre in &prefixes {
                    let full = format!("{}/{}", pre.trim_end_matches('/'), path.trim_start_matches('/'));
                    ops.push(Operation {
                        method: m.to_ascii_uppercase(),
                        segments: segments(&full),
                        deprecated,
                    });
                }
            }
        }
        Ok(Spec { ops })
    }

    pub fn operations(&self) -> usize {
        self.ops.len()
    }

    /// Where `method template` stands. A documented, non-deprecated match wins over a
    /// deprecated one (a path documented twice).
    pub fn status(&self, method: &str, template: &str) -> SpecStatus {
        let segs: Vec<&str> = template.split('/').filter(|s| !s.is_empty()).collect();
        let mut found = None;
        for op in &self.ops {
            if !op.method.eq_ignore_ascii_case(method) || op.segments.len() != segs.len() {
                continue;
            }
            let ok = op.segments.iter().zip(&segs).all(|(d, o)| match d {
                None => true,
                Some(lit) => lit == o,
            });
            if ok {
                if !op.deprecated {
                    return SpecStatus::Documented;
                }
                found = Some(SpecStatus::Zombie);
            }
        }
        found.unwrap_or(SpecStatus::Shadow)
    }
}

/// The path part of a server URL (`https://api.example.com/v1` -> `/v1`, `{scheme}://h/x` too).
fn url_path(u: &str) -> String {
    let rest = match u.split_once("://") {
        Some((_, r)) => r.find('/').map_or("", |i| &r[i..]),
        None => u,
    };
    rest.trim_end_matches('/').to_string()
}

fn segments(p: &str) -> Vec<Option<String>> {
    p.split('/')
        .filter(|s| !s.is_empty())
        .map(|s| (!(s.starts_with('{') && s.ends_with('}'))).then(|| s.to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_shadow_and_zombie() {
        let y = "openapi: 3.0.3\nservers:\n  - url: https://api.example.com/api/v1\npaths:\n  /users/{userId}:\n    get: {responses: {}}\n  /orders:\n    get:\n      deprecated: true\n      responses: {}\n";
        let s = Spec::parse(y).unwrap();
        assert_eq!(s.status("GET", "/api/v1/users/{id}"), SpecStatus::Documented);
        assert_eq!(s.status("GET", "/api/v1/users/alice"), SpecStatus::Documented);
        assert_eq!(s.status("DELETE", "/api/v1/users/{id}"), SpecStatus::Shadow);
        assert_eq!(s.status("GET", "/api/v1/orders"), SpecStatus::Zombie);
        assert_eq!(s.status("GET", "/api/v1/internal/debug"), SpecStatus::Shadow);
        assert_eq!(s.status("GET", "/users/{id}"), SpecStatus::Shadow);
    }

    #[test]
    fn json_swagger_base_path_and_bad_documents() {
        let j = r#"{"swagger":"2.0","basePath":"/v2","paths":{"/pets":{"post":{}}}}"#;
        let s = Spec::parse(j).unwrap();
        assert_eq!(s.status("POST", "/v2/pets"), SpecStatus::Documented);
        assert!(Spec::parse("{\"paths\":{}}").unwrap_err().contains("not an OpenAPI"));
        assert!(Spec::parse("openapi: [").unwrap_err().contains("YAML"));
        assert!(Spec::parse("{\"openapi\":\"3.1.0\"}").unwrap_err().contains("paths"));
    }
}
