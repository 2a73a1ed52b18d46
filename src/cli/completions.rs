//! `provisioner completions SHELL`, and the hidden `provisioner man DIR` that `.ci/package`
//! calls: both are made from the clap definitions in this module's parent, so neither can
//! drift from `--help`.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Args, CommandFactory};
use clap_complete::Shell;

use super::Cli;
use crate::error::Error;

#[derive(Debug, Args)]
#[command(after_help = "\
Writes the script to stdout. The .deb installs the bash, zsh and fish scripts system-wide;
otherwise save the output where the shell looks (a new shell picks it up):
  bash        ~/.local/share/bash-completion/completions/provisioner (with the bash-completion
              package), or `source <(provisioner completions bash)` in ~/.bashrc
  zsh         ~/.zfunc/_provisioner, with `fpath=(~/.zfunc $fpath)` before compinit in ~/.zshrc
  fish        ~/.config/fish/completions/provisioner.fish
  elvish      `eval (provisioner completions elvish | slurp)` in ~/.config/elvish/rc.elv
  powershell  `provisioner completions powershell | Out-String | Invoke-Expression` in $PROFILE
The .deb's places: /usr/share/bash-completion/completions/provisioner,
/usr/share/zsh/vendor-completions/_provisioner, /usr/share/fish/vendor_completions.d/provisioner.fish

Example:
  mkdir -p ~/.local/share/bash-completion/completions
  provisioner completions bash > ~/.local/share/bash-completion/completions/provisioner")]
pub struct CompletionsArgs {
    /// The shell to write the completion script for.
    #[arg(value_enum, value_name = "SHELL")]
    pub shell: Shell,
}

/// The hidden `man DIR`: what `.ci/package` puts in the .deb.
#[derive(Debug, Args)]
pub struct ManArgs {
    /// Directory to write provisioner.1 and one provisioner-SUBCOMMAND.1 per subcommand into
    /// (created if missing).
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
}

/// The command line as a person sees it: `Cli` without its hidden subcommands, which
/// completions must not offer (clap_complete lists hidden subcommands too).
fn visible_command() -> clap::Command {
    let full = Cli::command();
    let visible: Vec<clap::Command> = full
        .get_subcommands()
        .filter(|sub| !sub.is_hide_set())
        .cloned()
        .collect();
    debug_assert_eq!(full.get_name(), env!("CARGO_PKG_NAME"));
    clap::Command::new(env!("CARGO_PKG_NAME"))
        .version(env!("CARGO_PKG_VERSION"))
        .subcommand_required(full.is_subcommand_required_set())
        .args(full.get_arguments().cloned())
        .subcommands(visible)
}

/// Prints the completion script for `args.shell`.
pub fn run(args: CompletionsArgs) -> Result<i32, Error> {
    let mut cmd = visible_command();
    let name = cmd.get_name().to_owned();
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut cmd, name, &mut script);
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(&script).and_then(|()| stdout.flush()) {
        // A reader that closes the pipe early (`… | head`) is not a failure.
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(Error::Output {
            path: "stdout".into(),
            source: e,
        }),
        _ => Ok(0),
    }
}

/// Writes a man page for `provisioner` and for every visible subcommand, nested ones
/// included (`provisioner-runs-show.1`), into `args.dir`; prints each file's path.
pub fn run_man(args: ManArgs) -> Result<i32, Error> {
    let dir = &args.dir;
    let output_error = |source| Error::Output {
        path: dir.display().to_string(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(output_error)?;
    // Built once at the top, so that each subcommand's page is named for its path
    // (provisioner-seed) and lists the global flags it inherits.
    let mut root = Cli::command().disable_help_subcommand(true);
    root.build();
    let mut written = Vec::new();
    write_pages(root, dir, &mut written).map_err(output_error)?;
    for path in written {
        println!("{}", path.display());
    }
    Ok(0)
}

fn write_pages(cmd: clap::Command, dir: &Path, written: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let subcommands: Vec<clap::Command> = cmd
        .get_subcommands()
        .filter(|sub| !sub.is_hide_set())
        .cloned()
        .collect();
    written.push(clap_mangen::Man::new(cmd).generate_to(dir)?);
    for sub in subcommands {
        write_pages(sub, dir, written)?;
    }
    Ok(())
}
