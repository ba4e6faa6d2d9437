//! Sans-IO SRTP for the voice fast path: [`SrtpSender`] protects outgoing RTP, [`SrtpReceiver`]
//! opens incoming RTP, [`ReplayWindow`] gives a received packet its index and refuses
//! replays (RFC 3711 3.3), and [`SrtcpSender`] protects the RTCP feedback the fast path writes
//! on the voice it opens (RFC 3711 3.4, RFC 7714 9). All other RTCP is str0m's.
//!
//! The fast path encrypts forwarded Opus, and decrypts the Opus it forwards, itself because
//! str0m's per-session passes cost more than the packet; every primitive still comes from
//! str0m's own crypto provider.

use std::fmt;

use str0m::crypto::dtls::SrtpProfile;
use str0m::crypto::{
    AeadAes128GcmCipher, AeadAes256GcmCipher, Aes128CmSha1_80Cipher, CryptoProvider,
    Sha1HmacProvider, SrtpProvider,
};

/// RFC 3711 4.3.1 key derivation labels: SRTP's, and SRTCP's ([`SRTCP_LABELS`]).
const LABEL_CIPHER_KEY: u8 = 0x00;
const LABEL_AUTH_KEY: u8 = 0x01;
const LABEL_SALT: u8 = 0x02;

/// The labels of one direction's session keys: cipher key, authentication key, salt.
#[derive(Clone, Copy)]
struct Labels {
    cipher: u8,
    auth: u8,
    salt: u8,
}

const SRTP_LABELS: Labels = Labels {
    cipher: LABEL_CIPHER_KEY,
    auth: LABEL_AUTH_KEY,
    salt: LABEL_SALT,
};

const SRTCP_LABELS: Labels = Labels {
    cipher: 0x03,
    auth: 0x04,
    salt: 0x05,
};

/// The clear part of an SRTCP packet: the first RTCP header and its sender's SSRC.
const SRTCP_HEADER_LEN: usize = 8;

/// The E flag and 31-bit SRTCP index after the encrypted part (RFC 3711 3.4).
const SRTCP_INDEX_LEN: usize = 4;

const CM_KEY_LEN: usize = 16;
const CM_SALT_LEN: usize = 14;
const CM_AUTH_KEY_LEN: usize = 20;
const CM_TAG_LEN: usize = 10;

const GCM128_KEY_LEN: usize = 16;
const GCM256_KEY_LEN: usize = 32;
const GCM_SALT_LEN: usize = 12;
const GCM_TAG_LEN: usize = 16;

/// str0m gives the counter-mode cipher a block minus one of room past the input, as some
/// backends need; doing the same keeps any backend from writing out of bounds. The slack is cut
/// off afterwards.
const CTR_SLACK: usize = 15;

/// Anything shorter cannot be an RTP header, and the GCM backend asserts on AAD under 12 bytes.
const MIN_RTP_HEADER_LEN: usize = 12;

/// The SRTP packet index is 48 bits: ROC (32) and sequence number (16).
const INDEX_MASK: u64 = (1 << 48) - 1;

/// Errors building a sender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SrtpError {
    /// The DTLS handshake negotiated a profile this sender cannot protect with.
    UnsupportedProfile(String),
    /// The keying material does not have the length the profile needs.
    BadKeyingMaterial { expected: usize, got: usize },
}

impl fmt::Display for SrtpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SrtpError::UnsupportedProfile(profile) => {
                write!(f, "unsupported SRTP profile {profile}")
            }
            SrtpError::BadKeyingMaterial { expected, got } => write!(
                f,
                "DTLS-SRTP keying material is {got} bytes, the profile needs {expected}"
            ),
        }
    }
}

impl std::error::Error for SrtpError {}

/// Protects outgoing RTP with the session keys of one direction of one DTLS-SRTP association.
pub struct SrtpSender {
    transform: Transform,
}

/// Opens (authenticates and decrypts) incoming RTP with the session keys of the other direction.
/// Which packet index a packet has, and whether it was seen before, is [`ReplayWindow`]'s.
pub struct SrtpReceiver {
    transform: Transform,
}

enum Transform {
    AesCm {
        cipher: Box<dyn Aes128CmSha1_80Cipher>,
        salt: [u8; CM_SALT_LEN],
        auth_key: [u8; CM_AUTH_KEY_LEN],
        hmac: &'static dyn Sha1HmacProvider,
    },
    Gcm128 {
        cipher: Box<dyn AeadAes128GcmCipher>,
        salt: [u8; GCM_SALT_LEN],
    },
    Gcm256 {
        cipher: Box<dyn AeadAes256GcmCipher>,
        salt: [u8; GCM_SALT_LEN],
    },
}

impl fmt::Debug for SrtpSender {
    // Never print key material.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SrtpSender")
            .field("profile", &self.transform.profile())
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for SrtpReceiver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SrtpReceiver")
            .field("profile", &self.transform.profile())
            .finish_non_exhaustive()
    }
}

impl SrtpSender {
    /// `material` is the DTLS-SRTP exporter output (RFC 5764 4.2: client_write_key |
    /// server_write_key | client_write_salt | server_write_salt); `client` says this end is the
    /// DTLS client, so it sends with the client half.
    pub fn new(
        crypto: &CryptoProvider,
        profile: SrtpProfile,
        material: &[u8],
        client: bool,
    ) -> Result<SrtpSender, SrtpError> {
        Ok(SrtpSender {
            transform: Transform::from_material(
                crypto,
                profile,
                material,
                client,
                true,
                SRTP_LABELS,
            )?,
        })
    }

    /// Bytes protect_rtp appends after the payload (10 for AES-CM-HMAC-SHA1-80, 16 for the GCM
    /// profiles).
    pub fn overhead(&self) -> usize {
        match self.transform {
            Transform::AesCm { .. } => CM_TAG_LEN,
            Transform::Gcm128 { .. } | Transform::Gcm256 { .. } => GCM_TAG_LEN,
        }
    }

    /// Encrypts the plain RTP packet `plain` (its first `header_len` bytes are the RTP header
    /// incl. CSRCs and extensions, left in clear) and appends the SRTP packet to `out` (out is
    /// cleared first; reuse its capacity; no other allocation per call). `index` is the 48-bit
    /// SRTP packet index, i.e. (ROC << 16) | seq. `ssrc` is the header's SSRC.
    ///
    /// `out` is left empty, rather than panicking in the forwarding loop, when `header_len` is
    /// under 12 or past the end of `plain`, or when the crypto backend reports an error: such a
    /// packet must not be sent.
    pub fn protect_rtp(
        &mut self,
        plain: &[u8],
        header_len: usize,
        ssrc: u32,
        index: u64,
        out: &mut Vec<u8>,
    ) {
        out.clear();
        if header_len < MIN_RTP_HEADER_LEN || header_len > plain.len() {
            return;
        }
        let index = index & INDEX_MASK;
        let (header, payload) = plain.split_at(header_len);
        let protected = match &mut self.transform {
            Transform::AesCm {
                cipher,
                salt,
                auth_key,
                hmac,
            } => {
                let iv = aes_cm_iv(salt, ssrc, index);
                let encrypted = cm_encrypt(cipher.as_mut(), &iv, header, payload, out);
                if encrypted {
                    let roc = ((index >> 16) as u32).to_be_bytes();
                    let tag = hmac.sha1_hmac(auth_key, &[out.as_slice(), &roc]);
                    out.extend_from_slice(&tag[..CM_TAG_LEN]);
                }
                encrypted
            }
            Transform::Gcm128 { cipher, salt } => gcm_seal(out, header, payload.len(), &[], |o| {
                cipher.encrypt(&gcm_iv(salt, ssrc, index), header, payload, o)
            }),
            Transform::Gcm256 { cipher, salt } => gcm_seal(out, header, payload.len(), &[], |o| {
                cipher.encrypt(&gcm_iv(salt, ssrc, index), header, payload, o)
            }),
        };
        if !protected {
            out.clear();
        }
    }

