# -*- coding: utf-8 -*-
# Copyright: (c) 2026, samepage.ksm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""KSM metrics in the Prometheus text exposition format, for node_exporter's textfile collector.

Three layers, each usable on its own:

- families(snapshot) -> [Family]: the metrics of one _ksm_snapshot reading (what ksm_info returns), named
  after Prometheus' conventions: the prefix samepage_ksm_, base units (bytes, seconds, ratios), `_total` for
  counters; render(families) -> the exposition text (HELP and TYPE lines, label values and HELP escaped);
- write_atomically(path, text): a temporary file in the same directory, fsync, mode 0644, rename - a reader
  (node_exporter) sees the old file or the new one, never half of one;
- the program samepage-ksm-metrics (main()): one snapshot, one file, exit; run by a systemd timer that
  samepage.ksm.ksm_metrics installs (render_service(), render_timer()).

Private to samepage.ksm (leading underscore). Standard library only, no Ansible imports, Python 3.8+ syntax.
The module installs this file and its siblings as a small package on the host, so they are imported
relatively.
"""

import argparse
import calendar
import math
import os
import re
import sys
import tempfile
import time

from . import _ksm
from . import _ksm_snapshot
from . import _ksm_tuner
from ._errors import SamepageError

VERSION = '0.1.0'
PROGRAM = 'samepage-ksm-metrics'
PREFIX = 'samepage_ksm_'
FILE_NAME = 'samepage_ksm.prom'
DEFAULT_DIRECTORY = '/var/lib/prometheus/node-exporter'    # Debian's node_exporter textfile directory
DEFAULT_INTERVAL = 60

# The program as installed on a host (by samepage.ksm.ksm_metrics through _program): copies of these
# sources as a package, and an entry script that calls main().
PROGRAM_DIR = '/usr/lib/samepage-ksm/metrics'
SOURCES = ('_errors.py', '_ksm.py', '_ksm_audit.py', '_ksm_writers.py', '_ksm_tuner.py', '_ksm_snapshot.py',
           '_ksm_metrics.py')
ENTRY = PROGRAM
SERVICE_NAME = 'samepage-ksm-metrics.service'
TIMER_NAME = 'samepage-ksm-metrics.timer'
UNIT_DIR = '/etc/systemd/system'

COUNTER = 'counter'
GAUGE = 'gauge'

# Files of /sys/kernel/mm/ksm that only grow (until a reboot; full_scans also restarts after run=2):
# Prometheus counters. Every other file is a level (a gauge).
COUNTER_FILES = ('full_scans', 'pages_scanned', 'pages_skipped')
# Units of the kernel catalogue (_ksm.Knob.unit) and how a value becomes the base unit: (suffix, divisor).
BASE_UNITS = {
    'milliseconds': ('_seconds', 1000),
    'seconds': ('_seconds', 1),
    'bytes': ('_bytes', 1),
    'percent of one CPU': ('_ratio', 100),
}

_METRIC_NAME = re.compile(r'[a-zA-Z_:][a-zA-Z0-9_:]*\Z')
_LABEL_NAME = re.compile(r'[a-zA-Z_][a-zA-Z0-9_]*\Z')


class Family:
    """One metric: name, type, help, and samples [(labels {name: value}, number)]."""

    def __init__(self, name, kind, text, samples=()):
        if not _METRIC_NAME.match(name):
            raise ValueError('invalid metric name %r' % (name,))
        self.name = name
        self.kind = kind
        self.text = text
        self.samples = list(samples)

    def add(self, value, **labels):
        self.samples.append((labels, value))
        return self


# ---------------------------------------------------------------------------------------------------
# The exposition format (https://prometheus.io/docs/instrumenting/exposition_formats/)

def escape_help(text):
    """HELP text: backslash and line feed escaped."""
    return text.replace('\\', '\\\\').replace('\n', '\\n')


def escape_label_value(text):
    """A label value: backslash, double quote and line feed escaped."""
    return str(text).replace('\\', '\\\\').replace('"', '\\"').replace('\n', '\\n')


def format_value(value):
    """A sample value: integers exactly, floats as Python's shortest repr, booleans 1/0, +Inf/-Inf/NaN."""
    if isinstance(value, bool):
        return '1' if value else '0'
    if isinstance(value, int):
        return '%d' % value
    value = float(value)
    if math.isnan(value):
        return 'NaN'
    if math.isinf(value):
        return '+Inf' if value > 0 else '-Inf'
    if value.is_integer() and abs(value) < 2 ** 53:
        return '%d' % value
    return repr(value)


