//! stylize: neural style transfer (Gatys, Ecker & Bethge 2016) as a hand-written WGSL compute engine.

pub mod gpu;
pub mod image_io;
pub mod net;
pub mod ops;
pub mod testing;
pub mod weights;
