"""The physical limit: a hand-written log density and gradient of the closed-form
one-compartment oral model (``nlme_bayes.examples.theophylline_model()`` on any data set),
in Numba (single thread) and in vectorised NumPy.

It computes *the same function as our compiled graph* -- same unconstrained parameter vector
(nutpie's order: ``CL_pop_log__, V_pop_log__, ka_pop_log__``, the packed Cholesky factor of
the LKJ covariance with log diagonal, ``z_eta`` (subject, param) row-major,
``sigma_add_log__``), same priors, Jacobians and normalising constants -- and
:func:`check_against` verifies value and gradient against PyMC's at random points.

Gradient: analytic for everything that grows with the data (likelihood, random effects);
complex-step differentiation (exact to rounding) for the 6 entries of the LKJ Cholesky
factor, whose prior is O(1) work.

Concentration: the direct Bateman form ``D ka/(V (ka-k)) (exp(-k t) - exp(-ka t))``; ours
uses a form that stays exact through ``ka == k`` (a few more operations per pair).
"""

from __future__ import annotations

import math
from typing import Any

import numba
import numpy as np
from scipy.special import gammaln

LOG2PI = math.log(2.0 * math.pi)


def lkj_norm(eta: float, n: int) -> float:
    """PyMC's LKJ normalising constant (``_lkj_normalizing_constant``)."""
    k = np.arange(1, n)
    return float(
        (n - 1) * gammaln(eta + 0.5 * (n - 1))
        - (0.5 * k * np.log(np.pi) + gammaln(eta + 0.5 * (n - 1 - k))).sum()
    )


@numba.njit(cache=False)
def _lkj_part(u: Any, eta: float, scale: np.ndarray) -> Any:
    """LKJCholeskyCov log density of the packed (log-diagonal) factor u, incl. Jacobian."""
    n = 3
    L = np.zeros((n, n), dtype=u.dtype)
    k = 0
    jac = u[0] * 0.0
    for a in range(n):
        for b in range(a + 1):
            if a == b:
                L[a, b] = np.exp(u[k])
                jac += u[k]
            else:
                L[a, b] = u[k]
            k += 1
    out = jac
    for a in range(n):
        var = u[0] * 0.0
        for b in range(a + 1):
            var += L[a, b] * L[a, b]
        sd = np.sqrt(var)
        out += math.log(2.0) - 0.5 * LOG2PI - math.log(scale[a]) - var / (2.0 * scale[a] ** 2)
        cd = L[a, a] / sd
        out += (2.0 * eta - 3.0 + n - a) * np.log(cd)
        out += np.log(cd) - a * np.log(sd)
    return out


