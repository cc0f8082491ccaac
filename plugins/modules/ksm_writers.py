#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, samepage.ksm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

DOCUMENTATION = r'''
module: ksm_writers
short_description: Stop other programs from overwriting the KSM knobs at boot or at a TuneD profile switch
version_added: 0.1.0
description:
  - Neutralises the other writers of C(/sys/kernel/mm/ksm) that can be switched off without taking anything
    else away from the host, so that the knobs set by M(samepage.ksm.ksm_sysfs) stay set.
    M(samepage.ksm.ksm_info) lists every writer it finds (RV(samepage.ksm.ksm_info#module:competing_writers)),
    and M(samepage.ksm.ksm_sysfs) warns about each one that will overwrite what it set.
  - V(qemu-kvm.service) - Ubuntu's C(qemu-kvm.service) writes C(run) (and C(sleep_millisecs)) at every boot,
    from C(KSM_ENABLED) and C(SLEEP_MILLISECS) in C(/etc/default/qemu-kvm). No value of C(KSM_ENABLED) makes it
    leave C(run) alone (V(AUTO) decides by virtualisation), and the unit also loads the KVM modules, so it is
    made to agree instead - C(KSM_ENABLED=1) for O(run=true) (with C(SLEEP_MILLISECS) when
    O(sleep_millisecs) is given), C(KSM_ENABLED=0) for O(run=false). The rest of the file is kept, line by
    line; the file is replaced atomically. Nothing is done where the unit is not enabled.
  - V(tuned) - TuneD writes the C(/sys/kernel/mm/ksm) options of the C([sysfs]) sections of its active
    profiles (and of the profiles they include) at boot and at every profile switch. The module writes the
    profile C(samepage-ksm-guard) (in C(/etc/tuned/profiles), or C(/etc/tuned) for TuneD before 2.23), which
    drops exactly those options (TuneD's C(drop=), 2.13 and later), and appends it to the active profiles
    (C(tuned-adm profile <active profiles> samepage-ksm-guard) when TuneD runs; otherwise
    C(/etc/tuned/active_profile), and C(/etc/tuned/profile_mode) set to C(manual), for its next start). The
    profiles themselves, and C(/usr/lib/tuned), are never edited, and they keep everything else they set.
    Nothing is done where no active profile writes KSM.
  - Profiles that switch KSM off in a script (C(cpu-partitioning), C(realtime-virtual-host) includes it through
    C(realtime)) mask the KSM units and unmerge; no profile can drop that without losing what the profile is
    for, so the task fails naming them, with nothing changed. So does a file that cannot be read whole as
    text.
  - Every writer is planned before anything is written, so a writer that cannot be neutralised fails the task
    with nothing changed.
  - Other writers are not touched here - ksmtuned and the C(ksm) service are stopped and disabled with
    M(samepage.ksm.ksm_service) (the role C(samepage.ksm.ksm) does it for every O(samepage.ksm.ksm#role:main:ksm_tuner)
    but V(ksmtuned)); oVirt, KubeVirt, C(tmpfiles.d) and C(sysfs.conf) lines are managers or files of their own
    that M(samepage.ksm.ksm_sysfs) only warns about.
options:
  neutralise:
    description:
      - The writers to neutralise. Writers not found on the host are nothing to do.
    type: list
    elements: str
    choices: [qemu-kvm.service, tuned]
    required: true
  run:
    description:
      - What C(qemu-kvm.service) is to leave C(run) at, at boot - V(true) C(run=1), V(false) C(run=0).
      - Required when O(neutralise) has V(qemu-kvm.service).
    type: bool
  sleep_millisecs:
    description:
      - The C(sleep_millisecs) C(qemu-kvm.service) is to write at boot with O(run=true) (C(SLEEP_MILLISECS));
        left as it is when not given. 0 to 4294967295.
    type: int
  backup:
    description:
      - Keep a copy of each file before it is changed, next to it, with a timestamp in its name
        (RV(backup_files)).
    type: bool
    default: false
extends_documentation_fragment:
  - samepage.ksm._ksm.attributes
attributes:
  check_mode:
    support: full
    details:
      - Reads and plans everything and reports the changes that would be made; writes nothing and runs no
        tuned-adm.
  diff_mode:
    support: full
    details:
      - Shows each file before and after.
  idempotent:
    support: full
notes:
  - Needs root (become) to write C(/etc).
  - A TuneD profile switched later with C(tuned-adm profile ...) no longer lists the guard profile, and its
    KSM options apply again; M(samepage.ksm.ksm_sysfs) then warns, and running this module again appends the
    guard again.
  - TuneD restores the values it had changed when the profiles switch (its rollback), so the knobs may
    change once while the guard is appended; set them afterwards (the role C(samepage.ksm.ksm) runs this
    module before M(samepage.ksm.ksm_sysfs)).
seealso:
  - module: samepage.ksm.ksm_info
  - module: samepage.ksm.ksm_sysfs
  - module: samepage.ksm.ksm_service
  - name: TuneD
    description: The daemon and its profiles (include, drop, multiple active profiles).
    link: https://github.com/redhat-performance/tuned
author:
  - samepage.ksm contributors (@samepage)
'''

