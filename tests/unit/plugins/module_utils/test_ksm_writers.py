# -*- coding: utf-8 -*-
# Copyright: (c) 2026, samepage.ksm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""_ksm_writers against a fake root file system built in tmp_path: one test per writer, absent and unreadable
files, and hostile contents (huge files, binary junk, line breaks in values) that must give clean results."""

import os

import pytest

from ansible_collections.samepage.ksm.plugins.module_utils import _ksm_writers


class Root:
    """A fake root file system under tmp_path."""

    def __init__(self, path):
        self.path = path
        (path / 'proc').mkdir()

    def file(self, relative, content):
        target = self.path / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            target.write_bytes(content)
        else:
            target.write_text(content)
        return str(target)

    def process(self, pid, comm):
        return self.file('proc/%d/comm' % pid, comm if isinstance(comm, bytes) else comm + '\n')

    def enable(self, unit, target='multi-user.target', base='etc/systemd/system'):
        wants = self.path / base / (target + '.wants')
        wants.mkdir(parents=True, exist_ok=True)
        (wants / unit).symlink_to('/usr/lib/systemd/system/' + unit)
        return str(wants / unit)

    def mask(self, unit):
        directory = self.path / 'etc' / 'systemd' / 'system'
        directory.mkdir(parents=True, exist_ok=True)
        (directory / unit).symlink_to('/dev/null')

    def scan(self):
        return _ksm_writers.find(str(self.path))

    def found(self):
        return {finding.writer.name: finding.as_dict() for finding in self.scan().found}


@pytest.fixture
def root(tmp_path):
    return Root(tmp_path)


def test_an_empty_host_has_no_writers(root):
    scan = root.scan()
    assert scan.found == [] and scan.skipped == []


def test_a_missing_root_is_no_error(tmp_path):
    scan = _ksm_writers.find(str(tmp_path / 'nothing-here'))
    assert scan.found == [] and scan.skipped == []


def test_catalogue_is_complete_and_consistent():
    names = [writer.name for writer in _ksm_writers.WRITERS]
    assert len(names) == len(set(names))
    for writer in _ksm_writers.WRITERS:
        assert writer.when and writer.remedy and writer.description
    assert set(_ksm_writers.PROCESS_NAMES.values()) <= set(names)
    assert set(_ksm_writers.UNIT_NAMES.values()) <= set(names)
    assert [writer.name for writer in _ksm_writers.WRITERS if writer.ours] == ['samepage-ksm-tuner']
    assert all(len(comm) <= 15 for comm in _ksm_writers.PROCESS_NAMES)    # the kernel cuts comm at 15


# ---------------------------------------------------------------------------------------------------
# ksmtuned and ksm.service

def test_ksmtuned_by_its_process(root):
    root.process(1, 'systemd')
    root.process(812, 'ksmtuned')
    root.process(813, 'ksmtuned.sh')       # not the same name
    found = root.found()
    assert list(found) == ['ksmtuned']
    assert found['ksmtuned'] == {
        'name': 'ksmtuned', 'knobs': ['run', 'pages_to_scan', 'sleep_millisecs'], 'when': 'every interval',
        'evidence': ['process ksmtuned (pid 812)'], 'ours': False, 'remedy': _ksm_writers.BY_NAME['ksmtuned'].remedy,
        'turns_on': True}
    assert 'samepage.ksm.ksm_service' in found['ksmtuned']['remedy']


def test_ksmtuned_by_its_enabled_unit_and_not_when_masked(root):
    link = root.enable('ksmtuned.service')
    assert root.found()['ksmtuned']['evidence'] == ['ksmtuned.service enabled (%s)' % link]
    root.mask('ksmtuned.service')
    assert root.found() == {}


def test_ksm_service_writes_run_at_boot(root):
    root.enable('ksm.service')
    found = root.found()['ksm.service']
    assert found['knobs'] == ['run'] and found['when'] == 'at boot'
    findings = root.scan().found
    # it always writes run=1: a task that sets run=1 is not overwritten, one that sets run=0 is
    assert _ksm_writers.overwriting(findings, {'run': 1}) == []
    assert [(f.writer.name, knobs) for f, knobs in _ksm_writers.overwriting(findings, {'run': 0})] == [
        ('ksm.service', ['run'])]


def test_vendor_enablement_counts_too(root):
    root.enable('ksm.service', base='usr/lib/systemd/system')
    assert 'ksm.service' in root.found()


# ---------------------------------------------------------------------------------------------------
# Ubuntu's qemu-kvm.service

def test_qemu_kvm_auto(root):
    root.enable('qemu-kvm.service')
    path = root.file('etc/default/qemu-kvm', '# defaults\nKSM_ENABLED=AUTO\nSLEEP_MILLISECS=200\n'
                                             'KVM_HUGEPAGES=0\n')
    found = root.found()['qemu-kvm.service']
    assert found['knobs'] == ['run', 'sleep_millisecs'] and found['when'] == 'at boot'
    assert '%s: KSM_ENABLED=AUTO' % path in found['evidence']
    assert '%s: SLEEP_MILLISECS=200' % path in found['evidence']
    assert 'KSM_ENABLED' in found['remedy'] and '/etc/default/qemu-kvm' in found['remedy']


def test_qemu_kvm_disabled_writes_only_run(root):
    root.enable('qemu-kvm.service')
    root.file('etc/default/qemu-kvm', 'export KSM_ENABLED="0"  \nSLEEP_MILLISECS=200\n')
    assert root.found()['qemu-kvm.service']['knobs'] == ['run']


def test_qemu_kvm_defaults_without_the_unit_write_nothing(root):
    root.file('etc/default/qemu-kvm', 'KSM_ENABLED=1\n')
    assert root.found() == {}
    root.enable('qemu-kvm.service')
    root.mask('qemu-kvm.service')
    assert root.found() == {}


def test_qemu_kvm_defaults_are_data_never_code(root, tmp_path):
    root.enable('qemu-kvm.service')
    marker = tmp_path / 'sourced'
    root.file('etc/default/qemu-kvm', 'touch %s\nKSM_ENABLED=$(touch %s)\nSLEEP_MILLISECS=`id`\n' % (marker, marker))
    found = root.found()['qemu-kvm.service']
    assert not marker.exists()
    assert any("KSM_ENABLED='$(touch" in line for line in found['evidence'])
    assert not any('SLEEP_MILLISECS' in line for line in found['evidence'])


def test_qemu_kvm_without_defaults_file(root):
    root.enable('qemu-kvm.service')
    found = root.found()['qemu-kvm.service']
    assert found['knobs'] == ['run', 'sleep_millisecs']
    assert any('absent or unreadable' in line for line in found['evidence'])


def test_parse_assignments():
    text = 'A=1\n# B=2\n  export C="x y" # c\nD=\'q\'\nE=unterminated"\nF="open\nG=3 # comment\nA=4\nnot an assignment\n'
    expected = {'A': '4', 'C': 'x y', 'D': 'q', 'E': 'unterminated"', 'F': 'open', 'G': '3'}
    assert _ksm_writers.parse_assignments(text) == expected


# ---------------------------------------------------------------------------------------------------
# TuneD

def test_tuned_profile_with_ksm_sysfs_lines_through_include(root):
    root.file('etc/tuned/active_profile', 'my-virt\n')
    mine = root.file('etc/tuned/my-virt/tuned.conf', '[main]\ninclude=virtual-host\n\n[sysctl]\nvm.swappiness=10\n')
    vendor = root.file('usr/lib/tuned/virtual-host/tuned.conf',
                       '[main]\nsummary=x\n[sysfs]\n/sys/kernel/mm/ksm/run = 1\n'
                       '/sys/kernel/mm/ksm/sleep_millisecs = 50\n/sys/kernel/mm/transparent_hugepage/enabled = never\n')
    found = root.found()['tuned']
    assert found['knobs'] == ['run', 'sleep_millisecs']
    assert found['when'] == _ksm_writers.PROFILE_SWITCH
    assert found['evidence'][0].endswith('active_profile: my-virt')
    assert '%s:4: /sys/kernel/mm/ksm/run = 1' % vendor in found['evidence']
    assert not any(mine in line for line in found['evidence'])
    assert 'switch the TuneD profile' in found['remedy'] and '[sysfs]' in found['remedy']


def test_tuned_etc_profile_overrides_the_vendor_one(root):
    root.file('etc/tuned/active_profile', 'virtual-host')
    root.file('etc/tuned/virtual-host/tuned.conf', '[main]\nsummary=mine, no ksm\n')
    root.file('usr/lib/tuned/virtual-host/tuned.conf', '[sysfs]\n/sys/kernel/mm/ksm/run = 1\n')
    assert root.found() == {}


@pytest.mark.parametrize('profile', ['cpu-partitioning', 'cpu-partitioning-powersave'])
def test_tuned_profiles_that_switch_ksm_off(root, profile):
    root.file('etc/tuned/active_profile', profile + '\n')
    found = root.found()['tuned']
    assert found['knobs'] == ['run']
    assert any('%s switches KSM off' % profile in line for line in found['evidence'])


def test_tuned_realtime_virtual_host_writes_run_through_sysfs(root):
    # TuneD's realtime-virtual-host: run=2 in [sysfs], a script that does not touch KSM (unlike cpu-partitioning).
    root.file('etc/tuned/active_profile', 'realtime-virtual-host\n')
    root.file('usr/lib/tuned/profiles/realtime/tuned.conf', '[main]\nsummary=Realtime\n[sysctl]\nkernel.hung_task_timeout_secs = 600\n')
    path = root.file('usr/lib/tuned/profiles/realtime-virtual-host/tuned.conf',
                     '[main]\nsummary=KVM host, realtime guests\ninclude=realtime\n\n[sysfs]\n'
                     '# stop ksmd, unmerge all pages\n/sys/kernel/mm/ksm/run = 2\n\n[script]\nscript=${i:PROFILE_DIR}/script.sh\n')
    found = root.found()['tuned']
    assert found['knobs'] == ['run']
    assert '%s:7: /sys/kernel/mm/ksm/run = 2' % path in found['evidence']
    assert not any('switches KSM off' in line for line in found['evidence'])


def test_tuned_custom_profile_including_a_disabler(root):
    root.file('etc/tuned/active_profile', 'site')
    root.file('etc/tuned/site/tuned.conf', '[main]\ninclude = throughput-performance, cpu-partitioning\n')
    assert any('cpu-partitioning switches KSM off' in line for line in root.found()['tuned']['evidence'])


def test_tuned_ksm_masked_marker(root):
    marker = root.file('var/lib/tuned/ksm-masked', '')
    found = root.found()['tuned']
    assert found['knobs'] == ['run'] and any(marker in line for line in found['evidence'])


def test_tuned_include_loops_end(root):
    root.file('etc/tuned/active_profile', 'a')
    root.file('etc/tuned/a/tuned.conf', '[main]\ninclude=b\n[sysfs]\n/sys/kernel/mm/ksm/pages_to_scan=500\n')
    root.file('etc/tuned/b/tuned.conf', '[main]\ninclude=a\n')
    assert root.found()['tuned']['knobs'] == ['pages_to_scan']


def test_tuned_profile_without_ksm_is_not_a_writer(root):
    root.file('etc/tuned/active_profile', 'balanced')
    root.file('usr/lib/tuned/balanced/tuned.conf', '[main]\nsummary=General\n[cpu]\ngovernor=conservative\n')
    assert root.found() == {}


def test_tuned_hostile_profile_names_are_not_followed(root, tmp_path):
    outside = tmp_path / 'outside'
    outside.mkdir()
    (outside / 'tuned.conf').write_text('[sysfs]\n/sys/kernel/mm/ksm/run = 1\n')
    root.file('etc/tuned/active_profile', '../../outside\n/etc/passwd\n')
    root.file('etc/tuned/x/tuned.conf', '[main]\ninclude=../../../outside\n')
    assert root.found() == {}


# ---------------------------------------------------------------------------------------------------
# tmpfiles.d and sysfsutils

def test_tmpfiles_lines(root):
    path = root.file('etc/tmpfiles.d/ksm.conf', '# KSM\nw /sys/kernel/mm/ksm/run - - - - 1\n'
                                                'w+ /sys/kernel/mm/ksm/advisor_mode - - - - scan-time\n'
                                                'd /run/foo 0755 root root -\nw /sys/kernel/mm/transparent_hugepage/x - - - - 1\n')
    found = root.found()['tmpfiles.d']
    assert found['knobs'] == ['run', 'advisor_mode'] and found['when'] == 'at boot'
    assert found['evidence'][0] == '%s:2: w /sys/kernel/mm/ksm/run - - - - 1' % path


def test_tmpfiles_etc_overrides_usr_lib(root):
    root.file('usr/lib/tmpfiles.d/ksm.conf', 'w /sys/kernel/mm/ksm/run - - - - 1\n')
    root.file('etc/tmpfiles.d/ksm.conf', '# masked by the administrator\n')
    assert root.found() == {}
    root.file('run/tmpfiles.d/other.conf', 'w /sys/kernel/mm/ksm/sleep_millisecs - - - - 10\n')
    assert root.found()['tmpfiles.d']['knobs'] == ['sleep_millisecs']


def test_sysfsutils(root):
    conf = root.file('etc/sysfs.conf', '# sysfs\nkernel/mm/ksm/run = 1\nmode kernel/mm/ksm/run = 0644\n')
    root.file('etc/sysfs.d/ksm.conf', '/sys/kernel/mm/ksm/pages_to_scan = 1000 # fast\n')
    found = root.found()['sysfsutils']
    assert found['knobs'] == ['run', 'pages_to_scan']
    assert '%s:2: kernel/mm/ksm/run = 1' % conf in found['evidence']


# ---------------------------------------------------------------------------------------------------
# MemoryKSM=, oVirt, KubeVirt, the collection's own tuner

def test_units_with_memory_ksm(root):
    path = root.file('etc/systemd/system/guests.service', '[Service]\nExecStart=/bin/true\nMemoryKSM=yes\n')
    root.file('usr/lib/systemd/system/off.service', '[Service]\nMemoryKSM=no\n')
    dropin = root.file('etc/systemd/system/web.service.d/ksm.conf', '[Service]\n  MemoryKSM = true\n')
    found = root.found()['systemd MemoryKSM=']
    assert found['knobs'] == [] and found['when'] == 'when its processes start'
    assert sorted(found['evidence']) == sorted(['guests.service (%s): MemoryKSM=yes' % path,
                                                'web.service (%s): MemoryKSM=yes' % dropin])
    # it writes no knob: nothing a task sets is overwritten
    assert _ksm_writers.overwriting(root.scan().found, {'run': 1, 'pages_to_scan': 9}) == []


def test_memory_ksm_scan_is_bounded_and_says_what_it_skipped(root, monkeypatch):
    monkeypatch.setattr(_ksm_writers, 'MAX_UNIT_FILES', 3)
    monkeypatch.setattr(_ksm_writers, 'MAX_FILE_BYTES', 100)
    root.file('etc/systemd/system/a-big.service', '[Service]\n' + '#' * 200 + '\nMemoryKSM=yes\n')
    for name in ('b.service', 'c.service', 'd.service', 'e.service'):
        root.file('etc/systemd/system/' + name, '[Service]\n')
    scan = root.scan()
    assert scan.found == []
    assert any('stopped after 3 unit files' in line for line in scan.skipped)
    assert any('larger than 100 bytes' in line and 'a-big.service' in line for line in scan.skipped)


def test_ovirt_and_kubevirt(root):
    root.process(300, 'momd')
    root.process(301, 'vdsmd')
    root.process(400, 'virt-handler')
    policy = root.file('etc/vdsm/mom.d/03-ksm.policy', '(defvar ksm_run 1)\n')
    found = root.found()
    assert found['ovirt-mom']['evidence'] == ['process momd (pid 300)', 'process vdsmd (pid 301)',
                                              '%s exists' % policy]
    assert 'merge_across_nodes' in found['ovirt-mom']['knobs']
    assert found['kubevirt-virt-handler']['knobs'] == ['run', 'pages_to_scan', 'sleep_millisecs']
    assert 'nodeLabelSelector' in found['kubevirt-virt-handler']['remedy']


def test_our_tuner_is_flagged_as_ours(root):
    root.file('etc/systemd/system/samepage-ksm-tuner.service', '[Service]\n')
    link = root.enable('samepage-ksm-tuner.service')
    state = root.file('run/samepage-ksm/tuner.json', '{}')
    found = root.found()['samepage-ksm-tuner']
    assert found['ours'] is True
    assert found['evidence'][0] == 'samepage-ksm-tuner.service enabled (%s)' % link
    assert any(state in line for line in found['evidence'])
    assert 'ksm_tuner: samepage or none' in found['remedy']
    assert _ksm_writers.short_form(root.scan().found) == {}      # not a competing manager
    finding, knobs = _ksm_writers.overwriting(root.scan().found, {'pages_to_scan': 5})[0]
    assert knobs == ['pages_to_scan']
    assert _ksm_writers.warning(finding, knobs).startswith("the collection's own tuner writes")


def test_tuner_by_its_cut_process_name(root):
    root.process(77, 'samepage-ksm-tu')
    assert root.found()['samepage-ksm-tuner']['evidence'] == ['process samepage-ksm-tu (pid 77)']


# ---------------------------------------------------------------------------------------------------
# Short form, overwriting, warnings

def test_short_form_and_warning(root):
    root.process(812, 'ksmtuned')
    root.enable('qemu-kvm.service')
    root.file('etc/default/qemu-kvm', 'KSM_ENABLED=1\n')
    findings = root.scan().found
    assert _ksm_writers.short_form(findings) == {'ksmtuned': ['run', 'pages_to_scan', 'sleep_millisecs'],
                                                 'qemu-kvm.service': ['run', 'sleep_millisecs']}
    assert _ksm_writers.short_form(findings, ['sleep_millisecs']) == {'ksmtuned': ['sleep_millisecs'],
                                                                      'qemu-kvm.service': ['sleep_millisecs']}
    overwriting = _ksm_writers.overwriting(findings, {'sleep_millisecs': 50, 'use_zero_pages': True})
    assert [(f.writer.name, knobs) for f, knobs in overwriting] == [
        ('ksmtuned', ['sleep_millisecs']), ('qemu-kvm.service', ['sleep_millisecs'])]
    text = _ksm_writers.warning(*overwriting[1])
    assert text.startswith('qemu-kvm.service writes run, sleep_millisecs at boot (')
    assert 'will be overwritten at boot' in text and 'KSM_ENABLED' in text
    assert 'overwritten at its next interval' in _ksm_writers.warning(*overwriting[0])


# ---------------------------------------------------------------------------------------------------
# Running writers (what ksm_unmerge warns about; formerly _ksm.competing_managers)

def competing_managers(root, names, processes=None):
    """{writer: [knobs]} of running(): the writers running now that rewrite some of names."""
    return {finding.writer.name: knobs for finding, knobs in _ksm_writers.running(names, str(root.path), processes)}


def test_running_processes(root):
    for pid, comm in ((100, 'qemu-61'), (250, 'qemu-64'), (200, 'qemu-system-x86'), (300, 'merge-any'),
                      (400, 'old-kernel'), (2, 'kthreadd'), (700, 'bash')):
        root.process(pid, comm)
    root.file('proc/500/ksm_stat', 'ksm_rmap_items 9\n')    # exited between listing and reading: comm gone
    (root.path / 'proc' / '800').mkdir()                       # gone entirely
    root.file('proc/self/ksm_stat', '')
    root.file('proc/meminfo', 'MemTotal: 1 kB\n')
    proc = str(root.path / 'proc')
    assert _ksm_writers.running_processes(proc) == {100: 'qemu-61', 200: 'qemu-system-x86', 250: 'qemu-64', 300: 'merge-any',
                                                    400: 'old-kernel', 2: 'kthreadd', 700: 'bash'}


def test_competing_managers(root):
    table = {1: 'init', 42: 'ksmtuned', 43: 'bash'}
    assert competing_managers(root, ['run', 'use_zero_pages'], table) == {'ksmtuned': ['run']}
    assert competing_managers(root, ['sleep_millisecs', 'pages_to_scan', 'run'], table) == {
        'ksmtuned': ['run', 'pages_to_scan', 'sleep_millisecs']}
    assert competing_managers(root, ['use_zero_pages', 'max_page_sharing'], table) == {}
    assert competing_managers(root, ['run'], {1: 'init', 2: 'ksmtuned.sh'}) == {}


def test_competing_managers_reads_the_process_table(root):
    root.process(1, 'init')
    root.process(4242, 'ksmtuned')
    assert competing_managers(root, ['pages_to_scan']) == {'ksmtuned': ['pages_to_scan']}
    (root.path / 'proc' / '4242' / 'comm').unlink()          # it exited
    assert competing_managers(root, ['pages_to_scan']) == {}


def test_running_looks_at_processes_only_and_names_every_interval_writer(root):
    root.enable('ksmtuned.service')                  # enabled but not running: the next boot, not now
    root.file('etc/default/qemu-kvm', 'KSM_ENABLED=1\n')
    root.enable('qemu-kvm.service')
    assert _ksm_writers.running(['run'], str(root.path)) == []
    root.process(300, 'momd')
    root.process(400, 'virt-handler')
    root.process(77, 'samepage-ksm-tu')
    found = _ksm_writers.running(['run'], str(root.path))
    assert [(finding.writer.name, knobs) for finding, knobs in found] == [
        ('ovirt-mom', ['run']), ('kubevirt-virt-handler', ['run']), ('samepage-ksm-tuner', ['run'])]
    text = _ksm_writers.unmerge_warning(found[0][0])
    assert text.startswith('ovirt-mom is running and rewrites run every interval (process momd (pid 300)): it can '
                           'start ksmd again')
    assert text.endswith('To prevent that: %s.' % _ksm_writers.BY_NAME['ovirt-mom'].remedy)


# ---------------------------------------------------------------------------------------------------
# Hostile and broken contents: clean results, never a traceback

def test_binary_and_garbled_process_names(root):
    root.process(5, b'\xff\xfe\x00ksm\n')
    root.process(6, b'k' * 10000)
    (root.path / 'proc' / '7').mkdir()            # exited mid-read: no comm
    (root.path / 'proc' / 'self').mkdir()
    (root.path / 'proc' / '\u0663').mkdir()       # a unicode digit is not a pid
    assert root.found() == {}
    processes = _ksm_writers.running_processes(str(root.path / 'proc'))
    assert set(processes) == {5, 6} and len(processes[6]) == 64


@pytest.mark.parametrize('content', [
    b'\x00\xff' * 1000,
    b'KSM_ENABLED=1\x00\xff\nSLEEP_MILLISECS=20\n0\n',
    b'KSM_ENABLED="1\nSLEEP_MILLISECS=a\nb"\n',
    b'[sysfs]\n' * 100000,
    ('x' * (_ksm_writers.MAX_FILE_BYTES + 10)).encode(),
])
def test_hostile_contents_give_clean_results(root, content):
    root.enable('qemu-kvm.service')
    for relative in ('etc/default/qemu-kvm', 'etc/tuned/active_profile', 'etc/tuned/p/tuned.conf',
                     'etc/tmpfiles.d/x.conf', 'etc/sysfs.conf', 'etc/systemd/system/x.service'):
        root.file(relative, content)
    found = root.found()
    assert list(found) == ['qemu-kvm.service']
    for line in found['qemu-kvm.service']['evidence']:
        assert '\n' not in line and len(line) < 400


def test_a_line_break_in_a_value_cannot_forge_evidence(root):
    root.enable('qemu-kvm.service')
    root.file('etc/default/qemu-kvm', 'KSM_ENABLED="AUTO\nSLEEP_MILLISECS=1"\n')
    evidence = root.found()['qemu-kvm.service']['evidence']
    assert not any('SLEEP_MILLISECS' in line for line in evidence)
    assert all('\n' not in line for line in evidence)


@pytest.mark.skipif(os.geteuid() == 0, reason='root reads files whatever their mode')
def test_unreadable_files_are_no_evidence(root):
    root.enable('qemu-kvm.service')
    for relative in ('etc/default/qemu-kvm', 'etc/tmpfiles.d/ksm.conf', 'etc/systemd/system/x.service'):
        path = root.file(relative, 'KSM_ENABLED=1\nw /sys/kernel/mm/ksm/run - - - - 1\nMemoryKSM=yes\n')
        os.chmod(path, 0)
    scan = root.scan()
    assert [finding.writer.name for finding in scan.found] == ['qemu-kvm.service']
    assert any('could not read 1 unit files' in line for line in scan.skipped)


def test_unreadable_files_as_root_via_a_directory_in_their_place(root):
    """As root, mode 0 does not stop a read: a directory where a file is expected does (EISDIR)."""
    root.enable('qemu-kvm.service')
    for relative in ('etc/default/qemu-kvm', 'etc/tuned/active_profile', 'etc/sysfs.conf',
                     'etc/tmpfiles.d/ksm.conf', 'run/samepage-ksm/tuner.json'):
        (root.path / relative).mkdir(parents=True)
    found = root.found()
    assert list(found) == ['qemu-kvm.service']
    assert any('absent or unreadable' in line for line in found['qemu-kvm.service']['evidence'])


def test_a_dangling_unit_symlink_counts_as_unreadable(root):
    directory = root.path / 'etc' / 'systemd' / 'system'
    directory.mkdir(parents=True)
    (directory / 'gone.service').symlink_to('/nonexistent/gone.service')
    scan = root.scan()
    assert scan.found == [] and any('could not read 1 unit files' in line for line in scan.skipped)


def test_a_crowded_directory_is_cut_and_said_so(root, monkeypatch):
    monkeypatch.setattr(_ksm_writers, 'MAX_DIR_ENTRIES', 2)
    for name in ('a.conf', 'b.conf', 'c.conf'):
        root.file('etc/tmpfiles.d/' + name, '# nothing\n')
    root.file('etc/tmpfiles.d/d.conf', 'w /sys/kernel/mm/ksm/run - - - - 1\n')
    scan = root.scan()
    assert scan.found == []
    assert scan.skipped == ['%s: looked at the first 2 of 4 entries only' % (root.path / 'etc' / 'tmpfiles.d')]


# ---------------------------------------------------------------------------------------------------
# turns_on: whether a writer can switch ksmd on (what a host that must keep KSM off checks)

def _turns_on(root):
    return {name: found['turns_on'] for name, found in root.found().items()}


def test_writers_of_run_turn_ksm_on_by_default(root):
    root.process(900, 'ksmtuned')
    root.enable('ksm.service')
    root.enable('enable-ksm.service')
    root.process(901, 'virt-handler')
    root.process(902, 'momd')
    root.file('etc/systemd/system/samepage-ksm-tuner.service', '[Service]\n')
    root.enable('samepage-ksm-tuner.service')
    root.file('etc/systemd/system/java.service', '[Service]\nMemoryKSM=yes\n')
    assert _turns_on(root) == {'ksmtuned': True, 'ksm.service': True, 'enable-ksm.service': True,
                               'kubevirt-virt-handler': True, 'ovirt-mom': True, 'samepage-ksm-tuner': True,
                               # opts processes in, writes no knob: ksmd stays as run says
                               'systemd MemoryKSM=': False}


@pytest.mark.parametrize('enabled, turns_on', [('0', False), ('1', True), ('AUTO', True)])
def test_qemu_kvm_turns_ksm_on_unless_disabled(root, enabled, turns_on):
    root.enable('qemu-kvm.service')
    root.file('etc/default/qemu-kvm', 'KSM_ENABLED=%s\n' % enabled)
    assert _turns_on(root) == {'qemu-kvm.service': turns_on}


def test_qemu_kvm_without_its_defaults_file_may_turn_ksm_on(root):
    root.enable('qemu-kvm.service')
    assert _turns_on(root) == {'qemu-kvm.service': True}


@pytest.mark.parametrize('lines, turns_on', [
    ('/sys/kernel/mm/ksm/run = 1\n', True),
    ('/sys/kernel/mm/ksm/run = 0\n', False),
    ('/sys/kernel/mm/ksm/run = 2\n/sys/kernel/mm/ksm/pages_to_scan = 10\n', False),
    ('/sys/kernel/mm/ksm/pages_to_scan = 10\n', False),
])
def test_tuned_turns_ksm_on_only_with_a_run_line_that_starts_ksmd(root, lines, turns_on):
    root.file('etc/tuned/active_profile', 'site')
    root.file('etc/tuned/site/tuned.conf', '[sysfs]\n' + lines)
    assert _turns_on(root) == {'tuned': turns_on}


def test_tuned_disablers_do_not_turn_ksm_on(root):
    root.file('etc/tuned/active_profile', 'cpu-partitioning')
    root.file('var/lib/tuned/ksm-masked', '')
    assert _turns_on(root) == {'tuned': False}


@pytest.mark.parametrize('line, turns_on', [
    ('w /sys/kernel/mm/ksm/run - - - - 1', True),
    ('w /sys/kernel/mm/ksm/run - - - - 2', False),
    ('w /sys/kernel/mm/ksm/run - - - - 0', False),
    ('w /sys/kernel/mm/ksm/run', False),                     # no argument: writes nothing
    ('w /sys/kernel/mm/ksm/sleep_millisecs - - - - 1', False),
])
def test_tmpfiles_turn_ksm_on_only_with_run_not_off(root, line, turns_on):
    root.file('etc/tmpfiles.d/ksm.conf', line + '\n')
    assert _turns_on(root) == {'tmpfiles.d': turns_on}


@pytest.mark.parametrize('line, turns_on', [
    ('kernel/mm/ksm/run = 1', True), ('kernel/mm/ksm/run = 0  # off', False),
    ('kernel/mm/ksm/pages_to_scan = 1', False),
])
def test_sysfsutils_turn_ksm_on_only_with_run_not_off(root, line, turns_on):
    root.file('etc/sysfs.conf', line + '\n')
    assert _turns_on(root) == {'sysfsutils': turns_on}
