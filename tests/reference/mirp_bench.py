"""Time MIRP on the lesion `renal bench radiomics` uses, for the bench's side-by-side row.

Usage: mirp_bench.py BINS REPEAT  (prints one JSON object: median seconds, features)

The same 64x64x40 grid at 1 mm, the same ellipsoid (semi-axes 22, 22, 15.3 voxels) and the
same intensity formula and xorshift noise as `ellipsoid_lesion()` in services/cli/src/bench.rs;
one setting: no resampling, fixed bin number BINS, every feature family.
"""
import json
import logging
import sys
import tempfile
import time
import warnings

warnings.filterwarnings("ignore")
logging.disable(logging.CRITICAL)

import numpy as np  # noqa: E402
import SimpleITK as sitk  # noqa: E402
from mirp import extract_features  # noqa: E402

bins, repeat = int(sys.argv[1]), int(sys.argv[2])
nx, ny, nz = 64, 64, 40
image = np.zeros((nz, ny, nx), dtype=np.float64)
mask = np.zeros((nz, ny, nx), dtype=np.uint8)
state = 0x2545F4914F6CDD1D
m64 = (1 << 64) - 1
for z in range(nz):
    for y in range(ny):
        for x in range(nx):
            d = (x - 31.5, y - 31.5, z - 19.5)
            r = (d[0] / 22.0) ** 2 + (d[1] / 22.0) ** 2 + (d[2] / 15.3) ** 2
            state ^= (state << 13) & m64
            state ^= state >> 7
            state ^= (state << 17) & m64
            noise = (state >> 11) / float(1 << 53)
            image[z, y, x] = 300.0 + 4.0 * d[0] + 60.0 * np.sin(0.4 * d[1]) * np.cos(0.3 * d[2]) + 80.0 * noise
            mask[z, y, x] = r <= 1.0

with tempfile.TemporaryDirectory() as tmp:
    paths = []
    for name, array in (("image", image.astype(np.float32)), ("mask", mask)):
        path = f"{tmp}/{name}.nii.gz"
        sitk.WriteImage(sitk.GetImageFromArray(array), path)
        paths.append(path)
    times, features = [], 0
    for _ in range(repeat):
        started = time.perf_counter()
        table = extract_features(
            image=paths[0],
            mask=paths[1],
            image_modality="mr",
            base_feature_families="all",
            base_discretisation_method="fixed_bin_number",
            base_discretisation_n_bins=bins,
        )[0]
        times.append(time.perf_counter() - started)
        features = sum(1 for c in table.columns if c.split("_")[0] in
                       ("morph", "loc", "stat", "ih", "ivh", "cm", "rlm", "szm", "dzm", "ngt", "ngl"))
print(json.dumps({"seconds": float(np.median(times)), "features": features, "voxels": int(mask.sum())}))
