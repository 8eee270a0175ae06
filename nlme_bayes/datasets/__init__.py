"""Real pharmacokinetic (and one growth-curve) data sets, shipped as NONMEM-style CSV files.

Each loader returns a validated :class:`~nlme_bayes.data.NonmemDataset`.  All files
have one row per event with ``ID, TIME, AMT, DV, EVID, MDV, CMT, RATE, II, ADDL, SS`` (plus
``DVID`` for warfarin) and covariates; ``orange`` has only ``ID, TIME, DV``.  TIME is in
hours except for ``orange`` (days).  Doses and observations follow NONMEM's ADVAN numbering:
an oral dose goes to ``CMT`` 1 (depot) and is observed in 2 (central); IV-only data use 1.
Provenance and licences: ``PROVENANCE.md`` next to the files.

==========================  ========  ======  ===========================================
loader                      subjects  obs     design
==========================  ========  ======  ===========================================
``theophylline``            12        132     single oral dose, AMT in mg/kg
``theophylline_saemix``     12        120     single oral dose, AMT in mg
``indomethacin``            6         66      single IV bolus
``phenobarbital``           59        155     repeated IV boluses, neonates
``warfarin``                32        483     single oral dose; PK (DVID 1) + PD (DVID 2)
``warfarin_pk``             32        251     single oral dose; PK only
``mavoglurant``             120       2427    zero-order input, 1-2 occasions
``nimotuzumab``             12        321     10 weekly IV infusions, log-concentration
``orange``                  5         35      growth curves, no doses
==========================  ========  ======  ===========================================

``emax_pd1()`` and ``emax_pd2()`` return the saemix dose-response tables as plain
DataFrames: they are not event data (no TIME), so :func:`~nlme_bayes.data.read_nonmem`
does not apply and they are not in :func:`list_datasets`.

Examples
--------
>>> from nlme_bayes import datasets
>>> datasets.list_datasets()[:3]
('theophylline', 'theophylline_saemix', 'indomethacin')
>>> ds = datasets.theophylline()
>>> ds.n_subjects, ds.n_observations
(12, 132)
"""

from __future__ import annotations

import dataclasses
from importlib import resources
from pathlib import Path

import pandas as pd

from nlme_bayes.data import NonmemDataset, read_nonmem
from nlme_bayes.errors import SpecificationError

__all__ = [
    "emax_pd1",
    "emax_pd2",
    "indomethacin",
    "list_datasets",
    "mavoglurant",
    "nimotuzumab",
    "orange",
    "path",
    "phenobarbital",
    "theophylline",
    "theophylline_saemix",
    "warfarin",
    "warfarin_pk",
]

_EVENT_FILES: dict[str, str] = {
    "theophylline": "theoph.csv",
    "theophylline_saemix": "theo_saemix.csv",
    "indomethacin": "indometh.csv",
    "phenobarbital": "phenobarb.csv",
    "warfarin": "warfarin_nlmixr2data.csv",
    "warfarin_pk": "warfarin_pk_nlmixr2data.csv",
    "mavoglurant": "mavoglurant_nlmixr2data.csv",
    "nimotuzumab": "nimotuzumab_nlmixr2data.csv",
    "orange": "orange.csv",
}
_TABLE_FILES: dict[str, str] = {"emax_pd1": "pd1_saemix.csv", "emax_pd2": "pd2_saemix.csv"}


def list_datasets() -> tuple[str, ...]:
    """Names of the shipped event data sets (each has a loader of the same name).

    Returns
    -------
    tuple of str
        In the order of the table in this module's docstring.

    Examples
    --------
    >>> "warfarin" in list_datasets()
    True
    """
    return tuple(_EVENT_FILES)


def path(name: str) -> Path:
    """Path of a shipped CSV file.

    Parameters
    ----------
    name : str
        A name from :func:`list_datasets`, or ``"emax_pd1"`` / ``"emax_pd2"``.

    Returns
    -------
    pathlib.Path
        The packaged file (read it with :func:`~nlme_bayes.data.read_nonmem`).

    Raises
    ------
    SpecificationError
        Unknown name; the message lists the valid names.

    Examples
    --------
    >>> path("orange").name
    'orange.csv'
    """
    files = _EVENT_FILES | _TABLE_FILES
    if name not in files:
        raise SpecificationError(
            f"unknown dataset {name!r}; available datasets: {', '.join(sorted(files))}"
        )
    return Path(str(resources.files(__name__).joinpath(files[name])))


def _load(name: str) -> NonmemDataset:
    return read_nonmem(path(name))


