# -*- coding: utf-8 -*-
# Copyright: (c) 2026, samepage.ksm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The boot-time unit of persisted KSM knobs: rendering, parsing, combining, and the files on disk."""

import os
import re
import shutil
import subprocess

import pytest

from ansible_collections.samepage.ksm.plugins.module_utils import _ksm
from ansible_collections.samepage.ksm.plugins.module_utils import _ksm_boot

EVERY_KNOB = {
    'run': 1, 'pages_to_scan': 1000, 'sleep_millisecs': 20, 'merge_across_nodes': 0, 'max_page_sharing': 512,
    'use_zero_pages': True, 'smart_scan': False, 'stable_node_chains_prune_millisecs': 2000,
    'advisor_mode': 'none', 'advisor_max_cpu': 70, 'advisor_min_pages_to_scan': 500,
    'advisor_max_pages_to_scan': 30000, 'advisor_target_scan_time': 200,
}


def execs(text):
    return re.findall(r"^ExecStart=/bin/sh -c 'echo (\S+) > /sys/kernel/mm/ksm/(\w+)'$", text, re.M)


# ---------------------------------------------------------------------------------------------------
# render / parse

def test_render_writes_every_knob_in_the_kernels_order_run_last():
    text = _ksm_boot.render(EVERY_KNOB)
    found = execs(text)
    assert [name for dummy, name in found] == list(_ksm.WRITE_ORDER)
    assert found[-1] == ('1', 'run')
    assert ('1', 'use_zero_pages') in found and ('0', 'smart_scan') in found and ('none', 'advisor_mode') in found


def test_render_unit_properties():
    text = _ksm_boot.render({'pages_to_scan': 1000})
    lines = text.splitlines()
    assert lines[0].startswith('# Managed by samepage.ksm.ksm_sysfs')
    assert 'DefaultDependencies=no' in lines
    assert 'ConditionPathIsDirectory=/sys/kernel/mm/ksm' in lines
    assert 'After=systemd-modules-load.service' in lines
    before = [line for line in lines if line.startswith('Before=')]
    assert len(before) == 1
    for unit in ('sysinit.target', 'ksm.service', 'ksmtuned.service', 'qemu-kvm.service', 'libvirtd.service'):
        assert unit in before[0].split('=', 1)[1].split()
    assert 'Type=oneshot' in lines and 'RemainAfterExit=yes' in lines
    assert lines[-1] == 'WantedBy=sysinit.target' and text.endswith('\n')
    sections = [line for line in lines if line.startswith('[')]
    assert sections == ['[Unit]', '[Service]', '[Install]']


def test_render_is_byte_identical_whatever_the_dict_order():
    forward = dict(EVERY_KNOB)
    backward = dict(reversed(list(EVERY_KNOB.items())))
    assert _ksm_boot.render(forward) == _ksm_boot.render(backward)


@pytest.mark.parametrize('knobs', [
    {'pages_to_scan': 2 ** 32}, {'pages_to_scan': '1; rm -rf /'}, {'advisor_mode': "none' ; reboot '"},
    {'max_page_sharing': 1}, {'run': 3}, {'smart_scan': 'yes'},
])
def test_render_refuses_invalid_values(knobs):
    with pytest.raises(_ksm.KsmError) as raised:
        _ksm_boot.render(knobs)
    assert list(knobs)[0] in raised.value.msg


def test_render_refuses_unknown_and_read_only_files():
    with pytest.raises(_ksm.KsmError) as raised:
        _ksm_boot.render({'pages_shared': 0, 'pages_to_scan': 5})
    assert 'pages_shared' in raised.value.msg


def test_render_escapes_percent_signs_for_systemd():
    text = _ksm_boot.render({'pages_to_scan': 5}, ksm_dir='/srv/100%/ksm')
    assert 'ConditionPathIsDirectory=/srv/100%%/ksm' in text
    assert "echo 5 > /srv/100%%/ksm/pages_to_scan'" in text


@pytest.mark.skipif(shutil.which('systemd-analyze') is None, reason='systemd-analyze is not installed')
def test_systemd_accepts_the_unit(tmp_path):
    """systemd's own parser (systemd-analyze verify) finds nothing to complain about in the rendered unit."""
    path = tmp_path / _ksm_boot.UNIT_NAME
    path.write_text(_ksm_boot.render(EVERY_KNOB))
    process = subprocess.run(['systemd-analyze', 'verify', str(path)], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, check=False)
    output = process.stdout.decode('utf-8', 'replace')
    assert process.returncode == 0, output
    assert [line for line in output.splitlines() if _ksm_boot.UNIT_NAME in line] == []


