"""Where people cross: the stations and road checkpoints on Beijing's boundary, as codes.

Each site connects to one region outside Beijing. The generators work on small integer codes
(index into ``SITE_IDS``) so that a million-person world stays a few compact arrays; the codes turn
back into contract strings only when the trips table is built (``messiness.messy_trips``).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

import numpy as np

# Stations (RL-) and road checkpoints (CK-) -> the region outside Beijing each one connects to.
SITES: Mapping[str, str] = MappingProxyType(
    {
        "RL-WUQING": "tianjin-wuqing",
        "RL-LANGFANG": "langfang-guangyang",
        "RL-ZHUOZHOU": "baoding-zhuozhou",
        "RL-TIANJIN-SOUTH": "tianjin-xiqing",
        "RL-TIANJIN": "tianjin-hedong",
        "RL-BAODING-EAST": "baoding-lianchi",
        "CK-G1-XIJI": "langfang-xianghe",
        "CK-G102-BAIMIAO": "langfang-sanhe",
        "CK-YANJIAO-CHAOBAI": "langfang-sanhe",
        "CK-G4-DUDIAN": "baoding-zhuozhou",
        "CK-G107-LIULIHE": "baoding-zhuozhou",
        "CK-G2-CAIYU": "tianjin-wuqing",
        "CK-G1N-BAODI": "tianjin-baodi",
        "CK-G45-YUFA": "langfang-guan",
        "CK-G95-LANGFANG": "langfang-guangyang",
        "CK-G3-DACHANG": "langfang-dachang",
        "CK-G6-KANGZHUANG": "zhangjiakou-huailai",
    }
)
SITE_IDS = tuple(SITES)
SITE_INDEX = {site: i for i, site in enumerate(SITE_IDS)}
IS_RAIL = np.array([site.startswith("RL-") for site in SITE_IDS])
RAIL_SITES = np.flatnonzero(IS_RAIL)
ROAD_SITES = np.flatnonzero(~IS_RAIL)
REGIONS = (*sorted(set(SITES.values())), "")  # last entry: the empty region
SITE_REGION = np.array([REGIONS.index(SITES[site]) for site in SITE_IDS], dtype=np.int8)
ALL_ROAD: Mapping[str, float] = MappingProxyType(
    {s: 1.0 for s in SITE_IDS if not s.startswith("RL-")}
)
ALL_RAIL: Mapping[str, float] = MappingProxyType({s: 1.0 for s in SITE_IDS if s.startswith("RL-")})
