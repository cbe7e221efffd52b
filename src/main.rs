fn main() {
    eprintln!("stylize: the command-line interface is not built yet");
    std::process::exit(1);
}
