# -*- coding: utf-8 -*-
# Copyright: (c) 2026, samepage.ksm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The distribution tables (_ksm_units) and the systemctl wrapper (_systemd) on their own."""

import pytest

from ansible_collections.samepage.ksm.plugins.module_utils import _ksm_units, _systemd
from ansible_collections.samepage.ksm.plugins.module_utils._systemd import SystemdError
from ansible_collections.samepage.ksm.tests.unit.fakes import systemd as fakes
from ansible_collections.samepage.ksm.tests.unit.fakes.os_release import OS_RELEASES


def distro(name, proxmox=False):
    return _ksm_units.Distribution(_ksm_units.parse_os_release(OS_RELEASES[name]), proxmox=proxmox)


# ---------------------------------------------------------------------------------------------------
# os-release

def test_parse_os_release_quotes_escapes_and_comments():
    text = '\n'.join([
        '# a comment',
        '',
        'ID=debian',
        'NAME="Debian GNU/Linux"',
        "VARIANT='single quoted'",
        'PRETTY_NAME="A \\"quoted\\" \\$name \\\\ here"',
        'garbage line without equals',
        'BAD-KEY=x',
        'VERSION_ID="12"',
    ])
    parsed = _ksm_units.parse_os_release(text)
    assert parsed == {
        'ID': 'debian',
        'NAME': 'Debian GNU/Linux',
        'VARIANT': 'single quoted',
        'PRETTY_NAME': 'A "quoted" $name \\ here',
        'VERSION_ID': '12',
    }


def test_read_os_release_takes_the_first_file_that_exists(tmp_path):
    usr = tmp_path / 'usr-os-release'
    usr.write_text('ID=arch\n')
    assert _ksm_units.read_os_release((str(tmp_path / 'missing'), str(usr)))['ID'] == 'arch'
    assert _ksm_units.read_os_release((str(tmp_path / 'missing'),)) == {}


def test_detect_reads_the_module_paths_at_call_time(tmp_path, monkeypatch):
    release = tmp_path / 'os-release'
    release.write_text(OS_RELEASES['debian12'])
    marker = tmp_path / 'pveversion'
    monkeypatch.setattr(_ksm_units, 'OS_RELEASE_PATHS', (str(release),))
    monkeypatch.setattr(_ksm_units, 'PROXMOX_MARKERS', (str(marker),))
    assert _ksm_units.detect().family == 'debian'
    marker.write_text('')
    assert _ksm_units.detect().family == 'proxmox'


@pytest.mark.parametrize('name, family, major', [
    ('rhel7', 'rhel', 7),
    ('rhel8', 'rhel', 8),
    ('rhel9', 'rhel', 9),
    ('centos_stream9', 'rhel', 9),
    ('alma9', 'rhel', 9),
    ('rocky8', 'rhel', 8),
    ('fedora28', 'fedora', 28),
    ('fedora40', 'fedora', 40),
    ('debian12', 'debian', 12),
    ('debian13', 'debian', 13),
    ('ubuntu2404', 'ubuntu', 24),
    ('mint22', 'ubuntu', 22),
    ('arch', 'arch', None),
    ('manjaro', 'arch', None),
    ('opensuse', None, 15),
])
def test_families(name, family, major):
    found = distro(name)
    assert found.family == family
    assert found.major == major


def test_proxmox_is_debian_with_the_marker():
    assert distro('proxmox8').family == 'debian'
    assert distro('proxmox8', proxmox=True).family == 'proxmox'
    # a marker on a non-Debian system does not make it Proxmox
    assert distro('fedora40', proxmox=True).family == 'fedora'


def test_fedora_numbered_rhel_like_derivative_is_fedora():
    found = _ksm_units.Distribution({'ID': 'nobara', 'ID_LIKE': 'rhel centos fedora', 'VERSION_ID': '39'})
    assert found.family == 'fedora'


def test_empty_os_release():
    found = _ksm_units.Distribution({})
    assert found.family is None and found.pretty_name == 'this system'
    assert _ksm_units.package_for(found, 'ksmtuned.service') is None


# ---------------------------------------------------------------------------------------------------
# Packages

@pytest.mark.parametrize('name, ksm, ksmtuned', [
    ('rhel7', 'qemu-kvm-common', 'qemu-kvm-common'),
    ('rhel8', 'qemu-kvm-common', 'qemu-kvm-common'),
    ('rocky8', 'qemu-kvm-common', 'qemu-kvm-common'),
    ('rhel9', 'ksmtuned', 'ksmtuned'),
    ('alma9', 'ksmtuned', 'ksmtuned'),
    ('centos_stream9', 'ksmtuned', 'ksmtuned'),
    ('fedora28', 'ksm', 'ksm'),
    ('fedora40', 'ksmtuned', 'ksmtuned'),
    ('debian12', 'ksmtuned', 'ksmtuned'),
    ('debian13', 'ksmtuned', 'ksmtuned'),
    ('ubuntu2404', 'ksmtuned', 'ksmtuned'),
    ('arch', 'ksmtuned-git', 'ksmtuned-git'),
    ('opensuse', None, None),
])
def test_package_tables(name, ksm, ksmtuned):
    found = distro(name)
    assert _ksm_units.package_for(found, 'ksm.service') == ksm
    assert _ksm_units.package_for(found, 'ksmtuned.service') == ksmtuned