    #[cfg(test)]
    fn from_master(
        crypto: &CryptoProvider,
        profile: SrtpProfile,
        master_key: &[u8],
        master_salt: &[u8],
    ) -> Result<SrtpSender, SrtpError> {
        Transform::from_master(crypto, profile, master_key, master_salt, true, SRTP_LABELS)
            .map(|transform| SrtpSender { transform })
    }

    // Session-key constructors, so the RFC vectors that start from session keys can be checked
    // without a KDF in between.

    #[cfg(test)]
    fn aes_cm(
        crypto: &CryptoProvider,
        key: [u8; CM_KEY_LEN],
        salt: [u8; CM_SALT_LEN],
        auth_key: [u8; CM_AUTH_KEY_LEN],
    ) -> SrtpSender {
        SrtpSender {
            transform: Transform::aes_cm(crypto, key, salt, auth_key, true),
        }
    }

    #[cfg(test)]
    fn gcm128(
        crypto: &CryptoProvider,
        key: [u8; GCM128_KEY_LEN],
        salt: [u8; GCM_SALT_LEN],
    ) -> SrtpSender {
        SrtpSender {
            transform: Transform::gcm128(crypto, key, salt, true),
        }
    }

    #[cfg(test)]
    fn gcm256(
        crypto: &CryptoProvider,
        key: [u8; GCM256_KEY_LEN],
        salt: [u8; GCM_SALT_LEN],
    ) -> SrtpSender {
        SrtpSender {
            transform: Transform::gcm256(crypto, key, salt, true),
        }
    }
}

impl SrtpReceiver {
    /// `material` as for [`SrtpSender::new`]; `client` says this end is the DTLS client, so the
    /// peer sends with the server half.
    pub fn new(
        crypto: &CryptoProvider,
        profile: SrtpProfile,
        material: &[u8],
        client: bool,
    ) -> Result<SrtpReceiver, SrtpError> {
        Ok(SrtpReceiver {
            transform: Transform::from_material(
                crypto,
                profile,
                material,
                !client,
                false,
                SRTP_LABELS,
            )?,
        })
    }

    /// Authenticates the SRTP packet `packet` (its first `header_len` bytes are the clear RTP
    /// header, then the encrypted payload and the tag) with rollover counter `roc`, and writes
    /// its plain payload (padding included) into `out` (cleared first; its capacity is reused).
    /// The SSRC and sequence number are the header's own. `false`, with `out` empty, when the
    /// packet is too short to hold the header and tag or does not authenticate: a forged or
    /// corrupted packet, or one of another rollover counter.
    pub fn unprotect_rtp(
        &mut self,
        packet: &[u8],
        header_len: usize,
        roc: u32,
        out: &mut Vec<u8>,
    ) -> bool {
        out.clear();
        if header_len < MIN_RTP_HEADER_LEN || header_len > packet.len() {
            return false;
        }
        let ssrc = u32::from_be_bytes([packet[8], packet[9], packet[10], packet[11]]);
        let index = u64::from(roc) << 16 | u64::from(u16::from_be_bytes([packet[2], packet[3]]));
        let opened = match &mut self.transform {
            Transform::AesCm {
                cipher,
                salt,
                auth_key,
                hmac,
            } => {
                let Some(body) = packet
                    .len()
                    .checked_sub(CM_TAG_LEN)
                    .filter(|b| *b >= header_len)
                else {
                    return false;
                };
                let tag = hmac.sha1_hmac(auth_key, &[&packet[..body], &roc.to_be_bytes()]);
                if !tags_equal(&tag[..CM_TAG_LEN], &packet[body..]) {
                    return false;
                }
                let encrypted = &packet[header_len..body];
                out.resize(encrypted.len() + CTR_SLACK, 0);
                let iv = aes_cm_iv(salt, ssrc, index);
                let ok = encrypted.is_empty() || cipher.decrypt(&iv, encrypted, out).is_ok();
                out.truncate(encrypted.len());
                ok
            }
            Transform::Gcm128 { cipher, salt } => gcm_open(
                packet,
                header_len,
                gcm_iv(salt, ssrc, index),
                out,
                |iv, a, i, o| cipher.decrypt(iv, a, i, o),
            ),
            Transform::Gcm256 { cipher, salt } => gcm_open(
                packet,
                header_len,
                gcm_iv(salt, ssrc, index),
                out,
                |iv, a, i, o| cipher.decrypt(iv, a, i, o),
            ),
        };
        if !opened {
            out.clear();
        }
        opened
    }
}

/// Protects the RTCP the fast path sends on the voice it opens (receiver reports and
/// transport-wide feedback) with the SRTCP session keys of one direction (RFC 3711 3.4,
/// RFC 7714 9), under an SRTCP index of its own.
///
/// The index counts per sender SSRC, and the AEAD profiles' nonce is made of the two: the
/// packets must carry a sender SSRC that str0m never sends RTCP under, or a nonce would repeat.
pub struct SrtcpSender {
    transform: Transform,
    /// The next SRTCP index, 31 bits.
    index: u32,
}

impl fmt::Debug for SrtcpSender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SrtcpSender")
            .field("profile", &self.transform.profile())
            .field("index", &self.index)
            .finish_non_exhaustive()
    }
}

impl SrtcpSender {
    /// `material` and `client` as for [`SrtpSender::new`].
    pub fn new(
        crypto: &CryptoProvider,
        profile: SrtpProfile,
        material: &[u8],
        client: bool,
    ) -> Result<SrtcpSender, SrtpError> {
        Ok(SrtcpSender {
            transform: Transform::from_material(
                crypto,
                profile,
                material,
                client,
                true,
                SRTCP_LABELS,
            )?,
            index: 0,
        })
    }

    /// Encrypts the plain compound RTCP packet `plain` as the next SRTCP index and writes the
    /// SRTCP datagram into `out` (cleared first; its capacity is reused). The first packet's
    /// sender SSRC (bytes 4..8) is the one the index counts for. `out` is left empty when
    /// `plain` is shorter than one RTCP header or the backend fails: nothing is to be sent.
    pub fn protect_rtcp(&mut self, plain: &[u8], out: &mut Vec<u8>) {
        out.clear();
        if plain.len() < SRTCP_HEADER_LEN {
            return;
        }
        let index = self.index;
        // RFC 3711 3.4: the index starts at 0 and counts modulo 2^31.
        self.index = (index + 1) & 0x7fff_ffff;
        // The E flag: always encrypted.
        let e_index = (0x8000_0000 | index).to_be_bytes();
        let ssrc = u32::from_be_bytes([plain[4], plain[5], plain[6], plain[7]]);
        let (header, body) = plain.split_at(SRTCP_HEADER_LEN);
        let protected = match &mut self.transform {
            Transform::AesCm {
                cipher,
                salt,
                auth_key,
                hmac,
            } => {
                // header | encrypted body | E+index | tag over all before it.
                let iv = aes_cm_iv(salt, ssrc, u64::from(index));
                let encrypted = cm_encrypt(cipher.as_mut(), &iv, header, body, out);
                if encrypted {
                    out.extend_from_slice(&e_index);
                    let tag = hmac.sha1_hmac(auth_key, &[out.as_slice()]);
                    out.extend_from_slice(&tag[..CM_TAG_LEN]);
                }
                encrypted
            }
            // header | encrypted body and tag | E+index.
            Transform::Gcm128 { cipher, salt } => {
                gcm_seal(out, header, body.len(), &e_index, |o| {
                    let (iv, aad) = gcm_rtcp_iv_aad(salt, ssrc, index, header, e_index);
                    cipher.encrypt(&iv, &aad, body, o)
                })
            }
            Transform::Gcm256 { cipher, salt } => {
                gcm_seal(out, header, body.len(), &e_index, |o| {
                    let (iv, aad) = gcm_rtcp_iv_aad(salt, ssrc, index, header, e_index);
                    cipher.encrypt(&iv, &aad, body, o)
                })
            }
        };
        if !protected {
            out.clear();
        }
    }

    #[cfg(test)]
    fn gcm128(
        crypto: &CryptoProvider,
        key: [u8; GCM128_KEY_LEN],
        salt: [u8; GCM_SALT_LEN],
        index: u32,
    ) -> SrtcpSender {
        SrtcpSender {
            transform: Transform::gcm128(crypto, key, salt, true),
            index,
        }
    }
}

