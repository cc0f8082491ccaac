# -*- coding: utf-8 -*-
# Copyright: (c) 2026, samepage.ksm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The collection's own programs on a host, and the one way modules install, run and remove them.

A program (the tuner `samepage-ksm-tuner`, the metrics writer `samepage-ksm-metrics`) is a small package of
copies of module_utils files, read through the module loader at run time (so the host runs exactly the code
the module has), plus an entry script that systemd runs with `python3 -I`. ProgramTask is the task of the
modules that install one (ksm_tuner, ksm_metrics): plan the files, write them atomically and only when they
differ, daemon-reload only when a unit file changed, enable/start/restart/stop/disable one unit, predict all
of it in check mode, and report only what happened, also on failure.

Private to samepage.ksm (leading underscore). Module side only: the programs never import it.
"""

import os
import pkgutil
import sys
import time

from ansible_collections.samepage.ksm.plugins.module_utils._errors import SamepageError
from ansible_collections.samepage.ksm.plugins.module_utils import _files
from ansible_collections.samepage.ksm.plugins.module_utils import _systemd

PACKAGE = 'samepage_ksm'        # the package of installed copies, next to the entry script
SETTLE_SECONDS = 10.0


class ProgramError(SamepageError):
    """The program's files cannot be read, written or removed."""


# ---------------------------------------------------------------------------------------------------
# The program: sources, entry script, files

def _read_sibling(name):
    """A module_utils file next to this one, through this module's loader (a zipimporter inside AnsiballZ,
    a file loader elsewhere), then the package's loader, then the file system."""
    path = os.path.join(os.path.dirname(__file__), name)
    loader = globals().get('__loader__')
    if loader is not None and hasattr(loader, 'get_data'):
        try:
            return loader.get_data(path)
        except OSError:
            pass
    try:
        data = pkgutil.get_data(__package__, name) if __package__ else None
    except (OSError, ImportError, ValueError):
        data = None
    if data is not None:
        return data
    with open(path, 'rb') as handle:
        return handle.read()


def read_sources(names):
    """{file name: text} of the module_utils files a program needs. Inside AnsiballZ only the files the
    module imports (directly or not) are there: a module must import every file its program needs."""
    return {name: _read_sibling(name).decode('utf-8') for name in names}


def entry_script(program, module, program_dir, installer):
    """The script ExecStart runs (with `python3 -I`, so only the program directory is added to the path):
    module.main()'s exit status is the program's."""
    return ('# %s: a program of the Ansible collection samepage.ksm.\n'
            '# Installed by %s; the package next to it holds the code.\n'
            'import sys\n'
            'sys.path.insert(0, %r)\n'
            'from %s import %s  # noqa: E402\n'
            'sys.exit(%s.main())\n' % (program, installer, program_dir, PACKAGE, module, module))


def program_files(sources, program_dir, entry, script):
    """{path: text} of every file of a program under program_dir: the entry script and the package."""
    files = {os.path.join(program_dir, entry): script,
             os.path.join(program_dir, PACKAGE, '__init__.py'): '# samepage.ksm program package (installed copies)\n'}
    for name, text in sources.items():
        files[os.path.join(program_dir, PACKAGE, name)] = text
    return files


def check_python(python):
    """The interpreter a unit runs: given, or the one running this module; ProgramError if unusable."""
    if python is None:
        python = sys.executable
    # An empty value (often a variable that rendered to nothing) is refused like any other non-path, not taken
    # for "unset".
    if not python or not os.path.isabs(python):
        raise ProgramError('Invalid python %r: expected the absolute path of a Python 3.8+ interpreter (leave python '
                           'unset to use the interpreter that runs this module). Nothing was changed.' % (python,))
    if not os.access(python, os.X_OK):
        raise ProgramError('python %s is not an executable file on this host' % python)
    return python


class Files(_files.FileSet):
    """A program's files and directories: what they are, what they should be, and an all-or-nothing way
    there (_files.FileSet, mode 0644). wanted: {path: text, or None for absent}; directories: paths that must
    exist (mode 0755), created first."""

    def __init__(self, wanted, directories=(), what='the program files'):
        super().__init__(wanted, what=what)
        self.directories = list(directories)
        self.missing = [path for path in self.directories if not os.path.isdir(path)]

    def changed(self):
        """The directories to create, then the files to write or remove, as paths (as planned: the same
        after write())."""
        return list(self.missing) + self.changed_files()

    def write(self):
        try:
            for path in self.missing:
                if not os.path.isdir(path):
                    os.makedirs(path, 0o755)
        except OSError as err:
            raise ProgramError('Cannot write %s: %s. Nothing was changed.' % (err.filename or self.what,
                                                                              err.strerror or err))
        try:
            super().write()
        except _files.FileError as err:
            raise ProgramError(err.msg)


# ---------------------------------------------------------------------------------------------------
# The task of a module that installs a program and runs it under systemd

