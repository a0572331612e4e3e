"""The operations docs/operations.md describes, through the command line, on
the real stack: requeue, retry-failed --force against RETRY_MAX_ATTEMPTS, a Fernet key
rotation followed by the local stack."""

from __future__ import annotations

import base64
import json
import secrets
import socket
import urllib.parse
from pathlib import Path

import pytest
from azure.storage.blob import ContainerClient
from click.testing import CliRunner

from sales_etl.cli.commands import main
from sales_etl.config.settings import Settings
from sales_etl.datasets.reader import get_dataset
from sales_etl.flow import pipeline
from sales_etl_dev import devstack
from sales_etl_dev.generate import generate

from .clirun import assert_clean, environment, project, run
from .conftest import names, query


def cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def failed_blob(cc: ContainerClient, name: str, body: bytes, attempts: int, source: str) -> None:
    cc.get_blob_client(name).upload_blob(
        body,
        overwrite=True,
        metadata={
            "attempts": str(attempts),
            "kind": "data",
            "reason_code": "missing_columns",
            "reason": "line 1: missing required column(s) quantity",
            "source_path": source,
            "dataset_version": "0",
            "app_version": "0",
        },
    )


@pytest.mark.usefixtures("clean")
def test_requeue_by_name_and_all(settings: Settings, cc: ContainerClient, tmp_path: Path) -> None:
    good = generate(tmp_path / "a.csv", 30, seed=21).path.read_bytes()
    failed_blob(cc, "failed/sales/a.csv", good, 3, "incoming/sales/a.csv")
    failed_blob(cc, "deadletter/sales/b.csv", good.replace(b"TX-", b"TY-"), 5, "incoming/sales/b.csv")
    failed_blob(cc, "deadletter/sales/c.csv", b"x", 5, "incoming/sales/c.csv")
    # a new upload took a.csv's name meanwhile: requeue must not overwrite it
    cc.get_blob_client("incoming/sales/a.csv").upload_blob(b"newer upload")

    code, text = cli("requeue", "a.csv")
    assert code == 0, text
    moved = [n for n in names(cc, "incoming/") if n != "incoming/sales/a.csv"]
    assert len(moved) == 1 and moved[0].startswith("incoming/sales/a~"), names(cc)
    assert cc.get_blob_client("incoming/sales/a.csv").download_blob().readall() == b"newer upload"
    assert cc.get_blob_client(moved[0]).download_blob().readall() == good
    meta = cc.get_blob_client(moved[0]).get_blob_properties().metadata
    assert meta["attempts"] == "0" and meta["requeued_from"] == "failed/sales/a.csv"
    assert names(cc, "failed/") == []
    assert f"failed/sales/a.csv -> {moved[0]} (after 3 attempt(s))" in text

    code, text = cli("requeue", "--all", "--from", "deadletter")
    assert code == 0 and "requeued 2" in text, text
    assert names(cc, "deadletter/") == []
    assert {"incoming/sales/b.csv", "incoming/sales/c.csv"} <= set(names(cc, "incoming/"))

    ledger = query(
        settings,
        "SELECT blob_path, trigger, status, reason_code, attempt, error FROM etl_runs ORDER BY run_id",
    )
    assert [(r[0], r[1], r[2], r[3], r[4]) for r in ledger] == [
        (moved[0], "requeue", "skipped", "requeued", 3),
        ("incoming/sales/b.csv", "requeue", "skipped", "requeued", 5),
        ("incoming/sales/c.csv", "requeue", "skipped", "requeued", 5),
    ]
    assert "from failed/sales/a.csv" in ledger[0][5] and "missing required" in ledger[0][5]

    # the retry state is reset: the next attempt is attempt 1, and it loads
    code, text = cli("process", "incoming/sales/b.csv")
    assert code == 0 and "loaded" in text, text
    assert query(settings, "SELECT attempt, status, rows_loaded FROM etl_runs WHERE trigger = 'cli'") == [
        (1, "loaded", 30)
    ]
    code, text = cli("requeue", "b.csv")  # now in processed/: nothing to requeue
    assert code == 1 and "matches: b.csv" in text


@pytest.mark.usefixtures("clean")
def test_retry_failed_force_respects_max_attempts(
    stack: devstack.StackState, cc: ContainerClient, tmp_path: Path
) -> None:
    failed_blob(cc, "failed/sales/spent.csv", b"x", 5, "incoming/sales/spent.csv")  # the max
    failed_blob(cc, "failed/sales/again.csv", b"y", 2, "incoming/sales/again.csv")
    home = project(tmp_path / "checkout", stack)
    result = run("sales-etl retry-failed --force", environment(home), tmp_path)
    assert_clean(result, "retry-failed --force")
    assert result.code == 0, result.text
    assert "retried 1, dead-lettered 1" in result.out
    assert names(cc) == ["deadletter/sales/spent.csv", "incoming/sales/again.csv"]
    # locally nothing watches incoming/: the command says how to load what it put there
    assert "sales-etl process incoming/sales/again.csv" in result.out


