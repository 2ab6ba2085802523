//! Auth-bypass tracking on the capture thread: who calls each endpoint with and without
//! credentials.

use super::*;

/// When an unauthenticated 2xx counts as an auth bypass.
#[derive(Debug, Clone, Copy)]
pub struct BypassConfig {
    /// Calls with credentials the endpoint must have seen first. Default 10.
    pub min_calls: u64,
    /// Share of its clients that used credentials: at most `1 - share` of them (at least one
    /// client) may have had a 2xx without. Default 0.9.
    pub share: f64,
}

impl Default for BypassConfig {
    fn default() -> Self {
        BypassConfig {
            min_calls: 10,
            share: 0.9,
        }
    }
}

/// Who calls each endpoint with and without credentials, kept by the capture thread, which
/// sees every transaction in packet-time order: the auth-bypass verdict must not depend on
/// which worker shard got there first.
pub struct AuthTracker {
    map: HashMap<u64, AuthProfile>,
    cfg: crate::engine::BypassConfig,
    cap: usize,
}

#[derive(Default)]
pub(super) struct AuthProfile {
    authd: u64,
    auth_clients: crate::catalog::Distinct,
    open_clients: crate::catalog::Distinct,
}

impl AuthTracker {
    pub fn new(cfg: crate::engine::BypassConfig) -> Self {
        AuthTracker {
            map: HashMap::new(),
            cfg,
            cap: 100_000,
        }
    }

    /// Fold one transaction in. True when it is a 2xx without credentials on a protected
    /// endpoint: one that saw `min_calls` calls with credentials and whose clients nearly all
    /// used them (at most `1 - share` of them, and at least one, got a 2xx without). Counted in
    /// clients, not calls, so one bypasser's volume cannot make the endpoint look public.
    /// `endpoint` keeps the endpoint when this worked it out, for the worker.
    pub fn observe(
        &mut self,
        meta: &FlowMeta,
        tx: &Transaction,
        client: IpAddr,
        endpoint: &mut Option<crate::catalog::EndpointId>,
    ) -> bool {
        let Some(q) = &tx.request else { return false };
        let creds = crate::redact::Redactor::has_credentials(q);
        let ok = tx.response.as_ref().is_some_and(|r| (200..300).contains(&r.status));
        // This runs on the capture thread: template a path only when the answer can matter.
        if !creds && (!ok || self.map.is_empty()) {
            return false;
        }
        if endpoint.is_none() {
            *endpoint = crate::catalog::endpoint_of(tx, meta);
        }
        let Some((host, method, tpl)) = endpoint.as_ref() else {
            return false;
        };
        let key = hash_of(&(host, method, tpl));
        if creds {
            // Only endpoints called with credentials are tracked: a catch-all answering 200
            // to random paths cannot fill the table. Full: new endpoints go untracked.
            if !self.map.contains_key(&key) && self.map.len() >= self.cap {
                return false;
            }
            let p = self.map.entry(key).or_default();
            p.authd += 1;
            p.auth_clients.add(client);
            return false;
        }
        let Some(p) = self.map.get_mut(&key).filter(|_| ok) else {
            return false;
        };
        let open_allowed = ((1.0 - self.cfg.share) * p.auth_clients.estimate() as f64).max(1.0);
        if p.open_clients.estimate() as f64 > open_allowed {
            // already public: nothing to judge (the count goes on, as the allowance grows with
            // the clients that use credentials)
            p.open_clients.add(client);
            return false;
        }
        // Attack traffic (an injection payload, an attack tool, an SSRF probe) answered 2xx
        // without credentials does not teach the profile that the endpoint is public: an
        // early injection tool must not hide a later bypass. It is judged, not learned from.
        let attack = flagged_request(tx);
        if !attack {
            p.open_clients.add(client);
        }
        let open = p.open_clients.estimate() as f64 + attack as u64 as f64;
        if open > open_allowed {
            return false;
        }
        // A well-known protected endpoint; or, on one seen only a few times with credentials,
        // a response that hands someone's personal data to a caller without any: evidence that
        // does not depend on how many calls the profile has learned from.
        p.authd >= self.cfg.min_calls || (p.authd >= PERSONAL_MIN_CALLS && personal_data(tx))
    }
}

/// Calls with credentials after which personal data served without credentials is a bypass.
pub(super) const PERSONAL_MIN_CALLS: u64 = 2;

/// Does the response carry personal data (e-mail addresses, phone numbers, cards, ids)?
pub(super) fn personal_data(tx: &Transaction) -> bool {
    use crate::catalog::sensitive::Sensitive;
    tx.response.as_ref().is_some_and(|r| {
        crate::catalog::sensitive::scan_response(r)
            .iter()
            .any(|k| !matches!(k, Sensitive::Jwt | Sensitive::ApiKey))
    })
}

/// A request the classifiers flag as an attack on its own (injection, attack tool, SSRF).
/// Run on the capture thread only for the few transactions whose verdict matters there.
pub(super) fn flagged_request(tx: &Transaction) -> bool {
    // (no site: a link back to the site is rare in this narrow case, and counting it as an
    // attack only keeps that call out of the profile)
    crate::detect::classify(tx, &Inputs::of(tx), &Default::default()).attack()
}
