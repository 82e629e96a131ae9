"""Errors that end a run with exit code 2 and one clear line on stderr (never a traceback)."""

from __future__ import annotations


class UsageError(Exception):
    """Bad input, configuration or authentication: the CLI prints `aib-audit: error: <message>` and exits 2."""


class CredentialError(UsageError):
    """No usable Azure credential, or the token request failed."""


class EndpointError(UsageError):
    """The ARM endpoint could not be reached (DNS, TLS, connection refused)."""


class SubscriptionError(UsageError):
    """A subscription does not exist or the caller cannot see it."""


class Terminated(BaseException):
    """SIGTERM (a scheduler's or CI runner's stop, `kill`, `timeout`): the run stops as on Ctrl-C, with one line
    and exit 143 (128 + 15, what a shell reports for a process ended by SIGTERM).

    A BaseException, as KeyboardInterrupt is: no `except Exception` on the way may swallow it, and every
    `finally` (temp files, abandoned reads) still runs, which the signal's default action would not let happen.
    """


class Interrupted(Exception):
    """Ctrl-C (SIGINT) during a run: the CLI prints `interrupted` and exits 130 at once.

    Not a KeyboardInterrupt on purpose: typer turns that into a silent exit 130, and the contract is one line.
    """
