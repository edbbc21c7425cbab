"""Virtual keys (issue 17), through the official SDKs: LiteLLM's /key/* API, every key field enforced, spend
counted per key, keys in SQLite (the default) and in the real PostgreSQL on 127.0.0.1:5432 (a database of its
own per test, dropped after), two replicas sharing one rpm limit through a Redis the test starts, and a
PostgreSQL outage that loses no spend."""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time
import uuid
from pathlib import Path

import anthropic
import httpx
import openai
import pytest

from harness import LOOPBACK, MASTER_KEY, Lab, Llmux, Proc, free_port, homelab_config, start_llmux

MODEL = "qwen3.5:9b"  # priced below, so spend is not zero
FAMILY_MODEL = "nemotron-3-nano:4b"  # in access group "family"
PG = ["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", "test", "-v", "ON_ERROR_STOP=1", "-tAc"]


def keys_config(lab: Lab, general: dict | None = None, redis_port: int | None = None) -> dict:
    config = homelab_config(lab.mocks, {"proxy_batch_write_at": 0.2, **(general or {})})
    for entry in config["model_list"]:
        info = entry.setdefault("model_info", {})
        if entry["model_name"] == MODEL:
            info.update(input_cost_per_token=0.001, output_cost_per_token=0.002)
        if entry["model_name"] == FAMILY_MODEL:
            info["access_groups"] = ["family"]
    if redis_port:
        config.setdefault("router_settings", {}).update(redis_host=LOOPBACK, redis_port=redis_port)
    return config


def start(lab: Lab, tmp_path: Path, name: str = "llmux-keys", **kw) -> Llmux:
    log_dir = tmp_path / name
    log_dir.mkdir(parents=True, exist_ok=True)
    return start_llmux(keys_config(lab, **kw), log_dir, name)


def admin(llmux: Llmux) -> httpx.Client:
    return llmux.http(headers={"Authorization": f"Bearer {MASTER_KEY}"})


def generate(llmux: Llmux, **fields) -> tuple[str, str]:
    with admin(llmux) as http:
        r = http.post("/key/generate", json=fields)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["key"].startswith("sk-") and body["token_id"] == body["token"]
    return body["key"], body["token"]


def post(llmux: Llmux, path: str, **body) -> httpx.Response:
    with admin(llmux) as http:
        return http.post(path, json=body)


def chat(llmux: Llmux, key: str, model: str = MODEL):
    return llmux.client(api_key=key).chat.completions.create(
        model=model, messages=[{"role": "user", "content": "hello"}], max_tokens=8
    )


def wait_for(what, check, timeout: float = 15.0):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout}s (last: {value!r})")
        time.sleep(0.1)


@pytest.fixture
def keyed(lab: Lab, tmp_path: Path):
    lab.reset_mocks()
    llmux = start(lab, tmp_path)
    yield llmux
    llmux.proc.stop()


