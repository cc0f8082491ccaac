# -*- coding: utf-8 -*-
# Copyright: (c) 2026, samepage.ksm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""ksmtuned_config on a temporary directory: the four steps, the diff, each refusal with nothing written, and
the exact result when a write fails half-way."""

import os
import stat
import subprocess

import pytest

from ansible_collections.samepage.ksm.plugins.module_utils import _files
from ansible_collections.samepage.ksm.plugins.module_utils import _ksmtuned
from ansible_collections.samepage.ksm.plugins.modules import ksmtuned_config
from ansible_collections.samepage.ksm.tests.support.four_steps import four_steps
from ansible_collections.samepage.ksm.tests.unit.plugins.modules.module_runner import run_main


@pytest.fixture
def paths(tmp_path):
    conf = tmp_path / 'etc' / 'ksmtuned.conf'
    conf.parent.mkdir()
    conf.write_text('# Configuration file for ksmtuned.\n# KSM_MONITOR_INTERVAL=60\n')
    hook_dir = tmp_path / 'hooks' / 'qemu.d'
    return {'path': str(conf), 'hook_dir': str(hook_dir)}


def run(args, check_mode=False, diff=False):
    return run_main(ksmtuned_config.main, args, check_mode=check_mode, diff=diff)


def snapshot(tmp_path):
    """Every file under tmp_path with its text and mode."""
    found = {}
    for root, dummy, names in os.walk(str(tmp_path)):
        for name in names:
            path = os.path.join(root, name)
            with open(path) as handle:
                found[path] = (handle.read(), stat.S_IMODE(os.stat(path).st_mode))
    return found


def values_of(text):
    return dict(line.split('=', 1) for line in text.splitlines() if line and not line.startswith('#'))


def test_four_steps_config_and_hook(paths, tmp_path):
    args = dict(paths, settings={'npages_boost': 1000, 'npages_max': 3000, 'logfile': '/var/log/ksmtuned'},
                libvirt_hook=True)
    hook = os.path.join(paths['hook_dir'], 'samepage-ksmtuned')
    checked, applied, again, checked_again = four_steps(
        lambda check: run(args, check_mode=check, diff=True), observe=lambda: snapshot(tmp_path))
    for result in (checked, applied):
        assert result['files'] == sorted([paths['path'], hook])
        assert result['config_changed'] is True and result['hook_changed'] is True
    for result in (again, checked_again):
        assert result['files'] == [] and not result['config_changed'] and not result['hook_changed']
    with open(paths['path']) as handle:
        text = handle.read()
    assert values_of(text) == {
        'KSM_MONITOR_INTERVAL': '60', 'KSM_SLEEP_MSEC': '10', 'KSM_NPAGES_BOOST': '1000', 'KSM_NPAGES_DECAY': '-50',
        'KSM_NPAGES_MIN': '64', 'KSM_NPAGES_MAX': '3000', 'KSM_THRES_COEF': '20', 'KSM_THRES_CONST': '2048',
        'LOGFILE': '/var/log/ksmtuned'}
    assert stat.S_IMODE(os.stat(paths['path']).st_mode) == 0o644
    assert stat.S_IMODE(os.stat(hook).st_mode) == 0o755
    # the hook is valid shell and never fails, whatever libvirt passes it
    assert subprocess.run(['sh', '-n', hook], check=False).returncode == 0
    assert subprocess.run(['bash', '-n', paths['path']], check=False).returncode == 0
    # the diff shows both files, before and after
    diff = checked['diff']
    assert [entry['before_header'] for entry in diff] == [paths['path'], hook]
    assert diff[0]['before'].startswith('# Configuration file for ksmtuned.') and 'KSM_NPAGES_MAX=3000' in diff[0]['after']
    assert diff[1]['before'] == '' and diff[1]['after'].startswith('#!/bin/sh')
    assert applied['config']['npages_max'] == 3000 and applied['config']['debug'] is False


def test_hook_removed_alone_leaves_the_config(paths):
    run(dict(paths, libvirt_hook=True))
    result = run(dict(paths, libvirt_hook=False), diff=True)
    assert result['changed'] is True and result['config_changed'] is False and result['hook_changed'] is True
    assert not os.path.exists(os.path.join(paths['hook_dir'], 'samepage-ksmtuned'))
    assert result['diff'][1]['after'] == ''
    assert run(dict(paths, libvirt_hook=False))['changed'] is False


def test_a_wrong_mode_is_a_change(paths):
    run(dict(paths))
    os.chmod(paths['path'], 0o600)
    result = run(dict(paths))
    assert result['changed'] is True and result['files'] == [paths['path']]
    assert stat.S_IMODE(os.stat(paths['path']).st_mode) == 0o644


def test_debug_and_defaults_match_ksmtuned(paths):
    result = run(dict(paths, settings={'debug': True, 'monitor_interval': None}))
    assert result['config'] == dict(_ksmtuned.defaults(), debug=True)
    with open(paths['path']) as handle:
        values = values_of(handle.read())
    assert values['DEBUG'] == '1' and values['KSM_MONITOR_INTERVAL'] == '60' and 'LOGFILE' not in values


@pytest.mark.parametrize('settings, message', [
    ({'npages_decay': 5}, 'settings.npages_decay=5 is out of range for KSM_NPAGES_DECAY: -4294967295 to 0'),
    ({'npages_min': 2000, 'npages_max': 1000}, 'settings.npages_min=2000 is greater than settings.npages_max=1000'),
    ({'logfile': '/var/log/ksmtuned;reboot'}, "settings.logfile='/var/log/ksmtuned;reboot' is not valid for LOGFILE"),
    ({'logfile': 'var/log/ksmtuned'}, 'is not valid for LOGFILE'),
    ({'logfile': '/var/log/ksmtuned\n'}, 'is not valid for LOGFILE'),
    ({'monitor_interval': 0}, 'settings.monitor_interval=0 is out of range for KSM_MONITOR_INTERVAL: 1 to 86400'),
    ({'thres_coef': 'abc'}, "settings.thres_coef='abc' is not an integer (KSM_THRES_COEF"),
    ({'thres_coef': '12\n'}, "settings.thres_coef='12\\n' is not an integer"),
    ({'thres_coef': 1.5}, 'settings.thres_coef=1.5 is not an integer'),
    ({'thres_coef': True}, 'settings.thres_coef=True is not an integer'),
    ({'npages_max': 2 ** 64}, 'settings.npages_max=18446744073709551616 is out of range'),
    ({'debug': 'maybe'}, "settings.debug='maybe' is not a boolean"),
    ({'pages_to_scan': 100}, 'settings.pages_to_scan is not a ksmtuned setting; known: debug, logfile'),
])
def test_bad_settings_write_nothing(paths, tmp_path, settings, message):
    before = snapshot(tmp_path)
    result = run(dict(paths, settings=settings, libvirt_hook=True))
    assert result['failed'] is True and message in result['msg'], result['msg']
    assert result['changed'] is False and result['files'] == []
    assert snapshot(tmp_path) == before


def test_a_failed_rename_reports_only_what_is_in_place(paths, monkeypatch):
    renamed = []
    real_rename = os.rename

    def rename(source, target):
        if renamed:
            raise OSError(13, 'Permission denied', target)
        renamed.append(target)
        real_rename(source, target)

    monkeypatch.setattr(_files.os, 'rename', rename)
    result = run(dict(paths, libvirt_hook=True))
    assert result['failed'] is True and 'Permission denied' in result['msg']
    assert result['files'] == renamed and result['changed'] is True
    assert result['config_changed'] is (paths['path'] in renamed)
    # no temporary file is left behind
    assert not [name for name in os.listdir(paths['hook_dir']) if name.startswith('.')]
    assert not [name for name in os.listdir(os.path.dirname(paths['path'])) if name.startswith('.')]


def test_an_unwritable_directory_changes_nothing(paths, monkeypatch, tmp_path):
    before = snapshot(tmp_path)
    real_mkstemp = _files.tempfile.mkstemp
    calls = []

    def mkstemp(*args, **kwargs):
        calls.append(kwargs.get('dir'))
        if len(calls) == 2:
            raise OSError(28, 'No space left on device', kwargs.get('dir'))
        return real_mkstemp(*args, **kwargs)

    monkeypatch.setattr(_files.tempfile, 'mkstemp', mkstemp)
    result = run(dict(paths, libvirt_hook=True))
    assert result['failed'] is True and 'No space left on device' in result['msg'] and 'Nothing was changed' in result['msg']
    assert result['changed'] is False and result['files'] == []
    after = snapshot(tmp_path)
    assert after == before


def test_rendered_config_holds_every_key_at_ksmtuned_defaults():
    """Every key ksmtuned reads, at ksmtuned's own defaults, under a header that names the owner."""
    text = _ksmtuned.render_config(_ksmtuned.defaults())
    assert text.startswith('# /etc/ksmtuned.conf - written by Ansible (samepage.ksm); local changes are overwritten.\n')
    assert values_of(text) == {'KSM_MONITOR_INTERVAL': '60', 'KSM_SLEEP_MSEC': '10', 'KSM_NPAGES_BOOST': '300',
                               'KSM_NPAGES_DECAY': '-50', 'KSM_NPAGES_MIN': '64', 'KSM_NPAGES_MAX': '1250',
                               'KSM_THRES_COEF': '20', 'KSM_THRES_CONST': '2048'}
