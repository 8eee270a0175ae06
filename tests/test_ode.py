"""ODE structural models: accuracy against SciPy, gradients, stiffness, events, errors.

The reference solutions integrate the *same* right-hand side (compiled numerically)
with :func:`scipy.integrate.solve_ivp` (LSODA, ``rtol=1e-10``) event by event, with
the events written out independently here from the dosing records; so each test
checks our integrator and our event handling, not the model algebra.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytensor
import pytensor.tensor as pt
import pytest
from scipy.integrate import solve_ivp

import nlme_bayes as nb
from nlme_bayes.errors import DatasetError, SpecificationError
from nlme_bayes.structural import ODEModel, OneCompartment, TwoCompartment, ode_templates

OBS_TIMES = (
    0.25,
    0.5,
    1.0,
    2.0,
    3.0,
    5.0,
    8.0,
    11.99,
    12.0,
    13.0,
    24.5,
    30.0,
    30.5,
    31.0,
    32.0,
    33.0,
    36.0,
    48.0,
)
RTOL = 1e-6
# The tests evaluate the graphs without heavy rewriting or C/Numba compilation (the
# arithmetic is the same in every backend; the recovery test samples the compiled graph).
FAST = pytensor.compile.mode.Mode(linker="py", optimizer="fast_compile")


def _records(
    model: ODEModel,
    n_subj: int,
    *,
    dose_state: str,
    infusion_state: str | None,
    amt: float,
    dvids: tuple[int, ...] = (1,),
    doses: bool = True,
) -> pd.DataFrame:
    cmt_of = {s: c for c, s in model.compartments.items()}
    rows = []
    for i in range(n_subj):
        sid = i + 1
        if doses:
            rows.append(
                dict(
                    ID=sid,
                    TIME=0.0,
                    AMT=amt * (1 + 0.5 * i),
                    EVID=1,
                    CMT=cmt_of[dose_state],
                    RATE=0.0,
                    II=12.0,
                    ADDL=2,
                    DV=0.0,
                    DVID=1,
                )
            )
            if infusion_state is not None:
                rows.append(
                    dict(
                        ID=sid,
                        TIME=30.0,
                        AMT=amt / 2,
                        EVID=1,
                        CMT=cmt_of[infusion_state],
                        RATE=amt / 4,
                        II=0.0,
                        ADDL=0,
                        DV=0.0,
                        DVID=1,
                    )
                )
        for t in OBS_TIMES:
            for d in dvids:
                rows.append(
                    dict(
                        ID=sid,
                        TIME=t,
                        AMT=0.0,
                        EVID=0,
                        CMT=0,
                        RATE=0.0,
                        II=0.0,
                        ADDL=0,
                        DV=1.0,
                        DVID=d,
                    )
                )
    return pd.DataFrame(rows).sort_values(["ID", "TIME"], kind="stable")


def _numeric(model: ODEModel):
    """The model's rhs, outputs and initial state as NumPy functions of one subject."""
    names = list(model.parameters)
    pv = {k: pt.dvector(k) for k in names}
    av = [pt.dvector(s) for s in model.states]
    A = dict(zip(model.states, av, strict=True))
    rhs = model._rhs_list(pt.dvector("t"), av, pv)
    f_rhs = pytensor.function([*av, *pv.values()], rhs, on_unused_input="ignore")
    outs = model.outputs if isinstance(model.outputs, dict) else {"C": model.outputs}
    f_out = pytensor.function(
        [*av, *pv.values()],
        [pt.as_tensor_variable(o(A, pv)) + pt.zeros_like(av[0]) for o in outs.values()],
        on_unused_input="ignore",
    )
    f_init = pytensor.function(list(pv.values()), model._initial(pv, 1), on_unused_input="ignore")
    return names, f_rhs, f_out, f_init


