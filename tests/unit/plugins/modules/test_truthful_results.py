# -*- coding: utf-8 -*-
# Copyright: (c) 2026, samepage.ksm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Issue #11: `changed`, `msg` and every returned figure say only what happened, on the failure paths too.

Each test drives one failure path of a writing module against the fake kernel and compares the result
with what the kernel really did (its successful writes and its values afterwards).
"""

import errno

import pytest

from ansible_collections.samepage.ksm.plugins.module_utils import _ksm_boot
from ansible_collections.samepage.ksm.plugins.modules import ksm_sysfs
from ansible_collections.samepage.ksm.plugins.modules import ksm_unmerge
from ansible_collections.samepage.ksm.tests.unit.plugins.modules.fake_host import FakeHost
from ansible_collections.samepage.ksm.tests.unit.plugins.modules.module_runner import run_main


@pytest.fixture(autouse=True)
def units(tmp_path, monkeypatch):
    monkeypatch.setattr(_ksm_boot, 'UNIT_DIR', str(tmp_path / 'etc-systemd-system'))
    monkeypatch.setattr(_ksm_boot, 'SYSTEMD_RUN_DIR', str(tmp_path / 'run-systemd-system'))


def written(result):
    return [(item['knob'], item['value']) for item in result['writes']]


# -- ksm_unmerge --------------------------------------------------------------------------------------

def test_unmerge_refused_by_the_kernel_is_no_change(tmp_path, monkeypatch):
    """The kernel refuses run=2 (not root): nothing happened, and the result must not say otherwise."""
    host = FakeHost(tmp_path, monkeypatch, mode='unprivileged', run=1)
    host.kernel.share(1000, 16384)
    result = run_main(ksm_unmerge.main, {})
    assert result['failed'] is True and 'Cannot set run=2' in result['msg']
    assert host.kernel.successful_writes() == []
    assert result['changed'] is False
    assert result['pages_unmerged'] == 0 and result['bytes_unmerged'] == 0
    assert result['run_after'] == 1


def test_half_done_unmerge_reports_the_run_the_kernel_left(tmp_path, monkeypatch):
    host = FakeHost(tmp_path, monkeypatch, run=1)
    host.kernel.share(1000, 16384)
    host.kernel.unmerge_error = errno.ENOMEM
    result = run_main(ksm_unmerge.main, {})
    assert result['failed'] is True
    assert result['changed'] is True                   # the kernel put run from 1 to 0
    assert result['run_after'] == 0                    # not the run=2 that was asked for
    assert result['pages_unmerged'] == 0               # the counters read back unchanged


# -- ksm_sysfs ----------------------------------------------------------------------------------------

def test_failed_undo_is_reported_as_a_change(tmp_path, monkeypatch):
    """run=1 is refused and the undo of pages_to_scan is refused too: pages_to_scan stays changed."""
    host = FakeHost(tmp_path, monkeypatch)
    kernel = host.kernel

    def refuse_the_rest(fake, name, data):
        if name == 'pages_to_scan':
            fake.inject('pages_to_scan', errno.EPERM)
    kernel.after_write = refuse_the_rest
    kernel.inject('run', errno.ENOMEM)
    result = run_main(ksm_sysfs.main, {'pages_to_scan': 1000, 'run': True})
    assert result['failed'] is True and 'Could not undo' in result['msg']
    assert kernel.values['pages_to_scan'] == 1000
    assert result['changed'] is True
    assert written(result) == [('pages_to_scan', 1000)]
    assert result['after']['pages_to_scan'] == 1000 and result['before']['pages_to_scan'] == 100


def test_refused_write_with_everything_undone_is_no_change(tmp_path, monkeypatch):
    host = FakeHost(tmp_path, monkeypatch)
    host.kernel.inject('run', errno.ENOMEM)
    result = run_main(ksm_sysfs.main, {'pages_to_scan': 1000, 'run': True})
    assert result['failed'] is True and 'undone' in result['msg']
    assert result['changed'] is False
    assert result['after'] == result['before']
    assert written(result) == [('pages_to_scan', 1000), ('pages_to_scan', 100)]   # the write and its undo


def test_unmerge_then_refused_knob_is_a_change(tmp_path, monkeypatch):
    """unmerge_if_busy unmerged every page, then the knob was refused: the unmerge happened."""
    host = FakeHost(tmp_path, monkeypatch, run=1)
    kernel = host.kernel
    kernel.share(1000, 16384)
    kernel.inject('max_page_sharing', errno.EBUSY, times=2)
    result = run_main(ksm_sysfs.main, {'max_page_sharing': 1024, 'unmerge_if_busy': True})
    assert result['failed'] is True
    assert kernel.unmerges == 2 and kernel.values['run'] == 1
    assert result['changed'] is True
    assert ('run', 2) in written(result)
    assert result['after']['max_page_sharing'] == 256 and result['after']['run'] == 1


# -- ksm_service ---------------------------------------------------------------------------------------

def test_service_failed_start_is_not_reported_as_an_action_and_the_enable_is_a_change(tmp_path, monkeypatch):
    """enable succeeds, then `systemctl start` fails (the unit's process exits with an error): actions lists
    what systemctl did (the enable, not the start), and the enable makes the failed task a change."""
    from ansible_collections.samepage.ksm.tests.unit.fakes import systemd as fakes
    from ansible_collections.samepage.ksm.tests.unit.plugins.modules.test_ksm_service import Host
    from ansible_collections.samepage.ksm.plugins.modules import ksm_service

    systemd = fakes.debian(active=False, enabled='disabled')
    real = systemd.run_command

    def start_fails(args, **kwargs):
        words = [arg for arg in args[1:] if arg != '--']
        if args[0].endswith('systemctl') and words[:1] == ['start']:
            systemd.calls.append(list(args))
            return 1, '', ('Job for ksmtuned.service failed because the control process exited with error code.\n'
                           'See "systemctl status ksmtuned.service" and "journalctl -xeu ksmtuned.service" for details.\n')
        return real(args, **kwargs)
    systemd.run_command = start_fails
    Host(tmp_path, monkeypatch, systemd)
    result = run_main(ksm_service.main, {'name': 'ksmtuned', 'state': 'started', 'enabled': True})
    assert result['failed'] is True and 'systemctl start -- ksmtuned.service failed' in result['msg']
    assert systemd.unit('ksmtuned.service').enablement == 'enabled'    # the enable did happen
    assert result['actions'] == ['enable ksmtuned.service']
    assert result['changed'] is True
