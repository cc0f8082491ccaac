# -*- coding: utf-8 -*-
# Copyright: (c) 2026, samepage.ksm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""ksm_unmerge against the fake kernel and a fake /proc/meminfo."""

import errno

import pytest

from ansible_collections.samepage.ksm.plugins.module_utils import _ksm
from ansible_collections.samepage.ksm.plugins.modules import ksm_unmerge
from ansible_collections.samepage.ksm.tests.unit.fakes.kernel import PAGE_SIZE
from ansible_collections.samepage.ksm.tests.unit.plugins.modules.fake_host import GIB, FakeHost
from ansible_collections.samepage.ksm.tests.unit.plugins.modules.module_runner import run_main

MIB = 1024 ** 2


def unmerge(args=None, check_mode=False, diff=False):
    return run_main(ksm_unmerge.main, args, check_mode=check_mode, diff=diff)


@pytest.fixture
def shared(tmp_path, monkeypatch):
    """ksmd running with 64 MiB merged (1000 KSM pages shared by 16384 mappings)."""
    host = FakeHost(tmp_path, monkeypatch, run=1)
    host.kernel.share(pages_shared=1000, pages_sharing=16384, ksm_zero_pages=0)
    return host


def counters(kernel):
    return {name: kernel.values[name] for name in ('run', 'pages_shared', 'pages_sharing', 'ksm_zero_pages')
            if name in kernel.values}


def test_four_steps_unmerge_and_stop(shared):
    kernel = shared.kernel
    checked = unmerge(check_mode=True, diff=True)
    assert checked['failed'] is False and checked['changed'] is True
    assert kernel.writes == []
    assert counters(kernel) == {'run': 1, 'pages_shared': 1000, 'pages_sharing': 16384, 'ksm_zero_pages': 0}
    assert checked['pages_unmerged'] == 16384 and checked['bytes_unmerged'] == 64 * MIB
    assert checked['needed_bytes'] == 64 * MIB
    assert checked['budget_bytes'] == 20 * GIB - int(24 * GIB * 0.05)
    assert checked['msg'].startswith('Would unmerge 16384 pages (64.0 MiB)')
    assert checked['duration'] == 0.0
    assert 'memory_after' not in checked
    assert checked['diff'] == {
        'before': {'run': 1, 'pages_shared': 1000, 'pages_sharing': 16384, 'ksm_zero_pages': 0},
        'after': {'run': 2, 'pages_shared': 0, 'pages_sharing': 0, 'ksm_zero_pages': 0},
    }

    applied = unmerge(diff=True)
    assert applied['failed'] is False and applied['changed'] is True
    assert kernel.successful_writes() == [('run', '2')]
    assert counters(kernel) == {'run': 2, 'pages_shared': 0, 'pages_sharing': 0, 'ksm_zero_pages': 0}
    assert applied['pages_unmerged'] == 16384 and applied['bytes_unmerged'] == 64 * MIB
    assert applied['run_before'] == 1 and applied['run_after'] == 2
    assert applied['diff'] == checked['diff']
    assert applied['msg'].startswith('Unmerged 16384 pages (64.0 MiB) in ')
    assert set(applied['memory_after']) == {'mem_total', 'mem_available', 'swap_free'}
    assert any('cgroup' in warning and 'MemoryMax' in warning for warning in applied['warnings'])

    again = unmerge()
    assert again['failed'] is False and again['changed'] is False
    assert again['pages_unmerged'] == 0 and again['warnings'] == []
    assert 'Nothing is shared' in again['msg']
    checked_again = unmerge(check_mode=True)
    assert checked_again['changed'] is False
    assert kernel.successful_writes() == [('run', '2')]


def test_ksmd_running_unmerges_then_starts_ksmd(shared):
    kernel = shared.kernel
    checked = unmerge({'ksmd': 'running'}, check_mode=True, diff=True)
    assert checked['changed'] is True and kernel.writes == []
    assert checked['diff']['after']['run'] == 1
    result = unmerge({'ksmd': 'running'})
    assert result['failed'] is False and result['changed'] is True
    assert kernel.successful_writes() == [('run', '2'), ('run', '1')]
    assert counters(kernel) == {'run': 1, 'pages_shared': 0, 'pages_sharing': 0, 'ksm_zero_pages': 0}
    assert result['run_after'] == 1 and result['pages_unmerged'] == 16384
    # ksmd runs and nothing is merged yet: in place
    assert unmerge({'ksmd': 'running'})['changed'] is False
    assert unmerge({'ksmd': 'running'}, check_mode=True)['changed'] is False


