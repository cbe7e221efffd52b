//! Fuzzes reading a .npz archive (zip of <key>.npy members).
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "weights_common.rs"]
mod weights_common;

fuzz_target!(|data: &[u8]| {
    // Other inputs take another path, fuzzed by the other targets; stay on this one.
    if data.starts_with(b"PK\x03\x04") {
        weights_common::run(data);
    }
});
