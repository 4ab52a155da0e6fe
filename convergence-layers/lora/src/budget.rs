//! A duty-cycle budget: a token bucket of airtime.
//!
//! [`DutyBudget`] holds microseconds of airtime. It starts full at its capacity
//! `duty × window` and refills at `duty` µs per µs of elapsed time, never beyond the
//! capacity. A frame may be sent when the bucket holds its airtime; sending removes it.
//!
//! Time is a monotonic `u64` count of microseconds chosen by the caller; the budget
//! never reads a clock. A `now` earlier than one already seen counts as no time passing.
//!
//! # Guarantees
//!
//! Over any sequence of frames the budget accepts, the airtime of the frames accepted
//! at instants within any interval of length `W` is at most `duty · W + capacity`, and
//! so the long-run average airtime never exceeds `duty`. With the default one-hour
//! window a 1 % budget may therefore send 36 s in a burst, and at most 72 s in any
//! hour: the window bounds the burst, not the hourly sum. A caller who needs ETSI's
//! "at most duty · 1 h in every hour" strictly can use a window of half the period.
//!
//! A frame longer than the whole capacity is accepted only when the bucket is full, and
//! leaves the bucket in debt by the excess, which must refill before anything else is
//! sent; the bound then reads `duty · W + max(capacity, longest frame)`. A window of 0
//! makes every frame such a frame, which is LoRaWAN's per-frame "time-off" rule: after
//! a frame of airtime `a`, wait `a / duty - a` more.
//!
//! The duty is kept to the nearest 10⁻⁹ ([`DutyBudget::duty`]) and all accounting is in
//! exact integers, so the bounds hold without rounding slack.

use thiserror::Error;

/// ETSI's duty-cycle observation period, one hour, in microseconds.
pub const DEFAULT_WINDOW_US: u64 = 3_600_000_000;

/// Budget units per microsecond of airtime: the duty is kept in parts per billion.
const SCALE: i128 = 1_000_000_000;

/// Why the budget refused a frame, or could not be built.
#[derive(Debug, Clone, PartialEq, Error)]
#[non_exhaustive]
pub enum BudgetError {
    /// Not enough airtime is left now; the frame fits at `ready_at_us`.
    #[error("duty-cycle budget exhausted: {airtime_us} µs of airtime fits at {ready_at_us} µs")]
    Exhausted {
        /// The airtime asked for.
        airtime_us: u64,
        /// The earliest time at which it will fit, if nothing else is sent.
        ready_at_us: u64,
    },
    /// The duty cycle is not a number in (0, 1] (at least 10⁻⁹).
    #[error("duty cycle {0} is not in (0, 1]")]
    InvalidDuty(f64),
}

/// A token bucket of airtime enforcing a duty cycle (see the module docs for its
/// guarantees).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DutyBudget {
    limit: Option<Bucket>,
}

/// The regulated state, in units of 10⁻⁹ µs of airtime.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Bucket {
    /// Duty in parts per billion: the refill per elapsed µs, in units.
    rate: i128,
    /// Window in µs.
    window_us: u64,
    /// `rate × window_us`.
    capacity: i128,
    /// Units available at `last_us`; negative after an oversized frame.
    tokens: i128,
    /// The latest time seen.
    last_us: u64,
}

impl Bucket {
    /// The tokens at `now_us` (or at the latest time seen, if later).
    fn tokens_at(&self, now_us: u64) -> i128 {
        let elapsed = i128::from(now_us.saturating_sub(self.last_us));
        (self.tokens + elapsed * self.rate).min(self.capacity)
    }

    fn advance(&mut self, now_us: u64) {
        self.tokens = self.tokens_at(now_us);
        self.last_us = self.last_us.max(now_us);
    }

    /// Microseconds from `max(now, last)` until the bucket holds `need` units.
    fn wait_for(&self, now_us: u64, need: i128) -> u64 {
        let deficit = need - self.tokens_at(now_us);
        if deficit <= 0 {
            return 0;
        }
        let wait = (deficit + self.rate - 1) / self.rate;
        u64::try_from(wait).unwrap_or(u64::MAX)
    }
}

