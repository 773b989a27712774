//! The Tenant aggregate (seed 003): registration, plan (tier) with its limits and feature
//! flags, settings, suspension and soft deletion. The tenant stream also holds the seats
//! (active users), so that `max_users` is enforced by the same optimistic concurrency that
//! guards every stream: two admins adding the last seat at once cannot both win.

use crate::aggregate::{Aggregate, CommandContext, Tier};
use crate::ids::{TenantId, UserId, ValidationError};
use crate::rules::TextRule;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeSet;

pub const COMPANY_NAME_MAX_CHARS: usize = 200;
/// The settings key that holds custom branding, a feature of the premium tiers.
pub const BRANDING_KEY: &str = "branding";
/// The settings key of the tenant's currency (ISO 4217; USD when absent).
pub const CURRENCY_KEY: &str = "currency";
/// The settings key of what a MEMBER sees of the tenant's customers (`CustomerAccess`).
pub const CUSTOMER_ACCESS_KEY: &str = "customer_access";
/// The setting that records every staff read of a client's data (`true`; off by default).
pub const AUDIT_READS_KEY: &str = "audit_reads";
/// Largest `settings` document, serialized.
pub const SETTINGS_MAX_BYTES: usize = 16 * 1024;

/// What a tier allows (seed 003's `limits`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    pub max_products: u32,
    pub max_orders: u32,
    pub max_users: u32,
    /// The longest prompt of an AI query, in characters.
    pub max_prompt_chars: u32,
    /// AI tokens the tenant's completed queries may use in a calendar month (UTC).
    pub ai_tokens_per_month: u64,
    /// Cases each of the tenant's customers may open in any hour.
    pub cases_per_customer_per_hour: u32,
    /// Emails the tenant may queue in a calendar day (UTC).
    pub messages_per_day: u32,
}

/// What a tier switches on (seed 003's `features`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Features {
    pub advanced_analytics: bool,
    pub custom_branding: bool,
    pub api_access: bool,
}

impl Tier {
    pub fn limits(self) -> Limits {
        match self {
            Tier::Basic => Limits {
                max_products: 100,
                max_orders: 1_000,
                max_users: 10,
                max_prompt_chars: 4_000,
                ai_tokens_per_month: 100_000,
                cases_per_customer_per_hour: 10,
                messages_per_day: 100,
            },
            Tier::Premium => Limits {
                max_products: 1_000,
                max_orders: 10_000,
                max_users: 50,
                max_prompt_chars: 16_000,
                ai_tokens_per_month: 1_000_000,
                cases_per_customer_per_hour: 30,
                messages_per_day: 1_000,
            },
            Tier::Enterprise => Limits {
                max_products: 100_000,
                max_orders: 1_000_000,
                max_users: 1_000,
                max_prompt_chars: 64_000,
                ai_tokens_per_month: 10_000_000,
                cases_per_customer_per_hour: 100,
                messages_per_day: 10_000,
            },
        }
    }

    pub fn features(self) -> Features {
        Features {
            advanced_analytics: self != Tier::Basic,
            custom_branding: self != Tier::Basic,
            api_access: true,
        }
    }
}

/// A company name: not blank, no control characters, at most `COMPANY_NAME_MAX_CHARS`
/// characters; kept without surrounding whitespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompanyName(String);

impl CompanyName {
    pub const RULE: TextRule = TextRule {
        no_control: true,
        not_blank: true,
        ..TextRule::chars(
            1,
            COMPANY_NAME_MAX_CHARS,
            "The company's name; surrounding whitespace is removed.",
        )
    };

