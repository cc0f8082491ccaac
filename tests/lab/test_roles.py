# -*- coding: utf-8 -*-
# Copyright: (c) 2026, samepage.ksm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The roles samepage.ksm.ksm and samepage.ksm.ksmtuned, through site.yml and inventory/example, on
the lab's real guests (lab-dense: Debian 12, lab-balanced: Debian 13 with two NUMA nodes, lab-secure:
Debian 13), over SSH, with real systemd.

Bad input comes first, on the balanced guest as the image has it (any task that ran would have changed
something); those tests use that guest alone, so they run beside the other one-guest tests. The others
use the whole lab, run in file order and build on each other: the converge in four steps, the
differences between the groups, a group variable changed, the libvirt hook, a host moved from dense
to secure, and a fixed scan rate on balanced followed by a reboot of every guest (the lab suite's proof
that persisted settings and service states survive a reboot, on both kernel generations and the NUMA
guest). A module fixture puts the guests back to the image's state before and after.
"""

import configparser
import copy
import json
import os
import shutil
import tempfile
import threading
import time

import pytest
import yaml

from ansible_collections.samepage.ksm.tests.lab.labtools import REPO, read_ksm, remove_boot_config, reset_ksm
from ansible_collections.samepage.ksm.tests.support.ansible_cli import run_playbook

SITE = os.path.join(REPO, 'site.yml')
EXAMPLE_GROUP_VARS = os.path.join(REPO, 'inventory', 'example', 'group_vars')
WORKLOAD = os.path.join(REPO, 'tests', 'support', 'merge_workload.py')

CONF = '/etc/ksmtuned.conf'
CONF_BACKUP = '/root/ksmtuned.conf.before-samepage-tests'
HOOK = '/etc/libvirt/hooks/qemu.d/samepage-ksmtuned'
BOOT_UNIT = '/etc/systemd/system/samepage-ksm-sysfs.service'
UNITS = ('ksm.service', 'ksmtuned.service')
TUNER_UNIT = 'samepage-ksm-tuner.service'
TUNER_CONF = '/etc/samepage-ksm/tuner.conf'
TUNER_STATE = '/run/samepage-ksm/tuner.json'
TUNER_FILES = ('/etc/systemd/system/%s' % TUNER_UNIT, TUNER_CONF, '/usr/lib/samepage-ksm')
TUNER_TASK = 'Install and run the samepage tuner'
TUNER_REMOVE_TASK = 'Remove the samepage tuner, which would override the knobs'

RESTART_TASK = 'Start and enable ksmtuned, restarting it if its configuration changed'
HOOK_HANDLER = 'Restart libvirt so that it finds the ksmtuned hook'
UNMERGE_TASK = 'Unmerge every shared page, if memory allows it'

# Knobs ksmtuned rewrites every monitor interval while it runs: not part of a guest's "unchanged" state.
TUNED_KNOBS = ('run', 'pages_to_scan', 'sleep_millisecs')
# Files of /sys/kernel/mm/ksm that are settings (the rest are counters that move on their own).
SETTINGS = ('run', 'pages_to_scan', 'sleep_millisecs', 'merge_across_nodes', 'max_page_sharing',
            'use_zero_pages', 'smart_scan', 'stable_node_chains_prune_millisecs', 'advisor_mode',
            'advisor_max_cpu', 'advisor_min_pages_to_scan', 'advisor_max_pages_to_scan',
            'advisor_target_scan_time')


# ---------------------------------------------------------------------------------------------------
# Reading the guests

def sh(guest, command, check=True):
    return guest.ssh(command, check=check).stdout


def units(guest):
    """{unit: (ActiveState, UnitFileState, MainPID)} of ksm.service and ksmtuned.service."""
    out = sh(guest, 'systemctl show -p Id -p ActiveState -p UnitFileState -p MainPID %s' % ' '.join(UNITS))
    result = {}
    for block in out.strip().split('\n\n'):
        values = dict(line.split('=', 1) for line in block.splitlines() if '=' in line)
        result[values['Id']] = (values['ActiveState'], values['UnitFileState'], int(values['MainPID']))
    return result


def states(guest):
    """{unit: (ActiveState, UnitFileState)}."""
    return dict((unit, value[:2]) for unit, value in units(guest).items())


def tuner_unit(guest):
    """(ActiveState, UnitFileState, LoadState) of the samepage tuner's unit, e.g. ('inactive', '', 'not-found')."""
    out = sh(guest, 'systemctl show -p ActiveState -p UnitFileState -p LoadState %s' % TUNER_UNIT)
    values = dict(line.split('=', 1) for line in out.splitlines() if '=' in line)
    return values['ActiveState'], values['UnitFileState'], values['LoadState']


def tuner_status(guest):
    """The tuner's state file (None when there is none), with `alive`: its pid is a live tuner process."""
    out = sh(guest, 'if [ -e {s} ]; then cat {s}; fi'.format(s=TUNER_STATE)).strip()
    if not out:
        return None
    status = json.loads(out)
    status['alive'] = sh(guest, 'grep -qa samepage-ksm-tuner /proc/%d/cmdline && echo yes' % int(status['pid']),
                         check=False).strip() == 'yes'
    return status


def tuner_conf(guest):
    """The [tuner] section of /etc/samepage-ksm/tuner.conf as {key: value}."""
    parser = configparser.ConfigParser()
    parser.read_string(sh(guest, 'cat %s' % TUNER_CONF))
    return dict(parser['tuner'])


def assert_tuner_absent(guest):
    assert tuner_unit(guest) == ('inactive', '', 'not-found'), tuner_unit(guest)
    assert sh(guest, 'ls -d %s 2>/dev/null' % ' '.join(TUNER_FILES), check=False).strip() == ''
    assert tuner_status(guest) is None


