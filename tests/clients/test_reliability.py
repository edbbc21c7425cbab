"""Reliability behaviour seen through the official SDK: keep-alives on a cold engine, LiteLLM's 429 when
every deployment cools down."""

from __future__ import annotations

import openai
import pytest

from harness import homelab_config, start_llmux

MESSAGES = [{"role": "user", "content": "Say hello."}]


def test_sdk_streams_through_keep_alive_comments_from_a_cold_engine(own_lab):
    lab = own_lab
    config = homelab_config(lab.mocks)
    config["router_settings"]["stream_keepalive"] = 0.2
    llmux = start_llmux(config, lab.log_dir, "llmux-keepalive")
    lab._extra.append(llmux)
    # star (order 1 for `coding`) takes a second to produce its first byte, as a model being loaded.
    lab.mocks["star"].configure(latency_ms=1000)
    with llmux.http() as http:
        raw = http.post(
            "/v1/chat/completions",
            headers={"authorization": f"Bearer {config['general_settings']['master_key']}"},
            json={"model": "coding", "stream": True, "messages": MESSAGES},
        )
        # A plain keep-alive, or (when a probe saw the model cold and llmux loads it itself) what it waits for.
        assert raw.text.startswith((": keep-alive\n\n", ": loading nemotron-cascade-2:30b on ")), raw.text[:200]
    stream = llmux.client().chat.completions.create(model="coding", messages=MESSAGES, stream=True)
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == "Hello from star (nemotron-cascade-2:30b)."


def test_all_deployments_cooling_down_is_a_rate_limit_error_with_litellms_text(own_lab):
    lab = own_lab
    client = lab.client()
    for host in ("star", "cranberry"):
        lab.mocks[host].configure(fault={"status": 429, "retry_after": 40})
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model="nemotron-cascade-2:30b", messages=MESSAGES)
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model="nemotron-cascade-2:30b", messages=MESSAGES)
    message = caught.value.body["message"] if isinstance(caught.value.body, dict) else str(caught.value)
    assert message.startswith("No deployments available for selected model, Try again in 40 seconds."), message
    assert caught.value.response.headers["retry-after"] == "40"
