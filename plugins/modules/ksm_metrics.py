#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, samepage.ksm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

DOCUMENTATION = r'''
module: ksm_metrics
short_description: Keep the KSM metrics of a host in node_exporter's textfile directory, refreshed by a systemd timer
version_added: 0.1.0
description:
  - Installs the collection's metrics writer, C(samepage-ksm-metrics), and the systemd timer that runs it, in one
    module execution. Every O(interval) seconds (and at boot) it writes C(samepage_ksm.prom) in O(directory) in the
    Prometheus text exposition format, for the textfile collector of node_exporter.
  - "The file holds what M(samepage.ksm.ksm_info) reports, read by the same code: every knob and counter of
    C(/sys/kernel/mm/ksm) (base units: C(sleep_millisecs) as C(samepage_ksm_sleep_seconds)), the memory saved and
    the kernel's C(general_profit) in bytes, ksmd's CPU seconds (C(samepage_ksm_ksmd_cpu_seconds_total)), the
    unmerge headroom (what C(run=2) would need against C(MemAvailable) plus free swap minus O(memory_margin)), the
    samepage tuner's phase and rate when it runs, the pages each QEMU guest merges (label C(guest)) and the other
    writers of KSM knobs found (label C(writer)). Every metric is named C(samepage_ksm_*); C(docs/metrics.md)
    of the collection lists them."
  - The file is written atomically (a temporary file in the same directory, renamed into place, mode 0644), so
    node_exporter never reads half of one.
  - The program is the collection's own code, copies of its module utilities as a package under
    C(/usr/lib/samepage-ksm/metrics/), run as the oneshot service C(samepage-ksm-metrics.service) (hardened; it
    may write only in O(directory)) by C(samepage-ksm-metrics.timer). Every file is written atomically and only
    when its content differs; C(systemctl daemon-reload) runs only when a unit changed.
  - When the timer is started or restarted (something changed), the module also runs the service once and waits
    for it, so a program that cannot write its file fails the task.
  - Hosts where systemd is not PID 1 get a clear error, before anything is written.
extends_documentation_fragment:
  - samepage.ksm._ksm.attributes
attributes:
  check_mode:
    support: full
    details:
      - Nothing is written and only C(systemctl show) runs; RV(files) and RV(actions) say what would be written
        and run.
  diff_mode:
    support: full
    details:
      - The service and timer units, before and after. Program files are listed in RV(files).
  idempotent:
    support: full
options:
  state:
    description:
      - V(present) installs the program and its units, and enables and starts the timer.
      - V(absent) stops and disables the timer, removes the units and the program, and removes the metrics file
        from O(directory) (so that node_exporter stops exposing figures nobody refreshes). O(directory) itself is
        left.
    type: str
    choices: [present, absent]
    default: present
  directory:
    description:
      - The textfile directory of node_exporter (its C(--collector.textfile.directory)). The metrics are written to
        C(samepage_ksm.prom) in it. Created (mode 0755) when missing.
      - The default is Debian's and Ubuntu's (package C(prometheus-node-exporter)); other packages use for example
        C(/var/lib/node_exporter/textfile_collector).
      - An absolute path made of letters, digits and the characters C(._/+@:=,-).
    type: path
    default: /var/lib/prometheus/node-exporter
  interval:
    description:
      - Seconds between two refreshes of the file (5 to 86400). Each refresh reads C(/proc) and the unit files of
        the host once (milliseconds of CPU on a typical host; bounded like M(samepage.ksm.ksm_info)'s scan).
    type: int
    default: 60
  memory_margin:
    description:
      - The safety margin of the unmerge headroom metrics, as M(samepage.ksm.ksm_unmerge) takes it - a percentage of
        total memory (V(5%)) or a size with an optional binary unit (V(512M), V(2G), V(0)).
    type: str
    default: '5%'
  python:
    description:
      - Absolute path of the Python interpreter (3.8 or newer) that runs the program.
      - Defaults to the interpreter running this module (C(ansible_python_interpreter)).
    type: path
notes:
  - Debian's C(prometheus-node-exporter) reads C(/var/lib/prometheus/node-exporter) by default, and also exposes
    C(node_textfile_mtime_seconds{file="samepage_ksm.prom"}), the time of the last refresh.
  - The samepage tuner does not write the file; the timer is its only writer.
seealso:
  - module: samepage.ksm.ksm_info
  - module: samepage.ksm.ksm_tuner
  - name: Text exposition format
    description: The format of the file.
    link: https://prometheus.io/docs/instrumenting/exposition_formats/
author:
  - samepage.ksm contributors (@samepage)
'''

