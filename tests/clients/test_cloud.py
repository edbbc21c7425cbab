"""Cloud providers behind the home lab, end to end through the official `openai` and `anthropic` SDKs.

The clouds are `llmux-mock` instances speaking each provider's wire format (Anthropic's Messages API on
`/v1/messages`, Gemini's on `/v1beta/models/{model}:{method}`, the OpenAI-compatible clouds on
`/v1/chat/completions`); the config names them as a LiteLLM config would (`anthropic/…`, `gemini/…`, `groq/…`, keys
from `os.environ/…` or the provider's own variable) with `api_base` pointing at the mock. No test reaches the
internet.
"""

from __future__ import annotations

import base64
import json
import os
import time

import anthropic
import pytest

from harness import MASTER_KEY, start_llmux, start_mock

ANTHROPIC_KEY = "sk-ant-test-0123456789abcdef"
GROQ_KEY = "gsk_test_0123456789abcdef"
CLAUDE = "claude-sonnet-4-5"
LLAMA = "llama-3.3-70b-versatile"
AZURE_KEY = "azure-key-0123456789abcdef"
AZURE_TOKEN = "eyJ0eXAiOiJKV1QiLCJhbGciOi-entra-test-token"
AZURE_DEPLOYMENT = "gpt-4o-prod"
GEMINI_KEY = "AIzaSy-test-0123456789abcdef"
FLASH = "gemini-2.5-flash"
GEMINI_EMBEDDING = "gemini-embedding-001"
PNG = base64.b64encode(
    bytes.fromhex(
        "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
        "1f15c4890000000d49444154789c6360000002000001e221bc330000000049454e44ae426082"
    )
).decode()
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


class Cloud:
    def __init__(self, log_dir):
        self.claude = start_mock("claude-cloud", [CLAUDE], log_dir)
        self.claude_small = start_mock("claude-small", [CLAUDE], log_dir)
        self.groq = start_mock("groq-cloud", [LLAMA], log_dir)
        self.local = start_mock("local-box", ["qwen3:8b"], log_dir)
        self.azure = start_mock("azure-cloud", [AZURE_DEPLOYMENT], log_dir)
        self.gemini = start_mock("gemini-cloud", [FLASH, GEMINI_EMBEDDING], log_dir)
        self.gemini_small = start_mock("gemini-small", [FLASH], log_dir)
        self.mocks = [self.claude, self.claude_small, self.groq, self.local, self.azure, self.gemini, self.gemini_small]
        # The provider's own variable for groq (no api_key in the config), os.environ/ for Anthropic, as LiteLLM.
        os.environ["GROQ_API_KEY"] = GROQ_KEY
        os.environ["MY_ANTHROPIC_KEY"] = ANTHROPIC_KEY
        os.environ["AZURE_API_KEY"] = AZURE_KEY
        os.environ["GEMINI_API_KEY"] = GEMINI_KEY
        config = {
            "model_list": [
                {"model_name": "claude", "litellm_params": {
                    "model": f"anthropic/{CLAUDE}", "api_base": self.claude.url,
                    "api_key": "os.environ/MY_ANTHROPIC_KEY"}},
                {"model_name": "fast", "litellm_params": {"model": f"groq/{LLAMA}", "api_base": self.groq.url + "/v1"}},
                # A local box first, Claude behind it.
                {"model_name": "coding", "litellm_params": {
                    "model": "ollama_chat/qwen3:8b", "api_base": self.local.url, "order": 1}},
                {"model_name": "coding", "litellm_params": {
                    "model": f"anthropic/{CLAUDE}", "api_base": self.claude.url,
                    "api_key": "os.environ/MY_ANTHROPIC_KEY", "order": 2}},
                # Two Claude deployments by order: a rate-limited first one cools down.
                {"model_name": "pair", "litellm_params": {
                    "model": f"anthropic/{CLAUDE}", "api_base": self.claude.url,
                    "api_key": "os.environ/MY_ANTHROPIC_KEY", "order": 1}},
                {"model_name": "pair", "litellm_params": {
                    "model": f"anthropic/{CLAUDE}", "api_base": self.claude_small.url,
                    "api_key": "os.environ/MY_ANTHROPIC_KEY", "order": 2}},
                # Azure OpenAI: the deployment in the path, the key as api-key; an Entra token for the second.
                {"model_name": "azure", "litellm_params": {
                    "model": f"azure/{AZURE_DEPLOYMENT}", "api_base": self.azure.url, "api_version": "2024-10-21"}},
                {"model_name": "azure-entra", "litellm_params": {
                    "model": f"azure/{AZURE_DEPLOYMENT}", "api_base": self.azure.url, "api_key": "",
                    "azure_ad_token": AZURE_TOKEN}},
                # Gemini as LiteLLM configs name it; a base that is only a host gets Gemini's /v1beta.
                {"model_name": "gemini", "litellm_params": {
                    "model": f"gemini/{FLASH}", "api_base": self.gemini.url, "api_key": "os.environ/GEMINI_API_KEY"}},
                {"model_name": "gemini-embed", "litellm_params": {
                    "model": f"gemini/{GEMINI_EMBEDDING}", "api_base": self.gemini.url + "/v1beta",
                    "api_key": "os.environ/GEMINI_API_KEY"}},
                {"model_name": "gemini-pair", "litellm_params": {
                    "model": f"gemini/{FLASH}", "api_base": self.gemini.url,
                    "api_key": "os.environ/GEMINI_API_KEY", "order": 1}},
                {"model_name": "gemini-pair", "litellm_params": {
                    "model": f"gemini/{FLASH}", "api_base": self.gemini_small.url,
                    "api_key": "os.environ/GEMINI_API_KEY", "order": 2}},
                {"model_name": "gemini-small", "litellm_params": {
                    "model": f"gemini/{FLASH}", "api_base": self.gemini_small.url,
                    "api_key": "os.environ/GEMINI_API_KEY"}},
                # A small-context Claude whose overflow goes to groq.
                {"model_name": "small", "litellm_params": {
                    "model": f"anthropic/{CLAUDE}", "api_base": self.claude_small.url,
                    "api_key": "os.environ/MY_ANTHROPIC_KEY"}},
            ],
            "router_settings": {
                "context_window_fallbacks": [{"small": ["fast"]}, {"gemini-small": ["fast"]}],
                "fallbacks": [{"claude": ["fast"]}],
                "content_policy_fallbacks": [{"azure": ["claude"]}],
            },
            "general_settings": {"master_key": MASTER_KEY},
        }
        self.llmux = start_llmux(config, log_dir, "llmux-cloud")

    def reset(self):
        for m in self.mocks:
            m.configure(tool_call=None, thinking=None, fault="none", reply=None, context_length=None)
            m.clear()

    def stop(self):
        self.llmux.proc.stop()
        for m in self.mocks:
            m.proc.stop()


