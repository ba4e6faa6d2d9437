//! Simulcast layer selection for screen share (rtcd spec §3.11), sans-IO.
//!
//! Publishers send the screen as two layers, `l` (about 500 kbps) and `h` (about 2.5 Mbps).
//! Each receiver gets one. A [`RateMonitor`] per publisher layer measures what the layer really
//! carries; a [`LayerSelector`] per receiver turns that receiver's send-side bandwidth estimate
//! (TWCC feedback → str0m's estimator) into switch decisions. The core carries a switch out as
//! rtcd does: remove the current track and add the new layer's, in one renegotiation.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Nominal layer rates of the webapp's encodings (bps).
pub const RATE_H: u64 = 2_500_000;
pub const RATE_L: u64 = 500_000;
/// A rate counts as reached at 90 % (rtcd's tolerance).
const TOLERANCE: f64 = 0.9;
/// rtcd's initial backoff between switches, multiplied by 1.5 after each switch.
const INITIAL_BACKOFF: Duration = Duration::from_secs(10);
/// Estimates are evaluated at most once per second with a burst of four (rtcd's rate limiter).
const TOKENS_MAX: f64 = 4.0;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Layer {
    Low,
    High,
}

impl Layer {
    pub fn rid(self) -> &'static str {
        match self {
            Layer::Low => "l",
            Layer::High => "h",
        }
    }

    pub fn from_rid(rid: &str) -> Option<Self> {
        match rid {
            "l" | "" => Some(Layer::Low),
            "h" => Some(Layer::High),
            _ => None,
        }
    }

    /// The layer a new receiver starts on (rtcd: `h` only if its estimate already affords it).
    pub fn initial(estimate_bps: Option<u64>) -> Self {
        match estimate_bps {
            Some(e) if e as f64 > TOLERANCE * RATE_H as f64 => Layer::High,
            _ => Layer::Low,
        }
    }
}

/// The bitrate a layer really carries, from (time, bytes) samples. Like rtcd's monitor it is not
/// trusted until it has seen twice its window, and then reports bytes over the latest window.
#[derive(Debug)]
pub struct RateMonitor {
    window: Duration,
    samples: VecDeque<(Instant, u32)>,
    first: Option<Instant>,
}

impl RateMonitor {
    /// rtcd's windows: 2 s for `h`, 5 s for `l`.
    pub fn for_layer(layer: Layer) -> Self {
        Self::new(match layer {
            Layer::High => Duration::from_secs(2),
            Layer::Low => Duration::from_secs(5),
        })
    }

    pub fn new(window: Duration) -> Self {
        Self {
            window,
            samples: VecDeque::new(),
            first: None,
        }
    }

    pub fn push(&mut self, now: Instant, bytes: usize) {
        self.first.get_or_insert(now);
        self.samples
            .push_back((now, bytes.min(u32::MAX as usize) as u32));
        // Keep one window plus a little: older samples never count again.
        while let Some((t, _)) = self.samples.front() {
            if now.saturating_duration_since(*t) > self.window + Duration::from_millis(500) {
                self.samples.pop_front();
            } else {
                break;
            }
        }
    }

    /// Bits per second over the latest window, once the monitor has covered two windows.
    pub fn rate(&self, now: Instant) -> Option<u64> {
        let first = self.first?;
        if now.saturating_duration_since(first) < 2 * self.window {
            return None;
        }
        let from = now.checked_sub(self.window)?;
        let bytes: u64 = self
            .samples
            .iter()
            .filter(|(t, _)| *t > from)
            .map(|(_, b)| *b as u64)
            .sum();
        Some(bytes * 8 * 1000 / self.window.as_millis().max(1) as u64)
    }
}

/// Per receiver: decides when its screen layer changes.
#[derive(Debug)]
pub struct LayerSelector {
    tokens: f64,
    last_token: Option<Instant>,
    last_estimate: Option<u64>,
    last_change: Option<Instant>,
    backoff: Duration,
}

impl Default for LayerSelector {
    fn default() -> Self {
        Self {
            tokens: TOKENS_MAX,
            last_token: None,
            last_estimate: None,
            last_change: None,
            backoff: INITIAL_BACKOFF,
        }
    }
}

