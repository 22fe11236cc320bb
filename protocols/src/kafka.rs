//! Kafka wire protocol: size-prefixed requests and responses, paired by correlation id.
//!
//! Every message is `int32 size` + header + body. A request header carries api_key, api_version,
//! correlation_id and client_id (plus tagged fields in flexible versions); a response header only the
//! correlation id (plus tagged fields when the *request's* version is flexible, except for
//! ApiVersions, whose response header is always v0). So the parser remembers, per correlation id,
//! the api_key and api_version of each request until its response arrives.
//!
//! Only the first [`PREFIX_CAP`] bytes of a message are buffered (header and leading fields: topic
//! names, error codes); the rest (record batches) is counted and skipped.

use crate::framing::{Framer, Head, Header, Piece};
use crate::message::*;
use std::collections::{HashMap, VecDeque};

/// Largest message accepted as plausible (the broker default `socket.request.max.bytes`).
const MAX_SIZE: i32 = 100 << 20;
/// The size's first byte is at most this (for any size up to `MAX_SIZE`): garbage fails fast.
const MAX_SIZE_TOP_BYTE: u8 = (MAX_SIZE >> 24) as u8;
/// Bytes of a message (size field included) kept to read its header and leading fields.
const PREFIX_CAP: usize = 4096;
/// Requests remembered while waiting for their response; beyond, the oldest is dropped.
const MAX_INFLIGHT: usize = 4096;
/// Longest client id taken as plausible.
const MAX_CLIENT_ID: i16 = 1024;
/// Highest api_version taken as plausible when detecting or resynchronizing.
const MAX_PROBE_VERSION: i16 = 20;
/// Bytes of the next chunk joined to a carried tail when resynchronizing: more than any probe needs.
const JOIN: usize = 16;

const PRODUCE: i16 = 0;
const FETCH: i16 = 1;
const LIST_OFFSETS: i16 = 2;
const METADATA: i16 = 3;
const OFFSET_COMMIT: i16 = 8;
const OFFSET_FETCH: i16 = 9;
const FIND_COORDINATOR: i16 = 10;
const JOIN_GROUP: i16 = 11;
const HEARTBEAT: i16 = 12;
const LEAVE_GROUP: i16 = 13;
const SYNC_GROUP: i16 = 14;
const DESCRIBE_GROUPS: i16 = 15;
const LIST_GROUPS: i16 = 16;
const SASL_HANDSHAKE: i16 = 17;
const API_VERSIONS: i16 = 18;
const CREATE_TOPICS: i16 = 19;
const DELETE_TOPICS: i16 = 20;
const INIT_PRODUCER_ID: i16 = 22;
const DESCRIBE_CONFIGS: i16 = 32;
const SASL_AUTHENTICATE: i16 = 36;

/// API names by api_key (as in the Kafka protocol guide).
const API_NAMES: [&str; 93] = [
    "Produce",
    "Fetch",
    "ListOffsets",
    "Metadata",
    "LeaderAndIsr",
    "StopReplica",
    "UpdateMetadata",
    "ControlledShutdown",
    "OffsetCommit",
    "OffsetFetch",
    "FindCoordinator",
    "JoinGroup",
    "Heartbeat",
    "LeaveGroup",
    "SyncGroup",
    "DescribeGroups",
    "ListGroups",
    "SaslHandshake",
    "ApiVersions",
    "CreateTopics",
    "DeleteTopics",
    "DeleteRecords",
    "InitProducerId",
    "OffsetForLeaderEpoch",
    "AddPartitionsToTxn",
    "AddOffsetsToTxn",
    "EndTxn",
    "WriteTxnMarkers",
    "TxnOffsetCommit",
    "DescribeAcls",
    "CreateAcls",
    "DeleteAcls",
    "DescribeConfigs",
    "AlterConfigs",
    "AlterReplicaLogDirs",
    "DescribeLogDirs",
    "SaslAuthenticate",
    "CreatePartitions",
    "CreateDelegationToken",
    "RenewDelegationToken",
    "ExpireDelegationToken",
    "DescribeDelegationToken",
    "DeleteGroups",
    "ElectLeaders",
    "IncrementalAlterConfigs",
    "AlterPartitionReassignments",
    "ListPartitionReassignments",
    "OffsetDelete",
    "DescribeClientQuotas",
    "AlterClientQuotas",
    "DescribeUserScramCredentials",
    "AlterUserScramCredentials",
    "Vote",
    "BeginQuorumEpoch",
    "EndQuorumEpoch",
    "DescribeQuorum",
    "AlterPartition",
    "UpdateFeatures",
    "Envelope",
    "FetchSnapshot",
    "DescribeCluster",
    "DescribeProducers",
    "BrokerRegistration",
    "BrokerHeartbeat",
    "UnregisterBroker",
    "DescribeTransactions",
    "ListTransactions",
    "AllocateProducerIds",
    "ConsumerGroupHeartbeat",
    "ConsumerGroupDescribe",
    "ControllerRegistration",
    "GetTelemetrySubscriptions",
    "PushTelemetry",
    "AssignReplicasToDirs",
    "ListConfigResources",
    "DescribeTopicPartitions",
    "ShareGroupHeartbeat",
    "ShareGroupDescribe",
    "ShareFetch",
    "ShareAcknowledge",
    "AddRaftVoter",
    "RemoveRaftVoter",
    "UpdateRaftVoter",
    "InitializeShareGroupState",
    "ReadShareGroupState",
    "WriteShareGroupState",
    "DeleteShareGroupState",
    "ReadShareGroupStateSummary",
    "StreamsGroupHeartbeat",
    "StreamsGroupDescribe",
    "DescribeShareGroupOffsets",
    "AlterShareGroupOffsets",
    "DeleteShareGroupOffsets",
];

/// "Never flexible" in [`FIRST_FLEXIBLE`].
const NEVER: i16 = i16::MAX;

/// First flexible version (compact strings and arrays, tagged fields, request header v2, response
/// header v1) by api_key. Keys past the table are newer APIs, all flexible from v0.
const FIRST_FLEXIBLE: [i16; 56] = [
    9, 12, 6, 9, 4, 2, 6, 3, 8, 6, // 0..=9
    3, 6, 4, 4, 4, 5, 3, NEVER, 3, 5, // 10..=19
    4, 2, 2, 4, 3, 3, 3, 1, 3, 2, // 20..=29
    2, 2, 4, 2, 2, 2, 2, 2, 2, 2, // 30..=39
    2, 2, 2, 2, 1, 0, 0, NEVER, 1, 1, // 40..=49
    0, 0, 0, 1, 1, 0, // 50..=55
];

