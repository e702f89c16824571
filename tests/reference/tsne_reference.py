#!/usr/bin/env python3
"""scikit-learn's exact t-SNE as the independent reference for renal_stats::tsne.

Reads one JSON object on stdin: {"x": rows, "perplexity": p, "map": our final 2-D points,
"probe": 2-D points to evaluate the gradient at}. Prints sklearn's joint affinities "P" (full
n x n matrix), its KL divergence and gradient at "probe" ("probe_kl", "probe_grad", rows of
two), its KL divergence of "map" ("map_kl"), the KL divergence its own TSNE(method="exact",
init="pca") reaches on the same rows ("sklearn_kl"), and the trustworthiness (5 neighbours) of
both maps ("map_trust", "sklearn_trust").
"""
import json
import sys

import numpy as np
from scipy.spatial.distance import squareform
from sklearn.manifold import TSNE, trustworthiness
from sklearn.manifold._t_sne import _joint_probabilities, _kl_divergence
from sklearn.metrics import pairwise_distances


def main():
    q = json.load(sys.stdin)
    x = np.asarray(q["x"], dtype=float)
    n = x.shape[0]
    perplexity = q["perplexity"]
    distances = pairwise_distances(x, metric="euclidean", squared=True)
    p = _joint_probabilities(distances, perplexity, 0)
    probe = np.asarray(q["probe"], dtype=float)
    probe_kl, probe_grad = _kl_divergence(probe.ravel(), p, 1, n, 2)
    ours = np.asarray(q["map"], dtype=float)
    map_kl, _ = _kl_divergence(ours.ravel(), p, 1, n, 2)
    theirs = TSNE(n_components=2, perplexity=perplexity, method="exact", init="pca", random_state=0)
    embedded = theirs.fit_transform(x)
    print(json.dumps({
        "P": squareform(p).tolist(),
        "probe_kl": float(probe_kl),
        "probe_grad": probe_grad.reshape(n, 2).tolist(),
        "map_kl": float(map_kl),
        "sklearn_kl": float(theirs.kl_divergence_),
        "map_trust": float(trustworthiness(x, ours, n_neighbors=5)),
        "sklearn_trust": float(trustworthiness(x, embedded, n_neighbors=5)),
    }))


if __name__ == "__main__":
    main()
