"""Structural models: PyTensor in (individual parameters), concentrations out.

:mod:`~nlme_bayes.structural.closed_form` holds the analytical one-, two- and
three-compartment models; every model maps a mapping of individual parameters
(shape ``(n_subjects,)``) and an :class:`~nlme_bayes.events_types.EventSchedule`
to the central concentration at each observation.
"""

from .closed_form import ROUTES, OneCompartment, ThreeCompartment, TwoCompartment, macro_constants

__all__ = ["ROUTES", "OneCompartment", "TwoCompartment", "ThreeCompartment", "macro_constants"]
