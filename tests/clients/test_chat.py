"""Chat completions through the official `openai` SDK, streamed and not, on every alias of the home lab."""

from __future__ import annotations

import time

import pytest

from harness import deployment_header, dump, expected_deployment, load_homelab

ALIASES = ["reasoning_fast", "reasoning_slow", "tools_fast", "tools_slow", "vision", "coding", "default"]
GROUPS = ["nemotron-3-nano:4b", "nemotron-cascade-2:30b"]
MESSAGES = [{"role": "user", "content": "Say hello."}]


def test_homelab_aliases_are_the_ones_tested():
    """If examples/homelab.yaml gains a chat alias, this suite should cover it."""
    aliases = set(load_homelab()["router_settings"]["model_group_alias"]) - {"embedding"}
    assert aliases == set(ALIASES)


@pytest.mark.parametrize("model", ALIASES + GROUPS)
def test_chat_answers_from_the_preferred_host(lab, client, model):
    _, host, litellm_model = expected_deployment(model)
    raw = client.chat.completions.with_raw_response.create(model=model, messages=MESSAGES)
    completion = raw.parse()

    assert raw.status_code == 200
    assert raw.headers.get("x-llmux-deployment") == deployment_header(lab, model), dict(raw.headers)
    assert raw.headers.get("x-litellm-model-id"), "x-litellm-model-id header missing"
    assert raw.headers.get("x-llmux-route"), "x-llmux-route header missing"

    choice = completion.choices[0]
    upstream_model = litellm_model.split("/", 1)[1]
    assert choice.message.role == "assistant"
    assert choice.message.content == f"Hello from {host} ({upstream_model}).", dump(completion)
    assert choice.finish_reason == "stop"
    assert completion.object == "chat.completion"
    assert completion.id

    usage = completion.usage
    assert usage is not None, dump(completion)
    assert usage.prompt_tokens > 0 and usage.completion_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens

    # The engine was asked in its own protocol, for its own model name.
    sent = lab.mocks[host].requests("/api/chat")
    assert sent, f"{host} recorded no /api/chat request"
    assert sent[-1]["body"]["model"] == upstream_model
    assert sent[-1]["body"]["messages"][-1]["content"] == "Say hello."


def test_chat_without_v1_prefix(lab, client):
    """LiteLLM also serves /chat/completions; clients configured without /v1 keep working."""
    with lab.llmux.http() as http:
        r = http.post(
            "/chat/completions",
            json={"model": "coding", "messages": MESSAGES},
            headers={"Authorization": f"Bearer {client.api_key}"},
        )
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"].startswith("Hello from star")


def test_stream_is_incremental_and_matches_non_stream(lab, client):
    model = "reasoning_slow"
    whole = client.chat.completions.create(model=model, messages=MESSAGES).choices[0].message.content

    # Pace the engine so buffering anywhere on the path would show up as all chunks arriving at once.
    _, host, _ = expected_deployment(model)
    lab.mocks[host].configure(tokens_per_sec=20)

    stream = client.chat.completions.create(model=model, messages=MESSAGES, stream=True)
    pieces, arrivals, finish, roles = [], [], None, []
    for chunk in stream:
        assert chunk.object == "chat.completion.chunk"
        if not chunk.choices:
            continue
        delta = chunk.choices[0].delta
        if delta.role:
            roles.append(delta.role)
        if delta.content:
            pieces.append(delta.content)
            arrivals.append(time.monotonic())
        if chunk.choices[0].finish_reason:
            finish = chunk.choices[0].finish_reason

    assert len(pieces) > 1, f"expected several content chunks, got {pieces!r}"
    assert "".join(pieces) == whole
    assert finish == "stop"
    assert roles[:1] == ["assistant"]
    # 4 tokens at 20 tok/s: the last chunk comes well after the first one.
    assert arrivals[-1] - arrivals[0] > 0.08, f"chunks arrived together: {arrivals}"


def test_stream_include_usage(client):
    stream = client.chat.completions.create(
        model="reasoning_fast", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    assert chunks, "empty stream"
    last = chunks[-1]
    assert last.usage is not None, f"no usage in the final chunk: {dump(last)}"
    assert last.choices == []
    assert last.usage.completion_tokens > 0 and last.usage.prompt_tokens > 0
    assert last.usage.total_tokens == last.usage.prompt_tokens + last.usage.completion_tokens
    # Only the final chunk carries usage.
    assert all(c.usage is None for c in chunks[:-1])


def test_stream_through_raw_response_has_routing_headers(lab, client):
    raw = client.chat.completions.with_raw_response.create(model="coding", messages=MESSAGES, stream=True)
    assert raw.headers.get("x-llmux-deployment") == deployment_header(lab, "coding")
    assert raw.headers.get("content-type", "").startswith("text/event-stream")
    text = "".join(c.choices[0].delta.content or "" for c in raw.parse() if c.choices)
    assert text.startswith("Hello from star")


def test_legacy_completions(lab, client):
    """/v1/completions (prompt in, text out) goes to Ollama's /api/generate."""
    _, host, litellm_model = expected_deployment("coding")
    upstream_model = litellm_model.split("/", 1)[1]
    raw = client.completions.with_raw_response.create(model="coding", prompt="Once upon a time")
    completion = raw.parse()
    assert raw.headers.get("x-llmux-deployment") == deployment_header(lab, "coding")
    assert completion.object == "text_completion"
    assert completion.choices[0].text == f"Hello from {host} ({upstream_model})."
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None and completion.usage.completion_tokens > 0
    sent = lab.mocks[host].requests("/api/generate")
    assert sent and sent[-1]["body"]["prompt"] == "Once upon a time"

    stream = client.completions.create(model="coding", prompt="Once upon a time", stream=True)
    pieces = [c.choices[0].text for c in stream if c.choices and c.choices[0].text]
    assert len(pieces) > 1 and "".join(pieces) == completion.choices[0].text
