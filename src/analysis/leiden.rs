//! The Leiden algorithm (Traag, Waltman & van Eck, 2019) for modularity with a
//! resolution parameter, on a small weighted undirected graph. Deterministic: node
//! orders come from a seeded generator, and the refinement step takes the best merge
//! (the θ → 0 limit of the paper's randomized choice), so the same input always gives
//! the same communities.
//!
//! Written here because no maintained crate offers a seeded, weighted Leiden; the
//! graphs carve clusters (one node per table) are small enough that clarity wins over
//! raw speed.

use std::collections::{BTreeMap, HashMap, VecDeque};

/// A weighted undirected graph; parallel edges add up, self-loops are allowed.
#[derive(Debug, Clone)]
pub struct Graph {
    adjacency: Vec<Vec<(usize, f64)>>,
    self_loops: Vec<f64>,
    edges: BTreeMap<(usize, usize), f64>,
}

impl Graph {
    pub fn new(nodes: usize) -> Graph {
        Graph {
            adjacency: vec![Vec::new(); nodes],
            self_loops: vec![0.0; nodes],
            edges: BTreeMap::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.adjacency.len()
    }

    pub fn is_empty(&self) -> bool {
        self.adjacency.is_empty()
    }

    /// Adds weight to the edge between `a` and `b` (ignored when not positive).
    pub fn add_edge(&mut self, a: usize, b: usize, weight: f64) {
        if weight <= 0.0 || !weight.is_finite() {
            return;
        }
        *self.edges.entry((a.min(b), a.max(b))).or_default() += weight;
    }

    /// Builds the adjacency lists from the edge map; call after the last `add_edge`.
    fn finish(&mut self) {
        for list in &mut self.adjacency {
            list.clear();
        }
        self.self_loops.iter_mut().for_each(|w| *w = 0.0);
        for (&(a, b), &w) in &self.edges {
            if a == b {
                self.self_loops[a] += w;
            } else {
                self.adjacency[a].push((b, w));
                self.adjacency[b].push((a, w));
            }
        }
    }

    fn strengths(&self) -> Vec<f64> {
        (0..self.len())
            .map(|i| {
                self.adjacency[i].iter().map(|(_, w)| w).sum::<f64>() + 2.0 * self.self_loops[i]
            })
            .collect()
    }

    pub fn edges(&self) -> impl Iterator<Item = (usize, usize, f64)> + '_ {
        self.edges.iter().map(|(&(a, b), &w)| (a, b, w))
    }
}

/// Modularity of a partition with resolution γ:
/// Σ_c [ internal_c / m − γ (K_c / 2m)² ].
pub fn modularity(graph: &Graph, membership: &[usize], resolution: f64) -> f64 {
    let mut g = graph.clone();
    g.finish();
    let strengths = g.strengths();
    let two_m: f64 = strengths.iter().sum();
    if two_m == 0.0 {
        return 0.0;
    }
    let mut internal: HashMap<usize, f64> = HashMap::new();
    let mut total: HashMap<usize, f64> = HashMap::new();
    for (a, b, w) in g.edges() {
        if membership[a] == membership[b] {
            *internal.entry(membership[a]).or_default() += w;
        }
    }
    for (i, k) in strengths.iter().enumerate() {
        *total.entry(membership[i]).or_default() += k;
    }
    total
        .iter()
        .map(|(c, k)| {
            2.0 * internal.get(c).copied().unwrap_or(0.0) / two_m - resolution * (k / two_m).powi(2)
        })
        .sum()
}

/// Runs Leiden with `runs` fixed seeds and keeps the partition of highest modularity
/// (the first, on ties): still deterministic, and less at the mercy of one node order.
pub fn best_of(graph: &Graph, resolution: f64, runs: u64) -> (Vec<usize>, f64) {
    let mut best: Option<(Vec<usize>, f64)> = None;
    for seed in 0..runs.max(1) {
        let membership = leiden(graph, resolution, 42 + seed);
        let q = modularity(graph, &membership, resolution);
        if best.as_ref().is_none_or(|(_, b)| q > *b + 1e-12) {
            best = Some((membership, q));
        }
    }
    best.expect("at least one run")
}

/// A small seeded generator (xorshift64*), enough for shuffling node orders.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = (self.next() % (i as u64 + 1)) as usize;
            items.swap(i, j);
        }
    }
}

