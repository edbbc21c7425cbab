//! Ollama's own API as clients call it (`/api/chat`, `/api/generate`, `/api/embed`, `/api/embeddings`); the
//! model-list routes (`/api/tags`, `/api/ps`, `/api/show`, …) are in `server::ollama`.
//!
//! Each request becomes an OpenAI request (`request.rs`) and the OpenAI answer becomes Ollama's, whole or as
//! NDJSON lines (`answer.rs`). What cannot be carried, and why:
//!
//! - `/api/generate`'s `suffix`, `template` and `raw` travel as extra fields: an `ollama/` deployment (Ollama's
//!   `/api/generate`) honours them, a chat engine does not (its own template applies, there is no fill-in-the-middle).
//! - `context` (deprecated token memory) is not sent on and no answer carries one, so clients have none to return.
//! - An empty `messages` / `prompt` (Ollama's "load the model" / "unload it" with `keep_alive: 0`) is refused with a
//!   400: llmux loads models on demand and does not manage engines' memory.
//! - Durations are measured by llmux (nanoseconds since the request reached it), not reported by the engine:
//!   `load_duration` is 0, `prompt_eval_duration` is the wait for the first token of a stream (0 for a whole
//!   answer), `eval_duration` the rest. Counts come from the engine's usage.
//! - `logprobs` / `top_logprobs` reach the engine as OpenAI fields, but the answers carry no log probabilities.

mod answer;
mod request;
#[cfg(test)]
mod tests;

use std::borrow::Cow;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use crate::config::Config;
use crate::error::{Dialect, Error};
use crate::protocol::openai::Operation;
use crate::protocol::translate::{Canonical, ChunkEncoder, NativeRoute, Translator};
use crate::providers::Endpoint;

/// The Ollama version llmux reports on `/api/version`: recent enough that clients enable tools, thinking and
/// structured outputs (Open WebUI and others compare it against minimums).
pub const VERSION: &str = "0.12.0";

/// Which Ollama route a request came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `POST /api/chat`.
    Chat,
    /// `POST /api/generate`.
    Generate,
    /// `POST /api/embed`.
    Embed,
    /// `POST /api/embeddings` (the older single-prompt form).
    Embeddings,
}

impl Route {
    /// The OpenAI operation this route becomes.
    pub fn operation(self) -> Operation {
        match self {
            Route::Chat | Route::Generate => Operation::Chat,
            Route::Embed | Route::Embeddings => Operation::Embeddings,
        }
    }
}

/// One request on an Ollama route.
#[derive(Debug)]
pub struct Ollama {
    route: Route,
    /// When llmux got the request: durations in the answer are measured from here.
    started: Instant,
    /// The model name as the client sent it (answers repeat it, whatever name routed).
    model: String,
}

impl Ollama {
    /// A translator for one request on `route`.
    pub fn new(route: Route) -> Self {
        Ollama { route, started: Instant::now(), model: String::new() }
    }
}

impl Translator for Ollama {
    fn dialect(&self) -> Dialect {
        Dialect::Ollama
    }

    fn request(&mut self, body: &[u8], config: &Config) -> Result<Canonical, Error> {
        let (model, body) = request::to_openai(self.route, body, config)?;
        self.model = model;
        let endpoint = match self.route {
            Route::Chat => Endpoint::OllamaChat,
            Route::Generate => Endpoint::OllamaGenerate,
            Route::Embed => Endpoint::OllamaEmbed,
            Route::Embeddings => Endpoint::OllamaEmbeddings,
        };
        let native = Some(NativeRoute { endpoint, model: self.model.clone() });
        Ok(Canonical { op: self.route.operation(), body, native })
    }

    fn response(&mut self, openai: &[u8]) -> Result<Bytes, Error> {
        let took = elapsed_ns(self.started);
        match self.route {
            Route::Chat | Route::Generate => answer::whole(self.route, &self.model, openai, took),
            Route::Embed | Route::Embeddings => answer::embeddings(self.route, &self.model, openai, took),
        }
    }

    fn stream(&mut self) -> Box<dyn ChunkEncoder> {
        Box::new(answer::Lines::new(self.route == Route::Generate, std::mem::take(&mut self.model), self.started))
    }

    fn stream_content_type(&self) -> &'static str {
        "application/x-ndjson"
    }

    fn keepalive(&self) -> bool {
        // NDJSON has no comment line: a stream begins only once an engine answers, so a failure before the first
        // token can still move to another deployment.
        false
    }
}

/// Whether an Ollama model name has a tag (`qwen3:8b`; the `:` after the last `/`, so a registry port is not one).
pub fn has_tag(name: &str) -> bool {
    name.rsplit('/').next().is_some_and(|last| last.contains(':'))
}

/// A name as Ollama lists it: with its tag, `:latest` when it has none. Ollama clients pick names from the list
/// and Open WebUI looks a name up with `:latest` added, so both spellings must be found; llmux accepts either.
pub fn listed_name(name: &str) -> Cow<'_, str> {
    if has_tag(name) {
        Cow::Borrowed(name)
    } else {
        Cow::Owned(format!("{name}:latest"))
    }
}

/// The name that routes for what an Ollama client sent: the name itself, or `x` for `x:latest`, or `x:latest` for
/// `x` (Ollama treats them as one model). An unknown name is Ollama's 404 "model not found".
pub fn routable_name(config: &Config, op: Operation, name: &str) -> Result<String, Error> {
    let first = match crate::router::resolve(config, op, name) {
        Ok(_) => return Ok(name.to_owned()),
        Err(e) => e,
    };
    let other = match name.strip_suffix(":latest") {
        Some(base) => Cow::Borrowed(base),
        None if !has_tag(name) => Cow::Owned(format!("{name}:latest")),
        None => return Err(first),
    };
    if !other.is_empty() && crate::router::resolve(config, op, &other).is_ok() {
        return Ok(other.into_owned());
    }
    Err(first)
}

/// Nanoseconds since `since`.
fn elapsed_ns(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// `time` as RFC 3339 in UTC with microseconds, as Ollama writes `created_at` and `modified_at`.
pub fn rfc3339(time: SystemTime) -> String {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(i64::try_from(days).unwrap_or(0));
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60,
        since.subsec_micros()
    )
}

/// Now, as [`rfc3339`].
pub fn now_rfc3339() -> String {
    rfc3339(SystemTime::now())
}

/// (year, month, day) of a day count since 1970-01-01 (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, u32::try_from(month).unwrap_or(1), u32::try_from(day).unwrap_or(1))
}