def assert_tuner_runs(guest, timeout=120):
    """The tuner's unit active and enabled, and its state file written by a live tuner in a working phase."""
    assert tuner_unit(guest) == ('active', 'enabled', 'loaded'), tuner_unit(guest)
    deadline = time.time() + timeout
    status = None
    while time.time() < deadline:
        status = tuner_status(guest)
        if status is not None and status['alive'] and status['phase'] in ('fast', 'idle', 'throttled', 'paused'):
            return status
        time.sleep(3)
    raise AssertionError('%s: the tuner does not report itself running: %s' % (guest.name, status))


def wait_for_phase(guest, phase, timeout):
    deadline = time.time() + timeout
    status = None
    while time.time() < deadline:
        status = tuner_status(guest)
        if status is not None and status['alive'] and status['phase'] == phase:
            return status
        time.sleep(3)
    raise AssertionError('%s: the tuner did not reach phase %s within %d s: %s' % (guest.name, phase, timeout, status))


def file_digest(guest, path):
    """sha256 and mode of a file on the guest, or None when it does not exist."""
    out = sh(guest, 'if [ -e %s ]; then sha256sum %s | cut -d" " -f1; stat -c %%a %s; fi' % (path, path, path))
    return tuple(out.split()) or None


def conf(guest):
    """/etc/ksmtuned.conf as {KEY: value} (comments and blank lines left out), and its raw text."""
    text = sh(guest, 'cat %s' % CONF)
    values = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith('#'):
            key, _sep, value = line.partition('=')
            values[key] = value
    return values, text


def snapshot(guest):
    """Everything the roles could change on a guest (minus what ksmtuned itself rewrites)."""
    live = read_ksm(guest)
    tuned_running = units(guest)['ksmtuned.service'][0] == 'active' or tuner_unit(guest)[0] == 'active'
    knobs = dict((name, live[name]) for name in SETTINGS
                 if name in live and not (tuned_running and name in TUNED_KNOBS))
    return {
        'knobs': knobs,
        'units': units(guest),
        'tuner': tuner_unit(guest),
        'tuner_files': sh(guest, 'ls -d %s 2>/dev/null' % ' '.join(TUNER_FILES), check=False),
        'conf': file_digest(guest, CONF),
        'boot_unit': file_digest(guest, BOOT_UNIT),
        'hook': file_digest(guest, HOOK),
    }


def guest_epoch(guest):
    return int(sh(guest, 'date +%s').strip())


def journal_lines(guest, unit, since):
    """Messages systemd logged about a unit since a guest time (epoch seconds)."""
    return sh(guest, 'journalctl -q -u %s --since=@%d -o cat' % (unit, since), check=False).splitlines()


def changed(run):
    return dict((host, stats['changed']) for host, stats in run.stats.items())


def task_results(run, task, host=None):
    """Results of a role task or handler (names come as '<role> : <name>')."""
    return [r for r in run.results if (r['task'] == task or r['task'].endswith(' : ' + task))
            and (host is None or r['host'] == host)]


def failures(run):
    """The failed and unreachable results of a run, host, task and message first (then the output's end)."""
    lines = ['%s: %s: %s' % (r['host'], r['task'], r['result'].get('msg', r['result']))
             for r in run.results if r['status'] in ('failed', 'unreachable')]
    return '\n'.join(lines) + '\n' + run.output[-4000:]


def assert_ok(run, hosts):
    assert run.rc == 0, failures(run)
    assert set(run.stats) == set(hosts), run.stats
    for host in hosts:
        assert run.stats[host]['failed'] == 0 and run.stats[host]['unreachable'] == 0, failures(run)


# ---------------------------------------------------------------------------------------------------
# Inventories: the lab's, or a copy of it with group_vars/hosts changed

class Inventory(object):
    """A copy of the lab's inventory and of inventory/example/group_vars that a test may change."""

    def __init__(self, lab):
        self.dir = tempfile.mkdtemp(prefix='samepage-roles-inventory-')
        with open(lab.inventory) as handle:
            self.hosts = yaml.safe_load(handle)
        shutil.copytree(EXAMPLE_GROUP_VARS, os.path.join(self.dir, 'group_vars'))
        self.write()

    @property
    def path(self):
        return os.path.join(self.dir, 'hosts.yml')

    def groups(self):
        return self.hosts['all']['children']['kvm_hosts']['children']

    def move(self, host, to_group):
        groups = self.groups()
        for group in groups.values():
            hosts = group.get('hosts') or {}
            if host in hosts:
                hostvars = hosts.pop(host)
                break
        else:
            raise AssertionError('%s is in no group' % host)
        groups.setdefault(to_group, {}).setdefault('hosts', {})[host] = hostvars
        self.write()

    def set_group_var(self, group, name, value):
        path = os.path.join(self.dir, 'group_vars', '%s.yml' % group)
        with open(path) as handle:
            data = yaml.safe_load(handle) or {}
        data[name] = value
        with open(path, 'w') as handle:
            yaml.safe_dump(data, handle, default_flow_style=False)

    def write(self):
        with open(self.path, 'w') as handle:
            yaml.safe_dump(self.hosts, handle, default_flow_style=False)

    def remove(self):
        shutil.rmtree(self.dir, ignore_errors=True)


def example_vars(group):
    with open(os.path.join(EXAMPLE_GROUP_VARS, '%s.yml' % group)) as handle:
        data = yaml.safe_load(handle) or {}
    with open(os.path.join(EXAMPLE_GROUP_VARS, 'kvm_hosts.yml')) as handle:
        common = yaml.safe_load(handle) or {}
    merged = copy.deepcopy(common)
    merged.update(data)
    return merged


# ---------------------------------------------------------------------------------------------------
# The guests' starting point

