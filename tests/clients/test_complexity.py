"""The home-lab's `smart-router` (auto_router/complexity_router) through the official SDK: a voice command goes
to the fast model's host, a long multi-step analysis to the slow one, streaming."""

from __future__ import annotations

MESSAGES_SIMPLE = [
    {"role": "system", "content": "You are Home Assistant's voice assistant. " * 20},
    {"role": "user", "content": "turn off the kitchen light"},
]
MESSAGES_HARD = [
    {
        "role": "user",
        "content": (
            "Think step by step. First analyze our home network's architecture: the distributed services, their "
            "latency and throughput, and the authentication between them. Then compare and contrast two designs "
            "for the database schema, list the pros and cons of each, and finally deduce which one to implement "
            "and why."
        ),
    }
]


def stream_text(client, messages):
    stream = client.chat.completions.create(model="smart-router", messages=messages, stream=True)
    return "".join(c.choices[0].delta.content or "" for c in stream if c.choices)


def test_voice_command_goes_to_the_fast_model(client):
    assert stream_text(client, MESSAGES_SIMPLE) == "Hello from clementine (nemotron-3-nano:4b)."
    raw = client.chat.completions.with_raw_response.create(model="smart-router", messages=MESSAGES_SIMPLE)
    assert raw.headers["x-litellm-complexity-router-tier"] == "SIMPLE"
    assert "-> reasoning_fast" in raw.headers["x-llmux-route"]


def test_multi_step_analysis_goes_to_the_slow_model(client):
    assert stream_text(client, MESSAGES_HARD) == "Hello from star (nemotron-cascade-2:30b)."
    raw = client.chat.completions.with_raw_response.create(model="smart-router", messages=MESSAGES_HARD)
    assert raw.headers["x-litellm-complexity-router-tier"] in ("COMPLEX", "REASONING")
    assert float(raw.headers["x-litellm-complexity-router-score"]) > 0.35


def test_utils_complexity_explains_without_calling_an_engine(lab, client):
    before = sum(len(m.requests("/api/chat")) for m in lab.mocks.values())
    with lab.llmux.http() as http:
        reply = http.post(
            "/utils/complexity",
            headers={"authorization": f"Bearer {client.api_key}"},
            json={"model": "smart-router", "messages": MESSAGES_HARD},
        )
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["target"] == "reasoning_slow"
    names = [d["name"] for d in body["classification"]["dimensions"]]
    assert names[:3] == ["tokenCount", "codePresence", "reasoningMarkers"]
    assert sum(len(m.requests("/api/chat")) for m in lab.mocks.values()) == before
