"""Codex (npm `@openai/codex`) as a real client: `codex exec` headless through llmux's `/v1/responses`, with a
custom provider (`wire_api = "responses"`) pointed at llmux, answered by a mock Ollama engine."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from agents import agent, prints_the_scripted_answer, run_agent, tool_results
from agents import gateway as one_engine
from harness import MASTER_KEY

# The model name Codex asks for; llmux routes it to the mock.
CODEX_MODEL = "gpt-5"


@pytest.fixture
def gateway(log_root: Path, request):
    with one_engine(log_root / request.node.name, "codex-box", CODEX_MODEL) as pair:
        yield pair


def codex(llmux, prompt: str, work: Path, *extra: str):
    argv = [
        str(agent("codex")), "exec", "--skip-git-repo-check",
        "-c", "model_provider=llmux",
        "-c", 'model_providers.llmux.name="llmux"',
        "-c", f'model_providers.llmux.base_url="{llmux.base_url}/v1"',
        "-c", 'model_providers.llmux.wire_api="responses"',
        "-c", 'model_providers.llmux.env_key="LLMUX_KEY"',
        # One try: a failure shows at once instead of after Codex's retries.
        "-c", "model_providers.llmux.request_max_retries=0",
        "-c", "model_providers.llmux.stream_max_retries=0",
        "-m", CODEX_MODEL,
        *extra,
        prompt,
    ]
    return run_agent(argv, env={"LLMUX_KEY": MASTER_KEY}, cwd=work, timeout=60)


def test_codex_prints_the_answer(gateway, tmp_path):
    mock, llmux = gateway
    prints_the_scripted_answer(mock, lambda prompt: codex(llmux, prompt, tmp_path))


def test_codex_runs_a_scripted_shell_call_and_sends_the_output_back(gateway, tmp_path):
    mock, llmux = gateway
    marker = f"llmux-tool-{secrets.token_hex(4)}"
    # Codex's shell tool: `exec_command` with a `cmd` string (what Codex 0.169 offers for an unknown model).
    mock.configure(reply="the command printed: {tool_result}", tool_call={"name": "exec_command", "arguments": {"cmd": f"echo {marker}"}})
    done = codex(llmux, "run the marker command", tmp_path, "--dangerously-bypass-approvals-and-sandbox")
    assert done.returncode == 0, done.stdout + done.stderr
    chats = mock.requests("/api/chat")
    offered = {t["function"]["name"] for t in chats[0]["body"].get("tools", [])}
    assert "exec_command" in offered, offered
    # Codex ran the command and sent its output back as a tool message.
    tool_turns = tool_results(mock)
    assert any(marker in m.get("content", "") for m in tool_turns), tool_turns
    assert "the command printed:" in done.stdout and marker in done.stdout, done.stdout + done.stderr
