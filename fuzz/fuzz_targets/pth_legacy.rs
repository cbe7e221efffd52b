//! Fuzzes reading a legacy .pth container (pickled magic, protocol, sys info, state dict, storage keys, raw storages).
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "weights_common.rs"]
mod weights_common;

fuzz_target!(|data: &[u8]| {
    // Other inputs take another path, fuzzed by the other targets; stay on this one.
    if data.starts_with(b"\x80\x02\x8a") {
        weights_common::run(data);
    }
});
