"""The local platform's people: a bearer token for everyone the platform repository names.

The Tenantry server authenticates a person by asking the management cluster's
TokenReview API whom a bearer token belongs to. A real platform's API servers get
that from OIDC or a cloud's IAM; local clusters have neither, so the local platform
gives every person a static token that its API servers accept (kube-apiserver's
``--token-auth-file``). A person, a demo or a test then acts as *themself*: the
server, RBAC and the audit log all see the same user name the repository uses.

Who gets a token (`named`):

* every user in a tenant's ``owners`` or ``members`` and in ``server.admins.users``;
* for every group named anywhere (tenants' owners and members, ``server.admins``),
  one synthetic user ``member-of-<group>`` whose only group is that one, so what a
  group may do can be tried with a real token.

Real users get no groups. A static token file fixes a user's groups when the API
server starts, and the repository lists users and groups separately, never which
user is in which group; inventing memberships would let a test pass for the wrong
reason. A group's rights are tried with its synthetic user instead.

Tokens are made once (``secrets.token_urlsafe(32)``) and kept, across `tenantry
down` too: later runs reuse them and append people who are new. Someone removed
from the repository keeps a token, which then authenticates but is bound to nothing
of any tenant (their RoleBindings go with the tenant file).

Files, in ``<state dir>/people/`` (directory 0700, files 0600, each written to a
temporary file and renamed, under a lock):

* ``tokens.csv``: the static token file (``token,user,uid,"group1,group2"``) that
  `tenantry.kube.localcluster.create` gives the API servers;
* ``tokens.json``: ``{user: token}``, read by `token` and `users`.

kube-apiserver reads ``tokens.csv`` only when it starts. `tenantry.local.platform.up`
therefore restarts a running cluster whose API server started with an older file (a
person was added): a few seconds per cluster, and only then. Tokens never appear in
logs, errors or command output; only the file paths and user names do.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import io
import json
import os
import re
import secrets
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from tenantry import errors, paths
from tenantry.spec import repository
from tenantry.spec.repository import Repository

GROUP_USER_PREFIX = "member-of-"
TOKENS_CSV = "tokens.csv"
TOKENS_JSON = "tokens.json"
_LOCK = ".lock"
# What `secrets.token_urlsafe` makes; anything else in tokens.json was edited by hand.
_TOKEN = re.compile(r"[A-Za-z0-9_-]{16,}")

# What cannot be written into a static token file's CSV row, or would change its meaning
# there: kube-apiserver splits the groups column on ',' and Go's CSV reader treats '"'
# and line breaks specially, so such a name would silently become another name.
_FORBIDDEN = {",": "a comma", '"': "a double quote", "\n": "a line break", "\r": "a line break"}


@dataclass(frozen=True)
class Named:
    """One user to give a token, and where the repository names it (for errors)."""

    user: str
    file: str
    field: str
    # For a synthetic group user: the group, as the repository spells it.
    group: str | None = None


@dataclass(frozen=True)
class Roster:
    """What `ensure` did: safe to print, since it holds no token."""

    users: tuple[str, ...]
    added: tuple[str, ...]
    token_file: Path


def group_user(group: str) -> str:
    """The synthetic user whose only group is ``group``."""
    return f"{GROUP_USER_PREFIX}{group}"


def groups_of(user: str) -> tuple[str, ...]:
    """The groups the token file gives ``user``: its group for a synthetic user, else none."""
    if user.startswith(GROUP_USER_PREFIX) and len(user) > len(GROUP_USER_PREFIX):
        return (user.removeprefix(GROUP_USER_PREFIX),)
    return ()


def named(repo: Repository) -> list[Named]:
    """Everyone ``repo`` names, users first, then one synthetic user per group; each once,
    in the order the repository first names them (pure)."""
    users: dict[str, Named] = {}
    groups: dict[str, Named] = {}
    sources = []
    for tenant in repo.tenants:
        file = f"{repository.TENANTS_DIR}/{tenant.name}.yaml"
        sources += [(file, "owners", tenant.owners), (file, "members", tenant.members)]
    if repo.platform.server is not None:
        sources.append((repository.PLATFORM_FILE, "server.admins", repo.platform.server.admins))
    for file, where, people in sources:
        for i, user in enumerate(people.users):
            users.setdefault(user, Named(user, file, f"{where}.users.{i}"))
        for i, group in enumerate(people.groups):
            groups.setdefault(group, Named(group, file, f"{where}.groups.{i}"))
    group_users = [
        Named(group_user(g.user), g.file, g.field, group=g.user) for g in groups.values()
    ]
    return [*users.values(), *group_users]


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a user or group in a static token file, or None if it can."""
    if not name or name != name.strip():
        return "is empty or starts or ends with a space"
    for char, what in _FORBIDDEN.items():
        if char in name:
            return f"contains {what}"
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        return "contains a control character"
    return None


