"""nlme_bayes: fully Bayesian nonlinear mixed-effects (population PK/PD) models on PyMC.

Data flows one way::

    read_nonmem() -> NonmemDataset -> events -> Model.build() -> pm.Model
                  -> Model.fit() (NUTS) -> Fit (ArviZ DataTree) -> summary / plots / save

Examples
--------
>>> import nlme_bayes as nb
>>> data = nb.datasets.theophylline()
>>> model = nb.Model(
...     structure=nb.OneCompartment(route="oral"),
...     parameters=[nb.Parameter("CL", 0.04), nb.Parameter("V", 0.5), nb.Parameter("ka", 1.5)],
...     error=nb.Additive(),
... )
>>> fit = model.fit(data, draws=500, tune=500, chains=2, random_seed=1)  # doctest: +SKIP
>>> print(fit.report())  # doctest: +SKIP
"""

from __future__ import annotations

__version__ = "0.1.0"

# Free functions over fits, by topic: nb.diagnostics.convergence_report(fit), nb.vpc.vpc(fit), ...
from . import (
    comparison,
    datasets,
    diagnostics,
    dosing,
    estimation,
    forecast,
    marginal,
    regimen,
    residuals,
    selection,
    shrinkage,
    simulation,
    templates,
    vpc,
)
from .data import NonmemDataset, read_nonmem
from .dosing import Target
from .errors import (
    ConvergenceWarning,
    DatasetError,
    DatasetWarning,
    NLMEError,
    SamplingError,
    SpecificationError,
)
from .io import load
from .model import Model
from .priors import Prior
from .regimen import Regimen
from .results import Fit
from .spec import (
    BLQ,
    Additive,
    Categorical,
    Combined,
    Exponential,
    Linear,
    LogAdditive,
    Occasions,
    Omega,
    Parameter,
    Power,
    Proportional,
)
from .structural import ODEModel, OneCompartment, ThreeCompartment, TwoCompartment, ode_templates
from .structural.algebraic import Algebraic

__all__ = [
    "__version__",
    "datasets",
    "comparison",
    "dosing",
    "forecast",
    "regimen",
    "Regimen",
    "Target",
    "diagnostics",
    "estimation",
    "marginal",
    "residuals",
    "selection",
    "shrinkage",
    "simulation",
    "templates",
    "vpc",
    "read_nonmem",
    "NonmemDataset",
    "Model",
    "Parameter",
    "Prior",
    "Omega",
    "Power",
    "Exponential",
    "Linear",
    "Categorical",
    "Additive",
    "Proportional",
    "Combined",
    "LogAdditive",
    "Occasions",
    "BLQ",
    "OneCompartment",
    "TwoCompartment",
    "ThreeCompartment",
    "Algebraic",
    "ODEModel",
    "ode_templates",
    "Fit",
    "load",
    "NLMEError",
    "DatasetError",
    "SpecificationError",
    "SamplingError",
    "DatasetWarning",
    "ConvergenceWarning",
]
