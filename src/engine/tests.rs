//! Each match criterion, scope, entity kind and threshold type of the rule language, the
//! episode and escalation logic, trusted proxies, risk decay and cross-shard ownership.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use super::*;
use crate::http::Message;
use crate::redact::Redactor;

const S: u64 = 1_000_000_000;

/// A transaction builder.
#[derive(Clone)]
struct T {
    method: &'static str,
    uri: String,
    status: u16,
    req_headers: Vec<(String, String)>,
    req_body: Vec<u8>,
    resp_headers: Vec<(String, String)>,
    resp_body: Vec<u8>,
    ts: Ts,
    latency_us: u64,
    src: u8,
}

fn t(method: &'static str, uri: &str, status: u16) -> T {
    T {
        method,
        uri: uri.into(),
        status,
        req_headers: vec![("Host".into(), "api.example".into())],
        req_body: Vec::new(),
        resp_headers: Vec::new(),
        resp_body: Vec::new(),
        ts: 1_000 * S,
        latency_us: 1000,
        src: 9,
    }
}

impl T {
    fn h(mut self, n: &str, v: &str) -> T {
        self.req_headers.push((n.into(), v.into()));
        self
    }
    fn body(mut self, ct: &str, b: &str) -> T {
        self.req_headers.push(("Content-Type".into(), ct.into()));
        self.req_body = b.as_bytes().to_vec();
        self
    }
    fn resp(mut self, ct: &str, b: &str) -> T {
        self.resp_headers.push(("Content-Type".into(), ct.into()));
        self.resp_body = b.as_bytes().to_vec();
        self
    }
    fn at(mut self, secs: f64) -> T {
        self.ts = 1_000 * S + (secs * 1e9) as u64;
        self
    }
    fn from(mut self, last_octet: u8) -> T {
        self.src = last_octet;
        self
    }
    fn tx(&self) -> (FlowMeta, Transaction) {
        let q = Message {
            method: self.method.into(),
            uri: self.uri.clone(),
            headers: self.req_headers.clone().into(),
            body_len: self.req_body.len() as u64,
            body: self.req_body.clone(),
            start: self.ts,
            end: self.ts,
            minor: 1,
            ..Default::default()
        };
        let r = Message {
            status: self.status,
            headers: self.resp_headers.clone().into(),
            body_len: self.resp_body.len() as u64,
            body: self.resp_body.clone(),
            start: self.ts + self.latency_us * 1000,
            end: self.ts + self.latency_us * 1000,
            minor: 1,
            ..Default::default()
        };
        let meta = FlowMeta {
            flow_id: 7,
            community_id: Arc::from("1:x"),
            src: IpAddr::V4(Ipv4Addr::new(10, 0, 0, self.src)),
            sport: 40000,
            dst: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
            dport: 80,
        };
        (meta, Transaction::new(Some(q), Some(r), false))
    }
}

struct Harness {
    engine: Engine,
    red: Redactor,
    trusted: Vec<Cidr>,
    alerts: Vec<Alert>,
    entities: Vec<entity::EntityReport>,
}

fn harness(rules: &str) -> Harness {
    harness_with(rules, EngineConfig::default())
}

fn harness_with(rules: &str, cfg: EngineConfig) -> Harness {
    let rs = RuleSet::parse("test.toml", rules).unwrap_or_else(|e| panic!("{e}"));
    Harness {
        trusted: cfg.trusted_proxies.clone(),
        engine: Engine::new(Arc::new(rs), cfg, 0, 1),
        red: Redactor::new(b"k"),
        alerts: Vec::new(),
        entities: Vec::new(),
    }
}

impl Harness {
    fn feed(&mut self, x: &T) -> usize {
        let (meta, tx) = x.tx();
        let auth = self.red.auth(tx.request.as_ref().expect("request"));
        let ep = crate::catalog::endpoint_of(&tx, &meta).expect("endpoint");
        let (host, endpoint) = (ep.host(), ep.method_template());
        let client = client_ip(&meta, &tx, &self.trusted);
        let v = View::new(&meta, &tx, &auth, client, host, endpoint, &x.uri);
        let mut out = Vec::new();
        let mut cross = Vec::new();
        self.engine.on_tx(&v, &mut out, &mut cross);
        assert!(cross.is_empty(), "one shard owns everything");
        let before = self.alerts.len();
        for o in out {
            match o {
                Out::Alert(a) => self.alerts.push(*a),
                Out::Entity(e) => self.entities.push(*e),
            }
        }
        self.alerts.len() - before
    }

    fn rule_alerts(&self, id: &str) -> Vec<&Alert> {
        self.alerts.iter().filter(|a| a.rule_id == id).collect()
    }
}

const SEED: &str = r#"
[[rule]]
id = "seed"
sid = 1
type = "forced_browsing"
match = { status = 404 }
threshold = { count = 10, window = 10 }
"#;

#[test]
fn seed_rule_fires_on_the_eleventh_404_within_ten_seconds_only() {
    let mut h = harness(SEED);
    for i in 0..10 {
        h.feed(&t("GET", &format!("/x{i}"), 404).at(i as f64 * 0.5));
    }
    assert!(h.alerts.is_empty(), "ten is not more than ten");
    h.feed(&t("GET", "/x10", 404).at(5.5));
    let a = h.rule_alerts("seed");
    assert_eq!(a.len(), 1);
    assert_eq!((a[0].count, a[0].key.value.as_str()), (11, "10.0.0.9"));
    assert_eq!(a[0].samples.len(), 5);

    // The same eleven spread over 22 s never have more than ten in a window.
    let mut h = harness(SEED);
    for i in 0..11 {
        h.feed(&t("GET", "/y", 404).at(i as f64 * 2.0));
    }
    assert!(h.alerts.is_empty());
    // 200s do not count; another client has its own window.
    let mut h = harness(SEED);
    for i in 0..20 {
        h.feed(
            &t("GET", "/y", if i % 2 == 0 { 200 } else { 404 })
                .at(i as f64 * 0.1)
                .from(1 + (i % 4) as u8),
        );
    }
    assert!(h.alerts.is_empty());
}

#[test]
fn one_alert_per_episode_again_on_escalation_and_after_quiet() {
    let mut h = harness(SEED);
    for i in 0..43 {
        h.feed(&t("GET", "/x", 404).at(i as f64 * 0.05));
    }
    assert_eq!(
        h.rule_alerts("seed").len(),
        1,
        "11..43 is one episode: doubling is not escalation"
    );
    h.feed(&t("GET", "/x", 404).at(2.2));
    assert_eq!(h.rule_alerts("seed").len(), 2, "the count grew 4x: escalation");
    assert_eq!(h.rule_alerts("seed")[1].count, 44);
    // quiet (default: max(window, 60 s)) then a fresh burst alerts again
    for i in 0..11 {
        h.feed(&t("GET", "/x", 404).at(100.0 + i as f64 * 0.1));
    }
    assert_eq!(h.rule_alerts("seed").len(), 3);
}

#[test]
fn escalate_factor_is_configurable_and_zero_means_once_per_episode() {
    let rule = |esc: &str| {
        format!(
            "[[rule]]\nid = \"seed\"\nsid = 1\ntype = \"forced_browsing\"\nmatch = {{ status = 404 }}\nthreshold = {{ count = 10, window = 10 }}\n{esc}\n"
        )
    };
    let mut h = harness(&rule("escalate = 2"));
    for i in 0..22 {
        h.feed(&t("GET", "/x", 404).at(i as f64 * 0.1));
    }
    assert_eq!(h.rule_alerts("seed").len(), 2, "x2: at 11 and 22");
    let mut h = harness(&rule("escalate = 0"));
    for i in 0..200 {
        h.feed(&t("GET", "/x", 404).at(i as f64 * 0.01));
    }
    assert_eq!(h.rule_alerts("seed").len(), 1);
    assert!(RuleSet::parse("t.toml", &rule("escalate = -1")).is_err());
}

#[test]
fn distinct_evidence_is_a_true_count_with_the_values_tried() {
    let rules = r#"
[[rule]]
id = "users"
sid = 2
type = "credential_stuffing"
match = { status = 401 }
threshold = { count = 10, window = 300, distinct = "param.username" }
"#;
    let mut h = harness(rules);
    for i in 0..98 {
        h.feed(
            &t("POST", "/login", 401)
                .body(
                    "application/json",
                    &format!("{{\"username\":\"user{i}\",\"password\":\"pw{i}\"}}"),
                )
                .at(i as f64 * 0.1),
        );
    }
    let a = h.rule_alerts("users");
    let last = a.last().expect("alert");
    // alerts at 11 and (x4) 44 names: each says how many were really tried by then (the
    // window itself keeps only threshold + 1)
    assert_eq!(a.len(), 2);
    assert_eq!(last.count, 44);
    assert_eq!(
        last.distinct,
        Some(44),
        "the episode's true distinct count, not the threshold"
    );
    assert!(!last.distinct_estimated);
    assert_eq!(last.values.len(), MAX_VALUES);
    assert_eq!(last.values[0], "user0");
    // past the exact bound the count is an estimate, and says so
    let mut h = harness(rules);
    for i in 0..2000 {
        h.feed(
            &t("POST", "/login", 401)
                .body("application/json", &format!("{{\"username\":\"u{i}\"}}"))
                .at(i as f64 * 0.01),
        );
    }
    let last = h.rule_alerts("users").last().cloned().expect("alert");
    let d = last.distinct.expect("distinct") as f64;
    assert_eq!(last.count, 704, "alerts at 11, 44, 176 and 704 names");
    assert!(last.distinct_estimated && (560.0..850.0).contains(&d), "{d}");
    // a secret field is counted, never listed
    let secret = rules.replace("param.username", "param.password");
    let mut h = harness(&secret);
    for i in 0..20 {
        h.feed(
            &t("POST", "/login", 401)
                .body("application/json", &format!("{{\"password\":\"hunter{i}\"}}"))
                .at(i as f64 * 0.1),
        );
    }
    let a = h.rule_alerts("users");
    assert!(!a.is_empty() && a.iter().all(|a| a.values.is_empty()));
}

