//! The patient's anatomy and the lesion's appearance, and how a series samples them.
//!
//! Anatomy is described by implicit shapes in patient space (LPS, mm): an elliptic body with a
//! subcutaneous fat layer, liver, spleen, spine, two tilted kidneys with cortex, medullary
//! pyramids, renal sinus fat and perirenal fat, and the lesion on one kidney. Each voxel's
//! signal is the partial-volume blend of the tissues at its centre (membership ramps one pixel
//! wide), times a smooth multiplicative bias field, with Rician noise (the magnitude of a
//! complex signal with Gaussian noise in both channels).
//!
//! Lesion appearance depends on subtype, as radiologists describe it: clear cell RCC is
//! T2-bright with heterogeneous avid enhancement and necrosis; papillary RCC is T2-dark and
//! hypo-enhancing; oncocytoma may have a central scar; angiomyolipoma contains fat (dark on
//! fat-suppressed series) unless lipid-poor, when it is T2-dark and avidly enhancing like no
//! RCC does; cystic subtypes have fluid locules with enhancing septa. Every parameter is drawn
//! per lesion with spread, so the classes overlap.

use crate::cohort::{Diagnosis, LesionSpec, Pole, Side};
use crate::noise::value_noise;
use crate::sites::{Plane, Protocol, SiteProfile};
use crate::table1::Subtype;
use rand::{Rng, RngCore, SeedableRng};
use rand_distr::{Distribution, Normal, StandardNormal};
use rand_xoshiro::Xoshiro256PlusPlus;
use renal_imaging::geometry::{add, cross, dot, norm, scale, sub};
use renal_imaging::{Geometry, Vec3, Volume};

/// Extra readers trace the boundary displaced by a smooth random field of this amplitude
/// (fraction of the lesion's shortest radius)...
const READER_WOBBLE: f64 = 0.45;
/// ...plus a systematic over- or under-segmentation with this SD (same unit). Together they
/// give a mean Dice against the primary reader of about 0.8, as between radiologists.
const READER_OFFSET_SD: f64 = 0.09;

/// Which series of the pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// T2-weighted.
    T2,
    /// T1-weighted after gadolinium.
    T1c,
}

impl Role {
    /// `T2` or `T1C`, as in the manifest.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::T2 => "T2",
            Role::T1c => "T1C",
        }
    }
}

/// A rigid local frame: `local = rot * (p - centre)`; rows of `rot` are the local axes.
#[derive(Debug, Clone)]
struct Frame {
    centre: Vec3,
    rot: [Vec3; 3],
}

impl Frame {
    fn local(&self, p: Vec3) -> Vec3 {
        let d = sub(p, self.centre);
        [dot(self.rot[0], d), dot(self.rot[1], d), dot(self.rot[2], d)]
    }

    fn world(&self, u: Vec3) -> Vec3 {
        let mut p = self.centre;
        for a in 0..3 {
            p = add(p, scale(self.rot[a], u[a]));
        }
        p
    }
}

/// Rotation rows from Euler angles (radians) about x, then y, then z.
fn rotation(ax: f64, ay: f64, az: f64) -> [Vec3; 3] {
    let (sx, cx) = ax.sin_cos();
    let (sy, cy) = ay.sin_cos();
    let (sz, cz) = az.sin_cos();
    // R = Rz * Ry * Rx; rows are the local axes expressed in patient space.
    let r = [
        [cz * cy, cz * sy * sx - sz * cx, cz * sy * cx + sz * sx],
        [sz * cy, sz * sy * sx + cz * cx, sz * sy * cx - cz * sx],
        [-sy, cy * sx, cy * cx],
    ];
    // Transpose: local = R^T (p - c).
    [[r[0][0], r[1][0], r[2][0]], [r[0][1], r[1][1], r[2][1]], [r[0][2], r[1][2], r[2][2]]]
}

/// An ellipsoid with an approximate signed distance (first order at the surface).
#[derive(Debug, Clone)]
struct Ellipsoid {
    frame: Frame,
    axes: Vec3,
    inv_axes: Vec3,
    /// Largest semi-axis.
    reach: f64,
    /// Patient-space half-extent of the tight bounding box along x, y, z.
    half_extent: Vec3,
}

impl Ellipsoid {
    fn new(frame: Frame, axes: Vec3) -> Self {
        let reach = axes[0].max(axes[1]).max(axes[2]);
        let mut half_extent = [0.0; 3];
        for (a, e) in half_extent.iter_mut().enumerate() {
            // Row i of `rot` is local axis i in patient space; its a-th component scales axes[i].
            *e = (0..3).map(|i| (frame.rot[i][a] * axes[i]).powi(2)).sum::<f64>().sqrt();
        }
        let inv_axes = [1.0 / axes[0], 1.0 / axes[1], 1.0 / axes[2]];
        Ellipsoid { frame, axes, inv_axes, reach, half_extent }
    }

