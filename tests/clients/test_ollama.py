"""Ollama's own API served by llmux, driven by the official `ollama` Python SDK as Home Assistant, Open WebUI,
Frigate and OpenClaw use it: model list, running models, show, version, pull, chat (tools, images, thinking,
structured output, options), generate with images, embeddings, and the errors they expect."""

from __future__ import annotations

import base64
import json
import time

import ollama
import pytest

from harness import MASTER_KEY, OAI_GROUP, OAI_HOST, OAI_UPSTREAM_MODEL, expected_deployment, homelab_config, start_llmux
from test_inputs import tiny_png

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather for a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
]
ARGS = {"city": "Paris", "days": [1, 2], "detail": {"wind": True}}
ASK = [{"role": "user", "content": "What's the weather in Paris?"}]


def make_client(lab, key: str | None = MASTER_KEY) -> ollama.Client:
    headers = {"Authorization": f"Bearer {key}"} if key else None
    return ollama.Client(host=lab.llmux.base_url, headers=headers, timeout=30)


@pytest.fixture
def oc(lab) -> ollama.Client:
    lab.reset_mocks()
    yield make_client(lab)
    # reset_mocks leaves `reply` alone; tests here change it.
    for m in lab.mocks.values():
        if m.proc.alive():
            m.configure(reply=None)


def host_of(lab, model: str):
    _, host, _ = expected_deployment(model)
    return lab.mocks[host]


def last_chat(mock) -> dict:
    sent = mock.requests("/api/chat")
    assert sent, f"{mock.name} got no /api/chat request"
    return sent[-1]["body"]


# ---------------------------------------------------------------------------------------------------------
# Model routes


def test_list_names_every_group_and_alias_with_a_tag(lab, oc):
    listed = oc.list()
    names = [m.model for m in listed.models]
    # Groups keep their tag; names without one are listed as `:latest`, as Ollama lists its models.
    for name in ["nemotron-3-nano:4b", "nemotron-cascade-2:30b", "qwen3.5:9b", "embeddinggemma:latest",
                 "smart-router:latest", f"{OAI_GROUP}:latest", "tools_fast:latest", "coding:latest",
                 "vision:latest", "embedding:latest"]:
        assert name in names, names
    assert len(names) == len(set(names)), names
    entry = listed.models[names.index("tools_fast:latest")]
    assert entry.modified_at is not None
    assert len(entry.digest) == 64
    assert entry.details is not None
    # The SDK reads `model`; older clients (and Open WebUI) read `name`.
    with lab.llmux.http(headers={"Authorization": f"Bearer {MASTER_KEY}"}) as http:
        raw = http.get("/api/tags").json()["models"]
    assert all(m["name"] == m["model"] for m in raw)


def test_version_and_head(lab, oc):
    with lab.llmux.http(headers={"Authorization": f"Bearer {MASTER_KEY}"}) as http:
        r = http.get("/api/version")
        assert r.status_code == 200
        major, minor, _ = (int(x) for x in r.json()["version"].split("."))
        assert (major, minor) >= (0, 5)
        assert http.head("/api/version").status_code == 200


def test_show_reports_capabilities_and_context_length(oc):
    # The engines' /api/show is read by llmux's background probe: wait for it.
    deadline = time.monotonic() + 15
    while True:
        shown = oc.show("tools_fast")
        if "llmux.context_length" in (shown.modelinfo or {}) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert shown.modelinfo["general.architecture"] == "llmux"
    assert shown.modelinfo["llmux.context_length"] == 8192, shown.modelinfo
    assert "completion" in shown.capabilities and "tools" in shown.capabilities, shown.capabilities
    assert "nemotron-3-nano:4b" in shown.modelfile
    assert oc.show("tools_fast:latest").capabilities == shown.capabilities
    assert "embedding" in oc.show("embedding").capabilities

    with pytest.raises(ollama.ResponseError) as err:
        oc.show("no-such-model")
    assert err.value.status_code == 404
    assert "not found" in err.value.error


def test_ps_lists_models_loaded_on_their_hosts(lab, oc):
    oc.chat(model="tools_fast", messages=ASK, stream=False)
    running = [m.model for m in oc.ps().models]
    assert "tools_fast:latest" in running, running
    assert "nemotron-3-nano:4b" in running, running


def test_pull_of_a_served_model_succeeds_and_an_unknown_one_is_refused(lab, oc):
    statuses = [p.status for p in oc.pull("tools_fast", stream=True)]
    assert statuses[0] == "pulling manifest" and statuses[-1] == "success", statuses
    assert oc.pull("nemotron-3-nano:4b").status == "success"
    with pytest.raises(ollama.ResponseError) as err:
        oc.pull("llama3.2:latest")
    assert err.value.status_code == 404
    assert "does not pull" in err.value.error
    for mock in lab.mocks.values():
        assert not mock.requests("/api/pull"), f"{mock.name} was asked to pull"


