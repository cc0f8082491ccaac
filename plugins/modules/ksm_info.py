#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, samepage.ksm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

DOCUMENTATION = r'''
module: ksm_info
short_description: Report Kernel Same-page Merging (KSM) settings, counters, savings, processes and guests
version_added: 0.1.0
description:
  - Reads every file of C(/sys/kernel/mm/ksm) and reports the writable knobs, the read-only counters,
    what this kernel offers, the memory KSM saves, and the processes whose memory is merged the most.
  - Read-only. Nothing on the host is ever changed.
  - A host whose kernel has no KSM is not an error (fleets mix hosts) - the module returns
    RV(available=false) with a message saying so.
  - Per-process figures come from C(/proc/<pid>/ksm_stat) (Linux 6.1 and newer) or
    C(/proc/<pid>/ksm_merging_pages) (5.19 and newer). A process that exits while it is being read is
    skipped. Without root only the processes of the connecting user can be read.
  - "Audits who shares: every QEMU process (libvirt's or not) is listed in RV(guests) with its guest name,
    whether it runs with C(mem-merge=off) (libvirt's C(<memoryBacking><nosharepages/></memoryBacking>)),
    whether the kernel still lists memory of it as mergeable, what it merges and costs, and a verdict after the
    kernel documentation's rule (more rmap items per merging page than page size / size of an rmap item, 64 on
    64-bit kernels with 4 KiB pages: KSM costs more than it saves there). RV(process_scan.opted_in) lists every
    process that opted in as a whole (C(prctl PR_SET_MEMORY_MERGE), systemd C(MemoryKSM=))."
  - The scan of C(/proc) is bounded (O(max_scan_processes), O(max_scan_seconds)) and RV(process_scan.skipped)
    says what it did not read or could not tell. It needs neither libvirt nor QEMU's monitor.
  - Reports the samepage tuner (RV(tuner)) from the state file it keeps under C(/run), without asking
    systemd, and the boot configuration of M(samepage.ksm.ksm_sysfs) (RV(boot)).
  - "On request it also reports, in the same module run, the KSM services as systemd sees them (O(services),
    one C(systemctl show)) and every libvirt domain with its C(nosharepages) (O(libvirt), through C(virsh)): all
    that the entry point C(verify) of the role C(samepage.ksm.ksm) needs to prove that a host shares no memory."
  - Reports what ksmd has cost (RV(ksmd), its CPU seconds from C(/proc/<pid>/stat)) and whether the host could
    afford to unmerge now (RV(unmerge_headroom), the memory check of M(samepage.ksm.ksm_unmerge)).
  - The metrics writer of M(samepage.ksm.ksm_metrics) exposes these same figures to Prometheus; both read them
    through the same code.
options:
  max_processes:
    description:
      - How many processes to list in RV(processes), those with the most merged pages first.
      - V(0) skips the scan of C(/proc) altogether (then RV(guests) is empty too).
    type: int
    default: 10
  max_scan_processes:
    description:
      - At most this many processes are read (in process id order) by the scan behind RV(processes),
        RV(guests) and RV(process_scan); the rest are counted in RV(process_scan.skipped).
      - From 1 to 10000000.
    type: int
    default: 10000
  max_scan_seconds:
    description:
      - The scan stops reading processes after this many seconds and says so in RV(process_scan.skipped).
      - From 1 to 3600.
    type: int
    default: 10
  services:
    description:
      - Report the services C(ksm) and C(ksmtuned) (Ubuntu's C(qemu-kvm.service) plays the part of C(ksm) where
        C(ksm.service) is not installed) as systemd sees them, in RV(services) - one C(systemctl show) for both.
      - Where systemd is not PID 1 (a container, a chroot) nothing is asked; RV(services.systemd) is false and
        RV(services.reason) says why.
    type: bool
    default: false
  libvirt:
    description:
      - Report every libvirt domain of O(libvirt_uri) with whether its definition and its running QEMU carry
        C(<memoryBacking><nosharepages/></memoryBacking>), in RV(libvirt) - C(virsh list) twice and one
        C(virsh dumpxml) per definition.
      - A host without C(virsh), or whose libvirt does not answer, is no error - RV(libvirt.available) is false and
        RV(libvirt.msg) says why.
    type: bool
    default: false
  libvirt_uri:
    description:
      - The libvirt connection URI asked with O(libvirt=true) (C(virsh -c)).
    type: str
    default: qemu:///system
  memory_margin:
    description:
      - The safety margin of RV(unmerge_headroom) - memory to keep free when judging whether an unmerge fits,
        as M(samepage.ksm.ksm_unmerge) judges it (same option, same rule).
      - A percentage of total memory (V(5%)) or a size with an optional binary unit (V(512M), V(2G), V(0)).
    type: str
    default: '5%'
extends_documentation_fragment:
  - samepage.ksm._ksm.attributes
attributes:
  check_mode:
    support: full
    details: The module only reads, so it behaves the same in check mode.
  diff_mode:
    support: N/A
    details: The module never changes anything, so there is nothing to show.
  idempotent:
    support: full
seealso:
  - module: samepage.ksm.ksm_sysfs
  - module: samepage.ksm.ksm_unmerge
  - name: Kernel Samepage Merging (admin guide)
    description: What each file of /sys/kernel/mm/ksm means.
    link: https://docs.kernel.org/admin-guide/mm/ksm.html
author:
  - samepage.ksm contributors (@samepage)
'''

