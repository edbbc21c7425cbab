//! Strategy routers (`model: auto_router/...`): each deployment's complexity or semantic router, parsed once every
//! model name it may route to is known. The routers read their own keys (see [`crate::router::complexity`] and
//! [`crate::router::semantic`]) and report relative to `litellm_params`; their problems are filed here under the
//! deployment's path.

use std::sync::Arc;

use crate::config::validate::RouteFiles;
use crate::config::{Deployment, Diagnostics, Target};
use crate::router::complexity::ComplexityRouter;
use crate::router::semantic::SemanticRouter;

/// Parses the router of every `auto_router/...` deployment, now that every model name it may route to is known:
/// `auto_router/complexity_router` reads `complexity_router_config`, any other name is a semantic router whose
/// routes come inline or from a file `load` has read (`route_files`).
pub(crate) fn auto_routers(
    deployments: &mut [Deployment],
    is_name: &dyn Fn(&str) -> bool,
    route_files: &RouteFiles,
    diags: &mut Diagnostics,
) {
    for d in deployments.iter_mut() {
        let Target::AutoRouter { kind, complexity, semantic } = &mut d.target else { continue };
        let at = format!("model_list[{}].litellm_params", d.index);
        let mut found = Diagnostics::default();
        if kind == "complexity_router" {
            let parsed = ComplexityRouter::from_params(&d.public_params, is_name, &mut found);
            diags.extend_under(&at, found);
            *complexity = parsed.map(Arc::new);
            continue;
        }
        let read = |path: &str| route_files.get(path).cloned().unwrap_or_else(|| Err(NOT_READ.to_owned()));
        let parsed = SemanticRouter::from_params(&d.public_params, is_name, &read, &mut found);
        diags.extend_under(&at, found);
        if let Some(router) = &parsed {
            if router.embedding_model == d.model_name {
                diags.error(format!("{at}.auto_router_embedding_model"), "must not be the router itself");
            }
        }
        *semantic = parsed.map(Arc::new);
    }
}

/// Why a route file is missing from what `load` read: only a config built without `load` has none.
const NOT_READ: &str = "not read with the config";
