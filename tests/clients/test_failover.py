"""A home-lab host goes down: requests move to the next deployment of the group.

Runs on a private lab (its own mocks and llmux), since it kills a host.
"""

from __future__ import annotations

from harness import deployment_header, expected_deployment, load_homelab, wait_port_closed

MESSAGES = [{"role": "user", "content": "Say hello."}]


def order2_deployment(group: str) -> tuple[int, str]:
    config = load_homelab()
    for i, d in enumerate(config["model_list"]):
        if d["model_name"] == group and d["litellm_params"].get("order") == 2:
            return i, d["litellm_params"]["api_base"]
    raise AssertionError(f"no order-2 deployment in {group}")


def test_killed_order1_host_fails_over_to_order2(own_lab):
    lab = own_lab
    client = lab.client()
    _, first_host, _ = expected_deployment("reasoning_fast")
    assert first_host == "clementine"

    before = client.chat.completions.create(model="reasoning_fast", messages=MESSAGES)
    assert before.choices[0].message.content.startswith("Hello from clementine")

    # Pull the plug on clementine.
    clementine = lab.mocks["clementine"]
    clementine.proc.kill()
    wait_port_closed(clementine.port)

    banana = lab.mocks["banana"]
    banana.clear()
    for attempt in range(3):
        raw = client.chat.completions.with_raw_response.create(model="reasoning_fast", messages=MESSAGES)
        completion = raw.parse()
        assert raw.status_code == 200
        assert completion.choices[0].message.content == "Hello from banana (nemotron-3-nano:4b).", attempt
        index, _ = order2_deployment("nemotron-3-nano:4b")
        assert raw.headers["x-llmux-deployment"] == (
            f"model_list[{index}] ollama_chat/nemotron-3-nano:4b @ {banana.hostport}"
        )
        route = raw.headers.get("x-llmux-route", "")
        assert f"model_list[{index}]" in route, route
        if attempt == 0:
            # The route explains the detour: the order-1 deployment was tried and failed. (Later requests
            # may skip the dead host altogether while it cools down.)
            assert "model_list[0]" in route, route
    assert len(banana.requests("/api/chat")) == 3

    # Streaming fails over too (before the first byte reaches the client).
    stream = client.chat.completions.create(model="reasoning_fast", messages=MESSAGES, stream=True)
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == "Hello from banana (nemotron-3-nano:4b)."

    # Other groups are unaffected.
    raw = client.chat.completions.with_raw_response.create(model="coding", messages=MESSAGES)
    assert raw.headers["x-llmux-deployment"] == deployment_header(lab, "coding")


def test_order1_host_answering_503_fails_over(own_lab):
    """An engine answering 503 (e.g. Ollama overloaded) is skipped for the group's next deployment."""
    lab = own_lab
    client = lab.client()
    star = lab.mocks["star"]
    star.configure(fault={"status": 503})
    completion = client.chat.completions.create(model="coding", messages=MESSAGES)
    assert completion.choices[0].message.content.startswith("Hello from cranberry")
    assert star.requests("/api/chat"), "the order-1 host was not tried first"
