//! The kernel side of strata-mountd, shared with the examples (nullfs):
//! the FUSE protocol and its transports. The daemon itself is the binary.

pub mod kernel;
