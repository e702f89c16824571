"""IBSI features of an image and mask computed by MIRP (the IBSI lead author's package).

Usage: mirp_reference.py IMAGE.nii.gz MASK.nii.gz SPACING_MM BINS [RANGE_MIN RANGE_MAX SIGMA]

Resamples to isotropic SPACING_MM with trilinear interpolation (spline order 1, no
anti-aliasing; the mask by the same interpolation kept at >= 0.5), discretises with a fixed
bin number of BINS (the intensity-volume histogram in 1,000 bins, IBSI's default for
non-integer intensities), and prints one JSON object: IBSI tag -> value, with MIRP's column names
mapped to the tags of the IBSI reference tables. With the last three arguments the intensity
mask is re-segmented to [RANGE_MIN, RANGE_MAX] and to mean +- SIGMA standard deviations.
"""
import json
import logging
import re
import sys
import warnings

warnings.filterwarnings("ignore")
logging.disable(logging.CRITICAL)

from mirp import extract_features  # noqa: E402

image, mask, spacing, bins = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
resegmentation = {}
if len(sys.argv) > 5:
    resegmentation = dict(
        resegmentation_intensity_range=[float(sys.argv[5]), float(sys.argv[6])],
        resegmentation_sigma=float(sys.argv[7]),
    )
table = extract_features(
    image=image,
    mask=mask,
    image_modality="mr",
    base_feature_families="all",
    base_discretisation_method="fixed_bin_number",
    base_discretisation_n_bins=bins,
    ivh_discretisation_method="fixed_bin_number",
    ivh_discretisation_n_bins=1000,
    new_spacing=spacing,
    spline_order=1,
    anti_aliasing=False,
    glcm_spatial_method=["3d_average", "3d_volume_merge"],
    glrlm_spatial_method=["3d_average", "3d_volume_merge"],
    glszm_spatial_method="3d",
    gldzm_spatial_method="3d",
    ngtdm_spatial_method="3d",
    ngldm_spatial_method="3d",
    ibsi_compliant=True,
    **resegmentation,
)[0]


def ibsi_tag(name):
    name = re.sub(r"_fbn_n\d+$", "", name)
    name = name.replace("_d1_a0.0_3d", "_3D").replace("_d1_3d", "_3d")
    name = re.sub(r"_3d_v_mrg$", "_3D_comb", name)
    name = re.sub(r"_3d_avg$", "_3D_avg", name)
    name = re.sub(r"_3d$", "_3D", name)
    return name


out = {}
for column in table.columns:
    if re.match(r"^(morph|loc|stat|ih|ivh|cm|rlm|szm|dzm|ngt|ngl)_", column):
        value = table[column].iloc[0]
        try:
            out[ibsi_tag(column)] = float(value)
        except (TypeError, ValueError):
            pass
print(json.dumps(out))
