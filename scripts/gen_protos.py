#!/usr/bin/env python3
"""Generate the Python code for `protos/gradserve/v1/*.proto` — the one place protoc runs.

    python scripts/gen_protos.py            # regenerate next to the .proto files
    python scripts/gen_protos.py --out DIR  # generate into DIR/gradserve/v1/ (the freshness test)

Uses grpc_tools.protoc (the pinned `grpcio-tools` of the test extra) with `-Iprotos`, so the
generated modules import each other as `gradserve.v1.xxx_pb2`. Writes `*_pb2.py`, `*_pb2.pyi`
and `*_pb2_grpc.py`.
"""

from __future__ import annotations

import argparse
import sys
from importlib import resources
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "protos"
PROTO_DIR = PROTO_ROOT / "gradserve" / "v1"


def proto_files() -> list[Path]:
    """The .proto sources, sorted so runs are reproducible."""
    return sorted(PROTO_DIR.glob("*.proto"))


def generate(out: Path) -> None:
    """Run protoc over every .proto, writing the Python outputs under `out`.

    Raises:
        RuntimeError: protoc reported an error.
    """
    from grpc_tools import protoc  # imported late: only this script needs grpcio-tools

    well_known = resources.files("grpc_tools") / "_proto"
    out.mkdir(parents=True, exist_ok=True)
    args = ["grpc_tools.protoc", f"-I{PROTO_ROOT}", f"-I{well_known}",
            f"--python_out={out}", f"--pyi_out={out}", f"--grpc_python_out={out}",
            *(str(p.relative_to(PROTO_ROOT)) for p in proto_files())]
    if protoc.main(args) != 0:
        raise RuntimeError("protoc failed; see its messages above")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=PROTO_ROOT,
                        help="output root (default: protos/, next to the sources)")
    generate(parser.parse_args(argv).out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
