"""Platform options: declared per adapter, given as --option KEY=VALUE or an import's
`options` column, refused at add time when unknown or bad, stored typed per platform."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import pytest

from autopost.config import load_settings
from autopost.errors import UsageError
from autopost.importer import parse_file
from autopost.models import Account
from autopost.platforms.bluesky import BlueskyAdapter
from autopost.platforms.discord import DiscordAdapter
from autopost.platforms.mastodon import MastodonAdapter
from autopost.platforms.options import Option, parse_pairs
from autopost.platforms.telegram import TelegramAdapter
from autopost.services import AddRequest, build_jobs
from autopost.store.sqlite import SqliteStore

pytestmark = pytest.mark.usefixtures("isolated_env")

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def store(tmp_path):
    s = SqliteStore(tmp_path / "o.db")
    s.add_account(Account("masto", "mastodon", base_url="https://m.example",
                          credentials={"access_token": "t"}), now=NOW)
    s.add_account(Account("sky", "bluesky", credentials={"identifier": "a.example",
                                                          "app_password": "p"}), now=NOW)
    yield s
    s.close()


def jobs(store, options, accounts=("masto",)):
    req = AddRequest(text="hello", accounts=list(accounts), when=NOW + timedelta(hours=1),
                     options=options)
    return build_jobs(store, load_settings(None), req, now=NOW)


def test_option_values_are_parsed_to_their_declared_type():
    assert Option("b", "bool", "").parse("yes", "p") is True
    assert Option("b", "bool", "").parse(False, "p") is False
    assert Option("c", "choice", "", choices=("HTML", "Markdown")).parse("html", "p") == "HTML"
    assert Option("l", "list", "").parse("en, de", "p") == ["en", "de"]
    assert Option("i", "int", "").parse("42", "p") == 42
    assert Option("o", "object", "").parse('{"a": 1}', "p") == {"a": 1}
    with pytest.raises(UsageError, match="option 'b' .*true or false"):
        Option("b", "bool", "").parse("maybe", "p")
    with pytest.raises(UsageError, match="not one of"):
        Option("c", "choice", "", choices=("a",)).parse("b", "p")
    with pytest.raises(UsageError, match="at most 2 values"):
        Option("l", "list", "", max_length=2).parse("a,b,c", "p")
    with pytest.raises(UsageError, match="expected KEY=VALUE"):
        parse_pairs(["visibility"])
    with pytest.raises(UsageError, match="given twice"):
        parse_pairs(["a=1", "a=2"])
    assert parse_pairs(["spoiler_text=a=b"]) == {"spoiler_text": "a=b"}


def test_existing_adapters_expose_their_options():
    names = {cls.platform: {o.name for o in cls.options}
             for cls in (MastodonAdapter, BlueskyAdapter, TelegramAdapter, DiscordAdapter)}
    assert {"visibility", "spoiler_text", "language", "sensitive"} <= names["mastodon"]
    assert names["bluesky"] == {"langs"}
    assert {"parse_mode", "disable_notification", "link_preview"} <= names["telegram"]
    assert {"username", "avatar_url", "thread_id", "thread_name"} <= names["discord"]


def test_add_stores_checked_typed_options(store):
    [job] = jobs(store, {"visibility": "Unlisted", "sensitive": "true"})
    assert job.options == {"visibility": "unlisted", "sensitive": True}


def test_unknown_or_bad_option_is_refused_naming_it(store):
    with pytest.raises(UsageError, match="masto: mastodon has no option 'colour'"):
        jobs(store, {"colour": "red"})
    with pytest.raises(UsageError, match="option 'visibility'.*'everyone' is not one of"):
        jobs(store, {"visibility": "everyone"})


def test_platform_prefix_addresses_one_platform_of_several(store):
    made = jobs(store, {"mastodon.visibility": "private", "bluesky.langs": "en,pt-BR"},
                accounts=("masto", "sky"))
    by = {j.account: j.options for j in made}
    assert by == {"masto": {"visibility": "private"}, "sky": {"langs": ["en", "pt-BR"]}}
    # A plain key must suit every platform the post goes to.
    with pytest.raises(UsageError, match="sky: bluesky has no option 'visibility'"):
        jobs(store, {"visibility": "private"}, accounts=("masto", "sky"))
    with pytest.raises(UsageError, match="none of the accounts is on telegram"):
        jobs(store, {"telegram.parse_mode": "HTML"})


def _import(tmp_path, store, name, body):
    path = tmp_path / name
    path.write_text(body, encoding="utf-8")
    return parse_file(path, store, load_settings(None), now=NOW)


def test_import_options_column_in_csv_and_jsonl(tmp_path, store):
    csv_body = ('account,at,text,options\n'
                'masto,2026-06-02T09:00Z,hi,"{""visibility"": ""unlisted""}"\n'
                'sky,2026-06-02T09:00Z,hi,"{""langs"": [""en""]}"\n'
                'masto,2026-06-02T10:00Z,plain,\n')
    parsed = _import(tmp_path, store, "a.csv", csv_body)
    assert [j.options for j in parsed.jobs] == [{"visibility": "unlisted"}, {"langs": ["en"]},
                                                {}]
    line = json.dumps({"account": "masto", "at": "2026-06-02T09:00Z", "text": "hi",
                       "options": {"mastodon": {"spoiler_text": "cw"}}})
    parsed = _import(tmp_path, store, "b.jsonl", line + "\n")
    assert parsed.jobs[0].options == {"spoiler_text": "cw"}


@pytest.mark.parametrize("cell,message", [
    ('"{""bogus"": 1}"', "row 1 (line 2), column options: mastodon has no option 'bogus'"),
    ('"[1]"', "row 1 (line 2), column options: expected a JSON object"),
    ('"{""visibility"": ""loud""}"', "row 1 (line 2), column options: option 'visibility'"),
])
def test_import_refuses_bad_options_and_imports_nothing(tmp_path, store, cell, message):
    body = f"account,at,text,options\nmasto,2026-06-02T09:00Z,hi,{cell}\n"
    with pytest.raises(UsageError, match=re.escape(message)):
        _import(tmp_path, store, "bad.csv", body)


# -- through the command line ------------------------------------------------------------------

def _mastodon_account(cli):
    creds = json.dumps({"access_token": "tok-123456"})
    done = cli("accounts", "add", "m", "--platform", "mastodon", "--base-url",
               "https://m.example", "--credentials", "-", "--offline", input=creds)
    assert done.code == 0, done.stderr


def test_cli_add_option_is_stored_and_shown(cli):
    _mastodon_account(cli)
    done = cli("add", "hello", "-a", "m", "--at", "+1h", "--option", "visibility=unlisted",
               "-o", "spoiler_text=cw: spoilers", "--json")
    assert done.code == 0, done.stderr
    [job] = done.json()
    assert job["options"] == {"visibility": "unlisted", "spoiler_text": "cw: spoilers"}


@pytest.mark.parametrize("args,message", [
    (["--option", "colour=red"], "mastodon has no option 'colour'"),
    (["--option", "visibility=loud"], "option 'visibility' (mastodon): 'loud' is not one of"),
    (["--option", "visibility"], "expected KEY=VALUE"),
    (["--option", "bluesky.langs=en"], "none of the accounts is on bluesky"),
])
def test_cli_bad_option_is_one_line_exit_2_and_changes_nothing(cli, args, message):
    from tests.conftest import file_hash

    _mastodon_account(cli)
    before = file_hash(cli.db)
    done = cli("add", "hello", "-a", "m", "--at", "+1h", *args)
    assert done.code == 2
    assert len(done.err_lines) == 1 and message in done.stderr
    assert "Traceback" not in done.stderr
    assert file_hash(cli.db) == before


def test_cli_platforms_name_lists_the_options(cli):
    done = cli("platforms", "mastodon")
    assert done.code == 0
    assert "visibility" in done.stdout and "public | unlisted | private | direct" in done.stdout
    doc = cli("platforms", "bluesky", "--json").json()
    assert doc["platform"] == "bluesky" and [o["name"] for o in doc["options"]] == ["langs"]
    assert cli("platforms", "outbox").stdout.count("takes no job options") == 1
    bad = cli("platforms", "myspace")
    assert bad.code == 2 and "unknown platform" in bad.stderr


def test_cli_login_is_refused_for_platforms_without_oauth(cli, tmp_path):
    done = cli("accounts", "add", "box", "--platform", "outbox", "--credentials", "-",
               input=json.dumps({"path": str(tmp_path / "o")}))
    assert done.code == 0
    done = cli("accounts", "login", "box", "--paste")
    assert done.code == 2 and "do not log in with OAuth" in done.stderr
    done = cli("accounts", "login", "nobody", "--paste")
    assert done.code == 2 and "unknown account" in done.stderr
