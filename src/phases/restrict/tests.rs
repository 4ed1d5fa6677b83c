//! Unit tests of restrict's planning, without a database.

use super::crossings::interpret;
use super::*;
use crate::catalog::testing::{catalog, column, grant, role, table};
use crate::catalog::{Column, ColumnRef, Schema, Sequence, View, ViewDependency};
use crate::plan::testing::plan_for;
use crate::plan::Decision;

/// After assign: `sales.orders` (serial id, a compatibility view `public.orders`)
/// and `people.customers`, one domain each.
fn assigned() -> Catalog {
    let mut orders = table("sales", "orders");
    orders.columns.push(Column {
        default: Some("nextval('sales.orders_id_seq'::regclass)".into()),
        ..column("id", "integer")
    });
    orders.grants = vec![grant("PUBLIC", "SELECT"), grant("reader", "SELECT")];
    let mut c = catalog(vec![orders, table("people", "customers")]);
    c.views.push(View {
        name: QualName::new("public", "orders"),
        materialized: false,
        owner: "app".into(),
        definition: "SELECT * FROM sales.orders".into(),
        columns: vec![column("total", "integer"), column("id", "integer")],
        options: vec!["security_invoker=true".into()],
        depends_on: vec![ViewDependency {
            relation: QualName::new("sales", "orders"),
            columns: vec!["total".into(), "id".into()],
        }],
        triggers: vec![],
        comment: None,
        grants: vec![],
    });
    c.sequences.push(Sequence {
        name: QualName::new("sales", "orders_id_seq"),
        data_type: "integer".into(),
        start: 1,
        increment: 1,
        min: 1,
        max: i64::MAX,
        cycle: false,
        owner: "app".into(),
        owned_by: Some(ColumnRef {
            table: QualName::new("sales", "orders"),
            column: "id".into(),
        }),
        identity: false,
        comment: None,
        grants: vec![],
    });
    for name in ["sales", "people", "public"] {
        c.schemas.push(Schema {
            name: name.into(),
            owner: "app".into(),
            comment: None,
            grants: if name == "public" {
                vec![grant("PUBLIC", "USAGE")]
            } else {
                vec![]
            },
        });
    }
    c.roles = vec![role("u", true), role("reader", false)];
    c.normalize();
    c
}

fn plan_with(decisions: &[(&str, &str, &str)]) -> Plan {
    let mut plan = plan_for(
        &assigned(),
        &[
            ("sales", &["sales.orders"]),
            ("people", &["people.customers"]),
        ],
    );
    plan.decisions = decisions
        .iter()
        .map(|(subject, choice, reason)| Decision {
            subject: subject.to_string(),
            choice: choice.to_string(),
            reason: reason.to_string(),
            rows: None,
        })
        .collect();
    plan
}

fn workload(sql: &str) -> Workload {
    Workload::from_texts("w", &[("sales", sql)])
}

/// The SQL of the step with this id.
fn step<'a>(planned: &'a RestrictPlan, id: &str) -> &'a SqlAction {
    planned
        .steps
        .iter()
        .find(|s| s.id == id)
        .and_then(Step::sql_action)
        .unwrap_or_else(|| panic!("no SQL step {id}: {:#?}", planned.steps))
}

#[test]
fn the_group_gets_what_the_workload_does_through_views_and_defaults() {
    let sql = "INSERT INTO public.orders (total) VALUES ($1) RETURNING id; SELECT total FROM public.orders;";
    let planned = plan(&plan_with(&[]), &assigned(), &workload(sql)).unwrap();
    assert!(planned.crossings.is_empty());
    let s = &planned.services[0];
    assert_eq!(
        (
            s.domain.as_str(),
            s.role.as_str(),
            s.new_role,
            s.group.as_str()
        ),
        ("sales", "sales", true, "domain_sales")
    );
    let ids: Vec<&str> = planned.steps.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(
        ids[..4],
        [
            "create group role domain_sales",
            "create login role sales",
            "grant domain_sales to sales",
            "grant usage on schema sales to domain_sales",
        ]
    );
    // RETURNING reads rows back; the invoker view needs its table granted too.
    let view = step(
        &planned,
        "grant SELECT, INSERT on public.orders to domain_sales",
    );
    assert_eq!(
        view.sql,
        "GRANT SELECT, INSERT ON TABLE \"public\".\"orders\" TO \"domain_sales\";"
    );
    assert_eq!(
        view.undo,
        "REVOKE SELECT, INSERT ON TABLE \"public\".\"orders\" FROM \"domain_sales\";"
    );
    step(
        &planned,
        "grant SELECT, INSERT on sales.orders to domain_sales",
    );
    let seq = step(
        &planned,
        "grant USAGE on sales.orders_id_seq to domain_sales",
    );
    assert!(
        seq.sql.starts_with("GRANT USAGE ON SEQUENCE"),
        "{}",
        seq.sql
    );
    // The sequence is only checked at run time: the proof checks it explicitly.
    let insert = &planned.probes[0];
    assert_eq!(insert.runtime.len(), 1, "{:#?}", insert.runtime);
    assert!(insert.runtime[0].check.contains("has_sequence_privilege"));
    assert!(insert.accepted_by.is_empty());
}

