# -*- coding: utf-8 -*-
# Copyright: (c) 2026, samepage.ksm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The secure group proves itself: site.yml ends with the entry point verify of samepage.ksm.ksm on lab-secure
(Debian 13, systemd, the ksmtuned package's ksm.service and ksmtuned.service as the image has them).

One guest (the one-node Debian 13 guest, lab-secure, group secure): site.yml converges it and its self-check
passes; then KSM is switched on behind the role's back - `echo 1 > run` with pages merged by a workload, and
`systemctl start ksm.service` - and the check, run alone, fails naming each of them; put back, it passes again.
Afterwards the guest is as the image has it (ksm and ksmtuned enabled and running, no boot configuration, kernel
defaults).

Run it (the lead runs lab tests; one lab at a time):
    flock /tmp/samepage-dev-lab-slot.lock /var/cache/samepage-ksm/venv/controller-2.21/bin/python -m pytest \\
        -p no:cacheprovider tests/lab/test_secure.py
(marked one_guest(group='debian13') by tests/lab/conftest.py, so `tools/ci.sh lab` runs it with that group.)
"""

import json
import os
import shutil
import tempfile
import time

import pytest
import yaml

from ansible_collections.samepage.ksm.tests.lab.labtools import REPO, read_ksm, remove_boot_config, reset_ksm
from ansible_collections.samepage.ksm.tests.support.ansible_cli import run_playbook

SITE = os.path.join(REPO, 'site.yml')
EXAMPLE_GROUP_VARS = os.path.join(REPO, 'inventory', 'example', 'group_vars')
VERIFY_TASK = 'Check that nothing shares memory here, or could switch sharing on'
WORKLOAD_PID = '/run/samepage-secure-workload.pid'
# 32 MiB of identical pages, madvised mergeable, held until killed (python3 of the guest, no file copied).
WORKLOAD = ('import mmap, os, time\n'
            'area = mmap.mmap(-1, 32 << 20)\n'
            'area.write(b"s" * (32 << 20))\n'
            'area.madvise(mmap.MADV_MERGEABLE)\n'
            'open("%s", "w").write(str(os.getpid()))\n'
            'time.sleep(3600)\n' % WORKLOAD_PID)


@pytest.fixture(scope='module')
def secure(lab, debian13):
    """lab-secure in the example inventory's secure group (this repository's group_vars); afterwards as the
    image has it."""
    guest = debian13
    directory = tempfile.mkdtemp(prefix='samepage-secure-inventory-')
    with open(lab.inventory) as handle:
        hosts = yaml.safe_load(handle)
    groups = hosts['all']['children']['kvm_hosts']['children']
    assert guest.name in (groups['secure'].get('hosts') or {}), 'lab-secure is not in the secure group: %r' % groups
    with open(os.path.join(directory, 'hosts.yml'), 'w') as handle:
        yaml.safe_dump(hosts, handle)
    shutil.copytree(EXAMPLE_GROUP_VARS, os.path.join(directory, 'group_vars'))
    verify = os.path.join(directory, 'verify.yml')
    with open(verify, 'w') as handle:
        json.dump([{'name': 'the secure self-check alone', 'hosts': guest.name, 'gather_facts': False, 'tasks': [
            {'name': 'verify', 'ansible.builtin.include_role': {'name': 'samepage.ksm.ksm', 'tasks_from': 'verify'}}]}],
            handle)
    try:
        yield guest, os.path.join(directory, 'hosts.yml'), verify
    finally:
        guest.ssh('if [ -e {p} ]; then kill $(cat {p}); rm -f {p}; fi'.format(p=WORKLOAD_PID), check=False)
        reset_ksm(guest)
        remove_boot_config(lab, guest)
        guest.ssh('systemctl enable --now ksm.service ksmtuned.service')
        shutil.rmtree(directory, ignore_errors=True)


def verify_result(run, host):
    found = [result for result in run.results if result['host'] == host and result['task'].endswith(VERIFY_TASK)]
    assert len(found) == 1, (run.stats, run.output[-4000:])
    return found[0]


def check(inventory, verify, guest):
    run = run_playbook(verify, inventory=inventory)
    return run, verify_result(run, guest.name)


def test_secure_group_proves_itself_and_notices_ksm_switched_on_behind_its_back(secure):
    guest, inventory, verify = secure
    converge = run_playbook(SITE, inventory=inventory, limit=guest.name)
    assert converge.rc == 0 and converge.stats[guest.name]['failed'] == 0, converge.output[-4000:]
    result = verify_result(converge, guest.name)
    assert result['status'] == 'ok', result
    assert result['result']['msg'].startswith('%s shares no memory through KSM' % guest.name), result['result']['msg']
    assert read_ksm(guest)['run'] in ('0', '2')

    # run=1 behind its back, with something to merge: run and the shared pages are named
    guest.ssh("nohup python3 -c '%s' </dev/null >/dev/null 2>&1 &" % WORKLOAD)     # WORKLOAD has no single quote
    guest.ssh('echo 5000 > /sys/kernel/mm/ksm/pages_to_scan; echo 0 > /sys/kernel/mm/ksm/sleep_millisecs; '
              'echo 1 > /sys/kernel/mm/ksm/run')
    deadline = time.time() + 300
    while int(read_ksm(guest)['pages_sharing']) == 0:
        assert time.time() < deadline, 'nothing merged within 300 s: %r' % read_ksm(guest)
        time.sleep(2)
    run, result = check(inventory, verify, guest)
    assert run.rc != 0 and result['status'] == 'failed', result
    message = result['result']['msg']
    assert 'run is 1: ksmd is merging pages' in message, message
    assert 'pages are shared by' in message and '(pages_shared, pages_sharing)' in message, message

    # back to off (unmerged): it passes again
    guest.ssh('kill $(cat {p}); rm -f {p}; echo 2 > /sys/kernel/mm/ksm/run; echo 0 > /sys/kernel/mm/ksm/run'.format(
        p=WORKLOAD_PID))
    run, result = check(inventory, verify, guest)
    assert run.rc == 0 and result['status'] == 'ok', result

    # the ksm service started behind its back (ksmctl writes run=1; the unit stays active): both named
    guest.ssh('systemctl start ksm.service')
    run, result = check(inventory, verify, guest)
    assert result['status'] == 'failed', result
    message = result['result']['msg']
    assert 'ksm.service is active (exited), disabled: it switches ksmd on' in message, message
    assert 'run is 1' in message, message
    assert 'samepage.ksm.ksm_service name=ksm state=stopped enabled=false' in message, message

    # and enabled: the boot-time writer is named too
    guest.ssh('systemctl stop ksm.service; systemctl enable ksm.service')
    run, result = check(inventory, verify, guest)
    message = result['result']['msg']
    assert result['status'] == 'failed' and 'ksm.service is inactive (dead), enabled' in message, message
    assert 'ksm.service switches ksmd on at boot' in message, message

    # site.yml puts it right, and the check at its end says so
    converge = run_playbook(SITE, inventory=inventory, limit=guest.name)
    assert converge.rc == 0 and verify_result(converge, guest.name)['status'] == 'ok', converge.output[-4000:]
