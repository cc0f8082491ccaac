# -*- coding: utf-8 -*-
# Copyright: (c) 2026, samepage.ksm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""ksm_unmerge on this machine's real kernel with really merged pages, through real ansible runs.

Every test holds the host lock (ksm_host fixture), makes ksmd merge the pages of a helper process,
and leaves the host as it found it (the guard unmerges and restores every knob).
"""

import pytest

from ansible_collections.samepage.ksm.plugins.module_utils import _ksm
from ansible_collections.samepage.ksm.tests.support.ansible_cli import run_module, run_playbook
from ansible_collections.samepage.ksm.tests.support.merge_workload import MergeableWorkload

MODULE = 'samepage.ksm.ksm_unmerge'
WORKLOAD_MIB = 32
MIN_SHARING = 1000   # of the 8192 pages of the workload


def sharing(state):
    return {name: state[name] for name in _ksm.SHARING_COUNTERS if name in state}


@pytest.fixture
def merged(ksm_host):
    """ksmd running fast with a workload's pages merged; yields (host, workload)."""
    ksm_host.set(run=1, pages_to_scan=5000)
    with MergeableWorkload(mib=WORKLOAD_MIB) as workload:
        workload.wait_for_sharing(MIN_SHARING, timeout=180)
        yield ksm_host, workload


@pytest.mark.every_controller
def test_four_steps_with_real_merged_pages(merged):
    host, workload = merged

    checked = run_module(MODULE, check=True, diff=True)
    assert checked['failed'] is False, checked.output
    assert checked['changed'] is True
    assert checked['pages_unmerged'] >= MIN_SHARING
    assert checked['needed_bytes'] == checked['bytes_unmerged'] > 0
    assert checked['budget_bytes'] > checked['needed_bytes']
    assert checked['msg'].startswith('Would unmerge')
    assert checked['diff']['before']['run'] == 1 and checked['diff']['after']['run'] == 2
    state = host.state()
    assert state['run'] == 1, 'check mode changed run'
    assert state['pages_sharing'] > 0 and state['pages_shared'] > 0, 'check mode unmerged'
    assert workload.merging_pages() > 0

    applied = run_module(MODULE, diff=True)
    assert applied['failed'] is False, applied.output
    assert applied['changed'] is True
    assert applied['pages_unmerged'] > 0 and applied['bytes_unmerged'] > 0
    assert applied['duration'] >= 0 and applied['run_after'] == 2
    assert set(applied['memory_before']) == set(applied['memory_after']) == {'mem_total', 'mem_available',
                                                                             'swap_free'}
    assert any('cgroup' in warning for warning in applied.get('warnings', [])), applied.get('warnings')
    state = host.state()
    assert state['run'] == 2
    assert sharing(state) == dict.fromkeys(sharing(state), 0)
    assert workload.merging_pages() == 0
    assert applied['diff']['after'] == dict(sharing(state), run=2)

    again = run_module(MODULE)
    assert again['failed'] is False, again.output
    assert again['changed'] is False and again['pages_unmerged'] == 0

    checked_again = run_module(MODULE, check=True)
    assert checked_again['failed'] is False, checked_again.output
    assert checked_again['changed'] is False
    state = host.state()
    assert state['run'] == 2 and not _ksm.sharing_left(state)


def test_ksmd_running_leaves_ksmd_running(merged):
    host, workload = merged
    result = run_module(MODULE, {'ksmd': 'running'})
    assert result['failed'] is False, result.output
    assert result['changed'] is True
    assert result['pages_unmerged'] >= MIN_SHARING
    assert result['run_after'] == 1
    # the module verified zero sharing between run=2 and run=1; ksmd may merge again from here on
    assert host.state()['run'] == 1


def test_refusal_when_the_margin_leaves_no_room_then_force(merged):
    host, workload = merged
    refused = run_module(MODULE, {'memory_margin': '100%'})
    assert refused['failed'] is True
    assert refused['changed'] is False
    msg = refused['msg']
    assert 'Refusing to unmerge' in msg
    assert _ksm.human_bytes(refused['needed_bytes']) in msg           # what it needs
    assert 'MemAvailable' in msg and 'safety margin' in msg            # what it may use, and why
    assert refused['budget_bytes'] < 0 < refused['needed_bytes']
    state = host.state()
    assert state['run'] == 1 and state['pages_sharing'] > 0, 'a refusal changed something'
    assert workload.merging_pages() > 0

    # check mode predicts the same refusal
    assert run_module(MODULE, {'memory_margin': '100%'}, check=True)['failed'] is True
    assert host.state()['pages_sharing'] > 0

    forced = run_module(MODULE, {'memory_margin': '100%', 'force': True})
    assert forced['failed'] is False, forced.output
    assert forced['changed'] is True and forced['pages_unmerged'] > 0
    assert any(warning.startswith('force=true') for warning in forced.get('warnings', []))
    state = host.state()
    assert state['run'] == 2 and not _ksm.sharing_left(state)


@pytest.mark.every_controller
def test_in_a_playbook_estimate_then_unmerge(tmp_path, merged):
    host, workload = merged
    playbook = tmp_path / 'unmerge.yml'
    playbook.write_text(
        '- name: Unmerge KSM\n'
        '  hosts: localhost\n'
        '  gather_facts: false\n'
        '  tasks:\n'
        '    - name: Estimate\n'
        '      samepage.ksm.ksm_unmerge:\n'
        '      check_mode: true\n'
        '      register: estimate\n'
        '    - name: Unmerge\n'
        '      samepage.ksm.ksm_unmerge:\n'
        '        memory_margin: 1G\n'
        '      register: done\n'
        '    - name: Compare\n'
        '      ansible.builtin.assert:\n'
        '        that:\n'
        '          - (estimate is changed) == expect_change\n'
        '          - (done is changed) == expect_change\n'
        '          - (done.pages_unmerged > 0) == expect_change\n'
        '          - estimate.needed_bytes <= estimate.budget_bytes\n')
    run = run_playbook(str(playbook), extra_vars={'expect_change': True})
    assert run.rc == 0, run.output
    assert run.stats['localhost']['changed'] == 2 and run.stats['localhost']['failed'] == 0
    state = host.state()
    assert state['run'] == 2 and not _ksm.sharing_left(state)
    rerun = run_playbook(str(playbook), extra_vars={'expect_change': False})
    assert rerun.rc == 0, rerun.output
    assert rerun.stats['localhost']['changed'] == 0 and rerun.stats['localhost']['failed'] == 0