def test_package_of_ubuntu_qemu_kvm_and_proxmox():
    assert _ksm_units.package_for(distro('ubuntu2404'), 'qemu-kvm.service') == 'qemu-system-common'
    assert _ksm_units.package_for(distro('debian12'), 'qemu-kvm.service') is None
    pve = distro('proxmox8', proxmox=True)
    assert _ksm_units.package_for(pve, 'ksmtuned.service') == 'ksm-control-daemon'
    assert _ksm_units.package_for(pve, 'ksm.service') is None
    assert _ksm_units.table_units(pve) == {'ksm': None, 'ksmtuned': 'ksmtuned.service'}
    assert _ksm_units.package_for(distro('rhel7'), 'other.service') is None


def test_rhel6_would_be_qemu_kvm():
    found = _ksm_units.Distribution({'ID': 'rhel', 'VERSION_ID': '6.10'})
    assert _ksm_units.package_for(found, 'ksm.service') == 'qemu-kvm'


def test_missing_messages():
    text = _ksm_units.missing_message('ksmtuned', distro('debian12'))
    assert text == ('ksmtuned.service is not installed: on Debian GNU/Linux 12 (bookworm) it comes with the '
                    'package ksmtuned (apt-get install ksmtuned). Installing it enables and starts '
                    'ksm.service and ksmtuned.service at once.')
    text = _ksm_units.missing_message('ksm', distro('rhel8'))
    assert text == ('ksm.service is not installed: on Red Hat Enterprise Linux 8.10 (Ootpa) it comes with '
                    'the package qemu-kvm-common (dnf install qemu-kvm-common).')
    assert 'has no ksm unit' in _ksm_units.missing_message('ksm', distro('proxmox8', proxmox=True))
    assert 'qemu-system-common' in _ksm_units.missing_message('ksm', distro('ubuntu2404'))
    assert 'ksmtuned-git' in _ksm_units.missing_message('ksm', distro('arch'))


def test_masked_messages(tmp_path):
    marker = tmp_path / 'ksm-masked'
    text = _ksm_units.masked_message('ksm.service', tuned_marker=str(marker))
    assert text.startswith('ksm.service is masked, so systemd refuses to start, restart, reload or enable it')
    assert text.endswith('Set unmask=true to unmask it and go ahead.')
    assert str(marker) not in text
    marker.write_text('1\n')
    text = _ksm_units.masked_message(['ksmtuned.service', 'ksm.service'], tuned_marker=str(marker))
    assert text.startswith('ksmtuned.service and ksm.service are masked')
    assert 'TuneD masked them: %s exists' % marker in text
    assert text.endswith('unmask them and go ahead.')


# ---------------------------------------------------------------------------------------------------
# Resolution: existence wins over the tables

def resolve(systemd, name='debian12', proxmox=False):
    ctl = _systemd.Systemctl(systemd.run_command, '/usr/bin/systemctl')
    return _ksm_units.Resolution(distro(name, proxmox=proxmox), ctl.show(_ksm_units.CANDIDATE_UNITS))


def test_resolution_debian():
    found = resolve(fakes.debian())
    assert found.units == {'ksm': 'ksm.service', 'ksmtuned': 'ksmtuned.service'}
    assert found.ksmtuned_requires_ksm is True
    assert found.package('ksm') == 'ksmtuned'
    assert found.present() == found.units


def test_resolution_proxmox_and_its_missing_ksm():
    found = resolve(fakes.proxmox(), 'proxmox8', proxmox=True)
    assert found.units == {'ksm': None, 'ksmtuned': 'ksmtuned.service'}
    assert found.ksmtuned_requires_ksm is False
    assert found.package('ksmtuned') == 'ksm-control-daemon' and found.package('ksm') is None
    with pytest.raises(SystemdError) as caught:
        found.require('ksm')
    assert 'has no ksm unit' in caught.value.msg
    assert found.require('ksmtuned') == 'ksmtuned.service'


def test_resolution_ubuntu_qemu_kvm():
    found = resolve(fakes.ubuntu_qemu(), 'ubuntu2404')
    assert found.units == {'ksm': 'qemu-kvm.service', 'ksmtuned': None}
    assert found.package('ksm') == 'qemu-system-common' and found.package('ksmtuned') == 'ksmtuned'
    # not on Debian, where qemu-system-common ships no such unit
    assert resolve(fakes.ubuntu_qemu(), 'debian12').units['ksm'] is None


