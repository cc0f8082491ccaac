# -*- coding: utf-8 -*-
# Copyright: (c) 2026, samepage.ksm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""ksm_writers on a fake root file system (FakeHost's tmp_path): one test per writer it neutralises, in four
steps (check, apply, apply again unchanged, check again unchanged), with the files in the formats the real
packages ship (Ubuntu's /etc/default/qemu-kvm, TuneD's tuned.conf), and what ksm_sysfs warns about after."""

import os

import pytest

from ansible.module_utils import basic

from ansible_collections.samepage.ksm.plugins.module_utils import _ksm_writers
from ansible_collections.samepage.ksm.plugins.modules import ksm_sysfs
from ansible_collections.samepage.ksm.plugins.modules import ksm_writers
from ansible_collections.samepage.ksm.tests.support.four_steps import four_steps
from ansible_collections.samepage.ksm.tests.unit.plugins.modules.fake_host import FakeHost
from ansible_collections.samepage.ksm.tests.unit.plugins.modules.module_runner import run_main

# The shape of Ubuntu's /etc/default/qemu-kvm (qemu-system-common): comments, the two KSM keys, notes.
QEMU_KVM_DEFAULTS = ('# KSM: 1 on, 0 off, AUTO lets the init script decide (restart qemu-kvm after a change).\n'
                     'KSM_ENABLED=AUTO\nSLEEP_MILLISECS=200\n\n'
                     '# VHOST_NET_ENABLED is no longer used (vhost_net loads by itself)\n')

# A site profile including a vendor one that writes KSM in [sysfs], as TuneD's realtime-virtual-host does.
VENDOR_PROFILE = ('[main]\nsummary=KVM host\ninclude=throughput-performance\n\n[sysctl]\nvm.dirty_ratio = 10\n\n'
                  '[sysfs]\n# stop ksmd, unmerge all pages\n/sys/kernel/mm/ksm/run = 2\n'
                  '/sys/kernel/mm/transparent_hugepage/enabled = never\n')
SITE_PROFILE = ('[main]\nsummary=site\ninclude=kvm-host\n\n[ksm_rate]\ntype=sysfs\n'
                '/sys/kernel/mm/ksm/pages_to_scan = 5000\n')


@pytest.fixture
def host(tmp_path, monkeypatch):
    return FakeHost(tmp_path, monkeypatch)


def writers(args, check_mode=False, diff=False):
    return run_main(ksm_writers.main, args, check_mode=check_mode, diff=diff)


def files(root):
    """Every file under root's etc/, with its text (what check mode and unchanged runs must not touch)."""
    found = {}
    for directory, dummy, names in os.walk(str(root / 'etc')):
        for name in names:
            path = os.path.join(directory, name)
            if not os.path.islink(path):
                with open(path) as handle:
                    found[path] = handle.read()
    return found


def test_qemu_kvm_made_to_agree_in_four_steps(host):
    host.enable_unit('qemu-kvm.service')
    path = host.write_file('etc/default/qemu-kvm', QEMU_KVM_DEFAULTS)
    args = {'neutralise': ['qemu-kvm.service'], 'run': True, 'sleep_millisecs': 50}
    checked, applied, again, checked_again = four_steps(lambda check: writers(args, check_mode=check, diff=True),
                                                        observe=lambda: files(host.root))
    assert path.read_text() == QEMU_KVM_DEFAULTS.replace('KSM_ENABLED=AUTO', 'KSM_ENABLED=1').replace(
        'SLEEP_MILLISECS=200', 'SLEEP_MILLISECS=50')     # the rest of the file, comments included, kept
    assert applied['neutralised'] == [{
        'name': 'qemu-kvm.service', 'changed': True, 'files': [str(path)],
        'summary': 'qemu-kvm.service writes run=1, sleep_millisecs=50 at boot (KSM_ENABLED=1 SLEEP_MILLISECS=50 '
                   'in %s)' % path}]
    assert checked['msg'].startswith('Would neutralise qemu-kvm.service') and applied['msg'].startswith('Neutralised')
    assert checked['diff'] == [{'before_header': str(path), 'after_header': str(path), 'before': QEMU_KVM_DEFAULTS,
                                'after': path.read_text()}]
    assert again['neutralised'][0]['changed'] is False and again['diff'] == []
    assert again['msg'].startswith('Nothing to change: qemu-kvm.service writes run=1')
    # what ksm_sysfs then reads: the writer writes what the task sets, so it overwrites nothing
    result = run_main(ksm_sysfs.main, {'run': True, 'sleep_millisecs': 50})
    assert result['competing_writers'] == [] and result['warnings'] == []


