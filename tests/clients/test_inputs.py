"""Images, embeddings and fields llmux does not know: what reaches the engine."""

from __future__ import annotations

import base64
import struct
import zlib

import pytest

from harness import OAI_GROUP, OAI_HOST, OAI_UPSTREAM_MODEL, deployment_header, expected_deployment


def tiny_png(width: int = 2, height: int = 2) -> bytes:
    """A valid RGB PNG, built by hand so the suite needs no imaging library."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    rows = b"".join(b"\x00" + bytes([255, 128, 0]) * width for _ in range(height))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def test_vision_image_reaches_ollama_as_base64(lab, client):
    b64 = base64.b64encode(tiny_png()).decode()
    _, host, _ = expected_deployment("vision")
    raw = client.chat.completions.with_raw_response.create(
        model="vision",
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is in this picture?"},
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{b64}"}},
                ],
            }
        ],
    )
    completion = raw.parse()
    assert raw.headers.get("x-llmux-deployment") == deployment_header(lab, "vision")
    assert completion.choices[0].message.content.startswith(f"Hello from {host}")

    sent = lab.mocks[host].requests("/api/chat")
    assert sent, f"{host} recorded no /api/chat request"
    message = sent[-1]["body"]["messages"][-1]
    assert message["role"] == "user"
    assert message["images"] == [b64]
    assert "What is in this picture?" in message["content"]


@pytest.mark.parametrize("inputs", ["one sentence", ["first sentence", "second sentence", "third"]])
def test_embeddings(lab, client, inputs):
    _, host, _ = expected_deployment("embedding")
    raw = client.embeddings.with_raw_response.create(model="embedding", input=inputs)
    result = raw.parse()
    expected_n = 1 if isinstance(inputs, str) else len(inputs)

    assert raw.headers.get("x-llmux-deployment") == deployment_header(lab, "embedding")
    assert len(result.data) == expected_n
    for i, item in enumerate(result.data):
        assert item.index == i
        assert item.object == "embedding"
        assert isinstance(item.embedding, list) and len(item.embedding) > 0
        assert all(isinstance(x, float) for x in item.embedding)
    if expected_n > 1:
        assert result.data[0].embedding != result.data[1].embedding
    assert result.usage is not None and result.usage.prompt_tokens > 0

    sent = lab.mocks[host].requests("/api/embed")
    assert sent, f"{host} recorded no /api/embed request (got {[r['path'] for r in lab.mocks[host].requests()]})"
    assert sent[-1]["body"]["model"] == "embeddinggemma"
    assert sent[-1]["body"]["input"] in (inputs, [inputs])


def test_embeddings_base64_encoding(client):
    """The SDK asks for base64 by default when numpy is around; asking explicitly must work too."""
    result = client.embeddings.create(model="embedding", input="hello", encoding_format="base64")
    vector = result.data[0].embedding
    if isinstance(vector, str):  # older SDKs hand the string back unchanged
        vector = list(struct.unpack(f"<{len(base64.b64decode(vector)) // 4}f", base64.b64decode(vector)))
    assert len(vector) > 0 and all(isinstance(x, float) for x in vector)


def test_unknown_fields_pass_through_to_openai_compatible_engine(lab, client):
    mock = lab.mocks[OAI_HOST]
    raw = client.chat.completions.with_raw_response.create(
        model=OAI_GROUP,
        messages=[{"role": "user", "content": "hi"}],
        temperature=0.25,
        extra_body={"x_custom": {"a": 1}, "top_k": 7},
    )
    completion = raw.parse()
    assert completion.choices[0].message.content.startswith(f"Hello from {OAI_HOST}")
    assert raw.headers.get("x-llmux-deployment", "").endswith(f"@ {mock.hostport}")

    sent = mock.requests("/v1/chat/completions")
    assert sent, f"{OAI_HOST} recorded no /v1/chat/completions request"
    body = sent[-1]["body"]
    assert body["model"] == OAI_UPSTREAM_MODEL
    assert body["x_custom"] == {"a": 1}
    assert body["top_k"] == 7
    assert body["temperature"] == 0.25
    # The engine gets its own key, never the client's master key.
    headers = {k.lower(): v for k, v in sent[-1]["headers"]}
    assert headers.get("authorization") == "Bearer sk-upstream-not-the-master-key"


def test_openai_compatible_stream_passthrough(lab, client):
    stream = client.chat.completions.create(
        model=OAI_GROUP, messages=[{"role": "user", "content": "hi"}], stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == f"Hello from {OAI_HOST} ({OAI_UPSTREAM_MODEL})."
    assert chunks[-1].usage is not None
