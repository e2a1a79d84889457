"""The accounts file (TICKETWIRE_ACCOUNTS): several accounts per helpdesk, secrets by reference.

Per vendor, per account name, the account's fields: its variables without `<VENDOR>_`, in lower
case (`api_key` for `INBOXOPS_API_KEY`). A value is written as the variable would be, or taken
from the environment as `{env = "NAME"}`; secrets only that way. Each account is then read by
the vendor's own reader, so units, limits and checks are the variables' own.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    RootModel,
    StrictFloat,
    StrictInt,
    StrictStr,
    StringConstraints,
    ValidationError,
)

from ticketwire.accountkey import ACCOUNT_PATTERN, DEFAULT
from ticketwire.envread import Env
from ticketwire.errors import ConfigError
from ticketwire.vendors.bundle import Vendor

AccountName = Annotated[str, StringConstraints(pattern=ACCOUNT_PATTERN)]


class EnvRef(BaseModel):
    """A value taken from an environment variable: `{env = "NAME"}`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    env: Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]


# Strict: `true` is not read as 1, nor a number as text, so the message says what was meant.
Scalar = StrictStr | StrictInt | StrictFloat | EnvRef
Value = Scalar | list[Scalar]


class AccountsFile(RootModel[dict[str, dict[AccountName, dict[str, Value]]]]):
    """The whole file: vendor → account name → field → value."""


def load(
    path: Path, environ: Mapping[str, str], vendors: tuple[Vendor[Any], ...]
) -> dict[str, dict[str, object]]:
    """Every account of the file, read and checked; raise `ConfigError` naming what is wrong."""
    env = Env(environ)
    out: dict[str, dict[str, object]] = {}
    for vendor, accounts in _by_vendor(path, vendors):
        set_ = [v for v in vendor.variables if env.text(v)]
        if DEFAULT in accounts and set_:
            raise ConfigError(
                f"{path}: {vendor.name}.{DEFAULT}",
                f"no `{DEFAULT}` account while {', '.join(set_)} "
                f"{'is' if len(set_) == 1 else 'are'} set: those variables form the "
                f"{DEFAULT} account; give this one another name or unset them",
            )
        out[vendor.name] = {
            name: _account(path, vendor, name, fields, environ) for name, fields in accounts.items()
        }
    return out


def names(path: Path, vendors: tuple[Vendor[Any], ...]) -> dict[str, frozenset[str]]:
    """The account names the file gives each vendor, its values left unread (no secrets needed)."""
    return {vendor.name: frozenset(accounts) for vendor, accounts in _by_vendor(path, vendors)}


def _by_vendor(
    path: Path, vendors: tuple[Vendor[Any], ...]
) -> list[tuple[Vendor[Any], dict[str, dict[str, Any]]]]:
    """The file's accounts under each vendor's bundle; raise `ConfigError` for an unknown one."""
    known = {v.name: v for v in vendors}
    out = []
    for vendor_name, accounts in _parse(path, _document(path)).root.items():
        vendor = known.get(vendor_name)
        if vendor is None:
            raise ConfigError(f"{path}: {vendor_name}", f"a helpdesk name: {', '.join(known)}")
        out.append((vendor, accounts))
    return out


def _document(path: Path) -> object:
    """The file's data, by extension; raise `ConfigError` for an unreadable or invalid file."""
    where = f"TICKETWIRE_ACCOUNTS ({path})"
    suffix = path.suffix.lower()
    if suffix not in (".toml", ".yaml", ".yml"):
        raise ConfigError(where, "a file named *.toml, *.yaml or *.yml")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            where, f"a readable UTF-8 file ({exc.__class__.__name__}: {exc})"
        ) from None
    try:
        if suffix == ".toml":
            return tomllib.loads(text)
        return yaml.safe_load(text) or {}
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(where, f"valid TOML ({exc})") from None
    except yaml.YAMLError as exc:
        raise ConfigError(where, f"valid YAML ({' '.join(str(exc).split())})") from None


def _parse(path: Path, data: object) -> AccountsFile:
    try:
        return AccountsFile.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(str(path), f"a valid accounts file: {_problems(exc)}") from None


def _problems(exc: ValidationError) -> str:
    """Pydantic's errors as one line: where in the file, and what is accepted there."""
    seen: dict[str, str] = {}
    for err in exc.errors():
        loc = [str(p) for p in err["loc"]]
        # A union reports one error per member, with the member's name in the location.
        kept = [p for p in loc if not _is_member(p)]
        # vendor.account.field: a list item's or an `env` table's error is its field's.
        where = ".".join(kept[:3]) or "the file"
        if "[key]" in loc:
            where = ".".join(loc[: loc.index("[key]")])
            seen.setdefault(where, "account names of 1 to 32 lowercase letters, digits or '-'")
            continue
        seen.setdefault(where, _expected(len(kept)))
    return "; ".join(f"{where}: {what}" for where, what in seen.items())


def _is_member(part: str) -> bool:
    return part in ("str", "int", "float", "EnvRef") or part.startswith(("list[", "function-"))


def _expected(depth: int) -> str:
    if depth == 0:
        return "a table of helpdesks, e.g. [inboxops.brand-a]"
    if depth == 1:
        return "a table of accounts"
    if depth == 2:
        return "a table of the account's fields"
    return 'a text, a number, {env = "NAME"}, or a list of those'


def _account(
    path: Path,
    vendor: Vendor[Any],
    account: str,
    fields: Mapping[str, Any],
    environ: Mapping[str, str],
) -> object:
    """One account's settings, read by the vendor's reader from the file's values."""
    by_field = {vendor.field_of(v): v for v in vendor.variables}
    where = f"{path}: {vendor.name}.{account}"
    values: dict[str, str] = {}
    refs: dict[str, str] = {}
    for name, value in fields.items():
        variable = by_field.get(name)
        if variable is None:
            known = ", ".join(by_field) or "none"
            raise ConfigError(f"{where}.{name}", f"a field of a {vendor.title} account: {known}")
        items = value if isinstance(value, list) else [value]
        parts: list[str] = []
        for item in items:
            if isinstance(item, EnvRef):
                got = Env(environ).text(item.env)
                if got is None:
                    raise ConfigError(
                        f"{where}.{name}",
                        f"the environment variable {item.env} the file refers to, set and "
                        "not blank",
                    )
                refs[variable] = item.env
                parts.append(got)
            elif variable in vendor.secret_variables:
                raise ConfigError(
                    f"{where}.{name}",
                    'a reference to the environment, {env = "NAME"}: secrets are never '
                    "written in the file",
                )
            else:
                parts.append(str(item))
        values[variable] = ",".join(parts)
    try:
        settings = vendor.read(Env(values))
        vendor.require(settings, "check")
    except ConfigError as exc:
        # The reader names its variable: say which field (and referenced variable) that is.
        field = vendor.field_of(exc.variable)
        via = f" (from {refs[exc.variable]})" if exc.variable in refs else ""
        # Never echo what was read: a referenced value may be a secret.
        raise ConfigError(f"{where}.{field}{via}", exc.expected) from None
    return settings
