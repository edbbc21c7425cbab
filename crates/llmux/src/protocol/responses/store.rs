//! The responses llmux keeps for `previous_response_id`, `item_reference` and `GET /v1/responses/{id}`.
//!
//! In memory, bounded by count and by bytes (oldest out first), shared by every request of one process and
//! kept across config reloads (it lives in `AppState`, not in the config). With Redis configured, a [`Shared`]
//! copy (`crate::shared_responses`) lets replicas answer for each other.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;

use crate::protocol::openai::ChatMessage;

/// How many responses are kept when nothing else is said.
pub const DEFAULT_MAX_COUNT: usize = 10_000;
/// How many bytes (of serialised responses and conversations) are kept when nothing else is said.
pub const DEFAULT_MAX_BYTES: usize = 256 * 1024 * 1024;

/// One stored response.
#[derive(Debug, Serialize, Deserialize)]
pub struct Stored {
    /// The Response object as the client got it (what `GET` answers), kept as its JSON text: it is written once
    /// and read rarely.
    pub response: Box<RawValue>,
    /// The whole conversation up to and including this response's answer, as chat messages (without the
    /// `instructions`, which `previous_response_id` does not carry over).
    pub conversation: Vec<ChatMessage>,
    /// The request's input items that had an `id`, for `item_reference`.
    pub input_items: Vec<Value>,
    /// Roughly how much memory this entry holds.
    #[serde(skip)]
    pub bytes: usize,
}

/// About how many bytes `value` holds: its text plus a fixed cost per node.
fn value_size(value: &Value) -> usize {
    const NODE: usize = 16;
    match value {
        Value::String(s) => NODE + s.len(),
        Value::Array(items) => NODE + items.iter().map(value_size).sum::<usize>(),
        Value::Object(map) => NODE + map.iter().map(|(k, v)| k.len() + value_size(v)).sum::<usize>(),
        _ => NODE,
    }
}

/// About how many bytes a chat message holds.
fn message_size(message: &ChatMessage) -> usize {
    let content = match &message.content {
        Some(crate::protocol::openai::MessageContent::Text(text)) => text.len(),
        Some(crate::protocol::openai::MessageContent::Parts(parts)) => parts
            .iter()
            .map(|p| p.text.as_ref().map_or(0, String::len) + p.image_url.as_ref().map_or(0, |u| u.url().len()) + 16)
            .sum(),
        None => 0,
    };
    let calls: usize = message
        .tool_calls
        .iter()
        .flatten()
        .map(|c| c.function.name.len() + c.function.arguments.len() + c.id.as_ref().map_or(0, String::len) + 32)
        .sum();
    let extra: usize = message.extra.iter().map(|(k, v)| k.len() + value_size(v)).sum();
    64 + content + calls + extra + message.reasoning_content.as_ref().map_or(0, String::len)
}

/// A copy of the store that other replicas see (Redis); writes go there in the background.
pub trait Shared: Send + Sync {
    /// Copies a stored response.
    fn put(&self, id: &str, stored: &Stored);
    /// Deletes a response everywhere.
    fn delete(&self, id: &str);
    /// What another replica stored under `id`.
    fn fetch<'a>(&'a self, id: &'a str) -> Pin<Box<dyn Future<Output = Option<Stored>> + Send + 'a>>;
}

impl Stored {
    /// An entry, its size measured.
    pub fn new(response: Box<RawValue>, conversation: Vec<ChatMessage>, input_items: Vec<Value>) -> Self {
        Stored { response, conversation, input_items, bytes: 0 }.measured()
    }

    /// Sizes the entry by a walk over its text (serialising it only to count bytes cost as much as the rest
    /// of the request's translation).
    fn measured(mut self) -> Self {
        let messages: usize = self.conversation.iter().map(message_size).sum();
        let items: usize = self.input_items.iter().map(value_size).sum();
        self.bytes = self.response.get().len() + messages + items;
        self
    }

    /// The output or input item with `id`, if this response has it.
    pub fn item(&self, id: &str) -> Option<Value> {
        let has = |item: &&Value| item.get("id").and_then(Value::as_str) == Some(id);
        if let Some(found) = self.input_items.iter().find(has) {
            return Some(found.clone());
        }
        let response: Value = serde_json::from_str(self.response.get()).ok()?;
        let output = response.get("output").and_then(Value::as_array)?;
        output.iter().find(has).cloned()
    }
}

/// Stored responses, for `previous_response_id` and `GET /v1/responses/{id}`.
#[derive(Debug)]
pub struct Store {
    inner: Mutex<Inner>,
    max_count: usize,
    max_bytes: usize,
    shared: OnceLock<Arc<dyn Shared>>,
}

impl std::fmt::Debug for dyn Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Shared")
    }
}

#[derive(Debug, Default)]
struct Inner {
    by_id: HashMap<String, Arc<Stored>>,
    /// Ids, oldest first (deleted ones are removed too).
    order: VecDeque<String>,
    bytes: usize,
}

impl Default for Store {
    fn default() -> Self {
        Store::with_limits(DEFAULT_MAX_COUNT, DEFAULT_MAX_BYTES)
    }
}