    /// Normalised radius `s` (1 on the surface) and signed distance in mm, from local coords.
    #[inline]
    fn eval_local(&self, u: Vec3) -> (f64, f64) {
        let q = [u[0] * self.inv_axes[0], u[1] * self.inv_axes[1], u[2] * self.inv_axes[2]];
        let s = norm(q);
        let g = [q[0] * self.inv_axes[0], q[1] * self.inv_axes[1], q[2] * self.inv_axes[2]];
        let gn = norm(g);
        let d =
            if s > 1e-6 && gn > 1e-12 { (s - 1.0) * s / gn } else { -self.axes[0].min(self.axes[1]).min(self.axes[2]) };
        (s, d)
    }

    #[inline]
    fn near(&self, p: Vec3, margin: f64) -> bool {
        (p[0] - self.frame.centre[0]).abs() < self.half_extent[0] + margin
            && (p[1] - self.frame.centre[1]).abs() < self.half_extent[1] + margin
            && (p[2] - self.frame.centre[2]).abs() < self.half_extent[2] + margin
    }
}

/// Partial-volume membership from signed distance `d` (mm) and ramp width `h` (mm).
#[inline]
fn membership(d: f64, h: f64) -> f64 {
    (0.5 - d / h).clamp(0.0, 1.0)
}

#[inline]
fn lerp(a: f64, b: f64, t: f64) -> f64 {
    a + (b - a) * t
}

/// Relative signal of each tissue on one series.
#[derive(Debug, Clone, Copy)]
struct Tissues {
    fat: f64,
    soft: f64,
    liver: f64,
    spleen: f64,
    marrow: f64,
    cortex: f64,
    medulla: f64,
    fluid: f64,
}

impl Tissues {
    fn for_series(role: Role, protocol: &Protocol) -> Tissues {
        let fat_suppressed = protocol.scan_options.split('\\').any(|o| o == "FS") || role == Role::T1c;
        match role {
            Role::T2 => Tissues {
                fat: if fat_suppressed { 0.14 } else { 0.80 },
                soft: 0.24,
                liver: 0.22,
                spleen: 0.46,
                marrow: if fat_suppressed { 0.20 } else { 0.42 },
                cortex: 0.45,
                medulla: 0.62,
                fluid: 0.95,
            },
            Role::T1c => Tissues {
                fat: 0.10,
                soft: 0.30,
                liver: 0.50,
                spleen: 0.56,
                marrow: 0.30,
                cortex: 0.80,
                medulla: 0.62,
                fluid: 0.06,
            },
        }
    }
}

/// How the lesion looks: per-lesion draws around its subtype's typical appearance.
#[derive(Debug, Clone)]
pub struct Look {
    /// Solid-tissue signal on T2 and on T1C (relative units).
    pub solid: [f64; 2],
    /// Relative amplitude of coarse heterogeneity.
    pub texture: f64,
    /// Feature size of the coarse heterogeneity, mm.
    pub texture_mm: f64,
    /// Fraction of the lesion that is necrotic (0 = none).
    pub necrosis: f64,
    /// Fraction of the lesion that is macroscopic fat (0 = none).
    pub fat: f64,
    /// Central stellate scar present.
    pub scar: bool,
    /// Fraction of the lesion that is fluid-filled locules separated by enhancing septa.
    pub cystic: f64,
    /// T2-dark pseudocapsule present.
    pub capsule: bool,
    /// Amplitude of boundary irregularity (fraction of radius).
    pub irregularity: f64,
}

