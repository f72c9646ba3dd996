#!/usr/bin/env node
// Embed a few docs (or a JSONL file of them) with a tokvec server and print each doc's shape.
//
//   node embed.js [--server 127.0.0.1:50051] [--dtype float32|float16|bfloat16] [--stream] [--json] [docs.jsonl]
//
// docs.jsonl: one {"id", "words", "spaces"} or {"id", "text"} per line; "spaces" may be left out
// (a space after every word, as in spaCy). --json prints one line per doc with its rows as base64
// float32 little-endian bytes (what the test suite compares with the Python client's rows).
'use strict';

const fs = require('node:fs');
const tokvec = require('./tokvec');

const EXAMPLE_DOCS = [
  { id: 'words', words: ['Hello', 'world', '!'], spaces: [true, false, false] },
  { id: 'no-spaces-given', words: ['Shared', 'embeddings', 'for', 'every', 'pipeline'] },
  { id: 'text', text: "I can't go to New York." },
  { id: 'bad', words: ['a', 'b'], spaces: [true] }, // fails alone, in-band; the others succeed
];

function parseArgs(argv) {
  const args = { server: '127.0.0.1:50051', dtype: 'float32', stream: false, json: false, file: null };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--server') args.server = argv[++i];
    else if (arg === '--dtype') args.dtype = argv[++i];
    else if (arg === '--stream') args.stream = true;
    else if (arg === '--json') args.json = true;
    else if (arg.startsWith('--')) throw new Error(`unknown option ${arg}`);
    else args.file = arg;
  }
  if (!['float32', 'float16', 'bfloat16'].includes(args.dtype)) throw new Error(`--dtype: ${args.dtype} is not float32, float16 or bfloat16`);
  return args;
}

function readDocs(file) {
  if (!file) return EXAMPLE_DOCS;
  return fs.readFileSync(file, 'utf8').split('\n').filter((line) => line.trim()).map((line) => JSON.parse(line));
}

function show(result, json) {
  if (json) {
    const line = { index: result.index, id: result.id };
    if (result.error) line.error = result.error;
    else {
      const r = result.rows;
      Object.assign(line, { shape: r.shape, rows: Buffer.from(r.values.buffer, r.values.byteOffset, r.values.byteLength).toString('base64') });
      if (result.words) line.words = result.words;
    }
    return JSON.stringify(line);
  }
  if (result.error) return `${result.index} ${result.id}: error ${result.error.code}: ${result.error.message}`;
  return `${result.index} ${result.id}: (${result.rows.shape.join(', ')})${result.words ? ' ' + JSON.stringify(result.words) : ''}`;
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const v1 = tokvec.load();
  const client = new v1.EmbedService(args.server, tokvec.grpc.credentials.createInsecure());
  const options = { dtype: `DTYPE_${args.dtype.toUpperCase()}` };
  const docs = readDocs(args.file);
  try {
    const results = args.stream ? await tokvec.embedStream(client, docs, options) : await tokvec.embed(client, docs, options);
    for (const result of results) console.log(show(result, args.json));
  } finally {
    client.close();
  }
}

main().catch((err) => {
  console.error(`tokvec-embed: ${err.details || err.message}`);
  process.exit(1);
});
