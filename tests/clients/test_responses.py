"""OpenAI's Responses API (`client.responses.*` of the official SDK) served by llmux over chat engines: mock Ollama
hosts behind the home-lab aliases and a mock OpenAI-compatible engine."""

from __future__ import annotations

import base64
import json
import time

import httpx
import openai
import pytest

from harness import MASTER_KEY, OAI_GROUP, OAI_HOST, OAI_UPSTREAM_MODEL, dump, expected_deployment

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Current weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    "strict": False,
}
ARGS = {"city": "Paris"}


def engine(lab, model: str):
    """The mock that serves `model` first."""
    _, host, _ = expected_deployment(model)
    return lab.mocks[host]


def last_chat(mock) -> dict:
    chats = mock.requests("/api/chat")
    assert chats, "nothing reached the engine"
    return chats[-1]["body"]


def test_create_answers_with_the_engine_text(lab, client):
    mock = engine(lab, "tools_fast")
    mock.configure(reply="scripted answer to {input}")
    r = client.responses.create(model="tools_fast", input="say hi")
    assert r.object == "response" and r.id.startswith("resp_"), dump(r)
    assert r.status == "completed"
    assert r.model == "tools_fast", "the answer names the model the client asked for"
    assert r.output_text == "scripted answer to say hi", dump(r)
    message = r.output[-1]
    assert message.type == "message" and message.role == "assistant" and message.id.startswith("msg_")
    assert r.usage.input_tokens > 0 and r.usage.output_tokens > 0
    assert r.usage.total_tokens == r.usage.input_tokens + r.usage.output_tokens
    assert last_chat(mock)["messages"] == [{"role": "user", "content": "say hi"}]


def test_stream_events_in_order_and_final_response(lab, client):
    mock = engine(lab, "tools_fast")
    mock.configure(reply="streamed words arrive in order", thinking="let me think")
    names = []
    text = ""
    with client.responses.stream(model="tools_fast", input="go") as stream:
        for event in stream:
            names.append(event.type)
            if event.type == "response.output_text.delta":
                text += event.delta
        final = stream.get_final_response()
    assert names[:2] == ["response.created", "response.in_progress"], names
    assert names[-1] == "response.completed", names
    for kind in ("response.output_item.added", "response.content_part.added", "response.output_text.done",
                 "response.content_part.done", "response.output_item.done", "response.reasoning_text.delta"):
        assert kind in names, names
    assert names.index("response.reasoning_text.delta") < names.index("response.output_text.delta")
    assert text == "streamed words arrive in order"
    assert final.output_text == text, dump(final)
    reasoning = final.output[0]
    assert reasoning.type == "reasoning" and reasoning.content[0].text == "let me think", dump(final)
    assert final.usage.output_tokens > 0
    # A streamed response is stored like a whole one.
    assert client.responses.retrieve(final.id).output_text == text


def test_instructions_and_developer_role_reach_the_engine_as_system(lab, client):
    mock = engine(lab, "coding")
    client.responses.create(
        model="coding",
        instructions="answer in French",
        input=[
            {"role": "developer", "content": "be brief"},
            {"role": "user", "content": [{"type": "input_text", "text": "hello"}]},
        ],
    )
    messages = last_chat(mock)["messages"]
    assert [(m["role"], m["content"]) for m in messages] == [
        ("system", "answer in French"),
        ("system", "be brief"),
        ("user", "hello"),
    ], messages


