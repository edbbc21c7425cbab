//! One file per config section: each reads its part of the tree with the shared [`super::reader`] and reports
//! every problem at its YAML path. [`super::validate`] calls them in order and assembles the [`super::Config`].

pub(crate) mod auto_router;
pub(crate) mod engine;
pub(crate) mod general_settings;
pub(crate) mod hosts;
pub(crate) mod litellm_settings;
pub(crate) mod llmux_settings;
pub(crate) mod model_list;
pub(crate) mod router_settings;
pub(crate) mod telemetry;
pub(crate) mod wake;
