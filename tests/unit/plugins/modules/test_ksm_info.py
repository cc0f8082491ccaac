# -*- coding: utf-8 -*-
# Copyright: (c) 2026, samepage.ksm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""ksm_info against the fake kernel and a fake /proc: what it reports, and that it never writes."""

import json

import pytest

from ansible.module_utils import basic

from ansible_collections.samepage.ksm.plugins.module_utils import _ksm_boot, _ksm_units, _systemd
from ansible_collections.samepage.ksm.plugins.module_utils import _ksm
from ansible_collections.samepage.ksm.plugins.modules import ksm_info
from ansible_collections.samepage.ksm.tests.unit.fakes import systemd as fakes
from ansible_collections.samepage.ksm.tests.unit.fakes.kernel import FILES_6_1, FILES_6_18, PAGE_SIZE
from ansible_collections.samepage.ksm.tests.unit.fakes.os_release import OS_RELEASES
from ansible_collections.samepage.ksm.tests.unit.fakes.virsh import FakeVirsh
from ansible_collections.samepage.ksm.tests.unit.plugins.modules.fake_host import FakeHost
from ansible_collections.samepage.ksm.tests.unit.plugins.modules.module_runner import run_main

# /proc/<pid>/ksm_stat as each kernel prints it
STAT_6_1 = ('ksm_rmap_items',)
STAT_6_5 = ('ksm_rmap_items', 'ksm_zero_pages', 'ksm_merging_pages', 'ksm_process_profit')


def info(args=None, check_mode=False):
    return run_main(ksm_info.main, args, check_mode=check_mode)


def test_kernel_without_ksm_is_reported_not_failed(tmp_path, monkeypatch):
    host = FakeHost(tmp_path, monkeypatch, preset='absent', per_process=())
    result = info()
    assert result['failed'] is False
    assert result['changed'] is False
    assert result['available'] is False
    assert 'no KSM' in result['msg'] and '/sys/kernel/mm/ksm' in result['msg']
    assert result['settings'] == {} and result['counters'] == {} and result['processes'] == []
    assert 'savings' not in result
    assert result['capabilities']['knobs'] == []
    assert result['capabilities']['kernel_release'] == '6.18.44'
    assert result['capabilities']['per_process'] == []
    assert host.kernel.writes == []


def test_6_18_settings_counters_capabilities_and_savings(tmp_path, monkeypatch):
    host = FakeHost(tmp_path, monkeypatch, preset='6.18', kernel_release='6.18.44-fc', run=1)
    host.kernel.share(pages_shared=100, pages_sharing=1500, ksm_zero_pages=20)
    result = info()
    assert result['failed'] is False and result['changed'] is False
    assert result['available'] is True
    assert 'msg' not in result

    settings = result['settings']
    assert settings['run'] == 1
    assert settings['advisor_mode'] == 'none'
    assert settings['smart_scan'] is True and settings['use_zero_pages'] is False
    assert settings['pages_to_scan'] == 100 and settings['merge_across_nodes'] == 1
    assert len(settings) == 13
    counters = result['counters']
    assert counters['pages_shared'] == 100 and counters['pages_sharing'] == 1500
    assert counters['general_profit'] == (1500 + 20) * PAGE_SIZE
    assert set(settings) | set(counters) == set(FILES_6_18)
    assert not set(settings) & set(counters)

    capabilities = result['capabilities']
    assert capabilities['knobs'] == sorted(FILES_6_18)
    assert capabilities['kernel_release'] == '6.18.44-fc'
    assert capabilities['numa_nodes_with_memory'] == [0]
    assert capabilities['page_size'] == PAGE_SIZE
    assert capabilities['advisor'] is True
    assert capabilities['per_process'] == ['ksm_stat', 'ksm_merging_pages']

    assert result['savings'] == {
        'bytes_saved': 1500 * PAGE_SIZE,
        'zero_pages_bytes': 20 * PAGE_SIZE,
        'general_profit': (1500 + 20) * PAGE_SIZE,
        'sharing_ratio': 15.0,
    }
    assert host.kernel.writes == []