def _reference(model: ODEModel, frame: pd.DataFrame, params: dict[str, np.ndarray]) -> np.ndarray:
    """Observation outputs by SciPy, events applied in record order (NONMEM rules)."""
    names, f_rhs, f_out, f_init = _numeric(model)
    states = list(model.states)
    out = []
    for i, (_, sub) in enumerate(frame.groupby("ID", sort=False)):
        p = [np.array([params[k][i]]) for k in names]
        pd_ = dict(zip(names, p, strict=True))
        tlag = float(pd_["tlag"][0]) if model.lag else 0.0
        f_bio = float(pd_["F"][0]) if model.bioavailability else 1.0
        modified = set(model.modifier_states)
        events = []  # (time, order, kind, state, value)
        order = 0
        for r in sub.itertuples():
            if r.EVID == 1:
                st = model.compartments[int(r.CMT)]
                shift = tlag if st in modified else 0.0
                fac = f_bio if st in modified else 1.0
                for k in range(int(r.ADDL) + 1):
                    t0 = r.TIME + k * r.II + shift
                    # NONMEM: an implied (ADDL) dose comes after records at the same time
                    rank = order if k == 0 else 10**6 + order
                    if r.RATE > 0:
                        dur = fac * r.AMT / r.RATE
                        events.append((t0, rank, "on", st, r.RATE))
                        events.append((t0 + dur, rank, "off", st, r.RATE))
                    else:
                        events.append((t0, rank, "bolus", st, fac * r.AMT))
                    order += 1
            else:
                events.append((r.TIME, order, "obs", None, int(r.DVID)))
                order += 1
        events.sort(key=lambda e: (e[0], e[1]))
        y = np.asarray(f_init(*p), float).ravel()
        rate = np.zeros(len(states))
        t = events[0][0]

        def rhs(tt, yy, rate=rate, p=p):
            d = f_rhs(*[np.array([v]) for v in yy], *p)
            return np.array([float(np.asarray(x).ravel()[0]) for x in d]) + rate

        for te, _o, kind, st, val in events:
            if te > t:
                y = solve_ivp(
                    rhs, (t, te), y, method="LSODA", rtol=1e-10, atol=1e-12, args=(rate.copy(),)
                ).y[:, -1]
                t = te
            if kind == "bolus":
                y[states.index(st)] += val
            elif kind == "on":
                rate[states.index(st)] += val
            elif kind == "off":
                rate[states.index(st)] -= val
            else:
                vals = f_out(*[np.array([v]) for v in y], *p)
                name = model.output_for_dvid(val)
                out.append(float(np.asarray(vals[model.output_names.index(name)]).ravel()[0]))
    return np.array(out)


def _ours(model: ODEModel, frame: pd.DataFrame, params: dict[str, np.ndarray]) -> np.ndarray:
    data = nb.read_nonmem(frame)
    schedule, _ = model.build_schedule(data)
    ins = {k: pt.dvector(k) for k in model.parameters}
    fn = pytensor.function(list(ins.values()), model.predict(ins, schedule), mode=FAST)
    return fn(*[params[k] for k in model.parameters])


def _close(got: np.ndarray, ref: np.ndarray, rtol: float = RTOL) -> None:
    scale = np.maximum(np.abs(ref), 1e-3 * np.abs(ref).max())
    err = np.abs(got - ref) / scale
    assert err.max() <= rtol, f"max relative error {err.max():.2e} > {rtol:.0e}"


