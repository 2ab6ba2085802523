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
    if may_be_ipv4(s) && s.parse::<std::net::Ipv4Addr>().is_ok() {
        return Some("ipv4");
    }
    if s.starts_with("http://") || s.starts_with("https://") {
        return Some("uri");
    }
    None
}

/// Could `s` parse as an IPv4 address? Four dotted numbers of one to three digits are 7 to 15
/// bytes and start with a digit: most strings (names, words) are ruled out before the parser
/// is set up. Held to the parser by `ipv4_prefilter_rules_out_only_what_fails_to_parse`.
#[inline]
fn may_be_ipv4(s: &str) -> bool {
    (7..=15).contains(&s.len()) && s.as_bytes()[0].is_ascii_digit()
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

    /// `Schema::of_json(&serde_json::from_slice(text)?, max_props)`, read straight off the
    /// text: the same parser (its syntax checks, depth limit and number rules) drives a visitor
    /// that builds the schema, with no `Value` made and dropped for every string, number and
    /// map node (most of the catalog's body cost). `None` where `from_slice` fails. Held to
    /// the `Value` way by `schema_of_the_text_is_the_schema_of_its_value`.
    pub fn of_json_text(text: &[u8], max_props: usize) -> Option<Schema> {
        let mut de = serde_json::Deserializer::from_slice(text);
        let s = serde::de::DeserializeSeed::deserialize(SchemaSeed { max_props, depth: 0 }, &mut de).ok()?;
        de.end().ok()?;
        Some(s)
    }

    /// `self.merge(&Schema::of_json_text(text, max_props)?)`, true when the text parsed: a
    /// document's top-level object is not made into a schema of its own to be merged and
    /// dropped (its names borrowed from the text, its new fields moved in, not copied). Nothing
    /// changes when the text does not parse. Held to the merge by
    /// `merging_the_text_is_merging_its_schema`.
    pub fn merge_json_text(&mut self, text: &[u8], max_props: usize) -> bool {
        let mut de = serde_json::Deserializer::from_slice(text);
        let Ok(top) = serde::de::DeserializeSeed::deserialize(TopSeed { max_props }, &mut de) else {
            return false;
        };
        if de.end().is_err() {
            return false;
        }
        match top {
            Top::Other(s) => self.merge(&s),
            Top::Object(mut fields) => {
                // a `Value`'s map: a repeated name keeps its last value, then the first
                // `max_props` names in name order (a stable sort keeps repeats in text order)
                fields.sort_by(|a, b| a.0.cmp(&b.0));
                let mut last: Vec<(std::borrow::Cow<'_, str>, Schema)> = Vec::with_capacity(fields.len());
                for f in fields {
                    match last.last_mut() {
                        Some(l) if l.0 == f.0 => *l = f,
                        _ => last.push(f),
                    }
                }
                last.truncate(max_props);
                // what `merge` does with an object's schema: its type, then each field in name
                // order (its flat counts are zero, it has no items)
                self.types |= 1 << slot(&TYPES, "object");
                for (k, v) in last {
                    let room = self.props.len() < 256;
                    match self.props.get_mut(k.as_ref()) {
                        Some(p) => p.merge(&v),
                        None if room => {
                            self.props.insert(k.into_owned(), v);
                        }
                        None => {}
                    }
                }
            }
        }
        true
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

impl Schema {
    /// [`Schema::json`] appended to `out` as JSON text straight from the schema: the same keys
    /// in the same (name) order, the bytes the `Value` is written as, no `Value` built. Held
    /// to it by `schema_json_written_directly_is_the_value`.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        use crate::util::push_json_str;
        out.push(b'{');
        // (after the first key, each has its comma)
        let mut comma = false;
        let mut key = |out: &mut Vec<u8>, k: &[u8]| {
            if std::mem::replace(&mut comma, true) {
                out.push(b',');
            }
            out.extend_from_slice(k);
        };
        if let Some(f) = self.format() {
            key(out, b"\"format\":");
            push_json_str(out, f);
        }
        if let Some(i) = &self.items {
            key(out, b"\"items\":");
            i.write_json(out);
        }
        if !self.props.is_empty() {
            key(out, b"\"properties\":");
            write_json_map(&self.props, out);
        }
        // an integer seen beside a number is a number
        let number = self.types & (1 << slot(&TYPES, "number")) != 0;
        let integer = 1 << slot(&TYPES, "integer");
        let types = if number { self.types & !integer } else { self.types };
        match types.count_ones() {
            0 => {}
            1 => {
                key(out, b"\"type\":");
                push_json_str(out, TYPES[types.trailing_zeros() as usize]);
            }
            _ => {
                key(out, b"\"type\":[");
                let mut first = true;
                for (i, t) in TYPES.iter().enumerate() {
                    if types & (1 << i) != 0 {
                        if !std::mem::replace(&mut first, false) {
                            out.push(b',');
                        }
                        push_json_str(out, t);
                    }
                }
                out.push(b']');
            }
        }
        out.push(b'}');
    }
}

/// The schema of the next JSON value at `depth` ([`Schema::of_json_at`] of it).
#[derive(Clone, Copy)]
struct SchemaSeed {
    max_props: usize,
    depth: usize,
}

impl<'de> serde::de::DeserializeSeed<'de> for SchemaSeed {
    type Value = Schema;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Schema, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for SchemaSeed {
    type Value = Schema;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_unit<E>(self) -> Result<Schema, E> {
        Ok(Schema::scalar("null", None))
    }
    fn visit_bool<E>(self, _: bool) -> Result<Schema, E> {
        Ok(Schema::scalar("boolean", None))
    }
    fn visit_i64<E>(self, _: i64) -> Result<Schema, E> {
        Ok(Schema::scalar("integer", None))
    }
    fn visit_u64<E>(self, _: u64) -> Result<Schema, E> {
        Ok(Schema::scalar("integer", None))
    }
    fn visit_f64<E>(self, f: f64) -> Result<Schema, E> {
        // a `Value` holds a float that is not finite as null
        Ok(Schema::scalar(if f.is_finite() { "number" } else { "null" }, None))
    }
    fn visit_str<E>(self, s: &str) -> Result<Schema, E> {
        Ok(Schema::scalar("string", string_format(s)))
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut a: A) -> Result<Schema, A::Error> {
        let mut s = Schema::scalar("array", None);
        let deeper = SchemaSeed {
            max_props: self.max_props,
            depth: self.depth + 1,
        };
        let mut n = 0;
        // the first 16 items below the depth limit, merged in order; the rest read and checked
        while n < 16 && self.depth < MAX_DEPTH {
            let Some(i) = a.next_element_seed(deeper)? else {
                return Ok(s);
            };
            match &mut s.items {
                Some(it) => it.merge(&i),
                None => s.items = Some(Box::new(i)),
            }
            n += 1;
        }
        while a.next_element_seed(Skip)?.is_some() {}
        Ok(s)
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut a: A) -> Result<Schema, A::Error> {
        let mut s = Schema::scalar("object", None);
        if self.depth >= MAX_DEPTH {
            while a.next_key_seed(Key)?.is_some() {
                a.next_value_seed(Skip)?;
            }
            return Ok(s);
        }
        // as a `Value`'s map: a repeated key keeps its last value; then the first `max_props`
        // keys in name order
        while let Some(k) = a.next_key_seed(Key)? {
            let v = a.next_value_seed(SchemaSeed {
                max_props: self.max_props,
                depth: self.depth + 1,
            })?;
            match s.props.get_mut(k.as_ref()) {
                Some(e) => *e = v,
                None => {
                    s.props.insert(k.into_owned(), v);
                }
            }
        }
        if let Some(cut) = s.props.keys().nth(self.max_props).cloned() {
            s.props.split_off(&cut);
        }
        Ok(s)
    }
}

/// A map key, borrowed where the text holds it as it is (read as a `Value`'s key is: a
/// checked string).
struct Key;

impl<'de> serde::de::DeserializeSeed<'de> for Key {
    type Value = std::borrow::Cow<'de, str>;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(Key)
    }
}

impl<'de> serde::de::Visitor<'de> for Key {
    type Value = std::borrow::Cow<'de, str>;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a string key")
    }
    fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Self::Value, E> {
        Ok(s.into())
    }
    fn visit_str<E>(self, s: &str) -> Result<Self::Value, E> {
        Ok(s.to_string().into())
    }
}

/// A value read and checked as a `Value` would be (the same parser calls), and dropped.
struct Skip;

impl<'de> serde::de::DeserializeSeed<'de> for Skip {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(Skip)
    }
}

