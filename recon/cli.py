"""The command-line convention of the recon tools: absl flags, as in Flax's examples.

Each tool (``recon.train``, ``recon.eval``, ``recon.reconstruct``) defines its flags in
``define_flags(flag_values)`` and does its work in ``run(options)``. ``python -m recon.<tool>``
goes through :func:`run_main` (absl's ``app.run``: ``--help``, ``--flagfile``, and a one-line
error for an unknown flag or a bad value); Python callers (tests, benchmarks) pass the same
arguments to the tool's ``main(argv)``, which parses them with :func:`parse_flags`.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Any

from absl import app, flags, logging

from recon import interrupt

DefineFlags = Callable[[flags.FlagValues], None]


def parse_flags(argv: Sequence[str], define_flags: DefineFlags) -> flags.FlagValues:
    """A tool's arguments ``argv`` (without the program name) parsed by the flags that
    ``define_flags`` defines, in a fresh :class:`absl.flags.FlagValues` (absl's global ``FLAGS``
    would keep the values of an earlier call).

    Raises:
      absl.flags.Error: an unknown flag, a bad value, a missing flag or a positional argument.
    """
    options = flags.FlagValues()
    define_flags(options)
    rest = options(["", *argv])
    if len(rest) > 1:
        raise flags.Error(f"unexpected arguments: {rest[1:]}")
    return options


def run_main(prog: str, define_flags: DefineFlags, run: Callable[[flags.FlagValues], Any]) -> None:
    """The body of ``python -m <prog>``: parses the command line into absl's ``FLAGS`` and calls
    ``run(FLAGS)``.

    Ends the process with a one-line error and exit code 1 for a missing file (dataset, work
    directory, checkpoint) or a bad value, and 128 + the signal number for an interrupt
    (:mod:`recon.interrupt` has saved what there was to save and said so); every exit goes
    through :func:`recon.interrupt.exit_process`, so the signal handlers stay until the end.
    """
    define_flags(flags.FLAGS)

    def main(argv: list[str]) -> None:
        if len(argv) > 1:
            raise app.UsageError(f"unexpected arguments: {argv[1:]}")
        logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO
        try:
            run(flags.FLAGS)
        except interrupt.Interrupted as e:
            sys.exit(e.exit_code)
        except KeyboardInterrupt:  # not from a signal (those go through recon.interrupt)
            sys.exit(130)
        except (FileNotFoundError, ValueError) as e:  # the message names the file or the value
            sys.exit(f"{prog}: error: {e}")

    try:
        app.run(main)
    except SystemExit as e:  # app.run ends with sys.exit, also after a normal return
        interrupt.exit_process(e.code)


def define_checkpoint_flags(flag_values: flags.FlagValues) -> None:
    """``--workdir`` or ``--checkpoint`` (exactly one): the trained model a tool loads."""
    flags.DEFINE_string(
        "workdir",
        None,
        "a recon.train work directory (its latest checkpoint)",
        flag_values=flag_values,
    )
    flags.DEFINE_string(
        "checkpoint",
        None,
        "one checkpoint: <workdir>/checkpoints/<step>",
        flag_values=flag_values,
    )
    flags.mark_flags_as_mutual_exclusive(
        ["workdir", "checkpoint"], required=True, flag_values=flag_values
    )
