# ruff: noqa: F811  (fixtures imported from test_cli are parameters here)
"""Every `--json` output matches docs/json.md, field by field and type by type."""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

import pytest

from tests.test_cli import add_job, demo, future  # noqa: F401  (demo is a fixture)

DOC = Path(__file__).resolve().parent.parent / "docs" / "json.md"


def parse_doc(text: str) -> tuple[dict[str, str], dict[str, dict[str, str]]]:
    """(command -> shape expression, shape name -> {field: type})."""
    commands: dict[str, str] = {}
    shapes: dict[str, dict[str, str]] = {}
    section = current = None
    for line in text.splitlines():
        if line.startswith("## "):
            section, current = line[3:].strip(), None
        elif line.startswith("### "):
            current = line[4:].strip()
            shapes[current] = {}
        elif (m := re.match(r"All fields of (\w+), and:", line)) and current:
            shapes[current].update(shapes[m.group(1)])
        elif line.startswith("| ") and not line.startswith("| field") and \
                not line.startswith("| command"):
            cells = [c.strip().replace("\\|", "|") for c in
                     re.split(r"(?<!\\)\|", line.strip().strip("|"))]
            if section == "Commands":
                commands[cells[0].strip("`")] = cells[1].strip("`")
            elif current:
                shapes[current][cells[0]] = cells[1]
    return commands, shapes


COMMANDS, SHAPES = parse_doc(DOC.read_text())
BASE = {"string": str, "integer": int, "number": (int, float), "boolean": bool,
        "null": type(None)}


def check(value, expr: str, where: str) -> None:
    """Fails unless `value` has the documented type `expr`."""
    options = _split(expr)
    errors = []
    for option in options:
        try:
            _check_one(value, option, where)
            return
        except AssertionError as exc:
            errors.append(str(exc))
    raise AssertionError(f"{where}: {value!r} is not {expr} ({'; '.join(errors)})")


def _split(expr: str) -> list[str]:
    parts, depth, cur = [], 0, ""
    for ch in expr:
        if ch in "[<":
            depth += 1
        elif ch in "]>":
            depth -= 1
        if ch == "|" and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    return [*parts, cur]


def _check_one(value, expr: str, where: str) -> None:
    if expr in BASE:
        ok = isinstance(value, BASE[expr]) and not (expr in ("integer", "number")
                                                    and isinstance(value, bool))
        assert ok, f"{where}: {value!r} is not {expr}"
    elif expr.startswith("[") and expr.endswith("]"):
        assert isinstance(value, list), f"{where}: not an array"
        for i, item in enumerate(value):
            check(item, expr[1:-1], f"{where}[{i}]")
    elif expr.startswith("map<") and expr.endswith(">"):
        assert isinstance(value, dict), f"{where}: not an object"
        for key, item in value.items():
            check(item, expr[4:-1], f"{where}.{key}")
    else:
        assert expr in SHAPES, f"docs/json.md has no shape {expr}"
        assert isinstance(value, dict), f"{where}: not an object"
        fields = SHAPES[expr]
        assert set(value) == set(fields), \
            f"{where} ({expr}): undocumented {sorted(set(value) - set(fields))}, " \
            f"missing {sorted(set(fields) - set(value))}"
        for name, typ in fields.items():
            check(value[name], typ, f"{where}.{name}")


def test_the_doc_parses():
    assert len(COMMANDS) >= 14 and {"Job", "Attempt", "Problem", "Status"} <= set(SHAPES)
    with pytest.raises(AssertionError):
        check({"id": 1}, "Job", "x")
    with pytest.raises(AssertionError):
        check([1], "[string]", "x")
    check(None, "string|null", "x")


