"""The dashboard at /ui, driven in a real headless browser (Debian's chromium through Playwright).

A lab of its own: the four home-lab hosts as mock Ollama engines simulating memory (a budget, model sizes,
a model loaded at start), llmux probing them every second. The tests run in file order; the last one stops a
host. Screenshots of every state go to `<log dir>/dashboard/` (the path is printed).
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import httpx
import pytest

from harness import HOSTS, MASTER_KEY, homelab_config, start_llmux, start_mock, wait_port_closed

try:
    from playwright.sync_api import Page, expect, sync_playwright
except ImportError:  # pragma: no cover - reported as a failure below
    sync_playwright = None

CHROMIUM = Path("/usr/bin/chromium")

# Each host's memory for models, in GB, and the simulated sizes of the models (about Ollama's).
BUDGET_GB = {"clementine": 32, "banana": 12, "star": 96, "cranberry": 44}
SIZES = "nemotron-3-nano:4b=3.2GB,embeddinggemma=600MB,qwen3.5:9b=6.6GB,nemotron-cascade-2:30b=24GB"


@pytest.fixture(scope="module")
def shots(log_root: Path) -> Path:
    path = log_root / "dashboard"
    path.mkdir(parents=True, exist_ok=True)
    print(f"\ndashboard screenshots: {path}")
    return path


@pytest.fixture(scope="module")
def dash_lab(log_root: Path):
    """Four mock hosts with memory and one model loaded each, and llmux in front of them."""
    log_dir = log_root / "dashboard-lab"
    log_dir.mkdir(parents=True, exist_ok=True)
    mocks, llmux = {}, None
    try:
        for name, (_, models) in HOSTS.items():
            extra = ["--memory-budget", f"{BUDGET_GB[name]}GB", "--model-size", SIZES, "--loaded", models[0]]
            mocks[name] = start_mock(name, models, log_dir, extra)
        # Spend rows written every second, so the keys page's spend per day has them at once.
        config = homelab_config(mocks, general={"health_check_interval": 1, "proxy_batch_write_at": 1})
        config["llmux_settings"] = {
            "hosts": {mocks[name].url: {"memory_budget": f"{gb}GB"} for name, gb in BUDGET_GB.items()}
        }
        llmux = start_llmux(config, log_dir, "llmux-dashboard")
        yield mocks, llmux
    finally:
        if llmux:
            llmux.proc.stop()
        for mock in mocks.values():
            mock.proc.stop()


@pytest.fixture(scope="module")
def browser():
    if sync_playwright is None:
        pytest.fail("playwright is not installed: pip install -r tests/clients/requirements.txt", pytrace=False)
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} not found: apt-get install chromium (.ci/run does)", pytrace=False)
    with sync_playwright() as p:
        # Debian's chromium, never a downloaded browser.
        browser = p.chromium.launch(executable_path=str(CHROMIUM))
        yield browser
        browser.close()


@pytest.fixture
def page(browser, request) -> Page:
    """A fresh tab (its own sessionStorage); JavaScript errors and console errors (a style or script the page's
    Content-Security-Policy refused, say) fail the test. The 401 of a refused key is expected."""
    width = getattr(request, "param", 1280)
    context = browser.new_context(viewport={"width": width, "height": 900})
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda e: errors.append(str(e)))
    tab.on("console", lambda m: errors.append(m.text) if m.type == "error" and "status of 401" not in m.text else None)
    yield tab
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def sign_in(page: Page, base_url: str, key: str = MASTER_KEY) -> None:
    page.goto(base_url + "/ui")
    page.fill("#key", key)
    page.click("#login-form button[type=submit]")


def host_card(page: Page, url: str):
    return page.locator(f'article.host[data-host="{url}"]')


def test_the_login_form_refuses_a_wrong_key_and_accepts_the_right_one(dash_lab, page, shots):
    _, llmux = dash_lab
    page.goto(llmux.base_url + "/ui")
    expect(page.locator("#login")).to_be_visible()
    expect(page.locator("#board")).to_be_hidden()

    sign_in(page, llmux.base_url, "sk-not-the-master-key")
    expect(page.locator("#login-error")).to_have_text("Wrong key: llmux refused it.")
    expect(page.locator("#board")).to_be_hidden()
    page.screenshot(path=str(shots / "1-login-refused.png"))

    sign_in(page, llmux.base_url)
    expect(page.locator("#board")).to_be_visible()
    expect(page.locator("#login")).to_be_hidden()
    # The key stays in this tab's session storage and out of every URL.
    assert page.evaluate("sessionStorage.getItem('llmux-key')") == MASTER_KEY
    assert MASTER_KEY not in page.url
    # A reload keeps the tab signed in.
    page.reload()
    expect(page.locator("#board")).to_be_visible()


def test_the_four_hosts_show_with_their_resident_models(dash_lab, page, shots):
    mocks, llmux = dash_lab
    sign_in(page, llmux.base_url)
    for name, (_, models) in HOSTS.items():
        card = host_card(page, mocks[name].url)
        expect(card).to_be_visible()
        expect(card.locator(".badge")).to_contain_text("up")
        expect(card.locator(".model .name").first).to_have_text(models[0])
        expect(card.locator(".memory")).to_contain_text(f"of {BUDGET_GB[name]}.0 GB")
    # Groups list their deployments by order: star (order 1) before cranberry (order 2) for the 30b model.
    group = page.locator("article.group", has_text="nemotron-cascade-2:30b").first
    rows = group.locator("tbody tr")
    expect(rows.nth(0)).to_contain_text(mocks["star"].hostport)
    expect(rows.nth(1)).to_contain_text(mocks["cranberry"].hostport)
    expect(group).to_contain_text("coding")
    page.screenshot(path=str(shots / "2-hosts.png"), full_page=True)


def test_a_request_shows_in_the_live_list_within_two_seconds(dash_lab, page, shots):
    mocks, llmux = dash_lab
    sign_in(page, llmux.base_url)
    expect(page.locator("#feed-state")).to_have_text("live")
    request_id = f"dash-{uuid.uuid4()}"
    with llmux.http() as http:
        r = http.post(
            "/v1/chat/completions",
            headers={"Authorization": f"Bearer {MASTER_KEY}", "x-request-id": request_id},
            json={"model": "coding", "messages": [{"role": "user", "content": "Say hello."}]},
        )
    assert r.status_code == 200, r.text
    row = page.locator("#requests tbody tr.request").first
    expect(row).to_contain_text("coding", timeout=2000)
    expect(row).to_contain_text(mocks["star"].hostport)
    expect(row.locator(".status")).to_have_text("200")
    page.screenshot(path=str(shots / "3-live-request.png"), full_page=True)

    # Clicking it shows the request and every attempt.
    row.click()
    detail = page.locator("#detail")
    expect(detail).to_be_visible()
    expect(detail).to_contain_text(request_id)
    expect(detail.locator("tbody tr")).to_have_count(1)
    expect(detail.locator("tbody tr").first).to_contain_text("answered")
    page.screenshot(path=str(shots / "4-request-detail.png"))


@pytest.mark.parametrize("page", [390], indirect=True, ids=["phone"])
def test_the_page_fits_a_phone_screen(dash_lab, page, shots):
    mocks, llmux = dash_lab
    sign_in(page, llmux.base_url)
    expect(host_card(page, mocks["banana"].url)).to_be_visible()
    expect(page.locator("#requests tbody tr.request").first).to_be_visible()
    # Nothing makes the page itself scroll sideways (wide tables scroll inside their own box).
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"the page is {overflow}px wider than a phone screen"
    page.screenshot(path=str(shots / "5-phone.png"), full_page=True)


def test_a_key_is_created_shown_once_used_and_blocked_from_the_keys_page(dash_lab, page, shots):
    _, llmux = dash_lab
    sign_in(page, llmux.base_url)
    section = page.locator("#keys-section")
    expect(section).to_be_visible()
    form = page.locator("#key-form")
    form.locator("input[name=key_alias]").fill("frigate")
    form.locator("input[name=models]").fill("vision")
    form.locator("input[name=max_budget]").fill("5")
    form.locator("input[name=rpm_limit]").fill("60")
    form.locator("button[type=submit]").click()
    expect(page.locator("#new-key")).to_be_visible()
    new_key = page.locator("#new-key-value").inner_text()
    assert new_key.startswith("sk-"), new_key
    row = page.locator("#keys tr.key", has_text="frigate")
    expect(row).to_contain_text("vision")
    expect(row).to_contain_text("60 rpm")
    expect(row.locator(".badge")).to_have_text("active")
    # The key is shown once: the list has only its abbreviation.
    assert new_key not in page.locator("#keys").inner_text()
    page.screenshot(path=str(shots / "6-key-created.png"), full_page=True)

    # The new key works for its model (and for nothing else), and its spend is counted.
    chat = {"model": "vision", "messages": [{"role": "user", "content": "hi"}]}
    with httpx.Client(base_url=llmux.base_url, headers={"Authorization": f"Bearer {new_key}"}, timeout=30) as http:
        assert http.post("/v1/chat/completions", json=chat).status_code == 200
        assert http.post("/v1/chat/completions", json={**chat, "model": "coding"}).status_code == 401
    admin = {"Authorization": f"Bearer {MASTER_KEY}"}
    deadline = time.monotonic() + 10
    logs = f"{llmux.base_url}/spend/logs"
    while time.monotonic() < deadline and not httpx.get(logs, params={"api_key": new_key}, headers=admin).json():
        time.sleep(0.2)

    page.locator("#new-key-done").click()
    expect(page.locator("#new-key")).to_be_hidden()
    row.locator("button.key-toggle").click()
    expect(row.locator(".badge")).to_have_text("blocked")
    expect(row.locator("button.key-toggle")).to_have_text("unblock")
    spend = page.locator("#spend tbody tr", has_text="frigate")
    expect(spend).to_have_count(1)
    expect(spend.locator("td").nth(2)).to_have_text("2")  # the answered request and the refused one
    page.screenshot(path=str(shots / "7-key-blocked.png"), full_page=True)
    with httpx.Client(base_url=llmux.base_url, headers={"Authorization": f"Bearer {new_key}"}, timeout=30) as http:
        assert http.post("/v1/chat/completions", json=chat).status_code == 401


def test_a_stopped_host_turns_down_on_the_page(dash_lab, page, shots):
    mocks, llmux = dash_lab
    sign_in(page, llmux.base_url)
    star = mocks["star"]
    card = host_card(page, star.url)
    expect(card.locator(".badge")).to_contain_text("up")
    star.proc.kill()
    wait_port_closed(star.port)
    # The background probe (every second) notices; the page refreshes every two.
    expect(card.locator(".badge")).to_contain_text("down", timeout=15000)
    expect(card.locator(".reason")).to_be_visible()
    group = page.locator("article.group", has_text="nemotron-cascade-2:30b").first
    expect(group.locator("tbody tr").nth(0).locator(".badge")).to_have_text("down")
    page.screenshot(path=str(shots / "8-host-down.png"), full_page=True)
