//! `renal n4`, `renal histmatch` and `renal preprocess`: the preprocessing steps on files, for
//! people and scripts.
//!
//! Images are NIfTI (`.nii`, `.nii.gz`), NRRD (attached data) or, for `renal preprocess`, a folder
//! of one series' DICOM instances; masks are NIfTI, NRRD or a DICOM SEG. The format is told by
//! the bytes, not the name.

use anyhow::{bail, Context, Result};
use renal_imaging::composite::{composite, preview_rgb, ChannelOrder};
use renal_imaging::histmatch::{match_histograms, IntensityMap, MatchSettings};
use renal_imaging::n4::{n4, N4Settings};
use renal_imaging::resample::resample_mask;
use renal_imaging::{nifti, nrrd, Geometry, Volume};
use std::path::Path;

fn is_dicom(bytes: &[u8]) -> bool {
    bytes.len() > 132 && &bytes[128..132] == b"DICM"
}

/// A NIfTI or NRRD image file.
fn read(path: &Path) -> Result<Volume<f32>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    if bytes.starts_with(b"NRRD") {
        return nrrd::decode(&bytes).with_context(|| format!("decoding NRRD {}", path.display()));
    }
    Ok(nifti::decode(&bytes).with_context(|| format!("decoding {}", path.display()))?.volume)
}

/// An image file, or a folder holding one series' DICOM instances.
fn read_image(path: &Path) -> Result<Volume<f32>> {
    if !path.is_dir() {
        return read(path);
    }
    let mut files: Vec<_> = std::fs::read_dir(path)
        .with_context(|| format!("listing {}", path.display()))?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    files.sort();
    let instances: Vec<Vec<u8>> = files
        .iter()
        .filter(|p| p.is_file())
        .map(|p| std::fs::read(p).with_context(|| format!("reading {}", p.display())))
        .collect::<Result<_>>()?;
    let series =
        renal_dicom::read::read_series(&instances).with_context(|| format!("DICOM series in {}", path.display()))?;
    Ok(series.volume)
}

/// A mask (NIfTI, NRRD or DICOM SEG) on `grid`: resampled onto it when its own grid differs.
/// Refuses masks that are empty, or that lie outside the image.
fn read_mask(path: &Path, grid: &Geometry) -> Result<Volume<u8>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    if is_dicom(&bytes) {
        return renal_dicom::read::read_seg_mask(&bytes, grid).with_context(|| format!("SEG {}", path.display()));
    }
    let v = read(path)?;
    let mask = v.to_mask();
    if mask.count_nonzero() == 0 {
        bail!("mask {} is empty", path.display());
    }
    if mask.geometry.same_grid(grid, 1e-3) {
        // Same voxels; keep the image's geometry so the two compare equal downstream.
        return Ok(Volume { geometry: grid.clone(), data: mask.data });
    }
    let on_grid = resample_mask(&mask, grid);
    if on_grid.count_nonzero() == 0 {
        bail!("mask {} lies outside the image: nothing is left on the image's grid", path.display());
    }
    eprintln!(
        "mask {} resampled from {:?} voxels of {:?} mm onto the image's {:?} of {:?} mm",
        path.display(),
        mask.geometry.dims,
        mask.geometry.spacing_mm,
        grid.dims,
        grid.spacing_mm
    );
    Ok(on_grid)
}

fn write(path: &Path, volume: &Volume<f32>, description: &str) -> Result<()> {
    let name = path.to_string_lossy();
    if !(name.ends_with(".nii") || name.ends_with(".nii.gz")) {
        bail!("{}: output must end in .nii or .nii.gz", path.display());
    }
    let bytes =
        if name.ends_with(".gz") { nifti::encode_gz(volume, description) } else { nifti::encode(volume, description) };
    write_atomic(path, &bytes)
}

