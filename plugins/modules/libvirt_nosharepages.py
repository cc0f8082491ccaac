#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, samepage.ksm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

DOCUMENTATION = r'''
module: libvirt_nosharepages
short_description: Opt libvirt guests out of KSM memory sharing (nosharepages, QEMU mem-merge=off)
version_added: 0.1.0
description:
  - Makes the libvirt domains named by O(domains) carry C(<memoryBacking><nosharepages/></memoryBacking>) in their
    persistent definition (O(state=present)), or removes it (O(state=absent)).
  - libvirt starts such a domain's QEMU with C(-machine ...,mem-merge=off), so QEMU never marks the guest's RAM
    mergeable and Kernel Same-page Merging (KSM) never merges it with another guest's memory, whatever
    C(/sys/kernel/mm/ksm/run) says - the per-guest opt-out for hosts where trusted guests share and tenant
    guests must not (side channels through merged pages; see the collection's security guide).
  - A definition changes through libvirt's own interface only - C(virsh dumpxml --inactive), the element added or
    removed, C(virsh define) - never by editing files under C(/etc/libvirt).
  - The setting takes effect when QEMU starts. A running domain keeps the setting it was started with until it is
    shut down and started again (a reboot inside the guest keeps the same QEMU); such domains are listed in
    RV(pending_restart), also on later runs, until they restart. With O(restart=true) the module restarts them.
  - Everything asked is checked before anything changes - names and patterns (shell metacharacters are refused),
    the connection, names that are unknown, patterns that match nothing, transient domains (they have no persistent
    definition to carry the setting) - and the task fails naming each of them, with nothing changed.
  - M(samepage.ksm.ksm_info) shows per running guest whether its QEMU runs with C(mem-merge=off) and whether the
    kernel still lists memory of it as mergeable (RV(samepage.ksm.ksm_info#module:guests)).
options:
  domains:
    description:
      - Domain names, or shell-style patterns (C(*), C(?), C([...]), matched case-sensitively as by Python's
        fnmatch) that match domain names, for example V(tenant-*).
      - A name must exist and a pattern must match at least one domain; transient domains are refused.
      - "Names and patterns may contain letters, digits and C(. _ - + : @) (patterns also C(* ? [ ] !)); anything else
        (blanks, shell metacharacters such as C(; | & $ `), quotes, control characters) is refused. Rename such a
        domain with C(virsh domrename) to manage it here."
    type: list
    elements: str
    required: true
  state:
    description:
      - V(present) - the domains carry C(nosharepages), so KSM never merges their memory.
      - V(absent) - they do not, so their memory is mergeable again once they restart (QEMU's default).
    type: str
    choices: [present, absent]
    default: present
  restart:
    description:
      - Restart the running domains whose QEMU still runs with the other setting (RV(pending_restart)), so that the
        setting takes effect now. The guests stop and start again - plan for the downtime.
      - With V(false) (the default) they are only listed in RV(pending_restart).
    type: bool
    default: false
  restart_mode:
    description:
      - How O(restart=true) stops a domain before starting it again.
      - V(shutdown) asks the guest to shut down (ACPI or guest agent, C(virsh shutdown)) and waits up to
        O(shutdown_timeout) seconds; a guest that does not react fails the task, naming it, and keeps running.
      - V(destroy) powers it off at once (C(virsh destroy)), as pulling the plug would - for guests without ACPI or
        whose state does not matter.
    type: str
    choices: [shutdown, destroy]
    default: shutdown
  shutdown_timeout:
    description:
      - Seconds to wait for a guest to shut down with O(restart_mode=shutdown) (1 to 3600).
    type: int
    default: 300
  uri:
    description:
      - The libvirt connection URI (C(virsh -c)).
    type: str
    default: qemu:///system
extends_documentation_fragment:
  - samepage.ksm._ksm.attributes
attributes:
  check_mode:
    support: full
    details: Reads the definitions and reports which domains it would redefine and restart; changes nothing.
  diff_mode:
    support: full
    details: Shows the C(<memoryBacking>) element of each domain whose definition changes, before and after.
  idempotent:
    support: full
    details: A domain that already carries the setting is left alone; a running domain still waiting for its
      restart is reported in RV(pending_restart) without a change (or restarted, with O(restart=true)).
requirements:
  - libvirt's C(virsh) client on the managed host (package C(libvirt-clients) on Debian and Ubuntu,
    C(libvirt-client) on RHEL and Fedora), and a running libvirt daemon (C(libvirtd) or C(virtqemud)).
notes:
  - Needs the rights to define domains on O(uri) (root, or membership in the C(libvirt) group, for qemu:///system).
  - libvirt rewrites a definition in its own layout when it is defined; only the C(<memoryBacking>) element changes in
    meaning.
  - C(nosharepages) keeps QEMU from marking guest RAM mergeable. A QEMU that inherited
    C(prctl(PR_SET_MEMORY_MERGE)) from the program that started it (for example a libvirtd unit with systemd's
    C(MemoryKSM=yes)) is mergeable all the same; M(samepage.ksm.ksm_info) reports that as
    V(opted-out-but-mergeable).
seealso:
  - module: samepage.ksm.ksm_info
  - module: samepage.ksm.ksm_unmerge
  - name: libvirt domain XML, memory backing
    description: The nosharepages element.
    link: https://libvirt.org/formatdomain.html#memory-backing
  - name: Kernel Samepage Merging (admin guide)
    description: How processes opt in to KSM, and what merging costs per process.
    link: https://docs.kernel.org/admin-guide/mm/ksm.html
author:
  - samepage.ksm contributors (@samepage)
'''

