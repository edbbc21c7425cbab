"""`http(s)` image URLs sent to an Ollama engine: llmux fetches them (Ollama's `images` takes base64 only) within
its bounds, and refuses addresses on the home network unless the config allows them."""

from __future__ import annotations

import base64
import http.server
import threading
from pathlib import Path

import openai
import pytest

from harness import LOOPBACK, MASTER_KEY, start_llmux, start_mock

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)


class ImageHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server's name)
        if self.path.startswith("/cat.png"):
            self.send_response(200)
            self.send_header("content-type", "image/png")
            self.send_header("content-length", str(len(PNG)))
            self.end_headers()
            self.wfile.write(PNG)
        elif self.path == "/moved":
            self.send_response(302)
            self.send_header("location", "/cat.png")
            self.end_headers()
        elif self.path == "/page":
            body = b"<html>not an image</html>"
            self.send_response(200)
            self.send_header("content-type", "text/html")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        else:
            self.send_response(404)
            self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def image_server():
    server = http.server.ThreadingHTTPServer((LOOPBACK, 0), ImageHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://{LOOPBACK}:{server.server_address[1]}"
    server.shutdown()


def gateway(log_dir: Path, allow_private: bool):
    mock = start_mock("eyes", ["qwen3-vl:8b"], log_dir)
    config = {
        "model_list": [
            {"model_name": "vision", "litellm_params": {"model": "ollama_chat/qwen3-vl:8b", "api_base": mock.url}},
        ],
        "general_settings": {"master_key": MASTER_KEY},
        "llmux_settings": {"images": {"allow_private_networks": allow_private, "max_mb": 1, "timeout": 5}},
    }
    llmux = start_llmux(config, log_dir, name=f"llmux-images-{allow_private}")
    return mock, llmux


@pytest.fixture(scope="module")
def allowed(log_root):
    log_dir = log_root / "images-allowed"
    log_dir.mkdir(parents=True, exist_ok=True)
    mock, llmux = gateway(log_dir, True)
    yield mock, llmux
    llmux.proc.stop()
    mock.proc.stop()


def ask(llmux, url: str):
    return llmux.client().chat.completions.create(
        model="vision",
        messages=[{"role": "user", "content": [
            {"type": "text", "text": "what is this?"},
            {"type": "image_url", "image_url": {"url": url}},
        ]}],
    )


@pytest.mark.parametrize("path", ["/cat.png?sig=abc", "/moved"])
def test_an_image_url_reaches_ollama_as_base64(allowed, image_server, path):
    mock, llmux = allowed
    mock.clear()
    answer = ask(llmux, image_server + path)
    assert answer.choices[0].message.content
    sent = mock.requests("/api/chat")[-1]["body"]["messages"][-1]
    assert sent["images"] == [base64.b64encode(PNG).decode()], sent


def test_what_is_not_an_image_is_the_clients_error(allowed, image_server):
    mock, llmux = allowed
    mock.clear()
    with pytest.raises(openai.BadRequestError) as raised:
        ask(llmux, image_server + "/page")
    assert "not an image" in str(raised.value)
    assert raised.value.body["param"] == "messages[0].content[1].image_url", raised.value.body
    with pytest.raises(openai.BadRequestError) as raised:
        ask(llmux, image_server + "/missing.png")
    assert "404" in str(raised.value)
    assert mock.requests("/api/chat") == [], "the engine is not called with an image it cannot read"


def test_the_home_network_is_refused_by_default(log_root, image_server):
    log_dir = log_root / "images-refused"
    log_dir.mkdir(parents=True, exist_ok=True)
    mock, llmux = gateway(log_dir, False)
    try:
        with pytest.raises(openai.BadRequestError) as raised:
            ask(llmux, image_server + "/cat.png?token=secret-in-query")
        message = str(raised.value)
        assert "allow_private_networks" in message, message
        assert "secret-in-query" not in message, "the query (signatures, tokens) never shows in an error"
        assert mock.requests("/api/chat") == []
    finally:
        llmux.proc.stop()
        mock.proc.stop()
