#!/usr/bin/env python3
"""Records real exchanges with llama.cpp's llama-server (tiny model) as fixtures under tests/engines/fixtures/.

    .venv/bin/python tests/engines/record.py          # needs tests/engines/setup to have run

Each exchange is `fixtures/NAME.json` (the request, the status, the content type and, for JSON answers, the body)
and, for streamed answers, `fixtures/NAME.sse` (the body exactly as the engine sent it). `fixtures/engine.json`
says which build answered. test_mock_shapes.py sends the same requests to llmux-mock and compares shapes, so these
files are all it needs: it runs without llama-server.

Requests use model "tiny" (llama-server ignores the name; the mock serves it). Generation is greedy
(temperature 0) with a small max_tokens, so re-recording gives the same text; only ids, timestamps and timings
change.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

import engines  # noqa: E402

MODEL = "tiny"
# How the engine runs while recording (engines.start_llama's flags, plus an alias so `model` reads "tiny").
FLAGS = ["-t", "1", "-np", "4", "-c", "8192", "--metrics", "--slots", "--embeddings", "--pooling", "mean",
         "--alias", MODEL]
MESSAGES = [{"role": "user", "content": "Say something."}]


def chat(**extra: Any) -> dict:
    return {"model": MODEL, "messages": MESSAGES, "max_tokens": 8, "temperature": 0, **extra}


def completion(**extra: Any) -> dict:
    return {"model": MODEL, "prompt": "Once upon a time", "max_tokens": 8, "temperature": 0, **extra}


# name -> (method, path, body, description). `{STOP}` in a body is replaced by a stop string that the engine's
# answer to the same request without `stop` contains (found at recording time).
EXCHANGES: dict[str, tuple[str, str, Any, str]] = {
    "chat": ("POST", "/v1/chat/completions", chat(), "non-streamed chat, ends on max_tokens"),
    "chat_stop": ("POST", "/v1/chat/completions", chat(max_tokens=32, stop=["{STOP}"]), "non-streamed chat, ends on a stop string"),
    "chat_stream": (
        "POST", "/v1/chat/completions", chat(stream=True, stream_options={"include_usage": True}),
        "streamed chat with stream_options.include_usage",
    ),
    "chat_stream_plain": ("POST", "/v1/chat/completions", chat(stream=True, max_tokens=4), "streamed chat without usage"),
    "chat_stream_stop": (
        "POST", "/v1/chat/completions", chat(stream=True, max_tokens=32, stop=["{STOP}"]),
        "streamed chat ending on a stop string",
    ),
    "completion": ("POST", "/v1/completions", completion(), "legacy text completion"),
    "completion_stream": (
        "POST", "/v1/completions", completion(stream=True, stream_options={"include_usage": True}),
        "streamed legacy text completion with usage",
    ),
    "embeddings": (
        "POST", "/v1/embeddings", {"model": MODEL, "input": ["hello", "world"], "encoding_format": "float"},
        "embeddings of two inputs, floats",
    ),
    "embeddings_base64": (
        "POST", "/v1/embeddings", {"model": MODEL, "input": "hello", "encoding_format": "base64"},
        "embeddings as base64 (what the openai SDK asks for by default)",
    ),
    "models": ("GET", "/v1/models", None, "model list"),
    "error_no_messages": ("POST", "/v1/chat/completions", {"model": MODEL, "max_tokens": 4}, "chat without messages"),
    "error_bad_json": ("POST", "/v1/chat/completions", "{not json", "a body that is not JSON"),
    "error_unknown_route": ("POST", "/v1/nonexistent", {"model": MODEL}, "a route the engine does not have"),
    "health": ("GET", "/health", None, "llama.cpp health"),
    "slots": ("GET", "/slots", None, "llama.cpp slot states (after the requests above)"),
    "props": ("GET", "/props", None, "llama.cpp server properties"),
}


def send(server: engines.LlamaServer, method: str, path: str, body: Any) -> httpx.Response:
    kw: dict[str, Any] = {"timeout": 60.0}
    if isinstance(body, str):
        kw["content"] = body.encode()
        kw["headers"] = {"content-type": "application/json"}
    elif body is not None:
        kw["json"] = body
    return httpx.request(method, server.url + path, **kw)


def pick_stop(text: str) -> str:
    """A printable ASCII character of `text` after its start (the engine then cuts the answer there)."""
    for i, c in enumerate(text):
        if i >= 2 and c.isascii() and c.isprintable() and not c.isspace() and c not in "\\\"":
            return c
    raise SystemExit(f"no usable stop character in {text!r}")


def portable(raw: bytes) -> bytes:
    """The engine's bytes with this machine's cache directory (in model paths) replaced by a placeholder."""
    return raw.replace(json.dumps(str(engines.ENGINES_DIR))[1:-1].encode(), b"$LLMUX_ENGINES_DIR")


def record(server: engines.LlamaServer, out: Path) -> None:
    base = send(server, "POST", "/v1/chat/completions", chat(max_tokens=32)).json()
    stop = pick_stop(base["choices"][0]["message"]["content"])
    out.mkdir(parents=True, exist_ok=True)
    for name, (method, path, body, description) in EXCHANGES.items():
        if isinstance(body, dict):
            body = json.loads(json.dumps(body).replace("{STOP}", stop))
        r = send(server, method, path, body)
        content_type = r.headers.get("content-type", "")
        fixture: dict[str, Any] = {
            "description": description,
            "request": {"method": method, "path": path, "body": body},
            "status": r.status_code,
            "content_type": content_type,
        }
        if content_type.startswith("text/event-stream"):
            (out / f"{name}.sse").write_bytes(portable(r.content))
            fixture["sse"] = f"{name}.sse"
        else:
            fixture["json"] = json.loads(portable(r.content))
        (out / f"{name}.json").write_text(json.dumps(fixture, indent=1, ensure_ascii=False) + "\n")
        print(f"{name}: {r.status_code} {content_type}")
    props = server.get("/props").json()
    stamp = engines.ENGINES_DIR / "ready"
    engine = {
        "engine": "llama.cpp llama-server",
        "build_info": props.get("build_info"),
        "installed": stamp.read_text().strip() if stamp.exists() else None,
        "model": "tests/engines/tiny_gguf.py (random weights)",
        "flags": " ".join(FLAGS),
    }
    (out / "engine.json").write_text(json.dumps(engine, indent=1) + "\n")


def main() -> int:
    for path in (engines.LLAMA_SERVER, engines.TINY_MODEL):
        if not path.exists():
            print(f"{path} missing: run tests/engines/setup first", file=sys.stderr)
            return 1
    log_dir = Path(tempfile.mkdtemp(prefix="llmux-record-"))
    server = engines.start_llama(engines.TINY_MODEL, log_dir, ctx=8192, slots=4, extra=FLAGS[-2:])
    try:
        record(server, engines.FIXTURES)
    finally:
        server.stop()
    shutil.rmtree(log_dir, ignore_errors=True)
    print(f"fixtures written to {engines.FIXTURES}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
