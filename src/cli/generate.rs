//! `provisioner generate`.

use clap::Args;

use super::exit_codes_help;
use crate::error::Error;
use crate::generate::{GenerateOptions, generate};

#[derive(Debug, Args)]
#[command(
    after_help = format!(
        "Writes CSV (a header, then one account a line) to stdout. A reader that closes the \
         pipe early (`generate … | head`) is not a failure.\n\n{}",
        exit_codes_help()
    )
)]
pub struct GenerateArgs {
    /// Number of accounts to write.
    #[arg(long, value_name = "N")]
    pub count: u64,

    /// Seed of the random sequence: the same seed gives the same output.
    #[arg(long, default_value_t = 1, value_name = "S")]
    pub seed: u64,

    /// Email domain of the generated accounts.
    #[arg(long, default_value = "example.test", value_name = "D")]
    pub domain: String,
}

pub fn run(args: GenerateArgs) -> Result<i32, Error> {
    let opts = GenerateOptions {
        count: args.count,
        seed: args.seed,
        domain: args.domain,
    };
    let stdout = std::io::stdout().lock();
    let mut out = std::io::BufWriter::with_capacity(1 << 20, stdout);
    match generate(&opts, &mut out) {
        Ok(()) => Ok(0),
        // A closed pipe (`generate … | head`) is the reader's choice, not a failure.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(0),
        Err(e) => Err(Error::Output {
            path: "stdout".into(),
            source: e,
        }),
    }
}