#[test]
fn id_walks_count_found_objects_not_404_guesses() {
    let rules = r#"
[[rule]]
id = "enum"
sid = 3
type = "enumeration"
match = { endpoint = "*{id}*" }
threshold = { count = 40, window = 120, distinct = "path.id", per = "endpoint", found = true }
"#;
    // a content-discovery tool's numeric guesses, all 404: not enumeration
    let mut h = harness(rules);
    for i in 0..300 {
        h.feed(&t("GET", &format!("/api/{}", 1990 + i), 404).at(i as f64 * 0.05));
    }
    assert!(h.rule_alerts("enum").is_empty());
    // a walk over a real route: objects found, with the route's own 404s for gaps
    let mut h = harness(rules);
    for i in 0..60 {
        let status = if i % 5 == 4 { 404 } else { 200 };
        h.feed(&t("GET", &format!("/api/v1/users/{}", 2890 + i), status).at(i as f64 * 0.5));
    }
    assert_eq!(h.rule_alerts("enum").len(), 1);
}

/// A rule that fires on the first match of `m`.
fn once(m: &str) -> String {
    format!(
        "[[rule]]\nid = \"r\"\nsid = 5\ntype = \"scanner\"\nmatch = {m}\nthreshold = {{ count = 0, window = 60 }}\n"
    )
}

#[test]
fn every_match_criterion_has_a_hit_and_a_miss() {
    let login = |u: &str| {
        t("POST", "/api/login", 401).body(
            "application/json",
            &format!("{{\"username\":\"{u}\",\"password\":\"x\"}}"),
        )
    };
    let cases: Vec<(&str, T, T)> = vec![
        (
            "{ method = [\"DELETE\", \"PUT\"] }",
            t("DELETE", "/a", 200),
            t("GET", "/a", 200),
        ),
        (
            "{ path = \"/admin/*\" }",
            t("GET", "/admin/x/y", 200),
            t("GET", "/api/admin", 200),
        ),
        (
            "{ endpoint = \"GET /users/{id}\" }",
            t("GET", "/users/42", 200),
            t("GET", "/users/me", 200),
        ),
        ("{ status = \"500-599\" }", t("GET", "/a", 503), t("GET", "/a", 404)),
        ("{ status = [401, 403] }", t("GET", "/a", 403), t("GET", "/a", 402)),
        (
            "{ header = \"x-debug\" }",
            t("GET", "/a", 200).h("X-Debug", "1"),
            t("GET", "/a", 200),
        ),
        (
            "{ header_absent = \"user-agent\" }",
            t("GET", "/a", 200),
            t("GET", "/a", 200).h("User-Agent", "curl/8"),
        ),
        (
            "{ header_match = { name = \"user-agent\", regex = \"(?i)python-requests\" } }",
            t("GET", "/a", 200).h("User-Agent", "Python-Requests/2.31"),
            t("GET", "/a", 200).h("User-Agent", "curl/8"),
        ),
        (
            "{ query = \"debug\" }",
            t("GET", "/a?debug=1", 200),
            t("GET", "/a?x=1", 200),
        ),
        (
            "{ query = { name = \"limit\", regex = \"^[0-9]{4,}$\" } }",
            t("GET", "/a?limit=10000", 200),
            t("GET", "/a?limit=10", 200),
        ),
        (
            "{ body = \"username\" }",
            login("bob"),
            t("POST", "/api/login", 401).body("application/json", "{}"),
        ),
        (
            "{ body = { name = \"role\", regex = \"^admin$\" } }",
            t("POST", "/u", 200).body("application/x-www-form-urlencoded", "name=x&role=admin"),
            t("POST", "/u", 200).body("application/x-www-form-urlencoded", "name=x&role=user"),
        ),
        (
            "{ param = \"email\" }",
            t("GET", "/l?email=a%40b.c", 200),
            t("GET", "/l?mail=a", 200),
        ),
        (
            "{ request_bytes = \">10\" }",
            t("POST", "/a", 200).body("text/plain", "0123456789AB"),
            t("POST", "/a", 200).body("text/plain", "0"),
        ),
        (
            "{ response_bytes = \"100-200\" }",
            t("GET", "/a", 200).resp("text/plain", &"x".repeat(150)),
            t("GET", "/a", 200).resp("text/plain", "x"),
        ),
        (
            "{ latency_ms = \">500\" }",
            T {
                latency_us: 900_000,
                ..t("GET", "/a", 200)
            },
            t("GET", "/a", 200),
        ),
        (
            "{ auth = \"none\" }",
            t("GET", "/a", 200),
            t("GET", "/a", 200).h("Authorization", "Bearer abc"),
        ),
        (
            "{ auth = [\"basic\"] }",
            t("GET", "/a", 200).h("Authorization", "Basic dXNlcjpwYXNz"),
            t("GET", "/a", 200),
        ),
        (
            "{ content_type = \"application/*json\" }",
            t("POST", "/a", 200).body("application/json; charset=utf-8", "{}"),
            t("POST", "/a", 200).body("text/plain", "x"),
        ),
        (
            "{ response_content_type = \"text/html\" }",
            t("GET", "/a", 200).resp("text/html", "<p>"),
            t("GET", "/a", 200).resp("application/json", "{}"),
        ),
        (
            "{ detector = \"injection\" }",
            t("GET", "/a?q=1%27%20OR%20%271%27%3D%271", 200),
            t("GET", "/a?q=O%27Brien", 200),
        ),
        (
            "{ detector = \"ssrf\" }",
            t("GET", "/fetch?url=http://169.254.169.254/", 200),
            t("GET", "/fetch?url=https://example.com/", 200),
        ),
        (
            "{ detector = \"auth_failure\" }",
            login("a"),
            t("POST", "/api/login", 200).resp("application/json", "{\"token\":\"x\"}"),
        ),
        (
            "{ all = [{ method = \"GET\" }, { status = 404 }] }",
            t("GET", "/a", 404),
            t("POST", "/a", 404),
        ),
        (
            "{ any = [{ status = 401 }, { status = 403 }] }",
            t("GET", "/a", 401),
            t("GET", "/a", 404),
        ),
        (
            "{ not = { method = \"GET\" } }",
            t("POST", "/a", 200),
            t("GET", "/a", 200),
        ),
    ];
    for (m, hit, miss) in cases {
        let mut h = harness(&once(m));
        assert_eq!(h.feed(&hit), 1, "{m} should match");
        let mut h = harness(&once(m));
        assert_eq!(h.feed(&miss), 0, "{m} should not match");
    }
}

#[test]
fn scopes_host_group_and_endpoint() {
    let rules = r#"
[groups]
login = ["POST */login"]
[[rule]]
id = "host"
sid = 1
type = "scanner"
scope = { host = "*.internal" }
threshold = { count = 0 }
[[rule]]
id = "group"
sid = 2
type = "brute_force"
scope = { group = "login" }
threshold = { count = 0 }
[[rule]]
id = "ep"
sid = 3
type = "enumeration"
scope = { endpoint = "GET /users/{id}" }
threshold = { count = 0 }
"#;
    let mut h = harness(rules);
    let mut x = t("GET", "/a", 200);
    x.req_headers = vec![("Host".into(), "billing.internal".into())];
    h.feed(&x);
    h.feed(&t("POST", "/v2/login", 200).from(2));
    h.feed(&t("GET", "/users/5", 200).from(3));
    h.feed(&t("GET", "/users/5/orders", 200).from(4));
    let ids: Vec<(&str, &str)> = h
        .alerts
        .iter()
        .map(|a| (a.rule_id.as_str(), a.key.value.as_str()))
        .collect();
    assert_eq!(
        ids,
        vec![("host", "10.0.0.9"), ("group", "10.0.0.2"), ("ep", "10.0.0.3")]
    );
}

#[test]
fn entity_kinds_and_combinations() {
    let rule = |e: &str| {
        format!(
            "[[rule]]\nid = \"r\"\nsid = 1\ntype = \"brute_force\"\nentity = {e}\nmatch = {{ status = 401 }}\nthreshold = {{ count = 2, window = 60 }}\n"
        )
    };
    // principal: three addresses, one Basic user -> one entity with three hits
    let mut h = harness(&rule("\"principal\""));
    for i in 0..3u8 {
        h.feed(
            &t("GET", "/a", 401)
                .h("Authorization", "Basic Ym9iOng=")
                .from(10 + i)
                .at(i as f64),
        );
    }
    assert_eq!(h.alerts.len(), 1);
    assert_eq!(
        (h.alerts[0].key.kind.as_ref(), h.alerts[0].key.value.as_str()),
        ("principal", "bob")
    );
    // no principal: the rule cannot count
    let mut h = harness(&rule("\"principal\""));
    for i in 0..5 {
        h.feed(&t("GET", "/a", 401).at(i as f64));
    }
    assert!(h.alerts.is_empty());
    // api_key: only API-key credentials, keyed hash as the value
    let mut h = harness(&rule("\"api_key\""));
    for i in 0..3u8 {
        h.feed(&t("GET", "/a", 401).h("X-API-Key", "secret-key-1").from(20 + i));
    }
    assert_eq!(h.alerts.len(), 1);
    assert_ne!(h.alerts[0].key.value, "secret-key-1", "the key itself never appears");
    // user agent, and ip + user agent
    let mut h = harness(&rule("\"user_agent\""));
    for i in 0..3u8 {
        h.feed(&t("GET", "/a", 401).h("User-Agent", "evil/1").from(30 + i));
    }
    assert_eq!(h.alerts.len(), 1);
    let mut h = harness(&rule("[\"ip\", \"user_agent\"]"));
    for i in 0..3u8 {
        h.feed(&t("GET", "/a", 401).h("User-Agent", "evil/1").from(30 + i));
    }
    assert!(h.alerts.is_empty(), "three entities of one hit each");
    for _ in 0..3 {
        h.feed(&t("GET", "/a", 401).h("User-Agent", "evil/1").from(40));
    }
    assert_eq!(h.alerts.len(), 1);
    assert_eq!(h.alerts[0].key.kind, "ip+user_agent");
}

