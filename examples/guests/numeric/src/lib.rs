//! A WASI p1 core module (reactor) with numeric exports and a `health_check`.

#[unsafe(no_mangle)]
pub extern "C" fn add(a: i32, b: i32) -> i32 {
    a.wrapping_add(b)
}

#[unsafe(no_mangle)]
pub extern "C" fn mul_i64(a: i64, b: i64) -> i64 {
    a.wrapping_mul(b)
}

#[unsafe(no_mangle)]
pub extern "C" fn div_f64(a: f64, b: f64) -> f64 {
    a / b
}

#[unsafe(no_mangle)]
pub extern "C" fn scale_f32(a: f32, by: f32) -> f32 {
    a * by
}

/// Iterative Fibonacci (wrapping), a little real work per call.
#[unsafe(no_mangle)]
pub extern "C" fn fib(n: i32) -> i64 {
    let (mut a, mut b) = (0i64, 1i64);
    for _ in 0..n {
        (a, b) = (b, a.wrapping_add(b));
    }
    a
}

/// Returns 1 when healthy.
#[unsafe(no_mangle)]
pub extern "C" fn health_check() -> i32 {
    1
}

/// Integer division that traps on a zero divisor (`integer divide by zero`).
#[unsafe(no_mangle)]
pub extern "C" fn div_trap(a: i32, b: i32) -> i32 {
    if b == 0 {
        core::arch::wasm32::unreachable()
    }
    a / b
}

/// Number of environment variables the sandbox lets the guest see.
#[unsafe(no_mangle)]
pub extern "C" fn env_count() -> i32 {
    std::env::vars().count() as i32
}

/// 1 if `/etc/passwd` (outside any preopen) could be read, else 0.
#[unsafe(no_mangle)]
pub extern "C" fn reads_etc_passwd() -> i32 {
    i32::from(std::fs::read("/etc/passwd").is_ok())
}

/// Number of entries in the preopened directory `/data`, or -1.
#[unsafe(no_mangle)]
pub extern "C" fn count_data_entries() -> i32 {
    std::fs::read_dir("/data").map(|d| d.count() as i32).unwrap_or(-1)
}
