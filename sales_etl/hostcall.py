"""Invoke the function app's registered functions the way the Functions host does.

Azure Functions Core Tools cannot run everywhere (not on these machines), so the demo, the
benchmark and the tests index ``function_app.app`` like the Python worker (registered
functions, their raw bindings through the extension registry) and invoke them with what
the host sends: for the SDK-type blob trigger, model-binding data naming the connection
setting, container and blob, which the extension's converter turns into a real
``BlobClient`` built from that setting.
"""

from __future__ import annotations

import importlib
import inspect
import json
import logging
import sys
from dataclasses import dataclass
from functools import lru_cache
from types import SimpleNamespace
from typing import Any

from azurefunctions.extensions.base import Datum
from azurefunctions.extensions.base.meta import get_binding_registry

from .settings import project_root


@dataclass(frozen=True)
class Registered:
    name: str
    bindings: list[dict[str, Any]]  # the binding JSON the host receives
    function: Any  # the user function
    parameters: dict[str, Any]  # parameter name -> annotation


@lru_cache(maxsize=1)
def registered() -> dict[str, Registered]:
    """Index function_app.py once (a FunctionApp may be indexed only once)."""
    root = str(project_root())
    if root not in sys.path:
        sys.path.insert(0, root)
    module = importlib.import_module("function_app")
    registry = get_binding_registry()
    found: dict[str, Registered] = {}
    logging.disable(logging.WARNING)  # the library warns that auth levels do not apply here
    try:
        functions = module.app.get_functions()
    finally:
        logging.disable(logging.NOTSET)
    for fn in functions:
        user = fn.get_user_function()
        params = {n: p.annotation for n, p in inspect.signature(user).parameters.items()}
        input_types = {n: SimpleNamespace(pytype=t) for n, t in params.items()}
        raw, _ = registry.get_raw_bindings(fn, input_types)
        found[fn.get_function_name()] = Registered(
            name=fn.get_function_name(), bindings=[json.loads(b) for b in raw],
            function=user, parameters=params)
    return found


def _by_trigger(kind: str) -> Registered:
    for reg in registered().values():
        if any(b["type"] == kind for b in reg.bindings):
            return reg
    raise LookupError(f"function_app registers no {kind} function")


def blob_trigger_datum(connection: str, container: str, blob_name: str) -> Datum:
    """What the host sends for an SDK-type blob binding: model-binding data, not bytes."""
    content = json.dumps({"Connection": connection, "ContainerName": container,
                          "BlobName": blob_name})
    value = SimpleNamespace(version="1.0", source="AzureStorageBlobs",
                            content_type="application/json", content=content)
    return Datum(value=value, type="model_binding_data")


def invoke_blob_trigger(container: str, blob_name: str) -> Any:
    reg = _by_trigger("blobTrigger")
    binding = next(b for b in reg.bindings if b["type"] == "blobTrigger")
    pytype = reg.parameters[binding["name"]]
    converter = get_binding_registry().get("blobTrigger")
    client = converter.decode(blob_trigger_datum(binding["connection"], container, blob_name),
                              trigger_metadata={}, pytype=pytype)
    return reg.function(**{binding["name"]: client})


def invoke_timer_trigger(past_due: bool = False) -> Any:
    from azure.functions.timer import TimerRequest

    reg = _by_trigger("timerTrigger")
    binding = next(b for b in reg.bindings if b["type"] == "timerTrigger")
    return reg.function(**{binding["name"]: TimerRequest(past_due=past_due)})


def provide_app_settings(settings: dict[str, str]) -> None:
    """Give the worker process its app settings, as the host does (the blob extension reads
    the connection setting named in the binding from the process environment)."""
    import os

    os.environ.update(settings)
