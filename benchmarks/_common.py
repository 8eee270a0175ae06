"""Shared pieces of the side-by-side benchmarks (ours vs Stan): timing, ESS, inits, reports.

Not a test and not part of the package.  What is measured, for both systems, in one run:

- compile time: nutpie's Numba compilation of our model (``compile_pymc_model``) / Stan's
  C++ build (``stan.build`` of the program with a fresh nonce comment, so httpstan's model
  cache never answers);
- warm-up and sampling time: summed over chains (chain-seconds, each chain's own clock:
  nutpie's ``runtime_ms`` when the chain leaves tuning and at its end; Stan's "Elapsed Time"
  lines), and the wall time of the whole MCMC call (warm-up + sampling, chains in parallel on
  the same number of cores);
- min bulk ESS over the population-level quantities (typical values, omega SDs, omega
  correlations, residual SD) and over everything including each subject's random effects;
- min bulk ESS per second of MCMC wall time, total time to result (build + compile + MCMC;
  for ours the whole ``Model.fit`` call), divergences, max R-hat, leapfrog steps and the time
  per log-density+gradient evaluation implied by them.

Initialisation: both systems start every chain from the same distribution of starting points.
We capture the function our sampler (nutpie, through ``Model.fit``) draws its starts from and
hand Stan ``chains`` draws of it, converted to Stan's constrained parameters (see
:func:`stan_inits`).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import platform
import re
import resource
import sys
import threading
import time
import uuid
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
STAN_DIR = HERE / "stan"


# --------------------------------------------------------------------------- environment
def loadavg() -> list[float]:
    """``os.getloadavg()`` rounded: the other work on the machine while we measured."""
    return [round(x, 2) for x in os.getloadavg()]


def meta(**extra: Any) -> dict[str, Any]:
    """Machine, versions, date and the load average now."""
    import importlib.metadata as md

    def version(pkg: str) -> str | None:
        try:
            return md.version(pkg)
        except md.PackageNotFoundError:
            return None

    out = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": f"{platform.machine()} {os.cpu_count()} cores",
        "python": platform.python_version(),
        "versions": {
            p: version(p)
            for p in ("nlme_bayes", "pymc", "pytensor", "nutpie", "numba", "pystan", "httpstan")
        },
        "loadavg_start": loadavg(),
    }
    out.update(extra)
    return out


def max_rss_mb(children: bool = False) -> float:
    """Peak resident memory of this process (or of its finished children), MiB."""
    who = resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF
    return resource.getrusage(who).ru_maxrss / 1024.0


def quiet() -> None:
    warnings.filterwarnings("ignore")
    import logging

    for name in ("pymc", "pytensor", "httpstan", "stan", "aiohttp"):
        logging.getLogger(name).setLevel(logging.ERROR)


def write_json(name: str, payload: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / name
    path.write_text(json.dumps(payload, indent=2, default=_json_default) + "\n")
    return path


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(type(obj).__name__)


# --------------------------------------------------------------------------- data for Stan
def dosing_pairs(data: Any, obs: Any) -> dict[str, np.ndarray]:
    """Dose-observation pairs (dose at or before the observation), 1-based for Stan.

    ``obs`` is the built model's observation table (its row order is the likelihood's).
    Bolus doses only (what the benchmark studies have).
    """
    ev = data.events()
    doses = ev[(ev["EVID"].isin((1, 4))) & (ev["AMT"] > 0)]
    ids = list(data.subject_ids)
    by_id = {
        sid: (g["TIME"].to_numpy(float), g["AMT"].to_numpy(float)) for sid, g in doses.groupby("ID")
    }
    p_obs, p_subj, p_dose, p_dt = [], [], [], []
    for j, (sid, t) in enumerate(zip(obs["ID"], obs["TIME"], strict=True)):
        td, amt = by_id[sid]
        keep = td <= t
        n = int(keep.sum())
        p_obs += [j + 1] * n
        p_subj += [ids.index(sid) + 1] * n
        p_dose += amt[keep].tolist()
        p_dt += (t - td[keep]).tolist()
    return {
        "N_pair": len(p_obs),
        "pair_obs": np.array(p_obs, int),
        "pair_subj": np.array(p_subj, int),
        "pair_dose": np.array(p_dose, float),
        "pair_dt": np.array(p_dt, float),
    }


def ode_segments(data: Any, obs: Any) -> dict[str, Any]:
    """Dose-to-dose segments for Stan's ODE solvers (see ``stan/mm_oral_ode.stan``).

    A segment starts at a dose (added to the depot) and ends at the subject's next dose; its
    output times are its observations ``t_dose < t <= t_next`` and ``t_next`` itself.
    """
    ev = data.events()
    ids = list(data.subject_ids)
    obs_subject = obs["ID"].to_numpy()
    obs_time = obs["TIME"].to_numpy(float)
    seg = {k: [] for k in ("seg_subj", "seg_new", "seg_t0", "seg_amt", "seg_first", "seg_last")}
    ts: list[float] = []
    obs_ts = np.zeros(len(obs), int)
    for sid in ids:
        d = ev[(ev["ID"] == sid) & (ev["EVID"].isin((1, 4))) & (ev["AMT"] > 0)]
        td, amt = d["TIME"].to_numpy(float), d["AMT"].to_numpy(float)
        mine = np.flatnonzero(obs_subject == sid)
        if (obs_time[mine] <= td[0]).any():
            raise ValueError(f"subject {sid}: observations before the first dose")
        for k in range(len(td)):
            t_next = td[k + 1] if k + 1 < len(td) else np.inf
            in_seg = mine[(obs_time[mine] > td[k]) & (obs_time[mine] <= t_next)]
            ends = {t_next} if k + 1 < len(td) else set()
            times = sorted(set(obs_time[in_seg].tolist()) | ends)
            if not times:
                continue
            first = len(ts) + 1
            ts += times
            for j in in_seg:
                obs_ts[j] = first + times.index(obs_time[j])
            seg["seg_subj"].append(ids.index(sid) + 1)
            seg["seg_new"].append(int(k == 0))
            seg["seg_t0"].append(float(td[k]))
            seg["seg_amt"].append(float(amt[k]))
            seg["seg_first"].append(first)
            seg["seg_last"].append(len(ts))
    out: dict[str, Any] = {k: np.array(v) for k, v in seg.items()}
    out.update(N_seg=len(seg["seg_subj"]), N_ts=len(ts), ts=np.array(ts), obs_ts=obs_ts)
    return out


# --------------------------------------------------------------------------- Stan <-> ours
@dataclass(frozen=True)
class StanMap:
    """How our posterior names map onto a Stan program's parameters.

    ``pop``: our typical-value names in the order of Stan's ``log_pop``; ``iiv``: our
    random-effect parameters in the order of Stan's ``omega``/``L``/``z`` rows; ``sigma``: our
    residual SD name (Stan calls it ``sigma``).
    """

    pop: tuple[str, ...]
    iiv: tuple[str, ...]
    sigma: str
    extra: dict[str, Any] = field(default_factory=dict)


def _constrained_fn(pm_model: Any) -> Any:
    """value variables -> (typical values, omega, omega_corr, z, sigma) on the natural scale."""
    import pytensor

    names = [rv.name for rv in pm_model.free_RVs] + ["omega", "omega_corr"]
    outs = pm_model.replace_rvs_by_values([pm_model[n] for n in names])
    fn = pytensor.function(pm_model.value_vars, outs, on_unused_input="ignore", mode="FAST_COMPILE")
    return names, fn


def unravel(compiled: Any, x: np.ndarray) -> dict[str, np.ndarray]:
    """nutpie's flat unconstrained vector -> {value variable name: array}."""
    out = {}
    n = int(compiled._n_dim)
    for name, sl, shape in zip(*compiled.shape_info, strict=True):
        if name.endswith("__") or name.startswith(("z_", "phi_")):
            if sl.stop > n:
                raise ValueError(f"{name}: slice {sl} outside the {n} free dimensions")
            out[name] = np.asarray(x[sl]).reshape(shape)
    return out