# template -> (options, dose state, infusion state, amount, params for 2 subjects, dvids)
CASES = {
    "one_cmt_oral_linear": (
        {"lag": True, "bioavailability": True},
        "depot",
        "central",
        100.0,
        {
            "CL": [2.0, 5.0],
            "V": [20.0, 40.0],
            "ka": [1.2, 0.6],
            "tlag": [0.4, 0.0],
            "F": [0.8, 0.6],
        },
        (1,),
    ),
    "two_cmt_oral_linear": (
        {"lag": True},
        "depot",
        "central",
        100.0,
        {
            "CL": [2.0, 5.0],
            "V": [20.0, 40.0],
            "Q": [4.0, 2.0],
            "V2": [50.0, 30.0],
            "ka": [1.2, 0.6],
            "tlag": [0.3, 0.7],
        },
        (1,),
    ),
    "two_cmt_iv_linear": (
        {},
        "central",
        "central",
        100.0,
        {"CL": [2.0, 5.0], "V": [20.0, 40.0], "Q": [4.0, 2.0], "V2": [50.0, 30.0]},
        (1,),
    ),
    "mm_oral": (
        {"lag": True, "bioavailability": True},
        "depot",
        "central",
        200.0,
        {
            "Vmax": [20.0, 8.0],
            "Km": [2.0, 0.5],
            "V": [30.0, 15.0],
            "ka": [1.0, 2.5],
            "tlag": [0.25, 0.6],
            "F": [0.9, 0.7],
        },
        (1,),
    ),
    "mm_iv": (
        {},
        "central",
        "central",
        200.0,
        {"Vmax": [20.0, 8.0], "Km": [2.0, 0.5], "V": [30.0, 15.0]},
        (1,),
    ),
    "mixed_oral": (
        {},
        "depot",
        "central",
        200.0,
        {
            "CL": [1.0, 0.5],
            "Vmax": [20.0, 8.0],
            "Km": [2.0, 0.5],
            "V": [30.0, 15.0],
            "ka": [1.0, 2.5],
        },
        (1,),
    ),
    "transit_oral": (
        {"n_transit": 2},
        "depot",
        "central",
        100.0,
        {"MTT": [1.5, 3.0], "CL": [2.0, 5.0], "V": [20.0, 40.0]},
        (1,),
    ),
    "turnover_oral": (
        {"lag": True},
        "depot",
        "central",
        100.0,
        {
            "CL": [2.0, 5.0],
            "V": [20.0, 40.0],
            "ka": [1.2, 0.6],
            "kin": [10.0, 5.0],
            "kout": [0.5, 0.2],
            "Imax": [0.9, 0.6],
            "IC50": [1.0, 3.0],
            "tlag": [0.2, 0.5],
        },
        (1, 2),
    ),
    "effect_cmt_oral": (
        {"lag": True},
        "depot",
        "central",
        100.0,
        {
            "CL": [2.0, 5.0],
            "V": [20.0, 40.0],
            "ka": [1.2, 0.6],
            "ke0": [0.3, 2.0],
            "E0": [10.0, 20.0],
            "Emax": [50.0, 30.0],
            "EC50": [1.0, 3.0],
            "tlag": [0.2, 0.35],
        },
        (1, 2),
    ),
    "tmdd_qss_iv": (
        {},
        "central",
        "central",
        100.0,
        {
            "CL": [0.2, 0.3],
            "V": [3.0, 4.0],
            "Q": [0.5, 0.4],
            "V2": [2.0, 3.0],
            "kint": [0.05, 0.1],
            "kdeg": [0.02, 0.01],
            "R0": [5.0, 10.0],
            "Kss": [1.0, 0.5],
        },
        (1,),
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_template_matches_scipy_under_multiple_doses_infusion_and_lag(name):
    opts, dose_state, inf_state, amt, params, dvids = CASES[name]
    # transit: the chain's early rise (a sum of gamma-like terms from 0) needs finer steps
    model = ode_templates.load(name, max_step=0.02 if name == "transit_oral" else 0.05, **opts)
    frame = _records(
        model, 2, dose_state=dose_state, infusion_state=inf_state, amt=amt, dvids=dvids
    )
    p = {k: np.asarray(v, float) for k, v in params.items()}
    _close(_ours(model, frame, p), _reference(model, frame, p))


def test_sir_without_doses_matches_scipy():
    model = ode_templates.load("sir", max_step=0.1)
    frame = _records(model, 2, dose_state="S", infusion_state=None, amt=0.0, doses=False)
    p = {"beta": np.array([0.8, 1.2]), "gamma": np.array([0.2, 0.3]), "I0": np.array([0.01, 0.002])}
    _close(_ours(model, frame, p), _reference(model, frame, p))


@pytest.mark.parametrize(
    "structure,template,params",
    [
        (
            OneCompartment(route="oral", lag=True),
            "one_cmt_oral_linear",
            {"CL": [2.0, 5.0], "V": [20.0, 40.0], "ka": [1.2, 0.6], "tlag": [0.4, 0.1]},
        ),
        (
            TwoCompartment(route="oral"),
            "two_cmt_oral_linear",
            {
                "CL": [2.0, 5.0],
                "V": [20.0, 40.0],
                "Q": [4.0, 2.0],
                "V2": [50.0, 30.0],
                "ka": [1.2, 0.6],
            },
        ),
    ],
)
def test_linear_odes_equal_the_closed_forms(structure, template, params):
    model = ode_templates.load(template, lag=structure.lag, max_step=0.1)
    frame = _records(model, 2, dose_state="depot", infusion_state="central", amt=100.0)
    p = {k: np.asarray(v, float) for k, v in params.items()}
    data = nb.read_nonmem(frame)
    sched, _ = nb.events.build_schedule(data, structure)
    ins = {k: pt.dvector(k) for k in structure.parameters}
    closed = pytensor.function(list(ins.values()), structure.predict(ins, sched))(
        *[p[k] for k in structure.parameters]
    )
    _close(_ours(model, frame, p), closed)


@pytest.mark.parametrize("max_step,rtol", [(None, 0.02), (0.01, 1e-6)])
def test_stiff_absorption_ka_over_k_1e3(max_step, rtol):
    """ka/k = 1e3.  The default grid (1/40 of the span, 1.2 h here) is stable (L-stability) but
    resolves the 0.01 h absorption transient only to ~1.5 % at the first sample (15 min after
    the dose) and far better later; a finer grid gives 1e-6."""
    model = ode_templates.load("one_cmt_oral_linear", max_step=max_step)
    frame = _records(model, 2, dose_state="depot", infusion_state="central", amt=100.0)
    p = {"CL": np.array([2.0, 1.0]), "V": np.array([20.0, 10.0]), "ka": np.array([100.0, 100.0])}
    data = nb.read_nonmem(frame)
    structure = OneCompartment(route="oral")
    sched, _ = nb.events.build_schedule(data, structure)
    ins = {k: pt.dvector(k) for k in structure.parameters}
    closed = pytensor.function(list(ins.values()), structure.predict(ins, sched))(
        *[p[k] for k in structure.parameters]
    )
    got = _ours(model, frame, p)
    assert np.all(np.isfinite(got))
    _close(got, closed, rtol=rtol)


def test_stiff_extreme_rates_stay_finite():
    """Warm-up-like extremes (ka = 1e6, Vmax = 1e5) give finite, bounded predictions."""
    model = ode_templates.load("mm_oral")
    frame = _records(model, 2, dose_state="depot", infusion_state="central", amt=100.0)
    p = {
        "Vmax": np.array([1e5, 1e-3]),
        "Km": np.array([1e-3, 1e3]),
        "V": np.array([30.0, 1e-2]),
        "ka": np.array([1e6, 1e-4]),
    }
    got = _ours(model, frame, p)
    assert np.all(np.isfinite(got))
    assert np.all(got >= -1e-6 * np.abs(got).max())


def test_tmdd_stiff_binding_matches_scipy():
    """Tight, fast binding (Kss = 1e-3, large target, kint up to 5/h)."""
    model = ode_templates.load("tmdd_qss_iv", max_step=0.02)
    frame = _records(model, 2, dose_state="central", infusion_state="central", amt=100.0)
    p = {
        "CL": np.array([0.2, 0.3]),
        "V": np.array([3.0, 4.0]),
        "Q": np.array([0.5, 0.4]),
        "V2": np.array([2.0, 3.0]),
        "kint": np.array([2.0, 5.0]),
        "kdeg": np.array([0.02, 0.5]),
        "R0": np.array([20.0, 50.0]),
        "Kss": np.array([1e-3, 1e-2]),
    }
    _close(_ours(model, frame, p), _reference(model, frame, p))


def _check_gradient(f, g, x0: np.ndarray) -> None:
    """Analytic gradient ``g`` of ``f`` against central differences (relative step 1e-6)."""
    analytic = g(x0)
    numeric = np.empty_like(x0)
    for j in range(len(x0)):
        e = np.zeros_like(x0)
        e[j] = 1e-6 * max(1.0, abs(x0[j]))
        numeric[j] = (f(x0 + e) - f(x0 - e)) / (2 * e[j])
    np.testing.assert_allclose(analytic, numeric, rtol=1e-5, atol=1e-8)


def test_gradient_matches_finite_differences_with_lag_f_and_infusion():
    model = ode_templates.load("mm_oral", lag=True, bioavailability=True, max_step=0.5)
    frame = _records(model, 2, dose_state="depot", infusion_state="central", amt=200.0)
    data = nb.read_nonmem(frame)
    schedule, _ = model.build_schedule(data)
    names = list(model.parameters)
    x = pt.dvector("x")  # all parameters of both subjects, flattened
    params = {k: x[2 * i : 2 * i + 2] for i, k in enumerate(names)}
    loss = pt.sum(pt.log(model.predict(params, schedule) + 1e-3) * np.linspace(0.5, 1.5, 36))
    f = pytensor.function([x], loss, mode=FAST)
    g = pytensor.function([x], pytensor.grad(loss, x), mode=FAST)
    x0 = np.array([20.0, 8.0, 2.0, 0.5, 30.0, 15.0, 1.0, 2.5, 0.3, 0.6, 0.9, 0.7])
    _check_gradient(f, g, x0)


@pytest.mark.parametrize(
    "name", ["mm_oral", "turnover_oral", "effect_cmt_oral", "two_cmt_oral_linear"]
)
def test_explicit_dopri5_matches_scipy_on_non_stiff_templates(name):
    """The explicit option: same schedules (multiple doses, infusion, lag) and tolerance."""
    opts, dose_state, inf_state, amt, params, dvids = CASES[name]
    model = ode_templates.load(name, method="dopri5", max_step=0.05, **opts)
    frame = _records(
        model, 2, dose_state=dose_state, infusion_state=inf_state, amt=amt, dvids=dvids
    )
    p = {k: np.asarray(v, float) for k, v in params.items()}
    _close(_ours(model, frame, p), _reference(model, frame, p))


def test_turnover_baseline_form_is_the_kin_form_with_kin_e0_kout():
    """``baseline=True`` estimates E0 = kin/kout in place of kin: the same system, so with
    kin = E0 * kout it reproduces SciPy's solution of the kin form (multiple doses,
    infusion, lag), and the option survives a reload from ``template_options``."""
    opts, dose_state, inf_state, amt, params, dvids = CASES["turnover_oral"]
    kin_form = ode_templates.load("turnover_oral", method="dopri5", max_step=0.05, **opts)
    e0_form = ode_templates.load(
        "turnover_oral", method="dopri5", max_step=0.05, baseline=True, **opts
    )
    assert e0_form.parameters == ("CL", "V", "ka", "E0", "kout", "Imax", "IC50", "tlag")
    frame = _records(
        kin_form, 2, dose_state=dose_state, infusion_state=inf_state, amt=amt, dvids=dvids
    )
    p = {k: np.asarray(v, float) for k, v in params.items()}
    q = {k: v for k, v in p.items() if k != "kin"}
    q["E0"] = p["kin"] / p["kout"]
    _close(_ours(e0_form, frame, q), _reference(kin_form, frame, p))
    again = ode_templates.load("turnover_oral", **e0_form.template_options)
    assert again.parameters == e0_form.parameters


def test_explicit_dopri5_gradient_matches_finite_differences():
    model = ode_templates.load("turnover_oral", lag=True, method="dopri5", max_step=0.25)
    frame = _records(
        model, 2, dose_state="depot", infusion_state="central", amt=100.0, dvids=(1, 2)
    )
    data = nb.read_nonmem(frame)
    schedule, _ = model.build_schedule(data)
    names = list(model.parameters)
    x = pt.dvector("x")
    params = {k: x[2 * i : 2 * i + 2] for i, k in enumerate(names)}
    pred = model.predict(params, schedule)
    loss = pt.sum(pt.log(pred + 1e-3) * np.linspace(0.5, 1.5, pred.type.shape[0] or 1))
    f = pytensor.function([x], loss, mode=FAST)
    g = pytensor.function([x], pytensor.grad(loss, x), mode=FAST)
    vals = dict(CASES["turnover_oral"][4], tlag=[0.2, 0.35])  # lagged doses off obs times
    x0 = np.concatenate([np.asarray(vals[k], float) for k in names])
    _check_gradient(f, g, x0)


def test_explicit_dopri5_outside_its_stability_region_is_flagged_not_garbage():
    """ka * max_step = 500 >> 3.3: the explicit solution explodes, and predict flags the
    subject (``tag.ode_ok``; the builder rejects the draw as -inf), where RODAS4 on the
    same grid stays finite and unflagged."""
    frame = _records(
        ode_templates.load("mm_oral"), 1, dose_state="depot", infusion_state="central", amt=200.0
    )
    data = nb.read_nonmem(frame)
    vals = {"Vmax": [20.0], "Km": [2.0], "V": [30.0], "ka": [1000.0]}
    flags = {}
    for method in ("dopri5", "rodas4"):
        model = ode_templates.load("mm_oral", method=method, max_step=0.5)
        schedule, _ = model.build_schedule(data)
        ins = {k: pt.dvector(k) for k in model.parameters}
        pred = model.predict(ins, schedule)
        fn = pytensor.function(list(ins.values()), [pred, pred.tag.ode_ok], mode=FAST)
        values, ok = fn(*[np.asarray(vals[k]) for k in model.parameters])
        assert np.all(np.isfinite(values))  # a finite placeholder, never nan into the graph
        flags[method] = bool(ok[0])
    assert flags == {"dopri5": False, "rodas4": True}


def test_reset_evid3_restarts_from_initial_state():
    model = ode_templates.load("one_cmt_iv_linear", max_step=0.1)
    frame = pd.DataFrame(
        [
            dict(ID=1, TIME=0.0, AMT=100.0, EVID=1, CMT=1, DV=0.0),
            dict(ID=1, TIME=2.0, AMT=0.0, EVID=0, CMT=1, DV=1.0),
            dict(ID=1, TIME=3.0, AMT=0.0, EVID=3, CMT=1, DV=0.0),
            dict(ID=1, TIME=4.0, AMT=0.0, EVID=0, CMT=1, DV=1.0),
            dict(ID=1, TIME=5.0, AMT=50.0, EVID=4, CMT=1, DV=0.0),
            dict(ID=1, TIME=7.0, AMT=0.0, EVID=0, CMT=1, DV=1.0),
        ]
    )
    got = _ours(model, frame, {"CL": np.array([2.0]), "V": np.array([10.0])})
    np.testing.assert_allclose(
        got, [10 * np.exp(-0.4), 0.0, 5 * np.exp(-0.4)], rtol=1e-6, atol=1e-12
    )


# ---------------------------------------------------------------- specification errors
def _rhs_wrong(t, A, p):
    return [-p["k"] * A["a"]]


def test_rhs_with_wrong_number_of_states_is_a_specification_error():
    model = ODEModel(("a", "b"), ("k",), _rhs_wrong, lambda A, p: A["a"])
    frame = pd.DataFrame(
        [
            dict(ID=1, TIME=0.0, AMT=1.0, EVID=1, CMT=1, DV=0.0),
            dict(ID=1, TIME=1.0, AMT=0.0, EVID=0, CMT=1, DV=1.0),
        ]
    )
    sched, _ = model.build_schedule(nb.read_nonmem(frame))
    with pytest.raises(SpecificationError, match="returned 1 values for 2 states"):
        model.predict({"k": 1.0}, sched)


def test_rhs_dict_with_unknown_state_is_a_specification_error():
    model = ODEModel(("a",), ("k",), lambda t, A, p: {"b": -A["a"]}, lambda A, p: A["a"])
    frame = pd.DataFrame(
        [
            dict(ID=1, TIME=0.0, AMT=1.0, EVID=1, CMT=1, DV=0.0),
            dict(ID=1, TIME=1.0, AMT=0.0, EVID=0, CMT=1, DV=1.0),
        ]
    )
    sched, _ = model.build_schedule(nb.read_nonmem(frame))
    with pytest.raises(SpecificationError, match="missing a; unknown b"):
        model.predict({"k": 1.0}, sched)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(states=("a", "a")), "distinct"),
        (dict(parameters=("k", "tlag")), "lag=True"),
        (
            dict(method="euler"),
            "unknown method 'euler'; valid choices are dopri5, rodas3, rodas4",
        ),
        (dict(default_dose="x"), "default_dose 'x' is not a state"),
        (dict(compartments={1: "x"}), "compartment 1 maps to unknown state 'x'"),
        (dict(dvid={2: "E"}), "DVID 2 maps to unknown output 'E'"),
        (dict(max_step=0.0), "max_step must be > 0"),
        (dict(rhs=None), "rhs must be a function"),
    ],
)
def test_bad_ode_declarations(kwargs, match):
    base = dict(
        states=("a",),
        parameters=("k",),
        rhs=lambda t, A, p: {"a": -A["a"]},
        outputs=lambda A, p: A["a"],
    )
    base.update(kwargs)
    with pytest.raises(SpecificationError, match=match):
        ODEModel(**base)


