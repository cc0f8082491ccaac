#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, samepage.ksm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

DOCUMENTATION = r'''
module: ksm_sysfs
short_description: Set the Kernel Same-page Merging (KSM) knobs of /sys/kernel/mm/ksm, optionally for every boot
version_added: 0.1.0
description:
  - Sets any subset of the writable files of C(/sys/kernel/mm/ksm) in one task. Knobs that are not given
    are left as they are.
  - Every value is validated (type, and the range the kernel accepts) before anything is written; an
    invalid value fails the task with a message naming the knob, and nothing is written.
  - The knobs are written in the order the kernel needs - the advisor's tunables, then O(advisor_mode),
    then O(pages_to_scan), the other tunables, O(merge_across_nodes) and O(max_page_sharing), and O(run)
    last, so ksmd starts with every other setting in place. A value already in effect is not written
    again. If a write fails, the writes already made by the task are undone, newest first.
  - Changing O(advisor_mode) makes the kernel reset C(pages_to_scan) (to O(advisor_min_pages_to_scan)
    when entering V(scan-time), to 100 when returning to V(none)); the module takes that into account,
    so O(pages_to_scan) given with O(advisor_mode=none) is written after the mode.
  - With O(persist=true) the settings are also written to a systemd unit that applies them at every
    boot, before the KSM services and the hypervisor start.
options:
  run:
    description:
      - V(true) makes ksmd scan and merge (C(run=1)); V(false) stops it, keeping merged pages (C(run=0)).
      - A kernel showing C(run=2) (stopped, everything unmerged) already satisfies V(false), so no change
        is made. To unmerge, use M(samepage.ksm.ksm_unmerge).
    type: bool
  pages_to_scan:
    description:
      - Pages ksmd scans in one batch, before it sleeps for O(sleep_millisecs).
      - The kernel refuses it while C(advisor_mode) is V(scan-time) (the advisor owns it); the task then
        fails before writing anything. Give O(advisor_mode=none) to set it by hand.
      - 0 to 4294967295.
    type: int
  sleep_millisecs:
    description:
      - Milliseconds ksmd sleeps between two batches. 0 to 4294967295.
      - Sleeps round up to whole timer ticks.
    type: int
  merge_across_nodes:
    description:
      - NUMA merge policy.
      - V(always) merges identical pages wherever they are (C(merge_across_nodes=1)); the single copy can
        land on a remote node.
      - V(never) keeps a separate tree per NUMA node and merges only pages of the same node (C(0)).
      - V(auto) means V(never) on hosts with more than one NUMA node holding memory and V(always)
        otherwise; the nodes seen are returned in RV(numa_nodes). On a kernel built without NUMA (no
        C(merge_across_nodes) file) V(auto) is satisfied as it is.
      - The kernel refuses a change while KSM pages are shared (EBUSY), see O(unmerge_if_busy).
      - Strings rather than a boolean, so that YAML does not turn C(no) into V(false).
    type: str
    choices: [auto, always, never]
  max_page_sharing:
    description:
      - Maximum number of sharers of one KSM page. 2 to 2147483647.
      - Larger values deduplicate more but make reverse-map walks (swap, compaction, migration) longer.
      - The kernel refuses a change while KSM pages are shared (EBUSY), see O(unmerge_if_busy).
    type: int
  stable_node_chains_prune_millisecs:
    description:
      - How often, in milliseconds, ksmd prunes stale stable-node chains (pages that reached
        O(max_page_sharing)). 0 to 4294967295.
    type: int
  use_zero_pages:
    description:
      - Merge empty (zero-filled) pages into the kernel zero page rather than into a KSM page.
      - Affects only future merges.
    type: bool
  smart_scan:
    description:
      - Skip pages that repeatedly fail to merge (Linux 6.7 and later).
    type: bool
  advisor_mode:
    description:
      - V(scan-time) lets the kernel's advisor set C(pages_to_scan) so that a full scan takes about
        O(advisor_target_scan_time) seconds, within O(advisor_max_cpu); V(none) leaves C(pages_to_scan)
        to you (Linux 6.8 and later).
      - Changing the mode resets C(pages_to_scan) (to O(advisor_min_pages_to_scan) or to 100).
    type: str
    choices: [none, scan-time]
  advisor_max_cpu:
    description:
      - CPU budget of ksmd for the V(scan-time) advisor, in percent of one CPU. 0 to 4294967295 (the kernel
        stores it in 32 bits and would silently truncate larger values).
    type: int
  advisor_min_pages_to_scan:
    description:
      - The C(pages_to_scan) the advisor starts from when V(scan-time) is enabled. 0 to 18446744073709551615.
    type: int
  advisor_max_pages_to_scan:
    description:
      - Upper cap of the C(pages_to_scan) the advisor sets. 0 to 18446744073709551615.
    type: int
  advisor_target_scan_time:
    description:
      - Seconds the advisor aims at for one full scan. 1 to 18446744073709551615.
    type: int
  unmerge_if_busy:
    description:
      - What to do when O(merge_across_nodes) or O(max_page_sharing) must change while KSM pages are shared
        (the kernel refuses that with EBUSY).
      - V(false) fails before writing anything, saying why and how to proceed.
      - V(true) first checks that an unmerge fits in memory (see O(memory_margin)) and refuses with both
        figures if not; then unmerges every page (C(run=2)), writes the knobs, and puts C(run) back to what it
        was (or to O(run) when given). What was unmerged is returned in RV(unmerged). If the kernel still
        answers EBUSY (stale stable nodes left by exited processes), it unmerges once more and retries once.
      - Unmerging gives every process back a private copy of each shared page; until ksmd merges them again
        the host uses that much more memory.
    type: bool
    default: false
  skip_missing:
    description:
      - What to do with knobs this kernel does not have (for example the advisor before Linux 6.8).
      - V(false) fails, naming the knob and the kernel version it came with.
      - V(true) skips them with a warning and lists them in RV(skipped_knobs); the other knobs are set.
    type: bool
    default: false
  persist:
    description:
      - Also apply the knobs of this task at every boot, with a systemd oneshot unit
        C(/etc/systemd/system/samepage-ksm-sysfs.service) enabled in C(sysinit.target.wants).
      - The unit writes the knobs in the same order as the module, before C(sysinit.target) and so before
        C(ksm.service), C(ksmtuned.service), C(qemu-kvm.service), C(libvirtd.service) and C(virtqemud.service)
        start (no page is merged yet, so O(merge_across_nodes) and O(max_page_sharing) always apply there).
      - O(merge_across_nodes) is persisted as the value it resolved to on this host (C(0) or C(1)).
      - A difference between the live value and the persisted one counts as a change and is fixed, both
        ways.
      - V(false) leaves the boot configuration alone (the task warns when it sets a knob live to a value
        the boot configuration will change back at the next boot).
    type: bool
    default: false
  handled_writers:
    description:
      - Other writers of the knobs that the caller deals with itself - stops, removes or neutralises them
        (M(samepage.ksm.ksm_service), M(samepage.ksm.ksm_tuner), M(samepage.ksm.ksm_writers)) - around this task.
        They are not warned about and not listed in RV(competing_writers).
      - Names as in RV(samepage.ksm.ksm_info#module:competing_writers) (V(ksmtuned), V(ksm.service),
        V(qemu-kvm.service), V(tuned), V(samepage-ksm-tuner), ...). An unknown name fails the task.
    type: list
    elements: str
    default: []
  persist_mode:
    description:
      - How O(persist=true) combines this task's knobs with those already persisted.
      - V(merge) keeps the knobs persisted before and adds or updates those of this task. A persisted
        C(pages_to_scan) is dropped when the task turns the advisor on (V(scan-time) owns it).
      - V(replace) persists exactly the knobs of this task. Without any knob, it removes the unit and its
        symlink (the live values stay as they are).
      - Used only with O(persist=true).
    type: str
    choices: [merge, replace]
    default: merge
extends_documentation_fragment:
  - samepage.ksm._ksm.attributes
  - samepage.ksm._ksm.memory_check
  - samepage.ksm._ksm.host_lock
attributes:
  check_mode:
    support: full
    details:
      - Reads everything, validates, plans the writes (including an unmerge that O(unmerge_if_busy) would
        make, and its memory check) and reports them in RV(writes), RV(after) and RV(unmerged); writes
        nothing, neither to C(/sys) nor to files.
  diff_mode:
    support: full
    details:
      - Shows the writable knobs before and after and, with O(persist=true), the unit file and its
        enablement symlink before and after.
  idempotent:
    support: full
notes:
  - Needs root (become) to write C(/sys/kernel/mm/ksm). Where C(/sys) is mounted read-only (a container)
    the task fails saying so, because KSM belongs to the host kernel.
  - O(merge_across_nodes) and O(max_page_sharing) can change only while no KSM page is shared
    (C(pages_shared=0)); otherwise the kernel answers EBUSY. Unmerge first with
    M(samepage.ksm.ksm_unmerge), or let this module do it with O(unmerge_if_busy=true). Writing the value
    already in effect always works.
  - The V(scan-time) advisor (Linux 6.8) owns C(pages_to_scan). Every switch of O(advisor_mode) resets the
    advisor's state; on a host whose ksmd has run before, its first scan can then cut C(pages_to_scan) to
    its floor for a while.
  - ksmtuned rewrites C(run), C(pages_to_scan) and C(sleep_millisecs) every monitor interval (60 seconds
    by default). When it is running and the task sets one of those, the task warns; stop it with
    M(samepage.ksm.ksm_service) (O(samepage.ksm.ksm_service#module:name=ksmtuned),
    O(samepage.ksm.ksm_service#module:state=stopped)) or tune ksmtuned with the samepage.ksm.ksmtuned role instead.
  - Other writers of the same knobs are looked for too (as M(samepage.ksm.ksm_info) reports them in
    RV(samepage.ksm.ksm_info#module:competing_writers)) - C(ksm.service), Ubuntu's C(qemu-kvm.service)
    (C(KSM_ENABLED) in C(/etc/default/qemu-kvm)), the active TuneD profile, tmpfiles.d and sysfs.conf lines, oVirt
    MOM, KubeVirt's virt-handler, the collection's own tuner. The task warns about each one that will overwrite a
    knob it set, naming the evidence and what to change otherwise; it never changes them itself.
  - Persistence enables the unit with a symlink rather than C(systemctl enable), so it also works where
    systemd is not running (an image build, a chroot); C(systemctl daemon-reload) is run when the files
    change and systemd is running. Other boot-time writers of the same files (a distribution's
    C(ksm.service) writing C(run), TuneD, C(tmpfiles.d) or C(sysfs.conf) entries) run after it and win.
seealso:
  - module: samepage.ksm.ksm_info
  - module: samepage.ksm.ksm_unmerge
  - module: samepage.ksm.ksm_service
  - name: Kernel Samepage Merging (admin guide)
    description: What each file of /sys/kernel/mm/ksm does.
    link: https://docs.kernel.org/admin-guide/mm/ksm.html
author:
  - samepage.ksm contributors (@samepage)
'''

