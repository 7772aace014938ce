"""The generated Feast repo: config text, generated definitions, URLs, idempotent generation.

The real ``feast apply`` / ``materialize`` / ``serve`` on this output run in
tests/e2e/test_feast_store.py; here the text and the objects it defines are checked.
"""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import yaml

from feedstack.core.errors import ConfigError
from feedstack.features.definitions import ENTITIES, VIEWS, definitions_version
from feedstack.features.feast_repo import (
    FEAST_TYPES,
    SEED_FILE,
    FeastRepo,
    feast_project_name,
    generate_repo,
    redis_connection_string,
    repo_status,
    write_parquet_hidden_tmp,
)
from feedstack.features.rows import arrow_schema


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://127.0.0.1:6379/0", "127.0.0.1:6379,db=0"),
        ("redis://cache", "cache:6379,db=0"),
        ("redis://:s3cret@cache:6380/2?prefix=fs", "cache:6380,db=2,password=s3cret"),
        (
            "rediss://app:pw@r.example:6390/1",
            "r.example:6390,db=1,ssl=true,username=app,password=pw",
        ),
    ],
)
def test_redis_connection_string(url: str, expected: str) -> None:
    assert redis_connection_string(url) == expected


@pytest.mark.parametrize("url", ["http://h:1/0", "redis:///0", "redis://h/x", "redis://:a,b@h"])
def test_redis_connection_string_rejects(url: str) -> None:
    with pytest.raises(ConfigError):
        redis_connection_string(url)


def test_project_names() -> None:
    assert feast_project_name("fstest-ab12") == "fstest_ab12"
    assert feast_project_name("feedstack") == "feedstack"
    for bad in ("", "_x", "a b", "a.b"):
        with pytest.raises(ConfigError, match="feast project"):
            feast_project_name(bad)


def test_for_project_embedded_defaults(tmp_path: Path) -> None:
    repo = FeastRepo.for_project(tmp_path)
    assert repo.path == tmp_path / "data" / "feast"
    assert repo.online_kind == "sqlite"
    assert repo.sqlite_path == tmp_path / "data" / "feast" / "online.db"
    assert repo.source_dir("user_features") == tmp_path / "data/feast/offline/user_features"
    config = yaml.safe_load(repo.render_yaml())
    assert config["project"] == "feedstack"
    assert config["online_store"] == {"type": "sqlite", "path": "online.db"}  # movable repo
    assert config["registry"]["path"] == "registry.db"
    assert config["offline_store"] == {"type": "duckdb"}
    assert config["entity_key_serialization_version"] == 3


def test_for_project_redis_prefix_names_the_project(tmp_path: Path) -> None:
    repo = FeastRepo.for_project(tmp_path, "redis://127.0.0.1:6379/3?prefix=team-a")
    assert (repo.project, repo.online_kind) == ("team_a", "redis")
    store = yaml.safe_load(repo.render_yaml())["online_store"]
    assert store["type"] == "redis"
    assert store["connection_string"] == "127.0.0.1:6379,db=3"
    assert store["key_ttl_seconds"] == max(v.ttl_s for v in VIEWS)
    assert FeastRepo.for_project(tmp_path, "redis://h:1/0").project == "feedstack"


def test_for_project_unknown_scheme_names_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"online_features.*valid: sqlite, redis"):
        FeastRepo.for_project(tmp_path, "memcached://h")


def _calls(tree: ast.AST, name: str) -> list[ast.Call]:
    return [
        n
        for n in ast.walk(tree)
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == name
    ]


def _kw(call: ast.Call, key: str) -> Any:
    for k in call.keywords:
        if k.arg == key:
            return k.value
    raise KeyError(key)


