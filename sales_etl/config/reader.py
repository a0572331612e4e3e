"""Reading raw app-setting values for ``settings.py``, one problem list for them all.

Contract:

- ``AppSettingsReader`` reads from the mapping it is given (``settings.py`` hands it the
  environment or a test's dict; nothing here reads ``os.environ``). A value is stripped; an
  empty or blank one counts as unset. Every problem found (a malformed number, a value out
  of its range, an unresolved platform reference) is appended to ``problems`` instead of
  raised, so that ``settings.load_settings`` can name every bad setting in one error.
- A value that still is an ``@Microsoft.KeyVault(...)`` or ``@Microsoft.AppConfiguration(...)``
  reference reached the app only because App Service could not resolve it: it is reported
  as exactly that (never as, e.g., "not a Fernet key"), its text never echoed, and read as
  unset.
- ``Secret`` wraps every secret value: no repr, str or f-string shows it.
"""

from __future__ import annotations

from collections.abc import Mapping

from sales_etl.config.hostsettings import show

# An app setting whose value still is a reference: App Service could not resolve it.
_UNRESOLVED_REFERENCES = {
    "@microsoft.keyvault(": "Key Vault",
    "@microsoft.appconfiguration(": "App Configuration",
}


class Secret:
    """A string that never shows itself in repr, str or f-strings."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


class AppSettingsReader:
    """Reads app settings from one mapping and collects every problem, so that one error
    lists them all."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.problems: list[str] = []

    def get(self, *names: str) -> str | None:
        """The first of ``names`` that is set (stripped), or None; an unresolved reference
        is a problem and reads as None."""
        for name in names:
            value = self.env.get(name)
            if value is not None and value.strip() != "":
                if unresolved_reference(name, value.strip(), self.problems):
                    return None
                return value.strip()
        return None

    def integer(self, name: str, default: int, *, minimum: int, maximum: int | None = None) -> int:
        """A whole number within [minimum, maximum]; ``default`` when unset or refused."""
        raw = self.get(name)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            self.problems.append(f"{name}: {show(raw)} is not a whole number")
            return default
        if value < minimum or (maximum is not None and value > maximum):
            upper = f" and {maximum}" if maximum is not None else ""
            self.problems.append(f"{name}: {value} must be between {minimum}{upper}")
            return default
        return value

    def flag(self, name: str, true: frozenset[str] = frozenset({"1", "true"})) -> bool:
        """A boolean setting: True when its lower-cased value is one of ``true``."""
        return (self.get(name) or "").lower() in true


def unresolved_reference(name: str, value: str, problems: list[str]) -> bool:
    """An ``@Microsoft.KeyVault(...)`` value reaches the app only when App Service could not
    resolve it; say exactly that (and not, e.g., "not a Fernet key"). The value is not echoed."""
    lowered = value.lower()
    for prefix, service in _UNRESOLVED_REFERENCES.items():
        if lowered.startswith(prefix):
            hint = (
                (
                    " Check that keyVaultReferenceIdentity names the app's user-assigned identity, "
                    "that this identity has the 'Key Vault Secrets User' role on the vault, and "
                    "that the vault is reachable from the app (docs/operations.md, Key Vault "
                    "references)"
                )
                if service == "Key Vault"
                else ""
            )
            problems.append(
                f"{name}: is an unresolved {service} reference: the platform could not "
                f"fetch the value, so the app received the reference text itself.{hint}"
            )
            return True
    return False
