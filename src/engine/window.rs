//! Sliding windows and episodes: a match counted, a threshold crossed, an alert raised.

use super::dense::Keyed;
use super::*;

/// Distinct values are counted exactly up to this many per episode, then estimated.
pub const EXACT_DISTINCT: usize = 256;
/// Distinct values listed in an alert.
pub const MAX_VALUES: usize = 10;

/// Sliding-window state of one (rule, entity[, endpoint]): one 64-byte cache line (the map's
/// key compare, the counts and times and the episode pointer all in the line the lookup
/// loads), plus the track's list and the episode's.
#[derive(Debug, Default)]
#[repr(align(64))]
pub(super) struct Window {
    /// The map key: a hash of rule, entity and `per`.
    pub(super) id: u64,
    /// A hash of the rule's id ([`RULE_BITS`]: a reload keeps the windows of rules that kept
    /// their id), and the [`FOUND`] and [`DISTINCT`] flags in the top bits.
    pub(super) rule: u64,
    pub(super) last: Ts,
    /// Times: the ring's head (entries before it are spent). Distinct: a lower bound of the
    /// times listed (exact after a prune), so a window none of whose values can have fallen
    /// out skips the prune.
    aux: u64,
    /// Times: match times in arrival order from `aux` on. Distinct: (value hash, last seen)
    /// pairs, flattened, at most `count + 1` of them (a short list: a hash set would cost a
    /// table per window).
    track: Vec<u64>,
    pub(super) episode: Option<Box<Episode>>,
}

/// The bits of [`Window::rule`] that hold the rule's hash.
pub(super) const RULE_BITS: u64 = (1 << 62) - 1;
/// `threshold.found`: the window saw a 2xx (the route is real).
const FOUND: u64 = 1 << 63;
/// The window counts distinct values (else match times).
const DISTINCT: u64 = 1 << 62;

impl Keyed for Window {
    type K = u64;
    fn key(&self) -> u64 {
        self.id
    }
}

impl Window {
    pub(super) fn new(id: u64, rule_h: u64) -> Window {
        Window {
            id,
            rule: rule_h & RULE_BITS,
            ..Window::default()
        }
    }

    pub(super) fn found(&self) -> bool {
        self.rule & FOUND != 0
    }

    /// Count a match at `ts` (with its value's hash when the window counts distinct values):
    /// (the window's level, was the value seen already in this fleet bucket).
    ///
    /// Times: the times before `ts - window` leave from the front, the oldest too when the
    /// list holds `count + 1` already, then `ts` joins at the back. Distinct: values last seen
    /// before `ts - window` leave; a listed value's time moves up to `ts`, a new one joins
    /// while the list holds at most `count`. (`window_equals_the_list_model` holds these to
    /// the former VecDeque and Vec.)
    pub(super) fn count(&mut self, ts: Ts, window_ns: u64, count: u64, distinct: Option<u64>) -> (u64, bool) {
        let cutoff = ts.saturating_sub(window_ns);
        // (a reload can turn a rule with the same id from one kind of count to the other)
        if distinct.is_some() != (self.rule & DISTINCT != 0) {
            self.rule ^= DISTINCT;
            self.track = Vec::new();
            self.aux = 0;
        }
        let Some(d) = distinct else {
            let mut head = self.aux as usize;
            let live = &self.track[head..];
            head += live.iter().position(|t| *t >= cutoff).unwrap_or(live.len());
            if (self.track.len() - head) as u64 > count {
                head += 1;
            }
            if head == self.track.len() {
                self.track.clear();
                head = 0;
            } else if head > 0 && self.track.len() == self.track.capacity() {
                // room from the spent front before the list would grow
                self.track.drain(..head);
                head = 0;
            }
            self.track.push(ts);
            self.aux = head as u64;
            return ((self.track.len() - head) as u64, false);
        };
        let set = &mut self.track;
        if self.aux < cutoff && !set.is_empty() {
            let (mut keep, mut lo) = (0, Ts::MAX);
            for i in (0..set.len()).step_by(2) {
                if set[i + 1] >= cutoff {
                    lo = lo.min(set[i + 1]);
                    set.copy_within(i..i + 2, keep);
                    keep += 2;
                }
            }
            set.truncate(keep);
            self.aux = lo;
        }
        let mut repeat = false;
        if let Some(p) = set.chunks_exact_mut(2).find(|p| p[0] == d) {
            // (the fleet has this value already if it was seen in this fleet bucket)
            let wb = window_ns.max(1_000_000_000);
            repeat = p[1] / wb == ts / wb;
            p[1] = p[1].max(ts);
        } else if (set.len() as u64 / 2) <= count {
            if set.is_empty() {
                set.reserve_exact(2); // most windows see one value
                self.aux = ts;
            }
            set.extend([d, ts]);
            self.aux = self.aux.min(ts);
        }
        (set.len() as u64 / 2, repeat)
    }

