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
    tree.to_netcdf(tmp, engine="h5netcdf")
    os.replace(tmp, path)  # atomic: a crash never leaves a half-written results file


def load(path: str | os.PathLike) -> Any:
    """Read a fit written by :meth:`Fit.save`.

    Examples
    --------
    >>> import nlme_bayes as nb
    >>> fit = nb.load("theophylline_fit.nc")  # doctest: +SKIP
    >>> fit.summary()  # doctest: +SKIP
    """
    from .data import NonmemDataset
    from .model import Model
    from .results import Fit

    path = os.fspath(path)
    if not os.path.exists(path):
        raise NLMEError(f"load: no such file {path!r}.")
    with xr.open_datatree(path, engine="h5netcdf") as opened:
        tree = opened.load().copy()
    if "nlme_bayes_model" not in tree.attrs or DATA_GROUP not in tree.children:
        raise NLMEError(f"load: {path!r} is not an nlme_bayes results file.")
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
