//! LiteLLM's complexity router (`model: auto_router/complexity_router`) as a pure classifier: request messages
//! in, a tier and the model for it out. No I/O, no clock; the only randomness is the caller's `rng` when a tier
//! lists several models.
//!
//! Behaviour follows the latest LiteLLM `litellm/router_strategy/complexity_router/{complexity_router,config}.py`
//! (heuristic classifier), where it differs from the legacy v1.81.x release:
//! - **Scored text.** Only the user's ask is scored: the last `user` message with non-empty text, with complete
//!   `<system-reminder>…</system-reminder>` blocks removed. Legacy scored code, technical, simple and
//!   multi-step keywords on `system_prompt + " " + user_text` and stripped nothing.
//! - **Reasoning override.** Two or more distinct reasoning markers promote to REASONING only when the score
//!   reaches `reasoning_override_min_score` (default: the `simple_medium` boundary). Legacy promoted
//!   unconditionally.
//! - **No user text.** Routed to the default model (legacy: not rerouted at all).
//! - **Escalation and housekeeping** (on by default, absent from legacy): `LITELLM ESCALATE` in the newest user
//!   turn bumps the tier one configured step up; a coding agent's conversation-title request goes to the
//!   cheapest configured tier unscored.
//!
//! Scoring, per dimension (weights are LiteLLM's defaults, all configurable):
//!
//! | dimension | weight | raw score |
//! |---|---|---|
//! | `tokenCount` (`chars / 4`) | 0.10 | −1 below 15, +1 above 400, else 0 |
//! | `codePresence` | 0.30 | 0 / 0.5 (1 keyword) / 1.0 (≥ 2) |
//! | `reasoningMarkers` | 0.25 | 0 / 0.7 (1) / 1.0 (≥ 2) |
//! | `technicalTerms` | 0.25 | 0 (< 2) / 0.5 (2–3) / 1.0 (≥ 4) |
//! | `simpleIndicators` | 0.05 | 0 / −1.0 (≥ 1) |
//! | `multiStepPatterns` | 0.03 | 0.5 if any pattern occurs |
//! | `questionComplexity` | 0.02 | 0.5 if more than 3 `?` |
//!
//! The weighted sum is mapped to SIMPLE `< 0.15 ≤` MEDIUM `< 0.35 ≤` COMPLEX `< 0.60 ≤` REASONING.
//!
//! The reference is LiteLLM v1.109.1's heuristic classifier. Not implemented (a config that enables one is
//! refused when it would change the tier, warned about otherwise): the optional classifiers
//! (`classifier_type: llm|custom|…`), `keyword_tier_rules`, `custom_dimensions`, plan-mode floors, stall and
//! context-window escalation, adaptive selection, session affinity, and the extra reminder delimiters LiteLLM
//! strips when the client's user agent is Codex (the classifier sees no headers).

mod config;
mod defaults;
mod matcher;
mod text;

use std::fmt;

use regex::Regex;
use serde::Serialize;
use serde_json::Value;

use matcher::{List, Matcher};
use text::Reminders;

/// LiteLLM's dimension names, in the order it sums them.
pub const DIMENSIONS: [&str; 7] = [
    "tokenCount",
    "codePresence",
    "reasoningMarkers",
    "technicalTerms",
    "simpleIndicators",
    "multiStepPatterns",
    "questionComplexity",
];

/// A complexity tier, cheapest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Tier {
    /// Greetings, chit-chat, short lookups.
    Simple = 0,
    /// Everyday requests needing some explanation or light code.
    Medium = 1,
    /// Non-trivial code, architecture, multi-step technical work.
    Complex = 2,
    /// Explicit reasoning, proofs, trade-offs.
    Reasoning = 3,
}

impl Tier {
    /// Every tier, cheapest first.
    pub const ALL: [Tier; 4] = [Tier::Simple, Tier::Medium, Tier::Complex, Tier::Reasoning];

