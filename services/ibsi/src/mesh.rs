//! The ROI's surface as a triangle mesh (marching cubes at iso-level 0.5 over the binary mask,
//! IBSI 1 §3.1.1) and the convex hull of its vertices.
//!
//! Cube corners are voxel centres; a vertex sits at the middle of each cube edge whose two
//! corners differ (the mask is binary, so interpolation always gives the midpoint). Vertex
//! coordinates are therefore half-integers in voxel units, and every geometric predicate here
//! is evaluated exactly on doubled integer coordinates; lengths, areas and volumes are then
//! taken in mm.
//!
//! The triangulation of each of the 256 cube configurations is derived, not tabulated: on every
//! cube face the crossing edges are joined into segments (on a face whose diagonal corners are
//! inside, each outside corner is cut off on its own, joining the inside ones, so neighbouring
//! cubes always agree), each segment is oriented so the inside lies on one fixed side, the
//! segments chain into closed loops, and each loop is split into the triangles that bulge
//! away from the cube's minority corners. The mesh is therefore closed and consistently oriented with outward
//! normals, which the divergence-theorem volume needs. On the IBSI phantom this gives exactly
//! the volume and area of scikit-image's Lewiner marching cubes (556.33 mm³, 388.07 mm²); on
//! smooth lesions it differs from it by up to about 0.2% in volume, where a cube with four
//! corners inside (a hexagonal loop) or an ambiguous face is split the other way.

use crate::roi::Roi;
use std::sync::OnceLock;

/// Cube corner `c` (bits: x, y, z) as a unit offset.
fn corner(c: usize) -> [i64; 3] {
    [(c & 1) as i64, ((c >> 1) & 1) as i64, ((c >> 2) & 1) as i64]
}

/// The 12 cube edges as (lower corner, axis).
fn edges() -> Vec<(usize, usize)> {
    let mut e = Vec::with_capacity(12);
    for axis in 0..3 {
        for c in 0..8 {
            if c & (1 << axis) == 0 {
                e.push((c, axis));
            }
        }
    }
    e
}

/// Triangles (edge index triples, outward-facing) for each of the 256 corner configurations,
/// in one flat list: configuration `c`'s are `edges[start[c]..start[c + 1]]`.
struct Triangulation {
    start: [usize; 257],
    edges: Vec<[u8; 3]>,
}

impl Triangulation {
    fn get() -> &'static Triangulation {
        static TABLE: OnceLock<Triangulation> = OnceLock::new();
        TABLE.get_or_init(|| {
            let mut table = Triangulation { start: [0; 257], edges: Vec::new() };
            for config in 0..256 {
                table.edges.extend(cube_triangles(config));
                table.start[config + 1] = table.edges.len();
            }
            table
        })
    }
}

