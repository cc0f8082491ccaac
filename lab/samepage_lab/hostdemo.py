# -*- coding: utf-8 -*-
# Copyright: (c) 2026, samepage.ksm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""`labctl demo --host-ksm`: this machine's KSM merges the guests' RAM for a while, inside the host guard."""

import importlib
import json
import os
import re
import sys
import time

from .common import LabError, human, indent, run, say

SHOWN_KNOBS = ('pages_to_scan', 'run', 'sleep_millisecs')


def host_guard_module(lab):
    """tests/support/ksm_host.py: the one guard of this machine's KSM (standard library and the
    collection's _ksm only), imported through the lab's link to this clone when it is not importable yet."""
    root = lab.collections_path()
    if root not in sys.path:
        sys.path.append(root)
    return importlib.import_module('ansible_collections.samepage.ksm.tests.support.ksm_host')


def host_ksm_demo(lab, ansible_playbook, seconds):
    """Apply ksm_sysfs to this machine, watch it merge the guests' RAM, unmerge, and put every value back.

    Runs inside the host guard (tests/support/ksm_host.py ksm_host_guard), like every writer of
    /sys/kernel/mm/ksm in this project: it holds the host lock for the whole time, and on the way out
    unmerges what is still shared and puts every writable knob back as it found it, then checks.
    """
    ansible = os.path.join(os.path.dirname(ansible_playbook), 'ansible')
    env = lab.ansible_env()
    ksm_host = host_guard_module(lab)
    reason = ksm_host.skip_reason()
    if reason:
        say('%s: skipping the host KSM part' % reason)
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

    def shown(state):
        return ' '.join('%s=%s' % (name, state.get(name)) for name in SHOWN_KNOBS)

    try:
        with ksm_host.ksm_host_guard() as host:
            say('this machine before: %s' % shown(host.snapshot))
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
                            except (OSError, ValueError):
                                pages = 0
                            parts.append('%s %s' % (guest.name, human(pages * os.sysconf('SC_PAGE_SIZE'))))
                    state = host.state()
                    profit = state.get('general_profit')
                    say('host KSM: pages_sharing=%s%s; merged per QEMU: %s' % (
                        state.get('pages_sharing'), ' general_profit=%s' % human(profit) if profit is not None else '',
                        ', '.join(parts)))
            finally:
                say('putting this machine back: unmerge (ksm_unmerge), then every knob as it was (host guard): %s'
                    % shown(host.snapshot))
                module('ksm_unmerge', {'ksmd': 'stopped', 'force': True})
    except RuntimeError as exc:     # the guard could not put a value back: say which, without a traceback
        raise LabError(str(exc))
    after = host.state()
    say('this machine after: %s pages_shared=%s pages_sharing=%s' % (
        shown(after), after.get('pages_shared'), after.get('pages_sharing')))
