//! `/transactions` (seed 002's transactions): postings for ADMINs and service integrations
//! (agents only read the logs). A transaction is one atomic append over its stream and
//! every account it touches: a transfer moves money between two accounts or not at all.
//! No posting takes an account below its overdraft limit, touches a frozen or closed
//! account, or mixes currencies: each refusal is 422 with the reason, and writes nothing.
//! A reference (or an `Idempotency-Key`) never posts twice; a reversal posts the opposite
//! entry, and nothing is edited or deleted.

use crate::app::{AppState, Routes};
use crate::error::{ApiError, Problem};
use crate::extract::{Consistency, IdempotencyKey, Ids, JsonBody, PathId};
use crate::query::{meta, row_of, write_headers};
use crate::tokens::Principal;
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::NaiveDate;
use commands::CommandError;
use commands::ledger::{LedgerError, PostTransaction, legs, transaction_stream};
use domain::account::Kind;
use domain::money::{Currency, PositiveMoney};
use domain::transaction::{NewTransaction, Reference, Transaction};
use projections::transactions::{TransactionView, VIEW};
use serde::Deserialize;

/// The money a posting moves, and what it is.
struct Movement {
    amount: PositiveMoney,
    currency: Currency,
    reference: Reference,
    value_date: NaiveDate,
}

/// What a posting on one account is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum OnAccountKind {
    Deposit,
    Withdrawal,
    Fee,
    Interest,
}

/// A transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TransferKind {
    Transfer,
}

/// A posting on one account: a deposit, a withdrawal, a fee or interest.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OnAccount {
    kind: OnAccountKind,
    account_id: uuid::Uuid,
    amount: PositiveMoney,
    /// The account's currency.
    currency: Currency,
    reference: Reference,
    /// The day the money counts from (YYYY-MM-DD).
    value_date: NaiveDate,
}

/// A transfer from one account to another (two different accounts of the tenant).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Between {
    /// Always `transfer`: it tells this shape apart.
    #[allow(dead_code)]
    kind: TransferKind,
    from: uuid::Uuid,
    to: uuid::Uuid,
    amount: PositiveMoney,
    /// Both accounts' currency.
    currency: Currency,
    reference: Reference,
    /// The day the money counts from (YYYY-MM-DD).
    value_date: NaiveDate,
}

/// What `POST /transactions` posts: one of the two shapes, told apart by `kind` (a
/// reversal is `POST /transactions/{id}/reverse`).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(untagged, try_from = "serde_json::Value")]
pub enum PostBody {
    OnAccount(OnAccount),
    Transfer(Between),
}

/// Reads the shape `kind` names, so that a refusal names what is wrong with it.
impl TryFrom<serde_json::Value> for PostBody {
    type Error = String;

    fn try_from(v: serde_json::Value) -> Result<Self, String> {
        let read = |e: serde_json::Error| e.to_string();
        match v.get("kind").and_then(serde_json::Value::as_str) {
            Some("transfer") => Between::deserialize(v).map(Self::Transfer).map_err(read),
            Some(_) => OnAccount::deserialize(v).map(Self::OnAccount).map_err(read),
            None => Err("missing field `kind`".into()),
        }
    }
}

impl PostBody {
    fn kind(&self) -> Kind {
        match self {
            Self::OnAccount(a) => match a.kind {
                OnAccountKind::Deposit => Kind::Deposit,
                OnAccountKind::Withdrawal => Kind::Withdrawal,
                OnAccountKind::Fee => Kind::Fee,
                OnAccountKind::Interest => Kind::Interest,
            },
            Self::Transfer(_) => Kind::Transfer,
        }
    }

    /// The legs and the movement.
    fn split(&self) -> (Vec<domain::transaction::Leg>, Movement) {
        let kind = self.kind();
        match self {
            Self::OnAccount(a) => (
                legs(kind, Some(&a.account_id.to_string()), None),
                Movement {
                    amount: a.amount,
                    currency: a.currency.clone(),
                    reference: a.reference.clone(),
                    value_date: a.value_date,
                },
            ),
            Self::Transfer(b) => (
                legs(kind, None, Some((&b.from.to_string(), &b.to.to_string()))),
                Movement {
                    amount: b.amount,
                    currency: b.currency.clone(),
                    reference: b.reference.clone(),
                    value_date: b.value_date,
                },
            ),
        }
    }
}

fn invalid(field: &str, detail: impl Into<String>) -> ApiError {
    let detail = detail.into();
    ApiError::Validation {
        field: field.into(),
        detail: format!("{field}: {detail}"),
    }
}

/// A posting's refusal: 422 with the reason; a reference posted already: 409.
fn refused(e: CommandError<LedgerError>) -> ApiError {
    use domain::account::AccountError as A;
    match e {
        CommandError::Rejected(LedgerError::Account(A::NotFound)) => {
            invalid("account_id", "no such account")
        }
        CommandError::Rejected(LedgerError::Account(a)) => invalid("amount", a.to_string()),
        CommandError::Rejected(LedgerError::SameAccount) => {
            invalid("to", LedgerError::SameAccount.to_string())
        }
        CommandError::Rejected(LedgerError::Transaction(t)) => match t {
            domain::transaction::TransactionError::ZeroAmount => invalid("amount", t.to_string()),
            domain::transaction::TransactionError::NotFound => {
                ApiError::NotFound("no such transaction".into())
            }
            other => ApiError::Conflict(other.to_string()),
        },
        CommandError::Taken(_) => ApiError::Conflict(
            "a transaction with this reference was posted already: it is not posted twice".into(),
        ),
        other => other.into(),
    }
}

