//! The decisions about one request with a virtual key, as pure functions of the key, the clock and the counts:
//! whether the key may be used now (blocked, expired, over budget), whether it may call the model, and whether
//! its rpm/tpm/parallel limits leave room. The callers gather the facts; nothing here touches a socket.

use std::collections::BTreeMap;
use std::time::Duration;

use super::Settings;
use crate::config::Config;
use crate::error::Error;

/// LiteLLM's duration strings (`duration`, `budget_duration`, `maximum_spend_logs_retention_period`): a number
/// with `s`, `m`, `h`, `d`, `w` or `mo` (30 days), or bare seconds.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: f64 = number.parse().ok().filter(|n: &f64| n.is_finite() && *n >= 0.0)?;
    let scale = match unit.trim() {
        "" | "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        "d" => 86_400.0,
        "w" => 7.0 * 86_400.0,
        "mo" => 30.0 * 86_400.0,
        _ => return None,
    };
    Some(Duration::from_secs_f64((n * scale).min(1e11)))
}

/// Why a key may not make a request.
#[derive(Debug, Clone, PartialEq)]
pub enum Refusal {
    Blocked,
    Expired {
        expires_ms: i64,
        now_ms: i64,
    },
    OverBudget {
        spend: f64,
        max_budget: f64,
    },
    ModelDenied {
        model: String,
    },
    /// `kind`: `requests`, `tokens` or `max_parallel_requests`; `model` for a per-model limit.
    RateLimited {
        kind: &'static str,
        limit: u64,
        model: Option<String>,
        resets_in_s: u64,
    },
}

/// The facts a decision reads about a key's use: spend, and this minute's counts.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Usage {
    /// Requests admitted this minute, before this one.
    pub requests: u64,
    /// Tokens used this minute.
    pub tokens: u64,
    /// Requests in flight now, before this one.
    pub in_flight: u64,
}

/// Whether the key can be used at all at `now_ms`, with `spend` so far (budget resets already applied).
pub fn usable(settings: &Settings, spend: f64, now_ms: i64) -> Result<(), Refusal> {
    if settings.blocked {
        return Err(Refusal::Blocked);
    }
    if let Some(expires_ms) = settings.expires_ms {
        if expires_ms < now_ms {
            return Err(Refusal::Expired { expires_ms, now_ms });
        }
    }
    if let Some(max_budget) = settings.max_budget {
        if spend >= max_budget {
            return Err(Refusal::OverBudget { spend, max_budget });
        }
    }
    Ok(())
}

/// The spend that counts at `now_ms`: none once the budget window has reset (the store catches up later).
pub fn current_spend(spend: f64, budget_reset_at_ms: Option<i64>, now_ms: i64) -> f64 {
    match budget_reset_at_ms {
        Some(reset) if reset <= now_ms => 0.0,
        _ => spend,
    }
}

/// The model a key's `aliases` turn `requested` into (itself when none applies).
pub fn aliased<'a>(aliases: &'a BTreeMap<String, String>, requested: &'a str) -> &'a str {
    aliases.get(requested).map_or(requested, String::as_str)
}

/// Whether a key whose `models` is `allowed` may call `requested` (after its aliases: `target`), as LiteLLM's
/// `can_key_call_model`: an empty list or `all-proxy-models` allows everything; otherwise an entry must name the
/// model, the group a `model_group_alias` resolves it to, a wildcard matching it, or an access group
/// (`model_info.access_groups`) of one of its deployments.
pub fn model_allowed(allowed: &[String], requested: &str, target: &str, config: &Config) -> bool {
    if allowed.is_empty() || allowed.iter().any(|m| m == "all-proxy-models" || m == "*") {
        return true;
    }
    let mut names = vec![requested, target];
    let resolved = config.resolve(target);
    if let Some(resolved) = &resolved {
        names.push(resolved.group);
    }
    let named = |entry: &str| names.iter().any(|n| *n == entry || (entry.contains('*') && glob(entry, n)));
    if allowed.iter().any(|entry| named(entry)) {
        return true;
    }
    let Some(resolved) = resolved else { return false };
    resolved.deployments.iter().any(|&i| config.deployments[i].access_groups.iter().any(|g| allowed.contains(g)))
}

