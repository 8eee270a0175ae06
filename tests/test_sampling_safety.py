"""Interruption, numerical containment and chain starts (nlme_bayes.sampling_safety).

The Ctrl-C tests run a real fit in a subprocess and send it SIGINT once sampling is under
way; the fit must come back (and be saved) with the draws so far, flagged, without NaN.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import numpy as np
import pymc as pm
import pytensor.tensor as pt
import pytest
import xarray as xr

import nlme_bayes as nb
from nlme_bayes.builder import build
from nlme_bayes.errors import SamplingError, SpecificationError, StartWarning
from nlme_bayes.examples import theophylline_model
from nlme_bayes.sampling_safety import (
    check_fit_arguments,
    finite_starts,
    keep_complete_draws,
    nonfinite_transitions,
    nutpie_jitter,
    sample_with_fresh_starts,
    watch_interrupt,
)

ROOT = Path(__file__).resolve().parents[1]

# The fit run in a subprocess: it writes MARKER when the sampler starts (after compilation).
SCRIPT = textwrap.dedent(
    """
    import json, sys, warnings
    import numpy as np
    import nlme_bayes as nb
    from nlme_bayes.examples import theophylline_model

    backend, out, marker = sys.argv[1:4]
    data = nb.datasets.theophylline()
    data = nb.NonmemDataset.from_records(data.records[data.records["ID"].isin([1, 2, 3])])

    def mark(original):
        def wrapped(*args, **kwargs):
            open(marker, "w").close()
            return original(*args, **kwargs)
        return wrapped

    if backend == "nutpie":
        import nutpie
        nutpie.sample = mark(nutpie.sample)
        draws = 200_000
    else:  # PyMC calls back after every draw: mark the first draw after warm-up
        import pymc
        original = pymc.sample
        def sample(*args, **kwargs):
            def callback(trace, draw):
                if not draw.tuning:
                    open(marker, "w").close()
            return original(*args, callback=callback, **kwargs)
        pymc.sample = sample
        draws = 20_000
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit = theophylline_model().fit(
            data, draws=draws, tune=50, chains=2, cores=2, random_seed=3, sampler=backend,
            progressbar=False, check=False, save_on_interrupt=out,
        )
    post = fit.posterior
    print(json.dumps({
        "interrupted": fit.interrupted,
        "info": fit.info["interruption"],
        "draws": int(post.sizes["draw"]),
        "chains": int(post.sizes["chain"]),
        "nan": bool(any(np.isnan(post[v].values).any() for v in post.data_vars)),
        "warnings": sorted({w.category.__name__ for w in caught}),
        "report": fit.check_convergence().problems,
    }))
    """
)


def _sigint_default() -> None:
    """In the child before exec: SIGINT back to its default disposition.

    A parent that ignores SIGINT (a pytest-xdist worker, a background job) passes SIG_IGN on
    to its children, and Python then installs no KeyboardInterrupt handler: the child of a
    user's terminal, which this test stands for, has the default.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _interrupted_fit(backend: str, tmp_path: Path) -> dict:
    script = tmp_path / "fit.py"
    script.write_text(SCRIPT)
    out, marker = tmp_path / "partial.nc", tmp_path / "started"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-P", str(script), backend, str(out), str(marker)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=tmp_path,
        preexec_fn=_sigint_default,
    )
    try:
        deadline = time.monotonic() + 300
        while not marker.exists():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the fit never started sampling"
            time.sleep(0.2)
        time.sleep(2.0 if backend == "pymc" else 4.0)  # past the warm-up, into the draws
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr[-3000:]
    result = json.loads(stdout.strip().splitlines()[-1])
    result["file"] = out
    return result


@pytest.mark.parametrize("backend", ["nutpie", "pymc"])
def test_ctrl_c_returns_and_saves_the_draws_so_far(backend: str, tmp_path: Path) -> None:
    result = _interrupted_fit(backend, tmp_path)
    assert result["interrupted"] is True
    info = result["info"]
    assert info["reason"] == "Ctrl-C / SIGINT"
    assert 0 < result["draws"] == info["kept"] < info["requested"]
    assert result["draws"] == min(info["draws_per_chain"][c] for c in info["chains_kept"])
    assert result["nan"] is False, "no padding may reach the posterior"
    assert "InterruptedWarning" in result["warnings"]
    assert any("sampling was interrupted" in p for p in result["report"])
    # the draws were saved (atomically) and load back flagged, without NaN
    fit = nb.load(result["file"])
    assert fit.interrupted and fit.posterior.sizes["draw"] == result["draws"]
    assert not any(np.isnan(fit.posterior[v].values).any() for v in fit.posterior.data_vars)
    assert not list(tmp_path.glob("partial.nc.tmp*")), "no temporary file is left behind"


