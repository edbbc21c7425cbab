//! The residency knobs ([`ResidencyConfig`]) and the values they are written in: model sizes with units and
//! Ollama's `keep_alive` forms. Apart from the simulation because the config, `POST /mock/config` and the
//! command line read them without running it.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use tokio::time::Instant;

use crate::config::{canonical_model, MockConfig};
use crate::util::fnv1a;

/// Residency knobs ([`MockConfig::residency`]).
///
/// JSON (e.g. in `POST /mock/config`): `{"residency": {"memory_budget": "14GB", "model_sizes": {"qwen3:8b":
/// "5.2GB"}, "default_size": 4000000000, "load_ms": {"qwen3:8b": 3000}, "default_load_ms": 1000,
/// "max_loaded_models": 3, "keep_alive": "5m"}}`; every key is optional, `"residency": {}` turns the simulation
/// on with the defaults, `null` turns it off. Sizes are bytes, as a number or a string with a unit (`B`, `KB`,
/// `MB`, `GB`, `TB` decimal; `KiB`, `MiB`, `GiB`, `TiB` binary; `K`/`M`/`G`/`T` = decimal).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ResidencyConfig {
    /// Memory the loaded models may take together, in bytes. `None` = unlimited.
    #[serde(deserialize_with = "de_opt_size")]
    pub memory_budget: Option<u64>,
    /// The most models loaded at once (Ollama's `OLLAMA_MAX_LOADED_MODELS`). `None` = no limit but memory.
    pub max_loaded_models: Option<usize>,
    /// Size of each model in bytes, by name (`x` and `x:latest` are the same model). Reported by `/api/tags`
    /// and `/api/ps` (as `size` and `size_vram`).
    #[serde(deserialize_with = "de_size_map")]
    pub model_sizes: BTreeMap<String, u64>,
    /// Size of a model not in `model_sizes`. `None` = the stable pseudo-size (1–8 GB, from the name) that
    /// `/api/tags` reports without residency.
    #[serde(deserialize_with = "de_opt_size")]
    pub default_size: Option<u64>,
    /// Load time of each model in milliseconds, by name.
    pub load_ms: BTreeMap<String, u64>,
    /// Load time of a model not in `load_ms`, in milliseconds.
    pub default_load_ms: u64,
    /// How long an idle model stays loaded when the request does not say (Ollama's `OLLAMA_KEEP_ALIVE`,
    /// default 5 minutes).
    pub keep_alive: KeepAlive,
}

impl Default for ResidencyConfig {
    fn default() -> Self {
        Self {
            memory_budget: None,
            max_loaded_models: None,
            model_sizes: BTreeMap::new(),
            default_size: None,
            load_ms: BTreeMap::new(),
            default_load_ms: 0,
            keep_alive: KeepAlive::For(Duration::from_secs(300)),
        }
    }
}

impl ResidencyConfig {
    /// The size of `model` in bytes.
    pub fn size_of(&self, model: &str) -> u64 {
        lookup(&self.model_sizes, model).or(self.default_size).unwrap_or_else(|| pseudo_size(model))
    }

    /// How long loading `model` takes.
    pub fn load_time(&self, model: &str) -> Duration {
        Duration::from_millis(lookup(&self.load_ms, model).unwrap_or(self.default_load_ms))
    }
}

/// The value for `model` in a map keyed by model names, `:latest` implied.
fn lookup(map: &BTreeMap<String, u64>, model: &str) -> Option<u64> {
    map.get(model).copied().or_else(|| {
        let wanted = canonical_model(model);
        map.iter().find(|(k, _)| canonical_model(k) == wanted).map(|(_, v)| *v)
    })
}

/// A plausible, stable model size in bytes (1–8 GB), what `/api/tags` reports for a model of unknown size.
pub(crate) fn pseudo_size(name: &str) -> u64 {
    1_000_000_000 + fnv1a(name.as_bytes()) % 7_000_000_000
}

