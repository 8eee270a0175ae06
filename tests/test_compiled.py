"""CompileCache: which graphs count as the same structure, and what is lifted out of them.

Whether reused draws are identical to freshly compiled ones is tested where it matters, in
tests/test_batch.py: the killed-worker run (warm caches, one restarted worker) must give the
draws of the reference run (cold caches) bit for bit.
"""

from __future__ import annotations

import numpy as np
import pytest

import nlme_bayes as nb
from nlme_bayes.builder import build
from nlme_bayes.compiled import CompileCache, _lifted_fgraph, _shared_values, _signature
from nlme_bayes.examples import theophylline_model


def _dataset(ids, dv_factor=1.0):
    rec = nb.datasets.theophylline().records
    rec = rec[rec["ID"].isin(ids)].drop(columns=["ROW"])
    return nb.read_nonmem(rec.assign(DV=rec["DV"] * dv_factor))


def _lifted(model, data):
    return _lifted_fgraph(build(model, data), model, data, True)


def test_dv_and_data_scaled_priors_are_lifted_design_is_not():
    model = theophylline_model().replace(error=nb.Additive())  # prior scale = SD of DV
    a, b = _dataset([1, 2, 3]), _dataset([1, 2, 3], dv_factor=1.3)
    fa, fb = _lifted(model, a), _lifted(model, b)
    assert _signature(fa) == _signature(fb)  # same structure: a cache hit
    va, vb = _shared_values(fa), _shared_values(fb)
    lifted = sorted(k for k in va if k.startswith("_data_"))
    assert len(lifted) == 2  # DV itself and the additive SD's prior scale
    dv = a.observations()["DV"].to_numpy()
    assert any(np.array_equal(va[k], dv) for k in lifted)
    assert any(
        np.isclose(float(np.asarray(va[k])), np.std(dv)) for k in lifted if np.ndim(va[k]) == 0
    )
    assert any(np.array_equal(vb[k], dv * 1.3) for k in lifted)


def test_other_design_or_model_is_another_structure():
    model = theophylline_model()
    base = _signature(_lifted(model, _dataset([1, 2, 3])))
    assert _signature(_lifted(model, _dataset([1, 2, 4]))) != base  # other times and doses
    other = model.replace(error=nb.Combined())
    assert _signature(_lifted(other, _dataset([1, 2, 3]))) != base


def test_cache_arguments():
    cache = CompileCache(max_entries=1)
    assert cache.stats() == {"hits": 0, "misses": 0, "entries": 0}
    with pytest.raises(ValueError, match="max_entries must be a positive int"):
        CompileCache(max_entries=0)
