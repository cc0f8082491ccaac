#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, samepage.ksm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

DOCUMENTATION = r'''
module: ksm_service
short_description: Start, stop, enable and retune the ksm and ksmtuned systemd units
version_added: 0.1.0
description:
  - Manages the two KSM services through systemd, under logical names that are mapped to the units this
    distribution really has.
  - V(ksm) turns KSM on at boot. It is C(ksm.service) (a oneshot that writes C(run=1) when started and
    C(run=0) when stopped, at the kernel's default scan rate) on RHEL 7 and later, CentOS, AlmaLinux,
    Rocky, Fedora, Debian, Ubuntu and Arch. On Ubuntu without C(ksm.service), C(qemu-kvm.service) from
    qemu-system-common plays the part (C(KSM_ENABLED) in C(/etc/default/qemu-kvm) decides whether it
    turns KSM on). Proxmox VE has no ksm unit.
  - V(ksmtuned) is the tuning daemon C(ksmtuned.service), which switches KSM on and off and sets its scan
    rate from the memory committed to QEMU processes. Where C(ksm.service) exists too, C(ksmtuned.service)
    has C(Requires=ksm.service), so starting ksmtuned starts ksm as well, and stopping or restarting ksm
    stops or restarts ksmtuned.
  - Which units exist is asked of systemd; the distribution (C(/etc/os-release)) only decides which
    package to name when a unit is missing. Units that exist win over the tables.
  - All the relevant units are read in one C(systemctl show) call before and after; commands run as
    argument lists with C(LC_ALL=C).
  - Hosts where systemd is not PID 1 (containers, other init systems) get a clear error; set the kernel
    knobs directly with M(samepage.ksm.ksm_sysfs) there.
extends_documentation_fragment:
  - samepage.ksm._ksm.attributes
attributes:
  check_mode:
    support: full
    details:
      - Only C(systemctl show) runs; RV(units) shows the predicted states and RV(actions) the commands that
        would run.
  diff_mode:
    support: full
    details:
      - 'One line per unit, C(<unit>: <ActiveState> (<SubState>), <UnitFileState>), before and after.'
  idempotent:
    support: partial
    details:
      - V(started), V(stopped), O(enabled) and O(unmask) are idempotent.
      - V(restarted) and V(retuned) act and report a change on every run, as V(restarted) and V(reloaded) of
        M(ansible.builtin.systemd_service) do; in check mode they report the change without acting.
options:
  name:
    description:
      - The logical service. V(ksm) is C(ksm.service) (or Ubuntu's C(qemu-kvm.service)), V(ksmtuned) is
        C(ksmtuned.service). RV(unit) returns the unit that was used.
    type: str
    required: true
    choices: [ksm, ksmtuned]
  state:
    description:
      - V(started) and V(stopped) start or stop the unit when needed.
      - Starting V(ksmtuned) where C(ksmtuned.service) C(Requires=ksm.service) starts ksm too (systemd does
        it); both units are reported.
      - Stopping V(ksm) while ksmtuned runs stops ksmtuned first, explicitly (left running it would turn
        KSM back on at its next adjustment); both units are reported. Stopping never unmerges pages that
        are already shared (use M(samepage.ksm.ksm_unmerge)). Stopping V(ksmtuned) leaves KSM as ksmtuned
        last set it.
      - V(restarted) always restarts (or starts) the unit. Restart ksmtuned after editing
        C(/etc/ksmtuned.conf), because ksmtuned reads it once, when it starts. Restarting V(ksm) also restarts a
        running ksmtuned that requires it.
      - V(retuned) is C(systemctl reload ksmtuned.service), which sends ksmtuned C(SIGUSR1) so that it
        adjusts KSM at once instead of at the end of its C(KSM_MONITOR_INTERVAL) (useful after starting or
        stopping guests). It does not re-read the configuration. Valid for V(ksmtuned) only (ksm.service
        is a oneshot without a reload action). When ksmtuned is not running it is started instead, with a
        warning (its first adjustment then comes one interval later). Proxmox's ksmtuned acts on the
        signal only when its current sleep ends.
      - A start that systemd skips because a start condition is not met (RHEL's and Fedora's units have
        C(ConditionVirtualization=no), so they never run inside a virtual machine) fails with that reason.
    type: str
    choices: [started, stopped, restarted, retuned]
  enabled:
    description:
      - Whether the unit starts at boot (C(systemctl enable) or C(disable)).
      - C(static), C(indirect), C(generated) and similar states count as enabled, as for
        C(systemctl is-enabled); C(static) and C(generated) units cannot be disabled and make V(false)
        fail.
      - A masked unit counts as disabled (it never starts).
      - Disabling V(ksm) while an enabled ksmtuned requires it is allowed but warned about, because
        ksmtuned pulls ksm.service in at boot anyway; disable ksmtuned too to keep KSM off at boot.
        Enabling V(ksmtuned) alone is enough to get both at boot for the same reason.
    type: bool
  unmask:
    description:
      - Unmask the unit if it is masked (C(systemctl unmask)) before anything else. When starting ksmtuned,
        a masked ksm.service that it requires is unmasked too.
      - When V(false), a masked unit that would have to be started, restarted, reloaded or enabled makes the
        task fail with a message naming it (TuneD's cpu-partitioning and realtime profiles mask both units
        and leave C(/var/lib/tuned/ksm-masked)). Stopping or disabling a masked unit needs no unmasking.
      - TuneD masks the units again when such a profile is applied again.
    type: bool
    default: false
  must_exist:
    description:
      - When V(true), a unit that is not installed makes the task fail, with the name of the package that
        provides it on this distribution (see the notes).
      - When V(false), a unit that is not installed counts as stopped and disabled - as off as it gets - so
        O(state=stopped) and O(enabled=false) report no change and say why in RV(msg). Use it to switch
        KSM off across hosts that may lack a unit (Proxmox VE has no ksm unit at all). Starting, restarting,
        retuning or enabling a unit that is not installed fails either way.
    type: bool
    default: true
notes:
  - At least one of O(state) and O(enabled) is required.
  - Order of actions is unmask, enable or disable, then the state change.
  - A unit that is not installed makes the task fail with the name of the package that provides it on this
    distribution (ksmtuned on Debian, Ubuntu, Fedora 29+ and RHEL 9+; qemu-kvm-common on RHEL 7 and 8; ksm on
    Fedora 28 and older; ksmtuned-git from the AUR on Arch; ksm-control-daemon on Proxmox VE), unless
    O(must_exist=false) and the unit is only to be stopped or disabled. On Debian and Ubuntu installing
    ksmtuned enables and starts both units at once.
  - ksmtuned and M(samepage.ksm.ksm_sysfs) both write C(run), C(pages_to_scan) and C(sleep_millisecs);
    stop ksmtuned before managing those knobs by hand.
seealso:
  - module: samepage.ksm.ksm_sysfs
  - module: samepage.ksm.ksm_info
  - module: ansible.builtin.systemd_service
author:
  - samepage.ksm contributors (@samepage)
'''

