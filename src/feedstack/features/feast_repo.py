"""The Feast repo, generated from our feature definitions: Feast is the store of record, but
``definitions.py`` stays the one place that says what a feature is.

``generate_repo(repo)`` writes into ``repo.path`` (embedded default ``<project>/data/feast/``)::

    feature_store.yaml   project, file registry, online store (SQLite | Redis), offline engine
    features.py          Entities, one FileSource + PushSource + FeatureView per view (generated)
    .feastignore         ``feast apply`` imports every .py it finds: only features.py is ours
    offline/<view>/      the FileSource of each view: a folder of Parquet files, one per batch
    registry.db          Feast's file registry (written by ``feast apply``)
    online.db            the SQLite online store (embedded only)

The registry and SQLite paths are relative to the repo; the FileSource paths are absolute globs
(``<folder>/*.parquet``) because Feast's DuckDB offline store hands them to DuckDB unresolved:
after moving the folder, run ``feedstack features apply`` again. The offline engine is DuckDB
(``feast[duckdb]``): Feast's ``file`` (dask) engine fails in ``get_historical_features`` as soon
as one entity row has no feature row (dask 2026.8 cannot sort the null timestamps; seen with
feast 0.67). Nothing here imports feast: feast_cli.py runs the real feast CLI (``apply_repos``)
in a subprocess, and the generated text is checked by the tests that run it.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import pyarrow as pa
import yaml

from feedstack.core.errors import ConfigError
from feedstack.core.redact import redact_url
from feedstack.features.definitions import ENTITIES, VIEWS, View, definitions_version
from feedstack.features.rows import arrow_schema
from feedstack.storage.urls import parse_backend_url

ONLINE_SCHEMES = ("sqlite", "redis", "rediss")
OFFLINE_SCHEMES = ("file",)
OFFLINE_ENGINES = ("duckdb", "file")
DEFAULT_REPO = Path("data/feast")
DEFAULT_ONLINE_URL = "sqlite://data/feast/online.db"
DEFAULT_OFFLINE_URL = "file://data/feast/offline"
DEFAULT_PROJECT = "feedstack"
TIMESTAMP_FIELD = "event_timestamp"
# Our dtype -> the Feast type expression used in the generated features.py.
FEAST_TYPES = {
    "float32": "Float32",
    "int64": "Int64",
    "string": "String",
    "float32_list": "Array(Float32)",
    "string_list": "Array(String)",
}
FEASTIGNORE = """\
# feast apply imports every .py file under the repo; only features.py defines objects.
offline/
__pycache__/
.*
*.tmp
"""
# Files written under offline/<view>/: Feast's file offline store (dask -> pyarrow dataset)
# reads every file in the folder except names starting with '.' or '_' (used for temp files).
SEED_FILE = "00000000-schema.parquet"
_PROJECT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_]*$")


def feast_project_name(name: str) -> str:
    """A Feast project name from ours: '-' becomes '_' (Feast's table names use '_')."""
    out = name.replace("-", "_")
    if not _PROJECT_RE.match(out):
        raise ConfigError(
            f"feast project {name!r}: expected letters, digits, '_' or '-', starting with a "
            "letter or digit"
        )
    return out


def redis_connection_string(url: str) -> str:
    """Feast's Redis ``connection_string`` (``host:port,db=0,ssl=true,password=...``, see the
    Redis online store docs) from a ``redis://[[user]:password@]host[:port][/db]`` URL.
    ``rediss://`` turns on TLS; our own ``?prefix=`` option is not Redis's and is dropped."""
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss"):
        raise ConfigError(f"online store URL {redact_url(url)!r}: expected redis:// or rediss://")
    if not parts.hostname:
        raise ConfigError(f"online store URL {redact_url(url)!r}: missing host")
    host = parts.hostname
    out = [f"{host}:{parts.port or 6379}"]
    db = parts.path.strip("/") or "0"
    if not db.isdigit():
        raise ConfigError(f"online store URL {redact_url(url)!r}: database {db!r} is not a number")
    out.append(f"db={db}")
    if parts.scheme == "rediss":
        out.append("ssl=true")
    if parts.username:
        out.append(f"username={unquote(parts.username)}")
    if parts.password:
        password = unquote(parts.password)
        if "," in password:
            raise ConfigError("online store URL: Feast's connection string cannot hold ','")
        out.append(f"password={password}")
    return ",".join(out)


@dataclass(frozen=True)
class FeastRepo:
    """Where the generated repo lives and which stores it points at."""

    path: Path  # the repo folder (feature_store.yaml, features.py)
    project: str = DEFAULT_PROJECT  # Feast project name: the namespace in every store
    online_url: str | None = None  # None: SQLite at <path>/online.db; or sqlite:// | redis://
    offline_dir: Path | None = None  # None: <path>/offline
    registry_ttl_s: int = 60  # how long a FeatureStore trusts its cached registry
    offline_engine: str = "duckdb"  # Feast offline store over the Parquet folders: duckdb | file
    views: tuple[View, ...] = field(default=VIEWS)

    @classmethod
    def for_project(
        cls,
        project_dir: Path,
        online_url: str = DEFAULT_ONLINE_URL,
        offline_url: str = DEFAULT_OFFLINE_URL,
        name: str | None = None,
    ) -> FeastRepo:
        """The repo of a feedstack project: ``<project>/data/feast``; backends by URL (relative
        paths resolve against the project). With Redis, the URL's ``?prefix=`` names the Feast
        project (Feast ends every key with the project name), else ``name`` or 'feedstack'."""
        # Absolute: `feast apply` runs in the repo folder and resolves relative paths in
        # feature_store.yaml against it (a relative project doubled the path).
        project_dir = project_dir.resolve()
        online = parse_backend_url(online_url, "online_features", ONLINE_SCHEMES, project_dir)
        offline = parse_backend_url(offline_url, "offline_features", OFFLINE_SCHEMES, project_dir)
        project = name or DEFAULT_PROJECT
        if online.scheme in ("redis", "rediss") and "prefix" in parse_qs(
            urlsplit(online_url).query
        ):
            project = online.prefix
        url = f"sqlite://{online.path}" if online.scheme == "sqlite" else online_url
        return cls(
            path=project_dir / DEFAULT_REPO,
            project=feast_project_name(project),
            online_url=url,
            offline_dir=offline.path,
        )

    @classmethod
    def from_spec(
        cls, project_dir: Path, online_url: str | None = None, offline_url: str | None = None
    ) -> FeastRepo:
        """The repo of the project at ``project_dir``: explicit URLs, else the spec's
        ``backends.online_features`` / ``backends.offline_features`` when it has them, else
        the embedded SQLite + Parquet files."""
        from feedstack.core.spec import load_spec

        backends = load_spec(project_dir).backends
        online = online_url or getattr(backends, "online_features", None) or DEFAULT_ONLINE_URL
        offline = offline_url or getattr(backends, "offline_features", None) or DEFAULT_OFFLINE_URL
        return cls.for_project(project_dir, str(online), str(offline))

    @property
    def yaml_path(self) -> Path:
        return self.path / "feature_store.yaml"

    @property
    def registry_path(self) -> Path:
        return self.path / "registry.db"

    @property
    def online_kind(self) -> str:
        """'sqlite' or 'redis'."""
        if self.online_url is None or self.online_url.startswith("sqlite://"):
            return "sqlite"
        if self.online_url.startswith(("redis://", "rediss://")):
            return "redis"
        raise ConfigError(
            f"online store URL {self.online_url!r}: unknown scheme; valid: "
            f"{', '.join(ONLINE_SCHEMES)}"
        )

    @property
    def sqlite_path(self) -> Path:
        if self.online_kind != "sqlite":
            raise ConfigError(f"online store {self.online_url!r} is not SQLite")
        if self.online_url is None:
            return self.path / "online.db"
        rest = Path(self.online_url.split("://", 1)[1])
        return rest if rest.is_absolute() else self.path / rest

    @property
    def offline_root(self) -> Path:
        return self.offline_dir if self.offline_dir is not None else self.path / "offline"

    def source_dir(self, view: str) -> Path:
        """The folder of Parquet files behind the view's FileSource."""
        return self.offline_root / view

    def _rel(self, p: Path) -> str:
        """``p`` relative to the repo when inside it (a movable repo), else absolute."""
        try:
            return str(p.resolve().relative_to(self.path.resolve()))
        except ValueError:
            return str(p.resolve())

    def online_store_config(self) -> dict[str, object]:
        if self.online_kind == "sqlite":
            return {"type": "sqlite", "path": self._rel(self.sqlite_path)}
        assert self.online_url is not None
        return {
            "type": "redis",
            "connection_string": redis_connection_string(self.online_url),
            # Keys of entities nobody updates expire after the longest view ttl: the online
            # store holds what serving may still use, not every user ever seen.
            "key_ttl_seconds": max(v.ttl_s for v in self.views),
        }

    def render_yaml(self) -> str:
        if self.offline_engine not in OFFLINE_ENGINES:
            raise ConfigError(
                f"offline engine {self.offline_engine!r}: valid: {', '.join(OFFLINE_ENGINES)}"
            )
        config = {
            "project": self.project,
            "provider": "local",
            "registry": {
                "registry_type": "file",
                "path": self._rel(self.registry_path),
                "cache_ttl_seconds": self.registry_ttl_s,
            },
            "online_store": self.online_store_config(),
            "offline_store": {"type": self.offline_engine},
            "entity_key_serialization_version": 3,
        }
        header = (
            "# Generated by feedstack from feedstack/features/definitions.py "
            f"(definitions {definitions_version()}). Do not edit: run `feedstack features apply`.\n"
        )
        return header + yaml.safe_dump(config, sort_keys=False)

    def render_features_py(self) -> str:
        return render_features_py(
            self.views, {v.name: self.source_glob(v.name) for v in self.views}
        )

    def source_glob(self, view: str) -> str:
        """The FileSource path: every Parquet file of the view's folder. Absolute, because
        Feast's DuckDB offline store hands the path to DuckDB as is (relative to the cwd)."""
        return str(self.source_dir(view).resolve() / "*.parquet")


def _py(s: str) -> str:
    return repr(s)


def _type_names(views: tuple[View, ...]) -> list[str]:
    """The names to import from feast.types for these views (String: the join keys)."""
    names = {"String"}
    for v in views:
        for f in v.features:
            names.update(re.findall(r"[A-Za-z0-9]+", FEAST_TYPES[f.dtype]))
    return sorted(names)


def render_features_py(views: tuple[View, ...], source_paths: dict[str, str]) -> str:
    """The text of the generated ``features.py``: self-contained (imports only feast), so the
    repo applies and serves on a machine without feedstack installed."""
    lines = [
        '"""Feast objects generated by feedstack from feedstack/features/definitions.py.',
        "",
        f"Definitions version {definitions_version()}.",
        "Do not edit: run `feedstack features apply`.",
        '"""',
        "",
        "from datetime import timedelta",
        "",
        "from feast import Entity, FeatureView, Field, FileSource, PushSource, ValueType",
        "from feast.data_format import ParquetFormat",
        f"from feast.types import {', '.join(_type_names(views))}",
        "",
    ]
    used = {v.entity for v in views}
    for join_key, entity in ENTITIES.items():
        if join_key not in used:
            continue
        lines += [
            f"{entity} = Entity(",
            f"    name={_py(entity)},",
            f"    join_keys=[{_py(join_key)}],",
            "    value_type=ValueType.STRING,",
            f"    description={_py(f'join key {join_key}')},",
            ")",
            "",
        ]
    for v in views:
        entity = ENTITIES[v.entity]
        lines += [
            f"{v.name}_source = FileSource(",
            f"    name={_py(v.name + '_source')},",
            f"    path={_py(source_paths[v.name])},",
            "    file_format=ParquetFormat(),",
            f"    timestamp_field={_py(TIMESTAMP_FIELD)},",
            f"    description={_py('Parquet files written by feedstack, one per batch')},",
            ")",
            f"{v.name}_push = PushSource(",
            f"    name={_py(v.name + '_push')},",
            f"    batch_source={v.name}_source,",
            ")",
            f"{v.name} = FeatureView(",
            f"    name={_py(v.name)},",
            f"    entities=[{entity}],",
            f"    ttl=timedelta(seconds={v.ttl_s}),",
            "    schema=[",
            f"        Field(name={_py(v.entity)}, dtype=String),",
        ]
        for f in v.features:
            lines.append(
                f"        Field(name={_py(f.name)}, dtype={FEAST_TYPES[f.dtype]}, "
                f"description={_py(f.description)}),"
            )
        lines += [
            "    ],",
            "    online=True,",
            f"    source={v.name}_push,",
            f"    description={_py(v.description)},",
            f"    tags={{'definitions_version': {_py(definitions_version())}}},",
            ")",
            "",
        ]
    return "\n".join(lines)


def _write_text_atomic(path: Path, text: str) -> bool:
    """Write ``text`` unless the file already holds it; returns whether it changed."""
    if path.exists() and path.read_text(encoding="utf-8") == text:
        return False
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    # feature_store.yaml may hold the Redis password (Feast reads it from there): owner only.
    tmp.chmod(0o600)
    tmp.replace(path)
    return True


def write_parquet_hidden_tmp(table: pa.Table, path: Path) -> None:
    """Write ``table`` to ``path`` atomically: a hidden temp name in the same folder (readers of
    the folder skip names starting with '.'), fsync, rename, fsync the folder."""
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(table, tmp, coerce_timestamps="us", allow_truncated_timestamps=True)
    with tmp.open("rb") as f:
        os.fsync(f.fileno())
    tmp.replace(path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def generate_repo(repo: FeastRepo) -> list[Path]:
    """Write the repo files (idempotent); returns the files that changed. Data files are never
    touched, except that an empty view folder gets a zero-row file with the view's schema: the
    file offline store cannot read a folder with no Parquet file in it."""
    repo.path.mkdir(parents=True, exist_ok=True)
    changed = []
    for name, text in (
        ("feature_store.yaml", repo.render_yaml()),
        ("features.py", repo.render_features_py()),
        (".feastignore", FEASTIGNORE),
    ):
        if _write_text_atomic(repo.path / name, text):
            changed.append(repo.path / name)
    for v in repo.views:
        folder = repo.source_dir(v.name)
        folder.mkdir(parents=True, exist_ok=True)
        if not any(p.suffix == ".parquet" for p in folder.iterdir()):
            seed = folder / SEED_FILE
            write_parquet_hidden_tmp(arrow_schema(v.name).empty_table(), seed)
            changed.append(seed)
    return changed


def repo_status(repo: FeastRepo) -> dict[str, object]:
    """What is on disk (no feast import): whether the repo is generated from the current
    definitions, whether it was applied, and the offline files and rows per view."""
    import pyarrow.parquet as pq

    generated = None
    if repo.yaml_path.exists():
        m = re.search(r"\(definitions ([0-9a-f]+)\)", repo.yaml_path.read_text(encoding="utf-8"))
        generated = m.group(1) if m else None
    views: dict[str, dict[str, int]] = {}
    for v in repo.views:
        folder = repo.source_dir(v.name)
        files = sorted(folder.glob("*.parquet")) if folder.exists() else []
        rows = sum(pq.read_metadata(p).num_rows for p in files)
        views[v.name] = {"files": len(files), "rows": rows}
    return {
        "repo": str(repo.path),
        "project": repo.project,
        "online_store": repo.online_kind,
        "offline_engine": repo.offline_engine,
        "generated": generated is not None,
        "definitions_version": definitions_version(),
        "generated_from": generated,
        "stale": generated is not None and generated != definitions_version(),
        "applied": repo.registry_path.exists(),
        "offline": views,
    }
