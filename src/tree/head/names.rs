//! The head's namespace operations: making, linking, unlinking and
//! renaming entries, with POSIX's link counts, times and default ACLs.
//! Each is one write transaction that also marks the changed directories
//! dirty for the next snapshot.

use super::acl::{self, Acl};
use super::records::{DirentRecord, InodeRecord, XattrRecord};
use super::txn::{Reader, Write};
use super::Head;
use crate::sys::sync::Recover;
use crate::tree::types::*;

impl Head {
    /// Creates a node of `kind` named `name` in `parent`, owned by the
    /// caller (group from a setgid parent), with `perm` less `umask`.
    #[allow(clippy::too_many_arguments)]
    fn create_node(
        &self,
        caller: Caller,
        parent: InodeNo,
        name: &FileName,
        kind: FileKind,
        perm: u32,
        umask: u32,
        rdev: u64,
        target: &[u8],
    ) -> Result<Attr, FsError> {
        let (ino, rec) = self.transact(|w| {
            w.load(parent)?;
            let mut dir = w.get(parent)?;
            if dir.meta.kind != FileKind::Dir {
                return Err(FsError::NotDir);
            }
            if w.dirent(parent, name)?.is_some() {
                return Err(FsError::Exists);
            }
            let now = Timestamp::now();
            let setgid_dir = dir.meta.perm & libc::S_ISGID != 0;
            // A default ACL on the directory replaces the umask.
            let default_acl = match (kind, w.xattr(parent, acl::DEFAULT)?) {
                (FileKind::Symlink, _) | (_, None) => None,
                (_, Some(x)) => Some(Acl::parse(&x.value)?),
            };
            let (mut perm, access_acl) = match &default_acl {
                Some(default) => {
                    let (access, bits) = default.inherit(perm & 0o7777);
                    (bits, (!access.is_minimal()).then_some(access))
                }
                None => (perm & 0o7777 & !(umask & 0o777), None),
            };
            if kind == FileKind::Dir && setgid_dir {
                perm |= libc::S_ISGID;
            }
            let ino = w.next_ino()?;
            if let Some(access) = access_acl {
                w.set_xattr(
                    ino,
                    &XattrRecord {
                        name: acl::ACCESS.to_vec(),
                        value: access.encode(),
                    },
                )?;
            }
            if let (FileKind::Dir, Some(default)) = (kind, &default_acl) {
                w.set_xattr(
                    ino,
                    &XattrRecord {
                        name: acl::DEFAULT.to_vec(),
                        value: default.encode(),
                    },
                )?;
            }
            let meta = Meta {
                kind,
                perm,
                uid: caller.uid,
                gid: if setgid_dir { dir.meta.gid } else { caller.gid },
                nlink: if kind == FileKind::Dir { 2 } else { 1 },
                size: if kind == FileKind::Symlink {
                    target.len() as u64
                } else {
                    0
                },
                atime: now,
                mtime: now,
                ctime: now,
                btime: now,
                rdev,
            };
            let rec = InodeRecord {
                meta,
                target: target.to_vec(),
                clean_tree: None,
                facts: None,
            };
            w.put(ino, &rec)?;
            w.link(
                parent,
                name,
                &DirentRecord {
                    name: name.as_bytes().to_vec(),
                    ino: ino.0,
                    kind,
                },
            )?;
            if kind == FileKind::Dir {
                dir.meta.nlink += 1;
            }
            dir.meta.mtime = now;
            dir.meta.ctime = now;
            w.put(parent, &dir)?;
            w.dirty_chain(parent)?;
            Ok((ino, rec))
        })?;
        Ok(self.attr_of(ino, &rec))
    }

    /// Creates a regular file.
    pub fn create(
        &self,
        caller: Caller,
        parent: InodeNo,
        name: &FileName,
        perm: u32,
        umask: u32,
    ) -> Result<Attr, FsError> {
        let _op = caller.span("create");
        self.create_node(caller, parent, name, FileKind::File, perm, umask, 0, &[])
    }

