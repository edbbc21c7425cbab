"""End-to-end harness: real `llmux` in front of `llmux-mock` engines, driven by the official clients.

A *lab* is four mock Ollama hosts standing in for the home lab of `examples/homelab.yaml` (clementine,
banana, star, cranberry), one mock OpenAI-compatible engine, and one `llmux` serving a copy of
`examples/homelab.yaml` whose `api_base` values point at the mocks. Every process runs in its own process
group on a free loopback port and is killed (group and all) on teardown, also when a test fails.

Binaries come from `LLMUX_BIN` and `LLMUX_MOCK_BIN` (tests/run sets them to the debug builds); without
them, `target/debug/llmux` and `target/debug/llmux-mock` are used.
"""

from __future__ import annotations

import atexit
import copy
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import httpx
import openai
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
HOMELAB = ROOT / "examples" / "homelab.yaml"
MASTER_KEY = "sk-test-llmux-e2e-0123456789"
LOOPBACK = "127.0.0.1"
START_TIMEOUT_S = 20.0

# The hosts of examples/homelab.yaml: the api_base written there, and the models each one serves.
HOSTS: dict[str, tuple[str, list[str]]] = {
    "clementine": ("http://clementine:11434", ["nemotron-3-nano:4b", "embeddinggemma"]),
    "banana": ("http://banana:11434", ["nemotron-3-nano:4b", "qwen3.5:9b", "embeddinggemma"]),
    "star": ("http://star:11434", ["nemotron-cascade-2:30b"]),
    "cranberry": ("https://ollama", ["nemotron-cascade-2:30b"]),
}
# An OpenAI-compatible engine (vLLM-like) added to the config for passthrough tests.
OAI_HOST = "vllm-box"
OAI_GROUP = "passthrough-model"
OAI_UPSTREAM_MODEL = "some-model"

# Variables that would change where llmux or the clients send requests; the suite controls all of them.
_SCRUBBED_ENV = (
    "OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_API_BASE", "OLLAMA_API_BASE", "OLLAMA_API_KEY",
    "LITELLM_MASTER_KEY", "CONFIG_FILE_PATH", "PORT",
    "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy",
)
for _name in _SCRUBBED_ENV:
    os.environ.pop(_name, None)
os.environ["NO_PROXY"] = os.environ["no_proxy"] = "127.0.0.1,localhost"
# Plain-text logs from llmux and the mocks (they are read back into failure reports).
os.environ["NO_COLOR"] = "1"


def binary(env_var: str, name: str) -> Path:
    path = Path(os.environ.get(env_var) or ROOT / "target" / "debug" / name)
    if not path.is_absolute():
        path = ROOT / path
    return path


def require_binaries() -> None:
    for env_var, path in (("LLMUX_BIN", LLMUX_BIN), ("LLMUX_MOCK_BIN", MOCK_BIN)):
        if not (path.is_file() and os.access(path, os.X_OK)):
            pytest.fail(f"{path} not found; run `cargo build --workspace` or set {env_var}", pytrace=False)


LLMUX_BIN = binary("LLMUX_BIN", "llmux")
MOCK_BIN = binary("LLMUX_MOCK_BIN", "llmux-mock")


