"""The requirements spec, ``feedstack.yaml``: loaded once, validated once, read by every stage.

Defaults are the reference case of the design: a personalized news feed for 50M daily users,
p95 <= 120 ms, features fresh within 2 min, compute <= $28k/month, CTR lift >= 5 %.
Unknown keys are rejected; every error names the dotted key and the offending value.
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from feedstack.core.errors import ConfigError, InputError

SPEC_FILE = "feedstack.yaml"
SPEC_VERSION = 1


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Autoscaling(_Section):
    """Add ``add_nodes_pct`` % nodes for every ``per_traffic_surge_pct`` % of traffic surge."""

    per_traffic_surge_pct: float = Field(10.0, gt=0)
    add_nodes_pct: float = Field(2.0, gt=0)


class Traffic(_Section):
    daily_active_users: int = Field(50_000_000, gt=0)
    requests_per_user_per_day: float = Field(10.0, gt=0)
    peak_to_average: float = Field(3.0, ge=1.0)
    zones: int = Field(3, ge=1)
    autoscaling: Autoscaling = Autoscaling()


class Latency(_Section):
    p95_ms: float = Field(120.0, gt=0)
    p99_alert_ms: float = Field(130.0, gt=0)
    availability: float = Field(0.999, gt=0, lt=1)

    @model_validator(mode="after")
    def _alert_above_objective(self) -> Latency:
        if self.p99_alert_ms < self.p95_ms:
            raise ValueError(
                f"p99_alert_ms ({self.p99_alert_ms}) must be >= p95_ms ({self.p95_ms})"
            )
        return self


class Freshness(_Section):
    feature_max_lag_s: float = Field(120.0, gt=0)


class Budget(_Section):
    compute_usd_per_month: float = Field(28_000.0, gt=0)


class Kpi(_Section):
    ctr_lift_min: float = Field(0.05, description="relative lift, 0.05 = +5 %")
    # Assumed: a news publisher earns on the order of a cent per click through ads on the article
    # page (display RPMs of a few dollars per 1,000 page views). Replace with your own number.
    value_per_click_usd: float = Field(0.01, ge=0)


class Drift(_Section):
    kl_alert: float = Field(0.05, gt=0)
    psi_alert: float = Field(0.2, gt=0)
    ks_p_value: float = Field(0.01, gt=0, lt=1)


class Ingest(_Section):
    batch_size: int = Field(5_000, ge=1, le=1_000_000)
    max_future_skew_s: float = Field(300.0, ge=0)
    max_title_chars: int = Field(1_000, ge=1)
    max_text_chars: int = Field(100_000, ge=1)
    max_line_bytes: int = Field(1_048_576, ge=64)
    max_items_per_impression: int = Field(1_000, ge=1)
    # An event is 2 levels deep (3 with room to spare); deeper payloads are refused before any
    # parser recurses into them (ingest/limits.py).
    max_json_depth: int = Field(8, ge=2, le=64)


class Backends(_Section):
    """Backends by URL. Local schemes take a path after ``scheme://``; a relative path is resolved
    against the project folder (``sqlite://data/events.sqlite``), an absolute one starts with ``/``
    (``sqlite:///var/feedstack/events.sqlite``). Production: ``redis://host:6379/0?prefix=fs``."""

    event_log: str = "sqlite://data/events.sqlite"
    dead_letter: str = "file://data/dead_letter"
    offline_store: str = "file://data/offline"
    # Feast: online store (sqlite:// or redis://) and the folder of offline feature rows.
    online_features: str = "sqlite://data/feast/online.db"
    offline_features: str = "file://data/feast/offline"
    # Per-user candidate lists from the batch job (memory://, sqlite:// or redis://).
    candidate_cache: str = "sqlite://data/candidates.sqlite"


class Api(_Section):
    """The serving API (``feedstack serve``): where it listens and its security limits.

    API keys are secrets: they come from the environment variable named by ``keys_env``
    (comma-separated ``KEY`` or ``KEY:SCOPE+SCOPE`` entries, scopes feeds, events, admin:
    serve/auth.py), never from this file. Feeds need a key with the feeds scope unless
    ``public_feeds``; events need the events scope; ``require_key: false`` opens every endpoint
    (local runs only). The rate limit is a token bucket per key.
    """

    host: str = "127.0.0.1"
    http_port: int = Field(8080, ge=0, le=65535)
    grpc_port: int = Field(50051, ge=0, le=65535)
    keys_env: str = Field("FEEDSTACK_API_KEYS", min_length=1)
    require_key: bool = True
    public_feeds: bool = False
    k_default: int = Field(20, ge=1)
    k_max: int = Field(100, ge=1)
    max_body_bytes: int = Field(1_048_576, ge=1_024)
    max_events_per_request: int = Field(1_000, ge=1)
    rate_per_key_per_s: float = Field(100.0, gt=0)
    burst_per_key: int = Field(200, ge=1)
    # Feed requests are charged to the key's bucket only when true: a feeds key is a front
    # end's, carrying many users' traffic, which is sized by the planner and limited at the
    # load balancer; event keys are always limited.
    rate_limit_feeds: bool = False

    @model_validator(mode="after")
    def _default_within_cap(self) -> Api:
        if self.k_default > self.k_max:
            raise ValueError(f"k_default ({self.k_default}) must be <= k_max ({self.k_max})")
        return self


class Serve(_Section):
    """The feed request path (serve/pipeline.py).

    Stage budgets are shares of ``latency.p95_ms`` (the end-to-end objective), so a tighter
    objective tightens every stage. Reference (120 ms): candidates 5 ms and user features 5 ms
    (one network read each, also their socket timeouts), item features 1 ms (in memory), rank
    4 ms (twice the ranker's own 1/60 share that model selection holds its p99 to, for feature
    assembly and the predict call), filter 1 ms: 16 ms of server time, the rest is the network,
    the transport and queueing. A read that exceeds its budget fails and the request is
    answered from memory (trending, popular-by-region, new); a stage that finishes late makes
    the remaining stages be skipped the same way once the request is past the sum of budgets.
    """

    candidates_per_user: int = Field(500, ge=1, le=10_000)
    max_per_topic: int = Field(3, ge=1, description="diversity: at most this many per topic in k")
    max_age_h: float = Field(48.0, gt=0, description="older articles are never served")
    stage_shares: dict[str, float] = Field(
        default_factory=lambda: {
            "candidates": 1 / 24,
            "user_features": 1 / 24,
            "item_features": 1 / 120,
            "rank": 1 / 30,
            "filter": 1 / 120,
        }
    )
    fallback_pool: int = Field(200, ge=1, description="articles kept per fallback list")
    impression_flush_s: float = Field(0.2, gt=0, description="impression batcher max delay")
    # "system": now is the wall clock. "log": now is the newest event time the server has read,
    # for a replayed or simulated log whose events are not happening now (the demo's world):
    # with the wall clock every article of such a log would be too old to serve.
    clock: Literal["system", "log"] = "system"
    # clock "log" only: how far one event may move the serving clock, and how far ahead of it an
    # event posted to the API may be (further ahead: rejected, field event_time). serve/clock.py
    log_clock_max_step_s: float = Field(3600.0, gt=0)

    @model_validator(mode="after")
    def _known_stages(self) -> Serve:
        known = {"candidates", "user_features", "item_features", "rank", "filter"}
        bad = set(self.stage_shares) - known
        if bad or any(not 0 < v < 1 for v in self.stage_shares.values()):
            raise ValueError(
                f"stage_shares {self.stage_shares}: stages must be among {sorted(known)}, "
                "shares in (0, 1)"
            )
        return self

    def budgets_ms(self, latency: Latency) -> dict[str, float]:
        """Milliseconds per stage for this latency objective."""
        return {stage: latency.p95_ms * share for stage, share in self.stage_shares.items()}


class Registry(_Section):
    """Model registry (MLflow), canary rollout guardrails and A/B-test settings.

    URLs follow ``backends``: ``sqlite://mlruns.db`` and ``file://mlartifacts`` are resolved
    against the project folder; production uses ``postgresql://user@host:5432/db`` (MLflow's
    SQLAlchemy URL) and a shared artifact folder. Rollout: the canary climbs ``canary_steps_pct``,
    holding each step at least ``step_min_minutes`` and ``step_min_requests`` canary requests;
    it is rolled back at once when a guardrail is breached (p99 above ``latency.p99_alert_ms``,
    error or fallback rate above its cap, or CTR worse under an always-valid sequential test at
    level ``ctr_alpha``).
    """

    tracking_uri: str = "sqlite://mlruns.db"
    artifact_root: str = "file://mlartifacts"
    model_name: str = Field("feedstack-news", min_length=1)
    canary_steps_pct: tuple[float, ...] = (1.0, 5.0, 10.0, 25.0, 50.0, 100.0)
    step_min_minutes: float = Field(10.0, ge=0)
    step_min_requests: int = Field(2_000, ge=0)
    guardrail_min_requests: int = Field(200, ge=1)
    max_error_rate: float = Field(0.01, ge=0, le=1)
    max_fallback_rate: float = Field(0.05, ge=0, le=1)
    ctr_alpha: float = Field(0.05, gt=0, lt=1)
    # Prior sd of the log CTR ratio in the mSPRT mixture (Johari et al. 2022): the effect size
    # the test is most sensitive to, ~10 %.
    ctr_mixture_sd: float = Field(0.1, gt=0)
    experiment_alpha: float = Field(0.05, gt=0, lt=1)
    experiment_power: float = Field(0.8, gt=0, lt=1)
    srm_p_value: float = Field(0.001, gt=0, lt=1)

    @model_validator(mode="after")
    def _steps_climb_to_100(self) -> Registry:
        steps = self.canary_steps_pct
        if not steps or steps[-1] != 100.0 or any(not 0 < s <= 100 for s in steps):
            raise ValueError(f"canary_steps_pct must be in (0, 100] and end at 100, got {steps}")
        if any(b <= a for a, b in itertools.pairwise(steps)):
            raise ValueError(f"canary_steps_pct must increase, got {steps}")
        return self


class Monitor(_Section):
    """Monitoring (monitor/): SLO period, drift windows, alert thresholds not held elsewhere.

    Drift thresholds are ``drift``'s, latency and availability objectives ``latency``'s, the
    fallback cap ``registry.max_fallback_rate``, the freshness bound ``freshness``. The cost alert
    projects live traffic to a month at ``usd_per_million_requests``; unset, it is the budget
    spread over the planned traffic (the budget is exactly spent at the spec's traffic).
    """

    slo_period_days: float = Field(30.0, gt=0, description="error-budget period")
    drift_window_minutes: float = Field(5.0, gt=0, description="live window of the detector")
    drift_bins: int = Field(10, ge=2, le=100, description="quantile bins for PSI and KL")
    drift_min_samples: int = Field(200, ge=1, description="fewer live values: no verdict")
    ctr_drop_alert: float = Field(0.1, gt=0, lt=1, description="1 h CTR below (1 - x) x 7 d CTR")
    retrain_cooldown_h: float = Field(24.0, ge=0, description="no drift retrain sooner than this")
    usd_per_million_requests: float | None = Field(None, gt=0)


class PlanFallbacks(_Section):
    """What the planner assumes for a quantity no measurement in ``measurements/`` provides yet.

    Each is labeled *assumed* (with this key) wherever it is used; a measurement replaces it. The
    defaults are rough numbers for this code on one core of a current x86 server, stated so they
    can be argued with: the command that measures each is in docs/plan.md.
    """

    rps_per_core_at_slo: float = Field(100.0, gt=0, description="feed requests/s per core")
    floor_rps_per_core: float = Field(2_000.0, gt=0, description="constant-answer requests/s")
    bytes_per_candidate: float = Field(40.0, gt=0, description="cached candidate, with features")
    feature_bytes_per_user: float = Field(256.0, gt=0, description="online user-feature row")
    feature_bytes_per_article: float = Field(512.0, gt=0, description="online article row")
    train_s_per_million_events: float = Field(120.0, gt=0, description="one core")
    candidate_build_ms_per_user: float = Field(3.0, gt=0, description="one core")
    ingest_events_per_s_per_core: float = Field(100_000.0, gt=0)
    worker_events_per_s_per_core: float = Field(20_000.0, gt=0)
    stored_bytes_per_event: float = Field(150.0, gt=0, description="event log + Parquet copy")
    events_per_request: float = Field(1.3, gt=0, description="impression + clicks + dwells")
    rank_ms_per_request: float = Field(2.0, gt=0, description="ranker predict, one core")
    live_articles: int = Field(50_000, ge=1, description="articles in the online store")
    feature_lag_p99_s: float = Field(120.0, gt=0, description="event to online store")
    # Every serving process applies every logged event to its in-memory article state.
    item_state_events_per_s_per_core: float = Field(60_000.0, gt=0, description="one process")
    model_state_bytes: float = Field(
        200e6, gt=0, description="candidate sources a replica holds to retrieve per request"
    )


class Cost(_Section):
    """The price table and the planner's sizing policy (``feedstack plan``, docs/plan.md).

    Prices are public AWS us-east-1 on-demand list prices as of ``prices_as_of`` (labeled
    assumed in every plan): vCPU-hour from EC2 c6i.large ($0.085/h for 2 vCPU, memory included);
    spot from the c6i Spot price history (about 60 % below on-demand); memory GB-hour from
    ElastiCache cache.r7g.large ($0.219/h for 13.07 GiB); storage from S3 Standard (first 50 TB);
    the savings-plan discount from the 1-year no-upfront Compute Savings Plan for c6i. Replace them
    with your provider's prices.
    """

    prices_as_of: str = "2024-06, AWS us-east-1 public list prices"
    vcpu_hour_usd: float = Field(0.0425, gt=0)
    spot_vcpu_hour_usd: float = Field(0.017, gt=0)
    memory_gb_hour_usd: float = Field(0.01676, gt=0)
    storage_gb_month_usd: float = Field(0.023, ge=0)
    savings_plan_discount: float = Field(0.27, ge=0, lt=1)
    # AWS bills a month as 730 hours (8,760 h / 12).
    hours_per_month: float = Field(730.0, gt=0)
    # Serving runs below the measured throughput at the SLO so that bursts inside an autoscaling
    # step do not push p95 over the objective.
    target_utilization: float = Field(0.7, gt=0, le=1)
    cores_per_replica: int = Field(2, ge=1)
    # Primary + one replica; Redis keeps ElastiCache's default reserved-memory-percent of 25 %
    # free for forks (snapshots) and fragmentation.
    redis_replication: int = Field(2, ge=1)
    redis_max_memory_fraction: float = Field(0.75, gt=0, le=1)
    redis_bytes_per_key: float = Field(64.0, ge=0, description="per-key overhead")
    retention_days: float = Field(90.0, gt=0, description="event log + offline copy kept")
    train_window_days: float = Field(7.0, gt=0, description="events each retrain reads")
    batch_period_h: float = Field(24.0, gt=0, description="retrain + candidate rebuild period")
    light_user_share: float = Field(0.6, ge=0, le=1, description="users with few visits a day")
    light_user_candidates: int = Field(100, ge=1, description="cached for them in the cut")
    compact_encoding_ratio: float = Field(0.5, gt=0, le=1, description="bytes after the cut")
    fallback: PlanFallbacks = PlanFallbacks()


ENGINE_FORMS = "local, local[N], local[*] or spark://host:port"
_ENGINE = re.compile(r"local(\[([1-9][0-9]*|\*)\])?|spark://[^\s/:,]+:[0-9]+(,[^\s/:,]+:[0-9]+)*")


def check_engine(value: str, option: str = "--engine") -> str:
    """``value`` if it names a batch engine, else InputError naming ``option`` and the value."""
    if not _ENGINE.fullmatch(value):
        raise InputError(f"{option} {value!r}: must be {ENGINE_FORMS}")
    return value


class Spark(_Section):
    """Settings of the batch jobs when ``engine`` names Spark (``local[N]``, ``spark://``).

    ``partitions``: how many pieces each job splits its users, articles and rows into (0: four
    per core of the engine). ``driver_memory``: the JVM heap of the driver (``local[N]`` runs
    the executors inside it). ``conf``: any other Spark setting, passed through as given.
    """

    partitions: int = Field(0, ge=0, le=100_000)
    driver_memory: str = Field("2g", pattern=r"^[0-9]+[kmgt]$")
    conf: dict[str, str] = Field(default_factory=dict)


class InteractionsRecipe(_Section):
    """The ``interactions`` recipe (train/interactions.py): for a log of clicks with no
    impressions and no article text. The item-item graph filter, ALS and popular feed a blend of
    ``serve.candidates_per_user``; LightGBM re-ranks each user's first ``depth`` candidates,
    labelled by a held-out ``holdout`` share of each user's history. Defaults: chosen on the
    Gowalla tuning split (models/candidates/als.py, train/twostage.py)."""

    als_factors: int = Field(256, ge=1, le=4096)
    als_iterations: int = Field(8, ge=1, le=200)
    als_regularization: float = Field(0.05, ge=0)
    als_alpha: float = Field(40.0, gt=0)
    holdout: float = Field(0.2, gt=0, lt=1, description="share of each history held out")
    depth: int = Field(60, ge=1, description="candidates the ranker re-orders per user")
    quota_shares: dict[str, float] = Field(
        default_factory=lambda: {"als": 0.3, "popular": 0.1},
        description="a source's share of the blend (1.0 when not named)",
    )
    max_train_users: int | None = Field(None, ge=2, description="users labelled (None: all)")
    min_interactions: int = Field(20, ge=2, description="fewer in the log: nothing to train on")
    ranker_threads: int = Field(2, ge=1, le=256, description="LightGBM threads (deterministic)")

    @field_validator("quota_shares")
    @classmethod
    def _shares(cls, value: dict[str, float]) -> dict[str, float]:
        known = {"gfcf", "als", "popular"}
        bad = {k: v for k, v in value.items() if k not in known or not 0 < v <= 1}
        if bad:
            raise ValueError(f"{bad}: sources must be among {sorted(known)}, shares in (0, 1]")
        return value


class NewsRecipe(_Section):
    """The ``news`` recipe (train/news.py). A candidate source is kept when its unique
    candidate recall (the evaluation window's clicks it finds and no other kept source does) is
    at least ``min_unique_recall``; the per-source table is always reported."""

    min_unique_recall: float = Field(0.005, ge=0, le=1)
    offer_als: bool = Field(True, description="offer ALS to the news blend")
    offer_graph_filter: bool = Field(True, description="offer the item-item graph filter")
    # A news catalog is small and turns over daily: fewer factors than the interactions recipe.
    als_factors: int = Field(64, ge=1, le=4096)


RECIPES = ("auto", "news", "interactions")


class Train(_Section):
    """``feedstack train``: which recipe, and its settings. ``auto``: ``news`` when the log has
    impressions and article text, ``interactions`` otherwise. Candidates per user and the
    maximum article age are ``serve.candidates_per_user`` and ``serve.max_age_h``."""

    recipe: Literal["auto", "news", "interactions"] = "auto"
    interactions: InteractionsRecipe = InteractionsRecipe()
    news: NewsRecipe = NewsRecipe()


class Spec(_Section):
    version: int = SPEC_VERSION
    name: str = "reference-news-feed"
    traffic: Traffic = Traffic()
    latency: Latency = Latency()
    freshness: Freshness = Freshness()
    budget: Budget = Budget()
    kpi: Kpi = Kpi()
    drift: Drift = Drift()
    ingest: Ingest = Ingest()
    backends: Backends = Backends()
    api: Api = Api()
    registry: Registry = Registry()
    serve: Serve = Serve()
    train: Train = Train()
    monitor: Monitor = Monitor()
    cost: Cost = Cost()
    # Where the batch jobs run (backfill, training rows, candidate build, cache writes): in this
    # process ("local"), or on Spark: "local[N]" (N cores of this machine) or a standalone
    # cluster "spark://host:port". The same code gives the same rows on either engine
    # (docs/architecture.md).
    engine: str = "local"
    spark: Spark = Spark()

    @model_validator(mode="after")
    def _known_version(self) -> Spec:
        if self.version != SPEC_VERSION:
            raise ValueError(f"unsupported spec version {self.version}; expected {SPEC_VERSION}")
        return self

    @field_validator("engine")
    @classmethod
    def _known_engine(cls, value: str) -> str:
        if not _ENGINE.fullmatch(value):
            raise ValueError(f"must be {ENGINE_FORMS}")
        return value


def _format_errors(err: ValidationError, where: str) -> str:
    lines = []
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "<root>"
        value = e.get("input")
        shown = repr(value) if not isinstance(value, dict) else "{...}"
        if e["type"] == "extra_forbidden":
            lines.append(f"{where}: unknown key '{key}' (value {shown})")
        else:
            lines.append(f"{where}: key '{key}' = {shown}: {e['msg']}")
    return "\n".join(lines)


def parse_spec(data: Any, where: str = SPEC_FILE) -> Spec:
    """Validate a mapping (as read from YAML) into a Spec, or raise ConfigError naming the keys."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{where}: expected a mapping at the top level, got {type(data).__name__}"
        )
    try:
        return Spec.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_format_errors(err, where)) from None


def load_spec(project: Path) -> Spec:
    """Load ``project/feedstack.yaml`` (or a path to the file itself)."""
    path = project / SPEC_FILE if project.is_dir() else project
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"no {SPEC_FILE} at {path}; create one with `feedstack init {path.parent}`"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {exc}") from None
    return parse_spec(data, where=str(path))


_HEADER = """\
# feedstack requirements spec. Every stage reads its targets from here.
# Defaults: the reference case, a personalized news feed for 50M daily users.
# Units are in the key names. Unknown keys are rejected.
"""


def render_spec(spec: Spec) -> str:
    return _HEADER + yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False)


def write_default_spec(directory: Path, *, overwrite: bool = False) -> Path:
    """Write the reference-case spec to ``directory/feedstack.yaml`` and return its path."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / SPEC_FILE
    if path.exists() and not overwrite:
        raise ConfigError(f"{path} exists already; pass --force to overwrite it")
    tmp = path.with_suffix(".yaml.tmp")
    tmp.write_text(render_spec(Spec()), encoding="utf-8")
    tmp.replace(path)
    return path