def test_6_1_has_no_advisor_no_general_profit_and_merging_pages_from_their_own_file(tmp_path, monkeypatch):
    host = FakeHost(tmp_path, monkeypatch, preset='6.1', kernel_release='6.1.0-31-amd64', nodes='0-1')
    host.kernel.share(pages_shared=3, pages_sharing=7)
    # 6.1's ksm_stat has only rmap items; the merged pages are in ksm_merging_pages (5.19+)
    host.add_process(2811, 'qemu-system-x86', ksm_stat={'ksm_rmap_items': 900}, merging_pages=7)
    result = info()
    assert result['failed'] is False
    assert result['capabilities']['advisor'] is False
    assert result['capabilities']['knobs'] == sorted(FILES_6_1)
    assert result['capabilities']['numa_nodes_with_memory'] == [0, 1]
    assert 'advisor_mode' not in result['settings'] and 'smart_scan' not in result['settings']
    assert 'general_profit' not in result['savings']
    assert result['savings']['zero_pages_bytes'] == 0
    assert result['savings']['sharing_ratio'] == round(7 / 3.0, 2)
    assert result['processes'] == [{
        'pid': 2811, 'command': 'qemu-system-x86', 'merging_pages': 7, 'merging_bytes': 7 * PAGE_SIZE,
        'rmap_items': 900,
    }]


def test_5_19_without_ksm_stat_uses_ksm_merging_pages(tmp_path, monkeypatch):
    host = FakeHost(tmp_path, monkeypatch, preset='4.x', per_process=('ksm_merging_pages',))
    host.add_process(77, 'worker', merging_pages=12)
    result = info()
    assert result['capabilities']['per_process'] == ['ksm_merging_pages']
    expected = {'pid': 77, 'command': 'worker', 'merging_pages': 12, 'merging_bytes': 12 * PAGE_SIZE}
    assert result['processes'] == [expected]


def test_nothing_shared_has_no_ratio(tmp_path, monkeypatch):
    FakeHost(tmp_path, monkeypatch)
    savings = info()['savings']
    assert savings['sharing_ratio'] is None
    assert savings['bytes_saved'] == 0 and savings['general_profit'] == 0


def test_processes_largest_first_bounded_and_with_6_14_flags(tmp_path, monkeypatch):
    host = FakeHost(tmp_path, monkeypatch, run=1)
    for pid, pages in ((101, 10), (102, 5000), (103, 300), (104, 0)):
        host.add_process(pid, 'vm%d' % pid, ksm_stat={
            'ksm_rmap_items': pages + 1, 'ksm_zero_pages': 0, 'ksm_merging_pages': pages,
            'ksm_process_profit': pages * PAGE_SIZE - 64, 'ksm_merge_any': pid == 103, 'ksm_mergeable': True,
        }, merging_pages=pages)
    host.add_process(105, 'bash', ksm_stat={'ksm_rmap_items': 0, 'ksm_zero_pages': 0, 'ksm_merging_pages': 0,
                                            'ksm_process_profit': 0, 'ksm_merge_any': False,
                                            'ksm_mergeable': False}, merging_pages=0)
    result = info({'max_processes': 3})
    assert [row['pid'] for row in result['processes']] == [102, 103, 101]
    top = result['processes'][0]
    assert top == {'pid': 102, 'command': 'vm102', 'merging_pages': 5000, 'merging_bytes': 5000 * PAGE_SIZE,
                   'rmap_items': 5001, 'zero_pages': 0, 'profit': 5000 * PAGE_SIZE - 64,
                   'mergeable': True, 'merge_any': False}
    assert result['processes'][1]['merge_any'] is True

    everything = info({'max_processes': 100})['processes']
    # a process that takes part (mergeable, rmap items) without merged pages is listed; bash is not
    assert [row['pid'] for row in everything] == [102, 103, 101, 104]


def test_max_processes_zero_skips_the_scan(tmp_path, monkeypatch):
    host = FakeHost(tmp_path, monkeypatch)
    host.add_process(102, 'vm', ksm_stat=dict.fromkeys(STAT_6_5, 9), merging_pages=9)
    assert info({'max_processes': 0})['processes'] == []
    assert len(info()['processes']) == 1


