"""Covariates: references by rule (never silent), missing values, imputation on request,
and recovery of an estimated allometric exponent."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from _pk_simulation import design, predict, set_dv

import nlme_bayes as nb
from nlme_bayes.builder import build
from nlme_bayes.covariates import impute, prepare, resolve_references

IV = nb.OneCompartment(route="iv")


def _data(wt=(60.0, 80.0, 100.0), sex=("M", "F", "F")):
    frame = pd.DataFrame(
        {"ID": [1, 1, 2, 2, 3, 3], "TIME": [0, 2, 0, 2, 0, 2], "AMT": [10, 0, 10, 0, 10, 0],
         "DV": [".", 1.0, ".", 1.2, ".", 0.8],
         "WT": np.repeat(wt, 2), "SEX": np.repeat(sex, 2)}
    )  # fmt: skip
    return frame


def _model(*effects, **kw):
    return nb.Model(
        structure=IV,
        parameters=[nb.Parameter("CL", 2.0, covariates=effects), nb.Parameter("V", 20.0)],
        **kw,
    )


# ----------------------------------------------------------------------------- references
@pytest.mark.parametrize(("rule", "value"), [("median", 80.0), ("mean", 80.0)])
def test_reference_rules_are_resolved_and_stored(rule, value):
    ds = nb.read_nonmem(_data())
    model = nb.Model(
        structure=IV,
        parameters=[
            nb.Parameter("CL", 2.0, covariates=(nb.Power("WT", reference=rule),)),
            nb.Parameter("V", 20.0, covariates=(nb.Exponential("WT", reference=rule),)),
        ],
    )
    resolved = resolve_references(model, ds)
    refs = [p.covariates[0].reference for p in resolved.parameters]
    assert refs == [value, value]
    assert resolve_references(resolved, ds) is resolved  # numbers stay as they are
    built = build(model, ds)  # the build resolves them too, and keeps the resolved model
    assert nb.Model.from_dict(built.model.to_dict()) == resolved


def test_reference_median_with_skewed_weights():
    ds = nb.read_nonmem(_data(wt=(50.0, 60.0, 130.0)))
    model = _model(nb.Linear("WT", reference="median", coefficient=0.01))
    assert resolve_references(model, ds).parameter("CL").covariates[0].reference == 60.0


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: nb.Power("WT", reference="mode"), r"reference='mode' is not valid"),
        (lambda: nb.Power("WT", reference=-70), r"reference must be a positive number"),
        (lambda: nb.Exponential("AGE", reference=float("nan")), r"must be a finite number"),
        (lambda: nb.Linear("AGE", reference=True), r"must be a finite number"),
    ],
)
def test_reference_errors(make, match):
    with pytest.raises(nb.SpecificationError, match=match):
        make()


def test_reference_rule_needs_numeric_values():
    ds = nb.read_nonmem(_data())
    model = _model(nb.Exponential("SEX", reference="median"))
    with pytest.raises(nb.SpecificationError, match=r"reference='median' needs a numeric value"):
        resolve_references(model, ds)


# ----------------------------------------------------------------------------- missing values
def test_missing_covariate_is_an_error_naming_the_rows():
    ds = nb.read_nonmem(_data(wt=(60.0, np.nan, 100.0)))
    with pytest.raises(
        nb.DatasetError, match=r"WT: missing value at rows 3, 4 \(ID 2\).*imputation"
    ):
        _model(nb.Power("WT", reference=70)).build(ds)


def test_imputation_on_request_is_reported():
    frame = _data(wt=(60.0, np.nan, 100.0))
    frame.loc[4, "WT"] = np.nan  # subject 3: one record missing, the other given
    ds = nb.read_nonmem(frame)
    with pytest.warns(
        nb.DatasetWarning,
        match=r"WT: imputed 3 missing value.*subject\(s\) 3 "
        r"from their own records; subject\(s\) 2 with the median of the others, 80",
    ):
        out = impute(ds, {"WT": "median"})
    assert out.records["WT"].tolist() == [60.0, 60.0, 80.0, 80.0, 100.0, 100.0]
    model = _model(nb.Power("WT", reference=70), impute_covariates={"WT": "median"})
    with pytest.warns(nb.DatasetWarning, match="imputed"):
        _, prepared = prepare(model, ds)
    assert not prepared.records["WT"].isna().any()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert impute(prepared, {"WT": "mean"}) is prepared  # nothing missing: no warning


def test_mode_imputation_of_a_category():
    ds = nb.read_nonmem(_data(sex=("M", "F", np.nan)))
    with pytest.warns(nb.DatasetWarning, match="SEX"):
        out = impute(ds, {"SEX": "mode"})
    assert out.records["SEX"].tolist()[-1] in ("F", "M")


@pytest.mark.parametrize(
    ("rules", "match"),
    [
        ({"SEX": "median"}, r"SEX holds text \(categories\); impute it with 'mode'"),
        ({"HT": "median"}, r"'HT' is not a covariate of the data"),
    ],
)
def test_imputation_errors(rules, match):
    ds = nb.read_nonmem(_data(sex=("M", "F", np.nan)))
    with pytest.raises(nb.SpecificationError, match=match):
        impute(ds, rules)


def test_imputation_without_any_value():
    ds = nb.read_nonmem(_data(wt=(np.nan, np.nan, np.nan)))
    with pytest.raises(nb.SpecificationError, match=r"WT has no value at all"):
        impute(ds, {"WT": "mean"})


@pytest.mark.parametrize(
    ("rules", "match"),
    [
        ({"AGE": "median"}, r"impute_covariates names 'AGE', which the model does not use"),
        ({"WT": "linear"}, r"impute_covariates\['WT'\]='linear' is not valid"),
    ],
)
def test_model_imputation_option_errors(rules, match):
    with pytest.raises(nb.SpecificationError, match=match):
        _model(nb.Power("WT", reference=70), impute_covariates=rules)


def test_missing_value_with_a_reference_rule_names_the_rows():
    ds = nb.read_nonmem(_data(wt=(60.0, np.nan, 100.0)))
    with pytest.raises(nb.DatasetError, match=r"WT: missing value at row 3 \(ID 2\)"):
        _model(nb.Power("WT", reference="median")).build(ds)


def test_covariate_not_in_data():
    ds = nb.read_nonmem(_data())
    with pytest.raises(nb.SpecificationError, match=r"covariate\(s\) CRCL not in the data"):
        prepare(_model(nb.Power("CRCL", reference=100)), ds)


# ----------------------------------------------------------------------------- recovery
TRUTH = {"CL": 3.0, "V": 30.0, "exponent": 0.75}
OMEGA = {"CL": 0.2, "V": 0.15}
SIGMA_PROP = 0.1


def simulate_allometric(n_subjects=40, seed=5):
    """IV bolus; weights 35-120 kg; ``CL = 3 (WT/70)^0.75``, ``V = 30 (WT/70)``."""
    rng = np.random.default_rng(seed)
    wt = np.round(rng.uniform(35, 120, n_subjects), 1)
    frame = design(n_subjects, [0.5, 2, 6, 12], extra={"WT": wt})
    w = wt / 70
    params = {
        "CL": TRUTH["CL"] * w ** TRUTH["exponent"] * np.exp(rng.normal(0, OMEGA["CL"], n_subjects)),
        "V": TRUTH["V"] * w * np.exp(rng.normal(0, OMEGA["V"], n_subjects)),
    }
    ipred = predict(IV, frame, params)
    return set_dv(frame, ipred * (1 + SIGMA_PROP * rng.standard_normal(ipred.size)))


@pytest.mark.slow
def test_allometric_exponent_estimated():
    """Weak prior Normal(0, 1) on the exponent: the posterior is near 0.75 within
    ``3 sqrt(sd^2 + mcse^2)``, and excludes 0 (no effect) and 1.5. The reference is the
    median weight, resolved on the data and stored in the fitted model."""
    import arviz as az

    data = nb.read_nonmem(simulate_allometric())
    model = nb.Model(
        structure=IV,
        parameters=[
            nb.Parameter(
                "CL",
                2.0,
                covariates=(
                    nb.Power("WT", reference="median", exponent=nb.Prior("Normal", mu=0, sigma=1)),
                ),
            ),  # fmt: skip
            nb.Parameter("V", 20.0, covariates=(nb.Power("WT", reference=70, exponent=1.0),)),
        ],
        omega=nb.Omega(blocks="diagonal"),
        error=nb.Proportional(),
    )
    fit = model.fit(data, draws=300, tune=300, chains=2, random_seed=4, progressbar=False,
                    sampler="nutpie", check=False)  # fmt: skip
    ref = fit.model.parameter("CL").covariates[0].reference
    assert ref == float(np.median(data.covariate_table(["WT"])["WT"]))
    x = fit.posterior["CL_WT"]
    mcse = float(az.mcse(x.to_dataset(name="e"), method="mean")["e"])
    mean, sd = float(x.mean()), float(x.std())
    assert abs(mean - TRUTH["exponent"]) <= 3 * np.hypot(sd, mcse), (mean, sd)
    assert float(x.quantile(0.005)) > 0 and float(x.quantile(0.995)) < 1.5
    cl_at_ref = TRUTH["CL"] * (ref / 70) ** TRUTH["exponent"]
    log_cl = np.log(fit.posterior["CL_pop"])
    assert abs(float(log_cl.mean()) - np.log(cl_at_ref)) <= 3 * float(log_cl.std()) + 0.01
    assert fit.check_convergence().figures["divergences"] == 0
