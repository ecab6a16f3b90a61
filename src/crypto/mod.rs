//! Keys, sealing and key slots.

pub mod keys;
pub mod seal;
pub mod slot;

pub use keys::{Keys, MasterKey};
pub use seal::{SealError, Sealer};
