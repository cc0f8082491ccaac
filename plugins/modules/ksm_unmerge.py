#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, samepage.ksm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

DOCUMENTATION = r'''
module: ksm_unmerge
short_description: Unmerge every Kernel Same-page Merging (KSM) page, after checking that memory allows it
version_added: 0.1.0
description:
  - Unmerges every KSM page (writes C(run=2) to C(/sys/kernel/mm/ksm/run)) and leaves ksmd in the state
    asked for with O(ksmd).
  - An unmerge gives every process a private copy of each page it shared, so it needs memory - about
    (C(pages_sharing) + C(ksm_zero_pages)) times the page size. Before unmerging the module compares that
    with C(MemAvailable) plus free swap minus O(memory_margin), and refuses with both figures when it does
    not fit, unless O(force=true).
  - The kernel performs the unmerge synchronously inside the write. If it runs out of memory (C(ENOMEM))
    or a signal interrupts it, the kernel sets C(run=0) and leaves the job half done; the task then fails
    with a message saying so and giving the counters read back afterwards.
  - After the unmerge the module reads the counters again and fails if C(pages_shared), C(pages_sharing)
    or C(ksm_zero_pages) is not 0.
  - Nothing is changed when nothing is shared and ksmd is already in the state asked for.
  - Processes in a memory cgroup with a limit (libvirt C(memtune hard_limit), systemd C(MemoryMax=)) can
    be killed by their cgroup's OOM killer even when the host has enough memory; the module warns about
    this whenever it unmerges something.
  - A host whose kernel has no KSM has nothing to unmerge - with O(ksmd=stopped) the task succeeds
    without a change; O(ksmd=running) fails there.
options:
  ksmd:
    description:
      - What ksmd does after the unmerge.
      - V(stopped) leaves C(run=2), which means stopped with everything unmerged (and satisfies
        O(samepage.ksm.ksm_sysfs#module:run=false)). C(run=0) with nothing shared counts as stopped as well.
        When nothing is shared but ksmd is running, V(stopped) writes C(run=2), which stops ksmd and frees
        its scan metadata at almost no cost.
      - V(running) writes C(run=1) after the unmerge, so ksmd starts merging again from scratch (useful
        after a change that needs everything unmerged). Pages may be merged again soon after, so on a host
        with mergeable memory the next run of the task finds something to unmerge again.
    type: str
    choices: [stopped, running]
    default: stopped
  force:
    description:
      - Unmerge even when the memory check says it does not fit (a warning is still given).
      - The check is still made and reported in RV(needed_bytes) and RV(budget_bytes).
    type: bool
    default: false
extends_documentation_fragment:
  - samepage.ksm._ksm.attributes
  - samepage.ksm._ksm.memory_check
  - samepage.ksm._ksm.host_lock
attributes:
  check_mode:
    support: full
    details: Reports the memory estimate, the outcome of the memory check and whether it would unmerge,
      and writes nothing.
  diff_mode:
    support: full
    details: Shows C(run) and the sharing counters before and after.
  idempotent:
    support: full
    details: With O(ksmd=running) ksmd may merge pages again between two runs, which the next run then unmerges.
notes:
  - Needs root (become) to write C(/sys/kernel/mm/ksm/run).
  - If ksmtuned runs, it starts ksmd again within its monitor interval; the module warns when it sees it.
    Stop it first with M(samepage.ksm.ksm_service). It warns likewise about every other running program that
    rewrites C(run) every interval (oVirt's MOM, KubeVirt's virt-handler, the collection's own tuner), the ones
    RV(samepage.ksm.ksm_info#module:competing_writers) lists.
  - The memory check is made on the host as a whole.
seealso:
  - module: samepage.ksm.ksm_info
  - module: samepage.ksm.ksm_sysfs
  - module: samepage.ksm.ksm_service
  - name: Kernel Samepage Merging (admin guide)
    description: The run file and what writing 2 does.
    link: https://docs.kernel.org/admin-guide/mm/ksm.html
author:
  - samepage.ksm contributors (@samepage)
'''

