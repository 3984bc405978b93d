//! Shared setup for the criterion benches: a raw-wasmtime baseline configured
//! like wasmswap's engine (pooling, same proposals), so each bench measures
//! wasmswap beside plain `Store::new` + `InstancePre::instantiate` + call on
//! the same guest.

// Bench fixtures hold wasmtime handles that have no useful Debug form.
#![allow(missing_debug_implementations)]

use std::time::{Duration, Instant};

use wasmtime::component::{Component, Linker as ComponentLinker, ResourceTable};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, Linker, Module, PoolingAllocationConfig, Store,
};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

/// A pooling engine with wasmtime's defaults otherwise: the baseline.
pub fn raw_engine() -> Engine {
    let mut pool = PoolingAllocationConfig::new();
    pool.total_core_instances(1000)
        .total_component_instances(1000)
        .total_memories(1000)
        .total_tables(1000)
        .total_stacks(1000)
        .max_memory_size(512 << 20);
    let mut cfg = Config::new();
    cfg.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    Engine::new(&cfg).expect("raw engine")
}

/// Raw wasmtime running a WASI p1 core module: `add(i32, i32) -> i32`.
pub struct RawModule {
    engine: Engine,
    pre: wasmtime::InstancePre<WasiP1Ctx>,
}

impl RawModule {
    /// Compiles `bytes` and links WASI p1.
    pub fn new(engine: &Engine, bytes: &[u8]) -> Self {
        let module = Module::new(engine, bytes).unwrap();
        let mut linker = Linker::new(engine);
        wasmtime_wasi::p1::add_to_linker_async(&mut linker, |c| c).unwrap();
        Self {
            engine: engine.clone(),
            pre: linker.instantiate_pre(&module).unwrap(),
        }
    }

    /// One fresh instance and one typed call (plus the reactor's `_initialize`).
    pub async fn call_add(&self, a: i32, b: i32) -> i32 {
        let mut store = Store::new(&self.engine, WasiCtxBuilder::new().build_p1());
        // Only matters on an engine with epoch interruption (wasmswap's).
        store.set_epoch_deadline(1 << 40);
        let instance = self.pre.instantiate_async(&mut store).await.unwrap();
        if let Ok(init) = instance.get_typed_func::<(), ()>(&mut store, "_initialize") {
            init.call_async(&mut store, ()).await.unwrap();
        }
        let add = instance
            .get_typed_func::<(i32, i32), i32>(&mut store, "add")
            .unwrap();
        add.call_async(&mut store, (a, b)).await.unwrap()
    }
}

/// Store data for the raw component baseline.
pub struct RawState {
    wasi: WasiCtx,
    table: ResourceTable,
}

impl WasiView for RawState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Raw wasmtime running a component: `add-u32(u32, u32) -> u32`.
pub struct RawComponent {
    engine: Engine,
    pre: wasmtime::component::InstancePre<RawState>,
}

impl RawComponent {
    /// Compiles `bytes` and links WASI p2.
    pub fn new(engine: &Engine, bytes: &[u8]) -> Self {
        let component = Component::new(engine, bytes).unwrap();
        let mut linker = ComponentLinker::new(engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).unwrap();
        Self {
            engine: engine.clone(),
            pre: linker.instantiate_pre(&component).unwrap(),
        }
    }

    /// One fresh instance and one typed call.
    pub async fn call_add(&self, a: u32, b: u32) -> u32 {
        let state = RawState {
            wasi: WasiCtxBuilder::new().build(),
            table: ResourceTable::new(),
        };
        let mut store = Store::new(&self.engine, state);
        store.set_epoch_deadline(1 << 40);
        let instance = self.pre.instantiate_async(&mut store).await.unwrap();
        let add = instance
            .get_typed_func::<(u32, u32), (u32,)>(&mut store, "add-u32")
            .unwrap();
        add.call_async(&mut store, (a, b)).await.unwrap().0
    }
}

/// Runs `iters` calls of `call` split over `threads` OS threads, each with its
/// own single-threaded tokio runtime, and returns the wall time. Per-call
/// time = wall / iters, so 2 threads on 2 cores ideally halve it.
pub fn run_threads<F, Fut>(threads: u64, iters: u64, call: F) -> Duration
where
    F: Fn() -> Fut + Send + Sync + Clone + 'static,
    Fut: Future<Output = ()>,
{
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(threads as usize + 1));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let call = call.clone();
            let barrier = barrier.clone();
            let n = iters / threads + u64::from(t < iters % threads);
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                barrier.wait();
                rt.block_on(async {
                    for _ in 0..n {
                        call().await;
                    }
                });
            })
        })
        .collect();
    barrier.wait();
    let started = Instant::now();
    for h in handles {
        h.join().unwrap();
    }
    started.elapsed()
}
