//! strata-mountd: the FUSE daemon. The mount arrives with the next release;
//! until then this binary only says so, so nothing mistakes it for a mount.

fn main() -> std::process::ExitCode {
    eprintln!("strata-mountd: the mount is not part of this release yet; see `strata --help` for the offline commands");
    std::process::ExitCode::from(1)
}