def test_management_routes_are_refused_with_a_message(lab, oc):
    with pytest.raises(ollama.ResponseError) as err:
        oc.delete("tools_fast")
    assert err.value.status_code == 403
    assert "does not delete models" in err.value.error
    with pytest.raises(ollama.ResponseError) as err:
        oc.copy("tools_fast", "mine")
    assert "does not copy models" in err.value.error


def test_without_the_key_it_is_401(lab):
    anonymous = make_client(lab, key=None)
    with pytest.raises(ollama.ResponseError) as err:
        anonymous.list()
    assert err.value.status_code == 401
    with pytest.raises(ollama.ResponseError) as err:
        anonymous.chat(model="tools_fast", messages=ASK, stream=False)
    assert err.value.status_code == 401
    assert "api key" in err.value.error.lower()
    # Ollama's error shape on the model routes too: the SDK shows the message, not a JSON dump.
    with pytest.raises(ollama.ResponseError) as err:
        anonymous.show("tools_fast")
    assert err.value.status_code == 401
    assert err.value.error.startswith("Authentication Error"), err.value.error


def test_ollama_routes_can_go_without_the_key_for_clients_that_have_none(lab):
    """Home Assistant's and Frigate's Ollama clients send no key: `llmux_settings.ollama_api.require_key: false`
    opens /api/* (as Ollama itself is) while the OpenAI and Anthropic routes still need the master key."""
    config = homelab_config(lab.mocks)
    config["llmux_settings"] = {"ollama_api": {"require_key": False}}
    keyless = start_llmux(config, lab.log_dir, name="llmux-ollama-keyless")
    try:
        anonymous = ollama.Client(host=keyless.base_url, timeout=30)
        assert any(m.model.startswith("tools_fast") for m in anonymous.list().models)
        answer = anonymous.chat(model="tools_fast", messages=ASK, stream=False)
        assert answer.message.content
        with keyless.http() as http:
            assert http.get("/").text == "Ollama is running"
            assert http.get("/v1/models").status_code == 401
            assert http.post("/v1/chat/completions", json={"model": "tools_fast", "messages": ASK}).status_code == 401
        assert "ollama_api.require_key" in keyless.proc.log(), "the open door is said at start-up"
    finally:
        keyless.proc.stop()


# ---------------------------------------------------------------------------------------------------------
# Chat


def test_chat_whole_and_streamed(lab, oc):
    whole = oc.chat(model="tools_fast", messages=ASK, stream=False)
    assert whole.model == "tools_fast"
    assert whole.message.role == "assistant"
    assert whole.message.content == "Hello from clementine (nemotron-3-nano:4b)."
    assert whole.done and whole.done_reason == "stop"
    assert whole.eval_count > 0 and whole.prompt_eval_count > 0
    assert whole.total_duration > 0

    parts = list(oc.chat(model="tools_fast:latest", messages=ASK, stream=True))
    assert all(p.model == "tools_fast:latest" for p in parts)
    assert [p.done for p in parts].count(True) == 1 and parts[-1].done
    assert "".join(p.message.content or "" for p in parts) == "Hello from clementine (nemotron-3-nano:4b)."
    assert parts[-1].done_reason == "stop"
    assert parts[-1].eval_count > 0


@pytest.mark.parametrize("stream", [False, True])
def test_chat_tool_call_and_result(lab, oc, stream):
    engine = host_of(lab, "tools_fast")
    engine.configure(tool_call={"name": "get_weather", "arguments": ARGS}, reply="It is {tool_result}.")
    if stream:
        parts = list(oc.chat(model="tools_fast", messages=ASK, tools=TOOLS, stream=True))
        calls = [c for p in parts for c in (p.message.tool_calls or [])]
        assert parts[-1].done and not parts[-1].message.tool_calls
        assert all(not p.done for p in parts if p.message.tool_calls), "tool calls come in a line before the last"
    else:
        answer = oc.chat(model="tools_fast", messages=ASK, tools=TOOLS, stream=False)
        calls = answer.message.tool_calls or []
    assert len(calls) == 1, calls
    assert calls[0].function.name == "get_weather"
    assert calls[0].function.arguments == ARGS, "Ollama clients get arguments as an object"
    assert last_chat(engine)["tools"][0]["function"]["name"] == "get_weather"

    # The client runs the tool and sends the result back, as Home Assistant does.
    follow = ASK + [
        {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "get_weather", "arguments": ARGS}}]},
        {"role": "tool", "tool_name": "get_weather", "content": "22 degrees"},
    ]
    answer = oc.chat(model="tools_fast", messages=follow, tools=TOOLS, stream=False)
    assert answer.message.content == "It is 22 degrees."
    sent = last_chat(engine)["messages"]
    assert sent[-2]["tool_calls"][0]["function"] == {"name": "get_weather", "arguments": ARGS}
    assert sent[-1]["role"] == "tool" and sent[-1]["tool_name"] == "get_weather"
    assert sent[-1]["content"] == "22 degrees"


