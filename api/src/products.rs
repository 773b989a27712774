//! `/products` (seed 003): the tenant's catalogue. ADMINs create, change, restock and
//! delete products; everyone of the tenant reads them. A SKU is unique per tenant (409),
//! stock never goes below zero, and prices are decimal strings in the tenant's currency.

use crate::app::{AppState, Routes};
use crate::error::{ApiError, Problem};
use crate::extract::{
    Consistency, IdempotencyKey, Ids, IfMatch, JsonBody, PathId, QueryParams, present,
};
use crate::query::{Cursor, PageLimit, SearchText, meta, page_of, row_of, write_headers};
use crate::tokens::Principal;
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use commands::commerce::{CreateProduct, DeleteProduct, product_stream};
use domain::money::{Amount, Currency, Money};
use domain::product::{
    AdjustmentReason, Category, Product, ProductCommand, ProductDescription, ProductName, Sku,
    Stock, StockDelta,
};
use projections::products::{ProductView, VIEW};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateProductBody {
    name: ProductName,
    #[serde(default)]
    description: Option<ProductDescription>,
    /// In the tenant's currency (tenant setting `currency`).
    price: Money,
    category: Category,
    sku: Sku,
    /// Default 0.
    #[serde(default)]
    inventory: Option<Stock>,
}

/// Absent fields stay as they are; the SKU and the stock do not change here.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(min_properties = 1)]
pub struct UpdateProductBody {
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    name: Option<ProductName>,
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    description: Option<ProductDescription>,
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    price: Option<Money>,
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    category: Option<Category>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AdjustInventoryBody {
    delta: StockDelta,
    reason: AdjustmentReason,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    #[param(inline)]
    category: Option<Category>,
    #[param(inline)]
    q: Option<SearchText>,
    #[param(inline)]
    limit: Option<PageLimit>,
    #[param(inline)]
    cursor: Option<Cursor>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ProductPage {
    items: Vec<ProductView>,
    next_cursor: Option<String>,
}

/// The product id of a path: only a canonical UUID names one.
fn product_id(id: &str) -> Result<String, ApiError> {
    crate::extract::canonical_uuid(id, "no such product")
}

fn view_of(p: &Principal, product: &Product, version: u64) -> Result<ProductView, ApiError> {
    ProductView::from_state(p.tenant_id.as_str(), product, version)
        .ok_or_else(|| ApiError::internal("a product command left no product to show"))
}

#[utoipa::path(post, path = "/products", tag = "products", operation_id = "CreateProduct",
    request_body = CreateProductBody, params(IdempotencyKey),
    responses((status = 201, body = ProductView, description = "created", headers(
            ("X-Consistency-Token" = String, description = "send it with a query to read this write"),
            ("ETag" = String, description = "the product's version"),
            ("Location" = String, description = "the product's path"))),
        (status = 403, body = Problem, description = "not ADMIN, or the tier's max_products is reached (limit-reached)"),
        (status = 409, body = Problem, description = "the SKU is already taken in the tenant")),
    security(("bearer" = ["ADMIN"])))]
pub async fn create(
    State(state): State<AppState>,
    principal: Principal,
    Ids(ids): Ids,
    idempotency: IdempotencyKey,
    body: JsonBody<CreateProductBody>,
) -> Result<Response, ApiError> {
    let b = body.value;
    let product_id = Uuid::now_v7().to_string();
    let command = CreateProduct {
        product_id: product_id.clone(),
        tier: principal.tier,
        command: ProductCommand::Create {
            product_id: product_id.clone(),
            name: b.name,
            description: b.description.unwrap_or(ProductDescription::parse("")?),
            // The currency is the tenant's, filled in by the command.
            price: Amount {
                amount: b.price,
                currency: Currency::default(),
            },
            category: b.category,
            sku: b.sku,
            inventory: b.inventory.map_or(0, Stock::get),
            quota_shard: 0,
        },
    };
    let idem = idempotency.with_request(
        "POST /products",
        principal.actor.user_id.as_str(),
        &body.bytes,
    );
    let ran = state
        .commands
        .run(&meta(&principal, ids, idem), &command)
        .await?;
    // A replay answers the first run's product, under its own id.
    let created = ran
        .output
        .created
        .as_ref()
        .map_or(product_id, |c| c.product_id.clone());
    let created = product_stream(&created);
    let version = ran.version_of(&created).unwrap_or(1);
    let view = view_of(&principal, &ran.output, version)?;
    let mut headers = write_headers(ran.token_for(&created).as_ref(), version);
    if let Ok(v) = HeaderValue::from_str(&format!("/products/{}", view.product_id)) {
        headers.insert(header::LOCATION, v);
    }
    Ok((StatusCode::CREATED, headers, Json(view)).into_response())
}

#[utoipa::path(get, path = "/products", tag = "products", operation_id = "ListProducts",
    params(ListParams, Consistency),
    responses((status = 200, body = ProductPage)),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
    QueryParams(params): QueryParams<ListParams>,
    Consistency(token): Consistency,
) -> Result<Json<ProductPage>, ApiError> {
    let mut filters = Vec::new();
    if let Some(c) = params.category {
        filters.push(("category".to_owned(), c.as_str().to_owned()));
    }
    let search = params.q.map(|q| q.over(&["name", "sku"]));
    let (items, next_cursor) = page_of(
        &state,
        &principal,
        VIEW,
        filters,
        search,
        params.limit,
        params.cursor,
        token,
    )
    .await?;
    Ok(Json(ProductPage { items, next_cursor }))
}

