// SPDX-License-Identifier: GPL-2.0 OR Apache-2.0
/*
 * strata's socket capture: syscall tracepoints only (no kprobes, which many hardened kernels lack),
 * CO-RE field access, one record per socket syscall of an AF_INET/AF_INET6 TCP or UDP socket.
 *
 * Enter handlers stash the arguments by thread id; exit handlers read the result and the user
 * buffers (they are still valid and now hold the received bytes), and emit one record. The same
 * source builds two objects: ring buffer (5.8+) and, with -DSTRATA_PERFBUF, perf event array.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include "event.h"

#ifdef STRATA_PERFBUF
/* The perf buffer object is for kernels before 5.8; those before 5.5 lack probe_read_kernel and
 * probe_read_user, and plain bpf_probe_read reads both address spaces on x86. */
#undef bpf_core_read
#define bpf_core_read(dst, sz, src)                                                                 \
	bpf_probe_read(dst, sz, (const void *)__builtin_preserve_access_index(src))
#define bpf_probe_read_user bpf_probe_read
#endif

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define AF_INET 2
#define AF_INET6 10
#define SOCK_STREAM 1
#define SOCK_DGRAM 2
#define IPPROTO_TCP 6
#define IPPROTO_UDP 17
#define S_IFMT 00170000
#define S_IFSOCK 0140000
#define EINPROGRESS 115

/* Set by the loader before load (aya EbpfLoader::override_global). */
const volatile __u32 capture_bytes = 4096; /* payload cap per syscall, <= STRATA_MAX_CAPTURE */
const volatile __u32 self_tgid = 0;        /* the agent itself: never traced */

#ifdef STRATA_PERFBUF
struct {
	__uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(__u32));
} events SEC(".maps");
#define emit(ctx, data, size) bpf_perf_event_output(ctx, &events, BPF_F_CURRENT_CPU, data, size)
#else
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 8 << 20); /* resized by the loader */
} events SEC(".maps");
#define emit(ctx, data, size) bpf_ringbuf_output(&events, data, size, 0)
#endif

/* Arguments of a syscall in flight, keyed by thread id (pid_tgid). */
struct pending_call {
	__u64 enter_ns;
	__u64 arg_buf;     /* buffer, iovec array, msghdr or mmsghdr array, connect's sockaddr */
	__u64 arg_len;     /* buffer length or iovec/message count */
	__u64 arg_addr;    /* recvfrom/sendto sockaddr pointer */
	__u32 syscall;
	__s32 fd;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct pending_call);
} pending SEC(".maps");

/* Per-socket totals, keyed by tgid << 32 | fd; sock_id tells a reused fd from the old socket. */
struct conn_totals {
	__u64 sock_id;
	__u64 bytes_sent;
	__u64 bytes_received;
	__u64 first_seen_ns;
	__u8 role;
	__u8 _pad[7];
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct conn_totals);
} conns SEC(".maps");

/* Records that could not be emitted (buffer full), per enum strata_lost_slot. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, STRATA_LOST_SLOTS);
	__type(key, __u32);
	__type(value, __u64);
} lost SEC(".maps");

/* The data record is too large for the 512-byte BPF stack: build it in a per-CPU scratch slot.
 * The payload area is three times the cap so that a masked offset plus a masked length always
 * stays inside it, which is what the verifier needs to accept a variable-offset copy (see
 * copy_chunk). */
struct data_scratch {
	struct strata_data_event ev;
	__u8 payload[STRATA_MAX_CAPTURE * 3];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct data_scratch);
} scratch SEC(".maps");

static __always_inline void count_lost(__u32 slot)
{
	__u64 *n = bpf_map_lookup_elem(&lost, &slot);
	if (n)
		__sync_fetch_and_add(n, 1);
}

static __always_inline int traced(void)
{
	return (bpf_get_current_pid_tgid() >> 32) != self_tgid;
}