/// `renal n4 --image IN --out OUT [--mask M] [--field F]`.
pub fn run_n4(
    image: &Path,
    out: &Path,
    mask: Option<&Path>,
    field: Option<&Path>,
    settings: &N4Settings,
) -> Result<()> {
    let volume = read(image)?;
    let mask = match mask {
        Some(m) => Some(read_mask(m, &volume.geometry)?),
        None => None,
    };
    let started = std::time::Instant::now();
    let result = n4(&volume, mask.as_ref(), settings).with_context(|| format!("N4 on {}", image.display()))?;
    write(out, &result.corrected, "renal n4 corrected")?;
    if let Some(f) = field {
        write(f, &result.log_field, "renal n4 log bias field")?;
    }
    eprintln!(
        "n4: {} voxels in {:.2} s; iterations per level {:?}, last convergence {:?}",
        volume.data.len(),
        started.elapsed().as_secs_f64(),
        result.iterations_run,
        result.convergence.iter().map(|c| format!("{c:.2e}")).collect::<Vec<_>>()
    );
    Ok(())
}

/// `renal histmatch --image IN --reference REF --out OUT`.
pub fn run_histmatch(image: &Path, reference: &Path, out: &Path, settings: &MatchSettings) -> Result<()> {
    let source = read(image)?;
    let reference = read(reference)?;
    let map = IntensityMap::fit(&source.data, &reference.data, settings).context("histogram matching")?;
    let data = source.data.iter().map(|&v| map.apply(f64::from(v)) as f32).collect();
    write(out, &Volume { geometry: source.geometry, data }, "renal histmatch")?;
    eprintln!(
        "histmatch: {} match points, source {:?} -> reference {:?}",
        settings.match_points,
        map.source_points.iter().map(|v| format!("{v:.1}")).collect::<Vec<_>>(),
        map.reference_points.iter().map(|v| format!("{v:.1}")).collect::<Vec<_>>()
    );
    Ok(())
}

/// What `renal preprocess` does to one series, besides the file names.
pub struct PreprocessOptions {
    /// N4 settings.
    pub n4: N4Settings,
    /// Match the corrected image's histogram to this image (the study: T2 to the lesion's T1C).
    pub match_to: Option<std::path::PathBuf>,
    /// Composite side, pixels.
    pub size: usize,
    /// Composite channel order.
    pub order: ChannelOrder,
    /// Also write `preview.png`.
    pub preview: bool,
}

/// `renal preprocess --image IMG --mask MASK --out DIR`: the worker's per-series steps (N4
/// inside the body mask, optional histogram matching, the 2.5D composite) on files, writing
/// `corrected.nii.gz`, `composite.f32` (3 x size x size little-endian float32, channel-major),
/// `composite.json` (what was chosen, volumes, QC) and, with `--preview`, `preview.png`.
pub fn run_preprocess(image: &Path, mask: &Path, out: &Path, o: &PreprocessOptions) -> Result<()> {
    let volume = read_image(image)?;
    let lesion = read_mask(mask, &volume.geometry)?;
    let body = renal_preprocess::process::body_mask(&volume);
    let started = std::time::Instant::now();
    let fixed = n4(&volume, Some(&body), &o.n4).with_context(|| format!("N4 on {}", image.display()))?;
    let cv_before_after = [
        renal_preprocess::process::masked_cv(&volume.data, &body.data),
        renal_preprocess::process::masked_cv(&fixed.corrected.data, &body.data),
    ];
    let mut corrected = fixed.corrected;
    if let Some(reference) = &o.match_to {
        let reference = read_image(reference)?;
        let settings = MatchSettings::default();
        corrected.data = match_histograms(&corrected.data, &reference.data, &settings).context("histogram matching")?;
    }
    let c = composite(&corrected, &lesion, o.size, o.order).context("composite")?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    write(&out.join("corrected.nii.gz"), &corrected, "renal preprocess")?;
    write_atomic(&out.join("composite.f32"), &renal_imaging::composite::encode_f32_le(&c.data))?;
    let summary = serde_json::json!({
        "size": c.size,
        "channel_order": o.order,
        "planes": c.planes.iter().map(|&(axis, index)| serde_json::json!({"axis": axis, "index": index})).collect::<Vec<_>>(),
        "tumour_volume_ml": lesion.foreground_ml(),
        "mask_voxels": lesion.count_nonzero(),
        "n4_body_cv_before_after": cv_before_after,
        "n4_iterations_run": fixed.iterations_run,
        "histogram_matched": o.match_to.is_some(),
    });
    write_atomic(&out.join("composite.json"), serde_json::to_string_pretty(&summary)?.as_bytes())?;
    if o.preview {
        let (rgb, w, h) = preview_rgb(&corrected, &lesion, &c);
        write_atomic(&out.join("preview.png"), &encode_png(&rgb, w, h)?)?;
    }
    eprintln!(
        "preprocess: {} voxels, lesion {:.2} mL, planes {:?}, {:.2} s; wrote {}",
        volume.data.len(),
        lesion.foreground_ml(),
        c.planes,
        started.elapsed().as_secs_f64(),
        out.display()
    );
    Ok(())
}

