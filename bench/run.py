# -*- coding: utf-8 -*-
# Copyright: (c) 2026, samepage.ksm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Run the samepage.ksm benchmarks (`make bench`, or `python3 bench/run.py [NAME ...]`).

Names: converge-host merge-host unmerge-host controllers-host (this machine's kernel, under the host lock),
converge-lab merge-guest merge-two-guests (QEMU lab guests started and stopped here);
groups: host, lab, all (default). Each prints a table and writes bench/results/<name>.json, .csv, .png.

The first run builds the benchmarks' environment (ansible-core as in tests/requirements, matplotlib)
in $SAMEPAGE_CACHE/bench-venv (default /var/cache/samepage-ksm/bench-venv) and re-runs itself in it.
Never part of `make test`; nothing here asserts a timing.
"""

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
CACHE = os.environ.get('SAMEPAGE_CACHE', '/var/cache/samepage-ksm')
VENV = os.environ.get('SAMEPAGE_BENCH_VENV') or os.path.join(CACHE, 'bench-venv')
REQUIREMENTS = os.path.join(HERE, 'requirements.txt')
CONTROLLER_LOCK = os.path.join(REPO, 'tests', 'requirements', 'controller-2.19.txt')

HOST = ('converge-host', 'merge-host', 'unmerge-host', 'controllers-host')
LAB = ('converge-lab', 'merge-guest', 'merge-two-guests')
GROUPS = {'host': HOST, 'lab': LAB, 'all': HOST + LAB}


def _key(python):
    digest = hashlib.sha256()
    for path in (REQUIREMENTS, CONTROLLER_LOCK):
        with open(path, 'rb') as handle:
            digest.update(handle.read())
    digest.update(subprocess.check_output([python, '-c', 'import sys; print(sys.version)']))
    return digest.hexdigest()[:16]


def _python():
    """The controller Python of the test suites (3.11), as tools/ci.sh finds it, else this one."""
    for candidate in (os.environ.get('SAMEPAGE_BENCH_PYTHON'), os.path.expanduser('~/.pyenv/versions/3.11.7/bin/python3'),
                      shutil.which('python3.11'), sys.executable):
        if candidate and os.path.exists(candidate):
            return candidate
    return sys.executable


def ensure_venv():
    """Build (or reuse) the bench environment; returns its python."""
    base = _python()
    key = _key(base)
    marker = os.path.join(VENV, '.samepage-bench-key')
    python = os.path.join(VENV, 'bin', 'python')
    try:
        with open(marker) as handle:
            if handle.read().strip() == key and os.path.exists(python):
                return python
    except OSError:
        pass
    sys.stderr.write('bench: building the benchmark environment in %s (ansible-core, matplotlib)\n' % VENV)
    shutil.rmtree(VENV, ignore_errors=True)
    subprocess.check_call([base, '-m', 'venv', VENV])
    subprocess.check_call([python, '-m', 'pip', 'install', '-q', '--disable-pip-version-check', '-r', REQUIREMENTS],
                          cwd=HERE)
    with open(marker, 'w') as handle:
        handle.write(key + '\n')
    return python


def in_venv():
    return os.path.realpath(sys.prefix) == os.path.realpath(VENV)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n', maxsplit=1)[0])
    parser.add_argument('names', nargs='*', default=['all'], help='benchmarks or groups (host, lab, all)')
    parser.add_argument('--reps', type=int, default=int(os.environ.get('BENCH_REPS', '3')),
                        help='repetitions per measurement (default 3; BENCH_REPS)')
    parser.add_argument('--mib', type=int, default=int(os.environ.get('BENCH_MIB', '128')),
                        help='size of the duplicate workload in MiB (default 128; BENCH_MIB)')
    parser.add_argument('--timeout', type=int, default=int(os.environ.get('BENCH_TIMEOUT', '120')),
                        help='seconds one setting may take to merge on this machine (default 120; guests get '
                             '1.5 times as long)')
    parser.add_argument('--idle', type=int, default=None,
                        help='seconds of idle ksmd CPU measured once merged (default 10; controllers-host 60)')
    parser.add_argument('--contenders', help='controllers-host: only these contenders (comma-separated names as '
                        'in its table; flat out always runs, as the reference)')
    parser.add_argument('--workloads', help='controllers-host: only these workloads (comma-separated)')
    parser.add_argument('--settings', help='merge benchmarks: only these settings (comma-separated names as in '
                        'the tables; kernel defaults always run, as the baseline)')
    parser.add_argument('--group', default='dense', help='inventory group whose profile the converge runs apply')
    options = parser.parse_args(argv)
    names = []
    for name in options.names:
        for item in GROUPS.get(name, (name,)):
            if item not in GROUPS['all']:
                parser.error('unknown benchmark %r (known: %s; groups: %s)'
                             % (item, ', '.join(GROUPS['all']), ', '.join(GROUPS)))
            if item not in names:
                names.append(item)

    if not in_venv():
        python = ensure_venv()
        os.execv(python, [python, os.path.abspath(__file__)] + list(argv if argv is not None else sys.argv[1:]))

    sys.path.insert(0, HERE)
    import benchlib
    if os.geteuid() != 0:
        sys.exit('bench: run as root (the benchmarks write /sys/kernel/mm/ksm and start QEMU guests)')
    neighbours = benchlib.busy_neighbours()
    if neighbours:
        benchlib.say('note: %d other QEMU guests / test runs are running; numbers will be noisier:\n  %s'
                     % (len(neighbours), '\n  '.join(neighbours)))
    import bench_converge
    import bench_merge
    import bench_unmerge
    import bench_controllers
    o = options
    only = [s.strip() for s in o.settings.split(',') if s.strip()] if o.settings else None
    idle = 10 if o.idle is None else o.idle

    def listed(text):
        return [item.strip() for item in text.split(',') if item.strip()] if text else None
    jobs = {
        'converge-host': lambda: bench_converge.run_host(reps=o.reps, group=o.group),
        'merge-host': lambda: bench_merge.run_host(reps=o.reps, mib=o.mib, timeout=o.timeout, idle_seconds=idle,
                                                   only=only),
        'controllers-host': lambda: bench_controllers.run_host(reps=o.reps, timeout=o.timeout,
                                                               idle=60 if o.idle is None else o.idle,
                                                               only=listed(o.contenders), workloads=listed(o.workloads)),
        'unmerge-host': lambda: bench_unmerge.run_host(reps=o.reps, mib=o.mib),
        'converge-lab': lambda: bench_converge.run_lab(reps=o.reps, group=o.group),
        'merge-guest': lambda: bench_merge.run_guest(reps=o.reps, mib=o.mib, timeout=int(o.timeout * 1.5),
                                                     idle_seconds=idle, only=only),
        'merge-two-guests': lambda: bench_merge.run_two_guests(reps=max(1, o.reps - 1), timeout=int(o.timeout * 1.5),
                                                               idle_seconds=idle, only=only),
    }
    failed = []
    for name in names:
        started = time.time()
        benchlib.say('=== %s' % name)
        try:
            jobs[name]()
        except Exception:   # one failing benchmark does not stop the others; it is reported below
            traceback.print_exc()
            failed.append(name)
        benchlib.say('=== %s: %s in %.0f s' % (name, 'FAILED' if name in failed else 'done', time.time() - started))
    if failed:
        benchlib.say('failed: %s' % ', '.join(failed))
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
