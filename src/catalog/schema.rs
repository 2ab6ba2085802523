//! Inferred JSON schemas: types (with string formats), object properties and array items,
//! merged across samples. Depth and property counts are capped.

use std::collections::BTreeMap;

use serde_json::{Value, json};

const MAX_DEPTH: usize = 6;

/// JSON types, in their names' order (the order they are listed in).
const TYPES: [&str; 7] = ["array", "boolean", "integer", "null", "number", "object", "string"];
/// String formats ([`string_format`]), in their names' order.
const FORMATS: [&str; 6] = ["date", "date-time", "email", "ipv4", "uri", "uuid"];

/// The position of a name in a list of known names (every caller passes one of them).
fn slot(list: &[&str], name: &str) -> usize {
    list.iter().position(|n| *n == name).unwrap_or(list.len() - 1)
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Schema {
    /// The types seen: a bit per [`TYPES`] entry (a set without an allocation per value).
    types: u8,
    /// String samples, and how many had each format: a format is reported when at least 95%
    /// of the samples have it (a stray bad value, an attacker's probe, does not erase it).
    strings: u32,
    /// Per [`FORMATS`] entry, how many strings had it (0: none).
    formats: [u32; 6],
    props: BTreeMap<String, Schema>,
    items: Option<Box<Schema>>,
}

/// Format of a string value: uuid, email, date-time, date, ipv4, uri.
pub fn string_format(s: &str) -> Option<&'static str> {
    use super::template::{ParamKind, classify};
    match classify(s) {
        Some(ParamKind::Uuid) => return Some("uuid"),
        Some(ParamKind::Email) if s.contains('@') => return Some("email"),
        Some(ParamKind::Date) => return Some(if s.len() > 10 { "date-time" } else { "date" }),
        _ => {}
    }
    if s.parse::<std::net::Ipv4Addr>().is_ok() {
        return Some("ipv4");
    }
    if s.starts_with("http://") || s.starts_with("https://") {
        return Some("uri");
    }
    None
}

impl Schema {
    fn scalar(t: &'static str, format: Option<&'static str>) -> Schema {
        let mut formats = [0; 6];
        if let Some(f) = format {
            formats[slot(&FORMATS, f)] = 1;
        }
        Schema {
            types: 1 << slot(&TYPES, t),
            strings: (t == "string") as u32,
            formats,
            ..Schema::default()
        }
    }

