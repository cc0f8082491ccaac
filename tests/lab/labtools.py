# -*- coding: utf-8 -*-
# Copyright: (c) 2026, samepage.ksm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Helpers for lab tests: real Ansible runs over SSH against the QEMU guests of the lab (lab/samepage_lab).

The fixtures in tests/lab/conftest.py give a session-wide lab (`lab`), its guests (`guests`, and
`debian12`, `debian13`, `numa_guest`); the functions here do the rest:

    result = module(lab, guest, 'samepage.ksm.ksm_info', {'max_processes': 0})
    four_steps(lab, guest, 'samepage.ksm.ksm_sysfs', {'pages_to_scan': 1234})   # the idiom, asserted
                                                                               # (one ansible-playbook run)
    assert read_ksm(guest)['pages_to_scan'] == '1234'                           # the real state
    guest.reboot()                                                             # systemctl reboot, wait for SSH
"""

import json
import os
import shutil
import tempfile

from ansible_collections.samepage.ksm.tests.support.ansible_cli import ModuleResult, run_module, run_playbook
from ansible_collections.samepage.ksm.tests.support.four_steps import FOUR_STEPS, assert_four_steps

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def module(lab, guest, name, args=None, check=False, diff=False):
    """Run one module on one guest with the real `ansible` command over SSH; the host's result dict."""
    return run_module(name, args, host=guest.name, check=check, diff=diff, inventory=lab.inventory)


def playbook(lab, path, **kwargs):
    """ansible-playbook against the lab's inventory (tests/support/ansible_cli.run_playbook)."""
    return run_playbook(path, inventory=lab.inventory, **kwargs)


def _brief(result):
    keys = ('changed', 'failed', 'msg', 'writes', 'skipped_knobs', 'unmerged', 'warnings')
    return json.dumps({k: result.get(k) for k in keys if k in result}, default=str)


def steps(lab, guest, name, args, diff=True):
    """The four steps of the idiom as the four tasks of ONE ansible-playbook run (one controller start
    rather than four; the guest runs the module four times, as with four commands). Returns the results
    in order, as module() does; a failed step ends the play, so there are fewer then."""
    tasks = [{'name': step, name: args, 'check_mode': check, 'diff': diff} for step, check, _changed in FOUR_STEPS]
    directory = tempfile.mkdtemp(prefix='samepage-steps-')
    try:
        path = os.path.join(directory, 'four_steps.yml')
        with open(path, 'w') as handle:
            json.dump([{'name': 'four steps', 'hosts': guest.name, 'gather_facts': False, 'tasks': tasks}], handle)
        run = run_playbook(path, inventory=lab.inventory)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    results = []
    for entry in run.results:
        if entry['host'] != guest.name:
            continue
        result = ModuleResult(entry['result'])
        result.setdefault('changed', False)
        result['failed'] = bool(result.get('failed')) or entry['status'] in ('failed', 'unreachable')
        result.rc, result.output, result.command = run.rc, run.output, run.command
        results.append(result)
    if not results:
        raise AssertionError('%s on %s: the four steps produced no result\n%s' % (name, guest.name, run.output[-3000:]))
    return results


def four_steps(lab, guest, name, args, diff=True):
    """The four-step idiom on a guest, asserted: check (changed), apply (changed), apply (unchanged),
    check (unchanged). Returns the four results; the caller asserts the real state afterwards."""
    results = steps(lab, guest, name, args, diff=diff)
    return assert_four_steps(results, describe=lambda result: '%s on %s: %s\n%s' % (
        name, guest.name, _brief(result), result.output[-3000:]))


def read_ksm(guest):
    """Every file of /sys/kernel/mm/ksm on the guest, as the text the kernel prints ({name: text})."""
    out = guest.ssh('cd /sys/kernel/mm/ksm && for f in *; do printf "%s=%s\\n" "$f" "$(cat $f)"; done').stdout
    return dict(line.split('=', 1) for line in out.splitlines() if '=' in line)


def unit_state(guest, unit):
    """(ActiveState, UnitFileState) of a unit on the guest, e.g. ('inactive', 'disabled')."""
    out = guest.ssh('systemctl show -p ActiveState -p UnitFileState %s' % unit).stdout
    values = dict(line.split('=', 1) for line in out.splitlines() if '=' in line)
    return values.get('ActiveState'), values.get('UnitFileState')


def stop_ksmtuned(guest):
    """Stop ksmtuned (it rewrites run, pages_to_scan and sleep_millisecs about once a minute)."""
    guest.ssh('systemctl stop ksmtuned.service')


# The kernel's own defaults, written in an order the kernel accepts (merge_across_nodes needs no
# page shared: run=2 first unmerges everything).
KERNEL_DEFAULTS = (
    ('run', '2'), ('pages_to_scan', '100'), ('sleep_millisecs', '20'), ('max_page_sharing', '256'),
    ('merge_across_nodes', '1'), ('use_zero_pages', '0'), ('run', '0'),
)


def reset_ksm(guest, stop_tuned=True):
    """Put the guest's KSM back to kernel defaults (unmerged, run=0); stop ksmtuned first."""
    if stop_tuned:
        stop_ksmtuned(guest)
    script = ' && '.join('echo %s > /sys/kernel/mm/ksm/%s' % (value, name) for name, value in KERNEL_DEFAULTS)
    guest.ssh('cd /sys/kernel/mm/ksm && if [ -e advisor_mode ]; then echo none > advisor_mode; fi && '
              'if [ -e smart_scan ]; then echo 1 > smart_scan; fi && ' + script)


def remove_boot_config(lab, guest):
    """Remove what ksm_sysfs persisted (persist_mode=replace with no knobs), through the module itself."""
    result = module(lab, guest, 'samepage.ksm.ksm_sysfs', {'persist': True, 'persist_mode': 'replace'})
    assert not result['failed'], _brief(result)
    return result
