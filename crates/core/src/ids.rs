//! Random identifiers and secrets in the formats the Go services use.

use base64::Engine;
use rand::RngCore;

/// Mattermost's `NewID`: a random UUIDv4 in base32 with the alphabet below, truncated to 26 chars.
pub fn new_id() -> String {
    const ALPHABET: &[u8; 32] = b"ybndrfg8ejkmcpqxot1uwisza345h769";
    let mut b = [0u8; 16];
    rand::rng().fill_bytes(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40; // version 4
    b[8] = (b[8] & 0x3f) | 0x80; // RFC 4122 variant
    let mut out = String::with_capacity(26);
    let (mut acc, mut bits) = (0u32, 0u32);
    for byte in b {
        acc = (acc << 8) | u32::from(byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((acc >> bits) & 31) as usize] as char);
        }
    }
    // 128 bits leave 3 bits, padded with zeros into a 26th character.
    out.push(ALPHABET[((acc << (5 - bits)) & 31) as usize] as char);
    out
}

/// rtcd's `NewSecureString`: `1 + len*4/3` random bytes, base64url without padding, first `len` chars.
pub fn secure_string(len: usize) -> String {
    let mut data = vec![0u8; 1 + len * 4 / 3];
    rand::rng().fill_bytes(&mut data);
    let mut s = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data);
    s.truncate(len);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_go_shape() {
        let id = new_id();
        assert_eq!(id.len(), 26);
        assert!(
            id.bytes()
                .all(|c| b"ybndrfg8ejkmcpqxot1uwisza345h769".contains(&c))
        );
        assert_ne!(new_id(), new_id());
        for len in [0, 1, 31, 32, 33, 100] {
            let s = secure_string(len);
            assert_eq!(s.len(), len);
            assert!(
                s.bytes()
                    .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
            );
        }
    }
}
