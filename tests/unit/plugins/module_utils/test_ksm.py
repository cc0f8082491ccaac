# -*- coding: utf-8 -*-
# Copyright: (c) 2026, samepage.ksm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""plugins/module_utils/_ksm.py against the fake kernel (tests/unit/fakes/kernel.py).

Plain pytest, no Ansible import: runs on every Python the module_utils support (3.8+).
"""

import errno
import os

import pytest

from ansible_collections.samepage.ksm.plugins.module_utils import _ksm
from ansible_collections.samepage.ksm.plugins.module_utils._ksm import Ksm, KsmError
from ansible_collections.samepage.ksm.tests.unit.fakes.kernel import FakeKsmKernel

PAGE = 4096

INT_KNOBS = {
    # name: (minimum, maximum)
    'run': (0, 2),
    'pages_to_scan': (0, 2 ** 32 - 1),
    'sleep_millisecs': (0, 2 ** 32 - 1),
    'stable_node_chains_prune_millisecs': (0, 2 ** 32 - 1),
    'merge_across_nodes': (0, 1),
    'max_page_sharing': (2, 2 ** 31 - 1),
    'advisor_max_cpu': (0, 2 ** 32 - 1),
    'advisor_min_pages_to_scan': (0, 2 ** 64 - 1),
    'advisor_max_pages_to_scan': (0, 2 ** 64 - 1),
    'advisor_target_scan_time': (1, 2 ** 64 - 1),
}

# Every writable knob of a 6.18 kernel changed from its default, in the order the kernel needs.
FULL_ORDER = [
    ('advisor_max_cpu', 50), ('advisor_min_pages_to_scan', 600), ('advisor_max_pages_to_scan', 20000),
    ('advisor_target_scan_time', 300), ('advisor_mode', 'none'), ('pages_to_scan', 1250),
    ('sleep_millisecs', 50), ('use_zero_pages', True), ('smart_scan', False),
    ('stable_node_chains_prune_millisecs', 4000), ('max_page_sharing', 512), ('merge_across_nodes', 0),
    ('run', 1),
]


def kernel(preset='6.18', mode=None, **values):
    fake = FakeKsmKernel(preset, mode=mode, **values)
    return fake, Ksm(fake)


def error_of(call, *args, **kwargs):
    with pytest.raises(KsmError) as caught:
        call(*args, **kwargs)
    return caught.value


# --- validate ----------------------------------------------------------------------------------------

@pytest.mark.parametrize('name', sorted(INT_KNOBS))
def test_validate_accepts_the_bounds(name):
    low, high = INT_KNOBS[name]
    assert _ksm.validate(name, low) == low
    assert _ksm.validate(name, high) == high


@pytest.mark.parametrize('name', sorted(INT_KNOBS))
def test_validate_refuses_just_outside_the_bounds(name):
    low, high = INT_KNOBS[name]
    for value in (low - 1, high + 1):
        err = error_of(_ksm.validate, name, value)
        assert name in err.msg and str(value) in err.msg
        assert 'an integer from %d to %d' % (low, high) in err.msg
        assert err.details['knob'] == name


@pytest.mark.parametrize('name', sorted(INT_KNOBS))
@pytest.mark.parametrize('value', [True, False, '100', 1.0, None])
def test_validate_integer_knobs_take_integers_only(name, value):
    err = error_of(_ksm.validate, name, value)
    assert name in err.msg and repr(value) in err.msg


def test_advisor_max_cpu_refuses_what_the_kernel_would_truncate():
    err = error_of(_ksm.validate, 'advisor_max_cpu', 2 ** 32)
    assert 'truncate' in err.msg and '4294967296' in err.msg
    assert 'truncate' not in error_of(_ksm.validate, 'pages_to_scan', 2 ** 32).msg


@pytest.mark.parametrize('name', ['use_zero_pages', 'smart_scan'])
def test_validate_booleans(name):
    assert _ksm.validate(name, True) is True
    assert _ksm.validate(name, False) is False
    assert _ksm.validate(name, 1) is True
    assert _ksm.validate(name, 0) is False
    for value in (2, -1, 'yes', 'true', None, 1.0, 0.0):
        err = error_of(_ksm.validate, name, value)
        assert 'expected true or false' in err.msg and name in err.msg


def test_validate_advisor_mode():
    assert _ksm.validate('advisor_mode', 'none') == 'none'
    assert _ksm.validate('advisor_mode', 'scan-time') == 'scan-time'
    for value in ('SCAN-TIME', 'scan-time\n', '', None, 1):
        err = error_of(_ksm.validate, 'advisor_mode', value)
        assert 'one of none, scan-time' in err.msg


@pytest.mark.parametrize('name', ['pages_shared', 'general_profit', 'max_kernel_pages', 'no_such_knob'])
def test_validate_refuses_what_cannot_be_written(name):
    assert error_of(_ksm.validate, name, 1).msg == '%s is not a writable KSM knob' % name


# --- parse, encode, same -------------------------------------------------------------------------------

@pytest.mark.parametrize('name, text, expected', [
    ('pages_to_scan', '100\n', 100),
    ('advisor_min_pages_to_scan', '18446744073709551615\n', 2 ** 64 - 1),
    ('general_profit', '-4194304\n', -4194304),
    ('use_zero_pages', '1\n', True),
    ('smart_scan', '0\n', False),
    ('advisor_mode', '[none] scan-time\n', 'none'),
    ('advisor_mode', 'none [scan-time]\n', 'scan-time'),
    ('advisor_mode', 'scan-time\n', 'scan-time'),      # no brackets: kept as it is
    ('some_future_file', ' text \n', 'text'),
])
def test_parse(name, text, expected):
    value = _ksm.parse(name, text)
    assert value == expected and type(value) is type(expected)


def test_parse_refuses_a_non_number():
    err = error_of(_ksm.parse, 'pages_to_scan', 'lots\n')
    assert 'pages_to_scan' in err.msg and "'lots'" in err.msg


def test_encode_sends_decimal_and_0_1():
    assert _ksm.encode('use_zero_pages', True) == '1'
    assert _ksm.encode('smart_scan', False) == '0'
    assert _ksm.encode('pages_to_scan', 1250) == '1250'
    assert _ksm.encode('advisor_mode', 'scan-time') == 'scan-time'


def test_same_counts_run_2_as_stopped():
    assert _ksm.same('run', 2, 0) is True
    assert _ksm.same('run', 0, 2) is False
    assert _ksm.same('run', 2, 1) is False
    assert _ksm.same('pages_to_scan', 2, 0) is False


# --- reading -----------------------------------------------------------------------------------------

def test_read_state_types_every_file():
    fake, ksm = kernel(advisor_mode='scan-time', pages_to_scan=500, general_profit=-8192)
    state = ksm.read_state()
    assert sorted(state) == fake.names()
    assert state['advisor_mode'] == 'scan-time'
    assert state['pages_to_scan'] == 500
    assert state['general_profit'] == -8192
    assert state['smart_scan'] is True and state['use_zero_pages'] is False
    assert state['run'] == 0


def test_read_state_of_debian_12_kernel():
    dummy, ksm = kernel('6.1')
    state = ksm.read_state()
    assert len(state) == 14 and 'advisor_mode' not in state and 'smart_scan' not in state


def test_read_state_without_ksm():
    fake, ksm = kernel('absent')
    assert ksm.available() is False
    err = error_of(ksm.read_state)
    assert isinstance(err, _ksm.KsmUnavailable)
    assert fake.root in err.msg and 'CONFIG_KSM' in err.msg


# --- plan ------------------------------------------------------------------------------------------------

def test_plan_writes_every_knob_in_the_kernel_order():
    fake, ksm = kernel(advisor_mode='scan-time', pages_to_scan=500)
    state = ksm.read_state()
    writes, missing = ksm.plan(state, dict(FULL_ORDER))
    assert writes == FULL_ORDER
    assert missing == []
    assert fake.writes == []                      # planning writes nothing
    assert ksm.apply(writes, state) == [name for name, dummy in FULL_ORDER]
    assert [name for name, dummy in fake.writes] == [name for name, dummy in FULL_ORDER]
    assert fake.failures == []
    after = ksm.read_state()
    for name, value in FULL_ORDER:
        assert after[name] == value, name
    assert ksm.plan(after, dict(FULL_ORDER)) == ([], [])


def test_plan_order_matches_write_order_constant():
    assert list(_ksm.WRITE_ORDER) == [name for name, dummy in FULL_ORDER]


def test_plan_of_the_current_values_is_empty():
    dummy, ksm = kernel()
    state = ksm.read_state()
    wanted = {name: state[name] for name in _ksm.WRITE_ORDER}
    assert ksm.plan(state, wanted) == ([], [])


def test_plan_rewrites_pages_to_scan_that_leaving_scan_time_resets():
    # The advisor had set pages_to_scan to 500; leaving scan-time resets it to 100, so asking for 500
    # must still write it even though it reads 500 now.
    fake, ksm = kernel(advisor_mode='scan-time', pages_to_scan=500)
    state = ksm.read_state()
    writes, dummy = ksm.plan(state, {'advisor_mode': 'none', 'pages_to_scan': 500})
    assert writes == [('advisor_mode', 'none'), ('pages_to_scan', 500)]
    ksm.apply(writes, state)
    assert fake.read('pages_to_scan') == '500\n' and fake.read('advisor_mode') == '[none] scan-time\n'


def test_plan_knows_leaving_scan_time_gives_100():
    fake, ksm = kernel(advisor_mode='scan-time', pages_to_scan=4321)
    state = ksm.read_state()
    writes, dummy = ksm.plan(state, {'advisor_mode': 'none', 'pages_to_scan': 100})
    assert writes == [('advisor_mode', 'none')]
    ksm.apply(writes, state)
    assert fake.read('pages_to_scan') == '100\n'


def test_plan_sets_advisor_minimum_before_entering_scan_time():
    fake, ksm = kernel(pages_to_scan=1234)
    state = ksm.read_state()
    writes, dummy = ksm.plan(state, {'advisor_mode': 'scan-time', 'advisor_min_pages_to_scan': 700})
    assert writes == [('advisor_min_pages_to_scan', 700), ('advisor_mode', 'scan-time')]
    ksm.apply(writes, state)
    assert fake.read('pages_to_scan') == '700\n'      # the kernel started the advisor from the new minimum


@pytest.mark.parametrize('values, wanted', [
    ({'advisor_mode': 'scan-time'}, {'pages_to_scan': 300}),
    ({'advisor_mode': 'scan-time', 'pages_to_scan': 500}, {'pages_to_scan': 500}),
    ({}, {'advisor_mode': 'scan-time', 'pages_to_scan': 300, 'sleep_millisecs': 10}),
])
def test_plan_refuses_pages_to_scan_under_scan_time(values, wanted):
    fake, ksm = kernel(**values)
    err = error_of(ksm.plan, ksm.read_state(), wanted)
    assert 'pages_to_scan=%d' % wanted['pages_to_scan'] in err.msg
    assert 'scan-time' in err.msg and 'advisor_mode=none' in err.msg
    assert err.details == {'knob': 'pages_to_scan', 'value': wanted['pages_to_scan']}
    assert fake.writes == []


def test_plan_validates_everything_before_anything_is_written():
    fake, ksm = kernel()
    err = error_of(ksm.plan, ksm.read_state(), {'sleep_millisecs': 10, 'max_page_sharing': 1})
    assert 'max_page_sharing' in err.msg and 'from 2 to 2147483647' in err.msg
    assert fake.writes == []


def test_plan_names_a_missing_knob_and_the_kernel(monkeypatch):
    monkeypatch.setattr(_ksm, 'kernel_release', lambda: '6.1.0-28-amd64')
    dummy, ksm = kernel('6.1')
    err = error_of(ksm.plan, ksm.read_state(), {'smart_scan': True, 'sleep_millisecs': 10})
    assert err.msg.startswith('smart_scan is not available on this kernel (6.1.0-28-amd64)')
    assert '/sys/kernel/mm/ksm/smart_scan does not exist' in err.msg
    assert 'Linux 6.7' in err.msg and 'skip_missing' in err.msg
    assert err.details == {'knob': 'smart_scan'}


def test_plan_says_merge_across_nodes_needs_numa(monkeypatch):
    monkeypatch.setattr(_ksm, 'kernel_release', lambda: '6.18.0-nonuma')
    dummy, ksm = kernel('no-numa')
    err = error_of(ksm.plan, ksm.read_state(), {'merge_across_nodes': 0})
    assert 'merge_across_nodes' in err.msg and 'NUMA' in err.msg and '6.18.0-nonuma' in err.msg


def test_plan_skips_missing_knobs_when_asked():
    dummy, ksm = kernel('6.1')
    state = ksm.read_state()
    writes, missing = ksm.plan(state, {'smart_scan': True, 'advisor_mode': 'scan-time', 'sleep_millisecs': 10,
                                       'pages_to_scan': 300}, skip_missing=True)
    # without the advisor the kernel lets pages_to_scan be written
    assert writes == [('pages_to_scan', 300), ('sleep_millisecs', 10)]
    assert missing == ['advisor_mode', 'smart_scan']


def test_plan_still_validates_skipped_knobs():
    dummy, ksm = kernel('6.1')
    err = error_of(ksm.plan, ksm.read_state(), {'smart_scan': 'maybe'}, skip_missing=True)
    assert 'smart_scan' in err.msg and 'true or false' in err.msg


def test_run_2_satisfies_run_0():
    dummy, ksm = kernel(run=2)
    state = ksm.read_state()
    assert ksm.plan(state, {'run': 0}) == ([], [])
    assert ksm.plan(state, {'run': 1}) == ([('run', 1)], [])
    assert ksm.plan(state, {'run': 2}) == ([], [])
    fake, ksm = kernel(run=0)
    assert ksm.plan(ksm.read_state(), {'run': 2}) == ([('run', 2)], [])


def test_blocked_by_sharing():
    writes = [('sleep_millisecs', 10), ('max_page_sharing', 512), ('merge_across_nodes', 0), ('run', 1)]
    assert Ksm.blocked_by_sharing({'pages_shared': 3}, writes) == ['max_page_sharing', 'merge_across_nodes']
    assert Ksm.blocked_by_sharing({'pages_shared': 0, 'ksm_zero_pages': 50}, writes) == []


# --- apply: errno translation -----------------------------------------------------------------------

def test_apply_unprivileged(monkeypatch):
    monkeypatch.setattr(os, 'geteuid', lambda: 1000)
    dummy, ksm = kernel(mode='unprivileged')
    state = ksm.read_state()
    err = error_of(ksm.apply, [('sleep_millisecs', 30)], state)
    assert err.msg == ('Cannot set sleep_millisecs=30: permission denied: changing KSM needs root (run the task '
                       'with become: true)')
    assert err.details == {'knob': 'sleep_millisecs', 'value': 30, 'errno': errno.EACCES}


def test_apply_denied_to_root(monkeypatch):
    monkeypatch.setattr(os, 'geteuid', lambda: 0)
    dummy, ksm = kernel(mode='unprivileged')
    err = error_of(ksm.apply, [('use_zero_pages', True)], ksm.read_state())
    assert err.msg.startswith('Cannot set use_zero_pages=1: permission denied by the kernel')


def test_apply_read_only_sys():
    dummy, ksm = kernel(mode='readonly')
    err = error_of(ksm.apply, [('run', 1)], ksm.read_state())
    assert err.msg.startswith('Cannot set run=1: /sys is mounted read-only')
    assert err.details['errno'] == errno.EROFS


INVALID = 'the kernel rejected it as invalid (EINVAL; expected an integer from %s)'
OUT_OF_RANGE = 'out of range for the kernel (ERANGE; expected an integer from %s)'


@pytest.mark.parametrize('name, value, code, reason', [
    ('max_page_sharing', 1, errno.EINVAL, INVALID % '2 to 2147483647'),
    ('run', 3, errno.EINVAL, INVALID % '0 to 2'),
    ('advisor_target_scan_time', 0, errno.EINVAL, INVALID % '1 to 18446744073709551615'),
    ('merge_across_nodes', 2, errno.EINVAL, INVALID % '0 to 1'),
    ('max_page_sharing', 2 ** 31, errno.ERANGE, OUT_OF_RANGE % '2 to 2147483647'),
    ('merge_across_nodes', 2 ** 64, errno.ERANGE, OUT_OF_RANGE % '0 to 1'),
])
def test_apply_translates_what_the_kernel_refuses(name, value, code, reason):
    # apply() trusts its plan; written raw, the kernel's own refusal is what the operator sees.
    fake, ksm = kernel()
    err = error_of(ksm.apply, [(name, value)], ksm.read_state())
    assert err.msg == 'Cannot set %s=%d: %s' % (name, value, reason)
    assert err.details == {'knob': name, 'value': value, 'errno': code}
    assert fake.failures == [(name, str(value), code)]


def test_apply_explains_einval_of_pages_to_scan_under_scan_time():
    dummy, ksm = kernel(advisor_mode='scan-time')
    err = error_of(ksm.apply, [('pages_to_scan', 300)], ksm.read_state())
    assert 'Cannot set pages_to_scan=300: the scan-time advisor owns pages_to_scan' in err.msg


def test_apply_ebusy_names_the_shared_pages():
    fake, ksm = kernel(run=1)
    fake.share(pages_shared=5, pages_sharing=40)
    err = error_of(ksm.apply, [('merge_across_nodes', 0)], ksm.read_state())
    assert err.msg.startswith('Cannot set merge_across_nodes=0: the kernel refuses to change it while KSM pages '
                              'are shared (pages_shared=5)')
    assert 'ksm_unmerge' in err.msg and 'unmerge_if_busy' in err.msg
    assert err.details['errno'] == errno.EBUSY
    assert fake.read('merge_across_nodes') == '1\n'


def test_apply_ebusy_from_stale_stable_nodes_says_so():
    fake, ksm = kernel()
    fake.stale_stable_nodes = True
    err = error_of(ksm.apply, [('max_page_sharing', 512)], ksm.read_state())
    assert 'Cannot set max_page_sharing=512' in err.msg
    assert 'pages_shared=0' in err.msg and 'stable nodes' in err.msg and 'run=2' in err.msg
    assert 'while KSM pages are shared' not in err.msg


@pytest.mark.parametrize('code, words', [
    (errno.ENOMEM, ['unmerge ran out of memory', 'set run=0', 'OOM killer']),
    (errno.EINTR, ['unmerge was interrupted by a signal', 'set run=0']),
])
def test_apply_failed_unmerge(code, words):
    fake, ksm = kernel(run=1)
    fake.share(pages_shared=10, pages_sharing=90)
    fake.unmerge_error = code
    err = error_of(ksm.apply, [('run', 2)], ksm.read_state())
    assert err.msg.startswith('Cannot set run=2: ')
    for word in words:
        assert word in err.msg
    assert err.details['errno'] == code
    assert fake.read('run') == '0\n' and fake.read('pages_sharing') == '90\n'


@pytest.mark.parametrize('code, reason', [
    (errno.ENOMEM, 'the kernel ran out of memory (ENOMEM)'),
    (errno.EINTR, 'interrupted by a signal (EINTR)'),
    (errno.EPERM, 'permission denied by the kernel (the file is read-only, or a security module denies it)'),
    (errno.EIO, 'Input/output error (errno 5)'),
])
def test_apply_other_errors(code, reason, monkeypatch):
    monkeypatch.setattr(os, 'geteuid', lambda: 0)
    fake, ksm = kernel()
    fake.inject('merge_across_nodes', code)
    err = error_of(ksm.apply, [('merge_across_nodes', 0)], ksm.read_state())
    assert err.msg == 'Cannot set merge_across_nodes=0: ' + reason


def test_write_of_a_missing_file_is_not_attempted():
    fake, ksm = kernel('6.1')
    err = error_of(ksm.write, 'smart_scan', True)
    assert err.msg == 'Cannot set smart_scan=1: /sys/kernel/mm/ksm/smart_scan does not exist on this kernel'
    assert fake.writes == []


# --- apply: rollback ----------------------------------------------------------------------------------

def test_apply_undoes_earlier_writes_when_a_late_one_fails():
    fake, ksm = kernel()
    fake.stale_stable_nodes = True            # invisible to plan(): pages_shared reads 0
    initial = fake.settings()
    state = ksm.read_state()
    wanted = {'sleep_millisecs': 50, 'use_zero_pages': True, 'max_page_sharing': 512, 'run': 1}
    writes, dummy = ksm.plan(state, wanted)
    err = error_of(ksm.apply, writes, state)
    assert fake.settings() == initial
    assert 'Cannot set max_page_sharing=512' in err.msg
    assert 'Earlier writes of this task were undone: ' in err.msg
    assert 'sleep_millisecs=20' in err.msg and 'use_zero_pages=0' in err.msg
    assert 'Could not undo' not in err.msg
    assert err.details['knob'] == 'max_page_sharing' and err.details['errno'] == errno.EBUSY
    assert ('run', '1') not in fake.writes       # nothing after the failure was tried
    assert fake.successful_writes()[:2] == [('sleep_millisecs', '50'), ('use_zero_pages', '1')]


def test_rollback_restores_pages_to_scan_after_entering_scan_time():
    fake, ksm = kernel(pages_to_scan=1234)
    fake.stale_stable_nodes = True
    initial = fake.settings()
    state = ksm.read_state()
    writes, dummy = ksm.plan(state, {'advisor_min_pages_to_scan': 700, 'advisor_mode': 'scan-time',
                                     'max_page_sharing': 512})
    assert [name for name, dummy in writes] == ['advisor_min_pages_to_scan', 'advisor_mode', 'max_page_sharing']
    error_of(ksm.apply, writes, state)
    assert fake.settings() == initial
    assert fake.read('pages_to_scan') == '1234\n'


def test_rollback_to_scan_time_leaves_pages_to_scan_to_the_advisor():
    fake, ksm = kernel(advisor_mode='scan-time', pages_to_scan=4321)
    fake.stale_stable_nodes = True
    initial = fake.settings()
    state = ksm.read_state()
    writes, dummy = ksm.plan(state, {'advisor_min_pages_to_scan': 800, 'advisor_mode': 'none',
                                     'pages_to_scan': 300, 'merge_across_nodes': 0})
    err = error_of(ksm.apply, writes, state)
    after = fake.settings()
    # Everything is back; pages_to_scan is where the kernel puts it on entering scan-time (the advisor's
    # starting point, from the restored minimum): the advisor's own value cannot be written back.
    assert after.pop('pages_to_scan') == 500
    initial.pop('pages_to_scan')
    assert after == initial
    assert 'Could not undo' not in err.msg
    assert all(code != errno.EINVAL for dummy, dummy2, code in fake.failures)


def test_rollback_reports_what_it_could_not_undo():
    fake, ksm = kernel()
    fake.stale_stable_nodes = True
    state = ksm.read_state()

    def break_sleep(kernel_, name, data):
        if (name, data) == ('sleep_millisecs', '50'):
            kernel_.inject('sleep_millisecs', errno.EPERM)   # a security module now says no

    fake.after_write = break_sleep
    err = error_of(ksm.apply, [('sleep_millisecs', 50), ('stable_node_chains_prune_millisecs', 1000),
                               ('max_page_sharing', 512)], state)
    assert 'undone: stable_node_chains_prune_millisecs=2000' in err.msg
    assert 'Could not undo: sleep_millisecs (was 20).' in err.msg
    assert fake.read('sleep_millisecs') == '50\n'


# --- unmerge -------------------------------------------------------------------------------------------

def test_unmerge_writes_run_2():
    fake, ksm = kernel(run=1, full_scans=30)
    fake.share(pages_shared=10, pages_sharing=90, ksm_zero_pages=4)
    ksm.unmerge(ksm.read_state())
    assert fake.writes == [('run', '2')]
    state = ksm.read_state()
    assert (state['run'], state['pages_shared'], state['pages_sharing'], state['ksm_zero_pages'],
            state['full_scans']) == (2, 0, 0, 0, 0)


def test_unmerge_when_run_is_already_2_forces_a_new_one():
    fake, ksm = kernel(run=2)
    fake.share(pages_shared=3, pages_sharing=5)   # stale counters, e.g. an exited process
    ksm.unmerge(ksm.read_state())
    assert fake.writes == [('run', '0'), ('run', '2')]
    assert fake.unmerges == 1
    assert fake.read('pages_shared') == '0\n'


@pytest.mark.parametrize('code, words', [
    (errno.ENOMEM, 'the unmerge ran out of memory'),
    (errno.EINTR, 'the unmerge was interrupted by a signal'),
])
def test_unmerge_failure(code, words):
    fake, ksm = kernel(run=1)
    fake.share(pages_shared=10, pages_sharing=90)
    fake.unmerge_error = code
    err = error_of(ksm.unmerge, ksm.read_state())
    assert err.msg.startswith('Cannot set run=2: ' + words)
    assert 'set run=0' in err.msg
    assert fake.read('run') == '0\n'


def test_unmerge_verified_success():
    fake, ksm = kernel(run=1)
    fake.share(pages_shared=10, pages_sharing=90)
    seconds, after = ksm.unmerge_verified(ksm.read_state())
    assert seconds >= 0
    assert _ksm.sharing_left(after) == [] and after['run'] == 2


def test_unmerge_verified_reads_back_what_a_failure_left():
    fake, ksm = kernel(run=1)
    fake.share(pages_shared=10, pages_sharing=90, ksm_zero_pages=2)
    fake.unmerge_error = errno.ENOMEM
    err = error_of(ksm.unmerge_verified, ksm.read_state())
    assert 'ran out of memory' in err.msg
    assert err.msg.endswith('Read back afterwards: run=0, pages_shared=10, pages_sharing=90, ksm_zero_pages=2.')
    assert err.details['errno'] == errno.ENOMEM


def test_unmerge_verified_notices_pages_merged_again():
    fake, ksm = kernel(run=1)
    fake.share(pages_shared=10, pages_sharing=90)

    def merge_again(kernel_, name, data):     # another writer starts ksmd right after the unmerge
        if name == 'run' and data == '2':
            kernel_.share(pages_shared=1, pages_sharing=2)

    fake.after_write = merge_again
    err = error_of(ksm.unmerge_verified, ksm.read_state())
    assert 'still shared afterwards (pages_shared=1, pages_sharing=2' in err.msg
    assert err.details['remaining'] == {'pages_shared': 1, 'pages_sharing': 2}


def test_sharing_left():
    assert _ksm.sharing_left({'pages_shared': 0, 'pages_sharing': 0, 'ksm_zero_pages': 3}) == [('ksm_zero_pages', 3)]
    assert _ksm.sharing_left({'pages_shared': 0, 'pages_sharing': 0}) == []


# --- memory ----------------------------------------------------------------------------------------------

def test_unmerge_cost():
    assert _ksm.unmerge_cost({'pages_shared': 10, 'pages_sharing': 90, 'ksm_zero_pages': 10}, PAGE) == 100 * PAGE
    assert _ksm.unmerge_cost({'pages_shared': 10, 'pages_sharing': 90}, PAGE) == 90 * PAGE   # 6.1: no zero pages
    assert _ksm.unmerge_cost({}, PAGE) == 0
    assert _ksm.unmerge_cost({'pages_sharing': 1}) == _ksm.page_size()


GIB = 1024 ** 3


@pytest.mark.parametrize('text, expected', [
    ('5%', int(24 * GIB * 0.05)), (' 5 % ', int(24 * GIB * 0.05)), ('0.5%', int(24 * GIB * 0.005)),
    ('100%', 24 * GIB), ('0', 0), (0, 0), ('4096', 4096), ('512M', 512 * 1024 ** 2), ('512MB', 512 * 1024 ** 2),
    ('512MiB', 512 * 1024 ** 2), ('2G', 2 * GIB), ('2GiB', 2 * GIB), ('2gib', 2 * GIB), ('1.5G', int(1.5 * GIB)),
    ('64k', 65536), ('1T', 1024 ** 4), ('100B', 100),
])
def test_parse_margin(text, expected):
    assert _ksm.parse_margin(text, 24 * GIB) == expected


@pytest.mark.parametrize('text', ['', 'abc', '-5%', '5 apples', '5P', '5i', '5iB', '1e3', None, True, '5%%'])
def test_parse_margin_refuses_bad_input(text):
    err = error_of(_ksm.parse_margin, text, 24 * GIB)
    assert 'Invalid memory margin %r' % (text,) in err.msg
    assert err.details == {'option': 'memory_margin'}


@pytest.mark.parametrize('text', ['5%\n', '512M\n', '\n5%', '5\n%', '１２G', '٣', '9' * 400 + 'G', '9' * 400,
                                  '1' * 16, '99999999T', 5.0, [], {}])
def test_parse_margin_refuses_line_breaks_unicode_digits_and_the_enormous(text):
    """Issue #11: `$` let a final newline through, \\d took any Unicode digit, and a 400-digit size
    overflowed float into int(inf): OverflowError, a traceback."""
    err = error_of(_ksm.parse_margin, text, 24 * GIB)
    assert 'Invalid memory margin %r' % (text,) in err.msg
    assert err.details == {'option': 'memory_margin'}


def test_parse_margin_refuses_more_than_everything():
    err = error_of(_ksm.parse_margin, '101%', 24 * GIB)
    assert 'cannot exceed 100%' in err.msg


def test_read_meminfo(tmp_path):
    path = tmp_path / 'meminfo'
    path.write_text('MemTotal:       24576000 kB\nMemAvailable:    1000 kB\nSwapFree:              0 kB\n'
                    'HugePages_Total:       3\nBogus:\n')
    info = _ksm.read_meminfo(str(path))
    assert info == {'MemTotal': 24576000 * 1024, 'MemAvailable': 1024000, 'SwapFree': 0, 'HugePages_Total': 3}


def test_unmerge_budget():
    assert _ksm.unmerge_budget({'MemAvailable': 10 * GIB, 'SwapFree': GIB, 'MemFree': 1}, GIB) == 10 * GIB
    assert _ksm.unmerge_budget({'MemFree': 2 * GIB}, 0) == 2 * GIB


def test_check_unmerge_fits():
    state = {'pages_sharing': 1024 * 1024, 'ksm_zero_pages': 0}             # 4 GiB of copies
    assert _ksm.check_unmerge_fits(state, {'MemAvailable': 8 * GIB}, GIB, PAGE) == (4 * GIB, 7 * GIB)


def test_check_unmerge_fits_refuses_with_both_figures():
    state = {'pages_sharing': 1024 * 1024, 'ksm_zero_pages': 262144}        # 5 GiB of copies
    meminfo = {'MemAvailable': 3 * GIB, 'SwapFree': GIB}
    err = error_of(_ksm.check_unmerge_fits, state, meminfo, 512 * 1024 ** 2, PAGE)
    assert err.msg.startswith('Refusing to unmerge: it needs 5.0 GiB (pages_sharing=1048576 + '
                              'ksm_zero_pages=262144 pages) but only 3.5 GiB may be used (MemAvailable 3.0 GiB '
                              '+ SwapFree 1.0 GiB - safety margin 512.0 MiB).')
    assert 'force=true' in err.msg
    assert err.details == {'needed_bytes': 5 * GIB, 'budget_bytes': int(3.5 * GIB)}


def test_check_unmerge_fits_with_margin_above_what_is_free():
    err = error_of(_ksm.check_unmerge_fits, {'pages_sharing': 1}, {'MemAvailable': GIB}, 2 * GIB, PAGE)
    assert 'but only 0 B may be used' in err.msg
    assert err.details['budget_bytes'] == -GIB


def test_unmerge_budget_resolves_the_margin_against_mem_total():
    budget = _ksm.UnmergeBudget('10%', {'MemTotal': 10 * GIB, 'MemAvailable': 4 * GIB, 'SwapFree': GIB})
    assert (budget.margin, budget.budget) == (GIB, 4 * GIB)
    assert budget.check({'pages_sharing': 262144}, PAGE) == (GIB, 4 * GIB)
    err = error_of(budget.check, {'pages_sharing': 5 * 262144}, PAGE, remedy='wait')
    assert err.msg.endswith('or wait.')
    assert err.details == {'needed_bytes': 5 * GIB, 'budget_bytes': 4 * GIB}


def test_unmerge_budget_reads_proc_meminfo(monkeypatch, tmp_path):
    path = tmp_path / 'meminfo'
    path.write_text('MemTotal:  1048576 kB\nMemAvailable:  524288 kB\nSwapFree:  0 kB\n')
    monkeypatch.setattr(_ksm, 'MEMINFO', str(path))
    budget = _ksm.UnmergeBudget('0')
    assert budget.meminfo['MemAvailable'] == 512 * 1024 ** 2 and budget.budget == 512 * 1024 ** 2


def test_unmerge_budget_names_an_unreadable_meminfo(monkeypatch, tmp_path):
    missing = str(tmp_path / 'nothing')
    monkeypatch.setattr(_ksm, 'MEMINFO', missing)
    err = error_of(_ksm.UnmergeBudget, '5%')
    assert err.msg.startswith('Cannot read the memory figures of the host (%s): ' % missing)


def test_unmerge_budget_names_the_option_of_a_bad_margin():
    err = error_of(_ksm.UnmergeBudget, 'lots', {'MemTotal': GIB})
    assert "Invalid memory margin 'lots' (option memory_margin)" in err.msg


@pytest.mark.parametrize('number, text', [(0, '0 B'), (1023, '1023 B'), (1536, '1.5 KiB'),
                                          (5 * GIB, '5.0 GiB'), (2048 * 1024 ** 4, '2048.0 TiB'),
                                          (-4194304, '-4.0 MiB')])
def test_human_bytes(number, text):
    assert _ksm.human_bytes(number) == text


# --- the unmerge plan (ksm_unmerge): plan_unmerge, then execute ------------------------------------------

def budget_of(mem_available, margin='0'):
    return _ksm.UnmergeBudget(margin, {'MemTotal': 8 * GIB, 'MemAvailable': mem_available, 'SwapFree': 0})


@pytest.fixture
def page(monkeypatch):
    monkeypatch.setattr(_ksm, 'page_size', lambda: PAGE)


def test_plan_unmerge_carries_the_memory_verdict(page):
    fake, ksm = kernel(run=1)
    fake.share(pages_shared=10, pages_sharing=262144)          # 1 GiB of copies
    plan = ksm.plan_unmerge(2, budget_of(4 * GIB))
    assert plan.changed and plan.unmerge and plan.writes == [('run', 2)]
    assert plan.memory.ok and plan.memory.needed == GIB and plan.memory.budget.budget == 4 * GIB
    refused = ksm.plan_unmerge(2, budget_of(GIB // 2))
    assert not refused.memory.ok and refused.memory.needed == GIB
    assert 'Refusing to unmerge' in refused.memory.error.msg
    assert refused.memory.error.details == {'needed_bytes': GIB, 'budget_bytes': GIB // 2}
    assert fake.writes == []


def test_plan_unmerge_with_nothing_shared_needs_no_memory(page):
    fake, ksm = kernel(run=1)
    plan = ksm.plan_unmerge(2, budget_of(0, margin='1G'))      # a negative budget
    assert plan.changed and plan.unmerge and plan.memory.ok and plan.memory.needed == 0


@pytest.mark.parametrize('run, wanted_run', [(0, 2), (2, 2), (1, 1)])
def test_plan_unmerge_in_place(page, run, wanted_run):
    fake, ksm = kernel(run=run)
    plan = ksm.plan_unmerge(wanted_run, budget_of(GIB))
    assert not plan.changed and plan.run_after == run and plan.predicted == plan.state
    assert ksm.execute(plan).changed is False and fake.writes == []


def test_plan_unmerge_without_ksm():
    fake, ksm = kernel(preset='absent')
    plan = ksm.plan_unmerge(2, budget_of(GIB))
    assert not plan.available and not plan.changed and plan.memory.needed == 0
    assert 'no KSM' in error_of(ksm.plan_unmerge, 1, budget_of(GIB)).msg


def test_execute_refuses_an_unmerge_that_does_not_fit_unless_overridden(page):
    fake, ksm = kernel(run=1)
    fake.share(pages_shared=10, pages_sharing=262144)
    plan = ksm.plan_unmerge(2, budget_of(GIB // 2))
    assert error_of(ksm.execute, plan) is plan.memory.error
    assert fake.writes == [] and plan.outcome is None
    plan.memory.override()
    outcome = ksm.execute(plan)
    assert outcome is plan.outcome and outcome.changed and outcome.unmerged
    assert fake.values['run'] == 2 and fake.values['pages_sharing'] == 0


def test_execute_unmerge_then_ksmd_running(page, tmp_path, monkeypatch):
    meminfo = tmp_path / 'meminfo'
    meminfo.write_text('MemTotal:  1048576 kB\nMemAvailable:  524288 kB\n')
    monkeypatch.setattr(_ksm, 'MEMINFO', str(meminfo))
    fake, ksm = kernel(run=1)
    fake.share(pages_shared=10, pages_sharing=90, ksm_zero_pages=4)
    plan = ksm.plan_unmerge(1, budget_of(GIB))
    assert plan.writes == [('run', 2), ('run', 1)] and plan.predicted['run'] == 1
    outcome = ksm.execute(plan)
    assert fake.successful_writes() == [('run', '2'), ('run', '1')]
    assert (outcome.changed, outcome.unmerged, outcome.pages, outcome.bytes) == (True, True, 94, 94 * PAGE)
    assert outcome.run_after == 1 and outcome.after['run'] == 1 and _ksm.sharing_left(outcome.after) == []
    assert outcome.duration >= 0 and outcome.meminfo_after['MemAvailable'] == 512 * 1024 ** 2


def test_execute_unmerge_names_an_unreadable_meminfo_afterwards(page, tmp_path, monkeypatch):
    monkeypatch.setattr(_ksm, 'MEMINFO', str(tmp_path / 'nothing'))
    fake, ksm = kernel(run=1)
    fake.share(pages_shared=1, pages_sharing=2)
    outcome = ksm.execute(ksm.plan_unmerge(2, budget_of(GIB)))
    assert outcome.changed and outcome.meminfo_after is None
    assert outcome.meminfo_error.startswith('Cannot read the memory figures of the host after the unmerge: ')


def test_execute_unmerge_half_done_reports_what_the_kernel_left(page):
    fake, ksm = kernel(run=1)
    fake.share(pages_shared=10, pages_sharing=90)
    fake.unmerge_error = errno.ENOMEM
    plan = ksm.plan_unmerge(1, budget_of(GIB))
    err = error_of(ksm.execute, plan)
    assert 'ran out of memory' in err.msg and 'Read back afterwards: run=0' in err.msg
    outcome = plan.outcome
    assert outcome.changed is True and outcome.unmerged is False   # the kernel put run from 1 to 0
    assert outcome.run_after == 0 and outcome.pages == 0 and outcome.duration == 0.0
    assert fake.successful_writes() == []                          # ksmd not started again


def test_execute_unmerge_refused_run_1_after_the_unmerge(page):
    fake, ksm = kernel(run=1)
    fake.share(pages_shared=10, pages_sharing=90)

    def refuse_run_1(kernel_, name, data):
        if name == 'run' and data == '2':
            kernel_.inject('run', errno.EPERM)

    fake.after_write = refuse_run_1
    plan = ksm.plan_unmerge(1, budget_of(GIB))
    err = error_of(ksm.execute, plan)
    assert err.msg.endswith('Everything was unmerged; ksmd is left stopped (run=2).')
    outcome = plan.outcome
    assert outcome.changed and outcome.unmerged and outcome.pages == 90 and outcome.run_after == 2


def test_execute_unmerge_refused_by_the_kernel_is_no_change(page, monkeypatch):
    fake, ksm = kernel(mode='unprivileged', run=1)
    fake.share(pages_shared=1, pages_sharing=2)
    monkeypatch.setattr(_ksm.os, 'geteuid', lambda: 1000)
    plan = ksm.plan_unmerge(2, budget_of(GIB))
    assert 'become' in error_of(ksm.execute, plan).msg
    assert (plan.outcome.changed, plan.outcome.pages, plan.outcome.run_after) == (False, 0, 1)


# --- NUMA ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize('text, nodes', [('0-1,4\n', [0, 1, 4]), ('0\n', [0]), ('', []), ('\n', []),
                                         ('2,0-1', [0, 1, 2]), ('0-3,2-5', [0, 1, 2, 3, 4, 5])])
def test_parse_cpulist(text, nodes):
    assert _ksm.parse_cpulist(text) == nodes


def test_numa_nodes_with_memory(tmp_path):
    (tmp_path / 'has_memory').write_text('0-1\n')
    (tmp_path / 'has_normal_memory').write_text('0\n')
    assert _ksm.numa_nodes_with_memory(str(tmp_path)) == [0, 1]


def test_numa_nodes_falls_back_to_normal_memory(tmp_path):
    (tmp_path / 'has_normal_memory').write_text('0,2\n')
    assert _ksm.numa_nodes_with_memory(str(tmp_path)) == [0, 2]


def test_numa_nodes_without_numa(tmp_path):
    assert _ksm.numa_nodes_with_memory(str(tmp_path / 'missing')) == [0]
    (tmp_path / 'has_memory').write_text('\n')
    assert _ksm.numa_nodes_with_memory(str(tmp_path)) == [0]


def test_numa_nodes_unreadable_list_means_one_node(tmp_path):
    (tmp_path / 'has_memory').write_text('garbage\n')
    assert _ksm.numa_nodes_with_memory(str(tmp_path)) == [0]


@pytest.mark.parametrize('policy, nodes, value', [
    ('auto', [0], 1), ('auto', [0, 1], 0), ('always', [0, 1], 1), ('never', [0], 0), ('auto', [], 1),
])
def test_merge_across_nodes_for(policy, nodes, value):
    assert _ksm.merge_across_nodes_for(policy, nodes) == value


def test_merge_across_nodes_for_refuses_unknown_policy():
    err = error_of(_ksm.merge_across_nodes_for, 'sometimes', [0])
    assert "'sometimes'" in err.msg and 'auto, always or never' in err.msg


# --- processes (their figures are read by _ksm_audit.scan: tests/unit/plugins/module_utils/test_ksm_audit.py) ---

@pytest.mark.parametrize('files, found', [
    (('ksm_stat', 'ksm_merging_pages'), ['ksm_stat', 'ksm_merging_pages']),   # 6.1+
    (('ksm_merging_pages',), ['ksm_merging_pages']),                        # 5.19-6.0
    ((), []),                                                               # older
])
def test_per_process_files(tmp_path, files, found):
    (tmp_path / 'self').mkdir()
    for name in files:
        (tmp_path / 'self' / name).write_text('')
    assert _ksm.per_process_files(str(tmp_path)) == found