def theophylline() -> NonmemDataset:
    """Theophylline, single oral dose (R ``datasets::Theoph``, the classic NLME example).

    12 subjects, 144 records: 12 doses (``CMT`` 1, depot) and 132 observations (``CMT`` 2),
    including a t = 0 sample per subject that is non-zero for some (0.74 mg/L for ID 1;
    a first-order absorption model predicts 0 there -- the reference fits keep these rows).

    Units: TIME h; **AMT mg/kg** (the classic parameterisation, 3.1-5.86 mg/kg), so CL and V
    come out per kg; DV theophylline plasma concentration, mg/L.

    Covariates: ``WT`` (kg), ``DOSE_MGKG`` (mg/kg, constant per subject) and ``AMT_MG``
    (total dose in mg on the dose record, 0 elsewhere -- so it varies within a subject and
    ``covariate_table()`` without names raises; request ``["WT", "DOSE_MGKG"]``).

    Source: R ``datasets::Theoph`` (Boeckmann, Sheiner and Beal 1994), GPL.

    Returns
    -------
    NonmemDataset

    Examples
    --------
    >>> ds = theophylline()
    >>> ds.n_subjects, ds.n_observations, ds.covariates
    (12, 132, ('WT', 'DOSE_MGKG', 'AMT_MG'))
    """
    return _load("theophylline")


def theophylline_saemix() -> NonmemDataset:
    """Theophylline as in saemix ``theo.saemix``: the same study, AMT in mg, no t = 0 rows.

    12 subjects, 132 records: 12 oral doses (``CMT`` 1) and 120 observations (``CMT`` 2).

    Units: TIME h; AMT total dose in mg (267.8-320.7 mg); DV mg/L.

    Covariates: ``WT`` (kg); ``SEX`` (0/1, simulated by the saemix authors, not recorded
    in the study).

    Source: R package saemix, ``theo.saemix`` (GPL >= 2).

    Returns
    -------
    NonmemDataset

    Examples
    --------
    >>> ds = theophylline_saemix()
    >>> ds.n_subjects, ds.n_observations
    (12, 120)
    """
    return _load("theophylline_saemix")


def indomethacin() -> NonmemDataset:
    """Indometacin, single IV bolus (R ``datasets::Indometh``).

    6 subjects, 72 records: 6 doses and 66 observations (11 per subject, 0.25-8 h), all in
    ``CMT`` 1.  R's data has no dose; **AMT = 25 mg is assumed** from the original study.

    Units: TIME h; AMT mg; DV plasma concentration, mcg/mL (= mg/L).  No covariates.

    Source: R ``datasets::Indometh`` (Kwan et al. 1976), GPL.

    Returns
    -------
    NonmemDataset

    Examples
    --------
    >>> ds = indomethacin()
    >>> ds.n_subjects, ds.n_observations
    (6, 66)
    """
    return _load("indomethacin")


def phenobarbital() -> NonmemDataset:
    """Phenobarbital in neonates, repeated IV boluses (R ``nlme::Phenobarb``; NONMEM's pheno).

    59 subjects, 744 records: 589 doses and 155 observations (1-6 per subject, sparse), all
    in ``CMT`` 1.

    Units: TIME h; AMT mg; DV mg/L (nlme documents ug/kg and ug/L, but the values are mg
    and mg/L).

    Covariates: ``WT`` birth weight (kg), ``APGAR`` (1-10), ``APGAR_LT5`` (1 if APGAR < 5).

    Source: R ``nlme::Phenobarb`` (Grasela and Donn 1985), GPL >= 2.

    Returns
    -------
    NonmemDataset

    Examples
    --------
    >>> ds = phenobarbital()
    >>> ds.n_subjects, ds.n_observations
    (59, 155)
    """
    return _load("phenobarbital")


def warfarin() -> NonmemDataset:
    """Warfarin PK and PD after a single oral dose (nlmixr2data ``warfarin``).

    32 subjects (IDs 1-33 without 11), 515 records: 32 doses (``CMT`` 1), 251 PK
    observations (``DVID`` 1, ``CMT`` 2) and 232 PD observations (``DVID`` 2, ``CMT`` 3).

    Units: TIME h; AMT mg; DV is warfarin plasma concentration in mg/L for ``DVID`` 1 and
    prothrombin complex activity in % of normal for ``DVID`` 2.  Four subjects have DV = 0
    at t = 0.5 h (below quantification), kept as ordinary observations.

    Covariates: ``WT`` (kg), ``AGE`` (years), ``SEX`` (0/1; 1 in 27 subjects).

    Source: R package nlmixr2data (O'Reilly's warfarin studies), GPL >= 3.

    Returns
    -------
    NonmemDataset

    Examples
    --------
    >>> ds = warfarin()
    >>> ds.observations().groupby("DVID").size().to_dict()
    {1: 251, 2: 232}
    """
    return _load("warfarin")


def warfarin_pk() -> NonmemDataset:
    """Warfarin PK only: :func:`warfarin` without the PD rows.

    32 subjects, 283 records: 32 oral doses (``CMT`` 1) and 251 concentrations (``DVID`` 1,
    ``CMT`` 2).  Units: TIME h; AMT mg; DV mg/L.  Covariates: ``WT`` (kg), ``AGE``
    (years), ``SEX`` (0/1).

    Source: R package nlmixr2data, GPL >= 3.

    Returns
    -------
    NonmemDataset

    Examples
    --------
    >>> ds = warfarin_pk()
    >>> ds.n_subjects, ds.n_observations
    (32, 251)
    """
    return _load("warfarin_pk")


