"""The exception and warning hierarchy of nlme_bayes.

Every error the package raises on purpose derives from :class:`NLMEError`, so
``except nlme_bayes.NLMEError`` catches them all.  The concrete classes also
derive from :class:`ValueError` where the cause is a bad value, so code that
already catches ``ValueError`` keeps working.
"""

from __future__ import annotations


class NLMEError(Exception):
    """Base class of every error raised by nlme_bayes."""


class DatasetError(NLMEError, ValueError):
    """A dataset is malformed: the message names column, row and subject ID.

    ``violations`` holds every problem found (validation reports all at once),
    one human-readable line each.
    """

    def __init__(self, message: str, violations: list[str] | None = None) -> None:
        super().__init__(message)
        self.violations: list[str] = list(violations) if violations else [message]


class SpecificationError(NLMEError, ValueError):
    """A model specification is invalid or does not fit the data."""


class SamplingError(NLMEError, RuntimeError):
    """The sampler could not start or failed (e.g. no finite initial point)."""


class NLMEWarning(UserWarning):
    """Base class of nlme_bayes warnings."""


class DatasetWarning(NLMEWarning):
    """Something in the data is legal but probably not what was meant."""


class ConvergenceWarning(NLMEWarning):
    """The sampler's diagnostics indicate the posterior may not be trustworthy."""
