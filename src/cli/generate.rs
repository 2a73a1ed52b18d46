//! `provisioner generate`.

use clap::Args;

use super::exit_codes_help;
use crate::error::Error;
use crate::generate::{
    Feeder, FeederFormat, GenerateOptions, Hasher, Identity, Passwords, Scheme, WriteError,
    generate,
};
use std::io::IsTerminal;
use std::path::PathBuf;

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

    /// Accounts that can log in: password_hash holds a real hash of this password, hashed
    /// once for all accounts; `random` gives each account its own (16 letters and digits,
    /// from --seed), hashed on every core.
    #[arg(long, value_name = "TEXT|random")]
    pub password: Option<String>,

    /// How --password is hashed, in the string format web frameworks verify.
    #[arg(long, value_enum, default_value_t = Scheme::Bcrypt, requires = "password")]
    pub hash: Scheme,

    /// The --hash scheme's cost: bcrypt's cost, argon2id's passes, scrypt's log2 N, the
    /// iterations of pbkdf2-sha256 or the rounds of sha512-crypt [default: each scheme's
    /// usual one]. Load tests often lower it: --hash bcrypt --cost 4.
    #[arg(long, value_name = "N", requires = "password")]
    pub cost: Option<u32>,

    /// Write the feeder for the load generator here: each account's login and its password
    /// in clear, in the accounts' order (created mode 0600).
    #[arg(long, value_name = "FILE", requires = "password")]
    pub credentials: Option<PathBuf>,

    /// The feeder's format: csv with a header, or json (an array of objects).
    #[arg(long, value_enum, default_value_t = FeederFormat::Csv, requires = "credentials")]
    pub credentials_format: FeederFormat,

    /// The login columns the feeder holds, before `password`.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "username,email",
        requires = "credentials",
        value_name = "COL[,COL]"
    )]
    pub credentials_columns: Vec<Identity>,
}

pub fn run(args: GenerateArgs) -> Result<i32, Error> {
    let passwords = match &args.password {
        None => None,
        Some(password) => Some(Passwords {
            shared: (password != "random").then(|| password.clone()),
            hasher: Hasher::new(args.hash, args.cost)?,
        }),
    };
    let opts = GenerateOptions {
        count: args.count,
        seed: args.seed,
        domain: args.domain,
        passwords,
    };
    let feeder_path = |path: &PathBuf| path.display().to_string();
    let mut feeder = match &args.credentials {
        None => None,
        Some(path) => Some(
            Feeder::create(
                path,
                args.credentials_format,
                args.credentials_columns.clone(),
            )
            .map_err(|e| Error::Usage(format!("--credentials {}: {e}", feeder_path(path))))?,
        ),
    };
    // Hashing a random password per account takes a while: a bar, on a terminal.
    let random = opts.passwords.as_ref().is_some_and(|p| p.shared.is_none());
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(opts.count),
        if random && std::io::stderr().is_terminal() {
            indicatif::ProgressDrawTarget::stderr()
        } else {
            indicatif::ProgressDrawTarget::hidden()
        },
    );
    let stdout = std::io::stdout().lock();
    let mut out = std::io::BufWriter::with_capacity(1 << 20, stdout);
    let written = generate(&opts, &mut out, feeder.as_mut(), &|n| bar.set_position(n));
    bar.finish_and_clear();
    match written {
        Ok(()) => {}
        // A closed pipe (`generate … | head`) is the reader's choice, not a failure.
        Err(WriteError::Output(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        Err(WriteError::Output(e)) => {
            return Err(Error::Output {
                path: "stdout".into(),
                source: e,
            });
        }
        Err(WriteError::Feeder(e)) => {
            return Err(Error::Output {
                path: args
                    .credentials
                    .as_ref()
                    .map(feeder_path)
                    .unwrap_or_default(),
                source: e,
            });
        }
    }
    if let (Some(feeder), Some(path)) = (&feeder, &args.credentials) {
        eprintln!(
            "wrote the logins and passwords of {} accounts to {} (mode 0600; delete it after \
             the load test)",
            feeder.written,
            feeder_path(path)
        );
    }
    Ok(0)
}
