# -*- coding: utf-8 -*-
# Copyright: (c) 2026, samepage.ksm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""ksm_info on this machine's real kernel, through real `ansible` and `ansible-playbook` runs."""

import os

import pytest

from ansible_collections.samepage.ksm.plugins.module_utils import _ksm
from ansible_collections.samepage.ksm.tests.support.ansible_cli import run_module, run_playbook
from ansible_collections.samepage.ksm.tests.support.merge_workload import MergeableWorkload

pytestmark = pytest.mark.skipif(not os.path.isdir(_ksm.KSM_DIR), reason='this kernel has no KSM')

WORKLOAD_MIB = 32
MIN_SHARING = 1000   # of the 8192 pages of the workload
ALL = 100000         # max_processes that lists every process (lab guests may merge more than the workload)


@pytest.mark.every_controller
def test_reports_the_live_kernel_read_only():
    before = _ksm.Ksm().read_state()
    result = run_module('samepage.ksm.ksm_info', {'max_processes': 0})
    assert result['failed'] is False, result.output
    assert result['changed'] is False
    assert result['available'] is True
    capabilities = result['capabilities']
    assert capabilities['kernel_release'] == os.uname()[2]
    assert capabilities['page_size'] == os.sysconf('SC_PAGE_SIZE')
    assert capabilities['knobs'] == sorted(os.listdir(_ksm.KSM_DIR))
    assert capabilities['advisor'] == os.path.exists(os.path.join(_ksm.KSM_DIR, 'advisor_mode'))
    assert capabilities['numa_nodes_with_memory'] == _ksm.numa_nodes_with_memory()
    assert capabilities['per_process'] == [name for name in ('ksm_stat', 'ksm_merging_pages')
                                           if os.path.exists('/proc/self/' + name)]
    assert set(result['settings']) | set(result['counters']) == set(os.listdir(_ksm.KSM_DIR))
    # Without the host lock other tests may change values meanwhile: compare the types the kernel gives.
    for name, value in result['settings'].items():
        assert type(value) is type(before[name]), name
    assert result['processes'] == []


def test_check_mode_reports_and_changes_nothing():
    result = run_module('samepage.ksm.ksm_info', {'max_processes': 3}, check=True, diff=True)
    assert result['failed'] is False, result.output
    assert result['changed'] is False
    assert result['available'] is True
    assert 'diff' not in result or not result['diff']


def test_a_real_workload_shows_up_with_its_savings(ksm_host):
    ksm_host.set(run=1, pages_to_scan=5000)
    with MergeableWorkload(mib=WORKLOAD_MIB) as workload:
        workload.wait_for_sharing(MIN_SHARING, timeout=180)
        result = run_module('samepage.ksm.ksm_info', {'max_processes': ALL})
        checked = run_module('samepage.ksm.ksm_info', {'max_processes': ALL}, check=True)
        live = ksm_host.state()
    assert result['failed'] is False, result.output
    assert result['changed'] is False and checked['changed'] is False and checked['failed'] is False
    rows = {row['pid']: row for row in result['processes']}
    assert workload.pid in rows, result['processes']
    row = rows[workload.pid]
    assert row['merging_pages'] > 0
    assert row['merging_bytes'] == row['merging_pages'] * result['capabilities']['page_size']
    assert row['command'].startswith('python')
    merging = [item['merging_pages'] for item in result['processes']]
    assert merging == sorted(merging, reverse=True)

    assert result['settings']['run'] == 1 and result['settings']['pages_to_scan'] == 5000
    assert result['counters']['pages_sharing'] >= MIN_SHARING
    savings = result['savings']
    assert savings['bytes_saved'] == result['counters']['pages_sharing'] * result['capabilities']['page_size']
    assert savings['bytes_saved'] > 0
    assert savings['sharing_ratio'] > 1
    if 'general_profit' in live:
        assert savings['general_profit'] > 0
    assert workload.pid in [item['pid'] for item in checked['processes']]

    # bounded by max_processes
    one = run_module('samepage.ksm.ksm_info', {'max_processes': 1})
    assert len(one['processes']) <= 1


@pytest.mark.every_controller
def test_in_a_playbook(tmp_path, ksm_host):
    ksm_host.set(run=1, pages_to_scan=5000)
    playbook = tmp_path / 'info.yml'
    playbook.write_text(
        '- name: Report KSM\n'
        '  hosts: localhost\n'
        '  gather_facts: false\n'
        '  tasks:\n'
        '    - name: Read KSM\n'
        '      samepage.ksm.ksm_info:\n'
        '        max_processes: %d\n'
        '      register: ksm\n'
        '    - name: Read the top process only\n'
        '      samepage.ksm.ksm_info:\n'
        '        max_processes: 1\n'
        '      register: ksm_top\n'
        '    - name: Check what it says\n'
        '      ansible.builtin.assert:\n'
        '        that:\n'
        '          - ksm.available\n'
        '          - ksm is not changed\n'
        '          - ksm.settings.run == 1\n'
        '          - ksm.savings.bytes_saved == ksm.capabilities.page_size * ksm.counters.pages_sharing\n'
        '          - ksm.savings.bytes_saved > 0\n'
        '          - ksm_top.processes | length == 1\n'
        '          - ksm.capabilities.page_size > 0\n' % ALL)
    with MergeableWorkload(mib=WORKLOAD_MIB) as workload:
        workload.wait_for_sharing(MIN_SHARING, timeout=180)
        run = run_playbook(str(playbook))
        checked = run_playbook(str(playbook), check=True)
    assert run.rc == 0, run.output
    assert run.stats['localhost']['failed'] == 0 and run.stats['localhost']['changed'] == 0
    assert checked.rc == 0, checked.output
    result = run.results_for('Read KSM')[0]['result']
    assert workload.pid in [row['pid'] for row in result['processes']]
