"""The agent CLIs (Claude Code, Codex, OpenCode) as real clients of llmux.

tests/agents/setup installs them (pinned) into LLMUX_AGENTS_DIR; tests/run exports it. Each program runs with a
scratch HOME, its telemetry, update checks and non-essential traffic off, and only loopback addresses to talk to.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import tempfile
from pathlib import Path

import pytest

from harness import MASTER_KEY, Llmux, Mock, start_llmux, start_mock

AGENTS_DIR = Path(os.environ.get("LLMUX_AGENTS_DIR") or Path.home() / ".cache" / "llmux-agents")

# Off for every agent: telemetry, error reporting, auto-update, feedback surveys, and any proxy.
QUIET_ENV = {
    "DISABLE_TELEMETRY": "1",
    "DISABLE_ERROR_REPORTING": "1",
    "DISABLE_AUTOUPDATER": "1",
    "DISABLE_BUG_COMMAND": "1",
    "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
    "CLAUDE_CODE_DISABLE_FEEDBACK_SURVEY": "1",
    "OPENCODE_DISABLE_AUTOUPDATE": "1",
    "OPENCODE_DISABLE_SHARE": "1",
    "OPENCODE_DISABLE_LSP_DOWNLOAD": "1",
    "OPENCODE_DISABLE_DEFAULT_PLUGINS": "1",
    "CODEX_DISABLE_TELEMETRY": "1",
    "DO_NOT_TRACK": "1",
    "NO_COLOR": "1",
    "OPENCODE_DISABLE_MODELS_FETCH": "1",
    "CI": "1",
    # Anything but loopback goes to a proxy that is not there (the discard port of 127.0.0.1): an agent that tries
    # to reach the internet fails at once, on this machine.
    "HTTP_PROXY": "http://127.0.0.1:9",
    "HTTPS_PROXY": "http://127.0.0.1:9",
    "ALL_PROXY": "http://127.0.0.1:9",
    "NO_PROXY": "127.0.0.1,localhost,::1",
}


def agent(name: str) -> Path:
    """The installed program `name` (claude, codex, opencode); a missing one fails the test."""
    path = AGENTS_DIR / "node_modules" / ".bin" / name
    if not path.exists():
        pytest.fail(f"{path} not found: run tests/agents/setup (tests/run does)", pytrace=False)
    return path


def run_agent(argv: list[str], env: dict[str, str] | None = None, cwd: Path | None = None,
              timeout: float = 120.0) -> subprocess.CompletedProcess:
    """Runs an agent CLI headless with a scratch HOME and the quiet environment; returns the finished process."""
    home = Path(tempfile.mkdtemp(prefix="llmux-agent-home-"))
    full = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_DATA_HOME": str(home / ".local" / "share"),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "XDG_STATE_HOME": str(home / ".local" / "state"),
        "TERM": "dumb",
        **QUIET_ENV,
        **(env or {}),
    }
    work = cwd or Path(tempfile.mkdtemp(prefix="llmux-agent-work-"))
    return subprocess.run(
        argv, env=full, cwd=work, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout
    )


@contextlib.contextmanager
def gateway(log_dir: Path, name: str, model_name: str):
    """llmux in front of one mock Ollama engine serving `qwen3:8b` under `model_name` (an agent's model name, or
    `*` for every name); yields (mock, llmux) and stops both."""
    log_dir.mkdir(parents=True, exist_ok=True)
    mock: Mock = start_mock(name, ["qwen3:8b"], log_dir)
    config = {
        "model_list": [{"model_name": model_name,
                        "litellm_params": {"model": "ollama_chat/qwen3:8b", "api_base": mock.url}}],
        "general_settings": {"master_key": MASTER_KEY},
    }
    try:
        llmux: Llmux = start_llmux(config, log_dir)
    except Exception:
        mock.proc.stop()
        raise
    try:
        yield mock, llmux
    finally:
        llmux.proc.stop()
        mock.proc.stop()


def prints_the_scripted_answer(mock: Mock, run) -> subprocess.CompletedProcess:
    """Scripts the engine's reply, runs the agent (`run(prompt)`), and checks it exited 0, printed that reply, and
    that the prompt reached the engine. Returns the finished process."""
    import json
    import secrets

    marker = secrets.token_hex(4)
    mock.configure(reply=f"scripted answer {marker}")
    done = run("say hi")
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"scripted answer {marker}" in done.stdout, done.stdout + done.stderr
    chats = mock.requests("/api/chat")
    assert any("say hi" in json.dumps(r["body"]["messages"]) for r in chats), "the prompt never reached the engine"
    return done


def tool_results(mock: Mock) -> list[dict]:
    """Every `tool` message the engine was sent: what an agent sent back after running a tool."""
    return [m for r in mock.requests("/api/chat") for m in r["body"]["messages"] if m.get("role") == "tool"]
