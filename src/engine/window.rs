//! Sliding windows and episodes: a match counted, a threshold crossed, an alert raised.

use super::dense::Keyed;
use super::*;

/// Distinct values are counted exactly up to this many per episode, then estimated.
pub const EXACT_DISTINCT: usize = 256;
/// Distinct values listed in an alert.
pub const MAX_VALUES: usize = 10;

/// Sliding-window state of one (rule, entity[, endpoint]): 72 bytes, plus the episode's.
#[derive(Debug, Default)]
pub(super) struct Window {
    /// The map key: a hash of rule, entity and `per`.
    pub(super) id: u64,
    /// A hash of the rule's id: a reload keeps the windows of rules that kept their id.
    pub(super) rule: u64,
    pub(super) track: Track,
    pub(super) last: Ts,
    pub(super) episode: Option<Box<Episode>>,
    /// `threshold.found`: the window saw a 2xx (the route is real).
    pub(super) found: bool,
}

impl Keyed for Window {
    type K = u64;
    fn key(&self) -> u64 {
        self.id
    }
}

/// What a window counts: match times, or distinct values (a rule counts one or the other).
#[derive(Debug)]
pub(super) enum Track {
    Times(VecDeque<Ts>),
    /// (value hash, last seen): at most `count + 1`, a short list (a hash set would cost a
    /// table per window).
    Distinct(Vec<(u64, Ts)>),
}

impl Default for Track {
    fn default() -> Self {
        Track::Times(VecDeque::new())
    }
}

#[derive(Debug, Default)]
pub(super) struct Episode {
    pub(super) first: Ts,
    pub(super) count: u64,
    pub(super) alerted_at: u64,
    pub(super) samples: Vec<Sample>,
    /// The episode's distinct values: only kept once the episode has alerted (attackers, not
    /// every browser).
    pub(super) seen: Option<Box<Seen>>,
    pub(super) values: Vec<String>,
}

/// An episode's distinct values: exact while few (the window's own set forgets), then a
/// HyperLogLog.
#[derive(Debug, Default)]
pub(super) struct Seen {
    pub(super) exact: hashbrown::HashSet<u64>,
    pub(super) hll: Option<Box<crate::catalog::Distinct>>,
}

impl Episode {
    pub(super) fn add_distinct(&mut self, d: u64) {
        let s = self.seen.get_or_insert_with(Default::default);
        match &mut s.hll {
            Some(h) => h.add(d),
            None => {
                s.exact.insert(d);
                if s.exact.len() > EXACT_DISTINCT {
                    let mut h = Box::<crate::catalog::Distinct>::default();
                    for x in s.exact.drain() {
                        h.add(x);
                    }
                    s.exact.shrink_to_fit();
                    s.hll = Some(h);
                }
            }
        }
    }

    /// (distinct values, estimated?)
    pub(super) fn distinct(&self) -> (u64, bool) {
        match self.seen.as_deref() {
            Some(Seen { hll: Some(h), .. }) => (h.estimate().max(EXACT_DISTINCT as u64), true),
            Some(s) => (s.exact.len() as u64, false),
            None => (0, false),
        }
    }
}

