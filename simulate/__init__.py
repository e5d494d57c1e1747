"""Synthetic worlds of Beijing boundary crossings (test, demo, training and benchmark data only).

- ``archetypes.py``: the catalogue of kinds of people, one frozen record type per behaviour.
- ``generate.py``: one generator per record type (clean crossings).
- ``messiness.py``: the feed's faults and the label noise, kept apart from behaviour.
- ``world.py``: ``simulate_world`` assembles one month; ``write.py`` writes it (atomically).
- ``variation.py``: ``WorldSettings``: perturbed parameters and mixes, unseen kinds, holidays.
- ``months.py``: ``simulate_months``: persistent persons over several months, with drift.

Worlds a model trained on a default world has not seen (pass as ``settings=``; details and
defaults in ``variation.py``):

    WorldSettings().perturbed(seed)             every kind's parameters and the mix randomised
    WorldSettings().with_kinds(UNSEEN_KINDS)    kinds no default world holds
    WorldSettings().for_holidays()              leave next to long holidays, family visits over
                                                them; e.g. as_of=SPRING_FESTIVAL_2022_AS_OF
    DriftSettings(mix=..., new_kinds=...)       how later months of simulate_months differ
"""

from commuter_badge.simulate.archetypes import ARCHETYPES, FESTIVAL_VISITORS, UNSEEN_KINDS
from commuter_badge.simulate.months import DriftSettings, monthly_as_ofs, simulate_months
from commuter_badge.simulate.variation import (
    SPRING_FESTIVAL_2022_AS_OF,
    HolidayLeave,
    WorldSettings,
)
from commuter_badge.simulate.world import World, simulate_world
from commuter_badge.simulate.write import write_months, write_world

__all__ = [
    "ARCHETYPES",
    "DriftSettings",
    "FESTIVAL_VISITORS",
    "SPRING_FESTIVAL_2022_AS_OF",
    "UNSEEN_KINDS",
    "HolidayLeave",
    "World",
    "WorldSettings",
    "monthly_as_ofs",
    "simulate_months",
    "simulate_world",
    "write_months",
    "write_world",
]
