"""autopost: schedule social-media posts in one database, publish them from cron.

Under `python -m autopost` this package is imported before autopost/__main__.py runs,
and a Ctrl-C until then would end the process with a traceback from wherever it landed
(Python's own start-up code). From here until __main__ takes over, Ctrl-C ends the
process at once with one line and exit 130: nothing has been done yet.
"""

import sys as _sys


def _run_as_main(argv: list[str]) -> bool:
    """Whether the interpreter was started as `python [options] -m autopost`."""
    args = iter(argv[1:])
    for arg in args:
        if arg == "-m":
            return next(args, None) == "autopost"
        if arg.startswith("-m"):
            return arg[2:] == "autopost"
        if arg in ("-X", "-W"):
            next(args, None)  # the option's value
        elif not arg.startswith("-") or arg.startswith("-c"):
            return False  # a script or -c: not us
    return False


def _interrupted_early(signum, frame):  # noqa: ARG001
    import os

    os.write(2, b"autopost: interrupted\n")
    os._exit(130)


if _sys.argv[:1] == ["-m"] and _run_as_main(getattr(_sys, "orig_argv", [])):
    import _signal

    # Only over Python's own handler: a SIGINT ignored by the parent stays ignored.
    if _signal.getsignal(_signal.SIGINT) is _signal.default_int_handler:
        _signal.signal(_signal.SIGINT, _interrupted_early)
