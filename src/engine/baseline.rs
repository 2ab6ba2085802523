//! Behavioural detectors that learn a baseline (all on packet time):
//!
//! - `rate_abuse`: an address's requests per `rate_bucket` seconds against its own usual rate
//!   and against the population's (the 90th percentile of every address's completed buckets
//!   that did not alert).
//!   It fires when the current bucket passes an absolute floor AND `rate_factor` times the
//!   population p99 AND `rate_factor` times the address's own mean (once it has one), so a
//!   client that is always busy does not alert, nor does a quiet sensor's first minute.
//! - `error_spike` / `latency_anomaly`: per endpoint, in `endpoint_bucket` windows: the error
//!   ratio (status >= 500, or 4xx except 401/403/404 which are clients' business) and the p95
//!   latency against their moving baselines (learned over `learn_buckets` windows), with floors.
//!
//! - `data_exposure` by volume: response bytes per address per `volume_bucket` against its
//!   own mean and the peers' p90, above a floor, as for the rate.
//!
//! Tables are capped; a full table forgets addresses and endpoints idle the longest.

use std::net::IpAddr;

use super::dense::{Dense, Keyed};
use crate::capture::Ts;

#[derive(Debug, Clone)]
pub struct BaselineConfig {
    /// Seconds per rate bucket. Default 10.
    pub rate_bucket_s: u64,
    /// Requests per bucket below which nothing is a flood. Default 100.
    pub rate_floor: u64,
    /// Times the population p99 and the address's own mean. Default 5.
    pub rate_factor: f64,
    /// Seconds per endpoint window. Default 60.
    pub endpoint_bucket_s: u64,
    /// Calls in a window before its ratios mean anything. Default 20.
    pub min_calls: u64,
    /// Windows learned before an endpoint's baseline is trusted. Default 3.
    pub learn_buckets: u32,
    /// Error ratio floor and factor over the baseline. Default 0.25 and 3.
    pub error_floor: f64,
    pub error_factor: f64,
    /// p95 latency floor (ms) and factor over the baseline. Default 250 and 4.
    pub latency_floor_ms: f64,
    pub latency_factor: f64,
    /// data_exposure by volume: response bytes per `volume_bucket` seconds above
    /// `volume_floor` and `volume_factor` times the peers' p90 and the address's own mean.
    /// Defaults 60 s, 8 MiB, 10.
    pub volume_bucket_s: u64,
    pub volume_floor: u64,
    pub volume_factor: f64,
    /// Addresses and endpoints tracked. Default 100,000 and 10,000.
    pub max_addresses: usize,
    pub max_endpoints: usize,
}

impl Default for BaselineConfig {
    fn default() -> Self {
        BaselineConfig {
            rate_bucket_s: 10,
            rate_floor: 100,
            rate_factor: 5.0,
            endpoint_bucket_s: 60,
            min_calls: 20,
            learn_buckets: 3,
            error_floor: 0.25,
            error_factor: 3.0,
            latency_floor_ms: 250.0,
            latency_factor: 4.0,
            volume_bucket_s: 60,
            volume_floor: 8 << 20,
            volume_factor: 10.0,
            max_addresses: 100_000,
            max_endpoints: 10_000,
        }
    }
}

/// What a detector saw, for its alert.
#[derive(Debug, Clone, PartialEq)]
pub enum Finding {
    /// (requests in the bucket, peers' p90, own mean)
    Rate(u64, f64, f64),
    /// (error ratio, baseline, calls)
    Errors(f64, f64, u64),
    /// (p95 ms, baseline ms, calls)
    Latency(f64, f64, u64),
    /// (response bytes in the bucket, peers' p90, own mean)
    Volume(u64, f64, f64),
}

/// One address's current bucket and its own baseline: 32 bytes with an IPv4 key.
#[derive(Debug)]
struct Rate<K> {
    start: Ts,
    count: u64,
    mean: f64,
    /// Completed buckets (the low 30 bits, saturating: 340 years of 10 s buckets), then
    /// [`ALERTED`] and [`TAINTED`].
    bits: u32,
    ip: K,
}

/// The size of an IPv4 address's record (for the size test).
#[cfg(test)]
pub(super) const RATE_RECORD: usize = std::mem::size_of::<Rate<u32>>();