/// Communities of `graph`: one community index per node, numbered from 0 in order of
/// each community's lowest node.
pub fn leiden(graph: &Graph, resolution: f64, seed: u64) -> Vec<usize> {
    let mut rng = Rng::new(seed);
    let mut g = graph.clone();
    g.finish();
    let two_m: f64 = g.strengths().iter().sum();
    if g.is_empty() || two_m == 0.0 {
        return (0..g.len()).collect();
    }
    // Which node of the current (aggregated) graph each original node is in.
    let mut node_of: Vec<usize> = (0..g.len()).collect();
    let mut partition: Vec<usize> = (0..g.len()).collect();
    for _ in 0..64 {
        move_nodes_fast(&g, &mut partition, resolution, two_m, &mut rng);
        let communities = count_distinct(&partition);
        if communities == g.len() {
            break;
        }
        let refined = refine(&g, &partition, resolution, two_m, &mut rng);
        let (dense, count) = densify(&refined);
        if count == g.len() {
            // Refinement merged nothing: aggregation cannot shrink the graph further.
            break;
        }
        let mut aggregated = Graph::new(count);
        for (a, b, w) in g.edges() {
            aggregated.add_edge(dense[a], dense[b], w);
        }
        aggregated.finish();
        let mut next_partition = vec![0; count];
        for (node, &r) in dense.iter().enumerate() {
            next_partition[r] = partition[node];
        }
        for n in node_of.iter_mut() {
            *n = dense[*n];
        }
        g = aggregated;
        partition = next_partition;
    }
    let membership: Vec<usize> = node_of.iter().map(|&n| partition[n]).collect();
    renumber(&membership)
}

/// Local moving: visits nodes from a queue, moving each to the community that most
/// increases modularity; neighbours of a moved node are visited again.
fn move_nodes_fast(g: &Graph, partition: &mut [usize], gamma: f64, two_m: f64, rng: &mut Rng) {
    let k = g.strengths();
    let n = g.len();
    let mut total = vec![0.0; n.max(partition.iter().max().map_or(0, |m| m + 1))];
    for (i, &c) in partition.iter().enumerate() {
        total[c] += k[i];
    }
    let mut order: Vec<usize> = (0..n).collect();
    rng.shuffle(&mut order);
    let mut queue: VecDeque<usize> = order.into();
    let mut queued = vec![true; n];
    let mut weight_to: HashMap<usize, f64> = HashMap::new();
    while let Some(v) = queue.pop_front() {
        queued[v] = false;
        let old = partition[v];
        total[old] -= k[v];
        weight_to.clear();
        for &(u, w) in &g.adjacency[v] {
            *weight_to.entry(partition[u]).or_default() += w;
        }
        let gain = |c: usize, w: f64| w - gamma * k[v] * total[c] / two_m;
        let mut best = old;
        let mut best_gain = gain(old, weight_to.get(&old).copied().unwrap_or(0.0));
        let mut candidates: Vec<(&usize, &f64)> = weight_to.iter().collect();
        candidates.sort_by_key(|(c, _)| **c);
        for (&c, &w) in candidates {
            let g_c = gain(c, w);
            if g_c > best_gain + 1e-12 {
                best = c;
                best_gain = g_c;
            }
        }
        // Alone in a new, empty community gains 0.
        if best_gain < -1e-12 {
            best = total.len();
            total.push(0.0);
        }
        partition[v] = best;
        total[best] += k[v];
        if best != old {
            for &(u, _) in &g.adjacency[v] {
                if partition[u] != best && !queued[u] {
                    queued[u] = true;
                    queue.push_back(u);
                }
            }
        }
    }
}

