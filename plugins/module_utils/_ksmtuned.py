# -*- coding: utf-8 -*-
# Copyright: (c) 2026, samepage.ksm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""ksmtuned's configuration file and the libvirt hook that kicks the KSM tuner that runs.

ksmtuned (the shell daemon of the ksmtuned/ksm-control-daemon packages) sources /etc/ksmtuned.conf with
bash, as root, once when it starts. Each value must therefore be exactly what its rule allows: a plain
integer within its range, an absolute path of plain characters, or nothing. SETTINGS is the catalogue
(roles/ksmtuned/vars/main.yml holds the same ranges for the role's early checks; a unit test keeps the two
in step).
"""

import re
import shlex

from ansible_collections.samepage.ksm.plugins.module_utils._errors import SamepageError

CONFIG_PATH = '/etc/ksmtuned.conf'
HOOK_DIR = '/etc/libvirt/hooks/qemu.d'
HOOK_NAME = 'samepage-ksmtuned'
HOOK_MODE = 0o755
CONFIG_MODE = 0o644

U32 = 4294967295


class Setting:
    """One key of ksmtuned.conf: the option's name, the key in the file, its range and ksmtuned's default."""

    def __init__(self, name, key, default, minimum, maximum, why=''):
        self.name = name
        self.key = key
        self.default = default
        self.minimum = minimum
        self.maximum = maximum
        self.why = why


# In the order of the file. Defaults are ksmtuned's own (the script's values when a key is missing).
SETTINGS = (
    Setting('monitor_interval', 'KSM_MONITOR_INTERVAL', 60, 1, 86400),
    Setting('sleep_msec', 'KSM_SLEEP_MSEC', 10, 1, U32),
    Setting('npages_boost', 'KSM_NPAGES_BOOST', 300, 0, U32),
    Setting('npages_decay', 'KSM_NPAGES_DECAY', -50, -U32, 0,
            ' (ksmtuned adds it to pages_to_scan while memory is not short, so it must not be positive)'),
    Setting('npages_min', 'KSM_NPAGES_MIN', 64, 1, U32),
    Setting('npages_max', 'KSM_NPAGES_MAX', 1250, 1, U32),
    Setting('thres_coef', 'KSM_THRES_COEF', 20, 0, 100),
    Setting('thres_const', 'KSM_THRES_CONST', 2048, 0, U32),
)
BY_NAME = dict((setting.name, setting) for setting in SETTINGS)

# An absolute path of plain characters: bash sources the file, so nothing it would interpret.
LOGFILE_PATTERN = re.compile(r'/[A-Za-z0-9._/-]+')


class KsmtunedConfigError(SamepageError):
    """A value ksmtuned.conf cannot hold."""


def defaults():
    values = dict((setting.name, setting.default) for setting in SETTINGS)
    values.update(logfile='', debug=False)
    return values


INTEGER = re.compile(r'[-+]?[0-9]{1,20}')
BOOLEANS = {'true': True, 'yes': True, 'on': True, '1': True, 'false': False, 'no': False, 'off': False, '0': False}


def _integer(setting, value, prefix):
    """An int, or the plain decimal text of one (what a template gives); never a bool or a float."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and INTEGER.fullmatch(value):
        return int(value)
    raise KsmtunedConfigError('%s%s=%r is not an integer (%s in %s)' % (
        prefix, setting.name, value, setting.key, CONFIG_PATH), option=prefix + setting.name)


def validate(settings, prefix='settings.'):
    """Every setting checked against its rule; returns the complete mapping (ksmtuned's defaults filled in
    for the keys not given, or given as None)."""
    if not isinstance(settings, dict):
        raise KsmtunedConfigError('%s must be a mapping of ksmtuned settings, not %r' % (prefix.rstrip('.'), settings),
                                  option=prefix.rstrip('.'))
    values = defaults()
    unknown = sorted(str(name) for name in settings if name not in values)
    if unknown:
        raise KsmtunedConfigError('%s%s is not a ksmtuned setting; known: %s' % (
            prefix, unknown[0], ', '.join(sorted(values))), option=prefix + unknown[0])
    for name, value in settings.items():
        if value is not None:
            values[name] = value
    for setting in SETTINGS:
        value = _integer(setting, values[setting.name], prefix)
        if not setting.minimum <= value <= setting.maximum:
            raise KsmtunedConfigError('%s%s=%d is out of range for %s: %d to %d%s' % (
                prefix, setting.name, value, setting.key, setting.minimum, setting.maximum, setting.why),
                option=prefix + setting.name)
        values[setting.name] = value
    if values['npages_min'] > values['npages_max']:
        raise KsmtunedConfigError('%snpages_min=%d is greater than %snpages_max=%d: ksmtuned keeps pages_to_scan '
                                  'between the two' % (prefix, values['npages_min'], prefix, values['npages_max']),
                                  option=prefix + 'npages_min')
    logfile = values['logfile']
    if not isinstance(logfile, str) or (logfile and not LOGFILE_PATTERN.fullmatch(logfile)):
        raise KsmtunedConfigError(
            '%slogfile=%r is not valid for LOGFILE: an absolute path of letters, digits and . _ / - only '
            '(bash sources %s as root), or empty for the journal' % (prefix, logfile, CONFIG_PATH),
            option=prefix + 'logfile')
    debug = values['debug']
    if isinstance(debug, str) and debug.lower() in BOOLEANS:
        debug = BOOLEANS[debug.lower()]
    if not isinstance(debug, bool):
        raise KsmtunedConfigError('%sdebug=%r is not a boolean' % (prefix, debug), option=prefix + 'debug')
    values['debug'] = debug
    return values


