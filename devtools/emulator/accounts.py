"""Users, roles, sign-in and sessions, as Snowflake checks them.

fakesnow accepts any login and keeps a session forever. Snowflake does neither, and the app's
sign-in, session-renewal and read-only-role code is only tested if the emulator is as strict:

- Users (https://docs.snowflake.com/en/sql-reference/sql/create-user): `CREATE USER [IF NOT
  EXISTS] name [PASSWORD = '...'] [RSA_PUBLIC_KEY = '...'] [DEFAULT_ROLE = r]`, `ALTER USER
  name SET PASSWORD | RSA_PUBLIC_KEY | RSA_PUBLIC_KEY_2 | DEFAULT_ROLE = ...` and `ALTER USER
  name ADD PROGRAMMATIC ACCESS TOKEN t [ROLE_RESTRICTION = 'r']`, which returns the token's
  secret once (https://docs.snowflake.com/en/sql-reference/sql/alter-user-add-programmatic-access-token).
  The user FAKE (password `snow`) exists from the start with the administrative roles.
- Sign-in (https://docs.snowflake.com/en/user-guide/key-pair-auth): a password; a key-pair JWT
  whose issuer names the SHA-256 fingerprint of one of the user's registered public keys and
  whose signature that key verifies; an OAuth access token (issued here by the emulator-only
  route POST /emulator/oauth-tokens, standing in for the identity provider); or a programmatic
  access token. Anything else is refused with Snowflake's error code.
- Roles (https://docs.snowflake.com/en/user-guide/security-access-control-overview): a session
  runs under the role it asked for (roleName), which must be granted to the user (`CREATE ROLE
  r`, `GRANT ROLE r TO USER u`). ACCOUNTADMIN, SECURITYADMIN, SYSADMIN and USERADMIN may do
  anything here. A role created with CREATE ROLE is modelled as what a report role is granted:
  SELECT on tables and views and READ on stages, nothing else, so a write, a CALL or an
  anonymous procedure under it fails with Snowflake's "Insufficient privileges" error (003001).
  GRANTs of privileges to such roles are accepted and change nothing; granting a write
  privilege is refused, so a test never believes it holds a privilege the emulator ignores.
- Sessions (https://docs.snowflake.com/en/user-guide/session-policies): each login gets a
  session token and a master token. `expire_sessions()` (or POST /emulator/expire-sessions)
  expires both, as a night without use does: the next request answers 390112, the connector
  asks /session/token-request to renew, and that answers 390114 "the user must authenticate
  again". `expire_session_tokens()` expires only the session tokens, which the connector renews
  by itself.

Users, roles and tokens live in memory: a restarted emulator knows FAKE only.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from dataclasses import dataclass, field
from typing import Any

import jwt
import snowflake.connector.errors
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, load_der_public_key
from starlette.requests import Request
from starlette.responses import JSONResponse

from devtools.emulator.sqltext import Kind, code, normalise_ident, syntax_error, tokenize, unquote_string

ADMIN_ROLES = frozenset({"ACCOUNTADMIN", "SECURITYADMIN", "SYSADMIN", "USERADMIN"})
# Session tokens last an hour and master tokens four (Snowflake's defaults).
SESSION_VALIDITY = 3600
MASTER_VALIDITY = 4 * 3600

SESSION_EXPIRED = "390112"
MASTER_TOKEN_EXPIRED = "390114"


@dataclass
class User:
    name: str
    password: str | None = None
    public_keys: dict[str, bytes] = field(default_factory=dict)  # slot (RSA_PUBLIC_KEY[_2]) -> DER
    default_role: str = "PUBLIC"
    roles: set[str] = field(default_factory=lambda: {"PUBLIC"})


@dataclass
class Session:
    user: str
    role: str
    master_token: str
    expired: bool = False
    master_expired: bool = False


_users: dict[str, User] = {}
_roles: set[str] = set()
_pats: dict[str, tuple[str, str | None]] = {}  # secret -> (user, role restriction)
_oauth: dict[str, tuple[str, str | None]] = {}  # access token -> (user, role)
_sessions: dict[str, Session] = {}  # session token -> session
_masters: dict[str, str] = {}  # master token -> current session token


def reset() -> None:
    """Forget everything but the user FAKE (each emulator starts this way)."""
    _users.clear()
    _roles.clear()
    _roles.update(ADMIN_ROLES | {"PUBLIC"})
    _pats.clear()
    _oauth.clear()
    _sessions.clear()
    _masters.clear()
    _users["FAKE"] = User("FAKE", password="snow", default_role="SYSADMIN", roles=set(ADMIN_ROLES | {"PUBLIC"}))


reset()


class SignInError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def response(self) -> JSONResponse:
        return JSONResponse({"data": None, "code": self.code, "message": self.message, "success": False})


def fingerprint(public_der: bytes) -> str:
    return "SHA256:" + base64.b64encode(hashlib.sha256(public_der).digest()).decode()


def _public_der(text: str) -> bytes:
    """A public key as Snowflake takes it: the PEM body, with or without its BEGIN/END lines."""
    body = re.sub(r"-----[A-Z ]+-----|\s", "", text)
    try:
        key = load_der_public_key(base64.b64decode(body))
    except ValueError as exc:
        raise snowflake.connector.errors.ProgrammingError(
            msg=f"Invalid RSA public key: {exc}", errno=3002, sqlstate="22023"
        ) from None
    return key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


def sign_in(data: dict[str, Any], role: str | None) -> tuple[User, str]:
    """Check a login request's credentials; return the user and the session's role."""
    account = str(data.get("ACCOUNT_NAME") or "").upper()
    authenticator = str(data.get("AUTHENTICATOR") or "SNOWFLAKE").upper()
    token = str(data.get("TOKEN") or "")
    login = str(data.get("LOGIN_NAME") or "").upper()
    restricted: str | None = None
    if authenticator == "SNOWFLAKE_JWT":
        user = _verify_jwt(token, account)
    elif authenticator == "OAUTH":
        if token not in _oauth:
            raise SignInError("390303", "Invalid OAuth access token. ")
        name, restricted = _oauth[token]
        user = _users[name]
    elif authenticator == "PROGRAMMATIC_ACCESS_TOKEN":
        found = _pats.get(token)
        if found is None or (login and found[0] != login):
            raise SignInError("390100", "Incorrect username or password was specified.")
        name, restricted = found
        user = _users[name]
    elif authenticator == "SNOWFLAKE":
        user_or_none = _users.get(login)
        password = str(data.get("PASSWORD") or "")
        # a programmatic access token may stand in for the password
        by_pat = _pats.get(password)
        if user_or_none is None or not (
            (user_or_none.password is not None and secrets.compare_digest(user_or_none.password, password))
            or (by_pat is not None and by_pat[0] == user_or_none.name)
        ):
            raise SignInError("390100", "Incorrect username or password was specified.")
        user = user_or_none
        if by_pat is not None and by_pat[0] == user.name:
            restricted = by_pat[1]
    else:
        raise SignInError("390100", f"The authenticator {authenticator} is not supported by the emulator.")

    wanted = normalise_ident(role) if role else (restricted or user.default_role)
    if restricted and wanted != restricted:
        raise SignInError("390189", f"Role '{wanted}' specified in the connect string is not granted to this user.")
    if wanted not in user.roles:
        raise SignInError(
            "390189",
            f"Role '{wanted}' specified in the connect string is not granted to this user. "
            "Contact your local system administrator, or attempt to login with another role, e.g. PUBLIC.",
        )
    return user, wanted


def _verify_jwt(token: str, account: str) -> User:
    invalid = SignInError("390144", "JWT token is invalid.")
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        raise invalid from None
    issuer = str(claims.get("iss") or "")
    subject = str(claims.get("sub") or "")
    parts = issuer.split(".")
    if len(parts) < 3 or not subject:
        raise invalid
    issuer_account, name, key_fp = parts[0], parts[1], ".".join(parts[2:])
    user = _users.get(name.upper())
    if user is None or issuer_account.upper() != account or subject.upper() != f"{account}.{name.upper()}":
        raise invalid
    # The issuer names the key; only a key registered for the user may verify the signature.
    der = next((der for der in user.public_keys.values() if fingerprint(der) == key_fp), None)
    if der is None:
        raise invalid
    try:
        jwt.decode(
            token,
            key=load_der_public_key(der),  # type: ignore[arg-type]
            algorithms=["RS256", "ES256", "ES384", "ES512"],
            options={"require": ["exp", "iat", "iss", "sub"]},
            leeway=60,
        )
    except jwt.PyJWTError:
        raise invalid from None
    return user


# -- sessions -----------------------------------------------------------------------------------


def open_session(token: str, user: User, role: str) -> Session:
    session = Session(user=user.name, role=role, master_token=secrets.token_urlsafe(32))
    _sessions[token] = session
    _masters[session.master_token] = token
    return session


def session_of(request: Request) -> Session | None:
    auth = request.headers.get("Authorization") or ""
    return _sessions.get(auth[17:-1])


def expired_response(session: Session | None) -> JSONResponse | None:
    """Snowflake's answer to a request made with an expired session token, or None."""
    if session is not None and session.expired:
        return JSONResponse(
            {"data": None, "code": SESSION_EXPIRED, "message": "Session token has expired.", "success": False}
        )
    return None


