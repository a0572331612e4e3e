"""One benchmark case in its own process (so its peak RSS and CPU are its own).

    python -m bench.cases floor PAYLOAD     COPY of the final rows (the physical floor)
    python -m bench.cases load CSV          the `sales-etl load` path (library call)
    python -m bench.cases blob BLOB         the blob-triggered function, as the host calls it
    python -m bench.cases original CSV      the original design's load path

Settings come from the environment (the benchmark's own stack). Prints one JSON line:
the seconds of the measured operation only (no interpreter start-up, no imports), and its
wall-clock start and end (the parallel case adds them up across processes).
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from pathlib import Path


def main(case: str, arg: str) -> None:
    from sales_etl.config.settings import load_settings
    from sales_etl.datasets.reader import get_dataset
    from sales_etl.db.connection import connect
    from sales_etl.flow import pipeline

    settings = load_settings()
    result: dict[str, object] = {"case": case}
    _wait_for_go()  # the parallel case starts its processes together, imports done
    result["start"] = time.time()
    if case == "floor":
        from bench.floor import copy_payload

        started = time.perf_counter()
        result["rows"] = copy_payload(settings, Path(arg))
    elif case == "load":
        started = time.perf_counter()
        rec = pipeline.load_file(Path(arg), get_dataset("sales"), settings)
        result.update(rows=rec.rows_loaded, duplicates=rec.rows_duplicate)
    elif case == "blob":
        from sales_etl_dev import hostcall

        hostcall.registered()  # indexing happens once per worker, before any invocation
        started = time.perf_counter()
        hostcall.invoke_blob_trigger(settings.container, arg)
        conn = connect(settings.require_database())
        with conn.cursor() as cur:
            cur.execute(
                "SELECT status, rows_loaded, rows_duplicate FROM etl_runs"
                " WHERE blob_path = %s ORDER BY run_id DESC LIMIT 1",
                (arg,),
            )
            status, loaded, dupes = cur.fetchone()
        conn.close()
        result.update(status=status, rows=loaded, duplicates=dupes)
    elif case == "original":
        import sqlalchemy

        from bench.original import load
        from sales_etl.stages.protect import blind_index

        db = settings.require_database()
        url = sqlalchemy.URL.create(
            "postgresql+psycopg2",
            username=db.user,
            password=db.password.get() if db.password else None,
            host=db.host,
            port=db.port,
            database=db.dbname,
            query={"sslmode": db.sslmode, "sslrootcert": db.sslrootcert or ""},
        )
        fernet_keys, blind_key = settings.require_keys()
        started = time.perf_counter()
        result["rows"] = load(arg, url, fernet_keys[0], lambda v: blind_index(blind_key, v))
    else:
        raise SystemExit(f"unknown case {case!r}")
    result["seconds"] = time.perf_counter() - started
    result["end"] = time.time()
    # This process's own high-water mark (VmHWM belongs to the image after exec; the
    # rusage of a forked child would include the parent's memory at fork time).
    status = Path("/proc/self/status").read_text()
    result["rss_mb"] = (
        next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:")) / 1024
    )
    usage = resource.getrusage(resource.RUSAGE_SELF)
    result["cpu"] = usage.ru_utime + usage.ru_stime
    print(json.dumps(result))


def _wait_for_go() -> None:
    """With BENCH_GO set (the parallel case): say ready, then wait for the go file."""
    go = os.environ.get("BENCH_GO")
    if not go:
        return
    Path(f"{go}.ready.{os.getpid()}").touch()
    deadline = time.monotonic() + 600
    while not Path(go).exists():
        if time.monotonic() > deadline:
            raise SystemExit("no go signal within 10 minutes")
        time.sleep(0.005)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
