//! Tenants, users and sign-in: the commands that span several streams in one atomic append.
//!
//! - Sign-up writes the tenant, its first ADMIN, the admin's email reservation and the
//!   first refresh-token session in one append.
//! - Adding a user takes a seat on the tenant stream (at its exact version, so the tier's
//!   `max_users` holds under concurrency) and reserves the email ("no stream") in the same
//!   append as the user: a duplicate address conflicts and nothing is written.
//! - Refresh tokens rotate; presenting a retired token revokes the whole family.
//!
//! Passwords are hashed with argon2id on a blocking thread; a failed sign-in hashes too,
//! so an unknown email and a wrong password take the same time and get the same answer.

use crate::handler::{CommandError, CommandHandler, CommandMeta, RequestIds, token_of};
use crate::pipeline::{Command, Ran, Tx};
use crate::store::StoreError;
use argon2::Argon2;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use base64::Engine;
use chrono::{DateTime, Duration, Utc};
use domain::tenant::{CompanyName, Tenant, TenantCommand, TenantError};
use domain::user::{
    Credential, Email, EmailReservation, Invitation, InvitationCommand, InvitationError, Presented,
    Session, SessionCommand, User, UserCommand, UserError, digest,
};
use domain::{
    Actor, Aggregate, ConsistencyToken, DomainEvent, EventEnvelope, Role, StreamId, TenantId, Tier,
    UserId,
};
use std::sync::Arc;
use std::sync::OnceLock;
use uuid::Uuid;

/// How long a refresh token (and its family) lives without use.
pub const REFRESH_TTL: Duration = Duration::days(30);
/// How long an invitation code is valid.
pub const INVITATION_TTL: Duration = Duration::days(7);

