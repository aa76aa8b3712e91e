"""Submissions (versions of apps) and the review decisions on them."""
from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from typing import Any

from sqlalchemy import Select, delete, func, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, aliased

from .. import review
from ..accounts import Role
from ..errors import Conflict, NbappsError, NotFound, PermissionDenied, UsageError
from ..review import Action, State
from ..slugs import MAX_SLUG, is_slug
from .audit import append_event
from .db import CatalogBase, announce_live_change
from .models import App, AppTag, Review, User, Version, utcnow
from .users import get_user_row
from .values import ReviewInfo, Submission, VersionInfo

_SHA_RE = re.compile(r"[0-9a-f]{64}")
MAX_TAGS = 20
MAX_TAG_LEN = 64
_SUBMIT_RETRIES = 4


def check_slug(slug: str) -> str:
    if not is_slug(slug):
        raise UsageError(
            f"invalid app slug {slug!r}: lowercase letters, digits and '-', at most {MAX_SLUG}",
            code="NBA100",
        )
    return slug


def normalize_tags(tags: Iterable[str]) -> tuple[str, ...]:
    """Tags lowercased, whitespace → '-', deduplicated, sorted, at most 20 of ≤ 64 chars."""
    out: set[str] = set()
    for tag in tags or ():
        norm = re.sub(r"\s+", "-", str(tag).strip().lower())[:MAX_TAG_LEN].strip("-")
        norm = "".join(ch for ch in norm if ch.isprintable())
        if norm:
            out.add(norm)
    return tuple(sorted(out))[:MAX_TAGS]


def split_tags(tags_text: str | None) -> tuple[str, ...]:
    return tuple(t for t in (tags_text or "").split(" ") if t)


Submitter = aliased(User, name="submitter")
Decider = aliased(User, name="decider")


def version_query() -> Select[Any]:
    """SELECT of everything a :class:`VersionInfo` needs, in one query (no lazy loads)."""
    return (
        select(Version, App.slug, App.live_version_id, App.previous_live_version_id,
               Submitter.name, Decider.name)
        .join(App, Version.app_id == App.id)
        .join(Submitter, Version.submitter_id == Submitter.id)
        .outerjoin(Decider, Version.decided_by_id == Decider.id)
    )


def version_info(row: Any) -> VersionInfo:
    v, slug, live_id, prev_id, submitter, decider = row
    return VersionInfo(
        id=v.id, app_slug=slug, number=v.number, sha256=v.sha256, state=State(v.state),
        submitter=submitter, created_at=v.created_at, title=v.title,
        description=v.description, tags=split_tags(v.tags_text), store_key=v.store_key,
        manifest=dict(v.manifest or {}), thumbnail=v.thumbnail, size=v.size,
        decided_by=decider, decided_at=v.decided_at, comment=v.comment,
        is_live=live_id == v.id, is_previous_live=prev_id == v.id,
    )


def load_version(session: Session, version_id: int, *, refresh: bool = False) -> VersionInfo:
    stmt = version_query().where(Version.id == version_id)
    if refresh:
        stmt = stmt.execution_options(populate_existing=True)
    row = session.execute(stmt).first()
    if row is None:
        raise NotFound(f"no submission with id {version_id}")
    return version_info(row)


def fold(text_: str) -> str:
    """Lowercase without diacritics ("Café" → "cafe"), like FTS5's ``remove_diacritics``."""
    decomposed = unicodedata.normalize("NFKD", text_)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).lower()


_PG_VECTOR = text(
    "UPDATE apps SET search_vector = "
    "setweight(to_tsvector('simple', :title), 'A') || "
    "setweight(to_tsvector('simple', :tags), 'B') || "
    "setweight(to_tsvector('simple', :description), 'C') WHERE id = :id"
)


