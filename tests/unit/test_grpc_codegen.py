"""The committed gRPC stubs are exactly what the .proto generates (regenerate with
``python -m feedstack.serve.grpc_codegen`` after editing proto/feedstack/v1/feed.proto)."""

from __future__ import annotations

from pathlib import Path

import pytest

from feedstack.serve import grpc_codegen

pytest.importorskip("grpc_tools", reason="grpcio-tools (a dev dependency) generates the stubs")


def test_committed_stubs_match_the_proto(tmp_path: Path) -> None:
    fresh = grpc_codegen.generate(tmp_path)
    committed = Path(grpc_codegen.__file__).parent / "grpc_gen"
    for name in grpc_codegen.OUT_FILES:
        assert (fresh / name).read_bytes() == (committed / name).read_bytes(), name
