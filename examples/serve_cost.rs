//! What `--serve` adds to a run, piece by piece: the time of one step (`step` + `sync`), of one
//! image readback (`StyleTransfer::image`), of one loss readback and of one PNG encoding (done in
//! the server's request thread), each the median of N tries, so the figure holds on a loaded
//! machine. `--serve` adds at most one image readback a second and about four loss readbacks.
//!
//! cargo run --release --example serve_cost -- WEIGHTS SIZE [N]

use std::time::Instant;

use stylize::image_io::{self, Image};
use stylize::{Options, StyleTransfer};

fn median_ms(n: usize, mut f: impl FnMut()) -> f64 {
    let mut times: Vec<f64> = (0..n)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[n / 2]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let weights = args.get(1).map(String::as_str).unwrap_or("random");
    let size: u32 = args.get(2).map_or(Ok(64), |s| s.parse())?;
    let n: usize = args.get(3).map_or(Ok(15), |s| s.parse())?;
    let options = Options { size, ..Options::default() };
    let weights = stylize::load_network_weights(Default::default(), Some(weights), 0, &mut |_| {})?;
    let mut rng = stylize::rng::Rng::new(1);
    let noise = |rng: &mut stylize::rng::Rng| {
        Image::new(size, size, (0..3 * (size * size) as usize).map(|_| rng.uniform() as f32).collect())
    };
    let (content, style) = (noise(&mut rng), noise(&mut rng));
    let ctx = stylize::gpu::Context::new(&options.context_options())?;
    let adapter = ctx.adapter.name.clone();
    let mut transfer = StyleTransfer::new(ctx, &weights, &content, &style, &content, &options)?;
    for _ in 0..2 {
        transfer.step();
        transfer.sync()?;
    }
    let step = median_ms(n, || {
        transfer.step();
        transfer.sync().unwrap();
    });
    let image_readback = median_ms(n, || drop(transfer.image().unwrap()));
    let losses_readback = median_ms(n, || drop(transfer.losses().unwrap()));
    let image = transfer.image()?;
    let encode = median_ms(n, || {
        let mut bytes = std::io::Cursor::new(Vec::new());
        image_io::to_rgb8(&image).write_to(&mut bytes, image::ImageFormat::Png).unwrap();
    });
    println!("adapter {adapter}, {size}x{size}, median of {n}");
    println!("step (step + sync)   {step:9.2} ms");
    println!("image readback       {image_readback:9.2} ms");
    println!("losses readback      {losses_readback:9.2} ms");
    println!("PNG encoding         {encode:9.2} ms (in the request's thread)");
    let per_second = image_readback + 4.0 * losses_readback;
    println!("--serve's readbacks: {per_second:.2} ms per second of run ({:.2} %)", per_second / 10.0);
    Ok(())
}
