//! What every handler gets: the domain services, the engine (when one is
//! running) and the HTTP-side configuration.

use std::sync::Arc;

use crate::ApiConfig;

/// Everything handlers need. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub services: domain::Services,
    /// The PBX engine the binary wired (builtin, Asterisk or relay); `None`
    /// when none runs (tests of the plain API, `serve` without SIP). The
    /// API names no concrete engine.
    pub engine: Option<Arc<dyn domain::Engine>>,
    pub config: Arc<ApiConfig>,
}

impl AppState {
    pub fn new(
        services: domain::Services,
        engine: Option<Arc<dyn domain::Engine>>,
        config: ApiConfig,
    ) -> Self {
        Self {
            services,
            engine,
            config: Arc::new(config),
        }
    }
}
