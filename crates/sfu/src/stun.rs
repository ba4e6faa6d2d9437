//! Just enough STUN parsing to demultiplex one UDP port among many peers: a datagram from an
//! unknown address must be a STUN Binding request whose USERNAME (`<local ufrag>:<remote ufrag>`)
//! names the session (RFC 8445 §7.2.2, as pion's UDPMux does).

const MAGIC_COOKIE: [u8; 4] = [0x21, 0x12, 0xa4, 0x42];
const ATTR_USERNAME: u16 = 0x0006;

/// True if `buf` looks like a STUN message (RFC 7983 demultiplexing plus the magic cookie).
pub fn is_stun(buf: &[u8]) -> bool {
    buf.len() >= 20 && buf[0] < 2 && buf[4..8] == MAGIC_COOKIE
}

/// The local ufrag from the USERNAME attribute of a STUN message, if any.
pub fn local_ufrag(buf: &[u8]) -> Option<&str> {
    if !is_stun(buf) {
        return None;
    }
    let len = u16::from_be_bytes([buf[2], buf[3]]) as usize;
    let mut attrs = buf.get(20..20 + len)?;
    while attrs.len() >= 4 {
        let ty = u16::from_be_bytes([attrs[0], attrs[1]]);
        let alen = u16::from_be_bytes([attrs[2], attrs[3]]) as usize;
        let value = attrs.get(4..4 + alen)?;
        if ty == ATTR_USERNAME {
            let user = std::str::from_utf8(value).ok()?;
            return user.split(':').next().filter(|u| !u.is_empty());
        }
        let padded = 4 + alen.div_ceil(4) * 4;
        attrs = attrs.get(padded..)?;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding(user: &[u8]) -> Vec<u8> {
        let mut attrs = vec![0x80, 0x22, 0, 3, b'a', b'b', b'c', 0]; // SOFTWARE, padded
        attrs.extend_from_slice(&(ATTR_USERNAME).to_be_bytes());
        attrs.extend_from_slice(&(user.len() as u16).to_be_bytes());
        attrs.extend_from_slice(user);
        while attrs.len() % 4 != 0 {
            attrs.push(0);
        }
        let mut m = vec![0x00, 0x01];
        m.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
        m.extend_from_slice(&MAGIC_COOKIE);
        m.extend_from_slice(&[7; 12]);
        m.extend(attrs);
        m
    }

    #[test]
    fn finds_the_local_ufrag_and_rejects_garbage() {
        assert_eq!(local_ufrag(&binding(b"srvUfrag:cli")), Some("srvUfrag"));
        assert_eq!(local_ufrag(&binding(b":cli")), None);
        assert_eq!(local_ufrag(&binding(&[0xff, 0xfe])), None);
        let mut truncated = binding(b"srvUfrag:cli");
        truncated.truncate(30);
        assert_eq!(local_ufrag(&truncated), None);
        assert!(!is_stun(&[0x80; 40]), "RTP is not STUN");
        assert!(!is_stun(&[0x16; 40]), "DTLS is not STUN");
        assert_eq!(local_ufrag(&[]), None);
    }
}

const ATTR_MAPPED_ADDRESS: u16 = 0x0001;
const ATTR_XOR_MAPPED_ADDRESS: u16 = 0x0020;

/// A fresh random transaction ID.
pub fn new_txid() -> [u8; 12] {
    let mut t = [0u8; 12];
    getrandom::fill(&mut t).unwrap_or_default();
    t
}

/// A STUN Binding request (RFC 5389) without attributes, for public-address discovery.
pub fn binding_request(txid: [u8; 12]) -> [u8; 20] {
    let mut b = [0u8; 20];
    b[1] = 0x01; // Binding request; length 0
    b[4..8].copy_from_slice(&MAGIC_COOKIE);
    b[8..20].copy_from_slice(&txid);
    b
}

/// The reflexive address of a Binding success response to `txid`: XOR-MAPPED-ADDRESS, or the
/// legacy MAPPED-ADDRESS of old servers.
pub fn mapped_address(buf: &[u8], txid: [u8; 12]) -> Option<std::net::SocketAddr> {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
    if !is_stun(buf) || buf[0..2] != [0x01, 0x01] || buf[8..20] != txid {
        return None;
    }
    let len = u16::from_be_bytes([buf[2], buf[3]]) as usize;
    let mut attrs = buf.get(20..20 + len)?;
    let mut plain = None;
    while attrs.len() >= 4 {
        let ty = u16::from_be_bytes([attrs[0], attrs[1]]);
        let alen = u16::from_be_bytes([attrs[2], attrs[3]]) as usize;
        let v = attrs.get(4..4 + alen)?;
        if (ty == ATTR_XOR_MAPPED_ADDRESS || ty == ATTR_MAPPED_ADDRESS) && v.len() >= 8 {
            let xor = ty == ATTR_XOR_MAPPED_ADDRESS;
            let mut port = u16::from_be_bytes([v[2], v[3]]);
            if xor {
                port ^= 0x2112;
            }
            let ip = match (v[1], v.len()) {
                (0x01, 8) => {
                    let mut o = [v[4], v[5], v[6], v[7]];
                    if xor {
                        for (i, b) in o.iter_mut().enumerate() {
                            *b ^= MAGIC_COOKIE[i];
                        }
                    }
                    IpAddr::V4(Ipv4Addr::from(o))
                }
                (0x02, 20) => {
                    let mut o = [0u8; 16];
                    o.copy_from_slice(&v[4..20]);
                    if xor {
                        let key: Vec<u8> =
                            MAGIC_COOKIE.iter().chain(txid.iter()).copied().collect();
                        for (b, k) in o.iter_mut().zip(key) {
                            *b ^= k;
                        }
                    }
                    IpAddr::V6(Ipv6Addr::from(o))
                }
                _ => return None,
            };
            let addr = SocketAddr::new(ip, port);
            if xor {
                return Some(addr);
            }
            plain = Some(addr);
        }
        let padded = 4 + alen.div_ceil(4) * 4;
        attrs = attrs.get(padded..).unwrap_or(&[]);
    }
    plain
}

#[cfg(test)]
mod discovery_tests {
    use super::*;

    /// The XOR-MAPPED-ADDRESS of RFC 5769 §2.2's IPv4 sample response (192.0.2.1:32853), with
    /// the sample's SOFTWARE and FINGERPRINT attributes left out.
    #[test]
    fn rfc5769_ipv4_response() {
        let txid = [
            0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae,
        ];
        let mut msg = vec![0x01, 0x01, 0x00, 0x0c, 0x21, 0x12, 0xa4, 0x42];
        msg.extend_from_slice(&txid);
        msg.extend_from_slice(&[
            0x00, 0x20, 0x00, 0x08, 0x00, 0x01, 0xa1, 0x47, 0xe1, 0x12, 0xa6, 0x43,
        ]);
        assert_eq!(
            mapped_address(&msg, txid),
            Some("192.0.2.1:32853".parse().unwrap())
        );
        // Another transaction's response, a request, and truncations are ignored.
        assert_eq!(mapped_address(&msg, [0; 12]), None);
        let req = binding_request(txid);
        assert_eq!(mapped_address(&req, txid), None);
        for n in 0..msg.len() {
            let _ = mapped_address(&msg[..n], txid);
        }
    }
}