const BUCKETS: u32 = (1 << 30) - 1;
const ALERTED: u32 = 1 << 30;
/// The bucket holds attack traffic (flagged requests): it teaches neither the peers'
/// baseline nor the address's own.
const TAINTED: u32 = 1 << 31;

impl<K: std::hash::Hash + Eq + Copy> Keyed for Rate<K> {
    type K = K;
    fn key(&self) -> K {
        self.ip
    }
}

impl<K> Rate<K> {
    fn buckets(&self) -> u32 {
        self.bits & BUCKETS
    }

    /// Count `amount` at `ts`: a finding (total, peers' p90, own mean) when the bucket passes
    /// `floor` and `factor` times both baselines.
    #[allow(clippy::too_many_arguments)] // the bucket's shape, as `Buckets::add` takes it
    fn add(
        &mut self,
        pop: &mut Hist,
        ts: Ts,
        amount: u64,
        bucket: u64,
        floor: u64,
        factor: f64,
        clean: bool,
    ) -> Option<(u64, f64, f64)> {
        let r = self;
        if ts >= r.start.saturating_add(bucket) {
            // close the bucket (and the empty ones since, which pull the mean down); a bucket
            // that alerted is not what peers normally do
            let idle = ((ts - r.start) / bucket).saturating_sub(1).min(1000);
            if r.bits & (ALERTED | TAINTED) == 0 {
                pop.add(r.count);
            }
            // a tainted bucket teaches nothing: not a busy bucket, not an idle one either
            let mut buckets = r.buckets();
            if r.bits & TAINTED == 0 {
                r.mean = (r.mean * buckets as f64 + r.count as f64) / (buckets as f64 + 1.0 + idle as f64);
                buckets = buckets.saturating_add(1 + idle as u32).min(BUCKETS);
            }
            r.start = ts - (ts - r.start) % bucket;
            r.count = 0;
            r.bits = buckets;
        }
        if !clean {
            r.bits |= TAINTED;
        }
        r.count = r.count.saturating_add(amount);
        if r.bits & ALERTED != 0 || r.count <= floor {
            return None;
        }
        let p90 = if pop.n >= 20 { pop.quantile(0.9) } else { 0.0 };
        let own = if r.buckets() >= 3 { r.mean } else { 0.0 };
        if (r.count as f64) > factor * p90 && (r.count as f64) > factor * own {
            r.bits |= ALERTED;
            return Some((r.count, p90, own));
        }
        None
    }
}

/// Log2 histogram of completed bucket counts (population).
#[derive(Debug, Default)]
struct Hist {
    bins: [u64; 32],
    n: u64,
}

impl Hist {
    fn add(&mut self, v: u64) {
        let b = (64 - v.leading_zeros()).min(31) as usize;
        self.bins[b] += 1;
        self.n += 1;
    }

    /// Upper edge of the bin holding quantile `q`.
    fn quantile(&self, q: f64) -> f64 {
        let want = (self.n as f64 * q).ceil() as u64;
        let mut acc = 0;
        for (i, c) in self.bins.iter().enumerate() {
            acc += c;
            if acc >= want.max(1) {
                return if i == 0 { 0.0 } else { (1u64 << i) as f64 };
            }
        }
        f64::INFINITY
    }
}

#[derive(Debug, Default)]
struct EndpointWin {
    start: Ts,
    total: u64,
    errors: u64,
    /// The window's calls and errors that were not flagged: what the baseline learns from.
    clean_total: u64,
    clean_errors: u64,
    lat: Vec<u32>,
    /// Latency of the window's clean calls (what the baseline learns from).
    clean_lat: Vec<u32>,
    base_err: f64,
    base_p95: f64,
    buckets: u32,
    alerted_err: bool,
    alerted_lat: bool,
    last: Ts,
}

/// Per-address counters in fixed buckets, judged against the address's own mean and the
/// peers' p90 of buckets that did not alert. Stored densely (see `dense`): IPv4 addresses
/// in 32-byte records, IPv6 ones apart.
#[derive(Default)]
struct Buckets {
    v4: Dense<Rate<u32>>,
    v6: Dense<Rate<u128>>,
    pop: Hist,
    last_sweep: Ts,
    /// Requests not tracked because the table was full of active addresses.
    skipped: u64,
}

