//! The KV-cache model: each of the engine's slots (`MockConfig::slots`) remembers the last prompt it read, and
//! a request that starts like it has only the rest read, at `MockConfig::prefill_tokens_per_sec`. What the
//! engine had to read is what it reports (llama.cpp's `timings.prompt_n` and `cache_n`, Ollama's
//! `prompt_eval_count`), so a router's prompt-cache affinity is measurable against the mock.
//!
//! Slot choice follows llama.cpp's server: the slot named by `id_slot`; otherwise, among idle slots, the one
//! whose prompt shares the largest part of the new one (more than half of it, llama.cpp's default
//! `--slot-prompt-similarity`), else the idle slot used least recently. With every slot busy the mock, which
//! never queues, takes the one used least recently.
//!
//! With `MockConfig::kept_prompts`, the host-memory prompt cache of llama.cpp's server (`--cache-ram`, as in
//! the version tests/engines builds) is modelled too: a slot taken by the least-recently-used rule, or one that
//! would keep less than half of what it holds, saves its prompt there and takes back the kept prompt that
//! covers the most of the new one (and at least a quarter of itself); idle slots are saved there whenever a
//! request starts; the oldest kept prompts are forgotten first.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use serde_json::Value;

use crate::engine::{self, estimate_tokens};
use crate::state::lock;

/// llama.cpp's default `--slot-prompt-similarity`: a cached prompt is reused without `id_slot` only when it
/// covers more than this share of the new prompt.
const SIMILARITY: f64 = 0.5;

/// What the slots hold, and the prompts kept beyond them.
#[derive(Debug, Default)]
pub(crate) struct Slots {
    slots: Vec<Memory>,
    /// Prompts kept in host memory, oldest first: (model, prompt).
    kept: VecDeque<(String, String)>,
    /// Increases with every request: the least recently used slot has the smallest stamp.
    clock: u64,
}

#[derive(Debug, Default, Clone)]
struct Memory {
    model: String,
    prompt: String,
    used: u64,
    busy: u32,
}

/// A request's use of a slot: what it found cached, held (busy) until the last clone drops.
#[derive(Debug)]
pub(crate) struct Lease {
    slots: Arc<Mutex<Slots>>,
    /// The slot.
    pub(crate) slot: usize,
    /// Prompt tokens found in the slot's cache.
    pub(crate) cached: u64,
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(m) = lock(&self.slots).slots.get_mut(self.slot) {
            m.busy = m.busy.saturating_sub(1);
        }
    }
}

impl Slots {
    /// Forgets every cached prompt (the model left memory, or the mock was reset).
    pub(crate) fn clear(&mut self) {
        self.slots.clear();
        self.kept.clear();
    }

    /// Saves what `slot` holds in host memory, unless a kept prompt already covers it; kept prompts it covers
    /// are dropped, and the oldest beyond `cap`.
    fn save(&mut self, slot: usize, cap: usize) {
        let Some(m) = self.slots.get(slot).filter(|m| !m.prompt.is_empty()) else { return };
        let (model, prompt) = (m.model.clone(), m.prompt.clone());
        if self.kept.iter().any(|(km, kp)| *km == model && kp.starts_with(&prompt)) {
            return;
        }
        self.kept.retain(|(km, kp)| !(*km == model && prompt.starts_with(kp.as_str())));
        self.kept.push_back((model, prompt));
        while self.kept.len() > cap {
            self.kept.pop_front();
        }
    }

    /// Moves into `slot` the kept prompt of `model` that serves `prompt` better than what the slot holds (it
    /// covers more of the new prompt and keeps more of itself, and at least a quarter of itself).
    fn restore(&mut self, slot: usize, model: &str, prompt: &str) {
        let Some(m) = self.slots.get(slot) else { return };
        let ratio = |a: usize, b: usize| if b == 0 { -1.0 } else { a as f64 / b as f64 };
        let own = if m.model == model { common_prefix(&m.prompt, prompt) } else { 0 };
        let (mut keep_best, mut sim_best) = (ratio(own, m.prompt.len()), ratio(own, prompt.len()));
        let mut best = None;
        for (i, (_, kp)) in self.kept.iter().enumerate().filter(|(_, (km, _))| km == model) {
            let common = common_prefix(kp, prompt);
            let (keep, sim) = (ratio(common, kp.len()), ratio(common, prompt.len()));
            if keep >= 0.25 && keep_best < keep && sim_best < sim {
                (keep_best, sim_best, best) = (keep, sim, Some(i));
            }
        }
        if let Some((km, kp)) = best.and_then(|i| self.kept.remove(i)) {
            if let Some(m) = self.slots.get_mut(slot) {
                (m.model, m.prompt) = (km, kp);
            }
        }
    }
}

