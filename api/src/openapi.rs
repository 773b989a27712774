//! The OpenAPI 3.1 document at `/openapi.json`, generated from the handlers' annotations
//! and the request and response types themselves.

use crate::error::Problem;
use crate::{access, health, tasks};
use axum::Json;
use projections::tasks::TaskView;
use projections::users::UserView;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(title = "Chronicle", description = "Event-sourced CQRS backend for multi-tenant SaaS. \
        Errors are application/problem+json (RFC 9457). Commands return X-Consistency-Token; \
        queries that send it back wait until the read model shows the write."),
    paths(tasks::list, tasks::create, tasks::get, tasks::update, tasks::delete,
          access::register_tenant, access::get_tenant, access::update_tenant, access::delete_tenant,
          access::list_users, access::create_user, access::get_user, access::update_user,
          access::create_invitation, access::sign_up, access::sign_in, access::refresh, access::sign_out,
          health::health, health::ready, health::metrics, openapi_json),
    components(schemas(TaskView, tasks::TaskPage, tasks::CreateTask, tasks::UpdateTask, Problem,
        UserView, access::UserPage, access::CreateUser, access::UpdateUser, access::CreateInvitation,
        access::InvitationView, access::TenantView, access::RegisterTenant, access::UpdateTenant,
        access::TokenResponse, access::SignIn, access::SignUp, access::RefreshRequest)),
    modifiers(&Bearer),
    tags((name = "tasks", description = "Tasks of the caller's tenant"),
         (name = "tenants", description = "Sign-up, plan, settings and lifecycle of the caller's tenant"),
         (name = "users", description = "Users of the caller's tenant and invitations"),
         (name = "auth", description = "Built-in sign-in: access and rotating refresh tokens"),
         (name = "operations", description = "Health, readiness, metrics, this document"))
)]
pub struct ApiDoc;

struct Bearer;

impl Modify for Bearer {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "operations", responses((status = 200, description = "OpenAPI 3.1")))]
pub async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
