"""Byte-faithful streaming with a real engine that emits garbage bytes.

The tiny model picks among the 256 byte tokens, so its text is full of invalid UTF-8 (lone continuation bytes,
bytes 0xF8-0xFF, truncated sequences) and of valid multi-byte characters assembled from several tokens. What
reaches the wire, and who changes what:

* llama-server holds back a trailing incomplete character until the next token completes it (or proves it
  invalid), and serialises every JSON string with nlohmann's `error_handler_t::replace`: each invalid byte becomes
  U+FFFD *in the engine*. Its SSE and JSON bodies are therefore always valid UTF-8.
* llmux's passthrough (openai/, hosted_vllm/, … deployments) forwards those bytes unchanged, however the network
  cuts them: asserted here byte for byte against what the engine put on the wire (recorded by a tap proxy),
  with the engine's output cut inside every multi-byte character.
* llmux's translation (ollama_chat/, ollama/) parses whole NDJSON lines, so a character split across network
  reads arrives intact. A line carrying raw invalid UTF-8 (which Ollama itself never sends: Go's JSON encoder
  replaces it with U+FFFD) is where a translation needs valid text; see test_translation_of_raw_invalid_utf8.
"""

from __future__ import annotations

import json

import pytest

import engines
from conftest import Rig, deployment
from engines import CannedEngine, harness

AUTH = {"authorization": f"Bearer {harness.MASTER_KEY}"}
MESSAGES = [{"role": "user", "content": "Emit bytes."}]


def body(max_tokens: int, stream: bool = True, **extra) -> dict:
    return {"messages": MESSAGES, "max_tokens": max_tokens, "temperature": 0, "seed": 42, "stream": stream, **extra}


def via_llmux(rig: Rig, model: str, payload: dict) -> bytes:
    assert rig.llmux
    with rig.llmux.http() as http:
        r = http.post("/v1/chat/completions", headers=AUTH, json={"model": model, **payload})
    assert r.status_code == 200, r.text
    return r.content


def engine_body(rig: Rig, tap: str) -> engines.HttpResponse:
    responses = [r for r in rig.taps[tap].responses()]
    assert len(responses) == 1, f"expected one engine response through the tap, got {len(responses)}"
    return responses[0]


def test_engine_output_is_deterministic_and_exercises_utf8(rig: Rig) -> None:
    """The premise of the comparisons below: greedy decoding gives the same bytes every time (ids, timestamps
    and timings aside), and the answer has both replaced invalid bytes and real multi-byte characters."""
    assert rig.llama
    first = rig.llama.post("/v1/chat/completions", body(200)).content
    second = rig.llama.post("/v1/chat/completions", body(200)).content
    assert engines.mask_volatile(first) == engines.mask_volatile(second)
    text = "".join(
        d["choices"][0]["delta"].get("content") or ""
        for d in engines.sse_data(first) if isinstance(d, dict) and d.get("choices")
    )
    assert "\ufffd" in text, "no invalid byte in 200 tokens: the tiny model no longer exercises this"
    assert any(ord(c) > 0x7F and c != "\ufffd" for c in text), "no valid multi-byte character"
    first.decode("utf-8")  # the engine's own output is valid UTF-8 (invalid bytes already replaced)


@pytest.mark.parametrize("tap", ["tap", "split"])
def test_passthrough_stream_is_byte_identical(rig: Rig, tap: str) -> None:
    """Every byte llama-server sent (de-chunked) is every byte the client got from llmux, also when the engine's
    output reaches llmux cut inside every multi-byte character."""
    rig.taps[tap].clear()
    got = via_llmux(rig, f"tiny-{tap}", body(120, stream_options={"include_usage": True}))
    sent = engine_body(rig, tap)
    assert sent.status == 200 and sent.body, sent
    assert got == sent.body
    assert engines.sse_events(got)[-1] == b"data: [DONE]"
    assert any(b >= 0xC0 for b in sent.body), "nothing multi-byte in the engine's answer"


@pytest.mark.parametrize("tap", ["tap", "split"])
def test_passthrough_json_is_byte_identical(rig: Rig, tap: str) -> None:
    rig.taps[tap].clear()
    got = via_llmux(rig, f"tiny-{tap}", body(120, stream=False))
    assert got == engine_body(rig, tap).body


def test_stream_direct_and_through_llmux_agree(rig: Rig) -> None:
    """The same request straight to llama-server and through llmux: the same SSE bytes, event for event, once the
    per-request id, timestamp and timings are blanked (nothing dropped, merged or re-encoded)."""
    assert rig.llama
    payload = body(150, stream_options={"include_usage": True})
    direct = rig.llama.post("/v1/chat/completions", {"model": "tiny", **payload}).content
    through = via_llmux(rig, "tiny", payload)
    assert engines.sse_events(engines.mask_volatile(through)) == engines.sse_events(engines.mask_volatile(direct))


def test_sdk_reassembles_the_same_text(rig: Rig) -> None:
    """What an application sees: the openai SDK's streamed deltas add up to the non-streamed answer."""
    client = rig.client()
    request = {k: v for k, v in body(150).items() if k != "stream"}
    whole = client.chat.completions.create(model="tiny-split", **request).choices[0].message.content
    chunks = client.chat.completions.create(model="tiny-split", stream=True, **request)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert engines.same_but_the_last_character(text, whole), (text[-8:], whole[-8:])