def renew(master_token: str, old_session_token: str) -> tuple[str, str] | SignInError:
    """POST /session/token-request: a new session token for the same session, if the master token lives."""
    old = _masters.get(master_token)
    session = _sessions.get(old) if old else None
    if session is None or old != old_session_token:
        return SignInError("390113", "Master token not found.")
    if session.master_expired:
        return SignInError(MASTER_TOKEN_EXPIRED, "Authentication token has expired.  The user must authenticate again.")
    new = secrets.token_urlsafe(32)
    del _sessions[old]
    session.expired = False
    _sessions[new] = session
    _masters[master_token] = new
    return old, new


def forget(token: str) -> None:
    if session := _sessions.pop(token, None):
        _masters.pop(session.master_token, None)


def expire_sessions(user: str | None = None) -> int:
    """Expire the session and master tokens of every session (of one user): they must sign in again."""
    count = 0
    for session in _sessions.values():
        if user is None or session.user == user.upper():
            session.expired = session.master_expired = True
            count += 1
    return count


def expire_session_tokens(user: str | None = None) -> int:
    """Expire only the session tokens: the connector renews them with the master token."""
    count = 0
    for session in _sessions.values():
        if user is None or session.user == user.upper():
            session.expired = True
            count += 1
    return count


def issue_oauth_token(user: str, role: str | None = None) -> str:
    if user.upper() not in _users:
        raise KeyError(user)
    token = "oauth-" + secrets.token_urlsafe(32)
    _oauth[token] = (user.upper(), normalise_ident(role) if role else None)
    return token


