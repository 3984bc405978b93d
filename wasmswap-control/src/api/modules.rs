//! Modules: register (JSON + base64, raw, or multipart), list, get, delete,
//! binary download, WIT, diff.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRequest, Multipart, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::extract::{PathParams, QueryParams, body_rejection, json_rejection};
use super::{AppState, Client, MAX_MODULE_BYTES, actor};
use crate::auth::{Caller, Permission};
use crate::error::{ApiError, ErrorBody};
use crate::model::{ExportedFunction, Module, ModuleLimits, ModuleStatus, NewModule};
use crate::store::ModuleFilter;

/// A registration: metadata plus the binary, base64-encoded. (Raw uploads
/// send the binary as the body and this metadata as query parameters;
/// multipart uploads send a `metadata` JSON part and a `wasm` file part.)
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RegisterModuleRequest {
    /// `[a-z0-9][a-z0-9._-]*`, at most 64 characters, without `-v` before
    /// a digit (where a module id's version starts).
    #[schema(pattern = r"^(?!.*-v[0-9])[a-z0-9][a-z0-9._-]{0,63}$")]
    pub name: String,
    /// Semantic version (`1.2.3`, `1.2.3-beta.1`).
    #[schema(
        pattern = r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$"
    )]
    pub version: String,
    /// Free text.
    #[serde(default)]
    pub description: String,
    /// The binary, base64 (standard alphabet). Absent in raw/multipart uploads.
    #[serde(default)]
    pub wasm_binary: Option<String>,
    /// Expected WASI version (`preview1`, `preview2`, `none`); checked
    /// against what the binary imports.
    #[serde(default)]
    pub wasi_version: Option<String>,
    /// Interfaces (`ns/name@version`) it needs; each must be registered.
    #[serde(default)]
    pub required_interfaces: Vec<String>,
    /// Limits per call.
    #[serde(default)]
    pub limits: Option<ModuleLimits>,
    /// Labels.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
}

/// Query parameters of a raw upload.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawUploadParams {
    /// Module name.
    pub name: String,
    /// Version.
    pub version: String,
    /// Free text.
    #[serde(default)]
    pub description: String,
    /// Expected WASI version.
    #[serde(default)]
    pub wasi_version: Option<String>,
    /// Comma-separated interface ids.
    #[serde(default)]
    pub required_interfaces: Option<String>,
    /// Memory cap, MiB.
    #[serde(default, rename = "maxMemoryMB")]
    pub max_memory_mb: Option<u32>,
    /// CPU share, percent.
    #[serde(default)]
    pub max_cpu_percent: Option<u32>,
    /// Time limit, seconds.
    #[serde(default)]
    pub max_execution_time_seconds: Option<u32>,
}

/// A page of modules.
#[derive(Debug, Serialize, ToSchema)]
pub struct ModuleList {
    /// The modules.
    pub modules: Vec<Module>,
    /// How many match in all.
    pub total: i64,
    /// Page size.
    pub limit: i64,
    /// Page start.
    pub offset: i64,
}

/// List filters and paging.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    /// Only this module name.
    pub name: Option<String>,
    /// Only this status (`registered`, `deployed`).
    pub status: Option<ModuleStatus>,
    /// Page size, 1–100. By default 20.
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<i64>,
    /// Page start. By default 0.
    #[param(minimum = 0)]
    pub offset: Option<i64>,
}

/// Checks a module name: what a node accepts as a service name.
pub(crate) fn check_name(name: &str) -> Result<(), ApiError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
        })
        // The first `-v<digit>` of an id `{name}-v{version}` is where the
        // name ends, so one id cannot name two modules.
        && !name
            .match_indices("-v")
            .any(|(i, _)| name[i + 2..].starts_with(|c: char| c.is_ascii_digit()));
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid_field(
            "name",
            format!(
                "name {name:?} must be 1–64 characters of a-z, 0-9, '.', '_', '-', starting with a letter or digit, with no `-v` before a digit"
            ),
        ))
    }
}

