//! The User aggregate and the small aggregates of sign-in: the email reservation that keeps
//! an address unique per tenant, the invitation an ADMIN issues, and the refresh-token
//! session (one family of rotated tokens).
//!
//! Secrets never enter an event in clear: a password appears only as its argon2 hash, and
//! invitation codes and refresh tokens only as SHA-256 digests. Even those live in private
//! streams (`credential`, `session`, `invitation`; see `is_private`) that are never
//! published to the event bus or the analytics stream.

use crate::aggregate::{Aggregate, CommandContext, Role};
use crate::ids::{UserId, ValidationError};
use crate::rules::{Pattern, TextRule};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub const EMAIL_MAX_CHARS: usize = 254;
pub const PASSWORD_MIN_CHARS: usize = 8;
pub const PASSWORD_MAX_CHARS: usize = 256;

/// What an email address may be: a dot-atom local part and a dotted domain of ASCII labels.
static EMAIL: Pattern = Pattern::new(
    r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+$",
);

/// An email address, lower-cased so that uniqueness ignores case.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Email(String);

impl Email {
    pub const RULE: TextRule = TextRule {
        pattern: Some(&EMAIL),
        ..TextRule::chars(
            3,
            EMAIL_MAX_CHARS,
            "an email address, as in name@example.com (ASCII); compared without case",
        )
    };

