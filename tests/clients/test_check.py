"""`llmux check`: validates a config and prints the routing table, or every problem with its YAML path."""

from __future__ import annotations

import os
import subprocess

import yaml

from harness import HOMELAB, LLMUX_BIN, ROOT, load_homelab, require_binaries

UNSET_VAR = "LLMUX_E2E_SURELY_UNSET_VARIABLE"


def run_check(path) -> subprocess.CompletedProcess:
    require_binaries()
    env = {k: v for k, v in os.environ.items() if k != UNSET_VAR}
    return subprocess.run(
        [str(LLMUX_BIN), "check", str(path)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=30,
        stdin=subprocess.DEVNULL,
    )


def test_check_homelab_is_ok():
    result = run_check(HOMELAB)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    config = load_homelab()
    for group in dict.fromkeys(d["model_name"] for d in config["model_list"]):
        assert group in result.stdout, f"group {group} missing from the routing table:\n{output}"
    for alias in config["router_settings"]["model_group_alias"]:
        assert alias in result.stdout, f"alias {alias} missing from the routing table:\n{output}"
    for host in ("clementine:11434", "banana:11434", "star:11434", "https://ollama"):
        assert host in result.stdout, f"{host} missing from the routing table:\n{output}"
    assert not [line for line in output.splitlines() if line.lstrip().lower().startswith("error")], output


def test_check_accepts_the_homelabs_commented_cloud_fallback(tmp_path):
    """The commented Claude deployment of examples/homelab.yaml, uncommented, is a valid order-3 fallback."""
    text = HOMELAB.read_text()
    start, end = text.index("# cloud:start"), text.index("# cloud:end")
    # The YAML lines of the block (`# - …`, `#   …`) lose their `# `; the prose stays a comment.
    block = "\n".join(line.replace("# ", "", 1) if line.lstrip().startswith(("# -", "#   ")) else line
                      for line in text[start:end].splitlines()[1:])
    path = tmp_path / "homelab-cloud.yaml"
    path.write_text(text[:start] + block.lstrip() + "\n" + text[end:])
    config = yaml.safe_load(path.read_text())
    cloud = [d for d in config["model_list"] if d["litellm_params"]["model"].startswith("anthropic/")]
    assert cloud and cloud[0]["model_name"] == "nemotron-cascade-2:30b"
    secret = "sk-ant-e2e-never-printed-0123456789"
    require_binaries()
    env = {**os.environ, "ANTHROPIC_API_KEY": secret}
    result = subprocess.run([str(LLMUX_BIN), "check", str(path)], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=30, stdin=subprocess.DEVNULL)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "anthropic/claude-sonnet-4-5" in output and "api.anthropic.com" in output, output
    assert secret not in output
    # Without the key the variable is reported missing, with its path.
    env.pop("ANTHROPIC_API_KEY")
    missing = subprocess.run([str(LLMUX_BIN), "check", str(path)], cwd=ROOT, env=env, capture_output=True,
                             text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert missing.returncode != 0 and "ANTHROPIC_API_KEY" in missing.stdout + missing.stderr


def test_check_reports_every_problem_with_its_path(tmp_path):
    config = load_homelab()
    del config["model_list"][0]["litellm_params"]["model"]
    config["model_list"][2]["litellm_params"]["model"] = "nosuchprovider/nemotron-cascade-2:30b"
    config["model_list"][4]["litellm_params"]["api_key"] = f"os.environ/{UNSET_VAR}"
    config["router_settings"]["model_group_alias"]["coding"] = "no-such-group"
    broken = tmp_path / "broken.yaml"
    broken.write_text(yaml.safe_dump(config, sort_keys=False))

    result = run_check(broken)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    expected = {
        "model_list[0].litellm_params.model": "missing",
        "model_list[2].litellm_params.model": "nosuchprovider",
        "model_list[4].litellm_params.api_key": UNSET_VAR,
        "router_settings.model_group_alias.coding": "no-such-group",
    }
    lines = output.splitlines()
    for path, word in expected.items():
        hits = [line for line in lines if path in line]
        assert hits, f"no problem reported at {path}:\n{output}"
        assert any(word in line for line in hits), f"{path}: expected a mention of {word!r} in {hits}"
    # Secrets from the file never show up in the output, even in errors.
    assert "sk-" not in output


def test_check_missing_file_fails(tmp_path):
    result = run_check(tmp_path / "nope.yaml")
    assert result.returncode != 0
    assert "nope.yaml" in result.stdout + result.stderr
