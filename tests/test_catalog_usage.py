from __future__ import annotations

from datetime import date

import pytest

from nbapps.errors import NotFound
from tests.catalog_helpers import add_users, publish


def test_usage_counters_and_series(catalog):
    add_users(catalog)
    publish(catalog, "sales", 1)
    d1, d2 = date(2025, 3, 1), date(2025, 3, 3)
    catalog.record_usage("sales", views=1, render_ms=100, day=d1)
    catalog.record_usage("sales", views=2, render_ms=50.5, day=d1)
    catalog.record_usage("sales", errors=1, day=d2)
    series = catalog.usage_series("sales", days=4, today=date(2025, 3, 4))
    assert [p.day.day for p in series] == [1, 2, 3, 4]
    first = series[0]
    assert (first.views, first.errors, first.render_count) == (3, 0, 2)
    assert first.render_ms_sum == pytest.approx(150.5)
    assert first.avg_render_ms == pytest.approx(75.25)
    assert series[1].views == 0 and series[1].avg_render_ms is None
    assert series[2].errors == 1
    assert catalog.get_app("sales").app.views == 3
    assert series[0].to_dict()["day"] == "2025-03-01"
    catalog.record_usage("sales", views=1)
    assert catalog.usage_series("sales", days=1)[0].views == 1
    with pytest.raises(NotFound):
        catalog.record_usage("nope", views=1)
    with pytest.raises(NotFound):
        catalog.usage_series("nope")
