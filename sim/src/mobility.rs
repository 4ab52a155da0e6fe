//! Synthetic contacts: random waypoint mobility and data mules. Seeded and
//! deterministic: the same arguments give the same events, on every platform (only
//! IEEE-exact `f64` operations are used: `+ - * /` and `sqrt`).
//!
//! Both generators return events sorted by time, then `(a, b)`, with `a < b`, each
//! pair's events alternating up, down, up, …, and every contact still up closed by a
//! `down` at `duration`.

use rand_core::{impls, RngCore};

use crate::model::{ContactEvent, NodeIndex, SimMillis};

/// A small seeded generator (xoshiro256**, seeded through SplitMix64), independent of
/// any crate's version so scenario outputs never change under a dependency update.
/// `stream` picks an independent sequence for the same seed (one per node, say).
#[derive(Debug, Clone)]
pub struct SimRng {
    s: [u64; 4],
}

impl SimRng {
    /// The generator of `(seed, stream)`.
    pub fn new(seed: u64, stream: u64) -> Self {
        let mut x = seed ^ stream.wrapping_mul(0xD1B5_4A32_D192_ED03);
        let mut next = || {
            x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        // SplitMix64 is a bijection of its counter: at most one of these is zero.
        Self {
            s: [next(), next(), next(), next()],
        }
    }

    fn step(&mut self) -> u64 {
        let s = &mut self.s;
        let result = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// Uniform in `[0, 1)`, 53 random bits.
    pub fn unit(&mut self) -> f64 {
        (self.step() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in `[lo, hi]` (`lo` if `hi <= lo`).
    pub fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        if hi <= lo {
            return lo;
        }
        lo + (hi - lo) * self.unit()
    }

    /// Uniform in `0..n`, unbiased (Lemire's method); `0` if `n == 0`.
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            return 0;
        }
        let mut m = u128::from(self.step()) * u128::from(n);
        if (m as u64) < n {
            let threshold = n.wrapping_neg() % n;
            while (m as u64) < threshold {
                m = u128::from(self.step()) * u128::from(n);
            }
        }
        (m >> 64) as u64
    }
}

impl RngCore for SimRng {
    fn next_u32(&mut self) -> u32 {
        (self.step() >> 32) as u32
    }

    fn next_u64(&mut self) -> u64 {
        self.step()
    }

    fn fill_bytes(&mut self, dest: &mut [u8]) {
        impls::fill_bytes_via_next(self, dest);
    }

    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

/// Random waypoint mobility in a `width_m` × `height_m` rectangle.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RandomWaypointParams {
    /// Width of the area in metres.
    pub width_m: f64,
    /// Height of the area in metres.
    pub height_m: f64,
    /// Radio range in metres: two nodes are in contact while at most this far apart.
    pub range_m: f64,
    /// Slowest speed, m/s (> 0).
    pub speed_min: f64,
    /// Fastest speed, m/s.
    pub speed_max: f64,
    /// Longest pause at a waypoint, seconds.
    pub pause_max_s: f64,
    /// Seconds between two samples of the positions (rounded to whole milliseconds).
    pub step_s: f64,
}

impl RandomWaypointParams {
    /// Checks the parameters: every value finite, sizes, range, speeds and step
    /// positive, `speed_min <= speed_max`, pause not negative, step at least 1 ms.
    pub fn check(&self) -> Result<(), String> {
        let p = self;
        for (name, v) in [
            ("width_m", p.width_m),
            ("height_m", p.height_m),
            ("range_m", p.range_m),
            ("speed_min", p.speed_min),
            ("speed_max", p.speed_max),
            ("step_s", p.step_s),
        ] {
            if !(v.is_finite() && v > 0.0) {
                return Err(format!("{name} must be a positive number, not {v}"));
            }
        }
        if !(p.pause_max_s.is_finite() && p.pause_max_s >= 0.0) {
            return Err(format!(
                "pause_max_s must be zero or positive, not {}",
                p.pause_max_s
            ));
        }
        if p.speed_min > p.speed_max {
            return Err(format!(
                "speed_min ({}) is above speed_max ({})",
                p.speed_min, p.speed_max
            ));
        }
        if p.step_s < 0.001 {
            return Err(format!("step_s ({}) is below one millisecond", p.step_s));
        }
        Ok(())
    }

