//! One transaction as the rules see it: conditions, fields, entities, evidence.

use std::borrow::Cow;

use super::*;

/// One transaction as the engine sees it.
pub struct View<'a> {
    pub meta: &'a FlowMeta,
    pub tx: &'a Transaction,
    pub auth: &'a Auth,
    pub client: IpAddr,
    pub host: &'a str,
    /// `METHOD /template`
    pub endpoint: &'a str,
    pub path: &'a str,
    /// The redacted request target, at most 512 bytes (copied only into an alert's samples).
    pub url: &'a str,
    /// The endpoint nearly always sees credentials and this call had none yet got a 2xx.
    pub auth_bypass: bool,
    /// The site's own origins (configured), besides its Host and address.
    pub site_origins: &'a [String],
    pub(super) verdicts: std::cell::OnceCell<Verdicts>,
    pub(super) body: std::cell::OnceCell<Option<serde_json::Value>>,
    pub(super) sensitive: std::cell::OnceCell<std::collections::BTreeSet<crate::catalog::sensitive::Sensitive>>,
    /// The client's `ip` entity, its address formatted once per transaction.
    pub(super) ip: std::cell::OnceCell<EntityKey>,
    /// The `principal` entity (its value [`bounded`]), made once per transaction: the
    /// principal's profile and the rules counting by principal share it.
    pub(super) principal: std::cell::OnceCell<Option<EntityKey>>,
    /// The `ip` and `principal` keys already written into a worker's [`KeyBufs`] (see
    /// [`View::set_keys`]); `None`: made in `ip` and `principal` when first asked for.
    /// (Beside the cells, not in them: a cell would make the view invariant in `'a`.)
    pub(super) keys: Option<(&'a EntityKey, Option<&'a EntityKey>)>,
}

/// Buffers for a call's `ip` and `principal` entity keys, kept by a worker from call to call
/// (see [`View::set_keys`]): a key's text is written into room already there, not into a
/// new `String` per call.
#[derive(Debug)]
pub struct KeyBufs {
    ip: EntityKey,
    principal: EntityKey,
    /// The address `ip` holds.
    ip_of: Option<IpAddr>,
}

impl Default for KeyBufs {
    fn default() -> Self {
        KeyBufs {
            ip: EntityKey {
                kind: "ip".into(),
                value: String::new(),
            },
            principal: EntityKey {
                kind: "principal".into(),
                value: String::new(),
            },
            ip_of: None,
        }
    }
}

