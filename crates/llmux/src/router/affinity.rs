//! Prompt-cache affinity: which deployment (and, on llama.cpp, which slot) most likely still holds a request's
//! prompt prefix in its KV cache.
//!
//! Coding agents resend the same long prefix turn after turn; an engine that still holds it skips re-reading it,
//! which on a P40 or an M-series Mac saves seconds to tens of seconds per turn. The index is approximate, like
//! SGLang's cache-aware router's: for each deployment it remembers the last prompt of each of the engine's slots
//! as a chain of hashes over message boundaries, and a request matches the longest chain prefix it shares. An
//! engine that keeps earlier prompts beyond its slots (llama.cpp's host-memory prompt cache) and restores one
//! when its conversation returns has those remembered too ([`KeptPrompts`], per engine profile), so a session
//! whose slot another conversation took still goes back to the engine that can restore it. It needs no client
//! cooperation. Pure data with explicit times: the executor records what it sent and asks
//! before each pick, and the rule that uses the answer is in [`super::pick`].

use std::collections::{HashMap, VecDeque};
use std::hash::{DefaultHasher, Hasher};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

pub use crate::providers::profile::KeptPrompts;

/// Slots assumed for an engine that does not say how many it has (llama.cpp's and Ollama's usual parallelism).
pub const DEFAULT_SLOTS: usize = 4;
/// More slots than this are not tracked (a vLLM server reports none; its prefix cache is bigger than any list).
const MAX_SLOTS: usize = 64;
/// Message boundaries remembered per slot; a longer conversation matches on its first ones only.
const MAX_LINKS: usize = 1_024;

/// One message boundary of a prompt: the hash of everything up to and including the message, and the
/// estimated tokens up to there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    /// Hash of the prompt up to this boundary (the tools, then each message's JSON, in order).
    pub hash: u64,
    /// Estimated tokens up to this boundary (bytes / 4).
    pub tokens: u64,
}

/// A chat prompt as a KV cache sees it: its message boundaries, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Prefix {
    links: Vec<Link>,
}

impl Prefix {
    /// The prefix chain of an OpenAI chat body (`tools`, then `messages`); `None` when it has no messages.
    /// Messages are hashed as the client wrote them: agents resend earlier turns byte for byte.
    pub fn of_chat(body: &[u8]) -> Option<Prefix> {
        let chat: ChatPrompt<'_> = serde_json::from_slice(body).ok()?;
        chat.prefix()
    }

    /// A prefix from its links (what another replica recorded).
    pub fn from_links(links: Vec<Link>) -> Prefix {
        Prefix { links }
    }

    /// Its links.
    pub fn links(&self) -> &[Link] {
        &self.links
    }

    /// Estimated tokens of the whole prompt.
    pub fn tokens(&self) -> u64 {
        self.links.last().map_or(0, |l| l.tokens)
    }

    /// Estimated tokens of the longest prefix this prompt shares with `cached` (whole messages only).
    pub fn shared(&self, cached: &[Link]) -> u64 {
        self.links.iter().zip(cached).take_while(|(a, b)| a.hash == b.hash).last().map_or(0, |(a, _)| a.tokens)
    }
}

/// The parts of an OpenAI chat body that make up the prompt a KV cache holds, read without copying.
#[derive(Debug, Deserialize)]
pub struct ChatPrompt<'a> {
    #[serde(borrow, default)]
    messages: Vec<&'a RawValue>,
    #[serde(borrow, default)]
    tools: Option<&'a RawValue>,
    /// The answer's token cap (current name).
    #[serde(default)]
    max_completion_tokens: Option<u64>,
    /// ... and the legacy one.
    #[serde(default)]
    max_tokens: Option<u64>,
}

