"""The shared transport's session: the same proxies, verification and headers as requests' own path."""

import pytest
import requests
import responses

from providers import base
from providers.base import PreparedRequest, ProviderClient


@pytest.fixture(autouse=True)
def fresh_proxy_cache():
    base._environment_proxies.cache_clear()
    yield
    base._environment_proxies.cache_clear()


@pytest.mark.parametrize(
    "url",
    ["http://api.example.com/v1/charge", "https://api.example.com:8443/x?y=1", "http://internal.example.net/a"],
)
def test_environment_settings_are_those_requests_would_use(monkeypatch, url):
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.example.com:3128")
    monkeypatch.setenv("HTTPS_PROXY", "http://secure-proxy.example.com:3129")
    monkeypatch.setenv("NO_PROXY", "internal.example.net")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/bundle.pem")

    ours = base._session()
    expected = requests.Session().merge_environment_settings(url, {}, None, None, None)

    assert ours.merge_environment_settings(url, {}, None, None, None) == expected
    # The second call is answered from the session's own copy, and still the same.
    assert ours.merge_environment_settings(url, {}, None, None, None) == expected


def test_the_kept_settings_cannot_be_changed_through_an_answer(monkeypatch):
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.example.com:3128")
    session = base._session()

    session.merge_environment_settings("http://api.example.com/", {}, None, None, None)["proxies"]["http"] = "x"

    again = session.merge_environment_settings("http://api.example.com/", {}, None, None, None)
    assert again["proxies"]["http"] == "http://proxy.example.com:3128"


def test_explicit_proxies_go_through_requests_own_merge(monkeypatch):
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.example.com:3128")
    explicit = {"http": "http://other-proxy.example.com:8080"}

    merged = base._session().merge_environment_settings("http://api.example.com/", explicit, None, None, None)

    assert merged["proxies"]["http"] == "http://other-proxy.example.com:8080"


class _Probe(ProviderClient):
    provider = "wdt"


@responses.activate
@pytest.mark.django_db(databases=["default", "call_log"])
def test_request_headers_are_laid_over_the_sessions_and_no_cookie_is_sent():
    responses.post("http://api.example.com/probe", json={"ok": True})
    client = _Probe()
    client.session.headers["X-Session"] = "kept"
    client.session.headers["Accept"] = "text/plain"
    request = PreparedRequest(operation="probe", method="POST", url="http://api.example.com/probe",
                              headers={"Accept": "application/json", "Content-Type": "application/json"},
                              body=b'{"a": 1}')

    answer = client._send(request)

    sent = answer.request
    assert sent.headers["X-Session"] == "kept"
    assert sent.headers["Accept"] == "application/json"
    assert sent.headers["Content-Type"] == "application/json"
    assert "Cookie" not in sent.headers
    assert sent.body == b'{"a": 1}'
    assert sent.url == "http://api.example.com/probe"
