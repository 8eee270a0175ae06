"""Run the performance suite (issues 4 and 8) and write the report.

One command::

    .venv/bin/python benchmarks/run_all.py            # everything (hours on 2 busy cores)
    .venv/bin/python benchmarks/run_all.py --quick    # a smoke run: tiny sizes and draws
    .venv/bin/python benchmarks/run_all.py --report-only   # rebuild summary.md and plots

Each benchmark runs in its own process, in this order: the ODE cost (``bench_ode.py cost``),
Theophylline and the two-compartment study against Stan (``bench_stan.py theoph two_cmt``),
the Michaelis-Menten ODE against Stan (``bench_ode.py mm``), the scaling study and floor
(``bench_stan.py scaling``).  Results: ``benchmarks/results/{ode_cost,ode_mm,stan_theoph,
stan_two_cmt,stan_scaling}.{json,md}``, ``summary.md`` and ``*.png``.  Needs the ``bench``
extra (``pip install -e .[bench]``: pystan) and a C++ compiler for Stan.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import _common as C  # noqa: E402

STEPS = (
    ("ode_cost", ["bench_ode.py", "cost"]),
    ("stan_theoph", ["bench_stan.py", "theoph"]),
    ("stan_theoph_auto", ["bench_stan.py", "theoph", "--centered", "auto", "--tag", "_auto"]),
    ("stan_theoph_ta0.8", ["bench_stan.py", "theoph", "--target-accept", "0.8", "--tag", "_ta0.8"]),
    ("stan_two_cmt", ["bench_stan.py", "two_cmt", "--centered", "auto"]),
    (
        "stan_two_cmt_centred_jitter0.5",
        ["bench_stan.py", "two_cmt", "--centered", "true", "--start-jitter", "0.5",
         "--tag", "_centred_jitter0.5"],
    ),
    ("ode_mm", ["bench_ode.py", "mm"]),
    ("stan_scaling", ["bench_stan.py", "scaling"]),
    (
        "stan_scaling_auto",
        ["bench_stan.py", "scaling", "--centered", "auto", "--tag", "_auto",
         "--fit-sizes", "1000", "5000"],
    ),
)  # fmt: skip
QUICK = {
    "ode_cost": ["--sizes", "12"],
    "stan_theoph": ["--draws", "100", "--tune", "100"],
    "stan_theoph_auto": ["--draws", "100", "--tune", "100"],
    "stan_theoph_ta0.8": ["--draws", "100", "--tune", "100"],
    "stan_two_cmt": ["--draws", "100", "--tune", "100", "--n-two-cmt", "20"],
    "stan_two_cmt_centred_jitter0.5": ["--draws", "100", "--tune", "100", "--n-two-cmt", "20"],
    "ode_mm": [
        "--draws",
        "50",
        "--tune",
        "50",
        "--n-mm",
        "8",
        "--max-steps",
        "0.3",
        "--stan-tols",
        "1e-3",
        "1e-5",
    ],
    "stan_scaling_auto": ["--sizes", "12", "100", "--fit-sizes", "100", "--draws", "100"],
    "stan_scaling": [
        "--sizes",
        "12",
        "100",
        "--fit-sizes",
        "12",
        "--draws",
        "100",
        "--tune",
        "100",
    ],
}


def run_steps(names: list[str], quick: bool, extra: dict[str, list[str]]) -> list[dict[str, Any]]:
    log = []
    for name, cmd in STEPS:
        if name not in names:
            continue
        argv = [
            sys.executable,
            "-P",
            str(HERE / cmd[0]),
            *cmd[1:],
            *(QUICK[name] if quick else []),
            *extra.get(name, []),
        ]
        print(f"== {name}: {' '.join(argv[2:])}", flush=True)
        t0 = time.perf_counter()
        proc = subprocess.run(argv, check=False, env=dict(os.environ, PYTHONWARNINGS="ignore"))
        log.append(
            {
                "step": name,
                "rc": proc.returncode,
                "wall_s": time.perf_counter() - t0,
                "loadavg_end": C.loadavg(),
            }
        )
        print(f"== {name}: rc {proc.returncode}, {log[-1]['wall_s']:.0f} s", flush=True)
    return log


def _load(name: str) -> dict[str, Any] | None:
    p = C.RESULTS / f"{name}.json"
    return json.loads(p.read_text()) if p.exists() else None


def summary() -> str:
    """The headline table (ratios ours/Stan measured in one run) and the parts' reports."""
    rows = []
    for name, label in (
        ("stan_theoph", "Theophylline, closed form (non-centred)"),
        ("stan_theoph_auto", "Theophylline, closed form, centered='auto'"),
        ("stan_theoph_ta0.8", "Theophylline, closed form (non-centred), target 0.8"),
        ("stan_two_cmt", "2-cmt oral multiple dose, closed form"),
        (
            "stan_two_cmt_centred_jitter0.5",
            "2-cmt oral multiple dose, closed form, centred, start jitter 0.5",
        ),
    ):
        d = _load(name)
        if d:
            cen = d["meta"].get("centered")
            if name == "stan_two_cmt" and cen:
                label += ", centred" if all(cen.values()) else ", non-centred"
            rows.append((label, d["ours"], d["stan"], d["meta"]))
    mm = _load("ode_mm")
    if mm:
        for solver, st in mm["stan"].items():
            rows.append(
                (
                    f"Michaelis-Menten ODE vs {solver} ({st['solver'].split(', ')[1]})",
                    mm["ours"],
                    st,
                    mm["meta"],
                )
            )
    lines = [
        "# Performance benchmarks: nlme_bayes vs Stan",
        "",
        "Measured side by side in one run per model, on the same machine, same chains, "
        "warm-up and draws, same starts (Stan gets draws of our sampler's start function). "
        "**Load caveat:** the machine (2 cores) was shared with other jobs; the load "
        "average is given for every run. Times are wall-clock; ratios taken in one run "
        "share the load, absolute times do not carry over to an idle machine. A ratio is "
        "only meaningful when both runs converged (max R-hat < 1.01 on both sides); the "
        "others are marked *not converged* and are indicative only.",
        "",
        "| model | subjects | draws | min ESS/s ours | min ESS/s Stan | ESS/s ratio | "
        "max R-hat ours / Stan | total s ours | total s Stan (compile) | "
        "divergences ours / Stan | load (1 min) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for label, o, s, m in rows:
        rows_load = f"{o['loadavg'][0][0]} / {s['loadavg'][0][0]}"
        converged = max(o["max_rhat"], s["max_rhat"]) < 1.01
        ratio = f"{o['min_ess_per_s'] / s['min_ess_per_s']:.1f}x"
        ratio = f"**{ratio}**" if converged else f"{ratio} (*not converged*)"
        lines.append(
            f"| {label} | {m['n_subjects']} | {m['chains']} x {m['draws']} | "
            f"{C.fmt(o['min_ess_per_s'])} | {C.fmt(s['min_ess_per_s'])} | {ratio} | "
            f"{o['max_rhat']:.4g} / {s['max_rhat']:.4g} "
            f"| {C.fmt(o['total_s'])} | {C.fmt(s['total_s'])} ({C.fmt(s['compile_s'])}) | "
            f"{o['divergences']} / {s['divergences']} | {rows_load} |"
        )
    lines += [
        "",
        "min ESS/s = the smallest bulk ESS over the population-level quantities "
        "(typical values, omega SDs and correlations, residual SD) per second of MCMC "
        "wall time (warm-up + sampling, chains in parallel on both cores).",
        "",
    ]
    for name in (
        "stan_theoph",
        "stan_theoph_auto",
        "stan_theoph_ta0.8",
        "stan_two_cmt",
        "stan_two_cmt_centred_jitter0.5",
        "ode_mm",
        "ode_cost",
        "stan_scaling",
        "stan_scaling_auto",
    ):
        p = C.RESULTS / f"{name}.md"
        if p.exists():
            lines += [f"## {name}", "", p.read_text(), ""]
    return "\n".join(lines)


def plots() -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    made = []
    sc = _load("stan_scaling")
    if sc:
        ok = [r for r in sc["rows"] if "error" not in r]
        if ok:
            n = [r["n_subjects"] for r in ok]
            fig, ax = plt.subplots(1, 2, figsize=(10, 4))
            ax[0].loglog(n, [r["ours"]["us_per_eval"] for r in ok], "o-", label="ours (nutpie)")
            ax[0].loglog(n, [r["floor"]["numba_us"] for r in ok], "s-", label="floor (Numba)")
            ax[0].loglog(n, [r["floor"]["numpy_us"] for r in ok], "^-", label="floor (NumPy)")
            ax[0].set(
                xlabel="subjects", ylabel="us per logp+gradient", title="cost of one gradient"
            )
            ax[0].legend()
            ax[1].semilogx(
                n, [r["ours"]["us_per_eval"] / r["n_subjects"] for r in ok], "o-", label="ours"
            )
            ax[1].semilogx(
                n,
                [r["floor"]["numba_us"] / r["n_subjects"] for r in ok],
                "s-",
                label="floor (Numba)",
            )
            ax[1].set(xlabel="subjects", ylabel="us per subject", title="cost per subject")
            ax[1].legend()
            fig.tight_layout()
            fig.savefig(C.RESULTS / "scaling.png", dpi=110)
            plt.close(fig)
            made.append("scaling.png")
    labels, vals = [], []
    for name, label in (
        ("stan_theoph", "Theoph"),
        ("stan_theoph_auto", "Theoph\n(centred)"),
        ("stan_two_cmt", "2-cmt MD"),
    ):
        d = _load(name)
        if d:
            labels.append(label)
            vals.append(d["ours"]["min_ess_per_s"] / d["stan"]["min_ess_per_s"])
    mm = _load("ode_mm")
    if mm:
        for solver, st in mm["stan"].items():
            labels.append(f"MM ODE ({solver})")
            vals.append(mm["ours"]["min_ess_per_s"] / st["min_ess_per_s"])
    if vals:
        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.bar(labels, vals, color="tab:blue")
        ax.axhline(1.0, color="k", lw=0.8)
        ax.set(ylabel="min bulk ESS/s, ours / Stan", title="same run, same machine")
        for i, v in enumerate(vals):
            ax.text(i, v, f"{v:.1f}x", ha="center", va="bottom")
        fig.tight_layout()
        fig.savefig(C.RESULTS / "ess_ratio.png", dpi=110)
        plt.close(fig)
        made.append("ess_ratio.png")
    cost = _load("ode_cost")
    if cost:
        by = {(r["n_subjects"], r["kind"]): r for r in cost["rows"] if "error" not in r}
        n = sorted({k[0] for k in by if (k[0], "ode") in by and (k[0], "closed") in by})
        if n:
            fig, ax = plt.subplots(figsize=(5, 3.5))
            for kind, mk in (("closed", "o-"), ("ode", "s-")):
                ax.loglog(n, [by[(k, kind)]["evals_per_s"] for k in n], mk, label=kind)
            ax.set(
                xlabel="subjects",
                ylabel="logp+gradient evals / s",
                title="one-compartment oral: ODE vs closed form",
            )
            ax.legend()
            fig.tight_layout()
            fig.savefig(C.RESULTS / "ode_cost.png", dpi=110)
            plt.close(fig)
            made.append("ode_cost.png")
    return made


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument(
        "--steps", nargs="+", default=[s for s, _ in STEPS], choices=[s for s, _ in STEPS]
    )
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--report-only", action="store_true")
    args = ap.parse_args()
    if not args.report_only:
        log = run_steps(args.steps, args.quick, {})
        C.write_json("run_all_log.json", {"meta": C.meta(quick=args.quick), "steps": log})
    made = plots()
    text = summary()
    text += "\n" + "\n".join(f"![{p}]({p})" for p in made) + "\n"
    (C.RESULTS / "summary.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
