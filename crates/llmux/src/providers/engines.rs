//! The engine table: the engine families ([`Adapter`]) and, per LiteLLM model prefix, which adapter speaks to
//! it, its default base URL and the variables its URL and key are read from. Data, apart from the code that
//! uses it.

use super::profile::{self, EngineProfile};
use super::{anthropic, azure, gemini, ollama, openai, Provider};

/// The engine families llmux can talk to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Adapter {
    /// Ollama's native API (`/api/chat`, `/api/generate`, `/api/embed`).
    Ollama {
        /// `ollama_chat/` (true) uses `/api/chat`; `ollama/` uses `/api/generate`.
        chat: bool,
    },
    /// Any engine that speaks OpenAI's API (vLLM, llama.cpp, LM Studio, llamafile, OpenAI and the
    /// OpenAI-compatible clouds).
    OpenAiCompatible,
    /// Anthropic's Messages API (`/v1/messages`).
    Anthropic,
    /// Azure OpenAI: OpenAI's API under a deployment path, the key as `api-key`.
    Azure,
    /// Google's Gemini API (AI Studio): `models/{model}:generateContent`, the key as `x-goog-api-key`.
    Gemini,
}

/// One row of the engine table: a LiteLLM model prefix and what it means.
#[derive(Debug)]
pub struct EngineSpec {
    /// The prefix before the first `/` in `litellm_params.model`.
    pub prefix: &'static str,
    /// The adapter that speaks to it.
    pub adapter: Adapter,
    /// Base URL when the deployment sets none and no variable below is set.
    pub default_api_base: Option<&'static str>,
    /// Environment variables read, in order, for the base URL when the deployment sets none.
    pub api_base_env: &'static [&'static str],
    /// Environment variables read, in order, for the key when the deployment sets none.
    pub api_key_env: &'static [&'static str],
    /// Key sent when neither the deployment nor the environment gives one (some engines require a header).
    pub default_api_key: Option<&'static str>,
    /// A hosted API rather than a machine of the lab: never probed in the background (a probe would cost
    /// requests against the account's rate limit and tell nothing about residency).
    pub cloud: bool,
    /// The engine on the hosts of its deployments; `None` for an API with no model list llmux reads.
    pub profile: Option<&'static EngineProfile>,
}

/// A local engine family's row.
const fn local(
    prefix: &'static str,
    adapter: Adapter,
    default_api_base: Option<&'static str>,
    api_base_env: &'static [&'static str],
    api_key_env: &'static [&'static str],
    default_api_key: Option<&'static str>,
    profile: &'static EngineProfile,
) -> EngineSpec {
    EngineSpec {
        prefix,
        adapter,
        default_api_base,
        api_base_env,
        api_key_env,
        default_api_key,
        cloud: false,
        profile: Some(profile),
    }
}

/// A hosted provider's row: its public endpoint and the variables LiteLLM reads. At another `api_base` (a
/// gateway, a self-hosted server) an OpenAI-compatible one is probed like any OpenAI-compatible engine.
const fn cloud(
    prefix: &'static str,
    adapter: Adapter,
    default_api_base: &'static str,
    api_base_env: &'static [&'static str],
    api_key_env: &'static [&'static str],
) -> EngineSpec {
    EngineSpec {
        prefix,
        adapter,
        default_api_base: Some(default_api_base),
        api_base_env,
        api_key_env,
        default_api_key: None,
        cloud: true,
        profile: match adapter {
            Adapter::OpenAiCompatible => Some(&profile::OPENAI_COMPATIBLE),
            _ => None,
        },
    }
}