@pytest.fixture(scope="module")
def cloud_lab(log_root):
    log_dir = log_root / "cloud"
    log_dir.mkdir(parents=True, exist_ok=True)
    lab = Cloud(log_dir)
    try:
        yield lab
    finally:
        lab.stop()


@pytest.fixture
def cloud(cloud_lab):
    cloud_lab.reset()
    return cloud_lab


def claude_sdk(cloud) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=cloud.llmux.base_url, api_key=MASTER_KEY, max_retries=0, timeout=30.0)


def last_messages_request(mock) -> dict:
    seen = mock.requests("/v1/messages")
    assert seen, "nothing reached the mock's /v1/messages"
    return seen[-1]


def test_chat_is_translated_to_the_messages_api_with_the_key_as_x_api_key(cloud):
    client = cloud.llmux.client()
    raw = client.chat.completions.with_raw_response.create(
        model="claude", messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    )
    answer = raw.parse()
    assert answer.choices[0].message.content == f"Hello from claude-cloud ({CLAUDE})."
    assert answer.choices[0].finish_reason == "stop"
    assert answer.usage.completion_tokens > 0
    sent = last_messages_request(cloud.claude)
    headers = {k.lower(): v for k, v in sent["headers"]}
    assert headers["x-api-key"] == ANTHROPIC_KEY
    assert headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in headers, "the key goes as x-api-key only"
    assert sent["body"]["system"] == [{"type": "text", "text": "Be brief."}]
    assert sent["body"]["max_tokens"] == 64000, "LiteLLM's default: the model's max_output_tokens"
    assert ANTHROPIC_KEY not in raw.headers.get("x-llmux-route", "")
    # Anthropic's rate-limit headers reach the client under the names LiteLLM gives them.
    assert raw.headers["x-ratelimit-remaining-requests"] == "49"
    assert raw.headers["x-ratelimit-limit-tokens"] == "30000"


