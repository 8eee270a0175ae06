"""Priors as data: a distribution name and its parameters, turned into PyMC in the builder.

A :class:`Prior` is a frozen, hashable, JSON-serialisable description. It does not
import PyMC; :func:`nlme_bayes.builder` resolves it with :meth:`Prior.to_pymc`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from .errors import SpecificationError

__all__ = ["Prior"]


def _freeze(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    return value


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
        """The parameters as a plain dict."""
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
        if not (isinstance(cls, type) and issubclass(cls, pm.Distribution)):
            valid = sorted(
                n
                for n in dir(pm)
                if isinstance(getattr(pm, n), type)
                and issubclass(getattr(pm, n), pm.Distribution)
                and n[0].isupper()
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
            rv = cls.dist(**self.kwargs)
        except Exception as exc:  # noqa: BLE001 - re-raised as our own error with context
            raise SpecificationError(
                f"{where + ': ' if where else ''}invalid prior {self!r}: {exc}. "
                f"Give the parameters of pymc.{self.dist} by keyword."
            ) from None
        # Catch invalid parameter values (e.g. negative sigma) that PyMC only checks lazily.
        import numpy as np
        import pymc as pm

        try:
            logp = pm.logp(rv, pm.draw(rv, random_seed=0)).eval()
        except Exception as exc:  # noqa: BLE001
            raise SpecificationError(
                f"{where + ': ' if where else ''}invalid prior {self!r}: its parameters are "
                f"outside their domain ({exc})."
            ) from None
        if not np.all(np.isfinite(logp)):
            raise SpecificationError(
                f"{where + ': ' if where else ''}invalid prior {self!r}: its parameters are "
                "outside their domain (a scale must be > 0)."
            )

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