def test_chat_image_reaches_the_engine_as_base64(lab, oc):
    png = tiny_png()
    engine = host_of(lab, "vision")
    answer = oc.chat(
        model="vision",
        messages=[{"role": "user", "content": "What is in this picture?", "images": [png]}],
        stream=False,
    )
    assert answer.message.content.startswith(f"Hello from {engine.name}")
    message = last_chat(engine)["messages"][-1]
    assert message["images"] == [base64.b64encode(png).decode()]
    assert message["content"] == "What is in this picture?"


def test_think(lab, oc):
    engine = host_of(lab, "reasoning_fast")
    engine.configure(thinking="Thinking about {input}")
    answer = oc.chat(model="reasoning_fast", messages=ASK, think=True, stream=False)
    assert answer.message.thinking == "Thinking about What's the weather in Paris?"
    assert answer.message.content.startswith("Hello from")
    assert last_chat(engine)["think"] is True

    parts = list(oc.chat(model="reasoning_fast", messages=ASK, think=True, stream=True))
    assert "".join(p.message.thinking or "" for p in parts) == "Thinking about What's the weather in Paris?"

    oc.chat(model="reasoning_fast", messages=ASK, think=False, stream=False)
    assert last_chat(engine)["think"] is False


def test_structured_output_options_and_keep_alive_reach_the_engine_unchanged(lab, oc):
    engine = host_of(lab, "tools_fast")
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    oc.chat(
        model="tools_fast",
        messages=ASK,
        format=schema,
        options={"num_ctx": 16384, "temperature": 0.1, "num_predict": 77, "top_k": 12},
        keep_alive="15m",
        stream=False,
    )
    body = last_chat(engine)
    assert body["format"] == schema
    assert body["options"]["num_ctx"] == 16384
    assert body["options"]["temperature"] == 0.1
    assert body["options"]["num_predict"] == 77
    assert body["options"]["top_k"] == 12
    assert body["keep_alive"] == "15m"

    oc.chat(model="tools_fast", messages=ASK, format="json", stream=False)
    assert last_chat(engine)["format"] == "json"


def test_unknown_model_is_404(oc):
    with pytest.raises(ollama.ResponseError) as err:
        oc.chat(model="llama3.2", messages=ASK, stream=False)
    assert err.value.status_code == 404
    assert err.value.error == 'model "llama3.2" not found, try pulling it first'
    with pytest.raises(ollama.ResponseError) as err:
        list(oc.chat(model="llama3.2", messages=ASK, stream=True))
    assert err.value.status_code == 404


def test_chat_through_an_openai_compatible_engine(lab, oc):
    engine = lab.mocks[OAI_HOST]
    answer = oc.chat(model=OAI_GROUP, messages=ASK, options={"num_predict": 32, "temperature": 0.3}, stream=False)
    assert answer.message.content == f"Hello from {OAI_HOST} ({OAI_UPSTREAM_MODEL})."
    assert answer.model == OAI_GROUP
    body = engine.requests("/v1/chat/completions")[-1]["body"]
    assert body["model"] == OAI_UPSTREAM_MODEL
    assert body["max_tokens"] == 32 and body["temperature"] == 0.3

    parts = list(oc.chat(model=f"{OAI_GROUP}:latest", messages=ASK, stream=True))
    assert "".join(p.message.content or "" for p in parts) == f"Hello from {OAI_HOST} ({OAI_UPSTREAM_MODEL})."
    assert parts[-1].done and parts[-1].eval_count > 0


# ---------------------------------------------------------------------------------------------------------
# Generate and embeddings


@pytest.mark.parametrize("stream", [False, True])
def test_generate_with_an_image_as_frigate_sends_it(lab, oc, stream):
    engine = host_of(lab, "vision")
    b64 = base64.b64encode(tiny_png()).decode()
    kw = dict(model="vision", prompt="Describe the camera image.", images=[b64], system="Be terse.")
    if stream:
        parts = list(oc.generate(**kw, stream=True))
        text = "".join(p.response for p in parts)
        assert parts[-1].done and parts[-1].done_reason == "stop"
    else:
        answer = oc.generate(**kw, stream=False)
        text = answer.response
        assert answer.done and answer.model == "vision"
    assert text.startswith(f"Hello from {engine.name}")
    # An Ollama engine gets Frigate's own request.
    body = engine.requests("/api/generate")[-1]["body"]
    assert (body["system"], body["prompt"], body["images"]) == ("Be terse.", "Describe the camera image.", [b64])


