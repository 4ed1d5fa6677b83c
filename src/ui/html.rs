//! The discover report as one self-contained HTML file (`--report FILE`): the domain map
//! drawn as an SVG graph (domains as circles holding their tables, coloured by
//! ownership, and the links that cross domains), each domain's tables with their
//! ownership, the boundaries with their costs and gains, the services and the problems.
//! No network access is needed to open it: styles, drawing and script are inline.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;

use crate::analysis::ownership::Ownership;
use crate::analysis::{Discovery, TableReport};

/// Escapes text for HTML element content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn colour(o: Ownership) -> &'static str {
    match o {
        Ownership::Single => "#2e7d32",
        Ownership::Joint => "#ef6c00",
        Ownership::Common => "#6a1b9a",
        Ownership::ReadOnly => "#1565c0",
        Ownership::Unused => "#9e9e9e",
        Ownership::Unknown => "#607d8b",
    }
}

/// A domain's place on the map.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Circle {
    x: f64,
    y: f64,
    r: f64,
}

const TABLE_R: f64 = 5.0;

fn domain_radius(tables: usize) -> f64 {
    (TABLE_R * 4.4 * (tables as f64).sqrt() + 26.0).max(40.0)
}

/// Places domains with a deterministic force layout: linked domains attract in
/// proportion to what links them, all repel, and circles are pushed apart until they
/// no longer overlap.
fn layout(radii: &[f64], edges: &[(usize, usize, f64)]) -> Vec<Circle> {
    let n = radii.len();
    let spread: f64 = radii.iter().map(|r| r * 2.4).sum::<f64>().max(1.0);
    let mut pos: Vec<(f64, f64)> = (0..n)
        .map(|i| {
            // A spiral start: deterministic, and no two nodes on one spot.
            let a = i as f64 * 2.399_963;
            let d = spread / 6.0 * ((i as f64 + 0.5) / n as f64).sqrt();
            (d * a.cos(), d * a.sin())
        })
        .collect();
    let max_w = edges.iter().map(|e| e.2).fold(1.0, f64::max);
    let iterations = if n > 300 { 60 } else { 200 };
    for step in 0..iterations {
        let cool = 1.0 - step as f64 / iterations as f64;
        let mut force = vec![(0.0f64, 0.0f64); n];
        for i in 0..n {
            for j in i + 1..n {
                let (dx, dy) = (pos[i].0 - pos[j].0, pos[i].1 - pos[j].1);
                let d2 = (dx * dx + dy * dy).max(1.0);
                let d = d2.sqrt();
                let want = radii[i] + radii[j] + 16.0;
                let mut f = want * want / d2 * 40.0;
                if d < want {
                    f += (want - d) * 2.0;
                }
                force[i].0 += dx / d * f;
                force[i].1 += dy / d * f;
                force[j].0 -= dx / d * f;
                force[j].1 -= dy / d * f;
            }
        }
        for &(a, b, w) in edges {
            let (dx, dy) = (pos[a].0 - pos[b].0, pos[a].1 - pos[b].1);
            let d = (dx * dx + dy * dy).sqrt().max(1.0);
            let f = d * 0.08 * (0.3 + w / max_w);
            force[a].0 -= dx / d * f;
            force[a].1 -= dy / d * f;
            force[b].0 += dx / d * f;
            force[b].1 += dy / d * f;
        }
        for i in 0..n {
            // Gravity keeps unlinked domains from drifting away.
            force[i].0 -= pos[i].0 * 0.04;
            force[i].1 -= pos[i].1 * 0.04;
            let len = (force[i].0.powi(2) + force[i].1.powi(2)).sqrt();
            let cap = 30.0 * cool + 1.0;
            let scale = if len > cap { cap / len } else { 1.0 };
            pos[i].0 += force[i].0 * scale;
            pos[i].1 += force[i].1 * scale;
        }
    }
    // Remove what overlap is left.
    for _ in 0..100 {
        let mut moved = false;
        for i in 0..n {
            for j in i + 1..n {
                let (dx, dy) = (pos[i].0 - pos[j].0, pos[i].1 - pos[j].1);
                let d = (dx * dx + dy * dy).sqrt().max(0.01);
                let want = radii[i] + radii[j] + 8.0;
                if d < want {
                    let push = (want - d) / 2.0;
                    let (ux, uy) = if d < 0.1 {
                        (1.0, 0.0)
                    } else {
                        (dx / d, dy / d)
                    };
                    pos[i].0 += ux * push;
                    pos[i].1 += uy * push;
                    pos[j].0 -= ux * push;
                    pos[j].1 -= uy * push;
                    moved = true;
                }
            }
        }
        if !moved {
            break;
        }
    }
    pos.into_iter()
        .zip(radii)
        .map(|((x, y), &r)| Circle { x, y, r })
        .collect()
}