impl Engine {
    /// Count a match in its window; alert when the threshold is crossed.
    pub(super) fn apply(&mut self, h: HitRef<'_>, out: &mut Vec<Out>) {
        let rules = self.rules.clone();
        let r = match rules.rules.get(h.rule_idx).filter(|r| r.id == h.rule && r.enabled) {
            Some(r) => r,
            // sent before a reload renumbered the rules, or the rule went away
            None => match rules.rules.iter().find(|r| r.id == h.rule && r.enabled) {
                Some(r) => r,
                None => return,
            },
        };
        if self.states.len() >= self.cfg.max_states {
            self.evict_states(h.ts);
        }
        let id = window_id(h.rule_h, h.key_h, h.per_h);
        let i = match self.states.find(id) {
            Some(i) => i,
            None => self.states.insert_new(Window {
                id,
                rule: h.rule_h,
                ..Window::default()
            }),
        };
        let w = self.states.at_mut(i);
        let th = &r.threshold;
        let cutoff = h.ts.saturating_sub(th.window_ns);
        // The episode ends after a quiet period; the window itself only ever forgets what
        // fell out of it.
        if w.episode.is_some() && h.ts.saturating_sub(w.last) > r.quiet_ns {
            w.episode = None;
        }
        w.last = w.last.max(h.ts);
        if th.found != crate::rules::Found::Anything {
            let ok = (200..300).contains(&h.status);
            if ok && (th.found == crate::rules::Found::Success || h.personal) {
                w.found = true;
            } else if !w.found {
                return; // nothing found yet: a guess, or a public object, not someone's
            }
        }
        // (a reload can turn a rule with the same id from one kind of count to the other)
        if h.distinct.is_some() != matches!(w.track, Track::Distinct(_)) {
            w.track = match h.distinct {
                Some(_) => Track::Distinct(Vec::new()),
                None => Track::Times(VecDeque::new()),
            };
        }
        let mut repeat = false;
        let level = match (&mut w.track, h.distinct) {
            (Track::Times(times), None) => {
                while times.front().is_some_and(|t| *t < cutoff) {
                    times.pop_front();
                }
                if times.len() as u64 > th.count {
                    times.pop_front();
                }
                times.push_back(h.ts);
                times.len() as u64
            }
            (Track::Distinct(set), Some(d)) => {
                // at most count + 1 entries: pruning every time is cheap
                set.retain(|(_, t)| *t >= cutoff);
                if let Some((_, t)) = set.iter_mut().find(|(k, _)| *k == d) {
                    // (the fleet has this value already if it was seen in this fleet bucket)
                    let wb = th.window_ns.max(1_000_000_000);
                    repeat = *t / wb == h.ts / wb;
                    *t = (*t).max(h.ts);
                } else if (set.len() as u64) <= th.count {
                    if set.is_empty() {
                        set.reserve_exact(1); // most windows see one value
                    }
                    set.push((d, h.ts));
                }
                set.len() as u64
            }
            _ => 0, // not reached: the track was just made to fit
        };
        let ep = w.episode.get_or_insert_with(|| {
            Box::new(Episode {
                first: h.ts,
                ..Episode::default()
            })
        });
        ep.count += 1;
        if let Some(v) = h.value
            && ep.values.len() < MAX_VALUES
            && !ep.values.iter().any(|x| x == v)
        {
            if ep.values.is_empty() {
                ep.values.reserve_exact(1); // most episodes never see a second value
            }
            ep.values.push(v.to_string());
        }
        // The most recent samples, so an escalation shows what happens now. A window's level
        // grows by at most one per match, so the last SAMPLES matches before it crosses its
        // threshold all come at a level above `count - SAMPLES`: below that nothing kept could
        // reach an alert (and a window that never gets close keeps none).
        if ep.alerted_at > 0 || level + SAMPLES as u64 > th.count {
            if ep.samples.len() >= SAMPLES {
                ep.samples.remove(0);
            }
            ep.samples.push(h.ctx.sample());
        }
        let crossed = level > th.count;
        if let Some(d) = h.distinct {
            if ep.alerted_at == 0 {
                if crossed {
                    // the window's values so far open the episode's own count
                    if let Track::Distinct(set) = &w.track {
                        for (k, _) in set {
                            ep.add_distinct(*k);
                        }
                    }
                }
            } else {
                ep.add_distinct(d);
            }
        }
        // One alert per episode, and again only on escalation (the count grew `escalate`
        // times since the last alert; 0 or 1: never within an episode).
        let fire = if ep.alerted_at == 0 {
            crossed
        } else {
            r.escalate >= 2 && ep.count >= ep.alerted_at.saturating_mul(r.escalate)
        };
        // Fleet on: a window's hit below the local threshold may still cross it fleet-wide. (A
        // rule alerting on every match has nothing to count; once the episode alerted here,
        // only its escalations go: the rest could only be suppressed by its claim.)
        let fleet = self.cfg.fleet && th.count > 0 && (fire || ep.alerted_at == 0);
        if !fire && !fleet {
            return;
        }
        if fire {
            ep.alerted_at = ep.count;
        }
        let (first, count) = (ep.first, ep.count);
        let (nd, estimated) = ep.distinct();
        let distinct = h.distinct.map(|_| nd);
        if fleet && !fire && !crate::fleet::template_hit(count) {
            // A distinct value seen already in this fleet bucket was sent with its first hit
            // there (by induction): Redis has it, and the fleet-wide count cannot grow.
            if repeat {
                return;
            }
            // a light hit: the fleet thread has this episode's template alert
            self.fleet_hits.push(crate::fleet::FleetHit {
                alert: None,
                id: crate::fleet::hit_id(&r.id, r.sid, h.key, h.per),
                ts: h.ts,
                count,
                hits: 1,
                distinct_count: distinct,
                fire,
                distinct: h.distinct,
                window_ns: th.window_ns,
                threshold: th.count,
                quiet_ns: r.quiet_ns,
            });
            return;
        }
        let samples = ep.samples.clone();
        let values = ep.values.clone();
        let entity_risk = if fire {
            self.entities.add_risk(h.key, h.ts, r)
        } else {
            0.0
        };
        self.stats.alerts += fire as u64;
        let alert = Box::new(Alert {
            ts: h.ts,
            sid: r.sid,
            rev: r.rev,
            signature: r.signature.clone(),
            category: r.category(),
            severity: r.severity,
            itype: r.itype,
            compromise: r.compromise,
            key: h.key.clone(),
            risk: r.risk,
            entity_risk,
            host: h.host.to_string(),
            endpoint: h.endpoint.to_string(),
            window_s: th.window_ns as f64 / 1e9,
            count,
            distinct,
            first,
            last: h.ts,
            owasp: r.owasp.clone(),
            mitre: r.mitre.clone(),
            samples,
            meta: Some(h.ctx.meta()),
            http: Some(h.ctx.http()),
            rule_id: r.id.clone(),
            distinct_estimated: estimated && distinct.is_some(),
            values,
            account: None,
        });
        if fleet {
            self.fleet_hits.push(crate::fleet::FleetHit {
                id: crate::fleet::hit_id(&r.id, r.sid, h.key, h.per),
                ts: h.ts,
                count,
                hits: 1,
                distinct_count: distinct,
                alert: Some(alert),
                fire,
                distinct: h.distinct,
                window_ns: th.window_ns,
                threshold: th.count,
                quiet_ns: r.quiet_ns,
            });
        } else {
            out.push(Out::Alert(alert));
        }
        if fire {
            self.escalate(out);
        }
    }

    /// Evict the sixteenth of window states idle longest.
    pub(super) fn evict_states(&mut self, _now: Ts) {
        let n = (self.states.len() / 16).max(1);
        let mut lasts: Vec<Ts> = self.states.iter().map(|w| w.last).collect();
        let idx = n.min(lasts.len()) - 1;
        lasts.select_nth_unstable(idx);
        let cut = lasts[idx];
        let before = self.states.len();
        let mut left = n;
        self.states.retain(
            |w| {
                if left > 0 && w.last <= cut {
                    left -= 1;
                    false
                } else {
                    true
                }
            },
            drop,
        );
        self.stats.state_evictions += (before - self.states.len()) as u64;
    }
}
