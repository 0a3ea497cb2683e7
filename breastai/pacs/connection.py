"""Connecting to a DICOMweb server: credentials, TLS, retries, and one error per failure.

Credentials come only from the environment or from a config file that only its owner can read;
never from the command line, and they are never logged or written into an output:

1. ``BREASTAI_DICOMWEB_TOKEN`` (sent as ``Authorization: Bearer ...``), or
   ``BREASTAI_DICOMWEB_USER`` + ``BREASTAI_DICOMWEB_PASSWORD`` (HTTP basic authentication);
2. else the config file ``$BREASTAI_DICOMWEB_CONFIG`` (default
   ``$XDG_CONFIG_HOME/breastai/dicomweb.toml``, i.e. ``~/.config/breastai/dicomweb.toml``),
   mode 0600 or stricter (TOML: top-level ``user``/``password`` or ``token``, and
   ``[servers."URL-prefix"]`` tables that override them for matching server URLs; optional
   ``ca_bundle``);
3. else no credentials.

TLS certificates are always verified (``ca_bundle`` or ``REQUESTS_CA_BUNDLE`` name a private
CA). The DICOMweb requests themselves go through ``dicomweb-client``; the only hand-written
requests are Orthanc's own REST API (``/system``, ``/changes``, ``/studies/{id}``), used by
``breastai watch`` to follow Orthanc's change feed.
"""

from __future__ import annotations

import logging
import os
import stat
import sys
import time
import tomllib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

from breastai.errors import (
    PacsAuthError,
    PacsError,
    PacsUnavailableError,
    ParameterError,
    UnsupportedInputError,
)

__all__ = [
    "CONFIG_ENV",
    "PASSWORD_ENV",
    "TOKEN_ENV",
    "USER_ENV",
    "Credentials",
    "DicomwebServer",
    "config_path",
    "connect",
    "connect_target",
    "load_credentials",
]

log = logging.getLogger(__name__)

USER_ENV = "BREASTAI_DICOMWEB_USER"
PASSWORD_ENV = "BREASTAI_DICOMWEB_PASSWORD"
TOKEN_ENV = "BREASTAI_DICOMWEB_TOKEN"
CONFIG_ENV = "BREASTAI_DICOMWEB_CONFIG"

T = TypeVar("T")

#: HTTP statuses worth retrying (the server may recover): overload and server errors.
_RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class Credentials:
    """What to authenticate with; ``source`` says where it came from (never the secret)."""

    user: str | None = None
    password: str | None = None
    token: str | None = None
    source: str = "none"
    ca_bundle: str | None = None

    def __repr__(self) -> str:  # never show the secrets
        kind = "token" if self.token else ("user+password" if self.user else "none")
        return f"Credentials({kind}, from {self.source})"

    __str__ = __repr__

    @property
    def given(self) -> bool:
        """True when a token or a user name is set."""
        return bool(self.token or self.user)


def config_path() -> Path:
    """The DICOMweb config file: ``$BREASTAI_DICOMWEB_CONFIG`` or the user config folder's."""
    env = os.environ.get(CONFIG_ENV)
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "breastai" / "dicomweb.toml"


def _check_private(path: Path) -> None:
    if sys.platform == "win32":
        return
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise PacsError(
            f"The DICOMweb config file {str(path)!r} can be read by other users (mode "
            f"{mode:04o}); it holds credentials, so breastai only reads it when only its owner "
            f"can: run `chmod 600 {path}`."
        )