fn draw_look(spec: &LesionSpec, rng: &mut impl Rng) -> Look {
    let mut n = |mean: f64, sd: f64| (mean + sd * rng.sample::<f64, _>(StandardNormal)).clamp(0.05, 1.0);
    let grade = spec.grade.unwrap_or(2) as f64;
    let (t2, t1c, texture) = match spec.subtype {
        Subtype::ClearCell => (n(0.62, 0.09), n(0.74, 0.10), n(0.20, 0.05)),
        Subtype::Papillary => (n(0.30, 0.07), n(0.30, 0.07), n(0.08, 0.03)),
        Subtype::Chromophobe => (n(0.45, 0.09), n(0.50, 0.10), n(0.08, 0.03)),
        Subtype::ClearCellPapillary => (n(0.58, 0.10), n(0.55, 0.10), n(0.12, 0.04)),
        Subtype::MultilocularCystic => (n(0.55, 0.10), n(0.55, 0.10), n(0.08, 0.03)),
        Subtype::Unclassified => (n(0.50, 0.15), n(0.50, 0.15), n(0.18, 0.06)),
        Subtype::Oncocytoma => (n(0.53, 0.10), n(0.64, 0.11), n(0.09, 0.03)),
        Subtype::Angiomyolipoma => (n(0.33, 0.08), n(0.58, 0.11), n(0.10, 0.04)),
        Subtype::MixedEpithelialStromal => (n(0.50, 0.10), n(0.50, 0.10), n(0.10, 0.03)),
        Subtype::MetanephricAdenoma => (n(0.38, 0.08), n(0.36, 0.08), n(0.06, 0.02)),
        Subtype::RenalAdenoma => (n(0.42, 0.08), n(0.44, 0.08), n(0.06, 0.02)),
    };
    // Exactly the drawn value when the enhancement is 1 (every site without a drift).
    let t1c = t1c * spec.site.t1c_enhancement;
    let mut u = || rng.random::<f64>();
    let size = spec.size_cm;
    let necrosis = match spec.subtype {
        Subtype::ClearCell if u() < 0.20 + 0.12 * grade + 0.04 * size => 0.10 + 0.30 * u(),
        Subtype::Papillary | Subtype::Unclassified | Subtype::Chromophobe if u() < 0.15 + 0.03 * size => {
            0.05 + 0.2 * u()
        }
        _ => 0.0,
    };
    let fat = match (spec.subtype, spec.diagnosis) {
        // Typical AMLs (those diagnosed on imaging) have visible fat; most resected ones are lipid-poor.
        (Subtype::Angiomyolipoma, Diagnosis::Imaging) => 0.25 + 0.55 * u(),
        (Subtype::Angiomyolipoma, _) if u() < 0.25 => 0.15 + 0.3 * u(),
        (Subtype::ClearCell, _) if u() < 0.05 => 0.03 + 0.05 * u(), // intracellular/rare fat
        _ => 0.0,
    };
    let scar = match spec.subtype {
        Subtype::Oncocytoma => u() < 0.45,
        Subtype::Chromophobe => u() < 0.15,
        Subtype::ClearCell => u() < 0.05,
        _ => false,
    };
    let cystic = match spec.subtype {
        Subtype::MultilocularCystic => 0.75 + 0.2 * u(),
        Subtype::ClearCellPapillary if u() < 0.5 => 0.2 + 0.4 * u(),
        Subtype::MixedEpithelialStromal => 0.3 + 0.4 * u(),
        Subtype::ClearCell if u() < 0.08 => 0.2 + 0.4 * u(),
        _ => 0.0,
    };
    let capsule = match spec.subtype {
        Subtype::ClearCell | Subtype::Papillary | Subtype::Chromophobe => u() < 0.45,
        Subtype::Oncocytoma => u() < 0.2,
        _ => u() < 0.05,
    };
    let irregularity = if spec.malignant { 0.04 + 0.10 * u() } else { 0.02 + 0.07 * u() };
    Look { solid: [t2, t1c], texture, texture_mm: 3.0 + 5.0 * u(), necrosis, fat, scar, cystic, capsule, irregularity }
}

/// The lesion's shape, position and appearance, shared by both series.
#[derive(Debug, Clone)]
pub struct Lesion {
    shape: Ellipsoid,
    /// Boundary ripples: (direction, spatial frequency, phase, amplitude) in local coords.
    ripples: Vec<(Vec3, f64, f64)>,
    /// Appearance.
    pub look: Look,
    seed: u64,
    /// Per extra reader: (noise seed, systematic offset as fraction of radius).
    readers: Vec<(u64, f64)>,
}

impl Lesion {
    /// Centre in patient space (before per-series motion).
    pub fn centre(&self) -> Vec3 {
        self.shape.frame.centre
    }

    #[inline]
    fn eval(&self, p: Vec3) -> (f64, f64, Vec3) {
        let u = self.shape.frame.local(p);
        let (s, d) = self.shape.eval_local(u);
        let un = norm(u);
        if un < 1e-9 || self.ripples.is_empty() {
            return (s, d, u);
        }
        let mut ripple = 0.0;
        for (dir, phase, amp) in &self.ripples {
            ripple += amp * (3.0 * dot(*dir, u) / un + phase).sin();
        }
        let r_min = self.shape.axes[0].min(self.shape.axes[1]).min(self.shape.axes[2]);
        (s / (1.0 + ripple), d - ripple * r_min, u)
    }
}

/// A kidney: outer shape plus internal structure.
#[derive(Debug, Clone)]
struct Kidney {
    shape: Ellipsoid,
    perirenal: Ellipsoid,
    /// +1 when the medial side is +x in local coords.
    medial_sign: f64,
}

