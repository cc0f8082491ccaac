#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, samepage.ksm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

DOCUMENTATION = r'''
module: ksm_tuner
short_description: Install and run the adaptive KSM tuner of samepage.ksm as a systemd service
version_added: 0.1.0
description:
  - Installs the collection's own KSM tuner, C(samepage-ksm-tuner), on a host and runs it as the hardened
    systemd service C(samepage-ksm-tuner.service), in one module execution.
  - The tuner owns C(run), C(pages_to_scan) and C(sleep_millisecs) of C(/sys/kernel/mm/ksm). It scans at
    full speed while full scans merge new pages, backs off to a cheap idle rate once a full scan gains
    (almost) nothing, never lets ksmd use more than a CPU budget averaged over a window, looks for new
    processes with mergeable memory every few seconds (looking only at process ids it has not seen), and
    starts a fast phase at once on C(systemctl reload) (SIGHUP). Optionally it merges only under memory
    pressure, as ksmtuned does. The policy and its reasons are in C(docs/tuner.md) of the collection.
  - The program is the collection's own code, copies of the module utilities C(_errors.py), C(_ksm.py) and
    C(_ksm_tuner.py), read through the module loader at run time, as a package under
    C(/usr/lib/samepage-ksm/samepage_ksm/), with an entry script C(/usr/lib/samepage-ksm/samepage-ksm-tuner).
    The configuration is C(/etc/samepage-ksm/tuner.conf) (INI, one C([tuner]) section, not shell), the unit
    C(/etc/systemd/system/samepage-ksm-tuner.service). The daemon writes its state to
    C(/run/samepage-ksm/tuner.json) (phase, rate, last gain, ksmd CPU).
  - Every file is written atomically (a temporary file renamed into place) and only when its content
    differs. C(systemctl daemon-reload) runs only when the unit changed; the service is restarted only when
    the program, the configuration or the unit changed.
  - The unit has C(Conflicts=ksmtuned.service) (starting the tuner stops ksmtuned); it leaves
    C(advisor_mode) alone, and the kernel refuses C(pages_to_scan) while the scan-time advisor is on, which
    the tuner then logs. Set the other knobs with M(samepage.ksm.ksm_sysfs).
  - Hosts where systemd is not PID 1 get a clear error, before anything is written.
extends_documentation_fragment:
  - samepage.ksm._ksm.attributes
attributes:
  check_mode:
    support: full
    details:
      - Nothing is written and only C(systemctl show) runs; RV(files) and RV(actions) say what would be
        written and run.
  diff_mode:
    support: full
    details:
      - The configuration file and the unit file, before and after. Program files are listed in RV(files).
  idempotent:
    support: full
options:
  state:
    description:
      - V(started) installs the tuner and makes sure it runs (started, or restarted when its program,
        configuration or unit changed).
      - V(stopped) installs it and makes sure it does not run. On stop the daemon leaves ksmd at the idle
        rate (C(run=1), C(idle_pages_to_scan) pages every C(idle_sleep_millisecs) ms of O(config)), or
        stopped (C(run=0)) while its pressure gate is closed; merged pages stay merged either way.
      - V(absent) stops and disables the service and removes the unit, the configuration and the program.
    type: str
    choices: [started, stopped, absent]
    default: started
  enabled:
    description:
      - Whether the service starts at boot. Ignored with O(state=absent).
    type: bool
    default: true
  config:
    description:
      - Settings of the tuner, written to C(/etc/samepage-ksm/tuner.conf) (only the keys given; the daemon
        takes the defaults for the others). They are checked before anything changes; a bad key or value
        fails the task naming the key, the value and the rule, and nothing is changed.
      - C(cpu_budget) (default V(20)) - most CPU ksmd may use, in percent of one core averaged over
        C(budget_window) (0.1 to 100). The tuner slows ksmd, and stops it for a while if it must, rather than
        exceed it.
      - C(budget_window) (default V(60)) - seconds the budget is averaged over (10 to 3600).
      - C(fast_pages_to_scan) (default V(20000)) and C(fast_sleep_millisecs) (default V(0)) - the rate while
        merging pays (1 to 100000 pages, 0 to 1000 ms); 20000 pages with 0 ms is one full core, as fast as
        ksmd goes.
      - C(idle_pages_to_scan) (default V(100)) and C(idle_sleep_millisecs) (default V(200)) - the rate once a
        full scan gains (almost) nothing (1 to 100000 pages, 1 to 60000 ms); the sleep is doubled (up to 16
        times) while idle ksmd costs more than C(idle_cpu_limit).
      - C(idle_cpu_limit) (default V(0.3)) - most CPU idle ksmd should use, in percent of one core (0.01 to
        100).
      - C(gain_threshold) (default V(64)) - a full scan that merges fewer new pages than this no longer pays
        and the tuner backs off; while idle, that many pages merged beyond the converged level start a fast
        phase again (0 to 1000000000).
      - C(process_poll_seconds) (default V(2)) - how often to look for new processes with mergeable memory
        (0.5 to 60, or 0 for never).
      - C(pressure_gate) (default V(0)) - merge only while C(MemAvailable) is below this percentage of
        C(MemTotal), as ksmtuned does (1 to 99, or 0 for always); above it plus 5 points ksmd is stopped,
        merged pages kept.
      - C(log_level) (default V(info)) - V(debug), V(info) (one line per change of phase or rate, with the
        reason), V(warning) or V(error).
    type: dict
    default: {}
  python:
    description:
      - Absolute path of the Python interpreter (3.8 or newer) that runs the daemon.
      - Defaults to the interpreter running this module (C(ansible_python_interpreter)) when not set; an
        empty value is refused.
    type: path
notes:
  - The unit is hardened (C(NoNewPrivileges), C(ProtectSystem=strict), C(ProtectKernelTunables) with only
    C(/sys/kernel/mm/ksm) writable, C(ProtectHome), C(PrivateTmp), no network); a bad configuration makes the
    daemon exit with status 78 naming the key, and C(RestartPreventExitStatus=78) keeps systemd from
    restarting it in a loop.
seealso:
  - module: samepage.ksm.ksm_sysfs
  - module: samepage.ksm.ksm_service
  - module: samepage.ksm.ksm_info
author:
  - samepage.ksm contributors (@samepage)
'''