EXAMPLES = r'''
- name: Keep the tenants' guests out of KSM (takes effect at their next start)
  samepage.ksm.libvirt_nosharepages:
    domains:
      - "tenant-*"
      - billing-db
  register: optout

- name: Say which guests still run with memory sharing on
  ansible.builtin.debug:
    msg: "Restart {{ optout.pending_restart | join(', ') }} to opt them out now"
  when: optout.pending_restart | length > 0

- name: Opt them out now, shutting the guests down cleanly and starting them again
  samepage.ksm.libvirt_nosharepages:
    domains: ["tenant-*"]
    restart: true
    shutdown_timeout: 600

- name: Let a trusted guest share memory again
  samepage.ksm.libvirt_nosharepages:
    domains: [build-runner-01]
    state: absent

- name: Check that the tenants' guests now run opted out
  samepage.ksm.ksm_info:
  register: ksm

- name: Fail if one of them can still share memory
  ansible.builtin.assert:
    that: >-
      ksm.guests | selectattr('name', 'match', 'tenant-') | rejectattr('verdict', 'equalto', 'opted-out')
      | list | length == 0
'''

RETURN = r'''
domains:
  description: Each domain O(domains) selected, sorted by name, with its setting before and after.
  returned: success
  type: list
  elements: dict
  contains:
    name:
      description: The domain name.
      type: str
      sample: tenant-a
    active:
      description: Whether the domain was running (or paused) when the task began.
      type: bool
      sample: true
    nosharepages_before:
      description: Whether its persistent definition carried C(nosharepages) before the task.
      type: bool
      sample: false
    nosharepages:
      description: Whether its persistent definition carries C(nosharepages) now (in check mode, would carry).
      type: bool
      sample: true
    running_nosharepages:
      description: Whether the running QEMU was started with C(nosharepages) (C(mem-merge=off)), after any restart;
        null for a domain that is not running.
      type: bool
      sample: false
    changed:
      description: Whether its definition was (in check mode, would be) changed.
      type: bool
      sample: true
    restarted:
      description: Whether the task restarted it (in check mode, would restart it).
      type: bool
      sample: false
    pending_restart:
      description: Whether it runs with the other setting until it is restarted.
      type: bool
      sample: true
  sample:
    - name: tenant-a
      active: true
      nosharepages_before: false
      nosharepages: true
      running_nosharepages: false
      changed: true
      restarted: false
      pending_restart: true
changed_domains:
  description: Names of the domains whose definition the task changed (in check mode, would change).
  returned: success
  type: list
  elements: str
  sample: [tenant-a]
pending_restart:
  description: Names of the running domains whose QEMU still runs with the other setting - it takes effect when they
    are shut down and started again (O(restart=true) does that).
  returned: success
  type: list
  elements: str
  sample: [tenant-a]
restarted:
  description: Names of the domains the task restarted (in check mode, would restart).
  returned: success
  type: list
  elements: str
  sample: []
uri:
  description: The connection URI used.
  returned: always
  type: str
  sample: qemu:///system
msg:
  description: What the task did (or would do), in one sentence.
  returned: always
  type: str
  sample: "tenant-a: nosharepages added; still running without it until restarted (pending_restart)"
'''

from ansible_collections.samepage.ksm.plugins.module_utils import _errors
from ansible_collections.samepage.ksm.plugins.module_utils import _libvirt
from ansible_collections.samepage.ksm.plugins.module_utils import _options

SHUTDOWN_TIMEOUT_MAX = 3600


