//! The statements the proof runs, each as its service's role, with the checks only
//! a run would make.

use super::*;

impl Planner<'_> {
    pub(super) fn probes(&self, services: &[ServiceRoles], statements: &[Statement]) -> Vec<Probe> {
        statements
            .iter()
            .filter_map(|s| {
                let service = services.iter().find(|x| x.name == s.service)?;
                let runtime = s
                    .needs
                    .iter()
                    .filter_map(|n| n.runtime.map(|why| (n, why)))
                    .map(|(n, why)| RuntimeCheck {
                        what: format!(
                            "{}{} on {} {} ({why})",
                            n.privilege,
                            n.columns
                                .as_ref()
                                .map(|c| format!(
                                    " ({})",
                                    c.iter().cloned().collect::<Vec<_>>().join(", ")
                                ))
                                .unwrap_or_default(),
                            n.kind.name(),
                            n.relation
                        ),
                        check: privilege_check(n),
                    })
                    .collect();
                let accepted_by: BTreeSet<String> = s
                    .needs
                    .iter()
                    .flat_map(|n| {
                        n.data
                            .iter()
                            .filter(|t| self.crosses(t, n.privilege, service))
                            .map(move |t| (n, t))
                    })
                    .filter_map(|(n, t)| {
                        let subject = format!(
                            "{} {} by {}",
                            if n.privilege == "SELECT" {
                                "read"
                            } else {
                                "write"
                            },
                            self.original_name(t),
                            service.name
                        );
                        let c = self.crossings.get(&subject)?;
                        c.decision.as_ref().filter(|d| !d.granted).map(|_| subject)
                    })
                    .collect();
                Some(Probe {
                    service: s.service.clone(),
                    role: service.role.clone(),
                    search_path: self.configured_search_path(&service.role),
                    origin: s.origin.clone(),
                    sql: s.sql.clone(),
                    runtime,
                    accepted_by: accepted_by.into_iter().collect(),
                })
            })
            .collect()
    }
}
