//! `carve discover --report`: one self-contained HTML file, checked by rendering it in
//! a real headless Chromium (installed by `.ci/run`), never by string matching alone.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::*;

/// Chromium from PATH; the test fails with what to install when there is none.
fn chromium() -> PathBuf {
    for name in ["chromium", "chromium-browser", "google-chrome", "chrome"] {
        if let Ok(out) = Command::new("sh")
            .args(["-c", &format!("command -v {name}")])
            .output()
        {
            if out.status.success() {
                return PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
            }
        }
    }
    panic!("no Chromium found to render the HTML report: install it (apt-get install chromium)");
}

fn headless(page: &Path, extra: &[&str], profile: &Path) -> std::process::Output {
    Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--hide-scrollbars",
            "--window-size=1400,1000",
            // No network: the page must need nothing from outside.
            "--proxy-server=127.0.0.1:9",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("chromium runs")
}

#[tokio::test]
async fn the_html_report_renders_in_headless_chromium() {
    let server = server();
    let shop = example("shop");
    let c = create_db(&server, "shop", shop.schema).await;
    c.batch_execute(shop.seed).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let plan = dir.path().join("carve.plan.toml");
    let report = dir.path().join("shop report.html");
    let workload = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/shop/workload");
    let (json, code, stderr) = discover_json(
        &plan,
        &[
            "--source",
            &server.conninfo("shop"),
            "--workload",
            workload,
            "--report",
            report.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    let tables = json["tables"].as_array().unwrap().len();
    let domains = json["domains"].as_array().unwrap().len();

    let html = std::fs::read_to_string(&report).unwrap();
    for outside in ["src=\"http", "href=\"http", "url(http", "@import"] {
        assert!(!html.contains(outside), "the report fetches {outside}…");
    }

    // The script ran (it counts the table dots) and the map has every domain.
    let profile = tempfile::tempdir().unwrap();
    let out = headless(
        &report,
        &["--virtual-time-budget=3000", "--dump-dom"],
        profile.path(),
    );
    let dom = String::from_utf8_lossy(&out.stdout);
    assert!(
        dom.contains(&format!("data-ready=\"{tables}\"")),
        "script did not run or did not see {tables} tables: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(dom.matches("<g class=\"domain\"").count(), domains);
    assert_eq!(dom.matches("class=\"domain-card\"").count(), domains);
    assert!(
        dom.contains("split public.orders"),
        "joint table's resolutions listed"
    );

    // And it paints: a screenshot with more than a blank page in it.
    let png = dir.path().join("report.png");
    let out = headless(
        &report,
        &[&format!("--screenshot={}", png.display())],
        profile.path(),
    );
    let bytes = std::fs::read(&png)
        .unwrap_or_else(|_| panic!("no screenshot: {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(&bytes[1..4], b"PNG");
    assert!(
        bytes.len() > 30_000,
        "a near-empty page: {} bytes",
        bytes.len()
    );

    // An unwritable report path: an error, and the plan is left as it was.
    let before = std::fs::read(&plan).unwrap();
    let (_, code, stderr) = discover_json(
        &plan,
        &[
            "--source",
            &server.conninfo("shop"),
            "--report",
            "/nonexistent/dir/report.html",
        ],
    );
    assert_eq!(code, 1);
    assert!(stderr.contains("cannot write the report"), "{stderr}");
    assert_eq!(std::fs::read(&plan).unwrap(), before);
}