# -- privileges ----------------------------------------------------------------------------------

_READ_VERBS = frozenset({"SELECT", "WITH", "SHOW", "DESC", "DESCRIBE", "LIST", "LS", "EXPLAIN", "USE"})
_WRITE_PRIVILEGES = frozenset(
    {"INSERT", "UPDATE", "DELETE", "TRUNCATE", "OWNERSHIP", "ALL", "WRITE", "CREATE", "REFERENCES", "APPLY"}
)


def is_admin(role: str) -> bool:
    return role in ADMIN_ROLES


def privilege_error(what: str) -> snowflake.connector.errors.ProgrammingError:
    return snowflake.connector.errors.ProgrammingError(
        msg=f"SQL access control error:\nInsufficient privileges to operate on {what}.", errno=3001, sqlstate="42501"
    )


def check_privileges(session: Session, sql: str) -> None:
    """Refuse what the session's role may not do: a custom role reads only (see the module doc)."""
    if is_admin(session.role):
        return
    tokens = code(tokenize(sql))
    verb = tokens[0].upper if tokens and tokens[0].kind is Kind.WORD else ""
    if verb not in _READ_VERBS:
        raise privilege_error(f"{verb.lower() or 'this statement'} for role {session.role}")
    if verb in ("SELECT", "WITH") and not _plain_query(sql):
        raise privilege_error(f"a statement that is not a query, for role {session.role}")