#[test]
fn distinct_counts_on_a_path_parameter_and_a_json_body_field() {
    let rules = r#"
[[rule]]
id = "ids"
sid = 1
type = "enumeration"
match = { endpoint = "GET /users/{id}" }
threshold = { count = 5, window = 60, distinct = "path.id", per = "endpoint" }
[[rule]]
id = "users"
sid = 2
type = "credential_stuffing"
match = { status = 401 }
threshold = { count = 3, window = 60, distinct = "body.username" }
"#;
    let mut h = harness(rules);
    for _ in 0..20 {
        h.feed(&t("GET", "/users/1", 200)); // the same id over and over
    }
    assert!(h.rule_alerts("ids").is_empty());
    for i in 2..7 {
        h.feed(&t("GET", &format!("/users/{i}"), 200));
    }
    assert_eq!(h.rule_alerts("ids").len(), 1, "six distinct ids");
    assert_eq!(h.rule_alerts("ids")[0].distinct, Some(6));
    for u in ["a", "a", "b", "c"] {
        h.feed(&t("POST", "/login", 401).body("application/json", &format!("{{\"username\":\"{u}\"}}")));
    }
    assert!(h.rule_alerts("users").is_empty());
    h.feed(&t("POST", "/login", 401).body("application/json", "{\"username\":\"d\"}"));
    assert_eq!(h.rule_alerts("users").len(), 1);
}

#[test]
fn forwarded_for_is_honoured_only_from_trusted_proxies() {
    let cfg = EngineConfig {
        trusted_proxies: vec![Cidr::parse("10.0.0.250/32").expect("cidr")],
        ..EngineConfig::default()
    };
    let mut h = harness_with(SEED, cfg.clone());
    for i in 0..11 {
        h.feed(
            &t("GET", "/x", 404)
                .h("X-Forwarded-For", "198.51.100.7, 10.0.0.250")
                .from(250)
                .at(i as f64 * 0.1),
        );
    }
    assert_eq!(h.alerts[0].key.value, "198.51.100.7", "behind the trusted proxy");
    // A client that is not a trusted proxy cannot choose its entity.
    let mut h = harness_with(SEED, cfg);
    for i in 0..11 {
        h.feed(
            &t("GET", "/x", 404)
                .h("X-Forwarded-For", &format!("203.0.113.{i}"))
                .from(66)
                .at(i as f64 * 0.1),
        );
    }
    assert_eq!(h.alerts.len(), 1);
    assert_eq!(h.alerts[0].key.value, "10.0.0.66");
    assert!(
        Cidr::parse("10.0.0.0/8")
            .expect("cidr")
            .contains("10.9.8.7".parse().expect("ip"))
    );
    assert!(
        !Cidr::parse("fd00::/8")
            .expect("cidr")
            .contains("10.9.8.7".parse().expect("ip"))
    );
}

#[test]
fn risk_decays_and_the_threshold_alert_fires_once_per_escalation() {
    let rules = r#"
[[rule]]
id = "r"
sid = 1
type = "injection"
risk = 30
match = { status = 500 }
threshold = { count = 0, window = 1 }
quiet = 0
"#;
    let cfg = EngineConfig {
        entity: EntityConfig {
            half_life_s: 100.0,
            thresholds: vec![50.0, 100.0],
            ..EntityConfig::default()
        },
        ..EngineConfig::default()
    };
    let mut h = harness_with(rules, cfg);
    h.feed(&t("GET", "/a", 500).at(0.0));
    let key = EntityKey::ip("10.0.0.9".parse().expect("ip"));
    assert!((h.engine.entities.risk(&key, 1_000 * S) - 30.0).abs() < 1e-6);
    assert!(
        (h.engine.entities.risk(&key, 1_100 * S) - 15.0).abs() < 1e-6,
        "one half-life later"
    );
    h.feed(&t("GET", "/a", 500).at(2.0)); // ~59.6 -> crosses 50
    let rt = |h: &Harness| h.alerts.iter().filter(|a| a.itype == "risk_threshold").count();
    assert_eq!(rt(&h), 1);
    assert_eq!(h.entities.len(), 1, "an entity event with the profile");
    assert_eq!(h.entities[0].indicators[0].count, 2);
    h.feed(&t("GET", "/a", 500).at(4.0)); // ~89: above 50 already, below 100
    assert_eq!(rt(&h), 1, "no second alert for the same level");
    h.feed(&t("GET", "/a", 500).at(6.0)); // ~118 -> crosses 100
    assert_eq!(rt(&h), 2);
    // a long quiet: risk decays below half the first level; a new escalation alerts again
    h.feed(&t("GET", "/a", 500).at(2000.0));
    h.feed(&t("GET", "/a", 500).at(2001.0));
    assert_eq!(rt(&h), 3);
}

#[test]
fn account_takeover_after_a_run_of_failures() {
    let mut h = harness("");
    let fail = t("POST", "/api/login", 401).body("application/json", "{\"username\":\"amy\",\"password\":\"x\"}");
    for i in 0..6 {
        h.feed(&fail.clone().at(i as f64));
    }
    let ok = t("POST", "/api/login", 200)
        .body("application/json", "{\"username\":\"amy\",\"password\":\"y\"}")
        .resp("application/json", "{\"token\":\"abc\"}");
    h.feed(&ok.clone().at(7.0));
    let ato: Vec<&Alert> = h.alerts.iter().filter(|a| a.itype == "account_takeover").collect();
    assert_eq!(ato.len(), 1);
    assert!(ato[0].compromise);
    // One typo then success is a user, not a takeover.
    let mut h = harness("");
    h.feed(&fail.clone().from(3));
    h.feed(&ok.clone().from(3).at(1.0));
    assert!(h.alerts.is_empty());
    // An expired token: 401s on API calls, then a refresh grant. Not a takeover either.
    let mut h = harness("");
    for i in 0..6 {
        h.feed(
            &t("GET", "/api/orders", 401)
                .h("Authorization", "Bearer old")
                .from(4)
                .at(i as f64 * 0.1),
        );
    }
    let refresh = t("POST", "/oauth/token", 200)
        .body(
            "application/x-www-form-urlencoded",
            "grant_type=refresh_token&refresh_token=abc",
        )
        .resp("application/json", "{\"access_token\":\"x\"}")
        .from(4)
        .at(1.0);
    h.feed(&refresh);
    assert!(h.alerts.iter().all(|a| a.itype != "account_takeover"), "{:?}", h.alerts);
    // A stray refresh_token field does not hide a password login from the detectors.
    let mut h = harness("");
    let sneaky = |st: u16| {
        t("POST", "/api/login", st)
            .body(
                "application/json",
                "{\"username\":\"amy\",\"password\":\"x\",\"refresh_token\":\"\"}",
            )
            .from(5)
    };
    for i in 0..6 {
        h.feed(&sneaky(401).at(i as f64));
    }
    h.feed(&sneaky(200).resp("application/json", "{\"token\":\"t\"}").at(7.0));
    assert!(h.alerts.iter().any(|a| a.itype == "account_takeover"), "{:?}", h.alerts);
}

#[test]
fn distinct_values_that_fell_out_of_the_window_do_not_count() {
    let rules = r#"
[[rule]]
id = "ids"
sid = 1
type = "enumeration"
match = { endpoint = "GET /items/{id}" }
threshold = { count = 40, window = 120, distinct = "path.id", per = "endpoint" }
"#;
    let mut h = harness(rules);
    // a new item every 100 s for three hours: never more than two in any 120 s
    for i in 0..108 {
        h.feed(&t("GET", &format!("/items/{i}"), 200).at(i as f64 * 100.0));
    }
    assert!(
        h.alerts.is_empty(),
        "{:?}",
        h.alerts.first().map(|a| (&a.rule_id, a.distinct))
    );
}

#[test]
fn a_quiet_shorter_than_the_window_keeps_the_window() {
    let rules = r#"
[[rule]]
id = "r"
sid = 1
type = "scanner"
quiet = 5
match = { status = 404 }
threshold = { count = 10, window = 60 }
"#;
    let mut h = harness(rules);
    for i in 0..11 {
        h.feed(&t("GET", "/x", 404).at(i as f64 * 5.5));
    }
    assert_eq!(h.rule_alerts("r").len(), 1, "eleven in 60 s, each 5.5 s apart");
}

#[test]
fn matches_for_entities_owned_elsewhere_travel_to_their_shard() {
    let rules = r#"
[[rule]]
id = "p"
sid = 1
type = "enumeration"
entity = "principal"
threshold = { count = 3, window = 60 }
"#;
    let rs = Arc::new(RuleSet::parse("t", rules).expect("rules"));
    let mut shards: Vec<Engine> = (0..4)
        .map(|i| Engine::new(rs.clone(), EngineConfig::default(), i, 4))
        .collect();
    let red = Redactor::new(b"k");
    let mut alerts = 0;
    for i in 0..4u8 {
        let x = t("GET", "/a", 200).h("Authorization", "Basic Ym9iOng=").from(i * 37);
        let (meta, tx) = x.tx();
        let auth = red.auth(tx.request.as_ref().expect("request"));
        let home = shard_of_ip(meta.src, 4);
        let v = View::new(&meta, &tx, &auth, meta.src, "api.example", "GET /a", &x.uri);
        let (mut out, mut cross) = (Vec::new(), Vec::new());
        shards[home].on_tx(&v, &mut out, &mut cross);
        for (to, m) in cross {
            assert_ne!(to, home);
            shards[to].on_cross(&m, &mut out);
        }
        alerts += out.iter().filter(|o| matches!(o, Out::Alert(_))).count();
    }
    assert_eq!(alerts, 1, "four matches from four addresses counted in one place");
}

