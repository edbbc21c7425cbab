"""llama.cpp's llama-server (tiny random model) behind llmux, driven by the official openai SDK.

The tiny model never emits end-of-sequence (see tiny_gguf.py), so every request bounds max_tokens, and an answer
that is not cut by a stop string ends with finish_reason "length" after exactly max_tokens tokens. Greedy
decoding (temperature 0) makes every answer reproducible, so what comes through llmux can be compared with what
the engine says when asked directly.
"""

from __future__ import annotations

import json
import time

import httpx
import openai
import pytest

import engines
from conftest import Rig, deployment
from engines import harness

MESSAGES = [{"role": "user", "content": "Tell me a story."}]
PREFIXES = ["tiny", "tiny-vllm"]  # openai/ and hosted_vllm/ deployments of the same engine


def direct(rig: Rig, body: dict) -> dict:
    """The engine's own answer to `body` (asked without llmux)."""
    assert rig.llama
    r = rig.llama.post("/v1/chat/completions", body)
    assert r.status_code == 200, r.text
    return r.json()


def greedy(max_tokens: int, **extra) -> dict:
    return {"messages": MESSAGES, "max_tokens": max_tokens, "temperature": 0, **extra}


@pytest.mark.parametrize("model", PREFIXES)
def test_chat(rig: Rig, model: str) -> None:
    client = rig.client()
    raw = client.chat.completions.with_raw_response.create(model=model, **greedy(16))
    completion = raw.parse()
    assert raw.headers["x-llmux-deployment"].endswith(f"@ {rig.llama.hostport}")
    choice = completion.choices[0]
    assert completion.object == "chat.completion"
    assert choice.message.role == "assistant"
    assert isinstance(choice.message.content, str) and choice.message.content
    assert choice.finish_reason == "length"
    assert completion.usage.completion_tokens == 16
    assert completion.usage.total_tokens == completion.usage.prompt_tokens + 16
    # Deterministic: the same text as the engine gives when asked directly.
    assert choice.message.content == direct(rig, {"model": "x", **greedy(16)})["choices"][0]["message"]["content"]


@pytest.mark.parametrize("model", PREFIXES)
def test_stream_with_usage(rig: Rig, model: str) -> None:
    client = rig.client()
    chunks = list(
        client.chat.completions.create(model=model, stream=True, stream_options={"include_usage": True}, **greedy(16))
    )
    assert chunks, "no chunks"
    *body, last = chunks
    # The usage chunk comes last, with no choices, and counts exactly max_tokens.
    assert last.choices == [] and last.usage is not None, last
    assert last.usage.completion_tokens == 16
    assert last.usage.total_tokens == last.usage.prompt_tokens + 16
    assert all(c.usage is None for c in body)
    finishes = [c.choices[0].finish_reason for c in body if c.choices and c.choices[0].finish_reason]
    assert finishes == ["length"]
    text = "".join(c.choices[0].delta.content or "" for c in body if c.choices)
    whole = direct(rig, {"model": "x", **greedy(16)})["choices"][0]["message"]["content"]
    assert engines.same_but_the_last_character(text, whole), (text, whole)


def test_stream_without_usage(rig: Rig) -> None:
    chunks = list(rig.client().chat.completions.create(model="tiny", stream=True, **greedy(8)))
    assert all(c.usage is None for c in chunks)
    assert all(c.choices for c in chunks), "a chunk without choices although include_usage was not asked"
    assert chunks[-1].choices[0].finish_reason == "length"


def test_stream_ends_with_done(rig: Rig) -> None:
    """The raw stream through llmux: every event a `data:` line, the last one `[DONE]`."""
    assert rig.llmux
    with rig.llmux.http() as http:
        r = http.post("/v1/chat/completions", headers={"authorization": f"Bearer {harness.MASTER_KEY}"},
                      json={"model": "tiny", "stream": True, **greedy(8)})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    events = engines.sse_events(r.content)
    assert events[-1] == b"data: [DONE]"
    assert all(e.startswith(b"data: ") for e in events), events


@pytest.mark.parametrize("n", [1, 5, 33])
def test_max_tokens_honoured(rig: Rig, n: int) -> None:
    completion = rig.client().chat.completions.create(model="tiny", **greedy(n))
    assert completion.usage.completion_tokens == n
    assert completion.choices[0].finish_reason == "length"
    # max_completion_tokens (the current name) is honoured the same way.
    completion = rig.client().chat.completions.create(
        model="tiny", messages=MESSAGES, max_completion_tokens=n, temperature=0
    )
    assert completion.usage.completion_tokens == n


