//! A generator of synthetic catalogs for benchmarks: many tables in domain-like
//! clusters, foreign keys mostly inside a cluster, and views over joined tables.
//! Deterministic: the same sizes give the same SQL.

/// Sizes of a synthetic catalog.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub tables: usize,
    pub foreign_keys: usize,
    pub views: usize,
    /// Tables per cluster (a stand-in for a data domain).
    pub cluster_size: usize,
}

impl Shape {
    /// 10,000 tables, about 20,000 foreign keys and 1,000 views: the benchmark's size.
    pub const LARGE: Shape = Shape {
        tables: 10_000,
        foreign_keys: 20_000,
        views: 1_000,
        cluster_size: 25,
    };

    pub fn scaled(self, factor: f64) -> Shape {
        let scale = |n: usize| ((n as f64) * factor).round().max(1.0) as usize;
        Shape {
            tables: scale(self.tables),
            foreign_keys: scale(self.foreign_keys),
            views: scale(self.views),
            cluster_size: self.cluster_size,
        }
    }
}

/// A small deterministic generator (xorshift), so no dependency is needed for this.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

fn table_name(i: usize, cluster_size: usize) -> String {
    format!("d{:04}_t{:05}", i / cluster_size, i)
}

/// The SQL, as a list of batches small enough to send one at a time.
pub fn sql(shape: Shape) -> Vec<String> {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut batches = Vec::new();
    let mut batch = String::new();
    let flush = |batch: &mut String, batches: &mut Vec<String>| {
        if !batch.is_empty() {
            batches.push(std::mem::take(batch));
        }
    };
    // Each table gets as many fk columns as it will have foreign keys.
    let mut fk_sources = vec![0usize; shape.tables];
    for k in 0..shape.foreign_keys {
        fk_sources[k % shape.tables] += 1;
    }
    for (i, fk_count) in fk_sources.iter().enumerate() {
        let name = table_name(i, shape.cluster_size);
        batch.push_str(&format!(
            "CREATE TABLE {name} (id bigserial PRIMARY KEY, name text NOT NULL, amount numeric(12,2), created_at timestamptz NOT NULL DEFAULT now()"
        ));
        for f in 0..*fk_count {
            batch.push_str(&format!(", ref{f}_id bigint"));
        }
        batch.push_str(");\n");
        if i % 500 == 499 {
            flush(&mut batch, &mut batches);
        }
    }
    flush(&mut batch, &mut batches);
    for (i, fk_count) in fk_sources.iter().enumerate() {
        let cluster = i / shape.cluster_size;
        for f in 0..*fk_count {
            // Nine in ten references stay inside the cluster, as in a real domain.
            let target = if rng.below(10) < 9 {
                let first = cluster * shape.cluster_size;
                let last = ((cluster + 1) * shape.cluster_size).min(shape.tables);
                first + rng.below(last - first)
            } else {
                rng.below(shape.tables)
            };
            batch.push_str(&format!(
                "ALTER TABLE {} ADD FOREIGN KEY (ref{f}_id) REFERENCES {};\n",
                table_name(i, shape.cluster_size),
                table_name(target, shape.cluster_size)
            ));
        }
        if i % 500 == 499 {
            flush(&mut batch, &mut batches);
        }
    }
    flush(&mut batch, &mut batches);
    for v in 0..shape.views {
        let a = rng.below(shape.tables);
        let b = rng.below(shape.tables);
        batch.push_str(&format!(
            "CREATE VIEW v{v:05} AS SELECT a.id, a.name, b.amount FROM {} a JOIN {} b ON b.id = a.id;\n",
            table_name(a, shape.cluster_size),
            table_name(b, shape.cluster_size)
        ));
        if v % 500 == 499 {
            flush(&mut batch, &mut batches);
        }
    }
    flush(&mut batch, &mut batches);
    batches
}

