"""Ctrl-C and SIGTERM for the recon command-line tools: a flag, never an exception in JAX.

Python's default SIGINT behaviour raises ``KeyboardInterrupt`` in the main thread at whatever
bytecode it is executing. Inside JAX that can be anywhere: between dispatching a computation and
reading its result, in a callback, during orbax's asynchronous save; measured on ``recon.train``
it left processes hung in ``float()`` on a step result or killed them with a segmentation fault.
So here a signal never raises: it is only recorded, and the program decides where to stop.

How a signal is seen: the Python-level handler (:func:`_python_handler`) does nothing but exist.
Installing it makes CPython's C-level handler write the signal number to a wakeup socket
(:func:`signal.set_wakeup_fd`) the moment the signal arrives, even while the main thread is
blocked in C++ (XLA compiling, waiting for a step). A daemon thread reads that socket and acts:

* **clean** (the default, :meth:`Interrupts.clean`): nothing would be lost by stopping now
  (start-up, dataset build, restore, compile, evaluation, a finished run); the first signal
  prints one line and ends the process at once with ``os._exit(128 + signum)``.
* **dirty** (:meth:`Interrupts.dirty`): the program holds work that is not on disk yet (a trained
  step). The first signal sets :attr:`Interrupts.signum` and prints that the program will stop
  after the current step; the program polls :meth:`Interrupts.check` between steps, saves, and
  exits with :attr:`Interrupts.exit_code`. A second signal ends the process at once.

``os._exit`` skips interpreter teardown (so no Python code runs in a half-finished JAX state);
what it can leave behind is what a ``kill -9`` leaves, which the tools tolerate anyway: orbax
writes checkpoints to a temporary directory and renames it, the dataset builder writes to an
``.incomplete`` directory, and the small text files are written atomically or read tolerantly.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Iterator
from typing import NoReturn

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """Raised by :meth:`Interrupts.check` in the main thread once a signal was received.

    A ``KeyboardInterrupt`` so that code handling Ctrl-C the usual way handles it too.
    """

    def __init__(self, signum: int):
        super().__init__(f"interrupted by {signal.Signals(signum).name}")
        self.signum = int(signum)

    @property
    def exit_code(self) -> int:
        """The shell's convention: 128 + the signal number (130 SIGINT, 143 SIGTERM)."""
        return 128 + self.signum


def _python_handler(signum, frame) -> None:
    """Installed for SIGINT / SIGTERM so that the C handler writes to the wakeup socket; the
    work is done by the watcher thread, so this never raises into the main thread."""


def _write_stderr(text: str) -> None:
    # os.write, not print: no Python-level lock on sys.stderr that the main thread might hold
    with contextlib.suppress(OSError):
        os.write(2, text.encode())


class Interrupts:
    """SIGINT / SIGTERM handling of one program (see the module docstring).

    Args:
      prog: the program's name, the prefix of its messages (``'recon.train'``).
    """

    def __init__(self, prog: str):
        self.prog = prog
        self.signum: int | None = None
        self._dirty = False
        self._lock = threading.Lock()
        self._reader: socket.socket | None = None
        self._writer: socket.socket | None = None
        self._previous: dict[int, object] = {}
        self._previous_fd = -1

    # ------------------------------------------------------------------ installation

    def install(self) -> Interrupts:
        """Installs the handlers and starts the watcher thread (main thread only)."""
        if self._reader is not None:
            return self
        reader, writer = socket.socketpair()
        reader.setblocking(True)
        writer.setblocking(False)  # set_wakeup_fd needs a non-blocking descriptor
        self._reader, self._writer = reader, writer
        self._previous_fd = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
        for s in SIGNALS:
            self._previous[s] = signal.signal(s, _python_handler)
        threading.Thread(target=self._watch, name=f"{self.prog}-signals", daemon=True).start()
        return self

    def uninstall(self) -> None:
        """Restores the previous handlers (for tests and library use); the thread ends."""
        if self._reader is None:
            return
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        signal.set_wakeup_fd(self._previous_fd)
        self._previous.clear()
        writer, self._writer, self._reader = self._writer, None, None
        writer.close()  # the watcher's recv returns b"" and it stops

    def __enter__(self) -> Interrupts:
        return self.install()

    def __exit__(self, *exc) -> None:
        self.uninstall()

    # ------------------------------------------------------------------ state

    @contextlib.contextmanager
    def dirty(self) -> Iterator[Interrupts]:
        """Within this block the first signal only sets the flag (work would be lost)."""
        self.set_dirty(True)
        try:
            yield self
        finally:
            self.set_dirty(False)

    def set_dirty(self, dirty: bool) -> None:
        """Marks whether stopping at once would lose work (see the module docstring)."""
        with self._lock:
            self._dirty = bool(dirty)

    @property
    def requested(self) -> bool:
        """Whether a signal was received (the program should stop)."""
        return self.signum is not None

    @property
    def exit_code(self) -> int:
        """128 + the signal received (0 if none)."""
        return 0 if self.signum is None else 128 + self.signum

    def check(self) -> None:
        """Raises :class:`Interrupted` if a signal was received (call between steps)."""
        if self.signum is not None:
            raise Interrupted(self.signum)

    # ------------------------------------------------------------------ the watcher

    def _watch(self) -> None:
        reader = self._reader
        while True:
            try:
                data = reader.recv(64)
            except OSError:
                return
            if not data:  # uninstall() closed the writer
                return
            for signum in data:
                if signum in SIGNALS:
                    self._on_signal(signum)

    def _on_signal(self, signum: int) -> None:
        name = signal.Signals(signum).name
        with self._lock:
            if self.signum is None and self._dirty:
                self.signum = signum
                _write_stderr(
                    f"\n{self.prog}: {name} received; stopping after the current step "
                    "(again to quit at once without saving)\n"
                )
                return
            if self.signum is None:
                message = f"\n{self.prog}: {name} received; nothing to save, exiting\n"
            else:
                message = f"\n{self.prog}: second {name}; exiting at once without saving\n"
            _write_stderr(message)
            # Holding the lock: the main thread cannot turn dirty between the check and the exit.
            os._exit(128 + signum)


def install(prog: str) -> Interrupts:
    """Creates and installs the :class:`Interrupts` of program ``prog``."""
    return Interrupts(prog).install()


def exit_process(code: object) -> NoReturn:
    """Ends the process now with ``code`` as :func:`sys.exit` reads it (None: 0, an int, or a
    message printed to stderr with status 1), without interpreter teardown.

    Teardown puts the default SIGINT / SIGTERM dispositions back before it ends, and JAX's part
    of it can take seconds: a signal then killed a tool that had finished its work (status
    -15, no message). Ending here, the installed handlers stay until the process is gone.
    Callers have closed what they opened (checkpoint managers, progress bars); this flushes the
    standard streams and the logging handlers.
    """
    if code is None:
        status = 0
    elif isinstance(code, int):
        status = code
    else:
        _write_stderr(f"{code}\n")
        status = 1
    with contextlib.suppress(Exception):
        logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(status)
