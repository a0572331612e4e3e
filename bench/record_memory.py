"""Peak RSS (ru_maxrss) of loading one file with huge records through the real pipeline
(`sales-etl load`), one subprocess per case: the figures of docs/how-it-works.md, Limits.

Needs a stack: `sales-etl dev up`, `eval "$(sales-etl dev env)"`, then
`python -m bench.record_memory 15 9 2096128b` (value sizes: MiB, or bytes with a trailing b).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

from sales_etl.stages.records import MAX_RECORD_BYTES
from tools.sales_csv import HEADER, body, row

ROOT = Path(__file__).resolve().parents[1]
MIB = 1 << 20
CHILD = (
    "import resource, subprocess, sys\n"
    "r = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024)\n"
    "out = (r.stdout + r.stderr).strip().splitlines()\n"
    "print(next((o for o in out if 'failed' in o), out[-1] if out else ''))\n"
)


def stray(tx: str) -> str:  # a stray quote: the file goes to the exact path
    return row(tx).replace("PROD-001", 'PROD"001')


def cases(n: int) -> dict[str, bytes]:
    big = "c" * n
    multi = "ab\n" * (n // 3)
    return {
        "payment_method": body(row("A-1"), row("A-2", payment_method=big), row("A-3")),
        "customer_id": body(row("A-1"), row("A-2", customer_id=big), row("A-3")),
        "quoted_multiline": body(row("A-1"), row("A-2", payment_method=multi), row("A-3")),
        "fast_12": body(row("A-1"), *(row(f"A-{i}", payment_method=big) for i in range(2, 14)), row("A-99")),
        "exact_2": body(stray("A-1"), *(row(f"A-{i}", payment_method=big) for i in (2, 3)), row("A-9")),
        "exact_12": body(
            stray("A-1"), *(row(f"A-{i}", payment_method=big) for i in range(2, 14)), row("A-99")
        ),
        "exact_quoted": body(stray("A-1"), row("A-2", payment_method=multi), row("A-3")),
        "commas": body(row("A-1"), "H," * (n // 2), row("A-3")),
        "exact_commas": body(stray("A-1"), "H," * (n // 2), row("A-3")),
        "ignored_col": body(
            row("A-1") + ",x", row("A-2") + "," + big, row("A-3") + ",y", header=HEADER + ",extra"
        ),
    }


def main(args: list[str]) -> None:
    sizes = [int(a[:-1]) if a.endswith("b") else int(float(a) * MIB) for a in args] or [15 * MIB]
    print(f"MAX_RECORD_BYTES = {MAX_RECORD_BYTES} ({MAX_RECORD_BYTES / MIB:.2f} MiB)")
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            for name, data in cases(n).items():
                path = Path(tmp) / f"{name}.csv"
                path.write_bytes(data)
                out = subprocess.run(
                    [sys.executable, "-c", CHILD, str(ROOT / ".venv/bin/sales-etl"), "load", str(path)],
                    capture_output=True,
                    text=True,
                    cwd=tmp,
                    check=True,
                )
                rss, _, msg = out.stdout.partition("\n")
                print(
                    f"{n / MIB:7.3f} MiB  {name:17s} peak {rss.strip():>5s} MB  {msg.strip()[:110]}",
                    flush=True,
                )
                for f in Path(tmp).iterdir():
                    f.unlink()


if __name__ == "__main__":
    main(sys.argv[1:])
