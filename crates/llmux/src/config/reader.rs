//! The one path-aware reader of the config tree: each function reads a value at a YAML path and reports what is
//! wrong with it at that path, in the same words wherever it is used (the config sections in `sections/`, the
//! complexity router's `complexity_router_config`, the semantic router's `auto_router_*` keys).
//!
//! The key-level readers (`get_*`, [`mapping`]) take a mapping, a key and the mapping's own path, and treat an
//! absent key and `null` alike as "not set"; the value-level ones ([`as_mapping`], [`finite_number`],
//! [`string_list`]) take the value and its full path. A parser that reports relative to its own part of the tree
//! (the routers, relative to `litellm_params`) fills a fresh [`Diagnostics`] that the caller files under its path
//! with [`Diagnostics::extend_under`].

use std::time::Duration;

use serde_json::{Map, Value};

use super::Diagnostics;

/// How a YAML value's type is named in messages ("a list", "a mapping", …).
pub(crate) fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

/// The message for a value of the wrong type: `must be {expected}, found {its type}`.
pub(crate) fn must_be(expected: &str, found: &Value) -> String {
    format!("must be {expected}, found {}", type_name(found))
}

/// The path of `key` inside the mapping at `path` (`key` alone at the top of a parser's tree).
pub(crate) fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// A string; a number is taken as its text (LiteLLM's YAML often has `model_name: 8`).
pub(crate) fn get_str(map: &Map<String, Value>, key: &str, path: &str, diags: &mut Diagnostics) -> Option<String> {
    match map.get(key)? {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        other => {
            diags.error(join(path, key), must_be("a string", other));
            None
        }
    }
}

/// A non-negative number; numeric strings are accepted as LiteLLM (Python) code often gets them from env vars.
pub(crate) fn get_num(map: &Map<String, Value>, key: &str, path: &str, diags: &mut Diagnostics) -> Option<f64> {
    let value = map.get(key)?;
    let parsed = match value {
        Value::Null => return None,
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    };
    match parsed {
        Some(v) if v.is_finite() && v >= 0.0 => Some(v),
        _ => {
            diags.error(join(path, key), format!("must be a non-negative number, found {value}"));
            None
        }
    }
}

/// A non-negative integer, or a numeric string.
pub(crate) fn get_uint(map: &Map<String, Value>, key: &str, path: &str, diags: &mut Diagnostics) -> Option<u64> {
    let value = map.get(key)?;
    let parsed = match value {
        Value::Null => return None,
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse::<u64>().ok(),
        _ => None,
    };
    if parsed.is_none() {
        diags.error(join(path, key), format!("must be a non-negative integer, found {value}"));
    }
    parsed
}

/// `true` or `false`, also as the strings (any case) environment variables give.
pub(crate) fn get_bool(map: &Map<String, Value>, key: &str, path: &str, diags: &mut Diagnostics) -> Option<bool> {
    match map.get(key)? {
        Value::Null => None,
        Value::Bool(b) => Some(*b),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Some(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Some(false),
        other => {
            diags.error(join(path, key), format!("must be true or false, found {other}"));
            None
        }
    }
}

/// A sub-mapping at `path.key`; `None` when absent or `null`, an error when something else.
pub(crate) fn mapping<'v>(
    map: &'v Map<String, Value>,
    key: &str,
    path: &str,
    diags: &mut Diagnostics,
) -> Option<&'v Map<String, Value>> {
    match map.get(key)? {
        Value::Null => None,
        value => as_mapping(value, &join(path, key), diags),
    }
}

/// `value` as a mapping; anything else (`null` too) is an error at `path`.
pub(crate) fn as_mapping<'v>(value: &'v Value, path: &str, diags: &mut Diagnostics) -> Option<&'v Map<String, Value>> {
    match value {
        Value::Object(map) => Some(map),
        other => {
            diags.error(path, must_be("a mapping", other));
            None
        }
    }
}