    /// The name LiteLLM uses (`SIMPLE`, …), which is also the `tiers` key.
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Simple => "SIMPLE",
            Tier::Medium => "MEDIUM",
            Tier::Complex => "COMPLEX",
            Tier::Reasoning => "REASONING",
        }
    }

    /// The tier for an exact (upper-case) LiteLLM name.
    pub fn from_name(name: &str) -> Option<Tier> {
        Tier::ALL.into_iter().find(|t| t.as_str() == name)
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One scoring dimension of a classification.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Dimension {
    /// LiteLLM's name: one of [`DIMENSIONS`].
    pub name: &'static str,
    /// Its configured weight.
    pub weight: f64,
    /// Its raw score before weighting (e.g. −1.0, 0, 0.5, 0.7, 1.0).
    pub raw: f64,
    /// The configured keywords (list order) or the multi-step patterns that matched; empty for the token and
    /// question counts.
    pub matched: Vec<String>,
    /// LiteLLM's signal text for this dimension (`"code (function, class)"`, `"short (3 tokens)"`, …), when it
    /// emits one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signal: Option<String>,
}

/// The outcome of classifying one request.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Classification {
    /// The tier. With [`no_user_text`](Self::no_user_text) it is MEDIUM, the tier LiteLLM falls back to when no
    /// default model is set; [`ComplexityRouter::route`] sends such requests to the default model instead.
    pub tier: Tier,
    /// The weighted score (0 when there was no user text).
    pub score: f64,
    /// Every dimension, in LiteLLM's order (empty when there was no user text).
    pub dimensions: Vec<Dimension>,
    /// REASONING was chosen by the two-marker override rather than by the score's boundary.
    pub reasoning_override: bool,
    /// No user message carried text (or there were no messages): LiteLLM routes to the default model.
    pub no_user_text: bool,
    /// The token estimate LiteLLM uses: characters (code points) of the scored text divided by 4, rounded down.
    pub tokens: usize,
    /// Characters (code points) of the scored text, after reminder stripping and trimming.
    pub scored_chars: usize,
    /// The escalation keyword found in the newest user turn, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub escalation_keyword: Option<String>,
    /// The keyword moved the tier up (false when the tier was already the highest configured one).
    pub escalated: bool,
    /// The housekeeping sentinel that sent the request to the cheapest configured tier unscored (score 0, no
    /// dimensions).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub housekeeping: Option<String>,
}

/// A deployment's parsed `complexity_router_config` and `complexity_router_default_model`, with every matcher
/// precompiled. Build it with [`ComplexityRouter::from_params`].
#[derive(Debug, Clone)]
pub struct ComplexityRouter {
    /// Per [`Tier`] index: the configured model(s); a string target is a list of one.
    tiers: [Option<Vec<String>>; 4],
    default_model: Option<String>,
    /// `simple_medium`, `medium_complex`, `complex_reasoning`.
    boundaries: [f64; 3],
    /// `reasoning_override_min_score`, resolved.
    override_min: f64,
    /// `simple`, `complex` token thresholds.
    token_thresholds: [i64; 2],
    /// Per [`DIMENSIONS`] index.
    weights: [f64; 7],
    matcher: Matcher,
    /// One regex per pattern rather than a `RegexSet`: each keeps its own literal prefilter, which makes the
    /// four `is_match` scans several times faster than one set scan.
    multi_step: Vec<Regex>,
    reminders: Reminders,
    /// Escalation keywords (case-sensitive substrings); empty = off.
    escalation: Vec<String>,
    /// Housekeeping sentinels (case-sensitive substrings); `None` = `route_housekeeping_to_cheapest_tier: false`.
    housekeeping: Option<Vec<String>>,
    all_targets: Vec<String>,
}

impl ComplexityRouter {
    /// Classifies a chat request body's `messages` (as sent by the client) as LiteLLM's pre-routing hook does:
    /// selects the user text, routes a housekeeping request to the cheapest configured tier, otherwise scores
    /// the text, then applies an escalation keyword. Non-object messages and non-`user` roles are skipped; the
    /// system prompt is not read.
    pub fn classify(&self, messages: &[Value]) -> Classification {
        let Some((text, newest)) = text::user_text(messages, &self.reminders) else {
            return Classification {
                tier: Tier::Medium,
                score: 0.0,
                dimensions: Vec::new(),
                reasoning_override: false,
                no_user_text: true,
                tokens: 0,
                scored_chars: 0,
                escalation_keyword: None,
                escalated: false,
                housekeeping: None,
            };
        };
        // Escalation and housekeeping read only the newest user turn (`_newest_turn_ask`), which is the scored
        // text exactly when that turn carries text.
        let newest_ask = newest.then_some(text.as_ref());
        let housekeeping = newest_ask
            .and_then(|ask| self.housekeeping.as_ref()?.iter().find(|s| ask.contains(s.as_str())))
            .and_then(|sentinel| Some((sentinel, self.cheapest_tier()?)));
        let mut classification = match housekeeping {
            Some((sentinel, tier)) => Classification {
                tier,
                score: 0.0,
                dimensions: Vec::new(),
                reasoning_override: false,
                no_user_text: false,
                tokens: text.chars().count() / 4,
                scored_chars: text.chars().count(),
                escalation_keyword: None,
                escalated: false,
                housekeeping: Some(sentinel.clone()),
            },
            None => self.score(&text),
        };
        if let Some(keyword) = newest_ask.and_then(|ask| self.escalation.iter().find(|k| ask.contains(k.as_str()))) {
            let bumped = self.escalate(classification.tier);
            classification.escalated = bumped != classification.tier;
            classification.tier = bumped;
            classification.escalation_keyword = Some(keyword.clone());
        }
        classification
    }

