//! A rule set compiled for matching: each distinct condition once, with a guard: facts of a
//! transaction it cannot hold without (a status class, a detector's verdict, a query name or a
//! body key the text could hold), read once per transaction into a bit set. Most conditions
//! fail their guard on most calls (a 200 is no 404, a clean call trips no detector): a bit
//! test instead of an evaluation. A condition that passes its guard is evaluated in full
//! ([`View::matches`]): a guard only ever says "surely not", never "yes".
//!
//! What depends on the call's host and endpoint alone is decided once per (host, endpoint) and
//! kept ([`EpRec`]): the endpoint globs of the conditions, the rules' scopes, where a counted
//! path parameter sits in the template. With the guards' verdict per set of facts (also kept),
//! a call visits only the rules that can match it ([`Plan::matching`]): the index by status,
//! detector, query name, body key and endpoint that a rule-by-rule walk lacked.
//!
//! A plan is made for one `Arc<RuleSet>` and kept while the engine holds that same rule set
//! (a reload swaps the `Arc`, and with it the plan).

use std::borrow::Cow;
use std::hash::BuildHasher;
use std::sync::Arc;

use foldhash::fast::RandomState;
use hashbrown::HashTable;

use super::View;
use crate::detect::Detector;
use crate::rules::{Cond, Field, ParamLoc, RuleSet};

/// Fact bits: the response's status class (1xx..9xx: bits 1..9), then these, then one bit
/// per detector ([`DET`] + its position in [`Names::detectors`]), per query parameter name
/// ([`QNAME`] + its position in [`Names::query`]: the query could hold it) and per body key
/// ([`BNAME`] + its position in [`Names::body`]: the body could hold it).
const HAS_QUERY: u64 = 1 << 10;
const HAS_BODY: u64 = 1 << 11;
const AUTH_BYPASS: u64 = 1 << 13;
const DET: u32 = 16;
/// Detectors with a fact bit at most (a rule set asking for more leaves the rest unguarded).
const MAX_DETECTORS: usize = 16;
const QNAME: u32 = 32;
const BNAME: u32 = 48;
/// Query names and body keys with a fact bit at most (the rest are unguarded).
const MAX_NAMES: usize = 16;
/// Bodies longer than this are not searched for the keys (their bits are all set: "could"),
/// so a rule asking for a body key never costs a search of a large body that its other
/// criteria would rule out.
const MAX_NAME_SEARCH: usize = 4096;

/// What the guards ask of a call besides its status and body: detectors, query parameters,
/// body keys (the first part of a dotted path), in fact-bit order.
#[derive(Default)]
struct Names {
    detectors: Vec<Detector>,
    query: Vec<String>,
    body: Vec<String>,
    /// A searcher per query name, per body key (built once: building one costs more than
    /// most searches; a byte search for the first letter stops at every `e` of a JSON body).
    query_finders: Vec<memchr::memmem::Finder<'static>>,
    body_finders: Vec<memchr::memmem::Finder<'static>>,
}

fn finders(names: &[String]) -> Vec<memchr::memmem::Finder<'static>> {
    names
        .iter()
        .map(|n| memchr::memmem::Finder::new(n.as_bytes()).into_owned())
        .collect()
}

/// The position of `x` in `v`, added when new and there is room.
fn slot<T: PartialEq + Clone>(v: &mut Vec<T>, x: &T, cap: usize) -> Option<u32> {
    match v.iter().position(|y| y == x) {
        Some(i) => Some(i as u32),
        None if v.len() < cap => {
            v.push(x.clone());
            Some(v.len() as u32 - 1)
        }
        None => None,
    }
}

/// What a condition cannot hold without: every bit of `all`, and (when not 0) some bit of
/// `any`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Guard {
    all: u64,
    any: u64,
}

impl Guard {
    fn passes(self, facts: u64) -> bool {
        facts & self.all == self.all && (self.any == 0 || facts & self.any != 0)
    }

    /// Requires something (else it always passes).
    fn requires(self) -> bool {
        self.all != 0 || self.any != 0
    }
}

