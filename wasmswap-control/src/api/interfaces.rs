//! WIT interfaces: register (reviewed against the previous version), list,
//! get, validate a module against one, approve, deprecate.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use wasmswap_core::wit::{Compatibility, Registry, RegistryError, Review, Status, WitPackage};

use super::extract::{PathParams, QueryParams};
use super::{AppState, Client, JsonBody, actor};
use crate::auth::{Caller, Permission};
use crate::error::{ApiError, ErrorBody};
use crate::model::Interface;
use crate::store::{NewInterface, interface_id};

/// An interface version to register.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RegisterInterfaceRequest {
    /// WIT package namespace (`wasi`, `acme`).
    #[schema(pattern = r"^[a-z][a-z0-9-]{0,63}$")]
    pub namespace: String,
    /// WIT package name.
    #[schema(pattern = r"^[a-z][a-z0-9-]{0,63}$")]
    pub name: String,
    /// Semantic version; the WIT must declare `package {namespace}:{name}@{version};`.
    #[schema(
        pattern = r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$"
    )]
    pub version: String,
    /// The WIT text (one file).
    pub wit: String,
    /// Which interface of the package (by default its only one).
    #[serde(default)]
    pub interface: Option<String>,
    /// Whose code changes are judged by: `callers` (default), `implementers`, `both`, `none`.
    #[serde(default)]
    pub compatibility: Option<String>,
}

fn check_segment(field: &str, s: &str) -> Result<(), ApiError> {
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.as_bytes()[0].is_ascii_lowercase()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid_field(
            field,
            format!(
                "{field} must be a WIT identifier: lowercase letters, digits and '-', starting with a letter"
            ),
        ))
    }
}

fn parse_compatibility(s: Option<&str>) -> Result<Compatibility, ApiError> {
    let s = s.unwrap_or("callers");
    serde_json::from_value(serde_json::Value::String(s.to_string())).map_err(|_| {
        ApiError::invalid_field(
            "compatibility",
            format!("compatibility {s:?} is not one of callers, implementers, both, none"),
        )
    })
}

fn wit_error(e: &wasmswap_core::wit::WitError) -> ApiError {
    let mut details = serde_json::json!({ "rendered": e.rendered });
    if let Some(loc) = &e.location {
        details["line"] = serde_json::json!(loc.line);
        details["column"] = serde_json::json!(loc.column);
    }
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "invalid_wit",
        format!("the WIT does not parse: {}", e.message),
    )
    .with_details(details)
}

/// The registry of one package's versions, rebuilt from the store.
/// Each package tracks one of its interfaces across versions.
async fn registry_for(
    state: &AppState,
    namespace: &str,
    name: &str,
    interface: &str,
) -> Result<Registry, ApiError> {
    let mut registry = Registry::new();
    for stored in state
        .store
        .list_interfaces(Some(namespace), Some(name))
        .await?
    {
        if stored.interface != interface {
            return Err(ApiError::conflict(format!(
                "{namespace}:{name} tracks interface {:?} (since {}); register {interface:?} under another package",
                stored.interface, stored.interface_id
            )));
        }
        let package = WitPackage::parse("interface.wit", &stored.wit).map_err(|e| {
            ApiError::internal(format!(
                "stored interface {} no longer parses: {e}",
                stored.interface_id
            ))
        })?;
        let review: Review =
            serde_json::from_value(stored.review.clone()).map_err(ApiError::internal)?;
        let status = match stored.status.as_str() {
            "approved" => Status::Approved,
            "deprecated" => Status::Deprecated,
            _ => Status::Draft,
        };
        registry
            .restore(
                &package,
                &stored.interface,
                parse_compatibility(Some(&stored.compatibility))?,
                status,
                review,
            )
            .map_err(ApiError::internal)?;
    }
    Ok(registry)
}