EXAMPLES = r'''
- name: Run the adaptive tuner with its defaults (stops ksmtuned, which conflicts with it)
  samepage.ksm.ksm_tuner:

- name: At most 10 % of a core averaged over a minute, merge only under memory pressure
  samepage.ksm.ksm_tuner:
    config:
      cpu_budget: 10
      budget_window: 60
      pressure_gate: 20

- name: Make the tuner merge new memory now (a fast phase), e.g. after starting guests
  ansible.builtin.systemd_service:
    name: samepage-ksm-tuner.service
    state: reloaded

- name: Remove the tuner (ksmd is left at the idle rate, merged pages kept)
  samepage.ksm.ksm_tuner:
    state: absent
'''

RETURN = r'''
config:
  description: The settings the daemon runs with (the defaults updated with O(config)).
  returned: success
  type: dict
  sample: {cpu_budget: 10, budget_window: 60, fast_pages_to_scan: 20000, fast_sleep_millisecs: 0,
           idle_pages_to_scan: 100, idle_sleep_millisecs: 200, idle_cpu_limit: 0.3, gain_threshold: 64,
           process_poll_seconds: 2, pressure_gate: 0, log_level: info}
files:
  description: Files written or removed (in check mode, that would be), in order.
  returned: always
  type: list
  elements: str
  sample: [/usr/lib/samepage-ksm/samepage_ksm/_ksm_tuner.py, /etc/samepage-ksm/tuner.conf]
actions:
  description: The systemctl commands run, in order (in check mode, those that would run).
  returned: always
  type: list
  elements: str
  sample: [daemon-reload, enable samepage-ksm-tuner.service, restart samepage-ksm-tuner.service]
unit:
  description: The systemd unit of the tuner.
  returned: always
  type: str
  sample: samepage-ksm-tuner.service
status:
  description:
    - The unit before and after, as C(systemctl show) names its properties (C(unit), C(load_state),
      C(active_state), C(sub_state), C(unit_file_state), C(main_pid), C(condition_result)).
    - In check mode RV(status.after) is the prediction.
  returned: when systemd could be asked
  type: dict
  contains:
    before:
      description: The unit before the task.
      type: dict
      returned: always
    after:
      description: The unit after the task.
      type: dict
      returned: always
  sample:
    before: {unit: samepage-ksm-tuner.service, load_state: not-found, active_state: inactive, sub_state: dead,
             unit_file_state: '', main_pid: 0, condition_result: 'no'}
    after: {unit: samepage-ksm-tuner.service, load_state: loaded, active_state: active, sub_state: running,
            unit_file_state: enabled, main_pid: 4242, condition_result: 'yes'}
state_file:
  description: Where the running daemon writes its state (JSON; phase, rate, last gain, ksmd CPU).
  returned: always
  type: str
  sample: /run/samepage-ksm/tuner.json
'''

