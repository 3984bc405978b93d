//! One storage suite, run against both backends: the embedded one (SQLite
//! file + blob directory) and the scale-out one (real PostgreSQL + a real
//! S3-compatible server).

use bytes::Bytes;
use serde_json::json;

use wasmswap_control::clock::Clock;
use wasmswap_control::model::{
    Actor, ModuleLimits, ModuleStatus, NewModule, NodeCapacity, NodeHealth,
};
use wasmswap_control::store::{
    AuditFilter, BlobConfig, ModuleFilter, NewInterface, NodeReport, NodeUpdate, Store,
    StoreConfig, StoreError,
};

use super::common::{T0, module_returning};
use super::services::services;

fn actor(name: &str) -> Actor {
    Actor {
        name: name.into(),
        role: "developer".into(),
        request_id: format!("req-{name}"),
        client: "127.0.0.1".into(),
    }
}

fn new_module(name: &str, version: &str) -> NewModule {
    NewModule {
        name: name.into(),
        version: version.parse().unwrap(),
        description: "test".into(),
        required_interfaces: vec![],
        limits: ModuleLimits::default(),
        metadata: [("team".to_string(), "edge".to_string())].into(),
        kind: "module".into(),
        wasi_version: "none".into(),
        exported_functions: vec![],
        imports: vec![],
        wit: None,
    }
}

async fn count(store: &Store, sql: &str) -> i64 {
    use sqlx::Row as _;
    sqlx::query(sql)
        .fetch_one(store.pool())
        .await
        .unwrap()
        .get::<i64, _>(0)
}