pub(super) struct Plan {
    pub(super) rules: Arc<RuleSet>,
    /// Per rule, its condition's id (rules with equal conditions share one).
    pub(super) ids: Vec<u32>,
    /// Per condition id, its guard.
    guards: Vec<Guard>,
    /// The detectors, query names and body keys the conditions ask for.
    names: Names,
    /// Per rule, `id_hash` of its id (a part of its windows' ids, see [`super::window_id`]):
    /// not hashed again for every match.
    pub(super) rule_h: Vec<u64>,
    /// `id_hash("")`: the `per` part of the id of a window not kept per endpoint.
    pub(super) empty_h: u64,
    /// Per rule, the id of the field whose distinct values it counts (rules counting equal
    /// fields share one: its value is read and hashed once per transaction), or [`NO_FIELD`].
    pub(super) field_ids: Vec<u32>,
    /// Per rule, the id of its scope (rules with equal scopes share one), none for no scope.
    scope_ids: Vec<Option<u32>>,
    /// Per field id, its path parameter's name (for [`EpRec::segs`]), else none.
    path_params: Vec<Option<String>>,
    /// Words of a bit set of rules, of conditions.
    rule_words: usize,
    cond_words: usize,
    /// What each (host, endpoint) decides, and its index by `ep_hash`: cleared when it holds
    /// [`MAX_EPS`] (a flood of distinct endpoints costs their evaluation, never memory).
    eps: Vec<EpRec>,
    ep_index: HashTable<u32>,
    /// Seeded per plan at random: hosts and endpoints are the clients' to choose, and with a
    /// known seed they could be picked to fall on one probe chain.
    ep_hasher: RandomState,
    /// Per set of facts, the rules whose guards pass (bit sets of `rule_words`), and their
    /// index: cleared when it holds [`MAX_FACTS`].
    passing: Vec<u64>,
    passing_index: hashbrown::HashMap<u64, u32, RandomState>,
    /// Per condition id, this call: unknown, false or true (a buffer kept from call to call).
    memo: Vec<u8>,
}

/// Distinct (host, endpoint) pairs a plan keeps decisions for (the two texts, up to ~550 bytes
/// with a hostile Host, plus a few bits per rule and condition: ~12 MiB per engine at worst with
/// the default rules, more with thousands of user rules; an API with thousands of untemplated paths, like one product id per path,
/// still fits, so its records are not made again and again).
pub(super) const MAX_EPS: usize = 16384;
/// Distinct sets of facts a plan keeps guard verdicts for.
pub(super) const MAX_FACTS: usize = 1024;
const UNKNOWN: u8 = 2;

/// What one (host, endpoint) decides for every call to it.
pub(super) struct EpRec {
    /// `host`, a space, `endpoint`; the host's length (a host could hold a space).
    text: Box<str>,
    host_len: u32,
    /// The rules that can match here: enabled, in scope, their condition not ruled out by the
    /// endpoint.
    rules: Box<[u64]>,
    /// The conditions the endpoint alone makes true (those of `rules` need no evaluation).
    holds: Box<[u64]>,
    /// Per field id: for a path parameter, its segment in the template (none: the template
    /// has no such parameter).
    segs: Box<[Option<usize>]>,
    /// Where the entity table's strings last held `endpoint` (a hint, see
    /// `Strings::find_hinted`: checked before use, so a stale one only costs a lookup).
    pub(super) ent_hint: u32,
    /// The slot of the endpoint's baseline window (a hint, see `Baselines::endpoint_hinted`).
    pub(super) base_hint: u32,
}

fn bit(set: &[u64], i: usize) -> bool {
    set[i / 64] >> (i % 64) & 1 != 0
}

fn set_bit(set: &mut [u64], i: usize) {
    set[i / 64] |= 1 << (i % 64);
}

