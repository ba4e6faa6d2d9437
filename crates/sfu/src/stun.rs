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
