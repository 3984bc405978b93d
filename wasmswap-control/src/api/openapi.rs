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
    modifiers(&Bearer, &CommonResponses),
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

/// Answers every route can give that its handler does not declare: 429
/// where a rate limit applies (every authenticated route, and login), and
/// 400 and 415 where there is a JSON body (bad JSON, a body that is not
/// JSON).
struct CommonResponses;

impl Modify for CommonResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        let error = |description: &str| {
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("ErrorBody")))
                        .build(),
                )
                .build()
        };
        for (path, item) in openapi.paths.paths.iter_mut() {
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ];
            for op in operations.into_iter().flatten() {
                let responses = &mut op.responses.responses;
                let limited = op.security.as_ref().is_some_and(|s| !s.is_empty())
                    || path.ends_with("/authentication/login");
                if limited {
                    responses.entry("429".into()).or_insert_with(|| {
                        error("Rate limit reached (`Retry-After` says when to retry).").into()
                    });
                }
                let queried =
                    op.parameters.iter().flatten().any(|p| {
                        matches!(p.parameter_in, utoipa::openapi::path::ParameterIn::Query)
                    });
                if queried || op.request_body.is_some() {
                    responses.entry("400".into()).or_insert_with(|| {
                        error(
                            "A query parameter or the body is malformed, unknown or out of range.",
                        )
                        .into()
                    });
                }
                if op.request_body.is_some() {
                    responses.entry("415".into()).or_insert_with(|| {
                        error("The body's `Content-Type` is not one this route accepts.").into()
                    });
                }
            }
        }
    }
}

/// The document (no token needed).
pub(super) async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
