//! The VGG-19 layer table and its forward/backward executor.
pub mod vgg;
