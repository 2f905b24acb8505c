"""The parameter and field names each Graph edge takes, from Meta's official
facebook-business SDK (its per-edge `param_types` tables and accepted fields), for the
fake Graph server to check every request against.

The SDK's own TypeChecker lets unknown parameters through silently, so the check here
is ours: every parameter a request carries must be in the SDK's table for that edge (or
one of Graph's generic parameters), and every requested field must be a field of the
node type the edge returns. Threads has no table in the SDK; its table below is taken
from Meta's Threads API reference (posts, publishing limits, media fields).
"""

from __future__ import annotations

import os
import re
from typing import Any

import pytest

GENERIC = {"access_token", "appsecret_proof", "fields", "limit", "since", "until", "after",
           "before"}
# Multipart file fields (Meta's photo-upload reference names the file `source`).
FILES = {("POST", "page", "photos"): {"source"}}

THREADS_EDGES: dict[tuple[str, str, str | None], set[str]] = {
    ("POST", "threads", "threads"): {
        "media_type", "text", "image_url", "video_url", "is_carousel_item", "children",
        "reply_control", "reply_to_id", "quote_post_id", "alt_text", "link_attachment",
        "topic_tag", "location_id", "allowlisted_country_codes", "auto_publish_text"},
    ("POST", "threads", "threads_publish"): {"creation_id"},
    ("GET", "threads", "threads_publishing_limit"): set(),
    ("GET", "threads", "threads"): set(),
    ("GET", "threads", None): set(),
    ("GET", "threads_container", None): set(),
    ("GET", "threads_media", None): set(),
}
THREADS_FIELDS: dict[tuple[str, str | None], set[str]] = {
    ("threads", "threads_publishing_limit"): {"quota_usage", "config", "reply_quota_usage",
                                             "reply_config"},
    ("threads", "threads"): {"id", "media_product_type", "media_type", "media_url",
                             "permalink", "owner", "username", "text", "timestamp",
                             "shortcode", "thumbnail_url", "children", "is_quote_post"},
    ("threads", None): {"id", "username", "name", "threads_profile_picture_url",
                        "threads_biography"},
    ("threads_container", None): {"id", "status", "error_message"},
    ("threads_media", None): {"id", "media_product_type", "media_type", "media_url",
                              "permalink", "owner", "username", "text", "timestamp",
                              "shortcode", "thumbnail_url", "children", "is_quote_post"},
}


def sdk_available() -> bool:
    try:
        import facebook_business  # noqa: F401
    except ImportError:
        return False
    return True


def require_sdk() -> None:
    """Skip where the SDK is missing, except in CI, where its absence is a failure."""
    if sdk_available():
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail("facebook-business is not installed (pip install -e '.[test]')")
    pytest.skip("facebook-business is not installed")


def _fields_of(cls: Any) -> set[str]:
    return {v for k, v in vars(cls.Field).items() if not k.startswith("_") and isinstance(v, str)}


def build_tables() -> tuple[dict[tuple[str, str, str | None], set[str]],
                            dict[tuple[str, str | None], set[str]]]:
    """(params per (method, node kind, edge), fields per (node kind, edge))."""
    import warnings

    from facebook_business.adobjects.contentpublishinglimitresponse import (
        ContentPublishingLimitResponse,
    )
    from facebook_business.adobjects.igmedia import IGMedia
    from facebook_business.adobjects.iguser import IGUser
    from facebook_business.adobjects.page import Page
    from facebook_business.adobjects.pagepost import PagePost
    from facebook_business.adobjects.photo import Photo
    from facebook_business.adobjects.shadowigmediabuilder import ShadowIGMediaBuilder
    from facebook_business.adobjects.user import User
    from facebook_business.api import FacebookAdsApi

    FacebookAdsApi.init(access_token="unused", api_version="v26.0", crash_log=False)

    def edge(obj: Any, method: str) -> tuple[set[str], set[str]]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            request = getattr(obj, method)(params={}, pending=True)
        params = set(request._param_checker._type_check_info)
        fields = {f for f in request._accepted_fields if isinstance(f, str)}
        return params, fields

    params: dict[tuple[str, str, str | None], set[str]] = {}
    fields: dict[tuple[str, str | None], set[str]] = {}
    for key, obj, method in (
            (("POST", "page", "feed"), Page("1"), "create_feed"),
            (("POST", "page", "photos"), Page("1"), "create_photo"),
            (("GET", "page", "feed"), Page("1"), "get_feed"),
            (("GET", "page", "published_posts"), Page("1"), "get_published_posts"),
            (("POST", "ig", "media"), IGUser("1"), "create_media"),
            (("POST", "ig", "media_publish"), IGUser("1"), "create_media_publish"),
            (("GET", "ig", "content_publishing_limit"), IGUser("1"),
             "get_content_publishing_limit"),
            (("GET", "ig", "media"), IGUser("1"), "get_media"),
            (("GET", "user", "accounts"), User("1"), "get_accounts")):
        p, f = edge(obj, method)
        params[key] = p | FILES.get(key, set())
        fields[(key[1], key[2])] = f
    params[("GET", "page", None)] = set()
    fields[("page", None)] = _fields_of(Page)
    fields[("page", "feed")] |= set()
    fields[("page", "photos")] = _fields_of(Photo) | {"post_id"}
    params[("GET", "post", None)] = set()
    fields[("post", None)] = _fields_of(PagePost)
    params[("GET", "user", None)] = set()
    fields[("user", None)] = _fields_of(User)
    params[("GET", "ig", None)] = set()
    fields[("ig", None)] = _fields_of(IGUser)
    params[("GET", "ig_container", None)] = set()
    fields[("ig_container", None)] = _fields_of(ShadowIGMediaBuilder)
    params[("GET", "ig_media", None)] = set()
    fields[("ig_media", None)] = _fields_of(IGMedia)
    fields[("ig", "content_publishing_limit")] = _fields_of(ContentPublishingLimitResponse)
    params.update(THREADS_EDGES)
    fields.update(THREADS_FIELDS)
    return params, fields


_TABLES: tuple[Any, Any] | None = None


def tables() -> tuple[Any, Any]:
    global _TABLES
    if _TABLES is None:
        _TABLES = build_tables()
    return _TABLES


def _requested_fields(value: str) -> set[str]:
    """Top-level names of a `fields` value such as 'id,name,instagram_business_account{id}'."""
    depth, out, current = 0, set(), ""
    for ch in value:
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        elif ch == "," and depth == 0:
            out.add(current.strip())
            current = ""
        elif depth == 0:
            current += ch
    out.add(current.strip())
    return {re.sub(r"\..*$", "", f) for f in out if f}


def check(method: str, kind: str, edge: str | None, params: dict[str, Any]) -> list[str]:
    """Problems with one request: unknown edges, parameters or fields."""
    table, field_table = tables()
    key = (method, kind, edge)
    if key not in table:
        return [f"{method} {kind}/{edge or ''}: no such edge in the SDK's tables"]
    problems = [f"{method} {kind}/{edge or ''}: unknown parameter {name!r}"
                for name in sorted(set(params) - table[key] - GENERIC)]
    if params.get("fields"):
        allowed = field_table.get((kind, edge), set())
        problems += [f"{method} {kind}/{edge or ''}: unknown field {name!r}"
                     for name in sorted(_requested_fields(str(params["fields"])) - allowed)]
    return problems