impl Buckets {
    fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    /// Add `amount` for `ip` at `ts`; a finding (total, peers' p90, own mean) when the bucket
    /// passes `floor` and `factor` times both baselines.
    #[allow(clippy::too_many_arguments)] // the bucket's shape and caps, passed by the two callers
    fn add(
        &mut self,
        ip: IpAddr,
        ts: Ts,
        amount: u64,
        bucket_s: u64,
        floor: u64,
        factor: f64,
        cap: usize,
        clean: bool,
    ) -> Option<(u64, f64, f64)> {
        let bucket = bucket_s.max(1).saturating_mul(1_000_000_000);
        let at = match ip {
            IpAddr::V4(a) => self.v4.find(a.into()),
            IpAddr::V6(a) => self.v6.find(a.into()),
        };
        if at.is_none() && self.len() >= cap {
            // Full: forget addresses idle for six buckets, at most once a bucket (a scan of
            // the table per request would be a CPU sink); still full, the newcomer waits.
            if ts >= self.last_sweep.saturating_add(bucket) {
                self.last_sweep = ts;
                let cut = ts.saturating_sub(bucket.saturating_mul(6));
                self.v4.retain(|r| r.start >= cut, drop);
                self.v6.retain(|r| r.start >= cut, drop);
            }
            if self.len() >= cap {
                self.skipped += 1;
                return None;
            }
        }
        let pop = &mut self.pop;
        match ip {
            IpAddr::V4(a) => {
                let i = at.unwrap_or_else(|| self.v4.insert_new(Rate::new(a.into(), ts)));
                self.v4.at_mut(i).add(pop, ts, amount, bucket, floor, factor, clean)
            }
            IpAddr::V6(a) => {
                let i = at.unwrap_or_else(|| self.v6.insert_new(Rate::new(a.into(), ts)));
                self.v6.at_mut(i).add(pop, ts, amount, bucket, floor, factor, clean)
            }
        }
    }
}

impl<K> Rate<K> {
    fn new(ip: K, ts: Ts) -> Self {
        Rate {
            start: ts,
            count: 0,
            mean: 0.0,
            bits: 0,
            ip,
        }
    }
}

pub struct Baselines {
    cfg: BaselineConfig,
    rates: Buckets,
    volume: Buckets,
    endpoints: Endpoints,
    last_sweep: Ts,
}

/// The endpoint windows by key (`host METHOD /template`), each in a slot whose number a
/// caller may keep as a hint for the next call to the endpoint (checked against the key: a
/// stale hint only costs the lookup). A removed window's slot is reused.
#[derive(Default)]
struct Endpoints {
    slots: Vec<Option<(Box<str>, EndpointWin)>>,
    free: Vec<u32>,
    index: hashbrown::HashTable<u32>,
    hasher: hashbrown::DefaultHashBuilder,
}

impl Endpoints {
    fn len(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    /// The slot of `key`, trying `hint` first; leaves the slot in `hint`.
    fn find(&self, key: &str, hint: &mut u32) -> Option<u32> {
        if let Some(Some((k, _))) = self.slots.get(*hint as usize)
            && **k == *key
        {
            return Some(*hint);
        }
        let slots = &self.slots;
        let h = std::hash::BuildHasher::hash_one(&self.hasher, key);
        let i = *self
            .index
            .find(h, |&i| matches!(&slots[i as usize], Some((k, _)) if **k == *key))?;
        *hint = i;
        Some(i)
    }

    fn get_mut(&mut self, i: u32) -> Option<&mut EndpointWin> {
        self.slots.get_mut(i as usize)?.as_mut().map(|(_, w)| w)
    }

    /// Add `key` (not in the table); its slot.
    fn insert(&mut self, key: &str, w: EndpointWin) -> u32 {
        let rec = Some((Box::from(key), w));
        let i = match self.free.pop() {
            Some(i) => {
                self.slots[i as usize] = rec;
                i
            }
            None => {
                self.slots.push(rec);
                (self.slots.len() - 1) as u32
            }
        };
        let (slots, hasher) = (&self.slots, &self.hasher);
        let key_of = |j: &u32| match &slots[*j as usize] {
            Some((k, _)) => std::hash::BuildHasher::hash_one(hasher, &**k),
            None => 0,
        };
        self.index.insert_unique(key_of(&i), i, key_of);
        i
    }

    /// Keep the windows for which `f` is true.
    fn retain(&mut self, mut f: impl FnMut(&EndpointWin) -> bool) {
        for i in 0..self.slots.len() {
            let Some((k, w)) = &self.slots[i] else { continue };
            if f(w) {
                continue;
            }
            let h = std::hash::BuildHasher::hash_one(&self.hasher, &**k);
            if let Ok(e) = self.index.find_entry(h, |&j| j as usize == i) {
                e.remove();
            }
            self.slots[i] = None;
            self.free.push(i as u32);
        }
    }
}

fn is_error(status: u16) -> bool {
    status >= 500 || (status >= 400 && !matches!(status, 401 | 403 | 404 | 405 | 429))
}

const LAT_SAMPLES: usize = 512;

impl Baselines {
    pub fn new(cfg: BaselineConfig) -> Self {
        Baselines {
            cfg,
            rates: Buckets::default(),
            volume: Buckets::default(),
            endpoints: Endpoints::default(),
            last_sweep: 0,
        }
    }

