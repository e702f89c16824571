//! `renal`: the renal-mri command line.
//!
//! Subcommands exist only for capabilities that are built; each has `--help` with an example.

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use renal_imaging::composite::ChannelOrder;
use renal_synth::{generate, SynthConfig};
use std::path::PathBuf;
use std::time::Duration;

/// mimalloc instead of the system allocator (see the dependency note in Cargo.toml).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod embedded;
mod eval;
mod files;
mod models;
mod monitoring;
mod replay;
mod science;
mod train;
mod worker;

#[derive(Parser)]
#[command(
    name = "renal",
    version,
    about = "Kidney-lesion MRI to calibrated probabilities of malignancy: synthetic cohorts, the embedded pipeline, each stage as a Kafka worker, training, evaluation and benchmarks."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write a synthetic multi-site cohort as DICOM (MR series + SEG), NIfTI masks, labels.csv and manifest.json.
    #[command(
        after_help = "Examples:\n  renal synth --out cohort --lesions 160 --seed 7 --sites HUP,MAY,TCIA\n  renal synth --out drifted --lesions 400 --drift MAY:20:vendor   (MAY's scanner replaced after its 20th lesion)"
    )]
    Synth(SynthArgs),
    /// Run every stage in one process on the in-process bus (no broker needed).
    ///
    /// Ingest (DICOM in <input>/<SITE>/..., the cases table in OUT/store/cases), preprocess (N4,
    /// histogram matching, composites into OUT/blobs) and radiomics (OUT/store/features); dead
    /// letters of every stage go to OUT/dead_letters.jsonl. With <input>/labels.csv the trainer
    /// cuts the lesions by patient into 5 folds (by default; each fold predicted by models that
    /// never saw it), fits and calibrates the clinical model, first-order baselines, the T2 and
    /// T1C networks and their ensemble, saves them in OUT/models, streams the held-out lesions
    /// through the inference and ensemble stages, and writes OUT/predictions.csv and the
    /// evaluation report OUT/report/.
    ///
    /// The CPU default departs from the study: randomly initialised ResNet-18s at 64x64 for at
    /// most 12 epochs (the study: ImageNet-initialised ResNet-50s at 200x200, up to 500 epochs;
    /// --study sets those), and 5-fold cross-validation instead of one 70/20/10 split
    /// (--protocol split), whose 10% test part is too small to estimate anything on a cohort of
    /// a few hundred lesions. The clinical model scales the log of the tumour volume (the study:
    /// the volume itself, which its few large lesions squash).
    #[command(
        after_help = "Examples:\n  renal run --input cohort --out out\n  renal run --input cohort --out out --protocol split --study"
    )]
    Run {
        /// Cohort folder with one sub-folder per site (as renal synth writes).
        #[arg(long)]
        input: PathBuf,
        /// Output folder.
        #[arg(long)]
        out: PathBuf,
        /// How lesions are held out for the report: kfold:K (every testable lesion predicted by
        /// models trained and validated (80/20) on the other folds), split (one 70/20/10 split,
        /// the study's), loio:SITE (test on one site, train on the others).
        #[arg(long, default_value = "kfold:5")]
        protocol: renal_trainer::Protocol,
        /// Skip the T2 and T1C networks (clinical model only).
        #[arg(long)]
        no_cnn: bool,
        #[command(flatten)]
        cnn: train::CnnArgs,
    },
    /// Retrain on an output folder's labels (a challenger against the model it serves), or
    /// train models outside `renal run` (`renal train cnn`).
    ///
    /// With --out OUT: fit a challenger (networks, clinical model, ensemble, calibrator) on
    /// every labelled lesion in OUT/labels.jsonl except the champion's held-out patients', predict
    /// those held-out lesions through the inference and ensemble stages with both models, register
    /// the challenger in OUT/models, and promote it only if its ROC AUC is not worse than the
    /// champion's by more than --auc-margin (one-sided 95% DeLong bound) and its ECE not worse by
    /// more than --ece-margin; otherwise the reason is recorded (renal models show VERSION).
    #[command(
        args_conflicts_with_subcommands = true,
        after_help = "Examples:\n  renal labels import corrected.csv --out out/run && renal train --out out/run\n  renal train cnn --run out --labels cohort/labels.csv --epochs 20"
    )]
    Train(Box<TrainArgs>),
    /// Label intake.
    Labels {
        #[command(subcommand)]
        action: LabelsAction,
    },
    /// The model registry: versions, the promoted pointer per deployment, its history.
    Models {
        #[command(subcommand)]
        action: ModelsAction,
    },
    /// Dead letters on the broker: list them by stage and reason, and send selected ones back
    /// to their input topic once their cause is fixed.
    ///
    /// A letter carries its input when the input was one message (not an ingest file, a label
    /// row or a join of partial scores). `run` re-drives each selected letter at most once per
    /// --id: what an id re-drove is kept on renal.replays and read back, so running the same id
    /// again (after an interruption, or by mistake) sends nothing twice.
    #[command(
        after_help = "Examples:\n  renal replay list --config deploy/ensemble.toml\n  renal replay run --config deploy/ensemble.toml --id fix-2026-12-07 --stage ensemble --reason unknown_lesion"
    )]
    Replay {
        #[command(subcommand)]
        action: ReplayAction,
    },
    /// Run one worker on Kafka until interrupted.
    #[command(after_help = "Example:\n  RENAL_PSEUDONYM_SECRET=... renal worker ingest --config deploy/ingest.toml")]
    Worker {
        /// Worker name (ingest, preprocess, radiomics, inference, ensemble, monitor, trainer).
        name: String,
        /// TOML settings: a [kafka] section and the worker's own section.
        #[arg(long)]
        config: PathBuf,
    },
    /// N4 bias-field correction of a NIfTI image (defaults as ITK/SimpleITK, shrink 4 as ANTs).
    #[command(after_help = "Example:\n  renal n4 --image t2.nii.gz --mask body.nii.gz --out t2_n4.nii.gz")]
    N4 {
        /// Input image (.nii or .nii.gz); intensities must be positive inside the mask.
        #[arg(long)]
        image: PathBuf,
        /// Corrected image to write (.nii or .nii.gz).
        #[arg(long)]
        out: PathBuf,
        /// Mask on the same grid (non-zero = fit here); default: every positive voxel.
        #[arg(long)]
        mask: Option<PathBuf>,
        /// Also write the estimated log bias field here.
        #[arg(long)]
        field: Option<PathBuf>,
        /// Subsampling factor for the fit.
        #[arg(long, default_value_t = 4)]
        shrink: usize,
        /// Maximum iterations per fitting level, comma-separated (the number of levels is their count).
        #[arg(long, value_delimiter = ',', default_value = "50,50,50,50")]
        iterations: Vec<usize>,
        /// Convergence threshold (CV of the field update inside the mask).
        #[arg(long, default_value_t = 0.001)]
        convergence: f64,
    },
    /// Match an image's histogram to a reference's (ITK's method; 128 levels, 7 match points,
    /// threshold at the mean intensity by default, as the study matched T2 to T1C).
    #[command(
        after_help = "Example:\n  renal histmatch --image t2.nii.gz --reference t1c.nii.gz --out t2_matched.nii.gz"
    )]
    Histmatch {
        /// Image to map (.nii or .nii.gz).
        #[arg(long)]
        image: PathBuf,
        /// Reference image (any grid).
        #[arg(long)]
        reference: PathBuf,
        /// Output (.nii or .nii.gz), on the input image's grid.
        #[arg(long)]
        out: PathBuf,
        /// Histogram bins.
        #[arg(long, default_value_t = 128)]
        levels: usize,
        /// Quantiles matched.
        #[arg(long, default_value_t = 7)]
        match_points: usize,
        /// Use every voxel, not only those at or above the mean.
        #[arg(long)]
        no_threshold_at_mean: bool,
    },
    /// Preprocess one series from files as the preprocess worker does: N4 inside the body mask,
    /// optional histogram matching, the 2.5D composite; --preview also draws it as a PNG.
    ///
    /// IMAGE: a NIfTI/NRRD file or a folder of one series' DICOM instances. MASK: NIfTI, NRRD or
    /// DICOM SEG, resampled onto the image's grid when its grid differs. Writes OUT/corrected.nii.gz,
    /// OUT/composite.f32, OUT/composite.json and OUT/preview.png.
    #[command(
        after_help = "Example:\n  renal preprocess --image cohort/HUP/P00001/ST1/SE003 --mask cohort/nifti/HUP-0001/T2_R1.nii.gz --out t2 --preview"
    )]
    Preprocess {
        /// Image file or DICOM series folder.
        #[arg(long)]
        image: PathBuf,
        /// Lesion mask.
        #[arg(long)]
        mask: PathBuf,
        /// Output folder (created).
        #[arg(long)]
        out: PathBuf,
        /// Match the corrected histogram to this image (the study matched T2 to the T1C).
        #[arg(long)]
        match_to: Option<PathBuf>,
        /// Write OUT/preview.png: the chosen planes with the lesion outlined, and the composite.
        #[arg(long)]
        preview: bool,
        /// Composite side, pixels.
        #[arg(long, default_value_t = 200)]
        size: usize,
        /// Channel order: anatomical (axial, sagittal, coronal) or array_axes (the study's code).
        #[arg(long, default_value = "anatomical", value_parser = ["anatomical", "array_axes"])]
        channel_order: String,
        /// N4 subsampling factor.
        #[arg(long, default_value_t = 4)]
        shrink: usize,
    },
    /// The evaluation report from CSV files: per model (and per expert reader) F1, accuracy,
    /// sensitivity, specificity with adjusted-Wald 95% CIs, PPV, NPV, FDR, ROC and PR AUC with
    /// bootstrap CIs, Brier, ECE, the exact binomial test against the zero rule, and McNemar
    /// tests against the readers and the radiomics model; writes OUT/report.json, OUT/index.html
    /// and SVG figures.
    ///
    /// Files: predictions `case_id,model,probability`; labels `case_id,label` (benign|malignant);
    /// experts `case_id,expert,call` (benign|malignant).
    #[command(after_help = "Example:\n  renal eval --predictions p.csv --labels l.csv --experts e.csv --out report")]
    Eval {
        /// Predictions CSV.
        #[arg(long)]
        predictions: PathBuf,
        /// Labels CSV.
        #[arg(long)]
        labels: PathBuf,
        /// Expert reads CSV.
        #[arg(long)]
        experts: Option<PathBuf>,
        /// Embeddings CSV (`case_id` then one column per dimension): adds a t-SNE map
        /// (`tsne.svg`).
        #[arg(long)]
        embeddings: Option<PathBuf>,
        /// Output folder.
        #[arg(long)]
        out: PathBuf,
        /// A probability at or above this is a malignant call.
        #[arg(long, default_value_t = 0.5)]
        threshold: f64,
        /// Bootstrap resamples for the AUC intervals.
        #[arg(long, default_value_t = 2000)]
        bootstrap: usize,
        /// Bootstrap seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Equal-width bins for ECE and the reliability diagram.
        #[arg(long, default_value_t = 10)]
        ece_bins: usize,
    },
    /// What the monitor found, drawn from the store's `drift` and `calibration` tables.
    Monitor {
        #[command(subcommand)]
        action: MonitorAction,
    },
    /// IBSI radiomics features of an image and its mask as CSV (feature columns named by IBSI
    /// tags, after provenance columns): one row on the acquired grid, or one row per setting of
    /// a settings file (resampling and discretisation, as the radiomics worker does). Families:
    /// morphology (mesh, convex hull, PCA), local intensity, statistics, histogram,
    /// intensity-volume histogram, GLCM and GLRLM (six aggregations), GLSZM, GLDZM, NGTDM,
    /// NGLDM (2D, 2.5D, 3D).
    #[command(
        after_help = "Examples:\n  renal radiomics --ibsi-phantom --out phantom.csv\n  renal radiomics --image t1c.nii.gz --mask lesion.nii.gz --bins 32 --out f.csv\n  renal radiomics --image t1c.nii.gz --mask lesion.nii.gz --settings grid.json --out f.csv"
    )]
    Radiomics {
        /// Image: NIfTI, NRRD, or a folder of one DICOM series.
        #[arg(long)]
        image: Option<PathBuf>,
        /// Mask: NIfTI, NRRD or DICOM SEG (resampled onto the image's grid when it differs).
        #[arg(long)]
        mask: Option<PathBuf>,
        /// The IBSI-1 digital phantom with its settings (no discretisation) instead of a file.
        #[arg(long)]
        ibsi_phantom: bool,
        /// Fixed bin number (default 32 unless --bin-width is given).
        #[arg(long, conflicts_with = "bin_width")]
        bins: Option<u32>,
        /// Fixed bin size, in intensity units. Bins start at the re-segmentation range's lower
        /// bound when --resegment is given (IBSI), else at the ROI's lowest intensity.
        #[arg(long)]
        bin_width: Option<f64>,
        /// Re-segment the intensity mask to intensities MIN..=MAX (morphology keeps the mask).
        #[arg(long, num_args = 2, value_names = ["MIN", "MAX"], allow_negative_numbers = true)]
        resegment: Option<Vec<f64>>,
        /// A settings file (JSON: `{"settings": [{"spacing_mm": 2.0, "discretisation":
        /// {"method": "fixed_bin_number", "bins": 32}}, ...]}`; every key is described in the
        /// feature table's schema), one output row per setting, with IBSI's diagnostic columns.
        #[arg(long, conflicts_with_all = ["bins", "bin_width", "resegment"])]
        settings: Option<PathBuf>,
        /// Output CSV.
        #[arg(long)]
        out: PathBuf,
    },
    /// Time a pipeline stage and print a table.
    #[command(after_help = "Example:\n  renal bench synth --lesions 1162")]
    Bench {
        #[command(subcommand)]
        stage: BenchStage,
    },
}

