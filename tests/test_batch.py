"""Batch plans: parsing and path safety, the manifest, and runs on a Dask LocalCluster.

The Dask tests share one LocalCluster with 2 single-threaded worker processes. Their fits are
tiny (6 Theophylline subjects, 2 chains x 100 draws): they test bookkeeping and determinism,
not statistics. The central one kills a worker in the middle of a fit and checks that the
plan ends with all 6 results, each bitwise identical to an uninterrupted run, none twice.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from nlme_bayes.batch import Manifest, PlanError, load_plan, parse_plan, run_plan
from nlme_bayes.batch.plan import inside, safe_path

REPO = Path(__file__).resolve().parents[1]
PLANS = REPO / "examples" / "plans"


# ---------------------------------------------------------------------------- helpers
def _plan_dict(**plan):
    return {
        "plan": {"name": "t", "output": "out", **plan},
        "models": {"theo": {"example": "theophylline"}},
        "datasets": {"a": {"path": "a.csv"}, "b": {"path": "b.csv"}},
        "sampler": {"draws": 100, "tune": 100, "chains": 2, "sampler": "nutpie"},
        "fits": [{"models": ["theo"], "datasets": ["a", "b"], "seeds": [1, 2, 3]}],
    }


def _write_toml(path: Path, raw: dict) -> Path:
    """A tiny TOML writer for the plans of these tests (tables of scalars/lists/inline dicts)."""

    def value(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, str):
            return json.dumps(v)
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        if isinstance(v, dict):
            return "{ " + ", ".join(f"{k} = {value(x)}" for k, x in v.items()) + " }"
        raise TypeError(v)

    lines = []
    for section, body in raw.items():
        if section == "fits":
            for block in body:
                lines.append("[[fits]]")
                lines += [f"{k} = {value(v)}" for k, v in block.items()]
            continue
        if section in ("models", "datasets", "settings"):
            for name, table in body.items():
                lines.append(f"[{section}.{name}]")
                lines += [f"{k} = {value(v)}" for k, v in table.items()]
            continue
        lines.append(f"[{section}]")
        lines += [f"{k} = {value(v)}" for k, v in body.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def plan_dir(tmp_path_factory):
    """A plan folder with two small datasets: 6 Theophylline subjects, and those with DV x 1.1."""
    import nlme_bayes as nb

    d = tmp_path_factory.mktemp("plan")
    rec = nb.datasets.theophylline().records
    rec = rec[rec["ID"].isin([1, 2, 3, 4, 5, 6])].drop(columns=["ROW"])
    rec.to_csv(d / "a.csv", index=False)
    rec.assign(DV=rec["DV"] * 1.1).to_csv(d / "b.csv", index=False)
    _write_toml(d / "plan.toml", _plan_dict())
    return d


# ---------------------------------------------------------------------------- plans
def test_plan_expands_models_datasets_settings_seeds(plan_dir):
    raw = _plan_dict()
    raw["settings"] = {"long": {"draws": 500}}
    raw["fits"] = [
        {"models": ["theo"], "datasets": ["a"], "settings": ["default", "long"], "seeds": [1, 2]},
        {"models": ["theo"], "datasets": ["b"], "seeds": {"first": 5, "count": 2}},
    ]
    plan = parse_plan(raw, root=plan_dir)
    assert [t.id for t in plan.tasks] == [
        "theo.a.default.s1",
        "theo.a.default.s2",
        "theo.a.long.s1",
        "theo.a.long.s2",
        "theo.b.default.s5",
        "theo.b.default.s6",
    ]
    assert plan.tasks[2].fit_options["draws"] == 500 and plan.tasks[2].fit_options["tune"] == 100
    assert plan.output == plan_dir / "out"
    assert plan.results_path(plan.tasks[0]) == plan_dir / "out" / "theo.a.default.s1.nc"


def test_plan_glob_datasets(plan_dir):
    raw = _plan_dict()
    raw["datasets"] = {"sim": {"glob": "*.csv"}}
    raw["fits"] = [{"models": ["theo"], "datasets": ["sim"], "seeds": [1]}]
    plan = parse_plan(raw, root=plan_dir)
    assert [t.dataset for t in plan.tasks] == ["sim-a", "sim-b"]


@pytest.mark.parametrize(
    "change, match",
    [
        ({"extra": {}}, r"unknown key\(s\) extra; valid keys: cluster, datasets, fits"),
        ({"plan": {"outdir": "x"}}, r"\[plan\]: unknown key\(s\) outdir"),
        ({"models": {"bad name": {"example": "theophylline"}}}, r"name 'bad name' is not valid"),
        ({"models": {"m": {"example": "x", "file": "y.py"}}}, r"exactly one of template, file"),
        ({"models": {}}, r"defines no \[models.NAME\]"),
        ({"datasets": {"a": {"path": 3}}}, r"path must be a string"),
        ({"datasets": {"s": {"glob": "nothing*.csv"}}}, r"matches no file"),
        ({"sampler": {"draws": "many"}}, r"\[sampler\]: draws must be int, got 'many'"),
        ({"sampler": {"drawz": 10}}, r"unknown key\(s\) drawz; valid keys: draws"),
        ({"settings": {"default": {"draws": 5}}}, r"'default' is the \[sampler\] table"),
        ({"fits": [{"models": ["nope"], "datasets": ["a"]}]}, r"names 'nope', which is not"),
        ({"fits": [{"models": ["theo"], "datasets": ["a"], "seeds": [1, 1]}]}, r"repeat a seed"),
        ({"fits": [{"models": ["theo"], "datasets": ["a"], "seeds": [-1]}]}, r"integers >= 0"),
        ({"fits": []}, r"no \[\[fits\]\] block"),
        ({"cluster": {"kind": "kubernetes"}}, r"kind 'kubernetes' is not valid; choose one of"),
        ({"plan": {"max_attempts": 0}}, r"max_attempts must be an integer >= 1"),
        ({"sampler": {"sampler": "pymc", "cores": 2}}, r"a Dask worker process cannot start"),
    ],
)
def test_plan_errors_name_table_and_key(plan_dir, change, match):
    raw = _plan_dict()
    for key, value in change.items():
        if key == "plan":
            raw["plan"].update(value)
        else:
            raw[key] = value
    with pytest.raises(PlanError, match=match):
        parse_plan(raw, root=plan_dir)


def test_plan_listing_a_fit_twice_is_an_error(plan_dir):
    raw = _plan_dict()
    raw["fits"] = raw["fits"] * 2
    with pytest.raises(PlanError, match=r"fit theo.a.default.s1 is listed twice"):
        parse_plan(raw, root=plan_dir)


@pytest.mark.parametrize(
    "section, value",
    [
        ("output", "../elsewhere"),
        ("output", "/tmp/nlme_batch_outside"),
        ("model_file", "../evil.py"),
        ("data_path", "../../etc/passwd"),
        ("data_glob", "/etc/*.conf"),
    ],
)
def test_plan_paths_cannot_escape_their_folder(plan_dir, section, value):
    raw = _plan_dict()
    if section == "output":
        raw["plan"]["output"] = value
    elif section == "model_file":
        raw["models"]["theo"] = {"file": value}
    elif section == "data_path":
        raw["datasets"]["a"] = {"path": value}
    else:
        raw["datasets"]["a"] = {"glob": value}
    with pytest.raises(PlanError, match=r"outside .*allow_outside = true"):
        parse_plan(raw, root=plan_dir)
    raw["plan"]["allow_outside"] = (
        True  # an explicit opt-in lifts the rule (glob still needs files)
    )
    if section != "data_glob":
        parse_plan(raw, root=plan_dir)


def test_plan_symlink_pointing_out_is_refused(plan_dir, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    link = plan_dir / "escape"
    if not link.exists():
        link.symlink_to(outside, target_is_directory=True)
    raw = _plan_dict()
    raw["plan"]["output"] = "escape/results"
    with pytest.raises(PlanError, match=r"resolves to .*outside"):
        parse_plan(raw, root=plan_dir)


def test_task_names_cannot_form_paths():
    assert not inside("/p/out/../x.nc", "/p/out") and inside("/p/out/a.nc", "/p/out")
    with pytest.raises(PlanError, match="outside"):
        safe_path("/p/out", "../../x.nc", what="results file")
    raw = _plan_dict()
    raw["models"] = {"../x": {"example": "theophylline"}}
    with pytest.raises(PlanError, match=r"name '../x' is not valid"):
        parse_plan(raw, root=".")


def test_load_plan_file_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="plan file .* does not exist"):
        load_plan(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[plan\nname = 1")
    with pytest.raises(PlanError, match="is not valid TOML"):
        load_plan(bad)


def test_example_plans_are_the_same_plan_on_two_clusters():
    local = load_plan(PLANS / "theophylline_local.toml")
    slurm = load_plan(PLANS / "theophylline_slurm.toml")
    assert (
        [t.id for t in local.tasks]
        == [t.id for t in slurm.tasks]
        == [
            "one_cmt.theo.default.s1",
            "one_cmt.theo.default.s2",
        ]
    )
    assert local.tasks == slurm.tasks and local.models == slurm.models
    assert local.cluster["kind"] == "local" and slurm.cluster["kind"] == "slurm"


def test_slurm_example_plan_makes_a_valid_job_script():
    """The documented SLURM plan's [cluster] table is accepted by dask-jobqueue (not submitted)."""
    pytest.importorskip("dask_jobqueue")
    from dask_jobqueue import SLURMCluster

    spec = dict(load_plan(PLANS / "theophylline_slurm.toml").cluster)
    for key in ("kind", "jobs", "minimum_jobs", "maximum_jobs"):
        spec.pop(key, None)
    with SLURMCluster(**spec, scheduler_options={"dashboard_address": None}) as cluster:
        script = cluster.job_script()
    assert "#SBATCH -p short" in script and "#SBATCH -A pk-modelling" in script
    assert "#SBATCH -t 01:00:00" in script and "--qos=normal" in script


