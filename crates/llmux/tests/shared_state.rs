//! Replicas sharing routing state through a real Redis: two llmux processes, one sees the other's cooldowns,
//! host health and usage; a Redis outage leaves both answering and sharing resumes when it returns.
//!
//! Each test starts a `redis-server` of its own on a spare port (only the program must be installed), so nothing
//! depends on a Redis already running on this machine.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed step is a failed test

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::process::{free_port, write, Process};
use common::{chat_body, eventually, mock, mock_with, posts, Llmux};
use llmux_mock::{Fault, MockConfig};

const KEY: Option<&str> = Some("sk-replicas");

/// A connection to the Redis on `port`, or a clear failure saying it is missing.
async fn redis_at(port: u16) -> redis::aio::MultiplexedConnection {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/")).unwrap();
    let started = Instant::now();
    loop {
        // A server the test just started takes a moment to listen.
        match client.get_multiplexed_async_connection().await {
            Ok(conn) => return conn,
            Err(e) if started.elapsed() > Duration::from_secs(5) => {
                panic!("these tests need Redis on 127.0.0.1:{port} (apt-get install redis-server): {e}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// Waits until a replica has written a cooldown to `hash` in the Redis on `port` (and the field count reaches
/// `fields`), then until the replica `other` shows it: what one replica learned is then visible to the others.
async fn shared(port: u16, hash: &str, fields: usize, other: &Llmux) {
    let mut conn = redis_at(port).await;
    eventually(&format!("{hash} in redis"), Duration::from_secs(10), async || {
        let n: usize = redis::cmd("HLEN").arg(hash).query_async(&mut conn).await.unwrap_or(0);
        n >= fields
    })
    .await;
    eventually("the other replica has read the cooldown", Duration::from_secs(10), async || cooling(other).await).await;
}

/// How many reads of the shared state `replica` has taken in (as its readiness says).
async fn reads(replica: &Llmux) -> u64 {
    replica.get_key("/health/readiness", KEY).await.json()["shared_state_reads"].as_u64().unwrap_or(0)
}

/// Waits until each of `replicas` has read the shared state twice since this call: the first read may have
/// begun before the call, the second began after it.
async fn read_twice(replicas: &[&Llmux]) {
    for replica in replicas {
        let before = reads(replica).await;
        eventually("the replica read the shared state", Duration::from_secs(10), async || {
            reads(replica).await >= before + 2
        })
        .await;
    }
}

/// Waits until the replicas have written `writes` batches of prompts to the Redis on `port`, then until each
/// of `replicas` has read them.
async fn prompts_shared(port: u16, prefix: &str, writes: u64, replicas: &[&Llmux]) {
    let mut conn = redis_at(port).await;
    let key = format!("{prefix}:prompts:version");
    eventually("prompts in redis", Duration::from_secs(10), async || {
        let version: u64 = redis::cmd("GET").arg(&key).query_async(&mut conn).await.unwrap_or(0);
        version >= writes
    })
    .await;
    read_twice(replicas).await;
}

/// Whether any deployment of group `g` is cooling down, as `replica`'s dashboard fleet view says.
async fn cooling(replica: &Llmux) -> bool {
    let fleet = replica.get_key("/ui/api/fleet", KEY).await.json();
    let groups = fleet["groups"].as_array().cloned().unwrap_or_default();
    let members = groups.iter().filter(|g| g["name"] == "g").flat_map(|g| g["deployments"].as_array().cloned());
    members.flatten().any(|d| d["health"] == "cooldown")
}

/// A `redis-server` of one test's own, stopped when the test ends.
struct OwnRedis {
    port: u16,
    child: Child,
}

impl OwnRedis {
    async fn start() -> OwnRedis {
        let port = free_port();
        let child = redis_server(port);
        let _ = redis_at(port).await;
        OwnRedis { port, child }
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Two replicas of the same config, sharing state under `prefix` in the Redis on `redis_port`.
fn replicas(dir: &Path, yaml: &str, redis_port: u16, prefix: &str) -> (Process, Process) {
    let path = dir.join("config.yaml");
    let yaml = yaml.replace("REDIS_PORT", &redis_port.to_string());
    write(&path, &yaml);
    let env = [("LLMUX_REDIS_PREFIX", prefix)];
    (Process::start_env(&path, &["--watch", "0"], &env), Process::start_env(&path, &["--watch", "0"], &env))
}

/// An engine that answers every request 429: the first request to it cools it down.
async fn rate_limited() -> llmux_mock::MockHandle {
    let mut config = MockConfig::new("limited", &["m"]);
    config.fault = Fault::Status { status: 429, body: None, retry_after: None };
    mock_with(config).await
}

/// Group `g`: `a` preferred (`order: 1`), `b` behind it; one retry, so a failure on `a` is answered by `b`.
fn group_of_two(a: &str, b: &str, extra_router: &str) -> String {
    format!(
        r#"model_list:
  - model_name: g
    litellm_params: {{model: ollama_chat/m, api_base: "{a}", order: 1}}
  - model_name: g
    litellm_params: {{model: ollama_chat/m, api_base: "{b}", order: 2}}
router_settings:
  redis_host: 127.0.0.1
  redis_port: REDIS_PORT
  num_retries: 1
  cooldown_time: 60
{extra_router}general_settings:
  master_key: sk-replicas
"#
    )
}

async fn chat(client: &Llmux, model: &str) -> u16 {
    client.post_key("/v1/chat/completions", &chat_body(model, false), KEY).await.status.as_u16()
}

#[tokio::test]
async fn a_cooldown_set_by_one_replica_is_honoured_by_the_other() {
    let redis = OwnRedis::start().await;
    let prefix = "llmux-test-cooldown";
    let limited = rate_limited().await;
    let healthy = mock("healthy", &["m"]).await;
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = replicas(dir.path(), &group_of_two(&limited.base_url(), &healthy.base_url(), ""), redis.port, prefix);
    a.ready().await;
    b.ready().await;
    let (ca, cb) = (a.client(), b.client());

    // Replica A meets the 429 on the preferred deployment, cools it down, and is answered by the other.
    assert_eq!(chat(&ca, "g").await, 200);
    assert_eq!(posts(&limited).len(), 1, "A hit the limited deployment once");
    let seen = posts(&limited).len();
    // Once A's cooldown is in Redis, B knows: none of its requests reach the cooled-down deployment.
    shared(redis.port, &format!("{prefix}:cooldown"), 1, &cb).await;
    for _ in 0..30 {
        assert_eq!(chat(&cb, "g").await, 200);
    }
    assert_eq!(posts(&limited).len(), seen, "B sent a request to a deployment A cooled down");
}

#[tokio::test]
async fn a_host_one_replica_finds_down_is_skipped_by_the_other_within_a_second() {
    let redis = OwnRedis::start().await;
    let prefix = "llmux-test-hostdown";
    let dead = format!("http://127.0.0.1:{}", free_port());
    let healthy = mock("healthy", &["m"]).await;
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = replicas(dir.path(), &group_of_two(&dead, &healthy.base_url(), ""), redis.port, prefix);
    a.ready().await;
    b.ready().await;
    let (ca, cb) = (a.client(), b.client());
    let host_status = |hosts: serde_json::Value| {
        hosts["hosts"].as_array().unwrap().iter().find(|h| h["host"] == dead.as_str()).unwrap()["status"].clone()
    };
    // A walks into the dead host and fails over to the healthy one.
    assert_eq!(host_status(cb.get_key("/health/hosts", KEY).await.json()), "unknown");
    assert_eq!(chat(&ca, "g").await, 200);
    assert_eq!(host_status(ca.get_key("/health/hosts", KEY).await.json()), "down");
    assert_eq!(posts(&healthy).len(), 1);
    // The design target is a few hundred ms (50 ms flush + 250 ms poll); the bound leaves room for a loaded CI box.
    let took = eventually("B sees the host down", Duration::from_secs(2), async || {
        host_status(cb.get_key("/health/hosts", KEY).await.json()) == "down"
    })
    .await;
    eprintln!("host-down propagation: {took:?}");
    // And B sends nothing to it: its first request goes straight to the healthy host.
    let reply = cb.post_key("/v1/chat/completions", &chat_body("g", false), KEY).await;
    assert_eq!(reply.status, 200);
    let route = reply.header("x-llmux-route");
    assert!(!route.contains("failed"), "B tried the dead host first: {route}");
}

#[tokio::test]
async fn rpm_limits_count_the_requests_of_every_replica() {
    // Usage is counted per UTC minute: the four requests must share a bucket.
    common::away_from_a_minute_boundary().await;
    let redis = OwnRedis::start().await;
    let prefix = "llmux-test-rpm";
    let engine = mock("e", &["m"]).await;
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        r#"model_list:
  - model_name: g
    litellm_params: {{model: ollama_chat/m, api_base: "{}", rpm: 4}}
router_settings:
  routing_strategy: usage-based-routing-v2
  redis_host: 127.0.0.1
  redis_port: REDIS_PORT
general_settings:
  master_key: sk-replicas
"#,
        engine.base_url()
    );
    let (a, b) = replicas(dir.path(), &yaml, redis.port, prefix);
    a.ready().await;
    b.ready().await;
    let (ca, cb) = (a.client(), b.client());
    assert_eq!(chat(&ca, "g").await, 200);
    assert_eq!(chat(&ca, "g").await, 200);
    assert_eq!(chat(&cb, "g").await, 200);
    assert_eq!(chat(&cb, "g").await, 200);
    // Both replicas' requests are counted in Redis (`<deployment id>|r` of this minute's bucket) ...
    let minute = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() / 60_000;
    let mut conn = redis_at(redis.port).await;
    eventually("four requests counted in redis", Duration::from_secs(10), async || {
        let counts: std::collections::HashMap<String, u64> = redis::cmd("HGETALL")
            .arg(format!("{prefix}:usage:{minute}"))
            .query_async(&mut conn)
            .await
            .unwrap_or_default();
        counts.iter().any(|(field, n)| field.ends_with("|r") && *n == 4)
    })
    .await;
    // ... and each replica has read the other's since.
    read_twice(&[&ca, &cb]).await;
    // Four this minute across both replicas: the limit is reached for each of them.
    assert_eq!(chat(&ca, "g").await, 429);
    assert_eq!(chat(&cb, "g").await, 429);
    assert_eq!(posts(&engine).len(), 4);
}

/// A `redis-server` of the test's own on `port`, keeping nothing on disk.
#[tokio::test]
async fn an_agent_session_stays_where_its_prompt_is_cached_whichever_replica_it_reaches() {
    let redis = OwnRedis::start().await;
    let prefix = "llmux-test-prompts";
    let engine = |name: &str| {
        let mut config = MockConfig::new(name, &["q"]);
        config.prefill_tokens_per_sec = 50_000.0;
        config
    };
    let (x, y) = (mock_with(engine("x")).await, mock_with(engine("y")).await);
    let yaml = format!(
        r#"model_list:
  - model_name: coding
    litellm_params: {{model: openai/q, api_base: "{x}/v1"}}
  - model_name: coding
    litellm_params: {{model: openai/q, api_base: "{y}/v1"}}
router_settings:
  redis_host: 127.0.0.1
  redis_port: REDIS_PORT
general_settings:
  master_key: sk-replicas
"#,
        x = x.base_url(),
        y = y.base_url()
    );
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = replicas(dir.path(), &yaml, redis.port, prefix);
    a.ready().await;
    b.ready().await;
    let system = serde_json::json!({"role": "system", "content": "rules ".repeat(2_000)});
    let turn = |n: usize| {
        let mut messages = vec![system.clone()];
        for t in 0..n {
            messages.push(serde_json::json!({"role": "user", "content": format!("step {t}")}));
            messages.push(serde_json::json!({"role": "assistant", "content": format!("did {t}")}));
        }
        messages.push(serde_json::json!({"role": "user", "content": format!("step {n}")}));
        serde_json::json!({"model": "coding", "messages": messages}).to_string()
    };
    // The session's turns alternate between the replicas (a load balancer in front of them).
    let first = a.client().post_key("/v1/chat/completions", &turn(0), KEY).await;
    assert_eq!(first.status, 200);
    let home = first.header("x-litellm-model-id");
    prompts_shared(redis.port, prefix, 1, &[&a.client(), &b.client()]).await;
    for (n, replica) in [(1, &b), (2, &a), (3, &b)] {
        let reply = replica.client().post_key("/v1/chat/completions", &turn(n), KEY).await;
        assert_eq!(reply.status, 200);
        let route = reply.header("x-llmux-route");
        assert_eq!(reply.header("x-litellm-model-id"), home, "turn {n}: {route}");
        assert!(route.contains("prompt tokens cached"), "turn {n}: {route}");
        prompts_shared(redis.port, prefix, u64::try_from(n).unwrap() + 1, &[&a.client(), &b.client()]).await;
    }
    let cached: u64 = [&x, &y].iter().map(|e| e.stats().prompt_cached).sum();
    assert!(cached > 3 * 2_000, "every later turn found the prompt in the engine's cache: {cached}");
}

fn redis_server(port: u16) -> Child {
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server is installed (apt-get install redis-server)");
    child
}

#[tokio::test]
async fn a_redis_outage_leaves_both_replicas_answering_and_sharing_resumes() {
    let port = free_port();
    let mut server = redis_server(port);
    let _ = redis_at(port).await;
    let limited = rate_limited().await;
    let healthy = mock("healthy", &["m"]).await;
    let dir = tempfile::tempdir().unwrap();
    let yaml = group_of_two(&limited.base_url(), &healthy.base_url(), "  cooldown_time: 4\n")
        .replace("  cooldown_time: 60\n", "");
    let (a, b) = replicas(dir.path(), &yaml, port, "llmux");
    a.ready().await;
    b.ready().await;
    let (ca, cb) = (a.client(), b.client());
    assert_eq!(chat(&ca, "g").await, 200);

    // Redis goes away: no request fails because of it.
    server.kill().unwrap();
    server.wait().unwrap();
    for _ in 0..10 {
        assert_eq!(chat(&ca, "g").await, 200);
        assert_eq!(chat(&cb, "g").await, 200);
    }
    // Let any cooldowns from before run out (4 s), then bring Redis back (empty).
    eventually("the cooldowns ran out", Duration::from_secs(10), async || !cooling(&ca).await && !cooling(&cb).await)
        .await;
    let mut server = redis_server(port);
    let mut conn = redis_at(port).await;
    // Both replicas find it again on their own (each re-registers in the fresh server).
    let took = eventually("both replicas reconnect", Duration::from_secs(15), async || {
        let n: u64 = redis::cmd("ZCARD").arg("llmux:replicas").query_async(&mut conn).await.unwrap_or(0);
        n == 2
    })
    .await;
    eprintln!("reconnected after {took:?}");

    // Sharing works again: a cooldown A sets after the outage keeps B away from the deployment.
    let seen = posts(&limited).len();
    assert_eq!(chat(&ca, "g").await, 200);
    assert_eq!(posts(&limited).len(), seen + 1, "A met the 429 again");
    shared(port, "llmux:cooldown", 1, &cb).await;
    let seen = posts(&limited).len();
    for _ in 0..20 {
        assert_eq!(chat(&cb, "g").await, 200);
    }
    assert_eq!(posts(&limited).len(), seen, "B honours A's cooldown once Redis is back");
    let _ = server.kill();
    let _ = server.wait();
}