/// Write under a temporary name, then rename: readers never see half a file.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("partial");
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

/// 8-bit RGB pixels to PNG bytes.
pub fn encode_png(rgb: &[u8], width: usize, height: usize) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    let mut encoder = png::Encoder::new(&mut bytes, width as u32, height as u32);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header()?;
    writer.write_image_data(rgb)?;
    writer.finish()?;
    Ok(bytes)
}

/// The IBSI-1 digital phantom and its mask (CC BY 4.0, `tests/reference/ibsi/README.md`).
const IBSI_PHANTOM: (&[u8], &[u8]) = (
    include_bytes!("../../../tests/reference/ibsi/phantom.nii.gz"),
    include_bytes!("../../../tests/reference/ibsi/mask.nii.gz"),
);

/// How `renal radiomics` bins: `--bins`, `--bin-width`, or a settings file.
#[derive(Debug, Clone, Default)]
pub struct Binning {
    /// Fixed bin number.
    pub bins: Option<u32>,
    /// Fixed bin size, from the re-segmentation range's lower bound, else the ROI's lowest
    /// intensity.
    pub bin_width: Option<f64>,
    /// Re-segmentation range of the intensity mask (inclusive).
    pub resegment: Option<(f64, f64)>,
    /// Settings file: one row per setting.
    pub settings: Option<std::path::PathBuf>,
}

