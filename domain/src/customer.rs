//! The Customer aggregate (seed 000's customers, seed 001's Salesforce as the source of
//! truth): one Account of the tenant's Salesforce org as last synced. A sync hands each
//! record in; it becomes CustomerImported, or CustomerUpdated with only the fields that
//! changed, or nothing when nothing did. A deleted Account becomes CustomerDeleted.

use crate::aggregate::{Aggregate, CommandContext};
use crate::ids::UserId;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What Chronicle keeps of an Account and its primary Contact.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerFields {
    pub name: String,
    pub industry: Option<String>,
    pub phone: Option<String>,
    pub website: Option<String>,
    pub billing_city: Option<String>,
    pub billing_country: Option<String>,
    pub contact_name: Option<String>,
    pub contact_email: Option<String>,
}

/// One of `CustomerFields`, as a CustomerUpdated names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CustomerField {
    Name,
    Industry,
    Phone,
    Website,
    BillingCity,
    BillingCountry,
    ContactName,
    ContactEmail,
}

impl CustomerFields {
    fn get(&self, f: CustomerField) -> Option<&String> {
        use CustomerField::*;
        match f {
            Name => Some(&self.name),
            Industry => self.industry.as_ref(),
            Phone => self.phone.as_ref(),
            Website => self.website.as_ref(),
            BillingCity => self.billing_city.as_ref(),
            BillingCountry => self.billing_country.as_ref(),
            ContactName => self.contact_name.as_ref(),
            ContactEmail => self.contact_email.as_ref(),
        }
    }

    fn set(&mut self, f: CustomerField, v: Option<String>) {
        use CustomerField::*;
        match f {
            Name => self.name = v.unwrap_or_default(),
            Industry => self.industry = v,
            Phone => self.phone = v,
            Website => self.website = v,
            BillingCity => self.billing_city = v,
            BillingCountry => self.billing_country = v,
            ContactName => self.contact_name = v,
            ContactEmail => self.contact_email = v,
        }
    }

    /// The fields of `new` that differ from these, with their new values.
    pub fn changes_to(&self, new: &CustomerFields) -> BTreeMap<CustomerField, Option<String>> {
        use CustomerField::*;
        [
            Name,
            Industry,
            Phone,
            Website,
            BillingCity,
            BillingCountry,
            ContactName,
            ContactEmail,
        ]
        .into_iter()
        .filter(|f| self.get(*f) != new.get(*f))
        .map(|f| (f, new.get(f).cloned()))
        .collect()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(clippy::large_enum_variant)] // built one at a time, never stored in bulk
pub enum CustomerCommand {
    /// The record as Salesforce has it now.
    Sync {
        customer_id: String,
        fields: CustomerFields,
        system_modstamp: DateTime<Utc>,
        sync_id: String,
    },
    /// Salesforce deleted it.
    Delete {
        system_modstamp: DateTime<Utc>,
        sync_id: String,
    },
    /// An ADMIN makes `agent` (a staff user) the customer's agent, or leaves it with none.
    AssignAgent { agent: Option<UserId> },
}

/// Why a command on a customer was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CustomerError {
    /// Never synced, or deleted in Salesforce.
    #[error("no such customer")]
    NotFound,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerImported {
    pub customer_id: String,
    pub fields: CustomerFields,
    #[serde(with = "crate::time::rfc3339")]
    pub system_modstamp: DateTime<Utc>,
    pub sync_id: String,
    #[serde(with = "crate::time::rfc3339")]
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerUpdated {
    /// Only the fields that changed, with their new values (null: now empty).
    pub changes: BTreeMap<CustomerField, Option<String>>,
    #[serde(with = "crate::time::rfc3339")]
    pub system_modstamp: DateTime<Utc>,
    pub sync_id: String,
    #[serde(with = "crate::time::rfc3339")]
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerDeleted {
    #[serde(with = "crate::time::rfc3339")]
    pub system_modstamp: DateTime<Utc>,
    pub sync_id: String,
    #[serde(with = "crate::time::rfc3339")]
    pub at: DateTime<Utc>,
}

/// The customer's agent changed: `agent_id` now serves it (`None`: nobody does).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerAgentAssigned {
    pub agent_id: Option<UserId>,
    /// The agent before (`None`: there was none).
    pub previous: Option<UserId>,
    pub by: UserId,
    #[serde(with = "crate::time::rfc3339")]
    pub at: DateTime<Utc>,
}

crate::domain_events!(CustomerEvent, "customer" {
    Imported(CustomerImported) = "CustomerImported",
    Updated(CustomerUpdated) = "CustomerUpdated",
    Deleted(CustomerDeleted) = "CustomerDeleted",
    AgentAssigned(CustomerAgentAssigned) = "CustomerAgentAssigned",
});

/// A customer as folded from its events.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Customer {
    pub customer_id: Option<String>,
    pub fields: CustomerFields,
    pub deleted: bool,
    pub system_modstamp: Option<DateTime<Utc>>,
    pub imported_at: Option<DateTime<Utc>>,
    pub updated_at: Option<DateTime<Utc>>,
    pub last_sync_id: Option<String>,
    /// The staff user who serves it (seed 002's agent), if any: under the tenant's
    /// `customer_access: assigned`, the only MEMBER who sees it.
    pub agent_id: Option<UserId>,
}

impl Customer {
    pub fn is_live(&self) -> bool {
        self.customer_id.is_some() && !self.deleted
    }
}

impl Aggregate for Customer {
    const KIND: &'static str = "customer";
    type Command = CustomerCommand;
    type Event = CustomerEvent;
    type Error = CustomerError;

