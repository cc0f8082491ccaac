# -*- coding: utf-8 -*-
# Copyright: (c) 2026, samepage.ksm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""One reading of a host's KSM: what ksm_info returns, and what the metrics writer exposes.

Snapshot.take() reads the knobs and counters (_ksm), ksmd's CPU, the unmerge headroom (the memory verdict
of _ksm.UnmergeBudget, the rule ksm_unmerge applies), the audit of who shares (_ksm_audit), the other writers
of KSM knobs (_ksm_writers) and the samepage tuner's state file (_ksm_tuner.read_status). The module and the
program read the same figures through the same code, so the metrics equal ksm_info's.

Private to samepage.ksm (leading underscore). Standard library only, no Ansible imports, Python 3.8+
syntax; installed with the metrics program (_ksm_metrics), so its siblings are imported relatively.
"""

from . import _ksm
from . import _ksm_audit
from . import _ksm_tuner
from . import _ksm_writers

DEFAULT_MARGIN = _ksm.DEFAULT_MARGIN


def split_state(state):
    """(settings, counters) of a state read from the kernel."""
    managed = set(_ksm.WRITE_ORDER) | set(knob.name for knob in _ksm.LEGACY_KNOBS)
    settings = {name: value for name, value in state.items() if name in managed}
    counters = {name: value for name, value in state.items() if name not in managed}
    return settings, counters


def savings(state, page_bytes):
    result = {
        'bytes_saved': int(state.get('pages_sharing', 0)) * page_bytes,
        'zero_pages_bytes': int(state.get('ksm_zero_pages', 0)) * page_bytes,
        'sharing_ratio': None,
    }
    if 'general_profit' in state:
        result['general_profit'] = state['general_profit']
    if state.get('pages_shared'):
        result['sharing_ratio'] = round(float(state.get('pages_sharing', 0)) / state['pages_shared'], 2)
    return result


def unmerge_headroom(state, page_bytes, margin=DEFAULT_MARGIN, meminfo=None):
    """What an unmerge (run=2) would need now against what it may use, judged by _ksm.UnmergeBudget (the
    verdict ksm_unmerge and ksm_sysfs's unmerge_if_busy act on). KsmError for a bad margin or no meminfo."""
    budget = _ksm.UnmergeBudget(margin, meminfo)
    verdict = budget.verdict(state, page_bytes)
    info = budget.meminfo
    return {
        'needed_bytes': verdict.needed,
        'mem_available_bytes': info.get('MemAvailable', info.get('MemFree', 0)),
        'swap_free_bytes': info.get('SwapFree', 0),
        'memory_margin': str(margin),
        'margin_bytes': budget.margin,
        'budget_bytes': budget.budget,
        'headroom_bytes': budget.budget - verdict.needed,
        'fits': verdict.ok,
    }


class Snapshot:
    """One reading. take() fills `result` step by step, so that a failure leaves what was read in it."""

    def __init__(self, max_processes=10, max_scan_processes=_ksm_audit.MAX_READ,
                 max_scan_seconds=_ksm_audit.MAX_SECONDS, memory_margin=DEFAULT_MARGIN,
                 tuner_state=None, tuner_unit=None, proc=None):
        self.max_processes = max_processes
        self.max_scan_processes = max_scan_processes
        self.max_scan_seconds = max_scan_seconds
        self.memory_margin = memory_margin
        self.tuner_state = tuner_state or _ksm_tuner.DEFAULT_STATE_PATH
        self.tuner_unit = tuner_unit or _ksm_tuner.UNIT_PATH
        self.proc = proc or _ksm.PROC_DIR
        self.result = None

    def take(self):
        """The figures as ksm_info returns them (without `changed`). Raises SamepageError or OSError, with
        `result` holding what was read before."""
        ksm = _ksm.Ksm()
        page_bytes = _ksm.page_size()
        capabilities = {
            'knobs': [],
            'kernel_release': _ksm.kernel_release(),
            'numa_nodes_with_memory': _ksm.numa_nodes_with_memory(),
            'page_size': page_bytes,
            'advisor': False,
            'per_process': _ksm.per_process_files(),
        }
        result = dict(available=False, settings={}, counters={}, capabilities=capabilities, processes=[], guests=[],
                      competing_managers={}, competing_writers=[], competing_writers_skipped=[], tuner=None, ksmd=None)
        self.result = result
        # The tuner reports itself whether or not this kernel has KSM (it then says why it cannot work).
        result['tuner'] = _ksm_tuner.read_status(self.tuner_state, self.tuner_unit, self.proc)
        try:
            ksm.require()
        except _ksm.KsmUnavailable as err:
            result['msg'] = err.msg
            return result
        state = ksm.read_state()
        result['available'] = True
        result['settings'], result['counters'] = split_state(state)
        capabilities['knobs'] = sorted(state)
        capabilities['advisor'] = 'advisor_mode' in state
        result['savings'] = savings(state, page_bytes)
        result['ksmd'] = _ksm.read_ksmd(self.proc)
        result['unmerge_headroom'] = unmerge_headroom(state, page_bytes, self.memory_margin)
        if self.max_processes:
            scan = _ksm_audit.scan(page_bytes=page_bytes, max_read=self.max_scan_processes,
                                   max_seconds=self.max_scan_seconds)
            result['processes'] = scan.rows[:self.max_processes]
            result['guests'] = scan.guests
            result['process_scan'] = scan.summary()
        writers = _ksm_writers.find()
        result['competing_writers'] = [finding.as_dict() for finding in writers.found]
        result['competing_writers_skipped'] = writers.skipped
        result['competing_managers'] = _ksm_writers.short_form(writers.found)
        return result
