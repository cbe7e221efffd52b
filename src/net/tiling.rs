//! The tiled schedule: how an image of any size is split into tiles whose windows (tile plus halo)
//! each run the same network, so that a step over the tiles computes exactly the untiled losses
//! and image gradient. Derived from a `Plan` (its nodes, activation shapes and loss layers), never
//! hard-coded; pure geometry and accounting, no GPU. `tests/tiling.rs` proves it exact in f64.
//!
//! A step has two passes over the tiles. Pass 1 runs the forward on each window and accumulates
//! every style layer's Gram and the content loss from the positions the tile owns; the global
//! Grams give dL/dG. Pass 2 runs forward and backward on each window with the loss gradients
//! injected in the tile's exact region of each loss layer and keeps the image gradient of the
//! tile's own pixels.

use std::collections::HashMap;

use super::{NetError, Node, Plan};
use crate::ops::ActShape;
use crate::ops::bands::split_rows;

/// Tile sides and halos are multiples of this (pixels): the downsampling of the deepest pool
/// VGG-19 reaches, so that every window's origin lies on every pool's grid.
pub const TILE_GRID: usize = 16;

/// The default binding limit of `stylize plan` (bytes): wgpu's cap on Vulkan, DX12 and Metal.
pub const DEFAULT_BINDING_LIMIT: u64 = 2 * GIB;

/// The default memory budget of `stylize plan` (bytes) when none is given.
pub const DEFAULT_MEMORY_BUDGET: u64 = 4 * GIB;

/// Image-sized f32 arrays (3 x H x W) a run holds beside an untiled plan's own buffers: Adam's two
/// moments, the previous and the last finite image, the iterate average (EMA).
pub const UNTILED_IMAGE_STATE: u64 = 5;

/// Image-sized arrays a tiled run holds beside its window's plan: the RGB image, the image and
/// its gradient as well as the five of `UNTILED_IMAGE_STATE`, each stored in bands of at most one
/// binding; and beside them the content features of the whole image (`tiled_state_bytes`).
pub const TILED_IMAGE_STATE: u64 = 8;

/// Bytes of a tiled run's state: `TILED_IMAGE_STATE` image-sized arrays and every content
/// layer's features over the whole image (the targets each window's content gradient is cut from).
pub fn tiled_state_bytes(plan: &Plan) -> u64 {
    let content: usize = plan.content.iter().map(|t| plan.acts[t.act].len()).sum();
    (TILED_IMAGE_STATE * plan.acts[0].len() as u64 + content as u64) * 4
}

/// Where an activation's values come from in the image: position `q` (at `downsampling` image
/// pixels per position) covers image pixels `[q s, q s + s)` (its footprint) and depends only on
/// image pixels within `radius` of that footprint, along each axis.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reach {
    pub downsampling: usize,
    pub radius: usize,
}

impl Reach {
    /// Image pixels between a tile's edge and the farthest pixel an exact feature of this layer
    /// injected for that tile depends on: the features within `radius` of the tile reach
    /// `s ceil(R / s)` beyond it, and their own inputs `R` beyond them.
    pub fn halo_needed(&self) -> usize {
        self.downsampling * self.radius.div_ceil(self.downsampling) + self.radius
    }

    /// Positions (at this layer) by which a tile's owned region grows into its exact region:
    /// every feature within `radius` of the tile.
    pub fn growth(&self) -> usize {
        self.radius.div_ceil(self.downsampling)
    }
}

/// The reach of every activation of `plan`, in `Plan::acts` order. A 3x3 convolution (padding 1)
/// at downsampling s widens the dependency by s pixels each side; a 2x2 pool of stride 2 doubles
/// the downsampling and widens nothing (window minus stride is 0: its output's footprint is the
/// union of its inputs' footprints); a ReLU changes neither.
pub fn reaches(plan: &Plan) -> Vec<Reach> {
    let mut reach = vec![Reach { downsampling: 1, radius: 0 }; plan.acts.len()];
    for node in &plan.nodes {
        let input = reach[node.input()];
        reach[node.output()] = match node {
            Node::Conv { .. } => Reach { radius: input.radius + input.downsampling, ..input },
            Node::Relu { .. } => input,
            Node::MaxPool { .. } | Node::AvgPool { .. } => Reach { downsampling: 2 * input.downsampling, ..input },
        };
    }
    reach
}

