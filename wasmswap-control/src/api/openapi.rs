//! The OpenAPI 3.1 document, generated from the handlers' annotations, at
//! `GET /api/v1/openapi.json`.

use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

/// The API's description.
#[derive(Debug, OpenApi)]
#[openapi(
    info(title = "wasmswap control plane", description = "Modules, nodes, interfaces, execution, audit. Errors are `{\"error\":{code,message,details,timestamp,requestId}}`."),
    paths(
        super::login::login,
        super::modules::register, super::modules::list, super::modules::get, super::modules::delete,
        super::modules::binary, super::modules::wit, super::modules::diff,
        super::nodes::register, super::nodes::heartbeat, super::nodes::list, super::nodes::get,
        super::nodes::health, super::nodes::delete,
        super::interfaces::register, super::interfaces::list, super::interfaces::get,
        super::interfaces::validate, super::interfaces::approve, super::interfaces::deprecate,
        super::execute::execute,
        super::deployments::create, super::deployments::list, super::deployments::get,
        super::deployments::events, super::deployments::execute, super::deployments::approve,
        super::deployments::pause, super::deployments::resume, super::deployments::promote,
        super::deployments::abort, super::deployments::rollback,
        super::pins::set, super::pins::delete, super::pins::list,
        super::audit::list,
        super::system::health, super::system::metrics,
    ),
    modifiers(&Bearer),
    tags(
        (name = "auth"), (name = "modules"), (name = "nodes"), (name = "interfaces"),
        (name = "execute"), (name = "deployments"), (name = "audit"), (name = "system")
    )
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

/// The document (no token needed).
pub(super) async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