def test_negative_max_processes_is_refused(tmp_path, monkeypatch):
    FakeHost(tmp_path, monkeypatch)
    result = info({'max_processes': -1})
    assert result['failed'] is True
    assert 'max_processes' in result['msg'] and '-1' in result['msg']


def test_a_process_that_exits_mid_read_is_skipped(tmp_path, monkeypatch):
    host = FakeHost(tmp_path, monkeypatch)
    host.add_process(200, 'vm', ksm_stat=dict.fromkeys(STAT_6_5, 4), merging_pages=4)
    host.add_vanished_process(201)
    # gone between reading ksm_stat and comm
    gone = host.add_process(202, 'vm', ksm_stat=dict.fromkeys(STAT_6_5, 8), merging_pages=8)
    (gone / 'comm').unlink()
    result = info()
    assert result['failed'] is False
    assert [row['pid'] for row in result['processes']] == [200]


def test_kernel_threads_with_empty_ksm_stat_are_not_listed(tmp_path, monkeypatch):
    host = FakeHost(tmp_path, monkeypatch)
    base = host.add_process(2, 'kthreadd')
    (base / 'ksm_stat').write_text('')           # no mm: the kernel prints nothing
    (base / 'ksm_merging_pages').write_text('0\n')
    assert info()['processes'] == []


# ---------------------------------------------------------------------------------------------------
# The audit: guests, processes that opted in, what the bounded scan left out

def stat_6_18(merging=0, rmap=0, merge_any=False, mergeable=False):
    return {'ksm_rmap_items': rmap, 'ksm_zero_pages': 0, 'ksm_merging_pages': merging,
            'ksm_process_profit': merging * PAGE_SIZE - rmap * 64, 'ksm_merge_any': merge_any,
            'ksm_mergeable': mergeable}


def qemu(name, mem_merge_off=False):
    machine = 'pc-i440fx-7.2,usb=off,dump-guest-core=off%s,memory-backend=pc.ram' % (
        ',mem-merge=off' if mem_merge_off else '')
    return ['/usr/bin/qemu-system-x86_64', '-name', 'guest=%s,debug-threads=on' % name, '-S', '-machine', machine,
            '-m', '32']


def audit_host(tmp_path, monkeypatch):
    host = FakeHost(tmp_path, monkeypatch, run=1)
    host.add_process(4242, 'qemu-system-x86', stat_6_18(), 0, qemu('tenant-a', mem_merge_off=True))
    host.add_process(4301, 'qemu-system-x86', stat_6_18(800, 900, mergeable=True), 800, qemu('web01'))
    host.add_process(500, 'java', stat_6_18(5, 10, merge_any=True, mergeable=True), 5, ['java', '-jar', 'x'])
    host.add_process(600, 'python3', stat_6_18(0, 8192, mergeable=True), 0, ['python3', 'unique.py'])
    host.add_process(700, 'bash', stat_6_18(), 0, ['bash'])
    return host


def test_guests_and_opted_in_processes_are_told_apart(tmp_path, monkeypatch):
    host = audit_host(tmp_path, monkeypatch)
    result = info({'max_processes': 1})
    assert result['failed'] is False and result['changed'] is False
    # max_processes bounds the list of processes, not the audit
    assert [row['pid'] for row in result['processes']] == [4301]
    assert result['processes'][0]['guest'] == 'web01' and result['processes'][0]['mem_merge'] is True
    assert [(guest['name'], guest['mem_merge'], guest['mergeable'], guest['verdict']) for guest in result['guests']] == [
        ('tenant-a', False, False, 'opted-out'), ('web01', True, True, 'saves')]
    scan = result['process_scan']
    assert scan['opted_in'] == [{'pid': 500, 'command': 'java'}]
    assert scan['taking_part'] == 3 and scan['processes_seen'] == 5 and scan['processes_read'] == 5
    assert scan['complete'] is True and scan['skipped'] == [] and scan['rmap_items_per_merging_page_limit'] == 64
    everything = info({'max_processes': 100})['processes']
    # the opted-out guest takes no part in KSM: it is in guests, not in processes
    assert [row['pid'] for row in everything] == [4301, 500, 600]
    assert 'guest' not in everything[1]
    assert host.kernel.writes == []


