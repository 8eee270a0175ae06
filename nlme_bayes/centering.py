"""Choose each random effect's parameterisation -- centred or non-centred -- from the design.

``Parameter(..., centered="auto")`` asks the builder to decide per Omega block, before the
model is built, from how much the data can say about each subject's random effect.

**The rule** (first-order information at the starting point). At the sampler's start --
typical values at their starts, every ``eta = 0``, each omega at its start (0.3 on the log
scale) and the residual SDs at their starts -- the information the observations ``j`` of
subject ``i`` carry about ``eta_ip``, relative to the prior's (``1 / omega_p^2``), is

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

A block is centred when the median of ``rho`` over subjects exceeds 1 for *every* parameter in
it, non-centred otherwise: one parameter with sparse data (an absorption rate sampled twice)
keeps its block non-centred, whose failure mode is slow mixing rather than divergences. The
derivatives are central differences (step 1e-4 on ``eta``) of the compiled predictions, so
every structural model -- closed form, algebraic or ODE -- is handled alike.

The residual SDs at their starts are the priors' central values (a proportional CV of 0.5 for
the default ``HalfNormal(0.5)``), usually larger than the residual error the fit will find:
``rho`` is then underestimated, which errs towards the non-centred form.

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
Random-effect parameterisation chosen from the design (centered="auto"):
  CL  centred      median information ratio rho = ...
  V   centred      median information ratio rho = ...
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["CenteringChoice", "choose_centering", "resolve_centering", "AUTO", "THRESHOLD"]

AUTO = "auto"
#: centred when the median information ratio over subjects exceeds this for every parameter
#: of the block: the data say more about a subject's eta than the prior does
THRESHOLD = 1.0
_STEP = 1e-4  # central-difference step on eta


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
    """

    centered: dict[str, bool]
    ratio: dict[str, np.ndarray] = field(repr=False)
    threshold: float = THRESHOLD

    def median_ratio(self, name: str) -> float:
        """Median over subjects of ``name``'s information ratio."""
        return float(np.median(self.ratio[name]))

    def apply(self, model: Any) -> Any:
        """``model`` with each ``"auto"`` replaced by the choice."""
        params = tuple(
            dataclasses.replace(p, centered=self.centered[p.name])
            if p.centered == AUTO and p.name in self.centered
            else p
            for p in model.parameters
        )
        return model.replace(parameters=params)

    def to_json(self) -> str:
        """Decision and median ratio per parameter (how a fit's attributes keep it)."""
        return json.dumps(
            {
                n: {"centered": c, "median_ratio": self.median_ratio(n)}
                for n, c in self.centered.items()
            }
        )

    def describe(self) -> str:
        """One line per parameter: the choice and its median information ratio."""
        lines = ['Random-effect parameterisation chosen from the design (centered="auto"):']
        width = max(map(len, self.centered), default=0)
        for n, c in self.centered.items():
            r = self.ratio[n]
            lines.append(
                f"  {n:<{width}}  {'centred    ' if c else 'non-centred'}  median information "
                f"ratio rho = {np.median(r):.3g} (subjects: {np.min(r):.3g} - {np.max(r):.3g})"
            )
        return "\n".join(lines)


def _auto_blocks(model: Any) -> list[tuple[str, ...]]:
    blocks = model.omega.resolve(model.iiv_names)
    return [b for b in blocks if model.parameter(b[0]).centered == AUTO]


def information_ratio(model: Any, data: Any) -> dict[str, np.ndarray]:
    """Each subject's information ratio ``rho`` for every IIV parameter (see the module).

    ``model`` is built non-centred (whatever its ``centered=`` says) to find the derivatives.
    """
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
    fn = m.compile_fn(outs, inputs=m.value_vars, on_unused_input="ignore")
    point = make_initial_point_fn(model=m, overrides=built.initvals, return_transformed=True)(0)
    for name in built.offset_vars:
        if name.startswith("z_"):
            point[name] = np.zeros_like(point[name])
    names = probe.iiv_names
    n_obs = len(built.observations)
    subject = built.observations["subject"].to_numpy(dtype=np.int64)
    use = np.ones(n_obs, dtype=bool)
    if built.censoring is not None:
        use &= ~np.asarray(built.censoring.censored, dtype=bool)
    mu0, sd0 = (np.broadcast_to(np.asarray(a, dtype=float), (n_obs,)) for a in fn(point))
    use &= np.isfinite(mu0) & np.isfinite(sd0) & (sd0 > 0)
    out: dict[str, np.ndarray] = {}
    for block in probe.omega.resolve(names):
        zname = f"z_eta_{'_'.join(block)}"
        for j, n in enumerate(block):
            start = _omega_start(probe.parameter(n))
            step = _STEP / start  # z step giving an eta step of _STEP (start: L = diag(starts))
            mus = []
            for sign in (1.0, -1.0):
                pt_ = dict(point)
                z = np.array(point[zname], dtype=float, copy=True)
                if z.ndim == 1:
                    z += sign * step
                else:
                    z[:, j] += sign * step
                pt_[zname] = z
                mus.append(np.broadcast_to(np.asarray(fn(pt_)[0], dtype=float), (n_obs,)))
            grad = (mus[0] - mus[1]) / (2 * _STEP)
            ok = use & np.isfinite(grad)
            contrib = np.where(ok, (grad / np.where(ok, sd0, 1.0)) ** 2, 0.0)
            info = np.bincount(subject, weights=contrib, minlength=len(built.subject_ids))
            out[n] = start**2 * info
    return out


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
    See the module's docstring.
    """
    blocks = _auto_blocks(model)
    if not blocks:
        return CenteringChoice({}, {}, threshold)
    ratio = information_ratio(model, data)
    centered: dict[str, bool] = {}
    for block in blocks:
        c = all(float(np.median(ratio[n])) > threshold for n in block)
        centered.update({n: c for n in block})
    keep = {n: ratio[n] for n in centered}
    return CenteringChoice(centered, keep, threshold)


def resolve_centering(model: Any, data: Any) -> tuple[Any, CenteringChoice | None]:
    """``model`` with its ``"auto"`` random effects decided, and the choice (None if none)."""
    if not _auto_blocks(model):
        return model, None
    choice = choose_centering(model, data)
    return choice.apply(model), choice