fn check_version(version: &str) -> Result<semver::Version, ApiError> {
    let v = semver::Version::parse(version).map_err(|e| {
        ApiError::invalid_field(
            "version",
            format!("version {version:?} is not a semantic version: {e}"),
        )
    })?;
    if !v.build.is_empty() || version.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(ApiError::invalid_field(
            "version",
            format!(
                "version {version:?}: build metadata (+…) and upper-case letters are not supported"
            ),
        ));
    }
    Ok(v)
}

struct Upload {
    meta: RegisterModuleRequest,
    binary: Bytes,
}

fn too_large(size: usize) -> ApiError {
    ApiError::too_large(
        format!("the module is {size} bytes; the limit is {MAX_MODULE_BYTES} bytes (50 MiB)"),
        MAX_MODULE_BYTES,
    )
}

async fn read_upload(state: &AppState, req: Request) -> Result<Upload, ApiError> {
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let mime = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_string();
    match mime.as_str() {
        "application/json" => {
            let Json(mut meta) = Json::<RegisterModuleRequest>::from_request(req, state)
                .await
                .map_err(json_rejection)?;
            let b64 = meta.wasm_binary.take().ok_or_else(|| {
                ApiError::invalid_field("wasmBinary", "wasmBinary (the module, base64) is required")
            })?;
            // Reject before decoding: 4 base64 characters carry 3 bytes.
            if b64.len() / 4 * 3 > MAX_MODULE_BYTES + 3 {
                return Err(too_large(b64.len() / 4 * 3));
            }
            // Line-wrapped (MIME) base64, as `base64` prints it, is fine.
            let compact: Vec<u8> = b64.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
            let binary = base64::engine::general_purpose::STANDARD
                .decode(&compact)
                .map_err(|e| {
                    ApiError::invalid_field(
                        "wasmBinary",
                        format!("wasmBinary is not valid standard (RFC 4648) base64: {e}"),
                    )
                })?;
            Ok(Upload {
                meta,
                binary: Bytes::from(binary),
            })
        }
        "application/wasm" | "application/octet-stream" => {
            let (mut parts, body) = req.into_parts();
            let QueryParams(q) =
                <QueryParams<RawUploadParams> as axum::extract::FromRequestParts<AppState>>::from_request_parts(
                    &mut parts, state,
                )
                .await?;
            let req = Request::from_parts(parts, body);
            let binary = Bytes::from_request(req, state)
                .await
                .map_err(|e| body_rejection(e.status(), e.body_text()))?;
            let limits = ModuleLimits {
                max_memory_mb: q
                    .max_memory_mb
                    .unwrap_or(ModuleLimits::default().max_memory_mb),
                max_cpu_percent: q
                    .max_cpu_percent
                    .unwrap_or(ModuleLimits::default().max_cpu_percent),
                max_execution_time_seconds: q
                    .max_execution_time_seconds
                    .unwrap_or(ModuleLimits::default().max_execution_time_seconds),
            };
            Ok(Upload {
                meta: RegisterModuleRequest {
                    name: q.name,
                    version: q.version,
                    description: q.description,
                    wasm_binary: None,
                    wasi_version: q.wasi_version,
                    required_interfaces: q
                        .required_interfaces
                        .map(|s| {
                            s.split(',')
                                .map(|i| i.trim().to_string())
                                .filter(|i| !i.is_empty())
                                .collect()
                        })
                        .unwrap_or_default(),
                    limits: Some(limits),
                    metadata: BTreeMap::new(),
                },
                binary,
            })
        }
        "multipart/form-data" => {
            let mut form = Multipart::from_request(req, state)
                .await
                .map_err(|e| ApiError::bad_request(e.body_text()))?;
            let (mut meta, mut binary) = (None, None);
            while let Some(field) = form
                .next_field()
                .await
                .map_err(|e| body_rejection(e.status(), e.body_text()))?
            {
                match field.name() {
                    Some("metadata") => {
                        let text = field
                            .bytes()
                            .await
                            .map_err(|e| body_rejection(e.status(), e.body_text()))?;
                        let m: RegisterModuleRequest =
                            serde_json::from_slice(&text).map_err(|e| {
                                ApiError::invalid_field(
                                    "metadata",
                                    format!("the metadata part is not valid: {e}"),
                                )
                            })?;
                        meta = Some(m);
                    }
                    Some("wasm" | "file") => {
                        binary = Some(
                            field
                                .bytes()
                                .await
                                .map_err(|e| body_rejection(e.status(), e.body_text()))?,
                        );
                    }
                    Some(other) => {
                        return Err(ApiError::invalid_field(
                            other,
                            format!(
                                "unexpected part {other:?}; send `metadata` (JSON) and `wasm` (the binary)"
                            ),
                        ));
                    }
                    None => return Err(ApiError::bad_request("a multipart part has no name")),
                }
            }
            let meta = meta.ok_or_else(|| {
                ApiError::invalid_field("metadata", "the `metadata` part is missing")
            })?;
            let binary = binary
                .ok_or_else(|| ApiError::invalid_field("wasm", "the `wasm` part is missing"))?;
            Ok(Upload { meta, binary })
        }
        _ => Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!(
                "Content-Type {content_type:?} is not accepted: use application/json (base64 wasmBinary), application/wasm (raw, metadata in the query) or multipart/form-data"
            ),
        )),
    }
}

