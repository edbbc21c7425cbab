"""llmux-mock against recorded reality: the same requests that llama-server answered in fixtures/ (recorded by
record.py), sent to llmux-mock's OpenAI-compatible API, must come back in the same shape, so the mock that most
of llmux's tests run against cannot drift from a real engine.

Runs without llama-server: it only reads the fixtures (and starts llmux-mock).

What "the same shape" means:

* JSON answers: the same status, the same keys at every level, the same JSON types (an int where the engine
  sent a float is accepted), the same `object` values and `finish_reason` values.
* Streams: the same SSE framing (`data: ` + one JSON object + a blank line, ending with `data: [DONE]`), the
  same sequence of chunk kinds (role chunk, content chunks, finish chunk, usage chunk, [DONE]), and each kind of
  chunk shaped like the engine's.
* llama.cpp's own endpoints (`/health`, `/slots`, `/props`) and the model list carry far more than any test
  needs; there the mock may leave keys out but must not invent or mistype any, and must have the keys listed in
  REQUIRED (what a router reads).

The mock is told (POST /mock/config) to reply with a long text containing the request's stop string, so that
its finish reasons follow from the request as the engine's did.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

import engines
from engines import FIXTURES, harness, shape, shape_diff

# Key paths the mock must have on the endpoints compared as subsets ($ = the body; [] = every element).
REQUIRED: dict[str, list[str]] = {
    "models": ["$.object", "$.data[].id", "$.data[].object", "$.data[].owned_by", "$.data[].meta.n_ctx_train"],
    "health": ["$.status"],
    "slots": ["$[].id", "$[].n_ctx", "$[].is_processing"],
    "props": ["$.default_generation_settings.n_ctx", "$.total_slots", "$.model_alias", "$.model_path",
              "$.build_info"],
}
SUBSET = set(REQUIRED)


def fixtures() -> list[str]:
    names = sorted(p.stem for p in FIXTURES.glob("*.json") if p.stem != "engine")
    assert names, f"no fixtures in {FIXTURES}: run tests/engines/record.py"
    return names


def load(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text())


@pytest.fixture(scope="module")
def mock(log_root: Path):
    harness.require_binaries()
    (log_root / "shapes").mkdir(parents=True, exist_ok=True)
    m = harness.start_mock("shapes", ["tiny"], log_root / "shapes")
    try:
        yield m
    finally:
        engines.finish(m.proc)


def reply_for(request: dict) -> str:
    """A reply longer than any max_tokens of the fixtures, with the request's stop string (if any) in it early."""
    words = [f"w{i}" for i in range(100)]
    stop = (request.get("body") or {}).get("stop") if isinstance(request.get("body"), dict) else None
    if stop:
        words[2] = f"x{stop[0] if isinstance(stop, list) else stop}x"
    return " ".join(words)


def ask(mock: harness.Mock, request: dict) -> httpx.Response:
    mock.configure(reply=reply_for(request))
    body = request.get("body")
    kw: dict[str, Any] = {}
    if isinstance(body, str):
        kw = {"content": body.encode(), "headers": {"content-type": "application/json"}}
    elif body is not None:
        kw = {"json": body}
    return harness.control_http().request(request["method"], mock.url + request["path"], timeout=10.0, **kw)


def has_path(value: Any, path: str) -> bool:
    parts = path.removeprefix("$").replace("[]", ".[]").strip(".").split(".")

    def walk(v: Any, rest: list[str]) -> bool:
        if not rest:
            return True
        head, tail = rest[0], rest[1:]
        if head == "[]":
            return isinstance(v, list) and bool(v) and all(walk(x, tail) for x in v)
        return isinstance(v, dict) and head in v and walk(v[head], tail)

    return walk(value, [p for p in parts if p])


def subset_diff(real: Any, mock: Any, path: str = "$") -> list[str]:
    """Keys the mock has that the engine does not, or with another type (the mock may leave keys out)."""
    if isinstance(real, dict) and isinstance(mock, dict):
        out = []
        for k, v in mock.items():
            if k not in real:
                out.append(f"{path}.{k}: only in the mock")
            else:
                out += subset_diff(real[k], v, f"{path}.{k}")
        return out
    if isinstance(real, list) and isinstance(mock, list):
        if not real or not mock:
            return []
        return [d for i, m in enumerate(mock) for d in min((subset_diff(r, m, f"{path}[{i}]") for r in real), key=len)]
    return shape_diff(real, mock, path)


