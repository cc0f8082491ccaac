# -*- coding: utf-8 -*-
# Copyright: (c) 2026, samepage.ksm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What every benchmark shares: the machine, medians and ratios, tables, result files, plots, profiles.

Benchmarks run inside the bench environment (bench/run.py makes it), so ansible-core, PyYAML and
matplotlib are importable and `ansible`/`ansible-playbook` sit next to sys.executable.
"""

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
from ansible_collections.samepage.ksm.plugins.module_utils import _ksm_tuner  # noqa: E402

# The kernel's compiled-in values (mm/ksm.c: ksm_thread_pages_to_scan = 100,
# ksm_thread_sleep_millisecs = 20; advisor off). "Kernel defaults" in every benchmark.
KERNEL_DEFAULTS = {'pages_to_scan': 100, 'sleep_millisecs': 20}


def say(msg):
    sys.stderr.write('bench: %s\n' % msg)
    sys.stderr.flush()


# --------------------------------------------------------------------------------------------------
# The machine

def _read(path, default=''):
    try:
        with open(path) as handle:
            return handle.read()
    except OSError:
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
# Profiles: what site.yml's roles do per group of inventory/example, read from the roles' defaults and
# the group_vars where they are (never a copy of the values)

ROLES = os.path.join(REPO, 'roles')


def _load_yaml(path):
    import yaml
    if not os.path.exists(path):
        return {}
    with open(path) as handle:
        return yaml.safe_load(handle) or {}


def _template(value, variables):
    """Render one role default that is a Jinja expression (ksmtuned_enabled) with Ansible's own templar."""
    from ansible.parsing.dataloader import DataLoader
    from ansible.template import Templar
    try:
        from ansible.template import trust_as_template
        value = trust_as_template(value)
    except ImportError:  # ansible-core before 2.19 templates every string
        pass
    return Templar(loader=DataLoader(), variables=variables).template(value)


def profile_vars(group, inventory=INVENTORY):
    """Variables the roles ksm and ksmtuned see on a host of group, as site.yml applies them.

    roles/ksm and roles/ksmtuned defaults/main.yml, then group_vars all, kvm_hosts and the group;
    role defaults that are expressions (ksmtuned_enabled) are rendered with the merged variables.
    """
    merged = {}
    for role in ('ksm', 'ksmtuned'):
        merged.update(_load_yaml(os.path.join(ROLES, role, 'defaults', 'main.yml')))
    for name in ('all', 'kvm_hosts', group):
        for candidate in (os.path.join(inventory, 'group_vars', name + '.yml'),
                          os.path.join(inventory, 'group_vars', name, 'main.yml')):
            merged.update(_load_yaml(candidate))
    for name, value in list(merged.items()):
        if isinstance(value, str) and '{{' in value:
            merged[name] = _template(value, merged)
    return merged


def _as_bool(value):
    if isinstance(value, str):
        return value.strip().lower() in ('1', 'true', 'yes', 'on', 'y', 't')
    return bool(value)


def profile(group, inventory=INVENTORY, nodes=None):
    """What the roles ksm and ksmtuned make of a host of group (see roles/*/meta/argument_specs.yml).

    Returns a dict:
      enabled, tuner       ksm_enabled, ksm_tuner
      sysfs                the options the ksm role passes to samepage.ksm.ksm_sysfs (KSM on: ksm_settings,
                           merge_across_nodes policy, run=true only with ksm_tuner=none; KSM off: run=false)
      knobs                the /sys/kernel/mm/ksm values that call leaves, typed as _ksm reads them
                           (merge_across_nodes resolved for nodes, default: this machine's NUMA nodes)
      unmerge              KSM off and ksm_unmerge_on_disable: every page unmerged (run=2 first)
      persist              ksm_persist: the knobs are kept across reboots (a boot-time unit)
      ksmtuned_enabled     ksmtuned started and enabled (else stopped and disabled)
      ksmtuned_conf        {KEY: value} of /etc/ksmtuned.conf (keys from roles/ksmtuned/vars/main.yml)
      ksmtuned_debug, ksmtuned_logfile, ksmtuned_libvirt_hook
      tuner_settings       ksm_tuner=samepage: the samepage tuner's settings (ksm_tuner_settings; {} = its
                           defaults); None for the other tuners
    """
    values = profile_vars(group, inventory)
    enabled = _as_bool(values['ksm_enabled'])
    fixed = values['ksm_tuner'] == 'none'
    settings = {k: v for k, v in (values.get('ksm_settings') or {}).items() if v is not None}
    if enabled:
        sysfs = dict(settings, merge_across_nodes=values['ksm_merge_across_nodes'])
        if fixed:
            sysfs['run'] = True
    else:
        sysfs = {'run': False}
    knobs = {}
    for name, value in sysfs.items():
        if name == 'run':
            knobs[name] = 1 if value else 0
        elif name == 'merge_across_nodes':
            knobs[name] = _ksm.merge_across_nodes_for(
                value, nodes if nodes is not None else _ksm.numa_nodes_with_memory())
        elif name in ('use_zero_pages', 'smart_scan'):
            knobs[name] = _as_bool(value)
        else:
            knobs[name] = value
    keys = _load_yaml(os.path.join(ROLES, 'ksmtuned', 'vars', 'main.yml'))['__ksmtuned_integers']
    return {
        'group': group,
        'enabled': enabled,
        'tuner': values['ksm_tuner'],
        'sysfs': sysfs,
        'knobs': knobs,
        'unmerge': not enabled and _as_bool(values['ksm_unmerge_on_disable']),
        'persist': _as_bool(values['ksm_persist']),
        'ksmtuned_enabled': _as_bool(values['ksmtuned_enabled']),
        'ksmtuned_conf': {rule['key']: int(values[rule['var']]) for rule in keys.values()},
        'ksmtuned_debug': _as_bool(values['ksmtuned_debug']),
        'ksmtuned_logfile': values['ksmtuned_logfile'] or '',
        'ksmtuned_libvirt_hook': _as_bool(values['ksmtuned_libvirt_hook']),
        'tuner_settings': tuner_settings(values) if values['ksm_tuner'] == 'samepage' else None,
    }


