"""ODE benchmarks (issue 4): what the ODE costs, how accurate it is, and Stan side by side.

Cases (each writes ``results/ode_<case>.json`` and ``.md``):

``cost``
    Log-density+gradient evaluations per second for 12, 100 and 1000 subjects of the same
    model -- ``theophylline_model()`` on the Theophylline-like simulated design -- with the
    closed form ``OneCompartment(route="oral")`` and with the ODE template
    ``one_cmt_oral_linear`` (default solver settings), nutpie's compiled (Numba) function
    called through its C entry point; compile times separately.  Each model in a fresh process.
``mm``
    The Michaelis-Menten model on ``michaelis_menten_study(40)`` (doses 10-1000 mg at 0 and
    24 h): our fit (``ode_templates.load("mm_oral")``, default settings) and Stan's
    (``stan/mm_oral_ode.stan``: ``ode_rk45_tol``, optionally ``ode_bdf_tol``) with the same
    data, priors, chains, warm-up, draws and starts.  Accuracy first: both solvers'
    predictions at our posterior mean (each subject's posterior-mean parameters) against
    ``mm_oral_reference`` (SciPy LSODA, rtol 1e-10); our error for several ``max_step``;
    Stan's for several tolerances.  Stan then runs at the loosest tolerance (rtol = atol)
    whose error is no larger than ours -- "equal accuracy", Stan never the less accurate.

Usage::

    .venv/bin/python benchmarks/bench_ode.py cost mm [--sizes 12 100 1000]
        [--chains 4 --draws 1000 --tune 1000 --stan-solvers rk45 [bdf]]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import _common as C  # noqa: E402
import _studies as S  # noqa: E402
import numpy as np  # noqa: E402
from bench_stan import run_child  # noqa: E402

from nlme_bayes.builder import PROPORTIONAL_FLOOR  # noqa: E402

SEED = 20240601
MM_SEED = 2026

# --------------------------------------------------------------------------- cost
COST_CHILD = r"""
import json, sys, time
sys.path.insert(0, {here!r})
import _common as C
C.quiet()
import numpy as np
import _studies as S
from nlme_bayes.builder import build
from nlme_bayes.examples import theophylline_model
from nlme_bayes.structural import ode_templates
n, kind = {n}, {kind!r}
out = {{"n_subjects": n, "kind": kind, "loadavg_start": C.loadavg()}}
data, truth = S.one_cmt_study(n, seed=n)
model = theophylline_model()
if kind == "ode":
    model = model.replace(structure=ode_templates.load("one_cmt_oral_linear"))
t0 = time.perf_counter()
b = build(model, data, store_predictions=False)
out["build_s"] = time.perf_counter() - t0
if kind == "ode":
    out["grid_steps"] = int(b.schedule.n_steps)
    # accuracy of the ODE solution at the truth vs the closed form (NumPy)
    ind = truth["individual"]
    obs = b.observations
    c = model.structure.predict({{k: ind[k] for k in ("CL", "V", "ka")}}, b.schedule).eval()
    ev = data.events()
    dose = ev[ev.EVID == 1].set_index("ID")["AMT"]
    i = obs["subject"].to_numpy()
    ref = S.one_cmt_conc(dose.loc[obs["ID"]].to_numpy(), ind["CL"][i], ind["V"][i],
                         ind["ka"][i], obs["TIME"].to_numpy())
    rel = np.abs(c / ref - 1.0)
    out["max_rel_err"] = float(rel.max())
    out["median_rel_err"] = float(np.median(rel))