def stan_inits(
    compiled: Any, pm_model: Any, smap: StanMap, chains: int, seed: int
) -> list[dict[str, Any]]:
    """``chains`` starts drawn by *our* sampler's start function, as Stan inits.

    ``compiled.initial_point_func`` is the function nutpie draws each chain's start from
    (typical values, omegas at their ``typical``-derived starts, z = 0 -- each jittered the way
    ``Model.fit`` asks nutpie to); its draws are mapped to Stan's constrained parameters.
    """
    names, fn = _constrained_fn(pm_model)
    seeds = np.random.SeedSequence(seed).generate_state(chains)
    inits = []
    for s in seeds:
        point = unravel(compiled, np.asarray(compiled.initial_point_func(int(s))))
        vals = dict(zip(names, fn(*[point[v.name] for v in pm_model.value_vars]), strict=True))
        inits.append(to_stan(vals, smap))
    return inits


def to_stan(vals: dict[str, Any], smap: StanMap) -> dict[str, Any]:
    """Our natural-scale values -> Stan's constrained parameters (log_pop, omega, L, z, sigma)."""
    corr = np.asarray(vals["omega_corr"], float)
    z_name = [n for n in vals if n.startswith("z_eta_")]
    phi_name = [n for n in vals if n.startswith("phi_")]
    init = {
        "log_pop": np.log([float(vals[f"{p}_pop"]) for p in smap.pop]).tolist(),
        "omega": np.asarray(vals["omega"], float).tolist(),
        "sigma": float(vals[smap.sigma]),
    }
    if smap.extra.get("diagonal"):  # one z block per random effect, (n_subj,) each
        init["z"] = np.stack([np.asarray(vals[f"z_eta_{n}"], float) for n in smap.iiv]).tolist()
    elif len(z_name) == 1:
        init["z"] = np.asarray(vals[z_name[0]], float).T.tolist()
    elif len(phi_name) == 1 and not z_name:  # centred block: phi (subject, param)
        init["phi"] = np.asarray(vals[phi_name[0]], float).tolist()
    else:
        raise ValueError(f"expected one z_eta or phi block, got {z_name + phi_name}")
    if not smap.extra.get("diagonal"):  # the Cholesky factor of the correlation (Stan: L)
        init[smap.extra.get("L_name", "L")] = np.linalg.cholesky(corr).tolist()
    return init


