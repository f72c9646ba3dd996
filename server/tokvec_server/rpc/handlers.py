"""Method handlers whose deserializers never raise: a corrupt message or invalid UTF-8 becomes a
``Malformed`` value that the servicer answers INVALID_ARGUMENT (grpc would say INTERNAL)."""

from __future__ import annotations

from typing import Any, Callable

import grpc

from tokvec.v1 import tokvec_pb2 as pb
from tokvec_server.errors import InvalidInput

SERVICE = "tokvec.v1.EmbedService"


class Malformed:
    def __init__(self, kind: str) -> None:
        self.error = InvalidInput(f"request: not a valid {kind} message (corrupt protobuf or invalid UTF-8)")


def _lenient(message: Any) -> Callable[[bytes], Any]:
    def parse(data: bytes) -> Any:
        try:
            return message.FromString(data)
        except Exception:  # DecodeError, and anything else the parser raises on hostile bytes
            return Malformed(message.DESCRIPTOR.name)

    return parse


def add_embed_service(servicer: Any, server: grpc.aio.Server) -> None:
    handlers = {
        "Embed": grpc.unary_stream_rpc_method_handler(servicer.Embed, _lenient(pb.EmbedRequest), pb.EmbedResponse.SerializeToString),
        "EmbedStream": grpc.stream_stream_rpc_method_handler(servicer.EmbedStream, _lenient(pb.EmbedStreamRequest), pb.EmbedStreamResponse.SerializeToString),
        "Info": grpc.unary_unary_rpc_method_handler(servicer.Info, _lenient(pb.InfoRequest), pb.InfoResponse.SerializeToString),
        "Tokenize": grpc.unary_unary_rpc_method_handler(servicer.Tokenize, _lenient(pb.TokenizeRequest), pb.TokenizeResponse.SerializeToString),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