impl DutyBudget {
    /// A budget for `duty` (a fraction: 0.01 is 1 %) over a window of `window_us`,
    /// starting full. Errors unless `duty` is in (0, 1] after rounding to 10⁻⁹.
    pub fn new(duty: f64, window_us: u64) -> Result<Self, BudgetError> {
        if !(duty > 0.0 && duty <= 1.0) {
            return Err(BudgetError::InvalidDuty(duty));
        }
        // In [0, 1e9] after the check above, so the cast is exact.
        let rate = (duty * 1e9).round() as i128;
        if rate == 0 {
            return Err(BudgetError::InvalidDuty(duty));
        }
        let capacity = rate * i128::from(window_us);
        Ok(DutyBudget {
            limit: Some(Bucket {
                rate,
                window_us,
                capacity,
                tokens: capacity,
                last_us: 0,
            }),
        })
    }

    /// [`new`](Self::new) with ETSI's one-hour window ([`DEFAULT_WINDOW_US`]).
    pub fn with_default_window(duty: f64) -> Result<Self, BudgetError> {
        Self::new(duty, DEFAULT_WINDOW_US)
    }

    /// A budget that never refuses: for regions without a duty cycle.
    pub fn unlimited() -> Self {
        DutyBudget { limit: None }
    }

    /// A budget for an optional duty cycle, as [`crate::region::duty_cycle`] returns it,
    /// with the default window.
    pub fn for_duty(duty: Option<f64>) -> Result<Self, BudgetError> {
        duty.map_or(Ok(Self::unlimited()), Self::with_default_window)
    }

    /// Whether this budget is [`unlimited`](Self::unlimited).
    pub fn is_unlimited(&self) -> bool {
        self.limit.is_none()
    }

    /// The duty cycle enforced (to the nearest 10⁻⁹), 1.0 when unlimited.
    pub fn duty(&self) -> f64 {
        self.limit.as_ref().map_or(1.0, |b| b.rate as f64 / 1e9)
    }

    /// The window, in µs (0 when unlimited).
    pub fn window_us(&self) -> u64 {
        self.limit.as_ref().map_or(0, |b| b.window_us)
    }

    /// The capacity `duty × window`, in whole µs of airtime (`u64::MAX` when unlimited).
    pub fn capacity_us(&self) -> u64 {
        self.limit.as_ref().map_or(u64::MAX, |b| {
            u64::try_from(b.capacity / SCALE).unwrap_or(u64::MAX)
        })
    }

    /// Whole microseconds of airtime available at `now_us` (0 while in debt;
    /// `u64::MAX` when unlimited).
    pub fn available_us(&self, now_us: u64) -> u64 {
        self.limit.as_ref().map_or(u64::MAX, |b| {
            u64::try_from(b.tokens_at(now_us).max(0) / SCALE).unwrap_or(u64::MAX)
        })
    }

    /// The earliest time, not before `now_us`, at which [`spend`](Self::spend) would
    /// accept `airtime_us`, if nothing else is spent first. For a frame longer than the
    /// capacity that is the time the bucket is full again. Saturates at `u64::MAX`.
    pub fn ready_at(&self, now_us: u64, airtime_us: u64) -> u64 {
        let Some(b) = &self.limit else {
            return now_us;
        };
        let need = (i128::from(airtime_us) * SCALE).min(b.capacity);
        now_us
            .max(b.last_us)
            .saturating_add(b.wait_for(now_us, need))
    }

