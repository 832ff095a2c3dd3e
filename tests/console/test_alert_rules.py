"""Alert rules edited by an admin in the console (issue 15 item 4) on both stores: the stored rule
replaces the file's of its name, disables or enables it, adds new ones; the same parser as
``[alerts]`` with one-line errors naming the field; every change audited; readers cannot edit."""

from __future__ import annotations

import re

import pytest
import requests

from central.alerts.config import parse_alerts
from central.alerts.stored import StoredRule, effective_rules
from tests.central.conftest import pg_url, sqlite_url, store, store_url  # noqa: F401  (fixtures)
from tests.central.helpers import read_token
from tests.console.nodes import ago, upload
from tests.console.test_alerts import alerts_site, logged_in


@pytest.fixture
def site(store):  # noqa: F811  (the fixture above)
    with alerts_site(store, ["pole-1"]) as url:
        yield url, store


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', html).group(1)


def test_precedence_of_stored_rules_over_the_file():
    file_rules = parse_alerts({"alerts": {"rules": [
        {"name": "flood", "kind": "threshold", "channel": "*.depth_cm", "above": 20.0},
        {"name": "storm", "kind": "storm"}]}}).rules
    stricter = {"name": "flood", "kind": "threshold", "channel": "*.depth_cm", "above": 40.0}
    stored = [StoredRule("flood", stricter, True, 1, "chief"),
              StoredRule("storm", None, False, 1, "chief"),
              StoredRule("dust", {"name": "dust", "kind": "pm25_aqi"}, True, 1, "chief"),
              StoredRule("old", {"name": "old", "kind": "storm"}, False, 1, "chief")]
    rules = effective_rules(file_rules, stored)
    assert [(r.name, r.above) for r in rules] == [("flood", 40.0), ("dust", 80.0)]
    assert [r.name for r in effective_rules(file_rules, [StoredRule("storm", None, True, 2, "x")])] == [
        "flood", "storm"]


def test_an_admin_replaces_disables_and_adds_rules_audited(site):
    url, central_store = site
    auth = read_token(central_store)
    here = {"Origin": url}
    with logged_in(url, "chief") as admin:
        page = admin.get(url + "/console/rules", timeout=10)
        assert page.status_code == 200 and 'id="rule-form"' in page.text and 'data-rule="flood"' in page.text
        token = csrf_of(page.text)
        bad = admin.post(url + "/console/rules", data={"csrf": token, "name": "flood", "kind": "threshold",
                                                       "channel": "*.depth_cm", "above": "deep"},
                         headers=here, timeout=10)
        assert bad.status_code == 400 and "rule.above: expected a number, got &#39;deep&#39;" in bad.text
        stricter = {"csrf": token, "name": "flood", "kind": "threshold", "channel": "*.depth_cm",
                    "above": "40", "clear_below": "30"}
        replaced = admin.post(url + "/console/rules", data=stricter,
                              headers=here, allow_redirects=False, timeout=10)
        assert replaced.status_code == 303
        upload(url, "pole-1", [("flood.depth_cm", 31.0, ago(3))], first_seq=1)
        assert requests.get(url + "/v1/alerts", headers=auth, timeout=10).json()["alerts"] == []  # 40 now
        off = admin.post(url + "/console/rules/switch", data={"csrf": token, "name": "flood", "enabled": "0"},
                         headers=here, allow_redirects=False, timeout=10)
        assert off.status_code == 303
        upload(url, "pole-1", [("flood.depth_cm", 55.0, ago(2))], first_seq=2)
        assert requests.get(url + "/v1/alerts", headers=auth, timeout=10).json()["alerts"] == []  # disabled
        on = admin.post(url + "/console/rules/switch", data={"csrf": token, "name": "flood", "enabled": "1"},
                        headers=here, allow_redirects=False, timeout=10)
        assert on.status_code == 303
        upload(url, "pole-1", [("flood.depth_cm", 56.0, ago(1))], first_seq=3)
        (alert,) = requests.get(url + "/v1/alerts", headers=auth, timeout=10).json()["alerts"]
        assert alert["rule"] == "flood" and alert["value"] == 56.0
        added = admin.post(url + "/console/rules", data={"csrf": token, "name": "dust", "kind": "pm25_aqi",
                                                         "band": "bad", "nodes": "pole-1, pole-2"},
                           headers=here, allow_redirects=False, timeout=10)
        assert added.status_code == 303
        unknown = admin.post(url + "/console/rules/switch", headers=here, timeout=10,
                             data={"csrf": token, "name": "nope", "enabled": "0"})
        assert unknown.status_code == 400 and "rule.name: no rule" in unknown.text
    doc = requests.get(url + "/v1/alerts/rules", headers=auth, timeout=10).json()
    rules = {r["name"]: r for r in doc["rules"]}
    assert rules["flood"]["above"] == 40.0 and rules["flood"]["source"] == "file+console"
    assert rules["dust"]["nodes"] == ["pole-1", "pole-2"] and rules["dust"]["source"] == "console"
    assert [(a["actor"], a["name"], a["action"]) for a in doc["audit"]] == [
        ("chief", "dust", "save"), ("chief", "flood", "enable"), ("chief", "flood", "disable"),
        ("chief", "flood", "save")]


def test_a_reader_sees_the_rules_but_cannot_change_them(site):
    url, _store = site
    with logged_in(url, "operator") as reader:
        page = reader.get(url + "/console/rules", timeout=10)
        assert page.status_code == 200 and 'data-rule="flood"' in page.text
        assert 'id="rule-form"' not in page.text
        refused = reader.post(url + "/console/rules/switch",
                              data={"csrf": csrf_of(page.text), "name": "flood", "enabled": "0"},
                              headers={"Origin": url}, timeout=10)
        assert refused.status_code == 403
    with requests.Session() as anonymous:
        assert anonymous.get(url + "/console/rules", allow_redirects=False, timeout=10).status_code == 303