    /// Creates a regular file and opens it for writing (FUSE_CREATE), in
    /// one call of the engine.
    pub fn create_open(
        &self,
        caller: Caller,
        parent: InodeNo,
        name: &FileName,
        perm: u32,
        umask: u32,
    ) -> Result<Attr, FsError> {
        let attr = self.create(caller, parent, name, perm, umask)?;
        self.note_open(attr.ino);
        Ok(attr)
    }

    /// Creates a directory.
    pub fn mkdir(
        &self,
        caller: Caller,
        parent: InodeNo,
        name: &FileName,
        perm: u32,
        umask: u32,
    ) -> Result<Attr, FsError> {
        let _op = caller.span("mkdir");
        self.create_node(caller, parent, name, FileKind::Dir, perm, umask, 0, &[])
    }

    /// Creates a device node, fifo, socket or regular file from a full st_mode.
    pub fn mknod(
        &self,
        caller: Caller,
        parent: InodeNo,
        name: &FileName,
        mode: u32,
        umask: u32,
        rdev: u64,
    ) -> Result<Attr, FsError> {
        let _op = caller.span("mknod");
        let kind = FileKind::from_mode(mode).ok_or(FsError::Invalid("unknown file type"))?;
        if matches!(kind, FileKind::Dir | FileKind::Symlink) {
            return Err(FsError::Invalid(
                "mknod cannot make directories or symlinks",
            ));
        }
        self.create_node(caller, parent, name, kind, mode, umask, rdev, &[])
    }

    /// Creates a symbolic link.
    pub fn symlink(
        &self,
        caller: Caller,
        parent: InodeNo,
        name: &FileName,
        target: &[u8],
    ) -> Result<Attr, FsError> {
        let _op = caller.span("symlink");
        if target.is_empty() || target.len() > 4096 {
            return Err(FsError::Invalid("symlink target must be 1..4096 bytes"));
        }
        self.create_node(caller, parent, name, FileKind::Symlink, 0o777, 0, 0, target)
    }

    /// Adds a hard link `newparent/newname` to `ino`.
    pub fn link(
        &self,
        caller: Caller,
        ino: InodeNo,
        newparent: InodeNo,
        newname: &FileName,
    ) -> Result<Attr, FsError> {
        let _op = caller.span("link");
        let rec = self.transact(|w| {
            let mut rec = w.get(ino)?;
            if rec.meta.kind == FileKind::Dir {
                return Err(FsError::Invalid(
                    "hard links to directories are not allowed",
                ));
            }
            if rec.meta.nlink >= 65_000 {
                return Err(FsError::TooManyLinks);
            }
            w.load(newparent)?;
            let mut dir = w.get(newparent)?;
            if dir.meta.kind != FileKind::Dir {
                return Err(FsError::NotDir);
            }
            if w.dirent(newparent, newname)?.is_some() {
                return Err(FsError::Exists);
            }
            let now = Timestamp::now();
            rec.meta.nlink += 1;
            rec.meta.ctime = now;
            w.put(ino, &rec)?;
            w.link(
                newparent,
                newname,
                &DirentRecord {
                    name: newname.as_bytes().to_vec(),
                    ino: ino.0,
                    kind: rec.meta.kind,
                },
            )?;
            dir.meta.mtime = now;
            dir.meta.ctime = now;
            w.put(newparent, &dir)?;
            w.dirty_parents(ino)?;
            Ok(rec)
        })?;
        Ok(self.attr_of(ino, &rec))
    }

    /// Removes a non-directory entry.
    pub fn unlink(&self, caller: Caller, parent: InodeNo, name: &FileName) -> Result<(), FsError> {
        let _op = caller.span("unlink");
        let open = self.open_counts.locked().clone();
        let (child, gone) = self.transact(|w| {
            w.load(parent)?;
            let entry = w.dirent(parent, name)?.ok_or(FsError::NotFound)?;
            if entry.kind == FileKind::Dir {
                return Err(FsError::IsDir);
            }
            let child = InodeNo(entry.ino);
            w.dirty_parents(child)?;
            w.unlink(parent, name, child)?;
            touch_dir(w, parent)?;
            Ok((
                child,
                drop_link(w, child, open.get(&child).copied().unwrap_or(0) > 0)?,
            ))
        })?;
        if gone {
            self.content.forget(child);
        }
        Ok(())
    }

