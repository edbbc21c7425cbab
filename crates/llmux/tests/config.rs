//! The config loader against the real home-lab file and broken copies of it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed step is a failed test

use llmux::config::{load, load_str, routing_table, Severity};

const HOMELAB: &str = include_str!("../../../examples/homelab.yaml");

#[test]
fn homelab_loads_unchanged_with_its_groups_aliases_and_orders() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/homelab.yaml");
    let (config, diags) = load(&path).expect("homelab.yaml must load");
    assert_eq!(config.deployments.len(), 8);
    assert_eq!(
        config.group_order,
        ["nemotron-3-nano:4b", "nemotron-cascade-2:30b", "qwen3.5:9b", "embeddinggemma", "smart-router"]
    );
    let fast = config.resolve("reasoning_fast").unwrap();
    assert_eq!(fast.group, "nemotron-3-nano:4b");
    assert_eq!(fast.deployments, vec![0, 1]);
    assert_eq!(config.deployments[3].order, Some(1));
    assert_eq!(config.router.default_fallbacks, ["nemotron-cascade-2:30b"]);
    assert_eq!(config.router.fallbacks.len(), 5);
    // The misplaced health-check keys are honoured and pointed out.
    assert!(config.general.background_health_checks);
    assert_eq!(config.general.health_check_interval, 900);
    let warned = |path: &str| diags.warnings().any(|d| d.path == path);
    assert!(warned("litellm_settings.enable_background_health_checks"));
    assert!(warned("litellm_settings.health_check_interval"));
    assert!(!warned("litellm_settings.check_provider_endpoint"), "discovery for wildcard groups is acted on");
    assert!(config.general.check_provider_endpoint);
    assert!(!warned("model_list[7].litellm_params.complexity_router_config"), "the complexity router is acted on");
    assert!(diags.errors().next().is_none());
}

#[test]
fn routing_table_shows_each_group_with_aliases_and_tiers() {
    let (config, _) = load_str(HOMELAB, &|_| None).unwrap();
    let table = routing_table(&config);
    assert!(table.contains("nemotron-3-nano:4b  (aliases: reasoning_fast, tools_fast)"), "{table}");
    let star = table.find("http://star:11434").unwrap();
    let cranberry = table.find("https://ollama").unwrap();
    assert!(star < cranberry, "order 1 is listed before order 2:\n{table}");
    assert!(table.contains("reasoning_fast -> reasoning_slow, coding"));
    // One host per Ollama server: banana's three deployments share one probe and one health state.
    assert!(table.contains("http://banana:11434  ollama  model_list[1], model_list[4], model_list[5]"), "{table}");
    // LiteLLM's default (enable_health_check_routing off): only unreachable hosts leave routing.
    assert!(table.contains("health probes every 900 s (unreachable hosts out, HTTP errors reported)"), "{table}");
}

#[test]
fn every_problem_is_listed_with_its_path() {
    let broken = r#"
general_settings:
  master_key: os.environ/LLMUX_TEST_UNSET_KEY
router_settings:
  num_retries: many
  model_group_alias:
    fast: no-such-group
  fallbacks:
    - "a": ["ghost"]
    - "a": "b"
model_list:
  - model_name: a
    litellm_params:
      api_base: http://h:1
  - model_name: b
    litellm_params:
      model: ollamma/llama3
  - model_name: c
    litellm_params:
      model: ollama_chat/llama3
      order: first
      api_base: ftp://x
  - litellm_params: {model: openai/x, api_base: "http://h:1/v1"}
"#;
    let diags = load_str(broken, &|_| None).unwrap_err();
    let errors: Vec<(String, String)> = diags.errors().map(|d| (d.path.clone(), d.message.clone())).collect();
    let has = |path: &str, needle: &str| errors.iter().any(|(p, m)| p == path && m.contains(needle));
    assert!(has("general_settings.master_key", "LLMUX_TEST_UNSET_KEY"), "{errors:#?}");
    assert!(has("router_settings.num_retries", "integer"), "{errors:#?}");
    assert!(has("router_settings.model_group_alias.fast", "no-such-group"), "{errors:#?}");
    assert!(has("router_settings.fallbacks[0].a[0]", "ghost"), "{errors:#?}");
    assert!(has("router_settings.fallbacks[1].a", "list"), "{errors:#?}");
    assert!(has("model_list[0].litellm_params.model", "missing"), "{errors:#?}");
    assert!(has("model_list[1].litellm_params.model", "ollamma"), "{errors:#?}");
    assert!(has("model_list[2].litellm_params.order", "integer"), "{errors:#?}");
    assert!(has("model_list[2].litellm_params.api_base", "ftp://x"), "{errors:#?}");
    assert!(has("model_list[3].model_name", "missing"), "{errors:#?}");
    assert!(diags.iter().all(|d| d.severity == Severity::Warning || !d.message.is_empty()));
}

#[test]
fn garbage_yaml_is_an_error_not_a_panic() {
    for text in [
        "model_list: [",
        "- just\n- a list\n",
        "model_list: 5",
        "model_list: {a: 1}",
        "model_list: [{model_name: a, litellm_params: [1]}]",
        "\u{0}\u{1}",
    ] {
        assert!(load_str(text, &|_| None).is_err(), "{text:?} should not load");
    }
}

#[test]
fn empty_file_loads_with_a_warning() {
    let (config, diags) = load_str("", &|_| None).unwrap();
    assert!(config.deployments.is_empty());
    assert!(diags.warnings().any(|d| d.path == "model_list"));
}

