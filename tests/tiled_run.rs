//! Runs through the CLI with tiles: `--tile N` writes what an untiled run writes (to a level of
//! 8-bit rounding), says how it ran, `--tile auto` tiles when --memory-budget is too small for
//! the untiled step, and a tile side off the 16-px grid is a usage error.

mod common;

use common::*;

struct Fixture {
    dir: tempfile::TempDir,
    size: u32,
}

impl Fixture {
    fn new(width: u32, height: u32) -> Self {
        let dir = tempfile::tempdir().unwrap();
        random_png(&dir.path().join("content.png"), width, height, 1);
        random_png(&dir.path().join("style.png"), width, height, 2);
        Self { dir, size: width.max(height) }
    }

    fn path(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join(name)
    }

    /// A run of the tiny network (3 steps unless `extra` says) writing `output`, with `extra` arguments.
    fn run(&self, output: &str, extra: &[&str]) -> std::process::Output {
        let mut cmd = stylize();
        cmd.arg("--content").arg(self.path("content.png")).arg("--style").arg(self.path("style.png"));
        cmd.arg("--weights").arg(tiny_weights()).args(["--size", &self.size.to_string()]);
        if !extra.contains(&"--iterations") {
            cmd.args(["--iterations", "3"]);
        }
        cmd.arg("-o").arg(self.path(output)).args(extra);
        cmd.output().unwrap()
    }
}

fn pixels(path: &std::path::Path) -> Vec<u8> {
    image::open(path).unwrap().to_rgb8().into_raw()
}

#[test]
fn tiled_run_writes_what_an_untiled_run_writes() {
    if gpu_or_skip("tiled_run_writes_what_an_untiled_run_writes").is_none() {
        return;
    }
    let fixture = Fixture::new(160, 120);
    let untiled = fixture.run("untiled.png", &["--tile", "off"]);
    assert!(untiled.status.success(), "{}", String::from_utf8_lossy(&untiled.stderr));
    assert!(!String::from_utf8_lossy(&untiled.stderr).contains("tiles of"));
    let tiled = fixture.run("tiled.png", &["--tile", "64"]);
    let stderr = String::from_utf8_lossy(&tiled.stderr);
    assert!(tiled.status.success(), "{stderr}");
    assert!(stderr.contains("stylize: 160x120 in 6 tiles of 64 px (halo 160 px)"), "{stderr}");
    let (a, b) = (pixels(&fixture.path("untiled.png")), pixels(&fixture.path("tiled.png")));
    assert_eq!(a.len(), b.len());
    let differing = a.iter().zip(&b).filter(|(x, y)| x != y).count();
    let largest = a.iter().zip(&b).map(|(&x, &y)| (x as i32 - y as i32).abs()).max().unwrap();
    eprintln!("tiled vs untiled: {differing} of {} samples differ, by at most {largest}", a.len());
    assert!(largest <= 1, "a sample differs by {largest} levels");
    assert!(differing * 1000 <= a.len(), "{differing} of {} samples differ", a.len());
    // And the images are not trivially alike: the run moved the image away from its start.
    let start = pixels(&fixture.path("content.png"));
    assert!(start.iter().zip(&a).filter(|(x, y)| x != y).count() * 10 > a.len(), "the run changed nothing");
}

/// The budget (GiB) that makes `--tile auto` tile a `width` x `height` run of the tiny network:
/// 90 % of what its untiled step needs, checked to be enough for some tile (the image-sized
/// state a tiled run keeps, 7 arrays against 5, is most of what the tiny network needs).
fn budget_that_tiles(width: usize, height: usize) -> f64 {
    use stylize::net::tiling::{Budget, GIB, report};
    let weights = stylize::weights::load_vgg19(&tiny_weights()).unwrap();
    let widths: Vec<(usize, usize)> = weights.convs.iter().map(|w| (w.in_channels, w.out_channels)).collect();
    let plan = stylize::net::Plan::new(&stylize::net::vgg::VGG19, &widths, height, width, &Default::default()).unwrap();
    let roomy = Budget { memory: 1 << 40, ..Budget::default() };
    let untiled = report(&plan, None, roomy).unwrap();
    assert_eq!(untiled.tile, None);
    let memory = untiled.total_bytes() * 9 / 10;
    let tiled = report(&plan, None, Budget { memory, ..roomy }).unwrap();
    assert!(tiled.tile.is_some() && tiled.fits, "{tiled:?}");
    memory as f64 / GIB as f64
}