    pub fn parse(value: &str) -> Result<Self, ValidationError> {
        Self::RULE.check("email", value)?;
        Ok(Self(value.to_ascii_lowercase()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The instance id of this address's reservation stream: a digest, so the stream id
    /// stays within the id alphabet whatever the address holds.
    pub fn reservation_id(&self) -> String {
        hex::encode(&Sha256::digest(self.0.as_bytes())[..16])
    }
}

crate::rules::text_serde!(Email);
crate::rules::text_schema!(Email, "Email");

/// A clear-text password on its way to the hasher; never kept, logged or echoed (its
/// `Debug` hides it).
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    pub const RULE: TextRule = TextRule::chars(
        PASSWORD_MIN_CHARS,
        PASSWORD_MAX_CHARS,
        "A password; stored only as an argon2id hash.",
    );

    pub fn parse(value: &str) -> Result<Self, ValidationError> {
        Self::RULE.check("password", value)?;
        Ok(Self(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(…)")
    }
}

crate::rules::text_serde!(Password);
crate::rules::text_schema!(Password, "Password");

/// A secret a client presents (a password at sign-in, a refresh token, an invitation
/// code), checked only for its length: a wrong one is refused by what it fails to open,
/// never by its shape. Its `Debug` hides it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub const RULE: TextRule = TextRule::chars(
        1,
        512,
        "A secret: as this server issued it, or the user's password.",
    );

    pub fn parse(value: &str) -> Result<Self, ValidationError> {
        Self::RULE.check("secret", value)?;
        Ok(Self(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(…)")
    }
}

crate::rules::text_serde!(Secret);
crate::rules::text_schema!(Secret, "Secret");

/// Checks a clear-text password's shape before it is hashed.
pub fn check_password(password: &str) -> Result<(), ValidationError> {
    Password::RULE.check("password", password)
}

/// The SHA-256 digest of a secret (refresh token, invitation code), hex.
pub fn digest(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

// ---------------------------------------------------------------- user

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserCommand {
    Register {
        user_id: UserId,
        email: Email,
        role: Role,
        /// The customer a CUSTOMER is a contact of; required for that role, refused for
        /// the others.
        customer_id: Option<String>,
    },
    /// Changes what is given; the acting ADMIN may not demote or disable themselves, so a
    /// tenant cannot lock its last administrator out by accident. A portal user's role
    /// never changes, and no staff user becomes one.
    Update {
        role: Option<Role>,
        disabled: Option<bool>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRegistered {
    pub user_id: UserId,
    pub email: Email,
    pub role: Role,
    /// A CUSTOMER's customer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_id: Option<String>,
    #[serde(with = "crate::time::rfc3339")]
    pub registered_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRoleChanged {
    pub role: Role,
    #[serde(with = "crate::time::rfc3339")]
    pub changed_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserAccessChanged {
    #[serde(with = "crate::time::rfc3339")]
    pub at: DateTime<Utc>,
}

crate::domain_events!(UserEvent, "user" {
    Registered(UserRegistered) = "UserRegistered",
    RoleChanged(UserRoleChanged) = "UserRoleChanged",
    Disabled(UserAccessChanged) = "UserDisabled",
    Enabled(UserAccessChanged) = "UserEnabled",
});

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserError {
    #[error("the user already exists")]
    AlreadyExists,
    #[error("no such user")]
    NotFound,
    #[error("an administrator cannot demote or disable themselves")]
    SelfLockout,
    #[error("a portal user's role cannot change, and a staff user cannot become one")]
    PortalRole,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct User {
    pub registered: Option<UserRegistered>,
    pub role: Option<Role>,
    pub disabled: bool,
    pub updated_at: Option<DateTime<Utc>>,
}

impl Aggregate for User {
    const KIND: &'static str = "user";
    type Command = UserCommand;
    type Event = UserEvent;
    type Error = UserError;

    fn decide(
        &self,
        command: &UserCommand,
        ctx: &CommandContext,
    ) -> Result<Vec<UserEvent>, UserError> {
        match command {
            UserCommand::Register {
                user_id,
                email,
                role,
                customer_id,
            } => {
                if self.registered.is_some() {
                    return Err(UserError::AlreadyExists);
                }
                if (*role == Role::Customer) != customer_id.is_some() {
                    return Err(UserError::PortalRole);
                }
                Ok(vec![UserEvent::Registered(UserRegistered {
                    user_id: user_id.clone(),
                    email: email.clone(),
                    role: *role,
                    customer_id: customer_id.clone(),
                    registered_at: ctx.now,
                })])
            }
            UserCommand::Update { role, disabled } => {
                let Some(me) = &self.registered else {
                    return Err(UserError::NotFound);
                };
                let itself = me.user_id == ctx.actor.user_id;
                let mut events = Vec::new();
                if let Some(role) = role.filter(|r| Some(*r) != self.role) {
                    if role == Role::Customer || self.role == Some(Role::Customer) {
                        return Err(UserError::PortalRole);
                    }
                    if itself && !role.is_admin() {
                        return Err(UserError::SelfLockout);
                    }
                    events.push(UserEvent::RoleChanged(UserRoleChanged {
                        role,
                        changed_at: ctx.now,
                    }));
                }
                match disabled {
                    Some(true) if !self.disabled => {
                        if itself {
                            return Err(UserError::SelfLockout);
                        }
                        events.push(UserEvent::Disabled(UserAccessChanged { at: ctx.now }));
                    }
                    Some(false) if self.disabled => {
                        events.push(UserEvent::Enabled(UserAccessChanged { at: ctx.now }));
                    }
                    _ => {}
                }
                Ok(events)
            }
        }
    }

    fn apply(&mut self, event: &UserEvent) {
        match event {
            UserEvent::Registered(e) => {
                self.role = Some(e.role);
                self.updated_at = Some(e.registered_at);
                self.registered = Some(e.clone());
            }
            UserEvent::RoleChanged(e) => {
                self.role = Some(e.role);
                self.updated_at = Some(e.changed_at);
            }
            UserEvent::Disabled(e) => {
                self.disabled = true;
                self.updated_at = Some(e.at);
            }
            UserEvent::Enabled(e) => {
                self.disabled = false;
                self.updated_at = Some(e.at);
            }
        }
    }
}

// ---------------------------------------------------------------- credential

/// Stream kinds that hold secrets (hashed) and are never published outside the store.
pub const PRIVATE_KINDS: &[&str] = &[
    Credential::KIND,
    Session::KIND,
    Invitation::KIND,
    crate::salesforce::SalesforceConnection::KIND,
    crate::sftp::SftpConnection::KIND,
];

/// True for a stream the relay must not publish.
pub fn is_private(stream: &crate::ids::StreamId) -> bool {
    PRIVATE_KINDS.contains(&stream.kind())
}

/// `credential-<user id>`: the user's password, as an argon2id PHC string.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Credential {
    pub password_hash: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PasswordSet {
    pub password_hash: String,
    #[serde(with = "crate::time::rfc3339")]
    pub set_at: DateTime<Utc>,
}

crate::domain_events!(CredentialEvent, "credential" {
    PasswordSet(PasswordSet) = "PasswordSet",
});

impl Aggregate for Credential {
    const KIND: &'static str = "credential";
    /// The new password's argon2id hash.
    type Command = String;
    type Event = CredentialEvent;
    type Error = std::convert::Infallible;

    fn decide(
        &self,
        password_hash: &String,
        ctx: &CommandContext,
    ) -> Result<Vec<CredentialEvent>, Self::Error> {
        Ok(vec![CredentialEvent::PasswordSet(PasswordSet {
            password_hash: password_hash.clone(),
            set_at: ctx.now,
        })])
    }

    fn apply(&mut self, event: &CredentialEvent) {
        let CredentialEvent::PasswordSet(e) = event;
        self.password_hash = Some(e.password_hash.clone());
    }
}

// ---------------------------------------------------------------- email reservation

/// `email-<digest>`: holds the user an address belongs to. Written with "no stream" in the
/// same append as the user, so a second registration of the address conflicts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EmailReservation {
    pub user_id: Option<UserId>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmailReserved {
    pub user_id: UserId,
}

crate::domain_events!(EmailEvent, "email reservation" {
    Reserved(EmailReserved) = "EmailReserved",
});

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the email address is already registered in this tenant")]
pub struct EmailTaken;

impl Aggregate for EmailReservation {
    const KIND: &'static str = "email";
    type Command = UserId;
    type Event = EmailEvent;
    type Error = EmailTaken;

    fn decide(
        &self,
        user_id: &UserId,
        _ctx: &CommandContext,
    ) -> Result<Vec<EmailEvent>, EmailTaken> {
        if self.user_id.is_some() {
            return Err(EmailTaken);
        }
        Ok(vec![EmailEvent::Reserved(EmailReserved {
            user_id: user_id.clone(),
        })])
    }

    fn apply(&mut self, event: &EmailEvent) {
        let EmailEvent::Reserved(e) = event;
        self.user_id = Some(e.user_id.clone());
    }
}

// ---------------------------------------------------------------- invitation

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InvitationCommand {
    Issue {
        code_hash: String,
        role: Role,
        email: Option<Email>,
        /// For a portal invitation (role CUSTOMER): the customer it signs up a contact of.
        customer_id: Option<String>,
        expires_at: DateTime<Utc>,
    },
    Accept {
        code_hash: String,
        user_id: UserId,
        email: Email,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvitationIssued {
    pub code_hash: String,
    pub role: Role,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<Email>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_id: Option<String>,
    pub issued_by: UserId,
    #[serde(with = "crate::time::rfc3339")]
    pub expires_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvitationAccepted {
    pub user_id: UserId,
    #[serde(with = "crate::time::rfc3339")]
    pub accepted_at: DateTime<Utc>,
}

crate::domain_events!(InvitationEvent, "invitation" {
    Issued(InvitationIssued) = "InvitationIssued",
    Accepted(InvitationAccepted) = "InvitationAccepted",
});

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvitationError {
    #[error("the invitation already exists")]
    AlreadyIssued,
    /// Unknown, wrong, used or expired: one answer for all, so codes cannot be probed.
    #[error("the invitation code is not valid")]
    Invalid,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Invitation {
    pub issued: Option<InvitationIssued>,
    pub accepted: bool,
}

impl Aggregate for Invitation {
    const KIND: &'static str = "invitation";
    type Command = InvitationCommand;
    type Event = InvitationEvent;
    type Error = InvitationError;

    fn decide(
        &self,
        command: &InvitationCommand,
        ctx: &CommandContext,
    ) -> Result<Vec<InvitationEvent>, InvitationError> {
        match command {
            InvitationCommand::Issue {
                code_hash,
                role,
                email,
                customer_id,
                expires_at,
            } => {
                if self.issued.is_some() {
                    return Err(InvitationError::AlreadyIssued);
                }
                Ok(vec![InvitationEvent::Issued(InvitationIssued {
                    code_hash: code_hash.clone(),
                    role: *role,
                    email: email.clone(),
                    customer_id: customer_id.clone(),
                    issued_by: ctx.actor.user_id.clone(),
                    expires_at: *expires_at,
                })])
            }
            InvitationCommand::Accept {
                code_hash,
                user_id,
                email,
            } => {
                let Some(issued) = &self.issued else {
                    return Err(InvitationError::Invalid);
                };
                let wrong_email = issued.email.as_ref().is_some_and(|e| e != email);
                if self.accepted
                    || !crate::user::same_digest(&issued.code_hash, code_hash)
                    || issued.expires_at <= ctx.now
                    || wrong_email
                {
                    return Err(InvitationError::Invalid);
                }
                Ok(vec![InvitationEvent::Accepted(InvitationAccepted {
                    user_id: user_id.clone(),
                    accepted_at: ctx.now,
                })])
            }
        }
    }

    fn apply(&mut self, event: &InvitationEvent) {
        match event {
            InvitationEvent::Issued(e) => self.issued = Some(e.clone()),
            InvitationEvent::Accepted(_) => self.accepted = true,
        }
    }
}

/// Compares two hex digests without stopping at the first difference.
pub fn same_digest(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

// ---------------------------------------------------------------- session

/// One refresh-token family: every refresh rotates the token; presenting a token of the
/// family that is no longer current (a stolen copy, replayed) revokes the whole family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionCommand {
    Start {
        user_id: UserId,
        token_hash: String,
        expires_at: DateTime<Utc>,
    },
    Refresh {
        presented_hash: String,
        new_hash: String,
        expires_at: DateTime<Utc>,
    },
    Revoke {
        reason: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionStarted {
    pub user_id: UserId,
    pub token_hash: String,
    #[serde(with = "crate::time::rfc3339")]
    pub expires_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRefreshed {
    pub token_hash: String,
    #[serde(with = "crate::time::rfc3339")]
    pub expires_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRevoked {
    pub reason: String,
    #[serde(with = "crate::time::rfc3339")]
    pub revoked_at: DateTime<Utc>,
}

crate::domain_events!(SessionEvent, "session" {
    Started(SessionStarted) = "SessionStarted",
    Refreshed(SessionRefreshed) = "SessionRefreshed",
    Revoked(SessionRevoked) = "SessionRevoked",
});

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    #[error("the session already exists")]
    AlreadyStarted,
    /// Unknown, expired or revoked; one answer for all.
    #[error("the refresh token is not valid")]
    Invalid,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Session {
    pub user_id: Option<UserId>,
    pub current_hash: Option<String>,
    /// Every earlier token of the family: presenting one is reuse.
    pub retired: Vec<String>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked: bool,
}

impl Session {
    /// What presenting `hash` means to this family.
    pub fn recognise(&self, hash: &str, now: DateTime<Utc>) -> Presented {
        if self.revoked || self.user_id.is_none() {
            return Presented::Invalid;
        }
        if self
            .current_hash
            .as_deref()
            .is_some_and(|c| same_digest(c, hash))
        {
            if self.expires_at.is_some_and(|e| e <= now) {
                return Presented::Invalid;
            }
            return Presented::Current;
        }
        if self.retired.iter().any(|r| same_digest(r, hash)) {
            return Presented::Reused;
        }
        Presented::Invalid
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presented {
    Current,
    Reused,
    Invalid,
}

impl Aggregate for Session {
    const KIND: &'static str = "session";
    type Command = SessionCommand;
    type Event = SessionEvent;
    type Error = SessionError;

    fn decide(
        &self,
        command: &SessionCommand,
        ctx: &CommandContext,
    ) -> Result<Vec<SessionEvent>, SessionError> {
        match command {
            SessionCommand::Start {
                user_id,
                token_hash,
                expires_at,
            } => {
                if self.user_id.is_some() {
                    return Err(SessionError::AlreadyStarted);
                }
                Ok(vec![SessionEvent::Started(SessionStarted {
                    user_id: user_id.clone(),
                    token_hash: token_hash.clone(),
                    expires_at: *expires_at,
                })])
            }
            SessionCommand::Refresh {
                presented_hash,
                new_hash,
                expires_at,
            } => match self.recognise(presented_hash, ctx.now) {
                Presented::Current => Ok(vec![SessionEvent::Refreshed(SessionRefreshed {
                    token_hash: new_hash.clone(),
                    expires_at: *expires_at,
                })]),
                // The caller appends the revocation; deciding refuses the refresh.
                Presented::Reused | Presented::Invalid => Err(SessionError::Invalid),
            },
            SessionCommand::Revoke { reason } => {
                if self.revoked || self.user_id.is_none() {
                    return Ok(vec![]);
                }
                Ok(vec![SessionEvent::Revoked(SessionRevoked {
                    reason: reason.clone(),
                    revoked_at: ctx.now,
                })])
            }
        }
    }

    fn apply(&mut self, event: &SessionEvent) {
        match event {
            SessionEvent::Started(e) => {
                self.user_id = Some(e.user_id.clone());
                self.current_hash = Some(e.token_hash.clone());
                self.expires_at = Some(e.expires_at);
            }
            SessionEvent::Refreshed(e) => {
                if let Some(old) = self.current_hash.replace(e.token_hash.clone()) {
                    self.retired.push(old);
                }
                self.expires_at = Some(e.expires_at);
            }
            SessionEvent::Revoked(_) => self.revoked = true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::{Actor, DomainEvent};

    fn ctx(user: &str) -> CommandContext {
        CommandContext {
            actor: Actor {
                user_id: UserId::parse(user).unwrap(),
                role: Role::Admin,
            },
            now: Utc::now(),
        }
    }

    fn user(id: &str) -> User {
        let mut u = User::default();
        u.apply(&UserEvent::Registered(UserRegistered {
            user_id: UserId::parse(id).unwrap(),
            email: Email::parse("X@Acme.test").unwrap(),
            role: Role::Admin,
            customer_id: None,
            registered_at: Utc::now(),
        }));
        u
    }

    #[test]
    fn emails_are_normalised_and_checked() {
        assert_eq!(
            Email::parse("Ann@Acme.TEST").unwrap().as_str(),
            "ann@acme.test"
        );
        for bad in [
            "",
            "ann",
            "ann@",
            "@acme.test",
            "ann@acme",
            "a n@acme.test",
            " ann@acme.test",
            "ann@acme.test\n",
            "ann@-acme.test",
            "ann@acme..test",
            "a@b@acme.test",
        ] {
            assert_eq!(Email::parse(bad).unwrap_err().field, "email", "{bad:?}");
        }
        let a = Email::parse("ann@acme.test").unwrap();
        assert_eq!(
            a.reservation_id(),
            Email::parse("ANN@acme.test").unwrap().reservation_id()
        );
        assert!(crate::ids::StreamId::parse(format!("email-{}", a.reservation_id())).is_ok());
        assert!(check_password("short").is_err());
        assert!(check_password("long enough").is_ok());
    }

    #[test]
    fn an_admin_cannot_lock_themselves_out() {
        let u = user("root");
        let demote = UserCommand::Update {
            role: Some(Role::Member),
            disabled: None,
        };
        assert_eq!(u.decide(&demote, &ctx("root")), Err(UserError::SelfLockout));
        let events = u.decide(&demote, &ctx("other-admin")).unwrap();
        assert!(matches!(events[..], [UserEvent::RoleChanged(_)]));
        let disable = UserCommand::Update {
            role: None,
            disabled: Some(true),
        };
        assert_eq!(
            u.decide(&disable, &ctx("root")),
            Err(UserError::SelfLockout)
        );
    }

    #[test]
    fn secrets_live_in_private_streams_only() {
        let u = user("root");
        let e = UserEvent::Registered(u.registered.clone().unwrap());
        let payload = e.to_payload();
        assert!(payload.get("password_hash").is_none(), "{payload}");
        assert_eq!(
            UserEvent::from_stored("UserRegistered", 1, &payload).unwrap(),
            e
        );
        let id = |s: &str| crate::ids::StreamId::parse(s).unwrap();
        for private in ["credential-u1", "session-abc", "invitation-abc"] {
            assert!(is_private(&id(private)), "{private}");
        }
        for public in ["user-u1", "tenant-t", "task-x", "email-abc"] {
            assert!(!is_private(&id(public)), "{public}");
        }
    }

    #[test]
    fn a_portal_user_is_bound_to_a_customer_and_keeps_its_role() {
        let register = |role, customer_id: Option<&str>| UserCommand::Register {
            user_id: UserId::parse("p1").unwrap(),
            email: Email::parse("p@cust.test").unwrap(),
            role,
            customer_id: customer_id.map(str::to_owned),
        };
        let none = User::default();
        let c = ctx("root");
        assert_eq!(
            none.decide(&register(Role::Customer, None), &c),
            Err(UserError::PortalRole)
        );
        assert_eq!(
            none.decide(&register(Role::Member, Some("001A")), &c),
            Err(UserError::PortalRole)
        );
        let mut portal = User::default();
        for e in none
            .decide(&register(Role::Customer, Some("001A")), &c)
            .unwrap()
        {
            portal.apply(&e);
        }
        let promote = UserCommand::Update {
            role: Some(Role::Admin),
            disabled: None,
        };
        assert_eq!(portal.decide(&promote, &c), Err(UserError::PortalRole));
        let demote = UserCommand::Update {
            role: Some(Role::Customer),
            disabled: None,
        };
        assert_eq!(user("m1").decide(&demote, &c), Err(UserError::PortalRole));
        let disable = UserCommand::Update {
            role: None,
            disabled: Some(true),
        };
        assert_eq!(portal.decide(&disable, &c).unwrap().len(), 1);
    }

    #[test]
    fn an_invitation_is_accepted_once_before_it_expires() {
        let mut inv = Invitation::default();
        let issue = InvitationCommand::Issue {
            code_hash: digest("code"),
            role: Role::Member,
            email: None,
            customer_id: None,
            expires_at: Utc::now() + chrono::Duration::hours(1),
        };
        for e in inv.decide(&issue, &ctx("root")).unwrap() {
            inv.apply(&e);
        }
        let accept = |code: &str| InvitationCommand::Accept {
            code_hash: digest(code),
            user_id: UserId::parse("new").unwrap(),
            email: Email::parse("new@acme.test").unwrap(),
        };
        assert_eq!(
            inv.decide(&accept("wrong"), &ctx("new")),
            Err(InvitationError::Invalid)
        );
        for e in inv.decide(&accept("code"), &ctx("new")).unwrap() {
            inv.apply(&e);
        }
        assert_eq!(
            inv.decide(&accept("code"), &ctx("new")),
            Err(InvitationError::Invalid)
        );
        let mut late = CommandContext { ..ctx("new") };
        late.now += chrono::Duration::hours(2);
        let mut fresh = Invitation::default();
        for e in fresh.decide(&issue, &ctx("root")).unwrap() {
            fresh.apply(&e);
        }
        assert_eq!(
            fresh.decide(&accept("code"), &late),
            Err(InvitationError::Invalid)
        );
    }

    #[test]
    fn a_rotated_refresh_token_presented_again_is_reuse() {
        let mut s = Session::default();
        let start = SessionCommand::Start {
            user_id: UserId::parse("u").unwrap(),
            token_hash: digest("t1"),
            expires_at: Utc::now() + chrono::Duration::days(1),
        };
        for e in s.decide(&start, &ctx("u")).unwrap() {
            s.apply(&e);
        }
        let refresh = SessionCommand::Refresh {
            presented_hash: digest("t1"),
            new_hash: digest("t2"),
            expires_at: Utc::now() + chrono::Duration::days(1),
        };
        for e in s.decide(&refresh, &ctx("u")).unwrap() {
            s.apply(&e);
        }
        let now = Utc::now();
        assert_eq!(s.recognise(&digest("t2"), now), Presented::Current);
        assert_eq!(s.recognise(&digest("t1"), now), Presented::Reused);
        assert_eq!(s.recognise(&digest("t9"), now), Presented::Invalid);
        for e in s
            .decide(
                &SessionCommand::Revoke {
                    reason: "reuse".into(),
                },
                &ctx("u"),
            )
            .unwrap()
        {
            s.apply(&e);
        }
        assert_eq!(s.recognise(&digest("t2"), now), Presented::Invalid);
    }
}
