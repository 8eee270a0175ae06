"""The fit object: the ArviZ results (a ``DataTree``) together with the model and the data."""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from .compile_mode import lean_compilation
from .errors import ConvergenceWarning, SamplingError

__all__ = ["Fit"]


@dataclass(eq=False)
class Fit:
    """A fitted model.

    Attributes
    ----------
    model : Model
        The specification that was fitted.
    data : NonmemDataset
        The data it was fitted to.
    results : xarray.DataTree
        ArviZ results: ``posterior`` (typical values ``*_pop``, ``omega``, ``omega_corr``,
        ``eta (subject, param)``, individual parameters ``(subject)``, ``IPRED``/``PRED``
        ``(obs)``, ``sigma_*``), ``sample_stats``, ``log_likelihood`` (``DV`` per observation
        with ``ID``/``TIME`` coordinates), ``observed_data``, ``constant_data``, and on request
        ``prior``, ``prior_predictive``, ``posterior_predictive``. Root attributes hold the
        model specification (JSON), sampler, seed, timings and package versions.

    Examples
    --------
    A fit comes from :meth:`Model.fit <nlme_bayes.Model.fit>` or :func:`nlme_bayes.load`:

    >>> import nlme_bayes as nb
    >>> from nlme_bayes.examples import theophylline_model
    >>> fit = theophylline_model().fit(nb.datasets.theophylline(), draws=500, tune=500,
    ...                                chains=2, random_seed=1)  # doctest: +SKIP
    >>> fit  # doctest: +SKIP
    <Fit 'theophylline_1cmt_oral': 12 subjects, 132 obs; 2x... draws (nutpie)>
    >>> fit.posterior["CL_pop"].median().item()  # doctest: +SKIP
    0.0...
    """

    model: Any
    data: Any
    results: xr.DataTree
    built: Any = field(default=None, repr=False)

    # ------------------------------------------------------------------ access
    @property
    def idata(self) -> xr.DataTree:
        """Alias of :attr:`results` (ArviZ's traditional name).

        Examples
        --------
        >>> fit.idata is fit.results  # doctest: +SKIP
        True
        >>> fit.idata["posterior"]["CL_pop"].dims  # doctest: +SKIP
        ('chain', 'draw')
        """
        return self.results

    @property
    def posterior(self) -> xr.Dataset:
        """The posterior draws as an xarray Dataset (``results["posterior"]``).

        Examples
        --------
        With ``fit`` the Theophylline fit of 2 chains x 200 draws:

        >>> dict(fit.posterior["CL_pop"].sizes)  # doctest: +SKIP
        {'chain': 2, 'draw': 200}
        >>> fit.posterior["eta"].dims, fit.posterior["param"].values.tolist()  # doctest: +SKIP
        (('chain', 'draw', 'subject', 'param'), ['CL', 'V', 'ka'])
        """
        return self.results["posterior"].dataset

    @property
    def info(self) -> dict[str, Any]:
        """Sampler, seed, draws, timings (s) and package versions of this fit.

        Examples
        --------
        With ``fit`` the Theophylline fit of 2 chains x 200 draws, seed 11:

        >>> info = fit.info  # doctest: +SKIP
        >>> info["random_seed"], info["chains"], info["draws"], info["tune"]  # doctest: +SKIP
        (11, 2, 200, 200)
        >>> info["interruption"] is None  # doctest: +SKIP
        True
        """
        a = self.results.attrs
        return {
            "sampler": a.get("sampler"),
            "random_seed": a.get("random_seed"),
            "draws": a.get("draws"),
            "tune": a.get("tune"),
            "chains": a.get("chains"),
            "timings": json.loads(a.get("timings", "{}")),
            "versions": json.loads(a.get("versions", "{}")),
            "interruption": json.loads(a["interruption"]) if a.get("interruption") else None,
            "nonfinite_transitions": int(a.get("nonfinite_transitions", 0)),
        }

    @property
    def interrupted(self) -> bool:
        """True when sampling was interrupted (Ctrl-C): the posterior holds the draws so far.

        ``info["interruption"]`` then says how many draws each chain completed and which
        were kept; see :func:`nlme_bayes.inference.fit`.

        Examples
        --------
        >>> fit.interrupted  # a fit that ran to the end  # doctest: +SKIP
        False
        """
        return bool(self.results.attrs.get("interruption"))

    def _ensure_built(self) -> Any:
        if self.built is None:
            from .builder import build

            self.built = build(self.model, self.data)
        return self.built

    @property
    def pm_model(self) -> Any:
        """The PyMC model (rebuilt from the specification after :func:`load`).

        Examples
        --------
        >>> import pymc as pm
        >>> isinstance(fit.pm_model, pm.Model)  # doctest: +SKIP
        True
        >>> "CL_pop" in fit.pm_model.named_vars  # doctest: +SKIP
        True
        """
        return self._ensure_built().pm_model

    # ------------------------------------------------------------------ tables
    def summary(self, *, ci_prob: float = 0.95) -> pd.DataFrame:
        """Population parameters: mean, sd, median, credible interval, MCSE, R-hat, ESS.

        Examples
        --------
        >>> fit.summary().round(3)  # doctest: +SKIP
                               kind     mean  ...
        parameter ...
        CL_pop        typical value    0.0...
        ...
        """
        from .summary import summary_table

        return summary_table(self, ci_prob=ci_prob)

    def check_convergence(self, *, warn: bool = False) -> Any:
        """The convergence report (R-hat, ESS, divergences, tree depth, E-BFMI) with advice.

        Examples
        --------
        >>> report = fit.check_convergence()  # doctest: +SKIP
        >>> report.ok, report.figures["max_rhat"]  # doctest: +SKIP
        (..., 1.0...)
        """
        from .summary import check_convergence

        report = check_convergence(self)
        if warn and not report.ok:
            warnings.warn(str(report), ConvergenceWarning, stacklevel=2)
        return report

    def report(self, path: str | os.PathLike | None = None, *, ci_prob: float = 0.95) -> str:
        """A printable report (header, parameter table, convergence verdict).

        With ``path``, also write the full HTML report there (tables, convergence, shrinkage,
        predictive performance and all diagnostic plots; see :mod:`nlme_bayes.report`).

        Examples
        --------
        >>> print(fit.report())  # doctest: +SKIP
        theophylline_1cmt_oral: One-compartment model, first-order absorption (ADVAN2); ...
        12 subjects, 132 observations; NUTS (nutpie), 2 chains x ... draws ...
        >>> _ = fit.report("theophylline_report.html")  # doctest: +SKIP
        """
        if path is not None:
            from .report import write_html_report

            write_html_report(self, path)
        table = self.summary(ci_prob=ci_prob)
        info = self.info
        t = info["timings"]
        head = (
            f"{self.model.name}: {self.model.structure.describe()}\n"
            f"{self.data.n_subjects} subjects, {self.data.n_observations} observations; "
            f"NUTS ({info['sampler']}), {info['chains']} chains x {info['draws']} draws "
            f"(+{info['tune']} warm-up), seed {info['random_seed']}\n"
            f"time: build {t.get('build_s', 0):.1f} s, compile {t.get('compile_s', 0):.1f} s, "
            f"sampling {t.get('sampling_s', 0):.1f} s"
        )
        with pd.option_context("display.width", 160, "display.max_columns", 20):
            body = table.drop(columns="kind").to_string(float_format=lambda v: f"{v:.4g}")
        from .summary import check_convergence

        return f"{head}\n\n{body}\n\n{check_convergence(self, table)}"

    def predictions(self, *, point: str = "mean") -> pd.DataFrame:
        """Per observation: ``ID, TIME, DVID, DV, PRED, IPRED, IWRES`` (posterior ``point``).

        ``IWRES = (DV - IPRED) / sd`` with the residual SD at the posterior point estimate
        of IPRED and sigma (a plug-in residual, as NONMEM reports it). With censoring
        (``Model(blq=...)``) also ``BLQ`` and ``LLOQ``; a censored observation has no IWRES
        (NaN) and its ``DV`` is its LLOQ.

        Examples
        --------
        >>> table = fit.predictions()  # doctest: +SKIP
        >>> list(table.columns)  # doctest: +SKIP
        ['ID', 'TIME', 'DVID', 'DV', 'PRED', 'IPRED', 'IWRES']
        >>> table.loc[0, ["TIME", "DV", "IPRED"]].tolist()  # IPRED(0) = 0  # doctest: +SKIP
        [0.0, 0.74, 0.0]
        """
        post = self.posterior
        agg = (
            (lambda da: da.mean(("chain", "draw")))
            if point == "mean"
            else (lambda da: da.median(("chain", "draw")))
        )
        obs = self._ensure_built().observations
        out = obs[["ID", "TIME", "DVID", "DV"]].copy()
        if "PRED" in post:
            out["PRED"] = agg(post["PRED"]).values
            out["IPRED"] = agg(post["IPRED"]).values
        out["IWRES"] = self._iwres(out, agg)
        info = self._ensure_built().censoring
        if info is not None:  # censored: DV is the LLOQ; no residual is defined
            out["BLQ"] = info.censored
            out["LLOQ"] = info.lloq
            out.loc[info.censored, "IWRES"] = np.nan
        return out

    def _iwres(self, out: pd.DataFrame, agg: Any) -> np.ndarray:
        """(DV - IPRED)/sd, or (log DV - log IPRED)/sigma for the log-scale error model."""
        from .simulation import residual_sd

        post = self.posterior
        sigma = {
            str(v): np.atleast_1d(float(agg(post[v])))
            for v in post.data_vars
            if str(v).startswith("sigma_")
        }
        dv, ipred = out["DV"].to_numpy(float), out["IPRED"].to_numpy(float)
        sd, is_log = residual_sd(self.model, ipred[None, :], out["DVID"].to_numpy(), sigma)
        with np.errstate(divide="ignore", invalid="ignore"):
            resid = np.where(is_log, np.log(dv) - np.log(ipred), dv - ipred)
        return resid / sd[0]

    def ebe(self, *, point: str = "mean") -> pd.DataFrame:
        """Empirical Bayes estimates: individual parameters and etas per subject.

        Examples
        --------
        >>> fit.ebe().head(2)  # doctest: +SKIP
                  CL         V        ka    eta_CL     eta_V    eta_ka
        ID
        1   0.02...
        2   0.04...
        """
        post = self.posterior
        f = (
            (lambda da: da.mean(("chain", "draw")))
            if point == "mean"
            else (lambda da: da.median(("chain", "draw")))
        )
        cols = {p: f(post[p]).values for p in self.model.parameter_names}
        if "eta" in post:
            eta = f(post["eta"])
            for n in eta["param"].values:
                cols[f"eta_{n}"] = eta.sel(param=n).values
        return pd.DataFrame(cols, index=pd.Index(post["subject"].values, name="ID"))

    # ------------------------------------------------------------------ predictive
    def sample_posterior_predictive(self, *, random_seed: int | None = None) -> xr.Dataset:
        """Draw replicated DV from the posterior; stored in ``posterior_predictive``.

        Examples
        --------
        >>> pp = fit.sample_posterior_predictive(random_seed=1)  # doctest: +SKIP
        >>> pp["DV"].dims  # doctest: +SKIP
        ('chain', 'draw', 'obs')
        """
        import pymc as pm

        from .inference import OFFSETS_GROUP, _attach_obs_coords

        tree = self.results
        post = tree["posterior"].dataset
        if OFFSETS_GROUP in tree.children:
            post = post.merge(tree[OFFSETS_GROUP].dataset)
        missing = [rv.name for rv in self.pm_model.free_RVs if rv.name not in post.data_vars]
        if missing:
            # PyMC would draw them from their prior: predictions that ignore the fit
            raise SamplingError(
                "Posterior predictive: the saved draws lack the model's sampled variable(s) "
                f"{', '.join(missing)} (a fit saved by another version of nlme_bayes, e.g. one "
                "whose centred random effects were sampled as eta_* before phi_*). Refit the "
                "model with this version to draw predictions."
            )
        src = xr.DataTree.from_dict(
            {"posterior": post.drop_vars(["ID", "TIME", "DVID"], errors="ignore")}
        )
        with lean_compilation():
            pp = pm.sample_posterior_predictive(
                src,
                model=self.pm_model,
                var_names=["DV"],
                random_seed=random_seed,
                progressbar=False,
            )
        ds = pp["posterior_predictive"].dataset
        tree["posterior_predictive"] = xr.DataTree(ds)
        _attach_obs_coords(tree, self._ensure_built().observations)
        return tree["posterior_predictive"].dataset

    # ------------------------------------------------------------------ plots and i/o
    def plot_gof(self, path: str | os.PathLike | None = None) -> Any:
        """Goodness-of-fit panels: DV vs PRED/IPRED, conditional residuals and NPDE vs TIME/PRED.

        Examples
        --------
        >>> fig = fit.plot_gof("gof.png")  # doctest: +SKIP
        """
        from .plots import plot_gof

        return plot_gof(self, path)

    def plot_individual(self, path: str | os.PathLike | None = None, **kwargs: Any) -> Any:
        """Observed data with individual (IPRED) and population (PRED) curves per subject.

        Examples
        --------
        >>> fig = fit.plot_individual("individual.png")  # doctest: +SKIP
        """
        from .plots import plot_individual

        return plot_individual(self, path, **kwargs)

    def save(self, path: str | os.PathLike) -> None:
        """Write everything (results, model, data, seed, versions) to one NetCDF file.

        Examples
        --------
        >>> fit.save("theophylline_fit.nc")  # doctest: +SKIP
        >>> again = nb.load("theophylline_fit.nc")  # doctest: +SKIP
        """
        from .io import save

        save(self, path)

    def __repr__(self) -> str:
        i = self.info
        return (
            f"<Fit {self.model.name!r}: {self.data.n_subjects} subjects, "
            f"{self.data.n_observations} obs; {i['chains']}x{i['draws']} draws ({i['sampler']})>"
        )
