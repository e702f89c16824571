//! `renal bench <stage>`: time a stage on this machine and print a Markdown table.
//!
//! One function per hot stage, each timing our code against its named baseline in the same run
//! (SimpleITK for N4, DCMTK's `storescu` for C-STORE, MIRP for radiomics, PyTorch eager for the
//! networks) and printing medians and ratios.

mod cnn;
mod monitor;
mod pipeline;

pub use monitor::{monitor, Peers};

pub use cnn::cnn;
pub use pipeline::{drop_patient, fitted_ensemble, pipeline, random_cnn_bundle};

use anyhow::{bail, Context, Result};
use renal_ingest::config::sites_of_cohort;
use renal_ingest::drop_folder::list_files;
use std::path::{Path, PathBuf};

/// `renal bench ingest`: instances per second, one thread.
pub fn ingest(input: &Path, repeat: usize) -> Result<()> {
    use renal_ingest::assemble::{Assembler, AssemblyConfig};
    use renal_ingest::instance;
    use renal_store::{BlobStore, LocalBlobStore};
    let files = dicom_files(input)?;
    let cfg = AssemblyConfig { quiet_period_ms: 0, incomplete_timeout_ms: 0, rules: Default::default() };
    let profile = renal_ingest::deid::Profile {
        keys: renal_ingest::deid::Keys::new(b"bench"),
        private_creators: Default::default(),
    };
    let scratch = tempfile_dir()?;
    // `deidentify`: the worker's path (checked, de-identified, read again); without it, the
    // header parse alone, as before de-identification existed.
    let pass = |write_blobs: bool, deidentify: bool| -> Result<(f64, usize)> {
        let store = LocalBlobStore::new(&scratch.join(if write_blobs { "blobs" } else { "manifests" }))?;
        let started = std::time::Instant::now();
        let mut asm = Assembler::new();
        for (site, path) in &files {
            let bytes = std::fs::read(path)?;
            let (inst, bytes) = if deidentify {
                let taken = renal_ingest::deid::intake(&bytes, site, &profile)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
                (taken.instance, taken.bytes)
            } else {
                (instance::parse(&bytes).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?, bytes)
            };
            let blob = if write_blobs { store.put(&bytes)? } else { renal_store::blob_ref(&bytes) };
            asm.add(site, inst, blob, 0);
        }
        let cases = asm.ready(u64::MAX / 2, &cfg, &store).into_iter().filter(|r| r.is_ok()).count();
        Ok((started.elapsed().as_secs_f64(), cases))
    };
    let (mut times, mut plain_times) = (Vec::new(), Vec::new());
    let mut cases = 0;
    for _ in 0..repeat.max(1) {
        let (t, c) = pass(false, true)?;
        times.push(t);
        cases = c;
        plain_times.push(pass(false, false)?.0);
    }
    let (median, plain) = (median(times), median(plain_times));
    let (with_blobs, _) = pass(true, true)?;
    let _ = std::fs::remove_dir_all(&scratch);
    let n = files.len() as f64;
    println!("| path | instances | cases | seconds (median of {}) | instances/s | target | verdict |", repeat.max(1));
    println!("|---|---|---|---|---|---|---|");
    println!(
        "| read + SHA-256 + parse + group (no de-identification) | {} | {cases} | {plain:.3} | {:.0} | - | - |",
        files.len(),
        n / plain
    );
    println!(
        "| read + parse + de-identify + parse + SHA-256 + group | {} | {cases} | {median:.3} | {:.0} | 2500 | {} |",
        files.len(),
        n / median,
        if n / median >= 2500.0 { "meets" } else { "misses" }
    );
    println!(
        "| ... + blob store writes (fsync each) | {} | {cases} | {with_blobs:.3} | {:.0} | - | - |",
        files.len(),
        n / with_blobs
    );
    Ok(())
}

fn tempfile_dir() -> Result<PathBuf> {
    let d = std::env::temp_dir().join(format!("renal-bench-{}", std::process::id()));
    std::fs::create_dir_all(&d)?;
    Ok(d)
}

