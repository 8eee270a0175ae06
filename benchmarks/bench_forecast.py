"""Forecasting a new patient vs refitting the population with them; dose calibration.

Part A -- agreement and cost (pheno, 59 neonates, full size: 4 chains x 1000 draws, 1000
warm-up, nutpie). For each held-out subject X: fit the other 58 subjects, forecast X from
that fit (``forecast``, fully Bayesian; and ``method="map"``), and compare X's posterior of
log CL and log V with the one from fits of all 59 subjects (refits that include X; three
seeds, because a single refit's MCSE understates its run-to-run spread for individual
parameters). Reported: posterior means and SDs, z = difference / combined MC error (mean
and SD), the refits' spread, the forecast's wall time against a refit's (build + compile +
sampling), Pareto k.

Part B -- calibration of the dose recommendation at full size: ``--patients`` simulated
patients drawn as the forecast assumes (population parameters from the posterior of the
59-subject fit, covariates of a fitted subject, eta ~ N(0, Omega), loading dose plus three
maintenance doses, two levels with proportional error). Each is forecast; the regimen
maximising P(18 <= trough <= 22 mg/L) after six new q12h doses is chosen among 1..8 mg; the
true trough decides a hit. Reported: hit rate vs mean stated probability overall and by
bins of the stated probability, for the full forecast, MAP (with Laplace draws at the
posterior medians) and the population alone (no levels).

Usage::

    .venv/bin/python benchmarks/bench_forecast.py [--subjects 5 17 26 40 54]
        [--patients 500] [--draws 1000] [--out benchmarks/results]

Writes ``forecast.json`` and ``forecast.md``. No thresholds: a measurement.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import warnings

import numpy as np
import pandas as pd

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
warnings.filterwarnings("ignore")


def _fit(data, draws, seed):
    from nlme_bayes.examples import pheno_model

    t0 = time.perf_counter()
    fit = pheno_model().fit(
        data, draws=draws, tune=draws, chains=4, random_seed=seed, progressbar=False,
        check=False, sampler="nutpie",
    )  # fmt: skip
    return fit, time.perf_counter() - t0


def part_a(subjects, draws, refit_seeds):
    import arviz as az
    from pheno_fits import split

    import nlme_bayes as nb
    from nlme_bayes.forecast import forecast

    fulls = []
    for seed in refit_seeds:
        fulls.append(_fit(nb.datasets.phenobarbital(), draws, seed))
    t_full = float(np.mean([t for _, t in fulls]))
    rows = []
    for pid in subjects:
        rest, held = split(pid)
        fit, t_fit = _fit(rest, draws, 3)
        forecast(fit, held, n_draws=200)  # warm the compiled helpers (as a clinic would)
        t0 = time.perf_counter()
        fc = forecast(fit, held, random_seed=1)
        t_fc = time.perf_counter() - t0
        t0 = time.perf_counter()
        fm = forecast(fit, held, method="map", n_draws=2000, random_seed=1)
        t_map = time.perf_counter() - t0
        for p in ("CL", "V"):
            q = np.log(fc.individual[p][0])
            w = fc.weights[0]
            m_f = float(np.sum(w * q))
            sd_f = float(np.sqrt(np.sum(w * (q - m_f) ** 2)))
            ess = fc.ess[0] * fc._ess_of(q)
            means, sds, mcses, mcses_sd = [], [], [], []
            for full, _ in fulls:
                da = np.log(full.posterior[p].sel(subject=pid)).reset_coords(drop=True)
                ds = da.to_dataset(name="x")
                means.append(float(da.mean()))
                sds.append(float(da.std()))
                mcses.append(float(az.mcse(ds)["x"]))
                mcses_sd.append(float(az.mcse(ds, method="sd")["x"]))
            n_r = len(fulls)
            # the refits' Monte Carlo error, from their stated MCSE or their observed spread
            se_r = max(float(np.mean(mcses)), float(np.std(means, ddof=1))) / np.sqrt(n_r)
            se_sd_r = max(float(np.mean(mcses_sd)), float(np.std(sds, ddof=1))) / np.sqrt(n_r)
            qm = np.log(fm.individual[p][0])
            rows.append(
                {
                    "ID": pid,
                    "n_levels": int(fc.diagnostics()["n_levels"].iloc[0]),
                    "parameter": f"log {p}",
                    "forecast_mean": m_f,
                    "refit_mean": float(np.mean(means)),
                    "refit_means": means,
                    "refit_spread": float(np.ptp(means)),
                    "z_mean": (m_f - np.mean(means)) / np.hypot(sd_f / np.sqrt(ess), se_r),
                    "forecast_sd": sd_f,
                    "refit_sd": float(np.mean(sds)),
                    "z_sd": (sd_f - np.mean(sds)) / np.hypot(sd_f / np.sqrt(2 * ess), se_sd_r),
                    "forecast_mcse": sd_f / np.sqrt(ess),
                    "refit_mcse": float(np.mean(mcses)),
                    "map_mean": float(qm.mean()),
                    "map_sd": float(qm.std()),
                    "pareto_k": float(fc.pareto_k[0]),
                    "forecast_s": t_fc,
                    "map_s": t_map,
                    "refit_s": t_full,
                    "fit_without_s": t_fit,
                }
            )
        print(pd.DataFrame(rows[-2:]).round(4).to_string(), flush=True)
    return pd.DataFrame(rows), fulls[0][0]


def part_b(fit, n_patients, draws):
    from pheno_fits import bolus_concentration, simulate_patients

    from nlme_bayes.dosing import Target, recommend_dose
    from nlme_bayes.forecast import forecast

    rng = np.random.default_rng(2024)
    rec_levels, rec_none, hist, cl, v = simulate_patients(fit, n_patients, rng)
    target = Target("trough", lower=18.0, upper=22.0)
    out = {}
    for label, kwargs, records in (
        ("full forecast", {}, rec_levels),
        ("MAP + Laplace", {"method": "map"}, rec_levels),
        ("population (no levels)", {}, rec_none),
    ):
        t0 = time.perf_counter()
        fc = forecast(fit, records, n_draws=draws, random_seed=3, **kwargs)
        rec = recommend_dose(fc, target, amounts=np.arange(1.0, 8.5), intervals=12.0, n_doses=6)
        elapsed = time.perf_counter() - t0
        stated = rec.best["probability"].to_numpy()
        hits = np.empty(n_patients, bool)
        for i, pid in enumerate(rec.best.index):
            row = rec.best.loc[pid]
            doses = hist[i] + [(row["start"] + 12.0 * j, row["amount"]) for j in range(6)]
            trough = bolus_concentration([row["start"] + 72.0], doses, cl[i], v[i],
                                         before_dose=True)[0]  # fmt: skip
            hits[i] = 18.0 <= trough <= 22.0
        se = float(np.sqrt(np.sum(stated * (1 - stated)))) / n_patients
        bins = pd.cut(stated, [0, 0.4, 0.5, 0.6, 0.7, 0.8, 1.0], include_lowest=True)
        by = (
            pd.DataFrame({"bin": bins.astype(str), "stated": stated, "hit": hits})
            .groupby("bin", sort=True)
            .agg(n=("hit", "size"), stated=("stated", "mean"), hit_rate=("hit", "mean"))
        )
        out[label] = {
            "hit_rate": float(hits.mean()),
            "mean_stated": float(stated.mean()),
            "binomial_se": se,
            "seconds": elapsed,
            "by_bin": by.reset_index().to_dict(orient="records"),
        }
        print(f"{label}: hit rate {hits.mean():.3f} vs stated {stated.mean():.3f} (SE {se:.3f}),"
              f" {elapsed:.1f} s for {n_patients} patients", flush=True)  # fmt: skip
        print(by.round(3).to_string(), flush=True)
    return out


def part_long(pid, draws):
    """One subject with long chains: is a difference at 4 x 1000 draws Monte Carlo error?"""
    import arviz as az
    from pheno_fits import split

    import nlme_bayes as nb
    from nlme_bayes.forecast import forecast

    rest, held = split(pid)
    fit, _ = _fit(rest, draws, 13)
    full, _ = _fit(nb.datasets.phenobarbital(), draws, 14)
    fc = forecast(fit, held, random_seed=1)
    w = fc.weights[0]
    out = {"ID": pid, "draws": draws}
    om = fit.posterior["omega"].sel(param="CL").stack(s=("chain", "draw")).values[fc.index]
    out["omega_CL_weighted"] = float(np.sum(w * om))
    out["omega_CL_refit"] = float(full.posterior["omega"].sel(param="CL").mean())
    for p in ("CL", "V"):
        q = np.log(fc.individual[p][0])
        m = float(np.sum(w * q))
        sd = float(np.sqrt(np.sum(w * (q - m) ** 2)))
        ess = fc.ess[0] * fc._ess_of(q)
        da = np.log(full.posterior[p].sel(subject=pid)).reset_coords(drop=True)
        ds = da.to_dataset(name="x")
        out[p] = {
            "forecast_mean": m,
            "forecast_sd": sd,
            "forecast_mcse": sd / np.sqrt(ess),
            "refit_mean": float(da.mean()),
            "refit_sd": float(da.std()),
            "refit_mcse": float(az.mcse(ds)["x"]),
            "refit_mcse_sd": float(az.mcse(ds, method="sd")["x"]),
        }
    print(json.dumps(out, indent=1), flush=True)
    return out


def _markdown(res: dict) -> str:
    meta = res["meta"]
    lines = [f"Pheno (59 neonates), nutpie, {meta['machine']}, {meta['date']}", ""]
    if "agreement" in res:
        a = pd.DataFrame(res["agreement"])
        seeds = res["meta"].get("refit_seeds", [])
        lines += [
            f"Forecast of a held-out subject (fit of the other 58, 4 chains x "
            f"{meta['draws']} draws + {meta['draws']} warm-up) vs {len(seeds)} refits of all 59 "
            "(seeds " + ", ".join(map(str, seeds)) + "; log scale). z: difference over the "
            "combined Monte Carlo SE (the refits' from the larger of their MCSE and their "
            "spread); spread: max - min of the refits' means.",
            "",
            "| ID | levels | parameter | forecast mean (sd) | refit mean (sd) | refit spread "
            "| z mean | z sd | MAP mean (sd) | Pareto k | forecast s | MAP s | refit s |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in a.to_dict(orient="records"):
            lines.append(
                f"| {r['ID']} | {r['n_levels']} | {r['parameter']} | {r['forecast_mean']:.4f} "
                f"({r['forecast_sd']:.4f}) | {r['refit_mean']:.4f} ({r['refit_sd']:.4f}) | "
                f"{r['refit_spread']:.4f} | {r['z_mean']:+.2f} | {r['z_sd']:+.2f} | "
                f"{r['map_mean']:.4f} ({r['map_sd']:.4f}) | "
                f"{r['pareto_k']:.2f} | {r['forecast_s']:.2f} | {r['map_s']:.2f} | "
                f"{r['refit_s']:.1f} |"
            )
        ratio = a["refit_s"].mean() / a["forecast_s"].mean()
        lines += [
            "",
            f"Refit / forecast wall time: {ratio:.0f}x (forecast {a['forecast_s'].mean():.2f} s, "
            f"MAP {a['map_s'].mean():.2f} s, refit {a['refit_s'].mean():.1f} s incl. "
            "compilation).",
            "",
        ]
    if "long" in res:
        r = res["long"]
        lines += [
            f"Subject {r['ID']} with 4 chains x {r['draws']} draws for both fits (Monte Carlo "
            "error 2x smaller):",
            "",
            "| parameter | forecast mean (sd) +- mcse | refit mean (sd) +- mcse (mcse of sd) |",
            "|---|---|---|",
        ]
        for p in ("CL", "V"):
            x = r[p]
            lines.append(
                f"| log {p} | {x['forecast_mean']:.4f} ({x['forecast_sd']:.4f}) +- "
                f"{x['forecast_mcse']:.4f} | {x['refit_mean']:.4f} ({x['refit_sd']:.4f}) +- "
                f"{x['refit_mcse']:.4f} ({x['refit_mcse_sd']:.4f}) |"
            )
        lines += [
            "",
            f"omega(CL): weighted draws of the 58-subject fit {r['omega_CL_weighted']:.4f}, "
            f"refit {r['omega_CL_refit']:.4f}.",
            "",
        ]
    if "calibration" in res:
        b = res["calibration"]
        n = meta.get("patients")
        lines += [
            f"Dose calibration, {n} simulated patients, target 18-22 mg/L trough:",
            "",
            "| method | hit rate | mean stated P | binomial SE | seconds |",
            "|---|---|---|---|---|",
        ]
        for label, r in b.items():
            lines.append(
                f"| {label} | {r['hit_rate']:.3f} | {r['mean_stated']:.3f} | "
                f"{r['binomial_se']:.3f} | {r['seconds']:.1f} |"
            )
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parts", nargs="+", default=["a", "long", "b"], choices=["a", "long", "b"])
    ap.add_argument("--subjects", type=int, nargs="+", default=[5, 17, 26, 40, 54])
    ap.add_argument("--patients", type=int, default=500)
    ap.add_argument("--draws", type=int, default=1000)
    ap.add_argument("--refit-seeds", type=int, nargs="+", default=[4, 5, 6])
    ap.add_argument("--long-subject", type=int, default=17)
    ap.add_argument("--long-draws", type=int, default=4000)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results"))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "forecast.json")
    res = json.load(open(path)) if os.path.exists(path) else {}
    res["meta"] = {
        **res.get("meta", {}),
        "machine": f"{platform.machine()} {os.cpu_count()} cores",
        "date": time.strftime("%Y-%m-%d"),
        "draws": args.draws,
        "chains": 4,
    }
    full = None
    if "a" in args.parts:
        a, full = part_a(args.subjects, args.draws, args.refit_seeds)
        res["agreement"] = a.to_dict(orient="records")
        res["meta"]["refit_seeds"] = args.refit_seeds
    if "long" in args.parts:
        res["long"] = part_long(args.long_subject, args.long_draws)
    if "b" in args.parts:
        if full is None:
            import nlme_bayes as nb

            full, _ = _fit(nb.datasets.phenobarbital(), args.draws, args.refit_seeds[0])
        res["calibration"] = part_b(full, args.patients, args.draws)
        res["meta"]["patients"] = args.patients
    with open(path, "w") as fh:
        json.dump(res, fh, indent=2, default=float)
    text = _markdown(res)
    with open(os.path.join(args.out, "forecast.md"), "w") as fh:
        fh.write(text)
    print("\n" + text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
