"""What an operator sees of a scripted mix of traffic: `/metrics` parsed with Prometheus' own text parser, and
the JSON access log, one line per request, with the `x-request-id` the client sent.

The mix, on a private lab (it breaks hosts): a plain success with the client's request id, a stream, a group
whose every deployment answers 429 (cooled down, then a fallback to another group), a killed host (failed over
within its group), an unknown model. Runs llmux with `litellm_settings.callbacks: ["prometheus"]`,
`require_auth_for_metrics_endpoint: true` and `--log-format json`.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from harness import (
    HOSTS,
    LOOPBACK,
    MASTER_KEY,
    OAI_HOST,
    OAI_UPSTREAM_MODEL,
    ROOT,
    LLMUX_BIN,
    Lab,
    Llmux,
    Proc,
    free_port,
    homelab_config,
    require_binaries,
    start_mock,
    wait_http,
    wait_port_closed,
)

MESSAGES = [{"role": "user", "content": "Say hello."}]


@pytest.fixture
def metrics_lab(log_root: Path):
    """The home lab's mocks and an llmux that serves metrics and logs JSON."""
    require_binaries()
    log_dir = log_root / "metrics"
    log_dir.mkdir(parents=True, exist_ok=True)
    lab = Lab(log_dir)
    try:
        for name, (_, models) in HOSTS.items():
            lab.mocks[name] = start_mock(name, models, log_dir)
        lab.mocks[OAI_HOST] = start_mock(OAI_HOST, [OAI_UPSTREAM_MODEL], log_dir)
        config = homelab_config(lab.mocks)
        config["litellm_settings"]["callbacks"] = ["prometheus"]
        config["litellm_settings"]["require_auth_for_metrics_endpoint"] = True
        # Probes only when asked: the test decides what llmux learns, and when.
        config["litellm_settings"]["enable_background_health_checks"] = False
        path = log_dir / "llmux.yaml"
        path.write_text(json.dumps(config))
        port = free_port()
        argv = [str(LLMUX_BIN), "--config", str(path), "--host", LOOPBACK, "--port", str(port), "--log-format", "json"]
        proc = Proc("llmux", argv, log_dir)
        lab.llmux = Llmux(port, proc, path)
        wait_http(f"http://{LOOPBACK}:{port}/health/liveliness", proc)
        yield lab
    finally:
        lab.stop()


def deployment_id(lab: Lab, host: str, group: str) -> str:
    """The model_id llmux reports for the deployment of `group` on `host` (from /model/info)."""
    url = lab.mocks[host].url
    with lab.llmux.http(headers={"Authorization": f"Bearer {MASTER_KEY}"}) as http:
        for entry in http.get("/model/info").json()["data"]:
            if entry["model_name"] == group and entry["litellm_params"].get("api_base", "").startswith(url):
                return entry["model_info"]["id"]
    raise AssertionError(f"no {group} deployment on {host}")


class Scrape:
    """One /metrics scrape, parsed by prometheus_client's parser."""

    def __init__(self, text: str):
        families = list(text_string_to_metric_families(text))
        self.families = {family.name for family in families}
        self.samples = [s for family in families for s in family.samples]

    def value(self, name: str, **labels: str) -> float:
        """The sum of the samples named `name` whose labels include `labels`."""
        found = [s.value for s in self.samples if s.name == name and labels.items() <= s.labels.items()]
        return sum(found)

    def labels(self, name: str) -> list[dict]:
        return [s.labels for s in self.samples if s.name == name]


def scrape(lab: Lab) -> Scrape:
    with lab.llmux.http(headers={"Authorization": f"Bearer {MASTER_KEY}"}) as http:
        r = http.get("/metrics")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    return Scrape(r.text)


def access_log(lab: Lab) -> list[dict]:
    lines = []
    for line in lab.llmux.proc.log().splitlines():
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            continue
        if event.get("target") == "llmux::access":
            lines.append(event)
    return lines


