"""The ``nlme-bayes`` command line, run as a user runs it: in a subprocess.

Each command is run through the installed entry point (``python -m nlme_bayes.cli`` where the
script is not installed), with its exit code and its one-line message on stderr checked for
bad input. The fits are tiny (4 Theophylline subjects, 2 chains x 100 draws, PyMC's sampler,
whose compiled code PyTensor caches on disk); the exhaustive error matrix runs in-process
through :func:`nlme_bayes.cli.main`, which is what the entry point calls.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from nlme_bayes.cli import build_parser, main

EXE = Path(sys.executable).with_name("nlme-bayes")
CMD = [str(EXE)] if EXE.exists() else [sys.executable, "-m", "nlme_bayes.cli"]
TINY = ["--draws", "100", "--tune", "100", "--chains", "2", "--cores", "1", "--sampler", "pymc"]


def run(*args, cwd=None):
    return subprocess.run(
        [*CMD, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=cwd,
        env={**os.environ, "MPLBACKEND": "Agg"},
    )


def one_line_error(proc, command):
    lines = proc.stderr.strip().splitlines()
    assert lines, "no message on stderr"
    assert lines[-1].startswith(f"nlme-bayes {command}: error: ") or lines[0].startswith(
        f"nlme-bayes {command}: error: "
    ), proc.stderr
    return next(line for line in lines if line.startswith(f"nlme-bayes {command}: error: "))


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    import nlme_bayes as nb

    d = tmp_path_factory.mktemp("cli")
    rec = nb.datasets.theophylline().records
    rec[rec["ID"].isin([1, 2, 3, 4])].drop(columns=["ROW"]).to_csv(d / "theo4.csv", index=False)
    bad = rec[rec["ID"].isin([1, 2])].drop(columns=["ROW"]).astype({"TIME": object})
    bad.loc[bad.index[3], "TIME"] = "abc"
    bad.to_csv(d / "bad_time.csv", index=False)
    (d / "combined.py").write_text(
        "import nlme_bayes as nb\n"
        "from nlme_bayes.examples import theophylline_model\n"
        "def make_model(prop_sd=0.5):\n"
        "    return theophylline_model().replace(error=nb.Combined(\n"
        "        proportional=nb.Prior('HalfNormal', sigma=prop_sd)), name='combined')\n"
    )
    return d


@pytest.fixture(scope="module")
def fitted(work):
    """``nlme-bayes fit`` in a subprocess: the results file the other commands read."""
    proc = run(
        "fit",
        "--example",
        "theophylline",
        "--data",
        work / "theo4.csv",
        "-o",
        work / "additive.nc",
        "--seed",
        "1",
        *TINY,
    )
    return proc, work / "additive.nc"


@pytest.fixture(scope="module")
def second(work, fitted):
    """A second model on the same data, in-process through ``main``, with ``--strict``.

    2 x 100 draws cannot pass the convergence checks (ESS < 400): the fit exits 3 with one
    line saying why, and its results file is written all the same.
    """
    import contextlib
    import io

    out, err = work / "combined.nc", io.StringIO()
    with contextlib.redirect_stderr(err):
        rc = main(
            [
                "fit",
                "--model-file",
                str(work / "combined.py"),
                "--option",
                "prop_sd=0.3",
                "--data",
                str(work / "theo4.csv"),
                "-o",
                str(out),
                "--seed",
                "2",
                "--quiet",
                "--strict",
                *TINY,
            ]
        )
    return rc, err.getvalue(), out


# ---------------------------------------------------------------------------- each command
def test_fit_writes_results_and_prints_the_report(fitted):
    proc, out = fitted
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert out.exists() and "CL_pop" in proc.stdout and "Convergence" in proc.stdout
    assert f"wrote {out}" in proc.stderr
    import nlme_bayes as nb

    attrs = nb.load(out).results.attrs
    assert attrs["random_seed"] == 1 and attrs["sampler"] == "pymc" and attrs["draws"] == 100
    assert len(attrs["data_sha256"]) == 64 and attrs["host"]


def test_summary(fitted, tmp_path):
    proc = run("summary", fitted[1], "--ci", "0.9", "--csv", tmp_path / "s.csv")
    assert proc.returncode == 0, proc.stderr
    assert "CL_pop" in proc.stdout and "ci5%" in proc.stdout and "rhat" in proc.stdout
    assert (tmp_path / "s.csv").read_text().startswith("parameter,")


def test_diagnose_and_strict_exit_code(fitted):
    proc = run("diagnose", fitted[1])
    assert proc.returncode == 0 and "Convergence:" in proc.stdout
    strict = run("diagnose", fitted[1], "--strict")  # 2 x 100 draws: ESS far below 400
    assert strict.returncode == 3
    assert "convergence problems in" in one_line_error(strict, "diagnose")


def test_compare(fitted, second):
    proc = run("compare", fitted[1], second[2], "--names", "additive,combined")
    assert proc.returncode == 0, proc.stderr
    assert "additive" in proc.stdout and "combined" in proc.stdout and "elpd" in proc.stdout


def test_simulate_long_table(fitted, tmp_path):
    import pandas as pd

    proc = run("simulate", fitted[1], "-o", tmp_path / "sims.csv", "--n", "5", "--seed", "3")
    assert proc.returncode == 0, proc.stderr
    sims = pd.read_csv(tmp_path / "sims.csv")
    n_obs = 44  # 4 subjects x 11 observations
    assert len(sims) == 5 * n_obs and sorted(sims["replicate"].unique()) == [1, 2, 3, 4, 5]
    assert list(sims.columns) == [
        "replicate",
        "ID",
        "TIME",
        "DVID",
        "DV",
        "DV_sim",
        "IPRED_sim",
        "PRED",
    ]


def test_vpc_writes_png(fitted, tmp_path):
    proc = run("vpc", fitted[1], "-o", tmp_path / "vpc.png", "--n-draws", "50")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "vpc.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_writes_html(fitted, tmp_path):
    proc = run("report", fitted[1], "-o", tmp_path / "r.html")
    assert proc.returncode == 0, proc.stderr
    assert "<html" in (tmp_path / "r.html").read_text()[:500].lower() and "CL_pop" in proc.stdout


def test_help_of_every_command_has_examples(capsys):
    proc = run("--help")
    assert proc.returncode == 0 and "exit codes" in proc.stdout
    commands = build_parser()._subparsers._group_actions[0].choices  # noqa: SLF001
    for name in (
        "fit",
        "summary",
        "diagnose",
        "compare",
        "simulate",
        "vpc",
        "report",
        "batch",
        "templates",
    ):
        assert name in commands
        with pytest.raises(SystemExit) as exc:
            main([name, "--help"])
        assert exc.value.code == 0
        out = capsys.readouterr().out
        assert "examples:" in out and f"nlme-bayes {name}" in out, name


# ---------------------------------------------------------------------------- bad input
def test_bad_inputs_through_the_entry_point(work):
    """Missing file, bad column, usage error: exit 2 with one line naming the problem."""
    missing = run("summary", work / "nope.nc")
    assert missing.returncode == 2
    assert "results file" in one_line_error(missing, "summary") and "nope.nc" in missing.stderr

    bad = run(
        "fit",
        "--example",
        "theophylline",
        "--data",
        work / "bad_time.csv",
        "-o",
        work / "x.nc",
        *TINY,
    )
    assert bad.returncode == 2
    line = one_line_error(bad, "fit")
    assert "invalid data: TIME" in line and "'abc'" in line and "row 4" in line
    assert not (work / "x.nc").exists()

    usage = run("fit", "--example", "theophylline", "--dataset", "theophylline")
    assert usage.returncode == 2
    assert "required: -o/--output" in one_line_error(usage, "fit")
    assert len(usage.stderr.strip().splitlines()) == 1


def test_unknown_template_through_the_entry_point(work):
    pytest.importorskip("nlme_bayes.templates")
    listing = run("templates")
    assert listing.returncode == 0 and "one_cmt_oral" in listing.stdout.split()
    proc = run(
        "fit", "--template", "three_cpt_nonsense", "--dataset", "theophylline", "-o", work / "x.nc"
    )
    assert proc.returncode == 2
    line = one_line_error(proc, "fit")
    assert "unknown model template 'three_cpt_nonsense'; available:" in line


def test_fit_strict_fails_on_convergence_but_keeps_results(second):
    rc, err, out = second
    assert rc == 3 and out.exists()
    lines = err.strip().splitlines()
    assert lines[-1].startswith("nlme-bayes fit: error: convergence problems in ")


@pytest.mark.parametrize(
    "argv, code, message",
    [
        (["summary", "{work}/theo4.csv"], 2, "is not an nlme_bayes results file"),
        (["summary", "{fit}", "--ci", "1.5"], 2, "--ci must be between 0 and 1"),
        (
            ["fit", "--example", "warfarin", "--dataset", "theophylline", "-o", "{work}/x.nc"],
            2,
            "unknown example model 'warfarin'; available: pheno, theophylline",
        ),
        (
            ["fit", "--example", "theophylline", "--dataset", "nope", "-o", "{work}/x.nc"],
            2,
            "unknown dataset 'nope'; available: theophylline",
        ),
        (
            ["fit", "--model-file", "{work}/nope.py", "--dataset", "theophylline", "-o", "x.nc"],
            2,
            "model file '{work}/nope.py' does not exist",
        ),
        (
            ["fit", "--model-file", "{work}/theo4.csv", "--dataset", "theophylline", "-o", "x.nc"],
            2,
            "expected a Python file",
        ),
        (
            [
                "fit",
                "--model-file",
                "{work}/combined.py",
                "--option",
                "nonsense",
                "--dataset",
                "theophylline",
                "-o",
                "x.nc",
            ],
            2,
            "--option 'nonsense': expected KEY=VALUE",
        ),
        (
            [
                "fit",
                "--model-file",
                "{work}/combined.py",
                "--option",
                "bogus=1",
                "--dataset",
                "theophylline",
                "-o",
                "x.nc",
            ],
            2,
            "does not take these options",
        ),
        (
            [
                "fit",
                "--example",
                "theophylline",
                "--data",
                "{work}/theo4.csv",
                "--column-map",
                "SUBJ",
                "-o",
                "x.nc",
            ],
            2,
            "--column-map 'SUBJ': expected YOURS=STANDARD",
        ),
        (
            [
                "fit",
                "--example",
                "theophylline",
                "--dataset",
                "theophylline",
                "-o",
                "{work}/no_dir/x.nc",
            ],
            2,
            "folder '{work}/no_dir' does not exist",
        ),
        (
            ["fit", "--example", "pheno", "--dataset", "theophylline", "-o", "{work}/x.nc"],
            2,
            "covariate(s) APGAR_LT5 not in the data",
        ),
        (
            [
                "fit",
                "--example",
                "theophylline",
                "--dataset",
                "theophylline",
                "--draws",
                "0",
                "-o",
                "{work}/x.nc",
            ],
            2,
            "draws must be a positive int",
        ),
        (["compare", "{fit}"], 2, "compare needs at least two results files"),
        (["compare", "{fit}", "{fit}"], 2, "labels repeat"),
        (["compare", "{fit}", "{fit}", "--names", "a"], 2, "--names gives 1 labels for 2"),
        (["simulate", "{fit}", "-o", "{work}/s.csv", "--n", "0"], 2, "--n must be a positive"),
        (["vpc", "{work}/nope.nc", "-o", "{work}/v.png"], 2, "does not exist"),
        (["report", "{fit}", "-o", "{work}/missing/r.html"], 2, "does not exist"),
        (["batch", "{work}/nope.toml"], 2, "plan file '{work}/nope.toml' does not exist"),
        (["batch", "{work}/combined.py"], 2, "is not valid TOML"),
        (["batch", "{work}/nope.toml", "--local", "0"], 2, "--local needs a positive number"),
    ],
)
def test_bad_input_matrix(work, fitted, capsys, argv, code, message):
    argv = [a.format(work=work, fit=fitted[1]) for a in argv]
    message = message.format(work=work)
    assert main(argv) == code
    err = capsys.readouterr().err
    first = err.splitlines()[0]
    assert first.startswith(f"nlme-bayes {argv[0]}: error: ") and message in first, err


def test_model_json_round_trip(work, fitted, capsys):
    """A results file's model specification, saved as JSON, is a model for the next fit."""
    import nlme_bayes as nb

    spec = nb.load(fitted[1]).results.attrs["nlme_bayes_model"]
    (work / "model.json").write_text(spec)
    from nlme_bayes.batch.inputs import ModelSource, load_model

    model = load_model(ModelSource("json", str(work / "model.json")))
    assert json.dumps(model.to_dict(), sort_keys=True) == json.dumps(
        json.loads(spec), sort_keys=True
    )
    (work / "broken.json").write_text("{not json")
    assert (
        main(
            [
                "fit",
                "--model-json",
                str(work / "broken.json"),
                "--dataset",
                "theophylline",
                "-o",
                str(work / "x.nc"),
            ]
        )
        == 2
    )
    assert "is not valid JSON" in capsys.readouterr().err