    /// The sampling step in whole milliseconds (at least 1).
    pub fn step_ms(&self) -> SimMillis {
        ((self.step_s * 1000.0).round() as SimMillis).max(1)
    }
}

/// One node of the random waypoint model.
struct Walker {
    x: f64,
    y: f64,
    tx: f64,
    ty: f64,
    speed: f64,
    /// Seconds of pause left; when it runs out, the next waypoint is chosen.
    pause: f64,
    moving: bool,
    rng: SimRng,
}

impl Walker {
    fn new(p: &RandomWaypointParams, seed: u64, node: NodeIndex) -> Self {
        let mut rng = SimRng::new(seed, u64::from(node));
        let x = rng.uniform(0.0, p.width_m);
        let y = rng.uniform(0.0, p.height_m);
        Self {
            x,
            y,
            tx: x,
            ty: y,
            speed: 0.0,
            pause: 0.0,
            moving: false,
            rng,
        }
    }

    /// Moves the walker on by `dt` seconds.
    fn advance(&mut self, mut dt: f64, p: &RandomWaypointParams) {
        // Each round trip of the loop reaches a waypoint or ends a pause; bound them
        // so a degenerate area (waypoints micrometres apart) cannot stall the run.
        for _ in 0..64 {
            if dt <= 0.0 {
                return;
            }
            if !self.moving {
                if self.pause > dt {
                    self.pause -= dt;
                    return;
                }
                dt -= self.pause;
                self.pause = 0.0;
                self.tx = self.rng.uniform(0.0, p.width_m);
                self.ty = self.rng.uniform(0.0, p.height_m);
                self.speed = self.rng.uniform(p.speed_min, p.speed_max);
                self.moving = true;
                continue;
            }
            let (dx, dy) = (self.tx - self.x, self.ty - self.y);
            let dist = (dx * dx + dy * dy).sqrt();
            let reach = self.speed * dt;
            if reach < dist {
                let f = reach / dist;
                self.x += dx * f;
                self.y += dy * f;
                return;
            }
            self.x = self.tx;
            self.y = self.ty;
            dt -= dist / self.speed;
            self.moving = false;
            self.pause = self.rng.uniform(0.0, p.pause_max_s);
        }
    }
}

/// A uniform grid over the area, rebuilt at every step (counting sort by cell).
struct Grid {
    cell: f64,
    cols: usize,
    rows: usize,
    /// `start[c]..start[c + 1]` indexes `order` for the nodes in cell `c`.
    start: Vec<usize>,
    order: Vec<u32>,
    cell_of: Vec<usize>,
    /// Scratch: the next free slot of each cell while filling `order`.
    next: Vec<usize>,
}

impl Grid {
    fn new(p: &RandomWaypointParams, nodes: usize) -> Self {
        // Cells of the radio range, so only neighbour cells can hold a contact; but
        // no more cells than a few per node (a huge area with a tiny range would
        // otherwise cost memory and time per step for empty cells).
        let max_cells = (nodes * 4).max(1024) as f64;
        let cell = p.range_m.max((p.width_m * p.height_m / max_cells).sqrt());
        let cols = ((p.width_m / cell).ceil() as usize).max(1);
        let rows = ((p.height_m / cell).ceil() as usize).max(1);
        Self {
            cell,
            cols,
            rows,
            start: vec![0; cols * rows + 1],
            order: vec![0; nodes],
            cell_of: vec![0; nodes],
            next: Vec::new(),
        }
    }

    fn fill(&mut self, walkers: &[Walker]) {
        self.start.iter_mut().for_each(|s| *s = 0);
        for (i, w) in walkers.iter().enumerate() {
            let cx = ((w.x / self.cell) as usize).min(self.cols - 1);
            let cy = ((w.y / self.cell) as usize).min(self.rows - 1);
            let c = cy * self.cols + cx;
            self.cell_of[i] = c;
            self.start[c + 1] += 1;
        }
        for c in 1..self.start.len() {
            self.start[c] += self.start[c - 1];
        }
        self.next.clear();
        self.next.extend_from_slice(&self.start);
        for (i, &c) in self.cell_of.iter().enumerate() {
            self.order[self.next[c]] = i as u32;
            self.next[c] += 1;
        }
    }

