# -*- coding: utf-8 -*-
# Copyright: (c) 2026, samepage.ksm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""`labctl demo`: tools, images, guests, site.yml, a workload of duplicate pages, and what KSM does on each guest."""

import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time

from .common import LABCTL, REPO, LabError, default_state_dir, fmt_seconds, human, indent, run, say
from .hostdemo import host_ksm_demo
from .hosttools import BOOT_TOOLS, BUILD_TOOLS, ensure_tools


WORKLOAD_GUEST_PATH = '/usr/local/lib/samepage-lab/merge_workload.py'
WORKLOAD_UNIT = 'samepage-lab-workload'


def find_ansible_playbook(cache_dir, create=True):
    """ansible-playbook from SAMEPAGE_VENV, from PATH, or from a venv the lab makes in its cache."""
    venv = os.environ.get('SAMEPAGE_VENV')
    candidates = []
    if venv:
        candidates.append(os.path.join(venv, 'bin', 'ansible-playbook'))
    candidates.append(os.path.join(os.path.dirname(sys.executable), 'ansible-playbook'))
    found = shutil.which('ansible-playbook')
    if found:
        candidates.append(found)
    lab_venv = os.path.join(cache_dir, 'venv')
    candidates.append(os.path.join(lab_venv, 'bin', 'ansible-playbook'))
    for candidate in candidates:
        if os.path.exists(candidate) and os.access(candidate, os.X_OK):
            return candidate
    if not create:
        raise LabError('ansible-playbook not found (set SAMEPAGE_VENV or put it on PATH)')
    say('no ansible-playbook found: making a venv with ansible-core in %s' % lab_venv)
    result = run([sys.executable, '-m', 'venv', lab_venv])
    if result.returncode == 0:
        result = run([os.path.join(lab_venv, 'bin', 'pip'), 'install', '-q', 'ansible-core'])
    if result.returncode != 0:
        shutil.rmtree(lab_venv, ignore_errors=True)
        raise LabError('could not install ansible-core into %s:\n%s' % (lab_venv, indent(result.stdout[-2000:])))
    return os.path.join(lab_venv, 'bin', 'ansible-playbook')


def workload_source():
    """The merge workload copied into guests (tests/support/merge_workload.py, standard library only)."""
    path = os.path.join(REPO, 'tests', 'support', 'merge_workload.py')
    if not os.path.exists(path):
        raise LabError('%s is missing: the demo copies it into the guests as their workload' % path)
    with open(path) as handle:
        return handle.read(), 'tests/support/merge_workload.py'


def start_workload(guest, mib):
    source, origin = workload_source()
    guest.ssh('mkdir -p %s && cat > %s && chmod 755 %s' % (
        os.path.dirname(WORKLOAD_GUEST_PATH), WORKLOAD_GUEST_PATH, WORKLOAD_GUEST_PATH), input=source)
    guest.ssh('systemctl stop %s 2>/dev/null; systemctl reset-failed %s 2>/dev/null; '
              'systemd-run --unit=%s --description="samepage.ksm lab: %d MiB of duplicate mergeable pages" '
              '/usr/bin/python3 %s --mib %d' % (WORKLOAD_UNIT, WORKLOAD_UNIT, WORKLOAD_UNIT, mib,
                                                WORKLOAD_GUEST_PATH, mib))
    return origin


def ksm_info_all(lab, ansible):
    """samepage.ksm.ksm_info on every guest, in ONE `ansible` run: {guest name: its result, or None}.

    The results are read as JSON from the files `ansible --tree` writes, one per host; a guest that
    failed or did not answer is None.
    """
    tree = tempfile.mkdtemp(prefix='ksm_info-', dir=lab.state_dir)
    try:
        cmd = [ansible, 'all', '-i', lab.inventory, '-m', 'samepage.ksm.ksm_info',
               '-a', json.dumps({'max_processes': 0}), '--tree', tree]
        run(cmd, env=lab.ansible_env(), cwd=REPO)
        reports = {}
        for guest in lab.guests:
            try:
                with open(os.path.join(tree, guest.name)) as handle:
                    result = json.load(handle)
            except (OSError, ValueError):
                result = None
            ok = result is not None and result.get('available') and not (result.get('failed') or result.get('unreachable'))
            reports[guest.name] = result if ok else None
        return reports
    finally:
        shutil.rmtree(tree, ignore_errors=True)


SERVICES = ('ksm.service', 'ksmtuned.service', 'samepage-ksm-tuner.service', WORKLOAD_UNIT + '.service')


def guest_services(guest):
    """{unit: (ActiveState, UnitFileState)} of ksm, ksmtuned, the samepage tuner and the demo workload (ksm_info does not
    report services; `systemctl show` prints one block per unit, in the order asked)."""
    try:
        result = guest.ssh('systemctl show -p ActiveState -p UnitFileState %s' % ' '.join(SERVICES),
                           check=False, timeout=60)
    except subprocess.TimeoutExpired:
        return {}
    services = {}
    for unit, block in zip(SERVICES, result.stdout.strip().split('\n\n')):
        values = dict(line.split('=', 1) for line in block.splitlines() if '=' in line)
        services[unit] = (values.get('ActiveState', '?'), values.get('UnitFileState', ''))
    return services


def saved_bytes(info):
    if 'general_profit' in info['counters']:
        return int(info['counters']['general_profit']), 'general_profit'
    return info['savings']['bytes_saved'], 'pages_sharing x page size'