EXAMPLES = r'''
- name: Read the KSM state of every KVM host
  samepage.ksm.ksm_info:
  register: ksm

- name: Report the memory KSM saves
  ansible.builtin.debug:
    msg: >-
      {{ inventory_hostname }} saves {{ ksm.savings.bytes_saved | human_readable }}
      (ratio {{ ksm.savings.sharing_ratio }})
  when: ksm.available

- name: Show the five processes with the most merged memory
  samepage.ksm.ksm_info:
    max_processes: 5
  register: ksm_top

- name: List them
  ansible.builtin.debug:
    msg: "{{ item.pid }} {{ item.command }}: {{ item.merging_bytes | human_readable }}"
  loop: "{{ ksm_top.processes }}"

- name: Settings and counters only, without scanning /proc
  samepage.ksm.ksm_info:
    max_processes: 0
  register: ksm_quick

- name: Audit the guests of a host where tenants must not share
  samepage.ksm.ksm_info:
  register: ksm_audit

- name: Fail if a guest shares or would share memory once KSM runs
  ansible.builtin.assert:
    that:
      - ksm_audit.process_scan.complete
      - ksm_audit.process_scan.opted_in | length == 0
      - ksm_audit.guests | rejectattr('verdict', 'equalto', 'opted-out') | list | length == 0
    fail_msg: >-
      {{ ksm_audit.guests | rejectattr('verdict', 'equalto', 'opted-out')
         | map(attribute='name') | list }} can share memory;
      opted in as a whole: {{ ksm_audit.process_scan.opted_in }}; not read: {{ ksm_audit.process_scan.skipped }}

- name: Name the guests on which KSM costs more than it saves
  ansible.builtin.debug:
    msg: "{{ item.name }} (pid {{ item.pid }}): {{ item.reason }}"
  loop: "{{ ksm_audit.guests | selectattr('verdict', 'equalto', 'costs-more-than-it-saves') }}"
  loop_control:
    label: "{{ item.name }}"

- name: Read what could make a host that must not share memory share it, in one module run
  samepage.ksm.ksm_info:
    max_processes: 1
    services: true
    libvirt: true
  register: ksm_secure

- name: Name the guests that libvirt would start with memory sharing
  ansible.builtin.debug:
    msg: "{{ ksm_secure.libvirt.domains | rejectattr('nosharepages') | map(attribute='name') | list }}"
  when: ksm_secure.libvirt.available

- name: Warn where ksmtuned would overwrite the settings
  ansible.builtin.debug:
    msg: "ksmtuned runs here and rewrites {{ ksm_quick.competing_managers.ksmtuned | join(', ') }}"
  when: "'ksmtuned' in ksm_quick.competing_managers"

- name: Say what else writes KSM knobs on each host, and how to stop it
  ansible.builtin.debug:
    msg: >-
      {{ item.name }} writes {{ item.knobs | join(', ') }} {{ item.when }}
      ({{ item.evidence | join('; ') }}): {{ item.remedy }}
  loop: "{{ ksm_quick.competing_writers | rejectattr('ours') }}"
  loop_control:
    label: "{{ item.name }}"
'''

