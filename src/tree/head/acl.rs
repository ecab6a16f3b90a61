//! POSIX ACLs as Linux stores them in `system.posix_acl_access` and
//! `system.posix_acl_default`, with the semantics the kernel leaves to the
//! filesystem under FUSE: the mode follows the access ACL, chmod updates the
//! ACL's owner, mask (or group) and other entries, and a new inode inherits
//! its directory's default ACL instead of having the umask applied.

use crate::tree::types::FsError;

/// Name of the access ACL attribute.
pub const ACCESS: &[u8] = b"system.posix_acl_access";
/// Name of the default ACL attribute (directories only).
pub const DEFAULT: &[u8] = b"system.posix_acl_default";

const VERSION: u32 = 2;
const USER_OBJ: u16 = 0x01;
const USER: u16 = 0x02;
const GROUP_OBJ: u16 = 0x04;
const GROUP: u16 = 0x08;
const MASK: u16 = 0x10;
const OTHER: u16 = 0x20;
const UNDEFINED_ID: u32 = u32::MAX;

/// One ACL entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Entry {
    tag: u16,
    perm: u16,
    id: u32,
}

/// A parsed, validated ACL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Acl {
    entries: Vec<Entry>,
}

impl Acl {
    /// Parses and validates the xattr form: version 2, entries sorted by tag
    /// then id, exactly one owner, group and other entry, a mask whenever
    /// there are named users or groups.
    pub fn parse(value: &[u8]) -> Result<Acl, FsError> {
        let bad = FsError::Invalid("malformed POSIX ACL");
        if value.len() < 4 || !(value.len() - 4).is_multiple_of(8) {
            return Err(bad);
        }
        if u32::from_le_bytes(value[..4].try_into().expect("4 bytes")) != VERSION {
            return Err(bad);
        }
        let entries: Vec<Entry> = value[4..]
            .chunks_exact(8)
            .map(|e| Entry {
                tag: u16::from_le_bytes([e[0], e[1]]),
                perm: u16::from_le_bytes([e[2], e[3]]),
                id: u32::from_le_bytes([e[4], e[5], e[6], e[7]]),
            })
            .collect();
        let count = |t| entries.iter().filter(|e| e.tag == t).count();
        let named = count(USER) + count(GROUP);
        let ordered = entries
            .windows(2)
            .all(|w| (w[0].tag, w[0].id) < (w[1].tag, w[1].id));
        let valid_tags = entries.iter().all(|e| {
            matches!(e.tag, USER_OBJ | USER | GROUP_OBJ | GROUP | MASK | OTHER) && e.perm <= 7
        });
        if !ordered
            || !valid_tags
            || count(USER_OBJ) != 1
            || count(GROUP_OBJ) != 1
            || count(OTHER) != 1
            || count(MASK) > 1
            || (named > 0 && count(MASK) == 0)
        {
            return Err(bad);
        }
        Ok(Acl { entries })
    }