/// The activations the losses read, each once, in order.
pub fn loss_acts(plan: &Plan) -> Vec<usize> {
    let mut acts: Vec<usize> = plan.content.iter().chain(&plan.style).map(|t| t.act).collect();
    acts.sort_unstable();
    acts.dedup();
    acts
}

/// The largest dependency radius (image pixels) of the activations the losses read.
pub fn radius(plan: &Plan) -> usize {
    let reach = reaches(plan);
    loss_acts(plan).iter().map(|&a| reach[a].radius).max().unwrap_or(0)
}

/// The smallest halo (a multiple of `TILE_GRID`) with which the tiled step is exact: every feature
/// that depends on a tile's pixels, and every input of those features, lies inside its window.
/// At most `2 R + s - 1` rounded up (for VGG-19 to relu5_1: R = 70, 150 px needed, halo 160).
pub fn halo(plan: &Plan) -> usize {
    let reach = reaches(plan);
    let needed = loss_acts(plan).iter().map(|&a| reach[a].halo_needed()).max().unwrap_or(0);
    needed.div_ceil(TILE_GRID) * TILE_GRID
}

/// A half-open range of positions along one axis.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    pub start: usize,
    pub end: usize,
}

impl Span {
    pub fn len(&self) -> usize {
        self.end.saturating_sub(self.start)
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One tile: the image pixels it owns and its window (the tile grown by the halo, clipped to the
/// image), as rows and columns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tile {
    pub rows: Span,
    pub cols: Span,
    pub window_rows: Span,
    pub window_cols: Span,
}

/// The tiles of one image and what each owns at every activation.
#[derive(Clone, Debug)]
pub struct Tiling {
    pub height: usize,
    pub width: usize,
    /// Tile side in pixels (the last row and column of tiles may be smaller).
    pub side: usize,
    pub halo: usize,
    /// Row-major: `tiles_down` rows of `tiles_across` tiles.
    pub tiles: Vec<Tile>,
    pub tiles_across: usize,
    pub tiles_down: usize,
    /// Per activation of the plan.
    pub reaches: Vec<Reach>,
    /// Per activation of the plan: its height and width over the whole image.
    sizes: Vec<(usize, usize)>,
}

impl Tiling {
    /// Tiles of `side` pixels (a positive multiple of `TILE_GRID`) with the plan's halo.
    pub fn new(plan: &Plan, side: usize) -> Result<Self, NetError> {
        Self::with_halo(plan, side, halo(plan))
    }

    /// As `new` with a chosen halo (a multiple of `TILE_GRID`): the tests show that one grid step
    /// less than `halo(plan)` is no longer exact.
    pub fn with_halo(plan: &Plan, side: usize, halo: usize) -> Result<Self, NetError> {
        check_side(side)?;
        if !halo.is_multiple_of(TILE_GRID) {
            return Err(NetError::BadSize(format!("a halo of {halo} px is not a multiple of {TILE_GRID}")));
        }
        check_tileable(plan)?;
        let (height, width) = (plan.acts[0].height, plan.acts[0].width);
        let spans = |len: usize| -> Vec<(Span, Span)> {
            (0..len.div_ceil(side))
                .map(|i| {
                    let tile = Span { start: i * side, end: ((i + 1) * side).min(len) };
                    let window = Span { start: tile.start.saturating_sub(halo), end: (tile.end + halo).min(len) };
                    (tile, window)
                })
                .collect()
        };
        let (down, across) = (spans(height), spans(width));
        let tiles = down
            .iter()
            .flat_map(|&(rows, window_rows)| {
                across.iter().map(move |&(cols, window_cols)| Tile { rows, cols, window_rows, window_cols })
            })
            .collect();
        Ok(Self {
            height,
            width,
            side,
            halo,
            tiles,
            tiles_across: across.len(),
            tiles_down: down.len(),
            reaches: reaches(plan),
            sizes: plan.acts.iter().map(|a| (a.height, a.width)).collect(),
        })
    }

    /// The positions of activation `act` that `tile` owns (rows, columns, over the whole image):
    /// those whose footprint starts in the tile. The tiles' owned regions partition every activation.
    pub fn owned(&self, tile: &Tile, act: usize) -> (Span, Span) {
        let s = self.reaches[act].downsampling;
        let (h, w) = self.sizes[act];
        let at = |span: Span, full: usize, len: usize| Span {
            start: (span.start / s).min(len),
            end: if span.end == full { len } else { (span.end / s).min(len) },
        };
        (at(tile.rows, self.height, h), at(tile.cols, self.width, w))
    }

    /// The positions of activation `act` where pass 2 injects the loss gradient for `tile`: the
    /// owned ones grown by the layer's radius (`Reach::growth`), clipped. Every feature that
    /// depends on a pixel of the tile is among them, and each of them is exact in the window.
    pub fn exact(&self, tile: &Tile, act: usize) -> (Span, Span) {
        let g = self.reaches[act].growth();
        let (h, w) = self.sizes[act];
        let (rows, cols) = self.owned(tile, act);
        let grow = |span: Span, len: usize| Span { start: span.start.saturating_sub(g), end: (span.end + g).min(len) };
        (grow(rows, h), grow(cols, w))
    }

    /// The first row and column of `tile`'s window at activation `act` (over the whole image):
    /// window origins lie on the `TILE_GRID`, so on every layer's grid.
    pub fn window_origin(&self, tile: &Tile, act: usize) -> (usize, usize) {
        let s = self.reaches[act].downsampling;
        (tile.window_rows.start / s, tile.window_cols.start / s)
    }
}

fn check_side(side: usize) -> Result<(), NetError> {
    if side == 0 || !side.is_multiple_of(TILE_GRID) {
        return Err(NetError::BadSize(format!("a tile side of {side} px is not a positive multiple of {TILE_GRID}")));
    }
    Ok(())
}

/// The tiled step computes every term exactly (content, plain and masked style terms, the total
/// variation, normalized gradients): what it needs is a network whose pools all align on the grid.
fn check_tileable(plan: &Plan) -> Result<(), NetError> {
    let deepest = reaches(plan).iter().map(|r| r.downsampling).max().unwrap_or(1);
    let unsupported =
        if !TILE_GRID.is_multiple_of(deepest) { Some("a network that downsamples by more than 16") } else { None };
    match unsupported {
        Some(what) => Err(NetError::BadSize(format!("the tiled schedule does not support {what} yet"))),
        None => Ok(()),
    }
}

/// The plan of a window of `height` x `width` pixels: the same network and loss terms, with the
/// whole plan's loss scales, no total variation (the tiled executor takes it on the whole image)
/// and masks of the window's size whose values do not matter (each tile's pass 2 copies its
/// window's column weights from the whole layer's, which hold the whole mask's coverage).
pub fn window_plan(plan: &Plan, height: usize, width: usize) -> Result<Plan, NetError> {
    let masks = plan.losses.masks.iter().map(|_| vec![1.0; height * width]).collect();
    let losses = super::LossLayers { tv_weight: 0.0, masks, ..plan.losses.clone() };
    let mut window = Plan::new(&plan.layers, &plan.conv_widths, height, width, &losses)?;
    for (own, whole) in window.content.iter_mut().zip(&plan.content).chain(window.style.iter_mut().zip(&plan.style)) {
        own.scale = whole.scale;
    }
    Ok(window)
}

/// The plan of VGG-19 (its real widths) with the default loss layers on a `height` x `width`
/// image: what `stylize plan` reports on. Needs no weights.
pub fn vgg19_plan(height: usize, width: usize) -> Result<Plan, NetError> {
    model_plan(super::vgg::Model::Vgg19, height, width)
}

/// The plan of `model` (its layer table and widths, to conv5_1) with the default layers.
pub fn model_plan(model: super::vgg::Model, height: usize, width: usize) -> Result<Plan, NetError> {
    let mut widths = Vec::new();
    let mut in_channels = 3;
    for &out_channels in model.widths() {
        widths.push((in_channels, out_channels));
        in_channels = out_channels;
    }
    let losses = super::LossLayers { input: model.preprocess(), ..super::LossLayers::default() };
    Plan::new(model.layers(), &widths, height, width, &losses)
}

/// How a run goes over its image (`--tile`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TileChoice {
    /// Untiled when the whole plan and its state fit the adapter's binding limit and the memory
    /// budget, else the largest tile that fits (`report`).
    #[default]
    Auto,
    /// Always untiled (a plan over the binding limit is refused, as before tiling).
    Off,
    /// Tiles of this side (pixels, a positive multiple of `TILE_GRID`).
    Side(usize),
}

impl TileChoice {
    /// Parses `auto`, `off` or a side in pixels (a positive multiple of `TILE_GRID`).
    pub fn parse(text: &str) -> Result<Self, String> {
        match text.trim() {
            "auto" => Ok(TileChoice::Auto),
            "off" | "none" => Ok(TileChoice::Off),
            side => match side.parse::<usize>() {
                Ok(n) if n > 0 && n.is_multiple_of(TILE_GRID) => Ok(TileChoice::Side(n)),
                _ => Err(format!(
                    "must be auto, off or a tile side in pixels that is a positive multiple of {TILE_GRID}, not {text:?}"
                )),
            },
        }
    }

