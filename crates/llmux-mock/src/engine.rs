//! The fake "model": what a request gets as its answer, independent of the
//! protocol it is asked in.
//!
//! Everything here is deterministic (no randomness, no wall clock), so tests
//! can predict replies, token counts and embeddings exactly.

use std::time::Duration;

use serde_json::Value;

use crate::config::{MockConfig, ToolCallSpec};
use crate::state::Ctx;
use crate::util::{fnv1a, splitmix64};

/// Words cycled through for `reply_tokens` filler replies.
const FILLER: &[&str] = &["lorem", "ipsum", "dolor", "sit", "amet", "consectetur", "adipiscing", "elit"];

/// What a generation request asks for, in protocol-neutral terms.
#[derive(Debug, Default)]
pub(crate) struct GenInput {
    /// Requested model name, as given.
    pub model: String,
    /// Last user message (chat) or the prompt (completion), for `{input}`.
    pub input: String,
    /// Characters of prompt text, for the prompt token estimate.
    pub prompt_chars: usize,
    /// Cap on emitted content tokens (`max_tokens` / `num_predict`).
    pub max_tokens: Option<u64>,
    /// Stop strings; the reply is cut before the first one found.
    pub stop: Vec<String>,
    /// Whether the request offers tools.
    pub has_tools: bool,
    /// The content of the last message when it is a tool result: the scripted tool call has been answered, so
    /// the reply is text (with `{tool_result}` filled in) and a client's tool loop ends.
    pub tool_result: Option<String>,
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Finish {
    /// Natural end or a stop string.
    Stop,
    /// The token cap was reached.
    Length,
    /// The reply is a tool call.
    ToolCalls,
}

impl Finish {
    /// OpenAI `finish_reason`.
    pub(crate) fn openai(self) -> &'static str {
        match self {
            Finish::Stop => "stop",
            Finish::Length => "length",
            Finish::ToolCalls => "tool_calls",
        }
    }

    /// Ollama `done_reason` (Ollama reports tool calls as a normal stop).
    pub(crate) fn ollama(self) -> &'static str {
        match self {
            Finish::Length => "length",
            Finish::Stop | Finish::ToolCalls => "stop",
        }
    }
}

/// The planned answer to one generation request.
#[derive(Debug)]
pub(crate) struct Plan {
    /// Reasoning tokens, sent before the content.
    pub thinking: Vec<String>,
    /// Content tokens; concatenated they form the reply text.
    pub content: Vec<String>,
    /// The tool call, when the reply is one.
    pub tool_call: Option<ToolCallSpec>,
    /// Why generation ended.
    pub finish: Finish,
    /// Prompt token estimate.
    pub prompt_tokens: u64,
    /// ... of which the slot's KV cache held this many (not read again).
    pub cached_tokens: u64,
}

impl Plan {
    /// The reply text.
    pub(crate) fn text(&self) -> String {
        self.content.concat()
    }

    /// The reasoning text, if any.
    pub(crate) fn thinking_text(&self) -> Option<String> {
        (!self.thinking.is_empty()).then(|| self.thinking.concat())
    }

    /// Prompt tokens the engine read (those its cache did not hold).
    pub(crate) fn evaluated_tokens(&self) -> u64 {
        self.prompt_tokens.saturating_sub(self.cached_tokens).max(1)
    }

    /// Tokens "generated": reasoning, content and the tool call's JSON.
    pub(crate) fn completion_tokens(&self) -> u64 {
        let tool = self.tool_call.as_ref().map_or(0, |t| estimate_tokens(t.name.len() + tool_args_string(t).len()));
        self.thinking.len() as u64 + self.content.len() as u64 + tool
    }

    /// How many paced steps a stream of this plan has; a tool call counts as
    /// one step per argument piece (OpenAI streams it that way).
    pub(crate) fn steps(&self) -> u64 {
        let tool = self.tool_call.as_ref().map_or(0, |t| split_args(&tool_args_string(t)).len());
        (self.thinking.len() + self.content.len() + tool) as u64
    }
}

/// Plans the answer to `input` under knobs `cfg`.
pub(crate) fn plan(cfg: &MockConfig, input: &GenInput) -> Plan {
    let prompt_tokens = estimate_tokens(input.prompt_chars);
    let thinking = cfg.thinking.as_deref().map(|t| tokenize(&render(t, cfg, input))).unwrap_or_default();
    if let (true, None, Some(call)) = (input.has_tools, &input.tool_result, &cfg.tool_call) {
        return Plan {
            thinking,
            content: Vec::new(),
            tool_call: Some(call.clone()),
            finish: Finish::ToolCalls,
            prompt_tokens,
            cached_tokens: 0,
        };
    }
    let mut content = match cfg.reply_tokens {
        Some(n) => filler(n),
        None => tokenize(&render(&cfg.reply, cfg, input)),
    };
    let mut finish = Finish::Stop;
    let text = content.concat();
    if let Some(cut) = input.stop.iter().filter(|s| !s.is_empty()).filter_map(|s| text.find(s.as_str())).min() {
        content = tokenize(&text[..cut]);
    }
    if let Some(max) = input.max_tokens {
        let max = usize::try_from(max).unwrap_or(usize::MAX);
        if content.len() > max {
            content.truncate(max);
            finish = Finish::Length;
        }
    }
    Plan { thinking, content, tool_call: None, finish, prompt_tokens, cached_tokens: 0 }
}

