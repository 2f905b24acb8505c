"""`autopost accounts login` for Meta: what follows the code exchange that autopost.oauth
does for every platform (the adapters' after_login).

- Facebook and Instagram (Facebook Login): the short-lived user token is exchanged for a
  long-lived one (fb_exchange_token), the Pages it manages are listed (/me/accounts, with
  each Page's token and its linked Instagram professional account), and one is chosen:
  `--page ID|NAME` / `--ig-user ID|USERNAME`, the only one there is, or a numbered
  prompt. What is stored is the Page's token, which does not expire, and the Page id
  (Facebook) or the Instagram account id (Instagram); the user token is not kept.
- Threads (its own login): the short-lived token is exchanged for a 60-day one
  (th_exchange_token); the user id comes from /me. Runs refresh it in its last week.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from autopost.errors import UsageError
from autopost.models import ErrorKind
from autopost.oauth import OAuthPlatform
from autopost.platforms.base import PlatformError, Refreshed
from autopost.platforms.meta.graph import Graph

FACEBOOK_SCOPES = ("pages_manage_posts", "pages_read_engagement", "pages_show_list")
INSTAGRAM_SCOPES = ("instagram_basic", "instagram_content_publish", "pages_read_engagement",
                    "pages_show_list")
THREADS_SCOPES = ("threads_basic", "threads_content_publish")


def facebook_login(scopes: tuple[str, ...]) -> OAuthPlatform:
    return OAuthPlatform(
        authorize_url="https://www.facebook.com/dialog/oauth",
        token_url="https://graph.facebook.com/oauth/access_token",
        scopes=scopes, scope_separator=",", client="confidential", token_auth="body",
        issues_refresh_token=False)


THREADS_LOGIN = OAuthPlatform(
    authorize_url="https://threads.net/oauth/authorize",
    token_url="https://graph.threads.net/oauth/access_token",
    scopes=THREADS_SCOPES, scope_separator=",", client="confidential", token_auth="body",
    pkce=False, issues_refresh_token=False)


def _graph(adapter: Any, token: str, version: str) -> Graph:
    secret = adapter.credentials.get("client_secret")
    return Graph(adapter.client, origin=adapter.base_url, version=version, token=token,
                 platform=adapter.platform, account=adapter.account.name, clock=adapter.clock,
                 secrets=[str(secret)] if secret else [])


def check_options(platform: str, options: dict[str, str], allowed: tuple[str, ...]) -> None:
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        flags = ", ".join("--" + k.replace("_", "-") for k in unknown)
        raise UsageError(f"{platform} login takes no {flags}")


def page_login(adapter: Any, options: dict[str, str], *, version: str,
               instagram: bool) -> Refreshed:
    """Long-lived user token -> the chosen Page (and its Instagram account) -> its token."""
    platform = "instagram" if instagram else "facebook"
    creds = adapter.credentials
    short = str(creds["access_token"])
    graph = _graph(adapter, short, version)
    answer = graph.get("oauth/access_token", {
        "grant_type": "fb_exchange_token", "client_id": creds.get("client_id"),
        "client_secret": creds.get("client_secret"), "fb_exchange_token": short},
        token=False)
    user_token = answer.get("access_token")
    if not isinstance(user_token, str) or not user_token:
        raise PlatformError(ErrorKind.SERVER, f"{platform}: the long-lived token exchange "
                            "answered no token")
    graph = _graph(adapter, user_token, version)
    graph.secrets.append(user_token)
    body = graph.get("me/accounts", {
        "fields": "id,name,access_token,instagram_business_account{id,username}",
        "limit": 100})
    pages = [p for p in body.get("data") or [] if isinstance(p, dict) and p.get("id")]
    if instagram:
        pages = [p for p in pages if isinstance(p.get("instagram_business_account"), dict)]
        chosen = _choose(
            pages, options.get("ig_user") or options.get("page"),
            what="Instagram professional account", flag="--ig-user",
            keys=lambda p: (p["instagram_business_account"].get("id"),
                            p["instagram_business_account"].get("username"),
                            p.get("id"), p.get("name")),
            show=lambda p: f"@{p['instagram_business_account'].get('username')} "
                           f"(id {p['instagram_business_account'].get('id')}, Page "
                           f"{p.get('name')})")
        ig = chosen["instagram_business_account"]
        creds = {"ig_user_id": str(ig["id"]), "username": ig.get("username"),
                 "page_id": str(chosen["id"]), "access_token": chosen.get("access_token")}
    else:
        chosen = _choose(pages, options.get("page"), what="Page", flag="--page",
                         keys=lambda p: (p.get("id"), p.get("name")),
                         show=lambda p: f"{p.get('name')} (id {p.get('id')})")
        creds = {"page_id": str(chosen["id"]), "page_name": chosen.get("name"),
                 "access_token": chosen.get("access_token")}
    if not creds["access_token"]:
        raise PlatformError(ErrorKind.AUTH_REVOKED,
                            f"{platform}: Meta gave no token for the Page; the login needs "
                            "the pages_show_list permission and a role on the Page")
    # A Page token fetched with a long-lived user token does not expire.
    return Refreshed({k: v for k, v in creds.items() if v is not None}, None)


def threads_login(adapter: Any) -> Refreshed:
    """Short-lived Threads token -> a 60-day one, and whose it is."""
    short = str(adapter.credentials["access_token"])
    graph = _graph(adapter, short, "")
    answer = graph.get("access_token", {
        "grant_type": "th_exchange_token",
        "client_secret": adapter.credentials.get("client_secret")})
    token = answer.get("access_token")
    if not isinstance(token, str) or not token:
        raise PlatformError(ErrorKind.SERVER, "threads: the long-lived token exchange "
                            "answered no token")
    lifetime = answer.get("expires_in")
    expires = (adapter.clock() + timedelta(seconds=int(lifetime))
               if isinstance(lifetime, int) and lifetime > 0 else None)
    graph = _graph(adapter, token, "v1.0")
    graph.secrets.append(token)
    me = graph.get("me", {"fields": "id,username"})
    if not me.get("id"):
        raise PlatformError(ErrorKind.SERVER, "threads: /me answered no id")
    creds = {"access_token": token, "threads_user_id": str(me["id"])}
    if isinstance(me.get("username"), str):
        creds["username"] = me["username"]
    return Refreshed(creds, expires)


def _choose(items: list[dict[str, Any]], want: str | None, *, what: str, flag: str,
            keys: Callable[[dict[str, Any]], tuple[Any, ...]],
            show: Callable[[dict[str, Any]], str]) -> dict[str, Any]:
    if not items:
        raise UsageError(f"this login manages no {what}; check the permissions the app "
                         "asked for and your role on the Page; nothing changed")
    listing = "; ".join(show(i) for i in items)
    if want:
        wanted = want.strip().lstrip("@").lower()
        found = [i for i in items if wanted in {str(k).lower() for k in keys(i) if k}]
        if len(found) != 1:
            raise UsageError(f"{flag} {want!r} matches {len(found)} of: {listing}; "
                             "nothing changed")
        return found[0]
    if len(items) == 1:
        return items[0]
    if not sys.stdin.isatty():
        raise UsageError(f"several {what}s: choose one with {flag} ({listing}); "
                         "nothing changed")
    print(f"Which {what}?")
    for n, item in enumerate(items, 1):
        print(f"  {n}. {show(item)}")
    answer = input(f"Number (1-{len(items)}): ").strip()
    if not answer.isdigit() or not 1 <= int(answer) <= len(items):
        raise UsageError(f"not a choice: {answer[:20]!r}; nothing changed")
    return items[int(answer) - 1]