def test_the_audit_is_bounded_and_says_what_it_skipped(tmp_path, monkeypatch):
    audit_host(tmp_path, monkeypatch)
    result = info({'max_scan_processes': 2})
    assert result['failed'] is False
    assert [guest['pid'] for guest in result['guests']] == []          # pids 500 and 600 were read, not the QEMUs
    assert result['process_scan']['complete'] is False
    assert result['process_scan']['skipped'] == [
        '3 of 5 processes not read (pid 700 and above): max_scan_processes=2 reached']
    assert result['process_scan']['processes_read'] == 2


def test_no_audit_without_a_process_scan(tmp_path, monkeypatch):
    audit_host(tmp_path, monkeypatch)
    result = info({'max_processes': 0})
    assert result['guests'] == [] and 'process_scan' not in result


@pytest.mark.parametrize('option, value', [('max_scan_processes', 0), ('max_scan_processes', 10 ** 7 + 1),
                                           ('max_scan_seconds', 0), ('max_scan_seconds', 3601),
                                           ('max_scan_seconds', -5)])
def test_scan_bounds_out_of_range_are_refused(tmp_path, monkeypatch, option, value):
    FakeHost(tmp_path, monkeypatch)
    result = info({option: value})
    assert result['failed'] is True
    assert result['msg'].startswith('Invalid value %d for %s: expected' % (value, option))
    assert result['option'] == option


def test_competing_managers(tmp_path, monkeypatch):
    host = FakeHost(tmp_path, monkeypatch)
    assert info()['competing_managers'] == {}
    host.add_process(900, 'ksmtuned')
    assert info({'max_processes': 0})['competing_managers'] == {
        'ksmtuned': ['run', 'pages_to_scan', 'sleep_millisecs']}


def test_competing_writers_with_their_evidence(tmp_path, monkeypatch):
    host = FakeHost(tmp_path, monkeypatch)
    result = info()
    assert result['competing_writers'] == [] and result['competing_writers_skipped'] == []
    host.add_process(900, 'ksmtuned')
    host.enable_unit('qemu-kvm.service')
    defaults = host.write_file('etc/default/qemu-kvm', 'KSM_ENABLED=AUTO\nSLEEP_MILLISECS=200\n')
    host.write_file('etc/tuned/active_profile', 'realtime-virtual-host\n')
    profile = host.write_file('usr/lib/tuned/profiles/realtime-virtual-host/tuned.conf',
                              '[main]\ninclude=realtime\n[sysfs]\n/sys/kernel/mm/ksm/run = 2\n')
    host.write_file('etc/systemd/system/samepage-ksm-tuner.service', '[Service]\n')
    host.enable_unit('samepage-ksm-tuner.service')
    result = info({'max_processes': 0})
    assert result['failed'] is False and result['changed'] is False
    writers = {entry['name']: entry for entry in result['competing_writers']}
    assert [entry['name'] for entry in result['competing_writers']] == [
        'ksmtuned', 'qemu-kvm.service', 'tuned', 'samepage-ksm-tuner']
    assert writers['ksmtuned']['evidence'] == ['process ksmtuned (pid 900)']
    assert writers['ksmtuned']['when'] == 'every interval' and writers['ksmtuned']['ours'] is False
    assert '%s: KSM_ENABLED=AUTO' % defaults in writers['qemu-kvm.service']['evidence']
    assert writers['qemu-kvm.service']['knobs'] == ['run', 'sleep_millisecs']
    assert '%s:4: /sys/kernel/mm/ksm/run = 2' % profile in writers['tuned']['evidence']
    assert writers['samepage-ksm-tuner']['ours'] is True
    for entry in result['competing_writers']:
        assert set(entry) == {'name', 'knobs', 'when', 'evidence', 'ours', 'remedy', 'turns_on'} and entry['remedy']
    # the short form: every other writer with its knobs, not the collection's own tuner
    assert result['competing_managers'] == {'ksmtuned': ['run', 'pages_to_scan', 'sleep_millisecs'],
                                            'qemu-kvm.service': ['run', 'sleep_millisecs'], 'tuned': ['run']}


