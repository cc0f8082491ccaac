# -*- coding: utf-8 -*-
# Copyright: (c) 2026, samepage.ksm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The adaptive KSM tuner: configuration schema, policy and daemon (samepage-ksm-tuner).

Three layers, each usable on its own:

- the configuration: SCHEMA (key, type, range, default, description), validate() for a plain dict
  (the ksm_tuner module and the role's checks call it: one source of truth), parse_config() for the
  INI file the daemon reads, render() for the canonical file the module writes;
- the policy: Policy.step(Observation) -> Decision, pure and time-stepped (no clock, no I/O), so that
  unit tests drive it against a simulated ksmd (tests/unit/fakes/ksmd_sim.py);
- the daemon: Tuner (observe, decide, apply only what changed through _ksm, report) and main(), the
  loop with signals. docs/tuner.md explains every rule of the policy and why.

Private to samepage.ksm (leading underscore). Standard library only, no Ansible imports, Python 3.8+
syntax. The module installs this file with _ksm.py as a small package on the host, so _ksm is imported
relatively.
"""

import argparse
import bisect
import collections
import configparser
import datetime
import errno
import json
import math
import os
import re
import select
import signal
import socket
import sys
import tempfile
import time

from . import _ksm

VERSION = '0.1.0'
PROGRAM = 'samepage-ksm-tuner'
SECTION = 'tuner'
DEFAULT_CONFIG_PATH = '/etc/samepage-ksm/tuner.conf'
DEFAULT_STATE_PATH = '/run/samepage-ksm/tuner.json'
# The host-wide lock of KSM writers (_ksm.host_lock): how long a round waits for a module that holds it
# (an unmerge can take seconds), and when the tuner decides again if it is still held.
LOCK_WAIT = 5
LOCK_RETRY = 1
EXIT_CONFIG = 78        # EX_CONFIG (sysexits.h): the unit's RestartPreventExitStatus, so no restart loop

INT = 'int'
FLOAT = 'float'
CHOICE = 'choice'
LOG_LEVELS = ('debug', 'info', 'warning', 'error')


class Setting:
    """One key of the [tuner] section."""

    __slots__ = ('key', 'kind', 'minimum', 'maximum', 'default', 'choices', 'unit', 'description', 'zero_means')

    def __init__(self, key, kind, default, minimum=None, maximum=None, choices=None, unit=None,
                 description='', zero_means=None):
        self.key = key
        self.kind = kind
        self.default = default
        self.minimum = minimum
        self.maximum = maximum
        self.choices = choices
        self.unit = unit
        self.description = description
        self.zero_means = zero_means

    def rule(self):
        """The accepted values, as a phrase for error messages."""
        if self.kind == CHOICE:
            return 'one of ' + ', '.join(self.choices)
        noun = 'an integer' if self.kind == INT else 'a number'
        text = '%s from %s to %s' % (noun, format_number(self.minimum), format_number(self.maximum))
        if self.zero_means:
            text += ', or 0 (%s)' % self.zero_means
        return text


SCHEMA = (
    Setting('cpu_budget', FLOAT, 20, 0.1, 100, unit='percent of one core',
            description='Most CPU ksmd may use, averaged over budget_window. The tuner lowers the scan '
                        'rate, and stops ksmd for a while if it must, rather than exceed it.'),
    Setting('budget_window', INT, 60, 10, 3600, unit='seconds',
            description='The window cpu_budget is averaged over.'),
    Setting('fast_pages_to_scan', INT, 20000, 1, 100000, unit='pages',
            description='pages_to_scan while merging pays (20000 with sleep 0 is one full core, '
                        'the fastest ksmd can go).'),
    Setting('fast_sleep_millisecs', INT, 0, 0, 1000, unit='milliseconds',
            description='sleep_millisecs while merging pays.'),
    Setting('idle_pages_to_scan', INT, 100, 1, 100000, unit='pages',
            description='pages_to_scan once a full scan gains (almost) nothing.'),
    Setting('idle_sleep_millisecs', INT, 200, 1, 60000, unit='milliseconds',
            description='sleep_millisecs once a full scan gains (almost) nothing; the tuner doubles it '
                        '(up to 16 times) while idle ksmd costs more than idle_cpu_limit.'),
    Setting('idle_cpu_limit', FLOAT, 0.3, 0.01, 100, unit='percent of one core',
            description='Most CPU ksmd should use once converged (unique memory costs 15-20 times more '
                        'per page to scan than merged memory, so the idle rate adapts to it).'),
    Setting('gain_threshold', INT, 64, 0, 1000000000, unit='pages',
            description='A full scan that adds fewer pages to pages_sharing + ksm_zero_pages than this '
                        'no longer pays: the tuner backs off to the idle rate. While idle, that many '
                        'new pages merged beyond the converged level start a fast phase again.'),
    Setting('process_poll_seconds', FLOAT, 2, 0.5, 60, unit='seconds', zero_means='off',
            description='How often the tuner looks for NEW processes with mergeable memory (it looks '
                        'only at process ids it has not seen); one found starts a fast phase.'),
    Setting('pressure_gate', INT, 0, 1, 99, unit='percent of MemTotal', zero_means='off',
            description='Merge only while MemAvailable is below this share of MemTotal (ksmtuned\'s '
                        'gate); above it plus 5 points ksmd is stopped with its merged pages kept.'),
    Setting('log_level', CHOICE, 'info', choices=LOG_LEVELS,
            description='debug logs every observation; info one line per change of phase or rate.'),
)

SETTINGS = {setting.key: setting for setting in SCHEMA}
DEFAULTS = {setting.key: setting.default for setting in SCHEMA}


class ConfigError(ValueError):
    """A configuration that cannot be used; the message names the key, the value and the rule."""

    def __init__(self, msg, key=None):
        super().__init__(msg)
        self.msg = msg
        self.key = key


def format_number(value):
    """Canonical text of a number: 20, 0.3, 12.5 (never 20.0)."""
    if isinstance(value, float):
        if value.is_integer():
            return '%d' % value
        return repr(value)
    return '%d' % value


_INT_TEXT = re.compile(r'[0-9]+\Z', re.ASCII)
_FLOAT_TEXT = re.compile(r'[0-9]+(\.[0-9]+)?\Z', re.ASCII)


def _bad(setting, value, where=''):
    return ConfigError('Invalid value %r for %s%s: expected %s%s'
                       % (value, setting.key, where, setting.rule(), ' (%s)' % setting.unit if setting.unit else ''),
                       key=setting.key)


def _check(setting, value, where=''):
    """A typed value in range, or ConfigError."""
    if setting.kind == CHOICE:
        if value not in setting.choices:
            raise _bad(setting, value, where)
        return value
    if setting.zero_means and value == 0:
        return 0
    if not setting.minimum <= value <= setting.maximum:
        raise _bad(setting, value, where)
    return value


def parse_value(key, text, where=''):
    """The typed value of a key given as text (from the file, or a string in a dict)."""
    setting = SETTINGS[key]
    stripped = text.strip(' \t')
    if setting.kind == CHOICE:
        return _check(setting, stripped, where)
    pattern = _INT_TEXT if setting.kind == INT else _FLOAT_TEXT
    # Only plain ASCII decimals: int() would also take '1_000', ' 12', '+5' and other scripts' digits.
    if not stripped or not pattern.match(stripped) or len(stripped) > 40:
        raise _bad(setting, text, where)
    value = int(stripped) if setting.kind == INT else float(stripped)
    if setting.kind == FLOAT and value.is_integer():
        value = int(value)
    try:
        return _check(setting, value, where)
    except ConfigError:
        raise _bad(setting, text, where)   # the value as written


def validate_value(key, value, where=''):
    """The normalised value of one key given as a Python value (int, float, str)."""
    if key not in SETTINGS:
        raise ConfigError('Unknown key %r%s: expected one of %s' % (key, where, ', '.join(sorted(SETTINGS))),
                          key=key)
    setting = SETTINGS[key]
    if isinstance(value, str):
        return parse_value(key, value, where)
    if setting.kind == CHOICE or isinstance(value, bool):
        raise _bad(setting, value, where)
    if setting.kind == INT:
        if not isinstance(value, int):
            raise _bad(setting, value, where)
        return _check(setting, value, where)
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            raise _bad(setting, value, where)
        if value.is_integer():
            value = int(value)
    elif not isinstance(value, int):
        raise _bad(setting, value, where)
    return _check(setting, value, where)


def validate(mapping):
    """Validate a plain dict of settings; return it normalised (only the keys given), or ConfigError."""
    if not isinstance(mapping, dict):
        raise ConfigError('The tuner configuration must be a mapping of keys to values, not %r' % (mapping,))
    return {key: validate_value(key, mapping[key]) for key in sorted(mapping, key=str)}


def effective(mapping):
    """The settings the daemon runs with: the defaults, updated with a validated mapping."""
    result = dict(DEFAULTS)
    result.update(validate(mapping))
    return result


def parse_config(text, source='<string>'):
    """The settings of an INI text with one [tuner] section (comments with # or ;). ConfigError names the
    file, the key, the value and the rule."""
    parser = configparser.ConfigParser(interpolation=None, strict=True, empty_lines_in_values=False,
                                       inline_comment_prefixes=('#', ';'), default_section='\0none')
    parser.optionxform = str      # keys are case-sensitive: CPU_BUDGET is an unknown key, not cpu_budget
    try:
        parser.read_string(text, source)
    except configparser.Error as err:
        raise ConfigError('Cannot parse %s: %s' % (source, ' '.join(str(err).split())))
    others = [name for name in parser.sections() if name != SECTION]
    if others:
        raise ConfigError('Unknown section [%s] in %s: the file has one section, [%s]' % (others[0], source, SECTION))
    if not parser.has_section(SECTION):
        if text.strip() and any(line.strip() and line.strip()[0] not in '#;' for line in text.splitlines()):
            raise ConfigError('%s has no [%s] section' % (source, SECTION))
        return {}
    where = ' in %s' % source
    result = {}
    for key, value in parser.items(SECTION, raw=True):
        if key not in SETTINGS:
            raise ConfigError('Unknown key %r in %s: expected one of %s' % (key, source, ', '.join(sorted(SETTINGS))),
                              key=key)
        if '\n' in value:
            raise ConfigError('Invalid value %r for %s%s: a value is one line' % (value, key, where), key=key)
        result[key] = parse_value(key, value, where)
    return result


def load_config(path):
    """The effective settings from a file. ConfigError if it cannot be read or is invalid."""
    try:
        with open(path, 'rb') as handle:
            data = handle.read()
    except OSError as err:
        raise ConfigError('Cannot read the configuration %s: %s' % (path, err.strerror or err))
    try:
        text = data.decode('utf-8')
    except UnicodeDecodeError as err:
        raise ConfigError('Cannot read the configuration %s: not UTF-8 text (%s)' % (path, err))
    result = dict(DEFAULTS)
    result.update(parse_config(text, path))
    return result


def render(mapping, manager='samepage.ksm.ksm_tuner'):
    """The canonical configuration file of a mapping: byte-identical for the same settings. Only the keys
    given are written (the daemon takes the defaults for the rest), each with its description."""
    settings = validate(mapping)
    lines = ['# samepage-ksm-tuner configuration, managed by %s (Ansible collection samepage.ksm).' % manager,
             '# Keys not set here take their defaults; see docs/tuner.md of the collection.',
             '[%s]' % SECTION]
    for setting in SCHEMA:
        if setting.key not in settings:
            continue
        default = setting.default if setting.kind == CHOICE else format_number(setting.default)
        lines.append('# %s (%s; default %s)' % (setting.description, setting.rule(), default))
        value = settings[setting.key]
        lines.append('%s = %s' % (setting.key, value if setting.kind == CHOICE else format_number(value)))
    return '\n'.join(lines) + '\n'


# ---------------------------------------------------------------------------------------------------
# The program as installed on a host (by samepage.ksm.ksm_tuner through _program): a package with copies
# of these sources, and an entry script that calls main()

PROGRAM_DIR = '/usr/lib/samepage-ksm'
SOURCES = ('_errors.py', '_ksm.py', '_ksm_tuner.py')
ENTRY = PROGRAM


UNIT_NAME = 'samepage-ksm-tuner.service'
UNIT_PATH = '/etc/systemd/system/' + UNIT_NAME
RUNTIME_DIRECTORY = 'samepage-ksm'      # /run/samepage-ksm: the state file
STATE_DIRECTORY = 'samepage-ksm'        # /var/lib/samepage-ksm


# The sandbox of the collection's own daemons (the tuner here, the metrics writer of _ksm_metrics), after the
# lines that open what each one writes (ProtectSystem=strict, ProtectKernelTunables, ReadWritePaths).
UNIT_SANDBOX = (
    'ProtectHome=yes',
    'PrivateTmp=yes',
    'PrivateDevices=yes',
    'PrivateNetwork=yes',
    'ProtectKernelModules=yes',
    'ProtectKernelLogs=yes',
    'ProtectControlGroups=yes',
    'ProtectClock=yes',
    'ProtectHostname=yes',
    'RestrictAddressFamilies=AF_UNIX',
    'RestrictNamespaces=yes',
    'RestrictRealtime=yes',
    'RestrictSUIDSGID=yes',
    'LockPersonality=yes',
    'MemoryDenyWriteExecute=yes',
    'SystemCallArchitectures=native',
    'UMask=0022',
)


def render_unit(python, program_dir=PROGRAM_DIR, config_path=DEFAULT_CONFIG_PATH, ksm_dir=_ksm.KSM_DIR):
    """The hardened systemd unit that runs the daemon: byte-identical for the same arguments."""
    for name, value in (('python', python), ('program_dir', program_dir), ('config_path', config_path)):
        if not os.path.isabs(value) or re.search(r'[\s%$\\"\']', value):
            raise ConfigError('Invalid %s %r: expected an absolute path without spaces, quotes, %% or $' % (name, value),
                              key=name)
    lines = [
        '# Managed by samepage.ksm.ksm_tuner (Ansible collection samepage.ksm). Do not edit: the next run',
        '# of the module rewrites this file. Configuration: %s' % config_path,
        '[Unit]',
        'Description=Adaptive KSM tuner of samepage.ksm (scans fast while merging pays, within a CPU budget)',
        'Documentation=https://docs.kernel.org/admin-guide/mm/ksm.html',
        'ConditionPathIsDirectory=%s' % ksm_dir,
        'After=ksm.service samepage-ksm-sysfs.service',
        'Conflicts=ksmtuned.service',
        # A bad configuration exits 78 (no restart); anything else restarts, but not in a tight loop.
        'StartLimitIntervalSec=300',
        'StartLimitBurst=5',
        '',
        '[Service]',
        # The daemon tells systemd it is ready once its configuration is loaded: `systemctl start` fails on a
        # bad file, and the exit status 78 is the main process's, which RestartPreventExitStatus= sees (it
        # never applies to an ExecStartPre= check: systemd issue 11868, which restarted up to the limit).
        'Type=notify',
        'NotifyAccess=main',
        'ExecStart=%s -I %s --config %s --state /run/%s/tuner.json'
        % (python, os.path.join(program_dir, ENTRY), config_path, RUNTIME_DIRECTORY),
        'ExecReload=/bin/kill -HUP $MAINPID',
        'Restart=on-failure',
        'RestartSec=5',
        'RestartPreventExitStatus=%d' % EXIT_CONFIG,
        'RuntimeDirectory=%s' % RUNTIME_DIRECTORY,
        'StateDirectory=%s' % STATE_DIRECTORY,
        'NoNewPrivileges=yes',
        'ProtectSystem=strict',
        'ProtectKernelTunables=yes',
        'ReadWritePaths=%s' % ksm_dir,
        'ReadWritePaths=-%s' % os.path.dirname(_ksm.LOCK_PATH),   # the host lock of KSM writers
    ] + list(UNIT_SANDBOX) + [
        '',
        '[Install]',
        'WantedBy=multi-user.target',
        '',
    ]
    return '\n'.join(lines)


# ---------------------------------------------------------------------------------------------------
# The policy: pure and time-stepped

FAST = 'fast'               # merging pays: scan at the fast rate
IDLE = 'idle'               # a full scan gains (almost) nothing: idle rate
THROTTLED = 'throttled'     # the CPU budget holds the rate below what the phase wants
PAUSED = 'paused'           # the CPU budget is spent for now: run=0 (merged pages kept)
GATED = 'gated'             # pressure gate closed: run=0 (merged pages kept)
# Every phase the state file may name: the policy's, and the daemon's own (stopped, error, unavailable).
PHASES = (FAST, IDLE, THROTTLED, PAUSED, GATED, 'stopped', 'error', 'unavailable')

MIN_FAST_SCANS = 2          # nothing merges in the first full pass: judge a fast phase after two
WAITING_SECONDS = 10.0      # ksmd told to run that scans nothing for this long waits for mergeable memory
WAITING_CPU_SHARE = 0.002   # ... judged by its CPU where the kernel has no pages_scanned (0.2 % of a core)
IDLE_SLEEP_MAX_FACTOR = 16  # the idle sleep doubles up to this many times the configured one
IDLE_CPU_WINDOW = 30.0      # seconds of idle ksmd CPU behind each adjustment of the idle sleep
FAST_TICK = 0.5             # seconds between observations while merging
SLOW_TICK = 2.0             # ... while idle (new processes are looked for on this beat anyway)
BUDGET_SAFETY = 0.8         # aim at this share of what the budget still allows
BUDGET_LATENESS = 1.5       # plan the budget for a tick this much longer than asked
MIN_FRACTION = 0.002        # below this share of a core, pause instead of crawling
GATE_HYSTERESIS = 5         # percentage points above the gate before it closes again
DEFAULT_PAGE_COST = 6e-6    # CPU seconds per page before one is measured: unique memory, the dearest
COST_SAMPLES = 20
STATE_EVERY = 10.0          # seconds between rewrites of the state file while nothing changes


class Observation:
    """What the daemon saw at one instant."""

    __slots__ = ('time', 'counters', 'ksmd_cpu', 'mem_total', 'mem_available', 'new_mergeable', 'kick')

    def __init__(self, when, counters, ksmd_cpu=None, mem_total=None, mem_available=None, new_mergeable=(),
                 kick=None):
        self.time = when                    # seconds, monotonic
        self.counters = counters            # _ksm.Ksm.read_state() (run, pages_sharing, full_scans, ...)
        self.ksmd_cpu = ksmd_cpu            # ksmd's utime + stime in seconds, or None
        self.mem_total = mem_total          # bytes, or None
        self.mem_available = mem_available
        self.new_mergeable = tuple(new_mergeable)   # pids of new processes with mergeable memory
        self.kick = kick                    # None, or what kicked (e.g. 'SIGHUP')


class Decision:
    """What ksmd should do until the next observation, and why."""

    __slots__ = ('run', 'pages_to_scan', 'sleep_millisecs', 'phase', 'reason', 'next_check')

    def __init__(self, run, pages_to_scan, sleep_millisecs, phase, reason, next_check):
        self.run = run
        self.pages_to_scan = pages_to_scan
        self.sleep_millisecs = sleep_millisecs
        self.phase = phase
        self.reason = reason
        self.next_check = next_check

    def knobs(self):
        """The knobs this decision sets (pages_to_scan and sleep_millisecs are left alone while run=0)."""
        if self.run == 0:
            return {'run': 0}
        return {'pages_to_scan': self.pages_to_scan, 'sleep_millisecs': self.sleep_millisecs, 'run': 1}

    def rate(self):
        return (self.run, self.pages_to_scan, self.sleep_millisecs)

    def __repr__(self):
        return 'Decision(%s run=%d pages_to_scan=%d sleep_millisecs=%d: %s)' % (
            self.phase, self.run, self.pages_to_scan, self.sleep_millisecs, self.reason)


def sharing_of(counters):
    """Pages KSM saves now: pages_sharing + ksm_zero_pages (the zero page merges count too)."""
    return int(counters.get('pages_sharing', 0) or 0) + int(counters.get('ksm_zero_pages', 0) or 0)


def cpu_fraction(pages_to_scan, sleep_millisecs, page_cost):
    """Share of one core ksmd uses at a rate, given the CPU seconds one page costs. Sleeps round UP to
    whole ticks in the kernel, so the nominal sleep overestimates the CPU: safe for a budget."""
    batch = pages_to_scan * page_cost
    if sleep_millisecs <= 0:
        return 1.0
    return min(1.0, batch / (batch + sleep_millisecs / 1000.0))


def rate_for(fraction, page_cost, max_pages):
    """(pages_to_scan, sleep_millisecs) that keep ksmd near `fraction` of a core (0 < fraction < 1)."""
    sleep_ms = 20
    pages = int(fraction * (sleep_ms / 1000.0) / (page_cost * (1.0 - fraction)))
    if pages < 1:
        pages = 1
        sleep_ms = int(page_cost * (1.0 - fraction) / fraction * 1000.0) + 1
    return min(pages, max_pages), min(sleep_ms, 60000)


class Policy:
    """Observations in, decisions out. See docs/tuner.md for the reasoning behind each rule."""

    def __init__(self, config):
        self.config = effective(config)
        c = self.config
        self.fast_rate = (c['fast_pages_to_scan'], c['fast_sleep_millisecs'])
        self.idle_sleep = c['idle_sleep_millisecs']
        self.intent = FAST
        self.reason = 'starting: merge what is there'
        self.fast_scans = 0             # full scans completed since the fast phase began
        self.fast_gain = 0              # pages gained since the fast phase began
        self.fast_start_sharing = None
        self.scan_mark = None           # (full_scans, sharing) at the last completed scan seen
        self.last_gain = None           # pages gained per full scan, last measured
        self.level = None               # idle: the converged level (high-water mark) of sharing
        self.idle_since = None
        self.idle_adjusted = None       # time of the last idle-sleep adjustment
        self.cpu_times = []             # ksmd CPU samples: times (monotonic seconds) ...
        self.cpu_values = []            # ... and ksmd's CPU seconds then
        self.cost_samples = collections.deque(maxlen=COST_SAMPLES)
        self.cost_mark = None           # (ksmd cpu, pages_scanned) for measuring the cost of a page
        self.gate_open = None
        self.watch = None               # (time, pages_scanned, ksmd cpu) since ksmd was told to run, fast
        self.previous = None            # the last decision
        self.last_time = None

    # -- helpers ----------------------------------------------------------------------------------
    def _enter_fast(self, reason, sharing):
        self.intent = FAST
        self.reason = reason
        self.fast_scans = 0
        self.fast_gain = 0
        self.fast_start_sharing = sharing
        self.idle_since = None
        self.watch = None

    def _enter_idle(self, reason, now, sharing):
        self.intent = IDLE
        self.reason = reason
        self.level = sharing
        self.idle_since = now
        self.idle_adjusted = now

    def page_cost(self):
        """CPU seconds one page costs ksmd: the dearest recent measurement (safe for the budget)."""
        if self.cost_samples:
            return max(self.cost_samples)
        return DEFAULT_PAGE_COST

    def _cpu_at(self, when):
        """ksmd CPU seconds at a past instant, interpolated between samples (the oldest one before them)."""
        times, cpus = self.cpu_times, self.cpu_values
        if not times:
            return None
        if when <= times[0]:
            return cpus[0]
        index = bisect.bisect_right(times, when) - 1
        if index + 1 < len(times) and times[index + 1] > times[index]:
            return cpus[index] + (cpus[index + 1] - cpus[index]) * (when - times[index]) / (times[index + 1] - times[index])
        return cpus[index]

    def ksmd_cpu_percent(self, seconds):
        """ksmd's average CPU over the last `seconds`, in percent of one core (None before two samples)."""
        if len(self.cpu_times) < 2:
            return None
        now, cpu = self.cpu_times[-1], self.cpu_values[-1]
        start = max(now - seconds, self.cpu_times[0])
        if now <= start:
            return None
        return 100.0 * (cpu - self._cpu_at(start)) / (now - start)

    def _observe_cpu(self, obs):
        if obs.ksmd_cpu is None:
            return
        self.cpu_times.append(obs.time)
        self.cpu_values.append(obs.ksmd_cpu)
        horizon = obs.time - self.config['budget_window'] - IDLE_CPU_WINDOW - 10
        old = bisect.bisect_left(self.cpu_times, horizon) - 1
        if old > 0:
            del self.cpu_times[:old]
            del self.cpu_values[:old]
        scanned = obs.counters.get('pages_scanned')
        if scanned is None:
            return
        if self.cost_mark is not None:
            cpu0, pages0 = self.cost_mark
            if obs.ksmd_cpu - cpu0 >= 0.05 and scanned - pages0 >= 1000:
                self.cost_samples.append((obs.ksmd_cpu - cpu0) / (scanned - pages0))
                self.cost_mark = (obs.ksmd_cpu, scanned)
            elif scanned < pages0 or obs.ksmd_cpu < cpu0:
                self.cost_mark = (obs.ksmd_cpu, scanned)
        else:
            self.cost_mark = (obs.ksmd_cpu, scanned)

    def _observe_scans(self, counters, sharing):
        """Gain per full scan: pages added to sharing between completed scans."""
        scans = counters.get('full_scans')
        if scans is None:
            return 0
        if self.scan_mark is None or scans < self.scan_mark[0]:
            # first look, or run=2 reset full_scans
            self.scan_mark = (scans, sharing)
            return 0
        done = scans - self.scan_mark[0]
        if done:
            self.last_gain = (sharing - self.scan_mark[1]) // done
            self.scan_mark = (scans, sharing)
        return done

    # -- the step ---------------------------------------------------------------------------------
    def step(self, obs):
        c = self.config
        now = obs.time
        counters = obs.counters
        sharing = sharing_of(counters)
        self._observe_cpu(obs)
        completed = self._observe_scans(counters, sharing)
        if self.fast_start_sharing is None:
            self.fast_start_sharing = sharing

        # Events first: a kick or a new mergeable process starts a fast phase at once.
        if obs.kick:
            self._enter_fast('kick (%s): merge new memory now' % obs.kick, sharing)
            completed = 0
        elif obs.new_mergeable:
            pids = ', '.join('%d' % pid for pid in obs.new_mergeable[:5])
            self._enter_fast('new process with mergeable memory (pid %s)' % pids, sharing)
            completed = 0

        # The pressure gate: merge only while memory is short (with hysteresis).
        gate = c['pressure_gate']
        if gate and obs.mem_total:
            available = 100.0 * (obs.mem_available or 0) / obs.mem_total
            if self.gate_open is None:
                self.gate_open = available < gate
            elif not self.gate_open and available < gate:
                self.gate_open = True
                self._enter_fast('memory pressure: MemAvailable %.1f %% < pressure_gate %d %%' % (available, gate),
                                 sharing)
                completed = 0
            elif self.gate_open and available >= gate + GATE_HYSTERESIS:
                self.gate_open = False
            if not self.gate_open:
                return self._decide(Decision(0, 0, 0, GATED, 'MemAvailable %.1f %% of MemTotal is above the '
                                             'pressure gate (%d %%): ksmd stopped, merged pages kept'
                                             % (available, gate), SLOW_TICK), now)

        if self.intent == FAST:
            self.fast_scans += completed
            self.fast_gain = sharing - self.fast_start_sharing
            waiting = self._ksmd_waiting(obs)
            if self.fast_scans >= MIN_FAST_SCANS and self.last_gain is not None \
                    and self.last_gain < c['gain_threshold']:
                self._enter_idle('converged: the last full scan gained %d pages (< gain_threshold %d) after '
                                 '%d full scans that gained %d pages'
                                 % (self.last_gain, c['gain_threshold'], self.fast_scans, self.fast_gain),
                                 now, sharing)
            elif waiting:
                self._enter_idle('nothing to scan: no process has memory marked mergeable (%s)' % waiting,
                                 now, sharing)
        else:
            self._idle_bookkeeping(obs, completed, sharing)

        if self.intent == FAST:
            pages, sleep = self.fast_rate
            tick = FAST_TICK
        else:
            pages, sleep = c['idle_pages_to_scan'], self.idle_sleep
            tick = SLOW_TICK
        if c['process_poll_seconds']:
            tick = min(tick, c['process_poll_seconds'])
        return self._decide(self._budgeted(Decision(1, pages, sleep, self.intent, self.reason, tick), now), now)

    def _ksmd_waiting(self, obs):
        """Why ksmd, told to run at the fast rate, is waiting rather than scanning; None while it scans
        (or cannot be judged yet). ksmd scans only while some process has memory marked mergeable:
        without one it sleeps until one appears, so no full scan ever completes and rule 2 never fires.
        The evidence is the kernel's pages_scanned standing still, or where there is none, ksmd's CPU."""
        previous = self.previous
        if previous is None or previous.run != 1:
            self.watch = None
            return None
        scanned, cpu = obs.counters.get('pages_scanned'), obs.ksmd_cpu
        if self.watch is None:
            self.watch = (obs.time, scanned, cpu)
            return None
        since, scanned_then, cpu_then = self.watch
        elapsed = obs.time - since
        if elapsed < WAITING_SECONDS:
            return None
        if scanned is not None and scanned_then is not None:
            if scanned == scanned_then:
                return 'ksmd scanned no page in %d s' % elapsed
        elif cpu is not None and cpu_then is not None:
            if cpu - cpu_then < WAITING_CPU_SHARE * elapsed:
                return 'ksmd used %.3f s of CPU in %d s' % (cpu - cpu_then, elapsed)
        else:
            return None
        self.watch = (obs.time, scanned, cpu)     # it scans: judge the next stretch afresh
        return None

    def _idle_bookkeeping(self, obs, completed, sharing):
        c = self.config
        now = obs.time
        if sharing > self.level + c['gain_threshold'] and c['gain_threshold'] > 0:
            # New ground beyond the converged level: more memory merges; go and get it quickly.
            self._enter_fast('gain while idle: %d pages merged beyond the converged level'
                             % (sharing - self.level), sharing)
            return
        if sharing > self.level:
            self.level = sharing
        elif completed:
            # A whole idle pass saw this level (pages unmerged by writes, processes gone): accept it.
            self.level = sharing
        # Idle cost: ksmd should stay under idle_cpu_limit; the sleep adapts (doubles / halves).
        if now - self.idle_adjusted >= IDLE_CPU_WINDOW and now - self.idle_since >= IDLE_CPU_WINDOW:
            used = self.ksmd_cpu_percent(IDLE_CPU_WINDOW)
            base = c['idle_sleep_millisecs']
            if used is not None:
                if used > c['idle_cpu_limit'] and self.idle_sleep < base * IDLE_SLEEP_MAX_FACTOR:
                    self.idle_sleep = min(self.idle_sleep * 2, base * IDLE_SLEEP_MAX_FACTOR)
                    self.reason = ('idle: ksmd used %.2f %% of a core (> idle_cpu_limit %s %%), sleep doubled'
                                   % (used, format_number(c['idle_cpu_limit'])))
                elif used < c['idle_cpu_limit'] / 4 and self.idle_sleep > base:
                    self.idle_sleep = max(self.idle_sleep // 2, base)
                    self.reason = ('idle: ksmd used %.2f %% of a core (< idle_cpu_limit / 4), sleep halved'
                                   % used)
            self.idle_adjusted = now

    def _budgeted(self, decision, now):
        """The decision, slowed or paused so that ksmd's CPU over any budget_window stays in the budget.

        Over the next tick ksmd may use what the budget allows minus what it used in the part of the
        window that the next tick does not push out.
        """
        c = self.config
        if not self.cpu_times:
            return decision
        window = float(c['budget_window'])
        budget = c['cpu_budget'] / 100.0
        # The next observation may come late (a busy host, a slow read): plan for half a tick more.
        horizon = decision.next_check * BUDGET_LATENESS
        cpu_now = self.cpu_values[-1]
        # Every window that ends within the horizon must stay in the budget: ending e seconds from now,
        # it holds what ksmd used since now - window + e plus e seconds at the new rate. Checked at the
        # horizon and where a sample lies (between samples the used CPU is linear).
        start = now - window
        first = bisect.bisect_right(self.cpu_times, start)
        last = bisect.bisect_left(self.cpu_times, start + horizon)
        ends = [horizon] + [t - start for t in self.cpu_times[first:last]]
        allowed = min((budget * window - (cpu_now - self._cpu_at(start + end))) / end for end in ends)
        cost = self.page_cost()
        wanted = cpu_fraction(decision.pages_to_scan, decision.sleep_millisecs, cost)
        if wanted <= allowed * BUDGET_SAFETY:
            return decision
        fraction = min(allowed * BUDGET_SAFETY, budget)
        used = self.ksmd_cpu_percent(window)
        spent = 'ksmd used %.1f %% of a core over the last %d s (cpu_budget %s %%)' % (
            used or 0.0, window, format_number(c['cpu_budget']))
        if fraction < MIN_FRACTION:
            return Decision(0, 0, 0, PAUSED, 'CPU budget spent: %s; ksmd paused, merged pages kept' % spent, 1.0)
        pages, sleep = rate_for(fraction, cost, decision.pages_to_scan)
        if cpu_fraction(pages, sleep, cost) >= wanted:
            return decision
        return Decision(1, pages, sleep, THROTTLED, 'CPU budget: %s; %s phase slowed to %.1f %% of a core'
                        % (spent, decision.phase, 100 * fraction), 1.0)

    def _decide(self, decision, now):
        self.previous = decision
        self.last_time = now
        return decision


# ---------------------------------------------------------------------------------------------------
# What the daemon reads besides /sys/kernel/mm/ksm

class KsmdCpu:
    """ksmd's CPU seconds (utime + stime of /proc/<ksmd pid>/stat, read by _ksm). The pid is looked up once."""

    def __init__(self, proc_dir='/proc'):
        self.proc_dir = proc_dir
        self.pid = None
        self.next_lookup = 0.0
        self.ticks = float(_ksm.clock_ticks())

    def __call__(self, now=None):
        """Seconds of CPU ksmd has used, or None when there is no ksmd (looked for again after a minute)."""
        now = time.monotonic() if now is None else now
        if self.pid is None:
            if now < self.next_lookup:
                return None
            try:
                self.pid = _ksm.find_ksmd(self.proc_dir)
            except OSError:
                self.pid = None
            if self.pid is None:
                self.next_lookup = now + 60
                return None
        try:
            return _ksm.process_cpu_seconds(self.pid, self.proc_dir, self.ticks)
        except (OSError, ValueError):
            self.pid = None
            return None


def _read_text(path, limit=None):
    with open(path, 'rb') as handle:
        data = handle.read() if limit is None else handle.read(limit)
    return data.decode('ascii', 'replace')


def process_mergeable(proc_dir, pid):
    """True/False when it could tell whether the process has memory marked mergeable, None when gone.

    /proc/<pid>/ksm_stat says it in one line on 6.14+ kernels (ksm_mergeable / ksm_merge_any); older
    kernels show it as the `mg` flag in the VmFlags lines of /proc/<pid>/smaps.
    """
    base = os.path.join(proc_dir, pid)
    try:
        stat = _read_text(os.path.join(base, 'ksm_stat'))
    except OSError as err:
        if err.errno not in (errno.ENOENT, errno.EACCES, errno.EPERM, errno.EINVAL):
            return None
        stat = ''
    answer = None
    for line in stat.splitlines():
        key, dummy, value = line.partition(':')
        if key.strip() in ('ksm_mergeable', 'ksm_merge_any'):
            answer = bool(answer) or value.strip() == 'yes'
    if answer is not None:
        return answer
    try:
        with open(os.path.join(base, 'smaps'), 'rb') as handle:
            for line in handle:
                if line.startswith(b'VmFlags:') and b' mg' in line:
                    return True
    except OSError:
        return None
    return False


class ProcessWatcher:
    """Finds NEW processes with mergeable memory, looking only at process ids it has not seen before.

    Each new pid is checked at once and again on the next polls for `recheck_seconds` (a program
    madvises its memory some time after exec: QEMU once it has allocated guest RAM).
    """

    def __init__(self, proc_dir='/proc', recheck_seconds=10.0, list_pids=None, mergeable=None, last_pid=None):
        self.proc_dir = proc_dir
        self.recheck_seconds = recheck_seconds
        self.list_pids = list_pids or (lambda: os.listdir(self.proc_dir))
        self.mergeable = mergeable or (lambda pid: process_mergeable(self.proc_dir, pid))
        if last_pid is None and list_pids is None:
            last_pid = self._last_pid
        self.last_pid = last_pid
        self.known = None
        self.seen_last_pid = None
        self.pending = {}
        self.own = str(os.getpid())

    def _last_pid(self):
        """The id the kernel handed out last (the last field of /proc/loadavg): unchanged, nothing new
        was started, and /proc need not be listed (the cost of a poll stays flat with the host's size)."""
        try:
            return _read_text(os.path.join(self.proc_dir, 'loadavg'), 256).split()[-1]
        except (OSError, IndexError):
            return None

    def poll(self, now):
        """Pids (ints) of processes found mergeable since the last poll. The first poll only learns."""
        last = self.last_pid() if self.last_pid is not None else None
        if self.known is None or last is None or last != self.seen_last_pid:
            names = set(self.list_pids())
            if self.known is not None:
                for name in names - self.known:
                    if name.isdigit() and name != self.own:
                        self.pending[name] = now
            self.known = names
            self.seen_last_pid = last
        found = []
        for name, first_seen in list(self.pending.items()):
            answer = self.mergeable(name)
            if answer:
                found.append(int(name))
                del self.pending[name]
            elif answer is None or now - first_seen >= self.recheck_seconds:
                del self.pending[name]       # gone, or not mergeable within recheck_seconds
        return sorted(found)


# ---------------------------------------------------------------------------------------------------
# The daemon

def _iso(timestamp):
    return datetime.datetime.fromtimestamp(timestamp, datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ')


def _is_tuner_process(pid, proc='/proc'):
    """Whether pid is a running samepage-ksm-tuner (its command line names the program): a pid in a
    stale state file may belong to another process by now."""
    try:
        with open(os.path.join(proc, str(pid), 'cmdline'), 'rb') as handle:
            return PROGRAM.encode('ascii') in handle.read()
    except OSError:
        return False


def read_status(state_path=DEFAULT_STATE_PATH, unit_path=None, proc='/proc'):
    """What the tuner reports of itself, for ksm_info: the state file's content plus `installed` (its unit
    file exists) and `running` (the pid of the state file is a live tuner that has not stopped), without
    asking systemd. None when neither the unit nor a state file exists (the tuner is not installed)."""
    unit_path = UNIT_PATH if unit_path is None else unit_path
    state, error = None, None
    try:
        with open(state_path) as handle:
            state = json.load(handle)
    except OSError as err:
        if err.errno != errno.ENOENT:
            error = 'cannot read %s: %s' % (state_path, err.strerror or err)
    except ValueError as err:
        error = 'cannot parse %s: %s' % (state_path, err)
    installed = os.path.exists(unit_path)
    if state is None and error is None and not installed:
        return None
    status = dict(state) if isinstance(state, dict) else {}
    if state is not None and not isinstance(state, dict):
        error = 'cannot parse %s: not a JSON object' % state_path
    pid = status.get('pid')
    status['installed'] = installed
    pid_valid = isinstance(pid, int) and not isinstance(pid, bool) and pid > 0
    status['running'] = pid_valid and status.get('phase') != 'stopped' and _is_tuner_process(pid, proc)
    if error is not None:
        status['state_error'] = error
    return status


def write_json_atomically(path, data):
    directory = os.path.dirname(path) or '.'
    if not os.path.isdir(directory):
        os.makedirs(directory, 0o755)
    fd, temporary = tempfile.mkstemp(prefix='.%s.' % os.path.basename(path), dir=directory)
    try:
        with os.fdopen(fd, 'w') as handle:
            json.dump(data, handle, sort_keys=True, indent=1)
            handle.write('\n')
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise


class Logger:
    """One line per message on stdout; with systemd's journal behind stdout, a <N> priority prefix."""

    PRIORITY = {'debug': 7, 'info': 6, 'warning': 4, 'error': 3}

    def __init__(self, level='info', stream=None):
        self.level = LOG_LEVELS.index(level)
        self.stream = stream or sys.stdout
        self.journal = bool(os.environ.get('JOURNAL_STREAM'))

    def log(self, level, text):
        if LOG_LEVELS.index(level) < self.level:
            return
        prefix = '<%d>' % self.PRIORITY[level] if self.journal else '%s: ' % level
        try:
            self.stream.write('%s%s\n' % (prefix, text))
            self.stream.flush()
        except OSError:
            pass


class Tuner:
    """Observe, decide, apply what changed, report. main() calls step() in a loop; tests call it with a
    fake kernel, a simulated ksmd and a fake clock."""

    RETRY_MIN = 2.0
    RETRY_MAX = 60.0

    def __init__(self, config, ksm=None, clock=None, ksmd_cpu=None, meminfo=None, watcher=None,
                 state_path=DEFAULT_STATE_PATH, logger=None, config_path=None):
        self.config = effective(config)
        self.ksm = ksm or _ksm.Ksm()
        self.clock = clock or time.monotonic
        self.ksmd_cpu = ksmd_cpu if ksmd_cpu is not None else KsmdCpu()
        self.meminfo = meminfo or _ksm.read_meminfo
        if not self.config['process_poll_seconds']:
            watcher = None
        elif watcher is None:
            watcher = ProcessWatcher()
        self.watcher = watcher
        self.state_path = state_path
        self.logger = logger or Logger(self.config['log_level'])
        self.config_path = config_path
        self.policy = Policy(self.config)
        self.decision = None
        self.phase_since = time.time()
        self.written = {}           # what the tuner last wrote: another writer shows as a difference
        self.error = None
        self.retry = self.RETRY_MIN
        self.next_poll = 0.0
        self.pending_new = []
        self.state_error = None
        self.started = time.time()
        self.own_cpu = []           # (monotonic time, own CPU seconds)
        self.state_written = None

    def log(self, level, text):
        self.logger.log(level, text)

    # -- observing ----------------------------------------------------------------------------------
    def _memory(self):
        try:
            info = self.meminfo()
        except (OSError, ValueError):
            return None, None
        return info.get('MemTotal'), info.get('MemAvailable', info.get('MemFree'))

    def observe(self, kick=None):
        now = self.clock()
        counters = self.ksm.read_state()
        if self.watcher is not None and now >= self.next_poll:
            try:
                self.pending_new.extend(self.watcher.poll(now))
            except OSError as err:
                self.log('warning', 'cannot list processes: %s' % err)
            self.next_poll = now + self.config['process_poll_seconds']
        total, available = self._memory()
        new, self.pending_new = self.pending_new, []
        return Observation(now, counters, self.ksmd_cpu(now), total, available, new, kick)

    # -- one round ----------------------------------------------------------------------------------
    def step(self, kick=None):
        """Observe, decide, apply. Returns the seconds until the next round."""
        try:
            obs = self.observe(kick)
            decision = self.policy.step(obs)
            if not self._apply(decision, obs.counters):
                return LOCK_RETRY
        except (_ksm.KsmError, OSError) as err:
            return self._failed(err)
        if self.error is not None:
            self.log('info', 'recovered: %s' % self.error)
            self.error = None
            self.retry = self.RETRY_MIN
        self._report(decision, obs)
        return decision.next_check

    def _failed(self, err):
        """Log a failure once (and when it changes), keep going with a growing pause: no crash loop."""
        message = getattr(err, 'msg', None) or str(err)
        if isinstance(err, _ksm.KsmUnavailable):
            phase = 'unavailable'
        else:
            phase = 'error'
        if message != self.error:
            self.log('error', '%s; retrying in %d s (then less often, up to every %d s)'
                     % (message, self.retry, self.RETRY_MAX))
            self.error = message
        self.decision = None
        self._write_state({'phase': phase, 'reason': message})
        wait, self.retry = self.retry, min(self.retry * 2, self.RETRY_MAX)
        return wait

    def _apply(self, decision, state):
        """Write the knobs of a decision that differ from the live values, in the kernel's order.

        Every write of the tuner goes through here, under the host-wide lock of KSM writers (the modules
        take it too), planned against the values read again under the lock: a module's change and the
        tuner's never interleave. Returns False, having written nothing, when another writer holds the
        lock for longer than LOCK_WAIT (the next round decides again)."""
        wanted = decision.knobs()
        if all(state.get(name) == value for name, value in wanted.items()):
            return True             # nothing to write, nothing to lock
        try:
            with _ksm.host_lock(timeout=LOCK_WAIT, who=PROGRAM):
                state = self.ksm.read_state()
                changed_behind = sorted(name for name, value in self.written.items()
                                        if name in state and name in wanted and state[name] != value and not (
                                            name == 'run' and value == 0 and state[name] == 2))
                if changed_behind:
                    self.log('warning', 'another writer changed %s (ksmtuned? a hand-written value?); setting it '
                             'back' % ', '.join('%s to %s' % (name, state[name]) for name in changed_behind))
                writes, dummy = self.ksm.plan(state, wanted)
                if writes:
                    self.ksm.apply(writes, state)
        except _ksm.KsmLockTimeout as err:
            self.log('info', '%s; deciding again in %d s' % (err.msg, LOCK_RETRY))
            return False
        self.written.update(wanted)
        return True

    # -- reporting ----------------------------------------------------------------------------------
    def _own_cpu_percent(self, now):
        times = os.times()
        self.own_cpu.append((now, times[0] + times[1]))
        while len(self.own_cpu) > 2 and self.own_cpu[0][0] < now - self.config['budget_window']:
            self.own_cpu.pop(0)
        (t0, c0), (t1, c1) = self.own_cpu[0], self.own_cpu[-1]
        return round(100.0 * (c1 - c0) / (t1 - t0), 3) if t1 > t0 else None

    def _report(self, decision, obs):
        previous = self.decision
        self.decision = decision
        changed = previous is None or previous.phase != decision.phase or previous.rate() != decision.rate()
        if changed:
            self.phase_since = time.time() if previous is None or previous.phase != decision.phase \
                else self.phase_since
            self.log('info', 'phase=%s run=%d pages_to_scan=%d sleep_millisecs=%d: %s'
                     % (decision.phase, decision.run, decision.pages_to_scan, decision.sleep_millisecs,
                        decision.reason))
        else:
            self.log('debug', 'phase=%s sharing=%d full_scans=%s last_gain=%s ksmd_cpu=%s'
                     % (decision.phase, sharing_of(obs.counters), obs.counters.get('full_scans'),
                        self.policy.last_gain, obs.ksmd_cpu))
        if not changed and self.state_written is not None and obs.time - self.state_written < STATE_EVERY:
            return
        self.state_written = obs.time
        ksmd = self.policy.ksmd_cpu_percent(self.config['budget_window'])
        self._write_state({
            'phase': decision.phase,
            'reason': decision.reason,
            'run': decision.run,
            'pages_to_scan': decision.pages_to_scan,
            'sleep_millisecs': decision.sleep_millisecs,
            'pages_sharing': obs.counters.get('pages_sharing'),
            'ksm_zero_pages': obs.counters.get('ksm_zero_pages'),
            'full_scans': obs.counters.get('full_scans'),
            'last_gain': self.policy.last_gain,
            'ksmd_cpu_percent': None if ksmd is None else round(ksmd, 3),
            'own_cpu_percent': self._own_cpu_percent(obs.time),
            'cpu_budget_percent': self.config['cpu_budget'],
            'budget_window': self.config['budget_window'],
            'since': _iso(self.phase_since),
        })

    def _write_state(self, fields):
        if not self.state_path:
            return
        data = {'version': VERSION, 'pid': os.getpid(), 'config': self.config_path, 'updated': _iso(time.time()),
                'started': _iso(self.started)}
        data.update(fields)
        try:
            write_json_atomically(self.state_path, data)
            self.state_error = None
        except OSError as err:
            if self.state_error != str(err):
                self.log('warning', 'cannot write the state file %s: %s' % (self.state_path, err))
                self.state_error = str(err)

    # -- stopping -----------------------------------------------------------------------------------
    def resting_decision(self):
        """What ksmd is left doing when the tuner stops: the idle rate (merged pages stay merged, new
        memory still merges slowly, at idle cost); run=0 instead while the pressure gate is closed."""
        c = self.config
        if self.decision is not None and self.decision.phase == GATED:
            return Decision(0, 0, 0, 'stopped', 'tuner stopped: pressure gate closed, ksmd stays stopped', 0)
        return Decision(1, c['idle_pages_to_scan'], c['idle_sleep_millisecs'], 'stopped',
                        'tuner stopped: ksmd left at the idle rate, merged pages kept', 0)

    def rest(self):
        decision = self.resting_decision()
        try:
            state = self.ksm.read_state()
            self._apply(decision, state)
        except (_ksm.KsmError, OSError) as err:
            self.log('error', 'could not leave ksmd in the resting state: %s' % (getattr(err, 'msg', None) or err))
            self._write_state({'phase': 'stopped', 'reason': 'stopped; resting state not set: %s' % err})
            return False
        self.log('info', 'phase=stopped run=%d pages_to_scan=%d sleep_millisecs=%d: %s'
                 % (decision.run, decision.pages_to_scan, decision.sleep_millisecs, decision.reason))
        self._write_state({'phase': 'stopped', 'reason': decision.reason, 'run': decision.run,
                           'pages_to_scan': decision.pages_to_scan, 'sleep_millisecs': decision.sleep_millisecs})
        return True


class Signals:
    """SIGHUP/SIGUSR1 kick, SIGTERM/SIGINT stop; any of them ends the current wait at once."""

    KICKS = (signal.SIGHUP, signal.SIGUSR1)
    STOPS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self):
        self.kick = None
        self.stop = None
        self.read_fd, self.write_fd = os.pipe()
        for fd in (self.read_fd, self.write_fd):
            os.set_blocking(fd, False)
        signal.set_wakeup_fd(self.write_fd)
        for number in self.KICKS + self.STOPS:
            signal.signal(number, self._handle)

    def _handle(self, number, frame):
        name = signal.Signals(number).name
        if number in self.STOPS:
            self.stop = name
        else:
            self.kick = name

    def wait(self, seconds):
        if self.stop or self.kick:
            return
        try:
            select.select([self.read_fd], [], [], max(seconds, 0))
        except InterruptedError:  # pragma: no cover - PEP 475 retries; kept for safety
            pass
        try:
            while os.read(self.read_fd, 512):
                pass
        except (BlockingIOError, InterruptedError):
            pass

    def take_kick(self):
        kick, self.kick = self.kick, None
        return kick


def notify_systemd(message, environ=None):
    """Send a sd_notify(3) message (READY=1, RELOADING=1, ...) to systemd when it asked for them
    ($NOTIFY_SOCKET, set for Type=notify units); True when sent."""
    address = (environ if environ is not None else os.environ).get('NOTIFY_SOCKET')
    if not address or address[0] not in '/@':
        return False
    if address[0] == '@':
        address = '\0' + address[1:]      # an abstract socket
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        sock.connect(address)
        sock.sendall(message.encode('ascii'))
        return True
    except OSError:
        return False
    finally:
        sock.close()


def build_parser():
    parser = argparse.ArgumentParser(
        prog=PROGRAM, description='Adaptive KSM tuner of samepage.ksm: scans fast while merging pays, idles '
                                  'cheaply once it does not, within a CPU budget. SIGHUP or SIGUSR1 start a '
                                  'fast phase; SIGTERM stops it, leaving ksmd at the idle rate.')
    parser.add_argument('--config', default=None,
                        help='INI file with a [tuner] section (default %s; defaults apply when that file '
                             'does not exist)' % DEFAULT_CONFIG_PATH)
    parser.add_argument('--state', default=DEFAULT_STATE_PATH,
                        help='JSON state file, rewritten atomically on every change of phase or rate and at '
                             'least every %d s (default %%(default)s; empty: none)' % STATE_EVERY)
    parser.add_argument('--check-config', action='store_true', help='validate the configuration and exit')
    parser.add_argument('--once', action='store_true',
                        help='observe once, print what the policy decides and exit (writes nothing)')
    parser.add_argument('--version', action='version', version='%s %s' % (PROGRAM, VERSION))
    return parser


def main(argv=None):
    options = build_parser().parse_args(argv)
    path = options.config or DEFAULT_CONFIG_PATH
    try:
        if options.config is None and not os.path.exists(path):
            config = dict(DEFAULTS)
        else:
            config = load_config(path)
    except ConfigError as err:
        sys.stderr.write('%s: refusing to start: %s\n' % (PROGRAM, err.msg))
        sys.stderr.flush()
        return EXIT_CONFIG
    if options.check_config:
        sys.stdout.write('%s: %s is valid\n' % (PROGRAM, path))
        return 0
    tuner = Tuner(config, state_path=options.state or None, config_path=path)
    if options.once:
        # A look, not a change: one policy step that would otherwise leave ksmd at the fast rate.
        tuner.watcher = None
        try:
            decision = tuner.policy.step(tuner.observe())
        except (_ksm.KsmError, OSError) as err:
            sys.stderr.write('%s: %s\n' % (PROGRAM, getattr(err, 'msg', None) or err))
            return 1
        sys.stdout.write('%r\n' % (decision,))
        return 0
    signals = Signals()
    tuner.log('info', '%s %s started (pid %d, configuration %s): %s'
              % (PROGRAM, VERSION, os.getpid(), path,
                 ', '.join('%s=%s' % (s.key, config[s.key]) for s in SCHEMA)))
    notify_systemd('READY=1\nSTATUS=configuration %s loaded' % path)
    while not signals.stop:
        wait = tuner.step(signals.take_kick())
        signals.wait(wait)
    tuner.log('info', 'stopping (%s)' % signals.stop)
    return 0 if tuner.rest() else 1
