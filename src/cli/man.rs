//! The man pages, generated from the flag definitions (`strata man DIR`).

use std::path::Path;

use anyhow::Result;
use clap::{ArgAction, CommandFactory};

use super::args::Cli;

/// Writes strata(1), a page per subcommand (strata-throttle-set(1)) and
/// strata-mountd(8) into `dir`.
pub fn write_pages(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    // `strata help` is left out of the pages: there is no strata-help(1).
    let cmd = without_help_subcommand(Cli::command());
    let mut buf = Vec::new();
    clap_mangen::Man::new(with_synopsis("strata", cmd.clone())).render(&mut buf)?;
    let mut all: Vec<String> = Vec::new();
    // One page per command and per subcommand (strata-throttle-set(1)),
    // as the SUBCOMMANDS sections refer to them.
    let mut pages: Vec<(String, clap::Command)> = Vec::new();
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = format!("strata-{}", sub.get_name());
        for nested in sub.get_subcommands().filter(|s| !s.is_hide_set()) {
            pages.push((format!("{name}-{}", nested.get_name()), nested.clone()));
        }
        pages.push((name, sub.clone()));
    }
    for (name, page) in pages {
        let mut page_buf = Vec::new();
        clap_mangen::Man::new(with_synopsis(&name, page.name(name.clone())))
            .render(&mut page_buf)?;
        // A subcommand's page refers to its command's and to strata(1).
        let parent = name
            .rsplit_once('-')
            .map(|(p, _)| p)
            .filter(|p| *p != "strata");
        let mut see = vec!["strata(1)".to_owned()];
        see.extend(parent.map(|p| format!("{p}(1)")));
        see.push("strata.toml(5)".to_owned());
        see_also(&mut page_buf, &see);
        std::fs::write(dir.join(format!("{name}.1")), &page_buf)?;
        all.push(format!("{name}(1)"));
    }
    all.sort();
    all.extend(["strata-mountd(8)", "strata.toml(5)", "strata-format(5)"].map(String::from));
    see_also(&mut buf, &all);
    std::fs::write(dir.join("strata.1"), &buf)?;
    let mut buf = Vec::new();
    let mountd = strata::daemon::mount_args::MountdArgs::command();
    clap_mangen::Man::new(with_synopsis("strata-mountd", mountd))
        .section("8")
        .render(&mut buf)?;
    buf.extend_from_slice(strata::daemon::mount_args::TRANSPORT_MAN.as_bytes());
    see_also(
        &mut buf,
        &["strata(1)", "strata-mount(1)", "strata.toml(5)"].map(String::from),
    );
    std::fs::write(dir.join("strata-mountd.8"), &buf)?;
    Ok(())
}

/// `cmd` and its subcommands without clap's `help` subcommand.
fn without_help_subcommand(cmd: clap::Command) -> clap::Command {
    cmd.disable_help_subcommand(true)
        .mut_subcommands(without_help_subcommand)
}

/// Appends a SEE ALSO section naming `pages` ("strata(1)").
fn see_also(buf: &mut Vec<u8>, pages: &[String]) {
    let refs: Vec<String> = pages
        .iter()
        .map(|p| {
            let (name, section) = p.split_once('(').expect("name(section)");
            format!("\\fB{}\\fR({section}", name.replace('-', "\\-"))
        })
        .collect();
    buf.extend_from_slice(format!(".SH \"SEE ALSO\"\n{}\n", refs.join(", ")).as_bytes());
}

/// `cmd` with a SYNOPSIS that shows what each option takes
/// (`[--label LABEL]`, `[--wait[=DURATION]]`), which clap_mangen's own
/// leaves out. A subcommand is written as typed (`strata key add`).
fn with_synopsis(name: &str, cmd: clap::Command) -> clap::Command {
    let typed = match name.strip_prefix("strata-") {
        Some(sub) if name != "strata-mountd" => format!("strata {}", sub.replace('-', " ")),
        _ => name.to_owned(),
    };
    let mut parts = vec![typed];
    for a in cmd.get_arguments().filter(|a| !a.is_hide_set()) {
        if a.is_positional() {
            continue;
        }
        let flag = match (a.get_short(), a.get_long()) {
            (Some(s), Some(l)) => format!("-{s}|--{l}"),
            (Some(s), None) => format!("-{s}"),
            (None, Some(l)) => format!("--{l}"),
            (None, None) => continue,
        };
        let takes = matches!(a.get_action(), ArgAction::Set | ArgAction::Append);
        let value = if !takes {
            String::new()
        } else if a.get_num_args().is_some_and(|n| n.min_values() == 0) {
            format!("[={}]", value_name(a))
        } else {
            format!(" {}", value_name(a))
        };
        let repeat = if matches!(a.get_action(), ArgAction::Append | ArgAction::Count) {
            "..."
        } else {
            ""
        };
        let opt = format!("{flag}{value}{repeat}");
        parts.push(if a.is_required_set() {
            opt
        } else {
            format!("[{opt}]")
        });
    }
    for a in cmd.get_positionals().filter(|a| !a.is_hide_set()) {
        let many = a.get_num_args().is_some_and(|n| n.max_values() > 1);
        let v = format!("{}{}", value_name(a), if many { "..." } else { "" });
        parts.push(if a.is_required_set() {
            v
        } else {
            format!("[{v}]")
        });
    }
    if cmd.has_subcommands() {
        parts.push("COMMAND".to_owned());
    }
    cmd.bin_name(parts[0].clone())
        .override_usage(parts.join(" "))
}

/// An argument's value name: its own, or its id in capitals.
fn value_name(a: &clap::Arg) -> String {
    a.get_value_names()
        .map(|v| v.join(" "))
        .unwrap_or_else(|| a.get_id().as_str().to_uppercase())
}
