"""Real-engine harness: llama.cpp's `llama-server` on loopback, llmux in front, and the tools to look at the wire.

The engine and its models live in a cache outside the repository, installed by `tests/engines/setup`
(`LLMUX_ENGINES_DIR`, default `~/.cache/llmux-engines`). Process handling (own process group, killed on teardown,
logs captured) and llmux / llmux-mock start-up come from `tests/clients/harness.py`.

Also here:

* `TapProxy`: a TCP proxy between llmux and an engine that records every byte the engine sent, and can re-send
  them cut into tiny pieces (splitting multi-byte UTF-8 characters across network reads).
* `parse_http_responses`: the raw bytes of an HTTP/1.1 connection back into (status, headers, de-chunked body).
* `sse_events`, `shape`, `shape_diff`: SSE framing and the JSON-shape comparison the mock-drift test uses.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "clients"))

import harness  # noqa: E402  (tests/clients/harness.py: processes, llmux, mocks)
from harness import LOOPBACK, MASTER_KEY, Proc, free_port, wait_http  # noqa: E402,F401

HERE = Path(__file__).resolve().parent
FIXTURES = HERE / "fixtures"

ENGINES_DIR = Path(os.environ.get("LLMUX_ENGINES_DIR") or Path.home() / ".cache" / "llmux-engines")
LLAMA_SERVER = ENGINES_DIR / "bin" / "llama-server"
TINY_MODEL = ENGINES_DIR / "models" / "tiny.gguf"
GEMMA_MODEL = ENGINES_DIR / "models" / "gemma3-270m.gguf"

# tests/run sets this after tests/engines/setup succeeded: a missing engine is then a failure, not a skip.
REQUIRE = os.environ.get("LLMUX_REQUIRE_ENGINES") == "1"

# The tiny model's context: 4 slots of 8192 tokens (room for a long generation to cancel).
TINY_CTX = 32768
TINY_SLOTS = 4


def require(*paths: Path) -> None:
    """Skips (or, under tests/run after a successful setup, fails) when the engine or a model is missing."""
    missing = [str(p) for p in paths if not p.exists()]
    if not missing:
        return
    why = f"real engine not installed ({', '.join(missing)} missing): run tests/engines/setup"
    if REQUIRE:
        pytest.fail(why + " (LLMUX_REQUIRE_ENGINES=1: setup reported success)", pytrace=False)
    pytest.skip(why)


def finish(*procs: Proc | None) -> None:
    """Kills test processes at once (llmux serves 5 s more after SIGTERM, to drain; nothing here needs that)."""
    for p in procs:
        if p is not None:
            p.kill()
            p.stop()


# ---------------------------------------------------------------------------------------------------------
# llama-server


@dataclass
class LlamaServer:
    port: int
    proc: Proc
    model: Path

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def hostport(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    _http: httpx.Client | None = None

    def request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        """A request straight to the engine. llama-server (cpp-httplib) closes idle keep-alive connections on its
        own schedule, so a request that finds its pooled connection gone is sent again on a new one."""
        if self._http is None:
            self._http = httpx.Client(trust_env=False, limits=httpx.Limits(keepalive_expiry=1.0))
        kw.setdefault("timeout", 60.0)
        try:
            return self._http.request(method, self.url + path, **kw)
        except httpx.RemoteProtocolError:
            return self._http.request(method, self.url + path, **kw)

    def get(self, path: str) -> httpx.Response:
        return self.request("GET", path, timeout=10.0)

    def post(self, path: str, body: Any, **kw: Any) -> httpx.Response:
        return self.request("POST", path, json=body, **kw)

    def slots(self) -> list[dict]:
        r = self.get("/slots")
        r.raise_for_status()
        return r.json()

    def metrics(self) -> dict[str, float]:
        """`/metrics` (Prometheus text) as {name: value}, names without the `llamacpp:` prefix."""
        r = self.get("/metrics")
        r.raise_for_status()
        out: dict[str, float] = {}
        for line in r.text.splitlines():
            if line.startswith("#") or not line.strip():
                continue
            name, _, value = line.rpartition(" ")
            out[name.split(":", 1)[-1]] = float(value)
        return out

    def wait_idle(self, timeout: float = 5.0) -> float:
        """Waits until no slot is processing; returns how long that took."""
        start = time.monotonic()
        while True:
            if not any(s["is_processing"] for s in self.slots()):
                return time.monotonic() - start
            if time.monotonic() - start > timeout:
                raise AssertionError(f"llama-server still busy after {timeout}s: {json.dumps(self.slots())[:2000]}")
            time.sleep(0.02)

    def stop(self) -> None:
        finish(self.proc)
        if self._http is not None:
            self._http.close()


def start_llama(
    model: Path,
    log_dir: Path,
    name: str = "llama-server",
    *,
    ctx: int = TINY_CTX,
    slots: int = TINY_SLOTS,
    embeddings: bool = True,
    extra: Iterable[str] = (),
    timeout: float = 60.0,
) -> LlamaServer:
    """Starts llama-server on a free loopback port and waits until `/health` answers 200 (model loaded)."""
    require(LLAMA_SERVER, model)
    port = free_port()
    argv = [
        str(LLAMA_SERVER), "-m", str(model), "--host", LOOPBACK, "--port", str(port),
        "-t", "1", "-np", str(slots), "-c", str(ctx), "--metrics", "--slots", "--no-webui",
    ]
    if embeddings:
        argv += ["--embeddings", "--pooling", "mean"]
    argv += list(extra)
    log_dir.mkdir(parents=True, exist_ok=True)
    proc = Proc(name, argv, log_dir)
    server = LlamaServer(port, proc, model)
    try:
        wait_http(server.url + "/health", proc, timeout=timeout)
    except Exception:
        proc.stop()
        raise
    return server


# ---------------------------------------------------------------------------------------------------------
# The wire


def stop_loop(loop: asyncio.AbstractEventLoop, server: asyncio.AbstractServer | None, thread: threading.Thread) -> None:
    """Closes a server running on `loop` in `thread`: stops listening, cancels its connection handlers, stops and
    closes the loop."""

    async def shut() -> None:
        if server is not None:
            server.close()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    if loop.is_running():
        asyncio.run_coroutine_threadsafe(shut(), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    if not loop.is_running():
        loop.close()


class LoopbackServer:
    """An asyncio TCP server on loopback, in a thread of its own; subclasses implement `_handle`."""

    def __init__(self, name: str):
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._server: asyncio.AbstractServer | None = None
        self.port = 0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()
        if not self._ready.wait(5):
            raise RuntimeError(f"{name} did not start")

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)

        async def start() -> None:
            self._server = await asyncio.start_server(self._handle, LOOPBACK, 0)
            self.port = self._server.sockets[0].getsockname()[1]
            self._ready.set()

        self._loop.run_until_complete(start())
        self._loop.run_forever()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError

    def close(self) -> None:
        stop_loop(self._loop, self._server, self._thread)


@dataclass
class Tapped:
    """One TCP connection through a TapProxy: every byte each way, in order."""

    to_engine: bytearray = field(default_factory=bytearray)
    from_engine: bytearray = field(default_factory=bytearray)


class TapProxy(LoopbackServer):
    """A loopback TCP proxy to `target_port` recording both directions of every connection.

    With `split`, each read from the engine is re-sent to the client in pieces, `gap` seconds apart, so the
    client's network reads end in the middle of SSE lines and of multi-byte UTF-8 characters: `split=N` cuts every
    N bytes; `split="utf8"` cuts right after the first byte of every multi-byte UTF-8 character."""

    def __init__(self, target_port: int, split: int | str | None = None, gap: float = 0.002):
        self.target_port = target_port
        self.split = split
        self.gap = gap
        self.connections: list[Tapped] = []
        super().__init__(f"tap-{target_port}")

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # each piece leaves on its own
        tap = Tapped()
        self.connections.append(tap)
        try:
            up_reader, up_writer = await asyncio.open_connection(LOOPBACK, self.target_port)
        except OSError:
            writer.close()
            return

        async def client_to_engine() -> None:
            try:
                while data := await reader.read(65536):
                    tap.to_engine += data
                    up_writer.write(data)
                    await up_writer.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                up_writer.close()

        async def engine_to_client() -> None:
            try:
                while data := await up_reader.read(65536):
                    tap.from_engine += data
                    if self.split:
                        for piece in split_pieces(data, self.split):
                            writer.write(piece)
                            await writer.drain()
                            await asyncio.sleep(self.gap)
                    else:
                        writer.write(data)
                        await writer.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                writer.close()

        await asyncio.gather(client_to_engine(), engine_to_client())

    def clear(self) -> None:
        self.connections.clear()

    def responses(self) -> list["HttpResponse"]:
        """Every complete response the engine sent, over all connections, in connection order."""
        out: list[HttpResponse] = []
        for tap in list(self.connections):
            out.extend(parse_http_responses(bytes(tap.from_engine)))
        return out


def split_pieces(data: bytes, split: int | str) -> list[bytes]:
    if split == "utf8":
        cuts = [i + 1 for i, b in enumerate(data) if b >= 0xC0]  # after each multi-byte lead byte
    else:
        assert isinstance(split, int) and split > 0
        cuts = list(range(split, len(data), split))
    bounds = [0, *cuts, len(data)]
    return [data[a:b] for a, b in zip(bounds, bounds[1:]) if b > a]


@dataclass
class HttpResponse:
    status: int
    headers: dict[str, str]
    body: bytes
    chunks: list[bytes]  # the transfer-encoding chunks as the engine framed them (empty unless chunked)


def parse_http_responses(raw: bytes) -> list[HttpResponse]:
    """Splits the server side of an HTTP/1.1 connection into responses, de-chunking bodies. A truncated last
    response is returned with what arrived of it."""
    out: list[HttpResponse] = []
    pos = 0
    while pos < len(raw):
        head_end = raw.find(b"\r\n\r\n", pos)
        if head_end < 0:
            break
        lines = raw[pos:head_end].decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers: dict[str, str] = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        pos = head_end + 4
        body = bytearray()
        chunks: list[bytes] = []
        if headers.get("transfer-encoding", "").lower() == "chunked":
            while True:
                line_end = raw.find(b"\r\n", pos)
                if line_end < 0:
                    pos = len(raw)
                    break
                size = int(raw[pos:line_end].split(b";")[0], 16)
                pos = line_end + 2
                if size == 0:
                    trailer_end = raw.find(b"\r\n", pos)
                    pos = len(raw) if trailer_end < 0 else trailer_end + 2
                    break
                chunk = raw[pos : pos + size]
                body += chunk
                chunks.append(bytes(chunk))
                pos += size + 2
        elif "content-length" in headers:
            n = int(headers["content-length"])
            body += raw[pos : pos + n]
            pos += n
        else:  # read until close
            body += raw[pos:]
            pos = len(raw)
        out.append(HttpResponse(status, headers, bytes(body), chunks))
    return out


def sse_events(raw: bytes) -> list[bytes]:
    """SSE events (the bytes between blank lines), without the terminating blank line."""
    text = raw.replace(b"\r\n", b"\n")
    events = text.split(b"\n\n")
    if events and events[-1] == b"":
        events.pop()
    return events


def sse_data(raw: bytes) -> list[Any]:
    """The `data:` payloads of an SSE body: parsed JSON, or the string `[DONE]`; comment-only events skipped."""
    out: list[Any] = []
    for event in sse_events(raw):
        data = [line[5:].lstrip(b" ") for line in event.split(b"\n") if line.startswith(b"data:")]
        if not data:
            continue
        payload = b"\n".join(data)
        out.append("[DONE]" if payload == b"[DONE]" else json.loads(payload))
    return out


_VOLATILE = [
    (re.compile(rb'"created":\d+'), b'"created":0'),
    (re.compile(rb'"id":"(chatcmpl|cmpl)-[A-Za-z0-9]+"'), b'"id":"ID"'),
    (re.compile(rb'"timings":\{[^{}]*\}'), b'"timings":{}'),
]


def mask_volatile(raw: bytes) -> bytes:
    """Raw engine output with the per-request fields (id, created, timings) blanked; every other byte kept."""
    for pattern, repl in _VOLATILE:
        raw = pattern.sub(repl, raw)
    return raw


def same_but_the_last_character(streamed: str, whole: str) -> bool:
    """llama-server's quirk: when max_tokens ends the answer within 3 bytes of a byte that starts a multi-byte
    character, the non-streamed answer has those bytes (the lead byte as U+FFFD, and whatever followed it) but
    the stream never sends them: it holds back what looks like an incomplete character (its check only looks
    at lead bytes, so `\xe2` + `D` counts as incomplete too) and does not flush it when generation ends."""
    tail = whole[len(streamed):]
    return whole.startswith(streamed) and (tail == "" or (tail[0] == "\ufffd" and len(tail) <= 3))


# ---------------------------------------------------------------------------------------------------------
# Shapes (for the mock-drift test)


def shape(value: Any) -> Any:
    """The JSON shape of a value: objects keep their keys, arrays the union of their elements' shapes, scalars
    become their type name."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items()}
    if isinstance(value, list):
        shapes: list[Any] = []
        for item in value:
            s = shape(item)
            if s not in shapes:
                shapes.append(s)
        return shapes
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "str"
    if value is None:
        return "null"
    return type(value).__name__


