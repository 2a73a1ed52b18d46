//! Plain data every layer shares: which command a run is, how it stands, and what one
//! committed unit of it did. Typed here so that no layer decides anything by comparing
//! strings; serialized exactly as the ledger stores them and `--json` prints them.

use std::fmt;

/// The command a run belongs to, named as the ledger stores it and `--json` prints it.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    serde::Serialize,
    strum::Display,
    strum::EnumString,
    strum::IntoStaticStr,
)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum Command {
    Seed,
    Purge,
}

impl Command {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// A command as it ran: for real, or as a dry run. Printed and serialized as the command
/// line names it (`seed`, `purge --dry-run`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Invocation {
    pub command: Command,
    pub dry_run: bool,
}

impl fmt::Display for Invocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.command.as_str())?;
        if self.dry_run {
            f.write_str(" --dry-run")?;
        }
        Ok(())
    }
}

impl serde::Serialize for Invocation {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Where a run stands, named as the ledger stores it and `--json` prints it.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    serde::Serialize,
    strum::Display,
    strum::EnumString,
    strum::IntoStaticStr,
)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum Status {
    /// An input of a run of many inputs that no process has claimed yet.
    Pending,
    Running,
    Completed,
    Failed,
    Interrupted,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// What one committed unit did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    pub inserted: u64,
    pub updated: u64,
    pub skipped: u64,
    pub deleted: u64,
    /// Keys that matched no row.
    pub missing: u64,
    /// Rows set aside in reject mode (refused by a client-side check or by the server).
    pub rejected: u64,
    /// Sent in binary COPY format.
    pub binary: bool,
    /// Committed by another attempt of the run, which this one met in the ledger: none of
    /// it is this attempt's, and its rows count as resumed.
    pub resumed: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_serialize_as_the_ledger_stores_them() {
        for c in [Command::Seed, Command::Purge] {
            assert_eq!(c.as_str().parse::<Command>(), Ok(c));
            assert_eq!(format!("{c:<6}|"), format!("{:<6}|", c.as_str()));
            assert_eq!(serde_json::to_string(&c).unwrap(), format!("\"{c}\""));
        }
        for s in [
            Status::Running,
            Status::Completed,
            Status::Failed,
            Status::Interrupted,
        ] {
            assert_eq!(s.as_str().parse::<Status>(), Ok(s));
            assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{s}\""));
        }
        assert!("done".parse::<Status>().is_err());
        let dry = Invocation {
            command: Command::Purge,
            dry_run: true,
        };
        assert_eq!(serde_json::to_string(&dry).unwrap(), "\"purge --dry-run\"");
    }
}