/// A generated workload: `statements` statements from `services` services, as one SQL
/// text per service (`(service, sql)`). Each cluster of tables belongs to one service
/// (cluster `c` to service `c % services`); services read, join, insert, update and
/// delete their own tables, read another service's table now and then, and group
/// some statements in `BEGIN … COMMIT`. A statement or transaction stays in one
/// cluster, so with fewer services than clusters a service owns several clusters
/// that only their writer has in common.
pub fn workload(shape: Shape, services: usize, statements: usize) -> Vec<(String, String)> {
    let mut rng = Rng(0xD1B5_4A32_D192_ED03);
    let clusters = shape.tables.div_ceil(shape.cluster_size);
    let services = services.clamp(1, clusters.max(1));
    let mut texts: Vec<String> = vec![String::new(); services];
    let cluster_of = |service: usize, rng: &mut Rng| {
        let owned = (clusters - service).div_ceil(services).max(1);
        (service + services * rng.below(owned)).min(clusters - 1)
    };
    let table_in = |cluster: usize, rng: &mut Rng| {
        let first = cluster * shape.cluster_size;
        let last = ((cluster + 1) * shape.cluster_size).min(shape.tables);
        table_name(first + rng.below(last - first), shape.cluster_size)
    };
    let mut written = 0;
    while written < statements {
        let service = rng.below(services);
        let text = &mut texts[service];
        let in_transaction = rng.below(10) == 0;
        let count = if in_transaction { 3 } else { 1 };
        if in_transaction {
            text.push_str("BEGIN;\n");
        }
        // A statement, or a transaction, works on one cluster (one aggregate) of
        // the service's: the service writes several, which nothing else ties.
        let cluster = cluster_of(service, &mut rng);
        for _ in 0..count {
            let t = table_in(cluster, &mut rng);
            let sql = match rng.below(20) {
                0..=6 => format!("SELECT id, name, amount FROM {t} WHERE id = $1;\n"),
                7..=9 => {
                    let u = table_in(cluster, &mut rng);
                    format!(
                        "SELECT a.id, b.name FROM {t} a JOIN {u} b ON b.id = a.ref0_id WHERE a.created_at > $1 ORDER BY a.id LIMIT 50;\n"
                    )
                }
                10..=12 => format!(
                    "INSERT INTO {t} (name, amount) VALUES ($1, $2) RETURNING id;\n"
                ),
                13..=15 => format!("UPDATE {t} SET amount = amount + $1 WHERE id = $2;\n"),
                16 => format!("DELETE FROM {t} WHERE id = $1;\n"),
                17 => format!(
                    "WITH recent AS (SELECT id FROM {t} WHERE created_at > now() - interval '1 day') UPDATE {t} SET name = $1 WHERE id IN (SELECT id FROM recent);\n"
                ),
                _ => {
                    // Another service's table, read.
                    let other = rng.below(services);
                    let other = table_in(cluster_of(other, &mut rng), &mut rng);
                    format!("SELECT count(*) FROM {other} WHERE name = $1;\n")
                }
            };
            text.push_str(&sql);
            written += 1;
        }
        if in_transaction {
            text.push_str("COMMIT;\n");
        }
    }
    texts
        .into_iter()
        .enumerate()
        .map(|(i, t)| (format!("service_{i:02}"), t))
        .collect()
}

/// A cross-cutting job's SQL (a nightly sync): `transactions` transactions, each
/// inserting into and pruning one table of every cluster, so it writes into all of
/// them and ties them together in one transaction.
pub fn cross_cutting_job(shape: Shape, transactions: usize) -> String {
    let mut rng = Rng(0xA076_1D64_78BD_642F);
    let clusters = shape.tables.div_ceil(shape.cluster_size);
    let mut text = String::new();
    for _ in 0..transactions {
        text.push_str("BEGIN;\n");
        for cluster in 0..clusters {
            let first = cluster * shape.cluster_size;
            let last = ((cluster + 1) * shape.cluster_size).min(shape.tables);
            let t = table_name(first + rng.below(last - first), shape.cluster_size);
            text.push_str(&format!(
                "INSERT INTO {t} (name, amount) VALUES ($1, $2);\nDELETE FROM {t} WHERE created_at < now() - interval '1 year';\n"
            ));
        }
        text.push_str("COMMIT;\n");
    }
    text
}

/// The cluster each generated table was made in: `(table, cluster)`, the truth a
/// proposal is scored against.
pub fn clusters(shape: Shape) -> Vec<(String, String)> {
    (0..shape.tables)
        .map(|i| {
            let name = table_name(i, shape.cluster_size);
            let cluster = format!("d{:04}", i / shape.cluster_size);
            (name, cluster)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workload_has_the_requested_size_and_parses() {
        let shape = Shape::LARGE.scaled(0.01);
        let w = workload(shape, 4, 500);
        assert_eq!(w.len(), 4);
        let texts: Vec<(&str, &str)> = w.iter().map(|(s, t)| (s.as_str(), t.as_str())).collect();
        let loaded = crate::workload::Workload::from_texts("synthetic", &texts);
        assert!((500..503).contains(&loaded.statements.len()));
        for s in &loaded.statements {
            crate::analysis::access::analyze(&s.sql).unwrap_or_else(|e| panic!("{}: {e}", s.sql));
        }
        assert_eq!(workload(shape, 4, 500), w);
    }

    #[test]
    fn generates_the_requested_shape_deterministically() {
        let shape = Shape::LARGE.scaled(0.01);
        let sql = sql(shape).concat();
        assert_eq!(sql.matches("CREATE TABLE").count(), 100);
        assert_eq!(sql.matches("ADD FOREIGN KEY").count(), 200);
        assert_eq!(sql.matches("CREATE VIEW").count(), 10);
        assert_eq!(super::sql(shape).concat(), sql);
    }
}
