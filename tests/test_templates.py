"""The model_templates/ library: files, loading, customisation, simulation, gallery."""

from __future__ import annotations

import dataclasses
import importlib.util
import pathlib

import numpy as np
import pytest

import nlme_bayes as nb
from nlme_bayes import templates
from nlme_bayes.errors import SpecificationError

ROOT = pathlib.Path(__file__).resolve().parents[1]
EXPECTED = {
    f"{n}_cmt_{r}"
    for n in ("one", "two", "three")
    for r in ("iv_bolus", "infusion", "oral", "oral_lag")
} | {"logistic", "gompertz", "asymptotic", "emax", "sigmoid_emax"}
ODE = {"mm_oral", "mm_iv", "mixed_oral", "transit_oral", "tmdd_qss_iv", "turnover_oral", "sir"}


def test_library_has_one_file_per_template():
    assert EXPECTED | ODE <= set(templates.available())
    for name in templates.available():
        assert (ROOT / "model_templates" / f"{name}.toml").is_file()


@pytest.mark.parametrize("name", templates.available())
def test_each_template_documents_what_a_user_needs(name):
    t = templates.get(name)
    model = t.model()
    assert t.name == name and t.title and t.description and t.reference and t.equations
    assert t.data_columns[:3] == ("ID", "TIME", "DV")
    assert [p.name for p in t.parameters] == list(model.parameter_names)
    for info in t.parameters:
        assert info.units and info.description and len(info.justification) > 40
    assert t.notes["error"] and t.notes["omega"]
    assert set(t.spec["example"]["omega"]) == set(model.iiv_names)
    assert isinstance(model, nb.Model) and model.name == name


def test_load_customises_without_editing_the_file():
    base = templates.load("two_cmt_oral")
    assert base.parameter("CL").effective_prior == nb.Prior("LogNormal", mu=np.log(5.0),
                                                            sigma=1.0)  # fmt: skip
    model = templates.load(
        "two_cmt_oral",
        typical={"V": 40.0},
        priors={"CL": nb.Prior("LogNormal", mu=1.0, sigma=0.5)},
        covariates={"CL": nb.Power("WT", reference=70, exponent=0.75),
                    "V": (nb.Power("WT", reference=70, exponent=1.0),)},
        iiv={"ka": None, "Q": "lognormal"},
        error=nb.Combined(),
        omega=nb.Omega(blocks="block"),
        name="my_drug",
    )  # fmt: skip
    assert model.parameter("V").effective_prior == nb.Prior("LogNormal", mu=np.log(40.0),
                                                           sigma=1.0)  # fmt: skip
    assert model.parameter("CL").prior == nb.Prior("LogNormal", mu=1.0, sigma=0.5)
    assert model.covariate_names == ("WT",)
    assert model.iiv_names == ("CL", "V", "Q")
    # the added random effect follows the file's centring policy, so it can join the block
    assert {model.parameter(n).centered for n in model.iiv_names} == {"auto"}
    assert isinstance(model.error, nb.Combined) and model.omega.blocks == "block"
    assert model.name == "my_drug"
    assert templates.load("two_cmt_oral") == base  # the file is untouched


def test_typical_keeps_an_explicit_prior_of_the_file():
    gamma = templates.load("sigmoid_emax", typical={"gamma": 3.0}).parameter("gamma")
    assert gamma.typical == 3.0
    assert gamma.prior == nb.Prior("LogNormal", mu=0.405, sigma=0.5)


def test_structure_options_that_keep_the_parameters():
    assert templates.load("emax", x="CONC").structure.x == "CONC"
    assert templates.load("one_cmt_oral", bioavailability=False).parameter_names == (
        "CL", "V", "ka")  # fmt: skip


def test_update_parameter_and_add_covariate_work_on_any_model():
    model = templates.load("one_cmt_oral", omega=nb.Omega(blocks=(("CL", "ka"), ("V",))))
    model = templates.update_parameter(model, "ka", iiv=None)
    assert model.iiv_names == ("CL", "V") and model.omega.blocks == (("CL",), ("V",))
    model = templates.add_covariate(model, "CL", nb.Categorical("SEX", reference="M"))
    model = templates.add_covariate(model, "CL", nb.Exponential("AGE", reference=40))
    assert [type(c).__name__ for c in model.parameter("CL").covariates] == [
        "Categorical", "Exponential"]  # fmt: skip
    assert dataclasses.replace(model.parameter("V"), typical=9.0).typical == 9.0


def test_load_errors_list_the_valid_choices():
    with pytest.raises(SpecificationError, match=r"unknown model template 'nope'; available: "
                                                 r"asymptotic, effect_cmt_oral, emax"):  # fmt: skip
        templates.load("nope")
    with pytest.raises(SpecificationError, match=r"unknown option\(s\) wrong\. Options: "
                                                 r"typical, priors"):  # fmt: skip
        templates.load("one_cmt_oral", wrong=1)
    with pytest.raises(SpecificationError, match="changes the parameters from CL, V, ka to CL, "
                                                 "V, ka, tlag; load the template"):  # fmt: skip
        templates.load("one_cmt_oral", lag=True)
    with pytest.raises(SpecificationError, match=r"priors= names unknown parameter\(s\) Vmax"):
        templates.load("one_cmt_oral", priors={"Vmax": nb.Prior("Normal", mu=0, sigma=1)})
    with pytest.raises(SpecificationError, match="iiv= must be a dict keyed by parameter name"):
        templates.load("one_cmt_oral", iiv=["ka"])
    with pytest.raises(SpecificationError, match="update_parameter.*a Parameter has typical"):
        templates.update_parameter(templates.load("one_cmt_oral"), "CL", cv=30)
    with pytest.raises(SpecificationError, match="is not a covariate effect"):
        templates.add_covariate(templates.load("one_cmt_oral"), "CL", "WT")
    with pytest.raises(SpecificationError, match="no parameter 'Vmax'"):
        templates.update_parameter(templates.load("one_cmt_oral"), "Vmax", iiv=None)


