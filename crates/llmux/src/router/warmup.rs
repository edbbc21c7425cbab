//! Warm-up ahead of demand, as decisions on an injected clock (unix ms): per group, which UTC hours of the day
//! saw a first request after an idle spell on past days, and whether a slot starting in a few minutes is one to
//! wake the group's host and preload its model for. Bounded: at most one warm-up per group and hour, and only
//! for an hour with such first requests on at least [`MIN_DAYS`] of the last [`WINDOW_DAYS`] days. The effects
//! (recording requests, the timer, waking, preloading, the file it is kept in) are in [`crate::warmup`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

const HOUR: u64 = 3_600_000;
const DAY: u64 = 24 * HOUR;
/// A request after this long without one for its group is a "first request after idle".
pub const IDLE: u64 = 30 * 60_000;
/// How long before a slot the warm-up starts (a boot and a model load).
pub const LEAD: u64 = 5 * 60_000;
/// Past days looked at.
pub const WINDOW_DAYS: u64 = 7;
/// Days of those with a first request in the hour that make it a slot to warm up for.
pub const MIN_DAYS: usize = 2;

/// What was learned, per group (kept across restarts as JSON).
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    groups: BTreeMap<String, Group>,
}

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
struct Group {
    /// The last request (unix ms).
    last: u64,
    /// Per UTC hour of the day, the days (unix day numbers, the last two windows) on which a first request
    /// after idle came in that hour.
    starts: BTreeMap<u8, Vec<u64>>,
    /// The last slot (unix hour) warmed up for.
    warmed: u64,
}

impl Group {
    /// Days of the window before `day` with a first request after idle in `hour`.
    fn demand(&self, hour: u8, day: u64) -> usize {
        self.starts.get(&hour).map_or(0, |days| days.iter().filter(|&&d| d < day && d + WINDOW_DAYS >= day).count())
    }
}

impl Profile {
    /// A request for `group` arrived at `at`: whether it was the first after idle (and so counted for its hour).
    pub fn request(&mut self, group: &str, at: u64) -> bool {
        let g = self.groups.entry(group.to_owned()).or_default();
        let first = at.saturating_sub(g.last) >= IDLE;
        g.last = g.last.max(at);
        if first {
            let (day, hour) = (at / DAY, hour_of(at));
            let days = g.starts.entry(hour).or_default();
            if !days.contains(&day) {
                days.push(day);
            }
            days.retain(|&d| d + 2 * WINDOW_DAYS > day);
        }
        first
    }

    /// The groups to warm up at `now`: an hour slot starts within [`LEAD`], past days show demand in it, the
    /// group is idle and was not warmed up for this slot yet (it is then marked warmed).
    pub fn due(&mut self, now: u64) -> Vec<String> {
        let slot = (now + LEAD) / HOUR;
        if slot * HOUR <= now {
            return Vec::new();
        }
        let (hour, day) = (hour_of(slot * HOUR), slot * HOUR / DAY);
        let mut due = Vec::new();
        for (name, g) in &mut self.groups {
            if g.warmed < slot && g.demand(hour, day) >= MIN_DAYS && now.saturating_sub(g.last) >= IDLE {
                g.warmed = slot;
                due.push(name.clone());
            }
        }
        due
    }

    /// The learned schedule for the day of `now`: per group, the UTC hours warmed up for, with the days of the
    /// window that showed demand in them.
    pub fn schedule(&self, now: u64) -> Vec<(String, Vec<(u8, usize)>)> {
        let day = now / DAY;
        self.groups
            .iter()
            .map(|(name, g)| {
                let hours = (0..24u8).map(|h| (h, g.demand(h, day))).filter(|(_, n)| *n >= MIN_DAYS).collect();
                (name.clone(), hours)
            })
            .filter(|(_, hours): &(String, Vec<(u8, usize)>)| !hours.is_empty())
            .collect()
    }
}

fn hour_of(at: u64) -> u8 {
    u8::try_from((at % DAY) / HOUR).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: u64 = 60_000;

    /// A week of the household: `reasoning_slow` is first asked at 07:10 on weekdays (a run of requests
    /// until 07:40), `coding` once at 20:00 on one evening.
    fn replayed_week() -> Profile {
        let mut profile = Profile::default();
        let monday = 20_000 * DAY;
        for day in 0..7 {
            let base = monday + day * DAY;
            if day < 5 {
                for m in (0..30).step_by(5) {
                    profile.request("reasoning_slow", base + 7 * HOUR + (10 + m) * MINUTE);
                }
            }
            if day == 3 {
                profile.request("coding", base + 20 * HOUR);
            }
        }
        profile
    }

    #[test]
    fn a_replayed_week_warms_the_host_once_a_few_minutes_before_the_morning_slot() {
        let mut profile = replayed_week();
        let next_monday = (20_000 + 7) * DAY;
        // Every minute of the next day, as the timer would ask.
        let mut fired = Vec::new();
        for minute in 0..24 * 60 {
            let now = next_monday + minute * MINUTE;
            for group in profile.due(now) {
                fired.push((group, minute));
            }
        }
        assert_eq!(fired, [("reasoning_slow".to_owned(), 6 * 60 + 55)], "once, at 06:55 (the 07:00 slot)");
        // coding's single evening is not a pattern.
        assert_eq!(profile.schedule(next_monday), [("reasoning_slow".to_owned(), vec![(7, 5)])]);
    }

    #[test]
    fn only_the_first_request_after_idle_counts_and_a_busy_group_is_not_warmed() {
        let mut profile = Profile::default();
        assert!(profile.request("g", 10 * HOUR));
        assert!(!profile.request("g", 10 * HOUR + 20 * MINUTE), "still busy");
        assert!(profile.request("g", 11 * HOUR), "after 40 idle minutes");
        let mut profile = replayed_week();
        let next_monday = (20_000 + 7) * DAY;
        profile.request("reasoning_slow", next_monday + 6 * HOUR + 50 * MINUTE);
        assert!(profile.due(next_monday + 6 * HOUR + 55 * MINUTE).is_empty(), "it is in use: already warm");
    }

    #[test]
    fn the_profile_survives_a_round_trip_through_json() {
        let profile = replayed_week();
        let text = serde_json::to_string(&profile).unwrap();
        assert_eq!(serde_json::from_str::<Profile>(&text).unwrap(), profile);
    }
}
