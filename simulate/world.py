"""One synthetic world of Beijing boundary crossings, for demos, tests, training and benchmarks.

A world is a population drawn from a catalogue of archetypes (``archetypes.py``: the default
``ARCHETYPES`` and their shares and behaviour are listed there), their observed crossings in the
contract's trip format (contract section 1), noisy labels, and the ground truth behind them. The
days simulated are described in ``timeline.py``; instants are stored in UTC. ``simulate_world``
assembles a world: it assigns persons to archetypes, gives each a home and a second site, asks each
archetype's generator (``generate.py``) for clean crossings, places them on sites, and then lets
``messiness.py`` damage the feed and the labels. ``WorldSettings`` (``variation.py``) varies all of
it; month sequences are in ``months.py``; writing files is in ``write.py``.

Random streams are independent per purpose (assignment, each archetype, the feed's noise, the
labels), so changing one archetype leaves the others, the noise and the labels alone, and the same
arguments always give identical tables.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa

from commuter_badge.features.schema import MODES
from commuter_badge.features.workdays import SHANGHAI_OFFSET_SECONDS, day_number
from commuter_badge.settings import DEFAULT_WINDOW_DAYS
from commuter_badge.simulate.archetypes import ARCHETYPES, Archetype
from commuter_badge.simulate.generate import DAY, crossings
from commuter_badge.simulate.messiness import LABEL_NOISE, flip_labels, messy_trips
from commuter_badge.simulate.sites import IS_RAIL, RAIL_SITES, ROAD_SITES, SITE_INDEX, SITES
from commuter_badge.simulate.timeline import Timeline, timeline
from commuter_badge.simulate.variation import WorldSettings
from commuter_badge.simulate.write import write_world

__all__ = ["ARCHETYPES", "LABEL_NOISE", "World", "simulate_world", "write_world"]

Progress = Callable[[int, int], None]


@dataclass(frozen=True, eq=False)  # == on DataFrames is ambiguous; compare the tables themselves
class World:
    trips: pa.Table  # the 6 contract columns, rows in random order
    labels: pd.DataFrame  # person_id, is_commuter (0/1, noisy)
    persons: pd.DataFrame  # person_id, archetype, true_commuter, label_flipped, home_region,
    #                        main_mode


@dataclass(frozen=True)
class Homes:
    """Each person's home site and second site (codes into ``sites.SITE_IDS``)."""

    home: np.ndarray
    alt: np.ndarray


def simulate_world(
    persons: int,
    as_of: dt.date,
    seed: int,
    window_days: int = DEFAULT_WINDOW_DAYS,
    label_noise: float = LABEL_NOISE,
    progress: Progress | None = None,
    settings: WorldSettings | None = None,
) -> World:
    """Simulate `persons` people around `as_of`; the same arguments give identical tables.

    `progress(done, total)` is called after each archetype and once more when the tables are
    assembled (total = number of archetypes + 1). Raises CalendarRangeError outside the years the
    working-day calendar covers (chinesecalendar's, plus a schedule file's: `WorldSettings.calendar`).
    """
    settings = settings or WorldSettings()
    check_arguments(persons, window_days, seed, label_noise)
    streams = np.random.SeedSequence(seed)
    assign_ss = streams.spawn(1)[0]
    archetype = np.repeat(np.arange(len(settings.archetypes)), counts(persons, settings.archetypes))
    archetype = archetype[np.random.default_rng(assign_ss).permutation(persons)]
    world, _ = populate(
        archetype, as_date(as_of), window_days, streams, person_ids(persons, seed), settings,
        label_noise, progress,
    )  # fmt: skip
    return world


def check_arguments(persons: int, window_days: int, seed: int, label_noise: float) -> None:
    if persons < 0 or window_days < 1 or seed < 0 or not 0 <= label_noise <= 0.5:
        raise ValueError("need persons >= 0, window_days >= 1, seed >= 0, 0 <= label_noise <= 0.5")


def as_date(as_of: dt.date) -> dt.date:
    return as_of.date() if isinstance(as_of, dt.datetime) else as_of


def populate(
    archetype: np.ndarray,
    as_of: dt.date,
    window_days: int,
    streams: np.random.SeedSequence,
    ids: pa.StringArray,
    settings: WorldSettings,
    label_noise: float,
    progress: Progress | None = None,
    keep_homes: tuple[np.ndarray, Homes] | None = None,
) -> tuple[World, Homes]:
    """The world of persons whose archetypes (indices into the catalogue) are given.

    `streams` must have spawned exactly one child so far (the assignment's). `keep_homes` is
    (mask, previous homes): masked persons keep their home and second site, which month sequences
    use for people who stay who they were; the draws are made regardless, so keeping homes never
    shifts anyone else's random numbers.
    """
    catalogue = settings.archetypes
    line = timeline(as_of, window_days, settings.calendar)
    noise_ss, label_ss, *arch_ss = streams.spawn(2 + len(catalogue))
    persons = len(archetype)
    leave = None
    if settings.holiday_leave is not None:
        takes = np.array([a.takes_leave for a in catalogue], dtype=bool)[archetype]
        leave_rng = np.random.default_rng(streams.spawn(1)[0])
        leave = settings.holiday_leave.mask(takes, line, leave_rng)
    homes = Homes(np.zeros(persons, dtype=np.int8), np.zeros(persons, dtype=np.int8))
    main_mode = np.zeros(persons, dtype=np.int8)
    parts: list[tuple[np.ndarray, ...]] = []
    total_steps = len(catalogue) + 1
    for k, (a, ss) in enumerate(zip(catalogue, arch_ss, strict=True)):
        members = np.flatnonzero(archetype == k)
        part, my_home, my_alt, my_mode = _one_archetype(
            a, members, line, np.random.default_rng(ss), leave, keep_homes
        )
        parts.append(part)
        homes.home[members], homes.alt[members], main_mode[members] = my_home, my_alt, my_mode
        if progress:
            progress(k + 1, total_steps)

    names = ("person", "t", "direction", "site", "mode")
    columns = {name: np.concatenate([part[i] for part in parts]) for i, name in enumerate(names)}
    del parts
    utc_start = day_number(line.start) * DAY - SHANGHAI_OFFSET_SECONDS
    trips = messy_trips(
        columns, line.n_days, utc_start, ids, np.random.default_rng(noise_ss), settings.messiness
    )
    true_commuter = np.array([a.is_commuter for a in catalogue], dtype=np.int64)[archetype]
    flipped = flip_labels(persons, label_noise, np.random.default_rng(label_ss))
    world = _tables(ids, catalogue, archetype, true_commuter, flipped, homes.home, main_mode, trips)
    if progress:
        progress(total_steps, total_steps)
    return world, homes


