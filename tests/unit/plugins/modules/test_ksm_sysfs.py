# -*- coding: utf-8 -*-
# Copyright: (c) 2026, samepage.ksm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""ksm_sysfs against the fake kernel (tests/unit/fakes/kernel.py), a fake /proc and NUMA nodes, and a
temporary systemd unit directory for persistence."""

import errno
import os

import pytest

from ansible.module_utils import basic

from ansible_collections.samepage.ksm.plugins.module_utils import _ksm
from ansible_collections.samepage.ksm.plugins.module_utils import _ksm_boot
from ansible_collections.samepage.ksm.plugins.modules import ksm_sysfs
from ansible_collections.samepage.ksm.tests.support.four_steps import four_steps as shared_four_steps
from ansible_collections.samepage.ksm.tests.unit.fakes.kernel import PAGE_SIZE
from ansible_collections.samepage.ksm.tests.unit.plugins.modules.fake_host import GIB, FakeHost
from ansible_collections.samepage.ksm.tests.unit.plugins.modules.module_runner import run_main

MIB = 1024 ** 2
ALL_KNOBS = set(_ksm.WRITE_ORDER)


def sysfs(args=None, check_mode=False, diff=False):
    return run_main(ksm_sysfs.main, args, check_mode=check_mode, diff=diff)


@pytest.fixture(autouse=True)
def units(tmp_path, monkeypatch):
    """Every test gets its own systemd unit directory (never /etc) and no running systemd."""
    unit_dir = tmp_path / 'etc-systemd-system'
    monkeypatch.setattr(_ksm_boot, 'UNIT_DIR', str(unit_dir))
    monkeypatch.setattr(_ksm_boot, 'SYSTEMD_RUN_DIR', str(tmp_path / 'run-systemd-system'))
    return unit_dir


@pytest.fixture
def host(tmp_path, monkeypatch):
    return FakeHost(tmp_path, monkeypatch)


def four_steps(kernel, args, diff=False):
    """check (changed), apply (changed), apply (unchanged), check (unchanged); returns the four results."""
    assert kernel.writes == [], 'the fake kernel was written before the four steps'
    results = shared_four_steps(lambda check: sysfs(args, check_mode=check, diff=diff),
                                observe=lambda: list(kernel.writes), describe=lambda result: result['msg'])
    assert results[2]['writes'] == []
    return results


# ---------------------------------------------------------------------------------------------------
# Plain changes

def test_int_knob_four_steps(host):
    kernel = host.kernel
    checked, applied, again, dummy = four_steps(kernel, {'pages_to_scan': 1000})
    assert kernel.writes == [('pages_to_scan', '1000')]
    assert kernel.values['pages_to_scan'] == 1000
    assert checked['writes'] == applied['writes'] == [{'knob': 'pages_to_scan', 'value': 1000}]
    assert checked['after'] == applied['after']
    assert applied['before']['pages_to_scan'] == 100 and applied['after']['pages_to_scan'] == 1000
    assert again['before'] == again['after'] == applied['after']
    assert checked['msg'] == 'Would set pages_to_scan=1000'
    assert applied['msg'] == 'Set pages_to_scan=1000'
    assert again['msg'] == 'Nothing to change'


def test_before_and_after_have_every_writable_knob_typed(host):
    result = sysfs({'use_zero_pages': True})
    for key in ('before', 'after'):
        assert set(result[key]) == ALL_KNOBS
        assert result[key]['use_zero_pages'] is (key == 'after')
        assert result[key]['smart_scan'] is True
        assert result[key]['advisor_mode'] == 'none'
        assert result[key]['run'] == 0 and not isinstance(result[key]['run'], bool)
        assert result[key]['merge_across_nodes'] == 1
    assert result['skipped_knobs'] == [] and result['numa_nodes'] == [0]
    assert 'skipped' not in result   # Ansible would read a true `skipped` as "task skipped"
    assert result['competing_managers'] == {}


def test_bool_knob_four_steps_sends_0_or_1(host):
    kernel = host.kernel
    four_steps(kernel, {'smart_scan': False})
    assert kernel.writes == [('smart_scan', '0')]
    assert kernel.values['smart_scan'] == 0


def test_run_four_steps_and_run_last(host):
    kernel = host.kernel
    four_steps(kernel, {'run': True, 'sleep_millisecs': 50, 'pages_to_scan': 500})
    assert kernel.writes == [('pages_to_scan', '500'), ('sleep_millisecs', '50'), ('run', '1')]


def test_run_false_is_satisfied_by_run_2(tmp_path, monkeypatch):
    host = FakeHost(tmp_path, monkeypatch, run=2)
    result = sysfs({'run': False})
    assert result['changed'] is False and host.kernel.writes == []
    assert result['after']['run'] == 2


def test_run_false_stops_ksmd(tmp_path, monkeypatch):
    host = FakeHost(tmp_path, monkeypatch, run=1)
    four_steps(host.kernel, {'run': False})
    assert host.kernel.writes == [('run', '0')]


def test_several_knobs_in_the_kernels_order(host):
    kernel = host.kernel
    args = {'run': True, 'max_page_sharing': 512, 'stable_node_chains_prune_millisecs': 5000,
            'use_zero_pages': True, 'sleep_millisecs': 10, 'pages_to_scan': 2000, 'advisor_max_cpu': 50,
            'merge_across_nodes': 'never', 'smart_scan': False}
    checked, applied, dummy, dummy = four_steps(kernel, args)
    names = [name for name, dummy in kernel.writes]
    assert names == [name for name in _ksm.WRITE_ORDER if name in names]
    assert names[-1] == 'run' and len(names) == len(args)
    assert [item['knob'] for item in checked['writes']] == names
    assert checked['after'] == applied['after']


def test_advisor_mode_resets_pages_to_scan_as_predicted(host):
    kernel = host.kernel
    checked, applied, dummy, dummy = four_steps(kernel, {'advisor_mode': 'scan-time', 'advisor_min_pages_to_scan': 800})
    assert kernel.writes == [('advisor_min_pages_to_scan', '800'), ('advisor_mode', 'scan-time')]
    assert applied['after']['pages_to_scan'] == 800 == checked['after']['pages_to_scan']


def test_leaving_the_advisor_writes_pages_to_scan_after_the_mode(tmp_path, monkeypatch):
    host = FakeHost(tmp_path, monkeypatch, advisor_mode='scan-time', pages_to_scan=500)
    four_steps(host.kernel, {'advisor_mode': 'none', 'pages_to_scan': 500})
    # the mode switch resets pages_to_scan to 100, so 500 must be written again afterwards
    assert host.kernel.writes == [('advisor_mode', 'none'), ('pages_to_scan', '500')]
    assert host.kernel.values['pages_to_scan'] == 500


def test_pages_to_scan_while_the_advisor_owns_it_fails_and_writes_nothing(tmp_path, monkeypatch):
    host = FakeHost(tmp_path, monkeypatch, advisor_mode='scan-time')
    result = sysfs({'pages_to_scan': 1000, 'sleep_millisecs': 5})
    assert result['failed'] is True
    assert 'pages_to_scan' in result['msg'] and 'scan-time' in result['msg'] and 'advisor_mode=none' in result['msg']
    assert result['knob'] == 'pages_to_scan'
    assert host.kernel.writes == []


def test_pages_to_scan_with_advisor_turned_on_in_the_same_task_fails(host):
    result = sysfs({'pages_to_scan': 1000, 'advisor_mode': 'scan-time'})
    assert result['failed'] is True and 'pages_to_scan' in result['msg']
    assert host.kernel.writes == []


# ---------------------------------------------------------------------------------------------------
# Bad input: named knob, nothing written

@pytest.mark.parametrize('args, knob', [
    ({'pages_to_scan': -1}, 'pages_to_scan'),
    ({'pages_to_scan': 2 ** 32}, 'pages_to_scan'),
    ({'sleep_millisecs': 2 ** 32}, 'sleep_millisecs'),
    ({'max_page_sharing': 1}, 'max_page_sharing'),
    ({'max_page_sharing': 2 ** 31}, 'max_page_sharing'),
    ({'advisor_target_scan_time': 0}, 'advisor_target_scan_time'),
    ({'advisor_max_cpu': 2 ** 32}, 'advisor_max_cpu'),
    ({'advisor_min_pages_to_scan': 2 ** 64}, 'advisor_min_pages_to_scan'),
    ({'stable_node_chains_prune_millisecs': -5}, 'stable_node_chains_prune_millisecs'),
    ({'pages_to_scan': 'lots'}, 'pages_to_scan'),
    ({'use_zero_pages': 'maybe'}, 'use_zero_pages'),
    ({'run': 2}, 'run'),
    ({'advisor_mode': 'SCAN-TIME'}, 'advisor_mode'),
    ({'merge_across_nodes': 'sometimes'}, 'merge_across_nodes'),
    ({'persist_mode': 'append'}, 'persist_mode'),
    ({'memory_margin': 'a lot'}, 'memory_margin'),
    ({'memory_margin': '150%'}, 'memory_margin'),
])
def test_invalid_value_names_the_knob_and_writes_nothing(host, args, knob):
    args = dict(args, run=True, sleep_millisecs=args.get('sleep_millisecs', 5), persist=True) \
        if knob not in ('run', 'sleep_millisecs') else dict(args, persist=True)
    before = host.kernel.settings()
    result = sysfs(args)
    assert result['failed'] is True
    assert knob in result['msg']
    assert host.kernel.writes == []
    assert host.kernel.settings() == before
    assert not os.path.exists(_ksm_boot.UNIT_DIR)


def test_invalid_value_fails_in_check_mode_too(host):
    result = sysfs({'pages_to_scan': -1}, check_mode=True)
    assert result['failed'] is True and 'pages_to_scan' in result['msg']


# ---------------------------------------------------------------------------------------------------
# Kernels without some knobs

def test_missing_knob_fails_by_default_naming_it(tmp_path, monkeypatch):
    host = FakeHost(tmp_path, monkeypatch, preset='6.1', kernel_release='6.1.0-40-amd64')
    result = sysfs({'advisor_mode': 'scan-time', 'pages_to_scan': 200})
    assert result['failed'] is True
    assert 'advisor_mode is not available on this kernel (6.1.0-40-amd64)' in result['msg']
    assert 'skip_missing=true' in result['msg'] and '6.8' in result['msg']
    assert host.kernel.writes == []


def test_missing_knobs_skipped_with_a_warning(tmp_path, monkeypatch):
    host = FakeHost(tmp_path, monkeypatch, preset='6.1', kernel_release='6.1.0-40-amd64')
    args = {'advisor_mode': 'scan-time', 'smart_scan': False, 'use_zero_pages': True, 'skip_missing': True}
    checked = sysfs(args, check_mode=True)
    assert checked['changed'] is True and checked['skipped_knobs'] == ['advisor_mode', 'smart_scan']
    result = sysfs(args)
    assert result['failed'] is False and result['changed'] is True
    assert result['skipped_knobs'] == ['advisor_mode', 'smart_scan'] and 'skipped' not in result
    assert host.kernel.writes == [('use_zero_pages', '1')]
    assert any('advisor_mode, smart_scan' in warning and 'skip_missing' in warning for warning in result['warnings'])
    assert set(result['before']) == set(result['after']) == ALL_KNOBS - {
        'advisor_mode', 'advisor_max_cpu', 'advisor_min_pages_to_scan', 'advisor_max_pages_to_scan',
        'advisor_target_scan_time', 'smart_scan'}
    again = sysfs(args)
    assert again['changed'] is False and again['skipped_knobs'] == ['advisor_mode', 'smart_scan']


def test_skipped_knobs_are_not_persisted(tmp_path, monkeypatch):
    FakeHost(tmp_path, monkeypatch, preset='6.1')
    result = sysfs({'advisor_mode': 'scan-time', 'pages_to_scan': 300, 'skip_missing': True, 'persist': True})
    assert result['persisted'] == {'pages_to_scan': 300}


def test_no_ksm_at_all(tmp_path, monkeypatch):
    FakeHost(tmp_path, monkeypatch, preset='absent')
    result = sysfs({'run': True})
    assert result['failed'] is True and 'this kernel has no KSM' in result['msg']


# ---------------------------------------------------------------------------------------------------
# Where the kernel refuses

def test_read_only_sys(tmp_path, monkeypatch):
    host = FakeHost(tmp_path, monkeypatch, mode='readonly')
    result = sysfs({'pages_to_scan': 1000, 'run': True})
    assert result['failed'] is True
    assert 'Cannot set pages_to_scan=1000' in result['msg'] and 'read-only' in result['msg']
    assert result['errno'] == errno.EROFS
    assert host.kernel.settings()['pages_to_scan'] == 100


def test_permission_denied(tmp_path, monkeypatch):
    host = FakeHost(tmp_path, monkeypatch, mode='unprivileged')
    result = sysfs({'sleep_millisecs': 30})
    assert result['failed'] is True and 'permission denied' in result['msg']
    assert host.kernel.settings()['sleep_millisecs'] == 20


def test_failed_write_undoes_earlier_writes(host):
    host.kernel.inject('run', errno.ENOMEM)
    result = sysfs({'pages_to_scan': 1000, 'sleep_millisecs': 50, 'run': True})
    assert result['failed'] is True
    assert 'Cannot set run=1' in result['msg'] and 'undone' in result['msg']
    assert host.kernel.settings()['pages_to_scan'] == 100 and host.kernel.settings()['sleep_millisecs'] == 20


# ---------------------------------------------------------------------------------------------------
# NUMA policy

@pytest.mark.parametrize('nodes, policy, value', [
    ('0', 'auto', 1), ('0-1', 'auto', 0), ('0,2', 'auto', 0), ('0-1', 'always', 1), ('0', 'never', 0),
])
def test_merge_across_nodes_policy(tmp_path, monkeypatch, nodes, policy, value):
    host = FakeHost(tmp_path, monkeypatch, nodes=nodes)
    result = sysfs({'merge_across_nodes': policy})
    assert result['failed'] is False
    assert host.kernel.values['merge_across_nodes'] == value
    assert result['after']['merge_across_nodes'] == value
    assert result['numa_nodes'] == _ksm.parse_cpulist(nodes)
    assert result['changed'] is (value != 1)


def test_merge_across_nodes_auto_on_a_kernel_without_numa(tmp_path, monkeypatch):
    host = FakeHost(tmp_path, monkeypatch, preset='no-numa')
    result = sysfs({'merge_across_nodes': 'auto', 'persist': True})
    assert result['failed'] is False and result['changed'] is False
    assert host.kernel.writes == [] and result['persisted'] == {}
    explicit = sysfs({'merge_across_nodes': 'never'})
    assert explicit['failed'] is True and 'NUMA' in explicit['msg']


# ---------------------------------------------------------------------------------------------------
# EBUSY: merge_across_nodes / max_page_sharing while pages are shared

@pytest.fixture
def shared(tmp_path, monkeypatch):
    """ksmd running with 64 MiB merged (1000 KSM pages, 16384 mappings)."""
    host = FakeHost(tmp_path, monkeypatch, run=1)
    host.kernel.share(pages_shared=1000, pages_sharing=16384)
    return host


@pytest.mark.parametrize('check_mode', [False, True])
def test_busy_change_refused_before_anything_is_written(shared, check_mode):
    result = sysfs({'pages_to_scan': 500, 'merge_across_nodes': 'never', 'max_page_sharing': 100},
                   check_mode=check_mode)
    assert result['failed'] is True
    msg = result['msg']
    assert 'merge_across_nodes (1 -> 0)' in msg and 'max_page_sharing (256 -> 100)' in msg
    assert 'EBUSY' in msg and 'pages_shared=1000' in msg and 'Nothing was changed' in msg
    assert 'samepage.ksm.ksm_unmerge' in msg and 'unmerge_if_busy=true' in msg and '64.0 MiB' in msg
    assert shared.kernel.writes == []


def test_busy_knob_at_its_current_value_is_no_problem(shared):
    result = sysfs({'merge_across_nodes': 'always', 'max_page_sharing': 256, 'pages_to_scan': 300})
    assert result['failed'] is False and shared.kernel.writes == [('pages_to_scan', '300')]


def test_unmerge_if_busy_sequence(shared):
    kernel = shared.kernel
    args = {'merge_across_nodes': 'never', 'pages_to_scan': 500, 'unmerge_if_busy': True}
    checked = sysfs(args, check_mode=True)
    assert checked['failed'] is False and checked['changed'] is True
    assert kernel.writes == []
    expected = [('run', 2), ('pages_to_scan', 500), ('merge_across_nodes', 0), ('run', 1)]
    assert [(item['knob'], item['value']) for item in checked['writes']] == expected
    assert checked['unmerged'] == {'pages': 16384, 'bytes': 16384 * PAGE_SIZE, 'duration': None}
    assert 'would unmerge 16384 pages (64.0 MiB)' in checked['msg']
    assert checked['after']['run'] == 1 and checked['after']['merge_across_nodes'] == 0

    applied = sysfs(args)
    assert applied['failed'] is False and applied['changed'] is True
    assert kernel.successful_writes() == [('run', '2'), ('pages_to_scan', '500'), ('merge_across_nodes', '0'),
                                          ('run', '1')]
    assert [(item['knob'], item['value']) for item in applied['writes']] == expected
    assert applied['unmerged']['pages'] == 16384 and applied['unmerged']['bytes'] == 64 * MIB
    assert isinstance(applied['unmerged']['duration'], float)
    assert kernel.values['pages_shared'] == 0 and kernel.values['run'] == 1
    assert applied['after'] == checked['after']
    assert applied['warnings'] == []

    kernel.share(pages_shared=10, pages_sharing=20)   # ksmd merged again meanwhile: the knob already matches
    again = sysfs(args)
    assert again['changed'] is False and 'unmerged' not in again
    assert sysfs(args, check_mode=True)['changed'] is False
    assert kernel.unmerges == 1


@pytest.mark.parametrize('initial_run, requested, final', [(0, None, 0), (1, False, 0), (0, True, 1), (2, None, 2)])
def test_unmerge_if_busy_puts_run_back_or_as_requested(tmp_path, monkeypatch, initial_run, requested, final):
    host = FakeHost(tmp_path, monkeypatch, run=initial_run)
    host.kernel.share(pages_shared=5, pages_sharing=50)
    args = {'max_page_sharing': 64, 'unmerge_if_busy': True}
    if requested is not None:
        args['run'] = requested
    result = sysfs(args)
    assert result['failed'] is False
    assert host.kernel.values['run'] == final and host.kernel.values['max_page_sharing'] == 64
    assert host.kernel.values['pages_shared'] == 0
    writes = host.kernel.successful_writes()
    assert writes[-1] == ('run', str(final)) or (final == 2 and writes[-1] == ('max_page_sharing', '64'))
    assert ('max_page_sharing', '64') in writes


def test_unmerge_if_busy_refused_when_it_does_not_fit_in_memory(shared):
    shared.meminfo(mem_total=1 * GIB, mem_available=80 * MIB, swap_free=0)
    result = sysfs({'merge_across_nodes': 'never', 'unmerge_if_busy': True, 'memory_margin': '32M'})
    assert result['failed'] is True
    msg = result['msg']
    assert msg.startswith('unmerge_if_busy=true: Refusing to unmerge')
    assert 'needs 64.0 MiB' in msg and 'only 48.0 MiB may be used' in msg
    assert 'force=true' not in msg and 'leave merge_across_nodes and max_page_sharing' in msg
    assert result['needed_bytes'] == 64 * MIB and result['budget_bytes'] == 48 * MIB
    assert shared.kernel.writes == []
    checked = sysfs({'merge_across_nodes': 'never', 'unmerge_if_busy': True, 'memory_margin': '32M'}, check_mode=True)
    assert checked['failed'] is True and 'Refusing to unmerge' in checked['msg']


def test_unmerge_if_busy_margin_of_everything(shared):
    result = sysfs({'merge_across_nodes': 'never', 'unmerge_if_busy': True, 'memory_margin': '100%'})
    assert result['failed'] is True and 'Refusing to unmerge' in result['msg']
    assert shared.kernel.writes == []


def test_ebusy_after_the_unmerge_is_retried_once(shared):
    kernel = shared.kernel
    kernel.inject('merge_across_nodes', errno.EBUSY, times=1)
    result = sysfs({'merge_across_nodes': 'never', 'unmerge_if_busy': True})
    assert result['failed'] is False, result['msg']
    assert kernel.writes == [('run', '2'), ('merge_across_nodes', '0'), ('run', '0'), ('run', '2'),
                             ('merge_across_nodes', '0'), ('run', '1')]
    assert [(item['knob'], item['value']) for item in result['writes']] == [
        ('run', 2), ('run', 0), ('run', 2), ('merge_across_nodes', 0), ('run', 1)]
    assert kernel.values['merge_across_nodes'] == 0 and kernel.values['run'] == 1


def test_ebusy_twice_fails_and_puts_run_back(shared):
    kernel = shared.kernel
    kernel.inject('max_page_sharing', errno.EBUSY, times=2)
    result = sysfs({'max_page_sharing': 1024, 'sleep_millisecs': 40, 'unmerge_if_busy': True})
    assert result['failed'] is True
    assert 'Cannot set max_page_sharing=1024' in result['msg']
    assert 'run was put back to 1' in result['msg']
    assert kernel.values['run'] == 1 and kernel.values['max_page_sharing'] == 256
    assert kernel.values['sleep_millisecs'] == 20   # undone by Ksm.apply
    assert kernel.unmerges == 2


def test_stale_stable_nodes_without_opt_in(tmp_path, monkeypatch):
    host = FakeHost(tmp_path, monkeypatch)
    host.kernel.stale_stable_nodes = True
    result = sysfs({'merge_across_nodes': 'never'})
    assert result['failed'] is True and 'unmerge_if_busy=true' in result['msg']
    assert result['errno'] == errno.EBUSY


def test_stale_stable_nodes_with_opt_in(tmp_path, monkeypatch):
    host = FakeHost(tmp_path, monkeypatch)
    host.kernel.stale_stable_nodes = True
    result = sysfs({'merge_across_nodes': 'never', 'unmerge_if_busy': True})
    assert result['failed'] is False, result['msg']
    assert host.kernel.writes == [('merge_across_nodes', '0'), ('run', '2'), ('merge_across_nodes', '0'),
                                  ('run', '0')]
    assert host.kernel.values['merge_across_nodes'] == 0 and host.kernel.values['run'] == 0
    assert result['unmerged'] == {'pages': 0, 'bytes': 0, 'duration': result['unmerged']['duration']}


def test_unmerge_that_runs_out_of_memory(shared):
    shared.kernel.unmerge_error = errno.ENOMEM
    result = sysfs({'merge_across_nodes': 'never', 'unmerge_if_busy': True})
    assert result['failed'] is True
    assert 'Cannot set run=2' in result['msg'] and 'ran out of memory' in result['msg']
    assert 'run was put back to 1' in result['msg']
    assert shared.kernel.values['run'] == 1 and shared.kernel.values['merge_across_nodes'] == 1


# ---------------------------------------------------------------------------------------------------
# Competing managers

def test_ksmtuned_warning(host):
    host.add_process(4242, 'ksmtuned')
    result = sysfs({'pages_to_scan': 1000, 'run': True, 'use_zero_pages': True})
    assert result['competing_managers'] == {'ksmtuned': ['run', 'pages_to_scan']}
    warning = [item for item in result['warnings'] if 'ksmtuned' in item]
    assert len(warning) == 1
    assert 'run, pages_to_scan' in warning[0] and 'overwritten at its next interval' in warning[0]
    assert 'samepage.ksm.ksm_service' in warning[0] and 'samepage.ksm.ksmtuned role' in warning[0]


def test_no_ksmtuned_warning_for_other_knobs(host):
    host.add_process(4242, 'ksmtuned')
    result = sysfs({'use_zero_pages': True})
    assert result['competing_managers'] == {} and result['warnings'] == []


def test_writers_that_overwrite_only_the_knobs_the_task_set(host):
    host.enable_unit('qemu-kvm.service')
    host.write_file('etc/default/qemu-kvm', 'KSM_ENABLED=1\nSLEEP_MILLISECS=200\n')
    host.write_file('etc/tmpfiles.d/ksm.conf', 'w /sys/kernel/mm/ksm/use_zero_pages - - - - 1\n')
    host.write_file('etc/systemd/system/guests.service', '[Service]\nMemoryKSM=yes\n')
    host.enable_unit('ksm.service')
    result = sysfs({'sleep_millisecs': 50, 'smart_scan': False})
    assert result['failed'] is False and result['changed'] is True
    assert host.kernel.values['sleep_millisecs'] == 50      # warnings only: the task did what it was asked
    assert [(entry['name'], entry['knobs']) for entry in result['competing_writers']] == [
        ('qemu-kvm.service', ['sleep_millisecs'])]
    assert result['competing_managers'] == {'qemu-kvm.service': ['sleep_millisecs']}
    assert len(result['warnings']) == 1
    warning = result['warnings'][0]
    assert warning.startswith('qemu-kvm.service writes run, sleep_millisecs at boot')
    assert 'sleep_millisecs will be overwritten at boot' in warning
    assert 'KSM_ENABLED' in warning and '/etc/default/qemu-kvm' in warning


def test_handled_writers_are_not_warned_about(host):
    # The ksm role stops ksmtuned right after it sets the knobs (ksm_tuner: none): no warning about it then.
    host.add_process(4242, 'ksmtuned')
    host.enable_unit('qemu-kvm.service')
    result = sysfs({'run': True, 'pages_to_scan': 500, 'handled_writers': ['ksmtuned']})
    assert result['failed'] is False and result['changed'] is True
    assert [entry['name'] for entry in result['competing_writers']] == ['qemu-kvm.service']
    assert len(result['warnings']) == 1 and result['warnings'][0].startswith('qemu-kvm.service writes')
    assert 'ksm_neutralise_writers: [qemu-kvm.service]' in result['warnings'][0]


def test_handled_writers_unknown_name_fails_before_anything_is_written(host):
    result = sysfs({'run': True, 'handled_writers': ['ksmtuned', 'ksmtune']})
    assert result['failed'] is True and result['changed'] is False and result['option'] == 'handled_writers'
    assert "ksmtune is not a writer of KSM knobs" in result['msg']
    assert host.kernel.writes == []


def test_ksm_service_overwrites_run_false_only(host):
    host.enable_unit('ksm.service')
    assert sysfs({'run': True})['competing_writers'] == []
    result = sysfs({'run': False})
    assert [(entry['name'], entry['knobs']) for entry in result['competing_writers']] == [('ksm.service', ['run'])]
    assert 'name=ksm enabled=false' in result['warnings'][0]


def test_tuned_and_our_tuner_in_check_mode(host):
    host.write_file('etc/tuned/active_profile', 'site\n')
    host.write_file('etc/tuned/site/tuned.conf', '[main]\ninclude=virtual-host\n')
    host.write_file('usr/lib/tuned/virtual-host/tuned.conf', '[sysfs]\n/sys/kernel/mm/ksm/pages_to_scan = 1250\n')
    host.add_process(55, 'samepage-ksm-tu')
    result = sysfs({'pages_to_scan': 300}, check_mode=True)
    assert result['changed'] is True and host.kernel.writes == []
    assert [(entry['name'], entry['knobs'], entry['ours']) for entry in result['competing_writers']] == [
        ('tuned', ['pages_to_scan'], False), ('samepage-ksm-tuner', ['pages_to_scan'], True)]
    assert result['competing_managers'] == {'tuned': ['pages_to_scan']}
    assert any('switch the TuneD profile' in warning for warning in result['warnings'])
    assert any(warning.startswith("the collection's own tuner") and 'ksm_tuner: samepage or none' in warning
               for warning in result['warnings'])


# ---------------------------------------------------------------------------------------------------
# Diff

def test_diff_shows_the_knobs_before_and_after(host):
    result = sysfs({'pages_to_scan': 1000, 'run': True}, diff=True)
    assert len(result['diff']) == 1
    knobs = result['diff'][0]
    assert knobs['before_header'] == knobs['after_header'] == '/sys/kernel/mm/ksm'
    assert knobs['before'] == result['before'] and knobs['after'] == result['after']
    changed = {name: (knobs['before'][name], knobs['after'][name]) for name in ALL_KNOBS
               if knobs['before'][name] != knobs['after'][name]}
    assert changed == {'pages_to_scan': (100, 1000), 'run': (0, 1)}
    assert 'diff' not in sysfs({'pages_to_scan': 1000})


def test_diff_shows_the_boot_unit(host, units):
    result = sysfs({'pages_to_scan': 1000, 'persist': True}, check_mode=True, diff=True)
    knobs, unit, link = result['diff']
    assert knobs['after']['pages_to_scan'] == 1000
    assert unit['before_header'] == str(units / _ksm_boot.UNIT_NAME)
    assert unit['before'] == '' and "echo 1000 > /sys/kernel/mm/ksm/pages_to_scan'" in unit['after']
    assert link['before'] == '' and link['after'] == 'symbolic link to %s\n' % (units / _ksm_boot.UNIT_NAME)
    assert not units.exists()


# ---------------------------------------------------------------------------------------------------
# Persistence

def unit_text(units):
    return (units / _ksm_boot.UNIT_NAME).read_text()


def link_of(units):
    return units / 'sysinit.target.wants' / _ksm_boot.UNIT_NAME


def test_persist_four_steps_writes_unit_and_symlink(host, units):
    args = {'pages_to_scan': 1000, 'run': True, 'merge_across_nodes': 'auto', 'persist': True}
    checked, applied, again, dummy = four_steps(host.kernel, args)
    assert checked['persisted'] == applied['persisted'] == {'pages_to_scan': 1000, 'run': 1, 'merge_across_nodes': 1}
    assert applied['boot_unit'] == str(units / _ksm_boot.UNIT_NAME)
    text = unit_text(units)
    assert text == _ksm_boot.render({'pages_to_scan': 1000, 'run': 1, 'merge_across_nodes': 1})
    assert text.startswith('# Managed by samepage.ksm.ksm_sysfs')
    execs = [line for line in text.splitlines() if line.startswith('ExecStart=')]
    assert execs == ["ExecStart=/bin/sh -c 'echo 1000 > /sys/kernel/mm/ksm/pages_to_scan'",
                     "ExecStart=/bin/sh -c 'echo 1 > /sys/kernel/mm/ksm/merge_across_nodes'",
                     "ExecStart=/bin/sh -c 'echo 1 > /sys/kernel/mm/ksm/run'"]
    assert os.readlink(str(link_of(units))) == str(units / _ksm_boot.UNIT_NAME)
    assert oct(os.stat(str(units / _ksm_boot.UNIT_NAME)).st_mode & 0o777) == '0o644'
    assert 'wrote the boot configuration (pages_to_scan=1000, merge_across_nodes=1, run=1)' in applied['msg']
    assert again['persisted'] == applied['persisted']
    assert sorted(os.listdir(str(units))) == [_ksm_boot.UNIT_NAME, 'sysinit.target.wants']   # no temp files left


def test_persist_check_mode_creates_nothing(host, units):
    result = sysfs({'pages_to_scan': 1000, 'persist': True}, check_mode=True)
    assert result['changed'] is True and result['persisted'] == {'pages_to_scan': 1000}
    assert not units.exists()


def test_persist_merge_then_replace_then_remove(host, units):
    sysfs({'pages_to_scan': 1000, 'persist': True})
    merged = sysfs({'sleep_millisecs': 50, 'persist': True})
    assert merged['changed'] is True and merged['persisted'] == {'pages_to_scan': 1000, 'sleep_millisecs': 50}
    replaced = sysfs({'use_zero_pages': True, 'persist': True, 'persist_mode': 'replace'})
    assert replaced['persisted'] == {'use_zero_pages': True}
    assert 'pages_to_scan' not in unit_text(units)
    assert sysfs({'use_zero_pages': True, 'persist': True, 'persist_mode': 'replace'})['changed'] is False

    checked = sysfs({'persist': True, 'persist_mode': 'replace'}, check_mode=True, diff=True)
    assert checked['changed'] is True and checked['persisted'] == {}
    assert checked['diff'][1]['after'] == '' and checked['diff'][2]['after'] == ''
    assert (units / _ksm_boot.UNIT_NAME).exists()
    removed = sysfs({'persist': True, 'persist_mode': 'replace'})
    assert removed['changed'] is True and removed['persisted'] == {}
    assert removed['msg'] == 'Removed the boot configuration'
    assert not (units / _ksm_boot.UNIT_NAME).exists() and not os.path.lexists(str(link_of(units)))
    assert sysfs({'persist': True, 'persist_mode': 'replace'})['changed'] is False
    assert host.kernel.values['use_zero_pages'] == 1     # the live values stay


def test_drift_live_matches_but_file_differs(host, units):
    sysfs({'pages_to_scan': 1000, 'persist': True})
    (units / _ksm_boot.UNIT_NAME).write_text(unit_text(units).replace('echo 1000', 'echo 999'))
    writes = list(host.kernel.writes)
    checked = sysfs({'pages_to_scan': 1000, 'persist': True}, check_mode=True, diff=True)
    assert checked['changed'] is True and checked['writes'] == []
    assert 'echo 999' in checked['diff'][1]['before'] and 'echo 1000' in checked['diff'][1]['after']
    fixed = sysfs({'pages_to_scan': 1000, 'persist': True})
    assert fixed['changed'] is True and fixed['writes'] == [] and host.kernel.writes == writes
    assert 'echo 1000 >' in unit_text(units)
    assert sysfs({'pages_to_scan': 1000, 'persist': True})['changed'] is False


def test_drift_persisted_matches_but_live_differs(host, units):
    sysfs({'pages_to_scan': 1000, 'persist': True})
    host.kernel.values['pages_to_scan'] = 64      # ksmtuned, or a hand-made change
    mtime = os.stat(str(units / _ksm_boot.UNIT_NAME)).st_mtime_ns
    fixed = sysfs({'pages_to_scan': 1000, 'persist': True})
    assert fixed['changed'] is True and fixed['writes'] == [{'knob': 'pages_to_scan', 'value': 1000}]
    assert host.kernel.values['pages_to_scan'] == 1000
    assert os.stat(str(units / _ksm_boot.UNIT_NAME)).st_mtime_ns == mtime


def test_drift_missing_symlink_is_restored(host, units):
    sysfs({'pages_to_scan': 1000, 'persist': True})
    os.unlink(str(link_of(units)))
    result = sysfs({'pages_to_scan': 1000, 'persist': True})
    assert result['changed'] is True and os.path.islink(str(link_of(units)))


def test_persisted_pages_to_scan_dropped_when_the_advisor_is_turned_on(host, units):
    sysfs({'pages_to_scan': 1000, 'persist': True})
    result = sysfs({'advisor_mode': 'scan-time', 'persist': True})
    assert result['persisted'] == {'advisor_mode': 'scan-time'}
    refused = sysfs({'advisor_mode': 'none', 'pages_to_scan': 300})   # live only: fine
    assert refused['failed'] is False
    conflict = sysfs({'pages_to_scan': 300, 'persist': True})
    assert conflict['failed'] is True and 'advisor_mode=scan-time' in conflict['msg']
    assert host.kernel.values['pages_to_scan'] == 300    # from the live-only task; the failed one wrote nothing


def test_live_only_change_warns_about_the_boot_configuration(host, units):
    sysfs({'pages_to_scan': 1000, 'persist': True})
    result = sysfs({'pages_to_scan': 2000})
    assert result['persisted'] == {'pages_to_scan': 1000}
    assert any('sets pages_to_scan=1000' in warning and 'persist=true' in warning for warning in result['warnings'])
    assert sysfs({'pages_to_scan': 1000})['warnings'] == []


def test_daemon_reload_only_when_systemd_runs_and_files_changed(host, units, tmp_path, monkeypatch):
    calls = []

    def run_command(module, args, **kwargs):
        calls.append(args)
        return 0, '', ''

    monkeypatch.setattr(basic.AnsibleModule, 'run_command', run_command)
    monkeypatch.setattr(basic.AnsibleModule, 'get_bin_path', lambda module, name, *a, **k: '/usr/bin/' + name)
    sysfs({'pages_to_scan': 1000, 'persist': True})
    assert calls == []                        # systemd is not running
    (tmp_path / 'run-systemd-system').mkdir()
    sysfs({'pages_to_scan': 1000, 'persist': True})
    assert calls == []                        # nothing changed
    sysfs({'pages_to_scan': 2000, 'persist': True})
    assert calls == [['/usr/bin/systemctl', 'daemon-reload']]


def test_daemon_reload_failure_is_reported(host, units, tmp_path, monkeypatch):
    (tmp_path / 'run-systemd-system').mkdir()
    monkeypatch.setattr(basic.AnsibleModule, 'run_command', lambda module, args, **kwargs: (1, '', 'Access denied'))
    monkeypatch.setattr(basic.AnsibleModule, 'get_bin_path', lambda module, name, *a, **k: '/usr/bin/' + name)
    result = sysfs({'pages_to_scan': 1000, 'persist': True})
    assert result['failed'] is True and 'daemon-reload failed' in result['msg'] and 'Access denied' in result['msg']


def test_unwritable_unit_directory_fails_before_sysfs_is_touched(host, tmp_path, monkeypatch):
    blocker = tmp_path / 'not-a-directory'
    blocker.write_text('')
    monkeypatch.setattr(_ksm_boot, 'UNIT_DIR', str(blocker / 'system'))
    result = sysfs({'pages_to_scan': 1000, 'persist': True})
    assert result['failed'] is True and 'Cannot write the boot configuration' in result['msg']
    assert host.kernel.writes == []


def test_failed_live_write_leaves_the_boot_configuration_alone(host, units):
    sysfs({'pages_to_scan': 1000, 'persist': True})
    before = unit_text(units)
    host.kernel.inject('sleep_millisecs', errno.EPERM)
    result = sysfs({'sleep_millisecs': 50, 'persist': True})
    assert result['failed'] is True
    assert unit_text(units) == before
    assert sorted(os.listdir(str(units))) == [_ksm_boot.UNIT_NAME, 'sysinit.target.wants']


def test_unreadable_boot_configuration(host, units, monkeypatch):
    def unreadable(config):
        raise _ksm.KsmError('Cannot read the boot configuration %s: Permission denied' % config.unit_path)

    monkeypatch.setattr(_ksm_boot.BootConfig, 'read_text', unreadable)
    live = sysfs({'pages_to_scan': 1000})
    assert live['failed'] is False and live['changed'] is True and live['persisted'] == {}
    assert any('Permission denied' in warning and 'persist=false' in warning for warning in live['warnings'])
    persisted = sysfs({'pages_to_scan': 2000, 'persist': True})
    assert persisted['failed'] is True and 'Permission denied' in persisted['msg']
    assert host.kernel.values['pages_to_scan'] == 1000