    /// The least severe tier with models (`_cheapest_configured_tier`).
    fn cheapest_tier(&self) -> Option<Tier> {
        Tier::ALL.into_iter().find(|t| self.tiers[*t as usize].is_some())
    }

    /// The next higher configured tier, or `tier` itself when none is (`_escalate_tier`).
    fn escalate(&self, tier: Tier) -> Tier {
        Tier::ALL.into_iter().filter(|t| *t > tier).find(|t| self.tiers[*t as usize].is_some()).unwrap_or(tier)
    }

    /// Scores `text` as the user's ask (LiteLLM's `classify(prompt)`): no message selection, no reminder
    /// stripping, no housekeeping or escalation.
    pub fn score(&self, text: &str) -> Classification {
        let lowered = text.to_lowercase();
        let chars = text.chars().count();
        let tokens = chars / 4;
        let hits = self.matcher.scan(&lowered);
        let mut dimensions = Vec::with_capacity(DIMENSIONS.len());

        let [short, long] = self.token_thresholds;
        let estimate = i64::try_from(tokens).unwrap_or(i64::MAX);
        let (raw, signal) = if estimate < short {
            (-1.0, Some(format!("short ({tokens} tokens)")))
        } else if estimate > long {
            (1.0, Some(format!("long ({tokens} tokens)")))
        } else {
            (0.0, None)
        };
        dimensions.push(self.dimension(0, raw, Vec::new(), signal));

        // (list, signal label, (low, high) thresholds, (none, low, high) raw scores): `_score_keyword_match`.
        let keyword_dimensions = [
            (List::Code, "code", (1, 2), (0.0, 0.5, 1.0)),
            (List::Reasoning, "reasoning", (1, 2), (0.0, 0.7, 1.0)),
            (List::Technical, "technical", (2, 4), (0.0, 0.5, 1.0)),
            (List::Simple, "simple", (1, 2), (0.0, -1.0, -1.0)),
        ];
        for (i, (list, label, (low, high), (none, some, many))) in keyword_dimensions.into_iter().enumerate() {
            let matched: Vec<String> = self.matcher.matched(&hits, list).map(str::to_owned).collect();
            let count = matched.len();
            let (raw, signal) = if count < low {
                (none, None)
            } else {
                let detail: Vec<&str> = matched.iter().take(3).map(String::as_str).collect();
                (if count >= high { many } else { some }, Some(format!("{label} ({})", detail.join(", "))))
            };
            dimensions.push(self.dimension(i + 1, raw, matched, signal));
        }

        let steps: Vec<String> = self
            .multi_step
            .iter()
            .zip(defaults::MULTI_STEP)
            .filter(|(re, _)| re.is_match(&lowered))
            .map(|(_, (python, _))| python.to_owned())
            .collect();
        let (raw, signal) = if steps.is_empty() { (0.0, None) } else { (0.5, Some("multi-step".to_owned())) };
        dimensions.push(self.dimension(5, raw, steps, signal));

        let questions = text.bytes().filter(|&b| b == b'?').count();
        let (raw, signal) = if questions > 3 { (0.5, Some(format!("{questions} questions"))) } else { (0.0, None) };
        dimensions.push(self.dimension(6, raw, Vec::new(), signal));

        let score = python_sum(dimensions.iter().map(|d| d.raw * d.weight));
        let reasoning_markers = dimensions[2].matched.len();
        let [simple_medium, medium_complex, complex_reasoning] = self.boundaries;
        let (tier, reasoning_override) = if reasoning_markers >= 2 && score >= self.override_min {
            (Tier::Reasoning, true)
        } else if score < simple_medium {
            (Tier::Simple, false)
        } else if score < medium_complex {
            (Tier::Medium, false)
        } else if score < complex_reasoning {
            (Tier::Complex, false)
        } else {
            (Tier::Reasoning, false)
        };
        Classification {
            tier,
            score,
            dimensions,
            reasoning_override,
            no_user_text: false,
            tokens,
            scored_chars: chars,
            escalation_keyword: None,
            escalated: false,
            housekeeping: None,
        }
    }