def test_unknown_template_and_bad_option():
    with pytest.raises(
        SpecificationError, match="Unknown ODE template 'mm'; available: effect_cmt_oral, mixed"
    ):
        ode_templates.load("mm")
    with pytest.raises(SpecificationError, match="n_transit must be >= 1"):
        ode_templates.load("transit_oral", n_transit=0)
    with pytest.raises(
        SpecificationError,
        match=r"unknown option\(s\) lagg; valid options are bioavailability, lag",
    ):
        ode_templates.load("mm_oral", lagg=True)
    with pytest.raises(SpecificationError, match=r"unknown option\(s\) baseline"):
        ode_templates.load("mm_oral", baseline=True)  # only turnover_oral has a baseline


def test_dose_into_unknown_compartment_and_unmapped_dvid_name_rows():
    model = ode_templates.load("mm_oral")
    frame = pd.DataFrame(
        [
            dict(ID=7, TIME=0.0, AMT=1.0, EVID=1, CMT=5, DV=0.0, DVID=1),
            dict(ID=7, TIME=1.0, AMT=0.0, EVID=0, CMT=2, DV=1.0, DVID=3),
        ]
    )
    with pytest.raises(
        DatasetError,
        match=r"(?s)CMT: doses into unknown compartment\(s\) \[5\] "
        r"at row 1 \(ID 7\).*DVID: observations of output\(s\) \[3\] at row 2",
    ):
        model.build_schedule(nb.read_nonmem(frame))