# --------------------------------------------------------------------------- ESS and co.
def _ess(x: np.ndarray) -> float:
    import arviz as az

    return float(az.ess(np.asarray(x, float), method="bulk"))


def _rhat(x: np.ndarray) -> float:
    import arviz as az

    return float(az.rhat(np.asarray(x, float)))


def summarise_draws(pop: dict[str, np.ndarray], eta: np.ndarray | None) -> dict[str, Any]:
    """min bulk ESS / max R-hat over population-level draws ``{name: (chain, draw)}`` and
    over the random effects ``eta`` (chain, draw, subject, param)."""
    ess = {k: _ess(v) for k, v in pop.items()}
    rhat = {k: _rhat(v) for k, v in pop.items()}
    out = {
        "min_ess_bulk": min(ess.values()),
        "min_ess_param": min(ess, key=ess.get),
        "max_rhat": max(rhat.values()),
        "ess_bulk": ess,
        "posterior_mean": {k: float(np.mean(v)) for k, v in pop.items()},
        "posterior_sd": {k: float(np.std(v)) for k, v in pop.items()},
    }
    if eta is not None:
        flat = eta.reshape(eta.shape[0], eta.shape[1], -1)
        ess_eta = [_ess(flat[:, :, j]) for j in range(flat.shape[2])]
        out["min_ess_bulk_all"] = min(out["min_ess_bulk"], min(ess_eta))
        out["max_rhat_all"] = max(
            out["max_rhat"], max(_rhat(flat[:, :, j]) for j in range(flat.shape[2]))
        )
    return out


