"""``nlme-bayes forecast``: run() in-process, and through a subprocess (exit codes, files)."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

import pandas as pd
import pytest
from pheno_fits import population_fit

from nlme_bayes.forecast_cli import add_parser, run
from nlme_bayes.regimen import Regimen, patient_records

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("forecast_cli")
    results = d / "pheno.nc"
    population_fit().save(results)
    rec = patient_records(
        [Regimen(20.0), Regimen(2.5, interval=12.0, n_doses=8, start=12.0)],
        observations={2.0: 17.0, 95.5: 24.0},
        covariates={"WT": 1.2, "APGAR_LT5": 0},
        id=101,
    )
    patient = d / "patient.csv"
    rec.to_csv(patient, index=False)
    no_cov = d / "no_cov.csv"
    rec.drop(columns="WT").to_csv(no_cov, index=False)
    return {"results": str(results), "patient": str(patient), "no_cov": str(no_cov), "dir": d}


def _args(*argv):
    parser = argparse.ArgumentParser(prog="nlme-bayes")
    add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["forecast", *argv])


def test_run_writes_the_forecast_and_the_recommendation(files, capsys):
    out = files["dir"] / "out"
    code = run(
        _args(
            files["results"],
            files["patient"],
            "--draws",
            "400",
            "--target",
            "trough",
            "15",
            "25",
            "--amounts",
            "1",
            "2",
            "3",
            "--intervals",
            "12",
            "24",
            "--outdir",
            str(out),
            "--plot",
        )  # fmt: skip
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "Dose recommendation for 15 <= trough <= 25" in printed and "eta_CL" in printed
    for name in ("forecast_parameters.csv", "forecast_diagnostics.csv", "forecast_prediction.csv",
                 "dose_candidates.csv", "dose_recommendation.csv", "forecast.json",
                 "forecast.png"):  # fmt: skip
        assert (out / name).is_file(), name
    cand = pd.read_csv(out / "dose_candidates.csv")
    best = pd.read_csv(out / "dose_recommendation.csv")
    assert len(cand) == 6 and best["probability"].iloc[0] == cand["probability"].max()
    pred = pd.read_csv(out / "forecast_prediction.csv")
    assert pred["TIME"].max() > 200  # the curve runs through the recommended regimen


def test_run_map_with_a_given_regimen(files, capsys):
    assert run(_args(files["results"], files["patient"], "--method", "map", "--draws", "200",
                     "--regimen", "3", "12", "4")) == 0  # fmt: skip
    assert "<Forecast (map)" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, match",
    [
        (["missing.nc", "{patient}"], "results file 'missing.nc' does not exist"),
        (["{results}", "nope.csv"], "patient file 'nope.csv' does not exist"),
        (["{patient}", "{patient}"], "is not an nlme_bayes results file"),
        (["{results}", "{no_cov}"], "needs covariate\\(s\\) WT"),
        (
            [
                "{results}",
                "{patient}",
                "--target",
                "peak",
                "1",
                "2",
                "--amounts",
                "1",
                "--intervals",
                "12",
            ],
            "metric='peak' is not valid",
        ),  # fmt: skip
        (
            [
                "{results}",
                "{patient}",
                "--target",
                "trough",
                "x",
                "2",
                "--amounts",
                "1",
                "--intervals",
                "12",
            ],
            "bound 'x' is not a number",
        ),  # fmt: skip
        (["{results}", "{patient}", "--target", "trough", "1", "2"], "needs --amounts and"),
        (["{results}", "{patient}", "--amounts", "1"], "--amounts needs --target"),
        (["{results}", "{patient}", "--plot"], "--plot needs --outdir"),
        (["{results}", "{patient}", "--column-map", "SUBJ"], "expected YOURS=STANDARD"),
        (["{results}", "{patient}", "--evaluate", "middle"], "expected first, last or an index"),
        (["{results}", "{patient}", "--regimen", "3", "12", "2.5"], "N_DOSES must be a positive"),
    ],
)
def test_bad_input_exits_2_with_one_line(files, capsys, argv, match):
    import re

    argv = [a.format(**files) for a in argv]
    assert run(_args(*argv, "--draws", "50")) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("nlme-bayes forecast: error: ") and re.search(match, err), err
    assert len(err.splitlines()) == 1


def test_forecast_subcommand_through_a_subprocess(files):
    """``nlme-bayes forecast`` as a user runs it: the package CLI when present, else the module."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")])),
    }
    has_cli = os.path.exists(os.path.join(ROOT, "nlme_bayes", "cli.py"))
    head = [sys.executable, "-m", "nlme_bayes.cli", "forecast"] if has_cli else [
        sys.executable, "-m", "nlme_bayes.forecast_cli"]  # fmt: skip
    ok = subprocess.run(
        [*head, files["results"], files["patient"], "--method", "map", "--draws", "100"],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    assert "<Forecast (map)" in ok.stdout
    bad = subprocess.run([*head, files["results"], "nope.csv"], capture_output=True, text=True,
                         env=env, timeout=300)  # fmt: skip
    assert bad.returncode == 2
    assert (
        bad.stderr.strip() == "nlme-bayes forecast: error: patient file 'nope.csv' does not exist."
    )
