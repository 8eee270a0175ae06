"""The main job: fit the shipped Theophylline data and write the results and plots.

Run with ``bash scripts/run_example.sh`` (sets up the environment first) or
``python -m nlme_bayes.main [--draws N] [--outdir DIR]``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time


def main(argv: list[str] | None = None) -> int:
    """Fit Theophylline, print the parameter table, write the results file and the plots.

    Parameters
    ----------
    argv : list of str, optional
        Command-line arguments (default: ``sys.argv[1:]``): ``--draws``, ``--tune``,
        ``--chains``, ``--seed``, ``--sampler``, ``--outdir``.

    Returns
    -------
    int
        The exit status (0).

    Examples
    --------
    From a shell: ``python -m nlme_bayes.main --draws 500 --outdir outputs``; from Python:

    >>> from nlme_bayes.main import main
    >>> main(["--draws", "500", "--outdir", "outputs"])  # doctest: +SKIP
    0
    """
    parser = argparse.ArgumentParser(
        prog="python -m nlme_bayes.main",
        description="Fit a one-compartment oral model with correlated log-normal random effects "
        "to the Theophylline data (12 subjects), print the parameter table, and write "
        "outputs/theophylline_fit.nc, outputs/theophylline_{gof,individual,vpc}.png and "
        "outputs/theophylline_report.html.",
    )
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--tune", type=int, default=1000)
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--seed", type=int, default=20240601)
    parser.add_argument("--sampler", default="auto", choices=["auto", "pymc", "nutpie", "numpyro"])
    parser.add_argument("--outdir", default="outputs")
    args = parser.parse_args(argv)

    import warnings

    # Our linear algebra is on 3x3 matrices: PyTensor's BLAS notice is noise for this job.
    warnings.filterwarnings("ignore", message="PyTensor could not link to a BLAS")

    import nlme_bayes as nb
    from nlme_bayes.examples import theophylline_model

    os.makedirs(args.outdir, exist_ok=True)
    data = nb.datasets.theophylline()
    model = theophylline_model()
    print(data)
    print(model.describe(), flush=True)
    t0 = time.perf_counter()
    fit = model.fit(
        data,
        draws=args.draws,
        tune=args.tune,
        chains=args.chains,
        random_seed=args.seed,
        sampler=args.sampler,
    )
    print(f"\nfit done in {time.perf_counter() - t0:.1f} s\n")
    print(fit.report())
    results = os.path.join(args.outdir, "theophylline_fit.nc")
    fit.save(results)
    gof = os.path.join(args.outdir, "theophylline_gof.png")
    ind = os.path.join(args.outdir, "theophylline_individual.png")
    fit.plot_gof(gof)
    fit.plot_individual(ind)
    vpc_png = os.path.join(args.outdir, "theophylline_vpc.png")
    nb.vpc.plot_vpc(nb.vpc.vpc(fit, n_draws=500), path=vpc_png)
    html = os.path.join(args.outdir, "theophylline_report.html")
    fit.report(html)
    print(f"\nwrote {results}\nwrote {gof}\nwrote {ind}\nwrote {vpc_png}\nwrote {html}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
