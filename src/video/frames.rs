//! Where a clip's frames come from: a folder of images, a printf-style pattern such as
//! `clip/frame_%04d.png` (numbered like ffmpeg's image2 input), or a video file (decoded elsewhere).

use std::cmp::Ordering;
use std::ffi::OsStr;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::flo::VideoError;

/// Extensions of the image files taken as frames from a folder (compared case-insensitively).
pub const IMAGE_EXTENSIONS: [&str; 12] =
    ["png", "jpg", "jpeg", "bmp", "tif", "tiff", "webp", "gif", "tga", "pnm", "ppm", "pgm"];

/// Extensions of the files taken as videos (compared case-insensitively). A `.gif` file is a
/// video (an animation); a `.gif` inside a folder of frames is one frame.
pub const VIDEO_EXTENSIONS: [&str; 11] =
    ["mp4", "mov", "mkv", "webm", "avi", "gif", "m4v", "mpg", "mpeg", "wmv", "flv"];

/// The first frame of a pattern may have any of these numbers, as in ffmpeg (`-start_number`'s
/// default search range is 5 numbers from 0).
const PATTERN_FIRST_NUMBERS: std::ops::RangeInclusive<usize> = 0..=4;

/// The frames of a clip.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FrameSource {
    /// Image files, in frame order.
    Files(Vec<PathBuf>),
    /// A video file, to be decoded.
    Video(PathBuf),
}

/// Works out where the frames of `input` come from:
///
/// - a folder: its image files (see [`IMAGE_EXTENSIONS`]; hidden ones skipped) in natural order
///   of their names, so `frame_2.png` comes before `frame_10.png`;
/// - a path whose file name holds one `%d` or `%0Nd` (N from 1 to 9; `%%` is a literal `%`):
///   the files numbered consecutively from the first that exists among 0 to 4, up to the first
///   missing number;
/// - a file with a video extension (see [`VIDEO_EXTENSIONS`]): the video.
pub fn frame_source(input: &Path) -> Result<FrameSource, VideoError> {
    if input.is_dir() {
        return folder_frames(input).map(FrameSource::Files);
    }
    if let Some(pattern) = FramePattern::from_path(input)? {
        return pattern.frames(input).map(FrameSource::Files);
    }
    match fs::metadata(input) {
        Ok(metadata) if metadata.is_file() && has_extension(input, &VIDEO_EXTENSIONS) => {
            Ok(FrameSource::Video(input.to_path_buf()))
        }
        Ok(_) => Err(no_frames(
            input,
            format!(
                "not a video ({}), a folder of frames or a frame pattern such as frame_%04d.png",
                VIDEO_EXTENSIONS.join(", ")
            ),
        )),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Err(VideoError::NotFound { path: input.to_path_buf() }),
        Err(err) => Err(VideoError::io(input, err)),
    }
}

/// The file name of output frame `index` (1-based, like the frames of artistic-videos).
pub fn frame_output_name(index: usize) -> String {
    format!("frame_{index:04}.png")
}

fn no_frames(path: &Path, reason: impl Into<String>) -> VideoError {
    VideoError::NoFrames { path: path.to_path_buf(), reason: reason.into() }
}

/// Whether `path`'s extension is one of `extensions`, ignoring ASCII case.
fn has_extension(path: &Path, extensions: &[&str]) -> bool {
    let extension = path.extension().and_then(OsStr::to_str);
    extension.is_some_and(|extension| extensions.iter().any(|known| extension.eq_ignore_ascii_case(known)))
}

/// The image files directly in `folder` (following symbolic links), in natural order.
fn folder_frames(folder: &Path) -> Result<Vec<PathBuf>, VideoError> {
    let mut frames = Vec::new();
    for entry in fs::read_dir(folder).map_err(|err| VideoError::io(folder, err))? {
        let path = entry.map_err(|err| VideoError::io(folder, err))?.path();
        let hidden = path.file_name().is_some_and(|name| name.as_encoded_bytes().starts_with(b"."));
        if !hidden && has_extension(&path, &IMAGE_EXTENSIONS) && path.is_file() {
            frames.push(path);
        }
    }
    if frames.is_empty() {
        return Err(no_frames(folder, format!("no image files ({})", IMAGE_EXTENSIONS.join(", "))));
    }
    frames.sort_by(|a, b| natural_file_name_cmp(a, b));
    Ok(frames)
}

