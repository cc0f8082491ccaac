# -*- coding: utf-8 -*-
# Copyright: (c) 2026, samepage.ksm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Lab guests for the benchmarks, through the lab package (lab/samepage_lab), in a state directory of their own.

The benchmarks' labs live under SAMEPAGE_BENCH_LAB_STATE (default /tmp/samepage-ksm-bench-lab-<uid>), so they
never touch a demo lab or a test lab that is running; their QEMU processes are tied to this process and
stopped (by the PIDs this lab recorded) when the benchmark ends, also on an error.
"""

import contextlib
import os
import tempfile

import benchlib
from ansible_collections.samepage.ksm.lab import samepage_lab

STATE = os.environ.get('SAMEPAGE_BENCH_LAB_STATE') or os.path.join(
    tempfile.gettempdir(), 'samepage-ksm-bench-lab-%d' % os.geteuid())


@contextlib.contextmanager
def bench_lab(guests, lab=None):
    """Boot guests [(name, suite, group, memory_mib)] (or use lab's); yield (lab, [Guest]); stop them after.

    Each benchmark's lab has a directory of its own under STATE (named after its first guest), so
    benchmarks can run at the same time without stopping each other's guests.
    """
    if lab is not None:
        yield lab, list(lab.guests)
        return
    state = os.path.join(STATE, guests[0][0])
    specs = [samepage_lab.GuestSpec(name, suite, group, memory_mib=mib, cpus=1, numa_nodes=1)
             for name, suite, group, mib in guests]
    lab = samepage_lab.Lab(state_dir=state, specs=specs)
    benchlib.say('starting %d lab guest(s) in %s: %s' % (len(specs), state, ', '.join(s.name for s in specs)))
    try:
        lab.up(tie_to_parent=True)
        yield lab, list(lab.guests)
    finally:
        lab.down(quiet=True)
        benchlib.say('stopped the benchmark lab in %s' % state)


def copy_files(guest, files, directory='/root/samepage-bench'):
    """Copy local files into one directory of the guest (over SSH, no scp needed)."""
    guest.ssh('mkdir -p %s' % directory)
    for path in files:
        with open(path) as handle:
            guest.ssh('cat > %s/%s' % (directory, os.path.basename(path)), input=handle.read())
    return directory
