"""Alerts in the console (issue 15, item 6) over a real server on both stores: the overview's panel,
the node page's alerts with history in one query, acknowledgement by an admin from the page (CSRF,
session cookie; read-only users get no button and a 403)."""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterator

import pytest
import requests

from central.accounts import Accounts
from central.alerts.config import parse_alerts
from central.alerts.db import AlertsDb
from central.alerts.engine import AlertEngine
from central.console.i18n import MESSAGES
from central.server import serve_in_thread
from tests.central.conftest import pg_url, sqlite_url, store, store_url  # noqa: F401  (fixtures)
from tests.central.helpers import read_token
from tests.console.nodes import add_nodes, ago, upload

PASSWORD = "correct horse battery staple"
RULES = {"alerts": {"rules": [{"name": "flood", "kind": "threshold", "channel": "*.depth_cm", "above": 20.0,
                               "clear_below": 15.0, "severity": "critical"}]}}


@contextlib.contextmanager
def alerts_site(site_store, nodes: list[str]) -> Iterator[str]:
    """The base URL of a receiver over ``site_store`` with ``nodes``, the flood rule and two users
    (operator: read, chief: admin), for the ``with`` block."""
    add_nodes(site_store, nodes)
    accounts = Accounts(site_store)
    accounts.add_user("operator", "read", PASSWORD)
    accounts.add_user("chief", "admin", PASSWORD)
    engine = AlertEngine(parse_alerts(RULES), AlertsDb.for_store(site_store),
                         list_nodes=site_store.list_nodes)
    url, stop = serve_in_thread(site_store, alerts=engine)
    try:
        yield url
    finally:
        stop()


@pytest.fixture
def site(store):  # noqa: F811  (the fixture above)
    """(base URL, store) of a receiver with the flood rule, an open alert on pole-1, two users."""
    with alerts_site(store, ["pole-1", "pole-2"]) as url:
        upload(url, "pole-1", [("flood.depth_cm", 31.5, ago(2))])
        upload(url, "pole-2", [("flood.depth_cm", 4.0, ago(2))])
        yield url, store


def logged_in(url: str, user: str) -> requests.Session:
    session = requests.Session()
    page = session.get(url + "/console/login", timeout=10)
    token = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
    answer = session.post(url + "/console/login", data={"user": user, "password": PASSWORD, "csrf": token},
                          allow_redirects=False, timeout=10)
    assert answer.status_code == 303
    return session


def page_config(html: str) -> dict:
    return json.loads(re.search(r'id="page-config">(.*?)</script>', html, re.S).group(1))


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', html).group(1)


def test_the_overview_has_the_alerts_panel_and_the_api_the_active_alert(site):
    url, central_store = site
    with logged_in(url, "operator") as s:
        page = s.get(url + "/console/", timeout=10)
        assert page.status_code == 200 and 'id="alerts-panel"' in page.text
        assert "/console/static/alerts.js" in page.text and MESSAGES["en"]["alerts_active"] in page.text
        assert page_config(page.text)["alerts"] is True and page_config(page.text)["can_ack"] is False
        active = s.get(url + "/v1/alerts", timeout=10).json()["alerts"]
        assert [(a["node"], a["rule"], a["state"], a["severity"]) for a in active] == [
            ("pole-1", "flood", "open", "critical")]
        script = s.get(url + "/console/static/alerts.js", timeout=10)
        assert script.status_code == 200 and "renderPanel" in script.text
        vi = s.get(url + "/console/", headers={"Accept-Language": "vi"}, timeout=10)
        assert MESSAGES["vi"]["alerts_active"] in vi.text


def test_the_node_page_reads_alerts_with_history_in_one_call(site):
    url, central_store = site
    auth = read_token(central_store)
    doc = requests.get(url + "/v1/alerts", params={"node": "pole-1", "state": "all", "history": "true"},
                       headers=auth, timeout=10).json()
    (alert,) = doc["alerts"]
    assert [e["transition"] for e in alert["history"]] == ["open"] and alert["history"][0]["value"] == 31.5
    assert requests.get(url + "/v1/alerts", params={"node": "pole-2", "state": "all"}, headers=auth,
                        timeout=10).json()["alerts"] == []
    with logged_in(url, "operator") as s:
        page = s.get(url + "/console/nodes/pole-1", timeout=10)
        assert 'id="node-alerts"' in page.text and page_config(page.text)["can_ack"] is False


def test_an_admin_acknowledges_from_the_page_a_reader_cannot(site):
    url, central_store = site
    alerts = requests.get(url + "/v1/alerts", headers=read_token(central_store), timeout=10).json()["alerts"]
    alert_id = alerts[0]["id"]
    target = f"{url}/console/alerts/{alert_id}/ack"
    here = {"Origin": url}  # as a browser sends with a form's POST (required for a cookie's change)
    with logged_in(url, "operator") as reader:
        token = csrf_of(reader.get(url + "/console/nodes/pole-1", timeout=10).text)
        refused = reader.post(target, data={"csrf": token}, allow_redirects=False, timeout=10, headers=here)
        assert refused.status_code == 403 and "admin" in refused.json()["message"]
    with logged_in(url, "chief") as admin:
        page = admin.get(url + "/console/nodes/pole-1", timeout=10)
        assert page_config(page.text)["can_ack"] is True
        forged = admin.post(target, data={"csrf": "forged"}, allow_redirects=False, timeout=10, headers=here)
        assert forged.status_code == 403
        other_site = admin.post(target, data={"csrf": csrf_of(page.text)}, allow_redirects=False, timeout=10,
                                headers={"Origin": "https://evil.example"})
        assert other_site.status_code == 403
        no_origin = admin.post(target, data={"csrf": csrf_of(page.text)}, allow_redirects=False, timeout=10)
        assert no_origin.status_code == 403  # the session cookie alone changes nothing
        done = admin.post(target, data={"csrf": csrf_of(page.text), "next": "/console/nodes/pole-1?range=6h"},
                          allow_redirects=False, timeout=10, headers=here)
        assert done.status_code == 303 and done.headers["location"] == "/console/nodes/pole-1?range=6h"
        again = admin.post(target, data={"csrf": csrf_of(page.text)}, allow_redirects=False, timeout=10,
                           headers=here)
        assert again.status_code == 409
        doc = admin.get(url + "/v1/alerts", params={"history": "true"}, timeout=10).json()["alerts"][0]
    assert doc["state"] == "acknowledged" and doc["acknowledged_by"] == "chief"
    events = [(e["transition"], e["actor"]) for e in doc["history"]]
    assert events == [("open", None), ("acknowledged", "chief")]
