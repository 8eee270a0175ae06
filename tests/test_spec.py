"""Specification objects: validation messages, defaults, and JSON round trips."""

from __future__ import annotations

import json
import math

import pytest

import nlme_bayes as nb
from nlme_bayes.errors import SpecificationError
from nlme_bayes.spec import spec_from_dict, spec_to_dict


def _model(**kw):
    params = kw.pop(
        "parameters",
        [nb.Parameter("CL", 0.04), nb.Parameter("V", 0.5), nb.Parameter("ka", 1.5)],
    )
    return nb.Model(structure=nb.OneCompartment(route="oral"), parameters=params, **kw)


def test_prior_repr_and_round_trip():
    p = nb.Prior("LogNormal", mu=-3.0, sigma=1.0)
    assert repr(p) == "Prior('LogNormal', mu=-3.0, sigma=1.0)"
    assert nb.Prior.from_dict(json.loads(json.dumps(p.to_dict()))) == p
    assert hash(p) == hash(nb.Prior("LogNormal", sigma=1.0, mu=-3.0))


def test_prior_unknown_distribution_lists_valid_ones():
    with pytest.raises(SpecificationError, match=r"unknown distribution 'Normall'.*HalfNormal"):
        nb.Prior("Normall", mu=0, sigma=1).validate()


def test_prior_invalid_arguments():
    msg = r"pymc.Normal has no parameter scale; its parameters are mu, sigma, tau"
    with pytest.raises(SpecificationError, match=msg):
        nb.Prior("Normal", mu=0, scale=1).validate()
    with pytest.raises(SpecificationError, match=r"outside their domain"):
        nb.Prior("HalfNormal", sigma=-1.0).validate()
    with pytest.raises(SpecificationError, match=r"not finite"):
        nb.Prior("Normal", mu=math.inf, sigma=1.0)


def test_parameter_defaults_and_errors():
    p = nb.Parameter("CL", 0.04)
    assert p.effective_prior == nb.Prior("LogNormal", mu=math.log(0.04), sigma=1.0)
    assert nb.Parameter("E0", 5.0, iiv="normal").effective_prior.dist == "Normal"
    assert nb.Parameter("F", 0.7, iiv="logit").effective_prior.dist == "LogitNormal"
    with pytest.raises(SpecificationError, match=r"iiv='log' is not valid.*'lognormal'"):
        nb.Parameter("CL", 0.04, iiv="log")
    with pytest.raises(SpecificationError, match=r"give a typical value"):
        nb.Parameter("CL")
    with pytest.raises(SpecificationError, match=r"log-normal parameter needs typical > 0"):
        nb.Parameter("CL", -1.0)
    with pytest.raises(SpecificationError, match=r"logit-normal parameter needs 0 < typical < 1"):
        nb.Parameter("F", 1.5, iiv="logit")
    with pytest.raises(SpecificationError, match=r"must be an identifier"):
        nb.Parameter("C L", 1.0)
    with pytest.raises(SpecificationError, match=r"fixed=True needs typical"):
        nb.Parameter("CL", prior=nb.Prior("LogNormal", mu=0, sigma=1), fixed=True)
    with pytest.raises(SpecificationError, match=r"covariate effect .* must be one of"):
        nb.Parameter("CL", 1.0, covariates=("WT",))


def test_covariate_effect_validation():
    assert nb.Power("WT", reference=70).exponent == 0.75
    with pytest.raises(SpecificationError, match=r"reference must be a positive number"):
        nb.Power("WT", reference=0)
    with pytest.raises(SpecificationError, match=r"must be a number \(fixed\) or a Prior"):
        nb.Linear("AGE", coefficient="big")
    with pytest.raises(SpecificationError, match=r"coefficient must be a Prior"):
        nb.Categorical("SEX", reference=0, coefficient=0.3)


def test_omega_validation():
    with pytest.raises(SpecificationError, match=r"blocks='full' is not valid"):
        nb.Omega(blocks="full")
    with pytest.raises(SpecificationError, match=r"'CL' is in two blocks"):
        nb.Omega(blocks=(("CL", "V"), ("CL",)))
    with pytest.raises(SpecificationError, match=r"lkj_eta must be > 0"):
        nb.Omega(lkj_eta=0)
    with pytest.raises(SpecificationError, match=r"Omega: Q in the blocks have no random effect"):
        _model(omega=nb.Omega(blocks=(("CL", "Q"),)))
    om = nb.Omega(blocks=(("CL", "V"),))
    assert om.resolve(("CL", "V", "ka")) == (("CL", "V"), ("ka",))


def test_model_parameter_names_checked_against_structure():
    with pytest.raises(
        SpecificationError, match=r"unknown parameter\(s\) Vd.*missing parameter\(s\) V"
    ):
        _model(
            parameters=[nb.Parameter("CL", 1.0), nb.Parameter("Vd", 1.0), nb.Parameter("ka", 1.0)]
        )
    with pytest.raises(SpecificationError, match=r"given twice"):
        _model(parameters=[nb.Parameter("CL", 1.0), nb.Parameter("CL", 2.0)])
    with pytest.raises(SpecificationError, match=r"not a structural model"):
        nb.Model(structure="1cmt", parameters=[nb.Parameter("CL", 1.0)])


def test_model_orders_parameters_like_the_structure():
    m = _model(
        parameters=[nb.Parameter("ka", 1.0), nb.Parameter("V", 1.0), nb.Parameter("CL", 1.0)]
    )
    assert m.parameter_names == ("CL", "V", "ka")


def test_model_centering_must_agree_within_a_block():
    with pytest.raises(SpecificationError, match=r"share an Omega block but disagree on centered"):
        _model(
            parameters=[
                nb.Parameter("CL", 1.0, centered=True),
                nb.Parameter("V", 1.0),
                nb.Parameter("ka", 1.0),
            ]
        )
    _model(
        parameters=[
            nb.Parameter("CL", 1.0, centered=True),
            nb.Parameter("V", 1.0),
            nb.Parameter("ka", 1.0),
        ],
        omega=nb.Omega(blocks="diagonal"),
    )


def test_model_error_validation():
    with pytest.raises(SpecificationError, match=r"error must be one of Additive"):
        _model(error="additive")
    with pytest.raises(SpecificationError, match=r"mixing LogAdditive"):
        _model(error={1: nb.LogAdditive(), 2: nb.Additive()})


def test_model_json_round_trip():
    from nlme_bayes.examples import pheno_model, theophylline_model

    for m in (theophylline_model(), pheno_model()):
        d = json.loads(json.dumps(m.to_dict()))
        assert nb.Model.from_dict(d) == m
    m = _model(error={1: nb.Proportional(), 2: nb.Combined()})
    assert nb.Model.from_dict(json.loads(json.dumps(m.to_dict()))) == m


def test_model_replace_and_with_parameter():
    m = _model()
    m2 = m.with_parameter(nb.Parameter("CL", 0.08))
    assert m2.parameter("CL").typical == 0.08 and m.parameter("CL").typical == 0.04
    with pytest.raises(SpecificationError, match=r"no parameter 'Q'"):
        m.with_parameter(nb.Parameter("Q", 1.0))


def test_spec_to_dict_plain_values():
    assert spec_from_dict(spec_to_dict({1: nb.Additive()})) == {1: nb.Additive()}