def test_one_run_per_output_folder(plan_dir, tmp_path):
    import fcntl

    plan = _plan(plan_dir, "locked")
    plan.output.mkdir()
    with open(plan.output / ".lock", "a+") as fh:
        fh.write("pid 12345 on elsewhere\n")
        fh.flush()
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a run in progress
        with pytest.raises(PlanError, match=r"another run is using .*pid 12345 on elsewhere"):
            run_plan(plan, dry_run=True)
    assert len(run_plan(plan, dry_run=True).ran) == 6  # free again


# ---------------------------------------------------------------------------- manifest
def test_manifest_survives_a_torn_line(tmp_path):
    m = Manifest(tmp_path / "manifest.jsonl")
    m.append({"task": "a", "status": "done", "fingerprint": "f"})
    with open(m.path, "a") as fh:
        fh.write('{"task": "b", "sta')  # the client died mid-write
    m.append({"task": "c", "status": "failed", "fingerprint": "f", "error": {"type": "E"}})
    with pytest.warns(UserWarning, match="skipped 1 unreadable line"):
        recs = m.records()
    assert [r["task"] for r in recs] == ["a", "c"]


def test_manifest_history_counts_failures_per_fingerprint(tmp_path):
    m = Manifest(tmp_path / "manifest.jsonl")
    for fp in ("old", "new", "new"):
        m.append({"task": "t", "status": "failed", "fingerprint": fp, "error": {"message": fp}})
    m.append({"task": "t", "status": "done", "fingerprint": "older", "file": "t.nc"})
    h = m.history("t", "new")
    assert h["failures"] == 2 and h["done"] is None and h["other_fingerprint"]["file"] == "t.nc"


