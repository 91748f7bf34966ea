//! /api/telephony/campaigns/{id}/trunks: a campaign's own trunk list
//! (seeds/001 `campaign_trunks`), admin only, every change audited. A call
//! originated for the campaign goes out through these trunks, in this
//! order, instead of the dial plan's. Campaigns have no table yet: any
//! positive id names one.

use axum::extract::State;
use domain::campaign_trunks::{CampaignTrunk, CampaignTrunksInput};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Admin;
use crate::doc;
use crate::error::AppError;
use crate::extract::{AppJson, AppPath};
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(campaign_trunks_get, campaign_trunks_put))
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CampaignTrunkList {
    pub success: bool,
    pub campaign_id: i64,
    pub total: usize,
    /// Lowest priority first: the order calls try them in.
    pub trunks: Vec<CampaignTrunk>,
}

fn answer(campaign_id: i64, trunks: Vec<CampaignTrunk>) -> AppJson<CampaignTrunkList> {
    AppJson(CampaignTrunkList {
        success: true,
        campaign_id,
        total: trunks.len(),
        trunks,
    })
}

/// A campaign's trunks.
///
/// Lowest priority first; empty when the campaign uses the dial plan's
/// trunks. Roles: admin.
#[utoipa::path(
    get,
    path = "/api/telephony/campaigns/{id}/trunks",
    tag = "trunks",
    params(("id" = i64, Path, description = "Campaign id (positive)")),
    security(("cookieAuth" = []), ("bearerAuth" = [])),
    responses(
        (status = 200, description = "The campaign's trunks", body = CampaignTrunkList),
        doc::Role,
        doc::BadInput,
        doc::NotFound,
    ),
)]
async fn campaign_trunks_get(
    State(st): State<AppState>,
    Admin(_): Admin,
    AppPath(id): AppPath<i64>,
) -> Result<AppJson<CampaignTrunkList>, AppError> {
    Ok(answer(id, st.services.campaign_trunks().list(id).await?))
}

/// Replace a campaign's trunks.
///
/// The whole list (`{"trunks": [{"trunkId": 2, "priority": 1}]}`;
/// `priority` 0..1000, 10 when absent) replaces the old one; an empty
/// list removes it. Every trunk must exist and appear once; nothing
/// changes when any entry is refused (422 names the field). Roles: admin.
#[utoipa::path(
    put,
    path = "/api/telephony/campaigns/{id}/trunks",
    tag = "trunks",
    params(("id" = i64, Path, description = "Campaign id (positive)")),
    request_body = CampaignTrunksInput,
    security(("cookieAuth" = []), ("bearerAuth" = [])),
    responses(
        (status = 200, description = "The campaign's trunks as saved", body = CampaignTrunkList),
        doc::Role,
        doc::JsonBody,
        doc::NotFound,
    ),
)]
async fn campaign_trunks_put(
    State(st): State<AppState>,
    Admin(u): Admin,
    AppPath(id): AppPath<i64>,
    AppJson(b): AppJson<CampaignTrunksInput>,
) -> Result<AppJson<CampaignTrunkList>, AppError> {
    let trunks = st
        .services
        .campaign_trunks()
        .replace(&u.actor(), id, &b)
        .await?;
    Ok(answer(id, trunks))
}
