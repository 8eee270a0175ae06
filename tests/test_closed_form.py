"""Acceptance tests of the closed-form compartment models.

The reference solutions are hand-written ODEs for the compartment *amounts*,
integrated piecewise with ``scipy.integrate.solve_ivp`` (Radau, rtol=1e-10,
atol=1e-12) between event times, never across a discontinuity; they share no
code with :mod:`nlme_bayes.structural`.  One PyTensor function is compiled per
model (with the production graph rewrites, see ``MODE``); it returns the
predictions and the gradient of ``sum(w * pred)`` for random weights ``w``.
"""

from __future__ import annotations

import functools
from decimal import Decimal, localcontext
from typing import NamedTuple

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest
from pytensor.compile.mode import Mode
from pytensor.graph.traversal import ancestors
from scipy.integrate import solve_ivp

from nlme_bayes.errors import DatasetError, SpecificationError
from nlme_bayes.events_types import DosePairs, EventSchedule
from nlme_bayes.structural import (
    ROUTES,
    OneCompartment,
    ThreeCompartment,
    TwoCompartment,
    macro_constants,
)
from nlme_bayes.structural import _kernels as K

#: The production graph rewrites (``fast_run``) on the Python linker: the numerics are
#: those of a real fit, without paying numba/C JIT compilation in the test suite.
#: (Fusion and in-place rewrites only change speed, and are slow to apply unfused.)
MODE = Mode(linker="py", optimizer="fast_run").excluding("fusion", "inplace")
GROUPS = ("iv_bolus", "iv_infusion", "oral", "oral_infusion")


class Dose(NamedTuple):
    time: float
    kind: str  # one of GROUPS
    amt: float
    duration: float = 0.0


class Subject(NamedTuple):
    params: dict[str, float]
    doses: list[Dose]
    times: list[float]


# --------------------------------------------------------------------------- helpers
def build_schedule(subjects: list[Subject]) -> EventSchedule:
    """One pair per (observation, dose at or before it) of the same subject."""
    cols = {g: {k: [] for k in ("obs", "subject", "dt", "amt", "duration")} for g in GROUPS}
    obs_subject, obs_time = [], []
    for s, subject in enumerate(subjects):
        for t in subject.times:
            j = len(obs_time)
            obs_subject.append(s)
            obs_time.append(t)
            for dose in subject.doses:
                if dose.time <= t:
                    c = cols[dose.kind]
                    for key, value in zip(
                        ("obs", "subject", "dt", "amt", "duration"),
                        (j, s, t - dose.time, dose.amt, dose.duration),
                        strict=True,
                    ):
                        c[key].append(value)
    return EventSchedule(
        n_subjects=len(subjects),
        n_obs=len(obs_time),
        obs_subject=obs_subject,
        obs_time=obs_time,
        **{g: DosePairs(**cols[g]) for g in GROUPS},
    )


def rate_matrix(n_cmt: int, oral: bool, p: dict[str, float]) -> tuple[np.ndarray, int]:
    """d(amounts)/dt = M @ amounts, amounts = [depot?, central, peripheral, peripheral2]."""
    c = 1 if oral else 0
    m = np.zeros((n_cmt + c, n_cmt + c))
    m[c, c] -= p["CL"] / p["V"]
    if oral:
        m[0, 0] -= p["ka"]
        m[c, 0] += p["ka"]
    for i, (q, vp) in enumerate((("Q", "V2"), ("Q3", "V3"))[: n_cmt - 1]):
        k_out, k_back = p[q] / p["V"], p[q] / p[vp]
        m[c, c] -= k_out
        m[c + 1 + i, c] += k_out
        m[c, c + 1 + i] += k_back
        m[c + 1 + i, c + 1 + i] -= k_back
    return m, c