    fn decide(
        &self,
        command: &CustomerCommand,
        ctx: &CommandContext,
    ) -> Result<Vec<CustomerEvent>, Self::Error> {
        Ok(match command {
            CustomerCommand::Sync {
                customer_id,
                fields,
                system_modstamp,
                sync_id,
            } => {
                if !self.is_live() {
                    vec![CustomerEvent::Imported(CustomerImported {
                        customer_id: customer_id.clone(),
                        fields: fields.clone(),
                        system_modstamp: *system_modstamp,
                        sync_id: sync_id.clone(),
                        at: ctx.now,
                    })]
                } else {
                    let changes = self.fields.changes_to(fields);
                    if changes.is_empty() {
                        vec![]
                    } else {
                        vec![CustomerEvent::Updated(CustomerUpdated {
                            changes,
                            system_modstamp: *system_modstamp,
                            sync_id: sync_id.clone(),
                            at: ctx.now,
                        })]
                    }
                }
            }
            CustomerCommand::Delete {
                system_modstamp,
                sync_id,
            } => {
                if self.is_live() {
                    vec![CustomerEvent::Deleted(CustomerDeleted {
                        system_modstamp: *system_modstamp,
                        sync_id: sync_id.clone(),
                        at: ctx.now,
                    })]
                } else {
                    vec![]
                }
            }
            CustomerCommand::AssignAgent { agent } => {
                if !self.is_live() {
                    return Err(CustomerError::NotFound);
                }
                if *agent == self.agent_id {
                    vec![]
                } else {
                    vec![CustomerEvent::AgentAssigned(CustomerAgentAssigned {
                        agent_id: agent.clone(),
                        previous: self.agent_id.clone(),
                        by: ctx.actor.user_id.clone(),
                        at: ctx.now,
                    })]
                }
            }
        })
    }