/// Fills the reply placeholders.
fn render(template: &str, cfg: &MockConfig, input: &GenInput) -> String {
    template
        .replace("{name}", &cfg.name)
        .replace("{model}", &input.model)
        .replace("{input}", &input.input)
        .replace("{tool_result}", input.tool_result.as_deref().unwrap_or(""))
}

/// The content of the last message of a chat when it is a tool result (`role: tool`).
pub(crate) fn tool_result(messages: &[Value]) -> Option<String> {
    let last = messages.last()?;
    (last.get("role").and_then(Value::as_str) == Some("tool")).then(|| content_text(last.get("content")))
}

/// `n` deterministic filler tokens.
fn filler(n: u32) -> Vec<String> {
    (0..n as usize)
        .map(|i| {
            let word = FILLER[i % FILLER.len()];
            if i == 0 {
                word.to_owned()
            } else {
                format!(" {word}")
            }
        })
        .collect()
}

/// Splits `text` into word-ish tokens, each carrying its leading whitespace,
/// so that the tokens concatenate back to `text` exactly.
pub(crate) fn tokenize(text: &str) -> Vec<String> {
    let mut tokens = Vec::new();
    let mut current = String::new();
    let mut seen_word = false;
    for c in text.chars() {
        if c.is_whitespace() && seen_word {
            tokens.push(std::mem::take(&mut current));
            seen_word = false;
        }
        if !c.is_whitespace() {
            seen_word = true;
        }
        current.push(c);
    }
    if !current.is_empty() {
        tokens.push(current);
    }
    tokens
}

/// The prompt/usage token estimate for `chars` characters: about four
/// characters per token, at least one.
pub(crate) fn estimate_tokens(chars: usize) -> u64 {
    (chars as u64 / 4).max(1)
}

/// A tool call's arguments as the JSON string OpenAI clients expect.
pub(crate) fn tool_args_string(call: &ToolCallSpec) -> String {
    call.arguments.to_string()
}

/// Splits a tool-arguments string into the pieces streamed one per chunk:
/// up to four, so clients must reassemble them.
pub(crate) fn split_args(args: &str) -> Vec<String> {
    let chars: Vec<char> = args.chars().collect();
    if chars.is_empty() {
        return vec![String::new()];
    }
    let size = chars.len().div_ceil(4);
    chars.chunks(size).map(|c| c.iter().collect()).collect()
}

/// The text of a message `content`: a string, or an array of parts whose
/// `text` fields are joined (OpenAI multi-part content).
pub(crate) fn content_text(content: Option<&Value>) -> String {
    match content {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => {
            parts.iter().filter_map(|p| p.get("text").and_then(Value::as_str)).collect::<Vec<_>>().join("")
        }
        _ => String::new(),
    }
}

/// Stop strings from a `stop` field that is a string or an array of strings.
pub(crate) fn stop_list(stop: Option<&Value>) -> Vec<String> {
    match stop {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).map(str::to_owned).collect(),
        _ => Vec::new(),
    }
}

/// Whether a `tools` field offers at least one tool.
pub(crate) fn has_tools(tools: Option<&Value>) -> bool {
    tools.and_then(Value::as_array).is_some_and(|t| !t.is_empty())
}

/// The deterministic, L2-normalised embedding of `text`.
pub(crate) fn embed(text: &str, dims: usize) -> Vec<f32> {
    let mut state = fnv1a(text.as_bytes());
    let raw: Vec<f32> = (0..dims)
        .map(|_| {
            // The top 24 bits fit an f32 mantissa exactly; map to [-1, 1).
            let bits = (splitmix64(&mut state) >> 40) as f32;
            bits / (1u32 << 23) as f32 - 1.0
        })
        .collect();
    let norm = raw.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        raw.into_iter().map(|x| x / norm).collect()
    } else {
        raw
    }
}

/// The delays a request is paced with.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Timing {
    /// Delay before response headers (reported as Ollama's load duration).
    pub latency: Duration,
    /// Delay before the first streamed chunk.
    pub ttft: Duration,
    /// Spacing between paced chunks.
    pub interval: Duration,
}

