//! The Causeway operator: reconciles WorkerPools, Bridges and Plugins into workers.

pub mod builders;