    pub fn parse(value: &str) -> Result<Self, ValidationError> {
        Self::RULE.check("company_name", value)?;
        Ok(Self(value.trim().to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

crate::rules::text_serde!(CompanyName);
crate::rules::text_schema!(CompanyName, "CompanyName");

/// Free-form tenant settings: a JSON object of bounded size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(into = "Value")]
pub struct Settings(Value);

impl<'de> Deserialize<'de> for Settings {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Self::parse(Value::deserialize(d)?).map_err(|e| serde::de::Error::custom(e.reason))
    }
}

#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for Settings {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::schema::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::Object)
            .property(CURRENCY_KEY, crate::money::Currency::RULE.schema())
            .property(
                CUSTOMER_ACCESS_KEY,
                utoipa::openapi::schema::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::String)
                    .enum_values(Some(["all", "assigned"]))
                    .default(Some(Value::from("all")))
                    .description(Some(
                        "what a MEMBER sees of the tenant's customers: `all`, or only those assigned to them (`PUT /customers/{id}/agent`), with their accounts, transactions, cases, documents and portal users; the rest is 404",
                    )),
            )
            .property(
                AUDIT_READS_KEY,
                utoipa::openapi::schema::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::Boolean)
                    .default(Some(Value::Bool(false)))
                    .description(Some(
                        "`true`: every read of a client's data by staff (customers, accounts, transactions, cases, documents) appends a ClientDataRead event, shown by `GET /audit/events?type=ClientDataRead`; it costs a write per read",
                    )),
            )
            .description(Some(format!(
                "A JSON object of at most {SETTINGS_MAX_BYTES} bytes; the `{BRANDING_KEY}` key needs the custom_branding feature; `{CURRENCY_KEY}` (ISO 4217, default USD) is the currency of prices and orders; `{CUSTOMER_ACCESS_KEY}` scopes what MEMBERs see of customers; `{AUDIT_READS_KEY}` records staff reads of client data."
            )))
            .into()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for Settings {}

impl Settings {
    pub fn parse(value: Value) -> Result<Self, ValidationError> {
        if !value.is_object() {
            return Err(ValidationError::new("settings", "must be a JSON object"));
        }
        if let Some(c) = value.get(CURRENCY_KEY) {
            c.as_str()
                .map(crate::money::Currency::parse)
                .transpose()?
                .ok_or_else(|| ValidationError::new("settings", "currency: must be a string"))?;
        }
        if let Some(a) = value.get(CUSTOMER_ACCESS_KEY) {
            a.as_str().and_then(CustomerAccess::parse).ok_or_else(|| {
                ValidationError::new(
                    "settings",
                    "customer_access: must be \"all\" or \"assigned\"",
                )
            })?;
        }
        if value.get(AUDIT_READS_KEY).is_some_and(|a| !a.is_boolean()) {
            return Err(ValidationError::new(
                "settings",
                "audit_reads: must be true or false",
            ));
        }
        let size = value.to_string().len();
        if size > SETTINGS_MAX_BYTES {
            return Err(ValidationError::new(
                "settings",
                format!("must be at most {SETTINGS_MAX_BYTES} bytes, got {size}"),
            ));
        }
        Ok(Self(value))
    }

    pub fn as_value(&self) -> &Value {
        &self.0
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self(Value::Object(serde_json::Map::new()))
    }
}

impl TryFrom<Value> for Settings {
    type Error = ValidationError;
    fn try_from(value: Value) -> Result<Self, Self::Error> {
        Self::parse(value)
    }
}

impl From<Settings> for Value {
    fn from(value: Settings) -> Self {
        value.0
    }
}

/// What a MEMBER (the seed's agent) sees of the tenant's customers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CustomerAccess {
    /// Every customer of the tenant.
    #[default]
    All,
    /// Only the customers assigned to them, and what belongs to those.
    Assigned,
}