def to_image_state(lab, guest):
    """KSM and ksmtuned as the image has them: kernel defaults, both services enabled and running,
    the packaged ksmtuned.conf, no boot configuration, no hook, no samepage tuner."""
    sh(guest, 'systemctl disable --now {u} 2>/dev/null; rm -rf {f}; systemctl daemon-reload; '
              'systemctl reset-failed {u} 2>/dev/null; true'.format(u=TUNER_UNIT, f=' '.join(TUNER_FILES)))
    remove_boot_config(lab, guest)
    reset_ksm(guest)
    # The packaged ksmtuned.conf (every key commented out) is kept aside the first time; a guest that
    # never had it gets a file with the same effect.
    sh(guest, 'if [ -e {b} ]; then cp {b} {c}; elif grep -q samepage.ksm {c}; then '
              'echo "# Configuration file for ksmtuned (every setting at its default)." > {c}; '
              'else cp {c} {b}; fi; rm -f {h}; rm -f /run/samepage-roles-workload.pid; '
              'systemctl enable --now ksm.service ksmtuned.service'.format(b=CONF_BACKUP, c=CONF, h=HOOK))


@pytest.fixture(scope='module')
def fresh(lab, guests):
    """Every guest as the image has it, before the first test of this file and after the last."""
    def reset_all():
        threads = [threading.Thread(target=to_image_state, args=(lab, guest)) for guest in guests.values()]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    reset_all()
    yield guests
    for guest in guests.values():
        sh(guest, 'if [ -e /run/samepage-roles-workload.pid ]; then kill $(cat /run/samepage-roles-workload.pid); '
                  'fi; systemctl stop libvirtd.service; rm -f /etc/systemd/system/libvirtd.service; '
                  'systemctl daemon-reload', check=False)
    reset_all()


@pytest.fixture(scope='module')
def example_inventory(lab):
    """The lab's hosts with this repository's inventory/example/group_vars, unchanged (the lab's own
    inventory links the group_vars of the clone that wrote it, which need not be this one)."""
    pristine = Inventory(lab)
    yield pristine.path
    pristine.remove()


@pytest.fixture(scope='module')
def inventory(fresh, example_inventory):
    """example_inventory, for the tests that converge the whole lab from the image's state."""
    return example_inventory


@pytest.fixture(scope='module')
def unconverged(lab, numa_guest):
    """The balanced guest (two NUMA nodes) as the image has it, before and after: the bad-input tests
    use it alone, so they run beside the other one-guest tests (tests/lab/conftest.py)."""
    to_image_state(lab, numa_guest)
    yield numa_guest
    to_image_state(lab, numa_guest)


def site(inventory, **kwargs):
    """ansible-playbook site.yml against the lab's guests, with the given inventory."""
    return run_playbook(SITE, inventory=inventory, **kwargs)


def by_group(guests):
    return dict((guest.group, guest) for guest in guests.values())


# ---------------------------------------------------------------------------------------------------
# 1. Bad input fails before anything changes (on a guest that is not converged)

BAD_INPUTS = [
    ({'ksmtuned_npages_decay': 5}, 'ksmtuned_npages_decay=5 is out of range for KSM_NPAGES_DECAY'),
    ({'ksmtuned_npages_min': 2000, 'ksmtuned_npages_max': 1000},
     'ksmtuned_npages_min=2000 is greater than ksmtuned_npages_max=1000'),
    ({'ksmtuned_logfile': '/var/log/ksmtuned;reboot'}, 'is not valid for LOGFILE'),
    ({'ksmtuned_logfile': 'var/log/ksmtuned'}, 'is not valid for LOGFILE'),
    ({'ksmtuned_monitor_interval': 0}, 'ksmtuned_monitor_interval=0 is out of range for KSM_MONITOR_INTERVAL'),
    ({'ksmtuned_thres_coef': 'abc'}, "ksmtuned_thres_coef"),
    ({'ksm_settings': {'pages_to_scan': 5000}}, 'ksm_settings.pages_to_scan is set, but ksm_tuner is samepage'),
    ({'ksm_tuner_settings': {'cpu_budget': 0}}, 'ksm_tuner_settings is not valid: Invalid value 0 for cpu_budget'),
    ({'ksmtuned_enabled': True}, 'ksmtuned_enabled is true but ksm_tuner is samepage'),
    ({'ksm_settings': {'run': 1}}, 'ksm_settings.run'),
    ({'ksm_merge_across_nodes': 'sometimes'}, 'ksm_merge_across_nodes must be one of'),
    ({'ksm_memory_margin': '5 percent'}, 'ksm_memory_margin "5 percent" is not valid'),
    ({'ksm_settings': {'max_page_sharing': 1}}, 'Invalid value 1 for max_page_sharing'),
    ({'ksm_enabled': False, 'ksmtuned_enabled': True}, 'ksmtuned_enabled is true but ksm_enabled is false'),
]


@pytest.mark.parametrize('extra_vars, message', BAD_INPUTS, ids=[
    'decay-positive', 'min-above-max', 'logfile-metachar', 'logfile-relative', 'interval-zero',
    'coef-not-int', 'pages-with-samepage', 'tuner-budget', 'ksmtuned-with-samepage', 'run-not-a-setting',
    'numa-choice', 'margin', 'kernel-range', 'ksmtuned-without-ksm'])
def test_bad_input_fails_before_anything_changes(lab, unconverged, example_inventory, extra_vars, message):
    guest = unconverged
    assert guest.group == 'balanced'
    before = snapshot(guest)
    run = site(example_inventory, extra_vars=extra_vars, limit=guest.name)
    assert run.rc != 0
    assert guest.name in run.stats, failures(run)
    assert run.stats[guest.name]['failed'] == 1 and run.stats[guest.name]['changed'] == 0, run.stats
    failed = [r for r in run.results if r['status'] == 'failed']
    assert len(failed) == 1
    text = str(failed[0]['result'].get('msg', '')) + ' ' + ' '.join(failed[0]['result'].get('argument_errors', []))
    assert message in text, text
    assert snapshot(guest) == before