cm, out["compile_s"] = C.compile_nutpie(b.pm_model, b.initvals)
x = C.typical_point(cm, b.pm_model, b.initvals)
out.update(C.time_logp_grad(cm, x, seconds=3.0))
out["max_rss_mb"] = C.max_rss_mb()
out["loadavg_end"] = C.loadavg()
print("RESULT " + json.dumps(out))
"""


def case_cost(args: argparse.Namespace) -> dict[str, Any]:
    meta = C.meta(case="ode_cost", sizes=args.sizes)
    rows = []
    for n in args.sizes:
        for kind in ("closed", "ode"):
            print(f"[cost] n = {n}, {kind} ...", flush=True)
            res = run_child(COST_CHILD.format(here=str(HERE), n=n, kind=kind))
            res.setdefault("n_subjects", n)
            res.setdefault("kind", kind)
            rows.append(res)
            print(json.dumps(res)[:400], flush=True)
    meta["loadavg_end"] = C.loadavg()
    out = {"meta": meta, "rows": rows}
    C.write_json("ode_cost.json", out)
    md = cost_md(out)
    (C.RESULTS / "ode_cost.md").write_text(md)
    print(md, flush=True)
    return out


def cost_md(out: dict[str, Any]) -> str:
    by = {(r["n_subjects"], r["kind"]): r for r in out["rows"]}
    lines = [
        "### What the ODE costs: one-compartment oral, closed form vs ODE (RODAS4, default grid)",
        "",
        "| subjects | closed form evals/s | ODE evals/s | ODE / closed-form time | ODE grid steps "
        "| ODE max rel. error | closed compile s | ODE compile s | load (1 min) |",
        "|" + "---|" * 9,
    ]
    for n in sorted({r["n_subjects"] for r in out["rows"]}):
        a, b = by.get((n, "closed"), {}), by.get((n, "ode"), {})
        if "error" in a or "error" in b or not a or not b:
            err = (a.get("error") or b.get("error") or "missing").splitlines()[-1][:80]
            lines.append(f"| {n} | failed: {err} |" + " |" * 7)
            continue
        lines.append(
            f"| {n} | {C.fmt(a['evals_per_s'])} | {C.fmt(b['evals_per_s'])} | "
            f"{C.fmt(b['us_per_eval'] / a['us_per_eval'], 1)} | {b['grid_steps']} | "
            f"{b['max_rel_err']:.1e} | {C.fmt(a['compile_s'])} | {C.fmt(b['compile_s'])} | "
            f"{a['loadavg_start'][0]} / {b['loadavg_start'][0]} |"
        )
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- accuracy
def reference(data: Any, obs: Any, params: dict[str, np.ndarray]) -> np.ndarray:
    from nlme_bayes.datasets.simulated import mm_oral_reference

    ev = data.events()
    out = np.zeros(len(obs))
    subj = obs["subject"].to_numpy()
    for i, sid in enumerate(data.subject_ids):
        m = subj == i
        d = ev[(ev["ID"] == sid) & (ev["EVID"] == 1)]
        p = {k: float(v[i]) for k, v in params.items()}
        out[m] = mm_oral_reference(
            p, list(zip(d["TIME"], d["AMT"], strict=True)), obs.loc[m, "TIME"].to_numpy(float)
        )
    return out


def _err(c: np.ndarray, ref: np.ndarray, obs: Any, data: Any) -> dict[str, Any]:
    rel = np.abs(np.asarray(c) / ref - 1.0)
    j = int(np.argmax(rel))
    ev = data.events()
    sid = obs["ID"].iloc[j]
    dose = float(ev[(ev["ID"] == sid) & (ev["EVID"] == 1)]["AMT"].iloc[0])
    return {
        "max_rel_err": float(rel.max()),
        "median_rel_err": float(np.median(rel)),
        "p99_rel_err": float(np.quantile(rel, 0.99)),
        "worst": {
            "ID": int(sid),
            "TIME": float(obs["TIME"].iloc[j]),
            "dose": dose,
            "conc": float(ref[j]),
        },
    }


def ours_accuracy(
    data: Any,
    obs: Any,
    params: dict[str, np.ndarray],
    ref: np.ndarray,
    max_steps: list[float | None],
) -> list[dict[str, Any]]:
    from nlme_bayes.structural import ode_templates

    rows = []
    for ms in max_steps:
        st = ode_templates.load("mm_oral", **({} if ms is None else {"max_step": ms}))
        sch, _ = st.build_schedule(data)
        c = st.predict(params, sch).eval()
        rows.append(
            {"max_step": ms or "default", "grid_steps": int(sch.n_steps), **_err(c, ref, obs, data)}
        )
        print(f"[mm] ours max_step={ms}: {rows[-1]}", flush=True)
    return rows


def stan_point(params: dict[str, np.ndarray]) -> dict[str, Any]:
    """Stan parameters reproducing each subject's ``params`` exactly (omega = 1, L = I)."""
    logs = {k: np.log(np.asarray(v, float)) for k, v in params.items()}
    pop = [float(np.mean(logs[k])) for k in ("Vmax", "Km", "V", "ka")]
    z = np.stack([logs["Vmax"] - pop[0], logs["V"] - pop[2], logs["ka"] - pop[3]])
    return {
        "log_pop": pop,
        "omega": [1.0, 1.0, 1.0],
        "z": z.tolist(),  # L = I: stan_accuracy runs with full_omega = 0
        "sigma": 0.1,
    }


