//! Voice activity detection from RFC 6464 audio levels (spec rtcd.md §3.13), exactly as rtcd
//! decides it: a window of the last 50 levels; once full, each new level recomputes the mean
//! (rounded) and the sample standard deviation around that rounded mean (Bessel-corrected,
//! rounded). Voice turns on when the deviation exceeds 10 and off when it falls under 4, but
//! not within 2 s of turning on. Sans-IO: the caller passes the time.

use std::time::{Duration, Instant};

pub const WINDOW: usize = 50;
pub const ACTIVATION_THRESHOLD: u32 = 10;
pub const DEACTIVATION_THRESHOLD: u32 = 4;
pub const MIN_ACTIVE: Duration = Duration::from_secs(2);

#[derive(Debug, Clone)]
pub struct Vad {
    levels: [u8; WINDOW],
    len: usize,
    next: usize,
    /// Σ level and Σ level² over the window, kept as levels come and go: the deviation is then
    /// exact integer arithmetic per packet instead of two passes over the window.
    sum: u32,
    sum_sq: u32,
    active: bool,
    activated_at: Option<Instant>,
}

impl Default for Vad {
    fn default() -> Self {
        Self {
            levels: [0; WINDOW],
            len: 0,
            next: 0,
            sum: 0,
            sum_sq: 0,
            active: false,
            activated_at: None,
        }
    }
}

/// Go's `math.Round`: halves away from zero.
fn round(x: f64) -> f64 {
    x.round()
}

impl Vad {
    /// Feeds one level (0 = loudest, 127 = silence). Returns the new state when it changes.
    pub fn push(&mut self, level: u8, now: Instant) -> Option<bool> {
        let level = level & 0x7f;
        let l = u32::from(level);
        if self.len < WINDOW {
            self.levels[self.len] = level;
            self.len += 1;
            self.sum += l;
            self.sum_sq += l * l;
            return None;
        }
        let old = u32::from(self.levels[self.next]);
        self.levels[self.next] = level;
        self.next = (self.next + 1) % WINDOW;
        self.sum = self.sum - old + l;
        self.sum_sq = self.sum_sq - old * old + l * l;

        let avg = round(f64::from(self.sum) / WINDOW as f64) as i64;
        // Σ (l - avg)² = Σ l² - 2·avg·Σ l + n·avg², exactly: what rtcd sums term by term.
        let n = WINDOW as i64;
        let sq = i64::from(self.sum_sq) - 2 * avg * i64::from(self.sum) + n * avg * avg;
        let dev = round((sq as f64 / (WINDOW - 1) as f64).sqrt()) as u32;

        if !self.active && dev > ACTIVATION_THRESHOLD {
            self.activated_at = Some(now);
            self.active = true;
            return Some(true);
        }
        if self.active && dev < DEACTIVATION_THRESHOLD {
            let since = self
                .activated_at
                .map_or(MIN_ACTIVE, |t| now.saturating_duration_since(t));
            if since >= MIN_ACTIVE {
                self.active = false;
                return Some(false);
            }
        }
        None
    }

    /// Mute: clears everything. rtcd then always reports voice off, even if it already was.
    pub fn reset(&mut self) {
        *self = Self::default();
    }

    pub fn is_active(&self) -> bool {
        self.active
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Alternating loud/quiet levels: a deviation well above 10.
    fn speech(i: usize) -> u8 {
        if i.is_multiple_of(2) { 20 } else { 60 }
    }

    #[test]
    fn window_fills_first_then_voice_turns_on_and_off() {
        let t0 = Instant::now();
        let mut v = Vad::default();
        for i in 0..WINDOW {
            assert_eq!(
                v.push(speech(i), t0),
                None,
                "the first 50 levels only fill the window"
            );
        }
        assert_eq!(v.push(speech(50), t0), Some(true), "the 51st level decides");
        assert_eq!(v.push(speech(51), t0), None, "reported only on change");
        // Silence: the deviation falls under 4 once the window is mostly flat, but not before 2 s.
        let mut off = None;
        for i in 0..200 {
            let t = t0 + Duration::from_millis(20 * i as u64);
            if let Some(s) = v.push(127, t) {
                off = Some((s, t));
                break;
            }
        }
        let (state, at) = off.expect("voice turns off");
        assert!(!state);
        assert!(
            at.duration_since(t0) >= MIN_ACTIVE,
            "not within 2 s of activation"
        );
    }

    #[test]
    fn thresholds_are_strict_and_use_the_rounded_mean() {
        let t0 = Instant::now();
        // Levels 0 and 21 alternating over 50 samples: mean 10.5 → 11 (Go rounds half away from
        // zero), deviation sqrt(Σ(x-11)²/49) = sqrt((25·121 + 25·100)/49) = 10.6 → 11 > 10: on.
        let mut v = Vad::default();
        for i in 0..=WINDOW {
            let r = v.push(if i % 2 == 0 { 0 } else { 21 }, t0);
            if i == WINDOW {
                assert_eq!(r, Some(true));
            }
        }
        // Levels 0 and 20: mean 10, deviation sqrt(50·100/49) = 10.1 → 10, not > 10: stays off.
        let mut v = Vad::default();
        for i in 0..=WINDOW + 10 {
            assert_eq!(v.push(if i % 2 == 0 { 0 } else { 20 }, t0), None);
        }
    }

    #[test]
    fn reset_clears_the_window() {
        let t0 = Instant::now();
        let mut v = Vad::default();
        for i in 0..=WINDOW {
            v.push(speech(i), t0);
        }
        assert!(v.is_active());
        v.reset();
        assert!(!v.is_active());
        for i in 0..WINDOW {
            assert_eq!(v.push(speech(i), t0), None, "refills from scratch");
        }
    }

    /// rtcd's computation, term by term over the window (what `push` did before it kept sums).
    fn reference_dev(levels: &[u8]) -> u32 {
        let sum: u32 = levels.iter().map(|l| u32::from(*l)).sum();
        let avg = round(f64::from(sum) / WINDOW as f64);
        let sq: f64 = levels.iter().map(|l| (f64::from(*l) - avg).powi(2)).sum();
        round((sq / (WINDOW - 1) as f64).sqrt()) as u32
    }

    #[test]
    fn running_sums_decide_exactly_as_the_windowed_computation() {
        let t0 = Instant::now();
        // Several seeded level sequences: speech-like swings, flat runs, extremes, every value.
        for seed in 1..=20u64 {
            let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15);
            let mut v = Vad::default();
            let mut window = std::collections::VecDeque::new();
            let mut active = false;
            let mut activated = t0;
            for i in 0..3000u64 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let level = match (i / 300 + seed) % 4 {
                    0 => (x % 128) as u8,
                    1 => 127,
                    2 => [0, 127][(x % 2) as usize],
                    _ => 30 + (x % 20) as u8,
                };
                let now = t0 + Duration::from_millis(20 * i);
                window.push_back(level);
                if window.len() > WINDOW {
                    window.pop_front();
                }
                let mut expected = None;
                if window.len() == WINDOW && i >= WINDOW as u64 {
                    let dev = reference_dev(window.make_contiguous());
                    if !active && dev > ACTIVATION_THRESHOLD {
                        (active, activated) = (true, now);
                        expected = Some(true);
                    } else if active
                        && dev < DEACTIVATION_THRESHOLD
                        && now.duration_since(activated) >= MIN_ACTIVE
                    {
                        active = false;
                        expected = Some(false);
                    }
                }
                assert_eq!(v.push(level, now), expected, "seed {seed}, level {i}");
            }
        }
    }
}