def _stop_string(text: str) -> tuple[str, int]:
    """A short ASCII stop string that occurs in `text` (not at its start), and where it first occurs."""
    for i in range(2, len(text) - 1):
        s = text[i]
        if s.isascii() and s.isprintable() and not s.isspace():
            return s, text.index(s)
    pytest.fail(f"the tiny model's answer has no printable ASCII character: {text!r}")


def test_stop_sequence(rig: Rig) -> None:
    client = rig.client()
    full = client.chat.completions.create(model="tiny", **greedy(48)).choices[0].message.content
    stop, at = _stop_string(full)
    cut = client.chat.completions.create(model="tiny", stop=[stop], **greedy(48))
    assert cut.choices[0].finish_reason == "stop"
    assert cut.choices[0].message.content == full[:at]
    assert cut.usage.completion_tokens < 48
    # Streamed: same text, finish_reason "stop".
    chunks = list(client.chat.completions.create(model="tiny", stop=stop, stream=True, **greedy(48)))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == full[:at]
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]


def test_legacy_completion(rig: Rig) -> None:
    completion = rig.client().completions.create(model="tiny", prompt="Once upon a time", max_tokens=7, temperature=0)
    assert completion.object == "text_completion"
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage.completion_tokens == 7


@pytest.mark.parametrize("encoding", ["float", None])
def test_embeddings(rig: Rig, encoding: str | None) -> None:
    """Unless told otherwise the SDK asks for base64 and decodes it; llama-server answers both (its base64 data
    entries carry an extra `encoding_format` key), and llmux passes both on."""
    kw = {"encoding_format": encoding} if encoding else {}
    result = rig.client().embeddings.create(model="tiny", input=["hello", "world"], **kw)
    assert [d.index for d in result.data] == [0, 1]
    vectors = [d.embedding for d in result.data]
    assert all(len(v) == 64 for v in vectors)  # the tiny model's width
    for v in vectors:
        assert abs(sum(x * x for x in v) - 1.0) < 1e-3  # mean pooling, normalised
    assert vectors[0] != vectors[1]
    engine = rig.llama.post("/v1/embeddings", {"input": ["hello", "world"], "encoding_format": "float"}).json()
    for mine, theirs in zip(vectors, (d["embedding"] for d in engine["data"])):
        assert mine == pytest.approx(theirs, abs=1e-6)
    assert result.usage.prompt_tokens > 0


def test_engine_error_passes_through(rig: Rig) -> None:
    """A request only the engine rejects (a parameter of llama.cpp's with the wrong type) reaches the client as
    the engine's 400 with the engine's message; llmux does not fail over on it."""
    body = {"messages": MESSAGES, "max_tokens": 4, "n_probs": "many"}
    with pytest.raises(openai.BadRequestError) as info:
        rig.client().chat.completions.create(model="tiny-backed", extra_body={"n_probs": "many"}, **greedy(4))
    engine = rig.llama.post("/v1/chat/completions", body)
    assert engine.status_code == 400
    error = engine.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["message"] in str(info.value)
    assert info.value.body["type"] == "invalid_request_error"
    assert rig.mock.requests("/v1/chat/completions") == [], "llmux failed over on a 400"


def test_models_and_health(rig: Rig) -> None:
    assert rig.llmux
    with rig.llmux.http(headers={"authorization": f"Bearer {harness.MASTER_KEY}"}) as http:
        models = http.get("/v1/models").json()
        assert {"tiny", "tiny-vllm", "tiny-backed"} <= {m["id"] for m in models["data"]}
        health = http.get("/health")
        assert health.status_code == 200, health.text


def _stream_until(rig: Rig, body: dict, events: int) -> None:
    """Opens a stream through llmux, reads `events` SSE events and hangs up."""
    assert rig.llmux
    with httpx.Client(base_url=rig.llmux.base_url, timeout=30.0, trust_env=False) as http:
        with http.stream("POST", "/v1/chat/completions", json=body,
                         headers={"authorization": f"Bearer {harness.MASTER_KEY}"}) as r:
            assert r.status_code == 200
            seen = 0
            for line in r.iter_lines():
                if line.startswith("data: "):
                    seen += 1
                    if seen >= events:
                        break
    # Leaving both blocks closes the connection mid-stream.


