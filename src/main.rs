use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = provisioner::cli::Cli::parse();
    let console = provisioner::report::Console::stderr();
    console.init_logging(cli.verbosity());
    let code = provisioner::cli::run(cli, &console);
    std::process::ExitCode::from(u8::try_from(code).unwrap_or(1))
}
