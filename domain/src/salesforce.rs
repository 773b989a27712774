//! A tenant's Salesforce connection (each tenant is a company with its own org): where its
//! org is, the connected app's client id and its secret, sealed (encrypted) before it gets
//! here. It lives in a private stream, never published. The tenants with a connection are
//! listed in the `registry` module's registry, for the scheduled sync.

use crate::aggregate::{Aggregate, CommandContext, TailState};
use crate::ids::{UserId, ValidationError};
use crate::rules::{Pattern, TextRule};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

static LOGIN_URL: Pattern =
    Pattern::new(r"^(https://[A-Za-z0-9.-]+|http://(127\.0\.0\.1|localhost)(:[0-9]{1,5})?)/?$");

/// The org's My Domain, e.g. `https://acme.my.salesforce.com` (plain http only to a
/// loopback address, for local servers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginUrl(String);

impl LoginUrl {
    pub const RULE: TextRule = TextRule {
        pattern: Some(&LOGIN_URL),
        ..TextRule::chars(
            8,
            255,
            "The org's My Domain URL (https://…); the token endpoint is <login_url>/services/oauth2/token.",
        )
    };

    pub fn parse(value: &str) -> Result<Self, ValidationError> {
        Self::RULE.check("login_url", value)?;
        Ok(Self(value.trim_end_matches('/').to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

crate::rules::text_serde!(LoginUrl);
crate::rules::text_schema!(LoginUrl, "LoginUrl");

static CLIENT_ID: Pattern = Pattern::new(r"^[A-Za-z0-9._-]+$");

/// The connected app's consumer key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientId(String);

impl ClientId {
    pub const RULE: TextRule = TextRule {
        pattern: Some(&CLIENT_ID),
        ..TextRule::chars(1, 255, "The connected app's consumer key.")
    };

    pub fn parse(value: &str) -> Result<Self, ValidationError> {
        Self::RULE.check("client_id", value)?;
        Ok(Self(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

crate::rules::text_serde!(ClientId);
crate::rules::text_schema!(ClientId, "ClientId");

static API_VERSION: Pattern = Pattern::new(r"^[0-9]{2,3}\.0$");

/// The REST API version, e.g. `60.0`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiVersion(String);

impl ApiVersion {
    pub const RULE: TextRule = TextRule {
        pattern: Some(&API_VERSION),
        ..TextRule::chars(
            4,
            5,
            "The Salesforce REST API version, e.g. 60.0 (the default).",
        )
    };

    pub fn parse(value: &str) -> Result<Self, ValidationError> {
        Self::RULE.check("api_version", value)?;
        Ok(Self(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for ApiVersion {
    fn default() -> Self {
        Self("60.0".to_owned())
    }
}

crate::rules::text_serde!(ApiVersion);

static FIELD_NAME: Pattern = Pattern::new(r"^[A-Za-z][A-Za-z0-9_]*$");

/// The Case field Chronicle upserts on: an External ID field of the org's Case object
/// (e.g. `Chronicle_Case_Id__c`, the default), holding Chronicle's case id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalIdField(String);

impl ExternalIdField {
    pub const RULE: TextRule = TextRule {
        pattern: Some(&FIELD_NAME),
        ..TextRule::chars(
            1,
            80,
            "The External ID field of Case that holds Chronicle's case id (default Chronicle_Case_Id__c).",
        )
    };

    pub fn parse(value: &str) -> Result<Self, ValidationError> {
        Self::RULE.check("case_external_id_field", value)?;
        Ok(Self(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for ExternalIdField {
    fn default() -> Self {
        Self("Chronicle_Case_Id__c".to_owned())
    }
}

crate::rules::text_serde!(ExternalIdField);
crate::rules::text_schema!(ExternalIdField, "ExternalIdField");
crate::rules::text_schema!(ApiVersion, "ApiVersion");

/// A secret as sealed by the server's key (nonce and ciphertext, base64); opaque here.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedSecret(pub String);

impl std::fmt::Debug for SealedSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealedSecret(…)")
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectionCommand {
    Connect {
        login_url: LoginUrl,
        client_id: ClientId,
        client_secret: SealedSecret,
        api_version: ApiVersion,
        case_external_id_field: ExternalIdField,
    },
    Disconnect,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SalesforceConnected {
    pub login_url: LoginUrl,
    pub client_id: ClientId,
    pub client_secret: SealedSecret,
    pub api_version: ApiVersion,
    /// Connections made before cases existed have the default.
    #[serde(default)]
    pub case_external_id_field: ExternalIdField,
    pub connected_by: UserId,
    #[serde(with = "crate::time::rfc3339")]
    pub connected_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SalesforceDisconnected {
    #[serde(with = "crate::time::rfc3339")]
    pub at: DateTime<Utc>,
}

crate::domain_events!(ConnectionEvent, "Salesforce connection" {
    Connected(SalesforceConnected) = "SalesforceConnected",
    Disconnected(SalesforceDisconnected) = "SalesforceDisconnected",
});

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectionError {
    #[error("the tenant has no Salesforce connection")]
    NotConnected,
}

/// `sfconnection-salesforce`: the tenant's connection, if any.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SalesforceConnection {
    pub current: Option<SalesforceConnected>,
}

impl Aggregate for SalesforceConnection {
    const KIND: &'static str = "sfconnection";
    type Command = ConnectionCommand;
    type Event = ConnectionEvent;
    type Error = ConnectionError;

    fn decide(
        &self,
        c: &ConnectionCommand,
        ctx: &CommandContext,
    ) -> Result<Vec<ConnectionEvent>, ConnectionError> {
        match c {
            ConnectionCommand::Connect {
                login_url,
                client_id,
                client_secret,
                api_version,
                case_external_id_field,
            } => Ok(vec![ConnectionEvent::Connected(SalesforceConnected {
                login_url: login_url.clone(),
                client_id: client_id.clone(),
                client_secret: client_secret.clone(),
                api_version: api_version.clone(),
                case_external_id_field: case_external_id_field.clone(),
                connected_by: ctx.actor.user_id.clone(),
                connected_at: ctx.now,
            })]),
            ConnectionCommand::Disconnect => match self.current {
                Some(_) => Ok(vec![ConnectionEvent::Disconnected(
                    SalesforceDisconnected { at: ctx.now },
                )]),
                None => Err(ConnectionError::NotConnected),
            },
        }
    }

    fn apply(&mut self, e: &ConnectionEvent) {
        *self = Self::from_last(e);
    }
}

impl TailState for SalesforceConnection {
    fn from_last(e: &ConnectionEvent) -> Self {
        match e {
            ConnectionEvent::Connected(c) => Self {
                current: Some(c.clone()),
            },
            ConnectionEvent::Disconnected(_) => Self { current: None },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_urls_are_https_or_loopback() {
        assert!(LoginUrl::parse("https://acme.my.salesforce.com").is_ok());
        assert!(LoginUrl::parse("http://127.0.0.1:8443").is_ok());
        assert!(LoginUrl::parse("http://acme.my.salesforce.com").is_err());
        assert!(LoginUrl::parse("https://acme.test/path").is_err());
        assert!(ApiVersion::parse("60.0").is_ok());
        assert!(ApiVersion::parse("v60").is_err());
    }
}