EXAMPLES = r'''
- name: Unmerge everything and leave ksmd stopped
  samepage.ksm.ksm_unmerge:
  become: true

- name: See what an unmerge would cost, without doing it
  samepage.ksm.ksm_unmerge:
  check_mode: true
  register: estimate

- name: Show the estimate
  ansible.builtin.debug:
    msg: >-
      needs {{ estimate.needed_bytes | human_readable }},
      may use {{ estimate.budget_bytes | human_readable }}

- name: Unmerge, keep 2 GiB free, then let ksmd merge again from scratch
  samepage.ksm.ksm_unmerge:
    ksmd: running
    memory_margin: 2G
  become: true

- name: Unmerge even though the memory check fails (processes may be OOM-killed)
  samepage.ksm.ksm_unmerge:
    force: true
  become: true
'''

RETURN = r'''
pages_unmerged:
  description:
    - Page mappings that received a private copy (C(pages_sharing) + C(ksm_zero_pages) before).
    - In check mode, the pages that would be unmerged.
  returned: always
  type: int
  sample: 15360
bytes_unmerged:
  description: RV(pages_unmerged) times the page size.
  returned: always
  type: int
  sample: 62914560
duration:
  description: Seconds the unmerge write took (V(0.0) when nothing was unmerged or in check mode).
  returned: always
  type: float
  sample: 0.034
needed_bytes:
  description: The memory estimate of the unmerge, (C(pages_sharing) + C(ksm_zero_pages)) times the page size.
  returned: always
  type: int
  sample: 62914560
budget_bytes:
  description:
    - Memory the unmerge may use - C(MemAvailable) plus C(SwapFree) minus O(memory_margin). Can be negative.
  returned: always
  type: int
  sample: 23622320128
margin_bytes:
  description: O(memory_margin) in bytes.
  returned: always
  type: int
  sample: 1288490188
memory_before:
  description: Memory of the host before the task, in bytes.
  returned: always
  type: dict
  contains:
    mem_total:
      description: C(MemTotal).
      type: int
    mem_available:
      description: C(MemAvailable).
      type: int
    swap_free:
      description: C(SwapFree).
      type: int
  sample:
    mem_total: 25769803776
    mem_available: 22548578304
    swap_free: 2147483648
memory_after:
  description: Memory of the host after the task, in bytes (same keys as RV(memory_before)).
  returned: when something was written (not in check mode)
  type: dict
  sample:
    mem_total: 25769803776
    mem_available: 22485663744
    swap_free: 2147483648
run_before:
  description: C(run) before the task.
  returned: when the kernel has KSM
  type: int
  sample: 1
run_after:
  description: C(run) after the task (predicted in check mode).
  returned: when the kernel has KSM
  type: int
  sample: 2
msg:
  description: What was done, or would be done in check mode.
  returned: always
  type: str
  sample: "Unmerged 15360 pages (60.0 MiB) in 0.03 s; ksmd stopped (run=2)"
diff:
  description: C(run), C(pages_shared), C(pages_sharing) and C(ksm_zero_pages) before and after.
  returned: when the kernel has KSM and diff mode is on
  type: dict
  sample:
    before: {run: 1, pages_shared: 1024, pages_sharing: 15360, ksm_zero_pages: 0}
    after: {run: 2, pages_shared: 0, pages_sharing: 0, ksm_zero_pages: 0}
'''


from ansible_collections.samepage.ksm.plugins.module_utils import _ksm
from ansible_collections.samepage.ksm.plugins.module_utils import _ksm_writers
from ansible_collections.samepage.ksm.plugins.module_utils import _options

RUN_FOR = {'stopped': 2, 'running': 1}

CGROUP_WARNING = (
    'Processes in a memory cgroup with a limit (libvirt memtune hard_limit, systemd MemoryMax=) need memory '
    'within their own limit for the pages they get back, and their cgroup OOM killer can end them even when '
    'the host as a whole had enough memory.')


def memory(meminfo):
    return {
        'mem_total': meminfo.get('MemTotal', 0),
        'mem_available': meminfo.get('MemAvailable', meminfo.get('MemFree', 0)),
        'swap_free': meminfo.get('SwapFree', 0),
    }


def sharing_view(state):
    """What the diff shows: run and the sharing counters this kernel has."""
    view = {'run': state.get('run')}
    for name in _ksm.SHARING_COUNTERS:
        if name in state:
            view[name] = state[name]
    return view


