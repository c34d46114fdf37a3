//! End-to-end support for Causeway: the pod runner (test infrastructure that plays the
//! kubelet on a control plane without nodes) and the harness the tests in `tests/` use.

pub mod harness;
pub mod runner;
