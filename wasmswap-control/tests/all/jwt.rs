//! The JWT attack set: none of these tokens is accepted.

use axum::http::{Method, StatusCode};
use base64::Engine as _;
use serde_json::{Value, json};

use wasmswap_control::api::{ApiSettings, AppState, router};
use wasmswap_control::auth::{Role, SigningKey};
use wasmswap_control::clock::Clock;
use wasmswap_control::store::{Store, StoreConfig};

use super::common::{NODE_TOKEN, SECRET, TestApp, authenticator, users};

/// A test-only Ed25519 key pair.
const ED_PRIVATE: &str = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIG7xlkSHF3/j4KkmXfURo524JpOkHF8InDzc/DuNR0VI\n-----END PRIVATE KEY-----\n";
const ED_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAyZImYysnpbvWrQB0x+EzqaxkKXnc9rkdwnUqY5Xdzbk=\n-----END PUBLIC KEY-----\n";

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

pub fn claims(sub: &str, iat: u64, exp: u64) -> Value {
    json!({"sub": sub, "role": "admin", "iss": "wasmswap-control", "iat": iat, "exp": exp, "jti": "t"})
}

/// A token with any header and claims, HMAC-SHA256-signed with `key`.
fn sign_raw(header: &Value, claims: &Value, key: &[u8], alg: &str) -> String {
    use hmac::Mac as _;
    let signing_input = format!(
        "{}.{}",
        b64(&serde_json::to_vec(header).unwrap()),
        b64(&serde_json::to_vec(claims).unwrap())
    );
    let sig = match alg {
        "HS512" => {
            let mut mac = hmac::Hmac::<sha2::Sha512>::new_from_slice(key).unwrap();
            mac.update(signing_input.as_bytes());
            mac.finalize().into_bytes().to_vec()
        }
        _ => {
            let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
            mac.update(signing_input.as_bytes());
            mac.finalize().into_bytes().to_vec()
        }
    };
    format!("{signing_input}.{}", b64(&sig))
}