/// Registers an interface version as a draft, reviewed against the
/// versions before (and after) it. A version whose changes break the
/// people its compatibility policy protects needs an admin's approval
/// before deployments may use it; one whose version number does not permit
/// its changes is refused.
#[utoipa::path(post, path = "/api/v1/wasm/interfaces", tag = "interfaces",
    request_body = RegisterInterfaceRequest,
    responses((status = 201, body = Interface),
        (status = 400, body = ErrorBody, description = "bad fields or WIT"),
        (status = 409, body = ErrorBody, description = "this version exists"),
        (status = 422, body = ErrorBody, description = "the version number does not permit the changes"),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn register(
    State(state): State<AppState>,
    caller: Caller,
    client: Client,
    JsonBody(req): JsonBody<RegisterInterfaceRequest>,
) -> Result<(StatusCode, Json<Interface>), ApiError> {
    caller.require(Permission::RegisterInterface)?;
    check_segment("namespace", &req.namespace)?;
    check_segment("name", &req.name)?;
    let version = semver::Version::parse(&req.version).map_err(|e| {
        ApiError::invalid_field(
            "version",
            format!("version {:?} is not a semantic version: {e}", req.version),
        )
    })?;
    if req.wit.len() > 256 << 10 {
        return Err(ApiError::invalid_field(
            "wit",
            "the WIT text is limited to 256 KiB",
        ));
    }
    let compatibility = parse_compatibility(req.compatibility.as_deref())?;
    let wit = req.wit.clone();
    let package = tokio::task::spawn_blocking(move || WitPackage::parse("interface.wit", &wit))
        .await
        .map_err(ApiError::internal)?
        .map_err(|e| wit_error(&e))?;
    let expected = format!("{}:{}@{}", req.namespace, req.name, version);
    let declared = package.name();
    if declared != expected {
        return Err(ApiError::invalid_field(
            "wit",
            format!("the WIT declares package {declared}; this registration is for {expected}"),
        ));
    }
    let names = package.interface_names();
    let interface = match &req.interface {
        Some(i) if names.contains(i) => i.clone(),
        Some(i) => {
            return Err(ApiError::invalid_field(
                "interface",
                format!("the package has no interface {i:?}; it has {names:?}"),
            ));
        }
        None if names.len() == 1 => names[0].clone(),
        None => {
            return Err(ApiError::invalid_field(
                "interface",
                format!(
                    "the package has {} interfaces ({names:?}); say which one",
                    names.len()
                ),
            ));
        }
    };
    let id = interface_id(&req.namespace, &req.name, &req.version);
    // Review and insert as one step per package: two new versions
    // registered at once must each be reviewed against the other.
    let _lock = state
        .store
        .lock(&format!("interface:{}:{}", req.namespace, req.name))
        .await?;
    let mut registry = registry_for(&state, &req.namespace, &req.name, &interface).await?;
    let entry = match registry.register(&package, &interface, compatibility) {
        Ok(e) => e.clone(),
        Err(RegistryError::Duplicate(_)) => {
            return Err(ApiError::conflict(format!("interface {id} already exists")));
        }
        Err(RegistryError::SemverRefused { reason, review, .. }) => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "semver_violation",
                format!(
                    "version {} does not permit its changes: {reason}",
                    req.version
                ),
            )
            .with_details(serde_json::to_value(&*review).map_err(ApiError::internal)?));
        }
        Err(RegistryError::Wit(e)) => return Err(wit_error(&e)),
        Err(e) => return Err(ApiError::bad_request(e.to_string())),
    };
    let stored = state
        .store
        .insert_interface(
            &NewInterface {
                namespace: req.namespace,
                name: req.name,
                version: req.version,
                interface,
                wit: req.wit,
                compatibility: serde_json::to_value(compatibility)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_else(|| "callers".into()),
                review: serde_json::to_value(&entry.review).map_err(ApiError::internal)?,
                needs_approval: entry.review.needs_approval,
            },
            &actor(&caller, &client),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(stored)))
}

/// Interface filters.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct InterfaceListParams {
    /// Only this namespace.
    pub namespace: Option<String>,
    /// Only this package name.
    pub name: Option<String>,
}