impl LayerSelector {
    /// A new estimate for this receiver while it gets `current`. `source_rate` gives what a
    /// publisher layer measures now. Returns the layer to switch to, if any; the caller reports a
    /// carried-out switch with [`LayerSelector::switched`].
    pub fn on_estimate(
        &mut self,
        now: Instant,
        estimate: u64,
        current: Layer,
        source_rate: impl Fn(Layer) -> Option<u64>,
    ) -> Option<Layer> {
        if !self.take_token(now) {
            return None;
        }
        let diff = estimate as i64 - self.last_estimate.unwrap_or(estimate) as i64;
        self.last_estimate = Some(estimate);
        let in_backoff = self
            .last_change
            .is_some_and(|t| now.saturating_duration_since(t) < self.backoff);
        // A falling estimate on `h` is acted on at once; anything else waits out the backoff.
        if in_backoff && !(current == Layer::High && diff < 0) {
            return None;
        }
        // rtcd compares against the current layer's source rate, which makes a receiver on `l`
        // jump to `h` as soon as it affords `l`, only to fall back. Comparing with what `h`
        // really carries avoids that flapping; the plugin cannot observe the difference.
        let high = source_rate(Layer::High)?;
        let target = if estimate as f64 > TOLERANCE * high as f64 {
            Layer::High
        } else {
            Layer::Low
        };
        (target != current).then_some(target)
    }

    /// The switch was carried out: back off further before the next one.
    pub fn switched(&mut self, now: Instant) {
        self.backoff = self.backoff.mul_f64(1.5);
        self.last_change = Some(now);
    }

    fn take_token(&mut self, now: Instant) -> bool {
        if let Some(t) = self.last_token {
            let refill = now.saturating_duration_since(t).as_secs_f64();
            self.tokens = (self.tokens + refill).min(TOKENS_MAX);
        }
        self.last_token = Some(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn monitor_reports_only_after_two_windows() {
        let t0 = Instant::now();
        let mut m = RateMonitor::new(s(2));
        // 100 packets of 1250 bytes per second = 1 Mbps.
        for i in 0..500u64 {
            let now = t0 + Duration::from_millis(i * 10);
            m.push(now, 1250);
            if now < t0 + s(4) {
                assert_eq!(m.rate(now), None, "at {i}");
            }
        }
        let r = m.rate(t0 + Duration::from_millis(4990)).unwrap();
        assert!((990_000..=1_010_000).contains(&r), "{r}");
        // Silence: the rate decays to zero after a window.
        assert_eq!(m.rate(t0 + s(8)), Some(0));
    }

    #[test]
    fn initial_layer_needs_an_estimate_above_90_percent_of_h() {
        assert_eq!(Layer::initial(None), Layer::Low);
        assert_eq!(Layer::initial(Some(2_000_000)), Layer::Low);
        assert_eq!(Layer::initial(Some(2_300_000)), Layer::High);
    }

    #[test]
    fn upgrades_when_the_estimate_affords_h_then_backs_off() {
        let t0 = Instant::now();
        let mut sel = LayerSelector::default();
        let rate = |l: Layer| Some(if l == Layer::High { 2_000_000 } else { 400_000 });
        assert_eq!(sel.on_estimate(t0, 600_000, Layer::Low, rate), None);
        assert_eq!(
            sel.on_estimate(t0 + s(1), 1_900_000, Layer::Low, rate),
            Some(Layer::High)
        );
        sel.switched(t0 + s(1));
        // A rising estimate inside the backoff changes nothing.
        assert_eq!(
            sel.on_estimate(t0 + s(2), 2_100_000, Layer::High, rate),
            None
        );
        // A falling one on h is acted on at once.
        assert_eq!(
            sel.on_estimate(t0 + s(3), 900_000, Layer::High, rate),
            Some(Layer::Low)
        );
        sel.switched(t0 + s(3));
        // Back on l: the next upgrade waits for the grown backoff (10 s × 1.5 × 1.5 = 22.5 s).
        assert_eq!(
            sel.on_estimate(t0 + s(10), 3_000_000, Layer::Low, rate),
            None
        );
        assert_eq!(
            sel.on_estimate(t0 + s(25), 3_000_000, Layer::Low, rate),
            None
        );
        assert_eq!(
            sel.on_estimate(t0 + s(26), 3_000_000, Layer::Low, rate),
            Some(Layer::High)
        );
    }

    #[test]
    fn no_decision_without_a_measured_h_rate() {
        let t0 = Instant::now();
        let mut sel = LayerSelector::default();
        assert_eq!(sel.on_estimate(t0, 5_000_000, Layer::Low, |_| None), None);
    }

    #[test]
    fn estimates_are_rate_limited_to_one_per_second_after_a_burst_of_four() {
        let t0 = Instant::now();
        let mut sel = LayerSelector::default();
        let rate = |_: Layer| Some(2_000_000);
        // Four quick estimates are evaluated (all too low); the fifth, which would switch, is not.
        for _ in 0..4 {
            assert_eq!(sel.on_estimate(t0, 100_000, Layer::Low, rate), None);
        }
        assert_eq!(sel.on_estimate(t0, 3_000_000, Layer::Low, rate), None);
        assert_eq!(
            sel.on_estimate(t0 + s(1), 3_000_000, Layer::Low, rate),
            Some(Layer::High)
        );
    }
}
