//! Fuzzes image decoding with the crate's limits (any format the content looks like).
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use stylize::image_io::{MAX_SIDE_PIXELS, caught_decoder_panics, load_image_from_bytes};

fuzz_target!(|data: &[u8]| {
    let caught = caught_decoder_panics();
    if let Ok(img) = load_image_from_bytes(data, Path::new("fuzz-input")) {
        assert!(img.width <= MAX_SIDE_PIXELS && img.height <= MAX_SIDE_PIXELS);
        assert_eq!(img.data.len(), 3 * img.width as usize * img.height as usize);
    }
    // The library keeps a decoder's panic quiet (its hook, not libFuzzer's, sees it): report it.
    assert_eq!(caught_decoder_panics(), caught, "a decoder panicked (caught by load_image)");
});
