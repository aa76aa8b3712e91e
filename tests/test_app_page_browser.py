"""The gallery and an app's page as a viewer meets them: curated order and sections, one "Open
app" with the form, a link to share that follows the form, a page that fits a phone.

A real gallery in a thread (no app runners: these pages need none); the HTTP checks run
without a browser, the rest in Debian's Chromium through Playwright.
"""
from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from tests.chromium import launched_chromium
from tests.server_harness import Gallery, catalog_of, seed_version, thread_gallery

#: (slug, title, category, featured position)
APPS = [("old-report", "Old report", "sales", None), ("loan", "Loan calculator", "finance", 2),
        ("sales", "Sales dashboard", "sales", 1), ("plain", "Plain tool", None, None)]
PHONE = {"width": 390, "height": 844}


@pytest.fixture(scope="module")
def gallery(tmp_path_factory) -> Iterator[Gallery]:
    with thread_gallery(tmp_path_factory.mktemp("app-page")) as g:
        with catalog_of(g) as (cat, store):
            for slug, title, _category, _featured in APPS:
                version = seed_version(cat, store, slug=slug, submitter="ana", title=title,
                                       description=f"What {title.lower()} shows, in a sentence "
                                       "long enough to wrap on a narrow card of the gallery.")
                cat.decide(version.version.id, "rita", "approve", "ok")
        with g.client("adam") as admin:  # curation is an admin's API call
            for slug, _title, category, featured in APPS:
                r = admin.patch(f"/api/apps/{slug}",
                                json={"featured": featured, "category": category})
                assert r.status_code == 200, r.text
        yield g


def _order(html: str) -> list[str]:
    return re.findall(r'<h2><a href="/app/([a-z-]+)">', html)


def test_featured_apps_come_first_then_the_newest(gallery):
    with gallery.client("vic") as c:
        page = c.get("/")
        api = c.get("/api/apps").json()
    assert _order(page.text) == ["sales", "loan", "plain", "old-report"]
    assert [a["slug"] for a in api["items"]] == ["sales", "loan", "plain", "old-report"]
    assert [a["featured"] for a in api["items"]] == [1, 2, None, None]


def test_categories_are_sections_with_counts(gallery):
    with gallery.client("vic") as c:
        page = c.get("/")
        sales = c.get("/?category=sales")
        listed = c.get("/api/categories").json()
    assert listed == {"items": [{"category": "finance", "count": 1},
                                {"category": "sales", "count": 2}]}
    assert 'href="/?category=finance">Finance <span class="muted">1</span>' in page.text
    assert _order(sales.text) == ["sales", "old-report"]
    assert 'aria-current="page">Sales' in sales.text


def test_only_admins_curate_and_bad_values_are_refused(gallery):
    with gallery.client("rita") as reviewer:
        r = reviewer.patch("/api/apps/loan", json={"featured": 1})
    assert r.status_code == 403 and r.json()["error"] == "NBA301"
    with gallery.client("adam") as admin:
        for body in ({"featured": 0}, {"featured": "1"}, {"category": 5}, {"rank": 1}):
            r = admin.patch("/api/apps/loan", json=body)
            assert r.status_code == 400 and r.json()["error"] == "NBA331", (body, r.text)
        assert admin.get("/api/apps/loan").json()["featured"] == 2
    with catalog_of(gallery) as (cat, _):
        events = cat.list_audit(action="app.curate")
    assert {e.target for e in events} == {slug for slug, *_ in APPS}


def test_app_page_without_views_says_so(gallery):
    with gallery.client("vic") as c:
        page = c.get("/app/loan")
    assert "No views in the last 30 days yet." in page.text
    assert "usage-chart" not in page.text and "render" not in page.text.lower()


# -- in Chromium ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    with launched_chromium() as browser:
        yield browser


def _page(browser: Any, g: Gallery, **context_args: Any) -> tuple[Any, Any]:
    context = browser.new_context(**context_args)
    context.set_default_timeout(30_000)
    page = context.new_page()
    page.goto(f"{g.url}/login")
    page.fill("#username", "vic")
    page.fill("#password", g.users["vic"].password)
    page.locator('form[action$="/login"] [type="submit"]').click()
    page.wait_for_url(lambda u: "/login" not in u)
    return context, page


@pytest.mark.browser
def test_pages_fit_a_phone(gallery, chromium):
    context, page = _page(chromium, gallery, viewport=PHONE, is_mobile=True, has_touch=True)
    try:
        for path in ("/", "/app/loan", "/?category=sales"):
            page.goto(f"{gallery.url}{path}")
            width = page.evaluate("document.documentElement.scrollWidth")
            assert width <= PHONE["width"], (path, width)
    finally:
        context.close()


@pytest.mark.browser
def test_cards_line_up(gallery, chromium):
    context, page = _page(chromium, gallery, viewport={"width": 1280, "height": 900})
    try:
        page.goto(f"{gallery.url}/")
        tops = page.eval_on_selector_all(".card h2", "els => els.map(e => "
                                         "Math.round(e.getBoundingClientRect().top))")
        assert len(tops) == 4 and len(set(tops)) == 1, tops  # one row at this width
    finally:
        context.close()


@pytest.mark.browser
def test_one_open_action_and_a_link_that_follows_the_form(gallery, chromium):
    context, page = _page(chromium, gallery, viewport={"width": 1280, "height": 900})
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=gallery.url)
    try:
        page.goto(f"{gallery.url}/app/loan")
        # labels are the parameters' help comments; one "Open app", no table of the same facts
        assert page.locator("label[for=p-n]").inner_text() == "How many"
        assert page.get_by_role("button", name="Open app").count() == 1
        assert page.locator("table th", has_text="Default").count() == 0
        link = page.locator("#share-link")
        assert link.inner_text() == f"{gallery.url}/app/loan/open"
        page.fill("#p-n", "7")
        assert link.inner_text() == f"{gallery.url}/app/loan/open?n=7"
        page.get_by_role("button", name="Copy link").click()
        page.wait_for_selector("text=Copied")
        assert page.evaluate("navigator.clipboard.readText()") == \
            f"{gallery.url}/app/loan/open?n=7"
        page.get_by_role("button", name="Open app").click()
        # only the changed value travels: the app opens from its defaults otherwise
        page.wait_for_url(re.compile(r"/app/loan/open\?n=7$"))
    finally:
        context.close()