fn cube_triangles(config: usize) -> Vec<[u8; 3]> {
    let edges = edges();
    let inside = |c: usize| config & (1 << c) != 0;
    let edge_of = |a: usize, b: usize| -> usize {
        let (lo, hi) = (a.min(b), a.max(b));
        edges.iter().position(|&(c, axis)| c == lo && c | (1 << axis) == hi).expect("an edge")
    };
    // Doubled coordinates of an edge's midpoint.
    let mid = |e: usize| -> [i64; 3] {
        let (c, axis) = edges[e];
        let mut p = corner(c).map(|v| 2 * v);
        p[axis] += 1;
        p
    };
    let mut next = [usize::MAX; 12];
    for axis in 0..3 {
        let (u, v) = ((axis + 1) % 3, (axis + 2) % 3);
        for side in 0..2 {
            // The face's corners in cyclic order, and its outward normal.
            let ring: [usize; 4] = [(0, 0), (1, 0), (1, 1), (0, 1)].map(|(a, b)| (side << axis) | (a << u) | (b << v));
            let mut normal = [0i64; 3];
            normal[axis] = if side == 1 { 1 } else { -1 };
            let crossing: Vec<usize> = (0..4).filter(|&i| inside(ring[i]) != inside(ring[(i + 1) % 4])).collect();
            // (edge, edge, an inside corner on the inside side of the segment).
            let mut segments: Vec<(usize, usize, usize)> = Vec::new();
            match crossing.len() {
                0 => {}
                2 => {
                    let a = edge_of(ring[crossing[0]], ring[(crossing[0] + 1) % 4]);
                    let b = edge_of(ring[crossing[1]], ring[(crossing[1] + 1) % 4]);
                    let corner_in = *ring.iter().find(|&&c| inside(c)).expect("one corner inside");
                    segments.push((a, b, corner_in));
                }
                _ => {
                    // Diagonal corners inside: cut each outside corner off separately.
                    for i in 0..4 {
                        if !inside(ring[i]) {
                            let a = edge_of(ring[(i + 3) % 4], ring[i]);
                            let b = edge_of(ring[i], ring[(i + 1) % 4]);
                            segments.push((a, b, ring[(i + 1) % 4]));
                        }
                    }
                }
            }
            for (a, b, c) in segments {
                // Orient a -> b so that ((b - a) x n) . (inside corner - a) > 0.
                let (pa, pb, pc) = (mid(a), mid(b), corner(c).map(|x| 2 * x));
                let d = sub(pb, pa);
                let side_of_inside = dot(cross(d, normal), sub(pc, pa));
                let (from, to) = if side_of_inside > 0 { (a, b) } else { (b, a) };
                debug_assert!(next[from] == usize::MAX, "config {config}: edge {from} starts two segments");
                next[from] = to;
            }
        }
    }
    let mut used = [false; 12];
    let mut triangles = Vec::new();
    for start in 0..12 {
        if next[start] == usize::MAX || used[start] {
            continue;
        }
        let mut lp = vec![start];
        used[start] = true;
        let mut e = next[start];
        while e != start {
            lp.push(e);
            used[e] = true;
            e = next[e];
        }
        // Of all triangulations of the loop, the one bulging away from the cube's minority
        // corners: the most enclosed volume when at most four corners are inside, the least
        // when more are (so a configuration and its complement get the same surface); the
        // first found on a tie.
        let volume = |t: &[[u8; 3]]| -> i64 {
            t.iter()
                .map(|tri| {
                    let [a, b, c] = tri.map(|e| sub(mid(e as usize), [1, 1, 1]));
                    dot(a, cross(b, c))
                })
                .sum()
        };
        let best = triangulations_of(&lp.iter().map(|&e| e as u8).collect::<Vec<_>>())
            .into_iter()
            .fold(None::<(i64, Vec<[u8; 3]>)>, |best, t| {
                let v = if config.count_ones() <= 4 { volume(&t) } else { -volume(&t) };
                match best {
                    Some((bv, _)) if bv >= v => best,
                    _ => Some((v, t)),
                }
            })
            .expect("a loop has a triangulation");
        triangles.extend(best.1);
    }
    triangles
}

/// Every triangulation of a polygon (as vertex triples, in the polygon's orientation).
fn triangulations_of(poly: &[u8]) -> Vec<Vec<[u8; 3]>> {
    if poly.len() < 3 {
        return vec![Vec::new()];
    }
    let (first, last) = (poly[0], poly[poly.len() - 1]);
    let mut all = Vec::new();
    // The triangle on the edge last -> first has its third corner at poly[k].
    for k in 1..poly.len() - 1 {
        for left in triangulations_of(&poly[..=k]) {
            for right in triangulations_of(&poly[k..]) {
                let mut t = left.clone();
                t.extend(right);
                t.push([first, poly[k], last]);
                all.push(t);
            }
        }
    }
    all
}

fn sub(a: [i64; 3], b: [i64; 3]) -> [i64; 3] {
    [a[0] - b[0], a[1] - b[1], a[2] - b[2]]
}

fn cross(a: [i64; 3], b: [i64; 3]) -> [i64; 3] {
    [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]]
}

fn dot(a: [i64; 3], b: [i64; 3]) -> i64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}

/// A closed triangle mesh: vertices in doubled voxel units (exact) and triangles indexing them.
#[derive(Debug, Clone, PartialEq)]
pub struct Mesh {
    /// Vertex positions, twice the voxel coordinate (so whole numbers).
    pub doubled: Vec<[i64; 3]>,
    /// Outward-facing triangles.
    pub triangles: Vec<[u32; 3]>,
    /// Voxel spacing, mm.
    pub spacing_mm: [f64; 3],
}

