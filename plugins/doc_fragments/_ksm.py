# -*- coding: utf-8 -*-
# Copyright: (c) 2026, samepage.ksm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Documentation shared by the samepage.ksm modules. Private (leading underscore)."""


class ModuleDocFragment:

    # Every module declares these; each adds its own check_mode/diff_mode/idempotent details.
    ATTRIBUTES = r'''
options: {}
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
  platform:
    description: Target OS/families that can be operated against.
    support: N/A
    platforms: linux
  idempotent:
    description:
      - When run twice in a row outside check mode, with the same arguments, the second invocation indicates no change.
      - This assumes that the system controlled/queried by the module has not changed in a relevant way.
'''

    # Options of the memory check that guards every unmerge (ksm_unmerge, and ksm_sysfs when it unmerges).
    MEMORY_CHECK = r'''
options:
  memory_margin:
    description:
      - Memory to keep free when deciding whether an unmerge fits.
      - An unmerge allocates a private copy of every merged mapping, about
        (C(pages_sharing) + C(ksm_zero_pages)) times the page size. It goes ahead only if that is at most
        C(MemAvailable) plus free swap minus this margin; otherwise the task fails with both figures and
        nothing is changed.
      - A percentage of total memory (V(5%)) or a size with an optional binary unit (V(512M), V(2G), V(0)).
    type: str
    default: '5%'
'''

    # The bounded wait for the host lock that every writer of KSM state takes (ksm_sysfs, ksm_unmerge).
    HOST_LOCK = r'''
options:
  lock_timeout:
    description:
      - Seconds to wait for the host lock of KSM writers before failing (0 to 3600).
      - Every task that changes KSM (M(samepage.ksm.ksm_sysfs), M(samepage.ksm.ksm_unmerge), the
        tuner) reads the state, plans and writes while it holds one lock per host (C(flock) on
        C(/run/lock/samepage-ksm.lock)), so runs that overlap end as if they had run one after the other.
      - When another writer holds the lock longer than this, the task fails naming it (process id, program,
        since when) and changes nothing.
      - Check mode only reads and does not take the lock.
    type: int
    default: 60
'''
