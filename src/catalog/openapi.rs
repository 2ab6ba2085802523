//! The catalog as an OpenAPI 3.1 document: servers per host, paths with typed parameters,
//! request bodies and responses with inferred schemas, the security schemes seen, and
//! `x-apitap-*` extensions (counts, latency, sensitive data, distinct clients).

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::{Catalog, Endpoint};

fn security_scheme(name: &str) -> Option<Value> {
    Some(match name {
        "basic" => json!({"type": "http", "scheme": "basic"}),
        "bearer" => json!({"type": "http", "scheme": "bearer"}),
        "api_key" => json!({"type": "apiKey", "in": "header", "name": "X-API-Key"}),
        "cookie" => json!({"type": "apiKey", "in": "cookie", "name": "session"}),
        _ => return None,
    })
}

fn operation(e: &Endpoint) -> Value {
    let mut params: Vec<Value> = e
        .path_params()
        .into_iter()
        .map(|(name, k)| {
            let (t, f) = k.openapi();
            let mut schema = json!({"type": t});
            if let Some(f) = f {
                schema["format"] = json!(f);
            }
            json!({"name": name, "in": "path", "required": true, "schema": schema})
        })
        .collect();
    for (name, s) in &e.query {
        params.push(json!({"name": name, "in": "query", "required": false, "schema": s.json()}));
    }
    let mut op = json!({
        "operationId": op_id(e),
        "responses": {},
        "x-apitap-count": e.count,
        "x-apitap-first-seen": crate::util::fmt_ts(e.first),
        "x-apitap-last-seen": crate::util::fmt_ts(e.last),
        "x-apitap-latency-ms": {
            "p50": e.latency.quantile(0.5).map(|u| u as f64 / 1000.0),
            "p90": e.latency.quantile(0.9).map(|u| u as f64 / 1000.0),
            "p99": e.latency.quantile(0.99).map(|u| u as f64 / 1000.0),
        },
        "x-apitap-distinct-clients": e.clients.estimate(),
        "x-apitap-sensitive": e.sensitive.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
        "x-apitap-authenticated-share": if e.count > 0 { e.authenticated as f64 / e.count as f64 } else { 0.0 },
    });
    if !params.is_empty() {
        op["parameters"] = json!(params);
    }
    if let Some(b) = &e.request_body {
        let ct = e
            .request_types
            .iter()
            .next()
            .cloned()
            .unwrap_or_else(|| "application/json".into());
        op["requestBody"] = json!({"content": {ct: {"schema": b.json()}}});
    }
    let ct = e.response_types.iter().next().cloned();
    let mut responses = serde_json::Map::new();
    for (status, n) in &e.status {
        let mut r = json!({"description": format!("observed {n} times")});
        if let (Some(s), Some(ct)) = (e.response_body.get(status), &ct) {
            r["content"] = json!({ct.clone(): {"schema": s.json()}});
        }
        responses.insert(status.to_string(), r);
    }
    if responses.is_empty() {
        responses.insert("default".into(), json!({"description": "no response observed"}));
    }
    op["responses"] = Value::Object(responses);
    let schemes: Vec<&str> = e.auth.keys().copied().filter(|s| *s != "none").collect();
    if !schemes.is_empty() {
        let mut sec: Vec<Value> = schemes.iter().map(|s| json!({*s: []})).collect();
        if e.auth.contains_key("none") {
            sec.push(json!({}));
        }
        op["security"] = json!(sec);
    }
    op
}

fn op_id(e: &Endpoint) -> String {
    let mut s = format!("{}_{}_{}", e.method.to_ascii_lowercase(), e.host, e.template);
    s = s
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    s
}

/// The OpenAPI 3.1 document for a catalog.
pub fn document(c: &Catalog) -> Value {
    let (real, guesses) = c.endpoints();
    let mut paths: BTreeMap<String, serde_json::Map<String, Value>> = BTreeMap::new();
    let mut servers_of: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut schemes = serde_json::Map::new();
    for e in &real {
        let method = e.method.to_ascii_lowercase();
        if !["get", "put", "post", "delete", "options", "head", "patch", "trace"].contains(&method.as_str()) {
            continue;
        }
        let item = paths.entry(e.template.clone()).or_default();
        let servers = servers_of.entry(e.template.clone()).or_default();
        if !servers.contains(&e.host) {
            servers.push(e.host.clone());
        }
        // The same template and method on two hosts: keep the busier one's operation.
        let busier = item
            .get(&method)
            .and_then(|o| o["x-apitap-count"].as_u64())
            .is_none_or(|n| n < e.count);
        if busier {
            let mut op = operation(e);
            if let Some(st) = c.spec_status(e) {
                op["x-apitap-spec"] = json!(st.as_str());
            }
            item.insert(method, op);
        }
        for s in e.auth.keys() {
            if let Some(v) = security_scheme(s) {
                schemes.insert((*s).to_string(), v);
            }
        }
    }
    let all_hosts: std::collections::BTreeSet<&String> = servers_of.values().flatten().collect();
    let mut paths_json = serde_json::Map::new();
    for (t, mut item) in paths {
        if all_hosts.len() > 1 {
            let servers: Vec<Value> = servers_of[&t]
                .iter()
                .map(|h| json!({"url": format!("http://{h}")}))
                .collect();
            item.insert("servers".into(), json!(servers));
        }
        paths_json.insert(t, Value::Object(item));
    }
    let mut doc = json!({
        "openapi": "3.1.0",
        "info": {"title": "API inventory observed by apitap", "version": "observed",
                 "description": "Endpoints, parameters and schemas inferred from traffic."},
        "servers": all_hosts.iter().map(|h| json!({"url": format!("http://{h}")})).collect::<Vec<_>>(),
        "paths": paths_json,
        "x-apitap-not-found-only": guesses.len(),
    });
    if !schemes.is_empty() {
        doc["components"] = json!({"securitySchemes": schemes});
    }
    doc
}