/// Every `.dcm` file of a cohort folder with its site code.
fn dicom_files(input: &Path) -> Result<Vec<(String, PathBuf)>> {
    let files: Vec<(String, PathBuf)> = sites_of_cohort(input)?
        .iter()
        .flat_map(|s| {
            list_files(&s.drop_folder)
                .into_iter()
                .filter(|p| p.extension().is_some_and(|x| x == "dcm"))
                .map(move |p| (s.code.clone(), p))
        })
        .collect();
    if files.is_empty() {
        bail!("no .dcm files under {}", input.display());
    }
    Ok(files)
}

/// `renal bench cstore`: instances per second through our C-STORE SCP on loopback. Each
/// instance is written and renamed into the drop folder before its response, fsynced first
/// under the default durability; the page-cache rows show the receiver without the disk's
/// synced-write bandwidth in the way. Senders: our SCU with 1 and `associations` concurrent
/// associations (files preloaded, so the sender's disk is not measured), and DCMTK's
/// `storescu` on a subset as the baseline.
pub fn cstore(
    input: &Path,
    associations: usize,
    limit: usize,
    baseline_files: usize,
    dir: Option<&Path>,
) -> Result<()> {
    use renal_ingest::scp::{Durability, Scp, ACCEPTED};
    use renal_ingest::scu::StoreScu;
    let mut files = dicom_files(input)?;
    files.truncate(limit.max(1));
    let loaded: Vec<(String, Vec<u8>)> =
        files.iter().map(|(_, p)| Ok((p.display().to_string(), std::fs::read(p)?))).collect::<Result<_>>()?;
    let megabytes = loaded.iter().map(|(_, b)| b.len()).sum::<usize>() as f64 / 1e6;
    let scratch = match dir {
        Some(d) => d.join(format!("renal-bench-{}", std::process::id())),
        None => tempfile_dir()?,
    };
    let mut widths = vec![1];
    if associations > 1 {
        widths.push(associations);
    }
    let mut rows = Vec::new();
    for durability in [Durability::Fsync, Durability::PageCache] {
        let drop_folder = scratch.join(format!("{durability:?}"));
        let config =
            renal_ingest::ScpConfig { durability, ..renal_ingest::ScpConfig::new("BENCH", "RENAL", "127.0.0.1:0") };
        let scp = Scp::start(&config, &drop_folder)?;
        let addr = scp.addr.to_string();
        for &k in &widths {
            let _ = std::fs::remove_dir_all(&drop_folder);
            std::fs::create_dir_all(&drop_folder)?;
            let started = std::time::Instant::now();
            std::thread::scope(|scope| -> Result<()> {
                let handles: Vec<_> = (0..k)
                    .map(|part| {
                        let (addr, loaded) = (&addr, &loaded);
                        scope.spawn(move || -> Result<()> {
                            let mut scu = StoreScu::connect(addr, "BENCH", "RENAL", &ACCEPTED)?;
                            for (name, bytes) in loaded.iter().skip(part).step_by(k) {
                                scu.store_bytes(name, bytes)?;
                            }
                            scu.release()?;
                            Ok(())
                        })
                    })
                    .collect();
                for h in handles {
                    h.join().map_err(|_| anyhow::anyhow!("sender thread panicked"))??;
                }
                Ok(())
            })?;
            let seconds = started.elapsed().as_secs_f64();
            let landed = list_files(&drop_folder).len();
            if landed != loaded.len() {
                bail!("{} instances sent but {landed} landed in the drop folder", loaded.len());
            }
            let plural = if k == 1 { "" } else { "s" };
            rows.push((format!("renal SCU, {k} association{plural}"), durability, loaded.len(), seconds));
        }
        if durability == Durability::Fsync && baseline_files > 0 && which("storescu") {
            let _ = std::fs::remove_dir_all(&drop_folder);
            std::fs::create_dir_all(&drop_folder)?;
            let subset: Vec<&PathBuf> = files.iter().map(|(_, p)| p).take(baseline_files).collect();
            let started = std::time::Instant::now();
            let status = std::process::Command::new("storescu")
                .args(["-aec", "RENAL", "-aet", "BENCH", "-R", "-xs"])
                .arg(scp.addr.ip().to_string())
                .arg(scp.addr.port().to_string())
                .args(&subset)
                .status()?;
            let seconds = started.elapsed().as_secs_f64();
            if !status.success() {
                bail!("storescu failed: {status}");
            }
            rows.push(("DCMTK storescu, 1 association (baseline)".into(), durability, subset.len(), seconds));
        }
        scp.stop();
    }
    let _ = std::fs::remove_dir_all(&scratch);

    let mb_per_instance = megabytes / loaded.len() as f64;
    let baseline = rows.iter().find(|r| r.0.contains("baseline")).map(|r| r.2 as f64 / r.3);
    println!("| sender | durability | instances | seconds | instances/s | MB/s | vs storescu | target | verdict |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for (sender, durability, n, seconds) in rows {
        let rate = n as f64 / seconds;
        let ratio = baseline.map(|b| format!("{:.1}x", rate / b)).unwrap_or_else(|| "-".into());
        println!(
            "| {sender} | {} | {n} | {seconds:.2} | {rate:.0} | {:.1} | {ratio} | 1000 | {} |",
            match durability {
                Durability::Fsync => "fsync",
                Durability::PageCache => "page cache",
            },
            rate * mb_per_instance,
            if rate >= 1000.0 { "meets" } else { "misses" }
        );
    }
    Ok(())
}

