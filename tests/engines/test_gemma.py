"""The chain with a real model: Gemma 3 270M (Q4_K_M) in llama-server, llmux in front, the openai SDK in front of
that. What the tiny random model cannot show: text that makes sense, a real tokenizer and chat template, and
quantized (Q4_K) kernels.

Gemma 3 270M here is the base model, not an instruction-tuned one: it continues text sensibly (the completion
tests) but does not answer questions or end its turn, so chat answers are bounded by a stop string or
max_tokens. Its template must be llama.cpp's built-in one: `--no-jinja --chat-template gemma`. With this build's
default (jinja on), `--chat-template gemma` is taken as a Jinja template whose text is the word "gemma", and
every chat prompt becomes that word.

A few seconds on an idle machine (load ~2 s, ~30 tokens/s on 2 threads), so it runs in CI; LLMUX_SKIP_GEMMA=1
skips it (tests/run also does when setup was told LLMUX_ENGINES_GEMMA=0). Timings print with `pytest -s`.
"""

from __future__ import annotations

import os
import time

import pytest

import engines
from conftest import deployment
from engines import harness

pytestmark = [
    pytest.mark.gemma,
    pytest.mark.skipif(
        os.environ.get("LLMUX_SKIP_GEMMA") == "1" or os.environ.get("LLMUX_ENGINES_GEMMA") == "0",
        reason="Gemma chain skipped (LLMUX_SKIP_GEMMA=1 or LLMUX_ENGINES_GEMMA=0)",
    ),
]

QUESTION = [{"role": "user", "content": "What is the capital of France? Answer with one word."}]
TIMEOUT = 180.0  # generous: a busy 2-core CI machine can be ten times slower than an idle one


@pytest.fixture(scope="module")
def chain(log_root):
    harness.require_binaries()
    engines.require(engines.LLAMA_SERVER, engines.GEMMA_MODEL)
    log_dir = log_root / "gemma"
    started = time.monotonic()
    llama = engines.start_llama(
        engines.GEMMA_MODEL, log_dir, "llama-gemma", ctx=2048, slots=1, embeddings=False,
        extra=["-t", "2", "--no-jinja", "--chat-template", "gemma"], timeout=120,
    )
    print(f"\ngemma: llama-server ready in {time.monotonic() - started:.2f}s")
    llmux = None
    try:
        config = {
            "model_list": [deployment("gemma", "openai/gemma3-270m", llama.url + "/v1", api_key="x")],
            "general_settings": {"master_key": harness.MASTER_KEY},
        }
        llmux = harness.start_llmux(config, log_dir)
        yield llama, llmux
    finally:
        engines.finish(llmux and llmux.proc, llama.proc)


@pytest.mark.parametrize(("prompt", "expected"), [
    ("The Eiffel Tower is in Paris, the capital of", "France"),
    ("Monday, Tuesday, Wednesday,", "Thursday"),
])
def test_completion_makes_sense(chain, prompt: str, expected: str) -> None:
    llama, llmux = chain
    started = time.monotonic()
    completion = llmux.client(timeout=TIMEOUT).completions.create(
        model="gemma", prompt=prompt, max_tokens=6, temperature=0
    )
    text = completion.choices[0].text
    print(f"gemma: {prompt!r} -> {text!r} in {time.monotonic() - started:.2f}s")
    assert expected in text
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage.completion_tokens == 6


def test_chat_stop_string_stream_and_usage(chain) -> None:
    """Chat through the gemma template, ended by a stop string: the same text streamed and not, finish_reason
    "stop", the usage chunk last."""
    llama, llmux = chain
    client = llmux.client(timeout=TIMEOUT)
    request = {"model": "gemma", "messages": QUESTION, "max_tokens": 48, "temperature": 0, "stop": ["\n"]}
    whole = client.chat.completions.create(**request)
    assert whole.choices[0].finish_reason == "stop"
    assert whole.choices[0].message.content and "\n" not in whole.choices[0].message.content
    started = time.monotonic()
    first = None
    chunks = []
    for chunk in client.chat.completions.create(stream=True, stream_options={"include_usage": True}, **request):
        if first is None and chunk.choices and chunk.choices[0].delta.content:
            first = time.monotonic() - started
        chunks.append(chunk)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    print(f"gemma chat: {text!r}; first content after {first:.2f}s, {len(chunks)} chunks in "
          f"{time.monotonic() - started:.2f}s")


def test_generation_speed(chain) -> None:
    """Tokens per second as llama-server measures them (printed; checked loosely, CI machines are shared)."""
    llama, _ = chain
    r = llama.post("/v1/completions", {"prompt": "Once upon a time", "max_tokens": 48, "temperature": 0},
                   timeout=TIMEOUT)
    timings = r.json()["timings"]
    print(f"gemma: {timings['predicted_n']} tokens at {timings['predicted_per_second']:.1f} tok/s, "
          f"prompt {timings['prompt_n']} tokens at {timings['prompt_per_second']:.1f} tok/s")
    assert timings["predicted_n"] == 48
    assert timings["predicted_per_second"] > 1
