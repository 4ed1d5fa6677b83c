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

#[cfg(test)]
mod tests {
    use super::*;

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