/// A finite number, negative ones included (weights and score boundaries).
pub(crate) fn finite_number(value: &Value, path: &str, diags: &mut Diagnostics) -> Option<f64> {
    match value.as_f64() {
        Some(v) if v.is_finite() => Some(v),
        _ => {
            diags.error(path, must_be("a number", value));
            None
        }
    }
}

/// A list of strings; `None` for `null`. An entry that is not a string is an error at its index and left out.
pub(crate) fn string_list(value: &Value, path: &str, diags: &mut Diagnostics) -> Option<Vec<String>> {
    match value {
        Value::Null => None,
        Value::Array(items) => {
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                match item {
                    Value::String(s) => out.push(s.clone()),
                    other => diags.error(format!("{path}[{i}]"), must_be("a string", other)),
                }
            }
            Some(out)
        }
        other => {
            diags.error(path, must_be("a list of strings", other));
            None
        }
    }
}

/// A list of names at `path` (`None` and `null`: none). An entry that is not a string is an error at its index
/// (`must be {item}`), anything but a list an error (`must be {list}, found …`); `each(index, name, diags)` sees
/// every name, to warn about one nothing answers to.
pub(crate) fn names(
    value: Option<&Value>,
    path: &str,
    (item, list): (&str, &str),
    diags: &mut Diagnostics,
    each: &dyn Fn(usize, &str, &mut Diagnostics),
) -> Vec<String> {
    match value {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .filter_map(|(i, entry)| match entry.as_str() {
                Some(name) => {
                    each(i, name, diags);
                    Some(name.to_owned())
                }
                None => {
                    diags.error(format!("{path}[{i}]"), format!("must be {item}"));
                    None
                }
            })
            .collect(),
        Some(other) => {
            diags.error(path, must_be(list, other));
            Vec::new()
        }
    }
}

/// A count that does not fit `u32` is as good as unlimited.
pub(crate) fn clamp_u32(v: u64) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

/// Megabytes as LiteLLM's `*_mb` keys count them (MiB), in bytes.
pub(crate) fn megabytes(n: f64) -> usize {
    (n * 1024.0 * 1024.0) as usize
}

/// Seconds as a [`Duration`], capped so that an absurd value cannot overflow one.
pub(crate) fn seconds(v: f64) -> Duration {
    Duration::from_secs_f64(v.min(1e9))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn said(diags: &Diagnostics) -> Vec<String> {
        diags.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn problems_are_reported_at_the_keys_path_in_one_wording() {
        let Value::Object(map) = json!({"n": -1, "s": [1], "b": "yes", "m": 3, "z": null}) else { unreachable!() };
        let mut diags = Diagnostics::default();
        assert_eq!(get_num(&map, "n", "router_settings", &mut diags), None);
        assert_eq!(get_str(&map, "s", "", &mut diags), None);
        assert_eq!(get_bool(&map, "b", "a.b", &mut diags), None);
        assert_eq!(mapping(&map, "m", "x", &mut diags), None);
        assert_eq!(mapping(&map, "z", "x", &mut diags), None, "null is not set");
        assert_eq!(
            said(&diags),
            [
                "error: router_settings.n: must be a non-negative number, found -1",
                "error: s: must be a string, found a list",
                "error: a.b.b: must be true or false, found \"yes\"",
                "error: x.m: must be a mapping, found a number",
            ]
        );
    }

    #[test]
    fn a_string_list_reports_each_bad_entry_at_its_index() {
        let mut diags = Diagnostics::default();
        let list = string_list(&json!(["a", 2, "c"]), "k", &mut diags);
        assert_eq!(list, Some(vec!["a".to_owned(), "c".to_owned()]));
        assert_eq!(string_list(&json!(null), "k", &mut diags), None);
        assert_eq!(string_list(&json!("a"), "k", &mut diags), None);
        assert_eq!(
            said(&diags),
            ["error: k[1]: must be a string, found a number", "error: k: must be a list of strings, found a string"]
        );
    }
}