/// What a condition's answer is from the endpoint alone: `Some` when its endpoint globs decide
/// it whatever else the call holds, `None` when the rest of the call matters.
fn by_endpoint(c: &Cond, endpoint: &str) -> Option<bool> {
    match c {
        Cond::Endpoint(g) => Some(g.matches(endpoint)),
        Cond::Not(c) => by_endpoint(c, endpoint).map(|b| !b),
        Cond::All(cs) => by_endpoint_all_or_any(cs, endpoint, false),
        Cond::Any(cs) => by_endpoint_all_or_any(cs, endpoint, true),
        _ => None,
    }
}

/// [`by_endpoint`] of `all` (`decisive` false) or `any` (`decisive` true): a part decided
/// `decisive` decides the whole; else the whole is `!decisive` once every part is decided.
fn by_endpoint_all_or_any(cs: &[Cond], endpoint: &str, decisive: bool) -> Option<bool> {
    let mut decided = true;
    for c in cs {
        match by_endpoint(c, endpoint) {
            Some(b) if b == decisive => return Some(decisive),
            Some(_) => {}
            None => decided = false,
        }
    }
    decided.then_some(!decisive)
}

/// A rule that counts no distinct values.
pub(super) const NO_FIELD: u32 = u32::MAX;

impl Plan {
    pub(super) fn new(rules: Arc<RuleSet>) -> Plan {
        let ids = super::cond_ids(&rules);
        let n = ids.iter().map(|i| *i as usize + 1).max().unwrap_or(0);
        let mut guards = vec![Guard::default(); n];
        let mut names = Names::default();
        for (r, id) in rules.rules.iter().zip(&ids) {
            guards[*id as usize] = guard(&r.cond, &mut names);
        }
        names.query_finders = finders(&names.query);
        names.body_finders = finders(&names.body);
        let rule_h = rules.rules.iter().map(|r| super::id_hash(r.id.as_str())).collect();
        let mut fields: Vec<&Field> = Vec::new();
        let field_ids = rules
            .rules
            .iter()
            .map(|r| match &r.threshold.distinct {
                Some(f) => match fields.iter().position(|x| *x == f) {
                    Some(i) => i as u32,
                    None => {
                        fields.push(f);
                        fields.len() as u32 - 1
                    }
                },
                None => NO_FIELD,
            })
            .collect();
        let mut scopes: Vec<(Vec<&str>, Vec<&str>)> = Vec::new();
        let scope_ids = rules
            .rules
            .iter()
            .map(|r| {
                if r.scope.hosts.is_empty() && r.scope.endpoints.is_empty() {
                    return None;
                }
                let s = (
                    r.scope.hosts.iter().map(|g| g.as_str()).collect(),
                    r.scope.endpoints.iter().map(|g| g.as_str()).collect(),
                );
                Some(slot(&mut scopes, &s, usize::MAX).unwrap_or(0))
            })
            .collect();
        let path_params = fields
            .iter()
            .map(|f| match f {
                Field::PathParam(n) => Some(n.clone()),
                _ => None,
            })
            .collect();
        Plan {
            rule_words: rules.rules.len().div_ceil(64),
            cond_words: n.div_ceil(64),
            ids,
            guards,
            names,
            rule_h,
            empty_h: super::id_hash(""),
            field_ids,
            path_params,
            scope_ids,
            eps: Vec::new(),
            ep_index: HashTable::new(),
            ep_hasher: RandomState::default(),
            passing: Vec::new(),
            passing_index: Default::default(),
            memo: Vec::new(),
            rules,
        }
    }

    /// The rules that match the call, in rule order, into `out`: those for which
    /// `r.enabled && v.matches(&r.cond) && v.in_scope(r)`, each condition evaluated at most
    /// once, and only for the rules its endpoint and facts leave possible. Returns the index of
    /// the call's [`EpRec`] (for [`Plan::field`]).
    #[cfg(test)]
    pub(super) fn matching(&mut self, v: &View<'_>, out: &mut Vec<u32>) -> usize {
        let ep = self.endpoint(v.host, v.endpoint);
        self.matching_at(v, ep, out);
        ep
    }