EXAMPLES = r'''
# Ad hoc, on every host of a group:
#   ansible kvm_hosts -b -m samepage.ksm.ksm_sysfs -a 'pages_to_scan=1000'
#   ansible kvm_hosts -b -m samepage.ksm.ksm_sysfs -a 'run=true sleep_millisecs=50' --check --diff

- name: Start ksmd with a faster scan
  samepage.ksm.ksm_sysfs:
    run: true
    pages_to_scan: 1000
    sleep_millisecs: 20
  become: true

- name: Let the kernel's advisor pace ksmd (Linux 6.8+), on every boot too
  samepage.ksm.ksm_sysfs:
    advisor_mode: scan-time
    advisor_max_cpu: 30
    advisor_target_scan_time: 200
    run: true
    persist: true
  become: true

- name: Separate trees per NUMA node where the host has several; unmerge first if pages are shared
  samepage.ksm.ksm_sysfs:
    merge_across_nodes: auto
    max_page_sharing: 512
    unmerge_if_busy: true
    memory_margin: 2G
  become: true
  register: ksm

- name: Show what was unmerged for the change
  ansible.builtin.debug:
    msg: "Unmerged {{ ksm.unmerged.bytes | human_readable }} in {{ ksm.unmerged.duration }} s"
  when: ksm.unmerged is defined

- name: Set the advisor where the kernel has it, the rest everywhere
  samepage.ksm.ksm_sysfs:
    advisor_mode: scan-time
    use_zero_pages: true
    skip_missing: true
  become: true

- name: Persist exactly these settings for every boot (drops knobs persisted earlier)
  samepage.ksm.ksm_sysfs:
    run: true
    pages_to_scan: 500
    persist: true
    persist_mode: replace
  become: true

- name: Remove the boot configuration (the live values stay)
  samepage.ksm.ksm_sysfs:
    persist: true
    persist_mode: replace
  become: true
'''

