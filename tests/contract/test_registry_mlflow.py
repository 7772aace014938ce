"""The MLflow registry contract, run against the embedded SQLite backend and a real PostgreSQL
(DATABASE_URL, default postgresql://postgres@127.0.0.1:5432/test): each test gets its own
database, dropped afterwards. Without a server the PostgreSQL cases skip, except under CI=true."""

from __future__ import annotations

import atexit
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from feedstack.core.errors import InputError
from feedstack.registry.mlflow_registry import MlflowRegistry, artifact_uri, tracking_uri

DATABASE_URL = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
WINDOWS = {"start": 1767225600.0, "label": 1767247200.0, "eval": 1767268800.0, "end": 1767290400.0}


_TEMPLATE: list[Path] = []


def fresh_sqlite_registry(project: Path, name: str = "mlruns.db") -> None:
    """Put an empty, migrated MLflow SQLite database at ``project/name``: MLflow runs ~50 schema
    migrations on a new database (seconds); tests copy one made once per session instead."""
    if not _TEMPLATE:
        folder = Path(tempfile.mkdtemp(prefix="fs-mlflow-template-"))
        atexit.register(shutil.rmtree, folder, True)
        MlflowRegistry(tracking_uri("sqlite://t.db", folder), folder.as_uri(), "t").versions()
        _TEMPLATE.append(folder / "t.db")
    project.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(_TEMPLATE[0], project / name)


def model_folder(root: Path, version: str, ndcg: float = 0.12) -> Path:
    folder = root / "models" / version
    (folder / "ranker").mkdir(parents=True)
    (folder / "ranker" / "model.txt").write_text("tree\n", encoding="utf-8")
    meta = {
        "format": 1,
        "kind": "news-two-stage",
        "version": version,
        "feature_names": ["a", "b"],
        "selected": "10x3",
        "ranker_params": {"num_leaves": 10, "learning_rate": 0.1},
        "features_version": "f8e533092b34",
        "log_hash": "loghash-" + version,
        "training_rows_hash": "rows-" + version,
        "metrics": {"ndcg@10": ndcg, "lift": {"relative": 0.3}},
        "config": {"warmup_hours": 6, "seed": 0},
    }
    (folder / "model.json").write_text(json.dumps(meta), encoding="utf-8")
    return folder


def _postgres_db() -> Iterator[str]:
    psycopg2 = pytest.importorskip("psycopg2")
    try:
        admin = psycopg2.connect(DATABASE_URL, connect_timeout=3)
    except psycopg2.OperationalError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but PostgreSQL at {DATABASE_URL} is unreachable: {exc}")
        pytest.skip(f"no PostgreSQL at {DATABASE_URL}: {exc}")
    admin.autocommit = True
    name = f"fs_mlflow_{uuid.uuid4().hex[:10]}"
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    base = DATABASE_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.fixture(params=["sqlite", "postgres"])
def registry(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MlflowRegistry]:
    art = artifact_uri("file://mlartifacts", tmp_path)
    if request.param == "sqlite":
        fresh_sqlite_registry(tmp_path)
        yield MlflowRegistry(tracking_uri("sqlite://mlruns.db", tmp_path), art, "fs-test")
        return
    gen = _postgres_db()
    url = next(gen)
    yield MlflowRegistry(tracking_uri(url, tmp_path), art, "fs-test")
    gen.close()


def test_register_lineage_aliases(registry: MlflowRegistry, tmp_path: Path) -> None:
    a = registry.register(model_folder(tmp_path, "news-a"), windows=WINDOWS, code="abc123")
    b = registry.register(model_folder(tmp_path, "news-b", 0.2), code="def456")
    assert (a.number, b.number) == ("1", "2")
    # Registering the same folder again is a no-op that names the same version.
    assert registry.register(tmp_path / "models" / "news-a").number == "1"
    assert [v.model for v in registry.versions()] == ["news-a", "news-b"]

    registry.set_alias("champion", "news-a")
    registry.set_alias("challenger", "2")
    assert registry.resolve("champion").model == "news-a"
    assert registry.resolve("challenger").model == "news-b"
    registry.set_alias("champion", "challenger")  # promotion moves the alias
    assert registry.resolve("champion").number == "2"
    registry.clear_alias("challenger")
    assert registry.alias("challenger") is None
    assert registry.resolve("2").aliases == ("champion",)

    lin = registry.lineage("news-a")
    assert lin["model"] == "news-a" and lin["number"] == "1"
    assert lin["data"]["training_rows_hash"] == "rows-news-a"
    assert lin["data"]["log_hash"] == "loghash-news-a"
    assert lin["data"]["event_range"]["fit_start"] == "2026-01-01T00:00:00+00:00"
    assert lin["data"]["event_range"]["eval_end"] == "2026-01-01T18:00:00+00:00"
    assert lin["features_version"] == "f8e533092b34"
    assert lin["code_version"] == "abc123"
    assert lin["metrics"]["ndcg_at_10"] == pytest.approx(0.12)
    assert lin["metrics"]["lift.relative"] == pytest.approx(0.3)
    assert json.loads(lin["params"]["ranker.num_leaves"]) == 10
    # The folder itself is the run's artifacts.
    art = Path(lin["artifact_uri"].removeprefix("file://")) / "model" / "model.json"
    assert json.loads(art.read_text())["version"] == "news-a"

    registry.tag("news-b", {"rollout.last": {"action": "promote"}})
    assert json.loads(registry.lineage("2")["tags"]["rollout.last"]) == {"action": "promote"}


def test_unknown_versions_name_the_value(registry: MlflowRegistry, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="news-zz"):
        registry.resolve("news-zz")
    with pytest.raises(InputError, match="alias"):
        registry.set_alias("staging", "1")
    with pytest.raises(InputError, match="not a saved model"):
        registry.register(tmp_path / "nowhere")
    assert registry.alias("champion") is None


def test_register_trained_makes_the_first_model_champion(tmp_path: Path) -> None:
    from feedstack.core.spec import Spec
    from feedstack.registry.mlflow_registry import register_trained

    fresh_sqlite_registry(tmp_path)
    first = {"model_dir": str(model_folder(tmp_path, "news-a")), "windows": WINDOWS}
    second = {"model_dir": str(model_folder(tmp_path, "news-b"))}
    assert register_trained(tmp_path, first, Spec())["aliases"] == ["champion"]
    out = register_trained(tmp_path, second, Spec())
    assert (out["number"], out["aliases"]) == ("2", [])


def test_an_unreachable_database_fails_fast_and_hides_the_password(tmp_path: Path) -> None:
    import time

    from feedstack.core.errors import BackendUnavailable

    url = tracking_uri("postgresql://fs:secret@127.0.0.1:1/none", tmp_path)
    started = time.monotonic()
    with pytest.raises(BackendUnavailable, match=r"fs:\*\*\*@127.0.0.1:1") as info:
        MlflowRegistry(url, artifact_uri("file://a", tmp_path), "m")
    assert "secret" not in str(info.value)
    assert time.monotonic() - started < 10  # MLflow alone retries ~100 s
