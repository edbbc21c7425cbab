//! The configuration: LiteLLM's proxy `config.yaml`, read unchanged, validated once into an immutable
//! [`Config`] snapshot.
//!
//! Where things are:
//! - `load`: every file read (the config, its `include`s, semantic routers' route files) and the environment
//!   (`environment_variables`, `os.environ/` references), so the reload watcher sees every file that matters;
//! - `validate`: the tree → [`Config`], calling one file per section in `sections/` (`model_list`, `engine` for
//!   a deployment's `litellm_params`, `router_settings`, `general_settings`, `litellm_settings`,
//!   `llmux_settings`, `hosts`, `wake`, `telemetry`, `auto_router`);
//! - `reader`: the one path-aware reader those sections and the strategy routers share, so a problem reads the
//!   same wherever it is found;
//! - `defaults`: every default a key takes, with where it comes from;
//! - the validated types: [`Config`] here, [`Deployment`] and its [`Target`] in `deployment`, the settings
//!   sections in `settings`; [`Diagnostics`] carries warnings (keys llmux does not act on yet, misplaced keys) and
//!   errors to the caller; `table` renders the routing table `llmux check` prints.

pub(crate) mod defaults;
mod deployment;
mod diag;
mod load;
pub(crate) mod reader;
mod sections;
mod settings;
mod table;
mod validate;

use std::collections::HashMap;
use std::time::Duration;

pub use deployment::{Deployment, EngineTarget, GenerationProbe, Target};
pub use diag::{Diagnostic, Diagnostics, Severity};
pub use load::{load, load_str, load_tracked, process_env};
pub use sections::telemetry::Telemetry;
pub use sections::wake::{parse_mac, Wake};
pub use settings::{
    Alias, ErrorClass, GeneralSettings, ImageFetch, RedisSettings, RouterSettings, ServerLimits, Strategy,
};
pub use table::routing_table;

use crate::providers::profile::EngineProfile;

/// A secret value (an API key). Its `Debug` never prints the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(value: String) -> Self {
        Secret(value)
    }
    /// The secret itself, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// The validated configuration.
#[derive(Debug)]
pub struct Config {
    /// Every `model_list` entry, in file order; the index is the deployment's handle in routing state.
    pub deployments: Vec<Deployment>,
    /// Model groups by `model_name`, each listing its deployments' indices in file order.
    pub groups: HashMap<String, Vec<usize>>,
    /// Group names in file order (for `/v1/models`).
    pub group_order: Vec<String>,
    /// `router_settings.model_group_alias`.
    pub aliases: HashMap<String, Alias>,
    /// Alias names in file order.
    pub alias_order: Vec<String>,
    /// Deployment index by `model_info.id`.
    pub ids: HashMap<String, usize>,
    /// First deployment index by `litellm_params.model` (LiteLLM accepts it as a model name).
    pub models: HashMap<String, usize>,
    /// Engine hosts, each deployment's `host` indexes this.
    pub hosts: Vec<Host>,
    /// Wildcard `model_name`s (`ollama/*`, `*`), most specific first.
    pub patterns: Vec<Pattern>,
    /// Router behaviour.
    pub router: RouterSettings,
    /// Proxy behaviour.
    pub general: GeneralSettings,
    /// `llmux_settings.images`: fetching remote images for engines that only take inline ones.
    pub images: ImageFetch,
    /// `llmux_settings.ollama_api.require_key` (default true): whether Ollama's routes (`/api/*`) need the
    /// master key. Home Assistant's and Frigate's Ollama clients cannot send one; set it to false for them.
    pub ollama_requires_key: bool,
    /// `llmux_settings.server` and `general_settings.max_response_size_mb`: what one client connection or one
    /// engine answer may cost llmux.
    pub limits: ServerLimits,
    /// `/metrics` and who may read it.
    pub telemetry: Telemetry,
    /// `llmux_settings.warmup`: learn each group's daily pattern and wake and preload ahead of it (read at
    /// start-up).
    pub warmup: bool,
    /// `llmux_settings.groups.<name>.priority`, by group or alias name: the default `priority` of a request for
    /// it in the queue for a free slot (lower first).
    pub priorities: HashMap<String, i64>,
}

/// A wildcard `model_name`, matched as LiteLLM does: each `*` captures any text, anchored at the start only.
#[derive(Debug, Clone)]
pub struct Pattern {
    /// The `model_name`, e.g. `ollama/*`.
    pub group: String,
    regex: regex::Regex,
}

