"""``nlme-bayes forecast``: a new patient's parameters, predictions and dose, from the shell.

Reads a fitted population (a results file written by ``nlme-bayes fit`` or ``Fit.save``)
and the new patient's NONMEM-style records (doses, measured levels, covariates; several
patients are forecast independently), and prints and writes:

- ``forecast_parameters.csv``: posterior summary of each patient's parameters (with MAP);
- ``forecast_diagnostics.csv``: levels used, ESS of the weights, Pareto k, acceptance;
- ``forecast_prediction.csv``: the predicted concentration curve with credible and
  prediction bands (history plus ``--regimen``, or the recommended regimen);
- with ``--target``: ``dose_candidates.csv`` (every allowed regimen with its probability
  of target attainment) and ``dose_recommendation.csv`` (the best per patient);
- with ``--plot``: ``forecast.png``.

Exit codes: 0 ok; 1 the computation failed; 2 bad input (a missing or malformed file, a
patient record without the model's covariates, an invalid target), with a one-line reason
on stderr.

Examples
--------
>>> parser = argparse.ArgumentParser(prog="nlme-bayes")
>>> sub = parser.add_subparsers(dest="command")
>>> _ = add_parser(sub)
>>> args = parser.parse_args(["forecast", "pheno.nc", "patient.csv", "--target", "trough",
...                           "15", "25", "--amounts", "2", "3", "--intervals", "12"])
>>> args.target, args.amounts
(['trough', '15', '25'], [2.0, 3.0])
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

__all__ = ["add_parser", "run", "main"]

EXIT_OK, EXIT_FAILED, EXIT_INPUT = 0, 1, 2
PROG = "nlme-bayes forecast"


class _InputError(Exception):
    """Bad input: reported on one line, exit code 2."""


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``forecast`` sub-command to an ``argparse`` sub-parsers object.

    Examples
    --------
    >>> import argparse
    >>> parser = argparse.ArgumentParser(prog="nlme-bayes")
    >>> add_parser(parser.add_subparsers(dest="command")).prog
    'nlme-bayes forecast'
    """
    p = subparsers.add_parser(
        "forecast",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        help="a new patient's parameters, predictions and dose from a fitted population",
        description=(
            "Forecast new patients from their doses, levels and covariates, given a fitted\n"
            "population model (fully Bayesian by default; --method map for MAP Bayes), and\n"
            "optionally recommend the regimen that maximises the probability of reaching a\n"
            "target (e.g. a trough window)."
        ),
        epilog=(
            "examples:\n"
            "  nlme-bayes forecast pheno.nc patient.csv\n"
            "  nlme-bayes forecast pheno.nc patient.csv --target trough 15 25 \\\n"
            "      --amounts 2 3 4 5 --intervals 12 24 --n-doses 10 --outdir out --plot\n"
            "  nlme-bayes forecast pheno.nc patient.csv --target time_above 0.4 - \\\n"
            "      --threshold 2 --amounts 500 1000 --intervals 8 12 --duration 0.5\n"
            "  nlme-bayes forecast pheno.nc patient.csv --regimen 3 12 6\n"
            "\n"
            "exit codes: 0 ok; 1 computation failed; 2 bad input."
        ),
    )
    p.add_argument("results", help="results file of the population fit (nlme-bayes fit)")
    p.add_argument("patient", help="CSV of the new patient(s): NONMEM-style records")
    p.add_argument(
        "--column-map",
        metavar="YOURS=STANDARD",
        action="append",
        default=[],
        help="rename a column of the patient file, e.g. SUBJ=ID; repeatable",
    )
    g = p.add_argument_group("forecast")
    g.add_argument("--method", default="full", choices=["full", "map"])
    g.add_argument("--draws", type=int, default=None, help="population draws used (all)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--ci", type=float, default=0.9, help="width of the bands (0.9)")
    g.add_argument(
        "--regimen",
        nargs=3,
        type=float,
        metavar=("AMOUNT", "INTERVAL", "N_DOSES"),
        help="future regimen for the predicted curve (default: the recommended one)",
    )
    d = p.add_argument_group("dose recommendation")
    d.add_argument(
        "--target",
        nargs=3,
        metavar=("METRIC", "LOWER", "UPPER"),
        help="trough, cmax, cmin, auc, cavg or time_above (fraction 0-1); '-' for an open bound",
    )
    d.add_argument("--threshold", type=float, help="concentration for time_above (e.g. MIC)")
    d.add_argument("--amounts", type=float, nargs="+", help="doses allowed")
    d.add_argument("--intervals", type=float, nargs="+", help="dosing intervals allowed")
    d.add_argument("--n-doses", type=int, default=10, help="doses of the new regimen (10)")
    d.add_argument("--duration", type=float, default=0.0, help="infusion duration (0: bolus)")
    d.add_argument("--route", choices=["iv", "oral"], default=None)
    d.add_argument("--start", type=float, default=None, help="time of the first new dose")
    d.add_argument(
        "--evaluate", default="last", help="dosing interval the target applies to: last, first, N"
    )
    o = p.add_argument_group("output")
    o.add_argument("--outdir", default=None, help="write the CSV files (and the plot) here")
    o.add_argument("--plot", action="store_true", help="write forecast.png (needs --outdir)")
    p.set_defaults(_run=run)
    return p


