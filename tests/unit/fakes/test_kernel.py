# -*- coding: utf-8 -*-
# Copyright: (c) 2026, samepage.ksm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The fake kernel itself. Its agreement with the real kernel is checked by
tests/system/test_fake_matches_kernel.py on a host with KSM; these tests pin the rules down where no
real kernel is at hand (and the generations and failure modes this machine cannot show)."""

import errno

import pytest

from ansible_collections.samepage.ksm.tests.unit.fakes import kernel
from ansible_collections.samepage.ksm.tests.unit.fakes.kernel import FakeKsmKernel


def outcome(fake, name, data):
    try:
        fake.write(name, data)
    except OSError as err:
        return errno.errorcode[err.errno]
    return fake.read(name)


# --- the parse helpers of lib/kstrtox.c --------------------------------------------------------------

@pytest.mark.parametrize('text, expected', [
    ('0', 0), ('+5', 5), ('010', 10), ('7\n', 7), ('4294967295', 4294967295),
    ('-1', -errno.EINVAL), ('abc', -errno.EINVAL), ('0x10', -errno.EINVAL), ('1.5', -errno.EINVAL),
    (' 5', -errno.EINVAL), ('5 ', -errno.EINVAL), ('\n', -errno.EINVAL), ('', -errno.EINVAL),
    ('+', -errno.EINVAL), ('7\n\n', -errno.EINVAL), ('++5', -errno.EINVAL),
    ('4294967296', -errno.ERANGE), ('18446744073709551616', -errno.ERANGE),
    ('99999999999999999999x', -errno.ERANGE),
])
def test_kstrtouint(text, expected):
    assert kernel.kstrtouint(text) == expected


@pytest.mark.parametrize('text, expected', [
    ('18446744073709551615', 18446744073709551615), ('18446744073709551616', -errno.ERANGE),
    ('4294967296', 4294967296), ('-0', -errno.EINVAL),
])
def test_kstrtoul(text, expected):
    assert kernel.kstrtoul(text) == expected


@pytest.mark.parametrize('text, expected', [
    ('2', (True, 2)), ('-5', (True, -5)), ('+300', (True, 300)), ('-0', (True, 0)),
    ('2147483647', (True, 2147483647)), ('-2147483648', (True, -2147483648)),
    ('2147483648', (False, -errno.ERANGE)), ('-2147483649', (False, -errno.ERANGE)),
    ('9223372036854775808', (False, -errno.ERANGE)), ('18446744073709551616', (False, -errno.ERANGE)),
    ('-+5', (False, -errno.EINVAL)), ('abc', (False, -errno.EINVAL)), ('--1', (False, -errno.EINVAL)),
])
def test_kstrtoint(text, expected):
    assert kernel.kstrtoint(text) == expected


@pytest.mark.parametrize('text, expected', [
    ('1', True), ('y', True), ('Yes', True), ('t', True), ('True', True), ('on', True), ('ON', True),
    ('18446744073709551616', True), ('0', False), ('no', False), ('f', False), ('off', False), ('of', False),
    ('010', False), ('none', False), ('2', None), ('-1', None), ('+5', None), ('abc', None), ('5\n', None),
    ('o', None), ('', None), (' 1', None),
])
def test_kstrtobool(text, expected):
    assert kernel.kstrtobool(text) is expected


@pytest.mark.parametrize('text, expected', [
    ('none', True), ('none\n', True), ('none\n\n', False), (' none', False), ('none ', False), ('NONE', False),
    ('non', False), ('', False),
])
def test_sysfs_streq(text, expected):
    assert kernel.sysfs_streq('none', text) is expected


# --- generations and modes -------------------------------------------------------------------------

@pytest.mark.parametrize('preset, count', [('6.18', 24), ('6.12', 24), ('6.1', 14), ('4.x', 9), ('no-numa', 23)])
def test_presets_have_the_files_of_their_generation(preset, count):
    fake = FakeKsmKernel(preset)
    assert fake.available() is True
    assert len(fake.names()) == count
    assert fake.names() == sorted(fake.names())


def test_debian_12_kernel_lacks_the_newer_files():
    fake = FakeKsmKernel('6.1')
    for name in ('advisor_mode', 'advisor_max_cpu', 'smart_scan', 'general_profit', 'ksm_zero_pages',
                 'pages_scanned', 'pages_skipped'):
        assert not fake.exists(name)
    assert fake.exists('use_zero_pages') and fake.exists('max_page_sharing')
    assert outcome(fake, 'smart_scan', '1') == 'ENOENT'
    # without an advisor, pages_to_scan is always writable
    assert outcome(fake, 'pages_to_scan', '300') == '300\n'


def test_old_kernel_and_no_numa():
    old = FakeKsmKernel('4.x')
    assert not old.exists('max_page_sharing') and not old.exists('use_zero_pages')
    assert old.exists('merge_across_nodes')
    no_numa = FakeKsmKernel('no-numa')
    assert not no_numa.exists('merge_across_nodes') and no_numa.exists('advisor_mode')
    assert outcome(no_numa, 'merge_across_nodes', '0') == 'ENOENT'


def test_absent_directory():
    fake = FakeKsmKernel('absent')
    assert fake.available() is False
    assert fake.exists('run') is False
    for call in (fake.names, lambda: fake.read('run'), lambda: fake.write('run', '1')):
        with pytest.raises(OSError) as caught:
            call()
        assert caught.value.errno == errno.ENOENT
    assert fake.writes == []


@pytest.mark.parametrize('mode, code', [('readonly', 'EROFS'), ('unprivileged', 'EACCES')])
def test_modes_refuse_every_write_but_read(mode, code):
    fake = FakeKsmKernel(mode=mode)
    for name in ('run', 'pages_to_scan', 'advisor_mode', 'pages_shared'):
        assert outcome(fake, name, '') == code
    assert fake.read('run') == '0\n'
    assert fake.writes == []
    assert outcome(fake, 'no_such_knob', '1') == 'ENOENT'


def test_unknown_preset_mode_or_value_is_a_test_error():
    with pytest.raises(ValueError):
        FakeKsmKernel('5.99')
    with pytest.raises(ValueError):
        FakeKsmKernel(mode='root')
    with pytest.raises(ValueError):
        FakeKsmKernel('6.1', advisor_mode='none')


# --- reads, writes, the log ------------------------------------------------------------------------

def test_reads_are_value_and_newline():
    fake = FakeKsmKernel(advisor_mode='scan-time', pages_to_scan=500, general_profit=-4194304)
    assert fake.read('pages_to_scan') == '500\n'
    assert fake.read('advisor_mode') == 'none [scan-time]\n'
    assert fake.read('general_profit') == '-4194304\n'
    assert FakeKsmKernel().read('advisor_mode') == '[none] scan-time\n'
    with pytest.raises(OSError) as caught:
        fake.read('nope')
    assert caught.value.errno == errno.ENOENT


def test_counters_and_missing_names():
    fake = FakeKsmKernel()
    assert outcome(fake, 'pages_shared', '0') == 'EACCES'       # read-only file, root
    assert outcome(fake, 'nope', '0') == 'ENOENT'               # open(O_WRONLY) without O_CREAT
    assert fake.writes == []


def test_zero_length_write_changes_nothing():
    fake = FakeKsmKernel(advisor_mode='scan-time')
    before = fake.snapshot()
    assert fake.write('pages_to_scan', '') == 0    # not even EINVAL under scan-time: no store call
    assert fake.write('run', b'') == 0
    assert fake.snapshot() == before
    assert fake.writes == [('pages_to_scan', ''), ('run', '')]
    assert fake.failures == []


def test_write_log_records_order_and_failures():
    fake = FakeKsmKernel()
    fake.write('sleep_millisecs', '30')
    with pytest.raises(OSError):
        fake.write('max_page_sharing', '1')
    fake.write('run', b'1\n')
    assert fake.writes == [('sleep_millisecs', '30'), ('max_page_sharing', '1'), ('run', '1\n')]
    assert fake.failures == [('max_page_sharing', '1', errno.EINVAL)]
    assert fake.successful_writes() == [('sleep_millisecs', '30'), ('run', '1\n')]


def test_more_than_a_page_is_cut_and_reported_as_a_short_write():
    fake = FakeKsmKernel()
    with pytest.raises(OSError) as caught:
        fake.write('pages_to_scan', '0' * 4096 + '7')
    assert caught.value.errno == errno.EIO
    assert fake.read('pages_to_scan') == '0\n'
    assert outcome(fake, 'pages_to_scan', '1' * 5000) == 'EINVAL'
    assert outcome(fake, 'pages_to_scan', '9\x00junk') == '9\n'


def test_non_ascii_is_refused_before_the_kernel_sees_it():
    fake = FakeKsmKernel()
    with pytest.raises(UnicodeEncodeError):
        fake.write('pages_to_scan', '\u0661\u0660')
    assert fake.writes == []


def test_inject_fails_the_next_writes_only():
    fake = FakeKsmKernel()
    fake.inject('merge_across_nodes', errno.ENOMEM, times=2)
    assert outcome(fake, 'merge_across_nodes', '0') == 'ENOMEM'
    assert outcome(fake, 'merge_across_nodes', '0') == 'ENOMEM'
    assert outcome(fake, 'merge_across_nodes', '0') == '0\n'


# --- store rules of mm/ksm.c -----------------------------------------------------------------------

@pytest.mark.parametrize('name, data, expected', [
    ('run', '0', '0\n'), ('run', '1', '1\n'), ('run', '+1\n', '1\n'), ('run', '3', 'EINVAL'),
    ('run', '-1', 'EINVAL'), ('run', '4294967296', 'EINVAL'),
    ('pages_to_scan', '0', '0\n'), ('pages_to_scan', '010', '10\n'), ('pages_to_scan', '0x10', 'EINVAL'),
    ('pages_to_scan', '4294967296', 'EINVAL'),
    ('sleep_millisecs', '4294967295', '4294967295\n'), ('sleep_millisecs', '1.5', 'EINVAL'),
    ('stable_node_chains_prune_millisecs', '0', '0\n'), ('stable_node_chains_prune_millisecs', '-1', 'EINVAL'),
    ('merge_across_nodes', '0', '0\n'), ('merge_across_nodes', '2', 'EINVAL'),
    ('merge_across_nodes', '18446744073709551615', 'EINVAL'),
    ('merge_across_nodes', '18446744073709551616', 'ERANGE'), ('merge_across_nodes', 'x', 'EINVAL'),
    ('max_page_sharing', '2', '2\n'), ('max_page_sharing', '1', 'EINVAL'), ('max_page_sharing', '-7', 'EINVAL'),
    ('max_page_sharing', '2147483648', 'ERANGE'), ('max_page_sharing', '-2147483649', 'ERANGE'),
    ('max_page_sharing', 'abc', 'EINVAL'),
    ('use_zero_pages', 'yes', '1\n'), ('use_zero_pages', '010', '0\n'), ('use_zero_pages', '2', 'EINVAL'),
    ('smart_scan', 'off', '0\n'), ('smart_scan', '5\n', 'EINVAL'),
    ('advisor_mode', 'scan-time\n', 'none [scan-time]\n'), ('advisor_mode', 'SCAN-TIME', 'EINVAL'),
    ('advisor_max_cpu', '4294967296', '0\n'), ('advisor_max_cpu', '4294967366', '70\n'),
    ('advisor_max_cpu', '18446744073709551616', 'EINVAL'), ('advisor_max_cpu', '-1', 'EINVAL'),
    ('advisor_min_pages_to_scan', '18446744073709551615', '18446744073709551615\n'),
    ('advisor_max_pages_to_scan', '-1', 'EINVAL'),
    ('advisor_target_scan_time', '0', 'EINVAL'), ('advisor_target_scan_time', '1', '1\n'),
])
def test_store_rules(name, data, expected):
    assert outcome(FakeKsmKernel(), name, data) == expected


def test_run_2_unmerges_synchronously_and_only_once():
    fake = FakeKsmKernel(run=1, full_scans=12, pages_unshared=40)
    fake.share(pages_shared=10, pages_sharing=90, ksm_zero_pages=5)
    assert fake.read('general_profit') == '%d\n' % (95 * 4096)
    fake.write('run', '2')
    values = fake.snapshot()
    assert values['run'] == 2 and fake.unmerges == 1
    for counter in ('pages_shared', 'pages_sharing', 'ksm_zero_pages', 'full_scans', 'general_profit',
                    'pages_unshared'):
        assert values[counter] == 0, counter
    fake.write('run', '2')          # the value in effect: no second unmerge
    assert fake.unmerges == 1
    fake.write('run', '0')
    fake.write('run', '2')          # 0 then 2 forces one
    assert fake.unmerges == 2


@pytest.mark.parametrize('code', [errno.ENOMEM, errno.EINTR])
def test_failed_unmerge_sets_run_0_and_leaves_counters(code):
    fake = FakeKsmKernel(run=1)
    fake.share(pages_shared=10, pages_sharing=90)
    fake.unmerge_error = code
    with pytest.raises(OSError) as caught:
        fake.write('run', '2')
    assert caught.value.errno == code
    assert fake.read('run') == '0\n'
    assert fake.read('pages_shared') == '10\n' and fake.read('pages_sharing') == '90\n'
    assert fake.unmerges == 0


@pytest.mark.parametrize('name, other', [('merge_across_nodes', '0'), ('max_page_sharing', '512')])
def test_busy_knobs_while_pages_are_shared(name, other):
    fake = FakeKsmKernel(run=1)
    current = fake.read(name).strip()
    fake.share(pages_shared=1, pages_sharing=3)
    assert outcome(fake, name, other) == 'EBUSY'
    assert outcome(fake, name, current) == current + '\n'        # the same value always succeeds
    fake.share(0, 0, ksm_zero_pages=50)                          # zero-page merges do not block
    assert outcome(fake, name, other) == other + '\n'


@pytest.mark.parametrize('name, other', [('merge_across_nodes', '0'), ('max_page_sharing', '512')])
def test_stale_stable_nodes_are_busy_until_run_2(name, other):
    fake = FakeKsmKernel()
    fake.stale_stable_nodes = True
    assert outcome(fake, name, other) == 'EBUSY'
    fake.write('run', '2')
    assert fake.stale_stable_nodes is False
    assert outcome(fake, name, other) == other + '\n'


def test_pages_to_scan_belongs_to_the_advisor_under_scan_time():
    fake = FakeKsmKernel(advisor_min_pages_to_scan=700, pages_to_scan=1234)
    fake.write('advisor_mode', 'scan-time')
    assert fake.read('pages_to_scan') == '700\n'            # reset on entering scan-time
    assert outcome(fake, 'pages_to_scan', '200') == 'EINVAL'
    assert outcome(fake, 'pages_to_scan', 'abc') == 'EINVAL'
    assert outcome(fake, 'pages_to_scan', '700') == 'EINVAL'   # even the value it has
    fake.values['pages_to_scan'] = 4321                      # as the advisor would tune it
    fake.write('advisor_mode', 'scan-time')                  # rewriting the mode: no reset
    assert fake.read('pages_to_scan') == '4321\n'
    fake.write('advisor_mode', 'none')
    assert fake.read('pages_to_scan') == '100\n'            # back to the kernel default
    fake.write('advisor_mode', 'none\n')
    fake.write('pages_to_scan', '1234')
    fake.write('advisor_mode', 'none')
    assert fake.read('pages_to_scan') == '1234\n'


def test_settings_lists_only_writable_knobs():
    settings = FakeKsmKernel('6.1').settings()
    assert sorted(settings) == ['max_page_sharing', 'merge_across_nodes', 'pages_to_scan', 'run', 'sleep_millisecs',
                                'stable_node_chains_prune_millisecs', 'use_zero_pages']
    assert settings['pages_to_scan'] == 100


def test_after_write_runs_after_successful_writes_only():
    fake = FakeKsmKernel()
    seen = []
    fake.after_write = lambda kernel_, name, data: seen.append((name, data, kernel_.read(name)))
    fake.write('sleep_millisecs', '30')
    with pytest.raises(OSError):
        fake.write('run', '7')
    assert seen == [('sleep_millisecs', '30', '30\n')]
