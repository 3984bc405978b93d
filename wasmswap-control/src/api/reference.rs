//! The API reference in Markdown, rendered from the OpenAPI document
//! (`docs/api.md` is this output; a test keeps it current, and
//! `wasmswap-control openapi --markdown` prints it).

use std::fmt::Write as _;

use serde_json::Value;
use utoipa::OpenApi as _;

/// The OpenAPI 3.1 document served at `GET /api/v1/openapi.json`.
pub fn openapi_json() -> Value {
    serde_json::to_value(super::openapi::ApiDoc::openapi()).unwrap_or(Value::Null)
}

/// `#/components/schemas/Name` → a Markdown link to its section.
fn type_of(schema: &Value) -> String {
    if let Some(r) = schema["$ref"].as_str() {
        let name = r.rsplit('/').next().unwrap_or(r);
        return format!("[`{name}`](#{})", name.to_ascii_lowercase());
    }
    for key in ["oneOf", "anyOf", "allOf"] {
        if let Some(options) = schema[key].as_array() {
            let parts: Vec<String> = options.iter().map(type_of).collect();
            return parts.join(if key == "allOf" { " & " } else { " \\| " });
        }
    }
    let ty = match &schema["type"] {
        Value::String(t) => t.clone(),
        Value::Array(ts) => ts
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(" \\| "),
        _ => String::new(),
    };
    let ty = if ty.starts_with("array") || ty == "array" {
        format!("array of {}", type_of(&schema["items"]))
    } else if let Some(values) = schema["enum"].as_array() {
        let v: Vec<String> = values.iter().map(|v| format!("`{v}`")).collect();
        format!("{ty} ({})", v.join(", "))
    } else if ty.is_empty() {
        "any".into()
    } else {
        ty
    };
    match schema["format"].as_str() {
        Some(f) => format!("{ty} ({f})"),
        None => ty,
    }
}

/// Whether an operation needs a token (`security: []` means it does not).
fn secured(op: &Value) -> bool {
    op["security"].as_array().is_some_and(|s| !s.is_empty())
}

/// One line: no line breaks or pipes inside a table cell.
fn cell(text: &str) -> String {
    text.replace('\n', " ")
        .replace('|', "\\|")
        .trim()
        .to_string()
}

/// Renders `doc` (an OpenAPI 3.1 document) as Markdown.
pub fn markdown(doc: &Value) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# {} — API reference\n\n<!-- Generated from the OpenAPI document by `wasmswap-control openapi --markdown`; do not edit. -->\n",
        doc["info"]["title"].as_str().unwrap_or("API")
    );
    if let Some(d) = doc["info"]["description"].as_str() {
        let _ = writeln!(out, "{d}\n");
    }
    let _ = writeln!(
        out,
        "Every path is under the control plane's base URL. Endpoints marked 🔒 need `Authorization: Bearer <JWT>` (from `POST /api/v1/authentication/login`). The machine-readable document is `GET /api/v1/openapi.json` (also in `docs/openapi.json`).\n"
    );
    let Some(paths) = doc["paths"].as_object() else {
        return out;
    };
    // Group by tag, in the order tags are declared.
    let tags: Vec<String> = doc["tags"]
        .as_array()
        .map(|t| {
            t.iter()
                .filter_map(|t| t["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let mut ops: Vec<(String, String, String, &Value)> = Vec::new();
    for (path, item) in paths {
        for method in ["get", "post", "put", "patch", "delete"] {
            if let Some(op) = item.get(method) {
                let tag = op["tags"][0].as_str().unwrap_or("other").to_string();
                ops.push((tag, path.clone(), method.to_uppercase(), op));
            }
        }
    }
    let rank = |t: &str| tags.iter().position(|x| x == t).unwrap_or(usize::MAX);
    ops.sort_by(|a, b| (rank(&a.0), &a.0, &a.1).cmp(&(rank(&b.0), &b.0, &b.1)));

    let _ = writeln!(out, "## Endpoints\n");
    let _ = writeln!(out, "| | method | path | summary |\n|---|---|---|---|");
    for (_, path, method, op) in &ops {
        let lock = if secured(op) { "🔒" } else { "" };
        let summary = op["summary"]
            .as_str()
            .or(op["description"].as_str())
            .unwrap_or("");
        let _ = writeln!(out, "| {lock} | {method} | `{path}` | {} |", cell(summary));
    }
    let mut current = String::new();
    for (tag, path, method, op) in &ops {
        if *tag != current {
            current = tag.clone();
            let _ = writeln!(out, "\n## {tag}\n");
        }
        let _ = writeln!(out, "### {method} `{path}`\n");
        for key in ["summary", "description"] {
            if let Some(t) = op[key].as_str() {
                let _ = writeln!(out, "{t}\n");
            }
        }
        if secured(op) {
            let _ = writeln!(out, "🔒 Bearer token.\n");
        }
        if let Some(params) = op["parameters"].as_array().filter(|p| !p.is_empty()) {
            let _ = writeln!(
                out,
                "| parameter | in | type | required | description |\n|---|---|---|---|---|"
            );
            for p in params {
                let _ = writeln!(
                    out,
                    "| `{}` | {} | {} | {} | {} |",
                    p["name"].as_str().unwrap_or(""),
                    p["in"].as_str().unwrap_or(""),
                    type_of(&p["schema"]),
                    if p["required"].as_bool() == Some(true) {
                        "yes"
                    } else {
                        "no"
                    },
                    cell(p["description"].as_str().unwrap_or(""))
                );
            }
            out.push('\n');
        }
        if let Some(content) = op["requestBody"]["content"].as_object() {
            let _ = writeln!(out, "Request body:\n");
            for (ct, media) in content {
                let _ = writeln!(out, "- `{ct}`: {}", type_of(&media["schema"]));
            }
            out.push('\n');
        }
        if let Some(responses) = op["responses"].as_object() {
            let _ = writeln!(out, "| status | body | description |\n|---|---|---|");
            for (status, r) in responses {
                let body = r["content"]
                    .as_object()
                    .map(|c| {
                        c.iter()
                            .map(|(ct, m)| format!("`{ct}` {}", type_of(&m["schema"])))
                            .collect::<Vec<_>>()
                            .join("; ")
                    })
                    .unwrap_or_default();
                let _ = writeln!(
                    out,
                    "| {status} | {body} | {} |",
                    cell(r["description"].as_str().unwrap_or(""))
                );
            }
            out.push('\n');
        }
    }
    if let Some(schemas) = doc["components"]["schemas"].as_object() {
        let _ = writeln!(out, "## Schemas\n");
        for (name, schema) in schemas {
            let _ = writeln!(out, "### {name}\n");
            if let Some(d) = schema["description"].as_str() {
                let _ = writeln!(out, "{d}\n");
            }
            let required: Vec<&str> = schema["required"]
                .as_array()
                .map(|r| r.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            if let Some(props) = schema["properties"].as_object() {
                let _ = writeln!(
                    out,
                    "| field | type | required | description |\n|---|---|---|---|"
                );
                for (field, p) in props {
                    let _ = writeln!(
                        out,
                        "| `{field}` | {} | {} | {} |",
                        type_of(p),
                        if required.contains(&field.as_str()) {
                            "yes"
                        } else {
                            "no"
                        },
                        cell(p["description"].as_str().unwrap_or(""))
                    );
                }
                out.push('\n');
            } else {
                let _ = writeln!(out, "Type: {}\n", type_of(schema));
            }
        }
    }
    out
}
