//! Video files through the `ffmpeg` and `ffprobe` programs the user already has, run as
//! processes over pipes (no bindings to their libraries): a clip is probed (size, frame rate,
//! audio), decoded to raw RGB frames over stdout, and the stylized frames are encoded back with
//! the input's audio track.

use std::ffi::OsString;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::flo::VideoError;
use crate::image_io::{self, Image};

/// What `ffprobe` says of a video file.
#[derive(Clone, Debug, PartialEq)]
pub struct VideoInfo {
    pub width: u32,
    pub height: u32,
    /// Frames per second as a fraction (`r_frame_rate`), e.g. "30000/1001".
    pub frame_rate: String,
    pub has_audio: bool,
}

/// The program `name` (`ffmpeg`, `ffprobe`): `STYLIZE_FFMPEG_DIR/name` when that is set (tests,
/// or a build outside PATH), else `name` on PATH.
fn program(name: &str) -> PathBuf {
    match std::env::var_os("STYLIZE_FFMPEG_DIR") {
        Some(dir) => Path::new(&dir).join(name),
        None => PathBuf::from(name),
    }
}

fn invalid(path: &Path, reason: impl Into<String>) -> VideoError {
    VideoError::Invalid { path: path.to_path_buf(), reason: reason.into() }
}

/// Why `name` could not be started: a missing program is named with what to do instead.
fn not_started(name: &str, about: &Path, e: std::io::Error) -> VideoError {
    match e.kind() {
        std::io::ErrorKind::NotFound => invalid(
            about,
            format!(
                "{name} is not on PATH: install ffmpeg, or pass the frames as a folder (ffmpeg -i CLIP frames/%04d.png elsewhere)"
            ),
        ),
        _ => invalid(about, format!("cannot run {name}: {e}")),
    }
}

/// Runs `name args`, its output captured.
fn run(name: &str, args: &[OsString], about: &Path) -> Result<std::process::Output, VideoError> {
    let output = Command::new(program(name))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| not_started(name, about, e))?;
    if !output.status.success() {
        return Err(invalid(about, format!("{name} failed: {}", last_line(&output.stderr))));
    }
    Ok(output)
}

/// The last non-blank line of a program's stderr, or a placeholder.
fn last_line(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    text.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("no message").trim().to_string()
}

/// The first video stream's size and frame rate, and whether the file has an audio stream.
pub fn probe(path: &Path) -> Result<VideoInfo, VideoError> {
    let args: Vec<OsString> = [
        "-v",
        "error",
        "-show_entries",
        "stream=codec_type,width,height,r_frame_rate",
        "-of",
        "default=noprint_wrappers=1",
    ]
    .iter()
    .map(OsString::from)
    .chain([path.as_os_str().to_owned()])
    .collect();
    let output = run("ffprobe", &args, path)?;
    parse_probe(&String::from_utf8_lossy(&output.stdout)).ok_or_else(|| invalid(path, "ffprobe found no video stream"))
}

/// `ffprobe`'s `key=value` lines, one stream after another (each starting at `codec_type`).
fn parse_probe(text: &str) -> Option<VideoInfo> {
    let mut streams: Vec<Vec<(&str, &str)>> = Vec::new();
    for (key, value) in text.lines().filter_map(|l| l.trim().split_once('=')) {
        if key == "codec_type" || streams.is_empty() {
            streams.push(Vec::new());
        }
        streams.last_mut().expect("a stream").push((key, value));
    }
    let field = |stream: &[(&str, &str)], key: &str| stream.iter().find(|(k, _)| *k == key).map(|(_, v)| v.to_string());
    let has_audio = streams.iter().any(|s| field(s, "codec_type").as_deref() == Some("audio"));
    let video = streams.iter().find(|s| field(s, "codec_type").as_deref() == Some("video"))?;
    let width = field(video, "width")?.parse().ok().filter(|&w| w > 0)?;
    let height = field(video, "height")?.parse().ok().filter(|&h| h > 0)?;
    let frame_rate = field(video, "r_frame_rate").filter(|r| r.contains('/') && !r.starts_with('0'))?;
    Some(VideoInfo { width, height, frame_rate, has_audio })
}