RETURN = r'''
available:
  description: Whether this kernel has KSM (C(/sys/kernel/mm/ksm) exists).
  returned: always
  type: bool
  sample: true
msg:
  description: Why nothing else is reported.
  returned: when RV(available) is false
  type: str
  sample: "/sys/kernel/mm/ksm does not exist: this kernel has no KSM (built without CONFIG_KSM)"
settings:
  description:
    - Every writable knob this kernel has, typed (integers, booleans, strings for C(advisor_mode)).
    - Knobs that a kernel lacks are absent (for example the C(advisor_*) knobs before Linux 6.8).
  returned: always
  type: dict
  sample:
    run: 1
    pages_to_scan: 100
    sleep_millisecs: 20
    merge_across_nodes: 1
    max_page_sharing: 256
    use_zero_pages: false
    smart_scan: true
    stable_node_chains_prune_millisecs: 2000
    advisor_mode: none
    advisor_max_cpu: 70
    advisor_min_pages_to_scan: 500
    advisor_max_pages_to_scan: 30000
    advisor_target_scan_time: 200
counters:
  description:
    - Every read-only file, as integers. Files this collection does not know (from kernels newer than
      it) are included as the text the kernel prints.
  returned: always
  type: dict
  sample:
    pages_shared: 1024
    pages_sharing: 15360
    pages_unshared: 120
    pages_volatile: 4
    full_scans: 12
    stable_node_chains: 0
    stable_node_dups: 0
    general_profit: 62410752
    ksm_zero_pages: 0
    pages_scanned: 1903720
    pages_skipped: 2210
capabilities:
  description: What this host and kernel offer.
  returned: always
  type: dict
  contains:
    knobs:
      description: Names of all files in C(/sys/kernel/mm/ksm), sorted.
      type: list
      elements: str
      sample: [advisor_max_cpu, advisor_mode, full_scans, general_profit, pages_shared, run]
    kernel_release:
      description: The running kernel (C(uname -r)).
      type: str
      sample: 6.1.0-31-amd64
    numa_nodes_with_memory:
      description: NUMA nodes that hold memory (one node, V(0), on hosts without NUMA).
      type: list
      elements: int
      sample: [0, 1]
    page_size:
      description: Page size in bytes.
      type: int
      sample: 4096
    advisor:
      description: Whether the kernel has the scan-time advisor (C(advisor_mode), Linux 6.8 and newer).
      type: bool
      sample: false
    per_process:
      description: Which per-process KSM files C(/proc/<pid>/) offers on this kernel.
      type: list
      elements: str
      sample: [ksm_stat, ksm_merging_pages]
savings:
  description: Figures derived from the counters.
  returned: when RV(available) is true
  type: dict
  contains:
    bytes_saved:
      description: C(pages_sharing) times the page size - about the memory KSM saves.
      type: int
      sample: 62914560
    zero_pages_bytes:
      description: Memory of empty pages merged into the kernel zero page (C(ksm_zero_pages) times the
        page size; V(0) where the kernel has no such counter).
      type: int
      sample: 0
    general_profit:
      description: The kernel's own figure, in bytes - what is saved minus the metadata KSM spends.
        Can be negative.
      type: int
      returned: when the kernel has C(general_profit) (Linux 6.4 and newer)
      sample: 62410752
    sharing_ratio:
      description: C(pages_sharing) / C(pages_shared), rounded to two decimals; null while nothing
        is shared.
      type: float
      sample: 15.0
ksmd:
  description:
    - The kernel thread that scans and merges, and the CPU it has used since boot - what KSM costs.
    - V(null) when no ksmd thread is found in C(/proc) (a C(/proc) that hides kernel threads) and when KSM is
      not available.
  returned: always
  type: dict
  contains:
    pid:
      description: Process id of the C(ksmd) kernel thread.
      type: int
      sample: 37
    cpu_seconds:
      description:
        - CPU seconds ksmd has used since boot (C(utime) + C(stime)), a counter - the rate of two readings is
          ksmd's share of a core.
      type: float
      sample: 239.35
    source:
      description: Where the figure comes from - the file and its fields, and the clock tick they count in.
      type: str
      sample: "/proc/37/stat: utime + stime, in clock ticks of 1/100 s"
  sample: {pid: 37, cpu_seconds: 239.35, source: "/proc/37/stat: utime + stime, in clock ticks of 1/100 s"}
unmerge_headroom:
  description:
    - Whether the host could unmerge every KSM page now (C(run=2)), judged as M(samepage.ksm.ksm_unmerge) judges it
      - an unmerge needs RV(unmerge_headroom.needed_bytes) and may use C(MemAvailable) plus free swap minus the
      margin O(memory_margin).
  returned: when RV(available) is true
  type: dict
  contains:
    needed_bytes:
      description: What the unmerge allocates - (C(pages_sharing) + C(ksm_zero_pages)) times the page size.
      type: int
      sample: 62914560
    mem_available_bytes:
      description: C(MemAvailable) of C(/proc/meminfo) (C(MemFree) on kernels without it).
      type: int
      sample: 21474836480
    swap_free_bytes:
      description: C(SwapFree) of C(/proc/meminfo).
      type: int
      sample: 0
    memory_margin:
      description: O(memory_margin) as given.
      type: str
      sample: 5%
    margin_bytes:
      description: O(memory_margin) in bytes (a percentage of C(MemTotal) resolved).
      type: int
      sample: 1288490188
    budget_bytes:
      description: What the unmerge may use - RV(unmerge_headroom.mem_available_bytes) +
        RV(unmerge_headroom.swap_free_bytes) - RV(unmerge_headroom.margin_bytes).
      type: int
      sample: 20186346292
    headroom_bytes:
      description: RV(unmerge_headroom.budget_bytes) - RV(unmerge_headroom.needed_bytes); negative when an unmerge
        would not fit.
      type: int
      sample: 20123431732
    fits:
      description: Whether M(samepage.ksm.ksm_unmerge) would unmerge now (without C(force)).
      type: bool
      sample: true
processes:
  description:
    - Processes that take part in KSM, the most merged pages first, at most O(max_processes).
    - Empty when O(max_processes=0), when KSM is not available, or when the kernel has no per-process files.
  returned: always
  type: list
  elements: dict
  contains:
    pid:
      description: Process id.
      type: int
      sample: 2811
    command:
      description: Command name (C(/proc/<pid>/comm)).
      type: str
      sample: qemu-system-x86
    merging_pages:
      description: Pages of this process that are merged.
      type: int
      sample: 15360
    merging_bytes:
      description: RV(processes[].merging_pages) times the page size.
      type: int
      sample: 62914560
    rmap_items:
      description: KSM reverse-map items of the process.
      type: int
      returned: when the kernel has C(/proc/<pid>/ksm_stat)
      sample: 16512
    zero_pages:
      description: Pages of the process merged into the kernel zero page.
      type: int
      returned: on Linux 6.5 and newer
      sample: 0
    profit:
      description: Bytes KSM saves on this process, less its metadata (can be negative).
      type: int
      returned: on Linux 6.4 and newer
      sample: 62386176
    mergeable:
      description: Whether the process has memory registered for merging.
      type: bool
      returned: on Linux 6.14 and newer
      sample: true
    merge_any:
      description: Whether the process opted in as a whole (C(prctl PR_SET_MEMORY_MERGE), systemd C(MemoryKSM=)).
      type: bool
      returned: on Linux 6.14 and newer
      sample: false
    guest:
      description: The guest name of a QEMU process (RV(guests[].name)); null when its command line has no C(-name).
      type: str
      returned: for QEMU processes whose command line could be read
      sample: web01
    mem_merge:
      description: Whether the QEMU process runs with guest memory merging on (false with C(-machine mem-merge=off)).
      type: bool
      returned: for QEMU processes whose command line could be read
      sample: true
  sample:
    - pid: 2811
      command: qemu-system-x86
      merging_pages: 15360
      merging_bytes: 62914560
      rmap_items: 16512
      zero_pages: 0
      profit: 62386176
      guest: web01
      mem_merge: true
guests:
  description:
    - Every QEMU process found by the scan (program C(qemu-system-*), C(qemu-kvm) or C(kvm)), whether or not it
      takes part in KSM, whatever O(max_processes) says, in process id order. Found from C(/proc) only - libvirt
      is not needed (and not asked).
    - Fields the kernel does not offer are null (for example C(rmap_items) before Linux 6.1).
    - Empty when O(max_processes=0) or when KSM is not available.
  returned: always
  type: list
  elements: dict
  contains:
    pid:
      description: Process id of the QEMU process.
      type: int
      sample: 4242
    name:
      description: The guest name from QEMU's command line (C(-name guest=NAME,...) as libvirt writes it, or
        C(-name NAME)); for libvirt guests the domain name. Null without C(-name).
      type: str
      sample: tenant-a
    command:
      description: Command name (C(/proc/<pid>/comm)).
      type: str
      sample: qemu-system-x86
    mem_merge:
      description:
        - What QEMU's command line says about merging guest memory - false with C(-machine ...,mem-merge=off)
          (libvirt's C(nosharepages)), true otherwise (QEMU's default). Null when the command line could not be read.
      type: bool
      sample: false
    mergeable:
      description:
        - Whether the kernel lists memory of the process as mergeable (C(ksm_mergeable) of C(ksm_stat), Linux 6.14
          and newer; on older kernels C(mg) in the VmFlags of C(/proc/<pid>/smaps)). Null when unknown.
        - True for a guest with RV(guests[].mem_merge=false) means the opt-out does not hold.
      type: bool
      sample: false
    merge_any:
      description: Whether the process opted in as a whole (C(prctl PR_SET_MEMORY_MERGE) or systemd C(MemoryKSM=),
        inherited over fork and exec); null on kernels that do not say (before about Linux 6.14).
      type: bool
      sample: false
    merging_pages:
      description: Pages of the guest that are merged now.
      type: int
      sample: 0
    merging_bytes:
      description: RV(guests[].merging_pages) times the page size.
      type: int
      sample: 0
    rmap_items:
      description: KSM reverse-map items of the process - what KSM spends on it (64 bytes each on 64-bit kernels).
      type: int
      sample: 0
    zero_pages:
      description: Pages of the guest merged into the kernel zero page (Linux 6.5 and newer, else null).
      type: int
      sample: 0
    profit:
      description: Bytes KSM saves on the process, less its metadata, as the kernel computes it (Linux 6.4 and
        newer, else null).
      type: int
      sample: 0
    rmap_items_per_merging_page:
      description: RV(guests[].rmap_items) / RV(guests[].merging_pages), two decimals; null while nothing is merged.
      type: float
      sample: null
    verdict:
      description:
        - V(opted-out) - C(mem-merge=off) and no mergeable memory, KSM never merges its RAM.
        - V(opted-out-but-mergeable) - C(mem-merge=off), yet the kernel lists memory of it for merging (for example
          it inherited C(prctl PR_SET_MEMORY_MERGE) from a unit with C(MemoryKSM=yes)); the opt-out does not hold.
        - V(mergeable) - its memory is registered for merging; nothing is merged now, it shares once ksmd runs.
        - V(saves) - pages are merged, at most RV(process_scan.rmap_items_per_merging_page_limit) rmap items per
          merging page.
        - V(costs-more-than-it-saves) - more rmap items per merging page than that (also rmap items with nothing
          merged); the kernel documentation advises to stop merging it.
        - V(not-mergeable) - merging is on in its command line, but the kernel lists no mergeable memory.
        - V(unknown) - the kernel does not say whether its memory is mergeable, and nothing of it is merged.
      type: str
      choices: [opted-out, opted-out-but-mergeable, mergeable, saves, costs-more-than-it-saves, not-mergeable, unknown]
      sample: opted-out
    reason:
      description: The verdict in words, with the figures it rests on.
      type: str
      sample: "runs with mem-merge=off and has no mergeable memory: KSM never merges its RAM"
  sample:
    - pid: 4242
      name: tenant-a
      command: qemu-system-x86
      mem_merge: false
      mergeable: false
      merge_any: false
      merging_pages: 0
      merging_bytes: 0
      rmap_items: 0
      zero_pages: 0
      profit: 0
      rmap_items_per_merging_page: null
      verdict: opted-out
      reason: "runs with mem-merge=off and has no mergeable memory: KSM never merges its RAM"
    - pid: 4301
      name: web01
      command: qemu-system-x86
      mem_merge: true
      mergeable: true
      merge_any: false
      merging_pages: 15360
      merging_bytes: 62914560
      rmap_items: 16512
      zero_pages: 0
      profit: 62386176
      rmap_items_per_merging_page: 1.08
      verdict: saves
      reason: 15360 pages merged for 16512 rmap items (at most 64 per merging page pays off)
process_scan:
  description: What the bounded scan of C(/proc) behind RV(processes) and RV(guests) read, and what it did not.
  returned: when RV(available) is true and O(max_processes) is not 0
  type: dict
  contains:
    processes_seen:
      description: Processes listed in C(/proc) when the scan began.
      type: int
      sample: 312
    processes_read:
      description: Processes the scan read (those that exited meanwhile are not counted).
      type: int
      sample: 312
    taking_part:
      description: Processes that take part in KSM (mergeable memory, merged pages or rmap items), all of them,
        whatever O(max_processes) says.
      type: int
      sample: 4
    opted_in:
      description: Every process that opted in as a whole (C(ksm_merge_any) - C(prctl PR_SET_MEMORY_MERGE) or systemd
        C(MemoryKSM=)), with its process id and command name. Empty on kernels that do not say (see RV(process_scan.skipped)).
      type: list
      elements: dict
      sample: [{pid: 977, command: java}]
    complete:
      description: Whether every process was read and the kernel told everything asked (RV(process_scan.skipped) is empty).
      type: bool
      sample: true
    skipped:
      description: What the scan left out or could not tell, one sentence each (processes beyond O(max_scan_processes)
        or O(max_scan_seconds), processes that could not be read without root, what this kernel does not report).
      type: list
      elements: str
      sample: ["1688 of 12000 processes not read (pid 30112 and above): max_scan_processes=10000 reached"]
    rmap_items_per_merging_page_limit:
      description: Page size / size of a KSM rmap item (64 on 64-bit kernels with 4 KiB pages) - above this many rmap
        items per merging page KSM costs a process more than it saves (kernel admin guide, "Monitoring KSM profit").
      type: int
      sample: 64
competing_managers:
  description:
    - The short form of RV(competing_writers) - each other writer that writes knobs, with those knobs. The
      collection's own tuner (RV(competing_writers[].ours)) is not listed.
  returned: always
  type: dict
  sample:
    ksmtuned: [run, pages_to_scan, sleep_millisecs]
tuner:
  description:
    - The samepage tuner (M(samepage.ksm.ksm_tuner), role C(samepage.ksm.ksm) with C(ksm_tuner=samepage)) as
      it reports itself in its state file C(/run/samepage-ksm/tuner.json), read without asking systemd.
    - V(null) when the tuner is not installed (neither its unit file nor a state file exists).
    - The keys of the state file (C(docs/tuner.md)) are passed on as they are; those below are the ones to
      rely on. A tuner that has not written its state file yet has only RV(tuner.installed) and RV(tuner.running).
  returned: always
  type: dict
  contains:
    installed:
      description: Whether the unit file C(/etc/systemd/system/samepage-ksm-tuner.service) exists.
      type: bool
      returned: when RV(tuner) is not null
    running:
      description: Whether the process named in the state file is a live tuner that has not stopped.
      type: bool
      returned: when RV(tuner) is not null
    phase:
      description:
        - V(fast), V(idle), V(throttled), V(paused), V(gated), V(stopped), V(error) or V(unavailable).
      type: str
      returned: when the state file exists
    reason:
      description: Why the tuner is in this phase (the words of its journal line).
      type: str
      returned: when the state file exists
    run:
      description: The C(run) the tuner set.
      type: int
      returned: when the tuner is or was running a phase
    pages_to_scan:
      description: The current rate - pages per batch.
      type: int
      returned: when the tuner is or was running a phase
    sleep_millisecs:
      description: The current rate - pause between batches.
      type: int
      returned: when the tuner is or was running a phase
    last_gain:
      description: Pages gained by the last full scan (V(null) before the first).
      type: int
      returned: when the tuner is running a phase
    ksmd_cpu_percent:
      description: ksmd's CPU over the budget window, in percent of one core.
      type: float
      returned: when the tuner is running a phase
    own_cpu_percent:
      description: The tuner's own CPU over the budget window, in percent of one core.
      type: float
      returned: when the tuner is running a phase
    since:
      description: When the current phase began (UTC, ISO 8601).
      type: str
      returned: when the tuner is running a phase
    updated:
      description: When the state file was last written (UTC, ISO 8601).
      type: str
      returned: when the state file exists
    pid:
      description: The tuner's process id.
      type: int
      returned: when the state file exists
    version:
      description: The tuner's version.
      type: str
      returned: when the state file exists
    state_error:
      description: Why the state file could not be read.
      type: str
      returned: when the state file exists but cannot be read
  sample:
    installed: true
    running: true
    phase: idle
    reason: "a full scan gained 3 pages (< 64): merging no longer pays"
    run: 1
    pages_to_scan: 100
    sleep_millisecs: 200
    last_gain: 3
    ksmd_cpu_percent: 0.021
    own_cpu_percent: 0.012
    since: "2026-11-30T21:40:02Z"
    updated: "2026-11-30T21:45:12Z"
    pid: 812
    version: 0.1.0
competing_writers:
  description:
    - Every other writer of KSM knobs found on the host, with the evidence it was found by. Found from the file
      system and C(/proc) only (no C(systemctl)) - running processes (ksmtuned, oVirt's momd/vdsmd, KubeVirt's
      virt-handler), units enabled by a C(*.wants) symlink and not masked (C(ksmtuned.service), C(ksm.service),
      Ubuntu's C(qemu-kvm.service) with C(KSM_ENABLED) of C(/etc/default/qemu-kvm), NixOS's
      C(enable-ksm.service)), the active TuneD profile and the profiles it includes (C([sysfs]) lines for
      C(/sys/kernel/mm/ksm), cpu-partitioning and realtime-virtual-host, C(/var/lib/tuned/ksm-masked)),
      C(w /sys/kernel/mm/ksm/...) lines of tmpfiles.d, C(/etc/sysfs.conf) and C(/etc/sysfs.d), units with
      C(MemoryKSM=yes), and the collection's own tuner.
    - Empty when nothing else writes KSM knobs, and when KSM is not available.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: The writer.
      type: str
      sample: ksmtuned
    knobs:
      description: The knobs it writes here (empty for C(systemd MemoryKSM=), which opts processes in instead).
      type: list
      elements: str
      sample: [run, pages_to_scan, sleep_millisecs]
    when:
      description: When it writes them (V(every interval), V(at boot), at every TuneD profile switch, ...).
      type: str
      sample: every interval
    evidence:
      description: What it was found by (process and pid, unit symlink, file and line, profile).
      type: list
      elements: str
      sample:
        - process ksmtuned (pid 812)
        - ksmtuned.service enabled (/etc/systemd/system/multi-user.target.wants/ksmtuned.service)
    ours:
      description: Whether it is the collection's own tuner (C(samepage-ksm-tuner)) rather than another program.
      type: bool
      sample: false
    remedy:
      description: What to change so that it stops overwriting settings made with this collection.
      type: str
      sample: stop and disable ksmtuned (samepage.ksm.ksm_service name=ksmtuned state=stopped enabled=false), or tune
        it with the samepage.ksm.ksmtuned role instead of setting these knobs
    turns_on:
      description:
        - Whether it can switch ksmd on - it writes C(run) with a value other than V(0) or V(2) (ksmtuned, C(ksm.service),
          Ubuntu's C(qemu-kvm.service) unless C(KSM_ENABLED=0), a TuneD C([sysfs]) or tmpfiles.d or sysfs.conf line
          writing C(run=1), ...). False for writers that only keep it off or set other knobs, and for C(MemoryKSM=),
          which opts processes in but does not start ksmd.
      type: bool
      sample: true
boot:
  description:
    - The boot configuration of M(samepage.ksm.ksm_sysfs) (C(persist=true)) - the unit that writes the knobs early at
      every boot. Without it the kernel starts with its own defaults (C(run=0)).
  returned: when RV(available) is true
  type: dict
  contains:
    unit:
      description: Path of the unit file.
      type: str
      sample: /etc/systemd/system/samepage-ksm-sysfs.service
    installed:
      description: Whether the unit file exists.
      type: bool
      sample: true
    enabled:
      description: Whether it is enabled (its symlink in C(sysinit.target.wants)), so that it runs at boot.
      type: bool
      sample: true
    knobs:
      description: The knobs it writes at boot, typed; V({}) without the unit.
      type: dict
      sample: {run: 0}
services:
  description: The KSM services as systemd sees them (O(services=true)); null when not asked, and when RV(available) is false.
  returned: always
  type: dict
  contains:
    systemd:
      description: Whether systemd was asked (it runs as PID 1 and C(systemctl show) answered).
      type: bool
      sample: true
    reason:
      description: Why systemd was not asked; null when it was.
      type: str
      sample: null
    units:
      description: One entry per service (C(ksm), C(ksmtuned)); empty when systemd was not asked.
      type: list
      elements: dict
      contains:
        name:
          description: The service (V(ksm) or V(ksmtuned)).
          type: str
        unit:
          description: The systemd unit that plays that part here (the distribution's usual one when none is installed;
            null where the distribution has none).
          type: str
        installed:
          description: Whether the unit is installed.
          type: bool
        enabled:
          description: Whether it is enabled (it starts at boot).
          type: bool
        running:
          description: Whether it is active (for the oneshot C(ksm.service), active means it switched KSM on and stays so).
          type: bool
        masked:
          description: Whether it is masked.
          type: bool
        state:
          description: systemd's words for it - C(active (exited), enabled), C(not installed), ...
          type: str
  sample:
    systemd: true
    reason: null
    units:
      - {name: ksm, unit: ksm.service, installed: true, enabled: false, running: false, masked: false,
         state: "inactive (dead), disabled"}
      - {name: ksmtuned, unit: ksmtuned.service, installed: false, enabled: false, running: false, masked: false,
         state: not installed}
libvirt:
  description: The libvirt domains of O(libvirt_uri) and their C(nosharepages) (O(libvirt=true)); null when not asked, and when RV(available) is false.
  returned: always
  type: dict
  contains:
    uri:
      description: The connection URI asked.
      type: str
      sample: qemu:///system
    available:
      description: Whether libvirt answered.
      type: bool
      sample: true
    msg:
      description: Why libvirt could not be asked (no C(virsh), the daemon down, ...); null when it answered.
      type: str
      sample: null
    domains:
      description: Every domain, sorted by name.
      type: list
      elements: dict
      contains:
        name:
          description: The domain name.
          type: str
        persistent:
          description: Whether it has a persistent definition (false - a transient domain).
          type: bool
        active:
          description: Whether it runs (or is paused).
          type: bool
        nosharepages:
          description: Whether its persistent definition carries C(nosharepages); null for a transient domain.
          type: bool
        running_nosharepages:
          description: Whether its running QEMU was started with C(nosharepages) (C(mem-merge=off)); null when it does
            not run.
          type: bool
  sample:
    uri: qemu:///system
    available: true
    msg: null
    domains:
      - {name: tenant-a, persistent: true, active: true, nosharepages: true, running_nosharepages: false}
competing_writers_skipped:
  description: What the bounded search for RV(competing_writers) left out (unit files beyond the limit, too large or
    unreadable), so that an empty result is never taken for more than it is.
  returned: always
  type: list
  elements: str
  sample: []
'''


