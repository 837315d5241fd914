"""API keys: who may call the server, and whose conversations are whose.

`--api-key-file` holds one ``name:key`` per line (``#`` comments and blank lines
ignored). A request shows its key as ``Authorization: Bearer KEY``; the key is
compared with every stored key in constant time (`hmac.compare_digest`, all of
them, whatever matches), and the matching key's name owns the conversations
that request makes. Without a key file there is one anonymous owner, and the
server only binds to loopback.
"""

from __future__ import annotations

import hmac
import os
import stat
from pathlib import Path

from chatbot.errors import ConfigError

MIN_KEY_LENGTH = 16  # characters; shorter keys are refused (guessable)


def read_key_file(path: str) -> dict[str, str]:
    """name → key from `path`.

    Raises:
        ConfigError: the file cannot be read, a line is not ``name:key``, a name repeats, a key is
            shorter than MIN_KEY_LENGTH, or the file holds no key.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
        mode = os.stat(path).st_mode
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"--api-key-file {path}: cannot read it ({exc})") from None
    keys: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, separator, key = line.partition(":")
        name, key = name.strip(), key.strip()
        if not separator or not name or not key:
            raise ConfigError(f"--api-key-file {path}:{number}: expected name:key, got a line without both")
        if len(name) > 100 or not name.isprintable():
            raise ConfigError(f"--api-key-file {path}:{number}: a name is at most 100 printable characters")
        if name in keys:
            raise ConfigError(f"--api-key-file {path}:{number}: the name {name!r} appears twice; each key needs its own name")
        if len(key) < MIN_KEY_LENGTH:
            raise ConfigError(f"--api-key-file {path}:{number}: the key of {name!r} is shorter than {MIN_KEY_LENGTH} characters")
        keys[name] = key
    if not keys:
        raise ConfigError(f"--api-key-file {path}: no name:key line in it")
    if stat.S_IMODE(mode) & 0o077:
        os.chmod(path, stat.S_IMODE(mode) & 0o700)  # keys are secrets: owner-only, as the database is
    return keys


def owner_of(authorization: str | None, keys: dict[str, str]) -> str | None:
    """The name of the key in an ``Authorization: Bearer KEY`` header, or None when it matches none.

    Every stored key is compared, in constant time, whether or not an earlier one matched,
    so the time taken says nothing about which key (or how much of one) was right.
    """
    scheme, _, given = (authorization or "").partition(" ")
    if scheme.lower() != "bearer":
        given = ""
    given_bytes = given.strip().encode()
    found = None
    for name, key in keys.items():
        if hmac.compare_digest(given_bytes, key.encode()) and given_bytes:
            found = name
    return found
