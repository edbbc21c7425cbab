//! The YAML reader (serde-saphyr): what LiteLLM's loader (PyYAML `safe_load`) accepts reads the same, and a
//! hostile file is an error rather than an out-of-memory.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed step is a failed test

use llmux::config::load_str;

const DEPLOYMENT: &str =
    "model_list:\n  - model_name: m\n    litellm_params: {model: ollama/m, api_base: 'http://127.0.0.1:9'}\n";

#[test]
fn a_billion_laughs_file_is_refused_not_expanded() {
    // Nine levels of nine aliases: 9^9 (387 million) strings if every alias were copied out.
    let mut yaml = String::from(DEPLOYMENT);
    yaml.push_str("a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    for i in 1..=9 {
        let p = i - 1;
        yaml.push_str(&format!("a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"));
    }
    yaml.push_str("router_settings: {model_group_alias: *a9}\n");
    let diags = load_str(&yaml, &|_| None).unwrap_err();
    assert!(diags.to_string().contains("invalid YAML"), "{diags}");
}

#[test]
fn anchors_merge_keys_and_scalars_read_as_litellms_loader_reads_them() {
    let yaml = r#"
base: &base {model: ollama/m, api_base: 'http://127.0.0.1:9', rpm: 10, api_key: os.environ/K}
model_list:
  - model_name: m
    litellm_params:
      <<: *base
      tpm: 1000
      weight: 2
  - model_name: '1.0'
    litellm_params: *base
router_settings: {num_retries: 3, timeout: 0.5, cooldown_time: ~}
"#;
    let env = |name: &str| (name == "K").then(|| "sk-k".to_owned());
    let (config, _) = load_str(yaml, &env).unwrap_or_else(|d| panic!("{d}"));
    let d = &config.deployments[0];
    assert_eq!((d.rpm, d.tpm, d.weight), (Some(10.0), Some(1000.0), Some(2.0)), "merge key and local keys both read");
    assert_eq!(config.deployments[1].model_name, "1.0", "a quoted number stays a string");
    assert_eq!(config.router.num_retries, 3);
}

#[test]
fn an_empty_or_comment_only_file_has_no_deployments_and_a_list_is_no_config() {
    let (config, _) = load_str("# nothing yet\n", &|_| None).unwrap();
    assert!(config.deployments.is_empty());
    let (config, _) = load_str("", &|_| None).unwrap();
    assert!(config.deployments.is_empty());
    let diags = load_str("[1, 2]\n", &|_| None).unwrap_err();
    assert!(diags.to_string().contains("top level must be a mapping"), "{diags}");
    let diags = load_str("model_list: [\n", &|_| None).unwrap_err();
    assert!(diags.to_string().contains("invalid YAML"), "{diags}");
}
