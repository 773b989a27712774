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

use crate::handler::{CommandError, CommandHandler, CommandMeta};
use crate::store::{
    AppendOutcome, AppendRequest, ExpectedVersion, Idempotency, NewEvent, StoreError, StreamWrite,
};
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
    Actor, Aggregate, CommandContext, ConsistencyToken, DomainEvent, EventEnvelope, Role, StreamId,
    TenantId, Tier, UserId,
};
use std::sync::OnceLock;
use uuid::Uuid;

/// How long a refresh token (and its family) lives without use.
pub const REFRESH_TTL: Duration = Duration::days(30);
/// How long an invitation code is valid.
pub const INVITATION_TTL: Duration = Duration::days(7);
const ATTEMPTS: u32 = 5;

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
            CommandError::PreconditionFailed { .. } | CommandError::IdempotencyMismatch => {
                AccessError::Contended(1)
            }
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

/// The events of one aggregate for one stream of a multi-stream append.
pub(crate) fn write<A: Aggregate>(
    stream: StreamId,
    version: u64,
    events: &[A::Event],
) -> StreamWrite {
    StreamWrite {
        stream_id: stream,
        expected: if version == 0 {
            ExpectedVersion::NoStream
        } else {
            ExpectedVersion::Exact(version)
        },
        events: events
            .iter()
            .map(|e| NewEvent {
                event_type: e.event_type().to_owned(),
                schema_version: e.schema_version(),
                payload: e.to_payload(),
            })
            .collect(),
        prev_hash: None,
    }
}