RETURN = r'''
before:
  description:
    - The writable knobs of this kernel before the task, typed as the kernel reports them (C(run) is 0, 1 or 2;
      C(merge_across_nodes) 0 or 1; C(use_zero_pages) and C(smart_scan) booleans; C(advisor_mode) a string).
    - Knobs this kernel does not have are absent.
  returned: when the kernel has KSM
  type: dict
  sample:
    advisor_max_cpu: 70
    advisor_min_pages_to_scan: 500
    advisor_max_pages_to_scan: 30000
    advisor_target_scan_time: 200
    advisor_mode: none
    pages_to_scan: 100
    sleep_millisecs: 20
    use_zero_pages: false
    smart_scan: true
    stable_node_chains_prune_millisecs: 2000
    max_page_sharing: 256
    merge_across_nodes: 1
    run: 0
after:
  description:
    - The writable knobs after the task, read back from the kernel (in check mode, predicted from the
      writes and the kernel's side effects). Same keys and types as RV(before).
  returned: when the kernel has KSM
  type: dict
  sample:
    advisor_max_cpu: 70
    advisor_min_pages_to_scan: 500
    advisor_max_pages_to_scan: 30000
    advisor_target_scan_time: 200
    advisor_mode: none
    pages_to_scan: 1000
    sleep_millisecs: 20
    use_zero_pages: false
    smart_scan: true
    stable_node_chains_prune_millisecs: 2000
    max_page_sharing: 256
    merge_across_nodes: 1
    run: 1
writes:
  description:
    - The writes made, in order (in check mode, the writes that would be made). Empty when nothing changed.
    - An unmerge made for O(unmerge_if_busy) shows as C(run=2) (preceded by C(run=0) when C(run) already
      read 2), followed by the knobs and the write that puts C(run) back.
  returned: always
  type: list
  elements: dict
  contains:
    knob:
      description: The file of C(/sys/kernel/mm/ksm).
      type: str
    value:
      description: The value written (typed like RV(before)).
      type: raw
  sample:
    - {knob: run, value: 2}
    - {knob: merge_across_nodes, value: 0}
    - {knob: run, value: 1}
skipped_knobs:
  description:
    - Knobs of the task that this kernel does not have and that O(skip_missing=true) skipped.
    - Not named C(skipped), because Ansible reads a non-empty C(skipped) in a result as "the task was skipped".
  returned: always
  type: list
  elements: str
  sample: [advisor_mode, advisor_max_cpu]
unmerged:
  description:
    - What the unmerge made for O(unmerge_if_busy=true) released (in check mode, what it would release).
  returned: when the task unmerged, or would unmerge in check mode
  type: dict
  contains:
    pages:
      description: Page mappings that received a private copy (C(pages_sharing) + C(ksm_zero_pages) before).
      type: int
    bytes:
      description: RV(unmerged.pages) times the page size; the memory the unmerge allocated.
      type: int
    duration:
      description: Seconds the unmerge took; V(null) in check mode.
      type: float
  sample:
    pages: 16128
    bytes: 66060288
    duration: 0.041
numa_nodes:
  description: The NUMA nodes of the host that hold memory (what O(merge_across_nodes=auto) decides on).
  returned: when the kernel has KSM
  type: list
  elements: int
  sample: [0, 1]
persisted:
  description:
    - The knobs the boot configuration applies at every boot after the task (predicted in check mode),
      typed like RV(before). Empty when there is no boot configuration.
    - Returned with O(persist=false) too, showing the boot configuration that is already there.
  returned: when the kernel has KSM
  type: dict
  sample:
    pages_to_scan: 1000
    run: 1
boot_unit:
  description: Path of the systemd unit that holds the boot configuration.
  returned: when the kernel has KSM
  type: str
  sample: /etc/systemd/system/samepage-ksm-sysfs.service
competing_managers:
  description:
    - The short form of RV(competing_writers) - each other program that will overwrite knobs this task set,
      with those knobs. The collection's own tuner is not listed.
  returned: when the kernel has KSM
  type: dict
  sample:
    ksmtuned: [run, pages_to_scan]
competing_writers:
  description:
    - The other writers found on the host (see RV(samepage.ksm.ksm_info#module:competing_writers)) that will
      overwrite knobs this task set, each with a warning that says what to change otherwise. A writer that
      always writes the value the task set (C(ksm.service) writes C(run=1)) is not listed.
    - RV(competing_writers[].knobs) are the knobs of the task it overwrites.
  returned: when the kernel has KSM
  type: list
  elements: dict
  contains:
    name:
      description: The writer.
      type: str
    knobs:
      description: The knobs of this task it overwrites.
      type: list
      elements: str
    when:
      description: When it writes them.
      type: str
    evidence:
      description: What it was found by (process, unit symlink, file and line, TuneD profile).
      type: list
      elements: str
    ours:
      description: Whether it is the collection's own tuner.
      type: bool
    remedy:
      description: What to change so that it stops overwriting the knobs.
      type: str
  sample:
    - name: qemu-kvm.service
      knobs: [run]
      when: at boot
      evidence:
        - qemu-kvm.service enabled (/etc/systemd/system/multi-user.target.wants/qemu-kvm.service)
        - "/etc/default/qemu-kvm: KSM_ENABLED=AUTO"
      ours: false
      remedy: set KSM_ENABLED (1, 0) and SLEEP_MILLISECS in /etc/default/qemu-kvm to the values you want
msg:
  description: What was done, or would be done in check mode.
  returned: always
  type: str
  sample: "Set pages_to_scan=1000, run=1"
diff:
  description:
    - In diff mode, a list of before/after pairs. The first has the writable knobs (as in RV(before)
      and RV(after)); with O(persist=true) the unit file and its enablement symlink follow, as text.
  returned: when diff mode is on and the kernel has KSM
  type: list
  elements: dict
  sample:
    - before_header: /sys/kernel/mm/ksm
      after_header: /sys/kernel/mm/ksm
      before: {pages_to_scan: 100, run: 0}
      after: {pages_to_scan: 1000, run: 1}
'''