#[utoipa::path(get, path = "/products/{id}", tag = "products", operation_id = "GetProduct",
    params(("id" = Uuid, Path), Consistency),
    responses((status = 200, body = ProductView, headers(("ETag" = String, description = "the product's version")))),
    security(("bearer" = [])))]
pub async fn get(
    State(state): State<AppState>,
    principal: Principal,
    PathId(id): PathId,
    Consistency(token): Consistency,
) -> Result<Response, ApiError> {
    let id = product_id(&id)?;
    let view: ProductView = row_of(&state, &principal, VIEW, &id, token, "no such product").await?;
    Ok((write_headers(None, view.version), Json(view)).into_response())
}

/// A one-stream product command's answer.
async fn change(
    state: &AppState,
    principal: &Principal,
    ids: commands::RequestIds,
    (id, command, if_match): (&str, ProductCommand, Option<u64>),
    idem: Option<commands::Idempotency>,
) -> Result<Response, ApiError> {
    let stream = product_stream(id);
    let done = state
        .commands
        .execute::<Product>(&meta(principal, ids, idem), &stream, &command, if_match)
        .await?;
    let view = view_of(principal, &done.state, done.version)?;
    Ok((write_headers(done.token.as_ref(), done.version), Json(view)).into_response())
}

#[utoipa::path(put, path = "/products/{id}", tag = "products", operation_id = "UpdateProduct",
    request_body = UpdateProductBody, params(("id" = Uuid, Path), IfMatch),
    responses((status = 200, body = ProductView, headers(
            ("X-Consistency-Token" = String, description = "send it with a query to read this write"),
            ("ETag" = String, description = "the product's version"))),
        (status = 410, body = Problem, description = "the product was deleted")),
    security(("bearer" = ["ADMIN"])))]
pub async fn update(
    State(state): State<AppState>,
    principal: Principal,
    PathId(id): PathId,
    IfMatch(if_match): IfMatch,
    Ids(ids): Ids,
    body: JsonBody<UpdateProductBody>,
) -> Result<Response, ApiError> {
    let id = product_id(&id)?;
    let b = body.value;
    if b.name.is_none() && b.description.is_none() && b.price.is_none() && b.category.is_none() {
        return Err(ApiError::Validation {
            field: "body".into(),
            detail: "send at least one of name, description, price, category".into(),
        });
    }
    let currency =
        commands::commerce::tenant_currency(&state.commands, &principal.tenant_id).await?;
    let command = ProductCommand::Update {
        name: b.name,
        description: b.description,
        price: b.price.map(|amount| Amount {
            amount,
            currency: currency.clone(),
        }),
        category: b.category,
    };
    change(&state, &principal, ids, (&id, command, if_match), None).await
}

#[utoipa::path(post, path = "/products/{id}/inventory", tag = "products", operation_id = "AdjustInventory",
    request_body = AdjustInventoryBody, params(("id" = Uuid, Path), IfMatch, IdempotencyKey),
    responses((status = 200, body = ProductView, headers(
            ("X-Consistency-Token" = String, description = "send it with a query to read this write"),
            ("ETag" = String, description = "the product's version"))),
        (status = 410, body = Problem, description = "the product was deleted")),
    security(("bearer" = ["ADMIN"])))]
pub async fn adjust(
    State(state): State<AppState>,
    principal: Principal,
    PathId(id): PathId,
    IfMatch(if_match): IfMatch,
    Ids(ids): Ids,
    idempotency: IdempotencyKey,
    body: JsonBody<AdjustInventoryBody>,
) -> Result<Response, ApiError> {
    let id = product_id(&id)?;
    let route = format!("POST /products/{id}/inventory");
    let idem = idempotency.with_request(&route, principal.actor.user_id.as_str(), &body.bytes);
    let b = body.value;
    let command = ProductCommand::AdjustInventory {
        delta: b.delta.get(),
        reason: b.reason.as_str().to_owned(),
    };
    change(&state, &principal, ids, (&id, command, if_match), idem).await
}

#[utoipa::path(delete, path = "/products/{id}", tag = "products", operation_id = "DeleteProduct",
    params(("id" = Uuid, Path), IfMatch),
    responses((status = 204, description = "deleted; orders keep their lines", headers(
            ("X-Consistency-Token" = String, description = "send it with a query to read this write"))),
        (status = 410, body = Problem, description = "the product was already deleted")),
    security(("bearer" = ["ADMIN"])))]
pub async fn delete(
    State(state): State<AppState>,
    principal: Principal,
    PathId(id): PathId,
    IfMatch(if_match): IfMatch,
    Ids(ids): Ids,
) -> Result<Response, ApiError> {
    let id = product_id(&id)?;
    let ran = state
        .commands
        .run(
            &meta(&principal, ids, None),
            &DeleteProduct {
                product_id: id.clone(),
                if_match,
            },
        )
        .await?;
    let token = ran.token_for(&product_stream(&id));
    Ok((
        StatusCode::NO_CONTENT,
        write_headers(token.as_ref(), ran.output.1),
    )
        .into_response())
}

/// The routes of `/products`, each declared once by its handler's `#[utoipa::path]`.
pub fn routes() -> Routes {
    Routes::new()
        .routes(utoipa_axum::routes!(list, create))
        .routes(utoipa_axum::routes!(get, update, delete))
        .routes(utoipa_axum::routes!(adjust))
}
