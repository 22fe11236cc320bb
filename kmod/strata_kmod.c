// SPDX-License-Identifier: GPL-2.0
/*
 * strata's kernel-module tier: exact socket capture where BPF programs cannot attach to syscalls
 * (kernels before 4.14, kernels built without BPF).
 *
 * It hooks the raw syscall tracepoints (sys_enter, sys_exit) with tracepoint_probe_register, keeps
 * only the socket syscalls the BPF probes keep, on AF_INET/AF_INET6 TCP and UDP sockets, copies
 * payloads inside the syscall (so they are exact, never stale), and writes records in the BPF
 * probes' layout (event.h) into per-CPU rings that the agent maps from /dev/strata and waits on
 * with poll(). The same decoder reads them, so every tier feeds one pipeline.
 *
 * Everything is done at sys_exit, where the return value is known and the syscall's arguments are
 * still in the saved user registers, except close(), whose fd must still be open (sys_enter).
 *
 * Written for the kernel APIs from 3.10 on; each LINUX_VERSION_CODE guard names the change it
 * follows. x86_64 only (the argument registers below are that ABI's).
 */
#include <linux/module.h>
#include <linux/kernel.h>
#include <linux/version.h>
#include <linux/tracepoint.h>
#include <linux/miscdevice.h>
#include <linux/fs.h>
#include <linux/mm.h>
#include <linux/vmalloc.h>
#include <linux/uaccess.h>
#include <linux/poll.h>
#include <linux/wait.h>
#include <linux/net.h>
#include <linux/socket.h>
#include <linux/file.h>
#include <linux/hashtable.h>
#include <linux/slab.h>
#include <linux/sched.h>
#include <linux/ktime.h>
#include <linux/spinlock.h>
#include <linux/mutex.h>
#include <linux/compat.h>
#include <linux/log2.h>
#include <net/sock.h>
#include <net/inet_sock.h>
#if IS_ENABLED(CONFIG_IPV6)
#include <net/ipv6.h>
#endif
#include <asm/syscall.h>
#include <asm/unistd.h>

#include "event.h"
#include "strata_kmod.h"

#ifndef CONFIG_X86_64
#error "strata's module reads syscall arguments from x86_64 registers"
#endif
#ifndef CONFIG_HAVE_SYSCALL_TRACEPOINTS
#error "the kernel has no syscall tracepoints (CONFIG_FTRACE_SYSCALLS)"
#endif

MODULE_LICENSE("GPL");
MODULE_AUTHOR("strata");
MODULE_DESCRIPTION("strata: socket syscall capture for kernels where BPF cannot attach to syscalls");
MODULE_VERSION("1");

static unsigned int ring_kib = 1024;
module_param(ring_kib, uint, 0444);
MODULE_PARM_DESC(ring_kib, "data bytes per CPU ring, in KiB (rounded up to a power of two, at least 64)");

static unsigned int max_conns = 65536;
module_param(max_conns, uint, 0444);
MODULE_PARM_DESC(max_conns, "sockets whose role and byte totals are tracked (least recently used go first)");

/* ---- compatibility ---------------------------------------------------------------------------- */

/* READ_ONCE/WRITE_ONCE arrived in 3.19 (230fa253df63); ACCESS_ONCE before. */
#ifndef READ_ONCE
#define READ_ONCE(x) ACCESS_ONCE(x)
#define WRITE_ONCE(x, v) (ACCESS_ONCE(x) = (v))
#endif

/* smp_load_acquire/smp_store_release arrived in 3.14 (47933ad41a86). */
#ifndef smp_load_acquire
#define smp_load_acquire(p)                                                                         \
	({                                                                                          \
		typeof(*(p)) ___v = ACCESS_ONCE(*(p));                                              \
		smp_mb();                                                                           \
		___v;                                                                               \
	})
#define smp_store_release(p, v)                                                                     \
	do {                                                                                        \
		smp_mb();                                                                           \
		ACCESS_ONCE(*(p)) = (v);                                                            \
	} while (0)
#endif

/* poll returns __poll_t from 4.16 (e6c8adca20ba). */
#if LINUX_VERSION_CODE < KERNEL_VERSION(4, 16, 0)
typedef unsigned int strata_poll_t;
#define STRATA_POLLIN (POLLIN | POLLRDNORM)
#else
typedef __poll_t strata_poll_t;
#define STRATA_POLLIN (EPOLLIN | EPOLLRDNORM)
#endif

