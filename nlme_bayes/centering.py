"""Choose each random effect's parameterisation -- centred or non-centred -- from the design.

``Parameter(..., centered="auto")`` asks the builder to decide per Omega block, before the
model is built, from how much the data can say about each subject's random effect.

**The rule** (first-order information, at the data's estimates). The information the
observations ``j`` of subject ``i`` carry about ``eta_ip``, relative to the prior's
(``1 / omega_p^2``), is

.. math::

    \\rho_{ip} = \\omega_p^2 \\sum_j \\left(\\frac{\\partial \\mu_j}{\\partial \\eta_{ip}}\\right)^2
    \\Big/ \\mathrm{SD}_j^2

with :math:`\\mu_j` the mean on the scale of the residual error (``log IPRED`` for a
log-additive error, ``IPRED`` otherwise) and censored (BLQ) observations left out. In the
normal-normal model the posterior variance of ``eta`` is ``omega^2 / (1 + rho)``: ``rho > 1``
means the data dominate the prior. The centred form then mixes better -- the non-centred
offset ``z = eta / omega`` is pinned by the data, so ``z`` and ``omega`` move together along a
narrow ridge; with ``rho < 1`` the centred form has the funnel between ``eta`` and a small
omega, and the non-centred form is the better one (Papaspiliopoulos, Roberts & Skold 2007,
Statistical Science 22:59-73; Gorinova, Moore & Hoffman 2020, ICML, "Automatic
reparameterisation of probabilistic programs").

``rho`` depends on the residual SD and on omega, which only the data tell. Before the model
is sampled, :func:`empirical_bayes_pilot` estimates them by a linearised empirical-Bayes fit
(each subject's etas by damped Gauss-Newton steps, EM updates of the etas' mean and omegas, the
residual scale from the weighted residuals; FOCE's linearisation, a few array operations on the
compiled predictions). ``rho`` is taken at those estimates, with each omega at its lower 5 %
bound ``omega exp(-1.645 / sqrt(2 n))`` for ``n`` subjects: the posterior of omega reaches
that low, and the centred form must not meet its funnel there. A block is centred when the
median of ``rho`` over subjects exceeds 1 for *every* parameter in it, non-centred otherwise:
one parameter with sparse data (an absorption rate sampled twice) keeps its block
non-centred, whose failure mode is slow mixing rather than divergences. An absorption rate
``ka`` is not centred by ``"auto"`` in models with peripheral compartments or an ODE
(:data:`NEVER_CENTRED`): its individual likelihood can be bimodal, and a centred ka kept a
chain in the other mode. The derivatives are
central differences (step 1e-4 on ``eta``) of the compiled predictions, so every structural
model -- closed form, algebraic or ODE -- is handled alike.

Why from the data: the design alone (``rho`` at the sampler's start, omega 0.3 and the
residual SD at its prior's centre, :func:`information_ratio` with ``at="start"``) gave the
same answer for every study on a design. In simulation-based calibration of
``one_cmt_oral`` (100 studies of 12 subjects drawn from the priors,
``benchmarks/results/sbc.md``) that rule centred CL and V everywhere, and 74 of the 100 fits
had divergences -- the noisy studies (residual CV up to 120 %) and those whose omega(CL) was
tiny (0.05), where the non-centred form sampled without any.

Examples
--------
>>> import nlme_bayes as nb
>>> from nlme_bayes import templates
>>> t = templates.get("one_cmt_iv_bolus")
>>> data = t.example_data(n_subjects=12, random_seed=1)
>>> model = t.model(centered="auto")
>>> choice = choose_centering(model, data)
>>> choice.centered
{'CL': True, 'V': True}
>>> print(choice.describe())  # doctest: +ELLIPSIS
Random-effect parameterisation chosen from the data (centered="auto"):
  CL  centred      median information ratio rho = ...
  V   centred      median information ratio rho = ...
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .compile_mode import lean_mode

__all__ = [
    "CenteringChoice",
    "Pilot",
    "choose_centering",
    "empirical_bayes_pilot",
    "information_ratio",
    "resolve_centering",
    "AUTO",
    "THRESHOLD",
]

AUTO = "auto"
#: centred when the median information ratio over subjects exceeds this for every parameter
#: of the block: the data say more about a subject's eta than the prior does
THRESHOLD = 1.0
_STEP = 1e-4  # central-difference step on eta
#: parameters "auto" does not centre (nor their block) unless the structural model is a
#: one-compartment closed form: an absorption rate's individual likelihood can be bimodal
#: (ka swapping with a disposition rate), and with peripheral compartments the rates are close
#: enough for a centred ka to keep a chain in the other mode -- three_cmt_oral at full size:
#: R-hat 1.55 with ka centred, 1.017 non-centred; the 100-subject two-compartment benchmark:
#: R-hat 1.5 with its (CL, V, V2, ka) block centred. In one-compartment models (ka far from
#: CL/V) centring ka helped: one_cmt_oral min ESS 2696 vs 966, 1000 subjects converged where
#: the non-centred fit did not. ``centered=True`` still centres them.
NEVER_CENTRED = frozenset({"ka"})


def _guarded(model: Any) -> frozenset[str]:
    """The parameters of ``model`` that ``"auto"`` leaves non-centred whatever rho says."""
    if getattr(model.structure, "n_compartments", None) == 1:
        return frozenset()
    return NEVER_CENTRED


@dataclass(frozen=True)
class CenteringChoice:
    """The parameterisation chosen for each ``centered="auto"`` random effect.

    Attributes
    ----------
    centered : dict
        Parameter name -> ``True`` (centred) or ``False`` (non-centred), for the parameters
        that asked for ``"auto"``.
    ratio : dict
        Parameter name -> ``float (n_subjects,)``: each subject's information ratio ``rho``.
    threshold : float
        The rule's threshold on the median ``rho``.
    pilot : Pilot or None
        The data's estimates the ratios were taken at (:func:`empirical_bayes_pilot`).

    Examples
    --------
    Made by :func:`choose_centering`; by hand, for three subjects:

    >>> import numpy as np
    >>> ratio = {"CL": np.array([2.0, 4.0, 9.0]), "V": np.array([0.2, 0.5, 3.0])}
    >>> choice = CenteringChoice({"CL": True, "V": False}, ratio)
    >>> choice
    CenteringChoice(centered={'CL': True, 'V': False}, threshold=1.0, guarded=frozenset())
    """

    centered: dict[str, bool]
    ratio: dict[str, np.ndarray] = field(repr=False)
    threshold: float = THRESHOLD
    pilot: Pilot | None = field(default=None, repr=False)
    guarded: frozenset[str] = frozenset()

    def median_ratio(self, name: str) -> float:
        """Median over subjects of ``name``'s information ratio.

        Examples
        --------
        >>> import numpy as np
        >>> ratio = {"CL": np.array([2.0, 4.0, 9.0]), "V": np.array([0.2, 0.5, 3.0])}
        >>> choice = CenteringChoice({"CL": True, "V": False}, ratio)
        >>> choice.median_ratio("CL"), choice.median_ratio("V")
        (4.0, 0.5)
        """
        return float(np.median(self.ratio[name]))

    def apply(self, model: Any) -> Any:
        """``model`` with each ``"auto"`` replaced by the choice.

        Examples
        --------
        >>> import numpy as np
        >>> from nlme_bayes import templates
        >>> model = templates.get("one_cmt_iv_bolus").model(centered="auto")
        >>> ratio = {"CL": np.array([2.0, 4.0, 9.0]), "V": np.array([0.2, 0.5, 3.0])}
        >>> choice = CenteringChoice({"CL": True, "V": False}, ratio)
        >>> [(p.name, p.centered) for p in choice.apply(model).parameters]
        [('CL', True), ('V', False)]
        """
        params = tuple(
            dataclasses.replace(p, centered=self.centered[p.name])
            if p.centered == AUTO and p.name in self.centered
            else p
            for p in model.parameters
        )
        return model.replace(parameters=params)

    def to_json(self) -> str:
        """Decision and median ratio per parameter (how a fit's attributes keep it).

        With a :class:`Pilot`, also the omega and residual scale the ratios were taken at.

        Examples
        --------
        >>> import numpy as np
        >>> ratio = {"CL": np.array([2.0, 4.0, 9.0]), "V": np.array([0.2, 0.5, 3.0])}
        >>> choice = CenteringChoice({"CL": True, "V": False}, ratio)
        >>> print(choice.to_json())
        {"CL": {"centered": true, "median_ratio": 4.0},
         "V": {"centered": false, "median_ratio": 0.5}}
        """
        out: dict[str, Any] = {
            n: {"centered": c, "median_ratio": self.median_ratio(n)}
            for n, c in self.centered.items()
        }
        if self.pilot is not None:  # the data's estimates the ratios were taken at
            for n in self.centered:
                out[n]["omega_pilot"] = self.pilot.omega[n]
                out[n]["residual_scale_pilot"] = self.pilot.residual_scale
        return json.dumps(out)

    def describe(self) -> str:
        """One line per parameter: the choice and its median information ratio.

        Examples
        --------
        >>> import numpy as np
        >>> ratio = {"CL": np.array([2.0, 4.0, 9.0]), "V": np.array([0.2, 0.5, 3.0])}
        >>> choice = CenteringChoice({"CL": True, "V": False}, ratio)
        >>> print(choice.describe())
        Random-effect parameterisation chosen from the data (centered="auto"):
          CL  centred      median information ratio rho = 4 (subjects: 2 - 9)
          V   non-centred  median information ratio rho = 0.5 (subjects: 0.2 - 3)
        """
        lines = ['Random-effect parameterisation chosen from the data (centered="auto"):']
        width = max(map(len, self.centered), default=0)
        for n, c in self.centered.items():
            r = self.ratio[n]
            lines.append(
                f"  {n:<{width}}  {'centred    ' if c else 'non-centred'}  median information "
                f"ratio rho = {np.median(r):.3g} (subjects: {np.min(r):.3g} - {np.max(r):.3g})"
                + (
                    f", at omega {self.pilot.omega_low[n]:.3g} (estimate {self.pilot.omega[n]:.3g})"
                    if self.pilot is not None
                    else ""
                )
                + ("; an absorption rate: not centred by auto (see NEVER_CENTRED)"
                   if n.lower() in self.guarded else "")
            )  # fmt: skip
        if self.pilot is not None:
            lines.append(
                f"  (data's estimates: residual SD {self.pilot.residual_scale:.3g} x the prior's "
                "centre; omegas at their lower 5 % bounds)"
            )
        return "\n".join(lines)


def _auto_blocks(model: Any) -> list[tuple[str, ...]]:
    blocks = model.omega.resolve(model.iiv_names)
    return [b for b in blocks if model.parameter(b[0]).centered == AUTO]


def information_ratio(model: Any, data: Any, *, at: str = "data") -> dict[str, np.ndarray]:
    """Each subject's information ratio ``rho`` for every IIV parameter (see the module).

    ``at="data"`` (the rule's): at the omegas and residual scale estimated from the data by
    :func:`empirical_bayes_pilot`, each omega taken at its lower 5 % bound. ``at="start"``: at
    the sampler's start (every omega 0.3, residual SDs at the priors' central values).
    ``model`` is built non-centred (whatever its ``centered=`` says) to find the derivatives.

    Examples
    --------
    Twelve subjects sampled alike: at the start every subject has the same ratio; at the
    data's estimates (a residual error of a fifth of the prior's centre) the data dominate
    the prior for both CL and V:

    >>> import numpy as np
    >>> from nlme_bayes import templates
    >>> t = templates.get("one_cmt_iv_bolus")
    >>> model, data = t.model(), t.example_data(n_subjects=12, random_seed=1)
    >>> start = information_ratio(model, data, at="start")
    >>> {n: np.unique(r.round(2)).tolist() for n, r in start.items()}
    {'CL': [3.03], 'V': [2.11]}
    >>> ratio = information_ratio(model, data)
    >>> {n: bool(np.median(r) > THRESHOLD) for n, r in ratio.items()}
    {'CL': True, 'V': True}
    """
    if at not in ("data", "start"):
        raise ValueError(f"at={at!r}: choose 'data' or 'start'")
    probe = _Probe(model, data)
    if at == "start":
        jac = probe.jacobian(probe.eta0)
        return {
            n: probe.starts[k] ** 2 * probe.information(jac[..., k], probe.sd0)
            for k, n in enumerate(probe.names)
        }
    pilot = probe.pilot()
    return pilot.ratio


@dataclass(frozen=True)
class Pilot:
    """What :func:`empirical_bayes_pilot` estimates from the data before any sampling.

    Attributes
    ----------
    omega : dict
        Parameter name -> estimated omega (SD of its random effect).
    omega_low : dict
        Parameter name -> lower 5 % bound used by the rule, ``omega * exp(-1.645 / sqrt(2 n))``.
    residual_scale : float
        Residual SD relative to the prior's central value (``0.2``: the data's residual error
        is a fifth of the start's); with several outputs (``DVID``), the median of
        ``residual_scales``, one per output.
    ratio : dict
        Parameter name -> each subject's information ratio at ``omega_low`` and the residual
        scale.
    iterations : int
        Iterations run.

    Examples
    --------
    Made by :func:`empirical_bayes_pilot` (see there); the fields are plain values:

    >>> import numpy as np
    >>> pilot = Pilot(omega={"CL": 0.17}, omega_low={"CL": 0.12}, residual_scale=0.19,
    ...               ratio={"CL": np.array([8.8, 13.7, 30.7])}, iterations=8)
    >>> pilot
    Pilot(omega={'CL': 0.17}, omega_low={'CL': 0.12}, residual_scale=0.19, iterations=8,
          residual_scales=())
    """

    omega: dict[str, float]
    omega_low: dict[str, float]
    residual_scale: float
    ratio: dict[str, np.ndarray] = field(repr=False)
    iterations: int = 0
    residual_scales: tuple[float, ...] = ()


def empirical_bayes_pilot(model: Any, data: Any) -> Pilot:
    """Omegas and residual scale from a linearised empirical-Bayes fit (no sampling).

    Each subject's etas are fitted by damped Gauss-Newton steps on the observations (residual
    scale of the model's error, derivatives by central differences of the compiled
    predictions), with the population distribution ``eta ~ N(m, diag(omega^2))`` as penalty;
    between steps ``m``, ``omega^2`` (EM: mean of ``(eta_i - m)^2`` plus each subject's
    posterior variance) and the residual scale (weighted residual sum of squares over the
    observations less the effective number of fitted etas) are updated -- FOCE's linearisation
    in a few array operations. The estimates only steer the choice of parameterisation.

    Examples
    --------
    >>> from nlme_bayes import templates
    >>> t = templates.get("one_cmt_iv_bolus")
    >>> pilot = empirical_bayes_pilot(t.model(), t.example_data(n_subjects=12, random_seed=1))
    >>> 0.1 < pilot.residual_scale < 0.5  # simulated with CV 10 %, the prior's centre is 50 %
    True
    """
    return _Probe(model, data).pilot()


class _Probe:
    """The model built non-centred, its predictions compiled, evaluated at chosen etas."""

    def __init__(self, model: Any, data: Any) -> None:
        from pymc.initial_point import make_initial_point_fn

        from .builder import _omega_start, build

        probe = model.replace(
            parameters=tuple(dataclasses.replace(p, centered=False) for p in model.parameters)
        )
        built = build(probe, data, store_predictions=False)
        m = built.pm_model
        mu = built.ipred
        if built.log_scale:
            mu = _safe_log(mu)
        outs = m.replace_rvs_by_values([mu, built.residual_sd])
        self.fn = m.compile_fn(
            outs, inputs=m.value_vars, on_unused_input="ignore", mode=lean_mode()
        )
        point = make_initial_point_fn(model=m, overrides=built.initvals, return_transformed=True)(0)
        for name in built.offset_vars:
            if name.startswith("z_"):
                point[name] = np.zeros_like(point[name])
        self.point = point
        self.names = list(probe.iiv_names)
        self.blocks = probe.omega.resolve(self.names)
        self.starts = np.array([_omega_start(probe.parameter(n)) for n in self.names])
        obs = built.observations
        self.n_obs = len(obs)
        self.subject = obs["subject"].to_numpy(dtype=np.int64)
        self.n_subjects = len(built.subject_ids)
        dv = obs["DV"].to_numpy(dtype=float)
        with np.errstate(divide="ignore", invalid="ignore"):
            self.y = np.log(dv) if built.log_scale else dv
        self.group = obs["DVID"].to_numpy() if "DVID" in obs else np.zeros(self.n_obs)
        use = np.isfinite(self.y)
        if built.censoring is not None:
            use &= ~np.asarray(built.censoring.censored, dtype=bool)
        mu0, self.sd0 = self._eval(np.zeros((self.n_subjects, len(self.names))))
        use &= np.isfinite(mu0) & np.isfinite(self.sd0) & (self.sd0 > 0)
        self.use = use
        self.eta0 = np.zeros((self.n_subjects, len(self.names)))

    def _eval(self, eta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Predictions (residual scale) and residual SDs with the subjects' etas ``eta``."""
        pt_ = dict(self.point)
        for block in self.blocks:
            zname = f"z_eta_{'_'.join(block)}"
            idx = [self.names.index(n) for n in block]
            z = eta[:, idx] / self.starts[idx]  # at the start L = diag(starts)
            pt_[zname] = z[:, 0] if np.ndim(self.point[zname]) == 1 else z
        mu, sd = self.fn(pt_)
        shape = (self.n_obs,)
        return (
            np.broadcast_to(np.asarray(mu, dtype=float), shape),
            np.broadcast_to(np.asarray(sd, dtype=float), shape),
        )

    def jacobian(self, eta: np.ndarray) -> np.ndarray:
        """``d mu_j / d eta_(subject j, p)``, (n_obs, n_params), by central differences."""
        jac = np.empty((self.n_obs, len(self.names)))
        for k in range(len(self.names)):
            up, down = eta.copy(), eta.copy()
            up[:, k] += _STEP
            down[:, k] -= _STEP
            jac[:, k] = (self._eval(up)[0] - self._eval(down)[0]) / (2 * _STEP)
        return jac

    def information(self, grad: np.ndarray, sd: np.ndarray) -> np.ndarray:
        """Per subject: sum over its usable observations of ``(grad / sd)^2``."""
        ok = self.use & np.isfinite(grad)
        contrib = np.where(ok, (grad / np.where(ok, sd, 1.0)) ** 2, 0.0)
        return np.bincount(self.subject, weights=contrib, minlength=self.n_subjects)

    def pilot(self, iterations: int = 8) -> Pilot:
        k = len(self.names)
        eta = self.eta0.copy()
        mean = np.zeros(k)
        omega2 = self.starts**2
        groups = [self.group == g for g in np.unique(self.group)]  # one scale per DVID
        scale2 = np.ones(self.n_obs)  # residual variance relative to the start's
        # mu and the residual SD at the start's sigmas follow the current etas (a proportional
        # error's SD moves with the individual prediction)
        mu, sd = self._eval(eta)
        use = self.use.copy()
        limit = 12.0 * self.starts  # a step never takes an eta beyond 12 start SDs
        for _ in range(iterations):
            jac = self.jacobian(eta)
            ok = use & np.all(np.isfinite(jac), axis=1)
            ok &= np.isfinite(sd) & (sd > 0)
            w = np.where(ok, 1.0 / (scale2 * np.where(ok, sd, 1.0) ** 2), 0.0)
            r = np.where(ok, self.y - mu, 0.0)
            j0 = np.where(ok[:, None], jac, 0.0)
            # per subject: H = J'WJ + Omega^-1, g = J'W(r + J eta) + Omega^-1 m
            hess = np.zeros((self.n_subjects, k, k))
            np.add.at(hess, self.subject, j0[:, :, None] * j0[:, None, :] * w[:, None, None])
            rhs = np.zeros((self.n_subjects, k))
            target = r + np.einsum("jk,jk->j", j0, eta[self.subject])
            np.add.at(rhs, self.subject, j0 * (w * target)[:, None])
            prec = np.diag(1.0 / omega2)
            hess_full = hess + prec
            rhs += mean / omega2
            proposal = np.linalg.solve(hess_full, rhs[..., None])[..., 0]
            proposal = np.clip(proposal, -limit, limit)
            # damped: halve the step of subjects whose penalised fit got worse
            step = proposal - eta
            obj_old = self._objective(eta, mu, sd, scale2, mean, omega2)
            for _halving in range(6):
                trial = eta + step
                mu_t, sd_t = self._eval(trial)
                obj_new = self._objective(trial, mu_t, sd_t, scale2, mean, omega2)
                worse = ~(obj_new <= obj_old + 1e-12)
                if not worse.any():
                    break
                step[worse] *= 0.5
            eta = eta + step
            mu, sd = self._eval(eta)
            cov = np.linalg.inv(hess_full)  # each subject's posterior covariance (linearised)
            mean = eta.mean(axis=0)
            omega2 = np.clip(
                np.mean((eta - mean) ** 2 + np.diagonal(cov, axis1=1, axis2=2), axis=0),
                0.02**2,
                2.0**2,
            )
            ok = use & np.isfinite(mu) & np.isfinite(sd) & (sd > 0)
            wrss = np.where(ok, (self.y - mu) ** 2 / np.where(ok, sd, 1.0) ** 2, 0.0)
            # effective number of fitted etas: trace of each subject's hat matrix, shared
            # among the outputs in proportion to their observations
            p_eff = float(np.einsum("sij,sji->", hess, cov))
            n_ok = max(float(ok.sum()), 1.0)
            for g in groups:
                n_g = float((ok & g).sum())
                dof = n_g - p_eff * n_g / n_ok
                if dof < 0.5 * n_g:
                    # the etas absorb most of the residual variation (a sample or two per
                    # subject): the data cannot tell residual error from the random effects,
                    # so the scale is not taken below the prior's centre (the safe side)
                    scale2[g] = max(float(wrss[g].sum()) / max(dof, 1.0), 1.0)
                else:
                    scale2[g] = max(float(wrss[g].sum()) / dof, 1e-6)
        jac = self.jacobian(eta)
        omega = np.sqrt(omega2)
        low = omega * np.exp(-1.645 / np.sqrt(2.0 * self.n_subjects))
        sd = np.sqrt(scale2) * sd
        scales = [float(np.sqrt(scale2[g][0])) for g in groups if g.any()]
        ratio = {n: low[i] ** 2 * self.information(jac[:, i], sd) for i, n in enumerate(self.names)}
        return Pilot(
            omega=dict(zip(self.names, map(float, omega), strict=True)),
            omega_low=dict(zip(self.names, map(float, low), strict=True)),
            residual_scale=scales[0] if len(scales) == 1 else float(np.median(scales)),
            residual_scales=tuple(scales),
            ratio=ratio,
            iterations=iterations,
        )

    def _objective(
        self,
        eta: np.ndarray,
        mu: np.ndarray,
        sd: np.ndarray,
        scale2: np.ndarray,
        mean: np.ndarray,
        omega2: np.ndarray,
    ) -> np.ndarray:
        """Each subject's penalised weighted residual sum of squares."""
        good = np.isfinite(mu) & np.isfinite(sd) & (sd > 0)
        ok = self.use & good
        res = np.where(ok, (self.y - mu) ** 2 / (scale2 * np.where(ok, sd, 1.0) ** 2), 0.0)
        res = np.where(self.use & ~good, np.inf, res)
        data = np.bincount(self.subject, weights=res, minlength=self.n_subjects)
        return data + np.sum((eta - mean) ** 2 / omega2, axis=1)


