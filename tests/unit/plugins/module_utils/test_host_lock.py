# -*- coding: utf-8 -*-
# Copyright: (c) 2026, samepage.ksm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""_ksm.host_lock: the one lock every writer of KSM state takes (issue #11), and the modules under it."""

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