impl Store {
    /// An empty store with the default bounds.
    pub fn new() -> Self {
        Store::default()
    }

    /// An empty store keeping at most `max_count` responses and about `max_bytes` bytes.
    pub fn with_limits(max_count: usize, max_bytes: usize) -> Self {
        Store { inner: Mutex::new(Inner::default()), max_count, max_bytes, shared: OnceLock::new() }
    }

    /// Copies every later write and delete to `shared`, and lets [`Store::get_or_fetch`] read from it. Set once.
    pub fn share(&self, shared: Arc<dyn Shared>) {
        let _ = self.shared.set(shared);
    }

    /// Whether a shared copy is attached.
    pub fn is_shared(&self) -> bool {
        self.shared.get().is_some()
    }

    /// The response under `id`: this replica's, else the shared copy's (kept here from then on).
    pub async fn get_or_fetch(&self, id: &str) -> Option<Arc<Stored>> {
        if let Some(found) = self.get(id) {
            return Some(found);
        }
        let fetched = self.shared.get()?.fetch(id).await?.measured();
        self.insert(id.to_owned(), fetched);
        self.get(id)
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the maps half-updated in a way that matters here.
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Keeps `entry` under `id`, dropping the oldest entries while the store is over its bounds. An entry
    /// larger than the whole byte budget is not kept.
    pub fn put(&self, id: String, entry: Stored) {
        if let Some(shared) = self.shared.get() {
            shared.put(&id, &entry);
        }
        self.insert(id, entry);
    }

    fn insert(&self, id: String, entry: Stored) {
        if entry.bytes > self.max_bytes || self.max_count == 0 {
            return;
        }
        let mut inner = self.lock();
        if let Some(old) = inner.by_id.remove(&id) {
            inner.bytes -= old.bytes;
            inner.order.retain(|x| x != &id);
        }
        inner.bytes += entry.bytes;
        inner.by_id.insert(id.clone(), Arc::new(entry));
        inner.order.push_back(id);
        while inner.by_id.len() > self.max_count || inner.bytes > self.max_bytes {
            let Some(oldest) = inner.order.pop_front() else { break };
            if let Some(old) = inner.by_id.remove(&oldest) {
                inner.bytes -= old.bytes;
            }
        }
    }

    /// The response stored under `id`.
    pub fn get(&self, id: &str) -> Option<Arc<Stored>> {
        self.lock().by_id.get(id).cloned()
    }

    /// Removes the response stored under `id` (here and in the shared copy); whether this replica had one.
    pub fn delete(&self, id: &str) -> bool {
        if let Some(shared) = self.shared.get() {
            shared.delete(id);
        }
        let mut inner = self.lock();
        match inner.by_id.remove(id) {
            Some(old) => {
                inner.bytes -= old.bytes;
                inner.order.retain(|x| x != id);
                true
            }
            None => false,
        }
    }

    /// An output or input item of any stored response, by its id (for `item_reference`), newest first.
    pub fn item(&self, id: &str) -> Option<Value> {
        let inner = self.lock();
        inner.order.iter().rev().filter_map(|r| inner.by_id.get(r)).find_map(|s| s.item(id))
    }

    /// How many responses are stored.
    pub fn len(&self) -> usize {
        self.lock().by_id.len()
    }

    /// Whether nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// `value` as stored JSON text, for tests.
#[cfg(test)]
pub(crate) fn raw_json(value: &Value) -> Box<RawValue> {
    serde_json::value::to_raw_value(value).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entry(text: &str) -> Stored {
        Stored::new(
            raw_json(&json!({"output": [{"id": format!("msg_{text}"), "type": "message"}], "text": text})),
            vec![],
            vec![],
        )
    }

    #[test]
    fn count_bound_drops_the_oldest() {
        let store = Store::with_limits(2, usize::MAX);
        store.put("a".into(), entry("a"));
        store.put("b".into(), entry("b"));
        store.put("c".into(), entry("c"));
        assert!(store.get("a").is_none());
        assert!(store.get("b").is_some() && store.get("c").is_some());
        assert_eq!(store.len(), 2);
    }

    #[test]
    fn byte_bound_drops_the_oldest_and_refuses_giants() {
        let size = entry("x").bytes;
        let store = Store::with_limits(100, size * 2 + size / 2);
        store.put("a".into(), entry("a"));
        store.put("b".into(), entry("b"));
        store.put("c".into(), entry("c"));
        assert!(store.get("a").is_none(), "over the byte budget, the oldest goes");
        assert_eq!(store.len(), 2);
        let giant = Stored::new(raw_json(&json!({"text": "y".repeat(size * 3)})), vec![], vec![]);
        store.put("g".into(), giant);
        assert!(store.get("g").is_none());
        assert_eq!(store.len(), 2, "a giant pushes nothing out");
    }

    #[test]
    fn delete_frees_and_items_are_found() {
        let store = Store::with_limits(10, usize::MAX);
        store.put("a".into(), entry("a"));
        assert_eq!(store.item("msg_a").and_then(|v| v.get("type").cloned()), Some(json!("message")));
        assert!(store.delete("a"));
        assert!(!store.delete("a"));
        assert!(store.is_empty());
        assert!(store.item("msg_a").is_none());
    }
}
