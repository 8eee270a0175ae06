"""Structural models: PyTensor in (individual parameters), concentrations out.

:mod:`~nlme_bayes.structural.closed_form` holds the analytical one-, two- and
three-compartment models; every model maps a mapping of individual parameters
(shape ``(n_subjects,)``) and an :class:`~nlme_bayes.events_types.EventSchedule`
to the central concentration at each observation.

:mod:`~nlme_bayes.structural.ode` holds user-defined ODE models (integrated by
:mod:`~nlme_bayes.structural.rosenbrock` through the event timeline of
:mod:`nlme_bayes.events_ode`) and :mod:`~nlme_bayes.structural.ode_templates`
ready-made ones (Michaelis-Menten, transit, turnover, TMDD-QSS, SIR...).
"""

from . import ode_templates
from .closed_form import ROUTES, OneCompartment, ThreeCompartment, TwoCompartment, macro_constants
from .ode import ODEModel

__all__ = [
    "ROUTES",
    "OneCompartment",
    "TwoCompartment",
    "ThreeCompartment",
    "macro_constants",
    "ODEModel",
    "ode_templates",
]