/// Natural order of the file names of two paths, then their raw bytes so the order is total
/// (`frame_07` and `frame_7` are equal naturally).
fn natural_file_name_cmp(a: &Path, b: &Path) -> Ordering {
    let (a, b) = (a.file_name().unwrap_or_default(), b.file_name().unwrap_or_default());
    natural_cmp(&a.to_string_lossy(), &b.to_string_lossy()).then_with(|| a.cmp(b))
}

/// Compares two strings run by run: runs of ASCII digits by their numeric value (of any length,
/// leading zeros ignored), other runs as text. `frame_2` < `frame_10`.
fn natural_cmp(a: &str, b: &str) -> Ordering {
    let (mut a, mut b) = (a, b);
    loop {
        if a.is_empty() || b.is_empty() {
            // Equal when both are used up, else the one used up first (a prefix) sorts first.
            return a.len().cmp(&b.len());
        }
        let (run_a, rest_a) = split_run(a);
        let (run_b, rest_b) = split_run(b);
        let order = match (is_digits(run_a), is_digits(run_b)) {
            (true, true) => numeric_cmp(run_a, run_b),
            _ => run_a.cmp(run_b),
        };
        if order != Ordering::Equal {
            return order;
        }
        (a, b) = (rest_a, rest_b);
    }
}

/// Splits off the leading run of `text`: all its leading ASCII digits, or everything up to the
/// first digit. `text` must not be empty.
fn split_run(text: &str) -> (&str, &str) {
    let digits = text.as_bytes()[0].is_ascii_digit();
    let end = text.bytes().position(|byte| byte.is_ascii_digit() != digits).unwrap_or(text.len());
    text.split_at(end)
}

fn is_digits(run: &str) -> bool {
    run.as_bytes()[0].is_ascii_digit()
}

/// Compares two digit runs as numbers without parsing them, so any length works.
fn numeric_cmp(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.trim_start_matches('0'), b.trim_start_matches('0'));
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

/// A printf-style frame file name: `prefix`, the frame number zero-padded to `width` digits
/// (0: no padding), `suffix`.
#[derive(Debug, PartialEq)]
struct FramePattern {
    prefix: String,
    width: usize,
    suffix: String,
}

impl FramePattern {
    /// The pattern in `path`'s file name, `None` when the name has no `%d` or `%0Nd` (the path is
    /// then taken literally, so a file named `100%.mp4` is fine).
    fn from_path(path: &Path) -> Result<Option<FramePattern>, VideoError> {
        let Some(name) = path.file_name().and_then(OsStr::to_str) else {
            return Ok(None);
        };
        FramePattern::parse(name).map_err(|reason| no_frames(path, reason))
    }

    /// Parses a file name; an error when it holds a conversion but not exactly one usable one.
    fn parse(name: &str) -> Result<Option<FramePattern>, String> {
        let mut texts = [String::new(), String::new()];
        let (mut conversions, mut width, mut stray) = (0, 0, false);
        let mut rest = name;
        while let Some(at) = rest.find('%') {
            texts[conversions.min(1)].push_str(&rest[..at]);
            let after = &rest[at + 1..];
            if let Some(tail) = after.strip_prefix('%') {
                texts[conversions.min(1)].push('%');
                rest = tail;
            } else if let Some((digits, length)) = conversion(after) {
                (conversions, width) = (conversions + 1, digits);
                rest = &after[length..];
            } else {
                stray = true;
                texts[conversions.min(1)].push('%');
                rest = after;
            }
        }
        texts[conversions.min(1)].push_str(rest);
        match conversions {
            0 => Ok(None),
            1 if stray => Err("a % other than %d, %0Nd or %% in a frame pattern (write %% for a literal %)".into()),
            1 => {
                let [prefix, suffix] = texts;
                Ok(Some(FramePattern { prefix, width, suffix }))
            }
            _ => Err("more than one %d in a frame pattern (write %% for a literal %)".into()),
        }
    }

    /// The file name of frame `number`.
    fn name(&self, number: usize) -> String {
        format!("{}{number:0width$}{}", self.prefix, self.suffix, width = self.width)
    }

