from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ReserveRequest(_message.Message):
    __slots__ = ("bytes", "scope", "priority", "holder", "pid", "ttl_seconds", "wait_seconds")
    BYTES_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    HOLDER_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    TTL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    WAIT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    bytes: int
    scope: str
    priority: str
    holder: str
    pid: int
    ttl_seconds: float
    wait_seconds: float
    def __init__(self, bytes: _Optional[int] = ..., scope: _Optional[str] = ..., priority: _Optional[str] = ..., holder: _Optional[str] = ..., pid: _Optional[int] = ..., ttl_seconds: _Optional[float] = ..., wait_seconds: _Optional[float] = ...) -> None: ...

class Reservation(_message.Message):
    __slots__ = ("id", "bytes", "pool", "priority", "holder", "pid", "state", "used_bytes", "seconds_left")
    ID_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    POOL_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    HOLDER_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    USED_BYTES_FIELD_NUMBER: _ClassVar[int]
    SECONDS_LEFT_FIELD_NUMBER: _ClassVar[int]
    id: int
    bytes: int
    pool: str
    priority: str
    holder: str
    pid: int
    state: str
    used_bytes: int
    seconds_left: float
    def __init__(self, id: _Optional[int] = ..., bytes: _Optional[int] = ..., pool: _Optional[str] = ..., priority: _Optional[str] = ..., holder: _Optional[str] = ..., pid: _Optional[int] = ..., state: _Optional[str] = ..., used_bytes: _Optional[int] = ..., seconds_left: _Optional[float] = ...) -> None: ...

class ReleaseRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: int
    def __init__(self, id: _Optional[int] = ...) -> None: ...

class ReleaseResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListReservationsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListReservationsResponse(_message.Message):
    __slots__ = ("granted", "queued")
    GRANTED_FIELD_NUMBER: _ClassVar[int]
    QUEUED_FIELD_NUMBER: _ClassVar[int]
    granted: _containers.RepeatedCompositeFieldContainer[Reservation]
    queued: _containers.RepeatedCompositeFieldContainer[Reservation]
    def __init__(self, granted: _Optional[_Iterable[_Union[Reservation, _Mapping]]] = ..., queued: _Optional[_Iterable[_Union[Reservation, _Mapping]]] = ...) -> None: ...

class WatchReservationsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ReservationEvent(_message.Message):
    __slots__ = ("event", "reservation", "reason")
    EVENT_FIELD_NUMBER: _ClassVar[int]
    RESERVATION_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    event: str
    reservation: Reservation
    reason: str
    def __init__(self, event: _Optional[str] = ..., reservation: _Optional[_Union[Reservation, _Mapping]] = ..., reason: _Optional[str] = ...) -> None: ...

class GetPolicyRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Policy(_message.Message):
    __slots__ = ("source", "toml", "not_in_use")
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    TOML_FIELD_NUMBER: _ClassVar[int]
    NOT_IN_USE_FIELD_NUMBER: _ClassVar[int]
    source: str
    toml: str
    not_in_use: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, source: _Optional[str] = ..., toml: _Optional[str] = ..., not_in_use: _Optional[_Iterable[str]] = ...) -> None: ...

class PolicyText(_message.Message):
    __slots__ = ("toml",)
    TOML_FIELD_NUMBER: _ClassVar[int]
    toml: str
    def __init__(self, toml: _Optional[str] = ...) -> None: ...

class ValidatePolicyResponse(_message.Message):
    __slots__ = ("valid", "error", "rules", "cgroup_rules")
    VALID_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    RULES_FIELD_NUMBER: _ClassVar[int]
    CGROUP_RULES_FIELD_NUMBER: _ClassVar[int]
    valid: bool
    error: str
    rules: int
    cgroup_rules: int
    def __init__(self, valid: _Optional[bool] = ..., error: _Optional[str] = ..., rules: _Optional[int] = ..., cgroup_rules: _Optional[int] = ...) -> None: ...

class ApplyPolicyResponse(_message.Message):
    __slots__ = ("decision", "start_only")
    DECISION_FIELD_NUMBER: _ClassVar[int]
    START_ONLY_FIELD_NUMBER: _ClassVar[int]
    decision: Decision
    start_only: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, decision: _Optional[_Union[Decision, _Mapping]] = ..., start_only: _Optional[_Iterable[str]] = ...) -> None: ...

