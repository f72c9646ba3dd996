from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ChunkUnit(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CHUNK_UNIT_UNSPECIFIED: _ClassVar[ChunkUnit]
    CHUNK_UNIT_TOKENS: _ClassVar[ChunkUnit]
    CHUNK_UNIT_CHARS: _ClassVar[ChunkUnit]

class Pooling(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    POOLING_UNSPECIFIED: _ClassVar[Pooling]
    POOLING_MEAN: _ClassVar[Pooling]
    POOLING_MAX: _ClassVar[Pooling]
    POOLING_FIRST: _ClassVar[Pooling]
    POOLING_LAST: _ClassVar[Pooling]
    POOLING_SUM: _ClassVar[Pooling]

class DType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DTYPE_UNSPECIFIED: _ClassVar[DType]
    DTYPE_FLOAT32: _ClassVar[DType]
    DTYPE_FLOAT16: _ClassVar[DType]
    DTYPE_BFLOAT16: _ClassVar[DType]

class Output(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OUTPUT_UNSPECIFIED: _ClassVar[Output]
    OUTPUT_TOKENS: _ClassVar[Output]
    OUTPUT_PIECES: _ClassVar[Output]
    OUTPUT_DOC_VECTOR: _ClassVar[Output]
    OUTPUT_CHUNK_VECTORS: _ClassVar[Output]
CHUNK_UNIT_UNSPECIFIED: ChunkUnit
CHUNK_UNIT_TOKENS: ChunkUnit
CHUNK_UNIT_CHARS: ChunkUnit
POOLING_UNSPECIFIED: Pooling
POOLING_MEAN: Pooling
POOLING_MAX: Pooling
POOLING_FIRST: Pooling
POOLING_LAST: Pooling
POOLING_SUM: Pooling
DTYPE_UNSPECIFIED: DType
DTYPE_FLOAT32: DType
DTYPE_FLOAT16: DType
DTYPE_BFLOAT16: DType
OUTPUT_UNSPECIFIED: Output
OUTPUT_TOKENS: Output
OUTPUT_PIECES: Output
OUTPUT_DOC_VECTOR: Output
OUTPUT_CHUNK_VECTORS: Output

class Doc(_message.Message):
    __slots__ = ("id", "words", "spaces", "text", "sent_starts", "lang", "chunk_starts", "chunk_ends", "chunk_unit")
    ID_FIELD_NUMBER: _ClassVar[int]
    WORDS_FIELD_NUMBER: _ClassVar[int]
    SPACES_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    SENT_STARTS_FIELD_NUMBER: _ClassVar[int]
    LANG_FIELD_NUMBER: _ClassVar[int]
    CHUNK_STARTS_FIELD_NUMBER: _ClassVar[int]
    CHUNK_ENDS_FIELD_NUMBER: _ClassVar[int]
    CHUNK_UNIT_FIELD_NUMBER: _ClassVar[int]
    id: str
    words: _containers.RepeatedScalarFieldContainer[str]
    spaces: _containers.RepeatedScalarFieldContainer[bool]
    text: str
    sent_starts: _containers.RepeatedScalarFieldContainer[bool]
    lang: str
    chunk_starts: _containers.RepeatedScalarFieldContainer[int]
    chunk_ends: _containers.RepeatedScalarFieldContainer[int]
    chunk_unit: ChunkUnit
    def __init__(self, id: _Optional[str] = ..., words: _Optional[_Iterable[str]] = ..., spaces: _Optional[_Iterable[bool]] = ..., text: _Optional[str] = ..., sent_starts: _Optional[_Iterable[bool]] = ..., lang: _Optional[str] = ..., chunk_starts: _Optional[_Iterable[int]] = ..., chunk_ends: _Optional[_Iterable[int]] = ..., chunk_unit: _Optional[_Union[ChunkUnit, str]] = ...) -> None: ...

class Spans(_message.Message):
    __slots__ = ("kind", "window", "stride")
    class Kind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        KIND_UNSPECIFIED: _ClassVar[Spans.Kind]
        KIND_DOC: _ClassVar[Spans.Kind]
        KIND_SENTS: _ClassVar[Spans.Kind]
        KIND_TOKENS: _ClassVar[Spans.Kind]
        KIND_PIECES: _ClassVar[Spans.Kind]
    KIND_UNSPECIFIED: Spans.Kind
    KIND_DOC: Spans.Kind
    KIND_SENTS: Spans.Kind
    KIND_TOKENS: Spans.Kind
    KIND_PIECES: Spans.Kind
    KIND_FIELD_NUMBER: _ClassVar[int]
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    STRIDE_FIELD_NUMBER: _ClassVar[int]
    kind: Spans.Kind
    window: int
    stride: int
    def __init__(self, kind: _Optional[_Union[Spans.Kind, str]] = ..., window: _Optional[int] = ..., stride: _Optional[int] = ...) -> None: ...

class EmbedOptions(_message.Message):
    __slots__ = ("model", "pooling", "spans", "dtype", "outputs", "hidden_layers", "more_poolings", "chunk_poolings")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    POOLING_FIELD_NUMBER: _ClassVar[int]
    SPANS_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    HIDDEN_LAYERS_FIELD_NUMBER: _ClassVar[int]
    MORE_POOLINGS_FIELD_NUMBER: _ClassVar[int]
    CHUNK_POOLINGS_FIELD_NUMBER: _ClassVar[int]
    model: str
    pooling: Pooling
    spans: Spans
    dtype: DType
    outputs: _containers.RepeatedScalarFieldContainer[Output]
    hidden_layers: _containers.RepeatedScalarFieldContainer[int]
    more_poolings: _containers.RepeatedScalarFieldContainer[Pooling]
    chunk_poolings: _containers.RepeatedScalarFieldContainer[Pooling]
    def __init__(self, model: _Optional[str] = ..., pooling: _Optional[_Union[Pooling, str]] = ..., spans: _Optional[_Union[Spans, _Mapping]] = ..., dtype: _Optional[_Union[DType, str]] = ..., outputs: _Optional[_Iterable[_Union[Output, str]]] = ..., hidden_layers: _Optional[_Iterable[int]] = ..., more_poolings: _Optional[_Iterable[_Union[Pooling, str]]] = ..., chunk_poolings: _Optional[_Iterable[_Union[Pooling, str]]] = ...) -> None: ...

class EmbedRequest(_message.Message):
    __slots__ = ("options", "docs")
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    DOCS_FIELD_NUMBER: _ClassVar[int]
    options: EmbedOptions
    docs: _containers.RepeatedCompositeFieldContainer[Doc]
    def __init__(self, options: _Optional[_Union[EmbedOptions, _Mapping]] = ..., docs: _Optional[_Iterable[_Union[Doc, _Mapping]]] = ...) -> None: ...

class EmbedStreamRequest(_message.Message):
    __slots__ = ("options", "docs")
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    DOCS_FIELD_NUMBER: _ClassVar[int]
    options: EmbedOptions
    docs: _containers.RepeatedCompositeFieldContainer[Doc]
    def __init__(self, options: _Optional[_Union[EmbedOptions, _Mapping]] = ..., docs: _Optional[_Iterable[_Union[Doc, _Mapping]]] = ...) -> None: ...

class Tensor(_message.Message):
    __slots__ = ("dtype", "shape", "data")
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    dtype: DType
    shape: _containers.RepeatedScalarFieldContainer[int]
    data: bytes
    def __init__(self, dtype: _Optional[_Union[DType, str]] = ..., shape: _Optional[_Iterable[int]] = ..., data: _Optional[bytes] = ...) -> None: ...

class Error(_message.Message):
    __slots__ = ("code", "message")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    code: int
    message: str
    def __init__(self, code: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...

class Pieces(_message.Message):
    __slots__ = ("hidden", "ids", "span_lengths", "span_token_starts", "span_token_ends", "align_lengths", "align_indices")
    HIDDEN_FIELD_NUMBER: _ClassVar[int]
    IDS_FIELD_NUMBER: _ClassVar[int]
    SPAN_LENGTHS_FIELD_NUMBER: _ClassVar[int]
    SPAN_TOKEN_STARTS_FIELD_NUMBER: _ClassVar[int]
    SPAN_TOKEN_ENDS_FIELD_NUMBER: _ClassVar[int]
    ALIGN_LENGTHS_FIELD_NUMBER: _ClassVar[int]
    ALIGN_INDICES_FIELD_NUMBER: _ClassVar[int]
    hidden: Tensor
    ids: _containers.RepeatedScalarFieldContainer[int]
    span_lengths: _containers.RepeatedScalarFieldContainer[int]
    span_token_starts: _containers.RepeatedScalarFieldContainer[int]
    span_token_ends: _containers.RepeatedScalarFieldContainer[int]
    align_lengths: _containers.RepeatedScalarFieldContainer[int]
    align_indices: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, hidden: _Optional[_Union[Tensor, _Mapping]] = ..., ids: _Optional[_Iterable[int]] = ..., span_lengths: _Optional[_Iterable[int]] = ..., span_token_starts: _Optional[_Iterable[int]] = ..., span_token_ends: _Optional[_Iterable[int]] = ..., align_lengths: _Optional[_Iterable[int]] = ..., align_indices: _Optional[_Iterable[int]] = ...) -> None: ...

class DocResult(_message.Message):
    __slots__ = ("index", "id", "error", "fingerprint", "n_tokens", "words", "spaces", "row_start", "tokens", "layers", "no_piece", "truncated", "pieces", "piece_start", "doc_vector", "more", "pooled", "chunk_vectors", "chunk_start", "chunk_no_piece")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    N_TOKENS_FIELD_NUMBER: _ClassVar[int]
    WORDS_FIELD_NUMBER: _ClassVar[int]
    SPACES_FIELD_NUMBER: _ClassVar[int]
    ROW_START_FIELD_NUMBER: _ClassVar[int]
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    LAYERS_FIELD_NUMBER: _ClassVar[int]
    NO_PIECE_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    PIECES_FIELD_NUMBER: _ClassVar[int]
    PIECE_START_FIELD_NUMBER: _ClassVar[int]
    DOC_VECTOR_FIELD_NUMBER: _ClassVar[int]
    MORE_FIELD_NUMBER: _ClassVar[int]
    POOLED_FIELD_NUMBER: _ClassVar[int]
    CHUNK_VECTORS_FIELD_NUMBER: _ClassVar[int]
    CHUNK_START_FIELD_NUMBER: _ClassVar[int]
    CHUNK_NO_PIECE_FIELD_NUMBER: _ClassVar[int]
    index: int
    id: str
    error: Error
    fingerprint: str
    n_tokens: int
    words: _containers.RepeatedScalarFieldContainer[str]
    spaces: _containers.RepeatedScalarFieldContainer[bool]
    row_start: int
    tokens: Tensor
    layers: _containers.RepeatedCompositeFieldContainer[Tensor]
    no_piece: _containers.RepeatedScalarFieldContainer[int]
    truncated: _containers.RepeatedScalarFieldContainer[int]
    pieces: Pieces
    piece_start: int
    doc_vector: Tensor
    more: bool
    pooled: _containers.RepeatedCompositeFieldContainer[Tensor]
    chunk_vectors: _containers.RepeatedCompositeFieldContainer[Tensor]
    chunk_start: int
    chunk_no_piece: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, index: _Optional[int] = ..., id: _Optional[str] = ..., error: _Optional[_Union[Error, _Mapping]] = ..., fingerprint: _Optional[str] = ..., n_tokens: _Optional[int] = ..., words: _Optional[_Iterable[str]] = ..., spaces: _Optional[_Iterable[bool]] = ..., row_start: _Optional[int] = ..., tokens: _Optional[_Union[Tensor, _Mapping]] = ..., layers: _Optional[_Iterable[_Union[Tensor, _Mapping]]] = ..., no_piece: _Optional[_Iterable[int]] = ..., truncated: _Optional[_Iterable[int]] = ..., pieces: _Optional[_Union[Pieces, _Mapping]] = ..., piece_start: _Optional[int] = ..., doc_vector: _Optional[_Union[Tensor, _Mapping]] = ..., more: bool = ..., pooled: _Optional[_Iterable[_Union[Tensor, _Mapping]]] = ..., chunk_vectors: _Optional[_Iterable[_Union[Tensor, _Mapping]]] = ..., chunk_start: _Optional[int] = ..., chunk_no_piece: _Optional[_Iterable[int]] = ...) -> None: ...

class EmbedResponse(_message.Message):
    __slots__ = ("result",)
    RESULT_FIELD_NUMBER: _ClassVar[int]
    result: DocResult
    def __init__(self, result: _Optional[_Union[DocResult, _Mapping]] = ...) -> None: ...

class EmbedStreamResponse(_message.Message):
    __slots__ = ("result",)
    RESULT_FIELD_NUMBER: _ClassVar[int]
    result: DocResult
    def __init__(self, result: _Optional[_Union[DocResult, _Mapping]] = ...) -> None: ...

class InfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ("name", "fingerprint", "width", "max_length", "backend", "device", "dtype", "n_layers", "is_default", "pipeline", "component")
    NAME_FIELD_NUMBER: _ClassVar[int]
    FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    MAX_LENGTH_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    N_LAYERS_FIELD_NUMBER: _ClassVar[int]
    IS_DEFAULT_FIELD_NUMBER: _ClassVar[int]
    PIPELINE_FIELD_NUMBER: _ClassVar[int]
    COMPONENT_FIELD_NUMBER: _ClassVar[int]
    name: str
    fingerprint: str
    width: int
    max_length: int
    backend: str
    device: str
    dtype: DType
    n_layers: int
    is_default: bool
    pipeline: str
    component: str
    def __init__(self, name: _Optional[str] = ..., fingerprint: _Optional[str] = ..., width: _Optional[int] = ..., max_length: _Optional[int] = ..., backend: _Optional[str] = ..., device: _Optional[str] = ..., dtype: _Optional[_Union[DType, str]] = ..., n_layers: _Optional[int] = ..., is_default: bool = ..., pipeline: _Optional[str] = ..., component: _Optional[str] = ...) -> None: ...

class Limits(_message.Message):
    __slots__ = ("max_docs_per_request", "max_tokens_per_doc", "max_chars_per_doc", "max_message_bytes", "max_batch_items", "max_wait_ms", "max_in_flight_per_stream", "rearrival_ms", "max_queued_docs", "max_queued_pieces")
    MAX_DOCS_PER_REQUEST_FIELD_NUMBER: _ClassVar[int]
    MAX_TOKENS_PER_DOC_FIELD_NUMBER: _ClassVar[int]
    MAX_CHARS_PER_DOC_FIELD_NUMBER: _ClassVar[int]
    MAX_MESSAGE_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_BATCH_ITEMS_FIELD_NUMBER: _ClassVar[int]
    MAX_WAIT_MS_FIELD_NUMBER: _ClassVar[int]
    MAX_IN_FLIGHT_PER_STREAM_FIELD_NUMBER: _ClassVar[int]
    REARRIVAL_MS_FIELD_NUMBER: _ClassVar[int]
    MAX_QUEUED_DOCS_FIELD_NUMBER: _ClassVar[int]
    MAX_QUEUED_PIECES_FIELD_NUMBER: _ClassVar[int]
    max_docs_per_request: int
    max_tokens_per_doc: int
    max_chars_per_doc: int
    max_message_bytes: int
    max_batch_items: int
    max_wait_ms: int
    max_in_flight_per_stream: int
    rearrival_ms: int
    max_queued_docs: int
    max_queued_pieces: int
    def __init__(self, max_docs_per_request: _Optional[int] = ..., max_tokens_per_doc: _Optional[int] = ..., max_chars_per_doc: _Optional[int] = ..., max_message_bytes: _Optional[int] = ..., max_batch_items: _Optional[int] = ..., max_wait_ms: _Optional[int] = ..., max_in_flight_per_stream: _Optional[int] = ..., rearrival_ms: _Optional[int] = ..., max_queued_docs: _Optional[int] = ..., max_queued_pieces: _Optional[int] = ...) -> None: ...

class InfoResponse(_message.Message):
    __slots__ = ("version", "models", "limits")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    version: str
    models: _containers.RepeatedCompositeFieldContainer[ModelInfo]
    limits: Limits
    def __init__(self, version: _Optional[str] = ..., models: _Optional[_Iterable[_Union[ModelInfo, _Mapping]]] = ..., limits: _Optional[_Union[Limits, _Mapping]] = ...) -> None: ...

class TokenizeRequest(_message.Message):
    __slots__ = ("model", "spans", "docs")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    SPANS_FIELD_NUMBER: _ClassVar[int]
    DOCS_FIELD_NUMBER: _ClassVar[int]
    model: str
    spans: Spans
    docs: _containers.RepeatedCompositeFieldContainer[Doc]
    def __init__(self, model: _Optional[str] = ..., spans: _Optional[_Union[Spans, _Mapping]] = ..., docs: _Optional[_Iterable[_Union[Doc, _Mapping]]] = ...) -> None: ...

class SpanPieces(_message.Message):
    __slots__ = ("token_start", "token_end", "pieces", "ids", "char_starts", "char_ends")
    TOKEN_START_FIELD_NUMBER: _ClassVar[int]
    TOKEN_END_FIELD_NUMBER: _ClassVar[int]
    PIECES_FIELD_NUMBER: _ClassVar[int]
    IDS_FIELD_NUMBER: _ClassVar[int]
    CHAR_STARTS_FIELD_NUMBER: _ClassVar[int]
    CHAR_ENDS_FIELD_NUMBER: _ClassVar[int]
    token_start: int
    token_end: int
    pieces: _containers.RepeatedScalarFieldContainer[str]
    ids: _containers.RepeatedScalarFieldContainer[int]
    char_starts: _containers.RepeatedScalarFieldContainer[int]
    char_ends: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, token_start: _Optional[int] = ..., token_end: _Optional[int] = ..., pieces: _Optional[_Iterable[str]] = ..., ids: _Optional[_Iterable[int]] = ..., char_starts: _Optional[_Iterable[int]] = ..., char_ends: _Optional[_Iterable[int]] = ...) -> None: ...

class TokenizedDoc(_message.Message):
    __slots__ = ("id", "error", "words", "spaces", "spans", "align_lengths", "align_indices", "no_piece", "truncated")
    ID_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    WORDS_FIELD_NUMBER: _ClassVar[int]
    SPACES_FIELD_NUMBER: _ClassVar[int]
    SPANS_FIELD_NUMBER: _ClassVar[int]
    ALIGN_LENGTHS_FIELD_NUMBER: _ClassVar[int]
    ALIGN_INDICES_FIELD_NUMBER: _ClassVar[int]
    NO_PIECE_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    id: str
    error: Error
    words: _containers.RepeatedScalarFieldContainer[str]
    spaces: _containers.RepeatedScalarFieldContainer[bool]
    spans: _containers.RepeatedCompositeFieldContainer[SpanPieces]
    align_lengths: _containers.RepeatedScalarFieldContainer[int]
    align_indices: _containers.RepeatedScalarFieldContainer[int]
    no_piece: _containers.RepeatedScalarFieldContainer[int]
    truncated: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, id: _Optional[str] = ..., error: _Optional[_Union[Error, _Mapping]] = ..., words: _Optional[_Iterable[str]] = ..., spaces: _Optional[_Iterable[bool]] = ..., spans: _Optional[_Iterable[_Union[SpanPieces, _Mapping]]] = ..., align_lengths: _Optional[_Iterable[int]] = ..., align_indices: _Optional[_Iterable[int]] = ..., no_piece: _Optional[_Iterable[int]] = ..., truncated: _Optional[_Iterable[int]] = ...) -> None: ...

class TokenizeResponse(_message.Message):
    __slots__ = ("docs",)
    DOCS_FIELD_NUMBER: _ClassVar[int]
    docs: _containers.RepeatedCompositeFieldContainer[TokenizedDoc]
    def __init__(self, docs: _Optional[_Iterable[_Union[TokenizedDoc, _Mapping]]] = ...) -> None: ...
