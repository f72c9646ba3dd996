from tokvec.v1 import tokvec_pb2 as _tokvec_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Oov(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OOV_UNSPECIFIED: _ClassVar[Oov]
    OOV_ZERO: _ClassVar[Oov]
    OOV_ERROR: _ClassVar[Oov]
OOV_UNSPECIFIED: Oov
OOV_ZERO: Oov
OOV_ERROR: Oov

class VectorsInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class VectorsInfoResponse(_message.Message):
    __slots__ = ("name", "fingerprint", "mode", "n_rows", "width", "n_keys", "attr", "device")
    NAME_FIELD_NUMBER: _ClassVar[int]
    FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    N_ROWS_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    N_KEYS_FIELD_NUMBER: _ClassVar[int]
    ATTR_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    name: str
    fingerprint: str
    mode: str
    n_rows: int
    width: int
    n_keys: int
    attr: str
    device: str
    def __init__(self, name: _Optional[str] = ..., fingerprint: _Optional[str] = ..., mode: _Optional[str] = ..., n_rows: _Optional[int] = ..., width: _Optional[int] = ..., n_keys: _Optional[int] = ..., attr: _Optional[str] = ..., device: _Optional[str] = ...) -> None: ...

class LookupRequest(_message.Message):
    __slots__ = ("docs", "oov", "dtype")
    DOCS_FIELD_NUMBER: _ClassVar[int]
    OOV_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    docs: _containers.RepeatedCompositeFieldContainer[_tokvec_pb2.Doc]
    oov: Oov
    dtype: _tokvec_pb2.DType
    def __init__(self, docs: _Optional[_Iterable[_Union[_tokvec_pb2.Doc, _Mapping]]] = ..., oov: _Optional[_Union[Oov, str]] = ..., dtype: _Optional[_Union[_tokvec_pb2.DType, str]] = ...) -> None: ...

class TokenVectors(_message.Message):
    __slots__ = ("index", "id", "error", "fingerprint", "n_tokens", "words", "spaces", "row_start", "vectors", "oov", "doc_vector", "more")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    N_TOKENS_FIELD_NUMBER: _ClassVar[int]
    WORDS_FIELD_NUMBER: _ClassVar[int]
    SPACES_FIELD_NUMBER: _ClassVar[int]
    ROW_START_FIELD_NUMBER: _ClassVar[int]
    VECTORS_FIELD_NUMBER: _ClassVar[int]
    OOV_FIELD_NUMBER: _ClassVar[int]
    DOC_VECTOR_FIELD_NUMBER: _ClassVar[int]
    MORE_FIELD_NUMBER: _ClassVar[int]
    index: int
    id: str
    error: _tokvec_pb2.Error
    fingerprint: str
    n_tokens: int
    words: _containers.RepeatedScalarFieldContainer[str]
    spaces: _containers.RepeatedScalarFieldContainer[bool]
    row_start: int
    vectors: _tokvec_pb2.Tensor
    oov: _containers.RepeatedScalarFieldContainer[int]
    doc_vector: _tokvec_pb2.Tensor
    more: bool
    def __init__(self, index: _Optional[int] = ..., id: _Optional[str] = ..., error: _Optional[_Union[_tokvec_pb2.Error, _Mapping]] = ..., fingerprint: _Optional[str] = ..., n_tokens: _Optional[int] = ..., words: _Optional[_Iterable[str]] = ..., spaces: _Optional[_Iterable[bool]] = ..., row_start: _Optional[int] = ..., vectors: _Optional[_Union[_tokvec_pb2.Tensor, _Mapping]] = ..., oov: _Optional[_Iterable[int]] = ..., doc_vector: _Optional[_Union[_tokvec_pb2.Tensor, _Mapping]] = ..., more: bool = ...) -> None: ...

class LookupResponse(_message.Message):
    __slots__ = ("result",)
    RESULT_FIELD_NUMBER: _ClassVar[int]
    result: TokenVectors
    def __init__(self, result: _Optional[_Union[TokenVectors, _Mapping]] = ...) -> None: ...

class Item(_message.Message):
    __slots__ = ("doc", "kind", "start", "end")
    class Kind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        KIND_UNSPECIFIED: _ClassVar[Item.Kind]
        KIND_DOC: _ClassVar[Item.Kind]
        KIND_TOKEN: _ClassVar[Item.Kind]
        KIND_SPAN: _ClassVar[Item.Kind]
    KIND_UNSPECIFIED: Item.Kind
    KIND_DOC: Item.Kind
    KIND_TOKEN: Item.Kind
    KIND_SPAN: Item.Kind
    DOC_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    doc: int
    kind: Item.Kind
    start: int
    end: int
    def __init__(self, doc: _Optional[int] = ..., kind: _Optional[_Union[Item.Kind, str]] = ..., start: _Optional[int] = ..., end: _Optional[int] = ...) -> None: ...

class Pair(_message.Message):
    __slots__ = ("a", "b")
    A_FIELD_NUMBER: _ClassVar[int]
    B_FIELD_NUMBER: _ClassVar[int]
    a: Item
    b: Item
    def __init__(self, a: _Optional[_Union[Item, _Mapping]] = ..., b: _Optional[_Union[Item, _Mapping]] = ...) -> None: ...

class SimilarityRequest(_message.Message):
    __slots__ = ("docs", "pairs")
    DOCS_FIELD_NUMBER: _ClassVar[int]
    PAIRS_FIELD_NUMBER: _ClassVar[int]
    docs: _containers.RepeatedCompositeFieldContainer[_tokvec_pb2.Doc]
    pairs: _containers.RepeatedCompositeFieldContainer[Pair]
    def __init__(self, docs: _Optional[_Iterable[_Union[_tokvec_pb2.Doc, _Mapping]]] = ..., pairs: _Optional[_Iterable[_Union[Pair, _Mapping]]] = ...) -> None: ...

class SimilarityResponse(_message.Message):
    __slots__ = ("scores", "no_vector", "docs")
    SCORES_FIELD_NUMBER: _ClassVar[int]
    NO_VECTOR_FIELD_NUMBER: _ClassVar[int]
    DOCS_FIELD_NUMBER: _ClassVar[int]
    scores: _containers.RepeatedScalarFieldContainer[float]
    no_vector: _containers.RepeatedScalarFieldContainer[int]
    docs: _containers.RepeatedCompositeFieldContainer[TokenizedWords]
    def __init__(self, scores: _Optional[_Iterable[float]] = ..., no_vector: _Optional[_Iterable[int]] = ..., docs: _Optional[_Iterable[_Union[TokenizedWords, _Mapping]]] = ...) -> None: ...

class TokenizedWords(_message.Message):
    __slots__ = ("words",)
    WORDS_FIELD_NUMBER: _ClassVar[int]
    words: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, words: _Optional[_Iterable[str]] = ...) -> None: ...