def test_parse_round_trip_typed():
    assert _ksm_boot.parse(_ksm_boot.render(EVERY_KNOB)) == EVERY_KNOB
    parsed = _ksm_boot.parse(_ksm_boot.render({'use_zero_pages': False, 'run': 0}))
    assert parsed == {'use_zero_pages': False, 'run': 0}
    assert parsed['use_zero_pages'] is False and parsed['run'] == 0 and not isinstance(parsed['run'], bool)


def test_parse_ignores_what_it_did_not_write():
    text = _ksm_boot.render({'pages_to_scan': 1000}) + '\n'.join([
        "ExecStart=/bin/sh -c 'echo 1 > /sys/kernel/mm/ksm/pages_shared'",       # not writable
        "ExecStart=/bin/sh -c 'echo 2 > /sys/kernel/mm/ksm/max_page_sharing_x'",  # unknown
        "ExecStart=/bin/sh -c 'echo 1 > /sys/kernel/mm/ksm/max_page_sharing'",    # invalid value (< 2)
        "ExecStart=/usr/bin/true",
        '',
    ])
    assert _ksm_boot.parse(text) == {'pages_to_scan': 1000}
    assert _ksm_boot.parse('') == {}


# ---------------------------------------------------------------------------------------------------
# combine

def test_combine_merge_and_replace():
    previous = {'pages_to_scan': 1000, 'run': 1}
    assert _ksm_boot.combine(previous, {'sleep_millisecs': 50}) == {'pages_to_scan': 1000, 'run': 1, 'sleep_millisecs': 50}
    assert _ksm_boot.combine(previous, {'run': 0}, 'merge') == {'pages_to_scan': 1000, 'run': 0}
    assert _ksm_boot.combine(previous, {'run': 0}, 'replace') == {'run': 0}
    assert _ksm_boot.combine(previous, {}, 'replace') == {}
    assert _ksm_boot.combine(previous, {}, 'merge') == previous
    assert previous == {'pages_to_scan': 1000, 'run': 1}   # not modified


def test_combine_drops_persisted_pages_to_scan_when_the_advisor_takes_over():
    assert _ksm_boot.combine({'pages_to_scan': 1000, 'run': 1}, {'advisor_mode': 'scan-time'}) == {
        'advisor_mode': 'scan-time', 'run': 1}


def test_combine_refuses_pages_to_scan_under_a_persisted_advisor():
    with pytest.raises(_ksm.KsmError) as raised:
        _ksm_boot.combine({'advisor_mode': 'scan-time'}, {'pages_to_scan': 300})
    assert 'pages_to_scan=300' in raised.value.msg and 'advisor_mode=scan-time' in raised.value.msg
    assert _ksm_boot.combine({'advisor_mode': 'scan-time'}, {'pages_to_scan': 300}, 'replace') == {'pages_to_scan': 300}
    assert _ksm_boot.combine({'advisor_mode': 'scan-time'}, {'pages_to_scan': 300, 'advisor_mode': 'none'}) == {
        'pages_to_scan': 300, 'advisor_mode': 'none'}


def test_combine_refuses_an_unknown_mode():
    with pytest.raises(_ksm.KsmError):
        _ksm_boot.combine({}, {}, 'append')


# ---------------------------------------------------------------------------------------------------
# BootConfig on a temporary unit directory

@pytest.fixture
def config(tmp_path):
    return _ksm_boot.BootConfig(unit_dir=str(tmp_path / 'system'), systemd_run_dir=str(tmp_path / 'run-systemd'))


def apply(config, knobs):
    plan = config.plan(knobs)
    plan.stage()
    return plan, plan.commit()


def test_write_enable_read_and_idempotency(config):
    assert config.read() == {} and config.read_text() is None and not config.enabled()
    plan, reload_needed = apply(config, {'pages_to_scan': 1000, 'run': 1})
    assert plan.changed is True and reload_needed is False
    assert config.read() == {'pages_to_scan': 1000, 'run': 1}
    assert config.enabled()
    assert os.readlink(config.link_path) == config.unit_path
    assert config.link_path == os.path.join(config.unit_dir, 'sysinit.target.wants', _ksm_boot.UNIT_NAME)
    assert oct(os.stat(config.unit_path).st_mode & 0o777) == '0o644'
    again = config.plan({'run': 1, 'pages_to_scan': 1000})
    assert again.changed is False and again.before_text == again.after_text
    assert sorted(os.listdir(config.unit_dir)) == [_ksm_boot.UNIT_NAME, 'sysinit.target.wants']
    assert os.listdir(config.wants_dir) == [_ksm_boot.UNIT_NAME]