def test_generate_through_an_openai_compatible_engine_becomes_a_chat(lab, oc):
    engine = lab.mocks[OAI_HOST]
    b64 = base64.b64encode(tiny_png()).decode()
    answer = oc.generate(model=OAI_GROUP, prompt="Describe the camera image.", images=[b64], system="Be terse.",
                         stream=False)
    assert answer.response.startswith(f"Hello from {OAI_HOST}") and answer.model == OAI_GROUP
    body = engine.requests("/v1/chat/completions")[-1]["body"]
    assert body["messages"][0] == {"role": "system", "content": "Be terse."}
    parts = body["messages"][-1]["content"]
    assert {"type": "text", "text": "Describe the camera image."} in parts
    assert any(p.get("image_url", {}).get("url") == f"data:image/png;base64,{b64}" for p in parts), parts


def test_embed_and_legacy_embeddings(lab, oc):
    engine = host_of(lab, "embedding")
    out = oc.embed(model="embedding", input=["first", "second"])
    assert len(out.embeddings) == 2 and all(len(v) == 8 for v in out.embeddings)
    assert out.model == "embedding"
    assert engine.requests("/api/embed")[-1]["body"]["input"] == ["first", "second"]
    one = oc.embed(model="embedding:latest", input="only")
    assert len(one.embeddings) == 1
    legacy = oc.embeddings(model="embedding", prompt="hello")
    assert len(legacy.embedding) == 8
    assert engine.requests("/api/embeddings")[-1]["body"]["prompt"] == "hello"


# ---------------------------------------------------------------------------------------------------------
# Failures


def test_a_stream_failing_before_its_first_token_moves_to_the_next_deployment(own_lab):
    lab = own_lab
    oc = make_client(lab)
    lab.mocks["clementine"].configure(fault={"status": 503})
    parts = list(oc.chat(model="tools_fast", messages=ASK, stream=True))
    assert "".join(p.message.content or "" for p in parts) == "Hello from banana (nemotron-3-nano:4b)."
    assert lab.mocks["clementine"].requests("/api/chat"), "the order-1 host was tried first"

    # Broken off after the first piece: nothing can move any more, and the stream ends with Ollama's error line.
    lab.mocks["clementine"].configure(fault="none")
    lab.mocks["star"].configure(fault={"drop_after_chunks": 1})
    with pytest.raises(ollama.ResponseError):
        for _ in oc.chat(model="coding", messages=ASK, stream=True):
            pass


# ---------------------------------------------------------------------------------------------------------
# Ollama engines get the client's own request


def test_an_ollama_engine_gets_the_clients_own_request_and_answers_as_itself(lab, oc):
    """Nothing is lost to a round trip through OpenAI's shape: fields only Ollama knows (`raw`, `suffix`) reach
    an Ollama engine, and its own answer comes back (its `load_duration`, which llmux could not measure), under
    the name the client asked for."""
    mock = host_of(lab, "tools_fast")
    engine_model = expected_deployment("tools_fast")[2].split("/", 1)[1]
    mock.configure(latency_ms=60)
    answer = oc.generate(model="tools_fast", prompt="fn main() {", suffix="}", raw=True,
                         options={"num_predict": 5, "num_ctx": 4096}, keep_alive="10m", stream=False)
    sent = mock.requests("/api/generate")[-1]["body"]
    assert sent["model"] == engine_model
    assert (sent["raw"], sent["suffix"], sent["prompt"]) == (True, "}", "fn main() {"), sent
    assert sent["options"] == {"num_predict": 5, "num_ctx": 4096} and sent["keep_alive"] == "10m", sent
    assert answer.model == "tools_fast"
    assert answer.load_duration >= 60_000_000, "the engine's own durations come back"

    pieces = list(oc.chat(model="tools_fast:latest", messages=ASK, stream=True))
    assert {p.model for p in pieces} == {"tools_fast:latest"}
    assert pieces[-1].done and pieces[-1].load_duration >= 60_000_000
    assert mock.requests("/api/chat")[-1]["body"]["model"] == engine_model


def test_an_engine_breaking_off_mid_stream_ends_it_with_ollamas_error_line(lab, oc):
    mock = host_of(lab, "tools_fast")
    mock.configure(reply="a b c d e f g h", fault={"drop_after_chunks": 2})
    got = []
    with pytest.raises(ollama.ResponseError) as err:
        for piece in oc.chat(model="tools_fast", messages=ASK, stream=True):
            got.append(piece.message.content)
    assert got, "the first pieces arrived before the break"
    assert "broke off" in err.value.error or "stream" in err.value.error, err.value.error
