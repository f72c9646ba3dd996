// The decoding rules proto/tokvec/v1/tokvec.proto states for Tensor.data, on hand-made bytes.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const { decodeTensor, halfToFloat, bfloat16ToFloat, assemble, load } = require('../tokvec');

/** `bytes` placed at `offset` inside a larger buffer, as protobuf libraries hand them out. */
function at(offset, bytes) {
  const backing = Buffer.alloc(offset + bytes.length + 3);
  Buffer.from(bytes).copy(backing, offset);
  return backing.subarray(offset, offset + bytes.length);
}

test('float32 rows decode little-endian at any offset', () => {
  const le = Buffer.alloc(8);
  le.writeFloatLE(1.5, 0);
  le.writeFloatLE(-0.25, 4);
  for (const offset of [0, 1, 2, 3]) {
    const { shape, values } = decodeTensor({ dtype: 'DTYPE_FLOAT32', shape: [1, 2], data: at(offset, le) });
    assert.deepEqual(shape, [1, 2]);
    assert.deepEqual(Array.from(values), [1.5, -0.25]);
  }
});

test('DTYPE_UNSPECIFIED is float32', () => {
  const le = Buffer.alloc(4);
  le.writeFloatLE(3, 0);
  assert.deepEqual(Array.from(decodeTensor({ dtype: 'DTYPE_UNSPECIFIED', shape: [1], data: le }).values), [3]);
});

test('float16: normal, subnormal, largest, infinities and NaN', () => {
  assert.equal(halfToFloat(0x3c00), 1);
  assert.equal(halfToFloat(0xc000), -2);
  assert.equal(halfToFloat(0x3555), 0.333251953125);
  assert.equal(halfToFloat(0x0001), 2 ** -24);
  assert.equal(halfToFloat(0x03ff), 1023 * 2 ** -24);
  assert.equal(halfToFloat(0x7bff), 65504);
  assert.equal(halfToFloat(0x7c00), Infinity);
  assert.equal(halfToFloat(0xfc00), -Infinity);
  assert.ok(Number.isNaN(halfToFloat(0x7e00)));
  assert.ok(Object.is(halfToFloat(0x8000), -0));
  const { values } = decodeTensor({ dtype: 'DTYPE_FLOAT16', shape: [2], data: at(1, [0x00, 0x3c, 0x00, 0xc0]) });
  assert.deepEqual(Array.from(values), [1, -2]);
});

test('bfloat16 is the upper half of a float32', () => {
  assert.equal(bfloat16ToFloat(0x3f80), 1);
  assert.equal(bfloat16ToFloat(0xc040), -3);
  assert.equal(bfloat16ToFloat(0x3eab), 0.333984375);
  assert.equal(bfloat16ToFloat(0xff80), -Infinity);
  const { values } = decodeTensor({ dtype: 'DTYPE_BFLOAT16', shape: [2], data: at(3, [0x80, 0x3f, 0x40, 0xc0]) });
  assert.deepEqual(Array.from(values), [1, -3]);
});

test('a tensor whose bytes do not fit its shape is refused', () => {
  assert.throws(() => decodeTensor({ dtype: 'DTYPE_FLOAT32', shape: [2, 2], data: Buffer.alloc(12) }), /12 bytes for shape \[2,2\]/);
});

test('chunks join in order; first-chunk fields come from the first', () => {
  const rows = (values) => {
    const data = Buffer.alloc(4 * values.length);
    values.forEach((v, i) => data.writeFloatLE(v, 4 * i));
    return { dtype: 'DTYPE_FLOAT32', shape: [values.length / 2, 2], data };
  };
  const first = { index: '7', id: 'd', error: null, fingerprint: 'f-2', tokens: rows([1, 2, 3, 4]), no_piece: [1], truncated: [], words: [], more: true };
  const last = { index: '7', id: 'd', error: null, fingerprint: 'f-2', tokens: rows([5, 6]), no_piece: [], truncated: [], words: [], more: false };
  const result = assemble([first, last]);
  assert.equal(result.index, 7);
  assert.deepEqual(result.rows.shape, [3, 2]);
  assert.deepEqual(Array.from(result.rows.values), [1, 2, 3, 4, 5, 6]);
  assert.deepEqual(result.noPiece, [1]);
  const failed = assemble([{ index: '2', id: 'x', error: { code: 3, message: 'docs[2].spaces: 1 values for 2 words' }, more: false }]);
  assert.deepEqual(failed, { index: 2, id: 'x', error: { code: 3, message: 'docs[2].spaces: 1 values for 2 words' } });
});

test('the proto loads with both services', () => {
  const v1 = load();
  assert.equal(typeof v1.EmbedService, 'function');
  assert.equal(typeof v1.VectorsService, 'function');
});