def test_resolution_masked_unit_exists():
    systemd = fakes.debian()
    systemd.unit('ksm.service').masked = True
    found = resolve(systemd)
    assert found.units['ksm'] == 'ksm.service'
    assert _systemd.is_masked(found.statuses['ksm.service'])


def test_resolution_requires_is_read_from_the_unit():
    systemd = fakes.debian()
    systemd.unit('ksmtuned.service').requires = ['sysinit.target']
    assert resolve(systemd).ksmtuned_requires_ksm is False


# ---------------------------------------------------------------------------------------------------
# _systemd: parsing systemctl's output

SHOW_TWO_UNITS = '''Id=ksm.service
MainPID=0
ExecMainStatus=0
LoadState=loaded
ActiveState=active
SubState=exited
UnitFileState=enabled
ConditionResult=yes
ConditionTimestampMonotonic=5829431
Requires=sysinit.target system.slice
CanReload=no
NeedDaemonReload=no
Result=success

Id=ksmtuned.service
MainPID=611
LoadState=loaded
ActiveState=active
SubState=running
UnitFileState=enabled
ConditionResult=yes
ConditionTimestampMonotonic=5901311
Requires=system.slice ksm.service sysinit.target
CanReload=yes
NeedDaemonReload=no
Result=success
'''

SHOW_MISSING = '''Id=nothing.service
MainPID=0
LoadState=not-found
ActiveState=inactive
SubState=dead
UnitFileState=
ConditionResult=no
ConditionTimestampMonotonic=0
Requires=
CanReload=no
Result=success
'''


def test_parse_show_blocks():
    blocks = _systemd.parse_show(SHOW_TWO_UNITS)
    assert [block['Id'] for block in blocks] == ['ksm.service', 'ksmtuned.service']
    status = _systemd.status_from_show(blocks[1], 'ksmtuned.service')
    assert status['main_pid'] == 611 and status['can_reload'] is True
    assert status['requires'] == ['system.slice', 'ksm.service', 'sysinit.target']
    assert status['condition_timestamp'] == 5901311
    assert _systemd.is_running(status) and _systemd.is_enabled(status) and not _systemd.is_masked(status)
    assert _systemd.describe(status) == 'active (running), enabled'


def test_missing_unit_status():
    status = _systemd.status_from_show(_systemd.parse_show(SHOW_MISSING)[0], 'nothing.service')
    assert not _systemd.exists(status)
    assert _systemd.describe(status) == 'not installed'
    assert not _systemd.condition_failed(status), 'never checked is not failed'
    assert status['unit_file_state'] == '' and status['main_pid'] == 0


def test_condition_failed_needs_a_check_time():
    status = {'active_state': 'inactive', 'sub_state': 'dead', 'unit_file_state': 'disabled',
              'load_state': 'loaded', 'condition_result': 'no', 'condition_timestamp': 42}
    assert _systemd.condition_failed(status)
    assert _systemd.describe(status) == 'inactive (dead), disabled, start condition not met'


@pytest.mark.parametrize('word, enabled', [
    ('enabled', True), ('enabled-runtime', True), ('static', True), ('indirect', True),
    ('generated', True), ('alias', True), ('transient', True),
    ('disabled', False), ('masked', False), ('masked-runtime', False), ('linked', False), ('', False),
])
def test_enabled_words(word, enabled):
    assert _systemd.is_enabled({'unit_file_state': word}) is enabled


@pytest.mark.parametrize('active, running', [
    ('active', True), ('activating', True), ('reloading', True),
    ('inactive', False), ('failed', False), ('deactivating', False),
])
def test_running_states(active, running):
    assert _systemd.is_running({'active_state': active}) is running


def test_show_is_one_call_with_lc_all_c():
    systemd = fakes.debian()
    ctl = _systemd.Systemctl(systemd.run_command, '/usr/bin/systemctl')
    statuses = ctl.show(['ksm.service', 'ksmtuned.service', 'qemu-kvm.service'])
    assert len(systemd.calls) == 1
    assert systemd.calls[0][:3] == ['/usr/bin/systemctl', 'show', '--no-pager']
    assert statuses['qemu-kvm.service']['load_state'] == 'not-found'
    assert statuses['ksmtuned.service']['sub_state'] == 'running'
    assert statuses['ksm.service']['unit'] == 'ksm.service'


def test_show_maps_by_id_when_blocks_do_not_line_up():
    def run_command(args, check_rc=False, environ_update=None):
        return 0, SHOW_TWO_UNITS, ''
    ctl = _systemd.Systemctl(run_command)
    statuses = ctl.show(['ksmtuned.service', 'ksm.service', 'qemu-kvm.service'])
    assert statuses['ksmtuned.service']['main_pid'] == 611
    assert statuses['ksm.service']['sub_state'] == 'exited'
    assert statuses['qemu-kvm.service']['load_state'] == 'not-found'