def ours_draws(fit: Any, smap: StanMap) -> tuple[dict[str, np.ndarray], np.ndarray]:
    post = fit.results["posterior"].dataset
    pop = {p: post[f"{p}_pop"].values for p in smap.pop}
    om = post["omega"].values
    corr = post["omega_corr"].values
    k = len(smap.iiv)
    for j, n in enumerate(smap.iiv):
        pop[f"omega_{n}"] = om[..., j]
    for a in range(k if not smap.extra.get("diagonal") else 0):  # no correlations to compare
        for b in range(a):
            pop[f"corr_{smap.iiv[a]}_{smap.iiv[b]}"] = corr[..., a, b]
    pop["sigma"] = post[smap.sigma].values
    return pop, post["eta"].values


def stan_array(fit: Any, name: str) -> np.ndarray:
    """A pystan draw array as (chain, draw, *shape) (pystan stacks draw-major, chain fastest)."""
    a = np.asarray(fit[name])
    if name.endswith("__") or list(fit.dims[fit.param_names.index(name)]) == []:
        a = a.reshape(-1)
    a = a.reshape(*a.shape[:-1], -1, fit.num_chains)  # (*shape, draw, chain)
    return np.moveaxis(np.moveaxis(a, -1, 0), -1, 1)


def stan_draws(fit: Any, smap: StanMap, tune: int = 0) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """pystan Fit -> the same quantities as :func:`ours_draws` (chain, draw); the first
    ``tune`` saved draws (warm-up) are dropped."""

    def get(name: str) -> np.ndarray:
        return stan_array(fit, name)[:, tune:]

    log_pop = get("log_pop")
    pop = {p: np.exp(log_pop[..., j]) for j, p in enumerate(smap.pop)}
    om = get("omega")
    L = get("L")
    corr = np.einsum("cdij,cdkj->cdik", L, L)
    k = len(smap.iiv)
    for j, n in enumerate(smap.iiv):
        pop[f"omega_{n}"] = om[..., j]
    for a in range(k if not smap.extra.get("diagonal") else 0):
        for b in range(a):
            pop[f"corr_{smap.iiv[a]}_{smap.iiv[b]}"] = corr[..., a, b]
    pop["sigma"] = get("sigma")
    if "phi" in fit.param_names and np.asarray(fit["phi"]).size:
        # the centred form: phi (chain, draw, n_subj, k) are the individual log parameters
        idx = [smap.pop.index(n) for n in smap.iiv]
        return pop, get("phi") - log_pop[..., idx][:, :, None, :]
    z = get("z")  # (chain, draw, k, n_subj)
    chol = om[..., :, None] * L
    eta = np.einsum("cdij,cdjn->cdni", chol, z)
    return pop, eta