# ---------------------------------------------------------------------------------------------------
# 1b. A host without the KSM package and without a package source (the lab's guests reach none, and have
# no python3-apt): check mode reports the install without failing or changing anything; a real run fails
# naming the package, with nothing changed. Runs on the Debian 12 guest alone (a one-guest test), which
# gets its package back afterwards.

PACKAGE = 'ksmtuned'
KSMTUNED = {'ksm_tuner': 'ksmtuned'}
SAVED_PACKAGE = '/root/samepage-tests-saved-ksmtuned.deb'
INSTALL_REPORT = 'Report the install that a real run would do (check mode asks no package manager)'
INSTALL_FAILURE = 'Report the package that could not be installed'

# A .deb of the installed package rebuilt from what dpkg knows of it (the image keeps no .deb and the
# guests reach no package source): its control data (less the installed state), maintainer scripts,
# conffile list and files.
REPACK = r"""set -e
pkg={pkg}; out={out}
d=$(mktemp -d); mkdir "$d/DEBIAN"
dpkg-query -s "$pkg" | awk '/^(Status|Conffiles):/ {{skip=1; next}} /^[^ ]/ {{skip=0}} !skip' > "$d/DEBIAN/control"
for part in preinst postinst prerm postrm conffiles; do
    if [ -e "/var/lib/dpkg/info/$pkg.$part" ]; then cp "/var/lib/dpkg/info/$pkg.$part" "$d/DEBIAN/$part"; fi
done
dpkg-query -L "$pkg" | while read -r path; do
    if [ -d "$path" ]; then mkdir -p "$d$path"; elif [ -f "$path" ] || [ -L "$path" ]; then cp -a --parents "$path" "$d"; fi
done
dpkg-deb --root-owner-group --build "$d" "$out" >/dev/null
rm -rf "$d"
""".format(pkg=PACKAGE, out=SAVED_PACKAGE)


def test_host_without_the_package_check_mode_then_a_failed_install(lab, debian12, example_inventory):
    guest = debian12
    to_image_state(lab, guest)
    sh(guest, REPACK)
    try:
        sh(guest, 'dpkg -r %s >/dev/null 2>&1 && ! [ -e /usr/sbin/ksmtuned ]' % PACKAGE)
        before = snapshot(guest)

        # dense runs the samepage tuner, which needs no package: ksmtuned asks for it
        check = site(example_inventory, check=True, diff=True, limit=guest.name, extra_vars=KSMTUNED)
        assert_ok(check, [guest.name])
        assert changed(check)[guest.name] > 0, changed(check)
        report = task_results(check, INSTALL_REPORT, guest.name)
        assert len(report) == 1 and report[0]['result']['changed'], report
        assert snapshot(guest) == before
        assert sh(guest, 'dpkg-query -W -f="${Status}" %s' % PACKAGE, check=False).strip() != 'install ok installed'

        real = site(example_inventory, limit=guest.name, extra_vars=KSMTUNED)
        assert real.rc != 0
        assert guest.name in real.stats, failures(real)
        assert real.stats[guest.name]['failed'] == 1 and real.stats[guest.name]['changed'] == 0, real.stats
        failure = task_results(real, INSTALL_FAILURE, guest.name)
        assert len(failure) == 1 and failure[0]['status'] == 'failed', failures(real)
        message = failure[0]['result']['msg']
        assert message.startswith('Could not install %s, which provides the ksm and ksmtuned services on Debian 12' % PACKAGE), message
        assert 'nothing else was changed' in message, message
        assert snapshot(guest) == before
    finally:
        sh(guest, 'dpkg -i %s >/dev/null && rm -f %s' % (SAVED_PACKAGE, SAVED_PACKAGE))
        to_image_state(lab, guest)
    assert states(guest) == {'ksm.service': ('active', 'enabled'), 'ksmtuned.service': ('active', 'enabled')}


# ---------------------------------------------------------------------------------------------------
# 2. Converge: check mode, apply, apply again, check mode again

def test_converge_in_four_steps(lab, fresh, inventory):
    hosts = sorted(fresh)
    check = site(inventory, check=True, diff=True)
    assert_ok(check, hosts)
    assert all(changed(check)[host] > 0 for host in hosts), changed(check)
    # check mode wrote nothing: the guests are still as the image has them
    for guest in fresh.values():
        assert file_digest(guest, BOOT_UNIT) is None
        assert 'samepage.ksm' not in conf(guest)[1]
        assert states(guest) == {'ksm.service': ('active', 'enabled'), 'ksmtuned.service': ('active', 'enabled')}

    first = site(inventory, diff=True)
    assert_ok(first, hosts)
    assert all(changed(first)[host] > 0 for host in hosts), changed(first)

    again = site(inventory)
    assert_ok(again, hosts)
    assert changed(again) == dict((host, 0) for host in hosts), (changed(again), again.output[-6000:])

    check_again = site(inventory, check=True)
    assert_ok(check_again, hosts)
    assert changed(check_again) == dict((host, 0) for host in hosts), changed(check_again)


# ---------------------------------------------------------------------------------------------------
# 3. The groups differ on the guests as their group_vars say

# ksmtuned.conf keys, the role variables behind them and ksmtuned's defaults (the role's too).
CONF_KEYS = (
    ('KSM_MONITOR_INTERVAL', 'ksmtuned_monitor_interval', 60), ('KSM_SLEEP_MSEC', 'ksmtuned_sleep_msec', 10),
    ('KSM_NPAGES_BOOST', 'ksmtuned_npages_boost', 300), ('KSM_NPAGES_DECAY', 'ksmtuned_npages_decay', -50),
    ('KSM_NPAGES_MIN', 'ksmtuned_npages_min', 64), ('KSM_NPAGES_MAX', 'ksmtuned_npages_max', 1250),
    ('KSM_THRES_COEF', 'ksmtuned_thres_coef', 20), ('KSM_THRES_CONST', 'ksmtuned_thres_const', 2048),
)


