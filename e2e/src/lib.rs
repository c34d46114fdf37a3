//! End-to-end support for Causeway: the harness the tests in `tests/` use, against the
//! local stack of `e2e/up.sh` (a control plane and a real node) or a real cluster.

pub mod harness;