class ProcessRef(_message.Message):
    __slots__ = ("pid",)
    PID_FIELD_NUMBER: _ClassVar[int]
    pid: int
    def __init__(self, pid: _Optional[int] = ...) -> None: ...

class GetStatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Probe(_message.Message):
    __slots__ = ("name", "attached", "detail")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ATTACHED_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    name: str
    attached: bool
    detail: str
    def __init__(self, name: _Optional[str] = ..., attached: _Optional[bool] = ..., detail: _Optional[str] = ...) -> None: ...

class Status(_message.Message):
    __slots__ = ("version", "mode", "degraded_reason", "probes", "tracked_processes", "rules", "dry_run", "last_decision_seq", "kernel_oom_kills", "probe_events", "lost_events", "host_available_bytes", "host_total_bytes", "uptime_seconds", "tripwire_fires", "host_used_bytes", "host_limit_bytes", "host_level", "psi_some_avg10", "psi_trigger", "crash_loops", "journal_path", "journal_write_failures", "gpus", "gpu_unavailable", "gpu_driver", "gpu_unmapped_pids", "reservations", "reserved_bytes", "admission_queued", "queued", "instrument", "instrument_reason", "precise_attachments", "reach_bytes", "instrument_seconds")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    DEGRADED_REASON_FIELD_NUMBER: _ClassVar[int]
    PROBES_FIELD_NUMBER: _ClassVar[int]
    TRACKED_PROCESSES_FIELD_NUMBER: _ClassVar[int]
    RULES_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    LAST_DECISION_SEQ_FIELD_NUMBER: _ClassVar[int]
    KERNEL_OOM_KILLS_FIELD_NUMBER: _ClassVar[int]
    PROBE_EVENTS_FIELD_NUMBER: _ClassVar[int]
    LOST_EVENTS_FIELD_NUMBER: _ClassVar[int]
    HOST_AVAILABLE_BYTES_FIELD_NUMBER: _ClassVar[int]
    HOST_TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    UPTIME_SECONDS_FIELD_NUMBER: _ClassVar[int]
    TRIPWIRE_FIRES_FIELD_NUMBER: _ClassVar[int]
    HOST_USED_BYTES_FIELD_NUMBER: _ClassVar[int]
    HOST_LIMIT_BYTES_FIELD_NUMBER: _ClassVar[int]
    HOST_LEVEL_FIELD_NUMBER: _ClassVar[int]
    PSI_SOME_AVG10_FIELD_NUMBER: _ClassVar[int]
    PSI_TRIGGER_FIELD_NUMBER: _ClassVar[int]
    CRASH_LOOPS_FIELD_NUMBER: _ClassVar[int]
    JOURNAL_PATH_FIELD_NUMBER: _ClassVar[int]
    JOURNAL_WRITE_FAILURES_FIELD_NUMBER: _ClassVar[int]
    GPUS_FIELD_NUMBER: _ClassVar[int]
    GPU_UNAVAILABLE_FIELD_NUMBER: _ClassVar[int]
    GPU_DRIVER_FIELD_NUMBER: _ClassVar[int]
    GPU_UNMAPPED_PIDS_FIELD_NUMBER: _ClassVar[int]
    RESERVATIONS_FIELD_NUMBER: _ClassVar[int]
    RESERVED_BYTES_FIELD_NUMBER: _ClassVar[int]
    ADMISSION_QUEUED_FIELD_NUMBER: _ClassVar[int]
    QUEUED_FIELD_NUMBER: _ClassVar[int]
    INSTRUMENT_FIELD_NUMBER: _ClassVar[int]
    INSTRUMENT_REASON_FIELD_NUMBER: _ClassVar[int]
    PRECISE_ATTACHMENTS_FIELD_NUMBER: _ClassVar[int]
    REACH_BYTES_FIELD_NUMBER: _ClassVar[int]
    INSTRUMENT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    version: str
    mode: str
    degraded_reason: str
    probes: _containers.RepeatedCompositeFieldContainer[Probe]
    tracked_processes: int
    rules: int
    dry_run: bool
    last_decision_seq: int
    kernel_oom_kills: int
    probe_events: int
    lost_events: int
    host_available_bytes: int
    host_total_bytes: int
    uptime_seconds: float
    tripwire_fires: int
    host_used_bytes: int
    host_limit_bytes: int
    host_level: str
    psi_some_avg10: float
    psi_trigger: bool
    crash_loops: _containers.RepeatedCompositeFieldContainer[CrashLoop]
    journal_path: str
    journal_write_failures: int
    gpus: _containers.RepeatedCompositeFieldContainer[GpuDevice]
    gpu_unavailable: str
    gpu_driver: str
    gpu_unmapped_pids: _containers.RepeatedScalarFieldContainer[int]
    reservations: int
    reserved_bytes: int
    admission_queued: _containers.RepeatedScalarFieldContainer[int]
    queued: _containers.RepeatedCompositeFieldContainer[QueuedProcess]
    instrument: str
    instrument_reason: str
    precise_attachments: int
    reach_bytes: int
    instrument_seconds: float
    def __init__(self, version: _Optional[str] = ..., mode: _Optional[str] = ..., degraded_reason: _Optional[str] = ..., probes: _Optional[_Iterable[_Union[Probe, _Mapping]]] = ..., tracked_processes: _Optional[int] = ..., rules: _Optional[int] = ..., dry_run: _Optional[bool] = ..., last_decision_seq: _Optional[int] = ..., kernel_oom_kills: _Optional[int] = ..., probe_events: _Optional[int] = ..., lost_events: _Optional[int] = ..., host_available_bytes: _Optional[int] = ..., host_total_bytes: _Optional[int] = ..., uptime_seconds: _Optional[float] = ..., tripwire_fires: _Optional[int] = ..., host_used_bytes: _Optional[int] = ..., host_limit_bytes: _Optional[int] = ..., host_level: _Optional[str] = ..., psi_some_avg10: _Optional[float] = ..., psi_trigger: _Optional[bool] = ..., crash_loops: _Optional[_Iterable[_Union[CrashLoop, _Mapping]]] = ..., journal_path: _Optional[str] = ..., journal_write_failures: _Optional[int] = ..., gpus: _Optional[_Iterable[_Union[GpuDevice, _Mapping]]] = ..., gpu_unavailable: _Optional[str] = ..., gpu_driver: _Optional[str] = ..., gpu_unmapped_pids: _Optional[_Iterable[int]] = ..., reservations: _Optional[int] = ..., reserved_bytes: _Optional[int] = ..., admission_queued: _Optional[_Iterable[int]] = ..., queued: _Optional[_Iterable[_Union[QueuedProcess, _Mapping]]] = ..., instrument: _Optional[str] = ..., instrument_reason: _Optional[str] = ..., precise_attachments: _Optional[int] = ..., reach_bytes: _Optional[int] = ..., instrument_seconds: _Optional[float] = ...) -> None: ...