    /// Every pair `(i, j)`, `i < j`, at most `range` apart, into `out` (sorted).
    fn pairs(&self, walkers: &[Walker], range: f64, out: &mut Vec<(u32, u32)>) {
        out.clear();
        let r2 = range * range;
        let mut check = |i: u32, j: u32| {
            let (w, o) = (&walkers[i as usize], &walkers[j as usize]);
            let (dx, dy) = (o.x - w.x, o.y - w.y);
            if dx * dx + dy * dy <= r2 {
                out.push((i.min(j), i.max(j)));
            }
        };
        for cy in 0..self.rows {
            for cx in 0..self.cols {
                let here = self.cell_nodes(cx, cy);
                if here.is_empty() {
                    continue;
                }
                for (k, &i) in here.iter().enumerate() {
                    for &j in &here[k + 1..] {
                        check(i, j);
                    }
                }
                // Half of the neighbours: each pair of cells is visited once.
                let right = cx + 1 < self.cols;
                let down = cy + 1 < self.rows;
                let mut visit = |nx: usize, ny: usize| {
                    for &i in here {
                        for &j in self.cell_nodes(nx, ny) {
                            check(i, j);
                        }
                    }
                };
                if right {
                    visit(cx + 1, cy);
                }
                if down {
                    if cx > 0 {
                        visit(cx - 1, cy + 1);
                    }
                    visit(cx, cy + 1);
                    if right {
                        visit(cx + 1, cy + 1);
                    }
                }
            }
        }
        out.sort_unstable();
    }