    /// The tile side `plan` runs with (None: untiled) under `budget`. `Auto` stays untiled where
    /// the schedule cannot tile the plan's losses (`Tiling::new` says which), so that the untiled
    /// executor reports what does not fit.
    pub fn side_for(self, plan: &Plan, budget: Budget) -> Result<Option<usize>, NetError> {
        match self {
            TileChoice::Off => Ok(None),
            TileChoice::Side(side) => Ok(Some(side)),
            TileChoice::Auto => {
                if untiled_report(plan, budget).fits || check_tileable(plan).is_err() {
                    return Ok(None);
                }
                largest_fitting_side(plan, budget).map(Some)
            }
        }
    }
}

/// Bytes in one GiB (`--memory-budget` is given in GiB).
pub const GIB: u64 = 1 << 30;

/// What a run may use: bytes of GPU memory in all, and bytes in one buffer binding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budget {
    pub memory: u64,
    pub binding_limit: u64,
}

impl Default for Budget {
    fn default() -> Self {
        Self { memory: DEFAULT_MEMORY_BUDGET, binding_limit: DEFAULT_BINDING_LIMIT }
    }
}

/// The schedule's figures for one image, tiled or not (`report`).
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    pub height: usize,
    pub width: usize,
    /// None: untiled.
    pub tile: Option<usize>,
    pub tiles: usize,
    pub halo: usize,
    /// The network's buffers: `Plan::gpu_bytes` of the whole plan, or of the largest window's.
    pub gpu_bytes: u64,
    /// The image-sized state beside them (`UNTILED_IMAGE_STATE` or `TILED_IMAGE_STATE` arrays).
    pub state_bytes: u64,
    /// Bands each image-sized array is stored in (1 untiled).
    pub state_bands: usize,
    /// The largest single binding: `Plan::largest_buffer` of the plan or window, or a state band.
    pub largest_binding: u64,
    pub largest_binding_what: String,
    /// Whether `gpu_bytes + state_bytes` fits the budget and `largest_binding` the binding limit.
    pub fits: bool,
    /// FLOPs of one step as scheduled, and of the untiled step (`Plan::flops_per_step`).
    pub flops_per_step: u64,
    pub untiled_flops_per_step: u64,
}