EXAMPLES = r'''
- name: Expose the KSM metrics to node_exporter, refreshed every minute
  samepage.ksm.ksm_metrics:

- name: Every 15 s, into the textfile directory of an upstream node_exporter
  samepage.ksm.ksm_metrics:
    directory: /var/lib/node_exporter/textfile_collector
    interval: 15

- name: Remove the metrics writer, its timer and the metrics file
  samepage.ksm.ksm_metrics:
    state: absent
'''

RETURN = r'''
files:
  description: Files and directories written or removed (in check mode, that would be), in order.
  returned: always
  type: list
  elements: str
  sample: [/usr/lib/samepage-ksm/metrics/samepage-ksm-metrics, /etc/systemd/system/samepage-ksm-metrics.timer]
actions:
  description: The systemctl commands run, in order (in check mode, those that would run).
  returned: always
  type: list
  elements: str
  sample: [daemon-reload, enable samepage-ksm-metrics.timer, start samepage-ksm-metrics.timer,
           start samepage-ksm-metrics.service]
unit:
  description: The timer that runs the metrics writer.
  returned: always
  type: str
  sample: samepage-ksm-metrics.timer
service:
  description: The oneshot service the timer starts (it writes the file once).
  returned: always
  type: str
  sample: samepage-ksm-metrics.service
output:
  description: The metrics file.
  returned: always
  type: str
  sample: /var/lib/prometheus/node-exporter/samepage_ksm.prom
interval:
  description: Seconds between two refreshes.
  returned: when O(state=present)
  type: int
  sample: 60
status:
  description:
    - The timer before and after, as C(systemctl show) names its properties (C(unit), C(load_state),
      C(active_state), C(sub_state), C(unit_file_state), C(main_pid), C(condition_result)).
    - In check mode RV(status.after) is the prediction.
  returned: when systemd could be asked
  type: dict
  contains:
    before:
      description: The timer before the task.
      type: dict
      returned: always
    after:
      description: The timer after the task.
      type: dict
      returned: always
  sample:
    before: {unit: samepage-ksm-metrics.timer, load_state: not-found, active_state: inactive, sub_state: dead,
             unit_file_state: '', main_pid: 0, condition_result: 'no'}
    after: {unit: samepage-ksm-metrics.timer, load_state: loaded, active_state: active, sub_state: waiting,
            unit_file_state: enabled, main_pid: 0, condition_result: 'yes'}
'''

import os

from ansible_collections.samepage.ksm.plugins.module_utils._errors import run_task
from ansible_collections.samepage.ksm.plugins.module_utils import _ksm_metrics
from ansible_collections.samepage.ksm.plugins.module_utils import _options
from ansible_collections.samepage.ksm.plugins.module_utils import _program
from ansible_collections.samepage.ksm.plugins.module_utils import _systemd

PROGRAM_DIR = _ksm_metrics.PROGRAM_DIR
SERVICE = _ksm_metrics.SERVICE_NAME
TIMER = _ksm_metrics.TIMER_NAME
SERVICE_PATH = os.path.join(_ksm_metrics.UNIT_DIR, SERVICE)
TIMER_PATH = os.path.join(_ksm_metrics.UNIT_DIR, TIMER)