/// The engines llmux knows, by LiteLLM prefix. The cloud rows carry LiteLLM's own defaults (base URL, then the
/// variables it reads in order), from `litellm/litellm_core_utils/get_llm_provider_logic.py`
/// (`_get_openai_compatible_provider_info`) and each provider's `litellm/llms/<provider>/chat/transformation.py`
/// (`BerriAI/litellm`, main of 2026-12), so a LiteLLM config that names only `model:` and a key variable works
/// unchanged. `api_base` in the config always wins.
pub const ENGINES: &[EngineSpec] = &[
    local(
        "ollama_chat",
        Adapter::Ollama { chat: true },
        Some("http://localhost:11434"),
        &["OLLAMA_API_BASE"],
        &["OLLAMA_API_KEY"],
        None,
        &profile::OLLAMA,
    ),
    local(
        "ollama",
        Adapter::Ollama { chat: false },
        Some("http://localhost:11434"),
        &["OLLAMA_API_BASE"],
        &["OLLAMA_API_KEY"],
        None,
        &profile::OLLAMA,
    ),
    local(
        "hosted_vllm",
        Adapter::OpenAiCompatible,
        None,
        &["HOSTED_VLLM_API_BASE"],
        &["HOSTED_VLLM_API_KEY"],
        Some("fake-api-key"),
        &profile::OPENAI_COMPATIBLE,
    ),
    local(
        "lm_studio",
        Adapter::OpenAiCompatible,
        None,
        &["LM_STUDIO_API_BASE"],
        &["LM_STUDIO_API_KEY"],
        Some("fake-api-key"),
        &profile::LM_STUDIO,
    ),
    local(
        "llamafile",
        Adapter::OpenAiCompatible,
        Some("http://127.0.0.1:8080/v1"),
        &["LLAMAFILE_API_BASE"],
        &["LLAMAFILE_API_KEY"],
        None,
        &profile::OPENAI_COMPATIBLE,
    ),
    cloud(
        "anthropic",
        Adapter::Anthropic,
        "https://api.anthropic.com",
        &["ANTHROPIC_API_BASE", "ANTHROPIC_BASE_URL"],
        &["ANTHROPIC_API_KEY"],
    ),
    // No default endpoint: every Azure resource has its own (`api_base` or `AZURE_API_BASE`).
    EngineSpec {
        prefix: "azure",
        adapter: Adapter::Azure,
        default_api_base: None,
        api_base_env: &["AZURE_API_BASE"],
        api_key_env: &["AZURE_OPENAI_API_KEY", "AZURE_API_KEY"],
        default_api_key: None,
        cloud: true,
        profile: None,
    },
    // LiteLLM's `litellm/llms/gemini/common_utils.py` (`GeminiModelInfo.get_api_base`, `get_api_key_from_env`).
    cloud(
        "gemini",
        Adapter::Gemini,
        "https://generativelanguage.googleapis.com",
        &["GEMINI_API_BASE"],
        &["GOOGLE_API_KEY", "GEMINI_API_KEY"],
    ),
    cloud(
        "openai",
        Adapter::OpenAiCompatible,
        "https://api.openai.com/v1",
        &["OPENAI_BASE_URL", "OPENAI_API_BASE"],
        &["OPENAI_API_KEY"],
    ),
    cloud(
        "openrouter",
        Adapter::OpenAiCompatible,
        "https://openrouter.ai/api/v1",
        &["OPENROUTER_API_BASE"],
        &["OPENROUTER_API_KEY", "OR_API_KEY"],
    ),
    cloud("groq", Adapter::OpenAiCompatible, "https://api.groq.com/openai/v1", &["GROQ_API_BASE"], &["GROQ_API_KEY"]),
    cloud(
        "deepseek",
        Adapter::OpenAiCompatible,
        "https://api.deepseek.com/beta",
        &["DEEPSEEK_API_BASE"],
        &["DEEPSEEK_API_KEY"],
    ),
    cloud(
        "mistral",
        Adapter::OpenAiCompatible,
        "https://api.mistral.ai/v1",
        &["MISTRAL_AZURE_API_BASE"],
        &["MISTRAL_AZURE_API_KEY", "MISTRAL_API_KEY"],
    ),
    cloud(
        "together_ai",
        Adapter::OpenAiCompatible,
        "https://api.together.xyz/v1",
        &["TOGETHER_AI_API_BASE"],
        &["TOGETHER_API_KEY", "TOGETHER_AI_API_KEY", "TOGETHERAI_API_KEY", "TOGETHER_AI_TOKEN"],
    ),
    cloud(
        "fireworks_ai",
        Adapter::OpenAiCompatible,
        "https://api.fireworks.ai/inference/v1",
        &["FIREWORKS_API_BASE"],
        &["FIREWORKS_API_KEY", "FIREWORKS_AI_API_KEY", "FIREWORKSAI_API_KEY", "FIREWORKS_AI_TOKEN"],
    ),
    cloud("xai", Adapter::OpenAiCompatible, "https://api.x.ai/v1", &["XAI_API_BASE"], &["XAI_API_KEY"]),
    cloud(
        "perplexity",
        Adapter::OpenAiCompatible,
        "https://api.perplexity.ai",
        &["PERPLEXITY_API_BASE"],
        &["PERPLEXITYAI_API_KEY", "PERPLEXITY_API_KEY"],
    ),
    cloud(
        "cerebras",
        Adapter::OpenAiCompatible,
        "https://api.cerebras.ai/v1",
        &["CEREBRAS_API_BASE"],
        &["CEREBRAS_API_KEY"],
    ),
    cloud(
        "nvidia_nim",
        Adapter::OpenAiCompatible,
        "https://integrate.api.nvidia.com/v1",
        &["NVIDIA_NIM_API_BASE"],
        &["NVIDIA_NIM_API_KEY"],
    ),
    cloud(
        "deepinfra",
        Adapter::OpenAiCompatible,
        "https://api.deepinfra.com/v1/openai",
        &["DEEPINFRA_API_BASE"],
        &["DEEPINFRA_API_KEY"],
    ),
];

