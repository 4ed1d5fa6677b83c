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

/// One resolution of a sweep: the best of its seeds' partitions, how well it
/// divides the graph at the standard resolution, and how far the seeds agree.
#[derive(Debug, Clone)]
pub struct Scale {
    pub resolution: f64,
    pub membership: Vec<usize>,
    /// Modularity at resolution 1, so scales compare on one measure.
    pub modularity: f64,
    /// Mean adjusted Rand index between the seeds' partitions: 1.0 when every
    /// node order gives the same domains (a partition the graph really has).
    pub agreement: f64,
}

/// The resolutions a sweep tries, from a few large domains to many small ones,
/// and the seeds each runs with.
pub const SWEEP: [f64; 7] = [0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0];
const SWEEP_SEEDS: u64 = 8;

/// On a graph this large (a workload of thousands of tables), the sweep is cut to
/// about the cost of eight runs: three resolutions, three seeds each.
const LARGE_GRAPH: usize = 500_000;
const LARGE_SWEEP: [f64; 3] = [0.5, 1.0, 2.0];
const LARGE_SWEEP_SEEDS: u64 = 3;

/// The resolutions and seeds a sweep of `graph` runs.
pub fn sweep_for(graph: &Graph) -> (Vec<f64>, u64) {
    if graph.edge_count() > LARGE_GRAPH {
        (LARGE_SWEEP.to_vec(), LARGE_SWEEP_SEEDS)
    } else {
        (SWEEP.to_vec(), SWEEP_SEEDS)
    }
}

/// Clusters at each of `resolutions` with `seeds` seeds each; see [`Scale`].
pub fn sweep(graph: &Graph, resolutions: &[f64], seeds: u64) -> Vec<Scale> {
    let graph = graph.finished();
    let seeds = seeds.max(1);
    let runs: Vec<(f64, u64)> = resolutions
        .iter()
        .flat_map(|&r| (0..seeds).map(move |s| (r, 42 + s)))
        .collect();
    // Runs are independent: one per core at a time, in the runs' order, each with
    // its modularity at its own resolution.
    let results: Vec<(Vec<usize>, f64)> = {
        use rayon::prelude::*;
        runs.par_iter()
            .map(|&(resolution, seed)| {
                let membership = leiden(&graph, resolution, seed);
                let q = modularity(&graph, &membership, resolution);
                (membership, q)
            })
            .collect()
    };
    let mut results = results.into_iter();
    resolutions
        .iter()
        .map(|&resolution| {
            let (seeds, qualities): (Vec<Vec<usize>>, Vec<f64>) =
                results.by_ref().take(seeds as usize).unzip();
            let mut agreement = 0.0;
            let mut pairs = 0.0;
            for (i, a) in seeds.iter().enumerate() {
                for b in &seeds[i + 1..] {
                    agreement += adjusted_rand_index(a, b);
                    pairs += 1.0;
                }
            }
            // The seed of highest modularity at its own resolution, the first on ties.
            let best = qualities
                .iter()
                .copied()
                .enumerate()
                .fold((0, f64::NEG_INFINITY), |best, (i, q)| {
                    if q > best.1 + 1e-12 {
                        (i, q)
                    } else {
                        best
                    }
                })
                .0;
            let membership = seeds.into_iter().nth(best).unwrap_or_default();
            Scale {
                resolution,
                modularity: modularity(&graph, &membership, 1.0),
                membership,
                agreement: if pairs > 0.0 { agreement / pairs } else { 1.0 },
            }
        })
        .collect()
}

/// How close to the best modularity a scale must come to be chosen.
const NEAR_BEST: f64 = 0.99;
/// Below this agreement, a scale's seeds disagree too widely for it to stand for a
/// partition the graph has.
const SETTLED: f64 = 0.9;
/// How close to the best modularity a scale must come to be chosen when none
/// qualifies.
const NEAR_ENOUGH: f64 = 0.95;
/// How far the seeds must agree for a scale to be chosen.
const AGREED: f64 = 0.99;
/// By how much more seeds must agree for one scale to count as steadier than another.
const STEADIER: f64 = 0.01;