impl<'de> serde::de::Visitor<'de> for Skip {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut a: A) -> Result<(), A::Error> {
        while a.next_element_seed(Skip)?.is_some() {}
        Ok(())
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut a: A) -> Result<(), A::Error> {
        while a.next_key_seed(Key)?.is_some() {
            a.next_value_seed(Skip)?;
        }
        Ok(())
    }
}

/// A document's top level for [`Schema::merge_json_text`]: an object's fields (name, schema)
/// in text order, or any other value's schema.
enum Top<'de> {
    Object(Vec<(std::borrow::Cow<'de, str>, Schema)>),
    Other(Schema),
}

struct TopSeed {
    max_props: usize,
}

impl TopSeed {
    /// The seed of a top level that is not an object.
    fn other(&self) -> SchemaSeed {
        SchemaSeed {
            max_props: self.max_props,
            depth: 0,
        }
    }
}

impl<'de> serde::de::DeserializeSeed<'de> for TopSeed {
    type Value = Top<'de>;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Top<'de>, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for TopSeed {
    type Value = Top<'de>;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<Top<'de>, E> {
        serde::de::Visitor::visit_unit(self.other()).map(Top::Other)
    }
    fn visit_bool<E: serde::de::Error>(self, b: bool) -> Result<Top<'de>, E> {
        serde::de::Visitor::visit_bool(self.other(), b).map(Top::Other)
    }
    fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<Top<'de>, E> {
        serde::de::Visitor::visit_i64(self.other(), n).map(Top::Other)
    }
    fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<Top<'de>, E> {
        serde::de::Visitor::visit_u64(self.other(), n).map(Top::Other)
    }
    fn visit_f64<E: serde::de::Error>(self, f: f64) -> Result<Top<'de>, E> {
        serde::de::Visitor::visit_f64(self.other(), f).map(Top::Other)
    }
    fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Top<'de>, E> {
        serde::de::Visitor::visit_str(self.other(), s).map(Top::Other)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, a: A) -> Result<Top<'de>, A::Error> {
        serde::de::Visitor::visit_seq(self.other(), a).map(Top::Other)
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut a: A) -> Result<Top<'de>, A::Error> {
        // (depth 0 is below the depth limit: every field's schema is made, at depth 1)
        let mut fields = Vec::new();
        while let Some(k) = a.next_key_seed(Key)? {
            let v = a.next_value_seed(SchemaSeed {
                max_props: self.max_props,
                depth: 1,
            })?;
            fields.push((k, v));
        }
        Ok(Top::Object(fields))
    }
}