    /// The xattr form.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = VERSION.to_le_bytes().to_vec();
        for e in &self.entries {
            out.extend_from_slice(&e.tag.to_le_bytes());
            out.extend_from_slice(&e.perm.to_le_bytes());
            out.extend_from_slice(&e.id.to_le_bytes());
        }
        out
    }

    fn perm(&self, tag: u16) -> Option<u16> {
        self.entries.iter().find(|e| e.tag == tag).map(|e| e.perm)
    }

    fn set(&mut self, tag: u16, perm: u16) {
        for e in self.entries.iter_mut().filter(|e| e.tag == tag) {
            e.perm = perm;
        }
    }

    /// Whether the ACL says no more than the mode bits (then it is not stored).
    pub fn is_minimal(&self) -> bool {
        self.entries.len() == 3
    }

    /// The rwx bits for owner, group class and others that this ACL implies.
    pub fn mode_bits(&self) -> u32 {
        let group = self.perm(MASK).or(self.perm(GROUP_OBJ)).unwrap_or(0);
        ((self.perm(USER_OBJ).unwrap_or(0) as u32) << 6)
            | ((group as u32) << 3)
            | self.perm(OTHER).unwrap_or(0) as u32
    }

    /// chmod: the owner, mask (or group) and other entries take the new bits.
    pub fn chmod(&mut self, perm: u32) {
        self.set(USER_OBJ, ((perm >> 6) & 7) as u16);
        let group_tag = if self.perm(MASK).is_some() {
            MASK
        } else {
            GROUP_OBJ
        };
        self.set(group_tag, ((perm >> 3) & 7) as u16);
        self.set(OTHER, (perm & 7) as u16);
    }

    /// Inheritance at create: the access ACL of a new inode is its
    /// directory's default ACL masked by the requested mode; returns it and
    /// the permission bits the inode gets (special bits kept from `perm`).
    pub fn inherit(&self, perm: u32) -> (Acl, u32) {
        let mut acl = self.clone();
        let owner = acl.perm(USER_OBJ).unwrap_or(0) & ((perm >> 6) & 7) as u16;
        acl.set(USER_OBJ, owner);
        let group_tag = if acl.perm(MASK).is_some() {
            MASK
        } else {
            GROUP_OBJ
        };
        let group = acl.perm(group_tag).unwrap_or(0) & ((perm >> 3) & 7) as u16;
        acl.set(group_tag, group);
        let other = acl.perm(OTHER).unwrap_or(0) & (perm & 7) as u16;
        acl.set(OTHER, other);
        let bits = acl.mode_bits() | (perm & 0o7000);
        (acl, bits)
    }

    /// A minimal ACL for `perm`, for tests and tools.
    pub fn from_mode(perm: u32) -> Acl {
        Acl {
            entries: vec![
                Entry {
                    tag: USER_OBJ,
                    perm: ((perm >> 6) & 7) as u16,
                    id: UNDEFINED_ID,
                },
                Entry {
                    tag: GROUP_OBJ,
                    perm: ((perm >> 3) & 7) as u16,
                    id: UNDEFINED_ID,
                },
                Entry {
                    tag: OTHER,
                    perm: (perm & 7) as u16,
                    id: UNDEFINED_ID,
                },
            ],
        }
    }

    /// Adds a named user entry (and a mask if none), for tests and tools.
    pub fn with_user(mut self, uid: u32, perm: u16) -> Acl {
        self.entries.push(Entry {
            tag: USER,
            perm,
            id: uid,
        });
        if self.perm(MASK).is_none() {
            let group = self.perm(GROUP_OBJ).unwrap_or(0);
            self.entries.push(Entry {
                tag: MASK,
                perm: group | perm,
                id: UNDEFINED_ID,
            });
        }
        self.entries.sort_by_key(|e| (e.tag, e.id));
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_validation() {
        let acl = Acl::from_mode(0o750).with_user(1000, 6);
        assert_eq!(Acl::parse(&acl.encode()).unwrap(), acl);
        assert!(!acl.is_minimal());
        assert_eq!(
            acl.mode_bits(),
            0o770,
            "the mask stands for the group class"
        );
        assert!(Acl::parse(&[2, 0, 0, 0]).is_err(), "no entries");
        assert!(Acl::parse(&[1, 0, 0, 0]).is_err(), "version 1");
        let mut bad = acl.encode();
        bad.truncate(bad.len() - 8);
        assert!(Acl::parse(&bad).is_err(), "the other entry is missing");
    }

    #[test]
    fn chmod_updates_the_mask_not_the_group_entry() {
        let mut acl = Acl::from_mode(0o770).with_user(1000, 7);
        acl.chmod(0o750);
        assert_eq!(acl.perm(MASK), Some(5));
        assert_eq!(acl.perm(GROUP_OBJ), Some(7));
        assert_eq!(acl.mode_bits(), 0o750);
    }

    #[test]
    fn inheritance_masks_by_the_requested_mode() {
        let default = Acl::from_mode(0o775).with_user(1000, 7);
        let (acl, bits) = default.inherit(0o666);
        assert_eq!(bits, 0o664);
        assert_eq!(
            acl.perm(USER),
            Some(7),
            "named entries are kept; the mask limits them"
        );
        assert_eq!(acl.perm(MASK), Some(6));
    }
}
