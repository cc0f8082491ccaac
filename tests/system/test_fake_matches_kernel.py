# -*- coding: utf-8 -*-
# Copyright: (c) 2026, samepage.ksm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The fake kernel of the unit tests answers like this machine's real /sys/kernel/mm/ksm.

Every case is a short sequence of raw writes, made through _ksm.SysfsIO to the real files and to a
FakeKsmKernel started from the same values; after each write the errno (or success) and the text of
every writable file must be the same on both. The `ksm_host` fixture holds the host lock and puts
every value back afterwards (tests/support/ksm_host.py).
"""

import errno

import pytest

from ansible_collections.samepage.ksm.plugins.module_utils import _ksm
from ansible_collections.samepage.ksm.tests.support.merge_workload import MergeableWorkload
from ansible_collections.samepage.ksm.tests.unit.fakes.kernel import PRESETS, WRITABLE, FakeKsmKernel

BIG = '1' * 5000    # more than a page: the kernel parses the first 4096 bytes, SysfsIO sees a short write

# (id, [(file, data), ...]). Writes that would start ksmd (run=1) are left to the workload test.
CASES = [
    ('run', [('run', '0'), ('run', '+0'), ('run', '00'), ('run', '0\n'), ('run', '3'), ('run', '-1'),
             ('run', '1.5'), ('run', ' 0'), ('run', '0 '), ('run', '\n'), ('run', ''), ('run', '0x0'),
             ('run', '4294967296'), ('run', '4294967298'), ('run', 'abc')]),
    ('run-2-twice-then-0', [('run', '2'), ('run', '2\n'), ('run', '0')]),
    ('pages_to_scan', [('pages_to_scan', '0'), ('pages_to_scan', '+5'), ('pages_to_scan', '010'),
                       ('pages_to_scan', '-1'), ('pages_to_scan', '0x10'), ('pages_to_scan', '1.5'),
                       ('pages_to_scan', ' 5'), ('pages_to_scan', '5 '), ('pages_to_scan', '\n'),
                       ('pages_to_scan', '7\n'), ('pages_to_scan', '7\n\n'), ('pages_to_scan', '4294967295'),
                       ('pages_to_scan', '4294967296'), ('pages_to_scan', '99999999999999999999'),
                       ('pages_to_scan', 'abc'), ('pages_to_scan', ''), ('pages_to_scan', '+'),
                       ('pages_to_scan', '123'), ('pages_to_scan', BIG), ('pages_to_scan', '0' * 4096 + '7'),
                       ('pages_to_scan', '0' * 4095 + '7\n'), ('pages_to_scan', '8\x00' + 'x' * 5000), ('pages_to_scan', '30\x00junk'),
                       ('pages_to_scan', '100')]),
    ('sleep_millisecs', [('sleep_millisecs', '0'), ('sleep_millisecs', '-0'), ('sleep_millisecs', '+20'),
                         ('sleep_millisecs', '4294967296'), ('sleep_millisecs', '25ms'),
                         ('sleep_millisecs', '4294967295'), ('sleep_millisecs', '20')]),
    ('stable_node_chains_prune_millisecs', [
        ('stable_node_chains_prune_millisecs', '0'), ('stable_node_chains_prune_millisecs', '-5'),
        ('stable_node_chains_prune_millisecs', '0x10'), ('stable_node_chains_prune_millisecs', '2001\n')]),
    ('merge_across_nodes', [('merge_across_nodes', '1'), ('merge_across_nodes', '2'),
                            ('merge_across_nodes', '-1'), ('merge_across_nodes', '+1'),
                            ('merge_across_nodes', '01'), ('merge_across_nodes', '0x1'),
                            ('merge_across_nodes', '18446744073709551615'),
                            ('merge_across_nodes', '18446744073709551616'),
                            ('merge_across_nodes', 'abc'), ('merge_across_nodes', '0'),
                            ('merge_across_nodes', '0'), ('merge_across_nodes', '1\n')]),
    ('max_page_sharing', [('max_page_sharing', '1'), ('max_page_sharing', '0'), ('max_page_sharing', '-1'),
                          ('max_page_sharing', '-2147483648'), ('max_page_sharing', '-2147483649'),
                          ('max_page_sharing', '2147483648'), ('max_page_sharing', '9223372036854775808'),
                          ('max_page_sharing', '18446744073709551616'), ('max_page_sharing', '-+5'),
                          ('max_page_sharing', '+300'), ('max_page_sharing', '2147483647'),
                          ('max_page_sharing', 'abc'), ('max_page_sharing', '2'), ('max_page_sharing', '256\n')]),
    ('use_zero_pages', [('use_zero_pages', '1'), ('use_zero_pages', '2'), ('use_zero_pages', 'no'),
                        ('use_zero_pages', 'yes'), ('use_zero_pages', 'false'), ('use_zero_pages', 'True'),
                        ('use_zero_pages', 'of'), ('use_zero_pages', 'oN'), ('use_zero_pages', 'o'),
                        ('use_zero_pages', '-1'), ('use_zero_pages', '+5'), ('use_zero_pages', 'abc'),
                        ('use_zero_pages', '5\n'), ('use_zero_pages', '010'), ('use_zero_pages', 'none'),
                        ('use_zero_pages', '18446744073709551616'), ('use_zero_pages', ' 1'),
                        ('use_zero_pages', '0')]),
    ('smart_scan', [('smart_scan', '0'), ('smart_scan', 'ON'), ('smart_scan', 'off'), ('smart_scan', 'Y'),
                    ('smart_scan', '2'), ('smart_scan', '1\n')]),
    ('advisor_mode', [('advisor_mode', 'none'), ('advisor_mode', 'SCAN-TIME'), ('advisor_mode', ' none'),
                      ('advisor_mode', 'none '), ('advisor_mode', 'none\n\n'), ('advisor_mode', 'scan'),
                      ('advisor_mode', '[none]'), ('advisor_mode', 'none\n')]),
    ('advisor-resets-pages_to_scan', [
        ('pages_to_scan', '1234'), ('advisor_min_pages_to_scan', '700'), ('advisor_mode', 'scan-time'),
        ('advisor_mode', 'scan-time\n'), ('pages_to_scan', '200'), ('pages_to_scan', 'abc'),
        ('pages_to_scan', '700'), ('advisor_min_pages_to_scan', '800'), ('advisor_mode', 'none'),
        ('pages_to_scan', '1234'), ('advisor_mode', 'none')]),
    ('advisor_max_cpu', [('advisor_max_cpu', '0'), ('advisor_max_cpu', '4294967296'),
                         ('advisor_max_cpu', '4294967366'), ('advisor_max_cpu', '18446744073709551615'),
                         ('advisor_max_cpu', '18446744073709551616'), ('advisor_max_cpu', '-1'),
                         ('advisor_max_cpu', '+150'), ('advisor_max_cpu', '70')]),
    ('advisor_pages', [('advisor_min_pages_to_scan', '0'), ('advisor_min_pages_to_scan', '18446744073709551615'),
                       ('advisor_min_pages_to_scan', '18446744073709551616'),
                       ('advisor_min_pages_to_scan', '-1'), ('advisor_max_pages_to_scan', '0'),
                       ('advisor_max_pages_to_scan', 'abc'), ('advisor_max_pages_to_scan', '+31000')]),
    ('advisor_target_scan_time', [('advisor_target_scan_time', '0'), ('advisor_target_scan_time', '1'),
                                  ('advisor_target_scan_time', '-1'), ('advisor_target_scan_time', '+200'),
                                  ('advisor_target_scan_time', '18446744073709551615'),
                                  ('advisor_target_scan_time', '18446744073709551616')]),
    ('not-writable', [('pages_shared', '0'), ('full_scans', ''), ('general_profit', '1'),
                      ('no_such_knob', '1'), ('no_such_knob', '')]),
]


def _outcome(io, name, data):
    try:
        io.write(name, data)
    except OSError as err:
        return errno.errorcode.get(err.errno, err.errno)
    return 'ok'


def _texts(io, names):
    return {name: io.read(name) for name in names}


def _preset(names):
    for preset in ('6.18', '6.1', 'no-numa', '4.x'):
        if set(PRESETS[preset]) == set(names):
            return preset
    return None


def _fake_like(real_io, preset):
    """A fake kernel with the real one's current writable values (and nothing shared)."""
    state = _ksm.Ksm(real_io).read_state()
    values = {name: int(state[name]) if isinstance(state[name], bool) else state[name]
              for name in PRESETS[preset] if name in WRITABLE}
    return FakeKsmKernel(preset, **values)