pub fn sign_hs256(claims: &Value, key: &[u8]) -> String {
    sign_raw(&json!({"alg": "HS256", "typ": "JWT"}), claims, key, "HS256")
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

async fn status_with(app: &TestApp, token: &str) -> StatusCode {
    app.call(
        Method::GET,
        "/api/v1/wasm/modules",
        Some(token),
        None,
        vec![],
    )
    .await
    .status
}

#[tokio::test]
async fn hs256_attack_set_is_refused() {
    let app = TestApp::new().await;
    let t = now();
    let good = claims("admin", t, t + 600);
    // The control: a correctly signed token passes.
    assert_eq!(
        status_with(&app, &sign_hs256(&good, SECRET)).await,
        StatusCode::OK
    );
    // Within the 30 s leeway still passes; beyond it does not.
    assert_eq!(
        status_with(&app, &sign_hs256(&claims("admin", t - 100, t - 10), SECRET)).await,
        StatusCode::OK
    );

    let mut missing_exp = good.clone();
    missing_exp.as_object_mut().unwrap().remove("exp");
    let mut exp_string = good.clone();
    exp_string["exp"] = json!((t + 600).to_string());
    let mut wrong_iss = good.clone();
    wrong_iss["iss"] = json!("someone-else");
    let mut missing_iat = good.clone();
    missing_iat.as_object_mut().unwrap().remove("iat");
    let mut unknown_user = good.clone();
    unknown_user["sub"] = json!("mallory");
    let good_token = sign_hs256(&good, SECRET);
    let (head, _) = good_token.rsplit_once('.').unwrap();
    let alg_none = format!(
        "{}.{}.",
        b64(br#"{"alg":"none","typ":"JWT"}"#),
        b64(&serde_json::to_vec(&good).unwrap())
    );
    let alg_none_upper = format!(
        "{}.{}.",
        b64(br#"{"alg":"NONE","typ":"JWT"}"#),
        b64(&serde_json::to_vec(&good).unwrap())
    );
    let mut flipped = good_token.clone().into_bytes();
    let last = flipped.len() - 2;
    flipped[last] = if flipped[last] == b'A' { b'B' } else { b'A' };

    let attacks: Vec<(&str, String)> = vec![
        ("alg none", alg_none),
        ("alg NONE", alg_none_upper),
        ("no signature", format!("{head}.")),
        ("wrong signature", String::from_utf8(flipped).unwrap()),
        (
            "other secret",
            sign_hs256(&good, b"a-different-secret-of-thirty-two-bytes"),
        ),
        (
            "HS512 with the right secret",
            sign_raw(&json!({"alg": "HS512"}), &good, SECRET, "HS512"),
        ),
        (
            "expired beyond leeway",
            sign_hs256(&claims("admin", t - 3600, t - 31 - 5), SECRET),
        ),
        ("missing exp", sign_hs256(&missing_exp, SECRET)),
        ("exp as a string", sign_hs256(&exp_string, SECRET)),
        ("missing iat", sign_hs256(&missing_iat, SECRET)),
        ("wrong issuer", sign_hs256(&wrong_iss, SECRET)),
        ("unknown user", sign_hs256(&unknown_user, SECRET)),
        ("empty", String::new()),
        ("two parts", "a.b".into()),
    ];
    let mut accepted = Vec::new();
    for (name, token) in &attacks {
        let r = app
            .call(
                Method::GET,
                "/api/v1/wasm/modules",
                Some(token),
                None,
                vec![],
            )
            .await;
        if r.status != StatusCode::UNAUTHORIZED {
            accepted.push((*name, r.status));
        }
    }
    assert!(accepted.is_empty(), "accepted: {accepted:?}");
    // A role in the token does not raise the caller's role: the
    // configuration decides.
    let mut viewer_claims_admin = good.clone();
    viewer_claims_admin["sub"] = json!("viewer");
    let r = app
        .call(
            Method::GET,
            "/api/v1/audit",
            Some(&sign_hs256(&viewer_claims_admin, SECRET)),
            None,
            vec![],
        )
        .await;
    r.expect_error(StatusCode::FORBIDDEN, "forbidden");
}

#[tokio::test]
async fn eddsa_keys_refuse_hmac_signed_with_the_public_key() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&StoreConfig::embedded(dir.path()), Clock::system())
        .await
        .unwrap();
    let key = SigningKey::EdDsa {
        private_pem: ED_PRIVATE.into(),
        public_pem: ED_PUBLIC.into(),
    };
    let auth = authenticator(&key, users());
    let valid = auth.issue("admin", Role::Admin).unwrap().token;
    let state = AppState::new(
        store,
        authenticator(&key, users()),
        NODE_TOKEN.into(),
        ApiSettings::default(),
    )
    .unwrap();
    let app = TestApp {
        app: router(state.clone()),
        state,
        clock: Clock::system(),
        tokens: Default::default(),
        _dir: None,
    };
    assert_eq!(status_with(&app, &valid).await, StatusCode::OK);
    let header: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(valid.split('.').next().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(header["alg"], "EdDSA");
    let t = now();
    // The classic confusion: the public key (which is public) as an HMAC secret.
    for key in [ED_PUBLIC.as_bytes(), ED_PUBLIC.trim().as_bytes()] {
        let forged = sign_hs256(&claims("admin", t, t + 600), key);
        assert_eq!(status_with(&app, &forged).await, StatusCode::UNAUTHORIZED);
    }
    let alg_none = format!(
        "{}.{}.",
        b64(br#"{"alg":"none"}"#),
        b64(&serde_json::to_vec(&claims("admin", t, t + 600)).unwrap())
    );
    assert_eq!(status_with(&app, &alg_none).await, StatusCode::UNAUTHORIZED);
}
