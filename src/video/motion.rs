//! The previous frame's result carried to the next frame, on the GPU: the flows between the
//! frames (`ops::tvl1`), the result warped along the backward flow and where that flow can be
//! trusted (`ops::flow`).

use super::flo::Flow;
use crate::gpu::{Context, GpuError, Step};
use crate::image_io::Image;
use crate::ops::tvl1::{Tvl1, Tvl1Config};
use crate::ops::{ActShape, flow, normalize};

/// `previous` (RGB in [0, 1], the flow's size) sampled at `p + backward(p)` for every pixel p of
/// the next frame: what the next frame looks like if it only moved. Points that come from
/// outside the image take ImageNet's mean colour, as Ruder et al.'s warp does.
pub fn warp_previous(ctx: &Context, previous: &Image, backward: &Flow) -> Result<Image, GpuError> {
    let (width, height) = (previous.width as usize, previous.height as usize);
    if (backward.width, backward.height) != (width, height) {
        return Err(GpuError::Device(format!(
            "a {}x{} flow for a {width}x{height} image",
            backward.width, backward.height
        )));
    }
    let shape = ActShape { channels: 3, height, width };
    let image = ctx.upload("previous result", &previous.data)?;
    let flow_buffer = ctx.upload("backward flow", &backward.data)?;
    let out = ctx.buffer("warped previous result", shape.len())?;
    let fill = normalize::IMAGENET_MEAN.map(|v| v as f32);
    let mut step = Step::new();
    step.push(flow::warp(ctx, shape, &image, &flow_buffer, &out, fill)?);
    step.run(ctx)?;
    Ok(Image::new(previous.width, previous.height, ctx.read(&out, shape.len())?))
}

/// The reliability (1 or 0 per pixel) of `backward` (frame t -> t-1) checked against `forward`
/// (t-1 -> t): Ruder et al.'s consistency check (`ops::flow::consistency`).
pub fn reliability(ctx: &Context, forward: &Flow, backward: &Flow) -> Result<Vec<f32>, GpuError> {
    let (width, height) = (backward.width, backward.height);
    if (forward.width, forward.height) != (width, height) {
        return Err(GpuError::Device(format!(
            "a {}x{} forward flow for a {width}x{height} backward flow",
            forward.width, forward.height
        )));
    }
    let forward_buffer = ctx.upload("forward flow", &forward.data)?;
    let backward_buffer = ctx.upload("backward flow", &backward.data)?;
    let out = ctx.buffer("reliability", width * height)?;
    let mut step = Step::new();
    step.push(flow::consistency(ctx, height, width, &forward_buffer, &backward_buffer, &out)?);
    step.run(ctx)?;
    ctx.read(&out, width * height)
}

/// The flows between consecutive frames, computed on the GPU by TV-L1 (`ops::tvl1`, built once
/// for the frames' size).
pub struct FlowSolver {
    tvl1: Tvl1,
}

impl FlowSolver {
    /// TV-L1 with IPOL's parameters for `width` x `height` frames.
    pub fn new(ctx: &Context, width: u32, height: u32) -> Result<Self, GpuError> {
        Ok(Self { tvl1: Tvl1::new(ctx, width as usize, height as usize, Tvl1Config::default())? })
    }

    /// The forward flow (`previous` -> `next`: previous(p) ~ next(p + f(p))) and the backward
    /// flow (`next` -> `previous`), both at the frames' size.
    pub fn pair(&self, ctx: &Context, previous: &Image, next: &Image) -> Result<(Flow, Flow), GpuError> {
        let (width, height) = (previous.width as usize, previous.height as usize);
        let size = self.tvl1.size();
        if (next.width, next.height) != (previous.width, previous.height)
            || (size.width, size.height) != (width, height)
        {
            return Err(GpuError::Device(format!(
                "frames of {}x{} and {}x{} for a {}x{} flow",
                previous.width, previous.height, next.width, next.height, size.width, size.height
            )));
        }
        let flow = |first: &Image, second: &Image| -> Result<Flow, GpuError> {
            let data = self.tvl1.flow_host(ctx, &first.data, &second.data)?;
            Ok(Flow { width, height, data })
        };
        Ok((flow(previous, next)?, flow(next, previous)?))
    }
}
