// SPDX-License-Identifier: GPL-2.0 OR Apache-2.0
/*
 * The BTF check: proves a BTF right for this kernel before the probes are relocated with it.
 *
 * A BTF from an archive or generated from headers says where each field the probes read lives. If
 * it describes another kernel, the probes would read garbage and strata would report wrong
 * connections without any error. So the agent opens sockets whose ends it knows (a TCP connection
 * over IPv4 loopback and, where the host has it, one over IPv6), tells this program their fds, and
 * calls getppid(); this program, relocated with the candidate BTF, walks those fds with the very
 * code the probes use (socket.h) and writes what it found. The agent compares field by field.
 *
 * Built like the perf-buffer object (configuration in a map, bpf_probe_read) so it loads on every
 * kernel the probes claim, 4.14 on.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include "event.h"

#undef bpf_core_read
#define bpf_core_read(dst, sz, src)                                                                 \
	bpf_probe_read(dst, sz, (const void *)__builtin_preserve_access_index(src))

#include "socket.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define STRATA_CHECK_FDS 2

struct strata_btf_check_config {
	__u64 pid_tgid; /* only this thread's getppid() runs the check */
	__s32 fds[STRATA_CHECK_FDS];
};

struct strata_btf_check_result {
	__u32 found;   /* 1 when socket_of_fd accepted the fd */
	__u32 _pad;
	__u64 sock_id; /* inode number */
	struct strata_socket sock;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct strata_btf_check_config);
} check_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, STRATA_CHECK_FDS);
	__type(key, __u32);
	__type(value, struct strata_btf_check_result);
} check_result SEC(".maps");

static __always_inline void check_fd(__u32 slot, int fd)
{
	struct strata_btf_check_result *r = bpf_map_lookup_elem(&check_result, &slot);
	if (!r || fd < 0)
		return;
	struct strata_sock_ref ref = {};
	if (!socket_of_fd(fd, &ref))
		return;
	r->sock_id = ref.sock_id;
	read_socket((struct socket *)ref.sock, &r->sock);
	r->found = 1;
}

SEC("tracepoint/syscalls/sys_enter_getppid")
int btf_check(void *ctx)
{
	__u32 zero = 0;
	struct strata_btf_check_config *c = bpf_map_lookup_elem(&check_config, &zero);
	if (!c || bpf_get_current_pid_tgid() != c->pid_tgid)
		return 0;
	check_fd(0, c->fds[0]);
	check_fd(1, c->fds[1]);
	return 0;
}