/// Error names by error code + 1 (from -1, UNKNOWN_SERVER_ERROR).
const ERROR_NAMES: [&str; 135] = [
    "UNKNOWN_SERVER_ERROR",
    "NONE",
    "OFFSET_OUT_OF_RANGE",
    "CORRUPT_MESSAGE",
    "UNKNOWN_TOPIC_OR_PARTITION",
    "INVALID_FETCH_SIZE",
    "LEADER_NOT_AVAILABLE",
    "NOT_LEADER_OR_FOLLOWER",
    "REQUEST_TIMED_OUT",
    "BROKER_NOT_AVAILABLE",
    "REPLICA_NOT_AVAILABLE",
    "MESSAGE_TOO_LARGE",
    "STALE_CONTROLLER_EPOCH",
    "OFFSET_METADATA_TOO_LARGE",
    "NETWORK_EXCEPTION",
    "COORDINATOR_LOAD_IN_PROGRESS",
    "COORDINATOR_NOT_AVAILABLE",
    "NOT_COORDINATOR",
    "INVALID_TOPIC_EXCEPTION",
    "RECORD_LIST_TOO_LARGE",
    "NOT_ENOUGH_REPLICAS",
    "NOT_ENOUGH_REPLICAS_AFTER_APPEND",
    "INVALID_REQUIRED_ACKS",
    "ILLEGAL_GENERATION",
    "INCONSISTENT_GROUP_PROTOCOL",
    "INVALID_GROUP_ID",
    "UNKNOWN_MEMBER_ID",
    "INVALID_SESSION_TIMEOUT",
    "REBALANCE_IN_PROGRESS",
    "INVALID_COMMIT_OFFSET_SIZE",
    "TOPIC_AUTHORIZATION_FAILED",
    "GROUP_AUTHORIZATION_FAILED",
    "CLUSTER_AUTHORIZATION_FAILED",
    "INVALID_TIMESTAMP",
    "UNSUPPORTED_SASL_MECHANISM",
    "ILLEGAL_SASL_STATE",
    "UNSUPPORTED_VERSION",
    "TOPIC_ALREADY_EXISTS",
    "INVALID_PARTITIONS",
    "INVALID_REPLICATION_FACTOR",
    "INVALID_REPLICA_ASSIGNMENT",
    "INVALID_CONFIG",
    "NOT_CONTROLLER",
    "INVALID_REQUEST",
    "UNSUPPORTED_FOR_MESSAGE_FORMAT",
    "POLICY_VIOLATION",
    "OUT_OF_ORDER_SEQUENCE_NUMBER",
    "DUPLICATE_SEQUENCE_NUMBER",
    "INVALID_PRODUCER_EPOCH",
    "INVALID_TXN_STATE",
    "INVALID_PRODUCER_ID_MAPPING",
    "INVALID_TRANSACTION_TIMEOUT",
    "CONCURRENT_TRANSACTIONS",
    "TRANSACTION_COORDINATOR_FENCED",
    "TRANSACTIONAL_ID_AUTHORIZATION_FAILED",
    "SECURITY_DISABLED",
    "OPERATION_NOT_ATTEMPTED",
    "KAFKA_STORAGE_ERROR",
    "LOG_DIR_NOT_FOUND",
    "SASL_AUTHENTICATION_FAILED",
    "UNKNOWN_PRODUCER_ID",
    "REASSIGNMENT_IN_PROGRESS",
    "DELEGATION_TOKEN_AUTH_DISABLED",
    "DELEGATION_TOKEN_NOT_FOUND",
    "DELEGATION_TOKEN_OWNER_MISMATCH",
    "DELEGATION_TOKEN_REQUEST_NOT_ALLOWED",
    "DELEGATION_TOKEN_AUTHORIZATION_FAILED",
    "DELEGATION_TOKEN_EXPIRED",
    "INVALID_PRINCIPAL_TYPE",
    "NON_EMPTY_GROUP",
    "GROUP_ID_NOT_FOUND",
    "FETCH_SESSION_ID_NOT_FOUND",
    "INVALID_FETCH_SESSION_EPOCH",
    "LISTENER_NOT_FOUND",
    "TOPIC_DELETION_DISABLED",
    "FENCED_LEADER_EPOCH",
    "UNKNOWN_LEADER_EPOCH",
    "UNSUPPORTED_COMPRESSION_TYPE",
    "STALE_BROKER_EPOCH",
    "OFFSET_NOT_AVAILABLE",
    "MEMBER_ID_REQUIRED",
    "PREFERRED_LEADER_NOT_AVAILABLE",
    "GROUP_MAX_SIZE_REACHED",
    "FENCED_INSTANCE_ID",
    "ELIGIBLE_LEADERS_NOT_AVAILABLE",
    "ELECTION_NOT_NEEDED",
    "NO_REASSIGNMENT_IN_PROGRESS",
    "GROUP_SUBSCRIBED_TO_TOPIC",
    "INVALID_RECORD",
    "UNSTABLE_OFFSET_COMMIT",
    "THROTTLING_QUOTA_EXCEEDED",
    "PRODUCER_FENCED",
    "RESOURCE_NOT_FOUND",
    "DUPLICATE_RESOURCE",
    "UNACCEPTABLE_CREDENTIAL",
    "INCONSISTENT_VOTER_SET",
    "INVALID_UPDATE_VERSION",
    "FEATURE_UPDATE_FAILED",
    "PRINCIPAL_DESERIALIZATION_FAILURE",
    "SNAPSHOT_NOT_FOUND",
    "POSITION_OUT_OF_RANGE",
    "UNKNOWN_TOPIC_ID",
    "DUPLICATE_BROKER_REGISTRATION",
    "BROKER_ID_NOT_REGISTERED",
    "INCONSISTENT_TOPIC_ID",
    "INCONSISTENT_CLUSTER_ID",
    "TRANSACTIONAL_ID_NOT_FOUND",
    "FETCH_SESSION_TOPIC_ID_ERROR",
    "INELIGIBLE_REPLICA",
    "NEW_LEADER_ELECTED",
    "OFFSET_MOVED_TO_TIERED_STORAGE",
    "FENCED_MEMBER_EPOCH",
    "UNRELEASED_INSTANCE_ID",
    "UNSUPPORTED_ASSIGNOR",
    "STALE_MEMBER_EPOCH",
    "MISMATCHED_ENDPOINT_TYPE",
    "UNSUPPORTED_ENDPOINT_TYPE",
    "UNKNOWN_CONTROLLER_ID",
    "UNKNOWN_SUBSCRIPTION_ID",
    "TELEMETRY_TOO_LARGE",
    "INVALID_REGISTRATION",
    "TRANSACTION_ABORTABLE",
    "INVALID_RECORD_STATE",
    "SHARE_SESSION_NOT_FOUND",
    "INVALID_SHARE_SESSION_EPOCH",
    "FENCED_STATE_EPOCH",
    "INVALID_VOTER_KEY",
    "DUPLICATE_VOTER",
    "VOTER_NOT_FOUND",
    "INVALID_REGULAR_EXPRESSION",
    "REBOOTSTRAP_REQUIRED",
    "STREAMS_INVALID_TOPOLOGY",
    "STREAMS_INVALID_TOPOLOGY_EPOCH",
    "STREAMS_TOPOLOGY_FENCED",
    "SHARE_SESSION_LIMIT_REACHED",
];

fn api_name(key: i16) -> Option<&'static str> {
    usize::try_from(key).ok().and_then(|k| API_NAMES.get(k).copied())
}

fn operation_name(key: i16) -> String {
    api_name(key).map_or_else(|| format!("api_{key}"), str::to_string)
}

fn error_name(code: i16) -> String {
    usize::try_from(i32::from(code) + 1)
        .ok()
        .and_then(|i| ERROR_NAMES.get(i))
        .map_or_else(|| format!("error_{code}"), |s| s.to_string())
}

fn is_flexible(key: i16, version: i16) -> bool {
    let first = usize::try_from(key).map_or(NEVER, |k| FIRST_FLEXIBLE.get(k).copied().unwrap_or(0));
    version >= first
}

fn be_i16(b: &[u8]) -> i16 {
    i16::from_be_bytes([b[0], b[1]])
}

fn be_i32(b: &[u8]) -> i32 {
    i32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// True when `first` (the first bytes a client sent) very likely starts a Kafka request: plausible
/// size, a known api_key, api_version 0..=20 and a sane, printable client id. Responses cannot be
/// told apart from other length-prefixed data on their own, so `Side::Response` gives false.
pub fn detect(side: Side, first: &[u8]) -> bool {
    side == Side::Request && probe_request(first) == Probe::Yes
}

/// What the bytes at a position say about a message starting there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Probe {
    Yes,
    No,
    /// Consistent so far, but too short to decide.
    NeedMore,
}

/// Strict check of a request start: size, api_key, api_version, client id length and bytes.
/// Fields are checked as far as `b` goes, so most garbage is rejected from its first bytes.
fn probe_request(b: &[u8]) -> Probe {
    if b.first().is_some_and(|&x| x > MAX_SIZE_TOP_BYTE) {
        return Probe::No;
    }
    if b.len() < 14 {
        let key_ok = b.len() < 6 || api_name(be_i16(&b[4..])).is_some();
        let ver_ok = b.len() < 8 || (0..=MAX_PROBE_VERSION).contains(&be_i16(&b[6..]));
        return if key_ok && ver_ok { Probe::NeedMore } else { Probe::No };
    }
    let size = be_i32(b);
    let (key, ver, client_len) = (be_i16(&b[4..]), be_i16(&b[6..]), be_i16(&b[12..]));
    let plausible = (10..=MAX_SIZE).contains(&size)
        && api_name(key).is_some()
        && (0..=MAX_PROBE_VERSION).contains(&ver)
        && (-1..=MAX_CLIENT_ID).contains(&client_len)
        && 10 + i32::from(client_len.max(0)) <= size;
    let client = &b[14..b.len().min(14 + client_len.max(0) as usize)];
    if plausible && client.iter().all(|c| (0x20..0x7f).contains(c)) {
        Probe::Yes
    } else {
        Probe::No
    }
}

/// A response start: plausible size and the correlation id of a request still waiting.
fn probe_response(b: &[u8], inflight: &Inflight) -> Probe {
    if b.first().is_some_and(|&x| x > MAX_SIZE_TOP_BYTE) {
        return Probe::No;
    }
    if b.len() < 8 {
        return Probe::NeedMore;
    }
    if (4..=MAX_SIZE).contains(&be_i32(b)) && inflight.contains(be_i32(&b[4..])) {
        Probe::Yes
    } else {
        Probe::No
    }
}

/// Requests waiting for their response, oldest first.
///
/// A broker answers a connection's requests in order, so `order` is kept in sending order and a
/// response drops every older entry too (requests never answered: Produce with acks=0, or lost).
#[derive(Default)]
struct Inflight {
    /// (correlation id, api_key, api_version); the front has sequence number `front_seq`.
    order: VecDeque<(i32, i16, i16)>,
    /// Correlation id to the sequence number of its latest request.
    seq_of: HashMap<i32, u64>,
    front_seq: u64,
    evicted: u64,
}

impl Inflight {
    fn insert(&mut self, corr: i32, key: i16, ver: i16) {
        if self.order.len() >= MAX_INFLIGHT {
            self.pop_front();
            self.evicted += 1;
        }
        self.seq_of.insert(corr, self.front_seq + self.order.len() as u64);
        self.order.push_back((corr, key, ver));
    }

    fn pop_front(&mut self) -> Option<(i32, i16, i16)> {
        let entry = self.order.pop_front()?;
        // A reused correlation id may point at a newer entry: keep that one.
        if self.seq_of.get(&entry.0) == Some(&self.front_seq) {
            self.seq_of.remove(&entry.0);
        }
        self.front_seq += 1;
        Some(entry)
    }

    fn contains(&self, corr: i32) -> bool {
        self.seq_of.contains_key(&corr)
    }

    /// The (api_key, api_version) of the request `corr` answers, forgetting it and older ones.
    fn take(&mut self, corr: i32) -> Option<(i16, i16)> {
        let seq = *self.seq_of.get(&corr)?;
        while self.front_seq < seq {
            self.pop_front();
        }
        self.pop_front().map(|(_, key, ver)| (key, ver))
    }
}

