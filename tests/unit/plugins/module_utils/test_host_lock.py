# -*- coding: utf-8 -*-
# Copyright: (c) 2026, samepage.ksm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""_ksm.host_lock: the one lock every writer of KSM state takes (issue #11). Standard library only (these
tests also run on the old target Pythons); the modules under the lock: tests/unit/plugins/modules/test_writer_lock.py."""

import os

import pytest

from ansible_collections.samepage.ksm.plugins.module_utils import _ksm


@pytest.fixture(autouse=True)
def quick(monkeypatch):
    monkeypatch.setattr(_ksm, 'LOCK_POLL', 0.01)


def test_lock_creates_its_directory_and_records_the_holder(tmp_path):
    path = str(tmp_path / 'run' / 'lock' / 'samepage-ksm.lock')
    with _ksm.host_lock(timeout=0, who='samepage.ksm.test', path=path):
        holder = _ksm.lock_holder(path)
        assert holder.startswith('pid=%d program=samepage.ksm.test since=' % os.getpid())
    assert _ksm.lock_holder(path) == ''      # released: nobody is named any more


def test_second_writer_waits_then_fails_naming_the_holder(tmp_path):
    path = str(tmp_path / 'samepage-ksm.lock')
    with _ksm.host_lock(timeout=0, who='samepage.ksm.first', path=path):
        with pytest.raises(_ksm.KsmLockTimeout) as caught:
            with _ksm.host_lock(timeout=0.05, who='samepage.ksm.second', path=path):
                raise AssertionError('two holders at once')
    msg = caught.value.msg
    assert 'pid=%d program=samepage.ksm.first' % os.getpid() in msg
    assert 'within 0.05 s' in msg and 'lock_timeout' in msg and 'nothing was read or changed' in msg
    assert caught.value.details['holder'].startswith('pid=')
    with _ksm.host_lock(timeout=0, path=path):   # free again once the first is done
        pass


def test_lock_is_released_when_the_body_raises(tmp_path):
    path = str(tmp_path / 'samepage-ksm.lock')
    with pytest.raises(ValueError):
        with _ksm.host_lock(timeout=0, path=path):
            raise ValueError('boom')
    with _ksm.host_lock(timeout=0, path=path):
        pass