def _bound(text: str) -> float | None:
    if text.strip().lower() in ("-", "none", ""):
        return None
    try:
        return float(text)
    except ValueError as exc:
        raise _InputError(f"--target bound {text!r} is not a number (use '-' for none).") from exc


def _load_inputs(args: argparse.Namespace) -> tuple[Any, Any]:
    from .data import read_nonmem
    from .io import load

    results, patient = Path(args.results), Path(args.patient)
    if not results.is_file():
        raise _InputError(f"results file {str(results)!r} does not exist.")
    if not patient.is_file():
        raise _InputError(f"patient file {str(patient)!r} does not exist.")
    try:
        fit = load(results)
    except (OSError, ValueError, KeyError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise _InputError(
            f"{str(results)!r} is not an nlme_bayes results file (nlme-bayes fit or Fit.save): "
            f"{first}"
        ) from exc
    column_map = {}
    for pair in args.column_map:
        yours, sep, standard = pair.partition("=")
        if not sep or not yours or not standard:
            raise _InputError(f"--column-map {pair!r}: expected YOURS=STANDARD, e.g. SUBJ=ID.")
        column_map[yours] = standard
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*no observation record.*")
        data = read_nonmem(patient, column_map=column_map or None)
    return fit, data


def _target(args: argparse.Namespace) -> Any:
    from .dosing import Target

    if args.target is None:
        for flag in ("amounts", "intervals", "threshold"):
            if getattr(args, flag) is not None:
                raise _InputError(f"--{flag} needs --target.")
        return None
    if not args.amounts or not args.intervals:
        raise _InputError("--target needs --amounts and --intervals (the regimens allowed).")
    metric, lower, upper = args.target
    return Target(metric, lower=_bound(lower), upper=_bound(upper), threshold=args.threshold)


def _evaluate(text: str) -> int | str:
    if text in ("first", "last"):
        return text
    try:
        return int(text)
    except ValueError as exc:
        raise _InputError(f"--evaluate {text!r}: expected first, last or an index.") from exc


def _forecast(args: argparse.Namespace, out: Any) -> int:
    import pandas as pd

    from .dosing import _default_start, recommend_dose
    from .forecast import forecast
    from .regimen import Regimen

    if args.plot and args.outdir is None:
        raise _InputError("--plot needs --outdir.")
    outdir = Path(args.outdir) if args.outdir is not None else None
    if outdir is not None and outdir.exists() and not outdir.is_dir():
        raise _InputError(f"--outdir {str(outdir)!r} exists and is not a folder.")
    target = _target(args)
    evaluate = _evaluate(args.evaluate)
    if args.regimen is not None and (
        args.regimen[2] != int(args.regimen[2]) or args.regimen[2] < 1
    ):
        raise _InputError(f"--regimen N_DOSES must be a positive integer, got {args.regimen[2]:g}.")
    fit, data = _load_inputs(args)
    fc = forecast(fit, data, method=args.method, n_draws=args.draws, random_seed=args.seed)
    summary = fc.summary(ci_prob=args.ci)
    diag = fc.diagnostics()
    with pd.option_context("display.width", 160, "display.max_columns", 20):
        print(f"{fc!r}\n", file=out)
        print(summary.to_string(float_format=lambda v: f"{v:.4g}"), file=out)
        print("\n" + diag.to_string(float_format=lambda v: f"{v:.3g}"), file=out)
    rec = None
    regimen: Any = None
    if target is not None:
        rec = recommend_dose(
            fc,
            target,
            amounts=args.amounts,
            intervals=args.intervals,
            n_doses=args.n_doses,
            duration=args.duration,
            route=args.route,
            start=args.start,
            evaluate=evaluate,
        )
        print(f"\n{rec!r}", file=out)
        regimen = rec.regimens
    if args.regimen is not None:
        amount, interval, n = args.regimen
        start = args.start if args.start is not None else None
        regimen = {}
        for pid in fc.patient_ids:
            t0 = start if start is not None else _default_start(fc, pid)
            regimen[pid] = Regimen(amount, interval=interval, n_doses=int(n), start=t0,
                                   duration=args.duration, route=args.route)  # fmt: skip
    pred = fc.predict(regimen=regimen, ci_prob=args.ci)
    if outdir is not None:
        outdir.mkdir(parents=True, exist_ok=True)
        summary.to_csv(outdir / "forecast_parameters.csv")
        diag.to_csv(outdir / "forecast_diagnostics.csv")
        pred.to_csv(outdir / "forecast_prediction.csv", index=False)
        meta = {
            "results": str(args.results),
            "patient": str(args.patient),
            "method": args.method,
            "draws": fc.n_draws,
            "seed": args.seed,
            "ci": args.ci,
        }
        if rec is not None:
            rec.table.to_csv(outdir / "dose_candidates.csv", index=False)
            rec.best.to_csv(outdir / "dose_recommendation.csv")
            meta["target"] = rec.target.describe()
        (outdir / "forecast.json").write_text(json.dumps(meta, indent=2))
        if args.plot:
            fc.plot(regimen=regimen, ci_prob=args.ci, path=outdir / "forecast.png")
        print(f"\nwrote {outdir}", file=out)
    return EXIT_OK


def run(args: argparse.Namespace) -> int:
    """Run ``nlme-bayes forecast`` with parsed ``args``; return the exit code.

    Bad input (missing files, invalid records or targets) is reported on stderr in one line
    and gives exit code 2; any other failure of the computation gives 1.

    Examples
    --------
    From a shell: ``nlme-bayes forecast fit.nc patient.csv``; from Python, with parsed arguments:

    >>> run(parser.parse_args(["forecast", "fit.nc", "patient.csv"]))  # doctest: +SKIP
    <Forecast (full): 1 patient(s), ... draws; min ESS of weights ...>
    <BLANKLINE>
                      mean        sd    median       lo       hi      mcse  ess  typical       map
    ID  parameter
    101 CL        ...
    0
    """
    from .errors import DatasetError, NLMEError

    try:
        return _forecast(args, sys.stdout)
    except _InputError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return EXIT_INPUT
    except DatasetError as exc:
        lines = list(exc.violations) or [str(exc)]
        more = f" (and {len(lines) - 1} more)" if len(lines) > 1 else ""
        print(f"{PROG}: error: invalid patient data: {lines[0]}{more}", file=sys.stderr)
        for line in lines[1:]:
            print(f"  {line}", file=sys.stderr)
        return EXIT_INPUT
    except NLMEError as exc:
        print(f"{PROG}: error: {str(exc).splitlines()[0]}", file=sys.stderr)
        return EXIT_INPUT
    except Exception as exc:
        if getattr(args, "debug", False):
            raise
        first = str(exc).splitlines()[0] if str(exc) else ""
        print(f"{PROG}: error: {type(exc).__name__}: {first}", file=sys.stderr)
        return EXIT_FAILED


def main(argv: list[str] | None = None) -> int:
    """Standalone entry point: ``python -m nlme_bayes.forecast_cli RESULTS PATIENT ...``.

    Examples
    --------
    >>> main(["fit.nc", "patient.csv"])  # doctest: +SKIP
    <Forecast (full): 1 patient(s), ... draws; min ESS of weights ...>
    <BLANKLINE>
                      mean        sd    median       lo       hi      mcse  ess  typical       map
    ID  parameter
    101 CL        ...
    0
    """
    import warnings

    warnings.filterwarnings("ignore", message="PyTensor could not link to a BLAS")
    parser = argparse.ArgumentParser(prog="nlme-bayes")
    sub = parser.add_subparsers(dest="command")
    add_parser(sub)
    args = parser.parse_args(["forecast", *(sys.argv[1:] if argv is None else argv)])
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
