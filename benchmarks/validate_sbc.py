"""Simulation-based calibration (SBC) of the main model templates, through the batch runner.

For each template: ``--replicates`` parameter sets and studies are drawn from the priors on
the template's example design (``--subjects`` subjects), each study is fitted with the
template as shipped (its ``centered`` setting included) through a batch plan on a Dask
LocalCluster, and the rank of every true value among ``--n-ranks - 1`` thinned posterior
draws is tested for uniformity (chi-square, Bonferroni over the quantities: family-wise 5 %
per template); the coverage of the 50 % and 90 % central intervals is given with 99 %
binomial limits. See :mod:`nlme_bayes.sbc` for the method (Talts et al. 2018).

Priors. SBC draws the truth from the prior, so the prior must describe plausible studies.
The templates' default typical-value priors are ``LogNormal(log typical, 1)`` -- a factor
of 7 either way, deliberately weak for fitting real data -- under which ~9 % of one-
compartment oral studies have ka below CL/V (the flip-flop mode, a genuinely bimodal
posterior). Here those default priors get a log-scale SD of ``--prior-sd`` (0.5: a factor
of 2.7 either way); the files' explicit priors, the Omega SD priors (HalfNormal(0.5)) and the
residual-error priors are used as they are (a data-derived additive-SD prior is pinned on
the design: ``sbc.pin_data_priors``).

Usage::

    .venv/bin/python benchmarks/validate_sbc.py [--templates one_cmt_oral emax ...]
        [--replicates 100] [--subjects 12] [--draws 500 --tune 500 --chains 4]
        [--workers 2] [--work build/sbc] [--out benchmarks/results]

A run that is stopped resumes where it stopped (the batch plan skips finished fits).
Writes ``sbc.json``, ``sbc.md`` and ``sbc_<template>.png`` into ``--out``. A measurement,
not a test: ``tests/test_sbc.py`` runs a small study in the suite.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

warnings.filterwarnings("ignore")

MAIN = ("one_cmt_oral", "one_cmt_iv_bolus", "two_cmt_oral", "emax", "logistic")


def sbc_model(name: str, prior_sd: float):
    """The template with its *default* typical-value priors narrowed to ``prior_sd``."""
    import nlme_bayes as nb
    from nlme_bayes import templates

    model = templates.load(name)
    for p in model.parameters:
        if p.prior is not None or p.fixed:
            continue  # an explicit prior of the file: as shipped
        if p.iiv == "normal":
            prior = nb.Prior("Normal", mu=p.typical, sigma=abs(p.typical) * prior_sd)
        elif p.iiv == "logit":
            prior = nb.Prior("LogitNormal", mu=math.log(p.typical / (1 - p.typical)),
                             sigma=prior_sd)  # fmt: skip
        else:
            prior = nb.Prior("LogNormal", mu=math.log(p.typical), sigma=prior_sd)
        model = templates.update_parameter(model, p.name, prior=prior)
    return model


def study_for(name: str, args: argparse.Namespace):
    from nlme_bayes import sbc, templates

    folder = Path(args.work) / name
    if (folder / "sbc.json").exists():
        return sbc.load_study(folder)
    design = templates.get(name).example_data(n_subjects=args.subjects, random_seed=args.seed)
    return sbc.prepare(
        sbc_model(name, args.prior_sd), design, folder, n_replicates=args.replicates,
        random_seed=args.seed, draws=args.draws, tune=args.tune, chains=args.chains,
        n_ranks=args.n_ranks, n_workers=args.workers, fit_seed=args.seed,
    )  # fmt: skip


def analyse(name: str, study, args: argparse.Namespace, seconds: float) -> dict:
    from nlme_bayes import sbc

    table = sbc.ranks(study)
    uni = sbc.uniformity(table, n_ranks=study.n_ranks)
    cov = sbc.coverage(table)
    sbc.plot_ranks(
        table, Path(args.out) / f"sbc_{name}.png", n_ranks=study.n_ranks,
        title=f"SBC ranks, {name}: {int(uni['n'].max())} replicates, {study.n_ranks} "
        "possible ranks (grey: 99 % range of a uniform histogram)",
    )  # fmt: skip
    fits = table.drop_duplicates("replicate")
    done = fits[fits["status"] == "done"]
    return {
        "template": name,
        "replicates": len(fits),
        "done": len(done),
        "failed": int((fits["status"] != "done").sum()),
        "seconds": seconds,
        "fits_with_divergences": int((done["divergences"].fillna(0) > 0).sum()),
        "divergences_total": int(done["divergences"].fillna(0).sum()),
        "median_max_rhat": float(done["max_rhat"].median()),
        "fits_rhat_over_1.01": int((done["max_rhat"] > 1.01).sum()),
        "median_min_ess": float(done["min_ess_bulk"].median()),
        "fits_min_ess_below_n_ranks": int((done["min_ess_bulk"] < study.n_ranks).sum()),
        "passed": bool(uni["passed"].all()),
        "quantities": [
            {
                "quantity": q,
                **{k: (v.item() if hasattr(v, "item") else v) for k, v in uni.loc[q].items()},
                **{
                    k: (v.item() if hasattr(v, "item") else v)
                    for k, v in cov.loc[q].items()
                    if k != "n"
                },
            }
            for q in uni.index
        ],  # fmt: skip
    }


def write(results: list[dict], args: argparse.Namespace) -> None:
    out = Path(args.out)
    path = out / "sbc.json"
    merged = {}
    if path.exists():
        merged = {r["template"]: r for r in json.loads(path.read_text())["templates"]}
    merged.update({r["template"]: r for r in results})
    settings = {k: getattr(args, k) for k in ("replicates", "subjects", "draws", "tune",
                                              "chains", "n_ranks", "prior_sd", "seed")}  # fmt: skip
    path.write_text(json.dumps({"settings": settings, "templates": list(merged.values())},
                               indent=1))  # fmt: skip
    s = settings
    lines = [
        "# Simulation-based calibration of the model templates",
        "",
        f"{time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores. Command: `.venv/bin/python "
        f"benchmarks/validate_sbc.py --templates {' '.join(merged)} --replicates "
        f"{s['replicates']} --subjects {s['subjects']} --draws {s['draws']} --tune {s['tune']} "
        f"--chains {s['chains']} --prior-sd {s['prior_sd']} --seed {s['seed']}`.",
        "",
        f"Each template: {s['replicates']} parameter sets and studies drawn from the priors "
        f"on the template's example design ({s['subjects']} subjects), each fitted with the "
        f"template as shipped ({s['chains']} chains x {s['draws']} draws, {s['tune']} "
        "warm-up, nutpie) through a batch plan. Rank of the truth among "
        f"{s['n_ranks'] - 1} draws thinned evenly from the chains; chi-square test of "
        "uniform ranks per quantity (10 bins for 100 replicates), passed when p > 0.05 / "
        "(number of quantities): family-wise 5 % per template. Coverage: fraction of "
        "replicates whose central 50 % / 90 % interval contains the truth, with the 99 % "
        "binomial range in brackets. Typical-value priors as shipped but with log-scale SD "
        f"{s['prior_sd']} where the file uses the default (see the script's docstring).",
        "",
        "| template | fits done | time s | fits with divergences | median max R-hat | fits "
        "R-hat > 1.01 | median min ESS | min p (Bonferroni threshold) | uniform? |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in merged.values():
        q = r["quantities"]
        pmin = min(x["p_value"] for x in q)
        lines.append(
            f"| {r['template']} | {r['done']}/{r['replicates']} | {r['seconds']:.0f} | "
            f"{r['fits_with_divergences']} ({r['divergences_total']} transitions) | "
            f"{r['median_max_rhat']:.3f} | {r['fits_rhat_over_1.01']} | "
            f"{r['median_min_ess']:.0f} | {pmin:.3f} ({q[0]['threshold']:.4f}) | "
            f"{'**yes**' if r['passed'] else '**no**'} |"
        )
    for r in merged.values():
        lines += ["", f"## {r['template']}", "", f"![ranks](sbc_{r['template']}.png)", "",
                  "| quantity | chi2 (df) | p | uniform | coverage 50 % | coverage 90 % |",
                  "|---|---|---|---|---|---|"]  # fmt: skip
        for x in r["quantities"]:
            lines.append(
                f"| {x['quantity']} | {x['chi2']:.1f} ({x['df']}) | {x['p_value']:.3f} | "
                f"{'yes' if x['passed'] else '**no**'} | {x['coverage_50']:.2f} "
                f"[{x['limits_50']}] | {x['coverage_90']:.2f} [{x['limits_90']}] |"
            )
    (out / "sbc.md").write_text("\n".join(lines) + "\n")


def main() -> int:
    from nlme_bayes import sbc

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--templates", nargs="+", default=list(MAIN))
    ap.add_argument("--replicates", type=int, default=100)
    ap.add_argument("--subjects", type=int, default=12)
    ap.add_argument("--draws", type=int, default=500)
    ap.add_argument("--tune", type=int, default=500)
    ap.add_argument("--chains", type=int, default=4)
    ap.add_argument("--n-ranks", type=int, default=100)
    ap.add_argument("--prior-sd", type=float, default=0.5)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--work", default=str(HERE.parent / "build" / "sbc"))
    ap.add_argument("--out", default=str(HERE / "results"))
    args = ap.parse_args()
    Path(args.out).mkdir(parents=True, exist_ok=True)
    results = []
    for name in args.templates:
        t0 = time.perf_counter()
        study = study_for(name, args)
        summary = sbc.run(study, progress=True)
        seconds = time.perf_counter() - t0
        print(f"{name}: {summary}", flush=True)
        res = analyse(name, study, args, seconds)
        results.append(res)
        write(results, args)
        print(f"{name}: uniform {res['passed']}, done {res['done']}/{res['replicates']}, "
              f"{seconds:.0f} s", flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