from ansible_collections.samepage.ksm.plugins.module_utils import _errors
from ansible_collections.samepage.ksm.plugins.module_utils import _ksm
from ansible_collections.samepage.ksm.plugins.module_utils import _ksm_audit
from ansible_collections.samepage.ksm.plugins.module_utils import _ksm_boot
from ansible_collections.samepage.ksm.plugins.module_utils import _ksm_units
from ansible_collections.samepage.ksm.plugins.module_utils import _libvirt
from ansible_collections.samepage.ksm.plugins.module_utils import _ksm_snapshot
from ansible_collections.samepage.ksm.plugins.module_utils import _ksm_tuner
from ansible_collections.samepage.ksm.plugins.module_utils import _options

# Where the samepage tuner reports itself (tests point these at a fake root).
TUNER_STATE = _ksm_tuner.DEFAULT_STATE_PATH
TUNER_UNIT = _ksm_tuner.UNIT_PATH
PROC = '/proc'


# ksm_info's figures are read by _ksm_snapshot (the metrics writer reads them through it too).
split_state = _ksm_snapshot.split_state
savings = _ksm_snapshot.savings


# Bounds of the scan options: (option, lowest, highest).
SCAN_BOUNDS = (('max_scan_processes', 1, 10 ** 7), ('max_scan_seconds', 1, 3600))


