//! `tpm` limits count the tokens the engine reports for an answer (LiteLLM counts the usage after the call),
//! not only the prompt estimate llmux counts when the attempt starts.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed step is a failed test

mod common;

use common::*;
use llmux_mock::MockConfig;
use serde_json::json;

/// The mock answers every request with this many completion tokens, and reports them.
const REPLY_TOKENS: u32 = 200;
/// Above the prompt estimate of a short prompt (a few tokens) twice, below what the engine reports for one answer.
const TPM: u32 = 100;

fn body(model: &str, stream: bool, include_usage: bool) -> String {
    let mut body = json!({"model": model, "stream": stream, "messages": [{"role": "user", "content": "Say hello"}]});
    if include_usage {
        body["stream_options"] = json!({"include_usage": true});
    }
    body.to_string()
}

/// The status of a request, its stream read to the end.
async fn status(llmux: &Llmux, model: &str, stream: bool, include_usage: bool) -> u16 {
    let body = body(model, stream, include_usage);
    if stream {
        llmux.stream("/v1/chat/completions", &body).await.0.as_u16()
    } else {
        llmux.post("/v1/chat/completions", &body).await.status.as_u16()
    }
}

#[tokio::test]
async fn a_tpm_limit_is_reached_by_the_tokens_the_engine_reports() {
    let mut config = MockConfig::new("e", &["m"]);
    config.reply_tokens = Some(REPLY_TOKENS);
    let engine = mock_with(config).await;
    let base = engine.base_url();
    // One deployment per way an answer comes back, each with its own minute's count.
    let yaml = format!(
        r#"model_list:
  - model_name: ollama
    litellm_params: {{model: ollama_chat/m, api_base: "{base}", tpm: {TPM}}}
  - model_name: ollama-stream
    litellm_params: {{model: ollama_chat/m, api_base: "{base}", tpm: {TPM}}}
  - model_name: pass
    litellm_params: {{model: openai/m, api_base: "{base}/v1", tpm: {TPM}}}
  - model_name: pass-stream
    litellm_params: {{model: openai/m, api_base: "{base}/v1", tpm: {TPM}}}
  - model_name: pass-stream-no-usage
    litellm_params: {{model: openai/m, api_base: "{base}/v1", tpm: {TPM}}}
router_settings:
  routing_strategy: usage-based-routing-v2
"#
    );
    let llmux = Llmux::start(&yaml).await;
    for (model, stream, include_usage) in
        [("ollama", false, false), ("ollama-stream", true, false), ("pass", false, false), ("pass-stream", true, true)]
    {
        assert_eq!(status(&llmux, model, stream, include_usage).await, 200, "{model}: the first request");
        // The estimate (a few tokens) is now the engine's count (over 200): the next one is over the limit.
        assert_eq!(status(&llmux, model, stream, include_usage).await, 429, "{model}: the engine's usage counts");
    }
    // A passed-through stream that carries no usage (the client did not ask for it) stays on the estimate.
    for _ in 0..2 {
        assert_eq!(status(&llmux, "pass-stream-no-usage", true, false).await, 200, "only estimates counted");
    }
    assert_eq!(posts(&engine).len(), 6);
}
