//! The dashboard end to end: Debian's Chromium (headless, driven through
//! ChromeDriver) against a real local cluster. It logs in, shows the nodes
//! by region, the modules, a canary in progress with its split and charts,
//! and its buttons pause, resume and promote the rollout — checked through
//! the API. A screenshot is saved to `target/tmp/dashboard.png`.

// Tests report where the screenshot went and echo the command's output.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use wasmswap_cli::client::Api;
use wasmswap_cli::cluster::{V1, V2};

/// ChromeDriver on a free port; killed when dropped.
struct Driver(Child, u16);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn chromedriver() -> Driver {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver (Debian's chromium-driver; `.ci/install-services` installs it)");
    Driver(child, port)
}

async fn browser(driver: &Driver, profile: &std::path::Path) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": "/usr/bin/chromium",
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync",
                "--window-size=1280,1000",
                format!("--user-data-dir={}", profile.display()),
            ],
        }),
    );
    let url = format!("http://127.0.0.1:{}", driver.1);
    for _ in 0..100 {
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        match ClientBuilder::new(connector)
            .capabilities(caps.clone())
            .connect(&url)
            .await
        {
            Ok(c) => return c,
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    panic!("could not start a Chromium session through {url}");
}

/// Waits until the JavaScript expression is truthy in the page.
async fn until(c: &Client, expr: &str) -> Value {
    let mut last = Value::Null;
    for _ in 0..300 {
        last = c
            .execute(&format!("return ({expr});"), vec![])
            .await
            .unwrap();
        if last.as_bool() != Some(false) && !last.is_null() && last != json!(0) {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the page never satisfied `{expr}` (last: {last})");
}

/// Logs in through the form and waits for the first render.
async fn login(c: &Client, user: &str, password: &str) {
    for (field, value) in [("#username", user), ("#password", password)] {
        let f = c.find(Locator::Css(field)).await.unwrap();
        f.clear().await.unwrap();
        f.send_keys(value).await.unwrap();
    }
    c.find(Locator::Css("#login-submit"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until(c, "document.body.dataset.ready === '1'").await;
}

/// Logs out and waits for the form.
async fn logout(c: &Client) {
    c.find(Locator::Css("#logout"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until(c, "document.getElementById('login').offsetParent !== null").await;
}

async fn deployment(api: &Api, id: &str) -> Value {
    api.get(&format!("/wasm/deployments/{id}")).await.unwrap()
}

async fn wait_api(api: &Api, id: &str, done: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..400 {
        let d = deployment(api, id).await;
        if done(&d) {
            return d;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("deployment {id} did not reach the expected state");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_drives_a_canary_in_chromium() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = common::cluster_serving_v1(dir.path()).await;
    let api = cluster.api().clone();

    // Traffic on every node, then a manual canary to v2 holding at 25 %.
    let traffic = common::traffic(&cluster);
    let d = wasmswap_cli::deployments::deploy(
        &api,
        &json!({"moduleId": V2, "strategy": "canary", "replicas": "all",
                "strategyConfig": {"stages": [25, 100], "evaluationPeriod": "PT1S", "autoPromote": false},
                "healthCheck": {"httpPath": "/health", "intervalMs": 50},
                "analysis": {"minSampleSize": 5}}),
        true,
    )
    .await
    .unwrap();
    let id = d["deploymentId"].as_str().unwrap().to_string();
    wait_api(&api, &id, |d| d["state"]["awaitingPromotion"] == true).await;

    let driver = chromedriver();
    let c = browser(&driver, &dir.path().join("chromium")).await;
    c.goto(&format!("{}/", cluster.control_url)).await.unwrap();

    // A wrong password shows the API's error and stays on the form.
    c.find(Locator::Css("#username"))
        .await
        .unwrap()
        .send_keys("admin")
        .await
        .unwrap();
    c.find(Locator::Css("#password"))
        .await
        .unwrap()
        .send_keys("wrong")
        .await
        .unwrap();
    c.find(Locator::Css("#login-submit"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until(
        &c,
        "document.getElementById('error').textContent.length > 0",
    )
    .await;
    assert!(
        c.execute(
            "return document.getElementById('app').offsetParent === null",
            vec![]
        )
        .await
        .unwrap()
        .as_bool()
        .unwrap(),
        "the app stays hidden"
    );

    // Buttons follow the role: a viewer may use none, a developer may
    // steer the rollout but not roll it back.
    let sel = format!(".deployment[data-deployment=\"{id}\"]");
    let state = |action: &str, disabled: bool| {
        format!(
            "document.querySelector('{sel} button[data-action=\"{action}\"]')?.disabled === {disabled}"
        )
    };
    login(&c, "viewer", "letmein-viewer").await;
    for action in ["promote", "pause", "abort", "rollback"] {
        until(&c, &state(action, true)).await;
    }
    let title = c
        .execute(
            &format!("return document.querySelector('{sel} button[data-action=\"pause\"]').title"),
            vec![],
        )
        .await
        .unwrap();
    assert!(title.as_str().unwrap().contains("viewer"), "{title}");
    logout(&c).await;
    login(&c, "developer", "letmein-developer").await;
    for action in ["promote", "pause", "abort"] {
        until(&c, &state(action, false)).await;
    }
    until(&c, &state("rollback", true)).await;
    logout(&c).await;

    let password = std::fs::read_to_string(&cluster.admin_password_file).unwrap();
    login(&c, "admin", password.trim()).await;

    // Nodes by region, all healthy.
    for region in ["eu-west", "us-east"] {
        let n = until(
            &c,
            &format!("document.querySelectorAll('[data-region=\"{region}\"] .node[data-health=\"healthy\"]').length === 2"),
        )
        .await;
        assert_eq!(n, json!(true));
    }
    // Both versions of the module.
    for m in [V1, V2] {
        until(
            &c,
            &format!("!!document.querySelector('.module[data-module=\"{m}\"]')"),
        )
        .await;
    }
    // The canary: in progress at 25 % with its split and the two charts.
    until(
        &c,
        &format!("document.querySelector('{sel}')?.dataset.status === 'in_progress'"),
    )
    .await;
    let share = until(
        &c,
        &format!("Number(document.querySelector('{sel} .split')?.dataset.candidateShare)"),
    )
    .await;
    assert!(
        (share.as_f64().unwrap() - 25.0).abs() < 0.5,
        "candidate share {share}"
    );
    until(
        &c,
        "document.querySelectorAll('#chart-errors path[data-version]').length >= 2",
    )
    .await;
    until(
        &c,
        "document.querySelectorAll('#chart-latency path[data-version]').length >= 2",
    )
    .await;
    // A few seconds of samples, so the charts (and the screenshot) show lines.
    until(
        &c,
        "document.querySelector('#chart-errors path[data-role=\"stable\"]').getAttribute('d').split('L').length > 4",
    )
    .await;

    // Nothing on the page broke the Content-Security-Policy (the legend's
    // colours come from classes, not inline styles).
    until(
        &c,
        "getComputedStyle(document.querySelector('.swatch-candidate')).backgroundColor === 'rgb(234, 88, 12)'",
    )
    .await;
    let violations = c
        .execute("return document.body.dataset.cspViolations || '0'", vec![])
        .await
        .unwrap();
    assert_eq!(violations, json!("0"), "CSP violations");

    let shot = c.screenshot().await.unwrap();
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png");
    std::fs::write(&path, &shot).unwrap();
    assert!(
        shot.starts_with(b"\x89PNG") && shot.len() > 10_000,
        "a real screenshot"
    );
    eprintln!("screenshot: {}", path.display());

    // Pause, resume and promote with the buttons; the API sees each.
    let click = |action: &'static str| {
        let (c, sel) = (c.clone(), sel.clone());
        async move {
            let b = c
                .wait()
                .at_most(Duration::from_secs(30))
                .for_element(Locator::Css(&format!(
                    "{sel} button[data-action=\"{action}\"]:not([disabled])"
                )))
                .await
                .unwrap();
            b.click().await.unwrap();
        }
    };
    click("pause").await;
    wait_api(&api, &id, |d| d["status"] == "paused").await;
    until(
        &c,
        &format!("document.querySelector('{sel}').dataset.status === 'paused'"),
    )
    .await;
    click("resume").await;
    wait_api(&api, &id, |d| d["status"] == "in_progress").await;
    click("promote").await;
    wait_api(&api, &id, |d| d["status"] == "completed").await;
    until(
        &c,
        &format!("document.querySelector('{sel}').dataset.status === 'completed'"),
    )
    .await;
    until(
        &c,
        &format!("Number(document.querySelector('{sel} .progress').dataset.progress) === 100"),
    )
    .await;

    // Rollback from the page restores v1.
    click("rollback").await;
    let d = wait_api(&api, &id, |d| d["status"] == "rolled_back").await;
    assert_eq!(d["stableModuleId"], V1);

    c.close().await.unwrap();
    traffic.abort();
    cluster.shutdown().await.unwrap();
}