impl Timing {
    /// Time spent "generating" `steps` tokens after the first-token delay.
    pub(crate) fn generation(&self, steps: u64) -> Duration {
        self.interval.saturating_mul(u32::try_from(steps).unwrap_or(u32::MAX))
    }
}

impl Ctx {
    /// The pacing for this request: the configured delays on faultable
    /// (inference) paths, none elsewhere.
    pub(crate) fn timing(&self) -> Timing {
        if !self.faultable {
            return Timing::default();
        }
        // try_from keeps absurd speeds (zero, negative, NaN, or so small the
        // interval overflows) from panicking; they all mean "no pacing".
        let interval = Duration::try_from_secs_f64(1.0 / self.cfg.tokens_per_sec)
            .ok()
            .filter(|_| self.cfg.tokens_per_sec > 0.0)
            .unwrap_or(Duration::ZERO);
        Timing {
            latency: Duration::from_millis(self.cfg.latency_ms),
            ttft: Duration::from_millis(self.cfg.ttft_ms).saturating_add(self.prefill),
            interval,
        }
    }

    /// Waits as long as streaming `steps` tokens would take, so a
    /// non-streaming answer costs the same time as a streamed one.
    pub(crate) async fn simulate_generation(&self, steps: u64) {
        let t = self.timing();
        let total = t.ttft.saturating_add(t.generation(steps));
        if !total.is_zero() {
            tokio::time::sleep(total).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn input(model: &str) -> GenInput {
        GenInput { model: model.into(), input: "hi".into(), prompt_chars: 12, ..GenInput::default() }
    }

    #[test]
    fn tokenize_round_trips() {
        for text in ["Hello from h (m).", "  lead", "a  b\nc ", "", "x"] {
            assert_eq!(tokenize(text).concat(), text);
        }
        assert_eq!(tokenize("Hello from h."), vec!["Hello", " from", " h."]);
    }

    #[test]
    fn default_reply_names_host_and_model() {
        let cfg = MockConfig::new("clementine", &[]);
        let p = plan(&cfg, &input("llama3"));
        assert_eq!(p.text(), "Hello from clementine (llama3).");
        assert_eq!(p.finish, Finish::Stop);
        assert_eq!(p.prompt_tokens, 3);
        assert_eq!(p.completion_tokens(), 4);
    }

    #[test]
    fn stop_then_max_tokens() {
        let cfg = MockConfig::new("h", &[]);
        let mut i = input("m");
        i.stop = vec!["(m".into()];
        let p = plan(&cfg, &i);
        assert_eq!(p.text(), "Hello from h ");
        assert_eq!(p.finish, Finish::Stop);
        i.max_tokens = Some(2);
        let p = plan(&cfg, &i);
        assert_eq!(p.text(), "Hello from");
        assert_eq!(p.finish, Finish::Length);
    }

    #[test]
    fn filler_and_tool_calls() {
        let mut cfg = MockConfig::new("h", &[]);
        cfg.reply_tokens = Some(10);
        assert_eq!(plan(&cfg, &input("m")).content.len(), 10);
        cfg.tool_call = Some(ToolCallSpec::new("f", json!({"a": 1})));
        assert_eq!(plan(&cfg, &input("m")).tool_call, None);
        let mut i = input("m");
        i.has_tools = true;
        let p = plan(&cfg, &i);
        assert_eq!(p.finish, Finish::ToolCalls);
        assert!(p.content.is_empty());
    }

    #[test]
    fn a_tool_result_ends_the_tool_loop_with_text() {
        let mut cfg = MockConfig::new("h", &[]);
        cfg.reply = "the tool said {tool_result}".into();
        cfg.tool_call = Some(ToolCallSpec::new("f", json!({})));
        let messages = [json!({"role": "user", "content": "go"}), json!({"role": "tool", "content": "42"})];
        let mut i = input("m");
        i.has_tools = true;
        i.tool_result = tool_result(&messages);
        let p = plan(&cfg, &i);
        assert_eq!((p.finish, &p.tool_call, p.text().as_str()), (Finish::Stop, &None, "the tool said 42"));
        assert_eq!(tool_result(&messages[..1]), None);
    }

    #[test]
    fn split_args_reassembles() {
        let args = r#"{"location":"Paris, FR"}"#;
        let pieces = split_args(args);
        assert!(pieces.len() > 1);
        assert_eq!(pieces.concat(), args);
    }

    #[test]
    fn embeddings_are_deterministic_and_normalised() {
        let a = embed("hello", 16);
        assert_eq!(a, embed("hello", 16));
        assert_ne!(a, embed("world", 16));
        let norm: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5);
        assert!(embed("x", 0).is_empty());
    }
}