impl<'a> View<'a> {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        meta: &'a FlowMeta,
        tx: &'a Transaction,
        auth: &'a Auth,
        client: IpAddr,
        host: &'a str,
        endpoint: &'a str,
        url: &'a str,
    ) -> Self {
        let path = tx
            .request
            .as_ref()
            .map(|q| crate::util::target_path(&q.uri))
            .unwrap_or("");
        View {
            meta,
            tx,
            auth,
            client,
            host,
            endpoint,
            path,
            url,
            auth_bypass: false,
            site_origins: &[],
            verdicts: Default::default(),
            body: Default::default(),
            sensitive: Default::default(),
            ip: Default::default(),
            principal: Default::default(),
            keys: None,
        }
    }

    /// The view with its `ip` and `principal` entity keys written into `bufs` (the same keys
    /// [`View::ip_entity`] and [`View::principal_entity`] would make, without allocating).
    /// (In place: the view is large, a move would copy it.)
    pub fn set_keys(&mut self, bufs: &'a mut KeyBufs) {
        // a keep-alive connection's calls come from one address: formatted once for them
        if bufs.ip_of != Some(self.client) {
            bufs.ip.value.clear();
            // (the address is ASCII digits, dots, colons and hex: always UTF-8)
            let mut ip = std::mem::take(&mut bufs.ip.value).into_bytes();
            crate::util::push_ip(&mut ip, self.client);
            bufs.ip.value = String::from_utf8(ip).unwrap_or_default();
            bufs.ip_of = Some(self.client);
        }
        let has_principal = match &self.auth.principal {
            Some(p) if p.len() <= 128 => {
                bufs.principal.value.clear();
                bufs.principal.value.push_str(p);
                true
            }
            Some(p) => {
                bufs.principal.value = bounded(p.clone());
                true
            }
            None => false,
        };
        let bufs: &'a KeyBufs = bufs;
        self.keys = Some((&bufs.ip, has_principal.then_some(&bufs.principal)));
    }

    pub fn verdicts(&self) -> &Verdicts {
        self.verdicts.get_or_init(|| {
            // the inputs borrow the transaction and serve only the verdicts (kept): built here
            // and dropped with them
            let inputs = Inputs::of_site(self.tx, Some((self.meta.dst, self.meta.dport)), self.site_origins);
            crate::detect::classify(self.tx, &inputs, self.sensitive())
        })
    }

    /// Sensitive data kinds in the response, scanned once for the catalog and the detectors.
    pub fn sensitive(&self) -> &std::collections::BTreeSet<crate::catalog::sensitive::Sensitive> {
        self.sensitive.get_or_init(|| {
            self.tx
                .response
                .as_ref()
                .map(crate::catalog::sensitive::scan_response)
                .unwrap_or_default()
        })
    }

    /// The response status; for a gRPC call that failed (HTTP 200, grpc-status not OK), the
    /// HTTP status its code maps to (UNAVAILABLE 503, NOT_FOUND 404...), so baselines and
    /// entity profiles count a gRPC error as they count an HTTP one (SPEC §4b).
    pub fn status(&self) -> u16 {
        let s = self.tx.response.as_ref().map(|r| r.status).unwrap_or(0);
        match self.tx.grpc.as_deref().and_then(|g| g.http_status()) {
            Some(e) if s == 200 => e,
            _ => s,
        }
    }

    /// This transaction as alert evidence.
    pub(super) fn sample(&self, detail: Option<String>) -> Sample {
        Sample {
            url: self.url.to_string(),
            flow_id: self.meta.flow_id,
            status: self.status(),
            detail,
        }
    }

    /// The HTTP facts an alert carries in EVE's `http` object.
    pub(super) fn http_brief(&self) -> HttpBrief {
        let q = self.tx.request.as_ref();
        HttpBrief {
            hostname: q.and_then(|q| q.header("host")).map(str::to_string),
            url: self.url.to_string(),
            method: q.map(|q| q.method.clone()).unwrap_or_default(),
            status: self.tx.response.as_ref().map(|r| r.status),
            user_agent: self.header("user-agent").map(str::to_string),
        }
    }

    /// (Inlined: a name written in the code finds its place in the header index when
    /// compiling, see `Headers::find`.)
    #[inline(always)]
    pub(super) fn header(&self, name: &str) -> Option<&'a str> {
        self.tx.request.as_ref().and_then(|q| q.header(name))
    }

    pub(super) fn json_body(&self) -> Option<&serde_json::Value> {
        self.body
            .get_or_init(|| {
                let q = self.tx.request.as_ref()?;
                if q.body.is_empty() {
                    return None;
                }
                let ct = q.header("content-type").unwrap_or("").to_ascii_lowercase();
                if ct.contains("x-www-form-urlencoded") {
                    let text = String::from_utf8_lossy(&q.body);
                    let m: serde_json::Map<String, serde_json::Value> = crate::redact::query_pairs(&text)
                        .take(256)
                        .map(|(k, v)| {
                            (
                                crate::redact::percent_decode_lossy(k).into_owned(),
                                serde_json::Value::String(crate::redact::percent_decode_lossy(v).into_owned()),
                            )
                        })
                        .collect();
                    return Some(serde_json::Value::Object(m));
                }
                serde_json::from_slice(&q.body).ok()
            })
            .as_ref()
    }

    /// A query parameter's decoded value (borrowed from the target when it needs no decoding).
    pub(super) fn query(&self, name: &str) -> Option<Cow<'a, str>> {
        let q = self.tx.request.as_ref()?;
        let (_, qs) = crate::util::split_query(&q.uri)?;
        if !may_name(qs.as_bytes(), name, b"%++") {
            return None;
        }
        crate::redact::query_pairs(qs)
            .find(|(k, _)| crate::redact::percent_decode_lossy(k) == name)
            .map(|(_, v)| crate::redact::percent_decode_lossy(v))
    }

    fn has_query(&self, name: &str) -> bool {
        let Some((_, qs)) = self.tx.request.as_ref().and_then(|q| crate::util::split_query(&q.uri)) else {
            return false;
        };
        if !may_name(qs.as_bytes(), name, b"%++") {
            return false;
        }
        crate::redact::query_pairs(qs).any(|(k, _)| crate::redact::percent_decode_lossy(k) == name)
    }

    /// The JSON value at a dotted path of the request body.
    fn body_value(&self, name: &str) -> Option<&serde_json::Value> {
        // the first key of the path is in the body's text, unless escaped (JSON `\u`, form
        // `%` and `+`): most bodies are not parsed for a key they do not hold
        let first = memchr::memchr(b'.', name.as_bytes()).map_or(name, |i| &name[..i]);
        let body = self.tx.request.as_ref().map(|q| q.body.as_slice()).unwrap_or_default();
        // no body, no value (what `json_body` answers), without a search: a call with a query
        // and no body asks here for each `any = [{ query }, { body }]` condition
        if body.is_empty() {
            return None;
        }
        // (a name with U+FFFD could be spelled by invalid UTF-8 in a form body, which the
        // text test cannot see: tested always, so the answer never depends on whether an
        // earlier condition parsed the body)
        if (self.body.get().is_none() || first.contains('\u{FFFD}')) && !may_name(body, first, b"\\%+") {
            return None;
        }
        let mut v = self.json_body()?;
        for part in name.split('.') {
            v = v.get(part)?;
        }
        Some(v)
    }

    /// A body field's value: a string as it is (borrowed), anything else as JSON text.
    pub(super) fn body_field(&self, name: &str) -> Option<Cow<'_, str>> {
        let v = self.body_value(name)?;
        Some(match v {
            serde_json::Value::String(s) => Cow::Borrowed(s.as_str()),
            other => Cow::Owned(other.to_string()),
        })
    }

    /// The value of a path parameter by its template name (`id`, `uuid`, `param`, ...) or
    /// its position among the parameters (`0`, `1`).
    pub(super) fn path_param(&self, name: &str) -> Option<&'a str> {
        path_param_of(self.endpoint, self.path, name)
    }

    /// The account a login names (`username`, `email`, `login`, ... in the body or query): a
    /// login name is not a secret, and it is what a responder needs.
    pub fn login_account(&self) -> Option<String> {
        const NAMES: [&str; 8] = [
            "username",
            "user",
            "email",
            "login",
            "user_name",
            "account",
            "userid",
            "mail",
        ];
        // a name is a string or a number; an object (`"user": {"email", "password"}`) is not
        NAMES
            .iter()
            .find_map(|n| self.body_field(n).or_else(|| self.query(n)))
            .filter(|a: &Cow<'_, str>| !a.is_empty() && !a.starts_with(['{', '[']))
            .map(|a| a.chars().take(128).filter(|c| !c.is_control()).collect())
    }

    /// A field's value, borrowed from the transaction where it is there as it is (nearly
    /// always: path parameters, plain query values, body strings, headers).
    pub fn field(&self, f: &Field) -> Option<Cow<'_, str>> {
        match f {
            Field::PathParam(n) => self.path_param(n).map(Cow::Borrowed),
            Field::Query(n) => self.query(n),
            Field::Body(n) => self.body_field(n),
            Field::Param(n) => self.query(n).or_else(|| self.body_field(n)),
            Field::Path => Some(Cow::Borrowed(self.path)),
            Field::Endpoint => Some(Cow::Borrowed(self.endpoint)),
            Field::UserAgent => self.header("user-agent").map(Cow::Borrowed),
            Field::Principal => self.auth.principal.as_deref().map(Cow::Borrowed),
            Field::Ip => Some(Cow::Borrowed(self.ip_str())),
            Field::Header(n) => self.header(n).map(Cow::Borrowed),
        }
    }

    /// The client address as text, formatted once per transaction.
    pub(super) fn ip_str(&self) -> &str {
        &self.ip_entity().value
    }

    /// The client's `ip` entity ([`EntityKey::ip`]), made once per transaction.
    pub(super) fn ip_entity(&self) -> &EntityKey {
        if let Some((ip, _)) = self.keys {
            return ip;
        }
        self.ip.get_or_init(|| EntityKey::ip(self.client))
    }

    /// The client's `ip` entity, owned.
    pub(super) fn ip_key(&self) -> EntityKey {
        self.ip_entity().clone()
    }

    /// The `principal` entity ([`bounded`] value), made once per transaction.
    pub(super) fn principal_entity(&self) -> Option<&EntityKey> {
        if let Some((_, principal)) = self.keys {
            return principal;
        }
        self.principal
            .get_or_init(|| {
                self.auth.principal.as_ref().map(|p| EntityKey {
                    kind: "principal".into(),
                    value: bounded(p.clone()),
                })
            })
            .as_ref()
    }

    /// The entity a rule counts by (`None`: the transaction has no value for one of its
    /// kinds). The address and principal keys are borrowed from the view.
    pub(super) fn entity(&self, kinds: &[EntityKind]) -> Option<Cow<'_, EntityKey>> {
        match kinds {
            [EntityKind::Ip] => return Some(Cow::Borrowed(self.ip_entity())),
            [EntityKind::Principal] => return self.principal_entity().map(Cow::Borrowed),
            _ => {}
        }
        let value_of = |k: &EntityKind| -> Option<Cow<'_, str>> {
            Some(match k {
                EntityKind::Ip => Cow::Borrowed(self.ip_str()),
                EntityKind::Principal => Cow::Borrowed(&self.principal_entity()?.value),
                EntityKind::ApiKey if self.auth.scheme == "api_key" => bounded_ref(self.auth.principal.as_deref()?),
                EntityKind::ApiKey => return None,
                EntityKind::UserAgent => bounded_ref(self.header("user-agent")?),
                EntityKind::Field(_, f) => match self.field(f).filter(|v| !v.is_empty())? {
                    Cow::Borrowed(b) => bounded_ref(b),
                    Cow::Owned(o) => Cow::Owned(bounded(o)),
                },
            })
        };
        if let [k] = kinds {
            // one kind (nearly every rule): its value is the key, nothing composed
            return Some(Cow::Owned(EntityKey {
                kind: kind_name(k),
                value: value_of(k)?.into_owned(),
            }));
        }
        let mut kind = String::new();
        let mut value = String::new();
        for k in kinds {
            let v = value_of(k)?;
            if !kind.is_empty() {
                kind.push('+');
                value.push('|');
            }
            kind.push_str(k.as_str());
            value.push_str(&v);
        }
        Some(Cow::Owned(EntityKey {
            kind: if kinds.len() == 1 {
                kind_name(&kinds[0])
            } else {
                kind.into()
            },
            value,
        }))
    }

    pub fn matches(&self, c: &Cond) -> bool {
        let q = self.tx.request.as_ref();
        let r = self.tx.response.as_ref();
        match c {
            Cond::All(v) => v.iter().all(|c| self.matches(c)),
            Cond::Any(v) => v.iter().any(|c| self.matches(c)),
            Cond::Not(c) => !self.matches(c),
            Cond::Method(m) => q.is_some_and(|q| m.contains(&q.method)),
            Cond::Path(g) => g.matches(&crate::redact::percent_decode_lossy(self.path)),
            Cond::Endpoint(g) => g.matches(self.endpoint),
            Cond::Status(rs) => r.is_some_and(|r| rs.iter().any(|(a, b)| (*a..=*b).contains(&r.status))),
            Cond::GrpcStatus(rs) => {
                let code = self.tx.grpc.as_deref().and_then(|g| g.status);
                code.is_some_and(|c| rs.iter().any(|(a, b)| (*a..=*b).contains(&c)))
            }
            Cond::HeaderPresent(h) => self.header(h).is_some(),
            Cond::HeaderAbsent(h) => self.header(h).is_none(),
            Cond::HeaderMatch(h, re) => self.header(h).is_some_and(|v| re.is_match(v)),
            Cond::Param(loc, name, None) => match loc {
                // present: nothing to copy
                ParamLoc::Query => self.has_query(name),
                ParamLoc::Body => self.body_value(name).is_some(),
                ParamLoc::Either => self.has_query(name) || self.body_value(name).is_some(),
            },
            Cond::Param(loc, name, re) => {
                let v = match loc {
                    ParamLoc::Query => self.query(name),
                    ParamLoc::Body => self.body_field(name),
                    ParamLoc::Either => self.query(name).or_else(|| self.body_field(name)),
                };
                match (v, re) {
                    (Some(v), Some(re)) => re.is_match(&v),
                    (Some(_), None) => true,
                    (None, _) => false,
                }
            }
            Cond::RequestBytes(rg) => q.is_some_and(|q| rg.contains(q.body_len as f64)),
            Cond::ResponseBytes(rg) => r.is_some_and(|r| rg.contains(r.body_len as f64)),
            Cond::LatencyMs(rg) => self.tx.latency_us().is_some_and(|l| rg.contains(l as f64 / 1000.0)),
            Cond::Auth(schemes) => schemes.iter().any(|s| s == self.auth.scheme),
            Cond::ContentType(g) => q
                .and_then(|q| q.header("content-type"))
                .is_some_and(|c| g.matches(c.split(';').next().unwrap_or("").trim().to_ascii_lowercase().as_str())),
            Cond::ResponseContentType(g) => r
                .and_then(|r| r.header("content-type"))
                .is_some_and(|c| g.matches(c.split(';').next().unwrap_or("").trim().to_ascii_lowercase().as_str())),
            Cond::Detector(Detector::AuthBypass) => self.auth_bypass,
            Cond::Detector(d) => self.verdicts().has(*d),
        }
    }

    /// Is the transaction in the rule's scope? (The engine asks its plan, which decides it
    /// once per host and endpoint: this is the plain answer the plan is tested against.)
    #[cfg(test)]
    pub(super) fn in_scope(&self, r: &Rule) -> bool {
        in_scope_at(self.host, self.endpoint, r)
    }
}