def argument_spec():
    spec = dict(
        ksmd=dict(type='str', default='stopped', choices=['stopped', 'running']),
        force=dict(type='bool', default=False),
    )
    spec.update(_options.memory_check())
    spec.update(_options.host_lock())
    return spec


def main():
    module = _options.new_module(argument_spec(), supports_check_mode=True)
    result = dict(changed=False, pages_unmerged=0, bytes_unmerged=0, duration=0.0)

    def task():
        run(module, result)
        return result
    _options.run_writer(module, 'ksm_unmerge', task, lambda: result)


def run(module, result):
    """Ask _ksm for the plan, report it (check mode) or have it executed and report what happened, in result
    (also when it fails: result is the partial result then)."""
    ksmd = module.params['ksmd']
    ksm = _ksm.Ksm()
    budget = _ksm.UnmergeBudget(module.params['memory_margin'])
    result.update(memory_before=memory(budget.meminfo), margin_bytes=budget.margin, budget_bytes=budget.budget,
                  needed_bytes=0)
    plan = ksm.plan_unmerge(RUN_FOR[ksmd], budget)
    if not plan.available:
        result['msg'] = ('%s does not exist: this kernel has no KSM, so nothing is merged and ksmd does not '
                         'run' % ksm.io.root)
        return

    state = plan.state
    result.update(run_before=state.get('run'), run_after=plan.run_after, needed_bytes=plan.memory.needed)
    if not plan.changed:
        result['msg'] = 'Nothing is shared and ksmd is already %s (run=%s)' % (ksmd, state.get('run'))
        set_diff(module, result, state, state)
        return

    if not plan.memory.ok:
        if not module.params['force']:
            raise plan.memory.error
        module.warn('force=true: unmerging although the memory check failed. %s' % plan.memory.error.msg)
        plan.memory.override()
    for finding, dummy in _ksm_writers.running(['run']):
        module.warn(_ksm_writers.unmerge_warning(finding))

    figures = plan.unmerge_figures()
    result.update(changed=True, pages_unmerged=figures['pages'], bytes_unmerged=figures['bytes'])
    if module.check_mode:
        set_diff(module, result, state, plan.predicted)
        result['msg'] = describe(True, plan, ksmd)
        return

    try:
        ksm.execute(plan)
    finally:
        report_outcome(module, result, plan.outcome)
    outcome = plan.outcome
    if outcome.meminfo_after is None:
        module.warn(outcome.meminfo_error)
    else:
        result['memory_after'] = memory(outcome.meminfo_after)
    set_diff(module, result, state, outcome.after)
    result['msg'] = describe(False, plan, ksmd, outcome.duration)


def report_outcome(module, result, outcome):
    """What the execution really did, also when it failed half way (the figures read back by _ksm)."""
    if outcome is None:
        return      # refused before anything was written
    result.update(changed=outcome.changed, run_after=outcome.run_after, pages_unmerged=outcome.pages,
                  bytes_unmerged=outcome.bytes, duration=outcome.duration)
    if outcome.unmerged and outcome.pages:
        module.warn(CGROUP_WARNING)


def describe(check, plan, ksmd, seconds=0.0):
    """The message: what was done, or what would be done in check mode."""
    figures = plan.unmerge_figures()
    if plan.unmerge and figures['pages']:
        amount = '%d pages (%s)' % (figures['pages'], _ksm.human_bytes(figures['bytes']))
        text = 'Would unmerge %s' % amount if check else 'Unmerged %s in %.2f s' % (amount, seconds)
    elif plan.unmerge:
        text = 'Would write run=2' if check else 'Wrote run=2'
        text += ' (no page mapping was shared; it clears what is left of KSM and stops ksmd)'
    else:
        text = ('Would write run=%d' if check else 'Wrote run=%d') % plan.wanted_run
        text += ' (nothing was shared)'
    return '%s; ksmd %s (run=%d)' % (text, ksmd, plan.wanted_run)


def set_diff(module, result, before, after):
    if module._diff:
        result['diff'] = {'before': sharing_view(before), 'after': sharing_view(after)}


if __name__ == '__main__':
    main()
