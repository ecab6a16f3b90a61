//! `strata snapshot …` on an unmounted repository.

use anyhow::{bail, Result};
use serde::Serialize;
use strata::head::snapshot::{SnapshotRecord, SnapshotRow};
use strata::head::{Caller, Head};
use strata::repo::Repo;

use super::args::{Global, SnapshotCommand};
use super::print;

/// What `snapshot list` and `show` print per snapshot.
#[derive(Serialize)]
struct Info {
    seq: u64,
    name: String,
    time: i64,
    label: Option<String>,
    id: String,
    prev: Option<String>,
    root_tree: Option<String>,
    dirs_serialized: u64,
    dirs_reused: u64,
    caller_uid: u32,
}

impl Info {
    fn of(row: &SnapshotRow) -> Info {
        let r: &SnapshotRecord = &row.record;
        Info {
            seq: r.seq,
            name: r.name(),
            time: r.time.secs,
            label: r.label.clone(),
            id: hex::encode(row.id),
            prev: r.prev.map(hex::encode),
            root_tree: r.root.subtree.map(hex::encode),
            dirs_serialized: r.stats.dirs_serialized,
            dirs_reused: r.stats.dirs_reused,
            caller_uid: r.caller.0,
        }
    }
}

/// The caller of this command, for the snapshot record.
pub(super) fn me() -> Caller {
    // SAFETY: these libc calls take no arguments and cannot fail.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    Caller {
        uid,
        gid,
        pid: std::process::id(),
    }
}

/// Finds a snapshot by number, time name, label (newest) or "latest".
fn find(rows: &[SnapshotRow], what: &str) -> Result<SnapshotRow> {
    let found = match what {
        "latest" => rows.last(),
        _ => match what.parse::<u64>() {
            Ok(seq) => rows.iter().find(|r| r.record.seq == seq),
            Err(_) => rows
                .iter()
                .rev()
                .find(|r| r.record.name() == what || r.record.label.as_deref() == Some(what)),
        },
    };
    match found {
        Some(r) => Ok(r.clone()),
        None => bail!("no snapshot {what:?}: see `strata snapshot list`"),
    }
}

pub fn run(g: &Global, c: &SnapshotCommand, repo: Repo) -> Result<()> {
    let head = Head::new(repo)?;
    match c {
        SnapshotCommand::Create { label } => {
            let rec = head.snapshot(me(), label.as_deref())?;
            let row = head.snapshot_by_seq(rec.seq)?;
            let info = Info::of(&row);
            print(g, &info, || {
                format!(
                    "created snapshot {} ({}), {} directories serialized",
                    info.seq, info.name, info.dirs_serialized
                )
            });
        }
        SnapshotCommand::List => {
            let rows = head.snapshots()?;
            let infos: Vec<Info> = rows.iter().map(Info::of).collect();
            print(g, &infos, || {
                let mut out = String::from("   seq  name                  label");
                for i in &infos {
                    out.push_str(&format!(
                        "\n{:>6}  {}  {}",
                        i.seq,
                        i.name,
                        i.label.as_deref().unwrap_or("")
                    ));
                }
                out
            });
        }
        SnapshotCommand::Show { snapshot } => {
            let info = Info::of(&find(&head.snapshots()?, snapshot)?);
            print(g, &info, || {
                format!(
                    "snapshot   {}\nname       {}\nlabel      {}\nid         {}\nprevious   {}\nroot tree  {}\ndirectories serialized {}, reused {}\ntaken by uid {}",
                    info.seq,
                    info.name,
                    info.label.as_deref().unwrap_or("-"),
                    info.id,
                    info.prev.as_deref().unwrap_or("-"),
                    info.root_tree.as_deref().unwrap_or("-"),
                    info.dirs_serialized,
                    info.dirs_reused,
                    info.caller_uid
                )
            });
        }
        SnapshotCommand::Delete { snapshot } => {
            let row = find(&head.snapshots()?, snapshot)?;
            head.delete_snapshot(me(), row.record.seq)?;
            if !g.quiet && !g.json {
                println!("deleted snapshot {}", row.record.seq);
            }
        }
    }
    Ok(())
}
