//! Run tasks with their large arguments and results passed as proxies.
//!
//! The control channel ([`channel`]) carries task messages between
//! processes as length-prefixed frames.

pub mod channel;
pub mod farm;

pub use channel::{FrameListener, FrameStream, MAX_FRAME};