EXAMPLES = r'''
- name: Run ksmtuned now and at boot (starts and pulls in ksm.service where it requires it)
  samepage.ksm.ksm_service:
    name: ksmtuned
    state: started
    enabled: true

- name: Keep KSM off now and at boot (stops ksmtuned first, then ksm)
  block:
    - name: Stop ksm (stops a running ksmtuned first)
      samepage.ksm.ksm_service:
        name: ksm
        state: stopped
        enabled: false
    - name: Do not start ksmtuned at boot either (it would pull ksm.service in)
      samepage.ksm.ksm_service:
        name: ksmtuned
        enabled: false

- name: Stop ksmtuned on every host of a mixed fleet, including those without it
  samepage.ksm.ksm_service:
    name: ksmtuned
    state: stopped
    enabled: false
    must_exist: false

- name: Make ksmtuned adjust KSM at once, e.g. after starting a batch of guests
  samepage.ksm.ksm_service:
    name: ksmtuned
    state: retuned

- name: Restart ksmtuned after a change to /etc/ksmtuned.conf (a reload does not re-read it)
  samepage.ksm.ksm_service:
    name: ksmtuned
    state: restarted

- name: Take the units back from a TuneD profile that masked them
  samepage.ksm.ksm_service:
    name: ksmtuned
    state: started
    unmask: true
'''

