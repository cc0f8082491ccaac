# -*- coding: utf-8 -*-
# Copyright: (c) 2026, samepage.ksm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""A fake systemctl (and systemd-detect-virt) that answers like systemd does, for ksm_service tests.

``FakeSystemd.run_command`` has AnsibleModule.run_command's signature; monkeypatch it onto the module
class. It keeps units with a load state, an enablement (what `systemctl is-enabled` prints), a mask,
an active state, Requires= dependencies and start conditions, and follows systemd's rules for them:

* a masked unit refuses every job but stop: ``Failed to start ksm.service: Unit ksm.service is masked.``
  (rc 1), also when it is only a Requires= dependency of the unit started;
* starting a unit starts what it Requires= first; stopping a unit stops the units that require it
  first; restarting a unit restarts (try-restart) the running units that require it;
* a start whose condition is not met succeeds (rc 0) and leaves the unit inactive with
  ConditionResult=no and a condition timestamp (ConditionResult also reads ``no`` for a unit whose
  conditions were never checked, with timestamp 0);
* reload needs ExecReload (``Job type reload is not applicable``, rc 3) and an active unit
  (``ksmtuned.service is not active, cannot reload.``, rc 1);
* a masked unit is loaded from /dev/null: ``systemctl show`` gives it no Requires=, and it keeps running
  if it ran (masking does not stop);
* restarting a unit leaves the units that require it ``activating`` (MainPID 0) for a moment: systemctl
  waits for the restart job only, not for the try-restart jobs it propagates;
* ``systemctl show -p A,B u1 u2`` prints one block per unit, in argument order, blank-line separated;
  a unit without a file reads LoadState=not-found with an empty UnitFileState;
* ``systemctl is-enabled`` prints enabled/disabled/static/masked/... and exits 0 only for the enabled-like
  states; for a missing unit systemd 252 prints nothing and says ``No such file or directory`` (rc 1),
  systemd 257 prints ``not-found`` (rc 4);
* without systemd as PID 1 every call fails with systemctl's real message.

``events`` records what "systemd" did, in order (('start', unit), ('stop', unit), ...), and ``calls``
every argument list, so tests can assert ordering and that check mode ran nothing but queries.