def test_refused_when_it_does_not_fit_with_both_figures(shared):
    shared.meminfo(mem_total=8 * GIB, mem_available=100 * MIB, swap_free=0)
    result = unmerge({'memory_margin': '64M'})
    assert result['failed'] is True and result['changed'] is False
    assert result['needed_bytes'] == 64 * MIB
    assert result['budget_bytes'] == 36 * MIB
    assert 'Refusing to unmerge' in result['msg']
    assert '64.0 MiB' in result['msg'] and '36.0 MiB' in result['msg']
    assert 'pages_sharing=16384' in result['msg'] and 'force=true' in result['msg']
    assert shared.kernel.writes == []
    # check mode predicts the same refusal
    assert unmerge({'memory_margin': '64M'}, check_mode=True)['failed'] is True
    assert shared.kernel.writes == []


def test_margin_of_everything_refuses_even_a_small_unmerge(shared):
    result = unmerge({'memory_margin': '100%'})
    assert result['failed'] is True
    assert result['budget_bytes'] < 0
    assert '64.0 MiB' in result['msg'] and 'safety margin 24.0 GiB' in result['msg']
    assert shared.kernel.writes == []


def test_free_swap_counts(shared):
    shared.meminfo(mem_total=8 * GIB, mem_available=40 * MIB, swap_free=40 * MIB)
    assert unmerge({'memory_margin': '0'}, check_mode=True)['failed'] is False
    assert unmerge({'memory_margin': '17M'}, check_mode=True)['failed'] is True


def test_force_unmerges_anyway_with_a_warning(shared):
    shared.meminfo(mem_total=8 * GIB, mem_available=10 * MIB)
    result = unmerge({'force': True})
    assert result['failed'] is False and result['changed'] is True
    assert result['needed_bytes'] > result['budget_bytes']
    assert any(warning.startswith('force=true') and 'Refusing to unmerge' in warning
               for warning in result['warnings'])
    assert counters(shared.kernel)['pages_sharing'] == 0


@pytest.mark.parametrize('code, reason', [
    (errno.ENOMEM, 'ran out of memory'),
    (errno.EINTR, 'interrupted by a signal'),
])
def test_half_done_unmerge_is_a_failure_that_says_so(shared, code, reason):
    shared.kernel.unmerge_error = code
    result = unmerge({'ksmd': 'running'})
    assert result['failed'] is True
    assert reason in result['msg'] and 'half done' in result['msg'] and 'run=0' in result['msg']
    # what the kernel left, read back
    assert 'Read back afterwards: run=0, pages_shared=1000, pages_sharing=16384, ksm_zero_pages=0' in result['msg']
    assert result['changed'] is True
    # ksmd is not started again after a failed unmerge
    assert shared.kernel.successful_writes() == []
    assert shared.kernel.values['run'] == 0


def test_pages_still_shared_after_a_successful_write_fail(shared):
    def merged_again(kernel, name, data):
        if name == 'run' and data.strip() == '2':
            kernel.share(pages_shared=3, pages_sharing=5)    # another writer started ksmd meanwhile
    shared.kernel.after_write = merged_again
    result = unmerge()
    assert result['failed'] is True
    assert 'still shared' in result['msg']
    assert 'pages_shared=3' in result['msg'] and 'pages_sharing=5' in result['msg']


def test_nothing_shared_but_ksmd_running_writes_run_2(tmp_path, monkeypatch):
    host = FakeHost(tmp_path, monkeypatch, run=1)
    checked = unmerge(check_mode=True)
    assert checked['changed'] is True and host.kernel.writes == []
    assert checked['msg'].startswith('Would write run=2')
    result = unmerge()
    assert result['changed'] is True and result['pages_unmerged'] == 0
    assert host.kernel.successful_writes() == [('run', '2')]
    assert not any('cgroup' in warning for warning in result['warnings'])
    assert unmerge()['changed'] is False


