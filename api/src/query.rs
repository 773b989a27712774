//! What the command and query handlers of every resource share: command metadata and
//! response headers, waiting for a consistency token, reading one row or a page of a view.

use crate::app::AppState;
use crate::auth::Principal;
use crate::error::ApiError;
use crate::extract::CONSISTENCY_HEADER;
use axum::http::{HeaderMap, HeaderValue, header};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use commands::CommandMeta;
use domain::ConsistencyToken;
use projections::ListQuery;
use serde::de::DeserializeOwned;
use uuid::Uuid;

const DEFAULT_LIMIT: usize = 50;
const MAX_LIMIT: usize = 100;

pub(crate) fn meta(p: &Principal, idempotency: Option<commands::Idempotency>) -> CommandMeta {
    let command_id = Uuid::now_v7();
    CommandMeta {
        tenant_id: p.tenant_id.clone(),
        actor: p.actor.clone(),
        command_id,
        correlation_id: command_id,
        idempotency,
    }
}

/// The headers of a write's answer: the ETag of `version` and, when there is one, the
/// consistency token a later query can send back.
pub(crate) fn write_headers(token: Option<&ConsistencyToken>, version: u64) -> HeaderMap {
    let mut headers = HeaderMap::new();
    if let Some(token) = token
        && let Ok(v) = HeaderValue::from_str(&token.to_string())
    {
        headers.insert(CONSISTENCY_HEADER, v);
    }
    if let Ok(v) = HeaderValue::from_str(&format!("\"{version}\"")) {
        headers.insert(header::ETAG, v);
    }
    headers
}

/// Waits, bounded, until the read model shows the write behind the token.
pub(crate) async fn wait_fresh(
    state: &AppState,
    principal: &Principal,
    token: Option<domain::ConsistencyToken>,
) -> Result<(), ApiError> {
    let Some(token) = token else { return Ok(()) };
    if state
        .freshness
        .wait_for(&principal.tenant_id, &token, state.consistency_timeout)
        .await
    {
        Ok(())
    } else {
        Err(ApiError::Unavailable(format!(
            "the read model has not caught up with the write within {} ms; retry",
            state.consistency_timeout.as_millis()
        )))
    }
}

/// One row of `view` for the caller's tenant (after waiting for `token`), or 404 with
/// `missing`.
pub(crate) async fn row_of<T: DeserializeOwned>(
    state: &AppState,
    principal: &Principal,
    view: &str,
    id: &str,
    token: Option<ConsistencyToken>,
    missing: &str,
) -> Result<T, ApiError> {
    wait_fresh(state, principal, token).await?;
    let doc = state
        .views
        .get(view, &principal.tenant_id, id)
        .await?
        .and_then(|r| r.doc)
        .ok_or_else(|| ApiError::NotFound(missing.to_owned()))?;
    serde_json::from_value(doc).map_err(ApiError::internal)
}

/// One page of `view` for the caller's tenant: the rows after `cursor` (after waiting for
/// `token`), and the cursor of the next page when there is one.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn page_of<T: serde::de::DeserializeOwned>(
    state: &AppState,
    principal: &Principal,
    view: &str,
    filters: Vec<(String, String)>,
    limit: Option<String>,
    cursor: Option<String>,
    token: Option<domain::ConsistencyToken>,
) -> Result<(Vec<T>, Option<String>), ApiError> {
    let limit = page_limit(limit)?;
    let after = cursor.map(|c| decode_cursor(&c)).transpose()?;
    wait_fresh(state, principal, token).await?;
    let query = ListQuery {
        filters,
        after,
        limit: limit + 1,
    };
    let mut rows = state.views.list(view, &principal.tenant_id, &query).await?;
    let more = rows.len() > limit;
    rows.truncate(limit);
    let next_cursor = more
        .then(|| rows.last().map(|r| URL_SAFE_NO_PAD.encode(&r.row_id)))
        .flatten();
    let items = rows
        .into_iter()
        .filter_map(|r| r.doc)
        .map(|doc| serde_json::from_value(doc).map_err(ApiError::internal))
        .collect::<Result<_, _>>()?;
    Ok((items, next_cursor))
}

/// A list's `limit` parameter: 1 to `MAX_LIMIT`, `DEFAULT_LIMIT` when absent.
fn page_limit(limit: Option<String>) -> Result<usize, ApiError> {
    match limit {
        None => Ok(DEFAULT_LIMIT),
        Some(l) => l
            .parse::<usize>()
            .ok()
            .filter(|l| (1..=MAX_LIMIT).contains(l))
            .ok_or_else(|| ApiError::Validation {
                field: "limit".into(),
                detail: format!("limit: must be an integer from 1 to {MAX_LIMIT}"),
            }),
    }
}

fn decode_cursor(cursor: &str) -> Result<String, ApiError> {
    URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| ApiError::Validation {
            field: "cursor".into(),
            detail: "cursor: not a cursor this server issued".into(),
        })
}
