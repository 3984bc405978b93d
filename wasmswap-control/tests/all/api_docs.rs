//! `docs/openapi.json` and `docs/api.md` are what the code generates, and
//! the served document is the same one. Regenerate with
//! `UPDATE_API_DOCS=1 cargo test -p wasmswap-control api_docs`.

use axum::http::{Method, StatusCode};
use wasmswap_control::api::reference;

use super::common::TestApp;

#[tokio::test]
async fn api_reference_matches_the_openapi_document() {
    let doc = reference::openapi_json();
    let served = TestApp::new()
        .await
        .call(Method::GET, "/api/v1/openapi.json", None, None, vec![])
        .await
        .expect(StatusCode::OK);
    assert_eq!(served.json, doc, "the served document is the generated one");
    let json = serde_json::to_string_pretty(&doc).unwrap() + "\n";
    let md = reference::markdown(&doc);
    // Every path is documented.
    for path in doc["paths"].as_object().unwrap().keys() {
        assert!(md.contains(&format!("`{path}`")), "{path} in the reference");
    }
    let docs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs");
    for (file, text) in [("openapi.json", &json), ("api.md", &md)] {
        let path = docs.join(file);
        if std::env::var_os("UPDATE_API_DOCS").is_some() {
            std::fs::write(&path, text).unwrap();
        }
        let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            on_disk == *text,
            "docs/{file} is out of date: run `UPDATE_API_DOCS=1 cargo test -p wasmswap-control api_docs`"
        );
    }
}
