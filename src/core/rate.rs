//! A rate limit kept as one timestamp, so it can live in a store row that every instance
//! shares (the generic cell rate algorithm, GCRA: a token bucket without a counter).
//!
//! The row holds the *theoretical arrival time* (`tat`): the moment the bucket would be full
//! again if nothing more were taken. Taking one moves it one interval later (from `now` when
//! it lies in the past); a take is refused when that would put it more than `burst`
//! intervals ahead of `now`. So `burst` takes pass at once, then one per interval, exactly
//! like a bucket of `burst` tokens refilled at `per_minute`. A row whose `tat` has passed
//! says nothing a missing row would not: it can be deleted then (the store's cleanup).
//!
//! Pure: the stored time and `now` are arguments, the new time to store is the result.

use chrono::{DateTime, Duration, Utc};

/// A rate: `burst` at once, then `per_minute` a minute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Takes allowed per minute once the burst is spent.
    pub per_minute: u32,
    /// Takes allowed at once.
    pub burst: u32,
}

impl Rate {
    /// The time between two takes once the burst is spent.
    pub fn interval(self) -> Duration {
        Duration::microseconds(60_000_000 / i64::from(self.per_minute.max(1)))
    }

    /// One take at `now` against the stored `tat` (`None`: no row, a full bucket). Returns
    /// the `tat` to store when the take is allowed, `None` when it is refused (store
    /// nothing then). The returned time is also when the row may be deleted.
    pub fn take(self, tat: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let interval = self.interval();
        let from = tat.map_or(now, |t| t.max(now));
        let next = from + interval;
        (next - now <= interval * self.burst.max(1) as i32).then_some(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(ms: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_800_000_000, 0).unwrap() + Duration::milliseconds(ms)
    }

    /// Takes `n` at `at` starting from `tat`; returns how many passed and the last tat.
    fn burst(
        rate: Rate,
        mut tat: Option<DateTime<Utc>>,
        at: i64,
        n: usize,
    ) -> (usize, Option<DateTime<Utc>>) {
        let mut passed = 0;
        for _ in 0..n {
            if let Some(next) = rate.take(tat, t(at)) {
                tat = Some(next);
                passed += 1;
            }
        }
        (passed, tat)
    }

    #[test]
    fn a_burst_passes_then_one_per_interval() {
        let per_client = Rate {
            per_minute: 10,
            burst: 10,
        };
        assert_eq!(per_client.interval(), Duration::seconds(6));
        let (passed, tat) = burst(per_client, None, 0, 200);
        assert_eq!(passed, 10);
        // The bucket is full again 60 s later: that is when the row may go.
        assert_eq!(tat, Some(t(60_000)));
        let cases = [
            // (ms after the burst, takes tried, passed)
            (5_999, 1, 0),
            (6_000, 3, 1),
            (12_000, 1, 1),
            (30_000, 10, 3),
        ];
        let mut tat = tat;
        for (at, n, want) in cases {
            let (passed, next) = burst(per_client, tat, at, n);
            assert_eq!(passed, want, "at {at} ms");
            tat = next;
        }
        // After the row's time has passed, a full burst again.
        assert_eq!(burst(per_client, tat, 200_000, 20).0, 10);
    }

    #[test]
    fn an_overall_rate_of_five_a_second() {
        let overall = Rate {
            per_minute: 300,
            burst: 300,
        };
        assert_eq!(overall.interval(), Duration::milliseconds(200));
        let (passed, tat) = burst(overall, None, 0, 1_000);
        assert_eq!(passed, 300);
        assert_eq!(burst(overall, tat, 1_000, 100).0, 5);
    }

    #[test]
    fn a_stored_time_in_the_past_counts_as_a_full_bucket() {
        let r = Rate {
            per_minute: 60,
            burst: 2,
        };
        assert_eq!(r.take(Some(t(-3_600_000)), t(0)), Some(t(1_000)));
        assert_eq!(r.take(None, t(0)), Some(t(1_000)));
    }
}
