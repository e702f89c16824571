"""The best ROC AUC of age, sex and size given two class models, computed with SciPy.

Reads JSON on stdin: {"ranges": [n, ...], "benign": CLASS, "malignant": CLASS}, where CLASS is
{"age": SHAPE, "log_size": SHAPE, "male": p} and SHAPE is {"centre", "sd", "lo", "hi"}.
Writes {"d2": [...], "auc": a, "auc_each": [age, sex, size]}.

d2(n) by scipy.integrate.quad; each shape as scipy.stats.truncnorm; the likelihood ratio's AUC
by the Mann-Whitney sum over a grid (age 0.1 y, log size 800 cells), ties counted half. An
independent implementation of renal_synth::implied (different grid, different code).
"""
import json
import sys

import numpy as np
from scipy import integrate, stats


def d2(n):
    f = lambda x: 1 - stats.norm.cdf(x) ** n - (1 - stats.norm.cdf(x)) ** n
    return integrate.quad(f, -12, 12, limit=400)[0]


def masses(shape, grid):
    a = (shape["lo"] - shape["centre"]) / shape["sd"]
    b = (shape["hi"] - shape["centre"]) / shape["sd"]
    p = stats.truncnorm.pdf(grid, a, b, loc=shape["centre"], scale=shape["sd"])
    return p / p.sum()


def lr_auc(pb, pm):
    keep = (pb > 0) | (pm > 0)
    pb, pm = pb[keep], pm[keep]
    with np.errstate(divide="ignore"):
        s = np.log(pm) - np.log(pb)
    order = np.argsort(s, kind="stable")
    s, pb, pm = s[order], pb[order], pm[order]
    _, first = np.unique(s, return_index=True)
    gb, gm = np.add.reduceat(pb, first), np.add.reduceat(pm, first)
    below = np.cumsum(gb) - gb
    return float((gm * (below + 0.5 * gb)).sum())


q = json.load(sys.stdin)
b, m = q["benign"], q["malignant"]
lo = min(b["age"]["lo"], m["age"]["lo"])
hi = max(b["age"]["hi"], m["age"]["hi"])
ages = np.arange(lo, hi, 0.1) + 0.05
lo = min(b["log_size"]["lo"], m["log_size"]["lo"])
hi = max(b["log_size"]["hi"], m["log_size"]["hi"])
sizes = lo + (np.arange(800) + 0.5) * (hi - lo) / 800
cls = lambda c: (masses(c["age"], ages), masses(c["log_size"], sizes), np.array([1 - c["male"], c["male"]]))
ab, zb, sb = cls(b)
am, zm, sm = cls(m)
joint = lambda a, z, s: (a[:, None, None] * z[None, :, None] * s[None, None, :]).ravel()
json.dump(
    {
        "d2": [d2(n) for n in q["ranges"]],
        "auc": lr_auc(joint(ab, zb, sb), joint(am, zm, sm)),
        "auc_each": [lr_auc(ab, am), lr_auc(sb, sm), lr_auc(zb, zm)],
    },
    sys.stdout,
)