impl Mesh {
    /// Marching cubes over the ROI's morphological mask.
    ///
    /// The cubes are visited row by row along x. A cube's configuration is two columns of four
    /// corners, so each column's bits are read once per row and shared by the two cubes on
    /// either side of it.
    pub fn of(roi: &Roi) -> Mesh {
        let table = Triangulation::get();
        let edges = edges();
        // The padded grid is the mask's bounding box with one voxel of padding, so every cube
        // of it (from each corner but the last along each axis) may cross the surface.
        let [px, py, pz] = roi.padded_dims;
        let plane = px * py;
        let padded = roi.morphology_inside();
        // Per cube edge: its vertex's slot in a plane's table (before the cube's row offset),
        // the z step of its lower corner, and its doubled offset from the cube's first corner.
        // A cube layer touches two planes of corners, so two plane-sized tables suffice: plane
        // k's in half k % 2, cleared when the layer below it is done with it.
        let slot: [usize; 12] = std::array::from_fn(|e| {
            let (c, axis) = edges[e];
            let [cx, cy, _] = corner(c);
            (cx as usize + px * cy as usize) * 3 + axis
        });
        let step_z: [usize; 12] = std::array::from_fn(|e| corner(edges[e].0)[2] as usize);
        let offset: [[i64; 3]; 12] = std::array::from_fn(|e| {
            let (c, axis) = edges[e];
            let mut d = corner(c).map(|v| 2 * v);
            d[axis] += 1;
            d
        });
        let mut ids = vec![u32::MAX; 2 * plane * 3];
        let mut doubled = Vec::new();
        let mut triangles = Vec::new();
        // Column bits at each x: corner (x, y, z) in bit 0, (x, y+1, z) in bit 2, (x, y, z+1)
        // in bit 4, (x, y+1, z+1) in bit 6 (the cube corner numbering with the x bit clear).
        let mut column = vec![0u8; px];
        for z in 0..pz - 1 {
            let upper = (z + 1) % 2 * plane * 3;
            ids[upper..upper + plane * 3].fill(u32::MAX);
            for y in 0..py - 1 {
                let row = |dy: usize, dz: usize| &padded[(y + dy + py * (z + dz)) * px..][..px];
                let (r00, r10, r01, r11) = (row(0, 0), row(1, 0), row(0, 1), row(1, 1));
                for x in 0..px {
                    column[x] =
                        u8::from(r00[x]) | u8::from(r10[x]) << 2 | u8::from(r01[x]) << 4 | u8::from(r11[x]) << 6;
                }
                for x in 0..px - 1 {
                    let config = usize::from(column[x] | column[x + 1] << 1);
                    let cube = &table.edges[table.start[config]..table.start[config + 1]];
                    // (Plain loops rather than `map` closures on the arrays, which the
                    // compiler does not always inline.)
                    for tri in cube {
                        let mut t = [0u32; 3];
                        for (id, &e) in t.iter_mut().zip(tri) {
                            let e = usize::from(e);
                            let cz = z + step_z[e];
                            let key = (x + px * y) * 3 + slot[e] + cz % 2 * plane * 3;
                            if ids[key] == u32::MAX {
                                ids[key] = doubled.len() as u32;
                                let o = offset[e];
                                doubled.push([2 * x as i64 + o[0], 2 * y as i64 + o[1], 2 * z as i64 + o[2]]);
                            }
                            *id = ids[key];
                        }
                        triangles.push(t);
                    }
                }
            }
        }
        Mesh { doubled, triangles, spacing_mm: roi.spacing_mm }
    }

    /// Every vertex in mm.
    pub fn positions_mm(&self) -> Vec<[f64; 3]> {
        self.doubled.iter().map(|d| std::array::from_fn(|a| d[a] as f64 * 0.5 * self.spacing_mm[a])).collect()
    }

    /// Enclosed volume `Σ a·(b×c) / 6` over the triangles (divergence theorem), mm³.
    pub fn volume_mm3(&self) -> f64 {
        enclosed_volume_mm3(&self.triangles, &self.positions_mm())
    }

    /// Surface area `Σ |(b-a)×(c-a)| / 2`, mm².
    pub fn area_mm2(&self) -> f64 {
        surface_area_mm2(&self.triangles, &self.positions_mm())
    }
}

