"""How a gallery replica hears of live-version changes: the catalog's announcements
(PostgreSQL NOTIFY in the decision's own transaction) and the replica's check rounds."""
from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import Future, wait
from typing import Any

import httpx
import psycopg
import pytest

from nbapps.catalog import open_catalog
from nbapps.catalog.db import CATALOG_CHANNEL, LIVE_CHANNEL
from nbapps.errors import Conflict
from nbapps.server.live_notify import LiveNotifier, libpq_url
from nbapps.store import open_store
from tests.server_harness import catalog_of, seed_users, seed_version, thread_gallery
from tests.test_replicas import _listed_live


def test_rounds_that_overlap_never_leave_a_listing_stale(tmp_path):
    """A round whose catalog read was slow finishes after a later round: it must not set
    what the replica saw back to the older state, or the next change back to that state
    (here a rollback made on another replica) would never refresh the cached listing."""
    with thread_gallery(tmp_path, args=["--NbappsServer.cache_seconds=60",
                                        "--NbappsServer.live_poll_interval=0"]) as g:
        server = g.server.server
        sync, loop = server.live_sync, server.loop

        def round_now() -> Future[list[str]]:
            return asyncio.run_coroutine_threadsafe(sync.poll(), loop)

        catalog = sync.ctx.catalog
        with catalog_of(g) as (other, store):  # "another replica"
            v1 = seed_version(other, store, slug="back", submitter="ana", title="Back")
            other.decide(v1.version.id, "rita", "approve", "ok")
            round_now().result(30)
            assert _listed_live(g, "back") == v1.version.id  # cached for 60 s now

            read, release = threading.Event(), threading.Event()

            def slow_read() -> Any:
                seen = type(catalog).live_versions(catalog)
                read.set()
                assert release.wait(30)
                return seen

            catalog.live_versions = slow_read  # this round reads v1, then stalls
            slow = round_now()
            assert read.wait(30)
            del catalog.live_versions
            v2 = seed_version(other, store, slug="back", submitter="ana", title="Back",
                              salt="2")
            other.decide(v2.version.id, "rob", "approve", "ok")
            quick = round_now()  # reads v2; one at a time, it waits for the slow round
            # rounds that overlapped would let it finish first (it gets 2 s to); then the
            # slow round ends
            wait([quick], timeout=2)
            release.set()
            slow.result(30)
            quick.result(30)
            assert _listed_live(g, "back") == v2.version.id

            other.rollback("back", "rob", "back to v1")
            round_now().result(30)
            assert _listed_live(g, "back") == v1.version.id


@pytest.mark.postgres
def test_the_catalog_announces_exactly_the_decisions_it_records(pg_server, tmp_path):
    """Approvals and rollbacks send their NOTIFY in their own transaction: a decision that
    failed or did not change a live version sends nothing, each recorded one sends one."""
    name, db_url = pg_server.fresh_database()
    try:
        seed_users(db_url)
        with open_catalog(db_url) as cat, \
                psycopg.connect(libpq_url(db_url), autocommit=True) as listener:
            listener.execute(f"LISTEN {LIVE_CHANNEL}")
            store = open_store(None, tmp_path / "store")
            one = seed_version(cat, store, slug="one", submitter="ana", title="One")
            cat.decide(one.version.id, "rita", "approve", "ok")  # → "one"
            with pytest.raises(Conflict):
                cat.rollback("one", "rob", "nothing to go back to")  # rolled back: nothing
            two = seed_version(cat, store, slug="two", submitter="ana", title="Two")
            cat.decide(two.version.id, "rita", "reject", "not yet")  # no live change: nothing
            again = seed_version(cat, store, slug="one", submitter="ana", title="One",
                                 salt="2")
            cat.decide(again.version.id, "rob", "approve", "ok")  # → "one"
            cat.rollback("one", "rob", "back")  # → "one"
            last = seed_version(cat, store, slug="three", submitter="ana", title="Three")
            cat.decide(last.version.id, "rita", "approve", "ok")  # → "three"
            # PostgreSQL delivers notifications in commit order: "three" comes last
            heard = []
            for note in listener.notifies(timeout=30):
                assert note.channel == LIVE_CHANNEL
                heard.append(note.payload)
                if note.payload == "three":
                    break
            assert heard == ["one", "one", "one", "three"]
    finally:
        pg_server.drop_database(name)


def test_a_replica_that_decided_sees_the_next_change_made_elsewhere(tmp_path):
    """This replica approves v2 (its own decision), another rolls back to v1 at once: the
    listing must show v1 after this replica's next check. It compared with what it saw before
    its own decision (v1) and took the rollback for no change (seen in CI: a replica served
    v1 and listed v2)."""
    with thread_gallery(tmp_path, args=["--NbappsServer.cache_seconds=60",
                                        "--NbappsServer.live_poll_interval=0"]) as g:
        server = g.server.server
        sync, loop = server.live_sync, server.loop

        def round_now() -> None:
            asyncio.run_coroutine_threadsafe(sync.poll(), loop).result(30)

        with catalog_of(g) as (other, store):  # "another replica"
            v1 = seed_version(other, store, slug="mine", submitter="ana", title="Mine")
            other.decide(v1.version.id, "rita", "approve", "ok")
            round_now()
            v2 = seed_version(other, store, slug="mine", submitter="ana", title="Mine",
                              salt="2")
            rounds = sync.rounds
            r = httpx.post(f"{g.url}/api/submissions/{v2.version.id}/decision", timeout=60,
                           json={"decision": "approve", "comment": "mine"},
                           headers={"Authorization": f"Bearer {g.users['rob'].token}"})
            assert r.status_code == 200, r.text
            deadline = time.monotonic() + 30
            while sync.rounds == rounds:  # the round this decision runs
                assert time.monotonic() < deadline, "no check after this replica's decision"
                time.sleep(0.02)  # a counter on the server's thread (no event to wait on)
            assert _listed_live(g, "mine") == v2.version.id  # cached for 60 s now
            other.rollback("mine", "rita", "back")
            round_now()
            assert _listed_live(g, "mine") == v1.version.id


@pytest.mark.postgres
def test_a_change_announced_from_a_worker_thread_reaches_the_others(pg_server):
    """Check and run workers report their catalog changes from their own threads: the
    announcement must still be sent (from the server's loop), not raise in the worker."""
    name, db_url = pg_server.fresh_database()
    try:
        with open_catalog(db_url) as cat, \
                psycopg.connect(libpq_url(db_url), autocommit=True) as listener:
            listener.execute(f"LISTEN {CATALOG_CHANNEL}")

            async def run(fn: Any, *args: Any) -> Any:  # as ServerContext.run
                return await asyncio.get_running_loop().run_in_executor(None, fn, *args)

            async def announce_from_a_thread() -> tuple[str, list[str]]:
                notifier = LiveNotifier(cat, lambda: None, lambda: None, run=run)
                notifier.start()
                try:
                    await asyncio.to_thread(notifier.announce)
                    heard = await asyncio.to_thread(
                        lambda: [n.payload for n in listener.notifies(timeout=30,
                                                                      stop_after=1)])
                finally:
                    await notifier.stop()
                return notifier.sender, heard

            sender, heard = asyncio.run(announce_from_a_thread())
            assert heard == [sender]
    finally:
        pg_server.drop_database(name)