#[derive(clap::Args)]
struct TrainArgs {
    #[command(subcommand)]
    model: Option<TrainModel>,
    /// A renal run output folder whose promoted model is challenged.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Deployment whose champion is challenged.
    #[arg(long, default_value = renal_registry::DEFAULT_DEPLOYMENT)]
    deployment: String,
    /// Largest ROC AUC loss tolerated (one-sided 95% DeLong lower bound of the change).
    #[arg(long, default_value_t = renal_trainer::Margins::default().auc_margin)]
    auc_margin: f64,
    /// Largest ECE increase tolerated (10 equal-width bins).
    #[arg(long, default_value_t = renal_trainer::Margins::default().ece_margin)]
    ece_margin: f64,
    /// What is retrained: full, recalibrate (the champion's calibrator only, on labelled lesions
    /// it has never seen), ensemble (its meta-classifier and calibrator on those lesions,
    /// networks and clinical model kept), or auto (recalibrate when those lesions raise the
    /// calibration alert, full otherwise).
    #[arg(long, value_enum, default_value = "full")]
    retrain: models::RetrainChoice,
    #[command(flatten)]
    cnn: train::CnnArgs,
}

#[derive(Subcommand)]
enum LabelsAction {
    /// Take in a pathology labels CSV (case_id,label[,subtype][,diagnosis_source]). With --out:
    /// merge it into an output folder's label book, OUT/labels.jsonl (new lesions are added, a
    /// later label of a lesion replaces the earlier one, bad rows go to OUT/dead_letters.jsonl
    /// with their reason). With --config: send each row to renal.labels (bad rows to
    /// renal.dead.labels), where the trainer worker reads them.
    #[command(
        after_help = "Examples:\n  renal labels import pathology-2026-12.csv --out out/run\n  renal labels import pathology-2026-12.csv --config deploy/trainer.toml"
    )]
    Import {
        /// The CSV file.
        file: PathBuf,
        /// A renal run output folder.
        #[arg(long, required_unless_present = "config")]
        out: Option<PathBuf>,
        /// A worker file whose [kafka] section names the broker.
        #[arg(long, conflicts_with = "out")]
        config: Option<PathBuf>,
    },
}

