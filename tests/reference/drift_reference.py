"""Drift statistics and label-free performance estimates by SciPy and NannyML, for
tests/drift_reference.rs.

Reads {"cases": [{"reference", "window", "bins"}], "cbpe": [{"p", "threshold"}]} on stdin and
writes, per case, SciPy's two-sample KS test (exact and asymptotic), the limiting Kolmogorov
tail at the corrected argument renal-stats uses beyond its exact limit, SciPy's Wasserstein distance, NumPy's quantile edges and the PSI on them, and NannyML's
univariate KS statistic and Wasserstein distance; per CBPE case, NannyML's expected accuracy
and expected ROC AUC. Runs in the drift venv (scripts/python-env.sh).
"""
import json
import sys
import warnings

import numpy as np
import pandas as pd
from scipy import stats

warnings.filterwarnings("ignore")
from nannyml.chunk import SizeBasedChunker  # noqa: E402
from nannyml.drift.univariate.methods import KolmogorovSmirnovStatistic, WassersteinDistance  # noqa: E402
from nannyml.performance_estimation.confidence_based.metrics import estimate_accuracy, estimate_roc_auc  # noqa: E402
from nannyml.thresholds import StandardDeviationThreshold  # noqa: E402


def psi(reference, window, edges):
    full = np.concatenate(([-np.inf], edges, [np.inf]))
    e = np.histogram(reference, full)[0] / len(reference)
    a = np.histogram(window, full)[0] / len(window)
    e = np.where(e == 0, 1e-4, e)
    a = np.where(a == 0, 1e-4, a)
    return float(np.sum((a - e) * np.log(a / e)))


def nannyml_method(cls, reference, window):
    m = cls(chunker=SizeBasedChunker(chunk_size=len(window)), threshold=StandardDeviationThreshold())
    m.fit(pd.Series(reference, name="x"))
    return float(m.calculate(pd.Series(window, name="x")))


def main():
    query = json.load(sys.stdin)
    out = {"cases": [], "cbpe": []}
    for case in query["cases"]:
        r, w = np.asarray(case["reference"]), np.asarray(case["window"])
        edges = np.unique(np.quantile(r, np.arange(1, case["bins"]) / case["bins"]))
        edges = edges[edges > r.min()]
        exact = stats.ks_2samp(r, w, method="exact")
        asymp = stats.ks_2samp(r, w, method="asymp")
        en = np.sqrt(len(r) * len(w) / (len(r) + len(w)))
        weight = 1 - min(len(r), len(w)) / max(len(r), len(w))
        out["cases"].append({
            "ks": float(exact.statistic),
            "ks_p_exact": float(exact.pvalue),
            "ks_p_asymp": float(asymp.pvalue),
            "corrected_p": float(stats.kstwobign.sf((en + weight * (0.12 + 0.11 / en)) * exact.statistic)),
            "wasserstein": float(stats.wasserstein_distance(r, w)),
            "edges": edges.tolist(),
            "psi": psi(r, w, edges),
            "nannyml_ks": nannyml_method(KolmogorovSmirnovStatistic, r, w),
            "nannyml_wasserstein": nannyml_method(WassersteinDistance, r, w),
        })
    for case in query["cbpe"]:
        p = np.asarray(case["p"])
        y_pred = (p >= case["threshold"]).astype(int)
        out["cbpe"].append({
            "accuracy": float(estimate_accuracy(pd.Series(y_pred), pd.Series(p))),
            "roc_auc": float(estimate_roc_auc(p, p)),
        })
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