/// Where each table of a domain sits inside its circle (a sunflower pattern).
fn table_spots(domain: Circle, n: usize) -> Vec<(f64, f64)> {
    let room = (domain.r - TABLE_R * 2.5).max(1.0);
    (0..n)
        .map(|i| {
            if n == 1 {
                return (domain.x, domain.y + 6.0);
            }
            let r = room * ((i as f64 + 0.5) / n as f64).sqrt();
            let a = i as f64 * 2.399_963;
            (domain.x + r * a.cos(), domain.y + 6.0 + r * a.sin())
        })
        .collect()
}

pub fn render(d: &Discovery) -> String {
    let tables: HashMap<&str, &TableReport> =
        d.tables.iter().map(|t| (t.name.as_str(), t)).collect();
    let index: HashMap<&str, usize> = d
        .domains
        .iter()
        .enumerate()
        .map(|(i, dom)| (dom.name.as_str(), i))
        .collect();
    let edges: Vec<(usize, usize, f64)> = d
        .boundaries
        .iter()
        .filter_map(|b| {
            let w: usize = b.costs.iter().map(|c| c.count).sum();
            Some((
                *index.get(b.domains[0].as_str())?,
                *index.get(b.domains[1].as_str())?,
                w as f64,
            ))
        })
        .collect();
    let radii: Vec<f64> = d
        .domains
        .iter()
        .map(|dom| domain_radius(dom.tables.len()))
        .collect();
    let circles = layout(&radii, &edges);
    let mut spot: HashMap<&str, (f64, f64)> = HashMap::new();
    for (dom, circle) in d.domains.iter().zip(&circles) {
        for (t, xy) in dom
            .tables
            .iter()
            .zip(table_spots(*circle, dom.tables.len()))
        {
            spot.insert(t.as_str(), xy);
        }
    }
    let (min_x, min_y, max_x, max_y) = circles.iter().fold(
        (f64::MAX, f64::MAX, f64::MIN, f64::MIN),
        |(a, b, c, e), k| {
            (
                a.min(k.x - k.r),
                b.min(k.y - k.r - 14.0),
                c.max(k.x + k.r),
                e.max(k.y + k.r),
            )
        },
    );
    let (min_x, min_y, max_x, max_y) = if circles.is_empty() {
        (0.0, 0.0, 100.0, 100.0)
    } else {
        (min_x - 20.0, min_y - 20.0, max_x + 20.0, max_y + 20.0)
    };

    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg id="map" viewBox="{:.0} {:.0} {:.0} {:.0}" role="img" aria-label="domain map">"#,
        min_x,
        min_y,
        max_x - min_x,
        max_y - min_y
    );
    for (i, (dom, c)) in d.domains.iter().zip(&circles).enumerate() {
        let _ = write!(
            svg,
            r##"<g class="domain" data-domain="{i}"><circle class="domain-area{}" cx="{:.1}" cy="{:.1}" r="{:.1}"><title>{} ({} tables)</title></circle><text class="domain-name" x="{:.1}" y="{:.1}">{}</text></g>"##,
            if dom.common { " common" } else { "" },
            c.x,
            c.y,
            c.r,
            escape(&dom.name),
            dom.tables.len(),
            c.x,
            c.y - c.r + 14.0,
            escape(&dom.name)
        );
    }
    // Crossing links, one line per table pair, drawn under the table dots.
    let domain_of: HashMap<&str, &str> = d
        .tables
        .iter()
        .map(|t| (t.name.as_str(), t.domain.as_str()))
        .collect();
    let mut crossing: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for link in d.links.iter().filter(|l| l.kind.is_integrator()) {
        let (a, b) = (link.a.to_string(), link.b.to_string());
        if domain_of.get(a.as_str()) != domain_of.get(b.as_str()) {
            let (kind, via) = link.kind.parts();
            let why = format!("{kind} {via}");
            crossing.entry((a, b)).or_default().push(why);
        }
    }
    for ((a, b), why) in &crossing {
        let (Some(pa), Some(pb)) = (spot.get(a.as_str()), spot.get(b.as_str())) else {
            continue;
        };
        let _ = write!(
            svg,
            r#"<line class="crossing" data-a="{}" data-b="{}" x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}"><title>{} — {}: {}</title></line>"#,
            index[domain_of[a.as_str()]],
            index[domain_of[b.as_str()]],
            pa.0,
            pa.1,
            pb.0,
            pb.1,
            escape(a),
            escape(b),
            escape(&why.join("; "))
        );
    }
    for (i, dom) in d.domains.iter().enumerate() {
        let labels = dom.tables.len() <= 12;
        for t in &dom.tables {
            let Some(&(x, y)) = spot.get(t.as_str()) else {
                continue;
            };
            let report = tables.get(t.as_str());
            let o = report
                .map(|r| r.owned.ownership)
                .unwrap_or(Ownership::Unknown);
            let writers = report
                .map(|r| r.owned.writers.join(", "))
                .unwrap_or_default();
            let _ = write!(
                svg,
                r#"<circle class="table" data-domain="{i}" cx="{x:.1}" cy="{y:.1}" r="{TABLE_R}" fill="{}"><title>{} ({}{})</title></circle>"#,
                colour(o),
                escape(t),
                o.as_str(),
                if writers.is_empty() {
                    String::new()
                } else {
                    format!("; written by {}", escape(&writers))
                }
            );
            if labels {
                let short = t.rsplit_once('.').map(|(_, n)| n).unwrap_or(t);
                let _ = write!(
                    svg,
                    r#"<text class="table-name" x="{:.1}" y="{:.1}">{}</text>"#,
                    x + TABLE_R + 2.0,
                    y + 3.0,
                    escape(short)
                );
            }
        }
    }
    svg.push_str("</svg>");

    let mut body = String::new();
    let q = &d.quality;
    let _ = write!(
        body,
        "<h1>carve discover</h1><p class=\"summary\">{} domains for {} tables; resolution {}, modularity {:.2}. Crossing a boundary: {}.</p>",
        d.domains.len(),
        d.tables.len(),
        q.resolution,
        q.modularity,
        escape(&super::crossing_summary(q))
    );
    body.push_str("<div class=\"legend\">");
    for o in [
        Ownership::Single,
        Ownership::Joint,
        Ownership::Common,
        Ownership::ReadOnly,
        Ownership::Unused,
        Ownership::Unknown,
    ] {
        let _ = write!(
            body,
            r#"<span><svg width="12" height="12"><circle cx="6" cy="6" r="5" fill="{}"/></svg> {}</span>"#,
            colour(o),
            o.as_str()
        );
    }
    body.push_str("<span class=\"hint\">Click a domain to follow its boundaries; hover for details.</span></div>");
    body.push_str(&svg);

    body.push_str("<h2>Domains</h2>");
    for (i, dom) in d.domains.iter().enumerate() {
        let _ = write!(
            body,
            r#"<section class="domain-card" id="domain-{i}" data-domain="{i}"><h3>{}{}</h3><p>{} tables; its name: {}{}; writers: {}</p><table><tr><th>table</th><th>ownership</th><th>writers</th><th>readers</th><th>why</th></tr>"#,
            escape(&dom.name),
            if dom.common {
                " <small>(common)</small>"
            } else {
                ""
            },
            dom.tables.len(),
            escape(&dom.named_after),
            dom.writer_purity
                .map(|p| format!("; writer purity {:.0}%", p * 100.0))
                .unwrap_or_default(),
            if dom.writers.is_empty() {
                "none".to_string()
            } else {
                escape(&dom.writers.join(", "))
            }
        );
        for t in &dom.tables {
            let Some(r) = tables.get(t.as_str()) else {
                continue;
            };
            let o = r.owned.ownership;
            let mut why = escape(&r.owned.reason);
            if !r.owned.resolutions.is_empty() {
                why.push_str("<ol>");
                for res in &r.owned.resolutions {
                    let _ = write!(
                        why,
                        "<li>{} <small>because {}</small></li>",
                        escape(&res.proposal),
                        escape(&res.reason)
                    );
                }
                why.push_str("</ol>");
            }
            let _ = write!(
                body,
                r#"<tr><td>{}</td><td><span class="badge" style="background:{}">{}</span></td><td>{}</td><td>{}</td><td>{}</td></tr>"#,
                escape(t),
                colour(o),
                o.as_str(),
                escape(&r.owned.writers.join(", ")),
                escape(&r.owned.readers.join(", ")),
                why
            );
        }
        body.push_str("</table></section>");
    }

    if !d.boundaries.is_empty() {
        body.push_str("<h2>Boundaries</h2><table class=\"boundaries\"><tr><th>domains</th><th>what it costs</th><th>what it buys</th></tr>");
        for b in &d.boundaries {
            let costs: Vec<String> = b
                .costs
                .iter()
                .map(|c| {
                    format!(
                        "{} <small>(e.g. {})</small>",
                        escape(&c.label()),
                        escape(&c.examples.join(", "))
                    )
                })
                .collect();
            let side = |i: usize| {
                format!(
                    "writers {}; {} write statements; roles {}; {} connections",
                    if b.buys.writers[i].is_empty() {
                        "none".to_string()
                    } else {
                        escape(&b.buys.writers[i].join(", "))
                    },
                    b.buys.write_statements[i],
                    if b.buys.roles[i].is_empty() {
                        "-".to_string()
                    } else {
                        escape(&b.buys.roles[i].join(", "))
                    },
                    b.buys.connections[i]
                )
            };
            let _ = write!(
                body,
                "<tr data-a=\"{}\" data-b=\"{}\"><td>{} | {}</td><td>{}</td><td>{}<br>vs {}</td></tr>",
                index.get(b.domains[0].as_str()).copied().unwrap_or(0),
                index.get(b.domains[1].as_str()).copied().unwrap_or(0),
                escape(&b.domains[0]),
                escape(&b.domains[1]),
                costs.join("<br>"),
                side(0),
                side(1)
            );
        }
        body.push_str("</table>");
    }

    if !d.services.is_empty() {
        body.push_str("<h2>Services</h2><table><tr><th>service</th><th>statements</th><th>writes</th><th>reads</th><th>roles</th><th>applications</th><th>connections</th></tr>");
        for s in &d.services {
            let join = |set: &std::collections::BTreeSet<String>| {
                escape(&set.iter().cloned().collect::<Vec<_>>().join(", "))
            };
            let _ = write!(
                body,
                "<tr><td>{}{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{} open, {} logged</td></tr>",
                escape(&s.name),
                if s.idle { " <small>(no table)</small>" } else { "" },
                s.statements,
                s.writes,
                s.reads,
                join(&s.seen.roles),
                join(&s.seen.applications),
                s.seen.connections_open,
                s.seen.sessions_logged
            );
        }
        body.push_str("</table>");
    }

    let p = &d.problems;
    if p.count() > 0 {
        let _ = write!(
            body,
            "<h2>Problems ({})</h2><ul class=\"problems\">",
            p.count()
        );
        for (what, list) in p.by_kind() {
            for problem in list {
                let _ = write!(
                    body,
                    "<li>{what}: {}: {}</li>",
                    escape(&problem.origin),
                    escape(&problem.message)
                );
            }
        }
        body.push_str("</ul>");
    }

    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\"><title>carve discover: {} domains</title><style>{STYLE}</style></head><body>{body}<script>{SCRIPT}</script></body></html>\n",
        d.domains.len()
    )
}