/// `{"name":schema,...}` of a map of schemas, in its (name) order, as serde_json writes the
/// map's `Value`.
pub(crate) fn write_json_map(m: &BTreeMap<String, Schema>, out: &mut Vec<u8>) {
    out.push(b'{');
    for (n, (k, v)) in m.iter().enumerate() {
        if n > 0 {
            out.push(b',');
        }
        crate::util::push_json_str(out, k);
        out.push(b':');
        v.write_json(out);
    }
    out.push(b'}');
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

#[cfg(test)]
mod of_json_text_tests {
    use super::*;

    fn by_value(t: &[u8], max_props: usize) -> Option<Schema> {
        serde_json::from_slice::<Value>(t)
            .ok()
            .map(|v| Schema::of_json(&v, max_props))
    }

    /// A JSON-ish text from a seed: nested objects and arrays, repeated keys, every scalar kind,
    /// escapes, formats.
    pub(super) fn doc_text(r: &mut u64, depth: usize, out: &mut String) {
        fn step(r: &mut u64) -> u64 {
            *r ^= *r << 13;
            *r ^= *r >> 7;
            *r ^= *r << 17;
            *r
        }
        const SCALARS: [&str; 16] = [
            "null",
            "true",
            "false",
            "0",
            "-0",
            "12",
            "-7",
            "1.5",
            "1e5",
            "18446744073709551616",
            "-9223372036854775809",
            "\"a@b.example\"",
            "\"2024-01-02T03:04:05Z\"",
            "\"10.0.0.1\"",
            "\"https://x.example/\"",
            "\"550e8400-e29b-41d4-a716-446655440000\"",
        ];
        let pick = step(r) % if depth > 9 { 6 } else { 9 };
        match pick {
            0..=5 => out.push_str(SCALARS[(step(r) % 16) as usize]),
            6 => out.push_str(r#""x\u00e9\n\"y""#),
            7 => {
                out.push('[');
                for i in 0..step(r) % 20 {
                    if i > 0 {
                        out.push(',');
                    }
                    doc_text(r, depth + 1, out);
                }
                out.push(']');
            }
            _ => {
                out.push('{');
                for i in 0..step(r) % 12 {
                    if i > 0 {
                        out.push(',');
                    }
                    // few names: repeats within an object happen
                    out.push_str(
                        [r#""a""#, r#""b""#, r#""id""#, r#""Z""#, r#""k\u0041""#, r#""""#][(step(r) % 6) as usize],
                    );
                    out.push(':');
                    doc_text(r, depth + 1, out);
                }
                out.push('}');
            }
        }
    }

    #[test]
    fn schema_of_the_text_is_the_schema_of_its_value() {
        let mut texts: Vec<Vec<u8>> = [
            "{}",
            "[]",
            "null",
            " {\"a\":1} ",
            "{\"a\":1,\"a\":\"x@y.io\"}",
            "{\"a\":{\"b\":[1,2.5,\"s\",null,{\"c\":true}]}}",
            "[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,\"late\",{\"x\":1}]",
            "[[[[[[[[[[1]]]]]]]]]]",
            "{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":1}}}}}}}}",
            "{\"a\":1}x",
            "{\"a\":1,}",
            "[1,]",
            "{\"a\" 1}",
            "1e400",
            "-1e400",
            r#""\ud800""#,
            r#""\uZZZZ""#,
            r#"{"a":"\u00e9","\u00e9":2}"#,
            "[\"a\",1,]",
            "",
            " ",
            "{\"a\":1",
        ]
        .iter()
        .map(|t| t.as_bytes().to_vec())
        .collect();
        // invalid UTF-8 in a string, in a key, past the 16th item, below the depth limit
        texts.push(b"{\"a\":\"\xff\"}".to_vec());
        texts.push(b"{\"\xc3\":1}".to_vec());
        texts.push(b"[0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,\"\xff\"]".to_vec());
        texts.push(b"[[[[[[[[{\"a\":\"\xfe\"}]]]]]]]]".to_vec());
        // nesting past the parser's limit
        texts.push(format!("{}{}", "[".repeat(200), "]".repeat(200)).into_bytes());
        texts.push(format!("{}1{}", "{\"a\":".repeat(130), "}".repeat(130)).into_bytes());
        // more keys than any cap, given out of order
        let many: Vec<String> = (0..300).rev().map(|i| format!("\"k{i}\":{i}")).collect();
        texts.push(format!("{{{}}}", many.join(",")).into_bytes());
        let mut r = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..400 {
            let mut t = String::new();
            doc_text(&mut r, 0, &mut t);
            texts.push(t.into_bytes());
        }
        // every text also cut short and with a byte changed
        let n = texts.len();
        for i in 0..n {
            let t = texts[i].clone();
            for cut in [t.len() / 2, t.len().saturating_sub(1)] {
                texts.push(t[..cut].to_vec());
            }
            if !t.is_empty() {
                let mut m = t.clone();
                let at = (i * 7) % m.len();
                let swaps = b"\",:]}[{\\\xff0";
                m[at] = swaps[i % swaps.len()];
                texts.push(m);
            }
        }
        let mut ok = 0;
        for t in &texts {
            for mp in [0, 1, 2, 64] {
                let want = by_value(t, mp);
                ok += want.is_some() as usize;
                assert_eq!(
                    Schema::of_json_text(t, mp),
                    want,
                    "{:?} max {mp}",
                    String::from_utf8_lossy(t)
                );
            }
        }
        // the set holds both documents and broken texts
        assert!(ok > 400 && ok < texts.len() * 4, "{ok} of {}", texts.len() * 4);
    }
}

