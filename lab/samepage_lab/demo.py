# -*- coding: utf-8 -*-
# Copyright: (c) 2026, samepage.ksm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""`labctl demo`: tools, images, guests, site.yml, a workload of duplicate pages, and what KSM does on each guest."""

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
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


GUEST_REPORT_SCRIPT = r'''
import json, os
d = '/sys/kernel/mm/ksm'
out = {'ksm': {}, 'services': {}, 'nodes': 0}
for name in sorted(os.listdir(d)):
    try:
        out['ksm'][name] = open(os.path.join(d, name)).read().strip()
    except OSError:
        pass
for unit in ('ksm', 'ksmtuned', 'samepage-lab-workload'):
    out['services'][unit] = [os.popen('systemctl is-active %s.service 2>/dev/null' % unit).read().strip(),
                             os.popen('systemctl is-enabled %s.service 2>/dev/null' % unit).read().strip()]
nd = '/sys/devices/system/node'
out['nodes'] = len([n for n in os.listdir(nd) if n.startswith('node')]) if os.path.isdir(nd) else 1
out['kernel'] = os.uname().release
out['page'] = os.sysconf('SC_PAGE_SIZE')
print(json.dumps(out))
'''


def guest_report(guest):
    result = guest.ssh('python3 -', input=GUEST_REPORT_SCRIPT, timeout=60)
    return json.loads(result.stdout)


def chosen(text):
    """The selected word of a sysfs choice file: '[none] scan-time' -> 'none'."""
    match = re.search(r'\[([^]]+)\]', text)
    return match.group(1) if match else text


def saved_bytes(report):
    ksm = report['ksm']
    if 'general_profit' in ksm:
        return int(ksm['general_profit']), 'general_profit'
    return int(ksm.get('pages_sharing', 0)) * report['page'], 'pages_sharing x page size'


def print_report(lab, reports):
    print()
    print('What KSM does on each guest')
    print('=' * 27)
    for guest in lab.guests:
        report = reports.get(guest.name)
        if report is None:
            print('%s: no answer' % guest.name)
            continue
        ksm = report['ksm']
        amount, source = saved_bytes(report)
        svc = report['services']
        print('%s  [group %s]  Debian %d, kernel %s, %d NUMA node%s' % (
            guest.name, guest.group, guest.debian, report['kernel'], report['nodes'],
            's' if report['nodes'] != 1 else ''))
        print('  settings : run=%s pages_to_scan=%s sleep_millisecs=%s merge_across_nodes=%s%s' % (
            ksm.get('run'), ksm.get('pages_to_scan'), ksm.get('sleep_millisecs'),
            ksm.get('merge_across_nodes', 'n/a'),
            ' advisor_mode=%s' % chosen(ksm['advisor_mode']) if 'advisor_mode' in ksm else ''))
        print('  services : ksm %s/%s, ksmtuned %s/%s, demo workload %s' % (
            svc['ksm'][0], svc['ksm'][1], svc['ksmtuned'][0], svc['ksmtuned'][1],
            svc['samepage-lab-workload'][0]))
        print('  merging  : pages_shared=%s pages_sharing=%s full_scans=%s' % (
            ksm.get('pages_shared'), ksm.get('pages_sharing'), ksm.get('full_scans')))
        print('  saved    : %s (%s)' % (human(amount), source))
    print()


def wait_for_merging(lab, expect, timeout):
    """Poll the guests until every guest in expect shares pages (or timeout); return the last reports."""
    deadline = time.time() + timeout
    reports = {}
    while True:
        pending = []
        for guest in lab.guests:
            try:
                reports[guest.name] = guest_report(guest)
            except (LabError, subprocess.TimeoutExpired, ValueError):
                reports[guest.name] = None
                pending.append(guest.name)
                continue
            if guest.name in expect and int(reports[guest.name]['ksm'].get('pages_sharing', 0)) == 0:
                pending.append(guest.name)
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
    reports, pending = wait_for_merging(lab, expect, merge_timeout)
    print_report(lab, reports)
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
