"""`autopost` and `python -m autopost`.

The commonest call by far is cron's idle `run-due` tick. autopost.tick answers it with
the standard library only; everything else (Typer, rich, httpx) loads only when needed.

When the command is done, the process ends without tearing the interpreter down (see
`leave`): freeing every module and object one by one is work nobody sees, 50-150 ms
after a run-due that loaded httpx and the platforms, on a small machine.

Ctrl-C at any moment ends the process with one line and exit 130. Until the CLI is
loaded (see autopost/__init__.py for `python -m`) it ends the process at once; from then
on it is a KeyboardInterrupt the commands wind down from. Once the command has decided
the exit status, a late Ctrl-C is ignored rather than turned into a traceback.
"""

from __future__ import annotations

import sys
from typing import NoReturn

# Optional imports of the libraries autopost uses, for features it never uses. `import
# httpx` imports httpx's own command-line tool, and with it rich, pygments and click,
# whenever they are installed (rich and click are: autopost's tables and Typer); httpcore
# imports trio, if installed, to support async code running under it (autopost makes
# only synchronous calls). Each library has a fallback for the module being absent
# (httpx a stub `main`, httpcore no trio support), which is what a None entry in
# sys.modules gives: `import` raises ImportError at once. 50-150 ms of a run's start.
UNUSED_IMPORTS = ("httpx._main", "trio")


def skip_unused_imports() -> None:
    """Make the optional imports above fail fast, in the autopost process only (never
    when autopost is imported as a library, e.g. by tests)."""
    for name in UNUSED_IMPORTS:
        sys.modules.setdefault(name, None)  # an already imported module stays


def main(argv: list[str] | None = None) -> None:
    import _signal

    try:
        args = sys.argv[1:] if argv is None else list(argv)
        skip_unused_imports()
        from autopost import _interrupted_early
        from autopost.tick import try_idle

        if _signal.getsignal(_signal.SIGINT) is _interrupted_early:
            _signal.signal(_signal.SIGINT, _signal.default_int_handler)  # work starts
        code = try_idle(args)
        if code is None:
            from autopost.cli import run

            code = run(args)
        if argv is None:
            _signal.signal(_signal.SIGINT, _signal.SIG_IGN)  # the status is decided
    except BaseException as exc:
        from autopost.errors import interrupted_by

        if not interrupted_by(exc):
            raise
        sys.stderr.write("autopost: interrupted\n")
        code = 130
    # A KeyboardInterrupt that ended inside a string exec or eval (as a dataclass or a
    # namedtuple is made, during an import) leaves a mark that makes `python -m` end the
    # process by SIGINT after all, whatever the exit status, when it ends by sys.exit;
    # the next string exec clears it.
    exec("None")
    leave(code)


def leave(code: int | None) -> NoReturn:
    """Exit with `code` once the command has finished, skipping the interpreter's
    teardown: flush stdout and stderr, run the atexit handlers, then os._exit.

    Everything that matters is done before this: the command has closed its store (its
    transactions committed), and the run's worker threads are daemons that Python would
    not wait for either. Whenever the fast way could lose something, this is a plain
    sys.exit: a thread that is not a daemon still running (Python would wait for it), an
    exit code that is not a number, output that cannot be flushed (a closed pipe, which
    Python's own exit reports), or a profiler or tracer watching (`python -m cProfile`
    writes its figures after the program's code returns)."""
    import threading

    main_thread = threading.main_thread()
    waiting = any(t is not main_thread and not t.daemon and t.is_alive()
                  for t in threading.enumerate())
    watched = sys.getprofile() is not None or sys.gettrace() is not None
    if waiting or watched or not (code is None or type(code) is int) \
            or threading.current_thread() is not main_thread:
        sys.exit(code)
    if not _flushed():
        sys.exit(code)
    import atexit
    import os

    atexit._run_exitfuncs()
    if not _flushed():
        sys.exit(code)
    os._exit(code or 0)


def _flushed() -> bool:
    try:
        for stream in (sys.stdout, sys.stderr):
            if stream is not None:
                stream.flush()
    except (OSError, ValueError):
        return False
    return True


if __name__ == "__main__":
    main()