impl Report {
    pub fn total_bytes(&self) -> u64 {
        self.gpu_bytes + self.state_bytes
    }

    /// Tiled FLOPs over untiled FLOPs (1 untiled).
    pub fn overhead(&self) -> f64 {
        self.flops_per_step as f64 / self.untiled_flops_per_step.max(1) as f64
    }

    /// One JSON object.
    pub fn to_json(&self) -> String {
        let quote = |s: &str| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""));
        let tile = self.tile.map_or("null".to_string(), |t| t.to_string());
        format!(
            "{{\"width\":{},\"height\":{},\"tile\":{tile},\"tiles\":{},\"halo\":{},\"gpu_bytes\":{},\"state_bytes\":{},\"total_bytes\":{},\"state_bands\":{},\"largest_binding\":{},\"largest_binding_what\":{},\"fits\":{},\"flops_per_step\":{},\"untiled_flops_per_step\":{},\"overhead\":{:.4}}}",
            self.width,
            self.height,
            self.tiles,
            self.halo,
            self.gpu_bytes,
            self.state_bytes,
            self.total_bytes(),
            self.state_bands,
            self.largest_binding,
            quote(&self.largest_binding_what),
            self.fits,
            self.flops_per_step,
            self.untiled_flops_per_step,
            self.overhead()
        )
    }
}