/* fd -> struct socket, only for AF_INET/AF_INET6 TCP or UDP sockets of the current task. */
static __always_inline struct socket *socket_of_fd(int fd, __u64 *sock_id)
{
	if (fd < 0)
		return NULL;
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
	if (!fdt)
		return NULL;
	unsigned int max_fds = BPF_CORE_READ(fdt, max_fds);
	if ((unsigned int)fd >= max_fds)
		return NULL;
	struct file **fds = BPF_CORE_READ(fdt, fd);
	struct file *file = NULL;
	bpf_core_read(&file, sizeof(file), &fds[fd]);
	if (!file)
		return NULL;
	struct inode *inode = BPF_CORE_READ(file, f_inode);
	umode_t mode = BPF_CORE_READ(inode, i_mode);
	if ((mode & S_IFMT) != S_IFSOCK)
		return NULL;
	struct socket *sock = BPF_CORE_READ(file, private_data);
	if (!sock)
		return NULL;
	short type = BPF_CORE_READ(sock, type);
	if (type != SOCK_STREAM && type != SOCK_DGRAM)
		return NULL;
	__u16 family = BPF_CORE_READ(sock, sk, __sk_common.skc_family);
	if (family != AF_INET && family != AF_INET6)
		return NULL;
	*sock_id = BPF_CORE_READ(inode, i_ino);
	return sock;
}

/* Both ends of a socket as the kernel knows them now. */
static __always_inline void read_socket(struct socket *sock, struct strata_socket *out)
{
	struct sock *sk = BPF_CORE_READ(sock, sk);
	short type = BPF_CORE_READ(sock, type);
	__u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);
	out->protocol = type == SOCK_STREAM ? IPPROTO_TCP : IPPROTO_UDP;
	out->local.family = family;
	out->remote.family = family;
	out->local.port = BPF_CORE_READ(sk, __sk_common.skc_num);
	out->remote.port = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
	if (family == AF_INET) {
		__u32 l = BPF_CORE_READ(sk, __sk_common.skc_rcv_saddr);
		__u32 r = BPF_CORE_READ(sk, __sk_common.skc_daddr);
		__builtin_memcpy(out->local.addr, &l, 4);
		__builtin_memcpy(out->remote.addr, &r, 4);
	} else {
		BPF_CORE_READ_INTO(&out->local.addr, sk, __sk_common.skc_v6_rcv_saddr);
		BPF_CORE_READ_INTO(&out->remote.addr, sk, __sk_common.skc_v6_daddr);
	}
}

/* A sockaddr from user memory (recvfrom/sendto/msg_name) overrides the remote end: an unconnected
 * UDP socket has no peer of its own. */
static __always_inline int read_user_sockaddr(__u64 uaddr, struct strata_endpoint *out)
{
	if (!uaddr)
		return 0;
	__u16 family = 0;
	if (bpf_probe_read_user(&family, sizeof(family), (void *)uaddr))
		return 0;
	if (family == AF_INET) {
		struct sockaddr_in sin = {};
		if (bpf_probe_read_user(&sin, sizeof(sin), (void *)uaddr))
			return 0;
		out->family = AF_INET;
		out->port = bpf_ntohs(sin.sin_port);
		__builtin_memset(out->addr, 0, sizeof(out->addr));
		__builtin_memcpy(out->addr, &sin.sin_addr.s_addr, 4);
		return 1;
	}
	if (family == AF_INET6) {
		struct sockaddr_in6 sin6 = {};
		if (bpf_probe_read_user(&sin6, sizeof(sin6), (void *)uaddr))
			return 0;
		out->family = AF_INET6;
		out->port = bpf_ntohs(sin6.sin6_port);
		__builtin_memcpy(out->addr, &sin6.sin6_addr, 16);
		return 1;
	}
	return 0;
}

static __always_inline void fill_header(struct strata_header *h, __u32 kind, int fd, __u64 sock_id)
{
	__u64 id = bpf_get_current_pid_tgid();
	h->kind = kind;
	h->tgid = id >> 32;
	h->tid = (__u32)id;
	h->fd = fd;
	h->sock_id = sock_id;
	h->ts_ns = bpf_ktime_get_ns();
	bpf_get_current_comm(&h->comm, sizeof(h->comm));
}

static __always_inline __u64 conn_key(int fd)
{
	return (bpf_get_current_pid_tgid() & 0xffffffff00000000ULL) | (__u32)fd;
}

/* The totals entry of this fd, (re)started when the fd now names another socket. */
static __always_inline struct conn_totals *totals_for(int fd, __u64 sock_id, __u8 role)
{
	__u64 key = conn_key(fd);
	struct conn_totals *t = bpf_map_lookup_elem(&conns, &key);
	if (t && t->sock_id == sock_id) {
		if (role != STRATA_ROLE_UNKNOWN)
			t->role = role;
		return t;
	}
	struct conn_totals fresh = {
		.sock_id = sock_id,
		.first_seen_ns = bpf_ktime_get_ns(),
		.role = role,
	};
	bpf_map_update_elem(&conns, &key, &fresh, BPF_ANY);
	return bpf_map_lookup_elem(&conns, &key);
}

