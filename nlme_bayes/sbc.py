r"""Simulation-based calibration (SBC): does the sampler give the posterior the model implies?

If the parameters are drawn from the prior, the data from the model given them, and the
posterior computed *correctly*, then the rank of the true value among ``L`` independent
posterior draws is uniform on ``0..L`` (Talts, Betancourt, Simpson, Vehtari & Gelman 2018,
arXiv:1804.06788). A sampler that is biased, too narrow or too wide -- a funnel it cannot
enter, a mode it does not visit, a wrong gradient, a likelihood that does not match the
simulator -- bends the rank histogram: a U shape (posterior too narrow), a hump (too wide),
a slope (biased). SBC checks the *computation* on the model and design the user cares about,
not a single data set.

The study runs as a batch plan (:mod:`nlme_bayes.batch`), so it scales from this laptop to a
cluster, restarts where it stopped, and keeps every fit:

1. :func:`prepare` draws ``n_replicates`` parameter sets and data sets from the prior
   predictive distribution on the design (:func:`~nlme_bayes.prior_predictive.
   prior_predictive`: population parameters, Omega, new random effects for every subject,
   residual error), and writes them as NONMEM-style CSV files next to the model (JSON), the
   true values (``truth.csv``) and a plan (``plan.toml``).
2. :func:`run` fits every replicate (``nlme_bayes.batch.run_plan``; a compiled model is
   reused across replicates).
3. :func:`ranks` gives, per replicate and quantity, the rank of the truth among ``L``
   draws thinned evenly from each chain, the posterior quantiles, and the fit's convergence;
   :func:`uniformity` tests the ranks of each quantity (chi-square over equal-width bins,
   Bonferroni over the quantities); :func:`coverage` gives the coverage of central credible
   intervals with binomial limits; :func:`plot_ranks` draws the rank histograms with the
   99 % band of a uniform histogram.

Quantities: every population-level scalar (typical values, covariate coefficients, omegas,
correlations of an Omega block, residual SDs) and the random effects of the first subject.

The prior must not depend on the data. The builder's default prior of an additive residual
SD does (``HalfNormal(SD of DV)``): :func:`prepare` pins it to its value on the design's own
DV. (The proportional-error floor, ``1e-6`` of the median DV, also follows the data; it
changes predictions above ``1e-3`` of the median by less than ``1e-12``.) Models with
censoring (``blq=``) are refused: a replicate would need its own BLQ flags.

Examples
--------
>>> import tempfile
>>> from nlme_bayes import sbc, templates
>>> t = templates.get("emax")
>>> study = sbc.prepare(t.model(), t.example_data(n_subjects=6, random_seed=1),
...                     tempfile.mkdtemp(), n_replicates=20, draws=200, tune=200, chains=2)
>>> len(study.truth), study.quantities[:4]
(20, ('E0_pop', 'Emax_pop', 'ED50_pop', 'omega_E0'))
>>> summary = sbc.run(study)  # doctest: +SKIP
>>> sbc.uniformity(sbc.ranks(study))  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import json
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .errors import SpecificationError
from .residual_family import is_residual_parameter

__all__ = [
    "SBCStudy",
    "coverage",
    "load_study",
    "pin_data_priors",
    "plot_ranks",
    "prepare",
    "ranks",
    "run",
    "uniformity",
]

_STUDY_FILE = "sbc.json"
_MODEL_FILE = "model.json"
_TRUTH_FILE = "truth.csv"
_PLAN_FILE = "plan.toml"


@dataclass(frozen=True)
class SBCStudy:
    """An SBC study on disk: the plan, the replicates and their true values.

    Attributes
    ----------
    folder : Path
        Holds ``plan.toml``, ``model.json``, ``truth.csv``, ``sbc.json``, ``sims/`` (one CSV
        per replicate) and ``fits/`` (results, manifest).
    quantities : tuple of str
        Names of the checked quantities (columns of ``truth``).
    truth : pandas.DataFrame
        One row per replicate (index ``replicate``, the dataset name in the plan).
    n_ranks : int
        Ranks take the values ``0 .. n_ranks - 1`` (``n_ranks - 1`` thinned draws).

    Examples
    --------
    >>> import tempfile
    >>> from nlme_bayes import templates
    >>> t = templates.get("emax")
    >>> study = prepare(t.model(), t.example_data(n_subjects=6, random_seed=1), tempfile.mkdtemp(),
    ...                 n_replicates=20, draws=200, tune=200, chains=2)
    >>> study.truth.shape, study.n_ranks  # 20 replicates, 10 quantities
    ((20, 10), 100)
    >>> load_study(study.folder).quantities == study.quantities  # read back from its folder
    True

    ``benchmarks/validate_sbc.py`` writes full-size studies (``load_study("sbc_one_cmt_oral")``).
    """

    folder: Path
    quantities: tuple[str, ...]
    truth: pd.DataFrame
    n_ranks: int

    @property
    def plan_path(self) -> Path:
        """The batch plan of the study.

        Examples
        --------
        >>> study = SBCStudy(Path("sbc_one_cmt_oral"), ("CL_pop",), pd.DataFrame(), 100)
        >>> study.plan_path.as_posix()
        'sbc_one_cmt_oral/plan.toml'
        """
        return self.folder / _PLAN_FILE


# --------------------------------------------------------------------------- preparation
def pin_data_priors(model: Any, data: Any) -> Any:
    """``model`` with every data-derived default prior replaced by its value on ``data``.

    The default prior of an additive residual SD is ``HalfNormal(SD of the observed DV)``
    (per DVID); SBC needs one prior for every replicate, so it is pinned to the design's.

    Examples
    --------
    >>> from nlme_bayes import templates
    >>> t = templates.get("emax")
    >>> pinned = pin_data_priors(t.model(), t.example_data(n_subjects=4, random_seed=1))
    >>> pinned.error.sigma.dist
    'HalfNormal'
    """
    from .builder import additive_prior_scale
    from .priors import Prior
    from .spec import Additive, Combined

    obs = data.observations()

    def pinned(err: Any, mask: np.ndarray) -> Any:
        scale = additive_prior_scale(obs["DV"].to_numpy(dtype=float)[mask])
        prior = Prior("HalfNormal", sigma=float(f"{scale:.6g}"))
        if isinstance(err, Additive) and err.sigma is None:
            return dataclasses.replace(err, sigma=prior)
        if isinstance(err, Combined) and err.additive is None:
            return dataclasses.replace(err, additive=prior)
        return err

    dvid = obs["DVID"].to_numpy() if "DVID" in obs else np.ones(len(obs), int)
    if isinstance(model.error, Mapping):
        error = {k: pinned(e, dvid == int(k)) for k, e in model.error.items()}
    else:
        error = pinned(model.error, np.ones(len(obs), bool))
    return model.replace(error=error)


def _truth_table(draws: Any, model: Any, first_subject: Any) -> pd.DataFrame:
    """True values per replicate: population scalars, correlations, first subject's etas."""
    cols: dict[str, np.ndarray] = {}
    for name, da in draws.data_vars.items():
        if da.dims == ("draw",) and not str(name).startswith(("phi_", "z_", "chol_")):
            cols[str(name)] = da.values.astype(float)
    if "omega_corr" in draws:
        corr = draws["omega_corr"]
        names = [str(p) for p in corr["param"].values]
        for a in range(len(names)):
            for b in range(a):
                values = corr.isel(param=a, param_bis=b).values.astype(float)
                if np.any(values != 0.0):  # within an Omega block
                    cols[f"corr_{names[a]}_{names[b]}"] = values
    if "eta" in draws:
        eta = draws["eta"].sel(subject=first_subject)
        for p in eta["param"].values:
            cols[f"eta_{p}[{first_subject}]"] = eta.sel(param=p).values.astype(float)
    fixed = {p.name for p in model.parameters if p.fixed}
    return pd.DataFrame({k: v for k, v in cols.items() if k.removesuffix("_pop") not in fixed})


