# -*- coding: utf-8 -*-
# Copyright: (c) 2026, samepage.ksm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The ksm_fleet_report filter: figures per host, group and fleet from registered ksm_info results.

The results below have the shape ksm_info documents (plugins/modules/ksm_info.py RETURN) and the shapes
ansible-core registers for an unreachable host and for a failed module (seen with ansible-core 2.19 and 2.21).
"""

import csv
import io

import pytest

from ansible.errors import AnsibleFilterError

from ansible_collections.samepage.ksm.plugins.filter.ksm_fleet_report import (
    FilterModule, exact_bytes, human_bytes, ksm_fleet_report)

PAGE = 4096


def read_result(pages_shared=64, pages_sharing=8128, zero_pages=0, profit=True, processes=None, **extra):
    result = {
        'changed': False,
        'available': True,
        'settings': {'run': 1, 'pages_to_scan': 5000, 'sleep_millisecs': 20, 'max_page_sharing': 256},
        'counters': {'pages_shared': pages_shared, 'pages_sharing': pages_sharing, 'ksm_zero_pages': zero_pages},
        'capabilities': {'page_size': PAGE, 'kernel_release': '6.12.0-1-amd64'},
        'savings': {'bytes_saved': pages_sharing * PAGE, 'zero_pages_bytes': zero_pages * PAGE,
                    'sharing_ratio': round(float(pages_sharing) / pages_shared, 2) if pages_shared else None},
        'processes': processes or [],
        'competing_managers': {},
    }
    if profit:
        result['savings']['general_profit'] = pages_sharing * PAGE - 1000
    result.update(extra)
    return result


UNREACHABLE = {'changed': False, 'unreachable': True,
               'msg': 'Task failed: Failed to connect to the host via ssh: ssh: connect to host 127.0.0.1 port 1: '
                      'Connection refused'}
FAILED = {'changed': False, 'failed': True, 'rc': 127, 'msg': "The module interpreter '/nonexistent/python' was not found."}
NO_KSM = {'changed': False, 'available': False, 'settings': {}, 'counters': {}, 'processes': [], 'competing_managers': {},
          'capabilities': {'page_size': PAGE},
          'msg': '/sys/kernel/mm/ksm does not exist: this kernel has no KSM (built without CONFIG_KSM)'}


def hostvars(**hosts):
    """{host: {'group_names': [...], 'ksm_report_info': result}} from host=(groups, result)."""
    variables = {}
    for name, (groups, result) in hosts.items():
        variables[name] = {'group_names': groups}
        if result is not None:
            variables[name]['ksm_report_info'] = result
    return variables


def by_name(report):
    return {host['name']: host for host in report['hosts']}


def test_human_bytes_uses_binary_units_with_one_decimal():
    assert [human_bytes(value) for value in (0, 1023, 1024, 1536, 62914560, -4194304, 3 * 1024 ** 4)] == \
        ['0 B', '1023 B', '1.0 KiB', '1.5 KiB', '60.0 MiB', '-4.0 MiB', '3.0 TiB']
    assert human_bytes(None) == 'n/a'
    assert exact_bytes(62914560) == '62,914,560 bytes' and exact_bytes(None) == 'n/a'


def test_a_read_host_shows_ksm_info_figures_unchanged():
    report = ksm_fleet_report(hostvars(h1=(['dense'], read_result())), ['h1'])
    host = report['hosts'][0]
    assert host['status'] == 'ok' and host['status_text'] == 'read' and host['message'] == ''
    assert host['saved_bytes'] == 8128 * PAGE and host['saved_bytes_text'] == '31.8 MiB'
    assert host['general_profit'] == 8128 * PAGE - 1000
    assert host['sharing_ratio'] == 127.0 and host['sharing_ratio_text'] == '127.00'
    assert host['settings'] == {'run': 1, 'pages_to_scan': 5000, 'sleep_millisecs': 20}
    assert host['run_text'] == 'running'
    assert host['kernel'] == '6.12.0-1-amd64'


def test_the_unmerge_estimate_counts_zero_pages_and_memory_only_when_reported():
    report = ksm_fleet_report(hostvars(h1=(['a'], read_result(pages_sharing=1000, zero_pages=24))), ['h1'])
    host = report['hosts'][0]
    assert host['unmerge_needed_bytes'] == 1024 * PAGE
    # ksm_info does not report MemAvailable and SwapFree: no invented figure
    assert host['unmerge_available_bytes'] is None and host['headroom_bytes'] is None
    assert host['unmerge_available_bytes_text'] == 'n/a'
    assert host['ksmd_cpu_seconds'] is None and host['ksmd_cpu_text'] == 'n/a'
    assert report['has_ksmd_cpu'] is False and report['has_tuner'] is False

    with_memory = read_result(pages_sharing=1000, zero_pages=24,
                              memory={'mem_available': 3 * PAGE, 'swap_free': PAGE}, ksmd={'cpu_seconds': 12.5},
                              tuner={'phase': 'ramp', 'rate': 300})
    host = ksm_fleet_report(hostvars(h1=(['a'], with_memory)), ['h1'])['hosts'][0]
    assert host['unmerge_available_bytes'] == 4 * PAGE
    assert host['headroom_bytes'] == 4 * PAGE - 1024 * PAGE
    assert host['ksmd_cpu_text'] == '12.5 s'
    assert host['tuner_text'] == 'phase=ramp, rate=300'


def test_a_kernel_without_general_profit_shows_na_not_zero():
    host = ksm_fleet_report(hostvars(h1=(['a'], read_result(profit=False))), ['h1'])['hosts'][0]
    assert host['general_profit'] is None and host['general_profit_text'] == 'n/a'


@pytest.mark.parametrize('result, status, text, message', [
    (UNREACHABLE, 'unreachable', 'unreachable', UNREACHABLE['msg']),
    (FAILED, 'failed', 'module failed', FAILED['msg']),
    (NO_KSM, 'ksm_missing', 'KSM missing', NO_KSM['msg']),
    (None, 'not_read', 'not read', 'no ksm_info result'),
    ({'changed': False, 'skipped': True}, 'not_read', 'not read', 'no ksm_info result'),
])
def test_hosts_that_cannot_be_read_have_a_status_and_no_figures(result, status, text, message):
    report = ksm_fleet_report(hostvars(bad=(['dense'], result)), ['bad'])
    host = report['hosts'][0]
    assert host['status'] == status and host['status_text'] == text
    assert host['message'].startswith(message)
    for key in ('saved_bytes', 'general_profit', 'unmerge_needed_bytes', 'sharing_ratio', 'zero_pages_bytes'):
        assert host[key] is None, key
        assert host.get(key + '_text', 'n/a') == 'n/a', key
    assert host['settings'] == {'run': None, 'pages_to_scan': None, 'sleep_millisecs': None}
    fleet = report['fleet']
    assert fleet['read'] == 0 and fleet['unreadable'] == 1 and fleet[status] == 1
    assert fleet['saved_bytes'] is None and fleet['saved_bytes_text'] == 'n/a'


def test_totals_add_up_the_read_hosts_per_group_and_fleet():
    variables = hostvars(
        d1=(['dense', 'kvm_hosts'], read_result(pages_sharing=1000)),
        d2=(['dense', 'kvm_hosts'], read_result(pages_sharing=3000, profit=False)),
        b1=(['balanced', 'kvm_hosts'], read_result(pages_sharing=500)),
        gone=(['balanced', 'kvm_hosts'], UNREACHABLE),
        bare=(['ungrouped'], NO_KSM),
    )
    report = ksm_fleet_report(variables, ['d1', 'd2', 'b1', 'gone', 'bare'])
    groups = {group['name']: group for group in report['groups']}
    assert [group['name'] for group in report['groups']] == ['balanced', 'dense', 'kvm_hosts', 'ungrouped']
    assert groups['dense']['saved_bytes'] == 4000 * PAGE and groups['dense']['read'] == 2
    assert groups['dense']['general_profit'] == 1000 * PAGE - 1000 and groups['dense']['general_profit_hosts'] == 1
    assert groups['balanced']['saved_bytes'] == 500 * PAGE
    assert groups['balanced']['unreadable'] == 1 and groups['balanced']['unreachable'] == 1
    assert groups['kvm_hosts']['saved_bytes'] == 4500 * PAGE and groups['kvm_hosts']['host_count'] == 4
    assert groups['ungrouped']['saved_bytes'] is None and groups['ungrouped']['ksm_missing'] == 1
    fleet = report['fleet']
    assert fleet['host_count'] == 5 and fleet['read'] == 3 and fleet['unreadable'] == 2
    assert fleet['saved_bytes'] == 4500 * PAGE and fleet['unmerge_needed_bytes'] == 4500 * PAGE
    assert by_name(report)['d2']['saved_fraction'] == 1.0
    assert by_name(report)['d1']['saved_fraction'] == round(1000.0 / 3000, 4)
    assert by_name(report)['gone']['saved_fraction'] == 0.0

    chosen = ksm_fleet_report(variables, ['d1', 'd2', 'b1', 'gone', 'bare'], groups=['dense'])
    assert [group['name'] for group in chosen['groups']] == ['dense']


def test_processes_are_cut_to_top_and_those_ksm_does_not_pay_for_are_found():
    processes = [
        {'pid': 10, 'command': 'qemu-a', 'merging_pages': 5000, 'merging_bytes': 5000 * PAGE, 'rmap_items': 6000,
         'profit': 5000 * PAGE - 6000 * 64},
        {'pid': 11, 'command': 'qemu-b', 'merging_pages': 10, 'merging_bytes': 10 * PAGE, 'rmap_items': 641,
         'profit': 10 * PAGE - 641 * 64},
        {'pid': 12, 'command': 'qemu-c', 'merging_pages': 10, 'merging_bytes': 10 * PAGE, 'rmap_items': 640},
        {'pid': 13, 'command': 'idle', 'merging_pages': 0, 'merging_bytes': 0, 'rmap_items': 300},
    ]
    report = ksm_fleet_report(hostvars(h=(['a'], read_result(processes=processes))), ['h'], top_processes=2)
    host = report['hosts'][0]
    assert report['fleet']['not_paying'] == 2 and report['groups'][0]['not_paying'] == 2
    assert [row['pid'] for row in host['processes']] == [10, 11]
    assert host['processes_read'] == 4
    # more than 64 rmap items per merged page (641 > 640), or items and nothing merged
    assert [row['pid'] for row in host['not_paying']] == [11, 13]
    assert host['processes'][0]['rmap_items_per_page'] == 1.2
    assert host['processes'][0]['fraction'] == 1.0

    without_ksm_stat = [{'pid': 10, 'command': 'qemu', 'merging_pages': 5, 'merging_bytes': 5 * PAGE}]
    report = ksm_fleet_report(hostvars(h=(['a'], read_result(processes=without_ksm_stat))), ['h'])
    assert report['hosts'][0]['not_paying'] is None   # the kernel reports no rmap items: unknown, not "none"
    assert report['fleet']['not_paying'] is None


def test_text_and_csv_name_every_host_and_the_unreadable_as_such():
    variables = hostvars(
        good=(['dense'], read_result(pages_sharing=8128, competing_managers={'ksmtuned': ['run', 'pages_to_scan']})),
        gone=(['dense'], UNREACHABLE),
        bare=(['dense'], NO_KSM),
    )
    report = ksm_fleet_report(variables, ['good', 'gone', 'bare'])
    text = report['text']
    assert text.startswith('KSM fleet report: 3 host(s), 1 read, 2 could not be read\n')
    good_line = [line for line in text.splitlines() if line.strip().startswith('good ')][0]
    assert '31.8 MiB' in good_line and '1/5000/20' in good_line and 'ksmtuned' in good_line
    assert [line for line in text.splitlines() if line.strip().startswith('gone ')][0].split()[1] == 'UNREACHABLE'
    assert '  gone: unreachable: ' + UNREACHABLE['msg'] in text
    assert '  bare: KSM missing: ' + NO_KSM['msg'] in text
    assert 'ksmd CPU time: not reported by ksm_info' in text

    rows = list(csv.DictReader(io.StringIO(report['csv'])))
    assert [row['host'] for row in rows] == ['good', 'gone', 'bare']
    assert rows[0]['status'] == 'ok' and rows[0]['saved_bytes'] == str(8128 * PAGE)
    assert rows[0]['competing_managers'] == 'ksmtuned(run,pages_to_scan)'
    assert rows[0]['unmerge_available_bytes'] == 'n/a'
    assert rows[1]['status'] == 'unreachable' and rows[1]['saved_bytes'] == 'n/a' and 'Connection refused' in rows[1]['message']
    assert rows[2]['status'] == 'ksm_missing' and rows[2]['saved_bytes'] == 'n/a' and rows[2]['run'] == 'n/a'


@pytest.mark.parametrize('args, words', [
    (('not hostvars', ['h']), 'the input must be hostvars'),
    (({}, 'h1'), 'hosts must be a list'),
    (({}, ['h'], 'ksm_report_info', None, -1), 'top_processes must be 0 or more'),
])
def test_bad_arguments_are_named(args, words):
    with pytest.raises(AnsibleFilterError, match=words):
        ksm_fleet_report(*args)


def test_the_filter_is_registered():
    assert FilterModule().filters() == {'ksm_fleet_report': ksm_fleet_report}


def test_the_samepage_tuner_as_ksm_info_reports_it_shows_phase_rate_and_cpu():
    tuner = {'installed': True, 'running': True, 'phase': 'idle', 'reason': 'converged', 'pages_to_scan': 100,
             'sleep_millisecs': 200, 'ksmd_cpu_percent': 0.02, 'pid': 812, 'version': '0.1.0'}
    rows = hostvars(h1=(['a'], read_result(tuner=tuner)), h2=(['a'], read_result(tuner=dict(tuner, running=False))),
                    h3=(['a'], read_result(tuner=None)))
    report = ksm_fleet_report(rows, ['h1', 'h2', 'h3'])
    texts = {host['name']: host['tuner_text'] for host in report['hosts']}
    assert texts == {'h1': 'phase=idle, pages_to_scan=100, sleep_millisecs=200, ksmd_cpu_percent=0.02',
                     'h2': 'not running (phase=idle, pages_to_scan=100, sleep_millisecs=200, ksmd_cpu_percent=0.02)',
                     'h3': 'n/a'}
    assert report['has_tuner'] is True