EXAMPLES = r'''
- name: Keep Ubuntu's qemu-kvm.service and the TuneD profiles from rewriting the KSM knobs
  samepage.ksm.ksm_writers:
    neutralise: [qemu-kvm.service, tuned]
    run: true
    sleep_millisecs: 50
    backup: true
  become: true

- name: Set the knobs once the writers agree
  samepage.ksm.ksm_sysfs:
    run: true
    sleep_millisecs: 50
    persist: true
  become: true
'''

RETURN = r'''
neutralised:
  description:
    - One entry per writer of O(neutralise) found on the host, in the order given.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: The writer.
      type: str
    changed:
      description: Whether the task changed (or, in check mode, would change) anything for it.
      type: bool
    summary:
      description: What the writer does once neutralised, and through which file.
      type: str
    files:
      description: The files changed (or that would be changed).
      type: list
      elements: str
    tuned_profiles:
      description: For V(tuned), the active TuneD profiles after the task.
      type: list
      elements: str
      returned: for tuned
  sample:
    - name: qemu-kvm.service
      changed: true
      summary: qemu-kvm.service writes run=1 at boot (KSM_ENABLED=1 in /etc/default/qemu-kvm)
      files: [/etc/default/qemu-kvm]
    - name: tuned
      changed: true
      summary: "TuneD profiles virtual-host samepage-ksm-guard: run dropped by /etc/tuned/profiles/samepage-ksm-guard/tuned.conf"
      files: [/etc/tuned/profiles/samepage-ksm-guard/tuned.conf, /etc/tuned/active_profile, /etc/tuned/profile_mode]
      tuned_profiles: [virtual-host, samepage-ksm-guard]
backup_files:
  description: The backup made of each file changed, by path (O(backup=true)).
  returned: always
  type: dict
  sample:
    /etc/default/qemu-kvm: /etc/default/qemu-kvm.12345.2026-05-01@10:00:00~
msg:
  description: What was done, or would be done in check mode.
  returned: always
  type: str
  sample: "Neutralised qemu-kvm.service, tuned"
written:
  description: The files written before the task failed.
  returned: on failure
  type: list
  elements: str
diff:
  description: In diff mode, each file before and after.
  returned: when diff mode is on
  type: list
  elements: dict
'''

import os
import tempfile

from ansible_collections.samepage.ksm.plugins.module_utils import _errors
from ansible_collections.samepage.ksm.plugins.module_utils import _ksm_writers
from ansible_collections.samepage.ksm.plugins.module_utils import _options

SLEEP_MILLISECS_MAX = 4294967295


def argument_spec():
    return dict(
        neutralise=dict(type='list', elements='str', choices=list(_ksm_writers.NEUTRALISABLE), required=True),
        run=dict(type='bool'),
        sleep_millisecs=dict(type='int'),
        backup=dict(type='bool', default=False),
    )


class WritersError(_errors.SamepageError):
    """A writer that cannot be neutralised, a bad option, or a file that could not be written."""