#[test]
fn complexity_router_targets_must_exist() {
    let broken = HOMELAB.replace("COMPLEX: reasoning_slow", "COMPLEX: reasoning_slowww");
    let diags = load_str(&broken, &|_| None).unwrap_err();
    let error = diags.errors().next().unwrap();
    assert!(error.path.starts_with("model_list[7].litellm_params.complexity_router_config"), "{error}");
    assert!(error.message.contains("reasoning_slowww"), "{error}");
}

#[test]
fn homelab_smart_router_sends_commands_fast_and_analysis_slow() {
    let (config, _) = load_str(HOMELAB, &|_| None).unwrap();
    let target = llmux::router::resolve(&config, llmux::protocol::openai::Operation::Chat, "smart-router").unwrap();
    let router = target.classifier.expect("smart-router is a complexity router");
    let ask = |text: &str| router.classify(&[serde_json::json!({"role": "user", "content": text})]);
    let mut rng = fastrand::Rng::with_seed(1);
    let light = ask("turn off the kitchen light");
    assert_eq!(router.route(&light, &mut rng), Some("reasoning_fast"));
    let analysis = ask("Think step by step and analyze this: compare and contrast the pros and cons of our distributed database architecture, then deduce the best design.");
    assert_eq!(router.route(&analysis, &mut rng), Some("reasoning_slow"));
}

#[test]
fn host_limits_are_read_from_llmux_settings() {
    let yaml = r#"
model_list:
  - model_name: fast
    litellm_params: {model: ollama_chat/qwen3:4b, api_base: "http://Star:11434"}
  - model_name: slow
    litellm_params: {model: ollama_chat/qwen3:30b, api_base: "http://star:11434", keep_alive: 10m}
  - model_name: other
    litellm_params: {model: ollama_chat/qwen3:4b, api_base: "http://banana:11434"}
llmux_settings:
  hosts:
    "http://star:11434/": {memory_budget: 84GB, max_loaded_models: 3, pinned: ["qwen3:4b", "qwen3:30b", "gone:1b"]}
    "http://banana:11434": {memory_budget: 14 GiB}
    "http://nowhere:1": {memory_budget: 1GB}
"#;
    let (config, diags) = load_str(yaml, &|_| None).unwrap();
    let star = &config.hosts[0].limits;
    assert_eq!(star.memory_budget, Some(84_000_000_000));
    assert_eq!(star.max_loaded_models, Some(3));
    assert_eq!(star.pinned, ["qwen3:4b", "qwen3:30b", "gone:1b"]);
    assert_eq!(config.hosts[1].limits.memory_budget, Some(14 * 1024 * 1024 * 1024));
    let warned = |path: &str| diags.warnings().any(|d| d.path == path);
    assert!(warned("llmux_settings.hosts.http://star:11434/.pinned[2]"), "no deployment serves gone:1b");
    assert!(warned("llmux_settings.hosts.http://nowhere:1"));
    // A pinned model is kept loaded on Ollama unless the deployment says otherwise.
    let keep_alive = |i: usize| config.deployments[i].engine().unwrap().keep_alive.clone();
    assert_eq!(keep_alive(0), Some(serde_json::json!(-1)));
    assert_eq!(keep_alive(1), Some(serde_json::json!("10m")));
    assert_eq!(keep_alive(2), None, "pinned on star, not on banana");

    let bad = "model_list:\n  - model_name: a\n    litellm_params: {model: ollama_chat/a, api_base: 'http://h:1'}\nllmux_settings:\n  hosts:\n    'http://h:1': {memory_budget: lots}\n";
    let errors = load_str(bad, &|_| None).unwrap_err().to_string();
    assert!(errors.contains("llmux_settings.hosts.http://h:1.memory_budget"), "{errors}");
}

#[test]
fn unsendable_keys_headers_and_nameless_models_are_errors_at_load() {
    let broken = "
model_list:
  - model_name: a
    litellm_params: {model: openai/x, api_base: \"http://h:1/v1\", api_key: \"sk-abc\\n\"}
  - model_name: b
    litellm_params: {model: ollama/, api_base: \"http://h:1\"}
  - model_name: c
    litellm_params: {model: ollama_chat/, api_base: \"http://h:1\"}
  - model_name: d
    litellm_params: {model: openai/x, api_base: \"http://h:1/v1\", extra_headers: {X-Ok: fine, X-Bad: \"a\\r\\nb\"}}
  - model_name: e
    litellm_params: {model: openai/x, api_base: \"ftp://me:pw-secret@h:1\"}
";
    let diags = load_str(broken, &|_| None).unwrap_err();
    let errors: Vec<(String, String)> = diags.errors().map(|d| (d.path.clone(), d.message.clone())).collect();
    let has = |path: &str, needle: &str| errors.iter().any(|(p, m)| p == path && m.contains(needle));
    assert!(has("model_list[0].litellm_params.api_key", "HTTP header"), "{errors:#?}");
    assert!(has("model_list[1].litellm_params.model", "empty"), "{errors:#?}");
    assert!(has("model_list[2].litellm_params.model", "empty"), "{errors:#?}");
    assert!(has("model_list[3].litellm_params.extra_headers.X-Bad", "HTTP header"), "{errors:#?}");
    assert!(!errors.iter().any(|(p, _)| p.ends_with("X-Ok")), "{errors:#?}");
    assert!(has("model_list[4].litellm_params.api_base", "ftp://***@h:1"), "{errors:#?}");
    assert!(!format!("{errors:?}").contains("sk-abc") && !format!("{errors:?}").contains("pw-secret"));
}
