//! Wake-on-LAN over real loopback sockets: a host that sleeps (the mock refuses connections until a magic packet
//! reaches the UDP port it binds on 127.0.0.1) is woken for the requests nothing awake can serve, which are
//! held meanwhile (streams with keep-alive comments saying so) and sent to it when it answers. Packets go only
//! to loopback ports these tests bind.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed step is a failed test

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use llmux_mock::{MockConfig, MockHandle, MockServer};

/// A free UDP port on loopback for a sleeping mock's wake-up address.
fn free_udp() -> SocketAddr {
    std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

/// A mock Ollama host serving `models`, asleep until a magic packet reaches `wake_on`, answering `boot` later.
async fn sleeper(models: &[&str], wake_on: SocketAddr, boot: Duration) -> MockHandle {
    let config = MockConfig::new("p40", models);
    MockServer::start_asleep(config, "127.0.0.1:0".parse().unwrap(), wake_on, boot).await.unwrap()
}

/// `big` (and `small`) on the sleeping host at `base`, woken through `wake_on`; `extra` goes under its `wake`.
fn sleepy_config(base: &str, wake_on: SocketAddr, extra: &str) -> String {
    format!(
        r#"
router_settings:
  stream_keepalive: 0.3
model_list:
  - model_name: big
    litellm_params: {{model: ollama_chat/big, api_base: "{base}"}}
  - model_name: small
    litellm_params: {{model: ollama_chat/small, api_base: "{base}"}}
llmux_settings:
  hosts:
    {base}:
      wake: {{mac: "aa:bb:cc:dd:ee:ff", address: "{wake_on}", boot_seconds: 20{extra}}}
"#
    )
}

#[tokio::test]
async fn a_stream_is_held_with_keep_alives_naming_the_host_while_it_wakes_then_answered_by_it() {
    let wake_on = free_udp();
    let p40 = sleeper(&["big", "small"], wake_on, Duration::from_millis(1500)).await;
    let base = p40.base_url();
    let llmux = Llmux::start(&sleepy_config(&base, wake_on, ", wake_for: [big]")).await;

    // `small` may not wake the host: it fails as a down host does, and no packet is sent.
    let refused = llmux.post("/v1/chat/completions", &chat_body("small", false)).await;
    assert!(refused.status.is_server_error() || refused.status == 429, "{}", refused.text());
    assert_eq!(p40.stats().wake_packets, 0, "wake_for: [big]");

    let (status, _, frames) = llmux.stream("/v1/chat/completions", &chat_body("big", true)).await;
    assert_eq!(status, 200);
    let raw: String = frames.iter().map(|(_, b)| String::from_utf8_lossy(b).into_owned()).collect();
    assert!(raw.contains(&format!(": waking {base}, ")), "keep-alive comments say what the stream waits for: {raw}");
    let events = sse_events(&frames);
    assert!(!stream_text(&events).is_empty(), "the woken host answered: {raw}");
    assert_eq!(posts(&p40).len(), 1, "one generation, on the woken host");
    let packets = p40.stats().wake_packets;
    assert!((1..=3).contains(&packets), "a few packets, not a storm: {packets}");

    let hosts = llmux.get("/health/hosts").await.json();
    let host = &hosts["hosts"][0];
    assert_eq!(host["status"], "up", "{host}");
    assert!(host["wake"]["learned_boot_seconds"].as_f64().is_some(), "the time it took is learned: {host}");
    assert!(host["wake"]["packet_seconds_ago"].as_f64().is_some(), "{host}");
}

#[tokio::test]
async fn requests_arriving_while_a_host_wakes_join_the_same_wake_up() {
    let wake_on = free_udp();
    // Up after 2.5 s: the wake-up sends its three packets (one a second) before the host answers.
    let p40 = sleeper(&["big"], wake_on, Duration::from_millis(2500)).await;
    let base = p40.base_url();
    let llmux = std::sync::Arc::new(Llmux::start(&sleepy_config(&base, wake_on, "")).await);
    let mut requests = Vec::new();
    for _ in 0..4 {
        let llmux = llmux.clone();
        requests.push(tokio::spawn(async move { llmux.post("/v1/chat/completions", &chat_body("big", false)).await }));
    }
    eventually("/health/hosts shows the host waking", Duration::from_secs(10), async || {
        let hosts = llmux.get("/health/hosts").await.json();
        hosts["hosts"][0]["status"] == "waking" && hosts["hosts"][0]["wake"]["packet_seconds_ago"].is_number()
    })
    .await;
    for request in requests {
        let reply = request.await.unwrap();
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert!(
            reply.header("x-llmux-route").contains(&format!("woke {base}: answered")),
            "{}",
            reply.header("x-llmux-route")
        );
    }
    assert_eq!(p40.stats().wake_packets, 3, "one wake-up for four requests");
    assert_eq!(posts(&p40).len(), 4);
}

#[tokio::test]
async fn a_host_that_never_wakes_up_leaves_the_fallbacks_then_a_503_naming_it() {
    // Nothing listens on either engine port; the wake-up address is this test's own UDP socket.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let gone = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let listener = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let wake_on = listener.local_addr().unwrap();
    let yaml = format!(
        r#"
router_settings:
  fallbacks: [{{big: [backup]}}]
model_list:
  - model_name: big
    litellm_params: {{model: ollama_chat/big, api_base: "http://{dead}"}}
  - model_name: backup
    litellm_params: {{model: ollama_chat/big, api_base: "http://{gone}"}}
llmux_settings:
  hosts:
    http://{dead}:
      wake: {{mac: "aa:bb:cc:dd:ee:ff", address: "{wake_on}", boot_seconds: 2}}
"#
    );
    let llmux = Llmux::start(&yaml).await;
    let reply = llmux.post("/v1/chat/completions", &chat_body("big", false)).await;
    assert_eq!(reply.status, 503, "{}", reply.text());
    let message = reply.json()["error"]["message"].as_str().unwrap().to_owned();
    assert!(message.contains(&format!("http://{dead}")) && message.contains("did not answer"), "{message}");
    let route = reply.header("x-llmux-route");
    let (fallback, woke) = (route.find("fallback backup").unwrap(), route.find("did not answer").unwrap());
    assert!(fallback < woke, "the fallback is tried before the wake-up: {route}");
    let mut packets = 0;
    let mut buf = [0u8; 200];
    while let Ok((n, _)) = listener.try_recv_from(&mut buf) {
        assert_eq!((n, &buf[..6], &buf[6..12]), (102, &[0xFF; 6][..], &[0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff][..]));
        packets += 1;
    }
    assert!((1..=3).contains(&packets), "{packets}");
    let hosts = llmux.get("/health/hosts").await.json();
    assert_eq!(hosts["hosts"][0]["status"], "asleep", "{hosts}");
}

#[tokio::test]
async fn a_host_that_went_back_to_sleep_is_woken_again_by_the_next_request_that_needs_it() {
    let wake_on = free_udp();
    let p40 = sleeper(&["big"], wake_on, Duration::from_millis(300)).await;
    let base = p40.base_url();
    let llmux = Llmux::start(&sleepy_config(&base, wake_on, "")).await;
    let first = llmux.post("/v1/chat/completions", &chat_body("big", false)).await;
    assert_eq!(first.status, 200, "{}", first.text());
    let awake = llmux.post("/v1/chat/completions", &chat_body("big", false)).await;
    assert!(!awake.header("x-llmux-route").contains("woke"), "{}", awake.header("x-llmux-route"));

    // Its idle timer suspends it while llmux still holds a connection to it and believes it up.
    assert!(p40.sleep());
    eventually("the mock stops answering", Duration::from_secs(5), async || {
        tokio::net::TcpStream::connect(p40.addr()).await.is_err()
    })
    .await;
    let again = llmux.post("/v1/chat/completions", &chat_body("big", false)).await;
    assert_eq!(again.status, 200, "{}", again.text());
    assert!(
        again.header("x-llmux-route").contains(&format!("woke {base}: answered")),
        "{}",
        again.header("x-llmux-route")
    );
    assert_eq!(p40.stats().boots, 2, "asleep, woken, asleep again, woken again");
    assert_eq!(posts(&p40).len(), 3);
}