    /// One request by `ip`: a rate finding when it makes the current bucket a flood.
    /// `clean`: the request is not flagged (injection, attack tool, an address with attack
    /// indicators); only clean traffic teaches baselines, so an early attacker cannot make its
    /// own attack look normal.
    pub fn rate(&mut self, ip: IpAddr, ts: Ts, clean: bool) -> Option<Finding> {
        let c = &self.cfg;
        self.rates
            .add(
                ip,
                ts,
                1,
                c.rate_bucket_s,
                c.rate_floor,
                c.rate_factor,
                c.max_addresses,
                clean,
            )
            .map(|(n, p, o)| Finding::Rate(n, p, o))
    }

    /// Response bytes served to `ip`: a volume finding when it pulls far more than usual.
    pub fn volume(&mut self, ip: IpAddr, ts: Ts, bytes: u64, clean: bool) -> Option<Finding> {
        let c = &self.cfg;
        self.volume
            .add(
                ip,
                ts,
                bytes,
                c.volume_bucket_s,
                c.volume_floor,
                c.volume_factor,
                c.max_addresses,
                clean,
            )
            .map(|(n, p, o)| Finding::Volume(n, p, o))
    }

    /// One call of `endpoint`: error and latency findings against its baseline.
    pub fn endpoint(
        &mut self,
        endpoint: &str,
        ts: Ts,
        status: u16,
        latency_us: Option<u64>,
        clean: bool,
    ) -> Vec<Finding> {
        let mut hint = u32::MAX;
        self.endpoint_hinted(endpoint, &mut hint, ts, status, latency_us, clean)
    }

