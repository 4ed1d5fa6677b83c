//! What each phase does to the example monoliths, step by step (id, target, SQL,
//! check, undo), pinned as snapshots: a reader sees a phase's work without running
//! it, and a change to any step shows up in review as a diff of
//! `tests/snapshots/*.snap` (`cargo insta review` accepts it).
//!
//! The steps are planned by the pure phase functions from a real catalog: the
//! example is loaded into a throw-away server, discovered with its own workload,
//! assigned (its steps run, as carve would), then restricted, every crossing decided
//! as the demo decides it (its steps run too), then one domain moved.

mod support;

use carve::analysis::{self, Options};
use carve::engine::{Action, Step};
use carve::phases::{assign, move_domain, restrict};
use carve::plan::{Decision, GateHints, PhaseRecord, PhaseState, Plan, Source};
use carve::workload::Workload;
use support::*;

/// Steps as text: one section per step.
fn render(steps: &[Step]) -> String {
    let mut out = String::new();
    for (i, step) in steps.iter().enumerate() {
        out.push_str(&format!(
            "## {}/{} {}\ntarget: {}\n{}\n",
            i + 1,
            steps.len(),
            step.id,
            step.target,
            step.description
        ));
        match &step.action {
            Action::Sql(a) => {
                out.push_str(&format!(
                    "sql{}{}:\n{}\ncheck: {}\nundo:\n{}\n",
                    if a.transactional {
                        ""
                    } else {
                        " (no transaction)"
                    },
                    if a.strong_lock { " (strong lock)" } else { "" },
                    a.sql.trim_end(),
                    a.done_check,
                    a.undo.trim_end()
                ));
                if let Some(secret) = &a.secret {
                    out.push_str(&format!("secret: {}\n", secret.describe()));
                }
            }
            other => out.push_str(&format!("{other:?}\n")),
        }
        out.push('\n');
    }
    out
}

/// (assign's steps, restrict's steps, the move's steps of the domain holding
/// `moved`) for an example.
async fn phases_of(name: &str, moved: &str) -> (String, String, String) {
    let server = server();
    let example = example(name);
    let client = create_db(
        &server,
        name,
        &format!("{}\n{}", example.schema, example.seed),
    )
    .await;
    let catalog = catalog_of(&server, name).await;
    let workload = Workload::from_texts(&format!("examples/{name}/workload"), example.workloads);
    let discovery = analysis::discover(&catalog, Some(&workload), &Options::default());
    let mut plan: Plan = carve::commands::discover::build_plan(
        Source {
            conninfo: format!("dbname={name}"),
            database: name.to_string(),
        },
        &catalog,
        &discovery,
        None,
    );

    // assign, with the defaults shown for every object that needs a decision.
    let planned = assign::plan(&plan, &catalog).expect("assign plans");
    for object in planned.missing() {
        plan.decisions.push(Decision {
            subject: object.subject.clone(),
            choice: object.default.clone(),
            reason: "the default".into(),
            rows: None,
        });
    }
    let planned = assign::plan(&plan, &catalog).expect("assign plans");
    let assign_text = render(&planned.steps);
    for step in &planned.steps {
        let sql = &step.sql_action().expect("assign's steps are SQL").sql;
        client
            .batch_execute(&format!("BEGIN; {sql}; COMMIT"))
            .await
            .unwrap_or_else(|e| panic!("{}: {e:?}", step.id));
    }
    let mut record = PhaseRecord::planned(
        assign::PHASE.into(),
        String::new(),
        GateHints {
            renames: planned.renames,
            creates_schemas: planned.creates_schemas,
            privileges: false,
            touches: Vec::new(),
        },
        planned.steps,
    );
    record.state = PhaseState::Applied;
    plan.phases.push(record);

    // restrict, each crossing decided as the demo decides it.
    let catalog = catalog_of(&server, name).await;
    let planned = restrict::plan(&plan, &catalog, &workload).expect("restrict plans");
    for crossing in planned.missing() {
        let owner = format!(
            "{}-service",
            crossing.table_domain.as_deref().unwrap_or("owner")
        );
        plan.decisions.push(Decision {
            subject: crossing.subject.clone(),
            choice: if crossing.write {
                format!("temporary-grant:{owner}")
            } else {
                "replicate".into()
            },
            reason: "as the demo decides".into(),
            rows: None,
        });
    }
    let planned = restrict::plan(&plan, &catalog, &workload).expect("restrict plans");
    let restrict_text = render(&planned.steps);
    for step in &planned.steps {
        let sql = &step.sql_action().expect("restrict's steps are SQL").sql;
        client
            .batch_execute(&format!("BEGIN; {sql}; COMMIT"))
            .await
            .unwrap_or_else(|e| panic!("{}: {e:?}", step.id));
    }

    // move, of the domain that holds `moved`.
    let catalog = catalog_of(&server, name).await;
    let domain = &plan
        .domains
        .iter()
        .find(|d| d.tables.iter().any(|t| t == moved))
        .expect("a domain holds it")
        .name;
    let options = move_domain::MoveOptions {
        link: move_domain::replication::Link {
            conninfo: format!("host=monolith.internal port=5432 dbname={name}"),
            password_file: "/etc/carve/passwords".into(),
            host: "monolith.internal".into(),
            port: 5432,
            database: name.to_string(),
        },
        max_lag: 1 << 20,
        copy_timeout: std::time::Duration::from_secs(3600),
        catch_up_timeout: std::time::Duration::from_secs(600),
        reads: Vec::new(),
    };
    let move_text = render(&move_domain::steps(&catalog, domain, &options));
    (assign_text, restrict_text, move_text)
}