#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    #[error(transparent)]
    Invalid(#[from] domain::ValidationError),
    #[error("the email address is already registered in this tenant")]
    EmailTaken,
    #[error(transparent)]
    Tenant(#[from] TenantError),
    #[error(transparent)]
    User(#[from] UserError),
    #[error(transparent)]
    Invitation(#[from] InvitationError),
    /// Unknown email, wrong password or disabled user: one answer for all.
    #[error("the email or password is not correct")]
    BadCredentials,
    #[error("the refresh token is not valid")]
    BadRefreshToken,
    #[error("the Idempotency-Key was already used with a different request")]
    IdempotencyMismatch,
    #[error("gave up after {0} conflicting attempts")]
    Contended(u32),
    #[error(transparent)]
    Corrupt(#[from] domain::UpcastError),
    #[error(transparent)]
    Store(StoreError),
    #[error("password hashing failed: {0}")]
    Hashing(String),
    /// A portal invitation for a customer the tenant does not have.
    #[error("no such customer")]
    NoCustomer,
    /// Only an OWNER creates, promotes to, demotes from or disables ADMIN and OWNER users.
    #[error("only an OWNER manages ADMIN and OWNER users")]
    NeedsOwner,
}

/// Refuses an actor who is no OWNER a change that makes, unmakes or touches an ADMIN or an
/// OWNER (`roles`: the user's role before and after).
fn owner_needed(actor: &Actor, roles: [Option<Role>; 2]) -> Result<(), CommandError<AccessError>> {
    let touches_admins = roles.iter().flatten().any(|r| r.is_admin());
    if touches_admins && actor.role != Role::Owner {
        return Err(CommandError::Rejected(AccessError::NeedsOwner));
    }
    Ok(())
}

impl<E: std::error::Error + 'static> From<CommandError<E>> for AccessError
where
    AccessError: From<E>,
{
    fn from(e: CommandError<E>) -> Self {
        match e {
            CommandError::Rejected(e) => e.into(),
            CommandError::Corrupt(e) => AccessError::Corrupt(e),
            CommandError::Store(e) => AccessError::Store(e),
            CommandError::Contended(n) => AccessError::Contended(n),
            CommandError::Taken(_) => AccessError::EmailTaken,
            CommandError::IdempotencyMismatch => AccessError::IdempotencyMismatch,
            // Only a refresh pins a version: the session moved, another refresh won.
            CommandError::PreconditionFailed { .. } => AccessError::BadRefreshToken,
        }
    }
}

impl From<domain::customer::CustomerError> for AccessError {
    fn from(e: domain::customer::CustomerError) -> Self {
        match e {
            domain::customer::CustomerError::NotFound => Self::NoCustomer,
        }
    }
}

impl From<std::convert::Infallible> for AccessError {
    fn from(e: std::convert::Infallible) -> Self {
        match e {}
    }
}

impl From<domain::user::EmailTaken> for AccessError {
    fn from(_: domain::user::EmailTaken) -> Self {
        AccessError::EmailTaken
    }
}

impl From<domain::user::SessionError> for AccessError {
    fn from(_: domain::user::SessionError) -> Self {
        AccessError::BadRefreshToken
    }
}

/// A signed-in user: who, with which role and tier, and the refresh token to rotate.
#[derive(Debug, Clone)]
pub struct SignedIn {
    pub tenant_id: TenantId,
    pub user_id: UserId,
    pub role: Role,
    /// A CUSTOMER's customer.
    pub customer_id: Option<String>,
    pub tier: Tier,
    pub refresh_token: String,
    pub refresh_expires_at: DateTime<Utc>,
}

/// An issued invitation; `code` is shown once and kept only as a digest.
#[derive(Debug, Clone)]
pub struct IssuedInvitation {
    pub invitation_id: String,
    pub code: String,
    pub role: Role,
    pub email: Option<Email>,
    pub customer_id: Option<String>,
    pub expires_at: DateTime<Utc>,
}

/// A user after a command, with where a reader must be to see it.
#[derive(Debug, Clone)]
pub struct UserState {
    pub user: User,
    pub version: u64,
    pub token: Option<ConsistencyToken>,
}

pub fn tenant_stream(tenant: &TenantId) -> StreamId {
    StreamId::for_aggregate(Tenant::KIND, tenant)
}

pub fn user_stream(user: &UserId) -> StreamId {
    StreamId::for_aggregate(User::KIND, user)
}

fn credential_stream(user: &UserId) -> StreamId {
    StreamId::for_aggregate(Credential::KIND, user)
}

fn email_stream(email: &Email) -> StreamId {
    StreamId::for_aggregate(EmailReservation::KIND, email.reservation_id())
}

fn random_secret() -> String {
    let bytes: [u8; 32] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A refresh token: `<family>.<secret>.<tenant>`. The family and tenant locate the session
/// stream; only the digest of the whole token is stored.
fn refresh_token(tenant: &TenantId, family: Uuid) -> String {
    format!("{}.{}.{}", family.simple(), random_secret(), tenant)
}

fn parse_refresh_token(token: &str) -> Option<(TenantId, StreamId)> {
    let mut parts = token.trim().splitn(3, '.');
    let family = Uuid::try_parse(parts.next()?).ok()?;
    let _secret = parts.next().filter(|s| !s.is_empty())?;
    let tenant = TenantId::parse(parts.next()?).ok()?;
    Some((
        tenant,
        StreamId::for_aggregate(Session::KIND, family.simple()),
    ))
}

/// An invitation code: `<invitation id>.<secret>`.
fn parse_invitation_code(code: &str) -> Option<StreamId> {
    let (id, secret) = code.trim().split_once('.')?;
    let id = Uuid::try_parse(id).ok()?;
    (!secret.is_empty()).then(|| StreamId::for_aggregate(Invitation::KIND, id.simple()))
}

/// argon2id with the crate's defaults (19 MiB, 2 passes): OWASP's recommended minimum.
pub fn hash_password(password: &str) -> Result<String, AccessError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| AccessError::Hashing(e.to_string()))
}

fn verify_password(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc).is_ok_and(|h| {
        Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

/// A hash no password matches, verified when the email is unknown so that the answer
/// takes as long as for a wrong password.
fn decoy_hash() -> &'static str {
    static DECOY: OnceLock<String> = OnceLock::new();
    DECOY.get_or_init(|| hash_password(&random_secret()).unwrap_or_default())
}

/// Runs argon2 work on the blocking pool, at most two per core at once. Each hash holds
/// 19 MiB for its run: a flood of sign-ups or sign-ins queues here instead of taking the
/// process's memory and every core.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, AccessError> {
    static HASHING: OnceLock<tokio::sync::Semaphore> = OnceLock::new();
    let permits = HASHING.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get);
        tokio::sync::Semaphore::new(cores * 2)
    });
    let _permit = permits
        .acquire()
        .await
        .map_err(|e| AccessError::Hashing(e.to_string()))?;
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| AccessError::Hashing(e.to_string()))
}

#[derive(Clone)]
pub struct AccessService {
    commands: CommandHandler,
}

/// A domain rejection, as an access command's error.
fn rejected<E>(e: E) -> CommandError<AccessError>
where
    AccessError: From<E>,
{
    CommandError::Rejected(e.into())
}

/// A load's or a decision's failure, as an access command's error.
fn lift<E: std::error::Error + 'static>(e: CommandError<E>) -> CommandError<AccessError>
where
    AccessError: From<E>,
{
    e.map_rejected(AccessError::from)
}

/// A session about to start: its stream, its first refresh token and when that expires.
struct NewSession {
    stream: StreamId,
    token: String,
    expires_at: DateTime<Utc>,
}