def test_a_key_is_shown_once_and_works_only_for_its_models(keyed: Llmux):
    key, token = generate(keyed, key_alias="home-assistant", models=[MODEL, "family"], aliases={"fast": MODEL},
                          metadata={"app": "ha"}, soft_budget=1.0, user_id="u1", team_id="t1")
    assert chat(keyed, key).choices[0].message.content
    # access group "family" (model_info.access_groups) and the key's own alias
    assert chat(keyed, key, FAMILY_MODEL).choices[0].message.content
    assert chat(keyed, key, "fast").model  # routed to qwen through the key's alias
    with pytest.raises(openai.AuthenticationError) as refused:
        chat(keyed, key, "nemotron-cascade-2:30b")
    assert refused.value.body["type"] == "key_model_access_denied"
    assert refused.value.body["message"].startswith("key not allowed to access model. This key can only access models=[")
    assert refused.value.body["message"].endswith("Tried to access nemotron-cascade-2:30b")
    # A virtual key is no admin key.
    r = keyed.http(headers={"Authorization": f"Bearer {key}"}).post("/key/generate", json={})
    assert r.status_code == 401
    # It lists only the models it may call (their aliases included); the master key lists them all.
    mine = {m.id for m in keyed.client(api_key=key).models.list().data}
    everything = {m.id for m in keyed.client(api_key=MASTER_KEY).models.list().data}
    assert {MODEL, FAMILY_MODEL, "vision"} <= mine, mine
    assert "nemotron-cascade-2:30b" in everything and "nemotron-cascade-2:30b" not in mine and "coding" not in mine

    with admin(keyed) as http:
        listed = http.get("/key/list", params={"return_full_object": "true"}).json()
        assert listed["total_count"] == 1 and listed["keys"][0]["token"] == token
        assert key not in str(listed) and key not in http.get("/key/list").text
        info = http.get("/key/info", params={"key": key}).json()
        assert info["key"] == token and key not in str(info)
        assert info["info"]["key_alias"] == "home-assistant" and info["info"]["metadata"] == {"app": "ha"}
        assert info["info"]["soft_budget"] == 1.0 and info["info"]["user_id"] == "u1"
        assert http.get("/key/info", params={"key": "sk-nobody-has-this"}).status_code == 404
        # an alias is unique
        assert http.post("/key/generate", json={"key_alias": "home-assistant"}).status_code == 400
        # Spend logs name the model the client asked for: the refused one, and the key's alias before renaming.
        by_model = lambda: {r["model"]: r for r in http.get("/spend/logs", params={"api_key": key}).json()}  # noqa: E731
        logged = wait_for("the refused request's row", lambda: "nemotron-cascade-2:30b" in by_model() and by_model())
        assert logged["nemotron-cascade-2:30b"]["status"] == "failure"
        assert logged["nemotron-cascade-2:30b"]["metadata"]["status_code"] == 401
        assert logged["fast"]["status"] == "success" and logged["fast"]["model_group"] == MODEL


def test_block_update_regenerate_delete(keyed: Llmux):
    key, token = generate(keyed, key_alias="agent")
    assert post(keyed, "/key/block", key=key).json()["blocked"] is True
    with pytest.raises(openai.AuthenticationError) as refused:
        chat(keyed, key)
    assert "Key is blocked. Update via `/key/unblock` if you're admin." in refused.value.body["message"]
    assert post(keyed, "/key/unblock", key=token).json()["blocked"] is False
    chat(keyed, key)

    # update by hash: models narrowed, takes effect at once
    r = post(keyed, "/key/update", key=token, models=[FAMILY_MODEL])
    assert r.status_code == 200 and r.json()["models"] == [FAMILY_MODEL]
    with pytest.raises(openai.AuthenticationError):
        chat(keyed, key)

    r = post(keyed, "/key/regenerate", key=key)
    assert r.status_code == 200, r.text
    new = r.json()["key"]
    assert new != key and r.json()["models"] == [FAMILY_MODEL]
    with pytest.raises(openai.AuthenticationError):
        chat(keyed, key, FAMILY_MODEL)
    chat(keyed, new, FAMILY_MODEL)

    r = post(keyed, "/key/delete", keys=[new])
    assert r.status_code == 200 and r.json()["deleted_keys"] == [r.json()["deleted_keys"][0]] and new not in r.text
    with pytest.raises(openai.AuthenticationError):
        chat(keyed, new, FAMILY_MODEL)


def test_custom_key_duration_and_expiry(keyed: Llmux):
    custom = "sk-my-own-key-" + uuid.uuid4().hex
    key, _ = generate(keyed, key=custom, duration="1s")
    assert key == custom
    chat(keyed, custom)
    time.sleep(1.2)
    with pytest.raises(openai.BadRequestError) as refused:
        chat(keyed, custom)
    assert refused.value.body["type"] == "expired_key"
    assert refused.value.body["message"].startswith("Authentication Error - Expired Key. Key Expiry time ")