def check(people: Sequence[Named]) -> None:
    """Raise `SpecError` naming every file and field whose name cannot get a token (pure)."""
    problems = []
    for person in people:
        name = person.group if person.group is not None else person.user
        reason = name_problem(name)
        if reason is None and person.group is None and groups_of(name):
            reason = f"starts with {GROUP_USER_PREFIX!r}, which names the local group users"
        if reason is not None:
            problems.append(
                errors.SpecProblem(
                    person.file, person.field, f"{name!r} {reason}",
                    "use a name without commas, quotes, line breaks or outer spaces "
                    "(as the identity provider spells it)",
                )
            )  # fmt: skip
    if problems:
        raise errors.SpecError(problems)


def merge(
    existing: Mapping[str, str], users: Sequence[str], new_token: Callable[[], str]
) -> dict[str, str]:
    """``existing`` tokens kept as they are, in their order, and a new one for each user
    not there yet, appended (pure but for ``new_token``)."""
    merged = dict(existing)
    for user in users:
        if user not in merged:
            merged[user] = new_token()
    return merged


def render_csv(tokens: Mapping[str, str]) -> str:
    """The static token file for ``{user: token}``: ``token,user,uid[,"groups"]`` rows (pure).

    The uid is the user name: static users have no other stable identifier. Refuses,
    rather than writes, a row the API server would read differently.
    """
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
    for user, token in tokens.items():
        reason = name_problem(user)
        if reason is None and not _TOKEN.fullmatch(token):
            reason = "has a token that is not URL-safe base64"
        if reason is not None:
            raise errors.TenantryError(
                f"user {user!r} {reason}: it cannot be written to a static token file",
                fix=f"remove it from {TOKENS_JSON} in the people directory, then run `tenantry up`",
            )
        groups = groups_of(user)
        row = [token, user, user]
        if groups:
            row.append(",".join(groups))
        writer.writerow(row)
    return out.getvalue()


def parse_tokens(text: str, *, file: str) -> dict[str, str]:
    """``tokens.json``'s ``{user: token}``; `TenantryError` naming ``file`` if it is not one."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        data = None  # reported below, without echoing the file's content
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in data.items()
    ):
        raise errors.TenantryError(
            f"{file} is not a JSON object of user name to token",
            fix=f"delete {file} and {TOKENS_CSV} beside it, then `tenantry down` and "
            "`tenantry up` (everyone gets a new token)",
        )
    return dict(data)


def directory() -> Path:
    """Where the people's tokens live: ``<state dir>/people``."""
    return paths.state_dir() / "people"


def token_file() -> Path:
    """The static token file the local API servers read."""
    return directory() / TOKENS_CSV


def _read() -> dict[str, str]:
    path = directory() / TOKENS_JSON
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    except OSError as e:
        raise errors.TenantryError(
            f"cannot read {path}: {e.strerror}", fix=f"check the permissions of {path}"
        ) from e
    return parse_tokens(text, file=str(path))


def _write_private(path: Path, text: str) -> None:
    # A temporary file created 0600 and renamed over the old one: readers see the whole
    # old file or the whole new one, and no other user can read it at any moment.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, text.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    tmp.replace(path)


@contextlib.contextmanager
def _locked() -> Iterator[Path]:
    # Two `tenantry up` at once must not each append a different token for one person.
    folder = directory()
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    folder.chmod(0o700)  # mkdir's mode is masked by the umask, and the folder may be old
    fd = os.open(folder / _LOCK, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield folder
    finally:
        os.close(fd)


def ensure(repo: Repository) -> Roster:
    """Give everyone ``repo`` names a token (once), and write both files if they changed."""
    wanted = named(repo)
    check(wanted)
    with _locked() as folder:
        existing = _read()
        tokens = merge(existing, [n.user for n in wanted], lambda: secrets.token_urlsafe(32))
        csv_text = render_csv(tokens)
        json_path, csv_path = folder / TOKENS_JSON, folder / TOKENS_CSV
        if tokens != existing or not json_path.exists():
            _write_private(json_path, json.dumps(tokens, indent=2) + "\n")
        try:
            current_csv = csv_path.read_text()
        except FileNotFoundError:
            current_csv = None
        if current_csv != csv_text:
            _write_private(csv_path, csv_text)
        for path in (json_path, csv_path):
            path.chmod(0o600)  # an unchanged file may have been loosened by hand
    return Roster(
        users=tuple(tokens),
        added=tuple(u for u in tokens if u not in existing),
        token_file=csv_path,
    )


def users() -> list[str]:
    """Every user with a local token, in the order they were added."""
    return list(_read())


def token(user: str) -> str:
    """``user``'s local bearer token; `UsageError` naming the known users if there is none."""
    tokens = _read()
    if user not in tokens:
        known = ", ".join(tokens) or "none"
        raise errors.UsageError(
            f"no local token for {user!r} in {directory() / TOKENS_JSON} (known: {known})",
            fix="name the user in a tenant's owners or members or in server.admins, then run "
            "`tenantry up`; for a group use its user member-of-<group>",
        )
    return tokens[user]