/// The scale a sweep settles on: among those whose seeds agree and whose
/// modularity is within 1 % of the best, the one nearest `preferred` (the standard
/// resolution 1 by default). When none qualifies, the one nearest `preferred`,
/// unless its seeds disagree widely (below [`SETTLED`]): then, of those within 5 %
/// of the best, the nearest `preferred` of those whose seeds agree most (within
/// [`STEADIER`]).
pub fn choose(scales: &[Scale], preferred: f64) -> usize {
    let best = best_modularity(scales);
    let distance = |s: &Scale| (s.resolution.ln() - preferred.ln()).abs();
    let nearest = |qualified: &dyn Fn(&Scale) -> bool| {
        scales
            .iter()
            .enumerate()
            .filter(|(_, s)| qualified(s))
            .min_by(|(_, a), (_, b)| distance(a).total_cmp(&distance(b)))
            .map(|(i, _)| i)
    };
    let near_enough = |s: &Scale| s.modularity >= NEAR_ENOUGH * best;
    let steadiest = scales
        .iter()
        .filter(|s| near_enough(s))
        .map(|s| s.agreement)
        .fold(0.0, f64::max);
    nearest(&|s| qualifies(s, best))
        .or_else(|| {
            let at_preferred = nearest(&|_| true)?;
            if scales[at_preferred].agreement >= SETTLED {
                return Some(at_preferred);
            }
            nearest(&|s| near_enough(s) && s.agreement >= steadiest - STEADIER)
        })
        .unwrap_or(0)
}

fn best_modularity(scales: &[Scale]) -> f64 {
    scales
        .iter()
        .map(|s| s.modularity)
        .fold(f64::NEG_INFINITY, f64::max)
}

/// Whether `choose` may settle on a scale by the first rule.
fn qualifies(scale: &Scale, best: f64) -> bool {
    scale.agreement >= AGREED && scale.modularity >= NEAR_BEST * best
}

/// How many times a sweep may double its highest resolution looking for a stable
/// scale.
const FURTHER: usize = 4;