def _order(quantities: Sequence[str], model: Any) -> tuple[str, ...]:
    """Typical values, other coefficients, omegas, correlations, residual SDs, then etas."""
    pop = [f"{n}_pop" for n in model.parameter_names if f"{n}_pop" in quantities]
    omegas = [f"omega_{n}" for n in model.iiv_names if f"omega_{n}" in quantities]
    corr = sorted(q for q in quantities if q.startswith("corr_"))
    sigmas = sorted(q for q in quantities if is_residual_parameter(q))
    etas = [q for n in model.iiv_names for q in quantities if q.startswith(f"eta_{n}[")]
    named = set(pop + omegas + corr + sigmas + etas)
    other = sorted(q for q in quantities if q not in named)
    return tuple(pop + other + omegas + corr + sigmas + etas)


def _plan_text(
    *, draws: int, tune: int, chains: int, sampler: str, target_accept: float,
    seed: int, n_workers: int, cluster: Mapping[str, Any] | None,
) -> str:  # fmt: skip
    def toml_value(v: Any) -> str:
        return json.dumps(v) if isinstance(v, str) else repr(v).lower() if isinstance(v, bool) \
            else repr(v)  # fmt: skip

    cl = dict(cluster or {"kind": "local", "n_workers": n_workers, "threads_per_worker": 1})
    lines = [
        "# Simulation-based calibration: one fit per replicate (written by nlme_bayes.sbc)",
        "[plan]", 'name = "sbc"', 'output = "fits"', "max_attempts = 2",
        "reuse_compiled = true", "", "[cluster]",
        *(f"{k} = {toml_value(v)}" for k, v in cl.items()), "", "[sampler]",
        f'sampler = "{sampler}"', f"draws = {draws}", f"tune = {tune}", f"chains = {chains}",
        "cores = 1", f"target_accept = {target_accept}", "store_predictions = false", "",
        "[models.m]", f'json = "{_MODEL_FILE}"', "", "[datasets.rep]", 'glob = "sims/*.csv"',
        "", "[[fits]]", 'models = ["m"]', 'datasets = ["rep"]', f"seeds = [{seed}]", "",
    ]  # fmt: skip
    return "\n".join(lines)


