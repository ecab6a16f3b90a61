//! Keys, sealing, key slots, and the codec that turns a chunk or a record
//! into a sealed object and back.

pub mod codec;
pub mod keys;
pub mod seal;
pub mod slot;

pub use keys::{Keys, MasterKey};
pub use seal::{SealError, Sealer};
