/* SPDX-License-Identifier: GPL-2.0 OR Apache-2.0 */
/*
 * What differs between strata's two BPF objects, built from the same sources:
 *
 *   strata.bpf.o          (default)          claims 5.8+:  BPF ring buffer, global data,
 *                                                          bpf_probe_read_{user,kernel}
 *   strata_perfbuf.bpf.o  (-DSTRATA_PERFBUF) claims 4.14+: perf event array, configuration in a
 *                                                          map, bpf_probe_read
 *
 * The perf-buffer object is what kernels without a ring buffer run (4.14 to 5.7, and any kernel
 * when `--transport perf-buffer` forces it). Its rules come from the oldest verifier it claims
 * (see the table in probes-core/src/object_check.rs, which a test holds every program to): no
 * global data before 5.2, no bpf_probe_read_user/kernel before 5.5, no ring buffer before 5.8,
 * no bounded loops before 5.3 (loops here are unrolled), at most 4 096 instructions per program
 * before 5.2, no BPF-to-BPF calls before 4.16 (everything is inlined).
 */
#ifndef STRATA_VARIANT_H
#define STRATA_VARIANT_H

#include "event.h"

#ifdef STRATA_PERFBUF

/* Kernels before 5.5 lack probe_read_kernel and probe_read_user; plain bpf_probe_read reads both
 * address spaces on x86. */
#undef bpf_core_read
#define bpf_core_read(dst, sz, src)                                                                 \
	bpf_probe_read(dst, sz, (const void *)__builtin_preserve_access_index(src))
#define bpf_probe_read_user bpf_probe_read

/* No global data before 5.2: the loader writes the configuration into entry 0. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct strata_config);
} config_map SEC(".maps");

/* Fills `out` with the loader's configuration; 0 when the map has no entry (cannot happen for an
 * array map, but the verifier needs the NULL check). */
static __always_inline int load_config(struct strata_config *out)
{
	__u32 zero = 0;
	struct strata_config *c = bpf_map_lookup_elem(&config_map, &zero);
	if (!c)
		return 0;
	*out = *c;
	return 1;
}

struct {
	__uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(__u32));
} events SEC(".maps");
#define emit(ctx, data, size) bpf_perf_event_output(ctx, &events, BPF_F_CURRENT_CPU, data, size)

#else /* ring buffer object */

/* Set by the loader before load (aya EbpfLoader::override_global). */
const volatile struct strata_config strata_cfg = { .capture_bytes = 4096, .self_tgid = 0 };

static __always_inline int load_config(struct strata_config *out)
{
	out->capture_bytes = strata_cfg.capture_bytes;
	out->self_tgid = strata_cfg.self_tgid;
	return 1;
}

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 8 << 20); /* resized by the loader */
} events SEC(".maps");

/* One wake-up per batch, not per record: a wake-up (an irq_work, a self-IPI, which in a VM is an
 * exit to the hypervisor) costs the producing syscall far more than the copy. The reader is woken
 * when the data waiting crosses a multiple of wakeup_bytes, so once per that many bytes, not for
 * every record while it is on its way; a crossing two CPUs race past is caught at the next. The
 * reader drains to empty before it sleeps and also drains on a short timer, so nothing waits long. */
static __always_inline long emit_ring(void *data, __u64 size)
{
	__u64 flags = 0;
	__u64 every = strata_cfg.wakeup_bytes;
	if (every) {
		__u64 before = bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA);
		flags = before / every != (before + size) / every ? BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP;
	}
	return bpf_ringbuf_output(&events, data, size, flags);
}
#define emit(ctx, data, size) emit_ring(data, size)

#endif

#endif