/// Reads Kafka primitive types from a bounded prefix; `None` when the bytes run out or are invalid.
struct Rd<'a> {
    b: &'a [u8],
    /// Compact strings/arrays and tagged fields (flexible versions).
    flex: bool,
}

impl<'a> Rd<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.b.len() < n {
            return None;
        }
        let (head, tail) = self.b.split_at(n);
        self.b = tail;
        Some(head)
    }

    fn skip(&mut self, n: usize) -> Option<()> {
        self.take(n).map(|_| ())
    }

    fn i16(&mut self) -> Option<i16> {
        self.take(2).map(be_i16)
    }

    fn i32(&mut self) -> Option<i32> {
        self.take(4).map(be_i32)
    }

    fn uuid(&mut self) -> Option<[u8; 16]> {
        self.take(16)?.try_into().ok()
    }

    fn uvarint(&mut self) -> Option<u32> {
        let mut value = 0u32;
        for (i, &byte) in self.b.iter().take(5).enumerate() {
            value |= u32::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                self.b = &self.b[i + 1..];
                return Some(value);
            }
        }
        None
    }

    /// A length: int16 (classic string), int32 (classic array) or uvarint - 1 (compact); -1 is null.
    fn length(&mut self, classic_width: usize) -> Option<i64> {
        let len = match (self.flex, classic_width) {
            (true, _) => i64::from(self.uvarint()?) - 1,
            (false, 2) => i64::from(self.i16()?),
            (false, _) => i64::from(self.i32()?),
        };
        (len >= -1).then_some(len)
    }

    /// A nullable string: `Some(None)` for null.
    fn string(&mut self) -> Option<Option<&'a [u8]>> {
        match self.length(2)? {
            -1 => Some(None),
            len => self.take(len as usize).map(Some),
        }
    }

    /// An array's element count; null counts as empty.
    fn array(&mut self) -> Option<u64> {
        self.length(4).map(|n| n.max(0) as u64)
    }

    /// Skips tagged fields (flexible versions only).
    fn tags(&mut self) -> Option<()> {
        if self.flex {
            for _ in 0..self.uvarint()? {
                self.uvarint()?;
                let size = self.uvarint()?;
                self.skip(size as usize)?;
            }
        }
        Some(())
    }
}

/// What a request names: a topic, or (newer versions) a topic id.
enum Topic<'a> {
    Name(&'a [u8]),
    Id([u8; 16]),
}

/// The first element of a topics array: its name, or its id when `by_id`.
fn first_topic<'a>(rd: &mut Rd<'a>, by_id: bool) -> Option<Topic<'a>> {
    if rd.array()? == 0 {
        return None;
    }
    if by_id {
        rd.uuid().map(Topic::Id)
    } else {
        rd.string()?.map(Topic::Name)
    }
}

/// The topic a request is about, for the APIs where it sits at a fixed place.
fn request_topic<'a>(key: i16, ver: i16, rd: &mut Rd<'a>) -> Option<Topic<'a>> {
    match key {
        PRODUCE => {
            if ver >= 3 {
                rd.string()?; // transactional_id
            }
            rd.skip(2 + 4)?; // acks, timeout_ms
            first_topic(rd, ver >= 13)
        }
        FETCH => {
            // replica_id (until v14), max_wait_ms, min_bytes, max_bytes (v3+), isolation_level (v4+),
            // session_id and session_epoch (v7+)
            let fixed = [(ver < 15, 4), (true, 8), (ver >= 3, 4), (ver >= 4, 1), (ver >= 7, 8)];
            rd.skip(fixed.iter().filter(|f| f.0).map(|f| f.1).sum())?;
            first_topic(rd, ver >= 13)
        }
        LIST_OFFSETS => {
            rd.skip(if ver >= 2 { 5 } else { 4 })?; // replica_id, isolation_level
            first_topic(rd, false)
        }
        METADATA if ver >= 10 => {
            if rd.array()? == 0 {
                return None;
            }
            let id = rd.uuid()?;
            let name = rd.string().flatten();
            name.map(Topic::Name).or((id != [0; 16]).then_some(Topic::Id(id)))
        }
        METADATA | CREATE_TOPICS => first_topic(rd, false),
        OFFSET_COMMIT => {
            rd.string()?; // group_id
            if ver >= 1 {
                rd.skip(4)?; // generation_id_or_member_epoch
                rd.string()?; // member_id
            }
            if ver >= 7 {
                rd.string()?; // group_instance_id
            }
            if (2..=4).contains(&ver) {
                rd.skip(8)?; // retention_time_ms
            }
            first_topic(rd, ver >= 10)
        }
        OFFSET_FETCH if ver <= 7 => {
            rd.string()?; // group_id
            first_topic(rd, false)
        }
        OFFSET_FETCH => {
            if rd.array()? == 0 {
                return None;
            }
            rd.string()?; // group_id
            if ver >= 9 {
                rd.string()?; // member_id
                rd.skip(4)?; // member_epoch
            }
            first_topic(rd, ver >= 10)
        }
        DELETE_TOPICS if ver >= 6 => {
            if rd.array()? == 0 {
                return None;
            }
            match rd.string()? {
                Some(name) => Some(Topic::Name(name)),
                None => rd.uuid().map(Topic::Id),
            }
        }
        DELETE_TOPICS => first_topic(rd, false),
        _ => None,
    }
}

/// Skips the throttle_time_ms that leads a response body from version `since`.
fn throttle(rd: &mut Rd, ver: i16, since: i16) -> Option<()> {
    if ver >= since {
        rd.skip(4)?;
    }
    Some(())
}

/// The first non-zero error code at the places known for this API (0 when none is set), or `None`
/// when the prefix does not reach it or the API's error is not at a fixed place.
fn response_error(key: i16, ver: i16, rd: &mut Rd) -> Option<i16> {
    match key {
        SASL_HANDSHAKE | API_VERSIONS | SASL_AUTHENTICATE => rd.i16(),
        FIND_COORDINATOR if ver <= 3 => {
            throttle(rd, ver, 1)?;
            rd.i16()
        }
        FIND_COORDINATOR => {
            rd.skip(4)?;
            if rd.array()? == 0 {
                return Some(0);
            }
            rd.string()?; // key
            rd.skip(4)?; // node_id
            rd.string()?; // host
            rd.skip(4)?; // port
            rd.i16()
        }
        JOIN_GROUP => {
            throttle(rd, ver, 2)?;
            rd.i16()
        }
        HEARTBEAT | LEAVE_GROUP | SYNC_GROUP | LIST_GROUPS => {
            throttle(rd, ver, 1)?;
            rd.i16()
        }
        INIT_PRODUCER_ID => {
            rd.skip(4)?;
            rd.i16()
        }
        DESCRIBE_GROUPS | DESCRIBE_CONFIGS => {
            throttle(rd, ver, if key == DESCRIBE_GROUPS { 1 } else { 0 })?;
            first_element_error(rd, |_| Some(()))
        }
        PRODUCE => produce_error(ver, rd),
        FETCH => fetch_error(ver, rd),
        METADATA => metadata_error(ver, rd),
        LIST_OFFSETS | OFFSET_COMMIT => {
            throttle(rd, ver, if key == LIST_OFFSETS { 2 } else { 3 })?;
            let by_id = key == OFFSET_COMMIT && ver >= 10;
            first_partition_error(rd, by_id)
        }
        CREATE_TOPICS => {
            throttle(rd, ver, 2)?;
            first_element_error(rd, |rd| {
                rd.string()?;
                rd.skip(if ver >= 7 { 16 } else { 0 }) // topic_id
            })
        }
        DELETE_TOPICS => {
            throttle(rd, ver, 1)?;
            first_element_error(rd, |rd| {
                rd.string()?;
                rd.skip(if ver >= 6 { 16 } else { 0 }) // topic_id
            })
        }
        _ => None,
    }
}

/// The error code of an array's first element, after the fields `before` skips.
fn first_element_error(rd: &mut Rd, before: impl FnOnce(&mut Rd) -> Option<()>) -> Option<i16> {
    if rd.array()? == 0 {
        return Some(0);
    }
    before(rd)?;
    rd.i16()
}

/// topics[0].partitions[0].error_code, where each partition starts with its index.
fn first_partition_error(rd: &mut Rd, by_id: bool) -> Option<i16> {
    if rd.array()? == 0 {
        return Some(0);
    }
    rd.skip(if by_id { 16 } else { 0 })?;
    if !by_id {
        rd.string()?;
    }
    first_element_error(rd, |rd| rd.skip(4))
}

/// Walks every topic and partition the prefix holds: Produce errors are per partition.
fn produce_error(ver: i16, rd: &mut Rd) -> Option<i16> {
    for _ in 0..rd.array()? {
        if ver >= 13 {
            rd.skip(16)?;
        } else {
            rd.string()?;
        }
        for _ in 0..rd.array()? {
            rd.skip(4)?; // index
            let code = rd.i16()?;
            if code != 0 {
                return Some(code);
            }
            // base_offset, log_append_time_ms (v2+), log_start_offset (v5+)
            rd.skip(8 + if ver >= 2 { 8 } else { 0 } + if ver >= 5 { 8 } else { 0 })?;
            if ver >= 8 {
                for _ in 0..rd.array()? {
                    rd.skip(4)?; // batch_index
                    rd.string()?; // batch_index_error_message
                    rd.tags()?;
                }
                rd.string()?; // error_message
            }
            rd.tags()?;
        }
        rd.tags()?;
    }
    Some(0)
}

