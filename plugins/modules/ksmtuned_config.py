#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, samepage.ksm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

DOCUMENTATION = r'''
module: ksmtuned_config
short_description: Write ksmtuned's configuration and the libvirt hook that kicks the KSM tuner, in one step
version_added: 0.1.0
description:
  - Writes C(/etc/ksmtuned.conf) from O(settings), each value checked against what ksmtuned can take (bash
    sources the file as root), and installs or removes the libvirt qemu hook C(samepage-ksmtuned), which
    asks the KSM tuner that runs (ksmtuned, or the samepage tuner of M(samepage.ksm.ksm_tuner)) to adjust at
    once when a guest has started or has been released.
  - Both files in one module execution, each written atomically (a temporary file renamed into place) and
    only when its content or mode differs; a value that fails its check fails the task before anything is
    written.
  - It does not restart anything. ksmtuned reads its configuration only when it starts, so restart it when
    RV(config_changed) is true (M(samepage.ksm.ksm_service) with O(samepage.ksm.ksm_service#module:state=restarted));
    libvirt looks for hooks only when its daemon starts, so restart a running C(libvirtd) or C(virtqemud)
    when RV(hook_changed) is true. The role samepage.ksm.ksmtuned does both.
extends_documentation_fragment:
  - samepage.ksm._ksm.attributes
attributes:
  check_mode:
    support: full
    details:
      - Nothing is written; RV(files) lists what would be.
  diff_mode:
    support: full
    details:
      - Both files, before and after (empty for a file that does not exist).
  idempotent:
    support: full
options:
  settings:
    description:
      - ksmtuned's settings. A key left out (or null) gets ksmtuned's own default.
      - V(monitor_interval) (C(KSM_MONITOR_INTERVAL), seconds between adjustments, 1 to 86400, default 60);
        V(sleep_msec) (C(KSM_SLEEP_MSEC), C(sleep_millisecs) for a 16 GiB host, scaled by memory size,
        default 10); V(npages_boost) (C(KSM_NPAGES_BOOST), added to C(pages_to_scan) while memory is short,
        default 300); V(npages_decay) (C(KSM_NPAGES_DECAY), added while it is not, 0 or negative, default -50);
        V(npages_min) and V(npages_max) (C(KSM_NPAGES_MIN), C(KSM_NPAGES_MAX), the range of C(pages_to_scan),
        defaults 64 and 1250, min not above max); V(thres_coef) (C(KSM_THRES_COEF), the free-memory threshold in
        percent of total memory, 0 to 100, default 20); V(thres_const) (C(KSM_THRES_CONST), the lowest
        threshold in kB, default 2048). Integers up to 4294967295 unless said otherwise.
      - V(logfile) (C(LOGFILE)), an absolute path of letters, digits and C(. _ / -) for ksmtuned's debug
        lines; empty (the default) leaves the line out and debug lines go to the journal.
      - V(debug) (C(DEBUG=1)) when V(true); no C(DEBUG) line at all when V(false) (ksmtuned treats any
        value, 0 included, as on).
    type: dict
    default: {}
  libvirt_hook:
    description:
      - V(true) installs the hook C(samepage-ksmtuned) in O(hook_dir) (mode 0755); V(false) removes it.
    type: bool
    default: false
  path:
    description: The configuration file ksmtuned reads.
    type: path
    default: /etc/ksmtuned.conf
  hook_dir:
    description: The directory whose executables libvirt (6.5 and newer) runs as qemu hooks (an absolute path).
    type: path
    default: /etc/libvirt/hooks/qemu.d
notes:
  - The file is owned by this module (local changes are overwritten); its header says so.
seealso:
  - module: samepage.ksm.ksm_service
  - module: samepage.ksm.ksm_tuner
author:
  - samepage.ksm contributors (@samepage)
'''

EXAMPLES = r'''
- name: ksmtuned with a faster ramp, and the hook that kicks it when guests start or stop
  samepage.ksm.ksmtuned_config:
    settings:
      npages_boost: 1000
      npages_max: 3000
      monitor_interval: 30
    libvirt_hook: true
  register: ksmtuned_files

- name: Restart ksmtuned when its configuration changed (it reads it only when it starts)
  samepage.ksm.ksm_service:
    name: ksmtuned
    state: "{{ 'restarted' if ksmtuned_files.config_changed else 'started' }}"
    enabled: true
'''