# --------------------------------------------------------------------------- our fit
class _Capture:
    """Patches nutpie/PyMC for the duration of one ``Model.fit``: keeps the compiled model,
    the compile time and each chain's progress (runtime and leapfrog steps at the end of
    warm-up and at the end)."""

    def __init__(self) -> None:
        self.compiled: Any = None
        self.compile_s = 0.0
        self.chains: dict[int, dict[str, float]] = {}
        self.lock = threading.Lock()

    @contextlib.contextmanager
    def active(self) -> Iterator[_Capture]:
        import nutpie
        from pymc.progress_bar import progress as pbar

        orig_compile = nutpie.compile_pymc_model
        orig_update = pbar.NutpieProgressBarManager.update
        cap = self

        def compile_pymc_model(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            out = orig_compile(*args, **kwargs)
            cap.compile_s += time.perf_counter() - t0
            cap.compiled = out
            return out

        def update(mgr: Any, chain_progresses: Any) -> None:
            with cap.lock:
                for i, cp in enumerate(chain_progresses):
                    st = cap.chains.setdefault(i, {})
                    now = {
                        "runtime_s": cp.runtime_ms / 1e3,
                        "steps": cp.total_num_steps,
                        "draws": cp.finished_draws,
                        "divergences": cp.divergences,
                    }
                    if cp.tuning:
                        st["tune"] = now
                    elif "tune_end" not in st and cp.started:
                        # first report after warm-up: the warm-up ended between this and the
                        # previous report; take the last in-tuning report as its end
                        st["tune_end"] = st.get("tune", {"runtime_s": 0.0, "steps": 0})
                    st["last"] = now
            return orig_update(mgr, chain_progresses)

        nutpie.compile_pymc_model = compile_pymc_model
        pbar.NutpieProgressBarManager.update = update
        try:
            yield self
        finally:
            nutpie.compile_pymc_model = orig_compile
            pbar.NutpieProgressBarManager.update = orig_update


def run_ours(
    model: Any,
    data: Any,
    smap: StanMap,
    *,
    chains: int,
    draws: int,
    tune: int,
    seed: int,
    **fit_kwargs: Any,
) -> tuple[dict[str, Any], Any, Any]:
    """``model.fit(data)`` with nutpie (what a user runs), measured.

    Returns (metrics, fit, compiled nutpie model).
    """
    cap = _Capture()
    la0 = loadavg()
    t0 = time.perf_counter()
    with cap.active():
        fit = model.fit(
            data,
            draws=draws,
            tune=tune,
            chains=chains,
            random_seed=seed,
            sampler="nutpie",
            progressbar=False,
            check=False,
            **fit_kwargs,
        )
    total = time.perf_counter() - t0
    timings = json.loads(fit.results.attrs["timings"])
    stats = fit.results["sample_stats"].dataset
    pop, eta = ours_draws(fit, smap)
    summ = summarise_draws(pop, eta)
    # per-chain phases from nutpie's own clocks
    tune_end = [c.get("tune_end", c.get("tune", {})) for c in cap.chains.values()]
    warm = [t.get("runtime_s", np.nan) for t in tune_end]
    end = [c["last"]["runtime_s"] for c in cap.chains.values()]
    steps_warm = [t.get("steps", np.nan) for t in tune_end]
    steps_end = [c["last"]["steps"] for c in cap.chains.values()]
    n_leap = float(stats["n_steps"].sum())
    sampling_chain_s = float(np.sum(end) - np.sum(warm))
    mcmc_wall = float(timings["sampling_s"])
    m = {
        "system": "nlme_bayes (nutpie)",
        "build_s": timings["build_s"],
        "compile_s": cap.compile_s,
        "warmup_chain_s": float(np.sum(warm)),
        "sampling_chain_s": sampling_chain_s,
        "mcmc_wall_s": mcmc_wall,
        "total_s": total,
        "leapfrog_warmup": float(np.sum(steps_warm)),
        "leapfrog_sampling": n_leap,
        "leapfrog_all": float(np.sum(steps_end)),
        "divergences": int(stats["diverging"].sum()),
        "loadavg": [la0, loadavg()],
        "cores": int(fit.results.attrs.get("cores", 0)),
        **summ,
    }
    _rates(m)
    return m, fit, cap.compiled


def _rates(m: dict[str, Any]) -> None:
    m["min_ess_per_s"] = m["min_ess_bulk"] / m["mcmc_wall_s"]
    m["min_ess_per_s_total"] = m["min_ess_bulk"] / m["total_s"]
    if m.get("sampling_chain_s"):
        # ESS per second of the draw phase (chain-seconds spread over the cores used)
        m["min_ess_per_s_sampling"] = m["min_ess_bulk"] / (m["sampling_chain_s"] / m["cores"])
    if m.get("leapfrog_all"):
        m["us_per_grad_in_mcmc"] = (
            1e6 * (m["warmup_chain_s"] + m["sampling_chain_s"]) / m["leapfrog_all"]
        )


# --------------------------------------------------------------------------- Stan
def stan_program(name: str) -> str:
    return (STAN_DIR / name).read_text()


def stan_build(code: str, data: dict[str, Any], seed: int) -> tuple[Any, float]:
    """``stan.build`` with a fresh nonce comment (a true compile, never httpstan's cache)."""
    import stan

    code = f"// nonce {uuid.uuid4().hex}\n{code}"
    t0 = time.perf_counter()
    with _silence():
        posterior = stan.build(code, data=_jsonable(data), random_seed=seed)
    return posterior, time.perf_counter() - t0


def stan_rebuild(posterior: Any, data: dict[str, Any], seed: int) -> Any:
    """The same program on other data (httpstan's cache: no compile)."""
    import stan

    with _silence():
        return stan.build(posterior.program_code, data=_jsonable(data), random_seed=seed)


def _jsonable(data: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in data.items()}


@contextlib.contextmanager
def _silence() -> Iterator[None]:
    """pystan prints progress to stderr; keep the benchmark's output readable."""
    fd = sys.stderr.fileno()
    saved = os.dup(fd)
    with open(os.devnull, "w") as null:
        os.dup2(null.fileno(), fd)
        try:
            yield
        finally:
            os.dup2(saved, fd)
            os.close(saved)


_ELAPSED = re.compile(r"([0-9.eE+-]+) seconds \((Warm-up|Sampling)\)")


def stan_sample(
    posterior: Any,
    *,
    chains: int,
    draws: int,
    tune: int,
    inits: Sequence[dict[str, Any]] | None,
    **kwargs: Any,
) -> tuple[Any, dict[str, Any]]:
    """Sample and return (fit, timings): per-chain warm-up/sampling seconds from Stan's own
    "Elapsed Time" messages, the MCMC wall time and the warm-up leapfrog steps."""
    import stan.fit

    captured: list[Any] = []
    orig_init = stan.fit.Fit.__init__

    def init(self: Any, stan_outputs: Any, *args: Any, **kw: Any) -> None:
        captured.append(stan_outputs)
        orig_init(self, stan_outputs, *args, **kw)

    stan.fit.Fit.__init__ = init
    la0 = loadavg()
    t0 = time.perf_counter()
    try:
        with _silence():
            if inits is not None:
                kwargs["init"] = [dict(i) for i in inits]
            fit = posterior.sample(
                num_chains=chains, num_samples=draws, num_warmup=tune, save_warmup=True, **kwargs
            )
    finally:
        stan.fit.Fit.__init__ = orig_init
    wall = time.perf_counter() - t0
    warm, samp = [], []
    for out in captured[0]:  # one output per chain; Stan reports its times once per chain
        w = s = None
        for line in out.splitlines():
            if b"seconds (" not in line:
                continue
            for val, phase in _ELAPSED.findall(line.decode("utf-8", "replace")):
                if phase == "Warm-up" and w is None:
                    w = float(val)
                elif phase == "Sampling" and s is None:
                    s = float(val)
        warm.append(np.nan if w is None else w)
        samp.append(np.nan if s is None else s)
    return fit, {
        "warmup_chain_s": float(np.sum(warm)),
        "sampling_chain_s": float(np.sum(samp)),
        "mcmc_wall_s": wall,
        "loadavg": [la0, loadavg()],
        "per_chain_warmup_s": warm,
        "per_chain_sampling_s": samp,
    }


def run_stan(
    code: str,
    data: dict[str, Any],
    smap: StanMap,
    *,
    chains: int,
    draws: int,
    tune: int,
    seed: int,
    inits: Sequence[dict[str, Any]] | None,
    posterior: Any = None,
    **kwargs: Any,
) -> tuple[dict[str, Any], Any, Any]:
    """Compile (unless ``posterior`` is given) and sample; the same metrics as ours."""
    t0 = time.perf_counter()
    compile_s = 0.0
    if posterior is None:
        posterior, compile_s = stan_build(code, data, seed)
    else:
        posterior = stan_rebuild(posterior, data, seed)
    fit, tm = stan_sample(posterior, chains=chains, draws=draws, tune=tune, inits=inits, **kwargs)
    total = time.perf_counter() - t0
    pop, eta = stan_draws(fit, smap, tune)
    summ = summarise_draws(pop, eta)
    leap = stan_array(fit, "n_leapfrog__")
    lw, ls = leap[:, :tune], leap[:, tune:]
    div = stan_array(fit, "divergent__")[:, tune:]
    m = {
        "system": "Stan (pystan " + _version("pystan") + ")",
        "build_s": 0.0,
        "compile_s": compile_s,
        "warmup_chain_s": tm["warmup_chain_s"],
        "sampling_chain_s": tm["sampling_chain_s"],
        "mcmc_wall_s": tm["mcmc_wall_s"],
        "total_s": total,
        "leapfrog_warmup": float(lw.sum()),
        "leapfrog_sampling": float(ls.sum()),
        "leapfrog_all": float(lw.sum() + ls.sum()),
        "divergences": int(div.sum()),
        "loadavg": tm["loadavg"],
        "cores": min(chains, os.cpu_count() or 1),
        "per_chain_warmup_s": tm["per_chain_warmup_s"],
        "per_chain_sampling_s": tm["per_chain_sampling_s"],
        **summ,
    }
    _rates(m)
    return m, fit, posterior


def _version(pkg: str) -> str:
    import importlib.metadata as md

    try:
        return md.version(pkg)
    except md.PackageNotFoundError:
        return "?"


def ratios(ours: dict[str, Any], stan: dict[str, Any]) -> dict[str, float]:
    """ours / Stan for times (below 1: we are faster) and for ESS/s (above 1: we are faster)."""
    keys = (
        "compile_s",
        "mcmc_wall_s",
        "warmup_chain_s",
        "sampling_chain_s",
        "total_s",
        "min_ess_bulk",
        "min_ess_per_s",
        "min_ess_per_s_sampling",
        "min_ess_per_s_total",
        "us_per_grad_in_mcmc",
        "leapfrog_all",
    )
    out = {}
    for k in keys:
        a, b = ours.get(k), stan.get(k)
        if a is not None and b:
            out[k] = a / b
    return out


# --------------------------------------------------------------------------- logp timing
def time_logp_grad(compiled: Any, x: np.ndarray, seconds: float = 2.0) -> dict[str, float]:
    """Microseconds per log-density+gradient call of nutpie's compiled (Numba) function,
    called through its C entry point (what the sampler calls; ~1 us of ctypes overhead)."""
    f = compiled.compiled_logp_func
    n = int(compiled._n_dim)
    x = np.ascontiguousarray(x, float)
    g = np.zeros(n)
    lp = np.zeros(())
    dp = ctypes.POINTER(ctypes.c_double)
    args = (
        n,
        x.ctypes.data_as(dp),
        g.ctypes.data_as(dp),
        lp.ctypes.data_as(dp),
        compiled.user_data.ctypes.data_as(ctypes.c_void_p),
    )
    call = f.ctypes
    rc = call(*args)
    reps, t0 = 0, time.perf_counter()
    batch = 1
    while True:
        for _ in range(batch):
            call(*args)
        reps += batch
        el = time.perf_counter() - t0
        if el > seconds:
            break
        batch = min(batch * 2, 1000)
    return {
        "us_per_eval": 1e6 * el / reps,
        "evals_per_s": reps / el,
        "rc": int(rc),
        "logp": float(lp),
        "n_dim": n,
    }


def typical_point(compiled: Any, pm_model: Any, initvals: dict[str, Any]) -> np.ndarray:
    """Our un-jittered start (typical values, eta = 0) as nutpie's flat vector."""
    from pymc.initial_point import make_initial_point_fn

    pt = make_initial_point_fn(
        model=pm_model, overrides=initvals, jitter_rvs=set(), return_transformed=True
    )(0)
    x = np.zeros(int(compiled._n_dim))
    for name, sl, _shape in zip(*compiled.shape_info, strict=True):
        if name in pt:
            x[sl] = np.ravel(pt[name])
    return x


def compile_nutpie(pm_model: Any, initvals: dict[str, Any]) -> tuple[Any, float]:
    """nutpie's compile with the settings a fit uses (``inference.REPRODUCIBLE_COMPILE``)."""
    import nutpie
    import pytensor

    from nlme_bayes.inference import REPRODUCIBLE_COMPILE

    t0 = time.perf_counter()
    with pytensor.config.change_flags(**REPRODUCIBLE_COMPILE):
        cm = nutpie.compile_pymc_model(pm_model, initial_points=initvals)
    return cm, time.perf_counter() - t0


# --------------------------------------------------------------------------- Markdown
def fmt(v: Any, nd: int = 1) -> str:
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "-"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, float):
        if abs(v) >= 100:
            return f"{v:.0f}"
        if abs(v) >= 1 or v == 0:
            return f"{v:.{nd}f}"
        return f"{v:.3g}"
    return str(v)