def test_budget_spend_and_budget_duration(keyed: Llmux):
    key, token = generate(keyed, key_alias="family", max_budget=1000.0)
    chat(keyed, key)
    # spend = tokens × model_info prices, written in batches
    rows = wait_for("a spend-log row", lambda: admin(keyed).get("/spend/logs", params={"api_key": key}).json())
    assert rows[0]["api_key"] == token and rows[0]["spend"] > 0 and rows[0]["total_tokens"] > 0
    assert rows[0]["metadata"]["user_api_key_alias"] == "family" and rows[0]["model"] == MODEL
    report = admin(keyed).get("/global/spend/report").json()
    today = [k for day in report for k in day["api_keys"] if k["api_key"] == token]
    assert today and today[0]["total_spend"] == pytest.approx(rows[0]["spend"])
    assert today[0]["metadata"][0]["model"] == MODEL
    info = admin(keyed).get("/key/info", params={"key": token}).json()["info"]
    assert info["spend"] == pytest.approx(rows[0]["spend"])

    # over budget: refused with LiteLLM's 400
    post(keyed, "/key/update", key=token, max_budget=0.5, spend=0.75)
    with pytest.raises(openai.BadRequestError) as refused:
        chat(keyed, key)
    assert refused.value.body["type"] == "budget_exceeded"
    assert refused.value.body["message"].startswith("Budget has been exceeded! Key=family Current cost: 0.75")
    # the refused request is logged against the key too
    wait_for("the refusal's row", lambda: any(r["metadata"]["status_code"] == 400 for r in
                                               admin(keyed).get("/spend/logs", params={"api_key": token}).json()))
    # a budget window resets the spend
    post(keyed, "/key/update", key=token, budget_duration="2s")
    wait_for("the budget reset", lambda: _answers(keyed, key))


def _answers(llmux: Llmux, key: str) -> bool:
    try:
        chat(llmux, key)
        return True
    except openai.BadRequestError:
        return False


def test_rpm_tpm_and_per_model_limits(keyed: Llmux):
    key, token = generate(keyed, rpm_limit=2)
    chat(keyed, key)
    chat(keyed, key)
    with pytest.raises(openai.RateLimitError) as refused:
        chat(keyed, key)
    assert refused.value.body["message"].startswith(f"Rate limit exceeded for api_key: {token}. Limit type: requests.")
    assert int(refused.value.response.headers["retry-after"]) >= 1

    key, _ = generate(keyed, tpm_limit=1)
    chat(keyed, key)  # the first request's tokens reach the limit
    with pytest.raises(openai.RateLimitError) as refused:
        chat(keyed, key)
    assert "Limit type: tokens." in refused.value.body["message"]

    key, _ = generate(keyed, model_rpm_limit={MODEL: 1})
    chat(keyed, key)
    chat(keyed, key, FAMILY_MODEL)  # another model is not limited
    with pytest.raises(openai.RateLimitError):
        chat(keyed, key)

    key, _ = generate(keyed, model_tpm_limit={MODEL: 1})
    chat(keyed, key)
    with pytest.raises(openai.RateLimitError):
        chat(keyed, key)
    chat(keyed, key, FAMILY_MODEL)


def test_max_parallel_requests(lab: Lab, keyed: Llmux):
    key, _ = generate(keyed, max_parallel_requests=1)
    for mock in lab.mocks.values():
        mock.configure(latency_ms=1500)
    try:
        outcomes: list[str] = []
        first = threading.Thread(target=lambda: outcomes.append(chat(keyed, key).object))
        first.start()
        deadline = time.monotonic() + 5
        while not any(m.stats().get("in_flight") for m in lab.mocks.values()):
            assert time.monotonic() < deadline, "the first request never reached an engine"
            time.sleep(0.02)
        with pytest.raises(openai.RateLimitError) as refused:
            chat(keyed, key)
        assert "Limit type: max_parallel_requests." in refused.value.body["message"]
        first.join()
        assert outcomes == ["chat.completion"]
    finally:
        lab.reset_mocks()
    chat(keyed, key)  # the slot is given back when the answer ends


