"""Facebook, Instagram and Threads through the real CLI (`python -m autopost`) against
the fake Graph API and a local web server playing the media host."""

from __future__ import annotations

import json

import pytest

from tests import metakit
from tests.images import jpeg

fake = metakit.fake
media_host = metakit.media_host

PAGE_TOKEN = "page-token-cli-0001"


def _config(tmp_path, media=None, extra: str = "") -> dict[str, str]:
    path = tmp_path / "config.toml"
    text = "[meta]\nthreads_publish_wait = 0\n" + extra
    if media is not None:
        folder, url = media
        text += f'[media]\npublic_dir = "{folder}"\npublic_base_url = "{url}"\n'
    path.write_text(text)
    return {"AUTOPOST_CONFIG": str(path)}


def _jobs(proc, env) -> list[dict]:
    out = proc("list", "--json", env=env)
    assert out.code == 0, out.stderr
    return out.json()


def test_facebook_text_and_photo_posts_end_to_end(proc, fake, tmp_path):
    env = _config(tmp_path)
    page = fake.add_page(PAGE_TOKEN, "Bakery")
    out = proc("accounts", "add", "bakery", "--platform", "facebook", "--base-url",
               fake.base_url, "--credentials", "-",
               input=json.dumps({"page_id": page, "access_token": PAGE_TOKEN}), env=env)
    assert out.code == 0, out.stderr
    assert PAGE_TOKEN not in out.stdout + out.stderr
    photo = tmp_path / "loaf.jpg"
    photo.write_bytes(jpeg(20, 20))
    for args in (["Open at 7"], ["A loaf", "--media", str(photo), "--alt", "round loaf"]):
        out = proc("add", *args, "--account", "bakery", "--at", "now", env=env)
        assert out.code == 0, out.stderr
    run = proc("run-due", env=env)
    assert run.code == 0, run.stderr
    assert run.stdout == "" and run.stderr == ""
    jobs = _jobs(proc, env)
    assert {j["status"] for j in jobs} == {"posted"}
    live = fake.published(page)
    assert sorted(p["message"] for p in live) == ["A loaf", "Open at 7"]
    assert {j["platform_post_id"] for j in jobs} == {p["id"] for p in live}
    check = proc("accounts", "check", "bakery", env=env)
    assert check.code == 0 and "Page Bakery" in check.stdout


def test_platforms_lists_the_meta_platforms_as_built(proc, tmp_path):
    out = proc("platforms", "--json", env=_config(tmp_path))
    assert out.code == 0, out.stderr
    rows = {r["platform"]: r for r in out.json()}
    for name in ("facebook", "instagram", "threads"):
        assert rows[name]["supported"] is True
    table = proc("platforms", env=_config(tmp_path))
    for name in ("facebook", "instagram", "threads"):
        line = next(li for li in table.stdout.splitlines() if name in li)
        assert "not built" not in line


@pytest.mark.parametrize("value", ["v26", "26.0", "latest"])
def test_a_bad_graph_version_is_refused(proc, tmp_path, value):
    env = _config(tmp_path, extra="")
    (tmp_path / "config.toml").write_text(f'[meta]\ngraph_version = "{value}"\n')
    out = proc("platforms", env=env)
    assert out.code == 2 and len(out.err_lines) == 1 and "graph_version" in out.stderr


IG_TOKEN = "ig-token-cli-0002"
TH_TOKEN = "threads-token-cli-0003"


def _add_meta_accounts(proc, fake, env):
    page = fake.add_page(IG_TOKEN, "Shop", ig_username="shop")
    ig_user = fake.pages[page]["ig"]
    th_user = fake.add_threads_user(TH_TOKEN, "poster")
    for name, platform, creds in (
            ("shop", "instagram", {"ig_user_id": ig_user, "access_token": IG_TOKEN}),
            ("poster", "threads", {"threads_user_id": th_user, "access_token": TH_TOKEN})):
        out = proc("accounts", "add", name, "--platform", platform, "--base-url",
                   fake.base_url, "--credentials", "-", input=json.dumps(creds), env=env)
        assert out.code == 0, out.stderr
    return ig_user, th_user


def test_local_media_without_a_media_host_is_refused_at_add(proc, fake, tmp_path):
    from tests.conftest import file_hash

    env = _config(tmp_path)
    _add_meta_accounts(proc, fake, env)
    photo = tmp_path / "p.jpg"
    photo.write_bytes(jpeg(10, 10))
    before = file_hash(proc.db)
    for account in ("shop", "poster"):
        out = proc("add", "pic", "--account", account, "--at", "now", "--media", str(photo),
                   env=env)
        assert out.code == 2 and len(out.err_lines) == 1, out.stderr
        assert "public_dir" in out.stderr and "https://" in out.stderr
    assert file_hash(proc.db) == before
    # an https URL needs no media host; a text-only Threads post needs no media at all
    out = proc("add", "remote", "--account", "shop", "--at", "now", "--media",
               "https://cdn.example.org/a.jpg", env=env)
    assert out.code == 0, out.stderr
    # a platform that uploads files refuses a URL, saying so
    fb = proc("accounts", "add", "fb", "--platform", "facebook", "--credentials", "-",
              input=json.dumps({"page_id": "1", "access_token": "fb-token-for-urls-01"}),
              env=env)
    assert fb.code == 0, fb.stderr
    out = proc("add", "x", "--account", "fb", "--at", "now", "--media", "https://e.org/a.mp4",
               env=env)
    assert out.code == 2 and len(out.err_lines) == 1


