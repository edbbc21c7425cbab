//! The KV-cache model: each of the engine's slots (`MockConfig::slots`) remembers the last prompt it read, and
//! a request that starts like it has only the rest read, at `MockConfig::prefill_tokens_per_sec`. What the
//! engine had to read is what it reports (llama.cpp's `timings.prompt_n` and `cache_n`, Ollama's
//! `prompt_eval_count`), so a router's prompt-cache affinity is measurable against the mock.
//!
//! Slot choice follows llama.cpp's server: the slot named by `id_slot`; otherwise, among idle slots, the one
//! whose prompt shares the largest part of the new one (more than half of it, llama.cpp's default
//! `--slot-prompt-similarity`), else the idle slot used least recently. With every slot busy the mock, which
//! never queues, takes the one used least recently.

use std::sync::{Arc, Mutex};

use serde_json::Value;

use crate::engine::{self, estimate_tokens};
use crate::state::lock;

/// llama.cpp's default `--slot-prompt-similarity`: a cached prompt is reused without `id_slot` only when it
/// covers more than this share of the new prompt.
const SIMILARITY: f64 = 0.5;

/// What the slots hold.
#[derive(Debug, Default)]
pub(crate) struct Slots {
    slots: Vec<Memory>,
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
    }
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

/// Takes a slot of the `count` for `prompt` to `model`: the one `id_slot` names, else llama.cpp's choice.
pub(crate) fn admit(slots: &Arc<Mutex<Slots>>, count: u32, model: &str, prompt: &str, id_slot: Option<u64>) -> Lease {
    let mut s = lock(slots);
    let count = usize::try_from(count.max(1)).unwrap_or(1);
    s.slots.resize_with(count, Memory::default);
    s.clock += 1;
    let shared = |m: &Memory| if m.model == model { common_prefix(&m.prompt, prompt) } else { 0 };
    let lru = |pool: &mut dyn Iterator<Item = usize>, s: &Slots| pool.min_by_key(|&i| s.slots[i].used);
    let named = id_slot.and_then(|n| usize::try_from(n).ok()).filter(|&n| n < count);
    let slot = named.unwrap_or_else(|| {
        let idle: Vec<usize> = (0..count).filter(|&i| s.slots[i].busy == 0).collect();
        let similar = idle
            .iter()
            .copied()
            .map(|i| (i, shared(&s.slots[i])))
            .filter(|&(_, n)| n as f64 > SIMILARITY * prompt.len() as f64)
            .max_by_key(|&(i, n)| (n, std::cmp::Reverse(i)))
            .map(|(i, _)| i);
        similar.or_else(|| lru(&mut idle.iter().copied(), &s)).or_else(|| lru(&mut (0..count), &s)).unwrap_or(0)
    });
    let clock = s.clock;
    let memory = &mut s.slots[slot];
    let common = shared(memory);
    // The whole prompt cached still leaves its last token to read, as llama.cpp does.
    let cached = if common == 0 { 0 } else { estimate_tokens(common).min(estimate_tokens(prompt.len()) - 1) };
    memory.model = model.to_owned();
    memory.prompt = prompt.to_owned();
    memory.used = clock;
    memory.busy += 1;
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
        let lease = admit(&self.app.kv, self.cfg.slots, model, &prompt, id_slot);
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
        let first = admit(&slots, 2, "m", &format!("{system}hello"), None);
        assert_eq!(first.cached, 0);
        drop(first);
        let second = admit(&slots, 2, "m", &format!("{system}hello, and more"), None);
        assert_eq!((second.slot, second.cached), (0, 1_001));
        // Busy: another session goes to the other slot and finds nothing.
        let other = admit(&slots, 2, "m", "another conversation", None);
        assert_eq!((other.slot, other.cached), (1, 0));
        drop((second, other));
        // The most similar idle slot, though not the least recently used.
        let third = admit(&slots, 2, "m", "another conversation, again", None);
        assert_eq!(third.slot, 1);
        drop(third);
        // A prompt sharing little with any slot: the least recently used one takes it.
        let fourth = admit(&slots, 2, "m", &format!("{}{}", &system[..100], "x".repeat(300)), None);
        assert_eq!((fourth.slot, fourth.cached), (0, 25));
        // id_slot wins, and another model's cache is no cache.
        let named = admit(&slots, 2, "other", "another conversation, continued", Some(1));
        assert_eq!((named.slot, named.cached), (1, 0));
    }
}
