//! Sealing: authenticated encryption of every object the repository stores.
//!
//! A sealed object is `suite u8 | nonce [12] | ciphertext | tag [16]`. The
//! associated data is `"strata/1" | suite | repository id | kind | context`,
//! where the context names where the object belongs (its id, its pack and
//! checkpoint, its index row). So a ciphertext moved to another place, kind,
//! repository or suite fails to open instead of being accepted.

use aes_gcm_siv::aead::{AeadInOut, KeyInit};
use aes_gcm_siv::{Aes256GcmSiv, Nonce, Tag};

use crate::store::format::{Kind, Suite, AD_DOMAIN, NONCE_LEN, SEAL_OVERHEAD, TAG_LEN};
use crate::store::id::RepoId;

/// A sealed object that does not open.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SealError {
    /// Too short to be a sealed object.
    #[error("sealed object is truncated ({len} bytes)")]
    Truncated {
        /// Its length.
        len: usize,
    },
    /// Sealed with a suite other than the repository's.
    #[error("sealed object names cipher suite {found}, the repository uses {expected}")]
    WrongSuite {
        /// Suite byte found.
        found: u8,
        /// The repository's suite.
        expected: u8,
    },
    /// Tag mismatch: damaged, moved, or sealed with another key.
    #[error(
        "authentication failed: the bytes are damaged, misplaced, or were sealed with another key"
    )]
    Forged,
}

/// Seals and opens objects with one purpose key of one repository.
pub struct Sealer {
    suite: Suite,
    repo: RepoId,
    aead: Aes256GcmSiv,
    mac_key: [u8; 32],
}

impl Sealer {
    /// A sealer for `suite` with a 256-bit purpose key.
    pub fn new(suite: Suite, repo: RepoId, key: &[u8; 32]) -> Sealer {
        Sealer {
            suite,
            repo,
            aead: Aes256GcmSiv::new(key.into()),
            mac_key: *key,
        }
    }

    /// The suite this sealer writes.
    pub fn suite(&self) -> Suite {
        self.suite
    }

    fn associated_data(&self, kind: Kind, context: &[u8]) -> Vec<u8> {
        let mut ad = Vec::with_capacity(AD_DOMAIN.len() + 2 + 16 + context.len());
        ad.extend_from_slice(AD_DOMAIN);
        ad.push(self.suite as u8);
        ad.extend_from_slice(self.repo.as_bytes());
        ad.push(kind as u8);
        ad.extend_from_slice(context);
        ad
    }

    fn plain_tag(&self, ad: &[u8], plain: &[u8]) -> [u8; TAG_LEN] {
        let mut h = blake3::Hasher::new_keyed(&self.mac_key);
        h.update(&(ad.len() as u64).to_le_bytes());
        h.update(ad);
        h.update(plain);
        let mut tag = [0u8; TAG_LEN];
        tag.copy_from_slice(&h.finalize().as_bytes()[..TAG_LEN]);
        tag
    }

    /// Seals `plain` as an object of `kind` belonging at `context`.
    pub fn seal(&self, kind: Kind, context: &[u8], plain: &[u8]) -> Vec<u8> {
        self.seal_parts(kind, context, &[plain])
    }

    /// Seals the concatenation of `parts` without joining them first.
    pub fn seal_parts(&self, kind: Kind, context: &[u8], parts: &[&[u8]]) -> Vec<u8> {
        let len = parts.iter().map(|p| p.len()).sum();
        self.seal_with(kind, context, len, |out| {
            parts.iter().for_each(|p| out.extend_from_slice(p))
        })
    }

    /// Seals the plaintext that `fill` appends to the output buffer (about
    /// `len` bytes), so a producer such as the compressor writes it where
    /// it is then encrypted in place, without a copy in between.
    pub fn seal_with(
        &self,
        kind: Kind,
        context: &[u8],
        len: usize,
        fill: impl FnOnce(&mut Vec<u8>),
    ) -> Vec<u8> {
        let ad = self.associated_data(kind, context);
        let mut out = Vec::with_capacity(len + SEAL_OVERHEAD);
        out.push(self.suite as u8);
        match self.suite {
            Suite::Plain => {
                out.extend_from_slice(&[0u8; NONCE_LEN]);
                fill(&mut out);
                let tag = self.plain_tag(&ad, &out[1 + NONCE_LEN..]);
                out.extend_from_slice(&tag);
            }
            Suite::Aes256GcmSiv => {
                let nonce: [u8; NONCE_LEN] = rand::random();
                out.extend_from_slice(&nonce);
                fill(&mut out);
                let body = &mut out[1 + NONCE_LEN..];
                let tag = self
                    .aead
                    .encrypt_inout_detached(&Nonce::from(nonce), &ad, body.into())
                    .expect("object length is bounded far below the AEAD limit");
                out.extend_from_slice(&tag);
            }
        }
        out
    }

    /// Opens a sealed object of `kind` expected at `context`.
    pub fn open(&self, kind: Kind, context: &[u8], sealed: &[u8]) -> Result<Vec<u8>, SealError> {
        let mut buf = sealed.to_vec();
        let len = self.open_in_place(kind, context, &mut buf)?.len();
        buf.drain(..1 + NONCE_LEN);
        buf.truncate(len);
        Ok(buf)
    }

