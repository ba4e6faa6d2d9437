//! Which received media is too late to forward: each media shard's overload policy, sans-IO.
//!
//! Voice senders do not slow down when their packets are lost, so once a shard is overloaded
//! some input is shed whatever the policy; the policy only decides how late the rest is. A fixed
//! bound holds an overloaded shard's waits *at* the bound: with 250 ms, every voice packet
//! forwarded at saturation was about 275 ms late (benchmark row 1 x 400 x 10). A low fixed bound
//! instead sheds the bursts a healthy shard absorbs (100 ms shed 0.4% of the voice of a 100 x 10
//! call set at 91% load).
//!
//! An overloaded shard's backlog is no standing queue in CoDel's sense (RFC 8289): one batch of
//! input fanned out to hundreds of receivers keeps the shard busy for a hundred milliseconds or
//! more, the next batch read holds everything that arrived meanwhile, and so every 200 ms window
//! at saturation saw waits from 2 ms to 300 ms. CoDel's test (nothing in a window got through
//! quickly) never fired, which is why a CoDel controller changed nothing (tried, not kept). What
//! marks overload is that the *longest* wait stays high: past [`TARGET`] in every window for
//! [`SUSTAINED`] windows in a row, where a burst (a keyframe fanned out to two hundred viewers, a
//! thousand sessions' timers falling due together) passes within one or two.
//!
//! So there are two bounds: [`BURST`] always, and [`TARGET`] while the shard is overloaded, until
//! a window passes in which nothing waited longer than the target.

use std::time::{Duration, Instant};

/// Media that has waited this long is shed even by a shard that is not overloaded. Media that
/// has spent 250 ms inside the SFU alone cannot be played in time once the network's share is
/// added (ITU-T G.114 puts usable one-way delay at 400 ms).
pub const BURST: Duration = Duration::from_millis(250);

/// What an overloaded shard's media may wait: what it sheds down to.
pub const TARGET: Duration = Duration::from_millis(100);

/// The span over which the longest wait is judged.
pub const WINDOW: Duration = Duration::from_millis(200);

/// Windows in a row whose longest wait passed [`TARGET`] that make a shard overloaded: a second.
pub const SUSTAINED: u32 = 5;

/// One shard's policy. Fed every media datagram's wait (kernel arrival to dequeue) in order.
///
/// Windows are judged by waits alone, never by how many datagrams arrived in them: a shard busy
/// with one long batch dequeues nothing for a while, and that silence is no sign of health.
#[derive(Debug, Default)]
pub struct Shedder {
    /// Closed windows in a row whose longest wait passed the target.
    late_windows: u32,
    /// The current window: when it began, and the longest wait seen in it.
    window: Option<(Instant, Duration)>,
}

