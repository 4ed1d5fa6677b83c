//! Discovery's quality, measured: the adjusted Rand index of discover's proposal
//! against the domains each schema's authors declared (`benches/data/README.md`),
//! from the catalog alone and with a workload where there is one. Prints the table
//! the README shows (`cargo test --test quality -- --nocapture`), and fails when a
//! score falls below what this version measured.

mod support;

use std::path::{Path, PathBuf};

use support::*;

struct Dataset {
    name: &'static str,
    schema: PathBuf,
    truth: PathBuf,
    workload: Option<PathBuf>,
    /// The lowest scores accepted (catalog alone, with the workload): a little
    /// under those measured, against regressions.
    floor: (f64, Option<f64>),
}

fn datasets() -> Vec<Dataset> {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let data = |name: &str| repo.join("benches/data").join(name);
    let example = |name: &str| repo.join("examples").join(name);
    let bench = benchbase();
    let mut all = vec![
        Dataset {
            name: "benchbase",
            schema: bench.join("schema.sql"),
            truth: bench.join("truth.tsv"),
            workload: Some(bench.join("workload")),
            floor: (0.9, Some(1.0)),
        },
        Dataset {
            name: "shop",
            schema: example("shop").join("schema.sql"),
            truth: example("shop").join("truth.tsv"),
            workload: Some(example("shop").join("workload")),
            floor: (0.75, Some(1.0)),
        },
        Dataset {
            name: "library",
            schema: example("library").join("schema.sql"),
            truth: example("library").join("truth.tsv"),
            workload: Some(example("library").join("workload")),
            floor: (0.0, Some(1.0)),
        },
    ];
    for (name, floor) in [("killbill", 0.5), ("medusa", 0.65), ("petclinic", 0.6)] {
        all.push(Dataset {
            name,
            schema: data(name).join("schema.sql"),
            truth: data(name).join("truth.tsv"),
            workload: None,
            floor: (floor, None),
        });
    }
    all
}

fn truth(path: &Path) -> Vec<(String, String)> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (t, d) = l.split_once('\t').expect("table<TAB>domain");
            (t.to_string(), d.to_string())
        })
        .collect()
}

/// discover's proposal for `db` (with `workload` when given): its ARI against
/// `truth`, and how many domains it proposed.
fn score(
    server: &carve::pgtemp::TempServer,
    db: &str,
    truth: &[(String, String)],
    workload: Option<&Path>,
) -> (f64, usize) {
    let dir = tempfile::tempdir().unwrap();
    let conninfo = server.conninfo(db);
    let mut args = vec!["--source", conninfo.as_str()];
    if let Some(w) = workload {
        args.extend(["--workload", w.to_str().unwrap()]);
    }
    let (json, code, stderr) = discover_json(&dir.path().join("p.toml"), &args);
    assert_eq!(code, 0, "{db}: {stderr}");
    let predicted: std::collections::HashMap<String, String> = json["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let name = t["name"].as_str().unwrap();
            let table = name.split_once('.').unwrap().1.to_string();
            (table, t["domain"].as_str().unwrap().to_string())
        })
        .collect();
    let pairs: Vec<(&str, &str)> = truth
        .iter()
        .map(|(t, d)| (t.as_str(), d.as_str()))
        .collect();
    let domains = json["domains"].as_array().unwrap().len();
    (adjusted_rand_index(&pairs, &predicted), domains)
}

#[tokio::test]
async fn discover_finds_the_domains_the_authors_declared() {
    let server = server();
    let mut table = vec![format!(
        "| {:<10} | {:>6} | {:>7} | {:>17} | {:>17} |",
        "schema", "tables", "domains", "catalog alone", "with workload"
    )];
    let mut below = Vec::new();
    for d in datasets() {
        let schema = std::fs::read_to_string(&d.schema)
            .unwrap_or_else(|e| panic!("{}: {e}", d.schema.display()));
        create_db(&server, d.name, &schema).await;
        let truth = truth(&d.truth);
        let declared: std::collections::BTreeSet<&str> =
            truth.iter().map(|(_, dom)| dom.as_str()).collect();
        let (alone, alone_domains) = score(&server, d.name, &truth, None);
        let with = d
            .workload
            .as_deref()
            .map(|w| score(&server, d.name, &truth, Some(w)));
        if alone < d.floor.0 {
            below.push(format!("{} from the catalog: {alone:.2}", d.name));
        }
        if let (Some((ari, _)), Some(floor)) = (with, d.floor.1) {
            if ari < floor {
                below.push(format!("{} with its workload: {ari:.2}", d.name));
            }
        }
        table.push(format!(
            "| {:<10} | {:>6} | {:>7} | {:>17} | {:>17} |",
            d.name,
            truth.len(),
            declared.len(),
            format!("{alone:.2} ({alone_domains} domains)"),
            with.map(|(a, n)| format!("{a:.2} ({n} domains)"))
                .unwrap_or_else(|| "–".into()),
        ));
    }
    println!("{}", table.join("\n"));
    assert!(
        below.is_empty(),
        "below the floor: {below:?}\n{}",
        table.join("\n")
    );
}