def test_client_disconnect_cancels_generation(rig: Rig) -> None:
    """A client that hangs up mid-stream stops the generation on the engine: the slot is released long before
    max_tokens are generated (the tiny model never stops on its own)."""
    assert rig.llama
    rig.llama.wait_idle()
    max_tokens = 8000  # fits one slot's 8192-token context with the prompt: seconds of generation
    before = rig.llama.metrics()
    started = time.monotonic()
    _stream_until(rig, {"model": "tiny", "stream": True, **greedy(max_tokens)}, events=5)
    hung_up = time.monotonic() - started
    released = rig.llama.wait_idle(timeout=5.0)
    after = rig.llama.metrics()
    predicted = after["tokens_predicted_total"] - before["tokens_predicted_total"]
    # The slot that served it (the latest task) reports how far it got.
    last = max((s for s in rig.llama.slots() if "id_task" in s), key=lambda s: s["id_task"])
    decoded = last["next_token"][0]["n_decoded"]
    assert predicted < max_tokens, f"the engine generated {predicted} tokens: the disconnect did not cancel it"
    assert decoded < max_tokens
    # And it does not come back to life.
    time.sleep(0.3)
    assert rig.llama.metrics()["n_decode_total"] == after["n_decode_total"]
    print(f"hung up after {hung_up:.3f}s; slot released {released:.3f}s later; {predicted:.0f} tokens generated")


def test_failover_to_mock_when_engine_dies(log_root) -> None:
    """A group with the real engine at order 1 and llmux-mock at order 2: while llama-server runs it answers;
    killed, the same request succeeds through the mock (streamed and not)."""
    log_dir = log_root / "failover"
    harness.require_binaries()
    engines.require(engines.LLAMA_SERVER, engines.TINY_MODEL)
    llama = engines.start_llama(engines.TINY_MODEL, log_dir, slots=1, ctx=2048, embeddings=False)
    mock = harness.start_mock("backup", ["tiny"], log_dir)
    llmux = None
    try:
        config = {
            "model_list": [
                deployment("group", "openai/tiny", llama.url + "/v1", api_key="x", order=1),
                deployment("group", "openai/tiny", mock.url + "/v1", api_key="x", order=2),
            ],
            "general_settings": {"master_key": harness.MASTER_KEY},
        }
        llmux = harness.start_llmux(config, log_dir)
        client = llmux.client()
        raw = client.chat.completions.with_raw_response.create(model="group", **greedy(4))
        assert raw.headers["x-llmux-deployment"].endswith(f"@ {llama.hostport}")
        llama.proc.kill()
        harness.wait_port_closed(llama.port)
        raw = client.chat.completions.with_raw_response.create(model="group", **greedy(4))
        assert raw.headers["x-llmux-deployment"].endswith(f"@ {mock.hostport}")
        assert raw.parse().choices[0].message.content.startswith("Hello from backup")
        chunks = list(client.chat.completions.create(model="group", stream=True, **greedy(4)))
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices).startswith("Hello from backup")
    finally:
        engines.finish(llmux and llmux.proc, mock.proc, llama.proc)


def test_shared_group_prefers_the_real_engine(rig: Rig) -> None:
    raw = rig.client().chat.completions.with_raw_response.create(model="tiny-backed", **greedy(4))
    assert raw.headers["x-llmux-deployment"].endswith(f"@ {rig.llama.hostport}")


def test_response_model_field(rig: Rig) -> None:
    """What `model` the client sees: llama-server answers with its own model name (the GGUF file name, or
    --alias), whatever the request asked; llmux's passthrough forwards that unchanged."""
    completion = rig.client().chat.completions.create(model="tiny", **greedy(2))
    engine = direct(rig, {"model": "whatever", **greedy(2)})
    assert completion.model == engine["model"]
    print(json.dumps({"client_asked": "tiny", "engine_model": engine["model"], "client_sees": completion.model}))


def test_without_max_tokens_the_engine_fills_the_context(log_root) -> None:
    """llama-server's quirk: no max_tokens means "until the context is full" (the slot's n_ctx), not a default
    length. llmux forwards the request as is, so the client gets a context-full answer ("length")."""
    log_dir = log_root / "fill-context"
    harness.require_binaries()
    llama = engines.start_llama(engines.TINY_MODEL, log_dir, ctx=512, slots=1, embeddings=False)
    llmux = None
    try:
        config = {
            "model_list": [deployment("small", "openai/tiny", llama.url + "/v1", api_key="x")],
            "general_settings": {"master_key": harness.MASTER_KEY},
        }
        llmux = harness.start_llmux(config, log_dir)
        completion = llmux.client().chat.completions.create(model="small", messages=MESSAGES, temperature=0)
        assert completion.choices[0].finish_reason == "length"
        assert completion.usage.total_tokens >= 511, completion.usage
    finally:
        engines.finish(llmux and llmux.proc, llama.proc)


def test_deployment_max_tokens_bounds_unbounded_requests(rig: Rig) -> None:
    """The remedy on llmux's side: `max_tokens` in a deployment's litellm_params is a default for requests that
    set none (LiteLLM's semantics); a request's own value still wins."""
    client = rig.client()
    assert client.chat.completions.create(model="tiny-bounded", messages=MESSAGES).usage.completion_tokens == 7
    assert client.chat.completions.create(model="tiny-bounded", **greedy(3)).usage.completion_tokens == 3


