"""Provenance of a fit: what was fitted, with what, where -- recorded in every results file.

:func:`nlme_bayes.inference.fit` stores these in the root attributes of the results
(``fit.results.attrs``), next to the model specification (JSON), the seed, the sampler and
its settings, and the timings:

==================  ==========================================================================
attribute           content
==================  ==========================================================================
``data_sha256``     :func:`data_hash` of the fitted records
``host``            :func:`host` (the machine's name) -- where the fit ran
``platform``        operating system and machine architecture
``versions``        JSON: Python, nlme_bayes and its numerical dependencies (:func:`versions`)
==================  ==========================================================================

Examples
--------
>>> import nlme_bayes as nb
>>> from nlme_bayes.provenance import data_hash
>>> data_hash(nb.datasets.theophylline()) == data_hash(nb.datasets.theophylline())
True
"""

from __future__ import annotations

import hashlib
import importlib.metadata as md
import platform
import socket
from typing import Any

__all__ = ["data_hash", "host", "platform_name", "versions"]

_PACKAGES = (
    "nlme_bayes",
    "pymc",
    "pytensor",
    "arviz",
    "numpy",
    "scipy",
    "xarray",
    "pandas",
    "nutpie",
    "numba",
    "numpyro",
    "jax",
    "dask",
    "distributed",
)


def data_hash(data: Any) -> str:
    """SHA-256 of a dataset's validated records, as a hex string.

    The records (every column, in source order, with the 1-based source ``ROW``) are
    written as CSV with full float precision and hashed, so the hash changes with any
    value, row or column and does not depend on how the file was formatted (quoting,
    ``"."`` vs empty cells for missing values, column order of the covariates aside).

    Parameters
    ----------
    data : NonmemDataset

    Returns
    -------
    str
        64 hexadecimal characters.

    Examples
    --------
    >>> import pandas as pd
    >>> from nlme_bayes import read_nonmem
    >>> a = read_nonmem(pd.DataFrame({"ID": [1, 1], "TIME": [0, 1], "DV": [0, 2.5], "AMT": [5, 0]}))
    >>> b = read_nonmem(pd.DataFrame({"ID": [1, 1], "TIME": [0, 1], "DV": [0, 2.6], "AMT": [5, 0]}))
    >>> len(data_hash(a)), data_hash(a) == data_hash(b)
    (64, False)
    """
    records = data.records
    text = records.to_csv(index=False, float_format="%.17g", lineterminator="\n")
    header = "covariates=" + ",".join(map(str, data.covariates)) + "\n"
    return hashlib.sha256((header + text).encode("utf-8")).hexdigest()


def host() -> str:
    """The name of this machine (``socket.gethostname()``).

    Examples
    --------
    >>> isinstance(host(), str)
    True
    """
    return socket.gethostname()


def platform_name() -> str:
    """Operating system, release and architecture, e.g. ``"Linux-6.1-x86_64"``.

    Examples
    --------
    >>> isinstance(platform_name(), str)
    True
    """
    return f"{platform.system()}-{platform.release()}-{platform.machine()}"


def versions() -> dict[str, str]:
    """Versions of Python and of the installed numerical packages that a fit depends on.

    Examples
    --------
    >>> v = versions()
    >>> "python" in v and "pymc" in v
    True
    """
    out = {"python": platform.python_version()}
    for pkg in _PACKAGES:
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            continue
    return out