/// One patient's anatomy.
#[derive(Debug, Clone)]
pub struct Anatomy {
    body_axes: [f64; 2],
    body_centre: [f64; 2],
    fat_mm: f64,
    liver: Ellipsoid,
    spleen: Ellipsoid,
    spine_centre: [f64; 2],
    spine_radius: f64,
    kidneys: [Kidney; 2],
    /// The lesion.
    pub lesion: Lesion,
    bias: [f64; 7],
}

/// Draw the patient's anatomy and lesion.
pub fn draw_anatomy(spec: &LesionSpec) -> Anatomy {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(spec.seed);
    let male = spec.sex == 'M';
    let habitus = Normal::new(if male { 1.0 } else { 0.93 }, 0.07).unwrap().sample(&mut rng);
    let mut body_axes = [150.0 * habitus, 112.0 * habitus];
    let fat_mm = (if male { 14.0 } else { 20.0 }) * (0.5 + rng.random::<f64>()) * habitus;

    let mut kidneys = Vec::with_capacity(2);
    for side in [Side::Right, Side::Left] {
        let sign = if side == Side::Left { 1.0 } else { -1.0 };
        let centre = [
            sign * rng.random_range(68.0..82.0),
            rng.random_range(35.0..50.0),
            if side == Side::Left { 8.0 } else { -8.0 } + rng.random_range(-6.0..6.0),
        ];
        // Upper pole tilted medially, hilum turned forwards.
        let tilt = -sign * rng.random_range(0.15..0.30);
        let turn = sign * rng.random_range(0.35..0.6);
        let frame = Frame { centre, rot: rotation(0.1, tilt, turn) };
        let axes = [rng.random_range(25.0..31.0), rng.random_range(19.0..24.0), rng.random_range(50.0..60.0)];
        kidneys.push(Kidney {
            shape: Ellipsoid::new(frame.clone(), axes),
            perirenal: Ellipsoid::new(frame, [axes[0] * 1.5, axes[1] * 1.6, axes[2] * 1.25]),
            medial_sign: -sign,
        });
    }
    let kidneys: [Kidney; 2] = [kidneys.remove(0), kidneys.remove(0)];

    // Lesion: on the chosen kidney, at the chosen pole, on its lateral/anterior/posterior face.
    let kidney = &kidneys[if spec.side == Side::Left { 1 } else { 0 }];
    let pole_z: f64 = match spec.pole {
        Pole::Upper => 0.55,
        Pole::Interpolar => 0.0,
        Pole::Lower => -0.55,
    } + rng.random_range(-0.12..0.12);
    let angle = rng.random_range(-1.9..1.9f64);
    let lateral = -kidney.medial_sign;
    let dir_xy = [lateral * angle.cos(), angle.sin()];
    let ka = kidney.shape.axes;
    let rho = (1.0 - pole_z * pole_z).max(0.05).sqrt();
    let surface_local = [dir_xy[0] * ka[0] * rho, dir_xy[1] * ka[1] * rho, pole_z * ka[2]];
    let radius = spec.size_cm * 5.0; // largest semi-axis, mm
    let axes = [radius, radius * rng.random_range(0.75..1.0), radius * rng.random_range(0.7..0.95)];
    let outward = {
        let g = [
            surface_local[0] / (ka[0] * ka[0]),
            surface_local[1] / (ka[1] * ka[1]),
            surface_local[2] / (ka[2] * ka[2]),
        ];
        scale(g, 1.0 / norm(g))
    };
    let depth = rng.random_range(-0.75..0.35) * axes[1];
    let centre_local = add(surface_local, scale(outward, depth));
    let centre = kidney.shape.frame.world(centre_local);
    let frame = Frame {
        centre,
        rot: rotation(rng.random_range(0.0..3.1), rng.random_range(0.0..3.1), rng.random_range(0.0..3.1)),
    };
    let look = draw_look(spec, &mut rng);
    let ripples = (0..3)
        .map(|_| {
            let d: Vec3 = [rng.random_range(-1.0..1.0), rng.random_range(-1.0..1.0), rng.random_range(-1.0..1.0)];
            let d = scale(d, 1.0 / norm(d).max(1e-6));
            (d, rng.random_range(0.0..std::f64::consts::TAU), look.irregularity * rng.random_range(0.3..1.0))
        })
        .collect();
    let readers =
        (0..2).map(|_| (rng.random::<u64>(), Normal::new(0.0, READER_OFFSET_SD).unwrap().sample(&mut rng))).collect();
    let lesion = Lesion { shape: Ellipsoid::new(frame, axes), ripples, look, seed: rng.random(), readers };

    // A large tumour pushes the abdominal wall out rather than poking through it.
    let reach = [centre[0].abs() + radius + 20.0, centre[1].abs() + radius + 20.0];
    body_axes[0] = body_axes[0].max(reach[0]).min(185.0);
    body_axes[1] = body_axes[1].max(reach[1]).min(135.0);

    let liver = Ellipsoid::new(
        Frame { centre: [-65.0, -15.0, 75.0], rot: rotation(0.0, 0.0, 0.2) },
        [95.0 * habitus, 75.0 * habitus, 85.0],
    );
    let spleen =
        Ellipsoid::new(Frame { centre: [95.0, 35.0, 70.0], rot: rotation(0.0, 0.0, -0.5) }, [35.0, 50.0, 55.0]);
    let mut bias = [0.0; 7];
    for b in bias.iter_mut() {
        *b = rng.sample::<f64, _>(StandardNormal);
    }
    Anatomy {
        body_axes,
        body_centre: [0.0, 0.0],
        fat_mm,
        liver,
        spleen,
        spine_centre: [0.0, body_axes[1] * 0.62],
        spine_radius: 19.0,
        kidneys,
        lesion,
        bias,
    }
}

