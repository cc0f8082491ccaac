# -*- coding: utf-8 -*-
# Copyright: (c) 2026, samepage.ksm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The tuner's configuration, policy and daemon core, against the fake kernel and a simulated ksmd
(tests/unit/fakes/ksmd_sim.py). The real kernel: tests/system/test_ksm_tuner.py."""

import errno
import io
import json
import os
import signal

import pytest

from ansible_collections.samepage.ksm.plugins.module_utils import _ksm
from ansible_collections.samepage.ksm.plugins.module_utils import _ksm_tuner as tuner_mod
from ansible_collections.samepage.ksm.tests.unit.fakes.kernel import FakeKsmKernel
from ansible_collections.samepage.ksm.tests.unit.fakes.ksmd_sim import KsmdSim, Region, drive

# ---------------------------------------------------------------------------------------------------
# Configuration

VALID = {
    'cpu_budget': ('10', 10), 'budget_window': ('120', 120), 'fast_pages_to_scan': ('5000', 5000),
    'fast_sleep_millisecs': ('10', 10), 'idle_pages_to_scan': ('200', 200), 'idle_sleep_millisecs': ('500', 500),
    'idle_cpu_limit': ('0.25', 0.25), 'gain_threshold': ('0', 0), 'process_poll_seconds': ('0', 0),
    'pressure_gate': ('20', 20), 'log_level': ('debug', 'debug'),
}
OUT_OF_RANGE = {
    'cpu_budget': ['0', '0.05', '100.5', '101'], 'budget_window': ['9', '3601', '0'],
    'fast_pages_to_scan': ['0', '100001'], 'fast_sleep_millisecs': ['1001'],
    'idle_pages_to_scan': ['0', '100001'], 'idle_sleep_millisecs': ['0', '60001'],
    'idle_cpu_limit': ['0', '100.1'], 'gain_threshold': ['1000000001'], 'process_poll_seconds': ['0.4', '61'],
    'pressure_gate': ['100', '-1'], 'log_level': ['verbose', 'INFO', ''],
}
HOSTILE = ['-5', '1.5e3', '0x10', '1_000', ' ', '', '\u0661\u0662', '\uff11\uff12', '12abc', 'nan', 'inf',
           '9' * 400, '+5', '5 5', '1,5']


def test_schema_is_complete_and_defaults_are_valid():
    assert set(VALID) == set(tuner_mod.SETTINGS) == set(OUT_OF_RANGE)
    assert tuner_mod.validate(dict(tuner_mod.DEFAULTS)) == tuner_mod.DEFAULTS
    for setting in tuner_mod.SCHEMA:
        assert setting.description and setting.rule()


@pytest.mark.parametrize('key', sorted(VALID))
def test_every_key_valid_as_text_value_and_file(key):
    text, value = VALID[key]
    assert tuner_mod.parse_value(key, text) == value
    assert tuner_mod.validate({key: value}) == {key: value}
    assert tuner_mod.validate({key: text}) == {key: value}
    parsed = tuner_mod.parse_config('[tuner]\n# a comment\n%s = %s\n' % (key, text), 'tuner.conf')
    assert parsed == {key: value}
    # render() writes a file that parses back to the same settings
    assert tuner_mod.parse_config(tuner_mod.render({key: value})) == {key: value}


@pytest.mark.parametrize('key,text', [(k, t) for k, texts in sorted(OUT_OF_RANGE.items()) for t in texts])
def test_out_of_range_names_key_value_and_rule(key, text):
    with pytest.raises(tuner_mod.ConfigError) as caught:
        tuner_mod.parse_config('[tuner]\n%s = %s\n' % (key, text), '/etc/samepage-ksm/tuner.conf')
    message = caught.value.msg
    assert key in message and repr(text.strip() if text.strip() else text)[1:-1] in message
    assert 'expected' in message and '/etc/samepage-ksm/tuner.conf' in message
    assert caught.value.key == key


@pytest.mark.parametrize('key', sorted(k for k, s in tuner_mod.SETTINGS.items() if s.kind != 'choice'))
@pytest.mark.parametrize('text', HOSTILE)
def test_hostile_numbers_are_refused(key, text):
    with pytest.raises(tuner_mod.ConfigError) as caught:
        tuner_mod.validate({key: text})
    assert key in caught.value.msg and 'expected' in caught.value.msg


@pytest.mark.parametrize('value', [True, False, None, [], {}, 1.5, float('nan'), float('inf'), 10 ** 30, -1])
def test_hostile_python_values_are_refused(value):
    with pytest.raises(tuner_mod.ConfigError) as caught:
        tuner_mod.validate({'budget_window': value})
    assert 'budget_window' in caught.value.msg


def test_float_keys_take_integral_and_fractional_numbers():
    assert tuner_mod.validate({'cpu_budget': 12.5, 'idle_cpu_limit': 1}) == {'cpu_budget': 12.5, 'idle_cpu_limit': 1}
    assert tuner_mod.validate({'cpu_budget': 10.0}) == {'cpu_budget': 10}
    with pytest.raises(tuner_mod.ConfigError):
        tuner_mod.validate({'cpu_budget': True})


def test_unknown_key_is_named_with_the_known_ones():
    with pytest.raises(tuner_mod.ConfigError) as caught:
        tuner_mod.validate({'cpu_budgett': 5})
    assert "'cpu_budgett'" in caught.value.msg and 'cpu_budget' in caught.value.msg
    with pytest.raises(tuner_mod.ConfigError) as caught:
        tuner_mod.parse_config('[tuner]\nCPU_BUDGET = 5\n', 'f.conf')
    assert "'CPU_BUDGET'" in caught.value.msg and 'f.conf' in caught.value.msg


@pytest.mark.parametrize('text,fragment', [
    ('cpu_budget = 5\n', 'Cannot parse'),
    ('[tuner]\ncpu_budget = 5\ncpu_budget = 6\n', 'Cannot parse'),
    ('[tuner]\ncpu_budget = 5\n[other]\nx = 1\n', 'Unknown section [other]'),
    ('[DEFAULT]\ncpu_budget = 5\n', 'Unknown section [DEFAULT]'),
    ('[tuner]\ncpu_budget = 5\n  7\n', 'a value is one line'),
    ('[tuner]\ncpu_budget\n', 'Cannot parse'),
    ('[tuner]\ncpu_budget = 5%\n', "'5%'"),
    ('[tuner]\nlog_level = info debug\n', "'info debug'"),
])
def test_malformed_files_are_refused(text, fragment):
    with pytest.raises(tuner_mod.ConfigError) as caught:
        tuner_mod.parse_config(text, 'x.conf')
    assert fragment in caught.value.msg


def test_comments_and_empty_files():
    assert tuner_mod.parse_config('') == {}
    assert tuner_mod.parse_config('# nothing\n; nothing\n') == {}
    assert tuner_mod.parse_config('[tuner]\ncpu_budget = 5   # five percent\n') == {'cpu_budget': 5}


def test_render_is_canonical_and_documented():
    text = tuner_mod.render({'pressure_gate': 20, 'cpu_budget': 10.0})
    assert text == tuner_mod.render({'cpu_budget': '10', 'pressure_gate': '20'})
    lines = [line for line in text.splitlines() if not line.startswith('#')]
    assert lines == ['[tuner]', 'cpu_budget = 10', 'pressure_gate = 20']
    assert 'default 20' in text and 'default 0' in text
    with pytest.raises(tuner_mod.ConfigError):
        tuner_mod.render({'cpu_budget': 0})


def test_load_config_errors_name_the_file(tmp_path):
    missing = tmp_path / 'none.conf'
    with pytest.raises(tuner_mod.ConfigError) as caught:
        tuner_mod.load_config(str(missing))
    assert str(missing) in caught.value.msg
    binary = tmp_path / 'bin.conf'
    binary.write_bytes(b'[tuner]\ncpu_budget = \xff\n')
    with pytest.raises(tuner_mod.ConfigError) as caught:
        tuner_mod.load_config(str(binary))
    assert 'UTF-8' in caught.value.msg
    good = tmp_path / 'good.conf'
    good.write_text('[tuner]\ncpu_budget = 5\n')
    config = tuner_mod.load_config(str(good))
    assert config['cpu_budget'] == 5 and config['budget_window'] == 60


# ---------------------------------------------------------------------------------------------------
# Policy against the simulated ksmd

def make(config=None, preset='6.18', **sim_options):
    sim = KsmdSim(kernel=FakeKsmKernel(preset), **sim_options)
    log = io.StringIO()
    tuner = tuner_mod.Tuner(config or {}, ksm=_ksm.Ksm(sim.kernel), clock=lambda: sim.now, ksmd_cpu=sim.ksmd_cpu,
                            meminfo=sim.meminfo,
                            watcher=tuner_mod.ProcessWatcher(list_pids=sim.list_pids, mergeable=sim.process_mergeable),
                            state_path=None, logger=tuner_mod.Logger('info', stream=log))
    return sim, tuner, log


def flat_out_t90(*regions):
    """t90 of ksmd flat out (20000 pages, sleep 0) from the start, for the same regions."""
    sim = KsmdSim()
    for region in regions:
        sim.add(region)
    sim.kernel.values.update(run=1, pages_to_scan=20000, sleep_millisecs=0)
    while sim.now < 60 and sim.sharing() < 0.9 * sim.achievable():
        sim.advance(sim.now + 0.05)
    return sim.time_to(0.9 * sim.achievable())


def phases(decisions):
    result = []
    for dummy, decision in decisions:
        if decision is not None and (not result or result[-1] != decision.phase):
            result.append(decision.phase)
    return result


def idle_percent(sim, seconds=60):
    return sim.cpu_percent(sim.now - seconds, sim.now)


def paired_regions(mib):
    first = Region('p1', mib, 'paired')
    second = Region('p2', mib, 'paired', partner=first)
    first.partner = second
    return first, second


@pytest.mark.parametrize('workload', ['same', 'paired'])
def test_fast_merge_then_back_off(workload):
    regions = (Region('a', 512, 'same'),) if workload == 'same' else paired_regions(256)
    reference = flat_out_t90(*(Region(r.name, r.pages // 256, r.kind) for r in regions)
                             if workload == 'same' else paired_regions(256))
    sim, tuner, log = make()
    for region in regions:
        sim.add(region)
    decisions = drive(sim, tuner, 240)
    t90 = sim.time_to(0.9 * sim.achievable())
    assert t90 is not None and t90 <= 1.5 * reference, (t90, reference)
    assert phases(decisions) == ['fast', 'idle']
    assert sim.sharing() >= 0.99 * sim.achievable()
    # converged: the idle rate, and ksmd below half a percent of a core
    assert (sim.kernel.values['pages_to_scan'], sim.kernel.values['run']) == (100, 1)
    assert idle_percent(sim) < 0.5
    assert 'phase=idle' in log.getvalue() and 'converged' in log.getvalue()


def test_unique_memory_backs_off_after_its_first_full_scans():
    sim, tuner, dummy = make()
    sim.add(Region('u', 512, 'unique'))
    decisions = drive(sim, tuner, 300)
    went_idle = [when for when, d in decisions if d.phase == 'idle'][0]
    assert sim.counters['pages_sharing'] == 0
    # nothing can merge in the first pass, so two passes are judged, no more
    assert tuner.policy.fast_scans <= 3
    assert went_idle < 5
    assert idle_percent(sim) < 0.5
    # unique memory costs 18x per page: the idle sleep adapted upwards
    assert tuner.policy.idle_sleep > 200 or idle_percent(sim) < 0.3


def test_churning_memory_stays_cheap_once_converged():
    sim, tuner, dummy = make()
    sim.add(Region('c', 512, 'same', churn_mib_per_s=2.0, remerge=0.5, churn_part=0.25))
    decisions = drive(sim, tuner, 600)
    assert sim.sharing() > 0.6 * sim.achievable()
    assert decisions[-1][1].phase == 'idle'
    assert idle_percent(sim, 120) < 0.5
    # it did not keep ksmd at the fast rate: the fast phases are a small part of the run
    fast = sum(1 for dummy, d in decisions if d.phase == 'fast')
    assert fast < len(decisions) / 10


def test_late_arrival_is_noticed_without_a_kick():
    late = Region('late', 256, 'same', start=120, madvise_delay=1.0)
    reference = flat_out_t90(Region('ref', 256, 'same'))
    sim, tuner, log = make()
    sim.add(Region('first', 256, 'same'))
    sim.add(late)
    decisions = drive(sim, tuner, 240)
    assert [d.phase for when, d in decisions if 100 < when < 120] == ['idle'] * len(
        [1 for when, d in decisions if 100 < when < 120])
    noticed = [when for when, d in decisions if when >= 120 and d.phase == 'fast'][0]
    assert noticed - late.start <= 5
    assert 'new process with mergeable memory (pid %d)' % late.pid in log.getvalue()
    t90 = sim.time_to(sim.achievable([sim.regions[0]]) + 0.9 * late.pages, since=late.start)
    assert t90 is not None and t90 - late.start <= 5 + 1.5 * reference, (t90, reference)
    assert decisions[-1][1].phase == 'idle'


def test_late_arrival_without_process_polling_found_by_idle_gain():
    late = Region('late', 64, 'same', start=100)
    sim, tuner, log = make({'process_poll_seconds': 0})
    sim.add(Region('first', 64, 'same'))
    sim.add(late)
    drive(sim, tuner, 400)
    assert 'gain while idle' in log.getvalue()
    assert sim.sharing() >= 0.99 * sim.achievable()


@pytest.mark.parametrize('preset', ['6.18', '6.1'])   # pages_scanned, or ksmd's CPU where there is none
def test_nothing_mergeable_goes_idle_then_a_new_process_merges(preset):
    # ksmd scans only while some process has memory marked mergeable: on a host without one (a KVM host
    # before its first guest) no full scan ever completes, so the tuner must not wait for one at flat out.
    late = Region('guest', 128, 'same', start=60, madvise_delay=1.0)
    sim, tuner, log = make(preset=preset)
    sim.add(late)
    decisions = drive(sim, tuner, 150)
    went_idle = [when for when, d in decisions if d.phase == 'idle'][0]
    assert went_idle <= tuner_mod.WAITING_SECONDS + 2, went_idle
    assert 'nothing to scan: no process has memory marked mergeable' in log.getvalue()
    assert [d.phase for when, d in decisions if went_idle <= when < 60] == ['idle'] * len(
        [1 for when, d in decisions if went_idle <= when < 60])
    noticed = [when for when, d in decisions if when >= 60 and d.phase == 'fast'][0]
    assert noticed - late.start <= 5
    assert sim.sharing() >= 0.99 * sim.achievable()
    assert decisions[-1][1].phase == 'idle' and 'converged' in decisions[-1][1].reason


def test_fast_phase_ends_when_the_mergeable_process_goes_away():
    # A fast phase (a kick) with nothing left to scan: the last mergeable process has gone, so ksmd waits
    sim, tuner, log = make({'process_poll_seconds': 0})
    region = sim.add(Region('a', 64, 'same'))
    drive(sim, tuner, 40)
    assert tuner.decision.phase == 'idle'
    sim.regions.remove(region)
    decisions = drive(sim, tuner, 80, kicks=[45])
    assert phases([(when, d) for when, d in decisions if when >= 45]) == ['fast', 'idle']
    assert 'nothing to scan' in tuner.decision.reason


def test_kick_starts_a_fast_phase_at_once():
    sim, tuner, log = make({'process_poll_seconds': 0})
    sim.add(Region('a', 128, 'same'))
    decisions = drive(sim, tuner, 100, kicks=[60])
    after = [(when, d) for when, d in decisions if when >= 60]
    assert after[0][1].phase == 'fast' and after[0][0] - 60 < 1
    assert 'kick (SIGHUP)' in after[0][1].reason
    assert phases(decisions) == ['fast', 'idle', 'fast', 'idle']


def test_pressure_gate_merges_only_under_pressure():
    sim, tuner, log = make({'pressure_gate': 20}, mem_total_mib=4096, mem_free_mib=3000)
    sim.add(Region('a', 256, 'same'))
    decisions = drive(sim, tuner, 60)
    assert phases(decisions) == ['gated']
    assert sim.kernel.values['run'] == 0 and sim.sharing() == 0
    # memory gets short: MemAvailable falls below 20 %
    sim.mem_free_base = int(sim.mem_total * 0.26)
    drive(sim, tuner, 120)
    assert sim.sharing() > 0.9 * sim.achievable()
    assert 'memory pressure' in log.getvalue()
    # merging gave memory back: above 20 + 5 % the gate closes again, pages stay merged
    assert sim.kernel.values['run'] == 0 and tuner.decision.phase == 'gated'
    assert sim.sharing() > 0.9 * sim.achievable()


@pytest.mark.parametrize('budget,window', [(5, 60), (10, 30), (1, 60)])
def test_cpu_budget_is_never_exceeded(budget, window):
    sim, tuner, log = make({'cpu_budget': budget, 'budget_window': window})
    sim.add(Region('u', 2048, 'unique'))
    sim.add(Region('s', 1024, 'same'))
    decisions = drive(sim, tuner, 400)
    assert sim.max_window_percent(window) <= budget, sim.max_window_percent(window)
    seen = set(phases(decisions))
    assert seen & {'throttled', 'paused'}
    assert 'CPU budget' in log.getvalue()
    if budget >= 5:
        # it still merges, at the price of time
        assert sim.sharing() > 0.5 * sim.achievable()


def test_budget_throttles_a_kick_too():
    sim, tuner, dummy = make({'cpu_budget': 2, 'budget_window': 60, 'process_poll_seconds': 0})
    sim.add(Region('u', 1024, 'unique'))
    drive(sim, tuner, 300, kicks=[100, 150, 200])
    assert sim.max_window_percent(60) <= 2


def test_kernel_without_pages_scanned_uses_the_dear_page_cost():
    sim, tuner, dummy = make({'cpu_budget': 5}, preset='6.1')
    sim.add(Region('u', 1024, 'unique'))
    drive(sim, tuner, 200)
    assert 'pages_scanned' not in sim.kernel.values
    assert sim.max_window_percent(60) <= 5


# ---------------------------------------------------------------------------------------------------
# The daemon core: writes, failures, state file, resting state

def test_only_changed_knobs_are_written():
    sim, tuner, dummy = make()
    sim.add(Region('a', 64, 'same'))
    drive(sim, tuner, 120)
    writes = sim.kernel.successful_writes()
    assert writes[:3] == [('pages_to_scan', '20000'), ('sleep_millisecs', '0'), ('run', '1')]
    assert ('pages_to_scan', '100') in writes and ('sleep_millisecs', '200') in writes
    assert len(writes) <= 8, writes
    assert set(name for name, dummy in writes) <= {'run', 'pages_to_scan', 'sleep_millisecs'}


def test_another_writer_is_noticed_and_overridden():
    sim, tuner, log = make({'process_poll_seconds': 0})
    sim.add(Region('a', 64, 'same'))
    drive(sim, tuner, 60)
    sim.kernel.values['pages_to_scan'] = 1250          # ksmtuned, say
    drive(sim, tuner, 70)
    assert 'another writer changed pages_to_scan to 1250' in log.getvalue()
    assert sim.kernel.values['pages_to_scan'] == 100


def test_writes_wait_for_the_host_lock_of_ksm_writers(tmp_path, monkeypatch):
    """While a module holds the host lock the tuner writes nothing; once it is free, it writes."""
    monkeypatch.setattr(_ksm, 'LOCK_PATH', str(tmp_path / 'samepage-ksm.lock'))
    monkeypatch.setattr(tuner_mod, 'LOCK_WAIT', 0.2)
    sim, tuner, log = make({'process_poll_seconds': 0})
    sim.add(Region('a', 64, 'same'))
    with _ksm.host_lock(timeout=1, who='samepage.ksm.ksm_sysfs'):
        assert tuner.step() == tuner_mod.LOCK_RETRY
        assert sim.kernel.successful_writes() == []
    assert 'program=samepage.ksm.ksm_sysfs' in log.getvalue()
    tuner.step()
    assert sim.kernel.successful_writes()[:3] == [('pages_to_scan', '20000'), ('sleep_millisecs', '0'), ('run', '1')]


@pytest.mark.parametrize('preset,mode,fragment,phase', [
    ('absent', None, 'this kernel has no KSM', 'unavailable'),
    ('6.18', 'readonly', 'read-only', 'error'),
])
def test_ksm_missing_or_read_only_is_logged_once_and_retried_slower(tmp_path, preset, mode, fragment, phase):
    kernel = FakeKsmKernel(preset, mode=mode)
    log = io.StringIO()
    state = tmp_path / 'tuner.json'
    tuner = tuner_mod.Tuner({}, ksm=_ksm.Ksm(kernel), clock=lambda: 0.0, ksmd_cpu=lambda now: None,
                            meminfo=lambda: {}, watcher=None, state_path=str(state),
                            logger=tuner_mod.Logger('info', stream=log))
    waits = [tuner.step() for dummy in range(8)]
    assert waits == sorted(waits) and waits[0] == 2 and waits[-1] == 60
    assert log.getvalue().count(fragment) == 1
    data = json.loads(state.read_text())
    assert data['phase'] == phase and fragment in data['reason']


def test_refused_write_with_advisor_on_is_explained():
    kernel = FakeKsmKernel('6.18', advisor_mode='scan-time')
    log = io.StringIO()
    tuner = tuner_mod.Tuner({}, ksm=_ksm.Ksm(kernel), clock=lambda: 0.0, ksmd_cpu=lambda now: None,
                            meminfo=lambda: {}, watcher=None, state_path=None,
                            logger=tuner_mod.Logger('info', stream=log))
    assert tuner.step() == 2
    assert 'advisor' in log.getvalue()
    assert kernel.values['run'] == 0      # nothing half-applied


def test_injected_write_failure_recovers(tmp_path):
    sim, tuner, log = make()
    sim.add(Region('a', 64, 'same'))
    sim.kernel.inject('run', errno.EPERM, times=1)
    drive(sim, tuner, 30)
    text = log.getvalue()
    assert 'Cannot set run=1' in text and 'recovered' in text
    assert sim.kernel.values['run'] == 1 and sim.sharing() > 0


def test_state_file_fields(tmp_path):
    sim, tuner, dummy = make()
    tuner.state_path = str(tmp_path / 'run' / 'tuner.json')
    tuner.config_path = '/etc/samepage-ksm/tuner.conf'
    sim.add(Region('a', 64, 'same'))
    drive(sim, tuner, 60)
    data = json.loads((tmp_path / 'run' / 'tuner.json').read_text())
    assert data['phase'] == 'idle' and data['run'] == 1
    assert (data['pages_to_scan'], data['sleep_millisecs']) == (100, 200)
    assert data['pid'] == os.getpid() and data['config'] == '/etc/samepage-ksm/tuner.conf'
    assert data['last_gain'] == 0 and data['pages_sharing'] == sim.counters['pages_sharing']
    for key in ('version', 'reason', 'since', 'updated', 'ksmd_cpu_percent', 'own_cpu_percent', 'full_scans',
                'cpu_budget_percent', 'budget_window', 'started'):
        assert key in data
    assert os.listdir(str(tmp_path / 'run')) == ['tuner.json']


def test_resting_state_is_the_idle_rate_with_pages_kept():
    sim, tuner, log = make()
    sim.add(Region('a', 64, 'same'))
    sim.kernel.values['pages_to_scan'] = 20000
    drive(sim, tuner, 1)
    assert tuner.decision.phase == 'fast'
    sharing = sim.sharing()
    assert tuner.rest() is True
    values = sim.kernel.values
    assert (values['run'], values['pages_to_scan'], values['sleep_millisecs']) == (1, 100, 200)
    assert sim.sharing() == sharing and sim.kernel.unmerges == 0
    assert 'phase=stopped' in log.getvalue()


def test_resting_state_with_the_gate_closed_is_run_0():
    sim, tuner, dummy = make({'pressure_gate': 10})
    drive(sim, tuner, 5)
    assert tuner.decision.phase == 'gated'
    tuner.rest()
    assert sim.kernel.values['run'] == 0


# ---------------------------------------------------------------------------------------------------
# /proc readers

def test_process_watcher_looks_only_at_new_pids(tmp_path):
    proc = tmp_path
    (proc / '1').mkdir()
    (proc / '1' / 'ksm_stat').write_text('ksm_rmap_items 0\nksm_merge_any: no\nksm_mergeable: no\n')
    checked = []

    def mergeable(pid):
        checked.append(pid)
        return tuner_mod.process_mergeable(str(proc), pid)

    watcher = tuner_mod.ProcessWatcher(str(proc), recheck_seconds=6, mergeable=mergeable)
    assert watcher.poll(0) == [] and checked == []            # the first poll only learns
    (proc / '200').mkdir()
    (proc / '200' / 'ksm_stat').write_text('ksm_rmap_items 0\nksm_merge_any: no\nksm_mergeable: no\n')
    (proc / '300').mkdir()            # an older kernel: no ksm lines; smaps with the mg flag
    (proc / '300' / 'smaps').write_text('00400000-00452000 r-xp 0 08:02 1 /bin/x\nVmFlags: rd ex mr mw me dw\n'
                                        '7f00-7f10 rw-p 0 0 0\nVmFlags: rd wr mr mw me ac mg\n')
    assert watcher.poll(2) == [300]
    assert sorted(checked) == ['200', '300']
    # madvise after exec: pid 200 becomes mergeable; it is still being re-checked
    (proc / '200' / 'ksm_stat').write_text('ksm_rmap_items 0\nksm_merge_any: no\nksm_mergeable: yes\n')
    assert watcher.poll(4) == [200]
    checked[:] = []
    assert watcher.poll(6) == [] and checked == []            # nothing new: nothing opened
    (proc / '400').mkdir()
    assert watcher.poll(8) == [] and watcher.poll(20) == []
    assert '400' not in watcher.pending                       # given up after recheck_seconds


def test_process_mergeable_answers(tmp_path):
    (tmp_path / '5').mkdir()
    (tmp_path / '5' / 'ksm_stat').write_text('ksm_merge_any: yes\nksm_mergeable: no\n')
    assert tuner_mod.process_mergeable(str(tmp_path), '5') is True
    (tmp_path / '6').mkdir()
    (tmp_path / '6' / 'smaps').write_text('VmFlags: rd wr\n')
    assert tuner_mod.process_mergeable(str(tmp_path), '6') is False
    assert tuner_mod.process_mergeable(str(tmp_path), '7') is None


def test_ksmd_cpu_reads_utime_and_stime(tmp_path):
    (tmp_path / '1').mkdir()
    (tmp_path / '1' / 'comm').write_text('systemd\n')
    (tmp_path / '77').mkdir()
    (tmp_path / '77' / 'comm').write_text('ksmd\n')
    # state, ppid 2 (kthreadd), pgrp, session, tty, tpgid, flags (PF_KTHREAD and others, as a real ksmd's), ...
    fields = ['S', '2', '0', '0', '0', '-1', str(0x208040)] + ['0'] * 4 + ['250', '50'] + ['0'] * 30
    (tmp_path / '77' / 'stat').write_text('77 (ksmd) ' + ' '.join(fields) + '\n')
    reader = tuner_mod.KsmdCpu(str(tmp_path))
    reader.ticks = 100.0
    assert reader(0) == 3.0 and reader.pid == 77
    (tmp_path / '77' / 'stat').unlink()
    assert reader(1) is None and reader.pid is None


# ---------------------------------------------------------------------------------------------------
# main(): configuration errors, --check-config

def test_bad_configuration_exits_78_naming_the_key(tmp_path, capsys):
    path = tmp_path / 'tuner.conf'
    path.write_text('[tuner]\ncpu_budget = 500\n')
    assert tuner_mod.main(['--config', str(path), '--state', '']) == tuner_mod.EXIT_CONFIG
    err = capsys.readouterr().err
    assert 'refusing to start' in err and 'cpu_budget' in err and "'500'" in err


def test_check_config(tmp_path, capsys):
    path = tmp_path / 'tuner.conf'
    path.write_text(tuner_mod.render({'cpu_budget': 10}))
    assert tuner_mod.main(['--config', str(path), '--check-config']) == 0
    assert 'is valid' in capsys.readouterr().out
    assert tuner_mod.main(['--config', str(tmp_path / 'missing.conf'), '--check-config']) == tuner_mod.EXIT_CONFIG


def test_signals_wake_the_wait():
    if not hasattr(signal, 'SIGUSR1'):  # pragma: no cover
        pytest.skip('POSIX signals')
    numbers = (signal.SIGHUP, signal.SIGUSR1, signal.SIGTERM, signal.SIGINT)
    old = {number: signal.getsignal(number) for number in numbers}
    old_fd = signal.set_wakeup_fd(-1)
    try:
        signals = tuner_mod.Signals()
        os.kill(os.getpid(), signal.SIGUSR1)
        signals.wait(30)
        assert signals.take_kick() == 'SIGUSR1' and signals.take_kick() is None
        os.kill(os.getpid(), signal.SIGTERM)
        signals.wait(30)
        assert signals.stop == 'SIGTERM'
    finally:
        signal.set_wakeup_fd(old_fd)
        for number, handler in old.items():
            signal.signal(number, handler)


def test_process_watcher_lists_proc_only_when_a_new_id_was_handed_out(tmp_path):
    listings = []
    last = ['100']

    def list_pids():
        listings.append(1)
        return os.listdir(str(tmp_path))

    watcher = tuner_mod.ProcessWatcher(str(tmp_path), list_pids=list_pids, last_pid=lambda: last[0])
    watcher.poll(0)
    watcher.poll(2)
    watcher.poll(4)
    assert len(listings) == 1           # last_pid unchanged: nothing new, /proc not listed
    (tmp_path / '101').mkdir()
    (tmp_path / '101' / 'ksm_stat').write_text('ksm_mergeable: yes\n')
    last[0] = '101'
    assert watcher.poll(6) == [101] and len(listings) == 2


def test_last_pid_comes_from_loadavg(tmp_path):
    (tmp_path / 'loadavg').write_text('0.10 0.20 0.30 1/234 56789\n')
    assert tuner_mod.ProcessWatcher(str(tmp_path)).last_pid() == '56789'


def test_once_prints_the_decision_and_writes_nothing(monkeypatch, capsys, tmp_path):
    kernel = FakeKsmKernel('6.18')
    monkeypatch.setattr(_ksm, 'SysfsIO', lambda *args, **kwargs: kernel)
    assert tuner_mod.main(['--config', str(tmp_path / 'none.conf'), '--once']) == tuner_mod.EXIT_CONFIG
    (tmp_path / 'tuner.conf').write_text('[tuner]\n')
    assert tuner_mod.main(['--config', str(tmp_path / 'tuner.conf'), '--state', '', '--once']) == 0
    assert 'Decision(fast run=1 pages_to_scan=20000 sleep_millisecs=0' in capsys.readouterr().out
    assert kernel.writes == []
    absent = FakeKsmKernel('absent')
    monkeypatch.setattr(_ksm, 'SysfsIO', lambda *args, **kwargs: absent)
    assert tuner_mod.main(['--config', str(tmp_path / 'tuner.conf'), '--state', '', '--once']) == 1
    assert 'no KSM' in capsys.readouterr().err
