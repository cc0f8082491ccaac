# -*- coding: utf-8 -*-
# Copyright: (c) 2026, samepage.ksm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""samepage.ksm.ksm_service against REAL systemd in the lab's Debian 12 (systemd 252) and Debian 13
(systemd 257) guests, through real `ansible` runs over SSH.

Every transition goes through the four steps (check mode, apply, apply again, check mode again) and is
then checked with systemctl in the guest. Also: a retune that ksmtuned visibly acts on, a masked unit,
a unit that is not installed, and a comparison of the fake systemctl used by the unit tests with the
real one.

Each test starts from, and puts back, the image's defaults: ksm.service and ksmtuned.service enabled and
running, /etc/ksmtuned.conf as shipped, nothing masked.
"""

import shlex
import time

import pytest

from ansible_collections.samepage.ksm.tests.lab.labtools import steps
from ansible_collections.samepage.ksm.tests.support.four_steps import assert_four_steps
from ansible_collections.samepage.ksm.tests.unit.fakes import systemd as fakes

KSM = 'ksm.service'
TUNED = 'ksmtuned.service'
PROPS = 'Id,LoadState,ActiveState,SubState,UnitFileState,MainPID,ConditionResult,CanReload,Requires'
CONF = '/etc/ksmtuned.conf'
CONF_BACKUP = '/root/ksmtuned.conf.samepage-test'
LOG = '/var/log/ksmtuned-samepage-test.log'
TUNED_MARKER = '/var/lib/tuned/ksm-masked'
DROP_IN = '/run/systemd/system/ksm.service.d/samepage-test.conf'
HIDDEN_UNIT = '/root/ksmtuned.service.samepage-test'     # where a test moves the unit file to "uninstall" it
WAIT_SECONDS = 90


# ---------------------------------------------------------------------------------------------------
# Talking to a guest

class Service:
    """ksm_service and systemctl on one guest."""

    def __init__(self, lab, guest, run_module):
        self.lab = lab
        self.guest = guest
        self.run_module = run_module

    def sh(self, command, check=True):
        result = self.guest.ssh(command, check=False)
        if check and result.returncode != 0:
            raise AssertionError('%s: `%s` failed (rc %d): %s%s' % (
                self.guest.name, command, result.returncode, result.stdout, result.stderr))
        return result

    def show(self, *units):
        """{unit: {Property: value}} from the guest's systemctl."""
        units = units or (KSM, TUNED)
        out = self.sh('systemctl show --no-pager -p %s %s' % (PROPS, ' '.join(units))).stdout
        blocks = [block for block in out.strip().split('\n\n') if block.strip()]
        result = {}
        for unit, block in zip(units, blocks):
            result[unit] = dict(line.split('=', 1) for line in block.splitlines() if '=' in line)
        return result

    def state(self):
        """What the four steps compare: (ActiveState, UnitFileState, MainPID) of both units."""
        shown = self.show()
        return {unit: (props['ActiveState'], props['UnitFileState'], props['MainPID'])
                for unit, props in shown.items()}

    def active(self, unit):
        return self.show(unit)[unit]['ActiveState']

    def enabled(self, unit):
        return self.sh('systemctl is-enabled %s' % unit, check=False).stdout.strip()

    def run(self, check=False, **args):
        return self.run_module('samepage.ksm.ksm_service', args, check=check, diff=True)

    def four_steps(self, **args):
        """Check mode (changed, nothing done), apply (changed), again (not), check mode again (not).

        The four steps are the four tasks of one ansible-playbook run (labtools.steps); that check mode
        changed nothing shows in what the apply step found before it acted."""
        results = steps(self.lab, self.guest, 'samepage.ksm.ksm_service', args)
        assert_four_steps(results, describe=lambda result: result.get('msg'))
        first, second, third, fourth = results
        assert first['changed'] is True, first
        for name, entry in first['units'].items():    # check mode left every unit as it was
            assert entry['before'] == second['units'][name]['before'], (name, first['units'], second['units'])
        assert second['changed'] is True, second
        assert second['actions'] == first['actions']
        for name, entry in second['units'].items():     # check mode predicted where the units end
            real = entry['after']['active_state']
            assert first['units'][name]['after']['active_state'] == ('active' if real == 'activating' else real)
        assert third['changed'] is False and third['actions'] == [], third
        assert fourth['changed'] is False, fourth
        for name, entry in third['units'].items():    # nothing changed after the apply
            assert fourth['units'][name]['before'] == entry['after'] == entry['before'], (name, third, fourth)
        return first, second, third, fourth

    def wait_for(self, what, predicate, seconds=WAIT_SECONDS):
        """Poll the guest until predicate() holds (bounded; a liveness bound, not a timing assertion)."""
        deadline = time.time() + seconds
        while True:
            value = predicate()
            if value:
                return value
            if time.time() > deadline:
                raise AssertionError('%s: %s did not happen within %d s' % (self.guest.name, what, seconds))
            time.sleep(1)

    def restore_defaults(self):
        """The image's defaults: both units unmasked, enabled and running; ksmtuned.conf as shipped.

        Only what differs is put back (one shell on the guest), so a test that left everything as it
        found it costs a single round trip."""
        self.sh('if [ -f {hidden} ]; then mv -f {hidden} "$(cat {hidden}.path)"; rm -f {hidden}.path; '
                'systemctl daemon-reload; fi; '
                'if [ -e {drop_in} ]; then rm -f {drop_in}; systemctl daemon-reload; fi; '
                'rm -f {marker} {log}; restart=; '
                'if [ -f {backup} ]; then mv -f {backup} {conf}; restart=1; fi; '
                'for unit in {ksm} {tuned}; do '
                '  state=$(systemctl is-enabled $unit 2>/dev/null); '
                '  if [ "$state" = masked ]; then systemctl unmask $unit; state=; fi; '
                '  if [ "$state" != enabled ]; then systemctl enable $unit; fi; '
                'done; '
                'if [ -n "$restart" ] || ! systemctl is-active -q {tuned}; then systemctl restart {tuned}; fi; '
                'systemctl is-active -q {ksm} || systemctl start {ksm}'.format(
                    hidden=HIDDEN_UNIT, drop_in=DROP_IN, marker=TUNED_MARKER, log=LOG, backup=CONF_BACKUP,
                    conf=CONF, ksm=KSM, tuned=TUNED))
        shown = self.show()
        assert shown[KSM]['ActiveState'] == 'active' and shown[TUNED]['ActiveState'] in ('active', 'activating')
        assert shown[KSM]['UnitFileState'] == 'enabled' and shown[TUNED]['UnitFileState'] == 'enabled'