/// The top-level error (v7+), else the first partition's.
fn fetch_error(ver: i16, rd: &mut Rd) -> Option<i16> {
    throttle(rd, ver, 1)?;
    if ver >= 7 {
        let code = rd.i16()?;
        if code != 0 {
            return Some(code);
        }
        rd.skip(4)?; // session_id
    }
    first_partition_error(rd, ver >= 13)
}

/// The first topic's error, after the brokers, cluster id and controller id.
fn metadata_error(ver: i16, rd: &mut Rd) -> Option<i16> {
    throttle(rd, ver, 3)?;
    for _ in 0..rd.array()? {
        rd.skip(4)?; // node_id
        rd.string()?; // host
        rd.skip(4)?; // port
        if ver >= 1 {
            rd.string()?; // rack
        }
        rd.tags()?;
    }
    if ver >= 2 {
        rd.string()?; // cluster_id
    }
    if ver >= 1 {
        rd.skip(4)?; // controller_id
    }
    first_element_error(rd, |_| Some(()))
}

/// An api_version (0..=63, checked by the caller) as text, without the formatting machinery.
fn version_text(ver: i16) -> String {
    let mut s = String::with_capacity(2);
    if ver >= 10 {
        s.push(char::from(b'0' + (ver / 10) as u8));
    }
    s.push(char::from(b'0' + (ver % 10) as u8));
    s
}

/// Wire text as a String: no copy-and-check of each char when it is valid UTF-8 (the usual case).
fn text(b: &[u8]) -> String {
    match std::str::from_utf8(b) {
        Ok(s) => s.to_owned(),
        Err(_) => String::from_utf8_lossy(b).into_owned(),
    }
}

fn hex(id: &[u8; 16]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    id.iter().flat_map(|b| [DIGITS[usize::from(b >> 4)] as char, DIGITS[usize::from(b & 15)] as char]).collect()
}

/// Builds a request message from the first bytes `p` of a message of `size` bytes (after the size
/// field) and remembers it in `inflight`.
fn parse_request(size: usize, p: &[u8], inflight: &mut Inflight) -> Result<Message, ParseError> {
    if p.len() < 10 {
        return Err(ParseError("kafka: request header cut short".into()));
    }
    let (key, ver, corr, client_len) = (be_i16(p), be_i16(&p[2..]), be_i32(&p[4..]), be_i16(&p[8..]));
    if !(0..=255).contains(&key) || !(0..=63).contains(&ver) || !(-1..=MAX_CLIENT_ID).contains(&client_len) {
        return Err(ParseError(format!(
            "kafka: implausible request header (api_key {key}, api_version {ver}, client_id length {client_len})"
        )));
    }
    let body_start = 10 + client_len.max(0) as usize;
    if body_start > p.len() || size < body_start {
        return Err(ParseError("kafka: client_id runs past the request".into()));
    }
    inflight.insert(corr, key, ver);
    let mut msg = Message {
        side: Some(Side::Request),
        key: Some(MatchKey::Correlation(corr)),
        operation: Some(operation_name(key)),
        attributes: Vec::with_capacity(2),
        ..Message::default()
    };
    msg.attributes.push(("messaging.kafka.api_version", version_text(ver)));
    if client_len >= 0 {
        msg.attributes.push(("messaging.client_id", text(&p[10..body_start])));
    }
    let flex = is_flexible(key, ver);
    let mut rd = Rd { b: &p[body_start..], flex };
    match rd.tags().and_then(|_| request_topic(key, ver, &mut rd)) {
        Some(Topic::Name(name)) => msg.target = Some(text(name)),
        Some(Topic::Id(id)) => msg.attributes.push(("messaging.kafka.topic_id", hex(&id))),
        None => {}
    }
    Ok(msg)
}

/// Builds a response message from its first bytes `p` (after the size field); `complete` when they
/// are not cut by a gap (an error code not found then means none was set).
fn parse_response(p: &[u8], complete: bool, inflight: &mut Inflight) -> Result<Message, ParseError> {
    if p.len() < 4 {
        return Err(ParseError("kafka: response header cut short".into()));
    }
    let corr = be_i32(p);
    let mut msg = Message { side: Some(Side::Response), key: Some(MatchKey::Correlation(corr)), ..Message::default() };
    let Some((key, ver)) = inflight.take(corr) else {
        // The request was not seen (capture began later, or it was evicted): nothing to decode with.
        msg.partial = true;
        return Ok(msg);
    };
    msg.operation = Some(operation_name(key));
    let flex = is_flexible(key, ver);
    let mut rd = Rd { b: &p[4..], flex: flex && key != API_VERSIONS };
    let code = rd.tags().and_then(|_| {
        rd.flex = flex;
        response_error(key, ver, &mut rd)
    });
    match code {
        Some(0) => msg.status = Some("OK".into()),
        Some(code) => {
            msg.status = Some("ERR".into());
            msg.error = Some(error_name(code));
        }
        None if complete => msg.status = Some("OK".into()),
        None => {}
    }
    Ok(msg)
}

/// The size field before every message: at least the fields of a header, at most [`MAX_SIZE`].
/// The first [`PREFIX_CAP`] bytes of a message are kept.
struct SizeField {
    is_request: bool,
}

impl Header for SizeField {
    type Tag = ();
    type Error = ParseError;

    fn header_len(&self) -> usize {
        4
    }

    fn read(&self, h: &[u8]) -> Result<Head<()>, ParseError> {
        let size = be_i32(h);
        // A request holds at least api_key, api_version, correlation_id and client_id length.
        let min = if self.is_request { 10 } else { 4 };
        if !(min..=MAX_SIZE).contains(&size) {
            return Err(ParseError(format!("kafka: implausible message size {size}")));
        }
        Ok(Head { tag: (), body: size as usize, keep: PREFIX_CAP - 4, continued: false })
    }
}

/// What one `feed` call works with besides the stream itself.
struct Cx<'a> {
    inflight: &'a mut Inflight,
    out: &'a mut Vec<Message>,
    err: Option<ParseError>,
}

/// One direction of the connection.
struct Stream {
    is_request: bool,
    framer: Framer<()>,
    /// A message parsed from its first bytes, waiting for the rest of its body to pass.
    pending: Option<Message>,
    /// Lost track: scanning for a plausible message start.
    lost: bool,
    /// Time of the last chunk seen.
    last_ns: u64,
    /// While resynchronizing: bytes not yet ruled out as a message start, prepended to the next chunk.
    carry: Vec<u8>,
    carry_ns: u64,
}

impl Stream {
    fn new(is_request: bool) -> Self {
        Stream {
            is_request,
            framer: Framer::new(),
            pending: None,
            lost: false,
            last_ns: 0,
            carry: Vec::new(),
            carry_ns: 0,
        }
    }

    fn buffered(&self) -> usize {
        self.framer.held() + self.carry.len()
    }

    fn process(&mut self, cx: &mut Cx, data: &[u8], ts: u64) {
        let mut pos = 0;
        while pos < data.len() {
            if self.lost {
                pos = data.len() - self.resync(cx, &data[pos..], ts).len();
                continue;
            }
            // A message starting in this chunk is looked at again from its second byte when it
            // turns out implausible; one begun in an earlier chunk, from the bytes it held.
            let (before, fresh) = (pos, !self.framer.busy());
            let piece = self.framer.next_piece(data, &mut pos, ts, &SizeField { is_request: self.is_request });
            let failed = match piece {
                Ok(None) => break,
                Ok(Some(Piece::Frame(head))) => {
                    let parsed = if self.is_request {
                        parse_request(head.body_len, head.body, cx.inflight)
                    } else {
                        parse_response(head.body, true, cx.inflight)
                    };
                    match parsed {
                        Ok(mut msg) => {
                            msg.start_ns = head.start_ns;
                            msg.size = head.size + head.rest;
                            if head.rest == 0 {
                                msg.end_ns = ts;
                                cx.out.push(msg);
                            } else {
                                self.pending = Some(msg);
                            }
                            None
                        }
                        Err(e) => {
                            let held =
                                (!fresh).then(|| [&(head.body_len as u32).to_be_bytes()[..], head.body].concat());
                            Some((e, held))
                        }
                    }
                }
                Ok(Some(Piece::End { end_ns, .. })) => {
                    if let Some(mut msg) = self.pending.take() {
                        msg.end_ns = end_ns;
                        cx.out.push(msg);
                    }
                    None
                }
                Err(e) => Some((e, (!fresh).then(|| self.framer.last_header().to_vec()))),
            };
            if let Some((e, held)) = failed {
                self.lose_track(cx, e, held.as_deref().unwrap_or_default());
                if held.is_none() {
                    pos = before + 1;
                }
            }
        }
        self.last_ns = ts;
    }

    /// Gives up on the current message and scans for the next one, from the second byte of what
    /// was held of it (a real message may start inside a bogus header).
    fn lose_track(&mut self, cx: &mut Cx, e: ParseError, held: &[u8]) {
        cx.err.get_or_insert(e);
        self.lost = true;
        self.pending = None;
        self.carry.clear();
        self.carry.extend_from_slice(held.get(1..).unwrap_or_default());
        self.carry_ns = self.framer.start_ns();
        self.framer.reset();
    }