/// The schedule of `plan`'s image: with `tile` that side; without, untiled when the whole plan
/// and its state fit `budget`, else the largest tile that fits (an error when none does).
pub fn report(plan: &Plan, tile: Option<usize>, budget: Budget) -> Result<Report, NetError> {
    if let Some(side) = tile {
        return tiled_report(plan, side, budget);
    }
    let untiled = untiled_report(plan, budget);
    if untiled.fits {
        return Ok(untiled);
    }
    let side = largest_fitting_side(plan, budget)?;
    tiled_report(plan, side, budget)
}

/// The largest multiple of `TILE_GRID` whose tiled schedule fits `budget`.
pub fn largest_fitting_side(plan: &Plan, budget: Budget) -> Result<usize, NetError> {
    let image = plan.acts[0];
    let fits = |k: usize| footprint(plan, k * TILE_GRID, budget).is_ok_and(|f| f.fits);
    // Sides beyond the image's longer side all give the same single tile.
    let (mut lo, mut hi) = (0usize, image.height.max(image.width).div_ceil(TILE_GRID));
    while lo < hi {
        let mid = (lo + hi).div_ceil(2);
        if fits(mid) { lo = mid } else { hi = mid - 1 }
    }
    if lo == 0 {
        let state = tiled_state_bytes(plan);
        let why = if state > budget.memory {
            format!(": its image-sized state alone takes {} MiB", state.div_ceil(1 << 20))
        } else {
            String::new()
        };
        return Err(NetError::BadSize(format!(
            "a {}x{} image does not fit {} MiB (bindings of {} MiB) even in tiles of {TILE_GRID} px{why}",
            image.width,
            image.height,
            budget.memory >> 20,
            budget.binding_limit >> 20
        )));
    }
    Ok(lo * TILE_GRID)
}

fn untiled_report(plan: &Plan, budget: Budget) -> Report {
    let image = plan.acts[0];
    let gpu_bytes = plan.gpu_bytes().total();
    let state_bytes = UNTILED_IMAGE_STATE * image.len() as u64 * 4;
    let (largest_binding, largest_binding_what) = plan.largest_buffer();
    let flops = plan.flops_per_step();
    Report {
        height: image.height,
        width: image.width,
        tile: None,
        tiles: 1,
        halo: 0,
        gpu_bytes,
        state_bytes,
        state_bands: 1,
        fits: gpu_bytes + state_bytes <= budget.memory && largest_binding <= budget.binding_limit,
        largest_binding,
        largest_binding_what,
        flops_per_step: flops,
        untiled_flops_per_step: flops,
    }
}

/// Memory of a tiled schedule: its largest window's plan and the banded image state.
struct Footprint {
    gpu_bytes: u64,
    state_bytes: u64,
    state_bands: usize,
    largest_binding: u64,
    largest_binding_what: String,
    fits: bool,
}

fn footprint(plan: &Plan, side: usize, budget: Budget) -> Result<Footprint, NetError> {
    check_side(side)?;
    let image = plan.acts[0];
    let halo = halo(plan);
    // Every window is at most the tile grown by the halo on both sides, clipped to the image,
    // and every buffer of a plan grows with its image: the largest window bounds them all.
    let largest = window_plan(plan, (side + 2 * halo).min(image.height), (side + 2 * halo).min(image.width))?;
    let gpu_bytes = largest.gpu_bytes().total();
    let (mut largest_binding, mut largest_binding_what) = largest.largest_buffer();
    // The whole image's arrays in bands of whole rows (all channels), each at most one binding
    // (`ops::bands`): the image-sized ones, each content layer's features, each mask's weights.
    let mut banded = vec![("image".to_string(), image)];
    banded.extend(plan.content.iter().map(|t| (format!("{} features", t.layer), plan.acts[t.act])));
    banded.extend(
        plan.style
            .iter()
            .filter(|t| t.mask.is_some())
            .map(|t| (format!("{} mask weights", t.layer), ActShape { channels: 1, ..plan.acts[t.act] })),
    );
    let state_bands = split_rows("image", image, budget.binding_limit)?.len();
    for (what, shape) in &banded {
        let rows = split_rows(what, *shape, budget.binding_limit)?;
        let band_bytes = (shape.channels * shape.width * rows[0].len()) as u64 * 4;
        if band_bytes > largest_binding {
            let rows = rows[0].len();
            (largest_binding, largest_binding_what) = (band_bytes, format!("a band of {rows} rows of the {what}"));
        }
    }
    let state_bytes = tiled_state_bytes(plan);
    let fits = gpu_bytes + state_bytes <= budget.memory && largest_binding <= budget.binding_limit;
    Ok(Footprint { gpu_bytes, state_bytes, state_bands, largest_binding, largest_binding_what, fits })
}