def stan_accuracy(
    posterior: Any,
    sdata: dict[str, Any],
    point: dict[str, Any],
    ref: np.ndarray,
    obs: Any,
    data: Any,
    solver: int,
    tol: float,
) -> dict[str, Any]:
    d = dict(sdata, gq=1, solver=solver, rtol=tol, atol=tol, full_omega=0)
    post = C.stan_rebuild(posterior, d, SEED)
    with C._silence():
        fit = post.fixed_param(num_chains=1, num_samples=1, init=[point])
    c = np.asarray(fit["ipred_gq"])[:, 0]
    return {"solver": ("rk45", "bdf")[solver], "rtol=atol": tol, **_err(c, ref, obs, data)}


# --------------------------------------------------------------------------- MM side by side
def case_mm(args: argparse.Namespace) -> dict[str, Any]:
    from nlme_bayes.compiled import with_start_jitter
    from nlme_bayes.datasets.simulated import michaelis_menten_study
    from nlme_bayes.sampling_safety import nutpie_initvals
    from nlme_bayes.structural import ode_templates

    data, truth = michaelis_menten_study(args.n_mm, seed=MM_SEED)
    structure = ode_templates.load("mm_oral")
    model = S.mm_model(structure)
    diagonal = len(model.omega.resolve(model.iiv_names)) > 1
    smap = C.StanMap(
        pop=("Vmax", "Km", "V", "ka"),
        iiv=("Vmax", "V", "ka"),
        sigma="sigma_prop",
        extra={"diagonal": diagonal, "L_name": "L_free"},
    )
    meta = C.meta(
        case="mm",
        chains=args.chains,
        draws=args.draws,
        tune=args.tune,
        n_subjects=data.n_subjects,
        n_observations=data.n_observations,
        solver="rodas4, default max_step",
        start_jitter=args.start_jitter,
        equal_accuracy=args.equal_accuracy,
    )
    print("[mm] ours ...", flush=True)
    ours, fit, compiled = C.run_ours(
        model,
        data,
        smap,
        chains=args.chains,
        draws=args.draws,
        tune=args.tune,
        seed=SEED,
        start_jitter=args.start_jitter,
    )
    ours["nonfinite_transitions"] = fit.results.attrs.get("nonfinite_transitions")
    built = fit.built
    ours["grid_steps"] = int(built.schedule.n_steps)
    x0 = C.typical_point(compiled, built.pm_model, built.initvals)
    ours["logp_grad"] = C.time_logp_grad(compiled, x0, seconds=2.0)
    # Stan starts from draws of the start function our fit used (same jitter width)
    starts = with_start_jitter(compiled, built, nutpie_initvals(built), args.start_jitter)
    inits = C.stan_inits(starts, built.pm_model, smap, args.chains, SEED)
    obs = built.observations
    post = fit.results["posterior"].dataset
    params = {k: post[k].mean(("chain", "draw")).values for k in ("Vmax", "Km", "V", "ka")}
    ref = reference(data, obs, params)
    acc_ours = ours_accuracy(data, obs, params, ref, [None, *args.max_steps])
    ours["accuracy"] = acc_ours[0]
    C.write_json("ode_mm_ours.json", {"meta": meta, "ours": ours, "accuracy_ours": acc_ours})

    sdata = {
        "N_subj": data.n_subjects,
        "N_obs": len(obs),
        "dv": obs["DV"].to_numpy(float),
        "gq": 0,
        "solver": 0,
        "rtol": 1e-6,
        "atol": 1e-6,
        "max_steps": 100000,
    }
    sdata.update(S.stan_priors(model, smap.pop, smap.iiv, data))
    sdata["full_omega"] = 0 if diagonal else 1
    sdata.update(C.ode_segments(data, obs))
    dv = np.abs(sdata["dv"])
    sdata["prop_floor"] = PROPORTIONAL_FLOOR * float(np.median(dv[dv > 0]))
    print("[mm] Stan compile ...", flush=True)
    posterior, compile_s = C.stan_build(C.stan_program("mm_oral_ode.stan"), sdata, SEED)
    point = stan_point(params)
    acc_stan = []
    chosen: dict[str, float] = {}
    for name in args.stan_solvers:
        solver = {"rk45": 0, "bdf": 1}[name]
        for tol in sorted(args.stan_tols, reverse=True):  # the loosest first
            a = stan_accuracy(posterior, sdata, point, ref, obs, data, solver, tol)
            acc_stan.append(a)
            print(f"[mm] Stan {name} tol={tol}: {a}", flush=True)
            key = {"max": "max_rel_err", "p99": "p99_rel_err"}[args.equal_accuracy]
            if a[key] <= acc_ours[0][key]:
                chosen.setdefault(name, tol)
        chosen.setdefault(name, min(args.stan_tols))
    runs = {}
    for name, tol in chosen.items():
        print(f"[mm] Stan {name} at rtol=atol={tol} ...", flush=True)
        d = dict(sdata, solver={"rk45": 0, "bdf": 1}[name], rtol=tol, atol=tol)
        m, _f, _p = C.run_stan(
            "",
            d,
            smap,
            chains=args.chains,
            draws=args.draws,
            tune=args.tune,
            seed=SEED,
            inits=inits,
            posterior=posterior,
        )
        m["compile_s"] = compile_s
        m["total_s"] += compile_s
        _rerate(m)
        m["solver"] = f"ode_{name}_tol, rtol = atol = {tol:g}"
        m["accuracy"] = next(a for a in acc_stan if a["solver"] == name and a["rtol=atol"] == tol)
        m["init"] = (
            "our sampler's start function (one draw per chain; typical values, omegas and "
            f"sigma jittered by U(-{args.start_jitter:g}, {args.start_jitter:g}) on the log "
            "scale, subjects' z at +-0.01)"
        )
        runs[name] = m
    out = {
        "meta": meta,
        "ours": ours,
        "stan": runs,
        "accuracy_ours": acc_ours,
        "accuracy_stan": acc_stan,
        "ratios": {k: C.ratios(ours, v) for k, v in runs.items()},
        "truth": {k: v for k, v in truth.items() if k != "individual"},
    }
    out["meta"]["loadavg_end"] = C.loadavg()
    C.write_json("ode_mm.json", out)
    md = mm_md(out)
    (C.RESULTS / "ode_mm.md").write_text(md)
    print(md, flush=True)
    return out


