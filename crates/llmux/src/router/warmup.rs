//! Warm-up ahead of demand, as decisions on an injected clock (unix ms): per group, which UTC hours of the day
//! saw a first request after an idle spell on past days, and at which minute the earliest of them came; a
//! warm-up (wake the group's host, preload its model) starts [`LEAD`] before that minute, so a box that
//! suspends when idle is not woken long before anyone asks. Bounded: at most one warm-up per group and hour,
//! and only for an hour with such first requests on at least [`MIN_DAYS`] of the last [`WINDOW_DAYS`] days. The effects
//! (recording requests, the timer, waking, preloading, the file it is kept in) are in [`crate::warmup`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

const HOUR: u64 = 3_600_000;
const DAY: u64 = 24 * HOUR;
/// A request after this long without one for its group is a "first request after idle".
pub const IDLE: u64 = 30 * 60_000;
/// How long before the earliest first request of a slot the warm-up starts (a boot and a model load).
pub const LEAD: u64 = 5 * 60_000;
/// Past days looked at.
pub const WINDOW_DAYS: u64 = 7;
/// Days of those with a first request in the hour that make it a slot to warm up for: three, so that a question
/// that comes at random hours a few times a week does not wake the box every day (two such in one hour of a
/// week happen often enough; `bench/sleepday`).
pub const MIN_DAYS: usize = 3;

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
    /// after idle came in that hour, with its minute.
    starts: BTreeMap<u8, Vec<Start>>,
    /// The last slot (unix hour) warmed up for.
    warmed: u64,
}

/// A first request after idle: its day (unix day number) and its minute in the hour.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
struct Start(u64, u8);

impl Group {
    /// The first requests after idle in `hour` on the days of the window before `day`.
    fn window(&self, hour: u8, day: u64) -> impl Iterator<Item = &Start> {
        self.starts.get(&hour).into_iter().flatten().filter(move |s| s.0 < day && s.0 + WINDOW_DAYS >= day)
    }

    /// Days of the window before `day` with a first request after idle in `hour`.
    fn demand(&self, hour: u8, day: u64) -> usize {
        self.window(hour, day).count()
    }

    /// When a warm-up for `hour` of `day` starts (unix ms): [`LEAD`] before the earliest first request the
    /// window saw in that hour; `None` when the hour is not one to warm up for.
    fn warm_at(&self, hour: u8, day: u64) -> Option<u64> {
        if self.demand(hour, day) < MIN_DAYS {
            return None;
        }
        let minute = self.window(hour, day).map(|s| u64::from(s.1)).min()?;
        Some((day * DAY + u64::from(hour) * HOUR + minute * 60_000).saturating_sub(LEAD))
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
            let minute = u8::try_from((at % HOUR) / 60_000).unwrap_or(0);
            let starts = g.starts.entry(hour).or_default();
            if !starts.iter().any(|s| s.0 == day) {
                starts.push(Start(day, minute));
            }
            starts.retain(|s| s.0 + 2 * WINDOW_DAYS > day);
        }
        first
    }

    /// The groups to warm up at `now`: a slot's warm-up time ([`LEAD`] before the earliest first request past
    /// days saw in that hour) has come within the last [`LEAD`], the group is idle and was not warmed up for
    /// this slot yet (it is then marked warmed).
    pub fn due(&mut self, now: u64) -> Vec<String> {
        // The slots whose warm-up may fall in (now - LEAD, now]: this hour's and the next one's.
        let slots = [now / HOUR, now / HOUR + 1];
        let mut due = Vec::new();
        for (name, g) in &mut self.groups {
            if now.saturating_sub(g.last) < IDLE {
                continue;
            }
            for slot in slots {
                let (hour, day) = (hour_of(slot * HOUR), slot * HOUR / DAY);
                let starts = g.warm_at(hour, day);
                if g.warmed < slot && starts.is_some_and(|at| at <= now && now < at + LEAD) {
                    g.warmed = slot;
                    due.push(name.clone());
                    break;
                }
            }
        }
        due
    }

    /// The learned schedule for the day of `now`: per group, the warm-ups (minute of the day, UTC) with the
    /// days of the window that showed demand in their hour.
    pub fn schedule(&self, now: u64) -> Vec<(String, Vec<(u16, usize)>)> {
        let day = now / DAY;
        self.groups
            .iter()
            .map(|(name, g)| {
                let warm_ups = (0..24u8)
                    .filter_map(|h| {
                        let at = g.warm_at(h, day)?;
                        let minute = u16::try_from((at % DAY) / 60_000).unwrap_or(0);
                        Some((minute, g.demand(h, day)))
                    })
                    .collect();
                (name.clone(), warm_ups)
            })
            .filter(|(_, warm_ups): &(String, Vec<(u16, usize)>)| !warm_ups.is_empty())
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
        assert_eq!(fired, [("reasoning_slow".to_owned(), 7 * 60 + 5)], "once, at 07:05: 5 min before 07:10");
        // coding's single evening is not a pattern.
        assert_eq!(profile.schedule(next_monday), [("reasoning_slow".to_owned(), vec![(7 * 60 + 5, 5)])]);
    }

    #[test]
    fn the_warm_up_starts_before_the_earliest_first_request_the_window_saw_in_the_hour() {
        let mut profile = Profile::default();
        let monday = 20_000 * DAY;
        // First asked at 19:40, 19:20, 19:45, and at 08:02 on the same three days.
        for (day, minute) in [(0, 40), (1, 20), (2, 45)] {
            profile.request("coding", monday + day * DAY + 19 * HOUR + minute * MINUTE);
        }
        for day in [0, 1, 2] {
            profile.request("vision", monday + day * DAY + 8 * HOUR + 2 * MINUTE);
        }
        // Twice at 10:30 is chance, not a pattern.
        for day in [0, 2] {
            profile.request("reasoning", monday + day * DAY + 10 * HOUR + 30 * MINUTE);
        }
        let next = monday + 3 * DAY;
        let fired: Vec<(String, u64)> = (0..24 * 60)
            .flat_map(|minute| profile.due(next + minute * MINUTE).into_iter().map(move |g| (g, minute)))
            .collect();
        let expected = [("vision".to_owned(), 7 * 60 + 57), ("coding".to_owned(), 19 * 60 + 15)];
        assert_eq!(fired, expected, "07:57, in the hour before; 19:15, not 18:55 (the box would sleep by 19:40)");
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
        assert!(profile.due(next_monday + 7 * HOUR + 5 * MINUTE).is_empty(), "it is in use: already warm");
    }

    #[test]
    fn the_profile_survives_a_round_trip_through_json() {
        let profile = replayed_week();
        let text = serde_json::to_string(&profile).unwrap();
        assert_eq!(serde_json::from_str::<Profile>(&text).unwrap(), profile);
    }
}