/// What rendering one series produced.
pub struct RenderedSeries {
    /// Stored pixel values.
    pub volume: Volume<u16>,
    /// Lesion masks: the primary reader first, then any extra readers.
    pub masks: Vec<Volume<u8>>,
    /// Partial-volume estimate of the lesion volume on this grid, mL.
    pub partial_volume_ml: f64,
    /// Lesion centre in this series' patient space (after breath-hold shift), mm.
    pub lesion_centre_mm: Vec3,
}

/// The slice grid a protocol would prescribe to cover both kidneys and the lesion.
pub fn prescribe(anatomy: &Anatomy, protocol: &Protocol, shift: Vec3, rng: &mut impl Rng) -> Geometry {
    let (row_dir, col_dir) = match protocol.plane {
        Plane::Axial => ([1.0, 0.0, 0.0], [0.0, 1.0, 0.0]),
        Plane::ObliqueAxial(deg) => {
            let (s, c) = deg.to_radians().sin_cos();
            ([1.0, 0.0, 0.0], [0.0, c, s])
        }
        Plane::Coronal => ([1.0, 0.0, 0.0], [0.0, 0.0, -1.0]),
    };
    let normal = cross(row_dir, col_dir);
    // Points the technologist wants covered: kidney poles and the lesion's extent.
    let mut points = Vec::new();
    for k in &anatomy.kidneys {
        for a in 0..3 {
            for s in [-1.0, 1.0] {
                let mut u = [0.0; 3];
                u[a] = s * k.shape.axes[a];
                points.push(k.shape.frame.world(u));
            }
        }
    }
    let l = &anatomy.lesion.shape;
    for a in 0..3 {
        for s in [-1.0, 1.0] {
            let mut p = l.frame.centre;
            p[a] += s * l.reach * 1.1;
            points.push(p);
        }
    }
    let along: Vec<f64> = points.iter().map(|p| dot(add(*p, shift), normal)).collect();
    let margin = 8.0 + rng.random_range(0.0..8.0);
    let t0 = along.iter().cloned().fold(f64::INFINITY, f64::min) - margin;
    let t1 = along.iter().cloned().fold(f64::NEG_INFINITY, f64::max) + margin;
    let slices = ((t1 - t0) / protocol.spacing_mm).ceil() as usize + 1;
    let (cols, rows) = protocol.matrix;
    // In-plane centre: the body centre for transverse planes, the kidneys' centre for coronal.
    let kidney_mid = scale(add(anatomy.kidneys[0].shape.frame.centre, anatomy.kidneys[1].shape.frame.centre), 0.5);
    let centre: Vec3 = match protocol.plane {
        Plane::Coronal => [0.0, 0.0, kidney_mid[2]],
        _ => [anatomy.body_centre[0], anatomy.body_centre[1], 0.0],
    };
    let centre = add(centre, [rng.random_range(-6.0..6.0), rng.random_range(-6.0..6.0), rng.random_range(-6.0..6.0)]);
    let in_plane = sub(centre, scale(normal, dot(centre, normal)));
    let origin = add(
        add(in_plane, scale(row_dir, -(cols as f64 - 1.0) / 2.0 * protocol.pixel_mm)),
        add(scale(col_dir, -(rows as f64 - 1.0) / 2.0 * protocol.pixel_mm), scale(normal, t0)),
    );
    Geometry {
        dims: [cols, rows, slices],
        spacing_mm: [protocol.pixel_mm, protocol.pixel_mm, protocol.spacing_mm],
        origin_mm: origin,
        row_dir,
        col_dir,
        normal,
    }
}

