#!/usr/bin/env python3
"""scikit-learn and SciPy as the independent reference for renal-stats' evaluation metrics.

Reads one JSON object on stdin:
  {"scores": [...], "labels": [0/1 ...], "probabilities": [...], "threshold": 0.5,
   "binomial": [[k, n, p], ...]}
and prints one JSON object with sklearn's ROC AUC, average precision, trapezoid PR AUC, F1 at
the threshold, Brier score, log loss and Platt (sigmoid) calibration parameters, and SciPy's two-sided
binomial test P values. With a "logistic" key ({"x": rows, "y": 0/1, "sample_weight": [...],
"C": c}) it also fits an L2 logistic regression (intercept unpenalised) to tight tolerance and
prints its "coef" and "intercept". With a "bagging" key ({"x": rows, "y": 0/1, "draws": one
list of row indices per tree, "query": rows}) it grows one DecisionTreeClassifier per draw and
prints the mean malignant probability over the trees for each query row ("probability") and the
node count of each tree ("nodes").
"""
import json
import sys

import numpy as np
from scipy.stats import binomtest
from sklearn.calibration import _sigmoid_calibration
from sklearn.linear_model import LogisticRegression
from sklearn.tree import DecisionTreeClassifier
from sklearn.metrics import (auc, average_precision_score, brier_score_loss, f1_score, log_loss,
                             precision_recall_curve, roc_auc_score)


def main():
    q = json.load(sys.stdin)
    scores = np.asarray(q["scores"], dtype=float)
    labels = np.asarray(q["labels"], dtype=int)
    probabilities = np.asarray(q["probabilities"], dtype=float)
    precision, recall, _ = precision_recall_curve(labels, scores)
    a, b = _sigmoid_calibration(scores, labels)
    out = {
        "roc_auc": roc_auc_score(labels, scores),
        "average_precision": average_precision_score(labels, scores),
        "pr_auc_trapezoid": auc(recall, precision),
        "f1": f1_score(labels, (probabilities >= q["threshold"]).astype(int)),
        "brier": brier_score_loss(labels, probabilities),
        "log_loss": log_loss(labels, probabilities),
        "platt": [float(a), float(b)],
        "binomial": [binomtest(k, n, p).pvalue for k, n, p in q["binomial"]],
    }
    if "logistic" in q:
        lq = q["logistic"]
        lr = LogisticRegression(C=lq["C"], tol=1e-12, max_iter=100000)
        lr.fit(np.asarray(lq["x"]), np.asarray(lq["y"]), sample_weight=np.asarray(lq["sample_weight"]))
        out["logistic"] = {"coef": lr.coef_[0].tolist(), "intercept": float(lr.intercept_[0])}
    if "bagging" in q:
        bq = q["bagging"]
        x, y, query = np.asarray(bq["x"]), np.asarray(bq["y"]), np.asarray(bq["query"])
        total, nodes = np.zeros(len(query)), []
        for draw in bq["draws"]:
            tree = DecisionTreeClassifier(random_state=0).fit(x[draw], y[draw])
            proba = tree.predict_proba(query)
            total += proba[:, 1] if len(tree.classes_) == 2 else np.full(len(query), float(tree.classes_[0]))
            nodes.append(int(tree.tree_.node_count))
        out["bagging"] = {"probability": (total / len(bq["draws"])).tolist(), "nodes": nodes}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
