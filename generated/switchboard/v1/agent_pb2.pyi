import datetime

from google.api import field_behavior_pb2 as _field_behavior_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Agent(_message.Message):
    __slots__ = ("name", "id", "slug", "display_name", "description", "instructions", "greeting", "backend", "sampling", "knowledge", "guardrails", "tools", "quick_replies", "fallback_reply", "latest_version", "create_time", "update_time")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    SLUG_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    INSTRUCTIONS_FIELD_NUMBER: _ClassVar[int]
    GREETING_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    SAMPLING_FIELD_NUMBER: _ClassVar[int]
    KNOWLEDGE_FIELD_NUMBER: _ClassVar[int]
    GUARDRAILS_FIELD_NUMBER: _ClassVar[int]
    TOOLS_FIELD_NUMBER: _ClassVar[int]
    QUICK_REPLIES_FIELD_NUMBER: _ClassVar[int]
    FALLBACK_REPLY_FIELD_NUMBER: _ClassVar[int]
    LATEST_VERSION_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    name: str
    id: str
    slug: str
    display_name: str
    description: str
    instructions: str
    greeting: str
    backend: ModelBackend
    sampling: Sampling
    knowledge: KnowledgeSettings
    guardrails: Guardrails
    tools: _containers.RepeatedCompositeFieldContainer[Tool]
    quick_replies: _containers.RepeatedScalarFieldContainer[str]
    fallback_reply: str
    latest_version: int
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    def __init__(self, name: _Optional[str] = ..., id: _Optional[str] = ..., slug: _Optional[str] = ..., display_name: _Optional[str] = ..., description: _Optional[str] = ..., instructions: _Optional[str] = ..., greeting: _Optional[str] = ..., backend: _Optional[_Union[ModelBackend, _Mapping]] = ..., sampling: _Optional[_Union[Sampling, _Mapping]] = ..., knowledge: _Optional[_Union[KnowledgeSettings, _Mapping]] = ..., guardrails: _Optional[_Union[Guardrails, _Mapping]] = ..., tools: _Optional[_Iterable[_Union[Tool, _Mapping]]] = ..., quick_replies: _Optional[_Iterable[str]] = ..., fallback_reply: _Optional[str] = ..., latest_version: _Optional[int] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ModelBackend(_message.Message):
    __slots__ = ("builtin", "openai_compatible")
    BUILTIN_FIELD_NUMBER: _ClassVar[int]
    OPENAI_COMPATIBLE_FIELD_NUMBER: _ClassVar[int]
    builtin: BuiltinBackend
    openai_compatible: OpenAICompatibleBackend
    def __init__(self, builtin: _Optional[_Union[BuiltinBackend, _Mapping]] = ..., openai_compatible: _Optional[_Union[OpenAICompatibleBackend, _Mapping]] = ...) -> None: ...

class BuiltinBackend(_message.Message):
    __slots__ = ("delta_interval_ms",)
    DELTA_INTERVAL_MS_FIELD_NUMBER: _ClassVar[int]
    delta_interval_ms: int
    def __init__(self, delta_interval_ms: _Optional[int] = ...) -> None: ...

class OpenAICompatibleBackend(_message.Message):
    __slots__ = ("base_url", "model", "api_key_env", "timeout_ms")
    BASE_URL_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    API_KEY_ENV_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    base_url: str
    model: str
    api_key_env: str
    timeout_ms: int
    def __init__(self, base_url: _Optional[str] = ..., model: _Optional[str] = ..., api_key_env: _Optional[str] = ..., timeout_ms: _Optional[int] = ...) -> None: ...

class Sampling(_message.Message):
    __slots__ = ("temperature", "top_p", "max_tokens")
    TEMPERATURE_FIELD_NUMBER: _ClassVar[int]
    TOP_P_FIELD_NUMBER: _ClassVar[int]
    MAX_TOKENS_FIELD_NUMBER: _ClassVar[int]
    temperature: float
    top_p: float
    max_tokens: int
    def __init__(self, temperature: _Optional[float] = ..., top_p: _Optional[float] = ..., max_tokens: _Optional[int] = ...) -> None: ...

class KnowledgeSettings(_message.Message):
    __slots__ = ("top_k", "min_score")
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    MIN_SCORE_FIELD_NUMBER: _ClassVar[int]
    top_k: int
    min_score: float
    def __init__(self, top_k: _Optional[int] = ..., min_score: _Optional[float] = ...) -> None: ...

class Guardrails(_message.Message):
    __slots__ = ("blocked_terms", "refusal_reply", "max_input_chars", "redact", "redact_patterns")
    BLOCKED_TERMS_FIELD_NUMBER: _ClassVar[int]
    REFUSAL_REPLY_FIELD_NUMBER: _ClassVar[int]
    MAX_INPUT_CHARS_FIELD_NUMBER: _ClassVar[int]
    REDACT_FIELD_NUMBER: _ClassVar[int]
    REDACT_PATTERNS_FIELD_NUMBER: _ClassVar[int]
    blocked_terms: _containers.RepeatedScalarFieldContainer[str]
    refusal_reply: str
    max_input_chars: int
    redact: _containers.RepeatedScalarFieldContainer[str]
    redact_patterns: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, blocked_terms: _Optional[_Iterable[str]] = ..., refusal_reply: _Optional[str] = ..., max_input_chars: _Optional[int] = ..., redact: _Optional[_Iterable[str]] = ..., redact_patterns: _Optional[_Iterable[str]] = ...) -> None: ...

class Tool(_message.Message):
    __slots__ = ("name", "description", "parameters_json", "webhook")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_JSON_FIELD_NUMBER: _ClassVar[int]
    WEBHOOK_FIELD_NUMBER: _ClassVar[int]
    name: str
    description: str
    parameters_json: str
    webhook: WebhookTool
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ..., parameters_json: _Optional[str] = ..., webhook: _Optional[_Union[WebhookTool, _Mapping]] = ...) -> None: ...

class WebhookTool(_message.Message):
    __slots__ = ("url", "timeout_ms", "secret_env")
    URL_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    SECRET_ENV_FIELD_NUMBER: _ClassVar[int]
    url: str
    timeout_ms: int
    secret_env: str
    def __init__(self, url: _Optional[str] = ..., timeout_ms: _Optional[int] = ..., secret_env: _Optional[str] = ...) -> None: ...

class AgentVersion(_message.Message):
    __slots__ = ("name", "version", "agent", "create_time")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    AGENT_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: int
    agent: Agent
    create_time: _timestamp_pb2.Timestamp
    def __init__(self, name: _Optional[str] = ..., version: _Optional[int] = ..., agent: _Optional[_Union[Agent, _Mapping]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class KnowledgeDocument(_message.Message):
    __slots__ = ("name", "id", "title", "content", "mime_type", "passage_count", "create_time", "source", "content_hash")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    MIME_TYPE_FIELD_NUMBER: _ClassVar[int]
    PASSAGE_COUNT_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    CONTENT_HASH_FIELD_NUMBER: _ClassVar[int]
    name: str
    id: str
    title: str
    content: str
    mime_type: str
    passage_count: int
    create_time: _timestamp_pb2.Timestamp
    source: str
    content_hash: str
    def __init__(self, name: _Optional[str] = ..., id: _Optional[str] = ..., title: _Optional[str] = ..., content: _Optional[str] = ..., mime_type: _Optional[str] = ..., passage_count: _Optional[int] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., source: _Optional[str] = ..., content_hash: _Optional[str] = ...) -> None: ...
