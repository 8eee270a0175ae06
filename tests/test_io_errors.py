"""Loading a results file that is not one, or not whole, gives a clear NLMEError.

Also: saving is atomic (a failed write leaves no file and no temporary file), and the model
in a results file is rebuilt from JSON through a registry -- a crafted type name is refused,
nothing is executed or unpickled.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import xarray as xr

import nlme_bayes as nb
from nlme_bayes.errors import NLMEError


@pytest.fixture(scope="module")
def saved(small_theoph_fit, tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("io") / "fit.nc"
    small_theoph_fit.save(path)
    return str(path)


def test_truncated_results_file(saved, tmp_path) -> None:
    data = open(saved, "rb").read()
    for fraction in (0.9, 0.5, 0.1, 0.001):
        cut = tmp_path / f"cut_{fraction}.nc"
        cut.write_bytes(data[: max(int(len(data) * fraction), 9)])
        with pytest.raises(NLMEError, match=r"could not be read .*truncated or damaged"):
            nb.load(cut)


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"", r"not an nlme_bayes results file \(NetCDF/HDF5\); it is empty"),
        (b"ID,TIME,DV\n1,0,1\n", r"it starts with b'ID,TIME,.*read with nlme_bayes.read_nonmem"),
        (b"PK\x03\x04" + bytes(64), r"not an nlme_bayes results file"),
        (b"\x89HDF\r\n\x1a\n" + bytes(64), r"could not be read"),
    ],
)
def test_foreign_files(tmp_path, content: bytes, match: str) -> None:
    path = tmp_path / "foreign.nc"
    path.write_bytes(content)
    with pytest.raises(NLMEError, match=match):
        nb.load(path)


def test_netcdf_not_written_by_nlme_bayes_and_missing_paths(tmp_path) -> None:
    other = tmp_path / "other.nc"
    xr.Dataset({"x": ("a", np.arange(3))}).to_netcdf(other, engine="h5netcdf")
    with pytest.raises(NLMEError, match=r"is not an nlme_bayes results file\.$"):
        nb.load(other)
    with pytest.raises(NLMEError, match=r"no such file"):
        nb.load(tmp_path / "nope.nc")
    with pytest.raises(NLMEError, match=r"is a directory"):
        nb.load(tmp_path)


def _rewrite(saved: str, tmp_path, **attrs) -> str:
    with xr.open_datatree(saved, engine="h5netcdf") as opened:
        tree = opened.load().copy()
    tree.attrs.update(attrs)
    path = tmp_path / "edited.nc"
    tree.to_netcdf(path, engine="h5netcdf")
    return str(path)


def test_newer_format_and_damaged_or_crafted_model(saved, tmp_path) -> None:
    with pytest.raises(NLMEError, match=r"results format 99, newer than this nlme_bayes"):
        nb.load(_rewrite(saved, tmp_path, nlme_bayes_format=99))
    with pytest.raises(NLMEError, match=r"is damaged or was not written by nlme_bayes.save"):
        nb.load(_rewrite(saved, tmp_path, nlme_bayes_model="{not json"))
    crafted = json.dumps({"__type__": "os.system", "command": "echo pwned"})
    with pytest.raises(NLMEError, match=r"unknown specification type 'os.system'"):
        nb.load(_rewrite(saved, tmp_path, nlme_bayes_model=crafted))


def test_failed_save_leaves_nothing_behind(small_theoph_fit, tmp_path, monkeypatch) -> None:
    def fail(self, path, **kwargs):
        open(path, "wb").write(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(xr.DataTree, "to_netcdf", fail)
    target = tmp_path / "fit.nc"
    with pytest.raises(OSError, match="disk full"):
        small_theoph_fit.save(target)
    assert os.listdir(tmp_path) == []