/// The size `/api/tags` and `/api/ps` report for `model`.
pub(crate) fn reported_size(cfg: &MockConfig, model: &str) -> u64 {
    cfg.residency.as_ref().map_or_else(|| pseudo_size(model), |r| r.size_of(model))
}

/// How long an idle model stays loaded: Ollama's `keep_alive`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeepAlive {
    /// Unloaded when idle for this long (zero = as soon as its requests finish).
    For(Duration),
    /// Never unloaded (a negative `keep_alive`).
    Forever,
}

impl KeepAlive {
    /// Parses Ollama's forms: a number of seconds (negative = forever), or a duration string (`"5m"`,
    /// `"1h30m"`, `"300ms"`, `"-1m"`; a bare number string is seconds).
    pub fn parse(value: &Value) -> Option<Self> {
        match value {
            Value::Number(n) => n.as_f64().and_then(Self::from_secs),
            Value::String(s) => {
                let s = s.trim();
                match s.parse::<f64>() {
                    Ok(secs) => Self::from_secs(secs),
                    Err(_) => parse_go_duration(s),
                }
            }
            _ => None,
        }
    }

    fn from_secs(secs: f64) -> Option<Self> {
        if secs.is_nan() {
            None
        } else if secs < 0.0 {
            Some(KeepAlive::Forever)
        } else {
            Duration::try_from_secs_f64(secs).ok().map(KeepAlive::For)
        }
    }

    /// Whether this means "unload as soon as idle".
    pub fn is_zero(self) -> bool {
        self == KeepAlive::For(Duration::ZERO)
    }

    /// When a model idle from `now` expires; `None` = never.
    pub(crate) fn expiry(self, now: Instant) -> Option<Instant> {
        match self {
            KeepAlive::For(d) => now.checked_add(d),
            KeepAlive::Forever => None,
        }
    }
}

/// A Go `time.ParseDuration` string: an optional sign, then one or more number+unit pairs (`ns`, `us`, `µs`,
/// `ms`, `s`, `m`, `h`). Negative = forever, as Ollama treats it.
fn parse_go_duration(s: &str) -> Option<KeepAlive> {
    let (negative, mut rest) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    if rest.is_empty() {
        return None;
    }
    let mut total = 0.0f64;
    while !rest.is_empty() {
        let num_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let number: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += number * scale;
    }
    if negative && total > 0.0 {
        Some(KeepAlive::Forever)
    } else {
        Duration::try_from_secs_f64(total).ok().map(KeepAlive::For)
    }
}

impl fmt::Display for KeepAlive {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeepAlive::Forever => f.write_str("-1"),
            KeepAlive::For(d) if d.subsec_nanos() == 0 => write!(f, "{}s", d.as_secs()),
            KeepAlive::For(d) => write!(f, "{}ms", d.as_millis()),
        }
    }
}

impl Serialize for KeepAlive {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for KeepAlive {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(d)?;
        KeepAlive::parse(&value).ok_or_else(|| {
            D::Error::custom(format!("invalid keep_alive {value}: expected seconds or a duration such as \"5m\""))
        })
    }
}

/// Parses a size: bytes as a number, or a string with an optional unit (`"14GB"`, `"600MiB"`, `"3.5G"`).
pub fn parse_size(value: &Value) -> Option<u64> {
    match value {
        Value::Number(n) => n.as_u64().or_else(|| n.as_f64().filter(|f| *f >= 0.0).map(|f| f.round() as u64)),
        Value::String(s) => parse_size_str(s),
        _ => None,
    }
}

/// A size string: a number and an optional unit.
pub fn parse_size_str(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let number: f64 = s[..split].trim().parse().ok()?;
    let scale: f64 = match s[split..].trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "m" | "mb" => 1e6,
        "g" | "gb" => 1e9,
        "t" | "tb" => 1e12,
        "kib" => 1024.0,
        "mib" => 1024.0 * 1024.0,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        "tib" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    let bytes = number * scale;
    (bytes.is_finite() && bytes >= 0.0).then(|| bytes.round() as u64)
}