/* ktime_get_ns arrived in 3.17 (897994e32b2b). Both are CLOCK_MONOTONIC, as bpf_ktime_get_ns. */
static inline u64 now_ns(void)
{
#if LINUX_VERSION_CODE >= KERNEL_VERSION(3, 17, 0)
	return ktime_get_ns();
#else
	return ktime_to_ns(ktime_get());
#endif
}

/* access_ok lost its type argument in 5.0 (96d4f267e40f). */
static inline bool user_range_ok(const void __user *p, unsigned long n)
{
#if LINUX_VERSION_CODE >= KERNEL_VERSION(5, 0, 0)
	return access_ok(p, n);
#else
	return access_ok(VERIFY_READ, p, n);
#endif
}

/* 32-bit tasks use other syscall numbers: in_compat_syscall arrived in 4.6 (5180e3e24fd3). */
static inline bool compat_task(void)
{
#ifdef CONFIG_COMPAT
#if LINUX_VERSION_CODE >= KERNEL_VERSION(4, 6, 0)
	return in_compat_syscall();
#else
	return is_compat_task();
#endif
#else
	return false;
#endif
}

/* Copies user memory without sleeping: the probes run with preemption off, so a fault cannot be
 * served; what is not resident is not captured (the record says how much was). Returns the
 * bytes copied. */
static u32 copy_user(void *dst, u64 src, u32 n)
{
	unsigned long left;
	if (!n || !src || !user_range_ok((const void __user *)(uintptr_t)src, n))
		return 0;
	pagefault_disable();
	left = __copy_from_user_inatomic(dst, (const void __user *)(uintptr_t)src, n);
	pagefault_enable();
	return n - (u32)left;
}

/* x86_64 syscall arguments: rdi, rsi, rdx, r10, r8, r9. Still there at sys_exit: the saved user
 * registers are not the syscall's to change. */
#define ARG0(r) ((r)->di)
#define ARG1(r) ((r)->si)
#define ARG2(r) ((r)->dx)
#define ARG3(r) ((r)->r10)
#define ARG4(r) ((r)->r8)

/* ---- rings ------------------------------------------------------------------------------------ */

static void *rings;      /* vmalloc_user: per possible CPU, a control page then ring_bytes of data */
static u32 ring_bytes;   /* power of two */
static unsigned int nrings;

static struct strata_kmod_start cfg;
static bool capturing;
static DECLARE_WAIT_QUEUE_HEAD(readers);
static atomic_t reader_waiting = ATOMIC_INIT(0);

static inline size_t ring_stride(void)
{
	return PAGE_SIZE + ring_bytes;
}

static inline struct strata_kmod_ctl *ring_ctl(unsigned int cpu)
{
	return rings + cpu * ring_stride();
}

static inline u8 *ring_data(unsigned int cpu)
{
	return (u8 *)ring_ctl(cpu) + PAGE_SIZE;
}

static inline void count_lost(u32 slot)
{
	if (slot < ARRAY_SIZE(ring_ctl(0)->lost))
		ring_ctl(smp_processor_id())->lost[slot]++;
}

/* A record being written: where, on which CPU's ring. */
struct reservation {
	unsigned int cpu;
	u64 head;
	u8 *rec;
};

/* Room for a record of at most `max` bytes on this CPU's ring (preemption is off: one writer per
 * ring). Records never straddle the end: a padding record fills it and the record starts over. */
static void *reserve(struct reservation *r, u32 max)
{
	unsigned int cpu = smp_processor_id();
	struct strata_kmod_ctl *ctl = ring_ctl(cpu);
	u64 head = ctl->head;
	u64 tail = smp_load_acquire(&ctl->tail);
	u32 need = ALIGN(sizeof(struct strata_kmod_rec) + max, 8);
	u32 off = head & (ring_bytes - 1);
	u32 pad = off + need > ring_bytes ? ring_bytes - off : 0;

	if (head - tail + pad + need > ring_bytes)
		return NULL;
	if (pad) {
		struct strata_kmod_rec *p = (struct strata_kmod_rec *)(ring_data(cpu) + off);
		p->len = pad;
		p->pad = 1;
		head += pad;
		off = 0;
	}
	r->cpu = cpu;
	r->head = head;
	r->rec = ring_data(cpu) + off;
	return r->rec + sizeof(struct strata_kmod_rec);
}

/* Publishes the record (`len` bytes written after its header) and wakes a waiting reader once
 * enough has piled up: a wake-up per record would cost the traced syscall more than the record. */
