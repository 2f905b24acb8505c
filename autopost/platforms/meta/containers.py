"""Publishing through containers, as Instagram and Threads do, without ever posting twice.

    create container(s) -> commit the container id -> poll until FINISHED -> publish

1. The media are made fetchable: https URLs as given, local files through the media
   host (copied, then their URL fetched once to prove the web server serves them).
2. The platform's daily publishing cap is read (content_publishing_limit /
   threads_publishing_limit); a full cap is quota_exceeded before anything is made.
3. The container is created (for a carousel, its items first, each polled to FINISHED).
   A container is not a post: making one that is never published changes nothing.
4. Its id is committed to the job's ref (save_ref) before the publishing call.
5. Its status is polled until FINISHED (ERROR ends the job with Meta's reason; EXPIRED
   means the next attempt makes a new one), then it is published. A "not ready" answer
   to the publish (Instagram 9007/2207027, Threads 24/4279009 "Media Not Found", a known
   race at Meta) is retried a few times on the same container.

After a crash or an unclear answer, the committed container tells what happened:
PUBLISHED -> posted (the media is found among the account's recent posts by its text);
FINISHED or IN_PROGRESS -> not posted, and the resend publishes that same container;
EXPIRED -> not posted, and the resend makes a new container (an expired container was
never published). A job with no committed container was never published either, since
the id is committed before the only call that publishes.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, ClassVar

from autopost.mediahost import MediaHost, is_url
from autopost.models import ErrorKind, Job, Media
from autopost.platforms.base import PlatformError, Published, Reconciled, SaveRef, Verdict
from autopost.platforms.meta.common import GraphAdapter, media_kind, same_text
from autopost.platforms.meta.graph import epoch, is_not_ready, parse_time

PUBLISHED, FINISHED, IN_PROGRESS, ERROR, EXPIRED = (
    "PUBLISHED", "FINISHED", "IN_PROGRESS", "ERROR", "EXPIRED")
FIND_SLACK = timedelta(minutes=5)


class ContainerAdapter(GraphAdapter):
    media_urls = True
    fetches_media = True

    owner_field: ClassVar[str]
    create_edge: ClassVar[str]
    publish_edge: ClassVar[str]
    limit_edge: ClassVar[str]
    status_fields: ClassVar[str]        # what a container's status read asks for
    text_field: ClassVar[str]           # caption (Instagram) / text (Threads)
    # Polling a container: how often, and for how long within one attempt.
    poll_every: ClassVar[float] = 3.0
    poll_budget: ClassVar[float] = 60.0
    video_poll_budget: ClassVar[float] = 240.0
    # Publishing a container Meta says is not ready yet: how often to try again.
    not_ready_tries: ClassVar[int] = 4
    not_ready_wait: ClassVar[float] = 5.0

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._urls_in_use: list[str] = []

    # -- hooks for each platform ---------------------------------------------------------
    def container_state(self, body: dict[str, Any]) -> tuple[str, str]:
        """(status, Meta's detail) from a container read."""
        raise NotImplementedError  # abstract

    def container_params(self, job: Job, urls: list[str]) -> list[dict[str, Any]] | dict:
        """The parameters of the container to create; for a carousel, a list of its
        items' parameters followed by the carousel's own (with children filled in)."""
        raise NotImplementedError  # abstract

    def publish_wait(self) -> float:
        """Seconds to let pass between making a container and publishing it."""
        return 0.0

    # -- posting --------------------------------------------------------------------------
    def publish(self, job: Job, save_ref: SaveRef) -> Published:
        try:
            return self._publish(job, save_ref)
        except PlatformError as exc:
            if exc.kind == ErrorKind.INVALID:
                self._release(job)  # failed for good: its media copies are not needed
            raise

    def _publish(self, job: Job, save_ref: SaveRef) -> Published:
        owner = self._owner()
        container = job.ref.get("container")
        self._urls_in_use = [str(u) for u in job.ref.get("media_urls") or []]
        made_at = _moment(job.ref.get("container_at"))
        if container:
            state, detail = self._status(str(container))
            if state == PUBLISHED:
                return self._live(job, str(container), made_at)
            if state == ERROR:
                raise self._failed(job, str(container), detail)
            if state == EXPIRED:
                container = None  # never published: a fresh container is safe
        if not container:
            self._check_cap(owner)
            urls = self._urls(job)
            self._urls_in_use = urls
            container = self._create(job, owner, urls)
            made_at = self.clock()
            save_ref({"container": container, "container_at": epoch(made_at),
                      "media_urls": urls})
        container = str(container)
        if self._wait_finished(job, container) == PUBLISHED:
            return self._live(job, container, made_at)
        wait = self.publish_wait() - (self.clock() - (made_at or self.clock())).total_seconds()
        if wait > 0:
            self.sleep(wait)
        media_id = self._publish_container(owner, container)
        self._release(job)
        return Published(media_id, self._permalink(media_id))

    def _owner(self) -> str:
        return self._field(self.owner_field)

    def _urls(self, job: Job) -> list[str]:
        local = [m for m in job.media if not is_url(m.path)]
        if not local:
            return [m.path for m in job.media]
        host = MediaHost(self.settings.media, self._client())
        urls = []
        for item in job.media:
            url = host.publish(item.path, job.id)
            if not is_url(item.path):
                host.check(url)
            urls.append(url)
        return urls

    def _release(self, job: Job) -> None:
        """Let the media host drop this job's copies (posted, or failed for good)."""
        urls = self._urls_in_use or [str(u) for u in job.ref.get("media_urls") or []]
        if not urls or not self.settings.media.configured:
            return
        MediaHost(self.settings.media).release(job.id, urls)

    def _check_cap(self, owner: str) -> None:
        """The platform's rolling 24-hour publishing cap, as the account's daily quota."""
        try:
            body = self.graph().get(f"{owner}/{self.limit_edge}",
                                    {"fields": "quota_usage,config"})
        except PlatformError as exc:
            if exc.kind in (ErrorKind.AUTH_EXPIRED, ErrorKind.AUTH_REVOKED,
                            ErrorKind.RATE_LIMITED):
                raise
            return  # the publish itself is refused past the cap
        rows = body.get("data") or []
        row = rows[0] if rows and isinstance(rows[0], dict) else {}
        config = row.get("config") if isinstance(row.get("config"), dict) else {}
        used, total = row.get("quota_usage"), config.get("quota_total")
        if isinstance(used, int) and isinstance(total, int) and used >= total:
            window = config.get("quota_duration") if isinstance(
                config.get("quota_duration"), int) else 86400
            raise PlatformError(
                ErrorKind.QUOTA_EXCEEDED,
                f"{self.platform}: {used} of {total} posts published in the last "
                f"{window // 3600} h; Meta refuses more until the window moves",
                retry_at=self.clock() + timedelta(hours=1))

    def _create(self, job: Job, owner: str, urls: list[str]) -> str:
        params = self.container_params(job, urls)
        edge = f"{owner}/{self.create_edge}"
        if isinstance(params, dict):
            return self._new_container(edge, params)
        *items, carousel = params
        children = []
        for item in items:
            child = self._new_container(edge, item)
            self._wait_finished(job, child)  # Meta wants each item FINISHED first
            children.append(child)
        return self._new_container(edge, {**carousel, "children": ",".join(children)})

    def _new_container(self, edge: str, params: dict[str, Any]) -> str:
        body = self.graph().post(edge, params)
        cid = body.get("id")
        if not cid:
            raise PlatformError(ErrorKind.SERVER,
                                f"{self.platform}: the container answer has no id")
        return str(cid)

    def _status(self, container: str) -> tuple[str, str]:
        body = self.graph().get(container, {"fields": self.status_fields})
        return self.container_state(body)

    def _wait_finished(self, job: Job, container: str) -> str:
        video = any(media_kind(m) == "video" for m in job.media)
        budget = self.video_poll_budget if video else self.poll_budget
        deadline = self.clock() + timedelta(seconds=budget)
        while True:
            state, detail = self._status(container)
            if state in (FINISHED, PUBLISHED):
                return state
            if state == ERROR:
                raise self._failed(job, container, detail)
            if state == EXPIRED:
                raise PlatformError(ErrorKind.SERVER,
                                    f"{self.platform}: container {container} expired before "
                                    "it was published; the next attempt makes a new one")
            if self.clock() >= deadline:
                raise PlatformError(ErrorKind.SERVER,
                                    f"{self.platform}: container {container} still "
                                    f"{state} after {int(budget)} s; the next attempt goes "
                                    "on with the same container")
            self.sleep(self.poll_every)

    def _publish_container(self, owner: str, container: str) -> str:
        for attempt in range(1, self.not_ready_tries + 1):
            try:
                body = self.graph().post(f"{owner}/{self.publish_edge}",
                                         {"creation_id": container}, is_create=True)
            except PlatformError as exc:
                if not is_not_ready(exc):
                    raise
                if attempt == self.not_ready_tries:
                    raise PlatformError(
                        ErrorKind.SERVER,
                        f"{exc.message}; the next attempt publishes the same container",
                        http_status=exc.http_status, code=exc.code) from None
                self.sleep(self.not_ready_wait)
                continue
            media_id = body.get("id")
            if not media_id:
                raise PlatformError(ErrorKind.AMBIGUOUS,
                                    f"{self.platform}: the publish answer has no id "
                                    "(checking the container)")
            return str(media_id)
        raise AssertionError("unreachable")

    def _failed(self, job: Job, container: str, detail: str) -> PlatformError:
        self._release(job)
        hint = ""
        if any(w in detail.upper() for w in ("DOWNLOAD", "FETCH", "UNKNOWN", "URI")):
            hint = ("; Meta may not have been able to fetch the media: check that its URL "
                    "is reachable from the internet")
        return PlatformError(ErrorKind.INVALID,
                             f"{self.platform}: container {container} failed: "
                             f"{detail or 'ERROR'}{hint}")

    def _permalink(self, media_id: str) -> str | None:
        """The post's address. A failed read must never fail a post that is live."""
        try:
            url = self.graph().get(media_id, {"fields": "permalink"}).get("permalink")
        except PlatformError:
            return None
        return url if isinstance(url, str) and url.startswith("https://") else None

    def _live(self, job: Job, container: str, made_at: datetime | None) -> Published:
        """The published media of a container that says PUBLISHED, from recent posts."""
        self._release(job)
        since = (made_at or job.created_at or self.clock()) - FIND_SLACK
        try:
            body = self.graph().get(f"{self._owner()}/{self.create_edge}", {
                "fields": f"id,{self.text_field},permalink,timestamp",
                "since": epoch(since), "limit": 50})
        except PlatformError:
            return Published(container, None)
        rows = [r for r in body.get("data") or [] if isinstance(r, dict)]
        matches = [r for r in rows if same_text(r.get(self.text_field), job.text)
                   and (parse_time(r.get("timestamp")) or since) >= since]
        if matches and (job.text.strip() or len(matches) == 1):
            found = matches[0]  # newest first
            url = found.get("permalink")
            return Published(str(found["id"]), url if isinstance(url, str) else None)
        return Published(container, None)

    # -- after an unknown outcome -----------------------------------------------------------
    def reconcile(self, job: Job) -> Reconciled:
        container = job.ref.get("container")
        self._urls_in_use = []
        if not container:
            return Reconciled(Verdict.NOT_POSTED, None,
                              "no container was made, so nothing was published")
        state, detail = self._status(str(container))
        if state == PUBLISHED:
            found = self._live(job, str(container), _moment(job.ref.get("container_at")))
            return Reconciled(Verdict.POSTED, found, f"container {container} is PUBLISHED")
        return Reconciled(Verdict.NOT_POSTED, None,
                          f"container {container} is {state}"
                          + (f" ({detail})" if detail else "")
                          + ("; the resend makes a new one" if state == EXPIRED else
                             "; the resend publishes it" if state != ERROR else ""))


def _moment(value: Any) -> datetime | None:
    from datetime import UTC

    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, UTC)
    return None


def split_media(media: tuple[Media, ...]) -> tuple[list[Media], list[Media]]:
    images = [m for m in media if media_kind(m) == "image"]
    videos = [m for m in media if media_kind(m) == "video"]
    return images, videos
