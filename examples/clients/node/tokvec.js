// A tokvec client for Node, built from proto/ alone: @grpc/proto-loader reads the .proto files at
// run time, @grpc/grpc-js talks to the server. No generated code, no tokvec package.
'use strict';

const path = require('node:path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const PROTO_ROOT = path.resolve(__dirname, '..', '..', '..', 'proto');

// keepCase: the proto's snake_case names (row_start, no_piece); longs as strings: uint64 index
// would lose precision past 2^53 as a number; enums as their names; defaults filled in.
const LOADER_OPTIONS = { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true, includeDirs: [PROTO_ROOT] };

/** The tokvec.v1 package: EmbedService and VectorsService client constructors, among others. */
function load(protoRoot = PROTO_ROOT) {
  const files = ['tokvec/v1/tokvec.proto', 'tokvec/v1/vectors.proto'];
  const definition = protoLoader.loadSync(files, { ...LOADER_OPTIONS, includeDirs: [protoRoot] });
  return grpc.loadPackageDefinition(definition).tokvec.v1;
}

const scratch = new DataView(new ArrayBuffer(4));

/** IEEE 754 binary16 bits to a number (subnormals, infinities and NaN included). */
function halfToFloat(bits) {
  const sign = bits & 0x8000 ? -1 : 1;
  const exponent = (bits >> 10) & 0x1f;
  const fraction = bits & 0x3ff;
  if (exponent === 0) return sign * fraction * 2 ** -24;
  if (exponent === 0x1f) return fraction ? NaN : sign * Infinity;
  return sign * (1 + fraction / 1024) * 2 ** (exponent - 15);
}

/** bfloat16 bits are the upper half of a float32's. */
function bfloat16ToFloat(bits) {
  scratch.setUint32(0, bits << 16, true);
  return scratch.getFloat32(0, true);
}

/**
 * Tensor.data as a Float32Array (values in row-major order) and its shape.
 * The bytes are little-endian and may sit at any offset of the received buffer (a Float32Array
 * view over them throws for offsets that are not a multiple of 4), so they are read through a
 * DataView with explicit little-endian reads.
 */
function decodeTensor(tensor) {
  const shape = tensor.shape.map(Number);
  const count = shape.reduce((a, b) => a * b, 1);
  const data = tensor.data;
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const out = new Float32Array(count);
  const dtype = tensor.dtype === 'DTYPE_UNSPECIFIED' ? 'DTYPE_FLOAT32' : tensor.dtype;
  const size = dtype === 'DTYPE_FLOAT32' ? 4 : 2;
  if (data.byteLength !== count * size) {
    throw new Error(`Tensor.data: ${data.byteLength} bytes for shape [${shape}] in ${dtype}`);
  }
  for (let i = 0; i < count; i++) {
    if (dtype === 'DTYPE_FLOAT32') out[i] = view.getFloat32(4 * i, true);
    else if (dtype === 'DTYPE_FLOAT16') out[i] = halfToFloat(view.getUint16(2 * i, true));
    else if (dtype === 'DTYPE_BFLOAT16') out[i] = bfloat16ToFloat(view.getUint16(2 * i, true));
    else throw new Error(`Tensor.dtype: ${dtype} is not known to this client`);
  }
  return { shape, values: out };
}

/** Row tensors of one doc's chunks, joined: {shape: [rows, width], values}. */
function joinRows(tensors, width) {
  const parts = tensors.filter((t) => t).map(decodeTensor);
  const rows = parts.reduce((n, p) => n + p.shape[0], 0);
  const values = new Float32Array(rows * width);
  let offset = 0;
  for (const part of parts) {
    values.set(part.values, offset);
    offset += part.values.length;
  }
  return { shape: [rows, width], values };
}

/**
 * One doc's chunks (DocResults, `more` set on all but the last) as one result: row tensors are
 * concatenated in arrival order; everything else comes from the first chunk.
 */
function assemble(chunks) {
  const first = chunks[0];
  const result = { index: Number(first.index), id: first.id };
  if (first.error) {
    result.error = { code: first.error.code, message: first.error.message };
    return result;
  }
  const width = first.tokens ? Number(first.tokens.shape[1]) : 0;
  result.fingerprint = first.fingerprint;
  result.rows = joinRows(chunks.map((c) => c.tokens), width);
  result.noPiece = first.no_piece;
  result.truncated = first.truncated;
  if (first.words.length) result.words = first.words; // a text doc: the server's tokens
  return result;
}

/** Calls onResult once per doc as its last chunk arrives; returns the per-chunk handler. */
function collector(onResult) {
  let chunks = [];
  return (response) => {
    chunks.push(response.result);
    if (!response.result.more) {
      onResult(assemble(chunks));
      chunks = [];
    }
  };
}

/** Embed: one request, results in request order. Resolves to an array of results. */
function embed(client, docs, options = {}, deadlineSeconds = 120) {
  return new Promise((resolve, reject) => {
    const results = [];
    const deadline = new Date(Date.now() + deadlineSeconds * 1000);
    const call = client.Embed({ docs, options }, { deadline });
    call.on('data', collector((r) => results.push(r)));
    call.on('error', reject);
    call.on('end', () => resolve(results));
  });
}

/** EmbedStream: docs sent in messages of batchSize, results in the order the docs were sent. */
function embedStream(client, docs, options = {}, batchSize = 16) {
  return new Promise((resolve, reject) => {
    const results = [];
    const call = client.EmbedStream();
    call.on('data', collector((r) => results.push(r)));
    call.on('error', reject);
    call.on('end', () => resolve(results));
    for (let i = 0; i < docs.length; i += batchSize) {
      call.write({ options, docs: docs.slice(i, i + batchSize) }); // each message carries its options
    }
    call.end();
  });
}

module.exports = { PROTO_ROOT, load, decodeTensor, halfToFloat, bfloat16ToFloat, assemble, embed, embedStream, grpc };