impl NewSession {
    fn mint(tenant: &TenantId, now: DateTime<Utc>) -> Self {
        let family = Uuid::now_v7();
        Self {
            stream: StreamId::for_aggregate(Session::KIND, family.simple()),
            token: refresh_token(tenant, family),
            expires_at: now + REFRESH_TTL,
        }
    }

    /// Writes the session's start for `user_id`.
    fn write(&self, tx: &mut Tx<'_>, user_id: &UserId) -> Result<(), CommandError<AccessError>> {
        let events = Session::default()
            .decide(
                &SessionCommand::Start {
                    user_id: user_id.clone(),
                    token_hash: digest(&self.token),
                    expires_at: self.expires_at,
                },
                tx.ctx(),
            )
            .map_err(rejected)?;
        tx.write::<Session>(&self.stream, &events);
        Ok(())
    }
}

/// Writes a new user account: the user, its email reservation (a taken address fails the
/// command) and its credential.
fn write_account(
    tx: &mut Tx<'_>,
    user_id: &UserId,
    email: &Email,
    (role, customer_id): (Role, Option<String>),
    password_hash: &str,
) -> Result<User, CommandError<AccessError>> {
    let ctx = tx.ctx().clone();
    let mut user = User::default();
    let user_events = user
        .decide(
            &UserCommand::Register {
                user_id: user_id.clone(),
                email: email.clone(),
                role,
                customer_id,
            },
            &ctx,
        )
        .map_err(rejected)?;
    for e in &user_events {
        user.apply(e);
    }
    let email_events = EmailReservation::default()
        .decide(user_id, &ctx)
        .map_err(rejected)?;
    let credential_events = Credential::default()
        .decide(&password_hash.to_owned(), &ctx)
        .map_err(rejected)?;
    tx.write::<User>(&user_stream(user_id), &user_events);
    tx.reserve::<EmailReservation>(&email_stream(email), &email_events, "email");
    tx.write::<Credential>(&credential_stream(user_id), &credential_events);
    Ok(user)
}

/// Sign-up: the tenant, its first ADMIN with a seat, the admin's email reservation,
/// credential and first session, in one append.
struct RegisterTenant<'a> {
    tenant: &'a TenantId,
    user_id: &'a UserId,
    company_name: &'a CompanyName,
    admin_email: &'a Email,
    tier: Tier,
    password_hash: &'a str,
    session: &'a NewSession,
}

impl Command for RegisterTenant<'_> {
    type Output = ();
    type Error = AccessError;
    const NAME: &'static str = "tenant";

    async fn decide(&self, tx: &mut Tx<'_>) -> Result<(), CommandError<AccessError>> {
        let ctx = tx.ctx().clone();
        let mut t = Tenant::default();
        let mut tenant_events = t
            .decide(
                &TenantCommand::Register {
                    tenant_id: self.tenant.clone(),
                    company_name: self.company_name.clone(),
                    admin_email: self.admin_email.as_str().to_owned(),
                    tier: self.tier,
                },
                &ctx,
            )
            .map_err(rejected)?;
        for e in &tenant_events {
            t.apply(e);
        }
        let seat = TenantCommand::TakeSeat {
            user_id: self.user_id.clone(),
        };
        tenant_events.extend(t.decide(&seat, &ctx).map_err(rejected)?);
        let owner = TenantCommand::AddOwner {
            user_id: self.user_id.clone(),
        };
        tenant_events.extend(t.decide(&owner, &ctx).map_err(rejected)?);
        tx.write::<Tenant>(&tenant_stream(self.tenant), &tenant_events);
        write_account(
            tx,
            self.user_id,
            self.admin_email,
            (Role::Owner, None),
            self.password_hash,
        )?;
        self.session.write(tx, self.user_id)
    }
}

/// A new user of a tenant: the user, its credential, a seat on the tenant stream (at its
/// exact version, so the tier's `max_users` holds under concurrency) and its email
/// reservation; with an invitation, its acceptance (single use) and a first session. A
/// portal user (an invitation's CUSTOMER) takes no seat: seats are the tenant's staff.
struct AddUser<'a> {
    user_id: &'a UserId,
    email: &'a Email,
    /// The role, unless an invitation gives it.
    role: Role,
    password_hash: &'a str,
    invitation: Option<(StreamId, &'a str)>,
    session: Option<&'a NewSession>,
}

