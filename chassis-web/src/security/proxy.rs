//! `security.trusted_proxies`: who the client of a request is behind an
//! ingress or load balancer.
//!
//! A proxy appends the address it received the request from to
//! `X-Forwarded-For`; everything left of that was written by whoever sent it
//! and can be forged. So the list is read from the right, only while the
//! sender is a trusted proxy: the first address that is not one is the client.

use std::net::IpAddr;

use chassis_core::config::InvalidValue;
use http::HeaderMap;

/// One CIDR block (`10.0.0.0/8`, `fd00::/8`, or a single address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    fn parse(text: &str) -> Option<Self> {
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let network: IpAddr = address.trim().parse().ok()?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.trim().parse::<u8>().ok().filter(|p| *p <= max)?,
            None => max,
        };
        Some(Self { network, prefix })
    }

    fn contains(&self, ip: IpAddr) -> bool {
        // An IPv4-mapped IPv6 peer (a dual-stack listener) is its IPv4 address.
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.network, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// The proxies whose `X-Forwarded-For` is believed.
#[derive(Debug, Default)]
pub(crate) struct TrustedProxies(Vec<Cidr>);

impl TrustedProxies {
    /// Parses `security.trusted_proxies`; names the entry that is not a CIDR.
    pub(crate) fn new(entries: &[String]) -> Result<Self, InvalidValue> {
        entries
            .iter()
            .map(|entry| {
                Cidr::parse(entry).ok_or_else(|| {
                    InvalidValue::new(
                        "security.trusted_proxies",
                        "IP addresses or CIDR blocks (`10.0.0.0/8`, `fd00::/8`)",
                    )
                    .found(format!("`{entry}`"))
                })
            })
            .collect::<Result<_, _>>()
            .map(Self)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|cidr| cidr.contains(ip))
    }

    /// The client of a request from `peer`: the rightmost `X-Forwarded-For`
    /// address not of a trusted proxy, when `peer` is one; else `peer`.
    pub(crate) fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        if !self.trusts(peer) {
            return peer;
        }
        let mut client = peer;
        // Several headers are one list, in order (RFC 9110 §5.3).
        let hops = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .collect::<Vec<_>>();
        for hop in hops.iter().rev() {
            let Some(ip) = parse_hop(hop) else {
                // Garbage: the last address we could read is as far as the
                // chain can be believed.
                break;
            };
            client = ip;
            if !self.trusts(ip) {
                break;
            }
        }
        client
    }
}

/// One `X-Forwarded-For` entry: an address, maybe with a port
/// (`192.0.2.1:4711`, `[2001:db8::1]:4711`).
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    if let Ok(ip) = hop.parse() {
        return Some(ip);
    }
    if let Some(rest) = hop.strip_prefix('[') {
        return rest.split_once(']')?.0.parse().ok();
    }
    hop.rsplit_once(':')?.0.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn headers(values: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for v in values {
            map.append("x-forwarded-for", v.parse().unwrap());
        }
        map
    }

    fn proxies(entries: &[&str]) -> TrustedProxies {
        TrustedProxies::new(&entries.iter().map(|e| e.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn cidr_blocks_match_their_addresses() {
        let p = proxies(&["10.0.0.0/8", "192.168.1.7", "fd00::/8"]);
        assert!(p.trusts(ip("10.200.3.4")));
        assert!(!p.trusts(ip("11.0.0.1")));
        assert!(p.trusts(ip("192.168.1.7")));
        assert!(!p.trusts(ip("192.168.1.8")));
        assert!(p.trusts(ip("fd12::1")));
        assert!(p.trusts(ip("::ffff:10.1.1.1")), "IPv4-mapped");
        assert!(!p.trusts(ip("2001:db8::1")));
        assert!(proxies(&["0.0.0.0/0"]).trusts(ip("203.0.113.9")));
    }

    #[test]
    fn bad_entries_are_refused_by_name() {
        for bad in ["10.0.0.0/33", "proxy.local", "10.0.0/8", "::/129"] {
            let err = TrustedProxies::new(&[bad.to_owned()]).unwrap_err();
            assert!(err.to_string().contains(&format!("found `{bad}`")), "{err}");
            assert!(err.to_string().starts_with("security.trusted_proxies:"));
        }
    }

    #[test]
    fn the_rightmost_untrusted_address_is_the_client() {
        let p = proxies(&["10.0.0.0/8"]);
        let ingress = ip("10.0.0.5");
        // Behind one proxy.
        assert_eq!(
            p.client(ingress, &headers(&["203.0.113.9"])),
            ip("203.0.113.9")
        );
        // A forged entry left of the real one is ignored.
        assert_eq!(
            p.client(ingress, &headers(&["1.2.3.4, 203.0.113.9"])),
            ip("203.0.113.9")
        );
        // Two trusted hops; headers split over several lines; ports.
        assert_eq!(
            p.client(
                ingress,
                &headers(&["1.2.3.4, 203.0.113.9:5000", "10.1.1.1"])
            ),
            ip("203.0.113.9")
        );
        assert_eq!(
            p.client(ingress, &headers(&["[2001:db8::7]:443"])),
            ip("2001:db8::7")
        );
        // Everything trusted: the leftmost is as far as it goes.
        assert_eq!(p.client(ingress, &headers(&["10.9.9.9"])), ip("10.9.9.9"));
        // Garbage stops the walk at the last readable hop.
        assert_eq!(
            p.client(ingress, &headers(&["203.0.113.9, junk, 10.1.1.1"])),
            ip("10.1.1.1")
        );
        // No header: the proxy itself.
        assert_eq!(p.client(ingress, &HeaderMap::new()), ingress);
    }

    #[test]
    fn an_untrusted_peer_cannot_choose_its_address() {
        let p = proxies(&["10.0.0.0/8"]);
        let direct = ip("198.51.100.3");
        assert_eq!(p.client(direct, &headers(&["203.0.113.9"])), direct);
        assert_eq!(
            TrustedProxies::default().client(direct, &headers(&["1.1.1.1"])),
            direct
        );
    }
}
