# -*- coding: utf-8 -*-
# Copyright: (c) 2026, samepage.ksm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""samepage_lab: a lab of real Debian guests under QEMU to try and test samepage.ksm (standard library only).

Modules, from the bottom up (each imports only those above it):
  common     LabError, progress output, default cache and state directories, locks, processes, ports
  hosttools  the host tools (QEMU, debootstrap, ssh) and their installation with apt-get
  images     the guest images: recipe and key, build (debootstrap, mke2fs -d), cache and pruning
  accel      KVM or TCG: detected (a probe boot), never assumed
  guest      GuestSpec and Guest: one QEMU process, SSH to it, boot and reboot
  inventory  the Ansible inventory of a lab and an environment in which samepage.ksm is this clone
  lab        Lab (state directory, up, down, status), DEFAULT_GUESTS, run_with_lab
  hostdemo   `demo --host-ksm`: this machine's KSM merges the guests, inside the host guard
  demo       `demo`: site.yml, a workload, and what KSM does on each guest (through ksm_info)
  cli        the command line of lab/labctl.py

lab/labctl.py runs cli.main. Tests and benchmarks import the package as
ansible_collections.samepage.ksm.lab.samepage_lab (tests/conftest.py and bench/benchlib.py make the
clone importable under that name); the names below are its public face.
"""

from .common import LabError, pid_alive, say
from .guest import Guest, GuestSpec
from .images import SUITES
from .lab import DEFAULT_GUESTS, OWNER_FILE, Lab, run_with_lab

__all__ = ('DEFAULT_GUESTS', 'OWNER_FILE', 'SUITES', 'Guest', 'GuestSpec', 'Lab', 'LabError', 'pid_alive', 'run_with_lab',
           'say')
