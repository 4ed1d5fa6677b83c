//! The grants restrict makes (to a domain's group, or to one service's role for a
//! choice that keeps an access), and the steps that make the roles and grants.

use super::*;

impl Planner<'_> {
    pub(super) fn add_grant(&mut self, to: &str, need: &Need, because: Option<String>) {
        let acc = self
            .grants
            .entry((to.to_string(), need.kind, need.relation.clone()))
            .or_default();
        match &need.columns {
            None => {
                acc.privileges.insert(need.privilege);
            }
            Some(cols) => acc
                .columns
                .entry(need.privilege)
                .or_default()
                .extend(cols.iter().cloned()),
        }
        if let Some(b) = because {
            match &mut acc.because {
                Some(old) if !old.contains(&b) => {
                    old.push_str("; ");
                    old.push_str(&b);
                }
                Some(_) => {}
                None => acc.because = Some(b),
            }
        }
        let schema = &need.relation.schema;
        let usable = self
            .catalog
            .schemas
            .iter()
            .find(|s| &s.name == schema)
            .is_some_and(|s| {
                // PUBLIC's privileges on a domain's schema are revoked below.
                let public_counts = !self.plan.domains.iter().any(|d| d.name == s.name);
                s.owner == to
                    || s.grants.iter().any(|g| {
                        g.privilege == "USAGE"
                            && (g.grantee == to || (g.grantee == "PUBLIC" && public_counts))
                    })
            });
        if !usable {
            self.schema_usage.insert((to.to_string(), schema.clone()));
        }
    }

    pub(super) fn will_grant(
        &self,
        to: &str,
        kind: RelKind,
        relation: &QualName,
        privilege: &str,
    ) -> bool {
        self.grants
            .get(&(to.to_string(), kind, relation.clone()))
            .is_some_and(|acc| {
                acc.privileges.contains(privilege) || acc.columns.contains_key(privilege)
            })
    }

    pub(super) fn steps(&self, services: &[ServiceRoles]) -> Vec<Step> {
        let mut steps = Vec::new();
        let groups: BTreeMap<&str, &str> = services
            .iter()
            .map(|s| (s.group.as_str(), s.domain.as_str()))
            .collect();
        for (group, domain) in &groups {
            steps.push(Step {
                id: format!("{CREATE_GROUP_STEP}{group}"),
                description: format!(
                    "group role {} carries the {domain} domain's privileges",
                    display_ident(group)
                ),
                target: Target::Source,
                action: Action::Sql(SqlAction::transactional(
                    format!("CREATE ROLE {} NOLOGIN;", ident(group)),
                    role_exists(group),
                    format!("DROP ROLE {};", ident(group)),
                )),
            });
        }
        for s in services {
            if s.new_role {
                let limit = s
                    .connection_limit
                    .map(|n| format!(" CONNECTION LIMIT {n}"))
                    .unwrap_or_default();
                // In this database, the search_path the service's old roles had.
                let path = self
                    .inherited_paths
                    .get(&s.role)
                    .map(|path| {
                        format!(
                            " ALTER ROLE {} IN DATABASE {} SET search_path = {};",
                            ident(&s.role),
                            ident(&self.catalog.server.database),
                            crate::sql::ident_list(path)
                        )
                    })
                    .unwrap_or_default();
                steps.push(Step {
                    id: format!("{CREATE_LOGIN_STEP}{}", s.role),
                    description: format!(
                        "login role {} for service {}",
                        display_ident(&s.role),
                        s.name
                    ),
                    target: Target::Source,
                    action: Action::Sql(SqlAction::transactional(
                        format!("CREATE ROLE {} LOGIN{limit};{path}", ident(&s.role)),
                        role_exists(&s.role),
                        format!("DROP ROLE {};", ident(&s.role)),
                    )),
                });
            } else if let Some(limit) = s.connection_limit {
                let before = self
                    .catalog
                    .roles
                    .iter()
                    .find(|r| r.name == s.role)
                    .map_or(-1, |r| r.connection_limit);
                if before != limit {
                    steps.push(Step {
                        id: format!("connection limit {}", s.role),
                        description: format!(
                            "at most {limit} connections for {} (was {before})",
                            display_ident(&s.role)
                        ),
                        target: Target::Source,
                        action: Action::Sql(SqlAction::transactional(
                            format!("ALTER ROLE {} CONNECTION LIMIT {limit};", ident(&s.role)),
                            format!(
                                "EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = {} AND rolconnlimit = {limit})",
                                lit(&s.role)
                            ),
                            format!("ALTER ROLE {} CONNECTION LIMIT {before};", ident(&s.role)),
                        )),
                    });
                }
            }
            steps.push(Step {
                id: format!("grant {} to {}", s.group, s.role),
                description: format!(
                    "{} becomes a member of {}",
                    display_ident(&s.role),
                    display_ident(&s.group)
                ),
                target: Target::Source,
                action: Action::Sql(SqlAction::transactional(
                    format!("GRANT {} TO {};", ident(&s.group), ident(&s.role)),
                    is_member(&s.group, &s.role),
                    format!("REVOKE {} FROM {};", ident(&s.group), ident(&s.role)),
                )),
            });
        }
        for (to, schema) in &self.schema_usage {
            steps.push(Step {
                id: format!("grant usage on schema {schema} to {to}"),
                description: format!(
                    "USAGE on schema {} for {}",
                    display_ident(schema),
                    display_ident(to)
                ),
                target: Target::Source,
                action: Action::Sql(SqlAction::transactional(
                    format!("GRANT USAGE ON SCHEMA {} TO {};", ident(schema), ident(to)),
                    acl_has(
                        &CheckObject::Schema(schema.clone()),
                        None,
                        to,
                        &["USAGE"],
                        None,
                    ),
                    format!(
                        "REVOKE USAGE ON SCHEMA {} FROM {};",
                        ident(schema),
                        ident(to)
                    ),
                )),
            });
        }
        for ((to, kind, relation), acc) in &self.grants {
            let on = format!(
                "{} {}",
                kind.keyword(),
                qualified(&relation.schema, &relation.name)
            );
            let object = CheckObject::Relation(relation.clone());
            let because = acc
                .because
                .as_ref()
                .map(|b| format!(" ({b})"))
                .unwrap_or_default();
            if !acc.privileges.is_empty() {
                let privileges = in_order(&acc.privileges);
                let list = privileges.join(", ");
                steps.push(Step {
                    id: format!("grant {} on {relation} to {to}", list),
                    description: format!(
                        "{list} on {} {relation} for {}{because}",
                        kind.name(),
                        display_ident(to)
                    ),
                    target: Target::Source,
                    action: Action::Sql(SqlAction::transactional(
                        format!("GRANT {list} ON {on} TO {};", ident(to)),
                        acl_has(&object, None, to, &privileges, None),
                        format!("REVOKE {list} ON {on} FROM {};", ident(to)),
                    )),
                });
            }
            for (privilege, columns) in &acc.columns {
                let cols: Vec<&str> = columns.iter().map(String::as_str).collect();
                let list = crate::sql::ident_list(&cols);
                steps.push(Step {
                    id: format!(
                        "grant {privilege} ({}) on {relation} to {to}",
                        cols.join(", ")
                    ),
                    description: format!(
                        "{privilege} on {} column(s) of {relation} for {}{because}",
                        cols.len(),
                        display_ident(to)
                    ),
                    target: Target::Source,
                    action: Action::Sql(SqlAction::transactional(
                        format!("GRANT {privilege} ({list}) ON {on} TO {};", ident(to)),
                        acl_has(&object, Some(&cols), to, &[privilege], None),
                        format!("REVOKE {privilege} ({list}) ON {on} FROM {};", ident(to)),
                    )),
                });
            }
        }
        for revoke in &self.revokes {
            steps.push(revoke_step(revoke));
        }
        steps
    }
}

