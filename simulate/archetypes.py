"""The catalogue of kinds of people: one small frozen record type per kind of behaviour.

A world is drawn from ``ARCHETYPES`` (share, true commuter?, behaviour):

    daily_rail          10%  yes  DailyCommuter: intercity train, mostly Wuqing, in ~07:00, out ~18:30
    daily_car_dawn      10%  yes  DailyCommuter: Xianghe driver via CK-G1-XIJI, in ~06:30, out ~19:00
    weekly_fri_sun       3%  yes  WeeklyStay: works in Tianjin, home in Beijing: in Friday, out Sunday
    hybrid               5%  yes  OfficeDays: 2-3 fixed office weekdays, morning in / evening out
    shift_24_48          3%  yes  ShiftRota: 24h on / 48h off, in ~07:30, out ~08:30 next day
    night_shift          2%  yes  DailyCommuter: in ~21:30 on working days, out ~06:30 next morning
    new_job              2%  yes  NewStarter: daily commuter who started 1-28 days before as_of
                                  (every day of the default window: the time to badge is trained)
    partially_observed   4%  yes  DailyCommuter: roads mostly without checkpoints (35-60% seen)
    bus_commuter         3%  yes  DailyCommuter: daily coach from Yanjiao or Zhuozhou
    truck_driver         6%  no   IrregularDriver: 60% of days, 1-4 round trips at any hour
    ride_hail            4%  no   IrregularDriver: 70% of days, 1-3 short round trips 06-21h
    shuttle_driver       2%  no   ShuttleDriver: fixed timetable of 4 or 6 crossings, 85% of days
    business_traveller   8%  no   Visitor: 1-3 rail trips a month, each a stay of 1-3 days
    weekend_visitor      8%  no   WeekendVisits: in Saturday morning, out Sunday evening, 2-4 weekends
    hospital_carer       3%  no   CareVisits: daily in 08-11h / out 17-21h for 10-20 days
    stopped_commuting    4%  no   FormerCommuter: daily commuter until 21-30 days before as_of
    short_visit          3%  no   CareVisits: a round trip every day for 1-5 days in a row (a course,
                                  a short assignment, a relative's treatment): a new starter's twin
    occasional_visitor  20%  no   Visitor: 1-4 visits, short round trips or single crossings

Kinds a training world drawn from ``ARCHETYPES`` lacks (``UNSEEN_KINDS``; add them with
``WorldSettings.with_kinds`` or through month drift, ``DriftSettings.new_kinds``):

    treatment_escort    no   CareVisits: takes a relative to daily hospital treatment on working
                             days for 20-40 days, in ~08:00, out ~13:00
    patient_carer       no   CareVisits: paid carer of a patient, every day for 15-35 days,
                             in ~07:30, out ~20:00
    drive_for_hire      no   IrregularDriver: private driver for hire, 55% of days, 1-2 long
                             round trips 07-20h through a few checkpoints
    one_day_hybrid      yes  OfficeDays: 1-2 fixed office weekdays a week
    back_roads_driver   yes  DailyCommuter: daily driver seen at only 20-40% of crossings

Holiday months (``FESTIVAL_VISITORS``, added by ``WorldSettings.for_holidays``):

    festival_visitor    no   FestivalVisitor: a family visit over a long statutory holiday (the
                             Spring Festival, National Day): in up to 3 days before, out up to 3
                             days after, or the reverse for Beijing people visiting family outside

Every record has ``name``, ``share`` (of the population; a catalogue's shares sum to 1),
``description``, ``routes`` (home site -> weight; the mode is rail at RL- sites, else
``road_mode``), ``p_alt`` (share of crossings through the person's fixed second site of that kind)
and ``p_any`` (through any site of that kind: drivers roam). ``is_commuter`` is the ground truth
and belongs to the type; ``takes_leave`` says whether the kind follows the statutory calendar and
so takes days of leave around long holidays when a world asks for it. Pairs ``(lo, hi)`` are
ranges drawn uniformly, per person or per trip as each field says. Field metadata ``vary`` tells
``variation.perturb`` how a parameter may be randomised (probability, clock time, spread, count).
The generator for each type is in ``generate.py``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, ClassVar, Literal

from commuter_badge.simulate.sites import ALL_RAIL, ALL_ROAD, SITE_INDEX

Range = tuple[float, float]
IntRange = tuple[int, int]


def _vary(kind: str, default: Any = dataclasses.MISSING, *, most: int | None = None) -> Any:
    """A field that ``variation.perturb`` may randomise: prob, clock, spread or count (<= most)."""
    return field(default=default, metadata={"vary": kind, "most": most})


@dataclass(frozen=True, kw_only=True)
class Archetype:
    """What every kind of person has: who they are, how many, and where they cross."""

    name: str
    share: float
    description: str
    routes: Mapping[str, float]
    road_mode: Literal["car", "bus"] = "car"
    p_alt: float = 0.05
    p_any: float = 0.0
    is_commuter: ClassVar[bool] = False
    takes_leave: ClassVar[bool] = False

    def __post_init__(self) -> None:  # read-only mappings, so a catalogue cannot drift at runtime
        object.__setattr__(self, "routes", MappingProxyType(dict(self.routes)))
        unknown = sorted(set(self.routes) - set(SITE_INDEX))
        if unknown or not self.routes:
            raise ValueError(f"archetype {self.name}: unknown or no route sites {unknown}")
        if not 0.0 <= self.share <= 1.0 or not 0.0 <= self.p_alt + self.p_any <= 1.0:
            raise ValueError(f"archetype {self.name}: share and p_alt + p_any must be in [0, 1]")


@dataclass(frozen=True, kw_only=True)
class _OneRoundTripADay(Archetype):
    """Kinds that come in and go out once on each of their days: attendance and clock times.

    ``in_h``/``out_h`` are the kind's mean clock times (hours; each person keeps a habit around
    them), ``in_sd``/``out_sd`` the day-to-day spread, ``out_next_day`` 1 for overnight stays, and
    ``observe`` a per-person range of the probability that a crossing is seen at all.
    """

    attend: float = _vary("prob")
    in_h: float = _vary("clock")
    in_sd: float = _vary("spread")
    out_h: float = _vary("clock")
    out_sd: float = _vary("spread")
    out_next_day: int = 0
    observe: Range | None = _vary("prob", None)


@dataclass(frozen=True, kw_only=True)
class DailyCommuter(_OneRoundTripADay):
    """Comes on every statutory working day (off on holidays, in on make-up weekends)."""

    is_commuter: ClassVar[bool] = True
    takes_leave: ClassVar[bool] = True


@dataclass(frozen=True, kw_only=True)
class NewStarter(_OneRoundTripADay):
    """A daily commuter whose job began ``start_ago`` days before as_of."""

    start_ago: IntRange = _vary("count")
    is_commuter: ClassVar[bool] = True
    takes_leave: ClassVar[bool] = True


@dataclass(frozen=True, kw_only=True)
class FormerCommuter(_OneRoundTripADay):
    """Was a daily commuter until ``stop_ago`` days before as_of: no longer one."""

    stop_ago: IntRange = _vary("count")
    takes_leave: ClassVar[bool] = True


@dataclass(frozen=True, kw_only=True)
class OfficeDays(_OneRoundTripADay):
    """Hybrid work: the same ``office_days`` weekdays every week, when they are working days."""

    office_days: IntRange = _vary("count", most=5)
    is_commuter: ClassVar[bool] = True
    takes_leave: ClassVar[bool] = True


@dataclass(frozen=True, kw_only=True)
class ShiftRota(_OneRoundTripADay):
    """One shift every ``cycle`` days whatever the calendar (24 h on, 48 h off at cycle 3)."""

    cycle: int = 3
    is_commuter: ClassVar[bool] = True


@dataclass(frozen=True, kw_only=True)
class CareVisits(_OneRoundTripADay):
    """Daily visits for a contiguous ``block`` of days inside the feature window: not work.

    ``days`` is "all" for a patient's bedside, "workday" for treatment a hospital gives on
    working days only.
    """

    block: IntRange = _vary("count")
    days: Literal["all", "workday"] = "all"


@dataclass(frozen=True, kw_only=True)
class _WeeklyTrip(Archetype):
    """In on weekday ``in_dow`` (0 = Monday) in ``in_h``, out ``stay_days`` later in ``out_h``."""

    in_dow: int
    in_h: Range = _vary("clock")
    stay_days: int
    out_h: Range = _vary("clock")


@dataclass(frozen=True, kw_only=True)
class WeeklyStay(_WeeklyTrip):
    """Lives in Beijing, works outside: home every week with probability ``attend``."""

    attend: float = _vary("prob")
    is_commuter: ClassVar[bool] = True


@dataclass(frozen=True, kw_only=True)
class WeekendVisits(_WeeklyTrip):
    """Visits family on ``weeks`` of the weekends available (a fixed number, per person)."""

    weeks: IntRange = _vary("count")


@dataclass(frozen=True, kw_only=True)
class IrregularDriver(Archetype):
    """Drives for a living: on a day with probability ``p_day``, several round trips at any hour.

    ``trips_per_day`` are the weights of 1, 2, ... round trips; ``hours`` the range of entry
    times, ``stay_h`` of the time spent inside.
    """

    p_day: float = _vary("prob")
    trips_per_day: tuple[float, ...]
    hours: Range = _vary("clock")
    stay_h: Range = _vary("spread")


@dataclass(frozen=True, kw_only=True)
class ShuttleDriver(Archetype):
    """A personal timetable of ``legs`` crossings (weights), kept on a share ``p_day`` of days."""

    p_day: float = _vary("prob")
    legs: Mapping[int, float]
    first_h: Range = _vary("clock")
    gap_h: Range = _vary("spread")
    jitter_h: float = _vary("spread")

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "legs", MappingProxyType(dict(self.legs)))


@dataclass(frozen=True, kw_only=True)
class Visitor(Archetype):
    """A few visits: ``visits`` in the simulated span (or per 30 days with ``per_month``).

    Each enters in ``in_h``, stays ``stay_days`` and leaves in ``out_h``; with probability
    ``p_single`` only one leg is seen (the other went by an unobserved route).
    """

    visits: IntRange = _vary("count")
    per_month: bool
    in_h: Range = _vary("clock")
    stay_days: IntRange
    out_h: Range = _vary("clock")
    p_single: float = _vary("prob")


@dataclass(frozen=True, kw_only=True)
class FestivalVisitor(Archetype):
    """A family visit over each long statutory holiday in the simulated span (none without one).

    Arrives ``arrive_before`` days before the holiday's first day and leaves ``leave_after`` days
    after its last, in ``in_h``/``out_h``. With probability ``p_reverse`` the person lives in
    Beijing and visits family outside: out first, back in at the end.
    """

    arrive_before: IntRange = (0, 3)
    leave_after: IntRange = (0, 3)
    in_h: Range = _vary("clock", (8.0, 20.0))
    out_h: Range = _vary("clock", (8.0, 20.0))
    p_reverse: float = _vary("prob", 0.5)


ARCHETYPES: tuple[Archetype, ...] = (
    DailyCommuter(
        name="daily_rail",
        share=0.10,
        description="intercity train every working day",
        routes={
            "RL-WUQING": 0.5,
            "RL-LANGFANG": 0.2,
            "RL-TIANJIN-SOUTH": 0.15,
            "RL-ZHUOZHOU": 0.15,
        },
        attend=0.95,
        in_h=7.0,
        in_sd=0.33,
        out_h=18.5,
        out_sd=0.67,
    ),
    DailyCommuter(
        name="daily_car_dawn",
        share=0.10,
        description="drives in at dawn every working day",
        routes={
            "CK-G1-XIJI": 0.5,
            "CK-G2-CAIYU": 0.15,
            "CK-G102-BAIMIAO": 0.15,
            "CK-G4-DUDIAN": 0.1,
            "CK-G45-YUFA": 0.1,
        },
        attend=0.93,
        in_h=6.5,
        in_sd=0.33,
        out_h=19.0,
        out_sd=0.75,
    ),
    WeeklyStay(
        name="weekly_fri_sun",
        share=0.03,
        description="works in Tianjin, home in Beijing at weekends",
        routes={
            "RL-TIANJIN-SOUTH": 0.3,
            "RL-TIANJIN": 0.2,
            "CK-G2-CAIYU": 0.3,
            "CK-G1N-BAODI": 0.2,
        },
        in_dow=4,
        in_h=(18, 22),
        stay_days=2,
        out_h=(14, 20),
        attend=0.9,
    ),
    OfficeDays(
        name="hybrid",
        share=0.05,
        description="2-3 fixed office weekdays a week",
        routes={
            "RL-WUQING": 0.3,
            "RL-LANGFANG": 0.2,
            "CK-G1-XIJI": 0.2,
            "CK-G102-BAIMIAO": 0.15,
            "CK-G95-LANGFANG": 0.15,
        },
        office_days=(2, 3),
        attend=0.9,
        in_h=8.5,
        in_sd=0.5,
        out_h=18.0,
        out_sd=0.75,
    ),
    ShiftRota(
        name="shift_24_48",
        share=0.03,
        description="24 hours on, 48 hours off, whatever the calendar",
        routes={
            "CK-G102-BAIMIAO": 0.3,
            "CK-YANJIAO-CHAOBAI": 0.2,
            "CK-G4-DUDIAN": 0.2,
            "RL-ZHUOZHOU": 0.15,
            "CK-G3-DACHANG": 0.15,
        },
        attend=0.97,
        in_h=7.5,
        in_sd=0.25,
        out_h=8.5,
        out_sd=0.33,
        out_next_day=1,
    ),
    DailyCommuter(
        name="night_shift",
        share=0.02,
        description="night shift on working days, home next morning",
        routes={
            "CK-G1-XIJI": 0.3,
            "CK-G102-BAIMIAO": 0.3,
            "CK-G95-LANGFANG": 0.2,
            "CK-G45-YUFA": 0.2,
        },
        attend=0.93,
        in_h=21.5,
        in_sd=0.33,
        out_h=6.5,
        out_sd=0.33,
        out_next_day=1,
    ),
    NewStarter(
        name="new_job",
        share=0.02,
        description="daily commuter since 1-28 days before as_of",
        routes={"RL-WUQING": 0.3, "RL-LANGFANG": 0.2, "CK-G1-XIJI": 0.3, "CK-G102-BAIMIAO": 0.2},
        attend=0.95,
        in_h=7.2,
        in_sd=0.4,
        out_h=18.5,
        out_sd=0.7,
        start_ago=(1, 28),
    ),
    DailyCommuter(
        name="partially_observed",
        share=0.04,
        description="daily commuter, roads mostly without checkpoints",
        routes={
            "CK-G3-DACHANG": 1,
            "CK-YANJIAO-CHAOBAI": 1,
            "CK-G107-LIULIHE": 1,
            "CK-G6-KANGZHUANG": 1,
        },
        attend=0.93,
        in_h=7.3,
        in_sd=0.4,
        out_h=18.7,
        out_sd=0.7,
        observe=(0.35, 0.6),
    ),
    DailyCommuter(
        name="bus_commuter",
        share=0.03,
        description="daily coach from Yanjiao or Zhuozhou",
        routes={
            "CK-G102-BAIMIAO": 0.5,
            "CK-YANJIAO-CHAOBAI": 0.2,
            "CK-G4-DUDIAN": 0.2,
            "CK-G107-LIULIHE": 0.1,
        },
        road_mode="bus",
        attend=0.92,
        in_h=6.8,
        in_sd=0.33,
        out_h=19.0,
        out_sd=0.67,
    ),
    IrregularDriver(
        name="truck_driver",
        share=0.06,
        description="irregular freight runs day and night",
        routes=ALL_ROAD,
        p_alt=0.2,
        p_any=0.4,
        p_day=0.6,
        trips_per_day=(0.55, 0.25, 0.12, 0.08),
        hours=(0, 24),
        stay_h=(1, 9),
    ),
    IrregularDriver(
        name="ride_hail",
        share=0.04,
        description="intercity ride-hail driver",
        routes=ALL_ROAD,
        p_alt=0.2,
        p_any=0.5,
        p_day=0.7,
        trips_per_day=(0.4, 0.4, 0.2),
        hours=(6, 21),
        stay_h=(0.5, 2),
    ),
    ShuttleDriver(
        name="shuttle_driver",
        share=0.02,
        description="scheduled shuttle bus, weekends too",
        routes={
            "CK-G102-BAIMIAO": 0.3,
            "CK-G4-DUDIAN": 0.2,
            "CK-G1-XIJI": 0.2,
            "CK-G95-LANGFANG": 0.15,
            "CK-G45-YUFA": 0.15,
        },
        road_mode="bus",
        p_alt=0.0,
        p_day=0.85,
        legs={4: 0.6, 6: 0.4},
        first_h=(6.5, 8.0),
        gap_h=(1.5, 3.0),
        jitter_h=0.15,
    ),
    Visitor(
        name="business_traveller",
        share=0.08,
        description="a few rail trips a month, 1-3 days each",
        routes=ALL_RAIL,
        p_alt=0.1,
        p_any=0.2,
        visits=(1, 3),
        per_month=True,
        in_h=(7, 12),
        stay_days=(0, 2),
        out_h=(15, 21),
        p_single=0.0,
    ),
    WeekendVisits(
        name="weekend_visitor",
        share=0.08,
        description="visits family on some weekends",
        routes={
            "CK-G1-XIJI": 1,
            "CK-G2-CAIYU": 1,
            "CK-G4-DUDIAN": 1,
            "CK-G6-KANGZHUANG": 1,
            "CK-G45-YUFA": 1,
            "CK-G1N-BAODI": 1,
        },
        in_dow=5,
        in_h=(8, 11),
        stay_days=1,
        out_h=(16, 21),
        weeks=(2, 4),
    ),
    CareVisits(
        name="hospital_carer",
        share=0.03,
        description="visits a Beijing hospital daily for 10-20 days",
        routes={
            "CK-G102-BAIMIAO": 1,
            "CK-G1-XIJI": 1,
            "CK-G4-DUDIAN": 1,
            "RL-LANGFANG": 1,
            "RL-TIANJIN-SOUTH": 1,
        },
        attend=0.95,
        in_h=9.5,
        in_sd=0.8,
        out_h=19.0,
        out_sd=1.0,
        block=(10, 20),
    ),
    FormerCommuter(
        name="stopped_commuting",
        share=0.04,
        description="daily commuter until 21-30 days before as_of",
        routes={"RL-WUQING": 0.3, "CK-G1-XIJI": 0.3, "CK-G102-BAIMIAO": 0.2, "RL-LANGFANG": 0.2},
        attend=0.94,
        in_h=7.0,
        in_sd=0.4,
        out_h=18.7,
        out_sd=0.7,
        stop_ago=(21, 30),
    ),
    CareVisits(
        name="short_visit",
        share=0.03,
        description="a round trip every day for 1-5 days in a row",
        routes={
            "CK-G1-XIJI": 1,
            "CK-G102-BAIMIAO": 1,
            "CK-G4-DUDIAN": 1,
            "RL-WUQING": 1,
            "RL-LANGFANG": 1,
        },
        attend=1.0,
        in_h=8.0,
        in_sd=0.7,
        out_h=18.0,
        out_sd=1.0,
        block=(1, 5),
    ),
    Visitor(
        name="occasional_visitor",
        share=0.20,
        description="a few visits or single crossings",
        routes={**ALL_ROAD, **ALL_RAIL},
        p_alt=0.0,
        p_any=0.1,
        visits=(1, 4),
        per_month=False,
        in_h=(8, 14),
        stay_days=(0, 1),
        out_h=(15, 22),
        p_single=0.4,
    ),
)

# Shares here are what each kind takes when added (the others shrink to make room).
UNSEEN_KINDS: tuple[Archetype, ...] = (
    CareVisits(
        name="treatment_escort",
        share=0.03,
        description="takes a relative to daily hospital treatment on working days",
        routes={
            "CK-G102-BAIMIAO": 1,
            "CK-G1-XIJI": 1,
            "CK-G4-DUDIAN": 1,
            "RL-LANGFANG": 1,
            "RL-WUQING": 1,
        },
        attend=0.97,
        in_h=8.0,
        in_sd=0.5,
        out_h=13.0,
        out_sd=1.0,
        block=(20, 40),
        days="workday",
    ),
    CareVisits(
        name="patient_carer",
        share=0.02,
        description="paid carer of a Beijing patient, every day for some weeks",
        routes={"CK-G102-BAIMIAO": 1, "CK-YANJIAO-CHAOBAI": 1, "CK-G4-DUDIAN": 1, "RL-ZHUOZHOU": 1},
        attend=0.9,
        in_h=7.5,
        in_sd=0.5,
        out_h=20.0,
        out_sd=0.7,
        block=(15, 35),
    ),
    IrregularDriver(
        name="drive_for_hire",
        share=0.03,
        description="private driver for hire, long days through a few checkpoints",
        routes={"CK-G1-XIJI": 1, "CK-G2-CAIYU": 1, "CK-G4-DUDIAN": 1, "CK-G95-LANGFANG": 1},
        p_alt=0.15,
        p_any=0.15,
        p_day=0.55,
        trips_per_day=(0.7, 0.3),
        hours=(7, 12),
        stay_h=(4, 10),
    ),
    OfficeDays(
        name="one_day_hybrid",
        share=0.03,
        description="1-2 fixed office weekdays a week",
        routes={"RL-WUQING": 1, "RL-LANGFANG": 1, "CK-G1-XIJI": 1, "CK-G95-LANGFANG": 1},
        office_days=(1, 2),
        attend=0.9,
        in_h=8.7,
        in_sd=0.5,
        out_h=18.0,
        out_sd=0.75,
    ),
    DailyCommuter(
        name="back_roads_driver",
        share=0.02,
        description="daily driver, seen at only a fifth to two fifths of crossings",
        routes={"CK-G3-DACHANG": 1, "CK-G107-LIULIHE": 1, "CK-G6-KANGZHUANG": 1, "CK-G45-YUFA": 1},
        attend=0.93,
        in_h=7.0,
        in_sd=0.4,
        out_h=18.8,
        out_sd=0.7,
        observe=(0.2, 0.4),
    ),
)

FESTIVAL_VISITORS = FestivalVisitor(
    name="festival_visitor",
    share=0.05,
    description="a family visit over a long statutory holiday",
    routes={**ALL_ROAD, **ALL_RAIL},
    p_alt=0.0,
    p_any=0.1,
)


def check_catalogue(archetypes: tuple[Archetype, ...]) -> None:
    """Shares sum to 1 and names are unique: what every world's catalogue must satisfy."""
    if abs(sum(a.share for a in archetypes) - 1.0) > 1e-9:
        raise ValueError(f"archetype shares must sum to 1, not {sum(a.share for a in archetypes)}")
    names = [a.name for a in archetypes]
    if len(set(names)) != len(names):
        raise ValueError(f"archetype names must be unique: {names}")


check_catalogue(ARCHETYPES)


def catalogue_before_issue_31() -> tuple[Archetype, ...]:
    """The default catalogue as it was until issue 31: starters only 8-18 days into their job and
    no short visits (their share with the occasional visitors). Its worlds are bit-identical to
    the old default worlds: what benchmarks compare against and a test pins."""
    old = {"new_job": {"start_ago": (8, 18)}, "occasional_visitor": {"share": 0.23}}
    return tuple(
        dataclasses.replace(a, **old.get(a.name, {})) for a in ARCHETYPES if a.name != "short_visit"
    )
