"""Every model template: simulate -> fit -> recover, at small size.

Each template's example design (its ``[example]`` section) is simulated with the file's
typical values as the truth, then fitted from priors centred 1.5 times away from the truth
(``load(name, typical=1.5 * truth)``), so that recovery is the data's doing, not the prior's.
Small studies (8 subjects), 2 chains x 300 draws: this checks that every closed-form and
algebraic template builds, samples and is calibrated; ``benchmarks/validate_templates.py``
runs the full-size studies of all templates. The ODE templates (Michaelis-Menten, transit,
TMDD, turnover, SIR) are left to the benchmark: one small ODE fit costs ~2.5 CPU-minutes
(compilation of the integrator's scan dominates), more than this whole file. Their
simulation and specification are checked in ``test_templates.py``.
"""

from __future__ import annotations

import numpy as np
import pytest

from nlme_bayes import templates

N_SUBJECTS = 8


def _groups() -> list[tuple[str, ...]]:
    """Templates with identical models (bolus and infusion: the same closed form, the
    same values; only the example design differs) are fitted together, on one study that
    mixes their designs: one compilation instead of two."""
    groups: dict[tuple, list[str]] = {}
    for name in templates.available():
        t = templates.get(name)
        if t.spec["structure"]["type"] == "ODE":
            continue  # ~2.5 CPU-minutes per small ODE fit: benchmarks/validate_templates.py
        ex = t.spec["example"]
        key = (
            repr(t.model().replace(name="")),
            repr(t.typical_values),
            repr(ex.get("omega")),
            repr(ex["sigma"]),
        )
        groups.setdefault(key, []).append(name)
    return [tuple(g) for g in groups.values()]


GROUPS = _groups()


def _study(names: tuple[str, ...]):
    """Each template's design for its share of the subjects, IDs renumbered."""
    import pandas as pd

    import nlme_bayes as nb

    frames = []
    for k, name in enumerate(names):
        n = N_SUBJECTS // len(names)
        data = templates.get(name).example_data(n_subjects=n, random_seed=20241124 + k)
        frame = data.records.drop(columns="ROW")
        frame["ID"] = frame["ID"] + 1000 * k
        frames.append(frame)
    return nb.read_nonmem(pd.concat(frames, ignore_index=True))


@pytest.mark.slow
@pytest.mark.parametrize("names", GROUPS, ids=["+".join(g) for g in GROUPS])
def test_template_recovers_its_truth(names):
    """``|posterior mean - truth| <= 3 * sqrt(sd^2 + mcse^2)`` for each typical value and sigma.

    The posterior SD is the uncertainty left by 8 subjects; a calibrated posterior puts the
    truth within 3 SD with probability ~99.7 % per quantity, and the MCSE term covers the
    600 draws. Typical values of log-normal (and fixed-effect-only) parameters are compared on
    the log scale, where their posterior is close to Gaussian; ``iiv="normal"`` ones on the
    natural scale. The omegas are not checked here: 8 subjects cannot pin an SD down, and
    the full-size benchmark checks them.
    """
    import arviz as az
    import xarray as xr

    template = templates.get(names[0])
    name = "+".join(names)
    truth = template.typical_values
    data = _study(names)
    model = template.model(typical={k: 1.5 * v for k, v in truth.items()})
    fit = model.fit(
        data, draws=300, tune=300, chains=2, random_seed=7, sampler="nutpie",
        progressbar=False, check=False, store_predictions=False,
    )  # fmt: skip
    post = fit.posterior
    quantities, targets = {}, {}
    for p in model.parameters:
        draws = post[f"{p.name}_pop"]
        log = p.iiv != "normal"
        quantities[p.name] = np.log(draws) if log else draws
        targets[p.name] = np.log(truth[p.name]) if log else truth[p.name]
    for s, value in template.spec["example"]["sigma"].items():
        quantities[s], targets[s] = post[s], value
    ds = xr.Dataset({k: v.reset_coords(drop=True) for k, v in quantities.items()})
    mcse = az.mcse(ds, method="mean")
    lines = []
    for k, da in ds.data_vars.items():
        mean, sd = float(da.mean()), float(da.std())
        tol = 3 * np.sqrt(sd**2 + float(mcse[k]) ** 2)
        lines.append(f"{name} {k:8s} truth {targets[k]:+.3f} mean {mean:+.3f} tol {tol:.3f}")
    print("\n".join(lines))
    for line, (k, da) in zip(lines, ds.data_vars.items(), strict=True):
        tol = 3 * np.sqrt(float(da.std()) ** 2 + float(mcse[k]) ** 2)
        assert abs(float(da.mean()) - targets[k]) <= tol, line
