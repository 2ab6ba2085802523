//! Auth-bypass tracking on the capture thread: who calls each endpoint with and without
//! credentials.

use super::*;
use std::time::{Duration, Instant};

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
    /// `[fleet]` on: the profiles are shared with the other sensors.
    fleet: Option<Box<FleetSide>>,
    /// Keys of `map` without the fleet: a fast hash, seeded per process (the key never leaves
    /// it; the fleet's keys, shared between sensors, stay `hash_of`).
    local: hashbrown::DefaultHashBuilder,
    /// Recent clients' [`crate::catalog::Distinct::hash`], by address (see [`crate::catalog::ClientHashes`]).
    client_hashes: crate::catalog::ClientHashes,
}

/// The fleet's side of the auth profiles, per capture thread: what to tell the fleet, and
/// what it answered.
struct FleetSide {
    link: crate::fleet::AuthLink,
    /// Per endpoint, what was seen since the last flush.
    pending: HashMap<u64, crate::fleet::AuthNote>,
    /// Notes (calls and new clients) in `pending`.
    noted: usize,
    /// Packet time of the next flush.
    flush_at: Ts,
    /// The fleet's profiles, with the packet time each was fetched.
    view: HashMap<u64, (crate::fleet::FleetAuth, Instant)>,
    /// Live: endpoints asked for and not answered yet, with the packet time of the ask (an
    /// answer lost on the way is asked for again after FLEET_FRESH).
    asked: HashMap<u64, Instant>,
    /// When the call being judged was (wall time).
    now: Instant,
    /// The second (wall time) asks are counted in, and the asks in it.
    second: Instant,
    asks: u32,
}

/// Notes held before they go to the fleet at most, and for how long (packet time).
const FLEET_NOTES: usize = 512;
const FLEET_FLUSH_NS: Ts = 1_000_000_000;
/// A fleet profile older than this (wall time) is asked for again before a verdict (the
/// local figures since are counted anyway: each is the larger of local and fleet). Wall time:
/// a replay asks once per endpoint and FLEET_FRESH of its run, not per second of capture.
const FLEET_FRESH: Duration = Duration::from_secs(2);
/// Endpoints whose fleet profile is kept at most (the view is cleared when full).
const FLEET_VIEW_CAP: usize = 100_000;
/// Clients listed per endpoint in one note at most (more wait for the next flush... or
/// are lost to the fleet, as the HyperLogLog would count them once anyway).
const NOTE_CLIENTS: usize = 256;

impl FleetSide {
    fn note(&mut self, key: u64, ep: &crate::catalog::EndpointId, client: IpAddr, creds: bool, ts: Ts) {
        let n = self.pending.entry(key).or_insert_with(|| crate::fleet::AuthNote {
            endpoint: ep.clone(),
            authd: 0,
            auth_clients: Vec::new(),
            open_clients: Vec::new(),
        });
        let list = if creds {
            n.authd += 1;
            &mut n.auth_clients
        } else {
            &mut n.open_clients
        };
        if list.len() < NOTE_CLIENTS && !list.contains(&client) {
            list.push(client);
        }
        self.noted += 1;
        if self.flush_at == 0 {
            self.flush_at = ts.saturating_add(FLEET_FLUSH_NS);
        }
        if self.noted >= FLEET_NOTES || ts >= self.flush_at {
            self.send(Vec::new());
        }
    }

    /// Tell the fleet what is pending, with `ask`; folds an answer in.
    fn send(&mut self, ask: Vec<(u64, crate::catalog::EndpointId)>) -> Option<()> {
        let notes: Vec<_> = self.pending.drain().map(|(_, n)| n).collect();
        self.noted = 0;
        self.flush_at = 0;
        let answer = self.link.send(notes, ask)?;
        self.fold(answer);
        Some(())
    }

