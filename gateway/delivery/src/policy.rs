//! What to do after a delivery attempt: the classification of a target's
//! answer (delivered, retry, dead letter) and the retry schedule
//! (exponential backoff with full jitter, `Retry-After` honoured).

use std::time::{Duration, SystemTime};

pub use passerelle_fhir_client::parse_retry_after;

/// How an attempt ended, before the retry schedule is applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Delivered,
    /// Worth another try; `after` is the target's `Retry-After`, if any.
    Retry {
        after: Option<Duration>,
    },
    /// Retrying cannot fix it (a 4xx other than 408, 409, 412 and 429).
    Dead,
}

/// Classifies an HTTP answer to a transaction POST.
pub fn classify_status(status: u16, retry_after: Option<Duration>) -> Verdict {
    match status {
        200..=299 => Verdict::Delivered,
        // Timeout, version conflicts (another writer got there first: the
        // conditional writes succeed on the next try) and throttling.
        408 | 409 | 412 | 425 | 429 => Verdict::Retry { after: retry_after },
        400..=499 => Verdict::Dead,
        // 5xx and anything unexpected (1xx, 3xx): the target's trouble.
        _ => Verdict::Retry { after: retry_after },
    }
}

/// Longest `Retry-After` honoured: a target asking for a day is more
/// likely misconfigured than meaning it.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// The retry schedule of one target.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub initial: Duration,
    pub max: Duration,
    /// 0: retry for ever.
    pub max_attempts: u32,
}

impl RetryPolicy {
    /// The delay before attempt `attempt + 1`, given `attempt` attempts so
    /// far (1 after the first failure): a random point in
    /// `[0, min(max, initial * 2^(attempt-1))]` ("full jitter", which
    /// spreads a crowd of retries best), but never less than a quarter of
    /// the ceiling, so that a retry storm cannot hit the target at once.
    /// A `Retry-After` longer than that wins, capped at an hour.
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>, random: u64) -> Duration {
        let exponent = attempt.saturating_sub(1).min(30);
        let ceiling = self
            .initial
            .saturating_mul(1u32 << exponent)
            .min(self.max)
            .max(Duration::from_millis(1));
        let ceiling_ms = ceiling.as_millis() as u64;
        let floor_ms = ceiling_ms / 4;
        let jittered = Duration::from_millis(floor_ms + random % (ceiling_ms - floor_ms + 1));
        match retry_after {
            Some(after) if after > jittered => after.min(MAX_RETRY_AFTER),
            _ => jittered,
        }
    }

    /// Whether `attempt` attempts exhaust the policy.
    pub fn exhausted(&self, attempt: u32) -> bool {
        self.max_attempts != 0 && attempt >= self.max_attempts
    }
}

/// A small non-cryptographic random source for jitter (splitmix64), seeded
/// per worker; jitter needs spread, not secrecy.
#[derive(Debug, Clone)]
pub struct Jitter(u64);

impl Jitter {
    pub fn seeded(seed: u64) -> Jitter {
        let time = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        Jitter(seed ^ time)
    }

    pub fn draw(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_classified_as_fhir_servers_mean_them() {
        assert_eq!(classify_status(200, None), Verdict::Delivered);
        assert_eq!(classify_status(201, None), Verdict::Delivered);
        for retryable in [408, 409, 412, 429, 500, 502, 503, 504] {
            assert!(
                matches!(classify_status(retryable, None), Verdict::Retry { .. }),
                "{retryable}"
            );
        }
        for dead in [400, 401, 403, 404, 405, 410, 413, 415, 422] {
            assert_eq!(classify_status(dead, None), Verdict::Dead, "{dead}");
        }
    }

    #[test]
    fn retry_after_in_seconds_or_as_a_date() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(30));
        assert_eq!(
            parse_retry_after(&later, now),
            Some(Duration::from_secs(30))
        );
        let earlier = httpdate::fmt_http_date(now - Duration::from_secs(30));
        assert_eq!(parse_retry_after(&earlier, now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn backoff_doubles_within_jitter_and_is_capped() {
        let policy = RetryPolicy {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(10),
            max_attempts: 0,
        };
        let mut jitter = Jitter::seeded(1);
        for attempt in 1..40 {
            let ceiling = (100u64 << (attempt - 1).min(30)).min(10_000);
            for _ in 0..50 {
                let delay = policy.delay(attempt, None, jitter.draw()).as_millis() as u64;
                assert!(
                    delay <= ceiling && delay >= ceiling / 4,
                    "attempt {attempt}: {delay}"
                );
            }
        }
        // A longer Retry-After wins.
        let delay = policy.delay(1, Some(Duration::from_secs(5)), jitter.draw());
        assert_eq!(delay, Duration::from_secs(5));
        assert!(!policy.exhausted(1_000));
        let bounded = RetryPolicy {
            max_attempts: 3,
            ..policy
        };
        assert!(!bounded.exhausted(2));
        assert!(bounded.exhausted(3));
    }
}
