r"""Ready-made ODE models, loadable by name: ``ode_templates.load("mm_oral")``.

Every template returns an :class:`~nlme_bayes.structural.ode.ODEModel` whose
right-hand side is written below in PyTensor; amounts are in dose units,
concentrations in dose/volume units, rates per time unit.

=========================  ============================================  =======================
name                       states                                        parameters
=========================  ============================================  =======================
``one_cmt_oral_linear``    depot, central                                CL, V, ka
``one_cmt_iv_linear``      central                                       CL, V
``two_cmt_oral_linear``    depot, central, peripheral                    CL, V, Q, V2, ka
``two_cmt_iv_linear``      central, peripheral                           CL, V, Q, V2
``mm_oral``                depot, central                                Vmax, Km, V, ka
``mm_iv``                  central                                       Vmax, Km, V
``mixed_oral``             depot, central                                CL, Vmax, Km, V, ka
``transit_oral``           depot, transit1..n, central                   MTT, CL, V
``turnover_oral``          depot, central, response                      CL, V, ka, kin (or E0),
                                                                         kout, Imax, IC50
``tmdd_qss_iv``            central (total drug), target (total)          CL, V, Q, V2, kint,
                           , peripheral                                  kdeg, R0, Kss
``sir``                    S, I, R (fractions)                           beta, gamma, I0
=========================  ============================================  =======================

Equations (``C = central/V``):

- linear: :math:`A_d' = -k_a A_d`, :math:`A_c' = k_a A_d - (CL/V) A_c - (Q/V) A_c + (Q/V_2) A_p`,
  :math:`A_p' = (Q/V) A_c - (Q/V_2) A_p`;
- Michaelis-Menten: :math:`A_c' = k_a A_d - V_{max} C/(K_m + C)`; mixed adds :math:`-CL\,C`;
- transit (Savic 2007): :math:`k_{tr} = (n+1)/MTT`, :math:`A_d' = -k_{tr} A_d`,
  :math:`A_k' = k_{tr}(A_{k-1} - A_k)`, :math:`A_c' = k_{tr} A_n - (CL/V) A_c`;
- turnover (indirect response I, Dayneka 1993): :math:`R' = k_{in}(1 - I_{max} C/(IC_{50}+C))
  - k_{out} R`, :math:`R(0) = k_{in}/k_{out}` (``baseline=True``: parameter :math:`E_0 = R(0)`,
  :math:`k_{in} = E_0 k_{out}`); outputs ``C`` (DVID 1) and ``E = R`` (DVID 2);
- TMDD quasi-steady state (Gibiansky 2008): total drug :math:`L_{tot} = A_c/V`, free drug
  :math:`C = \tfrac12[(L_{tot} - R_{tot} - K_{ss}) + \sqrt{(L_{tot} - R_{tot} - K_{ss})^2
  + 4 K_{ss} L_{tot}}]`, :math:`A_c' = -(CL/V) C V - k_{int}(L_{tot} - C) V - (Q/V) C V
  + (Q/V_2) A_p`, :math:`R_{tot}' = k_{deg} R_0 - k_{deg} R_{tot} - (k_{int} - k_{deg})(L_{tot}
  - C)`, :math:`R_{tot}(0) = R_0`; output ``C`` (free drug);
- SIR: :math:`S' = -\beta S I`, :math:`I' = \beta S I - \gamma I`, :math:`R' = \gamma I`,
  :math:`I(0) = I_0`, :math:`S(0) = 1 - I_0`; output ``I``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytensor.tensor as pt

from ..errors import SpecificationError
from .ode import ODEModel

__all__ = ["load", "available"]


def _conc(A: dict, p: dict) -> Any:
    return A["central"] / p["V"]


def _linear(oral: bool, two: bool) -> Callable:
    def rhs(t: Any, A: dict, p: dict) -> dict:
        k = p["CL"] / p["V"]
        out: dict[str, Any] = {}
        central = -k * A["central"]
        if two:
            flow = p["Q"] / p["V"] * A["central"] - p["Q"] / p["V2"] * A["peripheral"]
            central = central - flow
            out["peripheral"] = flow
        if oral:
            out["depot"] = -p["ka"] * A["depot"]
            central = central + p["ka"] * A["depot"]
        out["central"] = central
        return out

    return rhs


def _mm(oral: bool, linear_cl: bool) -> Callable:
    def rhs(t: Any, A: dict, p: dict) -> dict:
        c = A["central"] / p["V"]
        elim = p["Vmax"] * c / (p["Km"] + c)
        if linear_cl:
            elim = elim + p["CL"] * c
        out = {"central": -elim}
        if oral:
            out["depot"] = -p["ka"] * A["depot"]
            out["central"] = out["central"] + p["ka"] * A["depot"]
        return out

    return rhs


def _transit(n: int) -> Callable:
    def rhs(t: Any, A: dict, p: dict) -> dict:
        ktr = (n + 1) / p["MTT"]
        out = {"depot": -ktr * A["depot"]}
        prev = A["depot"]
        for k in range(1, n + 1):
            cur = A[f"transit{k}"]
            out[f"transit{k}"] = ktr * (prev - cur)
            prev = cur
        out["central"] = ktr * prev - p["CL"] / p["V"] * A["central"]
        return out

    return rhs


def _kin(p: dict) -> Any:
    # with ``baseline=True`` the template is parameterised by E0 = kin/kout
    return p["E0"] * p["kout"] if "E0" in p else p["kin"]


def _turnover_rhs(t: Any, A: dict, p: dict) -> dict:
    c = A["central"] / p["V"]
    inhibition = 1.0 - p["Imax"] * c / (p["IC50"] + c)
    return {
        "depot": -p["ka"] * A["depot"],
        "central": p["ka"] * A["depot"] - p["CL"] / p["V"] * A["central"],
        "response": _kin(p) * inhibition - p["kout"] * A["response"],
    }


def _turnover_initial(p: dict) -> dict:
    base = p["E0"] if "E0" in p else p["kin"] / p["kout"]
    return {"depot": 0.0, "central": 0.0, "response": base}


def _effect_cmt_rhs(t: Any, A: dict, p: dict) -> dict:
    c = A["central"] / p["V"]
    return {
        "depot": -p["ka"] * A["depot"],
        "central": p["ka"] * A["depot"] - p["CL"] / p["V"] * A["central"],
        "effect": p["ke0"] * (c - A["effect"]),  # the effect-site concentration Ce
    }


def _effect_emax(A: dict, p: dict) -> Any:
    ce = A["effect"]
    return p["E0"] + p["Emax"] * ce / (p["EC50"] + ce)


def _qss_free(A: dict, p: dict) -> Any:
    ltot = A["central"] / p["V"]
    b = ltot - A["target"] - p["Kss"]
    return 0.5 * (b + pt.sqrt(b * b + 4.0 * p["Kss"] * ltot))


def _tmdd_rhs(t: Any, A: dict, p: dict) -> dict:
    c = _qss_free(A, p)
    ltot = A["central"] / p["V"]
    complex_ = ltot - c
    flow = p["Q"] * c - p["Q"] / p["V2"] * A["peripheral"]
    return {
        "central": -p["CL"] * c - p["kint"] * complex_ * p["V"] - flow,
        "target": p["kdeg"] * p["R0"]
        - p["kdeg"] * A["target"]
        - (p["kint"] - p["kdeg"]) * complex_,
        "peripheral": flow,
    }


def _tmdd_initial(p: dict) -> dict:
    return {"central": 0.0, "target": p["R0"], "peripheral": 0.0}


def _sir_rhs(t: Any, A: dict, p: dict) -> dict:
    infection = p["beta"] * A["S"] * A["I"]
    recovery = p["gamma"] * A["I"]
    return {"S": -infection, "I": infection - recovery, "R": recovery}


def _sir_initial(p: dict) -> dict:
    return {"S": 1.0 - p["I0"], "I": p["I0"], "R": 0.0}


def _make(name: str, **options: Any) -> ODEModel:
    common = {k: options.pop(k) for k in ("method", "max_step", "min_steps") if k in options}
    lag = bool(options.pop("lag", False))
    f = bool(options.pop("bioavailability", False))
    mod = {"lag": lag, "bioavailability": f}
    if name in (
        "one_cmt_oral_linear",
        "two_cmt_oral_linear",
        "one_cmt_iv_linear",
        "two_cmt_iv_linear",
    ):
        oral, two = "oral" in name, name.startswith("two")
        states = (("depot",) if oral else ()) + ("central",) + (("peripheral",) if two else ())
        params = ("CL", "V") + (("Q", "V2") if two else ()) + (("ka",) if oral else ())
        return ODEModel(states, params, _linear(oral, two), _conc, name=name, **mod, **common)
    if name in ("mm_oral", "mm_iv", "mixed_oral"):
        oral = name != "mm_iv"
        states = (("depot",) if oral else ()) + ("central",)
        params = (
            (("CL",) if name == "mixed_oral" else ())
            + ("Vmax", "Km", "V")
            + (("ka",) if oral else ())
        )
        return ODEModel(
            states, params, _mm(oral, name == "mixed_oral"), _conc, name=name, **mod, **common
        )
    if name == "transit_oral":
        n = int(options.pop("n_transit", 3))
        if n < 1:
            raise SpecificationError(f"transit_oral: n_transit must be >= 1, got {n}.")
        states = ("depot", *[f"transit{k}" for k in range(1, n + 1)], "central")
        return ODEModel(
            states,
            ("MTT", "CL", "V"),
            _transit(n),
            _conc,
            name=name,
            compartments={1: "depot", 2: "central"},
            **mod,
            **common,
        )
    if name == "turnover_oral":
        baseline = bool(options.pop("baseline", False))
        return ODEModel(
            ("depot", "central", "response"),
            ("CL", "V", "ka", "E0" if baseline else "kin", "kout", "Imax", "IC50"),
            _turnover_rhs,
            {"C": _conc, "E": lambda A, p: A["response"]},
            dvid={1: "C", 2: "E"},
            initial=_turnover_initial,
            name=name,
            **mod,
            **common,
        )
    if name == "effect_cmt_oral":
        return ODEModel(
            ("depot", "central", "effect"),
            ("CL", "V", "ka", "ke0", "E0", "Emax", "EC50"),
            _effect_cmt_rhs,
            {"C": _conc, "E": _effect_emax},
            dvid={1: "C", 2: "E"},
            compartments={1: "depot", 2: "central"},
            name=name,
            **mod,
            **common,
        )
    if name == "tmdd_qss_iv":
        return ODEModel(
            ("central", "target", "peripheral"),
            ("CL", "V", "Q", "V2", "kint", "kdeg", "R0", "Kss"),
            _tmdd_rhs,
            _qss_free,
            initial=_tmdd_initial,
            compartments={1: "central", 2: "peripheral"},
            name=name,
            **mod,
            **common,
        )
    if name == "sir":
        return ODEModel(
            ("S", "I", "R"),
            ("beta", "gamma", "I0"),
            _sir_rhs,
            lambda A, p: A["I"],
            initial=_sir_initial,
            name=name,
            **mod,
            **common,
        )
    raise SpecificationError(f"Unknown ODE template {name!r}; available: {', '.join(available())}.")


_NAMES = (
    "effect_cmt_oral",
    "mixed_oral",
    "mm_iv",
    "mm_oral",
    "one_cmt_iv_linear",
    "one_cmt_oral_linear",
    "sir",
    "tmdd_qss_iv",
    "transit_oral",
    "turnover_oral",
    "two_cmt_iv_linear",
    "two_cmt_oral_linear",
)


def available() -> list[str]:
    """Names of the ODE templates.

    Examples
    --------
    >>> "mm_oral" in available()
    True
    """
    return list(_NAMES)


def load(name: str, **options: Any) -> ODEModel:
    """The ODE template ``name``; options: ``lag``, ``bioavailability``, ``method``,
    ``max_step``, ``min_steps``; for ``transit_oral``, ``n_transit``; for
    ``turnover_oral``, ``baseline=True`` to estimate the baseline response
    ``E0 = kin/kout`` in place of ``kin`` (NONMEM's and nlmixr2's usual form: E0 is what the
    pre-dose samples measure, so it and ``kout`` are far less correlated than kin and kout).

    Examples
    --------
    >>> load("mm_oral", lag=True).parameters
    ('Vmax', 'Km', 'V', 'ka', 'tlag')
    >>> load("turnover_oral", baseline=True).parameters
    ('CL', 'V', 'ka', 'E0', 'kout', 'Imax', 'IC50')
    """
    opts = dict(options)
    allowed = {"lag", "bioavailability", "method", "max_step", "min_steps"}
    if name == "transit_oral":
        allowed.add("n_transit")
    if name == "turnover_oral":
        allowed.add("baseline")
    unknown = sorted(set(opts) - allowed)
    if unknown and name in _NAMES:
        raise SpecificationError(
            f"ODE template {name!r}: unknown option(s) {', '.join(unknown)}; valid options are "
            f"{', '.join(sorted(allowed))}."
        )
    model = _make(name, **dict(opts))
    object.__setattr__(model, "template", name)
    object.__setattr__(model, "template_options", opts)
    return model
