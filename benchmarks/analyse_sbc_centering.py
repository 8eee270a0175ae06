"""Which parameterisation would ``centered="auto"`` choose for each study of an SBC run, and
how did those studies' fits go? (The evidence for the data-driven rule of
``nlme_bayes.centering``; docs/user_guide/parameters.md.)

Reads an SBC work directory written by ``benchmarks/validate_sbc.py`` (its model, simulated
studies and fit manifest), runs :func:`nlme_bayes.centering.empirical_bayes_pilot` on every
study, and cross-tabulates the rule's choice for CL and V against the fits' divergences::

    .venv/bin/python benchmarks/analyse_sbc_centering.py [build/sbc/one_cmt_oral]

2026-12-07, the one_cmt_oral run of ``benchmarks/results/sbc.md`` (fitted with CL and V
centred in every study): the rule leaves 49 studies non-centred, 47 of which had divergences;
of the 51 it keeps centred 24 had none (median 1 divergent transition).
"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

import nlme_bayes as nb
from nlme_bayes.batch.inputs import ModelSource, load_model
from nlme_bayes.centering import empirical_bayes_pilot

HERE = Path(__file__).resolve().parent


def main() -> int:
    warnings.filterwarnings("ignore")
    base = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE.parent / "build/sbc/one_cmt_oral"
    model = load_model(ModelSource("json", "model.json"), base=str(base))
    lines = (base / "fits" / "manifest.jsonl").read_text().splitlines()
    man = pd.DataFrame([json.loads(x) for x in lines if x.strip()])
    man["rep"] = man["task"].str.extract(r"rep-(r\d+)", expand=False)
    for k in ("divergences", "max_rhat", "min_ess_bulk"):
        man[k] = man["diagnostics"].apply(lambda d, k=k: (d or {}).get(k))
    rows = []
    for rep in sorted(man["rep"].dropna()):
        p = empirical_bayes_pilot(model, nb.read_nonmem(str(base / "sims" / f"{rep}.csv")))
        rows.append(
            {"rep": rep, "residual_scale": p.residual_scale}
            | {f"rho_{k}": float(np.median(v)) for k, v in p.ratio.items()}
        )
    df = pd.DataFrame(rows).merge(man[["rep", "divergences", "max_rhat", "min_ess_bulk"]])
    centred = (df["rho_CL"] > 1) & (df["rho_V"] > 1)
    print("rule would centre CL and V (rows) vs the fit had divergences (columns):")
    print(pd.crosstab(centred, df["divergences"] > 0))
    print(df.groupby(centred)[["divergences", "min_ess_bulk", "max_rhat"]].median())
    return 0


if __name__ == "__main__":
    sys.exit(main())
