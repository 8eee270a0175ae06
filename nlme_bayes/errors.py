"""The exception and warning hierarchy of nlme_bayes.

Every error the package raises on purpose derives from :class:`NLMEError`, so
``except nlme_bayes.NLMEError`` catches them all.  The concrete classes also
derive from :class:`ValueError` where the cause is a bad value, so code that
already catches ``ValueError`` keeps working.
"""

from __future__ import annotations


class NLMEError(Exception):
    """Base class of every error raised by nlme_bayes.

    Examples
    --------
    >>> import nlme_bayes as nb
    >>> try:
    ...     nb.Parameter("CL")  # neither a typical value nor a prior
    ... except nb.NLMEError as err:
    ...     print(type(err).__name__)
    SpecificationError
    """


class DatasetError(NLMEError, ValueError):
    """A dataset is malformed: the message names column, row and subject ID.

    ``violations`` holds every problem found (validation reports all at once),
    one human-readable line each.

    Examples
    --------
    >>> import pandas as pd
    >>> import nlme_bayes as nb
    >>> bad = pd.DataFrame({"ID": [1, 1], "TIME": [1.0, 0.0], "DV": [2.0, 3.0]})
    >>> try:
    ...     nb.read_nonmem(bad)
    ... except nb.DatasetError as err:
    ...     print(len(err.violations), err.violations[0].split(" (")[0])
    1 TIME: decreases within a subject
    """

    def __init__(self, message: str, violations: list[str] | None = None) -> None:
        super().__init__(message)
        self.violations: list[str] = list(violations) if violations else [message]


class SpecificationError(NLMEError, ValueError):
    """A model specification is invalid or does not fit the data.

    Examples
    --------
    >>> import nlme_bayes as nb
    >>> try:
    ...     nb.Omega(blocks="full")
    ... except nb.SpecificationError as err:
    ...     print(err)
    Omega: blocks='full' is not valid; choose 'block', 'diagonal' or ...
    """


class SamplingError(NLMEError, RuntimeError):
    """The sampler could not start or failed (e.g. no finite initial point).

    Examples
    --------
    >>> from nlme_bayes import NLMEError, SamplingError
    >>> issubclass(SamplingError, NLMEError) and issubclass(SamplingError, RuntimeError)
    True
    """


class NLMEWarning(UserWarning):
    """Base class of nlme_bayes warnings.

    Examples
    --------
    Silence every warning of the package (not recommended) with the standard library:

    >>> import warnings
    >>> from nlme_bayes.errors import NLMEWarning
    >>> warnings.simplefilter("ignore", NLMEWarning)
    >>> warnings.resetwarnings()
    """


class DatasetWarning(NLMEWarning):
    """Something in the data is legal but probably not what was meant.

    Examples
    --------
    A subject without any observation is kept, with a warning:

    >>> import warnings
    >>> import pandas as pd
    >>> import nlme_bayes as nb
    >>> df = pd.DataFrame({"ID": [1, 1, 2], "TIME": [0.0, 1.0, 0.0], "DV": [0.0, 2.0, 0.0],
    ...                    "AMT": [10.0, 0.0, 10.0]})
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     ds = nb.read_nonmem(df)
    >>> [w.category.__name__ for w in caught], ds.n_subjects
    (['DatasetWarning'], 2)
    """


class ConvergenceWarning(NLMEWarning):
    """The sampler's diagnostics indicate the posterior may not be trustworthy.

    ``Model.fit(..., check=True)`` (the default) warns with it; turn it into an error in a
    batch job that must not continue on an unconverged fit.

    Examples
    --------
    >>> import warnings
    >>> from nlme_bayes import ConvergenceWarning
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("error", ConvergenceWarning)
    ...     pass  # fit = model.fit(data, ...) here would raise instead of warn
    """


class InterruptedWarning(NLMEWarning):
    """Sampling was interrupted (Ctrl-C): the fit holds only the draws made so far.

    ``fit.interrupted`` is True and ``fit.info["interruption"]`` says how far each chain got;
    the convergence report lists the interruption as a problem.

    Examples
    --------
    >>> from nlme_bayes.errors import InterruptedWarning, NLMEWarning
    >>> issubclass(InterruptedWarning, NLMEWarning)
    True
    """


class StartWarning(NLMEWarning):
    """A chain found no jittered start with a finite log density and starts un-jittered.

    Examples
    --------
    >>> from nlme_bayes.errors import StartWarning, NLMEWarning
    >>> issubclass(StartWarning, NLMEWarning)
    True
    """
