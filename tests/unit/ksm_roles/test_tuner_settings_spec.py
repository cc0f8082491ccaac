# -*- coding: utf-8 -*-
# Copyright: (c) 2026, samepage.ksm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""ksm_tuner_settings of the ksm role stays in step with the tuner's schema (_ksm_tuner.SCHEMA): one typed
sub-option per configuration key, described with the schema's own words, and no default of its own (the
daemon's defaults apply to keys left out)."""

import os

import yaml

from ansible_collections.samepage.ksm.plugins.module_utils import _ksm_tuner

SPECS = os.path.join(os.path.dirname(__file__), '..', '..', '..', 'roles', 'ksm', 'meta', 'argument_specs.yml')
TYPES = {_ksm_tuner.INT: 'int', _ksm_tuner.FLOAT: 'float', _ksm_tuner.CHOICE: 'str'}


def _options(entry_point):
    with open(SPECS) as handle:
        specs = yaml.safe_load(handle)['argument_specs']
    return specs[entry_point]['options']['ksm_tuner_settings']


def test_one_sub_option_per_key_typed_and_described_by_the_schema():
    for entry_point in ('main', 'validate'):
        option = _options(entry_point)
        assert option['type'] == 'dict' and option['default'] == {}
        assert sorted(option['options']) == sorted(_ksm_tuner.SETTINGS)
        for setting in _ksm_tuner.SCHEMA:
            sub = option['options'][setting.key]
            assert sub['type'] == TYPES[setting.kind], setting.key
            assert 'default' not in sub, setting.key
            assert sub.get('choices') == (list(setting.choices) if setting.choices else None), setting.key
            text = ' '.join(sub['description'])
            assert ' '.join(setting.description.split()) in text, setting.key
            assert setting.rule() in text, setting.key


def test_ksm_tuner_offers_samepage():
    with open(SPECS) as handle:
        specs = yaml.safe_load(handle)['argument_specs']
    assert specs['main']['options']['ksm_tuner']['choices'] == ['ksmtuned', 'none', 'samepage']
