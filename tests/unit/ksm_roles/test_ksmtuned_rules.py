# -*- coding: utf-8 -*-
# Copyright: (c) 2026, samepage.ksm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The role samepage.ksm.ksmtuned checks its inputs before anything changes (vars/main.yml's ranges, read by
input_rules.yml of samepage.ksm.ksm); the module ksmtuned_config checks the same values again when it writes
the file (plugins/module_utils/_ksmtuned.py). Both must hold the same rules and defaults."""

import os
import re

import yaml

from ansible_collections.samepage.ksm.plugins.module_utils import _ksmtuned

ROLE = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))),
                    'roles', 'ksmtuned')


def load(*parts):
    with open(os.path.join(ROLE, *parts)) as handle:
        return yaml.safe_load(handle)


def test_integer_ranges_are_the_modules():
    rules = load('vars', 'main.yml')['__ksmtuned_integers']
    assert sorted(rules) == sorted('ksmtuned_' + setting.name for setting in _ksmtuned.SETTINGS)
    for setting in _ksmtuned.SETTINGS:
        rule = rules['ksmtuned_' + setting.name]
        assert (rule['key'], rule['min'], rule['max']) == (setting.key, setting.minimum, setting.maximum), setting.name
        assert rule.get('why', '') == setting.why


def test_logfile_rule_is_the_modules():
    pattern = load('vars', 'main.yml')['__ksmtuned_logfile_pattern']
    assert pattern == _ksmtuned.LOGFILE_PATTERN.pattern + r'\Z'
    for value in ('/var/log/ksmtuned', '/var/log/ksmtuned;reboot', 'var/log/x', '/var/log/x\n', '/a b'):
        assert bool(re.match(pattern, value)) == bool(_ksmtuned.LOGFILE_PATTERN.fullmatch(value)), value


def test_role_defaults_are_ksmtuneds():
    defaults = load('defaults', 'main.yml')
    expected = _ksmtuned.defaults()
    for name, value in expected.items():
        assert defaults['ksmtuned_' + name] == value, name
