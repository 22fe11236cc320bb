// SPDX-License-Identifier: GPL-2.0 OR Apache-2.0
/*
 * The floor of capturing on raw_syscalls: the capture object's two hook points with programs that
 * return at once. Not a capture tier: the capture_overhead benchmark attaches it (its `hooks-only`
 * mode) to measure what hooking every syscall costs before any probe does any work. Enabling a
 * syscall tracepoint sends every syscall of every task through the kernel's slow path, and each
 * then runs a program on entry and exit; no capture on these hooks can keep more throughput
 * than this does.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

SEC("tp_btf/sys_enter")
int floor_sys_enter(void *ctx)
{
	return 0;
}

SEC("tp_btf/sys_exit")
int floor_sys_exit(void *ctx)
{
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