/// Looks up an engine by prefix.
pub fn engine(prefix: &str) -> Option<&'static EngineSpec> {
    ENGINES.iter().find(|e| e.prefix == prefix)
}

impl Adapter {
    /// The provider implementation for this adapter.
    pub fn provider(self) -> &'static dyn Provider {
        match self {
            Adapter::Ollama { chat: true } => &ollama::Ollama { chat: true },
            Adapter::Ollama { chat: false } => &ollama::Ollama { chat: false },
            Adapter::OpenAiCompatible => &openai::OpenAiCompatible,
            Adapter::Anthropic => &anthropic::Anthropic,
            Adapter::Azure => &azure::Azure,
            Adapter::Gemini => &gemini::Gemini,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::openai::Operation;
    use crate::providers::Endpoint;

    /// A LiteLLM config naming only `model:` and a key variable reaches each provider's public endpoint with that
    /// key; `api_base` overrides; the public endpoints are not probed, a local one is.
    #[test]
    fn cloud_presets_fill_in_base_url_and_key() {
        let yaml = "model_list:
  - {model_name: a, litellm_params: {model: groq/llama-3.3-70b-versatile}}
  - {model_name: b, litellm_params: {model: together_ai/meta-llama/Llama-3-70b, api_key: sk-inline}}
  - {model_name: c, litellm_params: {model: anthropic/claude-sonnet-4-5}}
  - {model_name: d, litellm_params: {model: mistral/mistral-large-latest, api_base: 'http://127.0.0.1:9/v1'}}
  - {model_name: e, litellm_params: {model: fireworks_ai/accounts/fireworks/models/x}}
  - {model_name: f, litellm_params: {model: gemini/gemini-2.5-flash}}
";
        let env = |name: &str| match name {
            "GROQ_API_KEY" => Some("gsk-from-env".to_owned()),
            "TOGETHER_API_KEY" => Some("not-used".to_owned()),
            "ANTHROPIC_API_KEY" => Some("sk-ant-env".to_owned()),
            "MISTRAL_API_KEY" => Some("mistral-env".to_owned()),
            "FIREWORKS_AI_API_KEY" => Some("fw-second-variable".to_owned()),
            "GEMINI_API_KEY" => Some("gemini-env".to_owned()),
            _ => None,
        };
        let (config, _) = crate::config::load_str(yaml, &env).unwrap();
        let engine = |i: usize| config.deployments[i].engine().unwrap();
        let key = |i: usize| engine(i).api_key.as_ref().map(|k| k.expose().to_owned());
        assert_eq!(
            engine(0).uri(Endpoint::OpenAi(Operation::Chat)).unwrap(),
            "https://api.groq.com/openai/v1/chat/completions"
        );
        assert_eq!(key(0).as_deref(), Some("gsk-from-env"));
        assert_eq!(engine(1).api_base, "https://api.together.xyz/v1");
        assert_eq!(engine(1).upstream_model, "meta-llama/Llama-3-70b");
        assert_eq!(key(1).as_deref(), Some("sk-inline"), "the config's key wins over the variable");
        assert_eq!(engine(2).uri(Endpoint::AnthropicMessages).unwrap(), "https://api.anthropic.com/v1/messages");
        assert_eq!(engine(2).adapter(), Adapter::Anthropic);
        assert_eq!(engine(3).api_base, "http://127.0.0.1:9/v1");
        assert_eq!(key(3).as_deref(), Some("mistral-env"));
        assert_eq!(key(4).as_deref(), Some("fw-second-variable"), "LiteLLM's later variables are read too");
        assert_eq!((engine(5).adapter(), key(5).as_deref()), (Adapter::Gemini, Some("gemini-env")));
        assert_eq!(engine(5).api_base, "https://generativelanguage.googleapis.com");
        let probed = |i: usize| !config.hosts[config.deployments[i].host.unwrap()].probe_disabled;
        assert!(!probed(0) && !probed(2) && !probed(5), "public endpoints are not probed");
        assert!(probed(3), "an OpenAI-compatible api_base of one's own is");
        for spec in ENGINES.iter().filter(|e| e.cloud) {
            // Azure has none: every resource has its own endpoint.
            let base = spec.default_api_base.unwrap_or(if spec.prefix == "azure" { "https://" } else { "" });
            assert!(base.starts_with("https://"), "{}: {base}", spec.prefix);
            assert!(!spec.api_key_env.is_empty(), "{}", spec.prefix);
        }
    }
}
