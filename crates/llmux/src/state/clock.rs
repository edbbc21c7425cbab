//! The state clock: milliseconds since the state was created, passed into every [`super::State`] method so
//! tests drive time without sleeping, and converted to unix ms only where replicas share a time.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// A time on the state clock, in milliseconds since the state's epoch (not unix ms: see [`super::State::to_unix`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Millis(pub u64);

impl Millis {
    /// `d` after this time (saturating).
    pub fn after(self, d: Duration) -> Millis {
        Millis(self.0.saturating_add(millis(d)))
    }

    /// Milliseconds from `earlier` to this time; 0 when `earlier` is not earlier.
    pub fn since(self, earlier: Millis) -> u64 {
        self.0.saturating_sub(earlier.0)
    }
}

/// Where the state clock starts, in monotonic and in unix time.
#[derive(Debug, Clone, Copy)]
pub(super) struct Clock {
    epoch: Instant,
    /// Unix time of `epoch`, in ms: converts state times to and from what replicas share.
    pub(super) epoch_unix: u64,
}

impl Clock {
    /// A clock starting now.
    pub(super) fn start() -> Clock {
        let unix = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        Clock { epoch: Instant::now(), epoch_unix: u64::try_from(unix.as_millis()).unwrap_or(0) }
    }

    /// The time now.
    pub(super) fn now(&self) -> Millis {
        Millis(millis(Instant::now().saturating_duration_since(self.epoch)))
    }

    /// `at` as unix ms.
    pub(super) fn unix(&self, at: Millis) -> u64 {
        self.epoch_unix.saturating_add(at.0)
    }

    /// Unix ms on the state clock (times before the epoch become 0).
    pub(super) fn local(&self, unix: u64) -> Millis {
        Millis(unix.saturating_sub(self.epoch_unix))
    }

    /// The UTC minute `at` falls in (unix ms / 60,000), so replicas count usage in the same buckets.
    pub(super) fn minute_of(&self, at: Millis) -> u64 {
        self.unix(at) / 60_000
    }
}

/// `d` in whole milliseconds (saturating).
pub(super) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A moving average in seconds that still follows a host getting faster or slower.
pub(super) fn smooth(old: Option<f64>, sample: Duration) -> f64 {
    let sample = sample.as_secs_f64();
    old.map_or(sample, |old| 0.7 * old + 0.3 * sample)
}
