//! Per-client token buckets.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::config::RateLimitConfig;

#[derive(Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// One token bucket per client key: `burst` tokens, refilled at `per_second`.
pub(crate) struct RateLimiter {
    rate: f64,
    burst: f64,
    max_clients: usize,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl RateLimiter {
    pub(crate) fn new(config: &RateLimitConfig) -> Self {
        Self {
            rate: f64::from(config.per_second.max(1)),
            burst: f64::from(config.burst.max(1)),
            max_clients: config.max_clients.max(1),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token for `client`; `Err(wait)` when none is left, with the
    /// time until the next token.
    pub(crate) fn acquire(&self, client: &str, now: Instant) -> Result<(), Duration> {
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() >= self.max_clients && !buckets.contains_key(client) {
            // Buckets that refilled completely carry no state worth keeping.
            let (rate, burst) = (self.rate, self.burst);
            buckets.retain(|_, b| {
                b.tokens + now.saturating_duration_since(b.updated).as_secs_f64() * rate < burst
            });
        }
        let bucket = buckets.entry(client.to_owned()).or_insert(Bucket {
            tokens: self.burst,
            updated: now,
        });
        let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.rate).min(self.burst);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - bucket.tokens) / self.rate))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(per_second: u32, burst: u32) -> RateLimiter {
        RateLimiter::new(&RateLimitConfig {
            enabled: true,
            per_second,
            burst,
            max_clients: 2,
        })
    }

    #[test]
    fn burst_then_refusal_then_refill() {
        let limiter = limiter(2, 3);
        let start = Instant::now();
        for _ in 0..3 {
            assert_eq!(limiter.acquire("a", start), Ok(()));
        }
        let wait = limiter.acquire("a", start).unwrap_err();
        assert!(wait <= Duration::from_millis(500) && wait > Duration::ZERO);
        // Other clients have their own bucket.
        assert_eq!(limiter.acquire("b", start), Ok(()));
        assert_eq!(
            limiter.acquire("a", start + Duration::from_millis(500)),
            Ok(())
        );
    }

    #[test]
    fn full_buckets_are_dropped_above_max_clients() {
        let limiter = limiter(10, 1);
        let start = Instant::now();
        limiter.acquire("a", start).unwrap();
        limiter.acquire("b", start).unwrap();
        // One second later both refilled: adding `c` evicts them.
        limiter
            .acquire("c", start + Duration::from_secs(1))
            .unwrap();
        assert_eq!(limiter.buckets.lock().unwrap().len(), 1);
    }
}
