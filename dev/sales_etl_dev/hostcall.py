"""Drive the genuine Azure Functions Python worker library the way the host drives it.

Core Tools and the host cannot run on every machine (not on these), so the demo, the
benchmark and the tests run the app inside the real worker library that Azure runs for
Python 3.13 (``azure-functions-runtime``, pinned in requirements.txt): its
``handle_event`` handlers receive the host's RPC messages (``sales_etl_dev/rpc``) for worker
init (which indexes ``function_app.py``), function metadata, function load and
invocation, and answer with the host's response messages. What this module supplies is
only the host's side of that conversation:

- the messages, with the payloads the host sends: for the SDK-type blob trigger
  ``ModelBindingData`` (version 1.0, source AzureStorageBlobs, JSON content naming the
  connection setting, container and blob) plus the trigger metadata (BlobTrigger, Uri,
  Properties, Metadata, name, sys); for the timer the host's timer JSON;
- an event loop that delivers them, several at once when asked (the worker runs sync
  functions on its own thread pool);
- the log channel: like the worker's dispatcher, a handler on the root logger (set to
  INFO) that turns every record into an ``RpcLog`` carrying the invocation id the
  dispatcher would find for it (the library's context variable, the asyncio task, the
  thread-local), collected in ``WorkerHost.logs`` as the host would receive them.

One worker per process, as in Azure (the library keeps its registry in module globals
and ``function_app.py`` is imported once). ``python -m sales_etl_dev.hostcall index`` indexes
in a fresh process and prints what the worker reported, for tests of import-time settings.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import os
import sys
import threading
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any

from sales_etl.config.settings import project_root

from .rpc import protos as _load_protos

HOST_VERSION = "4.1040.0"  # the host version the init request announces (informational)
_TASK_INVOCATION = "__azure_function_invocation_id__"


class WorkerStartError(RuntimeError):
    """The worker reported a failed init (indexing raised): the host would show 0 functions."""


class InvocationFailed(RuntimeError):
    """The worker reported a failed invocation (the host retries, then poisons the blob)."""

    def __init__(self, function: str, invocation_id: str, message: str, stack: str) -> None:
        super().__init__(f"{function} invocation {invocation_id} failed: {message}")
        self.function, self.invocation_id = function, invocation_id
        self.worker_message, self.stack_trace = message, stack


@dataclass
class _Request:
    """What the worker's proxy hands the library: the message and, at init, properties."""

    name: str
    request: Any
    properties: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Indexed:
    name: str
    function_id: str
    bindings: list[dict[str, Any]]  # the binding JSON the worker reports to the host


@dataclass(frozen=True)
class Invocation:
    function: str
    invocation_id: str
    ok: bool
    message: str  # the worker's exception message when it failed
    stack_trace: str

    def check(self) -> None:
        if not self.ok:
            raise InvocationFailed(self.function, self.invocation_id, self.message, self.stack_trace)


class _HostLogChannel(logging.Handler):
    """Every record becomes an RpcLog, as the worker's dispatcher sends it to the host."""

    def __init__(self, host: WorkerHost) -> None:
        super().__init__(logging.NOTSET)
        self.host = host

    def emit(self, record: logging.LogRecord) -> None:
        p = self.host.protos
        level = (
            p.RpcLog.Critical
            if record.levelno >= logging.CRITICAL
            else p.RpcLog.Error
            if record.levelno >= logging.ERROR
            else p.RpcLog.Warning
            if record.levelno >= logging.WARNING
            else p.RpcLog.Information
            if record.levelno >= logging.INFO
            else p.RpcLog.Debug
        )
        system = record.name.startswith(("azure_functions_worker", "azure.functions"))
        try:
            message = self.format(record)
        except Exception:  # a broken record must not break the caller
            message = str(record.msg)
        entry = p.RpcLog(
            level=level,
            message=message,
            category=record.name,
            log_category=p.RpcLog.System if system else p.RpcLog.User,
            invocation_id=self.host.current_invocation_id() or "",
        )
        self.host.logs.append(entry)


