//! The `strata` command.

mod cli;

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;

fn main() -> ExitCode {
    strata::sys::process::start("warn");
    let mut cli = cli::args::Cli::parse();
    if let Err(e) = cli::resolve_remote(&mut cli.global) {
        eprintln!("strata: error: {}", strata::sys::chain::Chain(&*e));
        return ExitCode::from(strata::daemon::exit_code(&*e));
    }
    let repo = cli.global.repo.clone();
    match cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let e = name_the_mount(&repo, e);
            eprintln!("strata: error: {}", strata::sys::chain::Chain(&*e));
            ExitCode::from(strata::daemon::exit_code(&*e))
        }
    }
}

/// A command refused because the repository is in use names the mount
/// that holds it, when one does, and what to do instead.
fn name_the_mount(repo: &Path, e: anyhow::Error) -> anyhow::Error {
    if strata::daemon::exit_code(&*e) != strata::exit::LOCKED {
        return e;
    }
    let disk = Arc::new(strata::store::io::LocalDisk::new(repo));
    let Ok(locked) = strata::store::repo::LockedRepo::open(disk, &repo.display().to_string())
    else {
        return e;
    };
    let Some(mnt) = strata::sys::mountpoint::mount_of(&locked.config().instance()) else {
        return e;
    };
    let mnt = mnt.display();
    let e = strata::sys::chain::Chain(&*e);
    strata::exit::Reported(
        strata::exit::LOCKED,
        format!(
            "{e}: yes, on {mnt}, and its daemon holds it. Run `strata umount {mnt}` first, then this command, then `strata mount` again; `strata status`, `strata snapshot` and `strata backup` work while it is mounted"
        ),
    )
    .into()
}