/// Which registry: an output folder's, or a registry folder.
#[derive(clap::Args)]
struct RegistryArgs {
    /// A renal run output folder (its registry is OUT/models).
    #[arg(long)]
    out: Option<PathBuf>,
    /// A registry folder.
    #[arg(long, conflicts_with = "out")]
    registry: Option<PathBuf>,
}

#[derive(Subcommand)]
enum ReplayAction {
    /// Count dead letters by stage and reason (--verbose: one line per letter).
    List {
        /// A worker file (its [kafka] section is used).
        #[arg(long)]
        config: PathBuf,
        #[command(flatten)]
        filter: replay::FilterArgs,
        /// One line per letter: where it is, its key, reason and whether it can be re-driven.
        #[arg(long)]
        verbose: bool,
    },
    /// Send the selected letters' inputs back to their input topics.
    Run {
        /// A worker file (its [kafka] section is used).
        #[arg(long)]
        config: PathBuf,
        /// This replay's name: each letter is re-driven at most once per id.
        #[arg(long)]
        id: String,
        #[command(flatten)]
        filter: replay::FilterArgs,
        /// Select every letter (otherwise give --stage, --reason or --key).
        #[arg(long)]
        all: bool,
        /// Say what would be re-driven, send nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Subcommand)]
enum ModelsAction {
    /// Every registered version with its held-out metrics and the deployments it serves.
    #[command(after_help = "Example:\n  renal models list --out out/run")]
    List {
        #[command(flatten)]
        at: RegistryArgs,
    },
    /// One version: what it was trained on, its metrics, the comparison with its champion, and
    /// every event concerning it.
    #[command(after_help = "Example:\n  renal models show ens-0123456789ab --out out/run")]
    Show {
        /// Model version (ens-...).
        version: String,
        #[command(flatten)]
        at: RegistryArgs,
    },
    /// Point a deployment at a version (by hand; the trainer promotes after its comparison).
    #[command(after_help = "Example:\n  renal models promote ens-0123456789ab --out out/run --reason \"reviewed\"")]
    Promote {
        /// Model version (ens-...).
        version: String,
        #[command(flatten)]
        at: RegistryArgs,
        /// Deployment.
        #[arg(long, default_value = renal_registry::DEFAULT_DEPLOYMENT)]
        deployment: String,
        /// Why (recorded with the event).
        #[arg(long, default_value = "promoted by hand")]
        reason: String,
    },
    /// Point a deployment back at the version it served before.
    #[command(after_help = "Example:\n  renal models rollback --out out/run --reason \"calibration alert at MAY\"")]
    Rollback {
        #[command(flatten)]
        at: RegistryArgs,
        /// Deployment.
        #[arg(long, default_value = renal_registry::DEFAULT_DEPLOYMENT)]
        deployment: String,
        /// Why (recorded with the event).
        #[arg(long, default_value = "rolled back by hand")]
        reason: String,
    },
}

#[derive(Subcommand)]
enum TrainModel {
    /// Train the T2 and T1C networks on the preprocessed lesions of a `renal run` output and save
    /// them as a bundle (OUT/models/cnn/<version>/, or --registry).
    ///
    /// Lesions are split as `renal run --protocol split` splits them (patient-grouped,
    /// stratified, seed 1; 70/20/10 unless --parts says otherwise); the networks train on four
    /// fifths of the first part and choose their epoch on the other fifth, calibrate on the
    /// second part, and the third is scored for the held-out ROC AUC line.
    #[command(after_help = "Example:\n  renal train cnn --run out --labels cohort/labels.csv --epochs 20")]
    Cnn {
        /// A `renal run` output folder (lesions.jsonl and blobs/).
        #[arg(long)]
        run: PathBuf,
        /// Labels (case_id,label[,diagnosis_source]).
        #[arg(long)]
        labels: PathBuf,
        /// Registry folder for the bundle (default: RUN/models).
        #[arg(long)]
        registry: Option<PathBuf>,
        /// Keep a checkpoint here after every epoch and resume from it when rerun.
        #[arg(long)]
        checkpoint: Option<PathBuf>,
        /// Train, validation and test fractions (patient-grouped, stratified, seed 1).
        #[arg(long, value_delimiter = ',', default_value = "0.7,0.2,0.1")]
        parts: Vec<f64>,
        #[command(flatten)]
        cnn: train::CnnArgs,
    },
}

#[derive(Subcommand)]
enum MonitorAction {
    /// The drift heat map (site and scanner x signal, the latest window's PSI) and calibration
    /// per site as labels arrived, from a store's `drift` and `calibration` tables: writes
    /// OUT/index.html, OUT/drift_heatmap.svg and .png, OUT/calibration.svg. `renal run` writes
    /// the same into OUT/report/monitor/.
    #[command(after_help = "Example:\n  renal monitor report --store run/store --out monitor-report")]
    Report {
        /// Root of the Parquet store (holds drift/ and calibration/).
        #[arg(long)]
        store: PathBuf,
        /// Output folder.
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(clap::Args)]
struct SynthArgs {
    /// Output folder (created; must be empty unless --overwrite).
    #[arg(long)]
    out: PathBuf,
    /// Number of lesions, split over sites in the study's proportions (913/118/56/25/50).
    #[arg(long, default_value_t = 1162)]
    lesions: usize,
    /// Seed: the same seed writes the same files and UIDs.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Comma-separated site codes.
    #[arg(long, value_delimiter = ',', default_value = "HUP,MAY,TCIA,SXH,PHH")]
    sites: Vec<String>,
    /// Fraction of histopathology-confirmed lesions given two extra readers' segmentations.
    #[arg(long, default_value_t = 0.15)]
    multi_reader_fraction: f64,
    /// Probability that a patient has a second lesion, imaged in a later study.
    #[arg(long, default_value_t = 0.06)]
    second_lesion_probability: f64,
    /// Worker threads (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Write into a non-empty folder.
    #[arg(long)]
    overwrite: bool,
    /// SITE:FROM_LESION:KIND: from the site's lesion FROM_LESION on (0-based), images are
    /// acquired differently. KIND `vendor`: another vendor's scanner at another field strength
    /// (protocols, intensity scale, noise, bias field); `contrast`: a later contrast phase
    /// (lesions enhance less on T1C). Repeat for several sites. Labels do not change.
    #[arg(long = "drift", value_name = "SITE:FROM_LESION:KIND")]
    drift: Vec<renal_synth::drift::DriftSpec>,
}

#[derive(Subcommand)]
enum BenchStage {
    /// Parse and group DICOM instances from a cohort folder on one core (target: 2,500 instances/s
    /// for 256x256 16-bit slices), then the same with blob-store writes.
    #[command(after_help = "Example:\n  renal synth --out c --lesions 40 && renal bench ingest --input c")]
    Ingest {
        /// Cohort folder (renal synth output).
        #[arg(long)]
        input: PathBuf,
        /// Repetitions of the parse-and-group pass (the median is reported).
        #[arg(long, default_value_t = 5)]
        repeat: usize,
    },
    /// Send a cohort's instances through our C-STORE SCP on loopback (target: 1,000 instances/s),
    /// from our SCU with one and with several associations, and from DCMTK's storescu as baseline.
    #[command(after_help = "Example:\n  renal synth --out c --lesions 40 && renal bench cstore --input c")]
    Cstore {
        /// Cohort folder (renal synth output).
        #[arg(long)]
        input: PathBuf,
        /// Concurrent associations for the second run (PACS routers typically open several).
        #[arg(long, default_value_t = 4)]
        associations: usize,
        /// Send at most this many instances.
        #[arg(long, default_value_t = 5000)]
        limit: usize,
        /// Instances sent by storescu for the baseline row (0: skip it).
        #[arg(long, default_value_t = 200)]
        baseline_files: usize,
        /// Folder for the receiver's drop folders (default: the system's temporary folder);
        /// e.g. /dev/shm to take the disk out of the measurement.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// N4 and histogram matching on the 256x256x40 bias phantom, ours and SimpleITK's (from the
    /// test venv) with the same parameters in the same run (target: N4 in at most half
    /// SimpleITK's time on one core).
    #[command(after_help = "Example:\n  scripts/python-env.sh && renal bench preprocess")]
    Preprocess {
        /// Shrink factors to time.
        #[arg(long, value_delimiter = ',', default_value = "4,2")]
        shrink: Vec<usize>,
        /// Repetitions of our N4 per setting (the median is reported).
        #[arg(long, default_value_t = 3)]
        repeat: usize,
    },
    /// Radiomics on one core: every IBSI family this build computes (all aggregations) on an
    /// ellipsoid lesion of about 31,000 voxels (64x64x40 at 1 mm), one setting (fixed bin number).
    /// Also Moran's I and Geary's C alone on a 46,000-voxel ROI (exact, by FFT). `--grid` adds
    /// the study's 32 settings on both series of the same lesion (resampling the region around
    /// the mask, extraction, diagnostics): the radiomics worker's cost per lesion, target 0.5 s.
    #[command(after_help = "Example:\n  renal bench radiomics --bins 32 --repeat 20 --grid --mirp")]
    Radiomics {
        /// Grey levels (fixed bin number).
        #[arg(long, default_value_t = 32)]
        bins: u32,
        /// Repetitions (the median is reported).
        #[arg(long, default_value_t = 15)]
        repeat: usize,
        /// Also time the 32-setting grid (a few seconds per repetition).
        #[arg(long)]
        grid: bool,
        /// Also time MIRP on the same lesion and setting, once (about 20 s), from the test
        /// suite's Python environment ($RENAL_VENV, built by scripts/python-env.sh).
        #[arg(long)]
        mirp: bool,
    },
    /// CNN throughput at 200x200: inference (images/s) and SGD train steps per backbone, batch
    /// size and device; on CUDA also fp16 autocast inference, with PyTorch eager from the
    /// test venv as the baseline when it can run on the same device.
    #[command(after_help = "Example:\n  renal bench cnn --backbones resnet18,resnet50 --batches 1,16")]
    Cnn {
        /// Backbones.
        #[arg(long, value_delimiter = ',', default_value = "resnet18,resnet34,resnet50")]
        backbones: Vec<renal_cnn::net::Backbone>,
        /// Batch sizes.
        #[arg(long, value_delimiter = ',', default_value = "1,16")]
        batches: Vec<i64>,
        /// Devices: cpu, cuda (skipped with a note when absent).
        #[arg(long, value_delimiter = ',', default_value = "cpu,cuda")]
        devices: Vec<String>,
        /// Timed repetitions per row after one warm-up (the median is reported).
        #[arg(long, default_value_t = 3)]
        repeat: usize,
        /// Also check logits against PyTorch for each backbone (needs the test venv).
        #[arg(long)]
        parity: bool,
        /// Time training steps too.
        #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
        train_steps: bool,
    },
    /// The study-scale evaluation: synthesise a cohort, run ingest, preprocess and radiomics once,
    /// then train and evaluate under k-fold cross-validation and leaving one institution out, and
    /// print per model held-out ROC AUC (95% CI), accuracy, ECE, Brier and the best calibrator,
    /// next to the first-order baselines and what the study's Table 1 implies for the clinical
    /// model. At 1,162 lesions with the networks this takes hours on 2 CPU cores and about 30 GB
    /// of disk (the cohort, volumes and composites).
    #[command(
        after_help = "Examples:\n  renal bench science --lesions 1162 --dir science\n  renal bench science --lesions 300 --no-cnn\n  renal bench science --dir science --reuse --no-cnn   (train again, nothing re-made)"
    )]
    Science {
        /// Lesions in the synthetic cohort (over the study's five sites).
        #[arg(long, default_value_t = 1162)]
        lesions: usize,
        /// Cohort seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Folds of the cross-validation.
        #[arg(long, default_value_t = 5)]
        folds: usize,
        /// The institution held out in the second protocol.
        #[arg(long, default_value = "HUP")]
        hold_out: String,
        /// Where to keep the cohort, stores, models and reports (default: a temporary folder,
        /// removed afterwards).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Train again on the cohort and prepared run an earlier call left in --dir (no synth,
        /// ingest, preprocess or radiomics; --lesions and --seed are then the earlier run's).
        #[arg(long, requires = "dir")]
        reuse: bool,
        /// Skip the T2 and T1C networks.
        #[arg(long)]
        no_cnn: bool,
        #[command(flatten)]
        cnn: train::CnnArgs,
    },
    /// The monitor's drift statistics on a reference and an analysis set against Evidently's
    /// data-drift preset and NannyML's univariate drift on the same data (drift venv of
    /// scripts/python-env.sh): time per window, agreement per feature, and the streaming cost
    /// per lesion with every feature watched on both series.
    #[command(
        after_help = "Examples:\n  renal bench monitor --features 300          (10,000 x 300, Evidently and NannyML on both, minutes)\n  renal bench monitor --window-only           (10,000 x 3,087, the peers on the window of 50 only; SciPy's exact KS for the agreement, about 0.3 s a column, then up to 20 minutes of Evidently)\n  renal bench monitor --no-python"
    )]
    Monitor {
        /// Rows of the reference set and of the analysis set (one window).
        #[arg(long, default_value_t = 10_000)]
        rows: usize,
        /// Features (columns); 3,087 is one series' radiomics row.
        #[arg(long, default_value_t = 3_087)]
        features: usize,
        /// Share of the analysis columns shifted (by 0.01 to 0.2 of their SD).
        #[arg(long, default_value_t = 0.1)]
        shifted: f64,
        /// Seed of the data.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Time renal-monitor alone (no Evidently or NannyML).
        #[arg(long)]
        no_python: bool,
        /// Run Evidently and NannyML on the monitoring window only, not on the whole analysis
        /// set (Evidently's presets on 10,000 x 3,087 run for more than half an hour).
        #[arg(long, conflicts_with = "no_python")]
        window_only: bool,
    },
    /// Generate a cohort into a temporary folder and report throughput against the 2-minute target for 1,162 lesions.
    #[command(after_help = "Example:\n  renal bench synth --lesions 1162 --threads 2")]
    Synth {
        /// Lesions to generate.
        #[arg(long, default_value_t = 1162)]
        lesions: usize,
        /// Seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Worker threads (default: all cores).
        #[arg(long)]
        threads: Option<usize>,
        /// Where to write (default: a temporary folder, removed afterwards).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// The whole pipeline as a deployment runs it: a private broker and the five workers as
    /// processes, a synthetic cohort through drop folders and C-STORE; prints lesions per second,
    /// each stage's and hop's p50/p99, what Kafka adds, and CPU per lesion against the stages'
    /// own benchmark on a sample in the same run.
    #[command(after_help = "Example:\n  renal bench pipeline --lesions 160\n  renal bench pipeline --lesions 1162")]
    Pipeline {
        /// Lesions in the synthetic cohort (over the study's five sites).
        #[arg(long, default_value_t = 160)]
        lesions: usize,
        /// Cohort seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Lesions the stages' own benchmark runs on, spread over the cohort (their sizes vary,
        /// and so does their cost: fewer gives a noisier baseline).
        #[arg(long, default_value_t = 24)]
        sample: usize,
        /// Longest hold of a consumer's fetch, ms (`[kafka] fetch_wait_max_ms`): tansu holds each
        /// fetch this long even when messages are waiting, so it bounds the latency per hop
        /// from below; shorter costs the broker more CPU.
        #[arg(long, default_value_t = 50)]
        fetch_wait_ms: u64,
        /// The broker's storage: `sqlite` (what the tests use; every tansu build has it) or
        /// `memory` (tansu's in-memory engine, closer to Kafka, which writes to the page cache
        /// and does not fsync per message; needs the bench build, `scripts/install-tansu.sh
        /// bench`, named by TANSU_HOME).
        #[arg(long, default_value = "sqlite")]
        broker_storage: String,
        /// Where to keep the cohort, stores and worker logs (an empty or new folder; default: a
        /// temporary folder, removed afterwards).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

fn main() {
    // Before any libtorch call: registers the CUDA backend when the install has one.
    renal_cnn::device::load_cuda_backend();
    // Every message, table row and bundle this process writes names this build's commit.
    renal_messages::set_code_version(env!("RENAL_GIT_COMMIT"));
    // Log events to stderr; `RENAL_LOG_FORMAT=json` for one JSON object per line, `RUST_LOG`
    // for the level (default info).
    let format = match std::env::var("RENAL_LOG_FORMAT").as_deref() {
        Ok("json") => renal_telemetry::LogFormat::Json,
        _ => renal_telemetry::LogFormat::Human,
    };
    renal_telemetry::init_logs(format);
    let cli = Cli::parse();
    if let Err(e) = run(cli) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Synth(args) => synth(args),
        Command::Run { input, out, protocol, no_cnn, cnn } => {
            embedded::run(&input, &out, &protocol, (!no_cnn).then_some(&cnn))
        }
        Command::Train(args) if args.model.is_some() => {
            let Some(TrainModel::Cnn { run, labels, registry, checkpoint, parts, cnn }) = args.model else {
                unreachable!("matched on a subcommand")
            };
            let parts: [f64; 3] =
                parts.try_into().map_err(|_| anyhow::anyhow!("--parts: want three fractions, e.g. 0.7,0.2,0.1"))?;
            train::train_cnn(&run, &labels, registry.as_deref(), checkpoint.as_deref(), parts, &cnn)
        }
        Command::Train(args) => {
            let TrainArgs { out, deployment, auc_margin, ece_margin, retrain, cnn, .. } = *args;
            let Some(out) = out else {
                bail!("renal train: give --out OUT (retrain on a run's labels) or a subcommand (renal train cnn)")
            };
            let config = cnn.settings().validate().context("training settings")?;
            let margins = renal_trainer::Margins { auc_margin, ece_margin, ..Default::default() };
            models::retrain(&out, &deployment, &margins, retrain, (&cnn, config))
        }
        Command::Labels { action: LabelsAction::Import { file, out, config } } => match (out, config) {
            (Some(out), _) => models::import_labels(&file, &out),
            (None, Some(config)) => models::send_labels(&file, &config),
            (None, None) => bail!("renal labels import: give --out OUT or --config FILE"),
        },
        Command::Replay { action: ReplayAction::List { config, filter, verbose } } => {
            replay::list(&config, &filter.into(), verbose)
        }
        Command::Replay { action: ReplayAction::Run { config, id, filter, all, dry_run } } => {
            replay::run(&config, &id, &filter.into(), all, dry_run)
        }
        Command::Models { action } => match action {
            ModelsAction::List { at } => {
                models::list(&models::open_registry(at.out.as_deref(), at.registry.as_deref())?)
            }
            ModelsAction::Show { version, at } => {
                models::show(&models::open_registry(at.out.as_deref(), at.registry.as_deref())?, &version)
            }
            ModelsAction::Promote { version, at, deployment, reason } => models::promote(
                &models::open_registry(at.out.as_deref(), at.registry.as_deref())?,
                &deployment,
                &version,
                &reason,
            ),
            ModelsAction::Rollback { at, deployment, reason } => models::rollback(
                &models::open_registry(at.out.as_deref(), at.registry.as_deref())?,
                &deployment,
                &reason,
            ),
        },
        Command::Radiomics { image, mask, ibsi_phantom, bins, bin_width, resegment, settings, out } => {
            let resegment = resegment.map(|r| (r[0], r[1]));
            let binning = files::Binning { bins, bin_width, resegment, settings };
            files::run_radiomics(image.as_deref(), mask.as_deref(), ibsi_phantom, &binning, &out)
        }
        Command::Bench { stage: BenchStage::Radiomics { bins, repeat, grid, mirp } } => {
            renal_bench::radiomics(bins, repeat, grid, mirp)
        }
        Command::Bench { stage: BenchStage::Cnn { backbones, batches, devices, repeat, parity, train_steps } } => {
            renal_bench::cnn(&backbones, &batches, &devices, repeat, parity, train_steps)
        }
        Command::Worker { name, config } => worker::run(&name, &config),
        Command::Bench {
            stage: BenchStage::Pipeline { lesions, seed, sample, fetch_wait_ms, broker_storage, dir },
        } => renal_bench::pipeline(lesions, seed, sample, fetch_wait_ms, &broker_storage, dir.as_deref()),
        Command::Bench { stage: BenchStage::Science { lesions, seed, folds, hold_out, dir, reuse, no_cnn, cnn } } => {
            let cnn = (!no_cnn).then_some(&cnn);
            science::run(lesions, seed, folds, &hold_out.to_uppercase(), dir.as_deref(), reuse, cnn)
        }
        Command::Bench { stage: BenchStage::Monitor { rows, features, shifted, seed, no_python, window_only } } => {
            let peers = match (no_python, window_only) {
                (true, _) => renal_bench::Peers::Skip,
                (false, true) => renal_bench::Peers::Window,
                (false, false) => renal_bench::Peers::All,
            };
            renal_bench::monitor(rows, features, shifted, seed, peers)
        }
        Command::Bench { stage: BenchStage::Synth { lesions, seed, threads, dir } } => {
            renal_bench::synth(lesions, seed, threads, dir.as_deref())
        }
        Command::N4 { image, out, mask, field, shrink, iterations, convergence } => {
            let settings = renal_imaging::n4::N4Settings {
                shrink_factor: shrink,
                iterations,
                convergence_threshold: convergence,
                ..Default::default()
            };
            files::run_n4(&image, &out, mask.as_deref(), field.as_deref(), &settings)
        }
        Command::Histmatch { image, reference, out, levels, match_points, no_threshold_at_mean } => {
            let settings = renal_imaging::histmatch::MatchSettings {
                levels,
                match_points,
                threshold_at_mean: !no_threshold_at_mean,
            };
            files::run_histmatch(&image, &reference, &out, &settings)
        }
        Command::Preprocess { image, mask, out, match_to, preview, size, channel_order, shrink } => {
            let order = if channel_order == "array_axes" { ChannelOrder::ArrayAxes } else { ChannelOrder::Anatomical };
            let n4 = renal_imaging::n4::N4Settings { shrink_factor: shrink, ..Default::default() };
            let options = files::PreprocessOptions { n4, match_to, size, order, preview };
            files::run_preprocess(&image, &mask, &out, &options)
        }
        Command::Monitor { action: MonitorAction::Report { store, out } } => {
            for line in monitoring::report(&store, &out)? {
                println!("{line}");
            }
            Ok(())
        }
        Command::Eval { predictions, labels, experts, embeddings, out, threshold, bootstrap, seed, ece_bins } => {
            let settings = renal_eval::report::Settings { threshold, bootstrap_resamples: bootstrap, seed, ece_bins };
            eval::run(&predictions, &labels, experts.as_deref(), embeddings.as_deref(), &out, &settings)
        }
        Command::Bench { stage: BenchStage::Preprocess { shrink, repeat } } => renal_bench::preprocess(&shrink, repeat),
        Command::Bench { stage: BenchStage::Ingest { input, repeat } } => renal_bench::ingest(&input, repeat),
        Command::Bench { stage: BenchStage::Cstore { input, associations, limit, baseline_files, dir } } => {
            renal_bench::cstore(&input, associations, limit, baseline_files, dir.as_deref())
        }
    }
}

fn synth(args: SynthArgs) -> Result<()> {
    let config = SynthConfig {
        lesions: args.lesions,
        seed: args.seed,
        sites: args.sites.iter().map(|s| s.trim().to_uppercase()).collect(),
        multi_segmenter_fraction: args.multi_reader_fraction,
        second_lesion_probability: args.second_lesion_probability,
        overwrite: args.overwrite,
        drift: args.drift.clone(),
    };
    if args.threads == Some(0) {
        bail!("--threads must be at least 1");
    }
    // Check the settings before drawing a progress bar.
    let planned = renal_synth::plan(&config)?.len();
    let bar = ProgressBar::new(planned as u64);
    bar.set_style(
        ProgressStyle::with_template("{spinner} synth [{bar:30}] {pos}/{len} lesions {per_sec} eta {eta}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    // Zero threads: rayon's default, every core.
    let pool = rayon::ThreadPoolBuilder::new().num_threads(args.threads.unwrap_or(0)).build()?;
    let (out, result) = (&args.out, pool.install(|| generate(&config, &args.out, &|_| bar.inc(1))));
    bar.finish_and_clear();
    let s = result.with_context(|| format!("renal synth into {}", out.display()))?;
    println!("wrote {} lesions of {} patients to {}", s.lesions, s.patients, out.display());
    let sites: Vec<String> = s.per_site.iter().map(|(k, v)| format!("{k} {v}")).collect();
    println!("  sites: {}", sites.join(", "));
    println!("  malignant {} / benign {}; {} lesions with three readers' masks", s.malignant, s.benign, s.multi_reader);
    for d in &args.drift {
        println!("  drift: {} from its lesion {} on: {:?}", d.site, d.from_lesion, d.kind);
    }
    println!("  {} files, {:.1} MB, {:.1} s", s.files, s.bytes as f64 / 1e6, s.seconds);
    println!("  labels: {}", out.join("labels.csv").display());
    println!("  manifest: {}", out.join("manifest.json").display());
    Ok(())
}