from ansible_collections.samepage.ksm.plugins.module_utils import _errors
from ansible_collections.samepage.ksm.plugins.module_utils import _ksm
from ansible_collections.samepage.ksm.plugins.module_utils import _ksm_boot
from ansible_collections.samepage.ksm.plugins.module_utils import _ksm_writers
from ansible_collections.samepage.ksm.plugins.module_utils import _options

# Knobs whose option is not the kernel value: run is a bool (0/1; 2 is ksm_unmerge's business) and
# merge_across_nodes a NUMA policy (auto/always/never).
POLICY_OPTIONS = {
    'run': dict(type='bool'),
    'merge_across_nodes': dict(type='str', choices=['auto', 'always', 'never']),
}
OPTION_TYPES = {_ksm.UINT: 'int', _ksm.ULONG: 'int', _ksm.INT: 'int', _ksm.BOOL: 'bool', _ksm.CHOICE: 'str'}


def knob_options():
    """One option per writable knob of the catalogue, typed after it (the kernel's range is checked by
    _ksm.validate, which names the knob)."""
    spec = {}
    for knob in _ksm.WRITABLE_KNOBS:
        if knob.name in POLICY_OPTIONS:
            spec[knob.name] = dict(POLICY_OPTIONS[knob.name])
            continue
        spec[knob.name] = dict(type=OPTION_TYPES[knob.kind])
        if knob.kind == _ksm.CHOICE:
            spec[knob.name]['choices'] = list(knob.choices)
    return spec


