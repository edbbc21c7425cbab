//! Azure OpenAI (`azure/<deployment>`): OpenAI's API under the deployment's own path,
//! `{api_base}/openai/deployments/{deployment}/chat/completions?api-version=…`, with the key as `api-key` (or a
//! Microsoft Entra ID token as `Authorization: Bearer`), per
//! <https://learn.microsoft.com/en-us/azure/ai-foundry/openai/reference>. The bodies are OpenAI's, so requests
//! and answers pass through as for any OpenAI-compatible engine; only the URL (made once, when the config is
//! read: [`deployment_base`]) and the key's header differ.

use bytes::Bytes;
use http::header::AUTHORIZATION;
use http::{HeaderName, HeaderValue};

use super::openai::OpenAiCompatible;
use super::{Call, Converted, Provider, StreamConverter, UpstreamRequest};
use crate::error::Error;

/// The `api-version` when neither `litellm_params.api_version` nor `AZURE_API_VERSION` sets one: LiteLLM's
/// `AZURE_DEFAULT_API_VERSION`.
pub const DEFAULT_API_VERSION: &str = "2025-02-01-preview";

/// The base every route of `deployment` is appended to: `{api_base}/openai/deployments/{deployment}` with the
/// API version as the query (routes go before it). An `api_base` that already names a deployment path is kept.
pub fn deployment_base(api_base: &str, deployment: &str, api_version: &str) -> String {
    let (path, query) = api_base.split_once('?').map_or((api_base, None), |(p, q)| (p, Some(q)));
    let path = path.trim_end_matches('/');
    let mut base = if path.contains("/openai/deployments/") {
        path.to_owned()
    } else {
        format!("{path}/openai/deployments/{deployment}")
    };
    let query = query.filter(|q| !q.is_empty());
    match query {
        Some(q) if q.contains("api-version=") => {
            base.push('?');
            base.push_str(q);
        }
        Some(q) => base.push_str(&format!("?{q}&api-version={api_version}")),
        None => base.push_str(&format!("?api-version={api_version}")),
    }
    base
}

/// The Azure OpenAI adapter.
pub struct Azure;

impl Provider for Azure {
    fn build_request(&self, call: &Call<'_>) -> Result<UpstreamRequest, Error> {
        let mut request = OpenAiCompatible.build_request(call)?;
        let engine = call
            .deployment
            .engine()
            .ok_or_else(|| Error::Internal("azure called for a deployment without an engine".into()))?;
        // A key goes as `api-key`; without one, an Entra token configured as `Authorization` stays.
        if let Some(key) = engine.api_key.as_ref().filter(|k| !k.expose().is_empty()) {
            request.headers.remove(AUTHORIZATION);
            let mut value = HeaderValue::from_str(key.expose())
                .map_err(|_| Error::Internal("the configured api_key is not a valid header value".to_owned()))?;
            value.set_sensitive(true);
            request.headers.insert(HeaderName::from_static("api-key"), value);
        }
        Ok(request)
    }

    fn convert_response(&self, call: &Call<'_>, body: Bytes) -> Result<Converted, Error> {
        OpenAiCompatible.convert_response(call, body)
    }

    fn answer_unchanged(&self, call: &Call<'_>) -> bool {
        OpenAiCompatible.answer_unchanged(call)
    }

    fn stream_converter(&self, call: &Call<'_>) -> Option<Box<dyn StreamConverter>> {
        OpenAiCompatible.stream_converter(call)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_litellm_azure_entry_reads_base_version_and_key_from_its_variables() {
        let yaml = "model_list:\n  - {model_name: a, litellm_params: {model: azure/prod-gpt4o}}\n";
        let env = |name: &str| match name {
            "AZURE_API_BASE" => Some("https://lab.openai.azure.com".to_owned()),
            "AZURE_API_VERSION" => Some("2024-10-21".to_owned()),
            "AZURE_API_KEY" => Some("azure-secret".to_owned()),
            _ => None,
        };
        let (config, _) = crate::config::load_str(yaml, &env).unwrap();
        let engine = config.deployments[0].engine().unwrap();
        let uri = engine.uri(super::super::Endpoint::OpenAi(crate::protocol::openai::Operation::Embeddings)).unwrap();
        assert_eq!(uri, "https://lab.openai.azure.com/openai/deployments/prod-gpt4o/embeddings?api-version=2024-10-21");
        assert_eq!(engine.api_key.as_ref().map(|k| k.expose()), Some("azure-secret"));
        let errors = crate::config::load_str(yaml, &|_| None).unwrap_err().to_string();
        assert!(errors.contains("api_base") && errors.contains("AZURE_API_BASE"), "{errors}");
    }

    #[test]
    fn the_deployment_and_version_go_into_the_url() {
        let base = deployment_base("https://lab.openai.azure.com/", "gpt-4o", "2024-10-21");
        assert_eq!(base, "https://lab.openai.azure.com/openai/deployments/gpt-4o?api-version=2024-10-21");
        assert_eq!(
            super::super::join_url(&base, "/chat/completions"),
            "https://lab.openai.azure.com/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21"
        );
        assert_eq!(
            deployment_base("https://h/openai/deployments/x?api-version=1", "ignored", "2"),
            "https://h/openai/deployments/x?api-version=1"
        );
        assert_eq!(
            deployment_base("http://h:1?foo=bar", "d", "v"),
            "http://h:1/openai/deployments/d?foo=bar&api-version=v"
        );
    }
}