def test_stream_becomes_openai_chunks_with_usage(cloud):
    client = cloud.llmux.client()
    stream = client.chat.completions.create(
        model="claude", messages=[{"role": "user", "content": "Hi"}], stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == f"Hello from claude-cloud ({CLAUDE})."
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    assert last_messages_request(cloud.claude)["body"]["stream"] is True


def test_tool_call_round_trip(cloud):
    cloud.claude.configure(tool_call={"name": "get_weather", "arguments": {"city": "Paris"}},
                           reply="It is {tool_result}.")
    client = cloud.llmux.client()
    messages = [{"role": "user", "content": "Weather in Paris?"}]
    first = client.chat.completions.create(model="claude", messages=messages, tools=[WEATHER])
    call = first.choices[0].message.tool_calls[0]
    assert first.choices[0].finish_reason == "tool_calls"
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Paris"}
    assert last_messages_request(cloud.claude)["body"]["tools"][0]["input_schema"]["required"] == ["city"]
    messages += [first.choices[0].message.model_dump(exclude_none=True),
                 {"role": "tool", "tool_call_id": call.id, "content": "sunny"}]
    second = client.chat.completions.create(model="claude", messages=messages, tools=[WEATHER])
    assert second.choices[0].message.content == "It is sunny."
    turns = last_messages_request(cloud.claude)["body"]["messages"]
    assert turns[1]["content"][0] == {"type": "tool_use", "id": call.id, "name": "get_weather",
                                      "input": {"city": "Paris"}}
    assert turns[2]["content"][0] == {"type": "tool_result", "tool_use_id": call.id, "content": "sunny"}

    # Streamed, the call arrives in pieces as OpenAI's does.
    stream = client.chat.completions.create(model="claude", messages=messages[:1], tools=[WEATHER], stream=True)
    args = "".join(
        c.choices[0].delta.tool_calls[0].function.arguments or ""
        for c in stream if c.choices and c.choices[0].delta.tool_calls
    )
    assert json.loads(args) == {"city": "Paris"}


def test_image_is_sent_as_a_base64_block(cloud):
    client = cloud.llmux.client()
    answer = client.chat.completions.create(model="claude", messages=[{"role": "user", "content": [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
    ]}])
    assert answer.choices[0].message.content
    block = last_messages_request(cloud.claude)["body"]["messages"][0]["content"][1]
    assert block == {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}


def test_reasoning_effort_turns_thinking_on_and_comes_back_as_reasoning_content(cloud):
    cloud.claude.configure(thinking="Let me think.")
    client = cloud.llmux.client()
    answer = client.chat.completions.create(
        model="claude", messages=[{"role": "user", "content": "Hi"}], reasoning_effort="low"
    )
    assert answer.choices[0].message.model_extra["reasoning_content"] == "Let me think."
    body = last_messages_request(cloud.claude)["body"]
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 1024}
    assert body["max_tokens"] > 1024
    stream = client.chat.completions.create(
        model="claude", messages=[{"role": "user", "content": "Hi"}], reasoning_effort="low", stream=True
    )
    reasoning = "".join((c.choices[0].delta.model_extra or {}).get("reasoning_content") or "" for c in stream if c.choices)
    assert reasoning == "Let me think."


def test_anthropic_clients_are_forwarded_as_sent(cloud):
    cloud.claude.configure(thinking="Hmm.")
    claude = claude_sdk(cloud)
    message = claude.messages.create(
        model="claude", max_tokens=300, system="Be brief.", metadata={"user_id": "u-1"},
        thinking={"type": "enabled", "budget_tokens": 100},
        messages=[{"role": "user", "content": "Hi"}],
    )
    assert message.id.startswith("msg_")
    assert [b.type for b in message.content] == ["thinking", "text"]
    assert message.content[0].signature, "the signed thinking block arrives whole"
    assert message.content[1].text == f"Hello from claude-cloud ({CLAUDE})."
    body = last_messages_request(cloud.claude)["body"]
    assert body["system"] == "Be brief.", "not rewritten into blocks: the client's own request"
    assert body["metadata"] == {"user_id": "u-1"} and body["model"] == CLAUDE
    with claude.messages.stream(model="claude", max_tokens=300, messages=[{"role": "user", "content": "Hi"}]) as s:
        kinds = [event.type for event in s]
        final = s.get_final_message()
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert final.content[-1].text == f"Hello from claude-cloud ({CLAUDE})."


