"""The few exceptions whose messages are safe to show a user.

Anything else that escapes is a bug: the CLI and the UI convert only these.
"""


def escape(text: str, n: int = 200) -> str:
    """Text that came from a visitor (a column or file name, a reply excerpt) made safe to put in a message or
    a log line: control characters (newlines too) shown escaped, so it cannot forge a line; at most n characters.

    >>> print(escape("name" + chr(10) + "[ftspace status] {}"))
    name\\n[ftspace status] {}
    """
    text = str(text)
    out = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return out[:n] + ("..." if len(out) > n else "")


class FtspaceError(Exception):
    """Base class: the message is one line, names what is wrong and says what to do."""


class ConfigError(FtspaceError):
    """A RunConfig field or combination of fields is invalid."""


class DataError(FtspaceError):
    """A dataset cannot be read or converted (names the file, row and field)."""


class RunError(FtspaceError):
    """A run cannot be found, started, stopped or resumed."""


class ModelError(FtspaceError):
    """A base model or adapter cannot be found or loaded."""


class HubError(FtspaceError):
    """A push to the Hub failed or was refused (the local adapter is never touched)."""
