"""Full-size validation of every model template: simulate -> fit -> recover.

The test suite runs the same check at small size (``tests/test_recovery_templates.py``: 8
subjects, 2 chains x 300 draws, typical values and sigma only). Here each template's example
design is simulated at its full size (the ``[example]`` section: 40 subjects for PK and
dose-response, 20 for growth curves), fitted with 4 chains x 1000 draws from priors centred
1.5 times away from the truth, and *every* population quantity is checked: typical values
(log scale, natural for ``iiv="normal"``), the random-effect SDs and the residual SDs.

For each quantity: posterior mean, SD, MCSE, truth, z = (mean - truth)/sqrt(sd^2 + mcse^2),
and whether |z| <= 3; per template: divergences, max R-hat, min bulk ESS, seconds.

Usage::

    .venv/bin/python benchmarks/validate_templates.py [--templates one_cmt_oral logistic ...]
        [--draws 1000] [--seed 1] [--out benchmarks/results] [--centered auto]

Writes ``templates.json`` and ``templates.md`` into ``--out`` (``templates_auto.*`` with
``--centered auto``: every random effect's parameterisation chosen from the design, see
``nlme_bayes.centering``). A measurement, not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))

warnings.filterwarnings("ignore")


def _rows(name, fit, model, truth, omega, sigma):
    import arviz as az

    post = fit.posterior
    quantities = {}
    for p in model.parameters:
        draws = post[f"{p.name}_pop"]
        log = p.iiv != "normal"
        quantities[f"{'log ' if log else ''}{p.name}_pop"] = (
            np.log(draws) if log else draws,
            np.log(truth[p.name]) if log else truth[p.name],
        )
    for n, v in omega.items():
        quantities[f"omega({n})"] = (post["omega"].sel(param=n), v)
    for n, v in sigma.items():
        quantities[n] = (post[n], v)
    rows = []
    for q, (draws, target) in quantities.items():
        x = draws.reset_coords(drop=True)
        mcse = float(az.mcse(x.to_dataset(name="q"), method="mean")["q"])
        mean, sd = float(x.mean()), float(x.std())
        z = (mean - target) / np.hypot(sd, mcse)
        rows.append(
            {
                "template": name,
                "quantity": q,
                "truth": float(target),
                "mean": mean,
                "sd": sd,
                "mcse": mcse,
                "z": float(z),
                "covered": bool(abs(z) <= 3),
            }
        )
    return rows


def _away(model, truth):
    """Typical values (prior centres, starting points) 1.5 times away from the truth; for a
    logit-normal parameter, log(1.5) away on the logit scale (it must stay in (0, 1))."""
    out = {}
    for p in model.parameters:
        v = truth[p.name]
        if p.iiv == "logit":
            out[p.name] = float(1 / (1 + np.exp(-(np.log(v / (1 - v)) + np.log(1.5)))))
        else:
            out[p.name] = 1.5 * v
    return out


def validate(name, draws, seed, centered=None, start_jitter=1.0):
    from nlme_bayes import templates

    t = templates.get(name)
    ex = t.spec["example"]
    truth = t.typical_values
    data = t.example_data(random_seed=seed)
    options = {} if centered is None else {"centered": centered}
    model = t.model(typical=_away(t.model(), truth), **options)
    start = time.perf_counter()
    fit = model.fit(data, draws=draws, tune=draws, chains=4, random_seed=seed,
                    progressbar=False, check=False, sampler="nutpie",
                    start_jitter=start_jitter)  # fmt: skip
    seconds = time.perf_counter() - start
    figures = fit.check_convergence().figures
    summary = {
        "template": name, "subjects": data.n_subjects, "observations": data.n_observations,
        "seconds": seconds, "divergences": int(figures["divergences"]),
        "max_rhat": float(figures["max_rhat"]), "min_ess_bulk": float(figures["min_ess_bulk"]),
        "centered": {n: fit.model.parameter(n).centered for n in fit.model.iiv_names},
        "start_jitter": start_jitter,
    }  # fmt: skip
    return summary, _rows(name, fit, model, truth, dict(ex.get("omega", {})), dict(ex["sigma"]))


def _merge_earlier(args, summaries, rows):
    """This run's templates replace their earlier results; the others' are kept (same draws
    and seed only), so templates can be validated a few at a time."""
    path = os.path.join(args.out, f"{_stem(args)}.json")
    if not os.path.exists(path):
        return summaries, rows
    with open(path) as f:
        old = json.load(f)
    if old.get("draws") != args.draws or old.get("seed") != args.seed:
        return summaries, rows
    done = {s["template"] for s in summaries}
    keep = [s for s in old["summaries"] if s["template"] not in done]
    return keep + summaries, [r for r in old["rows"] if r["template"] not in done] + rows


def _stem(args):
    stem = "templates" if not args.centered else f"templates_{args.centered}"
    return stem if args.start_jitter == 1.0 else f"{stem}_jitter{args.start_jitter:g}"


def _etas(summary):
    c = summary.get("centered")
    if c is None:  # runs before the column existed: the files' setting, all non-centred
        return "all N"
    return " ".join(f"{n}:{'C' if v is True else 'N'}" for n, v in c.items()) or "-"


def _write(args, summaries, rows):
    """templates.json and templates.md, merged with earlier runs."""
    from nlme_bayes import templates

    os.makedirs(args.out, exist_ok=True)
    summaries, rows = _merge_earlier(args, summaries, rows)
    with open(os.path.join(args.out, f"{_stem(args)}.json"), "w") as f:
        json.dump({"draws": args.draws, "seed": args.seed, "summaries": summaries,
                   "rows": rows}, f, indent=1)  # fmt: skip
    lines = [
        f"# Template validation: simulate -> fit -> recover ({args.draws} draws x 4 chains, "
        f"seed {args.seed}"
        + (f", every random effect centered={args.centered!r}" if args.centered else "")
        + (f", start_jitter={args.start_jitter:g}" if args.start_jitter != 1.0 else "")
        + ")",
        "",
        "Parameterisation of the random effects in the fit: C centred, N non-centred "
        "(column `etas`).",
        "",
        f"Updated {time.strftime('%Y-%m-%d')} on {os.cpu_count()} cores; earlier runs of the "
        "other templates (same draws and seed) are kept. Not run yet: "
        + (
            ", ".join(
                n for n in templates.available() if n not in {x["template"] for x in summaries}
            )
            or "none"
        )
        + ".",  # fmt: skip
        "",
        "| template | subjects | obs | etas | s | divergences | max R-hat | min bulk ESS "
        "| covered | max abs z |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in summaries:
        r = [x for x in rows if x["template"] == s["template"]]
        lines.append(
            f"| {s['template']} | {s['subjects']} | {s['observations']} | {_etas(s)} | "
            f"{s['seconds']:.0f} | "
            f"{s['divergences']} | {s['max_rhat']:.3f} | {s['min_ess_bulk']:.0f} | "
            f"{sum(x['covered'] for x in r)}/{len(r)} | {max(abs(x['z']) for x in r):.2f} |"
        )
    lines += ["", "| template | quantity | truth | mean | sd | mcse | z |",
              "|---|---|---|---|---|---|---|"]  # fmt: skip
    lines += [
        f"| {x['template']} | {x['quantity']} | {x['truth']:.4g} | {x['mean']:.4g} | "
        f"{x['sd']:.3g} | {x['mcse']:.2g} | {x['z']:+.2f} |"
        for x in rows
    ]
    with open(os.path.join(args.out, f"{_stem(args)}.md"), "w") as f:
        f.write("\n".join(lines) + "\n")


def main() -> None:
    from nlme_bayes import templates

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--templates", nargs="*", default=list(templates.available()))
    ap.add_argument("--draws", type=int, default=1000)
    ap.add_argument("--skip-ode", action="store_true", help="only closed-form and algebraic")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", default=os.path.join(HERE, "results"))
    ap.add_argument(
        "--start-jitter",
        type=float,
        default=1.0,
        help="Model.fit(start_jitter=): half-width of the population-level start jitter",
    )
    ap.add_argument(
        "--centered",
        choices=("auto",),
        default=None,
        help="fit every random effect with centered='auto' (results in templates_auto.*) "
        "instead of the files' setting",
    )
    args = ap.parse_args()
    summaries, rows = [], []
    names = [
        n
        for n in args.templates
        if not (args.skip_ode and templates.get(n).spec["structure"]["type"] == "ODE")
    ]
    for name in names:
        summary, r = validate(name, args.draws, args.seed, args.centered, args.start_jitter)
        summaries.append(summary)
        rows += r
        bad = [x["quantity"] for x in r if not x["covered"]]
        print(f"{name:22s} {summary['seconds']:6.0f} s  div {summary['divergences']:3d}  "
              f"R-hat {summary['max_rhat']:.3f}  covered {len(r) - len(bad)}/{len(r)}"
              + (f"  NOT: {', '.join(bad)}" if bad else ""), flush=True)  # fmt: skip
        _write(args, summaries, rows)  # after each template: a stopped run keeps what it did
    print(f"wrote {args.out}/{_stem(args)}.json and .md")


if __name__ == "__main__":
    main()