def test_tool_round_trip_through_previous_response_id(lab, client):
    mock = engine(lab, "tools_fast")
    mock.configure(tool_call={"name": "get_weather", "arguments": ARGS}, reply="it is {tool_result}")
    first = client.responses.create(model="tools_fast", input="weather in Paris?", tools=[WEATHER])
    calls = [item for item in first.output if item.type == "function_call"]
    assert len(calls) == 1, dump(first)
    call = calls[0]
    assert call.name == "get_weather" and json.loads(call.arguments) == ARGS
    assert call.id.startswith("fc_") and call.call_id
    assert last_chat(mock)["tools"][0]["function"]["name"] == "get_weather"

    second = client.responses.create(
        model="tools_fast",
        previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "sunny, 21C"}],
        tools=[WEATHER],
    )
    assert second.output_text == "it is sunny, 21C", dump(second)
    assert second.previous_response_id == first.id
    # The engine got the whole conversation: question, the call, and the result.
    messages = last_chat(mock)["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "tool"], messages
    assert messages[0]["content"] == "weather in Paris?"
    assert messages[1]["tool_calls"][0]["function"]["name"] == "get_weather"
    assert messages[2]["content"] == "sunny, 21C"


def test_streamed_tool_call(lab, client):
    engine(lab, "tools_fast").configure(tool_call={"name": "get_weather", "arguments": ARGS})
    names = []
    with client.responses.stream(model="tools_fast", input="weather?", tools=[WEATHER]) as stream:
        for event in stream:
            names.append(event.type)
        final = stream.get_final_response()
    assert "response.function_call_arguments.done" in names, names
    call = next(item for item in final.output if item.type == "function_call")
    assert call.name == "get_weather" and json.loads(call.arguments) == ARGS, dump(final)


def test_input_image_reaches_ollama_as_base64(lab, client):
    mock = engine(lab, "vision")
    png = base64.b64encode(b"\x89PNG\r\n\x1a\nnot-really-an-image").decode()
    client.responses.create(
        model="vision",
        input=[{"role": "user", "content": [
            {"type": "input_text", "text": "what is this?"},
            {"type": "input_image", "image_url": f"data:image/png;base64,{png}"},
        ]}],
    )
    user = last_chat(mock)["messages"][-1]
    assert user["content"] == "what is this?"
    assert user["images"] == [png]


def test_json_schema_reaches_the_engine_as_format(lab, client):
    mock = engine(lab, "tools_fast")
    schema = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}
    client.responses.create(
        model="tools_fast",
        input="a person",
        text={"format": {"type": "json_schema", "name": "person", "schema": schema, "strict": True}},
    )
    assert last_chat(mock)["format"] == schema


def test_max_output_tokens_is_incomplete(lab, client):
    engine(lab, "tools_fast").configure(reply="one two three four five six seven eight nine ten")
    r = client.responses.create(model="tools_fast", input="count", max_output_tokens=3)
    assert r.status == "incomplete", dump(r)
    assert r.incomplete_details.reason == "max_output_tokens"
    assert r.max_output_tokens == 3