# ---------------------------------------------------------------------------- Dask runs
@pytest.fixture(scope="module")
def client():
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    )
    c = distributed.Client(cluster)
    yield c
    c.close()
    cluster.close()


def _plan(plan_dir, out, **overrides):
    return load_plan(plan_dir / "plan.toml", output=plan_dir / out, **overrides)


def _posterior(path):
    import nlme_bayes as nb

    post = nb.load(path).posterior
    return {k: post[k].values for k in post.data_vars}


def _done_lines(plan):
    return [r for r in Manifest(plan.manifest_path).records() if r["status"] == "done"]


@pytest.fixture(scope="module")
def reference_run(plan_dir, client):
    """The uninterrupted run: 6 fits (1 model x 2 datasets x 3 seeds)."""
    plan = _plan(plan_dir, "ref")
    summary = run_plan(plan, client=client)
    return plan, summary


def test_plan_runs_all_fits_with_manifest_and_table(reference_run):
    plan, summary = reference_run
    assert summary.ok and len(summary.ran) == 6 and not summary.skipped
    files = sorted(p.name for p in plan.output.glob("*.nc"))
    assert files == sorted(t.filename for t in plan.tasks)
    lines = _done_lines(plan)
    assert sorted(r["task"] for r in lines) == sorted(t.id for t in plan.tasks)
    rec = lines[0]
    for key in (
        "fingerprint",
        "file_sha256",
        "inputs",
        "versions",
        "host",
        "seed",
        "timings",
        "diagnostics",
        "estimates",
        "wall_s",
        "started",
        "finished",
        "compile_cache",
    ):
        assert rec.get(key) is not None, key
    assert rec["inputs"]["data_sha256"] and rec["inputs"]["model"] == "example:theophylline"
    table = summary.table
    assert len(table) == 6 and set(table["status"]) == {"done"}
    assert {"CL_pop_mean", "CL_pop_sd", "max_rhat", "min_ess_bulk", "divergences"} <= set(table)
    assert (plan.output / "results.csv").exists()
    # provenance in every results file
    import nlme_bayes as nb

    attrs = nb.load(plan.results_path(plan.tasks[0])).results.attrs
    for key in (
        "data_sha256",
        "host",
        "random_seed",
        "sampler",
        "versions",
        "timings",
        "nlme_bayes_model",
        "batch_task",
        "batch_fingerprint",
        "max_treedepth",
    ):
        assert key in attrs, key
    # one compile per worker and model structure: the rest reused it
    caches = [r["compile_cache"] for r in lines]
    assert caches.count("miss") <= 2 and caches.count("hit") >= 4