    fn dimension(&self, index: usize, raw: f64, matched: Vec<String>, signal: Option<String>) -> Dimension {
        Dimension { name: DIMENSIONS[index], weight: self.weights[index], raw, matched, signal }
    }

    /// The model name for a tier, with LiteLLM's fallback chain (`get_model_for_tier`): the tier's own target
    /// (a list target → uniform pick with `rng`), else the default model, else the MEDIUM tier's target; `None`
    /// when none exists (LiteLLM raises).
    pub fn target(&self, tier: Tier, rng: &mut fastrand::Rng) -> Option<&str> {
        if let Some(pool) = &self.tiers[tier as usize] {
            return pick(pool, rng);
        }
        if let Some(model) = &self.default_model {
            return Some(model);
        }
        self.tiers[Tier::Medium as usize].as_ref().and_then(|pool| pick(pool, rng))
    }

    /// The model name a classification routes to: the default model when there was no user text (falling back
    /// to the MEDIUM chain), else [`target`](Self::target) of its tier.
    pub fn route(&self, classification: &Classification, rng: &mut fastrand::Rng) -> Option<&str> {
        if classification.no_user_text {
            if let Some(model) = &self.default_model {
                return Some(model);
            }
            return self.target(Tier::Medium, rng);
        }
        self.target(classification.tier, rng)
    }

    /// The default model (`complexity_router_default_model`, else `complexity_router_config.default_model`, else
    /// derived from the MEDIUM or SIMPLE tier).
    pub fn default_model(&self) -> Option<&str> {
        self.default_model.as_deref()
    }

    /// Every target name, each once: tier targets in tier order, then the default model (for config validation
    /// and `llmux check`).
    pub fn targets(&self) -> impl Iterator<Item = &str> {
        self.all_targets.iter().map(String::as_str)
    }

    /// The configured targets of one tier (`None` when the tier is not configured).
    pub fn tier_targets(&self, tier: Tier) -> Option<&[String]> {
        self.tiers[tier as usize].as_deref()
    }
}

/// Two routers are equal when they were built from the same settings: the compiled matchers are derived from
/// the keyword lists and reminder pairs, which are compared instead.
impl PartialEq for ComplexityRouter {
    fn eq(&self, other: &Self) -> bool {
        self.tiers == other.tiers
            && self.default_model == other.default_model
            && self.boundaries == other.boundaries
            && self.override_min == other.override_min
            && self.token_thresholds == other.token_thresholds
            && self.weights == other.weights
            && self.matcher == other.matcher
            && self.reminders == other.reminders
            && self.escalation == other.escalation
            && self.housekeeping == other.housekeeping
    }
}

/// A uniform pick from a tier's targets (`random.choice`); a single target needs no draw.
fn pick<'a>(pool: &'a [String], rng: &mut fastrand::Rng) -> Option<&'a str> {
    match pool {
        [] => None,
        [only] => Some(only),
        _ => pool.get(rng.usize(..pool.len())).map(String::as_str),
    }
}

/// Python's built-in `sum` over floats starting from the integer 0, as CPython ≥ 3.12 computes it (Neumaier
/// compensated summation, the compensation added at the end when finite). Plain left-to-right addition can differ
/// in the last bit, which decides ties at a tier boundary (e.g. a score of exactly 0.15).
fn python_sum(items: impl Iterator<Item = f64>) -> f64 {
    let mut items = items;
    let Some(first) = items.next() else { return 0.0 };
    let mut sum = 0.0 + first;
    let mut compensation = 0.0;
    for x in items {
        let t = sum + x;
        compensation += if sum.abs() >= x.abs() { (sum - t) + x } else { (x - t) + sum };
        sum = t;
    }
    if compensation != 0.0 && compensation.is_finite() {
        sum += compensation;
    }
    sum
}

#[cfg(test)]
mod tests;