    /// `n` uncaptured bytes: counted when they fall in the un-buffered rest of a parsed message
    /// (record batches); anywhere else (size, prefix, resync) they cannot be placed.
    fn skip_uncaptured(&mut self, n: u64, ts: u64, out: &mut Vec<Message>) -> bool {
        if self.pending.is_none() {
            return false;
        }
        match self.framer.skip(n, ts) {
            None => return false,
            Some(None) => {}
            Some(Some(_)) => {
                if let Some(mut msg) = self.pending.take() {
                    msg.end_ns = ts;
                    out.push(msg);
                }
            }
        }
        // These bytes went by at `ts`: a later gap reports the message as ending there.
        self.last_ns = ts;
        true
    }

    fn probe(&self, cx: &Cx, b: &[u8]) -> Probe {
        if self.is_request {
            probe_request(b)
        } else {
            probe_response(b, cx.inflight)
        }
    }

    /// Scans for a plausible message start: first in the carried tail (joined with the head of
    /// `rest`), then in `rest`. Returns what is left of `rest` to parse.
    fn resync<'d>(&mut self, cx: &mut Cx, rest: &'d [u8], ts: u64) -> &'d [u8] {
        if !self.carry.is_empty() {
            let carry = std::mem::take(&mut self.carry);
            let mut joined = carry.clone();
            joined.extend_from_slice(&rest[..rest.len().min(JOIN)]);
            for i in 0..carry.len() {
                match self.probe(cx, &joined[i..]) {
                    Probe::Yes => {
                        self.lost = false;
                        self.process(cx, &carry[i..], self.carry_ns);
                        return rest;
                    }
                    // Probes need fewer than JOIN bytes, so `joined` holds all of `rest` here.
                    Probe::NeedMore => {
                        self.carry = joined.split_off(i);
                        return &[];
                    }
                    Probe::No => {}
                }
            }
        }
        let mut i = 0;
        // Only a byte that can lead a size is worth probing: skip the rest in a tight loop.
        while let Some(at) = rest[i..].iter().position(|&b| b <= MAX_SIZE_TOP_BYTE) {
            i += at;
            match self.probe(cx, &rest[i..]) {
                Probe::Yes => {
                    self.lost = false;
                    return &rest[i..];
                }
                Probe::NeedMore => {
                    self.carry.extend_from_slice(&rest[i..]);
                    self.carry_ns = ts;
                    return &[];
                }
                Probe::No => i += 1,
            }
        }
        &[]
    }

    /// Bytes were lost: report the message in progress as partial (when enough of it was seen)
    /// and resynchronize on the next plausible message start.
    fn on_gap(&mut self, cx: &mut Cx) {
        let cut = self.framer.cut(self.last_ns);
        if let Some(mut msg) = self.pending.take() {
            msg.partial = true;
            msg.size = cut.map_or(msg.size, |f| f.size);
            msg.end_ns = self.last_ns;
            cx.out.push(msg);
        } else if let Some(f) = cut {
            let parsed = if self.is_request {
                parse_request(f.body_len, f.body, cx.inflight)
            } else {
                parse_response(f.body, false, cx.inflight)
            };
            if let Ok(mut msg) = parsed {
                msg.partial = true;
                msg.start_ns = f.start_ns;
                msg.end_ns = self.last_ns;
                msg.size = f.size;
                cx.out.push(msg);
            }
        }
        self.lost = true;
        self.carry.clear();
    }
}

/// Parser of one Kafka connection (client requests, broker responses).
pub struct KafkaParser {
    requests: Stream,
    responses: Stream,
    inflight: Inflight,
}

impl Default for KafkaParser {
    fn default() -> Self {
        Self::new()
    }
}

impl KafkaParser {
    /// A parser for a connection observed from its start (or from a request boundary).
    pub fn new() -> Self {
        KafkaParser { requests: Stream::new(true), responses: Stream::new(false), inflight: Inflight::default() }
    }

    /// Requests forgotten unanswered because more than 4096 were waiting.
    pub fn evicted_requests(&self) -> u64 {
        self.inflight.evicted
    }
}

impl Parser for KafkaParser {
    /// Requests yield api name, client id, api version and (for topic-centric APIs) the first
    /// topic; responses yield `OK`/`ERR` and the first error code found. After a gap or an
    /// implausible header the side resynchronizes on the next plausible message start; messages
    /// found after that in the same chunk are appended even when an error is returned.
    fn feed(
        &mut self,
        side: Side,
        chunk: &[u8],
        ts_ns: u64,
        gap: bool,
        out: &mut Vec<Message>,
    ) -> Result<(), ParseError> {
        let stream = match side {
            Side::Request => &mut self.requests,
            Side::Response => &mut self.responses,
        };
        let mut cx = Cx { inflight: &mut self.inflight, out, err: None };
        if gap {
            stream.on_gap(&mut cx);
        }
        stream.process(&mut cx, chunk, ts_ns);
        cx.err.map_or(Ok(()), Err)
    }

    fn skip(&mut self, side: Side, n: u64, ts_ns: u64, out: &mut Vec<Message>) -> bool {
        match side {
            Side::Request => self.requests.skip_uncaptured(n, ts_ns, out),
            Side::Response => self.responses.skip_uncaptured(n, ts_ns, out),
        }
    }

    fn buffered(&self) -> usize {
        self.requests.buffered() + self.responses.buffered()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Encodes Kafka primitives, big-endian, exactly as on the wire.
    #[derive(Default)]
    struct Enc(Vec<u8>);

    impl Enc {
        fn raw(mut self, b: &[u8]) -> Self {
            self.0.extend_from_slice(b);
            self
        }
        fn i8(self, v: i8) -> Self {
            self.raw(&v.to_be_bytes())
        }
        fn i16(self, v: i16) -> Self {
            self.raw(&v.to_be_bytes())
        }
        fn i32(self, v: i32) -> Self {
            self.raw(&v.to_be_bytes())
        }
        fn i64(self, v: i64) -> Self {
            self.raw(&v.to_be_bytes())
        }
        fn uvar(mut self, mut v: u32) -> Self {
            while v >= 0x80 {
                self.0.push((v as u8) | 0x80);
                v >>= 7;
            }
            self.0.push(v as u8);
            self
        }
        /// Classic string: int16 length.
        fn str(self, s: &str) -> Self {
            self.i16(s.len() as i16).raw(s.as_bytes())
        }
        /// Compact string: uvarint length + 1.
        fn cstr(self, s: &str) -> Self {
            self.uvar(s.len() as u32 + 1).raw(s.as_bytes())
        }
        /// Empty tagged fields.
        fn tags(self) -> Self {
            self.uvar(0)
        }
        /// Prepends the int32 size.
        fn frame(self) -> Vec<u8> {
            let mut v = (self.0.len() as i32).to_be_bytes().to_vec();
            v.extend(self.0);
            v
        }
    }

    /// Request header v1 (v2 adds empty tagged fields): client_id is a classic string in both.
    fn req(key: i16, ver: i16, corr: i32, client: &str, flexible: bool) -> Enc {
        let e = Enc::default().i16(key).i16(ver).i32(corr).str(client);
        if flexible {
            e.tags()
        } else {
            e
        }
    }

    /// Response header v0 (v1 adds empty tagged fields).
    fn resp(corr: i32, flexible: bool) -> Enc {
        let e = Enc::default().i32(corr);
        if flexible {
            e.tags()
        } else {
            e
        }
    }

    fn crc32c(data: &[u8]) -> u32 {
        let mut crc = !0u32;
        for &b in data {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 == 1 { (crc >> 1) ^ 0x82F6_3B78 } else { crc >> 1 };
            }
        }
        !crc
    }

    /// A magic-2 record batch holding one record (key null, value "hello"), as a producer sends it.
    fn record_batch() -> Vec<u8> {
        // record: attributes, timestamp_delta, offset_delta, key length -1, value length 5, value,
        // header count 0 (varints zigzag-encoded); preceded by its length 11 (zigzag 22)
        let record = [0x16, 0x00, 0x00, 0x00, 0x01, 0x0a, b'h', b'e', b'l', b'l', b'o', 0x00];
        let after_crc = Enc::default()
            .i16(0) // attributes: no compression, create time
            .i32(0) // last_offset_delta
            .i64(1_700_000_000_000) // base_timestamp
            .i64(1_700_000_000_000) // max_timestamp
            .i64(-1) // producer_id
            .i16(-1) // producer_epoch
            .i32(-1) // base_sequence
            .i32(1) // record count
            .raw(&record)
            .0;
        let after_length = Enc::default()
            .i32(-1) // partition_leader_epoch
            .i8(2) // magic
            .raw(&crc32c(&after_crc).to_be_bytes())
            .raw(&after_crc)
            .0;
        Enc::default().i64(0).i32(after_length.len() as i32).raw(&after_length).0
    }

    fn api_versions_v3_request() -> Vec<u8> {
        #[rustfmt::skip]
        let bytes = vec![
            0x00, 0x00, 0x00, 0x2e, // size 46
            0x00, 0x12, 0x00, 0x03, // api_key 18 (ApiVersions), api_version 3
            0x00, 0x00, 0x00, 0x01, // correlation_id 1
            0x00, 0x0a, b'p', b'r', b'o', b'd', b'u', b'c', b'e', b'r', b'-', b'1', // client_id
            0x00, // header tagged fields
            0x12, b'a', b'p', b'a', b'c', b'h', b'e', b'-', b'k', b'a', b'f', b'k', b'a', b'-', b'j', b'a', b'v', b'a',
            0x06, b'3', b'.', b'7', b'.', b'0', // client_software_name, client_software_version
            0x00, // tagged fields
        ];
        bytes
    }