def test_other_protocols_are_refused_in_their_own_shape(keyed: Llmux):
    key, _ = generate(keyed, models=[FAMILY_MODEL])
    client = anthropic.Anthropic(base_url=keyed.base_url, api_key=key, max_retries=0)
    answer = client.messages.create(model=FAMILY_MODEL, max_tokens=8, messages=[{"role": "user", "content": "hi"}])
    assert answer.content
    with pytest.raises(anthropic.AuthenticationError) as refused:
        client.messages.create(model=MODEL, max_tokens=8, messages=[{"role": "user", "content": "hi"}])
    assert refused.value.body["type"] == "error"
    assert "key not allowed to access model" in refused.value.body["error"]["message"]
    r = keyed.http(headers={"Authorization": f"Bearer {key}"}).post(
        "/api/chat", json={"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "stream": False}
    )
    assert r.status_code == 401 and "key not allowed to access model" in r.json()["error"]


def test_a_key_never_appears_in_logs_errors_or_lists(keyed: Llmux):
    key, _ = generate(keyed, key_alias="secretive", models=[MODEL], rpm_limit=1)
    chat(keyed, key)
    errors = []
    for model in (MODEL, "not-allowed"):
        try:
            chat(keyed, key, model)
        except openai.APIStatusError as e:
            errors.append(e.response.text)
    assert len(errors) == 2 and all(key not in e for e in errors)
    with admin(keyed) as http:
        for path in ("/key/list?return_full_object=true", "/spend/logs", "/global/spend/report", "/health/readiness"):
            assert key not in http.get(path).text
    time.sleep(0.5)
    assert key not in keyed.proc.log()


# -----------------------------------------------------------------------------------------------------------
# PostgreSQL


@pytest.fixture
def database():
    if shutil.which("psql") is None or subprocess.run(PG + ["SELECT 1"], capture_output=True).returncode != 0:
        pytest.skip("no PostgreSQL on 127.0.0.1:5432")
    name = f"llmux_keys_{uuid.uuid4().hex[:12]}"
    subprocess.run(PG + [f"CREATE DATABASE {name}"], check=True, capture_output=True)
    yield name
    subprocess.run(PG + [f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"], capture_output=True)


def rows_in(database: str, sql: str) -> str:
    argv = ["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", database, "-tAc", sql]
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout.strip()


def test_postgres_replicas_share_keys_and_one_rpm_limit(lab: Lab, tmp_path: Path, database: str):
    redis_port = free_port()
    redis = Proc("redis-keys", ["redis-server", "--port", str(redis_port), "--bind", LOOPBACK, "--save", "",
                                "--appendonly", "no"], tmp_path)
    url = f"postgresql://postgres@127.0.0.1:5432/{database}"
    replicas: list[Llmux] = []
    try:
        for name in ("llmux-a", "llmux-b"):
            replicas.append(start(lab, tmp_path, name, general={"database_url": url}, redis_port=redis_port))
        a, b = replicas
        key, token = generate(a, key_alias="shared", rpm_limit=3)
        # b sees a's key within about a second
        wait_for("the key on the other replica", lambda: _known(b, key))
        answered = 1  # _known made one request on b
        for replica in (a, b):
            try:
                chat(replica, key)
                answered += 1
            except openai.RateLimitError:
                pass
        assert answered == 3
        for replica in (a, b):
            with pytest.raises(openai.RateLimitError):
                chat(replica, key)
        assert rows_in(database, f"SELECT key_alias FROM llmux_keys WHERE token = '{token}'") == "shared"
        # every request with the key has its row, the refused ones with their 429
        counts = "SELECT status, COUNT(*) FROM llmux_spend_logs WHERE api_key IS NOT NULL GROUP BY status ORDER BY status"
        wait_for("spend rows in postgres", lambda: rows_in(database, counts) == "200|3\n429|2")
    finally:
        for replica in replicas:
            replica.proc.stop()
        redis.stop()


def _known(llmux: Llmux, key: str) -> bool:
    try:
        chat(llmux, key)
        return True
    except openai.AuthenticationError:
        return False


class Cuttable:
    """A TCP proxy in front of PostgreSQL that the test can cut (every connection closed, new ones refused
    by a closed listener) and restore on the same port."""

    def __init__(self, target: tuple[str, int]):
        self.target = target
        self.port = free_port()
        self.conns: list[socket.socket] = []
        self.lock = threading.Lock()
        self.listener: socket.socket | None = None
        self.restore()

    def restore(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((LOOPBACK, self.port))
        listener.listen(64)
        self.listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        with self.lock:
            if self.listener:
                # close() alone leaves a thread blocked in accept() listening on Linux; shutdown() wakes it.
                try:
                    self.listener.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                self.listener.close()
                self.listener = None
            for c in self.conns:
                try:
                    c.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                c.close()
            self.conns.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self.lock:
                # A connection accepted just before a cut must not outlive it.
                if self.listener is not listener:
                    client.close()
                    upstream.close()
                    continue
                self.conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


def test_postgres_outage_keeps_keys_working_and_loses_no_spend(lab: Lab, tmp_path: Path, database: str):
    proxy = Cuttable(("127.0.0.1", 5432))
    url = f"postgresql://postgres@127.0.0.1:{proxy.port}/{database}"
    llmux = start(lab, tmp_path, "llmux-pg", general={"database_url": url})
    try:
        key, token = generate(llmux, key_alias="outage")
        chat(llmux, key)
        proxy.cut()
        readiness = lambda: admin(llmux).get("/health/readiness").json()  # noqa: E731
        wait_for("the outage in readiness", lambda: readiness()["db"] == "unreachable")
        for _ in range(5):
            chat(llmux, key)  # known keys keep answering
        assert readiness()["spend_logs_buffered"] >= 5
        proxy.restore()
        wait_for("the store back", lambda: readiness()["db"] == "connected")
        count = lambda: rows_in(database, f"SELECT COUNT(*) FROM llmux_spend_logs WHERE api_key = '{token}'")  # noqa: E731
        wait_for("every spend row", lambda: count() == "6")
        spend = float(rows_in(database, f"SELECT spend FROM llmux_keys WHERE token = '{token}'"))
        logged = float(rows_in(database, f"SELECT SUM(spend) FROM llmux_spend_logs WHERE api_key = '{token}'"))
        assert spend == pytest.approx(logged) and spend > 0
        assert "does not answer" in llmux.proc.log() and llmux.proc.log().count("the key store does not answer") == 1
    finally:
        llmux.proc.stop()
        proxy.cut()


def test_a_database_down_at_start_up_does_not_keep_llmux_from_serving(lab: Lab, tmp_path: Path, database: str):
    proxy = Cuttable(("127.0.0.1", 5432))
    proxy.cut()  # PostgreSQL is not up yet when llmux starts
    url = f"postgresql://postgres@127.0.0.1:{proxy.port}/{database}"
    llmux = start(lab, tmp_path, "llmux-pg-late", general={"database_url": url})
    try:
        assert chat(llmux, MASTER_KEY).choices[0].message.content  # the master key works meanwhile
        readiness = lambda: admin(llmux).get("/health/readiness").json()  # noqa: E731
        assert readiness()["db"] == "unreachable"
        assert post(llmux, "/key/generate", key_alias="early").status_code >= 400
        proxy.restore()
        wait_for("the store once it answers", lambda: readiness()["db"] == "connected")
        key, _ = generate(llmux, key_alias="late")
        assert chat(llmux, key).choices[0].message.content
        assert "serving without virtual keys until the database answers" in llmux.proc.log()
    finally:
        llmux.proc.stop()
        proxy.cut()