def prepare(
    model: Any,
    design: Any,
    folder: str | os.PathLike[str],
    *,
    n_replicates: int = 100,
    random_seed: int = 0,
    draws: int = 1000,
    tune: int = 1000,
    chains: int = 4,
    n_ranks: int = 100,
    sampler: str = "nutpie",
    target_accept: float = 0.9,
    fit_seed: int = 1,
    n_workers: int = 2,
    cluster: Mapping[str, Any] | None = None,
) -> SBCStudy:
    """Draw the replicates from the prior and write the study (data, truth, model, plan).

    Parameters
    ----------
    model : Model
        The model whose computation is checked (data-derived default priors are pinned on
        ``design``: :func:`pin_data_priors`).
    design : NonmemDataset
        Subjects, doses, sampling times and covariates of every replicate (its DV only
        pins data-derived priors).
    folder : path-like
        Created if needed; must not already hold a study.
    n_replicates : int
        Number of simulated studies (>= 100 for a test with some power).
    random_seed : int
        Seed of the prior draws.
    draws, tune, chains, sampler, target_accept : fit settings of every replicate.
    n_ranks : int
        Ranks take ``n_ranks`` values (``n_ranks - 1`` thinned draws); at most the
        number of draws, and ideally below each fit's effective sample size.
    fit_seed : int
        Sampler seed of every fit.
    n_workers : int
        Workers of the local Dask cluster (ignored when ``cluster`` is given).
    cluster : mapping, optional
        The plan's ``[cluster]`` table (e.g. ``{"kind": "slurm", ...}``).

    Returns
    -------
    SBCStudy

    Raises
    ------
    SpecificationError
        A bad setting, a model with censoring, or a folder that already holds a study.

    Examples
    --------
    >>> import tempfile
    >>> from nlme_bayes import templates
    >>> t = templates.get("emax")
    >>> study = prepare(t.model(), t.example_data(n_subjects=4, random_seed=2),
    ...                 tempfile.mkdtemp(), n_replicates=5, draws=100, chains=2, n_ranks=20)
    >>> sorted(p.name for p in study.folder.iterdir())
    ['model.json', 'plan.toml', 'sbc.json', 'sims', 'truth.csv']
    """
    from .prior_predictive import prior_predictive

    for name, value, low in (
        ("n_replicates", n_replicates, 2), ("draws", draws, 2), ("chains", chains, 1),
        ("n_ranks", n_ranks, 2), ("tune", tune, 0), ("n_workers", n_workers, 1),
    ):  # fmt: skip
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise SpecificationError(f"sbc.prepare: {name} must be an integer >= {low}, got "
                                     f"{value!r}.")  # fmt: skip
    if n_ranks - 1 > draws * chains:
        raise SpecificationError(
            f"sbc.prepare: n_ranks - 1 = {n_ranks - 1} thinned draws need at least that many "
            f"posterior draws; the fits keep chains x draws = {chains * draws}."
        )
    if getattr(model, "blq", None) is not None:
        raise SpecificationError(
            "sbc.prepare: models with censoring (blq=) are not supported: every replicate "
            "would need its own BLQ flags. Check the model without blq= (the likelihood of "
            "the uncensored observations is the same code)."
        )
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if (folder / _STUDY_FILE).exists() or (folder / "sims").exists():
        raise SpecificationError(
            f"sbc.prepare: {folder} already holds a study; use load_study({str(folder)!r}) "
            "to continue it, or choose another folder."
        )
    pinned = pin_data_priors(model, design)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning)
        pp = prior_predictive(
            pinned, design, n_draws=int(n_replicates), n_points=2, random_seed=random_seed
        )
    records = design.records
    first = design.subject_ids[0]
    truth = _truth_table(pp.draws, pinned, first)
    quantities = _order(list(truth.columns), pinned)
    width = max(4, len(str(n_replicates)))
    names = [f"rep-r{r + 1:0{width}d}" for r in range(n_replicates)]
    truth.index = pd.Index(names, name="replicate")
    truth = truth[list(quantities)]

    # the draws' obs axis -> the design's records (by ROW, never by position)
    where = pd.Index(records["ROW"].to_numpy()).get_indexer(pp.observations["ROW"].to_numpy())
    rows = records.index[where]
    (folder / "sims").mkdir()
    dv = pp.draws["DV"].values
    for r, name in enumerate(names):
        frame = records.copy()
        frame.loc[rows, "DV"] = dv[r]
        frame.drop(columns="ROW").to_csv(folder / "sims" / f"{name[4:]}.csv", index=False)
    truth.to_csv(folder / _TRUTH_FILE)
    (folder / _MODEL_FILE).write_text(json.dumps(pinned.to_dict(), indent=1))
    (folder / _PLAN_FILE).write_text(
        _plan_text(
            draws=int(draws),
            tune=int(tune),
            chains=int(chains),
            sampler=sampler,
            target_accept=float(target_accept),
            seed=int(fit_seed),
            n_workers=int(n_workers),
            cluster=cluster,
        )  # fmt: skip
    )
    meta = {"quantities": list(quantities), "n_ranks": int(n_ranks),
            "n_replicates": int(n_replicates), "random_seed": int(random_seed),
            "first_subject": str(first)}  # fmt: skip
    (folder / _STUDY_FILE).write_text(json.dumps(meta, indent=1))
    return SBCStudy(folder=folder, quantities=quantities, truth=truth, n_ranks=int(n_ranks))