fn which(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(program).is_file()))
}

/// A reference script under tests/reference/ and the venv's Python (scripts/python-env.sh
/// builds it).
pub fn reference_script(file: &str) -> Result<(PathBuf, PathBuf)> {
    venv_script("RENAL_VENV", "venv", file, "the Python baseline needs")
}

/// A script under tests/reference/ and the Python of the venv named by `var` (default
/// `~/.cache/renal-mri/<default_dir>`); `need` starts the error when either is missing.
pub(crate) fn venv_script(var: &str, default_dir: &str, file: &str, need: &str) -> Result<(PathBuf, PathBuf)> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/reference").join(file);
    let venv = std::env::var(var).map(PathBuf::from).unwrap_or_else(|_| {
        PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| "/root".into()))
            .join(".cache/renal-mri")
            .join(default_dir)
    });
    let python = venv.join("bin/python");
    if !python.exists() || !script.exists() {
        bail!("{need} {} and {} (run scripts/python-env.sh from the repository)", python.display(), script.display());
    }
    Ok((python, script))
}

fn run_sitk(python: &Path, script: &Path, args: &[String]) -> Result<serde_json::Value> {
    let out = std::process::Command::new(python).arg(script).args(args).output()?;
    if !out.status.success() {
        bail!("SimpleITK reference failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(serde_json::from_slice(&out.stdout)?)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Run `f` `repeat` times (at least once): the median wall time in seconds and the last result.
pub fn timed<T, E>(repeat: usize, mut f: impl FnMut() -> std::result::Result<T, E>) -> Result<(f64, T)>
where
    anyhow::Error: From<E>,
{
    timed_on(repeat, || (), |()| f())
}

/// [`timed`], with each run's input made by `prepare` before its clock starts (so copies of a
/// bench's input that the run consumes are not timed).
pub fn timed_on<I, T, E>(
    repeat: usize,
    mut prepare: impl FnMut() -> I,
    mut f: impl FnMut(I) -> std::result::Result<T, E>,
) -> Result<(f64, T)>
where
    anyhow::Error: From<E>,
{
    let mut times = Vec::new();
    let mut last = None;
    for _ in 0..repeat.max(1) {
        let input = prepare();
        let started = std::time::Instant::now();
        last = Some(f(input)?);
        times.push(started.elapsed().as_secs_f64());
    }
    Ok((median(times), last.expect("ran at least once")))
}

/// `renal bench preprocess`: N4 and histogram matching, ours against SimpleITK on one core.
pub fn preprocess(shrinks: &[usize], repeat: usize) -> Result<()> {
    use renal_imaging::histmatch::{match_histograms, MatchSettings};
    use renal_imaging::n4::{n4, N4Settings};
    use renal_imaging::{nifti, Volume};
    use renal_synth::bias_phantom::{bias_phantom, region_cv};
    let (python, script) = reference_script("sitk_reference.py")?;
    let scratch = tempfile_dir()?;
    let path = |name: &str| scratch.join(name).display().to_string();
    eprintln!("building the 256x256x40 bias phantom (1.5 x 1.5 x 5 mm, Rician sigma 4)");
    let p = bias_phantom([256, 256, 40], [1.5, 1.5, 5.0], 4.0, 0);
    std::fs::write(path("image.nii.gz"), nifti::encode_gz(&p.image, "bench"))?;
    std::fs::write(path("mask.nii.gz"), nifti::encode_gz(&p.body, "bench"))?;
    let body: Vec<usize> = (0..p.body.data.len()).filter(|&i| p.body.data[i] != 0).collect();
    let in_body = |f: &[f64]| body.iter().map(|&i| f[i]).collect::<Vec<f64>>();
    let truth = in_body(&p.log_field);
    let cv_before = region_cv(&p.image.data, &p.tissue);

    println!("Bias phantom: tissue CV {cv_before:.4} before correction (0.0400 without the field).");
    println!();
    println!("| step | setting | ours s | SimpleITK s | ours / SimpleITK | CV ours | CV SimpleITK | r(field) ours | r(field) SimpleITK | target | verdict |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for &shrink in shrinks {
        let settings = N4Settings { shrink_factor: shrink, ..N4Settings::default() };
        let (our_seconds, ours) = timed(repeat, || n4(&p.image, Some(&p.body), &settings))?;
        let report = run_sitk(
            &python,
            &script,
            &[
                "n4".into(),
                "--image".into(),
                path("image.nii.gz"),
                "--mask".into(),
                path("mask.nii.gz"),
                "--out-field".into(),
                path("field.nii.gz"),
                "--shrink".into(),
                shrink.to_string(),
                "--threads".into(),
                "1".into(),
            ],
        )?;
        let their_seconds =
            report["fit_seconds"].as_f64().unwrap_or(f64::NAN) + report["field_seconds"].as_f64().unwrap_or(f64::NAN);
        let their_field: Vec<f64> =
            nifti::decode(&std::fs::read(path("field.nii.gz"))?)?.volume.data.iter().map(|&f| f64::from(f)).collect();
        let their_corrected: Vec<f32> =
            p.image.data.iter().zip(&their_field).map(|(&v, f)| (f64::from(v) / f.exp()) as f32).collect();
        let our_field: Vec<f64> = ours.log_field.data.iter().map(|&f| f64::from(f)).collect();
        let ratio = our_seconds / their_seconds;
        println!(
            "| N4 (fit + full-res field) | shrink {shrink}, 4x50, 1e-3 | {our_seconds:.2} | {their_seconds:.2} | {ratio:.3} | {:.4} | {:.4} | {:.4} | {:.4} | <= 0.5 | {} |",
            region_cv(&ours.corrected.data, &p.tissue),
            region_cv(&their_corrected, &p.tissue),
            renal_stats::pearson(&in_body(&our_field), &truth),
            renal_stats::pearson(&in_body(&their_field), &truth),
            if ratio <= 0.5 { "meets" } else { "misses" }
        );
    }
    // Histogram matching: a second noise draw through a non-linear scanner map, back onto the first.
    let other = bias_phantom([256, 256, 40], [1.5, 1.5, 5.0], 4.0, 1).image;
    let source =
        Volume { geometry: other.geometry, data: other.data.iter().map(|&v| 25.0 + 1.7 * v.powf(1.1)).collect() };
    std::fs::write(path("source.nii.gz"), nifti::encode_gz(&source, "bench"))?;
    for levels in [128usize, 1024] {
        let settings = MatchSettings { levels, match_points: 7, threshold_at_mean: true };
        let (our_seconds, ours) = timed(repeat, || match_histograms(&source.data, &p.image.data, &settings))?;
        let report = run_sitk(
            &python,
            &script,
            &[
                "histmatch".into(),
                "--source".into(),
                path("source.nii.gz"),
                "--reference".into(),
                path("image.nii.gz"),
                "--out".into(),
                path("matched.nii.gz"),
                "--levels".into(),
                levels.to_string(),
            ],
        )?;
        let theirs = nifti::decode(&std::fs::read(path("matched.nii.gz"))?)?.volume.data;
        let their_seconds = report["seconds"].as_f64().unwrap_or(f64::NAN);
        let (lo, hi) = p.image.data.iter().fold((f32::MAX, f32::MIN), |(a, b), &v| (a.min(v), b.max(v)));
        let max_diff = ours.iter().zip(&theirs).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max) / (hi - lo);
        println!(
            "| histogram matching | {levels} levels, 7 points | {our_seconds:.3} | {their_seconds:.3} | {:.3} | max abs diff {:.1e} of range | - | - | - | <= 1 | {} |",
            our_seconds / their_seconds,
            max_diff,
            if our_seconds <= their_seconds { "meets" } else { "misses" }
        );
    }
    let _ = std::fs::remove_dir_all(&scratch);
    Ok(())
}

/// An ellipsoid lesion (semi-axes 22, 22 and 15.3 mm, about 31,000 voxels) in a 64x64x40 grid
/// at 1 mm, with a smooth gradient, a ripple and deterministic noise inside.
pub fn ellipsoid_lesion() -> (Vec<f64>, Vec<bool>) {
    let dims = [64usize, 64, 40];
    let centre = [31.5, 31.5, 19.5];
    let (mut image, mut mask) = (Vec::new(), Vec::new());
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for z in 0..dims[2] {
        for y in 0..dims[1] {
            for x in 0..dims[0] {
                let d = [x as f64 - centre[0], y as f64 - centre[1], z as f64 - centre[2]];
                let r = (d[0] / 22.0).powi(2) + (d[1] / 22.0).powi(2) + (d[2] / 15.3).powi(2);
                let noise = unit_noise(&mut state);
                image.push(300.0 + 4.0 * d[0] + 60.0 * (0.4 * d[1]).sin() * (0.3 * d[2]).cos() + 80.0 * noise);
                mask.push(r <= 1.0);
            }
        }
    }
    (image, mask)
}

/// The next value of a xorshift64 generator as a uniform number in [0, 1) (the bench's noise;
/// `tests/reference/mirp_bench.py` draws the same sequence).
fn unit_noise(state: &mut u64) -> f64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    (*state >> 11) as f64 / (1u64 << 53) as f64
}

/// MIRP's time for one setting on the bench lesion (`tests/reference/mirp_bench.py`, run by the
/// test suite's Python environment): seconds and features.
fn time_mirp(bins: u32) -> Result<(f64, u64)> {
    let venv = std::env::var("RENAL_VENV")
        .unwrap_or_else(|_| format!("{}/.cache/renal-mri/venv", std::env::var("HOME").unwrap_or_default()));
    let python = std::path::Path::new(&venv).join("bin/python");
    let out = std::process::Command::new(&python)
        .args(["-c", include_str!("../../../tests/reference/mirp_bench.py"), &bins.to_string(), "1"])
        .output()
        .with_context(|| format!("running {} (build it with scripts/python-env.sh)", python.display()))?;
    if !out.status.success() {
        bail!("MIRP timing failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    Ok((v["seconds"].as_f64().context("MIRP seconds")?, v["features"].as_u64().context("MIRP features")?))
}

/// `renal bench radiomics`.
pub fn radiomics(bins: u32, repeat: usize, grid: bool, mirp: bool) -> Result<()> {
    use renal_ibsi::roi::{Discretisation, Roi};
    use renal_ibsi::{intensity, neighbourhood, texture, zones, Features};
    let (image, mask) = ellipsoid_lesion();
    let voxels = mask.iter().filter(|&&m| m).count();
    let discretisation = Discretisation::FixedBinNumber { bins };
    // `Roi::new` takes its image and mask; the copies it is given are made untimed.
    let inputs = || (image.clone(), mask.clone());
    let (discretise_s, roi) =
        timed_on(repeat, inputs, |(image, mask)| Roi::new([64, 64, 40], [1.0; 3], image, mask, discretisation))?;
    type Family = fn(&Roi, &mut Features);
    let families: [(&str, Family); 9] = [
        ("morphology (mesh, convex hull, PCA)", |roi, out| {
            renal_ibsi::morphology::morphology(roi, renal_ibsi::MORAN_GEARY_DIRECT_MAX_VOXELS, out)
        }),
        ("local intensity", intensity::local_intensity),
        ("intensity statistics", intensity::statistics),
        ("intensity histogram", intensity::histogram),
        ("intensity-volume histogram", |roi, out| {
            intensity::intensity_volume_histogram(roi, None, [None, None], out).expect("default IVH")
        }),
        ("GLCM (6 aggregations)", texture::glcm),
        ("GLRLM (6 aggregations)", texture::glrlm),
        ("GLSZM + GLDZM (2D, 2.5D, 3D)", zones::zone_families),
        ("NGTDM + NGLDM (2D, 2.5D, 3D)", neighbourhood::ngtdm_and_ngldm),
    ];
    println!(
        "renal bench radiomics: ellipsoid ROI of {voxels} voxels in 64x64x40 at 1 mm, fixed bin number {bins}, one core, median of {repeat} (input copies untimed)"
    );
    println!("| step | features | median ms |");
    println!("|---|---|---|");
    println!("| discretise (FBN {bins}) | - | {:.2} |", discretise_s * 1e3);
    let mut sum = discretise_s;
    for (name, f) in families {
        let (s, n) = timed(repeat, || {
            let mut out = Features::new();
            f(&roi, &mut out);
            Ok::<usize, anyhow::Error>(out.len())
        })?;
        sum += s;
        println!("| {name} | {n} | {:.2} |", s * 1e3);
    }
    let (all_s, all) = timed_on(repeat, inputs, |(image, mask)| {
        Roi::new([64, 64, 40], [1.0; 3], image, mask, discretisation).map(|roi| renal_ibsi::extract(&roi).len())
    })?;
    println!("| **one setting, all of the above** | {all} | **{:.2}** |", all_s * 1e3);
    if mirp {
        let (seconds, features) = time_mirp(bins)?;
        println!("| MIRP 2.7.0, same lesion and setting (one run) | {features} | {:.0} |", seconds * 1e3);
        println!("ours is {:.0}x faster than MIRP in this run", seconds / all_s);
    }
    println!(
        "sum of the rows {:.2} ms; target 10 ms per setting, set when Moran's I and Geary's C were left out above 4,000 voxels (their exact FFT is now most of the morphology row); PyRadiomics 3.1.0 measured 200-300 ms per setting on this machine kind (issue 5; not installable here)",
        sum * 1e3
    );
    // Moran's I and Geary's C at the size of IBSI configuration D's ROI (45,985 voxels at 2 mm):
    // an ellipsoid of about 46,000 voxels, 1 mm, by FFT convolution (the direct sum would take
    // 2.1 billion pairs).
    let (coords, d) = {
        let (mut coords, mut values) = (Vec::new(), Vec::new());
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        for z in 0..38usize {
            for y in 0..52usize {
                for x in 0..52usize {
                    let r = ((x as f64 - 25.5) / 25.0).powi(2)
                        + ((y as f64 - 25.5) / 25.0).powi(2)
                        + ((z as f64 - 18.5) / 17.6).powi(2);
                    if r <= 1.0 {
                        coords.push([x, y, z]);
                        values.push(300.0 + 4.0 * x as f64 + 80.0 * unit_noise(&mut state));
                    }
                }
            }
        }
        let mu = values.iter().sum::<f64>() / values.len() as f64;
        (coords, values.iter().map(|v| v - mu).collect::<Vec<f64>>())
    };
    let (moran_s, _) = timed(repeat, || {
        Ok::<_, anyhow::Error>(renal_ibsi::autocorrelation::moran_geary_sums_fft(&coords, &d, [1.0; 3]))
    })?;
    println!(
        "| Moran's I + Geary's C by FFT, {} voxels (IBSI configuration D's ROI size) | 2 | {:.2} |",
        coords.len(),
        moran_s * 1e3
    );
    if grid {
        let g = renal_imaging::Geometry {
            dims: [64, 64, 40],
            spacing_mm: [1.0; 3],
            origin_mm: [0.0; 3],
            row_dir: [1.0, 0.0, 0.0],
            col_dir: [0.0, 1.0, 0.0],
            normal: [0.0, 0.0, 1.0],
        };
        // The lesion's two series: the bench image (T2-like) and a second contrast with its own
        // noise, on the same grid and mask (T1C-like).
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let second: Vec<f32> =
            image.iter().map(|&v| (900.0 - 0.8 * v + 60.0 * unit_noise(&mut state)) as f32).collect();
        let series = [
            renal_imaging::Volume { geometry: g.clone(), data: image.iter().map(|&v| v as f32).collect() },
            renal_imaging::Volume { geometry: g.clone(), data: second },
        ];
        let mask = renal_imaging::Volume { geometry: g, data: mask.iter().map(|&m| u8::from(m)).collect() };
        let settings = renal_radiomics::settings::study_grid();
        let (s, values) = timed(repeat.min(9), || {
            let mut values = 0;
            for image in &series {
                let sets = renal_radiomics::extract::extract_series(image, &mask, &settings)?;
                values += sets.iter().map(|s| s.features.as_ref().map_or(0, Vec::len)).sum::<usize>();
            }
            Ok::<usize, anyhow::Error>(values)
        })?;
        println!(
            "| **study grid: 32 settings x 2 series of one lesion (resample the region, extract, diagnostics)** | {values} | **{:.2}** |",
            s * 1e3
        );
        // The worker gets whole series, not crops: the same lesion size in a 256 x 256 x 30
        // series of 1.4 x 1.4 x 6 mm voxels, where each grid's diagnostics summarise the whole
        // interpolated image (23 million samples at 1 mm).
        let whole = renal_imaging::Geometry {
            dims: [256, 256, 30],
            spacing_mm: [1.4, 1.4, 6.0],
            origin_mm: [0.0; 3],
            row_dir: [1.0, 0.0, 0.0],
            col_dir: [0.0, 1.0, 0.0],
            normal: [0.0, 0.0, 1.0],
        };
        let (mut data, mut lesion) = (Vec::with_capacity(whole.len()), Vec::with_capacity(whole.len()));
        for k in 0..30usize {
            for j in 0..256usize {
                for i in 0..256usize {
                    let p = [i as f64 * 1.4 - 179.0, j as f64 * 1.4 - 179.0, k as f64 * 6.0 - 87.0];
                    let r = (p[0] / 22.0).powi(2) + (p[1] / 22.0).powi(2) + (p[2] / 15.3).powi(2);
                    data.push((300.0 + 0.5 * p[0] + 60.0 * (0.1 * p[1]).sin() + 80.0 * unit_noise(&mut state)) as f32);
                    lesion.push(u8::from(r <= 1.0));
                }
            }
        }
        let image = renal_imaging::Volume { geometry: whole.clone(), data };
        let lesion = renal_imaging::Volume { geometry: whole, data: lesion };
        let (s, values) = timed(repeat.min(5), || {
            let mut values = 0;
            for _series in 0..2 {
                let sets = renal_radiomics::extract::extract_series(&image, &lesion, &settings)?;
                values += sets.iter().map(|s| s.features.as_ref().map_or(0, Vec::len)).sum::<usize>();
            }
            Ok::<usize, anyhow::Error>(values)
        })?;
        println!(
            "| study grid, the lesion ({} voxels) in a whole 256x256x30 series of 1.4x1.4x6 mm, 2 series | {values} | {:.2} |",
            lesion.count_nonzero(),
            s * 1e3
        );
        println!("target for both series of a lesion: 500 ms (median of {})", repeat.min(9));
    }
    Ok(())
}

/// `renal bench synth`: generate a cohort (into `dir`, or a temporary folder removed after) on
/// `threads` threads (default: all cores) against the target of 1,162 lesions in 2 minutes.
pub fn synth(lesions: usize, seed: u64, threads: Option<usize>, dir: Option<&Path>) -> Result<()> {
    use renal_synth::{generate, SynthConfig};
    let (dir, temporary) = match dir {
        Some(d) => (d.to_path_buf(), false),
        None => (std::env::temp_dir().join(format!("renal-bench-synth-{}", std::process::id())), true),
    };
    let config = SynthConfig { lesions, seed, overwrite: true, ..SynthConfig::default() };
    let cores = threads.unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
    let pool = rayon::ThreadPoolBuilder::new().num_threads(cores.max(1)).build()?;
    let summary = pool.install(|| generate(&config, &dir, &|_| {}));
    if temporary {
        std::fs::remove_dir_all(&dir).ok();
    }
    let summary = summary.with_context(|| format!("renal synth into {}", dir.display()))?;
    // The target scales linearly: 1,162 lesions in 120 s.
    let target_s = 120.0 * lesions as f64 / 1162.0;
    println!("| stage | lesions | threads | files | MB written | seconds | lesions/s | target s | verdict |");
    println!("|---|---|---|---|---|---|---|---|---|");
    println!(
        "| synth | {} | {cores} | {} | {:.0} | {:.1} | {:.2} | {target_s:.0} | {} |",
        summary.lesions,
        summary.files,
        summary.bytes as f64 / 1e6,
        summary.seconds,
        summary.lesions as f64 / summary.seconds,
        if summary.seconds <= target_s { "meets" } else { "misses" }
    );
    Ok(())
}