#[cfg(test)]
mod ipv4_prefilter_tests {
    use super::*;

    #[test]
    fn ipv4_prefilter_rules_out_only_what_fails_to_parse() {
        let mut texts: Vec<String> = [
            "1.2.3.4",
            "10.0.0.1",
            "255.255.255.255",
            "001.002.003.004",
            "1.2.3",
            "1.2.3.4.5",
            " 1.2.3.4",
            "1.2.3.4 ",
            "+1.2.3.4",
            "0x1.2.3.4",
            "a.b.c.d",
            "",
            "1",
            "1.2.3.4\u{0}",
            "\u{661}.2.3.4",
            "1.2.3.256",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        // every byte first, every length around the bounds
        for b in 0..=127u8 {
            texts.push(format!("{}.2.3.4", b as char));
            texts.push(format!("{}0.0.0.1", b as char));
        }
        for n in 0..20 {
            texts.push("1".repeat(n));
            texts.push(format!("1.1.1.{}", "1".repeat(n)));
        }
        let mut parsed = 0;
        for t in &texts {
            if t.parse::<std::net::Ipv4Addr>().is_ok() {
                parsed += 1;
                assert!(may_be_ipv4(t), "{t:?}");
            }
        }
        assert!(parsed > 10, "{parsed}");
    }
}

#[cfg(test)]
mod merge_json_text_tests {
    use super::of_json_text_tests::doc_text;
    use super::*;