def test_no_competing_writers_without_ksm(tmp_path, monkeypatch):
    host = FakeHost(tmp_path, monkeypatch, preset='absent', per_process=())
    host.add_process(900, 'ksmtuned')
    result = info()
    assert result['competing_writers'] == [] and result['competing_managers'] == {}


@pytest.mark.parametrize('preset', ['6.18', '6.1', 'absent'])
def test_check_mode_reports_the_same_and_writes_nothing(tmp_path, monkeypatch, preset):
    host = FakeHost(tmp_path, monkeypatch, preset=preset)
    if preset != 'absent':
        host.kernel.share(2, 10)
    normal = info()
    checked = info(check_mode=True)
    assert checked == normal
    assert checked['changed'] is False
    assert host.kernel.writes == []


def test_unreadable_file_fails_with_its_name(tmp_path, monkeypatch):
    host = FakeHost(tmp_path, monkeypatch)

    def broken(name):
        raise OSError(5, 'Input/output error')
    monkeypatch.setattr(host.kernel, 'read', broken)
    result = info()
    assert result['failed'] is True
    assert '/sys/kernel/mm/ksm/' in result['msg'] and 'Input/output error' in result['msg']


# ---------------------------------------------------------------------------------------------------
# The samepage tuner, from its state file (a fake /run, /etc and /proc under tmp_path)

TUNER_STATE = {
    'phase': 'idle', 'reason': 'a full scan gained 3 pages (< 64): merging no longer pays', 'run': 1,
    'pages_to_scan': 100, 'sleep_millisecs': 200, 'pages_sharing': 30000, 'ksm_zero_pages': 0, 'full_scans': 12,
    'last_gain': 3, 'ksmd_cpu_percent': 0.021, 'own_cpu_percent': 0.012, 'cpu_budget_percent': 20,
    'budget_window': 60, 'since': '2026-11-30T21:40:02Z', 'updated': '2026-11-30T21:45:12Z', 'pid': 812,
    'version': '0.1.0', 'started': '2026-11-30T21:39:58Z', 'config': '/etc/samepage-ksm/tuner.conf',
}


def install_tuner(host, state=None, unit=True, alive_as='/usr/bin/python3\0/usr/lib/samepage-ksm/samepage-ksm-tuner\0'):
    if unit:
        host.tuner_unit.parent.mkdir(parents=True)
        host.tuner_unit.write_text('[Unit]\n')
    if state is not None:
        host.tuner_state.parent.mkdir(parents=True)
        host.tuner_state.write_text(state if isinstance(state, str) else json.dumps(state))
    if alive_as is not None:
        (host.proc / '812').mkdir()
        (host.proc / '812' / 'cmdline').write_text(alive_as)


def test_no_tuner_is_null(tmp_path, monkeypatch):
    FakeHost(tmp_path, monkeypatch)
    assert info()['tuner'] is None


def test_a_running_tuner_reports_its_state_file(tmp_path, monkeypatch):
    host = FakeHost(tmp_path, monkeypatch)
    install_tuner(host, TUNER_STATE)
    result = info()
    assert result['changed'] is False
    assert result['tuner'] == dict(TUNER_STATE, installed=True, running=True)
    assert host.kernel.writes == []


def test_a_pid_that_is_gone_or_reused_is_not_running(tmp_path, monkeypatch):
    host = FakeHost(tmp_path, monkeypatch)
    install_tuner(host, TUNER_STATE, alive_as=None)
    tuner = info()['tuner']
    assert tuner['installed'] is True and tuner['running'] is False and tuner['phase'] == 'idle'
    (host.proc / '812').mkdir()
    (host.proc / '812' / 'cmdline').write_text('/usr/sbin/sshd\0-D\0')     # the pid belongs to another program now
    assert info()['tuner']['running'] is False


def test_a_stopped_tuner_and_a_tuner_without_state_file(tmp_path, monkeypatch):
    host = FakeHost(tmp_path, monkeypatch)
    install_tuner(host, dict(TUNER_STATE, phase='stopped'))
    tuner = info()['tuner']
    assert tuner['phase'] == 'stopped' and tuner['running'] is False and tuner['installed'] is True
    host.tuner_state.unlink()
    assert info()['tuner'] == {'installed': True, 'running': False}