    /// Opens a sealed object where it lies: the plaintext is decrypted in
    /// `sealed` and returned as the part of it that holds it. After an
    /// error the bytes of `sealed` are unspecified; discard them.
    pub fn open_in_place<'a>(
        &self,
        kind: Kind,
        context: &[u8],
        sealed: &'a mut [u8],
    ) -> Result<&'a mut [u8], SealError> {
        if sealed.len() < SEAL_OVERHEAD {
            return Err(SealError::Truncated { len: sealed.len() });
        }
        if sealed[0] != self.suite as u8 {
            return Err(SealError::WrongSuite {
                found: sealed[0],
                expected: self.suite as u8,
            });
        }
        let ad = self.associated_data(kind, context);
        let at = sealed.len() - TAG_LEN;
        let (head, tag) = sealed.split_at_mut(at);
        let nonce: [u8; NONCE_LEN] = head[1..1 + NONCE_LEN].try_into().expect("length checked");
        let body = &mut head[1 + NONCE_LEN..];
        match self.suite {
            Suite::Plain => {
                let expected = self.plain_tag(&ad, body);
                if !constant_time_eq(&expected, tag) || nonce != [0u8; NONCE_LEN] {
                    return Err(SealError::Forged);
                }
            }
            Suite::Aes256GcmSiv => {
                let tag = Tag::try_from(&*tag).map_err(|_| SealError::Forged)?;
                self.aead
                    .decrypt_inout_detached(&Nonce::from(nonce), &ad, (&mut *body).into(), &tag)
                    .map_err(|_| SealError::Forged)?;
            }
        }
        Ok(body)
    }
}

impl Drop for Sealer {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.mac_key);
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sealers() -> [Sealer; 2] {
        let repo = RepoId::random();
        let key = rand::random();
        [
            Sealer::new(Suite::Plain, repo, &key),
            Sealer::new(Suite::Aes256GcmSiv, repo, &key),
        ]
    }

    /// Pins the associated-data layout and the plain suite's tag: a change
    /// here makes every existing repository unreadable.
    #[test]
    fn golden_plain_seal() {
        let s = Sealer::new(Suite::Plain, RepoId([0x11; 16]), &[0x22; 32]);
        let sealed = s.seal(Kind::Chunk, &[0x33; 32], b"strata");
        assert_eq!(
            hex::encode(&sealed[..19]),
            "00000000000000000000000000737472617461"
        );
        assert_eq!(hex::encode(&sealed[19..]), GOLDEN_TAG);
    }

    const GOLDEN_TAG: &str = "8cb5797270b331ae9e25f9b8d3185ffd";

    #[test]
    fn fresh_nonce_per_seal() {
        let s = &sealers()[1];
        assert_ne!(
            s.seal(Kind::Chunk, b"x", b"same"),
            s.seal(Kind::Chunk, b"x", b"same")
        );
    }

    #[test]
    fn encrypted_suite_hides_plaintext() {
        let s = &sealers()[1];
        let sealed = s.seal(Kind::Chunk, b"", b"patient record 4711");
        assert!(!sealed.windows(7).any(|w| w == b"patient"));
    }

    #[test]
    fn wrong_suite_is_named() {
        let [plain, aes] = sealers();
        let sealed = plain.seal(Kind::Chunk, b"", b"x");
        assert_eq!(
            aes.open(Kind::Chunk, b"", &sealed),
            Err(SealError::WrongSuite {
                found: 0,
                expected: 1
            })
        );
    }

    proptest! {
        #[test]
        fn open_inverts_seal(data in proptest::collection::vec(any::<u8>(), 0..4096), ctx in proptest::collection::vec(any::<u8>(), 0..48)) {
            for s in sealers() {
                let sealed = s.seal(Kind::Chunk, &ctx, &data);
                prop_assert_eq!(sealed.len(), data.len() + SEAL_OVERHEAD);
                prop_assert_eq!(s.open(Kind::Chunk, &ctx, &sealed).unwrap(), data.clone());
            }
        }

        #[test]
        fn moved_or_flipped_objects_are_rejected(data in proptest::collection::vec(any::<u8>(), 1..512), flip in any::<prop::sample::Index>()) {
            for s in sealers() {
                let sealed = s.seal(Kind::Chunk, b"here", &data);
                prop_assert_eq!(s.open(Kind::Chunk, b"there", &sealed), Err(SealError::Forged));
                prop_assert_eq!(s.open(Kind::Tree, b"here", &sealed), Err(SealError::Forged));
                let mut bad = sealed.clone();
                let i = 1 + flip.index(bad.len() - 1);
                bad[i] ^= 0x40;
                prop_assert_eq!(s.open(Kind::Chunk, b"here", &bad), Err(SealError::Forged));
            }
        }

        #[test]
        fn spliced_ciphertexts_are_rejected(a in proptest::collection::vec(any::<u8>(), 16..256), b in proptest::collection::vec(any::<u8>(), 16..256)) {
            let s = &sealers()[1];
            let x = s.seal(Kind::Chunk, b"c", &a);
            let y = s.seal(Kind::Chunk, b"c", &b);
            let mut spliced = x[..x.len() / 2].to_vec();
            spliced.extend_from_slice(&y[y.len() / 2..]);
            prop_assume!(spliced != x && spliced != y);
            prop_assert!(s.open(Kind::Chunk, b"c", &spliced).is_err());
        }
    }
}