def tuner_line(tuner):
    """The samepage tuner as ksm_info reports it (its state file): phase, why, rate, CPU."""
    if tuner is None:
        return 'not installed'
    if 'phase' not in tuner:
        return 'installed, %s, no state file yet' % ('running' if tuner.get('running') else 'not running')
    return 'phase %s%s (%s) at pages_to_scan=%s sleep_millisecs=%s, last gain %s pages, ksmd %s%% / tuner %s%% of a core' % (
        tuner['phase'], '' if tuner.get('running') else ' [not running]', tuner.get('reason'),
        tuner.get('pages_to_scan'), tuner.get('sleep_millisecs'), tuner.get('last_gain'),
        tuner.get('ksmd_cpu_percent'), tuner.get('own_cpu_percent'))


def print_report(lab, reports, services):
    print()
    print('What KSM does on each guest')
    print('=' * 27)
    for guest in lab.guests:
        info = reports.get(guest.name)
        if info is None:
            print('%s: no answer' % guest.name)
            continue
        settings, counters, capabilities = info['settings'], info['counters'], info['capabilities']
        amount, source = saved_bytes(info)
        nodes = len(capabilities['numa_nodes_with_memory'])
        svc = services.get(guest.name, {})
        ksm, ksmtuned, tuner, workload = (svc.get(unit, ('?', '')) for unit in SERVICES)
        print('%s  [group %s]  Debian %d, kernel %s, %d NUMA node%s' % (
            guest.name, guest.group, guest.debian, capabilities['kernel_release'], nodes,
            's' if nodes != 1 else ''))
        print('  settings : run=%s pages_to_scan=%s sleep_millisecs=%s merge_across_nodes=%s%s' % (
            settings.get('run'), settings.get('pages_to_scan'), settings.get('sleep_millisecs'),
            settings.get('merge_across_nodes', 'n/a'),
            ' advisor_mode=%s' % settings['advisor_mode'] if 'advisor_mode' in settings else ''))
        print('  services : ksm %s/%s, ksmtuned %s/%s, samepage tuner %s/%s, demo workload %s' % (
            ksm[0], ksm[1], ksmtuned[0], ksmtuned[1], tuner[0], tuner[1] or 'not installed', workload[0]))
        print('  tuner    : %s' % tuner_line(info.get('tuner')))
        print('  merging  : pages_shared=%s pages_sharing=%s full_scans=%s' % (
            counters.get('pages_shared'), counters.get('pages_sharing'), counters.get('full_scans')))
        print('  saved    : %s (%s)' % (human(amount), source))
    print()


def wait_for_merging(lab, ansible, expect, timeout):
    """Poll the guests (ksm_info) until every guest in expect shares pages, or timeout; return the last
    reports and the guests still pending."""
    deadline = time.time() + timeout
    while True:
        reports = ksm_info_all(lab, ansible)
        pending = [guest.name for guest in lab.guests
                   if reports[guest.name] is None
                   or (guest.name in expect and not reports[guest.name]['counters'].get('pages_sharing'))]
        if not pending or time.time() > deadline:
            return reports, pending
        say('waiting for KSM to merge the workload on %s' % ', '.join(pending))
        time.sleep(10)


def demo(lab, workload_mib=128, host_ksm=False, host_seconds=100, merge_timeout=240):
    started = time.time()
    say('demo: setting up (tools, images, guests)')
    ensure_tools(BOOT_TOOLS + BUILD_TOOLS)
    playbook_bin = find_ansible_playbook(lab.cache_dir)
    lab.up()
    # The hosts are converged first and their "VMs" start afterwards, as on a new KVM host. The other way
    # round the image's ksmd merges the workload first, and site.yml then (rightly) refuses to change
    # max_page_sharing and merge_across_nodes while pages are shared (ksm_unmerge_if_busy is off).
    say('demo: ansible-playbook -i %s site.yml' % lab.inventory)
    cmd = [playbook_bin, '-i', lab.inventory, os.path.join(REPO, 'site.yml')]
    result = subprocess.run(cmd, env=lab.ansible_env(), cwd=REPO, check=False)
    if result.returncode != 0:
        raise LabError('ansible-playbook site.yml failed (exit %d); the lab is still up for a look: '
                       '`%s status`, `%s down` to stop it' % (result.returncode, sys.argv[0], sys.argv[0]))
    for guest in lab.guests:
        origin = start_workload(guest, workload_mib)
        say('%s: started %d MiB of duplicate mergeable memory (%s, unit %s)'
            % (guest.name, workload_mib, origin, WORKLOAD_UNIT))
    expect = [g.name for g in lab.guests if g.group != 'secure']
    ansible = os.path.join(os.path.dirname(playbook_bin), 'ansible')
    reports, pending = wait_for_merging(lab, ansible, expect, merge_timeout)
    print_report(lab, reports, {guest.name: guest_services(guest) for guest in lab.guests})
    if pending:
        say('note: no merged pages yet on %s after %d s' % (', '.join(pending), merge_timeout))
    if host_ksm:
        host_ksm_demo(lab, playbook_bin, host_seconds)
    say('demo finished in %s' % fmt_seconds(time.time() - started))
    print_explore(lab, playbook_bin)


def print_explore(lab, ansible_playbook='ansible-playbook'):
    me = os.path.relpath(LABCTL)
    env = ''
    if lab.state_dir != default_state_dir():
        env = 'SAMEPAGE_LAB_STATE=%s ' % shlex.quote(lab.state_dir)
    print()
    print('The lab is still running. To explore it:')
    print('  %spython3 %s status' % (env, me))
    for guest in lab.guests:
        print('  %spython3 %s ssh %-14s # Debian %d, group %s' % (env, me, guest.name, guest.debian, guest.group))
    print('  ANSIBLE_COLLECTIONS_PATH=%s %s -i %s site.yml'
          % (lab.collections_path(), ansible_playbook, lab.inventory))
    print('To stop every guest and free its ports:')
    print('  make lab-down      (or: %spython3 %s down)' % (env, me))