@pytest.fixture
def service(lab, lab_guest, lab_run_module):
    """ksm_service on the Debian 12 and the Debian 13 guest, from and back to the image's defaults."""
    svc = Service(lab, lab_guest, lab_run_module)
    svc.restore_defaults()
    yield svc
    svc.restore_defaults()


# ---------------------------------------------------------------------------------------------------
# Transitions

def test_image_defaults_are_what_the_module_reports(service):
    result = service.run(name='ksmtuned', state='started', enabled=True)
    assert result['changed'] is False and result['actions'] == []
    assert result['unit'] == TUNED and result['package'] == 'ksmtuned'
    assert result['units']['ksm']['before']['active_state'] == 'active'
    assert result['units']['ksm']['before']['sub_state'] == 'exited'
    assert result['units']['ksmtuned']['before']['sub_state'] == 'running'
    assert result['units']['ksmtuned']['before']['main_pid'] == int(service.show()[TUNED]['MainPID'])


def test_stop_ksmtuned_leaves_ksm(service):
    first, second, third, fourth = service.four_steps(name='ksmtuned', state='stopped')
    assert second['actions'] == ['stop ksmtuned.service']
    assert service.active(TUNED) == 'inactive' and service.active(KSM) == 'active'


def test_stop_ksm_stops_ksmtuned_first(service):
    first, second, third, fourth = service.four_steps(name='ksm', state='stopped')
    assert second['actions'] == ['stop ksmtuned.service', 'stop ksm.service']
    assert service.active(TUNED) == 'inactive' and service.active(KSM) == 'inactive'
    # ksm.service's ExecStop (ksmctl stop) wrote run=0
    assert service.sh('cat /sys/kernel/mm/ksm/run').stdout.strip() == '0'
    assert second['units']['ksmtuned']['after']['active_state'] == 'inactive'
    # stopped, not disabled
    assert service.enabled(KSM) == 'enabled' and service.enabled(TUNED) == 'enabled'


