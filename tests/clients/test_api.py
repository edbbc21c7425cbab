"""Model listing, authentication and the error shapes clients rely on."""

from __future__ import annotations

import json

import openai
import pytest

from harness import MASTER_KEY, OAI_GROUP, load_homelab


def assert_openai_error(response, status: int) -> dict:
    """The body is OpenAI's error shape: {"error": {"message", "type", "param", "code"}}."""
    assert response.status_code == status, f"{response.status_code}: {response.text}"
    assert response.headers.get("content-type", "").startswith("application/json"), response.headers
    body = response.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert {"message", "type", "param", "code"} <= set(error), error
    assert isinstance(error["message"], str) and error["message"]
    return error


def test_models_lists_groups_and_aliases(client):
    config = load_homelab()
    groups = list(dict.fromkeys(d["model_name"] for d in config["model_list"]))
    aliases = list(config["router_settings"]["model_group_alias"])

    models = client.models.list()
    ids = [m.id for m in models]
    assert set(groups) <= set(ids), ids
    assert set(aliases) <= set(ids), ids
    assert OAI_GROUP in ids
    assert len(ids) == len(set(ids)), f"duplicates in {ids}"
    for m in models:
        assert m.object == "model"
        assert m.owned_by


def test_model_info(lab):
    with lab.llmux.http(headers={"Authorization": f"Bearer {MASTER_KEY}"}) as http:
        r = http.get("/model/info")
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    config = load_homelab()
    deployments = config["model_list"]
    # Every deployment (+ the passthrough one), then each alias as LiteLLM lists it: its target's deployments
    # again under the alias's name, so model pickers (Cline's) offer `coding`, `tools_fast`, …
    aliases = config["router_settings"]["model_group_alias"]
    per_alias = {a: sum(1 for d in deployments if d["model_name"] == t) for a, t in aliases.items()}
    assert len(data) == len(deployments) + 1 + sum(per_alias.values())
    for alias, target in aliases.items():
        entries = [d for d in data if d["model_name"] == alias]
        assert len(entries) == per_alias[alias], (alias, entries)
        assert {e["model_info"]["id"] for e in entries} == {
            d["model_info"]["id"] for d in data if d["model_name"] == target
        }
    assert all(d["model_info"]["id"] for d in data)
    # Keys never leave llmux.
    assert "sk-upstream-not-the-master-key" not in r.text
    assert MASTER_KEY not in r.text


def test_health_needs_no_key(lab):
    with lab.llmux.http() as http:
        assert http.get("/health/liveliness").status_code == 200
        assert http.get("/health/readiness").status_code == 200


def test_litellm_key_header_is_accepted(lab):
    # Cline sends the key as LiteLLM's own header.
    with lab.llmux.http(headers={"x-litellm-api-key": MASTER_KEY}) as http:
        assert http.get("/v1/models").status_code == 200
    with lab.llmux.http(headers={"x-litellm-api-key": "sk-wrong"}) as http:
        assert http.get("/v1/models").status_code == 401


def test_wrong_key_is_401(lab):
    bad = lab.client(api_key="sk-wrong")
    with pytest.raises(openai.AuthenticationError) as info:
        bad.chat.completions.create(model="default", messages=[{"role": "user", "content": "hi"}])
    assert info.value.status_code == 401
    assert "sk-wrong" not in str(info.value)
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()


@pytest.mark.parametrize("path,method", [("/v1/chat/completions", "POST"), ("/v1/models", "GET"),
                                         ("/v1/embeddings", "POST")])
def test_missing_key_is_401(lab, path, method):
    with lab.llmux.http() as http:
        r = http.request(method, path, json={"model": "default", "messages": [], "input": "x"})
    assert_openai_error(r, 401)


def test_key_in_x_api_key_header(lab):
    with lab.llmux.http(headers={"x-api-key": MASTER_KEY}) as http:
        r = http.get("/v1/models")
    assert r.status_code == 200, r.text


def test_unknown_model_is_400_with_litellm_message(client):
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "hi"}])
    assert info.value.status_code == 400
    expected = ("/chat/completions: Invalid model name passed in model=no-such-model. "
                "Call `/v1/models` to view available models for your key.")
    assert info.value.body["message"] == expected, info.value.body


def test_malformed_json_is_400(lab):
    with lab.llmux.http(headers={"Authorization": f"Bearer {MASTER_KEY}",
                                 "Content-Type": "application/json"}) as http:
        r = http.post("/v1/chat/completions", content=b'{"model": "default", "messages": [')
    error = assert_openai_error(r, 400)
    assert error["type"] == "invalid_request_error"


def test_missing_messages_is_400(lab):
    with lab.llmux.http(headers={"Authorization": f"Bearer {MASTER_KEY}"}) as http:
        r = http.post("/v1/chat/completions", json={"model": "default"})
    assert_openai_error(r, 400)


def test_unknown_route_is_404_openai_shape(lab):
    with lab.llmux.http(headers={"Authorization": f"Bearer {MASTER_KEY}"}) as http:
        r = http.get("/v1/no-such-route")
    assert_openai_error(r, 404)


@pytest.fixture(scope="module")
def small_limit_llmux(lab):
    return lab.extra_llmux("llmux-1mb", {"max_request_size_mb": 1})


def big_body(size: int) -> bytes:
    return json.dumps({"model": "default", "messages": [{"role": "user", "content": "x" * size}]}).encode()


def test_body_over_limit_is_413(small_limit_llmux):
    with small_limit_llmux.http(headers={"Authorization": f"Bearer {MASTER_KEY}",
                                         "Content-Type": "application/json"}) as http:
        r = http.post("/v1/chat/completions", content=big_body(1_500_000))
    assert_openai_error(r, 413)


def test_body_under_limit_is_served(small_limit_llmux):
    with small_limit_llmux.http(headers={"Authorization": f"Bearer {MASTER_KEY}"}) as http:
        r = http.post("/v1/chat/completions", content=big_body(500_000),
                      headers={"Content-Type": "application/json"})
    assert r.status_code == 200, r.text[:500]
