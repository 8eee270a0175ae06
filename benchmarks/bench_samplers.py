"""Which NUTS backend reaches a converged Theophylline posterior fastest, here?

For each sampler (PyMC's NUTS on the C backend, nutpie on Numba, numpyro on JAX), in a fresh
Python process: fit the Theophylline reference model (4 chains x 1000 draws, 1000 warm-up,
same seed) and report compile time, sampling time, total time, min bulk ESS over the
population parameters, min bulk ESS per second of sampling and of total time, divergences,
and the log-density+gradient evaluations per second of the compiled model.

Usage::

    .venv/bin/python benchmarks/bench_samplers.py [--samplers pymc nutpie numpyro]
        [--draws 1000] [--out benchmarks/results]

Writes ``samplers.json`` and ``samplers.md`` into ``--out`` and prints the table.
No thresholds: this is a measurement, not a test.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import subprocess
import sys
import time

CHILD = r"""
import json, sys, time, warnings
warnings.filterwarnings("ignore")
import numpy as np
t_import = time.perf_counter()
import nlme_bayes as nb
from nlme_bayes.builder import build
from nlme_bayes.examples import theophylline_model
sampler, draws = sys.argv[1], int(sys.argv[2])
data = nb.datasets.theophylline()
model = theophylline_model()
t0 = time.perf_counter()
fit = model.fit(data, draws=draws, tune=draws, chains=4, random_seed=20240601,
                sampler=sampler, progressbar=False, check=False)
total = time.perf_counter() - t0
table = fit.summary()
info = fit.info["timings"]
min_ess = float(table["ess_bulk"].min())
stats = fit.results["sample_stats"].dataset
# gradient evaluations per second of the compiled log density (C backend for pymc,
# numba for nutpie) at the posterior mean of the first chain
m = build(model, data).pm_model
mode = {"pymc": None, "nutpie": "NUMBA", "numpyro": "JAX"}[sampler]
f = m.logp_dlogp_function(ravel_inputs=True, mode=mode)
f.set_extra_values({})
x = np.concatenate([np.ravel(v) for v in m.initial_point().values()])
f(x)
n, t1 = 0, time.perf_counter()
while time.perf_counter() - t1 < 2.0:
    f(x); n += 1
grad_per_s = n / (time.perf_counter() - t1)
print("RESULT " + json.dumps({
    "sampler": sampler, "compile_s": info["compile_s"] + info["build_s"],
    "sampling_s": info["sampling_s"], "total_s": total, "min_ess_bulk": min_ess,
    "min_ess_per_s_sampling": min_ess / info["sampling_s"], "min_ess_per_s_total": min_ess / total,
    "divergences": int(stats["diverging"].sum()),
    "n_grad_evals": float(stats["n_steps"].sum()) if "n_steps" in stats else None,
    "logp_grad_evals_per_s": grad_per_s,
    "max_rhat": float(table["rhat"].max()),
}))
"""


def run(sampler: str, draws: int) -> dict:
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    out = subprocess.run(
        [sys.executable, "-c", CHILD, sampler, str(draws)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    for line in out.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    return {"sampler": sampler, "error": (out.stderr or out.stdout)[-2000:]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--samplers", nargs="+", default=["pymc", "nutpie", "numpyro"])
    ap.add_argument("--draws", type=int, default=1000)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results"))
    args = ap.parse_args()
    rows = []
    for s in args.samplers:
        if s == "numpyro" and importlib.util.find_spec("jax") is None:
            rows.append({"sampler": s, "error": "jax/numpyro not installed (pip install numpyro)"})
            continue
        print(f"running {s} ...", flush=True)
        rows.append(run(s, args.draws))
    os.makedirs(args.out, exist_ok=True)
    meta = {
        "machine": f"{platform.machine()} {os.cpu_count()} cores",
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d"),
        "draws": args.draws,
        "chains": 4,
        "dataset": "Theophylline (12 subjects, 132 obs)",
    }
    with open(os.path.join(args.out, "samplers.json"), "w") as fh:
        json.dump({"meta": meta, "rows": rows}, fh, indent=2)
    head = (
        "| sampler | compile s | sampling s | total s | min bulk ESS | min ESS/s (sampling) "
        "| min ESS/s (total) | logp+grad evals/s | divergences | max R-hat |"
    )
    lines = [
        f"Theophylline, 4 chains x {args.draws} draws (+{args.draws} warm-up), "
        f"{meta['machine']}, {meta['date']}",
        "",
        head,
        "|" + "---|" * 10,
    ]
    for r in rows:
        if "error" in r:
            lines.append(
                f"| {r['sampler']} | failed: {r['error'].splitlines()[-1][:80]} |" + " |" * 8
            )
            continue
        lines.append(
            f"| {r['sampler']} | {r['compile_s']:.1f} | {r['sampling_s']:.1f} | {r['total_s']:.1f}"
            f" | {r['min_ess_bulk']:.0f} | {r['min_ess_per_s_sampling']:.0f}"
            f" | {r['min_ess_per_s_total']:.1f} | {r['logp_grad_evals_per_s']:.0f}"
            f" | {r['divergences']} | {r['max_rhat']:.3f} |"
        )
    text = "\n".join(lines)
    with open(os.path.join(args.out, "samplers.md"), "w") as fh:
        fh.write(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
