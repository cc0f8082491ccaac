# -*- coding: utf-8 -*-
# Copyright: (c) 2026, samepage.ksm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Converge cost: the collection against the way operators write KSM settings by hand.

host: bench/playbooks/ours_sysfs.yml (one samepage.ksm.ksm_sysfs task) against
      bench/playbooks/hand_sysfs.yml (one shell echo per knob) on this machine, under the host lock.
lab:  site.yml against bench/playbooks/hand_site.yml (service tasks, shell echos, a template) on one
      Debian 13 lab guest of group dense, reset to the image's state before every first run.

Both read the group's profile from the roles' defaults and inventory/example/group_vars
(benchlib.profile): ours_sysfs.yml gets the options the ksm role passes to ksm_sysfs, the hand-written
playbooks the resulting knob values and ksmtuned.conf as extra variables (hand_vars). For each repetition and variant: a
first run from the starting state, then an unchanged second run. Wall time is measured around the
whole ansible-playbook command; module executions are counted from its -vvv output ("Using module
file", one line per module the controller ships to the host, including those inside action plugins
such as template). Ratios are ours / by hand, per repetition, then the median.
"""

import os
import shutil
import tempfile
import time

import benchlib
from benchlib import median, ratio, say
from tests.support.ansible_cli import run_playbook

PLAYBOOKS = os.path.join(benchlib.HERE, 'playbooks')

# Put a lab guest back to the image's state: no boot-time units of either variant, ksm.service and
# ksmtuned.service enabled and running as the Debian package leaves them, knobs at the kernel's values.
LAB_RESET = r'''
set -e
K=/sys/kernel/mm/ksm
systemctl disable --now samepage-ksm-sysfs.service ksm-knobs.service >/dev/null 2>&1 || true
rm -f /etc/systemd/system/samepage-ksm-sysfs.service /etc/systemd/system/ksm-knobs.service \
      /etc/systemd/system/*.wants/samepage-ksm-sysfs.service /etc/systemd/system/*.wants/ksm-knobs.service \
      /etc/libvirt/hooks/qemu.d/samepage-ksmtuned /etc/libvirt/hooks/qemu.d/ksmtuned-retune
systemctl daemon-reload
[ -e /etc/ksmtuned.conf.bench-image ] || cp -p /etc/ksmtuned.conf /etc/ksmtuned.conf.bench-image
cp -p /etc/ksmtuned.conf.bench-image /etc/ksmtuned.conf
systemctl stop ksmtuned.service ksm.service >/dev/null 2>&1 || true
echo 2 > $K/run
echo 100 > $K/pages_to_scan
echo 20 > $K/sleep_millisecs
echo 256 > $K/max_page_sharing
echo 0 > $K/use_zero_pages
echo 1 > $K/merge_across_nodes
[ ! -e $K/smart_scan ] || echo 1 > $K/smart_scan
echo 0 > $K/run
systemctl enable --now ksm.service ksmtuned.service >/dev/null 2>&1
'''


def hand_vars(prof):
    """Extra variables of the hand-written playbooks: the end state of the roles for one profile."""
    knobs = prof['knobs']
    ordered = {k: int(knobs[k]) if isinstance(knobs[k], bool) else knobs[k]
               for k in benchlib._ksm.WRITE_ORDER if k in knobs}
    return {
        'hand_ksm_on': prof['enabled'],
        'hand_fixed_rate': prof['enabled'] and prof['tuner'] == 'none',
        'hand_knobs': ordered,
        'hand_unmerge': prof['unmerge'],
        'hand_persist': prof['persist'],
        'hand_ksmtuned_on': prof['ksmtuned_enabled'],
        'hand_ksmtuned_conf': prof['ksmtuned_conf'],
        'hand_ksmtuned_logfile': prof['ksmtuned_logfile'] if prof['ksmtuned_debug'] else '',
        'hand_ksmtuned_debug': prof['ksmtuned_debug'],
        'hand_libvirt_hook': prof['ksmtuned_libvirt_hook'],
    }


def converge_once(playbook, inventory, extra_vars=None, limit=None, env=None):
    started = time.time()
    run = run_playbook(playbook, inventory=inventory, extra_vars=extra_vars, limit=limit, env=env,
                       extra_args=['-vvv'])
    wall = time.time() - started
    totals = {'ok': 0, 'changed': 0, 'failed': 0, 'unreachable': 0, 'skipped': 0}
    for stats in run.stats.values():
        for key in totals:
            totals[key] += stats.get(key, 0)
    modules = sum(1 for line in run.output.splitlines() if 'Using module file' in line)
    result = dict(totals, wall_s=wall, modules=modules, rc=run.rc, hosts=len(run.stats) or 1)
    if run.rc != 0 or totals['failed'] or totals['unreachable']:
        tail = '\n'.join(run.output.splitlines()[-40:])
        raise RuntimeError('%s failed (rc=%s):\n%s' % (os.path.basename(playbook), run.rc, tail))
    return result


def measure(variants, reps, reset, inventory, extra_vars=None, limit=None, env=None, check=None):
    """{variant: [{'first': ..., 'second': ...}, ...]} with the variant order rotated per repetition."""
    runs = {name: [] for name, dummy in variants}
    for rep in range(reps):
        order = variants[rep % len(variants):] + variants[:rep % len(variants)]
        for name, playbook in order:
            reset()
            first = converge_once(playbook, inventory, extra_vars, limit, env)
            problems = check() if check else []
            second = converge_once(playbook, inventory, extra_vars, limit, env)
            say('rep %d %-28s first %5.1f s (%d changed, %d modules)  second %5.1f s (%d changed, %d modules)%s'
                % (rep + 1, name, first['wall_s'], first['changed'], first['modules'], second['wall_s'],
                   second['changed'], second['modules'], '  NOT CONVERGED: %s' % problems if problems else ''))
            runs[name].append({'first': first, 'second': second, 'state_problems': problems})
    return runs


def summarise(runs, variants):
    """Table rows: one per variant, then the ratio ours / by hand (median of per-repetition ratios)."""
    headers = ['variant', 'first run s', 'second run s', 'changed 1st', 'changed 2nd', 'modules/host 1st',
               'modules/host 2nd', 'reps']
    rows = []
    for name, dummy in variants:
        items = runs[name]
        hosts = items[0]['first']['hosts']
        rows.append([name, median(i['first']['wall_s'] for i in items), median(i['second']['wall_s'] for i in items),
                     median(i['first']['changed'] for i in items), median(i['second']['changed'] for i in items),
                     median(i['first']['modules'] / hosts for i in items),
                     median(i['second']['modules'] / hosts for i in items), len(items)])
    ours, hand = variants[0][0], variants[1][0]
    pairs = list(zip(runs[ours], runs[hand]))
    rows.append(['ratio ours/hand', median(ratio(a['first']['wall_s'], b['first']['wall_s']) for a, b in pairs),
                 median(ratio(a['second']['wall_s'], b['second']['wall_s']) for a, b in pairs), '', '',
                 median(ratio(a['first']['modules'], b['first']['modules']) for a, b in pairs),
                 median(ratio(a['second']['modules'], b['second']['modules']) for a, b in pairs), len(pairs)])
    return headers, rows


def plot(name, title, runs, variants):
    plt = benchlib.pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    width = 0.38
    for index, (variant, dummy) in enumerate(variants):
        for slot, which in enumerate(('first', 'second')):
            values = [item[which]['wall_s'] for item in runs[variant]]
            mid = median(values)
            x = slot + (index - 0.5) * width
            ax.bar(x, mid, width, label=variant if slot == 0 else None, color='C%d' % index)
            ax.errorbar(x, mid, yerr=[[mid - min(values)], [max(values) - mid]], color='black', capsize=4)
            ax.text(x, mid, ' %.1f s' % mid, ha='center', va='bottom', fontsize=8)
    ax.set_xticks([0, 1])
    ax.set_xticklabels(['first run (changes)', 'second run (unchanged)'])
    ax.set_ylabel('wall time, s (median, min-max)')
    ax.set_title(title, fontsize=10)
    ax.legend()
    fig.tight_layout()
    path = benchlib.plot_path(name)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _inventory_dir(group, host_line):
    directory = tempfile.mkdtemp(prefix='samepage-bench-inv-')
    with open(os.path.join(directory, 'hosts.yml'), 'w') as handle:
        handle.write('kvm_hosts:\n  children:\n    %s:\n      hosts:\n        %s\n' % (group, host_line))
    os.symlink(os.path.join(benchlib.INVENTORY, 'group_vars'), os.path.join(directory, 'group_vars'))
    return directory


def run_host(reps=3, group='dense'):
    """ksm_sysfs vs shell echos on this machine (localhost, local connection), under the host lock."""
    from tests.support.ksm_host import ksm_host_guard, restore
    info = benchlib.machine()
    prof = benchlib.profile(group)
    knobs = prof['knobs']
    directory = _inventory_dir(group, 'localhost: {ansible_connection: local, ansible_python_interpreter: %s}'
                               % benchlib.venv_python())
    inventory = os.path.join(directory, 'hosts.yml')
    # Only the knobs: no services and no boot-time unit on this machine (PID 1 is not systemd here).
    extra = dict(hand_vars(prof), ours_sysfs=prof['sysfs'])
    variants = [('samepage.ksm.ksm_sysfs', os.path.join(PLAYBOOKS, 'ours_sysfs.yml')),
                ('shell echo per knob', os.path.join(PLAYBOOKS, 'hand_sysfs.yml'))]
    neighbours = benchlib.busy_neighbours()
    try:
        with ksm_host_guard() as host:
            def reset():
                restore(host.ksm, host.snapshot)

            def check():
                live = host.ksm.read_state()
                return ['%s=%s (wanted %s)' % (k, live.get(k), v) for k, v in knobs.items()
                        if k in live and live.get(k) != v]
            say('converge on this machine: group %s %s, %d repetitions (holding the host lock)' % (group, knobs, reps))
            runs = measure(variants, reps, reset, inventory, extra, check=check)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    headers, rows = summarise(runs, variants)
    title = 'Converge cost on this machine (group %s, ksm_sysfs vs shell echo per knob)' % group
    notes = ['median of %d repetitions; ratios are medians of per-repetition ratios (ours / by hand)' % reps,
             'profile %s (roles/*/defaults + inventory/example/group_vars): ksm_sysfs %s' % (group, prof['sysfs']),
             'knobs checked after the first run: %s' % knobs,
             'other load while measuring: %d QEMU guests / test runs' % len(neighbours)]
    name = 'converge_host'
    paths = benchlib.report(name, title, info, headers, rows,
                            {'runs': runs, 'group': group, 'knobs': knobs, 'profile': prof, 'neighbours': neighbours}, notes)
    print('plot: %s' % os.path.relpath(plot(name, title, runs, variants), benchlib.REPO))
    return paths


def run_lab(reps=3, group='dense', lab=None, suite='trixie'):
    """site.yml vs hand_site.yml on one lab guest (started here unless a lab is given)."""
    import lablib
    info = benchlib.machine()
    neighbours = benchlib.busy_neighbours()
    with lablib.bench_lab([('bench-%s' % group, suite, group, 1024)], lab=lab) as (lab_, guests):
        guest = guests[0]
        prof = benchlib.profile(group, nodes=list(range(guest.numa_nodes)))
        knobs = prof['knobs']
        extra = hand_vars(prof)
        variants = [('site.yml (samepage.ksm)', os.path.join(benchlib.REPO, 'site.yml')),
                    ('hand-written playbook', os.path.join(PLAYBOOKS, 'hand_site.yml'))]

        def reset():
            guest.ssh(LAB_RESET, timeout=120)

        def check():
            out = guest.ssh('for f in %s; do printf "%%s=%%s\\n" $f $(cat /sys/kernel/mm/ksm/$f); done'
                            % ' '.join(k for k in knobs), timeout=60).stdout
            live = dict(line.split('=', 1) for line in out.split())
            return ['%s=%s (wanted %s)' % (k, live.get(k), int(v)) for k, v in knobs.items()
                    if live.get(k) not in (None, '', str(int(v)))]
        say('converge on lab guest %s (Debian %d, kernel %s): group %s, %d repetitions'
            % (guest.name, guest.debian, guest.kernel_release, group, reps))
        runs = measure(variants, reps, reset, lab_.inventory, extra, limit=guest.name, env=lab_.ansible_env(),
                       check=check)
        guest_info = {'name': guest.name, 'debian': guest.debian, 'kernel': guest.kernel_release,
                      'accel': guest.accel, 'memory_mib': guest.spec.memory_mib, 'cpus': guest.spec.cpus}
    headers, rows = summarise(runs, variants)
    title = 'Converge cost on a lab guest (Debian %d, %s; site.yml vs hand-written)' % (
        guest_info['debian'], guest_info['kernel'])
    notes = ['median of %d repetitions; ratios are medians of per-repetition ratios (ours / by hand)' % reps,
             'guest: %(name)s, %(memory_mib)d MiB, %(cpus)d vCPU, QEMU accelerator %(accel)s, SSH with pipelining'
             % guest_info,
             'each first run starts from the image state (ksm + ksmtuned enabled, kernel values, no boot unit)',
             'other load while measuring: %d QEMU guests / test runs' % len(neighbours)]
    name = 'converge_lab'
    paths = benchlib.report(name, title, info, headers, rows,
                            {'runs': runs, 'group': group, 'knobs': knobs, 'profile': prof, 'guest': guest_info,
                             'neighbours': neighbours}, notes)
    print('plot: %s' % os.path.relpath(plot(name, title, runs, variants), benchlib.REPO))
    return paths