async fn post(
    state: &AppState,
    principal: &Principal,
    ids: commands::RequestIds,
    idem: Option<commands::Idempotency>,
    transaction: NewTransaction,
) -> Result<Response, ApiError> {
    let id = transaction.transaction_id.clone();
    let ran = state
        .commands
        .run(
            &meta(principal, ids, idem),
            &PostTransaction { transaction },
        )
        .await
        .map_err(refused)?;
    let (posted, _) = &ran.output;
    let id = posted
        .posted
        .as_ref()
        .map_or(id, |p| p.transaction_id.clone());
    let stream = transaction_stream(&id);
    let version = ran.version_of(&stream).unwrap_or(1);
    let view = TransactionView::from_state(principal.tenant_id.as_str(), posted, version)
        .ok_or_else(|| ApiError::internal("a posting left no transaction to show"))?;
    // The last account written: reading it (or its log) with this token sees the posting.
    let last = ran.events.last().and_then(|e| ran.token_for(&e.stream_id));
    let mut headers = write_headers(last.as_ref(), version);
    if let Ok(v) = HeaderValue::from_str(&format!("/transactions/{id}")) {
        headers.insert(header::LOCATION, v);
    }
    Ok((StatusCode::CREATED, headers, Json(view)).into_response())
}

#[utoipa::path(post, path = "/transactions", tag = "transactions", operation_id = "PostTransaction",
    request_body = PostBody, params(IdempotencyKey),
    responses((status = 201, body = TransactionView, description = "posted on every account it names, or on none", headers(
            ("X-Consistency-Token" = String, description = "send it with a query to read this write"),
            ("Location" = String, description = "the transaction's path"))),
        (status = 409, body = Problem, description = "the reference was posted already")),
    security(("bearer" = ["ADMIN"])))]
pub async fn create(
    State(state): State<AppState>,
    principal: Principal,
    Ids(ids): Ids,
    idempotency: IdempotencyKey,
    body: JsonBody<PostBody>,
) -> Result<Response, ApiError> {
    let kind = body.value.kind();
    let (legs, m) = body.value.split();
    let transaction = NewTransaction {
        transaction_id: m.reference.transaction_id(),
        kind,
        legs,
        amount: m.amount.get(),
        currency: m.currency,
        reference: m.reference.as_str().to_owned(),
        value_date: m.value_date,
        reverses: None,
    };
    let idem = idempotency.with_request(
        "POST /transactions",
        principal.actor.user_id.as_str(),
        &body.bytes,
    );
    post(&state, &principal, ids, idem, transaction).await
}

#[utoipa::path(post, path = "/transactions/{id}/reverse", tag = "transactions", operation_id = "ReverseTransaction",
    params(("id" = String, Path, description = "the transaction's id")),
    responses((status = 201, body = TransactionView, description = "the reversal: the opposite legs, a transaction of its own", headers(
            ("X-Consistency-Token" = String, description = "send it with a query to read this write"),
            ("Location" = String, description = "the reversal's path"))),
        (status = 409, body = Problem, description = "reversed already, or itself a reversal")),
    security(("bearer" = ["ADMIN"])))]
pub async fn reverse(
    State(state): State<AppState>,
    principal: Principal,
    Ids(ids): Ids,
    PathId(id): PathId,
) -> Result<Response, ApiError> {
    let id = transaction_id(&id)?;
    let (original, _) = state
        .commands
        .state::<Transaction>(&principal.tenant_id, &transaction_stream(&id))
        .await?;
    let posted = original
        .posted
        .ok_or_else(|| ApiError::NotFound("no such transaction".into()))?;
    let transaction = posted.reversal(state.commands.now().date_naive());
    post(&state, &principal, ids, None, transaction).await
}

/// A transaction id (32 hex digits); anything else names none.
fn transaction_id(id: &str) -> Result<String, ApiError> {
    let ok = id.len() == 32
        && id
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase());
    if ok {
        Ok(id.to_owned())
    } else {
        Err(ApiError::NotFound("no such transaction".into()))
    }
}

#[utoipa::path(get, path = "/transactions/{id}", tag = "transactions", operation_id = "GetTransaction",
    params(("id" = String, Path, description = "the transaction's id"), Consistency),
    responses((status = 200, body = TransactionView)),
    security(("bearer" = [])))]
pub async fn get(
    State(state): State<AppState>,
    principal: Principal,
    PathId(id): PathId,
    Consistency(token): Consistency,
) -> Result<Json<TransactionView>, ApiError> {
    let id = transaction_id(&id)?;
    let view: TransactionView =
        row_of(&state, &principal, VIEW, &id, token, "no such transaction").await?;
    let accounts: Vec<String> = view.legs.iter().map(|l| l.account_id.clone()).collect();
    if !crate::scope::sees_any_account(&state, &principal, &accounts).await? {
        return Err(ApiError::NotFound("no such transaction".into()));
    }
    Ok(Json(view))
}

/// The routes of `/transactions`.
pub fn routes() -> Routes {
    Routes::new()
        .routes(utoipa_axum::routes!(create))
        .routes(utoipa_axum::routes!(get))
        .routes(utoipa_axum::routes!(reverse))
}
