"""Playing the operator's browser for `autopost accounts login` in a real process."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.parse
from pathlib import Path

import httpx


def login_through_browser(db: Path, name: str, *args: str, env: dict[str, str] | None = None,
                          approve: bool = True) -> tuple[int, str, str, str]:
    """Run `autopost accounts login NAME --no-browser --port 0 ARGS`, open the URL it
    prints (on a fake authorize page that approves at once), follow the redirect to its
    loopback receiver, and return (exit code, stdout, stderr, the authorize URL)."""
    full = {**{k: v for k, v in os.environ.items() if not k.startswith("AUTOPOST_")},
            **(env or {})}
    proc = subprocess.Popen([sys.executable, "-m", "autopost", "--db", str(db), "accounts",
                             "login", name, "--no-browser", "--port", "0", "--timeout", "60",
                             *args], env=full, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    url = ""
    lines = []
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line)
        if line.startswith("http"):
            url = line.strip()
            break
    if not url:
        out, err = proc.communicate(timeout=60)
        return proc.returncode, "".join(lines) + out, err, ""
    if approve:
        page = httpx.get(url, follow_redirects=False, timeout=30)
        assert page.status_code == 302, page.text
        target = page.headers["location"]
        assert urllib.parse.urlsplit(target).hostname == "127.0.0.1"
        httpx.get(target, timeout=30)
    out, err = proc.communicate(timeout=60)
    return proc.returncode, "".join(lines) + out, err, url