def ode_concentrations(model, subject: Subject) -> np.ndarray:
    """Central concentration at the subject's observation times by piecewise ODE solving."""
    oral = model.route == "oral"
    p = subject.params
    m, c = rate_matrix(model.n_compartments, oral, p)
    affected = {"oral", "oral_infusion"} if oral else {"iv_bolus", "iv_infusion"}
    boluses, infusions = [], []
    for dose in subject.doses:
        hit = dose.kind in affected
        start = dose.time + (p["tlag"] if hit and model.lag else 0.0)
        f = p["F"] if hit and model.bioavailability else 1.0
        target = 0 if dose.kind.startswith("oral") else c
        if dose.duration > 0:
            rate = dose.amt / dose.duration
            infusions.append((start, start + f * dose.duration, target, rate))
        else:
            boluses.append((start, target, f * dose.amt))
    breaks = sorted(
        {
            0.0,
            *subject.times,
            *(b[0] for b in boluses),
            *(i[0] for i in infusions),
            *(i[1] for i in infusions),
        }
    )
    y = np.zeros(m.shape[0])
    conc = {}
    for k, t0 in enumerate(breaks):
        for start, target, amount in boluses:
            if start == t0:
                y[target] += amount
        conc[t0] = y[c] / p["V"]
        if k + 1 == len(breaks):
            break
        t1 = breaks[k + 1]
        r = np.zeros_like(y)
        for start, end, target, rate in infusions:
            if start <= t0 and end >= t1:
                r[target] += rate
        sol = solve_ivp(
            lambda _t, x, r=r: m @ x + r,
            (t0, t1),
            y,
            method="Radau",
            rtol=1e-10,
            atol=1e-12,
            jac=lambda _t, _x: m,
        )
        y = sol.y[:, -1]
    return np.array([conc[t] for t in subject.times])


def disposition_rates(p: dict[str, float], n_cmt: int) -> np.ndarray:
    """Eigenvalues (decay rates) of the disposition rate matrix, decreasing."""
    m, _ = rate_matrix(n_cmt, False, p)
    return np.sort(np.linalg.eigvals(-m).real)[::-1]


class Compiled(NamedTuple):
    model: object
    subjects: list[Subject]
    schedule: EventSchedule
    weights: np.ndarray
    fn: object  # (*param vectors) -> [pred, *grads]

    def vectors(self) -> list[np.ndarray]:
        return [np.array([s.params[name] for s in self.subjects]) for name in self.model.parameters]

    def objective(self, vectors: list[np.ndarray]) -> float:
        return float(self.weights @ self.fn(*vectors)[0])


def compile_case(model, subjects: list[Subject], seed: int = 0) -> Compiled:
    schedule = build_schedule(subjects)
    inputs = {name: pt.dvector(name) for name in model.parameters}
    pred = model.predict(inputs, schedule)
    weights = np.random.default_rng(seed).normal(size=schedule.n_obs)
    grads = pytensor.grad((pt.constant(weights) * pred).sum(), list(inputs.values()))
    fn = pytensor.function(list(inputs.values()), [pred, *grads], mode=MODE)
    return Compiled(model, subjects, schedule, weights, fn)


# --------------------------------------------------------------------------- cases
IV_TIMES = [0.0, 0.5, 1.0, 2.0, 2.5, 3.0, 4.0, 4.75, 5.0, 6.0, 12.0, 24.0]
IV_DOSES = [  # an infusion still running when a bolus and a second infusion start
    Dose(0.0, "iv_bolus", 100.0),
    Dose(1.0, "iv_infusion", 200.0, 4.0),
    Dose(2.0, "iv_bolus", 50.0),
    Dose(3.0, "iv_infusion", 120.0, 2.0),
]
IV_DOSES_B = [Dose(0.0, "iv_infusion", 300.0, 8.0), Dose(4.0, "iv_bolus", 100.0)]
IV_TIMES_B = [0.0, 2.0, 4.0, 6.0, 8.0, 10.0, 48.0]
ORAL_DOSES = [
    Dose(0.0, "oral", 100.0),
    Dose(6.0, "iv_bolus", 20.0),
    Dose(8.0, "iv_infusion", 60.0, 3.0),
    Dose(12.0, "oral", 100.0),
    Dose(20.0, "oral_infusion", 200.0, 2.0),
    Dose(21.0, "oral", 50.0),
]
ORAL_TIMES = [0.0, 0.2, 0.5, 1.0, 2.0, 4.0, 6.0, 8.0, 9.0, 12.0, 12.2, 13.0]
ORAL_TIMES += [20.0, 21.0, 21.5, 22.0, 24.0, 30.0, 48.0]
ORAL_SIMPLE = [Dose(0.0, "oral", 100.0), Dose(24.0, "oral_infusion", 100.0, 5.0)]
ORAL_SIMPLE_TIMES = [0.0, 0.5, 1.0, 3.0, 8.0, 24.0, 26.0, 29.0, 40.0, 96.0]
#: all observations before the lagged dose: contributions exactly 0
EARLY = Subject({}, [Dose(0.0, "oral", 100.0)], [0.0, 0.1])