def mavoglurant() -> NonmemDataset:
    """Mavoglurant, zero-order input (``RATE``), one or two occasions (nlmixr2data).

    120 subjects (IDs 793-915), 2678 records: 198 doses into ``CMT`` 1 with a ``RATE``
    (25 or 50 mg), 2427 observations in ``CMT`` 2 and 53 other-event records (``EVID`` 2).
    78 subjects have a second occasion.  Mavoglurant is an oral drug (Wendling et al. 2016
    modelled its oral absorption), so ``CMT`` 1 is best read as a depot receiving a
    zero-order input.

    **Clock restarts.**  Each second occasion restarts TIME at 0 on its dose record, which
    the source file codes ``EVID`` 1; NONMEM requires a reset record for that, so this
    loader recodes those 78 dose records to ``EVID`` 4 (reset and dose): the occasions are
    treated as separated by a complete washout.  ``path("mavoglurant")`` is the unmodified
    file, which :func:`~nlme_bayes.data.read_nonmem` rejects for its decreasing TIME.

    Units: TIME h; AMT mg; RATE mg/h; DV plasma concentration (the source does not state
    the unit).

    Covariates: ``DOSE`` (mg) and ``OCC`` (occasion 1/2) vary within a subject; ``AGE``
    (years), ``SEX`` (1/2), ``WT`` (kg), ``HT`` (m) do not.

    Source: R package nlmixr2data ``mavoglurant`` (Wendling et al. 2016), GPL >= 3.

    Returns
    -------
    NonmemDataset

    Examples
    --------
    >>> ds = mavoglurant()
    >>> ds.n_subjects, ds.n_observations, int((ds.records["EVID"] == 4).sum())
    (120, 2427, 78)
    """
    file = path("mavoglurant")
    frame = pd.read_csv(file)
    same_subject = frame["ID"].eq(frame["ID"].shift())
    restart = same_subject & frame["TIME"].lt(frame["TIME"].shift()) & frame["EVID"].eq(1)
    frame.loc[restart, "EVID"] = 4
    return dataclasses.replace(read_nonmem(frame), source=str(file))


def nimotuzumab() -> NonmemDataset:
    """Nimotuzumab (anti-EGFR monoclonal antibody), weekly IV infusions (nlmixr2data).

    12 subjects (IDs 1-13 without 4), 441 records: 120 infusions (10 per subject, ``RATE``)
    and 321 observations, all in ``CMT`` 1.  Target-mediated (nonlinear) kinetics.

    Units: TIME h; AMT mg (50-400 mg per infusion); RATE mg/h; **DV = log(concentration)**
    -- fit it with a log-scale (additive on log) error model.

    Covariates: ``TAD`` (time after dose, h) and ``OCC`` (dosing occasion 1-10) vary by
    record, ``WT`` (kg) varies within some subjects; ``BSA`` (m^2), ``AGE`` (years),
    ``HT`` (cm), ``DOSE`` (mg) do not.

    Source: R package nlmixr2data ``nimoData``, GPL >= 3.

    Returns
    -------
    NonmemDataset

    Examples
    --------
    >>> ds = nimotuzumab()
    >>> ds.n_subjects, ds.n_observations
    (12, 321)
    """
    return _load("nimotuzumab")


def orange() -> NonmemDataset:
    """Orange-tree growth: the classic logistic NLME, no doses (R ``datasets::Orange``).

    5 trees, 35 observations (7 per tree).  Columns ``ID`` (tree), ``TIME`` = age in
    **days** (118-1582), ``DV`` = trunk circumference in mm.  No covariates.

    Reference (nlme, ML; Pinheiro and Bates 2000, section 8.2):
    ``DV ~ Asym / (1 + exp((xmid - TIME) / scal))`` with a random effect on Asym gives
    Asym 191.05 (SE 16.15), xmid 722.56 (35.15), scal 344.17 (27.15), SD of the Asym
    random effect 31.48, residual SD 7.846, log-likelihood -131.58.

    Source: R ``datasets::Orange`` (Draper and Smith 1998), GPL.

    Returns
    -------
    NonmemDataset

    Examples
    --------
    >>> ds = orange()
    >>> ds.n_subjects, ds.n_observations
    (5, 35)
    """
    return _load("orange")


def emax_pd1() -> pd.DataFrame:
    """Simulated Emax dose-response data, saemix ``PD1.saemix`` (a plain table, not events).

    100 subjects x 3 doses = 300 rows; columns ``ID``, ``DOSE`` (0-90), ``DV`` (response),
    ``GENDER`` (0/1).  There is no TIME, so this is not NONMEM event data.

    Source: R package saemix (GPL >= 2).

    Returns
    -------
    pandas.DataFrame

    Examples
    --------
    >>> emax_pd1().shape
    (300, 4)
    """
    return pd.read_csv(path("emax_pd1"))


def emax_pd2() -> pd.DataFrame:
    """Simulated Emax dose-response data, saemix ``PD2.saemix``; same layout as :func:`emax_pd1`.

    Returns
    -------
    pandas.DataFrame

    Examples
    --------
    >>> list(emax_pd2().columns)
    ['ID', 'DOSE', 'DV', 'GENDER']
    """
    return pd.read_csv(path("emax_pd2"))
