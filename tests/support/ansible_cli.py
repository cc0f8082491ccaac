# -*- coding: utf-8 -*-
# Copyright: (c) 2026, samepage.ksm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Run the real `ansible` and `ansible-playbook` commands from tests and get structured results.

The commands are the ones installed next to sys.executable (the virtual environment pytest runs in),
so each controller environment tests its own ansible-core. Results come from a small callback plugin
of our own (tests/support/callback_plugins/samepage_results.py) that writes JSON lines to a temporary
file; the normal human output is kept as `.output` for failure messages.

    result = run_module('samepage.ksm.ksm_info', {'max_processes': 0})
    assert not result['failed'] and not result['changed']

    run = run_playbook('site.yml', inventory='inventory/example', check=True, diff=True)
    assert run.rc == 0 and run.stats['host1']['failed'] == 0
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
CALLBACK_DIR = os.path.join(HERE, 'callback_plugins')
CALLBACK_NAME = 'samepage_results'
RESULTS_FILE_ENV = 'SAMEPAGE_RESULTS_FILE'
DEFAULT_TIMEOUT = 1800


class AnsibleRunError(Exception):
    """The command produced no result for the host (bad arguments, unknown module, crash)."""

    def __init__(self, msg, rc=None, output=''):
        super().__init__('%s (rc=%s)\n--- output ---\n%s' % (msg, rc, output))
        self.rc = rc
        self.output = output


class ModuleResult(dict):
    """The host's result dict, plus `.rc` and `.output` of the `ansible` command for diagnostics."""

    rc = None
    output = ''
    command = ()


class PlaybookRun:
    """Outcome of one ansible-playbook run."""

    def __init__(self, rc, stats, results, output, command):
        self.rc = rc
        self.stats = stats          # {host: {ok, changed, failed, unreachable, skipped, rescued, ignored}}
        self.results = results      # [{host, task, action, status, result}] in the order they finished
        self.output = output        # stdout and stderr of the command, as text
        self.command = command

    def results_for(self, task=None, host=None):
        """The results of one task name and/or host."""
        return [item for item in self.results
                if (task is None or item['task'] == task) and (host is None or item['host'] == host)]

    def __repr__(self):
        return 'PlaybookRun(rc=%r, stats=%r)' % (self.rc, self.stats)


def ansible_bin(name):
    """Path of an ansible command of the running interpreter's environment."""
    path = os.path.join(os.path.dirname(sys.executable), name)
    if not os.path.exists(path):
        raise AnsibleRunError('%s not found next to %s: run the tests from a virtual environment that has '
                              'ansible-core installed (make bootstrap prepares them)' % (name, sys.executable))
    return path


def collections_path(existing=None):
    """ANSIBLE_COLLECTIONS_PATH that resolves samepage.ksm to this working tree.

    tests/conftest.py already sets it for pytest; this also covers use outside pytest.
    """
    entries = [p for p in (existing or '').split(os.pathsep) if p]
    for entry in entries:
        if os.path.isfile(os.path.join(entry, 'ansible_collections', 'samepage', 'ksm', 'galaxy.yml')):
            return os.pathsep.join(entries)
    real = os.path.realpath(REPO)
    if real.split(os.sep)[-3:-2] == ['ansible_collections']:
        root = os.path.dirname(os.path.dirname(os.path.dirname(real)))
    else:
        root = os.path.join(REPO, 'tests', 'output', 'collections')
        link = os.path.join(root, 'ansible_collections', 'samepage', 'ksm')
        if not os.path.islink(link):
            os.makedirs(os.path.dirname(link), exist_ok=True)
            os.symlink(os.path.relpath(REPO, os.path.dirname(link)), link)
    return os.pathsep.join([root] + entries)


def _environment(results_file, env):
    merged = dict(os.environ)
    merged.update({
        'ANSIBLE_CALLBACK_PLUGINS': os.pathsep.join(
            [CALLBACK_DIR] + [p for p in os.environ.get('ANSIBLE_CALLBACK_PLUGINS', '').split(os.pathsep) if p]),
        'ANSIBLE_CALLBACKS_ENABLED': ','.join(
            [CALLBACK_NAME] + [c for c in os.environ.get('ANSIBLE_CALLBACKS_ENABLED', '').split(',') if c]),
        'ANSIBLE_LOAD_CALLBACK_PLUGINS': '1',   # ad-hoc `ansible` loads callbacks only with this
        'ANSIBLE_NOCOLOR': '1',
        'ANSIBLE_FORCE_COLOR': '0',
        'ANSIBLE_RETRY_FILES_ENABLED': '0',
        'ANSIBLE_HOST_KEY_CHECKING': '0',
        'ANSIBLE_COLLECTIONS_PATH': collections_path(os.environ.get('ANSIBLE_COLLECTIONS_PATH')),
        'PYTHONUNBUFFERED': '1',
        RESULTS_FILE_ENV: results_file,
    })
    merged.pop('ANSIBLE_STDOUT_CALLBACK', None)
    if env:
        merged.update({key: str(value) for key, value in env.items()})
    return merged