def render(families):
    """The exposition text of families, in their order; a family without samples keeps its HELP and TYPE
    lines (it says the metric exists and nothing is there, e.g. no competing writer)."""
    lines = []
    seen = set()
    for family in families:
        if family.name in seen:
            raise ValueError('metric %s twice' % family.name)
        seen.add(family.name)
        lines.append('# HELP %s %s' % (family.name, escape_help(family.text)))
        lines.append('# TYPE %s %s' % (family.name, family.kind))
        label_sets = set()
        for labels, value in family.samples:
            key = tuple(sorted(labels.items()))
            if key in label_sets:
                raise ValueError('metric %s twice with labels %r' % (family.name, labels))
            label_sets.add(key)
            for name in labels:
                if not _LABEL_NAME.match(name) or name.startswith('__'):
                    raise ValueError('invalid label name %r of %s' % (name, family.name))
            text = ','.join('%s="%s"' % (name, escape_label_value(labels[name])) for name in sorted(labels))
            lines.append('%s%s %s' % (family.name, '{%s}' % text if text else '', format_value(value)))
    return '\n'.join(lines) + '\n'


# ---------------------------------------------------------------------------------------------------
# One snapshot as metrics

def _number(value):
    return isinstance(value, (int, float))


def metric_name(name, knob):
    """(metric name, type, divisor to the base unit) of a file of /sys/kernel/mm/ksm:
    sleep_millisecs -> samepage_ksm_sleep_seconds (/ 1000), advisor_max_cpu -> samepage_ksm_advisor_max_cpu_ratio
    (/ 100), general_profit -> samepage_ksm_general_profit_bytes, full_scans -> samepage_ksm_full_scans_total,
    ksm_zero_pages -> samepage_ksm_zero_pages (the prefix says ksm once)."""
    base = re.sub(r'[^a-zA-Z0-9_]', '_', name)
    if base.startswith('ksm_'):
        base = base[len('ksm_'):]
    if name in COUNTER_FILES:
        return PREFIX + base + '_total', COUNTER, 1
    unit = knob.unit if knob is not None else None
    if unit not in BASE_UNITS:
        return PREFIX + base, GAUGE, 1
    suffix, divisor = BASE_UNITS[unit]
    return PREFIX + re.sub(r'_millisecs$', '', base) + suffix, GAUGE, divisor


def first_sentence(knob):
    """What a file is, for HELP: the first sentence of the catalogue's description (the rest is about writing it)."""
    return re.split(r'(?<=\.) ', knob.description)[0].rstrip('.')


def kernel_file_family(name, value, knob):
    """The family of one file of /sys/kernel/mm/ksm, or None for a value that is not a number (a file of a
    newer kernel that prints text)."""
    path = '/sys/kernel/mm/ksm/' + name
    if knob is not None and knob.kind == _ksm.CHOICE:
        family = Family(PREFIX + name, GAUGE, '%s (%s): 1 for the mode in effect.' % (first_sentence(knob), path))
        for choice in knob.choices:
            family.add(1 if value == choice else 0, mode=choice)
        return family
    if not _number(value):
        return None
    metric, kind, divisor = metric_name(name, knob)
    text = first_sentence(knob) if knob is not None else 'A file this collection does not know'
    text = '%s (%s%s).' % (text, path, ', there in %s' % knob.unit if divisor != 1 else '')
    if isinstance(value, bool):
        value = int(value)
    return Family(metric, kind, text, [({}, value / divisor if divisor != 1 else value)])


def _iso_seconds(text):
    """Seconds since the epoch of the state file's UTC time stamps (2026-11-30T21:45:12Z), or None."""
    try:
        return calendar.timegm(time.strptime(text, '%Y-%m-%dT%H:%M:%SZ'))
    except (TypeError, ValueError):
        return None


