# -*- coding: utf-8 -*-
# Copyright: (c) 2026, samepage.ksm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Unmerge overhead: samepage.ksm.ksm_unmerge against a bare write of 2 to run, same merged workload.

Per repetition and variant (order rotated), under the host lock: a fresh duplicate workload is merged
(dense profile speed) until all its pages are shared, then unmerged by
  - samepage.ksm.ksm_unmerge (ksmd=stopped) through the real `ansible` command,
  - an ansible.builtin.shell task `echo 2 > /sys/kernel/mm/ksm/run` through the same command,
  - a bare write of 2 to /sys/kernel/mm/ksm/run from this process (the kernel's own time).
Reported: wall time, the kernel time of the unmerge itself (ksm_unmerge's `duration`; the bare write's
time), pages unmerged, and ratios against the shell task and the bare write.
"""

import os
import time

import benchlib
import merge_probe
from benchlib import median, ratio, say
from tests.support.ansible_cli import run_module
from tests.support.merge_workload import MergeableWorkload

VARIANTS = ('samepage.ksm.ksm_unmerge', 'shell: echo 2 > run', 'bare write of 2')
RUN = os.path.join(benchlib._ksm.KSM_DIR, 'run')


def _merge(host, workload, timeout):
    host.ksm.unmerge(host.ksm.read_state())
    host.set(pages_to_scan=5000, sleep_millisecs=20, run=1)
    target = workload.mib * 1024 * 1024 // merge_probe.PAGE
    deadline = time.time() + timeout
    while merge_probe.merging_pages([workload.pid]) < 0.99 * target:
        if time.time() > deadline:
            raise RuntimeError('the workload did not merge within %d s (%d of %d pages)'
                               % (timeout, merge_probe.merging_pages([workload.pid]), target))
        time.sleep(0.1)
    host.set(run=0)        # nothing merges or unmerges while the variant runs, except the variant
    return host.ksm.read_state()


def _unmerge(variant):
    started = time.time()
    kernel = None
    if variant == VARIANTS[0]:
        result = run_module('samepage.ksm.ksm_unmerge', {'ksmd': 'stopped'})
        if result['failed']:
            raise RuntimeError('ksm_unmerge failed: %s' % result.get('msg'))
        kernel = result.get('duration')
    elif variant == VARIANTS[1]:
        result = run_module('ansible.builtin.shell', {'cmd': 'echo 2 > %s' % RUN})
        if result['failed']:
            raise RuntimeError('shell echo 2 failed: %s' % result.get('msg'))
    else:
        with open(RUN, 'w') as handle:
            handle.write('2')
        kernel = time.time() - started
    return time.time() - started, kernel


def run_host(reps=3, mib=128, merge_timeout=300):
    from tests.support.ksm_host import ksm_host_guard
    info = benchlib.machine()
    neighbours = benchlib.busy_neighbours()
    runs = {v: [] for v in VARIANTS}
    variants = list(VARIANTS)
    for rep in range(reps):
        order = variants[rep % len(variants):] + variants[:rep % len(variants)]
        for variant in order:
            with ksm_host_guard() as host:
                with MergeableWorkload(mib=mib) as workload:
                    before = _merge(host, workload, merge_timeout)
                    wall, kernel = _unmerge(variant)
                    after = host.ksm.read_state()
                    left = merge_probe.merging_pages([workload.pid])
            item = {'wall_s': wall, 'kernel_s': kernel, 'pages_sharing_before': before.get('pages_sharing'),
                    'pages_shared_before': before.get('pages_shared'), 'workload_pages_left': left,
                    'sharing_left': benchlib._ksm.sharing_left(after), 'run_after': after.get('run')}
            say('rep %d %-26s wall %.3f s, kernel %s s, pages_sharing before %s, left %s'
                % (rep + 1, variant, wall, None if kernel is None else round(kernel, 3),
                   item['pages_sharing_before'], item['sharing_left'] or 0))
            runs[variant].append(item)
    headers = ['variant', 'wall s', 'unmerge in kernel s', 'wall / shell task', 'wall / bare write',
               'pages_sharing before', 'left shared', 'reps']
    rows = []
    for variant in VARIANTS:
        items = runs[variant]
        pairs_shell = [ratio(a['wall_s'], b['wall_s']) for a, b in zip(items, runs[VARIANTS[1]])]
        pairs_bare = [ratio(a['wall_s'], b['wall_s']) for a, b in zip(items, runs[VARIANTS[2]])]
        rows.append([variant, median(i['wall_s'] for i in items), median(i['kernel_s'] for i in items),
                     median(pairs_shell), median(pairs_bare), median(i['pages_sharing_before'] for i in items),
                     max(sum(v for dummy, v in i['sharing_left']) for i in items), len(items)])
    title = 'Unmerge overhead on this machine (%d MiB merged workload)' % mib
    notes = ['median of %d repetitions; ratios are medians of per-repetition ratios' % reps,
             'pages_sharing before includes every merged page on the machine (other QEMU guests too)',
             'other load while measuring: %d QEMU guests / test runs' % len(neighbours)]
    name = 'unmerge_host'
    paths = benchlib.report(name, title, info, headers, rows, {'runs': runs, 'mib': mib, 'neighbours': neighbours},
                            notes)
    plt = benchlib.pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.6))
    for index, variant in enumerate(VARIANTS):
        values = [i['wall_s'] for i in runs[variant]]
        mid = median(values)
        ax.barh(index, mid, color='C%d' % index)
        ax.errorbar(mid, index, xerr=[[mid - min(values)], [max(values) - mid]], color='black', capsize=4)
        kernel = median(i['kernel_s'] for i in runs[variant])
        ax.text(mid, index, '  %.2f s%s' % (mid, '' if kernel is None else ' (kernel %.2f s)' % kernel),
                va='center', fontsize=8)
    ax.set_yticks(range(len(VARIANTS)))
    ax.set_yticklabels(VARIANTS)
    ax.invert_yaxis()
    ax.set_xlabel('wall time to unmerge, s (median, min-max)')
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    path = benchlib.plot_path(name)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print('plot: %s' % os.path.relpath(path, benchlib.REPO))
    return paths
