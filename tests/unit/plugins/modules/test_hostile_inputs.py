# -*- coding: utf-8 -*-
# Copyright: (c) 2026, samepage.ksm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Issue #11: every option of every module, thrown hostile values (huge, negative, float, unicode digits,
line breaks, empty, wrong type, NaN/inf) must give a clean failure naming the option, or a documented
normalisation. Never a traceback.

Each value goes through the module's real argument spec (Ansible's own validator, as AnsibleModule
runs it) and then through the module itself in check mode on a fake host. Documented normalisations
(NORMALISED below) are those of Ansible's option types, which the module documentation relies on:
an int option takes what Python's int() takes from a string through decimal.Decimal (surrounding
blanks and line breaks, any Unicode decimal digits: '１２' is 12, '٣' is 3; an exponent: '1e3' is 1000)
and a float with an integral value, up to 30 digits (new_module refuses more, and infinities); a bool option
takes Ansible's boolean spellings; a str option takes a number as its decimal text; a path option takes
any value as its text with ~ and $VARIABLES expanded; a dict option takes a dict only; a list option takes a
list as it is, splits a string at its commas and makes a number a list of its text (its str elements then
take numbers as their decimal text). The module then
checks the normalised value against its own bounds (the kernel's range for a knob), naming the option.

A new module joins by adding a row to MODULES: its main, its argument_spec(), the arguments it requires
and the failures that are about the host rather than the input.
"""

import decimal
import math
import os

import pytest

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from ansible_collections.samepage.ksm.plugins.module_utils import _ksm_boot
from ansible_collections.samepage.ksm.plugins.module_utils import _libvirt
from ansible_collections.samepage.ksm.plugins.module_utils import _options
from ansible_collections.samepage.ksm.plugins.module_utils import _systemd
from ansible_collections.samepage.ksm.plugins.modules import ksm_info
from ansible_collections.samepage.ksm.plugins.modules import ksm_metrics
from ansible_collections.samepage.ksm.plugins.modules import ksm_service
from ansible_collections.samepage.ksm.plugins.modules import ksm_sysfs
from ansible_collections.samepage.ksm.plugins.modules import ksm_tuner
from ansible_collections.samepage.ksm.plugins.modules import ksm_unmerge
from ansible_collections.samepage.ksm.plugins.modules import ksmtuned_config
from ansible_collections.samepage.ksm.plugins.modules import ksm_writers
from ansible_collections.samepage.ksm.plugins.modules import libvirt_nosharepages
from ansible_collections.samepage.ksm.tests.unit.plugins.modules.fake_host import FakeHost
from ansible_collections.samepage.ksm.tests.unit.plugins.modules.module_runner import run_main

# module name: (main, argument_spec function, arguments every call needs, failures that are about the
# host rather than the input: a run that reaches them accepted the input)
MODULES = {
    'ksm_sysfs': (ksm_sysfs.main, ksm_sysfs.argument_spec, {}, ()),
    'ksm_unmerge': (ksm_unmerge.main, ksm_unmerge.argument_spec, {}, ()),
    'ksm_info': (ksm_info.main, ksm_info.argument_spec, {}, ()),
    'ksm_service': (ksm_service.main, ksm_service.argument_spec, {'name': 'ksm', 'state': 'started'},
                    ('systemd is not running as PID 1',)),
    'ksm_tuner': (ksm_tuner.main, ksm_tuner.argument_spec, {}, ('systemd is not running as PID 1',)),
    # the files go under a directory that does not exist and cannot be made (a file is in the way): input
    # that passes every check reaches the write
    'ksmtuned_config': (ksmtuned_config.main, ksmtuned_config.argument_spec,
                        {'path': '/dev/null/ksmtuned.conf', 'hook_dir': '/dev/null/qemu.d'}, ('Cannot write',)),
    'ksm_writers': (ksm_writers.main, ksm_writers.argument_spec, {'neutralise': ['qemu-kvm.service'], 'run': True}, ()),
    'ksm_metrics': (ksm_metrics.main, ksm_metrics.argument_spec, {}, ('systemd is not running as PID 1',)),
    # virsh is not there in these tests (_libvirt.VIRSH names no program): input that passes every check
    # reaches the search for it
    'libvirt_nosharepages': (libvirt_nosharepages.main, libvirt_nosharepages.argument_spec, {'domains': ['vm1']},
                             ('virsh was not found',)),
}

HOSTILE = [
    10 ** 30, 2 ** 64, 2 ** 32, -1, -(10 ** 30), 1.5, 1e308, -0.0,
    float('nan'), float('inf'), float('-inf'), 'nan', 'NaN', 'inf', '-inf', '1e400', '1e3',
    '１２', '٣', '12\n', '\n', 'a\nb', '5%\n', '', ' ', '0x10', '+5', '-5', '9' * 400, '9' * 400 + 'G',
    'x' * 5000, "'; rm -rf /; echo '", '../../etc/passwd', '\x00', [], {}, [1], {'a': 1}, True, False,
]

# Refusals of ansible-core itself that do not name the option: a NUL byte cannot be logged to syslog.
ANSIBLE_FAILURES = ('Failed to log to syslog (embedded null character)',)

# What Ansible's option types make of a value that they accept (see the module docstring).
BOOL_SPELLINGS = {'yes', 'no', 'true', 'false', 'on', 'off', '1', '0', 'y', 'n', 't', 'f', '1.0', '0.0'}


def normalised_ok(spec, given, value):
    kind = spec.get('type', 'str')
    if kind == 'int':
        if isinstance(given, str):
            return value == int(decimal.Decimal(given.strip()))
        return isinstance(given, (int, float)) and isinstance(value, int) and value == given
    if kind == 'bool':
        return isinstance(value, bool) and (given in (0, 1) or str(given).lower() in BOOL_SPELLINGS)
    if kind == 'str':
        if 'choices' in spec:
            return value in spec['choices']
        return value == (given if isinstance(given, str) else str(given))
    if kind == 'path':
        return value == os.path.expanduser(os.path.expandvars(given if isinstance(given, str) else str(given)))
    if kind == 'dict':
        return isinstance(given, dict) and value == given
    if kind == 'list' and spec.get('elements') == 'str':
        if isinstance(given, list):
            return value == [item if isinstance(item, str) else str(item) for item in given]
        if isinstance(given, str):
            return value == given.split(',')
        return isinstance(given, (int, float)) and value == [str(given)]
    raise AssertionError('no normalisation documented for type %s' % kind)


def cases():
    for module_name, (dummy, spec_of, dummy, dummy) in sorted(MODULES.items()):
        for option in sorted(spec_of()):
            for value in HOSTILE:
                yield pytest.param(module_name, option, value, id='%s-%s-%r' % (module_name, option, value)[:90])


@pytest.fixture(autouse=True)
def host(tmp_path, monkeypatch):
    monkeypatch.setattr(_ksm_boot, 'UNIT_DIR', str(tmp_path / 'etc-systemd-system'))
    monkeypatch.setattr(_ksm_boot, 'SYSTEMD_RUN_DIR', str(tmp_path / 'run-systemd-system'))
    monkeypatch.setattr(_systemd, 'RUNTIME_DIR', str(tmp_path / 'no-systemd'))
    monkeypatch.setattr(_libvirt, 'VIRSH', 'samepage-ksm-no-such-virsh')
    fake = FakeHost(tmp_path, monkeypatch, run=1)
    fake.kernel.share(10, 20)
    return fake


@pytest.mark.parametrize('module_name, option, value', list(cases()))
def test_hostile_value_fails_naming_the_option_or_is_normalised(host, module_name, option, value):
    main, spec_of, required, host_failures = MODULES[module_name]
    spec = spec_of()
    args = dict(required)
    args[option] = value
    if _options._beyond_int(value) and spec[option].get('type') == 'int':
        checked = None      # ansible-core would raise OverflowError or never finish: new_module refuses first
    else:
        checked = ArgumentSpecValidator(spec).validate(args)
    if checked is None:
        pass
    elif checked.error_messages:
        assert all(option in message for message in checked.error_messages), checked.error_messages
    else:
        assert normalised_ok(spec[option], value, checked.validated_parameters[option]), (
            value, checked.validated_parameters[option])

    result = run_main(main, args, check_mode=True)    # a traceback fails the test here
    assert host.kernel.writes == []
    if result['failed']:
        msg = result['msg']
        assert option in msg or any(text in msg for text in host_failures + ANSIBLE_FAILURES), msg
        assert 'Traceback' not in msg and result['changed'] is False


@pytest.mark.parametrize('value', [float('nan'), float('inf'), 'inf', '-Infinity', '9' * 400, '1e400', '1e999999999'])
def test_nan_inf_and_enormous_numbers_fail_naming_the_option(host, value):
    """ansible-core's int conversion raises OverflowError for an infinity (a traceback) and would build
    a number of a billion digits from '1e999999999'."""
    for main in (ksm_sysfs.main, ksm_unmerge.main):
        result = run_main(main, {'lock_timeout': value}, check_mode=True)
        assert result['failed'] is True and 'lock_timeout' in result['msg'], result['msg']
    result = run_main(ksm_sysfs.main, {'pages_to_scan': value}, check_mode=True)
    assert result['failed'] is True and 'pages_to_scan' in result['msg']
    assert not math.isinf(result.get('value', 0) or 0)


@pytest.mark.parametrize('content', [b'\x00\xff' * 5000, b'KSM_ENABLED="1\nSLEEP_MILLISECS=`reboot`"\n',
                                     b'[sysfs]\n/sys/kernel/mm/ksm/run = \xff\n' * 20000])
def test_hostile_files_of_other_writers_give_clean_results(host, content):
    """The files ksm_info and ksm_sysfs read to find other writers of KSM knobs (competing_writers) are
    data: garbage, huge or binary contents give a clean result, never a traceback."""
    host.enable_unit('qemu-kvm.service')
    for relative in ('etc/default/qemu-kvm', 'etc/tuned/active_profile', 'etc/tuned/p/tuned.conf',
                     'etc/tmpfiles.d/ksm.conf', 'etc/sysfs.conf', 'etc/systemd/system/x.service'):
        (host.root / relative).parent.mkdir(parents=True, exist_ok=True)
        (host.root / relative).write_bytes(content)
    host.add_process(4242, 'ksmtuned')
    (host.proc / '4243').mkdir()
    (host.proc / '4243' / 'comm').write_bytes(b'\xff\xfe' * 100)
    info = run_main(ksm_info.main, {'max_processes': 0})
    assert info['failed'] is False
    assert [entry['name'] for entry in info['competing_writers']][:2] == ['ksmtuned', 'qemu-kvm.service']
    result = run_main(ksm_sysfs.main, {'sleep_millisecs': 40}, check_mode=True)
    assert result['failed'] is False and host.kernel.writes == []
    assert [entry['name'] for entry in result['competing_writers']][:2] == ['ksmtuned', 'qemu-kvm.service']