def test_instagram_and_threads_with_local_media_end_to_end(proc, fake, media_host, tmp_path):
    env = _config(tmp_path, media_host)
    ig_user, th_user = _add_meta_accounts(proc, fake, env)
    photo = tmp_path / "p.jpg"
    photo.write_bytes(jpeg(12, 12))
    out = proc("add", "Both at once", "--account", "shop", "--account", "poster", "--at",
               "now", "--media", str(photo), "--alt", "a tile", env=env)
    assert out.code == 0, out.stderr
    out = proc("add", "Words only", "--account", "poster", "--at", "now", env=env)
    assert out.code == 0, out.stderr
    run = proc("run-due", env=env)
    assert run.code == 0 and run.stdout == "" and run.stderr == "", run.stderr
    jobs = _jobs(proc, env)
    assert {j["status"] for j in jobs} == {"posted"}
    assert [m["message"] for m in fake.published(ig_user)] == ["Both at once"]
    assert sorted(m["message"] for m in fake.published(th_user)) == ["Both at once",
                                                                    "Words only"]
    assert {j["platform_post_id"] for j in jobs} == {m["id"] for m in fake.published()}
    folder, _ = media_host
    assert [p.name for p in folder.iterdir() if not p.name.startswith(".")] == []
    for name, shown in (("shop", "@shop"), ("poster", "@poster")):
        check = proc("accounts", "check", name, env=env)
        assert check.code == 0 and shown in check.stdout, check.stderr
    assert IG_TOKEN not in run.stderr + check.stdout


def test_a_threads_thread_end_to_end_and_instagram_refuses_one(proc, fake, tmp_path):
    env = _config(tmp_path)
    _, th_user = _add_meta_accounts(proc, fake, env)
    out = proc("add", "--thread", "a", "b", "--account", "shop", "--at", "now", env=env)
    assert out.code == 2 and "instagram has no replies" in out.stderr, out.stderr
    out = proc("add", "--thread", "1/ first", "2/ second", "--account", "poster", "--at",
               "now", env=env)
    assert out.code == 0, out.stderr
    run = proc("run-due", env=env)
    assert run.code == 0, run.stderr
    assert {j["status"] for j in _jobs(proc, env)} == {"posted"}
    first, second = sorted(fake.published(th_user), key=lambda m: m["message"])
    assert first["reply_to"] is None and second["reply_to"] == first["id"]


def test_status_says_when_the_graph_version_has_stopped_working(proc, fake, tmp_path):
    env = _config(tmp_path)
    (tmp_path / "config.toml").write_text('[meta]\ngraph_version = "v24.0"\n')
    _add_meta_accounts(proc, fake, env)
    out = proc("status", env=env)
    assert out.code == 1 and "v24.0 stopped working on 2026-11-10" in out.stdout


def test_the_example_config_loads():
    from pathlib import Path

    from autopost.config import load_settings

    example = Path(__file__).parent.parent / "examples" / "config.toml"
    loaded = load_settings(str(example), env={})
    assert loaded.meta.graph_version == "v26.0" and loaded.meta.threads_publish_wait == 30
    assert loaded.media.configured and loaded.media.public_base_url.endswith("/")


def _copies(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))


def test_media_copies_of_cancelled_and_finished_jobs_are_removed(proc, fake, media_host,
                                                                 tmp_path):
    """The adapter drops a job's copies when it posts or is refused; a job that ends
    otherwise (cancelled while it waits for a retry, failed once its attempts are spent)
    has its copies removed by `cancel` and by `run-due`, the shared ones only with the
    last job that uses them."""
    env = _config(tmp_path, media_host)
    folder, _ = media_host
    _add_meta_accounts(proc, fake, env)
    photos = []
    for i in range(2):
        photos.append(tmp_path / f"p{i}.jpg")
        photos[-1].write_bytes(jpeg(12 + i, 12))
    ids = {}
    for name, photo, attempts in (("cancelled", photos[0], "3"), ("spent", photos[1], "1"),
                                  ("shares", photos[1], "3")):
        out = proc("add", name, "--account", "shop", "--at", "now", "--media", str(photo),
                   "--max-attempts", attempts, "--json", env=env)
        assert out.code == 0, out.stderr
        ids[name] = out.json()[0]["id"]
    # Every container create fails for now (a server error): each job waits for a retry,
    # or is failed when it has no attempt left, with its copy in place.
    fault = fake.inject("error", path="/media", method="POST", code=1, count=3)
    run = proc("run-due", env=env)
    assert fault.count == 0, run.stderr
    status = {j["id"]: j["status"] for j in _jobs(proc, env)}
    assert status == {ids["cancelled"]: "pending", ids["spent"]: "failed",
                      ids["shares"]: "pending"}, run.stderr
    # The failed job's claim went at the end of the run; its copy stays for the other.
    assert len(_copies(folder)) == 2
    claims = folder / ".autopost-claims"
    held = sorted(p.name for d in claims.iterdir() for p in d.iterdir())
    assert held == sorted([ids["cancelled"], ids["shares"]])
    out = proc("cancel", ids["cancelled"], env=env)
    assert out.code == 0, out.stderr
    assert len(_copies(folder)) == 1  # the cancelled job's, which nobody else used
    out = proc("cancel", ids["shares"], env=env)
    assert out.code == 0, out.stderr
    assert _copies(folder) == [] and list(claims.iterdir()) == []
    assert fake.published() == []