def _local_inventory(directory):
    """Inventory with localhost over the local connection, modules run by this interpreter."""
    path = os.path.join(directory, 'localhost.ini')
    with open(path, 'w') as handle:
        handle.write('localhost ansible_connection=local ansible_python_interpreter=%s\n' % sys.executable)
    return path


def _inventory_args(inventory, directory):
    if inventory is None:
        inventory = [_local_inventory(directory)]
    elif isinstance(inventory, str):
        inventory = [inventory]
    args = []
    for item in inventory:
        args.extend(['-i', str(item)])
    return args


def _run(command, env, timeout):
    process = subprocess.run(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL, timeout=timeout, cwd=REPO, check=False)
    return process.returncode, process.stdout.decode('utf-8', 'replace')


def _read_events(path):
    events = []
    if not os.path.exists(path):
        return events
    with open(path) as handle:
        for line in handle:
            line = line.strip()
            if line:
                events.append(json.loads(line))
    return events


def run_module(module, args=None, host='localhost', check=False, diff=False, inventory=None, env=None,
               timeout=DEFAULT_TIMEOUT, extra_args=()):
    """Run one module with the real `ansible` command; return that host's result dict.

    The dict always has `changed` and `failed` (booleans) and whatever the module returned (`msg`,
    `diff`, ...), plus `unreachable` when the host could not be reached. Raises AnsibleRunError when
    the command produced no result for the host at all.
    """
    directory = tempfile.mkdtemp(prefix='samepage-ansible-')
    try:
        results_file = os.path.join(directory, 'results.jsonl')
        command = [ansible_bin('ansible'), host, '-m', module] + _inventory_args(inventory, directory)
        if args:
            command += ['-a', json.dumps(args)]
        if check:
            command.append('--check')
        if diff:
            command.append('--diff')
        command += list(extra_args)
        rc, output = _run(command, _environment(results_file, env), timeout)
        events = _read_events(results_file)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    found = [event for event in events if event.get('event') == 'result' and event.get('host') == host]
    if not found:
        raise AnsibleRunError('`ansible %s -m %s` produced no result for %s' % (host, module, host), rc, output)
    event = found[-1]
    result = ModuleResult(event['result'])
    result.setdefault('changed', False)
    result['failed'] = bool(result.get('failed')) or event['status'] in ('failed', 'unreachable')
    if event['status'] == 'unreachable':
        result['unreachable'] = True
    result.rc = rc
    result.output = output
    result.command = tuple(command)
    return result


def run_playbook(path, inventory=None, extra_vars=None, check=False, diff=False, limit=None, env=None,
                 timeout=DEFAULT_TIMEOUT, extra_args=()):
    """Run a playbook with the real `ansible-playbook` command; return a PlaybookRun."""
    directory = tempfile.mkdtemp(prefix='samepage-ansible-')
    try:
        results_file = os.path.join(directory, 'results.jsonl')
        command = [ansible_bin('ansible-playbook'), str(path)] + _inventory_args(inventory, directory)
        if extra_vars:
            vars_file = os.path.join(directory, 'extra_vars.json')
            with open(vars_file, 'w') as handle:
                json.dump(extra_vars, handle)
            command += ['-e', '@' + vars_file]
        if check:
            command.append('--check')
        if diff:
            command.append('--diff')
        if limit:
            command += ['--limit', limit if isinstance(limit, str) else ','.join(limit)]
        command += list(extra_args)
        rc, output = _run(command, _environment(results_file, env), timeout)
        events = _read_events(results_file)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    stats = {}
    results = []
    for event in events:
        if event.get('event') == 'stats':
            stats = event['stats']
        elif event.get('event') == 'result':
            results.append({key: event[key] for key in ('host', 'task', 'action', 'status', 'result')})
    return PlaybookRun(rc, stats, results, output, tuple(command))