#[test]
fn entity_table_is_capped() {
    let cfg = EngineConfig {
        entity: EntityConfig {
            max_entities: 1000,
            ..EntityConfig::default()
        },
        max_states: 1000,
        ..EngineConfig::default()
    };
    let mut h = harness_with(SEED, cfg);
    for i in 0..20_000u32 {
        let mut x = t("GET", "/x", 404).at(i as f64 * 0.001);
        x.src = (i % 250) as u8;
        let (mut meta, tx) = x.tx();
        meta.src = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i));
        let auth = h.red.auth(tx.request.as_ref().expect("request"));
        let v = View::new(&meta, &tx, &auth, meta.src, "h", "GET /x", &x.uri);
        let (mut out, mut cross) = (Vec::new(), Vec::new());
        h.engine.on_tx(&v, &mut out, &mut cross);
    }
    let st = h.engine.snapshot_stats();
    assert!(st.entities <= 1000 && st.states <= 1000, "{st:?}");
    assert!(st.entity_evictions >= 19_000 && st.state_evictions >= 19_000, "{st:?}");
}

#[test]
fn a_principal_profile_links_the_addresses_behind_it() {
    let rules = r#"
[[rule]]
id = "p"
sid = 1
type = "enumeration"
risk = 60
entity = "principal"
match = { endpoint = "GET /users/{id}" }
threshold = { count = 5, window = 60, distinct = "path.id" }
"#;
    let mut h = harness(rules);
    for i in 0..6u8 {
        h.feed(
            &t("GET", &format!("/users/{i}"), 200)
                .h("Authorization", "Basic bWFsbG9yeTp4")
                .h("User-Agent", "walker/1")
                .from(100 + i % 3)
                .at(i as f64),
        );
    }
    assert_eq!(h.rule_alerts("p").len(), 1);
    let e = h
        .entities
        .iter()
        .find(|e| e.key.kind == "principal")
        .expect("entity event");
    assert_eq!(e.key.value, "mallory");
    let mut addrs: Vec<String> = e.addresses.iter().map(|a| a.to_string()).collect();
    addrs.sort();
    assert_eq!(addrs, ["10.0.0.100", "10.0.0.101", "10.0.0.102"]);
    assert_eq!(e.user_agents, ["walker/1"]);
    assert_eq!(e.indicators[0].itype, "enumeration");
    assert_eq!(e.requests, 6);
}

#[test]
fn one_account_failing_from_many_addresses_is_its_own_entity() {
    let mut h = harness(crate::rules::DEFAULT_RULES);
    let fail = |u: &str, ip: u8| {
        t("POST", "/api/login", 401)
            .body(
                "application/json",
                &format!("{{\"username\":\"{u}\",\"password\":\"x\"}}"),
            )
            .from(ip)
    };
    // near miss: five addresses, and one address failing for its own account many times
    for i in 0..5u8 {
        h.feed(&fail("carol", 50 + i).at(i as f64));
    }
    for i in 0..5 {
        h.feed(&fail("dave", 70).at(10.0 + i as f64));
    }
    assert!(h.rule_alerts("account-attacked-from-many-addresses").is_empty());
    h.feed(&fail("carol", 60).at(20.0));
    let a = h.rule_alerts("account-attacked-from-many-addresses");
    assert_eq!(a.len(), 1);
    assert_eq!(
        (a[0].key.kind.as_ref(), a[0].key.value.as_str()),
        ("param.username", "carol")
    );
    assert_eq!(a[0].distinct, Some(6));
}

#[test]
fn duplicate_forwarded_for_lines_are_one_list_and_the_proxy_line_wins() {
    // HAProxy appends its own X-Forwarded-For line after the client's forged one: the
    // right-most untrusted hop across all lines is the client.
    let cfg = EngineConfig {
        trusted_proxies: vec![Cidr::parse("10.0.0.250/32").expect("cidr")],
        ..EngineConfig::default()
    };
    let mut h = harness_with(SEED, cfg);
    for i in 0..30 {
        h.feed(
            &t("GET", "/x", 404)
                .h("X-Forwarded-For", &format!("203.0.113.{i}"))
                .h("X-Forwarded-For", "198.51.100.7")
                .from(250)
                .at(i as f64 * 0.1),
        );
    }
    let keys: std::collections::BTreeSet<&str> = h.alerts.iter().map(|a| a.key.value.as_str()).collect();
    assert_eq!(
        keys.into_iter().collect::<Vec<_>>(),
        ["198.51.100.7"],
        "one attacker, not 30 forged ones"
    );
}

#[test]
fn an_injection_tool_cannot_teach_the_auth_profile_that_an_endpoint_is_public() {
    let mut a = AuthTracker::new(crate::engine::BypassConfig::default());
    let ok = |x: &T| {
        let (meta, tx) = x.tx();
        (meta.clone(), tx)
    };
    // 12 clients call the profile endpoint with their tokens
    for c in 0..12u8 {
        let (meta, tx) = ok(&t("GET", &format!("/api/users/{}/profile", 100 + c as u32), 200)
            .h("Authorization", "Bearer abc.def.ghi")
            .from(20 + c));
        assert!(!a.observe(&meta, &tx, meta.src, &mut None));
    }
    // sqlmap is answered 200 without credentials, many times: judged, not learned from
    for i in 0..30 {
        let (meta, tx) = ok(&t(
            "GET",
            &format!("/api/users/{i}/profile?id=1%27%20OR%20%271%27=%271"),
            200,
        )
        .h("User-Agent", "sqlmap/1.7.2#stable (https://sqlmap.org)")
        .from(66));
        assert!(
            a.observe(&meta, &tx, meta.src, &mut None),
            "an attack answered 2xx without credentials is a bypass too"
        );
    }
    // then a plain curl script walks profiles without a token: still a bypass
    let (meta, tx) = ok(&t("GET", "/api/users/7/profile", 200)
        .h("User-Agent", "curl/7.88.1")
        .from(77));
    assert!(
        a.observe(&meta, &tx, meta.src, &mut None),
        "the poisoned profile must not hide the bypass"
    );
    // a near miss: an endpoint that many clients call without credentials is public
    let mut a = AuthTracker::new(crate::engine::BypassConfig::default());
    for c in 0..12u8 {
        let (meta, tx) = ok(&t("GET", "/api/products/1", 200)
            .h("Authorization", "Bearer x.y.z")
            .from(20 + c));
        a.observe(&meta, &tx, meta.src, &mut None);
    }
    let mut last = false;
    for c in 0..5u8 {
        let (meta, tx) = ok(&t("GET", "/api/products/1", 200).from(100 + c));
        last = a.observe(&meta, &tx, meta.src, &mut None);
    }
    assert!(!last, "five anonymous browsers: a public endpoint");
}

#[test]
fn flagged_traffic_does_not_teach_the_error_baseline() {
    let cfg = baseline::BaselineConfig::default();
    let mut b = baseline::Baselines::new(cfg.clone());
    let bucket = cfg.endpoint_bucket_s * S;
    // learning windows full of an early attacker's 500s (flagged), then clean traffic with
    // the same error ratio must still be a spike
    let mut found = 0;
    for w in 0..cfg.learn_buckets as u64 {
        for i in 0..40 {
            let ts = 1_000 * S + w * bucket + i * (bucket / 50);
            let attack = i % 2 == 0;
            found += b
                .endpoint("h GET /x", ts, if attack { 500 } else { 200 }, Some(1000), !attack)
                .len();
        }
    }
    assert_eq!(found, 0);
    let w = cfg.learn_buckets as u64;
    for i in 0..40 {
        let ts = 1_000 * S + w * bucket + i * (bucket / 50);
        found += b
            .endpoint("h GET /x", ts, if i % 2 == 0 { 500 } else { 200 }, Some(1000), true)
            .len();
    }
    assert!(
        found > 0,
        "half the calls failing is a spike against a clean baseline of none"
    );
}

#[test]
fn a_takeover_alert_names_the_account_and_carries_the_login_flow() {
    let mut h = harness("");
    for (i, user) in ["amy", "bob", "amy", "cy", "dee", "amy"].iter().enumerate() {
        h.feed(
            &t("POST", "/api/login", 401)
                .body(
                    "application/json",
                    &format!("{{\"username\":\"{user}\",\"password\":\"pw{i}\"}}"),
                )
                .at(i as f64),
        );
    }
    h.feed(
        &t("POST", "/api/login", 200)
            .body(
                "application/json",
                "{\"username\":\"dee\",\"password\":\"Winter2026!\"}",
            )
            .resp("application/json", "{\"token\":\"abc\"}")
            .at(7.0),
    );
    let a = h
        .alerts
        .iter()
        .find(|a| a.itype == "account_takeover")
        .expect("takeover");
    assert_eq!(a.account.as_deref(), Some("dee"), "the account taken over");
    let http = a.http.as_ref().expect("the login's http");
    assert_eq!((http.method.as_str(), http.status), ("POST", Some(200)));
    assert!(a.meta.is_some(), "the login's flow");
    assert_eq!(a.samples.len(), 5, "the last four failures and the success");
    assert_eq!(a.samples.last().map(|s| s.status), Some(200));
    assert_eq!(a.distinct, Some(4), "accounts tried");
    assert_eq!(a.values, ["amy", "bob", "cy", "dee"]);
    assert_eq!(a.first, 1_000 * S, "from the first failure");
    // the password is nowhere in it
    assert!(!format!("{a:?}").contains("Winter2026"));
}

