"""`ko-radiology COMMAND ARGS`: the installed console script, one name for each part's `python -m` command.

Each command runs that part's own `main` with ARGS (`ko-radiology build --help` is `python -m dataset_builder build
--help`). Parts are imported by name only when their command runs, so the library imports no part and `--help` of
one command never loads another's dependencies.

Every command, here or as `python -m`, runs through `run_cli` and exits with the same statuses:

    0  done
    1  the run failed (a service died, a check did not pass)
    2  usage or input to fix: an unknown command, a bad flag, setting or file (one line on stderr says what)
    3  a partial result was saved (`build`: some model calls failed; the same command again retries only those)
"""

import importlib
import sys
from collections.abc import Callable

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_PARTIAL = 0, 1, 2, 3


def run_cli(command: Callable[[list[str]], int | None], argv: list[str] | None = None) -> int:
    """Run `command(argv)` (default: `sys.argv[1:]`) as a command line: its return value is the exit status (None is
    0); an error that names the input and the fix (STYLE.md rule 7: `ValueError`, `FileNotFoundError`,
    `DataUseError`) is one `error: ...` line on stderr and exit status 2, not a traceback; a server it started that
    died (`ServiceError`) is `error: ...` with the end of the server's log and exit status 1."""
    from ko_radiology.llm import DataUseError  # here, not at the top: `ko-radiology --help` stays instant
    from ko_radiology.processes import ServiceError

    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        return command(argv) or EXIT_OK
    except (ValueError, FileNotFoundError, DataUseError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except ServiceError as error:  # a server the command started died: its message ends with the server's log
        print(f"error: {error}", file=sys.stderr)
        return EXIT_FAILED


COMMANDS = {
    "parse": ("dataset_builder.__main__", "python -m dataset_builder parse"),
    "build": ("dataset_builder.__main__", "python -m dataset_builder build"),
    "batch": ("dataset_builder.__main__", "python -m dataset_builder batch"),
    "export": ("dataset_builder.__main__", "python -m dataset_builder export"),
    "push": ("dataset_builder.__main__", "python -m dataset_builder push"),
    "train": ("training.sft:cli", "python -m training.sft"),
    "export-model": ("training.export", "python -m training.export"),
    "check": ("eval.check", "python -m eval.check"),
    "chat": ("space.chat", "python -m space.chat"),
    "demo": ("space.demo", "python -m space.demo"),
    "deploy": ("space.deploy", "python -m space.deploy"),
    "compare": ("eval.compare", "python -m eval.compare"),
    "judge": ("eval.judge", "python -m eval.judge"),
    "report": ("eval.report", "python -m eval.report"),
    "calibrate": ("eval.calibrate", "python -m eval.calibrate"),
    "models": ("ko_radiology.embedded_models", "python -m ko_radiology.embedded_models"),
    "llama-cpp": ("ko_radiology.llama_cpp", "python -m ko_radiology.llama_cpp"),
}
"""command → (module[:function], the `python -m` form it stands for); the function is `main` unless named."""


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"  {name:<{width}}  {form}" for name, (_, form) in COMMANDS.items()]
    return "usage: ko-radiology COMMAND [ARGS ...]   (COMMAND --help: its options)\n\ncommands:\n" + "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("-h", "--help"):
        print(usage())
        return 0
    if not argv or argv[0] not in COMMANDS:
        problem = f"unknown command {argv[0]!r}" if argv else "no command given"
        print(f"error: {problem}; pass one of the commands below.\n{usage()}", file=sys.stderr)
        return EXIT_USAGE
    command, args = argv[0], argv[1:]
    module, _, function = COMMANDS[command][0].partition(":")
    if module == "dataset_builder.__main__":
        args = [command, *args]  # one main for all the builder's subcommands
    sys.argv = [f"ko-radiology {command}", *args]  # every main reads sys.argv when called without arguments
    return getattr(importlib.import_module(module), function or "main")() or 0


if __name__ == "__main__":
    sys.exit(main())
