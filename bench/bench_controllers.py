# -*- coding: utf-8 -*-
# Copyright: (c) 2026, samepage.ksm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""KSM controllers end to end: every contender runs for real against the same workloads, side by side.

A contender is what decides ksmd's rate on a host. Each runs as it would on a host, with its ramp:

  kernel defaults           100 pages / 20 ms and run=1, nothing adjusts them
  flat out                  20000 pages / 0 ms and run=1 (as fast as ksmd goes; a core for ever)
  scan-time advisor         advisor_mode=scan-time with the kernel's own advisor defaults (6.8+)
  ksmtuned                  Debian's ksmtuned script itself (package ksmtuned, fetched with apt-get download,
                            its /etc/ksmtuned.conf path pointed at a file of this run) with its defaults: it
                            runs ksmd only when free memory is short
  ksmtuned dense            the same script with the ksmtuned.conf the dense profile had before it moved to the
                            samepage tuner (benchlib.KSMTUNED_DENSE): ksmd always on, ramping to 3000 pages
                            every 20 s
  samepage tuner            the collection's tuner daemon (plugins/module_utils/_ksm_tuner.py) with the
                            settings of the balanced profile (inventory/example: the daemon's defaults)

Workloads (tests/support/merge_workload.py, private anonymous MADV_MERGEABLE memory):

  identical     512 MiB of one repeated page
  paired        2 processes x 256 MiB, distinct pages, equal page for page between the two
  unique        512 MiB of distinct pages (nothing to merge: what matters is what it costs)
  churn         512 MiB identical pages, 2000 pages a second rewritten for ever (half of them unique)
  late arrival  256 MiB identical; once merged and settled, a second 256 MiB process starts: its t50/t90
                count from its own start (noticed = first page of it merged)
  crowd         the identical workload beside 5,000 idle processes (the controller's own cost)

Measured per run: t50/t90 (seconds from the contender's start until 50/90 % of the achievable pages merge,
/proc/<pid>/ksm_merging_pages), ksmd CPU until t90, then - after `settle` seconds - the CPU of ksmd and of
the contender's own processes over `idle` seconds (60 by default), in % of one core. Medians over the
repetitions; ratios against flat out per repetition, then the median. Every run holds the host lock
(tests/support/ksm_host.py) and puts every knob back.
"""

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time

import benchlib
from benchlib import median, ratio, say

from tests.support.ksm_host import ksm_host_guard
from tests.support.merge_workload import MergeableWorkload

PAGE = os.sysconf('SC_PAGE_SIZE')
CACHE = os.environ.get('SAMEPAGE_CACHE', '/var/cache/samepage-ksm')
KSMTUNED_DIR = os.path.join(CACHE, 'bench-ksmtuned')

# The kernel's values for every knob a contender does not set (as bench/merge_probe.py).
KERNEL_BASE = {'advisor_mode': 'none', 'pages_to_scan': 100, 'sleep_millisecs': 20, 'smart_scan': True,
               'use_zero_pages': False, 'max_page_sharing': 256}

CONTENDERS = ('kernel defaults', 'flat out', 'scan-time advisor', 'ksmtuned', 'ksmtuned dense', 'samepage tuner')
WORKLOADS = ('identical', 'paired', 'unique', 'churn', 'late arrival', 'crowd')
REFERENCE = 'flat out'


# --------------------------------------------------------------------------------------------------
# Processes and their CPU

def cpu_seconds(pid, children=False):
    """utime + stime (and with children=True the waited-for children's too) of pid, in seconds."""
    try:
        with open('/proc/%d/stat' % pid) as handle:
            fields = handle.read().rsplit(')', 1)[-1].split()
    except OSError:
        return 0.0
    ticks = int(fields[11]) + int(fields[12])
    if children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / float(os.sysconf('SC_CLK_TCK'))


def merging_pages(pids):
    total = 0
    for pid in pids:
        try:
            with open('/proc/%d/ksm_merging_pages' % pid) as handle:
                total += int(handle.read().strip() or 0)
        except (OSError, ValueError):
            pass
    return total


def stop_group(process, timeout=10):
    """End a contender started in a session of its own: SIGTERM to the group, SIGKILL if it lingers."""
    if process is None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


# --------------------------------------------------------------------------------------------------
# Contenders

class Static:
    """Fixed knobs and run=1: nothing adjusts them afterwards."""

    def __init__(self, name, knobs):
        self.name = name
        self.knobs = knobs

    def start(self, host):
        host.set(**dict(self.knobs, run=1))

    def own_cpu(self):
        return 0.0

    def stop(self):
        pass


def ksmtuned_script():
    """Debian's ksmtuned script, from its package (apt-get download; cached), as text."""
    script = os.path.join(KSMTUNED_DIR, 'root', 'usr', 'sbin', 'ksmtuned')
    if not os.path.exists(script):
        os.makedirs(KSMTUNED_DIR, exist_ok=True)
        subprocess.run(['apt-get', 'download', 'ksmtuned'], cwd=KSMTUNED_DIR, check=True,
                       stdout=subprocess.DEVNULL)
        package = [name for name in os.listdir(KSMTUNED_DIR) if name.endswith('.deb')][0]
        subprocess.run(['dpkg-deb', '-x', package, 'root'], cwd=KSMTUNED_DIR, check=True)
    with open(script) as handle:
        return handle.read()


class Ksmtuned:
    """Debian's ksmtuned, run as its unit runs it (it forks its loop and writes a pid file)."""

    def __init__(self, name, conf):
        self.name = name
        self.conf = conf
        self.process = None
        self.loop_pid = None
        self.work = None

    def start(self, host):
        self.work = tempfile.mkdtemp(prefix='bench-ksmtuned-')
        conf = os.path.join(self.work, 'ksmtuned.conf')
        with open(conf, 'w') as handle:
            handle.write(''.join('%s=%d\n' % item for item in sorted(self.conf.items())))
        # The script reads /etc/ksmtuned.conf; this copy reads the run's own file instead.
        script = os.path.join(self.work, 'ksmtuned')
        with open(script, 'w') as handle:
            handle.write(ksmtuned_script().replace('/etc/ksmtuned.conf', conf))
        pidfile = os.path.join(self.work, 'ksmtune.pid')
        self.process = subprocess.Popen(['bash', script], env=dict(os.environ, PIDFILE=pidfile),
                                        start_new_session=True)
        deadline = time.time() + 10
        while time.time() < deadline and not self.loop_pid:
            try:
                with open(pidfile) as handle:
                    self.loop_pid = int(handle.read().strip() or 0) or None
            except (OSError, ValueError):
                time.sleep(0.05)

    def own_cpu(self):
        return cpu_seconds(self.loop_pid, children=True) if self.loop_pid else 0.0

    def stop(self):
        # The forked loop stays in the session the script was started in: stop_group ends it too.
        stop_group(self.process)
        self.process = None
        if self.work:
            subprocess.run(['rm', '-rf', self.work], check=False)


class Tuner:
    """The collection's tuner daemon in the foreground, as its systemd unit runs it."""

    def __init__(self, name, config):
        self.name = name
        self.config = config
        self.process = None
        self.work = None

    def start(self, host):
        from ansible_collections.samepage.ksm.plugins.module_utils import _ksm_tuner, _program
        from ansible_collections.samepage.ksm.plugins.modules import ksm_tuner
        self.work = tempfile.mkdtemp(prefix='bench-tuner-')
        # The program as samepage.ksm.ksm_tuner installs it (entry script + package of the module_utils
        # copies), its configuration as the module renders it, run as the unit runs it (python -I).
        program_dir = os.path.join(self.work, 'program')
        for path, text in ksm_tuner.program_files(_program.read_sources(_ksm_tuner.SOURCES), program_dir).items():
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, 'w') as handle:
                handle.write(text)
        conf = os.path.join(self.work, 'tuner.conf')
        with open(conf, 'w') as handle:
            handle.write(_ksm_tuner.render(_ksm_tuner.validate(self.config)))
        with open(os.path.join(self.work, 'tuner.log'), 'w') as log:
            self.process = subprocess.Popen(
                [sys.executable, '-I', os.path.join(program_dir, _ksm_tuner.ENTRY), '--config', conf,
                 '--state', os.path.join(self.work, 'tuner.json')],
                start_new_session=True, stdout=log, stderr=subprocess.STDOUT)

    def own_cpu(self):
        return cpu_seconds(self.process.pid) if self.process else 0.0

    def stop(self):
        stop_group(self.process)
        self.process = None
        if self.work:
            subprocess.run(['rm', '-rf', self.work], check=False)


def contenders(state, names=CONTENDERS):
    """The contenders this kernel can run, in table order."""
    made = {
        'kernel defaults': lambda: Static('kernel defaults', {'pages_to_scan': 100, 'sleep_millisecs': 20}),
        'flat out': lambda: Static('flat out', {'pages_to_scan': 20000, 'sleep_millisecs': 0}),
        'scan-time advisor': lambda: Static('scan-time advisor', {'advisor_mode': 'scan-time'}),
        'ksmtuned': lambda: Ksmtuned('ksmtuned', benchlib.ksmtuned_defaults()),
        'ksmtuned dense': lambda: Ksmtuned('ksmtuned dense', benchlib.KSMTUNED_DENSE),
        'samepage tuner': lambda: Tuner('samepage tuner', benchlib.tuner_config()),
    }
    return [made[name]() for name in names if name != 'scan-time advisor' or 'advisor_mode' in state]


# --------------------------------------------------------------------------------------------------
# Workloads

class Crowd:
    """Many idle processes (a big host's process table), started once and kept for the run."""

    def __init__(self, count=5000):
        self.count = count
        self.processes = []

    def __enter__(self):
        for dummy in range(self.count):
            self.processes.append(subprocess.Popen(['sleep', '100000'], stdin=subprocess.DEVNULL,
                                                   stdout=subprocess.DEVNULL))
        return self

    def __exit__(self, *exc_info):
        for process in self.processes:
            process.kill()
        for process in self.processes:
            process.wait()
        self.processes = []


def workloads_for(name):
    """[(seconds after the contender's start, MergeableWorkload args)] of a workload."""
    return {
        'identical': [(0, {'mib': 512, 'pattern': 'same'})],
        'paired': [(0, {'mib': 256, 'pattern': 'paired'}), (0, {'mib': 256, 'pattern': 'paired'})],
        'unique': [(0, {'mib': 512, 'pattern': 'unique'})],
        'churn': [(0, {'mib': 512, 'pattern': 'same', 'churn': 2000})],
        'late arrival': [(0, {'mib': 256, 'pattern': 'same'}), (None, {'mib': 256, 'pattern': 'same'})],
        'crowd': [(0, {'mib': 512, 'pattern': 'same'})],
    }[name]


# --------------------------------------------------------------------------------------------------
# One run

class Clock:
    """Samples of (seconds, merged pages, ksmd CPU s, contender CPU s) from t0."""

    def __init__(self, ksmd, contender):
        self.ksmd = ksmd
        self.contender = contender
        self.t0 = time.time()
        self.ksmd0 = cpu_seconds(ksmd)
        self.own0 = contender.own_cpu()

    def sample(self, pids):
        return (round(time.time() - self.t0, 3), merging_pages(pids), cpu_seconds(self.ksmd) - self.ksmd0,
                self.contender.own_cpu() - self.own0)


def wait_merged(clock, pids, target, timeout, interval=0.1):
    """Sample until target pages merge (or a plateau without a target) or the timeout; the timeline."""
    timeline = [clock.sample(pids)]
    started = timeline[0][0]
    while timeline[-1][0] - started < timeout:
        time.sleep(interval)
        timeline.append(clock.sample(pids))
        if target and timeline[-1][1] >= 0.99 * target:
            break
    return timeline


def crossing(timeline, level, origin=0.0):
    """(seconds from origin, ksmd CPU s from origin) at the first sample with merged >= level."""
    base = [s for s in timeline if s[0] >= origin]
    cpu0 = base[0][2] if base else 0.0
    for seconds, merged, cpu, dummy in base:
        if merged >= level:
            return seconds - origin, cpu - cpu0
    return None, None


def idle_cost(clock, pids, seconds):
    """% of one core used by ksmd and by the contender over the next `seconds`, and pages merged then."""
    first = clock.sample(pids)
    time.sleep(seconds)
    last = clock.sample(pids)
    wall = last[0] - first[0]
    return 100.0 * (last[2] - first[2]) / wall, 100.0 * (last[3] - first[3]) / wall, last[1]


def run_one(host, contender, workload, timeout, settle, idle):
    """One contender on one workload; a dict of figures (None where a figure does not apply)."""
    ksm = host.ksm
    state = ksm.read_state()
    ksm.unmerge(state)                                  # nothing merged, ksmd stopped (run=2)
    host.set(**{k: v for k, v in KERNEL_BASE.items() if k in state})
    with contextlib.ExitStack() as stack:
        if workload == 'crowd':
            stack.enter_context(Crowd())
        started, late = [], []
        for delay, args in workloads_for(workload):
            if delay == 0:
                started.append(stack.enter_context(MergeableWorkload(**args)))
            else:
                late.append(args)
        pids = [w.pid for w in started]
        pages = sum(w.mib for w in started) * 1024 * 1024 // PAGE
        target = 0 if workload == 'unique' else (None if workload == 'churn' else pages)
        ksmd = benchlib.ksmd_pid()
        stack.callback(contender.stop)
        contender.start(host)
        clock = Clock(ksmd, contender)
        result = {'contender': contender.name, 'workload': workload, 'achievable_pages': target}
        # Nothing to reach (unique) or a moving target (churn): let the contender do its first full scans
        # for as long as a merge may take.
        timeline = wait_merged(clock, pids, target, timeout if target else min(timeout, 90))
        for pct in (50, 90):
            seconds, cpu = crossing(timeline, target * pct / 100.0) if target else (None, None)
            result['t%d_s' % pct] = seconds
            result['ksmd_cpu_to_%d_s' % pct] = cpu
        if late:
            # Settle (the contender idles), then the second process: everything counts from its start.
            time.sleep(settle)
            second = stack.enter_context(MergeableWorkload(**late[0]))
            origin = clock.sample(pids)[0]
            second_pages = second.mib * 1024 * 1024 // PAGE
            more = wait_merged(clock, [second.pid], second_pages, timeout)
            timeline += more
            result['late_noticed_s'] = next((s - origin for s, merged, dummy, dummy2 in more if merged), None)
            for pct in (50, 90):
                result['late_t%d_s' % pct] = crossing(more, second_pages * pct / 100.0, origin)[0]
            pids = pids + [second.pid]
        time.sleep(settle)
        result['idle_ksmd_pct'], result['idle_own_pct'], result['merged_pages_idle'] = idle_cost(clock, pids, idle)
        result['merged_pages'] = timeline[-1][1]
        result['timeline'] = timeline
        after = ksm.read_state()
        result['end_knobs'] = {k: after.get(k) for k in ('run', 'pages_to_scan', 'sleep_millisecs')}
        return result


# --------------------------------------------------------------------------------------------------
# The benchmark

def summarise(results, names, workloads):
    headers = ['workload', 'contender', 't50 s', 't90 s', 't90 / flat out', 'ksmd CPU to t90 s',
               'idle ksmd %', 'idle own %', 'idle total %', 'late noticed s', 'late t90 s', 'reached t90']
    rows = []
    for workload in workloads:
        mine = [r for r in results if r['workload'] == workload]
        for name in names:
            items = [r for r in mine if r['contender'] == name]
            if not items:
                continue
            ratios = []
            for item in items:
                reference = [r for r in mine if r['contender'] == REFERENCE and r['rep'] == item['rep']]
                key = 'late_t90_s' if workload == 'late arrival' else 't90_s'
                if reference and item.get(key) is not None:
                    ratios.append(ratio(item[key], reference[0].get(key)))
            totals = [r['idle_ksmd_pct'] + r['idle_own_pct'] for r in items]
            rows.append([workload, name, median(r.get('t50_s') for r in items), median(r.get('t90_s') for r in items),
                         median(ratios), median(r.get('ksmd_cpu_to_90_s') for r in items),
                         median(r['idle_ksmd_pct'] for r in items), median(r['idle_own_pct'] for r in items),
                         median(totals), median(r.get('late_noticed_s') for r in items),
                         median(r.get('late_t90_s') for r in items),
                         '%d/%d' % (sum(1 for r in items if r.get('t90_s') is not None), len(items))
                         if items[0]['achievable_pages'] else '-'])
    return headers, rows


def run_host(reps=3, timeout=120, settle=10, idle=60, only=None, workloads=None):
    info = benchlib.machine()
    with ksm_host_guard() as host:
        state = host.state()
    names = [c.name for c in contenders(state, [n for n in CONTENDERS if not only or n in only or n == REFERENCE])]
    chosen = [w for w in WORKLOADS if not workloads or w in workloads]
    say('controllers end to end on this machine: %d contenders x %d workloads x %d repetitions; timeout %d s, '
        'settle %d s, idle %d s' % (len(names), len(chosen), reps, timeout, settle, idle))
    results = []
    for rep in range(reps):
        for workload in chosen:
            shift = rep % len(names)
            for contender in contenders(state, names[shift:] + names[:shift]):
                say('rep %d: %s on %s' % (rep + 1, contender.name, workload))
                with ksm_host_guard() as host:       # one run per lock hold
                    result = run_one(host, contender, workload, timeout, settle, idle)
                result['rep'] = rep + 1
                say('  t90 %s s, idle ksmd %.2f %% + own %.2f %%%s' % (
                    benchlib.fmt(result.get('t90_s')), result['idle_ksmd_pct'], result['idle_own_pct'],
                    '' if workload != 'late arrival' else ', late noticed %s s, late t90 %s s' % (
                        benchlib.fmt(result.get('late_noticed_s')), benchlib.fmt(result.get('late_t90_s')))))
                results.append(result)
    headers, rows = summarise(results, names, chosen)
    title = 'KSM controllers end to end on this machine (every contender running for real)'
    notes = ['median of %d repetitions; t90 / flat out per repetition, then the median (late arrival: late t90)' % reps,
             'idle: ksmd and the contender\'s own processes, %% of one core over %d s, %d s after merging ended '
             '(or the timeout of %d s)' % (idle, settle, timeout),
             'unique and churn have no t90: what counts is what they cost once the contender has scanned them',
             'other load while measuring: %d QEMU guests / test runs' % len(benchlib.busy_neighbours())]
    return benchlib.report('controllers_host', title, info, headers, rows,
                           {'results': results, 'timeout': timeout, 'settle': settle, 'idle': idle}, notes)
