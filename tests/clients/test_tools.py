"""Tool calling through an Ollama engine, as SDK users (agents) consume it."""

from __future__ import annotations

import json

from harness import dump, expected_deployment

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather for a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["c", "f"]}},
                "required": ["city"],
            },
        },
    }
]
ARGS = {"city": "Paris, FR", "unit": "c", "days": [1, 2], "detail": {"wind": True}}
MESSAGES = [{"role": "user", "content": "What's the weather in Paris?"}]


def arm(lab, model: str) -> str:
    _, host, _ = expected_deployment(model)
    lab.mocks[host].configure(tool_call={"name": "get_weather", "arguments": ARGS})
    return host


def test_tool_call_non_stream(lab, client):
    host = arm(lab, "tools_fast")
    completion = client.chat.completions.create(model="tools_fast", messages=MESSAGES, tools=TOOLS)

    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls", dump(completion)
    calls = choice.message.tool_calls
    assert calls and len(calls) == 1, dump(completion)
    call = calls[0]
    assert call.type == "function"
    assert call.id, "tool call without an id (clients need it to answer the call)"
    assert call.function.name == "get_weather"
    assert isinstance(call.function.arguments, str), "OpenAI clients expect arguments as a JSON string"
    assert json.loads(call.function.arguments) == ARGS

    # The tools reached the engine in Ollama's shape.
    sent = lab.mocks[host].requests("/api/chat")[-1]["body"]
    assert sent["tools"][0]["function"]["name"] == "get_weather"


def test_tool_call_stream_reassembles(lab, client):
    arm(lab, "tools_fast")
    stream = client.chat.completions.create(model="tools_fast", messages=MESSAGES, tools=TOOLS, stream=True)

    # What SDK users (and agent frameworks) do: accumulate by index.
    calls: dict[int, dict] = {}
    finish = None
    for chunk in stream:
        if not chunk.choices:
            continue
        choice = chunk.choices[0]
        for tc in choice.delta.tool_calls or []:
            slot = calls.setdefault(tc.index, {"id": None, "name": "", "arguments": ""})
            if tc.id:
                slot["id"] = tc.id
            if tc.function and tc.function.name:
                slot["name"] += tc.function.name
            if tc.function and tc.function.arguments:
                slot["arguments"] += tc.function.arguments
        if choice.finish_reason:
            finish = choice.finish_reason

    assert finish == "tool_calls"
    assert list(calls) == [0], calls
    assert calls[0]["id"]
    assert calls[0]["name"] == "get_weather"
    assert json.loads(calls[0]["arguments"]) == ARGS


def test_tool_call_round_trip_with_tool_result(lab, client):
    """The second turn (assistant tool call + tool result) is accepted and reaches the engine."""
    host = arm(lab, "tools_fast")
    first = client.chat.completions.create(model="tools_fast", messages=MESSAGES, tools=TOOLS)
    call = first.choices[0].message.tool_calls[0]
    lab.mocks[host].configure(tool_call=None)
    messages = MESSAGES + [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": call.id, "type": "function",
                            "function": {"name": call.function.name, "arguments": call.function.arguments}}],
        },
        {"role": "tool", "tool_call_id": call.id, "content": '{"temp_c": 21}'},
    ]
    second = client.chat.completions.create(model="tools_fast", messages=messages, tools=TOOLS)
    assert second.choices[0].finish_reason == "stop"
    assert second.choices[0].message.content.startswith(f"Hello from {host}")

    sent = lab.mocks[host].requests("/api/chat")[-1]["body"]["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "tool"]
    assistant_call = sent[1]["tool_calls"][0]["function"]
    assert assistant_call["name"] == "get_weather"
    # Ollama wants arguments as an object, not a string.
    assert assistant_call["arguments"] == ARGS
    assert sent[2]["content"] == '{"temp_c": 21}'