def test_drift_in_the_file_and_in_the_link(config):
    apply(config, {'pages_to_scan': 1000})
    with open(config.unit_path, 'a') as handle:
        handle.write('# a hand-made line\n')
    assert config.read() == {'pages_to_scan': 1000}
    plan = config.plan({'pages_to_scan': 1000})
    assert plan.changed is True and plan.before_text != plan.after_text
    plan.stage()
    plan.commit()
    assert config.plan({'pages_to_scan': 1000}).changed is False

    os.unlink(config.link_path)
    os.symlink('/dev/null', config.link_path)            # masked by hand, or pointing elsewhere
    plan = config.plan({'pages_to_scan': 1000})
    assert plan.changed is True and plan.before_text == plan.after_text
    plan.stage()
    assert plan.staged is None                           # the file itself is fine
    plan.commit()
    assert config.enabled()


def test_remove(config):
    apply(config, {'pages_to_scan': 1000})
    plan = config.plan({})
    assert plan.changed is True and plan.after == {}
    diff = plan.diff()
    assert diff[0]['after'] == '' and diff[0]['before'].startswith('# Managed by')
    assert diff[1]['before'] == 'symbolic link to %s\n' % config.unit_path and diff[1]['after'] == ''
    plan.stage()
    plan.commit()
    assert not os.path.lexists(config.unit_path) and not os.path.lexists(config.link_path)
    assert config.plan({}).changed is False


def test_remove_a_dangling_link_alone(config):
    os.makedirs(config.wants_dir)
    os.symlink(config.unit_path, config.link_path)
    plan = config.plan({})
    assert plan.changed is True
    plan.commit()
    assert not os.path.lexists(config.link_path)


def test_reload_needed_only_with_systemd_running(config, tmp_path):
    apply(config, {'pages_to_scan': 1})
    os.makedirs(str(tmp_path / 'run-systemd'))
    plan, reload_needed = apply(config, {'pages_to_scan': 2})
    assert reload_needed is True
    plan, reload_needed = apply(config, {'pages_to_scan': 2})
    assert plan.changed is False and reload_needed is False


def test_check_mode_style_plan_touches_nothing(config):
    plan = config.plan({'pages_to_scan': 1000})
    assert plan.changed is True and plan.after == {'pages_to_scan': 1000}
    plan.diff()
    assert not os.path.exists(config.unit_dir)


def test_abandon_removes_the_staged_file(config):
    plan = config.plan({'pages_to_scan': 1000})
    plan.stage()
    assert plan.staged and os.path.exists(plan.staged)
    assert os.path.dirname(plan.staged) == config.unit_dir
    plan.abandon()
    assert os.listdir(config.unit_dir) == []


def test_install_uses_the_given_atomic_move(config):
    moves = []

    def atomic_move(src, dest):
        moves.append((src, dest))
        os.rename(src, dest)

    plan = config.plan({'run': 1})
    plan.stage()
    plan.commit(atomic_move)
    assert len(moves) == 1 and moves[0][1] == config.unit_path
    assert os.path.dirname(moves[0][0]) == config.unit_dir


def test_unwritable_directory_is_an_error_not_a_traceback(tmp_path):
    blocker = tmp_path / 'file'
    blocker.write_text('')
    config = _ksm_boot.BootConfig(unit_dir=str(blocker / 'system'))
    assert config.read() == {}
    plan = config.plan({'run': 1})
    with pytest.raises(_ksm.KsmError) as raised:
        plan.stage()
    assert 'Cannot write the boot configuration' in raised.value.msg


def test_defaults_are_read_at_call_time(monkeypatch, tmp_path):
    monkeypatch.setattr(_ksm_boot, 'UNIT_DIR', str(tmp_path / 'u'))
    config = _ksm_boot.BootConfig()
    assert config.unit_path == str(tmp_path / 'u' / _ksm_boot.UNIT_NAME)
    assert _ksm_boot.BootConfig(unit_dir='/etc/systemd/system').unit_path == \
        '/etc/systemd/system/samepage-ksm-sysfs.service'
