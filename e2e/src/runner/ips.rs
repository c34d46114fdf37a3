//! Pod addresses: one loopback address per pod, from a range given on the command line.
//! Handed out round-robin (a just-released address is the last to be reused, so a stale
//! connection or cache never reaches a new pod), and only when every declared container
//! port is free on it (another e2e stack on the same machine may use nearby addresses).

use std::collections::HashMap;
use std::net::{Ipv4Addr, TcpListener};

#[derive(Debug, thiserror::Error)]
pub enum RangeError {
    #[error("pod range {0:?}: expected a.b.c.d/len inside 127.0.0.0/8 with len between 8 and 30")]
    Invalid(String),
}

#[derive(Debug)]
pub struct IpPool {
    first: u32,
    size: u32,
    next: u32,
    used: HashMap<Ipv4Addr, String>,
}

impl IpPool {
    /// `range` such as `127.42.0.0/16`; addresses ending in .0 or .255 are skipped.
    pub fn new(range: &str) -> Result<Self, RangeError> {
        let bad = || RangeError::Invalid(range.to_string());
        let (addr, len) = range.split_once('/').ok_or_else(bad)?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| bad())?;
        let len: u32 = len.parse().map_err(|_| bad())?;
        if addr.octets()[0] != 127 || !(8..=30).contains(&len) {
            return Err(bad());
        }
        let size = 1u32 << (32 - len);
        let first = u32::from(addr) & !(size - 1);
        Ok(IpPool {
            first,
            size,
            next: 1,
            used: HashMap::new(),
        })
    }

    fn usable(ip: Ipv4Addr) -> bool {
        let last = ip.octets()[3];
        last != 0 && last != 255
    }

    fn ports_free(ip: Ipv4Addr, ports: &[u16]) -> bool {
        ports.iter().all(|p| TcpListener::bind((ip, *p)).is_ok())
    }

    /// An address for pod `uid`: its `preferred` one (what its status already says, after a
    /// runner restart) when that is free, else the next free one.
    pub fn allocate(
        &mut self,
        uid: &str,
        ports: &[u16],
        preferred: Option<Ipv4Addr>,
    ) -> Option<Ipv4Addr> {
        if let Some((ip, _)) = self.used.iter().find(|(_, u)| u.as_str() == uid) {
            return Some(*ip);
        }
        if let Some(ip) = preferred
            && self.contains(ip)
            && Self::usable(ip)
            && !self.used.contains_key(&ip)
            && Self::ports_free(ip, ports)
        {
            self.used.insert(ip, uid.to_string());
            return Some(ip);
        }
        for _ in 0..self.size {
            let offset = self.next % self.size;
            self.next = self.next.wrapping_add(1);
            let ip = Ipv4Addr::from(self.first + offset);
            if Self::usable(ip) && !self.used.contains_key(&ip) && Self::ports_free(ip, ports) {
                self.used.insert(ip, uid.to_string());
                return Some(ip);
            }
        }
        None
    }

    pub fn release(&mut self, ip: Ipv4Addr) {
        self.used.remove(&ip);
    }

    fn contains(&self, ip: Ipv4Addr) -> bool {
        let n = u32::from(ip);
        n >= self.first && n < self.first + self.size
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_robin_skips_used_and_network_addresses() {
        let mut pool = IpPool::new("127.201.0.0/24").unwrap();
        let a = pool.allocate("a", &[], None).unwrap();
        let b = pool.allocate("b", &[], None).unwrap();
        assert_eq!(a, Ipv4Addr::new(127, 201, 0, 1));
        assert_eq!(b, Ipv4Addr::new(127, 201, 0, 2));
        assert_eq!(
            pool.allocate("a", &[], None),
            Some(a),
            "same pod, same address"
        );
        pool.release(a);
        assert_eq!(
            pool.allocate("c", &[], None).unwrap(),
            Ipv4Addr::new(127, 201, 0, 3),
            "a released address is not reused first"
        );
        assert_eq!(
            pool.allocate("d", &[], Some(a)),
            Some(a),
            "the preferred address when free"
        );
        assert_eq!(
            pool.allocate("e", &[], Some(b)).unwrap(),
            Ipv4Addr::new(127, 201, 0, 4),
            "not when taken"
        );
    }

    #[test]
    fn busy_ports_skip_an_address() {
        let mut pool = IpPool::new("127.202.0.0/24").unwrap();
        let held = TcpListener::bind((Ipv4Addr::new(127, 202, 0, 1), 0)).unwrap();
        let port = held.local_addr().unwrap().port();
        assert_eq!(
            pool.allocate("a", &[port], None).unwrap(),
            Ipv4Addr::new(127, 202, 0, 2)
        );
    }

    #[test]
    fn ranges_outside_loopback_are_refused() {
        assert!(IpPool::new("10.0.0.0/16").is_err());
        assert!(IpPool::new("127.0.0.0/31").is_err());
        assert!(IpPool::new("127.1.2.3").is_err());
    }
}
