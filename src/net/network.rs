//! `Network`, the one a run holds: the network on the whole image (`Executor`) or over tiles
//! (`TiledExecutor`), either seen through the `Execute` trait both implement.

use std::ops::{Deref, DerefMut};

use super::{ConvLayerWeights, Execute, Executor, NetError, Plan, TiledExecutor};
use crate::gpu::Context;

/// The network a run optimizes through: untiled, or tiled (see `tiling`); either is an
/// [`Execute`], which `Network` derefs to. One is built per scale and held in place for the run,
/// so the variants' sizes (both about 1 KiB) do not matter.
#[allow(clippy::large_enum_variant)]
pub enum Network {
    Whole(Executor),
    Tiled(TiledExecutor),
}

impl Network {
    /// The untiled network when `tile` is None, else tiles of that side.
    pub fn new(ctx: &Context, plan: Plan, weights: &[ConvLayerWeights], tile: Option<usize>) -> Result<Self, NetError> {
        Ok(match tile {
            None => Network::Whole(Executor::new(ctx, plan, weights)?),
            Some(side) => Network::Tiled(TiledExecutor::new(ctx, plan, weights, side)?),
        })
    }
}

impl Deref for Network {
    type Target = dyn Execute;

    fn deref(&self) -> &Self::Target {
        match self {
            Network::Whole(e) => e,
            Network::Tiled(e) => e,
        }
    }
}

impl DerefMut for Network {
    fn deref_mut(&mut self) -> &mut Self::Target {
        match self {
            Network::Whole(e) => e,
            Network::Tiled(e) => e,
        }
    }
}