def test_is_enabled_words_and_missing():
    systemd = fakes.debian()
    systemd.unit('ksm.service').enablement = 'static'
    ctl = _systemd.Systemctl(systemd.run_command)
    assert ctl.is_enabled('ksm.service') == 'static'
    assert ctl.is_enabled('nothing.service') == 'not-found'
    systemd.run_command(['systemctl', 'mask', 'ksmtuned.service'], environ_update={'LC_ALL': 'C'})
    assert ctl.is_enabled('ksmtuned.service') == 'masked'


def test_is_enabled_missing_on_systemd_257():
    ctl = _systemd.Systemctl(fakes.FakeSystemd(version=257).run_command)
    assert ctl.is_enabled('nothing.service') == 'not-found'


def test_masked_ksmtuned_shows_no_requires_so_the_tables_tell():
    systemd = fakes.debian()
    systemd.unit('ksmtuned.service').masked = True
    found = resolve(systemd)
    assert found.statuses['ksmtuned.service']['requires'] == []
    assert found.ksmtuned_requires_ksm is True
    # ...but not on Proxmox, whose ksmtuned.service has no Requires=
    systemd = fakes.debian()
    systemd.unit('ksmtuned.service').masked = True
    assert resolve(systemd, 'proxmox8', proxmox=True).ksmtuned_requires_ksm is False


def test_call_raises_with_systemctl_message():
    systemd = fakes.debian(active=False)
    systemd.unit('ksm.service').masked = True
    ctl = _systemd.Systemctl(systemd.run_command, '/usr/bin/systemctl')
    with pytest.raises(_systemd.SystemdError) as caught:
        ctl.call('start', 'ksm.service')
    assert caught.value.msg == ('systemctl start -- ksm.service failed (rc=1): '
                                'Failed to start ksm.service: Unit ksm.service is masked.')
    assert caught.value.details['rc'] == 1


def test_no_systemd_booted(tmp_path):
    assert _systemd.booted(str(tmp_path)) is True
    assert _systemd.booted(str(tmp_path / 'absent')) is False


def test_detect_virt():
    systemd = fakes.FakeSystemd(virt='kvm')
    assert _systemd.detect_virt(systemd.run_command, '/usr/bin/systemd-detect-virt') == 'kvm'
    assert _systemd.detect_virt(systemd.run_command, None) is None


# ---------------------------------------------------------------------------------------------------
# services_report: what ksm_info says with services=true

def _report(tmp_path, systemd, name, proxmox=False, booted=True):
    runtime = tmp_path / 'run-systemd-system'
    if booted:
        runtime.mkdir(exist_ok=True)
    return _ksm_units.services_report(systemd.run_command, lambda program: '/usr/bin/' + program,
                                      runtime_dir=str(runtime), distro=distro(name, proxmox))


def _brief(report):
    return [(unit['name'], unit['unit'], unit['installed'], unit['enabled'], unit['running']) for unit in report['units']]


def test_services_report_of_debian_with_both_units(tmp_path):
    report = _report(tmp_path, fakes.debian(), 'debian12')
    assert report['systemd'] is True and report['reason'] is None
    assert _brief(report) == [('ksm', 'ksm.service', True, True, True), ('ksmtuned', 'ksmtuned.service', True, True, True)]
    assert report['units'][1]['state'] == 'active (running), enabled'


def test_services_report_of_ubuntu_qemu_kvm_and_proxmox(tmp_path):
    assert _brief(_report(tmp_path, fakes.ubuntu_qemu(), 'ubuntu2404')) == [
        ('ksm', 'qemu-kvm.service', True, True, True), ('ksmtuned', 'ksmtuned.service', False, False, False)]
    # Proxmox has no ksm unit at all: none to name
    assert _brief(_report(tmp_path, fakes.proxmox(active=False), 'proxmox8', proxmox=True)) == [
        ('ksm', None, False, False, False), ('ksmtuned', 'ksmtuned.service', True, True, False)]


def test_services_report_without_systemd_or_with_a_failing_systemctl(tmp_path):
    systemd = fakes.debian()
    report = _report(tmp_path, systemd, 'debian12', booted=False)
    assert report['systemd'] is False and report['units'] == [] and 'PID 1 is not systemd' in report['reason']
    assert systemd.calls == []
    # systemd's runtime directory is there, but systemctl cannot reach it
    report = _report(tmp_path, fakes.debian(booted=False), 'debian12')
    assert report['systemd'] is False and report['units'] == []
    assert report['reason'].startswith('systemctl show') and 'Host is down' in report['reason']