def test_openai_compatible_preset_takes_the_key_from_the_providers_variable(cloud):
    answer = cloud.llmux.client().chat.completions.create(model="fast", messages=[{"role": "user", "content": "Hi"}])
    assert answer.choices[0].message.content == f"Hello from groq-cloud ({LLAMA})."
    sent = cloud.groq.requests("/v1/chat/completions")[-1]
    headers = {k.lower(): v for k, v in sent["headers"]}
    assert headers["authorization"] == f"Bearer {GROQ_KEY}"
    assert sent["body"]["model"] == LLAMA


def test_anthropic_429_cools_the_deployment_down(cloud):
    cloud.claude.configure(fault={"status": 429, "retry_after": 30})
    client = cloud.llmux.client()
    for attempt in range(3):
        answer = client.chat.completions.create(model="pair", messages=[{"role": "user", "content": "Hi"}])
        assert answer.choices[0].message.content == f"Hello from claude-small ({CLAUDE}).", attempt
    # Later requests do not try the rate-limited deployment again: it cools down for its retry-after.
    assert len(cloud.claude.requests("/v1/messages")) == 1


def test_anthropic_429_on_the_only_deployment_goes_to_the_fallback_group(cloud):
    cloud.claude.configure(fault={"status": 429, "retry_after": 1})
    raw = cloud.llmux.client().chat.completions.with_raw_response.create(
        model="claude", messages=[{"role": "user", "content": "Hi"}]
    )
    assert raw.parse().choices[0].message.content == f"Hello from groq-cloud ({LLAMA})."
    assert raw.headers["x-litellm-attempted-fallbacks"] == "1"


def test_local_box_down_falls_back_to_claude_in_the_same_group(cloud):
    cloud.local.configure(fault={"status": 503})
    answer = cloud.llmux.client().chat.completions.create(model="coding", messages=[{"role": "user", "content": "Hi"}])
    assert answer.choices[0].message.content == f"Hello from claude-cloud ({CLAUDE})."
    assert cloud.local.requests("/api/chat"), "the local box was tried first"


def test_prompt_too_long_for_claude_goes_to_the_context_window_fallback(cloud):
    cloud.claude_small.configure(context_length=20)
    long = "word " * 200
    answer = cloud.llmux.client().chat.completions.create(model="small", messages=[{"role": "user", "content": long}])
    assert answer.choices[0].message.content.startswith("Hello from groq-cloud")
    assert len(cloud.claude_small.requests("/v1/messages")) == 1, "a context-window error is not retried"
    # Through the Anthropic SDK the same: the client's request went to Claude as sent, then to groq translated.
    message = claude_sdk(cloud).messages.create(model="small", max_tokens=50, messages=[{"role": "user", "content": long}])
    assert message.content[0].text.startswith("Hello from groq-cloud")


