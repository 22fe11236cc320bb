/* SPDX-License-Identifier: GPL-2.0 OR Apache-2.0 */
/*
 * From a file descriptor of the current task to its socket and both ends: the only kernel-internal
 * structures strata's probes read. Every access below is a CO-RE relocation, resolved at load time
 * against the BTF the plan chose (the kernel's, an archive's, or one generated from the node's
 * headers). The BTF check program (btf_check.bpf.c) runs this same code against a socket whose
 * ends are known, so a BTF is proven right for exactly these fields before the probes use it.
 *
 * Relocated: task_struct.files, files_struct.fdt, fdtable.{max_fds,fd}, file.{f_inode,
 * private_data}, inode.{i_mode,i_ino}, socket.{type,sk}, sock.__sk_common.{skc_family,skc_num,
 * skc_dport,skc_rcv_saddr,skc_daddr,skc_v6_rcv_saddr,skc_v6_daddr}.
 */
#ifndef STRATA_SOCKET_H
#define STRATA_SOCKET_H

#include "event.h"

#define AF_INET 2
#define AF_INET6 10
#define SOCK_STREAM 1
#define SOCK_DGRAM 2
#define IPPROTO_TCP 6
#define IPPROTO_UDP 17
#define S_IFMT 00170000
#define S_IFSOCK 0140000

/* What a socket fd leads to: the socket, its inode number (the socket's id), and the file and
 * inode on the way, which the probes' socket cache compares to tell the same socket again. */
struct strata_sock_ref {
	__u64 sock;    /* struct socket * */
	__u64 sock_id; /* inode number */
	__u64 file;    /* struct file * */
	__u64 inode;   /* struct inode * */
};

/* The file behind fd in the current task's table; NULL when fd is out of range or unused. */
static __always_inline struct file *file_of_fd(int fd)
{
	if (fd < 0)
		return NULL;
#ifdef STRATA_RAW_SYSCALLS
	/* A BTF pointer to the task (5.11+): the walk to the table is plain loads the verifier guards
	 * (a fault reads 0), not a helper call each. */
	struct fdtable *fdt = bpf_get_current_task_btf()->files->fdt;
	if (!fdt)
		return NULL;
	if ((unsigned int)fd >= fdt->max_fds)
		return NULL;
	struct file **fds = fdt->fd;
#else
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
	if (!fdt)
		return NULL;
	unsigned int max_fds = BPF_CORE_READ(fdt, max_fds);
	if ((unsigned int)fd >= max_fds)
		return NULL;
	struct file **fds = BPF_CORE_READ(fdt, fd);
#endif
	struct file *file = NULL;
	bpf_core_read(&file, sizeof(file), &fds[fd]);
	return file;
}

/* file -> struct socket, only for AF_INET/AF_INET6 TCP or UDP sockets; 0 otherwise. */
static __always_inline int socket_of_file(struct file *file, struct strata_sock_ref *out)
{
	if (!file)
		return 0;
	struct inode *inode = BPF_CORE_READ(file, f_inode);
	umode_t mode = BPF_CORE_READ(inode, i_mode);
	if ((mode & S_IFMT) != S_IFSOCK)
		return 0;
	struct socket *sock = BPF_CORE_READ(file, private_data);
	if (!sock)
		return 0;
	short type = BPF_CORE_READ(sock, type);
	if (type != SOCK_STREAM && type != SOCK_DGRAM)
		return 0;
	__u16 family = BPF_CORE_READ(sock, sk, __sk_common.skc_family);
	if (family != AF_INET && family != AF_INET6)
		return 0;
	out->sock = (__u64)sock;
	out->sock_id = BPF_CORE_READ(inode, i_ino);
	out->file = (__u64)file;
	out->inode = (__u64)inode;
	return 1;
}

/* fd -> struct socket, only for AF_INET/AF_INET6 TCP or UDP sockets of the current task. */
static __always_inline int socket_of_fd(int fd, struct strata_sock_ref *out)
{
	return socket_of_file(file_of_fd(fd), out);
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

/* ---- user-space ABI: fixed layouts, read as they are (no relocation) --------------------------- */

/* A syscall tracepoint's record: 8 bytes of common fields, `int __syscall_nr` at 8, then each
 * argument (or the return value) as an 8-byte field from offset 16. The layout is the tracepoint
 * ABI every kernel since syscall tracepoints exist shares (see any
 * events/syscalls/sys_enter_read/format), so it is not relocated: a BTF generated from kernel
 * headers has no trace_event_raw_sys_enter type to relocate against. */
struct strata_sys_enter {
	__u64 common;
	__s64 syscall_nr;
	__u64 args[6];
};

struct strata_sys_exit {
	__u64 common;
	__s64 syscall_nr;
	__s64 ret;
};

/* struct iovec, struct user_msghdr and struct mmsghdr as x86_64 and arm64 user space lays them out. */
struct strata_iovec {
	__u64 base;
	__u64 len;
};

struct strata_msghdr {
	__u64 name;
	__s32 namelen;
	__u32 _pad0;
	__u64 iov;
	__u64 iovlen;
	__u64 control;
	__u64 controllen;
	__u32 flags;
	__u32 _pad1;
};

struct strata_mmsghdr {
	struct strata_msghdr hdr;
	__u32 len;
	__u32 _pad;
};

struct strata_sockaddr_in {
	__u16 family;
	__u16 port; /* network order */
	__u32 addr;
	__u8 zero[8];
};

struct strata_sockaddr_in6 {
	__u16 family;
	__u16 port; /* network order */
	__u32 flowinfo;
	__u8 addr[16];
	__u32 scope_id;
};

#endif
