/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The wire format between strata's kernel side and user space.
 *
 * Every record in the ring (or perf) buffer starts with `struct strata_header`; `kind` says which
 * struct follows. probes-core/src/wire.rs mirrors these structs and a test asserts that sizes and
 * field offsets agree, so a change here must be made there too. All fields are naturally aligned
 * and padding is explicit: the layout is the same for clang -target bpf and for x86_64 / aarch64.
 */
#ifndef STRATA_EVENT_H
#define STRATA_EVENT_H

/* Hard upper bound of payload bytes captured per syscall (the load-time cap may be lower). Three
 * times this plus a record must fit one per-CPU map value, which the kernel limits to 32 KiB. */
#define STRATA_MAX_CAPTURE 8192
/* Iovecs copied per readv/writev/sendmsg/recvmsg, and messages per sendmmsg/recvmmsg. */
#define STRATA_MAX_IOV 8
#define STRATA_MAX_MMSG 4
#define STRATA_COMM_LEN 16

enum strata_kind {
	STRATA_KIND_OPEN = 1,  /* accept/connect completed: a connection with a role */
	STRATA_KIND_DATA = 2,  /* bytes moved through a socket syscall */
	STRATA_KIND_CLOSE = 3, /* close() of a tracked socket, with totals */
	STRATA_KIND_STATE = 4, /* TCP state change (sock:inet_sock_set_state) */
};

/* Index into the `lost` map: records the kernel side could not emit, per kind. */
enum strata_lost_slot {
	STRATA_LOST_OPEN = 0,
	STRATA_LOST_DATA = 1,
	STRATA_LOST_CLOSE = 2,
	STRATA_LOST_STATE = 3,
	STRATA_LOST_PENDING = 4, /* the enter/exit pairing map was full */
	STRATA_LOST_MMSG = 5,    /* sendmmsg/recvmmsg messages beyond STRATA_MAX_MMSG, not recorded */
	STRATA_LOST_SLOTS = 6,
};

enum strata_syscall {
	STRATA_SYS_READ = 1,
	STRATA_SYS_WRITE = 2,
	STRATA_SYS_READV = 3,
	STRATA_SYS_WRITEV = 4,
	STRATA_SYS_RECVFROM = 5,
	STRATA_SYS_SENDTO = 6,
	STRATA_SYS_RECVMSG = 7,
	STRATA_SYS_SENDMSG = 8,
	STRATA_SYS_RECVMMSG = 9,
	STRATA_SYS_SENDMMSG = 10,
	STRATA_SYS_SENDFILE = 11,
	STRATA_SYS_CONNECT = 12,
	STRATA_SYS_ACCEPT = 13,
	STRATA_SYS_ACCEPT4 = 14,
	STRATA_SYS_CLOSE = 15,
};

enum strata_role {
	STRATA_ROLE_UNKNOWN = 0, /* connection seen first mid-stream (opened before strata started) */
	STRATA_ROLE_CLIENT = 1,
	STRATA_ROLE_SERVER = 2,
};

enum strata_direction {
	STRATA_DIR_EGRESS = 1,  /* the process sent these bytes */
	STRATA_DIR_INGRESS = 2, /* the process received these bytes */
};

/* Key of the per-process loss counts: the same slots, by thread group. */
struct strata_lost_key {
	__u32 tgid;
	__u32 slot; /* enum strata_lost_slot */
};

/* What the loader tells the programs. The ring-buffer object (5.8+) takes it as global data
 * (read-only, so the verifier prunes on it); the perf-buffer object, for kernels before 5.2 that
 * have no global data, reads it from the one-entry `config` array map. */
struct strata_config {
	__u32 capture_bytes; /* payload cap per syscall, <= STRATA_MAX_CAPTURE */
	__u32 self_tgid;     /* the agent itself: never traced */
	/* Ring buffer: wake the reader each time the bytes waiting cross a multiple of this (it also
	 * reads on a timer), instead of for every record. 0: the kernel's own rule (wake when the
	 * reader caught up). */
	__u32 wakeup_bytes;
	__u32 _pad;
};

#define STRATA_FLAG_TRUNCATED 1 /* fewer bytes captured than moved */
#define STRATA_FLAG_PEER_FROM_MSG 2 /* remote address taken from the syscall's sockaddr (UDP) */
#define STRATA_FLAG_TLS_SKIPPED 4 /* not copied: the connection began with a TLS handshake */

/* An endpoint: family is AF_INET (2) or AF_INET6 (10); port in host order; IPv4 in addr[0..4]. */
struct strata_endpoint {
	__u16 family;
	__u16 port;
	__u8 addr[16];
};

struct strata_header {
	__u32 kind;
	__u32 tgid;
	__u32 tid;
	__s32 fd;
	__u64 sock_id; /* socket inode number: unique while the socket lives, as in /proc/PID/fd */
	__u64 ts_ns;   /* CLOCK_MONOTONIC (bpf_ktime_get_ns) when the record was made */
	char comm[STRATA_COMM_LEN];
};

/* Where a socket is: its transport and both ends. */
struct strata_socket {
	__u8 protocol; /* IPPROTO_TCP (6) or IPPROTO_UDP (17) */
	__u8 role;     /* enum strata_role */
	__u16 _pad0;
	struct strata_endpoint local;
	struct strata_endpoint remote;
};

struct strata_open_event {
	struct strata_header hdr;
	struct strata_socket sock;
	__u32 syscall; /* enum strata_syscall: connect, accept or accept4 */
	__s32 ret;     /* 0, or -EINPROGRESS for a non-blocking connect */
	__u64 enter_ns;
};

struct strata_data_event {
	struct strata_header hdr;
	struct strata_socket sock;
	__u64 enter_ns;
	__u64 byte_count;   /* bytes the syscall really moved (its return value, or msg_len) */
	__u32 captured_len; /* bytes of payload that follow this struct */
	__u32 syscall;      /* enum strata_syscall */
	__u8 direction;     /* enum strata_direction */
	__u8 flags;         /* STRATA_FLAG_* */
	__u16 _pad0;
	__u32 _pad1;
	/* followed by captured_len bytes of payload */
};

struct strata_close_event {
	struct strata_header hdr;
	struct strata_socket sock;
	__u64 bytes_sent;     /* totals the kernel side counted since it first saw this socket */
	__u64 bytes_received;
	__u64 first_seen_ns;
};

struct strata_state_event {
	struct strata_header hdr;
	struct strata_socket sock;
	__s32 old_state; /* TCP_ESTABLISHED = 1 ... TCP_CLOSING = 11, as in include/net/tcp_states.h */
	__s32 new_state;
};

#endif