    fn cell_nodes(&self, cx: usize, cy: usize) -> &[u32] {
        let c = cy * self.cols + cx;
        &self.order[self.start[c]..self.start[c + 1]]
    }
}

/// Contacts of `nodes` nodes moving by random waypoint for `duration` ms.
///
/// Each node starts at a uniformly random point, picks a uniformly random waypoint,
/// goes there in a straight line at a speed uniform in `[speed_min, speed_max]`,
/// pauses a time uniform in `[0, pause_max_s]`, and so on. Every `step_s` (from time
/// 0, while before `duration`) the positions are sampled: a pair comes up when it is
/// within `range_m` and was not at the previous sample, and goes down when it no
/// longer is. Contacts still up are closed at `duration`.
///
/// Each node draws from its own stream of `seed`, so adding nodes does not change the
/// paths of the others. A uniform grid of range-sized cells keeps each step linear in
/// the number of nodes. Parameters that fail [`RandomWaypointParams::check`] give no
/// events.
pub fn random_waypoint(
    nodes: u32,
    params: &RandomWaypointParams,
    duration: SimMillis,
    seed: u64,
) -> Vec<ContactEvent> {
    let mut events = Vec::new();
    if params.check().is_err() || nodes < 2 {
        return events;
    }
    let mut walkers: Vec<Walker> = (0..nodes).map(|i| Walker::new(params, seed, i)).collect();
    let mut grid = Grid::new(params, walkers.len());
    let step = params.step_ms();
    let dt = step as f64 / 1000.0;
    let mut prev: Vec<(u32, u32)> = Vec::new();
    let mut cur: Vec<(u32, u32)> = Vec::new();
    let mut t: SimMillis = 0;
    while t < duration {
        if t > 0 {
            for w in &mut walkers {
                w.advance(dt, params);
            }
        }
        grid.fill(&walkers);
        grid.pairs(&walkers, params.range_m, &mut cur);
        diff(&prev, &cur, t, &mut events);
        std::mem::swap(&mut prev, &mut cur);
        t = t.saturating_add(step);
    }
    diff(&prev, &[], duration, &mut events);
    events
}

/// Events turning the sorted pair set `prev` into `cur` at `time`, in pair order.
fn diff(prev: &[(u32, u32)], cur: &[(u32, u32)], time: SimMillis, out: &mut Vec<ContactEvent>) {
    let (mut i, mut j) = (0, 0);
    let mut push = |(a, b): (u32, u32), up| out.push(ContactEvent { time, a, b, up });
    while i < prev.len() || j < cur.len() {
        match (prev.get(i), cur.get(j)) {
            (Some(p), Some(c)) if p == c => {
                i += 1;
                j += 1;
            }
            (Some(&p), Some(&c)) if p < c => {
                push(p, false);
                i += 1;
            }
            (Some(&p), None) => {
                push(p, false);
                i += 1;
            }
            (_, Some(&c)) => {
                push(c, true);
                j += 1;
            }
            (None, None) => break,
        }
    }
}

/// Contacts of data mules visiting static sites.
///
/// The sites are the nodes `0..nodes` that are not mules. Each mule visits every site
/// once per round in a fixed order: the sites in index order, rotated by an offset the
/// seed picks per mule. At each site it stays `dwell_s` (a contact up on arrival,
/// down on departure), then travels `travel_s` to the next. Rounds start at multiples
/// of `period_s`: the first at time 0, each next one at the first period start at or
/// after the previous round's end plus `travel_s` (the way back to its first site),
/// so a round longer than the period waits for the next period start. A visit under
/// way at `duration` is closed then. Mules only meet sites (not each other).
///
/// Mule indices at or beyond `nodes` and repeated mules are ignored; `period_s == 0`
/// or `dwell_s == 0` gives no events.
pub fn data_mule(
    nodes: u32,
    mules: &[NodeIndex],
    period_s: u64,
    dwell_s: u64,
    travel_s: u64,
    duration: SimMillis,
    seed: u64,
) -> Vec<ContactEvent> {
    let mut events = Vec::new();
    let mut mule_list: Vec<NodeIndex> = mules.iter().copied().filter(|m| *m < nodes).collect();
    mule_list.sort_unstable();
    mule_list.dedup();
    let sites: Vec<NodeIndex> = (0..nodes)
        .filter(|n| mule_list.binary_search(n).is_err())
        .collect();
    if sites.is_empty() || period_s == 0 || dwell_s == 0 {
        return events;
    }
    let ms = |s: u64| s.saturating_mul(1000);
    let (period, dwell, travel) = (ms(period_s), ms(dwell_s), ms(travel_s));
    // Every mule's visits (site, start, end), to let mules at one site meet too.
    let mut visits: Vec<Vec<(NodeIndex, SimMillis, SimMillis)>> = Vec::new();
    for &mule in &mule_list {
        let mut mine = Vec::new();
        let mut rng = SimRng::new(seed, u64::from(mule));
        let offset = rng.below(sites.len() as u64) as usize;
        let mut round_start: SimMillis = 0;
        'rounds: while round_start < duration {
            let mut t = round_start;
            for k in 0..sites.len() {
                if t >= duration {
                    break 'rounds;
                }
                let site = sites[(offset + k) % sites.len()];
                let (a, b) = (site.min(mule), site.max(mule));
                let end = t.saturating_add(dwell).min(duration);
                mine.push((site, t, end));
                events.push(ContactEvent {
                    time: t,
                    a,
                    b,
                    up: true,
                });
                events.push(ContactEvent {
                    time: end,
                    a,
                    b,
                    up: false,
                });
                t = end.saturating_add(travel);
            }
            // `t` is the end of the last dwell plus the way back to the first site.
            round_start = t.div_ceil(period).saturating_mul(period);
        }
        visits.push(mine);
    }
    // Two mules at the same site at the same time are in contact while both are
    // there. A mule is at one site at a time, so a pair's contacts never overlap.
    for (i, a_visits) in visits.iter().enumerate() {
        for (j, b_visits) in visits.iter().enumerate().skip(i + 1) {
            let (a, b) = (mule_list[i], mule_list[j]);
            for &(site, s1, e1) in a_visits {
                for &(_, s2, e2) in b_visits.iter().filter(|v| v.0 == site) {
                    let (start, end) = (s1.max(s2), e1.min(e2));
                    if start < end {
                        events.push(ContactEvent {
                            time: start,
                            a,
                            b,
                            up: true,
                        });
                        events.push(ContactEvent {
                            time: end,
                            a,
                            b,
                            up: false,
                        });
                    }
                }
            }
        }
    }
    // Down before up for the same pair at the same time (a one-site round of exactly
    // the period): `false < true`.
    events.sort_unstable_by_key(|e| (e.time, e.a, e.b, e.up));
    events
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mules_at_the_same_site_meet_each_other() {
        // Two mules and one site: both dwell there from the start of each round.
        let ev = data_mule(3, &[0, 1], 3600, 600, 60, 3 * 3_600_000, 7);
        let pair: Vec<_> = ev.iter().filter(|e| (e.a, e.b) == (0, 1)).collect();
        assert_eq!(pair.len(), 6, "three rounds, one meeting each: {pair:?}");
        for w in pair.chunks(2) {
            assert!(w[0].up && !w[1].up && w[1].time - w[0].time == 600_000);
        }
        // Mules on different sites at the same time do not meet.
        let ev = data_mule(4, &[0, 1], 3600, 600, 60, 3_600_000, 7);
        let mut at: std::collections::BTreeMap<NodeIndex, Vec<(NodeIndex, bool)>> =
            Default::default();
        for e in &ev {
            if e.a >= 2 || e.b < 2 {
                continue;
            }
            at.entry(e.a).or_default().push((e.b, e.up));
        }
        let met = ev.iter().any(|e| (e.a, e.b) == (0, 1));
        let same_first_site =
            at.get(&0).and_then(|v| v.first()) == at.get(&1).and_then(|v| v.first());
        assert_eq!(met, same_first_site, "{ev:?}");
    }
    use std::collections::BTreeMap;

