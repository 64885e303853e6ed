//! `driftd generate`: man pages and shell completions from the CLI
//! definition itself, so they never disagree with `--help` (the packages
//! run this at build time).

use super::{CliError, Status};
use clap::{Args, CommandFactory};
use clap_complete::Shell;
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Debug, Args)]
#[command(after_help = "\
Writes DIR/man/driftd.1 and one DIR/man/driftd-<command>.1 per command, and \
DIR/completions/driftd.bash, DIR/completions/_driftd (zsh) and \
DIR/completions/driftd.fish. Try a page with `man -l DIR/man/driftd.1`.")]
pub struct GenerateArgs {
    /// Directory to write into (created if missing).
    #[arg(long, value_name = "DIR")]
    pub out_dir: PathBuf,
}

const EXIT_STATUS: &str = "\
.SH \"EXIT STATUS\"
.TP
\\fB0\\fR
clean, or success
.TP
\\fB1\\fR
drifted, or (for \\fBdiff\\fR) the manifests differ
.TP
\\fB2\\fR
unknown (a path could not be checked), invalid, or an error
";

const FILES: &str = "\
.SH FILES
.TP
\\fI/etc/driftd/driftd.toml\\fR
the agent's configuration (every option documented in place)
.TP
\\fI/etc/driftd/trusted.pub\\fR
the public key manifests must be signed with
.TP
\\fI/var/lib/driftd/manifest\\fR
the manifest baked into the image
.TP
\\fI/var/lib/driftd\\fR
the agent's state: the verdict and the signal outbox survive restarts
";

pub fn run(a: GenerateArgs) -> Result<Status, CliError> {
    let man_dir = a.out_dir.join("man");
    let comp_dir = a.out_dir.join("completions");
    let mut cmd = super::Cli::command().disable_help_subcommand(true);
    cmd.build();
    let subs: Vec<String> = cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set())
        .map(|s| s.get_name().to_string())
        .collect();
    let see_also = |skip: &str| {
        let mut pages: Vec<String> = std::iter::once("driftd".to_string())
            .chain(subs.iter().map(|s| format!("driftd-{s}")))
            .filter(|p| p != skip)
            .map(|p| format!("\\fB{p}\\fR(1)"))
            .collect();
        pages.push("\\fBsystemd.service\\fR(5)".into());
        format!(".SH \"SEE ALSO\"\n{}\n", pages.join(", "))
    };

    let top = format!("{FILES}{EXIT_STATUS}{}", see_also("driftd"));
    write_page(&man_dir, cmd.clone(), &top)?;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let page = format!("driftd-{}", sub.get_name());
        let extra = format!("{EXIT_STATUS}{}", see_also(&page));
        write_page(&man_dir, sub.clone(), &extra)?;
    }

    // Rendered in memory and written like every other file driftd writes
    // (the directories are created on the way).
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        use clap_complete::Generator;
        let mut c = super::Cli::command();
        let mut buf = Vec::new();
        clap_complete::generate(shell, &mut c, "driftd", &mut buf);
        super::write_atomic(&comp_dir.join(shell.file_name("driftd")), &buf, 0o644)?;
    }
    Ok(0)
}

fn write_page(dir: &Path, cmd: clap::Command, extra: &str) -> Result<(), CliError> {
    let man = clap_mangen::Man::new(cmd)
        .manual("driftd manual")
        .source(format!("driftd {}", env!("CARGO_PKG_VERSION")));
    let path = dir.join(man.get_filename());
    let mut buf = Vec::new();
    man.render(&mut buf)
        .and_then(|()| buf.write_all(extra.as_bytes()))
        .map_err(|e| CliError::io("render man page", &path, e))?;
    super::write_atomic(&path, &buf, 0o644)
}
