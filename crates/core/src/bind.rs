//! Which local address a socket of the process uses (`--bind`).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The local addresses sockets are bound to, one per address family.
///
/// When `strict` (`--bind` given) a family without an address is not used at all, and nothing
/// ever falls back to an unbound socket: a bind to a vanished address fails. When not strict
/// (an IP in `--listen`, or nothing), a family without an address is left to the kernel.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LocalBind {
    /// IPv4 source address.
    pub v4: Option<Ipv4Addr>,
    /// IPv6 source address.
    pub v6: Option<Ipv6Addr>,
    /// Refuse families without an address.
    pub strict: bool,
}

/// A socket toward a family the binding does not allow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FamilyNotBound {
    /// Whether the refused destination is IPv6.
    pub ipv6: bool,
}

impl fmt::Display for FamilyNotBound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let fam = if self.ipv6 { "IPv6" } else { "IPv4" };
        write!(f, "no --bind address for {fam}: {fam} is not used")
    }
}

impl std::error::Error for FamilyNotBound {}

impl From<FamilyNotBound> for std::io::Error {
    fn from(e: FamilyNotBound) -> Self {
        std::io::Error::new(std::io::ErrorKind::AddrNotAvailable, e)
    }
}

impl LocalBind {
    /// Strict binding to these addresses (`--bind`); `None` if two share a family or one is
    /// unspecified (0.0.0.0 or ::).
    pub fn strict(ips: &[IpAddr]) -> Option<LocalBind> {
        let mut b = LocalBind {
            strict: true,
            ..LocalBind::default()
        };
        for ip in ips {
            if ip.is_unspecified() {
                return None;
            }
            match ip {
                IpAddr::V4(v4) if b.v4.is_none() => b.v4 = Some(*v4),
                IpAddr::V6(v6) if b.v6.is_none() => b.v6 = Some(*v6),
                _ => return None,
            }
        }
        Some(b)
    }

    /// The loose binding of an address given to listen on: its family's sockets use it, the
    /// other family is left to the kernel.
    pub fn loose(ip: IpAddr) -> LocalBind {
        match ip {
            _ if ip.is_unspecified() => LocalBind::default(),
            IpAddr::V4(v4) => LocalBind {
                v4: Some(v4),
                ..LocalBind::default()
            },
            IpAddr::V6(v6) => LocalBind {
                v6: Some(v6),
                ..LocalBind::default()
            },
        }
    }

    /// Whether any address is set.
    pub fn is_set(&self) -> bool {
        self.v4.is_some() || self.v6.is_some()
    }

    /// The source address for a socket toward `dest`: `Ok(Some(ip))` to bind to, `Ok(None)` to
    /// leave to the kernel, or an error when the binding forbids the family.
    pub fn source_for(&self, dest: SocketAddr) -> Result<Option<IpAddr>, FamilyNotBound> {
        let ip = match dest {
            SocketAddr::V4(_) => self.v4.map(IpAddr::V4),
            SocketAddr::V6(_) => self.v6.map(IpAddr::V6),
        };
        match ip {
            None if self.strict => Err(FamilyNotBound {
                ipv6: dest.is_ipv6(),
            }),
            ip => Ok(ip),
        }
    }

    /// Whether sockets toward `dest` may be opened.
    pub fn allows(&self, dest: SocketAddr) -> bool {
        self.source_for(dest).is_ok()
    }

    /// The address to listen on given the one asked for (`--listen`): its IP if specific, else
    /// the IPv4 bound address, else the IPv6 one, with the asked port.
    pub fn listen_addr(&self, asked: SocketAddr) -> SocketAddr {
        if !asked.ip().is_unspecified() {
            return asked;
        }
        match (self.v4, self.v6) {
            (Some(v4), _) => SocketAddr::new(IpAddr::V4(v4), asked.port()),
            (None, Some(v6)) => SocketAddr::new(IpAddr::V6(v6), asked.port()),
            (None, None) => asked,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_refuses_the_unbound_family() {
        let b = LocalBind::strict(&["127.0.0.5".parse().unwrap()]).unwrap();
        let v4: SocketAddr = "127.0.0.2:1".parse().unwrap();
        let v6: SocketAddr = "[::1]:1".parse().unwrap();
        assert_eq!(b.source_for(v4), Ok(Some("127.0.0.5".parse().unwrap())));
        assert!(b.source_for(v6).is_err());
        assert_eq!(
            b.listen_addr("0.0.0.0:6881".parse().unwrap()),
            "127.0.0.5:6881".parse().unwrap()
        );
    }

    #[test]
    fn strict_rejects_two_of_a_family_and_unspecified() {
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        assert!(LocalBind::strict(&[a, b]).is_none());
        assert!(LocalBind::strict(&["0.0.0.0".parse().unwrap()]).is_none());
        assert!(LocalBind::strict(&[a, "::1".parse().unwrap()]).is_some());
    }

    #[test]
    fn loose_leaves_the_other_family_alone() {
        let b = LocalBind::loose("127.0.0.1".parse().unwrap());
        assert_eq!(b.source_for("[::1]:1".parse().unwrap()), Ok(None));
        assert_eq!(
            LocalBind::loose("0.0.0.0".parse().unwrap()),
            LocalBind::default()
        );
    }
}