def expected_conf(group_vars):
    """The KEY=value lines ksmtuned.conf must hold for a group's variables (no LOGFILE, no DEBUG)."""
    return dict((key, str(group_vars.get(var, default))) for key, var, default in CONF_KEYS)


def assert_converged(guests):
    """Each group's guest as site.yml leaves it (only the groups among guests are checked)."""
    groups = by_group(guests)

    if 'dense' in groups:
        dense, dense_vars = groups['dense'], example_vars('dense')
        # dense: KSM on, the samepage tuner with its larger CPU budget (ksmtuned and ksm stopped and
        # disabled), the knobs live and persisted, the libvirt hook in place
        assert states(dense) == {'ksm.service': ('inactive', 'disabled'), 'ksmtuned.service': ('inactive', 'disabled')}
        assert_tuner_runs(dense)
        assert tuner_conf(dense) == dict((key, str(value)) for key, value in dense_vars['ksm_tuner_settings'].items())
        values, text = conf(dense)
        assert values == expected_conf(dense_vars), text
        live = read_ksm(dense)
        for knob, value in dense_vars['ksm_settings'].items():
            if knob in live:
                expected = str(int(value)) if isinstance(value, bool) else str(value)
                assert live[knob] == expected, (knob, live[knob])
        assert live['merge_across_nodes'] == '1'     # one NUMA node: auto merges across nodes
        unit_text = sh(dense, 'cat %s' % BOOT_UNIT)
        assert "echo %s > /sys/kernel/mm/ksm/max_page_sharing'" % dense_vars['ksm_settings']['max_page_sharing'] in unit_text
        assert "/sys/kernel/mm/ksm/run'" not in unit_text   # the tuner owns run
        assert file_digest(dense, HOOK)[1] == '755'

    if 'balanced' in groups:
        balanced = groups['balanced']
        # balanced: KSM on, the samepage tuner at its own defaults, per-node merging on the two-node guest
        assert states(balanced) == {'ksm.service': ('inactive', 'disabled'),
                                    'ksmtuned.service': ('inactive', 'disabled')}
        assert_tuner_runs(balanced)
        assert tuner_conf(balanced) == {}       # every key at the tuner's default
        values, text = conf(balanced)
        assert values == expected_conf(example_vars('balanced')), text
        assert values == expected_conf({}), text   # balanced keeps ksmtuned's own defaults
        assert 'DEBUG' not in values and 'LOGFILE' not in values
        live = read_ksm(balanced)
        assert balanced.numa_nodes == 2 and live['merge_across_nodes'] == '0'
        assert live['max_page_sharing'] == '256' and live['use_zero_pages'] == '0'
        assert "echo 0 > /sys/kernel/mm/ksm/merge_across_nodes'" in sh(balanced, 'cat %s' % BOOT_UNIT)
        assert file_digest(balanced, HOOK) is None

    if 'secure' in groups:
        secure = groups['secure']
        # secure: KSM off, nothing shared, both services stopped and disabled, run=0 persisted
        assert states(secure) == {'ksm.service': ('inactive', 'disabled'), 'ksmtuned.service': ('inactive', 'disabled')}
        assert_tuner_absent(secure)
        live = read_ksm(secure)
        assert live['run'] in ('0', '2') and live['pages_shared'] == '0' and live['pages_sharing'] == '0'
        assert "echo 0 > /sys/kernel/mm/ksm/run'" in sh(secure, 'cat %s' % BOOT_UNIT)
        assert file_digest(secure, HOOK) is None


def wait_for(guest, test, timeout, what):
    deadline = time.time() + timeout
    live = {}
    while time.time() < deadline:
        live = read_ksm(guest)
        if test(live):
            return live
        time.sleep(5)
    raise AssertionError('%s: %s not seen within %d s (run=%s pages_to_scan=%s)'
                         % (guest.name, what, timeout, live.get('run'), live.get('pages_to_scan')))


def test_groups_differ_on_the_guests(fresh):
    assert_converged(fresh)
    # The samepage tuner at work on dense and balanced: on an idle guest full scans soon gain nothing, so
    # it backs off from flat out to its idle rate, ksmd still running (ksmtuned stopped it on balanced);
    # its state file, the phase and the live knobs agree; secure has no tuner and ksmd stopped.
    for group in ('dense', 'balanced'):
        guest = by_group(fresh)[group]
        status = wait_for_phase(guest, 'idle', timeout=300)
        live = read_ksm(guest)
        assert live['run'] == '1' and int(live['pages_to_scan']) == status['pages_to_scan'] == 100, (live, status)
        assert status['cpu_budget_percent'] == example_vars(group).get('ksm_tuner_settings', {}).get('cpu_budget', 20)
    assert read_ksm(by_group(fresh)['secure'])['run'] in ('0', '2')


# ---------------------------------------------------------------------------------------------------
# 4. Changing a group variable restarts the samepage tuner exactly once