static void commit(struct reservation *r, u32 len)
{
	struct strata_kmod_ctl *ctl = ring_ctl(r->cpu);
	struct strata_kmod_rec *h = (struct strata_kmod_rec *)r->rec;
	u32 total = sizeof(*h) + len;
	u64 head = r->head + ALIGN(total, 8);

	h->len = total;
	h->pad = 0;
	smp_store_release(&ctl->head, head);
	if (atomic_read(&reader_waiting) && head - READ_ONCE(ctl->tail) >= READ_ONCE(cfg.wakeup_bytes)) {
		atomic_set(&reader_waiting, 0);
		wake_up_interruptible(&readers);
	}
}

/* ---- sockets ---------------------------------------------------------------------------------- */

/* The fd's socket when it is an AF_INET/AF_INET6 TCP or UDP one, with a reference (sockfd_put). */
static struct socket *inet_socket(int fd)
{
	int err = 0;
	struct socket *sock;

	if (fd < 0)
		return NULL;
	sock = sockfd_lookup(fd, &err);
	if (!sock)
		return NULL;
	if (!sock->sk || (sock->type != SOCK_STREAM && sock->type != SOCK_DGRAM) ||
	    (sock->sk->sk_family != AF_INET && sock->sk->sk_family != AF_INET6)) {
		sockfd_put(sock);
		return NULL;
	}
	return sock;
}

static inline u64 sock_id_of(struct socket *sock)
{
	return SOCK_INODE(sock)->i_ino;
}

/* Both ends as the kernel knows them now. */
static void read_ends(struct socket *sock, struct strata_socket *out)
{
	struct sock *sk = sock->sk;
	struct inet_sock *inet = inet_sk(sk);
	u16 family = sk->sk_family;

	memset(out, 0, sizeof(*out));
	out->protocol = sock->type == SOCK_STREAM ? IPPROTO_TCP : IPPROTO_UDP;
	out->local.family = family;
	out->remote.family = family;
	out->local.port = inet->inet_num;
	out->remote.port = ntohs(inet->inet_dport);
	if (family == AF_INET) {
		memcpy(out->local.addr, &inet->inet_rcv_saddr, 4);
		memcpy(out->remote.addr, &inet->inet_daddr, 4);
	}
#if IS_ENABLED(CONFIG_IPV6)
	else {
		/* The IPv6 ends moved into sock_common in 3.13 (efe4208f47f9). */
#if LINUX_VERSION_CODE >= KERNEL_VERSION(3, 13, 0)
		memcpy(out->local.addr, &sk->sk_v6_rcv_saddr, 16);
		memcpy(out->remote.addr, &sk->sk_v6_daddr, 16);
#else
		struct ipv6_pinfo *np = inet6_sk(sk);
		if (np) {
			memcpy(out->local.addr, &np->rcv_saddr, 16);
			memcpy(out->remote.addr, &np->daddr, 16);
		}
#endif
	}
#endif
}

/* struct sockaddr_in / sockaddr_in6 as user space lays them out. */
struct user_sin {
	u16 family;
	u16 port; /* network order */
	u32 addr;
	u8 zero[8];
};

struct user_sin6 {
	u16 family;
	u16 port; /* network order */
	u32 flowinfo;
	u8 addr[16];
	u32 scope_id;
};

/* An unconnected UDP socket's peer is the syscall's sockaddr. 1 when it gave one. */
static int peer_from_user(u64 uaddr, struct strata_endpoint *out)
{
	struct user_sin6 sin6;
	u16 family = 0;

	if (!uaddr || copy_user(&family, uaddr, sizeof(family)) != sizeof(family))
		return 0;
	if (family == AF_INET) {
		struct user_sin sin;
		if (copy_user(&sin, uaddr, sizeof(sin)) != sizeof(sin))
			return 0;
		out->family = AF_INET;
		out->port = ntohs(sin.port);
		memset(out->addr, 0, sizeof(out->addr));
		memcpy(out->addr, &sin.addr, 4);
		return 1;
	}
	if (family == AF_INET6) {
		if (copy_user(&sin6, uaddr, sizeof(sin6)) != sizeof(sin6))
			return 0;
		out->family = AF_INET6;
		out->port = ntohs(sin6.port);
		memcpy(out->addr, sin6.addr, 16);
		return 1;
	}
	return 0;
}

/* ---- connections: role and byte totals per (process, socket) ---------------------------------- */