def test_start_ksm_alone(service):
    service.sh('systemctl stop %s %s' % (TUNED, KSM))
    first, second, third, fourth = service.four_steps(name='ksm', state='started')
    assert second['actions'] == ['start ksm.service']
    assert service.active(KSM) == 'active' and service.active(TUNED) == 'inactive'
    assert service.sh('cat /sys/kernel/mm/ksm/run').stdout.strip() == '1'


def test_start_ksmtuned_starts_ksm_too(service):
    service.sh('systemctl stop %s %s' % (TUNED, KSM))
    first, second, third, fourth = service.four_steps(name='ksmtuned', state='started')
    assert second['actions'] == ['start ksmtuned.service']
    assert service.active(KSM) == 'active' and service.active(TUNED) == 'active'
    units = second['units']
    assert units['ksm']['before']['active_state'] == 'inactive'
    assert units['ksm']['after']['active_state'] == 'active'
    assert units['ksmtuned']['after']['main_pid'] == int(service.show()[TUNED]['MainPID']) > 0
    # check mode predicted that ksm would start with it
    assert first['units']['ksm']['after']['active_state'] == 'active'


@pytest.mark.parametrize('name, unit', [('ksm', KSM), ('ksmtuned', TUNED)])
def test_disable_then_enable(service, name, unit):
    first, second, third, fourth = service.four_steps(name=name, enabled=False)
    assert second['actions'] == ['disable %s' % unit]
    assert service.enabled(unit) == 'disabled'
    assert service.active(unit) == 'active', 'disabling must not stop'
    first, second, third, fourth = service.four_steps(name=name, enabled=True)
    assert second['actions'] == ['enable %s' % unit]
    assert service.enabled(unit) == 'enabled'


def test_disable_ksm_while_ksmtuned_enabled_warns(service):
    result = service.run(name='ksm', enabled=False)
    assert result['changed'] is True
    assert any('Requires=ksm.service' in warning for warning in result.get('warnings', []))


def test_restart_always_changes_and_check_mode_does_not_restart(service):
    pid = service.show()[TUNED]['MainPID']
    result = service.run(check=True, name='ksmtuned', state='restarted')
    assert result['changed'] is True and result['actions'] == ['restart ksmtuned.service']
    assert service.show()[TUNED]['MainPID'] == pid
    for dummy in range(2):
        result = service.run(name='ksmtuned', state='restarted')
        assert not result.get('failed') and result['changed'] is True
        now = service.show()[TUNED]['MainPID']
        assert now != pid and result['units']['ksmtuned']['after']['main_pid'] == int(now)
        pid = now


def test_restart_ksm_restarts_ksmtuned(service):
    pid = service.show()[TUNED]['MainPID']
    result = service.run(name='ksm', state='restarted')
    assert result['changed'] is True and result['actions'] == ['restart ksm.service']
    after = result['units']['ksmtuned']['after']
    assert after['active_state'] == 'active' and after['main_pid'] not in (0, int(pid))


def test_retune_ksm_is_refused(service):
    result = service.run(name='ksm', state='retuned')
    assert result['failed'] is True and 'ksmtuned only' in result['msg']


def test_start_skipped_by_a_condition_fails_clearly(service):
    # RHEL's units carry ConditionVirtualization=no (Debian's do not): give ksm.service that condition
    # with a runtime drop-in; inside this guest systemd then skips every start of it.
    service.sh('mkdir -p %s && printf "[Unit]\\nConditionVirtualization=no\\n" > %s && systemctl daemon-reload'
               % (DROP_IN.rsplit('/', 1)[0], DROP_IN))
    service.sh('systemctl stop %s %s' % (TUNED, KSM))
    result = service.run(name='ksm', state='started')
    assert result['failed'] is True
    assert result['msg'].startswith('ksm.service did not start: systemd skipped it because a start condition '
                                    'was not met (ConditionResult=no).')
    assert 'This host is a virtual machine (systemd-detect-virt: ' in result['msg']
    assert result['units']['ksm']['after']['condition_result'] == 'no'
    assert service.active(KSM) == 'inactive'
    # check mode cannot know beforehand, but says what happened last time
    result = service.run(check=True, name='ksm', state='started')
    assert result['changed'] is True
    assert any('start condition was not met' in warning for warning in result.get('warnings', []))


# ---------------------------------------------------------------------------------------------------
# Retune: ksmtuned acts at once on the reload

def _log(service):
    return service.sh('cat %s 2>/dev/null || true' % LOG).stdout