    /// [`Plan::matching`] with the call's [`EpRec`] found already ([`Plan::endpoint`]).
    pub(super) fn matching_at(&mut self, v: &View<'_>, ep: usize, out: &mut Vec<u32>) {
        out.clear();
        let pass = self.passing(self.facts(v));
        let mut memo = std::mem::take(&mut self.memo);
        memo.clear();
        memo.resize(self.guards.len(), UNKNOWN);
        let rec = &self.eps[ep];
        for w in 0..self.rule_words {
            let mut bits = rec.rules[w] & self.passing[pass + w];
            while bits != 0 {
                let i = w * 64 + bits.trailing_zeros() as usize;
                bits &= bits - 1;
                let id = self.ids[i] as usize;
                let m = if bit(&rec.holds, id) {
                    true
                } else {
                    match memo[id] {
                        UNKNOWN => {
                            let m = v.matches(&self.rules.rules[i].cond);
                            memo[id] = m as u8;
                            m
                        }
                        k => k == 1,
                    }
                };
                if m {
                    out.push(i as u32);
                }
            }
        }
        self.memo = memo;
    }

    /// The value of the field with id `fid` (`f`) in `v`, whose endpoint record is `ep`: a
    /// path parameter is found where the record says, without walking the template again.
    pub(super) fn field<'v>(&self, ep: usize, fid: u32, f: &Field, v: &'v View<'_>) -> Option<Cow<'v, str>> {
        match (f, self.eps[ep].segs.get(fid as usize)) {
            (Field::PathParam(_), Some(seg)) => super::view::path_segment(v.path, (*seg)?).map(Cow::Borrowed),
            _ => v.field(f),
        }
    }

    /// The entity strings' hint for the text of the endpoint of record `ep`.
    pub(super) fn ent_hint(&mut self, ep: usize) -> &mut u32 {
        &mut self.eps[ep].ent_hint
    }

    /// The baseline window's slot hint for the endpoint of record `ep`.
    pub(super) fn base_hint(&mut self, ep: usize) -> &mut u32 {
        &mut self.eps[ep].base_hint
    }

    /// How many endpoint records and sets of facts the plan keeps (for the tests of its caps).
    #[cfg(test)]
    pub(super) fn kept(&self) -> (usize, usize) {
        (self.eps.len(), self.passing_index.len())
    }

    /// The index of the record of (`host`, `endpoint`), made when new.
    pub(super) fn endpoint(&mut self, host: &str, endpoint: &str) -> usize {
        let h = self.ep_hasher.hash_one((host, endpoint));
        let same = |r: &EpRec| {
            let hl = r.host_len as usize;
            hl == host.len() && &r.text[..hl] == host && &r.text[hl + 1..] == endpoint
        };
        let eps = &self.eps;
        if let Some(&i) = self.ep_index.find(h, |&i| same(&eps[i as usize])) {
            return i as usize;
        }
        if self.eps.len() >= MAX_EPS {
            self.eps.clear();
            self.ep_index.clear();
        }
        let rec = self.decide(host, endpoint);
        let i = self.eps.len() as u32;
        self.eps.push(rec);
        let (eps, hasher) = (&self.eps, &self.ep_hasher);
        self.ep_index.insert_unique(h, i, |&j| {
            let r = &eps[j as usize];
            let hl = r.host_len as usize;
            hasher.hash_one((&r.text[..hl], &r.text[hl + 1..]))
        });
        i as usize
    }

