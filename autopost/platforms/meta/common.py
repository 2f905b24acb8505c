"""What the three Meta adapters share: the Graph client for the account, media kinds,
and matching a job's text against what the platform shows."""

from __future__ import annotations

import unicodedata
from pathlib import Path
from typing import Any, ClassVar

from autopost.errors import UsageError
from autopost.mediahost import is_url
from autopost.models import ErrorKind, Media
from autopost.oauth import OAuthAdapter
from autopost.platforms import http
from autopost.platforms.base import PlatformError
from autopost.platforms.imageinfo import read_image_info
from autopost.platforms.meta.graph import Graph

VIDEO_SUFFIXES = (".mp4", ".mov")


class GraphAdapter(OAuthAdapter):
    """An adapter speaking Graph API to one origin with one token. Its account either
    gives the token and the id it acts for directly, or gives the app's client_id and
    client_secret and then logs in (`autopost accounts login`, see login.py)."""

    # The path prefix: the configured Graph version, or a fixed one (Threads).
    fixed_version: ClassVar[str | None] = None
    # The credential naming what the token acts for (a Page, an Instagram or Threads user).
    id_field: ClassVar[str]
    refreshable = False

    @classmethod
    def check_credentials(cls, credentials: dict[str, Any]) -> None:
        super().check_credentials(credentials)
        if "access_token" in credentials and cls.id_field not in credentials:
            raise UsageError(f"{cls.platform} credentials with an access_token need "
                             f"{cls.id_field} (or give client_id and client_secret, then "
                             "'autopost accounts login NAME')")

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._graph: Graph | None = None

    @property
    def version(self) -> str:
        return self.fixed_version or self.settings.meta.graph_version

    def graph(self) -> Graph:
        token = self.credentials.get("access_token")
        if not token:
            raise PlatformError(ErrorKind.AUTH_REVOKED,
                                f"{self.platform}: no access token; run 'autopost accounts "
                                f"login {self.account.name}'")
        if self._graph is None or self._graph.token != token:
            self._graph = Graph(self._client(), origin=self.base_url, version=self.version,
                                token=str(token), platform=self.platform,
                                account=self.account.name, clock=self.clock,
                                secrets=http.secret_values(self.credentials,
                                                           self.secret_fields))
        return self._graph

    def _field(self, name: str) -> str:
        """A credential the account gets at login (a Page id, a user id)."""
        value = self.credentials.get(name)
        if not value:
            raise PlatformError(ErrorKind.AUTH_REVOKED,
                                f"{self.platform}: the account has no {name} yet; run "
                                f"'autopost accounts login {self.account.name}'")
        return str(value)

    def use_credentials(self, credentials: dict[str, Any]) -> None:
        super().use_credentials(credentials)
        self._graph = None


def media_kind(item: Media) -> str:
    """'video' or 'image', from the file's first bytes (local files) or the name (URLs)."""
    if not is_url(item.path):
        from autopost.media import HEAD, sniff

        try:
            with open(Path(item.path).expanduser(), "rb") as fh:
                found = sniff(fh.read(HEAD))
        except OSError:
            found = None
        if found is not None:
            return found[0]
    name = item.path.split("?", 1)[0].lower()
    return "video" if name.endswith(VIDEO_SUFFIXES) else "image"


def image_mime(item: Media) -> str | None:
    """The type of a local image (None for a URL, which cannot be read at add time)."""
    if is_url(item.path):
        return None
    path = Path(item.path).expanduser()
    try:
        info = read_image_info(path) if path.is_file() else None
    except OSError as exc:
        raise UsageError(f"{item.path}: {exc.strerror}") from None
    if info is None:
        raise UsageError(f"{item.path}: not a PNG, JPEG, GIF or WebP image")
    return info.mime


def same_text(a: str | None, b: str | None) -> bool:
    """Equal after Unicode normalisation and with whitespace reflowed (platforms trim)."""
    def norm(text: str | None) -> str:
        return " ".join(unicodedata.normalize("NFC", text or "").split())
    return norm(a) == norm(b)