TWO = {"CL": 4.0, "V": 10.0, "Q": 6.0, "V2": 40.0}  # k10 + k12 - k21 > 0
TWO_B = {"CL": 0.5, "V": 50.0, "Q": 1.0, "V2": 5.0}  # k10 + k12 - k21 < 0
THREE = {"CL": 3.0, "V": 8.0, "Q": 5.0, "V2": 20.0, "Q3": 0.8, "V3": 60.0}
THREE_B = {"CL": 0.7, "V": 25.0, "Q": 2.0, "V2": 10.0, "Q3": 4.0, "V3": 150.0}


def _with(base: dict[str, float], **extra: float) -> dict[str, float]:
    return {**base, **extra}


def _early(base: dict[str, float]) -> Subject:
    return Subject(_with(base, tlag=0.4, F=0.9), EARLY.doses, EARLY.times)


def case_one_iv_plain() -> tuple:
    return OneCompartment(route="iv"), [
        Subject({"CL": 2.0, "V": 15.0}, IV_DOSES, IV_TIMES),
        Subject({"CL": 0.5, "V": 40.0}, IV_DOSES_B, IV_TIMES_B),
    ]


def case_one_iv() -> tuple:
    early = Subject(
        {"CL": 1.0, "V": 9.0, "tlag": 0.4, "F": 0.9}, [Dose(0.0, "iv_bolus", 100.0)], [0.0, 0.1]
    )
    return OneCompartment(route="iv", lag=True, bioavailability=True), [
        Subject({"CL": 2.0, "V": 15.0, "tlag": 0.37, "F": 0.8}, IV_DOSES, IV_TIMES),
        Subject({"CL": 0.5, "V": 40.0, "tlag": 0.26, "F": 0.6}, IV_DOSES_B, IV_TIMES_B),
        early,
    ]


def case_one_oral() -> tuple:
    k = 0.1  # CL/V of the ka == k subjects
    base = {"CL": 2.0, "V": 20.0, "tlag": 0.3, "F": 0.75}
    return OneCompartment(route="oral", lag=True, bioavailability=True), [
        Subject({"CL": 3.0, "V": 30.0, "ka": 1.2, "tlag": 0.4, "F": 0.7}, ORAL_DOSES, ORAL_TIMES),
        Subject(_with(base, ka=k), ORAL_SIMPLE, ORAL_SIMPLE_TIMES),  # ka == k exactly
        Subject(_with(base, ka=k * (1 + 1e-7)), ORAL_SIMPLE, ORAL_SIMPLE_TIMES),
        Subject(_with(base, CL=30.0, ka=1.5 + 8e-7), ORAL_SIMPLE, ORAL_SIMPLE_TIMES),
        _early(_with(base, ka=0.8)),
    ]


def case_two_iv() -> tuple:
    return TwoCompartment(route="iv", lag=True, bioavailability=True), [
        Subject(_with(TWO, tlag=0.37, F=0.8), IV_DOSES, IV_TIMES),
        Subject(_with(TWO_B, tlag=0.26, F=0.6), IV_DOSES_B, IV_TIMES_B),
    ]