RETURN = r'''
unit:
  description: The systemd unit that plays the part of O(name) on this host; V(null) when there is none.
  returned: always
  type: str
  sample: ksmtuned.service
msg:
  description: Why nothing was done, when the unit to stop or disable is not installed.
  returned: when the unit is not installed, O(must_exist=false), and O(state=stopped) or O(enabled=false) was asked
  type: str
  sample: 'ksmtuned.service is not installed: on Debian GNU/Linux 12 (bookworm) it comes with the package
    ksmtuned (apt-get install ksmtuned). Nothing to stop or disable.'
package:
  description:
    - The package that provides that unit on this distribution, from the tables (see the notes). V(null)
      when the distribution is not known.
  returned: always
  type: str
  sample: ksmtuned
units:
  description:
    - State of each KSM unit present on the host (ksm and ksmtuned), before and after, keyed by logical
      name. Both are reported because acting on one can change the other.
    - In check mode RV(units.ksm.after) is the prediction; a value systemd alone could tell (the enablement
      a unit gets back when unmasked) reads V(unknown).
  returned: when the units could be read
  type: dict
  contains:
    ksm:
      description: The ksm unit (when present), with keys RV(units.ksm.unit), RV(units.ksm.before) and
        RV(units.ksm.after). Each state has C(unit), C(load_state), C(active_state), C(sub_state),
        C(unit_file_state), C(main_pid) and C(condition_result), as C(systemctl show) names them.
      type: dict
      returned: when a ksm unit exists
      contains:
        unit:
          description: The unit's name.
          type: str
          returned: always
          sample: ksm.service
        before:
          description: Its state before the task.
          type: dict
          returned: always
          sample:
            unit: ksm.service
            load_state: loaded
            active_state: inactive
            sub_state: dead
            unit_file_state: enabled
            main_pid: 0
            condition_result: 'yes'
        after:
          description: Its state after the task (predicted in check mode).
          type: dict
          returned: always
          sample:
            unit: ksm.service
            load_state: loaded
            active_state: active
            sub_state: exited
            unit_file_state: enabled
            main_pid: 0
            condition_result: 'yes'
    ksmtuned:
      description: The ksmtuned unit (when present), as for RV(units.ksm).
      type: dict
      returned: when ksmtuned.service exists
  sample:
    ksm:
      unit: ksm.service
      before: {unit: ksm.service, load_state: loaded, active_state: inactive, sub_state: dead,
               unit_file_state: enabled, main_pid: 0, condition_result: 'yes'}
      after: {unit: ksm.service, load_state: loaded, active_state: active, sub_state: exited,
              unit_file_state: enabled, main_pid: 0, condition_result: 'yes'}
    ksmtuned:
      unit: ksmtuned.service
      before: {unit: ksmtuned.service, load_state: loaded, active_state: inactive, sub_state: dead,
               unit_file_state: enabled, main_pid: 0, condition_result: 'yes'}
      after: {unit: ksmtuned.service, load_state: loaded, active_state: active, sub_state: running,
              unit_file_state: enabled, main_pid: 1234, condition_result: 'yes'}
actions:
  description: The systemctl commands run, in order (in check mode, those that would run).
  returned: always
  type: list
  elements: str
  sample: ['stop ksmtuned.service', 'stop ksm.service']
diff:
  description:
    - 'One line per unit before and after, as C(<unit>: <ActiveState> (<SubState>), <UnitFileState>), in unit
      name order.'
  returned: when the units could be read
  type: dict
  sample:
    before: "ksm.service: active (exited), enabled\nksmtuned.service: active (running), enabled\n"
    after: "ksm.service: inactive (dead), enabled\nksmtuned.service: inactive (dead), enabled\n"
'''

import time


from ansible_collections.samepage.ksm.plugins.module_utils._errors import SamepageError, run_task
from ansible_collections.samepage.ksm.plugins.module_utils import _ksm_units as units_mod
from ansible_collections.samepage.ksm.plugins.module_utils import _options
from ansible_collections.samepage.ksm.plugins.module_utils import _systemd

STARTING_STATES = ('started', 'restarted', 'retuned')
TRANSITIONAL = ('activating', 'deactivating', 'reloading')
# After acting, how long to wait for jobs systemd propagated (a restart of ksm try-restarts ksmtuned,
# and systemctl waits for the restart job only).
SETTLE_SECONDS = 10.0
SETTLE_POLL = 0.25


def no_systemd_message():
    return ('systemd is not running as PID 1 on this host (%s does not exist), so there are no units to '
            'manage: samepage.ksm.ksm_service works through systemctl. Set the kernel knobs directly with '
            'samepage.ksm.ksm_sysfs instead.' % _systemd.RUNTIME_DIR)