    /// What (`host`, `endpoint`) decides for every call to it.
    fn decide(&self, host: &str, endpoint: &str) -> EpRec {
        let mut rules = vec![0u64; self.rule_words];
        let mut holds = vec![0u64; self.cond_words];
        let mut decided = vec![None; self.guards.len()];
        let mut done = vec![false; self.guards.len()];
        // (each distinct scope once: the login group's globs serve three rules)
        let n_scopes = self
            .scope_ids
            .iter()
            .flatten()
            .map(|i| *i as usize + 1)
            .max()
            .unwrap_or(0);
        let mut scopes: Vec<Option<bool>> = vec![None; n_scopes];
        let mut scope = |i: usize, r: &crate::rules::Rule| match self.scope_ids[i] {
            None => true,
            Some(s) => *scopes[s as usize].get_or_insert_with(|| super::view::in_scope_at(host, endpoint, r)),
        };
        for (i, r) in self.rules.rules.iter().enumerate() {
            let id = self.ids[i] as usize;
            if !done[id] {
                decided[id] = by_endpoint(&r.cond, endpoint);
                done[id] = true;
                if decided[id] == Some(true) {
                    set_bit(&mut holds, id);
                }
            }
            if r.enabled && decided[id] != Some(false) && scope(i, r) {
                set_bit(&mut rules, i);
            }
        }
        let segs = self
            .path_params
            .iter()
            .map(|p| p.as_deref().and_then(|n| super::view::template_segment(endpoint, n)))
            .collect();
        EpRec {
            text: crate::util::concat(&[host, " ", endpoint]).into(),
            host_len: host.len() as u32,
            rules: rules.into(),
            holds: holds.into(),
            segs,
            ent_hint: u32::MAX,
            base_hint: u32::MAX,
        }
    }

    /// The offset in `passing` of the rules whose guards pass on `facts`, computed when new.
    fn passing(&mut self, facts: u64) -> usize {
        if let Some(&at) = self.passing_index.get(&facts) {
            return at as usize;
        }
        if self.passing_index.len() >= MAX_FACTS {
            self.passing_index.clear();
            self.passing.clear();
        }
        let at = self.passing.len();
        self.passing.resize(at + self.rule_words, 0);
        for (i, id) in self.ids.iter().enumerate() {
            if self.guards[*id as usize].passes(facts) {
                set_bit(&mut self.passing[at..], i);
            }
        }
        self.passing_index.insert(facts, at as u32);
        at
    }

    /// The transaction's facts, as the guards read them.
    pub(super) fn facts(&self, v: &View<'_>) -> u64 {
        let mut f = 0u64;
        if let Some(r) = &v.tx.response {
            let class = r.status / 100;
            if (1..=9).contains(&class) {
                f |= 1 << class;
            }
        }
        if let Some(q) = &v.tx.request
            && !q.body.is_empty()
        {
            f |= HAS_BODY;
        }
        if v.auth_bypass {
            f |= AUTH_BYPASS;
        }
        if !self.names.detectors.is_empty() {
            let vd = v.verdicts();
            for (i, d) in self.names.detectors.iter().enumerate() {
                if vd.has(*d) {
                    f |= 1 << (DET + i as u32);
                }
            }
        }
        // the names each parameter condition's own test looks for (`View::has_query`,
        // `View::query`, `View::body_value`): without one, surely no such parameter
        if let Some(q) = &v.tx.request {
            let names = &self.names;
            if let Some((_, qs)) = crate::util::split_query(&q.uri) {
                f |= HAS_QUERY;
                if !names.query.is_empty() {
                    f |= name_bits(qs.as_bytes(), &names.query_finders, b"%++", QNAME);
                }
            }
            if !names.body.is_empty() && !q.body.is_empty() {
                f |= if q.body.len() > MAX_NAME_SEARCH {
                    ((1u64 << names.body.len()) - 1) << BNAME
                } else {
                    name_bits(&q.body, &names.body_finders, b"\\%+", BNAME)
                };
            }
        }
        f
    }

    /// Does condition `id` (`c`) hold for the transaction whose facts are `facts`? The same
    /// answer as `v.matches(c)` (the guards alone, for their test).
    #[cfg(test)]
    pub(super) fn matches(&self, id: u32, c: &Cond, facts: u64, v: &View<'_>) -> bool {
        self.guards[id as usize].passes(facts) && v.matches(c)
    }
}