def test_simulate_nonmem_files_feed_a_batch_plan(fitted, tmp_path):
    """--format nonmem: one data file per replicate, the original records with DV replaced."""
    import nlme_bayes as nb

    assert (
        main(
            [
                "simulate",
                str(fitted[1]),
                "--format",
                "nonmem",
                "-o",
                str(tmp_path / "s"),
                "--n",
                "3",
                "--seed",
                "5",
            ]
        )
        == 0
    )
    files = sorted(p.name for p in (tmp_path / "s").glob("*.csv"))
    assert files == ["sim_1.csv", "sim_2.csv", "sim_3.csv"]
    original = nb.load(fitted[1]).data
    sim = nb.read_nonmem(tmp_path / "s" / "sim_2.csv")
    assert sim.n_subjects == original.n_subjects == 4
    obs_o, obs_s = original.observations(), sim.observations()
    assert (obs_o["TIME"].to_numpy() == obs_s["TIME"].to_numpy()).all()
    assert not (obs_o["DV"].to_numpy() == obs_s["DV"].to_numpy()).all()
    doses = original.records["EVID"] == 1
    assert (
        original.records.loc[doses, "AMT"].to_numpy()
        == sim.records.loc[doses.to_numpy(), "AMT"].to_numpy()
    ).all()


def test_extra_commands_register_themselves(monkeypatch, tmp_path, capsys):
    """A module listed in EXTRA_COMMANDS adds its sub-command; a missing one is skipped."""
    import nlme_bayes.cli as cli

    (tmp_path / "nlme_extra_cmd.py").write_text(
        "def add_parser(sub):\n"
        "    p = sub.add_parser('hello', help='say hello')\n"
        "    p.add_argument('--name', default='world')\n"
        "def run(args):\n"
        "    print('hello', args.name)\n"
        "    return 0\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(cli, "EXTRA_COMMANDS", ("nlme_extra_cmd", "nlme_no_such_module_x"))
    assert cli.main(["hello", "--name", "pk"]) == 0
    assert capsys.readouterr().out.strip() == "hello pk"