fn decide<A: Aggregate>(
    state: &A,
    command: &A::Command,
    ctx: &CommandContext,
) -> Result<Vec<A::Event>, AccessError>
where
    AccessError: From<A::Error>,
{
    Ok(state.decide(command, ctx)?)
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

impl AccessService {
    pub fn new(commands: CommandHandler) -> Self {
        Self { commands }
    }

    fn ctx(&self, actor: &Actor) -> CommandContext {
        CommandContext {
            actor: actor.clone(),
            now: self.commands.now(),
        }
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

    async fn append(
        &self,
        tenant: &TenantId,
        actor: &Actor,
        streams: Vec<StreamWrite>,
    ) -> Result<Vec<EventEnvelope>, StoreError> {
        self.append_once(tenant, actor, streams, None)
            .await
            .map(|o| o.events)
    }

    /// An append under an optional idempotency key; a replay returns the first events.
    async fn append_once(
        &self,
        tenant: &TenantId,
        actor: &Actor,
        streams: Vec<StreamWrite>,
        idempotency: Option<Idempotency>,
    ) -> Result<AppendOutcome, StoreError> {
        let id = Uuid::now_v7();
        let outcome = self
            .commands
            .store()
            .append(AppendRequest {
                tenant_id: tenant.clone(),
                command_id: id,
                correlation_id: id,
                causation_id: None,
                actor: actor.user_id.to_string(),
                idempotency,
                streams,
            })
            .await?;
        Ok(outcome)
    }

    /// Public sign-up: a new tenant, its first ADMIN and a session, in one append.
    pub async fn register_tenant(
        &self,
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
            role: Role::Admin,
        };
        let ctx = self.ctx(&actor);
        let password_hash = blocking(move || hash_password(&admin_password)).await??;
        let mut t = Tenant::default();
        let mut tenant_events = decide(
            &t,
            &TenantCommand::Register {
                tenant_id: tenant.clone(),
                company_name,
                admin_email: admin_email.as_str().to_owned(),
                tier,
            },
            &ctx,
        )?;
        for e in &tenant_events {
            t.apply(e);
        }
        tenant_events.extend(decide(
            &t,
            &TenantCommand::TakeSeat {
                user_id: user_id.clone(),
            },
            &ctx,
        )?);
        let user_events = decide(
            &User::default(),
            &UserCommand::Register {
                user_id: user_id.clone(),
                email: admin_email.clone(),
                role: Role::Admin,
            },
            &ctx,
        )?;
        let email_events = decide(&EmailReservation::default(), &user_id, &ctx)?;
        let credential_events = decide(&Credential::default(), &password_hash, &ctx)?;
        let (session, session_write, refresh, expires) =
            self.new_session(&tenant, &user_id, &ctx)?;
        let streams = vec![
            write::<Tenant>(tenant_stream(&tenant), 0, &tenant_events),
            write::<User>(user_stream(&user_id), 0, &user_events),
            write::<EmailReservation>(email_stream(&admin_email), 0, &email_events),
            write::<Credential>(credential_stream(&user_id), 0, &credential_events),
            session_write,
        ];
        self.append(&tenant, &actor, streams)
            .await
            .map_err(AccessError::Store)?;
        tracing::info!(tenant_id = %tenant, user_id = %user_id, session = %session, tier = tier.as_str(), "tenant registered");
        Ok(SignedIn {
            tenant_id: tenant,
            user_id,
            role: Role::Admin,
            tier,
            refresh_token: refresh,
            refresh_expires_at: expires,
        })
    }

    /// A new session stream's write and its first refresh token.
    fn new_session(
        &self,
        tenant: &TenantId,
        user_id: &UserId,
        ctx: &CommandContext,
    ) -> Result<(StreamId, StreamWrite, String, DateTime<Utc>), AccessError> {
        let family = Uuid::now_v7();
        let stream = StreamId::for_aggregate(Session::KIND, family.simple());
        let token = refresh_token(tenant, family);
        let expires_at = ctx.now + REFRESH_TTL;
        let events = decide(
            &Session::default(),
            &SessionCommand::Start {
                user_id: user_id.clone(),
                token_hash: digest(&token),
                expires_at,
            },
            ctx,
        )?;
        let w = write::<Session>(stream.clone(), 0, &events);
        Ok((stream, w, token, expires_at))
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
        // A retry under the same Idempotency-Key answers the first result, before any
        // check that the first attempt changed (its seat, its email).
        if let Some(idem) = &meta.idempotency {
            let record = self
                .commands
                .store()
                .idempotent_result(&meta.tenant_id, &idem.key)
                .await
                .map_err(AccessError::Store)?;
            match record {
                Some(r) if r.request_hash != idem.request_hash => {
                    return Err(AccessError::IdempotencyMismatch);
                }
                Some(r) => return user_state_of(&r.events),
                None => {}
            }
        }
        let user_id = UserId::parse(Uuid::now_v7().to_string())?;
        let password_hash = blocking(move || hash_password(&password)).await??;
        let command = UserCommand::Register {
            user_id: user_id.clone(),
            email: email.clone(),
            role,
        };
        self.add_user(
            &meta.tenant_id,
            &meta.actor,
            &user_id,
            &email,
            (&command, &password_hash),
            (vec![], meta.idempotency.clone()),
        )
        .await
    }

    /// Writes a new user with its credential, seat and email reservation, plus `extra`
    /// streams; retries
    /// when only the tenant stream moved (another seat taken or released meanwhile).
    async fn add_user(
        &self,
        tenant: &TenantId,
        actor: &Actor,
        user_id: &UserId,
        email: &Email,
        (command, password_hash): (&UserCommand, &String),
        (extra, idempotency): (Vec<StreamWrite>, Option<Idempotency>),
    ) -> Result<UserState, AccessError> {
        let t_stream = tenant_stream(tenant);
        for _ in 0..ATTEMPTS {
            let (t, t_version) = self.tenant(tenant).await?;
            let ctx = self.ctx(actor);
            let seat = decide(
                &t,
                &TenantCommand::TakeSeat {
                    user_id: user_id.clone(),
                },
                &ctx,
            )?;
            let user_events = decide(&User::default(), command, &ctx)?;
            let email_events = decide(&EmailReservation::default(), user_id, &ctx)?;
            let credential_events = decide(&Credential::default(), password_hash, &ctx)?;
            let mut streams = vec![
                write::<User>(user_stream(user_id), 0, &user_events),
                write::<EmailReservation>(email_stream(email), 0, &email_events),
                write::<Credential>(credential_stream(user_id), 0, &credential_events),
                write::<Tenant>(t_stream.clone(), t_version, &seat),
            ];
            streams.extend(extra.iter().cloned());
            match self
                .append_once(tenant, actor, streams, idempotency.clone())
                .await
            {
                // Written now or by the first request under this idempotency key.
                Ok(outcome) => return user_state_of(&outcome.events),
                Err(StoreError::IdempotencyMismatch { .. }) => {
                    return Err(AccessError::IdempotencyMismatch);
                }
                Err(StoreError::Conflict { stream_id, .. })
                    if stream_id.kind() == EmailReservation::KIND =>
                {
                    return Err(AccessError::EmailTaken);
                }
                Err(StoreError::Conflict { stream_id, .. }) if stream_id == t_stream => continue,
                Err(StoreError::Conflict { stream_id, .. })
                    if stream_id.kind() == Invitation::KIND =>
                {
                    return Err(InvitationError::Invalid.into());
                }
                Err(e) => return Err(AccessError::Store(e)),
            }
        }
        Err(AccessError::Contended(ATTEMPTS))
    }

    /// Changes a user's role or access; disabling frees the seat, enabling takes one.
    pub async fn update_user(
        &self,
        meta: &CommandMeta,
        user_id: &UserId,
        role: Option<Role>,
        disabled: Option<bool>,
    ) -> Result<UserState, AccessError> {
        let tenant = &meta.tenant_id;
        let u_stream = user_stream(user_id);
        let t_stream = tenant_stream(tenant);
        let command = UserCommand::Update { role, disabled };
        for _ in 0..ATTEMPTS {
            let (mut user, version) = self.load::<User>(tenant, &u_stream).await?;
            if user.registered.is_none() {
                return Err(UserError::NotFound.into());
            }
            let ctx = self.ctx(&meta.actor);
            let events = decide(&user, &command, &ctx)?;
            if events.is_empty() {
                return Ok(UserState {
                    user,
                    version,
                    token: None,
                });
            }
            let mut streams = vec![write::<User>(u_stream.clone(), version, &events)];
            let seat_change = events.iter().find_map(|e| match e {
                domain::user::UserEvent::Disabled(_) => Some(TenantCommand::ReleaseSeat {
                    user_id: user_id.clone(),
                }),
                domain::user::UserEvent::Enabled(_) => Some(TenantCommand::TakeSeat {
                    user_id: user_id.clone(),
                }),
                _ => None,
            });
            // Only a seat change touches the tenant (and checks it is active); the request
            // already passed the tenant gate.
            if let Some(change) = seat_change {
                let (t, t_version) = self.tenant(tenant).await?;
                let seat = decide(&t, &change, &ctx)?;
                streams.push(write::<Tenant>(t_stream.clone(), t_version, &seat));
            }
            match self.append(tenant, &meta.actor, streams).await {
                Ok(written) => {
                    for e in &events {
                        user.apply(e);
                    }
                    let token = written
                        .iter()
                        .rfind(|e| e.stream_id == u_stream)
                        .map(token_of);
                    return Ok(UserState {
                        user,
                        version: version + events.len() as u64,
                        token,
                    });
                }
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(AccessError::Store(e)),
            }
        }
        Err(AccessError::Contended(ATTEMPTS))
    }

    /// An ADMIN issues a single-use invitation code for `role` (optionally bound to an email).
    pub async fn issue_invitation(
        &self,
        meta: &CommandMeta,
        role: Role,
        email: Option<Email>,
    ) -> Result<IssuedInvitation, AccessError> {
        let (t, _) = self.tenant(&meta.tenant_id).await?;
        t.check_active()?;
        let id = Uuid::now_v7();
        let code = format!("{}.{}", id.simple(), random_secret());
        let ctx = self.ctx(&meta.actor);
        let expires_at = ctx.now + INVITATION_TTL;
        let events = decide(
            &Invitation::default(),
            &InvitationCommand::Issue {
                code_hash: digest(&code),
                role,
                email: email.clone(),
                expires_at,
            },
            &ctx,
        )?;
        let stream = StreamId::for_aggregate(Invitation::KIND, id.simple());
        self.append(
            &meta.tenant_id,
            &meta.actor,
            vec![write::<Invitation>(stream, 0, &events)],
        )
        .await
        .map_err(AccessError::Store)?;
        Ok(IssuedInvitation {
            invitation_id: id.simple().to_string(),
            code,
            role,
            email,
            expires_at,
        })
    }

    /// Sign-up with an invitation: accepts it, adds the user with a seat and starts a
    /// session, in one append; the invitation's exact version makes it single-use.
    pub async fn signup(
        &self,
        tenant: &TenantId,
        code: &str,
        email: Email,
        password: String,
    ) -> Result<SignedIn, AccessError> {
        domain::user::check_password(&password)?;
        let stream = parse_invitation_code(code).ok_or(InvitationError::Invalid)?;
        let (invitation, version) = self.load::<Invitation>(tenant, &stream).await?;
        let user_id = UserId::parse(Uuid::now_v7().to_string())?;
        let issued = invitation.issued.clone().ok_or(InvitationError::Invalid)?;
        let actor = Actor {
            user_id: user_id.clone(),
            role: issued.role,
        };
        let ctx = self.ctx(&actor);
        let accepted = decide(
            &invitation,
            &InvitationCommand::Accept {
                code_hash: digest(code.trim()),
                user_id: user_id.clone(),
                email: email.clone(),
            },
            &ctx,
        )?;
        let password_hash = blocking(move || hash_password(&password)).await??;
        let command = UserCommand::Register {
            user_id: user_id.clone(),
            email: email.clone(),
            role: issued.role,
        };
        let (_, session_write, refresh, expires) = self.new_session(tenant, &user_id, &ctx)?;
        let extra = vec![
            write::<Invitation>(stream, version, &accepted),
            session_write,
        ];
        self.add_user(
            tenant,
            &actor,
            &user_id,
            &email,
            (&command, &password_hash),
            (extra, None),
        )
        .await?;
        let (t, _) = self.tenant(tenant).await?;
        Ok(SignedIn {
            tenant_id: tenant.clone(),
            user_id,
            role: issued.role,
            tier: t.tier,
            refresh_token: refresh,
            refresh_expires_at: expires,
        })
    }

    /// Checks an email and password and starts a session. Every failure of the
    /// credentials is `BadCredentials` after the same argon2 work.
    pub async fn sign_in(
        &self,
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
        let role = user.role.unwrap_or(Role::Member);
        let actor = Actor {
            user_id: user_id.clone(),
            role,
        };
        let ctx = self.ctx(&actor);
        let (_, session_write, refresh, expires) = self.new_session(tenant, &user_id, &ctx)?;
        self.append(tenant, &actor, vec![session_write])
            .await
            .map_err(AccessError::Store)?;
        auth_metric("signin", "ok");
        Ok(SignedIn {
            tenant_id: tenant.clone(),
            user_id,
            role,
            tier: t.tier,
            refresh_token: refresh,
            refresh_expires_at: expires,
        })
    }

    /// Rotates a refresh token. A retired token of the family revokes the family: whoever
    /// holds the current one (perhaps a thief) must sign in again.
    pub async fn refresh(&self, token: &str) -> Result<SignedIn, AccessError> {
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
        let ctx = self.ctx(&system);
        match session.recognise(&presented, ctx.now) {
            Presented::Invalid => {
                auth_metric("refresh", "refused");
                return Err(AccessError::BadRefreshToken);
            }
            Presented::Reused => {
                tracing::warn!(tenant_id = %tenant, session = %stream, user_id = %user_id, "refresh token reused; revoking its family");
                auth_metric("refresh", "reused");
                self.revoke(&tenant, &stream, &system, "refresh token reused")
                    .await?;
                return Err(AccessError::BadRefreshToken);
            }
            Presented::Current => {}
        }
        let (user, _) = self.load::<User>(&tenant, &user_stream(&user_id)).await?;
        if user.disabled || user.registered.is_none() {
            self.revoke(&tenant, &stream, &system, "user disabled")
                .await?;
            return Err(AccessError::BadRefreshToken);
        }
        let (t, _) = self.tenant(&tenant).await?;
        t.check_active()?;
        let family =
            Uuid::try_parse(stream.instance()).map_err(|_| AccessError::BadRefreshToken)?;
        let next = refresh_token(&tenant, family);
        let expires_at = ctx.now + REFRESH_TTL;
        let events = decide(
            &session,
            &SessionCommand::Refresh {
                presented_hash: presented,
                new_hash: digest(&next),
                expires_at,
            },
            &ctx,
        )?;
        match self
            .append(
                &tenant,
                &system,
                vec![write::<Session>(stream, version, &events)],
            )
            .await
        {
            Ok(_) => {}
            // Another refresh with the same token won the race: this one is a reuse.
            Err(StoreError::Conflict { .. }) => return Err(AccessError::BadRefreshToken),
            Err(e) => return Err(AccessError::Store(e)),
        }
        auth_metric("refresh", "ok");
        Ok(SignedIn {
            tenant_id: tenant,
            user_id,
            role: user.role.unwrap_or(Role::Member),
            tier: t.tier,
            refresh_token: next,
            refresh_expires_at: expires_at,
        })
    }

    /// Revokes the family of `token`, whichever of its tokens it is. Unknown tokens are
    /// ignored, so the answer says nothing about them.
    pub async fn sign_out(&self, token: &str) -> Result<(), AccessError> {
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
        self.revoke(&tenant, &stream, &actor, "signed out").await
    }

    async fn revoke(
        &self,
        tenant: &TenantId,
        stream: &StreamId,
        actor: &Actor,
        reason: &str,
    ) -> Result<(), AccessError> {
        for _ in 0..ATTEMPTS {
            let (session, version) = self.load::<Session>(tenant, stream).await?;
            let events = decide(
                &session,
                &SessionCommand::Revoke {
                    reason: reason.to_owned(),
                },
                &self.ctx(actor),
            )?;
            if events.is_empty() {
                return Ok(());
            }
            match self
                .append(
                    tenant,
                    actor,
                    vec![write::<Session>(stream.clone(), version, &events)],
                )
                .await
            {
                Ok(_) => return Ok(()),
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(AccessError::Store(e)),
            }
        }
        Err(AccessError::Contended(ATTEMPTS))
    }
}

/// The user a (replayed) append wrote, folded from its user-stream events.
fn user_state_of(events: &[EventEnvelope]) -> Result<UserState, AccessError> {
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

fn token_of(e: &EventEnvelope) -> ConsistencyToken {
    ConsistencyToken {
        position: e.position,
        version: e.version,
        stream_id: e.stream_id.clone(),
    }
}
