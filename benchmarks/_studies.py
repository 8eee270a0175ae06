"""Simulated studies with known truth for the benchmarks, and the models fitted to them.

The concentrations are computed here with NumPy (closed forms written out independently of
``nlme_bayes.structural``), so a fit that recovers the truth is also a check of the package.

- :func:`one_cmt_study`: a Theophylline-like design (single oral dose per kg, 11 samples over
  24 h) for any number of subjects -- the scaling study's data; truth = the Stan reference
  posterior means of Theophylline; additive error.
- :func:`two_cmt_study`: two-compartment oral, 7 doses every 12 h, rich sampling after the
  first and the last dose plus troughs; 100 subjects; proportional error.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

import nlme_bayes as nb

#: Theophylline (Stan reference posterior means, shared/reference/README.md)
ONE_CMT_TRUTH = {
    "CL": float(np.exp(-3.219)),
    "V": float(np.exp(-0.779)),
    "ka": float(np.exp(0.443)),
    "omega": (0.293, 0.146, 0.790),  # CL, V, ka
    "corr_CL_V": 0.62,
    "sigma_add": 0.70,
}
ONE_CMT_TIMES = (0.25, 0.5, 1.0, 2.0, 3.5, 5.0, 7.0, 9.0, 12.0, 24.0)

TWO_CMT_TRUTH = {
    "CL": 5.0,
    "V": 40.0,
    "Q": 8.0,
    "V2": 80.0,
    "ka": 1.2,
    "omega": (0.3, 0.25, 0.3, 0.4),  # CL, V, V2, ka
    "corr_CL_V": 0.4,
    "sigma_prop": 0.12,
}
TWO_CMT_DOSE, TWO_CMT_II, TWO_CMT_N_DOSES = 100.0, 12.0, 7
TWO_CMT_TIMES = (
    0.5,
    1.0,
    2.0,
    4.0,
    8.0,
    12.0,
    24.0,
    48.0,
    72.0,
    72.5,
    73.0,
    74.0,
    76.0,
    80.0,
    84.0,
    96.0,
)


def _correlated_eta(
    rng: np.random.Generator, n: int, omega: tuple[float, ...], corr01: float
) -> np.ndarray:
    k = len(omega)
    c = np.eye(k)
    c[0, 1] = c[1, 0] = corr01
    cov = np.outer(omega, omega) * c
    return rng.multivariate_normal(np.zeros(k), cov, size=n)


def one_cmt_conc(dose: float, cl: float, v: float, ka: float, t: np.ndarray) -> np.ndarray:
    k = cl / v
    return dose * ka / (v * (ka - k)) * (np.exp(-k * t) - np.exp(-ka * t))


def one_cmt_study(n: int, seed: int = 1) -> tuple[Any, dict[str, Any]]:
    """``n`` Theophylline-like subjects (dose 3.1-5.9 mg/kg at t = 0, 10 samples)."""
    tr = ONE_CMT_TRUTH
    rng = np.random.default_rng(seed)
    eta = _correlated_eta(rng, n, tr["omega"], tr["corr_CL_V"])
    cl = tr["CL"] * np.exp(eta[:, 0])
    v = tr["V"] * np.exp(eta[:, 1])
    ka = tr["ka"] * np.exp(eta[:, 2])
    dose = rng.uniform(3.1, 5.9, n)
    times = np.array(ONE_CMT_TIMES)
    rows = []
    for i in range(n):
        rows.append(dict(ID=i + 1, TIME=0.0, AMT=dose[i], DV=0.0, EVID=1, CMT=1))
        c = one_cmt_conc(dose[i], cl[i], v[i], ka[i], times)
        dv = c + tr["sigma_add"] * rng.standard_normal(len(times))
        rows += [
            dict(ID=i + 1, TIME=t, AMT=0.0, DV=y, EVID=0, CMT=2)
            for t, y in zip(times, dv, strict=True)
        ]
    truth = dict(tr, individual={"CL": cl, "V": v, "ka": ka})
    return nb.read_nonmem(pd.DataFrame(rows)), truth


def two_cmt_conc(
    dose: float, cl: float, v: float, q: float, v2: float, ka: float, t: np.ndarray
) -> np.ndarray:
    """Unit-dose tri-exponential of the two-compartment oral model, times ``dose``."""
    k10, k12, k21 = cl / v, q / v, q / v2
    s = k10 + k12 + k21
    disc = np.sqrt(s * s - 4 * k10 * k21)
    a, b = 0.5 * (s + disc), 0.5 * (s - disc)
    ca = ka / v * (k21 - a) / ((ka - a) * (b - a))
    cb = ka / v * (k21 - b) / ((ka - b) * (a - b))
    ck = ka / v * (k21 - ka) / ((a - ka) * (b - ka))
    tt = np.maximum(t, 0.0)
    out = dose * (ca * np.exp(-a * tt) + cb * np.exp(-b * tt) + ck * np.exp(-ka * tt))
    return np.where(t > 0, out, 0.0)


def two_cmt_study(n: int = 100, seed: int = 2) -> tuple[Any, dict[str, Any]]:
    """``n`` subjects, 100 mg every 12 h (7 doses, ADDL=6), 16 samples over 96 h."""
    tr = TWO_CMT_TRUTH
    rng = np.random.default_rng(seed)
    eta = _correlated_eta(rng, n, tr["omega"], tr["corr_CL_V"])
    cl = tr["CL"] * np.exp(eta[:, 0])
    v = tr["V"] * np.exp(eta[:, 1])
    v2 = tr["V2"] * np.exp(eta[:, 2])
    ka = tr["ka"] * np.exp(eta[:, 3])
    times = np.array(TWO_CMT_TIMES)
    dose_times = TWO_CMT_II * np.arange(TWO_CMT_N_DOSES)
    rows = []
    for i in range(n):
        rows.append(
            dict(
                ID=i + 1,
                TIME=0.0,
                AMT=TWO_CMT_DOSE,
                DV=0.0,
                EVID=1,
                CMT=1,
                II=TWO_CMT_II,
                ADDL=TWO_CMT_N_DOSES - 1,
            )
        )
        c = sum(
            two_cmt_conc(TWO_CMT_DOSE, cl[i], v[i], tr["Q"], v2[i], ka[i], times - td)
            for td in dose_times
        )
        dv = c * (1.0 + tr["sigma_prop"] * rng.standard_normal(len(times)))
        rows += [
            dict(ID=i + 1, TIME=t, AMT=0.0, DV=y, EVID=0, CMT=2, II=0.0, ADDL=0)
            for t, y in zip(times, dv, strict=True)
        ]
    truth = dict(tr, individual={"CL": cl, "V": v, "V2": v2, "ka": ka})
    return nb.read_nonmem(pd.DataFrame(rows)), truth


def two_cmt_model() -> Any:
    """The model fitted to :func:`two_cmt_study`: default priors (log-normal around rough
    guesses, not the truth), one LKJ block on CL, V, V2, ka; Q without IIV."""
    return nb.Model(
        name="two_cmt_oral_md",
        structure=nb.TwoCompartment(route="oral"),
        parameters=(
            nb.Parameter("CL", 4.0),
            nb.Parameter("V", 50.0),
            nb.Parameter("Q", 10.0, iiv=None),
            nb.Parameter("V2", 60.0),
            nb.Parameter("ka", 1.0),
        ),
        error=nb.Proportional(),
    )


def mm_model(structure: Any) -> Any:
    """The Michaelis-Menten model of issue 4 with default priors and a diagonal Omega.

    Diagonal, as in the recovery study (``validate_ode_recovery.py``): with a full Omega on 20
    subjects, 4 x 300 draws left the chains apart along the Vmax-Km ridge (R-hat 1.7).
    """
    return nb.Model(
        name="mm_oral",
        structure=structure,
        parameters=(
            nb.Parameter("Vmax", 20.0),
            nb.Parameter("Km", 2.0, iiv=None),
            nb.Parameter("V", 30.0),
            nb.Parameter("ka", 1.0),
        ),
        omega=nb.Omega(blocks="diagonal"),
        error=nb.Proportional(),
    )


def stan_priors(
    model: Any, pop: tuple[str, ...], iiv: tuple[str, ...], data: Any
) -> dict[str, Any]:
    """Our model's priors, read from the specification, as the Stan programs' data.

    Fails loudly if a prior is of a family the Stan programs do not implement, so the two
    systems cannot silently disagree about the priors.
    """
    out: dict[str, Any] = {}
    mu, sd = [], []
    for p in pop:
        pr = model.parameter(p).effective_prior
        if pr.dist != "LogNormal":
            raise ValueError(f"{p}: prior {pr} is not LogNormal")
        mu.append(float(pr.kwargs.get("mu", 0.0)))
        sd.append(float(pr.kwargs["sigma"]))
    out["mu_pop"], out["sd_pop"] = mu, sd
    scales = []
    for n in iiv:
        pr = model.parameter(n).omega_prior or model.omega.sd_prior
        if pr.dist != "HalfNormal":
            raise ValueError(f"omega {n}: prior {pr} is not HalfNormal")
        scales.append(float(pr.kwargs["sigma"]))
    out["omega_scale"] = scales
    blocks = model.omega.resolve(model.iiv_names)
    if len(blocks) != 1 and any(len(b) > 1 for b in blocks):
        raise ValueError("the Stan programs have one LKJ block over all random effects, or none")
    out["lkj_eta"] = float(model.omega.lkj_eta)
    if len(blocks) != 1 or len(model.iiv_names) == 1:  # diagonal: only mm_oral_ode.stan
        out["full_omega"] = 0
    err = model.error
    if isinstance(err, nb.Additive):
        pr = err.sigma
        if pr is None:
            raise ValueError("additive error: give the sigma prior explicitly")
        if pr.dist != "HalfStudentT":
            raise ValueError(f"sigma: prior {pr} is not HalfStudentT")
        out["sigma_nu"] = float(pr.kwargs["nu"])
        out["sigma_scale"] = float(pr.kwargs["sigma"])
    elif isinstance(err, nb.Proportional):
        pr = err.sigma or nb.Prior("HalfNormal", sigma=0.5)  # builder.py's default
        if pr.dist != "HalfNormal":
            raise ValueError(f"sigma: prior {pr} is not HalfNormal")
        out["sigma_scale"] = float(pr.kwargs["sigma"])
    else:
        raise ValueError(f"error model {err} not implemented in the Stan programs")
    return out