@pytest.fixture
def populated(cli, tmp_path, demo):
    """Jobs in several states, attempts, runs and a quota in use."""
    posted = add_job(cli, "posted", "-a", demo, "--at", "now")
    assert cli("run-due").code == 0
    later = add_job(cli, "later", "-a", demo, "--at", future(2), "--media",
                    str(_png(tmp_path)), "--alt", "a dot")
    cancelled = add_job(cli, "cancelled", "-a", demo, "--at", future(3))
    cli("cancel", cancelled["id"])
    with sqlite3.connect(cli.db) as c:  # a blocked account and an old finished job
        c.execute("UPDATE accounts SET blocked_until = '2099-01-01T00:00:00.000000Z'")
        c.execute("UPDATE jobs SET updated_at = '2020-01-01T00:00:00.000000Z' WHERE id = ?",
                  (cancelled["id"],))
    return {"posted": posted["id"], "later": later["id"]}


def _png(tmp_path: Path) -> Path:
    from tests.images import png

    path = tmp_path / "dot.png"
    path.write_bytes(png(2, 2))
    return path


def test_every_command_matches_its_documented_shape(cli, tmp_path, populated):
    csv = tmp_path / "posts.csv"
    csv.write_text(f"account,at,text,key\ndemo,{future(5)},from a file,k1\n")
    runs = {
        "autopost add ... --json": cli("add", "x", "-a", "demo", "--at", future(4), "--json"),
        "autopost import FILE --json": cli("import", str(csv), "--json"),
        "autopost list --json": cli("list", "--json"),
        "autopost show JOB --json": cli("show", populated["posted"], "--json"),
        "autopost accounts list --json": cli("accounts", "list", "--json"),
        "autopost platforms --json": cli("platforms", "--json"),
        "autopost platforms NAME --json": cli("platforms", "mastodon", "--json"),
        "autopost quota --json": cli("quota", "--json"),
        "autopost calendar --json": cli("calendar", "--json"),
        "autopost prune --json": cli("prune", "--dry-run", "--json"),
        "autopost run-due --dry-run --json": cli("run-due", "--dry-run", "--json"),
        "autopost run-due --json": cli("run-due", "--json"),
        "autopost status --json": cli("status", "--json"),
        "autopost config --json": cli("config", "--json"),
    }
    assert set(runs) == set(COMMANDS), "a documented command is not checked (or the reverse)"
    for command, out in runs.items():
        assert out.code in (0, 1), (command, out.stderr)
        data = json.loads(out.stdout)
        check(data, COMMANDS[command], command)
    shown = json.loads(runs["autopost show JOB --json"].stdout)
    assert shown["attempts"] == 1 and len(shown["attempt_log"]) == 1
    status = json.loads(runs["autopost status --json"].stdout)
    assert status["blocked"] and status["last_run"] is not None
    listed = json.loads(runs["autopost list --json"].stdout)
    assert any(j["media"] for j in listed) and any(j["posted_at"] for j in listed)


def test_run_due_problems_are_objects(cli, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    creds = json.dumps({"path": str(blocker / "outbox")})  # under a file: ENOTDIR, invalid
    assert cli("accounts", "add", "broken", "--platform", "outbox", "--credentials", "-",
               input=creds).code == 0
    job = add_job(cli, "will fail", "-a", "broken", "--at", "now")
    out = cli("run-due", "--json")
    assert out.code == 1
    data = json.loads(out.stdout)
    check(data, COMMANDS["autopost run-due --json"], "run-due")
    (problem,) = data["problems"]
    assert (problem["job"], problem["account"], problem["kind"]) == (job["id"], "broken",
                                                                     "failed")
    assert "a-file" in problem["message"]


@pytest.mark.parametrize("dry_run", [False, True])
def test_a_disabled_run_due_keeps_json_on_stdout(cli, demo, dry_run):
    add_job(cli, "due", "-a", demo, "--at", "now")
    args = ["run-due", "--json"] + (["--dry-run"] if dry_run else [])
    out = cli(*args, env={"AUTOPOST_ENABLED": "false"})
    assert out.code == 0 and "run-due is disabled" in out.stderr
    data = out.json()
    if dry_run:
        assert data == []
        check(data, COMMANDS["autopost run-due --dry-run --json"], "run-due --dry-run")
    else:
        check(data, COMMANDS["autopost run-due --json"], "run-due")
        assert data["run_id"] is None and data["posted"] == 0 and data["problems"] == []
    assert [j["status"] for j in cli("list", "--json").json()] == ["pending"]
