//! Image decoding, resizing and atomic encoding.
