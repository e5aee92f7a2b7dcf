//! Who is on the other end of a request: the address a throttle counts. It is the
//! socket's peer, unless the peer is one of the deployment's trusted proxies
//! (`CLAWLINK_TRUSTED_PROXIES`, IPs or CIDRs, none by default); then it is the address
//! those proxies recorded in `X-Forwarded-For`, or in `Forwarded` (RFC 7239) when no
//! `X-Forwarded-For` was sent.
//!
//! The list is read from the right — each proxy appends the address it received the
//! request from — skipping trusted proxies; the first address that is not one of them is
//! the client. What a client writes into the header itself sits to the left of what
//! the proxies appended, so it is never reached while the proxies are honest. A hop that
//! is not an address (`unknown`, an obfuscated name) stops the walk at the last trusted
//! proxy. From a peer that is not trusted, the headers are ignored: anyone can send them.
//!
//! Knows headers (`http::HeaderMap`) but nothing about a server: each binary reads the
//! peer from its own connection info and asks [`client_ip`].

use http::HeaderMap;
use ipnet::IpNet;
use std::net::{IpAddr, Ipv4Addr};

/// The proxies whose forwarding headers are believed (`CLAWLINK_TRUSTED_PROXIES`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// Comma-separated IPs or CIDRs (the value of `CLAWLINK_TRUSTED_PROXIES`, which
    /// `config` reads); empty, none. The error says what was expected and what was found.
    pub fn parse_list(list: &str) -> Result<Self, String> {
        let mut nets = Vec::new();
        for part in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let net = part.parse::<IpNet>().map(|n| n.trunc()).or_else(|_| part.parse::<IpAddr>().map(IpNet::from));
            nets.push(net.map_err(|_| {
                format!("expected comma-separated IP addresses or CIDRs (10.0.0.0/8, fd00::/8), got {part:?}")
            })?);
        }
        Ok(Self(nets))
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|net| net.contains(&ip))
    }
}

/// The client's address: `peer` itself unless it is a trusted proxy (see the module note).
/// `None` (no connection info, as in a test driving a router in-process) reads as
/// `0.0.0.0`, whose headers are not believed.
pub fn client_ip(peer: Option<IpAddr>, headers: &HeaderMap, trusted: &TrustedProxies) -> IpAddr {
    let Some(peer) = peer.map(|p| p.to_canonical()) else { return IpAddr::V4(Ipv4Addr::UNSPECIFIED) };
    if !trusted.contains(peer) {
        return peer;
    }
    let hops = forwarded_for(headers);
    let mut nearest = peer;
    for hop in hops.iter().rev() {
        let Some(ip) = parse_hop(hop) else { return nearest };
        if !trusted.contains(ip) {
            return ip;
        }
        nearest = ip;
    }
    nearest
}

/// The hops of `X-Forwarded-For` (every such header, in order), or when there is none,
/// the `for=` values of `Forwarded`.
fn forwarded_for(headers: &HeaderMap) -> Vec<String> {
    let lines = |name: &str| -> Vec<String> {
        headers.get_all(name).iter().filter_map(|v| v.to_str().ok()).map(str::to_string).collect()
    };
    let xff = lines("x-forwarded-for");
    if !xff.is_empty() {
        return xff.iter().flat_map(|l| l.split(',')).map(|h| h.trim().to_string()).collect();
    }
    // RFC 7239 §4: `Forwarded: for=192.0.2.60;proto=http, for="[2001:db8::17]:4711"`.
    // An element without `for=` says nothing about that hop: it stops the walk.
    lines("forwarded")
        .iter()
        .flat_map(|l| l.split(','))
        .map(|element| {
            element
                .split(';')
                .filter_map(|pair| pair.split_once('='))
                .find(|(k, _)| k.trim().eq_ignore_ascii_case("for"))
                .map(|(_, v)| v.trim().trim_matches('"').to_string())
                .unwrap_or_default()
        })
        .collect()
}

