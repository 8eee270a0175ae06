"""Dose-observation pairs: the event representation shared by the structural models.

A linear compartment model obeys superposition: the concentration at an
observation is the sum, over every dose of the same subject given at or before
it (in event order, within the same reset epoch), of that dose's response.
:class:`EventSchedule` stores one *pair* per (observation, preceding dose),
grouped by how the dose enters the model.  Everything is a read-only numpy
array; nothing here imports PyMC or PyTensor.  The code that fills these
structures from a NONMEM-style dataset lives in :mod:`nlme_bayes.events`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .errors import DatasetError

__all__ = ["DosePairs", "EventSchedule"]


def _frozen_array(value: object, dtype: type, name: str) -> np.ndarray:
    array = np.array(value, dtype=dtype, copy=True)
    if array.ndim != 1:
        raise DatasetError(f"{name} must be one-dimensional, got shape {array.shape}.")
    array.setflags(write=False)
    return array


@dataclass(frozen=True)
class DosePairs:
    """All (observation, dose) pairs of one dosing route, as parallel arrays.

    Attributes
    ----------
    obs : numpy.ndarray
        ``int64 (n_pairs,)``: index of the observation (``0 .. n_obs-1``).
    subject : numpy.ndarray
        ``int64 (n_pairs,)``: subject index (``0 .. n_subjects-1``) of that observation.
    dt : numpy.ndarray
        ``float64 (n_pairs,)``: observation time minus dose time, ``>= 0``
        (before any lag time).
    amt : numpy.ndarray
        ``float64 (n_pairs,)``: dose amount (before bioavailability).
    duration : numpy.ndarray
        ``float64 (n_pairs,)``: infusion duration ``AMT/RATE`` (``> 0``) for
        zero-order inputs, ``0`` for boluses.

    Examples
    --------
    >>> pairs = DosePairs(obs=[0, 1], subject=[0, 0], dt=[1.0, 2.0], amt=[100.0, 100.0],
    ...                   duration=[0.0, 0.0])
    >>> pairs.n_pairs, DosePairs.empty().n_pairs
    (2, 0)
    """

    obs: np.ndarray
    subject: np.ndarray
    dt: np.ndarray
    amt: np.ndarray
    duration: np.ndarray

    def __post_init__(self) -> None:
        for name, dtype in (
            ("obs", np.int64),
            ("subject", np.int64),
            ("dt", np.float64),
            ("amt", np.float64),
            ("duration", np.float64),
        ):
            object.__setattr__(self, name, _frozen_array(getattr(self, name), dtype, name))
        n = self.obs.shape[0]
        others = ("subject", "dt", "amt", "duration")
        lengths = {name: getattr(self, name).shape[0] for name in others}
        bad = {name: size for name, size in lengths.items() if size != n}
        if bad:
            raise DatasetError(
                f"DosePairs arrays must all have the length of obs ({n}); got {bad}."
            )
        for name in ("dt", "duration"):
            values = getattr(self, name)
            wrong = np.flatnonzero(~(values >= 0) | ~np.isfinite(values))
            if wrong.size:
                raise DatasetError(
                    f"DosePairs.{name} must be finite and >= 0; got {values[wrong[:5]].tolist()} "
                    f"at pairs {wrong[:5].tolist()}."
                )

    @property
    def n_pairs(self) -> int:
        """Number of (observation, dose) pairs.

        Examples
        --------
        >>> pairs = DosePairs(obs=[0, 1, 1], subject=[0, 0, 0], dt=[1.0, 2.0, 14.0],
        ...                   amt=[100.0, 100.0, 50.0], duration=[0.0, 0.0, 0.0])
        >>> pairs.n_pairs  # observation 1 follows two doses
        3
        """
        return int(self.obs.shape[0])

    @classmethod
    def empty(cls) -> DosePairs:
        """Return a group with no pairs.

        Examples
        --------
        >>> DosePairs.empty().n_pairs
        0
        """
        return cls(obs=[], subject=[], dt=[], amt=[], duration=[])


@dataclass(frozen=True)
class EventSchedule:
    """Observations and dose-observation pairs of a whole dataset, grouped by route.

    Attributes
    ----------
    n_subjects, n_obs : int
        Number of subjects and of observations.
    obs_subject : numpy.ndarray
        ``int64 (n_obs,)``: subject index of each observation.
    obs_time : numpy.ndarray
        ``float64 (n_obs,)``: time of each observation.
    iv_bolus : DosePairs
        Boluses into the central compartment.
    iv_infusion : DosePairs
        Zero-order infusions into the central compartment.
    oral : DosePairs
        Boluses into the depot (first-order absorption).
    oral_infusion : DosePairs
        Zero-order inputs into the depot.

    Examples
    --------
    >>> bolus = DosePairs(obs=[0], subject=[0], dt=[2.0], amt=[100.0], duration=[0.0])
    >>> schedule = EventSchedule(n_subjects=1, n_obs=1, obs_subject=[0], obs_time=[2.0],
    ...                          iv_bolus=bolus)
    >>> schedule.oral.n_pairs
    0
    """

    n_subjects: int
    n_obs: int
    obs_subject: np.ndarray
    obs_time: np.ndarray
    iv_bolus: DosePairs = field(default_factory=DosePairs.empty)
    iv_infusion: DosePairs = field(default_factory=DosePairs.empty)
    oral: DosePairs = field(default_factory=DosePairs.empty)
    oral_infusion: DosePairs = field(default_factory=DosePairs.empty)

    def __post_init__(self) -> None:
        object.__setattr__(self, "n_subjects", int(self.n_subjects))
        object.__setattr__(self, "n_obs", int(self.n_obs))
        subj = _frozen_array(self.obs_subject, np.int64, "obs_subject")
        time = _frozen_array(self.obs_time, np.float64, "obs_time")
        object.__setattr__(self, "obs_subject", subj)
        object.__setattr__(self, "obs_time", time)
        if subj.shape[0] != self.n_obs or time.shape[0] != self.n_obs:
            raise DatasetError(
                f"obs_subject and obs_time must have n_obs={self.n_obs} entries; "
                f"got {subj.shape[0]} and {time.shape[0]}."
            )
        if subj.size and (subj.min() < 0 or subj.max() >= self.n_subjects):
            raise DatasetError(f"obs_subject must lie in 0..{self.n_subjects - 1}.")
        for name, pairs in self.groups().items():
            if not isinstance(pairs, DosePairs):
                raise DatasetError(f"EventSchedule.{name} must be DosePairs, got {type(pairs)}.")
            if pairs.n_pairs == 0:
                continue
            if pairs.obs.min() < 0 or pairs.obs.max() >= self.n_obs:
                raise DatasetError(f"{name}.obs must lie in 0..{self.n_obs - 1}.")
            mismatch = np.flatnonzero(subj[pairs.obs] != pairs.subject)
            if mismatch.size:
                raise DatasetError(
                    f"{name}.subject disagrees with obs_subject at pairs {mismatch[:5].tolist()}."
                )

    def groups(self) -> dict[str, DosePairs]:
        """Return the four route groups by field name.

        Examples
        --------
        >>> import nlme_bayes as nb
        >>> from nlme_bayes.events import build_schedule
        >>> data, oral = nb.datasets.theophylline(), nb.OneCompartment(route="oral")
        >>> schedule, _ = build_schedule(data, oral)
        >>> {name: group.n_pairs for name, group in schedule.groups().items()}
        {'iv_bolus': 0, 'iv_infusion': 0, 'oral': 132, 'oral_infusion': 0}
        """
        return {
            "iv_bolus": self.iv_bolus,
            "iv_infusion": self.iv_infusion,
            "oral": self.oral,
            "oral_infusion": self.oral_infusion,
        }
