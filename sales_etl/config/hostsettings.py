"""What the Functions host accepts in the settings our bindings use, as pure functions over
a mapping of app settings (``settings.py`` passes the environment; nothing here reads it).

- ``%NAME%`` expressions: the host replaces each with the app setting NAME (looked up in
  any letter case, as its configuration does), anywhere in a binding field; a NAME that is
  not set is an error at indexing.
- Timer schedules: an NCRONTAB expression of 6 fields (with seconds) or 5 (without), or a
  TimeSpan (``hh:mm[:ss]``, ``d.hh:mm:ss``: dedicated/App Service plans only).
- Blob container names: 3-63 lower-case letters, digits and single hyphens.
- Connections: the host resolves a binding's ``connection`` "X" to the app setting (or
  identity section) ``AzureWebJobsX`` first, then ``X`` / ``X__*``; a blob trigger's identity
  connection needs ``X__blobServiceUri`` and ``X__queueServiceUri`` (the trigger keeps its
  receipts in queues). The worker's blob extension, which builds the injected client,
  reads only ``X``, ``X__serviceUri`` or ``X__blobServiceUri``: the one name both read is
  ``X`` itself (or ``X__blobServiceUri`` with ``X__queueServiceUri``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

_EXPR = re.compile(r"%([^%\s]+)%")
CONTAINER_RE = re.compile(r"^[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){2,62}$")
_TIMESPAN = re.compile(r"^(?:(\d+)\.)?(\d{1,2}):(\d{1,2})(?::(\d{1,2})(?:\.\d{1,7})?)?$")
_MONTHS = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]
_DAYS = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"]
# (name, lowest, highest, names) per field of a 6-field expression
_FIELDS = (
    ("second", 0, 59, None),
    ("minute", 0, 59, None),
    ("hour", 0, 23, None),
    ("day", 1, 31, None),
    ("month", 1, 12, _MONTHS),
    ("day-of-week", 0, 6, _DAYS),
)


# What a secret looks like when it is pasted into the wrong setting: a connection string
# (key=value;...), a URL with a query string or user:password@, a long run of base64 or hex
# (an account key, a Fernet key, a token).
_SECRET_SHAPES = re.compile(
    r"(?i)(?:[a-z]+=[^;]*;|;\s*[a-z]+=|\bsig=|accountkey|sharedaccess|password|"
    r"://[^/\s]*@|\?.*=)"
)
_KEY_RUN = re.compile(r"[A-Za-z0-9+/_=-]{24,}")
_HEX_RUN = re.compile(r"(?<![A-Za-z0-9])[0-9a-fA-F]{32,}(?![A-Za-z0-9])")


def secret_shaped(value: str) -> bool:
    if _SECRET_SHAPES.search(value):
        return True
    # a key or token: a long run mixing upper case, lower case and digits (a path is not),
    # or a long run of hex digits with letters and digits (a hex key or token)
    return any(
        re.search(r"[A-Z]", run) and re.search(r"[a-z]", run) and re.search(r"\d", run)
        for run in _KEY_RUN.findall(value)
    ) or any(re.search(r"[a-fA-F]", run) and re.search(r"\d", run) for run in _HEX_RUN.findall(value))


def show(value: str) -> str:
    """A setting's value for an error message: quoted when harmless; never when it looks
    like a secret (a connection string pasted into the wrong setting, a key, a SAS)."""
    if secret_shaped(value):
        return (
            f"the value (not shown: it looks like a key, SAS or connection string; {len(value)} characters)"
        )
    return repr(value if len(value) <= 100 else value[:97] + "...")


class SettingError(ValueError):
    """A value the host would refuse; the message names what is wrong (not the setting)."""


def resolve(value: str, env: Mapping[str, str]) -> str:
    """Replace every ``%NAME%`` with app setting NAME, as the host does in binding fields."""

    def one(match: re.Match[str]) -> str:
        name = match.group(1)
        found = env.get(name)
        if found is None:  # the host reads app settings through IConfiguration: any case
            found = next((v for k, v in env.items() if k.lower() == name.lower()), None)
        if found is None or not found.strip():
            raise SettingError(f"{match.group(0)} names app setting {name}, which is not set")
        if found.strip().lower().startswith(_REFERENCES):
            raise SettingError(
                f"{match.group(0)} names app setting {name}, which is an unresolved "
                "reference: the platform could not fetch its value (docs/"
                "operations.md, Key Vault references)"
            )
        return found.strip()

    return _EXPR.sub(one, value)


def check_container(name: str) -> None:
    if not CONTAINER_RE.match(name):
        raise SettingError(
            f"{show(name)} is not a valid container name (3-63 lower-case letters, digits and single hyphens)"
        )


def schedule_kind(schedule: str) -> str:
    """'ncrontab' or 'timespan' when the host accepts the schedule, else SettingError."""
    text = schedule.strip()
    if _TIMESPAN.match(text):
        days, hours, minutes, seconds = _TIMESPAN.match(text).groups()  # type: ignore[union-attr]
        if int(hours) > 23 or int(minutes) > 59 or int(seconds or 0) > 59:
            raise SettingError(f"{show(schedule)}: a TimeSpan needs hours < 24, minutes and seconds < 60")
        if int(days or 0) == int(hours) == int(minutes) == int(seconds or 0) == 0:
            raise SettingError(f"{show(schedule)}: a TimeSpan schedule must be longer than zero")
        return "timespan"
    fields = text.split()
    if len(fields) not in (5, 6):
        raise SettingError(
            f"{show(schedule)} is neither an NCRONTAB expression of 5 or 6 fields "
            "([second] minute hour day month day-of-week) nor a TimeSpan "
            "(hh:mm:ss)"
        )
    specs = _FIELDS if len(fields) == 6 else _FIELDS[1:]
    for raw, (name, low, high, names) in zip(fields, specs, strict=True):
        for part in raw.split(","):
            _check_part(schedule, part, name, low, high, names)
    return "ncrontab"


def _check_part(schedule: str, part: str, name: str, low: int, high: int, names: list[str] | None) -> None:
    def bad(why: str) -> SettingError:
        return SettingError(f"{show(schedule)}: the {name} field {show(part)} {why}")

    base, _, step = part.partition("/")
    if step and (not step.isdigit() or int(step) == 0):
        raise bad("has a step that is not a positive number")
    if base == "*":
        return
    bounds = base.split("-")
    if len(bounds) > 2 or not all(bounds):
        raise bad("is not a number, a range a-b, a list or *")
    for bound in bounds:
        if bound.isdigit():
            value = int(bound)
        elif names is not None and bound.upper() in names:
            value = names.index(bound.upper()) + low
        else:
            raise bad("is not a number, a range a-b, a list or *")
        if not low <= value <= high:
            raise bad(f"is outside {low}-{high}")


def trigger_connection(name: str, env: Mapping[str, str]) -> tuple[str, str | None]:
    """How the host and the worker's blob extension resolve connection ``name``:
    ("string", value) / ("identity", blob service URI), or SettingError saying why the
    trigger would not start or the extension could not build its client."""
    # The host's storage extension looks up AzureWebJobsX first and X only when that section
    # does not exist (GetWebJobsConnectionStringSection); the blob extension and the
    # package read X alone. Both present: the trigger could watch another account.
    prefixed = sorted(
        k
        for k in env
        if (k == f"AzureWebJobs{name}" or k.startswith(f"AzureWebJobs{name}__")) and env[k].strip()
    )
    ours = any(env[k].strip() for k in env if k == name or k.startswith(f"{name}__"))
    if (
        prefixed
        and ours
        and not (prefixed == [f"AzureWebJobs{name}"] and _get(env, f"AzureWebJobs{name}") == _get(env, name))
    ):
        raise SettingError(
            f"{', '.join(prefixed)} is also set: the host's trigger reads "
            f"AzureWebJobs{name} before {name}, while the worker's blob "
            f"extension and the package read {name}; remove "
            f"{', '.join(prefixed)}"
        )
    direct = _get(env, name)
    if direct is not None:
        # the blob extension hands the value, unstripped, to the Storage SDK, which refuses
        # any ';'-separated part that is not key=value (a trailing newline, an empty ';;')
        if any("=" not in part for part in env[name].rstrip(";").split(";")):
            raise SettingError(
                f"{name}: the worker's blob extension cannot parse it as a "
                "connection string: every ';'-separated part must be key=value "
                "(no empty part, no trailing newline or spaces after the last ';')"
            )
        return "string", direct
    blob_uri = _get(env, f"{name}__blobServiceUri")
    queue_uri = _get(env, f"{name}__queueServiceUri")
    service_uri = _get(env, f"{name}__serviceUri")
    if blob_uri is not None or queue_uri is not None or service_uri is not None:
        # the blob extension takes X whenever it exists, even empty, then X__serviceUri,
        # then X__blobServiceUri; the host's trigger reads X__blobServiceUri
        if name in env:
            raise SettingError(
                f"{name} is set but empty: the worker's blob extension would "
                f"use the empty value as its connection string; remove {name} "
                "for an identity-based connection"
            )
        if (
            service_uri is not None
            and blob_uri is not None
            and service_uri.rstrip("/") != blob_uri.rstrip("/")
        ):
            raise SettingError(
                f"{name}__serviceUri and {name}__blobServiceUri differ: the "
                f"host's trigger watches {name}__blobServiceUri, the worker's "
                f"blob extension builds its client from {name}__serviceUri; "
                f"remove {name}__serviceUri"
            )
        client_id = _get(env, f"{name}__clientId")
        credential = _get(env, f"{name}__credential")
        if client_id is not None and (credential or "").lower() != "managedidentity":
            raise SettingError(
                f"{name}__clientId is used only with {name}__credential="
                "managedidentity: without it the worker's blob extension (and "
                "the host) use the system-assigned identity, not that one"
            )
        missing = [
            f"{name}__{s}"
            for s, v in (("blobServiceUri", blob_uri), ("queueServiceUri", queue_uri))
            if v is None
        ]
        if missing:
            raise SettingError(
                f"an identity-based blob trigger needs {name}__blobServiceUri and "
                f"{name}__queueServiceUri (the trigger keeps receipts in queues); "
                f"missing: {', '.join(missing)}"
            )
        return "identity", blob_uri
    if _get(env, f"AzureWebJobs{name}") is not None:
        raise SettingError(
            f"only AzureWebJobs{name} is set: the host would start the trigger "
            f"but the worker's blob extension reads {name} itself; rename it "
            f"to {name}"
        )
    raise SettingError(
        f"not set: give {name} a storage connection string, or "
        f"{name}__blobServiceUri and {name}__queueServiceUri for an "
        "identity-based connection"
    )


def host_storage(env: Mapping[str, str]) -> str:
    """AzureWebJobsStorage, which the host itself needs (locks, timer schedule status, blob
    receipts): a connection string or an identity section. SettingError when absent."""
    if _get(env, "AzureWebJobsStorage") is not None:
        return "string"
    if _get(env, "AzureWebJobsStorage__accountName") is not None or (
        _get(env, "AzureWebJobsStorage__blobServiceUri") is not None
        and _get(env, "AzureWebJobsStorage__queueServiceUri") is not None
    ):
        return "identity"
    raise SettingError(
        "not set: the host needs it for its own state (timer schedule "
        "status, blob receipts, locks); a connection string, or "
        "AzureWebJobsStorage__accountName for an identity-based connection"
    )


_REFERENCES = ("@microsoft.keyvault(", "@microsoft.appconfiguration(")


def _get(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name)
    if value is not None and value.strip().lower().startswith(_REFERENCES):
        # what the host would receive is the reference text, not a connection
        raise SettingError(
            f"{name} is an unresolved reference: the platform could not fetch "
            "its value (docs/operations.md, Key Vault references)"
        )
    return value.strip() if value is not None and value.strip() else None