    fn fold(&mut self, answer: crate::fleet::AuthAnswer) {
        for (k, f) in answer {
            self.asked.remove(&k);
            if self.view.len() >= FLEET_VIEW_CAP && !self.view.contains_key(&k) {
                self.view.clear();
            }
            // stamped when folded in: fresh for FLEET_FRESH from here
            self.view.insert(k, (f, self.now));
        }
    }

    /// The fleet's profile of an endpoint, asked for when it is missing or old. A replay
    /// waits for it; live answers what it has and asks for the next call.
    fn profile(&mut self, key: u64, ep: &crate::catalog::EndpointId) -> Option<crate::fleet::FleetAuth> {
        let now = Instant::now();
        self.now = now;
        let live = !self.link.replay();
        if live {
            let answers: Vec<_> = self.link.answers().collect();
            for a in answers {
                self.fold(a);
            }
        }
        let fresh = self
            .view
            .get(&key)
            .is_some_and(|(_, at)| now.duration_since(*at) < FLEET_FRESH);
        let waiting = live
            && self
                .asked
                .get(&key)
                .is_some_and(|at| now.duration_since(*at) < FLEET_FRESH);
        if !fresh && !waiting && self.budget(now) {
            if live {
                if self.asked.len() >= FLEET_VIEW_CAP {
                    self.asked.clear();
                }
                self.asked.insert(key, now);
            }
            self.send(vec![(key, ep.clone())]);
            if !live && !self.view.contains_key(&key) {
                // no answer (Redis down): judged on local state, not asked again for a while
                self.view.insert(key, (Default::default(), now));
            }
        }
        self.view.get(&key).map(|(f, _)| *f)
    }
}

impl FleetSide {
    /// An ask may go: at most FLEET_ASKS a second (wall time), so a flood of new endpoints
    /// (random paths on a catch-all answering 200) cannot hold a replay on Redis round trips
    /// or crowd the fleet's queue live. Past it, a call is judged on the local profile.
    fn budget(&mut self, now: Instant) -> bool {
        if now.duration_since(self.second) >= Duration::from_secs(1) {
            self.second = now;
            self.asks = 0;
        }
        self.asks += 1;
        self.asks <= FLEET_ASKS
    }
}

/// Asks for fleet profiles per capture thread and second at most.
const FLEET_ASKS: u32 = 200;