class WritersTask:
    """One run of the module: plan every writer, then write the files and switch TuneD's profiles."""

    def __init__(self, module):
        self.module = module
        self.params = module.params
        self.result = dict(changed=False, neutralised=[], backup_files={})
        self.written = []

    def check_options(self):
        params = self.params
        if 'qemu-kvm.service' in params['neutralise'] and params['run'] is None:
            raise WritersError('run is required when neutralise has qemu-kvm.service: it decides KSM_ENABLED '
                               '(1 or 0) in /etc/default/qemu-kvm', option='run')
        sleep = params['sleep_millisecs']
        if sleep is not None and not 0 <= sleep <= SLEEP_MILLISECS_MAX:
            raise WritersError('Invalid value %r for sleep_millisecs: expected milliseconds from 0 to %d'
                               % (sleep, SLEEP_MILLISECS_MAX), option='sleep_millisecs', value=sleep)

    def run(self):
        self.check_options()
        params = self.params
        names = []
        for name in params['neutralise']:
            if name not in names:
                names.append(name)
        try:
            plans = _ksm_writers.neutralise(names, run=params['run'], sleep_millisecs=params['sleep_millisecs'])
        except _ksm_writers.WriterError as err:
            raise WritersError(err.msg, option='neutralise', value=err.writer)
        result = self.result
        diff = []
        for plan in plans:
            entry = dict(name=plan.name, changed=plan.changed, summary=plan.summary,
                         files=[change.path for change in plan.changes])
            if plan.tuned_profiles is not None:
                entry['tuned_profiles'] = list(plan.tuned_profiles)
            result['neutralised'].append(entry)
            diff.extend(dict(before_header=change.path, after_header=change.path, before=change.before or '',
                             after=change.after) for change in plan.changes)
        changed = [plan for plan in plans if plan.changed]
        if not self.module.check_mode:
            for plan in changed:
                self.apply(plan)
        result['changed'] = bool(changed)
        verb = 'Would neutralise' if self.module.check_mode else 'Neutralised'
        if changed:
            result['msg'] = '%s %s' % (verb, '; '.join(plan.summary for plan in changed))
        elif plans:
            result['msg'] = 'Nothing to change: %s' % '; '.join(plan.summary for plan in plans)
        else:
            result['msg'] = 'Nothing to change: none of %s writes KSM on this host' % ', '.join(names)
        if self.module._diff:
            result['diff'] = diff
        return result

    # -- writing ------------------------------------------------------------------------------------
    def apply(self, plan):
        tuned_adm = None
        if plan.tuned_profiles is not None and _ksm_writers.tuned_running():
            tuned_adm = self.module.get_bin_path('tuned-adm')
        own = (_ksm_writers._path(None, _ksm_writers.TUNED_ACTIVE_PROFILE),
               _ksm_writers._path(None, _ksm_writers.TUNED_PROFILE_MODE))
        for change in plan.changes:
            if tuned_adm and change.path in own:
                continue     # tuned-adm writes active_profile and profile_mode itself, and applies them
            self.write(change)
        if tuned_adm:
            rc, out, err = self.module.run_command([tuned_adm, 'profile'] + list(plan.tuned_profiles),
                                                   environ_update={'LC_ALL': 'C'})
            text = _ksm_writers.read_whole(_ksm_writers._path(None, _ksm_writers.TUNED_ACTIVE_PROFILE), 'tuned')
            active = (text or '').split()
            if rc != 0 or active != list(plan.tuned_profiles):
                raise WritersError('tuned-adm profile %s failed (rc=%d): %s' % (
                    ' '.join(plan.tuned_profiles), rc, (err or out).strip() or 'the active profiles read %s'
                    % ' '.join(active)))
            self.written.append(_ksm_writers._path(None, _ksm_writers.TUNED_ACTIVE_PROFILE))

    def write(self, change):
        """change.after into change.path atomically (a temporary file in its directory, renamed over it), mode
        0644 for a new file, the existing file's mode and owner kept otherwise (atomic_move)."""
        directory = os.path.dirname(change.path)
        try:
            if not os.path.isdir(directory):
                os.makedirs(directory, 0o755)
            if self.params['backup'] and change.before is not None:
                self.result['backup_files'][change.path] = self.module.backup_local(change.path)
            handle, staged = tempfile.mkstemp(prefix='.samepage-ksm-', dir=directory)
            with os.fdopen(handle, 'w', encoding='utf-8') as stream:
                stream.write(change.after)
        except OSError as err:
            raise WritersError('Cannot write %s: %s' % (change.path, err))
        self.module.atomic_move(staged, change.path)
        if change.before is None:
            os.chmod(change.path, 0o644)
        self.written.append(change.path)

    def partial(self):
        result = dict(self.result)
        result['changed'] = bool(self.written)
        result['written'] = list(self.written)
        return result


def main():
    module = _options.new_module(argument_spec(), supports_check_mode=True)
    task = WritersTask(module)
    _errors.run_task(module, task.run, task.partial)


if __name__ == '__main__':
    main()