def test_template_model_round_trips_through_its_specification():
    model = nb.Model(
        structure=ode_templates.load("mm_oral", lag=True, max_step=0.5),
        parameters=[
            nb.Parameter("Vmax", 20.0),
            nb.Parameter("Km", 2.0, iiv=None),
            nb.Parameter("V", 30.0),
            nb.Parameter("ka", 1.0),
            nb.Parameter("tlag", 0.5),
        ],
        error=nb.Proportional(),
    )
    back = nb.Model.from_dict(model.to_dict())
    assert back.structure.template == "mm_oral"
    assert back.structure.parameters == model.structure.parameters
    assert back.structure.max_step == 0.5


def test_tiled_schedule_repeats_every_subject():
    """Copies of the schedule (marginal likelihood, forecasting) predict the same values."""
    model = ode_templates.load("mm_oral", lag=True, max_step=0.5)
    frame = _records(model, 2, dose_state="depot", infusion_state="central", amt=200.0)
    schedule, _ = model.build_schedule(nb.read_nonmem(frame))
    p = {
        "Vmax": [20.0, 8.0],
        "Km": [2.0, 0.5],
        "V": [30.0, 15.0],
        "ka": [1.0, 2.5],
        "tlag": [0.25, 0.6],
    }
    one = model.predict({k: np.array(v) for k, v in p.items()}, schedule).eval()
    three = model.predict({k: np.array(v * 3) for k, v in p.items()}, schedule.tile(3)).eval()
    np.testing.assert_allclose(three, np.tile(one, 3), rtol=1e-12)


