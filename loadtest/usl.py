"""The Universal Scalability Law (Gunther): X(N) = λN / (1 + σ(N−1) + κN(N−1)).

λ is the throughput of one unit (worker or replica), σ the share of work that is
serialized (contention), κ the cost of keeping units coherent (crosstalk). Fitted by
non-negative least squares (scipy.optimize.curve_fit with bounds) to every measured
point, repeats included. With points at fewer than three distinct N the model is
under-determined: κ is then fixed at 0 and said so.
"""
import math
import warnings

import numpy as np
from scipy.optimize import curve_fit


def usl(n, lam, sigma, kappa):
    n = np.asarray(n, dtype=float)
    return lam * n / (1 + sigma * (n - 1) + kappa * n * (n - 1))


def fit(points):
    """points: [(N, X)] -> dict(lam, sigma, kappa, kappa_fixed, peak_n, r2, n_distinct)."""
    ns = np.array([p[0] for p in points], dtype=float)
    xs = np.array([p[1] for p in points], dtype=float)
    distinct = sorted(set(ns))
    lam0 = float(np.median(xs[ns == distinct[0]])) / distinct[0]
    if len(distinct) < 2:
        return {"lam": lam0, "sigma": float("nan"), "kappa": float("nan"), "kappa_fixed": True,
                "peak_n": float("nan"), "r2": float("nan"), "n_distinct": len(distinct)}
    warnings.simplefilter("ignore")  # two points: an exact fit has no covariance to report
    if len(distinct) < 3:
        (lam, sigma), _ = curve_fit(lambda n, lam, sigma: usl(n, lam, sigma, 0.0), ns, xs,
                                    p0=[lam0, 0.1], bounds=([0, 0], [np.inf, np.inf]))
        kappa, fixed = 0.0, True
    else:
        (lam, sigma, kappa), _ = curve_fit(usl, ns, xs, p0=[lam0, 0.05, 0.001],
                                           bounds=([0, 0, 0], [np.inf, np.inf, np.inf]))
        fixed = False
    pred = usl(ns, lam, sigma, kappa)
    ss_res = float(np.sum((xs - pred) ** 2))
    ss_tot = float(np.sum((xs - xs.mean()) ** 2))
    r2 = 1 - ss_res / ss_tot if ss_tot > 0 else float("nan")
    peak = math.sqrt((1 - sigma) / kappa) if kappa > 0 and sigma < 1 else float("inf")
    return {"lam": float(lam), "sigma": float(sigma), "kappa": float(kappa), "kappa_fixed": fixed,
            "peak_n": peak, "r2": r2, "n_distinct": len(distinct)}


def describe(f, unit):
    if f["n_distinct"] < 2:
        return f"one N measured: λ = {f['lam']:,.0f} requests/s per {unit}; no scaling can be fitted."
    s = (f"λ = {f['lam']:,.0f} requests/s per {unit}, σ = {f['sigma']:.3f}, "
         f"κ = {f['kappa']:.4f}{' (fixed: fewer than 3 distinct N)' if f['kappa_fixed'] else ''}")
    if f["sigma"] >= 1:
        s += "; σ ≥ 1: adding units lowers throughput from N = 1 on"
    elif not f["kappa_fixed"] and f["kappa"] > 0 and f["peak_n"] < 1000:
        s += f"; throughput would peak near N = {f['peak_n']:.1f}"
    if not math.isnan(f["r2"]):
        s += f"; R² = {f['r2']:.3f}"
    return s