def render_config(values, path=CONFIG_PATH, manager='samepage.ksm'):
    """The text of ksmtuned.conf for validated values."""
    lines = [
        '# %s - written by Ansible (%s); local changes are overwritten.' % (path, manager),
        '# ksmtuned sources this file with bash, as root, once when it starts (a reload does not re-read it).',
        '# Every monitor interval it compares free memory (MemFree + Buffers + Cached) with a threshold of',
        '# max(MemTotal * KSM_THRES_COEF / 100, KSM_THRES_CONST kB): while memory is plentiful it stops ksmd',
        '# (run=0); otherwise it raises pages_to_scan by KSM_NPAGES_BOOST when free memory is below the threshold',
        '# and changes it by KSM_NPAGES_DECAY when not, within [KSM_NPAGES_MIN, KSM_NPAGES_MAX].',
        '',
        '# Seconds between two adjustments.',
        'KSM_MONITOR_INTERVAL=%d' % values['monitor_interval'],
        '',
        '# sleep_millisecs for a 16 GiB host; smaller hosts sleep more, bigger ones less (never below 10).',
        'KSM_SLEEP_MSEC=%d' % values['sleep_msec'],
        '',
        'KSM_NPAGES_BOOST=%d' % values['npages_boost'],
        'KSM_NPAGES_DECAY=%d' % values['npages_decay'],
        'KSM_NPAGES_MIN=%d' % values['npages_min'],
        'KSM_NPAGES_MAX=%d' % values['npages_max'],
        '',
        'KSM_THRES_COEF=%d' % values['thres_coef'],
        'KSM_THRES_CONST=%d' % values['thres_const'],
    ]
    if values['logfile']:
        # The pattern leaves nothing for bash to interpret; quoted all the same (a no-op for such a path).
        lines += ['', '# Debug lines go to this file (otherwise to the journal).',
                  'LOGFILE=%s' % shlex.quote(values['logfile'])]
    if values['debug']:
        lines += ['', '# Any DEBUG value turns debugging on, 0 included; the line is left out when debugging is off.',
                  'DEBUG=1']
    return '\n'.join(lines) + '\n'


def render_hook(path):
    """The libvirt qemu hook: when a guest has started or has been released, ask the KSM tuner that runs to
    adjust at once. It must never fail (a failing prepare/start hook stops the guest) and never call libvirt
    (deadlock)."""
    return '''#!/bin/sh
# %s - written by Ansible (samepage.ksm).
# libvirt (6.5 and newer) runs every executable in qemu.d as: <hook> <guest> <operation> <sub-operation> <extra>,
# with the guest's XML on standard input. When a guest has started or has been released, ask the KSM tuner
# that runs to adjust KSM at once: the samepage tuner (samepage.ksm.ksm, ksm_tuner: samepage) starts a
# fast phase on reload (SIGHUP); ksmtuned (SIGUSR1) adjusts at once instead of at the end of its monitor
# interval. Only an active unit is reloaded (reload-or-restart would start a stopped one), and the two
# never run together (the samepage tuner's unit conflicts with ksmtuned's).
# A hook must not call libvirt (it would deadlock) and a non-zero exit from prepare/start would stop the
# guest from starting, so this never fails and never waits.
cat >/dev/null 2>&1
case "$2" in
    started|release)
        for unit in samepage-ksm-tuner.service ksmtuned.service; do
            if systemctl -q is-active "$unit" 2>/dev/null; then
                systemctl --no-block reload "$unit" >/dev/null 2>&1
            fi
        done
        ;;
esac
exit 0
''' % path