/// [`View::in_scope`] of a call to `host` and `endpoint`: the scope reads nothing else.
pub(super) fn in_scope_at(host: &str, endpoint: &str, r: &Rule) -> bool {
    // `host = "api.example.com"` also covers `api.example.com:8443`
    let bare = || match host.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') && p.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    };
    (r.scope.hosts.is_empty() || r.scope.hosts.iter().any(|g| g.matches(host) || g.matches(bare())))
        && (r.scope.endpoints.is_empty() || r.scope.endpoints.iter().any(|g| g.matches(endpoint)))
}

/// Could a text hold the key `name` once decoded? It must hold `name` as it is, or one of the
/// `escapes` that could spell it otherwise. False means surely not.
pub(super) fn may_name(text: &[u8], name: &str, escapes: &[u8; 3]) -> bool {
    memchr::memchr3(escapes[0], escapes[1], escapes[2], text).is_some()
        || crate::util::contains_short(text, name.as_bytes())
}

/// `t.trim_matches(['{', '}'])`, by bytes.
fn trim_braces(t: &str) -> &str {
    let brace = |c: &u8| *c == b'{' || *c == b'}';
    let b = t.as_bytes();
    let start = b.iter().position(|c| !brace(c)).unwrap_or(b.len());
    let end = b.iter().rposition(|c| !brace(c)).map_or(start, |i| i + 1);
    &t[start..end]
}