/// Refinement: inside each community, starts from singletons and merges each
/// well-connected singleton into the well-connected sub-community it gains most from.
/// The result's communities are therefore connected, which plain Louvain does not
/// guarantee.
fn refine(g: &Graph, partition: &[usize], gamma: f64, two_m: f64, rng: &mut Rng) -> Vec<usize> {
    let k = g.strengths();
    let n = g.len();
    let mut refined: Vec<usize> = (0..n).collect();
    let mut total = k.clone();
    let mut singleton = vec![true; n];
    let mut members: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (v, &c) in partition.iter().enumerate() {
        members.entry(c).or_default().push(v);
    }
    for nodes in members.values() {
        let community_total: f64 = nodes.iter().map(|&v| k[v]).sum();
        // Weight from each refined cluster to the rest of the community.
        let mut external: HashMap<usize, f64> = HashMap::new();
        for &v in nodes {
            let w: f64 = g.adjacency[v]
                .iter()
                .filter(|(u, _)| partition[*u] == partition[v])
                .map(|(_, w)| w)
                .sum();
            external.insert(v, w);
        }
        let well_connected =
            |ext: f64, size: f64| ext >= gamma * size * (community_total - size) / two_m;
        let mut order: Vec<usize> = nodes
            .iter()
            .copied()
            .filter(|&v| well_connected(external[&v], k[v]))
            .collect();
        rng.shuffle(&mut order);
        for v in order {
            if !singleton[v] {
                continue;
            }
            let mut weight_to: BTreeMap<usize, f64> = BTreeMap::new();
            for &(u, w) in &g.adjacency[v] {
                if partition[u] == partition[v] {
                    *weight_to.entry(refined[u]).or_default() += w;
                }
            }
            let own = refined[v];
            let mut best = own;
            let mut best_gain = 0.0;
            for (&r, &w) in &weight_to {
                if r == own || !well_connected(external[&r], total[r]) {
                    continue;
                }
                let gain = w - gamma * k[v] * total[r] / two_m;
                if gain > best_gain + 1e-12 {
                    best = r;
                    best_gain = gain;
                }
            }
            if best != own {
                let w_to_best = weight_to[&best];
                refined[v] = best;
                total[best] += k[v];
                total[own] -= k[v];
                let ext_v = external[&v];
                *external.get_mut(&best).expect("cluster") += ext_v - 2.0 * w_to_best;
                singleton[v] = false;
                for &u in nodes {
                    if refined[u] == best {
                        singleton[u] = false;
                    }
                }
            }
        }
    }
    refined
}

fn count_distinct(values: &[usize]) -> usize {
    let mut v = values.to_vec();
    v.sort_unstable();
    v.dedup();
    v.len()
}

/// Maps labels to 0..count in order of first appearance.
fn densify(labels: &[usize]) -> (Vec<usize>, usize) {
    let mut map: HashMap<usize, usize> = HashMap::new();
    let dense = labels
        .iter()
        .map(|l| {
            let next = map.len();
            *map.entry(*l).or_insert(next)
        })
        .collect();
    (dense, map.len())
}

fn renumber(labels: &[usize]) -> Vec<usize> {
    densify(labels).0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clique(g: &mut Graph, nodes: &[usize]) {
        for (i, &a) in nodes.iter().enumerate() {
            for &b in &nodes[i + 1..] {
                g.add_edge(a, b, 1.0);
            }
        }
    }

    #[test]
    fn two_cliques_joined_by_one_edge_are_two_communities() {
        let mut g = Graph::new(8);
        clique(&mut g, &[0, 1, 2, 3]);
        clique(&mut g, &[4, 5, 6, 7]);
        g.add_edge(3, 4, 1.0);
        let m = leiden(&g, 1.0, 42);
        assert_eq!(m, [0, 0, 0, 0, 1, 1, 1, 1]);
        assert!(modularity(&g, &m, 1.0) > 0.4);
    }

    #[test]
    fn a_ring_of_cliques_finds_every_clique_and_is_deterministic() {
        let mut g = Graph::new(30);
        for c in 0..6 {
            let nodes: Vec<usize> = (c * 5..c * 5 + 5).collect();
            clique(&mut g, &nodes);
            g.add_edge(c * 5 + 4, ((c + 1) % 6) * 5, 1.0);
        }
        let m = leiden(&g, 1.0, 7);
        for c in 0..6 {
            let first = m[c * 5];
            assert!((c * 5..c * 5 + 5).all(|i| m[i] == first), "{m:?}");
        }
        assert_eq!(count_distinct(&m), 6);
        for seed in [1, 2, 3, 99] {
            assert_eq!(count_distinct(&leiden(&g, 1.0, seed)), 6);
        }
        assert_eq!(leiden(&g, 1.0, 7), m);
    }

    #[test]
    fn resolution_controls_the_size_of_communities() {
        let mut g = Graph::new(30);
        for c in 0..6 {
            let nodes: Vec<usize> = (c * 5..c * 5 + 5).collect();
            clique(&mut g, &nodes);
            g.add_edge(c * 5 + 4, ((c + 1) % 6) * 5, 2.0);
        }
        let coarse = count_distinct(&leiden(&g, 0.05, 7));
        let fine = count_distinct(&leiden(&g, 1.0, 7));
        assert!(coarse < fine, "coarse {coarse} fine {fine}");
    }

    #[test]
    fn isolated_nodes_stay_alone_and_weights_matter() {
        let mut g = Graph::new(5);
        g.add_edge(0, 1, 5.0);
        g.add_edge(1, 2, 0.1);
        g.add_edge(2, 3, 5.0);
        let m = leiden(&g, 1.0, 1);
        assert_eq!(m, [0, 0, 1, 1, 2]);
        assert_eq!(leiden(&Graph::new(3), 1.0, 1), [0, 1, 2]);
    }
}
