//! Hostile guest behaviour, one export each. The host must contain every one.
//! (An infinite loop in the start function and a huge table are WAT fixtures.)

use std::hint::black_box;

/// Healthy: the module passes a rollout's health check, and is hostile only
/// when its other exports are called.
#[unsafe(no_mangle)]
pub extern "C" fn health_check() -> i32 {
    1
}

/// Never returns.
#[unsafe(no_mangle)]
pub extern "C" fn infinite_loop() -> i32 {
    let mut n = 0i32;
    loop {
        n = black_box(n.wrapping_add(1));
    }
}

/// Allocates 1 MiB blocks and touches them until allocation fails.
#[unsafe(no_mangle)]
pub extern "C" fn memory_bomb() -> i32 {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        let mut block = vec![0u8; 1 << 20];
        block[0] = 1;
        hoard.push(black_box(block));
    }
}

fn recurse(depth: u64) -> u64 {
    // Not a tail call, and opaque to the optimiser, so every level keeps a
    // wasm frame; the frames live on the wasm stack, not in linear memory.
    black_box(recurse(black_box(depth + 1))) ^ depth
}

/// Recurses without bound until the wasm stack overflows.
#[unsafe(no_mangle)]
pub extern "C" fn deep_recursion() -> i64 {
    recurse(0) as i64
}

/// Burns CPU for `rounds` x 1M iterations, then returns a checksum.
#[unsafe(no_mangle)]
pub extern "C" fn cpu_hog(rounds: i32) -> i64 {
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    for _ in 0..rounds {
        for _ in 0..1_000_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x = black_box(x);
        }
    }
    x as i64
}