def _probing_llmux(llama: engines.LlamaServer, log_dir, name: str) -> harness.Llmux:
    log_dir.mkdir(parents=True, exist_ok=True)
    config = {
        "model_list": [deployment("tiny", "openai/tiny", llama.url + "/v1", api_key="x")],
        "general_settings": {"master_key": harness.MASTER_KEY, "background_health_checks": True,
                             "health_check_interval": 1},
    }
    return harness.start_llmux(config, log_dir, name)


def _host(llmux: harness.Llmux, ready=lambda h: h["last_probe_seconds_ago"] is not None, timeout=5.0) -> dict:
    """llmux's /health/hosts entry of its only host, once `ready` holds (or the timeout passed)."""
    with llmux.http(headers={"authorization": f"Bearer {harness.MASTER_KEY}"}) as http:
        deadline = time.monotonic() + timeout
        while True:
            host = http.get("/health/hosts").json()["hosts"][0]
            if ready(host) or time.monotonic() > deadline:
                return host
            time.sleep(0.05)


def test_health_probe_reads_llama_cpp(log_root) -> None:
    """llmux's background probe on a real llama-server (started with --alias matching the deployment's model):
    recognised as llama.cpp, its model resident, its context length and slots read, a running generation
    counted as a busy slot."""
    log_dir = log_root / "probe-alias"
    harness.require_binaries()
    llama = engines.start_llama(engines.TINY_MODEL, log_dir, slots=2, ctx=4096, embeddings=False,
                                extra=["--alias", "tiny"])
    llmux = None
    try:
        llmux = _probing_llmux(llama, log_dir, "llmux-probe-alias")
        host = _host(llmux)
        assert host["engine"] == "llama.cpp", host
        assert host["status"] == "up", host
        assert [r["model"] for r in host["resident_models"]] == ["tiny"], host
        assert host["resident_models"][0]["context_length"] == 2048, host
        assert host["models"]["tiny"]["context_length"] == 2048, host
        assert host["slots"] == {"total": 2, "busy": 0}, host
        # A long generation on the engine shows up as a busy slot at the next probe.
        with httpx.Client(timeout=30, trust_env=False) as http:
            with http.stream("POST", llama.url + "/v1/chat/completions",
                             json={"stream": True, **greedy(2000)}) as r:
                busy = _host(llmux, ready=lambda h: (h.get("slots") or {}).get("busy") == 1, timeout=3)
        assert busy["slots"] == {"total": 2, "busy": 1}, busy
    finally:
        engines.finish(llmux and llmux.proc, llama.proc)


def test_health_probe_without_alias(rig: Rig, log_root) -> None:
    """llama-server started without --alias (its default) lists its model under the GGUF path and answers
    requests for any model name."""
    assert rig.llama
    llmux = _probing_llmux(rig.llama, log_root / "probe-path", "llmux-probe-path")
    try:
        host = _host(llmux)
        assert host["engine"] == "llama.cpp" and host["status"] != "down", host
        assert str(engines.TINY_MODEL) in host["available_models"], host
        # A request still goes through: the probe's verdict is only reported.
        with llmux.http(headers={"authorization": f"Bearer {harness.MASTER_KEY}"}) as http:
            assert http.post("/v1/chat/completions", json={"model": "tiny", **greedy(2)}).status_code == 200
        resident = [r["model"] for r in host["resident_models"]]
        assert "tiny" in resident, f"one llama-server serves every deployment on it: {resident}"
        assert host["status"] == "up", host
    finally:
        engines.finish(llmux.proc)


def test_context_window_error_and_fallback(rig: Rig) -> None:
    """A prompt longer than the slot's context: llama-server answers 400 `exceed_context_size_error` ("request (N
    tokens) exceeds the available context size (M tokens), try increasing it"). llmux recognises the message:
    without a fallback the client gets the 400 with the engine's message; with `context_window_fallbacks` the
    request goes to the fallback group at once."""
    long_prompt = [{"role": "user", "content": "x" * 9000}]  # byte-level vocabulary: ~1 token per character
    engine = rig.llama.post("/v1/chat/completions", {"messages": long_prompt, "max_tokens": 4})
    assert engine.status_code == 400
    assert engine.json()["error"]["type"] == "exceed_context_size_error"
    client = rig.client()
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="tiny", messages=long_prompt, max_tokens=4)
    assert "exceeds the available context size" in str(info.value)
    print("client sees:", info.value.body)
    raw = client.chat.completions.with_raw_response.create(model="tiny-ctx", messages=long_prompt, max_tokens=4)
    assert raw.headers["x-llmux-deployment"].endswith(f"@ {rig.mock.hostport}")
    assert raw.headers["x-litellm-attempted-fallbacks"] == "1"