def _one_archetype(
    a: Archetype,
    members: np.ndarray,
    line: Timeline,
    rng: np.random.Generator,
    leave: np.ndarray | None,
    keep_homes: tuple[np.ndarray, Homes] | None,
):
    """Crossings of one archetype's members, on sites: mostly home, sometimes the second site."""
    n = len(members)
    route = np.array([SITE_INDEX[s] for s in a.routes])
    weights = np.array(list(a.routes.values()), dtype=float)
    my_home = route[rng.choice(len(route), size=n, p=weights / weights.sum())]
    rail = IS_RAIL[my_home]
    my_alt = np.where(rail, rng.choice(RAIL_SITES, n), rng.choice(ROAD_SITES, n))
    if keep_homes is not None:
        keep, previous = keep_homes[0][members], keep_homes[1]
        my_home = np.where(keep, previous.home[members], my_home)
        my_alt = np.where(keep, previous.alt[members], my_alt)
        rail = IS_RAIL[my_home]
    road = MODES.index(a.road_mode)
    my_mode = np.where(rail, MODES.index("rail"), road).astype(np.int8)
    p, t, direction = crossings(a, n, line, rng, None if leave is None else leave[members])
    # Site per crossing: mostly the home route, sometimes the second site, or any of its kind.
    u = rng.random(len(p))
    anywhere = np.where(rail[p], rng.choice(RAIL_SITES, len(p)), rng.choice(ROAD_SITES, len(p)))
    site = np.where(u < a.p_any, anywhere, np.where(u < a.p_any + a.p_alt, my_alt[p], my_home[p]))
    part = (
        members[p].astype(np.int32),
        t.astype(np.int64),
        direction.astype(np.int8),
        site.astype(np.int8),
        my_mode[p],
    )
    return part, my_home, my_alt, my_mode


def _tables(ids, catalogue, archetype, true_commuter, flipped, home, main_mode, trips) -> World:
    person_id = ids.to_pandas()

    def text(values, codes: np.ndarray) -> pd.api.extensions.ExtensionArray:
        return pd.array(np.array(values, dtype=object)[codes], dtype="str")

    labels = pd.DataFrame({"person_id": person_id, "is_commuter": true_commuter ^ flipped})
    persons_df = pd.DataFrame(
        {
            "person_id": person_id,
            "archetype": text([a.name for a in catalogue], archetype),
            "true_commuter": true_commuter,
            "label_flipped": flipped,
            "home_region": text(list(SITES.values()), home),
            "main_mode": text(MODES, main_mode),
        }
    )
    return World(trips=trips, labels=labels, persons=persons_df)


def person_ids(n: int, seed: int) -> pa.StringArray:
    """16-hex-char pseudonyms from seed and index that never collide and never look numeric.

    A keyed splitmix-style mix restricted to 60 bits (xor-shifts and odd multiplications mod 2**60
    are bijections) gives 15 unique hex digits; a leading letter a-f keeps CSV readers from
    taking an all-digit id such as "1234..." or "12e4..." for a number.
    """
    mask = np.uint64((1 << 60) - 1)
    digest = hashlib.blake2b(f"commuter-sim:{seed}".encode(), digest_size=16).digest()
    key = np.frombuffer(digest, dtype="<u8")
    z = (np.arange(n, dtype=np.uint64) ^ key[0]) & mask
    for shift, mult in ((30, 0xBF58476D1CE4E5B9), (27, 0x94D049BB133111EB)):
        z ^= z >> np.uint64(shift)
        z = (z * np.uint64(mult)) & mask  # uint64 arrays wrap modulo 2**64, then mod 2**60
    z ^= z >> np.uint64(31)
    digits = np.empty((n, 16), dtype=np.uint8)
    digits[:, 0] = 10 + (z ^ key[1]) % np.uint64(6)  # a-f
    digits[:, 1:] = (z[:, None] >> np.arange(56, -1, -4, dtype=np.uint64)) & np.uint64(15)
    chars = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)[digits]
    offsets = np.arange(0, 16 * (n + 1), 16, dtype=np.int32)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(chars.tobytes()))


def counts(persons: int, catalogue: tuple[Archetype, ...] = ARCHETYPES) -> np.ndarray:
    """Persons per archetype: largest-remainder rounding, so counts sum exactly to `persons`."""
    exact = np.array([a.share for a in catalogue]) * persons
    n = np.floor(exact).astype(np.int64)
    n[np.argsort(-(exact - n), kind="stable")[: persons - n.sum()]] += 1
    return n