@numba.njit(cache=False)
def logp_dlogp_numba(
    x: np.ndarray,
    n_subj: int,
    pair_obs: np.ndarray,
    pair_subj: np.ndarray,
    pair_dose: np.ndarray,
    pair_dt: np.ndarray,
    dv: np.ndarray,
    mu_pop: np.ndarray,
    sd_pop: np.ndarray,
    omega_scale: np.ndarray,
    lkj_eta: float,
    lkj_c: float,
    nu: float,
    s_sigma: float,
) -> tuple[float, np.ndarray]:
    grad = np.zeros_like(x)
    lp = 0.0
    # population typical values (log scale, Normal incl. Jacobian)
    for a in range(3):
        d = (x[a] - mu_pop[a]) / sd_pop[a]
        lp += -0.5 * d * d - math.log(sd_pop[a]) - 0.5 * LOG2PI
        grad[a] = -d / sd_pop[a]
    # LKJ Cholesky covariance: value, and gradient by complex step
    u = x[3:9]
    lp += _lkj_part(u, lkj_eta, omega_scale) + lkj_c
    uc = u.astype(np.complex128)
    h = 1e-30
    for j in range(6):
        uc[j] += 1j * h
        grad[3 + j] = _lkj_part(uc, lkj_eta, omega_scale).imag / h
        uc[j] -= 1j * h
    L = np.zeros((3, 3))
    k = 0
    for a in range(3):
        for b in range(a + 1):
            L[a, b] = math.exp(u[k]) if a == b else u[k]
            k += 1
    # residual SD: HalfStudentT(nu, s) on log scale
    w = x[9 + 3 * n_subj]
    sig = math.exp(w)
    q = sig * sig / (s_sigma * s_sigma * nu)
    lp += (
        math.log(2.0)
        + math.lgamma(0.5 * (nu + 1.0))
        - math.lgamma(0.5 * nu)
        - 0.5 * math.log(nu * math.pi)
        - math.log(s_sigma)
        - 0.5 * (nu + 1.0) * math.log1p(q)
        + w
    )
    gw = -(nu + 1.0) * q / (1.0 + q) + 1.0
    # random effects: eta_i = L z_i, individual log parameters
    lth = np.empty((n_subj, 3))
    z0 = 9
    for i in range(n_subj):
        for a in range(3):
            zi = x[z0 + 3 * i + a]
            lp += -0.5 * zi * zi - 0.5 * LOG2PI
            grad[z0 + 3 * i + a] = -zi
        for a in range(3):
            e = 0.0
            for b in range(a + 1):
                e += L[a, b] * x[z0 + 3 * i + b]
            lth[i, a] = x[a] + e
    cl = np.exp(lth[:, 0])
    v = np.exp(lth[:, 1])
    ka = np.exp(lth[:, 2])
    # predictions by superposition over dose-observation pairs
    n_obs = dv.shape[0]
    pred = np.zeros(n_obs)
    dcl = np.zeros(pair_obs.shape[0])
    dv_ = np.zeros(pair_obs.shape[0])
    dka = np.zeros(pair_obs.shape[0])
    for p in range(pair_obs.shape[0]):
        i = pair_subj[p]
        k_ = cl[i] / v[i]
        kai = ka[i]
        t = pair_dt[p]
        A = pair_dose[p] * kai / (v[i] * (kai - k_))
        e1 = math.exp(-k_ * t)
        e2 = math.exp(-kai * t)
        c = A * (e1 - e2)
        pred[pair_obs[p]] += c
        g_cl = k_ * (c / (kai - k_) - A * t * e1)
        dcl[p] = g_cl
        dv_[p] = -c - g_cl
        dka[p] = c - kai * c / (kai - k_) + kai * A * t * e2
    inv_s2 = 1.0 / (sig * sig)
    r = np.empty(n_obs)
    for j in range(n_obs):
        res = dv[j] - pred[j]
        lp += -0.5 * res * res * inv_s2 - w - 0.5 * LOG2PI
        r[j] = res * inv_s2
        gw += res * res * inv_s2 - 1.0
    grad[9 + 3 * n_subj] = gw
    g = np.zeros((n_subj, 3))
    for p in range(pair_obs.shape[0]):
        i = pair_subj[p]
        rr = r[pair_obs[p]]
        g[i, 0] += rr * dcl[p]
        g[i, 1] += rr * dv_[p]
        g[i, 2] += rr * dka[p]
    gL = np.zeros((3, 3))
    for i in range(n_subj):
        for a in range(3):
            grad[a] += g[i, a]
            for b in range(a + 1):
                grad[z0 + 3 * i + b] += L[a, b] * g[i, a]
                gL[a, b] += g[i, a] * x[z0 + 3 * i + b]
    k = 0
    for a in range(3):
        for b in range(a + 1):
            grad[3 + k] += gL[a, b] * (L[a, a] if a == b else 1.0)
            k += 1
    return lp, grad