def test_retune_makes_ksmtuned_adjust_at_once(service):
    # A monitor interval of an hour: without the signal, ksmtuned would not adjust during this test.
    service.sh('cp -p %s %s' % (CONF, CONF_BACKUP))
    service.sh("printf '%%s\\n' KSM_MONITOR_INTERVAL=3600 DEBUG=1 LOGFILE=%s >> %s" % (LOG, CONF))

    # ksmtuned reads its configuration once: a restart (not a reload) picks it up.
    result = service.run(name='ksmtuned', state='restarted')
    assert result['changed'] is True
    service.wait_for('ksmtuned logging its start-up values', lambda: 'thres' in _log(service))
    assert 'committed' not in _log(service), 'ksmtuned adjusted before the interval'

    # A sentinel ksmtuned will overwrite when it adjusts: whichever branch it takes (stop: run=0; start:
    # pages_to_scan from its own npages) it cannot leave both values as they are.
    service.sh('echo 4321 > /sys/kernel/mm/ksm/pages_to_scan; echo 1 > /sys/kernel/mm/ksm/run')

    def sentinel_state():
        return service.sh('cat /sys/kernel/mm/ksm/run /sys/kernel/mm/ksm/pages_to_scan').stdout.split()

    time.sleep(3)
    assert sentinel_state() == ['1', '4321'] and 'committed' not in _log(service), \
        'ksmtuned adjusted without being asked'

    checked = service.run(check=True, name='ksmtuned', state='retuned')
    assert checked['changed'] is True and checked['actions'] == ['reload ksmtuned.service']
    time.sleep(3)
    assert sentinel_state() == ['1', '4321'] and 'committed' not in _log(service), 'check mode retuned'

    result = service.run(name='ksmtuned', state='retuned')
    assert not result.get('failed') and result['changed'] is True
    assert result['actions'] == ['reload ksmtuned.service']
    service.wait_for('ksmtuned adjusting after the reload', lambda: 'committed' in _log(service))
    service.wait_for('ksmtuned rewriting the sentinel', lambda: sentinel_state() != ['1', '4321'])
    # the same process: a reload, not a restart
    assert result['units']['ksmtuned']['before']['main_pid'] == result['units']['ksmtuned']['after']['main_pid']

    # and again: retuned always acts
    adjustments = _log(service).count('committed')
    result = service.run(name='ksmtuned', state='retuned')
    assert result['changed'] is True
    service.wait_for('a second adjustment', lambda: _log(service).count('committed') > adjustments)


# ---------------------------------------------------------------------------------------------------
# Masked units

def test_masked_unit_fails_clearly_then_unmask(service):
    service.sh('systemctl stop %s %s; systemctl mask %s' % (TUNED, KSM, KSM))
    result = service.run(name='ksm', state='started')
    assert result['failed'] is True
    assert result['msg'].startswith('ksm.service is masked') and 'unmask=true' in result['msg']
    assert service.active(KSM) == 'inactive' and service.enabled(KSM) == 'masked'

    # ksmtuned needs ksm: the message names the masked dependency
    result = service.run(name='ksmtuned', state='started')
    assert result['failed'] is True
    assert 'ksmtuned.service Requires=ksm.service' in result['msg'] and 'ksm.service is masked' in result['msg']
    assert service.active(TUNED) == 'inactive'

    first, second, third, fourth = service.four_steps(name='ksm', state='started', unmask=True)
    assert second['actions'] == ['unmask ksm.service', 'start ksm.service']
    assert service.enabled(KSM) == 'enabled' and service.active(KSM) == 'active'


def test_masked_by_tuned_both_units(service):
    # What TuneD's cpu-partitioning profile leaves: both masked, and its marker file.
    service.sh('systemctl stop %s %s; systemctl mask %s %s; mkdir -p /var/lib/tuned; echo 1 > %s'
               % (TUNED, KSM, KSM, TUNED, TUNED_MARKER))
    result = service.run(name='ksmtuned', state='started')
    assert result['failed'] is True
    assert 'ksmtuned.service and ksm.service are masked' in result['msg']
    assert TUNED_MARKER in result['msg']
    # stopping or disabling a masked unit needs no unmasking
    result = service.run(name='ksmtuned', state='stopped', enabled=False)
    assert not result.get('failed') and result['changed'] is False
    first, second, third, fourth = service.four_steps(name='ksmtuned', state='started', unmask=True)
    assert second['actions'] == ['unmask ksmtuned.service', 'unmask ksm.service', 'start ksmtuned.service']
    assert service.active(KSM) == 'active' and service.active(TUNED) == 'active'


