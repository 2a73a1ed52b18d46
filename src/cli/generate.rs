//! `provisioner generate`.

use clap::Args;

use super::{ConnectArgs, block_on, exit_codes_help};
use crate::db::connect;
use crate::error::Error;
use crate::generate::table::{self, TableOptions, Template};
use crate::generate::{
    Feeder, FeederFormat, GenerateOptions, Hasher, Passwords, Scheme, WriteError, generate,
};
use crate::run::start;
use std::io::IsTerminal;
use std::path::PathBuf;

#[derive(Debug, Args)]
#[command(
    after_help = format!(
        "Writes CSV (a header, then one row a line) to stdout. A reader that closes the \
         pipe early (`generate … | head`) is not a failure.\n\n\
         Examples:\n  \
         provisioner generate --count 100000 | provisioner seed -\n  \
         provisioner generate --table app.orders --count 50000 > orders.csv\n  \
         provisioner generate --table users --count 10000 --password random --hash bcrypt \
         --cost 4 --credentials logins.csv --set 'email=user{{row}}@loadtest.example' > users.csv\n\n{}",
        exit_codes_help()
    )
)]
pub struct GenerateArgs {
    /// Number of rows to write.
    #[arg(long, value_name = "N")]
    pub count: u64,

    /// Rows for this table as the catalog describes it (types, NOT NULL, unique keys, CHECKs,
    /// enums, domains, partitions, foreign keys), instead of the example table's accounts.
    /// Columns the server fills (defaults, identities, generated) are left out.
    #[arg(long, value_name = "TABLE")]
    pub table: Option<String>,

    /// With --table: exactly these columns, in this order [default: every column the
    /// server cannot fill, and defaulted columns of unique keys].
    #[arg(
        long,
        value_delimiter = ',',
        value_name = "COL[,COL]",
        requires = "table"
    )]
    pub columns: Option<Vec<String>>,

    /// With --table: a column's value spelled out: text as is, {row} the row's number
    /// (counting on from the rows already in the table), {a|b|c} choices row by row, {{ and
    /// }} braces. E.g. --set 'email=user{row}@loadtest.example'. Repeatable.
    #[arg(long = "set", value_name = "COL=TEMPLATE", value_parser = parse_set, requires = "table")]
    pub set: Vec<(String, Template)>,

    /// With --table: the share of NULLs in nullable columns (0 to 1).
    #[arg(long, default_value_t = 0.05, value_name = "R", value_parser = parse_rate,
          requires = "table")]
    pub null_rate: f64,

    /// With --table: keys of each referenced table sampled and held in memory; foreign
    /// keys take their values from them.
    #[arg(long, default_value_t = 10_000, value_name = "N", requires = "table",
          value_parser = clap::value_parser!(u32).range(1..))]
    pub fk_sample: u32,

    /// Seed of the random sequence: the same seed gives the same output.
    #[arg(long, default_value_t = 1, value_name = "S")]
    pub seed: u64,

    /// Email domain of the generated accounts (and of email columns with --table).
    #[arg(long, default_value = "example.test", value_name = "D")]
    pub domain: String,

    /// Accounts that can log in: the password column holds a real hash of this password, hashed
    /// once for all accounts; `random` gives each account its own (16 letters and digits,
    /// from --seed), hashed on every core.
    #[arg(long, value_name = "TEXT|random")]
    pub password: Option<String>,

    /// With --table: the column of the password hashes [default: password_hash,
    /// encrypted_password or password, the first the table has].
    #[arg(long, value_name = "COL", requires = "password")]
    pub password_column: Option<String>,

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

    /// The login columns the feeder holds, before `password` [default: username and email,
    /// those the output has].
    #[arg(
        long,
        value_delimiter = ',',
        requires = "credentials",
        value_name = "COL[,COL]"
    )]
    pub credentials_columns: Option<Vec<String>>,

    #[command(flatten)]
    pub connect: ConnectArgs,
}

fn parse_set(s: &str) -> Result<(String, Template), String> {
    match s.split_once('=') {
        Some((column, template)) if !column.is_empty() => {
            Ok((column.into(), Template::parse(template)?))
        }
        _ => Err(format!("expected COL=TEMPLATE, got {s:?}")),
    }
}

fn parse_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
        _ => Err(format!("expected a number from 0 to 1, got {s:?}")),
    }
}

pub fn run(args: GenerateArgs) -> Result<i32, Error> {
    let passwords = match &args.password {
        None => None,
        Some(password) => Some(Passwords {
            shared: (password != "random").then(|| password.clone()),
            hasher: Hasher::new(args.hash, args.cost)?,
        }),
    };
    // The table's plan first: every refusal comes before a file is created.
    let planned = match &args.table {
        None => None,
        Some(name) => {
            let opts = TableOptions {
                count: args.count,
                seed: args.seed,
                domain: args.domain.clone(),
                null_rate: args.null_rate,
                columns: args.columns.clone(),
                set: args.set.clone(),
                fk_sample: args.fk_sample,
                passwords: passwords.clone(),
                password_column: args.password_column.clone(),
                login_columns: args.credentials_columns.clone(),
            };
            let db = args.connect.config()?;
            let plan = block_on(async {
                let pool = connect::pool(db.clone(), 1)?;
                let client = connect::check(&pool, &db).await?;
                let table =
                    start::table(&client, name, "", "generate writes rows for tables").await?;
                table::prepare(&client, &table, &opts).await
            })??;
            for warning in &plan.warnings {
                tracing::warn!("{warning}");
            }
            Some((plan, opts))
        }
    };
    let login_columns = match (&planned, &args.credentials_columns) {
        (Some((plan, _)), _) => plan.login_names.clone(),
        (None, Some(columns)) => {
            if let Some(c) = columns
                .iter()
                .find(|c| !["username", "email"].contains(&c.as_str()))
            {
                return Err(Error::Usage(format!(
                    "--credentials-columns: {c} is not a column of the example table's logins \
                     (username, email)"
                )));
            }
            columns.clone()
        }
        (None, None) => vec!["username".into(), "email".into()],
    };
    let feeder_path = |path: &PathBuf| path.display().to_string();
    let mut feeder = match &args.credentials {
        None => None,
        Some(path) => Some(
            Feeder::create(path, args.credentials_format, login_columns)
                .map_err(|e| Error::Usage(format!("--credentials {}: {e}", feeder_path(path))))?,
        ),
    };
    // Hashing a random password per account takes a while: a bar, on a terminal.
    let random = passwords.as_ref().is_some_and(|p| p.shared.is_none());
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(args.count),
        if random && std::io::stderr().is_terminal() {
            indicatif::ProgressDrawTarget::stderr()
        } else {
            indicatif::ProgressDrawTarget::hidden()
        },
    );
    let stdout = std::io::stdout().lock();
    let mut out = std::io::BufWriter::with_capacity(1 << 20, stdout);
    let hashed = |n| bar.set_position(n);
    let written = match &planned {
        Some((plan, opts)) => table::write(plan, opts, &mut out, feeder.as_mut(), &hashed),
        None => {
            let opts = GenerateOptions {
                count: args.count,
                seed: args.seed,
                domain: args.domain.clone(),
                passwords,
            };
            generate(&opts, &mut out, feeder.as_mut(), &hashed)
        }
    };
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