/// Volume enclosed by closed, outward-facing triangles over vertices at `pos` (mm), mm³.
pub fn enclosed_volume_mm3(triangles: &[[u32; 3]], pos: &[[f64; 3]]) -> f64 {
    triangles
        .iter()
        .map(|t| {
            let (a, b, c) = (pos[t[0] as usize], pos[t[1] as usize], pos[t[2] as usize]);
            a[0] * (b[1] * c[2] - b[2] * c[1]) + a[1] * (b[2] * c[0] - b[0] * c[2]) + a[2] * (b[0] * c[1] - b[1] * c[0])
        })
        .sum::<f64>()
        / 6.0
}

/// Total area of triangles over vertices at `pos` (mm), mm².
pub fn surface_area_mm2(triangles: &[[u32; 3]], pos: &[[f64; 3]]) -> f64 {
    triangles
        .iter()
        .map(|t| {
            let (a, b, c) = (pos[t[0] as usize], pos[t[1] as usize], pos[t[2] as usize]);
            let (u, v) = ([b[0] - a[0], b[1] - a[1], b[2] - a[2]], [c[0] - a[0], c[1] - a[1], c[2] - a[2]]);
            let n = [u[1] * v[2] - u[2] * v[1], u[2] * v[0] - u[0] * v[2], u[0] * v[1] - u[1] * v[0]];
            (n[0] * n[0] + n[1] * n[1] + n[2] * n[2]).sqrt()
        })
        .sum::<f64>()
        / 2.0
}

/// The convex hull of a mesh's vertices: its own vertices (indices into the mesh) and
/// outward-facing triangles over them.
#[derive(Debug, Clone, PartialEq)]
pub struct Hull {
    /// Triangles, indices into the mesh's vertices.
    pub triangles: Vec<[u32; 3]>,
}

/// `det(b - a, c - a, p - a)`: positive when `p` is above the plane of the
/// counter-clockwise triangle `a b c`.
fn orient(a: [i64; 3], b: [i64; 3], c: [i64; 3], p: [i64; 3]) -> i64 {
    dot(cross(sub(b, a), sub(c, a)), sub(p, a))
}