struct conn {
	struct hlist_node node;
	struct list_head lru;
	u32 tgid;
	u64 sock_id;
	u8 role;
	u64 bytes_sent;
	u64 bytes_received;
	u64 first_seen_ns;
};

static DEFINE_HASHTABLE(conns, 12);
static LIST_HEAD(conns_lru);
static unsigned int nconns;
static DEFINE_SPINLOCK(conns_lock);

static inline u64 conn_hash(u32 tgid, u64 sock_id)
{
	return sock_id ^ ((u64)tgid << 32);
}

static struct conn *conn_find(u32 tgid, u64 sock_id)
{
	struct conn *c;
	hash_for_each_possible(conns, c, node, conn_hash(tgid, sock_id)) {
		if (c->tgid == tgid && c->sock_id == sock_id)
			return c;
	}
	return NULL;
}

/* The socket's entry, made when new (the least recently used one goes when the table is full).
 * NULL only when memory is short. Called with conns_lock held. */
static struct conn *conn_get(u32 tgid, u64 sock_id)
{
	struct conn *c = conn_find(tgid, sock_id);
	if (c) {
		list_move_tail(&c->lru, &conns_lru);
		return c;
	}
	if (nconns >= max_conns && !list_empty(&conns_lru)) {
		c = list_first_entry(&conns_lru, struct conn, lru);
		hash_del(&c->node);
		list_del(&c->lru);
		nconns--;
		/* Its totals go with it: its close record will never be written. */
		count_lost(STRATA_LOST_CLOSE);
	} else {
		c = kmalloc(sizeof(*c), GFP_ATOMIC);
		if (!c)
			return NULL;
	}
	memset(c, 0, sizeof(*c));
	c->tgid = tgid;
	c->sock_id = sock_id;
	c->first_seen_ns = now_ns();
	hash_add(conns, &c->node, conn_hash(tgid, sock_id));
	list_add_tail(&c->lru, &conns_lru);
	nconns++;
	return c;
}

static void conns_clear(void)
{
	struct conn *c, *n;
	spin_lock(&conns_lock);
	list_for_each_entry_safe(c, n, &conns_lru, lru) {
		hash_del(&c->node);
		list_del(&c->lru);
		kfree(c);
	}
	nconns = 0;
	spin_unlock(&conns_lock);
}

/* Counts bytes on the socket's entry and returns its role (unknown when it was opened before
 * strata started, or cannot be tracked). */
static u8 conn_count(u32 tgid, u64 sock_id, u8 direction, u64 bytes)
{
	struct conn *c;
	u8 role = STRATA_ROLE_UNKNOWN;
	spin_lock(&conns_lock);
	c = conn_get(tgid, sock_id);
	if (c) {
		if (direction == STRATA_DIR_EGRESS)
			c->bytes_sent += bytes;
		else
			c->bytes_received += bytes;
		role = c->role;
	} else {
		count_lost(STRATA_LOST_PENDING);
	}
	spin_unlock(&conns_lock);
	return role;
}

/* ---- records ---------------------------------------------------------------------------------- */

static inline bool traced(void)
{
	return READ_ONCE(capturing) && current->tgid != READ_ONCE(cfg.self_tgid);
}

static void fill_header(struct strata_header *h, u32 kind, int fd, u64 sock_id)
{
	h->kind = kind;
	h->tgid = current->tgid;
	h->tid = current->pid;
	h->fd = fd;
	h->sock_id = sock_id;
	h->ts_ns = now_ns();
	memcpy(h->comm, current->comm, sizeof(h->comm));
}

/* How a syscall's payload is laid out in user memory. */
enum shape {
	SHAPE_BUFFER,  /* read/write: (buf, len) */
	SHAPE_ADDRBUF, /* recvfrom/sendto: (buf, len) and a sockaddr */
	SHAPE_IOVEC,   /* readv/writev: (iov, iovcnt) */
	SHAPE_MSGHDR,  /* recvmsg/sendmsg: a user_msghdr */
	SHAPE_NONE,    /* sendfile: no payload */
};

/* struct iovec, user_msghdr and mmsghdr as x86_64 user space lays them out. */
struct user_iovec {
	u64 base;
	u64 len;
};

struct user_msghdr64 {
	u64 name;
	s32 namelen;
	u32 _pad0;
	u64 iov;
	u64 iovlen;
	u64 control;
	u64 controllen;
	u32 flags;
	u32 _pad1;
};