impl Command for AddUser<'_> {
    /// The user and the role it got.
    type Output = (User, Role);
    type Error = AccessError;
    const NAME: &'static str = "user";

    async fn decide(&self, tx: &mut Tx<'_>) -> Result<(User, Role), CommandError<AccessError>> {
        let ctx = tx.ctx().clone();
        let t_stream = tenant_stream(&tx.meta().tenant_id);
        let (t, _) = tx.load::<Tenant>(&t_stream).await.map_err(lift)?;
        if t.registered.is_none() {
            return Err(rejected(TenantError::NotFound));
        }
        let mut role = self.role;
        let mut customer_id = None;
        // An invitation was checked when it was issued.
        if self.invitation.is_none() {
            owner_needed(&ctx.actor, [None, Some(role)])?;
        }
        if let Some((stream, code)) = &self.invitation {
            let (invitation, _) = tx.load::<Invitation>(stream).await.map_err(lift)?;
            let issued = invitation
                .issued
                .clone()
                .ok_or_else(|| rejected(InvitationError::Invalid))?;
            role = issued.role;
            customer_id = issued.customer_id;
            let accepted = invitation
                .decide(
                    &InvitationCommand::Accept {
                        code_hash: digest(code.trim()),
                        user_id: self.user_id.clone(),
                        email: self.email.clone(),
                    },
                    &ctx,
                )
                .map_err(rejected)?;
            tx.write::<Invitation>(stream, &accepted);
        }
        if role.is_staff() {
            let mut t = t;
            let mut tenant_events = t
                .decide(
                    &TenantCommand::TakeSeat {
                        user_id: self.user_id.clone(),
                    },
                    &ctx,
                )
                .map_err(rejected)?;
            if role == Role::Owner {
                for e in &tenant_events {
                    t.apply(e);
                }
                let owner = TenantCommand::AddOwner {
                    user_id: self.user_id.clone(),
                };
                tenant_events.extend(t.decide(&owner, &ctx).map_err(rejected)?);
            }
            tx.write::<Tenant>(&t_stream, &tenant_events);
        } else {
            t.check_active().map_err(rejected)?;
        }
        let user = write_account(
            tx,
            self.user_id,
            self.email,
            (role, customer_id),
            self.password_hash,
        )?;
        if let Some(session) = self.session {
            session.write(tx, self.user_id)?;
        }
        Ok((user, role))
    }

    async fn replayed(
        &self,
        _: &CommandHandler,
        _: &CommandMeta,
        events: &[Arc<EventEnvelope>],
    ) -> Result<(User, Role), CommandError<AccessError>> {
        let state = user_state_of(events).map_err(CommandError::Rejected)?;
        let role = state.user.role.unwrap_or(self.role);
        Ok((state.user, role))
    }
}

/// A user's role or access changes; disabling frees the seat, enabling takes one.
struct UpdateUser<'a> {
    user_id: &'a UserId,
    role: Option<Role>,
    disabled: Option<bool>,
}

impl Command for UpdateUser<'_> {
    type Output = (User, u64);
    type Error = AccessError;
    const NAME: &'static str = "user";

    async fn decide(&self, tx: &mut Tx<'_>) -> Result<(User, u64), CommandError<AccessError>> {
        let ctx = tx.ctx().clone();
        let u_stream = user_stream(self.user_id);
        let (mut user, version) = tx.load::<User>(&u_stream).await.map_err(lift)?;
        if user.registered.is_none() {
            return Err(rejected(UserError::NotFound));
        }
        let command = UserCommand::Update {
            role: self.role,
            disabled: self.disabled,
        };
        let events = user.decide(&command, &ctx).map_err(rejected)?;
        let before = (user.role, user.disabled);
        let staff = user.role.is_some_and(Role::is_staff);
        let mut changes: Vec<TenantCommand> = events
            .iter()
            .filter(|_| staff)
            .filter_map(|e| match e {
                domain::user::UserEvent::Disabled(_) => Some(TenantCommand::ReleaseSeat {
                    user_id: self.user_id.clone(),
                }),
                domain::user::UserEvent::Enabled(_) => Some(TenantCommand::TakeSeat {
                    user_id: self.user_id.clone(),
                }),
                _ => None,
            })
            .collect();
        for e in &events {
            user.apply(e);
        }
        if !events.is_empty() {
            owner_needed(&ctx.actor, [before.0, user.role])?;
        }
        let active_owner =
            |(role, disabled): (Option<Role>, bool)| role == Some(Role::Owner) && !disabled;
        match (
            active_owner(before),
            active_owner((user.role, user.disabled)),
        ) {
            (true, false) => changes.push(TenantCommand::RemoveOwner {
                user_id: self.user_id.clone(),
            }),
            (false, true) => changes.push(TenantCommand::AddOwner {
                user_id: self.user_id.clone(),
            }),
            _ => {}
        }
        // Only a seat or owner change touches the tenant (and checks it is active); the
        // request already passed the tenant gate.
        if !changes.is_empty() {
            let t_stream = tenant_stream(&tx.meta().tenant_id);
            let (mut t, _) = tx.load::<Tenant>(&t_stream).await.map_err(lift)?;
            let mut tenant_events = Vec::new();
            for change in &changes {
                let made = t.decide(change, &ctx).map_err(rejected)?;
                for e in &made {
                    t.apply(e);
                }
                tenant_events.extend(made);
            }
            tx.write::<Tenant>(&t_stream, &tenant_events);
        }
        tx.write::<User>(&u_stream, &events);
        Ok((user, version + events.len() as u64))
    }
}

