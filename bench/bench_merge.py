# -*- coding: utf-8 -*-
# Copyright: (c) 2026, samepage.ksm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Merge speed: one fixed duplicate workload merged under each setting, side by side in one run.

Settings: kernel defaults, ksmtuned's first and peak steps under memory pressure, the kernel's
scan-time advisor (where the kernel has it), ksmd flat out, and each profile of inventory/example
(read from its group_vars). Measured per setting: time to 50 % and 90 % of the achievable sharing
(pages of the workload merged, /proc/<pid>/ksm_merging_pages), ksmd's CPU time until 90 %, and ksmd's
CPU once converged (% of one core over idle_seconds). Ratios: kernel defaults' time / the setting's
time in the same repetition (speed-up), then the median.

host:   MADV_MERGEABLE workload (tests/support/merge_workload.py) on this machine; every single
        measurement holds the host lock (and restores everything) on its own, so other users of
        /sys/kernel/mm/ksm wait minutes at most.
guest:  the same workload inside one Debian 13 lab guest (bench/merge_probe.py runs there).
guests: two identical Debian 12 lab guests on this machine, host ksmd merging their RAM; achievable
        sharing = the most any setting reached in that repetition (the guests' RAM is what it is).
"""

import json
import os
import time

import benchlib
import merge_probe
from benchlib import median, ratio, say

BASELINE = 'kernel defaults'


def settings_for(state, mem_total_kib, nodes, profiles=benchlib.PROFILES):
    """[(name, knobs)] for a kernel whose /sys/kernel/mm/ksm reads as state."""
    ramp = benchlib.ksmtuned_ramp()                      # roles/ksmtuned defaults = ksmtuned's own
    sleep = benchlib.ksmtuned_sleep(mem_total_kib)
    settings = [
        (BASELINE, dict(benchlib.KERNEL_DEFAULTS)),
        ('ksmtuned first step', {'pages_to_scan': ramp[0], 'sleep_millisecs': sleep}),
        ('ksmtuned peak', {'pages_to_scan': ramp[-1], 'sleep_millisecs': sleep}),
    ]
    if 'advisor_mode' in state:
        settings.append(('scan-time advisor', {'advisor_mode': 'scan-time', 'sleep_millisecs': 20}))
    settings.append(('flat out', {'pages_to_scan': 20000, 'sleep_millisecs': 0}))
    for group in profiles:
        # The ksm role's knobs; ksmtuned-driven profiles at the peak of their own ksmtuned.conf.
        settings.append(('profile ' + group, benchlib.merge_knobs(group, mem_total_kib, nodes=nodes)))
    return settings


def mem_total_kib(text=None):
    if text is None:
        with open('/proc/meminfo') as handle:
            text = handle.read()
    for line in text.splitlines():
        if line.startswith('MemTotal:'):
            return int(line.split()[1])
    raise RuntimeError('no MemTotal in /proc/meminfo')


# --------------------------------------------------------------------------------------------------
# Summaries

def summarise(results, settings, achievable_of):
    """Rows per setting (medians over repetitions) and the per-rep speed-up against kernel defaults."""
    by_rep = {}
    for result in results:
        by_rep.setdefault(result['rep'], {})[result['name']] = merge_probe.summarise(result, achievable_of(result))
    headers = ['setting', 'knobs', 't50 s', 't90 s', 'speed-up t90 vs defaults', 'ksmd CPU to 90% s',
               'idle ksmd % of a core', 'merged %', 'reached 90% in']
    rows = []
    summaries = {}
    for name, knobs in settings:
        items = [rep[name] for rep in by_rep.values() if name in rep]
        speedups = []
        for rep in by_rep.values():
            mine, base = rep.get(name), rep.get(BASELINE)
            if mine and base and mine['t90_s']:
                # A baseline that never reached 90 % counts as its timeout (so the speed-up is a lower bound).
                speedups.append(ratio(base['t90_s'] or base['timeout_s'], mine['t90_s']))
        merged_pct = [100.0 * i['merged_pages'] / i['achievable_pages'] for i in items if i['achievable_pages']]
        reached = sum(1 for i in items if i['t90_s'] is not None)
        knob_text = ' '.join('%s=%s' % (k, int(v) if isinstance(v, bool) else v) for k, v in sorted(knobs.items())
                             if k != 'merge_across_nodes')
        row = [name, knob_text, median(i['t50_s'] for i in items), median(i['t90_s'] for i in items),
               median(speedups), median(i['cpu_to_90_s'] for i in items), median(i['idle_cpu_pct'] for i in items),
               median(merged_pct), '%d/%d' % (reached, len(items))]
        rows.append(row)
        summaries[name] = items
    return headers, rows, summaries


def plot(name, title, results, settings, achievable_of):
    plt = benchlib.pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2), gridspec_kw={'width_ratios': [2, 1]})
    names = [n for n, dummy in settings]
    for index, setting in enumerate(names):
        runs = [r for r in results if r['name'] == setting]
        if not runs:
            continue
        run = sorted(runs, key=lambda r: r['elapsed_s'])[len(runs) // 2]   # the median-length run
        achievable = achievable_of(run) or 1
        xs = [max(t, 0.05) for t, dummy, dummy2 in run['timeline']]
        ys = [100.0 * m / achievable for dummy, m, dummy2 in run['timeline']]
        left.step(xs, ys, where='post', label=setting, color='C%d' % (index % 10))
    left.set_xscale('log')
    left.set_xlabel('seconds after run=1 (log)')
    left.set_ylabel('% of achievable sharing merged')
    left.axhline(50, color='grey', lw=0.5, ls=':')
    left.axhline(90, color='grey', lw=0.5, ls=':')
    left.legend(fontsize=7, loc='upper left')
    left.set_title(title, fontsize=9)
    idle = []
    for setting in names:
        values = [r['idle_cpu_pct'] for r in results if r['name'] == setting and r['idle_cpu_pct'] is not None]
        idle.append(median(values))
    right.barh(range(len(names)), [v or 0.0 for v in idle], color=['C%d' % (i % 10) for i in range(len(names))])
    for index, value in enumerate(idle):
        stopped = any(r['run'] != 1 for r in results if r['name'] == names[index])
        right.text(value or 0.0, index, ' %s' % ('%.1f %%' % value if value is not None else
                                                 'ksmd stopped' if stopped else 'not converged'),
                   va='center', fontsize=7)
    right.set_yticks(range(len(names)))
    right.set_yticklabels(names, fontsize=7)
    right.invert_yaxis()
    right.set_xlabel('ksmd CPU once converged, % of one core')
    fig.tight_layout()
    path = benchlib.plot_path(name)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _report(name, title, info, results, settings, achievable_of, extra, notes):
    headers, rows, summaries = summarise(results, settings, achievable_of)
    data = dict(extra, results=results, settings=[{'name': n, 'knobs': k} for n, k in settings])
    paths = benchlib.report(name, title, info, headers, rows, data, notes)
    print('plot: %s' % os.path.relpath(plot(name, title, results, settings, achievable_of), benchlib.REPO))
    return paths


def _other_mergeable(exclude=()):
    """(processes, MiB resident) of other processes that opted in to KSM (QEMU guests of other labs)."""
    count, kib = 0, 0
    for entry in os.listdir('/proc'):
        if not entry.isdigit() or int(entry) in exclude:
            continue
        try:
            with open('/proc/%s/ksm_stat' % entry) as handle:
                stat = handle.read()
            if 'ksm_mergeable: yes' not in stat:
                continue
            with open('/proc/%s/status' % entry) as handle:
                for line in handle:
                    if line.startswith('VmRSS:'):
                        kib += int(line.split()[1])
            count += 1
        except (OSError, ValueError):
            continue
    return count, kib // 1024


# --------------------------------------------------------------------------------------------------
# host

def run_host(reps=3, mib=128, timeout=120, idle_seconds=10, only=None):
    from tests.support.ksm_host import ksm_host_guard
    info = benchlib.machine()
    with ksm_host_guard() as host:
        state = host.state()
    settings = settings_for(state, mem_total_kib(), benchlib._ksm.numa_nodes_with_memory())
    settings = _only(settings, only)
    neighbours = benchlib.busy_neighbours()
    others = _other_mergeable()
    say('merge speed on this machine: %d MiB workload, %d settings x %d repetitions, timeout %d s; '
        'other mergeable memory: %d processes, %d MiB' % (mib, len(settings), reps, timeout, others[0], others[1]))
    results = []
    for rep in range(reps):
        order = settings[rep % len(settings):] + settings[:rep % len(settings)]
        for name, knobs in order:
            with ksm_host_guard() as host:          # one measurement per lock hold
                config = {'settings': [{'name': name, 'knobs': knobs}], 'reps': 1, 'mib': mib,
                          'timeout': timeout, 'idle_seconds': idle_seconds, 'interval': 0.05, 'rep_label': rep + 1}
                result = merge_probe.run_config(config, ksm=host.ksm, log=say)[0]
            result['rep'] = rep + 1
            results.append(result)
    title = 'Merge speed on this machine (%d MiB of duplicate MADV_MERGEABLE pages)' % mib
    notes = ['median of %d repetitions; speed-up = t90 under kernel defaults / t90 under the setting, per '
             'repetition, then the median (a baseline that timed out counts as its timeout: a lower bound)' % reps,
             'timeout %d s per setting; idle CPU measured for %d s after 99 %% merged' % (timeout, idle_seconds),
             'other mergeable memory ksmd also scanned: %d processes, %d MiB resident (other QEMU guests)' % others,
             'other load while measuring: %d QEMU guests / test runs' % len(neighbours)]
    return _report('merge_host', title, info, results, settings, lambda r: r['target_pages'],
                   {'mib': mib, 'timeout': timeout, 'other_mergeable': others, 'neighbours': neighbours}, notes)


# --------------------------------------------------------------------------------------------------
# one lab guest

def _only(settings, only):
    if not only:
        return settings
    unknown = set(only) - set(n for n, dummy in settings)
    if unknown:
        raise ValueError('unknown settings %s (known: %s)' % (', '.join(sorted(unknown)),
                                                              ', '.join(n for n, dummy in settings)))
    return [s for s in settings if s[0] in only or s[0] == BASELINE]


def run_guest(reps=3, mib=128, timeout=180, idle_seconds=10, suite='trixie', memory_mib=1024, only=None):
    import lablib
    info = benchlib.machine()
    neighbours = benchlib.busy_neighbours()
    files = [os.path.join(benchlib.REPO, 'plugins', 'module_utils', '_ksm.py'),
             os.path.join(benchlib.REPO, 'tests', 'support', 'merge_workload.py'),
             os.path.join(benchlib.HERE, 'merge_probe.py')]
    with lablib.bench_lab([('bench-merge', suite, 'dense', memory_mib)]) as (lab, guests):
        guest = guests[0]
        directory = lablib.copy_files(guest, files)
        guest.ssh('systemctl stop ksmtuned.service ksm.service', timeout=120)
        probe = guest.ssh('python3 -c "import json, os; print(json.dumps({'
                          '\'state\': sorted(os.listdir(\'/sys/kernel/mm/ksm\')), '
                          '\'meminfo\': open(\'/proc/meminfo\').read()}))"', timeout=60)
        facts = json.loads(probe.stdout)
        state = {name: None for name in facts['state']}
        settings = _only(settings_for(state, mem_total_kib(facts['meminfo']), [0]), only)
        say('merge speed in lab guest %s (Debian %d, kernel %s): %d MiB, %d settings x %d repetitions'
            % (guest.name, guest.debian, guest.kernel_release, mib, len(settings), reps))
        config = {'settings': [{'name': n, 'knobs': k} for n, k in settings], 'reps': reps, 'mib': mib,
                  'timeout': timeout, 'idle_seconds': idle_seconds, 'interval': 0.2, 'python': '/usr/bin/python3'}
        started = time.time()
        out = guest.ssh('cd %s && python3 merge_probe.py' % directory, input=json.dumps(config),
                        timeout=int(reps * len(settings) * (timeout + idle_seconds + 60) + 300))
        say('guest measurements took %.0f s' % (time.time() - started))
        for line in out.stderr.splitlines():
            say('guest: ' + line)
        data = json.loads(out.stdout)
        guest_info = {'name': guest.name, 'debian': guest.debian, 'kernel': data['kernel'], 'nproc': data['nproc'],
                      'memory_mib': memory_mib, 'accel': guest.accel}
    results = data['results']
    title = 'Merge speed inside a lab guest (Debian %d, kernel %s, %d MiB workload)' % (
        guest_info['debian'], guest_info['kernel'], mib)
    notes = ['median of %d repetitions; speed-up = t90 kernel defaults / t90 setting per repetition, then the '
             'median (a baseline that timed out counts as its timeout: a lower bound)' % reps,
             'guest: %(memory_mib)d MiB, %(nproc)d vCPU, QEMU accelerator %(accel)s (ksmd is emulated: compare '
             'settings with each other, not with the host)' % guest_info,
             'ksm.service and ksmtuned.service stopped in the guest while measuring; timeout %d s per setting'
             % timeout,
             'other load on this machine while measuring: %d QEMU guests / test runs' % len(neighbours)]
    return _report('merge_guest', title, info, results, settings, lambda r: r['target_pages'],
                   {'mib': mib, 'timeout': timeout, 'guest': guest_info, 'neighbours': neighbours}, notes)


# --------------------------------------------------------------------------------------------------
# two identical guests, merged by this machine's ksmd

def run_two_guests(reps=2, timeout=180, idle_seconds=10, suite='bookworm', memory_mib=1024, settle=30, only=None):
    import lablib
    from tests.support.ksm_host import ksm_host_guard
    info = benchlib.machine()
    neighbours = benchlib.busy_neighbours()
    with ksm_host_guard() as host:
        state = host.state()
    settings = _only(settings_for(state, mem_total_kib(), benchlib._ksm.numa_nodes_with_memory()), only)
    specs = [('bench-twin-a', suite, 'dense', memory_mib), ('bench-twin-b', suite, 'dense', memory_mib)]
    with lablib.bench_lab(specs) as (lab, guests):
        for guest in guests:
            # ksmtuned inside the guests would only change the guests' own KSM; stop it so both stay alike.
            guest.ssh('systemctl stop ksmtuned.service ksm.service', timeout=120)
        say('letting the guests settle for %d s' % settle)
        time.sleep(settle)
        pids = []
        for guest in guests:
            pids.extend(guest.recorded_pids())
        others = _other_mergeable(exclude=pids)
        say('two guests (QEMU pids %s) merged by this machine: %d settings x %d repetitions; other mergeable '
            'memory: %d processes, %d MiB' % (pids, len(settings), reps, others[0], others[1]))
        results = []
        for rep in range(reps):
            order = settings[rep % len(settings):] + settings[:rep % len(settings)]
            for name, knobs in order:
                with ksm_host_guard() as host:
                    config = {'settings': [{'name': name, 'knobs': knobs}], 'reps': 1, 'timeout': timeout,
                              'idle_seconds': idle_seconds, 'interval': 0.1, 'plateau_seconds': 15,
                              'rep_label': rep + 1}
                    result = merge_probe.run_config(config, ksm=host.ksm, pids=pids, log=say)[0]
                result['rep'] = rep + 1
                results.append(result)
        rss = []
        for pid in pids:
            with open('/proc/%d/status' % pid) as handle:
                rss += [int(line.split()[1]) // 1024 for line in handle if line.startswith('VmRSS:')]
    best = {}
    for result in results:
        best[result['rep']] = max(best.get(result['rep'], 0), result['merged_pages'])
    title = 'Merge speed of two identical lab guests on this machine (Debian %d, %d MiB each)' % (
        labdebian(suite), memory_mib)
    notes = ['median of %d repetitions; achievable sharing = the most pages any setting merged in that '
             'repetition (median %d pages, %.0f MiB)' % (reps, median(best.values()) or 0,
                                                         (median(best.values()) or 0) * 4096 / 1048576.0),
             'a run ends 15 s after its last growth (plateau) or at the %d s timeout; QEMU RSS %s MiB' % (timeout, rss),
             'other mergeable memory ksmd also scanned: %d processes, %d MiB resident (other QEMU guests)' % others,
             'other load while measuring: %d QEMU guests / test runs' % len(neighbours)]
    return _report('merge_two_guests', title, info, results, settings, lambda r: best[r['rep']],
                   {'timeout': timeout, 'other_mergeable': others, 'neighbours': neighbours, 'qemu_rss_mib': rss,
                    'achievable_per_rep': best}, notes)


def labdebian(suite):
    import lablib
    return lablib.samepage_lab.SUITES[suite]['debian']
