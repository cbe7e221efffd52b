//! The command line, in the binary: the library's user, as any other program would be. It turns
//! flags into `Options`, `Outputs` and `Job`s, and the library's `Observer` calls into a terminal
//! (progress bar, notices, signals); the library itself never prints or reads a flag.
//!
//! One file per subcommand, each with its clap `Args` and a `run`; `args` holds the top level,
//! `values` the value parsers and defaults they share. The `Args` structs have no doc comment on
//! purpose: clap would take it as the subcommand's `about` and change `--help`.

pub mod args;
pub mod bench;
pub mod devices;
mod download;
pub mod models;
mod notice;
pub mod plan;
mod progress;
pub mod recolor;
pub mod run;
pub mod values;
pub mod video;
pub mod weights;