const STYLE: &str = "
body{font:14px/1.45 system-ui,sans-serif;margin:24px;color:#222;max-width:1400px}
h1{font-size:22px;margin:0 0 4px}h2{margin-top:32px;border-bottom:1px solid #ddd}
#map{width:100%;max-height:80vh;border:1px solid #ddd;border-radius:6px;background:#fafafa}
.domain-area{fill:#e8eef7;stroke:#90a4ae;stroke-width:1.5;cursor:pointer}
.domain-area.common{fill:#f3e5f5}
.domain.selected .domain-area{stroke:#d32f2f;stroke-width:3}
.domain-name{font-size:12px;font-weight:600;text-anchor:middle;pointer-events:none}
.table-name{font-size:9px;fill:#333;pointer-events:none}
.table{stroke:#fff;stroke-width:1}
.crossing{stroke:#d32f2f;stroke-opacity:.35;stroke-width:1.2}
.crossing.lit{stroke-opacity:1;stroke-width:2.4}
.dim{opacity:.25}
.legend span{margin-right:14px;white-space:nowrap}.hint{color:#777}
table{border-collapse:collapse;margin:6px 0 16px;width:100%}
td,th{border-bottom:1px solid #eee;padding:3px 8px;text-align:left;vertical-align:top}
.badge{color:#fff;border-radius:8px;padding:0 7px;font-size:12px}
.domain-card.selected{outline:2px solid #d32f2f}
ol{margin:4px 0;padding-left:20px}small{color:#666}
";

/// Clicking a domain lights up its crossing links and its card; `data-ready` tells a
/// headless browser test that the script ran.
const SCRIPT: &str = "
(function(){
  var map=document.getElementById('map');
  function select(i){
    document.querySelectorAll('.domain').forEach(function(g){g.classList.toggle('selected',g.dataset.domain===i);});
    document.querySelectorAll('.crossing').forEach(function(l){
      var on=l.dataset.a===i||l.dataset.b===i;l.classList.toggle('lit',on);l.classList.toggle('dim',i!==null&&!on);});
    document.querySelectorAll('.domain-card').forEach(function(c){c.classList.toggle('selected',c.dataset.domain===i);});
    var card=document.getElementById('domain-'+i);if(card&&i!==null){card.scrollIntoView({behavior:'smooth',block:'nearest'});}
  }
  document.querySelectorAll('.domain').forEach(function(g){
    g.addEventListener('click',function(e){e.stopPropagation();select(g.dataset.domain);});});
  if(map){map.addEventListener('click',function(){select(null);});}
  document.body.dataset.ready=String(document.querySelectorAll('circle.table').length);
})();
";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(
            escape(r#"<b a="x">&'"#),
            "&lt;b a=&quot;x&quot;&gt;&amp;&#39;"
        );
    }

    #[test]
    fn layout_is_deterministic_and_circles_do_not_overlap() {
        let radii = [40.0, 60.0, 35.0, 80.0, 34.0];
        let edges = [(0, 1, 3.0), (1, 3, 1.0), (2, 4, 5.0)];
        let a = layout(&radii, &edges);
        assert_eq!(a, layout(&radii, &edges));
        for i in 0..a.len() {
            for j in i + 1..a.len() {
                let d = ((a[i].x - a[j].x).powi(2) + (a[i].y - a[j].y).powi(2)).sqrt();
                assert!(d >= a[i].r + a[j].r, "{i} and {j} overlap: {a:?}");
            }
        }
    }

    #[test]
    fn tables_stay_inside_their_domain() {
        let c = Circle {
            x: 100.0,
            y: 50.0,
            r: domain_radius(40),
        };
        for (x, y) in table_spots(c, 40) {
            let d = ((x - c.x).powi(2) + (y - c.y).powi(2)).sqrt();
            assert!(d + TABLE_R <= c.r, "{d} vs {}", c.r);
        }
    }
}
