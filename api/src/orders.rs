//! `/orders` (seed 003): PlaceOrder and the order workflow. Placing an order reserves the
//! stock of every product on it in the same atomic append; cancelling gives it back.
//! pending → confirmed → shipped → delivered, cancel from pending or confirmed; confirm,
//! ship and deliver are ADMIN's, and a MEMBER may cancel a pending order they placed.

use crate::app::{AppState, Routes};
use crate::error::{ApiError, Problem};
use crate::extract::{
    Consistency, IdempotencyKey, Ids, IfMatch, JsonBody, PathId, QueryParams, present,
};
use crate::query::{Cursor, PageLimit, meta, page_of, row_of, write_headers};
use crate::tokens::Principal;
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use commands::RequestIds;
use commands::commerce::{ChangeOrder, LineRequest, PlaceOrder, order_stream};
use domain::order::{Order, OrderCommand, OrderStatus, Quantity, ShippingAddress};
use domain::user::Email;
use projections::orders::{OrderView, VIEW};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LineItem {
    #[schema(value_type = Uuid)]
    product_id: ProductRef,
    quantity: Quantity,
}

/// A product's id in an order line: a canonical UUID.
#[derive(Debug)]
pub struct ProductRef(String);

impl<'de> Deserialize<'de> for ProductRef {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        Uuid::try_parse(&raw)
            .ok()
            .filter(|_| raw.len() == 36)
            .map(|u| Self(u.to_string()))
            .ok_or_else(|| serde::de::Error::custom("must be a product id (a UUID)"))
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlaceOrderBody {
    customer_email: Email,
    /// 1 to 100 lines, each product once.
    #[schema(min_items = 1, max_items = 100)]
    items: Vec<LineItem>,
    shipping_address: ShippingAddress,
}

/// The seed's `PUT /orders/{id}`: a status (the same moves as the action routes) or,
/// while the order is pending, a new address; one of them per request.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(min_properties = 1, max_properties = 1)]
pub struct UpdateOrderBody {
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    status: Option<OrderStatus>,
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    shipping_address: Option<ShippingAddress>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    #[param(inline)]
    status: Option<OrderStatus>,
    #[param(inline)]
    customer_email: Option<Email>,
    #[param(inline)]
    limit: Option<PageLimit>,
    #[param(inline)]
    cursor: Option<Cursor>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct OrderPage {
    items: Vec<OrderView>,
    next_cursor: Option<String>,
}

fn order_id(id: &str) -> Result<String, ApiError> {
    crate::extract::canonical_uuid(id, "no such order")
}

fn view_of(p: &Principal, order: &Order, version: u64) -> Result<OrderView, ApiError> {
    OrderView::from_state(p.tenant_id.as_str(), order, version)
        .ok_or_else(|| ApiError::internal("an order command left no order to show"))
}

#[utoipa::path(post, path = "/orders", tag = "orders", operation_id = "PlaceOrder",
    request_body = PlaceOrderBody, params(IdempotencyKey),
    responses((status = 201, body = OrderView, description = "placed: the order is pending and its stock reserved", headers(
            ("X-Consistency-Token" = String, description = "send it with a query to read this write"),
            ("ETag" = String, description = "the order's version"),
            ("Location" = String, description = "the order's path"))),
        (status = 403, body = Problem, description = "the tier's max_orders for this month is reached (limit-reached)"),
        (status = 422, body = Problem, description = "not an order: no lines, over 100, a product twice, an unknown or deleted product, too little stock (`field` is items), or an invalid field")),
    security(("bearer" = [])))]
pub async fn place(
    State(state): State<AppState>,
    principal: Principal,
    Ids(ids): Ids,
    idempotency: IdempotencyKey,
    body: JsonBody<PlaceOrderBody>,
) -> Result<Response, ApiError> {
    let idem = idempotency.with_request(
        "POST /orders",
        principal.actor.user_id.as_str(),
        &body.bytes,
    );
    let b = body.value;
    let id = Uuid::now_v7().to_string();
    let command = PlaceOrder {
        order_id: id.clone(),
        tier: principal.tier,
        customer_email: b.customer_email,
        lines: b
            .items
            .into_iter()
            .map(|l| LineRequest {
                product_id: l.product_id.0,
                quantity: l.quantity.get(),
            })
            .collect(),
        shipping_address: b.shipping_address,
    };
    let ran = state
        .commands
        .run(&meta(&principal, ids, idem), &command)
        .await?;
    let placed = ran
        .output
        .placed
        .as_ref()
        .map_or(id, |p| p.order_id.clone());
    let stream = order_stream(&placed);
    let version = ran.version_of(&stream).unwrap_or(1);
    let view = view_of(&principal, &ran.output, version)?;
    let mut headers = write_headers(ran.token_for(&stream).as_ref(), version);
    if let Ok(v) = HeaderValue::from_str(&format!("/orders/{placed}")) {
        headers.insert(header::LOCATION, v);
    }
    Ok((StatusCode::CREATED, headers, Json(view)).into_response())
}

#[utoipa::path(get, path = "/orders", tag = "orders", operation_id = "ListOrders",
    params(ListParams, Consistency),
    responses((status = 200, body = OrderPage)),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
    QueryParams(params): QueryParams<ListParams>,
    Consistency(token): Consistency,
) -> Result<Json<OrderPage>, ApiError> {
    let mut filters = Vec::new();
    if let Some(s) = params.status {
        filters.push(("status".to_owned(), s.as_str().to_owned()));
    }
    if let Some(e) = params.customer_email {
        filters.push(("customer_email".to_owned(), e.as_str().to_owned()));
    }
    let (items, next_cursor) = page_of(
        &state,
        &principal,
        VIEW,
        filters,
        None,
        params.limit,
        params.cursor,
        token,
    )
    .await?;
    Ok(Json(OrderPage { items, next_cursor }))
}