    /// [`Baselines::endpoint`], trying the window's slot in `hint` first (the slot the last
    /// call to the endpoint left there: one compare of the key instead of a lookup).
    pub fn endpoint_hinted(
        &mut self,
        endpoint: &str,
        hint: &mut u32,
        ts: Ts,
        status: u16,
        latency_us: Option<u64>,
        clean: bool,
    ) -> Vec<Finding> {
        let c = &self.cfg;
        let bucket = c.endpoint_bucket_s.max(1).saturating_mul(1_000_000_000);
        // one lookup for a known endpoint (nearly every call: none with a good hint)
        if let Some(e) = self
            .endpoints
            .find(endpoint, hint)
            .and_then(|i| self.endpoints.get_mut(i))
        {
            return endpoint_call(e, c, bucket, ts, status, latency_us, clean);
        }
        if self.endpoints.len() >= c.max_endpoints {
            // at most one sweep a window, not one per request
            if ts >= self.last_sweep.saturating_add(bucket) {
                self.last_sweep = ts;
                let cut = ts.saturating_sub(bucket.saturating_mul(10));
                self.endpoints.retain(|e| e.last >= cut);
            }
            if self.endpoints.len() >= c.max_endpoints {
                return Vec::new();
            }
        }
        let i = self.endpoints.insert(
            endpoint,
            EndpointWin {
                start: ts,
                ..EndpointWin::default()
            },
        );
        *hint = i;
        let Some(e) = self.endpoints.get_mut(i) else {
            return Vec::new();
        };
        endpoint_call(e, &self.cfg, bucket, ts, status, latency_us, clean)
    }
}

/// One call folded into its endpoint's window; the findings.
fn endpoint_call(
    e: &mut EndpointWin,
    c: &BaselineConfig,
    bucket: u64,
    ts: Ts,
    status: u16,
    latency_us: Option<u64>,
    clean: bool,
) -> Vec<Finding> {
    e.last = ts;
    if ts >= e.start.saturating_add(bucket) {
        if e.clean_total >= c.min_calls {
            let ratio = e.clean_errors as f64 / e.clean_total as f64;
            let p95 = p95(&mut e.clean_lat);
            // Learn from windows that were not anomalous.
            let a = if e.buckets == 0 { 1.0 } else { 0.3 };
            if !e.alerted_err {
                e.base_err = e.base_err * (1.0 - a) + ratio * a;
            }
            if !e.alerted_lat {
                e.base_p95 = e.base_p95 * (1.0 - a) + p95 * a;
            }
            e.buckets += 1;
        }
        e.start = ts - (ts - e.start) % bucket;
        e.total = 0;
        e.errors = 0;
        e.clean_total = 0;
        e.clean_errors = 0;
        e.lat.clear();
        e.clean_lat.clear();
        e.alerted_err = false;
        e.alerted_lat = false;
    }
    e.total += 1;
    let err = is_error(status);
    e.errors += err as u64;
    if clean {
        e.clean_total += 1;
        e.clean_errors += err as u64;
    }
    if let Some(l) = latency_us {
        let l = l.min(u32::MAX as u64) as u32;
        // keep a spread of the window
        let spread = |v: &mut Vec<u32>, n: u64| {
            if v.len() < LAT_SAMPLES {
                v.push(l);
            } else {
                v[(n as usize * 7919) % LAT_SAMPLES] = l;
            }
        };
        spread(&mut e.lat, e.total);
        if clean {
            spread(&mut e.clean_lat, e.clean_total);
        }
    }
    let mut out = Vec::new();
    if e.buckets < c.learn_buckets || e.total < c.min_calls || !e.total.is_multiple_of(5) {
        return out;
    }
    let ratio = e.errors as f64 / e.total as f64;
    if !e.alerted_err && ratio >= c.error_floor && ratio > c.error_factor * e.base_err {
        e.alerted_err = true;
        out.push(Finding::Errors(ratio, e.base_err, e.total));
    }
    let (floor, over) = (c.latency_floor_ms * 1000.0, c.latency_factor * e.base_p95);
    // counted first: the copy and selection only when the p95 is over both
    if !e.alerted_lat && p95_may_exceed(&e.lat, floor, over) {
        let p = p95(&mut e.lat.clone());
        if p >= floor && p > over {
            e.alerted_lat = true;
            out.push(Finding::Latency(p / 1000.0, e.base_p95 / 1000.0, e.total));
        }
    }
    out
}

/// `p95(v) >= floor && p95(v) > over`, or true when it cannot tell (an empty `v`), without
/// copying or reordering `v`: the p95 is the `i`th smallest, so it is at least a value `t` when
/// at least `len - i` of the values are.
fn p95_may_exceed(v: &[u32], floor: f64, over: f64) -> bool {
    if v.is_empty() {
        return true;
    }
    // the least whole number that is >= floor and > over (none: no u32 is)
    let at_least = if floor.is_nan() {
        return false;
    } else if floor <= 0.0 {
        0.0
    } else {
        floor.ceil()
    };
    let above = if over.is_nan() {
        return false;
    } else if over < 0.0 {
        0.0
    } else {
        over.floor() + 1.0
    };
    let t = at_least.max(above);
    if t > u32::MAX as f64 {
        return false;
    }
    let t = t as u32;
    let n = v.len();
    let i = ((n as f64 * 0.95).ceil() as usize).clamp(1, n) - 1;
    v.iter().filter(|&&x| x >= t).count() >= n - i
}

fn p95(v: &mut [u32]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let i = ((v.len() as f64 * 0.95).ceil() as usize).clamp(1, v.len()) - 1;
    *v.select_nth_unstable(i).1 as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn a_flood_far_above_the_population_fires_once_per_bucket() {
        let mut b = Baselines::new(BaselineConfig::default());
        // thirty ordinary clients: ~20 requests per 10 s for a minute
        for c in 0..30u8 {
            for i in 0..120u64 {
                assert_eq!(b.rate(IpAddr::from([10, 0, 1, c]), 1000 * S + i * S / 2, true), None);
            }
        }
        let flood = IpAddr::from([10, 0, 2, 1]);
        let hits: Vec<Finding> = (0..400u64)
            .filter_map(|i| b.rate(flood, 1100 * S + i * S / 100, true))
            .collect();
        assert_eq!(hits.len(), 1, "{hits:?}");
        // peers' p90 is 32 (log2 bins: ~20 per bucket), so the flood alerts at 5 x 32
        assert!(matches!(hits[0], Finding::Rate(161, p, _) if p == 32.0), "{hits:?}");
    }

    #[test]
    fn a_client_that_is_always_busy_is_its_own_baseline() {
        let mut b = Baselines::new(BaselineConfig::default());
        let busy = IpAddr::from([10, 0, 3, 1]);
        let mut n = 0;
        for i in 0..6000u64 {
            // 200 requests per 10 s, steadily, for five minutes
            if b.rate(busy, 1000 * S + i * S / 20, true).is_some() {
                n += 1;
            }
        }
        // the first buckets alert (nothing learned yet), then its own mean holds it
        assert!(n <= 3, "{n} alerts");
        // near miss: just under the floor never alerts
        let mut b = Baselines::new(BaselineConfig::default());
        assert!((0..100u64).all(|i| b.rate(busy, 1000 * S + i * S / 100, true).is_none()));
    }

    #[test]
    fn an_address_pulling_far_more_data_than_its_peers() {
        let mut b = Baselines::new(BaselineConfig::default());
        // forty clients pulling ~100 KB a minute for ten minutes
        for c in 0..40u8 {
            for i in 0..100u64 {
                assert_eq!(
                    b.volume(IpAddr::from([10, 0, 4, c]), 1000 * S + i * 6 * S, 10_000, true),
                    None
                );
            }
        }
        // one pulls 1 MB a second: alerts once the minute passes 8 MiB
        let hog = IpAddr::from([10, 0, 5, 1]);
        let hits: Vec<Finding> = (0..60u64)
            .filter_map(|i| b.volume(hog, 1700 * S + i * S, 1 << 20, true))
            .collect();
        assert_eq!(hits.len(), 1, "{hits:?}");
        assert!(matches!(hits[0], Finding::Volume(n, ..) if n == 9 << 20));
        // near miss: 5 MiB in a minute is under the floor
        let mut b = Baselines::new(BaselineConfig::default());
        assert!((0..5u64).all(|i| b.volume(hog, 1000 * S + i * S, 1 << 20, true).is_none()));
    }

    /// The endpoint windows in slots, found by any hint (kept per endpoint, stale after a
    /// sweep reused the slot, out of range), give the findings the windows found by their key
    /// alone give, through sweeps of a full table; a kept hint then names the endpoint's slot.
    #[test]
    fn hinted_endpoint_windows_are_the_windows_by_key() {
        let cfg = BaselineConfig {
            max_endpoints: 12,
            endpoint_bucket_s: 5,
            min_calls: 4,
            learn_buckets: 1,
            ..BaselineConfig::default()
        };
        let (mut plain, mut hinted) = (Baselines::new(cfg.clone()), Baselines::new(cfg));
        let mut kept = [u32::MAX; 40];
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        let (mut t, mut findings) = (1000 * S, 0);
        for i in 0..20_000u64 {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            // a few busy endpoints and a tail of rare ones (the table fills and is swept)
            let e = if rng.is_multiple_of(4) {
                (rng >> 8) as usize % 40
            } else {
                (rng >> 8) as usize % 6
            };
            let key = format!("h GET /e{e}");
            let st = if (rng >> 20).is_multiple_of(7) { 500 } else { 200 };
            let lat = Some((rng >> 24) % 400_000);
            let mut hint = match i % 4 {
                0 => u32::MAX,
                1 => (rng >> 40) as u32 % 16,
                _ => kept[e],
            };
            let a = plain.endpoint(&key, t, st, lat, true);
            let b = hinted.endpoint_hinted(&key, &mut hint, t, st, lat, true);
            assert_eq!(format!("{a:?}"), format!("{b:?}"), "call {i}");
            findings += a.len();
            // tracked (not turned away by a full table): the hint names its slot
            let mut fresh = u32::MAX;
            if let Some(slot) = hinted.endpoints.find(&key, &mut fresh) {
                assert_eq!(hint, slot, "call {i}");
            }
            kept[e] = hint;
            assert_eq!(plain.endpoints.len(), hinted.endpoints.len());
            assert!(hinted.endpoints.len() <= 12);
            t += S / 20;
        }
        assert!(findings > 0);
    }

    #[test]
    fn error_spike_and_latency_against_the_endpoint_baseline() {
        let mut b = Baselines::new(BaselineConfig::default());
        let mut t = 1000 * S;
        // five calm minutes: 2% errors, 20 ms
        for i in 0..600u64 {
            let st = if i % 50 == 0 { 500 } else { 200 };
            assert!(b.endpoint("GET /a", t, st, Some(20_000), true).is_empty());
            t += S / 2;
        }
        // then half the calls fail and answer in 900 ms
        let mut found = Vec::new();
        for i in 0..60u64 {
            found.extend(b.endpoint("GET /a", t, if i % 2 == 0 { 503 } else { 200 }, Some(900_000), true));
            t += S / 2;
        }
        assert!(found.iter().any(|f| matches!(f, Finding::Errors(..))), "{found:?}");
        assert!(found.iter().any(|f| matches!(f, Finding::Latency(..))), "{found:?}");
        assert_eq!(found.len(), 2, "once per window: {found:?}");
        // near miss: 404s are clients' business, slow but under the floor is fine
        let mut b = Baselines::new(BaselineConfig::default());
        let mut t = 1000 * S;
        let mut found = Vec::new();
        for i in 0..1000u64 {
            let (st, l) = if i > 600 { (404, 200_000) } else { (200, 20_000) };
            found.extend(b.endpoint("GET /b", t, st, Some(l), true));
            t += S / 2;
        }
        assert!(found.is_empty(), "{found:?}");
    }

    /// Counting the values over the thresholds says what selecting the p95 and comparing it
    /// says, on every length, spread and threshold (negative, zero, fractional, huge, NaN).
    #[test]
    fn p95_count_prefilter_agrees_with_the_selected_p95() {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let thresholds = [
            f64::NAN,
            f64::NEG_INFINITY,
            -1.0,
            -0.0,
            0.0,
            0.5,
            1.0,
            99.0,
            99.5,
            100.0,
            250_000.0,
            u32::MAX as f64 - 0.5,
            u32::MAX as f64,
            u32::MAX as f64 + 1.0,
            f64::INFINITY,
        ];
        let (mut cases, mut over) = (0, 0);
        for round in 0..1000 {
            let n = match round % 4 {
                0 => (next() % 8) as usize,
                1 => (next() % 40) as usize,
                _ => (next() % (LAT_SAMPLES as u64 + 1)) as usize,
            };
            let spread = [3u64, 200, 400_000, 1 << 32][round % 4];
            let v: Vec<u32> = (0..n)
                .map(|_| match next() % 50 {
                    0 => u32::MAX,
                    1 => 0,
                    _ => (next() % spread) as u32,
                })
                .collect();
            let mut ts: Vec<f64> = thresholds.to_vec();
            for _ in 0..4 {
                let pick = v.get(next() as usize % n.max(1)).copied().unwrap_or(7) as f64;
                ts.extend([pick, pick - 0.5, pick + 0.5, pick - 1.0]);
            }
            let p = p95(&mut v.clone());
            for &floor in &ts {
                for &o in &ts {
                    let exact = p >= floor && p > o;
                    let may = p95_may_exceed(&v, floor, o);
                    // never misses a finding; sure whenever `v` has values
                    assert!(may || !exact, "missed: {v:?} {floor} {o}");
                    if !v.is_empty() {
                        assert_eq!(may, exact, "{v:?} {floor} {o}");
                    }
                    cases += 1;
                    over += exact as usize;
                }
            }
        }
        assert!(over > cases / 20 && over < cases, "{over} of {cases} over");
    }
}