    fn format(&self) -> Option<&'static str> {
        // the most frequent; on a tie the last in name order (as a map in name order gave)
        let (f, n) = FORMATS
            .iter()
            .zip(self.formats)
            .filter(|(_, n)| *n > 0)
            .max_by_key(|(_, n)| *n)?;
        (n as f64 >= 0.95 * self.strings as f64).then_some(*f)
    }

    /// Type of a text value (query or form parameter).
    pub fn of_text(s: &str) -> Schema {
        let (t, f) = Self::text_type(s);
        Schema::scalar(t, f)
    }

    /// The type and string format of a text value.
    fn text_type(s: &str) -> (&'static str, Option<&'static str>) {
        if !s.is_empty() && s.len() <= 19 && s.parse::<i64>().is_ok() {
            ("integer", None)
        } else if s.parse::<f64>().is_ok_and(|f| f.is_finite()) && s.contains('.') {
            ("number", None)
        } else if s == "true" || s == "false" {
            ("boolean", None)
        } else {
            ("string", string_format(s))
        }
    }

    /// `self.merge(&Schema::of_text(s))`, without building the text's schema (a query
    /// parameter of every call): nothing is allocated once its type and format are known.
    pub fn merge_text(&mut self, s: &str) {
        let (t, f) = Self::text_type(s);
        self.types |= 1 << slot(&TYPES, t);
        self.strings = self.strings.saturating_add((t == "string") as u32);
        if let Some(f) = f {
            let e = &mut self.formats[slot(&FORMATS, f)];
            *e = e.saturating_add(1);
        }
    }

    pub fn of_json(v: &Value, max_props: usize) -> Schema {
        Self::of_json_at(v, max_props, 0)
    }

    fn of_json_at(v: &Value, max_props: usize, depth: usize) -> Schema {
        match v {
            Value::Null => Schema::scalar("null", None),
            Value::Bool(_) => Schema::scalar("boolean", None),
            Value::Number(n) if n.is_i64() || n.is_u64() => Schema::scalar("integer", None),
            Value::Number(_) => Schema::scalar("number", None),
            Value::String(s) => Schema::scalar("string", string_format(s)),
            Value::Array(a) => {
                let mut s = Schema::scalar("array", None);
                if depth < MAX_DEPTH {
                    for x in a.iter().take(16) {
                        let i = Self::of_json_at(x, max_props, depth + 1);
                        match &mut s.items {
                            Some(it) => it.merge(&i),
                            None => s.items = Some(Box::new(i)),
                        }
                    }
                }
                s
            }
            Value::Object(o) => {
                let mut s = Schema::scalar("object", None);
                if depth < MAX_DEPTH {
                    for (k, x) in o.iter().take(max_props) {
                        s.props.insert(k.clone(), Self::of_json_at(x, max_props, depth + 1));
                    }
                }
                s
            }
        }
    }

    pub fn merge(&mut self, o: &Schema) {
        self.types |= o.types;
        self.strings = self.strings.saturating_add(o.strings);
        for (e, n) in self.formats.iter_mut().zip(o.formats) {
            *e = e.saturating_add(n);
        }
        for (k, v) in &o.props {
            let room = self.props.len() < 256;
            match self.props.get_mut(k) {
                Some(p) => p.merge(v),
                None if room => {
                    self.props.insert(k.clone(), v.clone());
                }
                None => {}
            }
        }
        match (&mut self.items, &o.items) {
            (Some(a), Some(b)) => a.merge(b),
            (None, Some(b)) => self.items = Some(b.clone()),
            _ => {}
        }
    }

    /// As a JSON Schema (2020-12, the dialect of OpenAPI 3.1).
    pub fn json(&self) -> Value {
        let mut types: Vec<&str> = TYPES
            .iter()
            .enumerate()
            .filter(|(i, _)| self.types & (1 << i) != 0)
            .map(|(_, t)| *t)
            .collect();
        // an integer seen beside a number is a number
        if types.contains(&"number") {
            types.retain(|t| *t != "integer");
        }
        let mut o = serde_json::Map::new();
        match types.len() {
            0 => {}
            1 => {
                o.insert("type".into(), json!(types[0]));
            }
            _ => {
                o.insert("type".into(), json!(types));
            }
        }
        if let Some(f) = self.format() {
            o.insert("format".into(), json!(f));
        }
        if !self.props.is_empty() {
            o.insert(
                "properties".into(),
                Value::Object(self.props.iter().map(|(k, v)| (k.clone(), v.json())).collect()),
            );
        }
        if let Some(i) = &self.items {
            o.insert("items".into(), i.json());
        }
        Value::Object(o)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_and_format_made_has_its_slot() {
        let texts = [
            "42",
            "1.5",
            "true",
            "x",
            "a@b.example",
            "2024-01-02",
            "2024-01-02T03:04:05Z",
            "10.0.0.1",
            "https://x.example/",
            "550e8400-e29b-41d4-a716-446655440000",
        ];
        for t in texts {
            let (ty, f) = Schema::text_type(t);
            assert_eq!(TYPES[slot(&TYPES, ty)], ty);
            if let Some(f) = f {
                assert_eq!(FORMATS[slot(&FORMATS, f)], f);
            }
        }
        for v in ["null", "true", "1", "1.5", "\"s\"", "[1]", "{}"] {
            let s = Schema::of_json(&serde_json::from_str(v).unwrap(), 8);
            assert_eq!(s.types.count_ones(), 1, "{v}");
        }
        let mut names = TYPES.to_vec();
        names.sort();
        assert_eq!(names, TYPES, "types in name order");
        let mut names = FORMATS.to_vec();
        names.sort();
        assert_eq!(names, FORMATS, "formats in name order");
    }

    #[test]
    fn schemas_merge_across_samples() {
        let a: Value = serde_json::from_str(r#"{"id":1,"email":"a@b.io","tags":["x"],"geo":{"lat":1.5}}"#).unwrap();
        let b: Value =
            serde_json::from_str(r#"{"id":2,"email":"c@d.io","tags":[],"note":null,"geo":{"lat":2}}"#).unwrap();
        let mut s = Schema::of_json(&a, 64);
        s.merge(&Schema::of_json(&b, 64));
        let j = s.json();
        assert_eq!(j["type"], "object");
        assert_eq!(j["properties"]["id"]["type"], "integer");
        assert_eq!(j["properties"]["email"]["format"], "email");
        assert_eq!(j["properties"]["tags"]["items"]["type"], "string");
        assert_eq!(j["properties"]["note"]["type"], "null");
        assert_eq!(j["properties"]["geo"]["properties"]["lat"]["type"], "number");
        assert_eq!(Schema::of_text("42").json()["type"], "integer");
        assert_eq!(
            Schema::of_text("0b7c7e6e-2f0a-4f43-9d4c-1c1f8a3e9e01").json()["format"],
            "uuid"
        );
        assert_eq!(Schema::of_text("true").json()["type"], "boolean");
        // one probe among forty e-mails keeps the format; half and half drops it
        let mut e = Schema::of_text("a@b.io");
        for _ in 0..39 {
            e.merge(&Schema::of_text("x@y.io"));
        }
        e.merge(&Schema::of_text("' OR 1=1--"));
        assert_eq!(e.json()["format"], "email");
        let mut h = Schema::of_text("a@b.io");
        h.merge(&Schema::of_text("plain"));
        assert!(h.json().get("format").is_none());
    }
}

#[cfg(test)]
mod merge_text_tests {
    use super::*;

    #[test]
    fn merge_text_is_a_merge_of_the_texts_schema() {
        let texts = [
            "42",
            "-7",
            "12345678901234567890",
            "3.14",
            "1e5",
            "nan",
            "inf",
            "true",
            "false",
            "",
            "a@b.example",
            "2024-01-02",
            "2024-01-02T03:04:05Z",
            "10.0.0.1",
            "https://x.example/",
            "plain",
            "0xff",
            "550e8400-e29b-41d4-a716-446655440000",
        ];
        for start in &texts {
            let mut a = Schema::of_text(start);
            let mut b = a.clone();
            for t in &texts {
                a.merge(&Schema::of_text(t));
                b.merge_text(t);
                assert_eq!(a, b, "after {start:?} then {t:?}");
            }
        }
    }
}
