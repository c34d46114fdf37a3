//! Scenario 7, operator scale: not measured yet (see the section it writes).

use crate::report::{Report, Section, TargetCheck};

pub fn todo(report: &mut Report, why: &str) {
    report.targets.push(TargetCheck {
        target: "Operator: 1,000 Bridges applied at once → all Ready (time, API requests, RSS)"
            .into(),
        measured: "TODO, see scenario 7".into(),
        met: None,
    });
    report.sections.push(Section {
        title: "7. Operator scale — TODO".into(),
        method: format!(
            "**Not measured yet.** {why}\n\n\
             Plan: bring up the e2e stack (`e2e/up.sh` with its own `E2E_DIR`), read `apiserver_request_total` from the \
             apiserver's `/metrics`, apply 1,000 Bridges in one `kubectl apply`, poll until every Bridge has \
             `Ready=True`, read the counter again (requests by verb and resource) and the operator's `VmRSS`; five runs, \
             each in a fresh namespace."
        ),
        tables: vec![],
        notes: vec![],
    });
}