def argument_spec():
    spec = knob_options()
    spec.update(
        unmerge_if_busy=dict(type='bool', default=False),
        skip_missing=dict(type='bool', default=False),
        persist=dict(type='bool', default=False),
        persist_mode=dict(type='str', choices=list(_ksm_boot.MODES), default='merge'),
        handled_writers=dict(type='list', elements='str', default=[]),
    )
    spec.update(_options.memory_check())
    spec.update(_options.host_lock())
    return spec


def knobs_of(state):
    """The writable knobs of a read_state() result."""
    return {name: state[name] for name in _ksm.WRITE_ORDER if name in state}


def as_list(writes):
    return [dict(knob=name, value=value) for name, value in writes]


def describe_writes(writes):
    return ', '.join('%s=%s' % (name, _ksm.encode(name, value)) for name, value in writes)


class SysfsTask:
    """One run of the module: read, validate and plan everything, then write (unless in check mode)."""

    def __init__(self, module):
        self.module = module
        self.params = module.params
        self.ksm = _ksm.Ksm()
        self.result = dict(changed=False, writes=[], skipped_knobs=[])
        self.boot_committed = False
        self.handled = set()

    # -- what is asked ------------------------------------------------------------------------------
    def wanted(self, state, nodes):
        """The task's knobs as kernel values ({name: value}), validated by Ksm.plan later."""
        params = self.params
        wanted = {}
        for name in _ksm.WRITE_ORDER:
            if name not in POLICY_OPTIONS and params[name] is not None:
                wanted[name] = params[name]
        if params['run'] is not None:
            wanted['run'] = 1 if params['run'] else 0
        policy = params['merge_across_nodes']
        if policy is not None:
            if policy == 'auto' and 'merge_across_nodes' not in state:
                # A kernel without NUMA has one node: there is nothing to keep apart.
                pass
            else:
                wanted['merge_across_nodes'] = _ksm.merge_across_nodes_for(policy, nodes)
        return wanted

    # -- the whole task ---------------------------------------------------------------------------
    def run(self):
        params = self.params
        result = self.result
        self.handled = self.handled_writers()     # an unknown name fails before anything is read or written
        state = self.ksm.read_state()
        nodes = _ksm.numa_nodes_with_memory()
        before = knobs_of(state)
        result.update(before=before, numa_nodes=nodes)

        wanted = self.wanted(state, nodes)
        plan = self.ksm.plan_change(state, wanted, skip_missing=params['skip_missing'],
                                    unmerge_if_busy=params['unmerge_if_busy'], margin=params['memory_margin'])
        applied = plan.applied
        if plan.missing:
            result['skipped_knobs'] = sorted(plan.missing, key=_ksm.WRITE_ORDER.index)
            self.module.warn('Skipped %s: not available on this kernel (%s), skip_missing=true'
                             % (', '.join(result['skipped_knobs']), _ksm.kernel_release()))

        boot_plan, persisted = self.plan_boot(applied)
        self.warn_competing_managers(applied)

        boot_changed = boot_plan is not None and boot_plan.changed
        result['changed'] = plan.changed or boot_changed
        if self.module.check_mode:
            writes = plan.writes
            after = knobs_of(plan.predicted)
            if plan.unmerge:
                result['unmerged'] = plan.unmerge_figures()
        else:
            if boot_plan is not None:
                boot_plan.stage()     # a read-only /etc fails here, before anything is written
            try:
                writes = self.ksm.execute(plan)
            except _ksm.KsmError:
                if boot_plan is not None:
                    boot_plan.abandon()
                raise
            if plan.unmerged is not None:
                result['unmerged'] = plan.unmerged
            if boot_plan is not None and boot_plan.commit(self.module.atomic_move):
                self.boot_committed = True
                self.daemon_reload()
            after = knobs_of(self.ksm.read_state()) if writes else before
        result['writes'] = as_list(writes)
        result['after'] = after
        result['msg'] = self.message(writes, boot_changed, persisted)
        if self.module._diff:
            diff = [dict(before_header=self.ksm.io.root, after_header=self.ksm.io.root, before=before, after=after)]
            if boot_plan is not None:
                diff.extend(boot_plan.diff())
            result['diff'] = diff
        return result

    # -- checks -------------------------------------------------------------------------------------
    def plan_boot(self, applied):
        """(BootPlan or None, the knobs the boot configuration will apply): persist=true plans the unit;
        persist=false only reads it, to warn where it will change the live values back at the next boot."""
        params = self.params
        boot = _ksm_boot.BootConfig()
        self.result['boot_unit'] = boot.unit_path
        boot_plan = None
        try:
            persisted_before = boot.read()
        except _ksm.KsmError as err:
            if params['persist']:
                raise
            # Only looked at for a warning: a boot configuration that cannot be read must not fail a live change.
            self.module.warn('%s (persist=false: the live change goes ahead)' % err.msg)
            persisted_before = {}
        if params['persist']:
            persisted = _ksm_boot.combine(persisted_before, applied, params['persist_mode'])
            boot_plan = boot.plan(persisted)
            persisted = boot_plan.after
        else:
            persisted = persisted_before
            self.warn_boot_conflicts(persisted_before, applied, boot)
        self.result['persisted'] = persisted
        return boot_plan, persisted

    def handled_writers(self):
        """The writers of handled_writers, checked against the ones _ksm_writers knows."""
        handled = self.params['handled_writers']
        unknown = [name for name in handled if name not in _ksm_writers.BY_NAME]
        if unknown:
            raise _ksm.KsmError('Invalid value %r for handled_writers: %s is not a writer of KSM knobs (expected '
                                'names from: %s)' % (handled, unknown[0][:100], ', '.join(_ksm_writers.BY_NAME)),
                                option='handled_writers')
        return set(handled)

    def warn_competing_managers(self, applied):
        """Warn about every other writer that will overwrite a knob the task set (warnings only), but those
        the caller deals with (handled_writers)."""
        handled = self.handled
        overwriting = _ksm_writers.overwriting(_ksm_writers.find().found, applied)
        writers = []
        for finding, knobs in overwriting:
            if finding.writer.name in handled:
                continue
            entry = finding.as_dict()
            entry['knobs'] = knobs
            writers.append(entry)
            self.module.warn(_ksm_writers.warning(finding, knobs))
        self.result['competing_writers'] = writers
        self.result['competing_managers'] = {entry['name']: entry['knobs'] for entry in writers
                                             if not entry['ours']}

    def warn_boot_conflicts(self, persisted, applied, boot):
        conflicts = ['%s=%s' % (name, _ksm.encode(name, persisted[name]))
                     for name in _ksm.WRITE_ORDER
                     if name in persisted and name in applied and applied[name] != persisted[name]]
        if conflicts:
            self.module.warn('The boot configuration (%s) sets %s: the values this task set live will be changed back '
                             'at the next boot. Use persist=true to update it.' % (boot.unit_path, ', '.join(conflicts)))

    # -- writing ------------------------------------------------------------------------------------
    def daemon_reload(self):
        systemctl = self.module.get_bin_path('systemctl')
        if systemctl is None:
            return
        rc, out, err = self.module.run_command([systemctl, 'daemon-reload'], environ_update={'LC_ALL': 'C'})
        if rc != 0:
            raise _ksm.KsmError('The boot configuration was written, but systemctl daemon-reload failed (rc=%d): %s'
                                % (rc, (err or out).strip()))

    # -- reporting ----------------------------------------------------------------------------------
    def partial(self):
        """The result of a task that failed: what it found, the writes the kernel accepted (undo writes
        included), the knobs read back, and changed only if the host really is different now."""
        result = dict(self.result)
        journal = self.ksm.journal
        result['writes'] = as_list(journal)
        unmerged = ('run', 2) in journal
        if not unmerged:
            result.pop('unmerged', None)
        result.pop('after', None)
        changed = unmerged or self.boot_committed
        if 'before' in result:
            try:
                result['after'] = knobs_of(self.ksm.read_state())
                changed = changed or result['after'] != result['before']
            except _errors.SamepageError:
                changed = changed or bool(journal)   # cannot look: what was written counts
        result['changed'] = changed
        return result

    def message(self, writes, boot_changed, persisted):
        verb = 'Would set' if self.module.check_mode else 'Set'
        parts = []
        if writes:
            parts.append('%s %s' % (verb, describe_writes(writes)))
        if 'unmerged' in self.result:
            figures = self.result['unmerged']
            parts.append('%s %d pages (%s) first, because merge_across_nodes/max_page_sharing change only with nothing '
                         'shared' % ('would unmerge' if self.module.check_mode else 'unmerged', figures['pages'],
                                     _ksm.human_bytes(figures['bytes'])))
        if boot_changed:
            if persisted:
                parts.append('%s the boot configuration (%s)' % (
                    'would write' if self.module.check_mode else 'wrote',
                    describe_writes((name, persisted[name]) for name in _ksm.WRITE_ORDER if name in persisted)))
            else:
                parts.append('%s the boot configuration' % ('would remove' if self.module.check_mode else 'removed'))
        if not parts:
            return 'Nothing to change'
        text = '; '.join(parts)
        return text[0].upper() + text[1:]


def main():
    module = _options.new_module(argument_spec(), supports_check_mode=True)
    task = SysfsTask(module)
    _options.run_writer(module, 'ksm_sysfs', task.run, task.partial)


if __name__ == '__main__':
    main()
