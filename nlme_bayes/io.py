"""Save and load fits: one NetCDF file (HDF5 via ``h5netcdf``) holding everything.

The file is the ArviZ ``DataTree`` plus a ``nonmem_data`` group with the validated records
(dtypes recorded, so string IDs and text covariates come back as they were), and root
attributes with the model specification (JSON, never a pickle), sampler, seed, timings
and package versions.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from .errors import NLMEError

__all__ = ["save", "load"]

DATA_GROUP = "nonmem_data"
FORMAT_VERSION = 1


def _records_to_dataset(records: pd.DataFrame) -> xr.Dataset:
    dtypes = {}
    data_vars = {}
    for col in records.columns:
        s = records[col]
        dtypes[col] = str(s.dtype)
        if pd.api.types.is_numeric_dtype(s) or pd.api.types.is_bool_dtype(s):
            values = s.to_numpy()
        else:
            # text: stored as strings, missing values as "" (their mask kept separately)
            missing = s.isna().to_numpy()
            values = np.array(
                ["" if m else str(v) for v, m in zip(s.to_numpy(), missing, strict=True)],
                dtype=object,
            )
            if missing.any():
                data_vars[f"{col}__missing"] = ("record", missing)
        data_vars[col] = ("record", values)
    ds = xr.Dataset(data_vars, coords={"record": np.arange(len(records))})
    ds.attrs["dtypes"] = json.dumps(dtypes)
    ds.attrs["columns"] = json.dumps([str(c) for c in records.columns])
    return ds


def _dataset_to_records(ds: xr.Dataset) -> pd.DataFrame:
    dtypes = json.loads(ds.attrs["dtypes"])
    columns = json.loads(ds.attrs["columns"])
    out = {}
    for col in columns:
        values = ds[col].values
        dt = dtypes[col]
        if values.dtype == object or values.dtype.kind in "SU":
            series = pd.Series([str(v) for v in values], dtype=object)
            if f"{col}__missing" in ds:
                series[ds[f"{col}__missing"].values.astype(bool)] = None
            out[col] = series.astype(dt)
        else:
            out[col] = pd.Series(values).astype(dt)
    return pd.DataFrame(out, columns=columns)


def _stringify_coords(tree: xr.DataTree) -> xr.DataTree:
    """HDF5 cannot store object arrays of mixed types: make ID-like coords plain strings."""
    for node in tree.subtree:
        ds = node.dataset
        changed = {}
        for name, coord in ds.coords.items():
            if coord.dtype == object:
                changed[name] = (coord.dims, np.array([str(v) for v in coord.values], dtype=object))
        if changed:
            node.dataset = ds.assign_coords(changed)
    return tree


def save(fit: Any, path: str | os.PathLike) -> None:
    """Write ``fit`` to ``path`` (NetCDF/HDF5); see :func:`load`.

    Examples
    --------
    >>> import nlme_bayes as nb
    >>> fit.save("fit.nc")  # the same as nb.io.save(fit, "fit.nc")  # doctest: +SKIP
    >>> again = nb.load("fit.nc")  # doctest: +SKIP
    """
    path = os.fspath(path)
    tree = fit.results.copy()
    data = fit.data
    ds = _records_to_dataset(data.records)
    ds.attrs.update(
        {
            "covariates": json.dumps(list(data.covariates)),
            "source": str(data.source),
            "column_map": json.dumps(dict(data.column_map)),
            "subject_id_dtype": str(pd.Series(data.subject_ids).dtype),
        }
    )
    tree[DATA_GROUP] = xr.DataTree(ds)
    tree.attrs["nlme_bayes_format"] = FORMAT_VERSION
    tree = _stringify_coords(tree)
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        tree.to_netcdf(tmp, engine="h5netcdf")
    except BaseException:  # a failed or interrupted write leaves neither file nor temp file
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    os.replace(tmp, path)  # atomic: a crash never leaves a half-written results file


def load(path: str | os.PathLike) -> Any:
    """Read a fit written by :meth:`Fit.save`.

    The model comes back from JSON through a registry of nlme_bayes classes: nothing in the
    file is executed or unpickled.

    Raises
    ------
    NLMEError
        The file does not exist, is a directory, is not NetCDF/HDF5 (e.g. a CSV), is
        truncated or damaged, is a NetCDF file that nlme_bayes did not write, or was written
        by a newer results format; the message says which.

    Examples
    --------
    >>> import nlme_bayes as nb
    >>> fit = nb.load("theophylline_fit.nc")  # doctest: +SKIP
    >>> fit.summary()  # doctest: +SKIP
                       kind        mean  ...
    parameter ...
    CL_pop        typical value    0.0...
    ...
    sigma_add    residual error    0...
    """
    path = os.fspath(path)
    tree = _open_results(path)
    try:
        return _fit_from_tree(tree)
    except (KeyError, ValueError, TypeError) as exc:  # json, dtypes, specification
        raise NLMEError(
            f"load: {path!r} is damaged or was not written by nlme_bayes.save ({exc}); "
            "write it again from the fit."
        ) from exc


_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def _open_results(path: str) -> xr.DataTree:
    """The file's tree, or an NLMEError saying why it is not a results file."""
    if not os.path.exists(path):
        raise NLMEError(f"load: no such file {path!r}.")
    if os.path.isdir(path):
        raise NLMEError(f"load: {path!r} is a directory, not a results file.")
    with open(path, "rb") as handle:
        head = handle.read(8)
    if head != _HDF5_SIGNATURE:
        what = "it is empty" if not head else f"it starts with {head[:8]!r}"
        raise NLMEError(
            f"load: {path!r} is not an nlme_bayes results file (NetCDF/HDF5); {what}. "
            "Data files are read with nlme_bayes.read_nonmem."
        )
    try:
        with xr.open_datatree(path, engine="h5netcdf") as opened:
            tree = opened.load().copy()
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise NLMEError(
            f"load: {path!r} could not be read ({exc}); it is truncated or damaged (e.g. a "
            "copy that did not finish). Fit.save writes atomically, so the file it wrote is "
            "complete: copy it again."
        ) from exc
    if "nlme_bayes_model" not in tree.attrs or DATA_GROUP not in tree.children:
        raise NLMEError(f"load: {path!r} is not an nlme_bayes results file.")
    version = int(tree.attrs.get("nlme_bayes_format", FORMAT_VERSION))
    if version > FORMAT_VERSION:
        raise NLMEError(
            f"load: {path!r} has results format {version}, newer than this nlme_bayes reads "
            f"({FORMAT_VERSION}); upgrade nlme_bayes."
        )
    return tree


def _fit_from_tree(tree: xr.DataTree) -> Any:
    """Records, model (JSON, never a pickle) and the ArviZ groups back into a Fit."""
    from .data import NonmemDataset
    from .model import Model
    from .results import Fit

    dsd = tree[DATA_GROUP].dataset
    records = _dataset_to_records(dsd)
    data = NonmemDataset.from_records(
        records,
        covariates=tuple(json.loads(dsd.attrs["covariates"])),
        source=dsd.attrs["source"],
        column_map=json.loads(dsd.attrs["column_map"]),
    )
    # Restore the original type of subject IDs on the coordinates.
    ids = list(data.subject_ids)
    id_map = {str(i): i for i in ids}
    for node in tree.subtree:
        ds = node.dataset
        fix = {}
        for name in ("subject", "ID"):
            if name in ds.coords and ds[name].dtype == object:
                fix[name] = (
                    ds[name].dims,
                    np.array([id_map.get(str(v), v) for v in ds[name].values]),
                )
        if fix:
            node.dataset = ds.assign_coords(fix)
    del tree[DATA_GROUP]
    model = Model.from_dict(json.loads(tree.attrs["nlme_bayes_model"]))
    return Fit(model=model, data=data, results=tree)
