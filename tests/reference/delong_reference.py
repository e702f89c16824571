"""Reference for renal-stats' paired DeLong test: MLstatkit's Delong_test (which follows R
pROC's roc.test) on each case of the query read from stdin; writes the answers as JSON.

Query: {"cases": [{"labels": [0|1, ...], "a": [...], "b": [...]}, ...]}
Answer: [{"auc_a", "auc_b", "var_diff", "z", "p", "method"}, ...]
"""
import json
import sys

from MLstatkit import Delong_test

query = json.load(sys.stdin)
out = []
for case in query["cases"]:
    z, p, _ci_a, _ci_b, auc_a, auc_b, info = Delong_test(case["labels"], case["a"], case["b"], random_state=0)
    out.append({
        "auc_a": float(auc_a),
        "auc_b": float(auc_b),
        "var_diff": float(info.get("var_diff", float("nan"))),
        "z": float(z),
        "p": float(p),
        "method": info["method"],
    })
json.dump(out, sys.stdout)