    /// Takes `airtime_us` of airtime at `now_us`, or refuses with the time it would fit.
    ///
    /// A frame longer than the capacity is accepted only when the bucket is full and
    /// leaves it in debt (see the module docs).
    pub fn spend(&mut self, now_us: u64, airtime_us: u64) -> Result<(), BudgetError> {
        let ready_at_us = self.ready_at(now_us, airtime_us);
        let Some(b) = &mut self.limit else {
            return Ok(());
        };
        b.advance(now_us);
        if ready_at_us > b.last_us {
            return Err(BudgetError::Exhausted {
                airtime_us,
                ready_at_us,
            });
        }
        b.tokens -= i128::from(airtime_us) * SCALE;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const S: u64 = 1_000_000;

    #[test]
    fn starts_full_and_refills_at_duty() {
        let mut b = DutyBudget::with_default_window(0.01).unwrap();
        assert_eq!(b.capacity_us(), 36 * S);
        assert_eq!(b.available_us(0), 36 * S);
        assert_eq!(b.ready_at(0, 36 * S), 0);
        b.spend(0, 36 * S).unwrap();
        assert_eq!(b.available_us(0), 0);
        // 1 s of airtime needs 100 s at 1 %.
        assert_eq!(b.ready_at(0, S), 100 * S);
        assert_eq!(b.available_us(50 * S), S / 2);
        assert_eq!(
            b.spend(99 * S, S),
            Err(BudgetError::Exhausted {
                airtime_us: S,
                ready_at_us: 100 * S
            })
        );
        b.spend(100 * S, S).unwrap();
        // Refill stops at the capacity.
        assert_eq!(b.available_us(u64::MAX), 36 * S);
    }

    #[test]
    fn oversized_frames_need_a_full_bucket_and_leave_debt() {
        let mut b = DutyBudget::new(0.1, 10 * S).unwrap(); // capacity 1 s
        b.spend(0, S / 2).unwrap();
        // 3 s > capacity: ready when full again, 5 s later.
        assert_eq!(b.ready_at(0, 3 * S), 5 * S);
        assert!(b.spend(4 * S, 3 * S).is_err());
        b.spend(5 * S, 3 * S).unwrap();
        assert_eq!(b.available_us(5 * S), 0);
        // Debt of 2 s, then 1 s to fill: full at 5 + 30 s.
        assert_eq!(b.ready_at(5 * S, 3 * S), 35 * S);
        assert_eq!(b.ready_at(5 * S, 1), 25 * S + 10);
    }

    #[test]
    fn zero_window_is_per_frame_time_off() {
        let mut b = DutyBudget::new(0.01, 0).unwrap();
        b.spend(0, S).unwrap();
        assert_eq!(b.ready_at(0, 1), 100 * S);
        assert!(b.spend(100 * S - 1, 1).is_err());
        b.spend(100 * S, 1).unwrap();
    }

    #[test]
    fn time_going_backwards_counts_as_no_time() {
        let mut b = DutyBudget::new(0.5, 2 * S).unwrap(); // capacity 1 s
        b.spend(10 * S, S).unwrap();
        assert_eq!(b.available_us(5 * S), 0);
        assert_eq!(b.ready_at(5 * S, S), 12 * S);
        assert!(b.spend(5 * S, 1).is_err());
    }

    #[test]
    fn unlimited_and_invalid() {
        let mut u = DutyBudget::unlimited();
        assert!(u.is_unlimited());
        assert_eq!(u.ready_at(7, u64::MAX), 7);
        u.spend(0, u64::MAX).unwrap();
        assert_eq!(u.available_us(0), u64::MAX);
        assert_eq!(DutyBudget::for_duty(None).unwrap(), DutyBudget::unlimited());
        assert_eq!(
            DutyBudget::for_duty(Some(0.001)).unwrap().capacity_us(),
            3_600_000
        );
        for bad in [0.0, -0.1, 1.01, f64::NAN, f64::INFINITY, 1e-12] {
            assert!(DutyBudget::new(bad, S).is_err(), "{bad}");
        }
        assert_eq!(DutyBudget::new(1.0, S).unwrap().duty(), 1.0);
        assert_eq!(DutyBudget::new(0.001, S).unwrap().duty(), 0.001);
    }

    #[test]
    fn extreme_values_do_not_overflow() {
        let mut b = DutyBudget::new(1e-9, u64::MAX).unwrap();
        assert_eq!(b.ready_at(u64::MAX, u64::MAX), u64::MAX);
        let _ = b.spend(u64::MAX, u64::MAX);
        assert_eq!(b.ready_at(u64::MAX, u64::MAX), u64::MAX);
        let mut b = DutyBudget::new(1e-9, 0).unwrap();
        b.spend(0, u64::MAX).unwrap();
        assert_eq!(b.ready_at(0, 1), u64::MAX);
    }

    fn duties() -> impl Strategy<Value = f64> {
        prop_oneof![Just(0.001), Just(0.01), Just(0.1), Just(1.0), 1e-6..1.0f64]
    }

    proptest! {
        /// Any interval of length W holds at most duty·W + max(capacity, longest frame)
        /// of accepted airtime (exactly, in budget units), and the total up to the last
        /// instant is at most duty·T + that much.
        #[test]
        fn accepted_airtime_is_bounded_in_every_window(
            duty in duties(),
            window in prop_oneof![Just(0u64), 0..1_000_000u64, Just(DEFAULT_WINDOW_US)],
            ops in prop::collection::vec((0..2_000_000u64, 0..400_000u64, any::<bool>()), 1..200),
            widths in prop::collection::vec(0..20_000_000u64, 1..6),
        ) {
            let mut b = DutyBudget::new(duty, window).unwrap();
            let (rate, capacity) = {
                let k = b.limit.as_ref().unwrap();
                (k.rate, k.capacity)
            };
            let mut now = 0u64;
            let mut accepted: Vec<(u64, u64)> = Vec::new();
            for (gap, airtime, greedy) in ops {
                // A greedy sender transmits as soon as the budget allows, which is what
                // makes the bound tight; the others arrive at random.
                now = if greedy { b.ready_at(now, airtime) } else { now + gap };
                if b.spend(now, airtime).is_ok() {
                    accepted.push((now, airtime));
                }
            }
            let longest = accepted.iter().map(|&(_, a)| i128::from(a) * SCALE).max().unwrap_or(0);
            let slack = capacity.max(longest);
            for &w in widths.iter().chain(std::iter::once(&now)) {
                for (i, &(start, _)) in accepted.iter().enumerate() {
                    let sum: i128 = accepted[i..]
                        .iter()
                        .take_while(|&&(t, _)| t <= start + w)
                        .map(|&(_, a)| i128::from(a) * SCALE)
                        .sum();
                    prop_assert!(sum <= rate * i128::from(w) + slack,
                        "window {} from {}: {} > {}", w, start, sum, rate * i128::from(w) + slack);
                }
            }
        }

        /// `ready_at` is exact: spending there succeeds, one µs earlier fails.
        #[test]
        fn ready_at_is_the_earliest_time(
            duty in duties(),
            window in 0..100_000_000u64,
            ops in prop::collection::vec((0..5_000_000u64, 0..2_000_000u64), 1..50),
        ) {
            let mut b = DutyBudget::new(duty, window).unwrap();
            let mut now = 0u64;
            for (gap, airtime) in ops {
                now += gap;
                let at = b.ready_at(now, airtime);
                prop_assert!(at >= now);
                if at > now {
                    prop_assert!(b.clone().spend(at - 1, airtime).is_err());
                }
                prop_assert_eq!(b.spend(at, airtime), Ok(()));
                now = at;
            }
        }

        /// A greedy sender converges to the duty cycle from below.
        #[test]
        fn long_run_average_is_the_duty(
            duty in duties(),
            window in 0..10_000_000u64,
            airtime in 1..500_000u64,
        ) {
            let mut b = DutyBudget::new(duty, window).unwrap();
            let exact = b.duty();
            let mut now = 0u64;
            let mut total = 0u128;
            for _ in 0..2_000 {
                now = b.ready_at(now, airtime);
                b.spend(now, airtime).unwrap();
                total += u128::from(airtime);
            }
            let horizon = now + airtime;
            let average = total as f64 / horizon as f64;
            let capacity = b.limit.as_ref().unwrap().capacity as f64 / 1e9;
            let slack = capacity.max(airtime as f64) / horizon as f64;
            prop_assert!(average <= exact + slack + 1e-12, "{} > {} + {}", average, exact, slack);
            prop_assert!(average >= exact * 0.9 - slack,
                "greedy sender too slow: {} vs {}", average, exact);
        }
    }
}