RETURN = r'''
files:
  description: The files written or removed (in check mode, that would be).
  returned: always
  type: list
  elements: str
  sample: [/etc/ksmtuned.conf, /etc/libvirt/hooks/qemu.d/samepage-ksmtuned]
config_changed:
  description: Whether the configuration file was (or would be) written. ksmtuned needs a restart to read it.
  returned: always
  type: bool
  sample: true
hook_changed:
  description: Whether the hook was (or would be) installed, updated or removed. libvirt finds a new hook only
    when its daemon starts.
  returned: always
  type: bool
  sample: false
config:
  description: Every setting as written, ksmtuned's defaults filled in.
  returned: success
  type: dict
  sample: {monitor_interval: 60, sleep_msec: 10, npages_boost: 300, npages_decay: -50, npages_min: 64,
           npages_max: 1250, thres_coef: 20, thres_const: 2048, logfile: '', debug: false}
hook:
  description: The path of the hook.
  returned: always
  type: str
  sample: /etc/libvirt/hooks/qemu.d/samepage-ksmtuned
'''

import os

from ansible_collections.samepage.ksm.plugins.module_utils._errors import SamepageError, run_task
from ansible_collections.samepage.ksm.plugins.module_utils import _files
from ansible_collections.samepage.ksm.plugins.module_utils import _ksmtuned
from ansible_collections.samepage.ksm.plugins.module_utils import _options


class KsmtunedConfig:
    """One task: check the settings, plan both files, write them (or not, in check mode), report."""

    def __init__(self, module):
        self.module = module
        self.params = module.params
        self.config_path = self.params['path']
        self.hook_path = os.path.join(self.params['hook_dir'], _ksmtuned.HOOK_NAME)
        self.values = None
        self.files = None
        self.written = []

    def run(self):
        # Checked before anything is read or written: a bad value changes nothing.
        for option in ('path', 'hook_dir'):
            value = self.params[option]
            if not os.path.isabs(value) or '\n' in value or '\x00' in value:
                raise SamepageError('Invalid %s %r: expected an absolute path. Nothing was changed.' % (option, value),
                                    option=option)
        self.values = _ksmtuned.validate(self.params['settings'])
        wanted = {self.config_path: _ksmtuned.render_config(self.values, self.config_path),
                  self.hook_path: _ksmtuned.render_hook(self.hook_path) if self.params['libvirt_hook'] else None}
        modes = {self.config_path: _ksmtuned.CONFIG_MODE, self.hook_path: _ksmtuned.HOOK_MODE}
        self.files = _files.FileSet(wanted, modes, what='ksmtuned.conf or the libvirt hook')
        if not self.module.check_mode:
            changed = self.files.changed()
            self.files.write()
            self.written = changed
        return self.result()

    def result(self):
        changed = self.files.changed() if self.module.check_mode else self.written
        result = {
            'changed': bool(changed),
            'files': changed,
            'config_changed': self.config_path in changed,
            'hook_changed': self.hook_path in changed,
            'config': self.values,
            'hook': self.hook_path,
        }
        if self.module._diff:
            result['diff'] = self.files.diff([self.config_path, self.hook_path])
        return result

    def failure(self):
        # Only what happened: a failure while staging leaves every file as it was; one while renaming or
        # removing reports the files that were already in place.
        done = list(self.files.done) if self.files is not None else []
        return {'changed': bool(done), 'files': done, 'config_changed': self.config_path in done,
                'hook_changed': self.hook_path in done, 'hook': self.hook_path}


def argument_spec():
    return dict(
        # A plain dict: _ksmtuned.validate() checks every key and value (the rules bash sourcing needs).
        settings=dict(type='dict', default={}),
        libvirt_hook=dict(type='bool', default=False),
        path=dict(type='path', default=_ksmtuned.CONFIG_PATH),
        hook_dir=dict(type='path', default=_ksmtuned.HOOK_DIR),
    )


def main():
    module = _options.new_module(argument_spec(), supports_check_mode=True)
    task = KsmtunedConfig(module)
    run_task(module, task.run, task.failure)


if __name__ == '__main__':
    main()
