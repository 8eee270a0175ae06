"""Priors as data: a distribution name and its parameters, turned into PyMC in the builder.

A :class:`Prior` is a frozen, hashable, JSON-serialisable description. It does not
import PyMC; :func:`nlme_bayes.builder` resolves it with :meth:`Prior.to_pymc`.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Any

from .errors import SpecificationError

__all__ = ["Prior"]


def _freeze(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    return value


@functools.lru_cache(maxsize=512)
def _domain_problem(prior: Prior) -> str | None:
    """Why PyMC rejects ``prior``'s parameter values (None: it accepts them).

    Draws once and evaluates the log density there: PyMC checks values such as a negative
    ``sigma`` only lazily. Each check compiles a small PyTensor function (~0.1 s), and a
    build validates every prior, so the answer is kept per prior (priors are immutable).
    """
    import numpy as np
    import pymc as pm

    cls = prior.pymc_class()
    try:
        rv = cls.dist(**prior.kwargs)
    except Exception as exc:  # noqa: BLE001 - reported as our own error with context
        return f"{exc}. Give the parameters of pymc.{prior.dist} by keyword."
    try:
        logp = pm.logp(rv, pm.draw(rv, random_seed=0)).eval()
    except Exception as exc:  # noqa: BLE001
        return f"its parameters are outside their domain ({exc})."
    if not np.all(np.isfinite(logp)):
        return "its parameters are outside their domain (a scale must be > 0)."
    return None


def _is_distribution(cls: Any) -> bool:
    """A PyMC distribution class: a ``pm.Distribution`` subclass, or one of PyMC 6's
    factory classes (``LogitNormal``, ``ChiSquared``, ...) that only provide ``dist``."""
    import pymc as pm

    if not isinstance(cls, type):
        return False
    if issubclass(cls, pm.Distribution):
        return True
    return callable(getattr(cls, "dist", None)) and cls.__module__.startswith("pymc.distributions")


@dataclass(frozen=True)
class Prior:
    """A prior distribution, named as in PyMC, with keyword parameters.

    Parameters
    ----------
    dist : str
        Name of a PyMC distribution, e.g. ``"Normal"``, ``"LogNormal"``, ``"HalfNormal"``,
        ``"HalfStudentT"``, ``"Beta"``.  Case-sensitive, as in ``pymc``.
    **params
        The distribution's parameters, always by keyword (``sigma=`` for a scale:
        we never take variances).

    Examples
    --------
    >>> from nlme_bayes import Prior
    >>> p = Prior("LogNormal", mu=-3.2, sigma=1.0)
    >>> p
    Prior('LogNormal', mu=-3.2, sigma=1.0)
    >>> Prior.from_dict(p.to_dict()) == p
    True
    """

    dist: str
    params: tuple[tuple[str, Any], ...] = field(default=())

    def __init__(self, dist: str, /, **params: Any) -> None:
        if not isinstance(dist, str) or not dist:
            raise SpecificationError(
                f"Prior: the distribution must be a PyMC distribution name such as 'Normal', "
                f"got {dist!r}."
            )
        for key, value in params.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                if not math.isfinite(value):
                    raise SpecificationError(
                        f"Prior {dist}: parameter {key}={value!r} is not finite."
                    )
        object.__setattr__(self, "dist", dist)
        object.__setattr__(
            self, "params", tuple(sorted((k, _freeze(v)) for k, v in params.items()))
        )

    @property
    def kwargs(self) -> dict[str, Any]:
        """The parameters as a plain dict (sequences as lists), as PyMC takes them.

        Examples
        --------
        >>> Prior("LogNormal", sigma=1.0, mu=-3.2).kwargs
        {'mu': -3.2, 'sigma': 1.0}
        >>> Prior("Dirichlet", a=[1.0, 1.0, 1.0]).kwargs
        {'a': [1.0, 1.0, 1.0]}
        """
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.params}

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={v!r}" for k, v in self.params)
        return f"Prior({self.dist!r}{', ' if inner else ''}{inner})"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready representation.

        Examples
        --------
        >>> Prior("HalfNormal", sigma=0.5).to_dict()
        {'dist': 'HalfNormal', 'params': {'sigma': 0.5}}
        """
        return {"dist": self.dist, "params": self.kwargs}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Prior:
        """Inverse of :meth:`to_dict`.

        Examples
        --------
        >>> Prior.from_dict({"dist": "Normal", "params": {"mu": 0.75, "sigma": 0.25}})
        Prior('Normal', mu=0.75, sigma=0.25)
        """
        return cls(d["dist"], **d.get("params", {}))

    def pymc_class(self) -> Any:
        """The PyMC distribution class; raises :class:`SpecificationError` if unknown.

        Examples
        --------
        >>> Prior("LogNormal", mu=0.0, sigma=1.0).pymc_class().__name__
        'LogNormal'
        >>> Prior("Gaussian", mu=0.0).pymc_class()
        Traceback (most recent call last):
        ...
        nlme_bayes.errors.SpecificationError: Prior: unknown distribution 'Gaussian'. ...
        """
        import pymc as pm

        cls = getattr(pm, self.dist, None)
        if not _is_distribution(cls):
            valid = sorted(
                n for n in dir(pm) if n[0].isupper() and _is_distribution(getattr(pm, n))
            )
            raise SpecificationError(
                f"Prior: unknown distribution {self.dist!r}. Valid PyMC distributions include: "
                + ", ".join(valid)
            )
        return cls

    def validate(self, where: str = "") -> None:
        """Check that PyMC accepts these parameters, before any model is compiled.

        Examples
        --------
        >>> Prior("HalfNormal", sigma=1.0).validate()
        >>> Prior("HalfNormal", scale=1.0).validate(where="omega(CL)")
        Traceback (most recent call last):
        ...
        nlme_bayes.errors.SpecificationError: omega(CL): invalid prior ... has no parameter scale...
        """
        import inspect

        cls = self.pymc_class()
        sig = inspect.signature(cls.dist)
        valid = [
            n
            for n, prm in sig.parameters.items()
            if prm.kind not in (prm.VAR_POSITIONAL, prm.VAR_KEYWORD) and n != "cls"
        ]
        unknown = sorted(set(self.kwargs) - set(valid))
        if unknown:
            raise SpecificationError(
                f"{where + ': ' if where else ''}invalid prior {self!r}: pymc.{self.dist} has no "
                f"parameter {', '.join(unknown)}; its parameters are {', '.join(valid)}."
            )
        try:
            hash(self)
        except TypeError:  # parameter values that are arrays: checked, not remembered
            problem = _domain_problem.__wrapped__(self)
        else:
            problem = _domain_problem(self)
        if problem is not None:
            raise SpecificationError(f"{where + ': ' if where else ''}invalid prior {self!r}: "
                                     f"{problem}")  # fmt: skip

    # ------------------------------------------------------------------ pharmacometric terms
    @classmethod
    def typical(cls, value: float, cv: float, *, scale: str = "log") -> Prior:
        """Prior of a typical value from a literature estimate and its CV (in %).

        ``scale="log"`` (default, for positive parameters): ``LogNormal`` with median
        ``value`` and coefficient of variation ``cv`` %, i.e. ``mu = log(value)`` and
        ``sigma = sqrt(log(1 + (cv/100)**2))``. ``scale="normal"``: ``Normal(value,
        |value|*cv/100)``. ``scale="logit"`` (fractions, e.g. ``F``): ``LogitNormal`` with
        median ``value`` and ``sigma`` as for the log scale.

        Examples
        --------
        >>> p = Prior.typical(0.04, cv=30)
        >>> p
        Prior('LogNormal', mu=-3.21888, sigma=0.29356)
        >>> print(p.describe())
        LogNormal(mu=-3.21888, sigma=0.29356): median 0.04, CV 30 %, 95 % interval [0.0225, 0.0711]
        """
        _positive(cv, "cv")
        sigma = math.sqrt(math.log1p((cv / 100.0) ** 2))
        if scale == "log":
            _positive(value, "value")
            return cls("LogNormal", mu=_r(math.log(value)), sigma=_r(sigma))
        if scale == "normal":
            return cls("Normal", mu=float(value), sigma=_r(abs(value) * cv / 100.0 or cv / 100.0))
        if scale == "logit":
            if not 0 < value < 1:
                raise SpecificationError(
                    f"Prior.typical: a logit-scale value must be in (0, 1), got {value}."
                )
            return cls("LogitNormal", mu=_r(math.log(value / (1 - value))), sigma=_r(sigma))
        raise SpecificationError(
            f"Prior.typical: scale={scale!r} is not valid; choose 'log', 'logit' or 'normal'."
        )

    @classmethod
    def interval(cls, lower: float, upper: float, *, prob: float = 0.95) -> Prior:
        """``LogNormal`` whose central ``prob`` interval is ``[lower, upper]`` (both > 0).

        Examples
        --------
        >>> Prior.interval(1.0, 100.0).describe().split(":")[1].strip()
        'median 10, CV 172 %, 95 % interval [1, 100]'
        """
        from scipy.stats import norm

        _positive(lower, "lower")
        if not upper > lower:
            raise SpecificationError(
                f"Prior.interval: upper must exceed lower, got {lower}, {upper}."
            )
        if not 0 < prob < 1:
            raise SpecificationError(f"Prior.interval: prob must be in (0, 1), got {prob}.")
        z = float(norm.ppf(0.5 + prob / 2))
        mu = 0.5 * (math.log(lower) + math.log(upper))
        return cls("LogNormal", mu=_r(mu), sigma=_r((math.log(upper) - math.log(lower)) / (2 * z)))

    @classmethod
    def omega(cls, cv: float, *, uncertainty: float = 50.0) -> Prior:
        """Prior of the SD of a log-normal random effect from an expected IIV of ``cv`` %.

        ``LogNormal`` centred (median) on ``omega = sqrt(log(1 + (cv/100)**2))`` with a CV of
        ``uncertainty`` % about it (50 % puts 95 % of the mass within a factor ~2.5).

        Examples
        --------
        >>> print(Prior.omega(30).describe())
        LogNormal(mu=-1.22567, sigma=0.472381): median 0.294, CV 50 %, 95 % interval [0.116, 0.741]
        """
        _positive(cv, "cv")
        _positive(uncertainty, "uncertainty")
        om = math.sqrt(math.log1p((cv / 100.0) ** 2))
        sigma = math.sqrt(math.log1p((uncertainty / 100.0) ** 2))
        return cls("LogNormal", mu=_r(math.log(om)), sigma=_r(sigma))

    def describe(self, prob: float = 0.95) -> str:
        """This prior in plain terms: median, CV or SD, and the central ``prob`` interval.

        Examples
        --------
        >>> print(Prior("HalfNormal", sigma=1.0).describe())
        HalfNormal(sigma=1.0): median 0.674, 95 % interval [0.0313, 2.24]
        >>> print(Prior("HalfStudentT", nu=3, sigma=2.5).describe())
        HalfStudentT(nu=3, sigma=2.5): median 1.91, 95 % interval [0.085, 10.4]
        """
        import numpy as np
        from scipy import stats

        k = self.kwargs
        head = f"{self.dist}({', '.join(f'{a}={b!r}' for a, b in self.params)})"
        lo_p, hi_p = (1 - prob) / 2, (1 + prob) / 2
        label = f"{prob:.0%}".replace("%", " %")
        if self.dist == "LogNormal":
            mu, sigma = float(k.get("mu", 0.0)), float(k["sigma"])
            dist = stats.lognorm(s=sigma, scale=math.exp(mu))
            cv = 100 * math.sqrt(math.expm1(sigma**2))
            lo, hi = dist.ppf([lo_p, hi_p])
            interval = f"{label} interval [{_g(lo)}, {_g(hi)}]"
            return f"{head}: median {_g(dist.median())}, CV {cv:.0f} %, {interval}"
        if self.dist == "Normal":
            mu, sigma = float(k.get("mu", 0.0)), float(k["sigma"])
            lo, hi = stats.norm(mu, sigma).ppf([lo_p, hi_p])
            return f"{head}: mean {_g(mu)}, SD {_g(sigma)}, {label} interval [{_g(lo)}, {_g(hi)}]"
        if self.dist in ("HalfNormal", "HalfStudentT"):  # |X|: quantile q of |X| is X's (1+q)/2
            base = stats.norm() if self.dist == "HalfNormal" else stats.t(float(k["nu"]))
            sc = float(k.get("sigma", 1.0))
            lo, med, hi = (sc * base.ppf(0.5 + q / 2) for q in (lo_p, 0.5, hi_p))
            return f"{head}: median {_g(med)}, {label} interval [{_g(lo)}, {_g(hi)}]"
        # anything else: quantiles of draws
        import pymc as pm

        x = np.asarray(pm.draw(self.dist_pymc(), draws=20000, random_seed=0), dtype=float)
        lo, med, hi = np.quantile(x, [lo_p, 0.5, hi_p])
        return f"{head}: median {_g(med)}, {label} interval [{_g(lo)}, {_g(hi)}]"

    def to_pymc(self, name: str, **kwargs: Any) -> Any:
        """Create the PyMC random variable ``name`` (inside a model context).

        Examples
        --------
        >>> import pymc as pm
        >>> with pm.Model() as m:
        ...     cl = Prior("LogNormal", mu=-3.2, sigma=1.0).to_pymc("CL_pop")
        >>> m.free_RVs
        [CL_pop]
        """
        cls = self.pymc_class()
        return cls(name, **self.kwargs, **kwargs)

    def dist_pymc(self, **kwargs: Any) -> Any:
        """The unnamed ``.dist`` version (for ``sd_dist`` of LKJCholeskyCov).

        Examples
        --------
        >>> import pymc as pm
        >>> float(pm.draw(Prior("HalfNormal", sigma=1.0).dist_pymc(), random_seed=1)) > 0
        True
        """
        return self.pymc_class().dist(**self.kwargs, **kwargs)


def _positive(value: Any, what: str) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value <= 0:
        raise SpecificationError(f"Prior: {what} must be a positive number, got {value!r}.")


def _r(x: float) -> float:
    """Rounded to 6 significant digits: readable reprs, exact enough for a prior."""
    return float(f"{x:.6g}")


def _g(x: float) -> str:
    return f"{float(x):.3g}"