# ---------------------------------------------------------------------------------------------------
# A unit that is not installed

def test_unit_not_installed_names_the_package(service):
    # "Uninstall" ksmtuned.service without touching the package database: move its unit file away
    # (restore_defaults puts it back), so that systemd reports LoadState=not-found.
    service.sh('systemctl stop {tuned}; systemctl disable {tuned}; '
               'path=$(systemctl show -p FragmentPath --value {tuned}); echo "$path" > {hidden}.path; '
               'mv "$path" {hidden}; systemctl daemon-reload'.format(tuned=TUNED, hidden=HIDDEN_UNIT))
    assert service.show(TUNED)[TUNED]['LoadState'] == 'not-found'
    release = service.sh('. /etc/os-release; echo "$PRETTY_NAME"').stdout.strip()
    named = '%s is not installed: on %s it comes with the package ksmtuned (apt-get install ksmtuned).' % (
        TUNED, release)

    for args in ({'state': 'started'}, {'state': 'stopped', 'enabled': False}):
        result = service.run(name='ksmtuned', **args)
        assert result['failed'] is True and result['msg'].startswith(named), (args, result['msg'])
        assert result['package'] == 'ksmtuned' and result['unit'] is None

    # must_exist=false: not installed is already stopped and disabled (both steps, no change)
    for check in (True, False):
        result = service.run(check=check, name='ksmtuned', state='stopped', enabled=False, must_exist=False)
        assert not result.get('failed') and result['changed'] is False, result.get('msg')
        assert result['msg'].startswith(named) and result['msg'].endswith(' Nothing to stop or disable.'), result['msg']
    # ...but never started
    result = service.run(name='ksmtuned', state='started', must_exist=False)
    assert result['failed'] is True and result['msg'].startswith(named)
    assert service.active(KSM) == 'active'     # ksm.service untouched throughout


# ---------------------------------------------------------------------------------------------------
# The fake systemctl of the unit tests answers as this systemd does

def _systemd_version(service):
    return int(service.sh('systemctl --version').stdout.split()[1])


SEQUENCE = (
    'stop ksmtuned.service',
    'reload ksmtuned.service',
    'reload ksm.service',
    'mask ksm.service',
    'start ksmtuned.service',
    'start ksm.service',
    'restart ksm.service',
    'enable ksm.service',
    'stop ksm.service',
    'unmask ksm.service',
    'start ksmtuned.service',
    'start nothere.service',
    'stop nothere.service',
    'enable nothere.service',
    'is-enabled nothere.service',
    'is-enabled ksm.service',
)


def test_fake_systemctl_answers_like_the_real_one(service):
    fake = fakes.debian(active=True, version=_systemd_version(service))
    for command in SEQUENCE:
        real = service.sh('systemctl %s' % command, check=False)
        rc, out, err = fake.run_command(['systemctl'] + shlex.split(command), environ_update={'LC_ALL': 'C'})
        assert rc == real.returncode, (command, real.stderr, err)
        if rc != 0 or command.startswith('is-enabled'):
            assert out.strip() == real.stdout.strip(), (command, real.stdout, out)
            assert err.strip() == real.stderr.strip(), (command, real.stderr, err)
        fields = ('LoadState', 'ActiveState', 'SubState', 'UnitFileState', 'CanReload')
        shown = service.show(KSM, TUNED, 'qemu-kvm.service')
        rc, out, err = fake.run_command(['systemctl', 'show', '-p', PROPS, KSM, TUNED, 'qemu-kvm.service'],
                                        environ_update={'LC_ALL': 'C'})
        blocks = [dict(line.split('=', 1) for line in block.splitlines()) for block in out.strip().split('\n\n')]
        for unit, block in zip((KSM, TUNED, 'qemu-kvm.service'), blocks):
            real_props = shown[unit]
            # a restart of ksm leaves ksmtuned activating for a moment: compare once it settled
            if real_props['ActiveState'] == 'activating' or block['ActiveState'] == 'activating':
                continue
            for field in fields:
                assert block[field] == real_props[field], (command, unit, field, real_props, block)
            assert (KSM in block['Requires'].split()) == (KSM in real_props['Requires'].split()), (command, unit)