    /// The value hashes a distinct window lists.
    #[cfg(test)]
    pub(super) fn values(&self) -> impl Iterator<Item = u64> + '_ {
        let n = if self.rule & DISTINCT != 0 { self.track.len() } else { 0 };
        self.track[..n].iter().step_by(2).copied()
    }
}

/// An episode's listed values, up to [`MAX_VALUES`], in one buffer (each a u32 length, then
/// its bytes): a lookup reads one short run of memory, not a pointer per value.
/// (The first byte counts the values, when there are any: a full list takes nothing more, so
/// it is not searched; kept in the buffer, the episode stays the size it was.)
#[derive(Debug, Default)]
pub(super) struct Values(Vec<u8>);

impl Values {
    /// The values' bytes (compared as bytes: equal texts, equal bytes).
    fn iter(&self) -> impl Iterator<Item = &[u8]> {
        let mut rest = self.0.get(1..).unwrap_or_default();
        std::iter::from_fn(move || {
            let (len, tail) = rest.split_first_chunk::<4>()?;
            let (v, tail) = tail.split_at(u32::from_le_bytes(*len) as usize);
            rest = tail;
            Some(v)
        })
    }

    /// Add `v` unless listed or the list is full.
    pub(super) fn add(&mut self, v: &str) {
        let Ok(len) = u32::try_from(v.len()) else { return };
        // full: listed or not, nothing changes (most calls of a busy episode)
        let n = self.0.first().copied().unwrap_or(0);
        if usize::from(n) >= MAX_VALUES || self.iter().any(|x| x == v.as_bytes()) {
            return;
        }
        if self.0.is_empty() {
            self.0.reserve_exact(1 + 4 + v.len()); // most episodes never see a second value
            self.0.push(0);
        }
        if let Some(c) = self.0.first_mut() {
            *c = n + 1;
        }
        self.0.extend_from_slice(&len.to_le_bytes());
        self.0.extend_from_slice(v.as_bytes());
    }