@pytest.mark.usefixtures("clean")
def test_local_stack_follows_a_key_rotation(
    stack: devstack.StackState, settings: Settings, tmp_path: Path
) -> None:
    data = generate(tmp_path / "r.csv", 25, seed=31)
    pipeline.load_file(data.path, get_dataset("sales"), settings)
    tx = next(line.split(",")[0] for line in data.path.read_text().splitlines()[1:])
    home = project(tmp_path / "checkout", stack)
    work = tmp_path / "work"
    work.mkdir()
    old = stack.fernet_key
    new = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()
    session_state = (Path(stack.home) / "stack.json").read_text()
    try:
        # docs/operations.md, Rotating keys, steps 1 and 2: the new key first, the old after it
        step2 = run(
            "sales-etl rotate-keys --batch 10", environment(home, {"FERNET_KEYS": f"{new},{old}"}), work
        )
        assert_clean(step2, "rotate-keys")
        assert step2.code == 0, step2.text
        assert "sales: 25 rows scanned, 25 rotated in 3 batch(es), 0 left" in step2.out
        assert "25 value(s) rotated, 0 left" in step2.out
        assert "the local stack now uses these keys" in step2.out
        # a fresh shell, nothing exported: the stack's commands decrypt with the new key
        show = run(f"sales-etl show {tx}", environment(home), work)
        assert show.code == 0 and f"transaction_id: {tx}" in show.out, show.text
        doctor = run("sales-etl doctor", environment(home), work)
        assert doctor.code == 0 and "all under the newest key" in doctor.out, doctor.text
        # docs/operations.md, Rotating keys, step 3: drop the old key
        step3 = run("sales-etl rotate-keys", environment(home, {"FERNET_KEYS": new}), work)
        assert step3.code == 0 and "0 left" in step3.out, step3.text
        stored = json.loads((home / ".devstack" / "stack.json").read_text())
        assert stored["fernet_key"] == new
        show = run(f"sales-etl show {tx}", environment(home), work)
        assert show.code == 0 and f"transaction_id: {tx}" in show.out, show.text
        # the old key alone no longer decrypts anything: one line, no traceback
        stale = run(f"sales-etl show {tx}", environment(home, {"FERNET_KEYS": old}), work)
        assert_clean(stale, "show")
        assert stale.code == 1 and "does not decrypt with any key" in stale.err
        # only the copy of the stack's state changed
        assert (Path(stack.home) / "stack.json").read_text() == session_state
    finally:
        query(settings, "TRUNCATE sales, etl_key_rotation")  # rows under a key the session lacks


@pytest.mark.usefixtures("clean")
def test_requeue_with_tampered_metadata_stays_in_incoming(settings: Settings, cc: ContainerClient) -> None:
    cc.get_blob_client("deadletter/sales/t.csv").upload_blob(
        b"z", metadata={"attempts": "many", "source_path": "incoming/../processed/sales/t.csv"}
    )
    cc.get_blob_client("failed/sales/u.csv").upload_blob(
        b"z", metadata={"attempts": "-4", "source_path": "/deadletter/sales/u.csv"}
    )
    code, text = cli("requeue", "--all")
    assert code == 0 and "requeued 2" in text, text
    # a source_path outside incoming/ is refused, not repaired: back to its own name's path
    assert names(cc) == ["incoming/sales/t.csv", "incoming/sales/u.csv"]
    assert query(settings, "SELECT blob_path, attempt FROM etl_runs ORDER BY blob_path") == [
        ("incoming/sales/t.csv", 0),
        ("incoming/sales/u.csv", 0),
    ]


@pytest.mark.usefixtures("clean")
def test_requeue_says_when_the_ledger_cannot_record(
    stack: devstack.StackState, cc: ContainerClient, tmp_path: Path
) -> None:
    failed_blob(cc, "failed/sales/v.csv", b"v", 1, "incoming/sales/v.csv")
    home = project(tmp_path / "checkout", stack)
    env = {**stack.env(), "POSTGRES_PORT": str(devstack.free_ports(1)[0])}  # database gone
    result = run("sales-etl requeue v.csv", environment(home, env), tmp_path)
    assert_clean(result, "requeue")
    assert result.code == 1 and "the ledger could not record it" in result.err, result.text
    assert names(cc) == ["incoming/sales/v.csv"]  # the move stands: storage is the truth


