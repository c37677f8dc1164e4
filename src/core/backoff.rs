//! The one back-off every retry loop of the crate uses: exponential from an initial delay by
//! a factor up to a cap, with "equal" jitter (each delay is half the exponential step plus a
//! random part of the other half).
//!
//! Why equal jitter rather than full jitter (a random delay between zero and the step): a
//! single client retrying one bridge or one broker gains nothing from a delay near zero, and
//! full jitter would hammer a Hue bridge on the LAN or a PBX exactly when it is struggling.
//! Equal jitter still spreads many edges reconnecting after a broker outage over half the
//! window, keeps at least half the step, and never waits longer than the step without
//! jitter (so whoever waited the old, un-jittered delay still sees the retry). It is also
//! what Microsoft's own Azure SDKs do for their retries (`calculateRetryDelay` in
//! `@typespec/ts-http-runtime`: `clampedDelay / 2 + random(0, clampedDelay / 2)`).
//!
//! Our own small type rather than a crate: `backon` (the well-kept one) jitters by adding up
//! to a whole step (so delays reach twice the step), takes only a seed rather than a random
//! source, and builds a new iterator per reset; `backoff` is unmaintained. The random source
//! is a plain function, so tests pass a fixed one; the default mixes the per-process random
//! keys of std's `RandomState` (no extra crate, no I/O after the first use per thread).

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::time::Duration;

/// A random number in `[0, 1)`.
pub type RandomSource = fn() -> f64;

/// Exponential back-off with equal jitter. [`Backoff::next_delay`] after each failure,
/// [`Backoff::reset`] after a success.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    factor: u32,
    cap: Duration,
    /// The un-jittered step the next delay is drawn from.
    step: Duration,
    random: RandomSource,
}

impl Backoff {
    /// From `initial`, doubling up to `cap` (before jitter), with the process's random source.
    pub fn new(initial: Duration, cap: Duration) -> Self {
        Self {
            initial,
            factor: 2,
            cap,
            step: initial.min(cap),
            random: std_random,
        }
    }

    /// Grows by `factor` per failure instead of doubling (at least 1).
    #[must_use]
    pub fn with_factor(mut self, factor: u32) -> Self {
        self.factor = factor.max(1);
        self
    }

    /// Draws the jitter from `random` (tests pass a fixed source).
    #[must_use]
    pub fn with_random(mut self, random: RandomSource) -> Self {
        self.random = random;
        self
    }

    /// The delay to wait now: half the current step plus a random part of the other half.
    /// The step then grows by the factor, up to the cap.
    pub fn next_delay(&mut self) -> Duration {
        let step = self.step;
        self.step = step.saturating_mul(self.factor).min(self.cap);
        let unit = (self.random)().clamp(0.0, 1.0);
        let half = step / 2;
        let room = step - half;
        // Never past the step, whatever the float rounding does near `Duration::MAX`.
        let part = Duration::try_from_secs_f64(room.as_secs_f64() * unit)
            .unwrap_or(room)
            .min(room);
        half + part
    }

    /// The step the next delay is drawn from (the longest it can be).
    pub fn current_step(&self) -> Duration {
        self.step
    }

    /// Back to the initial step, after a success.
    pub fn reset(&mut self) {
        self.step = self.initial.min(self.cap);
    }
}

/// `[0, 1)` from std's randomly keyed hasher: every `RandomState` gets fresh keys (seeded once
/// per thread from the OS, then stepped), so hashing nothing gives a new number each call.
fn std_random() -> f64 {
    let bits = RandomState::new().hash_one(());
    // The top 53 bits: exactly representable.
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn with_the_lowest_draw_each_delay_is_half_the_step_and_the_step_doubles_to_the_cap() {
        let mut b = Backoff::new(secs(1), secs(8)).with_random(|| 0.0);
        let delays: Vec<Duration> = (0..6).map(|_| b.next_delay()).collect();
        assert_eq!(
            delays,
            [500, 1000, 2000, 4000, 4000, 4000].map(Duration::from_millis)
        );
    }

    #[test]
    fn with_the_highest_draw_each_delay_is_the_whole_step() {
        let mut b = Backoff::new(secs(1), secs(30)).with_random(|| 1.0);
        let delays: Vec<Duration> = (0..7).map(|_| b.next_delay()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 30, 30].map(secs));
    }

    #[test]
    fn a_middle_draw_lands_three_quarters_into_the_step() {
        let mut b = Backoff::new(secs(4), secs(60)).with_random(|| 0.5);
        assert_eq!(b.next_delay(), secs(3));
        assert_eq!(b.next_delay(), secs(6));
    }

    #[test]
    fn reset_starts_again_from_the_initial_step() {
        let mut b = Backoff::new(secs(1), secs(30)).with_random(|| 1.0);
        for _ in 0..4 {
            b.next_delay();
        }
        assert_eq!(b.current_step(), secs(16));
        b.reset();
        assert_eq!(b.current_step(), secs(1));
        assert_eq!(b.next_delay(), secs(1));
    }

    #[test]
    fn another_factor_grows_faster() {
        // The store's and the token refresh's schedules: 200 ms, 800 ms, 3.2 s.
        let mut b = Backoff::new(Duration::from_millis(200), Duration::from_millis(3200))
            .with_factor(4)
            .with_random(|| 1.0);
        let delays: Vec<Duration> = (0..4).map(|_| b.next_delay()).collect();
        assert_eq!(delays, [200, 800, 3200, 3200].map(Duration::from_millis));
    }

    #[test]
    fn an_uncapped_step_saturates_instead_of_overflowing() {
        let mut b = Backoff::new(secs(1), Duration::MAX).with_random(|| 1.0);
        for _ in 0..200 {
            b.next_delay();
        }
        assert_eq!(b.current_step(), Duration::MAX);
        assert!(b.next_delay() <= Duration::MAX);
    }

    #[test]
    fn an_out_of_range_draw_is_clamped_into_the_step() {
        let mut b = Backoff::new(secs(2), secs(2)).with_random(|| 7.0);
        assert_eq!(b.next_delay(), secs(2));
        let mut b = Backoff::new(secs(2), secs(2)).with_random(|| -1.0);
        assert_eq!(b.next_delay(), secs(1));
    }

    #[test]
    fn the_default_source_stays_within_the_step_and_varies() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..50 {
            let mut b = Backoff::new(secs(1), secs(1));
            let d = b.next_delay();
            assert!(d >= Duration::from_millis(500) && d <= secs(1), "{d:?}");
            seen.insert(d);
        }
        assert!(seen.len() > 10, "jitter varies: {seen:?}");
    }
}