fn wasi_name(w: Option<wasmswap_core::WasiVersion>) -> &'static str {
    match w {
        Some(wasmswap_core::WasiVersion::P1) => "preview1",
        Some(wasmswap_core::WasiVersion::P2) => "preview2",
        None => "none",
    }
}

/// Validates and compiles `binary` the way a node would.
async fn inspect(state: &AppState, binary: Bytes) -> Result<wasmswap_core::ArtifactInfo, ApiError> {
    let _permit = state.compile.acquire().await.map_err(ApiError::internal)?;
    let runtime = state.runtime.clone();
    let span = tracing::info_span!("wasm.module.validate", wasm.module.size = binary.len());
    let loaded = tokio::task::spawn_blocking(move || span.in_scope(|| runtime.load(&binary)))
        .await
        .map_err(ApiError::internal)?;
    match loaded {
        Ok(artifact) => Ok(artifact.info().clone()),
        Err(wasmswap_core::Error::Load(e)) => {
            let mut details = serde_json::json!({ "reason": format!("{e:?}").split([' ', '{', '(']).next().unwrap_or("") });
            if let wasmswap_core::LoadError::Invalid { offset, .. }
            | wasmswap_core::LoadError::DisallowedProposal { offset, .. } = &e
            {
                details["offset"] = serde_json::json!(offset);
            }
            if let wasmswap_core::LoadError::TooLarge { size, .. } = &e {
                return Err(too_large(*size));
            }
            Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_wasm",
                format!("the module is not accepted: {e}"),
            )
            .with_details(details))
        }
        // Not the binary's fault (the compiler's, the machine's): logged.
        Err(e) => Err(ApiError::internal(e)),
    }
}

