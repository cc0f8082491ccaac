# -*- coding: utf-8 -*-
# Copyright: (c) 2026, samepage.ksm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""plugins/module_utils/_libvirt.py: names and patterns, selection, the definition edit, virsh against the fake.

Plain pytest, no Ansible import (runs on Python 3.8+).
"""

import pytest

from ansible_collections.samepage.ksm.plugins.module_utils import _libvirt
from ansible_collections.samepage.ksm.plugins.module_utils._libvirt import LibvirtError
from ansible_collections.samepage.ksm.tests.unit.fakes.virsh import FakeVirsh, definition


@pytest.mark.parametrize('selector', ['web01', 'tenant-*', 'db?', 'vm[0-9]', 'vm[!0-9]', 'a.b_c+d:e@f', 'gäst-1',
                                      'ns:vm', 'x' * 300])
def test_names_and_patterns_that_are_accepted(selector):
    assert _libvirt.check_selectors([selector]) == [selector]


@pytest.mark.parametrize('selector, shown', [
    ('a;reboot', "';'"), ('$(id)', "'$'"), ('`id`', "'`'"), ('a|b', "'|'"), ('a&b', "'&'"), ('a b', "' '"),
    ("it's", "\"'\""), ('a\nb', "'\\n'"), ('a\x00b', "'\\x00'"), ('../etc/passwd', "'/'"), ('a>b', "'>'"),
    ('a\\b', "'\\\\'"), ('{a,b}', "'{'"), ('~root', "'~'"), ('a!b', "'!' outside a bracket expression"),
])
def test_shell_metacharacters_and_worse_are_refused_naming_them(selector, shown):
    with pytest.raises(LibvirtError) as caught:
        _libvirt.check_selectors(['good', selector])
    assert 'domains' in caught.value.msg and shown in caught.value.msg and repr(selector) in caught.value.msg
    assert 'nothing was changed' in caught.value.msg
    assert caught.value.details['option'] == 'domains'


def test_an_empty_list_or_name_is_refused():
    with pytest.raises(LibvirtError, match='domains is empty'):
        _libvirt.check_selectors([])
    with pytest.raises(LibvirtError, match="'' is empty"):
        _libvirt.check_selectors([''])


@pytest.mark.parametrize('uri, good', [
    ('qemu:///system', True), ('qemu+ssh://root@kvm1/system', True), ('test:///default', True),
    ('qemu+unix:///system?socket=/tmp/x/libvirt-sock', True), ('qemu:///system\n', False), ('', False),
    ('qemu :///system', False), ('system', False), ('/var/run/libvirt/libvirt-sock', False),
])
def test_uri(uri, good):
    if good:
        assert _libvirt.check_uri(uri) == uri
    else:
        with pytest.raises(LibvirtError, match='Invalid value .* for uri'):
            _libvirt.check_uri(uri)


INVENTORY = _libvirt.Inventory(persistent=['db', 'tenant-a', 'tenant-b', 'web01'], active=['tenant-a', 'scratch'])


def test_inventory_tells_transient_domains():
    assert INVENTORY.transient == ['scratch']
    assert INVENTORY.names() == ['db', 'scratch', 'tenant-a', 'tenant-b', 'web01']


def test_select_names_and_patterns_sorted_without_duplicates():
    assert _libvirt.select(['web01', 'tenant-*', 'tenant-a'], INVENTORY) == ['tenant-a', 'tenant-b', 'web01']
    assert _libvirt.select(['Tenant-*', 'db'], _libvirt.Inventory(['Tenant-X', 'db'], [])) == ['Tenant-X', 'db']


def test_select_refuses_unknown_names_empty_patterns_and_transient_domains_at_once():
    with pytest.raises(LibvirtError) as caught:
        _libvirt.select(['nosuch', 'tenant-*', 'prod-*', 'scr*'], INVENTORY)
    msg = caught.value.msg
    assert "no domain named 'nosuch'" in msg
    assert "no domain matches 'prod-*'" in msg
    assert "'scratch' transient" in msg and 'define it persistently first' in msg
    assert 'domains known to libvirt: db, scratch, tenant-a, tenant-b, web01' in msg
    assert msg.endswith('Nothing was changed.')
    with pytest.raises(LibvirtError, match="no domain named 'TENANT-A'"):   # names are case-sensitive
        _libvirt.select(['TENANT-A'], INVENTORY)


PLAIN = definition('web01')
OPTED_OUT = definition('web01', nosharepages=True)
HUGEPAGES = definition('web01', extra="  <memoryBacking>\n    <hugepages/>\n    <locked/>\n  </memoryBacking>\n")
WITH_METADATA = definition('web01', extra=(
    "  <metadata>\n    <libosinfo:libosinfo xmlns:libosinfo='http://libosinfo.org/xmlns/libvirt/domain/1.0'>\n"
    "      <libosinfo:os id='http://debian.org/debian/12'/>\n    </libosinfo:libosinfo>\n  </metadata>\n"))


def test_has_nosharepages():
    assert _libvirt.has_nosharepages(OPTED_OUT) is True
    assert _libvirt.has_nosharepages(PLAIN) is False
    assert _libvirt.has_nosharepages(HUGEPAGES) is False
    with pytest.raises(LibvirtError, match='Cannot parse the definition of x'):
        _libvirt.has_nosharepages('<domain>', 'definition of x')


def test_adding_and_removing_nosharepages():
    added = _libvirt.with_nosharepages(PLAIN, True)
    assert _libvirt.has_nosharepages(added)
    assert added.index('<memoryBacking>') > added.index('<currentMemory')       # where libvirt writes it
    assert _libvirt.with_nosharepages(added, True).count('nosharepages') == 1
    removed = _libvirt.with_nosharepages(added, False)
    assert not _libvirt.has_nosharepages(removed) and 'memoryBacking' not in removed   # emptied: removed too
    # other memory backing settings stay
    both = _libvirt.with_nosharepages(HUGEPAGES, True)
    assert '<hugepages />' in both and '<locked />' in both and _libvirt.has_nosharepages(both)
    back = _libvirt.with_nosharepages(both, False)
    assert '<hugepages />' in back and '<locked />' in back and not _libvirt.has_nosharepages(back)
    # everything else is as it was
    assert _libvirt.with_nosharepages(added, False).replace('\n', '').replace(' ', '') == \
        _libvirt.with_nosharepages(PLAIN, False).replace('\n', '').replace(' ', '')


def test_namespaced_metadata_keeps_its_prefix():
    added = _libvirt.with_nosharepages(WITH_METADATA, True)
    assert 'xmlns:libosinfo="http://libosinfo.org/xmlns/libvirt/domain/1.0"' in added
    assert '<libosinfo:os id="http://debian.org/debian/12" />' in added


def test_memory_backing_text_for_the_diff():
    assert _libvirt.memory_backing_text(PLAIN) == ''
    assert _libvirt.memory_backing_text(OPTED_OUT) == '<memoryBacking>\n  <nosharepages />\n</memoryBacking>\n'
    assert _libvirt.memory_backing_text(_libvirt.with_nosharepages(HUGEPAGES, True)) == (
        '<memoryBacking>\n  <hugepages />\n  <locked />\n  <nosharepages />\n</memoryBacking>\n')


# ---------------------------------------------------------------------------------------------------
# Virsh against the fake virsh

def virsh_for(fake, clock=None, sleep=None):
    kwargs = {}
    if clock:
        kwargs.update(clock=clock, sleep=sleep)
    return _libvirt.Virsh(fake.run_command, '/usr/bin/virsh', 'qemu:///system', **kwargs)


def test_virsh_lists_reads_and_defines():
    fake = FakeVirsh()
    fake.add('web01', active=True)
    fake.add('tenant-a', nosharepages=True)
    fake.add('scratch', persistent=False, active=True)
    virsh = virsh_for(fake)
    inventory = virsh.inventory()
    assert inventory.persistent == ['web01', 'tenant-a'] and inventory.active == ['web01', 'scratch']
    assert inventory.transient == ['scratch']
    domains = _libvirt.read_domains(virsh, ['tenant-a', 'web01'], inventory)
    assert [(d.name, d.nosharepages, d.active, d.running) for d in domains] == [
        ('tenant-a', True, False, None), ('web01', False, True, False)]
    virsh.define('web01', _libvirt.with_nosharepages(domains[1].definition, True))
    assert _libvirt.has_nosharepages(virsh.definition('web01'))
    assert not _libvirt.has_nosharepages(virsh.running_definition('web01'))    # runs as it was started
    assert all(environment == {'LC_ALL': 'C', 'LANG': 'C'} for environment in fake.environments)


def test_virsh_errors_carry_virshs_words():
    fake = FakeVirsh()
    virsh = virsh_for(fake)
    with pytest.raises(LibvirtError, match="virsh dumpxml --inactive nosuch failed .exit status 1.: error: failed to "
                                           "get domain 'nosuch'"):
        virsh.definition('nosuch')
    fake.up = False
    with pytest.raises(LibvirtError) as caught:
        virsh.inventory()
    assert caught.value.msg.startswith('Cannot connect to libvirt at qemu:///system (is libvirtd or virtqemud '
                                       'running?): error: failed to connect to the hypervisor')


def test_virsh_is_looked_up_and_its_absence_names_the_package():
    with pytest.raises(LibvirtError) as caught:
        _libvirt.Virsh.find(lambda name: None, None, 'qemu:///system')
    assert 'virsh was not found' in caught.value.msg and 'libvirt-clients' in caught.value.msg
    assert caught.value.details['package'] == 'libvirt-clients'
    assert _libvirt.Virsh.find(lambda name: '/usr/bin/' + name, None, 'qemu:///system').binary == '/usr/bin/virsh'


def test_restart_by_shutdown_waits_for_the_guest_and_by_destroy_does_not():
    fake = FakeVirsh(shutdown_polls=3)
    fake.add('web01', active=True)
    fake.add('db', active=True)
    now = [0.0]

    def sleep(seconds):
        now[0] += seconds
    virsh = virsh_for(fake, clock=lambda: now[0], sleep=sleep)
    virsh.restart('web01', 'shutdown', 300)
    assert [call[0] for call in fake.calls] == ['shutdown', 'domstate', 'domstate', 'domstate', 'domstate', 'start']
    assert fake.domains['web01'].active
    del fake.calls[:]
    virsh.restart('db', 'destroy', 300)
    assert fake.calls == [['destroy', 'db'], ['start', 'db']]


def test_a_guest_that_ignores_shutdown_fails_naming_it_and_keeps_running():
    fake = FakeVirsh()
    fake.add('noacpi', active=True, acpi=False)
    now = [0.0]

    def sleep(seconds):
        now[0] += seconds
    virsh = virsh_for(fake, clock=lambda: now[0], sleep=sleep)
    with pytest.raises(LibvirtError) as caught:
        virsh.restart('noacpi', 'shutdown', 5)
    assert "Domain 'noacpi' did not shut down within 5 s" in caught.value.msg
    assert 'restart_mode=destroy' in caught.value.msg and caught.value.details['option'] == 'shutdown_timeout'
    assert fake.domains['noacpi'].active and 'start' not in [call[0] for call in fake.calls]
