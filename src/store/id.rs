//! Identifiers: one newtype per kind of id, parsed and validated once.

use std::fmt;
use std::str::FromStr;

use crate::store::format::{OBJECT_ID_LEN, PACK_ID_LEN, REPO_ID_LEN};

/// An id string that is not the hex form of the expected number of bytes.
#[derive(Debug, thiserror::Error)]
#[error("{what} id {text:?} is not {len} bytes of hex")]
pub struct BadId {
    what: &'static str,
    text: String,
    len: usize,
}

macro_rules! hex_id {
    ($(#[$doc:meta])* $name:ident, $len:expr, $what:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub [u8; $len]);

        impl $name {
            /// Draws a fresh random id.
            pub fn random() -> Self {
                Self(rand::random())
            }
            /// The raw bytes.
            pub fn as_bytes(&self) -> &[u8; $len] {
                &self.0
            }
            /// Reads an id from exactly `$len` bytes.
            pub fn from_slice(bytes: &[u8]) -> Option<Self> {
                bytes.try_into().ok().map(Self)
            }
            /// The first eight hex digits, for logs and messages.
            pub fn short(&self) -> String {
                hex::encode(&self.0[..4])
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&hex::encode(self.0))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.short())
            }
        }

        impl FromStr for $name {
            type Err = BadId;
            fn from_str(s: &str) -> Result<Self, BadId> {
                let mut out = [0u8; $len];
                hex::decode_to_slice(s, &mut out).map_err(|_| BadId {
                    what: $what,
                    text: s.chars().take(80).collect(),
                    len: $len,
                })?;
                Ok(Self(out))
            }
        }
    };
}

hex_id!(
    /// A repository's random identity, bound into every sealed object.
    RepoId, REPO_ID_LEN, "repository"
);
hex_id!(
    /// A pack file's random name.
    PackId, PACK_ID_LEN, "pack"
);
hex_id!(
    /// A content id: keyed BLAKE3 of the plaintext, so it says nothing about
    /// the content to someone without the key.
    ChunkId, OBJECT_ID_LEN, "chunk"
);
hex_id!(
    /// A key slot's random name.
    SlotId, REPO_ID_LEN, "key slot"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_through_hex() {
        let id = ChunkId::random();
        assert_eq!(id.to_string().parse::<ChunkId>().unwrap(), id);
        assert!("zz".parse::<PackId>().is_err());
        assert!("00".parse::<PackId>().is_err(), "too short");
    }
}