fn de_opt_size<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    match Value::deserialize(d)? {
        Value::Null => Ok(None),
        v => parse_size(&v).map(Some).ok_or_else(|| D::Error::custom(format!("invalid size {v}"))),
    }
}

fn de_size_map<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, u64>, D::Error> {
    let map = BTreeMap::<String, Value>::deserialize(d)?;
    map.into_iter()
        .map(|(k, v)| match parse_size(&v) {
            Some(size) => Ok((k, size)),
            None => Err(D::Error::custom(format!("invalid size {v} for model {k}"))),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keep_alive_forms() {
        let secs = |s: u64| Some(KeepAlive::For(Duration::from_secs(s)));
        assert_eq!(KeepAlive::parse(&json!("5m")), secs(300));
        assert_eq!(KeepAlive::parse(&json!("1h30m")), secs(5400));
        assert_eq!(KeepAlive::parse(&json!("300ms")), Some(KeepAlive::For(Duration::from_millis(300))));
        assert_eq!(KeepAlive::parse(&json!(30)), secs(30));
        assert_eq!(KeepAlive::parse(&json!("30")), secs(30));
        assert_eq!(KeepAlive::parse(&json!(0.5)), Some(KeepAlive::For(Duration::from_millis(500))));
        assert_eq!(KeepAlive::parse(&json!(-1)), Some(KeepAlive::Forever));
        assert_eq!(KeepAlive::parse(&json!("-1m")), Some(KeepAlive::Forever));
        assert!(KeepAlive::parse(&json!(0)).unwrap().is_zero());
        assert!(KeepAlive::parse(&json!("0s")).unwrap().is_zero());
        assert_eq!(KeepAlive::parse(&json!("soon")), None);
        assert_eq!(KeepAlive::parse(&json!("5x")), None);
        assert_eq!(KeepAlive::parse(&json!(null)), None);
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size(&json!(1234)), Some(1234));
        assert_eq!(parse_size(&json!("14GB")), Some(14_000_000_000));
        assert_eq!(parse_size(&json!("3.5 GB")), Some(3_500_000_000));
        assert_eq!(parse_size(&json!("600MB")), Some(600_000_000));
        assert_eq!(parse_size(&json!("1GiB")), Some(1 << 30));
        assert_eq!(parse_size(&json!("2g")), Some(2_000_000_000));
        assert_eq!(parse_size(&json!("lots")), None);
        assert_eq!(parse_size(&json!(-1)), None);
    }

    #[test]
    fn config_json_round_trips() {
        let rc: ResidencyConfig = serde_json::from_value(json!({
            "memory_budget": "14GB",
            "model_sizes": {"a": "3.5GB", "b:7b": 7_000_000_000u64},
            "load_ms": {"a": 300},
            "default_load_ms": 100,
            "keep_alive": "10m",
        }))
        .unwrap();
        assert_eq!(rc.memory_budget, Some(14_000_000_000));
        assert_eq!(rc.size_of("a:latest"), 3_500_000_000);
        assert_eq!(rc.size_of("b:7b"), 7_000_000_000);
        assert_eq!(rc.size_of("c"), pseudo_size("c"));
        assert_eq!(rc.load_time("a"), Duration::from_millis(300));
        assert_eq!(rc.load_time("b:7b"), Duration::from_millis(100));
        assert_eq!(rc.keep_alive, KeepAlive::For(Duration::from_secs(600)));
        let back: ResidencyConfig = serde_json::from_value(serde_json::to_value(&rc).unwrap()).unwrap();
        assert_eq!(back, rc);
        assert!(serde_json::from_value::<ResidencyConfig>(json!({"memory_budgt": 1})).is_err());
        assert!(serde_json::from_value::<ResidencyConfig>(json!({"keep_alive": "later"})).is_err());
    }
}