/// Registers a module version.
#[utoipa::path(post, path = "/api/v1/wasm/modules", tag = "modules",
    request_body(content(
        (RegisterModuleRequest = "application/json"),
        (Vec<u8> = "application/wasm"),
        (Vec<u8> = "multipart/form-data"))),
    params(RawUploadParams),
    responses(
        (status = 201, body = Module),
        (status = 400, body = ErrorBody, description = "invalid wasm or metadata"),
        (status = 503, body = ErrorBody, description = "`storage_read_only`: the binary store refuses writes; nothing was saved"),
        (status = 507, body = ErrorBody, description = "`storage_full`: the binary store is full; nothing was saved"),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "this version exists"),
        (status = 413, body = ErrorBody, description = "over 50 MiB"),
        (status = 415, body = ErrorBody), (status = 429, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn register(
    State(state): State<AppState>,
    caller: Caller,
    client: Client,
    req: Request,
) -> Result<Response, ApiError> {
    caller.require(Permission::RegisterModule)?;
    // Bodies are buffered whole: bound how many are in memory at once.
    let _permit = tokio::time::timeout(Duration::from_secs(10), state.uploads.acquire())
        .await
        .map_err(|_| {
            let mut e = ApiError::unavailable("too many uploads in progress; retry shortly");
            e.retry_after = Some(2);
            e
        })?
        .map_err(ApiError::internal)?;
    let Upload { meta, binary } = read_upload(&state, req).await?;
    check_name(&meta.name)?;
    let version = check_version(&meta.version)?;
    if binary.len() > MAX_MODULE_BYTES {
        return Err(too_large(binary.len()));
    }
    if meta.description.len() > 4096 {
        return Err(ApiError::invalid_field(
            "description",
            "description is limited to 4096 bytes",
        ));
    }
    if meta.metadata.len() > 64
        || meta
            .metadata
            .iter()
            .any(|(k, v)| k.len() > 128 || v.len() > 1024)
    {
        return Err(ApiError::invalid_field(
            "metadata",
            "metadata is limited to 64 entries, keys of 128 bytes and values of 1024",
        ));
    }
    let limits = meta.limits.unwrap_or_default();
    limits
        .check()
        .map_err(|m| ApiError::invalid_field("limits", m))?;
    for id in &meta.required_interfaces {
        let iface = state.store.get_interface(id).await.map_err(|e| match e {
            crate::store::StoreError::NotFound(_) => ApiError::invalid_field(
                "requiredInterfaces",
                format!("interface {id} is not registered"),
            ),
            other => other.into(),
        })?;
        if !iface.cleared {
            return Err(ApiError::conflict(format!(
                "interface {id} has breaking changes awaiting an admin's approval"
            )));
        }
    }
    let id = crate::store::module_id(&meta.name, &version);
    // Cheap duplicate check before the expensive compile.
    if state.store.get_module(&id).await.is_ok() {
        return Err(ApiError::conflict(format!(
            "module {id} already exists; register a new version"
        )));
    }
    let info = inspect(&state, binary.clone()).await?;
    let wasi = wasi_name(info.wasi);
    if let Some(want) = &meta.wasi_version
        && want != wasi
    {
        return Err(ApiError::invalid_field(
            "wasiVersion",
            format!("wasiVersion says {want:?} but the binary imports {wasi:?}"),
        ));
    }
    let new = NewModule {
        name: meta.name,
        version,
        description: meta.description,
        required_interfaces: meta.required_interfaces,
        limits,
        metadata: meta.metadata,
        kind: match info.kind {
            wasmswap_core::ArtifactKind::Module => "module".into(),
            wasmswap_core::ArtifactKind::Component => "component".into(),
        },
        wasi_version: wasi.into(),
        exported_functions: info
            .exports
            .iter()
            .map(|e| ExportedFunction {
                name: e.name.clone(),
                signature: e.signature.clone(),
            })
            .collect(),
        imports: info.imports.clone(),
        wit: info.wit.clone(),
    };
    let span = tracing::info_span!("wasm.module.register", wasm.module.id = %id);
    let module = tracing::Instrument::instrument(
        state
            .store
            .register_module(new, binary, &actor(&caller, &client)),
        span,
    )
    .await?;
    let mut resp = (StatusCode::CREATED, Json(&module)).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("/api/v1/wasm/modules/{}", module.module_id)) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    Ok(resp)
}

/// Lists modules.
#[utoipa::path(get, path = "/api/v1/wasm/modules", tag = "modules", params(ListParams),
    responses((status = 200, body = ModuleList), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 429, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    QueryParams(q): QueryParams<ListParams>,
) -> Result<Json<ModuleList>, ApiError> {
    caller.require(Permission::Read)?;
    let limit = q.limit.unwrap_or(20);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::invalid_field(
            "limit",
            format!("limit is {limit}; allowed 1–100"),
        ));
    }
    let offset = q.offset.unwrap_or(0);
    if offset < 0 {
        return Err(ApiError::invalid_field(
            "offset",
            "offset must not be negative",
        ));
    }
    let (modules, total) = state
        .store
        .list_modules(&ModuleFilter {
            name: q.name,
            status: q.status,
            limit,
            offset,
        })
        .await?;
    Ok(Json(ModuleList {
        modules,
        total,
        limit,
        offset,
    }))
}