def _write(tmp_path, text, name="mine"):
    path = tmp_path / f"{name}.toml"
    path.write_text(text, encoding="utf-8")
    return path


def _valid_text():
    return (ROOT / "model_templates" / "logistic.toml").read_text(encoding="utf-8")


def test_a_user_template_file_loads_by_path_and_from_the_search_path(tmp_path, monkeypatch):
    path = _write(tmp_path, _valid_text().replace('name = "logistic"', 'name = "mine"'))
    assert templates.load(path).name == "mine"
    monkeypatch.setenv("NLME_TEMPLATE_PATH", str(tmp_path))
    assert "mine" in templates.available()
    assert templates.get("mine").path == path


def test_invalid_template_files_are_reported_with_the_file_name(tmp_path):
    text = _valid_text()
    cases = [
        ("name = [", r"template bad\.toml: not valid TOML"),
        (
            "foo = 1\n" + text.replace('title = "Three-parameter logistic growth"\n', ""),
            r"missing title; unknown key\(s\) foo\. A template has",
        ),
        (
            text.replace('type = "Algebraic"', 'type = "Spline"'),
            r"\[structure\] type 'Spline' is not known; choose one of Algebraic, ODE",
        ),
        (text.replace('units = "mm (units of DV)"\n', ""), r"parameter 'Asym' lacks units"),
        (
            text.replace('type = "Additive"', 'type = "Poisson"'),
            r"\[error\] type 'Poisson'; choose one of Additive",
        ),
        (
            text.replace('sd_prior = { dist = "HalfNormal", sigma = 0.5 }', "sd_prior = 0.5"),
            r"\[omega\]: a prior is a table such as",
        ),
    ]
    for content, message in cases:
        with pytest.raises(SpecificationError, match=message):
            templates.Template.from_file(_write(tmp_path, content, "bad"))


def test_example_data_simulates_the_design_with_the_file_truth():
    data = templates.get("one_cmt_infusion").example_data(n_subjects=3, random_seed=2)
    rec = data.records
    assert data.n_subjects == 3 and (rec.loc[rec["EVID"] == 1, "RATE"] == 100.0).all()
    obs = data.observations()
    assert (obs["DV"] > 0).all()
    again = templates.get("one_cmt_infusion").example_data(n_subjects=3, random_seed=2)
    np.testing.assert_array_equal(again.observations()["DV"], obs["DV"])


def test_example_data_of_a_dose_response_template_keeps_its_dose_column():
    data = templates.get("emax").example_data(n_subjects=2, random_seed=3)
    obs = data.observations()
    assert obs["DOSE"].tolist() == [0, 10, 30, 90, 300] * 2
    assert obs.groupby("DOSE")["DV"].mean().is_monotonic_increasing


def test_a_template_without_an_example_design_says_so(tmp_path):
    text = _valid_text()
    path = _write(tmp_path, text[: text.index("# Example design")], "noexample")
    with pytest.raises(SpecificationError, match=r"has no \[example\] design"):
        templates.Template.from_file(path).example_data()


def test_the_committed_gallery_is_generated_from_the_current_files(tmp_path):
    spec = importlib.util.spec_from_file_location(
        "make_gallery", ROOT / "docs" / "_scripts" / "make_gallery.py")  # fmt: skip
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    written = module.write_gallery(tmp_path)
    assert len(written) == len(templates.available()) + 1
    committed = ROOT / "docs" / "gallery"
    stale = [
        p.name
        for p in written
        if (committed / p.name).read_text(encoding="utf-8") != p.read_text(encoding="utf-8")
    ]
    assert not stale, f"run python docs/_scripts/make_gallery.py (stale: {stale})"
    page = (tmp_path / "two_cmt_oral.md").read_text(encoding="utf-8")
    for section in (
        "## Equations",
        "## Parameters and default priors",
        "## Data",
        "## Use",
        "## References",
        "| `V2` | L |",
    ):
        assert section in page


def test_ode_templates_take_their_structure_options():
    transit = templates.load("transit_oral", n_transit=5)
    assert transit.parameter_names == ("MTT", "CL", "V")
    assert len(transit.structure.states) == 7  # depot, 5 transit compartments, central
    with pytest.raises(SpecificationError, match="changes the parameters from Vmax, Km, V, ka"):
        templates.load("mm_oral", lag=True)
    with pytest.raises(SpecificationError, match=r"unknown option\(s\) route"):
        templates.load("mm_oral", route="iv")


def test_a_template_gives_one_error_model_per_dvid():
    model = templates.load("turnover_oral")
    assert isinstance(model.error[1], nb.Proportional) and isinstance(model.error[2], nb.Additive)
    assert model.parameter("Imax").iiv == "logit"