#[utoipa::path(get, path = "/orders/{id}", tag = "orders", operation_id = "GetOrder",
    params(("id" = Uuid, Path), Consistency),
    responses((status = 200, body = OrderView, headers(("ETag" = String, description = "the order's version")))),
    security(("bearer" = [])))]
pub async fn get(
    State(state): State<AppState>,
    principal: Principal,
    PathId(id): PathId,
    Consistency(token): Consistency,
) -> Result<Response, ApiError> {
    let id = order_id(&id)?;
    let view: OrderView = row_of(&state, &principal, VIEW, &id, token, "no such order").await?;
    Ok((write_headers(None, view.version), Json(view)).into_response())
}

/// Runs one change of an order and answers with the order after it.
async fn change(
    state: &AppState,
    principal: &Principal,
    ids: RequestIds,
    (id, command, if_match): (&str, OrderCommand, Option<u64>),
) -> Result<Response, ApiError> {
    let id = order_id(id)?;
    let ran = state
        .commands
        .run(
            &meta(principal, ids, None),
            &ChangeOrder {
                order_id: id.clone(),
                command,
                if_match,
            },
        )
        .await?;
    let (order, version) = &ran.output;
    let view = view_of(principal, order, *version)?;
    let token = ran.token_for(&order_stream(&id));
    Ok((write_headers(token.as_ref(), *version), Json(view)).into_response())
}

#[utoipa::path(put, path = "/orders/{id}", tag = "orders", operation_id = "UpdateOrder",
    request_body = UpdateOrderBody, params(("id" = Uuid, Path), IfMatch),
    responses((status = 200, body = OrderView, headers(
            ("X-Consistency-Token" = String, description = "send it with a query to read this write"),
            ("ETag" = String, description = "the order's version"))),
        (status = 403, body = Problem, description = "a MEMBER moving an order on, or changing another's order"),
        (status = 409, body = Problem, description = "the move is not allowed from the current status (both are named)")),
    security(("bearer" = [])))]
pub async fn update(
    State(state): State<AppState>,
    principal: Principal,
    PathId(id): PathId,
    IfMatch(if_match): IfMatch,
    Ids(ids): Ids,
    body: JsonBody<UpdateOrderBody>,
) -> Result<Response, ApiError> {
    let b = body.value;
    let command = match (b.status, b.shipping_address) {
        (Some(to), None) => OrderCommand::Transition { to },
        (None, Some(address)) => OrderCommand::ChangeShipping(address),
        (None, None) => {
            return Err(ApiError::Validation {
                field: "body".into(),
                detail: "send status or shipping_address".into(),
            });
        }
        (Some(_), Some(_)) => {
            return Err(ApiError::Validation {
                field: "body".into(),
                detail: "send status or shipping_address, one at a time".into(),
            });
        }
    };
    change(&state, &principal, ids, (&id, command, if_match)).await
}

macro_rules! transition {
    ($fn:ident, $path:literal, $op:literal, $to:expr, $access:tt, $what:literal) => {
        #[doc = $what]
        #[utoipa::path(post, path = $path, tag = "orders", operation_id = $op,
            params(("id" = Uuid, Path), IfMatch),
            responses((status = 200, body = OrderView, headers(
                    ("X-Consistency-Token" = String, description = "send it with a query to read this write"),
                    ("ETag" = String, description = "the order's version"))),
                (status = 409, body = Problem, description = "the move is not allowed from the current status (both are named)")),
            security(("bearer" = $access)))]
        pub async fn $fn(
            State(state): State<AppState>,
            principal: Principal,
            PathId(id): PathId,
            IfMatch(if_match): IfMatch,
            Ids(ids): Ids,
        ) -> Result<Response, ApiError> {
            let command = OrderCommand::Transition { to: $to };
            change(&state, &principal, ids, (&id, command, if_match)).await
        }
    };
}

transition!(
    confirm,
    "/orders/{id}/confirm",
    "ConfirmOrder",
    OrderStatus::Confirmed,
    ["ADMIN"],
    "pending → confirmed."
);
transition!(
    ship,
    "/orders/{id}/ship",
    "ShipOrder",
    OrderStatus::Shipped,
    ["ADMIN"],
    "confirmed → shipped."
);
transition!(
    deliver,
    "/orders/{id}/deliver",
    "DeliverOrder",
    OrderStatus::Delivered,
    ["ADMIN"],
    "shipped → delivered."
);
transition!(
    cancel,
    "/orders/{id}/cancel",
    "CancelOrder",
    OrderStatus::Cancelled,
    [],
    "pending or confirmed → cancelled, giving the stock back; a MEMBER cancels only a pending order they placed."
);

/// The routes of `/orders`, each declared once by its handler's `#[utoipa::path]`.
pub fn routes() -> Routes {
    Routes::new()
        .routes(utoipa_axum::routes!(list, place))
        .routes(utoipa_axum::routes!(get, update))
        .routes(utoipa_axum::routes!(confirm))
        .routes(utoipa_axum::routes!(ship))
        .routes(utoipa_axum::routes!(deliver))
        .routes(utoipa_axum::routes!(cancel))
}