/// How a slot was chosen, which decides whether it consults the kept prompts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Choice {
    /// `id_slot` named it.
    Named,
    /// Its prompt covers most of the new one.
    Similar,
    /// The least recently used idle slot.
    LeastRecent,
}

/// The prompt as text the cache compares: the tools, then each message's role and content, in order.
pub(crate) fn prompt_text(tools: Option<&Value>, messages: &[Value]) -> String {
    let mut text = tools.map(Value::to_string).unwrap_or_default();
    for m in messages {
        text.push_str(m.get("role").and_then(Value::as_str).unwrap_or(""));
        text.push('\n');
        text.push_str(&engine::content_text(m.get("content")));
        text.push('\n');
    }
    text
}

/// Takes a slot of the `count` for `prompt` to `model`: the one `id_slot` names, else llama.cpp's choice;
/// with `kept` > 0 the slot saves and restores prompts in host memory as llama.cpp's does.
pub(crate) fn admit(
    slots: &Arc<Mutex<Slots>>,
    count: u32,
    kept: u32,
    model: &str,
    prompt: &str,
    id_slot: Option<u64>,
) -> Lease {
    let mut s = lock(slots);
    let count = usize::try_from(count.max(1)).unwrap_or(1);
    s.slots.resize_with(count, Memory::default);
    s.clock += 1;
    let shared = |m: &Memory| if m.model == model { common_prefix(&m.prompt, prompt) } else { 0 };
    let lru = |pool: &mut dyn Iterator<Item = usize>, s: &Slots| pool.min_by_key(|&i| s.slots[i].used);
    let named = id_slot.and_then(|n| usize::try_from(n).ok()).filter(|&n| n < count);
    let (slot, choice) = match named {
        Some(n) => (n, Choice::Named),
        None => {
            let idle: Vec<usize> = (0..count).filter(|&i| s.slots[i].busy == 0).collect();
            let similar = idle
                .iter()
                .copied()
                .map(|i| (i, shared(&s.slots[i])))
                .filter(|&(_, n)| n as f64 > SIMILARITY * prompt.len() as f64)
                .max_by_key(|&(i, n)| (n, std::cmp::Reverse(i)))
                .map(|(i, _)| i);
            match similar {
                Some(i) => (i, Choice::Similar),
                None => {
                    let i = lru(&mut idle.iter().copied(), &s).or_else(|| lru(&mut (0..count), &s)).unwrap_or(0);
                    (i, Choice::LeastRecent)
                }
            }
        }
    };
    let cap = usize::try_from(kept).unwrap_or(0);
    if cap > 0 {
        let m = &s.slots[slot];
        let gives_up = !m.prompt.is_empty() && shared(m) * 2 < m.prompt.len();
        if choice == Choice::LeastRecent || gives_up {
            s.save(slot, cap);
            s.restore(slot, model, prompt);
        }
    }
    let clock = s.clock;
    let memory = &mut s.slots[slot];
    let common = shared(memory);
    // The whole prompt cached still leaves its last token to read, as llama.cpp does.
    let cached = if common == 0 { 0 } else { estimate_tokens(common).min(estimate_tokens(prompt.len()) - 1) };
    memory.model = model.to_owned();
    memory.prompt = prompt.to_owned();
    memory.used = clock;
    memory.busy += 1;
    if cap > 0 {
        let idle: Vec<usize> = (0..count).filter(|&i| i != slot && s.slots[i].busy == 0).collect();
        for i in idle {
            s.save(i, cap);
        }
    }
    Lease { slots: slots.clone(), slot, cached }
}