    fn apply(&mut self, event: &CustomerEvent) {
        match event {
            CustomerEvent::Imported(e) => {
                self.customer_id = Some(e.customer_id.clone());
                self.fields = e.fields.clone();
                self.deleted = false;
                self.system_modstamp = Some(e.system_modstamp);
                self.imported_at.get_or_insert(e.at);
                self.updated_at = Some(e.at);
                self.last_sync_id = Some(e.sync_id.clone());
            }
            CustomerEvent::Updated(e) => {
                for (f, v) in &e.changes {
                    self.fields.set(*f, v.clone());
                }
                self.system_modstamp = Some(e.system_modstamp);
                self.updated_at = Some(e.at);
                self.last_sync_id = Some(e.sync_id.clone());
            }
            CustomerEvent::Deleted(e) => {
                self.deleted = true;
                self.system_modstamp = Some(e.system_modstamp);
                self.updated_at = Some(e.at);
                self.last_sync_id = Some(e.sync_id.clone());
            }
            CustomerEvent::AgentAssigned(e) => {
                self.agent_id = e.agent_id.clone();
                self.updated_at = Some(e.at);
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
                user_id: UserId::parse("system:salesforce-sync").expect("id"),
                role: Role::Admin,
            },
            now: Utc::now(),
        }
    }

    #[test]
    fn a_record_is_imported_then_updated_by_its_changes_only_and_unchanged_writes_nothing() {
        let mut c = Customer::default();
        let fields = CustomerFields {
            name: "Acme".into(),
            phone: Some("1".into()),
            ..Default::default()
        };
        let sync = |fields: &CustomerFields| CustomerCommand::Sync {
            customer_id: "001A".into(),
            fields: fields.clone(),
            system_modstamp: Utc::now(),
            sync_id: "s".into(),
        };
        let events = c.decide(&sync(&fields), &ctx()).expect("decide");
        assert!(matches!(events.as_slice(), [CustomerEvent::Imported(_)]));
        for e in &events {
            c.apply(e);
        }
        assert!(c.decide(&sync(&fields), &ctx()).expect("decide").is_empty());
        let changed = CustomerFields {
            phone: None,
            website: Some("acme.test".into()),
            ..fields
        };
        let events = c.decide(&sync(&changed), &ctx()).expect("decide");
        let [CustomerEvent::Updated(u)] = events.as_slice() else {
            panic!("{events:?}");
        };
        assert_eq!(
            u.changes,
            BTreeMap::from([
                (CustomerField::Phone, None),
                (CustomerField::Website, Some("acme.test".into()))
            ])
        );
        c.apply(&events[0]);
        assert_eq!(c.fields, changed);
    }

    #[test]
    fn an_agent_is_assigned_changed_and_removed_once_each_and_only_to_a_live_customer() {
        let agent = UserId::parse("0190d0b8-0000-7000-8000-000000000001").expect("id");
        let assign = |agent: Option<&UserId>| CustomerCommand::AssignAgent {
            agent: agent.cloned(),
        };
        let mut c = Customer::default();
        assert_eq!(
            c.decide(&assign(Some(&agent)), &ctx()),
            Err(CustomerError::NotFound)
        );
        let imported = c
            .decide(
                &CustomerCommand::Sync {
                    customer_id: "001A".into(),
                    fields: CustomerFields::default(),
                    system_modstamp: Utc::now(),
                    sync_id: "s".into(),
                },
                &ctx(),
            )
            .expect("import");
        c.apply(&imported[0]);
        let events = c.decide(&assign(Some(&agent)), &ctx()).expect("assign");
        let [CustomerEvent::AgentAssigned(a)] = events.as_slice() else {
            panic!("{events:?}");
        };
        assert_eq!(
            (a.agent_id.as_ref(), a.previous.as_ref()),
            (Some(&agent), None)
        );
        c.apply(&events[0]);
        assert_eq!(c.agent_id.as_ref(), Some(&agent));
        assert!(
            c.decide(&assign(Some(&agent)), &ctx())
                .expect("same")
                .is_empty()
        );
        let events = c.decide(&assign(None), &ctx()).expect("remove");
        c.apply(&events[0]);
        assert_eq!(c.agent_id, None);
    }
}
