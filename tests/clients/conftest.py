"""pytest fixtures for the end-to-end suite; the machinery lives in harness.py."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import openai
import pytest

from harness import Lab, require_binaries

@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    # When a test fails while a lab is up, llmux's output (and any mock that panicked) goes into the report.
    if report.when == "call" and report.failed:
        for lab in _labs_for(item):
            report.sections.append(("llmux / mock output", lab.dump_logs()))


def _labs_for(item) -> list[Lab]:
    labs = []
    for name in ("lab", "own_lab"):
        lab = item.funcargs.get(name) if hasattr(item, "funcargs") else None
        if isinstance(lab, Lab):
            labs.append(lab)
    return labs


@pytest.fixture(scope="session")
def log_root() -> Path:
    keep = os.environ.get("LLMUX_TEST_LOG_DIR")
    if keep:
        path = Path(keep)
        path.mkdir(parents=True, exist_ok=True)
        return path
    return Path(tempfile.mkdtemp(prefix="llmux-e2e-"))


def _running_lab(log_dir: Path):
    """Starts a lab in `log_dir`, yields it, and stops every process it started, whatever happens."""
    require_binaries()
    lab = Lab(log_dir)
    lab.log_dir.mkdir(parents=True, exist_ok=True)
    try:
        lab.start()
    except Exception:
        lab.stop()
        raise
    try:
        yield lab
    finally:
        lab.stop()


@pytest.fixture(scope="session")
def lab(log_root: Path):
    """The shared lab: one llmux and five mocks for the whole session."""
    yield from _running_lab(log_root / "shared")


@pytest.fixture
def own_lab(log_root: Path, request):
    """A private lab for tests that break hosts (killed processes must not affect other tests)."""
    yield from _running_lab(log_root / request.node.name.replace("/", "_").replace("[", "_").replace("]", ""))


@pytest.fixture
def client(lab: Lab) -> openai.OpenAI:
    lab.reset_mocks()
    return lab.client()