# ------------------------------------------------------------------ keep_complete_draws


def _tree(x: np.ndarray) -> xr.DataTree:
    dims = ("chain", "draw")
    return xr.DataTree.from_dict(
        {
            "posterior": xr.Dataset({"x": (dims, x), "d": (dims, x * 0 + np.inf)}),
            "sample_stats": xr.Dataset({"diverging": (dims, np.zeros(x.shape, bool))}),
        }
    )


def test_nan_padded_chains_are_cut_to_the_shortest_and_empty_chains_dropped() -> None:
    nan = np.nan
    x = np.array([[1.0, 2, 3, 4], [5, 6, nan, nan], [nan, nan, nan, nan]])
    tree, info = keep_complete_draws(_tree(x), 4, ["x"], interrupted=True)
    assert tree["posterior"]["x"].values.tolist() == [[1.0, 2.0], [5.0, 6.0]]
    assert tree["sample_stats"]["diverging"].shape == (2, 2)
    assert info == {
        "reason": "Ctrl-C / SIGINT",
        "requested": 4,
        "draws_per_chain": [4, 2, 0],
        "kept": 2,
        "chains_kept": [0, 1],
    }
    # a deterministic that is infinite is not mistaken for padding (only free variables count)
    assert np.isinf(tree["posterior"]["d"].values).all()


def test_complete_run_is_untouched_and_short_runs_are_named() -> None:
    x = np.ones((2, 3))
    tree, info = keep_complete_draws(_tree(x), 3, ["x"], interrupted=False)
    assert info is None and tree["posterior"].sizes["draw"] == 3
    _, info = keep_complete_draws(_tree(x), 5, ["x"], interrupted=False)
    assert info["reason"] == "the sampler stopped early" and info["kept"] == 3


def test_nothing_to_keep() -> None:
    empty = np.full((2, 3), np.nan)
    with pytest.raises(KeyboardInterrupt, match=r"before any chain finished its warm-up"):
        keep_complete_draws(_tree(empty), 3, ["x"], interrupted=True)
    with pytest.raises(SamplingError, match=r"returned no complete draw"):
        keep_complete_draws(_tree(empty), 3, ["x"], interrupted=False)