/// Interface versions.
#[utoipa::path(get, path = "/api/v1/wasm/interfaces", tag = "interfaces", params(InterfaceListParams),
    responses((status = 200, body = Vec<Interface>), (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    QueryParams(q): QueryParams<InterfaceListParams>,
) -> Result<Json<Vec<Interface>>, ApiError> {
    caller.require(Permission::Read)?;
    Ok(Json(
        state
            .store
            .list_interfaces(q.namespace.as_deref(), q.name.as_deref())
            .await?,
    ))
}

/// One interface version (`ns/name@version`, URL-encoded).
#[utoipa::path(get, path = "/api/v1/wasm/interfaces/{id}", tag = "interfaces",
    params(("id" = String, Path, description = "`{namespace}/{name}@{version}`, URL-encoded")),
    responses((status = 200, body = Interface), (status = 404, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(id): PathParams<String>,
) -> Result<Json<Interface>, ApiError> {
    caller.require(Permission::Read)?;
    Ok(Json(state.store.get_interface(&id).await?))
}

/// Which module to check.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ValidateRequest {
    /// The module (a component).
    pub module_id: String,
}

/// Whether a module implements an interface.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ValidateResponse {
    /// The interface.
    pub interface_id: String,
    /// The module.
    pub module_id: String,
    /// It exports the interface with compatible functions and types.
    pub satisfied: bool,
    /// What is missing or incompatible, one line each.
    pub problems: Vec<String>,
    /// The changes behind the problems.
    #[schema(value_type = Vec<Object>)]
    pub changes: serde_json::Value,
}

/// Checks that a module's component exports the interface.
#[utoipa::path(post, path = "/api/v1/wasm/interfaces/{id}/validate", tag = "interfaces",
    params(("id" = String, Path)), request_body = ValidateRequest,
    responses((status = 200, body = ValidateResponse), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn validate(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(id): PathParams<String>,
    JsonBody(req): JsonBody<ValidateRequest>,
) -> Result<Json<ValidateResponse>, ApiError> {
    caller.require(Permission::Read)?;
    let iface = state.store.get_interface(&id).await?;
    let module = state.store.get_module(&req.module_id).await?;
    if module.kind != "component" {
        return Err(ApiError::bad_request(format!(
            "module {} is a core module: only components implement WIT interfaces",
            module.module_id
        )));
    }
    let bytes = state.store.binary(&module.checksum).await?;
    let conformance = tokio::task::spawn_blocking(move || {
        let package = WitPackage::parse("interface.wit", &iface.wit)?;
        let contract = package.interface(&iface.interface)?;
        let world = wasmswap_core::wit::WitWorld::from_component(&bytes)?;
        Ok::<_, wasmswap_core::wit::WitError>(wasmswap_core::wit::check_exports(&world, &contract))
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(|e| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_wit",
            e.to_string(),
        )
    })?;
    Ok(Json(ValidateResponse {
        interface_id: id,
        module_id: req.module_id,
        satisfied: conformance.satisfied,
        problems: conformance.problems,
        changes: serde_json::to_value(&conformance.changes).map_err(ApiError::internal)?,
    }))
}

/// Approves a draft (accepting its breaking changes). Admin only.
#[utoipa::path(post, path = "/api/v1/wasm/interfaces/{id}/approve", tag = "interfaces",
    params(("id" = String, Path)),
    responses((status = 200, body = Interface), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn approve(
    State(state): State<AppState>,
    caller: Caller,
    client: Client,
    PathParams(id): PathParams<String>,
) -> Result<Json<Interface>, ApiError> {
    caller.require(Permission::ApproveInterface)?;
    Ok(Json(
        state
            .store
            .set_interface_status(&id, "approved", &actor(&caller, &client))
            .await?,
    ))
}

/// Deprecates a version (still usable; callers should move on). Admin only.
#[utoipa::path(post, path = "/api/v1/wasm/interfaces/{id}/deprecate", tag = "interfaces",
    params(("id" = String, Path)),
    responses((status = 200, body = Interface), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn deprecate(
    State(state): State<AppState>,
    caller: Caller,
    client: Client,
    PathParams(id): PathParams<String>,
) -> Result<Json<Interface>, ApiError> {
    caller.require(Permission::DeprecateInterface)?;
    Ok(Json(
        state
            .store
            .set_interface_status(&id, "deprecated", &actor(&caller, &client))
            .await?,
    ))
}
