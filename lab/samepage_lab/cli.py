# -*- coding: utf-8 -*-
# Copyright: (c) 2026, samepage.ksm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""labctl: a lab of real Debian guests under QEMU to try and test samepage.ksm.

Subcommands:
  build      build (or reuse from the cache) the guest images: Debian 12 and Debian 13
  up         boot the lab's guests and write an Ansible inventory for them
  down       stop every guest of the lab and free its ports
  status     show the guests, their ports and whether SSH answers
  ssh NAME   open an SSH session (or run a command) on a guest
  inventory  print the path of the lab's inventory (and its content with --show)
  run -- CMD boot the guests, run CMD with SAMEPAGE_LAB_REUSE naming the lab, then stop every guest,
             whatever CMD does (the guests are also tied to labctl: they end if it is killed)
  demo       everything: tools, images, guests, `ansible-playbook site.yml`, a workload, a report

Standard library only; run it with the system python3 (root: it installs QEMU and debootstrap with
apt-get when they are missing, and debootstrap needs root). Images are cached outside the clone
(SAMEPAGE_LAB_CACHE, default /var/cache/samepage-ksm/lab) under a key that hashes the recipe, and guests
boot them with snapshot=on, so images are never modified and a second run reuses them. The lab's state
(pid files, console logs, inventory) lives in SAMEPAGE_LAB_STATE (default /tmp/samepage-ksm-lab-<uid>);
tests use a state directory of their own, so they never touch a demo lab that is running.

Guests reach nothing outside: user-mode networking with restrict=on and one forwarded port, SSH on
127.0.0.1, with a key the lab generates. KVM is used only where it really boots a guest (detected);
otherwise QEMU's TCG emulates the CPU.
"""

import argparse
import os
import signal
import sys
import time

from .common import LabError, default_cache_dir, default_state_dir, fmt_seconds, say
from .demo import demo, print_explore
from .guest import BOOT_TIMEOUT
from .images import SUITES
from .lab import Lab, run_with_lab


def _install_signal_handlers():
    def handler(signum, frame):
        raise KeyboardInterrupt('signal %d' % signum)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, handler)


def main(argv=None):
    parser = argparse.ArgumentParser(prog='labctl', description=__doc__.split('\n\n', maxsplit=1)[0])
    parser.add_argument('--state', help='lab state directory (default: $SAMEPAGE_LAB_STATE or %s)'
                        % default_state_dir())
    parser.add_argument('--cache', help='image cache (default: $SAMEPAGE_LAB_CACHE or %s)' % default_cache_dir())
    sub = parser.add_subparsers(dest='command')
    sub.add_parser('build', help='build the guest images (or reuse them from the cache)')
    p_up = sub.add_parser('up', help='boot the guests and write the inventory')
    p_up.add_argument('--timeout', type=int, default=BOOT_TIMEOUT, help='seconds to wait for SSH per guest')
    sub.add_parser('down', help='stop every guest of the lab and free its ports')
    sub.add_parser('status', help='show the guests')
    p_ssh = sub.add_parser('ssh', help='SSH into a guest (name or group)')
    p_ssh.add_argument('guest')
    p_ssh.add_argument('cmd', nargs=argparse.REMAINDER)
    p_inv = sub.add_parser('inventory', help='print the inventory path (--show: its content)')
    p_inv.add_argument('--show', action='store_true')
    p_run = sub.add_parser('run', help='boot the guests, run a command against them, stop the guests')
    p_run.add_argument('--no-host-merge', dest='host_merge', action='store_false',
                       help="keep this machine's KSM away from the guests' RAM (QEMU mem-merge=off)")
    p_run.add_argument('cmd', nargs=argparse.REMAINDER, help='-- COMMAND [ARGS...]')
    p_demo = sub.add_parser('demo', help='set up, boot, run site.yml, show what KSM does')
    p_demo.add_argument('--workload-mib', type=int, default=128,
                        help='MiB of duplicate mergeable memory per guest (default 128)')
    p_demo.add_argument('--host-ksm', action='store_true',
                        help="also apply ksm_sysfs to THIS machine for a while to merge the guests' RAM "
                             '(changes its kernel settings; they are put back afterwards)')
    p_demo.add_argument('--host-seconds', type=int, default=100, help='how long to watch the host merge')
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    if args.command != 'run':
        _install_signal_handlers()
    lab = Lab(state_dir=args.state, cache_dir=args.cache, host_merge=getattr(args, 'host_merge', True))
    try:
        if args.command == 'run':
            command = args.cmd[1:] if args.cmd[:1] == ['--'] else args.cmd
            return run_with_lab(lab, command)
        if args.command == 'build':
            started = time.time()
            images = lab.build()
            for suite, image in sorted(images.items()):
                info = image.info()
                say('%s: Debian %d, kernel %s, %s' % (suite, SUITES[suite]['debian'],
                                                      info.get('kernel_release'), image.dir))
            say('images ready in %s' % fmt_seconds(time.time() - started))
        elif args.command == 'up':
            lab.up(timeout=args.timeout)
            say('inventory: %s' % lab.inventory)
            print_explore(lab)
        elif args.command == 'down':
            lab.down()
        elif args.command == 'status':
            print('lab state %s, image cache %s, accelerator %s'
                  % (lab.state_dir, lab.cache_dir, lab.accel or 'n/a'))
            for guest, running, answers in lab.status():
                if answers:
                    state = 'ssh ok'
                else:
                    state = 'running, ssh not answering' if running else 'stopped'
                print('  %-14s %-9s Debian %-2d %-22s NUMA nodes %d  port %-6s %s' % (
                    guest.name, guest.group, guest.debian, guest.kernel_release or '', guest.numa_nodes,
                    guest.port or '-', state))
            if os.path.exists(lab.inventory):
                print('inventory: %s' % lab.inventory)
        elif args.command == 'ssh':
            guest = lab.guest(args.guest)
            if not guest.running():
                raise LabError('%s is not running (python3 %s up)' % (guest.name, sys.argv[0]))
            cmd = ' '.join(args.cmd) if args.cmd else None
            os.execvp('ssh', guest.ssh_command(cmd, tty=cmd is None and sys.stdin.isatty()))
        elif args.command == 'inventory':
            if not os.path.exists(lab.inventory):
                raise LabError('no inventory yet: bring the lab up first')
            print(lab.inventory)
            if args.show:
                with open(lab.inventory) as handle:
                    print(handle.read())
        elif args.command == 'demo':
            demo(lab, workload_mib=args.workload_mib, host_ksm=args.host_ksm, host_seconds=args.host_seconds)
    except LabError as exc:
        sys.stderr.write('labctl %s: error: %s\n' % (args.command, exc))
        return 1
    except KeyboardInterrupt:
        sys.stderr.write('labctl %s: interrupted\n' % args.command)
        return 130
    return 0


if __name__ == '__main__':
    sys.exit(main())
