//! What both programs do first: keep key material out of core dumps and
//! away from ptrace, and log to standard error (STRATA_LOG sets the filter);
//! and how they start the programs an administrator configured.

/// Makes this process not dumpable and starts logging at `default_filter`.
pub fn start(default_filter: &str) {
    // SAFETY: prctl(PR_SET_DUMPABLE) takes plain integers and touches no memory of ours.
    unsafe {
        libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
    }
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("STRATA_LOG")
                .unwrap_or_else(|_| default_filter.into()),
        )
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

/// Starts `cmd`, trying again for a moment while the program is "text file
/// busy" (ETXTBSY): a script that was just written can still be open for
/// writing in a child another thread forked before its exec, which closes
/// it. Hooks, alert commands and probes are often freshly written scripts.
pub fn spawn(cmd: &mut std::process::Command) -> std::io::Result<std::process::Child> {
    let mut tries = 0;
    loop {
        match cmd.spawn() {
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && tries < 50 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            other => return other,
        }
    }
}