    /// Sorted, `a < b`, alternating per pair starting with up, all closed by the end.
    fn check_well_formed(events: &[ContactEvent], nodes: u32, duration: SimMillis) {
        assert!(events
            .windows(2)
            .all(|w| (w[0].time, w[0].a, w[0].b) <= (w[1].time, w[1].a, w[1].b)));
        let mut up = BTreeMap::new();
        for e in events {
            assert!(e.a < e.b && e.b < nodes, "{e:?}");
            assert!(e.time <= duration, "{e:?}");
            let was = up.insert((e.a, e.b), e.up).unwrap_or(false);
            assert_ne!(was, e.up, "{e:?} does not alternate");
        }
        assert!(up.values().all(|u| !u), "contacts left open");
        let ups = events.iter().filter(|e| e.up).count();
        assert_eq!(ups * 2, events.len());
    }

    fn params() -> RandomWaypointParams {
        RandomWaypointParams {
            width_m: 1000.0,
            height_m: 500.0,
            range_m: 30.0,
            speed_min: 0.5,
            speed_max: 2.0,
            pause_max_s: 60.0,
            step_s: 1.0,
        }
    }

    #[test]
    fn rng_is_stable_and_uniform_enough() {
        let mut r = SimRng::new(1, 0);
        let first: Vec<u64> = (0..3).map(|_| r.next_u64()).collect();
        let mut again = SimRng::new(1, 0);
        assert_eq!(first, (0..3).map(|_| again.next_u64()).collect::<Vec<_>>());
        assert_ne!(first, {
            let mut o = SimRng::new(1, 1);
            (0..3).map(|_| o.next_u64()).collect::<Vec<_>>()
        });
        let mut counts = [0u32; 7];
        for _ in 0..70_000 {
            counts[r.below(7) as usize] += 1;
        }
        assert!(
            counts.iter().all(|c| (9_000..11_000).contains(c)),
            "{counts:?}"
        );
        assert!((0..1000).all(|_| (0.0..1.0).contains(&r.unit())));
        assert_eq!(r.below(0), 0);
        assert_eq!(r.below(1), 0);
    }

    #[test]
    fn random_waypoint_is_deterministic_and_well_formed() {
        let d = 3_600_000;
        let a = random_waypoint(60, &params(), d, 7);
        let b = random_waypoint(60, &params(), d, 7);
        assert_eq!(a, b);
        assert!(a.len() > 100, "{}", a.len());
        check_well_formed(&a, 60, d);
        assert_ne!(a, random_waypoint(60, &params(), d, 8));
    }

    #[test]
    fn grid_finds_what_brute_force_finds() {
        let p = params();
        let walkers: Vec<Walker> = (0..300).map(|i| Walker::new(&p, 3, i)).collect();
        let mut grid = Grid::new(&p, walkers.len());
        grid.fill(&walkers);
        let mut got = Vec::new();
        grid.pairs(&walkers, p.range_m, &mut got);
        let mut want = Vec::new();
        for i in 0..walkers.len() {
            for j in i + 1..walkers.len() {
                let (dx, dy) = (walkers[i].x - walkers[j].x, walkers[i].y - walkers[j].y);
                if dx * dx + dy * dy <= p.range_m * p.range_m {
                    want.push((i as u32, j as u32));
                }
            }
        }
        assert!(!want.is_empty());
        assert_eq!(got, want);
    }

    #[test]
    fn everybody_meets_when_the_range_covers_the_area() {
        let p = RandomWaypointParams {
            range_m: 1200.0, // the diagonal is ~1118 m
            ..params()
        };
        let ev = random_waypoint(10, &p, 100_000, 1);
        assert_eq!(ev.len(), 2 * 45);
        assert!(ev[..45].iter().all(|e| e.up && e.time == 0));
        assert!(ev[45..].iter().all(|e| !e.up && e.time == 100_000));
        check_well_formed(&ev, 10, 100_000);
    }