def test_a_state_file_without_the_unit_and_a_broken_state_file(tmp_path, monkeypatch):
    host = FakeHost(tmp_path, monkeypatch)
    install_tuner(host, TUNER_STATE, unit=False)
    assert info()['tuner']['installed'] is False and info()['tuner']['running'] is True   # run by hand
    host.tuner_state.write_text('{"phase": ')
    tuner = info()['tuner']
    assert tuner['installed'] is False and tuner['running'] is False
    assert tuner['state_error'].startswith('cannot parse %s' % host.tuner_state)


def test_the_tuner_is_reported_on_a_kernel_without_ksm(tmp_path, monkeypatch):
    host = FakeHost(tmp_path, monkeypatch, preset='absent', per_process=())
    install_tuner(host, dict(TUNER_STATE, phase='unavailable', reason='/sys/kernel/mm/ksm does not exist'))
    result = info()
    assert result['available'] is False and result['tuner']['phase'] == 'unavailable'


# ---------------------------------------------------------------------------------------------------
# What the entry point verify of the ksm role reads: boot configuration, services, libvirt domains

def wire(tmp_path, monkeypatch, systemd=None, virsh=None, booted=True, distro='debian12'):
    """The fake systemctl and virsh behind AnsibleModule.run_command (by program), systemd's runtime
    directory and os-release under tmp_path; a program that is not there has no path."""
    runtime = tmp_path / 'run-systemd-system'
    if booted:
        runtime.mkdir()
    os_release = tmp_path / 'os-release'
    os_release.write_text(OS_RELEASES[distro])
    monkeypatch.setattr(_systemd, 'RUNTIME_DIR', str(runtime))
    monkeypatch.setattr(_ksm_units, 'OS_RELEASE_PATHS', (str(os_release),))
    monkeypatch.setattr(_ksm_units, 'PROXMOX_MARKERS', (str(tmp_path / 'pveversion'),))
    programs = {'systemctl': systemd, 'virsh': virsh}

    def run_command(module, args, **kwargs):
        fake = programs[args[0].rsplit('/', 1)[-1]]
        return fake.run_command(args, **kwargs)

    monkeypatch.setattr(basic.AnsibleModule, 'run_command', run_command)
    monkeypatch.setattr(basic.AnsibleModule, 'get_bin_path', lambda module, name, *args, **kwargs:
                        '/usr/bin/' + name if programs.get(name) is not None else None)


def test_boot_configuration_is_reported(tmp_path, monkeypatch):
    host = FakeHost(tmp_path, monkeypatch)
    unit = host.unit_dir / _ksm_boot.UNIT_NAME
    assert info()['boot'] == {'unit': str(unit), 'installed': False, 'enabled': False, 'knobs': {}}
    host.write_file('etc-systemd-system/' + _ksm_boot.UNIT_NAME, _ksm_boot.render({'run': 1, 'pages_to_scan': 500}))
    assert info()['boot'] == {'unit': str(unit), 'installed': True, 'enabled': False,
                              'knobs': {'run': 1, 'pages_to_scan': 500}}
    wants = host.unit_dir / 'sysinit.target.wants'
    wants.mkdir()
    (wants / _ksm_boot.UNIT_NAME).symlink_to(str(unit))
    assert info({'max_processes': 0})['boot']['enabled'] is True


def test_services_and_libvirt_are_not_asked_by_default(tmp_path, monkeypatch):
    FakeHost(tmp_path, monkeypatch)
    systemd, virsh = fakes.debian(), FakeVirsh()
    wire(tmp_path, monkeypatch, systemd, virsh)
    result = info()
    assert result['services'] is None and result['libvirt'] is None
    assert systemd.calls == [] and virsh.calls == []