/// One module version.
#[utoipa::path(get, path = "/api/v1/wasm/modules/{id}", tag = "modules",
    params(("id" = String, Path, description = "`{name}-v{version}`")),
    responses((status = 200, body = Module), (status = 404, body = ErrorBody),
        (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(id): PathParams<String>,
) -> Result<Json<Module>, ApiError> {
    caller.require(Permission::Read)?;
    Ok(Json(state.store.get_module(&id).await?))
}

/// Deletes a module version (409 while deployed).
#[utoipa::path(delete, path = "/api/v1/wasm/modules/{id}", tag = "modules",
    params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    client: Client,
    PathParams(id): PathParams<String>,
) -> Result<StatusCode, ApiError> {
    caller.require(Permission::DeleteModule)?;
    state
        .store
        .delete_module(&id, &actor(&caller, &client))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A binary by SHA-256 (what nodes fetch), verified before it is sent.
#[utoipa::path(get, path = "/api/v1/wasm/binaries/{checksum}", tag = "modules",
    params(("checksum" = String, Path, description = "SHA-256, 64 hex digits", pattern = "^[0-9a-f]{64}$")),
    responses((status = 200, content_type = "application/wasm", body = Vec<u8>),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn binary(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(checksum): PathParams<String>,
) -> Result<Response, ApiError> {
    if caller.require(Permission::NodeAgent).is_err() {
        caller.require(Permission::Read)?;
    }
    if checksum.len() != 64
        || !checksum
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(ApiError::invalid_field(
            "checksum",
            "checksum must be 64 lowercase hex digits",
        ));
    }
    let bytes = state.store.binary(&checksum).await?;
    let mut resp = bytes.into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/wasm"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("\"{checksum}\"")) {
        h.insert(header::ETAG, v);
    }
    Ok(resp)
}

/// The component's world as WIT text.
#[utoipa::path(get, path = "/api/v1/wasm/modules/{id}/wit", tag = "modules",
    params(("id" = String, Path)),
    responses((status = 200, content_type = "text/plain", body = String),
        (status = 404, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn wit(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(id): PathParams<String>,
) -> Result<Response, ApiError> {
    caller.require(Permission::Read)?;
    match state.store.module_wit(&id).await? {
        Some(text) => {
            Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response())
        }
        None => Err(ApiError::not_found(format!(
            "module {id} is a core module: it has no WIT world"
        ))),
    }
}

/// What changed between two versions' worlds.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ModuleDiff {
    /// The older module.
    pub from: String,
    /// The newer module.
    pub to: String,
    /// Some change breaks callers of the exports (or the host's imports).
    pub breaks_callers: bool,
    /// Some change breaks implementers.
    pub breaks_implementers: bool,
    /// The diff: every change with its path, verdicts and reason.
    #[schema(value_type = Object)]
    pub diff: serde_json::Value,
    /// The same as text.
    pub text: String,
}

async fn world(
    state: &AppState,
    id: &str,
) -> Result<(Module, wasmswap_core::wit::WitWorld), ApiError> {
    let module = state.store.get_module(id).await?;
    if module.kind != "component" {
        return Err(ApiError::bad_request(format!(
            "module {id} is a core module: only components have a WIT world to diff"
        )));
    }
    let bytes = state.store.binary(&module.checksum).await?;
    let world =
        tokio::task::spawn_blocking(move || wasmswap_core::wit::WitWorld::from_component(&bytes))
            .await
            .map_err(ApiError::internal)?
            .map_err(|e| {
                ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid_wit",
                    e.to_string(),
                )
            })?;
    Ok((module, world))
}

/// Diffs the WIT worlds of two module versions (`id` old, `other` new).
#[utoipa::path(get, path = "/api/v1/wasm/modules/{id}/diff/{other}", tag = "modules",
    params(("id" = String, Path, description = "the old version"),
           ("other" = String, Path, description = "the new version")),
    responses((status = 200, body = ModuleDiff), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn diff(
    State(state): State<AppState>,
    caller: Caller,
    PathParams((id, other)): PathParams<(String, String)>,
) -> Result<Json<ModuleDiff>, ApiError> {
    caller.require(Permission::Read)?;
    let (_, old) = world(&state, &id).await?;
    let (_, new) = world(&state, &other).await?;
    let diff = wasmswap_core::wit::diff_worlds(&old, &new);
    Ok(Json(ModuleDiff {
        from: id,
        to: other,
        breaks_callers: diff.breaks_callers(),
        breaks_implementers: diff.breaks_implementers(),
        diff: serde_json::to_value(&diff).map_err(ApiError::internal)?,
        text: diff.text(),
    }))
}