impl Planner<'_> {
    /// What the steps change in the catalog, for `phases::forecast`: the roles, the
    /// memberships, the grants and the revokes, in the order the steps make them.
    pub(super) fn changes(&self, services: &[ServiceRoles]) -> Changes {
        let mut changes = Changes::default();
        let exists = |name: &str| self.catalog.roles.iter().any(|r| r.name == name);
        let new_role = |name: &str, login: bool, limit: Option<i32>| crate::catalog::Role {
            name: name.to_string(),
            login,
            superuser: false,
            create_db: false,
            create_role: false,
            replication: false,
            bypass_rls: false,
            inherit: true,
            connection_limit: limit.unwrap_or(-1),
            valid_until: None,
            member_of: Vec::new(),
            search_path: None,
        };
        let groups: BTreeSet<&str> = services.iter().map(|s| s.group.as_str()).collect();
        for group in groups.into_iter().filter(|g| !exists(g)) {
            changes.new_roles.push(new_role(group, false, None));
        }
        for s in services {
            if s.new_role && !exists(&s.role) {
                changes
                    .new_roles
                    .push(new_role(&s.role, true, s.connection_limit));
            } else if let Some(limit) = s.connection_limit {
                changes.connection_limits.push((s.role.clone(), limit));
            }
            changes.memberships.push((s.role.clone(), s.group.clone()));
        }
        for (to, schema) in &self.schema_usage {
            changes.grants.push(Privilege {
                on: Object::Schema(schema.clone()),
                column: None,
                grantee: to.clone(),
                privilege: "USAGE".into(),
            });
        }
        for ((to, _, relation), acc) in &self.grants {
            for privilege in in_order(&acc.privileges) {
                changes.grants.push(Privilege {
                    on: Object::Relation(relation.clone()),
                    column: None,
                    grantee: to.clone(),
                    privilege: privilege.into(),
                });
            }
            for (privilege, columns) in &acc.columns {
                for column in columns {
                    changes.grants.push(Privilege {
                        on: Object::Relation(relation.clone()),
                        column: Some(column.clone()),
                        grantee: to.clone(),
                        privilege: privilege.to_string(),
                    });
                }
            }
        }
        for revoke in &self.revokes {
            revoke.record(&mut changes);
        }
        changes
    }
}