/// `renal radiomics`: IBSI features of one image and mask (or of the IBSI-1 digital phantom,
/// with its settings: no discretisation) as CSV, feature columns named by IBSI tags after the
/// provenance columns: one row, or one per setting of a settings file.
pub fn run_radiomics(
    image: Option<&Path>,
    mask: Option<&Path>,
    ibsi_phantom: bool,
    binning: &Binning,
    out: &Path,
) -> Result<()> {
    let Binning { bins, bin_width, resegment, .. } = *binning;
    use renal_ibsi::roi::{Discretisation, Roi};
    let (volume, roi_mask, names, hashes, discretisation) = match (ibsi_phantom, image, mask) {
        (true, None, None) => {
            let decode = |b: &[u8]| nifti::decode(b).map(|n| n.volume);
            let (v, m) = (decode(IBSI_PHANTOM.0)?, decode(IBSI_PHANTOM.1)?.to_mask());
            let hashes = [renal_store::sha256_hex(IBSI_PHANTOM.0), renal_store::sha256_hex(IBSI_PHANTOM.1)];
            (
                v,
                m,
                ["IBSI-1 digital phantom".to_string(), "IBSI-1 digital phantom mask".to_string()],
                hashes,
                Discretisation::None,
            )
        }
        (false, Some(image), Some(mask)) => {
            let v = read_image(image)?;
            let m = read_mask(mask, &v.geometry)?;
            let hash = |p: &Path| -> Result<String> {
                if p.is_dir() {
                    return Ok(String::new());
                }
                Ok(renal_store::sha256_hex(&std::fs::read(p).with_context(|| format!("reading {}", p.display()))?))
            };
            let hashes = [hash(image)?, hash(mask)?];
            let discretisation = match (bins, bin_width) {
                (_, Some(width)) => {
                    // IBSI: from the re-segmentation range's lower bound, else the ROI's
                    // lowest intensity.
                    let lower = resegment.map(|r| r.0).unwrap_or_else(|| {
                        v.data
                            .iter()
                            .zip(&m.data)
                            .filter(|(_, &k)| k > 0)
                            .map(|(&x, _)| f64::from(x))
                            .fold(f64::INFINITY, f64::min)
                    });
                    Discretisation::FixedBinSize { width, lower }
                }
                (b, None) => Discretisation::FixedBinNumber { bins: b.unwrap_or(32) },
            };
            (v, m, [image.display().to_string(), mask.display().to_string()], hashes, discretisation)
        }
        (true, _, _) => bail!("--ibsi-phantom computes the phantom's features; leave out --image and --mask"),
        _ => bail!("give --image and --mask, or --ibsi-phantom"),
    };
    if let Some(path) = &binning.settings {
        let settings = renal_radiomics::settings::read(path)?;
        let sets = renal_radiomics::extract::extract_series(&volume, &roi_mask, &settings)?;
        let tags = renal_radiomics::table::feature_tags();
        let diagnostic_tags = renal_radiomics::table::diagnostic_tags();
        let mut w = csv::Writer::from_writer(Vec::new());
        let mut header = vec!["image", "mask", "image_sha256", "mask_sha256", "settings", "code_version"];
        header.extend(tags.iter().map(String::as_str));
        header.extend(diagnostic_tags.iter().map(String::as_str));
        w.write_record(&header)?;
        for set in &sets {
            let mut row: Vec<String> = vec![
                names[0].clone(),
                names[1].clone(),
                hashes[0].clone(),
                hashes[1].clone(),
                serde_json::to_string(&set.setting)?,
                env!("CARGO_PKG_VERSION").to_string(),
            ];
            let values: std::collections::HashMap<&str, f64> = match &set.features {
                Ok(f) => f.iter().map(|(t, v)| (t.as_str(), *v)).collect(),
                Err(reason) => {
                    eprintln!("setting {}: no features: {reason}", set.setting.label());
                    Default::default()
                }
            };
            row.extend(tags.iter().map(|t| values.get(t.as_str()).map_or(String::new(), |v| v.to_string())));
            let diagnostics: std::collections::HashMap<&str, f64> =
                set.diagnostics.iter().map(|(t, v)| (t.as_str(), *v)).collect();
            row.extend(
                diagnostic_tags.iter().map(|t| diagnostics.get(t.as_str()).map_or(String::new(), |v| v.to_string())),
            );
            w.write_record(&row)?;
        }
        let bytes = w.into_inner().map_err(|e| anyhow::anyhow!("csv: {e}"))?;
        write_atomic(out, &bytes)?;
        println!("{} settings x {} feature columns written to {}", sets.len(), tags.len(), out.display());
        return Ok(());
    }
    let morphology: Vec<bool> = roi_mask.data.iter().map(|&m| m > 0).collect();
    let intensity = match resegment {
        Some((lo, hi)) => {
            morphology.iter().zip(&volume.data).map(|(&m, &v)| m && (lo..=hi).contains(&f64::from(v))).collect()
        }
        None => morphology.clone(),
    };
    let roi = Roi::new(
        volume.geometry.dims,
        volume.geometry.spacing_mm,
        volume.data.iter().map(|&v| f64::from(v)).collect(),
        intensity,
        discretisation,
    )
    .and_then(|roi| roi.with_morphology_mask(morphology))
    .context("building the ROI")?;
    // renal_ibsi::extract, with the re-segmentation range bounding the IVH's levels.
    let mut features = renal_ibsi::extract_unbinned(&roi);
    let range = resegment.map_or([None, None], |(lo, hi)| [Some(lo), Some(hi)]);
    renal_ibsi::intensity::intensity_volume_histogram(&roi, None, range, &mut features).map_err(anyhow::Error::msg)?;
    features.extend(renal_ibsi::extract_binned(&roi));
    let settings = serde_json::to_string(&discretisation)?;
    let mut header = vec!["image", "mask", "image_sha256", "mask_sha256", "settings", "code_version"];
    header.extend(features.iter().map(|(tag, _)| tag.as_str()));
    let mut row: Vec<String> = vec![
        names[0].clone(),
        names[1].clone(),
        hashes[0].clone(),
        hashes[1].clone(),
        settings,
        env!("CARGO_PKG_VERSION").to_string(),
    ];
    row.extend(features.iter().map(|(_, v)| v.to_string()));
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(&header)?;
    w.write_record(&row)?;
    let bytes = w.into_inner().map_err(|e| anyhow::anyhow!("csv: {e}"))?;
    write_atomic(out, &bytes)?;
    println!(
        "{} features of {} ROI voxels (grey levels 1..{}) written to {}",
        features.len(),
        roi.voxels().len(),
        roi.ng,
        out.display()
    );
    Ok(())
}