impl Hull {
    /// Quickhull with exact integer predicates. Only vertices that are corners of the convex
    /// hull of the vertices in each of their three axis-parallel planes can be hull vertices (a
    /// point inside or on the edge of a plane's polygon is a mix of other points), so the
    /// others are dropped first (`plane_corners`): on the bench's ellipsoid 592 of 7,280
    /// vertices remain.
    /// Each remaining point waits on one face it lies above. A face keeps its plane (so a
    /// point's height above it is one dot product) and its farthest waiting point, which is
    /// added next: the faces it sees (or holds in their plane) are replaced by a fan from the
    /// horizon to it, and their waiting points move to a new face they lie above or, above
    /// none, are inside and dropped. `None` when the vertices span no volume.
    pub fn of(mesh: &Mesh) -> Option<Hull> {
        let pts = &mesh.doubled;
        let candidates = plane_corners(pts);
        if candidates.len() < 4 {
            return None;
        }
        // A first tetrahedron: extremes in x, then the farthest from that line, then from that plane.
        let p = |i: u32| pts[i as usize];
        let a = *candidates.iter().min_by_key(|&&i| p(i)).expect("not empty");
        let b = *candidates.iter().max_by_key(|&&i| dot(sub(p(i), p(a)), sub(p(i), p(a)))).expect("not empty");
        let ab = sub(p(b), p(a));
        let c = *candidates
            .iter()
            .max_by_key(|&&i| {
                let n = cross(ab, sub(p(i), p(a)));
                dot(n, n)
            })
            .expect("not empty");
        let d = *candidates.iter().max_by_key(|&&i| orient(p(a), p(b), p(c), p(i)).abs()).expect("not empty");
        if orient(p(a), p(b), p(c), p(d)) == 0 {
            return None;
        }
        let first = if orient(p(a), p(b), p(c), p(d)) < 0 {
            [[a, b, c], [a, d, b], [b, d, c], [c, d, a]]
        } else {
            [[a, c, b], [a, b, d], [b, c, d], [c, a, d]]
        };
        struct Face {
            v: [u32; 3],
            /// The face across each edge: `adj[k]` shares edge `v[k] -> v[k + 1]`, reversed.
            adj: [u32; 3],
            /// The plane: `normal · q - offset` is `orient(v, q)`, a point's height above it
            /// (times the normal's length), exactly.
            normal: [i64; 3],
            offset: i64,
            alive: bool,
            /// Points above this face and none before it, and the farthest of them (the last
            /// of the farthest in order; height 0 when none waits).
            waiting: Vec<u32>,
            farthest: (i64, u32),
        }
        // A face over `v`, its waiting list taken from the spare ones.
        let face = |v: [u32; 3], spare: &mut Vec<Vec<u32>>| {
            let normal = cross(sub(p(v[1]), p(v[0])), sub(p(v[2]), p(v[0])));
            let offset = dot(normal, p(v[0]));
            Face {
                v,
                adj: [0; 3],
                normal,
                offset,
                alive: true,
                waiting: spare.pop().unwrap_or_default(),
                farthest: (0, 0),
            }
        };
        let height = |f: &Face, q: u32| dot(f.normal, p(q)) - f.offset;
        let wait = |f: &mut Face, q: u32, h: i64| {
            f.waiting.push(q);
            if h >= f.farthest.0 {
                f.farthest = (h, q);
            }
        };
        // The face across edge k of `v`, among `faces`, by the edge's reverse.
        let across = |faces: &[Face], range: std::ops::Range<usize>, v: [u32; 3], k: usize| {
            let (a, b) = (v[k], v[(k + 1) % 3]);
            range
                .into_iter()
                .find(|&g| (0..3).any(|e| faces[g].v[e] == b && faces[g].v[(e + 1) % 3] == a))
                .expect("a closed surface") as u32
        };
        let mut spare: Vec<Vec<u32>> = Vec::new();
        let mut faces: Vec<Face> = first.iter().map(|&v| face(v, &mut spare)).collect();
        for f in 0..4 {
            faces[f].adj = std::array::from_fn(|k| across(&faces, 0..4, faces[f].v, k));
        }
        for &q in &candidates {
            for f in &mut faces {
                let h = height(f, q);
                if h > 0 {
                    wait(f, q, h);
                    break;
                }
            }
        }
        let (mut visible, mut horizon, mut orphans) = (Vec::new(), Vec::new(), Vec::new());
        let mut next = 0;
        while next < faces.len() {
            let start = next;
            next += 1;
            if !faces[start].alive || faces[start].waiting.is_empty() {
                continue;
            }
            let q = faces[start].farthest.1;
            // The faces q sees, found by walking across edges from one it sees.
            visible.clear();
            visible.push(start);
            faces[start].alive = false;
            let mut k = 0;
            while k < visible.len() {
                let f = visible[k];
                k += 1;
                for e in 0..3 {
                    let twin = faces[f].adj[e] as usize;
                    if faces[twin].alive && height(&faces[twin], q) >= 0 {
                        faces[twin].alive = false;
                        visible.push(twin);
                    }
                }
            }
            // The horizon: edges of seen faces whose neighbour stays, with that neighbour.
            horizon.clear();
            for &f in &visible {
                for e in 0..3 {
                    let outer = faces[f].adj[e] as usize;
                    if faces[outer].alive {
                        horizon.push((faces[f].v[e], faces[f].v[(e + 1) % 3], outer));
                    }
                }
            }
            // A fan from the horizon to q. Face [u, w, q] keeps the outer neighbour across
            // u -> w; its edges w -> q and q -> u meet the fan faces on the horizon edges that
            // start at w and end at u.
            let first_new = faces.len();
            for &(u, w, outer) in &horizon {
                let new = faces.len() as u32;
                let k =
                    (0..3).find(|&k| faces[outer].v[k] == w && faces[outer].v[(k + 1) % 3] == u).expect("shared edge");
                faces[outer].adj[k] = new;
                let mut f = face([u, w, q], &mut spare);
                f.adj[0] = outer as u32;
                faces.push(f);
            }
            for (h, &(u, w, _)) in horizon.iter().enumerate() {
                let after = horizon.iter().position(|&(s, _, _)| s == w).expect("the horizon is a cycle");
                let before = horizon.iter().position(|&(_, e, _)| e == u).expect("the horizon is a cycle");
                faces[first_new + h].adj[1] = (first_new + after) as u32;
                faces[first_new + h].adj[2] = (first_new + before) as u32;
            }
            // The seen faces' points move to the first new face they are above, if any; their
            // lists are kept for later faces.
            orphans.clear();
            for &f in &visible {
                let mut list = std::mem::take(&mut faces[f].waiting);
                orphans.extend(list.iter().copied().filter(|&w| w != q));
                list.clear();
                spare.push(list);
            }
            for &w in &orphans {
                for f in &mut faces[first_new..] {
                    let h = height(f, w);
                    if h > 0 {
                        wait(f, w, h);
                        break;
                    }
                }
            }
            next = next.min(first_new);
        }
        Some(Hull { triangles: faces.iter().filter(|f| f.alive).map(|f| f.v).collect() })
    }

