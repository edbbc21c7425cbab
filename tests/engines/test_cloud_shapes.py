"""llmux-mock's cloud wire formats against the providers' own documentation: each fixture in
fixtures/<provider>/ is an example from the provider's public API reference (its `source` says which page) —
request, answer, error, or event stream — and the mock, asked the same request, must answer in the same shape, so
the tests of llmux's cloud providers (tests/clients/test_cloud.py) run against something that looks like the real
API. Needs only llmux-mock.

"The same shape" as in test_mock_shapes.py: the same status, keys and JSON types at every level; for streams the
same `event:` names with a matching `type` in each `data:`, the same order of events (consecutive deltas counted
once), and each event shaped like the reference's event of the same kind.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

import engines
from engines import FIXTURES, harness, shape, shape_diff

ANTHROPIC = FIXTURES / "anthropic"
HEADERS = {"x-api-key": "sk-ant-fixture", "anthropic-version": "2023-06-01"}
# The long prompt that goes over a small context (the mock is told its context is 10 tokens).
OVER_CONTEXT = "word " * 200


@pytest.fixture(scope="module")
def mock(log_root: Path):
    harness.require_binaries()
    (log_root / "cloud-shapes").mkdir(parents=True, exist_ok=True)
    m = harness.start_mock("cloud-shapes", ["claude-sonnet-4-5"], log_root / "cloud-shapes")
    try:
        yield m
    finally:
        engines.finish(m.proc)


def fixture(name: str) -> dict:
    return json.loads((ANTHROPIC / f"{name}.json").read_text())


def ask(mock, fx: dict, stream: bool = False) -> httpx.Response:
    mock.configure(fault="none", tool_call=None, thinking=None, context_length=None, reply=None)
    if fx.get("mock"):
        mock.configure(**fx["mock"])
    body = dict(fx["request"])
    body["messages"] = [
        {**m, "content": OVER_CONTEXT if m["content"] == "PROMPT_OVER_CONTEXT" else m["content"]}
        for m in body["messages"]
    ]
    if stream:
        body["stream"] = True
    return harness.control_http().post(mock.url + "/v1/messages", json=body, headers=HEADERS, timeout=10)


@pytest.mark.parametrize(
    "name", sorted(p.stem for p in ANTHROPIC.glob("*.json"))
)
def test_anthropic_answers_and_errors_have_the_references_shape(mock, name):
    fx = fixture(name)
    answer = ask(mock, fx)
    assert answer.status_code == fx["status"], answer.text
    for header, value in fx.get("headers", {}).items():
        assert answer.headers.get(header) == value
    diffs = shape_diff(shape(fx["response"]), shape(answer.json()))
    assert not diffs, "\n".join(diffs)
    if fx["status"] == 200:
        assert [b["type"] for b in answer.json()["content"]] == [b["type"] for b in fx["response"]["content"]]


def events(text: str) -> list[tuple[str, dict]]:
    """(event name, data) of each SSE event; the name must be the data's `type`."""
    out = []
    for block in text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.strip().splitlines())
        data = json.loads(lines["data"])
        assert lines["event"] == data["type"], block
        out.append((lines["event"], data))
    return out


def kind(event: tuple[str, dict]) -> str:
    """An event's kind: its name, with the block or delta type it carries."""
    name, data = event
    sub = (data.get("content_block") or data.get("delta") or {}).get("type") if name.startswith("content_block") else None
    return f"{name}:{sub}" if sub else name


def collapsed(kinds: list[str]) -> list[str]:
    return [k for i, k in enumerate(kinds) if i == 0 or k != kinds[i - 1]]


@pytest.mark.parametrize(
    "name,request_fixture",
    [("message_stream", "message"), ("thinking_stream", "thinking"), ("tool_use_stream", "tool_use")],
)
def test_anthropic_event_streams_have_the_references_order_and_shapes(mock, name, request_fixture):
    reference = events((ANTHROPIC / f"{name}.sse").read_text())
    answer = ask(mock, fixture(request_fixture), stream=True)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/event-stream")
    got = events(answer.text)
    if name == "tool_use_stream":
        # The reference's tool example has a text block (index 0) before the tool call, which the mock (a pure
        # tool call) leaves out, and its ping with it; everything else comes in the reference's order.
        reference = [e for e in reference if e[1].get("index") != 0 and e[0] != "ping"]
        got = [e for e in got if e[0] != "ping"]
    ref_kinds = collapsed([kind(e) for e in reference])
    got_kinds = collapsed([kind(e) for e in got])
    assert got_kinds == ref_kinds
    by_kind = {kind(e): e[1] for e in reference}
    for event in got:
        diffs = shape_diff(shape(by_kind[kind(event)]), shape(event[1]))
        assert not diffs, f"{kind(event)}: " + "\n".join(diffs)
