"""`llmux demo`, the README's first command: it starts, every `curl` line it prints answers, and its sleeping
host (star) is woken by a wake-on-LAN packet on loopback when a request needs it."""

from __future__ import annotations

import shlex
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from harness import Proc, binary, free_port, require_binaries, wait_http


@pytest.fixture(scope="module")
def demo(log_root: Path):
    require_binaries()
    log_dir = log_root / "demo"
    log_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    proc = Proc("llmux-demo", [str(binary("LLMUX_BIN", "llmux")), "demo", "--port", str(port)], log_dir)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/health/liveliness", proc)
        # The first probe round decides who is up and who sleeps.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and len(hosts(url)) < 4:
            time.sleep(0.1)
        yield url, proc
    finally:
        proc.stop()


def hosts(url: str) -> dict[str, dict]:
    body = httpx.get(f"{url}/health/hosts", timeout=5).json()
    return {h["host"]: h for h in body["hosts"] if h.get("status") in ("up", "asleep", "waking")}


def printed_curls(log: str) -> list[str]:
    return [line.strip().split("  #")[0] for line in log.splitlines() if line.strip().startswith("curl ")]


def test_every_curl_line_the_demo_prints_answers(demo):
    url, proc = demo
    curls = printed_curls(proc.log())
    assert len(curls) >= 7, proc.log()
    for line in curls:
        argv = shlex.split(line) + ["-o", "/dev/null", "-w", "%{http_code}", "--max-time", "20"]
        status = subprocess.run(argv, capture_output=True, text=True, timeout=30).stdout
        assert status == "200", f"{line} -> {status}"


def test_the_sleeping_host_is_shown_asleep_and_woken_by_a_request_that_needs_it(demo):
    url, proc = demo
    assert "star (http://star:11434)" in proc.log() and "(asleep:" in proc.log()
    star = next(h for h in hosts(url).values() if h["wake"])
    assert star["status"] == "asleep", star
    assert star["wake"]["address"].startswith("127.0.0.1:"), star["wake"]
    # `coding` prefers star (order 1) but cranberry is awake: no wake-up, and the route says why star was passed.
    hi = [{"role": "user", "content": "hi"}]
    coding = httpx.post(f"{url}/v1/chat/completions", json={"model": "coding", "messages": hi}, timeout=30)
    assert coding.status_code == 200 and "Hello from cranberry" in coding.text, coding.text
    assert "host asleep" in coding.headers["x-llmux-route"], coding.headers["x-llmux-route"]
    # Ask for star's own deployment (by its id): nothing else can serve it, so llmux wakes the box.
    info = httpx.get(f"{url}/model/info", timeout=5).json()["data"]
    star_id = next(m["model_info"]["id"] for m in info if m["litellm_params"].get("api_base") == star["host"])
    began = time.monotonic()
    r = httpx.post(
        f"{url}/v1/chat/completions",
        json={"model": star_id, "messages": [{"role": "user", "content": "hi"}]},
        timeout=30,
    )
    took = time.monotonic() - began
    assert r.status_code == 200, r.text
    assert "Hello from star" in r.json()["choices"][0]["message"]["content"]
    assert "woke" in r.headers["x-llmux-route"], r.headers["x-llmux-route"]
    assert took >= 2.5, took  # the simulated box boots in 3 s after its packet
    assert hosts(url)[star["host"]]["status"] == "up"