def test_services_in_one_systemctl_show(tmp_path, monkeypatch):
    host = FakeHost(tmp_path, monkeypatch)
    systemd = fakes.FakeSystemd([fakes.FakeUnit('ksm.service', 'oneshot', enabled='enabled', active=True)])
    wire(tmp_path, monkeypatch, systemd)
    result = info({'services': True, 'max_processes': 0})
    assert result['failed'] is False and result['changed'] is False
    assert result['services'] == {'systemd': True, 'reason': None, 'units': [
        {'name': 'ksm', 'unit': 'ksm.service', 'installed': True, 'enabled': True, 'running': True, 'masked': False,
         'state': 'active (exited), enabled'},
        {'name': 'ksmtuned', 'unit': 'ksmtuned.service', 'installed': False, 'enabled': False, 'running': False,
         'masked': False, 'state': 'not installed'}]}
    assert [call[1] for call in systemd.calls] == ['show']
    assert host.kernel.writes == []


def test_masked_services_are_neither_enabled_nor_running(tmp_path, monkeypatch):
    FakeHost(tmp_path, monkeypatch)
    wire(tmp_path, monkeypatch, fakes.FakeSystemd(fakes.two_units(active=False, enabled='disabled', masked=True)))
    units = info({'services': True})['services']['units']
    assert [(unit['name'], unit['installed'], unit['enabled'], unit['running'], unit['masked']) for unit in units] == [
        ('ksm', True, False, False, True), ('ksmtuned', True, False, False, True)]


def test_without_systemd_the_services_are_not_taken_for_stopped(tmp_path, monkeypatch):
    FakeHost(tmp_path, monkeypatch)
    systemd = fakes.debian(booted=False)
    wire(tmp_path, monkeypatch, systemd, booted=False)
    services = info({'services': True})['services']
    assert services['systemd'] is False and services['units'] == []
    assert services['reason'].startswith('systemd is not running on this host (PID 1 is not systemd')
    assert 'cannot be asked' in services['reason']
    assert systemd.calls == []


def test_libvirt_domains_with_their_nosharepages(tmp_path, monkeypatch):
    host = FakeHost(tmp_path, monkeypatch)
    virsh = FakeVirsh()
    virsh.add('tenant-a', nosharepages=True, active=True)
    virsh.add('web01', active=True)
    virsh.add('tenant-b', nosharepages=True)
    virsh.add('scratch', persistent=False, active=True)
    wire(tmp_path, monkeypatch, virsh=virsh)
    result = info({'libvirt': True, 'max_processes': 0})
    assert result['failed'] is False and result['changed'] is False
    assert result['libvirt'] == {'uri': 'qemu:///system', 'available': True, 'msg': None, 'domains': [
        {'name': 'scratch', 'persistent': False, 'active': True, 'nosharepages': None, 'running_nosharepages': False},
        {'name': 'tenant-a', 'persistent': True, 'active': True, 'nosharepages': True, 'running_nosharepages': True},
        {'name': 'tenant-b', 'persistent': True, 'active': False, 'nosharepages': True, 'running_nosharepages': None},
        {'name': 'web01', 'persistent': True, 'active': True, 'nosharepages': False, 'running_nosharepages': False}]}
    assert virsh.mutations() == [] and host.kernel.writes == []


def test_libvirt_missing_or_down_is_reported_not_failed(tmp_path, monkeypatch):
    FakeHost(tmp_path, monkeypatch)
    wire(tmp_path, monkeypatch)
    result = info({'libvirt': True})
    assert result['failed'] is False
    assert result['libvirt']['available'] is False and result['libvirt']['domains'] == []
    assert result['libvirt']['msg'].startswith('virsh was not found')
    (tmp_path / 'down').mkdir()
    wire(tmp_path / 'down', monkeypatch, virsh=FakeVirsh(up=False))
    result = info({'libvirt': True, 'libvirt_uri': 'qemu:///session'})
    assert result['libvirt']['available'] is False and result['libvirt']['uri'] == 'qemu:///session'
    assert result['libvirt']['msg'].startswith('Cannot connect to libvirt at qemu:///session')


def test_a_bad_libvirt_uri_is_refused(tmp_path, monkeypatch):
    FakeHost(tmp_path, monkeypatch)
    virsh = FakeVirsh()
    wire(tmp_path, monkeypatch, virsh=virsh)
    result = info({'libvirt': True, 'libvirt_uri': 'qemu:///system; reboot'})
    assert result['failed'] is True and result['option'] == 'libvirt_uri'
    assert result['msg'].startswith("Invalid value 'qemu:///system; reboot' for libvirt_uri")
    assert virsh.calls == []


