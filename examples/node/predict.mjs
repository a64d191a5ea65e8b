#!/usr/bin/env node
// Predict with a uehead bundle from Node.js: ONNX Runtime and tokenizer.json, no Python.
//
//   (cd examples/node && npm ci)
//   node examples/node/predict.mjs BUNDLE [--batch-size N] < texts.jsonl > predictions.jsonl
//
// stdin: JSON lines, each an object with a "text" string (blank lines are skipped).
// stdout: one JSON line per text, in input order:
//   {"label": "positive", "label_id": 1, "probs": [0.1, 0.9], "uncertainty": 0.08,
//    "uncertainty_kind": "adue", "scores": {"sr": 0.1, "entropy": 0.33, "adue": 0.08, "alien": 0.47}}
// "scores" has the names of the Python runtime's Predictions.scores ("sr" is the softmax response).
// Every score is higher = more uncertain.
//
// The steps are the Python runtime's (uehead.runtime): read manifest.json and check its format,
// format_version and every file's sha256; tokenise with tokenizer.json and the manifest's tokenizer
// settings (truncation side, max_length, right padding with pad_token_id, the backbone's
// model_input_names with token_type_ids all 0); run backbone.onnx -> head.onnx -> scores.onnx.
// --batch-size defaults to 1 so that every line's output is independent of its neighbours: an int8
// backbone quantises activations per batch. Larger batches are faster.
import { createHash } from "node:crypto";
import { closeSync, openSync, readFileSync, readSync } from "node:fs";
import path from "node:path";
import readline from "node:readline";

import * as ort from "onnxruntime-node";
import { Tokenizer } from "tokenizers";

const FORMAT = "uehead-bundle";
// The newest bundle format_version this client reads.
const FORMAT_VERSION = 1;
const REEXPORT = "re-export the bundle with `uehead export`";

class UsageError extends Error {}

function sha256File(file) {
  const hash = createHash("sha256");
  const buffer = Buffer.alloc(1 << 20);
  const fd = openSync(file, "r");
  try {
    for (let n; (n = readSync(fd, buffer)) > 0; ) hash.update(buffer.subarray(0, n));
  } finally {
    closeSync(fd);
  }
  return hash.digest("hex");
}

function readManifest(root) {
  const file = path.join(root, "manifest.json");
  let manifest;
  try {
    manifest = JSON.parse(readFileSync(file, "utf8"));
  } catch (err) {
    throw new Error(`${file}: cannot read it (${err.message}); pass a bundle folder written by \`uehead export\`.`);
  }
  if (manifest?.format !== FORMAT) {
    throw new Error(`${file}: format is ${JSON.stringify(manifest?.format)}, not "${FORMAT}": not a uehead bundle.`);
  }
  const version = manifest.format_version;
  if (!Number.isInteger(version) || version < 1 || version > FORMAT_VERSION) {
    throw new Error(`${file}: format_version ${JSON.stringify(version)}; this client reads 1 to ${FORMAT_VERSION}: ` +
                    `update it, or ${REEXPORT} of a matching version.`);
  }
  if (!manifest.scores) {
    throw new Error(`${file}: the bundle has no scores.onnx (it predates it); ${REEXPORT}.`);
  }
  return manifest;
}

// Every file the manifest lists (tokenizer, backbone, head and the optional entries) must be there
// with its sha256.
function checkFiles(root, manifest) {
  const entries = Object.values(manifest).filter(
    (v) => v && typeof v === "object" && typeof v.file === "string" && typeof v.sha256 === "string");
  for (const { file, sha256 } of entries) {
    const where = path.join(root, file);
    if (path.basename(file) !== file) throw new Error(`${where}: must be a plain file name; ${REEXPORT}.`);
    let digest;
    try {
      digest = sha256File(where);
    } catch (err) {
      throw new Error(`${where}: missing from the bundle (${err.code}); copy the complete bundle folder.`);
    }
    if (digest !== sha256) {
      throw new Error(`${where}: sha256 ${digest.slice(0, 12)}... does not match the manifest's ` +
                      `${sha256.slice(0, 12)}...: restore the file, or ${REEXPORT}.`);
    }
  }
}

// The manifest's settings, not tokenizer.json's: truncation to max_length on truncation_side
// (special tokens kept), no padding here (pad() pads each batch to its longest text).
function makeTokenizer(root, spec) {
  const tokenizer = Tokenizer.fromFile(path.join(root, spec.file));
  tokenizer.disablePadding();
  tokenizer.setTruncation(spec.max_length, { direction: spec.truncation_side ?? "right" });
  return tokenizer;
}