#[test]
fn public_grants_on_a_domain_go_and_undo_restores_the_acl_order() {
    let planned = plan(
        &plan_with(&[]),
        &assigned(),
        &workload("SELECT total FROM orders;"),
    )
    .unwrap();
    let revoke = step(&planned, "revoke on table sales.orders");
    assert_eq!(
        revoke.sql,
        "REVOKE SELECT ON TABLE \"sales\".\"orders\" FROM PUBLIC;\n"
    );
    // PUBLIC's entry came first: reader's is taken back and both are given back
    // in their order.
    assert_eq!(
        revoke.undo,
        "REVOKE SELECT ON TABLE \"sales\".\"orders\" FROM \"reader\";\n\
         GRANT SELECT ON TABLE \"sales\".\"orders\" TO PUBLIC;\n\
         GRANT SELECT ON TABLE \"sales\".\"orders\" TO \"reader\";\n"
    );
    assert!(revoke.done_check.starts_with("NOT (SELECT count("));
    assert_eq!(
        planned.revokes,
        ["SELECT on table sales.orders from PUBLIC"]
    );
}

#[test]
fn a_crossing_needs_a_decision_and_the_choice_decides_the_grant() {
    let sql = "SELECT o.total FROM public.orders o JOIN people.customers c ON c.total = o.total;";
    let subject = "read people.customers by sales";
    let planned = plan(&plan_with(&[]), &assigned(), &workload(sql)).unwrap();
    let missing = planned.missing();
    assert_eq!(missing.len(), 1);
    assert_eq!(missing[0].subject, subject);
    assert_eq!(missing[0].statements[0].origin, "w/sales.sql:1");

    let api = plan(
        &plan_with(&[(subject, "api", "")]),
        &assigned(),
        &workload(sql),
    )
    .unwrap();
    assert!(api.missing().is_empty());
    assert!(!api.steps.iter().any(|s| s.id.contains("people.customers")));
    assert_eq!(api.probes[0].accepted_by, [subject]);

    let err = plan(
        &plan_with(&[(subject, "temporary-grant", "")]),
        &assigned(),
        &workload(sql),
    )
    .unwrap_err();
    assert!(err[0].contains("needs a reason"), "{err:?}");

    let granted = plan(
        &plan_with(&[(subject, "temporary-grant", "report until Q3")]),
        &assigned(),
        &workload(sql),
    )
    .unwrap();
    // To the service's own role, not the domain's group.
    let g = granted
        .steps
        .iter()
        .find(|s| s.id == "grant SELECT on people.customers to sales")
        .unwrap();
    assert!(
        g.description.contains("report until Q3"),
        "{}",
        g.description
    );
    step(&granted, "grant usage on schema people to sales");
    assert!(granted.probes[0].accepted_by.is_empty());
}

#[test]
fn a_domain_that_asks_for_column_privileges_gets_them_for_writes() {
    let mut p = plan_with(&[]);
    p.domains[0].column_privileges = true;
    let sql = "UPDATE public.orders SET total = $1 WHERE id = $2;";
    let planned = plan(&p, &assigned(), &workload(sql)).unwrap();
    let update = step(
        &planned,
        "grant UPDATE (total) on sales.orders to domain_sales",
    );
    assert_eq!(
        update.sql,
        "GRANT UPDATE (\"total\") ON TABLE \"sales\".\"orders\" TO \"domain_sales\";"
    );
    assert!(
        update.done_check.contains("o.attname IN ('total')"),
        "{}",
        update.done_check
    );
    step(
        &planned,
        "grant UPDATE (total) on public.orders to domain_sales",
    );
    // Reads stay whole-table: carve does not track the columns a statement reads.
    step(&planned, "grant SELECT on sales.orders to domain_sales");
}