#[tokio::test]
async fn library_steps() {
    let (assign, restrict, moved) = phases_of("library", "public.reading_list").await;
    insta::assert_snapshot!("library_assign", assign);
    insta::assert_snapshot!("library_restrict", restrict);
    insta::assert_snapshot!("library_move", moved);
}

#[tokio::test]
async fn shop_steps() {
    let (assign, restrict, moved) = phases_of("shop", "public.orders").await;
    insta::assert_snapshot!("shop_assign", assign);
    insta::assert_snapshot!("shop_restrict", restrict);
    insta::assert_snapshot!("shop_move", moved);
}

/// The domains discover proposes, with the names it gives them and why.
fn names_of(discovery: &carve::analysis::Discovery) -> String {
    let mut out = String::new();
    for d in &discovery.domains {
        out.push_str(&format!(
            "{} ({} tables): {}\n",
            d.name,
            d.tables.len(),
            d.named_after
        ));
        for alt in &d.alternatives {
            out.push_str(&format!("  or {}: {}\n", alt.name, alt.why));
        }
    }
    out
}

#[tokio::test]
async fn domain_names() {
    let server = server();
    let mut all = String::new();
    for name in ["library", "shop"] {
        let example = example(name);
        create_db(
            &server,
            name,
            &format!("{}\n{}", example.schema, example.seed),
        )
        .await;
        let catalog = catalog_of(&server, name).await;
        let workload =
            Workload::from_texts(&format!("examples/{name}/workload"), example.workloads);
        let discovery = analysis::discover(&catalog, Some(&workload), &Options::default());
        all.push_str(&format!("## {name}\n{}\n", names_of(&discovery)));
    }
    let data = benchbase();
    let schema = std::fs::read_to_string(data.join("schema.sql")).unwrap();
    create_db(&server, "benchbase", &schema).await;
    let catalog = catalog_of(&server, "benchbase").await;
    let logs = carve::workload::log::LogOptions {
        database: "benchbase",
        line_prefix: "%u ",
        services: &carve::workload::ServiceMap::default(),
    };
    let workload = Workload::from_path(&data.join("workload"), &logs);
    let discovery = analysis::discover(&catalog, Some(&workload), &Options::default());
    all.push_str(&format!("## benchbase\n{}", names_of(&discovery)));
    insta::assert_snapshot!("domain_names", all);
}
