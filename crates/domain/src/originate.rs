//! Originate (seeds/001's click-to-call): ring an agent, then the customer
//! through the trunk the routing policy picks. This is the policy half:
//! who the agent is, whether they may dial that number (the same
//! toll-fraud gate as their own calls), which trunk. The engine carries it
//! out ([`crate::Engine::originate`]).

use serde::Serialize;

use crate::dialplan::{self, DialPermission, OutboundUsage, Refusal, TrunkState};
use crate::{DomainError, Services};

/// What the engine is asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginatePlan {
    /// The agent's SIP username (their endpoint) and extension.
    pub agent_username: String,
    pub agent_extension: String,
    pub agent_id: i64,
    /// The number as the agent would dial it (what the dial plan reads).
    pub dialled: String,
    /// The number as the trunk gets it (the route's rewrite).
    pub number_for_trunk: String,
    /// The same number in E.164 without `+` (reports).
    pub e164: String,
    pub trunk_id: i64,
    pub trunk_name: String,
    /// The trunk's P-Asserted-Identity, when it sends one.
    pub trunk_pai: Option<String>,
    pub campaign_id: Option<i64>,
    /// The campaign's own trunks in its order, when it has a list: the
    /// engine routes the customer's call through these, not the route's.
    pub campaign_trunks: Option<Vec<i64>>,
    pub lead_id: Option<i64>,
}

/// Why an originate is refused before anything rings.
#[derive(Debug, thiserror::Error)]
pub enum OriginateError {
    /// The dial plan refused the number for this agent (the same causes
    /// as a call the agent dials).
    #[error("{0}")]
    Refused(Refusal),
    #[error(transparent)]
    Domain(#[from] DomainError),
}

/// The figures the API answers with about the trunk chosen.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OriginatedCall {
    pub call_id: String,
    pub trunk: String,
}

impl Services {
    /// Plans ringing the agent at `agent_extension` and then
    /// `customer_phone`: the agent must exist and be active; the number
    /// must be one the dial plan sends out, allowed to the agent (their
    /// `dialPermission`, else the plan's default) and not blocked; the
    /// trunk is the first usable one (registered when it registers) of
    /// the campaign's own list when `campaign_id` has one (in the
    /// campaign's order), else of the route's, by priority. Concurrency
    /// and hourly limits are the engine's to count when the call starts.
    pub async fn plan_originate(
        &self,
        agent_extension: &str,
        customer_phone: &str,
        campaign_id: Option<i64>,
        lead_id: Option<i64>,
    ) -> Result<OriginatePlan, OriginateError> {
        let phone = customer_phone.trim();
        if phone.is_empty()
            || phone.len() > 32
            || !phone
                .chars()
                .enumerate()
                .all(|(i, c)| c.is_ascii_digit() || (i == 0 && c == '+'))
        {
            return Err(DomainError::invalid(
                "customerPhone",
                "digits with an optional leading +, at most 32",
            )
            .into());
        }
        let account = self
            .sip_accounts
            .by_extension(agent_extension.trim())
            .await?
            .filter(|a| a.active)
            .ok_or(DomainError::NotFound { what: "agent" })?;
        let user = self
            .users
            .get(account.user_id)
            .await?
            .ok_or(DomainError::NotFound { what: "agent" })?;
        let effective = self.dialplan().effective().await?;
        let plan = effective.settings.compile()?;
        let permission = user
            .dial_permission
            .as_deref()
            .and_then(DialPermission::parse)
            .unwrap_or(plan.permission);
        let route = dialplan::find_route(&plan.routes, phone)
            .ok_or(OriginateError::Refused(Refusal::NoRoute))?;
        let number_for_trunk = route.rewrite(phone);
        let number = dialplan::authorize(
            &plan.plan,
            &number_for_trunk,
            permission,
            plan.limits,
            OutboundUsage::default(),
        )
        .map_err(OriginateError::Refused)?;
        let trunks = self.trunks().active_settings_with_state().await?;
        let states: Vec<TrunkState> = trunks
            .iter()
            .map(|(id, s, registered)| TrunkState {
                id: *id,
                priority: i32::try_from(s.priority).unwrap_or(i32::MAX),
                active: true,
                registers: s.sends_registration,
                registered: *registered,
                max_channels: s.max_channels,
                channels_in_use: 0,
            })
            .collect();
        let campaign_trunks = match campaign_id {
            Some(c) => self.campaign_trunks().trunk_ids(c).await?,
            None => None,
        };
        let order = dialplan::trunk_order(route, campaign_trunks.as_deref(), &states)
            .map_err(OriginateError::Refused)?;
        let (trunk_id, trunk, _) = trunks
            .iter()
            .find(|(id, _, _)| Some(id) == order.first())
            .ok_or(OriginateError::Refused(Refusal::NoTrunkAvailable))?;
        Ok(OriginatePlan {
            agent_username: account.username,
            agent_extension: account.extension,
            agent_id: account.user_id,
            dialled: phone.to_string(),
            number_for_trunk,
            e164: number.e164,
            trunk_id: *trunk_id,
            trunk_name: trunk.name.clone(),
            trunk_pai: trunk.pai.clone().filter(|_| trunk.send_pai),
            campaign_id,
            campaign_trunks,
            lead_id,
        })
    }
}
