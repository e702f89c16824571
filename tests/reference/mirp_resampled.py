"""IBSI features and diagnostics of a resampled image, from MIRP (the IBSI lead author's package).

Usage: mirp_resampled.py IMAGE.nii.gz MASK.nii.gz CONFIG_JSON

CONFIG_JSON: {"spacing_mm": 2.0, "round": true, "discretisation": {"method": "fixed_bin_size",
"width": 25.0} | {"method": "fixed_bin_number", "bins": 32}, "ivh": {"method": "none"} |
{"method": "fixed_bin_size", "width": 2.5}, "range": [lo, hi] | null, "sigma": 3.0 | null}

MIRP resamples the whole image onto IBSI's grid (trilinear, no anti-aliasing; the mask by the
same interpolation kept at >= 0.5), rounds intensities when the modality is CT ("round": true),
re-segments and computes every feature (Moran's I and Geary's C exactly: no approximation).
MIRP 2.7 does not report IBSI's diagnostic features, so they are computed here with NumPy from
the images MIRP itself produces (`extract_images`): the initial image and mask as read, the
interpolated image and mask, and the intensity mask re-segmented with the same rule. Prints one
JSON object: IBSI tag -> value.
"""
import json
import logging
import re
import sys
import warnings

warnings.filterwarnings("ignore")
logging.disable(logging.CRITICAL)

import numpy as np  # noqa: E402
import SimpleITK as sitk  # noqa: E402
from mirp import extract_features, extract_images  # noqa: E402

image_path, mask_path, config = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
modality = "ct" if config["round"] else "mr"
common = dict(
    image=image_path,
    mask=mask_path,
    image_modality=modality,
    new_spacing=config["spacing_mm"],
    spline_order=1,
    anti_aliasing=False,
)
resegmentation = {}
if config.get("range") is not None:
    resegmentation["resegmentation_intensity_range"] = [float(v) for v in config["range"]]
if config.get("sigma") is not None:
    resegmentation["resegmentation_sigma"] = float(config["sigma"])

disc = config["discretisation"]
if disc["method"] == "fixed_bin_size":
    discretisation = dict(base_discretisation_method="fixed_bin_size", base_discretisation_bin_width=float(disc["width"]))
else:
    discretisation = dict(base_discretisation_method="fixed_bin_number", base_discretisation_n_bins=int(disc["bins"]))
ivh = config["ivh"]
if ivh["method"] == "none":
    ivh_settings = dict(ivh_discretisation_method="none")
elif ivh["method"] == "fixed_bin_size":
    ivh_settings = dict(ivh_discretisation_method="fixed_bin_size", ivh_discretisation_bin_width=float(ivh["width"]))
else:
    ivh_settings = dict(ivh_discretisation_method="fixed_bin_number", ivh_discretisation_n_bins=int(ivh["bins"]))

table = extract_features(
    **common,
    **resegmentation,
    **discretisation,
    **ivh_settings,
    base_feature_families="all",
    no_approximation=True,
    glcm_spatial_method=["3d_average", "3d_volume_merge"],
    glrlm_spatial_method=["3d_average", "3d_volume_merge"],
    glszm_spatial_method="3d",
    gldzm_spatial_method="3d",
    ngtdm_spatial_method="3d",
    ngldm_spatial_method="3d",
    ibsi_compliant=True,
)[0]


def ibsi_tag(name):
    name = re.sub(r"_(fbn_n\d+|fbs_w[\d.]+)$", "", name)
    name = name.replace("_d1_a0.0_3d", "_3D").replace("_d1_3d", "_3d")
    name = re.sub(r"_3d_v_mrg$", "_3D_comb", name)
    name = re.sub(r"_3d_avg$", "_3D_avg", name)
    name = re.sub(r"_3d$", "_3D", name)
    return name


out = {}
for column in table.columns:
    if re.match(r"^(morph|loc|stat|ih|ivh|cm|rlm|szm|dzm|ngt|ngl)_", column):
        try:
            out[ibsi_tag(column)] = float(table[column].iloc[0])
        except (TypeError, ValueError):
            pass

# Diagnostics. Arrays are (z, y, x); IBSI's x, y, z are reversed.
images = extract_images(**common, **resegmentation, export_images=True, image_export_format="dict")
processed, masks = images[0]
processed = processed[0] if isinstance(processed, list) else processed
masks = masks[0] if isinstance(masks[0], list) else masks
interp_image = processed["image"].astype(np.float64)
interp_mask = masks[0]["mask"].astype(bool)
init = sitk.ReadImage(image_path)
init_image = sitk.GetArrayFromImage(init).astype(np.float64)
init_mask = sitk.GetArrayFromImage(sitk.ReadImage(mask_path)) >= 0.5


def image_rows(step, image, spacing):
    rows = {}
    for axis, n, s in zip("xyz", image.shape[::-1], spacing):
        rows[f"img_dim_{axis}_{step}_img"] = n
        rows[f"vox_dim_{axis}_{step}_img"] = s
    rows[f"mean_int_{step}_img"] = image.mean()
    rows[f"min_int_{step}_img"] = image.min()
    rows[f"max_int_{step}_img"] = image.max()
    return rows


def box(mask):
    idx = np.argwhere(mask)
    return (idx.max(axis=0) - idx.min(axis=0) + 1)[::-1]


def roi_rows(step, image, intensity, morphology):
    rows = {}
    for axis, n in zip("xyz", image.shape[::-1]):
        rows[f"int_mask_dim_{axis}_{step}_roi"] = n
    for name, mask in (("int", intensity), ("morph", morphology)):
        for axis, n in zip("xyz", box(mask)):
            rows[f"{name}_mask_bb_dim_{axis}_{step}_roi"] = n
        rows[f"{name}_mask_vox_count_{step}_roi"] = mask.sum()
    values = image[intensity]
    rows[f"int_mask_mean_int_{step}_roi"] = values.mean()
    rows[f"int_mask_min_int_{step}_roi"] = values.min()
    rows[f"int_mask_max_int_{step}_roi"] = values.max()
    return rows


reseg = interp_mask.copy()
lo, hi = -np.inf, np.inf
if config.get("range") is not None:
    lo, hi = config["range"]
if config.get("sigma") is not None:
    values = interp_image[interp_mask]
    mu, sd = values.mean(), values.std()
    lo, hi = max(lo, mu - config["sigma"] * sd), min(hi, mu + config["sigma"] * sd)
reseg &= (interp_image >= lo) & (interp_image <= hi)

out.update(image_rows("init", init_image, init.GetSpacing()))
out.update(image_rows("interp", interp_image, [config["spacing_mm"]] * 3))
out.update(roi_rows("init", init_image, init_mask, init_mask))
out.update(roi_rows("interp", interp_image, interp_mask, interp_mask))
out.update(roi_rows("reseg", interp_image, reseg, interp_mask))
print(json.dumps({k: float(v) for k, v in out.items()}))
