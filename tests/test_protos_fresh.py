"""The committed generated code in protos/gradserve/v1/ is what scripts/gen_protos.py makes now."""

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GENERATED = ROOT / "protos" / "gradserve" / "v1"


def _load_generator():
    spec = importlib.util.spec_from_file_location("gen_protos", ROOT / "scripts" / "gen_protos.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("gen_protos", module)
    spec.loader.exec_module(module)
    return module


def _generated_files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())
            if p.is_file() and "_pb2" in p.name}


def test_generated_code_is_fresh(tmp_path):
    _load_generator().generate(tmp_path)
    fresh = _generated_files(tmp_path / "gradserve" / "v1")
    committed = _generated_files(GENERATED)
    assert fresh, "the generator produced nothing"
    assert sorted(committed) == sorted(fresh), "generated files differ: run scripts/gen_protos.py"
    stale = [name for name in fresh if fresh[name] != committed[name]]
    assert not stale, f"stale generated code {stale}: run scripts/gen_protos.py"


def test_every_proto_has_generated_modules():
    for proto in GENERATED.glob("*.proto"):
        assert (GENERATED / f"{proto.stem}_pb2.py").exists(), proto.name
