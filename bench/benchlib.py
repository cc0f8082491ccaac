# -*- coding: utf-8 -*-
# Copyright: (c) 2026, samepage.ksm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What every benchmark shares: the machine, medians and ratios, tables, result files, plots, profiles.

Benchmarks run inside the bench environment (bench/run.py makes it), so ansible-core, PyYAML and
matplotlib are importable and `ansible`/`ansible-playbook` sit next to sys.executable.
"""

from __future__ import absolute_import, division, print_function

import csv
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
RESULTS = os.path.join(HERE, 'results')
INVENTORY = os.path.join(REPO, 'inventory', 'example')
PROFILES = ('dense', 'balanced', 'secure')

# Make the collection importable (tests/conftest.py does the same for pytest) and tests/support too.
sys.path.insert(0, REPO)
from tests.support.ansible_cli import collections_path  # noqa: E402

# ansible_collections/samepage/ksm linked to this clone (under tests/output, as the test suites do).
os.environ['ANSIBLE_COLLECTIONS_PATH'] = collections_path(os.environ.get('ANSIBLE_COLLECTIONS_PATH'))
COLLECTIONS_ROOT = os.environ['ANSIBLE_COLLECTIONS_PATH'].split(os.pathsep)[0]
if COLLECTIONS_ROOT not in sys.path:
    sys.path.insert(0, COLLECTIONS_ROOT)

from ansible_collections.samepage.ksm.plugins.module_utils import _ksm  # noqa: E402

# The kernel's compiled-in values (mm/ksm.c: ksm_thread_pages_to_scan = 100,
# ksm_thread_sleep_millisecs = 20; advisor off). "Kernel defaults" in every benchmark.
KERNEL_DEFAULTS = {'pages_to_scan': 100, 'sleep_millisecs': 20}

# ksmtuned's script defaults (ksmtuned.sh: KSM_NPAGES_BOOST=300, KSM_NPAGES_MAX=1250, KSM_SLEEP_MSEC=10,
# sleep scaled as KSM_SLEEP_MSEC * 16 GiB / MemTotal, floored at 10 ms).
KSMTUNED = {'boost': 300, 'npages_max': 1250, 'sleep_msec': 10}


def ksmtuned_sleep(mem_total_kib):
    return max(10, KSMTUNED['sleep_msec'] * 16 * 1024 * 1024 // int(mem_total_kib))


def say(msg):
    sys.stderr.write('bench: %s\n' % msg)
    sys.stderr.flush()


# --------------------------------------------------------------------------------------------------
# The machine

def _read(path, default=''):
    try:
        with open(path) as handle:
            return handle.read()
    except (IOError, OSError):
        return default


def machine():
    """Description of this machine, stored with every result."""
    cpu = ''
    for line in _read('/proc/cpuinfo').splitlines():
        if line.startswith('model name'):
            cpu = line.split(':', 1)[1].strip()
            break
    mem_kib = 0
    for line in _read('/proc/meminfo').splitlines():
        if line.startswith('MemTotal:'):
            mem_kib = int(line.split()[1])
    os_name = ''
    for line in _read('/etc/os-release').splitlines():
        if line.startswith('PRETTY_NAME='):
            os_name = line.split('=', 1)[1].strip('"')
    try:
        ansible_version = subprocess.run(
            [os.path.join(os.path.dirname(sys.executable), 'ansible'), '--version'],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, universal_newlines=True, check=False).stdout.splitlines()[0]
    except (OSError, IndexError):
        ansible_version = 'ansible not found'
    return {
        'hostname': platform.node(),
        'cpu_model': cpu,
        'nproc': os.cpu_count(),
        'mem_gib': round(mem_kib / 1024.0 / 1024.0, 1),
        'kernel': platform.release(),
        'os': os_name,
        'python': platform.python_version(),
        'ansible': ansible_version,
        'hz_clock_ticks': os.sysconf('SC_CLK_TCK'),
        'load_at_start': [round(x, 2) for x in os.getloadavg()],
        'date': datetime.datetime.now().strftime('%Y-%m-%d %H:%M'),
    }


def machine_line(info):
    return '%s: %s, %d CPUs, %.0f GiB, kernel %s, %s, %s, load %s' % (
        info['hostname'], info['cpu_model'], info['nproc'], info['mem_gib'], info['kernel'], info['os'],
        info['ansible'], '/'.join(str(x) for x in info['load_at_start']))


def busy_neighbours():
    """Other test runs and QEMU guests on this machine (they make numbers noisy): list of command lines."""
    found = []
    me = os.getpid()
    for entry in os.listdir('/proc'):
        if not entry.isdigit() or int(entry) == me:
            continue
        args = _read('/proc/%s/cmdline' % entry).split('\0')
        if not args or not args[0]:
            continue
        text = ' '.join(a for a in args if a)
        name = os.path.basename(args[0])
        if name.startswith('qemu-system') or 'pytest' in text or 'ansible-test' in text:
            found.append('%s %s' % (entry, text[:160]))
    return found


# --------------------------------------------------------------------------------------------------
# Statistics

def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def fmt(value, digits=2, unit=''):
    if value is None:
        return '-'
    if isinstance(value, float):
        text = ('%.' + str(digits) + 'f') % value
    else:
        text = str(value)
    return text + unit


# --------------------------------------------------------------------------------------------------
# Output

def table(headers, rows):
    """Plain-text table."""
    cells = [[str(h) for h in headers]] + [[fmt(c) if not isinstance(c, str) else c for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    for index, row in enumerate(cells):
        lines.append('  '.join(cell.rjust(widths[i]) if i else cell.ljust(widths[i]) for i, cell in enumerate(row)))
        if index == 0:
            lines.append('  '.join('-' * w for w in widths))
    return '\n'.join(lines)


def save(name, data, headers=None, rows=None):
    """bench/results/<name>.json (everything) and, with rows, <name>.csv (the summary table)."""
    os.makedirs(RESULTS, exist_ok=True)
    path = os.path.join(RESULTS, name + '.json')
    with open(path + '.tmp', 'w') as handle:
        json.dump(data, handle, indent=1, sort_keys=True, default=str)
        handle.write('\n')
    os.rename(path + '.tmp', path)
    written = [path]
    if headers and rows is not None:
        csv_path = os.path.join(RESULTS, name + '.csv')
        with open(csv_path, 'w', newline='') as handle:
            writer = csv.writer(handle, lineterminator='\n')
            writer.writerow(headers)
            for row in rows:
                writer.writerow(['' if c is None else (round(c, 4) if isinstance(c, float) else c) for c in row])
        written.append(csv_path)
    return written


def pyplot():
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    return plt


def plot_path(name):
    os.makedirs(RESULTS, exist_ok=True)
    return os.path.join(RESULTS, name + '.png')


def report(name, title, info, headers, rows, data, notes=()):
    """Print the table (stdout), save JSON + CSV; returns the paths written."""
    print()
    print(title)
    print('=' * len(title))
    print(machine_line(info))
    print(table(headers, rows))
    for note in notes:
        print('  ' + note)
    data = dict(data, machine=info, title=title, headers=headers, rows=rows, notes=list(notes))
    paths = save(name, data, headers, rows)
    print('saved: %s' % ', '.join(os.path.relpath(p, REPO) for p in paths))
    return paths


# --------------------------------------------------------------------------------------------------
# Profiles: the group_vars of inventory/example, read where they are (never a copy)

def _load_yaml(path):
    import yaml
    if not os.path.exists(path):
        return {}
    with open(path) as handle:
        return yaml.safe_load(handle) or {}


def profile_vars(group, inventory=INVENTORY):
    """Variables a host of group gets: group_vars/kvm_hosts.yml, then group_vars/<group>.yml."""
    merged = {}
    for name in ('all', 'kvm_hosts', group):
        for candidate in (os.path.join(inventory, 'group_vars', name + '.yml'),
                          os.path.join(inventory, 'group_vars', name, 'main.yml')):
            merged.update(_load_yaml(candidate))
    return merged


def profile_knobs(group, inventory=INVENTORY, nodes=None):
    """The /sys/kernel/mm/ksm values a profile asks for, as {knob: value} for _ksm.

    Understands both spellings the collection uses: site.yml's ksm_<knob> variables (ksm_run,
    ksm_pages_to_scan, ...) and the ksm role's ksm_enabled / ksm_settings dictionary.
    """
    values = profile_vars(group, inventory)
    knobs = {}
    for name in _ksm.WRITE_ORDER:
        if 'ksm_' + name in values:
            knobs[name] = values['ksm_' + name]
    for name, value in (values.get('ksm_settings') or {}).items():
        knobs[name] = value
    if 'ksm_enabled' in values and 'run' not in knobs:
        knobs['run'] = bool(values['ksm_enabled'])
    if 'merge_across_nodes' in knobs and isinstance(knobs['merge_across_nodes'], str):
        knobs['merge_across_nodes'] = _ksm.merge_across_nodes_for(
            knobs['merge_across_nodes'], nodes if nodes is not None else _ksm.numa_nodes_with_memory())
    if 'run' in knobs:
        knobs['run'] = 1 if knobs['run'] in (True, 1, '1', 'true', 'yes') else 0
    for name in ('use_zero_pages', 'smart_scan'):
        if name in knobs:
            knobs[name] = bool(knobs[name])
    return knobs


# --------------------------------------------------------------------------------------------------
# ksmd

def ksmd_pid(proc='/proc'):
    for entry in os.listdir(proc):
        if entry.isdigit() and _read(os.path.join(proc, entry, 'comm')).strip() == 'ksmd':
            return int(entry)
    return None


def cpu_seconds(pid):
    """utime + stime of a process (a kernel thread too), in seconds."""
    fields = _read('/proc/%d/stat' % pid).rsplit(')', 1)[-1].split()
    return (int(fields[11]) + int(fields[12])) / float(os.sysconf('SC_CLK_TCK'))


def venv_python():
    return sys.executable
