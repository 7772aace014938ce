"""The model registry on MLflow: every trained model folder becomes a run and a model version.

A run holds what a compliance review asks of a model: its params, its metrics, the hash of its
training rows and of the event log it read, the event-time range it was fitted and selected on,
the feature-definitions version and the code version (git commit, else the package version); the
folder itself is the run's artifacts. The run is registered as a version of ``registry.model_name``
and tagged with the folder name, so a version can be named either way: ``news-2026...`` (the folder
under PROJECT/models/), ``3`` (MLflow's number) or an alias (``champion``, ``challenger``; aliases,
never the deprecated stages).

Backends by URL (spec ``registry.tracking_uri``): ``sqlite://mlruns.db`` (embedded, resolved
against the project; one writer at a time: SQLite locks under concurrent writers) or
``postgresql://user@host/db`` (production). ``mlflow ui --backend-store-uri <uri>`` shows the same
runs. ``import mlflow`` takes ~2 s, so it happens inside this class, never at module import.
"""

from __future__ import annotations

import json
import re
import subprocess
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from feedstack import __version__
from feedstack.core.errors import BackendUnavailable, ConfigError, InputError
from feedstack.core.redact import redact_url
from feedstack.core.spec import Spec

ALIASES = ("champion", "challenger")
EXPERIMENT = "feedstack-models"
TAG = "feedstack."  # prefix of our tags on runs and model versions
_TAG_MAX_CHARS = 5000
_METRIC_NAME = re.compile(r"[^A-Za-z0-9_\-. /]")


@dataclass(frozen=True)
class RegisteredVersion:
    """One model version: MLflow's number and our folder name."""

    name: str  # registered model name
    number: str  # MLflow's version number
    model: str  # folder name under PROJECT/models/ (what RolloutState holds)
    run_id: str
    aliases: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "number": self.number,
            "model": self.model,
            "run_id": self.run_id,
            "aliases": list(self.aliases),
        }


def tracking_uri(url: str, project: Path) -> str:
    """MLflow's SQLAlchemy URL for a spec URL: a relative sqlite path is taken from the project."""
    if url.startswith("sqlite://"):
        rest = url.removeprefix("sqlite://")
        path = Path(rest) if rest.startswith("/") else project.resolve() / rest
        return f"sqlite:///{path}"
    if url.startswith("postgresql://"):
        # SQLAlchemy 2.1 maps bare postgresql:// to psycopg 3; the installed driver is psycopg2.
        return "postgresql+psycopg2://" + url.removeprefix("postgresql://")
    if url.startswith(("postgresql+", "mysql://", "mysql+")):
        return url
    raise ConfigError(
        f"registry.tracking_uri: unsupported URL {redact_url(url)!r}; "
        "use sqlite://PATH or postgresql://..."
    )


def artifact_uri(url: str, project: Path) -> str:
    if url.startswith("file://"):
        rest = url.removeprefix("file://")
        path = Path(rest) if rest.startswith("/") else project.resolve() / rest
        return path.as_uri()
    if re.match(r"^[a-z][a-z0-9+]*://", url):
        return url  # s3://, gs://, ... as MLflow understands them
    raise ConfigError(
        f"registry.artifact_root: expected a URL (file://...), got {redact_url(url)!r}"
    )


def code_version() -> str:
    """The git commit of the source tree this package runs from (``+dirty`` when it has
    uncommitted changes), else the package version."""
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5
        )
        if commit.returncode != 0:
            return f"feedstack=={__version__}"
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", "."],
            cwd=here.parent,
            capture_output=True,
            text=True,
            timeout=10,
        )
        suffix = "+dirty" if dirty.stdout.strip() else ""
        return commit.stdout.strip() + suffix
    except (OSError, subprocess.SubprocessError):
        return f"feedstack=={__version__}"