def test_qemu_kvm_off_and_a_backup(host):
    host.enable_unit('qemu-kvm.service')
    path = host.write_file('etc/default/qemu-kvm', 'export KSM_ENABLED="1"  # on\nSLEEP_MILLISECS=200\n')
    result = writers({'neutralise': ['qemu-kvm.service'], 'run': False, 'sleep_millisecs': 50, 'backup': True})
    assert result['changed'] is True
    assert path.read_text() == 'KSM_ENABLED=0\nSLEEP_MILLISECS=200\n'     # off: the sleep is not written at all
    backup = result['backup_files'][str(path)]
    assert open(backup).read() == 'export KSM_ENABLED="1"  # on\nSLEEP_MILLISECS=200\n'
    assert run_main(ksm_sysfs.main, {'run': False})['competing_writers'] == []


def test_qemu_kvm_without_its_defaults_file(host):
    host.enable_unit('qemu-kvm.service')
    result = writers({'neutralise': ['qemu-kvm.service'], 'run': True})
    defaults = host.root / 'etc' / 'default' / 'qemu-kvm'
    assert result['changed'] is True and defaults.read_text().endswith('\nKSM_ENABLED=1\n')
    assert oct(defaults.stat().st_mode & 0o777) == '0o644'


def test_qemu_kvm_not_enabled_is_nothing_to_do(host):
    path = host.write_file('etc/default/qemu-kvm', QEMU_KVM_DEFAULTS)
    result = writers({'neutralise': ['qemu-kvm.service'], 'run': True})
    assert result['changed'] is False and result['neutralised'] == []
    assert result['msg'] == 'Nothing to change: none of qemu-kvm.service writes KSM on this host'
    assert path.read_text() == QEMU_KVM_DEFAULTS


@pytest.mark.parametrize('content, reason', [
    (b'KSM_ENABLED=1\n\xff\xfe\n', 'is not UTF-8 text'),
    (b'#' * (_ksm_writers.MAX_FILE_BYTES + 1), 'is larger than'),
])
def test_qemu_kvm_defaults_that_cannot_be_edited_whole(host, content, reason):
    host.enable_unit('qemu-kvm.service')
    path = host.root / 'etc' / 'default' / 'qemu-kvm'
    path.parent.mkdir(parents=True)
    path.write_bytes(content)
    result = writers({'neutralise': ['qemu-kvm.service', 'tuned'], 'run': True})
    assert result['failed'] is True and result['changed'] is False
    assert reason in result['msg'] and str(path) in result['msg'] and result['option'] == 'neutralise'
    assert path.read_bytes() == content


def test_run_is_required_for_qemu_kvm(host):
    result = writers({'neutralise': ['qemu-kvm.service']})
    assert result['failed'] is True and result['option'] == 'run'
    assert result['msg'].startswith('run is required when neutralise has qemu-kvm.service')


def tuned_host(host, layout='usr/lib/tuned/profiles'):
    host.write_file('etc/tuned/active_profile', 'site\n')
    host.write_file('etc/tuned/profile_mode', 'auto\n')
    host.write_file(layout + '/kvm-host/tuned.conf', VENDOR_PROFILE)
    host.write_file(layout + '/throughput-performance/tuned.conf',
                    '[main]\nsummary=throughput\n[cpu]\ngovernor=performance\n')
    host.write_file('etc/tuned/profiles/site/tuned.conf' if 'profiles' in layout else 'etc/tuned/site/tuned.conf',
                    SITE_PROFILE)


@pytest.mark.parametrize('layout, guard', [
    ('usr/lib/tuned/profiles', 'etc/tuned/profiles/samepage-ksm-guard/tuned.conf'),     # TuneD 2.23 and later
    ('usr/lib/tuned', 'etc/tuned/samepage-ksm-guard/tuned.conf'),                        # before (Debian 12: 2.19)
])
def test_tuned_guard_profile_in_four_steps(host, layout, guard):
    tuned_host(host, layout)
    vendor = host.root / layout / 'kvm-host' / 'tuned.conf'
    before = vendor.read_text()
    assert [entry['name'] for entry in run_main(ksm_sysfs.main, {'run': True, 'pages_to_scan': 300},
                                                check_mode=True)['competing_writers']] == ['tuned']
    checked, applied, again, checked_again = four_steps(
        lambda check: writers({'neutralise': ['tuned']}, check_mode=check), observe=lambda: files(host.root))
    guard = host.root / guard
    assert guard.read_text().split('\n')[3:] == [
        '[main]', 'summary=Leave /sys/kernel/mm/ksm to samepage.ksm', '',
        '[ksm_rate]', 'type=sysfs', 'drop=/sys/kernel/mm/ksm/pages_to_scan', '',
        '[sysfs]', 'type=sysfs', 'drop=/sys/kernel/mm/ksm/run', '']
    assert (host.root / 'etc/tuned/active_profile').read_text() == 'site samepage-ksm-guard\n'
    assert (host.root / 'etc/tuned/profile_mode').read_text() == 'manual\n'
    assert vendor.read_text() == before       # the profiles themselves are never edited
    assert applied['neutralised'][0]['tuned_profiles'] == ['site', 'samepage-ksm-guard']
    assert applied['neutralised'][0]['files'] == [str(guard), str(host.root / 'etc/tuned/active_profile'),
                                                  str(host.root / 'etc/tuned/profile_mode')]
    # TuneD now leaves KSM alone: ksm_info and ksm_sysfs find no writer in it
    scan = _ksm_writers.find()
    assert [finding.writer.name for finding in scan.found] == []
    assert run_main(ksm_sysfs.main, {'run': True, 'pages_to_scan': 300})['warnings'] == []


