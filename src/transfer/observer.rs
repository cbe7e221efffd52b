//! What a run tells its caller as it goes (`Observer`), with a default for every event.

use super::TransferError;
use crate::image_io::Image;
use crate::net::Losses;

/// Hears about the run. Each method has a default that does nothing, so an observer implements
/// only what it needs. Reading losses or the image costs a GPU round trip: ask only when needed.
pub trait Observer {
    /// Whether the losses of `step` (the image before that step's update) should be read back.
    fn wants_losses(&mut self, _step: usize) -> bool {
        false
    }
    /// Whether the image after `step`'s update should be read back.
    fn wants_image(&mut self, _step: usize) -> bool {
        false
    }
    /// Called after every step with what was asked for.
    fn on_step(&mut self, _step: usize, _losses: Option<&Losses>, _image: Option<&Image>) -> Result<(), TransferError> {
        Ok(())
    }
    /// Progress of a weights download.
    fn on_fetch(&mut self, _event: &crate::weights::FetchEvent) {}
    /// A new scale of a multi-scale run starts (`index` of `count`, from 0), at `width` x `height`;
    /// step numbers start again from 0.
    fn on_scale(&mut self, _index: usize, _count: usize, _width: u32, _height: u32) {}
    /// Whether to stop before the next step (e.g. after Ctrl-C).
    fn should_stop(&mut self) -> bool {
        false
    }
    /// The live preview (`Outputs::serve`) listens at `url`; called before any input is loaded.
    fn on_preview(&mut self, _url: &str) {}
    /// The GPU the run got, once it is open (after the weights are loaded, before any step).
    fn on_gpu(&mut self, _gpu: &GpuInfo) -> Result<(), TransferError> {
        Ok(())
    }
    /// Something went wrong that does not stop the run (e.g. the loss log could not be flushed).
    fn on_warning(&mut self, _message: &str) {}
    /// How the network goes over this scale's image when it is tiled (after `on_scale`), e.g.
    /// `8192x8192 in 16 tiles of 2048 px (halo 160 px)`.
    fn on_schedule(&mut self, _schedule: &str) {}
}

/// The GPU a run got (`Observer::on_gpu`).
#[derive(Clone, Debug)]
pub struct GpuInfo {
    /// `name (backend)`.
    pub adapter: String,
    /// Whether it is a CPU implementation (lavapipe, llvmpipe, WARP, SwiftShader).
    pub is_cpu: bool,
    /// The arithmetic used and why (`--precision`).
    pub precision: String,
    /// A warning about that choice (e.g. mixed precision emulated), if any.
    pub precision_warning: Option<String>,
}

/// An observer that hears nothing.
pub struct Silent;
impl Observer for Silent {}