def test_group_variable_change_restarts_the_tuner_once(lab, fresh, inventory):
    dense = by_group(fresh)['dense']
    changed_inventory = Inventory(lab)
    try:
        settings = dict(example_vars('dense')['ksm_tuner_settings'], cpu_budget=35)
        changed_inventory.set_group_var('dense', 'ksm_tuner_settings', settings)
        pid_before = assert_tuner_runs(dense)['pid']
        since = guest_epoch(dense)
        time.sleep(1)

        run = site(changed_inventory.path, diff=True)
        assert_ok(run, sorted(fresh))
        assert changed(run) == {dense.name: 1, by_group(fresh)['balanced'].name: 0,
                                by_group(fresh)['secure'].name: 0}, changed(run)   # the file and the restart: one task
        tuner = task_results(run, TUNER_TASK, dense.name)
        assert len(tuner) == 1 and tuner[0]['result']['changed'], tuner
        assert tuner[0]['result']['files'] == [TUNER_CONF], tuner[0]['result']
        assert tuner[0]['result']['actions'] == ['restart %s' % TUNER_UNIT], tuner[0]['result']
        assert tuner_conf(dense)['cpu_budget'] == '35'
        status = assert_tuner_runs(dense)
        assert status['pid'] != pid_before and status['cpu_budget_percent'] == 35, status
        log = journal_lines(dense, TUNER_UNIT, since)
        assert len([line for line in log if line.startswith('Started ')]) == 1, log
        assert len([line for line in log if line.startswith('Stopped ')]) == 1, log

        # the same variables again: nothing changes, the tuner keeps running as it is (the other hosts were
        # shown unchanged by the run above)
        same = site(changed_inventory.path, limit=dense.name)
        assert_ok(same, [dense.name])
        assert sum(changed(same).values()) == 0, changed(same)
        assert tuner_status(dense)['pid'] == status['pid']
    finally:
        changed_inventory.remove()
    back = site(inventory, limit=dense.name)
    assert_ok(back, [dense.name])
    assert changed(back)[dense.name] == 1
    assert_converged(fresh)


# ---------------------------------------------------------------------------------------------------
# 5. The libvirt hook: kicks the tuner that runs (here the samepage tuner: a reload starts a fast phase),
# always exits 0, and a new hook is picked up without a manual restart

def test_libvirt_hook(lab, fresh, inventory):
    dense = by_group(fresh)['dense']
    secure = by_group(fresh)['secure']
    pid = wait_for_phase(dense, 'idle', timeout=300)['pid']
    since = guest_epoch(dense)
    time.sleep(1)
    out = sh(dense, 'echo "<domain/>" | {h} guest1 prepare begin -; echo "prepare=$?"; '
                    'echo "<domain/>" | {h} guest1 started begin -; echo "started=$?"; sleep 2; '
                    '{h} guest1 release end - </dev/null; echo "release=$?"; sleep 3'.format(h=HOOK))
    assert 'prepare=0' in out and 'started=0' in out and 'release=0' in out, out
    log = journal_lines(dense, TUNER_UNIT, since)
    assert len([line for line in log if line.startswith('Reloaded ')]) == 2, log   # started and release
    assert not [line for line in log if line.startswith('Started ')], log
    # the kick: from idle to a fast phase, with the reason (one journal line per change of phase)
    assert [line for line in log if 'phase=fast' in line and 'kick (SIGHUP)' in line], log
    assert tuner_status(dense)['pid'] == pid
    assert units(dense)['ksmtuned.service'][0] == 'inactive'     # the hook starts no other tuner

    # where ksmtuned does not run, the hook still exits 0 (a failing prepare/start hook would stop the guest)
    hook_text = sh(dense, 'cat %s' % HOOK)
    out = secure.ssh('cat > /tmp/samepage-hook && for op in prepare start started stopped release; do '
                     'sh /tmp/samepage-hook guest1 $op begin - </dev/null || echo "failed $op"; done; '
                     'rm -f /tmp/samepage-hook; echo done', input=hook_text).stdout
    assert out.strip() == 'done', out

    # libvirt looks for hooks when it starts: installing the hook restarts a running libvirtd (here a
    # stand-in unit), once, and only when the hook is new
    sh(dense, 'printf "[Unit]\\nDescription=stand-in for libvirtd\\n[Service]\\nExecStart=/bin/sleep infinity\\n" '
              '> /etc/systemd/system/libvirtd.service && systemctl daemon-reload && systemctl start libvirtd.service '
              '&& rm -f %s' % HOOK)
    try:
        libvirtd_pid = int(sh(dense, 'systemctl show -p MainPID --value libvirtd.service').strip())
        run = site(inventory, limit=dense.name)
        assert_ok(run, [dense.name])
        assert changed(run)[dense.name] == 2, changed(run)    # the hook and the restart
        handler = task_results(run, HOOK_HANDLER, dense.name)
        assert len(handler) == 1 and handler[0]['result']['changed'], handler
        new_pid = int(sh(dense, 'systemctl show -p MainPID --value libvirtd.service').strip())
        assert new_pid not in (0, libvirtd_pid)
        again = site(inventory, limit=dense.name)
        assert_ok(again, [dense.name])
        assert changed(again)[dense.name] == 0 and not task_results(again, HOOK_HANDLER)
        assert int(sh(dense, 'systemctl show -p MainPID --value libvirtd.service').strip()) == new_pid
    finally:
        sh(dense, 'systemctl stop libvirtd.service; rm -f /etc/systemd/system/libvirtd.service; '
                  'systemctl daemon-reload', check=False)


# ---------------------------------------------------------------------------------------------------
# 6. A host moved from dense to secure holds no shared page and runs neither service

def start_workload(guest, mib=64):
    """A process on the guest with mib MiB of identical MADV_MERGEABLE pages; returns its pid."""
    with open(WORKLOAD) as handle:
        guest.ssh('cat > /root/merge_workload.py', input=handle.read())
    sh(guest, 'rm -f /run/samepage-roles-workload.pid; setsid nohup python3 /root/merge_workload.py --mib %d '
              '--seconds 3600 --pidfile /run/samepage-roles-workload.pid >/dev/null 2>&1 < /dev/null &' % mib)
    deadline = time.time() + 120
    while time.time() < deadline:
        out = sh(guest, 'cat /run/samepage-roles-workload.pid 2>/dev/null', check=False).strip()
        if out:
            return int(out)
        time.sleep(2)
    raise AssertionError('the workload did not start on %s' % guest.name)