    /// The hull's vertex indices (into the mesh).
    pub fn vertices(&self) -> Vec<u32> {
        let mut v: Vec<u32> = self.triangles.iter().flatten().copied().collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    /// Volume, mm³, with the mesh's vertices at `pos` ([`Mesh::positions_mm`]).
    pub fn volume_mm3(&self, pos: &[[f64; 3]]) -> f64 {
        enclosed_volume_mm3(&self.triangles, pos)
    }

    /// Surface area, mm², with the mesh's vertices at `pos`.
    pub fn area_mm2(&self, pos: &[[f64; 3]]) -> f64 {
        surface_area_mm2(&self.triangles, pos)
    }
}

/// The points that are corners of the 2D convex hull of the points in each of their three
/// axis-parallel planes (in ascending order; points on an edge are not corners).
///
/// In a plane across `axis`, with in-plane axes u and v, the lower hull's corners are among
/// each column's (points with one u) least v and the upper hull's among its greatest, and
/// listing those column by column gives them in u order with no sort: a monotone chain over
/// each list (strict turns only) finds the corners.
fn plane_corners(pts: &[[i64; 3]]) -> Vec<u32> {
    let Some(first) = pts.first() else { return Vec::new() };
    let (mut lo, mut hi) = (*first, *first);
    for q in pts {
        for a in 0..3 {
            lo[a] = lo[a].min(q[a]);
            hi[a] = hi[a].max(q[a]);
        }
    }
    let none = u32::MAX;
    // Per point, in how many of its planes it is a corner, and the last plane that counted it
    // (a point can close both chains).
    let (mut corner_in, mut counted_in) = (vec![0u8; pts.len()], vec![usize::MAX; pts.len()]);
    // One plane's column extremes as (u, v, point), and a chain over them.
    type Extreme = (i64, i64, u32);
    let (mut extremes, mut chain): (Vec<Extreme>, Vec<Extreme>) = (Vec::new(), Vec::new());
    let turn = |o: &Extreme, a: &Extreme, b: &Extreme| (a.0 - o.0) * (b.1 - o.1) - (a.1 - o.1) * (b.0 - o.0);
    let mut plane_id = 0;
    for axis in 0..3 {
        let (u, v) = ((axis + 1) % 3, (axis + 2) % 3);
        let columns = (hi[u] - lo[u] + 1) as usize;
        let planes = (hi[axis] - lo[axis] + 1) as usize;
        // Per column (plane-major): the least and greatest v, and their points.
        let (mut least, mut most) =
            (vec![(i64::MAX, none); planes * columns], vec![(i64::MIN, none); planes * columns]);
        for (i, q) in pts.iter().enumerate() {
            let k = (q[axis] - lo[axis]) as usize * columns + (q[u] - lo[u]) as usize;
            if q[v] < least[k].0 {
                least[k] = (q[v], i as u32);
            }
            if q[v] > most[k].0 {
                most[k] = (q[v], i as u32);
            }
        }
        for plane in 0..planes {
            plane_id += 1;
            let columns_here = plane * columns..(plane + 1) * columns;
            // The lower chain over the least v left to right, then the upper chain over the
            // greatest v right to left: each turns left only.
            for upper in [false, true] {
                extremes.clear();
                for c in columns_here.clone() {
                    let (value, point) = if upper { most[c] } else { least[c] };
                    if point != none {
                        extremes.push((lo[u] + (c - plane * columns) as i64, value, point));
                    }
                }
                if upper {
                    extremes.reverse();
                }
                chain.clear();
                for p in &extremes {
                    while chain.len() >= 2 && turn(&chain[chain.len() - 2], &chain[chain.len() - 1], p) <= 0 {
                        chain.pop();
                    }
                    chain.push(*p);
                }
                for p in &chain {
                    let i = p.2 as usize;
                    if counted_in[i] != plane_id {
                        counted_in[i] = plane_id;
                        corner_in[i] += 1;
                    }
                }
            }
        }
    }
    (0..pts.len() as u32).filter(|&i| corner_in[i as usize] == 3).collect()
}

/// The greatest distance between two of the given vertices (indices into `pos`, mm), mm.
/// The coordinates are split by axis so that the inner loop over pairs vectorises.
pub fn max_distance_mm(pos: &[[f64; 3]], vertices: &[u32]) -> f64 {
    let [xs, ys, zs]: [Vec<f64>; 3] = std::array::from_fn(|a| vertices.iter().map(|&i| pos[i as usize][a]).collect());
    let mut best = 0.0f64;
    for i in 0..xs.len() {
        let (x, y, z) = (xs[i], ys[i], zs[i]);
        for ((&u, &v), &w) in xs[i + 1..].iter().zip(&ys[i + 1..]).zip(&zs[i + 1..]) {
            let d = (u - x) * (u - x) + (v - y) * (v - y) + (w - z) * (w - z);
            best = if d > best { d } else { best };
        }
    }
    best.sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::roi::Discretisation;
    use std::collections::{HashMap, HashSet};

    fn roi(dims: [usize; 3], spacing: [f64; 3], mask: Vec<bool>) -> Roi {
        let n = mask.len();
        Roi::new(dims, spacing, vec![1.0; n], mask, Discretisation::None).unwrap()
    }

    /// Every directed edge is matched by as many reverse edges: the surface has no boundary and
    /// is consistently oriented (a fan diagonal lying in a cube face can make two cubes' surfaces
    /// touch along it, so an edge may carry four triangles).
    fn assert_closed(triangles: &[[u32; 3]]) {
        let mut count = HashMap::new();
        for t in triangles {
            for (u, v) in [(t[0], t[1]), (t[1], t[2]), (t[2], t[0])] {
                *count.entry((u, v)).or_insert(0) += 1;
            }
        }
        for (&(u, v), &n) in &count {
            assert_eq!(count.get(&(v, u)), Some(&n), "edge {u}->{v} used {n} times, not matched by its reverse");
        }
    }

    #[test]
    fn every_configuration_closes_into_loops() {
        for config in 0..256 {
            let tris = cube_triangles(config);
            let crossing =
                edges().iter().filter(|&&(c, axis)| (config >> c & 1) != (config >> (c | 1 << axis) & 1)).count();
            let used: HashSet<u8> = tris.iter().flatten().copied().collect();
            assert_eq!(used.len(), crossing, "config {config}: every crossing edge carries a vertex");
        }
    }

    #[test]
    fn the_mesh_is_what_cube_by_cube_marching_gives() {
        // Reference: every cube of the padded grid, its 8 corners read one by one, vertices
        // found by position. The same triangles (as positions) in the same order.
        let mut next = crate::xorshift(0x00C0_FFEE);
        for round in 0..12 {
            let dims = [6 + round % 3, 5, 4];
            let n = dims.iter().product();
            let mask: Vec<bool> = (0..n).map(|_| next() % 5 < 3).collect();
            if !mask.iter().any(|&m| m) {
                continue;
            }
            let r = roi(dims, [1.0, 0.7, 1.5], mask);
            let m = Mesh::of(&r);
            let inside = r.morphology_inside();
            let [px, py, pz] = r.padded_dims;
            let mut want: Vec<[[i64; 3]; 3]> = Vec::new();
            for z in 0..pz - 1 {
                for y in 0..py - 1 {
                    for x in 0..px - 1 {
                        let config = (0..8)
                            .filter(|&c| {
                                let [cx, cy, cz] = corner(c).map(|v| v as usize);
                                inside[(x + cx) + px * ((y + cy) + py * (z + cz))]
                            })
                            .fold(0, |acc, c| acc | 1 << c);
                        for tri in cube_triangles(config) {
                            want.push(tri.map(|e| {
                                let (c, axis) = edges()[e as usize];
                                let mut d = corner(c).map(|v| 2 * v);
                                d[axis] += 1;
                                [2 * x as i64 + d[0], 2 * y as i64 + d[1], 2 * z as i64 + d[2]]
                            }));
                        }
                    }
                }
            }
            let got: Vec<[[i64; 3]; 3]> = m.triangles.iter().map(|t| t.map(|i| m.doubled[i as usize])).collect();
            assert_eq!(got, want, "round {round}");
            let distinct: HashSet<[i64; 3]> = m.doubled.iter().copied().collect();
            assert_eq!(distinct.len(), m.doubled.len(), "each vertex made once");
        }
    }

    #[test]
    fn one_voxel_is_an_octahedron() {
        // Vertices at ±0.5 voxel along each axis: volume 4 r³ / 3, area 8 · (√3/2) (r√2)².
        let m = Mesh::of(&roi([1, 1, 1], [2.0, 2.0, 2.0], vec![true]));
        assert_eq!(m.doubled.len(), 6);
        assert_closed(&m.triangles);
        let r: f64 = 1.0; // mm
        assert!((m.volume_mm3() - 4.0 * r.powi(3) / 3.0).abs() < 1e-12, "{}", m.volume_mm3());
        assert!((m.area_mm2() - 8.0 * 3f64.sqrt() / 4.0 * 2.0 * r * r).abs() < 1e-12, "{}", m.area_mm2());
        let hull = Hull::of(&m).unwrap();
        assert!((hull.volume_mm3(&m.positions_mm()) - m.volume_mm3()).abs() < 1e-12);
        assert_eq!(max_distance_mm(&m.positions_mm(), &hull.vertices()), 2.0);
    }

    #[test]
    fn random_masks_give_closed_meshes_inside_their_hulls() {
        let mut next = crate::xorshift(0x9E37_79B9_7F4A_7C15);
        for round in 0..30 {
            // Noise in a small box, then unions of random balls in a larger one (long plane
            // sections, many hull faces).
            let dims = if round < 20 { [5, 4, 3] } else { [17, 14, 11] };
            let n: usize = dims.iter().product();
            let mask: Vec<bool> = if round < 20 {
                (0..n).map(|_| !next().is_multiple_of(3)).collect()
            } else {
                let balls: Vec<([f64; 3], f64)> = (0..4)
                    .map(|_| {
                        let c = std::array::from_fn(|a| (next() % dims[a] as u64) as f64);
                        (c, 2.0 + (next() % 4) as f64)
                    })
                    .collect();
                (0..n)
                    .map(|i| {
                        let q = [i % dims[0], (i / dims[0]) % dims[1], i / (dims[0] * dims[1])].map(|v| v as f64);
                        balls.iter().any(|(c, r)| (0..3).map(|a| (q[a] - c[a]).powi(2)).sum::<f64>() <= r * r)
                    })
                    .collect()
            };
            if !mask.iter().any(|&m| m) {
                continue;
            }
            let m = Mesh::of(&roi(dims, [1.0, 0.7, 1.5], mask.clone()));
            assert_closed(&m.triangles);
            let v = m.volume_mm3();
            assert!(v > 0.0);
            let hull = Hull::of(&m).unwrap();
            assert_closed(&hull.triangles);
            // Convex: every mesh vertex on or below every hull face.
            for f in &hull.triangles {
                let [a, b, c] = f.map(|i| m.doubled[i as usize]);
                for &q in &m.doubled {
                    assert!(orient(a, b, c, q) <= 0);
                }
            }
            assert!(hull.volume_mm3(&m.positions_mm()) >= v - 1e-9);
            // The diameter over hull vertices is the diameter over all vertices.
            let all: Vec<u32> = (0..m.doubled.len() as u32).collect();
            let pos = m.positions_mm();
            assert_eq!(max_distance_mm(&pos, &hull.vertices()), max_distance_mm(&pos, &all));
        }
    }

    #[test]
    fn a_large_block_approaches_its_voxel_volume() {
        // A 10x10x10 block: the mesh cuts the corners and edges of the 10 mm cube whose faces
        // pass through the outer voxel centres ± 0.5: the box is 10³ less 12 edge prisms of
        // 9 x 0.125 and 8 corner cubes of 1/8 that keep only a tetrahedron of 1/48, exactly.
        let m = Mesh::of(&roi([10, 10, 10], [1.0; 3], vec![true; 1000]));
        assert_closed(&m.triangles);
        let want = 1000.0 - 12.0 * 9.0 * 0.125 - 8.0 * (1.0 / 8.0 - 1.0 / 48.0);
        assert!((m.volume_mm3() - want).abs() < 1e-9, "{} vs {want}", m.volume_mm3());
    }
}