def program_files(sources, program_dir=None):
    """{path: text} of the metrics program under program_dir (default PROGRAM_DIR)."""
    program_dir = program_dir or PROGRAM_DIR
    return _program.program_files(sources, program_dir, _ksm_metrics.ENTRY,
                                  _program.entry_script(_ksm_metrics.PROGRAM, '_ksm_metrics', program_dir,
                                                        'samepage.ksm.ksm_metrics'))


class KsmMetrics(_program.ProgramTask):
    """One task: the metrics program, its service and timer, and the timer's state."""

    unit = TIMER
    what = 'samepage.ksm.ksm_metrics'

    def __init__(self, module):
        _program.ProgramTask.__init__(self, module)
        self.unit_paths = (SERVICE_PATH, TIMER_PATH)
        self.diff_paths = (SERVICE_PATH, TIMER_PATH)
        self.directory = None

    def no_systemd_message(self):
        return ('systemd is not running as PID 1 on this host (%s does not exist): samepage.ksm.ksm_metrics refreshes '
                'the metrics with the systemd timer %s. Nothing was changed.' % (_systemd.RUNTIME_DIR, TIMER))

    def _checked(self, check, *args):
        try:
            return check(*args)
        except _ksm_metrics.MetricsConfigError as err:
            raise _program.ProgramError('%s. Nothing was changed.' % err.msg, option=err.option)

    def wanted_files(self, state):
        self.directory = self._checked(_ksm_metrics.check_path, 'directory', self.params['directory'])
        output = _ksm_metrics.output_path(self.directory)
        if state == 'absent':
            names = list(program_files({name: '' for name in _ksm_metrics.SOURCES}))
            return _program.Files({path: None for path in names + [SERVICE_PATH, TIMER_PATH, output]},
                                  what='the metrics files')
        self._checked(_ksm_metrics.check_interval, self.params['interval'])
        self._checked(_ksm_metrics.check_margin, self.params['memory_margin'])
        python = _program.check_python(self.params['python'])
        try:
            files = program_files(_program.read_sources(_ksm_metrics.SOURCES))
        except (OSError, UnicodeDecodeError) as err:
            raise _program.ProgramError('Cannot read the metrics program from the module: %s' % err)
        files[SERVICE_PATH] = self._checked(_ksm_metrics.render_service, python, self.directory,
                                            self.params['memory_margin'], PROGRAM_DIR)
        files[TIMER_PATH] = self._checked(_ksm_metrics.render_timer, self.params['interval'])
        return _program.Files(files, directories=[self.directory], what='the metrics files')

    def after_start(self):
        # The timer's first run starts at once (OnBootSec=0 is in the past) but systemctl does not wait for it;
        # starting the oneshot service waits for that run (or makes one), so a program that fails fails the task.
        self.do('start', SERVICE)

    def prune(self, removed):
        # The program's own directories only: the textfile directory belongs to node_exporter.
        ours = [path for path in removed if path.startswith(PROGRAM_DIR + os.sep)]
        self.files.remove_empty_dirs(ours + [PROGRAM_DIR])

    def run(self):
        state = 'started' if self.params['state'] == 'present' else 'absent'
        return self.execute(state, True)

    def extra(self):
        result = {'service': SERVICE,
                  'output': _ksm_metrics.output_path(self.directory or self.params['directory'])}
        if self.params['state'] == 'present':
            result['interval'] = self.params['interval']
        return result


def argument_spec():
    spec = dict(
        state=dict(type='str', choices=['present', 'absent'], default='present'),
        directory=dict(type='path', default=_ksm_metrics.DEFAULT_DIRECTORY),
        interval=dict(type='int', default=_ksm_metrics.DEFAULT_INTERVAL),
        python=dict(type='path'),
    )
    spec.update(_options.memory_check())
    return spec


def main():
    module = _options.new_module(argument_spec(), supports_check_mode=True)
    task = KsmMetrics(module)
    run_task(module, task.run, task.failure)


if __name__ == '__main__':
    main()
