"""Regenerate the committed gRPC stubs from proto/feedstack/v1/feed.proto (a developer tool).

    python -m feedstack.serve.grpc_codegen [OUT_DIR]

The proto is mapped to the virtual path ``feedstack/serve/grpc_gen/feed.proto`` (protoc's
``-I virtual=physical``) so the generated ``feed_pb2_grpc.py`` imports
``feedstack.serve.grpc_gen.feed_pb2``, a real module of this package; the wire names stay
``feedstack.v1.Feed`` / ``feedstack.v1.Events`` (the proto ``package``). Needs grpcio-tools (a dev
dependency); the server only needs the committed output.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
PROTO = REPO / "proto" / "feedstack" / "v1" / "feed.proto"
VIRTUAL_DIR = "feedstack/serve/grpc_gen"
OUT_FILES = ("feed_pb2.py", "feed_pb2.pyi", "feed_pb2_grpc.py")


def generate(out_root: Path) -> Path:
    """Write the stubs under ``out_root/feedstack/serve/grpc_gen`` and return that folder."""
    from grpc_tools import protoc  # type: ignore[import-untyped]

    include = str(Path(protoc.__file__).parent / "_proto")  # google/protobuf/*.proto
    out_root.mkdir(parents=True, exist_ok=True)
    code = protoc.main(
        [
            "grpc_tools.protoc",
            f"-I{VIRTUAL_DIR}={PROTO.parent}",
            f"-I{include}",
            f"--python_out={out_root}",
            f"--pyi_out={out_root}",
            f"--grpc_python_out={out_root}",
            f"{VIRTUAL_DIR}/{PROTO.name}",
        ]
    )
    if code != 0:
        raise RuntimeError(f"protoc failed with exit code {code} on {PROTO}")
    return out_root / VIRTUAL_DIR


def main() -> None:
    out_root = Path(sys.argv[1]) if len(sys.argv) > 1 else REPO / "src"
    print(generate(out_root))


if __name__ == "__main__":
    main()