/// AES-CM's encryption: `header` in clear, then `body` encrypted (out is left that long). The
/// backend gets [`CTR_SLACK`] bytes of room past the input.
fn cm_encrypt(
    cipher: &mut dyn Aes128CmSha1_80Cipher,
    iv: &[u8; 16],
    header: &[u8],
    body: &[u8],
    out: &mut Vec<u8>,
) -> bool {
    let len = header.len() + body.len();
    out.extend_from_slice(header);
    out.resize(len + CTR_SLACK, 0);
    // An empty payload has nothing to XOR, and a backend may reject the empty call.
    let encrypted = body.is_empty() || cipher.encrypt(iv, body, &mut out[header.len()..]).is_ok();
    out.truncate(len);
    encrypted
}

/// The AEAD profiles' sealing: `header` in clear, then the `len` bytes `encrypt` writes
/// encrypted and its tag, then `trailer` (SRTCP's E flag and index) in clear.
fn gcm_seal(
    out: &mut Vec<u8>,
    header: &[u8],
    len: usize,
    trailer: &[u8],
    encrypt: impl FnOnce(&mut [u8]) -> Result<(), str0m::crypto::CryptoError>,
) -> bool {
    out.extend_from_slice(header);
    out.resize(header.len() + len + GCM_TAG_LEN, 0);
    let sealed = encrypt(&mut out[header.len()..]).is_ok();
    out.extend_from_slice(trailer);
    sealed
}

/// RFC 7714 9.1: IV = (0x0000 || SSRC || 0x0000 || 0 || SRTCP index) XOR salt, and the
/// associated data is the clear header followed by the E flag and index.
fn gcm_rtcp_iv_aad(
    salt: &[u8; GCM_SALT_LEN],
    ssrc: u32,
    index: u32,
    header: &[u8],
    e_index: [u8; SRTCP_INDEX_LEN],
) -> ([u8; GCM_SALT_LEN], [u8; SRTCP_HEADER_LEN + SRTCP_INDEX_LEN]) {
    let mut iv = [0u8; GCM_SALT_LEN];
    iv[2..6].copy_from_slice(&ssrc.to_be_bytes());
    iv[8..].copy_from_slice(&(index & 0x7fff_ffff).to_be_bytes());
    for (b, s) in iv.iter_mut().zip(salt) {
        *b ^= s;
    }
    let mut aad = [0u8; SRTCP_HEADER_LEN + SRTCP_INDEX_LEN];
    aad[..SRTCP_HEADER_LEN].copy_from_slice(header);
    aad[SRTCP_HEADER_LEN..].copy_from_slice(&e_index);
    (iv, aad)
}

/// The AEAD profiles' opening: the header is the associated data, the rest ciphertext and tag.
fn gcm_open(
    packet: &[u8],
    header_len: usize,
    iv: [u8; GCM_SALT_LEN],
    out: &mut Vec<u8>,
    decrypt: impl FnOnce(
        &[u8; GCM_SALT_LEN],
        &[&[u8]],
        &[u8],
        &mut [u8],
    ) -> Result<usize, str0m::crypto::CryptoError>,
) -> bool {
    if packet.len() - header_len < GCM_TAG_LEN {
        return false;
    }
    let (header, input) = packet.split_at(header_len);
    out.resize(input.len(), 0);
    decrypt(&iv, &[header], input, out)
        .map(|n| out.truncate(n))
        .is_ok()
}

/// How many packet indices below the highest one received a [`ReplayWindow`] remembers, as
/// libsrtp's default window does; anything older is refused.
pub const REPLAY_WINDOW: u64 = 128;

/// One received SRTP stream's packet index and replay list (RFC 3711 3.3.1 and 3.3.2).
///
/// The index of a packet is guessed from its 16-bit sequence number and the highest index
/// received ([`ReplayWindow::index`]); a packet is new if its index is above that or within the
/// window and not received yet ([`ReplayWindow::is_new`]); only an authenticated packet is
/// recorded ([`ReplayWindow::accept`]), so that forged ones cannot move the window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayWindow {
    /// The highest index received.
    max: u64,
    /// Bit `i`: index `max - i` was received.
    seen: u128,
}

impl ReplayWindow {
    /// A window that counts every index up to `index` (inclusive) as received: a stream picked
    /// up mid-way, whose earlier packets were handled elsewhere.
    pub fn after(index: u64) -> ReplayWindow {
        ReplayWindow {
            max: index & INDEX_MASK,
            seen: u128::MAX,
        }
    }

    /// The highest index received.
    pub fn max(&self) -> u64 {
        self.max
    }

    /// The packet index of sequence number `seq` (RFC 3711 3.3.1): the one of ROC - 1, ROC or
    /// ROC + 1 closest to the highest index received. `None` for a packet from before the
    /// stream's first rollover counter or past the last one.
    pub fn index(&self, seq: u16) -> Option<u64> {
        let roc = self.max >> 16;
        let s_l = self.max as u16;
        let v = if s_l < 0x8000 {
            if seq > s_l && seq - s_l > 0x8000 {
                roc.checked_sub(1)?
            } else {
                roc
            }
        } else if seq < s_l - 0x8000 {
            roc + 1
        } else {
            roc
        };
        (v <= u64::from(u32::MAX)).then_some((v << 16) | u64::from(seq))
    }

    /// Whether `index` was not received yet and is not too old to tell.
    pub fn is_new(&self, index: u64) -> bool {
        if index > self.max {
            return true;
        }
        let age = self.max - index;
        age < REPLAY_WINDOW && self.seen & (1 << age) == 0
    }

    /// Records the authenticated packet `index` as received.
    pub fn accept(&mut self, index: u64) {
        if index > self.max {
            let shift = index - self.max;
            self.seen = if shift >= REPLAY_WINDOW {
                0
            } else {
                self.seen << shift
            };
            self.seen |= 1;
            self.max = index;
        } else if self.max - index < REPLAY_WINDOW {
            self.seen |= 1 << (self.max - index);
        }
    }
}

