//! JSON ↔ WIT values over generated WIT types: the bytes become a world
//! whose export takes those types, a real component is built and loaded,
//! and values must survive value → JSON → value, junk JSON must be refused
//! with `BadArgument` naming the parameter, and a valid call must reach the
//! guest. The generators and checks are `wasmswap_core::fuzzing`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    wasmswap_core::fuzzing::wit_json(wasmswap_fuzz::runtime(), data);
});
