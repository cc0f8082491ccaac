# -*- coding: utf-8 -*-
# Copyright: (c) 2026, samepage.ksm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""A fake host for module unit tests: the fake KSM kernel plus /proc, /proc/meminfo, NUMA nodes and
the host lock's file under a temporary directory, wired into the kernel layer (_ksm) by monkeypatching the paths it reads.

    host = FakeHost(tmp_path, monkeypatch, preset='6.1')
    host.kernel.share(100, 1500)
    host.add_process(4242, 'qemu-system-x86', ksm_stat={'ksm_rmap_items': 1600}, merging_pages=1500)
    host.meminfo(mem_total=8 << 30, mem_available=6 << 30, swap_free=0)

Processes are written the way the kernel prints them; a process "that exits mid-read" is a
/proc/<pid> directory whose files are gone (open() says ENOENT, as for a real exited process).
"""

from ansible_collections.samepage.ksm.plugins.module_utils import _ksm
from ansible_collections.samepage.ksm.plugins.module_utils import _ksm_boot
from ansible_collections.samepage.ksm.plugins.modules import ksm_info
from ansible_collections.samepage.ksm.plugins.module_utils import _ksm_writers
from ansible_collections.samepage.ksm.tests.unit.fakes.kernel import PAGE_SIZE, FakeKsmKernel

GIB = 1024 ** 3


class FakeHost:

    def __init__(self, tmp_path, monkeypatch, preset='6.18', kernel_release='6.18.44', nodes='0',
                 per_process=('ksm_stat', 'ksm_merging_pages'), mode=None, **values):
        self.kernel = FakeKsmKernel(preset, mode=mode, **values)
        self.proc = tmp_path / 'proc'
        self.proc.mkdir()
        self.node_dir = tmp_path / 'node'
        self.node_dir.mkdir()
        (self.node_dir / 'has_memory').write_text(nodes + '\n')
        self_dir = self.proc / 'self'
        self_dir.mkdir()
        for name in per_process:
            (self_dir / name).write_text('0\n')
        self.meminfo()
        monkeypatch.setattr(_ksm, 'SysfsIO', lambda *args, **kwargs: self.kernel)
        monkeypatch.setattr(_ksm, 'PROC_DIR', str(self.proc))
        monkeypatch.setattr(_ksm, 'MEMINFO', str(self.proc / 'meminfo'))
        monkeypatch.setattr(_ksm, 'NODE_DIR', str(self.node_dir))
        monkeypatch.setattr(_ksm, 'kernel_release', lambda: kernel_release)
        monkeypatch.setattr(_ksm, 'page_size', lambda: PAGE_SIZE)
        # The host lock of KSM writers: a directory of its own (missing, as /run/lock may be), never the real one.
        self.lock_path = str(tmp_path / 'run-lock' / 'samepage-ksm.lock')
        monkeypatch.setattr(_ksm, 'LOCK_PATH', self.lock_path)
        # Where ksm_info looks for the samepage tuner: under tmp_path, never this machine's /run and /etc.
        self.tuner_state = tmp_path / 'run' / 'samepage-ksm' / 'tuner.json'
        self.tuner_unit = tmp_path / 'etc' / 'systemd' / 'system' / 'samepage-ksm-tuner.service'
        monkeypatch.setattr(ksm_info, 'TUNER_STATE', str(self.tuner_state))
        monkeypatch.setattr(ksm_info, 'TUNER_UNIT', str(self.tuner_unit))
        monkeypatch.setattr(ksm_info, 'PROC', str(self.proc))
        # Other writers of KSM knobs are looked for under tmp_path (its proc/ is self.proc), never in the real /etc.
        self.root = tmp_path
        monkeypatch.setattr(_ksm_writers, 'ROOT', str(tmp_path))
        # The boot configuration of ksm_sysfs, which ksm_info reports: under tmp_path too (where the ksm_sysfs
        # tests put it).
        self.unit_dir = tmp_path / 'etc-systemd-system'
        monkeypatch.setattr(_ksm_boot, 'UNIT_DIR', str(self.unit_dir))

    def write_file(self, relative, text):
        """A file of the fake root file system (tmp_path/relative), its directories made."""
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path

    def enable_unit(self, unit, target='multi-user.target'):
        """A unit enabled the way systemctl enable does it: a symlink in etc/systemd/system/<target>.wants."""
        wants = self.root / 'etc' / 'systemd' / 'system' / (target + '.wants')
        wants.mkdir(parents=True, exist_ok=True)
        (wants / unit).symlink_to('/usr/lib/systemd/system/' + unit)

    def meminfo(self, mem_total=24 * GIB, mem_available=20 * GIB, swap_free=0, swap_total=None):
        kib = 1024
        lines = [
            'MemTotal:       %8d kB' % (mem_total // kib),
            'MemFree:        %8d kB' % (mem_available // 2 // kib),
            'MemAvailable:   %8d kB' % (mem_available // kib),
            'SwapTotal:      %8d kB' % ((swap_free if swap_total is None else swap_total) // kib),
            'SwapFree:       %8d kB' % (swap_free // kib),
            'HugePages_Total:       0',
        ]
        (self.proc / 'meminfo').write_text('\n'.join(lines) + '\n')

    def add_process(self, pid, command, ksm_stat=None, merging_pages=None, cmdline=None):
        """A process. ksm_stat: {field: value} printed as the kernel does (booleans as "key: yes"),
        or None for a kernel without the file; merging_pages: /proc/<pid>/ksm_merging_pages, or None;
        cmdline: its arguments (/proc/<pid>/cmdline, NUL-terminated), or None for no such file."""
        base = self.proc / str(pid)
        base.mkdir()
        (base / 'comm').write_text(command + '\n')
        if cmdline is not None:
            (base / 'cmdline').write_bytes(b''.join(arg.encode('utf-8') + b'\0' for arg in cmdline))
        if ksm_stat is not None:
            lines = []
            for key, value in ksm_stat.items():
                if isinstance(value, bool):
                    lines.append('%s: %s' % (key, 'yes' if value else 'no'))
                else:
                    lines.append('%s %d' % (key, value))
            (base / 'ksm_stat').write_text('\n'.join(lines) + '\n')
        if merging_pages is not None:
            (base / 'ksm_merging_pages').write_text('%d\n' % merging_pages)
        return base

    def add_vanished_process(self, pid):
        """Listed in /proc but gone by the time its files are opened."""
        (self.proc / str(pid)).mkdir()