SIDE_ROWS = (
    ("compile s", "compile_s"),
    ("warm-up s (sum over chains)", "warmup_chain_s"),
    ("sampling s (sum over chains)", "sampling_chain_s"),
    ("MCMC wall s (warm-up + sampling)", "mcmc_wall_s"),
    ("total time to result s", "total_s"),
    ("min bulk ESS (population level)", "min_ess_bulk"),
    ("min bulk ESS (incl. every eta)", "min_ess_bulk_all"),
    ("min bulk ESS / s of MCMC wall", "min_ess_per_s"),
    ("min bulk ESS / s of sampling phase", "min_ess_per_s_sampling"),
    ("min bulk ESS / s of total time", "min_ess_per_s_total"),
    ("divergences", "divergences"),
    ("max R-hat (population level)", "max_rhat"),
    ("leapfrog steps (all chains, warm-up + sampling)", "leapfrog_all"),
    ("us per gradient inside MCMC", "us_per_grad_in_mcmc"),
    ("load average (1 min) start / end", None),
)


def side_by_side_md(title: str, ours: dict[str, Any], stan: dict[str, Any]) -> str:
    r = ratios(ours, stan)
    lines = [f"### {title}", "", "| | ours | Stan | ours / Stan |", "|---|---|---|---|"]
    for label, key in SIDE_ROWS:
        if key is None:
            la = f"{ours['loadavg'][0][0]} / {ours['loadavg'][1][0]}"
            lb = f"{stan['loadavg'][0][0]} / {stan['loadavg'][1][0]}"
            lines.append(f"| {label} | {la} | {lb} | |")
            continue
        a, b = ours.get(key), stan.get(key)
        ratio = fmt(r[key], 2) if key in r else ""
        lines.append(f"| {label} | {fmt(a)} | {fmt(b)} | {ratio} |")
    lines.append("")
    return "\n".join(lines)


def posterior_agreement_md(ours: dict[str, Any], stan: dict[str, Any]) -> str:
    """Posterior means of both, with the difference in units of the combined posterior SD."""
    lines = ["| quantity | ours mean (sd) | Stan mean (sd) | diff / sd |", "|---|---|---|---|"]
    for k, a in ours["posterior_mean"].items():
        b = stan["posterior_mean"].get(k)
        if b is None:
            continue
        sa, sb = ours["posterior_sd"][k], stan["posterior_sd"][k]
        z = (a - b) / max(np.hypot(sa, sb), 1e-300)
        lines.append(f"| {k} | {a:.4g} ({sa:.2g}) | {b:.4g} ({sb:.2g}) | {z:+.2f} |")
    return "\n".join(lines) + "\n"