/// The fact bits (from `at` on) of the `names` that `text` could hold once decoded: all of them
/// when it holds one of the `escapes`, else those it holds as they are ([`super::view::may_name`]
/// for each, with one escape search).
fn name_bits(text: &[u8], names: &[memchr::memmem::Finder<'static>], escapes: &[u8; 3], at: u32) -> u64 {
    if memchr::memchr3(escapes[0], escapes[1], escapes[2], text).is_some() {
        return ((1u64 << names.len()) - 1) << at;
    }
    let mut f = 0;
    for (i, n) in names.iter().enumerate() {
        if n.find(text).is_some() {
            f |= 1 << (at + i as u32);
        }
    }
    f
}

/// The first key of a body path (`user` of `user.email`): the one [`View::body_value`] looks
/// for in the body's text.
fn first_key(name: &str) -> &str {
    memchr::memchr(b'.', name.as_bytes()).map_or(name, |i| &name[..i])
}

/// The guard of a condition. `names`: the detectors and names given a fact bit so far.
fn guard(c: &Cond, names: &mut Names) -> Guard {
    let all = |b: u64| Guard { all: b, any: 0 };
    match c {
        Cond::All(cs) => {
            // every part must hold: all their musts, and one part's "one of"
            let mut g = Guard::default();
            for x in cs.iter().map(|x| guard(x, names)) {
                g.all |= x.all;
                if g.any == 0 {
                    g.any = x.any;
                }
            }
            g
        }
        Cond::Any(cs) => {
            // one part must hold: one fact each part requires (the highest of its musts, the
            // most telling: a key's bit says more than "has a body"), if every part requires one
            let gs: Vec<Guard> = cs.iter().map(|x| guard(x, names)).collect();
            if gs.is_empty() || !gs.iter().all(|g| g.requires()) {
                return Guard::default();
            }
            let one = |g: &Guard| {
                if g.all != 0 {
                    1 << (63 - g.all.leading_zeros())
                } else {
                    g.any
                }
            };
            Guard {
                all: 0,
                any: gs.iter().fold(0, |m, g| m | one(g)),
            }
        }
        Cond::Status(rs) => {
            // a status in a range has one of the ranges' classes (no status outside 100..=999
            // is in one: they are refused at parse time, and a class >= 10 has no bit)
            let mut any = 0u64;
            for (a, b) in rs {
                for class in (a / 100).max(1)..=(b / 100).min(9) {
                    any |= 1 << class;
                }
            }
            if any == 0 {
                // nothing can match: a bit no transaction has (all of them)
                return Guard { all: u64::MAX, any: 0 };
            }
            Guard { all: 0, any }
        }
        Cond::Detector(Detector::AuthBypass) => all(AUTH_BYPASS),
        Cond::Detector(d) => match slot(&mut names.detectors, d, MAX_DETECTORS) {
            Some(i) => all(1 << (DET + i)),
            None => Guard::default(),
        },
        // a query parameter needs a query that could hold its name, a body key a body that
        // could hold it
        Cond::Param(ParamLoc::Query, n, _) => match slot(&mut names.query, n, MAX_NAMES) {
            Some(i) => all(HAS_QUERY | 1 << (QNAME + i)),
            None => all(HAS_QUERY),
        },
        Cond::Param(ParamLoc::Body, n, _) => match slot(&mut names.body, &first_key(n).to_string(), MAX_NAMES) {
            Some(i) => all(HAS_BODY | 1 << (BNAME + i)),
            None => all(HAS_BODY),
        },
        Cond::Param(ParamLoc::Either, n, _) => {
            let q = slot(&mut names.query, n, MAX_NAMES);
            let b = slot(&mut names.body, &first_key(n).to_string(), MAX_NAMES);
            match (q, b) {
                (Some(q), Some(b)) => Guard {
                    all: 0,
                    any: 1 << (QNAME + q) | 1 << (BNAME + b),
                },
                _ => Guard {
                    all: 0,
                    any: HAS_QUERY | HAS_BODY,
                },
            }
        }
        // (an endpoint glob is decided once per endpoint: `EpRec`)
        _ => Guard::default(),
    }
}