#[test]
fn tile_auto_tiles_when_the_memory_budget_is_too_small() {
    if gpu_or_skip("tile_auto_tiles_when_the_memory_budget_is_too_small").is_none() {
        return;
    }
    let fixture = Fixture::new(1024, 768);
    let budget = format!("{:.9}", budget_that_tiles(1024, 768));
    let run = fixture.run("auto.png", &["--memory-budget", &budget]);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    assert!(stderr.contains("stylize: 1024x768 in ") && stderr.contains(" tiles of "), "{stderr}");
    // With the default budget the same run is untiled.
    let run = fixture.run("default.png", &[]);
    assert!(run.status.success() && !String::from_utf8_lossy(&run.stderr).contains("tiles of"));
}

#[test]
fn a_tile_side_off_the_grid_is_a_usage_error() {
    let fixture = Fixture::new(48, 32);
    let run = fixture.run("bad.png", &["--tile", "40"]);
    assert_eq!(run.status.code(), Some(2), "{}", String::from_utf8_lossy(&run.stderr));
    assert!(String::from_utf8_lossy(&run.stderr).contains("multiple of 16"));
}

/// The other controls over tiles: L-BFGS, the iterate average, two blended styles and two scales
/// write what the untiled run writes (within 8-bit rounding); and a tiled run checkpointed after
/// 2 steps and resumed to 4 writes the same bytes as 4 straight tiled steps.
///
/// The second scale takes one step: there the upsampled image's style loss is 4000x the first
/// scale's, L-BFGS's first step (1/|g|_1) is so small that the next one's curvature pair is
/// mostly f32 rounding, and that step alone puts 2-3 levels between any two summation orders
/// (measured: 0.004 levels with one step there, 2.2 with two, tiled or not). The first scale's
/// three steps exercise the curvature pairs over tiles.
#[test]
fn controls_and_resume_work_over_tiles() {
    if gpu_or_skip("controls_and_resume_work_over_tiles").is_none() {
        return;
    }
    let fixture = Fixture::new(160, 112);
    random_png(&fixture.path("style2.png"), 90, 70, 3);
    let style2 = fixture.path("style2.png");
    let style2 = style2.to_str().unwrap();
    let controls = [
        "--optimizer",
        "lbfgs",
        "--average-decay",
        "0.5",
        "--scales",
        "2",
        "--initial-iterations",
        "3",
        "--iterations",
        "1",
        "--style",
        style2,
    ];
    for (name, tile) in [("controls_off.png", "off"), ("controls_tiled.png", "48")] {
        let run = fixture.run(name, &[&controls[..], &["--tile", tile]].concat());
        assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    }
    let (a, b) = (pixels(&fixture.path("controls_off.png")), pixels(&fixture.path("controls_tiled.png")));
    let largest = a.iter().zip(&b).map(|(&x, &y)| (x as i32 - y as i32).abs()).max().unwrap();
    eprintln!("controls, tiled vs untiled: at most {largest} levels apart");
    assert!(largest <= 1, "a sample differs by {largest} levels");

    let checkpoint = fixture.path("run.ckpt");
    let checkpoint = checkpoint.to_str().unwrap();
    let straight = fixture.run("straight.png", &["--tile", "48", "--iterations", "4"]);
    assert!(straight.status.success(), "{}", String::from_utf8_lossy(&straight.stderr));
    let first = fixture.run("resumed.png", &["--tile", "48", "--iterations", "2", "--checkpoint", checkpoint]);
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    let resumed = fixture.run("resumed.png", &["--tile", "48", "--iterations", "4", "--resume", checkpoint]);
    assert!(resumed.status.success(), "{}", String::from_utf8_lossy(&resumed.stderr));
    let (straight, resumed) = (fs_read(&fixture.path("straight.png")), fs_read(&fixture.path("resumed.png")));
    assert!(straight == resumed, "a resumed tiled run differs from a straight one");
}

fn fs_read(path: &std::path::Path) -> Vec<u8> {
    std::fs::read(path).unwrap()
}
