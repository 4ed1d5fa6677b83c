//! The Leiden algorithm (Traag, Waltman & van Eck, 2019) for modularity with a
//! resolution parameter, on a small weighted undirected graph. Deterministic: node
//! orders come from a seeded generator, and the refinement step takes the best merge
//! (the θ → 0 limit of the paper's randomized choice), so the same input always gives
//! the same communities.
//!
//! Written here because no maintained crate offers a seeded, weighted Leiden. Graphs
//! have a node per table and, with a large workload, millions of edges (a service
//! using hundreds of tables links every pair), so the inner loops use dense vectors
//! rather than maps, and a graph is built once and shared by every run.

use std::borrow::Cow;
use std::collections::{BTreeMap, VecDeque};

use rustc_hash::FxHashMap as HashMap;

/// A weighted undirected graph; parallel edges add up, self-loops are allowed. Edges
/// are collected with `add_edge`, then `finish` builds the sorted edge list and the
/// adjacency lists the algorithm walks.
#[derive(Debug, Clone)]
pub struct Graph {
    adjacency: Vec<Vec<(usize, f64)>>,
    self_loops: Vec<f64>,
    /// Edges added since the last `finish`, as added; summed per pair in that order.
    pending: Vec<(usize, usize, f64)>,
    /// Sorted by pair, after `finish`.
    edges: Vec<(usize, usize, f64)>,
}

impl Graph {
    pub fn new(nodes: usize) -> Graph {
        Graph {
            adjacency: vec![Vec::new(); nodes],
            self_loops: vec![0.0; nodes],
            pending: Vec::new(),
            edges: Vec::new(),
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
        self.pending.push((a.min(b), a.max(b), weight));
    }

    /// Builds the sorted edge list and the adjacency lists; call after the last
    /// `add_edge` (the algorithms otherwise work on a finished copy).
    pub fn finish(&mut self) {
        if self.pending.is_empty() && !self.edges.is_empty() {
            return;
        }
        // A stable sort keeps each pair's weights in the order they were added, so the
        // sums (and everything after) are the same on every run.
        let mut all = std::mem::take(&mut self.edges);
        all.append(&mut self.pending);
        all.sort_by_key(|&(a, b, _)| (a, b));
        let mut merged: Vec<(usize, usize, f64)> = Vec::with_capacity(all.len());
        for (a, b, w) in all {
            match merged.last_mut() {
                Some(last) if (last.0, last.1) == (a, b) => last.2 += w,
                _ => merged.push((a, b, w)),
            }
        }
        self.pending = Vec::new();
        self.edges = merged;
        for list in &mut self.adjacency {
            list.clear();
        }
        self.self_loops.iter_mut().for_each(|w| *w = 0.0);
        for &(a, b, w) in &self.edges {
            if a == b {
                self.self_loops[a] += w;
            } else {
                self.adjacency[a].push((b, w));
                self.adjacency[b].push((a, w));
            }
        }
    }

    /// This graph finished: itself when it is, else a finished copy.
    fn finished(&self) -> Cow<'_, Graph> {
        if self.pending.is_empty() {
            Cow::Borrowed(self)
        } else {
            let mut g = self.clone();
            g.finish();
            Cow::Owned(g)
        }
    }

    fn strengths(&self) -> Vec<f64> {
        (0..self.len())
            .map(|i| {
                self.adjacency[i].iter().map(|(_, w)| w).sum::<f64>() + 2.0 * self.self_loops[i]
            })
            .collect()
    }

    /// How many distinct edges a finished graph has.
    pub fn edge_count(&self) -> usize {
        self.edges.len()
    }

    /// The edges of a finished graph, sorted by pair.
    pub fn edges(&self) -> impl Iterator<Item = (usize, usize, f64)> + '_ {
        self.edges.iter().copied()
    }
}

/// Modularity of a partition with resolution γ:
/// Σ_c [ internal_c / m − γ (K_c / 2m)² ].
pub fn modularity(graph: &Graph, membership: &[usize], resolution: f64) -> f64 {
    let g = graph.finished();
    let strengths = g.strengths();
    let two_m: f64 = strengths.iter().sum();
    if two_m == 0.0 {
        return 0.0;
    }
    let mut internal: HashMap<usize, f64> = HashMap::default();
    let mut total: HashMap<usize, f64> = HashMap::default();
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
/// The runs share the machine's cores; which partition wins does not depend on how
/// many there are.
pub fn best_of(graph: &Graph, resolution: f64, runs: u64) -> (Vec<usize>, f64) {
    let graph = graph.finished();
    let seeds: Vec<u64> = (0..runs.max(1)).map(|s| 42 + s).collect();
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(seeds.len());
    let mut results: Vec<(u64, Vec<usize>, f64)> = std::thread::scope(|scope| {
        let graph = &graph;
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let mine: Vec<u64> = seeds.iter().copied().skip(t).step_by(threads).collect();
                scope.spawn(move || {
                    mine.into_iter()
                        .map(|seed| {
                            let membership = leiden(graph, resolution, seed);
                            let q = modularity(graph, &membership, resolution);
                            (seed, membership, q)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("a clustering thread panicked"))
            .collect()
    });
    // In seed order, the first of the best wins, as a sequential loop would pick.
    results.sort_by_key(|(seed, _, _)| *seed);
    let mut best: Option<(Vec<usize>, f64)> = None;
    for (_, membership, q) in results {
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
    let mut g = graph.finished();
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
        g = Cow::Owned(aggregated);
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
    // Weight from the node to each neighbouring community: a dense vector, and the
    // communities touched, so clearing costs only what was used.
    let mut weight_to: Vec<f64> = vec![0.0; total.len()];
    let mut touched: Vec<usize> = Vec::new();
    while let Some(v) = queue.pop_front() {
        queued[v] = false;
        let old = partition[v];
        total[old] -= k[v];
        if weight_to.len() < total.len() {
            weight_to.resize(total.len(), 0.0);
        }
        for &(u, w) in &g.adjacency[v] {
            let c = partition[u];
            if weight_to[c] == 0.0 {
                touched.push(c);
            }
            weight_to[c] += w;
        }
        touched.sort_unstable();
        touched.dedup();
        let gain = |c: usize, w: f64| w - gamma * k[v] * total[c] / two_m;
        let mut best = old;
        let mut best_gain = gain(old, weight_to[old]);
        for &c in &touched {
            let g_c = gain(c, weight_to[c]);
            if g_c > best_gain + 1e-12 {
                best = c;
                best_gain = g_c;
            }
        }
        for &c in &touched {
            weight_to[c] = 0.0;
        }
        touched.clear();
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
    // Members per refined cluster: a node may only move while it is alone.
    let mut size = vec![1usize; n];
    let mut members: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (v, &c) in partition.iter().enumerate() {
        members.entry(c).or_default().push(v);
    }
    for nodes in members.values() {
        let community_total: f64 = nodes.iter().map(|&v| k[v]).sum();
        // Weight from each refined cluster to the rest of the community.
        let mut external: HashMap<usize, f64> = HashMap::default();
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
            if size[refined[v]] != 1 {
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
                size[best] += 1;
                size[own] -= 1;
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
    let mut map: HashMap<usize, usize> = HashMap::default();
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