/// [`sweep`], and then, when `choose` would settle on a scale whose seeds disagree
/// widely, further up: the resolution doubled while each step makes the seeds agree
/// more, until they agree, at most [`FURTHER`] times. A large graph of small
/// communities needs it: at resolution 1 modularity merges communities that a
/// single link joins (its resolution limit), differently from seed to seed.
pub fn sweep_until_stable(
    graph: &Graph,
    resolutions: &[f64],
    seeds: u64,
    preferred: f64,
) -> Vec<Scale> {
    let mut scales = sweep(graph, resolutions, seeds);
    if scales.is_empty() || scales[choose(&scales, preferred)].agreement >= SETTLED {
        return scales;
    }
    for _ in 0..FURTHER {
        let Some(last) = scales.last() else { break };
        let (resolution, agreement) = (last.resolution * 2.0, last.agreement);
        let next = sweep(graph, &[resolution], seeds).remove(0);
        let steadier = next.agreement > agreement + STEADIER;
        let agreed = next.agreement >= AGREED;
        scales.push(next);
        if agreed || !steadier {
            break;
        }
    }
    scales
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

/// Adjusted Rand index of two partitions of the same nodes (1.0: the same; about
/// 0 for chance agreement).
pub fn adjusted_rand_index(a: &[usize], b: &[usize]) -> f64 {
    let choose2 = |n: usize| (n * n.saturating_sub(1)) as f64 / 2.0;
    let mut pairs: HashMap<(usize, usize), usize> = HashMap::default();
    let mut left: HashMap<usize, usize> = HashMap::default();
    let mut right: HashMap<usize, usize> = HashMap::default();
    for (x, y) in a.iter().zip(b) {
        *pairs.entry((*x, *y)).or_default() += 1;
        *left.entry(*x).or_default() += 1;
        *right.entry(*y).or_default() += 1;
    }
    let index: f64 = pairs.values().map(|&n| choose2(n)).sum();
    let sum_a: f64 = left.values().map(|&n| choose2(n)).sum();
    let sum_b: f64 = right.values().map(|&n| choose2(n)).sum();
    let expected = sum_a * sum_b / choose2(a.len()).max(1.0);
    let max = (sum_a + sum_b) / 2.0;
    if (max - expected).abs() < 1e-12 {
        return 1.0;
    }
    (index - expected) / (max - expected)
}

/// Adjusted Rand index of two labellings of the same items, given as pairs of
/// labels of any kind (a declared domain and a proposed one, say).
pub fn adjusted_rand_index_of<A, B>(labels: impl IntoIterator<Item = (A, B)>) -> f64
where
    A: std::hash::Hash + Eq,
    B: std::hash::Hash + Eq,
{
    fn number<L: std::hash::Hash + Eq>(seen: &mut HashMap<L, usize>, label: L) -> usize {
        let next = seen.len();
        *seen.entry(label).or_insert(next)
    }
    let (mut left, mut right) = (HashMap::default(), HashMap::default());
    let (a, b): (Vec<usize>, Vec<usize>) = labels
        .into_iter()
        .map(|(x, y)| (number(&mut left, x), number(&mut right, y)))
        .unzip();
    adjusted_rand_index(&a, &b)
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

    #[test]
    fn adjusted_rand_index_ignores_labels_and_scores_chance_near_zero() {
        assert_eq!(adjusted_rand_index(&[0, 0, 1, 1], &[5, 5, 2, 2]), 1.0);
        assert!(adjusted_rand_index(&[0, 0, 1, 1], &[0, 1, 0, 1]) < 0.0);
        let partial = adjusted_rand_index(&[0, 0, 0, 1, 1, 1], &[0, 0, 1, 1, 1, 1]);
        assert!(partial > 0.0 && partial < 1.0, "{partial}");
    }

    fn scale(resolution: f64, modularity: f64, agreement: f64) -> Scale {
        Scale {
            resolution,
            membership: Vec::new(),
            modularity,
            agreement,
        }
    }

    /// The textbook case of modularity's resolution limit: a ring of 100 six-node
    /// cliques, each joined to the next by one edge. Up to resolution 3 neighbouring
    /// cliques merge (which ones, by seed); the sweep goes further up and settles
    /// on the cliques.
    #[test]
    fn past_the_resolution_limit_the_sweep_finds_the_small_clusters() {
        let (cliques, size) = (100, 6);
        let mut g = Graph::new(cliques * size);
        for c in 0..cliques {
            let nodes: Vec<usize> = (c * size..(c + 1) * size).collect();
            clique(&mut g, &nodes);
            g.add_edge(c * size, ((c + 1) % cliques) * size + 1, 1.0);
        }
        g.finish();
        let at_one = sweep(&g, &[1.0], 8).remove(0);
        assert!(
            count_distinct(&at_one.membership) < cliques,
            "merged at resolution 1"
        );
        let scales = sweep_until_stable(&g, &SWEEP, 8, 1.0);
        let chosen = &scales[choose(&scales, 1.0)];
        assert!(chosen.resolution > 3.0, "{}", chosen.resolution);
        assert_eq!(count_distinct(&chosen.membership), cliques);
        let truth: Vec<usize> = (0..cliques * size).map(|n| n / size).collect();
        assert_eq!(adjusted_rand_index(&truth, &chosen.membership), 1.0);
    }

    #[test]
    fn the_sweep_settles_on_an_agreed_near_best_scale_nearest_one() {
        // Resolution 1 is best by a hair, but its seeds disagree: 0.75 is taken.
        let scales = [
            scale(0.5, 0.678, 1.0),
            scale(0.75, 0.700, 1.0),
            scale(1.0, 0.705, 0.98),
            scale(2.0, 0.676, 0.98),
        ];
        assert_eq!(choose(&scales, 1.0), 1);
        // Several qualify: the one nearest the preferred resolution.
        let plateau = [
            scale(0.25, 0.714, 1.0),
            scale(1.0, 0.714, 1.0),
            scale(1.5, 0.714, 1.0),
        ];
        assert_eq!(choose(&plateau, 1.0), 1);
        // None qualifies and the seeds disagree at 1: of those within 5 % of the
        // best, the one whose seeds agree most.
        let restless = [
            scale(0.5, 0.4, 0.7),
            scale(1.0, 0.48, 0.72),
            scale(8.0, 0.47, 0.85),
            scale(16.0, 0.44, 0.95),
        ];
        assert_eq!(choose(&restless, 1.0), 2);
        let tied = [scale(0.5, 0.4, 0.7), scale(2.0, 0.4, 0.705)];
        assert_eq!(choose(&tied, 1.0), 0, "equals: the nearest to 1 (by ratio)");
        // None qualifies, but the preferred scale's seeds mostly agree: it stands.
        let settled = [scale(0.5, 0.47, 1.0), scale(1.0, 0.48, 0.95)];
        assert_eq!(choose(&settled, 1.0), 1);
    }

    #[test]
    fn a_sweep_of_two_cliques_agrees_at_every_seed() {
        let mut g = Graph::new(6);
        for (a, b) in [(0, 1), (1, 2), (0, 2), (3, 4), (4, 5), (3, 5), (2, 3)] {
            g.add_edge(a, b, 1.0);
        }
        let scales = sweep(&g, &[0.5, 1.0], SWEEP_SEEDS);
        assert_eq!(scales.len(), 2);
        let at_one = &scales[1];
        assert_eq!(at_one.agreement, 1.0);
        assert_eq!(at_one.membership[0], at_one.membership[2]);
        assert_ne!(at_one.membership[0], at_one.membership[3]);
        assert!((at_one.modularity - modularity(&g, &at_one.membership, 1.0)).abs() < 1e-12);
    }
}
