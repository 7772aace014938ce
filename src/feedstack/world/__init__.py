"""The simulated news world: users, articles, a click model with known true relevance, and the log.

It stands in for real traffic. ``write_world`` produces a time-ordered event log (what
``feedstack ingest`` consumes, the data of every later stage); ``NewsWorld`` answers, from the
config alone, what no real system knows: how relevant an article is to a user at a time, and how
the user would react to any list. Online A/B tests, canaries and the live demo measure with it.

The model, in one paragraph: users live in regions with skewed shares and local time zones, open
their feed in diurnal, heavy-tailed sessions, and have Dirichlet topic interests that drift day by
day (``population``). Articles arrive as a diurnal Poisson process with a topic, a region ("global"
or one region), a generated title and text, a hidden quality and a topic half-life (``catalog``).
A randomized popularity/recency logging policy shows k = 10 live articles per session
(``policy``); a position-based click model turns true relevance into clicks, dwell and hides
(``clickmodel``).

Size: events follow from users x days x activity; there is no event target. With the defaults a
user-day yields about 10 events: 5 feed opens on average (heavy-tailed: ~15 % of users open none
on a given day), ~1.9 events per open (the impression, ~0.39 clicks each with its dwell, ~0.1
hides), plus one profile event per user and one event per article. Measured with
``feedstack world generate --users 100000 --articles 2000 --days 1 --seed 0``: 1,018,910 events
(10.2 per user-day, 12.0 per active user-day) in 4.1 s, peak RSS 190 MB; with 1,000,000 users and
20,000 articles: 9,898,771 events in 46 s, peak RSS 635 MB (2 cores, one used; see
``feedstack bench world`` for the recorded measurement).

Layout: ``config`` (WorldConfig) -> ``population``, ``catalog`` -> ``clickmodel``, ``policy`` ->
``newsworld`` (ground truth) -> ``simulate`` (EventBatch per step) -> ``encoding`` (JSON lines,
Arrow) -> ``writer`` (files, ``world.json``).
"""

from feedstack.world.config import DEFAULT_START, GLOBAL_REGION, TOPICS, WorldConfig
from feedstack.world.newsworld import ArticleInfo, NewsWorld
from feedstack.world.writer import FORMATS, WORLD_FILE, load_world_config, write_world

__all__ = [
    "DEFAULT_START",
    "FORMATS",
    "GLOBAL_REGION",
    "TOPICS",
    "WORLD_FILE",
    "ArticleInfo",
    "NewsWorld",
    "WorldConfig",
    "load_world_config",
    "write_world",
]