def argument_spec():
    return dict(
        domains=dict(type='list', elements='str', required=True),
        state=dict(type='str', choices=['present', 'absent'], default='present'),
        restart=dict(type='bool', default=False),
        restart_mode=dict(type='str', choices=['shutdown', 'destroy'], default='shutdown'),
        shutdown_timeout=dict(type='int', default=300),
        uri=dict(type='str', default=_libvirt.DEFAULT_URI),
    )


def check_timeout(value):
    if not 1 <= value <= SHUTDOWN_TIMEOUT_MAX:
        raise _libvirt.LibvirtError('Invalid value %d for shutdown_timeout: expected seconds from 1 to %d'
                                    % (value, SHUTDOWN_TIMEOUT_MAX), option='shutdown_timeout')
    return value


def describe(result, check_mode):
    would = 'would be ' if check_mode else ''
    parts = []
    for domain in result['domains']:
        words = []
        if domain['changed']:
            words.append('nosharepages %s%s' % (would, 'added' if domain['nosharepages'] else 'removed'))
        if domain['restarted']:
            words.append('%srestarted' % would)
        if domain['pending_restart']:
            words.append('still running %s it until restarted (pending_restart)'
                         % ('without' if domain['nosharepages'] else 'with'))
        parts.append('%s: %s' % (domain['name'], ', '.join(words) or 'unchanged'))
    return '; '.join(parts)


def main():
    module = _options.new_module(argument_spec(), supports_check_mode=True)
    params = module.params
    wanted = params['state'] == 'present'
    result = dict(changed=False, uri=params['uri'], domains=[], changed_domains=[], pending_restart=[], restarted=[])
    diffs = []
    try:
        selectors = _libvirt.check_selectors(params['domains'])
        _libvirt.check_uri(params['uri'])
        timeout = check_timeout(params['shutdown_timeout'])
        virsh = _libvirt.Virsh.find(module.get_bin_path, module.run_command, params['uri'])
        inventory = virsh.inventory()
        # Everything is read before anything changes: a name, pattern or definition libvirt cannot give fails
        # the task with nothing changed.
        domains = _libvirt.read_domains(virsh, _libvirt.select(selectors, inventory), inventory)
        for domain in domains:
            result['domains'].append(dict(
                name=domain.name, active=domain.active, nosharepages_before=domain.nosharepages,
                nosharepages=domain.nosharepages, running_nosharepages=domain.running, changed=False,
                restarted=False, pending_restart=domain.active and domain.running != wanted))

        for domain, report in zip(domains, result['domains']):
            if domain.nosharepages == wanted:
                continue
            edited = _libvirt.with_nosharepages(domain.definition, wanted)
            header = '%s: <memoryBacking> of the persistent definition' % domain.name
            diffs.append(dict(before_header=header, after_header=header,
                              before=_libvirt.memory_backing_text(domain.definition),
                              after=_libvirt.memory_backing_text(edited)))
            if not module.check_mode:
                virsh.define(domain.name, edited, module.tmpdir)
                if _libvirt.has_nosharepages(virsh.definition(domain.name)) != wanted:
                    raise _libvirt.LibvirtError('libvirt accepted the new definition of %s but reads it back %s '
                                                'nosharepages' % (domain.name, 'without' if wanted else 'with'))
            report['nosharepages'] = wanted
            report['changed'] = True
            result['changed_domains'].append(domain.name)
            result['changed'] = True

        if params['restart']:
            for report in result['domains']:
                if not report['pending_restart']:
                    continue
                running = wanted
                if not module.check_mode:
                    virsh.restart(report['name'], params['restart_mode'], timeout)
                    running = _libvirt.has_nosharepages(virsh.running_definition(report['name']))
                report['restarted'] = True
                report['running_nosharepages'] = running
                report['pending_restart'] = running != wanted
                result['restarted'].append(report['name'])
                result['changed'] = True
                if running != wanted:
                    raise _libvirt.LibvirtError('%s was restarted but runs %s nosharepages' % (
                        report['name'], 'without' if wanted else 'with'))
    except _errors.SamepageError as err:
        _errors.fail(module, err, finish(result, diffs, module))
    result = finish(result, diffs, module)
    result['msg'] = describe(result, module.check_mode)
    module.exit_json(**result)


def finish(result, diffs, module):
    """The result with pending_restart listed and, in diff mode, the diff of every changed definition."""
    result['pending_restart'] = [report['name'] for report in result['domains'] if report['pending_restart']]
    if module._diff:
        result['diff'] = diffs
    return result


if __name__ == '__main__':
    main()
