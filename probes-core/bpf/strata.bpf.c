// SPDX-License-Identifier: GPL-2.0 OR Apache-2.0
/*
 * strata's socket capture: syscall tracepoints only (no kprobes, which many hardened kernels lack),
 * CO-RE field access, one record per socket syscall of an AF_INET/AF_INET6 TCP or UDP socket.
 *
 * Enter handlers stash the arguments by thread id; exit handlers read the result and the user
 * buffers (they are still valid and now hold the received bytes), and emit one record. The same
 * source builds two objects (variant.h): ring buffer for 5.8+, and perf event array for 4.14+.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include "event.h"
#include "variant.h"
#include "socket.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define EINPROGRESS 115
#define MSG_PEEK 2

/* What every program returns: non-zero lets the kernel hand the tracepoint's record on to perf
 * listeners too (perf_trace_run_bpf_submit); 0 would hide these syscalls from every other tool
 * that reads them with perf_event_open (strata's own perf-event tier included). With no listener
 * it costs nothing. */
#define STRATA_PASS_ON 1

/* Arguments of a syscall in flight, keyed by thread id (pid_tgid), and what enter learnt of its
 * fd: exit does not walk the fd table again. The socket stays valid until exit: the syscall holds
 * a reference to its file. */
struct pending_call {
	__u64 enter_ns;
	__u64 arg_buf;     /* buffer, iovec array, msghdr or mmsghdr array, connect's sockaddr */
	__u64 arg_len;     /* buffer length or iovec/message count */
	__u64 arg_addr;    /* recvfrom/sendto sockaddr pointer */
	struct strata_sock_ref ref;
	__u32 syscall;     /* 0 once exit took it */
	__s32 fd;
};

/* One slot per thread, written in place at every enter and marked taken at exit, never deleted: a
 * hash update (allocate, link, free the old element) costs more than the rest of an enter. Slots of
 * threads that are gone are the least recently used, which the LRU map reclaims first. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 32768);
	__type(key, __u64);
	__type(value, struct pending_call);
} pending SEC(".maps");

/* Per-socket totals and ends, keyed by tgid << 32 | fd; ref.sock_id tells a reused fd from the old
 * socket. The ends are read from the socket once (and again at connect), not per record: a
 * socket's addresses do not change while it carries data. `ref` also makes this the fd's socket
 * cache (see lookup_socket). */
