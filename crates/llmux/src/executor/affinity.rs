//! Carries out prompt-cache affinity ([`crate::router::affinity`]): before each pick the views learn how much
//! of the prompt each candidate most likely holds; the attempt records where the prompt went and, on a
//! llama.cpp server whose slots a probe counted, pins it to the slot that holds its prefix (`id_slot`).

use std::sync::{Arc, Mutex, MutexGuard};

use crate::config::{Config, Deployment};
use crate::protocol::openai::Operation;
use crate::router::affinity::{ChatPrompt, Prefix, PrefixCache, Shape, DEFAULT_SLOTS};
use crate::router::DeploymentView;
use crate::state::{DeploymentIx, Millis};

/// A prompt in flight on one slot: the slot counts as busy until the attempt's answer ends.
struct Lease {
    cache: Arc<Mutex<PrefixCache>>,
    id: Arc<str>,
    slot: usize,
}

impl Drop for Lease {
    fn drop(&mut self) {
        lock(&self.cache).release(&self.id, self.slot);
    }
}

fn lock(cache: &Mutex<PrefixCache>) -> MutexGuard<'_, PrefixCache> {
    cache.lock().unwrap_or_else(|e| e.into_inner())
}

/// The prompt of a chat request and its answer's token cap, when affinity applies (residency routing on).
pub(super) fn prompt_of(config: &Config, op: Operation, body: &[u8]) -> Option<(Prefix, u64)> {
    if op != Operation::Chat || !config.router.residency_routing {
        return None;
    }
    let chat: ChatPrompt<'_> = serde_json::from_slice(body).ok()?;
    Some((chat.prefix()?, chat.output_cap()))
}

impl super::Executor {
    /// Tells the views of `members` how much of `prefix` each most likely holds and whether its cache has
    /// room for a new conversation (when there is a choice).
    pub(super) fn mark_cached(&self, members: &[usize], prefix: Option<&Prefix>, views: &mut [DeploymentView]) {
        let Some(prefix) = prefix.filter(|_| members.len() > 1) else { return };
        let (config, state) = (&self.config, &self.state);
        let cache = state.prefix_cache();
        for (&i, view) in members.iter().zip(views.iter_mut()) {
            if let Some(d) = config.deployments.get(i) {
                view.cached = cache.lookup(&d.id, prefix).map_or(0, |hit| hit.tokens);
                view.cache_room = cache.has_room(&d.id, state.llama_slots(DeploymentIx(i)).unwrap_or(DEFAULT_SLOTS));
            }
        }
    }

    /// `prefix` is sent to deployment `d` at `now`: the slot it will most likely occupy is recorded (busy
    /// until the returned lease drops; other replicas are told), and returned when the engine takes `id_slot`
    /// (a llama.cpp server whose slots a probe counted). `None` when every slot is busy with llmux's requests:
    /// the engine queues it and chooses. Nothing is recorded for a deployment alone in its group on an engine
    /// without slots to pin: no decision would read it (this runs for every chat request).
    pub(super) fn place_prompt(
        &self,
        d: &Deployment,
        prefix: &Prefix,
        members: usize,
        now: Millis,
    ) -> Option<(Box<dyn Send + Sync>, Option<usize>)> {
        let state = &self.state;
        let speaks_openai = d.engine().is_some_and(|e| e.adapter() == crate::providers::Adapter::OpenAiCompatible);
        let llama_slots = state.llama_slots(DeploymentIx(d.index)).filter(|_| speaks_openai);
        if members < 2 && llama_slots.is_none() {
            return None;
        }
        let shape =
            Shape { slots: llama_slots.unwrap_or(DEFAULT_SLOTS), keeps: state.kept_prompts(DeploymentIx(d.index)) };
        let id: Arc<str> = Arc::from(d.id.as_str());
        let mut cache = state.prefix_cache();
        let slot = cache.place(&id, prefix, shape)?;
        cache.record(&id, shape, slot, prefix, now.0, true);
        drop(cache);
        state.share_prefix(&id, slot, prefix, now);
        let lease = Lease { cache: state.prefix_index().clone(), id, slot };
        Some((Box::new(lease), llama_slots.map(|_| slot)))
    }
}