# ---------------------------------------------------------------------------------------------------------
# Processes


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:
    """Runs in the child before exec: ask Linux to SIGKILL it if the test runner dies (no orphans even when
    pytest itself is killed)."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:
        pass


_LIVE: list["Proc"] = []


class Proc:
    """A child process in its own process group, its output captured to a log file."""

    def __init__(self, name: str, argv: list[str], log_dir: Path):
        self.name = name
        self.argv = argv
        self.log_path = log_dir / f"{name}.log"
        self._log = open(self.log_path, "wb")
        self.popen = subprocess.Popen(
            argv,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
        )
        _LIVE.append(self)

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log(self) -> str:
        self._log.flush()
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signals the whole process group and reaps the leader."""
        if self.popen.poll() is None:
            try:
                os.killpg(self.popen.pid, sig)
            except ProcessLookupError:
                pass
        try:
            self.popen.wait(timeout=5)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(self.popen.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.popen.wait(timeout=5)

    def stop(self) -> None:
        """SIGTERM (graceful), then SIGKILL after a short grace period; the group is always killed."""
        if self.popen.poll() is None:
            try:
                os.killpg(self.popen.pid, signal.SIGTERM)
                self.popen.wait(timeout=3)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        # Anything the leader left behind in its group goes too.
        try:
            os.killpg(self.popen.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.popen.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        self._log.close()
        if self in _LIVE:
            _LIVE.remove(self)


@atexit.register
def _kill_leftovers() -> None:
    for p in list(_LIVE):
        p.stop()


_HTTP: httpx.Client | None = None


def control_http() -> httpx.Client:
    """One shared client for control calls (building a client per call costs ~40 ms of TLS setup)."""
    global _HTTP
    if _HTTP is None:
        _HTTP = httpx.Client(timeout=5.0, trust_env=False)
    return _HTTP


def wait_http(url: str, proc: Proc, timeout: float = START_TIMEOUT_S) -> None:
    """Waits until GET url answers 2xx, failing early (with the process log) if the process exits."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited with {proc.popen.returncode} before serving:\n{proc.log()}")
        try:
            r = control_http().get(url, timeout=1.0)
            if r.status_code < 300:
                return
            last = f"HTTP {r.status_code}: {r.text[:200]}"
        except httpx.HTTPError as e:
            last = repr(e)
        time.sleep(0.05)
    raise RuntimeError(f"{proc.name} did not answer {url} within {timeout}s ({last}):\n{proc.log()}")


def wait_port_closed(port: int, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            s.settimeout(0.2)
            if s.connect_ex((LOOPBACK, port)) != 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"port {port} still accepts connections")


# ---------------------------------------------------------------------------------------------------------
# Mock engines


@dataclass
class Mock:
    name: str
    port: int
    proc: Proc
    models: list[str]

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def hostport(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    def _control(self, method: str, path: str, **kw: Any) -> httpx.Response:
        r = control_http().request(method, self.url + path, **kw)
        r.raise_for_status()
        return r

    def configure(self, **knobs: Any) -> dict:
        """POST /mock/config: merges the knobs (None resets one to its default)."""
        return self._control("POST", "/mock/config", json=knobs).json()

    def config(self) -> dict:
        return self._control("GET", "/mock/config").json()

    def requests(self, path: str | None = None) -> list[dict]:
        """Recorded requests, oldest first; only those to `path` when given."""
        data = self._control("GET", "/mock/requests").json()
        if isinstance(data, dict):  # tolerate {"requests": [...]}
            data = data.get("requests", data.get("data", []))
        return [r for r in data if path is None or r.get("path") == path]

    def clear(self) -> None:
        self._control("DELETE", "/mock/requests")

    def stats(self) -> dict:
        return self._control("GET", "/mock/stats").json()


def start_mock(name: str, models: list[str], log_dir: Path, extra: list[str] | None = None) -> Mock:
    port = free_port()
    argv = [str(MOCK_BIN), "--host", LOOPBACK, "--port", str(port), "--name", name, "--models", ",".join(models)]
    proc = Proc(f"mock-{name}", argv + (extra or []), log_dir)
    mock = Mock(name, port, proc, models)
    try:
        wait_http(mock.url + "/mock/config", proc)
    except Exception:
        proc.stop()
        raise
    return mock


# ---------------------------------------------------------------------------------------------------------
# llmux


def homelab_config(mocks: dict[str, Mock], general: dict | None = None) -> dict:
    """examples/homelab.yaml with every api_base pointing at its mock, a master key, and one
    OpenAI-compatible deployment appended."""
    config = yaml.safe_load(HOMELAB.read_text())
    by_base = {base: mocks[name].url for name, (base, _) in HOSTS.items()}
    for entry in config["model_list"]:
        params = entry["litellm_params"]
        if "api_base" in params:
            assert params["api_base"] in by_base, f"unexpected api_base {params['api_base']} in {HOMELAB}"
            params["api_base"] = by_base[params["api_base"]]
    if OAI_HOST in mocks:
        config["model_list"].append(
            {
                "model_name": OAI_GROUP,
                "litellm_params": {
                    "model": f"openai/{OAI_UPSTREAM_MODEL}",
                    "api_base": mocks[OAI_HOST].url + "/v1",
                    "api_key": "sk-upstream-not-the-master-key",
                },
            }
        )
    config["general_settings"] = {"master_key": MASTER_KEY, **(general or {})}
    return config


@dataclass
class Llmux:
    port: int
    proc: Proc
    config_path: Path

    @property
    def base_url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def client(self, api_key: str = MASTER_KEY, **kw: Any) -> openai.OpenAI:
        # No SDK retries: what a test sees is what llmux did.
        kw.setdefault("max_retries", 0)
        kw.setdefault("timeout", 30.0)
        return openai.OpenAI(base_url=self.base_url + "/v1", api_key=api_key, **kw)

    def http(self, **kw: Any) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, timeout=30.0, trust_env=False, **kw)


def start_llmux(config: dict, log_dir: Path, name: str = "llmux", extra: list[str] | None = None) -> Llmux:
    config_path = log_dir / f"{name}.yaml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    port = free_port()
    argv = [str(LLMUX_BIN), "--config", str(config_path), "--host", LOOPBACK, "--port", str(port)] + (extra or [])
    proc = Proc(name, argv, log_dir)
    try:
        wait_http(f"http://{LOOPBACK}:{port}/health/liveliness", proc)
    except Exception:
        proc.stop()
        raise
    return Llmux(port, proc, config_path)


@dataclass
class Lab:
    """Mocks for every home-lab host, plus llmux in front of them."""

    log_dir: Path
    mocks: dict[str, Mock] = field(default_factory=dict)
    llmux: Llmux | None = None
    _extra: list[Llmux] = field(default_factory=list)

    def start(self) -> "Lab":
        for name, (_, models) in HOSTS.items():
            self.mocks[name] = start_mock(name, models, self.log_dir)
        self.mocks[OAI_HOST] = start_mock(OAI_HOST, [OAI_UPSTREAM_MODEL], self.log_dir)
        self.llmux = start_llmux(homelab_config(self.mocks), self.log_dir)
        return self

    def extra_llmux(self, name: str, general: dict) -> Llmux:
        """Another llmux over the same mocks, with extra general_settings."""
        instance = start_llmux(homelab_config(self.mocks, general), self.log_dir, name)
        self._extra.append(instance)
        return instance

    def procs(self) -> list[Proc]:
        out = [m.proc for m in self.mocks.values()]
        if self.llmux:
            out.append(self.llmux.proc)
        out.extend(x.proc for x in self._extra)
        return out

    def dump_logs(self) -> str:
        parts = []
        for p in self.procs():
            text = p.log()
            if p.name.startswith("llmux") or "panic" in text:
                parts.append(f"----- {p.name} output ({p.log_path}) -----\n{text[-20000:]}")
        return "\n".join(parts)

    def stop(self) -> None:
        for p in reversed(self.procs()):
            p.stop()

    # Convenience
    def client(self, **kw: Any) -> openai.OpenAI:
        assert self.llmux
        return self.llmux.client(**kw)

    def reset_mocks(self) -> None:
        for m in self.mocks.values():
            if m.proc.alive():
                m.configure(tool_call=None, thinking=None, fault="none", tokens_per_sec=None, ttft_ms=None,
                            latency_ms=None, reply=None, reply_tokens=None)
                m.clear()


# ---------------------------------------------------------------------------------------------------------
# Expectations derived from examples/homelab.yaml


def load_homelab() -> dict:
    return yaml.safe_load(HOMELAB.read_text())


def expected_deployment(model: str) -> tuple[int, str, str]:
    """(model_list index, host name, litellm model) of the deployment llmux should pick for `model` with all
    hosts up: the alias is resolved, then the lowest `order` wins (unordered entries come last)."""
    config = load_homelab()
    group = config["router_settings"]["model_group_alias"].get(model, model)
    members = [(i, d) for i, d in enumerate(config["model_list"]) if d["model_name"] == group]
    assert members, f"{model} resolves to no group in {HOMELAB}"
    i, d = min(members, key=lambda m: (m[1]["litellm_params"].get("order", 10**9), m[0]))
    base = d["litellm_params"]["api_base"]
    host = next(name for name, (b, _) in HOSTS.items() if b == base)
    return i, host, d["litellm_params"]["model"]


def deployment_header(lab: Lab, model: str) -> str:
    """The `x-llmux-deployment` value expected for `model`."""
    i, host, litellm_model = expected_deployment(model)
    return f"model_list[{i}] {litellm_model} @ {lab.mocks[host].hostport}"


def dump(obj: Any) -> str:
    """A readable form of an SDK object for assertion messages."""
    try:
        return json.dumps(obj.model_dump(), indent=1, default=str)[:4000]
    except Exception:
        return repr(obj)[:4000]


def deepcopy(obj: Any) -> Any:
    return copy.deepcopy(obj)