def _plain_query(sql: str) -> bool:
    """One query that reads: no procedure, no DML, no DDL anywhere in its tree."""
    import sqlglot
    from sqlglot import exp

    try:
        statements = [s for s in sqlglot.parse(sql, read="snowflake") if s is not None]
    except sqlglot.errors.SqlglotError:
        return False
    if len(statements) != 1:
        return False
    (tree,) = statements
    forbidden = (exp.Insert, exp.Update, exp.Delete, exp.Merge, exp.Create, exp.Drop, exp.Alter, exp.Command)
    return isinstance(tree, exp.Query) and not any(isinstance(node, forbidden) for node in tree.walk())


# -- SQL: users, roles, grants, tokens -----------------------------------------------------------

_STATEMENTS = [
    ("CREATE", "USER"),
    ("ALTER", "USER"),
    ("DROP", "USER"),
    ("CREATE", "ROLE"),
    ("DROP", "ROLE"),
    ("GRANT",),
    ("REVOKE",),
]


def handles(words: list[str]) -> bool:
    return any(words[: len(s)] == list(s) for s in _STATEMENTS)


def run(session: Session, sql: str) -> list[tuple[str, ...]]:
    """Run an account statement; returns (column values...) rows, first row the column names."""
    tokens = code(tokenize(sql))
    words = [t.upper if t.kind is Kind.WORD else t.text for t in tokens]
    if words[:2] in (["CREATE", "USER"], ["ALTER", "USER"], ["DROP", "USER"], ["CREATE", "ROLE"], ["DROP", "ROLE"]):
        if session.role not in ("ACCOUNTADMIN", "SECURITYADMIN", "USERADMIN"):
            raise privilege_error(f"account for role {session.role}")
    elif not is_admin(session.role):
        raise privilege_error(f"account for role {session.role}")
    if words[:2] == ["CREATE", "USER"]:
        return _create_user(tokens)
    if words[:2] == ["ALTER", "USER"]:
        return _alter_user(tokens)
    if words[:2] == ["DROP", "USER"]:
        name = normalise_ident(tokens[-1].text)
        _users.pop(name, None)
        return [("status",), (f"{name} successfully dropped.",)]
    if words[:2] == ["CREATE", "ROLE"]:
        name = normalise_ident(tokens[-1].text)
        if name in _roles and "NOT" not in words:
            raise syntax_error(f"Object '{name}' already exists.")
        _roles.add(name)
        return [("status",), (f"Role {name} successfully created.",)]
    if words[:2] == ["DROP", "ROLE"]:
        name = normalise_ident(tokens[-1].text)
        _roles.discard(name)
        for user in _users.values():
            user.roles.discard(name)
        return [("status",), (f"{name} successfully dropped.",)]
    if words[0] == "GRANT":
        return _grant(tokens, words)
    return [("status",), ("Statement executed successfully.",)]


def _options(tokens: list[Any]) -> dict[str, str]:
    """NAME = value pairs of a CREATE/ALTER USER statement."""
    found: dict[str, str] = {}
    for i in range(len(tokens) - 2):
        if tokens[i].kind is Kind.WORD and tokens[i + 1].text == "=":
            value = tokens[i + 2]
            text = unquote_string(value.text) if value.kind in (Kind.STRING, Kind.DOLLAR) else value.text
            found[tokens[i].upper] = text
    return found


