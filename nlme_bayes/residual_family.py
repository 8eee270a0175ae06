"""The residual distribution of one observation: normal or Student-t, on the DV or log scale.

Every error model (:class:`~nlme_bayes.spec.Additive`, ``Proportional``, ``Combined``,
``LogAdditive``) gives each observation a location ``m`` (``IPRED``, or ``log IPRED`` for
``LogAdditive``), a scale ``s`` (:func:`nlme_bayes.simulation.residual_sd`) and, with
``nu=``, degrees of freedom ``nu``. The standardised residual ``(y - m) / s`` is standard
normal, or Student-t with ``nu`` degrees of freedom. This module holds the family's
log-density, log-CDF and random draws, in PyTensor (the builder's likelihood, censoring) and
in NumPy (simulation, forecasting, marginal likelihoods), so both sides compute the same
numbers.

``nu`` is ``None`` (every observation normal) or an array over observations in which
``inf`` marks the normal ones (several outputs, only some Student-t).

Examples
--------
>>> import numpy as np
>>> from scipy import stats
>>> y, m, s = np.array([1.0, 4.0]), np.array([0.0, 0.0]), np.array([1.0, 2.0])
>>> np.allclose(logpdf_numpy(y, m, s, np.array([3.0, 3.0])), stats.t(3).logpdf(y / s) - np.log(s))
True
>>> np.allclose(logpdf_numpy(y, m, s, None), stats.norm.logpdf(y, m, s))
True
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = [
    "is_residual_parameter",
    "logpdf",
    "logcdf",
    "logpdf_numpy",
    "logcdf_numpy",
    "standard_draws",
]

_LOG_SQRT_2PI = 0.5 * np.log(2 * np.pi)


def is_residual_parameter(name: Any) -> bool:
    """Whether a posterior variable is a residual-error parameter (``sigma_*``, ``nu*``).

    Examples
    --------
    >>> [is_residual_parameter(n) for n in ("sigma_add", "nu", "nu_DVID2", "CL_pop")]
    [True, True, True, False]
    """
    name = str(name)
    return name.startswith("sigma_") or name == "nu" or name.startswith("nu_DVID")


def _split(nu: Any) -> tuple[Any, Any]:
    """PyTensor: (which observations are Student-t, a finite stand-in nu for the others)."""
    import pytensor.tensor as pt

    nu = pt.as_tensor_variable(nu)
    is_t = pt.isfinite(nu)
    return is_t, pt.where(is_t, nu, 1.0)


def logpdf(y: Any, m: Any, s: Any, nu: Any = None) -> Any:
    """Elementwise log-density (PyTensor) of ``y`` with location ``m``, scale ``s``.

    Examples
    --------
    >>> import numpy as np
    >>> from scipy import stats
    >>> out = logpdf(np.array([2.0]), np.array([0.0]), np.array([1.0]), np.array([4.0])).eval()
    >>> np.allclose(out, stats.t(4).logpdf(2.0))
    True
    """
    import pytensor.tensor as pt

    z = (y - m) / s
    normal = -0.5 * z**2 - pt.log(s) - _LOG_SQRT_2PI
    if nu is None:
        return normal
    is_t, v = _split(nu)
    student = (
        pt.gammaln(0.5 * (v + 1.0))
        - pt.gammaln(0.5 * v)
        - 0.5 * pt.log(v * np.pi)
        - pt.log(s)
        - 0.5 * (v + 1.0) * pt.log1p(z**2 / v)
    )
    return pt.where(is_t, student, normal)


def logcdf(x: Any, m: Any, s: Any, nu: Any = None) -> Any:
    """Elementwise ``log P(Y <= x)`` (PyTensor), for censored observations.

    Examples
    --------
    >>> import numpy as np
    >>> from scipy import stats
    >>> out = logcdf(np.array([-3.0, 1.0]), np.zeros(2), np.ones(2), np.array([4.0, 4.0])).eval()
    >>> np.allclose(out, stats.t(4).logcdf([-3.0, 1.0]))
    True
    """
    import pytensor.tensor as pt
    from pymc.distributions.dist_math import normal_lcdf

    normal = normal_lcdf(m, s, x)
    if nu is None:
        return normal
    is_t, v = _split(nu)
    z = (x - m) / s
    # P(|T| > |z|) / 2 = I_{v / (v + z^2)}(v / 2, 1 / 2) / 2 (regularised incomplete beta)
    tail = 0.5 * pt.betainc(0.5 * v, 0.5, v / (v + z**2))
    student = pt.where(z < 0, pt.log(tail), pt.log1p(-tail))
    return pt.where(is_t, student, normal)


def logpdf_numpy(y: Any, m: Any, s: Any, nu: Any = None) -> np.ndarray:
    """NumPy counterpart of :func:`logpdf` (broadcasting).

    Examples
    --------
    >>> logpdf_numpy(np.array([0.0]), np.array([0.0]), np.array([1.0])).round(4)
    array([-0.9189])
    """
    from scipy.special import gammaln

    with np.errstate(divide="ignore", invalid="ignore"):
        z = (np.asarray(y, dtype=float) - m) / s
        normal = -0.5 * z**2 - np.log(s) - _LOG_SQRT_2PI
        if nu is None:
            return normal
        nu = np.asarray(nu, dtype=float)
        v = np.where(np.isfinite(nu), nu, 1.0)
        student = (
            gammaln(0.5 * (v + 1.0))
            - gammaln(0.5 * v)
            - 0.5 * np.log(v * np.pi)
            - np.log(s)
            - 0.5 * (v + 1.0) * np.log1p(z**2 / v)
        )
        return np.where(np.isfinite(nu), student, normal)


def logcdf_numpy(x: Any, m: Any, s: Any, nu: Any = None) -> np.ndarray:
    """NumPy counterpart of :func:`logcdf`.

    Examples
    --------
    >>> float(np.exp(logcdf_numpy(0.0, 0.0, 1.0, np.array(3.0))))
    0.5
    """
    from scipy import stats
    from scipy.special import log_ndtr

    with np.errstate(divide="ignore", invalid="ignore"):
        z = (np.asarray(x, dtype=float) - m) / s
        normal = log_ndtr(z)
        if nu is None:
            return normal
        nu = np.asarray(nu, dtype=float)
        v = np.where(np.isfinite(nu), nu, 1.0)
        return np.where(np.isfinite(nu), stats.t.logcdf(z, v), normal)


def standard_draws(rng: np.random.Generator, shape: tuple[int, ...], nu: Any = None) -> np.ndarray:
    """Standardised residuals of ``shape``: standard normal, or Student-t where ``nu`` is finite.

    Examples
    --------
    >>> rng = np.random.default_rng(1)
    >>> e = standard_draws(rng, (200_000,), np.array(5.0))
    >>> bool(abs(np.var(e) - 5 / 3) < 0.05)  # t(5): variance nu / (nu - 2)
    True
    """
    eps = rng.standard_normal(shape)
    if nu is None:
        return eps
    nu = np.broadcast_to(np.asarray(nu, dtype=float), shape)
    finite = np.isfinite(nu)
    if finite.any():
        eps = np.where(finite, rng.standard_t(np.where(finite, nu, 1.0)), eps)
    return eps
