"""Reference models used by the main job, the tests and the docs.

Each function returns a :class:`~nlme_bayes.Model` exactly as described in the reference it
reproduces, so that our posterior can be compared with the published/computed one.
"""

from __future__ import annotations

from .model import Model
from .priors import Prior
from .spec import Additive, Linear, Omega, Parameter, Power, Proportional
from .structural import OneCompartment

__all__ = ["theophylline_model", "pheno_model"]


def theophylline_model() -> Model:
    """One-compartment oral model of Theophylline, as in the Stan reference fit.

    ``C = Dose·ka/(V·(ka-k))·(exp(-k t) - exp(-ka t))``, ``k = CL/V``, dose in mg/kg
    (``theoph.csv``'s AMT). Log-normal random effects on ka, CL, V in one correlated block
    with an LKJ(2) prior; priors as in ``shared/reference/brms_theoph_stancode.stan``:
    ``log ka ~ N(0, 1)``, ``log CL ~ N(-3, 1)``, ``log V ~ N(-0.7, 1)``, omega SDs
    ``HalfNormal(1)``, additive error ``sigma ~ HalfStudentT(3, 2.5)``.

    Examples
    --------
    >>> from nlme_bayes.examples import theophylline_model
    >>> theophylline_model().parameter_names
    ('CL', 'V', 'ka')
    """
    return Model(
        name="theophylline_1cmt_oral",
        structure=OneCompartment(route="oral"),
        parameters=(
            Parameter("CL", typical=0.04, prior=Prior("LogNormal", mu=-3.0, sigma=1.0)),
            Parameter("V", typical=0.5, prior=Prior("LogNormal", mu=-0.7, sigma=1.0)),
            Parameter("ka", typical=1.5, prior=Prior("LogNormal", mu=0.0, sigma=1.0)),
        ),
        omega=Omega(blocks="block", lkj_eta=2.0, sd_prior=Prior("HalfNormal", sigma=1.0)),
        error=Additive(sigma=Prior("HalfStudentT", nu=3, sigma=2.5)),
    )


def pheno_model() -> Model:
    """The classic phenobarbital ("pheno") model of NONMEM's examples.

    ``CL = θ1·WT·exp(η1)``, ``V = θ2·WT·(1 + θ3·[APGAR<5])·exp(η2)``, one-compartment IV
    bolus, proportional error, diagonal Omega. Weak priors: ``θ1 ~ LogNormal(log 0.005, 2)``,
    ``θ2 ~ LogNormal(log 1, 2)``, ``θ3 ~ Normal(0, 1)`` truncated to ``θ3 > -1``,
    omega ``HalfNormal(1)``, ``sigma_prop ~ HalfNormal(0.5)``.

    Examples
    --------
    >>> from nlme_bayes.examples import pheno_model
    >>> pheno_model().covariate_names
    ('WT', 'APGAR_LT5')
    """
    import math

    return Model(
        name="pheno",
        structure=OneCompartment(route="iv"),
        parameters=(
            Parameter(
                "CL",
                typical=0.005,
                prior=Prior("LogNormal", mu=math.log(0.005), sigma=2.0),
                covariates=(Power("WT", reference=1.0, exponent=1.0),),
            ),
            Parameter(
                "V",
                typical=1.0,
                prior=Prior("LogNormal", mu=0.0, sigma=2.0),
                covariates=(
                    Power("WT", reference=1.0, exponent=1.0),
                    # V·(1 + θ3) must stay positive: θ3 > -1.
                    Linear(
                        "APGAR_LT5",
                        reference=0.0,
                        coefficient=Prior("TruncatedNormal", mu=0.0, sigma=1.0, lower=-1.0),
                    ),
                ),
            ),
        ),
        omega=Omega(blocks="diagonal", sd_prior=Prior("HalfNormal", sigma=1.0)),
        error=Proportional(sigma=Prior("HalfNormal", sigma=0.5)),
    )