impl Pattern {
    /// The pattern of `model_name`, when it has a `*`.
    pub fn new(model_name: &str) -> Option<Pattern> {
        if !model_name.contains('*') {
            return None;
        }
        let source = format!("^{}", regex::escape(model_name).replace(r"\*", "(.*)"));
        let regex = regex::Regex::new(&source).ok()?;
        Some(Pattern { group: model_name.to_owned(), regex })
    }

    /// The texts the `*`s stand for in `name`, when it matches.
    pub fn captures<'n>(&self, name: &'n str) -> Option<Vec<&'n str>> {
        let caps = self.regex.captures(name)?;
        Some(caps.iter().skip(1).map(|m| m.map_or("", |m| m.as_str())).collect())
    }

    /// `template` (e.g. the deployment's `ollama/*`) with each `*` replaced by what it captured in `name`; the
    /// name itself when the counts differ, as LiteLLM.
    pub fn expand(&self, template: &str, name: &str) -> Option<String> {
        let caps = self.captures(name)?;
        if template.matches('*').count() != caps.len() {
            return Some(name.to_owned());
        }
        let mut out = String::with_capacity(template.len() + name.len());
        let mut caps = caps.into_iter();
        for (i, part) in template.split('*').enumerate() {
            if i > 0 {
                out.push_str(caps.next().unwrap_or(""));
            }
            out.push_str(part);
        }
        Some(out)
    }
}

/// One engine host (scheme + authority of the deployments' `api_base`): probed once for all its deployments,
/// and marked down for all of them when a connection to it fails.
#[derive(Debug, Clone)]
pub struct Host {
    /// `scheme://host:port`.
    pub origin: String,
    /// The engine its deployments name (the one probed the most thoroughly, when they name several): how it is
    /// probed, whether it tells what is loaded, whether it preloads.
    pub profile: &'static EngineProfile,
    /// The `api_base` probes use (an Ollama deployment's, else the first probed OpenAI-compatible one's); `None`
    /// when no deployment on the host has a model list llmux reads.
    pub probe_base: Option<String>,
    /// The key sent with probes (the first deployment's).
    pub api_key: Option<Secret>,
    /// The first deployment's `user:password` from its `api_base`, sent with probes as basic auth.
    pub basic_auth: Option<Secret>,
    /// Probe timeout (`model_info.health_check_timeout`, the largest on the host; default 10 s).
    pub probe_timeout: Duration,
    /// Every deployment was opted out with `disable_background_health_check`.
    pub probe_disabled: bool,
    /// The deployments on this host.
    pub deployments: Vec<usize>,
    /// What the owner declared about the host's memory (`llmux_settings.hosts`).
    pub limits: HostLimits,
    /// How to wake it when it sleeps (`llmux_settings.hosts.<api_base>.wake`).
    pub wake: Option<Wake>,
}

impl Host {
    /// The `Authorization` value probes send (marked sensitive): basic auth from the `api_base`, else the key as
    /// a bearer token, as requests to the engine do.
    pub fn authorization(&self) -> Option<http::HeaderValue> {
        let text = match (&self.basic_auth, &self.api_key) {
            (Some(user), _) => {
                use base64::Engine as _;
                format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(user.expose()))
            }
            (None, Some(key)) => format!("Bearer {}", key.expose()),
            (None, None) => return None,
        };
        let mut value = http::HeaderValue::from_str(&text).ok()?;
        value.set_sensitive(true);
        Some(value)
    }
}

/// `llmux_settings.hosts.<api_base>`: how many models the host holds at once, and which must stay loaded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostLimits {
    /// Bytes of memory for models (`memory_budget: 84GB`).
    pub memory_budget: Option<u64>,
    /// Models loaded at once (Ollama's `OLLAMA_MAX_LOADED_MODELS`).
    pub max_loaded_models: Option<u32>,
    /// Engine model names that must not be evicted (`pinned: [qwen3:8b]`); preloaded at start-up on Ollama.
    pub pinned: Vec<String>,
}

/// Splits `user:password@` off a URL: the URL without it, and the credentials percent-decoded (`None` when the
/// URL has none). llmux sends them as basic auth, as LiteLLM's HTTP client does, and never prints them.
pub fn split_credentials(url: &str) -> (String, Option<String>) {
    let Some((scheme, rest)) = url.split_once("://") else { return (url.to_owned(), None) };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let Some((userinfo, host)) = authority.rsplit_once('@') else { return (url.to_owned(), None) };
    let decoded = percent_encoding::percent_decode_str(userinfo).decode_utf8_lossy().into_owned();
    (format!("{scheme}://{host}{tail}"), Some(decoded))
}