class QueuedProcess(_message.Message):
    __slots__ = ("pid", "comm", "scope", "rule", "waited_seconds", "position")
    PID_FIELD_NUMBER: _ClassVar[int]
    COMM_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    RULE_FIELD_NUMBER: _ClassVar[int]
    WAITED_SECONDS_FIELD_NUMBER: _ClassVar[int]
    POSITION_FIELD_NUMBER: _ClassVar[int]
    pid: int
    comm: str
    scope: str
    rule: str
    waited_seconds: float
    position: int
    def __init__(self, pid: _Optional[int] = ..., comm: _Optional[str] = ..., scope: _Optional[str] = ..., rule: _Optional[str] = ..., waited_seconds: _Optional[float] = ..., position: _Optional[int] = ...) -> None: ...

class GpuDevice(_message.Message):
    __slots__ = ("index", "uuid", "name", "total_bytes", "used_bytes", "level", "error")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    UUID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    USED_BYTES_FIELD_NUMBER: _ClassVar[int]
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    index: int
    uuid: str
    name: str
    total_bytes: int
    used_bytes: int
    level: str
    error: str
    def __init__(self, index: _Optional[int] = ..., uuid: _Optional[str] = ..., name: _Optional[str] = ..., total_bytes: _Optional[int] = ..., used_bytes: _Optional[int] = ..., level: _Optional[str] = ..., error: _Optional[str] = ...) -> None: ...

class CrashLoop(_message.Message):
    __slots__ = ("cmdline", "count", "seconds_ago")
    CMDLINE_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    SECONDS_AGO_FIELD_NUMBER: _ClassVar[int]
    cmdline: str
    count: int
    seconds_ago: float
    def __init__(self, cmdline: _Optional[str] = ..., count: _Optional[int] = ..., seconds_ago: _Optional[float] = ...) -> None: ...

