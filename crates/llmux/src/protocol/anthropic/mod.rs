//! Anthropic's Messages API (`POST /v1/messages`, `POST /v1/messages/count_tokens`), served by any engine.
//!
//! A request ([`request`]) becomes an OpenAI chat request ([`convert`]): the system prompt a system message,
//! content blocks OpenAI parts (images as data URLs or URLs), tool results `tool` messages placed right after the
//! assistant turn that called them, thinking a reasoning effort. The answer comes back ([`answer`]) as Anthropic's
//! `message`, or as its event stream, always named with the model the client asked for.

mod answer;
mod convert;
mod request;
#[cfg(test)]
mod tests;

use bytes::Bytes;

use crate::config::Config;
use crate::error::{Dialect, Error};
use crate::protocol::openai::Operation;
use crate::protocol::translate::{to_bytes, Canonical, ChunkEncoder, NativeRoute, Translator};
use crate::providers::{Adapter, Endpoint};

/// `POST /v1/messages`, for one request.
#[derive(Debug, Default)]
pub struct Messages {
    /// The model name the client sent, answered back in `model`.
    model: String,
    /// The request's estimated input tokens (for `message_start`, before the engine reports usage).
    estimate: u64,
}

impl Messages {
    /// A translator for one request.
    pub fn new() -> Self {
        Messages::default()
    }
}

impl Translator for Messages {
    fn dialect(&self) -> Dialect {
        Dialect::Anthropic
    }

    fn request(&mut self, body: &[u8], config: &Config) -> Result<Canonical, Error> {
        let req = request::parse(body)?;
        self.model = req.model.clone().unwrap_or_default();
        self.estimate = req.estimate_tokens();
        let chat = req.into_openai()?;
        let body = serde_json::to_vec(&chat).map_err(|e| Error::Internal(format!("serialising the request: {e}")))?;
        let native = reaches_anthropic(config, &self.model)
            .then(|| NativeRoute { endpoint: Endpoint::AnthropicMessages, model: self.model.clone() });
        Ok(Canonical { op: Operation::Chat, body, native })
    }

    fn response(&mut self, openai: &[u8]) -> Result<Bytes, Error> {
        answer::whole(openai, &self.model)
    }

    fn stream(&mut self) -> Box<dyn ChunkEncoder> {
        Box::new(answer::Encoder::new(self.model.clone(), self.estimate))
    }
}

/// Whether a request for `model` may be served by an `anthropic/` deployment (of its group or of a group its
/// `fallbacks` name): then the client's own request is kept for it, to be forwarded as sent. Only then, since
/// a request kept whole cannot begin its stream with keep-alive comments while a local engine loads.
fn reaches_anthropic(config: &Config, model: &str) -> bool {
    let anthropic_in = |name: &str| {
        config.resolve(name).is_some_and(|r| {
            r.deployments
                .iter()
                .any(|&i| config.deployments[i].engine().is_some_and(|e| e.adapter() == Adapter::Anthropic))
        })
    };
    if anthropic_in(model) {
        return true;
    }
    let group = config.resolve(model).map_or(model, |r| r.group);
    let router = &config.router;
    [&router.fallbacks, &router.context_window_fallbacks, &router.content_policy_fallbacks]
        .into_iter()
        .flatten()
        .filter(|(from, _)| from == model || from == group)
        .flat_map(|(_, to)| to)
        .chain(&router.default_fallbacks)
        .any(|name| anthropic_in(name))
}

/// `POST /v1/messages/count_tokens`: `{"input_tokens": N}`, estimated from the text of the system prompt,
/// messages and tools (characters / 4, as llmux estimates elsewhere) without calling an engine.
pub fn count_tokens(body: &[u8]) -> Result<Bytes, Error> {
    let req = request::parse(body)?;
    to_bytes(&serde_json::json!({"input_tokens": req.estimate_tokens()}))
}
