//! One module per area; each exposes `routes() -> Router<AppState>`.

pub mod agents;
pub mod audit;
pub mod auth;
pub mod campaign_trunks;
pub mod dialplan;
pub mod dids;
pub mod events;
pub mod health;
pub mod hr;
pub mod metrics;
pub mod openapi;
pub mod pbx;
pub mod provision;
pub mod ready;
pub mod sip_ws;
pub mod telephony;
pub mod trunks;

use crate::error::AppError;

/// Checks a free-text field's length (characters).
pub fn max_len(field: &str, v: &str, max: usize) -> Result<(), AppError> {
    if v.chars().count() > max {
        return Err(AppError::invalid(
            field,
            format!("{field}: must be at most {max} characters"),
        ));
    }
    Ok(())
}
