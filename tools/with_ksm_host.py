# -*- coding: utf-8 -*-
# Copyright: (c) 2026, samepage.ksm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Runs a command that changes this machine's real /sys/kernel/mm/ksm inside the host guard.

    python tools/with_ksm_host.py COLLECTIONS_ROOT -- COMMAND [ARGS...]

tests/support/ksm_host.py's guard holds /tmp/samepage-ksm-host.lock for the whole command (so the
system tests of other clones and the benchmarks wait), snapshots every writable knob first and
afterwards unmerges anything shared and puts every knob back, then checks the result. tools/ci.sh
runs `ansible-test integration` this way: its targets restore what they touch themselves, and the guard
makes sure of it even when a target fails half way. COLLECTIONS_ROOT is the directory that holds
ansible_collections/samepage/ksm (the helpers are imported from there). Where the real KSM cannot be
changed (no KSM, not root, read-only /sys) the command is not run and the reason is printed.

Exit status: the command's, or 1 when the kernel could not be put back.
"""

import subprocess
import sys


def main(argv):
    if len(argv) < 4 or argv[2] != '--':
        sys.stderr.write('usage: python %s COLLECTIONS_ROOT -- COMMAND [ARGS...]\n' % argv[0])
        return 2
    sys.path.insert(0, argv[1])
    # pylint: disable-next=import-outside-toplevel
    from ansible_collections.samepage.ksm.tests.support.ksm_host import ksm_host_guard, skip_reason, writable_knobs

    reason = skip_reason()
    if reason:
        print('SKIPPED (real KSM not usable: %s): %s' % (reason, ' '.join(argv[3:])))
        return 0
    try:
        with ksm_host_guard() as host:
            print('[ksm_host] holding the host lock; knobs to put back: %s' % host.snapshot)
            sys.stdout.flush()
            code = subprocess.run(argv[3:], check=False).returncode
    except RuntimeError as error:   # restore() could not put the kernel back
        print('FAILED: %s' % error)
        return 1
    print('[ksm_host] every knob put back, nothing shared: %s' % writable_knobs(host.ksm.read_state()))
    return code


if __name__ == '__main__':
    sys.exit(main(sys.argv))