@pytest.mark.usefixtures("clean")
def test_local_stack_follows_a_blind_index_rotation(
    stack: devstack.StackState, settings: Settings, tmp_path: Path
) -> None:
    from sales_etl_dev.generate import generate_model

    files = generate_model(tmp_path / "model", sales_rows=10, customers=6, seed=4)
    pipeline.load_file(files["customers"], get_dataset("customers"), settings)
    home = project(tmp_path / "checkout", stack)
    new = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()
    try:
        rotated = run(
            "sales-etl rotate-keys --blind-index --dataset customers",
            environment(home, {"BLIND_INDEX_KEY_NEW": new}),
            tmp_path,
        )
        assert_clean(rotated, "rotate-keys --blind-index")
        assert rotated.code == 0, rotated.text
        assert "customers: 6 rows scanned, 6 rotated in 1 batch(es), 0 left" in rotated.out
        assert "BLIND_INDEX_KEY in" in rotated.out  # the stack keeps the new key
        # nothing exported: the look-up hashes with the new key and finds the row
        show = run("sales-etl show --dataset customers CUST-004", environment(home), tmp_path)
        assert show.code == 0 and "customer_id: CUST-004" in show.out, show.text
        doctor = run("sales-etl doctor", environment(home), tmp_path)
        assert "stored hashes match BLIND_INDEX_KEY" in doctor.out, doctor.text
        # with the old key exported, the row is not found (and the command says so)
        old = run(
            "sales-etl show --dataset customers CUST-004",
            environment(home, {"BLIND_INDEX_KEY": stack.blind_index_key}),
            tmp_path,
        )
        assert old.code == 1 and "no customers row with key 'CUST-004'" in old.err, old.text
    finally:
        query(settings, "TRUNCATE customers, etl_key_rotation")  # hashed under another key


@pytest.mark.usefixtures("clean")
def test_pasted_names_and_printed_commands_with_spaces(
    stack: devstack.StackState, settings: Settings, cc: ContainerClient, tmp_path: Path
) -> None:
    """The commands `upload`, `requeue` and `process` print for a file name with a space
    run as printed when pasted into a shell; `requeue` takes the forms `process` takes
    (the path `upload` prints, with the container in front, and the blob's URL)."""
    env = environment(project(tmp_path / "checkout", stack))
    work = tmp_path / "work"
    (work / "data").mkdir(parents=True)
    (work / "data" / "bad file.csv").write_text("transaction_id,customer_id\nTX-1,C-1\n")

    def sh(command: str) -> str:
        result = run(command, env, work)
        assert_clean(result, command)
        assert result.code in (0, 1), f"{command} -> {result.code}:\n{result.text}"
        return result.text

    def printed_command(text: str) -> str:
        line = next(line for line in text.splitlines() if "sales-etl process " in line)
        return line[line.index("sales-etl process ") :].rstrip("`").strip()

    hint = printed_command(sh("sales-etl upload 'data/bad file.csv' --dataset sales"))
    assert "Error: " in sh(hint) and names(cc, "failed/") == ["failed/sales/bad file.csv"]
    refused = sh("sales-etl process 'failed/sales/bad file.csv'")
    suggested = refused[refused.index("sales-etl requeue ") :].strip()
    for pasted in (
        "'sales/failed/sales/bad file.csv'",
        f"http://127.0.0.1:{stack.blob_port}/devstoreaccount1/sales/failed/sales/bad%20file.csv",
        suggested.removeprefix("sales-etl requeue "),
    ):
        text = sh(f"sales-etl requeue {pasted}")
        assert "requeued 1" in text, f"requeue {pasted}:\n{text}"
        assert names(cc, "incoming/") == ["incoming/sales/bad file.csv"]
        assert "Error: " in sh(printed_command(text)), text  # it ran, and failed again
        assert names(cc, "failed/") == ["failed/sales/bad file.csv"]
    assert query(settings, "SELECT count(*) FROM etl_runs WHERE trigger = 'requeue'") == [(3,)]