class ListProcessesRequest(_message.Message):
    __slots__ = ("limit", "matched_only", "cgroup_prefix", "comm", "rule", "sort", "page_token")
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    MATCHED_ONLY_FIELD_NUMBER: _ClassVar[int]
    CGROUP_PREFIX_FIELD_NUMBER: _ClassVar[int]
    COMM_FIELD_NUMBER: _ClassVar[int]
    RULE_FIELD_NUMBER: _ClassVar[int]
    SORT_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    limit: int
    matched_only: bool
    cgroup_prefix: str
    comm: str
    rule: str
    sort: str
    page_token: str
    def __init__(self, limit: _Optional[int] = ..., matched_only: _Optional[bool] = ..., cgroup_prefix: _Optional[str] = ..., comm: _Optional[str] = ..., rule: _Optional[str] = ..., sort: _Optional[str] = ..., page_token: _Optional[str] = ...) -> None: ...

class Process(_message.Message):
    __slots__ = ("pid", "comm", "cgroup", "rule", "resident_bytes", "charged_bytes", "slope_bytes_per_sec", "limit_bytes", "predicted_seconds_to_limit", "state", "page_faults", "mapped_bytes", "level", "gpu_bytes", "ns_pid")
    PID_FIELD_NUMBER: _ClassVar[int]
    COMM_FIELD_NUMBER: _ClassVar[int]
    CGROUP_FIELD_NUMBER: _ClassVar[int]
    RULE_FIELD_NUMBER: _ClassVar[int]
    RESIDENT_BYTES_FIELD_NUMBER: _ClassVar[int]
    CHARGED_BYTES_FIELD_NUMBER: _ClassVar[int]
    SLOPE_BYTES_PER_SEC_FIELD_NUMBER: _ClassVar[int]
    LIMIT_BYTES_FIELD_NUMBER: _ClassVar[int]
    PREDICTED_SECONDS_TO_LIMIT_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    PAGE_FAULTS_FIELD_NUMBER: _ClassVar[int]
    MAPPED_BYTES_FIELD_NUMBER: _ClassVar[int]
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    GPU_BYTES_FIELD_NUMBER: _ClassVar[int]
    NS_PID_FIELD_NUMBER: _ClassVar[int]
    pid: int
    comm: str
    cgroup: str
    rule: str
    resident_bytes: int
    charged_bytes: int
    slope_bytes_per_sec: float
    limit_bytes: int
    predicted_seconds_to_limit: float
    state: str
    page_faults: int
    mapped_bytes: int
    level: str
    gpu_bytes: int
    ns_pid: int
    def __init__(self, pid: _Optional[int] = ..., comm: _Optional[str] = ..., cgroup: _Optional[str] = ..., rule: _Optional[str] = ..., resident_bytes: _Optional[int] = ..., charged_bytes: _Optional[int] = ..., slope_bytes_per_sec: _Optional[float] = ..., limit_bytes: _Optional[int] = ..., predicted_seconds_to_limit: _Optional[float] = ..., state: _Optional[str] = ..., page_faults: _Optional[int] = ..., mapped_bytes: _Optional[int] = ..., level: _Optional[str] = ..., gpu_bytes: _Optional[int] = ..., ns_pid: _Optional[int] = ...) -> None: ...

class ListProcessesResponse(_message.Message):
    __slots__ = ("processes", "next_page_token", "total")
    PROCESSES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    processes: _containers.RepeatedCompositeFieldContainer[Process]
    next_page_token: str
    total: int
    def __init__(self, processes: _Optional[_Iterable[_Union[Process, _Mapping]]] = ..., next_page_token: _Optional[str] = ..., total: _Optional[int] = ...) -> None: ...

class Sample(_message.Message):
    __slots__ = ("seconds_ago", "bytes")
    SECONDS_AGO_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    seconds_ago: float
    bytes: int
    def __init__(self, seconds_ago: _Optional[float] = ..., bytes: _Optional[int] = ...) -> None: ...