class MostSimilarRequest(_message.Message):
    __slots__ = ("words", "vectors", "n", "oov")
    WORDS_FIELD_NUMBER: _ClassVar[int]
    VECTORS_FIELD_NUMBER: _ClassVar[int]
    N_FIELD_NUMBER: _ClassVar[int]
    OOV_FIELD_NUMBER: _ClassVar[int]
    words: _containers.RepeatedScalarFieldContainer[str]
    vectors: _tokvec_pb2.Tensor
    n: int
    oov: Oov
    def __init__(self, words: _Optional[_Iterable[str]] = ..., vectors: _Optional[_Union[_tokvec_pb2.Tensor, _Mapping]] = ..., n: _Optional[int] = ..., oov: _Optional[_Union[Oov, str]] = ...) -> None: ...

class Neighbours(_message.Message):
    __slots__ = ("error", "oov", "keys", "words", "rows", "scores")
    ERROR_FIELD_NUMBER: _ClassVar[int]
    OOV_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    WORDS_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    SCORES_FIELD_NUMBER: _ClassVar[int]
    error: _tokvec_pb2.Error
    oov: bool
    keys: _containers.RepeatedScalarFieldContainer[int]
    words: _containers.RepeatedScalarFieldContainer[str]
    rows: _containers.RepeatedScalarFieldContainer[int]
    scores: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, error: _Optional[_Union[_tokvec_pb2.Error, _Mapping]] = ..., oov: bool = ..., keys: _Optional[_Iterable[int]] = ..., words: _Optional[_Iterable[str]] = ..., rows: _Optional[_Iterable[int]] = ..., scores: _Optional[_Iterable[float]] = ...) -> None: ...

class MostSimilarResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[Neighbours]
    def __init__(self, results: _Optional[_Iterable[_Union[Neighbours, _Mapping]]] = ...) -> None: ...