    /// The existing frames of the pattern `input`: from the first number among 0 to 4 that names
    /// a file, up to the first number that does not.
    fn frames(&self, input: &Path) -> Result<Vec<PathBuf>, VideoError> {
        let folder = input.parent().unwrap_or(Path::new(""));
        let path = |number: usize| folder.join(self.name(number));
        let Some(first) = PATTERN_FIRST_NUMBERS.into_iter().find(|&number| path(number).is_file()) else {
            let (low, high) = (PATTERN_FIRST_NUMBERS.start(), PATTERN_FIRST_NUMBERS.end());
            return Err(no_frames(
                input,
                format!("no frames match this pattern (the first must be numbered {low} to {high})"),
            ));
        };
        Ok((first..).map(path).take_while(|frame| frame.is_file()).collect())
    }
}

/// The zero-padding width and length of a conversion at the start of `after` (the text after a
/// `%`): `d` is unpadded, `0Nd` pads to N digits (N from 1 to 9).
fn conversion(after: &str) -> Option<(usize, usize)> {
    match after.as_bytes() {
        [b'd', ..] => Some((0, 1)),
        [b'0', digit @ b'1'..=b'9', b'd', ..] => Some((usize::from(digit - b'0'), 3)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(folder: &Path, names: &[&str]) {
        for name in names {
            fs::write(folder.join(name), b"x").unwrap();
        }
    }

    fn names(frames: &[PathBuf]) -> Vec<String> {
        frames.iter().map(|path| path.file_name().unwrap().to_string_lossy().into_owned()).collect()
    }

    fn files(input: &Path) -> Vec<PathBuf> {
        match frame_source(input).unwrap() {
            FrameSource::Files(files) => files,
            other => panic!("expected files, got {other:?}"),
        }
    }

    /// The message of the error, checked to be one line that starts with the input's path.
    fn error_message(input: &Path) -> String {
        let err = frame_source(input).unwrap_err();
        assert_eq!(err.path(), input);
        let message = err.to_string();
        assert!(!message.contains('\n'), "not one line: {message}");
        assert!(message.starts_with(&format!("{}: ", input.display())), "{message}");
        message
    }

    #[test]
    fn natural_order_compares_digit_runs_as_numbers() {
        let mut names =
            vec!["frame_10.png", "frame_2.png", "frame_1.png", "frame_100.png", "frame_9.png", "frame_02.png"];
        names.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(
            names,
            ["frame_1.png", "frame_2.png", "frame_02.png", "frame_9.png", "frame_10.png", "frame_100.png"]
        );
        assert_eq!(natural_cmp("a", "a1"), Ordering::Less);
        assert_eq!(natural_cmp("a1", "a"), Ordering::Greater);
        assert_eq!(natural_cmp("", ""), Ordering::Equal);
        assert_eq!(natural_cmp("", "a"), Ordering::Less);
        assert_eq!(natural_cmp("x9y", "x10a"), Ordering::Less);
        assert_eq!(natural_cmp("shot2_frame10", "shot10_frame2"), Ordering::Less);
        assert_eq!(natural_cmp("f007", "f7"), Ordering::Equal);
        assert_eq!(natural_cmp("b1", "a2"), Ordering::Greater);
        // Longer than any integer type.
        assert_eq!(natural_cmp("f99999999999999999999999", "f100000000000000000000000"), Ordering::Less);
        assert_eq!(natural_cmp("é2", "é10"), Ordering::Less);
    }

    #[test]
    fn a_folder_gives_its_image_files_in_natural_order() {
        let dir = tempfile::tempdir().unwrap();
        touch(
            dir.path(),
            &["frame_10.png", "frame_2.png", "frame_1.png", "frame_3.JPG", "frame_11.Jpeg", "frame_4.gif"],
        );
        touch(dir.path(), &[".frame_0.png", "notes.txt", "frame_5", "clip.mp4", "frame_6.png.bak"]);
        fs::create_dir(dir.path().join("frame_7.png")).unwrap();
        let frames = files(dir.path());
        assert_eq!(
            names(&frames),
            ["frame_1.png", "frame_2.png", "frame_3.JPG", "frame_4.gif", "frame_10.png", "frame_11.Jpeg"]
        );
        assert!(frames.iter().all(|frame| frame.parent() == Some(dir.path())));
    }

    #[test]
    fn every_image_extension_is_taken_from_a_folder() {
        let dir = tempfile::tempdir().unwrap();
        let names: Vec<String> = IMAGE_EXTENSIONS.iter().enumerate().map(|(i, ext)| format!("f{i}.{ext}")).collect();
        touch(dir.path(), &names.iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(self::names(&files(dir.path())), names);
    }

    #[cfg(unix)]
    #[test]
    fn a_folder_follows_links_to_files_but_not_dangling_ones() {
        let dir = tempfile::tempdir().unwrap();
        touch(dir.path(), &["real.png"]);
        std::os::unix::fs::symlink(dir.path().join("real.png"), dir.path().join("link.png")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("gone.png"), dir.path().join("dangling.png")).unwrap();
        assert_eq!(names(&files(dir.path())), ["link.png", "real.png"]);
    }

    #[test]
    fn a_folder_without_images_is_one_line_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        touch(dir.path(), &["clip.mp4", ".hidden.png", "readme.md"]);
        let message = error_message(dir.path());
        assert!(
            message.ends_with(": no image files (png, jpg, jpeg, bmp, tif, tiff, webp, gif, tga, pnm, ppm, pgm)"),
            "{message}"
        );
        assert!(matches!(frame_source(dir.path()), Err(VideoError::NoFrames { .. })));
    }

    #[test]
    fn a_pattern_counts_up_from_the_first_existing_number() {
        let dir = tempfile::tempdir().unwrap();
        touch(dir.path(), &["frame_0001.png", "frame_0002.png", "frame_0003.png", "frame_0005.png"]);
        let frames = files(&dir.path().join("frame_%04d.png"));
        assert_eq!(names(&frames), ["frame_0001.png", "frame_0002.png", "frame_0003.png"]);
        assert_eq!(frames[0], dir.path().join("frame_0001.png"));
    }

    #[test]
    fn a_pattern_may_start_at_zero_to_four_but_not_later() {
        for first in 0..=4 {
            let dir = tempfile::tempdir().unwrap();
            touch(dir.path(), &[&format!("f{first}.png"), &format!("f{}.png", first + 1)]);
            let frames = files(&dir.path().join("f%d.png"));
            assert_eq!(names(&frames), [format!("f{first}.png"), format!("f{}.png", first + 1)]);
        }
        let dir = tempfile::tempdir().unwrap();
        touch(dir.path(), &["f5.png", "f6.png"]);
        let pattern = dir.path().join("f%d.png");
        let message = error_message(&pattern);
        assert!(message.ends_with(": no frames match this pattern (the first must be numbered 0 to 4)"), "{message}");
    }

    #[test]
    fn an_unpadded_pattern_crosses_digit_counts_and_a_padded_one_overflows_its_width() {
        let dir = tempfile::tempdir().unwrap();
        let many: Vec<String> = (1..=12).map(|number| format!("shot{number}.jpg")).collect();
        touch(dir.path(), &many.iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(names(&files(&dir.path().join("shot%d.jpg"))), many);

        let dir = tempfile::tempdir().unwrap();
        touch(dir.path(), &["p_08.png", "p_09.png", "p_10.png", "p_100.png"]);
        touch(dir.path(), &["p_00.png", "p_01.png", "p_02.png", "p_03.png", "p_04.png", "p_05.png", "p_06.png"]);
        touch(dir.path(), &["p_07.png"]);
        let frames = files(&dir.path().join("p_%02d.png"));
        assert_eq!(frames.len(), 11);
        assert_eq!(names(&frames)[10], "p_10.png");
    }

    #[test]
    fn a_double_percent_is_a_literal_percent() {
        let dir = tempfile::tempdir().unwrap();
        touch(dir.path(), &["100%_0.png", "100%_1.png"]);
        assert_eq!(names(&files(&dir.path().join("100%%_%d.png"))), ["100%_0.png", "100%_1.png"]);
        touch(dir.path(), &["a%%0.png"]);
        assert_eq!(names(&files(&dir.path().join("a%%%%%d.png"))), ["a%%0.png"]);
    }

    #[test]
    fn only_the_file_name_is_a_pattern() {
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join("take%d");
        fs::create_dir(&folder).unwrap();
        touch(&folder, &["f_1.png", "f_2.png"]);
        assert_eq!(names(&files(&folder.join("f_%d.png"))), ["f_1.png", "f_2.png"]);
        // A folder whose own name looks like a pattern is a folder.
        assert_eq!(names(&files(&folder)), ["f_1.png", "f_2.png"]);
    }

    #[test]
    fn refuses_patterns_with_two_conversions_or_a_stray_percent() {
        let dir = tempfile::tempdir().unwrap();
        let message = error_message(&dir.path().join("f_%d_%04d.png"));
        assert!(message.ends_with(": more than one %d in a frame pattern (write %% for a literal %)"), "{message}");
        for bad in ["f_%s_%d.png", "f_%4d_%d.png", "f_%010d.png%d", "f_%00d%d.png"] {
            let message = error_message(&dir.path().join(bad));
            assert!(message.contains("a % other than %d, %0Nd or %% in a frame pattern"), "{message}");
        }
    }

    #[test]
    fn parses_conversions() {
        let parse = |name: &str| FramePattern::parse(name).unwrap();
        assert_eq!(parse("f_%d.png"), Some(FramePattern { prefix: "f_".into(), width: 0, suffix: ".png".into() }));
        assert_eq!(parse("%09d"), Some(FramePattern { prefix: "".into(), width: 9, suffix: "".into() }));
        assert_eq!(parse("a%%b%03dc%%"), Some(FramePattern { prefix: "a%b".into(), width: 3, suffix: "c%".into() }));
        // No conversion: the path is literal (and any % in it stays as written).
        assert_eq!(parse("100%.mp4"), None);
        assert_eq!(parse("50%%.mp4"), None);
        assert_eq!(parse("f_%4d.png"), None);
        assert_eq!(parse("plain.png"), None);
        let pattern = parse("frame_%04d.png").unwrap();
        assert_eq!(pattern.name(7), "frame_0007.png");
        assert_eq!(pattern.name(12345), "frame_12345.png");
        assert_eq!(parse("%d").unwrap().name(0), "0");
    }

    #[test]
    fn a_missing_pattern_folder_matches_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let pattern = dir.path().join("nowhere").join("frame_%04d.png");
        assert!(error_message(&pattern).contains("no frames match this pattern"));
    }

    #[test]
    fn a_video_file_is_a_video_whatever_the_case_of_its_extension() {
        let dir = tempfile::tempdir().unwrap();
        for extension in VIDEO_EXTENSIONS {
            for name in [format!("clip.{extension}"), format!("CLIP.{}", extension.to_uppercase())] {
                let path = dir.path().join(&name);
                fs::write(&path, b"x").unwrap();
                assert_eq!(frame_source(&path).unwrap(), FrameSource::Video(path.clone()), "{name}");
            }
        }
    }

    #[test]
    fn a_folder_named_like_a_video_is_a_folder() {
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join("clip.mp4");
        fs::create_dir(&folder).unwrap();
        touch(&folder, &["1.png"]);
        assert_eq!(names(&files(&folder)), ["1.png"]);
    }

    #[test]
    fn a_missing_path_is_no_such_file_or_folder() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["clip.mp4", "frames", "still.png"] {
            let path = dir.path().join(name);
            assert_eq!(error_message(&path), format!("{}: no such file or folder", path.display()));
            assert!(matches!(frame_source(&path), Err(VideoError::NotFound { .. })));
        }
        assert_eq!(
            frame_source(Path::new("no/such/clip.mov")).unwrap_err().to_string(),
            "no/such/clip.mov: no such file or folder"
        );
    }

    #[test]
    fn another_existing_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        touch(dir.path(), &["still.png", "notes.txt"]);
        for name in ["still.png", "notes.txt"] {
            let message = error_message(&dir.path().join(name));
            assert!(
                message.contains(": not a video (mp4, mov, mkv, webm, avi, gif, m4v, mpg, mpeg, wmv, flv)"),
                "{message}"
            );
            assert!(message.ends_with("a folder of frames or a frame pattern such as frame_%04d.png"), "{message}");
        }
    }

    #[test]
    fn output_names_are_padded_to_four_digits() {
        assert_eq!(frame_output_name(1), "frame_0001.png");
        assert_eq!(frame_output_name(42), "frame_0042.png");
        assert_eq!(frame_output_name(9999), "frame_9999.png");
        assert_eq!(frame_output_name(12345), "frame_12345.png");
    }
}
