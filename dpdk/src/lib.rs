//! wrappers
