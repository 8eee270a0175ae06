"""Full-size validation of the real-world features: BLQ (M3 vs M1), IOV, covariate recovery.

The test suite runs the same simulate -> fit -> recover checks at small size
(``tests/test_blq.py``, ``tests/test_iov.py``, ``tests/test_covariates.py``); here each study
is larger, 4 chains x 1000 draws, and repeated over ``--reps`` data sets (seeds 1..reps), so
that the bias of M1 and the calibration of M3 are measured rather than seen once.

For each fit and quantity: posterior mean, SD, MCSE, the truth, and whether the truth lies in
``mean +- 3 sqrt(sd^2 + mcse^2)``; per study: divergences and max R-hat.

Usage::

    .venv/bin/python benchmarks/validate_real_world.py [--reps 3] [--draws 1000]
        [--studies blq iov allometry] [--out benchmarks/results]

Writes ``real_world.json`` and ``real_world.md`` into ``--out``. A measurement, not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))  # the studies' simulators

warnings.filterwarnings("ignore")


def _row(study, rep, method, name, draws, truth):
    import arviz as az

    x = draws.reset_coords(drop=True)
    mcse = float(az.mcse(x.to_dataset(name="q"), method="mean")["q"])
    mean, sd = float(x.mean()), float(x.std())
    return {
        "study": study, "rep": rep, "fit": method, "quantity": name, "truth": float(truth),
        "mean": mean, "sd": sd, "mcse": mcse,
        "z": (mean - truth) / np.hypot(sd, mcse),
        "covered": bool(abs(mean - truth) <= 3 * np.hypot(sd, mcse)),
    }  # fmt: skip


def _fit(model, data, draws, seed):
    t = time.perf_counter()
    fit = model.fit(data, draws=draws, tune=draws, chains=4, random_seed=seed,
                    progressbar=False, check=False, sampler="nutpie")  # fmt: skip
    rep = fit.check_convergence().figures
    return fit, {"seconds": time.perf_counter() - t, "divergences": int(rep["divergences"]),
                 "max_rhat": float(rep["max_rhat"])}  # fmt: skip


def blq(rep, draws):
    import test_blq as t

    import nlme_bayes as nb

    data = nb.read_nonmem(t.simulate_blq(n_subjects=60, seed=rep))
    rows, runs = [], []
    for method in ("M1", "M3", "M4"):
        model = nb.Model(
            structure=nb.OneCompartment(route="iv"),
            parameters=[nb.Parameter("CL", 1.0), nb.Parameter("V", 30.0)],
            omega=nb.Omega(blocks="diagonal"),
            error=nb.LogAdditive(),
            blq=nb.BLQ(method, lloq=t.LLOQ),
        )
        fit, info = _fit(model, data, draws, rep)
        post = fit.posterior
        rows += [
            _row("blq", rep, method, "log CL_pop", np.log(post["CL_pop"]), np.log(t.TRUTH["CL"])),
            _row("blq", rep, method, "log V_pop", np.log(post["V_pop"]), np.log(t.TRUTH["V"])),
            _row("blq", rep, method, "omega(CL)", post["omega"].sel(param="CL"), t.OMEGA["CL"]),
            _row("blq", rep, method, "sigma_log", post["sigma_log"], t.SIGMA_LOG),
        ]
        runs.append({"study": "blq", "rep": rep, "fit": method,
                     "blq_fraction": float(data.observations()["BLQ"].mean()), **info})  # fmt: skip
    return rows, runs


def iov(rep, draws):
    import test_iov as t

    import nlme_bayes as nb

    data = nb.read_nonmem(t.simulate_iov(n_subjects=60, seed=rep))
    model = nb.Model(
        structure=nb.OneCompartment(route="oral"),
        parameters=[
            nb.Parameter("CL", 3.0, iov=True),
            nb.Parameter("V", 40.0),
            nb.Parameter("ka", 1.0, iiv=None),
        ],  # fmt: skip
        omega=nb.Omega(blocks="diagonal"),
        error=nb.Proportional(),
        occasions=nb.Occasions(),
    )
    fit, info = _fit(model, data, draws, rep)
    post = fit.posterior
    rows = [
        _row("iov", rep, "IOV", "log CL_pop", np.log(post["CL_pop"]), np.log(t.TRUTH["CL"])),
        _row("iov", rep, "IOV", "omega(CL)", post["omega"].sel(param="CL"), t.OMEGA["CL"]),
        _row("iov", rep, "IOV", "omega(V)", post["omega"].sel(param="V"), t.OMEGA["V"]),
        _row(
            "iov", rep, "IOV", "omega_iov(CL)", post["omega_iov"].sel(param_iov="CL"), t.OMEGA_IOV
        ),  # fmt: skip
        _row("iov", rep, "IOV", "sigma_prop", post["sigma_prop"], t.SIGMA_PROP),
    ]
    return rows, [{"study": "iov", "rep": rep, "fit": "IOV", **info}]


def allometry(rep, draws):
    import test_covariates as t

    import nlme_bayes as nb

    data = nb.read_nonmem(t.simulate_allometric(n_subjects=100, seed=rep))
    model = nb.Model(
        structure=nb.OneCompartment(route="iv"),
        parameters=[
            nb.Parameter(
                "CL",
                2.0,
                covariates=(
                    nb.Power("WT", reference=70, exponent=nb.Prior("Normal", mu=0, sigma=1)),
                ),
            ),
            nb.Parameter(
                "V",
                20.0,
                covariates=(
                    nb.Power("WT", reference=70, exponent=nb.Prior("Normal", mu=0, sigma=1)),
                ),
            ),
        ],  # fmt: skip
        omega=nb.Omega(blocks="diagonal"),
        error=nb.Proportional(),
    )
    fit, info = _fit(model, data, draws, rep)
    post = fit.posterior
    rows = [
        _row("allometry", rep, "est. exponents", "CL exponent", post["CL_WT"], t.TRUTH["exponent"]),
        _row("allometry", rep, "est. exponents", "V exponent", post["V_WT"], 1.0),
        _row(
            "allometry",
            rep,
            "est. exponents",
            "log CL_pop",
            np.log(post["CL_pop"]),
            np.log(t.TRUTH["CL"]),
        ),  # fmt: skip
    ]
    return rows, [{"study": "allometry", "rep": rep, "fit": "est. exponents", **info}]


def _markdown(rows, runs):
    import pandas as pd

    df = pd.DataFrame(rows)
    agg = (
        df.groupby(["study", "fit", "quantity"], sort=False)
        .agg(truth=("truth", "first"), mean=("mean", "mean"), sd=("sd", "mean"),
             mean_z=("z", "mean"), covered=("covered", "mean"), reps=("rep", "nunique"))
        .reset_index()
    )  # fmt: skip
    r = pd.DataFrame(runs).groupby(["study", "fit"], sort=False).agg(
        seconds=("seconds", "mean"), divergences=("divergences", "sum"),
        max_rhat=("max_rhat", "max")).reset_index()  # fmt: skip
    lines = ["# Real-world features: full-size recovery", "",
             "Mean over replicate data sets of the posterior mean and SD; `mean_z` is the mean "
             "of (mean - truth)/sqrt(sd^2 + mcse^2); `covered`: fraction of replicates with the "
             "truth within 3 of those.", "", agg.to_markdown(index=False, floatfmt=".3g"), "",
             r.to_markdown(index=False, floatfmt=".3g"), ""]  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--draws", type=int, default=1000)
    ap.add_argument("--studies", nargs="+", default=["blq", "iov", "allometry"])
    ap.add_argument("--out", default=os.path.join(HERE, "results"))
    a = ap.parse_args()
    studies = {"blq": blq, "iov": iov, "allometry": allometry}
    rows, runs = [], []
    for name in a.studies:
        for rep in range(1, a.reps + 1):
            r, s = studies[name](rep, a.draws)
            rows += r
            runs += s
            print(name, rep, s, flush=True)
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "real_world.json"), "w") as f:
        json.dump({"rows": rows, "runs": runs, "draws": a.draws, "reps": a.reps}, f, indent=1)
    md = _markdown(rows, runs)
    with open(os.path.join(a.out, "real_world.md"), "w") as f:
        f.write(md)
    print(md)


if __name__ == "__main__":
    main()
