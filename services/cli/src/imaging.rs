//! `renal n4` and `renal histmatch`: the preprocessing steps on NIfTI files, for people and
//! scripts.

use anyhow::{bail, Context, Result};
use renal_imaging::histmatch::{IntensityMap, MatchSettings};
use renal_imaging::n4::{n4, N4Settings};
use renal_imaging::{nifti, Volume};
use std::path::Path;

fn read(path: &Path) -> Result<Volume<f32>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(nifti::decode(&bytes).with_context(|| format!("decoding {}", path.display()))?.volume)
}

fn write(path: &Path, volume: &Volume<f32>, description: &str) -> Result<()> {
    let name = path.to_string_lossy();
    if !(name.ends_with(".nii") || name.ends_with(".nii.gz")) {
        bail!("{}: output must end in .nii or .nii.gz", path.display());
    }
    let bytes =
        if name.ends_with(".gz") { nifti::encode_gz(volume, description) } else { nifti::encode(volume, description) };
    let tmp = path.with_extension("partial");
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
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
        Some(m) => {
            let v = read(m)?;
            if v.geometry.dims != volume.geometry.dims {
                bail!(
                    "mask {} has {:?} voxels, image {:?}; resample it onto the image first",
                    m.display(),
                    v.geometry.dims,
                    volume.geometry.dims
                );
            }
            Some(Volume { geometry: v.geometry, data: v.data.iter().map(|&x| u8::from(x > 0.5)).collect() })
        }
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