def test_features_py_declares_every_view_with_its_types(tmp_path: Path) -> None:
    text = FeastRepo(tmp_path / "repo").render_features_py()
    tree = ast.parse(text)
    entities = {ast.literal_eval(_kw(c, "name")) for c in _calls(tree, "Entity")}
    assert entities == set(ENTITIES.values())
    views = {ast.literal_eval(_kw(c, "name")): c for c in _calls(tree, "FeatureView")}
    assert set(views) == {v.name for v in VIEWS}
    for v in VIEWS:
        call = views[v.name]
        fields = {
            ast.literal_eval(_kw(f, "name")): ast.unparse(_kw(f, "dtype"))
            for f in _calls(_kw(call, "schema"), "Field")
        }
        assert fields == {v.entity: "String", **{f.name: FEAST_TYPES[f.dtype] for f in v.features}}
        assert ast.unparse(_kw(call, "ttl")) == f"timedelta(seconds={v.ttl_s})"
        assert ast.unparse(_kw(call, "source")) == f"{v.name}_push"
    assert definitions_version() in text


def test_features_py_builds_the_feast_objects(tmp_path: Path) -> None:
    """Import the generated file with the real feast: types, ttls, entities and sources."""
    pytest.importorskip("feast")
    from datetime import timedelta

    from feast import FeatureView, FileSource, PushSource
    from feast.types import Array, Float32, Int64, String

    expected_types = {
        "float32": Float32,
        "int64": Int64,
        "string": String,
        "float32_list": Array(Float32),
        "string_list": Array(String),
    }
    repo = FeastRepo(tmp_path / "repo")
    generate_repo(repo)
    spec = importlib.util.spec_from_file_location("gen_features", repo.path / "features.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for v in VIEWS:
        fv = getattr(module, v.name)
        assert isinstance(fv, FeatureView)
        assert fv.ttl == timedelta(seconds=v.ttl_s)
        assert fv.entities == [ENTITIES[v.entity]]
        assert {f.name: f.dtype for f in fv.features} == {
            f.name: expected_types[f.dtype] for f in v.features
        }
        assert isinstance(fv.stream_source, PushSource)
        assert isinstance(fv.batch_source, FileSource)
        assert fv.batch_source.path == str(repo.source_dir(v.name).resolve() / "*.parquet")
        assert fv.batch_source.timestamp_field == "event_timestamp"


def test_generate_is_idempotent_and_seeds_empty_folders(tmp_path: Path) -> None:
    repo = FeastRepo(tmp_path / "repo")
    changed = generate_repo(repo)
    assert {p.name for p in changed} >= {"feature_store.yaml", "features.py", ".feastignore"}
    for v in VIEWS:
        seed = repo.source_dir(v.name) / SEED_FILE
        table = pq.read_table(seed)
        assert table.num_rows == 0
        assert table.schema.equals(arrow_schema(v.name))
    assert "offline/" in (repo.path / ".feastignore").read_text()
    assert generate_repo(repo) == []  # nothing changed: nothing rewritten


def test_generate_never_touches_data_files(tmp_path: Path) -> None:
    repo = FeastRepo(tmp_path / "repo")
    folder = repo.source_dir("topic_stats")
    data = folder / "20260101T000000-abc.parquet"
    write_parquet_hidden_tmp(arrow_schema("topic_stats").empty_table(), data)
    before = data.stat()
    generate_repo(repo)
    assert not (folder / SEED_FILE).exists()  # the folder had a file already
    assert data.stat().st_mtime_ns == before.st_mtime_ns
    assert [p.name for p in folder.iterdir()] == [data.name]  # no temp file left behind


def test_status_reports_stale_definitions(tmp_path: Path) -> None:
    repo = FeastRepo(tmp_path / "repo")
    assert repo_status(repo)["generated"] is False
    generate_repo(repo)
    status = repo_status(repo)
    assert (status["generated"], status["stale"], status["applied"]) == (True, False, False)
    assert status["offline"] == {v.name: {"files": 1, "rows": 0} for v in VIEWS}
    text = repo.yaml_path.read_text().replace(definitions_version(), "000000000000")
    repo.yaml_path.write_text(text)
    assert repo_status(repo)["stale"] is True


def test_relative_project_gives_absolute_repo_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Regression: `feedstack demo --out demo-out` (a relative project) made `feast apply`, which
    runs in the repo folder, resolve the online store path against it a second time."""
    monkeypatch.chdir(tmp_path)
    repo = FeastRepo.for_project(Path("rel/project"))
    assert repo.path.is_absolute() and repo.sqlite_path.is_absolute()
    assert repo.sqlite_path == tmp_path / "rel" / "project" / "data" / "feast" / "online.db"