impl crate::state::Ctx {
    /// Puts a chat request with `messages` (and `tools`) for `model` in a slot: the request then reads only
    /// what the slot's cache does not hold, at the configured prefill speed, and the plan reports it. Only a
    /// mock with a prefill speed models the cache; others read every prompt whole and at once.
    pub(crate) fn take_slot(
        &mut self,
        model: &str,
        tools: Option<&Value>,
        messages: &[Value],
        id_slot: Option<u64>,
        plan: &mut engine::Plan,
    ) {
        let rate = self.cfg.prefill_tokens_per_sec;
        if rate <= 0.0 {
            return;
        }
        let prompt = prompt_text(tools, messages);
        let lease = admit(&self.app.kv, self.cfg.slots, self.cfg.kept_prompts, model, &prompt, id_slot);
        plan.cached_tokens = lease.cached.min(plan.prompt_tokens.saturating_sub(1));
        let read = plan.evaluated_tokens();
        self.prefill = std::time::Duration::try_from_secs_f64(read as f64 / rate).unwrap_or_default();
        let mut stats = lock(&self.app.stats);
        stats.prompt_evaluated += read;
        stats.prompt_cached += plan.cached_tokens;
        drop(stats);
        self.slot = Some(Arc::new(lease));
    }
}

/// Bytes the two strings share from their start (on a character boundary).
fn common_prefix(a: &str, b: &str) -> usize {
    a.char_indices().zip(b.chars()).take_while(|((_, x), y)| x == y).last().map_or(0, |((i, c), _)| i + c.len_utf8())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prompt_that_continues_a_slots_prompt_is_read_only_from_where_it_differs() {
        let slots = Arc::new(Mutex::new(Slots::default()));
        let system = "s".repeat(4_000);
        let first = admit(&slots, 2, 0, "m", &format!("{system}hello"), None);
        assert_eq!(first.cached, 0);
        drop(first);
        let second = admit(&slots, 2, 0, "m", &format!("{system}hello, and more"), None);
        assert_eq!((second.slot, second.cached), (0, 1_001));
        // Busy: another session goes to the other slot and finds nothing.
        let other = admit(&slots, 2, 0, "m", "another conversation", None);
        assert_eq!((other.slot, other.cached), (1, 0));
        drop((second, other));
        // The most similar idle slot, though not the least recently used.
        let third = admit(&slots, 2, 0, "m", "another conversation, again", None);
        assert_eq!(third.slot, 1);
        drop(third);
        // A prompt sharing little with any slot: the least recently used one takes it.
        let fourth = admit(&slots, 2, 0, "m", &format!("{}{}", &system[..100], "x".repeat(300)), None);
        assert_eq!((fourth.slot, fourth.cached), (0, 25));
        // id_slot wins, and another model's cache is no cache.
        let named = admit(&slots, 2, 0, "other", "another conversation, continued", Some(1));
        assert_eq!((named.slot, named.cached), (1, 0));
    }

    #[test]
    fn a_slot_that_gives_up_its_prompt_takes_back_the_kept_one_the_new_prompt_continues() {
        let slots = Arc::new(Mutex::new(Slots::default()));
        let system = "s".repeat(400);
        let a = format!("{system}{}", "a".repeat(4_000));
        let b = format!("{system}{}", "b".repeat(4_000));
        drop(admit(&slots, 1, 8, "m", &a, None));
        drop(admit(&slots, 1, 8, "m", &b, None));
        // a's session returns: its slot holds b's prompt, which it would mostly lose, so it restores a's.
        let a2 = admit(&slots, 1, 8, "m", &format!("{a}, continued"), Some(0));
        assert_eq!(a2.cached, 1_100, "all of a's earlier prompt");
        drop(a2);
        // Without kept prompts only the system prompt is found.
        let plain = Arc::new(Mutex::new(Slots::default()));
        drop(admit(&plain, 1, 0, "m", &a, None));
        drop(admit(&plain, 1, 0, "m", &b, None));
        assert_eq!(admit(&plain, 1, 0, "m", &format!("{a}, continued"), Some(0)).cached, 100);
        // A named slot that keeps most of what it holds does not consult the kept prompts (llama.cpp's rule).
        let short = Arc::new(Mutex::new(Slots::default()));
        drop(admit(&short, 1, 8, "m", &a, None));
        drop(admit(&short, 1, 8, "m", &format!("{system}x"), None));
        assert_eq!(admit(&short, 1, 8, "m", &format!("{a}, continued"), Some(0)).cached, 100);
    }
}
