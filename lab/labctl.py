# -*- coding: utf-8 -*-
# Copyright: (c) 2026, samepage.ksm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""labctl: the lab's command line (`python3 lab/labctl.py --help`); the lab itself is lab/samepage_lab.

Run it with the system python3 (standard library only). Python puts this file's directory first on
sys.path, so the package next to it is imported as `samepage_lab`.
"""

import sys

from samepage_lab.cli import main

if __name__ == '__main__':
    sys.exit(main())
