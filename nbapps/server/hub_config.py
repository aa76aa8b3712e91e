"""JupyterHub login's configuration and what the Hub says about a user, for
:mod:`.hub_auth` (the OAuth flow and the Hub's REST calls) and the runner backend's defaults.

:class:`HubConfiguration` (traitlets, ``c.HubConfiguration.*``) defaults to the variables the
Hub sets for a service it manages; :meth:`HubConfiguration.settings` checks it into
:class:`HubSettings` (NBA342). :func:`role_for` maps a :class:`HubUser` to a gallery role with
``role_map``; :func:`has_access` checks a Hub token's scopes.
"""
from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from traitlets import Dict, Float, List, Unicode, default
from traitlets.config import Configurable

from ..accounts import Role
from ..errors import NbappsError, UsageError

log = logging.getLogger("nbapps.server.hub_auth")


class HubConfiguration(Configurable):
    """Where the Hub is and how its users become gallery users.

    A Hub-managed service gets everything from the environment the Hub sets
    (``JUPYTERHUB_API_URL``, ``JUPYTERHUB_API_TOKEN``, ``JUPYTERHUB_CLIENT_ID``,
    ``JUPYTERHUB_SERVICE_NAME``, ``JUPYTERHUB_OAUTH_CALLBACK_URL``, ``JUPYTERHUB_HOST``,
    ``JUPYTERHUB_BASE_URL``); an external service sets them here.
    """

    api_url = Unicode(config=True,
                      help="The Hub's API as the gallery reaches it, e.g. "
                           "http://hub:8081/hub/api (default: $JUPYTERHUB_API_URL).")
    api_token = Unicode(config=True,
                        help="The gallery service's Hub API token (default: "
                             "$JUPYTERHUB_API_TOKEN); also its OAuth client secret.")
    service_name = Unicode(config=True,
                           help="The gallery's service name in the Hub (default: "
                                "$JUPYTERHUB_SERVICE_NAME, else nbapps).")
    client_id = Unicode(config=True,
                        help="OAuth client id (default: $JUPYTERHUB_CLIENT_ID, else "
                             "service-<service_name>).")
    callback_url = Unicode(config=True,
                           help="The OAuth redirect URI registered in the Hub "
                                "(oauth_redirect_uri): absolute, or a path behind the Hub's "
                                "proxy (default: $JUPYTERHUB_OAUTH_CALLBACK_URL, else "
                                "<base_url>oauth_callback).")
    hub_url = Unicode(config=True,
                      help="The Hub's pages as browsers reach them, e.g. "
                           "https://hub.example.org/hub/ (default: $JUPYTERHUB_HOST + "
                           "$JUPYTERHUB_BASE_URL + hub/, a path when the gallery is behind "
                           "the Hub's proxy).")
    access_scopes = List(Unicode(), config=True,
                         help="A Hub token must carry one of these scopes (default: "
                              "$JUPYTERHUB_OAUTH_ACCESS_SCOPES, else "
                              "access:services!service=<service_name>).")
    role_map = Dict(Unicode(), config=True,
                    help="Hub users → gallery roles, e.g. {'group:analysts': 'analyst', "
                         "'group:reviewers': 'reviewer', 'admin': 'admin'}. Keys: 'admin' "
                         "(a Hub admin), 'group:<name>', 'role:<name>', 'user:<name>'; the "
                         "highest matching role wins, re-applied at every login.")
    default_role = Unicode("viewer", config=True,
                           help="Gallery role of Hub users no role_map key matches.")
    cache_seconds = Float(60.0, config=True,
                          help="How long the Hub's answer about a Hub API token is reused.")
    recheck_seconds = Float(
        60.0, config=True,
        help="A gallery session opened by a Hub login is bound to the Hub's OAuth token it "
             "was made from; at most this many seconds after the last check, the gallery asks "
             "the Hub about that token again (GET /hub/api/user). A token the Hub no longer "
             "accepts (the user logged out of the Hub, or it was revoked or expired) ends the "
             "gallery session; Hub group/role changes update the gallery role. 0: check at "
             "every identity-cache miss (every few seconds per session).")
    recheck_grace_seconds = Float(
        300.0, config=True,
        help="When the Hub cannot be reached (or answers 5xx) at a re-check, a Hub session "
             "is kept this many seconds after its last successful check on this gallery "
             "process (a warning is logged), then refused until the Hub answers again (the "
             "session is not ended: it resumes once the Hub confirms its token). A session "
             "this process has not checked since it started is refused while the Hub is "
             "down. 0: refuse at once.")
    timeout = Float(10.0, config=True, help="Seconds a call to the Hub may take.")

    @default("service_name")
    def _service_name(self) -> str:
        return os.environ.get("JUPYTERHUB_SERVICE_NAME", "") or "nbapps"

    @default("api_url")
    def _api_url(self) -> str:
        return os.environ.get("JUPYTERHUB_API_URL", "")

    @default("api_token")
    def _api_token(self) -> str:
        return os.environ.get("JUPYTERHUB_API_TOKEN", "")

    @default("client_id")
    def _client_id(self) -> str:
        return os.environ.get("JUPYTERHUB_CLIENT_ID", "") or f"service-{self.service_name}"

    @default("callback_url")
    def _callback_url(self) -> str:
        return os.environ.get("JUPYTERHUB_OAUTH_CALLBACK_URL", "")

    @default("hub_url")
    def _hub_url(self) -> str:
        public = os.environ.get("JUPYTERHUB_PUBLIC_HUB_URL", "")
        if public:
            return public
        base = os.environ.get("JUPYTERHUB_BASE_URL", "") or "/"
        return os.environ.get("JUPYTERHUB_HOST", "") + base.rstrip("/") + "/hub/"

    @default("access_scopes")
    def _access_scopes(self) -> list[str]:
        env = os.environ.get("JUPYTERHUB_OAUTH_ACCESS_SCOPES", "")
        if env:
            try:
                return [str(s) for s in json.loads(env)]
            except (ValueError, TypeError):
                log.warning("ignoring $JUPYTERHUB_OAUTH_ACCESS_SCOPES: not a JSON list")
        return [f"access:services!service={self.service_name}"]

    def settings(self, base_url: str = "/") -> HubSettings:
        """The checked values (NBA342 when something needed is missing or malformed)."""
        missing = [name for name in ("api_url", "api_token", "client_id")
                   if not getattr(self, name)]
        if missing:
            raise HubConfigError(
                "JupyterHub login needs " + ", ".join(f"HubConfiguration.{m}" for m in missing)
                + " (a Hub-managed service gets them from JUPYTERHUB_* variables)")
        role_map = {key: _check_role_key(key, value) for key, value in self.role_map.items()}
        try:
            default_role = Role.parse(self.default_role)
        except UsageError as err:
            raise HubConfigError(f"HubConfiguration.default_role: {err.message}") from None
        for name in ("recheck_seconds", "recheck_grace_seconds"):
            if not getattr(self, name) >= 0:  # also refuses NaN
                raise HubConfigError(f"HubConfiguration.{name} must be 0 or more")
        hub_url = self.hub_url if self.hub_url.endswith("/") else self.hub_url + "/"
        return HubSettings(
            api_url=self.api_url.rstrip("/"), api_token=self.api_token,
            client_id=self.client_id, service_name=self.service_name,
            callback_url=self.callback_url or f"{base_url}oauth_callback",
            hub_url=hub_url, access_scopes=frozenset(self.access_scopes),
            role_map=role_map, default_role=default_role,
            cache_seconds=self.cache_seconds, timeout=self.timeout,
            recheck_seconds=self.recheck_seconds,
            recheck_grace_seconds=self.recheck_grace_seconds)


