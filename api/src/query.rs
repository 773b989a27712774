//! What the command and query handlers of every resource share: command metadata and
//! response headers, waiting for a consistency token, reading one row or a page of a view.

use crate::app::AppState;
use crate::error::ApiError;
use crate::extract::CONSISTENCY_HEADER;
use crate::tokens::Principal;
use axum::http::{HeaderMap, HeaderValue, header};
use base64::Engine;
use base64::alphabet;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use commands::{CommandMeta, RequestIds};
use domain::ConsistencyToken;
use domain::{Pattern, TextRule};
use projections::ListQuery;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};

const DEFAULT_LIMIT: usize = 50;
const MAX_LIMIT: usize = 100;

pub(crate) fn meta(
    p: &Principal,
    ids: RequestIds,
    idempotency: Option<commands::Idempotency>,
) -> CommandMeta {
    CommandMeta::of(p.tenant_id.clone(), p.actor.clone(), ids, idempotency)
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

/// Waits, bounded, until the read model shows the write behind the token. A token that
/// names no write of the caller's tenant (no event at its stream, version and position)
/// has nothing to wait for: the query is answered at once, as without a token.
pub(crate) async fn wait_fresh(
    state: &AppState,
    principal: &Principal,
    token: Option<domain::ConsistencyToken>,
) -> Result<(), ApiError> {
    let Some(token) = token else { return Ok(()) };
    let tenant = &principal.tenant_id;
    if state
        .freshness
        .wait_for(tenant, &token, std::time::Duration::ZERO)
        .await
    {
        return Ok(());
    }
    let written = state
        .commands
        .store()
        .read_stream(tenant, &token.stream_id, token.version, 1)
        .await?;
    let is_a_write = written
        .first()
        .is_some_and(|e| e.version == token.version && e.position == token.position);
    if !is_a_write
        || state
            .freshness
            .wait_for(tenant, &token, state.consistency_timeout)
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
/// `missing`; a row of a customer outside the caller's scope (`scope`) is 404 too.
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
    if !crate::scope::sees_row(state, principal, &doc).await? {
        return Err(ApiError::NotFound(missing.to_owned()));
    }
    serde_json::from_value(doc).map_err(ApiError::internal)
}

/// One page of `view` for the caller's tenant, within the caller's scope (`scope`): the
/// rows after `cursor` (after waiting for `token`), and the cursor of the next page when
/// there is one.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn page_of<T: serde::de::DeserializeOwned>(
    state: &AppState,
    principal: &Principal,
    view: &str,
    filters: Vec<(String, String)>,
    search: Option<projections::Search>,
    limit: Option<PageLimit>,
    cursor: Option<Cursor>,
    token: Option<domain::ConsistencyToken>,
) -> Result<(Vec<T>, Option<String>), ApiError> {
    let limit = limit.map_or(DEFAULT_LIMIT, |l| l.0);
    let after = cursor.map(|c| c.position());
    wait_fresh(state, principal, token).await?;
    let query = ListQuery {
        search,
        filters,
        within: crate::scope::within(state, principal).await?,
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

/// A list's `limit` parameter: `MIN_LIMIT` to `MAX_LIMIT` rows, `DEFAULT_LIMIT` when absent.
#[derive(Debug, Clone, Copy)]
pub struct PageLimit(usize);

impl PageLimit {
    pub(crate) fn get(self) -> usize {
        self.0
    }
}

const MIN_LIMIT: usize = 1;

impl<'de> serde::Deserialize<'de> for PageLimit {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = <u64 as serde::Deserialize>::deserialize(d)?;
        usize::try_from(n)
            .ok()
            .filter(|n| (MIN_LIMIT..=MAX_LIMIT).contains(n))
            .map(Self)
            .ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "must be an integer from {MIN_LIMIT} to {MAX_LIMIT}"
                ))
            })
    }
}

impl utoipa::PartialSchema for PageLimit {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .minimum(Some(MIN_LIMIT as f64))
            .maximum(Some(MAX_LIMIT as f64))
            .default(Some(DEFAULT_LIMIT.into()))
            .description(Some("rows per page"))
            .into()
    }
}

impl utoipa::ToSchema for PageLimit {}

/// Where a page starts: the `next_cursor` of the page before. Any cursor of this grammar is
/// a position (the rows after it); one this server issued is where the last page ended.
#[derive(Debug, Clone)]
pub struct Cursor(String);

static CURSOR_PATTERN: Pattern = Pattern::new(r"^(?:[A-Za-z0-9_-]{4})*(?:[A-Za-z0-9_-]{2,3})?$");

impl Cursor {
    const RULE: TextRule = TextRule {
        pattern: Some(&CURSOR_PATTERN),
        ..TextRule::chars(1, 1024, "the next_cursor of the previous page (base64url)")
    };

    /// `raw` as a cursor, or why not, naming `field`.
    pub(crate) fn parse(field: &'static str, raw: &str) -> Result<Self, ApiError> {
        Self::RULE.check(field, raw)?;
        Ok(Self(raw.to_owned()))
    }

    /// A cursor naming `position`.
    pub(crate) fn encode(position: &str) -> String {
        URL_SAFE_NO_PAD.encode(position)
    }

    pub(crate) fn position(&self) -> String {
        // The pattern admits only whole base64url groups; stray low bits are ignored.
        const LENIENT: GeneralPurpose = GeneralPurpose::new(
            &alphabet::URL_SAFE,
            GeneralPurposeConfig::new()
                .with_decode_allow_trailing_bits(true)
                .with_decode_padding_mode(DecodePaddingMode::RequireNone),
        );
        let bytes = LENIENT.decode(&self.0).unwrap_or_default();
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

impl<'de> serde::Deserialize<'de> for Cursor {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        Self::RULE
            .check("cursor", &raw)
            .map_err(|e| serde::de::Error::custom(e.reason))?;
        Ok(Self(raw))
    }
}

impl utoipa::PartialSchema for Cursor {
    fn schema() -> RefOr<Schema> {
        Self::RULE.schema()
    }
}

impl utoipa::ToSchema for Cursor {}

/// What `q` searches for.
#[derive(Debug)]
pub struct SearchText(pub(crate) String);

impl SearchText {
    pub(crate) const RULE: TextRule = TextRule {
        not_blank: true,
        ..TextRule::chars(
            1,
            100,
            "text the searched fields contain, ignoring ASCII case",
        )
    };
}

impl<'de> Deserialize<'de> for SearchText {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        Self::RULE
            .check("q", &raw)
            .map_err(|e| serde::de::Error::custom(e.reason))?;
        Ok(Self(raw.trim().to_owned()))
    }
}

impl utoipa::PartialSchema for SearchText {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        Self::RULE.schema()
    }
}

impl utoipa::ToSchema for SearchText {}

impl SearchText {
    /// A search for this text in `fields`.
    pub(crate) fn over(&self, fields: &[&str]) -> projections::Search {
        projections::Search {
            fields: fields.iter().map(|f| (*f).to_owned()).collect(),
            text: self.0.to_ascii_lowercase(),
        }
    }
}