class WorkerHost:
    """The host's side of one worker: init, metadata, load, then invocations."""

    def __init__(self, app_dir: Path) -> None:
        import azure_functions_runtime as runtime

        self.runtime = runtime
        self.protos = _load_protos()
        self.app_dir = app_dir
        self.functions: dict[str, Indexed] = {}
        self.logs: collections.deque[Any] = collections.deque(maxlen=200_000)
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="worker-loop", daemon=True)
        self._channel = _HostLogChannel(self)

    # --- the worker's log channel -----------------------------------------------------
    def current_invocation_id(self) -> str | None:
        """The dispatcher's lookup: the library's context variable (set on its pool thread
        for the invocation), the asyncio task's tag, the loop thread's local."""
        value = self.runtime.invocation_id_cv.get()
        if value:
            return str(value)
        try:
            task = asyncio.current_task()
        except RuntimeError:
            task = None
        tagged = getattr(task, _TASK_INVOCATION, None) if task is not None else None
        return str(tagged) if tagged else None

    def logs_for(self, invocation_id: str) -> list[Any]:
        return [r for r in list(self.logs) if r.invocation_id == invocation_id]

    # --- start-up -------------------------------------------------------------------
    def start(self) -> WorkerHost:
        p = self.protos
        if str(self.app_dir) not in sys.path:
            sys.path.insert(0, str(self.app_dir))  # the worker runs in the app's folder
        root = logging.getLogger()
        root.setLevel(logging.INFO)  # as the worker does once its gRPC channel is up
        root.addHandler(self._channel)
        self._thread.start()
        self.runtime.start_threadpool_executor()
        init = p.StreamingMessage(
            worker_init_request=p.WorkerInitRequest(
                host_version=HOST_VERSION,
                function_app_directory=str(self.app_dir),
                worker_directory=str(Path(self.runtime.__file__).parent),
            )
        )
        response = self._run(
            self.runtime.worker_init_request(
                _Request("WorkerInitRequest", init, {"protos": p, "host": "127.0.0.1"})
            )
        )
        if response.result.status != p.StatusResult.Success:
            raise WorkerStartError(response.result.exception.message)
        meta = self._run(
            self.runtime.functions_metadata_request(
                _Request(
                    "WorkerMetadataRequest",
                    p.StreamingMessage(
                        functions_metadata_request=p.FunctionsMetadataRequest(
                            function_app_directory=str(self.app_dir)
                        )
                    ),
                )
            )
        )
        if meta.result.status != p.StatusResult.Success:
            raise WorkerStartError(meta.result.exception.message)
        for fm in meta.function_metadata_results:
            loaded = self._run(
                self.runtime.function_load_request(
                    _Request(
                        "FunctionLoadRequest",
                        p.StreamingMessage(
                            function_load_request=p.FunctionLoadRequest(
                                function_id=fm.function_id, metadata=fm
                            )
                        ),
                    )
                )
            )
            if loaded.result.status != p.StatusResult.Success:
                raise WorkerStartError(loaded.result.exception.message)
            self.functions[fm.name] = Indexed(
                fm.name, fm.function_id, [json.loads(b) for b in fm.raw_bindings]
            )
        return self

    def stop(self) -> None:
        logging.getLogger().removeHandler(self._channel)
        self.runtime.stop_threadpool_executor()
        if not self._thread.is_alive():  # never started
            self.loop.close()
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        if not self._thread.is_alive():
            self.loop.close()

    def _run(self, coro: Any, invocation_id: str | None = None) -> Any:
        return self._submit(coro, invocation_id).result()

    def _submit(self, coro: Any, invocation_id: str | None = None) -> Any:
        async def tagged() -> Any:
            task = asyncio.current_task()
            if task is not None and invocation_id:
                setattr(task, _TASK_INVOCATION, invocation_id)
            return await coro

        return asyncio.run_coroutine_threadsafe(tagged(), self.loop)

    # --- invocations ----------------------------------------------------------------
    def binding(self, function: str, kind: str) -> dict[str, Any]:
        if function not in self.functions:
            raise LookupError(
                f"the worker indexed no function {function!r} "
                f"(indexed: {', '.join(sorted(self.functions)) or 'none'})"
            )
        return next(b for b in self.functions[function].bindings if b["type"] == kind)

    def blob_request(
        self, container: str, blob_name: str, *, function: str = "load_blob", retry_count: int = 0
    ) -> Any:
        """The InvocationRequest the host sends when a blob lands (SDK-type binding)."""
        p = self.protos
        binding = self.binding(function, "blobTrigger")
        connection = binding["connection"]
        content = json.dumps(
            {"Connection": connection, "ContainerName": container, "BlobName": blob_name}
        ).encode()
        data = p.TypedData(
            model_binding_data=p.ModelBindingData(
                version="1.0", source="AzureStorageBlobs", content_type="application/json", content=content
            )
        )
        uri, properties, metadata = _blob_facts(connection, container, blob_name)
        full = f"{container}/{blob_name}"
        prefix = binding["path"].split("{", 1)[0]  # "<container>/incoming/" binds {name}
        name = full[len(prefix) :] if full.startswith(prefix) else blob_name
        trigger = {
            "BlobTrigger": p.TypedData(string=full),
            "Uri": p.TypedData(string=uri),
            "Properties": p.TypedData(json=json.dumps(properties)),
            "Metadata": p.TypedData(json=json.dumps(metadata)),
            "name": p.TypedData(string=name),
            "sys": _sys_metadata(p, function),
        }
        return self._request(function, binding["name"], data, trigger, retry_count)

    def timer_request(self, *, past_due: bool = False, function: str = "retry_sweep") -> Any:
        """The InvocationRequest the host sends when the schedule fires."""
        p = self.protos
        binding = self.binding(function, "timerTrigger")
        now = datetime.now(UTC)
        body = json.dumps(
            {
                "Schedule": {"AdjustForDST": True},
                "ScheduleStatus": {
                    "Last": (now - timedelta(minutes=10)).isoformat(),
                    "Next": (now + timedelta(minutes=10)).isoformat(),
                    "LastUpdated": now.isoformat(),
                },
                "IsPastDue": past_due,
            }
        )
        data = p.TypedData(json=body)
        return self._request(
            function,
            binding["name"],
            data,
            {"timer": p.TypedData(json=body), "sys": _sys_metadata(p, function)},
            0,
        )

    def _request(
        self, function: str, param: str, data: Any, trigger: Mapping[str, Any], retry_count: int
    ) -> Any:
        p = self.protos
        return p.StreamingMessage(
            invocation_request=p.InvocationRequest(
                invocation_id=str(uuid.uuid4()),
                function_id=self.functions[function].function_id,
                input_data=[p.ParameterBinding(name=param, data=data)],
                trigger_metadata=trigger,
                trace_context=p.RpcTraceContext(
                    trace_parent=f"00-{uuid.uuid4().hex}-{uuid.uuid4().hex[:16]}-01"
                ),
                retry_context=p.RetryContext(retry_count=retry_count, max_retry_count=0),
            )
        )

    def deliver(self, requests: Iterable[Any]) -> list[Invocation]:
        """Send invocation requests together (the host does not wait for one to finish
        before sending the next) and return the worker's answers in order."""
        pending = []
        for message in requests:
            ir = message.invocation_request
            pending.append(
                (
                    ir,
                    self._submit(
                        self.runtime.invocation_request(_Request("FunctionInvocationRequest", message)),
                        ir.invocation_id,
                    ),
                )
            )
        out = []
        by_id = {f.function_id: f.name for f in self.functions.values()}
        for ir, future in pending:
            response = future.result()
            ok = response.result.status == self.protos.StatusResult.Success
            out.append(
                Invocation(
                    by_id[ir.function_id],
                    response.invocation_id,
                    ok,
                    response.result.exception.message,
                    response.result.exception.stack_trace,
                )
            )
        return out