#[test]
fn paging_through_a_public_catalogue_is_not_enumeration_but_walking_people_is() {
    let rules = r#"
[[rule]]
id = "enum"
sid = 3
type = "enumeration"
match = { endpoint = "*{id}*" }
threshold = { count = 40, window = 120, distinct = "path.id", per = "endpoint", found = "personal" }
"#;
    let mut h = harness(rules);
    for i in 0..80 {
        h.feed(
            &t("GET", &format!("/api/v1/products/{}", 100 + i), 200)
                .h("Authorization", "Bearer partner.token.x")
                .resp(
                    "application/json",
                    &format!("{{\"id\":{i},\"name\":\"lamp {i}\",\"price\":12.5}}"),
                )
                .at(i as f64 * 0.5),
        );
    }
    assert!(
        h.rule_alerts("enum").is_empty(),
        "a partner integration reading products"
    );
    let mut h = harness(rules);
    for i in 0..60 {
        let x = t(
            "GET",
            &format!("/api/v1/users/{}", 2890 + i),
            if i % 7 == 3 { 404 } else { 200 },
        );
        let x = if i % 7 == 3 {
            x.resp("application/json", "{\"error\":\"not found\"}")
        } else {
            x.resp(
                "application/json",
                &format!("{{\"id\":{i},\"email\":\"user{i}@mail.example.org\"}}"),
            )
        };
        h.feed(&x.at(i as f64 * 0.5));
    }
    assert_eq!(h.rule_alerts("enum").len(), 1, "walking other people's records");
    assert!(RuleSet::parse("t.toml", &rules.replace("\"personal\"", "\"maybe\"")).is_err());
}

#[test]
fn a_login_name_is_a_plain_value_never_an_object_holding_a_password() {
    let mut h = harness("");
    let fail = t("POST", "/api/login", 401).body(
        "application/json",
        "{\"user\":{\"email\":\"amy@x.example\",\"password\":\"hunter2\"}}",
    );
    for i in 0..6 {
        h.feed(&fail.clone().at(i as f64));
    }
    h.feed(
        &t("POST", "/api/login", 200)
            .body(
                "application/json",
                "{\"user\":{\"email\":\"amy@x.example\",\"password\":\"Winter2026\"}}",
            )
            .at(7.0),
    );
    let a = h
        .alerts
        .iter()
        .find(|a| a.itype == "account_takeover")
        .expect("takeover");
    let text = format!("{:?} {:?}", a.account, a.values);
    assert!(!text.contains("hunter2") && !text.contains("Winter2026"), "{text}");
    // nested secret-like names are never listed either
    let f = crate::rules::RuleSet::parse(
        "t.toml",
        "[[rule]]\nid = \"x\"\nsid = 1\ntype = \"scanner\"\nmatch = { status = 401 }\nthreshold = { count = 1, window = 60, distinct = \"body.new_password\" }\n",
    )
    .expect("rules");
    assert!(f.rules[0].threshold.distinct.as_ref().is_some_and(|d| d.is_secret()));
}

fn grpc_call(method: &str, code: Option<u32>) -> (FlowMeta, Transaction) {
    let x = t("POST", &format!("/pkg.Svc/{method}"), 200).body("application/grpc", "\0\0\0\0\0");
    let (meta, mut tx) = x.tx();
    tx.grpc = Some(Box::new(crate::http2::grpc::Grpc {
        service: "pkg.Svc".into(),
        method: method.into(),
        status: code,
        ..Default::default()
    }));
    (meta, tx)
}

/// SPEC §4b: `grpc_status` is a match field; a call without a gRPC status never matches.
#[test]
fn grpc_status_is_a_match_field() {
    let rules = r#"
[[rule]]
id = "grpc-unavailable"
sid = 77
type = "error_spike"
match = { grpc_status = ["13-14"] }
threshold = { count = 0, window = 10 }
"#;
    let mut h = harness(rules);
    let mut fire = |meta: &FlowMeta, tx: &Transaction| {
        let auth = h.red.auth(tx.request.as_ref().expect("request"));
        let ep = crate::catalog::endpoint_of(tx, meta).expect("endpoint");
        let (host, endpoint) = (ep.host(), ep.method_template());
        let v = View::new(meta, tx, &auth, meta.src, host, endpoint, "/x");
        let (mut out, mut cross) = (Vec::new(), Vec::new());
        h.engine.on_tx(&v, &mut out, &mut cross);
        out.iter()
            .filter(|o| matches!(o, Out::Alert(a) if a.rule_id == "grpc-unavailable"))
            .count()
    };
    let (m, ok) = grpc_call("Get", Some(0));
    assert_eq!(fire(&m, &ok), 0);
    let (m, plain) = t("POST", "/pkg.Svc/Get", 503).tx();
    assert_eq!(fire(&m, &plain), 0, "an HTTP 503 is not a gRPC status");
    let (m, none) = grpc_call("Get", None);
    assert_eq!(fire(&m, &none), 0);
    let (m, down) = grpc_call("Get", Some(14));
    assert_eq!(fire(&m, &down), 1);
    assert!(RuleSet::parse("r.toml", &rules.replace("13-14", "17")).is_err());
}

/// A failed gRPC call (HTTP 200, grpc-status not OK) is an error for the baselines and the
/// entity profiles, as its HTTP equivalent.
#[test]
fn a_grpc_error_counts_as_its_http_equivalent() {
    let red = Redactor::new(b"k");
    for (code, want) in [
        (Some(0), 200),
        (None, 200),
        (Some(14), 503),
        (Some(13), 500),
        (Some(5), 404),
    ] {
        let (meta, tx) = grpc_call("Get", code);
        let auth = red.auth(tx.request.as_ref().expect("request"));
        let v = View::new(&meta, &tx, &auth, meta.src, "h", "POST /pkg.Svc/Get", "/x");
        assert_eq!(v.status(), want, "grpc-status {code:?}");
    }
}

#[test]
fn rules_sharing_a_condition_each_match_and_a_different_one_does_not() {
    // Three rules with one condition (evaluated once per transaction, the result shared)
    // and one with another: each rule's alert is its own, whatever order they come in.
    let rules = r#"
[[rule]]
id = "a"
sid = 1
type = "scanner"
match = { any = [{ query = "email" }, { body = "email" }] }
threshold = { count = 0, window = 60 }

[[rule]]
id = "other"
sid = 2
type = "scanner"
match = { status = 404 }
threshold = { count = 0, window = 60 }

[[rule]]
id = "b"
sid = 3
type = "scanner"
match = { any = [{ query = "email" }, { body = "email" }] }
threshold = { count = 0, window = 60 }

[[rule]]
id = "c"
sid = 4
type = "scanner"
entity = "principal"
match = { any = [{ query = "email" }, { body = "email" }] }
threshold = { count = 0, window = 60 }
"#;
    let mut h = harness(rules);
    h.feed(&t("GET", "/lookup?email=a%40b.example", 200).h("Authorization", "Bearer tok"));
    for id in ["a", "b", "c"] {
        assert_eq!(h.rule_alerts(id).len(), 1, "rule {id} matches the query");
    }
    assert!(h.rule_alerts("other").is_empty());
    // the next transaction is judged afresh: a body key, then nothing
    h.feed(
        &t("POST", "/lookup", 404)
            .from(2)
            .body("application/json", "{\"e\\u006dail\":\"x@y.example\"}"),
    );
    assert_eq!(h.rule_alerts("a").len(), 2, "an escaped key is still the key");
    assert_eq!(h.rule_alerts("other").len(), 1);
    h.feed(
        &t("POST", "/lookup", 200)
            .from(3)
            .body("application/json", "{\"mail\":\"x\"}"),
    );
    assert_eq!(h.rule_alerts("a").len(), 2, "no email key, no match");
    // the ids follow a reloaded rule set
    let reloaded = RuleSet::parse("t.toml", &once("{ status = 200 }")).unwrap_or_else(|e| panic!("{e}"));
    h.engine.reload(Arc::new(reloaded));
    h.feed(&t("GET", "/x", 200).from(4));
    assert_eq!(h.rule_alerts("r").len(), 1);
}

#[test]
fn flagged_ip_agrees_with_the_entity_key_form() {
    let mut h = harness(SEED);
    for i in 0..40 {
        h.feed(&t("GET", &format!("/x{i}"), 404).at(i as f64 * 0.1));
    }
    let now = 1_010 * S;
    for ip in ["10.0.0.9", "10.0.0.8", "::1"] {
        let a: IpAddr = ip.parse().expect("ip");
        assert_eq!(
            h.engine.entities.flagged_ip(a, now),
            h.engine.entities.flagged(&EntityKey::ip(a), now),
            "{ip}"
        );
    }
}

#[test]
fn may_name_is_false_only_when_the_key_cannot_be_there() {
    assert!(view::may_name(b"a=1&email=x", "email", b"%++"));
    assert!(!view::may_name(b"a=1&mail=x", "email", b"%++"));
    assert!(
        view::may_name(b"a=1&em%61il=x", "email", b"%++"),
        "an escape could spell it"
    );
    assert!(view::may_name(b"{\"e\\u006dail\":1}", "email", b"\\%+"));
    assert!(!view::may_name(b"", "email", b"\\%+"));
    assert!(view::may_name(b"", "", b"\\%+"), "an empty name is never ruled out");
    assert!(
        view::may_name(b"xxemai emailx", "email", b"%++"),
        "a later occurrence counts"
    );
}

