//! Bridge semantics as plain functions. See the crate description.
