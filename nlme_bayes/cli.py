"""The ``nlme-bayes`` command line: fit, summarise, diagnose, compare, simulate, VPC, report, batch.

Every command is a thin shell over the public API (``Model.fit``, ``nlme_bayes.load``,
``nlme_bayes.diagnostics``, ``nlme_bayes.comparison``, ``nlme_bayes.simulation``,
``nlme_bayes.vpc``, ``nlme_bayes.batch``); ``nlme-bayes COMMAND --help`` shows its options
and examples.

Exit codes
----------
=====  ==========================================================================
0      success
1      the computation failed (the sampler could not start, an unexpected error)
2      bad input: usage, a missing or unreadable file, an invalid dataset (the column,
       row and ID are named), an unknown template, an invalid model or plan
3      ``--strict``: the fit has convergence problems (the results are still written)
4      ``batch``: some fits failed (their errors are in the manifest and the table)
130    interrupted (Ctrl-C)
=====  ==========================================================================

Errors are reported on stderr as ``nlme-bayes COMMAND: error: <reason>`` on one line;
an invalid dataset lists its further violations on the lines that follow. ``--debug``
shows the Python traceback of an unexpected error.

Models are named, never evaluated from a string or unpickled: ``--template NAME`` (with
``--option KEY=VALUE``, the value read as JSON where it parses), ``--model-file model.py``
(a Python file that defines ``model`` or ``make_model(**options)``), ``--example NAME``, or
``--model-json spec.json``. Further commands can be added by modules listed in
:data:`EXTRA_COMMANDS` that define ``add_parser(subparsers)`` and ``run(args) -> int``.

Examples
--------
>>> main(["--version"])  # doctest: +SKIP
>>> build_parser().prog
'nlme-bayes'
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["EXTRA_COMMANDS", "CLIError", "build_parser", "main"]

#: Modules that add their own sub-commands when they are importable.
EXTRA_COMMANDS: tuple[str, ...] = ("nlme_bayes.forecast_cli",)

EXIT_OK, EXIT_FAILED, EXIT_INPUT, EXIT_CONVERGENCE, EXIT_BATCH, EXIT_INTERRUPTED = (
    0,
    1,
    2,
    3,
    4,
    130,
)


class CLIError(Exception):
    """A reason to stop with a one-line message and an exit code.

    Examples
    --------
    >>> err = CLIError("no such file: study.csv")
    >>> err.code, str(err)
    (2, 'no such file: study.csv')
    """

    def __init__(self, message: str, code: int = EXIT_INPUT, details: Sequence[str] = ()):
        super().__init__(message)
        self.code = code
        self.details = list(details)


class _Formatter(argparse.RawDescriptionHelpFormatter):
    pass


class _Parser(argparse.ArgumentParser):
    """Usage errors on one line (exit 2), pointing to ``--help``."""

    def error(self, message: str) -> Any:  # type: ignore[override]
        self.exit(EXIT_INPUT, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _examples(*lines: str) -> str:
    return "examples:\n" + "\n".join(f"  {line}" for line in lines)


# ---------------------------------------------------------------------------- arguments
def _add_model_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model (give exactly one)")
    src = g.add_mutually_exclusive_group(required=True)
    src.add_argument("--template", metavar="NAME", help="a model of the template library")
    src.add_argument(
        "--model-file",
        metavar="PATH",
        help="a Python file defining `model` or `make_model(**options)`",
    )
    src.add_argument("--example", metavar="NAME", help="a reference model: theophylline, pheno")
    src.add_argument(
        "--model-json",
        metavar="PATH",
        help="a JSON model specification (Model.to_dict(); results files carry one)",
    )
    g.add_argument(
        "--option",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        help="template / make_model option; VALUE is read as JSON where it parses "
        "(e.g. --option 'typical={\"CL\": 2.5}'); repeatable",
    )


def _add_data_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data (give exactly one)")
    src = g.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", metavar="CSV", help="NONMEM-style data file")
    src.add_argument("--dataset", metavar="NAME", help="a shipped dataset, e.g. theophylline")
    g.add_argument(
        "--column-map",
        metavar="YOURS=STANDARD",
        action="append",
        default=[],
        help="rename a column, e.g. --column-map SUBJ=ID; repeatable",
    )


def _add_sampler_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("sampler")
    g.add_argument("--draws", type=int, default=1000, help="kept draws per chain (1000)")
    g.add_argument("--tune", type=int, default=1000, help="warm-up iterations per chain (1000)")
    g.add_argument("--chains", type=int, default=4, help="chains (4)")
    g.add_argument("--cores", type=int, default=None, help="chains run in parallel (all)")
    g.add_argument(
        "--seed", type=int, default=None, help="random seed (drawn and recorded when not given)"
    )
    g.add_argument("--sampler", default="auto", choices=["auto", "nutpie", "pymc", "numpyro"])
    g.add_argument("--target-accept", type=float, default=0.9)
    g.add_argument("--max-treedepth", type=int, default=10)
    g.add_argument("--mass-matrix", default="diag", choices=["diag", "low_rank", "dense"])


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``nlme-bayes`` (with the extra commands that are importable).

    Examples
    --------
    >>> sorted(build_parser()._subparsers._group_actions[0].choices)[:4]
    ['batch', 'compare', 'diagnose', 'fit']
    """
    from . import __version__

    parser = _Parser(
        prog="nlme-bayes",
        formatter_class=_Formatter,
        description="Bayesian population PK/PD (nonlinear mixed-effects) models on PyMC.",
        epilog=textwrap.dedent("""\
            exit codes: 0 ok; 1 computation failed; 2 bad input; 3 convergence problems
            with --strict; 4 batch had failed fits; 130 interrupted.

            """)
        + _examples(
            "nlme-bayes fit --example theophylline --dataset theophylline -o theo.nc",
            "nlme-bayes summary theo.nc",
            "nlme-bayes batch plan.toml",
        ),
    )
    parser.add_argument("--version", action="version", version=f"nlme-bayes {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser(
        "fit",
        formatter_class=_Formatter,
        help="fit a model to data -> results file",
        description="Fit a model to NONMEM-style data with NUTS and write one results file "
        "(NetCDF: posterior, data, model, seed, sampler settings, versions, host, timings). "
        "Prints the parameter table and the convergence verdict.",
        epilog=_examples(
            "nlme-bayes fit --example theophylline --dataset theophylline -o theo.nc --seed 1",
            'nlme-bayes fit --template one_cmt_oral --option \'iiv={"ka": "none"}\' '
            "--data study.csv --column-map SUBJ=ID -o fit.nc --strict",
            "nlme-bayes fit --model-file my_model.py --data study.csv -o fit.nc --draws 2000",
        ),
    )
    _add_model_args(p)
    _add_data_args(p)
    _add_sampler_args(p)
    p.add_argument("-o", "--output", required=True, metavar="RESULTS.nc")
    p.add_argument(
        "--strict",
        action="store_true",
        help="exit 3 if the convergence checks fail (results are written anyway)",
    )
    p.add_argument("--quiet", action="store_true", help="do not print the report")
    p.add_argument("--progress", action="store_true", help="show the sampler's progress bars")
    p.set_defaults(_run=_cmd_fit)

    p = sub.add_parser(
        "summary",
        formatter_class=_Formatter,
        help="parameter table of a results file",
        description="Posterior mean, SD, median, credible interval, MCSE, R-hat and ESS of the "
        "population parameters.",
        epilog=_examples(
            "nlme-bayes summary theo.nc",
            "nlme-bayes summary theo.nc --ci 0.9 --csv theo_summary.csv",
        ),
    )
    p.add_argument("results", metavar="RESULTS.nc")
    p.add_argument("--ci", type=float, default=0.95, help="credible interval probability")
    p.add_argument("--csv", metavar="PATH", help="also write the table as CSV")
    p.set_defaults(_run=_cmd_summary)

    p = sub.add_parser(
        "diagnose",
        formatter_class=_Formatter,
        help="convergence report of a results file",
        description="R-hat, bulk/tail ESS, divergences (and where they concentrate), tree "
        "depth, E-BFMI, MCSE, with advice.",
        epilog=_examples("nlme-bayes diagnose theo.nc", "nlme-bayes diagnose theo.nc --strict"),
    )
    p.add_argument("results", metavar="RESULTS.nc")
    p.add_argument("--strict", action="store_true", help="exit 3 if there are problems")
    p.set_defaults(_run=_cmd_diagnose)

    p = sub.add_parser(
        "compare",
        formatter_class=_Formatter,
        help="rank several fits of the same data (LOO)",
        description="Expected log predictive density by PSIS-LOO (or WAIC), by observation or "
        "by subject, with differences, their SE and stacking weights.",
        epilog=_examples(
            "nlme-bayes compare one_cmt.nc two_cmt.nc",
            "nlme-bayes compare a.nc b.nc --by subject --names 1cmt,2cmt",
        ),
    )
    p.add_argument("results", metavar="RESULTS.nc", nargs="+")
    p.add_argument("--by", default="observation", choices=["observation", "subject"])
    p.add_argument(
        "--method", default=None, choices=["psis", "integrated", "kfold", "auto", "waic"]
    )
    p.add_argument("--names", metavar="A,B,...", help="labels (default: the file names)")
    p.add_argument("--csv", metavar="PATH", help="also write the table as CSV")
    p.set_defaults(_run=_cmd_compare)

    p = sub.add_parser(
        "simulate",
        formatter_class=_Formatter,
        help="simulate replicates of the study design",
        description="Replicate the fitted study from posterior draws (new subjects' random "
        "effects by default). --format long: one CSV with replicate, ID, TIME, DVID, DV "
        "(observed), DV_sim, IPRED_sim, PRED. --format nonmem: one NONMEM-style data file "
        "per replicate (the original records with DV replaced) in the folder -o, ready for a "
        "simulation-estimation batch plan (datasets glob).",
        epilog=_examples(
            "nlme-bayes simulate theo.nc -o sims.csv --n 200 --seed 1",
            "nlme-bayes simulate theo.nc --format nonmem -o sims/ --n 20",
        ),
    )
    p.add_argument("results", metavar="RESULTS.nc")
    p.add_argument("-o", "--output", required=True, metavar="PATH")
    p.add_argument("--n", type=int, default=100, help="replicates (100)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--format", default="long", choices=["long", "nonmem"])
    p.add_argument(
        "--same-subjects",
        action="store_true",
        help="keep the fitted subjects' random effects (posterior predictive check)",
    )
    p.set_defaults(_run=_cmd_simulate)

    p = sub.add_parser(
        "vpc",
        formatter_class=_Formatter,
        help="visual predictive check -> PNG",
        description="Observed percentiles against the bands of simulated percentiles.",
        epilog=_examples(
            "nlme-bayes vpc theo.nc -o theo_vpc.png",
            "nlme-bayes vpc theo.nc -o pcvpc.png --pc --log-y --n-draws 500",
        ),
    )
    p.add_argument("results", metavar="RESULTS.nc")
    p.add_argument("-o", "--output", required=True, metavar="PNG")
    p.add_argument("--n-draws", type=int, default=200)
    p.add_argument("--pc", action="store_true", help="prediction-corrected VPC")
    p.add_argument("--stratify", metavar="COLUMN", help="one panel per value of a covariate")
    p.add_argument("--log-y", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(_run=_cmd_vpc)

    p = sub.add_parser(
        "report",
        formatter_class=_Formatter,
        help="full HTML report of a results file",
        description="Tables, convergence, shrinkage, predictive performance and every "
        "diagnostic plot on one HTML page; the text report is printed.",
        epilog=_examples("nlme-bayes report theo.nc -o theo_report.html"),
    )
    p.add_argument("results", metavar="RESULTS.nc")
    p.add_argument("-o", "--output", required=True, metavar="HTML")
    p.set_defaults(_run=_cmd_report)

    p = sub.add_parser(
        "batch",
        formatter_class=_Formatter,
        help="run a batch plan on Dask",
        description="Run the fits of a TOML plan (models x datasets x settings x seeds) on a "
        "Dask cluster: a LocalCluster by default, SLURM/PBS/... through dask-jobqueue as the "
        "plan's [cluster] table (or --cluster FILE) says. Fits already done are skipped, "
        "failed ones retried (bounded by max_attempts), results written atomically with a "
        "manifest line each; <output>/results.csv has one row per fit. See "
        "nlme_bayes.batch.plan for the format and examples/plans/ for complete plans.",
        epilog=_examples(
            "nlme-bayes batch examples/plans/theophylline_local.toml",
            "nlme-bayes batch plan.toml --local 4 --output /scratch/run1",
            "nlme-bayes batch plan.toml --cluster slurm.toml",
            "nlme-bayes batch plan.toml --dry-run",
        ),
    )
    p.add_argument("plan", metavar="PLAN.toml")
    p.add_argument("--output", metavar="DIR", help="output folder (overrides [plan] output)")
    clus = p.add_mutually_exclusive_group()
    clus.add_argument(
        "--cluster",
        metavar="FILE.toml",
        help="a TOML file whose [cluster] table replaces the plan's",
    )
    clus.add_argument(
        "--local",
        metavar="N",
        type=int,
        help="run on a LocalCluster with N workers, whatever the plan says",
    )
    p.add_argument("--max-attempts", type=int, help="overrides [plan] max_attempts")
    p.add_argument(
        "--rerun-changed",
        action="store_true",
        help="refit fits whose existing results come from different inputs",
    )
    p.add_argument(
        "--allow-outside", action="store_true", help="let the plan's paths point outside its folder"
    )
    p.add_argument("--dry-run", action="store_true", help="list what would run, run nothing")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(_run=_cmd_batch)

    p = sub.add_parser(
        "templates",
        formatter_class=_Formatter,
        help="list the model templates",
        description="Names of the models in the template library (for --template).",
        epilog=_examples("nlme-bayes templates"),
    )
    p.set_defaults(_run=_cmd_templates)

    for name in EXTRA_COMMANDS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:  # the module exists but something it imports is missing
                raise
            continue
        before = set(sub.choices)
        module.add_parser(sub)
        for added in set(sub.choices) - before:
            if sub.choices[added].get_default("_run") is None:
                sub.choices[added].set_defaults(_run=module.run)
    return parser


# ---------------------------------------------------------------------------- helpers
def _options(pairs: Sequence[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise CLIError(f"--option {pair!r}: expected KEY=VALUE.")
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value
    return out


def _column_map(pairs: Sequence[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        yours, sep, standard = pair.partition("=")
        if not sep or not yours or not standard:
            raise CLIError(f"--column-map {pair!r}: expected YOURS=STANDARD, e.g. SUBJ=ID.")
        out[yours] = standard
    return out


def _model(args: argparse.Namespace) -> Any:
    from .batch.inputs import ModelSource, load_model

    options = _options(args.option)
    for kind, value in (
        ("template", args.template),
        ("file", args.model_file),
        ("example", args.example),
        ("json", args.model_json),
    ):
        if value is not None:
            return load_model(ModelSource(kind, value, options))
    raise CLIError("give a model: --template, --model-file, --example or --model-json.")


def _data(args: argparse.Namespace) -> Any:
    from .batch.inputs import DataSource, load_data

    if args.data is not None:
        return load_data(DataSource("path", args.data, _column_map(args.column_map)))
    return load_data(DataSource("builtin", args.dataset))


def _load(path: str) -> Any:
    from .io import load

    if not Path(path).is_file():
        raise CLIError(f"results file {path!r} does not exist.")
    try:
        return load(path)
    except (OSError, ValueError, KeyError) as exc:  # not NetCDF/HDF5, or not ours
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CLIError(
            f"{path!r} is not an nlme_bayes results file (written by nlme-bayes fit or "
            f"Fit.save): {first}"
        ) from exc


def _writable(path: str) -> Path:
    p = Path(path)
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise CLIError(f"cannot write {path!r}: folder {str(parent)!r} does not exist.")
    return p


# ---------------------------------------------------------------------------- commands
def _cmd_fit(args: argparse.Namespace) -> int:
    out = _writable(args.output)
    model = _model(args)
    data = _data(args)
    fit = model.fit(
        data,
        draws=args.draws,
        tune=args.tune,
        chains=args.chains,
        cores=args.cores,
        random_seed=args.seed,
        sampler=args.sampler,
        target_accept=args.target_accept,
        max_treedepth=args.max_treedepth,
        mass_matrix=args.mass_matrix,
        progressbar=args.progress,
        check=False,
    )
    fit.save(out)
    if not args.quiet:
        print(fit.report())
    print(f"wrote {out}", file=sys.stderr)
    return _verdict(fit, args.strict, str(out))


def _verdict(fit: Any, strict: bool, label: str) -> int:
    report = fit.check_convergence()
    if strict and not report.ok:
        problems = "; ".join(report.problems) or "see nlme-bayes diagnose"
        raise CLIError(f"convergence problems in {label}: {problems}", EXIT_CONVERGENCE)
    return EXIT_OK


def _cmd_summary(args: argparse.Namespace) -> int:
    import pandas as pd

    if not 0 < args.ci < 1:
        raise CLIError(f"--ci must be between 0 and 1, got {args.ci}.")
    fit = _load(args.results)
    table = fit.summary(ci_prob=args.ci)
    with pd.option_context("display.width", 160, "display.max_columns", 20):
        print(table.drop(columns="kind").to_string(float_format=lambda v: f"{v:.4g}"))
    if args.csv:
        table.to_csv(_writable(args.csv))
    return EXIT_OK


def _cmd_diagnose(args: argparse.Namespace) -> int:
    fit = _load(args.results)
    print(fit.check_convergence())
    return _verdict(fit, args.strict, args.results)


def _cmd_compare(args: argparse.Namespace) -> int:
    import pandas as pd

    from .comparison import compare

    if len(args.results) < 2:
        raise CLIError("compare needs at least two results files.")
    names = args.names.split(",") if args.names else [Path(r).stem for r in args.results]
    if len(names) != len(args.results):
        raise CLIError(f"--names gives {len(names)} labels for {len(args.results)} files.")
    if len(set(names)) != len(names):
        raise CLIError(f"labels repeat ({', '.join(names)}); give distinct ones with --names.")
    fits = {n: _load(r) for n, r in zip(names, args.results, strict=True)}
    table = compare(fits, by=args.by, method=args.method)
    with pd.option_context("display.width", 160, "display.max_columns", 20):
        print(table.to_string(float_format=lambda v: f"{v:.4g}"))
    if args.csv:
        table.to_csv(_writable(args.csv))
    return EXIT_OK


def _cmd_simulate(args: argparse.Namespace) -> int:
    from .simulation import simulate_replicates

    if args.n < 1:
        raise CLIError(f"--n must be a positive integer, got {args.n}.")
    out = Path(args.output)
    if args.format == "long":
        _writable(args.output)
    fit = _load(args.results)
    sims = simulate_replicates(
        fit, n_draws=args.n, new_subjects=not args.same_subjects, random_seed=args.seed
    )
    if args.format == "long":
        frame = sims[["DV_sim", "IPRED_sim", "PRED"]].to_dataframe().reset_index()
        frame = frame.rename(columns={"draw": "replicate"})
        frame["replicate"] = frame.groupby("obs").cumcount() + 1
        obs = sims[["DV"]].to_dataframe().reset_index()
        frame = frame.merge(obs[["obs", "DV"]], on="obs")
        cols = ["replicate", "ID", "TIME", "DVID", "DV", "DV_sim", "IPRED_sim", "PRED"]
        frame.sort_values(["replicate", "obs"])[cols].to_csv(out, index=False)
        print(
            f"wrote {out} ({args.n} replicates x {sims.sizes['obs']} observations)", file=sys.stderr
        )
        return EXIT_OK
    from .simulation import observation_table

    out.mkdir(parents=True, exist_ok=True)
    records = fit.data.records
    position = {r: i for i, r in enumerate(records["ROW"].to_numpy())}
    target = [position[r] for r in observation_table(fit)["ROW"].to_numpy()]  # model order
    width = len(str(args.n))
    for i in range(args.n):
        frame = records.copy()
        dv = frame["DV"].to_numpy(dtype=float, copy=True)
        dv[target] = sims["DV_sim"].values[i]
        frame["DV"] = dv
        frame.drop(columns=["ROW"]).to_csv(out / f"sim_{i + 1:0{width}d}.csv", index=False)
    print(f"wrote {args.n} NONMEM-style data files to {out}/", file=sys.stderr)
    return EXIT_OK


def _cmd_vpc(args: argparse.Namespace) -> int:
    from .vpc import plot_vpc, vpc

    out = _writable(args.output)
    fit = _load(args.results)
    result = vpc(
        fit,
        n_draws=args.n_draws,
        prediction_corrected=args.pc,
        stratify=args.stratify,
        random_seed=args.seed,
    )
    plot_vpc(result, path=out, log_y=args.log_y)
    print(f"wrote {out}", file=sys.stderr)
    return EXIT_OK


def _cmd_report(args: argparse.Namespace) -> int:
    out = _writable(args.output)
    fit = _load(args.results)
    print(fit.report(out))
    print(f"wrote {out}", file=sys.stderr)
    return EXIT_OK


def _cmd_templates(args: argparse.Namespace) -> int:
    from . import templates

    for name in templates.available():
        print(name)
    return EXIT_OK


def _cmd_batch(args: argparse.Namespace) -> int:
    from .batch import load_plan, run_plan
    from .batch.plan import read_toml

    cluster = None
    if args.cluster:
        raw = read_toml(args.cluster, what="cluster")
        cluster = raw.get("cluster", raw)
    elif args.local is not None:
        if args.local < 1:
            raise CLIError(f"--local needs a positive number of workers, got {args.local}.")
        cluster = {"kind": "local", "n_workers": args.local}
    plan = load_plan(
        args.plan,
        output=args.output,
        allow_outside=True if args.allow_outside else None,
        cluster=cluster,
    )
    summary = run_plan(
        plan,
        progress=not args.no_progress,
        rerun_changed=args.rerun_changed,
        max_attempts=args.max_attempts,
        dry_run=args.dry_run,
    )
    if args.dry_run:
        print(
            f"plan {plan.name}: {len(summary.ran)} to run, {len(summary.skipped)} done, "
            f"{len(summary.adopted)} adopted, {len(summary.failed)} given up -> {plan.output}"
        )
        for tid in summary.ran:
            print(f"  run  {tid}")
        for tid, msg in summary.failed.items():
            print(f"  gave up {tid}: {msg}")
        return EXIT_OK
    print(summary)
    if not summary.ok:
        raise CLIError(f"{len(summary.failed)} fit(s) failed; see {plan.manifest_path}", EXIT_BATCH)
    return EXIT_OK


# ---------------------------------------------------------------------------- entry point
def _classify(exc: BaseException) -> CLIError | None:
    from .errors import DatasetError, NLMEError, SamplingError

    if isinstance(exc, CLIError):
        return exc
    if isinstance(exc, DatasetError):
        violations = list(exc.violations)
        first = violations[0] if violations else str(exc)
        more = f" (and {len(violations) - 1} more, listed below)" if len(violations) > 1 else ""
        return CLIError(f"invalid data: {first}{more}", EXIT_INPUT, violations[1:])
    if isinstance(exc, SamplingError):
        return CLIError(str(exc).splitlines()[0], EXIT_FAILED)
    if isinstance(exc, NLMEError):
        return CLIError(str(exc).splitlines()[0], EXIT_INPUT)
    if isinstance(exc, FileNotFoundError):
        msg = str(exc) if not exc.filename else f"no such file: {exc.filename}"
        return CLIError(msg, EXIT_INPUT)
    if isinstance(exc, (IsADirectoryError, PermissionError, UnicodeDecodeError)):
        return CLIError(str(exc).splitlines()[0], EXIT_INPUT)
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``nlme-bayes`` with ``argv`` (default: the process arguments); return the exit code.

    Examples
    --------
    The error goes to stderr (``nlme-bayes summary: error: ...``); the exit code is returned:

    >>> main(["summary", "no_such_file.nc"])  # doctest: +SKIP
    2
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    command = args.command
    import warnings

    from .errors import ConvergenceWarning

    warnings.filterwarnings("ignore", message="PyTensor could not link to a BLAS")
    warnings.filterwarnings("ignore", category=ConvergenceWarning)
    try:
        return int(args._run(args))
    except KeyboardInterrupt:
        hint = (
            "; finished fits are recorded: run the same command again to continue"
            if command == "batch"
            else ""
        )
        print(f"nlme-bayes {command}: interrupted{hint}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:
        err = _classify(exc)
        if err is None:
            if args.debug:
                raise
            first = str(exc).splitlines()[0] if str(exc) else ""
            print(
                f"nlme-bayes {command}: error: {type(exc).__name__}: {first} "
                "(run with --debug for the traceback)",
                file=sys.stderr,
            )
            return EXIT_FAILED
        print(f"nlme-bayes {command}: error: {err}", file=sys.stderr)
        for line in err.details:
            print(f"  {line}", file=sys.stderr)
        return err.code


if __name__ == "__main__":  # python -m nlme_bayes.cli
    sys.exit(main())
