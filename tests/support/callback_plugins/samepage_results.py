# -*- coding: utf-8 -*-
# Copyright: (c) 2026, samepage.ksm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Callback plugin of the test suites: every task result and the play stats, as JSON lines.

Enabled only by tests/support/ansible_cli.py (ANSIBLE_CALLBACK_PLUGINS points at this directory,
ANSIBLE_CALLBACKS_ENABLED names it). It writes to the file named by SAMEPAGE_RESULTS_FILE, one JSON
object per line, appended as events arrive (a run that crashes half way still leaves what it did):
    {"event": "result", "status": "ok|failed|skipped|unreachable", "host": ..., "task": ...,
     "action": ..., "result": {...}}
    {"event": "stats", "stats": {host: {ok, changed, failed, unreachable, skipped, rescued, ignored}}}
"""

DOCUMENTATION = r"""
name: samepage_results
type: aggregate
short_description: Task results as JSON lines for the samepage.ksm test helpers
description:
  - Appends every task result and the final stats as JSON lines to the file named by the
    E(SAMEPAGE_RESULTS_FILE) environment variable. Does nothing when it is unset.
author: samepage.ksm contributors
requirements:
  - enabled in callbacks_enabled
"""

import json
import os

from ansible.plugins.callback import CallbackBase

RESULTS_FILE_ENV = 'SAMEPAGE_RESULTS_FILE'


def _text(value):
    """Warnings/deprecations are objects with a msg in 2.19+, plain strings before."""
    for attribute in ('msg', 'message'):
        if hasattr(value, attribute):
            return str(getattr(value, attribute))
    return str(value)


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = 'aggregate'
    CALLBACK_NAME = 'samepage_results'
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._path = os.environ.get(RESULTS_FILE_ENV)

    def _emit(self, record):
        if not self._path:
            return
        with open(self._path, 'a') as handle:
            handle.write(json.dumps(record, default=repr, sort_keys=True) + '\n')

    def _record(self, status, result):
        task = getattr(result, 'task', None) or result._task
        host = getattr(result, 'host', None) or result._host
        data = dict(getattr(result, 'result', None) or result._result)
        # 2.19+ keeps warnings and deprecations out of the result dict; put them back as text.
        for key in ('warnings', 'deprecations'):
            extra = getattr(result, key, None)
            if extra and key not in data:
                data[key] = [_text(item) for item in extra]
        self._emit({
            'event': 'result',
            'status': status,
            'host': host.get_name(),
            'task': task.get_name(),
            'action': getattr(task, 'resolved_action', None) or task.action,
            'result': data,
        })

    def v2_runner_on_ok(self, result):
        self._record('ok', result)

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._record('failed', result)

    def v2_runner_on_skipped(self, result):
        self._record('skipped', result)

    def v2_runner_on_unreachable(self, result):
        self._record('unreachable', result)

    def v2_playbook_on_stats(self, stats):
        summary = {}
        for host in sorted(stats.processed.keys()):
            counts = stats.summarize(host)
            summary[host] = {
                'ok': counts['ok'],
                'changed': counts['changed'],
                'failed': counts['failures'],
                'unreachable': counts['unreachable'],
                'skipped': counts['skipped'],
                'rescued': counts.get('rescued', 0),
                'ignored': counts.get('ignored', 0),
            }
        self._emit({'event': 'stats', 'stats': summary})