def test_tuned_guard_follows_a_new_ksm_line_and_moves_to_the_end(host):
    tuned_host(host)
    writers({'neutralise': ['tuned']})
    host.write_file('etc/tuned/active_profile', 'site samepage-ksm-guard extra\n')
    host.write_file('etc/tuned/profiles/extra/tuned.conf', '[sysfs]\n/sys/kernel/mm/ksm/sleep_millisecs = 10\n')
    assert 'tuned' in [finding.writer.name for finding in _ksm_writers.find().found]
    result = writers({'neutralise': ['tuned']})
    assert result['changed'] is True
    assert (host.root / 'etc/tuned/active_profile').read_text() == 'site extra samepage-ksm-guard\n'
    assert 'drop=/sys/kernel/mm/ksm/run,/sys/kernel/mm/ksm/sleep_millisecs' in (
        host.root / 'etc/tuned/profiles/samepage-ksm-guard/tuned.conf').read_text()
    assert _ksm_writers.find().found == []


def test_tuned_without_ksm_settings_is_nothing_to_do(host):
    host.write_file('etc/tuned/active_profile', 'virtual-guest\n')
    host.write_file('usr/lib/tuned/profiles/virtual-guest/tuned.conf', '[sysctl]\nvm.swappiness = 30\n')
    result = writers({'neutralise': ['tuned']})
    assert result['changed'] is False and result['neutralised'] == []
    assert not (host.root / 'etc/tuned/profiles/samepage-ksm-guard').exists()


def test_tuned_profile_switching_ksm_off_in_its_script_is_refused_with_nothing_changed(host):
    host.enable_unit('qemu-kvm.service')
    defaults = host.write_file('etc/default/qemu-kvm', QEMU_KVM_DEFAULTS)
    host.write_file('etc/tuned/active_profile', 'cpu-partitioning\n')
    host.write_file('var/lib/tuned/ksm-masked', '')
    result = writers({'neutralise': ['qemu-kvm.service', 'tuned'], 'run': True})
    assert result['failed'] is True and result['changed'] is False
    assert result['msg'].startswith('TuneD cannot be neutralised here: TuneD profile cpu-partitioning switches KSM '
                                    'off in its script')
    assert 'ksm-masked exists' in result['msg'] and 'tuned-adm profile' in result['msg']
    assert defaults.read_text() == QEMU_KVM_DEFAULTS        # planned first: nothing written


def test_tuned_running_switches_through_tuned_adm(host, monkeypatch):
    tuned_host(host)
    host.write_file('run/tuned/tuned.pid', '1234\n')
    calls = []

    def run_command(module, args, **kwargs):
        calls.append(args)
        host.write_file('etc/tuned/active_profile', ' '.join(args[2:]) + '\n')     # what tuned-adm does
        host.write_file('etc/tuned/profile_mode', 'manual\n')
        return 0, '', ''

    monkeypatch.setattr(basic.AnsibleModule, 'run_command', run_command)
    monkeypatch.setattr(basic.AnsibleModule, 'get_bin_path', lambda module, name, *args, **kwargs: '/usr/sbin/' + name)
    result = writers({'neutralise': ['tuned']})
    assert result['changed'] is True
    assert calls == [['/usr/sbin/tuned-adm', 'profile', 'site', 'samepage-ksm-guard']]
    assert writers({'neutralise': ['tuned']})['changed'] is False and len(calls) == 1


def test_tuned_adm_failure_is_reported_with_what_was_written(host, monkeypatch):
    tuned_host(host)
    host.write_file('run/tuned/tuned.pid', '1234\n')
    monkeypatch.setattr(basic.AnsibleModule, 'run_command',
                        lambda module, args, **kwargs: (1, '', 'Cannot talk to TuneD daemon'))
    monkeypatch.setattr(basic.AnsibleModule, 'get_bin_path', lambda module, name, *args, **kwargs: '/usr/sbin/' + name)
    result = writers({'neutralise': ['tuned']})
    assert result['failed'] is True and result['changed'] is True
    assert 'tuned-adm profile site samepage-ksm-guard failed (rc=1): Cannot talk to TuneD daemon' in result['msg']
    assert result['written'] == [str(host.root / 'etc/tuned/profiles/samepage-ksm-guard/tuned.conf')]