    /// Removes an empty directory.
    pub fn rmdir(&self, caller: Caller, parent: InodeNo, name: &FileName) -> Result<(), FsError> {
        let _op = caller.span("rmdir");
        self.transact(|w| {
            w.load(parent)?;
            let entry = w.dirent(parent, name)?.ok_or(FsError::NotFound)?;
            if entry.kind != FileKind::Dir {
                return Err(FsError::NotDir);
            }
            let child = InodeNo(entry.ino);
            w.load(child)?;
            if !w.is_empty_dir(child)? {
                return Err(FsError::NotEmpty);
            }
            w.dirty_chain(parent)?;
            w.unlink(parent, name, child)?;
            let mut dir = w.get(parent)?;
            dir.meta.nlink -= 1;
            w.put(parent, &dir)?;
            touch_dir(w, parent)?;
            w.delete_inode(child)
        })
    }

    /// Renames `parent/name` to `newparent/newname`.
    pub fn rename(
        &self,
        caller: Caller,
        parent: InodeNo,
        name: &FileName,
        newparent: InodeNo,
        newname: &FileName,
        mode: RenameMode,
    ) -> Result<(), FsError> {
        let _op = caller.span("rename");
        let open = self.open_counts.locked().clone();
        let mut replaced_gone = None;
        let result = self.transact(|w| {
            w.load(parent)?;
            w.load(newparent)?;
            let src = w.dirent(parent, name)?.ok_or(FsError::NotFound)?;
            if w.get(newparent)?.meta.kind != FileKind::Dir {
                return Err(FsError::NotDir);
            }
            let dst = w.dirent(newparent, newname)?;
            if parent == newparent && name == newname {
                return match (mode, dst) {
                    (RenameMode::NoReplace, Some(_)) => Err(FsError::Exists),
                    _ => Ok(()),
                };
            }
            // Checked in the order Linux checks them.
            if mode == RenameMode::NoReplace && dst.is_some() {
                return Err(FsError::Exists);
            }
            if mode == RenameMode::Exchange && dst.is_none() {
                return Err(FsError::NotFound);
            }
            if src.kind == FileKind::Dir && is_ancestor(w, InodeNo(src.ino), newparent)? {
                return Err(FsError::Loop);
            }
            // A target directory above the source: EINVAL for an exchange,
            // ENOTEMPTY for a rename (before the kinds are compared).
            if let Some(dst) = &dst {
                if dst.kind == FileKind::Dir && is_ancestor(w, InodeNo(dst.ino), parent)? {
                    return Err(match mode {
                        RenameMode::Exchange => FsError::Loop,
                        _ => FsError::NotEmpty,
                    });
                }
            }
            if let Some(dst) = &dst {
                if dst.ino == src.ino {
                    // Two names of one inode: rename(2) does nothing.
                    return Ok(());
                }
            }
            w.dirty_chain(parent)?;
            w.dirty_chain(newparent)?;
            match (mode, dst) {
                (RenameMode::Exchange, None) => Err(FsError::NotFound),
                (RenameMode::Exchange, Some(dst)) => {
                    w.unlink(parent, name, InodeNo(src.ino))?;
                    w.unlink(newparent, newname, InodeNo(dst.ino))?;
                    w.link(
                        parent,
                        name,
                        &DirentRecord {
                            name: name.as_bytes().to_vec(),
                            ..dst.clone()
                        },
                    )?;
                    w.link(
                        newparent,
                        newname,
                        &DirentRecord {
                            name: newname.as_bytes().to_vec(),
                            ..src.clone()
                        },
                    )?;
                    let moved_dirs =
                        (src.kind == FileKind::Dir) as i64 - (dst.kind == FileKind::Dir) as i64;
                    adjust_nlink(w, parent, -moved_dirs)?;
                    adjust_nlink(w, newparent, moved_dirs)?;
                    touch(w, InodeNo(src.ino))?;
                    touch(w, InodeNo(dst.ino))?;
                    touch_dir(w, parent)?;
                    touch_dir(w, newparent)
                }
                (RenameMode::NoReplace, Some(_)) => Err(FsError::Exists),
                (_, dst) => {
                    if let Some(dst) = dst {
                        match (src.kind == FileKind::Dir, dst.kind == FileKind::Dir) {
                            (true, false) => return Err(FsError::NotDir),
                            (false, true) => return Err(FsError::IsDir),
                            (true, true) => {
                                w.load(InodeNo(dst.ino))?;
                                if !w.is_empty_dir(InodeNo(dst.ino))? {
                                    return Err(FsError::NotEmpty);
                                }
                                w.unlink(newparent, newname, InodeNo(dst.ino))?;
                                adjust_nlink(w, newparent, -1)?;
                                w.delete_inode(InodeNo(dst.ino))?;
                            }
                            (false, false) => {
                                let child = InodeNo(dst.ino);
                                w.dirty_parents(child)?;
                                w.unlink(newparent, newname, child)?;
                                if drop_link(w, child, open.get(&child).copied().unwrap_or(0) > 0)?
                                {
                                    replaced_gone = Some(child);
                                }
                            }
                        }
                    }
                    w.unlink(parent, name, InodeNo(src.ino))?;
                    w.link(
                        newparent,
                        newname,
                        &DirentRecord {
                            name: newname.as_bytes().to_vec(),
                            ..src.clone()
                        },
                    )?;
                    if src.kind == FileKind::Dir && parent != newparent {
                        adjust_nlink(w, parent, -1)?;
                        adjust_nlink(w, newparent, 1)?;
                    }
                    touch(w, InodeNo(src.ino))?;
                    touch_dir(w, parent)?;
                    touch_dir(w, newparent)
                }
            }
        });
        if let Some(gone) = replaced_gone {
            self.content.forget(gone);
        }
        result
    }
}

