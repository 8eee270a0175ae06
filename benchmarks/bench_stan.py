"""Side by side with Stan (issue 8): closed-form models, the scaling study and the floor.

Cases (each writes ``results/stan_<case>.json`` and ``.md``):

``theoph``
    Theophylline (12 subjects), ``nlme_bayes.examples.theophylline_model()`` vs
    ``stan/one_cmt_oral.stan`` (same priors, read from our specification).
``two_cmt``
    100 simulated subjects, two-compartment oral, 7 doses every 12 h (``_studies.py``) vs
    ``stan/two_cmt_oral.stan``.
``scaling``
    12, 100, 1000, 5000 simulated Theophylline-like subjects: compile time, time per
    log-density+gradient of our compiled model and of the hand-written floor (``_floor.py``),
    peak memory, and -- for the sizes given in ``--fit-sizes`` -- a full fit: MCMC wall time
    per effective sample.  Every size runs in a fresh process (its own memory peak).

Both systems: the same chains, warm-up and draws, the same cores, and Stan starts each chain
from a draw of our sampler's own start function (see ``_common.py``).

Usage::

    .venv/bin/python benchmarks/bench_stan.py theoph two_cmt scaling
        [--chains 4 --draws 1000 --tune 1000 --sizes 12 100 1000 5000
         --fit-sizes 12 100 1000]

No thresholds: a measurement, not a test.  The machine's load average is recorded.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import _common as C  # noqa: E402
import _studies as S  # noqa: E402
import numpy as np  # noqa: E402

SEED = 20240601


# --------------------------------------------------------------------------- side by side
def side_by_side(
    case: str,
    model: Any,
    data: Any,
    smap: C.StanMap,
    stan_file: str,
    extra_data: dict[str, Any],
    args: argparse.Namespace,
    title: str,
) -> dict[str, Any]:
    meta = C.meta(
        case=case,
        chains=args.chains,
        draws=args.draws,
        tune=args.tune,
        n_subjects=data.n_subjects,
        n_observations=data.n_observations,
        target_accept=args.target_accept,
        start_jitter=args.start_jitter,
    )
    print(f"[{case}] ours ...", flush=True)
    ours, fit, compiled = C.run_ours(
        model, data, smap, chains=args.chains, draws=args.draws, tune=args.tune, seed=SEED,
        target_accept=args.target_accept, start_jitter=args.start_jitter,
    )  # fmt: skip
    centered = {n: fit.model.parameter(n).centered is True for n in smap.iiv}
    meta["centered"] = centered
    built = fit.built
    x0 = C.typical_point(compiled, built.pm_model, built.initvals)
    ours["logp_grad"] = C.time_logp_grad(compiled, x0, seconds=2.0)
    inits = C.stan_inits(compiled, built.pm_model, smap, args.chains, SEED)
    obs = built.observations
    sdata = {"N_subj": data.n_subjects, "N_obs": len(obs), "dv": obs["DV"].to_numpy(float)}
    sdata.update(S.stan_priors(model, smap.pop, smap.iiv, data))
    sdata.update(extra_data(data, obs, centered) if callable(extra_data) else extra_data)
    print(f"[{case}] Stan ...", flush=True)
    stan, _fit, _post = C.run_stan(
        C.stan_program(stan_file),
        sdata,
        smap,
        chains=args.chains,
        draws=args.draws,
        tune=args.tune,
        seed=SEED,
        inits=inits,
        delta=args.target_accept,  # Stan's adapt_delta = our target_accept: same settings
    )
    stan["init"] = "our sampler's start function (one draw per chain)"
    out = {"meta": meta, "ours": ours, "stan": stan, "ratios": C.ratios(ours, stan)}
    out["meta"]["loadavg_end"] = C.loadavg()
    C.write_json(f"stan_{case}{args.tag}.json", out)
    md = [
        C.side_by_side_md(title, ours, stan),
        f"Our compiled log density + gradient: {ours['logp_grad']['us_per_eval']:.1f} us per "
        "call (nutpie's Numba function, at the typical values).",
        "",
        "Posterior agreement (population level):",
        "",
        C.posterior_agreement_md(ours, stan),
    ]
    (C.RESULTS / f"stan_{case}{args.tag}.md").write_text("\n".join(md))
    print("\n".join(md), flush=True)
    return out


def _pairs(data: Any, obs: Any, centered: dict[str, bool]) -> dict[str, Any]:
    p = C.dosing_pairs(data, obs)
    one = p["N_pair"] == len(obs) and np.array_equal(p["pair_obs"], np.arange(1, len(obs) + 1))
    return {**p, "one_pair_per_obs": int(one), "centered": _all_or_none(centered)}


def _all_or_none(centered: dict[str, bool]) -> int:
    if len(set(centered.values())) > 1:
        raise ValueError(f"the Stan programs centre all random effects or none: {centered}")
    return int(all(centered.values()))


def case_theoph(args: argparse.Namespace) -> dict[str, Any]:
    import nlme_bayes as nb
    from nlme_bayes.examples import theophylline_model

    smap = C.StanMap(pop=("CL", "V", "ka"), iiv=("CL", "V", "ka"), sigma="sigma_add")
    model = theophylline_model()
    if args.centered is not None:
        model = model.with_centering(args.centered)
    return side_by_side(
        "theoph",
        model,
        nb.datasets.theophylline(),
        smap,
        "one_cmt_oral.stan",
        _pairs,
        args,
        f"Theophylline (12 subjects, closed form), {args.chains} chains x "
        f"{args.draws} draws (+{args.tune} warm-up)",
    )


def case_two_cmt(args: argparse.Namespace) -> dict[str, Any]:
    data, _truth = S.two_cmt_study(args.n_two_cmt, seed=2)
    smap = C.StanMap(
        pop=("CL", "V", "Q", "V2", "ka"), iiv=("CL", "V", "V2", "ka"), sigma="sigma_prop"
    )

    def extra(d: Any, obs: Any, centered: dict[str, bool]) -> dict[str, Any]:
        return {**C.dosing_pairs(d, obs), "centered": _all_or_none(centered)}

    model = S.two_cmt_model()
    if args.centered is not None:
        model = model.with_centering(args.centered)
    return side_by_side(
        "two_cmt",
        model,
        data,
        smap,
        "two_cmt_oral.stan",
        extra,
        args,
        f"Two-compartment oral, {args.n_two_cmt} subjects x 7 doses (closed "
        f"form), {args.chains} chains x {args.draws} draws (+{args.tune} warm-up)",
    )


# --------------------------------------------------------------------------- scaling
CHILD = r"""
import json, sys, time
sys.path.insert(0, {here!r})
import _common as C
C.quiet()
import _floor as F, _studies as S
from nlme_bayes.builder import build
from nlme_bayes.examples import theophylline_model
n, fit_it, chains, draws, tune, store = {n}, {fit}, {chains}, {draws}, {tune}, {store}
centered = {centered!r}
out = {{"n_subjects": n, "loadavg_start": C.loadavg()}}
data, truth = S.one_cmt_study(n, seed=n)
model = theophylline_model()  # non-centred: the per-gradient figures and the floor
fit_model = model if centered is None else model.with_centering(centered)
t0 = time.perf_counter()
b = build(model, data, store_predictions=False)
out["build_s"] = time.perf_counter() - t0
cm, out["compile_s"] = C.compile_nutpie(b.pm_model, b.initvals)
x = C.typical_point(cm, b.pm_model, b.initvals)
out["ours"] = C.time_logp_grad(cm, x, seconds=2.0)
d = F.floor_data(b, model)
out["floor_check"] = F.check_against(cm, d, n_points=2)
out["floor"] = F.time_floor(d, x, seconds=2.0)
out["max_rss_mb_before_fit"] = C.max_rss_mb()
if fit_it:
    smap = C.StanMap(pop=("CL", "V", "ka"), iiv=("CL", "V", "ka"), sigma="sigma_add")
    m, fit, _ = C.run_ours(fit_model, data, smap, chains=chains, draws=draws, tune=tune, seed=n,
                           store_predictions=store)
    keep = ("compile_s", "build_s", "mcmc_wall_s", "total_s", "min_ess_bulk", "min_ess_bulk_all",
            "min_ess_per_s", "divergences", "max_rhat", "leapfrog_all", "us_per_grad_in_mcmc",
            "warmup_chain_s", "sampling_chain_s", "loadavg")
    out["fit"] = {{k: m.get(k) for k in keep}}
    out["fit"]["s_per_ess"] = m["mcmc_wall_s"] / m["min_ess_bulk"]
    out["fit"]["chains"], out["fit"]["draws"], out["fit"]["tune"] = chains, draws, tune
    out["fit"]["store_predictions"] = store
    out["fit"]["centered"] = {{p: fit.model.parameter(p).centered for p in smap.iiv}}