def shape_diff(real: Any, mock: Any, path: str = "$") -> list[str]:
    """Where `mock`'s shape differs from `real`'s: missing or extra keys, different types. Numbers: an int where the
    engine sent a float is accepted (JSON does not tell 1.0 from 1 reliably); lists compare element by element
    against the engine's first element shape."""
    diffs: list[str] = []
    if isinstance(real, dict) and isinstance(mock, dict):
        for k in real:
            if k not in mock:
                diffs.append(f"{path}.{k}: missing in the mock")
            else:
                diffs += shape_diff(real[k], mock[k], f"{path}.{k}")
        for k in mock:
            if k not in real:
                diffs.append(f"{path}.{k}: only in the mock")
        return diffs
    if isinstance(real, list) and isinstance(mock, list):
        if not real or not mock:
            if bool(real) != bool(mock):
                diffs.append(f"{path}: engine sent {len(real)} element shapes, mock {len(mock)}")
            return diffs
        for i, m in enumerate(mock):
            best = min((shape_diff(r, m, f"{path}[{i}]") for r in real), key=len)
            diffs += best
        return diffs
    if real == mock or (real == "number" and mock == "int"):
        return diffs
    return [f"{path}: engine {json.dumps(real)[:80]}, mock {json.dumps(mock)[:80]}"]