class ProgramTask:
    """Plan the files and the state of one unit (the one that runs the program: a service, or the timer
    that starts it), act (or predict, in check mode), report.

    A subclass sets `unit` (the unit enabled and started), `unit_paths` (unit files: a change needs
    daemon-reload), `diff_paths` (files shown in the diff), `what` (for messages) and implements
    wanted_files(state) -> Files and extra() -> {key: value} added to every result. It may override
    after_start(), run once the unit has been started or restarted (in check mode too: self.do() predicts),
    and prune(paths), which removes the directories a removal left empty. States: started, stopped, absent.
    """

    unit = None
    unit_paths = ()
    diff_paths = ()
    what = 'the program'

    def __init__(self, module):
        self.module = module
        self.params = module.params
        self.check_mode = module.check_mode
        self.actions = []
        self.files = None
        self.written = []       # files this run has written (before a later step failed, too)
        self.before = None
        self.after = None
        self.systemctl = None

    # -- for subclasses ---------------------------------------------------------------------------
    def wanted_files(self, state):
        raise NotImplementedError

    def extra(self):
        return {}

    def no_systemd_message(self):
        return ('systemd is not running as PID 1 on this host (%s does not exist): %s runs under systemd (%s). '
                'Nothing was changed.' % (_systemd.RUNTIME_DIR, self.what, self.unit))

    def after_start(self):
        """Called once the unit has been started or restarted."""

    def prune(self, removed):
        """Remove the directories the removed files leave empty."""
        self.files.remove_empty_dirs(removed)

    # -- steps ------------------------------------------------------------------------------------
    def do(self, verb, unit=None, predict=None):
        """Run one systemctl command (in check mode: only predict it). A command is listed once it has
        succeeded (in check mode: once it is predicted), never before."""
        if not self.check_mode:
            if unit is None:
                self.systemctl.daemon_reload()
            else:
                self.systemctl.call(verb, unit)
        self.actions.append(verb if unit is None else '%s %s' % (verb, unit))
        if predict is not None:
            predict()

    def _set(self, **values):
        self.after.update(values)

    def execute(self, state, enabled):
        self.files = self.wanted_files(state)
        self.systemctl = _systemd.connect(self.module, self.no_systemd_message())
        self.before = self.systemctl.show([self.unit])[self.unit]
        self.after = dict(self.before)
        changed_files = self.files.changed()
        unit_changed = any(path in changed_files for path in self.unit_paths)
        running = _systemd.is_running(self.before)
        stopped = dict(active_state='inactive', sub_state='dead', main_pid=0)

        if state == 'absent':
            if running:
                self.do('stop', self.unit, lambda: self._set(**stopped))
            if _systemd.is_enabled(self.before):
                self.do('disable', self.unit, lambda: self._set(unit_file_state='disabled'))
            if not self.check_mode:
                self.files.write()
                self.written = changed_files
                self.prune(changed_files)
            if unit_changed:
                self.do('daemon-reload', None, lambda: self._set(load_state='not-found', unit_file_state=''))
            return self.result()

        if not self.check_mode:
            self.files.write()
            self.written = changed_files
        if unit_changed or self.before.get('need_daemon_reload'):
            self.do('daemon-reload', None, lambda: self._set(load_state='loaded'))
        if enabled and not _systemd.is_enabled(self.after):
            self.do('enable', self.unit, lambda: self._set(unit_file_state='enabled'))
        elif not enabled and _systemd.is_enabled(self.after):
            self.do('disable', self.unit, lambda: self._set(unit_file_state='disabled'))
        started = dict(active_state='active', sub_state=self.running_sub_state(), condition_result='yes')
        if state == 'started':
            if not running:
                self.do('start', self.unit, lambda: self._set(**started))
                self.after_start()
            elif changed_files:
                self.do('restart', self.unit, lambda: self._set(**started))
                self.after_start()
        elif running:
            self.do('stop', self.unit, lambda: self._set(**stopped))
        if not self.check_mode:
            self.settle()
            self.verify(state)
        return self.result()

    def running_sub_state(self):
        return 'waiting' if self.unit.endswith('.timer') else 'running'

    def settle(self):
        deadline = time.time() + SETTLE_SECONDS
        self.after = self.systemctl.show([self.unit])[self.unit]
        while self.after.get('active_state') in ('activating', 'deactivating', 'reloading') and time.time() < deadline:
            time.sleep(0.25)
            self.after = self.systemctl.show([self.unit])[self.unit]

    def verify(self, state):
        unit = self.unit
        if state == 'started' and not _systemd.is_running(self.after):
            raise _systemd.SystemdError('systemctl reported success, but %s is %s now; see journalctl -u %s.'
                                        % (unit, _systemd.describe(self.after), unit))
        if state == 'stopped' and _systemd.is_running(self.after):
            raise _systemd.SystemdError('%s is still %s after systemctl stop.' % (unit, _systemd.describe(self.after)))

    # -- results ----------------------------------------------------------------------------------
    def diff(self):
        def text(path, which):
            value = (self.files.current if which == 'before' else self.files.wanted).get(path)
            return value or ''
        return [dict(before_header=path, after_header=path, before=text(path, 'before'), after=text(path, 'after'))
                for path in self.diff_paths]

    def result(self):
        result = {
            'changed': bool(self.actions) or bool(self.files.changed()),
            'files': self.files.changed(),
            'actions': list(self.actions),
            'unit': self.unit,
            'diff': self.diff(),
        }
        result.update(self.extra())
        if self.before is not None:
            result['status'] = {'before': _systemd.reported(self.before), 'after': _systemd.reported(self.after)}
        return result

    def failure(self):
        """Only what happened: the files written and the systemctl commands that succeeded before the failure."""
        result = {'changed': not self.check_mode and bool(self.actions or self.written),
                  'actions': list(self.actions), 'unit': self.unit, 'files': list(self.written)}
        result.update(self.extra())
        if self.before is not None:
            after = self.after
            if self.actions and not self.check_mode:
                try:
                    after = self.systemctl.show([self.unit])[self.unit]
                except SamepageError:
                    pass
            result['status'] = {'before': _systemd.reported(self.before), 'after': _systemd.reported(after)}
        return result
