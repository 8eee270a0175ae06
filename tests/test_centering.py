"""centered="auto": the information ratio against its closed form, the rule, the builder."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from _pk_simulation import design, set_dv
from pymc.initial_point import make_initial_point_fn

import nlme_bayes as nb
from nlme_bayes import templates
from nlme_bayes.builder import build
from nlme_bayes.centering import choose_centering, empirical_bayes_pilot, information_ratio

TIMES_RICH = [0.25, 0.5, 1, 2, 4, 6, 8, 12, 24]


def _model(blocks="diagonal", centered="auto", error=None):
    return nb.Model(
        structure=nb.OneCompartment(route="iv"),
        parameters=(
            nb.Parameter("CL", typical=5.0, centered=centered),
            nb.Parameter("V", typical=50.0, centered=centered),
        ),
        omega=nb.Omega(blocks=blocks),
        error=error or nb.Proportional(),
    )


def _data(times, n=6, amt=100.0, seed=0):
    frame = design(n, times, amt=amt)
    rng = np.random.default_rng(seed)
    t = frame.loc[frame.EVID == 0, "TIME"].to_numpy()
    conc = amt / 50.0 * np.exp(-0.1 * t) * np.exp(rng.normal(0.0, 0.1, t.size))
    return nb.read_nonmem(set_dv(frame, conc))


def _start_sigma(model, data, name):
    built = build(model.with_centering(False), data, store_predictions=False)
    point = make_initial_point_fn(
        model=built.pm_model, overrides=built.initvals, return_transformed=False
    )(0)
    return float(point[name])


@pytest.mark.parametrize("error", ["proportional", "additive"])
def test_information_ratio_matches_closed_form(error):
    # C = D/V exp(-k t), k = CL/V; d C / d eta_CL = -k t C, d C / d eta_V = (k t - 1) C
    err = nb.Proportional() if error == "proportional" else nb.Additive()
    model, data = _model(error=err), _data(TIMES_RICH, n=3)
    rho = information_ratio(model, data, at="start")
    sigma = _start_sigma(model, data, "sigma_prop" if error == "proportional" else "sigma_add")
    t = np.array(TIMES_RICH)
    conc = 100.0 / 50.0 * np.exp(-0.1 * t)
    sd = sigma * np.sqrt(conc**2 + (1e-6 * np.median(_observed(data))) ** 2)
    if error == "additive":
        sd = np.full_like(t, sigma)
    want_cl = 0.3**2 * np.sum((0.1 * t * conc / sd) ** 2)
    want_v = 0.3**2 * np.sum(((0.1 * t - 1.0) * conc / sd) ** 2)
    np.testing.assert_allclose(rho["CL"], want_cl, rtol=1e-6)
    np.testing.assert_allclose(rho["V"], want_v, rtol=1e-6)
    assert rho["CL"].shape == (3,)


def _study(sigma, omega=(0.3, 0.2), n=30, times=TIMES_RICH, seed=3):
    """One-compartment IV bolus, log-normal CL and V, proportional error ``sigma``."""
    rng = np.random.default_rng(seed)
    frame = design(n, times, amt=100.0)
    cl = 5.0 * np.exp(omega[0] * rng.standard_normal(n))
    v = 50.0 * np.exp(omega[1] * rng.standard_normal(n))
    t = frame.loc[frame.EVID == 0, "TIME"].to_numpy()
    who = frame.loc[frame.EVID == 0, "ID"].to_numpy() - 1
    conc = 100.0 / v[who] * np.exp(-cl[who] / v[who] * t)
    return nb.read_nonmem(set_dv(frame, conc * (1.0 + sigma * rng.standard_normal(t.size))))


@pytest.mark.parametrize("sigma", [0.05, 0.2])
def test_pilot_recovers_the_residual_error_and_omegas(sigma):
    model = _model()
    data = _study(sigma)
    pilot = empirical_bayes_pilot(model, data)
    start = _start_sigma(model, data, "sigma_prop")
    # 30 subjects x 9 samples: the residual SD within 15 %, the omegas (true 0.3, 0.2; the
    # sample SDs of the 30 simulated etas differ from those by ~13 %) within 30 %
    assert pilot.residual_scale * start == pytest.approx(sigma, rel=0.15)
    assert pilot.omega["CL"] == pytest.approx(0.3, rel=0.3)
    assert pilot.omega["V"] == pytest.approx(0.2, rel=0.3)
    low = np.exp(-1.645 / np.sqrt(2 * 30))
    assert pilot.omega_low["CL"] == pytest.approx(pilot.omega["CL"] * low)
    # rho at the pilot's estimates is rho at the start rescaled: (omega_low / 0.3)^2 / s^2
    # (up to the derivatives, taken at the fitted etas instead of eta = 0)
    at_start = information_ratio(model, data, at="start")["CL"]
    rescaled = at_start * (pilot.omega_low["CL"] / 0.3) ** 2 / pilot.residual_scale**2
    assert np.median(pilot.ratio["CL"]) == pytest.approx(np.median(rescaled), rel=0.5)


def test_the_choice_follows_the_data_not_only_the_design():
    """The same design: precise data with clear variability -> centred; noisy data, or a
    random effect too small to see, -> non-centred (where the centred form's funnel opens)."""
    model = _model()
    precise = choose_centering(model, _study(0.05))
    assert precise.centered == {"CL": True, "V": True}
    noisy = choose_centering(model, _study(0.8, times=[1, 4, 12]))
    assert noisy.centered == {"CL": False, "V": False}
    tiny = choose_centering(model, _study(0.1, omega=(0.01, 0.2)))
    assert tiny.centered["CL"] is False and tiny.centered["V"] is True
    assert tiny.pilot.omega["CL"] < 0.1


def _observed(data):
    obs = data.observations()
    return np.abs(obs["DV"].to_numpy(float))


def test_rich_design_is_centred_sparse_design_is_not():
    rich = choose_centering(_model(), _study(0.1))
    assert rich.centered == {"CL": True, "V": True}
    assert rich.median_ratio("CL") > 1 and rich.median_ratio("V") > 1
    sparse = choose_centering(_model(), _study(0.1, times=[2.0]))  # V and CL not separable
    assert sparse.centered == {"CL": False, "V": False}
    assert sparse.median_ratio("CL") < 1
    # a subject's information grows with its samples: more samples, larger ratio
    assert rich.median_ratio("CL") > sparse.median_ratio("CL")


def test_a_block_is_centred_only_when_every_parameter_is_informed():
    # one sample at 24 h informs CL (k t = 2.4) but hardly V (k t - 1 = 1.4 vs CL's 2.4):
    # scale the design so that CL passes and V does not, then join them in a block
    data = _study(0.1, times=[24.0])
    diag = choose_centering(_model(), data)
    rho = {n: diag.median_ratio(n) for n in ("CL", "V")}
    assert rho["CL"] > rho["V"]
    threshold = float(np.sqrt(rho["CL"] * rho["V"]))  # between the two
    diag = choose_centering(_model(), data, threshold=threshold)
    assert diag.centered == {"CL": True, "V": False}
    block = choose_centering(_model(blocks="block"), data, threshold=threshold)
    assert block.centered == {"CL": False, "V": False}


def test_only_auto_parameters_are_decided_and_the_builder_applies_the_choice():
    model = nb.Model(
        structure=nb.OneCompartment(route="iv"),
        parameters=(
            nb.Parameter("CL", typical=5.0, centered="auto"),
            nb.Parameter("V", typical=50.0),  # non-centred, as asked
        ),
        omega=nb.Omega(blocks="diagonal"),
        error=nb.Proportional(),
    )
    built = build(model, _study(0.1))
    assert built.centering.centered == {"CL": True}
    assert built.model.parameter("CL").centered is True
    assert built.model.parameter("V").centered is False
    free = {rv.name for rv in built.pm_model.free_RVs}
    assert "phi_CL" in free and "z_eta_CL" not in free
    assert "z_eta_V" in free and "phi_V" not in free
    saved = json.loads(built.centering.to_json())
    assert saved["CL"]["centered"] is True
    assert saved["CL"]["median_ratio"] == pytest.approx(built.centering.median_ratio("CL"))
    # without "auto" nothing is probed
    assert saved["CL"]["omega_pilot"] == pytest.approx(built.centering.pilot.omega["CL"])
    assert build(model.with_centering(False), _study(0.1)).centering is None


def test_censored_observations_carry_no_information():
    frame = design(4, TIMES_RICH)
    t = frame.loc[frame.EVID == 0, "TIME"].to_numpy()
    data = nb.read_nonmem(set_dv(frame, 2.0 * np.exp(-0.1 * t)))
    late = t >= 8
    flagged = set_dv(frame, 2.0 * np.exp(-0.1 * t))
    flagged["BLQ"] = 0
    flagged.loc[flagged.EVID == 0, "BLQ"] = late.astype(int)
    censored = nb.read_nonmem(flagged)
    kept = nb.read_nonmem(
        pd.concat([frame[frame.EVID == 1], set_dv(frame, 2.0 * np.exp(-0.1 * t))[
            (frame.EVID == 0) & (frame.TIME < 8)
        ]]).sort_values(["ID", "TIME", "EVID"], ascending=[True, True, False])
    )  # fmt: skip
    m3 = _model().replace(blq=nb.BLQ("M3", lloq=0.9))
    full = information_ratio(_model(), data, at="start")["CL"]
    cens = information_ratio(m3, censored, at="start")["CL"]
    dropped = information_ratio(_model(), kept, at="start")["CL"]
    assert np.all(cens < full)
    # the same SD start (the prior's), so the ratio is the sum over the uncensored samples
    np.testing.assert_allclose(cens, dropped, rtol=1e-6)


def test_specification_errors_are_clear():
    with pytest.raises(nb.SpecificationError, match="centered must be True, False or 'auto'"):
        nb.Parameter("CL", typical=1.0, centered="yes")
    with pytest.raises(nb.SpecificationError, match="ka has no random effect"):
        _model().with_centering(True, "ka")
    with pytest.raises(nb.SpecificationError, match="disagree on centered="):
        nb.Model(
            structure=nb.OneCompartment(route="iv"),
            parameters=(
                nb.Parameter("CL", typical=5.0, centered="auto"),
                nb.Parameter("V", typical=50.0, centered=True),
            ),
            omega=nb.Omega(blocks="block"),
            error=nb.Proportional(),
        )


def test_templates_take_centered_and_describe_shows_it():
    shipped = templates.load("one_cmt_oral")  # the file says centered = "auto" (validated)
    assert [shipped.parameter(n).centered for n in ("CL", "V", "ka")] == ["auto"] * 3
    m = templates.load("one_cmt_oral", centered={"ka": False})
    assert [m.parameter(n).centered for n in ("CL", "V", "ka")] == ["auto", "auto", False]
    m = templates.load("one_cmt_oral", centered=False)
    assert {m.parameter(n).centered for n in m.iiv_names} == {False}
    m = templates.load("one_cmt_oral", centered="auto")
    assert {m.parameter(n).centered for n in m.iiv_names} == {"auto"}
    assert "(centered: auto)" in m.describe()
    with pytest.raises(nb.SpecificationError, match="unknown parameter"):
        templates.load("one_cmt_oral", centered={"Q": True})
    assert nb.Model.from_dict(json.loads(json.dumps(m.to_dict()))) == m


def test_auto_does_not_centre_ka_beside_peripheral_compartments():
    """An absorption rate is centred by "auto" only in one-compartment models (NEVER_CENTRED):
    with peripheral compartments a centred ka kept chains in the other mode."""
    one = templates.get("one_cmt_oral")
    two = templates.get("two_cmt_oral")
    c1 = choose_centering(one.model(), one.example_data(random_seed=1))
    c2 = choose_centering(two.model(), two.example_data(random_seed=1))
    assert c1.centered["ka"] is True and c1.median_ratio("ka") > 1
    assert c2.median_ratio("ka") > 1  # informed, yet not centred
    assert c2.centered["ka"] is False and c2.centered["CL"] is True
    assert "not centred by auto" in c2.describe()
    # asked for explicitly, it is centred
    forced = two.model().with_centering(True, "ka")
    assert forced.parameter("ka").centered is True


def test_information_ratio_names_a_bad_at():
    with pytest.raises(ValueError, match=r"at='middle': choose 'data' or 'start'"):
        information_ratio(_model(), _data(TIMES_RICH, n=2), at="middle")
