"""Operator commands: ``bin/turnstile user ...`` (``server.py`` on the project's ``.venv``).

They work on the store the server uses, chosen the same way (``DATABASE_URL``,
else ``DATA_DIR``), while it runs: every change is one store transaction, and
the server sees it at its next read without a restart (roles reach a client's
access token on its next ``/refresh``)::

    bin/turnstile user add NAME [--roles Admin,Editor]   # password from stdin, or prompted
    bin/turnstile user list
    bin/turnstile user roles NAME Editor,Admin            # set roles (User is always kept)
    bin/turnstile user passwd NAME                        # new password; ends all sessions
    bin/turnstile user revoke NAME                        # end all sessions
    bin/turnstile user delete NAME                        # delete the user and their sessions
    bin/turnstile user mfa-reset NAME                     # remove every second factor (TOTP, codes, passkeys)
    bin/turnstile keys rotate [--now]                     # stage a new signing key (asymmetric algorithms)
    bin/turnstile keys list                               # the signing keys and their states
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import re
import sys
import time
from typing import Any, NoReturn, TextIO

from .accounts import Accounts, KeyExists, check_password_length, check_username
from .backends import open_store
from .config import Settings, load_settings
from .errors import APIError
from .roles import parse_roles, role_names
from .keyring import Entry, Keyring, KeyringError
from .security import PasswordHasher
from .store import Store, StoreError


class CLIError(Exception):
    """A problem the operator can fix; printed without a traceback."""


class Parser(argparse.ArgumentParser):
    """argparse, but a mistyped or missing command is one line that lists the commands there are."""

    commands: Any = None  # the sub-commands' action, from `add_commands`

    def add_commands(self, dest: str) -> Any:
        """``add_subparsers`` for required commands, remembered so that `error` can name them."""
        self.commands = self.add_subparsers(dest=dest, required=True)
        return self.commands

    def command_names(self) -> str:
        return ", ".join(self.commands.choices) if self.commands is not None else ""

    def error(self, message: str) -> NoReturn:
        if self.commands is not None:
            where = self.prog.removeprefix("server.py").strip()
            unknown = re.search(r"invalid choice: '([^']*)'", message)
            if unknown is not None:
                also = "" if where else " (without a command, server.py runs the server)"
                named = f"{where} {unknown.group(1)}".strip()
                self.exit(2, f"turnstile: unknown command {named!r}; the {where + ' ' if where else ''}commands are {self.command_names()}{also}\n")
            if message == f"the following arguments are required: {self.commands.dest}":
                self.exit(2, f"turnstile: {self.prog} needs a command: {self.command_names()}\n")
        super().error(message)


SECRET_NAMES = ("ACCESS_TOKEN_SECRET", "REFRESH_TOKEN_SECRET")


class _Asked(dict):  # type: ignore[type-arg]
    """An environment that notes every variable read from it, in order."""

    def __init__(self, values: dict[str, str]) -> None:
        super().__init__(values)
        self.asked: list[str] = []

    def _note(self, name: str) -> None:
        if name not in self.asked:
            self.asked.append(name)

    def get(self, name: str, default: object = None) -> object:
        self._note(name)
        return super().get(name, default)

    def __getitem__(self, name: str) -> str:
        self._note(name)
        return super().__getitem__(name)  # type: ignore[no-any-return]


def environment_defaults() -> list[tuple[str, str]]:
    """Every variable `Settings.from_env` reads, in its order, with the default it applies ("" for none).

    Taken from a run of `Settings.from_env` itself, so the list cannot drift from the settings.
    """
    env = _Asked({name: name.lower() * 2 for name in SECRET_NAMES})  # any two valid secrets
    defaults: dict[str, str] = {}
    Settings.from_env(env, defaults)
    return [(name, defaults.get(name, "")) for name in env.asked]


def environment_help() -> str:
    """The settings part of ``server.py --help``."""
    lines = ["settings (environment variables, or lines in ./.env; README.md, Configuration, says what each does):"]
    for name, default in environment_defaults():
        if name in SECRET_NAMES:
            shown = "(generated into .env on first run)"
        else:
            shown = default.encode("unicode_escape").decode() if default else "(unset)"
        lines.append(f"  {name:<32} {shown}")
    lines.append(f"  {'TURNSTILE_<PLUGIN>_<SETTING>':<32} a plugin's own settings (docs/plugins.md)")
    return "\n".join(lines)


def parser() -> Parser:
    top = Parser(
        prog="server.py",
        description="Without arguments, run the server.",
        epilog=environment_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    groups = top.add_commands("group")
    user = groups.add_parser("user", help="manage user accounts").add_commands("command")
    add = user.add_parser("add", help="create a user (password read from stdin, or prompted on a terminal)")
    add.add_argument("name")
    add.add_argument("--roles", default="User", help="comma list of User, Editor, Admin (User is always included)")
    user.add_parser("list", help="list users with their roles, live sessions, email and second factors")
    roles = user.add_parser("roles", help="set a user's roles")
    roles.add_argument("name")
    roles.add_argument("roles", help="comma list of User, Editor, Admin (User is always included)")
    for name, text in (
        ("passwd", "set a new password (stdin or prompt) and end all sessions"),
        ("revoke", "end every session of a user"),
        ("delete", "delete a user and end their sessions"),
        ("mfa-reset", "remove every second factor of a user (TOTP, recovery codes, passkeys); sessions and password stay"),
    ):
        user.add_parser(name, help=text).add_argument("name")
    keys = groups.add_parser("keys", help="the access-token signing keys (ACCESS_TOKEN_ALGORITHM EdDSA, ES256, RS256)")
    keys = keys.add_commands("command")
    rotate = keys.add_parser(
        "rotate", help="stage a new signing key: published at once, signing after one JWKS cache period (JWKS_MAX_AGE)"
    )
    rotate.add_argument("--now", action="store_true", help="sign with it within seconds (once every running server has it)")
    keys.add_parser("list", help="kid, algorithm, state (next, current, retired) and dates of each key; never private material")
    store = groups.add_parser("store", help="operate on whole stores").add_commands("command")
    copy = store.add_parser("copy", help="copy every collection (users and live sessions included) between stores")
    copy.add_argument("--from", dest="source", required=True, metavar="DATA_DIR_OR_URL")
    copy.add_argument("--to", dest="target", required=True, metavar="DATA_DIR_OR_URL")
    copy.add_argument("--force", action="store_true", help="copy into a target that already holds data")
    return top


def read_password(settings: Settings, stdin: TextIO) -> str:
    """One line from stdin when it is not a terminal; otherwise prompt twice without echo."""
    if not stdin.isatty():
        pwd = stdin.readline().rstrip("\r\n")
        if not pwd:
            raise CLIError("no password was given: pipe it as one line on stdin, or run on a terminal to be prompted")
    else:
        pwd = getpass.getpass("Password: ")
        if not pwd:
            raise CLIError("no password was given")
        if getpass.getpass("Again: ") != pwd:
            raise CLIError("the passwords differ")
    return checked(check_password_length, pwd, settings.password_min_length)


def checked(check, *args):  # type: ignore[no-untyped-def]
    try:
        return check(*args)
    except APIError as exc:
        raise CLIError(exc.message) from None


async def require_user(accounts: Accounts, name: str) -> None:
    if await accounts.user(name) is None:
        raise CLIError(f"no user {name}")


def _when(stamp: int | None) -> str:
    return "-" if stamp is None else time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(stamp))


def print_keys(entries: list[Entry], out: TextIO) -> None:
    """One line per key, tab-separated, with a header: what ``keys list`` shows (nothing private)."""
    print("kid\talg\tstate\tcreated\tsigns from\tretired\tpublished until", file=out)
    for e in entries:
        since = "-" if e.active_from <= 0 else _when(e.active_from)
        until = "-" if e.published_until is None else _when(e.published_until)
        shown = "(not published: HS256 secret)" if e.jwk is None else until
        print(f"{e.kid}\t{e.alg}\t{e.state}\t{_when(e.created)}\t{since}\t{_when(e.retired_at)}\t{shown}", file=out)


async def run_keys(args: argparse.Namespace, store: Store, settings: Settings, out: TextIO) -> None:
    keyring = Keyring(store, settings)
    if args.command == "rotate":
        try:
            entry = await keyring.rotate(now_=args.now)
        except KeyringError as exc:
            raise CLIError(str(exc)) from None
        print(f"staged {entry.kid} ({entry.alg}): published now, signs from {_when(entry.active_from)}", file=out)
    await keyring.load()
    entries = keyring.entries()
    if not entries:
        print(f"no signing keys: access tokens are signed with ACCESS_TOKEN_SECRET ({keyring.alg})", file=out)
        return
    print_keys(entries, out)


async def run(args: argparse.Namespace, settings: Settings, stdin: TextIO, out: TextIO) -> None:
    store = await open_store(settings)
    try:
        if args.group == "keys":
            return await run_keys(args, store, settings, out)
        accounts = await Accounts.open(store)
        name = getattr(args, "name", None)
        if args.command == "add":
            checked(check_username, name)
            roles = parse_roles(args.roles)
            pwd = read_password(settings, stdin)
            hashed = await PasswordHasher(settings.bcrypt_rounds).hash(pwd)
            try:
                await accounts.create_user(name, hashed, roles)
            except KeyExists:
                raise CLIError(f"user {name} already exists") from None
            print(f"created {name} ({', '.join(role_names(roles))})", file=out)
        elif args.command == "list":
            for user in await accounts.users():
                email = user["email"] and f"{user['email']} ({'verified' if user['email_verified'] else 'unverified'})"
                factors = ",".join(user["factors"]) or "-"
                print(
                    f"{user['username']}\t{','.join(role_names(user['roles']))}\tsessions={user['sessions']}"
                    f"\temail={email or '-'}\tfactors={factors}",
                    file=out,
                )
        elif args.command == "roles":
            roles = parse_roles(args.roles)
            if not await accounts.set_roles(name, roles):
                raise CLIError(f"no user {name}")
            print(f"{name}: {', '.join(role_names(roles))} (clients get the new roles on their next refresh)", file=out)
        elif args.command == "passwd":
            await require_user(accounts, name)
            hashed = await PasswordHasher(settings.bcrypt_rounds).hash(read_password(settings, stdin))
            if not await accounts.set_password(name, hashed):
                raise CLIError(f"no user {name}")
            print(f"{name}: password changed, all sessions ended", file=out)
        elif args.command == "revoke":
            await require_user(accounts, name)
            await accounts.revoke_all(name)
            print(f"{name}: all sessions ended", file=out)
        elif args.command == "mfa-reset":
            before = await accounts.factors(name) if await accounts.exists(name) else None
            if before is None or not await accounts.reset_factors(name):
                raise CLIError(f"no user {name}")
            removed = ", ".join(sorted(before)) or "none"
            print(f"{name}: second factors removed ({removed}); password and sessions unchanged", file=out)
        elif args.command == "delete":
            if await accounts.delete_user(name) is None:
                raise CLIError(f"no user {name}")
            print(f"deleted {name}", file=out)
    finally:
        await store.close()


def main(argv: list[str], stdin: TextIO = sys.stdin, out: TextIO = sys.stdout) -> int:
    top = parser()
    if argv and argv[0].startswith("-") and argv[0] not in ("-h", "--help"):  # argparse would ask for a command
        print(f"turnstile: unknown option {argv[0]!r}; server.py takes --help, or a command: {top.command_names()}", file=sys.stderr)
        return 2
    args = top.parse_args(argv)
    if args.group == "store":  # names both stores itself: needs no settings
        from .store_copy import main as store_copy

        return store_copy(argv)
    try:
        settings = load_settings()
        asyncio.run(run(args, settings, stdin, out))
    except (ValueError, StoreError) as exc:  # unknown role names, bad settings, unreadable data
        print(f"turnstile: {exc}", file=sys.stderr)
        return 1
    except CLIError as exc:
        print(f"turnstile: {exc}", file=sys.stderr)
        return 1
    return 0