function pad(idLists, spec) {
  const rows = idLists.length;
  const width = Math.max(1, ...idLists.map((ids) => ids.length)); // ONNX takes no zero-length sequence
  const inputIds = new BigInt64Array(rows * width).fill(BigInt(spec.pad_token_id));
  const mask = new BigInt64Array(rows * width);
  idLists.forEach((ids, i) => ids.forEach((id, j) => {
    inputIds[i * width + j] = BigInt(id);
    mask[i * width + j] = 1n;
  }));
  const arrays = { input_ids: inputIds, attention_mask: mask, token_type_ids: new BigInt64Array(rows * width) };
  return Object.fromEntries(spec.model_input_names.map(
    (name) => [name, new ort.Tensor("int64", arrays[name], [rows, width])]));
}

async function loadBundle(root) {
  const manifest = readManifest(root);
  checkFiles(root, manifest);
  const options = { executionProviders: ["cpu"], graphOptimizationLevel: "all" };
  const session = (spec) => ort.InferenceSession.create(path.join(root, spec.file), options);
  return {
    manifest,
    tokenizer: makeTokenizer(root, manifest.tokenizer),
    backbone: await session(manifest.backbone),
    head: await session(manifest.head),
    scores: await session(manifest.scores),
  };
}

async function predict(bundle, texts) {
  const { manifest: m, tokenizer } = bundle;
  const encodings = await tokenizer.encodeBatch(texts);
  const feeds = pad(encodings.map((e) => e.getIds()), m.tokenizer);
  const z = (await bundle.backbone.run(feeds))[m.backbone.output_name];
  const logits = await bundle.head.run({ [m.head.input_name]: z });
  const out = await bundle.scores.run(Object.fromEntries(bundle.scores.inputNames.map((n) => [n, logits[n]])));
  const c = m.labels.length;
  const kinds = m.head.heads.map((h) => h.kind);
  return texts.map((_, i) => {
    const labelId = Number(out.label_id.data[i]);
    const scores = { sr: out.softmax_response.data[i], entropy: out.entropy.data[i] };
    for (const kind of kinds) scores[kind] = out[kind].data[i];
    return {
      label: m.labels[labelId], label_id: labelId, probs: Array.from(out.probs.data.subarray(i * c, (i + 1) * c)),
      uncertainty: out.uncertainty.data[i], uncertainty_kind: m.head.default_kind, scores,
    };
  });
}

function parseArgs(argv) {
  const args = { batchSize: 1 };
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === "--batch-size") args.batchSize = Number(argv[++i]);
    else if (argv[i].startsWith("-")) throw new UsageError(`unknown option ${argv[i]}`);
    else if (args.bundle === undefined) args.bundle = argv[i];
    else throw new UsageError(`unexpected argument ${argv[i]}`);
  }
  if (args.bundle === undefined) throw new UsageError("missing BUNDLE");
  if (!Number.isInteger(args.batchSize) || args.batchSize < 1) throw new UsageError("--batch-size must be >= 1");
  return args;
}

function parseLine(line, lineNumber) {
  let record;
  try {
    record = JSON.parse(line);
  } catch (err) {
    throw new Error(`stdin line ${lineNumber}: not JSON (${err.message}).`);
  }
  if (typeof record?.text !== "string") throw new Error(`stdin line ${lineNumber}: needs a "text" string.`);
  return record.text;
}

async function write(text) {
  if (!process.stdout.write(text)) await new Promise((resolve) => process.stdout.once("drain", resolve));
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const bundle = await loadBundle(args.bundle);
  let batch = [];
  let lineNumber = 0;
  const flush = async () => {
    if (!batch.length) return;
    await write((await predict(bundle, batch)).map((row) => JSON.stringify(row) + "\n").join(""));
    batch = [];
  };
  for await (const line of readline.createInterface({ input: process.stdin, crlfDelay: Infinity })) {
    lineNumber++;
    if (!line.trim()) continue;
    batch.push(parseLine(line, lineNumber));
    if (batch.length >= args.batchSize) await flush();
  }
  await flush();
}

main().catch((err) => {
  const usage = err instanceof UsageError ? "\nusage: node predict.mjs BUNDLE [--batch-size N] < in.jsonl > out.jsonl" : "";
  process.stderr.write(`predict.mjs: ${err.message}${usage}\n`);
  process.exit(err instanceof UsageError ? 2 : 1);
});
