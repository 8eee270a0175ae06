"""Lean compilation (nlme_bayes.compile_mode): same values, modes restored, nutpie's covered."""

from __future__ import annotations

import threading

import numpy as np
import pytensor
import pytest
from pytensor.compile.mode import get_default_mode, get_mode, predefined_modes

from nlme_bayes import templates
from nlme_bayes.compile_mode import SKIPPED_REWRITES, lean_compilation, lean_mode


def _excluded(mode) -> bool:
    return set(SKIPPED_REWRITES) <= set(mode.provided_optimizer.exclude)


def test_log_density_and_gradient_unchanged():
    """A two-compartment oral model with lag: logp and gradient agree to 1e-12 (relative)
    between PyTensor's default rewrites and the lean ones, at three points."""
    tpl = templates.get("two_cmt_oral_lag")
    m = tpl.model().build(tpl.example_data(n_subjects=4))
    f_default = m.logp_dlogp_function(ravel_inputs=True)
    f_lean = m.logp_dlogp_function(ravel_inputs=True, mode=lean_mode())
    for f in (f_default, f_lean):
        f.set_extra_values({})
    start = m.initial_point()
    x0 = np.concatenate([np.ravel(start[v.name]) for v in f_default._grad_vars])
    rng = np.random.default_rng(0)
    for x in (x0, x0 + 0.1 * rng.standard_normal(x0.size), x0 - 0.2):
        (lp_d, g_d), (lp_l, g_l) = f_default(x), f_lean(x)
        assert np.isfinite(lp_d)
        np.testing.assert_allclose(lp_l, lp_d, rtol=1e-12)
        np.testing.assert_allclose(g_l, g_d, rtol=1e-10, atol=1e-10)


def test_modes_are_lean_inside_and_restored_after():
    before_default = get_default_mode()
    before_named = {k: predefined_modes[k] for k in ("NUMBA", "C", "CVM", "JAX")}
    with lean_compilation():
        assert _excluded(get_default_mode())
        assert _excluded(get_mode("NUMBA"))  # what nutpie compiles with
        with lean_compilation():  # nested: still lean, nothing restored early
            assert _excluded(get_mode("C"))
        assert _excluded(get_mode("NUMBA"))
    assert pytensor.config.mode is not None
    assert not _excluded(get_default_mode())
    after = get_default_mode().provided_optimizer.exclude
    assert after == before_default.provided_optimizer.exclude
    for k, mode in before_named.items():
        assert predefined_modes[k] is mode


def test_restored_after_an_error_and_across_threads():
    before = predefined_modes["NUMBA"]
    with pytest.raises(RuntimeError, match="boom"), lean_compilation():
        raise RuntimeError("boom")
    assert predefined_modes["NUMBA"] is before

    inside, leave = threading.Event(), threading.Event()

    def worker():
        with lean_compilation():
            inside.set()
            leave.wait(10)

    t = threading.Thread(target=worker)
    t.start()
    inside.wait(10)
    with lean_compilation():
        pass  # this block ends first: the worker's block is still open
    assert _excluded(get_mode("NUMBA"))
    leave.set()
    t.join(10)
    assert predefined_modes["NUMBA"] is before
