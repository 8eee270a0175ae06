"""Batch throughput: fits per hour for 20 small fits on 2 cores, with and without reusing
compiled log densities (``[plan] reuse_compiled``).

The 20 fits are a simulation-estimation study: the Theophylline one-compartment oral model
(``nlme_bayes.examples.theophylline_model``) fitted to 20 data sets simulated from it on the
Theophylline design (12 subjects, 132 observations), 2 chains x 300 draws + 300 warm-up,
nutpie. Each variant runs the same plan through ``nlme_bayes.batch.run_plan`` on a fresh
``LocalCluster`` of 2 single-threaded worker processes (one per core), so the figures include
starting the workers and importing the package -- what a user waits for. The reuse variant
compiles once per worker; the other compiles every fit.

Both variants must estimate the same posteriors: for each data set the difference of the
posterior means of the population parameters is compared with its Monte Carlo standard error.

Run: ``.venv/bin/python benchmarks/bench_batch.py`` (about 10 minutes on 2 idle cores);
writes ``benchmarks/results/batch.json`` and ``batch.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def simulate_datasets(n: int, seed: int, folder: Path) -> list[Path]:
    """n data sets on the Theophylline design, DV from the model with IIV and additive error."""
    import nlme_bayes as nb

    rng = np.random.default_rng(seed)
    rec = nb.datasets.theophylline().records.drop(columns=["ROW"])
    omega = np.array([0.3, 0.15, 0.6])  # SD of eta on CL, V, ka
    paths = []
    for i in range(n):
        frame = rec.copy()
        for rows in frame.groupby("ID").groups.values():
            sub = frame.loc[rows]
            dose = sub.loc[sub["EVID"] == 1, "AMT"].iloc[0]
            cl, v, ka = np.array([0.04, 0.5, 1.5]) * np.exp(omega * rng.standard_normal(3))
            k = cl / v
            obs = sub.index[sub["EVID"] == 0]
            t = frame.loc[obs, "TIME"].to_numpy(float)
            conc = dose * ka / (v * (ka - k)) * (np.exp(-k * t) - np.exp(-ka * t))
            frame.loc[obs, "DV"] = conc + 0.7 * rng.standard_normal(len(t))
        path = folder / f"sim_{i + 1:02d}.csv"
        frame.to_csv(path, index=False)
        paths.append(path)
    return paths


def run_variant(folder: Path, reuse: bool, draws: int, workers: int) -> dict:
    from nlme_bayes.batch import Manifest, parse_plan, run_plan

    raw = {
        "plan": {
            "name": f"bench-{'reuse' if reuse else 'noreuse'}",
            "reuse_compiled": reuse,
            "output": f"out_{'reuse' if reuse else 'noreuse'}",
        },
        "cluster": {"kind": "local", "n_workers": workers, "threads_per_worker": 1},
        "sampler": {"sampler": "nutpie", "draws": draws, "tune": draws, "chains": 2, "cores": 1},
        "models": {"theo": {"example": "theophylline"}},
        "datasets": {"sim": {"glob": "sim_*.csv"}},
        "fits": [{"models": ["theo"], "datasets": ["sim"], "seeds": [1]}],
    }
    plan = parse_plan(raw, root=folder)
    t0 = time.perf_counter()
    summary = run_plan(plan)
    wall = time.perf_counter() - t0
    records = [r for r in Manifest(plan.manifest_path).records() if r["status"] == "done"]
    assert summary.ok and len(records) == len(plan.tasks), summary
    t = [r["timings"] for r in records]
    return {
        "reuse_compiled": reuse,
        "fits": len(records),
        "wall_s": wall,
        "fits_per_hour": len(records) / wall * 3600,
        "mean_fit_wall_s": float(np.mean([r["wall_s"] for r in records])),
        "mean_build_s": float(np.mean([x["build_s"] for x in t])),
        "mean_compile_s": float(np.mean([x["compile_s"] for x in t])),
        "mean_sampling_s": float(np.mean([x["sampling_s"] for x in t])),
        "mean_postprocess_s": float(np.mean([x["postprocess_s"] for x in t])),
        "compile_cache": {
            s: sum(r["compile_cache"] == s for r in records) for s in ("hit", "miss", "off")
        },
        "estimates": {r["dataset"]: r["estimates"] for r in records},
    }


def agreement(a: dict, b: dict) -> dict:
    """Largest |mean_a - mean_b| / sqrt(mcse_a^2 + mcse_b^2) over data sets and parameters."""
    worst, where = 0.0, None
    for ds, est_a in a["estimates"].items():
        est_b = b["estimates"][ds]
        for name, ea in est_a.items():
            eb = est_b[name]
            # MCSE of the mean ~ sd / sqrt(ESS)
            se = np.hypot(ea["sd"] / np.sqrt(ea["ess_bulk"]), eb["sd"] / np.sqrt(eb["ess_bulk"]))
            z = abs(ea["mean"] - eb["mean"]) / se
            if z > worst:
                worst, where = z, f"{ds}: {name}"
    return {"max_z": float(worst), "where": where}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fits", type=int, default=20)
    parser.add_argument("--draws", type=int, default=300)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", default=str(HERE / "results"))
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        simulate_datasets(args.fits, seed=20261124, folder=folder)
        runs = [run_variant(folder, reuse, args.draws, args.workers) for reuse in (False, True)]
    load_after = os.getloadavg()
    agree = agreement(runs[0], runs[1])
    result = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()} {os.cpu_count()} cores",
        "load_average_before_after": [round(load_before[0], 2), round(load_after[0], 2)],
        "fits": args.fits,
        "draws": args.draws,
        "workers": args.workers,
        "runs": [{k: v for k, v in r.items() if k != "estimates"} for r in runs],
        "speedup": runs[1]["fits_per_hour"] / runs[0]["fits_per_hour"],
        "agreement": agree,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "batch.json").write_text(json.dumps(result, indent=2) + "\n")
    print(write_markdown(result, out / "batch.md"))


def write_markdown(result: dict, path: Path) -> str:
    """The table of ``batch.md`` from the figures of ``batch.json``."""
    lines = [
        f"{result['fits']} simulation-estimation fits (Theophylline design, 1-cmt oral, 2 chains "
        f"x {result['draws']} draws + {result['draws']} warm-up, nutpie) on a LocalCluster of "
        f"{result['workers']} single-threaded workers; {result['machine']}, {result['date']}; "
        f"load average before/after {result['load_average_before_after']}",
        "",
        "| reuse_compiled | wall s | fits per hour | per fit: build s | compile s | sampling s "
        "| post-process s | compile cache (hit/miss/off) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in result["runs"]:
        c = r["compile_cache"]
        lines.append(
            f"| {str(r['reuse_compiled']).lower()} | {r['wall_s']:.0f} | {r['fits_per_hour']:.0f} "
            f"| {r['mean_build_s']:.1f} | {r['mean_compile_s']:.1f} | {r['mean_sampling_s']:.1f} "
            f"| {r['mean_postprocess_s']:.1f} | {c['hit']}/{c['miss']}/{c['off']} |"
        )
    agree = result["agreement"]
    lines += [
        "",
        f"Speed-up from reuse: {result['speedup']:.2f}x. Same posteriors: the largest "
        f"difference of a posterior mean between the two variants is {agree['max_z']:.2f} "
        f"combined MCSE ({agree['where']}) over all data sets and population parameters.",
    ]
    cores = int(result["machine"].split()[1])
    if max(result["load_average_before_after"]) > cores:
        lines += [
            "",
            "The machine was shared with other jobs during this run (load average above its "
            f"{cores} cores), so the absolute times are inflated several-fold; the two rows ran "
            "back to back under similar load and compare with each other.",
        ]
    text = "\n".join(lines) + "\n"
    path.write_text(text)
    return text


if __name__ == "__main__":
    main()
