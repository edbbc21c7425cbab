//! Engine profiles: what llmux knows about an engine running on a host, beyond its wire format (which is the
//! [`super::Adapter`]'s). One row per engine; the [`super::ENGINES`] rows name the profile of the hosts their
//! deployments run on, and a probe that recognises the engine names it from here too. Health probes, the
//! re-probe after a load, preloading and `/health/hosts` read these fields instead of asking which engine it is.

use serde::{Serialize, Serializer};

/// How a host's models and residency are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ProbeKind {
    /// `/models` of an OpenAI-compatible API (llama.cpp's `meta` and `/slots` where it answers them).
    OpenAiModels,
    /// LM Studio's own model list, which tells what is loaded (falling back to `/models`).
    LmStudio,
    /// Ollama's `/api/tags`, `/api/ps` and `/api/show`.
    Ollama,
}

/// The API a host is probed through, when its deployments speak several (Ollama serves `/api` and `/v1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ProbeApi {
    /// The OpenAI-compatible `api_base` (`…/v1`).
    OpenAi,
    /// Ollama's native API: it tells more, so it wins on a host that serves both.
    Ollama,
}

/// One engine.
#[derive(Debug, PartialEq, Eq)]
pub struct EngineProfile {
    /// What `/health/hosts` and the dashboard call it.
    pub name: &'static str,
    /// Its API family, as `llmux check` lists hosts.
    pub api_name: &'static str,
    /// Which `api_base` of the host the probe uses.
    pub api: ProbeApi,
    /// How it is probed; on a host with deployments of several engines, the highest kind decides.
    pub probe: ProbeKind,
    /// Its probe tells which models are loaded, so a probe right after llmux set off a load shows what it
    /// evicted.
    pub reports_residency: bool,
    /// A model can be loaded without generating (pinned models are preloaded at start-up).
    pub preloads: bool,
    /// The format of its model files, where it is one (`/api/show`'s `details.format`).
    pub model_format: Option<&'static str>,
    /// A tag the engine adds to a model name given without one (`llama3` is `llama3:latest`).
    pub implied_tag: Option<&'static str>,
    /// Prompts it keeps beyond what its slots hold and restores into a slot when their conversation returns.
    pub keeps_prompts: KeptPrompts,
}

/// What an engine keeps of earlier prompts once a slot has moved on to another conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct KeptPrompts {
    /// Prompts remembered per deployment (0: only what the slots hold now).
    pub prompts: usize,
    /// Estimated tokens of them all, the oldest forgotten first.
    pub tokens: u64,
}

/// Nothing beyond the slots (Ollama's runner, LM Studio, an engine llmux knows nothing about).
pub const SLOTS_ONLY: KeptPrompts = KeptPrompts { prompts: 0, tokens: 0 };

impl Serialize for EngineProfile {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name)
    }
}

/// Ollama.
pub const OLLAMA: EngineProfile = EngineProfile {
    name: "ollama",
    api_name: "ollama",
    api: ProbeApi::Ollama,
    probe: ProbeKind::Ollama,
    reports_residency: true,
    preloads: true,
    model_format: Some("gguf"),
    implied_tag: Some(":latest"),
    keeps_prompts: SLOTS_ONLY,
};

/// LM Studio.
pub const LM_STUDIO: EngineProfile = EngineProfile {
    name: "lm studio",
    api_name: "openai-compatible",
    api: ProbeApi::OpenAi,
    probe: ProbeKind::LmStudio,
    reports_residency: true,
    preloads: false,
    model_format: None,
    implied_tag: None,
    keeps_prompts: SLOTS_ONLY,
};

/// llama.cpp's `llama-server`: an OpenAI-compatible host its probe recognises by the `meta` of its models.
pub const LLAMA_CPP: EngineProfile = EngineProfile {
    name: "llama.cpp",
    api_name: "openai-compatible",
    api: ProbeApi::OpenAi,
    probe: ProbeKind::OpenAiModels,
    reports_residency: false,
    preloads: false,
    model_format: Some("gguf"),
    implied_tag: None,
    // Its host-memory prompt cache (`--cache-ram`, 8 GiB by default): a 30B model's KV cache takes ~100 kB a
    // token, so the default holds some 80k tokens of such a model; a small model's, many more.
    keeps_prompts: KeptPrompts { prompts: 32, tokens: 131_072 },
};

/// Any other engine with an OpenAI-compatible API (vLLM, llamafile, a provider at a custom `api_base`).
pub const OPENAI_COMPATIBLE: EngineProfile = EngineProfile {
    name: "openai-compatible",
    api_name: "openai-compatible",
    api: ProbeApi::OpenAi,
    probe: ProbeKind::OpenAiModels,
    reports_residency: false,
    preloads: false,
    model_format: None,
    implied_tag: None,
    keeps_prompts: SLOTS_ONLY,
};

/// Every engine profile.
pub const PROFILES: [&EngineProfile; 4] = [&OLLAMA, &LM_STUDIO, &LLAMA_CPP, &OPENAI_COMPATIBLE];

/// Whether two engine model names are one model: equal, or equal once a tag an engine implies is dropped from
/// both (`llama3` and `llama3:latest`).
pub fn same_model(a: &str, b: &str) -> bool {
    a == b
        || PROFILES
            .iter()
            .filter_map(|p| p.implied_tag)
            .any(|tag| a.strip_suffix(tag).unwrap_or(a) == b.strip_suffix(tag).unwrap_or(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_without_the_implied_tag_is_the_same_model() {
        assert!(same_model("llama3", "llama3:latest") && same_model("qwen3:8b", "qwen3:8b"));
        assert!(!same_model("qwen3:8b", "qwen3") && !same_model("a", "b"));
    }

    #[test]
    fn a_host_is_probed_as_the_engine_that_tells_the_most_through_the_api_that_tells_the_most() {
        let host = |models: &[(&str, &str)]| {
            let mut yaml = String::from("model_list:\n");
            for (model, base) in models {
                yaml.push_str(&format!(
                    "  - model_name: g\n    litellm_params: {{model: {model}, api_base: \"{base}\"}}\n"
                ));
            }
            let config = crate::config::load_str(&yaml, &|_| None).unwrap().0;
            let h = &config.hosts[0];
            (h.profile.name, h.probe_base.clone().unwrap_or_default())
        };
        let lm = host(&[("openai/a", "http://h:1/v1"), ("lm_studio/b", "http://h:1/api/v1")]);
        assert_eq!(lm, ("lm studio", "http://h:1/v1".into()), "LM Studio's list, at the first OpenAI base");
        let ollama = host(&[("openai/a", "http://h:1/v1"), ("ollama_chat/b", "http://h:1")]);
        assert_eq!(ollama, ("ollama", "http://h:1".into()), "Ollama's own API wins");
        let plain = host(&[("hosted_vllm/a", "http://h:1/v1"), ("anthropic/b", "http://h:1")]);
        assert_eq!(plain, ("openai-compatible", "http://h:1/v1".into()));
        assert_eq!(host(&[("anthropic/b", "http://h:1")]), ("openai-compatible", String::new()), "nothing to probe");
    }
}
