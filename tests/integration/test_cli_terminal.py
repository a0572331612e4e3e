"""Every command as an operator runs it: a separate process, in a terminal (a
pseudo-terminal) and in a pipe, after ``make demo`` (no settings exported: the local stack's
are used); then a table of the mistakes people make. Each asserts the exit status, what
was printed, the outcome in the table, ledger and container, and that no traceback appears
on stdout or stderr."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from azure.storage.blob import ContainerClient

from sales_etl.config.settings import Settings
from sales_etl.datasets.reader import get_dataset
from sales_etl.flow import pipeline
from sales_etl_dev import devstack
from sales_etl_dev.generate import generate

from .clirun import Result, assert_clean, environment, project, run
from .conftest import names, query

MODES = [pytest.param(False, id="pipe"), pytest.param(True, id="terminal")]


def first_valid_tx(path: Path) -> str:
    for line in path.read_text().splitlines()[1:]:
        tx = line.split(",")[0]
        if tx.startswith("TX-") and line.count(",") == 9:
            return tx
    raise AssertionError("no valid row")


@pytest.mark.parametrize("tty", MODES)
@pytest.mark.usefixtures("clean")
def test_every_command_in_a_terminal_and_a_pipe(
    stack: devstack.StackState, settings: Settings, cc: ContainerClient, tmp_path: Path, tty: bool
) -> None:
    home = project(tmp_path / "checkout", stack)
    work = tmp_path / "work"
    work.mkdir()
    env = environment(home)

    def ok(command: str, *expected: str) -> Result:
        result = run(f"sales-etl {command}", env, work, tty=tty)
        assert_clean(result, command)
        assert result.code == 0, f"sales-etl {command} -> {result.code}:\n{result.text}"
        for text in expected:
            assert text in result.text, f"sales-etl {command}: {text!r} not in:\n{result.text}"
        return result

    ok("--help", "Example:", "Exit status")
    ok("--version", "sales-etl")
    ok("generate --rows 300 --bad-rows 3 --seed 11 --out data/t.csv", "wrote 300 rows (3 bad)")
    ok("generate --model --rows 20 --seed 3 --out data/model", "customers: data/model/customers.csv")
    ok(
        "upload data/t.csv --dataset sales",
        "to sales/incoming/sales/t.csv",
        "sales-etl process incoming/sales/t.csv",
    )
    ok("process sales/incoming/sales/t.csv", "loaded", "rejects: rejected/sales/t.csv.")
    assert query(settings, "SELECT count(*) FROM sales") == [(297,)]
    ok("upload data/t.csv --name u.csv", "sales/incoming/u.csv")
    url = f"http://127.0.0.1:{stack.blob_port}/devstoreaccount1/sales/incoming/u.csv"
    ok(f"process {url}", "[same_content] duplicate of run 1")
    loaded = ok("load data/t.csv", "[same_content] duplicate of run 1")
    if tty:
        assert " rows" in loaded.out  # the progress bar was drawn (and did not crash)
    ok("upload data/model/customers.csv --dataset customers")
    ok("process incoming/customers/customers.csv", "loaded")
    ok("show --dataset customers CUST-001", "customer_id: CUST-001")
    ok("runs", "[same_content] duplicate of run 1", "incoming/customers/customers.csv")
    lines = ok("runs --json --limit 2").out.strip().splitlines()
    assert [json.loads(line)["dataset"] for line in lines] == ["customers", "sales"]
    tx = first_valid_tx(work / "data" / "t.csv")
    ok(f"show {tx}", f"transaction_id: {tx}")
    ok("datasets", "sales: table sales")
    ok("datasets check", "sales: ok")
    ok("migrate", "database is up to date (0 applied now)")
    ok("init-storage", "container sales exists")
    ok("retry-failed --force", "retried 0")
    ok("requeue --all", "requeued 0")
    ok("rotate-keys --batch 50", "0 value(s) rotated, 0 left")
    ok("doctor", "all checks passed")
    ok("keys generate", "export FERNET_KEYS=")
    ok("dev status", f":{stack.blob_port}")
    ok("dev env", f"export POSTGRES_PORT='{stack.pg_port}'")
    ok("dev up", f":{stack.blob_port}")
    ok("dev compose-env", "wrote")
    assert (home / ".env").exists()
    demo = ok("demo --rows 200 --bad-rows 2", "file(s) in")
    assert "inspect: " in demo.text and "sales-etl runs" in demo.text
    assert names(cc, "incoming/") == []
    # processed/ holds every blob loaded above (and the demo's): nothing lost, nothing left
    assert len(names(cc, "processed/")) == 5 and names(cc, "failed/") == []


# ----------------------------------------------------------------------------- mistakes


@dataclass
class Mistake:
    command: str
    code: int
    says: tuple[str, ...]
    where: str = "stack"  # stack | none | stopped | corrupt | stale-exported | restarted | loader | wrong-key
    check: Callable[[Settings, ContainerClient], None] | None = None
    loaded: bool = False  # a file loaded first (for the key cases)
    extra: dict[str, str] = field(default_factory=dict)


def _no_ledger_row(settings: Settings, _cc: ContainerClient) -> None:
    assert query(settings, "SELECT count(*) FROM etl_runs") == [(0,)]


def _nothing_uploaded(settings: Settings, cc: ContainerClient) -> None:
    assert names(cc) == []
    _no_ledger_row(settings, cc)


def _rows_unchanged(settings: Settings, _cc: ContainerClient) -> None:
    assert query(settings, "SELECT count(*) FROM sales") == [(40,)]


MISTAKES = {
    "upload-unknown-dataset": Mistake(
        "upload data/t.csv --dataset nosuch", 1, ("unknown dataset 'nosuch'",), check=_nothing_uploaded
    ),
    # a name `process` could not be given back (it strips what is pasted): refused
    "upload-name-trailing-space": Mistake(
        "upload data/t.csv --name 't.csv '", 1, ("spaces at the start or end",), check=_nothing_uploaded
    ),
    "upload-name-only-spaces": Mistake(
        "upload data/t.csv --name ' '", 1, ("spaces at the start or end",), check=_nothing_uploaded
    ),
    "upload-name-control-chars": Mistake(
        "upload data/t.csv --name $'a\\x1b[31mb.csv'",
        1,
        ("a%1B%5B31mb.csv: refused: the name holds control characters",),
        check=_nothing_uploaded,
    ),
    "load-unknown-dataset": Mistake(
        "load data/t.csv --dataset nosuch", 1, ("unknown dataset 'nosuch'",), check=_no_ledger_row
    ),
    "load-missing-file": Mistake("load nosuch.csv", 2, ("'nosuch.csv' does not exist",)),
    "upload-missing-file": Mistake(
        "upload nosuch.csv", 2, ("'nosuch.csv' does not exist",), check=_nothing_uploaded
    ),
    "process-blob-not-found": Mistake(
        "process incoming/sales/does-not-exist.csv",
        1,
        ("does-not-exist.csv: not found",),
        check=_no_ledger_row,
    ),
    "process-bare-file-name": Mistake(
        "process t.csv", 1, ("expected incoming/[<dataset>/]",), check=_no_ledger_row
    ),
    "process-failed-blob": Mistake(
        "process failed/sales/t.csv", 1, ("sales-etl requeue failed/sales/t.csv",)
    ),
    "process-other-container-url": Mistake(
        "process http://127.0.0.1:1/devstoreaccount1/other/incoming/t.csv", 1, ("not in container 'sales'",)
    ),
    "show-wrong-key": Mistake(
        "show TX-SEE-TEST", 1, ("does not decrypt with any key",), where="wrong-key", loaded=True
    ),
    "rotate-wrong-key": Mistake(
        "rotate-keys",
        1,
        ("does not decrypt with any key",),
        where="wrong-key",
        loaded=True,
        check=_rows_unchanged,
    ),
    "doctor-wrong-key": Mistake(
        "doctor",
        1,
        ("decrypt with none of them", "FERNET_KEYS lacks the key"),
        where="wrong-key",
        loaded=True,
    ),
    "no-stack-runs": Mistake("runs", 1, ("POSTGRES_HOST: not set", "sales-etl dev up"), where="none"),
    "no-stack-upload": Mistake(
        "upload data/t.csv", 1, ("SalesStorage: not set", "sales-etl dev up"), where="none"
    ),
    "no-stack-show": Mistake("show TX-1", 1, ("not set", "sales-etl dev up"), where="none"),
    "no-stack-doctor": Mistake(
        "doctor", 1, ("1 check(s) failed: settings", "sales-etl dev up"), where="none"
    ),
    "no-stack-dev-env": Mistake("dev env", 1, ("not running", "sales-etl dev up"), where="none"),
    "no-stack-dev-status": Mistake("dev status", 1, ("not running",), where="none"),
    "no-stack-dev-down": Mistake("dev down", 0, ("not running",), where="none"),
    "stopped-stack-runs": Mistake("runs", 1, ("is not running", "sales-etl dev up"), where="stopped"),
    "corrupt-stack-state-runs": Mistake(
        "runs", 1, ("stack.json cannot be read", "sales-etl dev up"), where="corrupt"
    ),
    "stale-settings-runs": Mistake(
        "runs", 1, ("database unreachable", "sales-etl dev up"), where="stale-exported"
    ),
    "stale-settings-upload": Mistake(
        "upload data/t.csv", 1, ("storage unreachable", "sales-etl dev up"), where="stale-exported"
    ),
    "stale-settings-process": Mistake(
        "process incoming/sales/t.csv", 1, ("storage unreachable",), where="stale-exported"
    ),
    "stale-settings-retry": Mistake(
        "retry-failed --force", 1, ("storage unreachable",), where="stale-exported"
    ),
    # the stack was restarted (new ports) after its settings were exported
    "restarted-stack-runs": Mistake(
        "runs",
        1,
        ("database unreachable", "on other ports now", 'eval "$(sales-etl dev env)"'),
        where="restarted",
    ),
    "restarted-stack-process": Mistake(
        "process incoming/sales/t.csv",
        1,
        ("storage unreachable", "on other ports now", 'eval "$(sales-etl dev env)"'),
        where="restarted",
        check=_no_ledger_row,
    ),
    "loader-instead-of-admin": Mistake(
        "migrate", 1, ("permission denied", "POSTGRES_ADMIN_USER"), where="loader"
    ),
    "requeue-unknown-name": Mistake(
        "requeue nosuch.csv", 1, ("no blob in failed/ or deadletter/ matches: nosuch.csv",)
    ),
    "requeue-without-names": Mistake("requeue", 2, ("name the blobs to requeue, or give --all",)),
    "unknown-option": Mistake("runs --nosuch", 2, ("No such option",)),
}


def _env_for(kind: str, stack: devstack.StackState, tmp_path: Path) -> dict[str, str]:
    if kind == "none":
        return environment(project(tmp_path / "checkout", None))
    if kind == "stopped":
        return environment(project(tmp_path / "checkout", stack, stopped=True))
    if kind == "corrupt":  # a stack.json cut short (a full disk, a crash while writing it)
        home = project(tmp_path / "checkout", stack, stopped=True)
        (home / ".devstack" / "stack.json").write_text('{"azurite_pid": 12')
        return environment(home)
    if kind == "stale-exported":
        home = project(tmp_path / "checkout", stack, stopped=True)
        stale = devstack.read_state(home / ".devstack")
        assert stale is not None
        return environment(home, stale.env())  # exported before the stack went away
    home = project(tmp_path / "checkout", stack)
    if kind == "restarted":  # exported from an earlier start: the same host, ports now free
        env = dict(stack.env())
        old_pg, old_blob, old_queue, old_table = devstack.free_ports(4)
        env["POSTGRES_PORT"] = str(old_pg)
        for name in ("SalesStorage", "AzureWebJobsStorage"):
            env[name] = (
                env[name]
                .replace(f":{stack.blob_port}/", f":{old_blob}/")
                .replace(f":{stack.queue_port}/", f":{old_queue}/")
                .replace(f":{stack.table_port}/", f":{old_table}/")
            )
        return environment(home, env)
    if kind == "loader":
        env = {k: v for k, v in stack.env().items() if not k.startswith("POSTGRES_ADMIN")}
        return environment(home, env)
    if kind == "wrong-key":
        other = "x" * 43 + "="  # a well-formed Fernet key that encrypted nothing here
        return environment(home, {"FERNET_KEYS": other})
    return environment(home)


# Each mistake once (the suite stays fast), every other one in a terminal: both kinds of
# output are covered for the mistakes as a whole; every command ran in both above.
CASES = [
    pytest.param(case, i % 2 == 1, id=f"{case}-{'terminal' if i % 2 else 'pipe'}")
    for i, case in enumerate(MISTAKES)
]


@pytest.mark.parametrize(("case", "tty"), CASES)
@pytest.mark.usefixtures("clean")
def test_common_mistakes(
    case: str, tty: bool, stack: devstack.StackState, settings: Settings, cc: ContainerClient, tmp_path: Path
) -> None:
    mistake = MISTAKES[case]
    env = _env_for(mistake.where, stack, tmp_path)
    work = tmp_path / "work"
    data = generate(work / "data" / "t.csv", 40, seed=5)
    command = mistake.command
    if mistake.loaded:
        pipeline.load_file(data.path, get_dataset("sales"), settings)
        command = command.replace("TX-SEE-TEST", first_valid_tx(data.path))
        assert query(settings, "SELECT count(*) FROM etl_runs") == [(1,)]
    result = run(f"sales-etl {command}", env, work, tty=tty)
    assert_clean(result, command)
    assert result.code == mistake.code, f"{command} -> {result.code}:\n{result.text}"
    for text in mistake.says:
        assert text in result.text, f"{command}: {text!r} not in:\n{result.text}"
    if mistake.code == 1:  # one line saying why, on stderr
        error_lines = [line for line in result.text.splitlines() if line.startswith("Error: ")]
        assert len(error_lines) == 1, result.text
        if not tty:
            assert error_lines[0] in result.err
    if mistake.check is not None:
        mistake.check(settings, cc)
