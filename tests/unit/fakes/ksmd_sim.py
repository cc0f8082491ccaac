# -*- coding: utf-8 -*-
# Copyright: (c) 2026, samepage.ksm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""A time-stepped model of ksmd scanning and merging, on top of the fake /sys/kernel/mm/ksm.

ksmd reads run, pages_to_scan and sleep_millisecs from the FakeKsmKernel (so whatever the code under
test writes through _ksm takes effect) and writes back the counters the kernel keeps (pages_shared,
pages_sharing, pages_unshared, full_scans, pages_scanned, general_profit). The model follows what
the kernel reference (section 9) measured on this machine:

- ksmd runs batches of pages_to_scan pages, then sleeps sleep_millisecs rounded UP to whole ticks
  plus one (HZ=250: 20 ms is a 24 ms cycle); sleep 0 means no sleep: one full core;
- a page merges only once its checksum was stable over a previous pass, so nothing merges in the first
  full pass;
- CPU per page: an already merged page is cheap (3.7 M pages/s per core), a first look
  (checksum) costs more, a merge more again (0.4-0.5 s of CPU for 512 MiB), unique memory 18 times a
  merged page, every pass.

Memory is modelled in chunks of pages (all pages of a chunk share a state) to keep tests fast.
Workloads: `same` (every page equal), `paired` (each chunk equals the chunk of the same index in the
partner region), `unique`; churn rewrites chunks of a region at a rate, a share of them with content
that merges again (churn_part: the share of the region rewritten, over and over). Regions start at a
time (late arrival) and are marked mergeable some time after their process appears. Processes are listed like /proc for the tuner's ProcessWatcher.

