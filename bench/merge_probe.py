# -*- coding: utf-8 -*-
# Copyright: (c) 2026, samepage.ksm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""One merge-speed measurement: set KSM knobs, start ksmd, watch pages merge, measure ksmd's CPU.

Used in-process by bench/bench_merge.py on this machine (under the host lock), and copied into lab
guests with plugins/module_utils/_ksm.py and tests/support/merge_workload.py next to it:

    python3 merge_probe.py < config.json > results.json

config: {"settings": [{"name": ..., "knobs": {...}}, ...], "reps": N, "mib": 128, "timeout": 120,
         "idle_seconds": 10, "interval": 0.1, "plateau_seconds": 15}
Standard library only, Python 3.8+. It writes /sys/kernel/mm/ksm: run it only where that is allowed
(inside a lab guest, or on this machine while holding the host lock).
"""

import json
import os
import sys
import time

try:
    from ansible_collections.samepage.ksm.plugins.module_utils import _ksm
except ImportError:                         # a copy in a lab guest: _ksm.py sits next to this file
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import _ksm

try:
    from tests.support import merge_workload
except ImportError:
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import merge_workload

PAGE = os.sysconf('SC_PAGE_SIZE')

# The kernel's own values for the knobs a setting does not name (mm/ksm.c), so that no setting inherits
# anything from the one measured before it. run is written separately, last.
KERNEL_BASE = {
    'advisor_mode': 'none', 'pages_to_scan': 100, 'sleep_millisecs': 20, 'smart_scan': True,
    'use_zero_pages': False, 'max_page_sharing': 256,
}


def _read(path):
    with open(path) as handle:
        return handle.read()


def ksmd_pid():
    for entry in os.listdir('/proc'):
        if entry.isdigit():
            try:
                if _read('/proc/%s/comm' % entry).strip() == 'ksmd':
                    return int(entry)
            except OSError:
                continue
    raise RuntimeError('no ksmd kernel thread: this kernel has no KSM')


def cpu_seconds(pid):
    fields = _read('/proc/%d/stat' % pid).rsplit(')', 1)[-1].split()
    return (int(fields[11]) + int(fields[12])) / float(os.sysconf('SC_CLK_TCK'))


def merging_pages(pids):
    total = 0
    for pid in pids:
        try:
            total += int(_read('/proc/%d/ksm_merging_pages' % pid).strip() or 0)
        except (OSError, ValueError):
            pass
    return total


def full_knobs(knobs, state):
    """The setting's knobs over the kernel's values; the advisor owns pages_to_scan in scan-time."""
    wanted = dict(KERNEL_BASE)
    wanted.update(knobs)
    wanted.pop('run', None)
    if wanted.get('advisor_mode') == 'scan-time':
        wanted.pop('pages_to_scan', None)
    return {name: value for name, value in wanted.items() if name in state}


def crossing(timeline, level):
    """(seconds, cpu seconds) at the first sample where merged >= level, or (None, None)."""
    for seconds, merged, cpu in timeline:
        if merged >= level:
            return seconds, cpu
    return None, None


def measure(ksm, knobs, pids=None, mib=128, target=None, timeout=120.0, idle_seconds=10.0, interval=0.1,
            plateau_seconds=15.0, python=None):
    """Merge once under knobs. Returns a dict with the timeline [(s, merged pages, ksmd cpu s)].

    With pids=None a fresh MergeableWorkload of mib MiB is started (target: all its pages); otherwise the
    given processes are watched (target may be None: then the run ends on a plateau or the timeout).
    """
    state = ksm.read_state()
    ksm.unmerge(state)                                   # run=2: nothing merged, ksmd stopped
    state = ksm.read_state()
    writes, missing = ksm.plan(state, full_knobs(knobs, state), skip_missing=True)
    ksm.apply(writes, state)
    run = int(knobs.get('run', 1))
    workload = None
    if pids is None:
        workload = merge_workload.MergeableWorkload(mib=mib, python=python or sys.executable).start()
        pids = [workload.pid]
        target = mib * 1024 * 1024 // PAGE
    try:
        ksmd = ksmd_pid()
        cpu0 = cpu_seconds(ksmd)
        t0 = time.time()
        ksm.write('run', run)
        timeline = [(0.0, merging_pages(pids), 0.0)]
        converged = None
        last_growth = 0.0
        while True:
            time.sleep(interval)
            now = time.time() - t0
            merged = merging_pages(pids)
            if merged != timeline[-1][1]:
                if merged > timeline[-1][1] * 1.005:
                    last_growth = now
                timeline.append((round(now, 3), merged, cpu_seconds(ksmd) - cpu0))
            if target and merged >= 0.99 * target:
                converged = now
                break
            if not target and merged > 0 and now - last_growth >= plateau_seconds:
                converged = last_growth
                break
            if now >= timeout or (run != 1 and now >= min(timeout, 5.0)):
                break
        cpu_end = cpu_seconds(ksmd) - cpu0
        end = time.time() - t0
        timeline.append((round(end, 3), merging_pages(pids), cpu_end))
        idle = None
        if converged is not None and idle_seconds:
            c1, w1 = cpu_seconds(ksmd), time.time()
            time.sleep(idle_seconds)
            idle = 100.0 * (cpu_seconds(ksmd) - c1) / (time.time() - w1)
        after = ksm.read_state()
        return {
            'knobs_written': dict(writes), 'knobs_missing': missing, 'run': run, 'target_pages': target,
            'merged_pages': timeline[-1][1], 'converged_s': converged, 'timeout_s': timeout,
            'elapsed_s': end, 'ksmd_cpu_s': cpu_end, 'idle_cpu_pct': idle, 'idle_seconds': idle_seconds,
            'full_scans': after.get('full_scans'), 'pages_to_scan_end': after.get('pages_to_scan'),
            'timeline': timeline,
        }
    finally:
        if workload is not None:
            workload.stop()
        ksm.unmerge(ksm.read_state())


def summarise(result, achievable):
    """t50/t90 (s) and ksmd CPU to 90 % against achievable pages."""
    out = {k: v for k, v in result.items() if k != 'timeline'}
    out['achievable_pages'] = achievable
    for pct in (50, 90):
        seconds, cpu = crossing(result['timeline'], achievable * pct / 100.0) if achievable else (None, None)
        out['t%d_s' % pct] = seconds
        out['cpu_to_%d_s' % pct] = cpu
    return out


def run_config(config, ksm=None, pids=None, log=None):
    """Every setting, config['reps'] times, the order rotated per repetition. Returns a list of results."""
    ksm = ksm or _ksm.Ksm()
    settings = config['settings']
    results = []
    for rep in range(int(config.get('reps', 1))):
        shift = rep % len(settings)
        for setting in settings[shift:] + settings[:shift]:
            if log:
                log('rep %s: %s %s' % (config.get('rep_label', rep + 1), setting['name'],
                                       json.dumps(setting['knobs'], sort_keys=True)))
            result = measure(ksm, setting['knobs'], pids=pids, mib=config.get('mib', 128),
                             target=config.get('target'), timeout=config.get('timeout', 120),
                             idle_seconds=config.get('idle_seconds', 10), interval=config.get('interval', 0.1),
                             plateau_seconds=config.get('plateau_seconds', 15), python=config.get('python'))
            result.update(name=setting['name'], rep=rep + 1)
            if log:
                log('  merged %s pages in %.1f s (converged %s), ksmd %.2f s CPU, idle %s %%'
                    % (result['merged_pages'], result['elapsed_s'], result['converged_s'],
                       result['ksmd_cpu_s'], None if result['idle_cpu_pct'] is None
                       else round(result['idle_cpu_pct'], 1)))
            results.append(result)
    return results


def main():
    config = json.load(sys.stdin)
    pids = config.get('pids')
    results = run_config(config, pids=pids, log=lambda msg: sys.stderr.write(msg + '\n'))
    json.dump({'results': results, 'kernel': os.uname().release, 'nproc': os.cpu_count()}, sys.stdout)
    return 0


if __name__ == '__main__':
    sys.exit(main())
