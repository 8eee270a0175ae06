"""Observations below the limit of quantification (BLQ): which, their LLOQ, their likelihood.

Which observations are censored, and at which LLOQ (:func:`censoring_info`)
    With a flag column (``BLQ`` or ``CENS``, or the one named by ``BLQ(flag=...)``): the
    observation records flagged 1 (0 = quantified; ``CENS = -1``, right-censoring, is not
    supported). Without a flag column: the observations with ``DV < LLOQ``. The LLOQ of a
    record is its value in the ``LLOQ`` column, or else the model's global
    ``BLQ(lloq=...)`` (``lloq="DV"``: the DV of each censored record is its LLOQ). The DV of
    a censored record is otherwise not used.
Likelihood of an observation with prediction ``f`` and residual SD ``s`` (:func:`logp`)
    Normal-family error models (Additive, Proportional, Combined), ``Phi`` the standard
    normal CDF (with Student-t errors, ``nu=``, the t CDF and density instead):

    ======  ================================================  ===================================
    method  censored (below its LLOQ ``L``)                   quantified (``y``)
    ======  ================================================  ===================================
    ``M3``  ``log Phi((L - f)/s)``                            ``log N(y; f, s)``
    ``M4``  ``log[Phi((L-f)/s) - Phi(-f/s)] - log Phi(f/s)``  ``log N(y; f, s) - log Phi(f/s)``
    ``M1``  0 (dropped)                                       ``log N(y; f, s)``
    ======  ================================================  ===================================

    ``LogAdditive`` error: the same on the log scale (``log L`` against ``log f``); DV is
    positive anyway, so M4 equals M3.
Data without a censoring choice
    Flagged observations with ``Model(blq=None)`` are an error: a censored value is never
    used as if it were measured.

References: Beal (2001) J Pharmacokinet Pharmacodyn 28:481; Ahn et al. (2008) J
Pharmacokinet Pharmacodyn 35:401.

Examples
--------
>>> import pandas as pd
>>> import nlme_bayes as nb
>>> ds = nb.read_nonmem(pd.DataFrame({"ID": [1, 1, 1], "TIME": [1.0, 2.0, 8.0],
...                                   "DV": [5.0, 2.0, 0.1], "BLQ": [0, 0, 1]}))
>>> obs = ds.observations()
>>> info = censoring_info(ds, nb.BLQ("M3", lloq=0.5), obs)
>>> info.censored.tolist(), info.lloq.tolist()
([False, False, True], [0.5, 0.5, 0.5])
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from .errors import DatasetError, SpecificationError
from .events import describe_rows

__all__ = [
    "CensoringInfo",
    "censoring_info",
    "flag_column",
    "logp",
    "logpdf_numpy",
    "fit_censoring",
]

FLAG_COLUMNS = ("BLQ", "CENS")


@dataclass(frozen=True)
class CensoringInfo:
    """Censoring of each observation (in the order of the observation table).

    Attributes
    ----------
    method : {"M1", "M3", "M4"}
    censored : numpy.ndarray
        ``bool (n_obs,)``: below the LLOQ.
    lloq : numpy.ndarray
        ``float (n_obs,)``: the LLOQ of each observation (NaN where none is known).
    dv : numpy.ndarray
        ``float (n_obs,)``: DV with each censored value replaced by its LLOQ.

    Examples
    --------
    Built by :func:`censoring_info` (see there); the fields are plain arrays:

    >>> import numpy as np
    >>> info = CensoringInfo("M3", np.array([False, True]), np.array([0.1, 0.1]),
    ...                      np.array([2.5, 0.05]))
    >>> int(info.censored.sum())
    1
    """

    method: str
    censored: np.ndarray
    lloq: np.ndarray
    dv: np.ndarray

    @property
    def n_censored(self) -> int:
        """The number of censored observations.

        Examples
        --------
        >>> import numpy as np
        >>> info = CensoringInfo("M3", np.array([False, True, True, False]),
        ...                      np.full(4, 0.1), np.array([2.5, 0.1, 0.1, 0.8]))
        >>> info.n_censored
        2
        """
        return int(self.censored.sum())

    @property
    def fraction(self) -> float:
        """The fraction of observations censored (0.0 when there are none).

        Examples
        --------
        >>> import numpy as np
        >>> info = CensoringInfo("M3", np.array([False, True, False, False]),
        ...                      np.full(4, 0.1), np.array([2.5, 0.1, 0.4, 0.8]))
        >>> info.fraction
        0.25
        """
        return float(self.censored.mean()) if self.censored.size else 0.0


def flag_column(data: Any, blq: Any = None) -> str | None:
    """The censoring flag column of ``data`` (``BLQ(flag=...)``, else ``BLQ`` or ``CENS``).

    Raises
    ------
    DatasetError
        ``BLQ(flag=...)`` names a column that is not in the data.

    Examples
    --------
    >>> import pandas as pd
    >>> import nlme_bayes as nb
    >>> ds = nb.read_nonmem(pd.DataFrame({"ID": [1, 1, 1], "TIME": [0.0, 1.0, 2.0],
    ...     "AMT": [100.0, 0, 0], "DV": [0, 2.5, 0.05], "BLQ": [0, 0, 1], "LLOQ": [0.1] * 3}))
    >>> flag_column(ds)
    'BLQ'
    """
    columns = data.records.columns
    if blq is not None and blq.flag is not None:
        if blq.flag not in columns:
            raise DatasetError(
                f"{blq.flag}: the censoring flag column named by BLQ(flag={blq.flag!r}) is not "
                f"in the data; columns are {', '.join(c for c in columns if c != 'ROW')}."
            )
        return blq.flag
    found = [c for c in FLAG_COLUMNS if c in columns]
    if len(found) > 1:
        raise DatasetError(
            f"{'/'.join(found)}: the data have both censoring flag columns; name the one to "
            "use with BLQ(flag=...)."
        )
    return found[0] if found else None


def _by_row(data: Any, column: str, obs: pd.DataFrame) -> pd.Series:
    rec = data.records.set_index("ROW")[column]
    return pd.Series(rec.loc[obs["ROW"].to_numpy()].to_numpy(), index=obs.index)


def _warn_flagged_non_observations(data: Any, flag: str) -> None:
    """BLQ-flagged records with MDV 1 (e.g. DV left empty) are not observations: say so."""
    import warnings

    from .data_validation import format_where
    from .errors import DatasetWarning

    rec = data.records
    with np.errstate(invalid="ignore"):
        flagged = pd.to_numeric(rec[flag], errors="coerce").to_numpy() == 1
    lost = flagged & (rec["EVID"].to_numpy() == 0) & (rec["MDV"].to_numpy() == 1)
    if lost.any():
        where = format_where(rec["ROW"].to_numpy()[lost], rec["ID"].to_numpy()[lost])
        warnings.warn(
            f"{flag}: {int(lost.sum())} record(s) flagged below the LLOQ are not observations "
            f"(MDV=1, e.g. an empty DV) at {where}, so no BLQ method sees them; to use them as "
            "censored observations give them a DV (e.g. the LLOQ) and MDV=0.",
            DatasetWarning,
            stacklevel=3,
        )


def censoring_info(data: Any, blq: Any, obs: pd.DataFrame) -> CensoringInfo | None:
    """Which observations of ``obs`` are censored, and their LLOQ; None without censoring.

    Parameters
    ----------
    data : NonmemDataset
    blq : BLQ or None
        The model's censoring choice.
    obs : pandas.DataFrame
        The observation table (``ROW`` and ``DV`` columns), e.g. from
        :func:`~nlme_bayes.events.build_schedule`.

    Raises
    ------
    SpecificationError
        Censored observations in the data but ``blq`` is None; ``blq`` without any LLOQ.
    DatasetError
        Invalid flags (other than 0/1, missing), or censored observations without an LLOQ,
        naming their rows.

    Examples
    --------
    >>> import pandas as pd
    >>> import nlme_bayes as nb
    >>> from nlme_bayes.events import build_schedule
    >>> ds = nb.read_nonmem(pd.DataFrame({"ID": [1, 1, 1], "TIME": [0.0, 1.0, 2.0],
    ...     "AMT": [100.0, 0, 0], "DV": [0, 2.5, 0.05], "BLQ": [0, 0, 1], "LLOQ": [0.1] * 3}))
    >>> _, obs = build_schedule(ds, nb.OneCompartment(route="iv"))
    >>> info = censoring_info(ds, nb.BLQ("M3"), obs)
    >>> info.method, info.censored.tolist(), info.lloq.tolist()
    ('M3', [False, True], [0.1, 0.1])
    """
    flag = flag_column(data, blq)
    flags = None
    if flag is not None:
        _warn_flagged_non_observations(data, flag)
        values = _by_row(data, flag, obs)
        if not pd.api.types.is_numeric_dtype(values):
            raise DatasetError(f"{flag}: the censoring flag must be 0 or 1, got text.")
        bad_missing = values.isna().to_numpy()
        if bad_missing.any():
            raise DatasetError(
                f"{flag}: missing censoring flag at {describe_rows(obs[bad_missing])}; "
                "give 0 (quantified) or 1 (below the LLOQ)."
            )
        v = values.to_numpy(dtype=float)
        right = v == -1
        if right.any():
            raise DatasetError(
                f"{flag}: -1 (right-censored, above the upper limit) at "
                f"{describe_rows(obs[right])} is not supported; only left-censoring (1)."
            )
        bad = ~np.isin(v, (0.0, 1.0))
        if bad.any():
            raise DatasetError(
                f"{flag}: invalid censoring flag {sorted(set(v[bad].tolist()))} at "
                f"{describe_rows(obs[bad])}; expected 0 (quantified) or 1 (below the LLOQ)."
            )
        flags = v == 1.0
    if blq is None:
        if flags is not None and flags.any():
            raise SpecificationError(
                f"The data flag {int(flags.sum())} observation(s) as below the limit of "
                f"quantification ({flag}=1 at {describe_rows(obs[flags])}). Say how they "
                "enter the likelihood: Model(blq=BLQ('M3')) (censored likelihood), "
                "BLQ('M4') (also conditioned on DV > 0) or BLQ('M1') (dropped)."
            )
        return None

    dv = obs["DV"].to_numpy(dtype=float)
    lloq = np.full(len(obs), np.nan)
    has_column = blq.lloq_column in data.records.columns
    if has_column:
        column = _by_row(data, blq.lloq_column, obs)
        if not pd.api.types.is_numeric_dtype(column):
            raise DatasetError(f"{blq.lloq_column}: the LLOQ must be a number, got text.")
        lloq = column.to_numpy(dtype=float)
        nonpos = np.isfinite(lloq) & (lloq <= 0)
        if nonpos.any():
            raise DatasetError(
                f"{blq.lloq_column}: LLOQ <= 0 at {describe_rows(obs[nonpos])}; "
                "expected a positive limit (DV units)."
            )
    if isinstance(blq.lloq, float):
        lloq = np.where(np.isfinite(lloq), lloq, blq.lloq)
    if flags is None:
        if blq.lloq == "DV":
            raise SpecificationError(
                "BLQ(lloq='DV') reads each censored record's LLOQ from its DV, so the data "
                f"need a censoring flag column ({' or '.join(FLAG_COLUMNS)})."
            )
        if not has_column and blq.lloq is None:
            raise SpecificationError(
                f"BLQ({blq.method!r}): no LLOQ is known; give BLQ(lloq=<value in DV units>) "
                f"or an {blq.lloq_column} column, and/or a censoring flag column "
                f"({' or '.join(FLAG_COLUMNS)})."
            )
        censored = np.isfinite(lloq) & (dv < lloq)
    else:
        censored = flags
        if blq.lloq == "DV":
            lloq = np.where(censored & ~np.isfinite(lloq), dv, lloq)
    no_limit = censored & ~(np.isfinite(lloq) & (lloq > 0))
    if no_limit.any():
        raise DatasetError(
            f"{flag or 'DV'}: censored observation(s) without a positive LLOQ at "
            f"{describe_rows(obs[no_limit])}; give an {blq.lloq_column} column, "
            "BLQ(lloq=<value>), or BLQ(lloq='DV') when their DV holds the LLOQ."
        )
    return CensoringInfo(
        method=blq.method, censored=censored, lloq=lloq, dv=np.where(censored, lloq, dv)
    )


def logp(value: Any, mu: Any, sd: Any, is_log: bool, info: CensoringInfo, nu: Any = None) -> Any:
    """Elementwise log-likelihood (PyTensor) under ``info.method``; see the module docstring.

    ``mu`` is the prediction (natural scale); ``sd`` the residual SD (of ``log DV`` when
    ``is_log``); ``nu`` the Student-t degrees of freedom of each observation (``inf``:
    normal) or ``None`` (all normal): ``Phi`` is then the t distribution's CDF.

    Examples
    --------
    A quantified observation gets its normal log-density, a censored one (M3) the log of the
    probability mass below its LLOQ:

    >>> import numpy as np
    >>> info = CensoringInfo("M3", np.array([False, True]), np.array([0.1, 0.1]),
    ...                      np.array([2.5, 0.05]))
    >>> ll = logp(np.array([2.5, 0.05]), np.array([2.4, 0.2]), np.array([0.3, 0.3]), False, info)
    >>> ll.eval().round(4)
    array([ 0.2295, -0.9958])
    """
    import pytensor.tensor as pt

    from .residual_family import logcdf as lcdf
    from .residual_family import logpdf as lpdf

    censored = pt.constant(info.censored)
    limit = pt.constant(np.where(np.isfinite(info.lloq), info.lloq, 1.0))
    if is_log:
        m = pt.log(mu)
        y = pt.log(value)
        lp_q = lpdf(y, m, sd, nu) - y
        lp_c = lcdf(pt.log(limit), m, sd, nu)
        positive = 0.0
    else:
        lp_q = lpdf(value, mu, sd, nu)
        lp_c = lcdf(limit, mu, sd, nu)
        positive = 0.0
        if info.method == "M4":
            log_p0 = lcdf(0.0, mu, sd, nu)  # log P(DV < 0)
            # log[Phi((L-f)/s) - Phi(-f/s)] = lp_c + log(1 - exp(log_p0 - lp_c))
            lp_c = lp_c + pt.log1mexp(pt.minimum(log_p0 - lp_c, -1e-12))
            positive = lcdf(0.0, -mu, sd, nu)  # log P(DV > 0) = log Phi(f/s) (symmetry)
    if info.method == "M1":
        lp_c = pt.zeros_like(lp_q)
    return pt.where(censored, lp_c, lp_q) - positive


def logpdf_numpy(
    dv: Any, ipred: Any, sd: Any, is_log: Any, info: CensoringInfo, nu: Any = None
) -> np.ndarray:
    """NumPy counterpart of :func:`logp` (broadcast over leading draw dimensions).

    Examples
    --------
    >>> info = CensoringInfo("M3", np.array([False, True]), np.array([1.0, 1.0]),
    ...                      np.array([2.0, 1.0]))
    >>> lp = logpdf_numpy(info.dv, np.array([2.0, 1.0]), np.array([1.0, 1.0]),
    ...                   np.array([False, False]), info)
    >>> np.round(np.exp(lp[1]), 3)  # P(DV < 1) at a prediction of 1
    np.float64(0.5)
    """
    from .residual_family import logcdf_numpy as lcdf
    from .residual_family import logpdf_numpy as lpdf

    dv = np.asarray(dv, dtype=float)
    ipred = np.asarray(ipred, dtype=float)
    is_log = np.asarray(is_log, dtype=bool)
    limit = np.where(np.isfinite(info.lloq), info.lloq, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        mu = np.where(is_log, np.log(ipred), ipred)
        y = np.where(is_log, np.log(np.where(dv > 0, dv, np.nan)), dv)
        lim = np.where(is_log, np.log(limit), limit)
        lp_q = lpdf(y, mu, sd, nu)
        lp_q = np.where(is_log, lp_q - y, lp_q)
        lp_c = lcdf(lim, mu, sd, nu)
        positive = np.zeros_like(lp_q)
        if info.method == "M4":
            normal = ~is_log
            log_p0 = lcdf(0.0, mu, sd, nu)
            diff = np.minimum(log_p0 - lp_c, -1e-12)
            lp_c = np.where(normal, lp_c + np.log(-np.expm1(diff)), lp_c)
            positive = np.where(normal, lcdf(0.0, -mu, sd, nu), 0.0)
        if info.method == "M1":
            lp_c = np.zeros_like(lp_q)
        lp = np.where(info.censored, lp_c, lp_q) - positive
    return np.where(np.isnan(lp), -np.inf, lp)


def fit_censoring(fit: Any, obs: pd.DataFrame | None = None) -> CensoringInfo | None:
    """The censoring of a fit's observations (None when its model has no ``blq``).

    With ``blq=None`` the data may still carry an ``LLOQ`` column; diagnostics use it to
    show the limit, without censoring anything.

    Examples
    --------
    >>> fit_censoring(fit) is None  # the Theophylline model has no blq=  # doctest: +SKIP
    True

    For a model with ``blq=``, ``fit_censoring(fit).censored`` flags the censored
    observations.
    """
    if obs is None:
        from .simulation import observation_table

        obs = observation_table(fit)
    return censoring_info(fit.data, getattr(fit.model, "blq", None), obs)
