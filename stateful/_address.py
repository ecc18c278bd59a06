"""Showing a watermark's address unambiguously, and suggesting commands that paste into a shell.

A leaf of the package (it imports only the standard library): error messages, log lines and
the command line all show an address through :func:`display_address` and build every command
they suggest with :func:`command`, so ``a/b`` + ``q`` and ``a`` + ``b/q`` never look alike and
a name such as ``/data/landing/*.csv`` or ``daily reports`` survives a copy and paste.
"""

from __future__ import annotations

import re
import shlex

__all__ = [
    "PARTITION_PREFIX",
    "command",
    "display_address",
    "display_part",
    "partition_key",
    "shown_address",
    "suggest",
    "partition_of",
    "partition_options",
]

#: A keyed watermark's partition ``P`` is stored under the document key ``watermark[P]``.
PARTITION_PREFIX = "watermark["

# What a part may hold and still be shown as it is: no "/", no space, nothing a shell treats
# specially (shlex.quote's safe set, without the "/" that separates namespace and name).
_PLAIN = re.compile(r"[\w@%+=:,.-]+", re.ASCII)


def display_part(part: str) -> str:
    """A namespace or name as shown: as it is when plain, else single-quoted the way a shell reads it.

    Example:
        >>> display_part("landing"), display_part("a/b"), display_part("it's")
        ('landing', "'a/b'", '\\'it\\'"\\'"\\'s\\'')
    """
    if _PLAIN.fullmatch(part):
        return part
    return "'" + part.replace("'", "'\"'\"'") + "'"


def display_address(namespace: str, name: str, key: str | None = None) -> str:
    """The address ``namespace/name`` as shown in messages and logs; the key only when given.

    A part holding ``/``, a space, a quote or another character a shell treats specially is
    single-quoted, so two different addresses never print alike.

    Example:
        >>> display_address("a/b", "q"), display_address("a", "b/q")
        ("'a/b'/q", "a/'b/q'")
        >>> display_address("files", "landing")
        'files/landing'
        >>> display_address("files", "landing", key="cursor")
        "files/landing (key 'cursor')"
    """
    shown = f"{display_part(namespace)}/{display_part(name)}"
    if key is None:
        return shown
    partition = partition_of(key)
    return f"{shown} (key {key!r})" if partition is None else f"{shown} (partition {partition!r})"


def shown_address(namespace: str, name: str, key: str) -> str:
    """:func:`display_address` naming the key (or partition) only when it is not the plain watermark's.

    Example:
        >>> shown_address("files", "landing", "watermark"), shown_address("files", "landing", "watermark[eu]")
        ('files/landing', "files/landing (partition 'eu')")
    """
    return display_address(namespace, name, None if key == "watermark" else key)


def partition_key(partition: str) -> str:
    """The document key a keyed watermark's ``partition`` is stored under.

    Example:
        >>> partition_key("eu")
        'watermark[eu]'
    """
    return f"{PARTITION_PREFIX}{partition}]"


def partition_of(key: str) -> str | None:
    """The partition a document key holds, or ``None`` for a key that holds no partition.

    Example:
        >>> partition_of("watermark[eu]"), partition_of("watermark")
        ('eu', None)
    """
    if key.startswith(PARTITION_PREFIX) and key.endswith("]") and len(key) > len(PARTITION_PREFIX) + 1:
        return key[len(PARTITION_PREFIX) : -1]
    return None


def partition_options(key: str) -> tuple[str, ...]:
    """The options a suggested command needs to name document ``key``: none for a plain watermark.

    Example:
        >>> partition_options("watermark[eu]"), partition_options("watermark"), partition_options("cfg")
        (('--partition', 'eu'), (), ('--key', 'cfg'))
    """
    partition = partition_of(key)
    if partition is not None:
        return ("--partition", partition)
    return () if key == "watermark" else ("--key", key)


def command(*args: str) -> str:
    """A command line to suggest, each argument quoted for a POSIX shell (``shlex.join``).

    Example:
        >>> command("stateful", "show", "files", "/data/landing/*.csv")
        "stateful show files '/data/landing/*.csv'"
    """
    return shlex.join(args)


def suggest(verb: str, namespace: str, name: str, key: str, *options: str) -> str:
    """The ``stateful VERB`` command for a document: ``--partition`` (or ``--key``) when it needs one.

    Example:
        >>> suggest("show", "files", "landing", "watermark[eu]")
        'stateful show files landing --partition eu'
    """
    return command("stateful", verb, namespace, name, *options, *partition_options(key))