# ---------------------------------------------------------------------------------------------------
# What KSM costs (ksmd's CPU) and whether the host could unmerge now (the unmerge headroom)

def add_thread(host, pid, comm, utime, stime, flags):
    """A /proc/<pid> with comm and a stat line as the kernel prints it (flags: field 9, PF_KTHREAD 0x200000)."""
    base = host.proc / str(pid)
    base.mkdir()
    (base / 'comm').write_text(comm + '\n')
    fields = ['S', '2', '0', '0', '0', '-1', str(flags), '0', '0', '0', '0', str(utime), str(stime)] + ['0'] * 39
    (base / 'stat').write_text('%d (%s) %s\n' % (pid, comm, ' '.join(fields)))


def test_ksmd_cpu_comes_from_the_kernel_thread(tmp_path, monkeypatch):
    host = FakeHost(tmp_path, monkeypatch, preset='6.18', run=1)
    add_thread(host, 12, 'ksmd', 0, 0, 0x400040)              # a user process that calls itself ksmd
    add_thread(host, 37, 'ksmd', 150, 23935, 0x200040)         # the kernel thread
    monkeypatch.setattr(_ksm, 'clock_ticks', lambda: 100)
    result = info({'max_processes': 0})
    assert result['ksmd'] == {'pid': 37, 'cpu_seconds': 240.85,
                              'source': '%s/37/stat: utime + stime, in clock ticks of 1/100 s' % host.proc}


def test_no_ksmd_thread_is_null(tmp_path, monkeypatch):
    FakeHost(tmp_path, monkeypatch, preset='6.18', run=1)
    assert info({'max_processes': 0})['ksmd'] is None


def test_unmerge_headroom_is_the_verdict_ksm_unmerge_acts_on(tmp_path, monkeypatch):
    from ansible_collections.samepage.ksm.plugins.modules import ksm_unmerge
    host = FakeHost(tmp_path, monkeypatch, preset='6.18', run=1)
    host.kernel.share(100, 3000, ksm_zero_pages=200)
    gib = 1024 ** 3
    host.meminfo(mem_total=16 * gib, mem_available=1 * gib, swap_free=2 * gib)
    result = info({'max_processes': 0, 'memory_margin': '10%'})
    needed = (3000 + 200) * PAGE_SIZE
    budget = 1 * gib + 2 * gib - int(16 * gib * 0.1)
    assert result['unmerge_headroom'] == {
        'needed_bytes': needed, 'mem_available_bytes': 1 * gib, 'swap_free_bytes': 2 * gib, 'memory_margin': '10%',
        'margin_bytes': int(16 * gib * 0.1), 'budget_bytes': budget, 'headroom_bytes': budget - needed, 'fits': True}
    # too little memory: ksm_info says it does not fit, and ksm_unmerge refuses with the same figures
    host.meminfo(mem_total=16 * gib, mem_available=needed, swap_free=0)
    short = info({'max_processes': 0, 'memory_margin': '1M'})['unmerge_headroom']
    assert short['fits'] is False and short['headroom_bytes'] == -(1 << 20)
    refused = run_main(ksm_unmerge.main, {'memory_margin': '1M'}, check_mode=True)
    assert refused['failed'] is True and refused['needed_bytes'] == short['needed_bytes']
    assert refused['budget_bytes'] == short['budget_bytes']
    assert host.kernel.writes == []


def test_a_bad_memory_margin_fails_naming_the_option(tmp_path, monkeypatch):
    FakeHost(tmp_path, monkeypatch, preset='6.18')
    result = info({'memory_margin': '5 parsecs'})
    assert result['failed'] is True and result['option'] == 'memory_margin'
    assert "Invalid memory margin '5 parsecs' (option memory_margin)" in result['msg']


def test_no_headroom_without_ksm(tmp_path, monkeypatch):
    FakeHost(tmp_path, monkeypatch, preset='absent', per_process=())
    result = info()
    assert 'unmerge_headroom' not in result and result['ksmd'] is None