/// Transactions of every shape the guards read (statuses of each class, queries, bodies,
/// escapes, detectors, endpoints with and without parameters) and hostile ones (long and
/// binary values, odd statuses).
fn guard_corpus() -> Vec<T> {
    let long = "é".repeat(5000);
    vec![
        t("GET", "/users/42", 200),
        t("GET", "/users/42", 404),
        t("GET", "/users/me", 401),
        t("GET", "/orders/3f2b8a9e-1c2d-4e5f-8a9b-0c1d2e3f4a5b", 200),
        t("GET", "/a?email=x%40y.z", 200),
        t("GET", "/a?em%61il=x", 200),
        t("GET", "/a?e+mail=x&phone=1", 404),
        t("GET", "/products?category=kitchen&page=2", 200),
        t("GET", "/a?", 500),
        t("GET", &format!("/a?q={long}"), 503),
        t("POST", "/api/login", 401).body("application/json", "{\"username\":\"bob\",\"password\":\"x\"}"),
        t("POST", "/api/login", 200).body("application/json", "{\"email\":\"a@b.c\",\"password\":\"x\"}"),
        t("POST", "/api/login", 200).body("application/x-www-form-urlencoded", "email=a%40b&password=x"),
        t("POST", "/u", 200).body("application/json", "{\"e\\u006dail\":\"x\",\"phone\":{\"n\":1}}"),
        t("POST", "/u", 422).body("application/json", &format!("{{\"email\":\"{long}\"}}")),
        t("POST", "/u", 200).body("application/octet-stream", "\u{0}\u{1}\u{ff}email"),
        t("PUT", "/users/7/settings", 204).body("application/json", "[1,2,3]"),
        t("DELETE", "/carts/1/items/2", 100),
        t("GET", "/a", 999),
        t("GET", "/a", 0),
        t("GET", "/a?id=1%27%20OR%201=1--", 200),
        t("GET", "/a", 200).h("User-Agent", "sqlmap/1.7.2#stable (https://sqlmap.org)"),
        t("GET", "/fetch?url=http://169.254.169.254/latest/meta-data/", 200),
        t("GET", "/a", 200).resp(
            "application/json",
            &format!("{{\"email\":\"a@b.c\",\"pad\":\"{}\"}}", "x".repeat(12000)),
        ),
        t("GET", "/a", 200).h("Authorization", "Bearer abc").h("X-Debug", "1"),
        T {
            latency_us: 900_000,
            ..t("GET", "/{x}/{{", 302)
        },
        // a form body whose invalid UTF-8 decodes to U+FFFD, which a key could name
        T {
            req_body: b"\xff=1&ph\xffone=2".to_vec(),
            ..t("POST", "/f", 200).h("Content-Type", "application/x-www-form-urlencoded")
        },
    ]
}

/// The guards only ever rule out: for every condition of the default pack and of a pack using
/// every criterion (nested any/all/not, globs with `{` and `?`, impossible and wide statuses),
/// on every transaction of the corpus, the plan answers what `View::matches` answers.
#[test]
fn plan_guards_answer_what_the_full_evaluation_answers() {
    let extra = [
        "{ status = [404, \"500-599\"] }",
        "{ status = \"100-999\" }",
        "{ status = \"100-199\" }",
        "{ not = { status = 200 } }",
        "{ any = [{ status = 404 }, { method = \"POST\" }] }",
        "{ any = [{ query = \"email\" }, { body = { name = \"email\", regex = \"@\" } }] }",
        "{ all = [{ endpoint = \"*{id}*\" }, { any = [{ detector = \"injection\" }, { status = 401 }] }] }",
        "{ endpoint = \"GET /?{x}*\" }",
        "{ endpoint = \"* /users/{id}\" }",
        "{ endpoint = \"*users*\" }",
        "{ param = \"phone\" }",
        "{ param = { name = \"email\", regex = \"@\" } }",
        "{ body = \"phone.n\" }",
        "{ query = \"id\" }",
        "{ detector = \"scanner_ua\" }",
        "{ detector = \"ssrf\" }",
        "{ detector = \"sqli\" }",
        "{ detector = \"auth_bypass\" }",
        "{ detector = \"sensitive_response\", response_bytes = \">10000\" }",
        "{ detector = \"login\", not = { detector = \"login_success\" } }",
        "{ header = \"x-debug\", auth = \"bearer\" }",
        "{ latency_ms = \">500\", status = \"300-399\" }",
        "{ content_type = \"application/*\" }",
        "{ body = \"\\uFFFD\" }",
        "{ any = [{ body = \"ph\\uFFFDone\" }, { query = \"q\" }] }",
        "{ any = [{ query = \"email\" }, { status = 404 }, { detector = \"injection\" }] }",
        "{ all = [{ param = \"phone\" }, { any = [{ body = \"email\" }, { body = \"user.name\" }] }] }",
    ];
    let mut text = crate::rules::DEFAULT_RULES.to_string();
    for (i, m) in extra.iter().enumerate() {
        text.push_str(&format!(
            "\n[[rule]]\nid = \"x{i}\"\nsid = {}\ntype = \"scanner\"\nmatch = {m}\n",
            1000 + i
        ));
    }
    let rs = Arc::new(RuleSet::parse("t.toml", &text).unwrap_or_else(|e| panic!("{e}")));
    let plan = plan::Plan::new(rs.clone());
    let red = Redactor::new(b"k");
    let mut checked = (0, 0);
    for x in guard_corpus() {
        for bypass in [false, true] {
            let (meta, tx) = x.tx();
            let auth = red.auth(tx.request.as_ref().expect("request"));
            let ep = crate::catalog::endpoint_of(&tx, &meta).expect("endpoint");
            let (host, endpoint) = (ep.host(), ep.method_template());
            let mut v = View::new(&meta, &tx, &auth, meta.src, host, endpoint, &x.uri);
            v.auth_bypass = bypass;
            let facts = plan.facts(&v);
            for (i, r) in rs.rules.iter().enumerate() {
                let slow = v.matches(&r.cond);
                assert_eq!(
                    plan.matches(plan.ids[i], &r.cond, facts, &v),
                    slow,
                    "rule {} on {} {} {}",
                    r.id,
                    x.method,
                    x.uri.chars().take(80).collect::<String>(),
                    x.status
                );
                checked.0 += 1;
                checked.1 += slow as usize;
            }
        }
    }
    // the corpus exercises both answers
    assert!(checked.1 > 40 && checked.1 < checked.0 / 2, "{checked:?}");
}

/// A reload swaps the plan with the rule set: a condition that held before the reload is not
/// answered from the old plan after it.
#[test]
fn a_reloaded_rule_set_is_matched_with_its_own_plan() {
    let mut h = harness(&once("{ status = 404 }"));
    h.feed(&t("GET", "/x", 404));
    assert_eq!(h.rule_alerts("r").len(), 1);
    let reloaded = RuleSet::parse("t.toml", &once("{ status = 200 }")).unwrap_or_else(|e| panic!("{e}"));
    h.engine.reload(Arc::new(reloaded));
    h.feed(&t("GET", "/x", 404).from(3));
    assert_eq!(h.rule_alerts("r").len(), 1, "404 no longer matches");
    h.feed(&t("GET", "/x", 200).from(4));
    assert_eq!(h.rule_alerts("r").len(), 2, "200 does");
    // the same text reloaded is a new rule set all the same
    let again = RuleSet::parse("t.toml", &once("{ status = 404 }")).unwrap_or_else(|e| panic!("{e}"));
    h.engine.reload(Arc::new(again));
    h.feed(&t("GET", "/x", 404).from(5));
    assert_eq!(h.rule_alerts("r").len(), 3);
}

/// Fields and entities borrowed from the transaction are the values the owned forms were:
/// path parameters, decoded and plain query values, body strings and non-strings, headers,
/// the bounded principal (long ones cut and hashed), composed keys.
#[test]
fn borrowed_fields_and_entities_equal_the_owned_values() {
    use crate::rules::{EntityKind, Field};
    let long = "u".repeat(300);
    let x = t("POST", &format!("/users/42/items/7?q=a%20b&plain=x&email={long}"), 200)
        .h("User-Agent", "curl/8")
        .h("X-Dev", "d1")
        .h("Authorization", &format!("Basic {}", base64_of(&format!("{long}:pw"))))
        .body("application/json", "{\"name\":\"bob\",\"n\":{\"a\":1},\"k\":5}");
    let (meta, tx) = x.tx();
    let red = Redactor::new(b"k");
    let auth = red.auth(tx.request.as_ref().expect("request"));
    let endpoint = "POST /users/{id}/items/{id2}";
    let v = View::new(&meta, &tx, &auth, meta.src, "api.example", endpoint, &x.uri);
    let f = |f: Field| v.field(&f).map(|c| c.into_owned());
    assert_eq!(f(Field::PathParam("id".into())).as_deref(), Some("42"));
    assert_eq!(f(Field::PathParam("1".into())).as_deref(), Some("7"));
    assert_eq!(f(Field::PathParam("nope".into())), None);
    assert_eq!(f(Field::Query("q".into())).as_deref(), Some("a b"));
    assert_eq!(f(Field::Query("plain".into())).as_deref(), Some("x"));
    assert_eq!(f(Field::Body("name".into())).as_deref(), Some("bob"));
    assert_eq!(f(Field::Body("n".into())).as_deref(), Some("{\"a\":1}"));
    assert_eq!(f(Field::Param("k".into())).as_deref(), Some("5"));
    assert_eq!(f(Field::Header("x-dev".into())).as_deref(), Some("d1"));
    assert_eq!(f(Field::UserAgent).as_deref(), Some("curl/8"));
    assert_eq!(f(Field::Ip).as_deref(), Some("10.0.0.9"));
    assert_eq!(f(Field::Endpoint).as_deref(), Some(endpoint));
    assert_eq!(f(Field::Path).as_deref(), Some("/users/42/items/7"));
    assert_eq!(f(Field::Principal), auth.principal.clone());
    // entities: the address and principal borrowed from the view, bounded as before
    let e = |k: Vec<EntityKind>| v.entity(&k).map(|c| c.into_owned());
    assert_eq!(e(vec![EntityKind::Ip]), Some(EntityKey::ip(meta.src)));
    let p = auth.principal.clone().expect("a principal");
    let want = EntityKey {
        kind: "principal".into(),
        value: bounded(p.clone()),
    };
    assert_eq!(e(vec![EntityKind::Principal]), Some(want.clone()));
    assert!(p.len() <= 128 || want.value.len() < p.len(), "a long principal is cut");
    let q = Field::Query("email".into());
    let composed = e(vec![
        EntityKind::Ip,
        EntityKind::UserAgent,
        EntityKind::Field("query.email".into(), q),
    ])
    .expect("composed");
    assert_eq!(composed.kind, "ip+user_agent+query.email");
    assert_eq!(composed.value, format!("10.0.0.9|curl/8|{}", bounded(long.clone())));
    assert!(composed.value.len() < 200, "the long value is bounded");
    assert_eq!(e(vec![EntityKind::ApiKey]), None, "basic is no api key");
}