def test_solver_error_finds_the_finite_garbage_of_an_unstable_explicit_step():
    """ka * max_step = 5 is outside DOPRI5's stability region (~3.3): the solution stays
    finite (predict does not flag it) yet is wrong by orders of magnitude -- what a sampler meets
    in the tail of a log-normal ka.  solver_error reports it; RODAS4 on the same grid is
    within 1 % of the peak; and the reference itself agrees with the closed form."""
    data = nb.datasets.theophylline()
    vals = {"CL": 0.04, "V": 0.5, "ka": 5.0}
    explicit = ode_templates.load("one_cmt_oral_linear", method="dopri5", max_step=1.0)
    schedule, obs = explicit.build_schedule(data)
    pred = explicit.predict(vals, schedule)
    assert bool(np.all(pred.tag.ode_ok.eval()))  # finite: nothing flags it at run time
    err = explicit.solver_error(data, vals)
    assert err.index.tolist() == [(0, "C")]
    assert err["rel_error"].iloc[0] > 1.0
    assert err["ID"].iloc[0] in set(obs["ID"])
    stable = ode_templates.load("one_cmt_oral_linear", method="rodas4", max_step=1.0)
    err_stable = stable.solver_error(data, vals)
    assert err_stable["rel_error"].iloc[0] < 0.01
    # the reported error is the true error: compare with the closed form directly
    closed = OneCompartment(route="oral")
    exact = closed.predict(vals, nb.events.build_schedule(data, closed)[0]).eval()
    mine = stable.predict(vals, stable.build_schedule(data)[0]).eval()
    np.testing.assert_allclose(
        err_stable["max_abs_error"].iloc[0], np.abs(mine - exact).max(), rtol=0.05
    )