def case_two_oral() -> tuple:
    alpha, beta = disposition_rates(TWO_B, 2)
    base = _with(TWO_B, tlag=0.3, F=0.75)
    return TwoCompartment(route="oral", lag=True, bioavailability=True), [
        Subject(_with(TWO, ka=1.1, tlag=0.4, F=0.7), ORAL_DOSES, ORAL_TIMES),
        Subject(_with(base, ka=beta * (1 + 1e-7)), ORAL_SIMPLE, ORAL_SIMPLE_TIMES),
        Subject(_with(base, ka=alpha + 5e-7), ORAL_SIMPLE, ORAL_SIMPLE_TIMES),
        _early(_with(TWO, ka=0.8)),
    ]


def case_three_iv() -> tuple:
    return ThreeCompartment(route="iv", lag=True, bioavailability=True), [
        Subject(_with(THREE, tlag=0.37, F=0.8), IV_DOSES, IV_TIMES),
        Subject(_with(THREE_B, tlag=0.26, F=0.6), IV_DOSES_B, IV_TIMES_B),
    ]


def case_three_oral() -> tuple:
    middle = disposition_rates(THREE_B, 3)[1]
    return ThreeCompartment(route="oral", lag=True, bioavailability=True), [
        Subject(_with(THREE, ka=0.9, tlag=0.4, F=0.7), ORAL_DOSES, ORAL_TIMES),
        Subject(
            _with(THREE_B, ka=middle * (1 + 1e-7), tlag=0.3, F=0.75), ORAL_SIMPLE, ORAL_SIMPLE_TIMES
        ),
    ]


CASES = {
    "one_iv_plain": case_one_iv_plain,
    "one_iv": case_one_iv,
    "one_oral": case_one_oral,
    "two_iv": case_two_iv,
    "two_oral": case_two_oral,
    "three_iv": case_three_iv,
    "three_oral": case_three_oral,
}


@functools.cache
def compiled(name: str) -> Compiled:
    model, subjects = CASES[name]()
    return compile_case(model, subjects)


# --------------------------------------------------------------------------- 1. vs ODE
@pytest.mark.parametrize("name", list(CASES))
def test_agrees_with_ode(name: str) -> None:
    case = compiled(name)
    pred = case.fn(*case.vectors())[0]
    reference = np.concatenate([ode_concentrations(case.model, s) for s in case.subjects])
    scale = np.abs(reference).max()
    np.testing.assert_allclose(pred, reference, rtol=1e-8, atol=1e-12 * scale)


def test_pairs_before_lagged_dose_contribute_exactly_zero() -> None:
    for name in ("one_iv", "one_oral", "two_oral"):
        case = compiled(name)
        pred, *grads = case.fn(*case.vectors())
        last = case.schedule.obs_subject == len(case.subjects) - 1
        assert np.all(pred[last] == 0.0), name
        for g in grads:
            assert np.all(np.isfinite(g)) and g[-1] == 0.0, name


# --------------------------------------------------------------------------- 2. gradients
@pytest.mark.parametrize("name", list(CASES))
def test_gradient_matches_finite_differences(name: str) -> None:
    case = compiled(name)
    base = case.vectors()
    _, *grads = case.fn(*base)
    for k, param in enumerate(case.model.parameters):
        fd = np.empty(len(case.subjects))
        for s in range(len(case.subjects)):
            h = 1e-6 * abs(base[k][s])
            plus = [v.copy() for v in base]
            minus = [v.copy() for v in base]
            plus[k][s] += h
            minus[k][s] -= h
            fd[s] = (case.objective(plus) - case.objective(minus)) / (2 * h)
        assert np.all(np.isfinite(grads[k])), (name, param)
        np.testing.assert_allclose(
            grads[k], fd, rtol=1e-5, atol=1e-9 * np.abs(fd).max(), err_msg=f"{name}: {param}"
        )


# --------------------------------------------------------------------------- 3. kernels
def _phi_reference(x: np.ndarray) -> np.ndarray:
    big = np.abs(x) > 1e-3
    xb = np.where(big, x, 1.0)
    xs = np.where(big, 0.0, x)
    series = sum((-xs) ** n / np.prod(np.arange(2.0, n + 2.0)) for n in range(8))
    return np.where(big, -np.expm1(-xb) / xb, series)