def load_study(folder: str | os.PathLike[str]) -> SBCStudy:
    """The study that :func:`prepare` wrote into ``folder``.

    Raises
    ------
    SpecificationError
        ``folder`` holds no study.

    Examples
    --------
    >>> load_study("no/such/folder")
    Traceback (most recent call last):
    ...
    nlme_bayes.errors.SpecificationError: no SBC study in no/such/folder (sbc.json is missing); ...
    """
    folder = Path(folder)
    if not (folder / _STUDY_FILE).is_file():
        raise SpecificationError(
            f"no SBC study in {folder} ({_STUDY_FILE} is missing); create one with "
            "nlme_bayes.sbc.prepare()."
        )
    meta = json.loads((folder / _STUDY_FILE).read_text())
    truth = pd.read_csv(folder / _TRUTH_FILE, index_col="replicate")
    return SBCStudy(folder, tuple(meta["quantities"]), truth, int(meta["n_ranks"]))


# --------------------------------------------------------------------------- fitting
def run(study: SBCStudy, *, progress: bool = False, client: Any = None) -> Any:
    """Fit every replicate not fitted yet (the study's batch plan).

    Returns
    -------
    nlme_bayes.batch.RunSummary

    Examples
    --------
    A two-replicate study with short chains (``progress=True`` shows a progress bar):

    >>> import tempfile
    >>> from nlme_bayes import templates
    >>> t = templates.get("emax")
    >>> small = prepare(t.model(), t.example_data(n_subjects=6, random_seed=1), tempfile.mkdtemp(),
    ...                 n_replicates=2, draws=50, tune=50, chains=1, n_ranks=10, n_workers=1)
    >>> summary = run(small)  # doctest: +SKIP
    >>> summary.ok, len(summary.ran)  # doctest: +SKIP
    (True, 2)
    >>> bool(ranks(small)["rank"].notna().all())  # every replicate ranked  # doctest: +SKIP
    True
    """
    from .batch import load_plan, run_plan

    return run_plan(load_plan(study.plan_path), progress=progress, client=client)