def flatten(doc: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts -> dotted keys (MLflow params and metrics are flat)."""
    out: dict[str, Any] = {}
    for key, value in doc.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat()


def event_range(windows: Mapping[str, float] | None) -> dict[str, str]:
    """Tags for the event-time range a model saw: fitted on [start, eval), selected on
    [eval, end) (train/windows.py)."""
    if not windows:
        return {}
    return {
        "events.fit_start": _iso(windows["start"]),
        "events.fit_end": _iso(windows["eval"]),
        "events.eval_start": _iso(windows["eval"]),
        "events.eval_end": _iso(windows["end"]),
    }


@contextmanager
def _mlflow_errors(what: str) -> Iterator[None]:
    """MLflow's and SQLAlchemy's deprecation chatter silenced, their failures translated once."""
    from mlflow.exceptions import MlflowException

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        try:
            yield
        except MlflowException as exc:
            code = getattr(exc, "error_code", "")
            if code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                raise InputError(f"{what}: {exc.message}") from None
            raise BackendUnavailable(f"{what}: {exc.message}") from None
        except Exception as exc:
            if type(exc).__module__.startswith("sqlalchemy"):
                raise BackendUnavailable(f"{what}: {exc}") from None
            raise


class MlflowRegistry:
    """Register model folders and move the champion/challenger aliases."""

    def __init__(
        self, tracking_uri: str, artifact_root: str, model_name: str, experiment: str = EXPERIMENT
    ) -> None:
        from mlflow.tracking import MlflowClient

        self.uri = tracking_uri
        self.artifact_root = artifact_root
        self.model_name = model_name
        self.experiment = experiment
        if tracking_uri.startswith("postgresql"):
            _probe(tracking_uri)
        with _mlflow_errors(f"MLflow at {_redact(tracking_uri)}"):
            self.client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)

    @classmethod
    def from_spec(cls, project: Path, spec: Spec) -> MlflowRegistry:
        r = spec.registry
        return cls(
            tracking_uri(r.tracking_uri, project),
            artifact_uri(r.artifact_root, project),
            r.model_name,
        )

    # --- writing ---------------------------------------------------------------------------
    def register(
        self,
        folder: Path,
        *,
        windows: Mapping[str, float] | None = None,
        code: str | None = None,
    ) -> RegisteredVersion:
        """Log ``folder`` (a saved model: model.json inside) as a run and register it. Registering
        the same folder again returns the existing version."""
        try:
            meta: dict[str, Any] = json.loads((folder / "model.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise InputError(f"{folder}: not a saved model folder ({exc})") from None
        model = str(meta.get("version") or folder.name)
        existing = self._find(model)
        if existing is not None:
            return existing
        from mlflow.entities import Metric, Param, RunTag

        tags = {
            "version": model,
            "kind": str(meta.get("kind", "")),
            "data_hash": str(meta.get("training_rows_hash", "")),
            "log_hash": str(meta.get("log_hash", "")),
            "features_version": str(meta.get("features_version", "")),
            "code_version": code or code_version(),
            **event_range(windows or meta.get("windows")),
        }
        params = flatten(
            {
                "selected": meta.get("selected"),
                "ranker": meta.get("ranker_params", {}),
                "blend": meta.get("blend", {}),
                "train": meta.get("config", {}),
                "n_features": len(meta.get("feature_names", [])),
            }
        )
        metrics = {
            _METRIC_NAME.sub("_", k.replace("@", "_at_")): float(v)
            for k, v in flatten(meta.get("metrics", {})).items()
            if isinstance(v, int | float) and not isinstance(v, bool)
        }
        now_ms = int(datetime.now(UTC).timestamp() * 1000)
        with _mlflow_errors(f"registering {folder}"):
            run = self.client.create_run(
                self._experiment_id(), run_name=model, tags={TAG + k: v for k, v in tags.items()}
            )
            run_id = run.info.run_id
            self.client.log_batch(
                run_id,
                metrics=[Metric(k, v, now_ms, 0) for k, v in metrics.items()],
                params=[Param(k, json.dumps(v)[:6000]) for k, v in params.items()],
            )
            self.client.log_artifacts(run_id, str(folder), "model")
            self.client.set_terminated(run_id)
            self._ensure_model()
            mv = self.client.create_model_version(
                self.model_name,
                source=f"runs:/{run_id}/model",
                run_id=run_id,
                tags={TAG + k: v for k, v in tags.items()},
                description=f"feedstack model {model}",
            )
            # Run tags too (RunTag) so the run page alone answers the lineage question.
            self.client.log_batch(run_id, tags=[RunTag(TAG + "model_version", str(mv.version))])
        return RegisteredVersion(self.model_name, str(mv.version), model, run_id, ())

    def set_alias(self, alias: str, ref: str) -> RegisteredVersion:
        if alias not in ALIASES:
            raise InputError(f"alias: must be one of {list(ALIASES)}, got {alias!r}")
        v = self.resolve(ref)
        with _mlflow_errors(f"setting alias {alias}"):
            self.client.set_registered_model_alias(self.model_name, alias, v.number)
        return self.resolve(v.number)

    def clear_alias(self, alias: str) -> None:
        if self.alias(alias) is None:
            return
        with _mlflow_errors(f"deleting alias {alias}"):
            self.client.delete_registered_model_alias(self.model_name, alias)

    def tag(self, ref: str, values: Mapping[str, Any]) -> None:
        """Record (rollout decisions, experiment results) on a version, as ``feedstack.*`` tags."""
        v = self.resolve(ref)
        with _mlflow_errors(f"tagging version {v.number}"):
            for key, value in values.items():
                text = value if isinstance(value, str) else json.dumps(value)
                text = text[:_TAG_MAX_CHARS]  # MLflow caps tag values; the JSONL has the rest
                self.client.set_model_version_tag(self.model_name, v.number, TAG + key, text)

    # --- reading ---------------------------------------------------------------------------
    def alias(self, alias: str) -> RegisteredVersion | None:
        from mlflow.exceptions import MlflowException

        with _mlflow_errors(f"alias {alias}"):
            try:
                mv = self.client.get_model_version_by_alias(self.model_name, alias)
            except MlflowException:
                return None
        return self._version(mv)

    def resolve(self, ref: str) -> RegisteredVersion:
        """An alias, an MLflow version number or a model folder name -> the version."""
        if ref in ALIASES:
            found = self.alias(ref)
        elif ref.isdigit():
            with _mlflow_errors(f"version {ref} of {self.model_name}"):
                found = self._version(self.client.get_model_version(self.model_name, ref))
        else:
            found = self._find(ref)
        if found is None:
            raise InputError(f"version: {ref!r} is not registered in {self.model_name}")
        return found

    def versions(self) -> list[RegisteredVersion]:
        with _mlflow_errors("listing versions"):
            found = self.client.search_model_versions(f"name='{self.model_name}'")
        return sorted((self._version(mv) for mv in found), key=lambda v: int(v.number))

    def lineage(self, ref: str) -> dict[str, Any]:
        """Which events, feature definitions and code produced a version, with its params and
        metrics: the answer to a compliance review."""
        v = self.resolve(ref)
        with _mlflow_errors(f"lineage of {ref}"):
            mv = self.client.get_model_version(self.model_name, v.number)
            run = self.client.get_run(v.run_id)
        ours = {k.removeprefix(TAG): val for k, val in mv.tags.items() if k.startswith(TAG)}
        events = {k.removeprefix("events."): val for k, val in ours.items() if "events." in k}
        return {
            **v.to_json(),
            "created": datetime.fromtimestamp(mv.creation_timestamp / 1000, UTC).isoformat(),
            "source": mv.source,
            "artifact_uri": run.info.artifact_uri,
            "data": {
                "training_rows_hash": ours.get("data_hash", ""),
                "log_hash": ours.get("log_hash", ""),
                "event_range": events,
            },
            "features_version": ours.get("features_version", ""),
            "code_version": ours.get("code_version", ""),
            "params": dict(run.data.params),
            "metrics": dict(run.data.metrics),
            "tags": {k: val for k, val in ours.items() if not k.startswith("events.")},
            "tracking_uri": _redact(self.uri),
        }

    # --- internals -------------------------------------------------------------------------
    def _experiment_id(self) -> str:
        exp = self.client.get_experiment_by_name(self.experiment)
        if exp is not None:
            return str(exp.experiment_id)
        return str(self.client.create_experiment(self.experiment, self.artifact_root))

    def _ensure_model(self) -> None:
        from mlflow.exceptions import MlflowException

        try:
            self.client.get_registered_model(self.model_name)
        except MlflowException:
            self.client.create_registered_model(
                self.model_name, description="feedstack news recommender (candidates + ranker)"
            )

    def _find(self, model: str) -> RegisteredVersion | None:
        if "'" in model or "`" in model:
            raise InputError(f"version: bad name {model!r}")
        with _mlflow_errors(f"looking up {model}"):
            found = self.client.search_model_versions(
                f"name='{self.model_name}' and tag.`{TAG}version`='{model}'"
            )
        return self._version(found[0]) if found else None

    def _version(self, mv: Any) -> RegisteredVersion:
        aliases = tuple(sorted(getattr(mv, "aliases", []) or []))
        return RegisteredVersion(
            self.model_name,
            str(mv.version),
            str(mv.tags.get(TAG + "version", "")),
            str(mv.run_id),
            aliases,
        )


def register_trained(project: Path, result: Mapping[str, Any], spec: Spec) -> dict[str, Any]:
    """Register what ``train_project`` returned (its ``model_dir`` and event ``windows``); the
    first model of a project also becomes the champion. For ``feedstack train`` and the demo."""
    reg = MlflowRegistry.from_spec(project, spec)
    version = reg.register(Path(result["model_dir"]), windows=result.get("windows"))
    if reg.alias("champion") is None:
        version = reg.set_alias("champion", version.number)
    return {**version.to_json(), "tracking_uri": _redact(reg.uri)}


def model_folder(project: Path, version: str) -> Path:
    """PROJECT/models/<version>, which must hold a saved model."""
    folder = project / "models" / version
    if "/" in version or version in ("", ".", "..") or not (folder / "model.json").is_file():
        raise InputError(f"version: no saved model {version!r} under {project / 'models'}")
    return folder


def _probe(uri: str, timeout_s: int = 5) -> None:
    """Fail fast on an unreachable database: MLflow itself retries for ~100 s before it gives
    up (mlflow/store/db/utils.py, create_sqlalchemy_engine_with_retry)."""
    import sqlalchemy

    engine = sqlalchemy.create_engine(uri, connect_args={"connect_timeout": timeout_s})
    try:
        engine.connect().close()
    except sqlalchemy.exc.SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise BackendUnavailable(f"MLflow database {_redact(uri)}: {reason}") from None
    finally:
        engine.dispose()


def _redact(uri: str) -> str:
    """A URL without its password (lineage output may be pasted into a review)."""
    return redact_url(uri)