impl ChatPrompt<'_> {
    /// Its prefix chain; `None` without messages.
    pub fn prefix(&self) -> Option<Prefix> {
        if self.messages.is_empty() {
            return None;
        }
        let mut hasher = DefaultHasher::new();
        let mut bytes = 0u64;
        if let Some(tools) = self.tools {
            hasher.write(tools.get().as_bytes());
            bytes += tools.get().len() as u64;
        }
        let links = self
            .messages
            .iter()
            .take(MAX_LINKS)
            .map(|m| {
                hasher.write(m.get().as_bytes());
                bytes += m.get().len() as u64;
                Link { hash: hasher.finish(), tokens: bytes.div_ceil(4) }
            })
            .collect();
        Some(Prefix { links })
    }

    /// The answer's token cap, 0 when the request sets none.
    pub fn output_cap(&self) -> u64 {
        self.max_completion_tokens.or(self.max_tokens).unwrap_or(0)
    }
}

/// What one slot of an engine last held, as far as llmux knows.
#[derive(Debug, Clone, Default)]
struct Memory {
    links: Vec<Link>,
    /// When it was last used (ms on the state clock).
    used: u64,
    /// Requests llmux has in flight on it.
    busy: u32,
}

impl Memory {
    /// Whether the engine gives up what this slot holds for `prefix` (and so saves it and restores a kept
    /// prompt in its place): llama.cpp does when it would keep less than half of it.
    fn gives_up(&self, prefix: &Prefix) -> bool {
        let own = self.links.last().map_or(0, |l| l.tokens);
        own > 0 && prefix.shared(&self.links) * 2 < own
    }
}

/// What llmux knows of one deployment's prompt cache.
#[derive(Debug, Clone, Default)]
struct Deployment {
    /// What each slot holds now.
    slots: Vec<Memory>,
    /// Earlier prompts the engine keeps beyond its slots, oldest first.
    kept: VecDeque<Vec<Link>>,
}

impl Deployment {
    /// `slot` now holds `prefix`: what it held before is kept (where the engine keeps prompts), and kept
    /// prompts `prefix` continues are gone (the engine moved them into the slot).
    fn hold(&mut self, slot: usize, prefix: &Prefix, used: u64, keeps: KeptPrompts) {
        let Some(m) = self.slots.get_mut(slot) else { return };
        let old = std::mem::take(&mut m.links);
        m.links.extend_from_slice(&prefix.links);
        m.used = used;
        let continues = |links: &[Link]| links.last().is_some_and(|l| prefix.shared(links) == l.tokens);
        self.kept.retain(|links| !continues(links));
        if keeps.prompts == 0 || old.is_empty() || continues(&old) {
            return;
        }
        self.kept.push_back(old);
        let tokens = |kept: &VecDeque<Vec<Link>>| kept.iter().filter_map(|l| l.last()).map(|l| l.tokens).sum::<u64>();
        while self.kept.len() > keeps.prompts || (self.kept.len() > 1 && tokens(&self.kept) > keeps.tokens) {
            self.kept.pop_front();
        }
    }
}

/// How a deployment's engine caches prompts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    /// Its slots (requests it runs at once, each with its own KV cache).
    pub slots: usize,
    /// What it keeps beyond them.
    pub keeps: KeptPrompts,
}

impl Shape {
    /// An engine with `slots` slots that keeps nothing beyond them.
    pub fn slots(slots: usize) -> Shape {
        Shape { slots, keeps: KeptPrompts::default() }
    }

    fn slot_count(self) -> usize {
        self.slots.clamp(1, MAX_SLOTS)
    }
}

/// Where a request's prefix is cached on one deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hit {
    /// The slot holding it, or `None` when the engine keeps it beyond its slots (it restores it into a slot
    /// that gives up what it holds).
    pub slot: Option<usize>,
    /// Estimated tokens of the prefix it holds.
    pub tokens: u64,
}

/// The prefix index: per deployment id (so a reload keeps it), what each slot last held and what the engine
/// keeps beyond its slots.
#[derive(Debug, Default)]
pub struct PrefixCache {
    deployments: HashMap<Arc<str>, Deployment>,
}

impl PrefixCache {
    /// Where deployment `id` holds the longest prefix of `prefix`, if it holds some; a slot wins a tie.
    pub fn lookup(&self, id: &str, prefix: &Prefix) -> Option<Hit> {
        let d = self.deployments.get(id)?;
        let slots =
            d.slots.iter().enumerate().map(|(slot, m)| Hit { slot: Some(slot), tokens: prefix.shared(&m.links) });
        let kept = d.kept.iter().map(|links| Hit { slot: None, tokens: prefix.shared(links) });
        slots
            .chain(kept)
            .filter(|hit| hit.tokens > 0)
            .max_by_key(|hit| (hit.tokens, hit.slot.is_some(), std::cmp::Reverse(hit.slot.unwrap_or(0))))
    }