# --------------------------------------------------------------------------- analysis
def _posterior_quantity(post: Any, name: str) -> np.ndarray | None:
    """Draws ``(chain, draw)`` of one quantity of :func:`_truth_table`'s naming."""
    if name in post:
        return post[name].values
    if name.startswith("corr_") and "omega_corr" in post:
        a, b = name[5:].split("_", 1)
        params = [str(p) for p in post["omega_corr"]["param"].values]
        if a in params and b in params:
            return post["omega_corr"].sel(param=a, param_bis=b).values
    if name.startswith("eta_") and "eta" in post:
        param, subject = name[4:].split("[", 1)
        subject = subject.rstrip("]")
        ids = [str(s) for s in post["eta"]["subject"].values]
        if subject in ids:
            return post["eta"].isel(subject=ids.index(subject)).sel(param=param).values
    return None


def _thin(draws: np.ndarray, n: int) -> np.ndarray:
    """``n`` draws spread evenly over the chains and, within each, over the draws."""
    chains, length = draws.shape
    per = np.full(chains, n // chains)
    per[: n % chains] += 1
    out = [draws[c, np.linspace(0, length - 1, k).round().astype(int)]
           for c, k in enumerate(per) if k]  # fmt: skip
    return np.concatenate(out)


def ranks(study: SBCStudy) -> pd.DataFrame:
    """Rank of each true value among ``n_ranks - 1`` thinned posterior draws, per replicate.

    Returns
    -------
    pandas.DataFrame
        One row per (replicate, quantity): ``truth``, ``rank`` (``0 .. n_ranks - 1``), the
        posterior ``mean``, ``sd`` and quantiles ``q05, q25, q75, q95`` (from all draws),
        and the fit's ``max_rhat``, ``min_ess_bulk``, ``divergences`` and ``status``.
        Replicates whose fit has not succeeded keep their rows with ``rank`` missing and
        their ``status``: nothing is dropped silently.

    Examples
    --------
    Before :func:`run`, every replicate is listed and none is ranked:

    >>> import tempfile
    >>> from nlme_bayes import templates
    >>> t = templates.get("emax")
    >>> study = prepare(t.model(), t.example_data(n_subjects=6, random_seed=1), tempfile.mkdtemp(),
    ...                 n_replicates=2, draws=50, tune=50, chains=1, n_ranks=10)
    >>> table = ranks(study)
    >>> table.shape, table["status"].unique().tolist(), int(table["rank"].notna().sum())
    ((20, 8), ['not run'], 0)

    After ``run(study)``, ``table.groupby("quantity")["rank"].mean()`` should be near
    ``(n_ranks - 1) / 2`` (see :func:`run`'s example).
    """
    from .batch import collect, load_plan
    from .io import load

    plan = load_plan(study.plan_path)
    table = collect(plan)
    status = table.set_index("dataset") if len(table) else pd.DataFrame()
    rows = []
    for task in plan.tasks:
        rep = task.dataset
        info = status.loc[rep] if rep in status.index else None
        diag = {k: (None if info is None else info.get(k))
                for k in ("status", "max_rhat", "min_ess_bulk", "divergences")}  # fmt: skip
        diag["status"] = diag["status"] or "not run"
        post = None
        if diag["status"] == "done":
            post = load(plan.results_path(task)).posterior
        for q in study.quantities:
            truth = float(study.truth.loc[rep, q])
            row = {"replicate": rep, "quantity": q, "truth": truth, "rank": np.nan, **diag}
            x = None if post is None else _posterior_quantity(post, q)
            if x is not None:
                thinned = _thin(np.asarray(x, float), study.n_ranks - 1)
                flat = np.asarray(x, float).ravel()
                q05, q25, q75, q95 = np.quantile(flat, [0.05, 0.25, 0.75, 0.95])
                row.update(rank=int(np.sum(thinned < truth)), mean=float(flat.mean()),
                           sd=float(flat.std()), q05=q05, q25=q25, q75=q75, q95=q95)  # fmt: skip
            rows.append(row)
    out = pd.DataFrame(rows)
    out["rank"] = out["rank"].astype("Int64")
    return out


def uniformity(
    table: pd.DataFrame, *, n_ranks: int | None = None, n_bins: int | None = None,
    alpha: float = 0.05,
) -> pd.DataFrame:  # fmt: skip
    """Chi-square test of uniform ranks, per quantity, Bonferroni-corrected over quantities.

    The ``n_ranks`` possible ranks are grouped into ``n_bins`` bins of equal width (default:
    about ``n_replicates / 10`` bins, at most 20, so that each expects 5 or more ranks);
    ``X^2 = sum (observed - expected)^2 / expected`` has ``n_bins - 1`` degrees of freedom.
    A quantity *passes* when its p-value exceeds ``alpha / n_quantities``: the chance that a
    calibrated study fails any quantity is then at most ``alpha``.

    Parameters
    ----------
    table : pandas.DataFrame
        :func:`ranks` (rows without a rank are not tested and counted in ``missing``).
    n_ranks : int, optional
        Number of possible ranks: the study's ``n_ranks`` (default: the largest rank + 1).
    n_bins : int, optional
    alpha : float
        Family-wise level over the quantities.

    Returns
    -------
    pandas.DataFrame
        Index ``quantity``: ``n``, ``missing``, ``n_bins``, ``chi2``, ``df``, ``p_value``,
        ``threshold`` (``alpha / n_quantities``) and ``passed``.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> t = pd.DataFrame({"quantity": ["CL_pop"] * 200 + ["V_pop"] * 200,
    ...                   "rank": np.r_[rng.integers(0, 100, 200), rng.integers(0, 40, 200)]})
    >>> uniformity(t, n_ranks=100)["passed"].to_dict()
    {'CL_pop': True, 'V_pop': False}
    """
    from scipy import stats

    if "rank" not in table or "quantity" not in table:
        raise SpecificationError("uniformity: expected the table of sbc.ranks() (columns "
                                 "'quantity' and 'rank').")  # fmt: skip
    ranked = table.dropna(subset=["rank"])
    if n_ranks is None:
        n_ranks = int(ranked["rank"].max()) + 1 if len(ranked) else 2
    quantities = list(dict.fromkeys(table["quantity"]))
    threshold = alpha / max(len(quantities), 1)
    rows = []
    for q in quantities:
        r = ranked.loc[ranked["quantity"] == q, "rank"].to_numpy(dtype=int)
        n = len(r)
        bins = n_bins or int(np.clip(n // 10, 2, 20))
        bins = min(bins, n_ranks)
        counts = np.bincount(np.minimum(r * bins // n_ranks, bins - 1), minlength=bins)
        # bins of unequal width when n_ranks is not a multiple of n_bins: exact expectations
        widths = np.bincount(np.arange(n_ranks) * bins // n_ranks, minlength=bins)
        expected = n * widths / n_ranks
        chi2 = float(np.sum((counts - expected) ** 2 / expected)) if n else np.nan
        p = float(stats.chi2.sf(chi2, bins - 1)) if n else np.nan
        missing = int((table["quantity"] == q).sum() - n)
        rows.append({"quantity": q, "n": n, "missing": missing, "n_bins": bins, "chi2": chi2,
                     "df": bins - 1, "p_value": p, "threshold": threshold,
                     "passed": bool(n and p > threshold)})  # fmt: skip
    return pd.DataFrame(rows).set_index("quantity")


def coverage(table: pd.DataFrame, *, levels: Sequence[float] = (0.5, 0.9)) -> pd.DataFrame:
    """Coverage of central credible intervals, per quantity, with 99 % binomial limits.

    Over replicates drawn from the prior, a calibrated ``level`` interval contains the
    truth with probability exactly ``level``; the limits are the central 99 % range of
    ``Binomial(n, level) / n``.

    Examples
    --------
    >>> t = pd.DataFrame({"quantity": ["CL_pop"] * 4, "truth": [1.0, 2.0, 3.0, 9.0],
    ...                   "q05": [0.0] * 4, "q25": [0.5] * 4, "q75": [2.5] * 4,
    ...                   "q95": [5.0] * 4, "rank": [1, 2, 3, 4]})
    >>> coverage(t)[["coverage_50", "coverage_90"]].round(2).to_dict("records")
    [{'coverage_50': 0.5, 'coverage_90': 0.75}]
    """
    from scipy import stats

    bounds = {0.5: ("q25", "q75"), 0.9: ("q05", "q95")}
    unknown = [lv for lv in levels if lv not in bounds]
    if unknown:
        raise SpecificationError(f"coverage: levels must be among {sorted(bounds)}, got "
                                 f"{unknown}.")  # fmt: skip
    ranked = table.dropna(subset=["rank"])
    rows = []
    for q, g in ranked.groupby("quantity", sort=False):
        row: dict[str, Any] = {"quantity": q, "n": len(g)}
        for lv in levels:
            lo, hi = bounds[lv]
            inside = (g["truth"] >= g[lo]) & (g["truth"] <= g[hi])
            tag = f"{round(lv * 100)}"
            row[f"coverage_{tag}"] = float(inside.mean())
            a, b = stats.binom.interval(0.99, len(g), lv)
            row[f"limits_{tag}"] = f"{a / len(g):.2f}-{b / len(g):.2f}"
            row[f"within_{tag}"] = bool(a / len(g) <= inside.mean() <= b / len(g))
        rows.append(row)
    return pd.DataFrame(rows).set_index("quantity")


def plot_ranks(
    table: pd.DataFrame, path: str | os.PathLike[str] | None = None, *,
    n_ranks: int | None = None, n_bins: int | None = None, title: str | None = None,
) -> Any:  # fmt: skip
    """Rank histograms, one panel per quantity, with the 99 % band of a uniform histogram.

    Each bin of a uniform histogram holds ``Binomial(n, 1/n_bins)`` ranks: the grey band is
    its central 99 % range (per bin, not simultaneous: about one bin in a hundred leaves it
    by chance). U shape: posterior too narrow; hump: too wide; slope: biased.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> rng = np.random.default_rng(1)
    >>> t = pd.DataFrame({"quantity": ["CL_pop"] * 100, "rank": rng.integers(0, 100, 100)})
    >>> fig = plot_ranks(t, n_ranks=100)
    >>> len(fig.axes)
    1
    """
    from scipy import stats

    from .plots import _figure, _save

    ranked = table.dropna(subset=["rank"])
    if n_ranks is None:
        n_ranks = int(ranked["rank"].max()) + 1 if len(ranked) else 2
    quantities = list(dict.fromkeys(table["quantity"]))
    ncols = min(4, len(quantities))
    nrows = -(-len(quantities) // ncols)
    fig, axes = _figure(nrows, ncols, (3.1 * ncols, 2.4 * nrows))
    for ax, q in zip(axes.ravel(), quantities, strict=False):
        r = ranked.loc[ranked["quantity"] == q, "rank"].to_numpy(dtype=int)
        n = len(r)
        bins = min(n_bins or int(np.clip(n // 10, 2, 20)), n_ranks)
        edges = np.linspace(0, n_ranks, bins + 1)
        lo, hi = stats.binom.interval(0.99, max(n, 1), 1.0 / bins)
        ax.axhspan(lo, hi, color="0.85", lw=0)
        ax.axhline(n / bins, color="0.5", lw=0.8)
        ax.hist(r, bins=edges, color="#1f77b4", edgecolor="white")
        ax.set_title(q, fontsize=9)
        ax.set_xlim(0, n_ranks)
        ax.tick_params(labelsize=7)
    for ax in axes.ravel()[len(quantities) :]:
        ax.set_visible(False)
    fig.suptitle(title or "SBC rank histograms (grey: 99 % range of a uniform histogram)",
                 fontsize=10)  # fmt: skip
    fig.tight_layout()
    return _save(fig, path)
