"""Evidently's data-drift preset and NannyML's univariate drift on the same reference and
analysis data as `renal bench monitor`, timed, with each feature's verdict.

Usage: drift_bench.py [--window-only] [--evidently-limit-s S] REFERENCE.parquet
ANALYSIS.parquet [WINDOW.parquet]  (one column per feature)
Writes JSON: per tool its wall time (data loading excluded) and per feature its statistic and
drift verdict; with WINDOW (a monitoring window: a few rows), the KS preset and NannyML timed
on it too, against the same reference, with their per-feature results. `--window-only` skips
the whole analysis set (Evidently's presets run for more than half an hour on 10,000 rows x
3,087 columns); `--evidently-limit-s` stops Evidently's window run after S seconds (recorded
as timed out). Runs in the drift venv (scripts/python-env.sh).

- Evidently: DataDriftPreset, every column with the two-sample KS test (`ks`, drift when
  P < 0.05), and, timed apart, the preset's own choice of test per column (for numerical
  columns over 1,000 rows: the normed Wasserstein distance, drift above 0.1).
- NannyML: UnivariateDriftCalculator with the Kolmogorov-Smirnov statistic and the Wasserstein
  distance over one chunk (the whole analysis set), fitted on the reference; the fit (which
  keeps the reference and computes its chunks' statistics) is timed apart from the calculation,
  as renal-monitor's references are built apart from its comparisons.
"""
import json
import signal
import sys
import time
import warnings

import pandas as pd

warnings.filterwarnings("ignore")


def evidently_run(reference, analysis, stattest):
    from evidently import Report
    from evidently.presets import DataDriftPreset

    preset = DataDriftPreset(method=stattest, threshold=0.05) if stattest else DataDriftPreset()
    started = time.perf_counter()
    snapshot = Report([preset]).run(current_data=analysis, reference_data=reference)
    seconds = time.perf_counter() - started
    verdicts, values = {}, {}
    for metric in snapshot.dict()["metrics"]:
        config = metric.get("config", {})
        column = config.get("column")
        if column is None or "value" not in metric:
            continue
        value = float(metric["value"])
        threshold = config.get("threshold", 0.05)
        method = str(config.get("method", ""))
        values[column] = value
        # P values drift below the threshold; distances above it.
        is_p_value = "p_value" in metric.get("metric_name", "").lower() or method.lower() in ("ks", "k-s p_value")
        verdicts[column] = value < threshold if is_p_value else value >= threshold
    return seconds, values, verdicts


def nannyml_run(reference, analysis):
    import nannyml as nml

    calc = nml.UnivariateDriftCalculator(
        column_names=list(reference.columns),
        continuous_methods=["kolmogorov_smirnov", "wasserstein"],
        chunk_size=len(analysis),
    )
    started = time.perf_counter()
    calc.fit(reference)
    fit_seconds = time.perf_counter() - started
    started = time.perf_counter()
    result = calc.calculate(analysis).filter(period="analysis").to_df()
    seconds = time.perf_counter() - started
    ks, wasserstein = {}, {}
    for column in reference.columns:
        ks[column] = float(result[(column, "kolmogorov_smirnov", "value")].iloc[-1])
        wasserstein[column] = float(result[(column, "wasserstein", "value")].iloc[-1])
    return fit_seconds, seconds, ks, wasserstein


class TimedOut(Exception):
    pass


def _alarm(signum, frame):
    raise TimedOut()


def main():
    args = sys.argv[1:]
    window_only = "--window-only" in args
    limit_s = 0
    if "--evidently-limit-s" in args:
        k = args.index("--evidently-limit-s")
        limit_s = int(args[k + 1])
        del args[k : k + 2]
    args = [a for a in args if a != "--window-only"]
    reference = pd.read_parquet(args[0])
    out = {"rows": len(reference), "features": reference.shape[1]}
    if not window_only:
        analysis = pd.read_parquet(args[1])
        seconds, values, verdicts = evidently_run(reference, analysis, "ks")
        out["evidently_ks"] = {"seconds": seconds, "p_value": values, "drift": verdicts}
        seconds, values, verdicts = evidently_run(reference, analysis, None)
        out["evidently_default"] = {"seconds": seconds, "value": values, "drift": verdicts}
        fit_seconds, seconds, ks, wasserstein = nannyml_run(reference, analysis)
        out["nannyml"] = {"fit_seconds": fit_seconds, "seconds": seconds, "ks": ks, "wasserstein": wasserstein}
    if len(args) > 2:
        window = pd.read_parquet(args[2])
        fit_seconds, seconds, ks, wasserstein = nannyml_run(reference, window)
        out["window_nannyml"] = {"fit_seconds": fit_seconds, "seconds": seconds, "ks": ks, "wasserstein": wasserstein}
        # NannyML estimates both statistics from 10,000 histogram bins for references of
        # 10,000 rows and more; SciPy's exact values and its KS test's verdicts (the test
        # Evidently's KS preset calls), untimed, for the agreement.
        from scipy import stats

        tests = {c: stats.ks_2samp(reference[c], window[c]) for c in reference.columns}
        out["window_scipy"] = {
            "ks": {c: float(t.statistic) for c, t in tests.items()},
            "drift": {c: bool(t.pvalue < 0.05) for c, t in tests.items()},
            "wasserstein": {c: float(stats.wasserstein_distance(reference[c], window[c])) for c in reference.columns},
        }
        # Evidently last, within the time limit (its preset on 3,087 columns runs for tens of
        # minutes even on a window of 50 rows).
        signal.signal(signal.SIGALRM, _alarm)
        signal.alarm(limit_s)
        try:
            seconds, values, verdicts = evidently_run(reference, window, "ks")
            out["window_evidently_ks"] = {"seconds": seconds, "rows": len(window), "p_value": values, "drift": verdicts}
        except TimedOut:
            out["window_evidently_ks"] = {"timed_out_after_s": limit_s}
        finally:
            signal.alarm(0)
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
