"""Fault specs and the service user's access, as the checks rely on them."""

from __future__ import annotations

import os
import stat

import pytest

from node.diag.context import ServiceUser, parse_faults


def test_fault_specs_from_options_and_environment():
    assert parse_faults(["weather:absent", "flood:dead_echo, air:nack", ""]) == [
        ("weather", "absent"), ("flood", "dead_echo"), ("air", "nack")]


@pytest.mark.parametrize("bad", ["weather", ":absent", "weather:"])
def test_bad_fault_spec_names_it(bad):
    with pytest.raises(ValueError, match="TARGET:FAULT"):
        parse_faults([bad])


def _st(uid, gid, mode):
    return os.stat_result((stat.S_IFCHR | mode, 0, 0, 1, uid, gid, 0, 0, 0, 0))


@pytest.mark.parametrize(("uid", "gids", "st", "allowed"), [
    (1000, {1000}, _st(0, 998, 0o660), False),   # not in group i2c (998)
    (1000, {1000, 998}, _st(0, 998, 0o660), True),  # in group i2c
    (1000, {1000}, _st(1000, 0, 0o600), True),   # owner
    (1000, {1000}, _st(0, 0, 0o666), True),      # world read/write
    (1000, {998}, _st(0, 998, 0o640), False),    # group may only read
    (0, {0}, _st(0, 0, 0o000), True),            # root is never denied
])
def test_service_user_access(uid, gids, st, allowed):
    assert ServiceUser("u", uid, gids, "test").can_access(st) is allowed
