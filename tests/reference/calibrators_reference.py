"""scikit-learn and SciPy as the reference for renal-stats' isotonic and temperature calibrators.

Reads JSON on stdin: {"scores": [...], "labels": [0/1 ...], "query": [...]}. Writes
{"isotonic": [...], "temperature": T}: scikit-learn's IsotonicRegression(out_of_bounds="clip"),
the calibrator of CalibratedClassifierCV(method="isotonic"), fitted on (scores, labels) and
evaluated at the query scores; and the temperature T minimising the cross-entropy of
sigmoid(score / T), by scipy.optimize.minimize_scalar over s = 1 / T (bounded, xatol 1e-12).
"""
import json
import sys

import numpy as np
from scipy.optimize import minimize_scalar
from sklearn.isotonic import IsotonicRegression

q = json.load(sys.stdin)
x = np.asarray(q["scores"], dtype=float)
y = np.asarray(q["labels"], dtype=float)
iso = IsotonicRegression(out_of_bounds="clip").fit(x, y)


def loss(s):
    z = s * x
    return float(np.sum(y * np.logaddexp(0, -z) + (1 - y) * np.logaddexp(0, z)))


s = minimize_scalar(loss, bounds=(1e-6, 1e3), method="bounded", options={"xatol": 1e-12}).x
json.dump({"isotonic": iso.predict(np.asarray(q["query"], dtype=float)).tolist(), "temperature": 1.0 / s}, sys.stdout)
