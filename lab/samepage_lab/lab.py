# -*- coding: utf-8 -*-
# Copyright: (c) 2026, samepage.ksm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A lab: a set of guests with a state directory (lab.json, pid files, inventory), brought up and down
together; `run_with_lab` holds one up while a command runs."""

import contextlib
import json
import os
import shlex
import signal
import subprocess
import time

from . import inventory as lab_inventory
from .accel import choose_accel
from .common import LabError, default_cache_dir, default_state_dir, flocked, fmt_seconds, free_port, in_parallel, port_in_use, say
from .guest import BOOT_TIMEOUT, Guest, GuestSpec
from .hosttools import BOOT_TOOLS, ensure_tools
from .images import build_images, ssh_keypair


# The default lab: both kernel generations, one guest with two NUMA nodes, one guest per example group.
DEFAULT_GUESTS = (
    GuestSpec('lab-dense', 'bookworm', 'dense', memory_mib=1024, cpus=1, numa_nodes=1),
    GuestSpec('lab-balanced', 'trixie', 'balanced', memory_mib=1024, cpus=2, numa_nodes=2),
    GuestSpec('lab-secure', 'trixie', 'secure', memory_mib=1024, cpus=1, numa_nodes=1),
)
GROUPS = ('dense', 'balanced', 'secure')


class Lab:
    """A set of guests with a state directory, sharing an image cache with every other lab."""

    def __init__(self, state_dir=None, cache_dir=None, specs=None, host_merge=True):
        # host_merge: whether this machine's KSM may merge the guests' RAM (QEMU's mem-merge, on by
        # default: the seed's hypervisor scenario). The test lab turns it off, so that the system tests'
        # use of this machine's KSM and the lab never see each other's pages.
        self.host_merge = host_merge
        self.state_dir = os.path.abspath(state_dir or default_state_dir())
        self.cache_dir = os.path.abspath(cache_dir or default_cache_dir())
        self.state_path = os.path.join(self.state_dir, 'lab.json')
        self.inventory_dir = os.path.join(self.state_dir, 'inventory')
        self.inventory = os.path.join(self.inventory_dir, 'hosts.yml')
        self.key = os.path.join(self.cache_dir, 'ssh', 'lab_ed25519')
        self.accel = None
        self.accel_reason = None
        saved = self._load()
        if specs is None:
            specs = [GuestSpec.from_dict(g) for g in saved.get('guests', [])] or list(DEFAULT_GUESTS)
        self.guests = []
        saved_by_name = {g['name']: g for g in saved.get('guests', [])}
        for spec in specs:
            old = saved_by_name.get(spec.name, {})
            self.guests.append(Guest(self, spec, port=old.get('port'), pid=old.get('pid'),
                                     accel=old.get('accel'), kernel_release=old.get('kernel_release'),
                                     image_dir=old.get('image_dir')))
        self.accel = saved.get('accel')
        self.accel_reason = saved.get('accel_reason')

    def _load(self):
        try:
            with open(self.state_path) as handle:
                return json.load(handle)
        except (OSError, ValueError):
            return {}

    def save(self):
        os.makedirs(self.state_dir, exist_ok=True)
        data = {'guests': [g.to_dict() for g in self.guests], 'accel': self.accel,
                'accel_reason': self.accel_reason, 'cache_dir': self.cache_dir, 'key': self.key,
                'inventory': self.inventory}
        tmp = self.state_path + '.tmp'
        with open(tmp, 'w') as handle:
            json.dump(data, handle, indent=2, sort_keys=True)
        os.rename(tmp, self.state_path)

    def guest(self, name):
        for guest in self.guests:
            if guest.name == name or guest.name == 'lab-' + name or guest.group == name:
                return guest
        raise LabError('no guest %r in this lab (guests: %s)' % (name, ', '.join(g.name for g in self.guests)))

    @contextlib.contextmanager
    def locked(self):
        with flocked(os.path.join(self.state_dir, 'lab.lock'), 'the lab in %s' % self.state_dir):
            yield

    # ---- build / up / down

    def build(self):
        ensure_tools(['ssh-keygen'])
        self.key, pubkey = ssh_keypair(self.cache_dir)
        suites = sorted(set(g.suite for g in self.guests))
        return build_images(self.cache_dir, suites, pubkey)

    def up(self, tie_to_parent=False, timeout=BOOT_TIMEOUT):
        """Boot every guest that is not running; wait for SSH; write the inventory."""
        ensure_tools(BOOT_TOOLS)
        images = self.build()
        with self.locked():
            todo = [g for g in self.guests if not (g.running() and g.answers())]
            for guest in todo:
                guest.stop()
            if not todo:
                say('all %d guests already running' % len(self.guests))
                self.write_inventory()
                return self.guests
            os.makedirs(self.state_dir, exist_ok=True)
            if self.accel is None or not any(g.running() for g in self.guests):
                any_image = images[todo[0].suite]
                self.accel, self.accel_reason = choose_accel(any_image.kernel, self.state_dir)
            say('accelerator: %s (%s)' % (self.accel.upper(), self.accel_reason))
            started = time.time()
            try:
                taken = set(g.port for g in self.guests if g.running())
                for guest in todo:
                    guest.port = self._pick_port(taken)
                    taken.add(guest.port)
                    guest.start(images[guest.suite], self.accel, tie_to_parent=tie_to_parent)
                    say('%s: started QEMU pid %d (Debian %d, %d MiB, %d vCPU%s, %s), SSH on 127.0.0.1:%d'
                        % (guest.name, guest.pid, guest.debian, guest.spec.memory_mib, guest.spec.cpus,
                           's' if guest.spec.cpus > 1 else '',
                           '%d NUMA nodes' % guest.numa_nodes if guest.numa_nodes > 1 else 'one NUMA node',
                           guest.port))
                self.save()
                self._wait_all(todo, timeout)
            except BaseException:
                say('bringing the lab up failed: stopping the guests it started')
                for guest in todo:
                    guest.stop()
                self.save()
                raise
            say('%d guest(s) up in %s' % (len(todo), fmt_seconds(time.time() - started)))
            self.save()
            self.write_inventory()
            return self.guests

    def _pick_port(self, taken):
        base = os.environ.get('SAMEPAGE_LAB_PORT_BASE')
        if base:
            port = int(base)
            while port in taken or port_in_use(port):
                port += 1
            return port
        while True:
            port = free_port()
            if port not in taken:
                return port

    def _wait_all(self, guests, timeout):
        errors = in_parallel(lambda guest: guest.wait_ssh(timeout=timeout), guests, lambda guest: 'wait-' + guest.name)
        if errors:
            raise LabError('\n\n'.join(str(e) for e in errors))

    def down(self, quiet=False):
        """Stop every guest of this lab (only processes it started), free the ports; True if any ran."""
        stopped = []
        with self.locked():
            for guest in self.guests:
                port = guest.port
                pids = guest.stop()
                if pids:
                    stopped.append(guest)
                    if not quiet:
                        say('%s: stopped QEMU pid %s; port %s %s' % (
                            guest.name, ', '.join(str(p) for p in pids), port,
                            'still in use!' if port and port_in_use(port) else 'free'))
                guest.pid = None
            # Guests recorded under another name (an older lab spec) in the same state directory.
            guests_dir = os.path.join(self.state_dir, 'guests')
            known = set(g.name for g in self.guests)
            if os.path.isdir(guests_dir):
                for name in sorted(os.listdir(guests_dir)):
                    if name not in known:
                        stray = Guest(self, GuestSpec(name, 'bookworm', 'dense'))
                        if stray.stop():
                            stopped.append(stray)
                            if not quiet:
                                say('%s: stopped a guest left from an earlier lab' % name)
            if os.path.isdir(self.state_dir):
                self.save()
        if not quiet and not stopped:
            say('no guest of the lab in %s was running' % self.state_dir)
        return bool(stopped)

    # ---- inventory (lab/samepage_lab/inventory.py)

    def write_inventory(self):
        return lab_inventory.write_inventory(self)

    def collections_path(self):
        """A directory with ansible_collections/samepage/ksm linked to this clone."""
        return lab_inventory.collections_path(self.state_dir)

    def ansible_env(self):
        """os.environ for ansible commands against this lab (the collection resolves to this clone)."""
        return lab_inventory.ansible_env(self.state_dir)

    def status(self):
        rows = []
        for guest in self.guests:
            running = guest.running()
            rows.append((guest, running, running and guest.answers(timeout=10)))
        return rows


OWNER_FILE = 'owner.pid'   # the process that holds a lab started by `run` (tests/lab/conftest.py sweeps)


def run_with_lab(lab, command):
    """Boot the lab, run command with SAMEPAGE_LAB_REUSE set to its state directory, stop the lab.

    The guests are tied to this process (the kernel ends them if it dies), SIGTERM/SIGHUP/SIGINT are
    passed on to the command, and the lab is stopped however the command ends. Returns its exit status.
    """
    if not command:
        raise LabError('run: no command given (labctl run -- COMMAND [ARGS...])')
    os.makedirs(lab.state_dir, exist_ok=True)
    with open(os.path.join(lab.state_dir, OWNER_FILE), 'w') as handle:
        handle.write('%d\n' % os.getpid())
    child = None
    starting = []       # non-empty while the command is being started
    pending = []        # a signal that came meanwhile, passed on once it runs

    def forward(signum, frame):
        if child is not None and child.poll() is None:
            child.send_signal(signum)
        elif starting:
            pending.append(signum)
        else:           # while the lab boots: stop booting (the finally below stops the guests)
            raise KeyboardInterrupt('signal %d' % signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)}
    try:
        lab.up(tie_to_parent=True)
        say('running %s' % ' '.join(shlex.quote(arg) for arg in command))
        env = dict(os.environ, SAMEPAGE_LAB_REUSE=lab.state_dir, SAMEPAGE_LAB_INVENTORY=lab.inventory)
        starting.append(True)
        child = subprocess.Popen(command, env=env)
        del starting[:]
        if pending:
            child.send_signal(pending[-1])
        return child.wait()     # a signal meanwhile goes to the child (forward), which then ends
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if child is not None and child.poll() is None:
            child.terminate()
            try:
                child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                child.kill()
        lab.down()
        try:
            os.unlink(os.path.join(lab.state_dir, OWNER_FILE))
        except OSError:
            pass
