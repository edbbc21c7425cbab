//! The queue for a free slot, per model group, in priority order: when every candidate of a group is at its
//! `max_parallel_requests`, requests wait here, and a freed slot goes to the one with the lowest `priority`
//! (LiteLLM's request field, or `llmux_settings.groups.<name>.priority`), the earliest first among equals — so a
//! voice command is not stuck behind an agent's batch. A request that arrives while others with the same or a
//! lower priority wait joins the queue instead of taking the slot they wait for.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

/// A waiting request's place: its priority, then its arrival.
type Key = (i64, u64);

/// Whether `me` (or, not queued, a request of priority `me.0` arriving now) may take a free slot of a group
/// whose queue is `waiting`: nobody waits ahead of it.
fn may_take(waiting: &BTreeSet<Key>, me: Key) -> bool {
    waiting.first().is_none_or(|first| *first >= me)
}

/// Every group's queue.
#[derive(Default)]
pub struct Queues {
    groups: Mutex<HashMap<String, BTreeSet<Key>>>,
    arrivals: AtomicU64,
    /// Requests waiting in all groups: every request asks [`Queues::may_enter`], and with nobody waiting the
    /// answer needs no lock.
    waiting: AtomicUsize,
}

impl Queues {
    fn groups(&self) -> std::sync::MutexGuard<'_, HashMap<String, BTreeSet<Key>>> {
        self.groups.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Requests waiting in `group`'s queue.
    pub fn waiting(&self, group: &str) -> u32 {
        self.groups().get(group).map_or(0, |q| u32::try_from(q.len()).unwrap_or(u32::MAX))
    }

    /// Whether a request of `priority` not in the queue may try for a slot of `group` now.
    pub fn may_enter(&self, group: &str, priority: i64) -> bool {
        self.waiting.load(Ordering::Acquire) == 0
            || self.groups().get(group).is_none_or(|q| may_take(q, (priority, u64::MAX)))
    }

    /// Takes a place in `group`'s queue; it is left when the place is dropped, and `left` is called then so
    /// those behind look again.
    pub fn join<'a>(&'a self, group: &str, priority: i64, left: &'a (dyn Fn() + Sync)) -> Place<'a> {
        let key = (priority, self.arrivals.fetch_add(1, Ordering::Relaxed));
        self.groups().entry(group.to_owned()).or_default().insert(key);
        self.waiting.fetch_add(1, Ordering::AcqRel);
        Place { queues: self, group: group.to_owned(), key, left }
    }
}

/// A request's place in a group's queue, held while it waits.
pub struct Place<'a> {
    queues: &'a Queues,
    group: String,
    key: Key,
    left: &'a (dyn Fn() + Sync),
}

impl Place<'_> {
    /// Whether nobody waits ahead of this request.
    pub fn first(&self) -> bool {
        self.queues.groups().get(&self.group).is_none_or(|q| may_take(q, self.key))
    }
}

impl Drop for Place<'_> {
    fn drop(&mut self) {
        {
            let mut groups = self.queues.groups();
            if let Some(q) = groups.get_mut(&self.group) {
                if q.remove(&self.key) {
                    self.queues.waiting.fetch_sub(1, Ordering::AcqRel);
                }
                if q.is_empty() {
                    groups.remove(&self.group);
                }
            }
        }
        (self.left)();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lowest_priority_then_the_earliest_goes_first_and_arrivals_queue_behind_equals() {
        let queues = Queues::default();
        let left = std::sync::atomic::AtomicU32::new(0);
        let on_leave = || {
            left.fetch_add(1, Ordering::Relaxed);
        };
        let batch = queues.join("g", 10, &on_leave);
        let voice = queues.join("g", 0, &on_leave);
        let second_batch = queues.join("g", 10, &on_leave);
        assert!(voice.first() && !batch.first() && !second_batch.first());
        assert_eq!(queues.waiting("g"), 3);
        assert!(queues.may_enter("other", 10), "another group's queue is its own");
        assert!(!queues.may_enter("g", 0), "an arrival queues behind a waiting request of the same priority");
        assert!(queues.may_enter("g", -1), "... but not behind a lower one");
        drop(voice);
        assert!(batch.first() && !second_batch.first(), "then the earlier of equals");
        drop(batch);
        assert!(second_batch.first());
        drop(second_batch);
        assert_eq!(queues.waiting("g"), 0);
        assert_eq!(left.load(Ordering::Relaxed), 3, "each leaving wakes those behind");
        assert!(queues.may_enter("g", 100));
    }
}
