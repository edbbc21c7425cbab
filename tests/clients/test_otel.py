"""OpenTelemetry traces, as a collector receives them: an OTLP/HTTP receiver started by the test on loopback, and
llmux pointed at it by the standard `OTEL_EXPORTER_OTLP_ENDPOINT` (with a header, as a hosted collector's token
would be). A request whose first deployment is down and whose second answers arrives as one trace: the request's
server span and a client span per attempt, the failed one marked as an error, with the routing decision as
attributes.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import openai
import pytest

from harness import LOOPBACK, LLMUX_BIN, MASTER_KEY, Proc, free_port, require_binaries, start_mock, wait_http

COLLECTOR_TOKEN = "Bearer otel-collector-secret-42"


class Collector:
    """An OTLP/HTTP (JSON) receiver on loopback: keeps every export request's body and headers."""

    def __init__(self) -> None:
        self.exports: list[tuple[dict, dict]] = []
        received = self.exports

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                received.append(({k.lower(): v for k, v in self.headers.items()}, json.loads(body)))
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *_: object) -> None:
                pass

        self.server = ThreadingHTTPServer((LOOPBACK, 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def spans(self) -> list[dict]:
        return [
            span
            for _, body in self.exports
            for resource in body["resourceSpans"]
            for scope in resource["scopeSpans"]
            for span in scope["spans"]
        ]


def attributes(span: dict) -> dict:
    """A span's attributes as plain values."""
    return {a["key"]: next(iter(a["value"].values())) for a in span["attributes"]}


@pytest.fixture
def traced(log_root: Path, monkeypatch: pytest.MonkeyPatch):
    require_binaries()
    log_dir = log_root / "otel"
    log_dir.mkdir(parents=True, exist_ok=True)
    collector = Collector()
    mock = start_mock("otel-b", ["small"], log_dir)
    down = f"http://{LOOPBACK}:{free_port()}"  # nothing listens there
    config = {
        "model_list": [
            {"model_name": "g", "litellm_params": {"model": "ollama_chat/small", "api_base": down, "order": 1}},
            {"model_name": "g", "litellm_params": {"model": "ollama_chat/small", "api_base": mock.url, "order": 2}},
        ],
        "router_settings": {"num_retries": 1},
        "general_settings": {"master_key": MASTER_KEY},
    }
    path = log_dir / "llmux.yaml"
    path.write_text(json.dumps(config))
    port = free_port()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://{LOOPBACK}:{collector.port}")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", f"authorization={COLLECTOR_TOKEN}")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "llmux-under-test")
    argv = [str(LLMUX_BIN), "--config", str(path), "--host", LOOPBACK, "--port", str(port), "--data-dir", str(log_dir)]
    proc = Proc("llmux-otel", argv, log_dir)
    try:
        wait_http(f"http://{LOOPBACK}:{port}/health/liveliness", proc)
        yield collector, port, proc, mock
    finally:
        proc.stop()
        mock.proc.stop()
        collector.server.shutdown()


def test_a_failed_over_request_is_one_trace_with_a_span_per_attempt(traced):
    collector, port, proc, mock = traced
    client = openai.OpenAI(base_url=f"http://{LOOPBACK}:{port}/v1", api_key=MASTER_KEY, max_retries=0)
    reply = client.chat.completions.with_raw_response.create(
        model="g", messages=[{"role": "user", "content": "hi"}], extra_headers={"x-request-id": "otel-1"}
    )
    assert reply.http_response.status_code == 200

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not any(
        attributes(s).get("llmux.request_id") == "otel-1" for s in collector.spans()
    ):
        time.sleep(0.1)
    spans = collector.spans()
    roots = [s for s in spans if attributes(s).get("llmux.request_id") == "otel-1"]
    assert len(roots) == 1, spans
    root = roots[0]
    children = sorted(
        (s for s in spans if s.get("parentSpanId") == root["spanId"]), key=lambda s: int(s["startTimeUnixNano"])
    )

    headers, body = collector.exports[0]
    assert headers.get("authorization") == COLLECTOR_TOKEN
    assert headers.get("content-type") == "application/json"
    service = {a["key"]: a["value"]["stringValue"] for a in body["resourceSpans"][0]["resource"]["attributes"]}
    assert service["service.name"] == "llmux-under-test"

    assert root["name"] == "chat g" and root["kind"] == 2 and root["status"]["code"] == 1
    a = attributes(root)
    assert a["gen_ai.request.model"] == "g" and a["llmux.group"] == "g"
    assert a["http.response.status_code"] == "200"
    assert a["llmux.deployment"].endswith(f"@ {mock.hostport}"), a
    assert int(a["gen_ai.usage.output_tokens"]) > 0
    assert int(root["endTimeUnixNano"]) >= int(root["startTimeUnixNano"])

    assert len(children) == 2, spans
    failed, answered = children
    assert all(c["traceId"] == root["traceId"] and c["kind"] == 3 for c in children)
    assert failed["status"]["code"] == 2 and attributes(failed)["error.type"], failed
    assert attributes(answered)["llmux.deployment"].endswith(f"@ {mock.hostport}")
    assert answered["status"]["code"] == 1
    assert attributes(answered)["gen_ai.request.model"] == "small"
    assert int(answered["startTimeUnixNano"]) >= int(failed["startTimeUnixNano"])

    # The collector's token is a secret: never in llmux's own log.
    assert "otel-collector-secret-42" not in proc.log()