/// The first ADMIN of a tenant with no OWNER becomes its OWNER: the role change and the
/// tenant's owner in one append, only while the tenant still has none.
struct ClaimOwnership<'a> {
    user_id: &'a UserId,
}

impl Command for ClaimOwnership<'_> {
    type Output = ();
    type Error = AccessError;
    const NAME: &'static str = "user";

    async fn decide(&self, tx: &mut Tx<'_>) -> Result<(), CommandError<AccessError>> {
        let ctx = tx.ctx().clone();
        let t_stream = tenant_stream(&tx.meta().tenant_id);
        let (t, _) = tx.load::<Tenant>(&t_stream).await.map_err(lift)?;
        if !t.owners.is_empty() {
            return Ok(());
        }
        let u_stream = user_stream(self.user_id);
        let (user, _) = tx.load::<User>(&u_stream).await.map_err(lift)?;
        let promote = UserCommand::Update {
            role: Some(Role::Owner),
            disabled: None,
        };
        let events = user.decide(&promote, &ctx).map_err(rejected)?;
        let owner = t
            .decide(
                &TenantCommand::AddOwner {
                    user_id: self.user_id.clone(),
                },
                &ctx,
            )
            .map_err(rejected)?;
        tx.write::<User>(&u_stream, &events);
        tx.write::<Tenant>(&t_stream, &owner);
        Ok(())
    }
}

/// One aggregate's command on a stream that must exist in the tenant's write model,
/// with pinned version if given: sessions (refresh, revoke) and invitations.
struct OnSession<'a> {
    stream: &'a StreamId,
    command: SessionCommand,
    /// The version the caller decided on (a refresh after `recognise`): if the session
    /// moved meanwhile, another refresh with the same token won.
    pinned: Option<u64>,
}

impl Command for OnSession<'_> {
    type Output = ();
    type Error = AccessError;
    const NAME: &'static str = "session";

    async fn decide(&self, tx: &mut Tx<'_>) -> Result<(), CommandError<AccessError>> {
        let (session, _) = tx.load::<Session>(self.stream).await.map_err(lift)?;
        if let Some(v) = self.pinned {
            tx.pin(self.stream, v)?;
        }
        let events = session.decide(&self.command, tx.ctx()).map_err(rejected)?;
        tx.write::<Session>(self.stream, &events);
        Ok(())
    }
}

/// A new session of a signed-in user.
struct StartSession<'a> {
    user_id: &'a UserId,
    session: &'a NewSession,
}

impl Command for StartSession<'_> {
    type Output = ();
    type Error = AccessError;
    const NAME: &'static str = "session";

    async fn decide(&self, tx: &mut Tx<'_>) -> Result<(), CommandError<AccessError>> {
        self.session.write(tx, self.user_id)
    }
}

/// An invitation: issued only while the tenant is active; a portal invitation only for a
/// customer the tenant has.
struct IssueInvitation<'a> {
    stream: &'a StreamId,
    command: InvitationCommand,
    customer_id: Option<&'a str>,
}

impl Command for IssueInvitation<'_> {
    type Output = ();
    type Error = AccessError;
    const NAME: &'static str = "invitation";

    async fn decide(&self, tx: &mut Tx<'_>) -> Result<(), CommandError<AccessError>> {
        let t_stream = tenant_stream(&tx.meta().tenant_id);
        let (t, _) = tx.load::<Tenant>(&t_stream).await.map_err(lift)?;
        if t.registered.is_none() {
            return Err(rejected(TenantError::NotFound));
        }
        t.check_active().map_err(rejected)?;
        if let InvitationCommand::Issue { role, .. } = &self.command {
            owner_needed(&tx.ctx().actor, [None, Some(*role)])?;
        }
        if let Some(id) = self.customer_id {
            let stream = crate::customers::customer_stream(id);
            let (customer, _) = tx
                .load::<domain::customer::Customer>(&stream)
                .await
                .map_err(lift)?;
            if customer.customer_id.is_none() || customer.deleted {
                return Err(rejected(AccessError::NoCustomer));
            }
        }
        let events = Invitation::default()
            .decide(&self.command, tx.ctx())
            .map_err(rejected)?;
        tx.write::<Invitation>(self.stream, &events);
        Ok(())
    }
}

impl AccessService {
    pub fn new(commands: CommandHandler) -> Self {
        Self { commands }
    }

    async fn load<A: Aggregate>(
        &self,
        tenant: &TenantId,
        stream: &StreamId,
    ) -> Result<(A, u64), AccessError>
    where
        AccessError: From<A::Error>,
    {
        Ok(self.commands.state::<A>(tenant, stream).await?)
    }