    fn api_versions_v3_response() -> Vec<u8> {
        #[rustfmt::skip]
        let bytes = vec![
            0x00, 0x00, 0x00, 0x21, // size 33
            0x00, 0x00, 0x00, 0x01, // correlation_id 1; response header v0: no tagged fields
            0x00, 0x00, // error_code
            0x04, // api_keys: compact array of 3
            0x00, 0x00, 0x00, 0x00, 0x00, 0x0b, 0x00, // Produce 0..=11
            0x00, 0x01, 0x00, 0x00, 0x00, 0x10, 0x00, // Fetch 0..=16
            0x00, 0x12, 0x00, 0x00, 0x00, 0x04, 0x00, // ApiVersions 0..=4
            0x00, 0x00, 0x00, 0x00, // throttle_time_ms
            0x00, // tagged fields
        ];
        bytes
    }

    /// The broker answers an unsupported ApiVersions version with a v0 body.
    fn api_versions_unsupported_response(corr: i32) -> Vec<u8> {
        resp(corr, false).i16(35).i32(1).i16(18).i16(0).i16(3).frame()
    }

    fn metadata_v1_request(corr: i32) -> Vec<u8> {
        req(3, 1, corr, "consumer-1", false).i32(1).str("orders").frame()
    }

    fn metadata_v1_response(corr: i32) -> Vec<u8> {
        resp(corr, false)
            .i32(1) // brokers
            .i32(1)
            .str("broker-1")
            .i32(9092)
            .i16(-1) // rack: null
            .i32(1) // controller_id
            .i32(1) // topics
            .i16(3) // error_code: UNKNOWN_TOPIC_OR_PARTITION
            .str("orders")
            .i8(0) // is_internal
            .i32(0) // partitions
            .frame()
    }

    fn metadata_v12_request(corr: i32) -> Vec<u8> {
        req(3, 12, corr, "consumer-1", true)
            .uvar(2) // topics: compact array of 1
            .raw(&[0; 16]) // topic_id: none
            .cstr("orders")
            .tags()
            .i8(1) // allow_auto_topic_creation
            .i8(0) // include_topic_authorized_operations
            .tags()
            .frame()
    }

    const TOPIC_ID: [u8; 16] = [0x5f, 0x8e, 0x9c, 0x10, 0x22, 0x41, 0x4c, 0x3b, 0x9a, 0x10, 0, 1, 2, 3, 4, 5];

    fn metadata_v12_response(corr: i32) -> Vec<u8> {
        resp(corr, true)
            .i32(0) // throttle_time_ms
            .uvar(2) // brokers
            .i32(1)
            .cstr("broker-1")
            .i32(9092)
            .uvar(0) // rack: null
            .tags()
            .cstr("cluster-A") // cluster_id
            .i32(1) // controller_id
            .uvar(2) // topics
            .i16(0) // error_code
            .cstr("orders")
            .raw(&TOPIC_ID)
            .i8(0) // is_internal
            .uvar(2) // partitions
            .i16(0)
            .i32(0) // partition_index
            .i32(1) // leader_id
            .i32(0) // leader_epoch
            .uvar(2)
            .i32(1) // replica_nodes
            .uvar(2)
            .i32(1) // isr_nodes
            .uvar(1) // offline_replicas
            .tags()
            .i32(i32::MIN) // topic_authorized_operations
            .tags()
            .tags()
            .frame()
    }

    fn produce_v3_request(corr: i32) -> Vec<u8> {
        let batch = record_batch();
        req(0, 3, corr, "producer-1", false)
            .i16(-1) // transactional_id: null
            .i16(-1) // acks: all
            .i32(30_000) // timeout_ms
            .i32(1) // topics
            .str("orders")
            .i32(1) // partitions
            .i32(0)
            .i32(batch.len() as i32)
            .raw(&batch)
            .frame()
    }

    fn produce_v3_response(corr: i32) -> Vec<u8> {
        resp(corr, false)
            .i32(1)
            .str("orders")
            .i32(1)
            .i32(0) // index
            .i16(0) // error_code
            .i64(42) // base_offset
            .i64(-1) // log_append_time_ms
            .i32(0) // throttle_time_ms
            .frame()
    }

    fn produce_v9_request(corr: i32) -> Vec<u8> {
        let batch = record_batch();
        req(0, 9, corr, "producer-1", true)
            .uvar(0) // transactional_id: null
            .i16(1) // acks: leader
            .i32(30_000)
            .uvar(2) // topics
            .cstr("payments")
            .uvar(2) // partitions
            .i32(0)
            .uvar(batch.len() as u32 + 1) // records: compact bytes
            .raw(&batch)
            .tags()
            .tags()
            .tags()
            .frame()
    }

    /// Two partitions: the first fine, the second NOT_LEADER_OR_FOLLOWER.
    fn produce_v9_response(corr: i32) -> Vec<u8> {
        let partition = |e: Enc, index: i32, code: i16| {
            e.i32(index)
                .i16(code)
                .i64(if code == 0 { 7 } else { -1 })
                .i64(-1) // log_append_time_ms
                .i64(0) // log_start_offset
                .uvar(1) // record_errors: empty
                .uvar(0) // error_message: null
                .tags()
        };
        let e = resp(corr, true).uvar(2).cstr("payments").uvar(3);
        partition(partition(e, 0, 0), 1, 6).tags().i32(0).tags().frame()
    }

    fn fetch_v4_request(corr: i32) -> Vec<u8> {
        req(1, 4, corr, "consumer-1", false)
            .i32(-1) // replica_id
            .i32(500) // max_wait_ms
            .i32(1) // min_bytes
            .i32(52_428_800) // max_bytes
            .i8(0) // isolation_level
            .i32(1)
            .str("orders")
            .i32(1)
            .i32(0) // partition
            .i64(42) // fetch_offset
            .i32(1_048_576) // partition_max_bytes
            .frame()
    }

    fn fetch_v4_response(corr: i32, code: i16) -> Vec<u8> {
        let batch = if code == 0 { record_batch() } else { Vec::new() };
        resp(corr, false)
            .i32(0) // throttle_time_ms
            .i32(1)
            .str("orders")
            .i32(1)
            .i32(0) // partition_index
            .i16(code)
            .i64(43) // high_watermark
            .i64(43) // last_stable_offset
            .i32(-1) // aborted_transactions: null
            .i32(batch.len() as i32)
            .raw(&batch)
            .frame()
    }

    fn fetch_v12_request(corr: i32) -> Vec<u8> {
        req(1, 12, corr, "consumer-1", true)
            .i32(-1) // replica_id
            .i32(500)
            .i32(1)
            .i32(52_428_800)
            .i8(1) // isolation_level: read committed
            .i32(0) // session_id
            .i32(-1) // session_epoch
            .uvar(2)
            .cstr("orders")
            .uvar(2)
            .i32(0) // partition
            .i32(-1) // current_leader_epoch
            .i64(42) // fetch_offset
            .i32(-1) // last_fetched_epoch
            .i64(-1) // log_start_offset
            .i32(1_048_576) // partition_max_bytes
            .tags()
            .tags()
            .uvar(1) // forgotten_topics_data: empty
            .cstr("") // rack_id
            .tags()
            .frame()
    }

    fn fetch_v12_response(corr: i32) -> Vec<u8> {
        let batch = record_batch();
        resp(corr, true)
            .i32(0) // throttle_time_ms
            .i16(0) // error_code
            .i32(123) // session_id
            .uvar(2)
            .cstr("orders")
            .uvar(2)
            .i32(0) // partition_index
            .i16(0)
            .i64(43) // high_watermark
            .i64(43) // last_stable_offset
            .i64(0) // log_start_offset
            .uvar(0) // aborted_transactions: null
            .i32(-1) // preferred_read_replica
            .uvar(batch.len() as u32 + 1)
            .raw(&batch)
            .tags()
            .tags()
            .tags()
            .frame()
    }

    /// FETCH_SESSION_ID_NOT_FOUND at the top level, no topics.
    fn fetch_v12_session_error(corr: i32) -> Vec<u8> {
        resp(corr, true).i32(0).i16(70).i32(0).uvar(1).tags().frame()
    }

    type Events = Vec<(Side, Vec<u8>)>;

    fn conversation() -> Events {
        vec![
            (Side::Request, api_versions_v3_request()),
            (Side::Response, api_versions_v3_response()),
            (Side::Request, metadata_v1_request(2)),
            (Side::Response, metadata_v1_response(2)),
            (Side::Request, metadata_v12_request(3)),
            (Side::Response, metadata_v12_response(3)),
            (Side::Request, produce_v3_request(4)),
            (Side::Response, produce_v3_response(4)),
            (Side::Request, produce_v9_request(5)),
            (Side::Response, produce_v9_response(5)),
            (Side::Request, fetch_v4_request(6)),
            (Side::Response, fetch_v4_response(6, 0)),
            (Side::Request, [fetch_v4_request(7), fetch_v12_request(8), fetch_v12_request(9)].concat()),
            (Side::Response, [fetch_v4_response(7, 1), fetch_v12_response(8), fetch_v12_session_error(9)].concat()),
        ]
    }