def logp_dlogp_numpy(x: np.ndarray, d: dict[str, Any]) -> tuple[float, np.ndarray]:
    """The same, vectorised NumPy (the O(1) LKJ part through the Numba helper)."""
    n = d["n_subj"]
    mu, sd = d["mu_pop"], d["sd_pop"]
    grad = np.zeros_like(x)
    dd = (x[:3] - mu) / sd
    lp = float(np.sum(-0.5 * dd * dd - np.log(sd) - 0.5 * LOG2PI))
    grad[:3] = -dd / sd
    u = x[3:9]
    lp += float(_lkj_part(u, d["lkj_eta"], d["omega_scale"])) + d["lkj_c"]
    uc = u.astype(complex)
    for j in range(6):
        uc[j] += 1e-30j
        grad[3 + j] = _lkj_part(uc, d["lkj_eta"], d["omega_scale"]).imag / 1e-30
        uc[j] -= 1e-30j
    L = np.zeros((3, 3))
    L[np.tril_indices(3)] = u
    L[np.diag_indices(3)] = np.exp(np.diag(L))
    z = x[9 : 9 + 3 * n].reshape(n, 3)
    lp += float(np.sum(-0.5 * z * z)) - 0.5 * LOG2PI * z.size
    grad[9 : 9 + 3 * n] = -z.ravel()
    w = x[9 + 3 * n]
    sig = np.exp(w)
    nu, s = d["sigma_nu"], d["sigma_scale"]
    q = sig * sig / (s * s * nu)
    lp += (
        math.log(2.0)
        + math.lgamma(0.5 * (nu + 1))
        - math.lgamma(0.5 * nu)
        - 0.5 * math.log(nu * math.pi)
        - math.log(s)
        - 0.5 * (nu + 1) * math.log1p(q)
        + w
    )
    gw = -(nu + 1) * q / (1 + q) + 1.0
    lth = x[:3] + z @ L.T
    cl, v, ka = np.exp(lth).T
    ps, po, t = d["pair_subj"], d["pair_obs"], d["pair_dt"]
    k = (cl / v)[ps]
    kap = ka[ps]
    A = d["pair_dose"] * kap / (v[ps] * (kap - k))
    e1, e2 = np.exp(-k * t), np.exp(-kap * t)
    c = A * (e1 - e2)
    n_obs = len(d["dv"])
    pred = np.bincount(po, c, minlength=n_obs)
    g_cl = k * (c / (kap - k) - A * t * e1)
    g_v = -c - g_cl
    g_ka = c - kap * c / (kap - k) + kap * A * t * e2
    res = d["dv"] - pred
    lp += float(np.sum(-0.5 * res * res / sig**2) - n_obs * (w + 0.5 * LOG2PI))
    r = (res / sig**2)[po]
    gw += float(np.sum(res * res) / sig**2 - n_obs)
    grad[9 + 3 * n] = gw
    g = np.stack([np.bincount(ps, r * gg, minlength=n) for gg in (g_cl, g_v, g_ka)], axis=1)
    grad[:3] += g.sum(axis=0)
    grad[9 : 9 + 3 * n] += (g @ L).ravel()
    gL = np.tril(g.T @ z)
    gL[np.diag_indices(3)] *= np.diag(L)
    grad[3:9] += gL[np.tril_indices(3)]
    return lp, grad


def floor_data(built: Any, model: Any) -> dict[str, Any]:
    """Data and prior constants of ``theophylline_model()``-type models for the floor."""
    from _common import dosing_pairs
    from _studies import stan_priors

    obs = built.observations
    pr = stan_priors(model, ("CL", "V", "ka"), ("CL", "V", "ka"), built.data)
    pairs = dosing_pairs(built.data, obs)
    return {
        "n_subj": len(built.subject_ids),
        "pair_obs": pairs["pair_obs"] - 1,
        "pair_subj": pairs["pair_subj"] - 1,
        "pair_dose": pairs["pair_dose"],
        "pair_dt": pairs["pair_dt"],
        "dv": obs["DV"].to_numpy(float),
        "mu_pop": np.array(pr["mu_pop"]),
        "sd_pop": np.array(pr["sd_pop"]),
        "omega_scale": np.array(pr["omega_scale"]),
        "lkj_eta": pr["lkj_eta"],
        "lkj_c": lkj_norm(pr["lkj_eta"], 3),
        "sigma_nu": pr["sigma_nu"],
        "sigma_scale": pr["sigma_scale"],
    }