    #[test]
    fn merging_the_text_is_merging_its_schema() {
        let mut texts: Vec<String> = [
            r#"{"id":1,"email":"a@b.io","tags":["x"],"geo":{"lat":1.5}}"#,
            r#"{"id":"x","note":null,"geo":{"lat":2,"lon":"3"},"tags":[1,{"a":1}]}"#,
            r#"{"b":1,"a":2,"b":"s","a":{"x":1},"c":[]}"#,
            r#"{"Z":1,"a":2,"":3,"\u00e9":4,"e\u0301":5}"#,
            r#"[{"a":1},{"b":2}]"#,
            r#""10.0.0.1""#,
            "1",
            "1.5",
            "null",
            "{}",
            "[]",
            r#"{"a":1}x"#,
            r#"{"a":1,"b":}"#,
            r#"{"a":[1,2,"#,
            r#"{"a":"\ud800"}"#,
            r#"{"a":{"b":{"c":{"d":{"e":{"f":{"g":1}}}}}}}"#,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        // more fields than the caps, in reverse name order, with repeats
        for n in [3, 70, 300] {
            let f: Vec<String> = (0..n).rev().map(|i| format!("\"k{:03}\":{i}", i % 280)).collect();
            texts.push(format!("{{{}}}", f.join(",")));
        }
        let full: Vec<String> = (0..256).map(|i| format!("\"m{i:03}\":1")).collect();
        let starts: Vec<Option<Schema>> = vec![
            None,
            Schema::of_json_text(br#"{"id":1,"name":"x"}"#, 64),
            Schema::of_json_text(b"[1]", 64),
            Schema::of_json_text(b"\"s\"", 64),
            // a schema at the field cap: new names find no room
            Schema::of_json_text(format!("{{{}}}", full.join(",")).as_bytes(), 300),
        ];
        for mp in [0, 1, 2, 64] {
            for start in &starts {
                // each start, then every text merged in turn (the state carries over)
                let (mut a, mut b) = (start.clone().unwrap_or_default(), start.clone().unwrap_or_default());
                for t in &texts {
                    let want = Schema::of_json_text(t.as_bytes(), mp);
                    if let Some(w) = &want {
                        a.merge(w);
                    }
                    assert_eq!(b.merge_json_text(t.as_bytes(), mp), want.is_some(), "{t} max {mp}");
                    assert_eq!(b, a, "{t} max {mp}");
                }
            }
        }
    }

    #[test]
    fn schema_json_written_directly_is_the_value() {
        let direct = |s: &Schema| {
            let mut out = Vec::new();
            s.write_json(&mut out);
            out
        };
        let mut r = 0x9e37_79b9_7f4a_7c15u64;
        let mut checked = 0;
        for i in 0..3000 {
            // one document, or several merged (mixed types, formats under and over 95%)
            let mut s: Option<Schema> = None;
            for _ in 0..1 + i % 4 {
                let mut t = String::new();
                doc_text(&mut r, 0, &mut t);
                if let Some(o) = Schema::of_json_text(t.as_bytes(), 1 + i % 8) {
                    match &mut s {
                        Some(a) => a.merge(&o),
                        None => s = Some(o),
                    }
                }
            }
            for text in ["", "5", "x@y.io", "1.5", "true", "2024-01-02"] {
                if let Some(a) = &mut s {
                    a.merge_text(text);
                }
            }
            let Some(s) = s else { continue };
            let want = serde_json::to_vec(&s.json()).expect("value");
            let got = direct(&s);
            assert_eq!(String::from_utf8_lossy(&got), String::from_utf8_lossy(&want));
            checked += 1;
        }
        assert!(checked > 1000, "{checked}");
        assert_eq!(direct(&Schema::default()), b"{}");
    }
}