/// Breath-hold position of the abdomen for one series relative to the anatomy (mm).
pub fn breath_hold_shift(rng: &mut impl Rng) -> Vec3 {
    let n = |rng: &mut dyn rand::RngCore, sd: f64| sd * rng.sample::<f64, _>(StandardNormal);
    [n(rng, 1.5), n(rng, 2.0), n(rng, 5.0)]
}

/// Render one series of the lesion on `geometry`.
pub fn render(
    anatomy: &Anatomy,
    role: Role,
    site: &SiteProfile,
    geometry: &Geometry,
    shift: Vec3,
    readers: usize,
    noise_seed: u64,
) -> RenderedSeries {
    let protocol = match role {
        Role::T2 => &site.t2,
        Role::T1c => &site.t1c,
    };
    let tissue = Tissues::for_series(role, protocol);
    let look = &anatomy.lesion.look;
    let ri = if role == Role::T2 { 0 } else { 1 };
    let h = geometry.spacing_mm[0];
    let [nx, ny, nz] = geometry.dims;
    let mut values = vec![0u16; geometry.len()];
    let mut masks: Vec<Vec<u8>> = vec![vec![0u8; geometry.len()]; readers.max(1)];
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(noise_seed);
    let gaussian = gaussian_table();
    let sigma = site.noise_sigma;
    let scale_out = site.intensity_scale / site.rescale.map(|r| r.0).unwrap_or(1.0);
    let max_stored = ((1u32 << site.bits_stored) - 1) as f64;
    let lesion = &anatomy.lesion;
    let lesion_r_min = lesion.shape.axes[0].min(lesion.shape.axes[1]).min(lesion.shape.axes[2]);
    let lesion_reach = lesion.shape.reach * (1.0 + 2.0 * look.irregularity) + 2.0 * h + lesion_r_min;
    let mut membership_sum = 0.0;
    let step_i = scale(geometry.row_dir, geometry.spacing_mm[0]);

    // The bias field is smooth on a scale of centimetres: evaluate it every BIAS_STRIDE voxels
    // along a row and interpolate linearly in between.
    const BIAS_STRIDE: usize = 8;
    let mut row_bias = vec![0.0f64; nx];
    for k in 0..nz {
        for j in 0..ny {
            let row_start = geometry.to_patient([0.0, j as f64, k as f64]);
            let base = geometry.index(0, j, k);
            let knots: Vec<f64> = (0..=nx.div_ceil(BIAS_STRIDE))
                .map(|n| {
                    bias_at(
                        anatomy,
                        site.bias_strength,
                        sub(add(row_start, scale(step_i, (n * BIAS_STRIDE) as f64)), shift),
                    )
                })
                .collect();
            for (i, b) in row_bias.iter_mut().enumerate() {
                let (n, r) = (i / BIAS_STRIDE, (i % BIAS_STRIDE) as f64 / BIAS_STRIDE as f64);
                *b = knots[n] + (knots[n + 1] - knots[n]) * r;
            }
            for i in 0..nx {
                // Anatomical position: scanner position minus this breath-hold's displacement.
                let p = sub(add(row_start, scale(step_i, i as f64)), shift);
                // The lesion's distance is evaluated once per voxel and shared by the signal and
                // every reader's mask.
                let near = lesion_eval_if_near(lesion, p, lesion_reach);
                let d = near.1;
                let (signal, lesion_m) = signal_at(anatomy, &tissue, look, ri, p, h, near);
                let s = signal * row_bias[i];
                if lesion_m > 0.0 {
                    membership_sum += lesion_m;
                    if d < 0.0 {
                        masks[0][base + i] = 1;
                    }
                }
                // Extra readers may include voxels just outside the true boundary.
                if readers > 1 && d < 2.0 * h + 0.9 * lesion_r_min {
                    for (r, (seed, offset)) in lesion.readers.iter().enumerate().take(readers - 1) {
                        let wobble = READER_WOBBLE * value_noise(p, (0.6 * lesion_r_min).max(3.0), *seed) + offset;
                        if d + wobble * lesion_r_min < 0.0 {
                            masks[r + 1][base + i] = 1;
                        }
                    }
                }
                // Rician magnitude; single precision is ample for 12-bit output.
                let bits = rng.next_u64();
                let n1 = gaussian[(bits & 0xFFFF) as usize];
                let n2 = gaussian[((bits >> 16) & 0xFFFF) as usize];
                let re = s as f32 + sigma as f32 * n1;
                let im = sigma as f32 * n2;
                let magnitude = (re * re + im * im).sqrt();
                values[base + i] = (magnitude * scale_out as f32 + 0.5).min(max_stored as f32) as u16;
            }
        }
    }
    let voxel_ml = geometry.voxel_volume_mm3() / 1000.0;
    RenderedSeries {
        volume: Volume { geometry: geometry.clone(), data: values },
        masks: masks.into_iter().map(|data| Volume { geometry: geometry.clone(), data }).collect(),
        partial_volume_ml: membership_sum * voxel_ml,
        lesion_centre_mm: add(lesion.centre(), shift),
    }
}