Standard library only, Python 3.8 syntax.
"""

import math
import random

from ansible_collections.samepage.ksm.tests.unit.fakes.kernel import PAGE_SIZE, FakeKsmKernel

MIB_PAGES = 1024 * 1024 // PAGE_SIZE

COST_MERGED = 1 / 3.7e6        # CPU seconds to scan a page that is already merged
COST_CHECKSUM = 1.0e-6         # first look at a page (checksum only)
COST_MERGE = 3.4e-6            # a page merged (0.45 s of CPU for 512 MiB)
COST_UNIQUE = 18 * COST_MERGED  # a page that matches nothing, every pass

NEW, STABLE, UNSTABLE, MERGED = 0, 1, 2, 3


class Region:
    """Memory of one process. kind: same, paired (with partner), unique."""

    def __init__(self, name, mib, kind='same', start=0.0, madvise_delay=0.0, partner=None, churn_mib_per_s=0.0,
                 remerge=0.5, churn_part=0.25, pid=None, chunk_pages=256):
        self.name = name
        self.kind = kind
        self.pages = int(mib * MIB_PAGES)
        self.start = start
        self.madvise_at = start + madvise_delay
        self.partner = partner
        self.churn = churn_mib_per_s * MIB_PAGES
        self.remerge = remerge
        self.pid = pid
        self.chunk_pages = chunk_pages
        count = int(math.ceil(self.pages / float(chunk_pages)))
        self.sizes = [chunk_pages] * count
        if count and self.pages % chunk_pages:
            self.sizes[-1] = self.pages % chunk_pages
        self.state = [NEW] * count
        self.mergeable = [kind != 'unique'] * count
        self.churn_due = 0.0
        self.churn_next = 0
        self.churn_chunks = max(1, int(count * churn_part))   # the part that is rewritten, round robin


class KsmdSim:
    """ksmd and the memory it scans, advanced in time by advance(until)."""

    def __init__(self, kernel=None, hz=250, mem_total_mib=8192, mem_free_mib=6144, seed=1):
        self.kernel = kernel or FakeKsmKernel('6.18')
        self.hz = hz
        self.now = 0.0
        self.cpu = 0.0
        self.regions = []            # in scan order (a new process is added at the end, as ksm_enter does)
        self.cursor = (0, 0, 0)      # (region index, chunk index, pages done in that chunk)
        self.sleep_until = 0.0
        self.same_merged = 0         # pages of `same` content merged (one KSM page serves them all)
        self.paired_merged = 0       # pages of paired regions merged with their partner (per pair)
        self.paired_alone = 0        # KSM pages whose partner was rewritten
        self.mem_total = mem_total_mib * MIB_PAGES * PAGE_SIZE
        self.mem_free_base = mem_free_mib * MIB_PAGES * PAGE_SIZE
        self.rng = random.Random(seed)
        self.cpu_trace = [(0.0, 0.0)]   # (time, cumulative ksmd cpu) after every batch / step
        self.trace = []                 # (time, sharing) after every advance
        self.counters = dict(pages_shared=0, pages_sharing=0, pages_unshared=0, pages_volatile=0, full_scans=0,
                             pages_scanned=0)
        self._sync()

    # -- workloads -----------------------------------------------------------------------------
    def add(self, region):
        if region.pid is None:
            region.pid = 1000 + len(self.regions) + len([r for r in self.regions if r.pid])
        self.regions.append(region)
        return region

    def active_regions(self):
        return [r for r in self.regions if r.madvise_at <= self.now]

    def list_pids(self):
        """What os.listdir('/proc') shows: running processes, kernel threads and a few others."""
        return ['1', '2', 'self', 'meminfo'] + [str(r.pid) for r in self.regions if r.start <= self.now]

    def process_mergeable(self, pid):
        for region in self.regions:
            if str(region.pid) == pid:
                return region.madvise_at <= self.now
        return False

    def meminfo(self):
        used = sum(r.pages for r in self.regions if r.start <= self.now) - self.counters['pages_sharing']
        return {'MemTotal': self.mem_total, 'MemAvailable': self.mem_free_base - used * PAGE_SIZE}

    def ksmd_cpu(self, now=None):
        return self.cpu

    def sharing(self):
        return self.counters['pages_sharing']

    # -- the kernel's counters -----------------------------------------------------------------
    def _sync(self):
        values = self.kernel.values
        for name, value in self.counters.items():
            if name in values:
                values[name] = value
        if 'general_profit' in values:
            rmap_items = self.counters['pages_unshared'] + self.counters['pages_sharing'] + \
                self.counters['pages_shared']
            values['general_profit'] = self.counters['pages_sharing'] * PAGE_SIZE - rmap_items * 64

    def _recount(self):
        c = self.counters
        c['pages_shared'] = (1 if self.same_merged else 0) + self.paired_merged + self.paired_alone
        c['pages_sharing'] = max(self.same_merged - 1, 0) + self.paired_merged

    # -- ksmd --------------------------------------------------------------------------------------
    def _sleep_seconds(self, millisecs):
        if millisecs <= 0:
            return 0.0
        tick = 1.0 / self.hz
        return (int(math.ceil(millisecs / 1000.0 / tick - 1e-9)) + 1) * tick

    def advance(self, until):
        """Run ksmd (and churn) up to `until` seconds."""
        while self.now < until - 1e-12:
            values = self.kernel.values
            # ksmd scans only while some process has memory marked mergeable; else it waits, using no CPU
            if values['run'] != 1 or not self.active_regions():
                step = until - self.now
                self._churn(step)
                self.now = until
                self.sleep_until = self.now
                break
            if self.now < self.sleep_until:
                step = min(until, self.sleep_until) - self.now
                self._churn(step)
                self.now += step
                continue
            cost = self._batch(values['pages_to_scan'])
            self.cpu += cost
            self._churn(cost)
            self.now += cost
            self.cpu_trace.append((self.now, self.cpu))
            if not self.trace or self.trace[-1][1] != self.sharing():
                self.trace.append((self.now, self.sharing()))
            self.sleep_until = self.now + self._sleep_seconds(values['sleep_millisecs'])
            if values['pages_to_scan'] == 0 and values['sleep_millisecs'] == 0:
                self.sleep_until = self.now + 1.0 / self.hz
        self.cpu_trace.append((self.now, self.cpu))
        self.trace.append((self.now, self.sharing()))
        self._sync()

    def _batch(self, pages):
        """Scan `pages` pages from the cursor; returns the CPU seconds they cost."""
        regions = self.active_regions()
        if not regions:
            return 1e-6
        cost = 0.0
        index, chunk, done = self.cursor
        while pages > 0:
            if index >= len(regions):
                index, chunk, done = 0, 0, 0
                self.counters['full_scans'] += 1
            region = regions[index]
            if chunk >= len(region.sizes):
                index, chunk, done = index + 1, 0, 0
                continue
            size = region.sizes[chunk]
            take = min(pages, size - done)
            cost += take * self._page_cost(region, chunk)
            pages -= take
            done += take
            self.counters['pages_scanned'] += take
            if done >= size:
                self._scanned(region, chunk)
                chunk, done = chunk + 1, 0
        self.cursor = (index, chunk, done)
        return max(cost, 1e-7)

    @staticmethod
    def _page_cost(region, chunk):
        state = region.state[chunk]
        if state == MERGED:
            return COST_MERGED
        if state == NEW:
            return COST_CHECKSUM
        if state == STABLE and region.mergeable[chunk] and region.kind == 'same':
            return COST_MERGE
        return COST_UNIQUE

    def _scanned(self, region, chunk):
        """A whole chunk was scanned: its pages change state as the kernel's would."""
        size = region.sizes[chunk]
        state = region.state[chunk]
        c = self.counters
        if state == NEW:
            region.state[chunk] = STABLE
            return
        if state == MERGED or not region.mergeable[chunk]:
            if state == STABLE:
                region.state[chunk] = UNSTABLE
                c['pages_unshared'] += size
            return
        if region.kind == 'same':
            if state == UNSTABLE:
                c['pages_unshared'] -= size
            self.same_merged += size
            region.state[chunk] = MERGED
            self._recount()
            return
        partner = region.partner
        if partner is not None and chunk < len(partner.state) and partner.state[chunk] == UNSTABLE \
                and partner.mergeable[chunk] and partner.madvise_at <= self.now:
            partner.state[chunk] = MERGED
            region.state[chunk] = MERGED
            c['pages_unshared'] -= partner.sizes[chunk] + (size if state == UNSTABLE else 0)
            self.paired_merged += size
            self._recount()
            return
        if state == STABLE:
            region.state[chunk] = UNSTABLE
            c['pages_unshared'] += size

    def _churn(self, seconds):
        for region in self.regions:
            if not region.churn or region.start > self.now:
                continue
            region.churn_due += region.churn * seconds
            while region.churn_due >= region.chunk_pages:
                region.churn_due -= region.chunk_pages
                chunk = region.churn_next
                region.churn_next = (chunk + 1) % region.churn_chunks
                self._rewrite(region, chunk)

    def _rewrite(self, region, chunk):
        size = region.sizes[chunk]
        c = self.counters
        state = region.state[chunk]
        if state == MERGED:
            if region.kind == 'same':
                self.same_merged -= size
            else:
                # the partner keeps the KSM page alone: still shared, no longer sharing
                self.paired_merged -= size
                self.paired_alone += size
            self._recount()
        elif state == UNSTABLE:
            c['pages_unshared'] -= size
        region.state[chunk] = NEW
        region.mergeable[chunk] = self.rng.random() < region.remerge

    # -- measurements ------------------------------------------------------------------------------
    def achievable(self, regions=None):
        """Pages that can be saved once everything mergeable is merged."""
        total = 0
        for region in regions or self.regions:
            if region.kind == 'same':
                total += region.pages
            elif region.kind == 'paired' and region.partner is not None and region.name < region.partner.name:
                total += region.pages
        if any(r.kind == 'same' for r in (regions or self.regions)):
            total -= 1
        return total

    def time_to(self, pages, since=0.0):
        """First time (from the trace) sharing reached `pages`, or None."""
        for when, sharing in self.trace:
            if when >= since and sharing >= pages:
                return when
        return None

    def cpu_at(self, when):
        trace = self.cpu_trace
        lo, hi = 0, len(trace) - 1
        if when <= trace[0][0]:
            return trace[0][1]
        if when >= trace[-1][0]:
            return trace[-1][1]
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if trace[mid][0] <= when:
                lo = mid
            else:
                hi = mid
        (t0, c0), (t1, c1) = trace[lo], trace[hi]
        return c0 if t1 <= t0 else c0 + (c1 - c0) * (when - t0) / (t1 - t0)

    def cpu_percent(self, start, end):
        """ksmd's average CPU between two times, in percent of one core."""
        return 100.0 * (self.cpu_at(end) - self.cpu_at(start)) / (end - start)

    def max_window_percent(self, window, step=0.25):
        """The highest average ksmd CPU over any `window` seconds of the run so far."""
        worst = 0.0
        start = 0.0
        while start + window <= self.now + 1e-9:
            worst = max(worst, self.cpu_percent(start, start + window))
            start += step
        return worst


def drive(sim, tuner, until, kicks=(), after_step=None):
    """Run the tuner against the simulation until `until` (simulated seconds); kicks: times of a SIGHUP.

    Returns the decisions as [(time, decision)]."""
    kicks = sorted(kicks)
    decisions = []
    while sim.now < until:
        kick = None
        if kicks and kicks[0] <= sim.now:
            kicks.pop(0)
            kick = 'SIGHUP'
        wait = tuner.step(kick)
        decisions.append((sim.now, tuner.decision))
        if after_step is not None:
            after_step(sim, tuner)
        target = sim.now + wait
        if kicks and kicks[0] < target:
            target = max(kicks[0], sim.now + 1e-3)
        sim.advance(min(target, until))
    return decisions