struct user_mmsghdr64 {
	struct user_msghdr64 hdr;
	u32 len;
	u32 _pad;
};

/* Iovecs read per call at most (the kernel's own UIO_MAXIOV), and messages per mmsg call. */
#define MAX_IOVECS 1024
#define MAX_MMSG 64

/* Copies from an iovec array into `dst`, at most `budget` bytes; returns the bytes copied. */
static u32 copy_iovecs(u8 *dst, u32 budget, u64 iov, u64 iovlen)
{
	u32 off = 0;
	u64 i;
	for (i = 0; i < iovlen && i < MAX_IOVECS && off < budget; i++) {
		struct user_iovec v;
		u32 want, got;
		if (copy_user(&v, iov + i * sizeof(v), sizeof(v)) != sizeof(v))
			break;
		want = (u32)min_t(u64, v.len, budget - off);
		got = copy_user(dst + off, v.base, want);
		off += got;
		if (got < want)
			break;
	}
	return off;
}

/* One data record: `bytes` moved by the syscall on `sock`; the payload comes from `shape`'s
 * user memory (for SHAPE_MSGHDR, `msg` was read already). */
static void emit_data(struct socket *sock, int fd, u32 syscall, u8 direction, u64 bytes, enum shape shape,
		      u64 buf, u64 len_or_count, u64 peer, const struct user_msghdr64 *msg)
{
	struct reservation r;
	struct strata_data_event *ev;
	u32 cap = min_t(u32, READ_ONCE(cfg.capture_bytes), STRATA_MAX_CAPTURE);
	u32 want = shape == SHAPE_NONE ? 0 : (u32)min_t(u64, bytes, cap);
	u32 got = 0;
	u8 *payload;
	u64 sock_id = sock_id_of(sock);
	u8 role = conn_count(current->tgid, sock_id, direction, bytes);

	ev = reserve(&r, sizeof(*ev) + want);
	if (!ev) {
		count_lost(STRATA_LOST_DATA);
		return;
	}
	payload = (u8 *)(ev + 1);
	switch (shape) {
	case SHAPE_BUFFER:
	case SHAPE_ADDRBUF:
		got = copy_user(payload, buf, want);
		break;
	case SHAPE_IOVEC:
		got = copy_iovecs(payload, want, buf, len_or_count);
		break;
	case SHAPE_MSGHDR:
		got = copy_iovecs(payload, want, msg->iov, msg->iovlen);
		break;
	case SHAPE_NONE:
		break;
	}
	fill_header(&ev->hdr, STRATA_KIND_DATA, fd, sock_id);
	read_ends(sock, &ev->sock);
	ev->sock.role = role;
	/* No enter hook for data syscalls: the record's time stands for the call's start too. */
	ev->enter_ns = ev->hdr.ts_ns;
	ev->byte_count = bytes;
	ev->captured_len = got;
	ev->syscall = syscall;
	ev->direction = direction;
	ev->flags = got < bytes ? STRATA_FLAG_TRUNCATED : 0;
	ev->_pad0 = 0;
	ev->_pad1 = 0;
	if (peer_from_user(peer, &ev->sock.remote))
		ev->flags |= STRATA_FLAG_PEER_FROM_MSG;
	commit(&r, sizeof(*ev) + got);
}

static void on_data(struct pt_regs *regs, long ret, u32 syscall, u8 direction, enum shape shape)
{
	int fd = (int)ARG0(regs);
	struct socket *sock;
	struct user_msghdr64 msg = { 0 };
	u64 peer = 0;

	if (ret <= 0)
		return;
	sock = inet_socket(fd);
	if (!sock)
		return;
	if (shape == SHAPE_MSGHDR) {
		if (copy_user(&msg, ARG1(regs), sizeof(msg)) != sizeof(msg))
			memset(&msg, 0, sizeof(msg)); /* counted, not captured */
		peer = msg.name;
	} else if (shape == SHAPE_ADDRBUF) {
		peer = ARG4(regs);
	}
	preempt_disable();
	emit_data(sock, fd, syscall, direction, ret, shape, ARG1(regs), ARG2(regs), peer, &msg);
	preempt_enable();
	sockfd_put(sock);
}