def _from_table(table: Mapping[str, Any], where: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for key in ("user", "password", "token", "ca_bundle"):
        if key in table:
            value = table[key]
            if not isinstance(value, str):
                raise PacsError(f"{where}: {key} must be a string, found {type(value).__name__}.")
            out[key] = value
    return out


def load_credentials(url: str, *, path: Path | None = None) -> Credentials:
    """The credentials for a server URL: environment first, then the config file.

    Parameters
    ----------
    url:
        The server's DICOMweb root (used to pick a ``[servers."PREFIX"]`` table).
    path:
        Config file (default: :func:`config_path`).

    Returns
    -------
    Credentials

    Raises
    ------
    PacsError
        A half-set environment (user without password), a config file that others can read, or
        one that is not valid TOML.
    """
    env = os.environ
    token, user, password = env.get(TOKEN_ENV), env.get(USER_ENV), env.get(PASSWORD_ENV)
    cfg_file = path if path is not None else config_path()
    ca_bundle: str | None = None
    table: dict[str, str] = {}
    if cfg_file.is_file():
        _check_private(cfg_file)
        try:
            doc = tomllib.loads(cfg_file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise PacsError(
                f"Could not read the DICOMweb config file {str(cfg_file)!r} ({exc}); expected "
                "TOML with user/password or token (docs/pacs.md)."
            ) from None
        table = _from_table(doc, str(cfg_file))
        servers = doc.get("servers", {})
        if isinstance(servers, dict):
            norm = url.rstrip("/")
            matches = [k for k in servers if norm.startswith(str(k).rstrip("/"))]
            if matches:
                best = max(matches, key=len)
                sub = _from_table(servers[best], f"{cfg_file} [servers.{best!r}]")
                if "token" in sub or "user" in sub:  # a server's own identity replaces the default
                    table = {k: v for k, v in table.items() if k == "ca_bundle"}
                table.update(sub)
        ca_bundle = table.get("ca_bundle")
    if token:
        return Credentials(token=token, source=TOKEN_ENV, ca_bundle=ca_bundle)
    if user or password:
        if not (user and password):
            missing = PASSWORD_ENV if user else USER_ENV
            raise PacsError(
                f"{USER_ENV} and {PASSWORD_ENV} must be set together; {missing} is not set."
            )
        return Credentials(
            user=user, password=password, source=f"{USER_ENV}/{PASSWORD_ENV}", ca_bundle=ca_bundle
        )
    if table.get("token"):
        return Credentials(token=table["token"], source=str(cfg_file), ca_bundle=ca_bundle)
    if table.get("user"):
        if not table.get("password"):
            raise PacsError(f"{cfg_file}: a user is set without a password.")
        return Credentials(
            user=table["user"],
            password=table["password"],
            source=str(cfg_file),
            ca_bundle=ca_bundle,
        )
    return Credentials(ca_bundle=ca_bundle)


def _clean_url(url: str) -> str:
    """The URL without a trailing slash; refuses credentials, queries and odd schemes."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ParameterError(
            f"{url!r} is not a DICOMweb URL; expected http(s)://HOST[:PORT]/PATH, e.g. "
            "http://localhost:8042/dicom-web for Orthanc."
        )
    if parts.username or parts.password:
        safe = urlunsplit((parts.scheme, parts.hostname + (f":{parts.port}" if parts.port else ""),
                           parts.path, "", ""))  # fmt: skip
        raise ParameterError(
            f"Credentials in the URL are not accepted (they would end up in shell history and "
            f"logs); use {safe} and set {USER_ENV}/{PASSWORD_ENV} or {TOKEN_ENV}, or the config "
            "file (docs/pacs.md)."
        )
    if parts.query or parts.fragment:
        raise ParameterError(f"{url!r}: a DICOMweb root URL has no query or fragment.")
    return urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))


class _NoAuth:
    """Authentication that adds nothing (stops requests from reading ~/.netrc)."""

    def __call__(self, request: Any) -> Any:
        return request


class _BearerAuth:
    def __init__(self, token: str) -> None:
        self._token = token

    def __call__(self, request: Any) -> Any:
        request.headers["Authorization"] = f"Bearer {self._token}"
        return request

    def __repr__(self) -> str:
        return "_BearerAuth(***)"


def _requests() -> Any:
    try:
        import requests
    except ImportError:  # pragma: no cover - requests comes with dicomweb-client
        raise UnsupportedInputError(
            "PACS support needs the [pacs] extra: pip install 'breastai[pacs]'."
        ) from None
    return requests


class DicomwebServer:
    """One DICOMweb server: a ``dicomweb_client.DICOMwebClient`` with retries and clear errors.

    Parameters
    ----------
    url:
        The DICOMweb root, e.g. ``http://localhost:8042/dicom-web``.
    credentials:
        From :func:`load_credentials`.
    attempts:
        Tries per request when the server cannot be reached or answers 408/429/5xx.
    backoff_s:
        First wait between tries; doubled after each failed try.
    timeout_s:
        Connect/read timeout of one request.
    """

    def __init__(
        self,
        url: str,
        credentials: Credentials | None = None,
        *,
        attempts: int = 3,
        backoff_s: float = 0.5,
        timeout_s: float = 60.0,
    ) -> None:
        self.url = _clean_url(url)
        self.credentials = credentials if credentials is not None else Credentials()
        self.attempts = max(1, int(attempts))
        self.backoff_s = float(backoff_s)
        self.timeout_s = float(timeout_s)
        requests = _requests()
        try:
            from dicomweb_client.api import DICOMwebClient
        except ImportError:
            raise UnsupportedInputError(
                "PACS support needs the [pacs] extra (dicomweb-client): "
                "pip install 'breastai[pacs]'."
            ) from None
        session = requests.Session()
        creds = self.credentials
        if creds.token:
            session.auth = _BearerAuth(creds.token)
        elif creds.user:
            session.auth = (creds.user, creds.password or "")
        else:
            session.auth = _NoAuth()
        session.verify = creds.ca_bundle if creds.ca_bundle else True
        host = urlsplit(self.url).hostname or ""
        if (
            creds.given
            and self.url.startswith("http://")
            and host
            not in (
                "localhost",
                "127.0.0.1",
                "::1",
            )
        ):
            log.warning("credentials are sent without TLS to %s (use https)", self.url)
        self.session = session
        self.client = DICOMwebClient(self.url, session=session, timeout=self.timeout_s)
        # one retry policy for every request (ours, below): the client's own is turned off
        self.client.set_http_retry_params(retry=False)

    def __repr__(self) -> str:
        return f"DicomwebServer({self.url!r}, {self.credentials!r})"

    # ---------------------------------------------------------------------------- error policy

    def _error(self, exc: BaseException, what: str) -> tuple[bool, Exception]:
        """``(retry?, the error to raise)`` for one failed request."""
        requests = _requests()
        if isinstance(exc, requests.exceptions.SSLError):
            return False, PacsError(
                f"TLS certificate verification failed for {self.url} while {what}; set "
                "ca_bundle in the DICOMweb config file (or REQUESTS_CA_BUNDLE) to your site's "
                "CA certificate (verification cannot be turned off)."
            )
        if isinstance(exc, requests.exceptions.HTTPError) and exc.response is not None:
            code = int(exc.response.status_code)
            reason = f"HTTP {code} {exc.response.reason or ''}".strip()
            if code in (401, 403):
                creds = self.credentials
                if creds.given:
                    hint = (
                        f"the credentials from {creds.source} were refused ({reason}); check "
                        f"{USER_ENV}/{PASSWORD_ENV} or {TOKEN_ENV} (or the config file)"
                    )
                else:
                    hint = (
                        f"it asks for credentials ({reason}) and none were given; set "
                        f"{USER_ENV} and {PASSWORD_ENV} (or {TOKEN_ENV}) or the config file "
                        f"{config_path()}"
                    )
                return False, PacsAuthError(f"DICOMweb server {self.url}: {hint}.")
            if code in _RETRY_STATUS:
                return True, PacsUnavailableError(
                    f"DICOMweb server {self.url} failed while {what} ({reason}); try again later "
                    "or check the server's log."
                )
            if code == 404:
                return False, PacsError(
                    f"DICOMweb server {self.url} answered 404 Not Found while {what}; check that "
                    "the URL is the DICOMweb root (for Orthanc: http://HOST:8042/dicom-web) and "
                    "the UID."
                )
            return False, PacsError(f"DICOMweb server {self.url} refused {what} ({reason}).")
        if isinstance(exc, requests.exceptions.Timeout):
            return True, PacsUnavailableError(
                f"DICOMweb server {self.url} did not answer within {self.timeout_s:g} s while "
                f"{what}; check that the server is running and reachable."
            )
        if isinstance(exc, requests.exceptions.ConnectionError):
            return True, PacsUnavailableError(
                f"Could not connect to the DICOMweb server at {self.url} while {what} "
                "(connection refused or host unreachable); check the URL and that the server "
                "is running."
            )
        if isinstance(exc, requests.exceptions.RequestException):
            return False, PacsError(f"DICOMweb request to {self.url} failed while {what}: {exc}.")
        return False, PacsError(
            f"DICOMweb server {self.url} sent an answer that could not be read while {what} "
            f"({type(exc).__name__}: {exc})."
        )

    def call(self, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run one request with retries; raise one :class:`PacsError` on failure.

        Parameters
        ----------
        what:
            What the request does, for the error message ("listing the series of study X").
        fn:
            The request (a ``DICOMwebClient`` method or a ``requests`` call).
        """
        requests = _requests()
        delay = self.backoff_s
        for attempt in range(1, self.attempts + 1):
            try:
                return fn(*args, **kwargs)
            except (requests.exceptions.RequestException, ValueError, KeyError) as exc:
                delay = self._retry_or_raise(exc, what, attempt, delay)
        raise AssertionError("unreachable")  # pragma: no cover

    def _retry_or_raise(self, exc: BaseException, what: str, attempt: int, delay: float) -> float:
        """Raise the mapped error unless another attempt is due; then wait and return the next
        wait."""
        retry, error = self._error(exc, what)
        if not retry or attempt >= self.attempts:
            if retry and self.attempts > 1:
                error = type(error)(f"{str(error).rstrip('.')} (tried {self.attempts} times).")
            raise error from None
        log.info("%s (attempt %d of %d); retrying in %.1f s", error, attempt, self.attempts, delay)
        time.sleep(delay)
        return delay * 2

    # ------------------------------------------------------------------------ DICOMweb (client)

    def search_studies(
        self, filters: Mapping[str, Any] | None = None, fields: Sequence[str] = ()
    ) -> list[dict[str, Any]]:
        """QIDO-RS studies (every page)."""
        return self.call(
            "searching for studies",
            self.client.search_for_studies,
            search_filters=dict(filters or {}),
            fields=list(fields) or None,
            get_remaining=True,
        )

    def search_series(self, study_uid: str, fields: Sequence[str] = ()) -> list[dict[str, Any]]:
        """QIDO-RS series of one study (every page)."""
        return self.call(
            f"listing the series of study {study_uid}",
            self.client.search_for_series,
            study_uid,
            fields=list(fields) or None,
            get_remaining=True,
        )

    def series_metadata(self, study_uid: str, series_uid: str) -> list[dict[str, Any]]:
        """WADO-RS metadata (DICOM JSON, bulk data by reference) of every instance of a series."""
        return self.call(
            f"fetching the headers of series {series_uid}",
            self.client.retrieve_series_metadata,
            study_uid,
            series_uid,
        )

    def retrieve_series(self, study_uid: str, series_uid: str) -> Iterator[Any]:
        """WADO-RS instances of a series, streamed one ``pydicom.Dataset`` at a time.

        A failed transfer is started again (with the same retry policy), so an instance can be
        yielded twice: callers key what they keep by SOPInstanceUID.
        """
        requests = _requests()
        what = f"fetching the images of series {series_uid}"
        delay = self.backoff_s
        for attempt in range(1, self.attempts + 1):
            try:
                yield from self.client.iter_series(study_uid, series_uid)
                return
            except (requests.exceptions.RequestException, ValueError, KeyError) as exc:
                delay = self._retry_or_raise(exc, what, attempt, delay)

    def retrieve_instance(self, study_uid: str, series_uid: str, sop_uid: str) -> Any:
        """WADO-RS one instance."""
        return self.call(
            f"fetching instance {sop_uid}",
            self.client.retrieve_instance,
            study_uid,
            series_uid,
            sop_uid,
        )

    def store(self, datasets: Sequence[Any], study_uid: str) -> Any:
        """STOW-RS into one study; raises when the server reports a failed instance."""
        response = self.call(
            f"storing {len(datasets)} object(s) into study {study_uid}",
            self.client.store_instances,
            list(datasets),
            study_instance_uid=study_uid,
        )
        failed = getattr(response, "FailedSOPSequence", None) if response is not None else None
        if failed:
            reasons = sorted({str(getattr(item, "FailureReason", "?")) for item in failed})
            raise PacsError(
                f"DICOMweb server {self.url} refused {len(failed)} of {len(datasets)} object(s) "
                f"stored into study {study_uid} (failure reason {', '.join(reasons)}); check "
                "the server's log."
            )
        return response

    # ------------------------------------------------------------------ Orthanc REST (requests)

    def orthanc_root(self) -> str | None:
        """The Orthanc REST root when the server is an Orthanc, else None.

        An Orthanc's DICOMweb plugin lives under ``<root>/dicom-web``; ``<root>/system`` answers
        with its ``Version`` and ``ApiVersion``.
        """
        requests = _requests()
        root = self.url.rsplit("/", 1)[0] if self.url.count("/") > 2 else self.url
        what = "asking whether the server is an Orthanc"
        try:
            resp = self.session.get(f"{root}/system", timeout=self.timeout_s)
        except requests.exceptions.ConnectionError as exc:
            raise self._error(exc, what)[1] from None
        except requests.exceptions.RequestException:
            return None
        if resp.status_code in (401, 403):
            # an Orthanc refusing these credentials, or another server guarding an unknown
            # path: the DICOMweb root itself decides (raises PacsAuthError when it refuses too)
            self.call("checking the credentials", self.client.search_for_studies, limit=1)
            return None
        if resp.status_code != 200:
            return None
        try:
            doc = resp.json()
        except ValueError:
            return None
        if isinstance(doc, dict) and "ApiVersion" in doc and "Version" in doc:
            return root
        return None

    def orthanc_get(
        self,
        root: str,
        path: str,
        params: Mapping[str, Any] | None = None,
        *,
        missing_ok: bool = False,
    ) -> Any:
        """GET an Orthanc REST resource as JSON (retries, same errors); None for a 404 when
        ``missing_ok``."""

        def get() -> Any:
            resp = self.session.get(f"{root}{path}", params=params, timeout=self.timeout_s)
            if missing_ok and resp.status_code == 404:
                return None
            resp.raise_for_status()
            return resp.json()

        return self.call(f"reading Orthanc's {path}", get)


def connect(
    url: str, *, attempts: int = 3, backoff_s: float = 0.5, config: Path | None = None
) -> DicomwebServer:
    """A :class:`DicomwebServer` for ``url`` with the credentials of :func:`load_credentials`.

    Raises
    ------
    ParameterError
        A URL that is not http(s), or that holds credentials.
    PacsError
        Credentials cannot be read.
    UnsupportedInputError
        The ``[pacs]`` extra (dicomweb-client) is not installed.
    """
    clean = _clean_url(url)
    return DicomwebServer(
        clean, load_credentials(clean, path=config), attempts=attempts, backoff_s=backoff_s
    )


def connect_target(source: DicomwebServer, url: str) -> DicomwebServer:
    """The server to store results on: ``source`` itself when ``url`` is its root URL (a
    trailing slash ignored), else :func:`connect` to ``url``."""
    return source if url.rstrip("/") == source.url else connect(url)
