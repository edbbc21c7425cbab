//! Keeps secrets out of logs and error bodies.
//!
//! Engine error messages can echo a request's headers or URL; every message that leaves llmux passes
//! through [`redact`], which masks the configured secrets and anything shaped like a bearer token or API key.

use std::sync::RwLock;

static SECRETS: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// Registers the secrets of a loaded config (master key, engine keys). Each reload adds its own; a secret
/// stays masked after a reload drops it, since old log lines or in-flight errors may still carry it.
pub fn register_secrets(secrets: Vec<String>) {
    let mut known = SECRETS.write().unwrap_or_else(|e| e.into_inner());
    for secret in secrets.into_iter().filter(|s| s.len() >= 4) {
        if !known.contains(&secret) {
            known.push(secret);
        }
    }
}

/// `text` with every registered secret and every `sk-…`/`Bearer …` token replaced by `***`.
pub fn redact(text: &str) -> String {
    let mut out = text.to_owned();
    for secret in SECRETS.read().unwrap_or_else(|e| e.into_inner()).iter() {
        if out.contains(secret.as_str()) {
            out = out.replace(secret.as_str(), "***");
        }
    }
    mask_tokens(&out)
}

/// Masks the word after `Bearer ` and words starting with `sk-`.
fn mask_tokens(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut mask_next = false;
    for (i, word) in text.split(' ').enumerate() {
        if i > 0 {
            out.push(' ');
        }
        let is_key = word.starts_with("sk-") && word.len() > 6;
        if (mask_next && !word.is_empty()) || is_key {
            out.push_str("***");
        } else {
            out.push_str(word);
        }
        mask_next = word.eq_ignore_ascii_case("bearer");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_bearer_tokens_and_sk_keys() {
        assert_eq!(mask_tokens("bad header Bearer abc123 here"), "bad header Bearer *** here");
        assert_eq!(mask_tokens("key sk-1234567890 rejected"), "key *** rejected");
        assert_eq!(mask_tokens("model sk- ok"), "model sk- ok");
    }
}