/// `*` matches any text (LiteLLM's wildcard model names).
fn glob(pattern: &str, name: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or("");
    let Some(mut rest) = name.strip_prefix(first) else { return false };
    let parts: Vec<&str> = parts.collect();
    for (i, part) in parts.iter().enumerate() {
        if i + 1 == parts.len() {
            return rest.ends_with(part);
        }
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.is_empty()
}

/// Whether one more request fits the key's limits: `key` counts the key's use this minute, `model` its use of
/// the requested model group (for `model_rpm_limit` / `model_tpm_limit`); `second` is the second of the minute.
pub fn within_limits(settings: &Settings, group: &str, key: Usage, model: Usage, second: u64) -> Result<(), Refusal> {
    let resets_in_s = 60u64.saturating_sub(second).max(1);
    let over = |kind, limit: Option<u64>, used: u64, model: Option<&str>| match limit {
        Some(limit) if used >= limit => {
            Err(Refusal::RateLimited { kind, limit, model: model.map(str::to_owned), resets_in_s })
        }
        _ => Ok(()),
    };
    over("max_parallel_requests", settings.max_parallel_requests, key.in_flight, None)?;
    over("requests", settings.rpm_limit, key.requests, None)?;
    over("tokens", settings.tpm_limit, key.tokens, None)?;
    over("requests", settings.model_rpm_limit.get(group).copied(), model.requests, Some(group))?;
    over("tokens", settings.model_tpm_limit.get(group).copied(), model.tokens, Some(group))
}

impl Refusal {
    /// LiteLLM's error for this refusal; `token` is the key's hash, `name` its alias or abbreviation.
    pub fn error(&self, token: &str, name: &str, allowed: &[String]) -> Error {
        match self {
            Refusal::Blocked => Error::Unauthorized(
                "Authentication Error, Key is blocked. Update via `/key/unblock` if you're admin.".to_owned(),
            ),
            Refusal::Expired { expires_ms, now_ms } => Error::KeyExpired(format!(
                "Authentication Error - Expired Key. Key Expiry time {} and current time {}",
                super::iso_time(*expires_ms),
                super::iso_time(*now_ms)
            )),
            Refusal::OverBudget { spend, max_budget } => Error::BudgetExceeded(format!(
                "Budget has been exceeded! Key={name} Current cost: {spend}, Max budget: {max_budget}"
            )),
            Refusal::ModelDenied { model } => Error::ModelDenied(format!(
                "key not allowed to access model. This key can only access models=[{}]. Tried to access {model}",
                allowed.iter().map(|m| format!("'{m}'")).collect::<Vec<_>>().join(", ")
            )),
            Refusal::RateLimited { kind, limit, model, resets_in_s } => {
                let (what, who) = match model {
                    Some(model) => ("model_per_key", format!("{token}:{model}")),
                    None => ("api_key", token.to_owned()),
                };
                Error::KeyRateLimited {
                    message: format!(
                        "Rate limit exceeded for {what}: {who}. Limit type: {kind}. Current limit: {limit}, Remaining: 0. Limit resets in: {resets_in_s}s"
                    ),
                    retry_after: *resets_in_s,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        let yaml = "model_list:\n  - model_name: llama\n    litellm_params: {model: ollama_chat/llama3}\n    model_info: {access_groups: [family]}\n  - model_name: qwen\n    litellm_params: {model: ollama_chat/qwen3}\n  - model_name: ollama/*\n    litellm_params: {model: ollama_chat/*}\nrouter_settings:\n  model_group_alias: {fast: qwen}\n";
        crate::config::load_str(yaml, &|_| None).map(|(c, _)| c).expect("config")
    }

    fn allowed(list: &[&str], model: &str) -> bool {
        let list: Vec<String> = list.iter().map(|s| (*s).to_owned()).collect();
        model_allowed(&list, model, model, &config())
    }

    #[test]
    fn durations_read_as_litellm_writes_them() {
        assert_eq!(parse_duration("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Some(Duration::from_secs(300)));
        assert_eq!(parse_duration("2h"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_duration("30d"), Some(Duration::from_secs(30 * 86_400)));
        assert_eq!(parse_duration("1w"), Some(Duration::from_secs(7 * 86_400)));
        assert_eq!(parse_duration("1mo"), Some(Duration::from_secs(30 * 86_400)));
        assert_eq!(parse_duration("90"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("soon"), None);
        assert_eq!(parse_duration("3y"), None);
    }

    #[test]
    fn the_model_list_allows_names_aliases_wildcards_and_access_groups() {
        assert!(allowed(&[], "qwen"));
        assert!(allowed(&["all-proxy-models"], "qwen"));
        assert!(allowed(&["qwen"], "qwen"));
        assert!(!allowed(&["qwen"], "llama"));
        // A model_group_alias resolves to an allowed group; the alias itself may be listed too.
        assert!(allowed(&["qwen"], "fast"));
        assert!(allowed(&["fast"], "fast"));
        assert!(!allowed(&["fast"], "llama"));
        assert!(allowed(&["ollama/*"], "ollama/mistral"));
        assert!(!allowed(&["ollama/*"], "qwen"));
        assert!(allowed(&["family"], "llama"));
        assert!(!allowed(&["family"], "qwen"));
    }

    #[test]
    fn globs_anchor_at_both_ends() {
        assert!(glob("ollama/*", "ollama/x"));
        assert!(glob("*:7b", "qwen:7b"));
        assert!(!glob("*:7b", "qwen:7b-q4"));
        assert!(glob("a*b*c", "a-b-c"));
        assert!(!glob("a*b*c", "a-c"));
    }

    #[test]
    fn a_key_is_refused_when_blocked_expired_or_over_budget() {
        let mut s = Settings::default();
        assert_eq!(usable(&s, 0.0, 1000), Ok(()));
        s.expires_ms = Some(999);
        assert!(matches!(usable(&s, 0.0, 1000), Err(Refusal::Expired { .. })));
        s.expires_ms = Some(1000);
        assert_eq!(usable(&s, 0.0, 1000), Ok(()));
        s.max_budget = Some(1.0);
        assert_eq!(usable(&s, 0.99, 1000), Ok(()));
        assert_eq!(usable(&s, 1.0, 1000), Err(Refusal::OverBudget { spend: 1.0, max_budget: 1.0 }));
        s.blocked = true;
        assert_eq!(usable(&s, 0.0, 1000), Err(Refusal::Blocked));
    }

    #[test]
    fn spend_counts_until_the_budget_window_resets() {
        assert_eq!(current_spend(5.0, None, 10), 5.0);
        assert_eq!(current_spend(5.0, Some(11), 10), 5.0);
        assert_eq!(current_spend(5.0, Some(10), 10), 0.0);
    }

    #[test]
    fn limits_leave_room_up_to_the_limit() {
        let mut s =
            Settings { rpm_limit: Some(2), tpm_limit: Some(100), max_parallel_requests: Some(1), ..Default::default() };
        let used = |requests, tokens, in_flight| Usage { requests, tokens, in_flight };
        assert_eq!(within_limits(&s, "m", used(1, 99, 0), Usage::default(), 0), Ok(()));
        let refused = within_limits(&s, "m", used(2, 0, 0), Usage::default(), 15);
        assert_eq!(refused, Err(Refusal::RateLimited { kind: "requests", limit: 2, model: None, resets_in_s: 45 }));
        assert!(matches!(
            within_limits(&s, "m", used(0, 100, 0), Usage::default(), 0),
            Err(Refusal::RateLimited { kind: "tokens", .. })
        ));
        assert!(matches!(
            within_limits(&s, "m", used(0, 0, 1), Usage::default(), 0),
            Err(Refusal::RateLimited { kind: "max_parallel_requests", .. })
        ));
        s.model_rpm_limit.insert("m".into(), 1);
        s.model_tpm_limit.insert("n".into(), 10);
        assert!(matches!(
            within_limits(&s, "m", Usage::default(), used(1, 0, 0), 0),
            Err(Refusal::RateLimited { kind: "requests", model: Some(_), .. })
        ));
        assert!(matches!(
            within_limits(&s, "n", Usage::default(), used(0, 10, 0), 0),
            Err(Refusal::RateLimited { kind: "tokens", model: Some(_), .. })
        ));
        assert_eq!(within_limits(&s, "other", Usage::default(), used(5, 50, 0), 0), Ok(()));
    }

    #[test]
    fn refusals_speak_litellm() {
        let e = Refusal::ModelDenied { model: "llama".into() }.error("abc", "app", &["qwen".into()]);
        assert_eq!(e.status().as_u16(), 401);
        assert_eq!(
            e.to_string(),
            "key not allowed to access model. This key can only access models=['qwen']. Tried to access llama"
        );
        let e = Refusal::OverBudget { spend: 2.0, max_budget: 1.0 }.error("abc", "app", &[]);
        assert_eq!((e.status().as_u16(), e.kind()), (400, "budget_exceeded"));
        assert!(e.to_string().starts_with("Budget has been exceeded! Key=app Current cost: 2"));
        let e =
            Refusal::RateLimited { kind: "requests", limit: 1, model: None, resets_in_s: 3 }.error("abc", "app", &[]);
        assert_eq!(e.status().as_u16(), 429);
        assert!(e.to_string().starts_with("Rate limit exceeded for api_key: abc. Limit type: requests."));
    }
}