def merge_now(guest, min_sharing, timeout=180):
    """Make ksmd merge whatever tuner runs (ksmtuned would stop it on an idle guest): keep run=1 at a
    fast rate until pages_sharing reaches min_sharing. Merged pages stay merged when a tuner stops ksmd."""
    deadline = time.time() + timeout
    live = {}
    while time.time() < deadline:
        sh(guest, 'echo 5000 > /sys/kernel/mm/ksm/pages_to_scan; echo 1 > /sys/kernel/mm/ksm/run')
        time.sleep(3)
        live = read_ksm(guest)
        if int(live['pages_sharing']) >= min_sharing:
            return live
    raise AssertionError('%s: pages_sharing=%s after %d s' % (guest.name, live.get('pages_sharing'), timeout))


def test_move_dense_to_secure(lab, fresh, inventory):
    dense = by_group(fresh)['dense']
    pid = start_workload(dense)
    moved = Inventory(lab)
    try:
        shared = merge_now(dense, min_sharing=8000)
        assert int(shared['pages_shared']) > 0
        moved.move(dense.name, 'secure')

        run = site(moved.path, limit=dense.name, diff=True)
        assert_ok(run, [dense.name])
        unmerged = task_results(run, UNMERGE_TASK, dense.name)
        assert len(unmerged) == 1 and unmerged[0]['result']['changed'], unmerged
        assert unmerged[0]['result']['pages_unmerged'] >= 8000

        live = read_ksm(dense)
        assert live['pages_shared'] == '0' and live['pages_sharing'] == '0', live
        assert live['run'] in ('0', '2')
        assert states(dense) == {'ksm.service': ('inactive', 'disabled'),
                                 'ksmtuned.service': ('inactive', 'disabled')}
        assert_tuner_absent(dense)          # removed before the unmerge: it would start ksmd again
        assert sh(dense, 'kill -0 %d && echo alive' % pid).strip() == 'alive'   # unmerged, not killed
        assert file_digest(dense, HOOK) is None
        assert "echo 0 > /sys/kernel/mm/ksm/run'" in sh(dense, 'cat %s' % BOOT_UNIT)

        again = site(moved.path, limit=dense.name)
        assert_ok(again, [dense.name])
        assert changed(again)[dense.name] == 0, changed(again)
        time.sleep(5)
        live = read_ksm(dense)
        assert live['pages_shared'] == '0' and live['pages_sharing'] == '0', live
    finally:
        moved.remove()
        sh(dense, 'kill %d' % pid, check=False)

    back = site(inventory, limit=dense.name)
    assert_ok(back, [dense.name])
    assert_converged(fresh)


# ---------------------------------------------------------------------------------------------------
# 6b. ksm_tuner switched between samepage, ksmtuned and none in all six directions: each of the three
# guests takes a different tuner in each round (host variables), so three site.yml runs switch every
# direction once; each switch converges in its run and the run after it changes nothing.

TUNER_ROUNDS = (
    ('samepage', 'ksmtuned', 'none'),       # the start
    ('ksmtuned', 'none', 'samepage'),       # samepage->ksmtuned, ksmtuned->none, none->samepage
    ('samepage', 'ksmtuned', 'none'),       # ksmtuned->samepage, none->ksmtuned, samepage->none
)


TUNER_VARS = ('ksm_enabled', 'ksm_tuner', 'ksm_settings')


def tuner_vars(tuner):
    variables = {'ksm_enabled': True, 'ksm_tuner': tuner}   # over the group's (secure's KSM off too)
    if tuner == 'none':
        variables['ksm_settings'] = dict(FIXED)
    return variables


def assert_tuner_is(guest, tuner):
    """The guest runs the tuner it was given, and only that one."""
    if tuner == 'samepage':
        assert states(guest) == {'ksm.service': ('inactive', 'disabled'),
                                 'ksmtuned.service': ('inactive', 'disabled')}, states(guest)
        assert_tuner_runs(guest)
        assert read_ksm(guest)['run'] == '1'
        return
    assert_tuner_absent(guest)
    if tuner == 'ksmtuned':
        assert states(guest) == {'ksm.service': ('active', 'enabled'), 'ksmtuned.service': ('active', 'enabled')}
    else:
        assert states(guest) == {'ksm.service': ('active', 'enabled'), 'ksmtuned.service': ('inactive', 'disabled')}
        live = read_ksm(guest)
        # the fixed rate, written after the tuner that ran has stopped (the samepage tuner leaves its idle rate)
        assert (live['run'], live['pages_to_scan'], live['sleep_millisecs']) == (
            '1', str(FIXED['pages_to_scan']), str(FIXED['sleep_millisecs'])), live


def test_switching_tuners_in_every_direction(lab, fresh, inventory):
    order = [by_group(fresh)[group] for group in ('dense', 'balanced', 'secure')]
    hosts = sorted(fresh)
    switching = Inventory(lab)
    seen = set()
    try:
        previous = None
        for number, tuners in enumerate(TUNER_ROUNDS):
            for guest, tuner in zip(order, tuners):
                for group in switching.groups().values():
                    if guest.name in (group.get('hosts') or {}):
                        # this round's tuner variables replace the last round's (a fixed rate's
                        # ksm_settings would make the next tuner's input invalid)
                        hostvars = {name: value for name, value in (group['hosts'][guest.name] or {}).items()
                                    if name not in TUNER_VARS}
                        group['hosts'][guest.name] = dict(hostvars, **tuner_vars(tuner))
            switching.write()
            run = site(switching.path, diff=True)
            assert_ok(run, hosts)
            for guest, tuner in zip(order, tuners):
                assert_tuner_is(guest, tuner)
                if previous is not None:
                    assert changed(run)[guest.name] > 0, (number, guest.name, changed(run))
                    seen.add((previous[order.index(guest)], tuner))
            if previous is not None:
                again = site(switching.path)
                assert_ok(again, hosts)
                unchanged = dict((host, 0) for host in hosts)
                assert changed(again) == unchanged, (number, changed(again), again.output[-6000:])
                for guest, tuner in zip(order, tuners):
                    assert_tuner_is(guest, tuner)
            previous = tuners
        assert seen == set((a, b) for a in ('samepage', 'ksmtuned', 'none')
                           for b in ('samepage', 'ksmtuned', 'none') if a != b), seen
    finally:
        switching.remove()
    back = site(inventory)
    assert_ok(back, hosts)
    assert_converged(fresh)