fn base64_of(s: &str) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let b = s.as_bytes();
    let mut out = String::new();
    for c in b.chunks(3) {
        let n = (c[0] as u32) << 16 | (*c.get(1).unwrap_or(&0) as u32) << 8 | *c.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= c.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A match applied here and the same match sent from another shard (a [`Hit`]) land in one
/// window: the parts the engine keeps per rule and per transaction are the hashes the sent
/// hit's receiver makes, for every rule of the default pack and keys and `per` values short,
/// long, empty and not ASCII.
#[test]
fn window_ids_of_a_hit_applied_here_equal_those_of_the_hit_sent_from_another_shard() {
    let rs = Arc::new(RuleSet::defaults());
    let plan = plan::Plan::new(rs.clone());
    let long = "k".repeat(1000);
    let keys = [
        EntityKey::ip("10.0.0.1".parse().expect("ip")),
        EntityKey::ip("2001:db8::1".parse().expect("ip")),
        EntityKey {
            kind: "principal".into(),
            value: long.clone(),
        },
        EntityKey {
            kind: "ip+user_agent".into(),
            value: "é|\u{0}\u{ff}".into(),
        },
        EntityKey {
            kind: "".into(),
            value: "".into(),
        },
    ];
    let (meta, _) = t("GET", "/", 200).tx();
    for (i, r) in rs.rules.iter().enumerate() {
        for k in &keys {
            for per in ["", "GET /users/{id}", long.as_str(), "\u{ff}"] {
                let hit = Hit {
                    rule: r.id.clone(),
                    rule_idx: i,
                    key: k.clone(),
                    endpoint: "GET /x".into(),
                    per: per.into(),
                    host: String::new(),
                    ts: 0,
                    distinct: None,
                    value: None,
                    personal: false,
                    sample: Sample {
                        url: String::new(),
                        flow_id: 0,
                        status: 200,
                        detail: None,
                    },
                    meta: meta.clone(),
                    http: HttpBrief::default(),
                };
                let sent = hit.borrowed();
                // what `on_tx` passes
                let per_h = if per.is_empty() { plan.empty_h } else { id_hash(per) };
                let here = window_id(plan.rule_h[i], id_hash(k), per_h);
                assert_eq!(
                    window_id(sent.rule_h, sent.key_h, sent.per_h),
                    here,
                    "{} {k:?} {per}",
                    r.id
                );
                // and the window's rule hash is what a reload compares
                assert_eq!(sent.rule_h, id_hash(r.id.as_str()));
            }
        }
    }
}

/// Distinct (rule, entity, per) triples get distinct window ids: no two entities share a
/// window, over the default rules, thousands of keys of every kind and several `per` values.
#[test]
fn window_ids_are_distinct_for_distinct_rules_entities_and_endpoints() {
    let rs = RuleSet::defaults();
    let mut keys = Vec::new();
    for i in 0..3000u32 {
        keys.push(EntityKey::ip(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i))));
        keys.push(EntityKey {
            kind: "principal".into(),
            value: format!("h:{i:016x}"),
        });
        keys.push(EntityKey {
            kind: "ip+user_agent".into(),
            value: format!("10.0.0.{}|agent {}", i % 256, i / 256),
        });
    }
    let pers = ["", "GET /users/{id}", "GET /users/{id}/orders", "POST /login"];
    let mut seen = std::collections::HashSet::new();
    let mut n = 0;
    for r in &rs.rules {
        let rh = id_hash(r.id.as_str());
        for k in &keys {
            let kh = id_hash(k);
            for p in pers {
                n += 1;
                assert!(seen.insert(window_id(rh, kh, id_hash(p))), "{} {k:?} {p}", r.id);
            }
        }
    }
    assert_eq!(seen.len(), n);
    assert!(n > 500_000, "{n}");
}

/// Rules counting the same field (the value read and hashed once per transaction, then shared)
/// alert as each does alone, while rules counting other fields keep their own values.
#[test]
fn rules_counting_one_field_alert_as_each_would_alone() {
    let rule = |id: &str, count: u32, entity: &str, distinct: &str| {
        format!(
            r#"
[[rule]]
id = "{id}"
sid = {count}
type = "enumeration"
entity = "{entity}"
match = {{ endpoint = "*{{id}}*" }}
threshold = {{ count = {count}, window = 60, distinct = "{distinct}", per = "endpoint" }}
"#
        )
    };
    let all = [
        ("a", 5, "ip", "path.id"),
        ("b", 8, "ip", "path.id"),
        ("c", 6, "principal", "path.id"),
        ("d", 3, "ip", "query.q"),
        ("e", 4, "ip", "path.0"),
    ];
    let together: String = all.iter().map(|(i, c, e, d)| rule(i, *c, e, d)).collect();
    let mut h = harness(&together);
    let mut alone: Vec<Harness> = all.iter().map(|(i, c, e, d)| harness(&rule(i, *c, e, d))).collect();
    let mut fired = 0;
    for i in 0..120u32 {
        // ids repeat now and then; some calls carry a query, some a non-ASCII id
        let id = if i % 7 == 3 {
            "é\u{1}".to_string()
        } else {
            (i % 40).to_string()
        };
        let uri = if i % 3 == 0 {
            format!("/users/{id}?q={}", i % 5)
        } else {
            format!("/users/{id}")
        };
        let x = t("GET", &uri, 200)
            .from((i % 2) as u8 + 1)
            .at(i as f64 * 0.1)
            .h("Authorization", "Bearer tok");
        h.feed(&x);
        for a in alone.iter_mut() {
            a.feed(&x);
        }
    }
    for (k, (id, ..)) in all.iter().enumerate() {
        let got: Vec<_> = h
            .rule_alerts(id)
            .iter()
            .map(|a| (a.key.clone(), a.count, a.distinct, a.values.clone(), a.first, a.last))
            .collect();
        let want: Vec<_> = alone[k]
            .rule_alerts(id)
            .iter()
            .map(|a| (a.key.clone(), a.count, a.distinct, a.values.clone(), a.first, a.last))
            .collect();
        assert_eq!(got, want, "rule {id}");
        fired += got.len();
    }
    assert!(fired >= 5, "only {fired} alerts");
}

/// A call without a body has no body field, whatever its content type and the field's name:
/// the early answer is the one the parsed body gives.
#[test]
fn a_call_without_a_body_has_no_body_field() {
    let red = Redactor::new(b"k");
    for ct in [
        "application/json",
        "application/x-www-form-urlencoded",
        "text/plain",
        "",
    ] {
        let x = t("POST", "/lookup?email=a%40b.example", 200).body(ct, "");
        let (meta, tx) = x.tx();
        let auth = red.auth(tx.request.as_ref().expect("request"));
        let v = View::new(&meta, &tx, &auth, meta.src, "h", "POST /lookup", "/lookup");
        for name in ["email", "", "a.b", "%", "\\u0065mail"] {
            assert!(v.body_field(name).is_none(), "{ct} {name}");
            assert!(
                !v.matches(&Cond::Param(ParamLoc::Body, name.into(), None)),
                "{ct} {name}"
            );
        }
        assert!(v.json_body().is_none(), "{ct}");
        // the query still answers
        assert!(v.matches(&Cond::Param(ParamLoc::Either, "email".into(), None)));
    }
}