    /// The tenant's state, or `NotFound` when it was never registered.
    pub async fn tenant(&self, tenant: &TenantId) -> Result<(Tenant, u64), AccessError> {
        let (state, version) = self.load::<Tenant>(tenant, &tenant_stream(tenant)).await?;
        if state.registered.is_none() {
            return Err(TenantError::NotFound.into());
        }
        Ok((state, version))
    }

    /// Runs an access command on the pipeline.
    async fn run<C: Command<Error = AccessError>>(
        &self,
        meta: &CommandMeta,
        command: &C,
    ) -> Result<Ran<C::Output>, AccessError> {
        Ok(self.commands.run(meta, command).await?)
    }

    /// Public sign-up: a new tenant, its first ADMIN and a session, in one append.
    pub async fn register_tenant(
        &self,
        ids: RequestIds,
        company_name: CompanyName,
        admin_email: Email,
        admin_password: String,
        tier: Tier,
    ) -> Result<SignedIn, AccessError> {
        domain::user::check_password(&admin_password)?;
        let tenant = TenantId::parse(Uuid::now_v7().to_string())?;
        let user_id = UserId::parse(Uuid::now_v7().to_string())?;
        let actor = Actor {
            user_id: user_id.clone(),
            role: Role::Owner,
        };
        let password_hash = blocking(move || hash_password(&admin_password)).await??;
        let session = NewSession::mint(&tenant, self.commands.now());
        let meta = CommandMeta::of(tenant.clone(), actor, ids, None);
        self.run(
            &meta,
            &RegisterTenant {
                tenant: &tenant,
                user_id: &user_id,
                company_name: &company_name,
                admin_email: &admin_email,
                tier,
                password_hash: &password_hash,
                session: &session,
            },
        )
        .await?;
        tracing::info!(tenant_id = %tenant, user_id = %user_id, session = %session.stream, tier = tier.as_str(), "tenant registered");
        Ok(SignedIn {
            tenant_id: tenant,
            user_id,
            role: Role::Owner,
            customer_id: None,
            tier,
            refresh_token: session.token,
            refresh_expires_at: session.expires_at,
        })
    }

    /// An ADMIN adds a user: user, email reservation and seat in one append.
    pub async fn register_user(
        &self,
        meta: &CommandMeta,
        email: Email,
        password: String,
        role: Role,
    ) -> Result<UserState, AccessError> {
        domain::user::check_password(&password)?;
        // A retry under the same Idempotency-Key answers the first result before anything
        // is hashed.
        if let Some(events) = self.commands.recorded::<AccessError>(meta).await? {
            return user_state_of(&events);
        }
        let user_id = UserId::parse(Uuid::now_v7().to_string())?;
        let password_hash = blocking(move || hash_password(&password)).await??;
        let ran = self
            .run(
                meta,
                &AddUser {
                    user_id: &user_id,
                    email: &email,
                    role,
                    password_hash: &password_hash,
                    invitation: None,
                    session: None,
                },
            )
            .await?;
        user_state_of(&ran.events)
    }

    /// Changes a user's role or access; disabling frees the seat, enabling takes one.
    pub async fn update_user(
        &self,
        meta: &CommandMeta,
        user_id: &UserId,
        role: Option<Role>,
        disabled: Option<bool>,
    ) -> Result<UserState, AccessError> {
        let ran = self
            .run(
                meta,
                &UpdateUser {
                    user_id,
                    role,
                    disabled,
                },
            )
            .await?;
        let stream = user_stream(user_id);
        let token = ran.token_for(&stream);
        let (user, version) = ran.output;
        Ok(UserState {
            user,
            version,
            token,
        })
    }

    /// An ADMIN issues a single-use invitation code for `role` (optionally bound to an
    /// email); with `customer_id`, a portal invitation that signs up a CUSTOMER of it.
    pub async fn issue_invitation(
        &self,
        meta: &CommandMeta,
        role: Role,
        email: Option<Email>,
        customer_id: Option<String>,
    ) -> Result<IssuedInvitation, AccessError> {
        if (role == Role::Customer) != customer_id.is_some() {
            return Err(UserError::PortalRole.into());
        }
        let id = Uuid::now_v7();
        let code = format!("{}.{}", id.simple(), random_secret());
        let expires_at = self.commands.now() + INVITATION_TTL;
        let stream = StreamId::for_aggregate(Invitation::KIND, id.simple());
        self.run(
            meta,
            &IssueInvitation {
                stream: &stream,
                command: InvitationCommand::Issue {
                    code_hash: digest(&code),
                    role,
                    email: email.clone(),
                    customer_id: customer_id.clone(),
                    expires_at,
                },
                customer_id: customer_id.as_deref(),
            },
        )
        .await?;
        Ok(IssuedInvitation {
            invitation_id: id.simple().to_string(),
            code,
            role,
            email,
            customer_id,
            expires_at,
        })
    }

