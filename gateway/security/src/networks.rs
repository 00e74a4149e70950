//! Address ranges (`10.1.2.3`, `192.168.0.0/24`, `2001:db8::/32`): where a
//! client's MLLP connections may come from.

use std::net::IpAddr;

/// One address, or a CIDR range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddressRange {
    network: IpAddr,
    prefix: u8,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not an IP address or CIDR range (e.g. 10.0.0.5 or 10.0.0.0/24)")]
pub struct AddressRangeError(pub String);

impl AddressRange {
    pub fn parse(text: &str) -> Result<AddressRange, AddressRangeError> {
        let fail = || AddressRangeError(text.chars().take(64).collect());
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let network: IpAddr = address.trim().parse().map_err(|_| fail())?;
        let bits = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => bits,
            Some(prefix) => prefix.trim().parse::<u8>().map_err(|_| fail())?,
        };
        if prefix > bits {
            return Err(fail());
        }
        Ok(AddressRange { network, prefix })
    }

    pub fn contains(&self, address: IpAddr) -> bool {
        // An IPv4 peer on a dual-stack socket arrives as ::ffff:a.b.c.d.
        let address = match address {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
            v4 => v4,
        };
        match (self.network, address) {
            (IpAddr::V4(network), IpAddr::V4(address)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(network) & mask == u32::from(address) & mask
            }
            (IpAddr::V6(network), IpAddr::V6(address)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(network) & mask == u128::from(address) & mask
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn ranges_hold_their_addresses_only() {
        let lab = AddressRange::parse("192.168.10.0/24").unwrap();
        assert!(lab.contains(ip("192.168.10.77")));
        assert!(lab.contains(ip("::ffff:192.168.10.77")));
        assert!(!lab.contains(ip("192.168.11.1")));
        let one = AddressRange::parse("10.0.0.5").unwrap();
        assert!(one.contains(ip("10.0.0.5")));
        assert!(!one.contains(ip("10.0.0.6")));
        let any = AddressRange::parse("0.0.0.0/0").unwrap();
        assert!(any.contains(ip("8.8.8.8")));
        let v6 = AddressRange::parse("2001:db8::/32").unwrap();
        assert!(v6.contains(ip("2001:db8:1::1")));
        assert!(!v6.contains(ip("2001:db9::1")));
        assert!(!v6.contains(ip("10.0.0.5")));
        for bad in ["", "10.0.0", "10.0.0.0/33", "host.example", "10.0.0.0/x"] {
            assert!(AddressRange::parse(bad).is_err(), "{bad}");
        }
    }
}
