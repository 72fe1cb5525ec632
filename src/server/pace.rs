//! How long a client may take (`docs/smtp.md`), as pure arithmetic over
//! instants and byte counts, so every rule is a unit test without a clock.
//!
//! - A command line must be complete within the SMTP timeout of the server
//!   being ready for it: a total, so trickling one byte at a time does not
//!   extend it (RFC 5321 §4.5.3.2.7).
//! - A message body may pause for at most the SMTP timeout between bytes,
//!   and once its grace period has passed it must have arrived at the
//!   minimum average rate.
//! - Every write and flush to the client has the SMTP timeout too: a client
//!   that stops reading cannot hold a session.

use std::time::Duration;

use tokio::time::Instant;

/// The time limits of one session, validated at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// `MAIL_LASER_SMTP_TIMEOUT`: a whole command line, a pause inside a
    /// body, one write.
    pub command: Duration,
    /// `MAIL_LASER_DATA_MIN_RATE`, bytes per second; 0 = no minimum.
    pub data_min_rate: u64,
    /// How long a body may be slower than the minimum before it counts.
    pub data_rate_grace: Duration,
}

/// Why the wait for the client ended without a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expired {
    /// No complete command line in time, or a pause in a body too long.
    Idle,
    /// A body arriving slower than the minimum rate.
    TooSlow,
}

/// The body being read: when it started and how much had been read then.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyClock {
    started: Instant,
    bytes_at_start: u64,
    /// The last time a byte arrived, and the count then.
    last_progress: Instant,
    last_bytes: u64,
}

impl BodyClock {
    pub fn start(now: Instant, bytes_read: u64) -> Self {
        Self {
            started: now,
            bytes_at_start: bytes_read,
            last_progress: now,
            last_bytes: bytes_read,
        }
    }
}

impl Timeouts {
    /// Until when a command line may still arrive, `ready` being when the
    /// server started waiting for it.
    pub fn command_deadline(&self, ready: Instant) -> Instant {
        ready + self.command
    }

    /// For a body: the instant at which the wait ends unless more bytes
    /// arrive, or the reason it has already ended at `now` with
    /// `bytes_read` octets read on the connection so far.
    ///
    /// # Errors
    /// [`Expired`] when the pause is too long or the average too slow.
    pub fn body_deadline(
        &self,
        clock: &mut BodyClock,
        now: Instant,
        bytes_read: u64,
    ) -> Result<Instant, Expired> {
        if bytes_read > clock.last_bytes {
            clock.last_bytes = bytes_read;
            clock.last_progress = now;
        }
        let silent_until = clock.last_progress + self.command;
        if now >= silent_until {
            return Err(Expired::Idle);
        }
        if self.data_min_rate == 0 {
            return Ok(silent_until);
        }
        // The rate stays at or above the minimum until the bytes read so
        // far are all the time they have paid for.
        let received = bytes_read.saturating_sub(clock.bytes_at_start);
        let paid_for = Duration::from_secs_f64(received as f64 / self.data_min_rate as f64);
        let too_slow_at = clock.started + self.data_rate_grace.max(paid_for);
        if now >= too_slow_at {
            return Err(Expired::TooSlow);
        }
        Ok(silent_until.min(too_slow_at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMEOUTS: Timeouts = Timeouts {
        command: Duration::from_secs(300),
        data_min_rate: 1024,
        data_rate_grace: Duration::from_secs(30),
    };

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn a_command_line_has_a_total_deadline() {
        let ready = Instant::now();
        assert_eq!(TIMEOUTS.command_deadline(ready), ready + secs(300));
    }

    #[test]
    fn a_fast_body_is_never_too_slow() {
        let t0 = Instant::now();
        let mut clock = BodyClock::start(t0, 100);
        // 10 MB in 40 s: far above 1 KiB/s.
        let deadline = TIMEOUTS
            .body_deadline(&mut clock, t0 + secs(40), 100 + 10_000_000)
            .unwrap();
        assert_eq!(
            deadline,
            t0 + secs(40) + secs(300),
            "only a pause can end it"
        );
    }

    #[test]
    fn a_trickling_body_is_too_slow_after_the_grace() {
        let t0 = Instant::now();
        let mut clock = BodyClock::start(t0, 0);
        // One byte every 2 s: never silent, always progressing.
        let mut bytes = 0;
        let mut now = t0;
        let expired = loop {
            now += secs(2);
            bytes += 1;
            match TIMEOUTS.body_deadline(&mut clock, now, bytes) {
                Ok(deadline) => assert!(deadline > now),
                Err(expired) => break expired,
            }
        };
        assert_eq!(expired, Expired::TooSlow);
        assert_eq!(now, t0 + secs(30), "the grace period, then no more");
    }

    #[test]
    fn the_deadline_is_when_the_rate_would_fall_below_the_minimum() {
        let t0 = Instant::now();
        let mut clock = BodyClock::start(t0, 0);
        // 60 KiB by 10 s: paid for 60 s.
        assert_eq!(
            TIMEOUTS.body_deadline(&mut clock, t0 + secs(10), 60 * 1024),
            Ok(t0 + secs(60))
        );
        assert_eq!(
            TIMEOUTS.body_deadline(&mut clock, t0 + secs(60), 60 * 1024),
            Err(Expired::TooSlow)
        );
    }

    #[test]
    fn a_pause_longer_than_the_timeout_is_idle_even_without_a_minimum() {
        let unlimited = Timeouts {
            data_min_rate: 0,
            ..TIMEOUTS
        };
        let t0 = Instant::now();
        let mut clock = BodyClock::start(t0, 0);
        assert_eq!(
            unlimited.body_deadline(&mut clock, t0 + secs(100), 10),
            Ok(t0 + secs(400))
        );
        assert_eq!(
            unlimited.body_deadline(&mut clock, t0 + secs(400), 10),
            Err(Expired::Idle)
        );
    }
}