    fn to_vec(&self) -> Vec<String> {
        // (only whole strings are written)
        self.iter().map(|v| String::from_utf8_lossy(v).into_owned()).collect()
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
    pub(super) values: Values,
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
        // (a hit made here borrows the rule's own id: the same text, found without a compare)
        let same = |id: &str| std::ptr::eq(id, h.rule) || id == h.rule;
        let r = match rules.rules.get(h.rule_idx).filter(|r| same(&r.id) && r.enabled) {
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
            None => self.states.insert_new(Window::new(id, h.rule_h)),
        };
        let w = self.states.at_mut(i);
        let th = &r.threshold;
        // The episode ends after a quiet period; the window itself only ever forgets what
        // fell out of it.
        if w.episode.is_some() && h.ts.saturating_sub(w.last) > r.quiet_ns {
            w.episode = None;
        }
        w.last = w.last.max(h.ts);
        if th.found != crate::rules::Found::Anything {
            let ok = (200..300).contains(&h.status);
            if ok && (th.found == crate::rules::Found::Success || h.personal) {
                w.rule |= FOUND;
            } else if !w.found() {
                return; // nothing found yet: a guess, or a public object, not someone's
            }
        }
        let (level, repeat) = w.count(h.ts, th.window_ns, th.count, h.distinct);
        let ep = w.episode.get_or_insert_with(|| {
            Box::new(Episode {
                first: h.ts,
                ..Episode::default()
            })
        });
        ep.count += 1;
        if let Some(v) = h.value {
            ep.values.add(v);
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
                    // (fields borrowed apart: the episode is borrowed from the window)
                    if w.rule & DISTINCT != 0 {
                        for k in w.track.iter().step_by(2) {
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
        let values = ep.values.to_vec();
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

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use super::*;

    /// The former track, as it was: times in a VecDeque, (value, last seen) pairs in a Vec
    /// pruned on every call.
    enum Old {
        Times(VecDeque<Ts>),
        Distinct(Vec<(u64, Ts)>),
    }

    fn old_count(track: &mut Old, ts: Ts, window_ns: u64, count: u64, distinct: Option<u64>) -> (u64, bool) {
        let cutoff = ts.saturating_sub(window_ns);
        if distinct.is_some() != matches!(track, Old::Distinct(_)) {
            *track = match distinct {
                Some(_) => Old::Distinct(Vec::new()),
                None => Old::Times(VecDeque::new()),
            };
        }
        let mut repeat = false;
        let level = match (track, distinct) {
            (Old::Times(times), None) => {
                while times.front().is_some_and(|t| *t < cutoff) {
                    times.pop_front();
                }
                if times.len() as u64 > count {
                    times.pop_front();
                }
                times.push_back(ts);
                times.len() as u64
            }
            (Old::Distinct(set), Some(d)) => {
                set.retain(|(_, t)| *t >= cutoff);
                if let Some((_, t)) = set.iter_mut().find(|(k, _)| *k == d) {
                    let wb = window_ns.max(1_000_000_000);
                    repeat = *t / wb == ts / wb;
                    *t = (*t).max(ts);
                } else if (set.len() as u64) <= count {
                    set.push((d, ts));
                }
                set.len() as u64
            }
            _ => unreachable!(),
        };
        (level, repeat)
    }

    /// What the old track holds, sorted: (value or 0, time).
    fn old_state(track: &Old) -> Vec<(u64, Ts)> {
        let mut v: Vec<(u64, Ts)> = match track {
            Old::Times(t) => t.iter().map(|t| (0, *t)).collect(),
            Old::Distinct(s) => s.clone(),
        };
        v.sort_unstable();
        v
    }

    fn new_state(w: &Window) -> Vec<(u64, Ts)> {
        let mut v: Vec<(u64, Ts)> = if w.rule & DISTINCT != 0 {
            w.track.chunks_exact(2).map(|p| (p[0], p[1])).collect()
        } else {
            w.track[w.aux as usize..].iter().map(|t| (0, *t)).collect()
        };
        v.sort_unstable();
        v
    }

    /// xorshift64*: the same sequence every run.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
    }

    /// The packed window (ring from a head index, lower-bounded prune) counts exactly as the
    /// former VecDeque and always-pruned Vec did: time going backwards, matches exactly at and
    /// one tick past the window's edge, full lists, repeats, and a reload switching the kind.
    #[test]
    fn window_equals_the_list_model() {
        const S: u64 = 1_000_000_000;
        for seed in 1..=60u64 {
            let mut rng = Rng(seed * 0x9e37_79b9_7f4a_7c15);
            let count = [0, 1, 2, 3, 5, 10, 40][seed as usize % 7];
            let window_ns = [1, 10 * S, 120 * S, 1][seed as usize % 4];
            let mut w = Window::new(7, 0xabc);
            let mut old = Old::Times(VecDeque::new());
            let mut ts: Ts = 1_000 * S;
            let mut distinct_kind = seed % 2 == 0;
            for step in 0..3_000 {
                let r = rng.next();
                ts = match r % 10 {
                    // backwards, a little or a lot (saturating at zero)
                    0 => ts.saturating_sub(r % (3 * window_ns.max(2))),
                    // exactly one window on, or one tick short of it
                    1 => ts + window_ns,
                    2 => ts + window_ns.saturating_sub(1),
                    3 => ts, // the same instant
                    _ => ts + r % (window_ns / 4 + 2),
                };
                if r % 997 == 0 {
                    distinct_kind = !distinct_kind; // a reload turned the rule's kind
                }
                let d = distinct_kind.then(|| r >> 40 & [1, 3, 15, 63][(seed / 7) as usize % 4]);
                let want = old_count(&mut old, ts, window_ns, count, d);
                let got = w.count(ts, window_ns, count, d);
                assert_eq!(got, want, "seed {seed} step {step} ts {ts} d {d:?}");
                assert_eq!(new_state(&w), old_state(&old), "seed {seed} step {step}");
                if d.is_some() {
                    let mut vs: Vec<u64> = w.values().collect();
                    vs.sort_unstable();
                    let want: Vec<u64> = old_state(&old).iter().map(|x| x.0).collect();
                    let mut want = want;
                    want.sort_unstable();
                    assert_eq!(vs, want);
                }
                // bounded like the VecDeque: the spent front never makes the list grow
                assert!(w.track.capacity() <= 4 * (count as usize + 2), "{}", w.track.capacity());
            }
        }
    }

    /// A distinct window whose oldest value is exactly at the window's edge keeps it; one tick
    /// later it goes (the lower bound must not hide a value that fell out).
    #[test]
    fn a_distinct_value_leaves_one_tick_past_the_window() {
        let mut w = Window::new(1, 2);
        assert_eq!(w.count(100, 50, 10, Some(1)), (1, false));
        assert_eq!(w.count(120, 50, 10, Some(2)), (2, false));
        // value 1 moves up to 130: the bound (100) is stale low, still a bound
        assert_eq!(w.count(130, 50, 10, Some(1)).0, 2);
        assert_eq!(w.count(170, 50, 10, Some(3)).0, 3, "120 is at the edge: kept");
        assert_eq!(w.count(171, 50, 10, Some(3)).0, 2, "120 is past it: value 2 gone");
        assert_eq!(w.count(400, 50, 10, Some(4)).0, 1, "all gone, the new one alone");
        // time going back adds an older value: the bound follows it down
        assert_eq!(w.count(360, 50, 10, Some(5)).0, 2);
        assert_eq!(w.count(411, 50, 10, Some(6)).0, 2, "360 fell out at 411");
    }

    /// The episode's listed values in one buffer keep the former Vec<String>'s order, its
    /// de-duplication and its cap, for empty, multi-byte and long values.
    #[test]
    fn packed_values_list_as_the_vec_of_strings_did() {
        let mut rng = Rng(42);
        let pool = [
            "",
            "a",
            "b",
            "ab",
            "é",
            "日本",
            "a\u{0}b",
            "x",
            "1234",
            "12345",
            "long-value-xxxxxxxxxxxxxxxx",
        ];
        for _ in 0..200 {
            let (mut old, mut new) = (Vec::<String>::new(), Values::default());
            for _ in 0..30 {
                let owned;
                let v = match rng.next() % 13 {
                    11 => {
                        owned = format!("v{}", rng.next() % 20);
                        owned.as_str()
                    }
                    12 => "ß".repeat(70).leak(),
                    i => pool[i as usize],
                };
                if old.len() < MAX_VALUES && !old.iter().any(|x| x == v) {
                    old.push(v.to_string());
                }
                new.add(v);
                assert_eq!(new.to_vec(), old);
            }
        }
    }
}