#[test]
fn choices_are_checked_and_writes_name_their_delegate() {
    assert!(!interpret(true, "delegate:people-api", "").unwrap().0);
    assert!(
        interpret(true, "temporary-grant:people-api", "until v2")
            .unwrap()
            .0
    );
    assert!(interpret(true, "delegate", "").is_err());
    assert!(interpret(true, "api", "").is_err());
    assert!(interpret(true, "temporary-grant:x", " ").is_err());
    assert!(interpret(false, "replicate", "").unwrap().0);
    assert!(!interpret(false, "cache", "").unwrap().0);
    let err = interpret(false, "magic", "").unwrap_err();
    assert!(err.contains("api, cache, replicate"), "{err}");
}

#[test]
fn roles_that_cannot_be_restricted_are_refused_all_at_once() {
    let mut c = assigned();
    c.server.current_user = "reader".into();
    c.roles.push(role("domain_sales", false));
    let mut p = plan_with(&[]);
    p.services.push(crate::plan::Service {
        name: "sales".into(),
        login_role: Some("x".repeat(64)),
        ..Default::default()
    });
    let errors = plan(&p, &c, &workload("SELECT total FROM orders;")).unwrap_err();
    let all = errors.join("\n");
    for expected in [
        "needs a superuser",
        "must be 1 to 63 bytes",
        "already exists",
    ] {
        assert!(all.contains(expected), "{expected}: {all}");
    }

    // A superuser service role, and one owning another domain's table.
    let mut c = assigned();
    c.roles.push(role("sales_rw", true));
    c.tables[0].owner = "sales_rw".into();
    let mut p = plan_with(&[]);
    p.services.push(crate::plan::Service {
        name: "sales".into(),
        roles: vec!["sales_rw".into()],
        login_role: Some("sales_rw".into()),
        ..Default::default()
    });
    let sql = "SELECT total FROM orders;";
    let all = plan(&p, &c, &workload(sql)).unwrap_err().join("\n");
    assert!(all.contains("is a superuser"), "{all}");
    assert!(all.contains("owns 1 outside domain sales"), "{all}");
}

#[test]
fn a_write_through_a_split_tables_view_reaches_the_part_that_owns_its_columns() {
    let split = SplitView {
        table: QualName::new("catalog", "books"),
        parts: vec![(
            QualName::new("inventory", "stock"),
            ["copies".to_string()].into(),
        )],
    };
    let set = |columns: &[&str]| Columns::Some(columns.iter().map(|c| c.to_string()).collect());
    let names = |tables: BTreeSet<QualName>| -> Vec<String> {
        tables.iter().map(ToString::to_string).collect()
    };
    assert_eq!(
        names(split.reaches("UPDATE", &set(&["copies"]))),
        ["inventory.stock"]
    );
    assert_eq!(
        names(split.reaches("UPDATE", &set(&["title"]))),
        ["catalog.books"]
    );
    assert_eq!(
        names(split.reaches("UPDATE", &set(&["title", "copies"]))),
        ["catalog.books", "inventory.stock"]
    );
    // A delete takes the table's row; the part's follows by its key.
    assert_eq!(
        names(split.reaches("DELETE", &Columns::All)),
        ["catalog.books"]
    );
    // An insert makes both rows, and reading the view reads both.
    assert_eq!(split.reaches("INSERT", &set(&["title"])).len(), 2);
    assert_eq!(split.reaches("SELECT", &Columns::All).len(), 2);
    // With a second part (the price, a third writer's), a write reaches the
    // parts whose columns it sets; a lock, every row.
    let mut split = split;
    split.parts.push((
        QualName::new("pricing", "prices"),
        ["price".to_string()].into(),
    ));
    assert_eq!(
        names(split.reaches("UPDATE", &set(&["copies", "price"]))),
        ["inventory.stock", "pricing.prices"]
    );
    assert_eq!(split.reaches("UPDATE", &set(&[])).len(), 3);
    assert_eq!(
        names(split.reaches("DELETE", &Columns::All)),
        ["catalog.books"]
    );
}

