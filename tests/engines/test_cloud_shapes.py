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


GEMINI = FIXTURES / "gemini"
GEMINI_HEADERS = {"x-goog-api-key": "AIza-fixture"}


@pytest.fixture(scope="module")
def gemini_mock(log_root: Path):
    harness.require_binaries()
    (log_root / "cloud-shapes-gemini").mkdir(parents=True, exist_ok=True)
    m = harness.start_mock(
        "cloud-shapes-gemini", ["gemini-2.5-flash", "gemini-embedding-001"], log_root / "cloud-shapes-gemini"
    )
    try:
        yield m
    finally:
        engines.finish(m.proc)


def gemini_fixture(name: str) -> dict:
    return json.loads((GEMINI / f"{name}.json").read_text())


def ask_gemini(mock, fx: dict, method: str | None = None, headers: dict | None = None) -> httpx.Response:
    mock.configure(fault="none", tool_call=None, thinking=None, context_length=None, reply=None)
    if fx.get("mock"):
        mock.configure(**fx["mock"])
    body = json.loads(json.dumps(fx["request"]).replace("PROMPT_OVER_CONTEXT", OVER_CONTEXT))
    method = method or fx["method"]
    url = f"{mock.url}/v1beta/models/{fx['model']}:{method}"
    if method == "streamGenerateContent":
        url += "?alt=sse"
    return harness.control_http().post(url, json=body, headers=GEMINI_HEADERS if headers is None else headers, timeout=10)


@pytest.mark.parametrize("name", sorted(p.stem for p in GEMINI.glob("*.json")))
def test_gemini_answers_and_errors_have_the_references_shape(gemini_mock, name):
    fx = gemini_fixture(name)
    answer = ask_gemini(gemini_mock, fx)
    assert answer.status_code == fx["status"], answer.text
    diffs = shape_diff(shape(fx["response"]), shape(answer.json()))
    assert not diffs, "\n".join(diffs)
    if fx["status"] == 429:
        # Gemini says how long to wait in the body, not in a Retry-After header.
        assert "retry-after" not in answer.headers
        assert answer.json()["error"]["details"][-1]["retryDelay"] == "20s"
    if fx["status"] == 200 and "candidates" in fx["response"]:
        kinds = lambda r: [sorted(k for k in p if k != "text") or ["text"] for p in r["candidates"][0]["content"]["parts"]]
        assert kinds(answer.json()) == kinds(fx["response"])


def test_gemini_refuses_a_request_without_its_key(gemini_mock):
    answer = ask_gemini(gemini_mock, gemini_fixture("generate_content"), headers={})
    assert answer.status_code == 403
    assert answer.json()["error"]["status"] == "PERMISSION_DENIED"


def sse_data(text: str) -> list[dict]:
    """The JSON of each `data:` event (comment lines, which start with ':', skipped); Gemini names no events."""
    out = []
    for block in text.strip().split("\n\n"):
        lines = [line for line in block.strip().splitlines() if not line.startswith(":")]
        if not lines:
            continue
        assert all(line.startswith("data: ") for line in lines), block
        out.append(json.loads("".join(line[len("data: "):] for line in lines)))
    return out


@pytest.mark.parametrize("request_fixture", ["generate_content", "thinking", "function_call"])
def test_gemini_sse_stream_has_the_references_shapes(gemini_mock, request_fixture):
    reference = sse_data((GEMINI / "generate_content_stream.sse").read_text())
    answer = ask_gemini(gemini_mock, gemini_fixture(request_fixture), method="streamGenerateContent")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/event-stream")
    assert "[DONE]" not in answer.text, "Gemini's stream has no end marker: it ends with the body"
    got = sse_data(answer.text)
    assert got
    # Every event but the last is shaped like the reference's first ones, the last like its last one, with the
    # part kinds of the whole answer in place of text where the request asked for thoughts or a function call.
    for event in got[:-1]:
        part = event["candidates"][0]["content"]["parts"][0]
        event["candidates"][0]["content"]["parts"] = [{"text": part.get("text", "")}]
        diffs = shape_diff(shape(reference[0]), shape(event))
        assert not diffs, "\n".join(diffs)
    last = got[-1]
    assert last["candidates"][0]["finishReason"] == "STOP"
    assert last["usageMetadata"]["totalTokenCount"] > last["usageMetadata"]["promptTokenCount"]