def _phi_derivative_reference(x: np.ndarray) -> np.ndarray:
    big = np.abs(x) > 1e-2
    xb = np.where(big, x, 1.0)
    xs = np.where(big, 0.0, x)
    direct = (np.exp(-xb) * (1 + xb) - 1) / xb**2
    series = sum(
        n * (-1) ** n * xs ** (n - 1) / np.prod(np.arange(2.0, n + 2.0)) for n in range(1, 10)
    )
    return np.where(big, direct, series)


@functools.cache
def _phi_fn():
    x = pt.dvector("x")
    y = K.phi(x)
    return pytensor.function([x], [y, pytensor.grad(y.sum(), x)], mode=MODE)


def test_phi_accuracy_and_derivative() -> None:
    x = np.concatenate(
        [
            np.linspace(-50.0, 700.0, 2001),
            np.logspace(-14, np.log10(700), 400),
            -np.logspace(-14, np.log10(50), 400),
            [0.0, 1e-12, -1e-12, 1e-3, -1e-3],
        ]
    )
    value, deriv = _phi_fn()(x)
    np.testing.assert_allclose(value, _phi_reference(x), rtol=2e-15, atol=0)
    assert np.all(np.isfinite(deriv))
    np.testing.assert_allclose(deriv, _phi_derivative_reference(x), rtol=1e-9, atol=1e-300)
    assert value[x == 0.0][0] == 1.0 and deriv[x == 0.0][0] == -0.5


@functools.cache
def _pair_fn():
    a, b, t = pt.dvector("a"), pt.dvector("b"), pt.dvector("t")
    e, g = K.bateman(a, b, t), K.bateman_integral(a, b, t)
    outs = [e, g, *pytensor.grad(e.sum(), [a, b]), *pytensor.grad(g.sum(), [a, b])]
    return pytensor.function([a, b, t], outs, mode=MODE)


def _bateman_reference(a: float, b: float, t: float) -> tuple[float, float]:
    """E(a, b, t) and its integral G in 60-digit decimal arithmetic."""
    a_, b_, t_ = Decimal(a), Decimal(b), Decimal(t)
    if a == b:
        e = t_ * (-a_ * t_).exp()
        g = (1 - (-a_ * t_).exp() * (1 + a_ * t_)) / (a_ * a_)
    else:
        e = ((-a_ * t_).exp() - (-b_ * t_).exp()) / (b_ - a_)
        g = ((1 - (-a_ * t_).exp()) / a_ - (1 - (-b_ * t_).exp()) / b_) / (b_ - a_)
    return float(e), float(g)


def test_bateman_kernels_near_and_at_ties() -> None:
    """E and its integral G vs 60-digit references, and symmetric finite gradients at ties."""
    rng = np.random.default_rng(3)
    a = np.exp(rng.uniform(np.log(1e-4), np.log(30.0), 300))
    rel = np.concatenate(
        [np.zeros(60), 10.0 ** rng.uniform(-15, -5, 120), 10.0 ** rng.uniform(-5, 1, 120)]
    )
    b = a * (1 + rel * rng.choice([-1.0, 1.0], 300))
    t = np.exp(rng.uniform(np.log(1e-4), np.log(500.0), 300))
    e, g, de_da, de_db, dg_da, dg_db = _pair_fn()(a, b, t)
    with localcontext() as ctx:
        ctx.prec = 60
        e_ref, g_ref = np.array([_bateman_reference(*v) for v in zip(a, b, t, strict=True)]).T
    np.testing.assert_allclose(e, e_ref, rtol=1e-12)
    np.testing.assert_allclose(g, g_ref, rtol=1e-11)
    tie = rel == 0  # dE/da at a == b is -t^2 e^{-a t} / 2, split evenly between a and b
    np.testing.assert_allclose(de_da[tie], de_db[tie], rtol=1e-14)
    np.testing.assert_allclose(
        de_da[tie], -0.5 * t[tie] ** 2 * np.exp(-a[tie] * t[tie]), rtol=1e-12
    )
    np.testing.assert_allclose(dg_da[tie], dg_db[tie], rtol=1e-14)
    for v in (e, g, de_da, de_db, dg_da, dg_db):
        assert np.all(np.isfinite(v))


