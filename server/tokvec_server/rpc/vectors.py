"""The VectorsService servicer: lookups, similarities and nearest neighbours over one static table.

Table work runs in one thread of its own, never on the event loop. Without ``--vectors`` every
call answers FAILED_PRECONDITION saying how to serve a table.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import grpc
import numpy as np

from tokvec.v1 import vectors_pb2 as vpb
from tokvec_server import validation
from tokvec_server.errors import (
    InvalidInput,
    NotRankable,
    NotReady,
    NoVector,
    NoVectorsServed,
    TokvecError,
    limit_error,
)
from tokvec_server.rpc import vectors_convert as convert
from tokvec_server.rpc.convert import doc as doc_input
from tokvec_server.rpc.handlers import guard
from tokvec_server.runners.base import resolve_device
from tokvec_server.settings import Limits
from tokvec_server.types import DocInput, Tokens
from tokvec_server.vectors.neighbours import NearestRows
from tokvec_server.vectors.similarity import DocVectors, check_item, score
from tokvec_server.vectors.table import VectorTable

T = TypeVar("T")
PAIRS_PER_DOC = 64  # Similarity: at most this many pairs per allowed doc of a request

Looked = tuple[Tokens, np.ndarray, np.ndarray] | TokvecError


class VectorsService:
    def __init__(
        self, table: VectorTable | None, limits: Limits, words: validation.SpacyWords, device: str = "auto"
    ) -> None:
        self.table = table
        self.limits = limits
        self.words = words
        self.device = resolve_device(device) if table is not None else None
        # Only a default-mode table has word rows to rank; floret hashes n-grams into its rows.
        self.nearest = (
            NearestRows(table.vectors, self.device)
            if table is not None and table.mode == "default" and self.device
            else None
        )
        self.ready = False
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tokvec-vectors")

    @classmethod
    def load(cls, source: str, limits: Limits, words: validation.SpacyWords) -> VectorsService:
        return cls(VectorTable.load(source) if source else None, limits, words)

    def stop(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _served(self) -> VectorTable:
        if self.table is None:
            raise NoVectorsServed(
                "no vectors table is served: start the server with --vectors PATH (a folder made by tokvec init-vectors)"
            )
        if not self.ready:
            raise NotReady("the server is not ready (loading or draining)")
        return self.table

    def _off_loop(self, fn: Callable[..., T], *args: Any) -> Awaitable[T]:
        return asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    @guard
    async def VectorsInfo(
        self, request: vpb.VectorsInfoRequest, context: grpc.aio.ServicerContext
    ) -> vpb.VectorsInfoResponse:
        return convert.info(self._served(), str(self.device))

    @guard
    async def Lookup(
        self, request: vpb.LookupRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[vpb.LookupResponse]:
        table = self._served()
        policy, kind = convert.oov(request.oov), convert.dtype(request.dtype)
        validation.check_request(len(request.docs), self.limits)
        docs = [doc_input(d) for d in request.docs]
        for i, item in enumerate(await self._off_loop(self._lookup, table, docs, policy)):
            if isinstance(item, TokvecError):
                yield vpb.LookupResponse(result=convert.error(i, docs[i].id, item))
                continue
            for msg in convert.token_vectors(i, *item, table.fingerprint, kind):
                yield vpb.LookupResponse(result=msg)

    def _lookup(self, table: VectorTable, docs: list[DocInput], policy: str) -> list[Looked]:
        out: list[Looked] = []
        for i, doc in enumerate(docs):
            try:
                tokens = validation.check_doc(doc, i, self.limits, self.words, need_sents=False)
                vectors, missing = table.lookup(tokens.words)
                if policy == "error" and len(missing):
                    k = int(missing[0])
                    raise NoVector(
                        f"docs[{i}].words[{k}]: {tokens.words[k][:50]!r} has no vector ({len(missing)} such tokens; oov = OOV_ERROR)"
                    )
                out.append((tokens, vectors, missing))
            except TokvecError as exc:
                out.append(exc)
        return out

    @guard
    async def Similarity(
        self, request: vpb.SimilarityRequest, context: grpc.aio.ServicerContext
    ) -> vpb.SimilarityResponse:
        table = self._served()
        validation.check_request(len(request.docs), self.limits)
        limit = PAIRS_PER_DOC * self.limits.max_docs_per_request
        if len(request.pairs) > limit:
            raise limit_error("pairs", len(request.pairs), f"{PAIRS_PER_DOC} x max_docs_per_request", limit)
        docs = [doc_input(d) for d in request.docs]
        pairs = [
            (convert.item(p.a, f"pairs[{i}].a"), convert.item(p.b, f"pairs[{i}].b"))
            for i, p in enumerate(request.pairs)
        ]
        return await self._off_loop(self._similarity, table, docs, pairs)

    def _similarity(self, table: VectorTable, docs: list[DocInput], pairs: list[Any]) -> vpb.SimilarityResponse:
        # A bad doc or item fails the call, naming the field: every score depends on the docs.
        checked = [
            validation.check_doc(doc, i, self.limits, self.words, need_sents=False) for i, doc in enumerate(docs)
        ]
        vectors = [DocVectors(table.keys(t.words), table.lookup(t.words)[0]) for t in checked]
        response = vpb.SimilarityResponse(docs=[vpb.TokenizedWords(words=t.words) for t in checked])
        for i, (a, b) in enumerate(pairs):
            check_item(a, f"pairs[{i}].a", vectors)
            check_item(b, f"pairs[{i}].b", vectors)
            value, zero = score(a, b, vectors)
            response.scores.append(value)
            if zero:
                response.no_vector.append(i)
        return response

    @guard
    async def MostSimilar(
        self, request: vpb.MostSimilarRequest, context: grpc.aio.ServicerContext
    ) -> vpb.MostSimilarResponse:
        table = self._served()
        if self.nearest is None:
            raise NotRankable(
                "most_similar: the served table is floret-hashed; it has no word rows to rank (spaCy's Vectors.most_similar refuses it too)"
            )
        policy = convert.oov(request.oov)
        vectors = convert.queries(request.vectors, table.width)
        n_queries = len(request.words) + len(vectors)
        if n_queries > self.limits.max_docs_per_request:
            raise limit_error(
                "queries (words + vectors)", n_queries, "max_docs_per_request", self.limits.max_docs_per_request
            )
        if not 1 <= request.n <= self.nearest.size:
            raise InvalidInput(f"n: {request.n} is not within [1, {self.nearest.size}] (the table's rows with a key)")
        return await self._off_loop(self._most_similar, table, list(request.words), vectors, request.n, policy)

    def _most_similar(
        self, table: VectorTable, words: list[str], vectors: np.ndarray, n: int, policy: str
    ) -> vpb.MostSimilarResponse:
        assert self.nearest is not None
        found, missing = table.lookup(words)
        rows, scores = self.nearest.search(np.concatenate([found, vectors]), n)
        response = vpb.MostSimilarResponse()
        oov = set(missing.tolist())
        for q in range(len(rows)):
            if q in oov and policy == "error":
                response.results.append(
                    convert.query_error(NoVector(f"words[{q}]: {words[q][:50]!r} has no vector (oov = OOV_ERROR)"))
                )
                continue
            response.results.append(convert.neighbours(table, rows[q], scores[q], self.nearest.row_key, q in oov))
        return response
