"""systemd's sd_notify protocol in a few lines of stdlib.

:class:`Notifier` reads ``NOTIFY_SOCKET`` (a filesystem path, or an abstract socket written
with a leading ``@``), ``WATCHDOG_USEC`` and ``WATCHDOG_PID`` from the environment and sends
``READY=1``, ``STOPPING=1``, ``STATUS=...`` and ``WATCHDOG=1`` datagrams over one
``SOCK_DGRAM`` unix socket. Outside systemd (no ``NOTIFY_SOCKET``) every call is a no-op.
A failed send is logged once (until a send succeeds again) and never raises: the daemon must
not die because systemd hiccups.

Not the job of this module: pinging the watchdog. There is no watchdog thread; the caller
pings from its main loop, every :attr:`Notifier.watchdog_interval` seconds, so that the pings
stop when the main loop hangs and systemd restarts the daemon. Nor does it log to journald:
the daemon logs plain lines to stderr and journald collects them.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping
from types import TracebackType

logger = logging.getLogger(__name__)


class Notifier:
    """Sends sd_notify messages to systemd; a no-op when ``NOTIFY_SOCKET`` is unset."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET", "")
        if address.startswith("@"):
            address = "\0" + address[1:]  # Linux abstract namespace
        self._address = address or None
        self._sock: socket.socket | None = None
        if self._address is not None:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._failing = False
        self._watchdog_usec = _watchdog_usec(env)

    @property
    def enabled(self) -> bool:
        """True when running under systemd with a notify socket."""
        return self._sock is not None

    @property
    def watchdog_interval(self) -> float | None:
        """Seconds between watchdog pings (half of WATCHDOG_USEC), or None without a watchdog."""
        return None if self._watchdog_usec is None else self._watchdog_usec / 2e6

    def notify(self, *lines: str) -> bool:
        """Send ``lines`` joined by newlines as one datagram; True when it was sent."""
        if self._sock is None or self._address is None:
            return False
        try:
            self._sock.sendto("\n".join(lines).encode(), self._address)
        except OSError as exc:
            if not self._failing:
                logger.warning("sd_notify to %s failed: %s", self._address.lstrip("\0"), exc)
            self._failing = True
            return False
        self._failing = False
        return True

    def ready(self) -> bool:
        """Tell systemd that start-up is complete (``READY=1``)."""
        return self.notify("READY=1")

    def stopping(self) -> bool:
        """Tell systemd that the daemon is shutting down (``STOPPING=1``)."""
        return self.notify("STOPPING=1")

    def status(self, text: str) -> bool:
        """Set the one-line status that ``systemctl status`` shows (``STATUS=...``)."""
        return self.notify("STATUS=" + " ".join(text.splitlines()))

    def watchdog(self) -> bool:
        """Ping the watchdog (``WATCHDOG=1``); call it from the main loop, never a thread."""
        return self.notify("WATCHDOG=1")

    def close(self) -> None:
        """Close the socket; later calls are no-ops."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> Notifier:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _watchdog_usec(env: Mapping[str, str]) -> int | None:
    """WATCHDOG_USEC when it is meant for this process and positive, else None."""
    pid = env.get("WATCHDOG_PID")
    if pid is not None and pid != str(os.getpid()):
        return None
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    return usec if usec > 0 else None