/// [`View::path_param`] of an endpoint (`METHOD /template`) and the path it was called with.
fn path_param_of<'p>(endpoint: &str, path: &'p str, name: &str) -> Option<&'p str> {
    path_segment(path, template_segment(endpoint, name)?)
}

/// Where the placeholder `name` (or the `name`-th one, for a number) of an endpoint's
/// template is: the number of `/` before it. Depends on the endpoint alone, so a plan keeps it
/// per endpoint ([`super::plan::Plan`]) and walks only the path on each call.
pub(super) fn template_segment(endpoint: &str, name: &str) -> Option<usize> {
    let tpl = &endpoint[memchr::memchr(b' ', endpoint.as_bytes())? + 1..];
    let tb = tpl.as_bytes();
    // from one '{' to the next (most templates have none): a placeholder is a segment that
    // starts with one; the wanted one's segment number (byte loops: segments are short)
    let mut at = memchr::memchr(b'{', tb)?;
    let idx: Option<usize> = name.parse().ok();
    let (mut k, mut seg, mut counted) = (0, 0, 0);
    loop {
        let end = tb[at..].iter().position(|&b| b == b'/').map_or(tb.len(), |x| at + x);
        if at == 0 || tb[at - 1] == b'/' {
            seg += tb[counted..at].iter().filter(|&&b| b == b'/').count();
            counted = at;
            if idx == Some(k) || trim_braces(&tpl[at..end]) == name {
                return Some(seg);
            }
            k += 1;
        }
        if end == tb.len() {
            return None;
        }
        at = end + 1 + memchr::memchr(b'{', &tb[end + 1..])?;
    }
}