def numba_call(d: dict[str, Any]) -> Any:
    args = (
        d["n_subj"],
        d["pair_obs"],
        d["pair_subj"],
        d["pair_dose"],
        d["pair_dt"],
        d["dv"],
        d["mu_pop"],
        d["sd_pop"],
        d["omega_scale"],
        d["lkj_eta"],
        d["lkj_c"],
        d["sigma_nu"],
        d["sigma_scale"],
    )

    def f(x: np.ndarray) -> tuple[float, np.ndarray]:
        return logp_dlogp_numba(x, *args)

    return f, args


@numba.njit(cache=False)
def _loop(
    x: np.ndarray,
    reps: int,
    n_subj: int,
    pair_obs: np.ndarray,
    pair_subj: np.ndarray,
    pair_dose: np.ndarray,
    pair_dt: np.ndarray,
    dv: np.ndarray,
    mu_pop: np.ndarray,
    sd_pop: np.ndarray,
    omega_scale: np.ndarray,
    lkj_eta: float,
    lkj_c: float,
    nu: float,
    s_sigma: float,
) -> float:
    acc = 0.0
    for _ in range(reps):
        lp, g = logp_dlogp_numba(
            x,
            n_subj,
            pair_obs,
            pair_subj,
            pair_dose,
            pair_dt,
            dv,
            mu_pop,
            sd_pop,
            omega_scale,
            lkj_eta,
            lkj_c,
            nu,
            s_sigma,
        )
        acc += lp + g[0]
    return acc


def time_floor(d: dict[str, Any], x: np.ndarray, seconds: float = 2.0) -> dict[str, float]:
    """us per call: Numba (timed in a compiled loop: no Python overhead) and NumPy."""
    import time

    _, args = numba_call(d)
    _loop(x, 1, *args)  # compile
    reps = 1
    while True:
        t0 = time.perf_counter()
        _loop(x, reps, *args)
        el = time.perf_counter() - t0
        if el > seconds or reps > 10**7:
            break
        reps *= 4
    out = {"numba_us": 1e6 * el / reps}
    logp_dlogp_numpy(x, d)
    reps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        logp_dlogp_numpy(x, d)
        reps += 1
    out["numpy_us"] = 1e6 * (time.perf_counter() - t0) / reps
    return out


def check_against(
    compiled: Any, d: dict[str, Any], n_points: int = 3, seed: int = 0
) -> dict[str, float]:
    """Largest relative difference of value and gradient vs our compiled model."""
    import ctypes

    f, _ = numba_call(d)
    n = int(compiled._n_dim)
    names = [nm for nm, sl, _ in zip(*compiled.shape_info, strict=True) if sl.stop <= n][:6]
    expected = ["CL_pop_log__", "V_pop_log__", "ka_pop_log__"]
    if names[:3] != expected or not names[-1].startswith("sigma_add"):
        raise ValueError(f"unexpected parameter order {names}")
    rng = np.random.default_rng(seed)
    worst_v, worst_g = 0.0, 0.0
    dp = ctypes.POINTER(ctypes.c_double)
    for _ in range(n_points):
        x = rng.normal(0.0, 0.3, n)
        x[:3] += [-3.2, -0.7, 0.4]
        x[3:9] += [-1.2, 0.0, -1.8, 0.0, 0.0, -0.2]
        g = np.zeros(n)
        lp = np.zeros(())
        compiled.compiled_logp_func.ctypes(
            n,
            x.ctypes.data_as(dp),
            g.ctypes.data_as(dp),
            lp.ctypes.data_as(dp),
            compiled.user_data.ctypes.data_as(ctypes.c_void_p),
        )
        lp2, g2 = f(x)
        lp3, g3 = logp_dlogp_numpy(x, d)
        worst_v = max(
            worst_v, abs(lp2 - float(lp)) / abs(float(lp)), abs(lp3 - float(lp)) / abs(float(lp))
        )
        scale = np.max(np.abs(g))
        worst_g = max(worst_g, np.max(np.abs(g2 - g)) / scale, np.max(np.abs(g3 - g)) / scale)
    return {"max_rel_diff_logp": worst_v, "max_rel_diff_grad": worst_g}