def test_solver_error_takes_parameter_sets_by_row_and_names_what_is_missing():
    data = nb.datasets.theophylline()
    model = ode_templates.load("one_cmt_oral_linear", method="dopri5", max_step=1.0)
    sets = pd.DataFrame({"CL": [0.04, 0.04], "V": [0.5, 0.5], "ka": [1.5, 8.0]},
                        index=["typical", "fast ka"])  # fmt: skip
    err = model.solver_error(data, sets)
    assert err.index.tolist() == [("typical", "C"), ("fast ka", "C")]
    assert err.loc[("typical", "C"), "rel_error"] < 1e-3
    assert err.loc[("fast ka", "C"), "rel_error"] > 1.0
    with pytest.raises(SpecificationError, match="lacks ka"):
        model.solver_error(data, {"CL": 0.04, "V": 0.5})
    with pytest.raises(SpecificationError, match="mapping"):
        model.solver_error(data, [0.04, 0.5, 1.5])
    with pytest.raises(SpecificationError, match="refine"):
        model.solver_error(data, sets, refine=0)
    # V = 0 makes the system itself undefined (CL/V): the reference cannot be computed
    with pytest.raises(SpecificationError, match="set 'bad'.*implausible"):
        model.solver_error(data, pd.DataFrame({"CL": [0.04], "V": [0.0], "ka": [1.5]},
                                              index=["bad"]))  # fmt: skip


