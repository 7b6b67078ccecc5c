//! Time, injected: everything time-based in egard asks a [`Clock`].

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, Duration, SubsecRound, Utc};

/// A source of the current time.
pub trait Clock: Send + Sync + 'static {
    /// The current time.
    fn now(&self) -> DateTime<Utc>;
}

/// The system's wall clock; the default.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that only moves when told to, for tests and examples.
///
/// Clones share the same time, so a test can keep one clone and hand another to the vault.
///
/// ```
/// use chrono::{Duration, TimeZone, Utc};
/// use egard::{Clock, ManualClock};
///
/// let start = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
/// let clock = ManualClock::new(start);
/// let shared = clock.clone();
/// clock.advance(Duration::days(1));
/// assert_eq!(shared.now(), start + Duration::days(1));
/// ```
#[derive(Debug, Clone)]
pub struct ManualClock {
    now: Arc<Mutex<DateTime<Utc>>>,
}

impl ManualClock {
    /// A clock standing at `start`.
    pub fn new(start: DateTime<Utc>) -> Self {
        Self {
            now: Arc::new(Mutex::new(start)),
        }
    }

    /// Moves the clock forward (or back, with a negative duration).
    pub fn advance(&self, by: Duration) {
        let mut now = self.now.lock().unwrap_or_else(PoisonError::into_inner);
        *now += by;
    }

    /// Sets the clock to `t`.
    pub fn set(&self, t: DateTime<Utc>) {
        *self.now.lock().unwrap_or_else(PoisonError::into_inner) = t;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.now.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The vault's time: its [`Clock`], but never earlier than the latest time the vault has
/// recorded (exactly) or decided at (to within [`Monotonic::SLACK_MICROS`]).
///
/// A clock set back (by an operator, a virtual machine restored from a snapshot, a bad time
/// source) must not revive an expired pass or consent: every decision is made at the later of
/// the clock and this floor. The floor starts at the time of the audit log's latest event.
pub(crate) struct Monotonic {
    clock: Arc<dyn Clock>,
    /// Microseconds since the Unix epoch.
    floor: AtomicI64,
}

impl Monotonic {
    /// How far behind the latest decision time the floor may lag, in microseconds: raising it
    /// on every read would make every core write one shared word on the hot path; once per
    /// millisecond does not.
    pub(crate) const SLACK_MICROS: i64 = 1_000;

    /// `clock`, never going back past `floor`.
    pub(crate) fn new(clock: Arc<dyn Clock>, floor: Option<DateTime<Utc>>) -> Self {
        Self {
            clock,
            floor: AtomicI64::new(floor.map_or(i64::MIN, |t| t.timestamp_micros())),
        }
    }

    /// Raises the floor to `t` exactly: `t` was recorded.
    pub(crate) fn raise(&self, t: DateTime<Utc>) {
        self.floor.fetch_max(t.timestamp_micros(), Ordering::Relaxed);
    }
}

impl Clock for Monotonic {
    fn now(&self) -> DateTime<Utc> {
        let now = self.clock.now().trunc_subsecs(6);
        let micros = now.timestamp_micros();
        let floor = self.floor.load(Ordering::Relaxed);
        if micros < floor {
            return DateTime::from_timestamp_micros(floor).unwrap_or(now);
        }
        if micros.saturating_sub(floor) > Self::SLACK_MICROS {
            self.floor.fetch_max(micros, Ordering::Relaxed);
        }
        now
    }
}