    /// Feeds each event cut at the given points, event i at time (i + 1) * 1000.
    fn run(events: &Events, cuts: impl Fn(usize) -> Vec<usize>) -> Vec<Message> {
        let mut p = KafkaParser::new();
        let mut out = Vec::new();
        for (i, (side, bytes)) in events.iter().enumerate() {
            let mut at = 0;
            for cut in cuts(bytes.len()).into_iter().chain([bytes.len()]) {
                let cut = cut.clamp(at, bytes.len());
                p.feed(*side, &bytes[at..cut], (i as u64 + 1) * 1000, false, &mut out).unwrap();
                assert!(p.buffered() <= MAX_BUFFERED);
                at = cut;
            }
        }
        assert_eq!(p.buffered(), 0);
        out
    }

    fn attr<'a>(m: &'a Message, name: &str) -> Option<&'a str> {
        m.attributes.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str())
    }

    fn summary(m: &Message) -> (Side, i32, &str, Option<&str>, Option<&str>, Option<&str>) {
        let Some(MatchKey::Correlation(corr)) = m.key else { panic!("no correlation key") };
        (
            m.side.unwrap(),
            corr,
            m.operation.as_deref().unwrap_or("?"),
            m.target.as_deref(),
            m.status.as_deref(),
            m.error.as_deref(),
        )
    }

    #[test]
    fn conversation_whole() {
        use Side::*;
        let out = run(&conversation(), |_| vec![]);
        let got: Vec<_> = out.iter().map(summary).collect();
        assert_eq!(
            got,
            vec![
                (Request, 1, "ApiVersions", None, None, None),
                (Response, 1, "ApiVersions", None, Some("OK"), None),
                (Request, 2, "Metadata", Some("orders"), None, None),
                (Response, 2, "Metadata", None, Some("ERR"), Some("UNKNOWN_TOPIC_OR_PARTITION")),
                (Request, 3, "Metadata", Some("orders"), None, None),
                (Response, 3, "Metadata", None, Some("OK"), None),
                (Request, 4, "Produce", Some("orders"), None, None),
                (Response, 4, "Produce", None, Some("OK"), None),
                (Request, 5, "Produce", Some("payments"), None, None),
                (Response, 5, "Produce", None, Some("ERR"), Some("NOT_LEADER_OR_FOLLOWER")),
                (Request, 6, "Fetch", Some("orders"), None, None),
                (Response, 6, "Fetch", None, Some("OK"), None),
                (Request, 7, "Fetch", Some("orders"), None, None),
                (Request, 8, "Fetch", Some("orders"), None, None),
                (Request, 9, "Fetch", Some("orders"), None, None),
                (Response, 7, "Fetch", None, Some("ERR"), Some("OFFSET_OUT_OF_RANGE")),
                (Response, 8, "Fetch", None, Some("OK"), None),
                (Response, 9, "Fetch", None, Some("ERR"), Some("FETCH_SESSION_ID_NOT_FOUND")),
            ]
        );
        let events = conversation();
        assert_eq!(out[0].size, 50);
        assert_eq!(out[1].size, 37);
        assert_eq!(out[6].size, produce_v3_request(4).len() as u64);
        assert_eq!(attr(&out[0], "messaging.kafka.api_version"), Some("3"));
        assert_eq!(attr(&out[0], "messaging.client_id"), Some("producer-1"));
        assert_eq!(attr(&out[4], "messaging.kafka.api_version"), Some("12"));
        assert_eq!(attr(&out[4], "messaging.client_id"), Some("consumer-1"));
        assert!(out.iter().all(|m| !m.partial));
        assert_eq!(out.iter().map(|m| m.size).sum::<u64>(), events.iter().map(|e| e.1.len() as u64).sum::<u64>());
        assert_eq!((out[13].start_ns, out[13].end_ns), (13_000, 13_000));
    }

    #[test]
    fn conversation_split_every_way() {
        let events = conversation();
        let whole = run(&events, |_| vec![]);
        assert_eq!(run(&events, |len| (1..len).collect()), whole, "byte by byte");
        let longest = events.iter().map(|e| e.1.len()).max().unwrap();
        for k in 1..longest {
            assert_eq!(run(&events, |_| vec![k]), whole, "cut at {k}");
        }
    }

    #[test]
    fn api_versions_unsupported_version_uses_v0_body() {
        let events =
            vec![(Side::Request, api_versions_v3_request()), (Side::Response, api_versions_unsupported_response(1))];
        let out = run(&events, |_| vec![]);
        assert_eq!(out[1].status.as_deref(), Some("ERR"));
        assert_eq!(out[1].error.as_deref(), Some("UNSUPPORTED_VERSION"));
    }

    #[test]
    fn topic_ids_in_newer_versions() {
        // Produce v13: topics carry a topic_id instead of a name.
        let produce = req(0, 13, 1, "p", true)
            .uvar(0)
            .i16(1)
            .i32(1000)
            .uvar(2)
            .raw(&TOPIC_ID)
            .uvar(2)
            .i32(0)
            .uvar(1) // records: empty
            .tags()
            .tags()
            .tags()
            .frame();
        // Fetch v15: no replica_id, topic ids.
        let fetch = req(1, 15, 2, "c", true)
            .i32(500)
            .i32(1)
            .i32(1000)
            .i8(0)
            .i32(0)
            .i32(-1)
            .uvar(2)
            .raw(&TOPIC_ID)
            .uvar(1)
            .tags()
            .uvar(1)
            .cstr("")
            .tags()
            .frame();
        let out = run(&vec![(Side::Request, produce), (Side::Request, fetch)], |_| vec![]);
        for m in &out {
            assert_eq!(m.target, None);
            assert_eq!(attr(m, "messaging.kafka.topic_id"), Some("5f8e9c1022414c3b9a10000102030405"));
        }
    }

    #[test]
    fn other_topic_apis_and_top_level_errors() {
        let events = vec![
            (Side::Request, req(2, 1, 1, "c", false).i32(-1).i32(1).str("t-list").i32(0).frame()),
            (
                Side::Request,
                req(19, 5, 2, "a", true).uvar(2).cstr("t-create").i32(1).i16(1).uvar(1).uvar(1).tags().frame(),
            ),
            (Side::Request, req(20, 1, 3, "a", false).i32(1).str("t-delete").i32(1000).frame()),
            (Side::Request, req(12, 4, 4, "c", true).cstr("group").i32(1).cstr("m").uvar(0).tags().frame()),
            (Side::Request, req(10, 2, 5, "c", false).str("group").i8(0).frame()),
            (Side::Response, resp(1, false).i32(1).str("t-list").i32(1).i32(0).i16(0).i64(0).i64(0).frame()),
            (Side::Response, resp(2, true).i32(0).uvar(2).cstr("t-create").i16(36).uvar(0).tags().tags().frame()),
            (Side::Response, resp(3, false).i32(0).i32(1).str("t-delete").i16(29).frame()),
            (Side::Response, resp(4, true).i32(0).i16(27).tags().frame()),
            (Side::Response, resp(5, false).i32(0).i16(15).str("").i32(-1).str("").i32(-1).frame()),
        ];
        let out = run(&events, |_| vec![]);
        let got: Vec<_> =
            out.iter().map(|m| (m.operation.as_deref().unwrap(), m.target.as_deref(), m.error.as_deref())).collect();
        assert_eq!(
            got,
            vec![
                ("ListOffsets", Some("t-list"), None),
                ("CreateTopics", Some("t-create"), None),
                ("DeleteTopics", Some("t-delete"), None),
                ("Heartbeat", None, None),
                ("FindCoordinator", None, None),
                ("ListOffsets", None, None),
                ("CreateTopics", None, Some("TOPIC_ALREADY_EXISTS")),
                ("DeleteTopics", None, Some("TOPIC_AUTHORIZATION_FAILED")),
                ("Heartbeat", None, Some("REBALANCE_IN_PROGRESS")),
                ("FindCoordinator", None, Some("COORDINATOR_NOT_AVAILABLE")),
            ]
        );
    }

    #[test]
    fn names() {
        assert_eq!(operation_name(60), "DescribeCluster");
        assert_eq!(operation_name(500), "api_500");
        assert_eq!(error_name(-1), "UNKNOWN_SERVER_ERROR");
        assert_eq!(error_name(120), "TRANSACTION_ABORTABLE");
        assert_eq!(error_name(999), "error_999");
        assert_eq!(error_name(-7), "error_-7");
        assert!(is_flexible(18, 3) && !is_flexible(18, 2) && !is_flexible(17, 1) && is_flexible(80, 0));
    }

    #[test]
    fn detect_requests_only() {
        for (side, bytes) in conversation() {
            assert_eq!(detect(side, &bytes), side == Side::Request);
        }
        let not_kafka: [&[u8]; 8] = [
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            b"*2\r\n$3\r\nGET\r\n$3\r\nkey\r\n",
            &[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03, 0, 0, 0, 0, 0],
            // PostgreSQL StartupMessage: protocol 3.0 reads as Metadata v0, but "user\0..." is no client id.
            b"\x00\x00\x00\x29\x00\x03\x00\x00user\x00postgres\x00database\x00postgres\x00\x00",
            // DNS over TCP: length 29, id, flags 0x0100 -> api_key 256.
            &[0x00, 0x1d, 0xab, 0xcd, 0x01, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0, 3, b'w'],
            &[0, 0, 0, 0x2e, 0, 0x12],
            &[],
        ];
        for bytes in not_kafka {
            assert!(!detect(Side::Request, bytes), "{bytes:?}");
        }
    }

    #[test]
    fn gap_inside_record_batch_gives_partial_then_resyncs() {
        let produce = produce_v3_request(1);
        let mut p = KafkaParser::new();
        let mut out = Vec::new();
        p.feed(Side::Request, &produce[..80], 1, false, &mut out).unwrap();
        assert!(out.is_empty());
        // The rest of the produce is lost; the capture resumes mid-stream with garbage then a request.
        let resumed = [&[0x01, 0x02, 0x03][..], &metadata_v1_request(2)].concat();
        p.feed(Side::Request, &resumed, 2, true, &mut out).unwrap();
        assert_eq!(out.len(), 2);
        assert!(out[0].partial);
        assert_eq!((out[0].size, out[0].target.as_deref(), out[0].end_ns), (80, Some("orders"), 1));
        assert_eq!((out[1].operation.as_deref(), out[1].partial), (Some("Metadata"), false));
        // Responses: the produce's response was lost too; resync on the metadata one.
        let responses = [&produce_v3_response(1)[..30], &metadata_v1_response(2)].concat();
        p.feed(Side::Response, &responses[..10], 3, false, &mut out).unwrap();
        p.feed(Side::Response, &responses[20..], 4, true, &mut out).unwrap();
        assert_eq!(out.len(), 4);
        assert!(out[2].partial && out[2].status.is_none());
        assert_eq!(out[2].operation.as_deref(), Some("Produce"));
        assert_eq!(out[3].error.as_deref(), Some("UNKNOWN_TOPIC_OR_PARTITION"));
    }

    #[test]
    fn gap_in_header_prefix_gives_partial_request() {
        let mut p = KafkaParser::new();
        let mut out = Vec::new();
        let fetch = fetch_v12_request(1);
        p.feed(Side::Request, &fetch[..40], 1, false, &mut out).unwrap();
        p.feed(Side::Request, &fetch_v4_request(2), 2, true, &mut out).unwrap();
        assert_eq!(out.len(), 2);
        assert!(out[0].partial && out[0].target.is_none());
        assert_eq!(out[0].operation.as_deref(), Some("Fetch"));
        assert_eq!(out[1].target.as_deref(), Some("orders"));
    }

    #[test]
    fn midstream_start_errors_then_resyncs() {
        let produce = produce_v9_request(1);
        let stream = [&produce[50..], &metadata_v12_request(2)[..], &fetch_v4_request(3)].concat();
        let mut out = Vec::new();
        let mut p = KafkaParser::new();
        assert!(p.feed(Side::Request, &stream, 1, false, &mut out).is_err());
        let ops: Vec<_> = out.iter().map(|m| m.operation.as_deref().unwrap()).collect();
        assert_eq!(ops, ["Metadata", "Fetch"]);
        // Same bytes one at a time: the same messages.
        let mut out2 = Vec::new();
        let mut p = KafkaParser::new();
        let errors = stream.iter().filter(|b| p.feed(Side::Request, &[**b], 1, false, &mut out2).is_err()).count();
        assert!(errors >= 1);
        assert_eq!(out, out2);
    }

    #[test]
    fn unknown_correlation_is_partial() {
        let mut p = KafkaParser::new();
        let mut out = Vec::new();
        p.feed(Side::Response, &produce_v3_response(77), 1, false, &mut out).unwrap();
        assert_eq!(out.len(), 1);
        assert!(out[0].partial && out[0].operation.is_none());
        assert_eq!(out[0].key, Some(MatchKey::Correlation(77)));
    }

    #[test]
    fn implausible_response_size_then_resync() {
        let mut p = KafkaParser::new();
        let mut out = Vec::new();
        p.feed(Side::Request, &metadata_v1_request(5), 1, false, &mut out).unwrap();
        let bytes = [&[0x7f, 0xff, 0xff, 0xff, 0x00][..], &metadata_v1_response(5)].concat();
        assert!(p.feed(Side::Response, &bytes, 2, false, &mut out).is_err());
        assert_eq!(out.len(), 2);
        assert_eq!(out[1].error.as_deref(), Some("UNKNOWN_TOPIC_OR_PARTITION"));
    }

    #[test]
    fn inflight_is_bounded_and_in_order() {
        let mut p = KafkaParser::new();
        let mut out = Vec::new();
        let many: Vec<u8> = (0..MAX_INFLIGHT as i32 + 3).flat_map(metadata_v1_request).collect();
        p.feed(Side::Request, &many, 1, false, &mut out).unwrap();
        assert_eq!(p.evicted_requests(), 3);
        // Correlation 2 was evicted; 10 is known and answers (and drops) everything before it.
        p.feed(Side::Response, &metadata_v1_response(2), 2, false, &mut out).unwrap();
        p.feed(Side::Response, &metadata_v1_response(10), 2, false, &mut out).unwrap();
        p.feed(Side::Response, &metadata_v1_response(5), 2, false, &mut out).unwrap();
        let tail: Vec<_> = out[out.len() - 3..].iter().map(|m| (m.operation.is_some(), m.partial)).collect();
        assert_eq!(tail, [(false, true), (true, false), (false, true)]);
        assert_eq!(p.inflight.order.len(), p.inflight.seq_of.len());
    }

    #[test]
    fn large_record_batch_is_skipped_not_buffered() {
        let batch = vec![0xab; 1 << 20];
        let produce = req(0, 3, 1, "p", false)
            .i16(-1)
            .i16(1)
            .i32(1000)
            .i32(1)
            .str("big")
            .i32(1)
            .i32(0)
            .i32(batch.len() as i32)
            .raw(&batch)
            .frame();
        let mut p = KafkaParser::new();
        let mut out = Vec::new();
        for piece in produce.chunks(1000) {
            p.feed(Side::Request, piece, 1, false, &mut out).unwrap();
            assert!(p.buffered() <= PREFIX_CAP);
        }
        assert_eq!((out.len(), out[0].target.as_deref(), out[0].size), (1, Some("big"), produce.len() as u64));
    }

    #[test]
    fn uncaptured_record_batch_bytes_are_counted_and_keep_the_stream_in_step() {
        let batch = vec![0xab; 10_000];
        let produce = req(0, 3, 1, "p", false)
            .i16(-1)
            .i16(1)
            .i32(1000)
            .i32(1)
            .str("big")
            .i32(1)
            .i32(0)
            .i32(batch.len() as i32)
            .raw(&batch)
            .frame();
        let mut p = KafkaParser::new();
        let mut out = Vec::new();
        // The capture kept the first 4 KiB (the buffered prefix and nothing more); the rest of
        // the batch went by uncaptured.
        p.feed(Side::Request, &produce[..PREFIX_CAP], 1, false, &mut out).unwrap();
        let rest = (produce.len() - PREFIX_CAP) as u64;
        // More than the message holds cannot be placed.
        assert!(!p.skip(Side::Request, rest + 1, 2, &mut out));
        assert!(p.skip(Side::Request, rest, 2, &mut out));
        p.feed(Side::Request, &metadata_v1_request(2), 3, false, &mut out).unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!(
            (out[0].target.as_deref(), out[0].size, out[0].end_ns, out[0].partial),
            (Some("big"), produce.len() as u64, 2, false)
        );
        assert_eq!((out[1].operation.as_deref(), out[1].partial), (Some("Metadata"), false));
        // In a message's size or buffered prefix, uncaptured bytes cannot be placed.
        assert!(!p.skip(Side::Request, 10, 4, &mut out));
        p.feed(Side::Request, &produce[..100], 5, false, &mut out).unwrap();
        assert!(!p.skip(Side::Request, 10, 6, &mut out));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn arbitrary_bytes_never_panic(feeds in proptest::collection::vec(
            (any::<bool>(), any::<bool>(), proptest::collection::vec(any::<u8>(), 0..300)), 0..20)
        ) {
            let mut p = KafkaParser::new();
            let mut out = Vec::new();
            let (mut bytes, mut gaps) = (0, 0);
            for (request, gap, chunk) in &feeds {
                let side = if *request { Side::Request } else { Side::Response };
                let _ = p.feed(side, chunk, 1, *gap, &mut out);
                bytes += chunk.len();
                gaps += usize::from(*gap);
                prop_assert!(p.buffered() <= MAX_BUFFERED);
            }
            prop_assert!(out.len() <= bytes / 8 + gaps);
        }

        #[test]
        fn arbitrary_splits_match_whole(seed in proptest::collection::vec(1usize..200, 1..40)) {
            let events = conversation();
            let whole = run(&events, |_| vec![]);
            let split = run(&events, |len| {
                let mut at = 0;
                seed.iter().map(|s| { at = (at + s) % (len + 1); at }).collect::<Vec<_>>().into_iter()
                    .scan(0, |max, c| { *max = c.max(*max); Some(*max) }).collect()
            });
            prop_assert_eq!(split, whole);
        }

        #[test]
        fn valid_stream_with_noise_and_gaps(cut in 0usize..2000, noise in proptest::collection::vec(any::<u8>(), 0..50)) {
            let stream: Vec<u8> = conversation().into_iter().filter(|e| e.0 == Side::Request).flat_map(|e| e.1).collect();
            let cut = cut.min(stream.len());
            let mut p = KafkaParser::new();
            let mut out = Vec::new();
            let _ = p.feed(Side::Request, &stream[..cut], 1, false, &mut out);
            let _ = p.feed(Side::Request, &noise, 2, true, &mut out);
            let _ = p.feed(Side::Request, &stream, 3, true, &mut out);
            prop_assert!(p.buffered() <= MAX_BUFFERED);
            prop_assert!(out.len() <= 2 * 9 + 2);
        }
    }
}