def families(snapshot, success=True, duration=None):
    """The metrics of one snapshot (the dict ksm_info returns), in a fixed order."""
    result = []
    available = bool(snapshot.get('available'))
    capabilities = snapshot.get('capabilities') or {}
    result.append(Family(PREFIX + 'snapshot_success', GAUGE,
                         'Whether the last snapshot of KSM was read completely (0: see the journal of %s).'
                         % SERVICE_NAME, [({}, 1 if success else 0)]))
    if duration is not None:
        result.append(Family(PREFIX + 'snapshot_duration_seconds', GAUGE,
                             'How long the last snapshot of KSM took to read.', [({}, round(duration, 6))]))
    result.append(Family(PREFIX + 'available', GAUGE, 'Whether this kernel has KSM (/sys/kernel/mm/ksm exists).',
                         [({}, 1 if available else 0)]))
    if capabilities.get('page_size'):
        result.append(Family(PREFIX + 'page_size_bytes', GAUGE, 'Page size: the unit of the page counts.',
                             [({}, capabilities['page_size'])]))

    # Every knob (setting) and counter of /sys/kernel/mm/ksm, in the catalogue's order, then unknown files.
    files = dict(snapshot.get('settings') or {})
    files.update(snapshot.get('counters') or {})
    order = [knob.name for knob in _ksm.WRITABLE_KNOBS + _ksm.LEGACY_KNOBS + _ksm.COUNTERS]
    for name in [name for name in order if name in files] + sorted(name for name in files if name not in order):
        family = kernel_file_family(name, files[name], _ksm.CATALOGUE.get(name))
        if family is not None:
            result.append(family)

    savings = snapshot.get('savings')
    if savings:
        result.append(Family(PREFIX + 'saved_bytes', GAUGE,
                             'Memory KSM saves: pages_sharing times the page size.', [({}, savings['bytes_saved'])]))
        result.append(Family(PREFIX + 'zero_pages_bytes', GAUGE,
                             'Memory of empty pages merged into the kernel zero page: ksm_zero_pages times the page '
                             'size.', [({}, savings['zero_pages_bytes'])]))

    ksmd = snapshot.get('ksmd')
    if ksmd:
        result.append(Family(PREFIX + 'ksmd_cpu_seconds_total', COUNTER,
                             'CPU ksmd has used since boot (utime + stime of /proc/<ksmd pid>/stat).',
                             [({}, ksmd['cpu_seconds'])]))

    headroom = snapshot.get('unmerge_headroom')
    if headroom:
        margin = headroom['memory_margin']
        result.extend([
            Family(PREFIX + 'unmerge_needed_bytes', GAUGE,
                   'Memory an unmerge (run=2) would allocate now: (pages_sharing + ksm_zero_pages) times the page '
                   'size.', [({}, headroom['needed_bytes'])]),
            Family(PREFIX + 'unmerge_budget_bytes', GAUGE,
                   'Memory an unmerge may use: MemAvailable + SwapFree - the safety margin (%s).' % margin,
                   [({}, headroom['budget_bytes'])]),
            Family(PREFIX + 'unmerge_headroom_bytes', GAUGE,
                   'Budget minus what an unmerge needs; below 0 samepage.ksm.ksm_unmerge refuses to unmerge.',
                   [({}, headroom['headroom_bytes'])]),
            Family(PREFIX + 'unmerge_margin_bytes', GAUGE, 'The safety margin of the unmerge check (%s).' % margin,
                   [({}, headroom['margin_bytes'])]),
        ])

    tuner = snapshot.get('tuner')
    if tuner is not None:
        result.append(Family(PREFIX + 'tuner_running', GAUGE,
                             'Whether the samepage tuner (samepage-ksm-tuner) runs: its state file names a live tuner.',
                             [({}, 1 if tuner.get('running') else 0)]))
        if 'phase' in tuner:
            phase = Family(PREFIX + 'tuner_phase', GAUGE,
                           "The samepage tuner's phase (from its state file): 1 for the current one.")
            phases = list(_ksm_tuner.PHASES)
            if tuner['phase'] not in phases:
                phases.append(tuner['phase'])
            for name in phases:
                phase.add(1 if name == tuner['phase'] else 0, phase=name)
            result.append(phase)
        for key, metric, text, factor in (
                ('run', 'tuner_run', 'The run the samepage tuner set.', 1),
                ('pages_to_scan', 'tuner_pages_to_scan', "The samepage tuner's rate: pages ksmd scans per batch.", 1),
                ('sleep_millisecs', 'tuner_sleep_seconds', "The samepage tuner's rate: pause between batches.",
                 1000)):
            value = tuner.get(key)
            if _number(value) and not isinstance(value, bool):
                result.append(Family(PREFIX + metric, GAUGE, text, [({}, value / factor if factor != 1 else value)]))
        updated = _iso_seconds(tuner.get('updated'))
        if updated is not None:
            result.append(Family(PREFIX + 'tuner_state_updated_timestamp_seconds', GAUGE,
                                 'When the samepage tuner last wrote its state file (seconds since the epoch).',
                                 [({}, updated)]))

    if 'process_scan' in snapshot:
        scan = snapshot['process_scan']
        result.append(Family(PREFIX + 'process_scan_complete', GAUGE,
                             'Whether the scan of /proc behind the guest figures read every process.',
                             [({}, 1 if scan.get('complete') else 0)]))
        merging = {}
        for guest in snapshot.get('guests') or []:
            # One series per guest name (QEMU's -name; libvirt's domain name): guests of the same name, and
            # unnamed ones (guest=""), are summed, as two samples of one series would make the file invalid.
            name = guest.get('name') or ''
            merging[name] = merging.get(name, 0) + int(guest.get('merging_pages') or 0)
        family = Family(PREFIX + 'guest_merging_pages', GAUGE,
                        'Pages of a QEMU guest that KSM merges now (ksm_merging_pages of its process).')
        for name in sorted(merging):
            family.add(merging[name], guest=name)
        result.append(family)

    writers = [writer for writer in snapshot.get('competing_writers') or [] if not writer.get('ours')]
    if available:
        family = Family(PREFIX + 'competing_writer', GAUGE,
                        'Another writer of KSM knobs found on the host (1 each; see ksm_info competing_writers).')
        for writer in writers:
            family.add(1, writer=writer['name'])
        result.append(family)
        result.append(Family(PREFIX + 'competing_writers', GAUGE, 'How many other writers of KSM knobs were found.',
                             [({}, len(writers))]))
    return result