def tuner_settings(values):
    """ksm_tuner_settings as the ksm role passes them to ksm_tuner (null values left out), {key: value}."""
    return dict((k, v) for k, v in (values.get('ksm_tuner_settings') or {}).items() if v is not None)


def profile_knobs(group, inventory=INVENTORY, nodes=None):
    """The /sys/kernel/mm/ksm values the ksm role sets for group, {knob: value} (see profile())."""
    return profile(group, inventory, nodes)['knobs']


def ksmtuned_defaults():
    """ksmtuned.conf of the ksmtuned role's defaults (ksmtuned's own), {KEY: value}."""
    values = _load_yaml(os.path.join(ROLES, 'ksmtuned', 'defaults', 'main.yml'))
    keys = _load_yaml(os.path.join(ROLES, 'ksmtuned', 'vars', 'main.yml'))['__ksmtuned_integers']
    return {rule['key']: int(values[rule['var']]) for rule in keys.values()}


def ksmtuned_sleep(mem_total_kib, conf=None):
    """sleep_millisecs ksmtuned writes: KSM_SLEEP_MSEC * 16 GiB / MemTotal, at least 10 (ksmtuned.sh)."""
    conf = conf or ksmtuned_defaults()
    return max(10, conf['KSM_SLEEP_MSEC'] * 16 * 1024 * 1024 // int(mem_total_kib))


def ksmtuned_ramp(conf=None):
    """pages_to_scan ksmtuned writes at each adjustment while free memory is below its threshold.

    ksmtuned.sh starts from npages=0 and adds KSM_NPAGES_BOOST per adjustment, clamped to
    [KSM_NPAGES_MIN, KSM_NPAGES_MAX]; the list ends at the first value it keeps (the peak).
    """
    conf = conf or ksmtuned_defaults()
    npages, steps = 0, []
    while True:
        npages = min(max(npages + conf['KSM_NPAGES_BOOST'], conf['KSM_NPAGES_MIN']), conf['KSM_NPAGES_MAX'])
        if steps and npages == steps[-1]:
            return steps
        steps.append(npages)


def merge_knobs(group, mem_total_kib, inventory=INVENTORY, nodes=None):
    """Fixed knobs that stand for a profile in the merge benchmarks.

    The ksm role's knobs; where ksmtuned drives the scan rate, ksmtuned's peak under memory pressure
    (KSM_NPAGES_MAX pages, its sleep for this MemTotal) with run=1, since ksmtuned itself is not run.
    """
    prof = profile(group, inventory, nodes)
    knobs = dict(prof['knobs'])
    if prof['enabled'] and prof['tuner'] == 'samepage':
        # The samepage tuner's fast rate: what it scans at while merging pays (the merge benchmarks
        # measure the time to merge; bench_controllers runs the tuner itself, idle phase included).
        config = _ksm_tuner_config(prof['tuner_settings'])
        knobs['pages_to_scan'] = config['fast_pages_to_scan']
        knobs['sleep_millisecs'] = config['fast_sleep_millisecs']
        knobs['run'] = 1
    elif prof['enabled'] and prof['ksmtuned_enabled']:
        knobs['pages_to_scan'] = ksmtuned_ramp(prof['ksmtuned_conf'])[-1]
        knobs['sleep_millisecs'] = ksmtuned_sleep(mem_total_kib, prof['ksmtuned_conf'])
        knobs['run'] = 1
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


def _ksm_tuner_config(settings):
    """The settings the daemon runs with: its defaults updated with settings."""
    return _ksm_tuner.effective(settings or {})


def tuner_config(group='balanced', inventory=INVENTORY):
    """The samepage tuner's settings of a profile, as the ksm role passes them (ksm_tuner_settings, the
    keys given; {} = the daemon's defaults). A profile that does not use the tuner gets {}."""
    return profile(group, inventory)['tuner_settings'] or {}


# ksmtuned forced to scan hard, as the dense profile had it before it moved to the samepage tuner
# (threshold = all of memory, so ksmtuned never stops ksmd; 256 to 3000 pages, +1000 every 20 s): the
# benchmark keeps it as a contender ("ksmtuned dense") to compare the tuner with.
KSMTUNED_DENSE = {'KSM_MONITOR_INTERVAL': 20, 'KSM_SLEEP_MSEC': 10, 'KSM_NPAGES_BOOST': 1000, 'KSM_NPAGES_DECAY': -50,
                  'KSM_NPAGES_MIN': 256, 'KSM_NPAGES_MAX': 3000, 'KSM_THRES_COEF': 100, 'KSM_THRES_CONST': 2048}