    /// Sign-up with an invitation: accepts it, adds the user with a seat and starts a
    /// session, in one append; the invitation's exact version makes it single-use.
    pub async fn signup(
        &self,
        ids: RequestIds,
        tenant: &TenantId,
        code: &str,
        email: Email,
        password: String,
    ) -> Result<SignedIn, AccessError> {
        domain::user::check_password(&password)?;
        let stream = parse_invitation_code(code).ok_or(InvitationError::Invalid)?;
        let (invitation, _) = self.load::<Invitation>(tenant, &stream).await?;
        let issued = invitation.issued.ok_or(InvitationError::Invalid)?;
        let user_id = UserId::parse(Uuid::now_v7().to_string())?;
        let password_hash = blocking(move || hash_password(&password)).await??;
        let session = NewSession::mint(tenant, self.commands.now());
        let actor = Actor {
            user_id: user_id.clone(),
            role: issued.role,
        };
        let meta = CommandMeta::of(tenant.clone(), actor, ids, None);
        let ran = self
            .run(
                &meta,
                &AddUser {
                    user_id: &user_id,
                    email: &email,
                    role: issued.role,
                    password_hash: &password_hash,
                    invitation: Some((stream, code)),
                    session: Some(&session),
                },
            )
            .await?;
        let (t, _) = self.tenant(tenant).await?;
        Ok(SignedIn {
            tenant_id: tenant.clone(),
            user_id,
            role: ran.output.1,
            customer_id: issued.customer_id,
            tier: t.tier,
            refresh_token: session.token,
            refresh_expires_at: session.expires_at,
        })
    }

    /// Checks an email and password and starts a session. Every failure of the
    /// credentials is `BadCredentials` after the same argon2 work.
    pub async fn sign_in(
        &self,
        ids: RequestIds,
        tenant: &TenantId,
        email: &Email,
        password: String,
    ) -> Result<SignedIn, AccessError> {
        let (reservation, _) = self
            .load::<EmailReservation>(tenant, &email_stream(email))
            .await?;
        let (user, credential) = match &reservation.user_id {
            Some(id) => (
                Some(self.load::<User>(tenant, &user_stream(id)).await?.0),
                self.load::<Credential>(tenant, &credential_stream(id))
                    .await?
                    .0
                    .password_hash,
            ),
            None => (None, None),
        };
        let phc = credential.unwrap_or_else(|| decoy_hash().to_owned());
        let matches = blocking(move || verify_password(&password, &phc)).await?;
        let user = user.filter(|u| matches && !u.disabled && u.registered.is_some());
        let (Some(user), Some(user_id)) = (user, reservation.user_id) else {
            tracing::info!(tenant_id = %tenant, "sign-in refused");
            auth_metric("signin", "refused");
            return Err(AccessError::BadCredentials);
        };
        let (t, _) = self.tenant(tenant).await?;
        t.check_active()?;
        let mut role = user.role.unwrap_or(Role::Member);
        let first_admin = t.owners.is_empty()
            && role == Role::Admin
            && t.registered
                .as_ref()
                .zip(user.registered.as_ref())
                .is_some_and(|(r, u)| r.admin_email == u.email.as_str());
        let actor = Actor {
            user_id: user_id.clone(),
            role,
        };
        if first_admin {
            // A tenant from before the OWNER role: its first ADMIN becomes its OWNER, by
            // events, at their next sign-in.
            let meta = CommandMeta::of(tenant.clone(), actor.clone(), ids, None);
            self.run(&meta, &ClaimOwnership { user_id: &user_id })
                .await?;
            tracing::info!(tenant_id = %tenant, user_id = %user_id, "the tenant's first ADMIN became its OWNER");
            role = Role::Owner;
        }
        let actor = Actor {
            user_id: user_id.clone(),
            role,
        };
        let session = NewSession::mint(tenant, self.commands.now());
        let meta = CommandMeta::of(tenant.clone(), actor, ids, None);
        self.run(
            &meta,
            &StartSession {
                user_id: &user_id,
                session: &session,
            },
        )
        .await?;
        auth_metric("signin", "ok");
        Ok(SignedIn {
            tenant_id: tenant.clone(),
            user_id,
            role,
            customer_id: user.registered.as_ref().and_then(|r| r.customer_id.clone()),
            tier: t.tier,
            refresh_token: session.token,
            refresh_expires_at: session.expires_at,
        })
    }