out["max_rss_mb"] = C.max_rss_mb()
out["loadavg_end"] = C.loadavg()
print("RESULT " + json.dumps(out, default=C._json_default))
"""


def run_child(code: str, timeout: float | None = None) -> dict[str, Any]:
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(
            [sys.executable, "-P", "-c", code],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout} s"}
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            res = json.loads(line[7:])
            res["child_wall_s"] = time.perf_counter() - t0
            return res
    return {"error": (proc.stderr or proc.stdout)[-3000:]}


def case_scaling(args: argparse.Namespace) -> dict[str, Any]:
    meta = C.meta(
        case="scaling",
        sizes=args.sizes,
        fit_sizes=args.fit_sizes,
        chains=args.chains,
        draws=args.draws,
        tune=args.tune,
        centered=args.centered,
    )
    rows = []
    for n in args.sizes:
        fit = n in args.fit_sizes
        print(f"[scaling] n = {n}{' (with fit)' if fit else ''} ...", flush=True)
        code = CHILD.format(
            here=str(HERE),
            n=n,
            fit=fit,
            chains=args.chains,
            draws=args.draws,
            tune=args.tune,
            store=n <= args.predictions_up_to,
            centered=args.centered,
        )
        res = run_child(code, timeout=args.timeout)
        res.setdefault("n_subjects", n)
        rows.append(res)
        print(json.dumps(res, default=C._json_default)[:600], flush=True)
    meta["loadavg_end"] = C.loadavg()
    out = {"meta": meta, "rows": rows}
    C.write_json(f"stan_scaling{args.tag}.json", out)
    md = scaling_md(out)
    (C.RESULTS / f"stan_scaling{args.tag}.md").write_text(md)
    print(md, flush=True)
    return out


def scaling_md(out: dict[str, Any]) -> str:
    m = out["meta"]
    lines = [
        "### Scaling: closed-form one-compartment oral (Theophylline design), "
        f"fits {m['chains']} chains x {m['draws']} draws (+{m['tune']} warm-up), "
        f"random effects centered={m.get('centered')!r} (per-gradient figures: non-centred)",
        "",
        "| subjects | compile s | ours us / logp+grad | per subject | floor (Numba) us | "
        "ours / floor | floor (NumPy) us | peak RSS MiB | fit: MCMC wall s | min ESS | "
        "s per ESS | total s | divergences | load (1 min) |",
        "|" + "---|" * 14,
    ]
    for r in out["rows"]:
        if "error" in r:
            lines.append(
                f"| {r['n_subjects']} | failed: {r['error'].splitlines()[-1][:80]} |" + " |" * 12
            )
            continue
        us = r["ours"]["us_per_eval"]
        fl = r["floor"]["numba_us"]
        f = r.get("fit") or {}
        lines.append(
            f"| {r['n_subjects']} | {C.fmt(r['compile_s'])} | {C.fmt(us)} | "
            f"{C.fmt(us / r['n_subjects'], 2)} | {C.fmt(fl)} | {C.fmt(us / fl, 2)} | "
            f"{C.fmt(r['floor']['numpy_us'])} | {C.fmt(r['max_rss_mb'])} | "
            f"{C.fmt(f.get('mcmc_wall_s'))} | {C.fmt(f.get('min_ess_bulk'))} | "
            f"{C.fmt(f.get('s_per_ess'), 3)} | {C.fmt(f.get('total_s'))} | "
            f"{C.fmt(f.get('divergences'))} | {r['loadavg_start'][0]} |"
        )
    lines.append("")
    lines.append(
        "The floor computes the same log density and gradient as our graph (checked at "
        "random points: largest relative difference "
        + ", ".join(
            f"{r['floor_check']['max_rel_diff_grad']:.1e}"
            for r in out["rows"]
            if "floor_check" in r
        )
        + " in the gradient)."
    )
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("cases", nargs="+", choices=("theoph", "two_cmt", "scaling"))
    ap.add_argument("--chains", type=int, default=4)
    ap.add_argument("--draws", type=int, default=1000)
    ap.add_argument("--tune", type=int, default=1000)
    ap.add_argument("--n-two-cmt", type=int, default=100)
    ap.add_argument(
        "--target-accept",
        type=float,
        default=0.9,
        help="target acceptance of both systems (ours: target_accept, Stan: adapt_delta); "
        "default 0.9, our default (Stan's own default is 0.8)",
    )
    ap.add_argument(
        "--centered",
        type=lambda v: {"auto": "auto", "true": True, "false": False}[v],
        default=None,
        help="theoph, two_cmt, scaling (the fits): our random effects' parameterisation "
        "(auto/true/false; Stan's program follows whatever ours samples)",
    )
    ap.add_argument(
        "--start-jitter",
        type=float,
        default=1.0,
        help="Model.fit(start_jitter=): half-width of the population-level start jitter; "
        "Stan's inits are draws of the same start function",
    )
    ap.add_argument("--tag", default="", help="suffix of the results files, e.g. _ta0.8")
    ap.add_argument("--sizes", type=int, nargs="+", default=[12, 100, 1000, 5000])
    ap.add_argument("--fit-sizes", type=int, nargs="*", default=[12, 100, 1000, 5000])
    ap.add_argument("--timeout", type=float, default=5400, help="per scaling size, seconds")
    ap.add_argument(
        "--predictions-up-to",
        type=int,
        default=1000,
        help="scaling fits of more subjects run with store_predictions=False "
        "(IPRED/PRED of 5000 subjects x 4000 draws would take 3 GB)",
    )
    args = ap.parse_args()
    C.quiet()
    for case in args.cases:
        {"theoph": case_theoph, "two_cmt": case_two_cmt, "scaling": case_scaling}[case](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
