# -*- coding: utf-8 -*-
# Copyright: (c) 2026, samepage.ksm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

DOCUMENTATION = r'''
name: sharing_audit
short_description: What makes a host with KSM off share memory, or could make it start again
version_added: 0.1.0
description:
  - Reads one result of M(samepage.ksm.ksm_info) (registered with O(samepage.ksm.ksm_info#module:max_processes) above
    V(0), and with O(samepage.ksm.ksm_info#module:services=true) and O(samepage.ksm.ksm_info#module:libvirt=true) when
    those checks are asked) and names everything that shares memory through Kernel Same-page Merging (KSM) on a host
    that must not, or could switch it on again - each with what to do about it.
  - "Problems: C(run=1) (ksmd merges); pages still shared (C(pages_shared), C(pages_sharing)); the C(ksm) or C(ksmtuned)
    service running or enabled; the samepage tuner installed; a boot configuration that writes C(run=1); another
    writer that switches ksmd on (RV(samepage.ksm.ksm_info#module:competing_writers[].turns_on)); a process that
    opted in to merging as a whole (C(prctl PR_SET_MEMORY_MERGE), systemd C(MemoryKSM=)); with O(nosharepages), a
    libvirt domain whose definition or running QEMU lacks C(nosharepages)."
  - A check that cannot be made is a problem too (systemd not running, libvirt not answering), never a silent pass,
    unless the caller turned it off (O(services=false), O(nosharepages=false)); what was not checked, or could not be
    told, is listed in RV(_value.notes).
  - The entry point C(verify) of the role C(samepage.ksm.ksm) runs M(samepage.ksm.ksm_info) once and asserts that this
    filter finds no problem.
positional: _input
options:
  _input:
    description: The registered result of M(samepage.ksm.ksm_info).
    type: dict
    required: true
  services:
    description: Check the C(ksm) and C(ksmtuned) services (the result must hold RV(samepage.ksm.ksm_info#module:services)).
    type: bool
    default: true
  nosharepages:
    description: Check that every libvirt domain carries C(nosharepages) (the result must hold
      RV(samepage.ksm.ksm_info#module:libvirt)).
    type: bool
    default: false
author:
  - samepage.ksm contributors (@samepage)
'''

EXAMPLES = r'''
- name: Read what could make this host share memory
  samepage.ksm.ksm_info:
    max_processes: 1
    services: true
  register: ksm

- name: Fail naming each of them
  ansible.builtin.assert:
    that: (ksm | samepage.ksm.sharing_audit).problems | length == 0
    fail_msg: "{{ (ksm | samepage.ksm.sharing_audit).problems | join(' ') }}"
'''

RETURN = r'''
_value:
  description: What was found.
  type: dict
  contains:
    problems:
      description: One sentence per thing that shares or could switch sharing on, with what to do; empty when none.
      type: list
      elements: str
      sample: ["run is 1: ksmd is merging pages. Set run=0 (samepage.ksm.ksm_sysfs run=false persist=true)."]
    notes:
      description: What was not checked, or could not be told, and why.
      type: list
      elements: str
      sample: ["the services were not checked (ksm_verify_services is false)"]
'''

from collections.abc import Mapping

from ansible.errors import AnsibleFilterError

# Values of run that keep ksmd stopped: 0, and 2 (stopped after unmerging everything).
RUN_OFF = (0, 2)
RERUN = 'the role samepage.ksm.ksm with ksm_enabled: false (site.yml for this host)'


def _get(mapping, *keys):
    for key in keys:
        if not isinstance(mapping, Mapping):
            return None
        mapping = mapping.get(key)
    return mapping


