"""Claude Code (npm `@anthropic-ai/claude-code`) as a real client: `claude -p` headless through llmux's Anthropic
Messages API (`ANTHROPIC_BASE_URL` = llmux, the master key as `ANTHROPIC_API_KEY`), answered by a mock Ollama
engine whatever model name Claude Code asks for (a `*` wildcard group)."""

from __future__ import annotations

import secrets
import socket
import threading
from pathlib import Path

import pytest

from agents import agent, prints_the_scripted_answer, run_agent, tool_results
from agents import gateway as one_engine
from harness import MASTER_KEY

MODEL = "claude-sonnet-4-5"


@pytest.fixture
def gateway(log_root: Path, request):
    with one_engine(log_root / request.node.name, "claude-box", "*") as pair:
        yield pair


class Trap:
    """A loopback "proxy" that answers nothing and records the first line of every connection: set as Claude
    Code's HTTP(S)_PROXY (NO_PROXY keeps loopback direct), it catches any attempt to reach another host."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.seen: list[str] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(2)
                try:
                    self.seen.append(conn.recv(512).split(b"\r\n")[0].decode(errors="replace"))
                except OSError:
                    self.seen.append("?")

    def close(self) -> None:
        self.sock.close()


def claude(llmux, prompt: str, work: Path, *extra: str):
    trap = Trap()
    env = {
        "ANTHROPIC_BASE_URL": llmux.base_url,
        "ANTHROPIC_API_KEY": MASTER_KEY,
        "HTTPS_PROXY": trap.url,
        "HTTP_PROXY": trap.url,
    }
    argv = [str(agent("claude")), "-p", prompt, "--model", MODEL, *extra]
    try:
        done = run_agent(argv, env=env, cwd=work, timeout=60)
    finally:
        trap.close()
    done.outside = trap.seen
    return done


def assert_loopback_only(done, mock) -> None:
    """Claude Code contacted nothing but llmux, and llmux nothing but the mock engine."""
    assert done.outside == [], f"Claude Code tried to reach other hosts: {done.outside}"
    for r in mock.requests():
        host = dict(r["headers"]).get("host", "")
        assert host.startswith("127.0.0.1:"), r["headers"]


def test_claude_code_prints_the_answer(gateway, tmp_path):
    mock, llmux = gateway
    done = prints_the_scripted_answer(mock, lambda prompt: claude(llmux, prompt, tmp_path))
    assert_loopback_only(done, mock)


def test_claude_code_runs_a_scripted_tool_call_and_sends_the_result_back(gateway, tmp_path):
    mock, llmux = gateway
    marker = f"llmux-tool-{secrets.token_hex(4)}"
    mock.configure(
        reply="the tool printed: {tool_result}",
        tool_call={"name": "Bash", "arguments": {"command": f"echo {marker}", "description": "Print a marker"}},
    )
    done = claude(llmux, "run the marker command", tmp_path, "--allowedTools", "Bash")
    assert done.returncode == 0, done.stdout + done.stderr
    # Claude Code ran Bash, sent its output back as a tool result (a `tool` message at the engine), and printed
    # the engine's final answer.
    tool_turns = tool_results(mock)
    assert any(marker in m.get("content", "") for m in tool_turns), tool_turns
    assert f"the tool printed: {marker}" in done.stdout, done.stdout + done.stderr
    assert_loopback_only(done, mock)