class ProcessDetail(_message.Message):
    __slots__ = ("process", "samples", "seconds_to_warn", "seconds_to_preempt", "seconds_to_kill", "seconds_to_limit")
    PROCESS_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    SECONDS_TO_WARN_FIELD_NUMBER: _ClassVar[int]
    SECONDS_TO_PREEMPT_FIELD_NUMBER: _ClassVar[int]
    SECONDS_TO_KILL_FIELD_NUMBER: _ClassVar[int]
    SECONDS_TO_LIMIT_FIELD_NUMBER: _ClassVar[int]
    process: Process
    samples: _containers.RepeatedCompositeFieldContainer[Sample]
    seconds_to_warn: float
    seconds_to_preempt: float
    seconds_to_kill: float
    seconds_to_limit: float
    def __init__(self, process: _Optional[_Union[Process, _Mapping]] = ..., samples: _Optional[_Iterable[_Union[Sample, _Mapping]]] = ..., seconds_to_warn: _Optional[float] = ..., seconds_to_preempt: _Optional[float] = ..., seconds_to_kill: _Optional[float] = ..., seconds_to_limit: _Optional[float] = ...) -> None: ...

class ListDecisionsRequest(_message.Message):
    __slots__ = ("after_seq", "limit", "pid", "kind", "rule", "action")
    AFTER_SEQ_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    RULE_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    after_seq: int
    limit: int
    pid: int
    kind: str
    rule: str
    action: str
    def __init__(self, after_seq: _Optional[int] = ..., limit: _Optional[int] = ..., pid: _Optional[int] = ..., kind: _Optional[str] = ..., rule: _Optional[str] = ..., action: _Optional[str] = ...) -> None: ...

class Decision(_message.Message):
    __slots__ = ("seq", "time_unix_ms", "kind", "pid", "comm", "cgroup", "rule", "action", "outcome", "reason", "resident_bytes", "charged_bytes", "slope_bytes_per_sec", "limit_bytes", "predicted_seconds_to_limit", "level", "crash_loop", "scope", "start_time")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    TIME_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    COMM_FIELD_NUMBER: _ClassVar[int]
    CGROUP_FIELD_NUMBER: _ClassVar[int]
    RULE_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    RESIDENT_BYTES_FIELD_NUMBER: _ClassVar[int]
    CHARGED_BYTES_FIELD_NUMBER: _ClassVar[int]
    SLOPE_BYTES_PER_SEC_FIELD_NUMBER: _ClassVar[int]
    LIMIT_BYTES_FIELD_NUMBER: _ClassVar[int]
    PREDICTED_SECONDS_TO_LIMIT_FIELD_NUMBER: _ClassVar[int]
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    CRASH_LOOP_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    seq: int
    time_unix_ms: int
    kind: str
    pid: int
    comm: str
    cgroup: str
    rule: str
    action: str
    outcome: str
    reason: str
    resident_bytes: int
    charged_bytes: int
    slope_bytes_per_sec: float
    limit_bytes: int
    predicted_seconds_to_limit: float
    level: str
    crash_loop: bool
    scope: str
    start_time: int
    def __init__(self, seq: _Optional[int] = ..., time_unix_ms: _Optional[int] = ..., kind: _Optional[str] = ..., pid: _Optional[int] = ..., comm: _Optional[str] = ..., cgroup: _Optional[str] = ..., rule: _Optional[str] = ..., action: _Optional[str] = ..., outcome: _Optional[str] = ..., reason: _Optional[str] = ..., resident_bytes: _Optional[int] = ..., charged_bytes: _Optional[int] = ..., slope_bytes_per_sec: _Optional[float] = ..., limit_bytes: _Optional[int] = ..., predicted_seconds_to_limit: _Optional[float] = ..., level: _Optional[str] = ..., crash_loop: _Optional[bool] = ..., scope: _Optional[str] = ..., start_time: _Optional[int] = ...) -> None: ...

class ListDecisionsResponse(_message.Message):
    __slots__ = ("decisions",)
    DECISIONS_FIELD_NUMBER: _ClassVar[int]
    decisions: _containers.RepeatedCompositeFieldContainer[Decision]
    def __init__(self, decisions: _Optional[_Iterable[_Union[Decision, _Mapping]]] = ...) -> None: ...

class WatchDecisionsRequest(_message.Message):
    __slots__ = ("after_seq",)
    AFTER_SEQ_FIELD_NUMBER: _ClassVar[int]
    after_seq: int
    def __init__(self, after_seq: _Optional[int] = ...) -> None: ...
