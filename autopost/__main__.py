"""`autopost` and `python -m autopost`.

The commonest call by far is cron's idle `run-due` tick. autopost.tick answers it with
the standard library only; everything else (Typer, rich, httpx) loads only when needed.
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        from autopost.tick import try_idle

        code = try_idle(args)
        if code is None:
            from autopost.cli import run

            code = run(args)
    except KeyboardInterrupt:  # Ctrl-C while Python was still loading the CLI
        sys.stderr.write("autopost: interrupted\n")
        code = 130
    sys.exit(code)


if __name__ == "__main__":
    main()