/// The segment of `path` after its `seg`-th `/` (up to the next one), when it has that many.
pub(super) fn path_segment(path: &str, seg: usize) -> Option<&str> {
    let pb = path.as_bytes();
    // (plain loops: a path is a few dozen bytes, shorter than a vector search's setup)
    let mut j = 0;
    if seg > 0 {
        let mut left = seg;
        loop {
            if j == pb.len() {
                return None;
            }
            j += 1;
            if pb[j - 1] == b'/' {
                left -= 1;
                if left == 0 {
                    break;
                }
            }
        }
    }
    let mut pe = j;
    while pe < pb.len() && pb[pe] != b'/' {
        pe += 1;
    }
    Some(&path[j..pe])
}

#[cfg(test)]
mod trim_tests {
    #[test]
    fn trim_braces_is_trim_matches() {
        for t in ["{id}", "{{id}}", "}id{", "{}", "{", "", "id", "{a}b}", "{é}", "{{}}"] {
            assert_eq!(super::trim_braces(t), t.trim_matches(['{', '}']), "{t}");
        }
    }

    /// The walk `View::path_param` did before (template and path side by side, byte by byte).
    fn walk<'p>(endpoint: &str, path: &'p str, name: &str) -> Option<&'p str> {
        let tpl = &endpoint[memchr::memchr(b' ', endpoint.as_bytes())? + 1..];
        let idx: Option<usize> = name.parse().ok();
        let mut k = 0;
        let (tb, pb) = (tpl.as_bytes(), path.as_bytes());
        let (mut i, mut j) = (0, 0);
        loop {
            let te = tb[i..].iter().position(|&b| b == b'/').map_or(tb.len(), |x| i + x);
            let pe = pb[j..].iter().position(|&b| b == b'/').map_or(pb.len(), |x| j + x);
            let t = &tpl[i..te];
            if t.starts_with('{') {
                if idx == Some(k) || super::trim_braces(t) == name {
                    return Some(&path[j..pe]);
                }
                k += 1;
            }
            if te == tb.len() || pe == pb.len() {
                return None;
            }
            (i, j) = (te + 1, pe + 1);
        }
    }

    /// Finding the placeholder in the template first, then its segment of the path, returns what
    /// the side-by-side walk returns, whatever the shapes of template, path and name.
    #[test]
    fn path_param_found_in_the_template_first_is_the_side_by_side_walk() {
        let endpoints = [
            "GET /users/{id}",
            "GET /users/{id}/orders/{uuid}",
            "GET /a/{x}/{x}/{id}",
            "GET /users",
            "GET /",
            "GET ",
            "GET",
            "GET /{id}",
            "GET {id}",
            "GET /a//{id}",
            "GET /a/{id}/",
            "GET /a/{{id}}/b",
            "GET /a/{}/b/{param}",
            "GET /a/x{id}/{id}",
            "POST /v1/{é}/{0}",
            "GET /a/{id}/b/{id}",
            "GET  /a/{id}",
        ];
        let paths = [
            "/users/42",
            "/users/42/orders/abc",
            "/users",
            "/",
            "",
            "/users/42/",
            "//42",
            "/a/b/c/d/e/f",
            "/a//b",
            "users/42",
            "/a/é/ü/x",
            "/users/42/orders",
            "/%2F/x",
        ];
        let names = [
            "id",
            "uuid",
            "x",
            "param",
            "0",
            "1",
            "2",
            "3",
            "",
            "{id}",
            "é",
            "00",
            "-1",
            "+1",
            "18446744073709551616",
        ];
        let mut n = 0;
        for e in endpoints {
            for p in paths {
                for name in names {
                    assert_eq!(
                        super::path_param_of(e, p, name),
                        walk(e, p, name),
                        "{e:?} {p:?} {name:?}"
                    );
                    n += walk(e, p, name).is_some() as usize;
                }
            }
        }
        // generated templates and paths, hostile shapes included
        const TSEGS: [&str; 10] = [
            "users", "{id}", "{uuid}", "x{id}", "{", "}", "", "{0}", "{{id}}", "{a}{b}",
        ];
        const PSEGS: [&str; 6] = ["42", "", "a", "é", "{id}", "x/y"];
        let mut x = 0x853c_49e6_748f_ea9bu64;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let tn = 1 + (x % 5) as usize;
            let t: Vec<&str> = (0..tn)
                .map(|k| TSEGS[(x >> (8 + 4 * k)) as usize % TSEGS.len()])
                .collect();
            let pn = (x >> 40) as usize % 6;
            let p: Vec<&str> = (0..pn)
                .map(|k| PSEGS[(x >> (44 + 3 * k)) as usize % PSEGS.len()])
                .collect();
            let e = format!("GET /{}", t.join("/"));
            let p = format!("/{}", p.join("/"));
            for name in ["id", "uuid", "0", "1", "2", "a}{b", "{id}"] {
                assert_eq!(
                    super::path_param_of(&e, &p, name),
                    walk(&e, &p, name),
                    "{e:?} {p:?} {name:?}"
                );
                n += walk(&e, &p, name).is_some() as usize;
            }
        }
        assert!(n > 5000, "only {n} found");
    }
}
