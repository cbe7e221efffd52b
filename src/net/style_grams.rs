//! Style targets from style images other than one at the content's size: a blend of several
//! images' Grams (each at its own size), and one Gram per region of a masked plan (with the W2
//! loss, their row means too).

use super::{ConvLayerWeights, Execute, Executor, LossLayers, NetError, Plan};
use crate::gpu::Context;
use crate::image_io::Image;

/// The blended style Grams of `styles` for `target`: per style layer `sum_i blend_i * G_i * N / N_i`,
/// where `G_i` is style image `i`'s Gram from a forward pass at its own size, `N_i` its number of
/// positions at that layer and `N` the target's (so that images of other sizes compare like
/// Gram / N). `blend` holds one weight per image, already normalized (`transfer::normalized_blend`).
pub fn blended(
    ctx: &Context,
    weights: &[ConvLayerWeights],
    target: &Plan,
    styles: &[Image],
    blend: &[f64],
) -> Result<Vec<Vec<f32>>, NetError> {
    Ok(blended_moments(ctx, weights, target, styles, blend)?.grams)
}

/// Style targets as moments: per style term its Gram (`S N`) and, for W2 plans, its row means.
pub struct StyleMoments {
    pub grams: Vec<Vec<f32>>,
    /// Empty for Gram losses.
    pub means: Vec<Vec<f32>>,
}

/// As `blended`, with the blended row means of the features too (`sum_i blend_i * mu_i`) for a
/// plan with `StyleLoss::W2` (none otherwise): with the Grams' `N / N_i` this blends the second
/// raw moments `S = G / N` and the means linearly, as crowsonkb's tool blends its styles.
pub fn blended_moments(
    ctx: &Context,
    weights: &[ConvLayerWeights],
    target: &Plan,
    styles: &[Image],
    blend: &[f64],
) -> Result<StyleMoments, NetError> {
    if styles.is_empty() {
        return Err(NetError::BadSize("no style image".into()));
    }
    if blend.len() != styles.len() {
        return Err(NetError::BadSize(format!("{} blend weights for {} style images", blend.len(), styles.len())));
    }
    let widths: Vec<(usize, usize)> = weights.iter().map(|w| (w.in_channels, w.out_channels)).collect();
    // Only the style layers, unmasked: no content target, no total variation.
    let losses = LossLayers { content: Vec::new(), tv_weight: 0.0, masks: Vec::new(), ..target.losses.clone() };
    let positions = |plan: &Plan, act: usize| (plan.acts[act].height * plan.acts[act].width) as f64;
    let mut sums: Vec<Vec<f64>> = target.style.iter().map(|t| vec![0.0; target.acts[t.act].channels.pow(2)]).collect();
    let w2 = target.losses.style_loss == super::StyleLoss::W2;
    let mut mean_sums: Vec<Vec<f64>> =
        target.style.iter().filter(|_| w2).map(|t| vec![0.0; target.acts[t.act].channels]).collect();
    for (index, (style, &b)) in styles.iter().zip(blend).enumerate() {
        if b == 0.0 {
            continue;
        }
        // A style smaller than the content (another size, or fitted to a scale) is named.
        let plan =
            Plan::new(&target.layers, &widths, style.height as usize, style.width as usize, &losses).map_err(|e| {
                match e {
                    NetError::BadSize(why) => NetError::BadSize(format!("style image {}: {why}", index + 1)),
                    e => e,
                }
            })?;
        let executor = Executor::new(ctx, plan, weights)?;
        let grams = executor.style_grams(ctx, &style.data)?;
        for (((sum, gram), term), own) in sums.iter_mut().zip(&grams).zip(&target.style).zip(&executor.plan.style) {
            let factor = b * positions(target, term.act) / positions(&executor.plan, own.act);
            sum.iter_mut().zip(gram).for_each(|(s, &g)| *s += factor * g as f64);
        }
        for (sum, means) in mean_sums.iter_mut().zip(executor.read_style_means(ctx)?) {
            sum.iter_mut().zip(means).for_each(|(s, m)| *s += b * m as f64);
        }
    }
    let narrow = |v: Vec<Vec<f64>>| v.into_iter().map(|g| g.into_iter().map(|v| v as f32).collect()).collect();
    Ok(StyleMoments { grams: narrow(sums), means: narrow(mean_sums) })
}

/// The style targets of a masked plan (`LossLayers::masks`), one per style term: the plain Gram
/// of the term's region's style image, as `blended` computes it for that image alone (so style
/// images of other sizes compare like Gram / N).
pub fn per_region(
    ctx: &Context,
    weights: &[ConvLayerWeights],
    target: &Plan,
    styles: &[Image],
) -> Result<Vec<Vec<f32>>, NetError> {
    Ok(per_region_moments(ctx, weights, target, styles)?.grams)
}

/// As `per_region`, with the row means of the term's region's style image too for a plan with
/// `StyleLoss::W2` (none otherwise): each masked W2 term compares its region's weighted moments
/// with its style image's plain ones (`ops::w2`).
pub fn per_region_moments(
    ctx: &Context,
    weights: &[ConvLayerWeights],
    target: &Plan,
    styles: &[Image],
) -> Result<StyleMoments, NetError> {
    let regions = target.losses.masks.len();
    if styles.len() != regions {
        return Err(NetError::BadSize(format!("{} style images for {regions} masks", styles.len())));
    }
    let image = target.acts[0];
    let unmasked = LossLayers { masks: Vec::new(), ..target.losses.clone() };
    let plain = Plan::new(&target.layers, &target.conv_widths, image.height, image.width, &unmasked)?;
    let mut per_style = Vec::new();
    for style in styles {
        per_style.push(blended_moments(ctx, weights, &plain, std::slice::from_ref(style), &[1.0])?);
    }
    // Term by term: the moments of its layer (the plain plan has one term per layer) of its region's style.
    let of_term = |term: &super::LossTerm| {
        let layer = target.losses.style.iter().position(|(name, _)| *name == term.layer).expect("a style layer");
        (term.mask.as_ref().map_or(0, |m| m.region), layer)
    };
    let terms: Vec<(usize, usize)> = target.style.iter().map(of_term).collect();
    let grams = terms.iter().map(|&(region, layer)| per_style[region].grams[layer].clone()).collect();
    let means = terms
        .iter()
        .filter(|_| target.losses.style_loss == super::StyleLoss::W2)
        .map(|&(region, layer)| per_style[region].means[layer].clone())
        .collect();
    Ok(StyleMoments { grams, means })
}
