# -*- coding: utf-8 -*-
# Copyright: (c) 2026, samepage.ksm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The writing modules under _ksm.host_lock (issue #11): they wait at most lock_timeout, then fail naming
the holder and change nothing; check mode does not wait; the lock is released after a run."""

import os

import pytest

from ansible_collections.samepage.ksm.plugins.module_utils import _ksm
from ansible_collections.samepage.ksm.plugins.modules import ksm_sysfs
from ansible_collections.samepage.ksm.plugins.modules import ksm_unmerge
from ansible_collections.samepage.ksm.tests.unit.plugins.modules.fake_host import FakeHost
from ansible_collections.samepage.ksm.tests.unit.plugins.modules.module_runner import run_main


@pytest.fixture(autouse=True)
def quick(monkeypatch):
    monkeypatch.setattr(_ksm, 'LOCK_POLL', 0.01)


@pytest.mark.parametrize('main, args', [
    (ksm_sysfs.main, {'pages_to_scan': 1000}),
    (ksm_unmerge.main, {}),
])
def test_module_fails_after_its_bounded_wait_naming_the_holder(tmp_path, monkeypatch, main, args):
    host = FakeHost(tmp_path, monkeypatch, run=1)
    host.kernel.share(10, 20)
    with _ksm.host_lock(timeout=0, who='samepage.ksm.ksm_tuner', path=host.lock_path):
        result = run_main(main, dict(args, lock_timeout=0))
        checked = run_main(main, dict(args, lock_timeout=0), check_mode=True)
    assert result['failed'] is True and result['changed'] is False
    assert 'program=samepage.ksm.ksm_tuner' in result['msg'] and 'pid=%d' % os.getpid() in result['msg']
    assert result['holder'].startswith('pid=%d' % os.getpid())
    assert host.kernel.writes == []
    # check mode only reads: it does not wait for the lock
    assert checked['failed'] is False and checked['changed'] is True


@pytest.mark.parametrize('main', [ksm_sysfs.main, ksm_unmerge.main])
def test_module_releases_the_lock(tmp_path, monkeypatch, main):
    host = FakeHost(tmp_path, monkeypatch, run=1)
    host.kernel.share(10, 20)
    result = run_main(main, {'pages_to_scan': 1000} if main is ksm_sysfs.main else {})
    assert result['failed'] is False, result['msg']
    with _ksm.host_lock(timeout=0, path=host.lock_path):
        pass
    assert _ksm.lock_holder(host.lock_path) == ''