    /// The slot a request with `prefix` should use on deployment `id`: the one holding the longest prefix of
    /// it while llmux has nothing in flight there; when the engine keeps that prefix beyond its slots, the idle
    /// slot used least recently among those that give up what they hold (so the engine restores it); else the
    /// idle slot used least recently (its cache is the least likely to be wanted again). `None` when every
    /// slot is busy (the engine then queues the request and picks itself).
    pub fn place(&self, id: &str, prefix: &Prefix, shape: Shape) -> Option<usize> {
        let slots = shape.slot_count();
        let Some(d) = self.deployments.get(id) else { return Some(0) };
        let idle = |slot: &usize| d.slots.get(*slot).is_none_or(|m| m.busy == 0);
        let used = |slot: &usize| d.slots.get(*slot).map_or(0, |m| m.used);
        match self.lookup(id, prefix) {
            Some(Hit { slot: Some(slot), .. }) if slot < slots && idle(&slot) => return Some(slot),
            Some(Hit { slot: None, .. }) => {
                let gives_up = |slot: &usize| d.slots.get(*slot).is_some_and(|m| m.gives_up(prefix));
                if let Some(slot) = (0..slots).filter(idle).filter(gives_up).min_by_key(used) {
                    return Some(slot);
                }
            }
            _ => {}
        }
        (0..slots).filter(idle).min_by_key(used)
    }

    /// Whether deployment `id`, whose engine has `slots` slots, has one llmux has sent no prompt to.
    pub fn has_room(&self, id: &str, slots: usize) -> bool {
        let slots = slots.clamp(1, MAX_SLOTS);
        self.deployments.get(id).is_none_or(|d| d.slots.len() < slots || d.slots.iter().any(|m| m.links.is_empty()))
    }

    /// Deployment `id` (of `shape`) was sent `prefix` on `slot` at `now`; `busy` when the request is in flight
    /// here (to be [`PrefixCache::release`]d), not when another replica reports it.
    pub fn record(&mut self, id: &Arc<str>, shape: Shape, slot: usize, prefix: &Prefix, now: u64, busy: bool) {
        let d = self.deployments.entry(id.clone()).or_default();
        d.slots.resize_with(shape.slot_count(), Memory::default);
        d.hold(slot, prefix, now, shape.keeps);
        if let Some(m) = d.slots.get_mut(slot) {
            m.busy += u32::from(busy);
        }
    }

    /// Another replica sent `prefix` to `slot` of deployment `id` (which keeps `keeps`) at `at`: the slot holds
    /// it now, unless this replica sent it something later.
    pub fn learn(&mut self, id: &Arc<str>, slot: usize, prefix: &Prefix, at: u64, keeps: KeptPrompts) {
        if slot >= MAX_SLOTS {
            return;
        }
        let d = self.deployments.entry(id.clone()).or_default();
        if d.slots.len() <= slot {
            d.slots.resize_with(slot + 1, Memory::default);
        }
        if d.slots.get(slot).is_some_and(|m| m.used < at) {
            d.hold(slot, prefix, at, keeps);
        }
    }

    /// A request recorded as busy on `slot` of deployment `id` ended.
    pub fn release(&mut self, id: &str, slot: usize) {
        if let Some(m) = self.deployments.get_mut(id).and_then(|d| d.slots.get_mut(slot)) {
            m.busy = m.busy.saturating_sub(1);
        }
    }