def _safe_log(x: Any) -> Any:
    import pytensor.tensor as pt

    return pt.log(pt.maximum(x, 1e-300))


def choose_centering(model: Any, data: Any, threshold: float = THRESHOLD) -> CenteringChoice:
    """The parameterisation of every ``centered="auto"`` Omega block of ``model`` on ``data``.

    Parameters
    ----------
    model : nlme_bayes.Model
    data : nlme_bayes.NonmemDataset
    threshold : float
        Centred when the median information ratio exceeds this for every parameter of the
        block (default 1: the data say more about a subject's eta than the prior does).

    Examples
    --------
    >>> from nlme_bayes import templates
    >>> t = templates.get("one_cmt_iv_bolus")
    >>> model = t.model(centered="auto")
    >>> data = t.example_data(n_subjects=12, random_seed=1)
    >>> choose_centering(model, data).centered
    {'CL': True, 'V': True}
    >>> choose_centering(model, data, threshold=10.0).centered  # V's median ratio is about 5
    {'CL': True, 'V': False}
    """
    blocks = _auto_blocks(model)
    if not blocks:
        return CenteringChoice({}, {}, threshold)
    pilot = empirical_bayes_pilot(model, data)
    ratio = pilot.ratio
    centered: dict[str, bool] = {}
    for block in blocks:
        c = all(float(np.median(ratio[n])) > threshold for n in block)
        c = c and not any(n.lower() in _guarded(model) for n in block)
        centered.update({n: c for n in block})
    keep = {n: ratio[n] for n in centered}
    return CenteringChoice(centered, keep, threshold, pilot, _guarded(model))


def resolve_centering(model: Any, data: Any) -> tuple[Any, CenteringChoice | None]:
    """``model`` with its ``"auto"`` random effects decided, and the choice (None if none).

    Examples
    --------
    >>> from nlme_bayes import templates
    >>> t = templates.get("one_cmt_iv_bolus")
    >>> data = t.example_data(n_subjects=12, random_seed=1)
    >>> model, choice = resolve_centering(t.model(centered="auto"), data)
    >>> [(p.name, p.centered) for p in model.parameters], choice.centered
    ([('CL', True), ('V', True)], {'CL': True, 'V': True})
    >>> fixed = t.model(centered=False)
    >>> resolve_centering(fixed, data) == (fixed, None)  # nothing to decide
    True
    """
    if not _auto_blocks(model):
        return model, None
    choice = choose_centering(model, data)
    return choice.apply(model), choice
