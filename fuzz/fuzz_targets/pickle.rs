//! Fuzzes the restricted unpickler alone on raw pickle bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = stylize::weights::unpickle_bytes(data);
});