@pytest.fixture
def real(ksm_host):
    io = _ksm.SysfsIO()
    preset = _preset(io.names())
    if preset is None:
        pytest.skip('this kernel has a KSM file set no fake preset models: %s' % ', '.join(io.names()))
    state = ksm_host.state()
    if any(state.get(name) for name in ('pages_shared', 'pages_sharing', 'ksm_zero_pages')) or state['run'] != 0:
        pytest.skip('KSM is running or pages are shared on this host; the table needs a stopped KSM')
    return io, preset, ksm_host


@pytest.mark.parametrize('steps', [case[1] for case in CASES], ids=[case[0] for case in CASES])
def test_fake_answers_like_the_kernel(real, steps):
    io, preset, dummy = real
    # knobs this generation lacks are left out (writing them is covered by 'not-writable')
    steps = [(name, data) for name, data in steps if name in PRESETS[preset] or name not in WRITABLE]
    fake = _fake_like(io, preset)
    watched = sorted(name for name in PRESETS[preset] if name in WRITABLE)
    for name, data in steps:
        got_real = _outcome(io, name, data)
        got_fake = _outcome(fake, name, data)
        assert (name, data[:40], got_fake) == (name, data[:40], got_real)
        assert _texts(fake, watched) == _texts(io, watched), 'after writing %r to %s' % (data[:40], name)
    if any(name == 'run' and data.startswith('2') for name, data in steps):
        assert int(io.read('full_scans')) == 0   # run=2 resets full_scans, as the fake does