def test_metrics_and_access_log_after_a_scripted_mix(metrics_lab: Lab):
    lab = metrics_lab
    client = lab.client()
    coding = "nemotron-cascade-2:30b"

    # /metrics wants the master key here.
    with lab.llmux.http() as http:
        assert http.get("/metrics").status_code == 401
        assert http.get("/metrics", headers={"Authorization": "Bearer sk-wrong"}).status_code == 401

    # 1. A success, with the client's request id, echoed.
    raw = client.chat.completions.with_raw_response.create(
        model="coding", messages=MESSAGES, extra_headers={"x-request-id": "mix-success-1"}
    )
    assert raw.status_code == 200
    assert raw.headers["x-request-id"] == "mix-success-1"

    # 2. A stream, with its usage.
    stream = client.chat.completions.create(
        model="coding", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0

    # 3. Every deployment of reasoning_fast's group answers 429 with retry-after: both cool down and the
    #    request falls back to reasoning_slow's group.
    for host in ("clementine", "banana"):
        lab.mocks[host].configure(fault={"status": 429, "retry_after": 30})
    raw = client.chat.completions.with_raw_response.create(
        model="reasoning_fast", messages=MESSAGES, extra_headers={"x-request-id": "mix-fallback-1"}
    )
    assert raw.status_code == 200
    assert raw.parse().choices[0].message.content.startswith("Hello from star")

    # 4. A host is killed: coding fails over from star to cranberry.
    star = lab.mocks["star"]
    star.proc.kill()
    wait_port_closed(star.port)
    raw = client.chat.completions.with_raw_response.create(
        model="coding", messages=MESSAGES, extra_headers={"x-request-id": "mix-killed-1"}
    )
    assert raw.parse().choices[0].message.content.startswith("Hello from cranberry")

    # 5. An unknown model: a 4xx, still with a request id (a made-up one when the client's is unusable).
    with lab.llmux.http(headers={"Authorization": f"Bearer {MASTER_KEY}", "x-request-id": "x" * 200}) as http:
        r = http.post("/v1/chat/completions", json={"model": "no-such-model", "messages": MESSAGES})
    assert r.status_code in (400, 404)
    made_up = r.headers["x-request-id"]
    assert made_up and made_up != "x" * 200 and len(made_up) <= 128

    m = scrape(lab)
    star_id, cranberry_id = deployment_id(lab, "star", coding), deployment_id(lab, "cranberry", coding)
    clementine_id = deployment_id(lab, "clementine", "nemotron-3-nano:4b")
    banana_id = deployment_id(lab, "banana", "nemotron-3-nano:4b")

    # Requests, as LiteLLM counts them.
    total = "litellm_proxy_total_requests_metric_total"
    assert m.value(total, requested_model="coding", status_code="200") == 3
    assert m.value(total, requested_model="reasoning_fast", status_code="200") == 1
    assert m.value(total) == 5
    failed = "litellm_proxy_failed_requests_metric_total"
    assert m.value(failed) == 1
    assert all(labels["requested_model"] == "" for labels in m.labels(failed)), "an unknown name is no label"
    assert "no-such-model" not in json.dumps([s.labels for s in m.samples])

    # Per deployment: calls, failures with their status, cooldowns.
    assert m.value("litellm_deployment_success_responses_total", model_id=star_id) == 3
    assert m.value("litellm_deployment_success_responses_total", model_id=cranberry_id) == 1
    for cooled in (clementine_id, banana_id):
        assert m.value("litellm_deployment_failure_responses_total", model_id=cooled, exception_status="429") >= 1
        assert m.value("litellm_deployment_cooled_down_total", model_id=cooled, exception_status="429") >= 1
        assert m.value("litellm_deployment_state", model_id=cooled) == 2, "cooling down: a complete outage"
    assert m.value("litellm_deployment_failure_responses_total", model_id=star_id) == 1, "the killed host"
    assert m.value("litellm_deployment_state", model_id=star_id) == 2
    assert m.value("litellm_deployment_state", model_id=cranberry_id) == 0

    fallbacks = "litellm_deployment_successful_fallbacks_total"
    assert m.value(fallbacks, requested_model="reasoning_fast", fallback_model=coding, exception_status="429") == 1
    assert m.value("litellm_deployment_failed_fallbacks_total") == 0

    # Latency, time to first token (the stream only), tokens.
    assert m.value("litellm_request_total_latency_metric_count", requested_model="coding") == 3
    assert m.value("litellm_llm_api_time_to_first_token_metric_count", model_id=star_id) == 1
    assert m.value("litellm_input_tokens_metric_total", model_id=star_id) > 0
    out = m.value("litellm_output_tokens_metric_total", model_id=star_id)
    assert out > 0
    assert m.value("litellm_total_tokens_metric_total", model_id=star_id) == out + m.value(
        "litellm_input_tokens_metric_total", model_id=star_id
    )

    # llmux's own: routing decisions, hosts, what is loaded where.
    decisions = "llmux_routing_decisions_total"
    assert m.value(decisions, reason="fallback") == 1
    assert m.value(decisions, reason="retry") + m.value(decisions, reason="escalation") >= 1
    assert m.value("llmux_host_status", host=star.url, status="down") == 1
    assert m.value("llmux_host_status", host=star.url, status="up") == 0
    assert m.value("llmux_requests_total", protocol="openai", operation="chat", status_code="200") == 4

    # No key anywhere in the metrics.
    text = "\n".join(str(s) for s in m.samples)
    assert MASTER_KEY not in text and "sk-upstream" not in text

    # The access log: one JSON line per request, with the ids the clients sent.
    lines = access_log(lab)
    assert len(lines) == 5, lines
    by_id = {line["request_id"]: line for line in lines}
    ok = by_id["mix-success-1"]
    assert (ok["protocol"], ok["requested"], ok["group"], ok["status"]) == ("openai", "coding", coding, 200)
    assert ok["deployment"].endswith(f"@ {star.hostport}")
    assert ok["tokens_in"] > 0 and ok["tokens_out"] > 0 and ok["duration_ms"] >= ok["ttfb_ms"] >= 0
    fell_back = by_id["mix-fallback-1"]
    assert fell_back["fallbacks"] == 1 and "429" in fell_back["failed_attempts"], fell_back
    killed = by_id["mix-killed-1"]
    assert killed["deployment"].endswith(f"@ {lab.mocks['cranberry'].hostport}")
    assert star.hostport in killed["failed_attempts"], killed
    assert by_id[made_up]["status"] == r.status_code
    assert "no-such-model" in by_id[made_up]["error"], by_id[made_up]
    assert MASTER_KEY not in lab.llmux.proc.log()
    assert "Say hello" not in "\n".join(json.dumps(line) for line in lines), "no prompt text in the access log"

    # The README lists every series /metrics has, and the Grafana dashboard in deploy/ asks only for listed ones.
    def series(text: str) -> set[str]:
        return {re.sub(r"_(total|bucket|count|sum)$", "", n) for n in re.findall(r"\b(?:litellm|llmux)_\w+", text)}

    readme = (ROOT / "README.md").read_text()
    listed = series(readme[readme.index("## Metrics and logs") : readme.index("**Access log**")])
    assert m.families - listed == set(), f"series missing from the README's list: {m.families - listed}"
    dashboard = json.loads((ROOT / "deploy" / "grafana" / "llmux.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    asked = {name for e in exprs for name in series(" ".join(re.findall(r"\b\w+(?=\{)", e)))}
    assert len(asked) > 20 and asked - listed == set(), f"the dashboard asks for unlisted series: {asked - listed}"


def test_metrics_are_a_404_unless_the_config_asks_for_them(lab: Lab):
    with lab.llmux.http(headers={"Authorization": f"Bearer {MASTER_KEY}"}) as http:
        r = http.get("/metrics")
    assert r.status_code == 404
    assert "prometheus" in r.text
    assert r.headers["x-request-id"], "every response carries a request id"