def argument_spec():
    spec = dict(max_processes=dict(type='int', default=10),
                max_scan_processes=dict(type='int', default=_ksm_audit.MAX_READ),
                max_scan_seconds=dict(type='int', default=_ksm_audit.MAX_SECONDS),
                services=dict(type='bool', default=False),
                libvirt=dict(type='bool', default=False),
                libvirt_uri=dict(type='str', default=_libvirt.DEFAULT_URI))
    spec.update(_options.memory_check())
    return spec


def boot_report():
    """RV(boot): the boot unit of ksm_sysfs, whether it runs at boot, and what it writes."""
    config = _ksm_boot.BootConfig()
    text = config.read_text()
    return {'unit': config.unit_path, 'installed': text is not None, 'enabled': config.enabled(),
            'knobs': _ksm_boot.parse(text) if text is not None else {}}


def libvirt_report(module, uri):
    """RV(libvirt): every domain with its nosharepages, or why libvirt could not be asked."""
    report = {'uri': uri, 'available': False, 'msg': None, 'domains': []}
    try:
        virsh = _libvirt.Virsh.find(module.get_bin_path, module.run_command, uri)
        report['domains'] = _libvirt.audit(virsh)
        report['available'] = True
    except _libvirt.LibvirtError as err:
        report['msg'] = err.msg
    return report