    /// Rotates a refresh token. A retired token of the family revokes the family: whoever
    /// holds the current one (perhaps a thief) must sign in again.
    pub async fn refresh(&self, ids: RequestIds, token: &str) -> Result<SignedIn, AccessError> {
        let (tenant, stream) = parse_refresh_token(token).ok_or(AccessError::BadRefreshToken)?;
        let (session, version) = self.load::<Session>(&tenant, &stream).await?;
        let presented = digest(token.trim());
        let Some(user_id) = session.user_id.clone() else {
            return Err(AccessError::BadRefreshToken);
        };
        let system = Actor {
            user_id: user_id.clone(),
            role: Role::Member,
        };
        let meta = CommandMeta::of(tenant.clone(), system, ids, None);
        match session.recognise(&presented, self.commands.now()) {
            Presented::Invalid => {
                auth_metric("refresh", "refused");
                return Err(AccessError::BadRefreshToken);
            }
            Presented::Reused => {
                tracing::warn!(tenant_id = %tenant, session = %stream, user_id = %user_id, "refresh token reused; revoking its family");
                auth_metric("refresh", "reused");
                self.revoke(&meta, &stream, "refresh token reused").await?;
                return Err(AccessError::BadRefreshToken);
            }
            Presented::Current => {}
        }
        let (user, _) = self.load::<User>(&tenant, &user_stream(&user_id)).await?;
        if user.disabled || user.registered.is_none() {
            self.revoke(&meta, &stream, "user disabled").await?;
            return Err(AccessError::BadRefreshToken);
        }
        let (t, _) = self.tenant(&tenant).await?;
        t.check_active()?;
        let family =
            Uuid::try_parse(stream.instance()).map_err(|_| AccessError::BadRefreshToken)?;
        let next = refresh_token(&tenant, family);
        let expires_at = self.commands.now() + REFRESH_TTL;
        let rotated = self
            .run(
                &meta,
                &OnSession {
                    stream: &stream,
                    command: SessionCommand::Refresh {
                        presented_hash: presented,
                        new_hash: digest(&next),
                        expires_at,
                    },
                    pinned: Some(version),
                },
            )
            .await;
        match rotated {
            Ok(_) => {}
            // Another refresh with the same token won the race: this one is a reuse.
            Err(AccessError::Contended(_) | AccessError::BadRefreshToken) => {
                return Err(AccessError::BadRefreshToken);
            }
            Err(e) => return Err(e),
        }
        auth_metric("refresh", "ok");
        Ok(SignedIn {
            tenant_id: tenant,
            user_id,
            role: user.role.unwrap_or(Role::Member),
            customer_id: user.registered.as_ref().and_then(|r| r.customer_id.clone()),
            tier: t.tier,
            refresh_token: next,
            refresh_expires_at: expires_at,
        })
    }

    /// Revokes the family of `token`, whichever of its tokens it is. Unknown tokens are
    /// ignored, so the answer says nothing about them.
    pub async fn sign_out(&self, ids: RequestIds, token: &str) -> Result<(), AccessError> {
        let Some((tenant, stream)) = parse_refresh_token(token) else {
            return Ok(());
        };
        let (session, _) = self.load::<Session>(&tenant, &stream).await?;
        let Some(user_id) = session.user_id.clone() else {
            return Ok(());
        };
        let presented = digest(token.trim());
        if session.recognise(&presented, self.commands.now()) == Presented::Invalid {
            return Ok(());
        }
        let actor = Actor {
            user_id,
            role: Role::Member,
        };
        let meta = CommandMeta::of(tenant, actor, ids, None);
        self.revoke(&meta, &stream, "signed out").await
    }

    async fn revoke(
        &self,
        meta: &CommandMeta,
        stream: &StreamId,
        reason: &str,
    ) -> Result<(), AccessError> {
        self.run(
            meta,
            &OnSession {
                stream,
                command: SessionCommand::Revoke {
                    reason: reason.to_owned(),
                },
                pinned: None,
            },
        )
        .await
        .map(|_| ())
    }
}

/// The user a (replayed) append wrote, folded from its user-stream events.
fn user_state_of(events: &[Arc<EventEnvelope>]) -> Result<UserState, AccessError> {
    let mut user = User::default();
    let mut last = None;
    for e in events.iter().filter(|e| e.stream_id.kind() == User::KIND) {
        let event =
            domain::user::UserEvent::from_stored(&e.event_type, e.schema_version, &e.payload)?;
        user.apply(&event);
        last = Some(e);
    }
    let last = last.ok_or(UserError::NotFound)?;
    Ok(UserState {
        user,
        version: last.version,
        token: Some(token_of(last)),
    })
}

/// Counts sign-in and refresh outcomes for `/metrics` (`chronicle_auth_total`).
fn auth_metric(action: &'static str, outcome: &'static str) {
    metrics::counter!("chronicle_auth_total", "action" => action, "outcome" => outcome)
        .increment(1);
}
