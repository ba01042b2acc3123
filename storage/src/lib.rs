//! placeholder

pub mod metadata;
