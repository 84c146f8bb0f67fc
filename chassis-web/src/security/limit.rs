//! Per-client token buckets.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::config::RateLimitConfig;

#[derive(Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// Who a request is counted against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Client<'a> {
    /// The configured API key at this position.
    ApiKey(usize),
    /// A token's subject.
    Subject(&'a str),
    /// An anonymous client, by its address (see [`Client::peer`]).
    Peer(IpAddr),
}

impl Client<'_> {
    /// An anonymous client at `ip`. An IPv6 client is its /64 network: one
    /// host is usually handed a whole /64 and can rotate through it, so a
    /// bucket per address would not limit it at all. An IPv4-mapped IPv6
    /// address is the IPv4 client it stands for.
    pub(crate) fn peer(ip: IpAddr) -> Self {
        Client::Peer(match ip {
            IpAddr::V4(_) => ip,
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into()),
            },
        })
    }
}

/// Buckets by kind of client: typed keys, so an API key or an address is
/// looked up without building a string.
#[derive(Default)]
struct Buckets {
    api_keys: HashMap<usize, Bucket>,
    subjects: HashMap<String, Bucket>,
    peers: HashMap<IpAddr, Bucket>,
}

impl Buckets {
    fn len(&self) -> usize {
        self.api_keys.len() + self.subjects.len() + self.peers.len()
    }

    fn contains(&self, client: Client<'_>) -> bool {
        match client {
            Client::ApiKey(key) => self.api_keys.contains_key(&key),
            Client::Subject(subject) => self.subjects.contains_key(subject),
            Client::Peer(ip) => self.peers.contains_key(&ip),
        }
    }

    fn retain(&mut self, keep: impl Fn(&Bucket) -> bool) {
        self.api_keys.retain(|_, b| keep(b));
        self.subjects.retain(|_, b| keep(b));
        self.peers.retain(|_, b| keep(b));
    }

    fn get_or_insert(&mut self, client: Client<'_>, fresh: Bucket) -> &mut Bucket {
        fn entry<K: Hash + Eq>(map: &mut HashMap<K, Bucket>, key: K, fresh: Bucket) -> &mut Bucket {
            map.entry(key).or_insert(fresh)
        }
        match client {
            Client::ApiKey(key) => entry(&mut self.api_keys, key, fresh),
            Client::Peer(ip) => entry(&mut self.peers, ip, fresh),
            // The subject is copied only the first time it is seen.
            Client::Subject(subject) => {
                if !self.subjects.contains_key(subject) {
                    self.subjects.insert(subject.to_owned(), fresh);
                }
                self.subjects.get_mut(subject).expect("inserted above")
            }
        }
    }
}

/// One token bucket per client: `burst` tokens, refilled at `per_second`.
pub(crate) struct RateLimiter {
    rate: f64,
    burst: f64,
    max_clients: usize,
    buckets: Mutex<Buckets>,
}

impl RateLimiter {
    pub(crate) fn new(config: &RateLimitConfig) -> Self {
        Self {
            rate: f64::from(config.per_second.max(1)),
            burst: f64::from(config.burst.max(1)),
            max_clients: config.max_clients.max(1),
            buckets: Mutex::new(Buckets::default()),
        }
    }

    /// Takes one token for `client`; `Err(wait)` when none is left, with the
    /// time until the next token.
    pub(crate) fn acquire(&self, client: Client<'_>, now: Instant) -> Result<(), Duration> {
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() >= self.max_clients && !buckets.contains(client) {
            // Buckets that refilled completely carry no state worth keeping.
            let (rate, burst) = (self.rate, self.burst);
            buckets.retain(|b| {
                b.tokens + now.saturating_duration_since(b.updated).as_secs_f64() * rate < burst
            });
        }
        let bucket = buckets.get_or_insert(
            client,
            Bucket {
                tokens: self.burst,
                updated: now,
            },
        );
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

    const A: Client<'static> = Client::ApiKey(0);
    const B: Client<'static> = Client::Subject("b");
    const C: Client<'static> = Client::Peer(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST));

    fn limiter(per_second: u32, burst: u32) -> RateLimiter {
        RateLimiter::new(&RateLimitConfig {
            enabled: true,
            per_second,
            burst,
            max_clients: 2,
        })
    }

    #[test]
    fn ipv6_clients_are_limited_by_their_64_network() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(
            Client::peer(ip("2001:db8:1:2:aaaa::1")),
            Client::peer(ip("2001:db8:1:2:ffff:1:2:3")),
            "one /64, one client"
        );
        assert_ne!(
            Client::peer(ip("2001:db8:1:2::1")),
            Client::peer(ip("2001:db8:1:3::1"))
        );
        assert_eq!(
            Client::peer(ip("::ffff:192.0.2.7")),
            Client::peer(ip("192.0.2.7"))
        );
        assert_ne!(
            Client::peer(ip("192.0.2.7")),
            Client::peer(ip("192.0.2.8")),
            "IPv4 clients by their address"
        );
        // Rotating addresses in the /64 does not get new tokens.
        let limiter = limiter(1, 1);
        let now = Instant::now();
        assert!(
            limiter
                .acquire(Client::peer(ip("2001:db8::1")), now)
                .is_ok()
        );
        assert!(
            limiter
                .acquire(Client::peer(ip("2001:db8::2")), now)
                .is_err()
        );
    }

    #[test]
    fn burst_then_refusal_then_refill() {
        let limiter = limiter(2, 3);
        let start = Instant::now();
        for _ in 0..3 {
            assert_eq!(limiter.acquire(A, start), Ok(()));
        }
        let wait = limiter.acquire(A, start).unwrap_err();
        assert!(wait <= Duration::from_millis(500) && wait > Duration::ZERO);
        // Other clients have their own bucket.
        assert_eq!(limiter.acquire(B, start), Ok(()));
        assert_eq!(
            limiter.acquire(A, start + Duration::from_millis(500)),
            Ok(())
        );
    }

    #[test]
    fn full_buckets_are_dropped_above_max_clients() {
        let limiter = limiter(10, 1);
        let start = Instant::now();
        limiter.acquire(A, start).unwrap();
        limiter.acquire(B, start).unwrap();
        // One second later both refilled: adding `c` evicts them.
        limiter.acquire(C, start + Duration::from_secs(1)).unwrap();
        assert_eq!(limiter.buckets.lock().unwrap().len(), 1);
    }
}
