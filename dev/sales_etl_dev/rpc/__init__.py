"""The Functions RPC messages (``function_rpc.proto``, written for this project) as the
``protos`` namespace the genuine worker library's handlers expect from the host's side.

``make setup`` compiles the .proto with grpcio-tools into the git-ignored ``_generated/``;
``protos()`` compiles it on first use if that has not happened (a fresh clone running
pytest directly). grpcio-tools is a dev dependency: nothing here is used in Azure, where
the host itself speaks this protocol to the worker.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType

HERE = Path(__file__).resolve().parent
PROTO = HERE / "function_rpc.proto"
GENERATED = HERE / "_generated"
MODULE = "sales_etl_dev.rpc._generated.function_rpc_pb2"


def compile_proto() -> Path:
    """Compile function_rpc.proto into _generated/ (idempotent)."""
    try:
        from grpc_tools import protoc
    except ImportError as exc:  # pragma: no cover - dev dependency missing
        raise RuntimeError("grpcio-tools is not installed: run `make setup` (requirements-dev.txt)") from exc
    import grpc_tools

    GENERATED.mkdir(exist_ok=True)
    (GENERATED / "__init__.py").touch()
    well_known = Path(grpc_tools.__file__).parent / "_proto"
    code = protoc.main(
        ["grpc_tools.protoc", f"-I{HERE}", f"-I{well_known}", f"--python_out={GENERATED}", str(PROTO)]
    )
    if code != 0:
        raise RuntimeError(f"protoc failed on {PROTO} (exit {code})")
    return GENERATED / "function_rpc_pb2.py"


def protos() -> ModuleType:
    """The compiled messages (compiled now if missing or older than the .proto)."""
    target = GENERATED / "function_rpc_pb2.py"
    if MODULE not in sys.modules and (not target.exists() or target.stat().st_mtime < PROTO.stat().st_mtime):
        compile_proto()
    return importlib.import_module(MODULE)