class CannedEngine(LoopbackServer):
    """A loopback HTTP/1.1 server that answers every POST with one fixed response, its body sent as the given
    pieces (one chunk each, `gap` seconds apart): an engine that misbehaves exactly as a test needs, e.g. raw
    invalid UTF-8 inside a JSON string, which no well-behaved engine sends. Every other method gets 404."""

    def __init__(self, content_type: str, pieces: list[bytes], gap: float = 0.005):
        self.content_type = content_type
        self.pieces = pieces
        self.gap = gap
        self.requests: list[bytes] = []
        super().__init__("canned-engine")

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                length = 0
                for line in lines[1:]:
                    k, _, v = line.partition(":")
                    if k.strip().lower() == "content-length":
                        length = int(v)
                body = await reader.readexactly(length) if length else b""
                self.requests.append(head + body)
                if not lines[0].startswith("POST "):
                    writer.write(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n")
                    await writer.drain()
                    continue
                writer.write(
                    f"HTTP/1.1 200 OK\r\ncontent-type: {self.content_type}\r\ntransfer-encoding: chunked\r\n\r\n".encode()
                )
                for piece in self.pieces:
                    writer.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
                    await writer.drain()
                    await asyncio.sleep(self.gap)
                writer.write(b"0\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            pass
        finally:
            writer.close()