impl Drop for FleetSide {
    /// What is pending goes to the fleet (a replay's last calls count for the next sensor).
    fn drop(&mut self) {
        self.send(Vec::new());
    }
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
            fleet: None,
            local: Default::default(),
            client_hashes: Default::default(),
        }
    }

    /// Share the profiles with the fleet (`[fleet]` on).
    pub fn with_fleet(mut self, link: Option<crate::fleet::AuthLink>) -> Self {
        self.fleet = link.map(|link| {
            Box::new(FleetSide {
                link,
                pending: HashMap::new(),
                noted: 0,
                flush_at: 0,
                view: HashMap::new(),
                asked: Default::default(),
                now: Instant::now(),
                second: Instant::now(),
                asks: 0,
            })
        });
        self
    }

    /// An endpoint's key in `map` (and, with the fleet on, the fleet's: the same everywhere).
    fn key(&self, ep: &crate::catalog::EndpointId) -> u64 {
        let parts = ep.parts();
        match self.fleet {
            Some(_) => hash_of(&parts),
            None => std::hash::BuildHasher::hash_one(&self.local, parts),
        }
    }

    /// Fold one transaction in. True when it is a 2xx without credentials on a protected
    /// endpoint: one that saw `min_calls` calls with credentials and whose clients nearly all
    /// used them (at most `1 - share` of them, and at least one, got a 2xx without). Counted in
    /// clients, not calls, so one bypasser's volume cannot make the endpoint look public.
    /// `endpoint` keeps the endpoint when this worked it out, for the worker.
    ///
    /// With the fleet on, the endpoint's calls and clients seen by every sensor count: each
    /// figure is the larger of this thread's and the fleet's (which holds this thread's once
    /// told), so calls spread over sensors add up and none is counted twice.
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
        if !creds && (!ok || (self.map.is_empty() && self.fleet.is_none())) {
            return false;
        }
        if endpoint.is_none() {
            *endpoint = crate::catalog::endpoint_of(tx, meta);
        }
        let Some(ep) = endpoint.as_ref() else {
            return false;
        };
        let key = self.key(ep);
        let ts = q.start;
        if creds {
            // Only endpoints called with credentials are tracked: a catch-all answering 200
            // to random paths cannot fill the table. Full: new endpoints go untracked (and
            // are not told to the fleet: its keys are bounded as this table is).
            if self.map.len() >= self.cap && !self.map.contains_key(&key) {
                return false;
            }
            if let Some(f) = self.fleet.as_mut() {
                f.note(key, ep, client, true, ts);
            }
            let p = self.map.entry(key).or_default();
            p.authd += 1;
            p.auth_clients.add_hash(self.client_hashes.get(client));
            return false;
        }
        // The fleet's profile, when it knows the endpoint as one called with credentials.
        let fleet = match self.fleet.as_mut() {
            Some(f) => f.profile(key, ep).filter(|p| p.authd > 0),
            None => None,
        };
        if fleet.is_some() && !self.map.contains_key(&key) && self.map.len() < self.cap {
            self.map.insert(key, AuthProfile::default());
        }
        let Some(p) = self.map.get_mut(&key) else {
            return false;
        };
        let f = fleet.unwrap_or_default();
        let auth_clients = p.auth_clients.estimate().max(f.auth_clients);
        let open_allowed = ((1.0 - self.cfg.share) * auth_clients as f64).max(1.0);
        let open_now = |p: &AuthProfile| p.open_clients.estimate().max(f.open_clients) as f64;
        let attack = if open_now(p) > open_allowed {
            // already public: nothing to judge (the count goes on, as the allowance grows with
            // the clients that use credentials)
            false
        } else {
            // Attack traffic (an injection payload, an attack tool, an SSRF probe) answered
            // 2xx without credentials does not teach the profile that the endpoint is public:
            // an early injection tool must not hide a later bypass. It is judged, not learned
            // from.
            flagged_request(tx)
        };
        let public = open_now(p) > open_allowed;
        if !attack {
            p.open_clients.add_hash(self.client_hashes.get(client));
            if let Some(fs) = self.fleet.as_mut() {
                fs.note(key, ep, client, false, ts);
            }
        }
        if public {
            return false;
        }
        let open = open_now(p) + attack as u64 as f64;
        if open > open_allowed {
            return false;
        }
        // A well-known protected endpoint; or, on one seen only a few times with credentials,
        // a response that hands someone's personal data to a caller without any: evidence that
        // does not depend on how many calls the profile has learned from.
        let authd = p.authd.max(f.authd);
        authd >= self.cfg.min_calls || (authd >= PERSONAL_MIN_CALLS && personal_data(tx))
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

#[cfg(test)]
mod key_tests {
    use super::*;

    /// Without the fleet, endpoint keys come from a fast per-process hash: the same endpoint
    /// always gets the same key, and the three parts are hashed apart (a byte moved from one
    /// part to the next is another endpoint).
    #[test]
    fn local_endpoint_keys_are_stable_and_tell_endpoints_apart() {
        let t = AuthTracker::new(Default::default());
        let ep = crate::catalog::EndpointId::new;
        let a = ep("api", "GET", "/users/{id}");
        assert_eq!(t.key(&a), t.key(&a.clone()));
        for b in [
            ep("apiG", "ET", "/users/{id}"),
            ep("api", "GET/", "users/{id}"),
            ep("api", "POST", "/users/{id}"),
            ep("API", "GET", "/users/{id}"),
            ep("", "", ""),
        ] {
            assert_ne!(t.key(&a), t.key(&b), "{b:?}");
        }
        let keys: std::collections::HashSet<u64> = (0..10_000)
            .map(|i| t.key(&ep("h", "GET", &format!("/p/{i}"))))
            .collect();
        assert_eq!(keys.len(), 10_000);
    }
}
