//! The example monoliths, compiled into the binary so `carve demo` works anywhere.
//! The files themselves live in `examples/<name>/`.

pub struct Example {
    pub name: &'static str,
    pub schema: &'static str,
    pub seed: &'static str,
    /// (service, SQL) for each service's workload file.
    pub workloads: &'static [(&'static str, &'static str)],
}

macro_rules! workload {
    ($example:literal, $service:literal) => {
        (
            $service,
            include_str!(concat!(
                "../examples/",
                $example,
                "/workload/",
                $service,
                ".sql"
            )),
        )
    };
}

static LIBRARY: Example = Example {
    name: "library",
    schema: include_str!("../examples/library/schema.sql"),
    seed: include_str!("../examples/library/seed.sql"),
    workloads: &[
        workload!("library", "ReadingList"),
        workload!("library", "BookCatalog"),
        workload!("library", "BookInventory"),
    ],
};

static SHOP: Example = Example {
    name: "shop",
    schema: include_str!("../examples/shop/schema.sql"),
    seed: include_str!("../examples/shop/seed.sql"),
    workloads: &[
        workload!("shop", "customers"),
        workload!("shop", "catalog"),
        workload!("shop", "inventory"),
        workload!("shop", "orders"),
        workload!("shop", "payments"),
        workload!("shop", "shipping"),
        workload!("shop", "notifications"),
    ],
};

impl Example {
    /// The example of this name (`library`, `shop`).
    pub fn named(name: &str) -> Option<&'static Example> {
        Example::all().into_iter().find(|e| e.name == name)
    }

    pub fn all() -> [&'static Example; 2] {
        [&LIBRARY, &SHOP]
    }
}
