//! The key hierarchy: one random master key, purpose keys derived from it.
//!
//! Key types do not implement `Debug` or `Display` and are zeroized on drop,
//! so a key cannot end up in a log line or a core dump by accident.

use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::store::format::derive;

/// The repository's 256-bit master key. Never stored in the clear (except in
/// a repository created with `--insecure-no-encryption`).
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct MasterKey([u8; 32]);

impl MasterKey {
    /// Draws a new random master key.
    pub fn generate() -> Self {
        MasterKey(rand::random())
    }
    /// Wraps existing key bytes (from an unwrapped slot).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        MasterKey(bytes)
    }
    /// The raw key, for wrapping into a slot.
    pub fn expose(&self) -> &[u8; 32] {
        &self.0
    }
    fn derive(&self, context: &str) -> [u8; 32] {
        blake3::derive_key(context, &self.0)
    }
    /// The key of one storage tier's data, so a tier's expired data can be
    /// made unreadable by forgetting its key (reserved: tier 0 is the blob key
    /// until tiers exist).
    pub fn tier_key(&self, tier: u32) -> [u8; 32] {
        let mut input = [0u8; 36];
        input[..32].copy_from_slice(&self.0);
        input[32..].copy_from_slice(&tier.to_le_bytes());
        let key = blake3::derive_key(derive::TIER, &input);
        input.zeroize();
        key
    }
}

/// Purpose keys derived from the master key.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct Keys {
    /// Keyed BLAKE3 of chunk plaintext.
    pub id: [u8; 32],
    /// Seals objects in packs.
    pub blob: [u8; 32],
    /// Seals index values.
    pub index: [u8; 32],
    /// Keys name hashes in index keys.
    pub name: [u8; 32],
    /// Seeds the chunker's gear table.
    pub chunker: [u8; 32],
    /// Authenticates the config file.
    pub config: [u8; 32],
}

impl Keys {
    /// Derives every purpose key from the master key.
    pub fn derive(master: &MasterKey) -> Keys {
        Keys {
            id: master.derive(derive::ID),
            blob: master.derive(derive::BLOB),
            index: master.derive(derive::INDEX),
            name: master.derive(derive::NAME),
            chunker: master.derive(derive::CHUNKER),
            config: master.derive(derive::CONFIG),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pins the derivation contexts: a change here changes every key.
    #[test]
    fn golden_derivation() {
        let k = Keys::derive(&MasterKey::from_bytes([7; 32]));
        assert_eq!(hex::encode(&k.id[..8]), GOLDEN_ID_KEY);
        assert_eq!(hex::encode(&k.blob[..8]), GOLDEN_BLOB_KEY);
    }

    const GOLDEN_ID_KEY: &str = "115e7de68987e5e8";
    const GOLDEN_BLOB_KEY: &str = "be9a67e7ae8e027f";

    #[test]
    fn purpose_keys_differ() {
        let k = Keys::derive(&MasterKey::generate());
        let all = [k.id, k.blob, k.index, k.name, k.chunker, k.config];
        for (i, a) in all.iter().enumerate() {
            for b in &all[i + 1..] {
                assert_ne!(a, b);
            }
        }
    }

    #[test]
    fn tier_keys_differ_per_tier() {
        let m = MasterKey::generate();
        assert_ne!(m.tier_key(1), m.tier_key(2));
    }
}
