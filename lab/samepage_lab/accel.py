# -*- coding: utf-8 -*-
# Copyright: (c) 2026, samepage.ksm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The accelerator: KVM only where it really boots the guest kernel (probed), QEMU's TCG otherwise."""

import os
import subprocess
import time

from .common import say


KVM_PROBE_SECONDS = 20


def host_kvm_verdict():
    """(usable, reason): may KVM be tried at all on this machine?"""
    if not os.path.exists('/dev/kvm'):
        return False, '/dev/kvm does not exist'
    if not os.access('/dev/kvm', os.R_OK | os.W_OK):
        return False, '/dev/kvm is not accessible to this user'
    if os.path.isdir('/sys/module/kvm_pvm'):
        return False, ('/dev/kvm belongs to the PVM hypervisor (kvm_pvm), under which stock Debian '
                       'kernels hang in their decompressor')
    if not (os.path.isdir('/sys/module/kvm_intel') or os.path.isdir('/sys/module/kvm_amd')):
        return False, 'neither kvm_intel nor kvm_amd is loaded'
    return True, '/dev/kvm with kvm_intel/kvm_amd'


def probe_boot(kernel, workdir, accel='kvm', seconds=KVM_PROBE_SECONDS):
    """Boot the guest kernel without a disk: True if it gets as far as printing its banner and memory.

    Where /dev/kvm cannot run a stock kernel (PVM: it hangs in the decompressor; or QEMU aborts on an
    MSR write), nothing is printed and the probe says False.
    """
    console = os.path.join(workdir, 'probe-%s.console' % accel)
    cmd = ['qemu-system-x86_64', '-accel', accel, '-cpu', 'host' if accel == 'kvm' else 'max', '-m', '256',
           '-nodefaults', '-no-user-config', '-display', 'none', '-serial', 'file:' + console, '-no-reboot',
           '-kernel', kernel, '-append', 'console=ttyS0 panic=-1 earlyprintk=ttyS0']
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            stdin=subprocess.DEVNULL)
    ok = False
    try:
        deadline = time.time() + seconds
        while time.time() < deadline and proc.poll() is None:
            time.sleep(0.5)
            try:
                with open(console, 'rb') as handle:
                    text = handle.read()
            except OSError:
                continue
            if b'Linux version' in text and b'Memory:' in text:
                ok = True
                break
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        if os.path.exists(console):
            os.unlink(console)
    return ok


def choose_accel(kernel, workdir):
    """('kvm'|'tcg', reason). KVM only where it really boots a guest kernel; TCG otherwise."""
    forced = os.environ.get('SAMEPAGE_LAB_ACCEL', 'auto')
    if forced in ('kvm', 'tcg'):
        return forced, 'forced by SAMEPAGE_LAB_ACCEL=%s' % forced
    usable, reason = host_kvm_verdict()
    if os.environ.get('SAMEPAGE_LAB_KVM_PROBE') == 'always' and os.path.exists('/dev/kvm'):
        usable = True
    if not usable:
        return 'tcg', reason
    say('probing KVM: booting the guest kernel for up to %d s' % KVM_PROBE_SECONDS)
    if probe_boot(kernel, workdir, 'kvm'):
        return 'kvm', 'KVM booted the guest kernel (probe)'
    return 'tcg', 'a probe boot under KVM did not reach the kernel banner in %d s' % KVM_PROBE_SECONDS