def _apply(user: User, options: dict[str, str]) -> None:
    if "PASSWORD" in options:
        user.password = options["PASSWORD"]
    for slot in ("RSA_PUBLIC_KEY", "RSA_PUBLIC_KEY_2"):
        if slot in options:
            if options[slot]:
                user.public_keys[slot] = _public_der(options[slot])
            else:
                user.public_keys.pop(slot, None)
    if "DEFAULT_ROLE" in options:
        user.default_role = normalise_ident(options["DEFAULT_ROLE"])


def _create_user(tokens: list[Any]) -> list[tuple[str, ...]]:
    words = [t.upper for t in tokens[:6]]
    name_at = 5 if words[2:5] == ["IF", "NOT", "EXISTS"] else 2
    name = normalise_ident(tokens[name_at].text)
    if name in _users:
        if name_at == 5:
            return [("status",), (f"{name} already exists, statement succeeded.",)]
        raise syntax_error(f"User '{name}' already exists.")
    user = User(name)
    _apply(user, _options(tokens[name_at + 1 :]))
    _users[name] = user
    return [("status",), (f"User {name} successfully created.",)]


def _alter_user(tokens: list[Any]) -> list[tuple[str, ...]]:
    words = [t.upper if t.kind is Kind.WORD else t.text for t in tokens]
    name_at = 4 if words[2:4] == ["IF", "EXISTS"] else 2
    name = normalise_ident(tokens[name_at].text)
    if name not in _users:
        raise snowflake.connector.errors.ProgrammingError(
            msg=f"User '{name}' does not exist or not authorized.", errno=2003, sqlstate="02000"
        )
    user = _users[name]
    rest = words[name_at + 1 :]
    if rest[:1] == ["ADD"] and (rest[1:4] == ["PROGRAMMATIC", "ACCESS", "TOKEN"] or rest[1:2] == ["PAT"]):
        token_name = tokens[name_at + (5 if rest[1] == "PROGRAMMATIC" else 3)].text
        options = _options(tokens[name_at + 1 :])
        restriction = normalise_ident(options["ROLE_RESTRICTION"]) if "ROLE_RESTRICTION" in options else None
        if restriction is not None and restriction not in user.roles:
            raise privilege_error(f"role {restriction}")
        secret = "pat-" + secrets.token_urlsafe(32)
        _pats[secret] = (name, restriction)
        return [("token_name", "token_secret"), (normalise_ident(token_name), secret)]
    if rest[:1] == ["SET"]:
        _apply(user, _options(tokens[name_at + 1 :]))
        return [("status",), ("Statement executed successfully.",)]
    raise syntax_error("the emulator supports ALTER USER ... SET and ADD PROGRAMMATIC ACCESS TOKEN only")


def _grant(tokens: list[Any], words: list[str]) -> list[tuple[str, ...]]:
    if words[:2] == ["GRANT", "ROLE"]:
        # GRANT ROLE r TO USER u | GRANT ROLE r TO ROLE r2
        role = normalise_ident(tokens[2].text)
        if role not in _roles:
            raise snowflake.connector.errors.ProgrammingError(
                msg=f"Role '{role}' does not exist or not authorized.", errno=2003, sqlstate="02000"
            )
        if words[3:5] == ["TO", "USER"]:
            user = normalise_ident(tokens[5].text)
            if user not in _users:
                raise snowflake.connector.errors.ProgrammingError(
                    msg=f"User '{user}' does not exist or not authorized.", errno=2003, sqlstate="02000"
                )
            _users[user].roles.add(role)
        return [("status",), ("Statement executed successfully.",)]
    # GRANT <privileges> ON ... TO ROLE r: custom roles read only (see the module doc).
    on = words.index("ON") if "ON" in words else len(words)
    privileges = {w for w in words[1:on] if w not in (",",)}
    if privileges & _WRITE_PRIVILEGES:
        raise snowflake.connector.errors.ProgrammingError(
            msg="the emulator models custom roles as read-only: it grants SELECT, USAGE, READ and MONITOR only",
            errno=9999,
            sqlstate="0A000",
        )
    return [("status",), ("Statement executed successfully.",)]