def test_get_and_delete_by_id(lab, client):
    r = client.responses.create(model="tools_fast", input="keep me", metadata={"ticket": "42"})
    got = client.responses.retrieve(r.id)
    assert got.id == r.id and got.output_text == r.output_text
    assert got.metadata == {"ticket": "42"}
    deleted = client.responses.delete(r.id)
    assert deleted is None or getattr(deleted, "deleted", True)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(r.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.delete(r.id)
    # store: false is not kept.
    unstored = client.responses.create(model="tools_fast", input="forget me", store=False)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(unstored.id)


def test_unknown_previous_response_id(lab, client):
    with pytest.raises(openai.BadRequestError) as err:
        client.responses.create(model="tools_fast", input="x", previous_response_id="resp_doesnotexist")
    body = err.value.body
    assert body["message"] == "Previous response with id 'resp_doesnotexist' not found.", body
    assert body["param"] == "previous_response_id" and body["type"] == "invalid_request_error"
    assert body["code"] == "previous_response_not_found", body


def test_bad_input_is_a_400_naming_the_field(lab, client):
    with pytest.raises(openai.BadRequestError) as err:
        client.responses.create(
            model="tools_fast",
            input=[{"role": "user", "content": [{"type": "input_image", "file_id": "file-123"}]}],
        )
    assert err.value.body["param"] == "input[0].content[0].file_id", err.value.body


def test_401_without_a_key(lab):
    with httpx.Client(base_url=lab.llmux.base_url, timeout=10, trust_env=False) as http:
        r = http.post("/v1/responses", json={"model": "tools_fast", "input": "x"})
        assert r.status_code == 401
        assert r.json()["error"]["type"] == "auth_error"
        r = http.get("/v1/responses/resp_x")
        assert r.status_code == 401
        r = http.post("/responses", json={"model": "tools_fast", "input": "x"},
                      headers={"authorization": f"Bearer {MASTER_KEY}"})
        assert r.status_code == 200 and r.json()["object"] == "response"


def test_passthrough_engine(lab, client):
    mock = lab.mocks[OAI_HOST]
    mock.configure(reply="from the OpenAI-compatible engine")
    r = client.responses.create(model=OAI_GROUP, input="hi", instructions="sys", max_output_tokens=50)
    assert r.output_text == "from the OpenAI-compatible engine", dump(r)
    assert r.model == OAI_GROUP
    sent = mock.requests("/v1/chat/completions")[-1]["body"]
    assert sent["model"] == OAI_UPSTREAM_MODEL
    assert sent["messages"] == [{"role": "system", "content": "sys"}, {"role": "user", "content": "hi"}]
    assert sent["max_tokens"] == 50
    with client.responses.stream(model=OAI_GROUP, input="hi") as stream:
        final = stream.get_final_response()
    assert final.output_text == "from the OpenAI-compatible engine"


def test_replicas_share_stored_responses_through_redis(lab):
    """Two llmux replicas on one Redis (a `redis-server` of this test's own): a conversation started on one
    continues on the other with `previous_response_id`, and either can read or delete it."""
    import subprocess

    from harness import free_port, homelab_config, start_llmux

    port = free_port()
    redis = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    config = homelab_config(lab.mocks)
    config["router_settings"] = {**config.get("router_settings", {}), "redis_host": "127.0.0.1", "redis_port": port}
    a = start_llmux(config, lab.log_dir, name="llmux-replica-a")
    b = start_llmux(config, lab.log_dir, name="llmux-replica-b")
    try:
        first = a.client().responses.create(model="tools_fast", input="remember the word kumquat")
        deadline = time.monotonic() + 5
        while True:  # the copy to Redis is written in the background
            try:
                again = b.client().responses.retrieve(first.id)
                break
            except openai.NotFoundError:
                assert time.monotonic() < deadline, "replica b never saw replica a's response"
                time.sleep(0.05)
        assert again.id == first.id and again.output_text == first.output_text
        engine = lab.mocks[expected_deployment("tools_fast")[1]]
        engine.clear()
        second = b.client().responses.create(model="tools_fast", input="which word?", previous_response_id=first.id)
        sent = engine.requests("/api/chat")[-1]["body"]["messages"]
        assert [m["role"] for m in sent] == ["user", "assistant", "user"], sent
        assert "kumquat" in sent[0]["content"]
        assert second.previous_response_id == first.id
        b.client().responses.delete(first.id)
        # Replicas write to Redis in the background: wait until the shared copy is gone ...
        deadline = time.monotonic() + 5
        exists = ["redis-cli", "-p", str(port), "EXISTS", f"llmux:response:{first.id}"]
        while subprocess.run(exists, capture_output=True, text=True).stdout.strip() != "0":
            assert time.monotonic() < deadline, "the deleted response is still in the shared copy"
            time.sleep(0.02)
        # ... then a third replica (nothing in its memory) finds it gone.
        with pytest.raises(openai.NotFoundError):
            c = start_llmux(config, lab.log_dir, name="llmux-replica-c")
            try:
                c.client().responses.retrieve(first.id)
            finally:
                c.proc.stop()
    finally:
        a.proc.stop()
        b.proc.stop()
        redis.kill()
        redis.wait()
