"""The console's pages over HTTP: login with CSRF, cookies, redirects, language, headers, static
files (the browser test drives the same pages in chromium)."""

from __future__ import annotations

import re

import pytest
import requests

from central.accounts import Accounts
from central.console.i18n import MESSAGES

PASSWORD = "correct horse battery staple"


@pytest.fixture
def site(central):
    url, store, _auth = central
    Accounts(store).add_user("operator", "read", PASSWORD)
    return url


def login_form(session: requests.Session, url: str) -> str:
    page = session.get(url + "/console/login", timeout=10)
    assert page.status_code == 200
    return re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)


def log_in(session, url, password=PASSWORD, csrf=None, **headers):
    token = login_form(session, url) if csrf is None else csrf
    return session.post(url + "/console/login", data={"user": "operator", "password": password, "csrf": token,
                                                      "next": "/console/nodes/pole-1"},
                        headers=headers, allow_redirects=False, timeout=10)


def test_pages_need_a_session_and_login_sets_a_strict_httponly_cookie(site):
    with requests.Session() as s:
        first = s.get(site + "/console/nodes/pole-1", allow_redirects=False, timeout=10)
        assert first.status_code == 303 and first.headers["location"].startswith("/console/login?next=")
        assert s.get(site + "/", allow_redirects=False, timeout=10).headers["location"] == "/console/"
        wrong = log_in(s, site, password="not the password at all")
        assert wrong.status_code == 401 and MESSAGES["en"]["login_failed"] in wrong.text
        ok = log_in(s, site)
        assert ok.status_code == 303 and ok.headers["location"] == "/console/nodes/pole-1"
        cookie = next(c for c in ok.headers["set-cookie"].split(", streetnode") if "streetnode_session" in c)
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
        page = s.get(site + "/console/nodes/pole-1", timeout=10)
        assert page.status_code == 200 and "pole-1" in page.text
        assert "script-src 'self'" in page.headers["content-security-policy"]
        assert s.get(site + "/v1/latest", timeout=10).status_code == 200  # the API with the cookie
        assert s.get(site + "/console/nodes/nope", timeout=10).status_code == 404


def test_forms_without_the_csrf_token_or_from_another_site_are_refused(site):
    with requests.Session() as s:
        login_form(s, site)
        assert log_in(s, site, csrf="forged-token").status_code == 403
        assert log_in(s, site, Origin="https://evil.example").status_code == 403
        assert log_in(s, site).status_code == 303
        token = login_form(s, site)
        refused = s.post(site + "/console/logout", data={"csrf": "nope"}, allow_redirects=False, timeout=10)
        assert refused.status_code == 403
        out = s.post(site + "/console/logout", data={"csrf": token}, allow_redirects=False, timeout=10)
        assert out.status_code == 303
        assert s.get(site + "/console/", allow_redirects=False, timeout=10).status_code == 303  # logged out


def test_no_open_redirect_after_login(site):
    with requests.Session() as s:
        token = login_form(s, site)
        form = {"user": "operator", "password": PASSWORD, "csrf": token, "next": "//evil.example/"}
        r = s.post(site + "/console/login", data=form, allow_redirects=False, timeout=10)
        assert r.status_code == 303 and r.headers["location"] == "/console/"


def test_language_from_accept_language_and_the_switch(site):
    with requests.Session() as s:
        vi = s.get(site + "/console/login", headers={"Accept-Language": "vi-VN,vi;q=0.9,en;q=0.5"},
                   timeout=10)
        assert '<html lang="vi">' in vi.text and MESSAGES["vi"]["login"] in vi.text
        token = login_form(s, site)
        form = {"lang": "vi", "csrf": token, "next": "/console/login"}
        switched = s.post(site + "/console/language", data=form, allow_redirects=False, timeout=10)
        assert switched.status_code == 303 and switched.headers["location"] == "/console/login"
        page = s.get(site + "/console/login", headers={"Accept-Language": "en"}, timeout=10)
        assert '<html lang="vi">' in page.text  # the switch wins over the browser's language
        assert set(MESSAGES["en"]) == set(MESSAGES["vi"])  # every string in both languages


def test_static_files_are_vendored_with_their_licence(site):
    js = requests.get(site + "/console/static/uPlot.iife.min.js", timeout=10)
    assert js.status_code == 200 and js.text.startswith("/*! https://github.com/leeoniya/uPlot (v1.6.32) */")
    assert "MIT License" in requests.get(site + "/console/static/uPlot.LICENSE.txt", timeout=10).text
    assert requests.get(site + "/console/static/../app.py", timeout=10).status_code == 404
    page = requests.get(site + "/console/login", timeout=10).text
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "") and "https://" not in page


def test_all_the_pages_javascript_is_under_100_kb_gzipped():
    import gzip
    from pathlib import Path

    import central.console

    static = Path(central.console.__file__).parent / "static"
    total = sum(len(gzip.compress(p.read_bytes(), 9)) for p in static.glob("*.js"))
    assert 20_000 < total <= 100_000


def test_the_console_api_is_in_the_openapi_document(central):
    url, _store, auth = central
    paths = requests.get(url + "/openapi.json", headers=auth, timeout=10).json()["paths"]
    for path in ("/v1/latest", "/v1/nodes/{node_id}/channels", "/v1/nodes/{node_id}/series",
                 "/v1/nodes/{node_id}/timeline"):
        assert path in paths, path
    assert not any(p.startswith("/console") for p in paths)  # pages are not API


def test_a_tile_server_is_the_only_other_origin_pages_may_load_from(store):
    from central.console.config import ConsoleConfig
    from central.server import serve_in_thread

    url, stop = serve_in_thread(store, console=ConsoleConfig(tile_url="https://tiles.city.example/{z}/{x}/{y}.png"))
    try:
        csp = requests.get(url + "/console/login", timeout=10).headers["content-security-policy"]
        assert "img-src 'self' data: https://tiles.city.example;" in csp and "script-src 'self';" in csp
    finally:
        stop()