# --------------------------------------------------------------------------- 4. macro constants
def _random_params(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    def logu(lo: float, hi: float) -> np.ndarray:
        return np.exp(rng.uniform(np.log(lo), np.log(hi), n))

    p = {
        "CL": logu(0.05, 20),
        "V": logu(1, 200),
        "Q": logu(0.05, 20),
        "V2": logu(1, 500),
        "Q3": logu(0.05, 20),
        "V3": logu(1, 500),
    }
    p["V3"][:5] = p["Q3"][:5] * p["V2"][:5] / p["Q"][:5]  # k21 == k31 exactly
    return p


@pytest.mark.parametrize("model", [TwoCompartment(route="iv"), ThreeCompartment(route="oral")])
def test_macro_constants_match_eigendecomposition(model) -> None:
    p = _random_params(np.random.default_rng(11), 200)
    names = model.disposition_parameters
    inputs = [pt.dvector(name) for name in names]
    coef, lam = macro_constants(model, dict(zip(names, inputs, strict=True)))
    a, lams = pytensor.function(inputs, [coef, lam], mode=MODE)(*(p[n] for n in names))
    n_cmt = model.n_compartments
    assert a.shape == lams.shape == (200, n_cmt)
    np.testing.assert_allclose(a.sum(axis=1), 1 / p["V"], rtol=1e-12)
    for i in range(200):
        pi = {name: p[name][i] for name in names}
        m, _ = rate_matrix(n_cmt, False, pi)
        w, right = np.linalg.eig(-m)
        order = np.argsort(w.real)[::-1]
        w, right = w.real[order], right.real[:, order]
        np.testing.assert_allclose(lams[i], w, rtol=1e-10)
        # unit bolus: C(t) = e_c' R exp(-diag(w) t) R^-1 e_c / V
        expected = right[0, :] * np.linalg.inv(right)[:, 0] / pi["V"]
        np.testing.assert_allclose(a[i], expected, rtol=1e-8, atol=1e-14 / pi["V"])


def _decimal_macro(p: dict[str, float]) -> tuple[np.ndarray, np.ndarray]:
    """3-cmt (A, lam) in 50-digit arithmetic: Newton-polished roots of the cubic."""
    cl, v, q, v2, q3, v3 = (Decimal(float(p[n])) for n in ("CL", "V", "Q", "V2", "Q3", "V3"))
    k10, k12, k13, k21, k31 = cl / v, q / v, q3 / v, q / v2, q3 / v3
    coeffs = [
        Decimal(1),
        -(k10 + k12 + k13 + k21 + k31),
        k10 * k21 + k10 * k31 + k12 * k31 + k13 * k21 + k21 * k31,
        -k10 * k21 * k31,
    ]
    eig = np.sort(np.linalg.eigvals(-rate_matrix(3, False, p)[0]).real)[::-1]
    roots = []
    for guess in eig:  # float eigenvalues as starting points, polished to 50 digits
        x = Decimal(float(guess))
        for _ in range(100):
            value, slope = Decimal(0), Decimal(0)
            for c in coeffs:
                slope, value = slope * x + value, value * x + c
            x -= value / slope
        roots.append(x)
    coef = []
    for i, li in enumerate(roots):
        lj, lk = (roots[m] for m in range(3) if m != i)
        coef.append((k21 - li) * (k31 - li) / ((lj - li) * (lk - li) * v))
    return np.array([float(c) for c in coef]), np.array([float(r) for r in roots])


def test_three_compartment_macro_constants_wide_range() -> None:
    """Relative accuracy near machine precision over 6+ decades of every parameter."""
    rng = np.random.default_rng(5)
    p = {
        name: np.exp(rng.uniform(np.log(lo), np.log(hi), 150))
        for name, lo, hi in (
            ("CL", 1e-3, 1e3),
            ("V", 1e-2, 1e4),
            ("Q", 1e-4, 1e3),
            ("V2", 1e-2, 1e5),
            ("Q3", 1e-6, 1e3),
            ("V3", 1e-2, 1e5),
        )
    }
    model = ThreeCompartment(route="iv")
    names = model.disposition_parameters
    inputs = [pt.dvector(name) for name in names]
    coef, lam = macro_constants(model, dict(zip(names, inputs, strict=True)))
    a, lams = pytensor.function(inputs, [coef, lam], mode=MODE)(*(p[n] for n in names))
    with localcontext() as ctx:
        ctx.prec = 50
        for i in range(150):
            a_ref, lam_ref = _decimal_macro({n: p[n][i] for n in names})
            np.testing.assert_allclose(lams[i], lam_ref, rtol=1e-13)
            np.testing.assert_allclose(a[i], a_ref, rtol=1e-7, atol=1e-14 / p["V"][i])


# --------------------------------------------------------------------------- 5. vectorisation
def _many_subjects(n: int) -> tuple[EventSchedule, list[Subject]]:
    rng = np.random.default_rng(n)
    doses = [Dose(0.0, "oral", 100.0), Dose(12.0, "oral", 50.0), Dose(24.0, "oral", 50.0)]
    times = list(np.linspace(0.5, 48.0, 10))
    subjects = [
        Subject(
            {"CL": rng.uniform(1, 3), "V": rng.uniform(10, 30), "ka": rng.uniform(0.5, 2)},
            doses,
            times,
        )
        for _ in range(n)
    ]
    return build_schedule(subjects), subjects


def test_graph_size_does_not_depend_on_n_subjects() -> None:
    model = OneCompartment(route="oral")
    sizes = []
    for n in (10, 1000):
        schedule, _ = _many_subjects(n)
        inputs = {name: pt.dvector(name) for name in model.parameters}
        pred = model.predict(inputs, schedule)
        grads = pytensor.grad(pred.sum(), list(inputs.values()))
        sizes.append(sum(v.owner is not None for v in ancestors([pred, *grads])))
    assert sizes[0] == sizes[1]


def test_many_subjects_match_numpy() -> None:
    schedule, subjects = _many_subjects(1000)
    model = OneCompartment(route="oral")
    inputs = {name: pt.dvector(name) for name in model.parameters}
    fn = pytensor.function(
        list(inputs.values()),
        model.predict(inputs, schedule),
        mode=Mode(linker="py", optimizer=None),
    )
    vec = {n: np.array([s.params[n] for s in subjects]) for n in model.parameters}
    pred = fn(*vec.values())
    assert pred.shape == (10_000,)
    expected = np.zeros(schedule.n_obs)
    pairs = schedule.oral
    cl, v, ka = (vec[n][pairs.subject] for n in ("CL", "V", "ka"))
    k = cl / v
    contrib = pairs.amt * ka / v * (np.exp(-k * pairs.dt) - np.exp(-ka * pairs.dt)) / (ka - k)
    np.add.at(expected, pairs.obs, contrib)
    np.testing.assert_allclose(pred, expected, rtol=1e-11)


# --------------------------------------------------------------------------- model API
def test_parameters_and_compartments() -> None:
    assert OneCompartment(route="iv").parameters == ("CL", "V")
    full = ("CL", "V", "ka", "tlag", "F")
    assert OneCompartment(lag=True, bioavailability=True).parameters == full
    assert TwoCompartment(route="oral").parameters == ("CL", "V", "Q", "V2", "ka")
    three = ThreeCompartment(route="iv", bioavailability=True)
    assert three.parameters == ("CL", "V", "Q", "V2", "Q3", "V3", "F")
    oral3 = ThreeCompartment(route="oral")
    assert oral3.compartments == {1: "depot", 2: "central", 3: "peripheral", 4: "peripheral2"}
    assert (oral3.central_compartment, oral3.default_dose_compartment) == (2, 1)
    assert oral3.dose_compartments == (1, 2) and oral3.supports_depot_infusion
    iv2 = TwoCompartment(route="iv")
    assert iv2.compartments == {1: "central", 2: "peripheral"}
    assert (iv2.central_compartment, iv2.default_dose_compartment) == (1, 1)
    assert iv2.dose_compartments == (1,) and not iv2.supports_depot_infusion
    classes = (OneCompartment, TwoCompartment, ThreeCompartment)
    advans = [cls(route=route).advan for cls in classes for route in ("iv", "oral")]
    assert advans == [1, 2, 3, 4, 11, 12]
    assert "ADVAN4" in TwoCompartment(lag=True).describe()
    assert ROUTES == ("iv", "oral")


def test_scalar_parameters_broadcast_to_subjects() -> None:
    schedule, _ = _many_subjects(3)
    model = OneCompartment()
    pred = model.predict({"CL": 2.0, "V": 20.0, "ka": np.full(3, 1.0)}, schedule).eval()
    assert pred.shape == (30,) and np.allclose(pred[:10], pred[10:20])


# --------------------------------------------------------------------------- 6. errors
@pytest.mark.parametrize("cls", [OneCompartment, TwoCompartment, ThreeCompartment])
def test_invalid_route(cls) -> None:
    with pytest.raises(SpecificationError, match=r"unknown route 'sc'.*'iv', 'oral'"):
        cls(route="sc")


def test_invalid_flag() -> None:
    with pytest.raises(SpecificationError, match="lag must be True or False"):
        OneCompartment(lag="yes")


def test_missing_parameter() -> None:
    schedule, _ = _many_subjects(2)
    with pytest.raises(SpecificationError, match="missing ka"):
        OneCompartment().predict({"CL": 1.0, "V": 10.0}, schedule)


def test_wrong_parameter_shape() -> None:
    schedule, _ = _many_subjects(2)
    with pytest.raises(SpecificationError, match=r"shape \(n_subjects,\) = \(2,\)"):
        OneCompartment().predict({"CL": np.ones(3), "V": 10.0, "ka": 1.0}, schedule)


def test_depot_dose_into_iv_model() -> None:
    schedule, _ = _many_subjects(2)
    with pytest.raises(SpecificationError, match="has no depot compartment.*'oral'"):
        OneCompartment(route="iv").predict({"CL": 1.0, "V": 10.0}, schedule)


def test_infusion_without_duration() -> None:
    pairs = DosePairs(obs=[0], subject=[0], dt=[1.0], amt=[10.0], duration=[0.0])
    schedule = EventSchedule(
        n_subjects=1, n_obs=1, obs_subject=[0], obs_time=[1.0], iv_infusion=pairs
    )
    with pytest.raises(SpecificationError, match="needs duration > 0"):
        OneCompartment(route="iv").predict({"CL": 1.0, "V": 10.0}, schedule)


def test_event_type_validation() -> None:
    with pytest.raises(DatasetError, match="dt must be finite and >= 0"):
        DosePairs(obs=[0], subject=[0], dt=[-1.0], amt=[1.0], duration=[0.0])
    with pytest.raises(DatasetError, match="same length|length of obs"):
        DosePairs(obs=[0, 1], subject=[0], dt=[1.0], amt=[1.0], duration=[0.0])
    with pytest.raises(DatasetError, match="one-dimensional"):
        DosePairs(obs=[[0]], subject=[0], dt=[1.0], amt=[1.0], duration=[0.0])
    ok = DosePairs(obs=[1], subject=[0], dt=[1.0], amt=[1.0], duration=[0.0])
    with pytest.raises(DatasetError, match=r"iv_bolus.obs must lie in 0..0"):
        EventSchedule(n_subjects=1, n_obs=1, obs_subject=[0], obs_time=[1.0], iv_bolus=ok)
    with pytest.raises(DatasetError, match="disagrees with obs_subject"):
        EventSchedule(n_subjects=2, n_obs=2, obs_subject=[0, 1], obs_time=[1.0, 1.0], iv_bolus=ok)
    with pytest.raises(DatasetError, match="n_obs=2"):
        EventSchedule(n_subjects=1, n_obs=2, obs_subject=[0], obs_time=[1.0])
    with pytest.raises(DatasetError, match="obs_subject must lie in 0..0"):
        EventSchedule(n_subjects=1, n_obs=1, obs_subject=[1], obs_time=[1.0])
    assert not ok.dt.flags.writeable