def exposition(snapshot, success=True, duration=None):
    """The exposition text of one snapshot."""
    return render(families(snapshot, success, duration))


# ---------------------------------------------------------------------------------------------------
# The file

def write_atomically(path, text, mode=0o644):
    """Write text to path through a temporary file in the same directory (fsync'd, then renamed over path):
    readers see the old content or the new one, never a part. The temporary file is removed on failure."""
    directory = os.path.dirname(path) or '.'
    fd, temporary = tempfile.mkstemp(prefix='.%s.' % os.path.basename(path), dir=directory)
    try:
        with os.fdopen(fd, 'wb') as handle:
            handle.write(text.encode('utf-8'))
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, mode)
        os.rename(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise


# ---------------------------------------------------------------------------------------------------
# The units that run the program

class MetricsConfigError(ValueError):
    """An option that cannot go into the units; the message names it, the value and the rule."""

    def __init__(self, msg, option=None):
        super().__init__(msg)
        self.msg = msg
        self.option = option


MIN_INTERVAL = 5
MAX_INTERVAL = 86400
_SAFE_PATH = re.compile(r'/[A-Za-z0-9._/+@:=,-]*\Z')


def check_path(option, value):
    if not isinstance(value, str) or not _SAFE_PATH.match(value) or '/../' in value + '/' or value.endswith('/.'):
        raise MetricsConfigError('Invalid %s %r: expected an absolute path of letters, digits and . _ / + @ : = , - '
                                 '(no spaces, quotes, %% or $)' % (option, value), option=option)
    return value.rstrip('/') or '/'


def check_interval(value):
    if isinstance(value, bool) or not isinstance(value, int) or not MIN_INTERVAL <= value <= MAX_INTERVAL:
        raise MetricsConfigError('Invalid interval %r: expected whole seconds from %d to %d'
                                 % (value, MIN_INTERVAL, MAX_INTERVAL), option='interval')
    return value


def check_margin(value):
    """The memory margin as the program gets it: validated by _ksm.parse_margin, blanks removed."""
    try:
        _ksm.parse_margin(value, 0)
    except _ksm.KsmError as err:
        raise MetricsConfigError(err.msg, option='memory_margin')
    return ''.join(str(value).split())


def output_path(directory):
    return os.path.join(directory, FILE_NAME)


def render_service(python, directory, memory_margin=_ksm.DEFAULT_MARGIN, program_dir=PROGRAM_DIR):
    """The oneshot service that writes the file once: byte-identical for the same arguments."""
    python = check_path('python', python)
    directory = check_path('directory', directory)
    program_dir = check_path('program_dir', program_dir)
    margin = check_margin(memory_margin).replace('%', '%%')     # systemd expands % specifiers in ExecStart
    lines = [
        '# Managed by samepage.ksm.ksm_metrics (Ansible collection samepage.ksm). Do not edit: the next run',
        '# of the module rewrites this file. Started by %s.' % TIMER_NAME,
        '[Unit]',
        'Description=Write the KSM metrics of samepage.ksm for the textfile collector of node_exporter',
        'Documentation=https://docs.kernel.org/admin-guide/mm/ksm.html',
        '',
        '[Service]',
        'Type=oneshot',
        'ExecStart=%s -I %s --output %s --memory-margin %s'
        % (python, os.path.join(program_dir, ENTRY), output_path(directory), margin),
        'Nice=10',
        'IOSchedulingClass=idle',
        # Reads /proc, /sys and unit files; writes only the file (and its temporary file) in the directory.
        'NoNewPrivileges=yes',
        'ProtectSystem=strict',
        'ReadWritePaths=%s' % directory,
        'ProtectKernelTunables=yes',
    ] + list(_ksm_tuner.UNIT_SANDBOX) + [
        '',
    ]
    return '\n'.join(lines)


def render_timer(interval=DEFAULT_INTERVAL):
    """The timer that starts the service at boot (and when the timer starts) and every interval seconds."""
    interval = check_interval(interval)
    lines = [
        '# Managed by samepage.ksm.ksm_metrics (Ansible collection samepage.ksm). Do not edit: the next run',
        '# of the module rewrites this file.',
        '[Unit]',
        'Description=Refresh the KSM metrics of samepage.ksm every %d s' % interval,
        '',
        '[Timer]',
        # OnBootSec= in the past when the timer starts elapses at once: a fresh file right after boot (the
        # one left from before the reboot says what the old boot had) and right after the module (re)starts it.
        'OnBootSec=0',
        'OnUnitActiveSec=%ds' % interval,
        'AccuracySec=1s',
        'Unit=%s' % SERVICE_NAME,
        '',
        '[Install]',
        'WantedBy=timers.target',
        '',
    ]
    return '\n'.join(lines)


# ---------------------------------------------------------------------------------------------------
# The program

def build_parser():
    parser = argparse.ArgumentParser(
        prog=PROGRAM, description='Write the KSM metrics of samepage.ksm (every knob and counter of '
                                  '/sys/kernel/mm/ksm, savings, ksmd CPU, unmerge headroom, the samepage tuner, '
                                  'per-guest merging, other writers) as a Prometheus textfile, atomically.')
    parser.add_argument('--output', default=output_path(DEFAULT_DIRECTORY),
                        help='the file to write (default %(default)s); "-" writes to standard output')
    parser.add_argument('--memory-margin', default=_ksm.DEFAULT_MARGIN,
                        help='safety margin of the unmerge headroom (default %(default)s), as ksm_unmerge takes it')
    parser.add_argument('--version', action='version', version='%s %s' % (PROGRAM, VERSION))
    return parser


def collect(memory_margin=_ksm.DEFAULT_MARGIN, clock=time.monotonic):
    """(exposition text, error message or None) of one snapshot. A snapshot that fails half way still gives
    what it read, with samepage_ksm_snapshot_success 0."""
    snapshot = _ksm_snapshot.Snapshot(memory_margin=memory_margin)
    started = clock()
    error = None
    try:
        data = snapshot.take()
    except SamepageError as err:
        data, error = snapshot.result or {}, err.msg
    except OSError as err:
        data, error = snapshot.result or {}, 'Cannot read the KSM state: %s' % err
    return exposition(data, error is None, clock() - started), error


def main(argv=None):
    options = build_parser().parse_args(argv)
    try:
        margin = check_margin(options.memory_margin)
    except MetricsConfigError as err:
        sys.stderr.write('%s: %s\n' % (PROGRAM, err.msg))
        return 2
    text, error = collect(margin)
    try:
        if options.output == '-':
            sys.stdout.write(text)
        else:
            write_atomically(options.output, text)
    except OSError as err:
        sys.stderr.write('%s: cannot write %s: %s\n' % (PROGRAM, options.output, err.strerror or err))
        return 1
    if error is not None:
        sys.stderr.write('%s: %s (written with samepage_ksm_snapshot_success 0)\n' % (PROGRAM, error))
        return 1
    return 0