impl CustomerAccess {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "all" => Some(Self::All),
            "assigned" => Some(Self::Assigned),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TenantStatus {
    #[default]
    Active,
    Suspended,
    Deleted,
}

impl TenantStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Suspended => "suspended",
            Self::Deleted => "deleted",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TenantCommand {
    Register {
        tenant_id: TenantId,
        company_name: CompanyName,
        admin_email: String,
        tier: Tier,
    },
    Update {
        company_name: Option<CompanyName>,
        settings: Option<Settings>,
        tier: Option<Tier>,
    },
    Suspend {
        reason: Option<String>,
    },
    Reactivate,
    Delete,
    /// A user becomes active (registered or re-enabled): needs a free seat.
    TakeSeat {
        user_id: UserId,
    },
    /// A user stops being active (disabled).
    ReleaseSeat {
        user_id: UserId,
    },
    /// A user becomes an active OWNER (the first user, a promotion, an OWNER re-enabled).
    AddOwner {
        user_id: UserId,
    },
    /// An OWNER stops being one (demoted, disabled); never the last.
    RemoveOwner {
        user_id: UserId,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantRegistered {
    pub tenant_id: String,
    pub company_name: CompanyName,
    pub admin_email: String,
    pub tier: Tier,
    #[serde(with = "crate::time::rfc3339")]
    pub registered_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantSettingsUpdated {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub company_name: Option<CompanyName>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settings: Option<Settings>,
    #[serde(with = "crate::time::rfc3339")]
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantTierChanged {
    pub from: Tier,
    pub to: Tier,
    #[serde(with = "crate::time::rfc3339")]
    pub changed_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantSuspended {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(with = "crate::time::rfc3339")]
    pub suspended_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantReactivated {
    #[serde(with = "crate::time::rfc3339")]
    pub reactivated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantDeleted {
    #[serde(with = "crate::time::rfc3339")]
    pub deleted_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantSeat {
    pub user_id: UserId,
}

crate::domain_events!(TenantEvent, "tenant" {
    Registered(TenantRegistered) = "TenantRegistered",
    SettingsUpdated(TenantSettingsUpdated) = "TenantSettingsUpdated",
    TierChanged(TenantTierChanged) = "TenantTierChanged",
    Suspended(TenantSuspended) = "TenantSuspended",
    Reactivated(TenantReactivated) = "TenantReactivated",
    Deleted(TenantDeleted) = "TenantDeleted",
    SeatTaken(TenantSeat) = "TenantSeatTaken",
    SeatReleased(TenantSeat) = "TenantSeatReleased",
    OwnerAdded(TenantSeat) = "TenantOwnerAdded",
    OwnerRemoved(TenantSeat) = "TenantOwnerRemoved",
});

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TenantError {
    #[error("the tenant is already registered")]
    AlreadyRegistered,
    #[error("no such tenant")]
    NotFound,
    #[error("the tenant is deleted")]
    Deleted,
    #[error("the tenant is suspended")]
    Suspended,
    /// The tier does not include a feature the command needs.
    #[error("the {} tier does not include {feature}", tier.as_str())]
    FeatureNotInTier { tier: Tier, feature: &'static str },
    /// A tier limit would be exceeded; names the limit and its value.
    #[error("the {} tier allows {limit} = {value}; the tenant would need {needed}", tier.as_str())]
    LimitReached {
        tier: Tier,
        limit: &'static str,
        value: u32,
        needed: u32,
    },
    /// The tenant's last active OWNER cannot be demoted or disabled.
    #[error(
        "the tenant's last active OWNER cannot be demoted or disabled: make another user OWNER first"
    )]
    LastOwner,
}

/// The registration, as kept in state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    pub tenant_id: String,
    pub admin_email: String,
    pub registered_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tenant {
    pub registered: Option<Registration>,
    pub company_name: Option<CompanyName>,
    pub tier: Tier,
    pub status: TenantStatus,
    pub settings: Settings,
    /// Active users.
    pub seats: BTreeSet<UserId>,
    /// Active OWNERs (empty for a tenant from before the role, until its first ADMIN is
    /// made OWNER at a sign-in).
    pub owners: BTreeSet<UserId>,
    pub updated_at: Option<DateTime<Utc>>,
}

impl Tenant {
    pub fn limits(&self) -> Limits {
        self.tier.limits()
    }

    /// The currency every price and order of the tenant is in.
    pub fn currency(&self) -> crate::money::Currency {
        self.settings
            .as_value()
            .get(CURRENCY_KEY)
            .and_then(|c| c.as_str())
            .and_then(|c| crate::money::Currency::parse(c).ok())
            .unwrap_or_default()
    }

    /// What its MEMBERs see of its customers (`all` when the setting is absent).
    pub fn customer_access(&self) -> CustomerAccess {
        self.settings
            .as_value()
            .get(CUSTOMER_ACCESS_KEY)
            .and_then(|a| a.as_str())
            .and_then(CustomerAccess::parse)
            .unwrap_or_default()
    }

    /// Whether staff reads of its clients' data are recorded (off when the setting is absent).
    pub fn audit_reads(&self) -> bool {
        self.settings
            .as_value()
            .get(AUDIT_READS_KEY)
            .and_then(Value::as_bool)
            .unwrap_or(false)
    }

    /// `Err(LimitReached)` naming `limit` when the tier's `value` would be passed.
    pub fn limit_reached(&self, limit: &'static str, value: u32) -> TenantError {
        TenantError::LimitReached {
            tier: self.tier,
            limit,
            value,
            needed: value.saturating_add(1),
        }
    }

    /// `Ok` when the tenant exists and may act: neither suspended nor deleted.
    pub fn check_active(&self) -> Result<(), TenantError> {
        if self.registered.is_none() {
            return Err(TenantError::NotFound);
        }
        match self.status {
            TenantStatus::Active => Ok(()),
            TenantStatus::Suspended => Err(TenantError::Suspended),
            TenantStatus::Deleted => Err(TenantError::Deleted),
        }
    }

    fn seat_limit(&self, tier: Tier, needed: usize) -> Result<(), TenantError> {
        let value = tier.limits().max_users;
        let needed = u32::try_from(needed).unwrap_or(u32::MAX);
        if needed > value {
            return Err(TenantError::LimitReached {
                tier,
                limit: "max_users",
                value,
                needed,
            });
        }
        Ok(())
    }
}

impl Aggregate for Tenant {
    const KIND: &'static str = "tenant";
    type Command = TenantCommand;
    type Event = TenantEvent;
    type Error = TenantError;

    fn decide(
        &self,
        command: &TenantCommand,
        ctx: &CommandContext,
    ) -> Result<Vec<TenantEvent>, TenantError> {
        let now = ctx.now;
        if let TenantCommand::Register {
            tenant_id,
            company_name,
            admin_email,
            tier,
        } = command
        {
            if self.registered.is_some() {
                return Err(TenantError::AlreadyRegistered);
            }
            return Ok(vec![TenantEvent::Registered(TenantRegistered {
                tenant_id: tenant_id.to_string(),
                company_name: company_name.clone(),
                admin_email: admin_email.clone(),
                tier: *tier,
                registered_at: now,
            })]);
        }
        if self.registered.is_none() {
            return Err(TenantError::NotFound);
        }
        match command {
            TenantCommand::Register { .. } => Err(TenantError::AlreadyRegistered),
            // Operators may always lift a suspension or delete; nothing undoes a deletion.
            TenantCommand::Reactivate => match self.status {
                TenantStatus::Deleted => Err(TenantError::Deleted),
                TenantStatus::Active => Ok(vec![]),
                TenantStatus::Suspended => Ok(vec![TenantEvent::Reactivated(TenantReactivated {
                    reactivated_at: now,
                })]),
            },
            TenantCommand::Suspend { reason } => match self.status {
                TenantStatus::Deleted => Err(TenantError::Deleted),
                TenantStatus::Suspended => Ok(vec![]),
                TenantStatus::Active => Ok(vec![TenantEvent::Suspended(TenantSuspended {
                    reason: reason.clone(),
                    suspended_at: now,
                })]),
            },
            TenantCommand::Delete => match self.status {
                TenantStatus::Deleted => Err(TenantError::Deleted),
                _ => Ok(vec![TenantEvent::Deleted(TenantDeleted {
                    deleted_at: now,
                })]),
            },
            TenantCommand::Update {
                company_name,
                settings,
                tier,
            } => {
                self.check_active()?;
                let mut events = Vec::new();
                let name_changes = company_name
                    .as_ref()
                    .filter(|n| self.company_name.as_ref() != Some(*n));
                let settings_change = settings.as_ref().filter(|s| **s != self.settings);
                let tier_after = tier.unwrap_or(self.tier);
                let settings_after = settings_change.unwrap_or(&self.settings);
                if settings_after.as_value().get(BRANDING_KEY).is_some()
                    && !tier_after.features().custom_branding
                {
                    return Err(TenantError::FeatureNotInTier {
                        tier: tier_after,
                        feature: "custom_branding",
                    });
                }
                if name_changes.is_some() || settings_change.is_some() {
                    events.push(TenantEvent::SettingsUpdated(TenantSettingsUpdated {
                        company_name: name_changes.cloned(),
                        settings: settings_change.cloned(),
                        updated_at: now,
                    }));
                }
                if let Some(to) = tier.filter(|t| *t != self.tier) {
                    self.seat_limit(to, self.seats.len())?;
                    events.push(TenantEvent::TierChanged(TenantTierChanged {
                        from: self.tier,
                        to,
                        changed_at: now,
                    }));
                }
                Ok(events)
            }
            TenantCommand::TakeSeat { user_id } => {
                self.check_active()?;
                if self.seats.contains(user_id) {
                    return Ok(vec![]);
                }
                self.seat_limit(self.tier, self.seats.len() + 1)?;
                Ok(vec![TenantEvent::SeatTaken(TenantSeat {
                    user_id: user_id.clone(),
                })])
            }
            TenantCommand::ReleaseSeat { user_id } => {
                self.check_active()?;
                if !self.seats.contains(user_id) {
                    return Ok(vec![]);
                }
                Ok(vec![TenantEvent::SeatReleased(TenantSeat {
                    user_id: user_id.clone(),
                })])
            }
            TenantCommand::AddOwner { user_id } => {
                if self.owners.contains(user_id) {
                    return Ok(vec![]);
                }
                Ok(vec![TenantEvent::OwnerAdded(TenantSeat {
                    user_id: user_id.clone(),
                })])
            }
            TenantCommand::RemoveOwner { user_id } => {
                if !self.owners.contains(user_id) {
                    return Ok(vec![]);
                }
                if self.owners.len() == 1 {
                    return Err(TenantError::LastOwner);
                }
                Ok(vec![TenantEvent::OwnerRemoved(TenantSeat {
                    user_id: user_id.clone(),
                })])
            }
        }
    }

    fn apply(&mut self, event: &TenantEvent) {
        match event {
            TenantEvent::Registered(e) => {
                self.registered = Some(Registration {
                    tenant_id: e.tenant_id.clone(),
                    admin_email: e.admin_email.clone(),
                    registered_at: e.registered_at,
                });
                self.company_name = Some(e.company_name.clone());
                self.tier = e.tier;
                self.status = TenantStatus::Active;
                self.updated_at = Some(e.registered_at);
            }
            TenantEvent::SettingsUpdated(e) => {
                if let Some(n) = &e.company_name {
                    self.company_name = Some(n.clone());
                }
                if let Some(s) = &e.settings {
                    self.settings = s.clone();
                }
                self.updated_at = Some(e.updated_at);
            }
            TenantEvent::TierChanged(e) => {
                self.tier = e.to;
                self.updated_at = Some(e.changed_at);
            }
            TenantEvent::Suspended(e) => {
                self.status = TenantStatus::Suspended;
                self.updated_at = Some(e.suspended_at);
            }
            TenantEvent::Reactivated(e) => {
                self.status = TenantStatus::Active;
                self.updated_at = Some(e.reactivated_at);
            }
            TenantEvent::Deleted(e) => {
                self.status = TenantStatus::Deleted;
                self.updated_at = Some(e.deleted_at);
            }
            TenantEvent::SeatTaken(e) => {
                self.seats.insert(e.user_id.clone());
            }
            TenantEvent::SeatReleased(e) => {
                self.seats.remove(&e.user_id);
            }
            TenantEvent::OwnerAdded(e) => {
                self.owners.insert(e.user_id.clone());
            }
            TenantEvent::OwnerRemoved(e) => {
                self.owners.remove(&e.user_id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::{Actor, Role};

    fn ctx() -> CommandContext {
        CommandContext {
            actor: Actor {
                user_id: UserId::parse("root").unwrap(),
                role: Role::Admin,
            },
            now: Utc::now(),
        }
    }

    fn given(events: &[TenantEvent]) -> Tenant {
        let mut t = Tenant::default();
        for e in events {
            t.apply(e);
        }
        t
    }

    fn registered(tier: Tier) -> TenantEvent {
        TenantEvent::Registered(TenantRegistered {
            tenant_id: "t1".into(),
            company_name: CompanyName::parse("Acme").unwrap(),
            admin_email: "a@acme.test".into(),
            tier,
            registered_at: Utc::now(),
        })
    }

    fn seat(n: usize) -> TenantEvent {
        TenantEvent::SeatTaken(TenantSeat {
            user_id: UserId::parse(format!("u{n}")).unwrap(),
        })
    }

    #[test]
    fn the_last_seat_of_a_tier_is_the_limit() {
        let mut history = vec![registered(Tier::Basic)];
        history.extend((0..10).map(seat));
        let t = given(&history);
        let err = t
            .decide(
                &TenantCommand::TakeSeat {
                    user_id: UserId::parse("u10").unwrap(),
                },
                &ctx(),
            )
            .unwrap_err();
        assert_eq!(
            err,
            TenantError::LimitReached {
                tier: Tier::Basic,
                limit: "max_users",
                value: 10,
                needed: 11
            }
        );
        // A seat already held is not taken twice.
        let again = t
            .decide(
                &TenantCommand::TakeSeat {
                    user_id: UserId::parse("u3").unwrap(),
                },
                &ctx(),
            )
            .unwrap();
        assert!(again.is_empty());
    }

    #[test]
    fn a_downgrade_below_the_seats_in_use_is_refused() {
        let mut history = vec![registered(Tier::Premium)];
        history.extend((0..11).map(seat));
        let t = given(&history);
        let update = TenantCommand::Update {
            company_name: None,
            settings: None,
            tier: Some(Tier::Basic),
        };
        assert!(matches!(
            t.decide(&update, &ctx()),
            Err(TenantError::LimitReached {
                limit: "max_users",
                value: 10,
                ..
            })
        ));
    }

    #[test]
    fn suspended_and_deleted_tenants_refuse_changes() {
        let suspended = given(&[
            registered(Tier::Basic),
            TenantEvent::Suspended(TenantSuspended {
                reason: None,
                suspended_at: Utc::now(),
            }),
        ]);
        let take = TenantCommand::TakeSeat {
            user_id: UserId::parse("u").unwrap(),
        };
        assert_eq!(
            suspended.decide(&take, &ctx()).unwrap_err(),
            TenantError::Suspended
        );
        let events = suspended
            .decide(&TenantCommand::Reactivate, &ctx())
            .unwrap();
        assert!(matches!(events[..], [TenantEvent::Reactivated(_)]));
        let deleted = given(&[
            registered(Tier::Basic),
            TenantEvent::Deleted(TenantDeleted {
                deleted_at: Utc::now(),
            }),
        ]);
        assert_eq!(
            deleted.decide(&TenantCommand::Reactivate, &ctx()),
            Err(TenantError::Deleted)
        );
        assert_eq!(deleted.decide(&take, &ctx()), Err(TenantError::Deleted));
    }

    #[test]
    fn branding_needs_a_tier_with_custom_branding() {
        let basic = given(&[registered(Tier::Basic)]);
        let brand = |tier| TenantCommand::Update {
            company_name: None,
            settings: Some(
                Settings::parse(serde_json::json!({"branding": {"color": "#123"}})).unwrap(),
            ),
            tier,
        };
        assert_eq!(
            basic.decide(&brand(None), &ctx()),
            Err(TenantError::FeatureNotInTier {
                tier: Tier::Basic,
                feature: "custom_branding"
            })
        );
        // Upgrading in the same update is enough; downgrading a branded tenant is not.
        assert!(basic.decide(&brand(Some(Tier::Premium)), &ctx()).is_ok());
        let mut branded = given(&[registered(Tier::Premium)]);
        for e in branded.decide(&brand(None), &ctx()).unwrap() {
            branded.apply(&e);
        }
        let down = TenantCommand::Update {
            company_name: None,
            settings: None,
            tier: Some(Tier::Basic),
        };
        assert!(matches!(
            branded.decide(&down, &ctx()),
            Err(TenantError::FeatureNotInTier { .. })
        ));
    }

    #[test]
    fn an_update_writes_only_what_changes() {
        let t = given(&[registered(Tier::Basic)]);
        let same = TenantCommand::Update {
            company_name: Some(CompanyName::parse("Acme").unwrap()),
            settings: None,
            tier: Some(Tier::Basic),
        };
        assert!(t.decide(&same, &ctx()).unwrap().is_empty());
        let up = TenantCommand::Update {
            company_name: None,
            settings: Some(Settings::parse(serde_json::json!({"theme": "dark"})).unwrap()),
            tier: Some(Tier::Enterprise),
        };
        let events = t.decide(&up, &ctx()).unwrap();
        assert!(matches!(
            events[..],
            [TenantEvent::SettingsUpdated(_), TenantEvent::TierChanged(_)]
        ));
    }

    #[test]
    fn events_round_trip_through_their_payloads() {
        use crate::aggregate::DomainEvent;
        for e in [registered(Tier::Premium), seat(1)] {
            let back = TenantEvent::from_stored(e.event_type(), 1, &e.to_payload()).unwrap();
            assert_eq!(back, e);
        }
        assert!(Settings::parse(serde_json::json!([1])).is_err());
        assert!(Settings::parse(serde_json::json!({"customer_access": "some"})).is_err());
        assert!(Settings::parse(serde_json::json!({"customer_access": true})).is_err());
        let mut t = Tenant::default();
        assert_eq!(t.customer_access(), CustomerAccess::All);
        t.settings = Settings::parse(serde_json::json!({"customer_access": "assigned"})).unwrap();
        assert_eq!(t.customer_access(), CustomerAccess::Assigned);
        assert!(!t.audit_reads());
        assert!(Settings::parse(serde_json::json!({"audit_reads": "yes"})).is_err());
        t.settings = Settings::parse(serde_json::json!({"audit_reads": true})).unwrap();
        assert!(t.audit_reads());
        assert!(CompanyName::parse("  ").is_err());
    }
}
