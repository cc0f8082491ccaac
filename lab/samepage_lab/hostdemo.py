# -*- coding: utf-8 -*-
# Copyright: (c) 2026, samepage.ksm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""`labctl demo --host-ksm`: this machine's KSM merges the guests' RAM for a while, inside the host guard."""

import json
import os
import re
import sys
import time

from .common import LabError, flocked, human, indent, run, say


HOST_LOCK = '/tmp/samepage-ksm-host.lock'


def host_ksm_demo(lab, ansible_playbook, seconds):
    """Apply ksm_sysfs to this machine, watch it merge the guests' RAM, then put every value back.

    Holds the host KSM lock (HOST_LOCK) for the whole time, like every writer of /sys/kernel/mm/ksm in
    this project, and restores what it changed before returning.
    """
    ansible = os.path.join(os.path.dirname(ansible_playbook), 'ansible')
    env = lab.ansible_env()
    ksm_dir = '/sys/kernel/mm/ksm'
    if not os.path.isdir(ksm_dir):
        say('this machine has no %s: skipping the host KSM part' % ksm_dir)
        return

    def module(name, args):
        python = os.path.join(os.path.dirname(ansible_playbook), 'python')
        cmd = [ansible, 'localhost', '-c', 'local', '-i', 'localhost,', '-m', 'samepage.ksm.' + name,
               '-a', json.dumps(args), '-e', 'ansible_python_interpreter=%s' % (
                   python if os.path.exists(python) else sys.executable)]
        result = run(cmd, env=dict(env, ANSIBLE_LOCALHOST_WARNING='False'))
        if result.returncode != 0:
            raise LabError('samepage.ksm.%s on this machine failed:\n%s' % (name, indent(result.stdout.strip())))
        msg = re.search(r'^\s*"msg": "(.*)",?$', result.stdout, re.M)
        say('  samepage.ksm.%s: %s' % (name, msg.group(1) if msg else 'ok'))

    def read(name):
        with open(os.path.join(ksm_dir, name)) as handle:
            return handle.read().strip()

    names = ('run', 'pages_to_scan', 'sleep_millisecs')
    with flocked(HOST_LOCK, 'the host KSM lock'):
        before = dict((n, read(n)) for n in names)
        say('this machine before: %s' % ' '.join('%s=%s' % kv for kv in sorted(before.items())))
        try:
            say("applying samepage.ksm.ksm_sysfs to this machine: run=true pages_to_scan=5000")
            module('ksm_sysfs', {'run': True, 'pages_to_scan': 5000, 'sleep_millisecs': 20})
            deadline = time.time() + seconds
            while time.time() < deadline:
                time.sleep(10)
                parts = []
                for guest in lab.guests:
                    for pid in guest.recorded_pids():
                        try:
                            with open('/proc/%d/ksm_merging_pages' % pid) as handle:
                                pages = int(handle.read().strip())
                        except (IOError, OSError, ValueError):
                            pages = 0
                        parts.append('%s %s' % (guest.name, human(pages * os.sysconf('SC_PAGE_SIZE'))))
                profit = read('general_profit') if os.path.exists(os.path.join(ksm_dir, 'general_profit')) else None
                say('host KSM: pages_sharing=%s%s; merged per QEMU: %s' % (
                    read('pages_sharing'), ' general_profit=%s' % human(int(profit)) if profit else '',
                    ', '.join(parts)))
        finally:
            say('putting this machine back: unmerge (ksm_unmerge), then %s'
                % ' '.join('%s=%s' % kv for kv in sorted(before.items())))
            module('ksm_unmerge', {'ksmd': 'stopped', 'force': True})
            module('ksm_sysfs', {'run': before['run'] == '1', 'pages_to_scan': int(before['pages_to_scan']),
                                 'sleep_millisecs': int(before['sleep_millisecs'])})
