# -*- coding: utf-8 -*-
# Copyright: (c) 2026, samepage.ksm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""libvirt_nosharepages against a real libvirtd (Debian's, private to the test) and real QEMU guests.

The daemon is tests/support/libvirt_daemon.py's PrivateLibvirtd: its own configuration, sockets and state in a
temporary directory, the machine's libvirt left alone. Two tiny domains that start without a disk (32 MiB, TCG):
the module, run by the real `ansible`, opts one out in four steps; the running one is listed until it restarts;
the restart makes its QEMU run with mem-merge=off; ksmd merges the other one's memory and ksm_info's audit tells
the two apart. Bad input fails with nothing changed. The fake virsh of the unit tests is compared with this
daemon's virsh, answer by answer. Every domain is destroyed and undefined, the daemon and its QEMUs are ended
by pid, and the host guard restores every KSM knob.
"""

import os
import re
import subprocess
import time

import pytest

from ansible_collections.samepage.ksm.plugins.module_utils import _ksm
from ansible_collections.samepage.ksm.plugins.module_utils import _libvirt
from ansible_collections.samepage.ksm.tests.support.ansible_cli import run_module
from ansible_collections.samepage.ksm.tests.support.four_steps import assert_four_steps
from ansible_collections.samepage.ksm.tests.support.host_packages import which
from ansible_collections.samepage.ksm.tests.support.libvirt_daemon import PrivateLibvirtd, skip_reason, tiny_domain
from ansible_collections.samepage.ksm.tests.unit.fakes.virsh import FakeVirsh

MODULE = 'samepage.ksm.libvirt_nosharepages'
TRUSTED = 'samepage-trusted'
TENANT = 'samepage-tenant'
ALL = 100000


@pytest.fixture(scope='module')
def libvirtd():
    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    with PrivateLibvirtd() as daemon:
        yield daemon


@pytest.fixture
def domains(libvirtd):
    """TRUSTED and TENANT defined (neither opted out, neither running); afterwards none left."""
    libvirtd.define(tiny_domain(TRUSTED))
    libvirtd.define(tiny_domain(TENANT))
    yield libvirtd
    for name in libvirtd.names('--name'):
        libvirtd.virsh('destroy', name)
    for name in libvirtd.names('--all', '--name'):
        libvirtd.virsh('undefine', name)
    assert libvirtd.qemu_pids() == {} and libvirtd.names('--all', '--name') == []


def definitions(daemon):
    return dict((name, daemon.virsh('dumpxml', '--inactive', name).stdout) for name in daemon.names('--all', '--name'))


def configured(daemon, name):
    return _libvirt.has_nosharepages(daemon.virsh('dumpxml', '--inactive', name).stdout)


def machine_option(argv):
    return [argv[index + 1] for index, arg in enumerate(argv[:-1]) if arg == '-machine']


@pytest.mark.every_controller
def test_opt_out_restart_and_audit_with_real_libvirt_and_qemu(domains, ksm_host):
    daemon = domains
    args = {'domains': ['samepage-ten*'], 'uri': daemon.uri}
    daemon.virsh('start', TENANT)
    argv_before = daemon.qemu_argv(TENANT)
    assert not any('mem-merge=off' in option for option in machine_option(argv_before))

    results = []
    for step, check in (('check mode', True), ('apply', False), ('apply again', False), ('check mode again', True)):
        before = definitions(daemon)
        result = run_module(MODULE, args, check=check, diff=True)
        results.append(result)
        if check:
            assert definitions(daemon) == before, '%s changed a definition' % step
    assert_four_steps(results, describe=lambda result: result.output)
    checked, applied, again, checked_again = results
    assert checked['changed_domains'] == applied['changed_domains'] == [TENANT]
    assert checked['diff'] == applied['diff'] == [{
        'before_header': '%s: <memoryBacking> of the persistent definition' % TENANT,
        'after_header': '%s: <memoryBacking> of the persistent definition' % TENANT,
        'before': '', 'after': '<memoryBacking>\n  <nosharepages />\n</memoryBacking>\n'}]
    for result in results:
        assert result['pending_restart'] == [TENANT], result
    assert configured(daemon, TENANT) and not configured(daemon, TRUSTED)
    # the running QEMU is the one started before: same process, same command line
    assert daemon.qemu_argv(TENANT) == argv_before

    restarted = run_module(MODULE, dict(args, restart=True, restart_mode='destroy'))
    assert restarted['failed'] is False, restarted.output
    assert restarted['changed'] is True and restarted['restarted'] == [TENANT] and restarted['pending_restart'] == []
    assert restarted['domains'][0]['running_nosharepages'] is True
    assert 'mem-merge=off' in machine_option(daemon.qemu_argv(TENANT))[0].split(',')
    again = run_module(MODULE, dict(args, restart=True, restart_mode='destroy'))
    assert again['changed'] is False and again['restarted'] == [] and again['pending_restart'] == []

    daemon.virsh('start', TRUSTED)
    pids = daemon.qemu_pids()
    assert 'mem-merge=off' not in machine_option(daemon.qemu_argv(TRUSTED))[0].split(',')
    ksm_host.set(run=1, pages_to_scan=5000)
    deadline = time.time() + 180
    while proc_ksm_stat(pids[TRUSTED]).get('ksm_merging_pages', 0) == 0:
        assert time.time() < deadline, 'the trusted guest merged nothing in 180 s: %r' % proc_ksm_stat(pids[TRUSTED])
        time.sleep(0.5)
    ksm_host.set(run=0)
    kernel = dict((name, proc_ksm_stat(pid)) for name, pid in pids.items())
    audit = run_module('samepage.ksm.ksm_info', {'max_processes': ALL})
    assert audit['failed'] is False, audit.output
    guests = dict((guest['pid'], guest) for guest in audit['guests'])
    tenant, trusted = guests[pids[TENANT]], guests[pids[TRUSTED]]
    assert (tenant['name'], tenant['mem_merge'], tenant['mergeable'], tenant['merging_pages'], tenant['verdict']) == (
        TENANT, False, False, 0, 'opted-out'), tenant
    assert kernel[TENANT]['ksm_mergeable'] is False and kernel[TENANT]['ksm_merging_pages'] == 0
    assert (trusted['name'], trusted['mem_merge'], trusted['mergeable']) == (TRUSTED, True, True), trusted
    assert trusted['merging_pages'] == kernel[TRUSTED]['ksm_merging_pages'] > 0
    assert trusted['verdict'] in ('saves', 'costs-more-than-it-saves'), trusted

    # state=absent: the definition loses it at once, the running QEMU keeps mem-merge=off until it restarts
    back = run_module(MODULE, {'domains': [TENANT], 'uri': daemon.uri, 'state': 'absent'})
    assert back['failed'] is False and back['changed'] is True, back.output
    assert back['pending_restart'] == [TENANT] and not configured(daemon, TENANT)
    assert 'mem-merge=off' in machine_option(daemon.qemu_argv(TENANT))[0].split(',')


def proc_ksm_stat(pid):
    with open('/proc/%d/ksm_stat' % pid) as handle:
        return _ksm.parse_ksm_stat(handle.read())


def test_bad_input_and_libvirt_down_change_nothing(domains):
    daemon = domains
    transient = os.path.join(daemon.root, 'transient.xml')
    with open(transient, 'w') as handle:
        handle.write(tiny_domain('samepage-transient'))
    daemon.virsh('create', transient)
    before = definitions(daemon)
    cases = [
        ({'domains': ['samepage-nosuch']}, "no domain named 'samepage-nosuch'"),
        ({'domains': ['prod-*']}, "no domain matches 'prod-*'"),
        ({'domains': ['samepage-*']}, "'samepage-transient' transient"),
        ({'domains': [TENANT + ';reboot']}, "contains ';'"),
        ({'domains': [TENANT], 'uri': 'qemu+unix:///system?socket=%s.down' % daemon.socket},
         'Cannot connect to libvirt at qemu+unix:///system?socket='),
    ]
    for args, words in cases:
        args.setdefault('uri', daemon.uri)
        result = run_module(MODULE, args)
        assert result['failed'] is True and result['changed'] is False, result.output
        assert words in result['msg'], result['msg']
    assert definitions(daemon) == before
    assert sorted(daemon.names('--name')) == ['samepage-transient']


def unique(text):
    """Text with its uuids masked: libvirt makes a random one for a definition without one."""
    return re.sub(r'[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}', '<uuid>', text)


def test_the_fake_virsh_answers_as_libvirt_does(libvirtd):
    """Every answer the unit tests rely on, from the real virsh and from the fake (tests/unit/fakes/virsh.py)."""
    real = libvirtd
    fake = FakeVirsh(uri=real.uri)
    directory = real.root
    files = {}
    for name, nosharepages in (('samepage-fake-a', False), ('samepage-fake-b', True)):
        files[name] = os.path.join(directory, name + '.xml')
        with open(files[name], 'w') as handle:
            handle.write(tiny_domain(name, nosharepages))
    files['bad'] = os.path.join(directory, 'bad.xml')
    with open(files['bad'], 'w') as handle:
        handle.write('<domain><name>x</name></domain')
    files['transient'] = os.path.join(directory, 'samepage-fake-t.xml')
    with open(files['transient'], 'w') as handle:
        handle.write(tiny_domain('samepage-fake-t'))
    script = [
        ['list', '--name', '--all', '--persistent'], ['list', '--name'],
        ['define', files['samepage-fake-a']], ['define', files['samepage-fake-b']],
        ['list', '--name', '--all', '--persistent'], ['list', '--name'],
        ['start', 'samepage-fake-a'], ['start', 'samepage-fake-a'], ['list', '--name'],
        ['domstate', 'samepage-fake-a'], ['domstate', 'samepage-fake-b'],
        ['dumpxml', '--inactive', 'samepage-fake-b'], ['dumpxml', 'samepage-fake-a'],
        ['dumpxml', '--inactive', 'nosuch'], ['dumpxml', 'nosuch'], ['domstate', 'nosuch'], ['start', 'nosuch'],
        ['destroy', 'samepage-fake-b'], ['shutdown', 'samepage-fake-b'],
        ['define', files['samepage-fake-b'] + '.missing'], ['define', files['bad']],
        ['create', files['transient']], ['create', files['transient']], ['list', '--name'], ['list', '--name', '--all', '--persistent'],
        ['dumpxml', '--inactive', 'samepage-fake-t'],
        ['destroy', 'samepage-fake-a'], ['destroy', 'samepage-fake-t'], ['list', '--name', '--all'],
    ]
    try:
        for args in script:
            got = real.virsh(*args, check=False)
            rc, out, err = fake.run_command(['virsh', '-c', real.uri] + args, environ_update=_libvirt.ENVIRONMENT)
            where = 'virsh %s: real (%d, %r, %r), fake (%d, %r, %r)' % (
                ' '.join(args), got.returncode, got.stdout[:200], got.stderr, rc, out[:200], err)
            assert rc == got.returncode, where
            if args[0] == 'dumpxml' and rc == 0:
                # libvirt's layout is its own; what matters is what the definition says, and how the output ends
                assert _libvirt.has_nosharepages(out) == _libvirt.has_nosharepages(got.stdout), where
                assert out.endswith('</domain>\n\n') and got.stdout.endswith('</domain>\n\n'), where
            elif args == ['define', files['bad']]:
                assert err.splitlines()[0] == got.stderr.splitlines()[0], where    # then libxml2's own words
            else:
                assert (out, unique(err)) == (got.stdout, unique(got.stderr)), where
        # a daemon that is not there
        got = subprocess.run([which('virsh'), '-c', 'qemu+unix:///system?socket=%s.down' % real.socket, 'list',
                              '--name'], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             env=dict(os.environ, LC_ALL='C'), universal_newlines=True, check=False)
        fake.up = False
        rc, out, err = fake.run_command(['virsh', '-c', real.uri, 'list', '--name'], environ_update=_libvirt.ENVIRONMENT)
        assert (rc, out, err.splitlines()[0]) == (got.returncode, got.stdout, got.stderr.splitlines()[0]), (got, err)
        assert 'Failed to connect socket to' in got.stderr and 'Failed to connect socket to' in err
    finally:
        for name in real.names('--name'):
            real.virsh('destroy', name, check=False)
        for name in real.names('--all', '--name'):
            real.virsh('undefine', name, check=False)