def test_stopping_with_nothing_shared_needs_no_memory_check(tmp_path, monkeypatch):
    host = FakeHost(tmp_path, monkeypatch, run=1)
    result = unmerge({'memory_margin': '100%'})
    assert result['failed'] is False and result['changed'] is True
    assert result['needed_bytes'] == 0 and result['budget_bytes'] < 0
    assert host.kernel.successful_writes() == [('run', '2')]


@pytest.mark.parametrize('run', [0, 2])
def test_stopped_and_nothing_shared_is_in_place(tmp_path, monkeypatch, run):
    host = FakeHost(tmp_path, monkeypatch, run=run)
    for check_mode in (True, False):
        result = unmerge(check_mode=check_mode, diff=True)
        assert result['failed'] is False and result['changed'] is False
        assert result['diff']['before'] == result['diff']['after']
    assert host.kernel.writes == []


def test_running_wanted_from_stopped_and_nothing_shared_writes_run_1_only(tmp_path, monkeypatch):
    host = FakeHost(tmp_path, monkeypatch, run=0)
    result = unmerge({'ksmd': 'running'})
    assert result['changed'] is True
    assert host.kernel.successful_writes() == [('run', '1')]
    assert result['msg'].startswith('Wrote run=1')


def test_shared_with_run_already_2_forces_a_new_unmerge(tmp_path, monkeypatch):
    host = FakeHost(tmp_path, monkeypatch, run=2)
    host.kernel.share(pages_shared=1, pages_sharing=4)
    result = unmerge()
    assert result['changed'] is True
    assert host.kernel.successful_writes() == [('run', '0'), ('run', '2')]
    assert counters(host.kernel)['pages_sharing'] == 0


def test_zero_pages_count_in_the_estimate(tmp_path, monkeypatch):
    host = FakeHost(tmp_path, monkeypatch, run=1, use_zero_pages=1)
    host.kernel.share(pages_shared=0, pages_sharing=0, ksm_zero_pages=256)
    result = unmerge(check_mode=True)
    assert result['changed'] is True
    assert result['needed_bytes'] == 256 * PAGE_SIZE and result['pages_unmerged'] == 256
    unmerge()
    assert host.kernel.values['ksm_zero_pages'] == 0


def test_kernel_6_1_without_ksm_zero_pages(tmp_path, monkeypatch):
    host = FakeHost(tmp_path, monkeypatch, preset='6.1', run=1)
    host.kernel.share(pages_shared=2, pages_sharing=9)
    result = unmerge(diff=True)
    assert result['failed'] is False and result['pages_unmerged'] == 9
    assert result['diff']['after'] == {'run': 2, 'pages_shared': 0, 'pages_sharing': 0}


def test_no_ksm_stopped_is_fine_running_fails(tmp_path, monkeypatch):
    FakeHost(tmp_path, monkeypatch, preset='absent')
    result = unmerge()
    assert result['failed'] is False and result['changed'] is False
    assert 'no KSM' in result['msg']
    result = unmerge({'ksmd': 'running'})
    assert result['failed'] is True and 'no KSM' in result['msg']


def test_not_root(tmp_path, monkeypatch):
    host = FakeHost(tmp_path, monkeypatch, mode='unprivileged', run=1)
    host.kernel.share(1, 2)
    monkeypatch.setattr(_ksm.os, 'geteuid', lambda: 1000)
    result = unmerge()
    assert result['failed'] is True
    assert 'Cannot set run=2' in result['msg'] and 'become' in result['msg']


def test_ksmtuned_is_warned_about(shared):
    shared.add_process(4000, 'ksmtuned')
    result = unmerge(check_mode=True)
    assert any(warning.startswith('ksmtuned is running') for warning in result['warnings'])


@pytest.mark.parametrize('margin', ['lots', '-5%', '101%', '5 %%'])
def test_invalid_margin(shared, margin):
    result = unmerge({'memory_margin': margin})
    assert result['failed'] is True
    assert 'memory margin' in result['msg'] and repr(margin) in result['msg']
    assert shared.kernel.writes == []


def test_invalid_ksmd_choice(shared):
    result = unmerge({'ksmd': 'paused'})
    assert result['failed'] is True and 'ksmd' in result['msg']