/// 65,536 standard-normal draws, shared by every series. Thermal noise is drawn by indexing it
/// with uniform random 16-bit numbers: a tenth of the cost of sampling a normal per channel,
/// and the empirical distribution matches a Gaussian well beyond 4 SD.
fn gaussian_table() -> &'static [f32; 65_536] {
    static TABLE: std::sync::OnceLock<Box<[f32; 65_536]>> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(0x6A05_5EED);
        let mut t = Box::new([0f32; 65_536]);
        for v in t.iter_mut() {
            *v = rng.sample(StandardNormal);
        }
        t
    })
}

#[inline]
fn lesion_eval_if_near(lesion: &Lesion, p: Vec3, reach: f64) -> (f64, f64, Vec3) {
    let c = lesion.shape.frame.centre;
    if (p[0] - c[0]).abs() > reach || (p[1] - c[1]).abs() > reach || (p[2] - c[2]).abs() > reach {
        return (f64::INFINITY, f64::INFINITY, [0.0; 3]);
    }
    lesion.eval(p)
}

/// Smooth multiplicative field: a random quadratic in position plus receive-coil fall-off.
#[inline]
fn bias_at(a: &Anatomy, strength: f64, p: Vec3) -> f64 {
    let x = p[0] / 160.0;
    let y = p[1] / 120.0;
    let z = p[2] / 160.0;
    let b = &a.bias;
    let quad = 0.6 * (b[0] * x + b[1] * y + b[2] * z)
        + 0.4 * (b[3] * (x * x - 0.3) + b[4] * (y * y - 0.3) + b[5] * x * y)
        + 0.3 * b[6] * z * z;
    // Anterior and posterior coil elements: brighter near the front and back surfaces.
    let depth = 1.0 - (p[1] / a.body_axes[1]).abs();
    let coil = 0.8 * (-depth * 3.0).exp();
    (strength * (quad + coil)).exp()
}

/// Relative signal at `p` and the lesion's partial-volume membership there, given the lesion's
/// evaluation at `p` (normalised radius, signed distance, local position; infinite when far).
#[inline]
fn signal_at(
    a: &Anatomy,
    t: &Tissues,
    look: &Look,
    ri: usize,
    p: Vec3,
    h: f64,
    lesion: (f64, f64, Vec3),
) -> (f64, f64) {
    // Body: elliptic cylinder along z.
    let bx = (p[0] - a.body_centre[0]) / a.body_axes[0];
    let by = (p[1] - a.body_centre[1]) / a.body_axes[1];
    let r2 = bx * bx + by * by;
    let r_min = a.body_axes[0].min(a.body_axes[1]);
    // Squared-radius tests first: most voxels are plainly outside or plainly inside.
    let outside = 1.0 + 0.5 * h / r_min;
    if r2 >= outside * outside {
        return (0.0, 0.0);
    }
    let deep = 1.0 - (a.fat_mm + 0.5 * h) / r_min;
    let (m_body, m_inner) = if deep > 0.0 && r2 <= deep * deep {
        (1.0, 1.0)
    } else {
        let d_body = (r2.sqrt() - 1.0) * r_min;
        (membership(d_body, h), membership(d_body + a.fat_mm, h))
    };
    let mut v = t.fat * m_body;
    if m_inner > 0.0 {
        v = lerp(v, t.soft, m_inner);
        for (organ, signal) in [(&a.liver, t.liver), (&a.spleen, t.spleen)] {
            if organ.near(p, h) {
                let (_, d) = organ.eval_local(organ.frame.local(p));
                let m = membership(d, h) * m_inner;
                if m > 0.0 {
                    v = lerp(v, signal, m);
                }
            }
        }
        let sx = p[0] - a.spine_centre[0];
        let sy = p[1] - a.spine_centre[1];
        let d_spine = (sx * sx + sy * sy).sqrt() - a.spine_radius;
        if d_spine < h {
            v = lerp(v, t.marrow, membership(d_spine, h));
        }
        for k in &a.kidneys {
            if !k.perirenal.near(p, h) {
                continue;
            }
            let u = k.shape.frame.local(p);
            let (_, d_peri) = k.perirenal.eval_local(u);
            let m_peri = membership(d_peri, h);
            if m_peri == 0.0 {
                continue;
            }
            v = lerp(v, t.fat, m_peri);
            let (s, d) = k.shape.eval_local(u);
            // The hilum: a notch on the medial side filled with sinus fat.
            let hx = u[0] * k.medial_sign - k.shape.axes[0] * 0.55;
            let hilum = (hx * hx + u[1] * u[1] * 0.6 + u[2] * u[2] * 0.25).sqrt() - k.shape.axes[0] * 0.6;
            let d = d.max(-hilum);
            let m = membership(d, h);
            if m == 0.0 {
                continue;
            }
            // Cortex outside, medullary pyramids inside, sinus fat at the centre.
            let cortex_t = ((s - 0.62) / 0.12).clamp(0.0, 1.0);
            let angle = u[2].atan2(u[1]);
            let pyramid = (0.5 + 0.5 * (7.0 * angle).cos()).powi(2);
            let inner = lerp(t.cortex, t.medulla, pyramid);
            let mut kv = lerp(inner, t.cortex, cortex_t);
            if s < 0.38 {
                kv = lerp(kv, t.fat, ((0.38 - s) / 0.1).clamp(0.0, 1.0));
            }
            v = lerp(v, kv, m);
        }
    }
    // The lesion.
    let (s, d, u) = lesion;
    let m = membership(d, h);
    if m == 0.0 {
        return (v, 0.0);
    }
    let lv = lesion_signal(a, t, look, ri, p, s, u);
    (lerp(v, lv, m), m)
}