/* recvmmsg/sendmmsg return how many messages moved; each mmsghdr says its own length. */
static void on_mmsg(struct pt_regs *regs, long ret, u32 syscall, u8 direction)
{
	int fd = (int)ARG0(regs);
	struct socket *sock;
	long i;

	if (ret <= 0)
		return;
	sock = inet_socket(fd);
	if (!sock)
		return;
	preempt_disable();
	for (i = 0; i < ret && i < MAX_MMSG; i++) {
		struct user_mmsghdr64 m;
		if (copy_user(&m, ARG1(regs) + i * sizeof(m), sizeof(m)) != sizeof(m))
			break;
		emit_data(sock, fd, syscall, direction, m.len, SHAPE_MSGHDR, 0, 0, m.hdr.name, &m.hdr);
	}
	/* Messages not written: those past MAX_MMSG, or from the one whose header could not be read. */
	if (ret > i)
		ring_ctl(smp_processor_id())->lost[STRATA_LOST_MMSG] += ret - i;
	preempt_enable();
	sockfd_put(sock);
}

/* connect or accept completed: the connection and its role. */
static void on_open(int fd, u32 syscall, u8 role, long ret)
{
	struct socket *sock = inet_socket(fd);
	struct strata_open_event *ev;
	struct reservation r;
	struct conn *c;
	u64 sock_id;

	if (!sock)
		return;
	sock_id = sock_id_of(sock);
	spin_lock(&conns_lock);
	c = conn_get(current->tgid, sock_id);
	if (c)
		c->role = role;
	spin_unlock(&conns_lock);
	preempt_disable();
	if (!c)
		count_lost(STRATA_LOST_PENDING);
	ev = reserve(&r, sizeof(*ev));
	if (ev) {
		fill_header(&ev->hdr, STRATA_KIND_OPEN, fd, sock_id);
		read_ends(sock, &ev->sock);
		ev->sock.role = role;
		ev->syscall = syscall;
		ev->ret = (s32)ret;
		ev->enter_ns = ev->hdr.ts_ns;
		commit(&r, sizeof(*ev));
	} else {
		count_lost(STRATA_LOST_OPEN);
	}
	preempt_enable();
	sockfd_put(sock);
}

/* close() of a socket strata counted: its totals. At sys_enter, while the fd is still open. */
static void on_close(int fd)
{
	struct socket *sock = inet_socket(fd);
	struct strata_close_event *ev;
	struct reservation r;
	struct conn *c;
	struct conn taken = { 0 };
	u64 sock_id;

	if (!sock)
		return;
	sock_id = sock_id_of(sock);
	spin_lock(&conns_lock);
	c = conn_find(current->tgid, sock_id);
	if (c) {
		taken = *c;
		hash_del(&c->node);
		list_del(&c->lru);
		nconns--;
	}
	spin_unlock(&conns_lock);
	if (c) {
		kfree(c);
		preempt_disable();
		ev = reserve(&r, sizeof(*ev));
		if (ev) {
			fill_header(&ev->hdr, STRATA_KIND_CLOSE, fd, sock_id);
			read_ends(sock, &ev->sock);
			ev->sock.role = taken.role;
			ev->bytes_sent = taken.bytes_sent;
			ev->bytes_received = taken.bytes_received;
			ev->first_seen_ns = taken.first_seen_ns;
			commit(&r, sizeof(*ev));
		} else {
			count_lost(STRATA_LOST_CLOSE);
		}
		preempt_enable();
	}
	sockfd_put(sock);
}

/* ---- the probes ------------------------------------------------------------------------------- */

static void probe_sys_enter(void *data, struct pt_regs *regs, long id)
{
	if (id != __NR_close || !traced() || compat_task())
		return;
	on_close((int)ARG0(regs));
}

