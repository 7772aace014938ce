"""WorldConfig: everything that determines a simulated world, validated once.

A world is a pure function of its config: the same config (seed included) gives the same users,
articles, interests, relevance and, byte for byte, the same event file. ``world.json`` stores the
config so a world can be rebuilt with ``WorldConfig.model_validate(doc["config"])``.

The parameters are grouped by the part of the world they drive: ``population`` (users, activity,
interest drift), ``catalog`` (articles and their life-cycle), ``clicks`` (the position-biased click
model and dwell/hide behaviour) and ``logger`` (the randomized logging policy that picks the shown
lists). Defaults give about 10 events per user-day (measured: see ``feedstack.world`` docs).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints, model_validator

Name = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[a-z0-9_-]+$")]
Weights24 = Annotated[tuple[float, ...], Field(min_length=24, max_length=24)]

DEFAULT_START = datetime(2026, 1, 1, tzinfo=UTC)
GLOBAL_REGION = "global"  # the region label of articles meant for every user

TOPICS = (
    "politics",
    "business",
    "technology",
    "science",
    "health",
    "sports",
    "entertainment",
    "world",
    "climate",
    "travel",
    "food",
    "culture",
)

# Local-time hourly weights (mean 1 after normalization). Sessions peak at breakfast and in the
# evening; newsrooms publish most during working hours. Shapes follow the usual news-app curve.
SESSION_DIURNAL = (
    0.30, 0.20, 0.15, 0.10, 0.10, 0.20, 0.60, 1.20, 1.60, 1.40, 1.10, 1.00,
    1.20, 1.10, 1.00, 1.00, 1.10, 1.30, 1.50, 1.70, 1.80, 1.50, 1.00, 0.60,
)  # fmt: skip
PUBLISH_DIURNAL = (
    0.20, 0.10, 0.10, 0.10, 0.20, 0.50, 1.00, 1.50, 1.80, 1.80, 1.60, 1.50,
    1.40, 1.40, 1.40, 1.30, 1.20, 1.10, 1.00, 0.90, 0.80, 0.60, 0.40, 0.30,
)  # fmt: skip


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Region(_Params):
    name: Name
    share: float = Field(gt=0)  # relative share of users (normalized over regions)
    utc_offset_h: int = Field(ge=-12, le=14)  # shifts the diurnal curves to local time


class PopulationParams(_Params):
    regions: tuple[Region, ...] = (
        Region(name="na", share=0.40, utc_offset_h=-5),
        Region(name="eu", share=0.30, utc_offset_h=1),
        Region(name="asia", share=0.20, utc_offset_h=8),
        Region(name="latam", share=0.10, utc_offset_h=-3),
    )
    # Mean sessions per user-day; per-user rates are lognormal(sigma) around it (heavy tail:
    # with sigma 1 the top 1 % of users open the feed ~10x more often than the median user).
    sessions_per_day: float = Field(5.0, gt=0)
    activity_sigma: float = Field(1.0, ge=0, le=3)
    session_diurnal: Weights24 = SESSION_DIURNAL
    # Dirichlet concentration of topic interests: < 1 makes users care about a few topics.
    interest_concentration: float = Field(0.3, gt=0)
    # Interest drift, per day, in log-interest space: W_d = persistence * W_{d-1} + step * eps_d
    # with eps_d of unit variance. Stationary spread step / sqrt(1 - persistence^2) ~ 0.48.
    drift_step: float = Field(0.15, ge=0)
    drift_persistence: float = Field(0.95, ge=0, le=1)
    new_user_share: float = Field(0.05, ge=0, le=1)  # users who sign up during the window
    signup_history_days: float = Field(730.0, gt=0)  # others signed up this far back at most


class CatalogParams(_Params):
    topic_shares: tuple[float, ...] = (
        1.6, 1.4, 1.3, 0.7, 0.9, 1.5, 1.2, 1.3, 0.6, 0.5, 0.5, 0.5,
    )  # fmt: skip
    # Half-life of reader interest by topic, hours: breaking politics fades fast, features slowly.
    topic_half_life_h: tuple[float, ...] = (
        6.0, 8.0, 10.0, 12.0, 10.0, 6.0, 8.0, 6.0, 12.0, 12.0, 12.0, 12.0,
    )  # fmt: skip
    local_share: float = Field(0.4, ge=0, le=1)  # articles tied to one region; others "global"
    publish_diurnal: Weights24 = PUBLISH_DIURNAL
    # Articles published in the hours before ``start`` so that the first feeds are not empty;
    # they are announced at ``start`` with their true (earlier) publish_time.
    backlog_h: float = Field(12.0, ge=0)
    max_age_h: float = Field(48.0, gt=0)  # an article leaves the feed this long after publication
    quality_sigma: float = Field(1.0, ge=0)  # hidden quality ~ N(0, sigma)


class ClickParams(_Params):
    k: int = Field(10, ge=1, le=100)  # items per shown list
    eta: float = Field(1.0, ge=0)  # examination(p) = 1 / (1 + p) ** eta
    # relevance = freshness * sigmoid(bias + topic_weight * log(T * interest) + quality_weight *
    # quality + region term); freshness = 2 ** (-age_h / half_life_h).
    bias: float = -0.5
    topic_weight: float = Field(0.8, ge=0)
    quality_weight: float = Field(0.5, ge=0)
    local_boost: float = 0.5  # article of the user's own region
    foreign_penalty: float = -2.0  # article of another region
    hide_rate: float = Field(0.05, ge=0, le=1)  # P(hide | examined, not clicked) * (1-rel)^2
    dwell_median_ms: float = Field(15_000.0, gt=0)  # at relevance 0
    dwell_relevance_gain: float = Field(2.0, ge=0)  # log-dwell grows linearly with relevance
    dwell_sigma: float = Field(0.8, ge=0)
    dwell_max_ms: int = Field(1_800_000, gt=0)
    scan_ms: float = Field(1_500.0, ge=0)  # time to look at one more position
    think_ms: float = Field(3_000.0, ge=0)  # mean pause before acting on an item


class LoggerParams(_Params):
    model_version: Name = "world-logger-v1"
    # Candidate pool: the pool_size best live articles (region + global) by popularity and
    # recency; the shown list is a Plackett-Luce sample (Gumbel top-k) from the pool at this
    # temperature, so every pool item has a known, non-zero chance at every position.
    pool_size: int = Field(100, ge=1)
    temperature: float = Field(1.0, gt=0)
    popularity_half_life_h: float = Field(6.0, gt=0)
    recency_scale_h: float = Field(12.0, gt=0)


class WorldConfig(_Params):
    """The whole world; ``days`` may be fractional (a quarter day is handy for tests)."""

    users: int = Field(1000, ge=1, le=100_000_000)
    articles: int = Field(500, ge=1, le=100_000_000)
    days: float = Field(1.0, gt=0, le=3650)
    seed: int = Field(0, ge=0, lt=2**63)
    start: AwareDatetime = DEFAULT_START
    step_minutes: int = Field(15, ge=1, le=1440)  # simulation time step
    population: PopulationParams = PopulationParams()
    catalog: CatalogParams = CatalogParams()
    clicks: ClickParams = ClickParams()
    logger: LoggerParams = LoggerParams()
    topics: tuple[Name, ...] = TOPICS

    @model_validator(mode="after")
    def _consistent(self) -> WorldConfig:
        n = len(self.topics)
        if n < 2 or len(set(self.topics)) != n:
            raise ValueError(f"topics must be >= 2 distinct names, got {self.topics}")
        for key in ("topic_shares", "topic_half_life_h"):
            values = getattr(self.catalog, key)
            if len(values) != n or min(values) <= 0:
                raise ValueError(f"catalog.{key} needs {n} positive values, got {values}")
        names = [r.name for r in self.population.regions]
        if not names or len(set(names)) != len(names) or GLOBAL_REGION in names:
            raise ValueError(f"population.regions must be distinct and not {GLOBAL_REGION!r}")
        if 1440 % self.step_minutes:
            # Interests change at day boundaries; a step must not straddle one.
            raise ValueError(f"step_minutes must divide 1440, got {self.step_minutes}")
        return self

    @property
    def end(self) -> datetime:
        return self.start + timedelta(days=self.days)

    @property
    def region_names(self) -> tuple[str, ...]:
        return tuple(r.name for r in self.population.regions)