# ---------------------------------------------------------------------------------------------------
# 6c. A configuration file broken by hand: the tuner refuses to start, naming the key, and is not
# restarted in a loop; the role writes the file back and starts it again

def test_broken_tuner_configuration_fails_clearly(lab, fresh, inventory):
    dense = by_group(fresh)['dense']
    assert_tuner_runs(dense)
    sh(dense, 'printf "[tuner]\\ncpu_budget = lots\\n" > %s' % TUNER_CONF)
    since = guest_epoch(dense)
    time.sleep(1)
    result = dense.ssh('systemctl restart %s' % TUNER_UNIT, check=False)
    assert result.returncode != 0
    time.sleep(5)
    out = sh(dense, 'systemctl show -p ActiveState -p Result -p NRestarts -p ExecMainStatus %s' % TUNER_UNIT)
    values = dict(line.split('=', 1) for line in out.splitlines() if '=' in line)
    assert values['ActiveState'] == 'failed' and values['NRestarts'] == '0', values   # no crash loop
    status_text = sh(dense, 'systemctl status --no-pager -l -n 20 %s' % TUNER_UNIT, check=False)
    log = journal_lines(dense, TUNER_UNIT, since)
    for text in (status_text, '\n'.join(log)):
        assert "Invalid value 'lots' for cpu_budget" in text, text
        assert TUNER_CONF in text, text
    time.sleep(10)      # still failed, still not restarted
    assert sh(dense, 'systemctl show -p NRestarts --value %s' % TUNER_UNIT).strip() == '0'

    run = site(inventory, limit=dense.name)
    assert_ok(run, [dense.name])
    assert changed(run)[dense.name] == 1, changed(run)
    assert_tuner_runs(dense)
    assert_converged(fresh)


# ---------------------------------------------------------------------------------------------------
# 7. balanced at a fixed scan rate (ksm_tuner: none), then a reboot: every host is still as converged

FIXED = {'pages_to_scan': 1000, 'sleep_millisecs': 50}


def reboot_all(guests):
    errors = []

    def reboot(guest):
        try:
            guest.reboot(progress=False)
            # SSH answers before systemd has finished starting units: wait for the boot to end
            guest.ssh('systemctl is-system-running --wait', check=False, timeout=600)
        except Exception as exc:  # reported below
            errors.append('%s: %s' % (guest.name, exc))

    threads = [threading.Thread(target=reboot, args=(guest,)) for guest in guests]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, '\n\n'.join(errors)


def assert_fixed_rate(balanced):
    """balanced with ksm_tuner: none: ksmd at the fixed rate, persisted, ksmtuned stopped and disabled."""
    assert states(balanced) == {'ksm.service': ('active', 'enabled'), 'ksmtuned.service': ('inactive', 'disabled')}
    live = read_ksm(balanced)
    assert (live['run'], live['pages_to_scan'], live['sleep_millisecs'], live['merge_across_nodes']) == (
        '1', str(FIXED['pages_to_scan']), str(FIXED['sleep_millisecs']), '0'), live
    unit_text = sh(balanced, 'cat %s' % BOOT_UNIT)
    for line in ("echo %d > /sys/kernel/mm/ksm/pages_to_scan'" % FIXED['pages_to_scan'],
                 "echo %d > /sys/kernel/mm/ksm/sleep_millisecs'" % FIXED['sleep_millisecs'],
                 "echo 1 > /sys/kernel/mm/ksm/run'", "echo 0 > /sys/kernel/mm/ksm/merge_across_nodes'"):
        assert line in unit_text, unit_text


def test_fixed_rate_then_reboot_keeps_everything_converged(lab, fresh, inventory):
    """One reboot proves persistence everywhere: dense (Debian 12) keeps its persisted knobs and the
    samepage tuner, started at boot,
    balanced (two NUMA nodes) its fixed run/pages_to_scan/sleep_millisecs and per-node merging with
    ksmtuned disabled, secure (Debian 13) run=0 with both services disabled."""
    groups = by_group(fresh)
    balanced = groups['balanced']
    fixed = Inventory(lab)
    try:
        fixed.set_group_var('balanced', 'ksm_tuner', 'none')
        fixed.set_group_var('balanced', 'ksm_settings', dict(FIXED))
        run = site(fixed.path, limit=balanced.name, diff=True)
        assert_ok(run, [balanced.name])
        assert changed(run)[balanced.name] > 0
        assert_fixed_rate(balanced)

        reboot_all(fresh.values())
        # the samepage tuner started at boot on dense: active, and its state file written by the new boot's
        # tuner (assert_converged checks the same again after the check-mode run)
        dense = groups['dense']
        status = assert_tuner_runs(dense)
        boot = int(float(sh(dense, 'cut -d" " -f1 /proc/uptime')))
        assert status['started'] >= time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(guest_epoch(dense) - boot - 5)), status

        check = site(fixed.path, check=True, diff=True)
        assert_ok(check, sorted(fresh))
        assert changed(check) == dict((host, 0) for host in fresh), (changed(check), check.output[-6000:])
        assert_fixed_rate(balanced)
        assert_converged(dict((name, guest) for name, guest in fresh.items() if guest is not balanced))
    finally:
        fixed.remove()
    back = site(inventory, limit=balanced.name)
    assert_ok(back, [balanced.name])
    assert "/sys/kernel/mm/ksm/run'" not in sh(balanced, 'cat %s' % BOOT_UNIT)
    assert_converged(fresh)