static void probe_sys_exit(void *data, struct pt_regs *regs, long ret)
{
	long id;
	if (!traced() || compat_task())
		return;
	id = syscall_get_nr(current, regs);
	switch (id) {
	case __NR_read:
		on_data(regs, ret, STRATA_SYS_READ, STRATA_DIR_INGRESS, SHAPE_BUFFER);
		break;
	case __NR_write:
		on_data(regs, ret, STRATA_SYS_WRITE, STRATA_DIR_EGRESS, SHAPE_BUFFER);
		break;
	case __NR_readv:
		on_data(regs, ret, STRATA_SYS_READV, STRATA_DIR_INGRESS, SHAPE_IOVEC);
		break;
	case __NR_writev:
		on_data(regs, ret, STRATA_SYS_WRITEV, STRATA_DIR_EGRESS, SHAPE_IOVEC);
		break;
	/* A receive with MSG_PEEK takes nothing: the next receive returns the same bytes. */
	case __NR_recvfrom:
		if (!(ARG3(regs) & MSG_PEEK))
			on_data(regs, ret, STRATA_SYS_RECVFROM, STRATA_DIR_INGRESS, SHAPE_ADDRBUF);
		break;
	case __NR_sendto:
		on_data(regs, ret, STRATA_SYS_SENDTO, STRATA_DIR_EGRESS, SHAPE_ADDRBUF);
		break;
	case __NR_recvmsg:
		if (!(ARG2(regs) & MSG_PEEK))
			on_data(regs, ret, STRATA_SYS_RECVMSG, STRATA_DIR_INGRESS, SHAPE_MSGHDR);
		break;
	case __NR_sendmsg:
		on_data(regs, ret, STRATA_SYS_SENDMSG, STRATA_DIR_EGRESS, SHAPE_MSGHDR);
		break;
	case __NR_recvmmsg:
		if (!(ARG3(regs) & MSG_PEEK))
			on_mmsg(regs, ret, STRATA_SYS_RECVMMSG, STRATA_DIR_INGRESS);
		break;
	case __NR_sendmmsg:
		on_mmsg(regs, ret, STRATA_SYS_SENDMMSG, STRATA_DIR_EGRESS);
		break;
	case __NR_sendfile:
		on_data(regs, ret, STRATA_SYS_SENDFILE, STRATA_DIR_EGRESS, SHAPE_NONE);
		break;
	case __NR_connect:
		if (ret == 0 || ret == -EINPROGRESS)
			on_open((int)ARG0(regs), STRATA_SYS_CONNECT, STRATA_ROLE_CLIENT, ret);
		break;
	case __NR_accept:
	case __NR_accept4:
		if (ret >= 0)
			on_open((int)ret, id == __NR_accept ? STRATA_SYS_ACCEPT : STRATA_SYS_ACCEPT4,
				STRATA_ROLE_SERVER, 0);
		break;
	}
}

/*
 * Attaching. From 3.15 (de7b2973903c) probes register on a struct tracepoint, which the raw
 * syscall ones are not exported as: for_each_kernel_tracepoint finds them by name. Before, they
 * registered by name.
 */
#if LINUX_VERSION_CODE >= KERNEL_VERSION(3, 15, 0)
static struct tracepoint *tp_sys_enter, *tp_sys_exit;

static void find_tracepoint(struct tracepoint *tp, void *priv)
{
	if (!strcmp(tp->name, "sys_enter"))
		tp_sys_enter = tp;
	else if (!strcmp(tp->name, "sys_exit"))
		tp_sys_exit = tp;
}

static int attach(void)
{
	int err;
	if (!tp_sys_enter || !tp_sys_exit)
		for_each_kernel_tracepoint(find_tracepoint, NULL);
	if (!tp_sys_enter || !tp_sys_exit) {
		pr_err("strata: the raw syscall tracepoints sys_enter/sys_exit were not found\n");
		return -ENOENT;
	}
	err = tracepoint_probe_register(tp_sys_enter, probe_sys_enter, NULL);
	if (err)
		return err;
	err = tracepoint_probe_register(tp_sys_exit, probe_sys_exit, NULL);
	if (err)
		tracepoint_probe_unregister(tp_sys_enter, probe_sys_enter, NULL);
	return err;
}

static void detach(void)
{
	tracepoint_probe_unregister(tp_sys_exit, probe_sys_exit, NULL);
	tracepoint_probe_unregister(tp_sys_enter, probe_sys_enter, NULL);
}
#else
static int attach(void)
{
	int err = tracepoint_probe_register("sys_enter", probe_sys_enter, NULL);
	if (err)
		return err;
	err = tracepoint_probe_register("sys_exit", probe_sys_exit, NULL);
	if (err)
		tracepoint_probe_unregister("sys_enter", probe_sys_enter, NULL);
	return err;
}

static void detach(void)
{
	tracepoint_probe_unregister("sys_exit", probe_sys_exit, NULL);
	tracepoint_probe_unregister("sys_enter", probe_sys_enter, NULL);
}
#endif

/* ---- the device ------------------------------------------------------------------------------- */

static DEFINE_MUTEX(dev_lock);
static bool device_in_use;

/* Stops capturing: once tracepoint_synchronize_unregister returns, no probe runs any more, so the
 * rings and the connection table may go. Called with dev_lock held. */