impl Shedder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether a media datagram dequeued at `now` after waiting `wait` is still forwarded.
    pub fn admit(&mut self, now: Instant, wait: Duration) -> bool {
        self.window = match self.window {
            Some((start, most)) if now.saturating_duration_since(start) < WINDOW => {
                Some((start, most.max(wait)))
            }
            closed => {
                if let Some((_, most)) = closed {
                    self.late_windows = if most > TARGET {
                        self.late_windows.saturating_add(1)
                    } else {
                        0
                    };
                }
                Some((now, wait))
            }
        };
        wait <= if self.overloaded() { TARGET } else { BURST }
    }

    /// Whether the shard is overloaded, so that media past [`TARGET`] is shed.
    pub fn overloaded(&self) -> bool {
        self.late_windows >= SUSTAINED
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// Feeds one datagram every 2 ms from `t` for `span`, each having waited `wait(elapsed)`;
    /// returns how many were fed, how many admitted, and `t + span`.
    fn feed(
        s: &mut Shedder,
        t: Instant,
        span: Duration,
        wait: impl Fn(Duration) -> Duration,
    ) -> (usize, usize, Instant) {
        let (mut sent, mut kept) = (0, 0);
        let mut at = Duration::ZERO;
        while at < span {
            sent += 1;
            kept += usize::from(s.admit(t + at, wait(at)));
            at += 2 * MS;
        }
        (sent, kept, t + span)
    }

    /// A healthy shard keeps everything under the outer bound, bursts included, and sheds only
    /// what waited longer than it.
    #[test]
    fn bursts_shorter_than_a_window_are_absorbed() {
        let mut s = Shedder::new();
        let t0 = Instant::now();
        // Mostly prompt, with a 150 ms burst of waits up to 240 ms in every 400 ms.
        let wait = |at: Duration| {
            let phase = at.as_millis() % 400;
            if phase < 150 {
                (phase as u32 * 8 / 5) * MS
            } else {
                MS
            }
        };
        let (sent, kept, _) = feed(&mut s, t0, Duration::from_secs(5), wait);
        assert_eq!(kept, sent, "a burst under the outer bound is not shed");
        assert!(!s.overloaded());
        assert!(!s.admit(t0 + Duration::from_secs(5), BURST + MS));
        assert!(s.admit(t0 + Duration::from_secs(5), BURST), "at the bound");
    }

    /// Once the longest wait has passed the target in every window for a second, media past
    /// the target is shed, fresh datagrams in every window notwithstanding; a window with
    /// nothing past the target ends that.
    #[test]
    fn a_sustained_overload_is_shed_down_to_the_target() {
        let mut s = Shedder::new();
        let t0 = Instant::now();
        // Falling behind: each window waits from 1 ms up to 240 ms (one batch per 50 ms holding
        // everything that arrived while the last one was fanned out).
        let behind = |at: Duration| (1 + (at.as_millis() as u32 % 50) * 24 / 5) * MS;
        let span = WINDOW * SUSTAINED;
        let (sent, kept, t1) = feed(&mut s, t0, span, behind);
        assert_eq!(kept, sent, "nothing past the outer bound yet");
        assert!(!s.overloaded(), "the last window is still open");
        // The next datagram closes the last window: overloaded, so 150 ms is shed now.
        assert!(!s.admit(t1, 150 * MS));
        assert!(s.overloaded());
        assert!(s.admit(t1, TARGET), "at the target");
        assert!(s.admit(t1, MS));
        // Still behind: the part past the target is shed, the rest forwarded.
        let (sent, kept, t2) = feed(&mut s, t1, 4 * WINDOW, behind);
        assert!(s.overloaded());
        assert!(kept > sent / 3 && kept < sent * 2 / 3, "{kept} of {sent}");
        // The overload ends: a window with nothing past the target, then back to the outer
        // bound.
        let (_, _, t3) = feed(&mut s, t2, WINDOW, |_| 10 * MS);
        assert!(s.admit(t3, 10 * MS));
        assert!(!s.overloaded());
        assert!(s.admit(t3, 200 * MS), "a burst again");
    }

    /// Late windows must come in a row: one prompt window starts the count again.
    #[test]
    fn one_prompt_window_resets_the_count() {
        let mut s = Shedder::new();
        let t0 = Instant::now();
        let late = |_| 200 * MS;
        let (_, _, t1) = feed(&mut s, t0, WINDOW * (SUSTAINED - 1), late);
        let (_, _, t2) = feed(&mut s, t1, WINDOW, |_| 10 * MS);
        let (sent, kept, t3) = feed(&mut s, t2, WINDOW * (SUSTAINED - 1), late);
        assert_eq!(kept, sent);
        assert!(s.admit(t3, 200 * MS));
        assert!(!s.overloaded());
    }

    /// Prompt media ends an overload one window later, however long the shard dequeued
    /// nothing before it; late media after such a gap is still shed.
    #[test]
    fn a_gap_is_judged_by_the_waits_after_it() {
        let mut s = Shedder::new();
        let t0 = Instant::now();
        let (_, _, t1) = feed(&mut s, t0, WINDOW * SUSTAINED, |_| 200 * MS);
        assert!(!s.admit(t1, 200 * MS));
        assert!(s.overloaded());
        // Nothing dequeued for three windows (one long batch, say), then media that waited long.
        let t2 = t1 + 3 * WINDOW;
        assert!(!s.admit(t2, 200 * MS));
        assert!(s.overloaded());
        // Then prompt media: admitted at once; the window that saw the late datagram keeps the
        // shard overloaded, the next one ends it.
        let (sent, kept, t3) = feed(&mut s, t2 + 2 * MS, 2 * WINDOW, |_| 5 * MS);
        assert_eq!(kept, sent);
        assert!(
            s.admit(t3, 200 * MS),
            "past the target, under the outer bound"
        );
        assert!(!s.overloaded());
    }
}