/// Updates a directory's mtime and ctime.
fn touch_dir(w: &mut Write<'_>, dir: InodeNo) -> Result<(), FsError> {
    let mut rec = w.get(dir)?;
    let now = Timestamp::now();
    rec.meta.mtime = now;
    rec.meta.ctime = now;
    w.put(dir, &rec)
}

/// Updates an inode's ctime.
fn touch(w: &mut Write<'_>, ino: InodeNo) -> Result<(), FsError> {
    let mut rec = w.get(ino)?;
    rec.meta.ctime = Timestamp::now();
    w.put(ino, &rec)
}

fn adjust_nlink(w: &mut Write<'_>, dir: InodeNo, by: i64) -> Result<(), FsError> {
    if by != 0 {
        let mut rec = w.get(dir)?;
        rec.meta.nlink = (rec.meta.nlink as i64 + by) as u32;
        w.put(dir, &rec)?;
    }
    Ok(())
}

/// Drops one link of `child`; at zero links the inode goes, or becomes an
/// orphan while it is open. Returns whether it went.
fn drop_link(w: &mut Write<'_>, child: InodeNo, is_open: bool) -> Result<bool, FsError> {
    let mut rec = w.get(child)?;
    rec.meta.nlink = rec.meta.nlink.saturating_sub(1);
    rec.meta.ctime = Timestamp::now();
    if rec.meta.nlink > 0 {
        w.put(child, &rec)?;
        return Ok(false);
    }
    if is_open {
        w.put(child, &rec)?;
        w.add_orphan(child)?;
        return Ok(false);
    }
    w.delete_inode(child)?;
    Ok(true)
}

/// Whether `ancestor` is `dir` or one of its ancestors.
fn is_ancestor(w: &Write<'_>, ancestor: InodeNo, dir: InodeNo) -> Result<bool, FsError> {
    let mut d = dir;
    loop {
        if d == ancestor {
            return Ok(true);
        }
        match w.parents(d)?.first() {
            Some((p, _)) if p.0 != 0 => d = *p,
            _ => return Ok(false),
        }
    }
}
