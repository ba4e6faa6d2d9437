//! Each session's DTLS-SRTP keying material, for the audio fast path.
//!
//! str0m keeps its SRTP contexts private, and the fast path ([`crate::srtp`]) encrypts forwarded
//! audio itself. This module wraps str0m's DTLS provider so that the keying material each
//! session's handshake exports is also handed to the SFU core, through a [`KeySlot`] that
//! [`build_rtc`] ties to the session's `Rtc`. Nothing else about DTLS changes: every call is
//! passed through.

use std::cell::RefCell;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use str0m::crypto::CryptoProvider;
use str0m::crypto::dtls::{
    DtlsCert, DtlsImplError, DtlsInstance, DtlsOutput, DtlsProvider, DtlsVersion, ProtocolVersion,
    SrtpProfile,
};
use str0m::{Rtc, RtcConfig};

/// What a session's DTLS handshake exported for SRTP.
#[derive(Debug)]
pub struct SrtpKeys {
    pub profile: SrtpProfile,
    /// RFC 5764 4.2: client key, server key, client salt, server salt.
    pub material: Vec<u8>,
    /// This end was the DTLS client, so it sends with the client half.
    pub client: bool,
}

/// Filled once, when the session's DTLS handshake completes.
pub type KeySlot = Arc<OnceLock<SrtpKeys>>;

thread_local! {
    /// The slot the next DTLS instance built on this thread reports to (see [`build_rtc`]).
    static NEXT_SLOT: RefCell<Option<KeySlot>> = const { RefCell::new(None) };
}

/// Builds an `Rtc` whose DTLS handshake reports its SRTP keys to the returned slot.
pub fn build_rtc(config: RtcConfig, now: Instant) -> (Rtc, KeySlot) {
    let slot = KeySlot::default();
    // str0m creates the session's one DTLS instance inside `build`, on this thread.
    NEXT_SLOT.with(|s| *s.borrow_mut() = Some(slot.clone()));
    let rtc = config.set_crypto_provider(provider().clone()).build(now);
    NEXT_SLOT.with(|s| s.borrow_mut().take());
    (rtc, slot)
}

/// The crypto provider sessions use, for the fast path's own SRTP.
pub fn crypto() -> &'static CryptoProvider {
    provider()
}

/// str0m's default crypto provider with the tapping DTLS provider.
fn provider() -> &'static Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER.get_or_init(|| {
        static TAP: OnceLock<TapProvider> = OnceLock::new();
        let base = str0m::crypto::from_feature_flags();
        let tap: &'static TapProvider = TAP.get_or_init(|| TapProvider {
            inner: base.dtls_provider,
        });
        Arc::new(CryptoProvider {
            dtls_provider: tap,
            ..base
        })
    })
}

#[derive(Debug)]
struct TapProvider {
    inner: &'static dyn DtlsProvider,
}

impl DtlsProvider for TapProvider {
    fn generate_certificate(&self) -> Option<DtlsCert> {
        self.inner.generate_certificate()
    }

    fn new_dtls(
        &self,
        cert: &DtlsCert,
        now: Instant,
        dtls_version: DtlsVersion,
        mtu: Option<usize>,
    ) -> Result<Box<dyn DtlsInstance>, str0m::crypto::CryptoError> {
        let inner = self.inner.new_dtls(cert, now, dtls_version, mtu)?;
        let slot = NEXT_SLOT.with(|s| s.borrow_mut().take());
        Ok(match slot {
            Some(slot) => Box::new(TapInstance { inner, slot }),
            // Built outside `build_rtc`: nobody is waiting for these keys.
            None => inner,
        })
    }

    fn is_test(&self) -> bool {
        self.inner.is_test()
    }
}

#[derive(Debug)]
struct TapInstance {
    inner: Box<dyn DtlsInstance>,
    slot: KeySlot,
}

impl DtlsInstance for TapInstance {
    fn set_active(&mut self, active: bool) {
        self.inner.set_active(active)
    }

    fn handle_packet(&mut self, packet: &[u8]) -> Result<(), DtlsImplError> {
        self.inner.handle_packet(packet)
    }

    fn poll_output<'a>(&mut self, buf: &'a mut [u8]) -> DtlsOutput<'a> {
        let out = self.inner.poll_output(buf);
        if let DtlsOutput::KeyingMaterial(km, profile) = &out {
            let _ = self.slot.set(SrtpKeys {
                profile: *profile,
                material: km.to_vec(),
                client: self.inner.is_active(),
            });
        }
        out
    }

    fn handle_timeout(&mut self, now: Instant) -> Result<(), DtlsImplError> {
        self.inner.handle_timeout(now)
    }

    fn send_application_data(&mut self, data: &[u8]) -> Result<usize, DtlsImplError> {
        self.inner.send_application_data(data)
    }

    fn is_active(&self) -> bool {
        self.inner.is_active()
    }

    fn protocol_version(&self) -> Option<ProtocolVersion> {
        self.inner.protocol_version()
    }

    fn is_closing(&self) -> bool {
        self.inner.is_closing()
    }

    fn is_closed(&self) -> bool {
        self.inner.is_closed()
    }

    fn close(&mut self) -> Result<(), DtlsImplError> {
        self.inner.close()
    }
}
