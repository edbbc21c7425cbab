"""The three translated client protocols in front of a real engine: llama.cpp's llama-server (tiny random model)
reached through Ollama's `/api/chat`, OpenAI's `/v1/responses` and Anthropic's `/v1/messages`, each driven by
its official SDK. Greedy decoding makes the engine's answer reproducible, so each protocol must hand back exactly
the text (and token count) the engine gives when asked directly."""

from __future__ import annotations

import anthropic
import ollama
import pytest

import engines
from conftest import Rig
from engines import harness

MESSAGES = [{"role": "user", "content": "Tell me a story."}]
N = 12


@pytest.fixture(scope="module")
def expected(rig: Rig) -> str:
    assert rig.llama
    r = rig.llama.post("/v1/chat/completions",
                       {"model": "x", "messages": MESSAGES, "max_tokens": N, "temperature": 0})
    assert r.status_code == 200, r.text
    return r.json()["choices"][0]["message"]["content"]


def test_ollama_chat(rig: Rig, expected: str) -> None:
    assert rig.llmux
    client = ollama.Client(host=rig.llmux.base_url, headers={"Authorization": f"Bearer {harness.MASTER_KEY}"},
                           timeout=60)
    options = {"num_predict": N, "temperature": 0}
    whole = client.chat(model="tiny", messages=MESSAGES, options=options, stream=False)
    assert whole.message.content == expected
    assert (whole.done, whole.done_reason, whole.eval_count) == (True, "length", N)
    assert whole.model == "tiny"
    pieces = list(client.chat(model="tiny", messages=MESSAGES, options=options, stream=True))
    assert pieces[-1].done and pieces[-1].done_reason == "length" and pieces[-1].eval_count == N
    text = "".join(p.message.content or "" for p in pieces)
    assert engines.same_but_the_last_character(text, expected), (text, expected)


def test_openai_responses(rig: Rig, expected: str) -> None:
    client = rig.client()
    response = client.responses.create(model="tiny", input=MESSAGES, max_output_tokens=N, temperature=0)
    assert response.output_text == expected
    assert response.status == "incomplete" and response.incomplete_details.reason == "max_output_tokens"
    assert response.usage.output_tokens == N
    # The tiny model never ends on its own: the stream ends with `response.incomplete`, as OpenAI ends one cut
    # by max_output_tokens.
    events = list(client.responses.create(model="tiny", input=MESSAGES, max_output_tokens=N, temperature=0,
                                          stream=True))
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert engines.same_but_the_last_character("".join(deltas), expected)
    assert events[0].type == "response.created" and events[-1].type == "response.incomplete", events[-1]
    assert events[-1].response.usage.output_tokens == N


def test_anthropic_messages(rig: Rig, expected: str) -> None:
    assert rig.llmux
    client = anthropic.Anthropic(base_url=rig.llmux.base_url, api_key=harness.MASTER_KEY, max_retries=0, timeout=60)
    # SDK 2.x takes sampling parameters only as extra body fields.
    greedy = {"temperature": 0}
    message = client.messages.create(model="tiny", max_tokens=N, messages=MESSAGES, extra_body=greedy)
    assert [b.type for b in message.content] == ["text"]
    assert message.content[0].text == expected
    assert message.stop_reason == "max_tokens" and message.usage.output_tokens == N
    with client.messages.stream(model="tiny", max_tokens=N, messages=MESSAGES, extra_body=greedy) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert engines.same_but_the_last_character(text, expected)
    assert final.stop_reason == "max_tokens" and final.usage.output_tokens == N
