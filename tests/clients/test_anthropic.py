"""Anthropic's Messages API through llmux, driven by the official `anthropic` SDK: Ollama engines behind the
home-lab aliases, and an OpenAI-compatible engine passed through."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import anthropic
import httpx
import pytest

from harness import MASTER_KEY, OAI_GROUP, OAI_HOST, OAI_UPSTREAM_MODEL, dump, expected_deployment, start_llmux, start_mock

# A 1x1 PNG.
PNG = base64.b64encode(
    bytes.fromhex(
        "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
        "1f15c4890000000d49444154789c6360000002000001e221bc330000000049454e44ae426082"
    )
).decode()

WEATHER_TOOL = {
    "name": "get_weather",
    "description": "Current weather for a city",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["c", "f"]}},
        "required": ["city"],
    },
}
ARGS = {"city": "Paris, FR", "unit": "c", "days": [1, 2], "detail": {"wind": True}}


def sdk(base_url: str, api_key: str = MASTER_KEY) -> anthropic.Anthropic:
    # No SDK retries: what a test sees is what llmux did.
    return anthropic.Anthropic(base_url=base_url, api_key=api_key, max_retries=0, timeout=30.0)


@pytest.fixture
def claude(lab) -> anthropic.Anthropic:
    lab.reset_mocks()
    for mock in lab.mocks.values():
        mock.configure(reply=None)
    return sdk(lab.llmux.base_url)


def host_of(lab, model: str):
    return lab.mocks[expected_deployment(model)[1]]


def last_chat(mock) -> dict:
    chats = mock.requests("/api/chat")
    assert chats, "nothing reached the engine's /api/chat"
    return chats[-1]["body"]


def test_message_with_system_blocks(lab, claude):
    mock = host_of(lab, "tools_fast")
    mock.configure(reply="Bonjour: {input}")
    msg = claude.messages.create(
        model="tools_fast",
        max_tokens=64,
        system=[
            {"type": "text", "text": "You are terse.", "cache_control": {"type": "ephemeral"}},
            {"type": "text", "text": "Answer in French."},
        ],
        messages=[{"role": "user", "content": "hello llmux"}],
        metadata={"user_id": "user-42"},
        # This SDK release no longer names the sampling parameters; the API still takes them.
        extra_body={"temperature": 0.3, "top_k": 20},
    )
    assert msg.type == "message" and msg.role == "assistant", dump(msg)
    assert msg.id.startswith("msg_")
    assert msg.model == "tools_fast", "answered with the name the client asked for"
    assert [b.type for b in msg.content] == ["text"], dump(msg)
    assert msg.content[0].text == "Bonjour: hello llmux"
    assert msg.stop_reason == "end_turn" and msg.stop_sequence is None
    assert msg.usage.input_tokens > 0 and msg.usage.output_tokens > 0, dump(msg)

    sent = last_chat(mock)
    assert sent["messages"][0] == {"role": "system", "content": "You are terse.\nAnswer in French."}
    assert sent["messages"][1]["content"] == "hello llmux"
    assert sent["options"]["num_predict"] == 64
    assert sent["options"]["temperature"] == 0.3
    assert sent["options"]["top_k"] == 20


def test_stream_text_and_final_message(lab, claude):
    mock = host_of(lab, "coding")
    mock.configure(reply="one two three four five")
    texts = []
    with claude.messages.stream(
        model="coding", max_tokens=100, messages=[{"role": "user", "content": "count"}]
    ) as stream:
        for text in stream.text_stream:
            texts.append(text)
        final = stream.get_final_message()
    assert len(texts) > 1, f"the answer came in one piece: {texts}"
    assert "".join(texts) == "one two three four five"
    assert final.model == "coding"
    assert [b.type for b in final.content] == ["text"]
    assert final.content[0].text == "one two three four five"
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens > 0 and final.usage.input_tokens > 0, dump(final)
    assert last_chat(mock)["stream"] is True


def test_stream_event_sequence(lab, claude):
    events = list(
        claude.messages.create(
            model="tools_fast", max_tokens=50, stream=True, messages=[{"role": "user", "content": "hi"}]
        )
    )
    kinds = [e.type for e in events]
    assert kinds[0] == "message_start" and kinds[-2:] == ["message_delta", "message_stop"], kinds
    assert kinds[1] == "content_block_start" and kinds[-3] == "content_block_stop", kinds
    assert set(kinds[2:-3]) == {"content_block_delta"}, kinds
    assert events[0].message.content == [] and events[0].message.model == "tools_fast"
    assert events[-2].delta.stop_reason == "end_turn"


def test_image_reaches_the_engine_as_base64(lab, claude):
    mock = host_of(lab, "vision")
    msg = claude.messages.create(
        model="vision",
        max_tokens=50,
        messages=[{
            "role": "user",
            "content": [
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
                {"type": "text", "text": "What is this?"},
            ],
        }],
    )
    assert msg.content[0].text
    user = last_chat(mock)["messages"][-1]
    assert user["images"] == [PNG], user
    assert user["content"] == "What is this?"


def test_tool_use_round_trip(lab, claude):
    mock = host_of(lab, "tools_fast")
    mock.configure(tool_call={"name": "get_weather", "arguments": ARGS}, reply="the tool said: {tool_result}")
    tools = [WEATHER_TOOL, {"type": "web_search_20250305", "name": "web_search", "max_uses": 2}]
    question = {"role": "user", "content": "What's the weather in Paris?"}
    first = claude.messages.create(model="tools_fast", max_tokens=200, tools=tools, messages=[question])
    assert first.stop_reason == "tool_use", dump(first)
    calls = [b for b in first.content if b.type == "tool_use"]
    assert len(calls) == 1, dump(first)
    assert calls[0].id and calls[0].name == "get_weather"
    assert calls[0].input == ARGS
    # Anthropic's server tool was not offered to the engine; the custom one was, in Ollama's shape.
    sent_tools = last_chat(mock)["tools"]
    assert [t["function"]["name"] for t in sent_tools] == ["get_weather"], sent_tools
    assert sent_tools[0]["function"]["parameters"] == WEATHER_TOOL["input_schema"]

    second = claude.messages.create(
        model="tools_fast",
        max_tokens=200,
        tools=tools,
        messages=[
            question,
            {"role": "assistant", "content": first.content},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": calls[0].id, "content": [{"type": "text", "text": "21C, sunny"}]},
            ]},
        ],
    )
    assert second.stop_reason == "end_turn", dump(second)
    assert second.content[-1].text == "the tool said: 21C, sunny"
    sent = last_chat(mock)["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "tool"], sent
    assert sent[1]["tool_calls"][0]["function"]["name"] == "get_weather"
    assert sent[1]["tool_calls"][0]["function"]["arguments"] == ARGS
    assert sent[2]["content"] == "21C, sunny"


def test_tool_use_streamed(lab, claude):
    mock = host_of(lab, "tools_fast")
    mock.configure(tool_call={"name": "get_weather", "arguments": ARGS})
    with claude.messages.stream(
        model="tools_fast", max_tokens=200, tools=[WEATHER_TOOL],
        tool_choice={"type": "any", "disable_parallel_tool_use": True},
        messages=[{"role": "user", "content": "Weather in Paris?"}],
    ) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "tool_use", dump(final)
    calls = [b for b in final.content if b.type == "tool_use"]
    assert len(calls) == 1 and calls[0].name == "get_weather" and calls[0].input == ARGS, dump(final)
    assert last_chat(mock)["tools"][0]["function"]["name"] == "get_weather"


def test_tool_error_result_reaches_the_engine(lab, claude):
    mock = host_of(lab, "tools_fast")
    claude.messages.create(
        model="tools_fast", max_tokens=50,
        messages=[
            {"role": "user", "content": "run it"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_9", "name": "run", "input": {"x": 1}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_9", "is_error": True, "content": "permission denied"},
                {"type": "text", "text": "what now?"},
            ]},
        ],
    )
    sent = last_chat(mock)["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "tool", "user"], sent
    assert sent[2]["content"] == "Error: permission denied"
    assert sent[3]["content"] == "what now?"


def test_thinking(lab, claude):
    mock = host_of(lab, "reasoning_fast")
    mock.configure(thinking="pondering {input}", reply="42")
    msg = claude.messages.create(
        model="reasoning_fast", max_tokens=4096, thinking={"type": "enabled", "budget_tokens": 2048},
        messages=[{"role": "user", "content": "the answer"}],
    )
    assert [b.type for b in msg.content] == ["thinking", "text"], dump(msg)
    assert msg.content[0].thinking == "pondering the answer"
    assert msg.content[1].text == "42"
    assert last_chat(mock)["think"] is True

    with claude.messages.stream(
        model="reasoning_fast", max_tokens=4096, thinking={"type": "enabled", "budget_tokens": 2048},
        messages=[{"role": "user", "content": "the answer"}],
    ) as stream:
        kinds = [e.delta.type for e in stream if e.type == "content_block_delta"]
        final = stream.get_final_message()
    assert [b.type for b in final.content] == ["thinking", "text"], dump(final)
    assert final.content[0].thinking == "pondering the answer"
    assert kinds.index("text_delta") > kinds.index("thinking_delta")

    off = claude.messages.create(
        model="reasoning_fast", max_tokens=100, thinking={"type": "disabled"},
        messages=[{"role": "user", "content": "the answer"}],
    )
    assert [b.type for b in off.content] == ["text"], dump(off)
    assert last_chat(mock)["think"] is False


def test_stop_sequences(lab, claude):
    mock = host_of(lab, "tools_fast")
    mock.configure(reply="alpha beta HALT gamma")
    msg = claude.messages.create(
        model="tools_fast", max_tokens=100, stop_sequences=["HALT"], messages=[{"role": "user", "content": "go"}]
    )
    assert msg.content[0].text.strip() == "alpha beta"
    assert last_chat(mock)["options"]["stop"] == ["HALT"]


def test_count_tokens(lab, claude):
    counted = claude.messages.count_tokens(
        model="tools_fast",
        system="s" * 40,
        messages=[{"role": "user", "content": "u" * 80}],
    )
    assert counted.input_tokens == 30
    with pytest.raises(anthropic.AuthenticationError) as err:
        sdk(lab.llmux.base_url, api_key="sk-wrong").messages.count_tokens(
            model="tools_fast", messages=[{"role": "user", "content": "x"}]
        )
    assert err.value.body["error"]["type"] == "authentication_error", err.value.body
    with pytest.raises(anthropic.BadRequestError):
        claude.messages.count_tokens(model="tools_fast", messages=[])
    assert all(not m.requests("/api/chat") for m in lab.mocks.values()), "count_tokens called an engine"


def test_errors_in_anthropic_shape(lab, claude):
    with pytest.raises(anthropic.AuthenticationError) as e:
        sdk(lab.llmux.base_url, api_key="sk-wrong").messages.create(
            model="tools_fast", max_tokens=10, messages=[{"role": "user", "content": "x"}]
        )
    assert e.value.status_code == 401
    with httpx.Client(base_url=lab.llmux.base_url, trust_env=False, timeout=10) as http:
        r = http.post("/v1/messages", json={"model": "tools_fast", "max_tokens": 5, "messages": []})
    assert r.status_code == 401
    assert r.json()["type"] == "error" and r.json()["error"]["type"] == "authentication_error", r.text

    with pytest.raises(anthropic.BadRequestError) as e:
        claude.messages.create(model="no-such-model", max_tokens=10, messages=[{"role": "user", "content": "x"}])
    assert e.value.body["error"]["type"] == "invalid_request_error"
    assert e.value.body["error"]["message"].startswith("/v1/messages: Invalid model name passed in model=no-such-model")

    with pytest.raises(anthropic.BadRequestError) as e:
        claude.messages.create(model="tools_fast", max_tokens=anthropic.NOT_GIVEN,
                               messages=[{"role": "user", "content": "x"}])
    assert "max_tokens" in e.value.body["error"]["message"]

    with pytest.raises(anthropic.BadRequestError) as e:
        claude.messages.create(model="tools_fast", max_tokens=10,
                               messages=[{"role": "user", "content": [{"type": "hologram", "x": 1}]}])
    assert e.value.body["type"] == "error"


def test_passthrough_engine(lab, claude):
    mock = lab.mocks[OAI_HOST]
    mock.configure(reply="passed {input}")
    msg = claude.messages.create(
        model=OAI_GROUP, max_tokens=30, system="sys", stop_sequences=["zzz"],
        messages=[{"role": "user", "content": "through"}],
    )
    assert msg.model == OAI_GROUP
    assert msg.content[0].text == "passed through"
    assert msg.stop_reason == "end_turn"
    sent = mock.requests("/v1/chat/completions")[-1]["body"]
    assert sent["model"] == OAI_UPSTREAM_MODEL
    assert sent["max_tokens"] == 30 and sent["stop"] == ["zzz"]
    assert sent["messages"] == [{"role": "system", "content": "sys"}, {"role": "user", "content": "through"}]

    mock.configure(tool_call={"name": "get_weather", "arguments": ARGS})
    with claude.messages.stream(
        model=OAI_GROUP, max_tokens=100, tools=[WEATHER_TOOL], messages=[{"role": "user", "content": "weather?"}]
    ) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "tool_use", dump(final)
    assert [b.input for b in final.content if b.type == "tool_use"] == [ARGS]
    sent = mock.requests("/v1/chat/completions")[-1]["body"]
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}

    # An image by URL reaches an OpenAI-compatible engine as an image_url part.
    mock.configure(tool_call=None)
    claude.messages.create(model=OAI_GROUP, max_tokens=20, messages=[{"role": "user", "content": [
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
        {"type": "text", "text": "what is it?"},
    ]}])
    parts = mock.requests("/v1/chat/completions")[-1]["body"]["messages"][0]["content"]
    assert parts == [{"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
                     {"type": "text", "text": "what is it?"}], parts


@pytest.fixture
def flaky(log_root: Path, request):
    """One engine, no retries, no fallbacks: its failures reach the client."""
    log_dir = log_root / request.node.name
    log_dir.mkdir(parents=True, exist_ok=True)
    mock = start_mock("flaky-box", ["qwen3:8b"], log_dir)
    config = {
        "model_list": [{"model_name": "flaky", "litellm_params": {"model": "ollama_chat/qwen3:8b", "api_base": mock.url}}],
        "router_settings": {"num_retries": 0},
        "general_settings": {"master_key": MASTER_KEY},
    }
    llmux = start_llmux(config, log_dir)
    try:
        yield mock, sdk(llmux.base_url)
    finally:
        llmux.proc.stop()
        mock.proc.stop()


def test_engine_failure(flaky):
    mock, claude = flaky
    mock.configure(fault={"status": 503})
    with pytest.raises(anthropic.APIStatusError) as e:
        claude.messages.create(model="flaky", max_tokens=10, messages=[{"role": "user", "content": "x"}])
    assert e.value.status_code == 503
    assert e.value.body["type"] == "error" and e.value.body["error"]["type"] == "overloaded_error", e.value.body


def test_engine_failure_mid_stream(flaky):
    mock, claude = flaky
    mock.configure(reply="a b c d e f g h", fault={"drop_after_chunks": 2})
    got = []
    with pytest.raises(anthropic.APIStatusError) as e:
        with claude.messages.stream(model="flaky", max_tokens=50, messages=[{"role": "user", "content": "x"}]) as s:
            for text in s.text_stream:
                got.append(text)
    assert got, "the stream failed before its first text"
    assert e.value.body["type"] == "error", e.value.body
