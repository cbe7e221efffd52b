//! Video (Ruder, Dosovitskiy & Brox 2016): the clip's frames, the optical flows between them
//! and their files, for `pipeline::video`.

pub mod ffmpeg;
pub mod flo;
pub mod frames;
pub mod motion;