def main():
    module = _options.new_module(argument_spec(), supports_check_mode=True)
    limit = module.params['max_processes']
    if limit < 0:
        module.fail_json(msg='Invalid value %d for max_processes: expected 0 (no process scan) or more' % limit)
    for name, lowest, highest in SCAN_BOUNDS:
        if not lowest <= module.params[name] <= highest:
            module.fail_json(msg='Invalid value %d for %s: expected %d to %d' % (module.params[name], name, lowest, highest),
                             option=name)
    if module.params['libvirt']:
        try:
            _libvirt.check_uri(module.params['libvirt_uri'], 'libvirt_uri')
        except _libvirt.LibvirtError as err:
            _errors.fail(module, err, {})
    try:
        _ksm.parse_margin(module.params['memory_margin'], 0)
    except _ksm.KsmError as err:
        _errors.fail(module, err, {'changed': False})
    snapshot = _ksm_snapshot.Snapshot(max_processes=limit, max_scan_processes=module.params['max_scan_processes'],
                                      max_scan_seconds=module.params['max_scan_seconds'],
                                      memory_margin=module.params['memory_margin'],
                                      tuner_state=TUNER_STATE, tuner_unit=TUNER_UNIT, proc=PROC)
    try:
        result = snapshot.take()
        result['boot'] = boot_report()
        result['services'] = None
        result['libvirt'] = None
        if module.params['services']:
            result['services'] = _ksm_units.services_report(module.run_command, module.get_bin_path)
        if module.params['libvirt']:
            result['libvirt'] = libvirt_report(module, module.params['libvirt_uri'])
    except _errors.SamepageError as err:
        _errors.fail(module, err, dict(snapshot.result or {}, changed=False))
    except OSError as err:
        _errors.fail(module, _ksm.KsmError('Cannot read the KSM state: %s' % err), dict(snapshot.result or {}, changed=False))
    module.exit_json(changed=False, **result)


if __name__ == '__main__':
    main()