#[test]
fn a_delegated_table_is_written_by_its_owner_alone_even_inside_its_domain() {
    let mut p = plan_with(&[("ownership of sales.orders", "delegate:sales", "")]);
    p.services = ["sales", "billing"]
        .iter()
        .map(|name| crate::plan::Service {
            name: name.to_string(),
            domain: Some("sales".into()),
            ..Default::default()
        })
        .collect();
    let w = Workload::from_texts(
        "w",
        &[
            ("sales", "UPDATE orders SET total = $1"),
            ("billing", "UPDATE orders SET total = $1"),
        ],
    );
    let planned = plan(&p, &assigned(), &w).unwrap();
    // billing shares the domain, but the plan delegates the table's writes to sales.
    let subjects: Vec<&str> = planned
        .missing()
        .iter()
        .map(|c| c.subject.as_str())
        .collect();
    assert_eq!(subjects, ["write sales.orders by billing"]);
    p.decisions.push(Decision {
        subject: "write sales.orders by billing".into(),
        choice: "delegate:sales".into(),
        reason: String::new(),
        rows: None,
    });
    let planned = plan(&p, &assigned(), &w).unwrap();
    assert!(planned.missing().is_empty());
    let billing = planned
        .probes
        .iter()
        .find(|p| p.service == "billing")
        .unwrap();
    assert_eq!(billing.accepted_by, ["write sales.orders by billing"]);
    let sales = planned
        .probes
        .iter()
        .find(|p| p.service == "sales")
        .unwrap();
    assert!(sales.accepted_by.is_empty());
    // The owner's writes go to its own role: the domain's group would give them to
    // billing too.
    let ids: Vec<&str> = planned.steps.iter().map(|s| s.id.as_str()).collect();
    assert!(
        ids.iter()
            .any(|i| i.contains("UPDATE on sales.orders to sales")),
        "{ids:#?}"
    );
    assert!(
        !ids.iter()
            .any(|i| i.contains("UPDATE on sales.orders to domain_sales")),
        "{ids:#?}"
    );
}

#[test]
fn a_shared_data_domains_writers_reach_it_by_that_decision_and_others_need_their_own() {
    // people.customers is shared by its writers sales and crm; support only reads it.
    let p = plan_with(&[("ownership of people.customers", "shared-data-domain", "")]);
    let w = Workload::from_texts(
        "w",
        &[
            ("sales", "UPDATE public.orders SET total = $1"),
            ("sales", "UPDATE people.customers SET total = $1"),
            ("crm", "SELECT total FROM sales.orders"),
            ("crm", "UPDATE people.customers SET total = $1"),
            ("crm", "INSERT INTO people.customers (total) VALUES (1)"),
            ("support", "SELECT total FROM people.customers"),
            ("support", "UPDATE public.orders SET total = $1"),
        ],
    );
    let planned = plan(&p, &assigned(), &w).unwrap();
    let missing: Vec<&str> = planned
        .missing()
        .iter()
        .map(|c| c.subject.as_str())
        .collect();
    // sales's write is covered by the table's decision (crm is homed in people);
    // support is no writer of it, and crm's read of orders is no shared table.
    assert_eq!(
        missing,
        [
            "read people.customers by support",
            "read sales.orders by crm"
        ]
    );
    let sales = planned
        .crossings
        .iter()
        .find(|c| c.subject == "write people.customers by sales")
        .unwrap();
    let decision = sales.decision.as_ref().unwrap();
    assert_eq!(decision.choice, "shared-data-domain");
    assert!(decision.granted && decision.meaning.contains("crm, sales"));
}

#[test]
fn consolidated_services_have_one_home_domain() {
    // sales writes orders twice, customers once; crm writes customers only. Alone,
    // crm's home is people; consolidated with sales, both are homed in sales.
    let w = Workload::from_texts(
        "w",
        &[
            ("sales", "UPDATE public.orders SET total = $1"),
            ("sales", "DELETE FROM public.orders WHERE total = 0"),
            ("sales", "UPDATE people.customers SET total = $1"),
            ("crm", "UPDATE people.customers SET total = $1"),
        ],
    );
    let home = |p: &Plan| -> Vec<(String, String)> {
        plan(p, &assigned(), &w)
            .unwrap()
            .services
            .iter()
            .map(|s| (s.service.clone(), s.domain.clone()))
            .collect()
    };
    let pairs = |v: &[(&str, &str)]| -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    };
    assert_eq!(
        home(&plan_with(&[])),
        pairs(&[("crm", "people"), ("sales", "sales")])
    );
    let consolidated = plan_with(&[("ownership of people.customers", "service-consolidation", "")]);
    assert_eq!(
        home(&consolidated),
        pairs(&[("crm", "sales"), ("sales", "sales")])
    );
}