    #[test]
    fn degenerate_inputs_give_no_events_or_stay_bounded() {
        assert!(random_waypoint(10, &params(), 0, 1).is_empty());
        assert!(random_waypoint(1, &params(), 10_000, 1).is_empty());
        let bad = RandomWaypointParams {
            speed_min: f64::NAN,
            ..params()
        };
        assert!(bad.check().is_err());
        assert!(random_waypoint(10, &bad, 10_000, 1).is_empty());
        let tiny = RandomWaypointParams {
            width_m: 1e-9,
            height_m: 1e-9,
            range_m: 1e-12,
            pause_max_s: 0.0,
            ..params()
        };
        let ev = random_waypoint(5, &tiny, 5_000, 1);
        check_well_formed(&ev, 5, 5_000);
        let huge = RandomWaypointParams {
            width_m: 1e12,
            height_m: 1e12,
            range_m: 1.0,
            ..params()
        };
        assert!(random_waypoint(100, &huge, 5_000, 1).is_empty());
    }

    #[test]
    fn data_mule_visits_every_site_each_round() {
        // 4 sites (0, 1, 3, 4) and mule 2; round = 4 × 10 + 3 × 5 = 55 s; period 100 s.
        let d = 300_000;
        let ev = data_mule(5, &[2], 100, 10, 5, d, 9);
        assert_eq!(ev, data_mule(5, &[2], 100, 10, 5, d, 9));
        check_well_formed(&ev, 5, d);
        let ups: Vec<&ContactEvent> = ev.iter().filter(|e| e.up).collect();
        assert_eq!(ups.len(), 12);
        for round in 0..3u64 {
            let r: Vec<_> = ups[round as usize * 4..][..4].iter().collect();
            let times: Vec<u64> = r.iter().map(|e| e.time).collect();
            let t0 = round * 100_000;
            assert_eq!(times, [t0, t0 + 15_000, t0 + 30_000, t0 + 45_000]);
            let mut sites: Vec<u32> = r.iter().map(|e| if e.a == 2 { e.b } else { e.a }).collect();
            sites.sort_unstable();
            assert_eq!(sites, [0, 1, 3, 4]);
        }
        // The same order every round.
        assert_eq!(ups[0].a.min(ups[0].b), ups[4].a.min(ups[4].b));
    }

    #[test]
    fn data_mule_rounds_that_overrun_wait_and_the_end_closes_visits() {
        // 3 sites, round = 3 × 40 + 2 × 20 = 160 s (+20 back) > period 100: rounds at
        // 0, 200, 400; the end at 430 s cuts the first visit of the third round.
        let ev = data_mule(4, &[0], 100, 40, 20, 430_000, 1);
        check_well_formed(&ev, 4, 430_000);
        let starts: Vec<u64> = ev.iter().filter(|e| e.up).map(|e| e.time).collect();
        assert_eq!(
            starts,
            [0, 60_000, 120_000, 200_000, 260_000, 320_000, 400_000]
        );
        assert_eq!(ev.last().map(|e| (e.time, e.up)), Some((430_000, false)));
        // Degenerate inputs.
        assert!(data_mule(3, &[0, 1, 2], 100, 10, 5, 1_000_000, 1).is_empty());
        assert!(data_mule(3, &[0], 0, 10, 5, 1_000_000, 1).is_empty());
        assert!(data_mule(3, &[0], 100, 0, 5, 1_000_000, 1).is_empty());
        assert!(data_mule(3, &[7], 100, 10, 5, 1_000_000, 1).is_empty());
        // A one-site round exactly one period long: down then up at the same time.
        let ev = data_mule(2, &[1], 10, 10, 0, 30_000, 1);
        check_well_formed(&ev, 2, 30_000);
        assert_eq!(ev.len(), 6);
    }

    #[test]
    fn several_mules_pick_their_own_rotation() {
        let ev = data_mule(30, &[0, 29], 86_400, 60, 60, 86_400_000, 4);
        check_well_formed(&ev, 30, 86_400_000);
        let first = |m: u32| {
            ev.iter()
                .find(|e| e.up && (e.a == m || e.b == m))
                .map(|e| if e.a == m { e.b } else { e.a })
        };
        // Both start at time 0 (with seed 4, at different sites).
        assert_ne!(first(0), first(29));
    }
}
