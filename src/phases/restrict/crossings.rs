//! Statements that reach another domain's table: each a decision the plan must hold,
//! and what the chosen access pattern means for the grants.

use super::*;

impl Planner<'_> {
    /// Sorts each statement's needs into the domain's own grants and crossings.
    pub(super) fn crossings_and_grants(
        &mut self,
        services: &[ServiceRoles],
        statements: &[Statement],
    ) {
        for s in statements {
            let Some(service) = services.iter().find(|x| x.name == s.service) else {
                continue;
            };
            for need in &s.needs {
                let write = need.privilege != "SELECT";
                let foreign: Vec<&QualName> = need
                    .data
                    .iter()
                    .filter(|t| self.crosses(t, need.privilege, service))
                    .collect();
                if foreign.is_empty() {
                    // A delegated table's writes go to its owner's own role: the
                    // domain's group would hand them to every service of the domain.
                    let owners_only =
                        write && need.data.iter().any(|t| self.delegated_owner(t).is_some());
                    let to = if owners_only {
                        &service.role
                    } else {
                        &service.group
                    };
                    self.add_grant(to, need, None);
                    continue;
                }
                let mut granted = true;
                let mut because = Vec::new();
                for table in foreign {
                    let crossing = self.crossing(service, table, write);
                    let at = StatementRef {
                        origin: s.origin.clone(),
                        sql: s.sql.clone(),
                    };
                    if !crossing.statements.contains(&at) {
                        crossing.statements.push(at);
                    }
                    match &crossing.decision {
                        Some(d) if d.granted => {
                            because.push(format!("{}: {}", crossing.subject, d.meaning))
                        }
                        _ => granted = false,
                    }
                }
                if granted {
                    self.add_grant(&service.role, need, Some(because.join("; ")));
                }
            }
        }
    }

    /// Whether `service` reaching `table` with `privilege` crosses its domain's
    /// boundary: another domain's table, or a write the plan delegates to another
    /// service.
    pub(super) fn crosses(
        &self,
        table: &QualName,
        privilege: &str,
        service: &ServiceRoles,
    ) -> bool {
        self.domain(table) != Some(service.domain.as_str())
            || (privilege != "SELECT" && self.delegated_to_another(table, &service.name))
    }

    /// Whether the plan decided that `table`'s writes are delegated to a service
    /// other than `service` (`ownership of T` = `delegate:<owner>`): then even a
    /// service of the table's own domain writes it only through a decision.
    fn delegated_to_another(&self, table: &QualName, service: &str) -> bool {
        self.delegated_owner(table)
            .is_some_and(|owner| owner != service)
    }

    /// The service `table`'s writes are delegated to (`ownership of T` =
    /// `delegate:<owner>`), if the plan says so.
    fn delegated_owner(&self, table: &QualName) -> Option<&str> {
        let subject =
            crate::plan::choices::ownership_subject(&self.original_name(table).to_string());
        self.plan
            .decision(&subject)
            .and_then(|d| d.choice.strip_prefix("delegate:"))
    }

    /// A `shared-data-domain` table's writer reaches it by that decision.
    fn shared_by(&self, table: &QualName, service: &str) -> Option<CrossingDecision> {
        let sharers = self.sharers.get(&self.catalog.partition_root(table))?;
        sharers.contains(service).then(|| CrossingDecision {
            choice: crate::plan::choices::SHARED_DATA_DOMAIN.to_string(),
            granted: true,
            meaning: format!(
                "a shared data domain its writers ({}) read and write directly",
                sharers.iter().cloned().collect::<Vec<_>>().join(", ")
            ),
        })
    }

    /// The crossing of `service` to `table`, made (with the plan's decision) on first use.
    pub(super) fn crossing(
        &mut self,
        service: &ServiceRoles,
        table: &QualName,
        write: bool,
    ) -> &mut Crossing {
        let name = self.original_name(table).to_string();
        let subject = format!(
            "{} {name} by {}",
            if write { "write" } else { "read" },
            service.name
        );
        if !self.crossings.contains_key(&subject) {
            let shared = self.shared_by(table, &service.name);
            let decision = self.plan.decision(&subject).and_then(|d| {
                match interpret(write, &d.choice, &d.reason) {
                    Ok((granted, meaning)) => Some(CrossingDecision {
                        choice: d.choice.clone(),
                        granted,
                        meaning,
                    }),
                    Err(e) => {
                        self.errors.push(format!("decision for {subject}: {e}"));
                        None
                    }
                }
            });
            if let (Some(d), true) = (&decision, write) {
                self.check_delegate(&subject, &d.choice, table);
            }
            // The table's own ownership decision covers the services sharing it,
            // unless a decision about this very access says otherwise.
            let decision = decision.or(shared);
            let choices = if write { WRITE_CHOICES } else { READ_CHOICES };
            self.crossings.insert(
                subject.clone(),
                Crossing {
                    subject: subject.clone(),
                    service: service.name.clone(),
                    table: name,
                    table_domain: self.domain(table).map(str::to_string),
                    write,
                    statements: Vec::new(),
                    choices: choices.iter().map(|c| c.to_string()).collect(),
                    decision,
                },
            );
        }
        self.crossings.get_mut(&subject).expect("inserted above")
    }

    /// A write delegated to a service of the plan must go to one whose home domain
    /// holds the table.
    pub(super) fn check_delegate(&mut self, subject: &str, choice: &str, table: &QualName) {
        let Some((_, to)) = choice.split_once(':') else {
            return;
        };
        let Some(config) = self.plan.services.iter().find(|s| s.name == to) else {
            return;
        };
        let domain = self.domain(table).map(str::to_string);
        if let (Some(theirs), Some(table_domain)) = (&config.domain, &domain) {
            if theirs != table_domain {
                self.errors.push(format!(
                    "decision for {subject}: {to}'s domain is {theirs}, but the table is in {table_domain}"
                ));
            }
        }
    }
}

/// What a cross-domain choice means: (granted, meaning), or why it is not valid.
pub(super) fn interpret(write: bool, choice: &str, reason: &str) -> Result<(bool, String), String> {
    let need_reason = |what: &str| {
        if reason.trim().is_empty() {
            Err(format!("{what} needs a reason (reason = \"…\")"))
        } else {
            Ok(())
        }
    };
    if write {
        let (kind, to) = choice.split_once(':').unwrap_or((choice, ""));
        if to.trim().is_empty() || !matches!(kind, "delegate" | "temporary-grant") {
            return Err(format!(
                "{choice:?} is not one of {} (a write to another domain's table is delegated to the service that owns it)",
                WRITE_CHOICES.join(", ")
            ));
        }
        return if kind == "delegate" {
            Ok((false, format!("the service asks {to} to make this write")))
        } else {
            need_reason("a temporary grant")?;
            Ok((true, format!("until it delegates to {to}: {reason}")))
        };
    }
    match choice {
        "api" => Ok((false, "the service calls the owner's API instead".into())),
        "cache" => Ok((
            false,
            "the service reads a cache the owner keeps up to date".into(),
        )),
        "replicate" => Ok((
            true,
            "granted; once the owner's domain is retired, a copy of the columns read stays here"
                .into(),
        )),
        "shared-domain" => Ok((true, "a shared data domain its readers may read".into())),
        "temporary-grant" => {
            need_reason("a temporary grant")?;
            Ok((true, format!("temporary grant: {reason}")))
        }
        other => Err(format!(
            "{other:?} is not one of {}",
            READ_CHOICES.join(", ")
        )),
    }
}