/// A rule set of every kind the plan's index reads: the default pack, a user file's rules
/// (scopes by host, group and endpoint; endpoint globs alone, negated, in `any` and `all` with
/// other criteria; disabled rules; counted path parameters by name and position), and the
/// guard pack's conditions.
fn index_rule_set(seed: u64) -> Arc<RuleSet> {
    let conds = [
        "{ endpoint = \"*{id}*\" }",
        "{ endpoint = \"*{uuid}*\" }",
        "{ endpoint = \"GET /users/{id}\" }",
        "{ endpoint = \"* /users/*\" }",
        "{ endpoint = \"?ET /*\" }",
        "{ endpoint = \"*\" }",
        "{ not = { endpoint = \"*{id}*\" } }",
        "{ any = [{ endpoint = \"*orders*\" }, { status = 404 }] }",
        "{ any = [{ endpoint = \"*orders*\" }, { endpoint = \"*carts*\" }] }",
        "{ all = [{ endpoint = \"*{id}*\" }, { method = \"GET\" }] }",
        "{ all = [{ endpoint = \"*{id}*\" }, { not = { endpoint = \"*items*\" } }] }",
        "{ all = [] }",
        "{ any = [] }",
        "{ endpoint = \"POST */login\", detector = \"auth_failure\" }",
        "{ status = 404 }",
        "{ status = \"500-599\" }",
        "{ any = [{ query = \"email\" }, { body = \"email\" }] }",
        "{ param = { name = \"phone\", regex = \"^[0-9]+$\" } }",
        "{ detector = \"injection\" }",
        "{ detector = \"auth_bypass\" }",
        "{ method = [\"PUT\", \"DELETE\"], not = { status = \"200-299\" } }",
        "{ header = \"x-debug\" }",
    ];
    let scopes = [
        "",
        "scope = { host = \"api.example\" }\n",
        "scope = { host = \"*.internal\" }\n",
        "scope = { host = \"api.example\", endpoint = \"GET /users/{id}\" }\n",
        "scope = { group = \"login\" }\n",
        "scope = { endpoint = [\"GET *\", \"DELETE *\"] }\n",
    ];
    let distinct = [
        "",
        ", distinct = \"path.id\"",
        ", distinct = \"path.uuid\"",
        ", distinct = \"path.1\"",
        ", distinct = \"path.0\"",
        ", distinct = \"param.email\"",
        ", distinct = \"path\"",
    ];
    let mut text = format!("{}\n", crate::rules::DEFAULT_RULES);
    let mut x = seed | 1;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for i in 0..40 {
        let c = conds[next() as usize % conds.len()];
        let s = scopes[next() as usize % scopes.len()];
        let d = distinct[next() as usize % distinct.len()];
        let enabled = if next() % 7 == 0 { "enabled = false\n" } else { "" };
        text.push_str(&format!(
            "\n[[rule]]\nid = \"u{i}\"\nsid = {}\ntype = \"enumeration\"\n{s}{enabled}match = {c}\nthreshold = {{ count = 3, window = 60{d} }}\n",
            5000 + i
        ));
    }
    // a user file turning a default rule off
    text.push_str(
        "\n[[rule]]\nid = \"x-off\"\nsid = 4999\ntype = \"scanner\"\nenabled = false\nmatch = { status = 404 }\n",
    );
    Arc::new(RuleSet::parse("t.toml", &text).unwrap_or_else(|e| panic!("{e}")))
}

/// Generated calls: methods, hosts (with ports and odd ones), templated and literal paths,
/// statuses of each class, queries, bodies, headers, injections.
fn index_corpus(n: usize, seed: u64) -> Vec<(T, bool)> {
    let methods = ["GET", "POST", "PUT", "DELETE", "PATCH"];
    let hosts = [
        "api.example",
        "api.example:8443",
        "billing.internal",
        "x y",
        "",
        "[::1]:80",
    ];
    let paths = [
        "/users/{n}",
        "/users/{n}/orders",
        "/orders/3f2b8a9e-1c2d-4e5f-8a9b-0c1d2e3f{n:04}",
        "/carts/{n}/items/{m}",
        "/api/login",
        "/products",
        "/products/SKU-{n}",
        "/",
        "/a//{n}",
        "/usrs/{n}/x/{m}/y",
    ];
    let queries = [
        "",
        "?page={n}",
        "?email=u{n}%40x.y",
        "?phone={n}",
        "?e+mail=1",
        "?id=1%27%20OR%201=1--",
    ];
    let statuses = [200, 201, 204, 301, 400, 401, 403, 404, 405, 422, 500, 503, 0, 999];
    let mut x = seed | 1;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    (0..n)
        .map(|_| {
            let (a, b) = (next() % 1000, next() % 50);
            let p = paths[next() as usize % paths.len()]
                .replace("{n:04}", &format!("{:04}", a % 10000))
                .replace("{n}", &a.to_string())
                .replace("{m}", &b.to_string());
            let q = queries[next() as usize % queries.len()].replace("{n}", &a.to_string());
            let m = methods[next() as usize % methods.len()];
            let mut c = t(m, &format!("{p}{q}"), statuses[next() as usize % statuses.len()]).from((a % 200) as u8);
            c.req_headers = vec![("Host".into(), hosts[next() as usize % hosts.len()].into())];
            match next() % 6 {
                0 => {
                    c = c.body(
                        "application/json",
                        &format!("{{\"email\":\"e{a}@x.y\",\"password\":\"p\"}}"),
                    )
                }
                1 => c = c.body("application/x-www-form-urlencoded", &format!("phone={a}&x=1")),
                2 => c = c.body("application/json", "{\"items\":[1,2]}"),
                _ => {}
            }
            if next() % 5 == 0 {
                c = c.h("X-Debug", "1");
            }
            if next() % 9 == 0 {
                c = c.h("Authorization", "Bearer abc");
            }
            (c, next() % 11 == 0)
        })
        .collect()
}

/// The plan's index (per endpoint and per set of facts, kept across calls) finds exactly the
/// rules a plain walk finds: enabled, condition true, in scope, in rule order; and a counted
/// path parameter read where the endpoint's record says is the view's own answer. Over many
/// generated calls and rule sets, one plan per set, so its kept records serve many calls.
#[test]
fn the_plan_index_finds_the_rules_a_plain_walk_finds() {
    let red = Redactor::new(b"k");
    let mut found = (0usize, 0usize);
    for seed in 1..=6u64 {
        let rs = index_rule_set(seed * 0x9e37_79b9_7f4a_7c15);
        let mut plan = plan::Plan::new(rs.clone());
        let mut got = Vec::new();
        for (x, bypass) in index_corpus(1500, seed) {
            let (meta, tx) = x.tx();
            let auth = red.auth(tx.request.as_ref().expect("request"));
            let ep = crate::catalog::endpoint_of(&tx, &meta).expect("endpoint");
            let (host, endpoint) = (ep.host(), ep.method_template());
            let mut v = View::new(&meta, &tx, &auth, meta.src, host, endpoint, &x.uri);
            v.auth_bypass = bypass;
            let ep = plan.matching(&v, &mut got);
            // the plain walk on a fresh view (nothing parsed or cached yet)
            let mut w = View::new(&meta, &tx, &auth, meta.src, host, endpoint, &x.uri);
            w.auth_bypass = bypass;
            let want: Vec<u32> = rs
                .rules
                .iter()
                .enumerate()
                .filter(|(_, r)| r.enabled && w.matches(&r.cond) && w.in_scope(r))
                .map(|(i, _)| i as u32)
                .collect();
            assert_eq!(got, want, "{} {} on {host:?} ({endpoint})", x.method, x.uri);
            for (i, r) in rs.rules.iter().enumerate() {
                if let Some(f) = &r.threshold.distinct {
                    assert_eq!(
                        plan.field(ep, plan.field_ids[i], f, &v),
                        w.field(f),
                        "{f:?} of {} on {endpoint}",
                        x.uri
                    );
                }
            }
            found.0 += 1;
            found.1 += got.len();
        }
    }
    // the corpus exercises matches and misses
    assert!(found.1 > found.0 && found.1 < found.0 * 20, "{found:?}");
}

/// The plan's records are bounded: past their cap they are dropped and made again, with the
/// same answers.
#[test]
fn the_plan_index_stays_right_past_its_caps() {
    let red = Redactor::new(b"k");
    let rs = index_rule_set(7);
    let mut plan = plan::Plan::new(rs.clone());
    let mut got = Vec::new();
    let mut n = 0;
    // more distinct endpoints (literal paths the catalog does not template) than a plan keeps
    for i in 0..plan::MAX_EPS as u32 + 1000 {
        let x = t("GET", &format!("/p/v{i}x/{}", i % 3), [200, 404, 500][i as usize % 3]);
        let (meta, tx) = x.tx();
        let auth = red.auth(tx.request.as_ref().expect("request"));
        let endpoint = format!("GET /p/v{i}x/{{id}}");
        let v = View::new(&meta, &tx, &auth, meta.src, "api.example", &endpoint, &x.uri);
        plan.matching(&v, &mut got);
        let want: Vec<u32> = rs
            .rules
            .iter()
            .enumerate()
            .filter(|(_, r)| r.enabled && v.matches(&r.cond) && v.in_scope(r))
            .map(|(i, _)| i as u32)
            .collect();
        assert_eq!(got, want, "{endpoint}");
        n += got.len();
    }
    let (eps, facts) = plan.kept();
    // (cleared once at the cap: only the last thousand or so endpoints are kept)
    assert!(eps < 2000 && facts <= plan::MAX_FACTS, "{eps} {facts}");
    assert!(n > 5000, "{n}");
}

#[test]
fn keys_written_into_reused_buffers_are_the_keys_a_view_makes() {
    let long = format!("Basic {}", {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(format!("{}:pw", "u".repeat(300)))
    });
    let calls = [
        t("GET", "/a", 200).h("Authorization", "Bearer tok-1").from(3),
        t("GET", "/a", 200).from(200),
        t("GET", "/a", 200).h("Authorization", &long).from(17),
        t("GET", "/a", 200).h("X-API-Key", "k").from(255),
        t("GET", "/a", 200).from(0),
    ];
    let red = Redactor::new(b"k");
    let mut bufs = KeyBufs::default();
    for _ in 0..2 {
        for x in &calls {
            let (mut meta, tx) = x.tx();
            // (the same address twice running: the formatted one is kept)
            for client in [meta.src, meta.src, "2001:db8::1".parse().expect("v6")] {
                meta.src = client;
                let auth = red.auth(tx.request.as_ref().expect("request"));
                let lazy = View::new(&meta, &tx, &auth, client, "h", "GET /a", "/a");
                let want = (lazy.ip_entity().clone(), lazy.principal_entity().cloned());
                assert_eq!(want.0, EntityKey::ip(client));
                let mut v = View::new(&meta, &tx, &auth, client, "h", "GET /a", "/a");
                v.set_keys(&mut bufs);
                assert_eq!((v.ip_entity().clone(), v.principal_entity().cloned()), want);
            }
        }
    }
}
