"""OpenCode (npm `opencode-ai`) as a real client: `opencode run` headless through llmux's chat completions, with
its OpenAI-compatible provider pointed at llmux, answered by a mock Ollama engine."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import pytest

from agents import agent, prints_the_scripted_answer, run_agent, tool_results
from agents import gateway as one_engine
from harness import MASTER_KEY


@pytest.fixture
def gateway(log_root: Path, request):
    with one_engine(log_root / request.node.name, "opencode-box", "coding") as pair:
        yield pair


def opencode(llmux, prompt: str, work: Path):
    (work / "opencode.json").write_text(json.dumps({
        "$schema": "https://opencode.ai/config.json",
        "provider": {"gw": {
            "npm": "@ai-sdk/openai-compatible",
            "name": "llmux",
            "options": {"baseURL": llmux.base_url + "/v1", "apiKey": MASTER_KEY},
            "models": {"coding": {"name": "coding"}},
        }},
        "model": "gw/coding",
        "autoupdate": False,
        "share": "disabled",
    }))
    return run_agent([str(agent("opencode")), "run", prompt], cwd=work, timeout=90)


def test_opencode_prints_the_answer(gateway, tmp_path):
    mock, llmux = gateway
    prints_the_scripted_answer(mock, lambda prompt: opencode(llmux, prompt, tmp_path))


def test_opencode_runs_a_scripted_tool_call_and_sends_the_result_back(gateway, tmp_path):
    mock, llmux = gateway
    marker = f"llmux-tool-{secrets.token_hex(4)}"
    mock.configure(
        reply="the tool printed: {tool_result}",
        tool_call={"name": "bash", "arguments": {"command": f"echo {marker}", "description": "print a marker"}},
    )
    done = opencode(llmux, "run the marker command", tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    # OpenCode ran `bash`, sent its output back as a tool message, and printed the engine's final answer.
    tool_turns = tool_results(mock)
    assert any(marker in m.get("content", "") for m in tool_turns), tool_turns
    assert f"the tool printed: {marker}" in done.stdout, done.stdout + done.stderr