def test_fake_refuses_busy_knobs_like_the_kernel(real):
    """With real KSM pages shared, merge_across_nodes and max_page_sharing changes are EBUSY in both."""
    io, preset, host = real
    if 'max_page_sharing' not in PRESETS[preset]:
        pytest.skip('kernel without max_page_sharing')
    host.set(pages_to_scan=5000, sleep_millisecs=10, run=1)
    with MergeableWorkload(mib=16) as workload:
        counters = workload.wait_for_sharing(1, timeout=180)
        fake = _fake_like(io, preset)
        fake.share(counters['pages_shared'], counters['pages_sharing'])
        other_sharing = str(host.snapshot['max_page_sharing'] + 1)
        steps = [('max_page_sharing', other_sharing), ('max_page_sharing', str(host.snapshot['max_page_sharing'])),
                 ('run', '1')]
        if 'merge_across_nodes' in PRESETS[preset]:
            steps += [('merge_across_nodes', str(1 - host.snapshot['merge_across_nodes'])),
                      ('merge_across_nodes', str(host.snapshot['merge_across_nodes']))]
        steps += [('run', '2'), ('max_page_sharing', other_sharing)]
        watched = sorted(name for name in PRESETS[preset] if name in WRITABLE)
        outcomes = []
        for name, data in steps:
            got_real = _outcome(io, name, data)
            got_fake = _outcome(fake, name, data)
            assert (name, data, got_fake) == (name, data, got_real)
            assert _texts(fake, watched) == _texts(io, watched), 'after writing %r to %s' % (data, name)
            outcomes.append(got_real)
        assert outcomes[0] == 'EBUSY' and outcomes[-1] == 'ok'
        assert int(io.read('pages_shared')) == 0 and int(fake.read('pages_shared')) == 0