class HubConfigError(NbappsError):
    code = "NBA342"
    http_status = 500
    exit_code = 1


_KEY_KINDS = ("group", "role", "user")


def _check_role_key(key: str, value: str) -> Role:
    kind, sep, name = key.partition(":")
    if not (key == "admin" or (sep and kind in _KEY_KINDS and name)):
        raise HubConfigError(f"HubConfiguration.role_map key {key!r}: use 'admin', "
                             "'group:<name>', 'role:<name>' or 'user:<name>'")
    try:
        return Role.parse(value)
    except UsageError as err:
        raise HubConfigError(f"HubConfiguration.role_map[{key!r}]: {err.message}") from None


@dataclass(frozen=True)
class HubSettings:
    api_url: str
    api_token: str = field(repr=False)
    client_id: str
    service_name: str
    callback_url: str
    hub_url: str
    access_scopes: frozenset[str]
    role_map: Mapping[str, Role]
    default_role: Role = Role.VIEWER
    cache_seconds: float = 60.0
    timeout: float = 10.0
    recheck_seconds: float = 60.0
    recheck_grace_seconds: float = 300.0

    @property
    def authorize_url(self) -> str:
        return self.hub_url + "api/oauth2/authorize"

    @property
    def logout_url(self) -> str:
        return self.hub_url + "logout"


@dataclass(frozen=True)
class HubUser:
    """What the Hub says about the owner of a token (the parts the gallery uses)."""

    name: str
    admin: bool = False
    groups: frozenset[str] = frozenset()
    roles: frozenset[str] | None = None  # None: the answer did not include them
    scopes: frozenset[str] = frozenset()

    @classmethod
    def from_model(cls, model: Mapping[str, Any]) -> HubUser:
        roles = model.get("roles")
        return cls(name=str(model.get("name") or ""), admin=bool(model.get("admin")),
                   groups=frozenset(str(g) for g in model.get("groups") or ()),
                   roles=None if roles is None else frozenset(str(r) for r in roles),
                   scopes=frozenset(str(s) for s in model.get("scopes") or ()))


def role_for(user: HubUser, role_map: Mapping[str, Role], default: Role) -> Role:
    """The highest gallery role any ``role_map`` key matching ``user`` gives (else
    ``default``): ``admin`` matches a Hub admin, ``group:g`` a member of g, ``role:r`` a
    holder of Hub role r, ``user:u`` the user u."""
    best = default
    for key, role in role_map.items():
        kind, _, name = key.partition(":")
        matched = (key == "admin" and user.admin
                   or kind == "group" and name in user.groups
                   or kind == "role" and name in (user.roles or ())
                   or kind == "user" and name == user.name)
        if matched and role > best:
            best = role
    return best


def has_access(scopes: frozenset[str], required: frozenset[str]) -> bool:
    """Whether ``scopes`` hold one of ``required`` (a filtered scope such as
    ``access:services!service=nbapps`` is also held through its unfiltered form)."""
    if not required:
        return True
    return any(s in scopes or s.partition("!")[0] in scopes for s in required)
