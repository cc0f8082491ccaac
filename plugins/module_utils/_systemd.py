# -*- coding: utf-8 -*-
# Copyright: (c) 2026, samepage.ksm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""A small systemctl wrapper for samepage.ksm.ksm_service.

Commands are argument lists run with LC_ALL=C (never shell strings) through a ``run_command`` callable
with AnsibleModule.run_command's signature, so tests can hand in a fake that follows systemd's real
behaviour. The state of several units is read with ONE ``systemctl show`` call.

Private to samepage.ksm (leading underscore). Standard library only (plus the collection's _errors for
the neutral base of its exception), Python 3.8+ syntax.
"""

import os

from ansible_collections.samepage.ksm.plugins.module_utils._errors import SamepageError

# sd_booted(3): systemd is PID 1 exactly when this directory exists.
RUNTIME_DIR = '/run/systemd/system'

# What `systemctl show` is asked for, and the key each property gets in our status dicts.
PROPERTIES = (
    ('Id', 'unit'),
    ('LoadState', 'load_state'),
    ('ActiveState', 'active_state'),
    ('SubState', 'sub_state'),
    ('UnitFileState', 'unit_file_state'),
    ('MainPID', 'main_pid'),
    ('ConditionResult', 'condition_result'),
    ('ConditionTimestampMonotonic', 'condition_timestamp'),
    ('Result', 'result'),
    ('Requires', 'requires'),
    ('CanReload', 'can_reload'),
    ('NeedDaemonReload', 'need_daemon_reload'),
    ('FragmentPath', 'fragment_path'),
)

# The part of a status that is reported to users (units.<name>.before/after).
REPORTED = ('unit', 'load_state', 'active_state', 'sub_state', 'unit_file_state', 'main_pid',
            'condition_result')

# `systemctl is-enabled` exits 0 for these: the unit starts at boot, or is pulled in by something that
# does (static, indirect, generated, ...). The others (disabled, masked, masked-runtime, linked, ...)
# exit non-zero.
ENABLED_STATES = frozenset(('enabled', 'enabled-runtime', 'alias', 'static', 'indirect', 'generated',
                            'transient'))
# Enabled-looking states that `systemctl disable` cannot change (no [Install] section, or not a file).
UNDISABLEABLE_STATES = frozenset(('static', 'generated', 'transient'))
MASKED_STATES = frozenset(('masked', 'masked-runtime'))
# "activating" counts as running, as in ansible.builtin.systemd: a start job is already under way.
RUNNING_STATES = frozenset(('active', 'activating', 'reloading'))

ENVIRONMENT = {'LC_ALL': 'C', 'SYSTEMD_PAGER': '', 'SYSTEMD_COLORS': '0'}


class SystemdError(SamepageError):
    """systemctl failed, or systemd is not there to ask."""


def booted(runtime_dir=None):
    """True when systemd runs as PID 1 (the test sd_booted(3) makes)."""
    return os.path.isdir(runtime_dir or RUNTIME_DIR)


def parse_show(text):
    """Blocks of `systemctl show` output (one per unit, blank-line separated) -> list of {Property: value}."""
    blocks = []
    current = None
    for line in text.splitlines():
        if not line.strip():
            current = None
            continue
        if current is None:
            current = {}
            blocks.append(current)
        key, sep, value = line.partition('=')
        if sep:
            current[key] = value
    return blocks


def _yes(value):
    return value.strip().lower() in ('yes', 'true', '1')


def status_from_show(block, name):
    """One `systemctl show` block -> the status dict the module works with (keys of PROPERTIES)."""
    status = {}
    for prop, key in PROPERTIES:
        status[key] = block.get(prop, '')
    status['unit'] = status['unit'] or name
    for key in ('main_pid', 'condition_timestamp'):
        try:
            status[key] = int(status[key] or 0)
        except ValueError:
            status[key] = 0
    status['requires'] = status['requires'].split()
    status['can_reload'] = _yes(status['can_reload'])
    status['need_daemon_reload'] = _yes(status['need_daemon_reload'])
    return status


def exists(status):
    """The unit is known to systemd (a masked unit counts: masking does not remove its file)."""
    return status.get('load_state') not in ('', 'not-found')


def is_masked(status):
    return status.get('load_state') == 'masked' or status.get('unit_file_state') in MASKED_STATES


def is_enabled(status):
    return status.get('unit_file_state') in ENABLED_STATES


def is_running(status):
    return status.get('active_state') in RUNNING_STATES


def condition_failed(status):
    """The last start was skipped because a Condition...= was not met. (ConditionResult reads 'no' also
    for a unit whose conditions were never checked, so the time of the check must be set.)"""
    return status.get('condition_result') == 'no' and bool(status.get('condition_timestamp'))


def describe(status):
    """One line for diffs and messages: 'active (running), enabled'."""
    if not exists(status):
        return 'not installed'
    text = '%s (%s), %s' % (status.get('active_state') or '?', status.get('sub_state') or '?',
                            status.get('unit_file_state') or 'unknown')
    if condition_failed(status) and not is_running(status):
        text += ', start condition not met'
    return text


def reported(status):
    return {key: status.get(key) for key in REPORTED}


class Systemctl:
    """Runs systemctl through ``run_command(args, check_rc=False, environ_update=...)``."""

    def __init__(self, run_command, binary='systemctl'):
        self.run_command = run_command
        self.binary = binary

    def _run(self, args):
        rc, out, err = self.run_command([self.binary] + list(args), check_rc=False,
                                        environ_update=dict(ENVIRONMENT))
        return rc, out or '', err or ''

    @staticmethod
    def _error(args, rc, out, err):
        text = ' '.join(line.strip() for line in (err or out).strip().splitlines() if line.strip())
        return SystemdError('systemctl %s failed (rc=%s): %s' % (' '.join(args), rc, text or 'no output'),
                            rc=rc, stdout=out, stderr=err)

    def show(self, units):
        """{unit: status} for every unit named, in ONE `systemctl show` call. Missing units are
        reported by systemd itself (load_state 'not-found'), not as errors."""
        units = list(units)
        args = ['show', '--no-pager', '-p', ','.join(prop for prop, dummy in PROPERTIES), '--'] + units
        rc, out, err = self._run(args)
        if rc != 0:
            raise self._error(args, rc, out, err)
        blocks = parse_show(out)
        result = {}
        if len(blocks) == len(units):
            # systemctl prints one block per argument, in argument order (an alias shows its target's Id).
            for name, block in zip(units, blocks):
                result[name] = status_from_show(block, name)
        else:
            by_id = {block.get('Id'): block for block in blocks}
            for name in units:
                result[name] = status_from_show(by_id.get(name, {'LoadState': 'not-found'}), name)
        return result

    def is_enabled(self, unit):
        """The word `systemctl is-enabled` prints (enabled, disabled, static, masked, ...), or 'not-found'."""
        args = ['is-enabled', '--', unit]
        rc, out, err = self._run(args)
        word = out.strip().splitlines()[0].strip() if out.strip() else ''
        if word:
            return word
        if 'No such file' in err or 'not found' in err or 'not-found' in err:
            return 'not-found'
        raise self._error(args, rc, out, err)

    def daemon_reload(self):
        """systemctl daemon-reload: systemd reads the unit files again; raises SystemdError."""
        args = ['daemon-reload']
        rc, out, err = self._run(args)
        if rc != 0:
            raise self._error(args, rc, out, err)

    def call(self, verb, unit):
        """start, stop, restart, reload, enable, disable, unmask ... one unit; raises SystemdError."""
        args = [verb, '--', unit]
        rc, out, err = self._run(args)
        if rc != 0:
            raise self._error(args, rc, out, err)
        return out, err


def connect(module, no_systemd_message):
    """A Systemctl for an AnsibleModule, or SystemdError: no_systemd_message when systemd is not PID 1,
    another when systemctl is missing although systemd runs."""
    if not booted():
        raise SystemdError(no_systemd_message)
    binary = module.get_bin_path('systemctl')
    if not binary:
        raise SystemdError('systemctl is not installed on this host, although systemd appears to run (%s exists).'
                           % RUNTIME_DIR)
    return Systemctl(module.run_command, binary)


def detect_virt(run_command, binary):
    """What `systemd-detect-virt` says ('kvm', 'none', ...), or None when it cannot be asked."""
    if not binary:
        return None
    try:
        dummy, out, dummy2 = run_command([binary], check_rc=False, environ_update=dict(ENVIRONMENT))
    except OSError:
        return None
    word = (out or '').strip()
    return word or None