static void stop_capture(void)
{
	if (!capturing)
		return;
	WRITE_ONCE(capturing, false);
	detach();
	tracepoint_synchronize_unregister();
	conns_clear();
}

static int strata_open(struct inode *inode, struct file *file)
{
	unsigned int cpu;
	mutex_lock(&dev_lock);
	if (device_in_use) {
		mutex_unlock(&dev_lock);
		return -EBUSY; /* one agent at a time */
	}
	nrings = nr_cpu_ids;
	rings = vmalloc_user(nrings * ring_stride());
	if (!rings) {
		mutex_unlock(&dev_lock);
		return -ENOMEM;
	}
	for (cpu = 0; cpu < nrings; cpu++)
		memset(ring_ctl(cpu), 0, sizeof(struct strata_kmod_ctl));
	device_in_use = true;
	mutex_unlock(&dev_lock);
	return 0;
}

/* The last reference to the file is gone, so is every mapping of the rings (a mapping holds the
 * file). */
static int strata_release(struct inode *inode, struct file *file)
{
	mutex_lock(&dev_lock);
	stop_capture();
	vfree(rings);
	rings = NULL;
	device_in_use = false;
	mutex_unlock(&dev_lock);
	return 0;
}

static long strata_ioctl(struct file *file, unsigned int cmd, unsigned long arg)
{
	long err = 0;
	mutex_lock(&dev_lock);
	switch (cmd) {
	case STRATA_KMOD_IOC_INFO: {
		struct strata_kmod_info info = {
			.abi = STRATA_KMOD_ABI,
			.ncpus = nrings,
			.ring_bytes = ring_bytes,
			.page_size = PAGE_SIZE,
		};
		if (copy_to_user((void __user *)arg, &info, sizeof(info)))
			err = -EFAULT;
		break;
	}
	case STRATA_KMOD_IOC_START: {
		struct strata_kmod_start start;
		if (copy_from_user(&start, (void __user *)arg, sizeof(start))) {
			err = -EFAULT;
			break;
		}
		if (capturing) {
			err = -EALREADY;
			break;
		}
		if (start.capture_bytes > STRATA_MAX_CAPTURE) {
			err = -EINVAL;
			break;
		}
		cfg = start;
		WRITE_ONCE(capturing, true);
		err = attach();
		if (err)
			WRITE_ONCE(capturing, false);
		break;
	}
	case STRATA_KMOD_IOC_STOP:
		stop_capture();
		break;
	default:
		err = -ENOTTY;
	}
	mutex_unlock(&dev_lock);
	return err;
}

static int strata_mmap(struct file *file, struct vm_area_struct *vma)
{
	unsigned long size = vma->vm_end - vma->vm_start;
	if (vma->vm_pgoff != 0 || size != PAGE_ALIGN(nrings * ring_stride()))
		return -EINVAL;
	return remap_vmalloc_range(vma, rings, 0);
}

/* Readable once some ring holds wakeup_bytes (the agent also reads on a short timer). */
static strata_poll_t strata_poll(struct file *file, poll_table *wait)
{
	unsigned int cpu;
	u32 want = READ_ONCE(cfg.wakeup_bytes);
	poll_wait(file, &readers, wait);
	atomic_set(&reader_waiting, 1);
	for (cpu = 0; cpu < nrings; cpu++) {
		struct strata_kmod_ctl *ctl = ring_ctl(cpu);
		if (smp_load_acquire(&ctl->head) - READ_ONCE(ctl->tail) >= max_t(u32, want, 1))
			return STRATA_POLLIN;
	}
	return 0;
}

static const struct file_operations strata_fops = {
	.owner = THIS_MODULE,
	.open = strata_open,
	.release = strata_release,
	.unlocked_ioctl = strata_ioctl,
	.mmap = strata_mmap,
	.poll = strata_poll,
	.llseek = noop_llseek,
};

static struct miscdevice strata_dev = {
	.minor = MISC_DYNAMIC_MINOR,
	.name = STRATA_KMOD_NAME,
	.fops = &strata_fops,
	.mode = 0600,
};

static int __init strata_init(void)
{
	u32 kib = max_t(u32, ring_kib, 64);
	ring_bytes = (u32)roundup_pow_of_two(kib) * 1024;
	return misc_register(&strata_dev);
}

static void __exit strata_exit(void)
{
	/* The device cannot be open here (it holds a module reference): nothing is attached. */
	misc_deregister(&strata_dev);
}

module_init(strata_init);
module_exit(strata_exit);