def test_engine_stream_omits_a_trailing_incomplete_character(rig: Rig) -> None:
    """The engine quirk above, shown on llama-server itself and unchanged through llmux: over a range of
    max_tokens, streamed and non-streamed texts differ exactly when the answer ends inside a character."""
    assert rig.llama
    differ = []
    for n in range(1, 31):
        request = {"model": "tiny", **body(n, stream=False)}
        whole = rig.llama.post("/v1/chat/completions", request).json()["choices"][0]["message"]["content"]
        for raw in (rig.llama.post("/v1/chat/completions", {**request, "stream": True}).content,
                    via_llmux(rig, "tiny", {**body(n)})):
            text = "".join(d["choices"][0]["delta"].get("content") or "" for d in engines.sse_data(raw)
                           if isinstance(d, dict) and d.get("choices"))
            assert engines.same_but_the_last_character(text, whole), (n, text[-8:], whole[-8:])
            if text != whole:
                differ.append(n)
    assert differ, "no answer in 1..30 tokens ends inside a character: the quirk is not exercised"


def test_translation_keeps_split_characters(rig: Rig) -> None:
    """ollama_chat/ translation with the engine's NDJSON cut inside every multi-byte character: the client gets
    exactly the engine's text, no U+FFFD, nothing dropped."""
    assert rig.mock
    reply = "Grüße — 日本語のテキスト, emoji 🎉🦀 and combining é ñ."
    rig.mock.configure(reply=reply)
    try:
        client = rig.client()
        chunks = list(client.chat.completions.create(model="ollama-split", messages=MESSAGES, stream=True,
                                                     stream_options={"include_usage": True}))
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == reply
        assert chunks[-1].usage is not None
        whole = client.chat.completions.create(model="ollama-split", messages=MESSAGES)
        assert whole.choices[0].message.content == reply
    finally:
        rig.mock.configure(reply=None)


def _canned_llmux(rig_log, name: str, model: str, engine: CannedEngine) -> harness.Llmux:
    config = {
        "model_list": [deployment("canned", model, engine.url + ("/v1" if model.startswith("openai/") else ""),
                                  api_key="x")],
        "general_settings": {"master_key": harness.MASTER_KEY},
    }
    rig_log.mkdir(parents=True, exist_ok=True)
    return harness.start_llmux(config, rig_log, name)


# An OpenAI-style stream whose JSON strings carry raw invalid UTF-8 (0xFF; a lone continuation byte; a 3-byte
# character cut after its first byte and completed in the next network chunk).
RAW_SSE = [
    b'data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,'
    b'"delta":{"role":"assistant","content":"a\xffb"},"finish_reason":null}]}\n\n',
    b'data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,'
    b'"delta":{"content":"\x80 \xe2',
    b'\x82\xac"},"finish_reason":null}]}\n\n',
    b'data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,'
    b'"delta":{},"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n',
]

# The same garbage as Ollama NDJSON.
RAW_NDJSON = [
    b'{"model":"m","created_at":"2026-01-01T00:00:00Z","message":{"role":"assistant","content":"a\xffb"},'
    b'"done":false}\n',
    b'{"model":"m","created_at":"2026-01-01T00:00:00Z","message":{"role":"assistant","content":"\x80 \xe2',
    b'\x82\xac"},"done":false}\n',
    b'{"model":"m","created_at":"2026-01-01T00:00:00Z","message":{"role":"assistant","content":""},'
    b'"done":true,"done_reason":"stop","prompt_eval_count":3,"eval_count":2}\n',
]


def test_passthrough_of_raw_invalid_utf8(log_root) -> None:
    """An engine that breaks the rules (raw invalid UTF-8 inside JSON strings): the passthrough still forwards its
    bytes exactly, without panic or error event."""
    harness.require_binaries()
    engine = CannedEngine("text/event-stream", RAW_SSE)
    llmux = None
    try:
        llmux = _canned_llmux(log_root / "raw-sse", "llmux-raw-sse", "openai/m", engine)
        with llmux.http() as http:
            r = http.post("/v1/chat/completions", headers=AUTH,
                          json={"model": "canned", "messages": MESSAGES, "stream": True})
        assert r.status_code == 200
        assert r.content == b"".join(RAW_SSE)
        assert llmux.proc.alive() and "panic" not in llmux.proc.log()
    finally:
        engines.finish(llmux and llmux.proc)
        engine.close()


def test_translation_of_raw_invalid_utf8(log_root) -> None:
    """The same garbage through the ollama_chat/ translation: the answer must still arrive, every invalid byte as
    U+FFFD (a translation re-encodes JSON and needs valid text), the split character intact."""
    harness.require_binaries()
    engine = CannedEngine("application/x-ndjson", RAW_NDJSON)
    llmux = None
    try:
        llmux = _canned_llmux(log_root / "raw-ndjson", "llmux-raw-ndjson", "ollama_chat/m", engine)
        with llmux.http() as http:
            r = http.post("/v1/chat/completions", headers=AUTH,
                          json={"model": "canned", "messages": MESSAGES, "stream": True})
        assert r.status_code == 200
        assert llmux.proc.alive() and "panic" not in llmux.proc.log()
        data = engines.sse_data(r.content)
        assert data[-1] == "[DONE]"
        errors = [d for d in data if isinstance(d, dict) and "error" in d]
        assert not errors, f"the translated stream must carry U+FFFD, not an error event: {errors[0]}"
        text = "".join(d["choices"][0]["delta"].get("content") or "" for d in data
                       if isinstance(d, dict) and d.get("choices"))
        assert text == "a\ufffdb\ufffd \u20ac"
    finally:
        engines.finish(llmux and llmux.proc)
        engine.close()