def _as_int(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _names(items, limit=10):
    items = list(items)
    text = ', '.join(items[:limit])
    return text + (' and %d more' % (len(items) - limit) if len(items) > limit else '')


def _kernel(info, problems):
    run = _as_int(_get(info, 'settings', 'run'))
    if run is not None and run not in RUN_OFF:
        problems.append('run is %d: ksmd is merging pages. Set run=0 again with %s, or at once with '
                        'samepage.ksm.ksm_sysfs run=false, and find out what switched it on.' % (run, RERUN))
    shared = _as_int(_get(info, 'counters', 'pages_shared')) or 0
    sharing = _as_int(_get(info, 'counters', 'pages_sharing')) or 0
    if shared or sharing:
        problems.append('%d pages are shared by %d mappings (pages_shared, pages_sharing): guests still share merged '
                        'memory. Unmerge it with samepage.ksm.ksm_unmerge (or %s, ksm_unmerge_on_disable: true).'
                        % (shared, sharing, RERUN))


def _services(info, problems, notes, check):
    if not check:
        notes.append('the ksm and ksmtuned services were not checked (ksm_verify_services is false)')
        return
    services = _get(info, 'services')
    if not isinstance(services, Mapping):
        problems.append('the ksm and ksmtuned services were not reported (ksm_info was run without services=true).')
        return
    if not services.get('systemd'):
        problems.append('whether the ksm and ksmtuned services are stopped and disabled cannot be checked: %s. On a '
                        'host without systemd set ksm_verify_services: false to leave this check out knowingly.'
                        % (services.get('reason') or 'systemd was not asked'))
        return
    for unit in services.get('units') or []:
        if unit.get('installed') and (unit.get('running') or unit.get('enabled')):
            problems.append('%s is %s: it switches ksmd on. Stop and disable it with samepage.ksm.ksm_service '
                            'name=%s state=stopped enabled=false, or %s.'
                            % (unit.get('unit'), unit.get('state'), unit.get('name'), RERUN))


def _tuner(info, problems):
    tuner = _get(info, 'tuner')
    if isinstance(tuner, Mapping):
        state = 'running' if tuner.get('running') else 'installed'
        if tuner.get('phase'):
            state += ', phase %s' % tuner['phase']
        problems.append("the samepage tuner is %s: it sets run=1 whenever merging pays. Remove it with "
                        "samepage.ksm.ksm_tuner state=absent, or %s." % (state, RERUN))


def _boot(info, problems):
    boot = _get(info, 'boot')
    if not isinstance(boot, Mapping) or not (boot.get('installed') and boot.get('enabled')):
        return      # without the unit the kernel boots with run=0
    run = _as_int(_get(boot, 'knobs', 'run'))
    if run is not None and run not in RUN_OFF:
        problems.append('the boot configuration %s writes run=%d at every boot. Persist run=0 with '
                        'samepage.ksm.ksm_sysfs run=false persist=true, or %s.' % (boot.get('unit'), run, RERUN))


def _writers(info, problems):
    for writer in _get(info, 'competing_writers') or []:
        if writer.get('ours') or not writer.get('turns_on'):
            continue    # the tuner is checked on its own; writers that keep run off or set other knobs are harmless
        problems.append('%s switches ksmd on %s (%s). %s.' % (
            writer.get('name'), writer.get('when'), '; '.join((writer.get('evidence') or [])[:3]),
            (writer.get('remedy') or '')[:1].upper() + (writer.get('remedy') or '')[1:]))


def _processes(info, problems, notes):
    scan = _get(info, 'process_scan')
    if not isinstance(scan, Mapping):
        notes.append('no process scan (ksm_info ran with max_processes=0): processes that opted in were not looked for')
        return
    opted_in = scan.get('opted_in') or []
    if opted_in:
        problems.append('%s opted in to merging as a whole (prctl PR_SET_MEMORY_MERGE, or systemd MemoryKSM=yes in '
                        'their unit): their memory merges as soon as ksmd runs. Remove MemoryKSM= from their units '
                        '(ksm_info competing_writers names them) and restart them.'
                        % _names('pid %s (%s)' % (item.get('pid'), item.get('command')) for item in opted_in))
    for sentence in scan.get('skipped') or []:
        notes.append('process scan: %s' % sentence)


def _domains(info, problems, notes, check):
    if not check:
        return
    libvirt = _get(info, 'libvirt')
    if not isinstance(libvirt, Mapping):
        problems.append('the libvirt domains were not reported (ksm_info was run without libvirt=true).')
        return
    if not libvirt.get('available'):
        problems.append('whether every libvirt domain carries nosharepages cannot be checked (ksm_verify_nosharepages '
                        'is true): %s' % (libvirt.get('msg') or 'libvirt did not answer'))
        return
    defined, running = [], []
    for domain in libvirt.get('domains') or []:
        if domain.get('persistent') and not domain.get('nosharepages'):
            defined.append(domain.get('name'))
        if domain.get('active') and domain.get('running_nosharepages') is False:
            running.append(domain.get('name'))
    if defined:
        problems.append('the definitions of %s lack nosharepages: their QEMU would merge as soon as KSM runs. Opt them '
                        'out with ksm_nosharepages_domains (samepage.ksm.libvirt_nosharepages).' % _names(defined))
    if running:
        problems.append('%s run%s a QEMU started without nosharepages (mem-merge=on): restart %s (virsh shutdown, then '
                        'start; or ksm_nosharepages_restart: true).'
                        % (_names(running), 's' if len(running) == 1 else '', 'it' if len(running) == 1 else 'them'))
    if not libvirt.get('domains'):
        notes.append('libvirt at %s has no domains' % libvirt.get('uri'))


def sharing_audit(info, services=True, nosharepages=False):
    """{'problems': [...], 'notes': [...]} of one ksm_info result (see DOCUMENTATION)."""
    if not isinstance(info, Mapping):
        raise AnsibleFilterError('sharing_audit expects the registered result of samepage.ksm.ksm_info, not %r'
                                 % type(info).__name__)
    if info.get('failed'):
        return {'problems': ['ksm_info failed: %s' % info.get('msg')], 'notes': []}
    problems, notes = [], []
    if not info.get('available'):
        notes.append('this kernel has no KSM (%s): nothing can be merged' % (info.get('msg') or 'not available'))
        # a tuner or a libvirt domain is harmless without KSM, but the tuner is still reported by ksm_info
        _tuner(info, problems)
        return {'problems': problems, 'notes': notes}
    _kernel(info, problems)
    _services(info, problems, notes, services)
    _tuner(info, problems)
    _boot(info, problems)
    _writers(info, problems)
    _processes(info, problems, notes)
    _domains(info, problems, notes, nosharepages)
    return {'problems': problems, 'notes': notes}


class FilterModule:
    """samepage.ksm's filters."""

    def filters(self):
        return {'sharing_audit': sharing_audit}