def test_azure_deployment_path_version_and_api_key(cloud):
    client = cloud.llmux.client()
    answer = client.chat.completions.create(model="azure", messages=[{"role": "user", "content": "Hi"}])
    assert answer.choices[0].message.content == f"Hello from azure-cloud ({AZURE_DEPLOYMENT})."
    sent = cloud.azure.requests(f"/openai/deployments/{AZURE_DEPLOYMENT}/chat/completions")[-1]
    assert sent["query"] == "api-version=2024-10-21"
    headers = {k.lower(): v for k, v in sent["headers"]}
    assert headers["api-key"] == AZURE_KEY and "authorization" not in headers
    stream = client.chat.completions.create(model="azure", messages=[{"role": "user", "content": "Hi"}], stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == answer.choices[0].message.content
    # An Entra ID token instead of a key, and LiteLLM's default API version.
    client.chat.completions.create(model="azure-entra", messages=[{"role": "user", "content": "Hi"}])
    sent = cloud.azure.requests(f"/openai/deployments/{AZURE_DEPLOYMENT}/chat/completions")[-1]
    headers = {k.lower(): v for k, v in sent["headers"]}
    assert headers["authorization"] == f"Bearer {AZURE_TOKEN}" and "api-key" not in headers
    assert sent["query"] == "api-version=2025-02-01-preview"


def test_azure_content_filter_goes_to_the_content_policy_fallback(cloud):
    """Azure's content-filter refusal (its documented 400 body) moves the request to content_policy_fallbacks."""
    cloud.azure.configure(fault={"status": 400, "body": {"error": {
        "message": "The response was filtered due to the prompt triggering Azure OpenAI's content management "
                   "policy. Please modify your prompt and retry.",
        "type": None, "param": "prompt", "code": "content_filter", "status": 400}}})
    answer = cloud.llmux.client().chat.completions.create(model="azure", messages=[{"role": "user", "content": "Hi"}])
    assert answer.choices[0].message.content == f"Hello from claude-cloud ({CLAUDE})."
    assert len(cloud.azure.requests()) == 1, "a content-policy refusal is not retried"


GENERATE = f"/v1beta/models/{FLASH}:generateContent"
STREAM = f"/v1beta/models/{FLASH}:streamGenerateContent"


def last_gemini_request(mock, path: str = GENERATE) -> dict:
    seen = mock.requests(path)
    assert seen, f"nothing reached the mock's {path}"
    return seen[-1]


def test_gemini_chat_is_translated_with_the_key_as_x_goog_api_key(cloud):
    answer = cloud.llmux.client().chat.completions.create(
        model="gemini", messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
        temperature=0.3, max_tokens=50,
    )
    assert answer.choices[0].message.content == f"Hello from gemini-cloud ({FLASH})."
    assert answer.choices[0].finish_reason == "stop"
    assert answer.usage.prompt_tokens > 0 and answer.usage.completion_tokens > 0
    sent = last_gemini_request(cloud.gemini)
    headers = {k.lower(): v for k, v in sent["headers"]}
    assert headers["x-goog-api-key"] == GEMINI_KEY
    assert "authorization" not in headers, "the key goes as x-goog-api-key only"
    assert GEMINI_KEY not in (sent.get("query") or ""), "never in the URL"
    body = sent["body"]
    assert body["systemInstruction"] == {"parts": [{"text": "Be brief."}]}
    assert body["contents"] == [{"role": "user", "parts": [{"text": "Hi"}]}]
    assert body["generationConfig"] == {"temperature": 0.3, "maxOutputTokens": 50}


def test_gemini_stream_becomes_openai_chunks_with_usage(cloud):
    stream = cloud.llmux.client().chat.completions.create(
        model="gemini", messages=[{"role": "user", "content": "Hi"}], stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == f"Hello from gemini-cloud ({FLASH})."
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    assert last_gemini_request(cloud.gemini, STREAM)["query"] == "alt=sse"


def test_gemini_tool_call_round_trip(cloud):
    cloud.gemini.configure(tool_call={"name": "get_weather", "arguments": {"city": "Paris"}},
                           reply="It is {tool_result}.")
    client = cloud.llmux.client()
    messages = [{"role": "user", "content": "Weather in Paris?"}]
    first = client.chat.completions.create(model="gemini", messages=messages, tools=[WEATHER], tool_choice="required")
    call = first.choices[0].message.tool_calls[0]
    assert first.choices[0].finish_reason == "tool_calls"
    assert call.id.startswith("call_")
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Paris"}
    body = last_gemini_request(cloud.gemini)["body"]
    assert body["tools"][0]["functionDeclarations"][0]["parameters"]["required"] == ["city"]
    assert body["toolConfig"] == {"functionCallingConfig": {"mode": "ANY"}}
    messages += [first.choices[0].message.model_dump(exclude_none=True),
                 {"role": "tool", "tool_call_id": call.id, "content": "sunny"}]
    second = client.chat.completions.create(model="gemini", messages=messages, tools=[WEATHER])
    assert second.choices[0].message.content == "It is sunny."
    contents = last_gemini_request(cloud.gemini)["body"]["contents"]
    assert contents[1] == {"role": "model", "parts": [{"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}]}
    assert contents[2] == {"role": "user", "parts": [
        {"functionResponse": {"name": "get_weather", "response": {"content": "sunny"}}}]}

    stream = client.chat.completions.create(model="gemini", messages=messages[:1], tools=[WEATHER], stream=True)
    chunks = list(stream)
    args = "".join(
        c.choices[0].delta.tool_calls[0].function.arguments or ""
        for c in chunks if c.choices and c.choices[0].delta.tool_calls
    )
    assert json.loads(args) == {"city": "Paris"}
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["tool_calls"]


def test_gemini_image_is_sent_inline(cloud):
    cloud.gemini.configure(reply="I see {input}")
    answer = cloud.llmux.client().chat.completions.create(model="gemini", messages=[{"role": "user", "content": [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
    ]}])
    assert answer.choices[0].message.content == "I see What is this? [1 image(s)]"
    part = last_gemini_request(cloud.gemini)["body"]["contents"][0]["parts"][1]
    assert part == {"inlineData": {"mimeType": "image/png", "data": PNG}}


def test_gemini_reasoning_effort_asks_for_thoughts_and_returns_reasoning_content(cloud):
    cloud.gemini.configure(thinking="Let me think.")
    client = cloud.llmux.client()
    answer = client.chat.completions.create(
        model="gemini", messages=[{"role": "user", "content": "Hi"}], reasoning_effort="low"
    )
    assert answer.choices[0].message.model_extra["reasoning_content"] == "Let me think."
    assert answer.choices[0].message.content == f"Hello from gemini-cloud ({FLASH})."
    assert answer.usage.completion_tokens_details.reasoning_tokens > 0
    body = last_gemini_request(cloud.gemini)["body"]
    assert body["generationConfig"]["thinkingConfig"] == {"thinkingBudget": 1024, "includeThoughts": True}
    stream = client.chat.completions.create(
        model="gemini", messages=[{"role": "user", "content": "Hi"}], reasoning_effort="low", stream=True
    )
    reasoning = "".join((c.choices[0].delta.model_extra or {}).get("reasoning_content") or "" for c in stream if c.choices)
    assert reasoning == "Let me think."


def test_gemini_embeddings_go_through_batch_embed_contents(cloud):
    answer = cloud.llmux.client().embeddings.create(model="gemini-embed", input=["a cat", "a dog"], dimensions=8)
    assert [len(d.embedding) for d in answer.data] == [8, 8]
    assert answer.data[0].embedding != answer.data[1].embedding
    sent = last_gemini_request(cloud.gemini, f"/v1beta/models/{GEMINI_EMBEDDING}:batchEmbedContents")
    assert sent["body"]["requests"][1] == {
        "model": f"models/{GEMINI_EMBEDDING}", "content": {"parts": [{"text": "a dog"}]}, "outputDimensionality": 8}
    assert {k.lower(): v for k, v in sent["headers"]}["x-goog-api-key"] == GEMINI_KEY


def test_gemini_429_cools_the_deployment_down_for_its_retry_delay(cloud):
    # Gemini says how long to wait only in the body's RetryInfo (the mock sends no Retry-After header): 2 s here,
    # shorter than the 5 s default cooldown, so the deployment is back exactly when RetryInfo said.
    cloud.gemini.configure(fault={"status": 429, "retry_after": 2}, fault_times=1)
    client = cloud.llmux.client()
    for attempt in range(3):
        answer = client.chat.completions.create(model="gemini-pair", messages=[{"role": "user", "content": "Hi"}])
        assert answer.choices[0].message.content == f"Hello from gemini-small ({FLASH}).", attempt
    # Later requests do not try the rate-limited deployment again while it cools down.
    assert len(cloud.gemini.requests(GENERATE)) == 1
    time.sleep(2.5)
    answer = client.chat.completions.create(model="gemini-pair", messages=[{"role": "user", "content": "Hi"}])
    assert answer.choices[0].message.content == f"Hello from gemini-cloud ({FLASH}).", "cooled down for 2 s only"


def test_gemini_prompt_over_the_input_limit_goes_to_the_context_window_fallback(cloud):
    cloud.gemini_small.configure(context_length=20)
    long = "word " * 200
    answer = cloud.llmux.client().chat.completions.create(
        model="gemini-small", messages=[{"role": "user", "content": long}]
    )
    assert answer.choices[0].message.content.startswith("Hello from groq-cloud")
    assert len(cloud.gemini_small.requests(GENERATE)) == 1, "a context-window error is not retried"