def test_draws_do_not_depend_on_where_a_fit_runs(reference_run, plan_dir):
    """A task's draws on a cluster worker equal those of the same fit in this process."""
    import nlme_bayes as nb
    from nlme_bayes.compiled import CompileCache
    from nlme_bayes.examples import theophylline_model

    plan, _ = reference_run
    task = plan.tasks[-1]
    fit = theophylline_model().fit(
        nb.read_nonmem(plan_dir / "b.csv"),
        random_seed=task.seed,
        progressbar=False,
        check=False,
        reuse=CompileCache(),
        **task.fit_options,
    )
    ref = _posterior(plan.results_path(task))
    for name, values in ref.items():
        np.testing.assert_array_equal(fit.posterior[name].values, values, err_msg=name)


def test_rerun_skips_everything_done(reference_run, client):
    plan, _ = reference_run
    summary = run_plan(plan, client=client)
    assert summary.skipped == [t.id for t in plan.tasks] and not summary.ran
    assert len(_done_lines(plan)) == 6


def test_killed_worker_loses_only_its_fit(plan_dir, client, reference_run):
    """Kill a worker mid-fit; re-run the plan: all 6 results, identical draws, none twice."""
    ref_plan, _ = reference_run
    plan = _plan(plan_dir, "killed")
    result: dict = {}

    def go():
        try:
            result["summary"] = run_plan(plan, client=client)
        except BaseException as exc:  # pragma: no cover - reported below
            result["error"] = exc

    runner = threading.Thread(target=go)
    runner.start()
    pids = client.run(os.getpid)
    victim = None
    seen: dict = {}
    deadline = time.monotonic() + 600
    while victim is None and time.monotonic() < deadline and runner.is_alive():
        executing = client.run(lambda dask_worker: [ts.key for ts in dask_worker.state.executing])
        now = time.monotonic()
        for addr, keys in executing.items():
            for key in keys:
                started = seen.setdefault((addr, key), now)
                if now - started > 1.0:  # well inside the fit (build, compile or sampling)
                    victim = (addr, key)
        time.sleep(0.2)
    assert victim is not None, "no fit was seen running"
    still = client.run(
        lambda dask_worker: [ts.key for ts in dask_worker.state.executing], workers=[victim[0]]
    )
    assert victim[1] in still[victim[0]]  # still mid-fit (the kill follows within milliseconds)
    killed_pid = pids[victim[0]]
    os.kill(killed_pid, signal.SIGKILL)
    runner.join(timeout=900)
    assert not runner.is_alive() and "error" not in result, result.get("error")

    # re-run the plan: nothing left to do, nothing fitted twice
    again = run_plan(plan, client=client)
    assert not again.ran and len(again.skipped) == 6
    lines = _done_lines(plan)
    assert sorted(r["task"] for r in lines) == sorted(t.id for t in plan.tasks)  # none twice
    assert all(r["pid"] != killed_pid for r in lines)  # the killed fit was redone elsewhere
    assert not list(plan.output.glob("*.tmp-*"))
    killed_task = next(t for t in plan.tasks if t.id in victim[1])
    assert plan.results_path(killed_task).exists()
    # identical to the uninterrupted run with the same seeds
    for task in plan.tasks:
        ours, ref = _posterior(plan.results_path(task)), _posterior(ref_plan.results_path(task))
        assert ours.keys() == ref.keys()
        for name in ref:
            np.testing.assert_array_equal(ours[name], ref[name], err_msg=f"{task.id}: {name}")