The messages, exit codes and show output were compared with real systemd 252 (Debian 12) and 257
(Debian 13) in lab guests; tests/lab/test_ksm_service.py repeats that comparison.
"""

ENABLED_LIKE = ('enabled', 'enabled-runtime', 'alias', 'static', 'indirect', 'generated', 'transient')
QUERIES = ('show', 'is-enabled', 'is-active', 'status', 'cat', 'list-unit-files')
NOT_BOOTED = ("System has not been booted with systemd as init system (PID 1). Can't operate.\n"
              'Failed to connect to bus: Host is down\n')


class FakeUnit:

    def __init__(self, name, kind='oneshot', enabled='enabled', active=False, masked=False, requires=(),
                 can_reload=False, condition=True, installed=True, need_daemon_reload=False):
        self.name = name
        self.kind = kind                # 'oneshot' (RemainAfterExit=yes), 'forking' or 'timer' (active: waiting)
        self.enablement = enabled       # is-enabled word when not masked
        self.masked = masked
        self.requires = list(requires)
        self.can_reload = can_reload
        self.condition = condition      # whether its Condition...= lines hold on this host
        self.installed = installed      # a unit file exists (a mask alone is not a unit file)
        self.need_daemon_reload = need_daemon_reload
        self.active = False
        self.settling = False           # activating for one `show`, after a propagated restart
        self.pid = 0
        self.condition_result = 'no'
        self.condition_timestamp = 0
        self.reloads = 0
        if active:
            self.active = True
            self.condition_result = 'yes'
            self.condition_timestamp = 1000


class FakeSystemd:

    def __init__(self, units=(), booted=True, virt='none', version=252):
        self.units = {unit.name: unit for unit in units}
        self.booted = booted
        self.version = version
        self.virt = virt
        self.calls = []
        self.events = []
        self._next_pid = 4000
        self._clock = 2000
        self.ksm_run = 0    # what ksm.service's ExecStart/ExecStop (ksmctl) leave in /sys/kernel/mm/ksm/run

    # -- the command line --------------------------------------------------------------------------
    def run_command(self, args, check_rc=False, environ_update=None, **kwargs):
        args = list(args)
        self.calls.append(args)
        assert environ_update and environ_update.get('LC_ALL') == 'C', 'systemctl must run with LC_ALL=C'
        program = args[0].rsplit('/', 1)[-1]
        if program == 'systemd-detect-virt':
            return (0 if self.virt != 'none' else 1), self.virt + '\n', ''
        assert program == 'systemctl', args
        if not self.booted:
            return 1, '', NOT_BOOTED
        words = [arg for arg in args[1:] if arg != '--']
        verb = words[0]
        if verb == 'show':
            return self._show(words[1:])
        handler = getattr(self, '_' + verb.replace('-', '_'))
        return handler(words[1:])

    def mutating_calls(self):
        return [call for call in self.calls
                if call[0].rsplit('/', 1)[-1] == 'systemctl' and call[1] not in QUERIES]

    # -- helpers -------------------------------------------------------------------------------
    def unit(self, name):
        return self.units.get(name)

    def _known(self, name):
        unit = self.units.get(name)
        return unit is not None and (unit.installed or unit.masked)

    def _load_state(self, unit):
        if unit is None:
            return 'not-found'
        if unit.masked:
            return 'masked'
        return 'loaded' if unit.installed else 'not-found'

    def _file_state(self, unit):
        if unit is None:
            return ''
        if unit.masked:
            return 'masked'
        return unit.enablement if unit.installed else ''

    def _required_by(self, name):
        return [unit for unit in self.units.values() if name in unit.requires and unit.installed]

    def _tick(self):
        self._clock += 1000
        return self._clock

    # -- show / is-enabled -------------------------------------------------------------------------
    def _show(self, words):
        props = None
        names = []
        index = 0
        while index < len(words):
            word = words[index]
            if word in ('-p', '--property'):
                props = words[index + 1].split(',')
                index += 2
                continue
            if word.startswith('--property='):
                props = word.split('=', 1)[1].split(',')
            elif not word.startswith('-'):
                names.append(word)
            index += 1
        blocks = []
        for name in names:
            unit = self.units.get(name)
            masked = unit is not None and unit.masked
            active = unit is not None and unit.active
            settling = active and unit.settling
            values = {
                'Id': name,
                'LoadState': self._load_state(unit),
                'ActiveState': 'activating' if settling else 'active' if active else 'inactive',
                'SubState': 'start' if settling else
                ('running' if unit.kind == 'forking' else 'waiting' if unit.kind == 'timer' else 'exited')
                if active else 'dead',
                'UnitFileState': self._file_state(unit),
                'MainPID': str(unit.pid if unit is not None and not settling else 0),
                'ConditionResult': unit.condition_result if unit is not None else 'no',
                'ConditionTimestampMonotonic': str(unit.condition_timestamp if unit is not None else 0),
                'Result': 'success',
                'Requires': ' '.join(['sysinit.target', 'system.slice'] + unit.requires)
                if unit is not None and unit.installed and not masked else '',
                'CanReload': 'yes' if unit is not None and unit.can_reload and not masked else 'no',
                'NeedDaemonReload': 'yes' if unit is not None and unit.need_daemon_reload else 'no',
                'FragmentPath': '/etc/systemd/system/%s' % name if masked else
                '/usr/lib/systemd/system/%s' % name if unit is not None and unit.installed else '',
            }
            if unit is not None:
                unit.settling = False
            keys = props if props is not None else sorted(values)
            # systemd prints the properties in its own (bus table) order, not in the order asked
            blocks.append('\n'.join('%s=%s' % (key, values[key]) for key in sorted(keys) if key in values))
        return 0, '\n\n'.join(blocks) + '\n', ''

    def _is_enabled(self, words):
        name = words[0]
        unit = self.units.get(name)
        if not self._known(name):
            if self.version >= 257:
                return 4, 'not-found\n', ''
            return 1, '', 'Failed to get unit file state for %s: No such file or directory\n' % name
        word = self._file_state(unit)
        return (0 if word in ENABLED_LIKE else 1), word + '\n', ''

    # -- jobs --------------------------------------------------------------------------------------
    def _job_refused(self, verb, name, unit_name=None):
        """systemd's answer when a start-like job cannot be queued for `name` (or its dependency)."""
        target = unit_name or name
        unit = self.units.get(target)
        if not self._known(target):
            return 5, '', 'Failed to %s %s: Unit %s not found.\n' % (verb, name, target)
        if unit.masked:
            return 1, '', 'Failed to %s %s: Unit %s is masked.\n' % (verb, name, target)
        return None

    def _check_start(self, verb, name):
        refused = self._job_refused(verb, name)
        if refused:
            return refused
        for dep in self.units[name].requires:
            refused = self._job_refused(verb, name, dep)
            if refused:
                return refused
        return None

    def _activate(self, name):
        unit = self.units[name]
        for dep in unit.requires:
            if not self.units[dep].active:
                self._activate(dep)
        if unit.active:
            return
        unit.condition_timestamp = self._tick()
        if not unit.condition:
            unit.condition_result = 'no'
            self.events.append(('skip', name))
            return
        unit.condition_result = 'yes'
        unit.active = True
        if unit.kind == 'forking':
            self._next_pid += 1
            unit.pid = self._next_pid
        if name == 'ksm.service':
            self.ksm_run = 1
        self.events.append(('start', name))

    def _deactivate(self, name):
        for other in self._required_by(name):
            if other.active:
                self._deactivate(other.name)
        unit = self.units[name]
        if not unit.active:
            return
        unit.active = False
        unit.pid = 0
        if name == 'ksm.service':
            self.ksm_run = 0
        self.events.append(('stop', name))

    def _start(self, words):
        name = words[0]
        refused = self._check_start('start', name)
        if refused:
            return refused
        self._activate(name)
        return 0, '', ''

    def _stop(self, words):
        name = words[0]
        unit = self.units.get(name)
        if unit is None or not (unit.installed or unit.masked or unit.active):
            return 5, '', 'Failed to stop %s: Unit %s not loaded.\n' % (name, name)
        self._deactivate(name)
        return 0, '', ''

    def _restart(self, words):
        name = words[0]
        refused = self._check_start('restart', name)
        if refused:
            return refused
        unit = self.units[name]
        dependants = [other.name for other in self._required_by(name) if other.active]
        if unit.active:
            unit.active = False
            unit.pid = 0
            self.events.append(('stop', name))
        self._activate(name)
        for other in dependants:        # JOB_TRY_RESTART propagated to the units that Require= it
            self.units[other].active = False
            self.units[other].pid = 0
            self.events.append(('stop', other))
            self._activate(other)
            self.units[other].settling = True
        return 0, '', ''

    def _reload(self, words):
        name = words[0]
        refused = self._job_refused('reload', name)
        if refused:
            return refused
        unit = self.units[name]
        if not unit.can_reload:
            return 3, '', 'Failed to reload %s: Job type reload is not applicable for unit %s.\n' % (name, name)
        if not unit.active:
            return 1, '', '%s is not active, cannot reload.\n' % name
        unit.reloads += 1
        self.events.append(('reload', name))
        return 0, '', ''

    def _enable(self, words):
        name = words[0]
        unit = self.units.get(name)
        if not self._known(name):
            if self.version >= 257:
                return 1, '', 'Failed to enable unit: Unit %s does not exist\n' % name
            return 1, '', 'Failed to enable unit: Unit file %s does not exist.\n' % name
        if unit.masked:
            if self.version >= 257:
                return 1, '', 'Failed to enable unit: Unit /etc/systemd/system/%s is masked\n' % name
            return 1, '', 'Failed to enable unit: Unit file /etc/systemd/system/%s is masked.\n' % name
        if unit.enablement in ('static', 'generated', 'transient', 'indirect'):
            return 0, '', ('The unit files have no installation config (WantedBy=, RequiredBy=, Also=,\n'
                           'Alias= settings in the [Install] section, and DefaultInstance= for template\n'
                           'units). This means they are not meant to be enabled or disabled using systemctl.\n')
        if unit.enablement != 'enabled':
            unit.enablement = 'enabled'
            self.events.append(('enable', name))
            return 0, '', ('Created symlink /etc/systemd/system/multi-user.target.wants/%s '
                           '\u2192 /lib/systemd/system/%s.\n' % (name, name))
        return 0, '', ''

    def _disable(self, words):
        name = words[0]
        unit = self.units.get(name)
        if not self._known(name):
            return 1, '', 'Failed to disable unit: Unit file %s does not exist.\n' % name
        if unit.masked:
            return 0, '', 'Unit /etc/systemd/system/%s is masked, ignoring.\n' % name
        if unit.enablement in ('enabled', 'enabled-runtime', 'alias'):
            unit.enablement = 'disabled'
            self.events.append(('disable', name))
            return 0, '', 'Removed "/etc/systemd/system/multi-user.target.wants/%s".\n' % name
        return 0, '', ''

    def _mask(self, words):
        name = words[0]
        err = ''
        if name not in self.units or not self.units[name].installed:
            err = 'Unit %s does not exist, proceeding anyway.\n' % name
        unit = self.units.setdefault(name, FakeUnit(name, installed=False, enabled=''))
        if not unit.masked:
            unit.masked = True
            self.events.append(('mask', name))
        return 0, '', err + 'Created symlink /etc/systemd/system/%s \u2192 /dev/null.\n' % name

    def _unmask(self, words):
        name = words[0]
        unit = self.units.get(name)
        if unit is not None and unit.masked:
            unit.masked = False
            self.events.append(('unmask', name))
            return 0, '', 'Removed "/etc/systemd/system/%s".\n' % name
        return 0, '', ''