/// Decodes `path`'s first video stream into `dir` as `0001.png`, `0002.png`, ... (raw RGB over
/// ffmpeg's stdout, each frame written atomically); returns the frames in order.
pub fn decode(path: &Path, info: &VideoInfo, dir: &Path) -> Result<Vec<PathBuf>, VideoError> {
    std::fs::create_dir_all(dir).map_err(|e| VideoError::Io { path: dir.into(), source: e })?;
    let args: Vec<OsString> = ["-v", "error", "-nostdin", "-i"]
        .iter()
        .map(OsString::from)
        .chain([path.as_os_str().to_owned()])
        .chain(["-map", "0:v:0", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"].iter().map(OsString::from))
        .collect();
    let mut child = Command::new(program("ffmpeg"))
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| not_started("ffmpeg", path, e))?;
    let mut stdout = child.stdout.take().expect("piped");
    let frame_bytes = (info.width * info.height * 3) as usize;
    let mut buffer = vec![0u8; frame_bytes];
    let mut frames = Vec::new();
    loop {
        match read_frame(&mut stdout, &mut buffer) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => return Err(invalid(path, format!("reading ffmpeg's frames: {e}"))),
        }
        let frame = dir.join(format!("{:04}.png", frames.len() + 1));
        let image = Image::from_rgb8(info.width, info.height, &buffer);
        image_io::save_image(&frame, &image, 8).map_err(|e| invalid(&frame, e.to_string()))?;
        frames.push(frame);
    }
    let output = child.wait_with_output().map_err(|e| invalid(path, format!("ffmpeg: {e}")))?;
    if !output.status.success() {
        return Err(invalid(path, format!("ffmpeg failed: {}", last_line(&output.stderr))));
    }
    if frames.is_empty() {
        return Err(invalid(path, "ffmpeg decoded no frames"));
    }
    Ok(frames)
}

/// Fills `buffer` with the next frame; `false` at the end of the stream (a partial last frame
/// is an error).
fn read_frame(reader: &mut impl Read, buffer: &mut [u8]) -> std::io::Result<bool> {
    let mut filled = 0;
    while filled < buffer.len() {
        match reader.read(&mut buffer[filled..])? {
            0 if filled == 0 => return Ok(false),
            0 => return Err(std::io::Error::other(format!("a partial frame of {filled} bytes at the end"))),
            n => filled += n,
        }
    }
    Ok(true)
}

/// Encodes `frames_dir`'s `frame_%04d.png` into `output` at `frame_rate` (e.g. "25/1"), with
/// `audio_from`'s audio track when given, and the user's `options` for the output (a codec, a
/// quality) after ours, so that theirs win; written to a temporary file beside `output` and
/// renamed, so a failed encode leaves no half-written video.
pub fn encode(
    frames_dir: &Path,
    frame_rate: &str,
    audio_from: Option<&Path>,
    options: &[String],
    output: &Path,
) -> Result<(), VideoError> {
    let extension = output.extension().and_then(|e| e.to_str()).unwrap_or("mp4").to_ascii_lowercase();
    let name = output.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
    let temporary = output.with_file_name(format!(".{name}.partial.{extension}"));
    let mut args: Vec<OsString> = ["-v", "error", "-nostdin", "-y", "-framerate", frame_rate, "-i"]
        .iter()
        .map(OsString::from)
        .chain([frames_dir.join("frame_%04d.png").into_os_string()])
        .collect();
    if let Some(input) = audio_from {
        args.extend([OsString::from("-i"), input.as_os_str().to_owned()]);
        args.extend(["-map", "0:v:0", "-map", "1:a:0?", "-c:a", "copy", "-shortest"].iter().map(OsString::from));
    }
    // Players expect 4:2:0 in these containers (ffmpeg keeps the PNGs' 4:4:4 otherwise), unless
    // the user names a pixel format (e.g. a lossless codec's RGB).
    let own_pixel_format = options.iter().any(|o| o == "-pix_fmt");
    if ["mp4", "mov", "mkv", "m4v"].contains(&extension.as_str()) && !own_pixel_format {
        args.extend(["-pix_fmt", "yuv420p"].iter().map(OsString::from));
    }
    args.extend(options.iter().map(OsString::from));
    args.push(temporary.clone().into_os_string());
    let result = run("ffmpeg", &args, output).and_then(|_| {
        std::fs::rename(&temporary, output).map_err(|e| VideoError::Io { path: output.into(), source: e })
    });
    if result.is_err() {
        std::fs::remove_file(&temporary).ok();
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_output_is_parsed_per_stream() {
        let text =
            "codec_type=video\nwidth=640\nheight=360\nr_frame_rate=30000/1001\ncodec_type=audio\nr_frame_rate=0/0\n";
        let info = parse_probe(text).unwrap();
        assert_eq!(info, VideoInfo { width: 640, height: 360, frame_rate: "30000/1001".into(), has_audio: true });
        let silent = parse_probe("codec_type=video\nwidth=64\nheight=48\nr_frame_rate=25/1\n").unwrap();
        assert!(!silent.has_audio);
        assert_eq!(parse_probe("codec_type=audio\nr_frame_rate=0/0\n"), None);
        assert_eq!(parse_probe("codec_type=video\nwidth=0\nheight=48\nr_frame_rate=25/1\n"), None);
    }

    #[test]
    fn frames_are_read_whole_and_a_partial_one_is_an_error() {
        let mut buffer = [0u8; 4];
        let mut reader: &[u8] = &[1, 2, 3, 4, 5, 6, 7, 8];
        assert!(read_frame(&mut reader, &mut buffer).unwrap());
        assert!(read_frame(&mut reader, &mut buffer).unwrap() && buffer == [5, 6, 7, 8]);
        assert!(!read_frame(&mut reader, &mut buffer).unwrap());
        let mut partial: &[u8] = &[1, 2];
        assert!(read_frame(&mut partial, &mut buffer).is_err());
    }
}