    /// Forgets deployments no longer configured (after a reload).
    pub fn retain(&mut self, keep: impl Fn(&str) -> bool) {
        self.deployments.retain(|id, _| keep(id));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat(messages: &[&str]) -> Prefix {
        let messages: Vec<String> =
            messages.iter().enumerate().map(|(i, m)| format!(r#"{{"role":"r{i}","content":"{m}"}}"#)).collect();
        let body = format!(r#"{{"model":"coding","messages":[{}]}}"#, messages.join(","));
        Prefix::of_chat(body.as_bytes()).unwrap()
    }

    #[test]
    fn a_prompt_shares_the_messages_it_repeats_from_the_start() {
        let system = "s".repeat(4_000);
        let turn1 = chat(&[&system, "fix the bug"]);
        let turn2 = chat(&[&system, "fix the bug", "done", "now the tests"]);
        assert_eq!(turn2.shared(turn1.links()), turn1.tokens(), "all of the first turn is reused");
        assert!(turn1.tokens() > 1_000);
        let edited = chat(&[&system, "fix the other bug", "done"]);
        assert_eq!(edited.shared(turn1.links()), turn1.links()[0].tokens, "only the system prompt is shared");
        let other = chat(&["another system prompt", "fix the bug"]);
        assert_eq!(other.shared(turn1.links()), 0, "a changed first message shares nothing");
        assert!(Prefix::of_chat(br#"{"model":"m","messages":[]}"#).is_none());
        assert!(Prefix::of_chat(b"not json").is_none());
    }

    #[test]
    fn tools_are_part_of_the_prefix() {
        let a = Prefix::of_chat(br#"{"tools":[{"a":1}],"messages":[{"role":"user","content":"x"}]}"#).unwrap();
        let b = Prefix::of_chat(br#"{"tools":[{"b":1}],"messages":[{"role":"user","content":"x"}]}"#).unwrap();
        assert_eq!(a.shared(b.links()), 0);
    }

    #[test]
    fn the_index_finds_the_slot_holding_the_longest_prefix() {
        let id: Arc<str> = Arc::from("d1");
        let mut cache = PrefixCache::default();
        let (one, two) = (chat(&["a", "b"]), chat(&["x", "y"]));
        cache.record(&id, Shape::slots(2), 0, &one, 10, false);
        cache.record(&id, Shape::slots(2), 1, &two, 20, false);
        let next = chat(&["x", "y", "z"]);
        assert_eq!(cache.lookup("d1", &next), Some(Hit { slot: Some(1), tokens: two.tokens() }));
        assert_eq!(cache.lookup("d2", &next), None, "another deployment holds nothing");
        assert_eq!(cache.place("d1", &next, Shape::slots(2)), Some(1));
        assert!(!cache.has_room("d1", 2) && cache.has_room("d1", 3) && cache.has_room("d2", 1));
    }

    #[test]
    fn a_busy_slot_is_not_reused_and_the_least_recently_used_idle_one_is() {
        let id: Arc<str> = Arc::from("d");
        let mut cache = PrefixCache::default();
        let (a, b, c) = (chat(&["a"]), chat(&["b"]), chat(&["c"]));
        cache.record(&id, Shape::slots(3), 0, &a, 10, true);
        cache.record(&id, Shape::slots(3), 1, &b, 30, false);
        cache.record(&id, Shape::slots(3), 2, &c, 20, false);
        assert_eq!(
            cache.place("d", &a, Shape::slots(3)),
            Some(2),
            "slot 0 holds it but is busy; slot 2 is the oldest idle"
        );
        cache.record(&id, Shape::slots(3), 1, &b, 40, true);
        cache.record(&id, Shape::slots(3), 2, &c, 50, true);
        assert_eq!(cache.place("d", &a, Shape::slots(3)), None, "every slot busy: the engine decides");
        cache.release("d", 0);
        assert_eq!(cache.place("d", &a, Shape::slots(3)), Some(0), "free again, and it holds the prefix");
        assert_eq!(cache.place("fresh", &a, Shape::slots(3)), Some(0));
    }

    #[test]
    fn what_another_replica_sent_is_learned_unless_this_one_sent_something_later() {
        let id: Arc<str> = Arc::from("d");
        let mut cache = PrefixCache::default();
        let (mine, theirs) = (chat(&["mine"]), chat(&["theirs"]));
        cache.record(&id, Shape::slots(2), 0, &mine, 50, false);
        cache.learn(&id, 0, &theirs, 40, KeptPrompts::default());
        assert!(cache.lookup("d", &mine).is_some(), "an older report changes nothing");
        cache.learn(&id, 0, &theirs, 60, KeptPrompts::default());
        cache.learn(&id, 3, &theirs, 60, KeptPrompts::default());
        assert_eq!(cache.lookup("d", &theirs).and_then(|h| h.slot), Some(0));
        assert!(cache.lookup("d", &mine).is_none());
    }

    #[test]
    fn an_engine_that_keeps_prompts_beyond_its_slots_is_found_holding_a_session_its_slot_gave_up() {
        let id: Arc<str> = Arc::from("llama");
        let llama = Shape { slots: 1, keeps: KeptPrompts { prompts: 2, tokens: 1_000_000 } };
        let system = "s".repeat(2_000);
        let mut cache = PrefixCache::default();
        let a1 = chat(&[&system, &"a".repeat(4_000)]);
        cache.record(&id, llama, 0, &a1, 10, false);
        let b1 = chat(&[&system, &"b".repeat(4_000)]);
        cache.record(&id, llama, 0, &b1, 20, false);
        let a2 = chat(&[&system, &"a".repeat(4_000), "more"]);
        assert_eq!(cache.lookup("llama", &a2), Some(Hit { slot: None, tokens: a1.tokens() }), "kept, not in a slot");
        assert_eq!(cache.place("llama", &a2, llama), Some(0), "the slot gives up b's prompt: the engine restores a's");
        cache.record(&id, llama, 0, &a2, 30, false);
        assert_eq!(cache.lookup("llama", &a2).and_then(|h| h.slot), Some(0));
        assert_eq!(cache.lookup("llama", &b1), Some(Hit { slot: None, tokens: b1.tokens() }), "b's is kept now");
        assert_eq!(cache.lookup("llama", &a1).and_then(|h| h.slot), Some(0), "a's earlier prompt moved into the slot");

        // The oldest kept prompts go first; an engine that keeps none remembers only its slots.
        for (i, c) in ["c", "d", "e"].iter().enumerate() {
            cache.record(&id, llama, 0, &chat(&[&system, &c.repeat(4_000)]), 40 + i as u64, false);
        }
        assert!(cache.lookup("llama", &b1).is_some_and(|h| h.tokens < b1.tokens()), "only the system prompt is left");
        let plain: Arc<str> = Arc::from("plain");
        cache.record(&plain, Shape::slots(1), 0, &a1, 10, false);
        cache.record(&plain, Shape::slots(1), 0, &b1, 20, false);
        assert_eq!(cache.lookup("plain", &a2), Some(Hit { slot: Some(0), tokens: a1.links()[0].tokens }));

        // The slot that gives up what it holds is chosen over the least recently used one, which would keep
        // its own prompt (it shares most of it) and not restore the session's.
        let two = Shape { slots: 2, keeps: llama.keeps };
        let pair: Arc<str> = Arc::from("pair");
        cache.record(&pair, two, 0, &a1, 10, false);
        cache.record(&pair, two, 0, &chat(&[&system, "x"]), 20, false);
        cache.record(&pair, two, 1, &chat(&[&system, &"z".repeat(4_000)]), 30, false);
        assert_eq!(cache.lookup("pair", &a2).and_then(|h| h.slot), None);
        assert_eq!(cache.place("pair", &a2, two), Some(1));
        cache.record(&pair, two, 1, &chat(&[&system, "y"]), 40, false);
        assert_eq!(cache.place("pair", &a2, two), Some(0), "none gives up: the least recently used");
    }

    #[test]
    fn a_reload_forgets_deployments_that_are_gone() {
        let mut cache = PrefixCache::default();
        cache.record(&Arc::from("gone"), Shape::slots(1), 0, &chat(&["a"]), 1, false);
        cache.record(&Arc::from("kept"), Shape::slots(1), 0, &chat(&["a"]), 1, false);
        cache.retain(|id| id == "kept");
        assert!(cache.lookup("gone", &chat(&["a"])).is_none());
        assert!(cache.lookup("kept", &chat(&["a"])).is_some());
    }
}