@pytest.mark.usefixtures("clean")
def test_runs_blob_filter_is_the_text_given(
    stack: devstack.StackState, settings: Settings, tmp_path: Path
) -> None:
    """`runs --blob` keeps the runs whose path contains the text as typed: '_' and '%' in
    file names are not wildcards, and the path `upload` printed (container in front) or
    the blob's URL finds the blob's runs."""
    env = environment(project(tmp_path / "checkout", stack))
    work = tmp_path / "work"
    (work / "data").mkdir(parents=True)
    body = generate(work / "data" / "x.csv", 10, seed=4).path.read_bytes()
    for name in ("my_file.csv", "myXfile.csv", "100%.csv"):
        (work / "data" / name).write_bytes(body)
        for command in (
            f"sales-etl upload 'data/{name}' --dataset sales",
            f"sales-etl process 'incoming/sales/{name}'",
        ):
            assert run(command, env, work).code == 0, command

    def shown(*args: str) -> list[str]:
        result = run("sales-etl runs --json " + " ".join(args), env, work)
        assert_clean(result, "runs")
        assert result.code == 0, result.text
        return [json.loads(line)["blob_path"] for line in result.out.splitlines()]

    assert shown("--blob my_file") == ["incoming/sales/my_file.csv"]
    assert shown("--blob %") == ["incoming/sales/100%.csv"]
    assert shown("--blob sales/incoming/sales/myXfile.csv") == ["incoming/sales/myXfile.csv"]
    url = f"http://127.0.0.1:{stack.blob_port}/devstoreaccount1/sales/incoming/sales/100%25.csv"
    assert shown(f"--blob '{url}'") == ["incoming/sales/100%.csv"]
    assert len(shown()) == 3


@pytest.mark.usefixtures("clean")
def test_storage_endpoint_that_accepts_but_never_answers(
    stack: devstack.StackState, settings: Settings, cc: ContainerClient, tmp_path: Path
) -> None:
    """A storage setting pointing at a port where something accepts connections but never
    answers (a wrong port, a firewall holding connections): one line saying so, instead of
    the storage client's four attempts of 60 s each."""
    env = environment(project(tmp_path / "checkout", stack))
    work = tmp_path / "work"
    generate(work / "data" / "t.csv", 10, seed=4)
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)  # accepts (in the kernel), never reads nor writes
        port = silent.getsockname()[1]
        conn = stack.storage_connection_string.replace(f":{stack.blob_port}/", f":{port}/")
        for command in ("upload data/t.csv --dataset sales", "process incoming/sales/t.csv"):
            result = run(f"sales-etl {command}", {**env, "SalesStorage": conn}, work, timeout=120)
            assert_clean(result, command)
            assert result.code == 1, result.text
            assert f"storage unreachable at http://127.0.0.1:{port}: something listens there" in result.err, (
                result.text
            )
    assert names(cc) == [] and query(settings, "SELECT count(*) FROM etl_runs") == [(0,)]


@pytest.mark.usefixtures("clean")
def test_process_again_says_the_blob_was_processed(
    stack: devstack.StackState, settings: Settings, tmp_path: Path
) -> None:
    """`process` of a blob already taken from incoming/ says so and names its last run,
    not "not found (was it uploaded?)"; no ledger row is written for the refusal."""
    env = environment(project(tmp_path / "checkout", stack))
    work = tmp_path / "work"
    generate(work / "data" / "t.csv", 10, seed=4)
    assert run("sales-etl upload data/t.csv --dataset sales", env, work).code == 0
    assert run("sales-etl process incoming/sales/t.csv", env, work).code == 0
    again = run("sales-etl process sales/incoming/sales/t.csv", env, work)
    assert_clean(again, "process")
    assert again.code == 1, again.text
    assert again.err.strip().splitlines() == [
        "Error: sales/incoming/sales/t.csv: not in incoming/ any more (its last run, 1, is "
        "loaded; all of them: sales-etl runs --blob incoming/sales/t.csv)"
    ], again.text
    assert query(settings, "SELECT count(*) FROM etl_runs") == [(1,)]


@pytest.mark.usefixtures("clean")
def test_runs_escapes_control_characters_of_blob_names(
    stack: devstack.StackState, cc: ContainerClient, tmp_path: Path
) -> None:
    """A blob named by another uploader with an escape sequence and a newline in it: the
    pipeline refuses it (unsafe_name), and neither `process` nor `runs` writes those
    characters to the operator's terminal (escaped as \\x1b, one line per run)."""
    env = environment(project(tmp_path / "checkout", stack))
    work = tmp_path / "work"
    work.mkdir()
    name = "incoming/sales/a\x1b[2Jb\nc.csv"  # clear the screen; a second line
    blob = cc.get_blob_client(name)
    blob.upload_blob(b"transaction_id\nTX-1\n")
    url = f"http://127.0.0.1:{stack.blob_port}/devstoreaccount1/sales/" + urllib.parse.quote(name)
    try:
        for command, code in ((f"sales-etl process '{url}'", 1), ("sales-etl runs", 0)):
            for tty in (False, True):
                result = run(command, env, work, tty=tty)
                assert_clean(result, command)
                assert result.code == code, result.text
                assert "\x1b" not in result.text, repr(result.text)
                assert "a\\x1b[2Jb\\x0ac.csv" in result.text, result.text
            if command == "sales-etl runs":  # a heading, and one line per run (2)
                assert len(result.out.strip().splitlines()) == 3, result.out
    finally:
        blob.delete_blob()  # Azurite cannot list a container holding it (no XML for ESC)
