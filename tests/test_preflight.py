"""Specification errors are raised before anything is built or compiled (nlme_bayes.preflight).

Each case: what the user wrote, the SpecificationError (naming the parameter or covariate
and the fix) -- instead of a PyTensor shape error, a PyMC name clash, a NumPy conversion
error, or a silently wrong model.
"""

from __future__ import annotations

import numpy as np
import pytest

import nlme_bayes as nb
from nlme_bayes.builder import build
from nlme_bayes.errors import SpecificationError

P = nb.Parameter


@pytest.fixture(scope="module")
def data() -> nb.NonmemDataset:
    """Theophylline with a text covariate and two columns named like model variables."""
    rec = nb.datasets.theophylline().records.copy()
    rec["SEX"] = np.where(rec["ID"] % 2 == 0, "M", "F")
    rec["eta"] = 1.0
    rec["CL_pop"] = 1.0
    return nb.NonmemDataset.from_records(rec)


def model(cl: nb.Parameter | None = None, **kwargs) -> nb.Model:
    cl = cl or P("CL", 0.04)
    return nb.Model(structure=nb.OneCompartment(route="oral"),
                    parameters=[cl, P("V", 0.5), P("ka", 1.5)], **kwargs)  # fmt: skip


CASES = {
    "vector prior": (
        model(P("CL", 0.04, prior=nb.Prior("LogNormal", mu=[0, 1], sigma=1))),
        r"Parameter CL: prior Prior\('LogNormal'.*has vector parameter\(s\) mu; .*one number",
    ),
    "prior with mass on CL <= 0": (
        model(P("CL", 0.04, prior=nb.Prior("Normal", mu=0.04, sigma=1))),
        r"Parameter CL: its prior Prior\('Normal'.*puts mass on CL < 0, a log-normal .*"
        r"iiv='normal'",
    ),
    "logit parameter with a prior beyond (0, 1)": (
        model(P("CL", 0.04, iiv="logit", prior=nb.Prior("HalfNormal", sigma=1))),
        r"puts mass on CL outside \[0, 1\], a logit-normal parameter needs",
    ),
    "typical outside the prior's support": (
        model(P("CL", 0.04, prior=nb.Prior("Uniform", lower=1, upper=2))),
        r"Parameter CL: typical=0.04 is outside the support of its prior",
    ),
    "invalid prior argument": (
        model(P("CL", 0.04, prior=nb.Prior("LogNormal", mu=0, sigma=-1))),
        r"prior of CL: invalid prior .*outside their domain",
    ),
    "unknown prior argument": (
        model(P("CL", 0.04, prior=nb.Prior("LogNormal", mu=0, sd=1))),
        r"pymc.LogNormal has no parameter sd; its parameters are mu, sigma, tau",
    ),
    "vector omega prior": (
        model(P("CL", 0.04, omega_prior=nb.Prior("HalfNormal", sigma=[1, 2]))),
        r"Parameter CL: omega_prior .* has vector parameter\(s\) sigma",
    ),
    "vector residual-error prior": (
        model(error=nb.Additive(sigma=nb.Prior("HalfNormal", sigma=[1.0, 2.0]))),
        r"Additive.sigma .* has vector parameter\(s\) sigma",
    ),
    "Power on a text covariate": (
        model(P("CL", 0.04, covariates=(nb.Power("SEX", reference=70),))),
        r"Power\('SEX'\) needs numbers, but SEX holds text \(values 'F', 'M'\); use "
        r"Categorical\('SEX'",
    ),
    "the same covariate twice": (
        model(
            P(
                "CL",
                0.04,
                covariates=(nb.Power("WT", reference=70), nb.Exponential("WT", reference=70)),
            )
        ),  # fmt: skip
        r"Parameter CL: covariate 'WT' is given twice",
    ),
    "covariate named like a model variable (eta)": (
        model(P("CL", 0.04, covariates=(nb.Exponential("eta", reference=1),))),
        r"covariate 'eta' has the name of a model variable; rename the column",
    ),
    "covariate named like a model variable (CL_pop)": (
        model(P("CL", 0.04, covariates=(nb.Exponential("CL_pop", reference=1),))),
        r"covariate 'CL_pop' has the name of a model variable",
    ),
    "error models keyed by text": (
        model(error={"plasma": nb.Additive()}),
        r"error=\{\.\.\.\} is keyed by DVID, an integer; got 'plasma'",
    ),
    "covariate not in the data": (
        model(P("CL", 0.04, covariates=(nb.Power("WTKG", reference=70),))),
        r"covariate\(s\) WTKG not in the data. Available covariates: .*WT",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_specification_error_before_building(case: str, data, monkeypatch) -> None:
    spec, match = CASES[case]
    import pymc as pm

    def no_model(*args, **kwargs):  # nothing may be built, let alone compiled
        raise AssertionError("a PyMC model was created before the specification was checked")

    monkeypatch.setattr(pm, "Model", no_model)
    with pytest.raises(SpecificationError, match=match):
        build(spec, data)


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: model(P("KA", 1.5)), r"unknown parameter\(s\) KA.*Its parameters are"),
        (
            lambda: model(omega=nb.Omega(blocks=(("CL", "Q"),))).omega.resolve(("CL", "V", "ka")),
            r"Omega: Q in the blocks have no random effect \(or do not exist\)",
        ),  # fmt: skip
        (lambda: model().with_parameter(P("Q", 1.0)), r"no parameter 'Q'; parameters are"),
        (lambda: nb.Omega(lkj_eta=0), r"lkj_eta must be > 0"),
        (lambda: P("CL", -1.0), r"a log-normal parameter needs typical > 0"),
        (lambda: model(error="additive"), r"error must be one of Additive"),
    ],
)
def test_specification_errors_at_construction(make, match) -> None:
    with pytest.raises(SpecificationError, match=match):
        make()


def test_a_valid_model_passes_quickly(data) -> None:
    from nlme_bayes.examples import theophylline_model
    from nlme_bayes.preflight import check_specification

    check_specification(theophylline_model(), data)  # no error; cached prior checks


@pytest.mark.parametrize(
    "prior",
    [
        nb.Prior("HalfNormal", sigma=1.0),
        nb.Prior("Uniform", lower=0.0, upper=1.0),
        nb.Prior("Gamma", alpha=2.0, beta=50.0),
        nb.Prior("LogNormal", mu=-3.0, sigma=1.0),
        nb.Prior("TruncatedNormal", mu=0.04, sigma=1.0, lower=0.0),
    ],
)
def test_priors_on_the_positive_half_line_are_accepted(prior, data) -> None:
    from nlme_bayes.preflight import check_specification

    check_specification(model(P("CL", 0.04, prior=prior)), data)  # 0 itself is allowed
