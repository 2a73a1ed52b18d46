use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = provisioner::cli::Cli::parse();
    let console = provisioner::report::Console::stderr(cli.verbosity());
    console.init_logging();
    let code = provisioner::cli::run(cli, &console);
    std::process::ExitCode::from(u8::try_from(code).unwrap_or(1))
}