struct conn_totals {
	struct strata_sock_ref ref;
	__u64 bytes_sent;
	__u64 bytes_received;
	__u64 first_seen_ns;
	struct strata_socket sock;
	__u8 role;
	/* The connection began with a TLS handshake: its payload is counted, no longer copied. */
	__u8 tls;
	__u8 _pad[2];
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

/* The same losses by process (process context only), so they can be told apart: which
 * workload lost what, and a test that its own records were lost, not another process's. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, struct strata_lost_key);
	__type(value, __u64);
} lost_by_tgid SEC(".maps");

/* Losses of a record nobody knows the process of (softirq context). */
static __always_inline void count_lost_global(__u32 slot, __u64 count)
{
	__u64 *n = bpf_map_lookup_elem(&lost, &slot);
	if (n)
		__sync_fetch_and_add(n, count);
}

static __always_inline void count_lost_n(__u32 slot, __u64 count)
{
	count_lost_global(slot, count);
	struct strata_lost_key key = { .tgid = bpf_get_current_pid_tgid() >> 32, .slot = slot };
	__u64 *n = bpf_map_lookup_elem(&lost_by_tgid, &key);
	if (n) {
		__sync_fetch_and_add(n, count);
	} else {
		bpf_map_update_elem(&lost_by_tgid, &key, &count, BPF_NOEXIST);
	}
}

static __always_inline void count_lost(__u32 slot)
{
	count_lost_n(slot, 1);
}

static __always_inline int traced(const struct strata_config *cfg)
{
	return (bpf_get_current_pid_tgid() >> 32) != cfg->self_tgid;
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
		struct strata_sockaddr_in sin = {};
		if (bpf_probe_read_user(&sin, sizeof(sin), (void *)uaddr))
			return 0;
		out->family = AF_INET;
		out->port = bpf_ntohs(sin.port);
		__builtin_memset(out->addr, 0, sizeof(out->addr));
		__builtin_memcpy(out->addr, &sin.addr, 4);
		return 1;
	}
	if (family == AF_INET6) {
		struct strata_sockaddr_in6 sin6 = {};
		if (bpf_probe_read_user(&sin6, sizeof(sin6), (void *)uaddr))
			return 0;
		out->family = AF_INET6;
		out->port = bpf_ntohs(sin6.port);
		__builtin_memcpy(out->addr, sin6.addr, 16);
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
#ifdef STRATA_RAW_SYSCALLS
	/* Two loads from the task (a BTF pointer) instead of the helper, which copies byte by byte:
	 * about a fifth of a record's cost otherwise. After the name's NUL an older kernel may leave an
	 * older name's tail (the helper zeroes it); the agent reads up to the NUL, so both read alike. */
	const __u64 *comm = (const __u64 *)bpf_get_current_task_btf()->comm;
	__u64 *to = (__u64 *)h->comm;
	to[0] = comm[0];
	to[1] = comm[1];
#else
	bpf_get_current_comm(&h->comm, sizeof(h->comm));
#endif
}

static __always_inline __u64 conn_key(int fd)
{
	return (bpf_get_current_pid_tgid() & 0xffffffff00000000ULL) | (__u32)fd;
}

/* The totals entry of this fd, (re)started when the fd now names another socket; `refresh` reads
 * the socket's ends again (a connect just set them). */
static __always_inline struct conn_totals *totals_for(int fd, const struct strata_sock_ref *ref, __u8 role,
						      int refresh)
{
	__u64 key = conn_key(fd);
	struct socket *sock = (struct socket *)ref->sock;
	struct conn_totals *t = bpf_map_lookup_elem(&conns, &key);
	if (t && t->ref.sock_id == ref->sock_id) {
		if (role != STRATA_ROLE_UNKNOWN)
			t->role = role;
		if (refresh)
			read_socket(sock, &t->sock);
		return t;
	}
	struct conn_totals fresh = {
		.ref = *ref,
		.first_seen_ns = bpf_ktime_get_ns(),
		.role = role,
	};
	read_socket(sock, &fresh.sock);
	bpf_map_update_elem(&conns, &key, &fresh, BPF_ANY);
	return bpf_map_lookup_elem(&conns, &key);
}

/* fd -> socket through the fd's entry in conns when the fd still holds the file and inode that
 * entry saw, and the inode still has its number: a socket's inode number is never handed to
 * another socket, and a file or inode freed and reused at the same address would have to be both,
 * with the same number, for the cache to be fooled. That skips half of the walk (the socket, its
 * type and family), which is most of an enter's cost. `*hit` is that entry when the cache held
 * the fd, else NULL: a caller that needs the totals next does not look them up again. */
static __always_inline int lookup_socket(int fd, struct strata_sock_ref *out, struct conn_totals **hit)
{
	*hit = NULL;
	struct file *file = file_of_fd(fd);
	if (!file)
		return 0;
	__u64 key = conn_key(fd);
	struct conn_totals *t = bpf_map_lookup_elem(&conns, &key);
	if (t && t->ref.file == (__u64)file) {
		struct inode *inode = BPF_CORE_READ(file, f_inode);
		if ((__u64)inode == t->ref.inode && BPF_CORE_READ(inode, i_ino) == t->ref.sock_id) {
			*out = t->ref;
			*hit = t;
			return 1;
		}
	}
	return socket_of_file(file, out);
}

/* ---- enter side ------------------------------------------------------------------------------ */

static __always_inline int stash(__u32 syscall, int fd, __u64 buf, __u64 len, __u64 addr)
{
	struct strata_config cfg;
	if (!load_config(&cfg) || !traced(&cfg))
		return 0;
	struct pending_call call = {
		.arg_buf = buf,
		.arg_len = len,
		.arg_addr = addr,
		.syscall = syscall,
		.fd = fd,
	};
	/* accept's fd is the listener; connect's is a fresh socket: both are sockets already. */
	struct conn_totals *hit;
	if (!lookup_socket(fd, &call.ref, &hit))
		return 0;
	call.enter_ns = bpf_ktime_get_ns();
	__u64 id = bpf_get_current_pid_tgid();
	struct pending_call *slot = bpf_map_lookup_elem(&pending, &id);
	if (slot) {
		*slot = call;
		return 0;
	}
	if (bpf_map_update_elem(&pending, &id, &call, BPF_ANY))
		count_lost(STRATA_LOST_PENDING);
	return 0;
}

#ifndef STRATA_RAW_SYSCALLS
#define ENTER_BUF(name, sys)                                                                        \
	SEC("tracepoint/syscalls/sys_enter_" #name)                                                 \
	int enter_##name(struct strata_sys_enter *ctx)                                              \
	{                                                                                           \
		stash(sys, (int)ctx->args[0], ctx->args[1], ctx->args[2], 0);                                     \
		return STRATA_PASS_ON;                                                              \
	}

ENTER_BUF(read, STRATA_SYS_READ)
ENTER_BUF(write, STRATA_SYS_WRITE)
ENTER_BUF(readv, STRATA_SYS_READV)
ENTER_BUF(writev, STRATA_SYS_WRITEV)
ENTER_BUF(sendmsg, STRATA_SYS_SENDMSG)
ENTER_BUF(sendmmsg, STRATA_SYS_SENDMMSG)

/* recvmsg(fd, msg, flags) and recvmmsg(fd, vec, vlen, flags, timeout): a MSG_PEEK looks at data
 * without taking it (the next receive returns it again), so it is not recorded. */
SEC("tracepoint/syscalls/sys_enter_recvmsg")
int enter_recvmsg(struct strata_sys_enter *ctx)
{
	if (!(ctx->args[2] & MSG_PEEK))
		stash(STRATA_SYS_RECVMSG, (int)ctx->args[0], ctx->args[1], ctx->args[2], 0);
	return STRATA_PASS_ON;
}

SEC("tracepoint/syscalls/sys_enter_recvmmsg")
int enter_recvmmsg(struct strata_sys_enter *ctx)
{
	if (!(ctx->args[3] & MSG_PEEK))
		stash(STRATA_SYS_RECVMMSG, (int)ctx->args[0], ctx->args[1], ctx->args[2], 0);
	return STRATA_PASS_ON;
}
ENTER_BUF(connect, STRATA_SYS_CONNECT)
ENTER_BUF(accept, STRATA_SYS_ACCEPT)
ENTER_BUF(accept4, STRATA_SYS_ACCEPT4)

/* recvfrom(fd, buf, len, flags, src_addr, addrlen) and sendto(fd, buf, len, flags, dest, addrlen) */
SEC("tracepoint/syscalls/sys_enter_recvfrom")
int enter_recvfrom(struct strata_sys_enter *ctx)
{
	if (!(ctx->args[3] & MSG_PEEK))
		stash(STRATA_SYS_RECVFROM, (int)ctx->args[0], ctx->args[1], ctx->args[2], ctx->args[4]);
	return STRATA_PASS_ON;
}

SEC("tracepoint/syscalls/sys_enter_sendto")
int enter_sendto(struct strata_sys_enter *ctx)
{
	stash(STRATA_SYS_SENDTO, (int)ctx->args[0], ctx->args[1], ctx->args[2], ctx->args[4]);
	return STRATA_PASS_ON;
}

/* sendfile64(out_fd, in_fd, offset, count): the socket is out_fd; no payload is captured. */
SEC("tracepoint/syscalls/sys_enter_sendfile64")
int enter_sendfile64(struct strata_sys_enter *ctx)
{
	stash(STRATA_SYS_SENDFILE, (int)ctx->args[0], 0, ctx->args[3], 0);
	return STRATA_PASS_ON;
}
#endif

/* ---- exit side ------------------------------------------------------------------------------- */

/* This thread's call in flight, if enter stashed one for `syscall` (accept's exit takes both
 * accepts) and exit has not taken it yet. */
static __always_inline struct pending_call *take_pending(__u32 syscall, __u32 or_syscall)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct pending_call *call = bpf_map_lookup_elem(&pending, &id);
	if (!call || (call->syscall != syscall && call->syscall != or_syscall))
		return NULL;
	return call;
}

/* Exit is done with the call: the slot stays for the thread's next one. */
static __always_inline void release(struct pending_call *call)
{
	call->syscall = 0;
}

/* Copy up to `want` bytes from a user buffer into the scratch payload at `*off`. */
static __always_inline void copy_chunk(struct data_scratch *s, __u32 cap, __u32 *off, __u64 src, __u64 want)
{
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
static __always_inline void copy_iovecs(struct data_scratch *s, __u32 cap, __u32 *off, __u64 iov,
					__u64 iovlen, __u64 budget)
{
#pragma unroll
	for (int i = 0; i < STRATA_MAX_IOV; i++) {
		if (i >= iovlen || budget == 0)
			break;
		struct strata_iovec v = {};
		if (bpf_probe_read_user(&v, sizeof(v), (void *)(iov + i * sizeof(struct strata_iovec))))
			break;
		__u64 n = v.len < budget ? v.len : budget;
		copy_chunk(s, cap, off, v.base, n);
		budget -= n;
	}
}

/* `t` is the connection's totals entry (NULL when the table had no room); `flags` what the caller
 * knows beyond truncation and the peer. */
static __always_inline int emit_data(void *ctx, struct data_scratch *s, struct pending_call *call,
				     struct conn_totals *t, __u8 flags, __u8 direction, __u64 byte_count,
				     __u32 captured, __u64 peer_addr)
{
	struct strata_data_event *ev = &s->ev;
	fill_header(&ev->hdr, STRATA_KIND_DATA, call->fd, call->ref.sock_id);
	if (t) {
		/* Keeps clang from computing &t->sock before the NULL check, which the verifier refuses
		 * (pointer arithmetic on a map value that may be NULL). */
		asm volatile("" : "+r"(t));
		ev->sock = t->sock;
	} else {
		read_socket((struct socket *)call->ref.sock, &ev->sock);
	}
	/* 0: the call was hooked at its exit only (received data on the raw_syscalls hooks). */
	ev->enter_ns = call->enter_ns ? call->enter_ns : ev->hdr.ts_ns;
	ev->byte_count = byte_count;
	ev->syscall = call->syscall;
	ev->direction = direction;
	ev->flags = flags;
	ev->_pad0 = 0;
	ev->_pad1 = 0;
	if (read_user_sockaddr(peer_addr, &ev->sock.remote))
		ev->flags |= STRATA_FLAG_PEER_FROM_MSG;
	if (captured > STRATA_MAX_CAPTURE)
		captured = STRATA_MAX_CAPTURE;
	if (captured < byte_count)
		ev->flags |= STRATA_FLAG_TRUNCATED;
	ev->captured_len = captured;

	if (t) {
		asm volatile("" : "+r"(t));
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

/* How an exit handler finds the payload: the shape is fixed per program, so each program inlines
 * only its own case (smaller programs, for verifiers with a 4 096-instruction limit). */
enum payload_shape {
	SHAPE_BUFFER,   /* read/write: (buf, len) */
	SHAPE_ADDRBUF,  /* recvfrom/sendto: (buf, len) and a sockaddr */
	SHAPE_IOVEC,    /* readv/writev: (iov, iovcnt) */
	SHAPE_MSGHDR,   /* recvmsg/sendmsg: a user_msghdr */
	SHAPE_NONE,     /* sendfile: no payload */
};

/* A TLS connection's first bytes: a handshake record (22) of version 3.x holding a ClientHello (1)
 * or ServerHello (2). No protocol strata parses can begin so: a MySQL, PostgreSQL or Kafka length
 * would be absurd, an HTTP or Redis opening is text, and DNS over TCP would need a query id and
 * flags of exactly this shape. No parser can read what follows, so the rest is only counted. */
static __always_inline int tls_handshake(const __u8 *p)
{
	return p[0] == 0x16 && p[1] == 0x03 && p[2] <= 0x04 && (p[5] == 0x01 || p[5] == 0x02);
}

/* Copies what a successful call moved (ret > 0) and emits it; `call` holds its arguments, `t` the
 * connection's totals when the caller has them already (else NULL: looked up here). */
static __always_inline void copy_and_emit(void *ctx, struct pending_call *call, struct conn_totals *t, long ret,
					  __u8 direction, enum payload_shape shape)
{
	struct strata_config cfg;
	__u32 zero = 0;
	struct data_scratch *s = bpf_map_lookup_elem(&scratch, &zero);
	if (!s || !load_config(&cfg))
		return;
	if (!t)
		t = totals_for(call->fd, &call->ref, STRATA_ROLE_UNKNOWN, 0);
	__u8 flags = 0;
	if (t && t->tls) {
		flags = STRATA_FLAG_TLS_SKIPPED;
		shape = SHAPE_NONE;
	}

	__u32 off = 0;
	__u64 peer = 0;
	switch (shape) {
	case SHAPE_BUFFER:
		copy_chunk(s, cfg.capture_bytes, &off, call->arg_buf, ret);
		break;
	case SHAPE_ADDRBUF:
		copy_chunk(s, cfg.capture_bytes, &off, call->arg_buf, ret);
		peer = call->arg_addr;
		break;
	case SHAPE_IOVEC:
		copy_iovecs(s, cfg.capture_bytes, &off, call->arg_buf, call->arg_len, ret);
		break;
	case SHAPE_MSGHDR: {
		struct strata_msghdr msg = {};
		if (bpf_probe_read_user(&msg, sizeof(msg), (void *)call->arg_buf))
			return;
		copy_iovecs(s, cfg.capture_bytes, &off, msg.iov, msg.iovlen, ret);
		peer = msg.name;
		break;
	}
	case SHAPE_NONE:
		break;
	}
	/* The connection's first bytes decide (nothing counted on it yet): this chunk still goes out
	 * whole, so the agent sees the handshake. */
	if (t && !t->tls && off >= 6 && t->bytes_sent == 0 && t->bytes_received == 0 && tls_handshake(s->payload))
		t->tls = 1;
	emit_data(ctx, s, call, t, flags, direction, ret, off, peer);
}

static __always_inline int exit_data(void *ctx, long ret, __u32 syscall, __u8 direction, enum payload_shape shape)
{
	struct pending_call *call = take_pending(syscall, syscall);
	if (!call)
		return 0;
	if (ret > 0)
		copy_and_emit(ctx, call, NULL, ret, direction, shape);
	release(call);
	return 0;
}

/* recvmmsg/sendmmsg return the number of messages (ret > 0 here); each mmsghdr carries its own
 * msg_len. Messages beyond STRATA_MAX_MMSG are counted as lost, never dropped silently. */
static __always_inline void emit_mmsg(void *ctx, struct pending_call *call, struct conn_totals *t, long ret,
				     __u8 direction)
{
	struct strata_config cfg;
	__u32 zero = 0;
	struct data_scratch *s = bpf_map_lookup_elem(&scratch, &zero);
	if (!load_config(&cfg) || !s)
		return;
	if (!t)
		t = totals_for(call->fd, &call->ref, STRATA_ROLE_UNKNOWN, 0);
#pragma unroll
	for (int i = 0; i < STRATA_MAX_MMSG; i++) {
		if (i >= ret)
			break;
		struct strata_mmsghdr m = {};
		if (bpf_probe_read_user(&m, sizeof(m), (void *)(call->arg_buf + i * sizeof(struct strata_mmsghdr)))) {
			count_lost_n(STRATA_LOST_MMSG, ret - i);
			return;
		}
		__u32 off = 0;
		copy_iovecs(s, cfg.capture_bytes, &off, m.hdr.iov, m.hdr.iovlen, m.len);
		emit_data(ctx, s, call, t, 0, direction, m.len, off, m.hdr.name);
	}
	if (ret > STRATA_MAX_MMSG)
		count_lost_n(STRATA_LOST_MMSG, ret - STRATA_MAX_MMSG);
}

static __always_inline int exit_mmsg(void *ctx, long ret, __u32 syscall, __u8 direction)
{
	struct pending_call *call = take_pending(syscall, syscall);
	if (!call)
		return 0;
	if (ret > 0)
		emit_mmsg(ctx, call, NULL, ret, direction);
	release(call);
	return 0;
}

#ifndef STRATA_RAW_SYSCALLS
#define EXIT_DATA(name, sys, dir, shape)                                                            \
	SEC("tracepoint/syscalls/sys_exit_" #name)                                                  \
	int exit_##name(struct strata_sys_exit *ctx)                                                \
	{                                                                                           \
		exit_data(ctx, ctx->ret, sys, dir, shape);                                                    \
		return STRATA_PASS_ON;                                                              \
	}

EXIT_DATA(read, STRATA_SYS_READ, STRATA_DIR_INGRESS, SHAPE_BUFFER)
EXIT_DATA(write, STRATA_SYS_WRITE, STRATA_DIR_EGRESS, SHAPE_BUFFER)
EXIT_DATA(readv, STRATA_SYS_READV, STRATA_DIR_INGRESS, SHAPE_IOVEC)
EXIT_DATA(writev, STRATA_SYS_WRITEV, STRATA_DIR_EGRESS, SHAPE_IOVEC)
EXIT_DATA(recvfrom, STRATA_SYS_RECVFROM, STRATA_DIR_INGRESS, SHAPE_ADDRBUF)
EXIT_DATA(sendto, STRATA_SYS_SENDTO, STRATA_DIR_EGRESS, SHAPE_ADDRBUF)
EXIT_DATA(recvmsg, STRATA_SYS_RECVMSG, STRATA_DIR_INGRESS, SHAPE_MSGHDR)
EXIT_DATA(sendmsg, STRATA_SYS_SENDMSG, STRATA_DIR_EGRESS, SHAPE_MSGHDR)
EXIT_DATA(sendfile64, STRATA_SYS_SENDFILE, STRATA_DIR_EGRESS, SHAPE_NONE)

SEC("tracepoint/syscalls/sys_exit_recvmmsg")
int exit_recvmmsg(struct strata_sys_exit *ctx)
{
	exit_mmsg(ctx, ctx->ret, STRATA_SYS_RECVMMSG, STRATA_DIR_INGRESS);
	return STRATA_PASS_ON;
}

SEC("tracepoint/syscalls/sys_exit_sendmmsg")
int exit_sendmmsg(struct strata_sys_exit *ctx)
{
	exit_mmsg(ctx, ctx->ret, STRATA_SYS_SENDMMSG, STRATA_DIR_EGRESS);
	return STRATA_PASS_ON;
}
#endif

/* ---- connections ----------------------------------------------------------------------------- */

static __always_inline int emit_open(void *ctx, struct pending_call *call, int fd, __u8 role, long ret)
{
	struct strata_sock_ref ref = {};
	if (!socket_of_fd(fd, &ref))
		return 0;
	/* connect just set the ends; accept's socket is new. */
	struct conn_totals *t = totals_for(fd, &ref, role, 1);
	struct strata_open_event ev = {};
	fill_header(&ev.hdr, STRATA_KIND_OPEN, fd, ref.sock_id);
	if (t)
		ev.sock = t->sock;
	else
		read_socket((struct socket *)ref.sock, &ev.sock);
	ev.sock.role = role;
	ev.syscall = call->syscall;
	ev.ret = ret;
	ev.enter_ns = call->enter_ns;
	if (emit(ctx, &ev, sizeof(ev)))
		count_lost(STRATA_LOST_OPEN);
	return 0;
}

/* accept returns the new connection's fd. */
static __always_inline int exit_accept_common(void *ctx, long ret)
{
	struct pending_call *call = take_pending(STRATA_SYS_ACCEPT, STRATA_SYS_ACCEPT4);
	if (!call)
		return 0;
	if (ret >= 0)
		emit_open(ctx, call, (int)ret, STRATA_ROLE_SERVER, 0);
	release(call);
	return 0;
}

#ifndef STRATA_RAW_SYSCALLS
SEC("tracepoint/syscalls/sys_exit_accept")
int exit_accept(struct strata_sys_exit *ctx)
{
	exit_accept_common(ctx, ctx->ret);
	return STRATA_PASS_ON;
}

SEC("tracepoint/syscalls/sys_exit_accept4")
int exit_accept4(struct strata_sys_exit *ctx)
{
	exit_accept_common(ctx, ctx->ret);
	return STRATA_PASS_ON;
}
#endif

/* A connect that succeeded, or is in progress (non-blocking), opens a client connection. */
static __always_inline int on_connect_exit(void *ctx, long ret)
{
	struct pending_call *call = take_pending(STRATA_SYS_CONNECT, STRATA_SYS_CONNECT);
	if (!call)
		return 0;
	if (ret == 0 || ret == -EINPROGRESS)
		emit_open(ctx, call, call->fd, STRATA_ROLE_CLIENT, ret);
	release(call);
	return 0;
}

#ifndef STRATA_RAW_SYSCALLS
SEC("tracepoint/syscalls/sys_exit_connect")
int exit_connect(struct strata_sys_exit *ctx)
{
	on_connect_exit(ctx, ctx->ret);
	return STRATA_PASS_ON;
}
#endif

/* close() of a socket strata saw: report its totals. The fd is still open at sys_enter_close. */
static __always_inline int on_close(void *ctx, int fd)
{
	struct strata_config cfg;
	if (!load_config(&cfg) || !traced(&cfg))
		return 0;
	__u64 key = conn_key(fd);
	struct conn_totals *t = bpf_map_lookup_elem(&conns, &key);
	if (!t)
		return 0;
	struct strata_sock_ref ref = {};
	struct conn_totals *hit;
	if (lookup_socket(fd, &ref, &hit) && ref.sock_id == t->ref.sock_id) {
		struct strata_close_event ev = {};
		fill_header(&ev.hdr, STRATA_KIND_CLOSE, fd, ref.sock_id);
		ev.sock = t->sock;
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

#ifndef STRATA_RAW_SYSCALLS
SEC("tracepoint/syscalls/sys_enter_close")
int enter_close(struct strata_sys_enter *ctx)
{
	on_close(ctx, (int)ctx->args[0]);
	return STRATA_PASS_ON;
}
#endif

#ifndef STRATA_PERFBUF
/* TCP state changes (ring-buffer object only, and optional: the loader skips this program where the
 * tracepoint (4.16+) or its record type in the BTF is missing). They often run in softirq context,
 * where the current task is unrelated: the record carries the socket's inode (when the sock has a
 * socket yet) and addresses, and its tgid/comm must not be trusted. */
static __always_inline int on_state(struct trace_event_raw_inet_sock_set_state *ctx)
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
	if (ev.hdr.tgid == strata_cfg.self_tgid)
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
		count_lost_global(STRATA_LOST_STATE, 1);
	return 0;
}

SEC("tracepoint/sock/inet_sock_set_state")
int sock_set_state(struct trace_event_raw_inet_sock_set_state *ctx)
{
	on_state(ctx);
	return STRATA_PASS_ON;
}
#endif

#ifdef STRATA_RAW_SYSCALLS
/* ---- one BTF-typed program per direction on raw_syscalls (the raw-syscalls object) ------------
 *
 * The per-syscall tracepoints above cost more around a program than in it: the kernel builds a
 * perf trace record of the arguments for each (perf_syscall_enter/exit, trace_call_bpf) before the
 * program runs. A BTF-typed raw tracepoint (tp_btf, 5.5+) on raw_syscalls:sys_enter/sys_exit calls
 * the program with the registers as they are: one cheap call per syscall of the node, which
 * returns at once unless the number is one of the socket syscalls below. It needs the kernel's own
 * BTF (the attach point is a kernel type) and 5.11 (bpf_get_current_task_btf: the walk from the
 * task to its fd table is plain loads), so the loader uses this object only there, and the
 * per-syscall tracepoints otherwise. x86_64 only, like every object here: the numbers
 * are arch/x86/entry/syscalls/syscall_64.tbl's, and a 32-bit (ia32) syscall, whose numbers differ,
 * is told apart by the thread's TS_COMPAT flag and left alone (the per-syscall tracepoints skip
 * those too). */
#define NR_read 0
#define NR_write 1
#define NR_close 3
#define NR_readv 19
#define NR_writev 20
#define NR_sendfile 40
#define NR_connect 42
#define NR_accept 43
#define NR_sendto 44
#define NR_recvfrom 45
#define NR_sendmsg 46
#define NR_recvmsg 47
#define NR_accept4 288
#define NR_recvmmsg 299
#define NR_sendmmsg 307

#define TS_COMPAT 0x0002 /* arch/x86/include/asm/thread_info.h: a 32-bit syscall is running */

static __always_inline int in_compat_syscall(void)
{
	struct task_struct *task = bpf_get_current_task_btf();
	return task->thread_info.status & TS_COMPAT;
}

/* raw_syscalls:sys_enter is TP_PROTO(struct pt_regs *regs, long id); the arguments are the
 * registers of the x86_64 syscall convention (di, si, dx, r10, r8, r9). */
SEC("tp_btf/sys_enter")
int raw_sys_enter(__u64 *ctx)
{
	struct pt_regs *regs = (struct pt_regs *)ctx[0];
	long id = (long)ctx[1];
	/* Received data is taken at exit alone (see raw_sys_exit): nothing to do at enter. */
	switch (id) {
	case NR_write: case NR_writev: case NR_sendto: case NR_sendmsg: case NR_sendmmsg: case NR_sendfile:
	case NR_connect: case NR_accept: case NR_accept4: case NR_close:
		break;
	default:
		return 0;
	}
	if (in_compat_syscall())
		return 0;
	int fd = (int)regs->di;
	__u64 a1 = regs->si, a2 = regs->dx;
	switch (id) {
	case NR_write: stash(STRATA_SYS_WRITE, fd, a1, a2, 0); break;
	case NR_writev: stash(STRATA_SYS_WRITEV, fd, a1, a2, 0); break;
	case NR_sendto: stash(STRATA_SYS_SENDTO, fd, a1, a2, regs->r8); break;
	case NR_sendmsg: stash(STRATA_SYS_SENDMSG, fd, a1, a2, 0); break;
	case NR_sendmmsg: stash(STRATA_SYS_SENDMMSG, fd, a1, a2, 0); break;
	/* sendfile(out_fd, in_fd, offset, count): no payload, count in r10 */
	case NR_sendfile: stash(STRATA_SYS_SENDFILE, fd, 0, regs->r10, 0); break;
	case NR_connect: stash(STRATA_SYS_CONNECT, fd, a1, a2, 0); break;
	case NR_accept: stash(STRATA_SYS_ACCEPT, fd, a1, a2, 0); break;
	case NR_accept4: stash(STRATA_SYS_ACCEPT4, fd, a1, a2, 0); break;
	case NR_close: on_close(ctx, fd); break;
	}
	return 0;
}

/* A receiving call hooked at its exit alone: the registers still hold its arguments (the syscall
 * read them from pt_regs and only ax took the result), the buffer holds what arrived, and a
 * receive is stamped with its exit time anyway. So it costs nothing at enter, and a call that got
 * nothing (EAGAIN from a non-blocking socket, an error, EOF) costs a comparison at exit: it never
 * walks the fd table or touches a map. As in the kmod tier, such a record's enter_ns is its own
 * time. Were the fd closed and given to another socket by another thread while this call blocked,
 * the data would be put on the new socket; the per-syscall hooks read the socket at enter. */
static __always_inline int received_at_exit(void *ctx, struct pt_regs *regs, long ret, __u32 syscall,
					    enum payload_shape shape, __u64 flags)
{
	/* A MSG_PEEK took nothing: the next receive returns the same bytes. */
	if (ret <= 0 || (flags & MSG_PEEK))
		return 0;
	struct strata_config cfg;
	if (!load_config(&cfg) || !traced(&cfg) || in_compat_syscall())
		return 0;
	struct pending_call call = {
		.arg_buf = regs->si,
		.arg_len = regs->dx,
		.arg_addr = shape == SHAPE_ADDRBUF ? regs->r8 : 0,
		.syscall = syscall,
		.fd = (int)regs->di,
	};
	struct conn_totals *t;
	if (!lookup_socket(call.fd, &call.ref, &t))
		return 0;
	if (syscall == STRATA_SYS_RECVMMSG)
		emit_mmsg(ctx, &call, t, ret, STRATA_DIR_INGRESS);
	else
		copy_and_emit(ctx, &call, t, ret, STRATA_DIR_INGRESS, shape);
	return 0;
}

/* raw_syscalls:sys_exit is TP_PROTO(struct pt_regs *regs, long ret); the syscall's number is in
 * orig_ax. A compat syscall needs no check for the calls stashed at enter: its enter stashed
 * nothing, so exit finds no call of its own in flight. */
SEC("tp_btf/sys_exit")
int raw_sys_exit(__u64 *ctx)
{
	struct pt_regs *regs = (struct pt_regs *)ctx[0];
	long ret = (long)ctx[1];
	long id = regs->orig_ax;
	switch (id) {
	case NR_read: received_at_exit(ctx, regs, ret, STRATA_SYS_READ, SHAPE_BUFFER, 0); break;
	case NR_write: exit_data(ctx, ret, STRATA_SYS_WRITE, STRATA_DIR_EGRESS, SHAPE_BUFFER); break;
	case NR_readv: received_at_exit(ctx, regs, ret, STRATA_SYS_READV, SHAPE_IOVEC, 0); break;
	case NR_writev: exit_data(ctx, ret, STRATA_SYS_WRITEV, STRATA_DIR_EGRESS, SHAPE_IOVEC); break;
	case NR_recvfrom: received_at_exit(ctx, regs, ret, STRATA_SYS_RECVFROM, SHAPE_ADDRBUF, regs->r10); break;
	case NR_sendto: exit_data(ctx, ret, STRATA_SYS_SENDTO, STRATA_DIR_EGRESS, SHAPE_ADDRBUF); break;
	case NR_recvmsg: received_at_exit(ctx, regs, ret, STRATA_SYS_RECVMSG, SHAPE_MSGHDR, regs->dx); break;
	case NR_sendmsg: exit_data(ctx, ret, STRATA_SYS_SENDMSG, STRATA_DIR_EGRESS, SHAPE_MSGHDR); break;
	case NR_sendfile: exit_data(ctx, ret, STRATA_SYS_SENDFILE, STRATA_DIR_EGRESS, SHAPE_NONE); break;
	case NR_recvmmsg: received_at_exit(ctx, regs, ret, STRATA_SYS_RECVMMSG, SHAPE_NONE, regs->r10); break;
	case NR_sendmmsg: exit_mmsg(ctx, ret, STRATA_SYS_SENDMMSG, STRATA_DIR_EGRESS); break;
	case NR_connect: on_connect_exit(ctx, ret); break;
	case NR_accept: case NR_accept4: exit_accept_common(ctx, ret); break;
	}
	return 0;
}
#endif
