"""Recovery of a Michaelis-Menten ODE model from data simulated with known truth.

Run on demand (minutes; not part of the default test suite)::

    NLME_ODE_DRAWS=1000 .venv/bin/python benchmarks/validate_ode_recovery.py

40 subjects over four dose levels (10 to 1000 mg, twice, 24 h apart), so that peak
concentrations run from ~0.1 Km (linear regime) to ~10 Km (saturated); the data are
simulated by SciPy (LSODA, rtol 1e-10), independently of our solver.  Typical-value
starting points are *not* the truth (priors are centred on them).

Tolerance: each population quantity must lie within ``3 * sqrt(sd^2 + mcse^2)`` of
the truth (sd: posterior SD; mcse: Monte Carlo standard error of the mean), i.e. a
three-sigma band of the posterior, widened by the Monte Carlo error; with 7
quantities the chance that a correct sampler fails by bad luck is ~2 %.  The run
must converge with no divergences at default settings.
"""

from __future__ import annotations

import os

import arviz as az
import numpy as np

import nlme_bayes as nb
from nlme_bayes.datasets.simulated import michaelis_menten_study
from nlme_bayes.structural import ode_templates

QUANTITIES = {
    "Vmax_pop": "Vmax",
    "Km_pop": "Km",
    "V_pop": "V",
    "ka_pop": "ka",
    "sigma_prop": "sigma_prop",
}


def mm_model() -> nb.Model:
    """The MM model as a user would write it (starting values away from the truth)."""
    return nb.Model(
        structure=ode_templates.load("mm_oral"),
        parameters=[
            # Non-centred (the default). Tried and worse here: centred etas with a low-rank
            # mass matrix (4 x 500 draws): one chain stuck, R-hat 2.4, E-BFMI 0.004.
            nb.Parameter("Vmax", 15.0),
            nb.Parameter("Km", 3.0, iiv=None),
            nb.Parameter("V", 25.0),
            nb.Parameter("ka", 1.5),
        ],
        omega=nb.Omega(blocks="diagonal"),
        error=nb.Proportional(),
        name="mm_oral",
    )


def run_recovery(n_subjects: int = 40, *, draws: int, tune: int, chains: int, seed: int = 7):
    data, truth = michaelis_menten_study(n_subjects, seed=seed)
    fit = mm_model().fit(
        data,
        draws=draws,
        tune=tune,
        chains=chains,
        random_seed=seed,
        progressbar=False,
        sampler="nutpie",
    )
    post = fit.posterior
    rows = {}
    for var, key in QUANTITIES.items():
        x = post[var]
        sd = float(x.std())
        mcse = float(az.mcse(x.to_dataset(), method="mean")[var])
        rows[var] = (float(x.mean()), truth[key], sd, mcse)
    omega = post["omega"]
    for name in ("Vmax", "V", "ka"):
        x = omega.sel(param=name)
        ds = x.to_dataset(name="w")
        rows[f"omega[{name}]"] = (
            float(x.mean()),
            truth[f"omega_{name}"],
            float(x.std()),
            float(az.mcse(ds, method="mean")["w"]),
        )
    return fit, rows


def test_michaelis_menten_recovery_40_subjects():
    import time

    draws = int(os.environ.get("NLME_ODE_DRAWS", 1000))
    t0 = time.time()
    fit, rows = run_recovery(40, draws=draws, tune=draws, chains=4)
    print(f"fit took {time.time() - t0:.0f} s; load average {os.getloadavg()}")
    for name, (mean, true, sd, mcse) in rows.items():
        print(
            f"{name:14s} mean {mean:9.4g} truth {true:7.4g} sd {sd:8.3g} mcse {mcse:8.3g} "
            f"z {(mean - true) / np.hypot(sd, mcse):+.2f}"
        )
    print(fit.check_convergence())
    divergences = int(fit.results["sample_stats"]["diverging"].sum())
    assert divergences == 0
    rhat = az.rhat(fit.posterior[["Vmax_pop", "Km_pop", "V_pop", "ka_pop", "sigma_prop"]])
    assert max(float(rhat[v]) for v in rhat.data_vars) < 1.02
    for name, (mean, true, sd, mcse) in rows.items():
        tol = 3.0 * np.hypot(sd, mcse)
        assert abs(mean - true) <= tol, f"{name}: {mean:.4g} vs truth {true} (tol {tol:.3g})"


if __name__ == "__main__":
    test_michaelis_menten_recovery_40_subjects()
    print("recovery: all quantities within tolerance, no divergences")