/* ---- enter side ------------------------------------------------------------------------------ */

static __always_inline int stash(__u32 syscall, struct trace_event_raw_sys_enter *ctx, __u64 buf,
				 __u64 len, __u64 addr)
{
	if (!traced())
		return 0;
	int fd = (int)ctx->args[0];
	__u64 sock_id = 0;
	/* accept's fd is the listener; connect's is a fresh socket: both are sockets already. */
	if (!socket_of_fd(fd, &sock_id))
		return 0;
	struct pending_call call = {
		.enter_ns = bpf_ktime_get_ns(),
		.arg_buf = buf,
		.arg_len = len,
		.arg_addr = addr,
		.syscall = syscall,
		.fd = fd,
	};
	__u64 id = bpf_get_current_pid_tgid();
	if (bpf_map_update_elem(&pending, &id, &call, BPF_ANY))
		count_lost(STRATA_LOST_PENDING);
	return 0;
}

#define ENTER_BUF(name, sys)                                                                        \
	SEC("tracepoint/syscalls/sys_enter_" #name)                                                 \
	int enter_##name(struct trace_event_raw_sys_enter *ctx)                                     \
	{                                                                                           \
		return stash(sys, ctx, ctx->args[1], ctx->args[2], 0);                              \
	}

ENTER_BUF(read, STRATA_SYS_READ)
ENTER_BUF(write, STRATA_SYS_WRITE)
ENTER_BUF(readv, STRATA_SYS_READV)
ENTER_BUF(writev, STRATA_SYS_WRITEV)
ENTER_BUF(recvmsg, STRATA_SYS_RECVMSG)
ENTER_BUF(sendmsg, STRATA_SYS_SENDMSG)
ENTER_BUF(recvmmsg, STRATA_SYS_RECVMMSG)
ENTER_BUF(sendmmsg, STRATA_SYS_SENDMMSG)
ENTER_BUF(connect, STRATA_SYS_CONNECT)
ENTER_BUF(accept, STRATA_SYS_ACCEPT)
ENTER_BUF(accept4, STRATA_SYS_ACCEPT4)

/* recvfrom(fd, buf, len, flags, src_addr, addrlen) and sendto(fd, buf, len, flags, dest, addrlen) */
SEC("tracepoint/syscalls/sys_enter_recvfrom")
int enter_recvfrom(struct trace_event_raw_sys_enter *ctx)
{
	return stash(STRATA_SYS_RECVFROM, ctx, ctx->args[1], ctx->args[2], ctx->args[4]);
}

SEC("tracepoint/syscalls/sys_enter_sendto")
int enter_sendto(struct trace_event_raw_sys_enter *ctx)
{
	return stash(STRATA_SYS_SENDTO, ctx, ctx->args[1], ctx->args[2], ctx->args[4]);
}

/* sendfile64(out_fd, in_fd, offset, count): the socket is out_fd; no payload is captured. */
SEC("tracepoint/syscalls/sys_enter_sendfile64")
int enter_sendfile64(struct trace_event_raw_sys_enter *ctx)
{
	return stash(STRATA_SYS_SENDFILE, ctx, 0, ctx->args[3], 0);
}

/* ---- exit side ------------------------------------------------------------------------------- */

static __always_inline struct pending_call *take_pending(__u64 *id)
{
	*id = bpf_get_current_pid_tgid();
	return bpf_map_lookup_elem(&pending, id);
}

/* Copy up to `want` bytes from a user buffer into the scratch payload at `*off`. */
static __always_inline void copy_chunk(struct data_scratch *s, __u32 *off, __u64 src, __u64 want)
{
	__u32 cap = capture_bytes;
	if (cap > STRATA_MAX_CAPTURE)
		cap = STRATA_MAX_CAPTURE;
	__u32 o = *off;
	if (o >= cap)
		return;
	__u64 n = want;
	if (n > cap - o)
		n = cap - o;
	if (n == 0)
		return;
	/* Verifiers before about 5.13 lose the bounds of the comparisons above (clang moves them to
	 * other registers), so prove the range with masks alone: o < MAX and n < 2 * MAX, and the
	 * payload area is 3 * MAX. The empty asm stops clang from dropping masks it deems redundant. */
	asm volatile("" : "+r"(o));
	asm volatile("" : "+r"(n));
	o &= STRATA_MAX_CAPTURE - 1;
	n &= (STRATA_MAX_CAPTURE * 2) - 1;
	if (bpf_probe_read_user(&s->payload[o], n, (void *)src) == 0)
		*off = o + (__u32)n;
}

/* Copy from an iovec array, at most `budget` bytes in total. */
static __always_inline void copy_iovecs(struct data_scratch *s, __u32 *off, __u64 iov, __u64 iovlen,
					__u64 budget)
{
#pragma unroll
	for (int i = 0; i < STRATA_MAX_IOV; i++) {
		if (i >= iovlen || budget == 0)
			break;
		struct iovec v = {};
		if (bpf_probe_read_user(&v, sizeof(v), (void *)(iov + i * sizeof(struct iovec))))
			break;
		__u64 n = v.iov_len < budget ? v.iov_len : budget;
		copy_chunk(s, off, (__u64)v.iov_base, n);
		budget -= n;
	}
}

static __always_inline int emit_data(void *ctx, struct data_scratch *s, struct pending_call *call,
				     struct socket *sock, __u64 sock_id, __u8 direction,
				     __u64 byte_count, __u32 captured, __u64 peer_addr)
{
	struct strata_data_event *ev = &s->ev;
	fill_header(&ev->hdr, STRATA_KIND_DATA, call->fd, sock_id);
	read_socket(sock, &ev->sock);
	ev->enter_ns = call->enter_ns;
	ev->byte_count = byte_count;
	ev->syscall = call->syscall;
	ev->direction = direction;
	ev->flags = 0;
	ev->_pad0 = 0;
	ev->_pad1 = 0;
	if (read_user_sockaddr(peer_addr, &ev->sock.remote))
		ev->flags |= STRATA_FLAG_PEER_FROM_MSG;
	if (captured > STRATA_MAX_CAPTURE)
		captured = STRATA_MAX_CAPTURE;
	if (captured < byte_count)
		ev->flags |= STRATA_FLAG_TRUNCATED;
	ev->captured_len = captured;

	struct conn_totals *t = totals_for(call->fd, sock_id, STRATA_ROLE_UNKNOWN);
	if (t) {
		ev->sock.role = t->role;
		if (direction == STRATA_DIR_EGRESS)
			__sync_fetch_and_add(&t->bytes_sent, byte_count);
		else
			__sync_fetch_and_add(&t->bytes_received, byte_count);
	} else {
		ev->sock.role = STRATA_ROLE_UNKNOWN;
	}

	__u64 size = sizeof(struct strata_data_event) + captured;
	if (size > sizeof(struct data_scratch))
		return 0;
	if (emit(ctx, s, size))
		count_lost(STRATA_LOST_DATA);
	return 0;
}

static __always_inline int exit_data(struct trace_event_raw_sys_exit *ctx, __u8 direction)
{
	__u64 id;
	struct pending_call *call = take_pending(&id);
	if (!call)
		return 0;
	long ret = ctx->ret;
	if (ret <= 0)
		goto done;

	__u64 sock_id = 0;
	struct socket *sock = socket_of_fd(call->fd, &sock_id);
	if (!sock)
		goto done;
	__u32 zero = 0;
	struct data_scratch *s = bpf_map_lookup_elem(&scratch, &zero);
	if (!s)
		goto done;

	__u32 off = 0;
	switch (call->syscall) {
	case STRATA_SYS_READ:
	case STRATA_SYS_WRITE:
		copy_chunk(s, &off, call->arg_buf, ret);
		emit_data(ctx, s, call, sock, sock_id, direction, ret, off, 0);
		break;
	case STRATA_SYS_RECVFROM:
	case STRATA_SYS_SENDTO:
		copy_chunk(s, &off, call->arg_buf, ret);
		emit_data(ctx, s, call, sock, sock_id, direction, ret, off, call->arg_addr);
		break;
	case STRATA_SYS_READV:
	case STRATA_SYS_WRITEV:
		copy_iovecs(s, &off, call->arg_buf, call->arg_len, ret);
		emit_data(ctx, s, call, sock, sock_id, direction, ret, off, 0);
		break;
	case STRATA_SYS_RECVMSG:
	case STRATA_SYS_SENDMSG: {
		struct user_msghdr msg = {};
		if (bpf_probe_read_user(&msg, sizeof(msg), (void *)call->arg_buf))
			break;
		copy_iovecs(s, &off, (__u64)msg.msg_iov, msg.msg_iovlen, ret);
		emit_data(ctx, s, call, sock, sock_id, direction, ret, off, (__u64)msg.msg_name);
		break;
	}
	case STRATA_SYS_SENDFILE:
		emit_data(ctx, s, call, sock, sock_id, direction, ret, 0, 0);
		break;
	}
done:
	bpf_map_delete_elem(&pending, &id);
	return 0;
}

/* recvmmsg/sendmmsg return the number of messages; each mmsghdr carries its own msg_len. */
static __always_inline int exit_mmsg(struct trace_event_raw_sys_exit *ctx, __u8 direction)
{
	__u64 id;
	struct pending_call *call = take_pending(&id);
	if (!call)
		return 0;
	long ret = ctx->ret;
	__u64 sock_id = 0;
	struct socket *sock = ret > 0 ? socket_of_fd(call->fd, &sock_id) : NULL;
	__u32 zero = 0;
	struct data_scratch *s = bpf_map_lookup_elem(&scratch, &zero);
	if (!sock || !s)
		goto done;
#pragma unroll
	for (int i = 0; i < STRATA_MAX_MMSG; i++) {
		if (i >= ret)
			break;
		struct mmsghdr m = {};
		if (bpf_probe_read_user(&m, sizeof(m), (void *)(call->arg_buf + i * sizeof(struct mmsghdr))))
			break;
		__u32 off = 0;
		copy_iovecs(s, &off, (__u64)m.msg_hdr.msg_iov, m.msg_hdr.msg_iovlen, m.msg_len);
		emit_data(ctx, s, call, sock, sock_id, direction, m.msg_len, off,
			  (__u64)m.msg_hdr.msg_name);
	}
done:
	bpf_map_delete_elem(&pending, &id);
	return 0;
}

#define EXIT_DATA(name, dir)                                                                        \
	SEC("tracepoint/syscalls/sys_exit_" #name)                                                  \
	int exit_##name(struct trace_event_raw_sys_exit *ctx)                                       \
	{                                                                                           \
		return exit_data(ctx, dir);                                                         \
	}

EXIT_DATA(read, STRATA_DIR_INGRESS)
EXIT_DATA(write, STRATA_DIR_EGRESS)
EXIT_DATA(readv, STRATA_DIR_INGRESS)
EXIT_DATA(writev, STRATA_DIR_EGRESS)
EXIT_DATA(recvfrom, STRATA_DIR_INGRESS)
EXIT_DATA(sendto, STRATA_DIR_EGRESS)
EXIT_DATA(recvmsg, STRATA_DIR_INGRESS)
EXIT_DATA(sendmsg, STRATA_DIR_EGRESS)
EXIT_DATA(sendfile64, STRATA_DIR_EGRESS)

SEC("tracepoint/syscalls/sys_exit_recvmmsg")
int exit_recvmmsg(struct trace_event_raw_sys_exit *ctx)
{
	return exit_mmsg(ctx, STRATA_DIR_INGRESS);
}

SEC("tracepoint/syscalls/sys_exit_sendmmsg")
int exit_sendmmsg(struct trace_event_raw_sys_exit *ctx)
{
	return exit_mmsg(ctx, STRATA_DIR_EGRESS);
}

/* ---- connections ----------------------------------------------------------------------------- */

static __always_inline int emit_open(void *ctx, struct pending_call *call, int fd, __u8 role, long ret)
{
	__u64 sock_id = 0;
	struct socket *sock = socket_of_fd(fd, &sock_id);
	if (!sock)
		return 0;
	totals_for(fd, sock_id, role);
	struct strata_open_event ev = {};
	fill_header(&ev.hdr, STRATA_KIND_OPEN, fd, sock_id);
	read_socket(sock, &ev.sock);
	ev.sock.role = role;
	ev.syscall = call->syscall;
	ev.ret = ret;
	ev.enter_ns = call->enter_ns;
	if (emit(ctx, &ev, sizeof(ev)))
		count_lost(STRATA_LOST_OPEN);
	return 0;
}

/* accept returns the new connection's fd. */
static __always_inline int exit_accept_common(struct trace_event_raw_sys_exit *ctx)
{
	__u64 id;
	struct pending_call *call = take_pending(&id);
	if (!call)
		return 0;
	if (ctx->ret >= 0)
		emit_open(ctx, call, (int)ctx->ret, STRATA_ROLE_SERVER, 0);
	bpf_map_delete_elem(&pending, &id);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_accept")
int exit_accept(struct trace_event_raw_sys_exit *ctx)
{
	return exit_accept_common(ctx);
}

SEC("tracepoint/syscalls/sys_exit_accept4")
int exit_accept4(struct trace_event_raw_sys_exit *ctx)
{
	return exit_accept_common(ctx);
}

/* A connect that succeeded, or is in progress (non-blocking), opens a client connection. */
SEC("tracepoint/syscalls/sys_exit_connect")
int exit_connect(struct trace_event_raw_sys_exit *ctx)
{
	__u64 id;
	struct pending_call *call = take_pending(&id);
	if (!call)
		return 0;
	long ret = ctx->ret;
	if (ret == 0 || ret == -EINPROGRESS)
		emit_open(ctx, call, call->fd, STRATA_ROLE_CLIENT, ret);
	bpf_map_delete_elem(&pending, &id);
	return 0;
}

/* close() of a socket strata saw: report its totals. The fd is still open at sys_enter_close. */
SEC("tracepoint/syscalls/sys_enter_close")
int enter_close(struct trace_event_raw_sys_enter *ctx)
{
	if (!traced())
		return 0;
	int fd = (int)ctx->args[0];
	__u64 key = conn_key(fd);
	struct conn_totals *t = bpf_map_lookup_elem(&conns, &key);
	if (!t)
		return 0;
	__u64 sock_id = 0;
	struct socket *sock = socket_of_fd(fd, &sock_id);
	if (sock && sock_id == t->sock_id) {
		struct strata_close_event ev = {};
		fill_header(&ev.hdr, STRATA_KIND_CLOSE, fd, sock_id);
		read_socket(sock, &ev.sock);
		ev.sock.role = t->role;
		ev.bytes_sent = t->bytes_sent;
		ev.bytes_received = t->bytes_received;
		ev.first_seen_ns = t->first_seen_ns;
		if (emit(ctx, &ev, sizeof(ev)))
			count_lost(STRATA_LOST_CLOSE);
	}
	bpf_map_delete_elem(&conns, &key);
	return 0;
}

/* TCP state changes. They often run in softirq context, where the current task is unrelated:
 * the record carries the socket's inode (when the sock has a socket yet) and addresses, and its
 * tgid/comm must not be trusted. */
SEC("tracepoint/sock/inet_sock_set_state")
int sock_set_state(struct trace_event_raw_inet_sock_set_state *ctx)
{
	if (ctx->protocol != IPPROTO_TCP)
		return 0;
	struct sock *sk = (struct sock *)ctx->skaddr;
	struct strata_state_event ev = {};
	__u64 sock_id = 0;
	struct socket *sock = BPF_CORE_READ(sk, sk_socket);
	if (sock)
		sock_id = BPF_CORE_READ(sock, file, f_inode, i_ino);
	fill_header(&ev.hdr, STRATA_KIND_STATE, -1, sock_id);
	if (ev.hdr.tgid == self_tgid)
		return 0;
	ev.sock.protocol = IPPROTO_TCP;
	ev.sock.local.family = ctx->family;
	ev.sock.remote.family = ctx->family;
	ev.sock.local.port = ctx->sport;
	ev.sock.remote.port = ctx->dport;
	/* The verifier refuses loads at a variable offset into ctx: copy the arrays with a helper. */
	if (ctx->family == AF_INET) {
		bpf_core_read(ev.sock.local.addr, 4, &ctx->saddr);
		bpf_core_read(ev.sock.remote.addr, 4, &ctx->daddr);
	} else {
		bpf_core_read(ev.sock.local.addr, 16, &ctx->saddr_v6);
		bpf_core_read(ev.sock.remote.addr, 16, &ctx->daddr_v6);
	}
	ev.old_state = ctx->oldstate;
	ev.new_state = ctx->newstate;
	if (emit(ctx, &ev, sizeof(ev)))
		count_lost(STRATA_LOST_STATE);
	return 0;
}