def _rerate(m: dict[str, Any]) -> None:
    m["min_ess_per_s_total"] = m["min_ess_bulk"] / m["total_s"]


def mm_md(out: dict[str, Any]) -> str:
    m = out["meta"]
    lines = []
    for stan in out["stan"].values():
        lines.append(
            C.side_by_side_md(
                f"Michaelis-Menten oral ODE, {m['n_subjects']} subjects: ours (RODAS4, "
                "default grid)"
                f" vs Stan {stan['solver']}; {m['chains']} chains x {m['draws']} draws "
                f"(+{m['tune']} warm-up)",
                out["ours"],
                stan,
            )
        )
        lines += [
            "Posterior agreement (population level; truth: "
            + ", ".join(f"{k} {v}" for k, v in out["truth"].items())
            + "):",
            "",
            C.posterior_agreement_md(out["ours"], stan),
        ]
    lines += [
        "",
        "#### Accuracy at our posterior mean (each subject's posterior-mean "
        "parameters) vs SciPy LSODA rtol 1e-10",
        "",
        "| solver | setting | grid steps | max rel. error | 99th pct | median | worst at |",
        "|---|---|---|---|---|---|---|",
    ]
    for a in out["accuracy_ours"]:
        w = a["worst"]
        lines.append(
            f"| ours RODAS4 | max_step {a['max_step']} | {a['grid_steps']} | "
            f"{a['max_rel_err']:.1e} | {a['p99_rel_err']:.1e} | "
            f"{a['median_rel_err']:.1e} | ID {w['ID']} ({w['dose']:g} mg), t = "
            f"{w['TIME']:g} h, C = {w['conc']:.3g} |"
        )
    for a in out["accuracy_stan"]:
        w = a["worst"]
        lines.append(
            f"| Stan {a['solver']} | rtol = atol = {a['rtol=atol']:g} | adaptive | "
            f"{a['max_rel_err']:.1e} | {a['p99_rel_err']:.1e} | "
            f"{a['median_rel_err']:.1e} | ID {w['ID']} ({w['dose']:g} mg), t = "
            f"{w['TIME']:g} h, C = {w['conc']:.3g} |"
        )
    o = out["ours"]
    lines += [
        "",
        f"Our compiled log density + gradient: {o['logp_grad']['us_per_eval']:.0f} us "
        f"per call ({o['grid_steps']} grid steps); non-finite transitions: "
        f"{o.get('nonfinite_transitions')}.",
    ]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("cases", nargs="+", choices=("cost", "mm"))
    ap.add_argument("--sizes", type=int, nargs="+", default=[12, 100, 1000])
    ap.add_argument("--chains", type=int, default=4)
    ap.add_argument("--draws", type=int, default=1000)
    ap.add_argument("--tune", type=int, default=1000)
    ap.add_argument("--n-mm", type=int, default=40)
    ap.add_argument(
        "--max-steps",
        type=float,
        nargs="*",
        default=[0.6, 0.3, 0.15],
        help="extra max_step values for our accuracy table",
    )
    ap.add_argument(
        "--start-jitter",
        type=float,
        default=0.5,
        help="half-width of the start jitter on the log scale (Model.fit(start_jitter=)); "
        "both systems start from the same draws",
    )
    ap.add_argument("--stan-solvers", nargs="+", default=["rk45"], choices=("rk45", "bdf"))
    ap.add_argument(
        "--stan-tols", type=float, nargs="+", default=[1e-3, 1e-4, 1e-5, 1e-6, 1e-7, 1e-8]
    )
    ap.add_argument(
        "--equal-accuracy",
        choices=("max", "p99"),
        default="max",
        help="Stan samples at the loosest tolerance whose relative error at our posterior "
        "mean is no larger than ours by this measure: the worst observation, or the 99th "
        "percentile over observations",
    )
    args = ap.parse_args()
    C.quiet()
    t0 = time.perf_counter()
    for case in args.cases:
        {"cost": case_cost, "mm": case_mm}[case](args)
    print(f"done in {time.perf_counter() - t0:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
