"""Voilà's page configuration computed once per runner (nbapps.runner.page_config_cache)."""
from __future__ import annotations

import logging

from voila.configuration import VoilaConfiguration
from voila.utils import get_page_config

from nbapps.runner import page_config_cache


def test_the_remembered_answer_is_voilas_own_and_each_page_gets_a_copy():
    calls = []

    def counted(**kwargs):
        calls.append(kwargs["base_url"])
        return get_page_config(**kwargs)

    remembered = page_config_cache.remembering(counted)
    settings, config, log = {}, VoilaConfiguration(), logging.getLogger("test")
    plain = get_page_config(base_url="/r/", settings=settings, log=log,
                            voila_configuration=config)
    first = remembered(base_url="/r/", settings=settings, log=log, voila_configuration=config)
    first["federated_extensions"].append({"name": "changed by a hook"})
    first["baseUrl"] = "changed"
    second = remembered(base_url="/r/", settings=settings, log=log, voila_configuration=config)
    assert second == plain and plain["federated_extensions"], "not Voilà's own answer"
    assert calls == ["/r/"], "computed more than once"
    other = remembered(base_url="/r/", settings={}, log=log, voila_configuration=config)
    assert other == plain and calls == ["/r/", "/r/"], "another settings object is another key"


def test_install_wraps_voilas_two_callers_once():
    import voila.handler
    import voila.voila_kernel_manager

    page_config_cache.install()
    page_config_cache.install()
    for module in (voila.handler, voila.voila_kernel_manager):
        assert module.get_page_config.nbapps_remembering
        assert module.get_page_config.__closure__ is not None