fn tiled_report(plan: &Plan, side: usize, budget: Budget) -> Result<Report, NetError> {
    let tiling = Tiling::new(plan, side)?;
    let f = footprint(plan, side, budget)?;
    Ok(Report {
        height: tiling.height,
        width: tiling.width,
        tile: Some(side),
        tiles: tiling.tiles.len(),
        halo: tiling.halo,
        gpu_bytes: f.gpu_bytes,
        state_bytes: f.state_bytes,
        state_bands: f.state_bands,
        largest_binding: f.largest_binding,
        largest_binding_what: f.largest_binding_what,
        fits: f.fits,
        flops_per_step: tiled_flops(plan, &tiling)?,
        untiled_flops_per_step: plan.flops_per_step(),
    })
}

/// FLOPs of one tiled step: per window, pass 1's forward and pass 2's forward and backward, and
/// under `--normalize-gradients` with style terms the forward of the style norms' own pass (its
/// Gram backwards over owned positions are not counted, as no Gram is).
/// `Plan::flops_per_step` counts a forward and a backward of equal cost, so a forward is half.
pub fn tiled_flops(plan: &Plan, tiling: &Tiling) -> Result<u64, NetError> {
    let forwards_per_window = if plan.losses.normalize_gradients && !plan.style.is_empty() { 3 } else { 2 };
    let mut by_size: HashMap<(usize, usize), u64> = HashMap::new();
    let mut flops = 0u64;
    for tile in &tiling.tiles {
        let size = (tile.window_rows.len(), tile.window_cols.len());
        let step = match by_size.get(&size) {
            Some(&step) => step,
            None => {
                let step = window_plan(plan, size.0, size.1)?.flops_per_step();
                *by_size.entry(size).or_insert(step)
            }
        };
        // A step is a forward and a backward: pass 2's, then each further forward is half of one.
        flops += step + (forwards_per_window - 1) * (step / 2);
    }
    Ok(flops)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vgg_plan(height: usize, width: usize) -> Plan {
        vgg19_plan(height, width).unwrap()
    }

    /// VGG-19 to relu5_1 from its table: relu5_1 sees 70 px beyond its 16-px footprint
    /// (2x1 + 2x2 + 4x4 + 4x8 + 1x16), so a tile needs 5 x 16 + 70 = 150 px of halo: 160.
    #[test]
    fn vgg19_reach_and_halo_follow_from_the_table() {
        let plan = vgg_plan(400, 300);
        let reach = reaches(&plan);
        let at = |layer: &str| {
            let term = plan.content.iter().chain(&plan.style).find(|t| t.layer == layer).unwrap();
            reach[term.act]
        };
        assert_eq!(at("relu1_1"), Reach { downsampling: 1, radius: 1 });
        assert_eq!(at("relu2_1"), Reach { downsampling: 2, radius: 4 });
        assert_eq!(at("relu3_1"), Reach { downsampling: 4, radius: 10 });
        assert_eq!(at("relu4_1"), Reach { downsampling: 8, radius: 30 });
        assert_eq!(at("relu4_2"), Reach { downsampling: 8, radius: 38 });
        assert_eq!(at("relu5_1"), Reach { downsampling: 16, radius: 70 });
        assert_eq!(radius(&plan), 70);
        assert_eq!(at("relu5_1").halo_needed(), 150);
        assert_eq!(halo(&plan), 160);
    }

    #[test]
    fn tiles_partition_every_activation_and_windows_stay_on_the_grid() {
        let plan = vgg_plan(200, 300);
        let tiling = Tiling::new(&plan, 64).unwrap();
        assert_eq!((tiling.tiles_down, tiling.tiles_across, tiling.tiles.len()), (4, 5, 20));
        for (act, shape) in plan.acts.iter().enumerate() {
            let mut count = vec![0u8; shape.height * shape.width];
            for tile in &tiling.tiles {
                assert!(tile.window_rows.start.is_multiple_of(TILE_GRID) && tile.window_cols.start.is_multiple_of(16));
                let (rows, cols) = tiling.owned(tile, act);
                let (er, ec) = tiling.exact(tile, act);
                assert!(er.start <= rows.start && rows.end <= er.end && ec.start <= cols.start && cols.end <= ec.end);
                for y in rows.start..rows.end {
                    for x in cols.start..cols.end {
                        count[y * shape.width + x] += 1;
                    }
                }
            }
            assert!(count.iter().all(|&c| c == 1), "activation {act}");
        }
        assert!(Tiling::new(&plan, 40).is_err() && Tiling::new(&plan, 0).is_err());
        assert!(Tiling::with_halo(&plan, 64, 100).is_err());
    }

    #[test]
    fn untiled_when_it_fits_else_the_largest_tile_that_does() {
        let plan = vgg_plan(512, 512);
        let r = report(&plan, None, Budget::default()).unwrap();
        assert_eq!((r.tile, r.tiles, r.gpu_bytes), (None, 1, plan.gpu_bytes().total()));
        assert_eq!(r.largest_binding, plan.largest_buffer().0);
        assert_eq!(r.overhead(), 1.0);
        // 64 MiB bindings: relu1_1 of 512 x 512 (64 MiB) just fits, 1024 x 1024 must tile.
        let small = Budget { memory: 4 << 30, binding_limit: 64 << 20 };
        let big = vgg_plan(1024, 1024);
        let r = report(&big, None, small).unwrap();
        let side = r.tile.unwrap();
        assert!(r.fits && r.largest_binding <= small.binding_limit && side.is_multiple_of(16));
        let next = report(&big, Some(side + 16), small).unwrap();
        assert!(!next.fits, "{side} + 16 fits too");
        assert!(r.overhead() > 1.0);
    }

    fn vgg_plan_with(height: usize, width: usize, losses: &super::super::LossLayers) -> Plan {
        use super::super::vgg::{VGG19, VGG19_WIDTHS};
        let widths: Vec<(usize, usize)> = std::iter::once(3).chain(VGG19_WIDTHS).zip(VGG19_WIDTHS).collect();
        Plan::new(&VGG19, &widths, height, width, losses).unwrap()
    }

    /// The style norms' pass under `--normalize-gradients` is one more forward per window: 2
    /// forwards and a backward instead of a forward, a forward and a backward (4/3 the FLOPs).
    #[test]
    fn normalized_gradients_count_one_more_forward_per_window() {
        let plain = vgg_plan(400, 300);
        let losses = super::super::LossLayers { normalize_gradients: true, ..Default::default() };
        let normalized = vgg_plan_with(400, 300, &losses);
        let tiling = Tiling::new(&plain, 128).unwrap();
        let (a, b) = (tiled_flops(&plain, &tiling).unwrap(), tiled_flops(&normalized, &tiling).unwrap());
        let ratio = b as f64 / a as f64;
        assert!((ratio - 4.0 / 3.0).abs() < 1e-6, "{b} / {a} = {ratio}");
    }

    /// A masked plan's windows are built with window-sized masks: its tiled FLOPs are counted
    /// (more than the plain plan's: two regions' Grams per style layer), not refused or replaced
    /// by the untiled count.
    #[test]
    fn a_masked_plan_counts_its_tiled_flops() {
        let (height, width) = (400, 300);
        let left: Vec<f32> = (0..height * width).map(|i| if i % width < width / 2 { 1.0 } else { 0.0 }).collect();
        let right: Vec<f32> = left.iter().map(|v| 1.0 - v).collect();
        let losses = super::super::LossLayers { masks: vec![left, right], ..Default::default() };
        let masked = vgg_plan_with(height, width, &losses);
        let plain = vgg_plan(height, width);
        let tiling = Tiling::new(&masked, 128).unwrap();
        let flops = tiled_flops(&masked, &tiling).unwrap();
        assert!(flops > tiled_flops(&plain, &tiling).unwrap());
        assert!(masked.flops_per_step() > plain.flops_per_step());
        assert!(flops as f64 > 1.5 * masked.flops_per_step() as f64, "the tiling overhead is counted");
        let budget = Budget { memory: 1 << 40, ..Budget::default() };
        assert_eq!(report(&masked, Some(128), budget).unwrap().flops_per_step, flops);
    }
}
