"""Warm-up ahead of demand (`llmux_settings.warmup`), end to end on a replayed week.

llmux runs on a simulated clock (`--simulated-clock`; `POST /llmux/clock` moves it and carries out the warm-ups
due on the way), so a week of a household's mornings replays in seconds. The big box is an `llmux-mock` started
asleep: it refuses connections until a magic packet reaches the UDP port it binds on 127.0.0.1 (its wake
address in the config: never a broadcast), and the test puts it back to sleep when its idle time would have run
out. After three mornings with `reasoning_slow` first asked at 07:10, llmux wakes the box and preloads the model
at 07:05 on the next ones, before anyone asks; the 07:10 request finds it awake and the model loaded.
"""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from harness import LLMUX_BIN, MASTER_KEY, MOCK_BIN, Proc, free_port, require_binaries, start_llmux, start_mock

MINUTE = 60_000
HOUR = 60 * MINUTE
DAY = 24 * HOUR
# The replayed days end yesterday, so that `llmux check` (on the real clock) finds them in its window: "Monday" is
# six days ago, 00:00 UTC, and "Saturday" yesterday.
MONDAY = (int(time.time() * 1000) // DAY - 6) * DAY


def free_udp() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class BigBox:
    """A sleeping Ollama host (llmux-mock --asleep-until-wol) with a model that takes 200 ms to load."""

    def __init__(self, log_dir: Path):
        self.port, self.wake_port = free_port(), free_udp()
        argv = [str(MOCK_BIN), "--host", "127.0.0.1", "--port", str(self.port), "--name", "bigbox",
                "--models", "big", "--loaded", "", "--residency", "--load-ms", "200",
                "--asleep-until-wol", f"127.0.0.1:{self.wake_port}", "--boot-ms", "300"]
        self.proc = Proc("mock-bigbox", argv, log_dir)
        deadline = time.monotonic() + 10
        while "listening on" not in self.proc.log():
            assert self.proc.alive() and time.monotonic() < deadline, self.proc.log()
            time.sleep(0.02)
        self.url = f"http://127.0.0.1:{self.port}"
        self.boots = 0

    def up(self) -> bool:
        try:
            httpx.get(self.url + "/mock/stats", timeout=1)
            return True
        except httpx.HTTPError:
            return False

    def stats(self) -> dict:
        return httpx.get(self.url + "/mock/stats", timeout=5).json()

    def resident(self) -> list[str]:
        return [m["name"] for m in httpx.get(self.url + "/api/ps", timeout=5).json()["models"]]

    def sleep(self) -> None:
        """Its idle timer ran out: it suspends."""
        if self.up():
            httpx.post(self.url + "/mock/sleep", timeout=5).raise_for_status()
            deadline = time.monotonic() + 5
            while self.up():
                assert time.monotonic() < deadline, "the box did not go to sleep"
                time.sleep(0.02)


@pytest.fixture
def home(log_root: Path):
    require_binaries()
    log_dir = log_root / "warmup"
    log_dir.mkdir(parents=True, exist_ok=True)
    data_dir = log_dir / "data"
    data_dir.mkdir(exist_ok=True)
    (data_dir / "warmup.json").unlink(missing_ok=True)
    mini = start_mock("mini", ["small"], log_dir)
    box = BigBox(log_dir)
    config = {
        "model_list": [
            {"model_name": "assist", "litellm_params": {"model": "ollama_chat/small", "api_base": mini.url}},
            {"model_name": "reasoning_slow", "litellm_params": {"model": "ollama_chat/big", "api_base": box.url}},
        ],
        "general_settings": {"master_key": MASTER_KEY},
        "llmux_settings": {
            "warmup": True,
            "hosts": {box.url: {"wake": {"mac": "02:00:00:00:00:02", "address": f"127.0.0.1:{box.wake_port}",
                                         "boot_seconds": 10}}},
        },
    }
    llmux = start_llmux(config, log_dir, "llmux-warmup",
                        ["--simulated-clock", str(MONDAY), "--data-dir", str(data_dir)])
    try:
        yield llmux, box, data_dir
    finally:
        llmux.proc.stop()
        box.proc.stop()
        mini.proc.stop()


def at(http: httpx.Client, unix_ms: int) -> list[tuple[int, str]]:
    """Moves llmux's clock to `unix_ms`: the warm-ups it carried out on the way, as (minute of day, group)."""
    r = http.post("/llmux/clock", json={"unix_ms": unix_ms})
    assert r.status_code == 200, r.text
    return [((w["unix_ms"] % DAY) // MINUTE, w["group"]) for w in r.json()["warmed"]]


def ask(http: httpx.Client, group: str) -> httpx.Response:
    r = http.post("/v1/chat/completions", json={"model": group, "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 200, r.text
    return r


def test_a_replayed_week_of_mornings_wakes_the_box_and_preloads_the_model_before_the_first_request(home):
    llmux, box, data_dir = home
    headers = {"authorization": f"Bearer {MASTER_KEY}"}
    with httpx.Client(base_url=llmux.base_url, headers=headers, timeout=30, trust_env=False) as http:
        for day in range(5):
            base = MONDAY + day * DAY
            warmed = at(http, base + 7 * HOUR + 10 * MINUTE)
            route = ask(http, "reasoning_slow").headers["x-llmux-route"]
            if day < 3:  # not a pattern yet: the first request wakes the box itself
                assert warmed == [] and "woke" in route, (day, warmed, route)
            else:  # first requests at 07:10 on three past days: warmed 5 minutes before
                assert warmed == [(7 * 60 + 5, "reasoning_slow")] and "woke" not in route, (day, warmed, route)
            for minute in (15, 25, 35):
                at(http, base + 7 * HOUR + minute * MINUTE)
                ask(http, "reasoning_slow")
            at(http, base + 8 * HOUR + 10 * MINUTE)
            box.sleep()  # 35 idle minutes: the box suspends
            at(http, base + 20 * HOUR)
            ask(http, "assist")  # the always-on mini: nothing to wake
        boots_before = box.stats()["boots"] if box.up() else None
        assert boots_before is None, "asleep after the week"

        # Saturday: nobody has asked yet at 07:04; at 07:05 llmux wakes the box and preloads `big`.
        saturday = MONDAY + 5 * DAY
        assert at(http, saturday + 7 * HOUR + 4 * MINUTE) == []
        assert not box.up(), "not woken before the lead time"
        assert at(http, saturday + 7 * HOUR + 6 * MINUTE) == [(7 * 60 + 5, "reasoning_slow")]
        assert box.up(), "woken ahead of the slot"
        assert box.resident() == ["big"], "the model the first request needs is loaded"
        assert box.stats()["boots"] == 6

        at(http, saturday + 7 * HOUR + 10 * MINUTE)
        route = ask(http, "reasoning_slow").headers["x-llmux-route"]
        assert "woke" not in route, route
        # Three mornings loaded by their first request, three by the warm-up; none by this request.
        assert box.stats()["model_loads"] == {"big": 6}, box.stats()

        # Once per slot: the rest of the morning does not warm up again.
        assert at(http, saturday + 12 * HOUR) == []

    # `llmux check` prints the learned schedule from the data directory.
    out = subprocess.run([str(LLMUX_BIN), "check", "--config", str(llmux.config_path), "--data-dir", str(data_dir)],
                         capture_output=True, text=True, timeout=30)
    assert "warm-up: reasoning_slow woken and preloaded at 07:05 UTC (6 of the last 7 days)" in out.stdout, (
        out.stdout + out.stderr
    )