def test_results_written_but_not_recorded_are_adopted(plan_dir, reference_run):
    """The client died after the workers wrote their files: the next run fits nothing."""
    ref_plan, _ = reference_run
    plan = _plan(plan_dir, "adopt")
    plan.output.mkdir()
    for task in plan.tasks:
        shutil.copy(ref_plan.results_path(task), plan.results_path(task))
    summary = run_plan(plan)  # no client needed: nothing is fitted
    assert sorted(summary.adopted) == sorted(t.id for t in plan.tasks) and not summary.ran
    assert all(r.get("adopted") for r in _done_lines(plan))


def test_changed_inputs_are_not_overwritten_silently(plan_dir, reference_run):
    ref_plan, _ = reference_run
    raw = _plan_dict()
    raw["sampler"]["draws"] = 150  # another fingerprint for every task
    _write_toml(plan_dir / "plan_changed.toml", raw)
    changed = load_plan(plan_dir / "plan_changed.toml", output=ref_plan.output)
    with pytest.raises(PlanError, match=r"6 fit\(s\) already have results .* --rerun-changed"):
        run_plan(changed)
    dry = run_plan(changed, rerun_changed=True, dry_run=True)
    assert len(dry.ran) == 6


def test_altered_results_file_is_reported(plan_dir, reference_run, tmp_path):
    ref_plan, _ = reference_run
    plan = _plan(plan_dir, "altered")
    shutil.copytree(ref_plan.output, plan.output)
    with open(plan.results_path(plan.tasks[0]), "ab") as fh:
        fh.write(b"tampered")
    with pytest.raises(PlanError, match=r"1 fit\(s\) .* file that changed"):
        run_plan(plan)


def test_failed_fits_are_kept_retried_and_bounded(plan_dir, client):
    """A fit that fails is recorded with its error, retried by the next run, then given up."""
    (plan_dir / "bad_model.py").write_text(
        "import nlme_bayes as nb\n"
        "from nlme_bayes.examples import theophylline_model\n"
        "m = theophylline_model()\n"
        "model = m.with_parameter(nb.Parameter('CL', 0.04,\n"
        "    covariates=(nb.Power('AGE', reference=40.0, exponent=0.5),)))\n"
    )
    raw = _plan_dict(max_attempts=2)
    raw["models"]["bad"] = {"file": "bad_model.py"}  # AGE is not in the data: fails on the worker
    raw["fits"] = [{"models": ["bad"], "datasets": ["a"], "seeds": [1]}]
    _write_toml(plan_dir / "plan_bad.toml", raw)
    plan = load_plan(plan_dir / "plan_bad.toml", output=plan_dir / "bad")
    first = run_plan(plan, client=client)
    assert list(first.failed) == ["bad.a.default.s1"]
    assert "SpecificationError" in first.failed["bad.a.default.s1"]
    assert "AGE" in first.failed["bad.a.default.s1"]
    run_plan(plan, client=client)  # attempt 2
    recs = Manifest(plan.manifest_path).records()
    assert [r["attempt"] for r in recs] == [1, 2] and all(r["error"]["traceback"] for r in recs)
    third = run_plan(plan)  # bounded: nothing is submitted any more
    assert "gave up after 2 attempts: SpecificationError" in third.failed["bad.a.default.s1"]
    assert len(Manifest(plan.manifest_path).records()) == 2
    assert third.table.loc[0, "status"] == "failed" and "AGE" in third.table.loc[0, "error"]
    # the command line says so with exit code 4
    from nlme_bayes.cli import main

    assert (
        main(
            [
                "batch",
                str(plan_dir / "plan_bad.toml"),
                "--output",
                str(plan.output),
                "--no-progress",
            ]
        )
        == 4
    )


def test_example_slurm_plan_runs_on_a_local_cluster(tmp_path):
    """The documented SLURM plan, run as it is on a LocalCluster (--local), via the CLI."""
    out = tmp_path / "theo"
    exe = Path(sys.executable).with_name("nlme-bayes")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "nlme_bayes.cli"]
    proc = subprocess.run(
        [
            *cmd,
            "batch",
            str(PLANS / "theophylline_slurm.toml"),
            "--local",
            "1",  # one worker: one compile (the 2-worker cluster is tested above)
            "--output",
            str(out),
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "MPLBACKEND": "Agg"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "2 fitted, 0 already done" in proc.stdout
    assert sorted(p.name for p in out.glob("*.nc")) == [
        "one_cmt.theo.default.s1.nc",
        "one_cmt.theo.default.s2.nc",
    ]
    import pandas as pd

    table = pd.read_csv(out / "results.csv")
    assert list(table["status"]) == ["done", "done"] and "CL_pop_mean" in table