def values(v: Any, key: str) -> list[Any]:
    """Every value of `key` anywhere in `v`."""
    if isinstance(v, dict):
        return [x for k, x in v.items() if k == key] + [y for x in v.values() for y in values(x, key)]
    if isinstance(v, list):
        return [y for x in v for y in values(x, key)]
    return []


def kind(event: Any) -> str:
    """What a streamed chunk is: role, content, finish, usage (empty choices) or done."""
    if event == "[DONE]":
        return "done"
    if "error" in event:
        return "error"
    choices = event.get("choices")
    if not choices:
        return "usage" if event.get("usage") else "empty"
    c = choices[0]
    if c.get("finish_reason"):
        return "finish+usage" if event.get("usage") else "finish"
    delta = c.get("delta")
    if delta is not None and "role" in delta and not delta.get("content"):
        return "role"
    return "content"


def outline(events: list[Any]) -> list[str]:
    """The sequence of chunk kinds, runs of content chunks collapsed into one."""
    out: list[str] = []
    for e in events:
        k = kind(e)
        if not (k == "content" and out and out[-1] == "content"):
            out.append(k)
    return out


@pytest.mark.parametrize("name", fixtures())
def test_mock_answers_in_the_engines_shape(mock: harness.Mock, name: str) -> None:
    fixture = load(name)
    r = ask(mock, fixture["request"])
    assert r.status_code == fixture["status"], f"{name}: engine {fixture['status']}, mock {r.status_code}: {r.text}"
    real_type = fixture["content_type"].split(";")[0]
    assert r.headers.get("content-type", "").split(";")[0] == real_type

    if "sse" in fixture:
        real_raw = (FIXTURES / fixture["sse"]).read_bytes()
        check_framing(real_raw, "engine")
        check_framing(r.content, "mock")
        real, got = engines.sse_data(real_raw), engines.sse_data(r.content)
        assert outline(got) == outline(real), f"{name}: chunk sequence differs"
        by_kind: dict[str, Any] = {}
        for e in real:
            by_kind.setdefault(kind(e), e)
        diffs = []
        for i, e in enumerate(got):
            if e != "[DONE]":
                diffs += shape_diff(shape(by_kind[kind(e)]), shape(e), f"{kind(e)} chunk {i}")
        assert not diffs, f"{name}:\n" + "\n".join(diffs)
        for key in ("object", "finish_reason"):
            assert {v for v in values(got, key) if v} == {v for v in values(real, key) if v}, key
        return

    real, got = fixture["json"], r.json()
    if name in SUBSET:
        diffs = subset_diff(shape(real), shape(got))
        diffs += [f"{p}: missing in the mock" for p in REQUIRED[name] if not has_path(got, p)]
    else:
        diffs = shape_diff(shape(real), shape(got))
    assert not diffs, f"{name}:\n" + "\n".join(diffs)
    for key in ("object", "finish_reason", "type"):
        mine, theirs = {json.dumps(v) for v in values(got, key)}, {json.dumps(v) for v in values(real, key)}
        assert mine <= theirs if name in SUBSET else mine == theirs, f"{name}: `{key}` values {mine} vs {theirs}"


def check_framing(raw: bytes, who: str) -> None:
    assert raw.endswith(b"\n\n"), f"{who}: the stream does not end with a blank line"
    events = engines.sse_events(raw)
    assert events[-1] == b"data: [DONE]", f"{who}: last event {events[-1][:80]!r}"
    for e in events:
        assert e.startswith(b"data: ") and b"\n" not in e, f"{who}: not one `data: ` line: {e[:80]!r}"
    for e in events[:-1]:
        assert isinstance(json.loads(e[6:]), dict)


def test_fixtures_are_current() -> None:
    """Every exchange record.py knows has a fixture (re-run it after adding one)."""
    import record

    assert sorted(record.EXCHANGES) == fixtures()
