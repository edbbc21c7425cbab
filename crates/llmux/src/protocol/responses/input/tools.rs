//! Responses tools → chat tools: flat functions, `namespace` tools flattened to `<namespace>__<name>`, `custom`
//! tools as functions taking `{input}`, hosted tools dropped, and `tool_choice` to match. Apart from the input
//! items because the renaming they record ([`ToolNames`]) is what the answer needs to name calls back.

use serde_json::{json, Map, Value};

use crate::error::Error;
use crate::protocol::responses::ToolNames;

/// Responses tools → chat tools, and how they were renamed.
pub(super) fn tools(tools: &[Value]) -> Result<(Vec<Value>, ToolNames), Error> {
    let mut out = Vec::new();
    let mut names = ToolNames::default();
    for (i, tool) in tools.iter().enumerate() {
        let at = format!("tools[{i}]");
        match tool.get("type").and_then(Value::as_str) {
            Some("function") => out.push(function(tool, None, &at)?),
            Some("namespace") => {
                let ns = tool.get("name").and_then(Value::as_str).unwrap_or_default();
                let inner = tool.get("tools").and_then(Value::as_array).into_iter().flatten();
                for (j, t) in inner.enumerate() {
                    let at = format!("{at}.tools[{j}]");
                    match t.get("type").and_then(Value::as_str) {
                        Some("function") => {
                            let f = function(t, Some(ns), &at)?;
                            let name = t.get("name").and_then(Value::as_str).unwrap_or_default();
                            names.namespaced.insert(ToolNames::chat_name(Some(ns), name), (ns.into(), name.into()));
                            out.push(f);
                        }
                        Some("custom") => {
                            out.push(custom(t, &at)?);
                            names.custom.insert(t.get("name").and_then(Value::as_str).unwrap_or_default().into());
                        }
                        _ => {}
                    }
                }
            }
            Some("custom") => {
                out.push(custom(tool, &at)?);
                names.custom.insert(tool.get("name").and_then(Value::as_str).unwrap_or_default().into());
            }
            Some(_) => {} // hosted tools: see the module docs
            None => return Err(Error::invalid(format!("'{at}' needs a 'type'"), Some(&format!("{at}.type")))),
        }
    }
    Ok((out, names))
}

fn tool_name<'a>(tool: &'a Value, at: &str) -> Result<&'a str, Error> {
    tool.get("name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| Error::invalid(format!("Missing required parameter: '{at}.name'"), Some(&format!("{at}.name"))))
}

/// A flat `function` tool as a nested chat tool.
fn function(tool: &Value, namespace: Option<&str>, at: &str) -> Result<Value, Error> {
    let name = ToolNames::chat_name(namespace, tool_name(tool, at)?);
    let mut f = Map::new();
    f.insert("name".into(), json!(name));
    if let Some(d) = tool.get("description").filter(|d| !d.is_null()) {
        f.insert("description".into(), d.clone());
    }
    let parameters = tool.get("parameters").filter(|p| !p.is_null()).cloned();
    f.insert("parameters".into(), parameters.unwrap_or_else(|| json!({"type": "object", "properties": {}})));
    if let Some(strict) = tool.get("strict").filter(|s| !s.is_null()) {
        f.insert("strict".into(), strict.clone());
    }
    Ok(json!({"type": "function", "function": f}))
}

/// A `custom` (freeform) tool as a function taking `{input: string}`; its grammar, if any, goes into the
/// description, as chat has no grammar-constrained tools.
fn custom(tool: &Value, at: &str) -> Result<Value, Error> {
    let name = tool_name(tool, at)?;
    let mut description = tool.get("description").and_then(Value::as_str).unwrap_or_default().to_owned();
    if let Some(format) = tool.get("format").filter(|f| f.get("type").and_then(Value::as_str) == Some("grammar")) {
        let syntax = format.get("syntax").and_then(Value::as_str).unwrap_or("grammar");
        let definition = format.get("definition").and_then(Value::as_str).unwrap_or_default();
        description.push_str(&format!("\n\nThe input must follow this {syntax} grammar:\n{definition}"));
    }
    Ok(json!({"type": "function", "function": {
        "name": name,
        "description": description,
        "parameters": {
            "type": "object",
            "properties": {"input": {"type": "string", "description": "The tool's free-form input."}},
            "required": ["input"],
        },
    }}))
}

/// `tool_choice` in chat's shape; `None` for a hosted tool llmux dropped.
pub(super) fn tool_choice(choice: &Value) -> Result<Option<Value>, Error> {
    Ok(match choice {
        Value::String(s) => match s.as_str() {
            "auto" | "none" | "required" => Some(choice.clone()),
            other => {
                return Err(Error::invalid(
                    format!("Invalid tool_choice '{other}': expected auto, none or required"),
                    Some("tool_choice"),
                ))
            }
        },
        Value::Object(o) => match o.get("type").and_then(Value::as_str) {
            Some("function" | "custom") => {
                let name = o.get("name").and_then(Value::as_str).ok_or_else(|| {
                    Error::invalid("Missing required parameter: 'tool_choice.name'", Some("tool_choice.name"))
                })?;
                let name = ToolNames::chat_name(o.get("namespace").and_then(Value::as_str), name);
                Some(json!({"type": "function", "function": {"name": name}}))
            }
            Some("allowed_tools") => match o.get("mode").and_then(Value::as_str) {
                Some("required") => Some(json!("required")),
                _ => Some(json!("auto")),
            },
            _ => None,
        },
        Value::Null => None,
        _ => return Err(Error::invalid("'tool_choice' must be a string or an object", Some("tool_choice"))),
    })
}