def set_app_meta(session: Session, app: App, title: str, description: str,
                 tags: tuple[str, ...]) -> None:
    """Copy a version's title/description/tags onto its app (tags table and, on PostgreSQL,
    the search vector too; SQLite's FTS index follows by trigger)."""
    app.title = title
    app.description = description
    session.flush()
    if app.tags_text != " ".join(tags):
        app.tags_text = " ".join(tags)
        session.execute(delete(AppTag).where(AppTag.app_id == app.id))
        session.add_all([AppTag(app_id=app.id, tag=t) for t in tags])
        session.flush()
    if session.get_bind().dialect.name == "postgresql":
        session.execute(_PG_VECTOR, {"title": fold(title), "tags": fold(" ".join(tags)),
                                     "description": fold(description), "id": app.id})


def acting_user(session: Session, name: str) -> User:
    try:
        user = get_user_row(session, name)
    except NotFound:
        raise PermissionDenied(f"unknown user {name!r}", code="NBA301") from None
    if user.disabled:
        raise PermissionDenied(f"user {name!r} is disabled", code="NBA301")
    return user


class VersionsMixin(CatalogBase):
    def submit(
        self,
        *,
        slug: str,
        title: str,
        description: str,
        tags: Iterable[str],
        sha256: str,
        manifest: dict[str, Any],
        store_key: str,
        submitter: str,
        thumbnail: str | None = None,
        size: int | None = None,
        ip: str | None = None,
        check: bool = False,
        max_queued: int | None = None,
    ) -> Submission:
        """Record a submitted source as a new version of app ``slug`` (created if new, the
        submitter becoming its author) in ONE transaction with its ``submission.create`` audit
        event. Idempotent: the same app + sha256 returns the existing version with
        ``created=False`` (and no new event), whatever its state.

        With ``check`` (the gallery's upload path) the version starts ``validating`` with a
        queued check job (:mod:`nbapps.catalog.jobs`; QueueFull NBA322 when ``max_queued``
        checks already wait, and then nothing is recorded). Without, it is recorded as
        ``submitted`` and the values given are taken as the gallery's own (imports, seeding):
        the gallery queues a check for it at its next start.

        The submitter needs the SUBMIT permission (NBA301); an existing app only takes new
        versions from its author or an admin (NBA301). Store the source BEFORE calling this.
        """
        check_slug(slug)
        if not isinstance(sha256, str) or not _SHA_RE.fullmatch(sha256):
            raise UsageError(f"not a SHA-256 hex digest: {sha256!r}", code="NBA100")
        title = (str(title or "").strip() or slug)[:300]
        description = str(description or "")
        norm_tags = normalize_tags(tags)
        last_exc: Exception | None = None
        for _ in range(_SUBMIT_RETRIES):
            try:
                with self._write() as s:
                    return self._submit_tx(
                        s, slug=slug, title=title, description=description, tags=norm_tags,
                        sha256=sha256, manifest=dict(manifest or {}), store_key=store_key,
                        submitter=submitter, thumbnail=thumbnail, size=size, ip=ip,
                        check=check, max_queued=max_queued,
                    )
            except IntegrityError as exc:  # concurrent submit of the same app/content: retry
                last_exc = exc
        raise Conflict(f"could not record the submission of {slug!r}; try again",
                       code="NBA303") from last_exc

    def _submit_tx(self, s: Session, *, slug: str, title: str, description: str,
                   tags: tuple[str, ...], sha256: str, manifest: dict[str, Any],
                   store_key: str, submitter: str, thumbnail: str | None, size: int | None,
                   ip: str | None, check: bool, max_queued: int | None) -> Submission:
        from .jobs import CHECK, add_job

        user = acting_user(s, submitter)
        first = review.transition(None, Action.SUBMIT, user.name, user.role, user.name)
        state = first if check else State.SUBMITTED
        app = s.scalars(select(App).where(App.slug == slug).with_for_update()).first()
        now = utcnow()
        if app is not None:
            if app.author_id != user.id and Role(user.role) is not Role.ADMIN:
                raise PermissionDenied(
                    f"app {slug!r} belongs to another author; pick another name",
                    code="NBA301",
                )
            existing = s.scalar(select(Version.id).where(Version.app_id == app.id,
                                                         Version.sha256 == sha256))
            if existing is not None:
                return Submission(version=load_version(s, existing), created=False)
            number = (s.scalar(select(func.max(Version.number))
                               .where(Version.app_id == app.id)) or 0) + 1
            if app.live_version_id is None:  # not in the gallery yet: show the newest
                set_app_meta(s, app, title, description, tags)
                app.updated_at = now
        else:
            app = App(slug=slug, title=title, description=description, tags_text="",
                      author_id=user.id, view_count=0, created_at=now, updated_at=now)
            s.add(app)
            s.flush()
            set_app_meta(s, app, title, description, tags)
            number = 1
        version = Version(
            app_id=app.id, number=number, sha256=sha256, title=title, description=description,
            tags_text=" ".join(tags), manifest=manifest, store_key=store_key,
            thumbnail=thumbnail, size=size, submitter_id=user.id,
            state=state.value, created_at=now,
        )
        s.add(version)
        s.flush()
        if check:
            add_job(s, CHECK, version_id=version.id, owner_id=user.id, max_queued=max_queued)
        append_event(s, "submission.create", actor=user.name, target=slug,
                     version_sha256=sha256, ip=ip,
                     details={"version_id": version.id, "number": number})
        return Submission(version=load_version(s, version.id), created=True)

    def get_version(self, version_id: int) -> VersionInfo:
        """One version with its manifest; NotFound NBA302."""
        with self._read() as s:
            return load_version(s, int(version_id))

    def find_version(self, slug: str, sha256: str) -> VersionInfo | None:
        """The version of app ``slug`` with this bundle hash, if any."""
        with self._read() as s:
            row = s.execute(version_query().where(App.slug == slug,
                                                  Version.sha256 == sha256)).first()
            return version_info(row) if row else None

    def list_queue(self, *, limit: int = 100, offset: int = 0) -> list[VersionInfo]:
        """Versions waiting for a reviewer, oldest first: submitted ones, those still being
        checked by the gallery and those whose check failed (to be sent back or rejected)."""
        waiting = (State.SUBMITTED.value, State.VALIDATING.value, State.FAILED.value)
        stmt = (version_query().where(Version.state.in_(waiting))
                .order_by(Version.id).limit(_limit(limit)).offset(max(0, int(offset))))
        with self._read() as s:
            return [version_info(r) for r in s.execute(stmt)]

    def list_versions(
        self,
        *,
        state: State | str | None = None,
        submitter: str | None = None,
        app_slug: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[VersionInfo]:
        """Versions filtered by state / submitter ("my submissions") / app, newest first."""
        stmt = _filter_versions(version_query(), state, submitter, app_slug)
        stmt = stmt.order_by(Version.id.desc()).limit(_limit(limit)).offset(max(0, int(offset)))
        with self._read() as s:
            return [version_info(r) for r in s.execute(stmt)]

    def count_versions(self, *, state: State | str | None = None,
                       submitter: str | None = None, app_slug: str | None = None) -> int:
        stmt = (select(func.count(Version.id)).select_from(Version)
                .join(App, Version.app_id == App.id)
                .join(Submitter, Version.submitter_id == Submitter.id))
        stmt = _filter_versions(stmt, state, submitter, app_slug)
        with self._read() as s:
            return int(s.scalar(stmt) or 0)

    def decide(
        self, version_id: int, reviewer: str, action: Action | str, comment: str = "",
        *, ip: str | None = None,
    ) -> VersionInfo:
        """Approve / request changes / reject a submitted version (``action`` is
        "approve" | "request_changes" | "reject").

        PermissionDenied NBA301 (role), NBA304 (own submission), Conflict NBA305 (not in
        state submitted) or NBA303 (another reviewer decided at the same moment: exactly one
        wins). Approving makes the version live and keeps the former live one as previous.
        Audited as ``version.<action>``.
        """
        act = Action.parse(action)
        if act not in review.DECISIONS:
            raise UsageError(f"{act.value!r} is not a review decision", code="NBA100")
        info = self._change_state(int(version_id), reviewer, act, comment, ip)
        if info.state is State.APPROVED:  # live now: its snapshots (metadata.nbapps.snapshot)
            from ..variants import queue_snapshot_runs

            queue_snapshot_runs(self, info.app_slug, info.id, info.manifest)
        return info

    def withdraw(self, version_id: int, actor: str, comment: str = "",
                 *, ip: str | None = None) -> VersionInfo:
        """The submitter withdraws a submitted / changes-requested version. Audited."""
        return self._change_state(int(version_id), actor, Action.WITHDRAW, comment, ip)

    def _change_state(self, version_id: int, actor: str, act: Action, comment: str,
                      ip: str | None) -> VersionInfo:
        comment = str(comment or "")[:10_000]
        with self._write() as s:
            user = acting_user(s, actor)
            current = load_version(s, version_id)
            try:
                new_state = review.transition(current.state, act, user.name, user.role,
                                              current.submitter)
            except Conflict as exc:
                raise _already_decided(current, act) or exc from None
            now = utcnow()
            result = s.execute(
                update(Version)
                .where(Version.id == version_id, Version.state == current.state.value)
                .values(state=new_state.value, decided_by_id=user.id, decided_at=now,
                        comment=comment or None)
                .execution_options(synchronize_session=False)
            )
            if result.rowcount != 1:  # someone else changed it between our read and write
                latest = load_version(s, version_id, refresh=True)
                raise _already_decided(latest, act) or Conflict(
                    "this submission changed at the same moment; reload it", code="NBA303")
            s.add(Review(version_id=version_id, actor_id=user.id, action=act.value,
                         from_state=current.state.value, to_state=new_state.value,
                         comment=comment or None, at=now))
            if current.state is State.VALIDATING:  # withdrawn while its check waits or runs
                from .jobs import cancel_active

                cancel_active(s, version_id)
            if new_state is State.APPROVED:
                app = s.scalars(select(App).where(App.slug == current.app_slug)
                                .with_for_update()).one()
                if app.live_version_id is not None and app.live_version_id != version_id:
                    app.previous_live_version_id = app.live_version_id
                app.live_version_id = version_id
                app.updated_at = now
                set_app_meta(s, app, current.title, current.description, current.tags)
                from .schedules import sync_live_schedules

                sync_live_schedules(s, app, version_id, current.manifest, now)
                announce_live_change(s, current.app_slug)
            append_event(s, f"version.{act.value}", actor=user.name, target=current.app_slug,
                         version_sha256=current.sha256, ip=ip,
                         details={"version_id": version_id, "from": current.state.value,
                                  "to": new_state.value, "comment": comment})
            s.flush()
            return load_version(s, version_id, refresh=True)

    def list_reviews(self, version_id: int) -> list[ReviewInfo]:
        """Review records (decisions, withdrawals, rollbacks) of a version, oldest first."""
        stmt = (select(Review, User.name).join(User, Review.actor_id == User.id)
                .where(Review.version_id == int(version_id)).order_by(Review.id))
        with self._read() as s:
            return [ReviewInfo(id=r.id, version_id=r.version_id, actor=name, action=r.action,
                               from_state=r.from_state, to_state=r.to_state,
                               comment=r.comment, at=r.at)
                    for r, name in s.execute(stmt)]


def _already_decided(v: VersionInfo, act: Action) -> NbappsError | None:
    """NBA303 when a decision lost against another actor's change (state no longer submitted)."""
    if v.state is State.SUBMITTED or v.decided_by is None:
        return None
    when = v.decided_at.strftime("%Y-%m-%d %H:%M:%S UTC") if v.decided_at else "just now"
    return Conflict(
        f"cannot {act.value.replace('_', ' ')}: this submission was already "
        f"{v.state.value.replace('_', ' ')} by {v.decided_by} at {when}",
        code="NBA303", details={"state": v.state.value, "decided_by": v.decided_by},
    )


def _filter_versions(stmt: Any, state: State | str | None, submitter: str | None,
                     app_slug: str | None) -> Any:
    if state is not None:
        stmt = stmt.where(Version.state == State(state).value)
    if submitter is not None:
        stmt = stmt.where(Submitter.name == submitter)
    if app_slug is not None:
        stmt = stmt.where(App.slug == app_slug)
    return stmt


def _limit(limit: int) -> int:
    return max(1, min(int(limit), 1000))