/// `scheme://host:port` of a URL, lower-cased, as [`EngineTarget::origin`] writes it.
/// Credentials and the query are not part of it.
pub fn origin_of(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("http", url));
    let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    let authority = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    format!("{}://{}", scheme.to_ascii_lowercase(), authority.to_ascii_lowercase())
}

impl Config {
    /// Resolves a requested name to its group's deployment indices: an alias (one hop), a group name, a
    /// deployment id, or a deployment's `litellm_params.model`, in LiteLLM's order. Hash lookups only: the cost
    /// does not grow with the number of deployments.
    pub fn resolve(&self, requested: &str) -> Option<Resolved<'_>> {
        let by_name = |name: &str| {
            if let Some((group, members)) = self.groups.get_key_value(name) {
                return Some(Resolved { group, deployments: members });
            }
            let d = &self.deployments[*self.ids.get(name)?];
            Some(Resolved { group: &d.model_name, deployments: std::slice::from_ref(&d.index) })
        };
        let by_pattern = |name: &str| {
            let pattern = self.patterns.iter().find(|p| p.regex.is_match(name))?;
            let (group, members) = self.groups.get_key_value(&pattern.group)?;
            Some(Resolved { group, deployments: members })
        };
        if let Some(alias) = self.aliases.get(requested) {
            if let Some(found) = by_name(&alias.target).or_else(|| by_pattern(&alias.target)) {
                return Some(found);
            }
        }
        by_name(requested)
            .or_else(|| {
                let d = &self.deployments[*self.models.get(requested)?];
                Some(Resolved { group: &d.model_name, deployments: std::slice::from_ref(&d.index) })
            })
            .or_else(|| by_pattern(requested))
    }

    /// The model name engine `d` is asked for when a client requested `requested`: the configured one, or for a
    /// wildcard deployment (`model_name: ollama/*`, `model: ollama/*`) the configured one with each `*` filled in
    /// from the requested name (`ollama/qwen3:8b` → `qwen3:8b`). `None` when `d` is a wildcard deployment and
    /// `requested` does not match its pattern (it was asked for by id).
    pub fn engine_model<'c>(&'c self, d: &'c Deployment, requested: &str) -> Option<std::borrow::Cow<'c, str>> {
        let engine = d.engine()?;
        if !engine.upstream_model.contains('*') {
            return Some(std::borrow::Cow::Borrowed(&engine.upstream_model));
        }
        let name = self.aliases.get(requested).map_or(requested, |a| a.target.as_str());
        let pattern = self.patterns.iter().find(|p| p.group == d.model_name)?;
        // `ollama/` against `ollama/*` fills in nothing: no engine has a model without a name.
        pattern.expand(&engine.upstream_model, name).filter(|m| !m.trim().is_empty()).map(std::borrow::Cow::Owned)
    }
}

/// A requested name resolved to a group.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved<'a> {
    /// The group's `model_name`.
    pub group: &'a str,
    /// Deployment indices eligible for this request.
    pub deployments: &'a [usize],
}

#[cfg(test)]
mod tests {
    use super::{origin_of, split_credentials, Pattern};

    #[test]
    fn credentials_come_out_of_urls_and_never_into_hosts() {
        assert_eq!(
            split_credentials("http://me:p%40ss@gpu:11434/v1?x=1"),
            ("http://gpu:11434/v1?x=1".to_owned(), Some("me:p@ss".to_owned()))
        );
        assert_eq!(split_credentials("http://gpu:11434/a@b"), ("http://gpu:11434/a@b".to_owned(), None));
        assert_eq!(origin_of("http://me:pw@GPU:1?api-key=k"), "http://gpu:1");
    }

    #[test]
    fn patterns_match_from_the_start_and_fill_stars_in_order() {
        let p = Pattern::new("local/*/v*").unwrap();
        assert_eq!(p.captures("local/qwen/v2"), Some(vec!["qwen", "2"]));
        assert_eq!(p.captures("x/local/qwen/v2"), None, "anchored at the start");
        assert_eq!(p.expand("ollama_chat/*:*", "local/qwen/v2").as_deref(), Some("ollama_chat/qwen:2"));
        assert_eq!(p.expand("*", "local/qwen/v2").as_deref(), Some("local/qwen/v2"), "counts differ: the name");
        assert_eq!(Pattern::new("*").unwrap().expand("*", "anything/at:all").as_deref(), Some("anything/at:all"));
        assert!(Pattern::new("plain").is_none());
        let dots = Pattern::new("a.b/*").unwrap();
        assert!(dots.captures("axb/c").is_none(), "regex metacharacters are literal");
    }
}
