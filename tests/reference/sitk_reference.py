#!/usr/bin/env python3
"""SimpleITK as the independent reference for our N4 and histogram matching.

Called by the Rust tests and by `renal bench preprocess` with NIfTI files in and out, so both
sides see the same voxels. Prints one JSON object on stdout (timings in seconds).

  sitk_reference.py histmatch --source S.nii.gz --reference R.nii.gz --out O.nii.gz
                              [--levels 128] [--match-points 7] [--no-threshold-at-mean]
  sitk_reference.py n4 --image I.nii.gz [--mask M.nii.gz] --out-field F.nii.gz
                       [--out-corrected C.nii.gz] [--shrink 4] [--iterations 50 50 50 50]
                       [--threshold 0.001] [--threads 1]
  sitk_reference.py convert --image I.nii.gz --out O.nrrd [--pixel uint8|int16|float32] [--compress]
                            (prints the image's LPS geometry as SimpleITK sees it)
"""
import argparse
import json
import time

import SimpleITK as sitk


def histmatch(a):
    source = sitk.ReadImage(a.source, sitk.sitkFloat32)
    reference = sitk.ReadImage(a.reference, sitk.sitkFloat32)
    f = sitk.HistogramMatchingImageFilter()
    f.SetNumberOfHistogramLevels(a.levels)
    f.SetNumberOfMatchPoints(a.match_points)
    f.SetThresholdAtMeanIntensity(a.threshold_at_mean)
    t0 = time.perf_counter()
    out = f.Execute(source, reference)
    seconds = time.perf_counter() - t0
    sitk.WriteImage(out, a.out)
    return {"seconds": seconds}


def n4(a):
    image = sitk.ReadImage(a.image, sitk.sitkFloat32)
    if a.mask:
        mask = sitk.ReadImage(a.mask, sitk.sitkUInt8)
        mask.CopyInformation(image)
    else:
        mask = None
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(a.threads)
    c0, t0 = time.process_time(), time.perf_counter()
    small = sitk.Shrink(image, [a.shrink] * 3) if a.shrink > 1 else image
    f = sitk.N4BiasFieldCorrectionImageFilter()
    f.SetMaximumNumberOfIterations(a.iterations)
    f.SetConvergenceThreshold(a.threshold)
    if mask is not None:
        small_mask = sitk.Shrink(mask, [a.shrink] * 3) if a.shrink > 1 else mask
        f.Execute(small, small_mask)
    else:
        f.Execute(small)
    fit_cpu, fit_wall = time.process_time() - c0, time.perf_counter() - t0
    t1 = time.perf_counter()
    log_field = f.GetLogBiasFieldAsImage(image)
    corrected = image / sitk.Exp(log_field)
    field_wall = time.perf_counter() - t1
    sitk.WriteImage(log_field, a.out_field)
    if a.out_corrected:
        sitk.WriteImage(corrected, a.out_corrected)
    return {"fit_cpu_seconds": fit_cpu, "fit_seconds": fit_wall, "field_seconds": field_wall,
            "iterations": list(f.GetMaximumNumberOfIterations()), "elapsed_iterations": f.GetElapsedIterations(),
            "convergence": f.GetCurrentConvergenceMeasurement()}


def convert(a):
    pixel = {"uint8": sitk.sitkUInt8, "int16": sitk.sitkInt16, "float32": sitk.sitkFloat32}[a.pixel]
    image = sitk.ReadImage(a.image, pixel)
    sitk.WriteImage(image, a.out, a.compress)
    return {"size": list(image.GetSize()), "spacing": list(image.GetSpacing()),
            "origin": list(image.GetOrigin()), "direction": list(image.GetDirection())}


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    h = sub.add_parser("histmatch")
    h.add_argument("--source", required=True)
    h.add_argument("--reference", required=True)
    h.add_argument("--out", required=True)
    h.add_argument("--levels", type=int, default=128)
    h.add_argument("--match-points", type=int, default=7)
    h.add_argument("--no-threshold-at-mean", dest="threshold_at_mean", action="store_false")
    n = sub.add_parser("n4")
    n.add_argument("--image", required=True)
    n.add_argument("--mask")
    n.add_argument("--out-field", required=True)
    n.add_argument("--out-corrected")
    n.add_argument("--shrink", type=int, default=4)
    n.add_argument("--iterations", type=int, nargs="+", default=[50, 50, 50, 50])
    n.add_argument("--threshold", type=float, default=0.001)
    n.add_argument("--threads", type=int, default=1)
    c = sub.add_parser("convert")
    c.add_argument("--image", required=True)
    c.add_argument("--out", required=True)
    c.add_argument("--pixel", default="float32", choices=["uint8", "int16", "float32"])
    c.add_argument("--compress", action="store_true")
    a = p.parse_args()
    print(json.dumps({"histmatch": histmatch, "n4": n4, "convert": convert}[a.cmd](a)))


if __name__ == "__main__":
    main()
