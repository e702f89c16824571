"""Read the radiomics feature store with pyarrow, independently of the Rust parquet crate.

Usage: features_readback.py ROOT

Opens ROOT/features as a Hive-partitioned dataset (site=..., date=...) and prints one JSON
object: the schema (name -> Arrow type, nullable), and per row the partition values, key
columns and a few feature values, for the Rust test to compare with what it computed.
"""
import json
import sys

import pyarrow.dataset as ds

root = sys.argv[1]
dataset = ds.dataset(f"{root}/features", format="parquet", partitioning="hive")
table = dataset.to_table()
schema = {f.name: [str(f.type), f.nullable] for f in table.schema}
rows = []
cols = ["site", "date", "case_id", "revision", "series", "setting", "spacing_mm", "bins", "equalised",
        "roi_voxels", "error", "settings_sha256", "morph_volume", "stat_mean", "cm_joint_max_3D_avg"]
for r in table.select(cols).to_pylist():
    r["date"] = str(r["date"])
    rows.append(r)
print(json.dumps({"files": len(dataset.files), "schema": schema, "rows": rows}))