@pytest.fixture
def python_sigint_handler():
    """Python's own SIGINT handler for the test (pytest-xdist workers run with SIGINT ignored)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_watch_interrupt_notes_sigint_and_restores_the_handler(python_sigint_handler) -> None:
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt), watch_interrupt() as watch:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(1.0)  # the handler runs here
    assert watch.fired
    assert signal.getsignal(signal.SIGINT) is before
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # e.g. a background job
    try:
        with watch_interrupt() as watch:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.2)
        assert not watch.fired
    finally:
        signal.signal(signal.SIGINT, previous)


# ------------------------------------------------------------------ numerical containment


def test_nonfinite_log_density_is_rejected_and_counted() -> None:
    """NaN log density for x > 1: never a draw, counted as a non-finite transition."""
    with pm.Model() as model:
        x = pm.Normal("x", 0.0, 1.0)
        pm.Potential("overflow", pt.switch(x > 1.0, np.nan, 0.0))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tree = pm.sample(
                draws=300, tune=200, chains=2, cores=1, nuts_sampler="pymc", random_seed=5,
                progressbar=False, compute_convergence_checks=False,
            )  # fmt: skip
    draws = tree["posterior"]["x"].values
    assert np.all(np.isfinite(draws)) and draws.max() <= 1.0
    stats = tree["sample_stats"].dataset
    n_bad = nonfinite_transitions(stats)
    assert 0 < n_bad <= int(stats["diverging"].sum())
    assert model is not None


def test_log_density_at_numerical_extremes_is_a_rejection_or_finite(theoph) -> None:
    """Overflow in exp(eta) (CL = V = ka = inf: concentrations 0 or NaN under proportional
    error), extreme etas, ka == k: the log density NUTS evaluates is finite or -inf/NaN (a
    rejected proposal), never +inf (which a sampler would accept), and nothing raises.
    """
    from pymc.blocking import DictToArrayBijection

    model = theophylline_model().replace(error=nb.Proportional())
    rec = theoph.records
    keep = rec["ID"].isin([1, 2, 3]) & ((rec["EVID"] != 0) | (rec["TIME"] > 0))
    m = build(model, nb.NonmemDataset.from_records(rec[keep])).pm_model
    logp_dlogp = m.logp_dlogp_function(ravel_inputs=True)  # the function NUTS uses
    base = m.initial_point()
    z_name = next(v.name for v in m.value_vars if v.name.startswith("z_eta"))
    cases = {
        "overflow in exp(eta)": {z_name: np.full_like(base[z_name], 5000.0)},
        "extreme negative eta": {z_name: np.full_like(base[z_name], -5000.0)},
        "ka == k (CL/V == ka)": {
            "CL_pop_log__": np.log(0.5),
            "V_pop_log__": np.log(0.5),
            "ka_pop_log__": np.log(1.0),
        },  # fmt: skip
    }
    for label, change in cases.items():
        q, _ = DictToArrayBijection.map({**base, **change})
        with np.errstate(all="ignore"):
            value, grad = logp_dlogp([q], extra_vars={})
        assert float(value) != np.inf, label
        if label.startswith("ka"):
            assert np.isfinite(value) and np.all(np.isfinite(grad)), label
        elif label.startswith("overflow"):
            assert not np.isfinite(value), label  # rejected, not silently accepted


def test_nonfinite_transitions_appear_in_the_convergence_report(small_theoph_fit) -> None:
    fit = nb.Fit(model=small_theoph_fit.model, data=small_theoph_fit.data,
                 results=small_theoph_fit.results.copy())  # fmt: skip
    stats = fit.results["sample_stats"].dataset.copy()
    div = stats["diverging"].values.copy()
    energy = stats["max_energy_error"].values.copy()
    div[0, :3], energy[0, :3] = True, np.inf
    stats["diverging"] = (stats["diverging"].dims, div)
    stats["max_energy_error"] = (stats["max_energy_error"].dims, energy)
    fit.results["sample_stats"] = xr.DataTree(stats)
    report = fit.check_convergence()
    assert report.figures["nonfinite_transitions"] == 3
    assert any("stopped at a non-finite log density" in n for n in report.notes)


# ------------------------------------------------------------------ chain starts


def _wall_model() -> tuple[pm.Model, dict, dict]:
    """log density finite only for |a - 0.5| < 0.1: most jittered starts are outside."""
    with pm.Model() as model:
        a = pm.Uniform("a", 0.0, 1.0)
        pm.Potential("wall", pt.switch(pt.abs(a - 0.5) < 0.1, 0.0, -np.inf))
    return model, {"a": np.array(0.95)}, {"a": np.array(0.5)}


class _Built:
    def __init__(self, model: pm.Model) -> None:
        self.pm_model, self.initvals, self.jitter_vars = model, {"a": 0.5}, ("a",)


def test_bad_starts_are_drawn_again_or_fall_back_with_a_warning() -> None:
    model, bad, good = _wall_model()
    calls: list[int] = []

    def start(seed: int) -> dict:
        calls.append(seed)
        return bad if len(calls) < 3 else good

    (first,) = finite_starts(_Built(model), start, [7])
    assert float(first["a"]) == 0.5 and len(calls) == 3  # two bad draws, then a good one
    with pytest.warns(StartWarning, match=r"chain 0: none of 20 jittered starts"):
        (only,) = finite_starts(_Built(model), lambda seed: bad, [7])
    assert float(only["a"]) == pytest.approx(0.5)  # the un-jittered start


def test_finite_starts_through_an_lkj_block(theoph) -> None:
    """The LKJ Cholesky transform indexes its value symbolically (an array raised IndexError)."""
    from pymc.initial_point import make_initial_point_fn

    built = build(theophylline_model(), theoph)
    start = make_initial_point_fn(
        model=built.pm_model, overrides=built.initvals, return_transformed=False
    )
    starts = finite_starts(built, start, [1, 2])
    assert len(starts) == 2
    np.testing.assert_allclose(starts[0]["chol_omega_CL_V_ka"], start(1)["chol_omega_CL_V_ka"])


def test_sampling_from_a_bad_start_is_retried_from_fresh_starts() -> None:
    model, bad, good = _wall_model()
    seen: list[list] = []

    def sample(**kwargs):
        seen.append(kwargs["initvals"])
        if any(float(p["a"]) > 0.6 for p in kwargs["initvals"]):
            raise RuntimeError("Bad initial energy: inf. The model might be misspecified.")
        return "tree"

    starts = iter([good, bad, good])
    kwargs = {"initvals": [bad, good]}
    got = sample_with_fresh_starts(sample, kwargs, _Built(model), lambda s: next(starts), [1, 2])
    assert got == "tree" and len(seen) == 2
    assert [float(p["a"]) for p in seen[1]] == [0.5, 0.5]
    with pytest.raises(RuntimeError, match="unrelated"):  # other failures are not retried
        sample_with_fresh_starts(
            lambda **k: (_ for _ in ()).throw(RuntimeError("unrelated")), kwargs, None, None, []
        )


# ------------------------------------------------------------------ fit arguments


def test_fit_arguments_are_checked_before_building(theoph) -> None:
    model = theophylline_model()
    with pytest.raises(SpecificationError, match=r"data must be a NonmemDataset, got DataFrame"):
        model.fit(theoph.records)
    with pytest.raises(SpecificationError, match=r"cores must be a positive int"):
        model.fit(theoph, cores=0)
    with pytest.raises(SpecificationError, match=r"max_treedepth must be a positive int"):
        model.fit(theoph, max_treedepth=0)
    with pytest.raises(SpecificationError, match=r"mass_matrix='full' is not valid"):
        check_fit_arguments(theoph, cores=None, max_treedepth=10, mass_matrix="full")


def test_nutpie_jitters_the_population_level_only():
    """nutpie's default jitters every free variable, each subject's z offset included; on a
    20-subject Michaelis-Menten ODE study that left two of four chains stuck at sigma ~1 for
    the whole warm-up (R-hat 3.0). Our fits give nutpie the starts of the other backends:
    the population level (and Omega's Cholesky factor, whose zero gradient at zero
    off-diagonals nutpie's mass-matrix initialisation refuses) jittered, subjects at z = 0."""
    from pymc.initial_point import make_initial_point_fn

    from nlme_bayes.builder import build
    from nlme_bayes.examples import theophylline_model
    from nlme_bayes.sampling_safety import nutpie_jitter

    built = build(theophylline_model(), nb.datasets.theophylline())
    names = nutpie_jitter(built)
    assert set(names) == {"CL_pop", "V_pop", "ka_pop", "sigma_add", "chol_omega_CL_V_ka"}
    m = built.pm_model
    jitter = {m[n] for n in names}
    start = make_initial_point_fn(
        model=m, overrides=built.initvals, jitter_rvs=jitter, return_transformed=True
    )
    a, b = start(1), start(2)
    z = [k for k in a if k.startswith("z_eta")]
    assert z and all(np.all(a[k] == 0) and np.all(b[k] == 0) for k in z)
    assert a["CL_pop_log__"] != b["CL_pop_log__"]


def test_start_jitter_width_bounds_the_population_starts():
    """start_jitter=w: every jittered typical value / sigma within exp(+-w) of its start value
    (over 40 seeds, and spread over most of that range: still over-dispersed), subjects at
    z = 0; w = 1 is PyMC's own start function, bit for bit."""
    from pymc.initial_point import make_initial_point_fn

    from nlme_bayes.starts import start_functions

    built = build(theophylline_model(), nb.datasets.theophylline())
    m = built.pm_model
    base = make_initial_point_fn(model=m, overrides=built.initvals, return_transformed=True)(0)
    half = start_functions(m, built.initvals, built.jitter_vars, width=0.5)
    logs = np.array(
        [[half.transformed(s)[f"{p}_pop_log__"] for p in ("CL", "V", "ka")] for s in range(40)]
    )
    dev = logs - np.array([base[f"{p}_pop_log__"] for p in ("CL", "V", "ka")])
    assert np.abs(dev).max() <= 0.5 and np.abs(dev).max(axis=0).min() > 0.4
    nat = half.natural(3)
    assert np.log(nat["CL_pop"]) == pytest.approx(half.transformed(3)["CL_pop_log__"], abs=1e-12)
    assert all(np.all(v == 0) for k, v in nat.items() if k.startswith("z_eta"))
    flat = half.flat(3)
    assert flat.shape == (sum(np.size(v) for v in base.values()),)

    pymc_start = make_initial_point_fn(
        model=m,
        overrides=built.initvals,
        jitter_rvs={m[n] for n in built.jitter_vars},
        return_transformed=False,
    )
    same = start_functions(m, built.initvals, built.jitter_vars, width=1.0).natural(11)
    assert all(np.array_equal(same[k], v) for k, v in pymc_start(11).items())
    with pytest.raises(SpecificationError, match="start_jitter"):
        theophylline_model().fit(nb.datasets.theophylline(), start_jitter=0.0)


def test_nutpie_draws_its_starts_with_our_jitter_width(theoph, monkeypatch):
    """With start_jitter != 1 the fit samples our own nutpie compile, whose start function
    is ours: nutpie's unconstrained layout, jitter within +-w (nutpie's own: +-1), z at
    +-Z_START. The compiled model is caught where nutpie.sample receives it."""
    import nutpie

    from nlme_bayes.sampling_safety import Z_START

    seen = []
    sample = nutpie.sample
    monkeypatch.setattr(nutpie, "sample", lambda cm, **kw: seen.append(cm) or sample(cm, **kw))
    fit = theophylline_model().fit(
        theoph,
        draws=30,
        tune=30,
        chains=2,
        random_seed=1,
        sampler="nutpie",
        start_jitter=0.25,
        progressbar=False,
        check=False,
    )
    assert fit.posterior.sizes["draw"] == 30 and fit.results.attrs["compile_cache"] == "off"
    assert fit.results.attrs["start_jitter"] == 0.25
    built = build(theophylline_model(), theoph)
    (compiled,) = seen
    where = dict(zip(compiled.shape_info[0], compiled.shape_info[1], strict=True))  # nutpie's
    ours = np.array([compiled.initial_point_func(s)[where["CL_pop_log__"]] for s in range(30)])
    dev = np.abs(ours.ravel() - np.log(built.initvals["CL_pop"]))
    assert dev.max() <= 0.25 and dev.max() > 0.2
    z = compiled.initial_point_func(1)[where["z_eta_CL_V_ka"]]
    assert np.allclose(np.abs(z), Z_START)


def test_jittered_starts_follow_nutpie_layout_by_name(theoph):
    """The cached nutpie template (model_from_fgraph) may order its free variables unlike
    the built model; each start must land in the slot nutpie gives its name -- not the
    slot of the built model's order (a warfarin PK/PD fit started tlag at CL's value and
    failed to initialise before this was by name)."""
    import dataclasses

    from nlme_bayes.compiled import with_start_jitter
    from nlme_bayes.starts import start_functions

    @dataclasses.dataclass(frozen=True)
    class Compiled:  # the two fields of nutpie's CompiledPyMCModel that are used
        shape_info: tuple
        initial_point_func: object
        n_dim: int

    built = build(theophylline_model(), theoph)
    m = built.pm_model
    point = m.initial_point()
    names = [m.rvs_to_values[rv].name for rv in m.free_RVs][::-1]  # another order
    sizes = [int(np.size(point[n])) for n in names]
    stops = np.cumsum(sizes)
    slices = [slice(int(b - n), int(b)) for b, n in zip(stops, sizes, strict=True)]
    shapes = [np.shape(point[n]) for n in names]
    fake = Compiled((names, slices, shapes), None, int(stops[-1]))
    jittered = with_start_jitter(fake, built, built.initvals, 0.5)
    expected = start_functions(m, built.initvals, nutpie_jitter(built), width=0.5).transformed(4)
    flat = jittered.initial_point_func(4)
    for name, where, shape in zip(names, slices, shapes, strict=True):
        assert np.array_equal(flat[where].reshape(shape), expected[name]), name
    with pytest.raises(RuntimeError, match="free variables"):
        with_start_jitter(
            Compiled((names[:-1], slices[:-1], shapes[:-1]), None, 1), built, built.initvals, 0.5
        )


def test_a_start_with_zero_density_is_named_when_sampling_fails(theoph, monkeypatch) -> None:
    """The start point is checked when the sampler fails (not before every fit): the error
    names the variable whose density is zero there."""
    from nlme_bayes import inference

    real_build = inference.build

    def bad_start(*args, **kwargs):
        built = real_build(*args, **kwargs)
        built.initvals["sigma_add"] = -1.0  # outside the half-normal's support
        return built

    def refuse(**kwargs):
        raise RuntimeError("Bad initial energy: inf. The model might be misspecified.")

    monkeypatch.setattr(inference, "build", bad_start)
    monkeypatch.setattr(pm, "sample", refuse)
    with pytest.raises(SamplingError, match=r"starting point has zero density for: sigma_add"):
        theophylline_model().fit(theoph, draws=5, tune=5, chains=1, sampler="pymc", check=False)