def condition_message(unit, virt):
    text = ('%s did not start: systemd skipped it because a start condition was not met '
            '(ConditionResult=no).' % unit)
    if virt and virt != 'none':
        text += ' This host is a virtual machine (systemd-detect-virt: %s).' % virt
    text += (" RHEL's and Fedora's ksm.service and ksmtuned.service carry ConditionVirtualization=no, so "
             'they never run inside a virtual machine; ksm.service also needs /sys/kernel/mm/ksm '
             '(ConditionPathExists). `systemctl status %s` names the condition. Inside a guest, set the '
             'knobs with samepage.ksm.ksm_sysfs, or override the condition with a drop-in.' % unit)
    return text


class KsmService:
    """One task: read the units, decide, act (or predict in check mode), read again, report."""

    def __init__(self, module):
        self.module = module
        self.params = module.params
        self.check_mode = module.check_mode
        self.actions = []
        self.before = None
        self.model = None
        self.resolution = None
        self.unit = None
        self.package = None
        self.systemctl = None
        self.expect_running = []

    # -- helpers --------------------------------------------------------------------------------
    def _read(self):
        return self.systemctl.show(units_mod.CANDIDATE_UNITS)

    def _present_units(self):
        return sorted(self.resolution.present().items())

    def _do(self, verb, unit, predict):
        """Run `systemctl verb unit` (or, in check mode, apply the predicted effect to the model).

        actions lists a command once systemctl has done it (in check mode: once it is predicted), so a
        failed task reports exactly what ran."""
        if self.model[unit].get('need_daemon_reload'):
            self.module.warn('The unit file of %s changed on disk and systemd has not reloaded it yet; '
                             'systemd acts on the old one until `systemctl daemon-reload`.' % unit)
        if self.check_mode:
            predict()
            self.actions.append('%s %s' % (verb, unit))
            return
        self.systemctl.call(verb, unit)
        self.actions.append('%s %s' % (verb, unit))
        self.model = self._read()

    def _set(self, unit, **values):
        self.model[unit].update(values)

    def _running(self, unit):
        return _systemd.is_running(self.model[unit])

    def _predict_start(self, unit):
        def effect():
            started = [unit]
            if unit == self.resolution.unit('ksmtuned') and self.resolution.ksmtuned_requires_ksm:
                started.append(self.resolution.unit('ksm'))
            for name in started:
                if not self._running(name):
                    self._set(name, active_state='active',
                              sub_state='running' if name == units_mod.KSMTUNED_UNIT else 'exited')
        return effect

    def _predict_stop(self, unit):
        def effect():
            stopped = [unit]
            if unit == self.resolution.unit('ksm') and self.resolution.ksmtuned_requires_ksm:
                stopped.append(self.resolution.unit('ksmtuned'))
            for name in stopped:
                self._set(name, active_state='inactive', sub_state='dead', main_pid=0)
        return effect

    # -- the task -------------------------------------------------------------------------------
    def run(self):
        name = self.params['name']
        state = self.params['state']
        enabled = self.params['enabled']

        self.systemctl = _systemd.connect(self.module, no_systemd_message())

        distro = units_mod.detect()
        statuses = self._read()
        self.resolution = units_mod.Resolution(distro, statuses)
        self.package = self.resolution.package(name)
        self.before = statuses
        self.model = {u: dict(s) for u, s in statuses.items()}
        nothing_to_do = state in (None, 'stopped') and not enabled
        if self.resolution.unit(name) is None and not self.params['must_exist'] and nothing_to_do:
            # Nothing to stop or disable: a unit that is not installed is as off as it gets.
            result = self.result()
            result['msg'] = '%s Nothing to stop or disable.' % units_mod.missing_message(
                name, self.resolution.distro)
            return result
        unit = self.resolution.require(name)
        self.unit = unit

        if state == 'retuned' and name != 'ksmtuned':
            raise _systemd.SystemdError(
                'state=retuned applies to ksmtuned only: it sends ksmtuned SIGUSR1 (systemctl reload '
                'ksmtuned.service) so that it adjusts KSM at once. %s is a oneshot unit that writes run=1 '
                'when it starts and has no reload action; use state=restarted to run it again.' % unit)

        self._unmask(name, unit, state, enabled)
        if enabled is not None:
            self._enablement(name, unit, enabled)
        if state:
            self._state(name, unit, state)

        if not self.check_mode:
            if self.actions:
                self._settle()
            self._verify(unit, state, enabled)
        self._warn_boot(name, enabled)
        return self.result()

    def _masked_in_the_way(self, name, unit, state, enabled):
        """The masked units systemd would refuse to act on for this task."""
        needed = []
        if state in STARTING_STATES or enabled:
            needed.append(unit)
        if state in STARTING_STATES and name == 'ksmtuned' and self.resolution.ksmtuned_requires_ksm:
            needed.append(self.resolution.unit('ksm'))
        return [u for u in needed if _systemd.is_masked(self.model[u])]

    def _unmask(self, name, unit, state, enabled):
        masked = self._masked_in_the_way(name, unit, state, enabled)
        if not self.params['unmask']:
            if masked:
                msg = units_mod.masked_message(masked)
                if unit not in masked:
                    msg = '%s Requires=%s, which systemd would start with it. %s' % (unit, masked[0], msg)
                raise _systemd.SystemdError(msg, unit=unit)
            return
        if _systemd.is_masked(self.model[unit]) and unit not in masked:
            masked.insert(0, unit)
        done = set()
        while masked:
            for u in masked:
                self._do('unmask', u, lambda u=u: self._set(u, load_state='loaded', unit_file_state='unknown'))
                done.add(u)
                self._require_installed(u)
            if not self.check_mode:
                # Unmasked, the unit file is read again: now its Requires= can be seen.
                self.resolution = units_mod.Resolution(self.resolution.distro, self.model)
            masked = [u for u in self._masked_in_the_way(name, unit, state, enabled) if u not in done]

    def _require_installed(self, unit):
        if not _systemd.exists(self.model[unit]):
            logical = 'ksm' if unit != units_mod.KSMTUNED_UNIT else 'ksmtuned'
            raise _systemd.SystemdError(
                'Unmasked %s, but there is no unit file behind the mask. %s'
                % (unit, units_mod.missing_message(logical, self.resolution.distro)), unit=unit)

    def _enablement(self, name, unit, enabled):
        status = self.model[unit]
        word = status.get('unit_file_state')
        if enabled:
            if not _systemd.is_enabled(status):
                self._do('enable', unit, lambda: self._set(unit, unit_file_state='enabled'))
            return
        if _systemd.is_masked(status):
            return  # a masked unit never starts: already as disabled as it gets
        if word in _systemd.UNDISABLEABLE_STATES:
            raise _systemd.SystemdError(
                '%s is %s: it has no [Install] section of its own to disable (it starts when another unit '
                'pulls it in), so enabled=false cannot be met. Mask it (systemctl mask) if it must never '
                'start.' % (unit, word), unit=unit)
        if _systemd.is_enabled(status) or word == 'unknown':
            self._do('disable', unit, lambda: self._set(unit, unit_file_state='disabled'))

    def _state(self, name, unit, state):
        ksm = self.resolution.unit('ksm')
        ksmtuned = self.resolution.unit('ksmtuned')
        requires = self.resolution.ksmtuned_requires_ksm
        if state == 'started':
            if not self._running(unit):
                self._warn_condition(unit)
                self._do('start', unit, self._predict_start(unit))
                self.expect_running = [unit] + ([ksm] if unit == ksmtuned and requires else [])
        elif state == 'stopped':
            if name == 'ksm' and ksmtuned and self._running(unit) and self._running(ksmtuned):
                # ksmtuned would switch KSM back on at its next adjustment: stop it first, explicitly.
                self._do('stop', ksmtuned, self._predict_stop(ksmtuned))
            if self._running(unit):
                self._do('stop', unit, self._predict_stop(unit))
        elif state == 'restarted':
            self._warn_condition(unit)
            self._do('restart', unit, self._predict_start(unit))
            self.expect_running = [unit] + ([ksm] if unit == ksmtuned and requires else [])
        elif state == 'retuned':
            if not self._running(unit):
                self.module.warn('%s is not running, so state=retuned starts it instead; ksmtuned makes its '
                                 'first adjustment one KSM_MONITOR_INTERVAL after it starts.' % unit)
                self._warn_condition(unit)
                self._do('start', unit, self._predict_start(unit))
                self.expect_running = [unit] + ([ksm] if requires else [])
                return
            if not self.model[unit].get('can_reload'):
                raise _systemd.SystemdError(
                    '%s has no reload action (ExecReload), so it cannot be retuned; ksmtuned.service '
                    'normally has ExecReload=/bin/kill -USR1 $MAINPID. Use state=restarted.' % unit,
                    unit=unit)
            if self.resolution.distro.family == 'proxmox':
                self.module.warn("Proxmox's ksmtuned acts on SIGUSR1 only when its current sleep of "
                                 'KSM_MONITOR_INTERVAL ends.')
            self._do('reload', unit, lambda: None)

    def _warn_condition(self, unit):
        status = self.model[unit]
        if self.check_mode and _systemd.condition_failed(status) and not _systemd.is_running(status):
            self.module.warn('The last start of %s was skipped because a start condition was not met '
                             '(ConditionResult=no); starting it again will probably be skipped too.' % unit)

    def _settle(self):
        """Wait (bounded) until no present unit is between states, so that `after` is where it ends."""
        deadline = time.time() + SETTLE_SECONDS
        while any(self.model[u].get('active_state') in TRANSITIONAL for dummy, u in self._present_units()):
            if time.time() >= deadline:
                return
            time.sleep(SETTLE_POLL)
            self.model = self._read()

    def _verify(self, unit, state, enabled):
        """After acting: the units must be where the task says they are."""
        for u in self.expect_running:
            status = self.model[u]
            if _systemd.is_running(status):
                continue
            if _systemd.condition_failed(status):
                virt = _systemd.detect_virt(self.module.run_command,
                                            self.module.get_bin_path('systemd-detect-virt'))
                raise _systemd.SystemdError(condition_message(u, virt), unit=u)
            raise _systemd.SystemdError('systemctl reported success, but %s is %s now.'
                                        % (u, _systemd.describe(status)), unit=u)
        status = self.model[unit]
        if state == 'stopped' and _systemd.is_running(status):
            raise _systemd.SystemdError('%s is still %s after systemctl stop.' % (unit, _systemd.describe(status)),
                                        unit=unit)
        if enabled is True and not _systemd.is_enabled(status):
            raise _systemd.SystemdError('%s is %s after systemctl enable.' % (unit, status.get('unit_file_state')),
                                        unit=unit)
        if enabled is False and _systemd.is_enabled(status):
            raise _systemd.SystemdError('%s is still %s after systemctl disable.'
                                        % (unit, status.get('unit_file_state')), unit=unit)

    def _warn_boot(self, name, enabled):
        ksmtuned = self.resolution.unit('ksmtuned')
        ksmtuned_starts_ksm = bool(ksmtuned) and self.resolution.ksmtuned_requires_ksm
        if name == 'ksm' and enabled is False and ksmtuned_starts_ksm and _systemd.is_enabled(self.model[ksmtuned]):
            self.module.warn('%s is disabled, but %s is enabled and Requires=%s, so systemd still starts '
                             '%s at boot; disable ksmtuned too to keep KSM off at boot.'
                             % (self.unit, ksmtuned, self.unit, self.unit))

    # -- reporting ------------------------------------------------------------------------------
    def units_report(self):
        if self.before is None or self.resolution is None:
            return None
        report = {}
        for logical, unit in self._present_units():
            after = self.model.get(unit, self.before[unit])
            report[logical] = {'unit': unit, 'before': _systemd.reported(self.before[unit]),
                               'after': _systemd.reported(after)}
        return report

    def diff(self):
        def text(statuses):
            return ''.join('%s: %s\n' % (unit, _systemd.describe(statuses[unit]))
                           for dummy, unit in self._present_units())
        return {'before': text(self.before), 'after': text(self.model)}

    def result(self):
        return {
            'changed': bool(self.actions),
            'unit': self.unit,
            'package': self.package,
            'units': self.units_report(),
            'actions': list(self.actions),
            'diff': self.diff(),
        }

    def failure(self):
        """What is known when a step fails: the units as they are now, the commands that ran (a change when
        any did, outside check mode)."""
        result = {'unit': self.unit, 'package': self.package, 'actions': list(self.actions),
                  'changed': bool(self.actions) and not self.check_mode}
        if self.before is not None and self.resolution is not None:
            if self.actions and not self.check_mode:
                try:
                    self.model = self._read()
                except SamepageError:
                    pass
            result['units'] = self.units_report()
        return result


def argument_spec():
    return dict(
        name=dict(type='str', required=True, choices=['ksm', 'ksmtuned']),
        state=dict(type='str', choices=['started', 'stopped', 'restarted', 'retuned']),
        enabled=dict(type='bool'),
        unmask=dict(type='bool', default=False),
        must_exist=dict(type='bool', default=True),
    )


def main():
    module = _options.new_module(
        argument_spec(),
        required_one_of=[('state', 'enabled')],
        supports_check_mode=True,
    )
    service = KsmService(module)
    run_task(module, service.run, service.failure)


if __name__ == '__main__':
    main()
