"""Covariates before the build: data-derived references and imputation on request.

Two things happen here, both only when the user asks for them and both visibly:

- **References** given as ``"median"`` or ``"mean"`` (``Power("WT", reference="median")``)
  are computed on the subjects' values in the data (one value per subject: its first
  record) and written into the model as numbers. The fitted model (``fit.model``) carries
  the numbers, so reports show them and new subjects are predicted the same way.
- **Missing covariate values** are an error that names the rows (raised by
  :meth:`~nlme_bayes.data.NonmemDataset.covariate_table`). With
  ``Model(impute_covariates={"WT": "median"})`` a missing value is taken from the same
  subject's other records (its first given value), or else from the other subjects' values
  (median, mean or mode), with a :class:`~nlme_bayes.errors.DatasetWarning` listing every
  imputed subject and value.

:func:`prepare` applies both; :func:`nlme_bayes.inference.fit` and
:func:`nlme_bayes.builder.build` call it, so a fit holds the prepared model and data.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any

import numpy as np
import pandas as pd

from .errors import DatasetWarning, SpecificationError

__all__ = ["prepare", "resolve_references", "impute"]


def _baseline(data: Any, name: str) -> pd.Series:
    """First non-missing value of ``name`` per subject (NaN where a subject has none)."""
    rec = data.records
    values = rec[name].groupby(rec["ID"], sort=False).first()
    return values.reindex(pd.Index(data.subject_ids, name="ID"))


def impute(data: Any, rules: dict[str, str]) -> Any:
    """Fill missing covariate values by ``rules`` (covariate -> "median"/"mean"/"mode").

    Parameters
    ----------
    data : NonmemDataset
    rules : dict of str to str
        Covariates to impute and how: a subject's missing value is its own first given
        value; a subject without any value gets the median, mean or mode of the other
        subjects' first values.

    Returns
    -------
    NonmemDataset
        ``data`` itself when nothing is missing, else a copy with the values filled in.

    Warns
    -----
    DatasetWarning
        One per imputed covariate, naming the subjects and the values they received.

    Raises
    ------
    SpecificationError
        An unknown covariate, ``"median"``/``"mean"`` for a text covariate, or a covariate
        with no value at all.

    Examples
    --------
    >>> import warnings
    >>> import pandas as pd
    >>> from nlme_bayes import read_nonmem
    >>> ds = read_nonmem(pd.DataFrame({"ID": [1, 2, 3], "TIME": [1.0, 1.0, 1.0],
    ...                                "DV": [1.0, 2.0, 3.0], "WT": [60, ".", 80]}))
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore")
    ...     impute(ds, {"WT": "median"}).records["WT"].tolist()
    [60.0, 70.0, 80.0]
    """
    records = data.records
    out = None
    for name, rule in rules.items():
        if name not in data.covariates:
            raise SpecificationError(
                f"impute_covariates: {name!r} is not a covariate of the data; available: "
                f"{', '.join(sorted(data.covariates)) or '(none)'}."
            )
        col = records[name]
        missing = col.isna().to_numpy()
        if not missing.any():
            continue
        numeric = pd.api.types.is_numeric_dtype(col)
        if rule in ("median", "mean") and not numeric:
            raise SpecificationError(
                f"impute_covariates[{name!r}]={rule!r}: {name} holds text (categories); "
                "impute it with 'mode'."
            )
        base = _baseline(data, name)
        given = base.dropna()
        if given.empty:
            raise SpecificationError(
                f"impute_covariates: {name} has no value at all; nothing to impute from."
            )
        if rule == "median":
            fill = float(np.median(given.to_numpy(dtype=float)))
        elif rule == "mean":
            fill = float(np.mean(given.to_numpy(dtype=float)))
        else:
            fill = given.mode().iloc[0]
        per_subject = base.fillna(fill) if numeric else base.where(base.notna(), fill)
        no_value = base.index[base.isna()].tolist()
        out = records.copy() if out is None else out
        filled = records["ID"].map(per_subject)
        out[name] = col.where(~missing, filled)
        rows = records.loc[missing, "ROW"].tolist()
        own = sorted(set(records.loc[missing, "ID"]) - set(no_value), key=str)
        parts = []
        if own:
            parts.append(f"subject(s) {', '.join(map(str, own))} from their own records")
        if no_value:
            shown = ", ".join(str(i) for i in no_value[:10]) + (
                " ..." if len(no_value) > 10 else ""
            )
            parts.append(f"subject(s) {shown} with the {rule} of the others, {fill!r}")
        warnings.warn(
            f"{name}: imputed {len(rows)} missing value(s) (rows "
            f"{', '.join(map(str, rows[:10]))}{' ...' if len(rows) > 10 else ''}) on request: "
            + "; ".join(parts),
            DatasetWarning,
            stacklevel=3,
        )
    if out is None:
        return data
    return dataclasses.replace(data, records=out)


def resolve_references(model: Any, data: Any) -> Any:
    """``model`` with every ``reference="median"``/``"mean"`` replaced by its number.

    Parameters
    ----------
    model : Model
    data : NonmemDataset
        The data the model is fitted to (one value per subject: its first record).

    Returns
    -------
    Model
        ``model`` itself when every reference is a number.

    Examples
    --------
    >>> import nlme_bayes as nb
    >>> from nlme_bayes.examples import pheno_model
    >>> m = pheno_model()
    >>> cl = m.parameter("CL")
    >>> wt = nb.Power("WT", reference="median", exponent=0.75)
    >>> m2 = resolve_references(m.with_parameter(
    ...     nb.Parameter("CL", typical=0.005, covariates=(wt,))), nb.datasets.phenobarbital())
    >>> m2.parameter("CL").covariates[0].reference
    1.3
    """
    changed = False
    params = []
    for p in model.parameters:
        effects = []
        for eff in p.covariates:
            ref = getattr(eff, "reference", None)
            if isinstance(ref, str) and ref in ("median", "mean"):
                base = _baseline(data, eff.covariate)
                if base.isna().any():  # the data layer's error names the rows
                    data.covariate_table([eff.covariate], time_varying="baseline")
                if base.isna().any() or not pd.api.types.is_numeric_dtype(base):
                    raise SpecificationError(
                        f"{type(eff).__name__}({eff.covariate!r}) on {p.name}: reference={ref!r} "
                        "needs a numeric value for every subject."
                    )
                x = base.to_numpy(dtype=float)
                value = float(np.median(x) if ref == "median" else np.mean(x))
                eff = dataclasses.replace(eff, reference=round(value, 10))
                changed = True
            effects.append(eff)
        params.append(dataclasses.replace(p, covariates=tuple(effects)) if changed else p)
    return model.replace(parameters=tuple(params)) if changed else model


def prepare(model: Any, data: Any) -> tuple[Any, Any]:
    """Imputation (on request) then data-derived references: the model and data to fit.

    Examples
    --------
    >>> import nlme_bayes as nb
    >>> from nlme_bayes.examples import pheno_model
    >>> model, data = prepare(pheno_model(), nb.datasets.phenobarbital())
    >>> model == pheno_model()
    True
    """
    missing = [c for c in model.covariate_names if c not in data.covariates]
    if missing:
        raise SpecificationError(
            f"Model: covariate(s) {', '.join(missing)} not in the data. Available covariates: "
            f"{', '.join(sorted(data.covariates)) or '(none)'}."
        )
    if model.impute_covariates:
        data = impute(data, dict(model.impute_covariates))
    return resolve_references(model, data), data
