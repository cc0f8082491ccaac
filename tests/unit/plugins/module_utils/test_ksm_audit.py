# -*- coding: utf-8 -*-
# Copyright: (c) 2026, samepage.ksm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""plugins/module_utils/_ksm_audit.py: QEMU's command line, the verdict per guest, the bounded /proc scan.

The command lines are the ones real programs wrote (libvirt 9.0 for a domain with and without
<nosharepages/>, the project's lab, Proxmox). Plain pytest, no Ansible import (runs on Python 3.8+).
"""

import pytest

from ansible_collections.samepage.ksm.plugins.module_utils import _ksm_audit

PAGE = 4096

# libvirt 9.0.0 (Debian 12) starting a domain with <memoryBacking><nosharepages/></memoryBacking>
LIBVIRT_OPTED_OUT = (
    '/usr/bin/qemu-system-x86_64 -name guest=tenant-a,debug-threads=on -S -object '
    '{"qom-type":"secret","id":"masterKey0","format":"raw","file":"/var/lib/libvirt/qemu/domain-2-tenant-a/master-key.aes"} '
    '-machine pc-i440fx-7.2,usb=off,dump-guest-core=off,mem-merge=off,memory-backend=pc.ram -accel tcg -cpu qemu64 '
    '-m 32 -object {"qom-type":"memory-backend-ram","id":"pc.ram","size":33554432} -overcommit mem-lock=off '
    '-smp 1,sockets=1,cores=1,threads=1 -display none -no-user-config -nodefaults').split(' ')
# ... and without it
LIBVIRT_DEFAULT = [arg.replace('mem-merge=off,', '').replace('tenant-a', 'web01') for arg in LIBVIRT_OPTED_OUT]
# the project's lab (lab/samepage_lab): -name without a key, mem-merge=off in a -machine of its own
LAB = ['qemu-system-x86_64', '-name', 'samepage-lab-lab-dense', '-nodefaults', '-accel', 'tcg', '-m', '1024',
       '-machine', 'mem-merge=off']
# Proxmox VE: /usr/bin/kvm
PROXMOX = ['/usr/bin/kvm', '-id', '100', '-name', 'db,debug-threads=on', '-machine', 'type=pc-i440fx-8.1+pve0']


@pytest.mark.parametrize('text, parts', [
    ('guest=a,debug-threads=on', ['guest=a', 'debug-threads=on']),
    ('guest=a,,b,debug-threads=on', ['guest=a,b', 'debug-threads=on']),   # libvirt doubles a comma of the name
    ('a,,,,b', ['a,,b']),
    ('plain', ['plain']),
    ('', ['']),
    ('x,', ['x', '']),
])
def test_split_options_follows_qemus_comma_escaping(text, parts):
    assert _ksm_audit.split_options(text) == parts


@pytest.mark.parametrize('argv, expected', [
    (LIBVIRT_OPTED_OUT, ('tenant-a', False)),
    (LIBVIRT_DEFAULT, ('web01', True)),
    (LAB, ('samepage-lab-lab-dense', False)),
    (PROXMOX, ('db', True)),
    (['qemu-system-x86_64', '-name', 'guest=a,,b'], ('a,b', True)),
    (['qemu-system-x86_64', '--name=guest=x', '-M', 'pc,mem-merge=off'], ('x', False)),
    (['qemu-system-x86_64', '-machine', 'mem-merge=off', '-machine', 'mem-merge=on'], (None, True)),   # last wins
    (['qemu-system-x86_64', '-machine', 'mem-merge=on', '-machine', 'accel=tcg'], (None, True)),
    (['qemu-system-x86_64', '-machine', 'q35,mem-merge=no'], (None, False)),
    (['qemu-system-x86_64', '-machine', '{"qom-type":"pc","mem-merge":false}'], (None, False)),
    (['qemu-system-x86_64', '-machine', '{broken'], (None, True)),
    (['qemu-system-x86_64', '-machine', 'mem-merge=maybe'], (None, True)),    # QEMU would refuse to start
    (['qemu-system-x86_64', '-name'], (None, True)),                           # cut off: no value
    (['qemu-system-x86_64', '-display', 'none'], (None, True)),
])
def test_parse_qemu_command_line(argv, expected):
    assert _ksm_audit.parse_qemu_command_line(argv) == expected


@pytest.mark.parametrize('command, argv, qemu', [
    ('qemu-system-x86', ['/usr/bin/qemu-system-x86_64'], True),
    ('qemu-kvm', ['/usr/libexec/qemu-kvm'], True),
    ('kvm', ['/usr/bin/kvm'], True),
    ('CPU 0/KVM', ['/usr/bin/qemu-system-aarch64'], True),   # argv decides
    ('qemu-system-x86', None, True),                          # comm alone, before the command line is read
    ('qemu-system-x86', [], True),                            # command line unreadable
    ('renamed', ['/usr/bin/qemu-system-x86_64'], True),       # -name process=renamed changes comm, not argv
    ('python3', ['python3', 'qemu-system-x86_64'], False),
    ('qemu-img', ['qemu-img', 'info'], False),
    ('kvmtool', ['lkvm'], False),
    ('', [], False),
])
def test_is_qemu(command, argv, qemu):
    assert _ksm_audit.is_qemu(command, argv) is qemu


def guest(**fields):
    base = dict(mem_merge=True, mergeable=True, merge_any=False, merging_pages=0, rmap_items=0)
    base.update(fields)
    return base


@pytest.mark.parametrize('fields, expected', [
    (dict(mem_merge=False, mergeable=False), 'opted-out'),
    (dict(mem_merge=False, mergeable=None), 'opted-out'),
    (dict(mem_merge=False, mergeable=True), 'opted-out-but-mergeable'),
    (dict(mem_merge=False, mergeable=True, merge_any=True), 'opted-out-but-mergeable'),
    (dict(mem_merge=False, mergeable=None, merging_pages=3, rmap_items=4), 'opted-out-but-mergeable'),
    (dict(mergeable=True), 'mergeable'),
    (dict(merging_pages=100, rmap_items=6400), 'saves'),                    # exactly 64 per page: still pays
    (dict(merging_pages=100, rmap_items=6401), 'costs-more-than-it-saves'),
    (dict(merging_pages=0, rmap_items=5), 'costs-more-than-it-saves'),     # rmap items, nothing merged
    (dict(merging_pages=7, rmap_items=None, mergeable=None), 'saves'),     # 5.19-6.0: no rmap figure
    (dict(mergeable=False), 'not-mergeable'),
    (dict(mergeable=None, rmap_items=None), 'unknown'),
    (dict(mem_merge=None, mergeable=False), 'not-mergeable'),              # command line unreadable: no claim
])
def test_verdict_follows_the_kernel_documentation(fields, expected):
    verdict, reason = _ksm_audit.verdict(guest(**fields), _ksm_audit.rmap_items_limit(PAGE))
    assert verdict == expected and verdict in _ksm_audit.VERDICTS
    assert reason


def test_verdict_reasons_carry_their_figures():
    limit = _ksm_audit.rmap_items_limit(PAGE)
    assert limit == 64 if _ksm_audit.RMAP_ITEM_BYTES == 64 else 128
    dummy, reason = _ksm_audit.verdict(guest(merging_pages=10, rmap_items=1250), limit)
    assert '1250 rmap items for 10 merging pages' in reason and 'more than %d per merging page' % limit in reason
    dummy, reason = _ksm_audit.verdict(guest(mem_merge=False, mergeable=True, merge_any=True), limit)
    assert 'mem-merge=off' in reason and 'PR_SET_MEMORY_MERGE' in reason and 'MemoryKSM=' in reason
    assert _ksm_audit.rmap_items_limit(65536) == 65536 // _ksm_audit.RMAP_ITEM_BYTES   # 64 KiB pages (arm64, ppc64)


# ---------------------------------------------------------------------------------------------------
# The scan, on a fake /proc

def stat_6_18(rmap=0, zero=0, merging=0, profit=0, merge_any=False, mergeable=False):
    return ('ksm_rmap_items %d\nksm_zero_pages %d\nksm_merging_pages %d\nksm_process_profit %d\n'
            'ksm_merge_any: %s\nksm_mergeable: %s\n' % (rmap, zero, merging, profit, 'yes' if merge_any else 'no',
                                                        'yes' if mergeable else 'no'))


def make_proc(root, pid, comm=None, ksm_stat=None, merging_pages=None, cmdline=None, smaps=None):
    base = root / str(pid)
    base.mkdir()
    for name, value in (('comm', comm), ('ksm_stat', ksm_stat), ('ksm_merging_pages', merging_pages),
                        ('smaps', smaps)):
        if value is not None:
            (base / name).write_text(value)
    if cmdline is not None:
        (base / 'cmdline').write_bytes(b''.join(arg.encode('utf-8') + b'\0' for arg in cmdline))
    return base


@pytest.fixture
def proc(tmp_path):
    root = tmp_path / 'proc'
    root.mkdir()
    (root / 'self').mkdir()
    (root / 'self' / 'ksm_stat').write_text('')
    (root / 'self' / 'ksm_merging_pages').write_text('0\n')
    return root


def test_scan_tells_guests_and_processes_apart(proc):
    # libvirt's opted-out guest: nothing mergeable
    make_proc(proc, 4242, 'qemu-system-x86\n', stat_6_18(), '0\n', LIBVIRT_OPTED_OUT)
    # a default guest that merges
    merging = stat_6_18(rmap=900, merging=800, profit=800 * PAGE - 900 * 64, mergeable=True)
    make_proc(proc, 4301, 'qemu-system-x86\n', merging, '800\n', LIBVIRT_DEFAULT)
    # an opted-out guest that inherited merge-any from its parent: the opt-out does not hold
    make_proc(proc, 4400, 'qemu-system-x86\n', stat_6_18(merge_any=True, mergeable=True), '0\n',
              ['qemu-system-x86_64', '-name', 'guest=leaky', '-machine', 'pc,mem-merge=off'])
    # a process that opted in with prctl, and one that madvised unique pages (costs more than it saves)
    make_proc(proc, 500, 'java\n', stat_6_18(rmap=10, merging=5, merge_any=True, mergeable=True), '5\n', ['java'])
    make_proc(proc, 600, 'python3\n', stat_6_18(rmap=8192, mergeable=True), '0\n', ['python3', 'w.py'])
    # takes no part, not QEMU: neither listed nor its command line read
    make_proc(proc, 700, 'bash\n', stat_6_18(), '0\n')
    # a kernel thread
    make_proc(proc, 2, 'kthreadd\n', '', '')
    result = _ksm_audit.scan(str(proc), PAGE)

    assert [row['pid'] for row in result.rows] == [4301, 500, 600, 4400]
    assert result.rows[0] == {'pid': 4301, 'command': 'qemu-system-x86', 'merging_pages': 800,
                              'merging_bytes': 800 * PAGE, 'rmap_items': 900, 'zero_pages': 0,
                              'profit': 800 * PAGE - 900 * 64, 'mergeable': True, 'merge_any': False,
                              'guest': 'web01', 'mem_merge': True}
    assert 'guest' not in result.rows[1]                  # java is no QEMU
    guests = dict((item['name'], item) for item in result.guests)
    assert [item['pid'] for item in result.guests] == [4242, 4301, 4400]
    assert guests['tenant-a'] == {
        'pid': 4242, 'name': 'tenant-a', 'command': 'qemu-system-x86', 'mem_merge': False, 'mergeable': False,
        'merge_any': False, 'merging_pages': 0, 'merging_bytes': 0, 'rmap_items': 0, 'zero_pages': 0, 'profit': 0,
        'rmap_items_per_merging_page': None, 'verdict': 'opted-out',
        'reason': 'runs with mem-merge=off and has no mergeable memory: KSM never merges its RAM'}
    assert guests['web01']['verdict'] == 'saves' and guests['web01']['rmap_items_per_merging_page'] == 1.12
    assert guests['leaky']['verdict'] == 'opted-out-but-mergeable'
    assert result.opted_in == [{'pid': 500, 'command': 'java'}, {'pid': 4400, 'command': 'qemu-system-x86'}]
    summary = result.summary()
    assert summary == {'processes_seen': 7, 'processes_read': 7, 'taking_part': 4, 'opted_in': result.opted_in,
                       'complete': True, 'skipped': [], 'rmap_items_per_merging_page_limit': 64}


def test_scan_reads_the_per_process_files_of_every_kernel(proc):
    # Linux 6.1: ksm_stat has only the rmap items; the merged pages come from ksm_merging_pages
    make_proc(proc, 100, 'vm-61\n', 'ksm_rmap_items 12\n', '3\n')
    # 6.4: merged pages and profit in ksm_stat (no zero pages yet); ksm_merging_pages is not needed
    make_proc(proc, 250, 'vm-64\n', 'ksm_rmap_items 20\nksm_merging_pages 5\nksm_process_profit -8192\n')
    # 6.5-6.13: zero pages, no merge_any/mergeable lines
    make_proc(proc, 200, 'vm-65\n', 'ksm_rmap_items 50\nksm_zero_pages 4\nksm_merging_pages 40\nksm_process_profit 159744\n',
              '40\n')
    # 6.14+: opted in as a whole (prctl), nothing merged yet
    make_proc(proc, 300, 'merge-any\n', stat_6_18(merge_any=True, mergeable=True), '0\n')
    # 5.19-6.0: no ksm_stat
    make_proc(proc, 400, 'old-kernel\n', merging_pages='7\n')
    # equal merging: the larger profit first, then the pid
    for pid, profit in ((510, -4096), (511, 8192), (512, 8192)):
        make_proc(proc, pid, 'p%d\n' % pid, 'ksm_rmap_items 5\nksm_merging_pages 2\nksm_process_profit %d\n' % profit)
    result = _ksm_audit.scan(str(proc), PAGE)

    assert [row['pid'] for row in result.rows] == [200, 400, 250, 100, 511, 512, 510, 300]
    assert result.rows[0] == {'pid': 200, 'command': 'vm-65', 'merging_pages': 40, 'merging_bytes': 40 * PAGE,
                              'rmap_items': 50, 'zero_pages': 4, 'profit': 159744}
    assert result.rows[1] == {'pid': 400, 'command': 'old-kernel', 'merging_pages': 7, 'merging_bytes': 7 * PAGE}
    assert result.rows[2] == {'pid': 250, 'command': 'vm-64', 'merging_pages': 5, 'merging_bytes': 5 * PAGE,
                              'rmap_items': 20, 'profit': -8192}
    assert result.rows[3] == {'pid': 100, 'command': 'vm-61', 'merging_pages': 3, 'merging_bytes': 3 * PAGE,
                              'rmap_items': 12}
    assert result.rows[-1] == {'pid': 300, 'command': 'merge-any', 'merging_pages': 0, 'merging_bytes': 0,
                               'rmap_items': 0, 'zero_pages': 0, 'profit': 0, 'mergeable': True, 'merge_any': True}
    assert result.guests == [] and result.opted_in == [{'pid': 300, 'command': 'merge-any'}]
    assert result.read == result.seen == 8 and result.skipped == []


def test_an_opted_out_guest_on_a_kernel_without_ksm_mergeable_is_judged_by_smaps(proc):
    stat_6_5 = 'ksm_rmap_items 0\nksm_zero_pages 0\nksm_merging_pages 0\nksm_process_profit 0\n'
    areas = '7f00-7f10 rw-p 00000000 00:00 0\nSize: 4 kB\nVmFlags: rd wr mr mw me ac sd\n'
    make_proc(proc, 10, 'qemu-system-x86\n', stat_6_5, '0\n', LIBVIRT_OPTED_OUT, smaps=areas)
    make_proc(proc, 11, 'qemu-system-x86\n', stat_6_5, '0\n', LIBVIRT_DEFAULT,
              smaps=areas + areas.replace('sd', 'sd mg'))
    result = _ksm_audit.scan(str(proc), PAGE)
    assert [(item['name'], item['mergeable'], item['merge_any'], item['verdict']) for item in result.guests] == [
        ('tenant-a', False, None, 'opted-out'), ('web01', True, None, 'mergeable')]
    # a mergeable area makes the process take part only where the kernel says so in ksm_stat (6.14+)
    assert result.rows == []
    assert result.skipped == ['this kernel does not say which processes opted in as a whole (ksm_merge_any in '
                              '/proc/<pid>/ksm_stat, about Linux 6.14+): opted_in cannot be known']
    assert result.summary()['complete'] is False


def test_a_kernel_without_per_process_files_still_finds_the_guests(proc):
    for name in ('ksm_stat', 'ksm_merging_pages'):
        (proc / 'self' / name).unlink()
    make_proc(proc, 10, 'qemu-system-x86\n', cmdline=LIBVIRT_OPTED_OUT)
    make_proc(proc, 11, 'qemu-system-x86\n', cmdline=LIBVIRT_DEFAULT)
    make_proc(proc, 12, 'sshd\n')
    result = _ksm_audit.scan(str(proc), PAGE)
    assert [(item['name'], item['mem_merge'], item['mergeable'], item['verdict']) for item in result.guests] == [
        ('tenant-a', False, None, 'opted-out'), ('web01', True, None, 'unknown')]
    assert result.rows == [] and result.read == 3
    assert 'no per-process KSM files' in result.skipped[0]


def test_the_scan_stops_at_max_read_and_says_so(proc):
    for pid in range(100, 110):
        make_proc(proc, pid, 'qemu-system-x86\n', stat_6_18(mergeable=True), '0\n', LIBVIRT_DEFAULT)
    result = _ksm_audit.scan(str(proc), PAGE, max_read=4)
    assert [item['pid'] for item in result.guests] == [100, 101, 102, 103]
    assert result.seen == 10 and result.read == 4
    assert result.skipped == ['6 of 10 processes not read (pid 104 and above): max_scan_processes=4 reached']
    assert result.complete is False


def test_the_scan_stops_after_max_seconds_and_says_so(proc):
    for pid in range(100, 110):
        make_proc(proc, pid, 'qemu-system-x86\n', stat_6_18(mergeable=True), '0\n', LIBVIRT_DEFAULT)
    ticks = iter(range(1000))

    def clock():
        return next(ticks) * 0.4     # the start, then 0.4 s more at every process

    result = _ksm_audit.scan(str(proc), PAGE, max_seconds=2, clock=clock)
    assert result.read == 4          # read at 0.4, 0.8, 1.2 and 1.6 s; at 2.0 s the time is up
    assert result.skipped == ['6 of 10 processes not read (pid 104 and above): max_scan_seconds=2 elapsed']


def test_vanished_unreadable_and_garbled_processes(proc, monkeypatch):
    make_proc(proc, 10, 'qemu-system-x86\n', stat_6_18(mergeable=True), '0\n', LIBVIRT_DEFAULT)
    (proc / '11').mkdir()                                             # gone before its files were opened
    make_proc(proc, 12, ksm_stat=stat_6_18(merging=3), merging_pages='3\n')    # gone between ksm_stat and comm
    make_proc(proc, 13, 'qemu-system-x86\n', stat_6_18(mergeable=True), '0\n')  # no command line any more
    make_proc(proc, 14, 'other-user\n', stat_6_18(merging=3), '3\n')
    make_proc(proc, 15, '\xff\xfe garbage\n', 'ksm_rmap_items x\nnonsense\n\n', 'NaN\n')
    real_read = _ksm_audit._read

    def read(path, limit=None):
        if '/14/' in path:
            raise _ksm_audit._Unreadable()     # EACCES: another user's process without root
        return real_read(path, limit)
    monkeypatch.setattr(_ksm_audit, '_read', read)
    result = _ksm_audit.scan(str(proc), PAGE)
    assert [item['pid'] for item in result.guests] == [10, 13]
    assert result.guests[1]['name'] is None and result.guests[1]['mem_merge'] is None
    assert [row['pid'] for row in result.rows] == [10, 13]
    assert 'guest' not in result.rows[1]
    assert result.unreadable == 1
    assert result.skipped == ["1 processes could not be read (another user's /proc/<pid> files need root: use become)"]


def test_smaps_mergeable_stops_at_its_bound(tmp_path, monkeypatch):
    base = tmp_path / '7'
    base.mkdir()
    (base / 'smaps').write_text('VmFlags: rd wr\n' * 100)
    assert _ksm_audit.smaps_mergeable(str(base)) is False
    monkeypatch.setattr(_ksm_audit, 'MAX_SMAPS_BYTES', 10)
    assert _ksm_audit.smaps_mergeable(str(base)) is None
    assert _ksm_audit.smaps_mergeable(str(tmp_path / 'gone')) is None
