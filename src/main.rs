//! The `stylize` command line: parses, dispatches to `cli`'s subcommands, and maps what they return
//! to exit codes: 0 success, 1 runtime or input error, 2 usage error, 130/143 after SIGINT/SIGTERM
//! (the image so far written). Everything else lives in `cli`, which only uses the library's
//! public API.

mod cli;

use cli::args::{Cli, Command};

fn main() {
    let matches = <Cli as clap::CommandFactory>::command().get_matches();
    let cli = <Cli as clap::FromArgMatches>::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    if let Some(problem) = cli::run::misplaced_mask(&matches) {
        eprintln!("stylize: error: {problem}");
        std::process::exit(2);
    }
    match dispatch(cli, &matches) {
        Ok(None) => {}
        Ok(Some(code)) => std::process::exit(code),
        Err(err) => {
            eprintln!("stylize: error: {}", describe(&err));
            std::process::exit(1);
        }
    }
}

/// Runs the subcommand, or a style transfer when there is none; `Some(code)`: exit with it.
fn dispatch(cli: Cli, matches: &clap::ArgMatches) -> anyhow::Result<Option<i32>> {
    let done = |result: anyhow::Result<()>| result.map(|()| None);
    match cli.command {
        Some(Command::Devices(args)) => done(cli::devices::run(args)),
        Some(Command::Bench(args)) => done(cli::bench::run(args)),
        Some(Command::Recolor(args)) => done(cli::recolor::run(args)),
        Some(Command::Weights(args)) => done(cli::weights::run(args)),
        Some(Command::Models(args)) => done(cli::models::run(args)),
        Some(Command::Plan(args)) => done(cli::plan::run(args)),
        Some(Command::Video(args)) => {
            let sub = matches.subcommand_matches("video").expect("the video subcommand");
            cli::video::run(args, sub)
        }
        None => cli::run::transfer(cli.run, matches),
    }
}

/// The error's one line; an invalid option is named by its flag.
fn describe(err: &anyhow::Error) -> String {
    let invalid = match err.downcast_ref::<stylize::Error>() {
        Some(stylize::Error::Options(invalid)) => Some(invalid),
        _ => err.downcast_ref::<stylize::InvalidOption>(),
    };
    match invalid {
        Some(invalid) => format!("invalid option: {}", invalid.render(cli::values::flag)),
        None => format!("{err:#}"),
    }
}