def _sys_metadata(p: Any, function: str) -> Any:
    return p.TypedData(
        json=json.dumps(
            {"MethodName": function, "UtcNow": datetime.now(UTC).isoformat(), "RandGuid": str(uuid.uuid4())}
        )
    )


def _blob_facts(
    connection: str, container: str, blob_name: str
) -> tuple[str, dict[str, Any], dict[str, str]]:
    """Uri, Properties and Metadata as the host reads them before it delivers the blob."""
    from azure.core.exceptions import AzureError
    from azurefunctions.extensions.bindings.blob.utils import service_client_factory

    blob = service_client_factory(connection).get_blob_client(container, blob_name)
    try:
        props = blob.get_blob_properties()
    except AzureError:  # gone or unreachable: the host may still deliver (at-least-once)
        return blob.url, {}, {}
    properties = {
        "Length": props.size,
        "ETag": props.etag,
        "ContentType": props.content_settings.content_type,
        "LastModified": props.last_modified.isoformat() if props.last_modified else None,
    }
    return blob.url, properties, dict(props.metadata or {})


@lru_cache(maxsize=1)
def worker() -> WorkerHost:
    """This process's worker, started (indexed and loaded) on first use."""
    host = WorkerHost(project_root())
    try:
        return host.start()
    except BaseException:
        host.stop()
        raise


def registered() -> dict[str, Indexed]:
    """The functions and binding JSON the worker reported when it indexed function_app.py."""
    return worker().functions


def invoke_blob_trigger(container: str, blob_name: str) -> None:
    """Deliver one blob to load_blob through the worker; raise if the worker reports failure."""
    w = worker()
    [result] = w.deliver([w.blob_request(container, blob_name)])
    result.check()


def invoke_timer_trigger(past_due: bool = False) -> None:
    w = worker()
    [result] = w.deliver([w.timer_request(past_due=past_due)])
    result.check()


def provide_app_settings(settings: Mapping[str, str]) -> None:
    """Give the worker process its app settings, as the host does (environment variables)."""
    os.environ.update(settings)


def _index_main() -> int:
    """Index in this (fresh) process and print what the worker reported as JSON."""
    host = WorkerHost(project_root())
    p = host.protos
    level = {getattr(p.RpcLog, n): n for n in ("Debug", "Information", "Warning", "Error", "Critical")}
    out: dict[str, Any] = {"ok": True, "error": None, "functions": {}}
    try:
        host.start()
        out["functions"] = {n: f.bindings for n, f in host.functions.items()}
    except WorkerStartError as exc:
        out.update(ok=False, error=str(exc))
    out["logs"] = [
        {"level": level.get(r.level, "Trace"), "category": r.category, "message": r.message}
        for r in host.logs
    ]
    host.stop()
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    if sys.argv[1:] != ["index"]:
        print("usage: python -m sales_etl_dev.hostcall index", file=sys.stderr)
        raise SystemExit(2)
    raise SystemExit(_index_main())
