//! A rule set compiled for matching: each distinct condition once, with a guard: facts of a
//! transaction it cannot hold without (a status class, a detector's verdict, a query or a
//! body, a `{` in the endpoint), read once per transaction into a bit set. Most conditions
//! fail their guard on most calls (a 200 is no 404, a clean call trips no detector): a bit
//! test instead of an evaluation. A condition that passes its guard is evaluated in full
//! ([`View::matches`]): a guard only ever says "surely not", never "yes".
//!
//! A plan is made for one `Arc<RuleSet>` and kept while the engine holds that same rule set
//! (a reload swaps the `Arc`, and with it the plan).

use std::sync::Arc;

use super::View;
use crate::detect::Detector;
use crate::rules::{Cond, Field, ParamLoc, RuleSet};

/// Fact bits: the response's status class (1xx..9xx: bits 1..9), then these, then one bit
/// per detector ([`DET`] + its position in [`Plan::detectors`]).
const HAS_QUERY: u64 = 1 << 10;
const HAS_BODY: u64 = 1 << 11;
const EP_BRACE: u64 = 1 << 12;
const AUTH_BYPASS: u64 = 1 << 13;
const DET: u32 = 16;
/// Detectors with a fact bit at most (a rule set asking for more leaves the rest unguarded).
const MAX_DETECTORS: usize = 48;

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
    /// The detectors the conditions ask for, in fact-bit order.
    detectors: Vec<Detector>,
    /// Per rule, `id_hash` of its id (a part of its windows' ids, see [`super::window_id`]):
    /// not hashed again for every match.
    pub(super) rule_h: Vec<u64>,
    /// `id_hash("")`: the `per` part of the id of a window not kept per endpoint.
    pub(super) empty_h: u64,
    /// Per rule, the id of the field whose distinct values it counts (rules counting equal
    /// fields share one: its value is read and hashed once per transaction), or [`NO_FIELD`].
    pub(super) field_ids: Vec<u32>,
}

/// A rule that counts no distinct values.
pub(super) const NO_FIELD: u32 = u32::MAX;

impl Plan {
    pub(super) fn new(rules: Arc<RuleSet>) -> Plan {
        let ids = super::cond_ids(&rules);
        let n = ids.iter().map(|i| *i as usize + 1).max().unwrap_or(0);
        let mut guards = vec![Guard::default(); n];
        let mut detectors = Vec::new();
        for (r, id) in rules.rules.iter().zip(&ids) {
            guards[*id as usize] = guard(&r.cond, &mut detectors);
        }
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
        Plan {
            ids,
            guards,
            detectors,
            rule_h,
            empty_h: super::id_hash(""),
            field_ids,
            rules,
        }
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
        if let Some(q) = &v.tx.request {
            if memchr::memchr(b'?', q.uri.as_bytes()).is_some() {
                f |= HAS_QUERY;
            }
            if !q.body.is_empty() {
                f |= HAS_BODY;
            }
        }
        if memchr::memchr(b'{', v.endpoint.as_bytes()).is_some() {
            f |= EP_BRACE;
        }
        if v.auth_bypass {
            f |= AUTH_BYPASS;
        }
        if !self.detectors.is_empty() {
            let vd = v.verdicts();
            for (i, d) in self.detectors.iter().enumerate() {
                if vd.has(*d) {
                    f |= 1 << (DET + i as u32);
                }
            }
        }
        f
    }

    /// Does condition `id` (`c`) hold for the transaction whose facts are `facts`? The same
    /// answer as `v.matches(c)`.
    pub(super) fn matches(&self, id: u32, c: &Cond, facts: u64, v: &View<'_>) -> bool {
        self.guards[id as usize].passes(facts) && v.matches(c)
    }
}

/// The guard of a condition. `detectors`: the detectors given a fact bit so far.
fn guard(c: &Cond, detectors: &mut Vec<Detector>) -> Guard {
    let all = |b: u64| Guard { all: b, any: 0 };
    match c {
        Cond::All(cs) => {
            // every part must hold: all their musts, and one part's "one of"
            let mut g = Guard::default();
            for x in cs.iter().map(|x| guard(x, detectors)) {
                g.all |= x.all;
                if g.any == 0 {
                    g.any = x.any;
                }
            }
            g
        }
        Cond::Any(cs) => {
            // one part must hold: one of the facts some part requires, if every part requires one
            let gs: Vec<Guard> = cs.iter().map(|x| guard(x, detectors)).collect();
            if gs.is_empty() || !gs.iter().all(|g| g.requires()) {
                return Guard::default();
            }
            Guard {
                all: 0,
                any: gs.iter().fold(0, |m, g| m | g.all | g.any),
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
        Cond::Detector(d) => {
            let i = match detectors.iter().position(|x| x == d) {
                Some(i) => i,
                None if detectors.len() < MAX_DETECTORS => {
                    detectors.push(*d);
                    detectors.len() - 1
                }
                None => return Guard::default(),
            };
            all(1 << (DET + i as u32))
        }
        // a query parameter needs a query, a body field a body
        Cond::Param(ParamLoc::Query, ..) => all(HAS_QUERY),
        Cond::Param(ParamLoc::Body, ..) => all(HAS_BODY),
        Cond::Param(ParamLoc::Either, ..) => Guard {
            all: 0,
            any: HAS_QUERY | HAS_BODY,
        },
        // every character of a glob but `*` and `?` is matched as it is
        Cond::Endpoint(g) if g.as_str().contains('{') => all(EP_BRACE),
        _ => Guard::default(),
    }
}
