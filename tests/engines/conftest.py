"""Fixtures of the real-engine suite; the machinery lives in engines.py (and tests/clients/harness.py).

A *rig* is one llama-server with the tiny random model, an llmux-mock standing in for a second engine
(OpenAI-compatible behind the real one, and Ollama for the translation path), tap proxies (engines.TapProxy) in
front of llama-server (one forwarding as is, one cutting the engine's bytes inside every multi-byte character)
and of the mock (the same cuts), and one llmux whose config (LiteLLM format, written here) routes to all of
them. Tests that kill processes build their own.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import openai
import pytest

import engines
from engines import LlamaServer, TapProxy, harness


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and report.failed and hasattr(item, "funcargs"):
        for value in item.funcargs.values():
            if isinstance(value, Rig):
                report.sections.append(("llmux / engine output", value.dump_logs()))


@pytest.fixture(scope="session")
def log_root() -> Path:
    keep = os.environ.get("LLMUX_TEST_LOG_DIR")
    if keep:
        path = Path(keep) / "engines"
        path.mkdir(parents=True, exist_ok=True)
        return path
    return Path(tempfile.mkdtemp(prefix="llmux-engines-"))


@dataclass
class Rig:
    log_dir: Path
    llama: LlamaServer | None = None
    mock: harness.Mock | None = None
    llmux: harness.Llmux | None = None
    taps: dict[str, TapProxy] = field(default_factory=dict)
    extra: list = field(default_factory=list)

    def client(self, **kw) -> openai.OpenAI:
        assert self.llmux
        return self.llmux.client(**kw)

    def procs(self) -> list[harness.Proc]:
        out = [p for p in (self.llama and self.llama.proc, self.mock and self.mock.proc,
                           self.llmux and self.llmux.proc) if p]
        return out + [x.proc for x in self.extra]

    def dump_logs(self) -> str:
        return "\n".join(f"----- {p.name} ({p.log_path}) -----\n{p.log()[-8000:]}" for p in self.procs())

    def stop(self) -> None:
        engines.finish(*reversed(self.procs()))
        for t in self.taps.values():
            t.close()


def deployment(name: str, model: str, api_base: str, **params) -> dict:
    return {"model_name": name, "litellm_params": {"model": model, "api_base": api_base, **params}}


def start_rig(log_dir: Path) -> Rig:
    harness.require_binaries()
    engines.require(engines.LLAMA_SERVER, engines.TINY_MODEL)
    rig = Rig(log_dir)
    try:
        rig.llama = engines.start_llama(engines.TINY_MODEL, log_dir)
        rig.mock = harness.start_mock("backup", ["tiny"], log_dir)
        rig.taps["tap"] = TapProxy(rig.llama.port)
        rig.taps["split"] = TapProxy(rig.llama.port, split="utf8")
        # The mock's Ollama API, one byte per network read: the translation path with split characters.
        rig.taps["mock-split"] = TapProxy(rig.mock.port, split="utf8")
        llama_v1 = rig.llama.url + "/v1"
        config = {
            "model_list": [
                deployment("tiny", "openai/tiny", llama_v1, api_key="sk-not-checked"),
                deployment("tiny-vllm", "hosted_vllm/tiny", llama_v1),
                # A default max_tokens for requests without one (llama-server would fill its context).
                deployment("tiny-bounded", "openai/tiny", llama_v1, api_key="x", max_tokens=7, temperature=0),
                deployment("tiny-tap", "openai/tiny", rig.taps["tap"].url + "/v1", api_key="x"),
                deployment("tiny-split", "openai/tiny", rig.taps["split"].url + "/v1", api_key="x"),
                deployment("ollama-split", "ollama_chat/tiny", rig.taps["mock-split"].url),
                # A prompt too long for the engine's context falls back to the mock.
                deployment("tiny-ctx", "openai/tiny", llama_v1, api_key="x"),
                deployment("backup", "openai/tiny", rig.mock.url + "/v1", api_key="x"),
                # The real engine first, the mock behind it.
                deployment("tiny-backed", "openai/tiny", llama_v1, api_key="x", order=1),
                deployment("tiny-backed", "openai/tiny", rig.mock.url + "/v1", api_key="x", order=2),
            ],
            "router_settings": {"context_window_fallbacks": [{"tiny-ctx": ["backup"]}]},
            "general_settings": {"master_key": harness.MASTER_KEY},
        }
        rig.llmux = harness.start_llmux(config, log_dir)
    except BaseException:
        rig.stop()
        raise
    return rig


@pytest.fixture(scope="session")
def rig(log_root: Path):
    """The shared rig: never break its processes (use `own_rig`)."""
    r = start_rig(log_root / "shared")
    try:
        yield r
    finally:
        r.stop()


@pytest.fixture
def client(rig: Rig) -> openai.OpenAI:
    return rig.client()