/// An address as proxies write it: `192.0.2.1`, `192.0.2.1:4711`, `2001:db8::1`,
/// `[2001:db8::1]`, `[2001:db8::1]:4711`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    if let Ok(ip) = hop.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    let host = match hop.strip_prefix('[') {
        Some(rest) => rest.split_once(']')?.0,
        None => hop.rsplit_once(':').filter(|(h, port)| !h.contains(':') && port.parse::<u16>().is_ok())?.0,
    };
    host.parse::<IpAddr>().ok().map(|ip| ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn trusted(list: &str) -> TrustedProxies {
        TrustedProxies::parse_list(list).unwrap()
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_sends() {
        let h = headers(&[("x-forwarded-for", "203.0.113.9"), ("forwarded", "for=203.0.113.8")]);
        assert_eq!(client_ip(Some(ip("198.51.100.7")), &h, &TrustedProxies::default()), ip("198.51.100.7"));
        assert_eq!(client_ip(Some(ip("198.51.100.7")), &h, &trusted("10.0.0.0/8")), ip("198.51.100.7"));
        assert_eq!(client_ip(None, &h, &trusted("0.0.0.0/0")), ip("0.0.0.0"));
    }

    #[test]
    fn behind_trusted_proxies_the_rightmost_untrusted_hop_is_the_client() {
        let t = trusted("10.0.0.0/8, 192.0.2.1");
        // The client forged the first entry; the ingress appended what it saw.
        let h = headers(&[("x-forwarded-for", "1.1.1.1, 203.0.113.9"), ("x-forwarded-for", "192.0.2.1")]);
        assert_eq!(client_ip(Some(ip("10.1.2.3")), &h, &t), ip("203.0.113.9"));
        // Every hop trusted: the leftmost is as far as we can see.
        let h = headers(&[("x-forwarded-for", "10.9.9.9, 192.0.2.1")]);
        assert_eq!(client_ip(Some(ip("10.1.2.3")), &h, &t), ip("10.9.9.9"));
        // No header: the proxy itself.
        assert_eq!(client_ip(Some(ip("10.1.2.3")), &HeaderMap::new(), &t), ip("10.1.2.3"));
        // A hop that is not an address stops at the last trusted proxy.
        let h = headers(&[("x-forwarded-for", "203.0.113.9, unknown, 192.0.2.1")]);
        assert_eq!(client_ip(Some(ip("10.1.2.3")), &h, &t), ip("192.0.2.1"));
        // Ports and brackets are read; IPv4-mapped IPv6 is IPv4.
        let h = headers(&[("x-forwarded-for", "[2001:db8::5]:4711")]);
        assert_eq!(client_ip(Some(ip("::ffff:10.0.0.1")), &h, &t), ip("2001:db8::5"));
        let h = headers(&[("x-forwarded-for", "203.0.113.9:51000")]);
        assert_eq!(client_ip(Some(ip("10.0.0.1")), &h, &t), ip("203.0.113.9"));
    }

    #[test]
    fn forwarded_is_read_when_there_is_no_x_forwarded_for() {
        let t = trusted("10.0.0.0/8");
        let h = headers(&[("forwarded", r#"for=198.51.100.1, for="[2001:db8:cafe::17]:4711";proto=https"#)]);
        assert_eq!(client_ip(Some(ip("10.0.0.2")), &h, &t), ip("2001:db8:cafe::17"));
        let h = headers(&[("forwarded", "For=203.0.113.4;by=10.0.0.2")]);
        assert_eq!(client_ip(Some(ip("10.0.0.2")), &h, &t), ip("203.0.113.4"));
        // `for=_hidden` (an obfuscated node): as far as we can see is the proxy.
        let h = headers(&[("forwarded", "for=_hidden")]);
        assert_eq!(client_ip(Some(ip("10.0.0.2")), &h, &t), ip("10.0.0.2"));
        // Both sent: X-Forwarded-For wins (the header ingresses append to; a client's
        // own `Forwarded` passes through most of them untouched).
        let h = headers(&[("forwarded", "for=1.1.1.1"), ("x-forwarded-for", "203.0.113.4")]);
        assert_eq!(client_ip(Some(ip("10.0.0.2")), &h, &t), ip("203.0.113.4"));
    }

    #[test]
    fn the_list_is_checked_at_start_up() {
        assert_eq!(trusted(""), TrustedProxies::default());
        assert!(trusted("10.0.0.1/8").contains(ip("10.200.0.1")), "a host address with a prefix is its network");
        assert!(trusted("fd00::/8").contains(ip("fd12::1")));
        assert!(!trusted("fd00::/8").contains(ip("fe80::1")));
        let err = TrustedProxies::parse_list("10.0.0.0/8, ingress").unwrap_err();
        assert!(err.contains("\"ingress\""), "{err}");
    }
}