from ansible_collections.samepage.ksm.plugins.module_utils._errors import run_task
from ansible_collections.samepage.ksm.plugins.module_utils._ksm import KsmError
from ansible_collections.samepage.ksm.plugins.module_utils import _ksm_tuner
from ansible_collections.samepage.ksm.plugins.module_utils import _options
from ansible_collections.samepage.ksm.plugins.module_utils import _program
from ansible_collections.samepage.ksm.plugins.module_utils import _systemd

CONFIG_PATH = _ksm_tuner.DEFAULT_CONFIG_PATH
PROGRAM_DIR = _ksm_tuner.PROGRAM_DIR
UNIT_PATH = _ksm_tuner.UNIT_PATH
UNIT = _ksm_tuner.UNIT_NAME
STATE_FILE = '/run/%s/tuner.json' % _ksm_tuner.RUNTIME_DIRECTORY


def program_files(sources, program_dir=None):
    """{path: text} of the tuner program under program_dir (default PROGRAM_DIR)."""
    program_dir = program_dir or PROGRAM_DIR
    return _program.program_files(sources, program_dir, _ksm_tuner.ENTRY,
                                  _program.entry_script(_ksm_tuner.PROGRAM, '_ksm_tuner', program_dir,
                                                        'samepage.ksm.ksm_tuner'))


class KsmTuner(_program.ProgramTask):
    """One task: the tuner's program, configuration and unit, and its service's state."""

    unit = UNIT
    what = 'samepage.ksm.ksm_tuner runs the tuner as a systemd service'

    def __init__(self, module):
        _program.ProgramTask.__init__(self, module)
        self.settings = None
        self.unit_paths = (UNIT_PATH,)
        self.diff_paths = (CONFIG_PATH, UNIT_PATH)

    def no_systemd_message(self):
        return ('systemd is not running as PID 1 on this host (%s does not exist): samepage.ksm.ksm_tuner runs the '
                'tuner as the systemd service %s. Nothing was changed.' % (_systemd.RUNTIME_DIR, UNIT))

    def wanted_files(self, state):
        if state == 'absent':
            names = list(program_files({name: '' for name in _ksm_tuner.SOURCES}))
            return _program.Files({path: None for path in names + [CONFIG_PATH, UNIT_PATH]}, what='the tuner files')
        python = _program.check_python(self.params['python'])
        try:
            files = program_files(_program.read_sources(_ksm_tuner.SOURCES))
        except (OSError, UnicodeDecodeError) as err:
            raise KsmError('Cannot read the tuner program from the module: %s' % err)
        files[CONFIG_PATH] = _ksm_tuner.render(self.settings)
        try:
            files[UNIT_PATH] = _ksm_tuner.render_unit(python, PROGRAM_DIR, CONFIG_PATH)
        except _ksm_tuner.ConfigError as err:
            raise KsmError(err.msg)
        return _program.Files(files, what='the tuner files')

    def run(self):
        try:
            self.settings = _ksm_tuner.validate(self.params['config'] or {})
        except _ksm_tuner.ConfigError as err:
            raise KsmError('Invalid tuner configuration (option config): %s. Nothing was changed.' % err.msg,
                           key=err.key)
        return self.execute(self.params['state'], self.params['enabled'])

    def extra(self):
        return {'state_file': STATE_FILE}

    def result(self):
        result = _program.ProgramTask.result(self)
        if self.params['state'] != 'absent':
            result['config'] = _ksm_tuner.effective(self.settings)
        return result


def argument_spec():
    return dict(
        state=dict(type='str', choices=['started', 'stopped', 'absent'], default='started'),
        enabled=dict(type='bool', default=True),
        # A plain dict: _ksm_tuner.validate() checks it (the same rules the daemon applies to its file).
        config=dict(type='dict', default={}),
        python=dict(type='path'),
    )


def main():
    module = _options.new_module(argument_spec(), supports_check_mode=True)
    tuner = KsmTuner(module)
    run_task(module, tuner.run, tuner.failure)


if __name__ == '__main__':
    main()
