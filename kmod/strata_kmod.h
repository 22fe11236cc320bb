/* SPDX-License-Identifier: GPL-2.0 OR Apache-2.0 */
/*
 * The character device between strata's kernel module and the agent: ioctls and the layout of the
 * per-CPU rings the agent maps. probes-kmod/src/abi.rs mirrors it (a test compares the two).
 *
 * Records in a ring are the ones the BPF probes write (event.h), each behind an 8-byte
 * strata_kmod_rec. A CPU's ring is one control page followed by `ring_bytes` of data; the agent
 * maps all of them at once, CPU after CPU (see strata_kmod_info).
 */
#ifndef STRATA_KMOD_H
#define STRATA_KMOD_H

#include <linux/ioctl.h>
#include <linux/types.h>

/* Bumped whenever anything in this file or event.h changes incompatibly. The agent refuses a
 * module whose ABI is not its own (a module an older strata left loaded). */
#define STRATA_KMOD_ABI 1
#define STRATA_KMOD_NAME "strata"

/* What the module tells the agent. */
struct strata_kmod_info {
	__u32 abi;        /* STRATA_KMOD_ABI */
	__u32 ncpus;      /* rings: one per possible CPU */
	__u32 ring_bytes; /* data bytes per ring (a power of two) */
	__u32 page_size;  /* each ring's control page: the data follows it */
};

/* What the agent tells the module when it starts capturing. */
struct strata_kmod_start {
	__u32 self_tgid;     /* the agent: never traced */
	__u32 capture_bytes; /* payload cap per syscall, <= STRATA_MAX_CAPTURE */
	__u32 wakeup_bytes;  /* wake a poll()ing reader once a ring holds this many bytes */
	__u32 _pad;
};

#define STRATA_KMOD_IOC_INFO _IOR('S', 1, struct strata_kmod_info)
#define STRATA_KMOD_IOC_START _IOW('S', 2, struct strata_kmod_start)
#define STRATA_KMOD_IOC_STOP _IO('S', 3)

/* A ring's control page. `head` is written by the module only, `tail` by the agent only; both
 * count bytes since the start and never wrap (a ring position is `pos & (ring_bytes - 1)`). */
struct strata_kmod_ctl {
	__u64 head;
	__u64 tail;
	__u64 lost[8]; /* records dropped, by enum strata_lost_slot (event.h) */
};

/* Every record's header in a ring: its length (header included, a multiple of 8) and whether it
 * is a record or padding up to the end of the ring. */
struct strata_kmod_rec {
	__u32 len;
	__u32 pad; /* 1: skip to the ring's start */
};

#endif
