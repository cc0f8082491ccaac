# -*- coding: utf-8 -*-
# Copyright: (c) 2026, samepage.ksm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Offline stand-in for the get-pip.py script that ansible-test downloads.

ansible-test (--venv, and --local for sanity) bootstraps pip into each virtual environment it creates
by running get-pip.py, downloaded from a host these machines cannot reach; it uses a cached copy at
~/.ansible/test/cache/get_pip_<version>.py when one exists. tools/ci.sh copies this file there for
every pip version the installed ansible-test asks for. It accepts get-pip's command line, drops
get-pip's own flags, installs pip from the interpreter's bundled wheel (ensurepip) and then installs
the requested packages (the pinned pip version) from the configured package index.
"""

import subprocess
import sys

GET_PIP_ONLY_FLAGS = ('--no-setuptools', '--no-wheel', '--no-pip')


def main(argv):
    args = [arg for arg in argv if arg not in GET_PIP_ONLY_FLAGS]
    subprocess.check_call([sys.executable, '-m', 'ensurepip', '--default-pip'])
    packages = [arg for arg in args if not arg.startswith('-')]
    if packages:
        subprocess.check_call([sys.executable, '-m', 'pip', 'install'] + args)
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