@pytest.mark.parametrize("mode", ["NUMBA", "C"])
def test_events_at_the_same_time_keep_their_record_order_with_a_lag_time(mode):
    """With a lag time the events are re-sorted at run time. An observation recorded before an
    IV bolus at the same time sees the pre-dose state, the one recorded after it the
    post-dose state (NONMEM's rule), on every backend. Numba's argsort has no stable kind
    and its quicksort swapped such pairs once a subject had more than ~16 events: the
    pre-dose observation got the post-dose value (nutpie and the Numba-compiled helpers)."""
    from pytensor.compile.mode import Mode

    rows = []
    for k in range(12):
        t = 12.0 * k
        rows += [
            dict(ID=1, TIME=t, AMT=100.0, DV=0.0, EVID=1, CMT=1),  # oral, lagged
            dict(ID=1, TIME=t + 6, AMT=0.0, DV=1.0, EVID=0, CMT=2),  # before the bolus
            dict(ID=1, TIME=t + 6, AMT=50.0, DV=0.0, EVID=1, CMT=2),  # IV bolus, not lagged
            dict(ID=1, TIME=t + 6, AMT=0.0, DV=1.0, EVID=0, CMT=2),  # after it
        ]
    model = ode_templates.load("one_cmt_oral_linear", lag=True, max_step=2.0)
    schedule, _ = model.build_schedule(nb.read_nonmem(pd.DataFrame(rows)))
    ins = {k: pt.dvector(k) for k in model.parameters}
    fn = pytensor.function(
        list(ins.values()),
        model.predict(ins, schedule),
        mode="NUMBA" if mode == "NUMBA" else Mode(linker="cvm"),
    )
    pred = fn(*[np.array([v]) for v in (2.0, 20.0, 1.0, 0.5)])  # CL, V, ka, tlag
    jumps = pred[1::2] - pred[0::2]
    np.testing.assert_allclose(jumps, 50.0 / 20.0, rtol=1e-9)