/// Compares two authentication tags in time that does not depend on where they differ.
fn tags_equal(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Transform {
    /// The session keys of one half of DTLS-SRTP keying material (RFC 5764 4.2: client key,
    /// server key, client salt, server salt): the client's half when `client_half`.
    fn from_material(
        crypto: &CryptoProvider,
        profile: SrtpProfile,
        material: &[u8],
        client_half: bool,
        encrypt: bool,
        labels: Labels,
    ) -> Result<Transform, SrtpError> {
        let (key_len, salt_len) = master_lengths(profile)?;
        let expected = 2 * (key_len + salt_len);
        if material.len() != expected {
            return Err(SrtpError::BadKeyingMaterial {
                expected,
                got: material.len(),
            });
        }
        let (keys, salts) = material.split_at(2 * key_len);
        let (key, salt) = if client_half {
            (&keys[..key_len], &salts[..salt_len])
        } else {
            (&keys[key_len..], &salts[salt_len..])
        };
        Self::from_master(crypto, profile, key, salt, encrypt, labels)
    }

    /// One side's master key and salt, with the session keys derived from them.
    fn from_master(
        crypto: &CryptoProvider,
        profile: SrtpProfile,
        master_key: &[u8],
        master_salt: &[u8],
        encrypt: bool,
        labels: Labels,
    ) -> Result<Transform, SrtpError> {
        let (key_len, salt_len) = master_lengths(profile)?;
        // Callers slice these from checked material; a mismatch here is a bug in this module.
        debug_assert_eq!((master_key.len(), master_salt.len()), (key_len, salt_len));
        let srtp = crypto.srtp_provider;
        let transform = match profile {
            SrtpProfile::AES128_CM_SHA1_80 => {
                let mut key = [0; CM_KEY_LEN];
                let mut salt = [0; CM_SALT_LEN];
                let mut auth_key = [0; CM_AUTH_KEY_LEN];
                kdf(srtp, master_key, master_salt, labels.cipher, &mut key);
                kdf(srtp, master_key, master_salt, labels.salt, &mut salt);
                kdf(srtp, master_key, master_salt, labels.auth, &mut auth_key);
                Self::aes_cm(crypto, key, salt, auth_key, encrypt)
            }
            SrtpProfile::AEAD_AES_128_GCM => {
                let mut key = [0; GCM128_KEY_LEN];
                let mut salt = [0; GCM_SALT_LEN];
                kdf(srtp, master_key, master_salt, labels.cipher, &mut key);
                kdf(srtp, master_key, master_salt, labels.salt, &mut salt);
                Self::gcm128(crypto, key, salt, encrypt)
            }
            SrtpProfile::AEAD_AES_256_GCM => {
                let mut key = [0; GCM256_KEY_LEN];
                let mut salt = [0; GCM_SALT_LEN];
                kdf(srtp, master_key, master_salt, labels.cipher, &mut key);
                kdf(srtp, master_key, master_salt, labels.salt, &mut salt);
                Self::gcm256(crypto, key, salt, encrypt)
            }
            other => return Err(SrtpError::UnsupportedProfile(other.to_string())),
        };
        Ok(transform)
    }

    fn aes_cm(
        crypto: &CryptoProvider,
        key: [u8; CM_KEY_LEN],
        salt: [u8; CM_SALT_LEN],
        auth_key: [u8; CM_AUTH_KEY_LEN],
        encrypt: bool,
    ) -> Transform {
        Transform::AesCm {
            cipher: crypto
                .srtp_provider
                .aes_128_cm_sha1_80()
                .create_cipher(key, encrypt),
            salt,
            auth_key,
            hmac: crypto.sha1_hmac_provider,
        }
    }

    fn gcm128(
        crypto: &CryptoProvider,
        key: [u8; GCM128_KEY_LEN],
        salt: [u8; GCM_SALT_LEN],
        encrypt: bool,
    ) -> Transform {
        Transform::Gcm128 {
            cipher: crypto
                .srtp_provider
                .aead_aes_128_gcm()
                .create_cipher(key, encrypt),
            salt,
        }
    }

    fn gcm256(
        crypto: &CryptoProvider,
        key: [u8; GCM256_KEY_LEN],
        salt: [u8; GCM_SALT_LEN],
        encrypt: bool,
    ) -> Transform {
        Transform::Gcm256 {
            cipher: crypto
                .srtp_provider
                .aead_aes_256_gcm()
                .create_cipher(key, encrypt),
            salt,
        }
    }

    fn profile(&self) -> SrtpProfile {
        match self {
            Transform::AesCm { .. } => SrtpProfile::AES128_CM_SHA1_80,
            Transform::Gcm128 { .. } => SrtpProfile::AEAD_AES_128_GCM,
            Transform::Gcm256 { .. } => SrtpProfile::AEAD_AES_256_GCM,
        }
    }
}

/// Master key and master salt lengths of a profile.
fn master_lengths(profile: SrtpProfile) -> Result<(usize, usize), SrtpError> {
    match profile {
        SrtpProfile::AES128_CM_SHA1_80 => Ok((CM_KEY_LEN, CM_SALT_LEN)),
        SrtpProfile::AEAD_AES_128_GCM => Ok((GCM128_KEY_LEN, GCM_SALT_LEN)),
        SrtpProfile::AEAD_AES_256_GCM => Ok((GCM256_KEY_LEN, GCM_SALT_LEN)),
        other => Err(SrtpError::UnsupportedProfile(other.to_string())),
    }
}

/// RFC 3711 4.3 key derivation with key_derivation_rate 0, AES-CM of the master key as PRF.
///
/// `master_key` is 16 or 32 bytes (AES-128 or AES-256 PRF). `master_salt` is at most 14 bytes;
/// the 12-byte GCM salt (RFC 7714 section 11) sits at the front with zeros after it, which is
/// what libsrtp, and so the browsers, do.
fn kdf(srtp: &dyn SrtpProvider, master_key: &[u8], master_salt: &[u8], label: u8, out: &mut [u8]) {
    debug_assert!(master_key.len() == 16 || master_key.len() == 32);
    debug_assert!(master_salt.len() <= 14);
    // x = (label || r) XOR master_salt with r = 0, both right-aligned in 112 bits (byte 7 is the
    // label's), then shifted left 16 bits to make room for the block counter.
    let mut block = [0u8; 16];
    block[..master_salt.len()].copy_from_slice(master_salt);
    block[7] ^= label;
    // The backends' ECB round may pad, so give them a two-block output.
    let mut keystream = [0u8; 32];
    for (counter, chunk) in out.chunks_mut(16).enumerate() {
        block[14..].copy_from_slice(&(counter as u16).to_be_bytes());
        if master_key.len() == 32 {
            srtp.srtp_aes_256_ecb_round(master_key, &block, &mut keystream);
        } else {
            srtp.srtp_aes_128_ecb_round(master_key, &block, &mut keystream);
        }
        chunk.copy_from_slice(&keystream[..chunk.len()]);
    }
}

/// RFC 3711 4.1.1: IV = (salt * 2^16) XOR (SSRC * 2^64) XOR (index * 2^16).
fn aes_cm_iv(salt: &[u8; CM_SALT_LEN], ssrc: u32, index: u64) -> [u8; 16] {
    let mut iv = [0u8; 16];
    iv[..CM_SALT_LEN].copy_from_slice(salt);
    for (b, s) in iv[4..8].iter_mut().zip(ssrc.to_be_bytes()) {
        *b ^= s;
    }
    for (b, i) in iv[8..14].iter_mut().zip(&index.to_be_bytes()[2..]) {
        *b ^= i;
    }
    iv
}

/// RFC 7714 8.1: IV = (0x0000 || SSRC || ROC || SEQ) XOR salt; ROC || SEQ is the 48-bit index.
fn gcm_iv(salt: &[u8; GCM_SALT_LEN], ssrc: u32, index: u64) -> [u8; GCM_SALT_LEN] {
    let mut iv = [0u8; GCM_SALT_LEN];
    iv[2..6].copy_from_slice(&ssrc.to_be_bytes());
    iv[6..].copy_from_slice(&index.to_be_bytes()[2..]);
    for (b, s) in iv.iter_mut().zip(salt) {
        *b ^= s;
    }
    iv
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crypto() -> CryptoProvider {
        str0m::crypto::from_feature_flags()
    }

    /// Hex to bytes; spaces are ignored so vectors can be pasted in the RFCs' grouping.
    fn hex(s: &str) -> Vec<u8> {
        let digits: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
        assert!(digits.len().is_multiple_of(2), "odd hex length in {s:?}");
        digits
            .chunks(2)
            .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap())
            .collect()
    }

    fn arr<const N: usize>(s: &str) -> [u8; N] {
        hex(s).try_into().expect("vector has the wrong length")
    }

    fn derive(master_key: &str, master_salt: &str, label: u8, len: usize) -> Vec<u8> {
        let mut out = vec![0; len];
        kdf(
            crypto().srtp_provider,
            &hex(master_key),
            &hex(master_salt),
            label,
            &mut out,
        );
        out
    }

    fn protect(sender: &mut SrtpSender, plain: &[u8], ssrc: u32, index: u64) -> Vec<u8> {
        let mut out = Vec::new();
        sender.protect_rtp(plain, 12, ssrc, index, &mut out);
        out
    }

    // RFC 3711 Appendix B.3 (key derivation test vectors).
    const B3_MASTER_KEY: &str = "E1F97A0D3E018BE0D64FA32C06DE4139";
    const B3_MASTER_SALT: &str = "0EC675AD498AFEEBB6960B3AABE6";

    // libsrtp test/srtp_driver.c srtp_validate(): the B.3 master key and salt as the
    // AES_CM_128_HMAC_SHA1_80 policy key, SSRC 0xcafebabe, seq 0x1234, ROC 0.
    const LIBSRTP_PLAIN: &str = "800f1234 decafbad cafebabe abababab abababab abababab abababab";
    const LIBSRTP_CM_PROTECTED: &str = "800f1234 decafbad cafebabe 4e55dc4c e79978d8 8ca4d215 \
                                        949d2402 b78d6acc 99ea179b 8dbb";

    // libsrtp test/srtp_driver.c srtp_validate_gcm(): AEAD_AES_128_GCM with 16-byte tag, master
    // key 00..0f, 12-byte master salt a0..ab, same packet as above.
    const LIBSRTP_GCM_MASTER_KEY: &str = "000102030405060708090a0b0c0d0e0f";
    const LIBSRTP_GCM_MASTER_SALT: &str = "a0a1a2a3a4a5a6a7a8a9aaab";
    const LIBSRTP_GCM_PROTECTED: &str = "800f1234 decafbad cafebabe c5002ede 04cfdd2e b91159e0 \
                                         880aa06e d2976826 f796b201 df3131a1 27e8a392";

    // RFC 7714 section 16: session key/salt given directly, SSRC 0x5501a0b2, ROC 0, seq 0xf17b.
    const RFC7714_SALT: &str = "517569642070726f2071756f";
    const RFC7714_PLAIN: &str = "8040f17b 8041f8d3 5501a0b2 47616c6c 69612065 7374206f \
                                 6d6e6973 20646976 69736120 696e2070 61727465 73207472 6573";

    // RFC 7714 section 17.1: an SR protected as SRTCP index 0x5d4 with the section 16 session
    // key and salt.
    const RFC7714_RTCP_PLAIN: &str = "81c8000d 4d617273 4e545031 4e545032 52545020 0000042a \
                                      0000e930 4c756e61 deadbeef deadbeef deadbeef deadbeef \
                                      deadbeef";
    const RFC7714_RTCP_PROTECTED: &str = "81c8000d 4d617273 63e94885 dcdab67c a727d766 2f6b7e99 \
                                          7ff5c0f7 6c06f32d c676a5f1 730d6fda 4ce09b46 86303ded \
                                          0bb9275b c84aa458 96cf4d2f c5abf872 45d9eade 800005d4";

    #[test]
    fn srtcp_gcm_matches_rfc7714_and_counts_its_index() {
        let mut sender = SrtcpSender::gcm128(
            &crypto(),
            arr("000102030405060708090a0b0c0d0e0f"),
            arr(RFC7714_SALT),
            0x5d4,
        );
        let mut out = Vec::new();
        sender.protect_rtcp(&hex(RFC7714_RTCP_PLAIN), &mut out);
        assert_eq!(out, hex(RFC7714_RTCP_PROTECTED));
        sender.protect_rtcp(&hex(RFC7714_RTCP_PLAIN), &mut out);
        assert_eq!(
            out[out.len() - 4..],
            [0x80, 0, 0x05, 0xd5],
            "the next index"
        );
        assert_ne!(out, hex(RFC7714_RTCP_PROTECTED));
        sender.protect_rtcp(&[0x80, 0xc9, 0, 1], &mut out);
        assert!(out.is_empty(), "shorter than a header: nothing to send");
    }

    #[test]
    fn srtcp_index_wraps_at_31_bits() {
        let mut sender = SrtcpSender::gcm128(&crypto(), [7; 16], [9; 12], 0x7fff_ffff);
        let plain = hex("80c90001 01020304");
        let mut out = Vec::new();
        sender.protect_rtcp(&plain, &mut out);
        assert_eq!(out[out.len() - 4..], [0xff, 0xff, 0xff, 0xff]);
        sender.protect_rtcp(&plain, &mut out);
        assert_eq!(out[out.len() - 4..], [0x80, 0, 0, 0]);
    }

    #[test]
    fn kdf_matches_rfc3711_appendix_b3() {
        assert_eq!(
            derive(B3_MASTER_KEY, B3_MASTER_SALT, LABEL_CIPHER_KEY, 16),
            hex("C61E7A93744F39EE10734AFE3FF7A087")
        );
        assert_eq!(
            derive(B3_MASTER_KEY, B3_MASTER_SALT, LABEL_SALT, 14),
            hex("30CBBC08863D8C85D49DB34A9AE1")
        );
        assert_eq!(
            derive(B3_MASTER_KEY, B3_MASTER_SALT, LABEL_AUTH_KEY, 20),
            hex("CEBE321F6FF7716B6FD4AB49AF256A156D38BAA4")
        );
    }

    /// The AES-256 PRF path, which AEAD_AES_256_GCM derives with. RFC 6188 section 7.2.
    #[test]
    fn kdf_matches_rfc6188_aes256_prf() {
        let key = "f0f04914b513f2763a1b1fa130f10e2998f6f6e43e4309d1e622a0e332b9f1b6";
        let salt = "3b04803de51ee7c96423ab5b78d2";
        assert_eq!(
            derive(key, salt, LABEL_CIPHER_KEY, 32),
            hex("5ba1064e30ec51613cad926c5a28ef731ec7fb397f70a960653caf06554cd8c4")
        );
        assert_eq!(
            derive(key, salt, LABEL_SALT, 14),
            hex("fa31791685ca444a9e07c6c64e93")
        );
        assert_eq!(
            derive(key, salt, LABEL_AUTH_KEY, 20),
            hex("fd9c32d39ed5fbb5a9dc96b30818454d1313dc05")
        );
    }

    #[test]
    fn aead_aes_128_gcm_matches_rfc7714_section16() {
        let crypto = crypto();
        let mut sender = SrtpSender::gcm128(
            &crypto,
            arr("000102030405060708090a0b0c0d0e0f"),
            arr(RFC7714_SALT),
        );
        let expected = hex(
            "8040f17b 8041f8d3 5501a0b2 f24de3a3 fb34de6c acba861c 9d7e4bca be633bd5 0d294e6f \
             42a5f47a 51c7d19b 36de3adf 8833899d 7f27beb1 6a9152cf 765ee439 0cce",
        );
        let out = protect(&mut sender, &hex(RFC7714_PLAIN), 0x5501a0b2, 0xf17b);
        assert_eq!(out, expected);
        assert_eq!(out.len(), hex(RFC7714_PLAIN).len() + sender.overhead());
    }

    #[test]
    fn aead_aes_256_gcm_matches_rfc7714_section16() {
        let crypto = crypto();
        let mut sender = SrtpSender::gcm256(
            &crypto,
            arr("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"),
            arr(RFC7714_SALT),
        );
        let expected = hex(
            "8040f17b 8041f8d3 5501a0b2 32b1de78 a822fe12 ef9f78fa 332e33aa b1801238 9a58e2f3 \
             b50b2a02 76ffae0f 1ba63799 b87b7aa3 db36dfff d6b0f9bb 7878d7a7 6c13",
        );
        let out = protect(&mut sender, &hex(RFC7714_PLAIN), 0x5501a0b2, 0xf17b);
        assert_eq!(out, expected);
    }

    /// libsrtp's reference packet protected from a master key and salt.
    fn check_libsrtp_packet(profile: SrtpProfile, key: &str, salt: &str, expected: &str) -> usize {
        let crypto = crypto();
        let mut sender = SrtpSender::from_master(&crypto, profile, &hex(key), &hex(salt)).unwrap();
        let out = protect(&mut sender, &hex(LIBSRTP_PLAIN), 0xcafebabe, 0x1234);
        assert_eq!(out, hex(expected));
        sender.overhead()
    }

    #[test]
    fn aes_cm_sha1_80_matches_libsrtp_reference_packet() {
        let overhead = check_libsrtp_packet(
            SrtpProfile::AES128_CM_SHA1_80,
            B3_MASTER_KEY,
            B3_MASTER_SALT,
            LIBSRTP_CM_PROTECTED,
        );
        assert_eq!(overhead, 10);
    }

    /// Covers the 12-byte master salt in the KDF, which no RFC vector does.
    #[test]
    fn aead_aes_128_gcm_from_master_matches_libsrtp_reference_packet() {
        let overhead = check_libsrtp_packet(
            SrtpProfile::AEAD_AES_128_GCM,
            LIBSRTP_GCM_MASTER_KEY,
            LIBSRTP_GCM_MASTER_SALT,
            LIBSRTP_GCM_PROTECTED,
        );
        assert_eq!(overhead, 16);
    }

    /// RFC 3711 Appendix B.2: with SSRC and index 0 the IV is the salt shifted, so an all-zero
    /// payload encrypts to the raw keystream.
    #[test]
    fn aes_cm_keystream_matches_rfc3711_appendix_b2() {
        let crypto = crypto();
        let mut sender = SrtpSender::aes_cm(
            &crypto,
            arr("2B7E151628AED2A6ABF7158809CF4F3C"),
            arr("F0F1F2F3F4F5F6F7F8F9FAFBFCFD"),
            [0; CM_AUTH_KEY_LEN],
        );
        let mut plain = vec![0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        plain.extend_from_slice(&[0; 48]);
        let out = protect(&mut sender, &plain, 0, 0);
        assert_eq!(
            out[12..60],
            hex(
                "E03EAD0935C95E80E166B16DD92B4EB4 D23513162B02D0F72A43A2FE4A5F97AB \
                 41E95B3BB0A2E8DD477901E4FCA894C0"
            )
        );
    }

    /// The ROC is in the CM IV at bytes 8..12 and appended to the authenticated bytes; checked
    /// against a sender whose salt carries the ROC instead, and an HMAC computed separately.
    #[test]
    fn aes_cm_uses_roc_in_iv_and_tag() {
        let crypto = crypto();
        let key: [u8; 16] = arr("C61E7A93744F39EE10734AFE3FF7A087");
        let salt: [u8; 14] = arr("30CBBC08863D8C85D49DB34A9AE1");
        let auth: [u8; 20] = arr("CEBE321F6FF7716B6FD4AB49AF256A156D38BAA4");
        let roc: u32 = 0x0102_0304;
        let mut shifted_salt = salt;
        for (b, r) in shifted_salt[8..12].iter_mut().zip(roc.to_be_bytes()) {
            *b ^= r;
        }
        let plain = hex(LIBSRTP_PLAIN);
        let with_roc = protect(
            &mut SrtpSender::aes_cm(&crypto, key, salt, auth),
            &plain,
            0xcafebabe,
            (u64::from(roc) << 16) | 0x1234,
        );
        let via_salt = protect(
            &mut SrtpSender::aes_cm(&crypto, key, shifted_salt, auth),
            &plain,
            0xcafebabe,
            0x1234,
        );
        let body = plain.len();
        assert_eq!(with_roc[..body], via_salt[..body]);
        assert_ne!(with_roc[12..body], plain[12..]);
        let tag = crypto
            .sha1_hmac_provider
            .sha1_hmac(&auth, &[&with_roc[..body], &roc.to_be_bytes()]);
        assert_eq!(with_roc[body..], tag[..10]);
        assert_ne!(
            with_roc[body..],
            via_salt[body..],
            "ROC 0 must give another tag"
        );
    }

    /// RFC 7714 8.1 puts the ROC at IV bytes 6..10; moving it into the salt must give the
    /// same packet, tag included.
    #[test]
    fn gcm_uses_roc_in_iv() {
        let crypto = crypto();
        let key: [u8; 16] = arr("000102030405060708090a0b0c0d0e0f");
        let salt: [u8; 12] = arr(RFC7714_SALT);
        let roc: u32 = 0xdead_beef;
        let mut shifted_salt = salt;
        for (b, r) in shifted_salt[6..10].iter_mut().zip(roc.to_be_bytes()) {
            *b ^= r;
        }
        let plain = hex(RFC7714_PLAIN);
        let with_roc = protect(
            &mut SrtpSender::gcm128(&crypto, key, salt),
            &plain,
            0x5501a0b2,
            (u64::from(roc) << 16) | 0xf17b,
        );
        let via_salt = protect(
            &mut SrtpSender::gcm128(&crypto, key, shifted_salt),
            &plain,
            0x5501a0b2,
            0xf17b,
        );
        assert_eq!(with_roc, via_salt);
        let roc_zero = protect(
            &mut SrtpSender::gcm128(&crypto, key, salt),
            &plain,
            0x5501a0b2,
            0xf17b,
        );
        assert_ne!(with_roc, roc_zero);
    }

    /// Builds client_key | server_key | client_salt | server_salt.
    fn material(client: (&str, &str), server: (&str, &str)) -> Vec<u8> {
        [hex(client.0), hex(server.0), hex(client.1), hex(server.1)].concat()
    }

    /// libsrtp's plain packet, protected by a sender built from DTLS keying material as one
    /// end of the handshake.
    fn send_as(profile: SrtpProfile, material: &[u8], client: bool) -> Vec<u8> {
        let mut sender = SrtpSender::new(&crypto(), profile, material, client).unwrap();
        protect(&mut sender, &hex(LIBSRTP_PLAIN), 0xcafebabe, 0x1234)
    }

    #[test]
    fn srtcp_aes_cm_is_keyed_laid_out_and_tagged_as_rfc3711_says() {
        // No RFC vector covers AES-CM SRTCP: this checks it piece by piece against the
        // primitives, with SRTCP's own session keys (labels 3, 4, 5) from the B.3 master key.
        let known = (B3_MASTER_KEY, B3_MASTER_SALT);
        let other = (
            "00112233445566778899aabbccddeeff",
            "0102030405060708090a0b0c0d0e",
        );
        let mut sender = SrtcpSender::new(
            &crypto(),
            SrtpProfile::AES128_CM_SHA1_80,
            &material(known, other),
            true,
        )
        .unwrap();
        // An RR from SSRC 0xcafebabe with one block.
        let plain = hex("81c90007 cafebabe 01020304 05060708 090a0b0c 0d0e0f10 11121314 15161718");
        let mut out = Vec::new();
        sender.protect_rtcp(&plain, &mut out);
        sender.protect_rtcp(&plain, &mut out);
        assert_eq!(out.len(), plain.len() + 4 + 10);
        assert_eq!(out[..8], plain[..8], "the first header stays clear");
        assert_eq!(
            out[plain.len()..plain.len() + 4],
            [0x80, 0, 0, 1],
            "E set, index 1"
        );
        let auth_key = derive(B3_MASTER_KEY, B3_MASTER_SALT, 0x04, 20);
        let tag = crypto()
            .sha1_hmac_provider
            .sha1_hmac(&auth_key, &[&out[..plain.len() + 4]]);
        assert_eq!(
            out[plain.len() + 4..],
            tag[..10],
            "tag over header, body and index"
        );
        let key: [u8; 16] = derive(B3_MASTER_KEY, B3_MASTER_SALT, 0x03, 16)
            .try_into()
            .unwrap();
        let salt: [u8; 14] = derive(B3_MASTER_KEY, B3_MASTER_SALT, 0x05, 14)
            .try_into()
            .unwrap();
        let mut cipher = crypto()
            .srtp_provider
            .aes_128_cm_sha1_80()
            .create_cipher(key, false);
        let mut body = vec![0; plain.len() - 8 + CTR_SLACK];
        cipher
            .decrypt(
                &aes_cm_iv(&salt, 0xcafebabe, 1),
                &out[8..plain.len()],
                &mut body,
            )
            .unwrap();
        assert_eq!(body[..plain.len() - 8], plain[8..], "the body decrypts");
        assert_ne!(out[8..plain.len()], plain[8..], "and was encrypted");
    }

    #[test]
    fn new_sends_with_the_half_of_its_dtls_role() {
        let known = (B3_MASTER_KEY, B3_MASTER_SALT);
        let other = (
            "00112233445566778899aabbccddeeff",
            "0102030405060708090a0b0c0d0e",
        );
        let send =
            |material: &[u8], client| send_as(SrtpProfile::AES128_CM_SHA1_80, material, client);

        let known_is_client = material(known, other);
        assert_eq!(send(&known_is_client, true), hex(LIBSRTP_CM_PROTECTED));
        assert_ne!(send(&known_is_client, false), hex(LIBSRTP_CM_PROTECTED));
        assert_ne!(send(&known_is_client, true), send(&known_is_client, false));

        let known_is_server = material(other, known);
        assert_eq!(send(&known_is_server, false), hex(LIBSRTP_CM_PROTECTED));
        assert_ne!(send(&known_is_server, true), hex(LIBSRTP_CM_PROTECTED));
    }

    /// GCM's 12-byte salts move the salt halves; a wrong split would miss the known answer.
    #[test]
    fn new_splits_gcm_material_by_role() {
        let known = (LIBSRTP_GCM_MASTER_KEY, LIBSRTP_GCM_MASTER_SALT);
        let other = (
            "ffeeddccbbaa99887766554433221100",
            "0b0a09080706050403020100",
        );
        let send =
            |material: &[u8], client| send_as(SrtpProfile::AEAD_AES_128_GCM, material, client);
        assert_eq!(
            send(&material(known, other), true),
            hex(LIBSRTP_GCM_PROTECTED)
        );
        assert_eq!(
            send(&material(other, known), false),
            hex(LIBSRTP_GCM_PROTECTED)
        );
        assert_ne!(
            send(&material(other, known), true),
            hex(LIBSRTP_GCM_PROTECTED)
        );
    }

    #[test]
    fn new_for_aes_256_gcm_derives_with_the_aes256_prf() {
        // No published AEAD_AES_256_GCM master-key vector exists, so check new() agrees with
        // the session-key constructor fed by the (RFC 6188-verified) AES-256 PRF.
        let crypto = crypto();
        let master_key = hex("f0f04914b513f2763a1b1fa130f10e2998f6f6e43e4309d1e622a0e332b9f1b6");
        let master_salt = hex("3b04803de51ee7c96423ab5b78d2")[..12].to_vec();
        let mut key = [0; 32];
        let mut salt = [0; 12];
        kdf(
            crypto.srtp_provider,
            &master_key,
            &master_salt,
            LABEL_CIPHER_KEY,
            &mut key,
        );
        kdf(
            crypto.srtp_provider,
            &master_key,
            &master_salt,
            LABEL_SALT,
            &mut salt,
        );
        let other = [0x5a; 44];
        let material = [
            &master_key[..],
            &other[..32],
            &master_salt[..],
            &other[32..],
        ]
        .concat();
        let plain = hex(RFC7714_PLAIN);
        let mut from_material =
            SrtpSender::new(&crypto, SrtpProfile::AEAD_AES_256_GCM, &material, true).unwrap();
        let mut from_session = SrtpSender::gcm256(&crypto, key, salt);
        assert_eq!(
            protect(&mut from_material, &plain, 1, 7),
            protect(&mut from_session, &plain, 1, 7)
        );
    }

    #[test]
    fn wrong_material_length_is_an_error() {
        let crypto = crypto();
        for (profile, expected) in [
            (SrtpProfile::AES128_CM_SHA1_80, 60),
            (SrtpProfile::AEAD_AES_128_GCM, 56),
            (SrtpProfile::AEAD_AES_256_GCM, 88),
        ] {
            assert_eq!(profile.keying_material_len(), expected);
            for got in [0, 1, expected - 1, expected + 1, 2 * expected] {
                let err = SrtpSender::new(&crypto, profile, &vec![7; got], true).unwrap_err();
                assert_eq!(err, SrtpError::BadKeyingMaterial { expected, got });
            }
            assert!(SrtpSender::new(&crypto, profile, &vec![7; expected], false).is_ok());
        }
    }

    #[test]
    fn errors_display() {
        let err = SrtpError::BadKeyingMaterial {
            expected: 60,
            got: 3,
        };
        assert_eq!(
            err.to_string(),
            "DTLS-SRTP keying material is 3 bytes, the profile needs 60"
        );
        let err = SrtpError::UnsupportedProfile("X".into());
        assert_eq!(err.to_string(), "unsupported SRTP profile X");
    }

    #[test]
    fn bad_header_len_leaves_out_empty() {
        let crypto = crypto();
        let plain = hex(LIBSRTP_PLAIN);
        for profile in SrtpProfile::ALL {
            let len = profile.keying_material_len();
            let mut sender = SrtpSender::new(&crypto, *profile, &vec![1; len], true).unwrap();
            let mut out = vec![9; 4];
            sender.protect_rtp(&plain, plain.len() + 1, 1, 1, &mut out);
            assert!(out.is_empty(), "{profile}: header past the end");
            out.push(9);
            sender.protect_rtp(&plain, 11, 1, 1, &mut out);
            assert!(out.is_empty(), "{profile}: header under 12 bytes");
            sender.protect_rtp(&plain[..8], 12, 1, 1, &mut out);
            assert!(out.is_empty(), "{profile}: packet under 12 bytes");
        }
    }

    #[test]
    fn header_only_packet_is_protected() {
        let crypto = crypto();
        let plain = &hex(LIBSRTP_PLAIN)[..12];
        for profile in SrtpProfile::ALL {
            let len = profile.keying_material_len();
            let mut sender = SrtpSender::new(&crypto, *profile, &vec![1; len], true).unwrap();
            let mut out = Vec::new();
            sender.protect_rtp(plain, 12, 0xcafebabe, 0x1234, &mut out);
            assert_eq!(out.len(), 12 + sender.overhead(), "{profile}");
            assert_eq!(out[..12], plain[..], "{profile}");
        }
    }

    #[test]
    fn header_stays_clear_and_out_is_reused() {
        let crypto = crypto();
        // A header with one CSRC and a one-byte-extension block: 12 + 4 + 8 bytes.
        let mut plain = hex("920f1234 decafbad cafebabe 11223344 bede0001 10ff0000");
        let header_len = plain.len();
        plain.extend_from_slice(&[0xab; 100]);
        for profile in SrtpProfile::ALL {
            let len = profile.keying_material_len();
            let mut sender = SrtpSender::new(&crypto, *profile, &vec![3; len], false).unwrap();
            let mut out = Vec::with_capacity(256);
            let ptr = out.as_ptr();
            for seq in 0..4u64 {
                sender.protect_rtp(&plain, header_len, 0xcafebabe, seq, &mut out);
                assert_eq!(out.len(), plain.len() + sender.overhead(), "{profile}");
                assert_eq!(out[..header_len], plain[..header_len], "{profile}");
                assert_ne!(
                    out[header_len..plain.len()],
                    plain[header_len..],
                    "{profile}"
                );
                assert_eq!(out.as_ptr(), ptr, "{profile}: out was reallocated");
            }
        }
    }

    #[test]
    fn index_bits_above_48_are_ignored() {
        let crypto = crypto();
        let plain = hex(LIBSRTP_PLAIN);
        for profile in SrtpProfile::ALL {
            let len = profile.keying_material_len();
            let mut sender = SrtpSender::new(&crypto, *profile, &vec![4; len], true).unwrap();
            let index = (0x0000_0001_u64 << 16) | 0x1234;
            assert_eq!(
                protect(&mut sender, &plain, 9, index),
                protect(&mut sender, &plain, 9, index | (0xffff << 48)),
                "{profile}"
            );
        }
    }

    #[test]
    fn sender_is_send_and_debug_shows_only_the_profile() {
        fn assert_send<T: Send>() {}
        assert_send::<SrtpSender>();
        let crypto = crypto();
        let sender = SrtpSender::new(
            &crypto,
            SrtpProfile::AES128_CM_SHA1_80,
            &material(
                (B3_MASTER_KEY, B3_MASTER_SALT),
                (B3_MASTER_KEY, B3_MASTER_SALT),
            ),
            true,
        )
        .unwrap();
        let debug = format!("{sender:?}");
        assert_eq!(debug, "SrtpSender { profile: AES128_CM_SHA1_80, .. }");
    }

    fn open(receiver: &mut SrtpReceiver, packet: &[u8], roc: u32) -> Option<Vec<u8>> {
        let mut out = vec![7; 3];
        let ok = receiver.unprotect_rtp(packet, 12, roc, &mut out);
        assert_eq!(
            ok,
            !out.is_empty() || packet.len() == 12 + tag_len(receiver)
        );
        ok.then_some(out)
    }

    fn tag_len(r: &SrtpReceiver) -> usize {
        match r.transform {
            Transform::AesCm { .. } => CM_TAG_LEN,
            _ => GCM_TAG_LEN,
        }
    }

    #[test]
    fn receiver_opens_libsrtp_and_rfc7714_reference_packets() {
        let crypto = crypto();
        // The known keys as the DTLS client's half: the server (client = false) receives with it.
        let other = (
            "00112233445566778899aabbccddeeff",
            "0102030405060708090a0b0c0d0e",
        );
        let cm = material((B3_MASTER_KEY, B3_MASTER_SALT), other);
        let mut r = SrtpReceiver::new(&crypto, SrtpProfile::AES128_CM_SHA1_80, &cm, false).unwrap();
        let plain = hex(LIBSRTP_PLAIN);
        assert_eq!(
            open(&mut r, &hex(LIBSRTP_CM_PROTECTED), 0).unwrap(),
            plain[12..]
        );
        let mut wrong_half =
            SrtpReceiver::new(&crypto, SrtpProfile::AES128_CM_SHA1_80, &cm, true).unwrap();
        assert_eq!(open(&mut wrong_half, &hex(LIBSRTP_CM_PROTECTED), 0), None);

        let gcm = material(
            (LIBSRTP_GCM_MASTER_KEY, LIBSRTP_GCM_MASTER_SALT),
            (
                "ffeeddccbbaa99887766554433221100",
                "0b0a09080706050403020100",
            ),
        );
        let mut r = SrtpReceiver::new(&crypto, SrtpProfile::AEAD_AES_128_GCM, &gcm, false).unwrap();
        assert_eq!(
            open(&mut r, &hex(LIBSRTP_GCM_PROTECTED), 0).unwrap(),
            plain[12..]
        );

        let mut r = SrtpReceiver {
            transform: Transform::gcm128(
                &crypto,
                arr("000102030405060708090a0b0c0d0e0f"),
                arr(RFC7714_SALT),
                false,
            ),
        };
        let protected = hex(
            "8040f17b 8041f8d3 5501a0b2 f24de3a3 fb34de6c acba861c 9d7e4bca be633bd5 0d294e6f \
             42a5f47a 51c7d19b 36de3adf 8833899d 7f27beb1 6a9152cf 765ee439 0cce",
        );
        assert_eq!(
            open(&mut r, &protected, 0).unwrap(),
            hex(RFC7714_PLAIN)[12..]
        );
    }

    #[test]
    fn receiver_opens_what_the_peers_sender_protects() {
        let crypto = crypto();
        // A header with one CSRC and an extension block, so that the clear part is not 12 bytes.
        let mut plain = hex("920f1234 decafbad cafebabe 11223344 bede0001 10ff0000");
        let header_len = plain.len();
        plain.extend((0..=255u8).cycle().take(300));
        for profile in SrtpProfile::ALL {
            let material: Vec<u8> = (0..profile.keying_material_len() as u8).collect();
            for client in [true, false] {
                let mut tx = SrtpSender::new(&crypto, *profile, &material, client).unwrap();
                let mut rx = SrtpReceiver::new(&crypto, *profile, &material, !client).unwrap();
                let mut own = SrtpReceiver::new(&crypto, *profile, &material, client).unwrap();
                let mut packet = Vec::new();
                let mut out = Vec::with_capacity(512);
                let ptr = out.as_ptr();
                for roc in [0, 1, 7, u32::MAX] {
                    let index = u64::from(roc) << 16 | 0x1234;
                    for len in [header_len, header_len + 1, plain.len()] {
                        tx.protect_rtp(&plain[..len], header_len, 0xcafebabe, index, &mut packet);
                        assert!(
                            rx.unprotect_rtp(&packet, header_len, roc, &mut out),
                            "{profile} client={client} roc={roc} len={len}"
                        );
                        assert_eq!(out, plain[header_len..len], "{profile}");
                        assert!(
                            !own.unprotect_rtp(&packet, header_len, roc, &mut out),
                            "{profile}: this end's own keys do not open the peer's packets"
                        );
                        assert!(out.is_empty());
                    }
                }
                assert!(rx.unprotect_rtp(&packet, header_len, u32::MAX, &mut out));
                assert_eq!(out.as_ptr(), ptr, "{profile}: out was reallocated");
            }
        }
    }

    #[test]
    fn receiver_refuses_forged_truncated_and_misindexed_packets() {
        let crypto = crypto();
        let plain = hex(LIBSRTP_PLAIN);
        for profile in SrtpProfile::ALL {
            let material = vec![5; profile.keying_material_len()];
            let mut tx = SrtpSender::new(&crypto, *profile, &material, true).unwrap();
            let mut rx = SrtpReceiver::new(&crypto, *profile, &material, false).unwrap();
            let packet = protect(&mut tx, &plain, 0xcafebabe, 0x2_1234);
            assert!(open(&mut rx, &packet, 2).is_some(), "{profile}");
            // Every bit is covered: header (SSRC and sequence number included), payload, tag.
            for i in 0..packet.len() {
                let mut forged = packet.clone();
                forged[i] ^= 0x01;
                assert_eq!(
                    open(&mut rx, &forged, 2),
                    None,
                    "{profile}: bit flipped in byte {i}"
                );
            }
            for roc in [0, 1, 3, 0x1_0002] {
                assert_eq!(
                    open(&mut rx, &packet, roc),
                    None,
                    "{profile}: rollover counter {roc}"
                );
            }
            let tag = tag_len(&rx);
            let mut out = vec![1];
            for len in [0, 11, 12, 12 + tag - 1] {
                assert!(
                    !rx.unprotect_rtp(&packet[..len], 12, 2, &mut out),
                    "{profile}: {len} bytes"
                );
                assert!(out.is_empty());
            }
            for header_len in [0, 11, packet.len() + 1] {
                assert!(
                    !rx.unprotect_rtp(&packet, header_len, 2, &mut out),
                    "{profile}: header of {header_len}"
                );
            }
        }
    }

    #[test]
    fn replay_window_guesses_the_index_across_rollovers() {
        let w = ReplayWindow::after(0x5_0010);
        assert_eq!(w.index(0x0011), Some(0x5_0011));
        assert_eq!(w.index(0x0000), Some(0x5_0000));
        assert_eq!(w.index(0x8010), Some(0x5_8010), "half a cycle ahead");
        assert_eq!(
            w.index(0x8011),
            Some(0x4_8011),
            "over half a cycle ahead: the last cycle"
        );
        assert_eq!(
            w.index(0xfff0),
            Some(0x4_fff0),
            "late packet of the last cycle"
        );

        let w = ReplayWindow::after(0x5_fff0);
        assert_eq!(w.index(0xfff5), Some(0x5_fff5));
        assert_eq!(w.index(0x0003), Some(0x6_0003), "the next cycle");
        assert_eq!(w.index(0x7ff0), Some(0x5_7ff0));
        assert_eq!(w.index(0x7fef), Some(0x6_7fef));

        let first = ReplayWindow::after(0x0005);
        assert_eq!(first.index(0xfffe), None, "before the stream's first cycle");
        assert_eq!(first.index(0x0002), Some(0x0002));
        let last = ReplayWindow::after(INDEX_MASK - 2);
        assert_eq!(last.index(0x0001), None, "past the last rollover counter");
    }

    #[test]
    fn replay_window_refuses_replays_and_what_is_too_old() {
        let mut w = ReplayWindow::after(1000);
        assert!(!w.is_new(1000), "the first packet");
        assert!(
            !w.is_new(990),
            "earlier packets were handled before the window"
        );
        assert!(w.is_new(1001));
        // Out of order within the window: the gap is new until it arrives.
        w.accept(1005);
        assert_eq!(w.max(), 1005);
        for i in 1001..1005 {
            assert!(w.is_new(i), "{i}");
        }
        w.accept(1002);
        assert!(!w.is_new(1002) && !w.is_new(1005) && w.is_new(1003));
        w.accept(1002);
        assert!(w.is_new(1004), "a repeated accept marks nothing else");
        // The window slides: 128 behind the highest is too old even if it never came.
        w.accept(1005 + 127);
        assert!(w.is_new(1006), "126 behind, never received");
        assert!(!w.is_new(1005), "received");
        w.accept(1005 + 128);
        assert!(!w.is_new(1005), "128 behind");
        assert!(
            !w.is_new(1004),
            "older than the window, though never received"
        );
        // A jump past the window forgets everything before it.
        w.accept(1_000_000);
        assert!(!w.is_new(1_000_000) && w.is_new(1_000_001));
        assert!(w.is_new(1_000_000 - 127) && !w.is_new(1_000_000 - 128));
        let old = w.clone();
        w.accept(5);
        assert_eq!(w, old, "accepting what is too old changes nothing");
    }
}