/// The suite: modules, binaries, retention, sweeping, nodes, interfaces,
/// audit. `config` must point at empty storage.
async fn suite(mut config: StoreConfig) {
    config.keep_versions = 3;
    let clock = Clock::manual(T0);
    let store = Store::open(&config, clock.clone()).await.unwrap();
    // Opening again runs no migration twice.
    let store2 = Store::open(&config, clock.clone()).await.unwrap();
    store2.close().await;
    let dev = actor("dev");

    // Register, read back, duplicate.
    let bin = Bytes::from(module_returning(1));
    let m = store
        .register_module(new_module("img", "1.0.0"), bin.clone(), &dev)
        .await
        .unwrap();
    assert_eq!(m.module_id, "img-v1.0.0");
    assert_eq!(m.checksum, wasmswap_control::store::checksum(&bin));
    assert_eq!(m.size_bytes, bin.len() as u64);
    assert_eq!(m.status, ModuleStatus::Registered);
    assert_eq!(m.metadata["team"], "edge");
    assert_eq!(store.get_module("img-v1.0.0").await.unwrap(), m);
    let dup = store
        .register_module(new_module("img", "1.0.0"), bin.clone(), &dev)
        .await;
    assert!(matches!(dup, Err(StoreError::Conflict(_))), "{dup:?}");
    assert!(matches!(
        store.get_module("nope-v1.0.0").await,
        Err(StoreError::NotFound(_))
    ));

    // Binaries: verified round trip, deduplicated by checksum.
    assert_eq!(store.binary(&m.checksum).await.unwrap(), bin);
    let same = store
        .register_module(new_module("img-copy", "1.0.0"), bin.clone(), &dev)
        .await
        .unwrap();
    assert_eq!(same.checksum, m.checksum);
    assert_eq!(
        count(&store, "SELECT COUNT(*) FROM blobs").await,
        1,
        "one object for equal binaries"
    );

    // Rot is detected on read, not served.
    let other = Bytes::from(module_returning(2));
    let m2 = store
        .register_module(new_module("img", "1.1.0"), other.clone(), &dev)
        .await
        .unwrap();
    store
        .blobs()
        .put_raw(&m2.checksum, b"not zstd at all".to_vec())
        .await
        .unwrap();
    let rotten = store.binary(&m2.checksum).await;
    assert!(
        matches!(rotten, Err(StoreError::BlobCorrupt { .. })),
        "{rotten:?}"
    );
    let swapped = zstd::encode_all(&bin[..], 3).unwrap();
    store.blobs().put_raw(&m2.checksum, swapped).await.unwrap();
    let wrong = store.binary(&m2.checksum).await;
    assert!(
        matches!(&wrong, Err(StoreError::BlobCorrupt { reason, .. }) if reason.contains("hashes to")),
        "{wrong:?}"
    );
    let bad = store.verify_modules().await.unwrap();
    assert_eq!(bad.len(), 1, "{bad:?}");
    assert_eq!(bad[0].0, "img-v1.1.0");
    // Repair: the original bytes again.
    store
        .blobs()
        .put_raw(&m2.checksum, zstd::encode_all(&other[..], 3).unwrap())
        .await
        .unwrap();
    assert!(store.verify_modules().await.unwrap().is_empty());

    // Listing: filters, paging, totals.
    let (page, total) = store
        .list_modules(&ModuleFilter {
            name: Some("img".into()),
            status: None,
            limit: 1,
            offset: 1,
        })
        .await
        .unwrap();
    assert_eq!(total, 2);
    assert_eq!(page.len(), 1);
    assert_eq!(page[0].module_id, "img-v1.1.0");

    // Deployed modules cannot be deleted or pruned.
    store
        .set_module_status("img-v1.0.0", ModuleStatus::Deployed, &dev)
        .await
        .unwrap();
    let refused = store.delete_module("img-v1.0.0", &dev).await;
    assert!(
        matches!(refused, Err(StoreError::Conflict(_))),
        "{refused:?}"
    );
    let (deployed, _) = store
        .list_modules(&ModuleFilter {
            name: None,
            status: Some(ModuleStatus::Deployed),
            limit: 10,
            offset: 0,
        })
        .await
        .unwrap();
    assert_eq!(deployed.len(), 1);
    for (i, v) in ["1.2.0", "1.10.0", "2.0.0-rc.1", "2.0.0"]
        .iter()
        .enumerate()
    {
        store
            .register_module(
                new_module("img", v),
                Bytes::from(module_returning(10 + i as i64)),
                &dev,
            )
            .await
            .unwrap();
    }
    // keep 3, in semver order (not text order): the versions older than
    // the newest three go, except the deployed 1.0.0.
    let kept: Vec<String> = store
        .module_versions("img")
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.version)
        .collect();
    assert_eq!(kept, ["1.0.0", "1.10.0", "2.0.0-rc.1", "2.0.0"]);

    // Deleting frees nothing at once; the sweeper removes unreferenced
    // binaries only after the grace period.
    store
        .set_module_status("img-v1.0.0", ModuleStatus::Registered, &dev)
        .await
        .unwrap();
    store.delete_module("img-v1.0.0", &dev).await.unwrap();
    store.delete_module("img-copy-v1.0.0", &dev).await.unwrap();
    assert!(
        store.sweep_blobs(60_000).await.unwrap().is_empty(),
        "within the grace period"
    );
    clock.advance_ms(61_000);
    let swept = store.sweep_blobs(60_000).await.unwrap();
    // The two orphaned binaries: module 1's (both rows deleted) and the
    // pruned versions' ones.
    assert!(swept.contains(&m.checksum), "{swept:?}");
    assert!(!store.blobs().exists(&m.checksum).await.unwrap());
    assert!(matches!(
        store.binary(&m.checksum).await,
        Err(StoreError::NotFound(_))
    ));
    // Every remaining module still has its binary.
    assert!(store.verify_modules().await.unwrap().is_empty());
    // And the same bytes can be registered again afterwards.
    store
        .register_module(new_module("img-again", "1.0.0"), bin.clone(), &dev)
        .await
        .unwrap();
    assert_eq!(store.binary(&m.checksum).await.unwrap(), bin);

    // Nodes: register, heartbeat, silence makes them unhealthy.
    let node = NodeUpdate {
        node_id: "edge-1".into(),
        region: "eu-west".into(),
        zone: "a".into(),
        capacity: NodeCapacity {
            max_modules: 2,
            max_instances: 100,
        },
        runtime_version: "test".into(),
        wasi_support: vec!["preview2".into()],
        agent_url: "http://127.0.0.1:1".into(),
        data_url: "http://127.0.0.1:2".into(),
    };
    assert!(store.register_node(&node, &dev).await.unwrap());
    assert!(
        !store.register_node(&node, &dev).await.unwrap(),
        "re-registration"
    );
    let report = NodeReport {
        node_id: "edge-1".into(),
        loaded_modules: 1,
        services: vec![json!({ "name": "img", "versions": [{ "version": "2.0.0" }] })],
    };
    store.heartbeat(&report).await.unwrap();
    let n = store.get_node("edge-1", 30_000).await.unwrap();
    assert_eq!(n.status, NodeHealth::Healthy);
    assert_eq!(n.modules, ["img-v2.0.0"]);
    clock.advance_ms(31_000);
    assert_eq!(
        store.get_node("edge-1", 30_000).await.unwrap().status,
        NodeHealth::Unhealthy
    );
    store.heartbeat(&report).await.unwrap();
    assert_eq!(
        store.list_nodes(Some("eu-west"), 30_000).await.unwrap()[0].status,
        NodeHealth::Healthy
    );
    assert!(
        store
            .list_nodes(Some("us-east"), 30_000)
            .await
            .unwrap()
            .is_empty()
    );
    let unknown = NodeReport {
        node_id: "ghost".into(),
        loaded_modules: 0,
        services: vec![],
    };
    assert!(matches!(
        store.heartbeat(&unknown).await,
        Err(StoreError::NotFound(_))
    ));
    store.delete_node("edge-1", &dev).await.unwrap();
    assert!(matches!(
        store.get_node("edge-1", 30_000).await,
        Err(StoreError::NotFound(_))
    ));

    // Interfaces: draft → approved → deprecated; no way back.
    let iface = NewInterface {
        namespace: "acme".into(),
        name: "kv".into(),
        version: "1.0.0".into(),
        interface: "store".into(),
        wit: "package acme:kv@1.0.0; interface store { get: func(k: string) -> string; }".into(),
        compatibility: "callers".into(),
        review: json!({ "needsApproval": true }),
        needs_approval: true,
    };
    let stored = store.insert_interface(&iface, &dev).await.unwrap();
    assert_eq!(stored.interface_id, "acme/kv@1.0.0");
    assert!(
        !stored.cleared,
        "a draft with breaking changes is not cleared"
    );
    assert!(matches!(
        store.insert_interface(&iface, &dev).await,
        Err(StoreError::Conflict(_))
    ));
    let approved = store
        .set_interface_status("acme/kv@1.0.0", "approved", &actor("admin"))
        .await
        .unwrap();
    assert!(approved.cleared);
    assert_eq!(approved.approved_by.as_deref(), Some("admin"));
    store
        .set_interface_status("acme/kv@1.0.0", "deprecated", &dev)
        .await
        .unwrap();
    let back = store
        .set_interface_status("acme/kv@1.0.0", "approved", &dev)
        .await;
    assert!(matches!(back, Err(StoreError::Conflict(_))), "{back:?}");

    // Deployments: one underway per service, revision-checked writes, the
    // live version by finish order, events, locks.
    {
        use wasmswap_control::rollout::model::{DeploymentSpec, DeploymentStatus, EngineState};
        let spec: DeploymentSpec =
            serde_json::from_value(json!({"moduleId": "img-v2.0.0", "strategy": "canary"}))
                .unwrap();
        let create = |id: &'static str| {
            let (store, spec, dev) = (store.clone(), spec.clone(), dev.clone());
            async move {
                store
                    .create_deployment(
                        id,
                        "img",
                        Some("img-v1.10.0"),
                        &spec,
                        DeploymentStatus::Pending,
                        &EngineState::default(),
                        &dev,
                    )
                    .await
            }
        };
        let d = create("dep-1").await.unwrap();
        assert!(
            matches!(create("dep-2").await, Err(StoreError::Conflict(_))),
            "one underway per service"
        );
        let mut running = d.clone();
        running.status = DeploymentStatus::InProgress;
        let running = store
            .save_deployment(
                &running,
                Some(("executed", "go", json!({}))),
                Some((&dev, "deployment.execute")),
            )
            .await
            .unwrap();
        let stale = store.save_deployment(&d, None, None).await;
        assert!(
            matches!(stale, Err(StoreError::Conflict(_))),
            "a write from an old read loses"
        );
        assert_eq!(store.engine_work().await.unwrap(), ["dep-1"]);
        let held = store.try_lock("deployment:dep-1").await.unwrap();
        assert!(held.is_some());
        assert!(
            store.try_lock("deployment:dep-1").await.unwrap().is_none(),
            "held once"
        );
        drop(held);
        let mut done = running.clone();
        done.status = DeploymentStatus::Completed;
        store
            .save_deployment(&done, Some(("completed", "done", json!({}))), None)
            .await
            .unwrap();
        assert_eq!(
            store.live_module("img").await.unwrap().as_deref(),
            Some("img-v2.0.0")
        );
        assert!(store.engine_work().await.unwrap().is_empty());
        let kinds: Vec<String> = store
            .deployment_events("dep-1")
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.kind)
            .collect();
        assert_eq!(kinds, ["created", "executed", "completed"]);
        // Finished: a new one may start.
        create("dep-2").await.unwrap();
    }

    // Audit: every change above, with who and which request.
    let (all, total) = store
        .list_audit(&AuditFilter {
            limit: 500,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(all.len() as i64, total);
    let actions: Vec<&str> = all.iter().map(|a| a.action.as_str()).collect();
    for want in [
        "module.register",
        "module.delete",
        "module.prune",
        "module.status",
        "node.register",
        "node.reregister",
        "node.delete",
        "interface.register",
        "interface.approve",
        "interface.deprecate",
        "deployment.create",
        "deployment.execute",
    ] {
        assert!(actions.contains(&want), "{want} missing from {actions:?}");
    }
    assert!(all.windows(2).all(|w| w[0].seq > w[1].seq), "newest first");
    let (modules_only, _) = store
        .list_audit(&AuditFilter {
            action: Some("module.".into()),
            actor: Some("dev".into()),
            limit: 500,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(
        modules_only
            .iter()
            .all(|a| a.action.starts_with("module.") && a.actor == "dev")
    );
    assert!(modules_only.iter().all(|a| a.request_id == "req-dev"));
    // The refused duplicate left no audit record.
    let registers = all.iter().filter(|a| a.action == "module.register").count();
    assert_eq!(registers, 8);
    store.close().await;
}

#[tokio::test]
async fn embedded_sqlite_and_blob_directory() {
    let dir = tempfile::tempdir().unwrap();
    suite(StoreConfig::embedded(dir.path())).await;
}

#[tokio::test]
async fn postgres_and_s3() {
    let svc = services();
    let config = StoreConfig {
        database_url: svc.fresh_database().await,
        blobs: BlobConfig::S3(svc.fresh_bucket()),
        keep_versions: 5,
        acquire_timeout: std::time::Duration::from_secs(10),
    };
    suite(config).await;
}