/// restrict's plan for sales running `UPDATE orders …`, logging in as `login_role`
/// (the new role `sales` when none), having logged in as `old_roles` until now.
fn update_orders_as(
    catalog: &Catalog,
    login_role: Option<&str>,
    old_roles: &[&str],
) -> RestrictPlan {
    let mut p = plan_with(&[]);
    if let Some(role) = login_role {
        p.services.push(crate::plan::Service {
            name: "sales".into(),
            roles: old_roles.iter().map(|r| r.to_string()).collect(),
            login_role: Some(role.into()),
            ..Default::default()
        });
    }
    plan(
        &p,
        catalog,
        &workload("UPDATE orders SET total = $1 WHERE id = $2;"),
    )
    .unwrap()
}

/// [`assigned`] with a login role `name` set to `search_path = sales, public`.
fn assigned_with_sales_path(name: &str) -> Catalog {
    let mut catalog = assigned();
    catalog.roles.push(crate::catalog::Role {
        search_path: Some("sales, public".into()),
        ..role(name, false)
    });
    catalog
}

/// The proof runs the statement on `sales, public` (SET ROLE does not apply the
/// role's settings).
fn assert_proven_on_the_sales_path(planned: &RestrictPlan) {
    assert_eq!(
        planned.probes[0].search_path.as_deref(),
        Some(&["sales".to_string(), "public".to_string()][..])
    );
}

/// Granted on sales.orders itself, not through the compatibility view.
fn assert_granted_on_the_table(planned: &RestrictPlan) {
    step(
        planned,
        "grant SELECT, UPDATE on sales.orders to domain_sales",
    );
    assert!(
        !planned.steps.iter().any(|s| s.id.contains("public.orders")),
        "{:#?}",
        planned.steps.iter().map(|s| &s.id).collect::<Vec<_>>()
    );
}

#[test]
fn a_role_named_like_a_schema_finds_its_unqualified_names_there_first() {
    // The new login role sales and the domain schema sales: PostgreSQL's
    // `"$user", public` finds sales.orders, not the compatibility view.
    assert_granted_on_the_table(&update_orders_as(&assigned(), None, &[]));
    // Under another login role the same statement goes through the view.
    step(
        &update_orders_as(&assigned(), Some("sales_app"), &[]),
        "grant SELECT, UPDATE on public.orders to domain_sales",
    );
}

#[test]
fn a_role_set_to_its_own_search_path_finds_its_names_there_and_is_proven_on_it() {
    // sales_app logs in with `search_path = sales, public` (ALTER ROLE … SET): its
    // bare `orders` is sales.orders, not the compatibility view public.orders.
    let planned = update_orders_as(
        &assigned_with_sales_path("sales_app"),
        Some("sales_app"),
        &[],
    );
    assert_granted_on_the_table(&planned);
    assert_eq!(planned.probes[0].role, "sales_app");
    assert_proven_on_the_sales_path(&planned);
}

#[test]
fn a_new_login_role_inherits_the_search_path_its_service_logged_in_with() {
    // sales logged in as old_app (search_path = sales, public); its new role
    // sales_new gets that path in this database, and its names resolve along it.
    let catalog = assigned_with_sales_path("old_app");
    let planned = update_orders_as(&catalog, Some("sales_new"), &["old_app"]);
    assert_granted_on_the_table(&planned);
    let create = step(&planned, "create login role sales_new");
    assert!(
        create.sql.ends_with(&format!(
            "CREATE ROLE \"sales_new\" LOGIN; ALTER ROLE \"sales_new\" IN DATABASE {} SET search_path = \"sales\", \"public\";",
            crate::sql::ident(&catalog.server.database)
        )),
        "{}",
        create.sql
    );
    assert_eq!(
        create.undo, "DROP ROLE \"sales_new\";",
        "its settings go with it"
    );
    assert_proven_on_the_sales_path(&planned);
}