# ---------------------------------------------------------------------------------------------------
# The unit sets the distributions ship (see the module's notes and the reference, section 4)

def two_units(active=True, enabled='enabled', condition=True, masked=False):
    """ksm.service (oneshot, RemainAfterExit) + ksmtuned.service (forking, Requires=ksm.service,
    ExecReload): Debian, Ubuntu with ksmtuned, RHEL, Fedora, Arch."""
    return [
        FakeUnit('ksm.service', 'oneshot', enabled=enabled, active=active, masked=masked,
                 condition=condition),
        FakeUnit('ksmtuned.service', 'forking', enabled=enabled, active=active, masked=masked,
                 requires=['ksm.service'], can_reload=True, condition=condition),
    ]


def debian(active=True, enabled='enabled', **kwargs):
    """What installing the ksmtuned package leaves on Debian: both enabled and running."""
    return FakeSystemd(two_units(active=active, enabled=enabled), **kwargs)


def rhel_guest(virt='kvm'):
    """RHEL's units carry ConditionVirtualization=no: inside a VM every start is skipped."""
    return FakeSystemd(two_units(active=False, enabled='disabled', condition=False), virt=virt)


def proxmox(active=True):
    """ksm-control-daemon: ksmtuned.service only, without Requires=."""
    return FakeSystemd([FakeUnit('ksmtuned.service', 'forking', active=active, can_reload=True)])


def ubuntu_qemu(active=True):
    """Ubuntu with qemu-system-common but without ksmtuned: qemu-kvm.service only."""
    return FakeSystemd([FakeUnit('qemu-kvm.service', 'oneshot', active=active)])


def empty(**kwargs):
    return FakeSystemd([], **kwargs)