/// Signal inside the lesion at normalised radius `s` and local position `u`.
#[inline]
fn lesion_signal(a: &Anatomy, t: &Tissues, look: &Look, ri: usize, p: Vec3, s: f64, u: Vec3) -> f64 {
    let seed = a.lesion.seed;
    let coarse = value_noise(p, look.texture_mm * 2.5, seed);
    let fine = value_noise(p, look.texture_mm, seed ^ 0x55);
    let mut v = look.solid[ri] * (1.0 + look.texture * (0.7 * coarse + 0.5 * fine));
    if look.cystic > 0.0 {
        // Locules: cells of a low-frequency field; septa where the field crosses zero.
        let cells = value_noise(p, 6.0 + 4.0 * look.texture_mm, seed ^ 0x77);
        let locule = ((cells.abs() - 0.12) / 0.06).clamp(0.0, 1.0);
        let fluid_zone = if s < 0.95 && (coarse + 1.0) / 2.0 < look.cystic + 0.2 { 1.0 } else { 0.0 };
        v = lerp(v, t.fluid, locule * fluid_zone);
    }
    if look.necrosis > 0.0 {
        // Central, irregular necrosis: non-enhancing, fluid-like on T2.
        let level = (1.0 - s) + 0.45 * value_noise(p, 8.0, seed ^ 0x99);
        let threshold = 1.0 - look.necrosis.sqrt() * 0.9;
        let w = ((level - threshold) / 0.08).clamp(0.0, 1.0);
        let necrotic = if ri == 0 { 0.88 } else { 0.08 };
        v = lerp(v, necrotic, w);
    }
    if look.fat > 0.0 {
        let blobs = value_noise(p, 5.0 + 3.0 * look.texture_mm, seed ^ 0xAB);
        let threshold = 1.0 - 2.0 * look.fat;
        let w = ((blobs - threshold) / 0.15).clamp(0.0, 1.0);
        v = lerp(v, t.fat, w);
    }
    if look.scar {
        let rho = (u[0] * u[0] + u[1] * u[1]).sqrt() / a.lesion.shape.axes[0];
        let phi = u[1].atan2(u[0]);
        let star = 0.12 + 0.25 * (3.0 * phi).cos().abs().powi(6);
        if rho < star && s < 0.85 {
            v = if ri == 0 { 0.85 } else { 0.25 };
        }
    }
    if look.capsule && s > 0.9 && ri == 0 {
        v = lerp(v, 0.2, ((s - 0.9) / 0.05).clamp(0.0, 1.0));
    }
    v.max(0.0)
}

/// Render both series of a lesion exactly as `renal synth` writes them: T2 first, then T1C.
pub fn render_lesion(spec: &crate::cohort::LesionSpec) -> (Anatomy, [RenderedSeries; 2]) {
    let anatomy = draw_anatomy(spec);
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(crate::cohort::mix64(spec.seed ^ 0x5EED));
    let mut one = |n: usize, role: Role| {
        let protocol = if role == Role::T2 { &spec.site.t2 } else { &spec.site.t1c };
        let shift = breath_hold_shift(&mut rng);
        let geometry = prescribe(&anatomy, protocol, shift, &mut rng);
        let noise_seed = crate::cohort::mix64(spec.seed ^ (0x1000 + n as u64));
        render(&anatomy, role, spec.site, &geometry, shift, spec.segmenters, noise_seed)
    };
    let t2 = one(0, Role::T2);
    let t1c = one(1, Role::T1c);
    (anatomy, [t2, t1c])
}
